/*
 * Storj framing: 0x80, a 24-bit big-endian body length, the body.  The
 * reader is incremental: it can be fed any split of the byte stream, and
 * says how many bytes the current frame still lacks (for SO_RCVLOWAT).
 */
#ifndef NOISESHIM_FRAME_H
#define NOISESHIM_FRAME_H

#include <stddef.h>
#include <stdint.h>

#include "wire.h"

enum ns_frame_error {
	NS_FRAME_OK = 0,
	NS_FRAME_BAD_MARKER,   /* first header byte is not 0x80 */
	NS_FRAME_TOO_LARGE,    /* body longer than the limit for this frame */
	NS_FRAME_TOO_SMALL,    /* body shorter than the limit for this frame */
	NS_FRAME_TRUNCATED,    /* the stream ended inside a frame */
};

struct ns_frame_reader {
	uint8_t header[NS_FRAME_HEADER_LEN];
	size_t header_have;
	size_t body_len;
	size_t body_have;
	size_t ahead;            /* bytes of the next frame's header read behind this body */
	size_t min_body, max_body;
	uint8_t *body;           /* caller's buffer, at least max_body bytes */
	enum ns_frame_error error;
};

/* Write the header for a body of len bytes (len <= NS_MAX_FRAME_BODY). */
void ns_frame_header_put(uint8_t out[NS_FRAME_HEADER_LEN], size_t len);

/* Start reading frames into body, each between min_body and max_body bytes long. */
void ns_frame_reader_init(struct ns_frame_reader *r, uint8_t *body, size_t min_body,
                          size_t max_body);

/* Change the limits for the next frame (call between frames). */
void ns_frame_reader_limits(struct ns_frame_reader *r, size_t min_body, size_t max_body);

/* Where the next bytes of the stream go, and how many the current frame still lacks. */
uint8_t *ns_frame_reader_space(struct ns_frame_reader *r, size_t *want);

/*
 * Once the header is whole: the space for the rest of the frame, which may
 * take the next frame's header too (*want counts it), so that one read can
 * finish a frame and learn the next one's length.  The body buffer needs
 * NS_FRAME_HEADER_LEN bytes beyond max_body.
 */
uint8_t *ns_frame_reader_space_ahead(struct ns_frame_reader *r, size_t *want);

/*
 * Account for n bytes written at the space; checks the header once it is
 * whole.  Bytes beyond the frame (after ns_frame_reader_space_ahead) are
 * the next header's.  0 or -1.
 */
int ns_frame_reader_commit(struct ns_frame_reader *r, size_t n);

/* Copy up to len bytes of the stream in, stopping at the end of a frame.  Bytes taken, or -1. */
long ns_frame_reader_feed(struct ns_frame_reader *r, const uint8_t *in, size_t len);

/* Bytes the current frame still lacks (the header's 4 before any byte arrived). */
size_t ns_frame_reader_missing(const struct ns_frame_reader *r);

/* Whether a whole frame is in the body buffer; *len gets its length. */
int ns_frame_reader_ready(const struct ns_frame_reader *r, size_t *len);

/* Drop the ready frame and start on the next, with any of its header read ahead (checked). */
void ns_frame_reader_next(struct ns_frame_reader *r);

/* At end of stream: -1 with NS_FRAME_TRUNCATED if a frame was begun, else 0. */
int ns_frame_reader_finish(struct ns_frame_reader *r);

/* A short human-readable reason for an error. */
const char *ns_frame_strerror(enum ns_frame_error error);

#endif
