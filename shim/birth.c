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
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "birth.h"
#include "conn.h"
#include "fdtable.h"
#include "log.h"
#include "real.h"
#include "shim.h"

/*
 * Only the accept shim makes accepted sockets responders; in the client
 * shim this is NULL.  peer: the address accept gave, or NULL.
 */
int ns_server_accepted(int listener, int fd, int flags, const struct sockaddr *peer)
	__attribute__((weak));

/* Whether the shim of this object would wrap the connected socket fd: one per shim, the other NULL. */
int ns_client_would_wrap(int fd) __attribute__((weak));
int ns_server_would_wrap(int fd) __attribute__((weak));

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

/*
 * The peer's address as accept wrote it into the program's buffer of cap
 * bytes, or NULL when it gave none or cut it short.
 */
static const struct sockaddr *
accepted_peer(const struct sockaddr *addr, const socklen_t *len, socklen_t cap)
{
	return addr != NULL && len != NULL && *len <= cap ? addr : NULL;
}

static int
accepted(int listener, int fd, int flags, const struct sockaddr *peer)
{
	if (fd < 0)
		return fd;
	ns_fd_created(fd);
	return ns_server_accepted != NULL ? ns_server_accepted(listener, fd, flags, peer) : fd;
}

NS_EXPORT int
accept(int fd, struct sockaddr *addr, socklen_t *len)
{
	socklen_t cap = len != NULL ? *len : 0;
	int conn = REAL(accept)(fd, addr, len);

	return accepted(fd, conn, 0, conn >= 0 ? accepted_peer(addr, len, cap) : NULL);
}

NS_EXPORT int
accept4(int fd, struct sockaddr *addr, socklen_t *len, int flags)
{
	socklen_t cap = len != NULL ? *len : 0;
	int conn = REAL(accept4)(fd, addr, len, flags);

	return accepted(fd, conn, flags, conn >= 0 ? accepted_peer(addr, len, cap) : NULL);
}

/* Replace fd by an unconnected socket of the same family, keeping its flags: every call on it fails. */
void
ns_fd_make_dead(int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	int family = getsockname(fd, (struct sockaddr *)&ss, &len) == 0 ? ss.ss_family : AF_INET;
	int fl = REAL(fcntl)(fd, F_GETFL), fdflags = REAL(fcntl)(fd, F_GETFD), dead;

	ns_fd_closing(fd);
	if ((dead = REAL(socket)(family, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0 ||
	    REAL(dup2)(dead, fd) < 0) {
		REAL(close)(fd);  /* no socket to put there: no fd at all is still no plaintext */
	} else {
		if (fl >= 0)
			REAL(fcntl)(fd, F_SETFL, fl & O_NONBLOCK);
		if (fdflags >= 0)
			REAL(fcntl)(fd, F_SETFD, fdflags);
	}
	if (dead >= 0)
		REAL(close)(dead);
}

static int
tcp_socket(int fd)
{
	int domain = 0, type = 0;
	socklen_t len = sizeof(int);

	if (REAL(getsockopt)(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) != 0)
		return 0;
	len = sizeof(int);
	return REAL(getsockopt)(fd, SOL_SOCKET, SO_TYPE, &type, &len) == 0 && is_tcp(domain, type);
}

/*
 * fd arrived over a unix socket (SCM_RIGHTS).  A wrapped connection this
 * process's arena holds is that connection again; one that the shim would
 * wrap but whose state it cannot have (another process family made it) is
 * replaced by a socket that only returns errors.
 */
void
ns_fd_received(int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	struct stat st;
	struct ns_conn *c;

	ns_fd_created(fd);
	if (!tcp_socket(fd))
		return;
	ns_shim_init();
	if (ns_shim.config.transport == NS_TRANSPORT_OFF)
		return;
	if (fstat(fd, &st) == 0 && (c = ns_conn_find((uint64_t)st.st_ino)) != NULL) {
		int32_t pins = __atomic_load_n(&c->in_flight, __ATOMIC_ACQUIRE);

		ns_fd_attach(fd, c);
		/* The sender's hold on the copy in flight is this fd's now. */
		while (pins > 0 && !__atomic_compare_exchange_n(&c->in_flight, &pins, pins - 1, 0,
		                                                 __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
			;
		if (pins > 0)
			ns_conn_unref(c);
		ns_conn_unref(c);
		return;
	}
	if (getpeername(fd, (struct sockaddr *)&ss, &len) != 0) {
		/* Not connected: whoever connects it decides, as for a new socket. */
		if (errno == ENOTCONN && ns_shim_role == NS_ROLE_INITIATOR)
			ns_fd_set_fresh(fd);
		return;
	}
	if ((ns_client_would_wrap != NULL && ns_client_would_wrap(fd)) ||
	    (ns_server_would_wrap != NULL && ns_server_would_wrap(fd))) {
		ns_log(NS_LOG_ERROR, "fd %d: a connection the shim wraps arrived over a unix socket "
		       "without its Noise state (its sender is not of this process family): every "
		       "call on it fails", fd);
		ns_fd_make_dead(fd);
	}
}

/* Call fn for every fd the SCM_RIGHTS control messages of msg carry. */
static void
each_passed_fd(const struct msghdr *msg, void (*fn)(int fd, int delta), int delta)
{
	if (msg->msg_control == NULL || msg->msg_controllen < sizeof(struct cmsghdr))
		return;
	for (struct cmsghdr *cm = CMSG_FIRSTHDR(msg); cm != NULL;
	     cm = CMSG_NXTHDR((struct msghdr *)msg, cm)) {
		size_t n;
		int fd;

		if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
			continue;
		n = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < n; i++) {
			memcpy(&fd, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
			fn(fd, delta);
		}
	}
}

static void
hold_in_flight(int fd, int delta)
{
	struct ns_conn *c = ns_fd_wrapped(fd);

	if (c == NULL)
		return;
	if (delta > 0) {
		ns_conn_ref(c);
		__atomic_add_fetch(&c->in_flight, 1, __ATOMIC_RELEASE);
	} else if (__atomic_sub_fetch(&c->in_flight, 1, __ATOMIC_ACQ_REL) >= 0) {
		ns_conn_unref(c);
	} else {
		__atomic_add_fetch(&c->in_flight, 1, __ATOMIC_RELEASE);
	}
	ns_conn_unref(c);
}

void
ns_fds_sending(const struct msghdr *msg, int delta)
{
	each_passed_fd(msg, hold_in_flight, delta);
}

static void
received(int fd, int delta)
{
	ns_fd_received(fd);
}

/* The control messages of msg, after a recvmsg that returned them: every fd they carry. */
void
ns_fds_received(const struct msghdr *msg)
{
	each_passed_fd(msg, received, 0);
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
