/*
 * Hex helpers shared by the unit tests.
 */
#ifndef NOISESHIM_TEST_HEX_H
#define NOISESHIM_TEST_HEX_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Decode a hex string into a new buffer (*len bytes); NULL on bad input. */
static inline uint8_t *
hex_decode(const char *hex, size_t *len)
{
	size_t n = strlen(hex);
	uint8_t *out;

	if (n % 2 != 0 || (out = malloc(n / 2 + 1)) == NULL)
		return NULL;
	for (size_t i = 0; i < n / 2; i++) {
		unsigned v;
		if (sscanf(hex + 2 * i, "%2x", &v) != 1) {
			free(out);
			return NULL;
		}
		out[i] = (uint8_t)v;
	}
	*len = n / 2;
	return out;
}

/* Decode exactly want bytes of hex into out; -1 on bad input or length. */
static inline int
hex_decode_exact(const char *hex, uint8_t *out, size_t want)
{
	size_t len;
	uint8_t *buf = hex_decode(hex, &len);
	int ret = buf != NULL && len == want ? 0 : -1;

	if (ret == 0)
		memcpy(out, buf, want);
	free(buf);
	return ret;
}

#endif
