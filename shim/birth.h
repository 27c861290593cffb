/*
 * Calls that create fds: stale table entries for the new number are
 * dropped (birth.c).
 */
#ifndef NOISESHIM_BIRTH_H
#define NOISESHIM_BIRTH_H

#include <sys/socket.h>

/* fd was just made by the kernel: whatever the table says of that number is stale. */
void ns_fd_created(int fd);

/* fd is about to be closed (by close, dup2 onto it, fclose): drop its share of its socket. */
void ns_fd_closing(int fd);

/*
 * fd arrived over a unix socket (SCM_RIGHTS).  A wrapped connection this
 * process's arena holds is that connection again; one that the shim would
 * wrap but whose state it cannot have (another process family made it) is
 * replaced by a socket that only returns errors.
 */
void ns_fd_received(int fd);

/*
 * Before a sendmsg whose control messages carry fds (delta 1), and after
 * one that failed (delta -1): a wrapped connection among them is held for
 * the copy in flight, so that a sender closing its own fd at once does not
 * end it before a receiver of this process family adopts it.
 */
void ns_fds_sending(const struct msghdr *msg, int delta);

/* The control messages of msg, after a recvmsg that returned them: every fd they carry. */
void ns_fds_received(const struct msghdr *msg);

/* Replace fd by an unconnected socket of the same family, keeping its flags: every call on it fails. */
void ns_fd_make_dead(int fd);

#endif
