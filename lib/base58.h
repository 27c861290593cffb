/*
 * base58 (Bitcoin alphabet) and base58check:
 *   base58check(ver, payload) = base58(ver | payload | SHA256(SHA256(ver | payload))[0..4])
 */
#ifndef NOISESHIM_BASE58_H
#define NOISESHIM_BASE58_H

#include <stddef.h>
#include <stdint.h>

enum ns_base58_status {
	NS_BASE58_OK = 0,
	NS_BASE58_BAD_CHAR,     /* a character outside the alphabet */
	NS_BASE58_BAD_CHECKSUM, /* the 4 trailing bytes do not match */
	NS_BASE58_TOO_SHORT,    /* fewer than version + checksum bytes */
	NS_BASE58_TOO_LONG,     /* decoded value does not fit the caller's buffer */
};

/* Encode len bytes; writes a NUL-terminated string.  Returns its length, or 0 if cap is too small. */
size_t ns_base58_encode(const uint8_t *in, size_t len, char *out, size_t cap);

/* Decode inlen characters into out; *outlen gets the byte count. */
enum ns_base58_status ns_base58_decode(const char *in, size_t inlen, uint8_t *out, size_t cap,
                                       size_t *outlen);

/* base58check-encode version | payload.  Returns the string length, or 0 if cap is too small. */
size_t ns_base58check_encode(uint8_t version, const uint8_t *payload, size_t len, char *out,
                             size_t cap);

/* Decode and verify a base58check string into *version and payload (*len bytes). */
enum ns_base58_status ns_base58check_decode(const char *in, size_t inlen, uint8_t *version,
                                            uint8_t *payload, size_t cap, size_t *len);

/* A short human-readable reason for a status. */
const char *ns_base58_strerror(enum ns_base58_status status);

#endif
