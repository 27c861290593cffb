/*
 * Responder side of the handshake, driven from the receive path: the
 * route prefix, msg1 (either suite), the replay check, and msg2 sent at
 * once, because Go initiators hold their second write until msg2 arrives.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "conn.h"
#include "fdtable.h"
#include "load_guard.h"
#include "log.h"
#include "prefix.h"
#include "real.h"
#include "replay.h"
#include "replay_guard.h"
#include "shim.h"

/* Even an empty msg1 must wake the server: msg2 has to go out at once. */
static const struct ns_record_kind msg1_kind = {NS_MSG1_OVERHEAD, NS_MAX_MSG1_BODY,
                                                NS_MSG1_OVERHEAD,
                                                NS_FRAME_HEADER_LEN + NS_MSG1_OVERHEAD};

/* Hostile or broken input from the network: close this connection, tell the log. */
static enum ns_pull
reject(struct ns_conn *c, int fd, const char *why)
{
	ns_conn_fail(c, fd, ECONNRESET, why);
	errno = ECONNRESET;
	return NS_PULL_ERROR;
}

/*
 * Check the route prefix without taking it from the kernel, so that a
 * plaintext client in mixed mode finds every byte it sent still there.
 */
static enum ns_pull
check_prefix(struct ns_conn *c, int fd, int block)
{
	const uint8_t *prefix = ns_shim.config.prefix;
	uint8_t got[NS_ROUTE_PREFIX_LEN];
	ssize_t n;

	for (;;) {
		n = REAL(recv)(fd, got, sizeof(got), MSG_PEEK | (block ? 0 : MSG_DONTWAIT));
		if (n == 0)
			return NS_PULL_EOF;
		if (n < 0 && errno == EINTR && block)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			ns_conn_set_lowat(c, fd, NS_ROUTE_PREFIX_LEN);
			return NS_PULL_AGAIN;
		}
		if (n < 0)
			return NS_PULL_ERROR;
		switch (ns_prefix_match(got, (size_t)n, prefix)) {
		case NS_PREFIX_MISMATCH:
			if (c->mixed) {
				c->plaintext = 1;
				ns_conn_set_lowat(c, fd, 1);
				return NS_PULL_PLAINTEXT;
			}
			return reject(c, fd, "not a Noise client: the first bytes are not the route prefix");
		case NS_PREFIX_PARTIAL:
			/* Wait for the rest; a blocking caller waits in the kernel. */
			ns_conn_set_lowat(c, fd, NS_ROUTE_PREFIX_LEN);
			if (!block)
				return NS_PULL_AGAIN;
			continue;
		case NS_PREFIX_MATCH:
			REAL(recv)(fd, got, sizeof(got), MSG_DONTWAIT);
			c->prefix_have = NS_ROUTE_PREFIX_LEN;
			return NS_PULL_READY;
		}
	}
}

/*
 * Decrypt msg1 (in rx_body) under each suite the server speaks: the wire
 * does not say which one the client chose.  Payload length or -1.
 */
static long
read_msg1(struct ns_conn *c, size_t len, const uint8_t **payload)
{
	static const enum ns_suite suites[] = {NS_SUITE_CHACHAPOLY, NS_SUITE_AESGCM};
	long n = -1;

	/*
	 * A wrong suite fails on the encrypted static key, which is decrypted
	 * into the handshake state, so msg1 is still intact for the next try.
	 */
	for (size_t i = 0; i < sizeof(suites) / sizeof(suites[0]) && n < 0; i++) {
		struct ns_handshake *hs =
			ns_handshake_new_responder(suites[i], &ns_shim.static_key, NULL, 0);
		if (hs == NULL)
			return -1;
		if ((n = ns_handshake_read_msg1(hs, c->rx_body, len, payload)) < 0) {
			ns_handshake_free(hs);
			continue;
		}
		ns_handshake_free(c->hs);
		c->hs = hs;
		c->suite = suites[i];
	}
	return n;
}

/*
 * Responder, under rx_lock: take the route prefix and msg1 off the wire,
 * check them, and send msg2 unless a writer is about to.
 */
enum ns_pull
ns_conn_respond(struct ns_conn *c, int fd, size_t room, int block)
{
	const uint8_t *payload;
	struct sockaddr_storage peer;
	socklen_t peer_len = sizeof(peer);
	enum ns_pull r;
	size_t len;
	long n;

	if (c->prefix_have < NS_ROUTE_PREFIX_LEN && (r = check_prefix(c, fd, block)) != NS_PULL_READY)
		return r;
	r = ns_conn_pull(c, fd, &msg1_kind, room, block);
	if (r == NS_PULL_EOF)
		return reject(c, fd, "the client closed the connection inside the handshake");
	if (r != NS_PULL_READY)
		return r;
	ns_frame_reader_ready(&c->reader, &len);
	if (ns_load_guard_admit(getpeername(fd, (struct sockaddr *)&peer, &peer_len) == 0
	                        ? (struct sockaddr *)&peer : NULL) != 0)
		return reject(c, fd, "first flight refused before any DH: the server is under load "
		              "and this address is above NOISESHIM_RATE_LIMIT");
	ns_load_guard_begin();
	n = read_msg1(c, len, &payload);
	ns_load_guard_end();
	if (n < 0)
		return reject(c, fd, "msg1 does not decrypt: it was made for another server key");
	switch (ns_replay_guard_check(ns_shim.static_key.pub, ns_handshake_remote_ephemeral(c->hs),
	                              n > 0)) {
	case NS_REPLAY_REPEAT:
		return reject(c, fd, "replayed first flight refused");
	case NS_REPLAY_FULL:
		return reject(c, fd, "replay window full: 0-RTT data refused (raise NOISESHIM_REPLAY_CAPACITY)");
	case NS_REPLAY_UNCHECKED:
		return reject(c, fd, "replay window or store unavailable: 0-RTT data refused");
	case NS_REPLAY_FRESH:
		break;
	}
	ns_conn_hold(c, (size_t)(payload - c->rx_body), (size_t)n);
	pthread_mutex_lock(&c->hs_lock);
	__atomic_store_n(&c->phase, NS_PHASE_MSG2_DUE, __ATOMIC_RELEASE);
	pthread_cond_broadcast(&c->hs_done);
	pthread_mutex_unlock(&c->hs_lock);
	/* A writer holding the send side sends msg2 with its own first bytes. */
	if (pthread_mutex_trylock(&c->tx_lock) == 0) {
		if (c->phase == NS_PHASE_MSG2_DUE)
			ns_conn_send_msg2(c, fd, NULL, 0, 0, MSG_DONTWAIT | MSG_NOSIGNAL);
		pthread_mutex_unlock(&c->tx_lock);
	}
	return NS_PULL_READY;
}

/* Stop tracking a mixed-mode connection that turned out to be plaintext. */
void
ns_conn_release_plaintext(struct ns_conn *c, int fd)
{
	struct ns_conn *tracked = ns_fd_take(fd);

	if (tracked == c)
		ns_conn_unref(tracked);
	else if (tracked != NULL)
		ns_fd_set(fd, tracked), ns_conn_unref(tracked);
}
