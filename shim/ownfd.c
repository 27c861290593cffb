/*
 * The shim's own fds (see ownfd.h).
 */
#include "ownfd.h"

#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <unistd.h>

#include "real.h"

/* Far from the small numbers programs assume free (sshd dup2s onto 4 and 5 before it re-execs). */
enum { OWN_FD_MIN = 64, MAX_OWN = 4, MAX_LINGER = 64 };

static int *owned[MAX_OWN];
static int nowned;

/* Lingering copies, stored as fd + 1 (0: an empty place); changed under linger_lock. */
static int lingering[MAX_LINGER];
static int nlingering;
static pthread_mutex_t linger_lock = PTHREAD_MUTEX_INITIALIZER;

int
ns_own_fd_linger(int fd)
{
	int ret = -1;

	pthread_mutex_lock(&linger_lock);
	for (int i = 0; i < MAX_LINGER; i++)
		if (lingering[i] == 0) {
			__atomic_store_n(&lingering[i], fd + 1, __ATOMIC_RELEASE);
			__atomic_add_fetch(&nlingering, 1, __ATOMIC_RELEASE);
			ret = 0;
			break;
		}
	pthread_mutex_unlock(&linger_lock);
	return ret;
}

void
ns_own_fd_unlinger(int fd)
{
	pthread_mutex_lock(&linger_lock);
	for (int i = 0; i < MAX_LINGER; i++)
		if (lingering[i] == fd + 1) {
			__atomic_store_n(&lingering[i], 0, __ATOMIC_RELEASE);
			__atomic_sub_fetch(&nlingering, 1, __ATOMIC_RELEASE);
			break;
		}
	pthread_mutex_unlock(&linger_lock);
}

/* Whether fd is such a copy.  Costs one load while there is none. */
int
ns_own_fd_lingering(int fd)
{
	if (__atomic_load_n(&nlingering, __ATOMIC_ACQUIRE) == 0 || fd < 0)
		return 0;
	for (int i = 0; i < MAX_LINGER; i++)
		if (__atomic_load_n(&lingering[i], __ATOMIC_ACQUIRE) == fd + 1)
			return 1;
	return 0;
}

/* Track the fd stored in *fdp (the variable is read again whenever it is needed). */
void
ns_own_fd_register(int *fdp)
{
	for (int i = 0; i < nowned; i++)
		if (owned[i] == fdp)
			return;
	if (nowned < MAX_OWN)
		owned[nowned++] = fdp;
}

/* Whether fd is one of the shim's own. */
int
ns_own_fd(int fd)
{
	for (int i = 0; i < nowned; i++)
		if (fd >= 0 && __atomic_load_n(owned[i], __ATOMIC_ACQUIRE) == fd)
			return 1;
	return ns_own_fd_lingering(fd);
}

/* fd moved to a high number (close-on-exec), or fd itself if that fails. */
int
ns_own_fd_high(int fd)
{
	int moved;

	if (fd >= OWN_FD_MIN || (moved = REAL(fcntl)(fd, F_DUPFD_CLOEXEC, OWN_FD_MIN)) < 0)
		return fd;
	REAL(close)(fd);
	return moved;
}

/*
 * The program is about to put another file at number fd: move any fd of
 * ours away.  A lingering copy is let go instead: the dup2 that replaces
 * it closes it through the shim, which hands it to the service thread
 * again under another number.
 */
void
ns_own_fd_wanted(int fd)
{
	if (ns_own_fd_lingering(fd))
		ns_own_fd_unlinger(fd);
	for (int i = 0; i < nowned; i++) {
		int moved;

		if (fd < 0 || *owned[i] != fd)
			continue;
		/* The old number is replaced by the program's dup2, which closes it for us. */
		if ((moved = REAL(fcntl)(fd, F_DUPFD_CLOEXEC, fd + 1 > OWN_FD_MIN ? fd + 1 : OWN_FD_MIN)) >= 0)
			__atomic_store_n(owned[i], moved, __ATOMIC_RELEASE);
	}
}

/* The next of the shim's fds above fd, or -1. */
int
ns_own_fd_after(int fd)
{
	int best = INT_MAX;

	for (int i = 0; i < nowned; i++) {
		int v = __atomic_load_n(owned[i], __ATOMIC_ACQUIRE);
		if (v > fd && v < best)
			best = v;
	}
	for (int i = 0; __atomic_load_n(&nlingering, __ATOMIC_ACQUIRE) > 0 && i < MAX_LINGER; i++) {
		int v = __atomic_load_n(&lingering[i], __ATOMIC_ACQUIRE) - 1;
		if (v > fd && v < best)
			best = v;
	}
	return best == INT_MAX ? -1 : best;
}
