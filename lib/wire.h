/*
 * Wire layout and limits of Storj's "DRPC over Noise", in one place.
 *
 *   client -> server: route prefix | 80 LL LL LL | msg1
 *   server -> client:                80 LL LL LL | msg2
 *   then both ways:                  80 LL LL LL | AEAD(plaintext)
 */
#ifndef NOISESHIM_WIRE_H
#define NOISESHIM_WIRE_H

enum {
	NS_KEY_LEN = 32,            /* X25519 keys, AEAD keys */
	NS_HASH_LEN = 64,           /* BLAKE2b-512 */
	NS_TAG_LEN = 16,            /* AEAD tag */
	NS_NONCE_LEN = 12,          /* AEAD nonce: 4 zero bytes + 64-bit counter */

	NS_ROUTE_PREFIX_LEN = 8,
	NS_FRAME_HEADER_LEN = 4,
	NS_FRAME_MARKER = 0x80,

	/* Largest plaintext we put in one frame: Go readers panic above it. */
	NS_MAX_PLAINTEXT = 65535,
	NS_MAX_TRANSPORT_BODY = NS_MAX_PLAINTEXT + NS_TAG_LEN,
	NS_MIN_TRANSPORT_BODY = NS_TAG_LEN,

	/* msg1 = e | enc(s) | enc(payload) */
	NS_MSG1_OVERHEAD = NS_KEY_LEN + (NS_KEY_LEN + NS_TAG_LEN) + NS_TAG_LEN,
	NS_MAX_MSG1_BODY = NS_MAX_PLAINTEXT + NS_MSG1_OVERHEAD,

	/* msg2 = e | enc(payload) */
	NS_MSG2_OVERHEAD = NS_KEY_LEN + NS_TAG_LEN,
	NS_MAX_MSG2_BODY = NS_MAX_PLAINTEXT + NS_MSG2_OVERHEAD,

	/* Biggest body any frame may carry; sizes every receive buffer. */
	NS_MAX_FRAME_BODY = NS_MAX_MSG1_BODY,
	NS_MAX_FRAME = NS_FRAME_HEADER_LEN + NS_MAX_FRAME_BODY,

	/* The client's first write: prefix, header, msg1. */
	NS_MAX_FIRST_FLIGHT = NS_ROUTE_PREFIX_LEN + NS_MAX_FRAME,
};

/* Default route prefix a client sends before msg1 (not NUL-terminated on the wire). */
#define NS_ROUTE_PREFIX_DEFAULT "DRPC!N!1"

#endif
