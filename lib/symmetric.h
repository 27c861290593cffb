/*
 * Noise SymmetricState with BLAKE2b: chaining key, handshake hash, and the
 * handshake cipher.  HKDF is HMAC-BLAKE2b (block 128, output 64 bytes).
 */
#ifndef NOISESHIM_SYMMETRIC_H
#define NOISESHIM_SYMMETRIC_H

#include <stddef.h>
#include <stdint.h>

#include "cipher.h"

/* Flat (no pointers): a handshake may live in memory shared across fork and exec. */
struct ns_symmetric {
	uint8_t ck[NS_HASH_LEN];
	uint8_t h[NS_HASH_LEN];
	uint8_t k[NS_KEY_LEN];  /* the handshake cipher's key, once has_k */
	uint64_t n;             /* its next nonce */
	int has_k;              /* 0 until the first MixKey */
	enum ns_suite suite;
};

/* InitializeSymmetric(protocol_name). */
void ns_symmetric_init(struct ns_symmetric *s, enum ns_suite suite);

/* MixHash(data). */
void ns_symmetric_mix_hash(struct ns_symmetric *s, const uint8_t *data, size_t len);

/* MixKey(ikm) for a DH output.  Returns 0 or -1. */
int ns_symmetric_mix_key(struct ns_symmetric *s, const uint8_t ikm[NS_KEY_LEN]);

/* EncryptAndHash: out gets len (+ NS_TAG_LEN once keyed) bytes.  Returns the length or -1. */
long ns_symmetric_encrypt_and_hash(struct ns_symmetric *s, const uint8_t *pt, size_t len,
                                   uint8_t *out);

/* DecryptAndHash: out (may equal ct) gets the plaintext.  Returns its length or -1. */
long ns_symmetric_decrypt_and_hash(struct ns_symmetric *s, const uint8_t *ct, size_t len,
                                   uint8_t *out);

/* Split into the initiator-to-responder and responder-to-initiator keys. */
void ns_symmetric_split(struct ns_symmetric *s, uint8_t k1[NS_KEY_LEN], uint8_t k2[NS_KEY_LEN]);

/* Wipe the chaining key and the handshake cipher's key (h survives for channel binding). */
void ns_symmetric_clear(struct ns_symmetric *s);

#endif
