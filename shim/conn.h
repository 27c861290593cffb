/*
 * A socket object: the shim's state for one open file description of an
 * AF_INET/AF_INET6 stream socket, shared by every fd and every process
 * that refers to it, the way the kernel shares the socket itself.  It lives
 * in a slot of the arena (arena.h), so dup, fork and exec all see one
 * state; nothing in it is a pointer.
 *
 * The program's fd stays the real socket.  A wrapped connection keeps at
 * most one record's worth of state in each direction, in an arena buffer
 * lent only while it is needed:
 *  - receive: a partial record pulled from the kernel (with SO_RCVLOWAT
 *    set to the rest of it), or the plaintext of one record not yet read
 *    by the program, whose last ciphertext byte stays in the kernel so
 *    that the fd remains readable exactly while plaintext is held;
 *  - send: the unsent tail of a record the kernel took only part of, with
 *    the record's plaintext, which the program has not been told was sent.
 *
 * Locks, and what they guard:
 *  - rx_lock (robust, process-shared): the receive side: reader, rx_buf,
 *    plain_*, kernel_byte_held, kernel_lowat, rx_nonce, prefix_have, and
 *    the handshake state while a handshake message is being read.
 *  - tx_lock (robust, process-shared): the send side: tx_buf, tail_*,
 *    early_*, last_write_us, hold, corked, tx_nonce, and the handshake
 *    state while a message is being written.
 *  - phase: atomic, waited on as a futex.  Moved forward by the side that
 *    completes a handshake step, under that side's lock; moved to FAILED
 *    by anyone, with a compare-and-swap (the first to fail it says why).
 *  - refs: atomic.  error, peer, role, suite, flags: set before the object
 *    is shared (connect, accept), or under both locks.
 * Order: the fd table's lock (fdtable.c; the service thread holds it for
 * reading while it acts on an fd, so that the number cannot be reused
 * under it), then rx_lock, then tx_lock, then the arena lock (arena.c) or
 * the service thread's job lock (service.c), which are innermost.  The
 * service thread only ever tries a connection's locks, never waits on them.
 * No lock is held across a blocking call that the other direction needs: a
 * blocking reader holds rx_lock only, a blocking writer tx_lock only.
 * A process that dies holding either lock leaves the connection failed
 * (its state cannot be trusted): ns_conn_lock_rx/tx report it.
 */
#ifndef NOISESHIM_CONN_H
#define NOISESHIM_CONN_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "arena.h"
#include "cipher.h"
#include "frame.h"
#include "noise.h"

enum ns_role { NS_ROLE_INITIATOR, NS_ROLE_RESPONDER };

/* What a socket object is. */
enum ns_sock_kind {
	NS_SOCK_FRESH = 1,     /* not connected yet: any fd of it may still start a wrapped connection */
	NS_SOCK_PLAIN,         /* decided: not wrapped, every call goes to libc */
	NS_SOCK_WRAPPED,       /* a Noise connection, in `phase` */
};

enum ns_phase {
	NS_PHASE_START = 1,    /* initiator: msg1 not sent yet */
	NS_PHASE_AWAIT_MSG2,   /* initiator: msg1 sent */
	NS_PHASE_AWAIT_MSG1,   /* responder: nothing read yet */
	NS_PHASE_MSG2_DUE,     /* responder: msg1 read, msg2 not sent yet */
	NS_PHASE_OPEN,         /* transport keys in place */
	NS_PHASE_FAILED,       /* every call fails with error */
};

struct ns_conn {
	uint32_t kind;                 /* enum ns_sock_kind; atomic */
	uint32_t phase;                /* enum ns_phase; atomic, a futex word */
	int32_t refs;                  /* fds in every process, plus calls in progress */
	int32_t in_flight;             /* references held for copies sent over unix sockets */
	int32_t error;                 /* errno for NS_PHASE_FAILED */
	uint64_t ino;                  /* the socket's inode, to recognise it after exec */
	uint32_t role;                 /* enum ns_role */
	uint32_t suite;                /* enum ns_suite */
	uint8_t nonblock;              /* O_NONBLOCK on the open file description */
	uint8_t zero_rtt;              /* initiator: first bytes ride in msg1 */
	uint8_t mixed;                 /* responder: a client without the route prefix is plaintext */
	uint8_t plaintext;             /* mixed mode found a plaintext client */
	uint32_t key_index;            /* responder: which server key answered */
	uint64_t hs_start_ms;          /* when the handshake began (monotonic), for its deadline */
	char peer[64];                 /* "addr:port", for logs */

	/* What the logs and counters report of this connection (set once each, or under its side's lock). */
	uint8_t peer_pub[NS_KEY_LEN];  /* responder: the client's static key, once msg1 decrypts */
	uint32_t handshake_ms;         /* how long the handshake took, set at NS_PHASE_OPEN */
	uint32_t zero_rtt_bytes;       /* plaintext carried in msg1 */
	uint64_t bytes_in, bytes_out;  /* plaintext delivered to and accepted from the program */
	uint8_t reached_open;          /* the handshake completed: connections_open counts it */
	uint8_t open_reported;         /* the handshake line was written; atomic */
	uint8_t refused;               /* closed by policy (allowlist, replay), not a failed handshake */

	pthread_mutex_t rx_lock;
	pthread_mutex_t tx_lock;

	union {
		struct ns_handshake hs;    /* until the handshake completes */
		struct {
			uint8_t tx[NS_KEY_LEN], rx[NS_KEY_LEN];
		} key;                     /* after */
	} u;
	uint64_t tx_nonce, rx_nonce;

	/* Receive side, under rx_lock. */
	struct ns_frame_reader reader; /* its body pointer is set again before each use */
	ns_off rx_buf;                 /* lent while a record is partial or plaintext held */
	uint32_t plain_off, plain_len; /* held plaintext, inside rx_buf */
	uint32_t plain_end;            /* rx_buf bytes plaintext was ever held in: wiped on return */
	uint32_t prefix_have;          /* responder: route prefix bytes consumed */
	int32_t kernel_lowat;          /* SO_RCVLOWAT as set in the kernel */
	int32_t user_lowat;            /* SO_RCVLOWAT as the program set it */
	uint8_t kernel_byte_held;      /* the held record's last byte is still in the kernel */

	/* Send side, under tx_lock. */
	ns_off tx_buf;                 /* tail ciphertext at 0, its plaintext at NS_ARENA_BUF_PLAIN */
	uint32_t tail_off, tail_len;
	uint32_t tail_plain_len;       /* 0: the program was already told (a tail the shim owns) */
	ns_off early_buf;              /* plaintext the program was told was sent, not sealed yet: */
	uint32_t early_len;            /* the coalesced first flight, then writes waiting for msg2 */
	uint64_t last_write_us;        /* when the first flight last grew */
	uint8_t hold;                  /* MSG_MORE on the last write, or TCP_CORK: keep coalescing */
	uint8_t corked;                /* TCP_CORK as the program set it */
	uint8_t tfo;                   /* the first flight rides in the SYN */
	uint8_t nodelay_until_record;  /* msg2 went alone: push the first record without Nagle */
	uint8_t read_interest;         /* in an epoll set for input only: its next wait releases msg1 */
	uint8_t write_blocked;         /* the early buffer is full: writable only once it has room */
	uint8_t ep_suspended;          /* EPOLLOUT taken out of the registration below (poll.c) */
	int32_t ep_fd1;                /* the program's epoll registration of the socket: epfd + 1 (0: none), */
	uint32_t ep_events;            /* its events and data as the program asked */
	uint64_t ep_data;
};

_Static_assert(sizeof(struct ns_conn) <= NS_ARENA_SLOT, "a connection fits its slot");

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
	int read_ahead;                /* the next frame's header may come in with this one's end */
};

/*
 * Before msg2, wake a reader only for more than an empty msg2: reading
 * that alone would leave the program nothing but EAGAIN.
 */
enum { NS_MSG2_LOWAT = NS_FRAME_HEADER_LEN + NS_MSG2_OVERHEAD + 1 };

/* Likewise between records: an empty record carries nothing to read. */
enum { NS_RECORD_LOWAT = NS_FRAME_HEADER_LEN + NS_TAG_LEN + 1 };

enum {
	/*
	 * Later writes join the first one in msg1 only while msg1 still fits
	 * the SYN a TFO client sends (an MSS of 1,460 less options, prefix and
	 * msg1's own 108 bytes): a bigger msg1 waits for the handshake anyway.
	 */
	NS_SYN_PAYLOAD = 1200,
	/* The service thread's looks at a reply awaited as msg2: first after, then at most every. */
	NS_PROBE_FIRST_MS = 10,
	NS_PROBE_MAX_MS = 250,
};

/* A new socket object of kind, with one reference (the caller's fd); NULL (errno) on failure. */
struct ns_conn *ns_conn_new(enum ns_sock_kind kind, uint64_t ino);

/* The object at a slot. */
struct ns_conn *ns_conn_at(ns_off slot);

/* The wrapped connection of the socket with inode ino, with a reference taken; NULL if none. */
struct ns_conn *ns_conn_find(uint64_t ino);

/* Take and drop a reference; the last drop wipes the object and frees its slot. */
void ns_conn_ref(struct ns_conn *c);
void ns_conn_unref(struct ns_conn *c);

/* Make a FRESH object a wrapped initiator towards rs (under both locks).  0, or -1 (errno). */
int ns_conn_start_initiator(struct ns_conn *c, enum ns_suite suite, const uint8_t rs[NS_KEY_LEN],
                            int zero_rtt, const char *peer);

/* Make a FRESH object a responder waiting for msg1.  0, or -1 (errno). */
int ns_conn_start_responder(struct ns_conn *c, int mixed, const char *peer);

/*
 * Take a connection's locks.  0, or -1 with errno when the connection has
 * failed meanwhile or a process died holding the lock (then it is failed).
 */
int ns_conn_lock_rx(struct ns_conn *c, int fd);
int ns_conn_lock_tx(struct ns_conn *c, int fd);
void ns_conn_unlock_rx(struct ns_conn *c);
void ns_conn_unlock_tx(struct ns_conn *c);

/*
 * The one transition to an open connection, for either side, once its last
 * handshake message is read or made: the transport keys replace the
 * handshake state, and whoever waits on the phase wakes.  0, or -1 with the
 * connection failed.  Under the side's lock that finished the handshake.
 */
int ns_conn_open(struct ns_conn *c, int fd);

/* Move to phase and wake whoever waits on it. */
void ns_conn_set_phase(struct ns_conn *c, enum ns_phase phase);

/* The connection's current phase. */
static inline enum ns_phase
ns_conn_phase(const struct ns_conn *c)
{
	return (enum ns_phase)__atomic_load_n(&c->phase, __ATOMIC_ACQUIRE);
}

/* Mark the connection failed with err, log why once, and shut the socket down. */
void ns_conn_fail(struct ns_conn *c, int fd, int err, const char *why);

/*
 * The end of ns_conn_recv (rx, under rx_lock) or ns_conn_send (tx, under
 * tx_lock) with its result: count the plaintext bytes, and once the
 * handshake is complete report it (log line, counters) with this fd.
 */
void ns_conn_account(struct ns_conn *c, int fd, ssize_t ret, int tx);

/* This process's cipher for a direction of an open connection (made from the raw key on first use). */
struct ns_cipher *ns_conn_cipher(struct ns_conn *c, int tx);

/* The receive buffer, lent on first need (NULL, errno ENOMEM), with the reader pointed at it. */
uint8_t *ns_conn_rx_body(struct ns_conn *c);

/* Give the receive buffer back when it holds nothing. */
void ns_conn_rx_idle(struct ns_conn *c);

/*
 * Pull the current record from the kernel.  When its plaintext will not
 * fit in room, the last byte is only peeked, so it stays in the kernel.
 * block: wait for data, as a blocking socket does.  Under rx_lock.
 */
enum ns_pull ns_conn_pull(struct ns_conn *c, int fd, const struct ns_record_kind *kind,
                          size_t room, int block);

/* Make len bytes at offset in the receive buffer the held plaintext, and start on the next record. */
void ns_conn_hold(struct ns_conn *c, size_t offset, size_t len);

/*
 * Initiator, under tx_lock in NS_PHASE_START: build and send the first
 * flight (route prefix, msg1 carrying len bytes of payload the program was
 * told had been sent).  Never waits: what the kernel does not take is a
 * tail the shim pushes out.  0, or -1 with errno when the connection failed.
 */
int ns_conn_send_msg1(struct ns_conn *c, int fd, const uint8_t *payload, size_t len);

/* Initiator, under rx_lock: msg2 (len bytes) is whole in the receive buffer: finish.  0, or -1. */
int ns_conn_read_msg2(struct ns_conn *c, int fd, size_t len);

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

/* Set the kernel's SO_RCVLOWAT (capped), if it differs. */
void ns_conn_set_lowat(struct ns_conn *c, int fd, int lowat);

/* recv-like read of plaintext into iov. */
ssize_t ns_conn_recv(struct ns_conn *c, int fd, const struct iovec *iov, int iovcnt, int flags);

/* send-like write of plaintext from iov. */
ssize_t ns_conn_send(struct ns_conn *c, int fd, const struct iovec *iov, int iovcnt, int flags);

/*
 * The first flight goes now, with whatever was coalesced (empty if
 * nothing): the program waits for the peer, or no more fits.  Never
 * blocks; a part the kernel does not take yet is a tail the shim pushes
 * out.  Under tx_lock.
 */
void ns_conn_release(struct ns_conn *c, int fd);

/* Release the first flight from outside the send side (a wait, a read, a close). */
void ns_conn_release_unlocked(struct ns_conn *c, int fd);

/* Responder in NS_PHASE_MSG2_DUE with writes that waited for msg1: they ride in msg2.  Under tx_lock. */
void ns_conn_send_early_msg2(struct ns_conn *c, int fd);

/*
 * Push out what the program was told had left: a tail the shim owns and,
 * once the transport keys exist, the early data.  0 when nothing is left,
 * -1 with errno (EAGAIN: the kernel takes no more now).  Under tx_lock.
 */
int ns_conn_flush_pending(struct ns_conn *c, int fd);

/* Work for the service thread (service.c); each returns >0 to run again in that many ms. */
int ns_conn_service_release(struct ns_conn *c, int fd);
int ns_conn_service_deadline(struct ns_conn *c, int fd);
int ns_conn_service_probe(struct ns_conn *c, int fd);
int ns_conn_service_msg2(struct ns_conn *c, int fd);
int ns_conn_service_linger(struct ns_conn *c, int fd);

/* The service thread saw fd ready: do what is pending; the epoll events still wanted (0: none). */
uint32_t ns_conn_service_io(struct ns_conn *c, int fd);

/* The epoll events the service thread should watch fd for now. */
uint32_t ns_conn_service_wants(const struct ns_conn *c);

/* Initiator awaiting msg2: read it if it is whole, without waiting.  Under rx_lock. */
enum ns_pull ns_conn_read_handshake(struct ns_conn *c, int fd);

/* TCP_CORK as the program sets it: uncorking releases a held first flight. */
void ns_conn_set_cork(struct ns_conn *c, int fd, int on);

/*
 * For a writer that must wait for the peer's handshake message: read it,
 * unless a reader is already at it.  Returns once the phase has moved on
 * or the handshake deadline passed.
 */
void ns_conn_await_peer(struct ns_conn *c, int fd);


/* Plaintext readable without blocking (FIONREAD). */
int ns_conn_readable(struct ns_conn *c, int fd);

/* Push out a pending tail before shutdown or close, waiting at most timeout_ms. */
void ns_conn_flush(struct ns_conn *c, int fd, int timeout_ms);

/* Milliseconds left before the handshake deadline (0 when it has passed). */
int ns_conn_deadline_left(const struct ns_conn *c);

/* Make this thread's record buffer now, while memory can still be had. */
void ns_conn_prepare_thread(void);


/* Number of initiators that have not sent msg1, so poll hooks can skip their scan. */
extern int ns_conn_unstarted;

/* Number of responders holding msg2 back for the program's answer (poll hooks, likewise). */
extern int ns_conn_msg2_due;

/*
 * Connections whose writes before the handshake filled the early buffer:
 * the kernel calls them writable, the shim would answer EAGAIN, so the
 * waiting calls leave out their writability until there is room (poll.c).
 * A count for this process, so those calls can skip their work when 0.
 */
extern int ns_conn_write_blocked;

/* Under tx_lock: the early buffer has room again (or the connection failed): writers may wake. */
void ns_conn_unblock_writers(struct ns_conn *c, int fd);

#endif
