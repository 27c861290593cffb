/*
 * The fds the shim itself keeps open in a program (the arena's memfd, the
 * service thread's epoll and eventfd, and copies of connections the program
 * closed that still have bytes to send): kept at high numbers, spared by the
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

/*
 * Connections the program closed while the shim still had bytes of theirs
 * to send: the service thread keeps a copy of the fd (a high number) until
 * they are out.  0, or -1 when no more can be kept.
 */
int ns_own_fd_linger(int fd);
void ns_own_fd_unlinger(int fd);

/* Whether fd is such a copy. */
int ns_own_fd_lingering(int fd);

#endif
