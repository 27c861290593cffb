/*
 * Storj NodeURL: [nodeid@]host[:port][?query], several joined with commas.
 * Query parameters: debounce (decimal), f (hex feature mask, bit 0 = TCP Fast
 * Open), noise_proto (decimal), noise_pub or noise_pk (base58check, 32 bytes).
 * Unknown parameters are ignored.
 */
#ifndef NOISESHIM_NODEURL_H
#define NOISESHIM_NODEURL_H

#include <stddef.h>
#include <stdint.h>

#include "wire.h"

enum {
	NS_NODE_ID_LEN = 32,
	NS_NODEURL_HOST_MAX = 256,
	NS_NODEURL_STR_MAX = 1024,  /* enough for the canonical form of any URL */
	NS_FEATURE_TCP_FASTOPEN = 0x1,
};

enum ns_nodeurl_status {
	NS_NODEURL_OK = 0,
	NS_NODEURL_EMPTY,
	NS_NODEURL_BAD_ID,          /* node id: bad base58, checksum or length */
	NS_NODEURL_BAD_HOST,        /* empty host, or an unclosed '[' */
	NS_NODEURL_BAD_PORT,        /* not decimal, 0, or above 65535 */
	NS_NODEURL_BAD_NOISE_PUB,   /* bad base58 character */
	NS_NODEURL_NOISE_PUB_CHECKSUM,
	NS_NODEURL_NOISE_PUB_LENGTH, /* decodes, but not to 32 bytes */
	NS_NODEURL_BAD_NOISE_PROTO,
	NS_NODEURL_BAD_DEBOUNCE,
	NS_NODEURL_BAD_FEATURES,
	NS_NODEURL_TOO_LONG,
};

enum ns_addr_family { NS_ADDR_NAME = 0, NS_ADDR_IPV4 = 4, NS_ADDR_IPV6 = 6 };

struct ns_nodeurl {
	int has_id;
	uint8_t id[NS_NODE_ID_LEN];
	char host[NS_NODEURL_HOST_MAX];   /* without brackets */
	enum ns_addr_family family;       /* IPv4/IPv6 when host is numeric */
	uint8_t addr[16];                 /* network order: 4 bytes for IPv4, 16 for IPv6 */
	uint16_t port;                    /* 0 when absent */
	int has_debounce;
	uint32_t debounce;
	int has_features;
	uint64_t features;
	int noise_proto;                  /* 0 when absent */
	int has_noise_pub;
	uint8_t noise_pub[NS_KEY_LEN];
};

/* Parse one NodeURL (no commas) of len bytes into *u. */
enum ns_nodeurl_status ns_nodeurl_parse(const char *s, size_t len, struct ns_nodeurl *u);

/* Parse a comma-joined list into up to max entries; *count gets how many. */
enum ns_nodeurl_status ns_nodeurl_parse_list(const char *s, struct ns_nodeurl *out, size_t max,
                                             size_t *count);

/* Canonical form, parameters ordered debounce, f, noise_proto, noise_pub.  Returns length or 0. */
size_t ns_nodeurl_format(const struct ns_nodeurl *u, char *out, size_t cap);

/* A short human-readable reason for a status. */
const char *ns_nodeurl_strerror(enum ns_nodeurl_status status);

/* Node id text form <-> bytes (base58check of id[0..31] plus a zero byte, version id[31]). */
size_t ns_node_id_encode(const uint8_t id[NS_NODE_ID_LEN], char *out, size_t cap);
enum ns_nodeurl_status ns_node_id_decode(const char *s, size_t len, uint8_t id[NS_NODE_ID_LEN]);

/* noise_pub text form <-> 32-byte X25519 public key. */
size_t ns_noise_pub_encode(const uint8_t pub[NS_KEY_LEN], char *out, size_t cap);
enum ns_nodeurl_status ns_noise_pub_decode(const char *s, size_t len, uint8_t pub[NS_KEY_LEN]);

#endif
