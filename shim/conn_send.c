/*
 * Send path.  Each record is sealed and handed to the kernel whole; the
 * program is told about a record's plaintext only once all of it has left.
 * A record the kernel took part of stays as the tail (in an arena buffer,
 * so that any process holding the socket can finish it), and the
 * program's retry (which starts with the same plaintext) pushes it out.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <sodium.h>

#include "conn.h"
#include "iov.h"
#include "log.h"
#include "real.h"
#include "sandbox.h"
#include "shim.h"

/* Room for one outgoing record: its plaintext, and its wire form (or the first flight). */
struct record_buffer {
	uint8_t plain[NS_MAX_PLAINTEXT];
	uint8_t wire[NS_MAX_FIRST_FLIGHT];
};

static pthread_key_t buffer_key;
static pthread_once_t buffer_once = PTHREAD_ONCE_INIT;

static void
free_buffer(void *buf)
{
	sodium_memzero(buf, sizeof(struct record_buffer));
	free(buf);
}

static void
make_buffer_key(void)
{
	pthread_key_create(&buffer_key, free_buffer);
}

static struct record_buffer *record_buffer(void);

/* Make this thread's record buffer now, while memory can still be had. */
void
ns_conn_prepare_thread(void)
{
	record_buffer();
}

/* This thread's record buffer, or NULL (errno ENOMEM). */
static struct record_buffer *
record_buffer(void)
{
	struct record_buffer *buf;

	pthread_once(&buffer_once, make_buffer_key);
	if ((buf = pthread_getspecific(buffer_key)) == NULL) {
		if ((buf = malloc(sizeof(*buf))) == NULL)
			errno = ENOMEM;
		else
			pthread_setspecific(buffer_key, buf);
	}
	return buf;
}

static uint8_t *
tail_plain(struct ns_conn *c)
{
	return (uint8_t *)ns_arena_ptr(c->tx_buf) + NS_ARENA_BUF_PLAIN;
}

static void
drop_tail(struct ns_conn *c)
{
	if (c->tx_buf != 0) {
		sodium_memzero(tail_plain(c), c->tail_plain_len);
		ns_arena_buf_free(c->tx_buf, c->tail_len);
	}
	c->tx_buf = 0;
	c->tail_off = c->tail_len = c->tail_plain_len = 0;
}

static int
keep_tail(struct ns_conn *c, const uint8_t *rest, size_t len, const uint8_t *plain,
          size_t plain_len)
{
	int saved = errno;

	if (c->tx_buf == 0 && (c->tx_buf = ns_arena_buf_alloc()) == 0)
		return -1;
	errno = saved;
	memmove(ns_arena_ptr(c->tx_buf), rest, len);
	memcpy(tail_plain(c), plain, plain_len);
	c->tail_off = 0;
	c->tail_len = (uint32_t)len;
	c->tail_plain_len = (uint32_t)plain_len;
	return 0;
}

/* Kernel flags: the program's, as far as they make sense for a record. */
static int
kernel_flags(int flags)
{
	return flags & (MSG_DONTWAIT | MSG_NOSIGNAL | MSG_MORE);
}

/*
 * Hand len bytes of buf (one record carrying plain) to the kernel.  1: all
 * of it left; 0: part left and the rest is now the tail; -1: none left
 * (errno from the kernel).
 */
static int
send_record(struct ns_conn *c, int fd, const uint8_t *buf, size_t len, const uint8_t *plain,
            size_t plain_len, int flags)
{
	size_t off = 0;
	ssize_t n;

	while (off < len) {
		n = ns_sock_send(fd, buf + off, len - off, kernel_flags(flags));
		if (n <= 0)
			break;
		off += (size_t)n;
	}
	if (off == len)
		return 1;
	if (off == 0)
		return -1;
	if (keep_tail(c, buf + off, len - off, plain, plain_len)) {
		/* Part of a record is on the wire and the rest cannot be kept: the stream is lost. */
		ns_conn_fail(c, fd, ENOMEM, "out of memory holding a partly sent record");
		errno = ENOMEM;
		return -1;
	}
	return 0;
}

/* Push the tail out.  0 once it is gone, -1 with errno otherwise. */
static int
flush_tail(struct ns_conn *c, int fd, int flags)
{
	uint8_t *tail = ns_arena_ptr(c->tx_buf);

	while (c->tail_off < c->tail_len) {
		ssize_t n = ns_sock_send(fd, tail + c->tail_off, c->tail_len - c->tail_off,
		                         kernel_flags(flags));
		if (n <= 0)
			return -1;
		c->tail_off += (uint32_t)n;
	}
	return 0;
}

/* Wait up to timeout_ms for fd to take more data. */
static void
wait_writable(int fd, int timeout_ms)
{
	struct pollfd p = {.fd = fd, .events = POLLOUT};

	REAL(poll)(&p, 1, timeout_ms);
}

/*
 * Build and send the first flight: route prefix, then msg1 carrying
 * payload_len bytes from iov.  Returns payload_len once all of it left, or
 * -1 with errno (the payload is then not reported as sent).
 */
static ssize_t
send_first_flight(struct ns_conn *c, int fd, const struct iovec *iov, int iovcnt,
                  size_t payload_len, int flags)
{
	struct record_buffer *rb = record_buffer();
	uint8_t *buf, *msg, *payload;
	size_t total;
	long n;
	int r;

	if (rb == NULL)
		return -1;
	buf = rb->wire;
	msg = buf + NS_ROUTE_PREFIX_LEN + NS_FRAME_HEADER_LEN;
	payload = rb->plain;
	memcpy(buf, ns_shim.config.prefix, NS_ROUTE_PREFIX_LEN);
	ns_iov_gather(iov, iovcnt, 0, payload, payload_len);
	if ((n = ns_handshake_write_msg1(&c->u.hs, payload, payload_len, msg)) < 0) {
		ns_conn_fail(c, fd, EPROTO, ns_handshake_error(&c->u.hs));
		errno = EPROTO;
		return -1;
	}
	ns_frame_header_put(buf + NS_ROUTE_PREFIX_LEN, (size_t)n);
	total = NS_ROUTE_PREFIX_LEN + NS_FRAME_HEADER_LEN + (size_t)n;
	/* From here the handshake state has moved on: msg1 leaves whole or as a tail. */
	__atomic_sub_fetch(&ns_conn_unstarted, 1, __ATOMIC_RELAXED);
	ns_conn_set_phase(c, NS_PHASE_AWAIT_MSG2);
	r = send_record(c, fd, buf, total, payload, payload_len, flags);
	if (r == 1)
		return (ssize_t)payload_len;
	if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
		/* Nothing left the process: keep msg1 whole as the tail, sent by the next call. */
		if (keep_tail(c, buf, total, payload, payload_len) != 0)
			ns_conn_fail(c, fd, ENOMEM, "out of memory holding the first flight");
		errno = EAGAIN;
	} else if (r < 0) {
		ns_conn_fail(c, fd, errno, "the first flight could not be sent");
	}
	return -1;
}

/* The program waits for input before writing: send msg1 now, empty. */
void
ns_conn_start_empty(struct ns_conn *c, int fd)
{
	if (ns_conn_lock_tx(c, fd))
		return;
	if (ns_conn_phase(c) == NS_PHASE_START)
		send_first_flight(c, fd, NULL, 0, 0, MSG_DONTWAIT | MSG_NOSIGNAL);
	/* A connect still in progress cannot take msg1 yet; it is due within a round trip. */
	while (c->tail_off < c->tail_len && ns_conn_phase(c) != NS_PHASE_FAILED) {
		int left = ns_conn_deadline_left(c);

		if (flush_tail(c, fd, MSG_DONTWAIT | MSG_NOSIGNAL) == 0)
			break;
		if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
			ns_conn_fail(c, fd, errno, "the first flight could not be sent");
			break;
		}
		if (left == 0) {
			ns_conn_fail(c, fd, ETIMEDOUT, "the first flight could not be sent in time");
			break;
		}
		wait_writable(fd, left);
	}
	if (c->tail_off == c->tail_len)
		drop_tail(c);
	ns_conn_unlock_tx(c);
}

/* Seal plain into out (len + NS_TAG_LEN bytes) with the next send nonce.  0, or -1. */
static int
seal(struct ns_conn *c, const uint8_t *plain, size_t len, uint8_t *out)
{
	struct ns_cipher *tx = ns_conn_cipher(c, 1);

	if (tx == NULL)
		return -1;
	ns_cipher_set_nonce(tx, c->tx_nonce);
	if (ns_cipher_seal(tx, NULL, 0, plain, len, out))
		return -1;
	c->tx_nonce = ns_cipher_nonce(tx);
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
	struct record_buffer *rb = record_buffer();
	size_t payload_len = len < NS_MAX_PLAINTEXT ? len : NS_MAX_PLAINTEXT;
	long n;
	int r;

	if (rb == NULL)
		return -1;
	ns_iov_gather(iov, iovcnt, 0, rb->plain, payload_len);
	if ((n = ns_handshake_write_msg2(&c->u.hs, rb->plain, payload_len,
	                                 rb->wire + NS_FRAME_HEADER_LEN)) < 0 ||
	    ns_conn_take_keys(c)) {
		ns_conn_fail(c, fd, EPROTO, "msg2 could not be made");
		errno = EPROTO;
		return -1;
	}
	ns_frame_header_put(rb->wire, (size_t)n);
	ns_conn_set_phase(c, NS_PHASE_OPEN);
	ns_log(NS_LOG_DEBUG, "fd %d, %s: handshake complete", fd, c->peer);
	r = send_record(c, fd, rb->wire, NS_FRAME_HEADER_LEN + (size_t)n, rb->plain, payload_len,
	                flags);
	if (r == 1)
		return (ssize_t)payload_len;
	if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
		/* Nothing left the process: msg2 goes whole with the next call. */
		if (keep_tail(c, rb->wire, NS_FRAME_HEADER_LEN + (size_t)n, rb->plain, payload_len))
			ns_conn_fail(c, fd, ENOMEM, "out of memory holding msg2");
		errno = EAGAIN;
	} else if (r < 0) {
		ns_conn_fail(c, fd, errno, "msg2 could not be sent");
	}
	return -1;
}

/* Seal and send records of the len bytes in iov.  Bytes reported as sent, or -1. */
static ssize_t
send_records(struct ns_conn *c, int fd, const struct iovec *iov, int iovcnt, size_t len,
             int flags)
{
	struct record_buffer *rb = record_buffer();
	size_t sent = 0;

	if (rb == NULL)
		return -1;
	while (sent < len) {
		size_t chunk = len - sent < NS_MAX_PLAINTEXT ? len - sent : NS_MAX_PLAINTEXT;
		const uint8_t *plain = ns_iov_contiguous(iov, iovcnt, sent, chunk);
		int r;

		/* Seal straight from the program's buffer when the record lies in one piece. */
		if (plain == NULL) {
			ns_iov_gather(iov, iovcnt, sent, rb->plain, chunk);
			plain = rb->plain;
		}
		ns_frame_header_put(rb->wire, chunk + NS_TAG_LEN);
		if (seal(c, plain, chunk, rb->wire + NS_FRAME_HEADER_LEN)) {
			ns_conn_fail(c, fd, EPROTO, "nonces exhausted");
			errno = EPROTO;
			break;
		}
		r = send_record(c, fd, rb->wire, NS_FRAME_HEADER_LEN + chunk + NS_TAG_LEN, plain, chunk,
		                flags);
		if (r == 1) {
			sent += chunk;
			continue;
		}
		if (r < 0 && ns_conn_phase(c) != NS_PHASE_FAILED)
			/* The kernel took none of it: the nonce can be used again. */
			c->tx_nonce--;
		break;
	}
	return sent > 0 ? (ssize_t)sent : -1;
}

/* send-like write of plaintext from iov. */
ssize_t
ns_conn_send(struct ns_conn *c, int fd, const struct iovec *iov, int iovcnt, int flags)
{
	const int supported = MSG_DONTWAIT | MSG_NOSIGNAL | MSG_MORE | MSG_EOR;
	size_t len = ns_iov_total(iov, iovcnt);
	ssize_t ret = -1;

	if (flags & ~supported) {
		errno = EOPNOTSUPP;
		return -1;
	}
	if (len == 0 && ns_conn_phase(c) != NS_PHASE_FAILED)
		return 0;
	if (ns_conn_lock_tx(c, fd))
		return -1;
	if (ns_conn_phase(c) == NS_PHASE_START && c->zero_rtt) {
		ret = send_first_flight(c, fd, iov, iovcnt,
		                        len < NS_MAX_PLAINTEXT ? len : NS_MAX_PLAINTEXT, flags);
		goto out;
	}
	if (ns_conn_phase(c) == NS_PHASE_START && send_first_flight(c, fd, NULL, 0, 0, flags) < 0 &&
	    c->tail_len == 0)
		goto out;
	if (c->tail_len > c->tail_off || c->tx_buf != 0) {
		int same = ns_iov_starts_with(iov, iovcnt, tail_plain(c), c->tail_plain_len);

		if (flush_tail(c, fd, flags) < 0)
			goto out;
		if (same && c->tail_plain_len > 0) {
			ret = (ssize_t)c->tail_plain_len;
			drop_tail(c);
			goto out;
		}
		if (c->tail_plain_len > 0)
			ns_log(NS_LOG_WARN, "fd %d, %s: the program did not retry a partly sent write; "
			       "its first %u bytes were delivered anyway", fd, c->peer, c->tail_plain_len);
		drop_tail(c);
	}
	if (ns_conn_phase(c) == NS_PHASE_AWAIT_MSG2 || ns_conn_phase(c) == NS_PHASE_AWAIT_MSG1) {
		ns_conn_await_peer(c, fd);
		if (c->plaintext) {
			/* Mixed mode, plaintext client: the program has the bare socket from now on. */
			struct msghdr m = {.msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)iovcnt};
			ns_conn_unlock_tx(c);
			return REAL(sendmsg)(fd, &m, flags);
		}
		if (ns_conn_phase(c) == NS_PHASE_AWAIT_MSG2 || ns_conn_phase(c) == NS_PHASE_AWAIT_MSG1)
			ns_conn_fail(c, fd, ETIMEDOUT, "no handshake message from the peer in time");
	}
	if (ns_conn_phase(c) == NS_PHASE_MSG2_DUE) {
		/* The program's first bytes ride in msg2, like a client's in msg1. */
		ret = ns_conn_send_msg2(c, fd, iov, iovcnt, len, flags);
		goto out;
	}
	if (ns_conn_phase(c) == NS_PHASE_FAILED) {
		errno = c->error;
		goto out;
	}
	ret = send_records(c, fd, iov, iovcnt, len, flags);
out:
	ns_conn_unlock_tx(c);
	return ret;
}
