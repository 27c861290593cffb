/*
 * The sandbox mode (see sandbox.h), entered from the calls that announce
 * one: sshd's pre-auth child sets RLIMIT_FSIZE and RLIMIT_NOFILE to next
 * to nothing (after which even growing the arena's memfd raises SIGXFSZ),
 * then installs its filter with prctl(PR_SET_NO_NEW_PRIVS) and
 * prctl(PR_SET_SECCOMP).
 * Everything the data path could need later that the filter may forbid is
 * made before: cipher contexts, this thread's record buffer, warm arena
 * buffers.
 */
#include "sandbox.h"

#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "arena.h"
#include "conn.h"
#include "fdtable.h"
#include "real.h"
#include "stats.h"

int ns_sandboxed;

/* recv() as the sandbox allows it (no MSG_PEEK while sandboxed). */
ssize_t
ns_sock_recv(int fd, void *buf, size_t len, int flags)
{
	if (__builtin_expect(!ns_sandboxed, 1))
		return REAL(recv)(fd, buf, len, flags);
	if (flags & MSG_DONTWAIT) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		if (REAL(poll)(&p, 1, 0) == 0) {
			errno = EAGAIN;
			return -1;
		}
	}
	return REAL(read)(fd, buf, len);
}

/* send() as the sandbox allows it. */
ssize_t
ns_sock_send(int fd, const void *buf, size_t len, int flags)
{
	if (__builtin_expect(!ns_sandboxed, 1))
		return REAL(send)(fd, buf, len, flags);
	return REAL(write)(fd, buf, len);
}

static void
prepare_conn(int fd, uint64_t entry, void *ctx)
{
	struct ns_conn *c;

	if (entry <= NS_FD_FRESH)
		return;
	c = ns_fd_entry_conn(entry);
	if (c->kind == NS_SOCK_WRAPPED && ns_conn_phase(c) == NS_PHASE_OPEN) {
		ns_conn_cipher(c, 0);
		ns_conn_cipher(c, 1);
	}
	(*(int *)ctx)++;
}

/* Make now what the data path may need later, then stop using what the sandbox forbids. */
static void
enter(void)
{
	ns_off bufs[NS_ARENA_WARM_BUFS];
	int conns = 0, n;

	/* Exit would unlink the counters link a fork left, which the filter forbids. */
	ns_stats_leave_files();
	if (ns_sandboxed || !ns_arena_ready())
		return;
	ns_fd_lock();
	ns_fd_foreach(prepare_conn, &conns);
	ns_fd_unlock();
	ns_conn_prepare_thread();
	/* Two buffers a connection (one each way), from the free list: growing the file is forbidden. */
	n = conns * 2 < NS_ARENA_WARM_BUFS ? conns * 2 : NS_ARENA_WARM_BUFS;
	for (int i = 0; i < n; i++)
		bufs[i] = ns_arena_buf_alloc();
	for (int i = 0; i < n; i++)
		ns_arena_buf_free(bufs[i], 0);
	ns_sandboxed = 1;
}

/* Limits that leave no room for a file to grow or an fd to open announce a sandbox. */
static void
limit_set(int resource, const struct rlimit *rl)
{
	if ((resource == RLIMIT_FSIZE && rl->rlim_cur == 0) ||
	    (resource == RLIMIT_NOFILE && rl->rlim_cur <= 2))
		enter();
}

NS_EXPORT __attribute__((no_sanitize("address", "undefined"))) int
setrlimit(__rlimit_resource_t resource, const struct rlimit *rl)
{
	if (ns_real.setrlimit == NULL)
		return (int)syscall(SYS_prlimit64, 0, resource, rl, NULL);
	limit_set((int)resource, rl);
	return REAL(setrlimit)(resource, rl);
}

NS_EXPORT int
setrlimit64(__rlimit_resource_t resource, const struct rlimit64 *rl)
{
	struct rlimit small = {(rlim_t)rl->rlim_cur, (rlim_t)rl->rlim_max};

	limit_set((int)resource, &small);
	return REAL(setrlimit64)(resource, rl);
}

NS_EXPORT int
prctl(int option, ...)
{
	unsigned long a2, a3, a4, a5;
	va_list ap;

	va_start(ap, option);
	a2 = va_arg(ap, unsigned long);
	a3 = va_arg(ap, unsigned long);
	a4 = va_arg(ap, unsigned long);
	a5 = va_arg(ap, unsigned long);
	va_end(ap);
	if (option == PR_SET_NO_NEW_PRIVS || option == PR_SET_SECCOMP)
		enter();
	return REAL(prctl)(option, a2, a3, a4, a5);
}
