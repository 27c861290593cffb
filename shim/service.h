/*
 * One service thread per process (DESIGN §4.3), started on first need and
 * again in a forked child: what must happen while the program is not
 * calling into the shim.  It owns timers (a coalesced first flight whose
 * quiet time ran out, handshake deadlines, a look at the first bytes of a
 * reply, a msg2 that no write came to carry) and watches fds (a tail or
 * early data to push out once the socket takes it, msg2 arriving for a
 * non-blocking client with writes waiting).  It takes the same connection
 * locks as any caller, acts on an fd only while the fd table still says
 * the fd is that connection, and never calls into the program.
 */
#ifndef NOISESHIM_SERVICE_H
#define NOISESHIM_SERVICE_H

#include <stdint.h>

struct ns_conn;

enum ns_job {
	NS_JOB_RELEASE,     /* initiator: send the coalesced first flight if quiet long enough */
	NS_JOB_DEADLINE,    /* the handshake deadline: fail the connection if not open */
	NS_JOB_PROBE,       /* initiator awaiting msg2: fail at once on a reply that cannot be one */
	NS_JOB_MSG2,        /* responder: send msg2 empty if no write carried it */
	NS_JOB_LINGER,      /* a connection the program closed: push out what is left, then close */
};

/* Run job for fd's connection c at due_ms (monotonic clock).  0, or -1 when no thread can run. */
int ns_service_at(int fd, struct ns_conn *c, enum ns_job job, uint64_t due_ms);

/* Watch fd until its connection has nothing left to push out or to complete.  0, or -1. */
int ns_service_watch(int fd, struct ns_conn *c);

/*
 * The program closes fd, the last fd of c, with bytes of c still to send:
 * the thread keeps a copy of the socket and sends them (for at most
 * timeout_ms), so that close returns at once, as the kernel's does.  0 when
 * it took them; -1 when the caller must flush itself.
 */
int ns_service_linger(int fd, struct ns_conn *c, int timeout_ms);

/*
 * Around fork, under the fd table's write lock: before it, hold the job
 * lock and wait until a thread still starting has reached its loop (it may
 * hold runtime locks the child would inherit held); after it, let go.
 */
void ns_service_before_fork(void);
void ns_service_after_fork_parent(void);

/* In a fork child: the thread did not come along, and may have held the lock; its copies go. */
void ns_service_after_fork_child(void);

/*
 * Stop the thread from acting (the process is exiting, and libraries are
 * being torn down; or it execs, and a lock the thread held then would be
 * left to a thread that no longer exists).  Waits for an action under way.
 */
void ns_service_stop(void);

/* The exec failed: the thread may act again. */
void ns_service_resume(void);

/* Milliseconds on the monotonic clock, and microseconds. */
uint64_t ns_now_us(void);

#endif
