/*
 * What the service thread does to a connection (service.h): the same
 * steps a program's own call would take, never waiting for a lock a
 * program thread holds (it tries again a little later instead).
 */
#include <errno.h>
#include <pthread.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include "conn.h"
#include "real.h"
#include "shim.h"
#include "service.h"

enum { BUSY_RETRY_MS = 5, LINGER_RETRY_MS = 10, CORK_MAX_US = 200 * 1000 };

/* Try a side's lock: 0 when held (and the connection usable), 1 when busy, -1 when failed. */
static int
try_side(struct ns_conn *c, pthread_mutex_t *m, int fd)
{
	int r = pthread_mutex_trylock(m);

	if (r == EBUSY)
		return 1;
	if (r == EOWNERDEAD) {
		pthread_mutex_consistent(m);
		ns_conn_fail(c, fd, EPIPE, "a process died while using this connection");
	}
	if (r != 0 && r != EOWNERDEAD)
		return 1;
	if (ns_conn_phase(c) == NS_PHASE_FAILED) {
		pthread_mutex_unlock(m);
		return -1;
	}
	return 0;
}

/* The coalesced first flight goes once the program has been quiet long enough. */
int
ns_conn_service_release(struct ns_conn *c, int fd)
{
	uint64_t quiet, now, since;
	int again = 0, r;

	if (ns_conn_phase(c) != NS_PHASE_START)
		return 0;
	if ((r = try_side(c, &c->tx_lock, fd)) != 0)
		return r > 0 ? BUSY_RETRY_MS : 0;
	/* MSG_MORE and TCP_CORK hold it longer, but no longer than the kernel holds a cork. */
	quiet = c->hold ? CORK_MAX_US : ns_shim.config.first_flight_us;
	now = ns_now_us();
	since = now - c->last_write_us;
	if (ns_conn_phase(c) == NS_PHASE_START) {
		if (since >= quiet)
			ns_conn_release(c, fd);
		else
			again = (int)((quiet - since + 999) / 1000);
	}
	ns_conn_unlock_tx(c);
	return again;
}

/* The handshake deadline: a connection not open by then fails, and the program sees it. */
int
ns_conn_service_deadline(struct ns_conn *c, int fd)
{
	enum ns_phase phase = ns_conn_phase(c);
	int left;

	if (phase == NS_PHASE_OPEN || phase == NS_PHASE_FAILED)
		return 0;
	/* A client that has not sent msg1 has not started its handshake yet. */
	if (phase == NS_PHASE_START)
		return 0;
	if ((left = ns_conn_deadline_left(c)) > 0)
		return left;
	ns_conn_fail(c, fd, ETIMEDOUT,
	             c->role == NS_ROLE_INITIATOR
	                     ? "no handshake reply in time (is the server wrapped?)"
	                     : "the client did not complete the handshake in time");
	return 0;
}

/* Whether 4 bytes can begin msg2: the marker, and a length msg2 may have. */
static int
could_be_msg2(const uint8_t *h, ssize_t n)
{
	size_t len;

	if (n >= 1 && h[0] != NS_FRAME_MARKER)
		return 0;
	if (n < NS_FRAME_HEADER_LEN)
		return 1;
	len = (size_t)h[1] << 16 | (size_t)h[2] << 8 | h[3];
	return len >= NS_MSG2_OVERHEAD && len <= NS_MAX_MSG2_BODY;
}

/*
 * A reply awaited as msg2 that cannot be one fails at once: its first
 * bytes may be fewer than the kernel's wake-up mark, so the program would
 * otherwise never hear of it before the deadline.
 */
int
ns_conn_service_probe(struct ns_conn *c, int fd)
{
	uint8_t h[NS_FRAME_HEADER_LEN];
	uint64_t since;
	ssize_t n;
	int r;

	if (ns_conn_phase(c) != NS_PHASE_AWAIT_MSG2)
		return 0;
	if ((r = try_side(c, &c->rx_lock, fd)) != 0)
		return r > 0 ? BUSY_RETRY_MS : 0;
	/* Bytes a reader already took were checked by the frame reader. */
	if (ns_conn_phase(c) == NS_PHASE_AWAIT_MSG2 && c->reader.header_have == 0) {
		n = REAL(recv)(fd, h, sizeof(h), MSG_PEEK | MSG_DONTWAIT);
		if (n > 0 && !could_be_msg2(h, n))
			ns_conn_fail(c, fd, EPROTO, "Noise handshake failed: the server's reply is not a "
			             "Noise handshake message (is the server wrapped, with this key?)");
	}
	ns_conn_unlock_rx(c);
	if (ns_conn_phase(c) != NS_PHASE_AWAIT_MSG2)
		return 0;
	since = ns_now_ms() - c->hs_start_ms;
	return since < NS_PROBE_FIRST_MS ? NS_PROBE_FIRST_MS
	       : since > NS_PROBE_MAX_MS ? NS_PROBE_MAX_MS : (int)since;
}

/* msg2 is due and no write came to carry anything in it: it goes as it is. */
int
ns_conn_service_msg2(struct ns_conn *c, int fd)
{
	int r;

	if (ns_conn_phase(c) != NS_PHASE_MSG2_DUE)
		return 0;
	if ((r = try_side(c, &c->tx_lock, fd)) != 0)
		return r > 0 ? BUSY_RETRY_MS : 0;
	if (ns_conn_phase(c) == NS_PHASE_MSG2_DUE) {
		if (c->early_len > 0)
			ns_conn_send_early_msg2(c, fd);
		else
			ns_conn_send_msg2(c, fd, NULL, 0, 0, MSG_DONTWAIT | MSG_NOSIGNAL);
	}
	ns_conn_unlock_tx(c);
	return 0;
}

/*
 * A connection the program closed with bytes still to send: push them out,
 * reading msg2 first when they wait for it.  0 once nothing is left or
 * nothing more can go; otherwise when to look again.
 */
int
ns_conn_service_linger(struct ns_conn *c, int fd)
{
	int r;

	if (ns_conn_phase(c) == NS_PHASE_AWAIT_MSG2 && try_side(c, &c->rx_lock, fd) == 0) {
		ns_conn_read_handshake(c, fd);
		ns_conn_unlock_rx(c);
	}
	if ((r = try_side(c, &c->tx_lock, fd)) != 0)
		return r > 0 ? BUSY_RETRY_MS : 0;
	if (ns_conn_phase(c) == NS_PHASE_START)
		ns_conn_release(c, fd);
	r = ns_conn_flush_pending(c, fd);
	ns_conn_unlock_tx(c);
	return r == 0 || ns_conn_phase(c) == NS_PHASE_FAILED ? 0 : LINGER_RETRY_MS;
}

/* The epoll events the service thread should watch fd for now. */
uint32_t
ns_conn_service_wants(const struct ns_conn *c)
{
	enum ns_phase phase = ns_conn_phase(c);
	uint32_t events = 0;

	if (phase == NS_PHASE_FAILED)
		return 0;
	if (c->tail_len > c->tail_off || (c->early_len > 0 && phase == NS_PHASE_OPEN))
		events |= EPOLLOUT;
	/* Writes wait for msg2: reading it is what lets them go. */
	if (phase == NS_PHASE_AWAIT_MSG2 && c->early_len > 0)
		events |= EPOLLIN;
	return events;
}

/* The service thread saw fd ready: do what is pending; the epoll events still wanted (0: none). */
uint32_t
ns_conn_service_io(struct ns_conn *c, int fd)
{
	if (ns_conn_phase(c) == NS_PHASE_AWAIT_MSG2 && try_side(c, &c->rx_lock, fd) == 0) {
		ns_conn_read_handshake(c, fd);
		ns_conn_unlock_rx(c);
	}
	if (ns_conn_service_wants(c) & EPOLLOUT && try_side(c, &c->tx_lock, fd) == 0) {
		ns_conn_flush_pending(c, fd);
		ns_conn_unlock_tx(c);
	}
	return ns_conn_service_wants(c);
}
