/*
 * Sending one record whole (conn_send.c), shared with the handshake
 * (handshake.c): this thread's buffer for a record being built, the tail
 * of a record the kernel took part of, and the early buffer.
 */
#ifndef NOISESHIM_RECORD_H
#define NOISESHIM_RECORD_H

#include <stddef.h>
#include <stdint.h>

#include "conn.h"
#include "wire.h"

enum {
	/* A transport record on the wire, at its largest. */
	NS_MAX_RECORD = NS_FRAME_HEADER_LEN + NS_MAX_TRANSPORT_BODY,
	/*
	 * Records sealed for one write go to the kernel together, up to this
	 * many (a 128 KiB write is three): one call instead of one per record.
	 */
	NS_SEND_BATCH = 4,
};

/*
 * Room for outgoing records: one record's plaintext when the program's
 * buffer does not hold it in one piece, and the wire form of a batch of
 * records (or of the first flight).  Only the pages a thread uses become
 * resident.
 */
struct ns_record_buffer {
	uint8_t plain[NS_MAX_PLAINTEXT];
	uint8_t wire[NS_SEND_BATCH * NS_MAX_RECORD];
};

_Static_assert(NS_SEND_BATCH * NS_MAX_RECORD >= NS_MAX_FIRST_FLIGHT, "the batch room holds a first flight");

/* This thread's record buffer, or NULL (errno ENOMEM). */
struct ns_record_buffer *ns_record_buffer(void);

/*
 * Hand len bytes of buf (one record carrying plain) to the kernel.  1: all
 * of it left; 0: part left and the rest is now the tail; -1: none left
 * (errno from the kernel).  Under tx_lock.
 */
int ns_send_record(struct ns_conn *c, int fd, const uint8_t *buf, size_t len, const uint8_t *plain,
                   size_t plain_len, int flags);

/* Keep len bytes of rest as the tail, with the plaintext of its record.  0, or -1. */
int ns_keep_tail(struct ns_conn *c, const uint8_t *rest, size_t len, const uint8_t *plain,
                 size_t plain_len);

/* Plaintext waiting in the early buffer, and giving the buffer back. */
uint8_t *ns_conn_early(struct ns_conn *c);
void ns_conn_drop_early(struct ns_conn *c);

/* msg2 went alone: the answer behind it must not wait for msg2's ACK (Nagle). */
void ns_conn_push_next_record(struct ns_conn *c, int fd);

#endif
