/*
 * Moving bytes between the two sides of a pair: batches of records sealed
 * towards the noise side, batches of frames opened towards the plain side,
 * and end of stream passed on as FIN.  Records are sealed and opened where
 * the kernel put them, and leave from there.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "cipher.h"
#include "proxy.h"

enum {
	/* A record's room in a sealed batch: header, plaintext, tag. */
	SEAL_SLOT = NS_FRAME_HEADER_LEN + PROXY_RECORD_MAX + NS_TAG_LEN,
	/* Plaintext one batch carries, sealed or passed through. */
	BATCH_PLAIN = PROXY_SEAL_RECORDS * PROXY_RECORD_MAX,
	/* Plaintext pieces per write towards the plain side; more go in the next. */
	OPEN_IOV = 64,
};

/* Write what b holds to s.  >0 progress, 0 none, -1 closed. */
int proxy_flush(struct proxy_pair *p, struct proxy_side *s, struct proxy_buf *b)
{
	ssize_t n;

	if (b->data == NULL || !s->writable || s->connecting)
		return 0;
	n = send(s->fd, b->data + b->off, b->len - b->off, MSG_NOSIGNAL);
	if (n < 0) {
		if (errno == EINTR)
			return 1;
		/* EINPROGRESS: a TFO connect without a cookie sent a bare SYN; write again once connected. */
		if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINPROGRESS) {
			s->writable = 0;
			return 0;
		}
		return proxy_fail(p, "%s: write: %s", s->name, strerror(errno));
	}
	b->off += (size_t)n;
	if (b->off < b->len) {
		s->writable = 0;
		return 1;
	}
	free(b->data);
	*b = (struct proxy_buf){ 0 };
	return 1;
}

/* A read got less than it asked for: see proxy.h. */
void proxy_side_drained(struct proxy_side *s)
{
	if (!s->hup)
		s->readable = 0;
}

/* Read handshake frame bytes from the noise side. */
enum proxy_frame proxy_read_frame(struct proxy_pair *p, size_t *len)
{
	struct ns_frame_reader *r = &p->reader;
	struct proxy_side *s = &p->noise;
	uint8_t *space;
	size_t want;
	ssize_t n;

	for (;;) {
		if (r->error != NS_FRAME_OK) {
			proxy_fail(p, "%s: bad frame: %s", s->name, ns_frame_strerror(r->error));
			return FRAME_ERROR;
		}
		if (ns_frame_reader_ready(r, len))
			return FRAME_READY;
		if (!s->readable)
			return FRAME_AGAIN;
		/* The body buffer is sized by the header, so an idle pair holds none. */
		if (r->header_have == NS_FRAME_HEADER_LEN && p->rx_body == NULL) {
			if ((p->rx_body = malloc(r->body_len)) == NULL) {
				proxy_fail(p, "out of memory for a %zu-byte frame", r->body_len);
				return FRAME_ERROR;
			}
			r->body = p->rx_body;
		}
		/* Exactly the frame's bytes: what follows it belongs to the relay. */
		space = ns_frame_reader_space(r, &want);
		n = recv(s->fd, space, want, 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK) {
				s->readable = 0;
				return FRAME_AGAIN;
			}
			proxy_fail(p, "%s: read: %s", s->name, strerror(errno));
			return FRAME_ERROR;
		}
		if (n == 0) {
			if (ns_frame_reader_finish(r) < 0) {
				proxy_fail(p, "%s: the stream ended inside a frame", s->name);
				return FRAME_ERROR;
			}
			return FRAME_EOF;
		}
		if ((size_t)n < want)
			proxy_side_drained(s);
		if (ns_frame_reader_commit(r, (size_t)n) < 0) {
			proxy_fail(p, "%s: bad frame: %s", s->name, ns_frame_strerror(r->error));
			return FRAME_ERROR;
		}
	}
}

/* Hand the ready frame's buffer over (the reader starts on the next frame). */
uint8_t *proxy_take_frame(struct proxy_pair *p)
{
	uint8_t *body = p->rx_body;

	p->rx_body = NULL;
	p->reader.body = NULL;
	ns_frame_reader_next(&p->reader);
	return body;
}

/*
 * Read from a readable side into iov (room bytes in all).  >0 with *got
 * bytes read (0 at EOF, with in->eof set, or after EINTR), 0 when nothing
 * is there, -1 closed.
 */
static int read_side(struct proxy_pair *p, struct proxy_side *in, const struct iovec *iov,
                     int iovcnt, size_t room, size_t *got)
{
	ssize_t n = readv(in->fd, iov, iovcnt);

	*got = 0;
	if (n < 0) {
		if (errno == EINTR)
			return 1;
		if (errno == EAGAIN || errno == EWOULDBLOCK) {
			in->readable = 0;
			return 0;
		}
		return proxy_fail(p, "%s: read: %s", in->name, strerror(errno));
	}
	if (n == 0)
		in->eof = 1;
	else if ((size_t)n < room)
		proxy_side_drained(in);
	*got = (size_t)n;
	return 1;
}

/*
 * Pass a read EOF on as our FIN, once nothing is left to write to out.
 * When the other direction is shut already, both sockets have read their
 * EOF and hold nothing unread, so the close that follows sends this FIN
 * (and not a reset): no shutdown call of its own.
 */
static int pass_eof(struct proxy_side *out, const struct proxy_side *in,
                    const struct proxy_buf *queued)
{
	if (queued->data != NULL || out->shut || out->connecting)
		return 0;
	if (!in->shut)
		shutdown(out->fd, SHUT_WR);
	out->shut = 1;
	return 1;
}

/* Mixed mode, a plaintext client: one read from in queued for the other side as it is. */
static int pass_batch(struct proxy_pair *p, struct proxy_side *in, struct proxy_buf *out)
{
	struct iovec iov;
	size_t got;
	int r;

	if (!in->readable)
		return 0;
	if ((iov.iov_base = malloc(BATCH_PLAIN)) == NULL)
		return proxy_fail(p, "out of memory for a record");
	iov.iov_len = BATCH_PLAIN;
	if ((r = read_side(p, in, &iov, 1, BATCH_PLAIN, &got)) <= 0 || got == 0) {
		free(iov.iov_base);
		return r;
	}
	*out = (struct proxy_buf){ .data = iov.iov_base, .len = got };
	return 1;
}

/*
 * One read from the program into record slots, each with room for its
 * header before and its tag after, sealed in place: the batch leaves as
 * one contiguous write.  Only the last record may be short.
 */
static int seal_batch(struct proxy_pair *p)
{
	struct iovec iov[PROXY_SEAL_RECORDS];
	uint8_t *buf, *rec;
	size_t got, n, wire = 0;
	int r;

	if (!p->plain.readable)
		return 0;
	if ((buf = malloc(PROXY_SEAL_RECORDS * SEAL_SLOT)) == NULL)
		return proxy_fail(p, "out of memory for a record");
	for (int i = 0; i < PROXY_SEAL_RECORDS; i++)
		iov[i] = (struct iovec){ buf + i * SEAL_SLOT + NS_FRAME_HEADER_LEN, PROXY_RECORD_MAX };
	if ((r = read_side(p, &p->plain, iov, PROXY_SEAL_RECORDS, BATCH_PLAIN, &got)) <= 0 ||
	    got == 0) {
		free(buf);
		return r;
	}
	for (rec = buf; got > 0; rec += SEAL_SLOT, got -= n) {
		n = got < PROXY_RECORD_MAX ? got : PROXY_RECORD_MAX;
		ns_frame_header_put(rec, n + NS_TAG_LEN);
		if (ns_cipher_seal(p->tx, NULL, 0, rec + NS_FRAME_HEADER_LEN, n,
		                   rec + NS_FRAME_HEADER_LEN) < 0) {
			free(buf);
			return proxy_fail(p, "the sending nonce is exhausted");
		}
		wire = (size_t)(rec - buf) + NS_FRAME_HEADER_LEN + n + NS_TAG_LEN;
	}
	p->to_noise = (struct proxy_buf){ .data = buf, .len = wire };
	return 1;
}

/* Program (or plaintext client) to the noise side. */
static int pump_to_noise(struct proxy_pair *p)
{
	if (p->to_noise.data != NULL)
		return 0;
	if (p->plain.eof)
		return pass_eof(&p->noise, &p->plain, &p->to_noise);
	return p->passthrough ? pass_batch(p, &p->plain, &p->to_noise) : seal_batch(p);
}

/* The body length in the header of a frame already checked by frame_body. */
static size_t stored_body(const uint8_t *header)
{
	return (size_t)header[1] << 16 | (size_t)header[2] << 8 | header[3];
}

/* The body length of the transport frame whose header is at h, or -1 closed. */
static long frame_body(struct proxy_pair *p, const uint8_t *h)
{
	struct ns_frame_reader r;

	ns_frame_reader_init(&r, NULL, NS_MIN_TRANSPORT_BODY, NS_MAX_TRANSPORT_BODY);
	if (ns_frame_reader_feed(&r, h, NS_FRAME_HEADER_LEN) < 0)
		return proxy_fail(p, "%s: bad frame: %s", p->noise.name, ns_frame_strerror(r.error));
	return (long)r.body_len;
}

/* Open, in place, the whole frames read since the last.  0, or -1 closed. */
static int open_frames(struct proxy_pair *p)
{
	struct proxy_frames *f = &p->opened;
	uint8_t *body;
	long len;

	while (f->have - f->opened >= NS_FRAME_HEADER_LEN) {
		if ((len = frame_body(p, f->data + f->opened)) < 0)
			return -1;
		if (f->have - f->opened < NS_FRAME_HEADER_LEN + (size_t)len)
			break;
		body = f->data + f->opened + NS_FRAME_HEADER_LEN;
		if (ns_cipher_open(p->rx, NULL, 0, body, (size_t)len, body) < 0)
			return proxy_fail(p, "%s: a record does not authenticate", p->noise.name);
		f->opened += NS_FRAME_HEADER_LEN + (size_t)len;
	}
	return 0;
}

/*
 * Every opened frame has been written: keep only the start of the next
 * frame, moved to the front (less than a frame, so that a whole one
 * always fits after it), or nothing.
 */
static void frames_settle(struct proxy_frames *f)
{
	size_t tail = f->have - f->opened;

	if (tail == 0) {
		free(f->data);
		*f = (struct proxy_frames){ 0 };
		return;
	}
	memmove(f->data, f->data + f->opened, tail);
	*f = (struct proxy_frames){ .data = f->data, .have = tail };
}

/* Account for n plaintext bytes written, and step over empty records. */
static void frames_written(struct proxy_frames *f, size_t n)
{
	size_t body, left;

	while (f->frame < f->opened) {
		body = stored_body(f->data + f->frame);
		left = body - NS_TAG_LEN - f->skip;
		if (n < left) {
			f->skip += n;
			return;
		}
		n -= left;
		f->frame += NS_FRAME_HEADER_LEN + body;
		f->skip = 0;
	}
}

/*
 * Write the opened frames' plaintext to the plain side, their headers and
 * tags left out by the iovec.  >0 progress, 0 none, -1 closed.
 */
static int flush_frames(struct proxy_pair *p)
{
	struct proxy_frames *f = &p->opened;
	struct proxy_side *s = &p->plain;
	struct iovec iov[OPEN_IOV];
	struct msghdr msg = { .msg_iov = iov };
	size_t at, skip, body, want = 0;
	ssize_t n = 0;

	if (f->frame == f->opened || !s->writable || s->connecting)
		return 0;
	for (at = f->frame, skip = f->skip; at < f->opened && msg.msg_iovlen < OPEN_IOV;
	     at += NS_FRAME_HEADER_LEN + body, skip = 0) {
		body = stored_body(f->data + at);
		if (body - NS_TAG_LEN > skip) {
			iov[msg.msg_iovlen++] = (struct iovec){ f->data + at + NS_FRAME_HEADER_LEN + skip,
			                                        body - NS_TAG_LEN - skip };
			want += body - NS_TAG_LEN - skip;
		}
	}
	if (want > 0 && (n = sendmsg(s->fd, &msg, MSG_NOSIGNAL)) < 0) {
		if (errno == EINTR)
			return 1;
		if (errno == EAGAIN || errno == EWOULDBLOCK) {
			s->writable = 0;
			return 0;
		}
		return proxy_fail(p, "%s: write: %s", s->name, strerror(errno));
	}
	frames_written(f, (size_t)n);
	if ((size_t)n < want)
		s->writable = 0;
	else if (f->frame == f->opened)
		frames_settle(f);
	return 1;
}

/*
 * One read from the noise side after the start of a frame kept from the
 * last batch, every whole frame then opened in place.
 */
static int open_batch(struct proxy_pair *p)
{
	struct proxy_frames *f = &p->opened;
	struct iovec iov;
	size_t got;
	int r;

	if (!p->noise.readable)
		return 0;
	if (f->data == NULL && (f->data = malloc(PROXY_OPEN_MAX)) == NULL)
		return proxy_fail(p, "out of memory for a record");
	iov = (struct iovec){ f->data + f->have, PROXY_OPEN_MAX - f->have };
	if ((r = read_side(p, &p->noise, &iov, 1, iov.iov_len, &got)) < 0)
		return -1;
	if (p->noise.eof && f->have > 0)
		return proxy_fail(p, "%s: the stream ended inside a frame", p->noise.name);
	if (got == 0) {
		/* Nothing held: the buffer goes until the next read. */
		if (f->have == 0)
			frames_settle(f);
		return r;
	}
	f->have += got;
	return open_frames(p) < 0 ? -1 : 1;
}

/* The noise side to the program, once what is queued for it has left. */
static int pump_to_plain(struct proxy_pair *p)
{
	if (p->to_plain.data != NULL || p->opened.frame < p->opened.opened)
		return 0;
	if (p->noise.eof)
		return pass_eof(&p->plain, &p->noise, &p->to_plain);
	return p->passthrough ? pass_batch(p, &p->noise, &p->to_plain) : open_batch(p);
}

/* Both relay directions once the handshake is done.  >0 progress, 0 none, -1 closed. */
int proxy_relay_step(struct proxy_pair *p)
{
	int progress = 0, r;

	if ((r = proxy_flush(p, &p->noise, &p->to_noise)) < 0)
		return -1;
	progress |= r;
	/* Handshake payloads and passthrough bytes; frames are opened only once these have left. */
	if ((r = proxy_flush(p, &p->plain, &p->to_plain)) < 0)
		return -1;
	progress |= r;
	if ((r = flush_frames(p)) < 0)
		return -1;
	progress |= r;
	if ((r = pump_to_noise(p)) < 0)
		return -1;
	progress |= r;
	if ((r = pump_to_plain(p)) < 0)
		return -1;
	return progress | r;
}
