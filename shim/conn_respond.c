/*
 * Responder side of the handshake, driven from the receive path: the
 * route prefix, msg1 (any key of the ring, either suite), the allowlist,
 * the replay check, and msg2 sent at once, because Go initiators hold
 * their second write until msg2 arrives.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "conn.h"
#include "load_guard.h"
#include "log.h"
#include "nodeurl.h"
#include "prefix.h"
#include "real.h"
#include "replay.h"
#include "replay_guard.h"
#include "sandbox.h"
#include "service.h"
#include "shim.h"
#include "stats.h"

/* Even an empty msg1 must wake the server: msg2 has to go out at once. */
static const struct ns_record_kind msg1_kind = {NS_MSG1_OVERHEAD, NS_MAX_MSG1_BODY,
                                                NS_MSG1_OVERHEAD,
                                                NS_FRAME_HEADER_LEN + NS_MSG1_OVERHEAD};

/* Hostile or broken input from the network: close this connection, tell the log. */
static enum ns_pull
reject(struct ns_conn *c, int fd, const char *why)
{
	ns_conn_fail(c, fd, ECONNRESET, why);
	errno = c->error;
	return NS_PULL_ERROR;
}

/* Closed by policy, not for a broken handshake: counted under field, never as a failure. */
static enum ns_pull
refuse(struct ns_conn *c, int fd, enum ns_stat field, const char *why)
{
	c->refused = 1;
	if (!ns_sandboxed)
		ns_stats_add(field, 1);
	return reject(c, fd, why);
}

/*
 * A client whose key the allowlist does not name.  Only a client that
 * knows the server's key gets this far, so this is no scanner noise: most
 * likely a client someone forgot to list, worth seeing at the default level.
 */
static enum ns_pull
refuse_client(struct ns_conn *c, int fd)
{
	char pub[56];

	if (ns_noise_pub_encode(c->peer_pub, pub, sizeof(pub)) == 0)
		snprintf(pub, sizeof(pub), "?");
	ns_log(NS_LOG_ERROR, "fd %d, %s: client %s refused: its key is not in %s (NOISESHIM_ALLOW)",
	       fd, c->peer, pub, ns_shim.config.allow);
	return refuse(c, fd, NS_STAT_CLIENTS_REFUSED, "client key not in the allowlist");
}

/* Whether the client has closed its side (only what it sent before is left to read). */
static int
peer_closed(int fd)
{
	struct pollfd p = {.fd = fd, .events = POLLRDHUP};

	return REAL(poll)(&p, 1, 0) == 1 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR));
}

/* Mixed mode, not a Noise client: from now on every fd of this socket is the bare socket. */
static enum ns_pull
plaintext_client(struct ns_conn *c, int fd)
{
	c->plaintext = 1;
	ns_conn_set_lowat(c, fd, 1);
	__atomic_store_n(&c->kind, NS_SOCK_PLAIN, __ATOMIC_RELEASE);
	return NS_PULL_PLAINTEXT;
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
			return reject(c, fd, "the client closed the connection before the route prefix");
		if (n < 0 && errno == EINTR && block)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			ns_conn_set_lowat(c, fd, NS_ROUTE_PREFIX_LEN);
			return NS_PULL_AGAIN;
		}
		if (n < 0) {
			char why[96];
			snprintf(why, sizeof(why), "connection broken inside the handshake: %s",
			         strerror(errno));
			return reject(c, fd, why);
		}
		switch (ns_prefix_match(got, (size_t)n, prefix)) {
		case NS_PREFIX_MISMATCH:
			if (c->mixed) {
				return plaintext_client(c, fd);
			}
			return reject(c, fd, "not a Noise client: the first bytes are not the route prefix");
		case NS_PREFIX_PARTIAL:
			/* No more is coming: a peek would find the same bytes forever. */
			if (peer_closed(fd)) {
				if (c->mixed) {
					c->plaintext = 1;
					ns_conn_set_lowat(c, fd, 1);
					return NS_PULL_PLAINTEXT;
				}
				return reject(c, fd, "the client closed the connection inside the route prefix");
			}
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
 * Decrypt msg1 (in the receive buffer) under each key of the ring and each
 * suite the server speaks: the wire says neither which NodeURL the client
 * had nor which suite it chose.  Payload length or -1.
 */
static long
read_msg1(struct ns_conn *c, uint8_t *msg, size_t len, const uint8_t **payload)
{
	static const enum ns_suite suites[] = {NS_SUITE_CHACHAPOLY, NS_SUITE_AESGCM};
	enum { NSUITES = sizeof(suites) / sizeof(suites[0]) };
	struct ns_handshake hs;
	size_t nkeys;
	long n = -1;

	pthread_rwlock_rdlock(&ns_shim.keys_lock);
	nkeys = ns_shim.ring != NULL ? ns_keyring_count(ns_shim.ring) : 0;
	/*
	 * A wrong key or suite fails on the encrypted static key, which is
	 * decrypted into the handshake state, so msg1 is still intact for the
	 * next try.
	 */
	for (size_t i = 0; i < nkeys * NSUITES && n < 0; i++) {
		const struct ns_keypair *key = ns_keyring_key(ns_shim.ring, i / NSUITES);

		if (ns_handshake_init_responder(&hs, suites[i % NSUITES], key, NULL, 0))
			break;
		if ((n = ns_handshake_read_msg1(&hs, msg, len, payload)) < 0)
			continue;
		c->u.hs = hs;
		c->suite = suites[i % NSUITES];
		c->key_index = (uint32_t)(i / NSUITES);
	}
	pthread_rwlock_unlock(&ns_shim.keys_lock);
	if (nkeys > 0)
		ns_handshake_wipe(&hs);
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
	char why[sizeof(ns_shim.key_error) + 64];
	enum ns_pull r;
	size_t len;
	long n;

	if (ns_shim_load_key() != 0) {
		snprintf(why, sizeof(why), "no server key to answer with: %s", ns_shim.key_error);
		return reject(c, fd, why);
	}
	ns_shim_refresh_keys();
	if (c->prefix_have < NS_ROUTE_PREFIX_LEN && (r = check_prefix(c, fd, block)) != NS_PULL_READY)
		return r;
	r = ns_conn_pull(c, fd, &msg1_kind, room, block);
	if (r == NS_PULL_EOF)
		return reject(c, fd, "the client closed the connection inside the handshake");
	if (r == NS_PULL_ERROR && ns_conn_phase(c) != NS_PHASE_FAILED) {
		snprintf(why, sizeof(why), "connection broken inside the handshake: %s", strerror(errno));
		return reject(c, fd, why);
	}
	if (r != NS_PULL_READY)
		return r;
	ns_frame_reader_ready(&c->reader, &len);
	if (ns_load_guard_admit(getpeername(fd, (struct sockaddr *)&peer, &peer_len) == 0
	                        ? (struct sockaddr *)&peer : NULL) != 0)
		return reject(c, fd, "first flight refused before any DH: the server is under load "
		              "and this address is above NOISESHIM_RATE_LIMIT");
	ns_load_guard_begin();
	n = read_msg1(c, c->reader.body, len, &payload);
	ns_load_guard_end();
	if (n < 0)
		return reject(c, fd, "msg1 does not decrypt: it was made for another server key");
	memcpy(c->peer_pub, ns_handshake_remote_static(&c->u.hs), NS_KEY_LEN);
	c->zero_rtt_bytes = (uint32_t)n;
	/* Before the replay window: a client that may not enter leaves no trace in it. */
	if (!ns_shim_client_allowed(c->peer_pub))
		return refuse_client(c, fd);
	/* A program that took the connection over across exec never set the window up. */
	if (n > 0 && ns_replay_guard_init(ns_shim.static_key.pub, why, sizeof(why)) != 0)
		return reject(c, fd, why);
	switch (ns_replay_guard_check(ns_shim.static_key.pub, ns_handshake_remote_ephemeral(&c->u.hs),
	                              n > 0)) {
	case NS_REPLAY_REPEAT:
		return refuse(c, fd, NS_STAT_REPLAYS_REFUSED, "replayed first flight refused");
	case NS_REPLAY_FULL:
		return reject(c, fd, "replay window full: 0-RTT data refused (raise NOISESHIM_REPLAY_CAPACITY)");
	case NS_REPLAY_UNCHECKED:
		return reject(c, fd, "replay window or store unavailable: 0-RTT data refused");
	case NS_REPLAY_FRESH:
		break;
	}
	ns_conn_hold(c, (size_t)(payload - c->reader.body), (size_t)n);
	ns_conn_set_phase(c, NS_PHASE_MSG2_DUE);
	/*
	 * msg2 carries the answer when the program writes one soon after it
	 * reads the request (as Storj's Go responder does); it goes at once
	 * when there is no request, or a write already waits, or no service
	 * thread can send it later.  A writer holding the send side sends it
	 * with its own first bytes.
	 */
	if (pthread_mutex_trylock(&c->tx_lock) == 0) {
		if (ns_conn_phase(c) == NS_PHASE_MSG2_DUE) {
			if (c->early_len > 0)
				ns_conn_send_early_msg2(c, fd);
			else if (n == 0 || ns_shim.config.first_flight_us == 0 ||
			         ns_service_at(fd, c, NS_JOB_MSG2,
			                       ns_now_ms() + (ns_shim.config.first_flight_us + 999) / 1000) != 0)
				ns_conn_send_msg2(c, fd, NULL, 0, 0, MSG_DONTWAIT | MSG_NOSIGNAL);
		}
		ns_conn_unlock_tx(c);
	}
	return NS_PULL_READY;
}
