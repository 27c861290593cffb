/*
 * base58 (Bitcoin alphabet) and base58check.  Values are converted as one
 * big number, a digit at a time; inputs are a few dozen bytes, so the
 * quadratic cost does not matter.
 */
#include "base58.h"

#include <pthread.h>
#include <string.h>

#include <openssl/evp.h>
#include <sodium.h>

static const char ALPHABET[] = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";

enum {
	CHECKSUM_LEN = 4,
	/*
	 * base58check works on version | payload | checksum in a scratch
	 * buffer; longer payloads are refused.  NodeURLs carry 32 bytes.
	 */
	CHECK_PAYLOAD_MAX = 256,
	CHECK_RAW_MAX = 1 + CHECK_PAYLOAD_MAX + CHECKSUM_LEN,
	/* Decoded values longer than this many 32-bit limbs are refused as too long. */
	DECODE_LIMBS_MAX = CHECK_RAW_MAX / 4 + 2,
};

static void reverse(uint8_t *p, size_t len)
{
	for (size_t i = 0; i < len / 2; i++) {
		uint8_t t = p[i];

		p[i] = p[len - 1 - i];
		p[len - 1 - i] = t;
	}
}

/* Each character's value plus one; 0 for characters outside the alphabet. */
static const uint8_t DIGIT_PLUS_ONE[256] = {
	['1'] = 1, ['2'] = 2, ['3'] = 3, ['4'] = 4, ['5'] = 5, ['6'] = 6, ['7'] = 7, ['8'] = 8,
	['9'] = 9, ['A'] = 10, ['B'] = 11, ['C'] = 12, ['D'] = 13, ['E'] = 14, ['F'] = 15,
	['G'] = 16, ['H'] = 17, ['J'] = 18, ['K'] = 19, ['L'] = 20, ['M'] = 21, ['N'] = 22,
	['P'] = 23, ['Q'] = 24, ['R'] = 25, ['S'] = 26, ['T'] = 27, ['U'] = 28, ['V'] = 29,
	['W'] = 30, ['X'] = 31, ['Y'] = 32, ['Z'] = 33, ['a'] = 34, ['b'] = 35, ['c'] = 36,
	['d'] = 37, ['e'] = 38, ['f'] = 39, ['g'] = 40, ['h'] = 41, ['i'] = 42, ['j'] = 43,
	['k'] = 44, ['m'] = 45, ['n'] = 46, ['o'] = 47, ['p'] = 48, ['q'] = 49, ['r'] = 50,
	['s'] = 51, ['t'] = 52, ['u'] = 53, ['v'] = 54, ['w'] = 55, ['x'] = 56, ['y'] = 57,
	['z'] = 58,
};

/* Value of a base58 character, or -1 if it is not in the alphabet. */
static int digit_value(char c)
{
	return (int)DIGIT_PLUS_ONE[(uint8_t)c] - 1;
}

/*
 * Multiply the little-endian number num (*len limbs of the given base) by
 * mul and add carry; returns -1 if it would grow past max limbs.
 */
static int mul_add(uint8_t *num, size_t *len, size_t max, unsigned base, unsigned mul,
                   unsigned carry)
{
	for (size_t i = 0; i < *len; i++) {
		carry += num[i] * mul;
		num[i] = (uint8_t)(carry % base);
		carry /= base;
	}
	while (carry > 0) {
		if (*len >= max)
			return -1;
		num[(*len)++] = (uint8_t)(carry % base);
		carry /= base;
	}
	return 0;
}

/* Encode len bytes; writes a NUL-terminated string.  Returns its length, or 0 if cap is too small. */
size_t ns_base58_encode(const uint8_t *in, size_t len, char *out, size_t cap)
{
	size_t zeros = 0, ndigits = 0;
	uint8_t *digits = (uint8_t *)out;

	while (zeros < len && in[zeros] == 0)
		zeros++;
	if (cap <= zeros)
		return 0;
	/* The base-58 digits are built in place in out, least significant first. */
	for (size_t i = zeros; i < len; i++)
		if (mul_add(digits, &ndigits, cap - 1 - zeros, 58, 256, in[i]) != 0)
			return 0;
	reverse(digits, ndigits);
	memmove(out + zeros, digits, ndigits);
	memset(out, ALPHABET[0], zeros);
	for (size_t i = zeros; i < zeros + ndigits; i++)
		out[i] = ALPHABET[(uint8_t)out[i]];
	out[zeros + ndigits] = '\0';
	return zeros + ndigits;
}

/*
 * Decode inlen characters into out; *outlen gets the byte count.  The
 * number is built in 32-bit limbs, least significant first: a quarter of
 * the steps of a byte at a time, which matters to a cache of a million
 * lines.
 */
enum ns_base58_status ns_base58_decode(const char *in, size_t inlen, uint8_t *out, size_t cap,
                                       size_t *outlen)
{
	uint32_t limbs[DECODE_LIMBS_MAX];
	size_t zeros = 0, nlimbs = 0, nbytes;

	for (size_t i = 0; i < inlen; i++)
		if (digit_value(in[i]) < 0)
			return NS_BASE58_BAD_CHAR;
	while (zeros < inlen && in[zeros] == ALPHABET[0])
		zeros++;
	if (zeros > cap)
		return NS_BASE58_TOO_LONG;
	for (size_t i = zeros; i < inlen; i++) {
		uint64_t carry = (unsigned)digit_value(in[i]);

		for (size_t l = 0; l < nlimbs; l++) {
			carry += (uint64_t)limbs[l] * 58;
			limbs[l] = (uint32_t)carry;
			carry >>= 32;
		}
		if (carry > 0) {
			if (nlimbs == DECODE_LIMBS_MAX)
				return NS_BASE58_TOO_LONG;
			limbs[nlimbs++] = (uint32_t)carry;
		}
	}
	nbytes = 4 * nlimbs;
	while (nbytes > 0 && (limbs[(nbytes - 1) / 4] >> (8 * ((nbytes - 1) % 4)) & 0xff) == 0)
		nbytes--;
	if (nbytes > cap - zeros)
		return NS_BASE58_TOO_LONG;
	memset(out, 0, zeros);
	for (size_t b = 0; b < nbytes; b++)
		out[zeros + nbytes - 1 - b] = (uint8_t)(limbs[b / 4] >> (8 * (b % 4)));
	*outlen = zeros + nbytes;
	return NS_BASE58_OK;
}

/*
 * OpenSSL's SHA-256 uses the CPU's SHA instructions, three times as fast
 * as libsodium's on the short inputs here: a cache of a million lines
 * checks four million of them.  Fetched once; looking it up per call would
 * cost more than the hash.
 */
static EVP_MD *openssl_sha256;
static pthread_once_t openssl_sha256_once = PTHREAD_ONCE_INIT;

static void fetch_openssl_sha256(void)
{
	openssl_sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
}

/* SHA256(data) into out; libsodium's if OpenSSL has no SHA-256 to give (a restricted provider). */
static void sha256(const uint8_t *data, size_t len, uint8_t out[crypto_hash_sha256_BYTES])
{
	pthread_once(&openssl_sha256_once, fetch_openssl_sha256);
	if (openssl_sha256 != NULL && EVP_Digest(data, len, out, NULL, openssl_sha256, NULL) == 1)
		return;
	/* SHA-256 has no CPU dispatch in libsodium, so it needs no sodium_init(). */
	crypto_hash_sha256(out, data, len);
}

/* The base58check checksum: the first 4 bytes of SHA256(SHA256(data)). */
static void checksum(const uint8_t *data, size_t len, uint8_t sum[CHECKSUM_LEN])
{
	uint8_t hash[crypto_hash_sha256_BYTES];

	sha256(data, len, hash);
	sha256(hash, sizeof hash, hash);
	memcpy(sum, hash, CHECKSUM_LEN);
}

/* base58check-encode version | payload.  Returns the string length, or 0 if cap is too small. */
size_t ns_base58check_encode(uint8_t version, const uint8_t *payload, size_t len, char *out,
                             size_t cap)
{
	uint8_t raw[CHECK_RAW_MAX];
	size_t body = 1 + len;

	if (len > CHECK_PAYLOAD_MAX)
		return 0;
	raw[0] = version;
	memcpy(raw + 1, payload, len);
	checksum(raw, body, raw + body);
	return ns_base58_encode(raw, body + CHECKSUM_LEN, out, cap);
}

/* Decode and verify a base58check string into *version and payload (*len bytes). */
enum ns_base58_status ns_base58check_decode(const char *in, size_t inlen, uint8_t *version,
                                            uint8_t *payload, size_t cap, size_t *len)
{
	uint8_t raw[CHECK_RAW_MAX], sum[CHECKSUM_LEN];
	size_t rawlen, body;
	enum ns_base58_status status;

	status = ns_base58_decode(in, inlen, raw, sizeof raw, &rawlen);
	if (status != NS_BASE58_OK)
		return status;
	if (rawlen < 1 + CHECKSUM_LEN)
		return NS_BASE58_TOO_SHORT;
	body = rawlen - CHECKSUM_LEN;
	checksum(raw, body, sum);
	if (memcmp(sum, raw + body, CHECKSUM_LEN) != 0)
		return NS_BASE58_BAD_CHECKSUM;
	if (body - 1 > cap)
		return NS_BASE58_TOO_LONG;
	*version = raw[0];
	memcpy(payload, raw + 1, body - 1);
	*len = body - 1;
	return NS_BASE58_OK;
}

/* A short human-readable reason for a status. */
const char *ns_base58_strerror(enum ns_base58_status status)
{
	switch (status) {
	case NS_BASE58_OK:
		return "ok";
	case NS_BASE58_BAD_CHAR:
		return "character outside the base58 alphabet";
	case NS_BASE58_BAD_CHECKSUM:
		return "base58check checksum mismatch";
	case NS_BASE58_TOO_SHORT:
		return "too short for base58check";
	case NS_BASE58_TOO_LONG:
		return "decoded value too long";
	}
	return "unknown base58 error";
}
