/*
 * Moving bytes between the two sides of a pair: frames in from the noise
 * side, records sealed towards it, and end of stream passed on as FIN.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "cipher.h"
#include "proxy.h"

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

/*
 * A short read emptied the socket, so the next arrival brings a new edge:
 * no need to read again until then.  A FIN already queued brings none, so
 * after one the side is read until EOF.
 */
static void side_drained(struct proxy_side *s)
{
	if (!s->hup)
		s->readable = 0;
}

/*
 * Read up to want bytes of the current frame into space.  While relaying,
 * a body read also takes the next frame's header when it is there,
 * halving the reads per record; the header waits in next_header.
 */
static ssize_t read_frame_bytes(struct proxy_pair *p, uint8_t *space, size_t want)
{
	struct iovec iov[2] = { { space, want }, { p->next_header, NS_FRAME_HEADER_LEN } };
	ssize_t n;

	if (p->phase != PHASE_RELAY || p->reader.header_have < NS_FRAME_HEADER_LEN)
		return recv(p->noise.fd, space, want, 0);
	n = readv(p->noise.fd, iov, 2);
	if (n > (ssize_t)want) {
		p->next_header_len = (size_t)n - want;
		n = (ssize_t)want;
		/* More may be queued behind the header: a full read is no sign of a drained socket. */
	} else if (n >= 0 && (size_t)n == want) {
		/* The next header was not there: the socket is empty. */
		side_drained(&p->noise);
	}
	return n;
}

/* Read frame bytes from the noise side. */
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
		space = ns_frame_reader_space(r, &want);
		n = read_frame_bytes(p, space, want);
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
			side_drained(s);
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
	/* A bad header shows as the reader's error on the next read. */
	if (p->next_header_len > 0)
		ns_frame_reader_feed(&p->reader, p->next_header, p->next_header_len);
	p->next_header_len = 0;
	return body;
}

/*
 * Read what in has, up to PROXY_RECORD_MAX bytes, into a new buffer with
 * head bytes free before it and tail after.  1 with *out set, 1 at EOF
 * (in->eof set, *out NULL), 0 when nothing is there, -1 closed.
 */
static int read_chunk(struct proxy_pair *p, struct proxy_side *in, size_t head, size_t tail,
                      uint8_t **out, size_t *len)
{
	uint8_t *buf;
	ssize_t n;

	*out = NULL;
	if (!in->readable)
		return 0;
	if ((buf = malloc(head + PROXY_RECORD_MAX + tail)) == NULL)
		return proxy_fail(p, "out of memory for a record");
	n = recv(in->fd, buf + head, PROXY_RECORD_MAX, 0);
	if (n <= 0) {
		free(buf);
		if (n == 0) {
			in->eof = 1;
			return 1;
		}
		if (errno == EINTR)
			return 1;
		if (errno == EAGAIN || errno == EWOULDBLOCK) {
			in->readable = 0;
			return 0;
		}
		return proxy_fail(p, "%s: read: %s", in->name, strerror(errno));
	}
	if ((size_t)n < PROXY_RECORD_MAX)
		side_drained(in);
	*out = buf;
	*len = (size_t)n;
	return 1;
}

/* Pass a read EOF on as our FIN, once nothing is left to write to out. */
static int pass_eof(struct proxy_side *out, const struct proxy_buf *queued)
{
	if (queued->data != NULL || out->shut || out->connecting)
		return 0;
	shutdown(out->fd, SHUT_WR);
	out->shut = 1;
	return 1;
}

/* Program (or plaintext client) to the noise side: one record per read. */
static int pump_to_noise(struct proxy_pair *p)
{
	size_t head = p->passthrough ? 0 : NS_FRAME_HEADER_LEN;
	size_t tag = p->passthrough ? 0 : NS_TAG_LEN;
	uint8_t *buf;
	size_t n;
	int r;

	if (p->to_noise.data != NULL)
		return 0;
	if (p->plain.eof)
		return pass_eof(&p->noise, &p->to_noise);
	if ((r = read_chunk(p, &p->plain, head, tag, &buf, &n)) <= 0 || buf == NULL)
		return r;
	if (!p->passthrough) {
		ns_frame_header_put(buf, n + tag);
		if (ns_cipher_seal(p->tx, NULL, 0, buf + head, n, buf + head) < 0) {
			free(buf);
			return proxy_fail(p, "the sending nonce is exhausted");
		}
	}
	p->to_noise = (struct proxy_buf){ .data = buf, .len = head + n + tag };
	return 1;
}

/* The noise side to the program: one record at a time, empty records skipped. */
static int pump_to_plain(struct proxy_pair *p)
{
	uint8_t *buf;
	size_t len;
	int r;

	if (p->to_plain.data != NULL)
		return 0;
	if (p->noise.eof)
		return pass_eof(&p->plain, &p->to_plain);
	if (p->passthrough) {
		if ((r = read_chunk(p, &p->noise, 0, 0, &buf, &len)) <= 0 || buf == NULL)
			return r;
		p->to_plain = (struct proxy_buf){ .data = buf, .len = len };
		return 1;
	}
	switch (proxy_read_frame(p, &len)) {
	case FRAME_AGAIN:
		return 0;
	case FRAME_ERROR:
		return -1;
	case FRAME_EOF:
		p->noise.eof = 1;
		return 1;
	case FRAME_READY:
		break;
	}
	buf = proxy_take_frame(p);
	if (ns_cipher_open(p->rx, NULL, 0, buf, len, buf) < 0) {
		free(buf);
		return proxy_fail(p, "%s: a record does not authenticate", p->noise.name);
	}
	if (len == NS_TAG_LEN)
		free(buf);
	else
		p->to_plain = (struct proxy_buf){ .data = buf, .len = len - NS_TAG_LEN };
	return 1;
}

/* Both relay directions once the handshake is done.  >0 progress, 0 none, -1 closed. */
int proxy_relay_step(struct proxy_pair *p)
{
	int progress = 0, r;

	if ((r = proxy_flush(p, &p->noise, &p->to_noise)) < 0)
		return -1;
	progress |= r;
	if ((r = proxy_flush(p, &p->plain, &p->to_plain)) < 0)
		return -1;
	progress |= r;
	if ((r = pump_to_noise(p)) < 0)
		return -1;
	progress |= r;
	if ((r = pump_to_plain(p)) < 0)
		return -1;
	return progress | r;
}
