/*
 * The handshake, both sides, one message a function, and the one
 * transition to an open connection (ns_conn_open).  Initiator: msg1 with
 * the gathered first flight, then msg2 read.  Responder: the route
 * prefix, msg1 (any key of the ring, either suite), the allowlist, the
 * replay check, and msg2 sent at once, because Go initiators hold their
 * second write until msg2 arrives.  Driven from the receive path
 * (conn_recv.c), the send path (conn_send.c) and the service thread.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include <sodium.h>

#include "conn.h"
#include "iov.h"
#include "load_guard.h"
#include "log.h"
#include "prefix.h"
#include "real.h"
#include "record.h"
#include "replay.h"
#include "replay_guard.h"
#include "sandbox.h"
#include "service.h"
#include "shim.h"
#include "stats.h"

/* Even an empty msg1 must wake the server: msg2 has to go out at once. */
static const struct ns_record_kind msg1_kind = {NS_MSG1_OVERHEAD, NS_MAX_MSG1_BODY,
                                                NS_MSG1_OVERHEAD,
                                                NS_FRAME_HEADER_LEN + NS_MSG1_OVERHEAD, 0};

/* The load guard's question, asked only under load: the peer of the socket at *arg. */
static int
kernel_peer(void *arg, struct sockaddr_storage *peer)
{
	socklen_t len = sizeof(*peer);

	return REAL(getpeername)(*(int *)arg, (struct sockaddr *)peer, &len);
}

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
	char why[NS_SERVER_KEYS_REFUSAL_MAX];

	ns_server_keys_refusal(&ns_shim.keys, c->peer_pub, why, sizeof(why));
	ns_log(NS_LOG_ERROR, "fd %d, %s: %s", fd, c->peer, why);
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
	nkeys = ns_shim.keys.ring != NULL ? ns_keyring_count(ns_shim.keys.ring) : 0;
	/*
	 * A wrong key or suite fails on the encrypted static key, which is
	 * decrypted into the handshake state, so msg1 is still intact for the
	 * next try.
	 */
	for (size_t i = 0; i < nkeys * NSUITES && n < 0; i++) {
		const struct ns_keypair *key = ns_keyring_key(ns_shim.keys.ring, i / NSUITES);

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
	if (ns_load_guard_admit(kernel_peer, &fd) != 0)
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
	__atomic_add_fetch(&ns_conn_msg2_due, 1, __ATOMIC_RELAXED);
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

/* The handshake is done: put this side's transport keys where the handshake state was.  0, or -1. */
static int
take_keys(struct ns_conn *c)
{
	uint8_t tx[NS_KEY_LEN], rx[NS_KEY_LEN];
	int ret = ns_handshake_split_keys(&c->u.hs, tx, rx);

	ns_handshake_wipe(&c->u.hs);
	memcpy(c->u.key.tx, tx, NS_KEY_LEN);
	memcpy(c->u.key.rx, rx, NS_KEY_LEN);
	c->tx_nonce = c->rx_nonce = 0;
	sodium_memzero(tx, sizeof(tx));
	sodium_memzero(rx, sizeof(rx));
	return ret;
}

/*
 * The one transition to an open connection, for either side, once its last
 * handshake message is read or made: the transport keys replace the
 * handshake state, and whoever waits on the phase wakes.  0, or -1 with the
 * connection failed.  Under the side's lock that finished the handshake.
 */
int
ns_conn_open(struct ns_conn *c, int fd)
{
	if (take_keys(c) != 0) {
		ns_conn_fail(c, fd, EPROTO, "the handshake could not be completed");
		errno = EPROTO;
		return -1;
	}
	ns_conn_set_phase(c, NS_PHASE_OPEN);
	ns_log(NS_LOG_DEBUG, "fd %d, %s: handshake complete", fd, c->peer);
	return 0;
}

/* The handshake is under way: its deadline, and a look at the reply's first bytes. */
static void
schedule_handshake(struct ns_conn *c, int fd)
{
	ns_service_at(fd, c, NS_JOB_DEADLINE, c->hs_start_ms + ns_shim.config.handshake_timeout_ms);
	if (c->role == NS_ROLE_INITIATOR)
		ns_service_at(fd, c, NS_JOB_PROBE, ns_now_ms() + NS_PROBE_FIRST_MS);
	if (c->tail_len > c->tail_off)
		ns_service_watch(fd, c);
}

/* Initiator, under tx_lock: the first flight (see conn.h). */
int
ns_conn_send_msg1(struct ns_conn *c, int fd, const uint8_t *payload, size_t len)
{
	struct ns_record_buffer *rb = ns_record_buffer();
	uint8_t *buf, *msg;
	size_t total;
	long n;
	int r;

	if (rb == NULL)
		return -1;
	buf = rb->wire;
	msg = buf + NS_ROUTE_PREFIX_LEN + NS_FRAME_HEADER_LEN;
	memcpy(buf, ns_shim.config.prefix, NS_ROUTE_PREFIX_LEN);
	if ((n = ns_handshake_write_msg1(&c->u.hs, payload, len, msg)) < 0) {
		ns_conn_fail(c, fd, EPROTO, ns_handshake_error(&c->u.hs));
		errno = EPROTO;
		return -1;
	}
	ns_frame_header_put(buf + NS_ROUTE_PREFIX_LEN, (size_t)n);
	total = NS_ROUTE_PREFIX_LEN + NS_FRAME_HEADER_LEN + (size_t)n;
	c->zero_rtt_bytes = (uint32_t)len;
	/* From here the handshake state has moved on: msg1 leaves whole or as a tail. */
	c->hs_start_ms = ns_now_ms();
	__atomic_sub_fetch(&ns_conn_unstarted, 1, __ATOMIC_RELAXED);
	ns_conn_set_phase(c, NS_PHASE_AWAIT_MSG2);
	r = ns_send_record(c, fd, buf, total, NULL, 0, MSG_DONTWAIT | MSG_NOSIGNAL);
	if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) &&
	    ns_keep_tail(c, buf, total, NULL, 0) != 0)
		ns_conn_fail(c, fd, ENOMEM, "out of memory holding the first flight");
	else if (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
		ns_conn_fail(c, fd, errno, "the first flight could not be sent");
	if (ns_conn_phase(c) == NS_PHASE_FAILED) {
		errno = c->error;
		return -1;
	}
	schedule_handshake(c, fd);
	return 0;
}

/* Initiator, under rx_lock: msg2 is whole in the receive buffer: finish the handshake. */
int
ns_conn_read_msg2(struct ns_conn *c, int fd, size_t len)
{
	uint8_t *body = c->reader.body;
	const uint8_t *payload;
	char why[160];
	long n;

	if ((n = ns_handshake_read_msg2(&c->u.hs, body, len, &payload)) < 0) {
		snprintf(why, sizeof(why), "Noise handshake failed: %s", ns_handshake_error(&c->u.hs));
		ns_conn_fail(c, fd, EPROTO, why);
		errno = EPROTO;
		return -1;
	}
	ns_conn_hold(c, (size_t)(payload - body), (size_t)n);
	if (ns_conn_open(c, fd) != 0)
		return -1;
	/* Writes that waited for the keys leave now, unless a writer is at it already. */
	if (c->early_len > 0 && pthread_mutex_trylock(&c->tx_lock) == 0) {
		if (ns_conn_flush_pending(c, fd) != 0 && ns_conn_phase(c) != NS_PHASE_FAILED)
			ns_service_watch(fd, c);
		ns_conn_unlock_tx(c);
	}
	return 0;
}

/*
 * Responder, under tx_lock in NS_PHASE_MSG2_DUE: send msg2 carrying up to
 * NS_MAX_PLAINTEXT bytes of iov (none for an empty msg2).  Payload bytes
 * sent, or -1.
 */
ssize_t
ns_conn_send_msg2(struct ns_conn *c, int fd, const struct iovec *iov, int iovcnt, size_t len,
                  int flags)
{
	struct ns_record_buffer *rb = ns_record_buffer();
	size_t payload_len = len < NS_MAX_PLAINTEXT ? len : NS_MAX_PLAINTEXT;
	long n;
	int r;

	if (rb == NULL)
		return -1;
	ns_iov_gather(iov, iovcnt, 0, rb->plain, payload_len);
	if ((n = ns_handshake_write_msg2(&c->u.hs, rb->plain, payload_len,
	                                 rb->wire + NS_FRAME_HEADER_LEN)) < 0) {
		ns_conn_fail(c, fd, EPROTO, "msg2 could not be made");
		errno = EPROTO;
		return -1;
	}
	ns_frame_header_put(rb->wire, (size_t)n);
	if (ns_conn_open(c, fd) != 0)
		return -1;
	__atomic_sub_fetch(&ns_conn_msg2_due, 1, __ATOMIC_RELAXED);
	if (payload_len == 0)
		ns_conn_push_next_record(c, fd);
	r = ns_send_record(c, fd, rb->wire, NS_FRAME_HEADER_LEN + (size_t)n, rb->plain, payload_len,
	                flags);
	if (r == 1)
		return (ssize_t)payload_len;
	if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
		/* Nothing left the process: msg2 goes whole with the next call. */
		if (ns_keep_tail(c, rb->wire, NS_FRAME_HEADER_LEN + (size_t)n, rb->plain, payload_len))
			ns_conn_fail(c, fd, ENOMEM, "out of memory holding msg2");
		errno = EAGAIN;
	} else if (r < 0) {
		ns_conn_fail(c, fd, errno, "msg2 could not be sent");
	}
	return -1;
}

/* Responder in NS_PHASE_MSG2_DUE with writes that waited for msg1: they ride in msg2.  Under tx_lock. */
void
ns_conn_send_early_msg2(struct ns_conn *c, int fd)
{
	size_t n = c->early_len < NS_MAX_PLAINTEXT ? c->early_len : NS_MAX_PLAINTEXT;
	struct iovec iov = {ns_conn_early(c), n};

	if (ns_conn_send_msg2(c, fd, &iov, 1, n, MSG_DONTWAIT | MSG_NOSIGNAL) < 0 &&
	    ns_conn_phase(c) != NS_PHASE_OPEN)
		return;
	/* msg2 left whole or as a tail: its payload counts as sent either way. */
	c->tail_plain_len = 0;
	memmove(ns_conn_early(c), ns_conn_early(c) + n, c->early_len - n);
	c->early_len -= (uint32_t)n;
	if (c->early_len == 0)
		ns_conn_drop_early(c);
	if (c->early_len > 0 || c->tail_len > c->tail_off)
		ns_service_watch(fd, c);
}
