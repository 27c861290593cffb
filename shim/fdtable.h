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

/* Call fn for every tracked fd while no entry can change. */
void ns_fd_foreach(void (*fn)(int fd, struct ns_conn *conn, void *ctx), void *ctx);

/* Hold and release the table across fork. */
void ns_fd_lock(void);
void ns_fd_unlock(void);

/* In a fork child: the lock belongs to a thread that did not come along; start it afresh. */
void ns_fd_reset_lock(void);

#endif
