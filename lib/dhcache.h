/*
 * The static-static Diffie-Hellman of Noise_IK (the "ss" token) depends on
 * the two static keys alone, so a peer seen again need not cost it again:
 * one X25519 of the five a handshake side computes.  A process-wide table
 * keeps the result per pair of public keys, bounded, the least recently
 * used leaving first, each result wiped as it leaves.  Thread-safe, and
 * safe across fork.
 */
#ifndef NOISESHIM_DHCACHE_H
#define NOISESHIM_DHCACHE_H

#include <stdint.h>

#include "wire.h"

enum { NS_DH_CACHE_ENTRIES = 128 };

/*
 * out = X25519(priv, peer_pub), where own_pub is priv's public key: from
 * the table when the pair is there, else computed and kept.  0, or -1 for a
 * low-order peer key (nothing is kept then).
 */
int ns_dh_static(uint8_t out[NS_KEY_LEN], const uint8_t priv[NS_KEY_LEN],
                 const uint8_t own_pub[NS_KEY_LEN], const uint8_t peer_pub[NS_KEY_LEN]);

/* Wipe and forget every kept result. */
void ns_dh_static_clear(void);

/* How many results the table answered from memory since the process started. */
uint64_t ns_dh_static_hits(void);

#endif
