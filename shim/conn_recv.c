/*
 * Receive path.  Records are pulled from the kernel one at a time and at
 * most one record's plaintext is held, so readiness stays in the kernel:
 * SO_RCVLOWAT covers a partial record, and a kept-back last byte covers
 * held plaintext.  A record whose plaintext fits the program's buffer is
 * decrypted straight into it, and the read that ends a record also takes
 * the next record's header, so a stream of records costs one call each.
 */
#include <errno.h>
#include <pthread.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <sodium.h>

#include "conn.h"
#include "iov.h"
#include "log.h"
#include "real.h"
#include "sandbox.h"
#include "service.h"
#include "shim.h"

static const struct ns_record_kind msg2_kind = {NS_MSG2_OVERHEAD, NS_MAX_MSG2_BODY,
                                                NS_MSG2_OVERHEAD, NS_MSG2_LOWAT, 0};
/* Records follow records: a header read ahead is checked with the same limits. */
static const struct ns_record_kind transport_kind = {NS_MIN_TRANSPORT_BODY, NS_MAX_TRANSPORT_BODY,
                                                     NS_TAG_LEN, NS_RECORD_LOWAT, 1};

/* The part of the program's buffer a read has not filled yet. */
struct ns_dest {
	const struct iovec *iov;
	int iovcnt;
	size_t offset;     /* bytes of iov already filled */
	size_t room;       /* bytes after offset that may be filled (0: hold all plaintext) */
	size_t delivered;  /* plaintext decrypted straight into iov at offset */
};

/*
 * The highest mark the shim sets.  Linux clamps the receive window to a
 * mark that needs more than the current receive buffer, for the life of
 * the connection: a mark near a 64 KB record would throttle every transfer.
 * A bigger record costs a few early wakeups instead.
 */
enum { LOWAT_CAP = 16384 };

/* Set the kernel's SO_RCVLOWAT (capped), if it differs. */
void
ns_conn_set_lowat(struct ns_conn *c, int fd, int lowat)
{
	if (lowat > LOWAT_CAP)
		lowat = LOWAT_CAP;
	if (c->kernel_lowat != lowat && !ns_sandboxed &&
	    REAL(setsockopt)(fd, SOL_SOCKET, SO_RCVLOWAT, &lowat, sizeof(lowat)) == 0)
		c->kernel_lowat = lowat;
}

/*
 * Pull the current record from the kernel.  When its plaintext will not
 * fit in room, the last byte is only peeked, so it stays in the kernel.
 * block: wait for data, as a blocking socket does.  Under rx_lock.
 */
enum ns_pull
ns_conn_pull(struct ns_conn *c, int fd, const struct ns_record_kind *kind, size_t room,
             int block)
{
	size_t want, len;
	uint8_t *space;
	ssize_t n;

	if (ns_conn_rx_body(c) == NULL)
		return NS_PULL_ERROR;
	ns_frame_reader_limits(&c->reader, kind->min_body, kind->max_body);
	if (c->reader.error != NS_FRAME_OK) {
		/* A header read ahead with the last record was bad. */
		ns_conn_fail(c, fd, EPROTO, ns_frame_strerror(c->reader.error));
		errno = c->error;
		return NS_PULL_ERROR;
	}
	while (!ns_frame_reader_ready(&c->reader, &len)) {
		int header_done = c->reader.header_have == NS_FRAME_HEADER_LEN;
		/* In a sandbox no byte can be peeked: poll reports held plaintext instead. */
		int keep_last = header_done && c->reader.body_len - kind->overhead > room && !ns_sandboxed;

		/* A record that will be used up at once may bring the next one's header with it. */
		if (header_done && kind->read_ahead && !keep_last)
			space = ns_frame_reader_space_ahead(&c->reader, &want);
		else
			space = ns_frame_reader_space(&c->reader, &want);
		/*
		 * A mark an earlier look left (the rest of this record, say) must
		 * not exceed what a blocking read waits for: the kernel wakes a
		 * sleeping reader only once the mark is there.
		 */
		if (block && c->kernel_lowat > 1 && (size_t)c->kernel_lowat >= want)
			ns_conn_set_lowat(c, fd, 1);
		if (keep_last && want == 1)
			n = ns_sock_recv(fd, space, 1, MSG_PEEK | (block ? 0 : MSG_DONTWAIT));
		else
			n = ns_sock_recv(fd, space, keep_last ? want - 1 : want, block ? 0 : MSG_DONTWAIT);
		if (n > 0) {
			c->kernel_byte_held = keep_last && want == 1;
			if (ns_frame_reader_commit(&c->reader, (size_t)n)) {
				ns_conn_fail(c, fd, EPROTO, ns_frame_strerror(c->reader.error));
				errno = c->error;
				return NS_PULL_ERROR;
			}
			continue;
		}
		if (n == 0) {
			if (c->reader.header_have == 0) {
				ns_conn_rx_idle(c);
				return NS_PULL_EOF;
			}
			/* The connection may have failed first (a deadline): that is the reason to give. */
			ns_conn_fail(c, fd, ECONNRESET, "stream ended inside a record");
			errno = c->error;
			return NS_PULL_ERROR;
		}
		if (errno == EINTR && block)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK) {
			/* Wake the program only once the rest of the record is there. */
			size_t have = c->reader.header_have + c->reader.body_have;
			size_t mark = ns_frame_reader_missing(&c->reader);

			if (have + mark < kind->wake)
				mark = kind->wake - have;
			ns_conn_set_lowat(c, fd, (int)mark);
			/* Nothing of the next record is here: the buffer can go until it comes. */
			ns_conn_rx_idle(c);
			return NS_PULL_AGAIN;
		}
		return NS_PULL_ERROR;
	}
	ns_conn_set_lowat(c, fd, 1);
	return NS_PULL_READY;
}

/*
 * The held plaintext is used up: take the kept-back byte out of the
 * kernel, and as much of the next record's header as is there with it.
 */
static void
release_kernel_byte(struct ns_conn *c, int fd)
{
	uint8_t in[1 + NS_FRAME_HEADER_LEN];
	size_t ask = c->reader.header_have == 0 ? sizeof(in) : 1;
	ssize_t n;

	if (!c->kernel_byte_held || (n = REAL(recv)(fd, in, ask, MSG_DONTWAIT)) < 1)
		return;
	c->kernel_byte_held = 0;
	if (n == 1)
		return;
	/* Whatever record was held, only transport records follow it. */
	ns_frame_reader_limits(&c->reader, NS_MIN_TRANSPORT_BODY, NS_MAX_TRANSPORT_BODY);
	memcpy(c->reader.header, in + 1, (size_t)n - 1);
	if (ns_frame_reader_commit(&c->reader, (size_t)n - 1))
		ns_conn_fail(c, fd, EPROTO, ns_frame_strerror(c->reader.error));
}

/* Make len bytes at offset in the receive buffer the held plaintext, and start on the next record. */
void
ns_conn_hold(struct ns_conn *c, size_t offset, size_t len)
{
	c->plain_off = (uint32_t)offset;
	c->plain_len = (uint32_t)len;
	if (c->plain_end < offset + len)
		c->plain_end = (uint32_t)(offset + len);
	ns_frame_reader_next(&c->reader);
}

/*
 * A transport record is whole in the receive buffer: decrypt it straight
 * into the program's buffer when its plaintext fits in one piece there
 * (dest->delivered says how much), else into held plaintext.
 */
static int
open_record(struct ns_conn *c, int fd, size_t len, struct ns_dest *dest)
{
	struct ns_cipher *rx = ns_conn_cipher(c, 0);
	size_t plain_len = len - NS_TAG_LEN;
	uint8_t *body = c->reader.body, *out = NULL;

	if (rx == NULL) {
		ns_conn_fail(c, fd, ENOMEM, "no memory for a cipher context");
		errno = ENOMEM;
		return -1;
	}
	if (plain_len > 0 && plain_len <= dest->room)
		out = (uint8_t *)ns_iov_contiguous(dest->iov, dest->iovcnt, dest->offset, plain_len);
	ns_cipher_set_nonce(rx, c->rx_nonce);
	if (ns_cipher_open(rx, NULL, 0, body, len, out != NULL ? out : body)) {
		/* The program must not find unauthenticated bytes past what it is told it got. */
		if (out != NULL)
			sodium_memzero(out, plain_len);
		ns_conn_fail(c, fd, EPROTO, "a record fails authentication");
		errno = EPROTO;
		return -1;
	}
	c->rx_nonce = ns_cipher_nonce(rx);
	if (out == NULL) {
		ns_conn_hold(c, 0, plain_len);
	} else {
		dest->delivered = plain_len;
		ns_frame_reader_next(&c->reader);
	}
	/* A bad header that came in with this record fails the connection now, not at a later wait. */
	if (c->reader.error != NS_FRAME_OK)
		ns_conn_fail(c, fd, EPROTO, ns_frame_strerror(c->reader.error));
	return 0;
}

/*
 * A blocking read of a handshake message waits for more of it no longer
 * than the handshake deadline, one deadline from the start however the
 * bytes trickle in.  0 when there may be more to read, -1 when the
 * deadline passed (the connection failed).
 */
static int
await_handshake_bytes(struct ns_conn *c, int fd)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};
	int left;

	/* This reader takes the message itself, however small: wake for what it still lacks. */
	if (c->role == NS_ROLE_INITIATOR || c->prefix_have == NS_ROUTE_PREFIX_LEN)
		ns_conn_set_lowat(c, fd, (int)ns_frame_reader_missing(&c->reader));
	while ((left = ns_conn_deadline_left(c)) > 0) {
		int n = REAL(poll)(&p, 1, left);
		if (n > 0 || (n < 0 && errno != EINTR))
			return 0;  /* readable, or let the read itself report the problem */
	}
	ns_conn_fail(c, fd, ETIMEDOUT,
	             c->role == NS_ROLE_INITIATOR
	                     ? "no handshake reply in time (is the server wrapped?)"
	                     : "the client did not complete the handshake in time");
	errno = ETIMEDOUT;
	return -1;
}

/* The stream ended or broke before msg2: that is a failed handshake, never a clean end. */
static enum ns_pull
handshake_cut(struct ns_conn *c, int fd, enum ns_pull r)
{
	int err = r == NS_PULL_EOF ? ECONNRESET : errno;
	char why[160];

	if (r == NS_PULL_AGAIN)
		return r;
	/* Failed meanwhile (the deadline, say): the shutdown's end of stream is not the reason. */
	if (ns_conn_phase(c) == NS_PHASE_FAILED) {
		errno = c->error;
		return NS_PULL_ERROR;
	}
	snprintf(why, sizeof(why), "Noise handshake failed: %s",
	         r == NS_PULL_EOF ? "the server closed the connection instead of answering "
	                         "(wrong key or suite, or a key its allowlist lacks?)"
	                       : strerror(err));
	ns_conn_fail(c, fd, err, why);
	errno = c->error;
	return NS_PULL_ERROR;
}

/*
 * The server reads again: the client may be waiting for msg2 to send more,
 * so msg2 goes now unless a writer is sending it.  A blocking reader waits
 * for that writer.
 */
static enum ns_pull
await_msg2_sent(struct ns_conn *c, int fd, int block)
{
	ns_conn_service_msg2(c, fd);
	while (block && ns_conn_phase(c) == NS_PHASE_MSG2_DUE)
		ns_shared_wait(&c->phase, NS_PHASE_MSG2_DUE, 100);
	if (ns_conn_phase(c) == NS_PHASE_MSG2_DUE) {
		errno = EAGAIN;
		return NS_PULL_AGAIN;
	}
	return NS_PULL_READY;
}

/*
 * Read one record and turn it into held plaintext (possibly empty).
 * Returns NS_PULL_READY when that happened.
 */
static enum ns_pull
next_record(struct ns_conn *c, int fd, struct ns_dest *dest, int block)
{
	size_t room = dest->room;
	enum ns_pull r;
	size_t len;

	switch (ns_conn_phase(c)) {
	case NS_PHASE_START:
		errno = EAGAIN;
		return NS_PULL_AGAIN;
	case NS_PHASE_FAILED:
		errno = c->error;
		return NS_PULL_ERROR;
	case NS_PHASE_AWAIT_MSG1:
		while ((r = ns_conn_respond(c, fd, room, 0)) == NS_PULL_AGAIN && block)
			if (await_handshake_bytes(c, fd) != 0)
				return NS_PULL_ERROR;
		return r;
	case NS_PHASE_MSG2_DUE:
		/* The client cannot send records before it has msg2. */
		if ((r = await_msg2_sent(c, fd, block)) != NS_PULL_READY)
			return r;
		return next_record(c, fd, dest, block);
	case NS_PHASE_AWAIT_MSG2:
		while ((r = ns_conn_pull(c, fd, &msg2_kind, room, 0)) == NS_PULL_AGAIN && block)
			if (await_handshake_bytes(c, fd) != 0)
				return NS_PULL_ERROR;
		if (r != NS_PULL_READY)
			return handshake_cut(c, fd, r);
		ns_frame_reader_ready(&c->reader, &len);
		return ns_conn_read_msg2(c, fd, len) ? NS_PULL_ERROR : NS_PULL_READY;
	case NS_PHASE_OPEN:
		if ((r = ns_conn_pull(c, fd, &transport_kind, room, block)) != NS_PULL_READY)
			return r;
		ns_frame_reader_ready(&c->reader, &len);
		return open_record(c, fd, len, dest) ? NS_PULL_ERROR : NS_PULL_READY;
	}
	return NS_PULL_ERROR;
}

/* recv-like read of plaintext into iov. */
ssize_t
ns_conn_recv(struct ns_conn *c, int fd, const struct iovec *iov, int iovcnt, int flags)
{
	const int supported = MSG_PEEK | MSG_DONTWAIT | MSG_WAITALL | MSG_NOSIGNAL | MSG_CMSG_CLOEXEC;
	size_t len = ns_iov_total(iov, iovcnt), copied = 0;
	int block = !c->nonblock && !(flags & MSG_DONTWAIT);
	ssize_t ret = -1;

	if (flags & ~supported) {
		errno = EOPNOTSUPP;
		return -1;
	}
	/* Reading is waiting for the peer: the first flight goes now, with whatever it gathered. */
	if (ns_conn_phase(c) == NS_PHASE_START)
		ns_conn_release_unlocked(c, fd);
	if (len == 0 && ns_conn_phase(c) != NS_PHASE_FAILED)
		return 0;
	if (ns_conn_lock_rx(c, fd))
		return -1;
	for (;;) {
		if (c->plain_len > 0) {
			const uint8_t *plain = (const uint8_t *)ns_arena_ptr(c->rx_buf) + c->plain_off;
			size_t n = len - copied < c->plain_len ? len - copied : c->plain_len;

			ns_iov_scatter(iov, iovcnt, copied, plain, n);
			copied += n;
			if (flags & MSG_PEEK)
				break;
			c->plain_off += (uint32_t)n;
			c->plain_len -= (uint32_t)n;
			if (c->plain_len == 0)
				release_kernel_byte(c, fd);
			if (copied == len)
				break;
		}
		int wait = block && (copied == 0 || ((flags & MSG_WAITALL) && copied < len));
		/*
		 * msg1's payload is read, and the client sends nothing more
		 * before it has msg2: the read ends here.  Going on would send
		 * msg2 empty at once, and the answer the program is about to
		 * write would follow as a record of its own, one more packet out
		 * of the first round trip's congestion window.  msg2 waits for
		 * that answer instead; reading again sends it at once.
		 */
		if (copied > 0 && !wait && ns_conn_phase(c) == NS_PHASE_MSG2_DUE)
			break;
		struct ns_dest dest = {iov, iovcnt, copied, flags & MSG_PEEK ? 0 : len - copied, 0};
		enum ns_pull r = next_record(c, fd, &dest, wait);

		if (r == NS_PULL_READY) {
			copied += dest.delivered;
			if (copied == len)
				break;
			continue;
		}
		if (r == NS_PULL_PLAINTEXT) {
			/* Mixed mode, plaintext client: from now on the program has the bare socket. */
			struct msghdr m = {.msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)iovcnt};
			ns_conn_unlock_rx(c);
			return REAL(recvmsg)(fd, &m, flags);
		}
		if (r == NS_PULL_EOF || copied > 0)
			break;
		if (r == NS_PULL_AGAIN)
			errno = EAGAIN;
		goto out;
	}
	ret = (ssize_t)copied;
out:
	/*
	 * All it held was read and nothing more has come: the buffer goes back,
	 * so a connection that waits costs no buffer.  One that is still
	 * receiving keeps it (giving it back wipes it: a copy of each record).
	 */
	if (c->rx_buf != 0 && c->plain_len == 0 && c->reader.header_have == 0 && !ns_sandboxed) {
		uint8_t byte;
		if (REAL(recv)(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT) <= 0)
			ns_conn_rx_idle(c);
	}
	ns_conn_account(c, fd, flags & MSG_PEEK ? 0 : ret, 0);
	ns_conn_unlock_rx(c);
	return ret;
}

static int
awaiting_peer(const struct ns_conn *c)
{
	enum ns_phase phase = ns_conn_phase(c);

	return phase == NS_PHASE_AWAIT_MSG2 || phase == NS_PHASE_AWAIT_MSG1;
}

/*
 * For a writer that must wait for the peer's handshake message: read it,
 * unless a reader is already at it.  Returns once the phase has moved on
 * or the handshake deadline passed.
 */
void
ns_conn_await_peer(struct ns_conn *c, int fd)
{
	while (awaiting_peer(c)) {
		int left = ns_conn_deadline_left(c), locked;
		uint32_t phase = ns_conn_phase(c);

		if (left == 0)
			return;
		locked = pthread_mutex_trylock(&c->rx_lock);
		if (locked == EOWNERDEAD) {
			pthread_mutex_consistent(&c->rx_lock);
			ns_conn_fail(c, fd, EPIPE, "a process died while using this connection");
			ns_conn_unlock_rx(c);
			return;
		}
		if (locked == 0) {
			enum ns_pull r = next_record(c, fd, &(struct ns_dest){0}, 0);
			/* The poll below must see msg2 even when it is empty. */
			if (r == NS_PULL_AGAIN)
				ns_conn_set_lowat(c, fd, 1);
			ns_conn_unlock_rx(c);
			if (r == NS_PULL_AGAIN) {
				struct pollfd p = {.fd = fd, .events = POLLIN};
				REAL(poll)(&p, 1, left);
			} else if (r != NS_PULL_READY) {
				return;
			}
		} else {
			/* A reader holds the receive side and moves the phase when the message is in. */
			ns_shared_wait(&c->phase, phase, left < 100 ? left : 100);
		}
	}
}

/*
 * Initiator awaiting msg2: read it if it is whole, without waiting.  With
 * writes waiting for it, the kernel wakes the service thread for every part
 * of msg2, an empty one too (a program is woken only for more).  Under
 * rx_lock.
 */
enum ns_pull
ns_conn_read_handshake(struct ns_conn *c, int fd)
{
	enum ns_pull r;

	if (ns_conn_phase(c) != NS_PHASE_AWAIT_MSG2)
		return NS_PULL_READY;
	r = next_record(c, fd, &(struct ns_dest){0}, 0);
	if (r == NS_PULL_AGAIN && c->early_len > 0)
		ns_conn_set_lowat(c, fd, (int)ns_frame_reader_missing(&c->reader));
	return r;
}

/* Plaintext readable without blocking (FIONREAD). */
int
ns_conn_readable(struct ns_conn *c, int fd)
{
	size_t total;

	if (ns_conn_lock_rx(c, fd))
		return 0;
	total = c->plain_len;
	/* Decrypt the next whole record, if any, so its plaintext counts too. */
	while (total == 0 && ns_conn_phase(c) != NS_PHASE_START &&
	       next_record(c, fd, &(struct ns_dest){0}, 0) == NS_PULL_READY)
		total = c->plain_len;
	ns_conn_unlock_rx(c);
	return total > INT32_MAX ? INT32_MAX : (int)total;
}
