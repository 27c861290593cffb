/*
 * X25519 public keys from private ones, by way of the Edwards curve.
 *
 * libsodium's crypto_scalarmult_base runs the same Montgomery ladder as a
 * Diffie-Hellman, about 28 us here; its Ed25519 fixed-base multiplication
 * uses a precomputed table and takes about half that.  The Edwards point
 * [k]B and the X25519 point [k]9 are the same point on birationally
 * equivalent curves, u = (1 + y) / (1 - y), so the public key is that
 * map of the Edwards point.  The scalar only meets libsodium's
 * constant-time code; the map works on the public point alone.
 */
#ifndef NOISESHIM_X25519_H
#define NOISESHIM_X25519_H

#include <stdint.h>

#include "wire.h"

/* pub = X25519(priv, 9), as crypto_scalarmult_base computes it.  0, or -1. */
int ns_x25519_public(uint8_t pub[NS_KEY_LEN], const uint8_t priv[NS_KEY_LEN]);

#endif
