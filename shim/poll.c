/*
 * Waiting calls.  Readiness stays in the kernel; the shim does three
 * things here.  It notices an initiator that waits for input before it
 * has written anything (a server-speaks-first protocol) and sends msg1
 * empty, so the server can answer.  Likewise a responder that waits while
 * msg2 is held for its answer sends msg2 empty: the client may be holding
 * the rest of its request until it has msg2.  And while a connection's
 * early buffer is full (writes before the handshake is done, more than it
 * holds), the kernel calls the socket writable though a write would get
 * EAGAIN: the waits leave its writability out until there is room, so
 * that an event loop sleeps instead of spinning.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <time.h>

#include "conn.h"
#include "fdtable.h"
#include "poll.h"
#include "real.h"
#include "sandbox.h"
#include "service.h"
#include "shim.h"

/* How long poll and select sleep at a time while an fd they wait on for writing has no room. */
enum { BLOCKED_SLICE_MS = 10 };

/*
 * The program's epoll registration of a socket the shim knows is kept in
 * its socket object (the last ADD or MOD, in one epoll set): while the
 * connection's early buffer is full, the kernel's copy leaves EPOLLOUT out
 * ("suspended"), and ns_poll_resume gives it back.  No memory beyond the
 * object's slot.
 */

/* Keep what the program registered for fd in epfd (op as for epoll_ctl). */
static void
remember(int epfd, int op, int fd, const struct epoll_event *ev)
{
	struct ns_conn *c = ns_fd_get(fd);

	/* A socket not connected yet becomes an object now, so that the registration has a home. */
	if (c == NULL && op != EPOLL_CTL_DEL && ns_fd_entry(fd) == NS_FD_FRESH &&
	    (c = ns_fd_promote(fd)) != NULL)
		ns_conn_ref(c);
	if (c == NULL)
		return;
	if (op == EPOLL_CTL_DEL) {
		if (c->ep_fd1 == epfd + 1)
			c->ep_fd1 = 0;
	} else {
		c->ep_events = ev->events;
		c->ep_data = ev->data.u64;
		c->ep_suspended = 0;
		__atomic_store_n(&c->ep_fd1, epfd + 1, __ATOMIC_RELEASE);
	}
	ns_conn_unref(c);
}

/* fd's early buffer has room again: its epoll registration gets its writability back. */
void
ns_poll_resume(int fd)
{
	struct ns_conn *c = ns_fd_get(fd);

	if (c == NULL)
		return;
	if (c->ep_suspended && c->ep_fd1 > 0) {
		struct epoll_event ev = {.events = c->ep_events, .data.u64 = c->ep_data};
		c->ep_suspended = 0;
		REAL(epoll_ctl)(c->ep_fd1 - 1, EPOLL_CTL_MOD, fd, &ev);
	}
	ns_conn_unref(c);
}

/* Whether fd is a connection whose early buffer is full. */
static int
write_blocked(int fd)
{
	struct ns_conn *c = ns_fd_wrapped(fd);
	int blocked = c != NULL && __atomic_load_n(&c->write_blocked, __ATOMIC_ACQUIRE);

	ns_conn_unref(c);
	return blocked;
}

/*
 * Take EPOLLOUT out of what epoll_wait returned for connections with no
 * room, and out of their registrations until there is.  The events left.
 * Which fd an event is for is found by its data among the connections
 * registered in epfd: only on this path, which is rare.
 */
static int
leave_out_blocked(int epfd, struct epoll_event *events, int n)
{
	int kept = 0;

	for (int i = 0; i < n; i++) {
		int blocked = 0;

		for (int fd = (events[i].events & EPOLLOUT) ? ns_fd_next_in_use(0) : -1; fd >= 0;
		     fd = ns_fd_next_in_use(fd + 1)) {
			struct ns_conn *c;

			if (!write_blocked(fd) || (c = ns_fd_get(fd)) == NULL)
				continue;
			if (c->ep_fd1 == epfd + 1 && c->ep_data == events[i].data.u64) {
				struct epoll_event quiet = {.events = c->ep_events & ~(uint32_t)EPOLLOUT,
				                            .data.u64 = c->ep_data};
				if (c->ep_suspended || REAL(epoll_ctl)(epfd, EPOLL_CTL_MOD, fd, &quiet) == 0)
					c->ep_suspended = 1;
				blocked = 1;
			}
			ns_conn_unref(c);
		}
		if (blocked)
			events[i].events &= ~(uint32_t)EPOLLOUT;
		if (events[i].events != 0)
			events[kept++] = events[i];
	}
	return kept;
}

/* Milliseconds left of a wait of timeout_ms that began at start (-1: no end). */
static int
left_ms(int timeout_ms, uint64_t start_ms)
{
	uint64_t spent = ns_now_ms() - start_ms;

	if (timeout_ms < 0)
		return -1;
	return spent >= (uint64_t)timeout_ms ? 0 : timeout_ms - (int)spent;
}

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

/* Whether some connection's handshake message waits for the program's writes. */
static int
any_held(void)
{
	return any_unstarted() || __atomic_load_n(&ns_conn_msg2_due, __ATOMIC_RELAXED) > 0;
}

/*
 * fd waits for input: the first flight goes now if it gathered anything,
 * and empty if it did not and the program waits for input only (a server
 * that speaks first must hear from the client to answer).  A responder's
 * held msg2 goes now, empty, if the program waits for input only: it has
 * no answer ready for msg2 to carry (one that also waits to write is about
 * to write it).
 */
static void
start_if_reading(int fd, int also_writing)
{
	struct ns_conn *c = ns_fd_wrapped(fd);

	if (c == NULL)
		return;
	if (ns_conn_phase(c) == NS_PHASE_START && (!also_writing || c->early_len > 0))
		ns_conn_release_unlocked(c, fd);
	else if (ns_conn_phase(c) == NS_PHASE_MSG2_DUE && !also_writing)
		ns_conn_service_msg2(c, fd);
	ns_conn_unref(c);
}

/*
 * The waits below release only when they may block: a look with a zero
 * timeout (an event loop between callbacks) is not yet waiting for the peer.
 *
 * A wait whose fds the shim cannot see (epoll_wait): every gathered first
 * flight goes, and so does an empty one whose fd was put in an epoll set
 * for input only (a program that waits for the server to speak first), and
 * every msg2 still held for an answer.
 */
static void
release_all(void)
{
	if (!any_held())
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
	if (!any_held())
		return;
	for (nfds_t i = 0; i < n; i++)
		if (fds[i].events & POLLIN)
			start_if_reading(fds[i].fd, (fds[i].events & POLLOUT) != 0);
}

static void
scan_fdsets(int nfds, const fd_set *readfds, const fd_set *writefds)
{
	if (!any_held() || readfds == NULL)
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

/*
 * poll with POLLOUT left out for connections with no room: in slices, so
 * that it notices when one has room again.  -1 with errno ENOENT when no
 * fd asked for is such a connection (the kernel alone decides).
 */
static int
poll_blocked(struct pollfd *fds, nfds_t n, int timeout_ms, const sigset_t *mask)
{
	uint64_t start = ns_now_ms();
	int any = 0, ready, left, slice;

	if (__atomic_load_n(&ns_conn_write_blocked, __ATOMIC_ACQUIRE) == 0)
		goto kernel_decides;
	for (nfds_t i = 0; i < n && !any; i++)
		any = (fds[i].events & POLLOUT) && write_blocked(fds[i].fd);
	if (!any)
		goto kernel_decides;
	for (;;) {
		short asked[n];

		for (nfds_t i = 0; i < n; i++) {
			asked[i] = fds[i].events;
			if ((fds[i].events & POLLOUT) && write_blocked(fds[i].fd))
				fds[i].events &= (short)~(POLLOUT | POLLWRNORM);
		}
		left = left_ms(timeout_ms, start);
		slice = left < 0 || left > BLOCKED_SLICE_MS ? BLOCKED_SLICE_MS : left;
		ready = REAL(ppoll)(fds, n, &(struct timespec){slice / 1000, (slice % 1000) * 1000000L},
		                    mask);
		for (nfds_t i = 0; i < n; i++)
			fds[i].events = asked[i];
		if (ready != 0 || left_ms(timeout_ms, start) == 0)
			return ready;
	}
kernel_decides:
	errno = ENOENT;
	return -1;
}

NS_EXPORT int
poll(struct pollfd *fds, nfds_t n, int timeout)
{
	int ready;

	if (timeout != 0)
		scan_pollfds(fds, n);
	if ((ready = poll_held(fds, n, NULL)) >= 0)
		return ready;
	if ((ready = poll_blocked(fds, n, timeout, NULL)) >= 0 || errno != ENOENT)
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
	if ((ready = poll_blocked(fds, n, timeout == NULL ? -1
	                                  : (int)(timeout->tv_sec * 1000 + timeout->tv_nsec / 1000000),
	                          mask)) >= 0 || errno != ENOENT)
		return ready;
	return REAL(ppoll)(fds, n, timeout, mask);
}

/*
 * select with writability left out for connections with no room, in
 * slices like poll_blocked.  -1 with errno ENOENT when no fd asked for is
 * such a connection.
 */
static int
select_blocked(int nfds, fd_set *readfds, fd_set *writefds, fd_set *exceptfds, int timeout_ms,
               const sigset_t *mask)
{
	fd_set r, w, e;
	uint64_t start = ns_now_ms();
	int any = 0, ready, left, slice;

	if (__atomic_load_n(&ns_conn_write_blocked, __ATOMIC_ACQUIRE) == 0 || writefds == NULL)
		goto kernel_decides;
	for (int fd = 0; fd < nfds && fd < FD_SETSIZE && !any; fd++)
		any = FD_ISSET(fd, writefds) && write_blocked(fd);
	if (!any)
		goto kernel_decides;
	for (;;) {
		FD_ZERO(&r);
		FD_ZERO(&e);
		if (readfds != NULL)
			r = *readfds;
		w = *writefds;
		if (exceptfds != NULL)
			e = *exceptfds;
		for (int fd = 0; fd < nfds && fd < FD_SETSIZE; fd++)
			if (FD_ISSET(fd, &w) && write_blocked(fd))
				FD_CLR(fd, &w);
		left = left_ms(timeout_ms, start);
		slice = left < 0 || left > BLOCKED_SLICE_MS ? BLOCKED_SLICE_MS : left;
		ready = REAL(pselect)(nfds, &r, &w, &e,
		                      &(struct timespec){slice / 1000, (slice % 1000) * 1000000L}, mask);
		if (ready != 0 || left_ms(timeout_ms, start) == 0) {
			if (ready >= 0) {
				if (readfds != NULL)
					*readfds = r;
				*writefds = w;
				if (exceptfds != NULL)
					*exceptfds = e;
			}
			return ready;
		}
	}
kernel_decides:
	errno = ENOENT;
	return -1;
}

NS_EXPORT int
select(int nfds, fd_set *readfds, fd_set *writefds, fd_set *exceptfds, struct timeval *timeout)
{
	int ready;

	if (timeout == NULL || timeout->tv_sec != 0 || timeout->tv_usec != 0)
		scan_fdsets(nfds, readfds, writefds);
	if ((ready = select_blocked(nfds, readfds, writefds, exceptfds,
	                            timeout == NULL ? -1
	                                            : (int)(timeout->tv_sec * 1000 + timeout->tv_usec / 1000),
	                            NULL)) >= 0 || errno != ENOENT)
		return ready;
	return REAL(select)(nfds, readfds, writefds, exceptfds, timeout);
}

NS_EXPORT int
pselect(int nfds, fd_set *readfds, fd_set *writefds, fd_set *exceptfds,
        const struct timespec *timeout, const sigset_t *mask)
{
	int ready;

	if (timeout == NULL || timeout->tv_sec != 0 || timeout->tv_nsec != 0)
		scan_fdsets(nfds, readfds, writefds);
	if ((ready = select_blocked(nfds, readfds, writefds, exceptfds,
	                            timeout == NULL ? -1
	                                            : (int)(timeout->tv_sec * 1000 + timeout->tv_nsec / 1000000),
	                            mask)) >= 0 || errno != ENOENT)
		return ready;
	return REAL(pselect)(nfds, readfds, writefds, exceptfds, timeout, mask);
}

NS_EXPORT int
epoll_ctl(int epfd, int op, int fd, struct epoll_event *event)
{
	int ret;

	if (any_unstarted() && (op == EPOLL_CTL_ADD || op == EPOLL_CTL_MOD) && event != NULL)
		note_interest(fd, event->events);
	ret = REAL(epoll_ctl)(epfd, op, fd, event);
	/* Only sockets the shim knows can ever have a full early buffer. */
	if (ret == 0 && ns_fd_known(fd) && (op == EPOLL_CTL_DEL || event != NULL))
		remember(epfd, op, fd, event);
	return ret;
}

/* epoll_wait and epoll_pwait: a connection with no room is not reported writable. */
static int
wait_epoll(int epfd, struct epoll_event *events, int max, int timeout, const sigset_t *mask)
{
	uint64_t start = ns_now_ms();
	int n;

	if (timeout != 0)
		release_all();
	for (;;) {
		n = REAL(epoll_pwait)(epfd, events, max, left_ms(timeout, start), mask);
		if (n <= 0 || __atomic_load_n(&ns_conn_write_blocked, __ATOMIC_ACQUIRE) == 0)
			return n;
		if ((n = leave_out_blocked(epfd, events, n)) > 0 || left_ms(timeout, start) == 0)
			return n;
	}
}

NS_EXPORT int
epoll_wait(int epfd, struct epoll_event *events, int max, int timeout)
{
	return wait_epoll(epfd, events, max, timeout, NULL);
}

NS_EXPORT int
epoll_pwait(int epfd, struct epoll_event *events, int max, int timeout, const sigset_t *mask)
{
	return wait_epoll(epfd, events, max, timeout, mask);
}
