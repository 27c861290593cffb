/*
 * The libc functions the shims wrap, resolved once with dlsym(RTLD_NEXT).
 * Shim code calls these, never the wrapped names, so it cannot recurse.
 */
#ifndef NOISESHIM_REAL_H
#define NOISESHIM_REAL_H

#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>

/* X(name, return type, parameter list) for every wrapped function. */
#define NS_REAL_FUNCTIONS(X)                                                                  \
	X(connect, int, (int, const struct sockaddr *, socklen_t))                            \
	X(getpeername, int, (int, struct sockaddr *, socklen_t *))                            \
	X(listen, int, (int, int))                                                            \
	X(accept, int, (int, struct sockaddr *, socklen_t *))                                 \
	X(accept4, int, (int, struct sockaddr *, socklen_t *, int))                           \
	X(read, ssize_t, (int, void *, size_t))                                               \
	X(write, ssize_t, (int, const void *, size_t))                                        \
	X(readv, ssize_t, (int, const struct iovec *, int))                                   \
	X(writev, ssize_t, (int, const struct iovec *, int))                                  \
	X(recv, ssize_t, (int, void *, size_t, int))                                          \
	X(send, ssize_t, (int, const void *, size_t, int))                                    \
	X(recvfrom, ssize_t, (int, void *, size_t, int, struct sockaddr *, socklen_t *))      \
	X(sendto, ssize_t, (int, const void *, size_t, int, const struct sockaddr *, socklen_t)) \
	X(recvmsg, ssize_t, (int, struct msghdr *, int))                                      \
	X(sendmsg, ssize_t, (int, const struct msghdr *, int))                                \
	X(close, int, (int))                                                                  \
	X(shutdown, int, (int, int))                                                          \
	X(dup, int, (int))                                                                    \
	X(dup2, int, (int, int))                                                              \
	X(dup3, int, (int, int, int))                                                         \
	X(fcntl, int, (int, int, ...))                                                        \
	X(ioctl, int, (int, unsigned long, ...))                                              \
	X(getsockopt, int, (int, int, int, void *, socklen_t *))                              \
	X(setsockopt, int, (int, int, int, const void *, socklen_t))                          \
	X(recvmmsg, int, (int, struct mmsghdr *, unsigned int, int, struct timespec *))      \
	X(sendmmsg, int, (int, struct mmsghdr *, unsigned int, int))                          \
	X(__read_chk, ssize_t, (int, void *, size_t, size_t))                                 \
	X(__recv_chk, ssize_t, (int, void *, size_t, size_t, int))                            \
	X(__recvfrom_chk, ssize_t, (int, void *, size_t, size_t, int, struct sockaddr *,      \
	                            socklen_t *))                                             \
	X(sendfile, ssize_t, (int, int, off_t *, size_t))                                     \
	X(sendfile64, ssize_t, (int, int, off64_t *, size_t))                                 \
	X(splice, ssize_t, (int, loff_t *, int, loff_t *, size_t, unsigned int))              \
	X(close_range, int, (unsigned int, unsigned int, int))                                \
	X(closefrom, void, (int))                                                             \
	X(fcntl64, int, (int, int, ...))                                                      \
	X(poll, int, (struct pollfd *, nfds_t, int))                                          \
	X(ppoll, int, (struct pollfd *, nfds_t, const struct timespec *, const sigset_t *))   \
	X(select, int, (int, fd_set *, fd_set *, fd_set *, struct timeval *))                 \
	X(pselect, int, (int, fd_set *, fd_set *, fd_set *, const struct timespec *,          \
	                 const sigset_t *))                                                   \
	X(epoll_ctl, int, (int, int, int, struct epoll_event *))                              \
	X(epoll_wait, int, (int, struct epoll_event *, int, int))                             \
	X(epoll_pwait, int, (int, struct epoll_event *, int, int, const sigset_t *))          \
	X(socket, int, (int, int, int))                                                       \
	X(socketpair, int, (int, int, int, int[2]))                                           \
	X(open, int, (const char *, int, ...))                                                \
	X(open64, int, (const char *, int, ...))                                              \
	X(openat, int, (int, const char *, int, ...))                                         \
	X(openat64, int, (int, const char *, int, ...))                                       \
	X(__open_2, int, (const char *, int))                                                 \
	X(__open64_2, int, (const char *, int))                                               \
	X(creat, int, (const char *, mode_t))                                                 \
	X(pipe, int, (int[2]))                                                                \
	X(pipe2, int, (int[2], int))                                                          \
	X(epoll_create, int, (int))                                                           \
	X(epoll_create1, int, (int))                                                          \
	X(eventfd, int, (unsigned int, int))                                                  \
	X(timerfd_create, int, (int, int))                                                    \
	X(signalfd, int, (int, const sigset_t *, int))                                        \
	X(memfd_create, int, (const char *, unsigned int))                                    \
	X(fclose, int, (FILE *))                                                              \
	X(fdopen, FILE *, (int, const char *))                                                \
	X(prctl, int, (int, ...))                                                             \
	X(system, int, (const char *))                                                        \
	X(popen, FILE *, (const char *, const char *))                                        \
	X(setrlimit, int, (__rlimit_resource_t, const struct rlimit *))                       \
	X(setrlimit64, int, (__rlimit_resource_t, const struct rlimit64 *))                   \
	X(fork, pid_t, (void))                                                                \
	X(execve, int, (const char *, char *const[], char *const[]))                          \
	X(execveat, int, (int, const char *, char *const[], char *const[], int))              \
	X(posix_spawn, int, (pid_t *, const char *, const posix_spawn_file_actions_t *,       \
	                     const posix_spawnattr_t *, char *const[], char *const[]))        \
	X(posix_spawnp, int, (pid_t *, const char *, const posix_spawn_file_actions_t *,      \
	                      const posix_spawnattr_t *, char *const[], char *const[]))

struct ns_real {
#define NS_REAL_FIELD(name, ret, params) ret(*name) params;
	NS_REAL_FUNCTIONS(NS_REAL_FIELD)
#undef NS_REAL_FIELD
};

extern struct ns_real ns_real;

/* Resolve every real function; safe to call more than once.  Aborts if one is missing. */
void ns_real_init(void);

/* The real function `name`, resolved on first use. */
#define REAL(name) (__builtin_expect(ns_real.name == NULL, 0) ? ns_real_init() : (void)0, ns_real.name)

/* Mark a wrapper as exported from the preload object. */
#define NS_EXPORT __attribute__((visibility("default")))

#endif
