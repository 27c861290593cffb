/*
 * base58 (Bitcoin alphabet) and base58check.  Values are converted as one
 * big number, a digit at a time; inputs are a few dozen bytes, so the
 * quadratic cost does not matter.
 */
#include "base58.h"

#include <string.h>

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
};

static void reverse(uint8_t *p, size_t len)
{
	for (size_t i = 0; i < len / 2; i++) {
		uint8_t t = p[i];

		p[i] = p[len - 1 - i];
		p[len - 1 - i] = t;
	}
}

/* Value of a base58 character, or -1 if it is not in the alphabet. */
static int digit_value(char c)
{
	const char *hit = c == '\0' ? NULL : strchr(ALPHABET, c);

	return hit == NULL ? -1 : (int)(hit - ALPHABET);
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

/* Decode inlen characters into out; *outlen gets the byte count. */
enum ns_base58_status ns_base58_decode(const char *in, size_t inlen, uint8_t *out, size_t cap,
                                       size_t *outlen)
{
	size_t zeros = 0, nbytes = 0;

	for (size_t i = 0; i < inlen; i++)
		if (digit_value(in[i]) < 0)
			return NS_BASE58_BAD_CHAR;
	while (zeros < inlen && in[zeros] == ALPHABET[0])
		zeros++;
	if (zeros > cap)
		return NS_BASE58_TOO_LONG;
	/* The bytes are built in place in out, least significant first. */
	for (size_t i = zeros; i < inlen; i++)
		if (mul_add(out, &nbytes, cap - zeros, 256, 58, (unsigned)digit_value(in[i])) != 0)
			return NS_BASE58_TOO_LONG;
	reverse(out, nbytes);
	memmove(out + zeros, out, nbytes);
	memset(out, 0, zeros);
	*outlen = zeros + nbytes;
	return NS_BASE58_OK;
}

/* The base58check checksum: the first 4 bytes of SHA256(SHA256(data)). */
static void checksum(const uint8_t *data, size_t len, uint8_t sum[CHECKSUM_LEN])
{
	uint8_t hash[crypto_hash_sha256_BYTES];

	/* SHA-256 has no CPU dispatch in libsodium, so it needs no sodium_init(). */
	crypto_hash_sha256(hash, data, len);
	crypto_hash_sha256(hash, hash, sizeof hash);
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
