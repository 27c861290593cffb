/*
 * Static X25519 key files.  A private key file holds the 32-byte key as 64
 * hex digits and a newline; it must not be readable by group or others.
 */
#ifndef NOISESHIM_KEYS_H
#define NOISESHIM_KEYS_H

#include <stddef.h>
#include <stdint.h>

#include "wire.h"

/* Fill priv with a fresh random key and pub with its public half. */
void ns_key_generate(uint8_t priv[NS_KEY_LEN], uint8_t pub[NS_KEY_LEN]);

/* Derive the public key of priv.  Returns 0, or -1 for a degenerate key. */
int ns_key_public(const uint8_t priv[NS_KEY_LEN], uint8_t pub[NS_KEY_LEN]);

/* Create path (must not exist) with mode 0600 holding priv.  -1 with a reason in err. */
int ns_key_write(const char *path, const uint8_t priv[NS_KEY_LEN], char *err, size_t errlen);

/* Load priv from path; refuses files readable by group or others.  -1 with a reason in err. */
int ns_key_load(const char *path, uint8_t priv[NS_KEY_LEN], char *err, size_t errlen);

#endif
