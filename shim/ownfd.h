/*
 * The fds the shim itself keeps open in a program (the arena's memfd, the
 * service thread's epoll and eventfd): kept at high numbers, spared by the
 * program's close, close_range and closefrom, and moved out of the way when
 * the program dup2s onto one of their numbers.  They are all close-on-exec.
 */
#ifndef NOISESHIM_OWNFD_H
#define NOISESHIM_OWNFD_H

/* Track the fd stored in *fdp (the variable is read again whenever it is needed). */
void ns_own_fd_register(int *fdp);

/* Whether fd is one of the shim's own. */
int ns_own_fd(int fd);

/* The program is about to put another file at number fd: move any fd of ours away. */
void ns_own_fd_wanted(int fd);

/* fd moved to a high number (close-on-exec), or fd itself if that fails. */
int ns_own_fd_high(int fd);

/* The next of the shim's fds above fd, or -1. */
int ns_own_fd_after(int fd);

#endif
