/*
 * Noise CipherState over OpenSSL EVP.  One EVP context per cipher, keyed
 * once; each message only sets the nonce, which keeps the per-record cost
 * to a few hundred nanoseconds above the raw AEAD.
 */
#include "cipher.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <sodium.h>

struct ns_cipher {
	EVP_CIPHER_CTX *ctx;
	enum ns_suite suite;
	uint64_t nonce;
};

/* Noise reserves the maximum nonce value. */
static const uint64_t nonce_exhausted = UINT64_MAX;

/* The suite for a NodeURL noise_proto value, or 0 if unknown. */
enum ns_suite
ns_suite_from_proto(int noise_proto)
{
	switch (noise_proto) {
	case NS_SUITE_CHACHAPOLY:
	case NS_SUITE_AESGCM:
		return (enum ns_suite)noise_proto;
	default:
		return 0;
	}
}

/* Short name of a suite ("ChaChaPoly", "AESGCM"). */
const char *
ns_suite_name(enum ns_suite suite)
{
	return suite == NS_SUITE_AESGCM ? "AESGCM" : "ChaChaPoly";
}

static const EVP_CIPHER *
evp_for(enum ns_suite suite)
{
	return suite == NS_SUITE_AESGCM ? EVP_aes_256_gcm() : EVP_chacha20_poly1305();
}

static void
format_nonce(enum ns_suite suite, uint64_t n, uint8_t iv[NS_NONCE_LEN])
{
	memset(iv, 0, 4);
	for (int i = 0; i < 8; i++) {
		uint8_t byte = (uint8_t)(n >> (8 * i));
		if (suite == NS_SUITE_AESGCM)
			iv[NS_NONCE_LEN - 1 - i] = byte;
		else
			iv[4 + i] = byte;
	}
}

/* A cipher keyed with key, next nonce 0; NULL on failure. */
struct ns_cipher *
ns_cipher_new(enum ns_suite suite, const uint8_t key[NS_KEY_LEN])
{
	struct ns_cipher *c;

	if ((c = calloc(1, sizeof(*c))) == NULL)
		goto err0;
	c->suite = suite;
	if ((c->ctx = EVP_CIPHER_CTX_new()) == NULL)
		goto err1;
	if (EVP_CipherInit_ex(c->ctx, evp_for(suite), NULL, NULL, NULL, 1) != 1)
		goto err2;
	if (ns_cipher_rekey(c, key))
		goto err2;
	return c;

err2:
	EVP_CIPHER_CTX_free(c->ctx);
err1:
	free(c);
err0:
	return NULL;
}

/* Replace the key and reset the nonce to 0.  Returns 0 or -1. */
int
ns_cipher_rekey(struct ns_cipher *c, const uint8_t key[NS_KEY_LEN])
{
	c->nonce = 0;
	return EVP_CipherInit_ex(c->ctx, NULL, NULL, key, NULL, 1) == 1 ? 0 : -1;
}

/* Run one AEAD operation at the current nonce; tag is read (seal) or checked (open). */
static int
aead(struct ns_cipher *c, int encrypt, const uint8_t *ad, size_t adlen, const uint8_t *in,
     size_t len, uint8_t *out, uint8_t *tag)
{
	uint8_t iv[NS_NONCE_LEN];
	int outl;

	if (c->nonce == nonce_exhausted || len > INT_MAX || adlen > INT_MAX)
		return -1;
	format_nonce(c->suite, c->nonce, iv);
	if (EVP_CipherInit_ex(c->ctx, NULL, NULL, NULL, iv, encrypt) != 1)
		return -1;
	if (adlen > 0 && EVP_CipherUpdate(c->ctx, NULL, &outl, ad, (int)adlen) != 1)
		return -1;
	if (len > 0 && EVP_CipherUpdate(c->ctx, out, &outl, in, (int)len) != 1)
		return -1;
	if (!encrypt && EVP_CIPHER_CTX_ctrl(c->ctx, EVP_CTRL_AEAD_SET_TAG, NS_TAG_LEN, tag) != 1)
		return -1;
	if (EVP_CipherFinal_ex(c->ctx, out + len, &outl) != 1)
		return -1;
	if (encrypt && EVP_CIPHER_CTX_ctrl(c->ctx, EVP_CTRL_AEAD_GET_TAG, NS_TAG_LEN, tag) != 1)
		return -1;
	c->nonce++;
	return 0;
}

/*
 * Seal len bytes of pt with associated data ad into out (len + NS_TAG_LEN
 * bytes; out may equal pt).  Returns 0, or -1 if the nonce is exhausted.
 */
int
ns_cipher_seal(struct ns_cipher *c, const uint8_t *ad, size_t adlen, const uint8_t *pt,
               size_t len, uint8_t *out)
{
	return aead(c, 1, ad, adlen, pt, len, out, out + len);
}

/*
 * Open len bytes of ct (at least NS_TAG_LEN) into out (len - NS_TAG_LEN
 * bytes; out may equal ct).  Returns 0, or -1 if authentication fails, in
 * which case the nonce is not consumed.
 */
int
ns_cipher_open(struct ns_cipher *c, const uint8_t *ad, size_t adlen, const uint8_t *ct,
               size_t len, uint8_t *out)
{
	uint8_t tag[NS_TAG_LEN];

	if (len < NS_TAG_LEN)
		return -1;
	/* Copy the tag first: out may overlap ct. */
	memcpy(tag, ct + len - NS_TAG_LEN, NS_TAG_LEN);
	return aead(c, 0, ad, adlen, ct, len - NS_TAG_LEN, out, tag);
}

/*
 * Take back the last seal: its nonce is used again by the next one.  Only
 * for a record whose ciphertext never left the process (the kernel refused
 * it), so no two ciphertexts under one nonce are ever seen.
 */
void
ns_cipher_retract(struct ns_cipher *c)
{
	if (c->nonce > 0)
		c->nonce--;
}

/* The next nonce the cipher will use. */
uint64_t
ns_cipher_nonce(const struct ns_cipher *c)
{
	return c->nonce;
}

/* Make n the next nonce (the caller owns the counter). */
void
ns_cipher_set_nonce(struct ns_cipher *c, uint64_t n)
{
	c->nonce = n;
}

/* Set up OpenSSL's implementation of suite now. */
void
ns_cipher_warm(enum ns_suite suite)
{
	static const uint8_t key[NS_KEY_LEN];

	if (ns_suite_from_proto((int)suite) != 0)
		ns_cipher_free(ns_cipher_new(suite, key));
}

/* Read OpenSSL's configuration file now, in the calling thread. */
void
ns_cipher_load_config(void)
{
	OPENSSL_init_crypto(OPENSSL_INIT_LOAD_CONFIG, NULL);
}

/* Free the cipher and wipe its key; NULL is a no-op. */
void
ns_cipher_free(struct ns_cipher *c)
{
	if (c == NULL)
		return;
	EVP_CIPHER_CTX_free(c->ctx);  /* cleanses the key schedule */
	sodium_memzero(c, sizeof(*c));
	free(c);
}
