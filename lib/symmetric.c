/*
 * Noise SymmetricState with BLAKE2b, per the Noise specification sections
 * 4.2 and 4.3.  BLAKE2b comes from libsodium.
 */
#include "symmetric.h"

#include <string.h>

#include <sodium.h>

enum { BLAKE2B_BLOCK_LEN = 128 };

static const char *
protocol_name(enum ns_suite suite)
{
	return suite == NS_SUITE_AESGCM ? "Noise_IK_25519_AESGCM_BLAKE2b"
	                                : "Noise_IK_25519_ChaChaPoly_BLAKE2b";
}

/* HMAC-BLAKE2b(key, a | b) with a 64-byte key. */
static void
hmac(const uint8_t key[NS_HASH_LEN], const uint8_t *a, size_t alen, const uint8_t *b,
     size_t blen, uint8_t out[NS_HASH_LEN])
{
	crypto_generichash_blake2b_state st;
	uint8_t pad[BLAKE2B_BLOCK_LEN];
	uint8_t inner[NS_HASH_LEN];

	memset(pad, 0x36, sizeof(pad));
	for (size_t i = 0; i < NS_HASH_LEN; i++)
		pad[i] ^= key[i];
	crypto_generichash_blake2b_init(&st, NULL, 0, NS_HASH_LEN);
	crypto_generichash_blake2b_update(&st, pad, sizeof(pad));
	crypto_generichash_blake2b_update(&st, a, alen);
	crypto_generichash_blake2b_update(&st, b, blen);
	crypto_generichash_blake2b_final(&st, inner, NS_HASH_LEN);

	memset(pad, 0x5c, sizeof(pad));
	for (size_t i = 0; i < NS_HASH_LEN; i++)
		pad[i] ^= key[i];
	crypto_generichash_blake2b_init(&st, NULL, 0, NS_HASH_LEN);
	crypto_generichash_blake2b_update(&st, pad, sizeof(pad));
	crypto_generichash_blake2b_update(&st, inner, NS_HASH_LEN);
	crypto_generichash_blake2b_final(&st, out, NS_HASH_LEN);

	sodium_memzero(pad, sizeof(pad));
	sodium_memzero(inner, sizeof(inner));
	sodium_memzero(&st, sizeof(st));
}

/* HKDF(ck, ikm) with two outputs. */
static void
hkdf2(const uint8_t ck[NS_HASH_LEN], const uint8_t *ikm, size_t ikmlen,
      uint8_t out1[NS_HASH_LEN], uint8_t out2[NS_HASH_LEN])
{
	static const uint8_t one = 1, two = 2;
	uint8_t temp[NS_HASH_LEN];

	hmac(ck, ikm, ikmlen, NULL, 0, temp);
	hmac(temp, &one, 1, NULL, 0, out1);
	hmac(temp, out1, NS_HASH_LEN, &two, 1, out2);
	sodium_memzero(temp, sizeof(temp));
}

/* InitializeSymmetric(protocol_name). */
void
ns_symmetric_init(struct ns_symmetric *s, enum ns_suite suite)
{
	const char *name = protocol_name(suite);

	memset(s, 0, sizeof(*s));
	s->suite = suite;
	/* Names shorter than HASHLEN are zero-padded, not hashed. */
	memcpy(s->h, name, strlen(name));
	memcpy(s->ck, s->h, NS_HASH_LEN);
}

/* out = BLAKE2b(h | data); out may equal h. */
static void
chain_hash(const uint8_t h[NS_HASH_LEN], const uint8_t *data, size_t len,
           uint8_t out[NS_HASH_LEN])
{
	crypto_generichash_blake2b_state st;

	crypto_generichash_blake2b_init(&st, NULL, 0, NS_HASH_LEN);
	crypto_generichash_blake2b_update(&st, h, NS_HASH_LEN);
	crypto_generichash_blake2b_update(&st, data, len);
	crypto_generichash_blake2b_final(&st, out, NS_HASH_LEN);
}

/* MixHash(data). */
void
ns_symmetric_mix_hash(struct ns_symmetric *s, const uint8_t *data, size_t len)
{
	chain_hash(s->h, data, len, s->h);
}

/* MixKey(ikm) for a DH output.  Returns 0 or -1. */
int
ns_symmetric_mix_key(struct ns_symmetric *s, const uint8_t ikm[NS_KEY_LEN])
{
	uint8_t temp_k[NS_HASH_LEN];
	int ret = -1;

	hkdf2(s->ck, ikm, NS_KEY_LEN, s->ck, temp_k);
	/* HASHLEN 64: the cipher key is the first 32 bytes. */
	if (s->k == NULL) {
		if ((s->k = ns_cipher_new(s->suite, temp_k)) == NULL)
			goto out;
	} else if (ns_cipher_rekey(s->k, temp_k)) {
		goto out;
	}
	ret = 0;
out:
	sodium_memzero(temp_k, sizeof(temp_k));
	return ret;
}

/* EncryptAndHash: out gets len (+ NS_TAG_LEN once keyed) bytes.  Returns the length or -1. */
long
ns_symmetric_encrypt_and_hash(struct ns_symmetric *s, const uint8_t *pt, size_t len,
                              uint8_t *out)
{
	size_t outlen = len;

	if (s->k == NULL) {
		memmove(out, pt, len);
	} else {
		if (ns_cipher_seal(s->k, s->h, NS_HASH_LEN, pt, len, out))
			return -1;
		outlen += NS_TAG_LEN;
	}
	ns_symmetric_mix_hash(s, out, outlen);
	return (long)outlen;
}

/* DecryptAndHash: out (may equal ct) gets the plaintext.  Returns its length or -1. */
long
ns_symmetric_decrypt_and_hash(struct ns_symmetric *s, const uint8_t *ct, size_t len,
                              uint8_t *out)
{
	uint8_t next_h[NS_HASH_LEN];

	/* The hash covers the ciphertext, which decrypting in place destroys. */
	chain_hash(s->h, ct, len, next_h);
	if (s->k == NULL) {
		memmove(out, ct, len);
	} else {
		if (len < NS_TAG_LEN || ns_cipher_open(s->k, s->h, NS_HASH_LEN, ct, len, out))
			return -1;
		len -= NS_TAG_LEN;
	}
	memcpy(s->h, next_h, NS_HASH_LEN);
	return (long)len;
}

/* Split into the initiator-to-responder and responder-to-initiator ciphers.  0 or -1. */
int
ns_symmetric_split(struct ns_symmetric *s, struct ns_cipher **c1, struct ns_cipher **c2)
{
	uint8_t k1[NS_HASH_LEN], k2[NS_HASH_LEN];
	int ret = -1;

	hkdf2(s->ck, NULL, 0, k1, k2);
	if ((*c1 = ns_cipher_new(s->suite, k1)) == NULL)
		goto out;
	if ((*c2 = ns_cipher_new(s->suite, k2)) == NULL) {
		ns_cipher_free(*c1);
		*c1 = NULL;
		goto out;
	}
	ret = 0;
out:
	sodium_memzero(k1, sizeof(k1));
	sodium_memzero(k2, sizeof(k2));
	return ret;
}

/* Wipe the chaining key and free the handshake cipher (h survives for channel binding). */
void
ns_symmetric_clear(struct ns_symmetric *s)
{
	ns_cipher_free(s->k);
	s->k = NULL;
	sodium_memzero(s->ck, sizeof(s->ck));
}
