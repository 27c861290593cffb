/*
 * fork and vfork.  A child holds a copy of every fd, so it holds a share
 * of every socket object: each table entry is counted once more before the
 * fork (and given back if the fork fails), so that a parent closing its
 * copy at once cannot free what the child still uses.  Fresh sockets
 * become objects first, so that whichever process connects one wraps it
 * for both.  The Noise state itself needs nothing: it is in the arena,
 * which the child shares.
 */
#include <errno.h>
#include <pthread.h>
#include <unistd.h>

#include "conn.h"
#include "fdtable.h"
#include "log.h"
#include "real.h"
#include "service.h"
#include "shim.h"

static void
promote_fresh(int fd, uint64_t entry, void *ctx)
{
	int *failed = ctx;

	if (entry == NS_FD_FRESH && ns_fd_promote(fd) == NULL)
		*failed = 1;
}

static void
count_share(int fd, uint64_t entry, void *ctx)
{
	if (entry > NS_FD_FRESH)
		ns_conn_ref(ns_fd_entry_conn(entry));
}

static void
drop_share(int fd, uint64_t entry, void *ctx)
{
	if (entry > NS_FD_FRESH)
		ns_conn_unref(ns_fd_entry_conn(entry));
}

static void
unlocked_foreach(void (*fn)(int, uint64_t, void *), void *ctx)
{
	/* Promotion writes the table, so it walks a snapshot of entries, not under the lock. */
	for (int fd = ns_fd_next_in_use(0); fd >= 0; fd = ns_fd_next_in_use(fd + 1))
		fn(fd, ns_fd_entry(fd), ctx);
}

NS_EXPORT pid_t
fork(void)
{
	int failed = 0;
	pid_t pid;

	unlocked_foreach(promote_fresh, &failed);
	if (failed) {
		/* A socket the child could connect without the parent knowing: refuse instead. */
		ns_log(NS_LOG_ERROR, "fork refused: no memory to share an unconnected socket's state");
		errno = ENOMEM;
		return -1;
	}
	ns_fd_lock();
	ns_service_before_fork();
	ns_fd_foreach(count_share, NULL);
	pid = REAL(fork)();
	if (pid == 0) {
		ns_fd_reset_lock();
		ns_service_after_fork_child();
		pthread_mutex_init(&ns_shim.cache_lock, NULL);
		return 0;
	}
	ns_service_after_fork_parent();
	if (pid < 0) {
		int saved = errno;
		ns_fd_foreach(drop_share, NULL);
		errno = saved;
	}
	ns_fd_unlock();
	return pid;
}

/*
 * vfork's child borrows the parent's memory until it execs, so the shim's
 * bookkeeping in it would be the parent's.  A fork does what a correct
 * vfork caller may rely on.
 */
NS_EXPORT pid_t
vfork(void)
{
	return fork();
}
