/*
 * Incremental reader and header writer for Storj frames.
 */
#include "frame.h"

#include <string.h>

/* Write the header for a body of len bytes (len <= NS_MAX_FRAME_BODY). */
void
ns_frame_header_put(uint8_t out[NS_FRAME_HEADER_LEN], size_t len)
{
	out[0] = NS_FRAME_MARKER;
	out[1] = (uint8_t)(len >> 16);
	out[2] = (uint8_t)(len >> 8);
	out[3] = (uint8_t)len;
}

/* Start reading frames into body, each between min_body and max_body bytes long. */
void
ns_frame_reader_init(struct ns_frame_reader *r, uint8_t *body, size_t min_body, size_t max_body)
{
	memset(r, 0, sizeof(*r));
	r->body = body;
	ns_frame_reader_limits(r, min_body, max_body);
}

/* Change the limits for the next frame (call between frames). */
void
ns_frame_reader_limits(struct ns_frame_reader *r, size_t min_body, size_t max_body)
{
	r->min_body = min_body;
	r->max_body = max_body;
}

/* Where the next bytes of the stream go, and how many the current frame still lacks. */
uint8_t *
ns_frame_reader_space(struct ns_frame_reader *r, size_t *want)
{
	*want = ns_frame_reader_missing(r);
	if (r->header_have < NS_FRAME_HEADER_LEN)
		return r->header + r->header_have;
	return r->body + r->body_have;
}

static int
check_header(struct ns_frame_reader *r)
{
	if (r->header[0] != NS_FRAME_MARKER)
		r->error = NS_FRAME_BAD_MARKER;
	r->body_len = (size_t)r->header[1] << 16 | (size_t)r->header[2] << 8 | r->header[3];
	if (r->error == NS_FRAME_OK && r->body_len > r->max_body)
		r->error = NS_FRAME_TOO_LARGE;
	if (r->error == NS_FRAME_OK && r->body_len < r->min_body)
		r->error = NS_FRAME_TOO_SMALL;
	return r->error == NS_FRAME_OK ? 0 : -1;
}

/* The rest of the frame and the next header: one read can finish a frame and learn the next. */
uint8_t *
ns_frame_reader_space_ahead(struct ns_frame_reader *r, size_t *want)
{
	uint8_t *space = ns_frame_reader_space(r, want);

	if (r->header_have == NS_FRAME_HEADER_LEN)
		*want += NS_FRAME_HEADER_LEN;
	return space;
}

/* Account for n bytes written at the space; checks the header once it is whole.  0 or -1. */
int
ns_frame_reader_commit(struct ns_frame_reader *r, size_t n)
{
	if (r->error != NS_FRAME_OK)
		return -1;
	if (r->header_have < NS_FRAME_HEADER_LEN) {
		r->header_have += n;
		return r->header_have == NS_FRAME_HEADER_LEN ? check_header(r) : 0;
	}
	r->body_have += n;
	if (r->body_have > r->body_len) {
		r->ahead = r->body_have - r->body_len;
		r->body_have = r->body_len;
	}
	return 0;
}

/* Copy up to len bytes of the stream in, stopping at the end of a frame.  Bytes taken, or -1. */
long
ns_frame_reader_feed(struct ns_frame_reader *r, const uint8_t *in, size_t len)
{
	size_t taken = 0, want, n;
	uint8_t *space;

	while (taken < len && r->error == NS_FRAME_OK) {
		space = ns_frame_reader_space(r, &want);
		if (want == 0)
			break;
		n = len - taken < want ? len - taken : want;
		memcpy(space, in + taken, n);
		taken += n;
		if (ns_frame_reader_commit(r, n))
			return -1;
	}
	return r->error == NS_FRAME_OK ? (long)taken : -1;
}

/* Bytes the current frame still lacks (the header's 4 before any byte arrived). */
size_t
ns_frame_reader_missing(const struct ns_frame_reader *r)
{
	if (r->header_have < NS_FRAME_HEADER_LEN)
		return NS_FRAME_HEADER_LEN - r->header_have;
	return r->body_len - r->body_have;
}

/* Whether a whole frame is in the body buffer; *len gets its length. */
int
ns_frame_reader_ready(const struct ns_frame_reader *r, size_t *len)
{
	if (r->error != NS_FRAME_OK || r->header_have < NS_FRAME_HEADER_LEN ||
	    r->body_have < r->body_len)
		return 0;
	*len = r->body_len;
	return 1;
}

/* Drop the ready frame and start on the next, with any of its header read ahead (checked). */
void
ns_frame_reader_next(struct ns_frame_reader *r)
{
	size_t ahead = r->ahead;

	if (ahead > 0)
		memmove(r->header, r->body + r->body_len, ahead);
	r->header_have = ahead;
	r->body_have = 0;
	r->body_len = 0;
	r->ahead = 0;
	if (ahead == NS_FRAME_HEADER_LEN)
		check_header(r);
}

/* At end of stream: -1 with NS_FRAME_TRUNCATED if a frame was begun, else 0. */
int
ns_frame_reader_finish(struct ns_frame_reader *r)
{
	if (r->error != NS_FRAME_OK)
		return -1;
	if (r->header_have == 0)
		return 0;
	r->error = NS_FRAME_TRUNCATED;
	return -1;
}

/* A short human-readable reason for an error. */
const char *
ns_frame_strerror(enum ns_frame_error error)
{
	switch (error) {
	case NS_FRAME_OK:
		return "no error";
	case NS_FRAME_BAD_MARKER:
		return "frame header does not start with 0x80";
	case NS_FRAME_TOO_LARGE:
		return "frame longer than allowed here";
	case NS_FRAME_TOO_SMALL:
		return "frame shorter than allowed here";
	case NS_FRAME_TRUNCATED:
		return "stream ended inside a frame";
	}
	return "unknown frame error";
}
