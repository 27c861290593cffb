/*
 * The shim's own fds (see ownfd.h).
 */
#include "ownfd.h"

#include <fcntl.h>
#include <limits.h>
#include <unistd.h>

#include "real.h"

/* Far from the small numbers programs assume free (sshd dup2s onto 4 and 5 before it re-execs). */
enum { OWN_FD_MIN = 64, MAX_OWN = 4 };

static int *owned[MAX_OWN];
static int nowned;

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
	return 0;
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

/* The program is about to put another file at number fd: move any fd of ours away. */
void
ns_own_fd_wanted(int fd)
{
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
	return best == INT_MAX ? -1 : best;
}
