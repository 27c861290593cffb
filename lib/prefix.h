/*
 * The cleartext route prefix a client sends before msg1 ("DRPC!N!1"),
 * which lets a responder tell Noise from plaintext on one port.
 */
#ifndef NOISESHIM_PREFIX_H
#define NOISESHIM_PREFIX_H

#include <stddef.h>
#include <stdint.h>

#include "wire.h"

enum ns_prefix_match {
	NS_PREFIX_MATCH,     /* all 8 bytes present and equal */
	NS_PREFIX_PARTIAL,   /* fewer than 8 bytes so far, all equal */
	NS_PREFIX_MISMATCH,  /* some byte differs */
};

/* Compare the first len bytes of a stream against prefix. */
enum ns_prefix_match ns_prefix_match(const uint8_t *buf, size_t len,
                                     const uint8_t prefix[NS_ROUTE_PREFIX_LEN]);

/* Copy a configured prefix string into out; -1 unless it is exactly 8 bytes. */
int ns_prefix_parse(const char *text, uint8_t out[NS_ROUTE_PREFIX_LEN]);

#endif
