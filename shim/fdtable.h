/*
 * Which fds the shim tracks: a two-level array indexed by fd, so that the
 * check for an untracked fd is one atomic load.  dup'd fds point at the
 * same connection, which counts its references.
 */
#ifndef NOISESHIM_FDTABLE_H
#define NOISESHIM_FDTABLE_H

struct ns_conn;

/* The connection at fd with a reference taken, or NULL if fd is not tracked. */
struct ns_conn *ns_fd_get(int fd);

/* Track conn at fd (taking a reference), replacing nothing.  -1 if fd is out of range. */
int ns_fd_set(int fd, struct ns_conn *conn);

/* Stop tracking fd; returns the connection with the table's reference, or NULL. */
struct ns_conn *ns_fd_take(int fd);

/* What the accept shim knows of a listening socket. */
enum ns_listener {
	NS_LISTENER_UNKNOWN,  /* not looked at yet (e.g. inherited, already listening) */
	NS_LISTENER_PLAIN,    /* not named in NOISESHIM_LISTEN */
	NS_LISTENER_NOISE,    /* accepted connections become responders */
};

/* The listener state of fd. */
enum ns_listener ns_fd_listener(int fd);

/* Record the listener state of fd (ignored for fds beyond the table). */
void ns_fd_set_listener(int fd, enum ns_listener state);

/* The lowest fd >= from that is tracked or a known listener, or -1. */
int ns_fd_next_in_use(int from);

/* Call fn for every tracked fd while no entry can change. */
void ns_fd_foreach(void (*fn)(int fd, struct ns_conn *conn, void *ctx), void *ctx);

/* Hold and release the table across fork. */
void ns_fd_lock(void);
void ns_fd_unlock(void);

/* In a fork child: the lock belongs to a thread that did not come along; start it afresh. */
void ns_fd_reset_lock(void);

#endif
