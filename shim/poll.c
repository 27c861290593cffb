/*
 * Waiting calls.  Readiness stays in the kernel; the only thing the shim
 * does here is notice an initiator that waits for input before it has
 * written anything (a server-speaks-first protocol) and send msg1 empty,
 * so the server can answer.
 */
#include <poll.h>
#include <sys/epoll.h>
#include <sys/select.h>

#include "conn.h"
#include "fdtable.h"
#include "real.h"
#include "sandbox.h"

/*
 * glibc declares poll()'s fds write-only (an access attribute meant for
 * callers' fortify checks), so GCC takes our reading of the requested
 * events as a read of uninitialised memory.
 */
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

static int
any_unstarted(void)
{
	return __atomic_load_n(&ns_conn_unstarted, __ATOMIC_RELAXED) > 0;
}

/*
 * fd waits for input: the first flight goes now if it gathered anything,
 * and empty if it did not and the program waits for input only (a server
 * that speaks first must hear from the client to answer).
 */
static void
start_if_reading(int fd, int also_writing)
{
	struct ns_conn *c = ns_fd_wrapped(fd);

	if (c == NULL)
		return;
	if (ns_conn_phase(c) == NS_PHASE_START && (!also_writing || c->early_len > 0))
		ns_conn_release_unlocked(c, fd);
	ns_conn_unref(c);
}

/*
 * The waits below release only when they may block: a look with a zero
 * timeout (an event loop between callbacks) is not yet waiting for the peer.
 *
 * A wait whose fds the shim cannot see (epoll_wait): every gathered first
 * flight goes, and so does an empty one whose fd was put in an epoll set
 * for input only (a program that waits for the server to speak first).
 */
static void
release_all(void)
{
	if (!any_unstarted())
		return;
	for (int fd = ns_fd_next_in_use(0); fd >= 0; fd = ns_fd_next_in_use(fd + 1)) {
		struct ns_conn *c = ns_fd_entry(fd) > NS_FD_FRESH ? ns_fd_wrapped(fd) : NULL;

		if (c == NULL)
			continue;
		start_if_reading(fd, !__atomic_load_n(&c->read_interest, __ATOMIC_RELAXED));
		ns_conn_unref(c);
	}
}

/* Registering an fd for input is not yet waiting: the program may still write its request. */
static void
note_interest(int fd, uint32_t events)
{
	struct ns_conn *c = ns_fd_wrapped(fd);

	if (c == NULL)
		return;
	__atomic_store_n(&c->read_interest, (events & EPOLLIN) && !(events & EPOLLOUT),
	                 __ATOMIC_RELAXED);
	ns_conn_unref(c);
}


static void
scan_pollfds(const struct pollfd *fds, nfds_t n)
{
	if (!any_unstarted())
		return;
	for (nfds_t i = 0; i < n; i++)
		if (fds[i].events & POLLIN)
			start_if_reading(fds[i].fd, (fds[i].events & POLLOUT) != 0);
}

static void
scan_fdsets(int nfds, const fd_set *readfds, const fd_set *writefds)
{
	if (!any_unstarted() || readfds == NULL)
		return;
	for (int fd = 0; fd < nfds && fd < FD_SETSIZE; fd++)
		if (FD_ISSET(fd, readfds))
			start_if_reading(fd, writefds != NULL && FD_ISSET(fd, writefds));
}

/* Whether fd is a wrapped connection holding plaintext the kernel does not signal. */
static int
holds_unsignalled(int fd)
{
	struct ns_conn *c = ns_fd_wrapped(fd);
	int held = c != NULL && __atomic_load_n(&c->plain_len, __ATOMIC_ACQUIRE) > 0 &&
	           !c->kernel_byte_held;

	ns_conn_unref(c);
	return held;
}

/*
 * In a sandbox no byte is kept back in the kernel for held plaintext, so
 * poll reports it: those fds are readable now, the rest as the kernel says
 * without waiting.  -1 when nothing is held (the kernel alone decides).
 */
static int
poll_held(struct pollfd *fds, nfds_t n, const sigset_t *mask)
{
	int any = 0, ready = 0;

	if (__builtin_expect(!ns_sandboxed, 1))
		return -1;
	for (nfds_t i = 0; i < n && !any; i++)
		any = (fds[i].events & POLLIN) && holds_unsignalled(fds[i].fd);
	if (!any)
		return -1;
	if (REAL(ppoll)(fds, n, &(struct timespec){0, 0}, mask) < 0)
		return -1;
	for (nfds_t i = 0; i < n; i++) {
		if ((fds[i].events & POLLIN) && holds_unsignalled(fds[i].fd))
			fds[i].revents |= POLLIN;
		ready += fds[i].revents != 0;
	}
	return ready;
}

NS_EXPORT int
poll(struct pollfd *fds, nfds_t n, int timeout)
{
	int ready;

	if (timeout != 0)
		scan_pollfds(fds, n);
	if ((ready = poll_held(fds, n, NULL)) >= 0)
		return ready;
	return REAL(poll)(fds, n, timeout);
}

NS_EXPORT int
ppoll(struct pollfd *fds, nfds_t n, const struct timespec *timeout, const sigset_t *mask)
{
	int ready;

	if (timeout == NULL || timeout->tv_sec != 0 || timeout->tv_nsec != 0)
		scan_pollfds(fds, n);
	if ((ready = poll_held(fds, n, mask)) >= 0)
		return ready;
	return REAL(ppoll)(fds, n, timeout, mask);
}

NS_EXPORT int
select(int nfds, fd_set *readfds, fd_set *writefds, fd_set *exceptfds, struct timeval *timeout)
{
	if (timeout == NULL || timeout->tv_sec != 0 || timeout->tv_usec != 0)
		scan_fdsets(nfds, readfds, writefds);
	return REAL(select)(nfds, readfds, writefds, exceptfds, timeout);
}

NS_EXPORT int
pselect(int nfds, fd_set *readfds, fd_set *writefds, fd_set *exceptfds,
        const struct timespec *timeout, const sigset_t *mask)
{
	if (timeout == NULL || timeout->tv_sec != 0 || timeout->tv_nsec != 0)
		scan_fdsets(nfds, readfds, writefds);
	return REAL(pselect)(nfds, readfds, writefds, exceptfds, timeout, mask);
}

NS_EXPORT int
epoll_ctl(int epfd, int op, int fd, struct epoll_event *event)
{
	if (any_unstarted() && (op == EPOLL_CTL_ADD || op == EPOLL_CTL_MOD) && event != NULL)
		note_interest(fd, event->events);
	return REAL(epoll_ctl)(epfd, op, fd, event);
}

NS_EXPORT int
epoll_wait(int epfd, struct epoll_event *events, int max, int timeout)
{
	if (timeout != 0)
		release_all();
	return REAL(epoll_wait)(epfd, events, max, timeout);
}

NS_EXPORT int
epoll_pwait(int epfd, struct epoll_event *events, int max, int timeout, const sigset_t *mask)
{
	if (timeout != 0)
		release_all();
	return REAL(epoll_pwait)(epfd, events, max, timeout, mask);
}
