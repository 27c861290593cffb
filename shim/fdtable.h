/*
 * Which fds the shim knows, in a two-level array indexed by fd so that the
 * check for an fd it does not know is one atomic load.  An entry is one of:
 *  - nothing: not an AF_INET/AF_INET6 stream socket the shim has seen;
 *  - fresh: such a socket, not connected yet, known only to this process
 *    and only through this fd (the cheap common case);
 *  - a socket object (conn.h) in the arena, shared by every fd that dup,
 *    fork or exec made of it.  A fresh fd becomes an object as soon as a
 *    second fd or a second process can reach it.
 * This table is the process's own; the objects are shared.  Each entry
 * holds one reference to its object.
 */
#ifndef NOISESHIM_FDTABLE_H
#define NOISESHIM_FDTABLE_H

#include <stdint.h>

#include "arena.h"

struct ns_conn;

enum { NS_FD_FRESH = 1 };

/* The raw entry of fd: 0 (nothing), NS_FD_FRESH, or an object reference. */
uint64_t ns_fd_entry(int fd);

/* Whether fd is a socket the shim has seen (fresh or an object). */
static inline int
ns_fd_known(int fd)
{
	return ns_fd_entry(fd) != 0;
}

/* The object at fd with a reference taken, or NULL (fd is unknown or fresh). */
struct ns_conn *ns_fd_get(int fd);

/* The wrapped connection at fd with a reference taken, or NULL for any other fd. */
struct ns_conn *ns_fd_wrapped(int fd);

/* Remember fd as a fresh socket.  -1 if fd is beyond the table. */
int ns_fd_set_fresh(int fd);

/* Point fd at c, taking a reference for the table.  -1 if fd is beyond the table. */
int ns_fd_attach(int fd, struct ns_conn *c);

/*
 * fd is fresh and must be shared: make it an object (kind FRESH) in place.
 * The object, or NULL (errno) when no arena memory is left.
 */
struct ns_conn *ns_fd_promote(int fd);

/* Forget fd; returns the object with the table's reference, or NULL. */
struct ns_conn *ns_fd_take(int fd);

/* What the accept shim knows of a listening socket. */
enum ns_listener {
	NS_LISTENER_UNKNOWN,  /* not looked at yet (e.g. inherited, already listening) */
	NS_LISTENER_PLAIN,    /* not named in NOISESHIM_LISTEN */
	NS_LISTENER_NOISE,    /* accepted connections become responders */
	NS_LISTENER_REFUSED,  /* named, but the server cannot wrap it: accept nothing */
};

/* The listener state of fd. */
enum ns_listener ns_fd_listener(int fd);

/* Record the listener state of fd (ignored for fds beyond the table). */
void ns_fd_set_listener(int fd, enum ns_listener state);

/* The lowest fd >= from that has an entry or a listener state, or -1. */
int ns_fd_next_in_use(int from);

/* Call fn for every fd with an entry, with the table locked against changes. */
void ns_fd_foreach(void (*fn)(int fd, uint64_t entry, void *ctx), void *ctx);

/* The object an entry refers to (entry must be neither 0 nor NS_FD_FRESH). */
struct ns_conn *ns_fd_entry_conn(uint64_t entry);

/* Hold the table against changes (not against lookups) while acting on an fd it names. */
void ns_fd_rdlock(void);
void ns_fd_rdunlock(void);

/* Hold and release the table while fork copies it. */
void ns_fd_lock(void);
void ns_fd_unlock(void);

/* In a fork child: the lock belongs to a thread that did not come along; start it afresh. */
void ns_fd_reset_lock(void);

#endif
