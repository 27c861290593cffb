/*
 * Read and write entry points.  Each returns straight to libc for an fd
 * the shim does not track; a tracked fd goes through its connection.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "birth.h"
#include "client.h"
#include "conn.h"
#include "fdtable.h"
#include "real.h"

/* Only the client shim makes connections; in the accept shim this is NULL. */
int ns_client_start(int fd, const struct sockaddr *addr, socklen_t len, struct ns_conn **out)
	__attribute__((weak));

static ssize_t
conn_recv(struct ns_conn *c, int fd, const struct iovec *iov, int iovcnt, int flags)
{
	ssize_t n = ns_conn_recv(c, fd, iov, iovcnt, flags);
	int saved = errno;

	ns_conn_unref(c);
	errno = saved;
	return n;
}

static ssize_t
conn_send(struct ns_conn *c, int fd, const struct iovec *iov, int iovcnt, int flags)
{
	ssize_t n = ns_conn_send(c, fd, iov, iovcnt, flags);
	int saved = errno;

	ns_conn_unref(c);
	errno = saved;
	return n;
}

NS_EXPORT ssize_t
read(int fd, void *buf, size_t len)
{
	struct ns_conn *c = ns_fd_wrapped(fd);
	struct iovec iov = {buf, len};

	if (c == NULL)
		return REAL(read)(fd, buf, len);
	return conn_recv(c, fd, &iov, 1, 0);
}

NS_EXPORT ssize_t
__read_chk(int fd, void *buf, size_t len, size_t buflen)
{
	struct ns_conn *c = ns_fd_wrapped(fd);
	struct iovec iov = {buf, len};

	if (c == NULL || len > buflen) {
		ns_conn_unref(c);
		return REAL(__read_chk)(fd, buf, len, buflen);
	}
	return conn_recv(c, fd, &iov, 1, 0);
}

NS_EXPORT ssize_t
readv(int fd, const struct iovec *iov, int iovcnt)
{
	struct ns_conn *c = ns_fd_wrapped(fd);

	if (c == NULL)
		return REAL(readv)(fd, iov, iovcnt);
	return conn_recv(c, fd, iov, iovcnt, 0);
}

NS_EXPORT ssize_t
recv(int fd, void *buf, size_t len, int flags)
{
	struct ns_conn *c = ns_fd_wrapped(fd);
	struct iovec iov = {buf, len};

	if (c == NULL)
		return REAL(recv)(fd, buf, len, flags);
	return conn_recv(c, fd, &iov, 1, flags);
}

NS_EXPORT ssize_t
__recv_chk(int fd, void *buf, size_t len, size_t buflen, int flags)
{
	struct ns_conn *c = ns_fd_wrapped(fd);
	struct iovec iov = {buf, len};

	if (c == NULL || len > buflen) {
		ns_conn_unref(c);
		return REAL(__recv_chk)(fd, buf, len, buflen, flags);
	}
	return conn_recv(c, fd, &iov, 1, flags);
}

NS_EXPORT ssize_t
recvfrom(int fd, void *buf, size_t len, int flags, struct sockaddr *addr, socklen_t *addrlen)
{
	struct ns_conn *c = ns_fd_wrapped(fd);
	struct iovec iov = {buf, len};

	if (c == NULL)
		return REAL(recvfrom)(fd, buf, len, flags, addr, addrlen);
	/* A connected TCP socket reports no source address. */
	if (addrlen != NULL)
		*addrlen = 0;
	return conn_recv(c, fd, &iov, 1, flags);
}

NS_EXPORT ssize_t
__recvfrom_chk(int fd, void *buf, size_t len, size_t buflen, int flags, struct sockaddr *addr,
               socklen_t *addrlen)
{
	struct ns_conn *c = ns_fd_wrapped(fd);
	struct iovec iov = {buf, len};

	if (c == NULL || len > buflen) {
		ns_conn_unref(c);
		return REAL(__recvfrom_chk)(fd, buf, len, buflen, flags, addr, addrlen);
	}
	if (addrlen != NULL)
		*addrlen = 0;
	return conn_recv(c, fd, &iov, 1, flags);
}

NS_EXPORT ssize_t
recvmsg(int fd, struct msghdr *msg, int flags)
{
	struct ns_conn *c = ns_fd_wrapped(fd);
	ssize_t ret;

	if (c == NULL) {
		ret = REAL(recvmsg)(fd, msg, flags);
		/* Sockets passed over a unix socket are fds made here too. */
		if (ret >= 0 && msg->msg_controllen > 0)
			ns_fds_received(msg);
		return ret;
	}
	msg->msg_namelen = 0;
	msg->msg_controllen = 0;
	msg->msg_flags = 0;
	return conn_recv(c, fd, msg->msg_iov, (int)msg->msg_iovlen, flags);
}

NS_EXPORT int
recvmmsg(int fd, struct mmsghdr *msgs, unsigned int vlen, int flags, struct timespec *timeout)
{
	struct ns_conn *c = ns_fd_wrapped(fd);
	unsigned int i;

	if (c == NULL) {
		int n = REAL(recvmmsg)(fd, msgs, vlen, flags, timeout);
		for (int m = 0; m < n; m++)
			if (msgs[m].msg_hdr.msg_controllen > 0)
				ns_fds_received(&msgs[m].msg_hdr);
		return n;
	}
	ns_conn_unref(c);
	/* Stream data has no message boundaries: fill the first message like recvmsg. */
	for (i = 0; i < vlen; i++) {
		ssize_t n = recvmsg(fd, &msgs[i].msg_hdr, (flags & ~MSG_WAITFORONE) |
		                    (i > 0 && (flags & MSG_WAITFORONE) ? MSG_DONTWAIT : 0));
		if (n < 0)
			return i > 0 ? (int)i : -1;
		msgs[i].msg_len = (unsigned int)n;
		if (n == 0)
			return (int)i + 1;
	}
	return (int)i;
}

NS_EXPORT ssize_t
write(int fd, const void *buf, size_t len)
{
	struct ns_conn *c = ns_fd_wrapped(fd);
	struct iovec iov = {(void *)buf, len};

	if (c == NULL)
		return REAL(write)(fd, buf, len);
	return conn_send(c, fd, &iov, 1, 0);
}

NS_EXPORT ssize_t
writev(int fd, const struct iovec *iov, int iovcnt)
{
	struct ns_conn *c = ns_fd_wrapped(fd);

	if (c == NULL)
		return REAL(writev)(fd, iov, iovcnt);
	return conn_send(c, fd, iov, iovcnt, 0);
}

NS_EXPORT ssize_t
send(int fd, const void *buf, size_t len, int flags)
{
	struct ns_conn *c = ns_fd_wrapped(fd);
	struct iovec iov = {(void *)buf, len};

	if (c == NULL)
		return REAL(send)(fd, buf, len, flags);
	return conn_send(c, fd, &iov, 1, flags);
}

/*
 * A send that carries its destination with MSG_FASTOPEN is a connect:
 * it goes through the one decision.  NS_START_WRAPPED with *out set (the
 * kernel connect done, the data still to send), NS_START_PLAIN, or -1.
 */
static int
fastopen_start(int fd, const struct sockaddr *addr, socklen_t addrlen, struct ns_conn **out)
{
	int r;

	*out = NULL;
	if (ns_client_start == NULL || addr == NULL)
		return NS_START_PLAIN;
	if ((r = ns_client_start(fd, addr, addrlen, out)) != NS_START_WRAPPED)
		return r;
	/* With TCP_FASTOPEN_CONNECT on (set for TFO destinations) this only records the address. */
	if (REAL(connect)(fd, addr, addrlen) < 0 && errno != EINPROGRESS && errno != EISCONN &&
	    errno != EALREADY) {
		int saved = errno;
		if (ns_conn_phase(*out) == NS_PHASE_START)
			ns_conn_fail(*out, fd, saved, "connect failed");
		ns_conn_unref(*out);
		*out = NULL;
		errno = saved;
		return -1;
	}
	return NS_START_WRAPPED;
}

NS_EXPORT ssize_t
sendto(int fd, const void *buf, size_t len, int flags, const struct sockaddr *addr,
       socklen_t addrlen)
{
	struct ns_conn *c = ns_fd_wrapped(fd);
	struct iovec iov = {(void *)buf, len};

	if (c == NULL && (flags & MSG_FASTOPEN)) {
		switch (fastopen_start(fd, addr, addrlen, &c)) {
		case NS_START_PLAIN:
			return REAL(sendto)(fd, buf, len, flags, addr, addrlen);
		case NS_START_WRAPPED:
			break;
		default:
			return -1;
		}
	}
	if (c == NULL)
		return REAL(sendto)(fd, buf, len, flags, addr, addrlen);
	return conn_send(c, fd, &iov, 1, flags & ~MSG_FASTOPEN);
}

NS_EXPORT ssize_t
sendmsg(int fd, const struct msghdr *msg, int flags)
{
	struct ns_conn *c = ns_fd_wrapped(fd);

	if (c == NULL && (flags & MSG_FASTOPEN)) {
		switch (fastopen_start(fd, msg->msg_name, msg->msg_namelen, &c)) {
		case NS_START_PLAIN:
			return REAL(sendmsg)(fd, msg, flags);
		case NS_START_WRAPPED:
			break;
		default:
			return -1;
		}
	}
	if (c == NULL && msg->msg_controllen > 0) {
		ssize_t ret;
		int saved;

		ns_fds_sending(msg, 1);
		if ((ret = REAL(sendmsg)(fd, msg, flags)) < 0) {
			saved = errno;
			ns_fds_sending(msg, -1);
			errno = saved;
		}
		return ret;
	}
	if (c == NULL)
		return REAL(sendmsg)(fd, msg, flags);
	return conn_send(c, fd, msg->msg_iov, (int)msg->msg_iovlen, flags & ~MSG_FASTOPEN);
}

NS_EXPORT int
sendmmsg(int fd, struct mmsghdr *msgs, unsigned int vlen, int flags)
{
	struct ns_conn *c = ns_fd_wrapped(fd);
	unsigned int i;

	if (c == NULL && (flags & MSG_FASTOPEN) && vlen > 0) {
		switch (fastopen_start(fd, msgs[0].msg_hdr.msg_name, msgs[0].msg_hdr.msg_namelen, &c)) {
		case NS_START_PLAIN:
			return REAL(sendmmsg)(fd, msgs, vlen, flags);
		case NS_START_WRAPPED:
			break;
		default:
			return -1;
		}
	}
	if (c == NULL) {
		int sent, saved;

		for (i = 0; i < vlen; i++)
			ns_fds_sending(&msgs[i].msg_hdr, 1);
		sent = REAL(sendmmsg)(fd, msgs, vlen, flags);
		saved = errno;
		for (i = sent < 0 ? 0 : (unsigned int)sent; i < vlen; i++)
			ns_fds_sending(&msgs[i].msg_hdr, -1);
		errno = saved;
		return sent;
	}
	for (i = 0; i < vlen; i++) {
		ssize_t n = ns_conn_send(c, fd, msgs[i].msg_hdr.msg_iov,
		                         (int)msgs[i].msg_hdr.msg_iovlen, flags & ~MSG_FASTOPEN);
		if (n < 0)
			break;
		msgs[i].msg_len = (unsigned int)n;
	}
	int saved = errno;
	ns_conn_unref(c);
	errno = saved;
	return i > 0 ? (int)i : -1;
}
