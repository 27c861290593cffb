/*
 * Noise CipherState: an AEAD key and a 64-bit nonce counter, through
 * OpenSSL EVP.  ChaChaPoly nonces are 4 zero bytes + little-endian counter;
 * AESGCM nonces are 4 zero bytes + big-endian counter.
 */
#ifndef NOISESHIM_CIPHER_H
#define NOISESHIM_CIPHER_H

#include <stddef.h>
#include <stdint.h>

#include "wire.h"

enum ns_suite {
	NS_SUITE_CHACHAPOLY = 1,  /* Noise_IK_25519_ChaChaPoly_BLAKE2b, noise_proto=1 */
	NS_SUITE_AESGCM = 2,      /* Noise_IK_25519_AESGCM_BLAKE2b, noise_proto=2 */
};

/* The suite for a NodeURL noise_proto value, or 0 if unknown. */
enum ns_suite ns_suite_from_proto(int noise_proto);

/* Short name of a suite ("ChaChaPoly", "AESGCM"). */
const char *ns_suite_name(enum ns_suite suite);

struct ns_cipher;

/* A cipher keyed with key, next nonce 0; NULL on failure. */
struct ns_cipher *ns_cipher_new(enum ns_suite suite, const uint8_t key[NS_KEY_LEN]);

/* Replace the key and reset the nonce to 0.  Returns 0 or -1. */
int ns_cipher_rekey(struct ns_cipher *c, const uint8_t key[NS_KEY_LEN]);

/*
 * Seal len bytes of pt with associated data ad into out (len + NS_TAG_LEN
 * bytes; out may equal pt).  Returns 0, or -1 if the nonce is exhausted.
 */
int ns_cipher_seal(struct ns_cipher *c, const uint8_t *ad, size_t adlen, const uint8_t *pt,
                   size_t len, uint8_t *out);

/*
 * Open len bytes of ct (at least NS_TAG_LEN) into out (len - NS_TAG_LEN
 * bytes; out may equal ct).  Returns 0, or -1 if authentication fails, in
 * which case the nonce is not consumed.
 */
int ns_cipher_open(struct ns_cipher *c, const uint8_t *ad, size_t adlen, const uint8_t *ct,
                   size_t len, uint8_t *out);

/*
 * Take back the last seal: its nonce is used again by the next one.  Only
 * for a record whose ciphertext never left the process (the kernel refused
 * it), so no two ciphertexts under one nonce are ever seen.
 */
void ns_cipher_retract(struct ns_cipher *c);

/* The next nonce the cipher will use. */
uint64_t ns_cipher_nonce(const struct ns_cipher *c);

/*
 * Make n the next nonce.  For state kept outside the cipher (shared by
 * processes that each have their own cipher context for one key): the
 * caller owns the counter and must never hand out a nonce twice.
 */
void ns_cipher_set_nonce(struct ns_cipher *c, uint64_t n);

/*
 * Set up OpenSSL's implementation of suite now: a process's first cipher
 * otherwise takes about a millisecond, in whatever call needs it.  Opens
 * no file once ns_cipher_load_config has run.
 */
void ns_cipher_warm(enum ns_suite suite);

/*
 * Read OpenSSL's configuration file now, in the calling thread (about half
 * a millisecond, once per process).  It is the one file OpenSSL opens: read
 * from another thread, it could take the fd number that the program has
 * just closed and expects its next socket or file to get.
 */
void ns_cipher_load_config(void);

/* Free the cipher and wipe its key; NULL is a no-op. */
void ns_cipher_free(struct ns_cipher *c);

#endif
