/*
 * Client proxy handshake: gather the program's first bytes, send them in
 * msg1 (inside the SYN when the target takes TCP Fast Open), read msg2.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "cipher.h"
#include "proxy.h"

static const uint8_t ROUTE_PREFIX[NS_ROUTE_PREFIX_LEN] = NS_ROUTE_PREFIX_DEFAULT;

/* Client role: open the noise side and start the first-flight timer.  0 or -1 closed. */
int proxy_client_start(struct proxy_pair *p)
{
	const struct proxy_config *cfg = p->cfg;

	p->phase = PHASE_FIRST_FLIGHT;
	/* Connecting now overlaps the TCP handshake with the wait, where TFO does not apply. */
	if (proxy_connect_target(p, cfg->tfo) < 0)
		return -1;
	p->flight_due_us = proxy_now_us() + cfg->first_wait_us;
	return 0;
}

/* Seal the gathered first flight into prefix | header | msg1, queued for the noise side. */
static int send_msg1(struct proxy_pair *p)
{
	const struct proxy_config *cfg = p->cfg;
	size_t body = p->flight_len + NS_MSG1_OVERHEAD;
	uint8_t *wire = malloc(NS_ROUTE_PREFIX_LEN + NS_FRAME_HEADER_LEN + body);
	long n;

	if (wire == NULL)
		return proxy_fail(p, "out of memory for msg1");
	p->hs = ns_handshake_new_initiator(cfg->suite, &cfg->static_key, cfg->remote_pub, NULL, 0);
	if (p->hs == NULL) {
		free(wire);
		return proxy_fail(p, "cannot start a handshake");
	}
	memcpy(wire, ROUTE_PREFIX, NS_ROUTE_PREFIX_LEN);
	ns_frame_header_put(wire + NS_ROUTE_PREFIX_LEN, body);
	n = ns_handshake_write_msg1(p->hs, p->flight, p->flight_len,
	                            wire + NS_ROUTE_PREFIX_LEN + NS_FRAME_HEADER_LEN);
	free(p->flight);
	p->flight = NULL;
	if (n < 0) {
		free(wire);
		return proxy_fail(p, "msg1: %s", ns_handshake_error(p->hs));
	}
	p->to_noise = (struct proxy_buf){ .data = wire,
	                                  .len = NS_ROUTE_PREFIX_LEN + NS_FRAME_HEADER_LEN + body };
	p->flight_due_us = 0;
	p->phase = PHASE_WAIT_MSG2;
	ns_frame_reader_init(&p->reader, NULL, NS_MSG2_OVERHEAD, NS_MAX_MSG2_BODY);
	return 1;
}

/* Take what the program has written so far into the first flight. */
static int gather(struct proxy_pair *p)
{
	struct proxy_side *s = &p->plain;
	uint64_t now;
	ssize_t n;

	if (!s->readable)
		return 0;
	if (p->flight == NULL && (p->flight = malloc(NS_MAX_PLAINTEXT)) == NULL)
		return proxy_fail(p, "out of memory for the first flight");
	n = recv(s->fd, p->flight + p->flight_len, NS_MAX_PLAINTEXT - p->flight_len, 0);
	if (n < 0) {
		if (errno == EINTR)
			return 1;
		if (errno == EAGAIN || errno == EWOULDBLOCK) {
			s->readable = 0;
			return 0;
		}
		return proxy_fail(p, "%s: read: %s", s->name, strerror(errno));
	}
	if (n == 0) {
		/* The program has said all it will: no reason to wait. */
		s->eof = 1;
		return send_msg1(p);
	}
	if ((size_t)n < NS_MAX_PLAINTEXT - p->flight_len)
		proxy_side_drained(s);
	now = proxy_now_us();
	/* A program that keeps writing small pieces does not hold msg1 back for long. */
	if (p->flight_len == 0)
		p->flight_last_us = now + p->cfg->first_wait_us;
	p->flight_len += (size_t)n;
	if (p->flight_len == NS_MAX_PLAINTEXT || now >= p->flight_last_us)
		return send_msg1(p);
	p->flight_due_us = now + p->cfg->first_quiet_us;
	if (p->flight_due_us > p->flight_last_us)
		p->flight_due_us = p->flight_last_us;
	return 1;
}

/* msg2: the handshake is done; its payload is the server's first bytes. */
static int read_msg2(struct proxy_pair *p)
{
	const uint8_t *payload;
	uint8_t *body;
	size_t len;
	long n;

	switch (proxy_read_frame(p, &len)) {
	case FRAME_AGAIN:
		return 0;
	case FRAME_ERROR:
		return -1;
	case FRAME_EOF:
		return proxy_fail(p, "target %s closed the connection before msg2",
		                  p->cfg->target_text);
	case FRAME_READY:
		break;
	}
	body = proxy_take_frame(p);
	n = ns_handshake_read_msg2(p->hs, body, len, &payload);
	if (n < 0 || ns_handshake_split(p->hs, &p->tx, &p->rx) < 0) {
		free(body);
		return proxy_fail(p, "target %s: msg2 does not decrypt: %s", p->cfg->target_text,
		                  ns_handshake_error(p->hs));
	}
	ns_handshake_free(p->hs);
	p->hs = NULL;
	ns_frame_reader_limits(&p->reader, NS_MIN_TRANSPORT_BODY, NS_MAX_TRANSPORT_BODY);
	p->phase = PHASE_RELAY;
	if (n == 0)
		free(body);
	else
		p->to_plain = (struct proxy_buf){ .data = body,
		                                  .off = (size_t)(payload - body),
		                                  .len = (size_t)(payload - body) + (size_t)n };
	return 1;
}

/* Client role: advance the handshake.  >0 progress, 0 none, -1 closed. */
int proxy_client_step(struct proxy_pair *p)
{
	int r;

	if (p->phase == PHASE_FIRST_FLIGHT)
		return gather(p);
	if ((r = proxy_flush(p, &p->noise, &p->to_noise)) != 0)
		return r;
	return read_msg2(p);
}

/* Client role: the first flight's wait is over; msg1 goes with what there is. */
int proxy_client_timer(struct proxy_pair *p)
{
	return p->phase == PHASE_FIRST_FLIGHT ? send_msg1(p) : 0;
}
