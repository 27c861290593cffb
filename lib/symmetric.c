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

	hkdf2(s->ck, ikm, NS_KEY_LEN, s->ck, temp_k);
	/* HASHLEN 64: the cipher key is the first 32 bytes. */
	memcpy(s->k, temp_k, NS_KEY_LEN);
	s->n = 0;
	s->has_k = 1;
	sodium_memzero(temp_k, sizeof(temp_k));
	return 0;
}

/* The nonce n as the suite lays it out: 4 zero bytes, then the counter (ChaChaPoly little-endian, AESGCM big-endian). */
static void
nonce_bytes(enum ns_suite suite, uint64_t n, uint8_t iv[NS_NONCE_LEN])
{
	memset(iv, 0, NS_NONCE_LEN);
	for (int i = 0; i < 8; i++)
		iv[suite == NS_SUITE_AESGCM ? NS_NONCE_LEN - 1 - i : 4 + i] = (uint8_t)(n >> (8 * i));
}

/* The same operation through OpenSSL, for AES-GCM where libsodium lacks the CPU instructions. */
static int
openssl_aead(struct ns_symmetric *s, int seal, const uint8_t *in, size_t len, uint8_t *out)
{
	struct ns_cipher *c = ns_cipher_new(s->suite, s->k);
	int ret;

	if (c == NULL)
		return -1;
	ns_cipher_set_nonce(c, s->n);
	ret = seal ? ns_cipher_seal(c, s->h, NS_HASH_LEN, in, len, out)
	           : ns_cipher_open(c, s->h, NS_HASH_LEN, in, len, out);
	s->n = ns_cipher_nonce(c);
	ns_cipher_free(c);
	return ret;
}

/*
 * One AEAD operation with the handshake key at nonce n (in may equal out).
 * Through libsodium: a process's first OpenSSL cipher takes about a
 * millisecond to set up, which the first message would otherwise wait for;
 * the records that follow use OpenSSL, faster on bulk, set up meanwhile.
 * The nonce moves on only when the operation succeeds.
 */
static int
handshake_aead(struct ns_symmetric *s, int seal, const uint8_t *in, size_t len, uint8_t *out)
{
	uint8_t iv[NS_NONCE_LEN];
	unsigned long long done;
	int ret;

	if (s->n == UINT64_MAX)
		return -1;
	nonce_bytes(s->suite, s->n, iv);
	if (s->suite == NS_SUITE_CHACHAPOLY)
		ret = seal ? crypto_aead_chacha20poly1305_ietf_encrypt(out, &done, in, len, s->h,
		                                                       NS_HASH_LEN, NULL, iv, s->k)
		           : crypto_aead_chacha20poly1305_ietf_decrypt(out, &done, NULL, in, len, s->h,
		                                                       NS_HASH_LEN, iv, s->k);
	else if (crypto_aead_aes256gcm_is_available())
		ret = seal ? crypto_aead_aes256gcm_encrypt(out, &done, in, len, s->h, NS_HASH_LEN, NULL,
		                                           iv, s->k)
		           : crypto_aead_aes256gcm_decrypt(out, &done, NULL, in, len, s->h, NS_HASH_LEN,
		                                           iv, s->k);
	else
		return openssl_aead(s, seal, in, len, out);
	if (ret != 0)
		return -1;
	s->n++;
	return 0;
}

/* EncryptAndHash: out gets len (+ NS_TAG_LEN once keyed) bytes.  Returns the length or -1. */
long
ns_symmetric_encrypt_and_hash(struct ns_symmetric *s, const uint8_t *pt, size_t len,
                              uint8_t *out)
{
	size_t outlen = len;

	if (!s->has_k) {
		memmove(out, pt, len);
	} else {
		if (handshake_aead(s, 1, pt, len, out))
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
	if (!s->has_k) {
		memmove(out, ct, len);
	} else {
		if (len < NS_TAG_LEN || handshake_aead(s, 0, ct, len, out))
			return -1;
		len -= NS_TAG_LEN;
	}
	memcpy(s->h, next_h, NS_HASH_LEN);
	return (long)len;
}

/* Split into the initiator-to-responder and responder-to-initiator keys. */
void
ns_symmetric_split(struct ns_symmetric *s, uint8_t k1[NS_KEY_LEN], uint8_t k2[NS_KEY_LEN])
{
	uint8_t t1[NS_HASH_LEN], t2[NS_HASH_LEN];

	hkdf2(s->ck, NULL, 0, t1, t2);
	memcpy(k1, t1, NS_KEY_LEN);
	memcpy(k2, t2, NS_KEY_LEN);
	sodium_memzero(t1, sizeof(t1));
	sodium_memzero(t2, sizeof(t2));
}

/* Wipe the chaining key and the handshake cipher's key (h survives for channel binding). */
void
ns_symmetric_clear(struct ns_symmetric *s)
{
	sodium_memzero(s->ck, sizeof(s->ck));
	sodium_memzero(s->k, sizeof(s->k));
	s->has_k = 0;
}
