/*
 * One wrapped TCP connection: its Noise state and the in-band data path.
 * The program's fd stays the real socket; the shim keeps at most one
 * record's worth of state in each direction:
 *
 *  - receive: a partial record pulled from the kernel (with SO_RCVLOWAT set
 *    to the rest of it), or the plaintext of one record not yet read by the
 *    program, whose last ciphertext byte stays in the kernel so that the fd
 *    remains readable exactly while plaintext is held;
 *  - send: the unsent tail of a record the kernel took only part of, with
 *    the record's plaintext, which the program has not been told was sent.
 */
#ifndef NOISESHIM_CONN_H
#define NOISESHIM_CONN_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "cipher.h"
#include "frame.h"
#include "noise.h"

enum ns_role { NS_ROLE_INITIATOR, NS_ROLE_RESPONDER };

enum ns_phase {
	NS_PHASE_START,        /* initiator: msg1 not sent yet */
	NS_PHASE_AWAIT_MSG2,   /* initiator: msg1 sent */
	NS_PHASE_AWAIT_MSG1,   /* responder: nothing read yet */
	NS_PHASE_MSG2_DUE,     /* responder: msg1 read, msg2 not sent yet */
	NS_PHASE_OPEN,         /* transport keys in place */
	NS_PHASE_FAILED,       /* every call fails with conn->error */
};

struct ns_conn {
	int refs;                      /* fds pointing here plus calls in progress */
	enum ns_role role;
	enum ns_phase phase;           /* written under both locks once keys exist */
	int error;                     /* errno for NS_PHASE_FAILED */
	int nonblock;                  /* O_NONBLOCK on the open file description */
	enum ns_suite suite;
	char peer[64];                 /* "addr:port", for logs */

	pthread_mutex_t tx_lock;       /* send state */
	pthread_mutex_t rx_lock;       /* receive state */
	pthread_mutex_t hs_lock;       /* with hs_done: a writer waiting for msg2 */
	pthread_cond_t hs_done;

	struct ns_handshake *hs;
	int mixed;                     /* responder: a client without the route prefix is plaintext */
	int plaintext;                 /* mixed mode found a plaintext client: the shim lets go */
	size_t prefix_have;            /* responder: route prefix bytes consumed */
	int zero_rtt;                  /* initiator: first bytes ride in msg1 */
	uint64_t msg1_sent_ms;         /* initiator: when msg1 was built, for the handshake timeout */
	struct ns_cipher *tx, *rx;

	/* Receive side, under rx_lock. */
	struct ns_frame_reader reader;
	uint8_t *rx_body;              /* NS_MAX_FRAME_BODY bytes, allocated on first use */
	const uint8_t *plain;          /* held plaintext, inside rx_body */
	size_t plain_len;
	int kernel_byte_held;          /* the held record's last byte is still in the kernel */
	int kernel_lowat;              /* SO_RCVLOWAT as set in the kernel */
	int user_lowat;                /* SO_RCVLOWAT as the program set it */

	/* Send side, under tx_lock. */
	uint8_t *tail;                 /* ciphertext the kernel has not taken yet */
	size_t tail_off, tail_len;
	uint8_t *tail_plain;           /* the plaintext of that record */
	size_t tail_plain_len;

	/* After fork: the shared word naming the process that may use this connection. */
	int *owner;
	struct ns_owner_block *owner_block;
	unsigned fork_mark;
};

/* What pulling a record from the kernel came to. */
enum ns_pull {
	NS_PULL_READY,      /* a whole record is in the reader */
	NS_PULL_AGAIN,      /* not yet; SO_RCVLOWAT is set to the rest */
	NS_PULL_EOF,        /* the stream ended at a record boundary */
	NS_PULL_ERROR,      /* errno set; the connection may have failed */
	NS_PULL_PLAINTEXT,  /* mixed mode: the client is not speaking Noise */
};

/* Limits of the record being read, by phase. */
struct ns_record_kind {
	size_t min_body, max_body;
	size_t overhead;               /* body bytes that are not plaintext */
	size_t wake;                   /* bytes of the smallest frame worth waking the program for */
};

/*
 * Pull the current record from the kernel.  When its plaintext will not
 * fit in room, the last byte is only peeked, so it stays in the kernel.
 * block: wait for data, as a blocking socket does.  Under rx_lock.
 */
enum ns_pull ns_conn_pull(struct ns_conn *c, int fd, const struct ns_record_kind *kind,
                          size_t room, int block);

/* Make len bytes at offset in rx_body the held plaintext, and start on the next record. */
void ns_conn_hold(struct ns_conn *c, size_t offset, size_t len);

/*
 * Responder, under rx_lock: take the route prefix and msg1 off the wire,
 * check them, and send msg2 unless a writer is about to.
 */
enum ns_pull ns_conn_respond(struct ns_conn *c, int fd, size_t room, int block);

/*
 * Responder, under tx_lock in NS_PHASE_MSG2_DUE: send msg2 carrying up to
 * NS_MAX_PLAINTEXT bytes of iov (none for an empty msg2).  Payload bytes
 * sent, or -1.
 */
ssize_t ns_conn_send_msg2(struct ns_conn *c, int fd, const struct iovec *iov, int iovcnt,
                          size_t len, int flags);

/* Stop tracking a mixed-mode connection that turned out to be plaintext. */
void ns_conn_release_plaintext(struct ns_conn *c, int fd);

/* Set the kernel's SO_RCVLOWAT (capped), if it differs. */
void ns_conn_set_lowat(struct ns_conn *c, int fd, int lowat);

/*
 * Before msg2, wake a reader only for more than an empty msg2: reading
 * that alone would leave the program nothing but EAGAIN.
 */
enum { NS_MSG2_LOWAT = NS_FRAME_HEADER_LEN + NS_MSG2_OVERHEAD + 1 };

/* Likewise between records: an empty record carries nothing to read. */
enum { NS_RECORD_LOWAT = NS_FRAME_HEADER_LEN + NS_TAG_LEN + 1 };

/* A new connection in role with the given handshake (taken over); NULL on failure. */
struct ns_conn *ns_conn_new(enum ns_role role, struct ns_handshake *hs, enum ns_suite suite,
                            const char *peer, int nonblock);

/* Take and drop a reference; the last drop frees the connection. */
void ns_conn_ref(struct ns_conn *c);
void ns_conn_unref(struct ns_conn *c);

/* Mark the connection failed with err, log why once, and shut the socket down. */
void ns_conn_fail(struct ns_conn *c, int fd, int err, const char *why);

/*
 * Claim the connection for this process if it was shared by fork.  0 if this
 * process may use it; -1 with errno set if another process owns it.
 */
int ns_conn_claim(struct ns_conn *c, int fd);

/* recv-like read of plaintext into iov. */
ssize_t ns_conn_recv(struct ns_conn *c, int fd, const struct iovec *iov, int iovcnt, int flags);

/* send-like write of plaintext from iov. */
ssize_t ns_conn_send(struct ns_conn *c, int fd, const struct iovec *iov, int iovcnt, int flags);

/*
 * For a writer that must wait for the peer's handshake message: read it,
 * unless a reader is already at it.  Returns once the phase has moved on
 * or timeout_ms passed.
 */
void ns_conn_await_peer(struct ns_conn *c, int fd, int timeout_ms);

/* The program waits for input before writing: send msg1 now, empty. */
void ns_conn_start_empty(struct ns_conn *c, int fd);

/* Plaintext readable without blocking (FIONREAD). */
int ns_conn_readable(struct ns_conn *c, int fd);

/* Push out a pending tail before shutdown or close, waiting at most timeout_ms. */
void ns_conn_flush(struct ns_conn *c, int fd, int timeout_ms);

/* Number of initiators that have not sent msg1, so poll hooks can skip their scan. */
extern int ns_conn_unstarted;

#endif
