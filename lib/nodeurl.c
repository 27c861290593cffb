/*
 * Storj NodeURL: [nodeid@]host[:port][?query].  The host text is kept as
 * written so that formatting a parsed URL gives it back unchanged; numeric
 * hosts are also decoded into family/addr for matching connect() calls.
 */
#include "nodeurl.h"

#include <arpa/inet.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "base58.h"

enum {
	/* Storj's noise_pub is base58check with version byte 0 and the raw key as payload. */
	NOISE_PUB_VERSION = 0,
	/* A version byte, 32 payload bytes and a checksum take at most 51 base58 digits. */
	BASE58_KEY_STR_MAX = 64,
	PORT_MAX = 65535,
};

/* Parse n decimal digits into *out; -1 if empty, not decimal, or above max. */
static int parse_decimal(const char *s, size_t n, uint64_t max, uint64_t *out)
{
	uint64_t v = 0;

	if (n == 0)
		return -1;
	for (size_t i = 0; i < n; i++) {
		unsigned d = (unsigned)(s[i] - '0');

		if (d > 9 || v > (max - d) / 10)
			return -1;
		v = v * 10 + d;
	}
	*out = v;
	return 0;
}

/* Value of a hex digit (either case), or -1. */
static int hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Parse n hex digits into *out; -1 if empty, not hex, or over 64 bits. */
static int parse_hex(const char *s, size_t n, uint64_t *out)
{
	uint64_t v = 0;

	if (n == 0)
		return -1;
	for (size_t i = 0; i < n; i++) {
		int d = hex_value(s[i]);

		if (d < 0 || v > UINT64_MAX >> 4)
			return -1;
		v = v << 4 | (unsigned)d;
	}
	*out = v;
	return 0;
}

/* Node id text form <-> bytes (base58check of id[0..31] plus a zero byte, version id[31]). */
size_t ns_node_id_encode(const uint8_t id[NS_NODE_ID_LEN], char *out, size_t cap)
{
	uint8_t payload[NS_NODE_ID_LEN];

	memcpy(payload, id, NS_NODE_ID_LEN - 1);
	payload[NS_NODE_ID_LEN - 1] = 0;
	return ns_base58check_encode(id[NS_NODE_ID_LEN - 1], payload, sizeof payload, out, cap);
}

/* Node id text form <-> bytes (base58check of id[0..31] plus a zero byte, version id[31]). */
enum ns_nodeurl_status ns_node_id_decode(const char *s, size_t len, uint8_t id[NS_NODE_ID_LEN])
{
	uint8_t payload[NS_NODE_ID_LEN], version;
	size_t n;

	if (ns_base58check_decode(s, len, &version, payload, sizeof payload, &n) != NS_BASE58_OK ||
	    n != NS_NODE_ID_LEN)
		return NS_NODEURL_BAD_ID;
	/* Like Storj, the payload's last byte is not checked: the version replaces it. */
	memcpy(id, payload, NS_NODE_ID_LEN - 1);
	id[NS_NODE_ID_LEN - 1] = version;
	return NS_NODEURL_OK;
}

/* noise_pub text form <-> 32-byte X25519 public key. */
size_t ns_noise_pub_encode(const uint8_t pub[NS_KEY_LEN], char *out, size_t cap)
{
	return ns_base58check_encode(NOISE_PUB_VERSION, pub, NS_KEY_LEN, out, cap);
}

/* noise_pub text form <-> 32-byte X25519 public key. */
enum ns_nodeurl_status ns_noise_pub_decode(const char *s, size_t len, uint8_t pub[NS_KEY_LEN])
{
	uint8_t key[NS_KEY_LEN], version;
	size_t n;

	/* Like Storj, any version byte is accepted; only the key matters. */
	switch (ns_base58check_decode(s, len, &version, key, sizeof key, &n)) {
	case NS_BASE58_OK:
		break;
	case NS_BASE58_BAD_CHAR:
		return NS_NODEURL_BAD_NOISE_PUB;
	case NS_BASE58_BAD_CHECKSUM:
		return NS_NODEURL_NOISE_PUB_CHECKSUM;
	case NS_BASE58_TOO_SHORT:
	case NS_BASE58_TOO_LONG:
		return NS_NODEURL_NOISE_PUB_LENGTH;
	}
	if (n != NS_KEY_LEN)
		return NS_NODEURL_NOISE_PUB_LENGTH;
	memcpy(pub, key, NS_KEY_LEN);
	return NS_NODEURL_OK;
}

/* ASCII letters, digits, '-', '.' and '_'; spelled out so that the locale cannot widen it. */
static int is_hostname_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '-' || c == '.' || c == '_';
}

/* Store the host text and, for an IP literal, its family and address. */
static enum ns_nodeurl_status set_host(const char *h, size_t n, int bracketed, struct ns_nodeurl *u)
{
	if (n == 0)
		return NS_NODEURL_BAD_HOST;
	if (n >= sizeof u->host)
		return NS_NODEURL_TOO_LONG;
	memcpy(u->host, h, n);
	u->host[n] = '\0';
	if (bracketed) {
		/* Brackets exist only to carry an IPv6 literal. */
		if (inet_pton(AF_INET6, u->host, u->addr) != 1)
			return NS_NODEURL_BAD_HOST;
		u->family = NS_ADDR_IPV6;
		return NS_NODEURL_OK;
	}
	if (inet_pton(AF_INET, u->host, u->addr) == 1) {
		u->family = NS_ADDR_IPV4;
		return NS_NODEURL_OK;
	}
	for (size_t i = 0; i < n; i++)
		if (!is_hostname_char(h[i]))
			return NS_NODEURL_BAD_HOST;
	u->family = NS_ADDR_NAME;
	return NS_NODEURL_OK;
}

/* Parse host[:port] or [ipv6][:port] from [p, end). */
static enum ns_nodeurl_status parse_host_port(const char *p, const char *end, struct ns_nodeurl *u)
{
	const char *host = p, *host_end, *rest;
	enum ns_nodeurl_status status;
	uint64_t port;

	if (p < end && *p == '[') {
		host = p + 1;
		host_end = memchr(host, ']', (size_t)(end - host));
		if (host_end == NULL)
			return NS_NODEURL_BAD_HOST;
		rest = host_end + 1;
		if (rest < end && *rest != ':')
			return NS_NODEURL_BAD_HOST;
	} else {
		host_end = memchr(p, ':', (size_t)(end - p));
		if (host_end == NULL)
			host_end = end;
		rest = host_end;
	}
	status = set_host(host, (size_t)(host_end - host), host != p, u);
	if (status != NS_NODEURL_OK)
		return status;
	if (rest == end)
		return NS_NODEURL_OK;
	rest++; /* the ':' */
	if (parse_decimal(rest, (size_t)(end - rest), PORT_MAX, &port) != 0 || port == 0)
		return NS_NODEURL_BAD_PORT;
	u->port = (uint16_t)port;
	return NS_NODEURL_OK;
}

static enum ns_nodeurl_status parse_debounce(const char *v, size_t n, struct ns_nodeurl *u)
{
	uint64_t x;

	if (parse_decimal(v, n, UINT32_MAX, &x) != 0)
		return NS_NODEURL_BAD_DEBOUNCE;
	u->debounce = (uint32_t)x;
	u->has_debounce = 1;
	return NS_NODEURL_OK;
}

static enum ns_nodeurl_status parse_features(const char *v, size_t n, struct ns_nodeurl *u)
{
	if (parse_hex(v, n, &u->features) != 0)
		return NS_NODEURL_BAD_FEATURES;
	u->has_features = 1;
	return NS_NODEURL_OK;
}

static enum ns_nodeurl_status parse_noise_proto(const char *v, size_t n, struct ns_nodeurl *u)
{
	uint64_t x;

	if (parse_decimal(v, n, INT_MAX, &x) != 0)
		return NS_NODEURL_BAD_NOISE_PROTO;
	u->noise_proto = (int)x;
	return NS_NODEURL_OK;
}

static enum ns_nodeurl_status parse_noise_pub(const char *v, size_t n, struct ns_nodeurl *u)
{
	enum ns_nodeurl_status status = ns_noise_pub_decode(v, n, u->noise_pub);

	if (status == NS_NODEURL_OK)
		u->has_noise_pub = 1;
	return status;
}

struct param {
	const char *name;
	enum ns_nodeurl_status (*parse)(const char *value, size_t n, struct ns_nodeurl *u);
};

static const struct param PARAMS[] = {
	{ "debounce", parse_debounce },
	{ "f", parse_features },
	{ "noise_proto", parse_noise_proto },
	{ "noise_pub", parse_noise_pub },
	{ "noise_pk", parse_noise_pub }, /* the name used in Storj's design document */
};

static const struct param *find_param(const char *name, size_t n)
{
	for (size_t i = 0; i < sizeof PARAMS / sizeof PARAMS[0]; i++)
		if (strlen(PARAMS[i].name) == n && memcmp(PARAMS[i].name, name, n) == 0)
			return &PARAMS[i];
	return NULL;
}

/* Parse one name[=value] pair; unknown names are ignored. */
static enum ns_nodeurl_status parse_param(const char *p, const char *end, struct ns_nodeurl *u)
{
	const char *eq = memchr(p, '=', (size_t)(end - p));
	const char *name_end = eq == NULL ? end : eq;
	const char *value = eq == NULL ? end : eq + 1;
	const struct param *param = find_param(p, (size_t)(name_end - p));

	/* An empty value counts as absent, as in Storj. */
	if (param == NULL || value == end)
		return NS_NODEURL_OK;
	return param->parse(value, (size_t)(end - value), u);
}

/* Parse the '&'-separated query in [p, end); a repeated parameter keeps its last value. */
static enum ns_nodeurl_status parse_query(const char *p, const char *end, struct ns_nodeurl *u)
{
	while (p < end) {
		const char *amp = memchr(p, '&', (size_t)(end - p));
		const char *param_end = amp == NULL ? end : amp;
		enum ns_nodeurl_status status = parse_param(p, param_end, u);

		if (status != NS_NODEURL_OK)
			return status;
		p = param_end + (amp != NULL);
	}
	return NS_NODEURL_OK;
}

/* Parse one NodeURL (no commas) of len bytes into *u. */
enum ns_nodeurl_status ns_nodeurl_parse(const char *s, size_t len, struct ns_nodeurl *u)
{
	const char *end = s + len, *query, *authority_end, *at, *host;
	enum ns_nodeurl_status status;

	memset(u, 0, sizeof *u);
	if (len == 0)
		return NS_NODEURL_EMPTY;
	query = memchr(s, '?', len);
	authority_end = query == NULL ? end : query;
	at = memchr(s, '@', (size_t)(authority_end - s));
	host = s;
	if (at != NULL) {
		status = ns_node_id_decode(s, (size_t)(at - s), u->id);
		if (status != NS_NODEURL_OK)
			return status;
		u->has_id = 1;
		host = at + 1;
	}
	status = parse_host_port(host, authority_end, u);
	if (status != NS_NODEURL_OK || query == NULL)
		return status;
	return parse_query(query + 1, end, u);
}

/* Parse a comma-joined list into up to max entries; *count gets how many. */
enum ns_nodeurl_status ns_nodeurl_parse_list(const char *s, struct ns_nodeurl *out, size_t max,
                                             size_t *count)
{
	/* On failure *count is the index of the entry that failed. */
	*count = 0;
	for (;;) {
		const char *comma = strchr(s, ',');
		size_t len = comma == NULL ? strlen(s) : (size_t)(comma - s);
		enum ns_nodeurl_status status;

		if (*count == max)
			return NS_NODEURL_TOO_LONG;
		status = ns_nodeurl_parse(s, len, &out[*count]);
		if (status != NS_NODEURL_OK)
			return status;
		(*count)++;
		if (comma == NULL)
			return NS_NODEURL_OK;
		s = comma + 1;
	}
}

/* An output buffer that remembers whether anything did not fit. */
struct writer {
	char *buf;
	size_t cap, len;
	int overflow;
};

static void put(struct writer *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void put(struct writer *w, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (w->overflow)
		return;
	va_start(ap, fmt);
	n = vsnprintf(w->buf + w->len, w->cap - w->len, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= w->cap - w->len) {
		w->overflow = 1;
		return;
	}
	w->len += (size_t)n;
}

/* Start the next query parameter: '?' before the first, '&' before the others. */
static void put_param_name(struct writer *w, int *first, const char *name)
{
	put(w, "%c%s=", *first ? '?' : '&', name);
	*first = 0;
}

static void put_query(struct writer *w, const struct ns_nodeurl *u)
{
	char key[BASE58_KEY_STR_MAX];
	int first = 1;

	if (u->has_debounce) {
		put_param_name(w, &first, "debounce");
		put(w, "%" PRIu32, u->debounce);
	}
	if (u->has_features) {
		put_param_name(w, &first, "f");
		put(w, "%" PRIx64, u->features);
	}
	if (u->noise_proto != 0) {
		put_param_name(w, &first, "noise_proto");
		put(w, "%d", u->noise_proto);
	}
	if (u->has_noise_pub) {
		put_param_name(w, &first, "noise_pub");
		if (ns_noise_pub_encode(u->noise_pub, key, sizeof key) == 0) {
			w->overflow = 1;
			return;
		}
		put(w, "%s", key);
	}
}

/* Canonical form, parameters ordered debounce, f, noise_proto, noise_pub.  Returns length or 0. */
size_t ns_nodeurl_format(const struct ns_nodeurl *u, char *out, size_t cap)
{
	struct writer w = { .buf = out, .cap = cap };
	char id[BASE58_KEY_STR_MAX];

	if (cap == 0)
		return 0;
	if (u->has_id) {
		if (ns_node_id_encode(u->id, id, sizeof id) == 0)
			return 0;
		put(&w, "%s@", id);
	}
	/* An IPv6 literal needs brackets so that its colons are not read as the port. */
	put(&w, strchr(u->host, ':') != NULL ? "[%s]" : "%s", u->host);
	if (u->port != 0)
		put(&w, ":%u", (unsigned)u->port);
	put_query(&w, u);
	return w.overflow ? 0 : w.len;
}

/* A short human-readable reason for a status. */
const char *ns_nodeurl_strerror(enum ns_nodeurl_status status)
{
	switch (status) {
	case NS_NODEURL_OK:
		return "ok";
	case NS_NODEURL_EMPTY:
		return "empty NodeURL";
	case NS_NODEURL_BAD_ID:
		return "bad node id (base58, checksum or length)";
	case NS_NODEURL_BAD_HOST:
		return "bad host (empty, unclosed '[', or not a host name or IP address)";
	case NS_NODEURL_BAD_PORT:
		return "bad port (must be a decimal number from 1 to 65535)";
	case NS_NODEURL_BAD_NOISE_PUB:
		return "bad noise_pub (character outside the base58 alphabet)";
	case NS_NODEURL_NOISE_PUB_CHECKSUM:
		return "bad noise_pub (checksum mismatch)";
	case NS_NODEURL_NOISE_PUB_LENGTH:
		return "bad noise_pub (not a 32-byte key)";
	case NS_NODEURL_BAD_NOISE_PROTO:
		return "bad noise_proto (must be a decimal number)";
	case NS_NODEURL_BAD_DEBOUNCE:
		return "bad debounce (must be a 32-bit decimal number)";
	case NS_NODEURL_BAD_FEATURES:
		return "bad f (must be a hex feature mask of at most 64 bits)";
	case NS_NODEURL_TOO_LONG:
		return "too long (host name or number of entries)";
	}
	return "unknown NodeURL error";
}
