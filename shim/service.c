/*
 * The service thread (see service.h).  Timers live in one array (pending
 * handshakes are few, and a job is looked at only when due); fds are
 * watched with epoll, keyed by fd number and checked against the fd table
 * before anything is done, so that an fd the program closed and reused is
 * never touched.
 */
#include "service.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "conn.h"
#include "fdtable.h"
#include "log.h"
#include "ownfd.h"
#include "real.h"
#include "sandbox.h"
#include "shim.h"

enum { MAX_EVENTS = 64, EXIT_FLUSH_MS = 1000 };

struct job {
	int fd;
	enum ns_job kind;
	uint64_t due_ms;
	uint64_t entry;                /* the fd table entry the job is for (object and generation) */
	uint64_t until_ms;             /* NS_JOB_LINGER: when to give up and close */
};


static struct {
	pthread_mutex_t lock;          /* guards everything below */
	struct job *jobs;
	size_t count, cap;
	uint64_t sleeping_until;       /* when the thread's wait ends (UINT64_MAX: no timer) */
	pid_t pid;                     /* the process the thread runs in; 0 before it started */
	uint32_t running;              /* the thread has reached its loop (a futex word) */
	int failed;                    /* it could not be started here */
	int stopped;                   /* the process is exiting: act on nothing more */
} svc = {.lock = PTHREAD_MUTEX_INITIALIZER};

static int epfd = -1, wakefd = -1;

/* The suite of the connection that started the thread, whose OpenSSL set-up it does first. */
static uint32_t warm_suite;

/* Milliseconds on the monotonic clock, and microseconds. */
uint64_t
ns_now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

static void
wake(void)
{
	uint64_t one = 1;

	(void)!REAL(write)(wakefd, &one, sizeof(one));
}

/*
 * Run fn for fd while the table says fd is still the connection of entry:
 * the table's read lock keeps a concurrent close from reusing the number.
 */
static int
with_conn(int fd, uint64_t entry, int (*fn)(struct ns_conn *c, int fd, void *ctx), void *ctx)
{
	int ret = 0;

	ns_fd_rdlock();
	if (!__atomic_load_n(&svc.stopped, __ATOMIC_ACQUIRE) && ns_fd_entry(fd) == entry &&
	    entry > NS_FD_FRESH)
		ret = fn(ns_fd_entry_conn(entry), fd, ctx);
	ns_fd_rdunlock();
	return ret;
}

/*
 * Before fork, under the fd table's write lock: hold the job lock, and
 * wait until a thread just created has reached its loop.  A thread still
 * starting may hold locks of the C runtime or a sanitizer's allocator,
 * which a child would inherit held and wait on forever; in its loop the
 * thread holds nothing a child needs (its actions run under the fd
 * table's lock, which fork holds too).
 */
void
ns_service_before_fork(void)
{
	pthread_mutex_lock(&svc.lock);
	while (svc.pid == getpid() && !__atomic_load_n(&svc.running, __ATOMIC_ACQUIRE))
		ns_shared_wait(&svc.running, 0, 10);
}

/* After fork, in the parent. */
void
ns_service_after_fork_parent(void)
{
	pthread_mutex_unlock(&svc.lock);
}

/* A lingering copy is done (or out of time): it goes, and with it the connection. */
static void
linger_finish(int fd, uint64_t entry)
{
	struct ns_conn *c;

	if (ns_fd_entry(fd) != entry || (c = ns_fd_take(fd)) == NULL)
		return;
	if (c->tail_len > c->tail_off || c->early_len > 0)
		ns_log(NS_LOG_WARN, "fd %d, %s: closed with %u bytes unsent", fd, c->peer,
		       c->tail_len - c->tail_off + c->early_len);
	if (epfd >= 0)
		REAL(epoll_ctl)(epfd, EPOLL_CTL_DEL, fd, NULL);
	ns_own_fd_unlinger(fd);
	REAL(close)(fd);
	ns_conn_unref(c);
}

static void
drop_copy(int fd, uint64_t entry, void *ctx)
{
	int *fds = ctx;

	if (ns_own_fd_lingering(fd) && fds[0] < 64)
		fds[++fds[0]] = fd;
}

/* In a fork child: the thread did not come along, and may have held the lock; its copies go. */
void
ns_service_after_fork_child(void)
{
	int fds[65] = {0};

	pthread_mutex_init(&svc.lock, NULL);
	/* The parent's thread sends what they hold; the child's copies would only keep them open. */
	ns_fd_foreach(drop_copy, fds);
	for (int i = 1; i <= fds[0]; i++) {
		struct ns_conn *c = ns_fd_take(fds[i]);
		ns_own_fd_unlinger(fds[i]);
		REAL(close)(fds[i]);
		ns_conn_unref(c);
	}
}

/*
 * Stop the thread from acting (the process is exiting, and libraries are
 * being torn down; or it execs, and a lock the thread held then would be
 * left to a thread that no longer exists).  Waits for an action under way.
 */
void
ns_service_stop(void)
{
	__atomic_store_n(&svc.stopped, 1, __ATOMIC_RELEASE);
	ns_fd_lock();
	ns_fd_unlock();
}

/* The exec failed: the thread may act again. */
void
ns_service_resume(void)
{
	__atomic_store_n(&svc.stopped, 0, __ATOMIC_RELEASE);
	wake();
}

static int
run_job(struct ns_conn *c, int fd, void *ctx)
{
	const struct job *j = ctx;

	if (__atomic_load_n(&c->kind, __ATOMIC_ACQUIRE) != NS_SOCK_WRAPPED)
		return 0;
	switch (j->kind) {
	case NS_JOB_RELEASE:
		return ns_conn_service_release(c, fd);
	case NS_JOB_DEADLINE:
		return ns_conn_service_deadline(c, fd);
	case NS_JOB_PROBE:
		return ns_conn_service_probe(c, fd);
	case NS_JOB_MSG2:
		return ns_conn_service_msg2(c, fd);
	case NS_JOB_LINGER:
		return ns_now_ms() >= j->until_ms ? 0 : ns_conn_service_linger(c, fd);
	}
	return 0;
}

static int
run_io(struct ns_conn *c, int fd, void *ctx)
{
	uint32_t events;

	if (__atomic_load_n(&c->kind, __ATOMIC_ACQUIRE) != NS_SOCK_WRAPPED)
		return 0;
	events = ns_conn_service_io(c, fd);
	/* Still under the table lock: fd is still this connection. */
	if (events == 0)
		REAL(epoll_ctl)(epfd, EPOLL_CTL_DEL, fd, NULL);
	else
		REAL(epoll_ctl)(epfd, EPOLL_CTL_MOD, fd,
		                &(struct epoll_event){.events = events, .data.fd = fd});
	return 1;
}

/* Whether a job can still matter: its fd is still its connection, which is still in a handshake. */
static int
job_live(const struct job *j)
{
	struct ns_conn *c;

	if (ns_fd_entry(j->fd) != j->entry)
		return 0;
	/* A lingering copy is closed by its own job, whatever became of the connection. */
	if (j->kind == NS_JOB_LINGER)
		return 1;
	c = ns_fd_entry_conn(j->entry);
	return ns_conn_phase(c) != NS_PHASE_FAILED &&
	       (ns_conn_phase(c) != NS_PHASE_OPEN || j->kind == NS_JOB_MSG2);
}

/* Take the due jobs out, and drop the dead; the time until the next one comes back (-1: none). */
static int
take_due(struct job *due, size_t *ndue, size_t max)
{
	uint64_t now = ns_now_ms(), next = UINT64_MAX;

	*ndue = 0;
	pthread_mutex_lock(&svc.lock);
	for (size_t i = 0; i < svc.count;) {
		/* A closed or finished connection's job would only cost every later scan. */
		if (!job_live(&svc.jobs[i])) {
			svc.jobs[i] = svc.jobs[--svc.count];
			continue;
		}
		if (svc.jobs[i].due_ms <= now && *ndue < max) {
			due[(*ndue)++] = svc.jobs[i];
			svc.jobs[i] = svc.jobs[--svc.count];
			continue;
		}
		if (svc.jobs[i].due_ms < next)
			next = svc.jobs[i].due_ms;
		i++;
	}
	svc.sleeping_until = *ndue > 0 ? now : next;
	pthread_mutex_unlock(&svc.lock);
	if (next == UINT64_MAX)
		return -1;
	return next <= now ? 0 : next - now > 60000 ? 60000 : (int)(next - now);
}

static void *
service_main(void *arg)
{
	static struct job due[256];
	struct epoll_event ev[MAX_EVENTS];

	/*
	 * The thread starts with a process's first wrapped connection: its
	 * records will need OpenSSL for their suite, whose set-up is done here
	 * meanwhile (during the handshake's round trip), before a fork may copy
	 * this thread's state.  Only that suite: the other one's costs memory.
	 */
	ns_cipher_warm((enum ns_suite)warm_suite);
	/*
	 * It waits for the program's threads to yield the CPU rather than
	 * preempt them on every wakeup, which on a busy core costs two context
	 * switches each; a timer then fires a few milliseconds late, and only
	 * while the core is busy.
	 */
	pthread_setschedparam(pthread_self(), SCHED_BATCH, &(struct sched_param){0});
	__atomic_store_n(&svc.running, 1, __ATOMIC_RELEASE);
	ns_shared_wake(&svc.running);
	for (;;) {
		size_t ndue;
		int timeout = take_due(due, &ndue, sizeof(due) / sizeof(due[0]));

		for (size_t i = 0; i < ndue; i++) {
			int again = with_conn(due[i].fd, due[i].entry, run_job, &due[i]);
			/* Outside the table's read lock: closing the copy changes the table. */
			if (due[i].kind == NS_JOB_LINGER && again <= 0)
				linger_finish(due[i].fd, due[i].entry);
			/* A job that found its connection busy, or not ready yet, runs again soon. */
			if (again > 0) {
				due[i].due_ms = ns_now_ms() + (uint64_t)again;
				pthread_mutex_lock(&svc.lock);
				if (svc.count < svc.cap)
					svc.jobs[svc.count++] = due[i];
				pthread_mutex_unlock(&svc.lock);
				timeout = 0;
			}
		}
		int n = REAL(epoll_wait)(__atomic_load_n(&epfd, __ATOMIC_ACQUIRE), ev, MAX_EVENTS,
		                         ndue > 0 ? 0 : timeout);
		for (int i = 0; i < n; i++) {
			int fd = ev[i].data.fd;
			uint64_t drain;

			if (fd == wakefd) {
				(void)!REAL(read)(wakefd, &drain, sizeof(drain));
				continue;
			}
			/* Not a wrapped connection (any more): stop watching the number. */
			if (!with_conn(fd, ns_fd_entry(fd), run_io, NULL))
				REAL(epoll_ctl)(epfd, EPOLL_CTL_DEL, fd, NULL);
		}
	}
	return arg;
}

/* What the process was told had been sent must not die with it: first flights and early writes go out. */
static void
flush_at_exit(void)
{
	int fds[1024];
	size_t n = 0;

	ns_service_stop();
	for (int fd = ns_fd_next_in_use(0); fd >= 0 && n < sizeof(fds) / sizeof(fds[0]);
	     fd = ns_fd_next_in_use(fd + 1))
		fds[n++] = fd;
	for (size_t i = 0; i < n; i++) {
		struct ns_conn *c = ns_fd_wrapped(fds[i]);

		if (c == NULL)
			continue;
		if (ns_conn_phase(c) == NS_PHASE_START && c->early_len > 0)
			ns_conn_release_unlocked(c, fds[i]);
		if (c->tail_len > c->tail_off || c->early_len > 0)
			ns_conn_flush(c, fds[i], EXIT_FLUSH_MS);
		ns_conn_unref(c);
	}
}

/* Start the thread in this process if it is not running (for a connection of suite).  0, or -1. */
static int
ensure_running(uint32_t suite)
{
	pid_t me = getpid();
	sigset_t all, old;
	pthread_attr_t attr;
	pthread_t thread;
	int ret = -1;

	if (__atomic_load_n(&svc.pid, __ATOMIC_ACQUIRE) == me)
		return 0;
	/* A sandbox may kill the process for creating a thread or an fd. */
	if (ns_sandboxed)
		return -1;
	pthread_mutex_lock(&svc.lock);
	if (svc.pid == me) {
		pthread_mutex_unlock(&svc.lock);
		return 0;
	}
	/* In a fork child: the parent's jobs are the parent thread's to run. */
	svc.count = 0;
	svc.sleeping_until = UINT64_MAX;
	if (svc.failed == (int)me)
		goto out;
	if ((epfd = ns_own_fd_high(REAL(epoll_create1)(EPOLL_CLOEXEC))) < 0 ||
	    (wakefd = ns_own_fd_high(REAL(eventfd)(0, EFD_CLOEXEC | EFD_NONBLOCK))) < 0)
		goto fail;
	ns_own_fd_register(&epfd);
	ns_own_fd_register(&wakefd);
	REAL(epoll_ctl)(epfd, EPOLL_CTL_ADD, wakefd,
	                &(struct epoll_event){.events = EPOLLIN, .data.fd = wakefd});
	/* The thread must never take a signal meant for the program. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	__atomic_store_n(&svc.running, 0, __ATOMIC_RELEASE);
	/* The thread's warm-up then opens no file behind the program's back. */
	ns_cipher_load_config();
	warm_suite = suite;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	ret = pthread_create(&thread, &attr, service_main, NULL) == 0 ? 0 : -1;
	pthread_attr_destroy(&attr);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (ret == 0) {
		/* A forked child inherits the hook (and OpenSSL is never torn down: shim.c). */
		static int exit_hook;
		if (!exit_hook) {
			atexit(flush_at_exit);
			exit_hook = 1;
		}
		__atomic_store_n(&svc.pid, me, __ATOMIC_RELEASE);
		goto out;
	}
fail:
	svc.failed = (int)me;
out:
	pthread_mutex_unlock(&svc.lock);
	return ret;
}

static int
schedule(int fd, struct ns_conn *c, enum ns_job job, uint64_t due_ms, uint64_t until_ms)
{
	uint64_t entry = ns_fd_entry(fd);

	if (entry <= NS_FD_FRESH || ns_fd_entry_conn(entry) != c || ensure_running(c->suite) != 0)
		return -1;
	pthread_mutex_lock(&svc.lock);
	if (svc.count == svc.cap) {
		size_t cap = svc.cap ? svc.cap * 2 : 64;
		struct job *jobs = realloc(svc.jobs, cap * sizeof(*jobs));
		if (jobs == NULL) {
			pthread_mutex_unlock(&svc.lock);
			return -1;
		}
		svc.jobs = jobs;
		svc.cap = cap;
	}
	svc.jobs[svc.count++] = (struct job){fd, job, due_ms, entry, until_ms};
	/* The thread wakes for it only if it would otherwise sleep past it. */
	int sooner = due_ms < svc.sleeping_until;
	if (sooner)
		svc.sleeping_until = due_ms;
	pthread_mutex_unlock(&svc.lock);
	if (sooner)
		wake();
	return 0;
}

/* Run job for fd's connection c at due_ms (monotonic clock).  0, or -1 when no thread can run. */
int
ns_service_at(int fd, struct ns_conn *c, enum ns_job job, uint64_t due_ms)
{
	return schedule(fd, c, job, due_ms, 0);
}

/*
 * The program closes fd, the last fd of c, with bytes of c still to send:
 * the thread keeps a copy of the socket and sends them (for at most
 * timeout_ms), so that close returns at once, as the kernel's does.  0 when
 * it took them; -1 when the caller must flush itself.
 */
int
ns_service_linger(int fd, struct ns_conn *c, int timeout_ms)
{
	uint64_t now = ns_now_ms();
	int copy;

	if (ensure_running(c->suite) != 0 || (copy = REAL(fcntl)(fd, F_DUPFD_CLOEXEC, 0)) < 0)
		return -1;
	copy = ns_own_fd_high(copy);
	if (ns_own_fd_linger(copy) != 0) {
		REAL(close)(copy);
		return -1;
	}
	if (ns_fd_attach(copy, c) != 0 ||
	    schedule(copy, c, NS_JOB_LINGER, now, now + (uint64_t)timeout_ms) != 0) {
		struct ns_conn *back = ns_fd_take(copy);
		ns_own_fd_unlinger(copy);
		REAL(close)(copy);
		/* The caller's reference is still held: this drop is never the last. */
		ns_conn_unref(back);
		return -1;
	}
	ns_service_watch(copy, c);
	return 0;
}

/* Watch fd until its connection has nothing left to push out or to complete.  0, or -1. */
int
ns_service_watch(int fd, struct ns_conn *c)
{
	struct epoll_event ev = {.events = ns_conn_service_wants(c), .data.fd = fd};

	if (ensure_running(c->suite) != 0)
		return -1;
	if (ev.events == 0)
		return 0;
	if (REAL(epoll_ctl)(epfd, EPOLL_CTL_ADD, fd, &ev) != 0 &&
	    (errno != EEXIST || REAL(epoll_ctl)(epfd, EPOLL_CTL_MOD, fd, &ev) != 0))
		return -1;
	return 0;
}
