/*
 * Send path.  A write is cut into records of even size, sealed in batches
 * that go to the kernel in one call each; the program is told about a
 * record's plaintext only once all of it has left.  A record the kernel
 * took part of stays as the tail (in an arena buffer, so that any process
 * holding the socket can finish it), and the program's retry (which starts
 * with the same plaintext) pushes it out.  Records of a batch the kernel
 * took nothing of are dropped, and their nonces used again.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <linux/sockios.h>

#include <sodium.h>

#include "conn.h"
#include "iov.h"
#include "record.h"
#include "log.h"
#include "real.h"
#include "sandbox.h"
#include "service.h"
#include "shim.h"


static pthread_key_t buffer_key;
static pthread_once_t buffer_once = PTHREAD_ONCE_INIT;

static void
free_buffer(void *buf)
{
	/* Only the plaintext is secret; wiping the rest would make all its pages resident. */
	sodium_memzero(((struct ns_record_buffer *)buf)->plain, NS_MAX_PLAINTEXT);
	free(buf);
}

static void
make_buffer_key(void)
{
	pthread_key_create(&buffer_key, free_buffer);
}

/* Make this thread's record buffer now, while memory can still be had. */
void
ns_conn_prepare_thread(void)
{
	ns_record_buffer();
}

/* This thread's record buffer, or NULL (errno ENOMEM). */
struct ns_record_buffer *
ns_record_buffer(void)
{
	struct ns_record_buffer *buf;

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

int
ns_keep_tail(struct ns_conn *c, const uint8_t *rest, size_t len, const uint8_t *plain,
          size_t plain_len)
{
	int saved = errno;

	if (c->tx_buf == 0 && (c->tx_buf = ns_arena_buf_alloc()) == 0)
		return -1;
	errno = saved;
	memmove(ns_arena_ptr(c->tx_buf), rest, len);
	/* A tail the shim owns (a first flight, early data) has no plaintext to keep. */
	if (plain_len > 0)
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

/* Hand len bytes of buf to the kernel, retrying while it takes part.  Bytes it took. */
static size_t
send_all(int fd, const uint8_t *buf, size_t len, int flags)
{
	size_t off = 0;
	ssize_t n;

	while (off < len && (n = ns_sock_send(fd, buf + off, len - off, kernel_flags(flags))) > 0)
		off += (size_t)n;
	return off;
}

/* The rest of a record the kernel took part of becomes the tail.  0, or -1 (the connection failed). */
static int
keep_tail_or_fail(struct ns_conn *c, int fd, const uint8_t *rest, size_t len, const uint8_t *plain,
                  size_t plain_len)
{
	if (ns_keep_tail(c, rest, len, plain, plain_len) == 0)
		return 0;
	/* Part of a record is on the wire and the rest cannot be kept: the stream is lost. */
	ns_conn_fail(c, fd, ENOMEM, "out of memory holding a partly sent record");
	errno = ENOMEM;
	return -1;
}

/*
 * Hand len bytes of buf (one record carrying plain) to the kernel.  1: all
 * of it left; 0: part left and the rest is now the tail; -1: none left
 * (errno from the kernel).
 */
int
ns_send_record(struct ns_conn *c, int fd, const uint8_t *buf, size_t len, const uint8_t *plain,
            size_t plain_len, int flags)
{
	size_t off = send_all(fd, buf, len, flags);

	if (off == len)
		return 1;
	if (off == 0)
		return -1;
	return keep_tail_or_fail(c, fd, buf + off, len - off, plain, plain_len);
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

/* Milliseconds to the service thread's next look, rounded up from the quiet time. */
static uint64_t
quiet_due_ms(void)
{
	return ns_now_ms() + (ns_shim.config.first_flight_us + 999) / 1000;
}

/* Plaintext waiting in the early buffer. */
uint8_t *
ns_conn_early(struct ns_conn *c)
{
	return ns_arena_ptr(c->early_buf);
}

void
ns_conn_drop_early(struct ns_conn *c)
{
	if (c->early_buf != 0)
		ns_arena_buf_free(c->early_buf, c->early_len);
	c->early_buf = 0;
	c->early_len = 0;
}

/* Take up to len bytes of iov into the early buffer, at most cap in all.  Bytes taken, or -1. */
static ssize_t
take_early(struct ns_conn *c, const struct iovec *iov, int iovcnt, size_t len, size_t cap)
{
	size_t take;

	if (c->early_buf == 0 && (c->early_buf = ns_arena_buf_alloc()) == 0) {
		errno = ENOMEM;
		return -1;
	}
	if (c->early_len >= cap) {
		errno = EAGAIN;
		return -1;
	}
	take = len < cap - c->early_len ? len : cap - c->early_len;
	ns_iov_gather(iov, iovcnt, 0, ns_conn_early(c) + c->early_len, take);
	c->early_len += (uint32_t)take;
	return (ssize_t)take;
}

/*
 * The first flight goes now, with whatever was coalesced (empty if
 * nothing): the program waits for the peer, or no more fits.  Never
 * blocks; a part the kernel does not take yet is a tail the shim pushes
 * out.  Under tx_lock.
 */
void
ns_conn_release(struct ns_conn *c, int fd)
{
	size_t len = c->early_len;

	if (ns_conn_phase(c) != NS_PHASE_START)
		return;
	c->early_len = 0;
	c->hold = 0;
	ns_conn_send_msg1(c, fd, len > 0 ? ns_conn_early(c) : NULL, len);
	/* msg1 holds its own copy now: the buffer goes back until a write waits for msg2. */
	if (len > 0)
		sodium_memzero(ns_conn_early(c), len);
	ns_conn_drop_early(c);
}

/* Release the first flight from outside the send side (a wait, a read, a close). */
void
ns_conn_release_unlocked(struct ns_conn *c, int fd)
{
	if (ns_conn_phase(c) != NS_PHASE_START || ns_conn_lock_tx(c, fd) != 0)
		return;
	ns_conn_release(c, fd);
	ns_conn_unlock_tx(c);
}

/* TCP_CORK as the program sets it: uncorking releases a held first flight. */
void
ns_conn_set_cork(struct ns_conn *c, int fd, int on)
{
	if (ns_conn_lock_tx(c, fd) != 0)
		return;
	c->corked = (uint8_t)(on != 0);
	if (!on && c->hold && ns_conn_phase(c) == NS_PHASE_START)
		ns_conn_release(c, fd);
	ns_conn_unlock_tx(c);
}

/* Wait, as a blocking write does, until the tail the shim owns is out; 0, or -1 with errno. */
static int
drain_blocking(struct ns_conn *c, int fd)
{
	while (ns_conn_flush_pending(c, fd) != 0) {
		if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
			return -1;
		if (c->tail_len <= c->tail_off)
			return 0;  /* only early data is left, which waits for msg2 */
		wait_writable(fd, -1);
	}
	return 0;
}

/* Seal plain into out (len + NS_TAG_LEN bytes) with the next send nonce.  0, or -1. */
static int
seal(struct ns_conn *c, const uint8_t *plain, size_t len, uint8_t *out)
{
	struct ns_cipher *tx = ns_conn_cipher(c, 1);

	if (tx == NULL) {
		errno = ENOMEM;
		return -1;
	}
	ns_cipher_set_nonce(tx, c->tx_nonce);
	if (ns_cipher_seal(tx, NULL, 0, plain, len, out)) {
		errno = EPROTO;
		return -1;
	}
	c->tx_nonce = ns_cipher_nonce(tx);
	return 0;
}

/* msg2 went alone: the answer behind it must not wait for msg2's ACK (Nagle). */
void
ns_conn_push_next_record(struct ns_conn *c, int fd)
{
	int nodelay = 0;
	socklen_t len = sizeof(nodelay);

	if (ns_sandboxed || REAL(getsockopt)(fd, IPPROTO_TCP, TCP_NODELAY, &nodelay, &len) != 0 ||
	    nodelay)
		return;
	if (REAL(setsockopt)(fd, IPPROTO_TCP, TCP_NODELAY, &(int){1}, sizeof(int)) == 0)
		c->nodelay_until_record = 1;
}

/* The first record after a lone msg2 has gone: Nagle as the program had it. */
static void
nagle_again(struct ns_conn *c, int fd)
{
	if (c->nodelay_until_record) {
		REAL(setsockopt)(fd, IPPROTO_TCP, TCP_NODELAY, &(int){0}, sizeof(int));
		c->nodelay_until_record = 0;
	}
}

/*
 * How many records a non-blocking write seals at once: as many as the
 * send buffer has room for, and one more for the kernel to take part of.
 * Records it takes nothing of were sealed for nothing.
 */
static size_t
batch_for_room(int fd)
{
	int queued, sndbuf;
	socklen_t len = sizeof(sndbuf);
	size_t records;

	if (ns_sandboxed || ioctl(fd, SIOCOUTQ, &queued) != 0 ||
	    REAL(getsockopt)(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, &len) != 0)
		return 1;
	records = sndbuf > queued ? (size_t)(sndbuf - queued) / NS_MAX_RECORD + 1 : 1;
	return records < NS_SEND_BATCH ? records : NS_SEND_BATCH;
}

/* One batch of sealed records, back to back in the thread's wire buffer. */
struct batch {
	size_t records;
	size_t plain[NS_SEND_BATCH];    /* each record's plaintext length */
	size_t wire_len;
	uint64_t first_nonce;
};

/* Seal up to max records of size chunk (the last shorter) from iov at offset.  0, or -1. */
static int
seal_batch(struct ns_conn *c, struct ns_record_buffer *rb, const struct iovec *iov, int iovcnt,
           size_t offset, size_t len, size_t chunk, size_t max, struct batch *b)
{
	b->records = b->wire_len = 0;
	b->first_nonce = c->tx_nonce;
	while (b->records < max && offset < len) {
		size_t n = len - offset < chunk ? len - offset : chunk;
		const uint8_t *plain = ns_iov_contiguous(iov, iovcnt, offset, n);
		uint8_t *wire = rb->wire + b->wire_len;

		/* Seal straight from the program's buffer when the record lies in one piece. */
		if (plain == NULL) {
			ns_iov_gather(iov, iovcnt, offset, rb->plain, n);
			plain = rb->plain;
		}
		ns_frame_header_put(wire, n + NS_TAG_LEN);
		if (seal(c, plain, n, wire + NS_FRAME_HEADER_LEN))
			return -1;
		b->plain[b->records++] = n;
		b->wire_len += NS_FRAME_HEADER_LEN + n + NS_TAG_LEN;
		offset += n;
	}
	return 0;
}

/*
 * The kernel took `took` bytes of the batch sealed from iov at offset: the
 * plaintext of the whole records among them counts as sent, a record it
 * took part of becomes the tail with its plaintext, and the nonces of
 * records it took nothing of are used again.  Plaintext bytes sent, or -1
 * (no memory for the tail: the connection failed).
 */
static ssize_t
settle_batch(struct ns_conn *c, int fd, struct ns_record_buffer *rb, const struct iovec *iov,
             int iovcnt, size_t offset, const struct batch *b, size_t took)
{
	size_t i, wire_at = 0, plain_sent = 0;

	for (i = 0; i < b->records; i++) {
		size_t wire_len = NS_FRAME_HEADER_LEN + b->plain[i] + NS_TAG_LEN;

		if (took < wire_at + wire_len)
			break;
		wire_at += wire_len;
		plain_sent += b->plain[i];
	}
	c->tx_nonce = b->first_nonce + i;
	if (i == b->records || took == wire_at)
		return (ssize_t)plain_sent;
	/* Record i went in part: the rest is the tail, and the program's retry starts with its plaintext. */
	c->tx_nonce++;
	if (keep_tail_or_fail(c, fd, rb->wire + took,
	                      wire_at + NS_FRAME_HEADER_LEN + b->plain[i] + NS_TAG_LEN - took, NULL, 0))
		return -1;
	ns_iov_gather(iov, iovcnt, offset + plain_sent, tail_plain(c), b->plain[i]);
	c->tail_plain_len = (uint32_t)b->plain[i];
	return (ssize_t)plain_sent;
}

/*
 * Seal and send records of the len bytes in iov, in batches.  Bytes
 * reported as sent, or -1.
 */
static ssize_t
send_records(struct ns_conn *c, int fd, const struct iovec *iov, int iovcnt, size_t len,
             int flags, int nonblock)
{
	struct ns_record_buffer *rb = ns_record_buffer();
	size_t records = (len + NS_MAX_PLAINTEXT - 1) / NS_MAX_PLAINTEXT;
	/* Even records: 128 KiB as three of 43,691 bytes, not two full ones and a 2-byte one. */
	size_t chunk = (len + records - 1) / records;
	size_t sent = 0, took, max;
	struct batch b;
	ssize_t settled;

	if (rb == NULL)
		return -1;
	while (sent < len) {
		max = len - sent <= chunk ? 1 : nonblock ? batch_for_room(fd) : NS_SEND_BATCH;
		if (seal_batch(c, rb, iov, iovcnt, sent, len, chunk, max, &b)) {
			int err = errno;

			c->tx_nonce = b.first_nonce;
			ns_conn_fail(c, fd, err, err == ENOMEM ? "no memory for a cipher context"
			                                       : "nonces exhausted");
			errno = err;
			break;
		}
		took = send_all(fd, rb->wire, b.wire_len, flags);
		if (took == 0) {
			/* The kernel took none of it (errno from it): the nonces can be used again. */
			c->tx_nonce = b.first_nonce;
			break;
		}
		nagle_again(c, fd);
		if ((settled = settle_batch(c, fd, rb, iov, iovcnt, sent, &b, took)) < 0)
			break;
		sent += (size_t)settled;
		if (took < b.wire_len)
			break;
	}
	return sent > 0 ? (ssize_t)sent : -1;
}

/*
 * Push out what the program was told had left: a tail the shim owns and,
 * once the transport keys exist, the early data.  0 when nothing is left,
 * -1 with errno (EAGAIN: the kernel takes no more now).  Under tx_lock.
 */
int
ns_conn_flush_pending(struct ns_conn *c, int fd)
{
	struct iovec iov;
	size_t off = 0;
	ssize_t n;

	if (c->tail_len > c->tail_off && c->tail_plain_len == 0) {
		if (flush_tail(c, fd, MSG_DONTWAIT | MSG_NOSIGNAL) != 0)
			return -1;
		drop_tail(c);
	}
	if (c->early_len == 0 || ns_conn_phase(c) != NS_PHASE_OPEN) {
		if (ns_conn_phase(c) == NS_PHASE_OPEN)
			ns_conn_drop_early(c);
		if (c->early_len > 0) {
			errno = EAGAIN;
			return -1;
		}
		return 0;
	}
	/*
	 * Whole records only; a record the kernel took part of becomes a tail
	 * the shim owns, and nothing may follow it before the rest of it has
	 * gone (room can appear in the kernel between two calls).
	 */
	while (off < c->early_len && c->tail_len <= c->tail_off) {
		iov = (struct iovec){ns_conn_early(c) + off, c->early_len - off};
		n = send_records(c, fd, &iov, 1, iov.iov_len, MSG_DONTWAIT | MSG_NOSIGNAL, 1);
		if (n <= 0)
			break;
		off += (size_t)n;
	}
	if (c->tail_len > c->tail_off && c->tail_plain_len > 0) {
		/* The record in the tail counts as sent: its plaintext is not the program's to retry. */
		off += c->tail_plain_len;
		c->tail_plain_len = 0;
	}
	memmove(ns_conn_early(c), ns_conn_early(c) + off, c->early_len - off);
	c->early_len -= (uint32_t)off;
	if (off > 0 || ns_conn_phase(c) == NS_PHASE_FAILED)
		ns_conn_unblock_writers(c, fd);
	if (c->early_len == 0 && c->tail_len <= c->tail_off) {
		ns_conn_drop_early(c);
		return 0;
	}
	if (ns_conn_phase(c) == NS_PHASE_FAILED)
		errno = c->error;
	else
		errno = EAGAIN;
	return -1;
}

/*
 * The program's write while the first flight is still being gathered:
 * taken into msg1 (reported as sent), unless it no longer fits.  Bytes
 * taken, 0 when the first flight went and the write goes on as a later one,
 * or -1.
 */
static ssize_t
coalesce(struct ns_conn *c, int fd, const struct iovec *iov, int iovcnt, size_t len, int flags)
{
	size_t budget = c->tfo ? NS_SYN_PAYLOAD : NS_MAX_PLAINTEXT;
	ssize_t taken;

	/* The first write always rides whole (up to a frame); later ones only within one SYN. */
	if (c->early_len > 0 && c->early_len + len > budget) {
		ns_conn_release(c, fd);
		return ns_conn_phase(c) == NS_PHASE_FAILED ? -1 : 0;
	}
	if ((taken = take_early(c, iov, iovcnt, len, NS_MAX_PLAINTEXT)) < 0)
		return -1;
	c->last_write_us = ns_now_us();
	c->hold = (flags & MSG_MORE) || c->corked;
	if ((flags & MSG_EOR) || ns_shim.config.first_flight_us == 0 ||
	    (!c->hold && ns_service_at(fd, c, NS_JOB_RELEASE, quiet_due_ms()) != 0)) {
		ns_conn_release(c, fd);
		if (ns_conn_phase(c) == NS_PHASE_FAILED) {
			errno = c->error;
			return -1;
		}
	}
	return taken;
}

/*
 * A write while the handshake is not done, on a non-blocking socket: it
 * waits in the early buffer (reported as sent) and leaves once the keys
 * exist.  A full buffer is EAGAIN.
 */
static ssize_t
write_early(struct ns_conn *c, int fd, const struct iovec *iov, int iovcnt, size_t len)
{
	ssize_t taken = take_early(c, iov, iovcnt, len, NS_ARENA_BUF);

	/* Full: until it has room, the waiting calls must not report the fd writable. */
	if (taken < 0 && errno == EAGAIN && !c->write_blocked) {
		c->write_blocked = 1;
		__atomic_add_fetch(&ns_conn_write_blocked, 1, __ATOMIC_RELEASE);
		ns_service_watch(fd, c);
		errno = EAGAIN;
	}
	if (taken > 0 && c->early_len == (uint32_t)taken) {
		/* The first write to wait: msg2, even empty, must now wake the service thread. */
		if (c->role == NS_ROLE_INITIATOR && pthread_mutex_trylock(&c->rx_lock) == 0) {
			ns_conn_read_handshake(c, fd);
			ns_conn_unlock_rx(c);
		}
		ns_service_watch(fd, c);
	}
	return taken;
}

/* send-like write of plaintext from iov. */
ssize_t
ns_conn_send(struct ns_conn *c, int fd, const struct iovec *iov, int iovcnt, int flags)
{
	const int supported = MSG_DONTWAIT | MSG_NOSIGNAL | MSG_MORE | MSG_EOR;
	size_t len = ns_iov_total(iov, iovcnt);
	int nonblock = c->nonblock || (flags & MSG_DONTWAIT);
	enum ns_phase phase;
	ssize_t ret = -1;

	if (flags & ~supported) {
		errno = EOPNOTSUPP;
		return -1;
	}
	if (len == 0 && ns_conn_phase(c) != NS_PHASE_FAILED)
		return 0;
	if (ns_conn_lock_tx(c, fd))
		return -1;
	if (ns_conn_phase(c) == NS_PHASE_START) {
		if (!c->zero_rtt)
			ns_conn_release(c, fd);
		else if ((ret = coalesce(c, fd, iov, iovcnt, len, flags)) != 0)
			goto out;
	}
	/* A record the program was told about but the kernel took only part of. */
	if (c->tail_len > c->tail_off && c->tail_plain_len > 0) {
		int same = ns_iov_starts_with(iov, iovcnt, tail_plain(c), c->tail_plain_len);

		if (flush_tail(c, fd, flags) < 0)
			goto out;
		if (same) {
			ret = (ssize_t)c->tail_plain_len;
			drop_tail(c);
			goto out;
		}
		ns_log(NS_LOG_WARN, "fd %d, %s: the program did not retry a partly sent write; "
		       "its first %u bytes were delivered anyway", fd, c->peer, c->tail_plain_len);
		drop_tail(c);
	}
	phase = ns_conn_phase(c);
	if (phase == NS_PHASE_AWAIT_MSG2 || phase == NS_PHASE_AWAIT_MSG1) {
		if (nonblock) {
			ret = write_early(c, fd, iov, iovcnt, len);
			goto out;
		}
		if (drain_blocking(c, fd) != 0 && ns_conn_phase(c) == NS_PHASE_FAILED)
			goto failed;
		ns_conn_await_peer(c, fd);
		if (c->plaintext) {
			/* Mixed mode, plaintext client: the program has the bare socket from now on. */
			struct msghdr m = {.msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)iovcnt};
			ns_conn_unlock_tx(c);
			return REAL(sendmsg)(fd, &m, flags);
		}
		phase = ns_conn_phase(c);
		if (phase == NS_PHASE_AWAIT_MSG2 || phase == NS_PHASE_AWAIT_MSG1)
			ns_conn_fail(c, fd, ETIMEDOUT, "no handshake message from the peer in time");
	}
	if (ns_conn_phase(c) == NS_PHASE_MSG2_DUE) {
		/* Writes that waited for msg1 ride in msg2 first; the program's first bytes otherwise. */
		if (c->early_len > 0) {
			ns_conn_send_early_msg2(c, fd);
		} else {
			ret = ns_conn_send_msg2(c, fd, iov, iovcnt, len, flags);
			goto out;
		}
	}
	if (ns_conn_phase(c) == NS_PHASE_FAILED)
		goto failed;
	/* What the program was told had left goes before anything it writes now. */
	if (ns_conn_flush_pending(c, fd) != 0) {
		if (ns_conn_phase(c) == NS_PHASE_FAILED)
			goto failed;
		if (nonblock) {
			ret = write_early(c, fd, iov, iovcnt, len);
			goto out;
		}
		if (drain_blocking(c, fd) != 0)
			goto failed;
	}
	ret = send_records(c, fd, iov, iovcnt, len, flags, nonblock);
	goto out;
failed:
	errno = c->error ? c->error : EPIPE;
	ret = -1;
out:
	ns_conn_account(c, fd, ret, 1);
	ns_conn_unlock_tx(c);
	return ret;
}
