/*
 * Calls that create fds.  A new fd number the table still has an entry for
 * was closed behind the shim's back (by libc itself, say fclose on an
 * fdopen'd socket, or a raw syscall): that entry is stale and is dropped,
 * never inherited by the new fd.  TCP sockets are known from socket() on,
 * so that every copy made before connect is covered when any of them
 * connects.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "birth.h"
#include "conn.h"
#include "fdtable.h"
#include "real.h"
#include "shim.h"

/* Only the accept shim makes accepted sockets responders; in the client shim this is NULL. */
int ns_server_accepted(int listener, int fd, int flags) __attribute__((weak));

/* fd was just made by the kernel: whatever the table says of that number is stale. */
void
ns_fd_created(int fd)
{
	if (__builtin_expect(ns_fd_entry(fd) != 0, 0))
		ns_conn_unref(ns_fd_take(fd));
}

static int
created(int fd)
{
	if (fd >= 0)
		ns_fd_created(fd);
	return fd;
}

static int
is_tcp(int domain, int type)
{
	return (domain == AF_INET || domain == AF_INET6) &&
	       (type & ~(SOCK_NONBLOCK | SOCK_CLOEXEC)) == SOCK_STREAM;
}

NS_EXPORT int
socket(int domain, int type, int protocol)
{
	int fd = created(REAL(socket)(domain, type, protocol));

	/* Only the client shim starts connections, so only it needs to see them born. */
	if (fd >= 0 && is_tcp(domain, type) && ns_shim_role == NS_ROLE_INITIATOR) {
		ns_shim_init();
		if (ns_shim.config.transport != NS_TRANSPORT_OFF)
			ns_fd_set_fresh(fd);
	}
	return fd;
}

NS_EXPORT int
socketpair(int domain, int type, int protocol, int sv[2])
{
	int ret = REAL(socketpair)(domain, type, protocol, sv);

	if (ret == 0) {
		ns_fd_created(sv[0]);
		ns_fd_created(sv[1]);
	}
	return ret;
}

static int
accepted(int listener, int fd, int flags)
{
	if (fd < 0)
		return fd;
	ns_fd_created(fd);
	return ns_server_accepted != NULL ? ns_server_accepted(listener, fd, flags) : fd;
}

NS_EXPORT int
accept(int fd, struct sockaddr *addr, socklen_t *len)
{
	return accepted(fd, REAL(accept)(fd, addr, len), 0);
}

NS_EXPORT int
accept4(int fd, struct sockaddr *addr, socklen_t *len, int flags)
{
	return accepted(fd, REAL(accept4)(fd, addr, len, flags), flags);
}

/* open(2) takes a mode only with O_CREAT or O_TMPFILE. */
static mode_t
mode_arg(int flags, va_list ap)
{
	return (flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE ? (mode_t)va_arg(ap, int) : 0;
}

NS_EXPORT int
open(const char *path, int flags, ...)
{
	va_list ap;
	mode_t mode;

	va_start(ap, flags);
	mode = mode_arg(flags, ap);
	va_end(ap);
	return created(REAL(open)(path, flags, mode));
}

NS_EXPORT int
open64(const char *path, int flags, ...)
{
	va_list ap;
	mode_t mode;

	va_start(ap, flags);
	mode = mode_arg(flags, ap);
	va_end(ap);
	return created(REAL(open64)(path, flags, mode));
}

NS_EXPORT int
openat(int dirfd, const char *path, int flags, ...)
{
	va_list ap;
	mode_t mode;

	va_start(ap, flags);
	mode = mode_arg(flags, ap);
	va_end(ap);
	return created(REAL(openat)(dirfd, path, flags, mode));
}

NS_EXPORT int
openat64(int dirfd, const char *path, int flags, ...)
{
	va_list ap;
	mode_t mode;

	va_start(ap, flags);
	mode = mode_arg(flags, ap);
	va_end(ap);
	return created(REAL(openat64)(dirfd, path, flags, mode));
}

NS_EXPORT int
__open_2(const char *path, int flags)
{
	return created(REAL(__open_2)(path, flags));
}

NS_EXPORT int
__open64_2(const char *path, int flags)
{
	return created(REAL(__open64_2)(path, flags));
}

NS_EXPORT int
creat(const char *path, mode_t mode)
{
	return created(REAL(creat)(path, mode));
}

NS_EXPORT int
pipe(int fds[2])
{
	int ret = REAL(pipe)(fds);

	if (ret == 0) {
		ns_fd_created(fds[0]);
		ns_fd_created(fds[1]);
	}
	return ret;
}

NS_EXPORT int
pipe2(int fds[2], int flags)
{
	int ret = REAL(pipe2)(fds, flags);

	if (ret == 0) {
		ns_fd_created(fds[0]);
		ns_fd_created(fds[1]);
	}
	return ret;
}

NS_EXPORT int
epoll_create(int size)
{
	return created(REAL(epoll_create)(size));
}

NS_EXPORT int
epoll_create1(int flags)
{
	return created(REAL(epoll_create1)(flags));
}

NS_EXPORT int
eventfd(unsigned int initval, int flags)
{
	return created(REAL(eventfd)(initval, flags));
}

NS_EXPORT int
timerfd_create(int clockid, int flags)
{
	return created(REAL(timerfd_create)(clockid, flags));
}

NS_EXPORT int
signalfd(int fd, const sigset_t *mask, int flags)
{
	return created(REAL(signalfd)(fd, mask, flags));
}

NS_EXPORT int
memfd_create(const char *name, unsigned int flags)
{
	return created(REAL(memfd_create)(name, flags));
}

/* libc closes the fd itself, past the close() wrapper: forget it first. */
NS_EXPORT int
fclose(FILE *stream)
{
	int fd = stream != NULL ? fileno(stream) : -1;

	if (fd >= 0 && ns_fd_known(fd))
		ns_fd_closing(fd);
	return REAL(fclose)(stream);
}
