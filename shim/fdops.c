/*
 * fd bookkeeping entry points: close, dup, fcntl, ioctl, socket options,
 * shutdown.  A dup'd fd shares its source's connection; an fd that is
 * closed, or replaced by dup2, drops its share.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "birth.h"
#include "conn.h"
#include "ownfd.h"
#include "fdtable.h"
#include "real.h"
#include "service.h"
#include "shim.h"
#include "stdio_streams.h"

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

/* How long close() and shutdown() may wait for a partly sent record to leave. */
enum { FLUSH_TIMEOUT_MS = 2000 };

/*
 * fd is about to be closed (by close, dup2 onto it, fclose): drop its share
 * of its socket.  The last fd of a connection, in any process, first
 * pushes out what the program was told had left.
 */
void
ns_fd_closing(int fd)
{
	struct ns_conn *c = ns_fd_take(fd);

	if (ns_fd_listener(fd) != NS_LISTENER_UNKNOWN)
		ns_fd_set_listener(fd, NS_LISTENER_UNKNOWN);
	if (c == NULL)
		return;
	if (c->kind == NS_SOCK_WRAPPED && __atomic_load_n(&c->refs, __ATOMIC_ACQUIRE) == 1) {
		/* What was gathered for msg1, or written before msg2, was reported as sent. */
		if (ns_conn_phase(c) == NS_PHASE_START && c->early_len > 0)
			ns_conn_release_unlocked(c, fd);
		/* The rest goes from the service thread, so that close returns at once. */
		if ((c->tail_len > c->tail_off || c->early_len > 0) &&
		    ns_service_linger(fd, c, FLUSH_TIMEOUT_MS) != 0)
			ns_conn_flush(c, fd, FLUSH_TIMEOUT_MS);
	}
	ns_conn_unref(c);
}

/*
 * The shim's own fds (ownfd.h): a program that closes every fd it does not
 * know (before exec, say) must not take away what hands its connections to
 * the next image.  They are close-on-exec, so keeping them costs nothing.
 */
NS_EXPORT int
close(int fd)
{
	if (__builtin_expect(ns_own_fd(fd), 0))
		return 0;
	ns_fd_closing(fd);
	return REAL(close)(fd);
}

static void
forget_range(unsigned int first, unsigned int last)
{
	if (first > (unsigned int)INT32_MAX)
		return;
	for (int fd = ns_fd_next_in_use((int)first); fd >= 0 && (unsigned int)fd <= last;
	     fd = ns_fd_next_in_use(fd + 1))
		ns_fd_closing(fd);
}

/* close_range around the shim's own fds. */
static int
close_range_sparing_own(unsigned int first, unsigned int last, int flags)
{
	int ret = 0;

	for (int own = ns_own_fd_after(first > 0 ? (int)first - 1 : -1); ret == 0 && first <= last;
	     own = ns_own_fd_after(own)) {
		if (own < 0 || (unsigned int)own > last)
			return REAL(close_range)(first, last, flags);
		if ((unsigned int)own > first)
			ret = REAL(close_range)(first, (unsigned int)own - 1, flags);
		if ((unsigned int)own == ~0u)
			break;
		first = (unsigned int)own + 1;
	}
	return ret;
}

NS_EXPORT int
close_range(unsigned int first, unsigned int last, int flags)
{
	if (!(flags & CLOSE_RANGE_CLOEXEC))
		forget_range(first, last);
	return close_range_sparing_own(first, last, flags);
}

NS_EXPORT void
closefrom(int lowfd)
{
	unsigned int first = lowfd < 0 ? 0 : (unsigned int)lowfd;

	forget_range(first, ~0u);
	if (ns_own_fd_after(lowfd - 1) >= 0)
		close_range_sparing_own(first, ~0u, 0);
	else
		REAL(closefrom)(lowfd);
}

NS_EXPORT int
shutdown(int fd, int how)
{
	struct ns_conn *c = ns_fd_wrapped(fd);

	if (c == NULL)
		return REAL(shutdown)(fd, how);
	if (how != SHUT_RD) {
		/* The peer must get msg1 and every whole record before the end of the stream. */
		if (ns_conn_phase(c) == NS_PHASE_START)
			ns_conn_release_unlocked(c, fd);
		ns_conn_flush(c, fd, FLUSH_TIMEOUT_MS);
	}
	ns_conn_unref(c);
	return REAL(shutdown)(fd, how);
}

/*
 * After a successful dup of old to new: new shares old's socket object.  A
 * fresh socket becomes an object first, so that connecting either fd
 * wraps both.  A copy that cannot be tracked is closed: it must not become
 * a plaintext path.
 */
static int
share(int old, int new)
{
	uint64_t e = ns_fd_entry(old);
	struct ns_conn *c;

	if (new < 0)
		return new;
	ns_fd_created(new);
	if (e == 0)
		return new;
	if (e == NS_FD_FRESH) {
		if ((c = ns_fd_promote(old)) == NULL)
			goto refuse;
		ns_conn_ref(c);
	} else if ((c = ns_fd_get(old)) == NULL) {
		return new;  /* a stale entry: old is not a socket the shim knows */
	}
	if (ns_fd_attach(new, c) != 0) {
		ns_conn_unref(c);
		goto refuse;
	}
	ns_conn_unref(c);
	return new;
refuse:
	REAL(close)(new);
	errno = EMFILE;
	return -1;
}

NS_EXPORT int
dup(int fd)
{
	return share(fd, REAL(dup)(fd));
}

/* Before dup2/dup3 replaces new: a last copy of a connection still gets its records out. */
static void
before_replace(int new)
{
	struct ns_conn *c = ns_fd_wrapped(new);

	if (c == NULL)
		return;
	if (__atomic_load_n(&c->refs, __ATOMIC_ACQUIRE) == 2) {
		if (ns_conn_phase(c) == NS_PHASE_START && c->early_len > 0)
			ns_conn_release_unlocked(c, new);
		if (c->tail_len > c->tail_off || c->early_len > 0)
			ns_conn_flush(c, new, FLUSH_TIMEOUT_MS);
	}
	ns_conn_unref(c);
}

NS_EXPORT int
dup2(int old, int new)
{
	int ret;

	if (old == new)
		return REAL(dup2)(old, new);
	ns_own_fd_wanted(new);
	before_replace(new);
	/* The target's state goes only once it really is replaced: a failed dup2 changes nothing. */
	if ((ret = REAL(dup2)(old, new)) < 0)
		return ret;
	ret = share(old, ret);
	ns_stdio_refresh(new);
	return ret;
}

NS_EXPORT int
dup3(int old, int new, int flags)
{
	int ret;

	if (old != new) {
		ns_own_fd_wanted(new);
		before_replace(new);
	}
	if ((ret = REAL(dup3)(old, new, flags)) < 0)
		return ret;
	ret = share(old, ret);
	ns_stdio_refresh(new);
	return ret;
}

/* fcntl for a tracked fd: dups share state, O_NONBLOCK is remembered. */
static int
fcntl_common(int (*real)(int, int, ...), int fd, int cmd, void *arg)
{
	struct ns_conn *c;
	int ret;

	switch (cmd) {
	case F_DUPFD:
	case F_DUPFD_CLOEXEC:
		return share(fd, real(fd, cmd, arg));
	case F_SETFL:
		ret = real(fd, cmd, arg);
		if (ret == 0 && (c = ns_fd_wrapped(fd)) != NULL) {
			c->nonblock = ((long)arg & O_NONBLOCK) != 0;
			ns_conn_unref(c);
		}
		return ret;
	default:
		return real(fd, cmd, arg);
	}
}

NS_EXPORT int
fcntl(int fd, int cmd, ...)
{
	va_list ap;
	void *arg;

	va_start(ap, cmd);
	arg = va_arg(ap, void *);
	va_end(ap);
	return fcntl_common(REAL(fcntl), fd, cmd, arg);
}

NS_EXPORT int
fcntl64(int fd, int cmd, ...)
{
	va_list ap;
	void *arg;

	va_start(ap, cmd);
	arg = va_arg(ap, void *);
	va_end(ap);
	return fcntl_common(REAL(fcntl64), fd, cmd, arg);
}

NS_EXPORT int
ioctl(int fd, unsigned long request, ...)
{
	struct ns_conn *c;
	va_list ap;
	void *arg;
	int ret;

	va_start(ap, request);
	arg = va_arg(ap, void *);
	va_end(ap);
	if ((c = ns_fd_wrapped(fd)) == NULL)
		return REAL(ioctl)(fd, request, arg);
	switch (request) {
	case FIONREAD:
		/* Plaintext the program can read now, not ciphertext in the kernel. */
		*(int *)arg = ns_conn_readable(c, fd);
		ret = 0;
		break;
	case FIONBIO:
		if ((ret = REAL(ioctl)(fd, request, arg)) == 0)
			c->nonblock = *(int *)arg != 0;
		break;
	default:
		ret = REAL(ioctl)(fd, request, arg);
	}
	ns_conn_unref(c);
	return ret;
}

NS_EXPORT int
getsockopt(int fd, int level, int name, void *value, socklen_t *len)
{
	struct ns_conn *c;

	if (level != SOL_SOCKET || name != SO_RCVLOWAT || (c = ns_fd_wrapped(fd)) == NULL)
		return REAL(getsockopt)(fd, level, name, value, len);
	/* The kernel's mark follows records; the program sees the one it set. */
	if (*len >= sizeof(int)) {
		*(int *)value = c->user_lowat;
		*len = sizeof(int);
	}
	ns_conn_unref(c);
	return 0;
}

NS_EXPORT int
setsockopt(int fd, int level, int name, const void *value, socklen_t len)
{
	struct ns_conn *c;

	/* TCP_CORK holds a first flight that is still being gathered; uncorking lets it go. */
	if (level == IPPROTO_TCP && name == TCP_CORK && (c = ns_fd_wrapped(fd)) != NULL) {
		int ret = REAL(setsockopt)(fd, level, name, value, len);
		if (ret == 0 && len >= sizeof(int))
			ns_conn_set_cork(c, fd, *(const int *)value);
		ns_conn_unref(c);
		return ret;
	}
	if (level != SOL_SOCKET || name != SO_RCVLOWAT || (c = ns_fd_wrapped(fd)) == NULL)
		return REAL(setsockopt)(fd, level, name, value, len);
	if (len < sizeof(int)) {
		ns_conn_unref(c);
		errno = EINVAL;
		return -1;
	}
	c->user_lowat = *(const int *)value < 1 ? 1 : *(const int *)value;
	ns_conn_unref(c);
	return 0;
}
