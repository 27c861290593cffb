/*
 * Server proxy handshake: the route prefix, the load guard, msg1 under any
 * of our keys and either suite, the allowlist and the replay check, then the target
 * connection (with an optional PROXY protocol v2 header) and msg2 at once:
 * a Go initiator holds its second write until msg2 arrives.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "prefix.h"
#include "proxy.h"

static const uint8_t ROUTE_PREFIX[NS_ROUTE_PREFIX_LEN] = NS_ROUTE_PREFIX_DEFAULT;

enum {
	/* PROXY protocol v2: 12-byte signature, version/command, family, length, addresses. */
	PP2_HEADER_LEN = 16,
	PP2_ADDRS_V4 = 12,
	PP2_ADDRS_V6 = 36,
	PP2_MAX = PP2_HEADER_LEN + PP2_ADDRS_V6,
	PP2_VERSION_PROXY = 0x21,
	PP2_TCP_V4 = 0x11,
	PP2_TCP_V6 = 0x21,
};

static const uint8_t PP2_SIGNATURE[12] = { 0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                           0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A };

/* An address as 16 bytes of IPv6 (IPv4 mapped) and a port, both network order. */
struct pp2_addr {
	uint8_t v6[16];
	uint16_t port;
	int is_v4;
};

static void pp2_addr_of(const struct sockaddr_storage *ss, struct pp2_addr *a)
{
	static const uint8_t mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)ss;
		memcpy(a->v6, mapped, sizeof mapped);
		memcpy(a->v6 + 12, &in->sin_addr, 4);
		a->port = in->sin_port;
	} else {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ss;
		memcpy(a->v6, &in6->sin6_addr, 16);
		a->port = in6->sin6_port;
	}
	a->is_v4 = memcmp(a->v6, mapped, sizeof mapped) == 0;
}

/*
 * The PROXY v2 header naming the client (source) and the address it
 * reached (destination); an IPv4-mapped pair is sent as IPv4.  Its length.
 */
static size_t pp2_header(const struct proxy_pair *p, uint8_t out[PP2_MAX])
{
	struct pp2_addr src, dst;
	size_t addrs;
	uint8_t *a = out + PP2_HEADER_LEN;

	pp2_addr_of(&p->peer_addr, &src);
	pp2_addr_of(&p->local_addr, &dst);
	memcpy(out, PP2_SIGNATURE, sizeof PP2_SIGNATURE);
	out[12] = PP2_VERSION_PROXY;
	if (src.is_v4 && dst.is_v4) {
		out[13] = PP2_TCP_V4;
		addrs = PP2_ADDRS_V4;
		memcpy(a, src.v6 + 12, 4);
		memcpy(a + 4, dst.v6 + 12, 4);
		memcpy(a + 8, &src.port, 2);
		memcpy(a + 10, &dst.port, 2);
	} else {
		out[13] = PP2_TCP_V6;
		addrs = PP2_ADDRS_V6;
		memcpy(a, src.v6, 16);
		memcpy(a + 16, dst.v6, 16);
		memcpy(a + 32, &src.port, 2);
		memcpy(a + 34, &dst.port, 2);
	}
	out[14] = (uint8_t)(addrs >> 8);
	out[15] = (uint8_t)addrs;
	return PP2_HEADER_LEN + addrs;
}

/*
 * Connect to the target and queue the PROXY header (if configured) and the
 * client's first bytes for it.  >0, or -1 closed.
 */
static int open_target(struct proxy_pair *p, const uint8_t *first, size_t len)
{
	uint8_t header[PP2_MAX];
	size_t hlen = p->cfg->proxy_protocol ? pp2_header(p, header) : 0;
	uint8_t *buf;

	if (proxy_connect_target(p, 0) < 0)
		return -1;
	if (hlen + len == 0)
		return 1;
	if ((buf = malloc(hlen + len)) == NULL)
		return proxy_fail(p, "out of memory for the first bytes");
	memcpy(buf, header, hlen);
	memcpy(buf + hlen, first, len);
	p->to_plain = (struct proxy_buf){ .data = buf, .len = hlen + len };
	return 1;
}

/* Mixed mode: not a Noise client; relay it as it is, the bytes read so far first. */
static int start_passthrough(struct proxy_pair *p)
{
	p->passthrough = 1;
	p->phase = PHASE_RELAY;
	return open_target(p, p->prefix, p->prefix_have);
}

/* Read the route prefix.  >0 progress, 0 none, -1 closed. */
static int read_prefix(struct proxy_pair *p)
{
	struct proxy_side *s = &p->noise;
	ssize_t n;

	if (!s->readable)
		return 0;
	n = recv(s->fd, p->prefix + p->prefix_have, NS_ROUTE_PREFIX_LEN - p->prefix_have, 0);
	if (n < 0) {
		if (errno == EINTR)
			return 1;
		if (errno == EAGAIN || errno == EWOULDBLOCK) {
			s->readable = 0;
			return 0;
		}
		return proxy_fail(p, "client: read: %s", strerror(errno));
	}
	if (n == 0)
		return proxy_fail(p, "the client closed the connection inside the handshake");
	p->prefix_have += (size_t)n;
	switch (ns_prefix_match(p->prefix, p->prefix_have, ROUTE_PREFIX)) {
	case NS_PREFIX_MISMATCH:
		if (p->cfg->mixed)
			return start_passthrough(p);
		return proxy_fail(p, "not a Noise client: the first bytes are not the route prefix");
	case NS_PREFIX_PARTIAL:
		return 1;
	case NS_PREFIX_MATCH:
		ns_frame_reader_init(&p->reader, NULL, NS_MSG1_OVERHEAD, NS_MAX_MSG1_BODY);
		return 1;
	}
	return 1;
}

/* msg2, empty, queued at once; the transport ciphers take over. */
static int send_msg2(struct proxy_pair *p)
{
	size_t len = NS_FRAME_HEADER_LEN + NS_MSG2_OVERHEAD;
	uint8_t *wire = malloc(len);

	if (wire == NULL)
		return proxy_fail(p, "out of memory for msg2");
	ns_frame_header_put(wire, NS_MSG2_OVERHEAD);
	if (ns_handshake_write_msg2(p->hs, NULL, 0, wire + NS_FRAME_HEADER_LEN) < 0 ||
	    ns_handshake_split(p->hs, &p->tx, &p->rx) < 0) {
		free(wire);
		return proxy_fail(p, "msg2: %s", ns_handshake_error(p->hs));
	}
	ns_handshake_free(p->hs);
	p->hs = NULL;
	p->to_noise = (struct proxy_buf){ .data = wire, .len = len };
	return 1;
}

/*
 * Whether the client of msg1 may enter and its first flight is fresh,
 * asked in that order: a client that may not enter leaves no trace in the
 * replay window.  >0 yes, -1 closed.
 */
static int admit(struct proxy_pair *p, int carries_data)
{
	struct proxy_identity *id = p->cfg->identity;
	char why[NS_SERVER_KEYS_REFUSAL_MAX];

	if (!proxy_identity_allowed(id, p->hs, why, sizeof why))
		return proxy_fail(p, "%s", why);
	switch (proxy_identity_check_replay(id, p->hs, carries_data)) {
	case NS_REPLAY_REPEAT:
		return proxy_fail(p, "replayed first flight refused");
	case NS_REPLAY_FULL:
		return proxy_fail(p, "replay window full: 0-RTT data refused "
		                  "(raise NOISESHIM_REPLAY_CAPACITY)");
	case NS_REPLAY_UNCHECKED:
		return proxy_fail(p, "replay window or store unavailable: 0-RTT data refused");
	case NS_REPLAY_FRESH:
		break;
	}
	return 1;
}

/* msg1: who the client is, whether it may enter, whether its flight is fresh, its first bytes. */
static int read_msg1(struct proxy_pair *p)
{
	const struct proxy_config *cfg = p->cfg;
	const uint8_t *payload;
	uint8_t *body;
	size_t len;
	long n;
	int r;

	switch (proxy_read_frame(p, &len)) {
	case FRAME_AGAIN:
		return 0;
	case FRAME_ERROR:
		return -1;
	case FRAME_EOF:
		return proxy_fail(p, "the client closed the connection inside the handshake");
	case FRAME_READY:
		break;
	}
	body = proxy_take_frame(p);
	if (!proxy_identity_admit_peer((const struct sockaddr *)&p->peer_addr)) {
		free(body);
		return proxy_fail(p, "first flight refused before any DH: the server is under load "
		                  "and this address is above NOISESHIM_RATE_LIMIT");
	}
	/* Files changed since the last look are in use for this client already. */
	proxy_identity_refresh(cfg->identity);
	n = proxy_identity_read_msg1(cfg->identity, body, len, &payload, &p->hs);
	if (n < 0) {
		free(body);
		return proxy_fail(p, "msg1 does not decrypt: it was made for another server key");
	}
	if (admit(p, n > 0) < 0) {
		free(body);
		return -1;
	}
	ns_frame_reader_limits(&p->reader, NS_MIN_TRANSPORT_BODY, NS_MAX_TRANSPORT_BODY);
	p->phase = PHASE_RELAY;
	r = open_target(p, payload, (size_t)n);
	free(body);
	if (r < 0)
		return -1;
	return send_msg2(p);
}

/* Server role: advance the handshake.  >0 progress, 0 none, -1 closed. */
int proxy_server_step(struct proxy_pair *p)
{
	if (p->prefix_have < NS_ROUTE_PREFIX_LEN)
		return read_prefix(p);
	return read_msg1(p);
}
