/*
 * Replay window shared across fork, locked with a process-shared robust
 * mutex so that a worker dying mid-check cannot wedge the others.
 */
#include "replay_guard.h"

#include <errno.h>
#include <pthread.h>
#include <sys/mman.h>

#include "log.h"
#include "shim.h"

struct guard {
	pthread_mutex_t lock;
	struct ns_replay *window;
};

static struct guard *guard;

/* Create the window from the configuration, before any worker is forked.  0 or -1. */
int
ns_replay_guard_init(void)
{
	const struct ns_config *cfg = &ns_shim.config;
	pthread_mutexattr_t attr;
	struct guard *g;

	if (guard != NULL)
		return 0;
	g = mmap(NULL, sizeof(*g), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (g == MAP_FAILED)
		return -1;
	g->window = ns_replay_new_shared((uint64_t)cfg->replay_window_s * 1000, cfg->replay_capacity);
	if (g->window == NULL) {
		munmap(g, sizeof(*g));
		return -1;
	}
	pthread_mutexattr_init(&attr);
	pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
	pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
	pthread_mutex_init(&g->lock, &attr);
	pthread_mutexattr_destroy(&attr);
	guard = g;
	ns_log(NS_LOG_INFO, "replay window: %u s, %u first flights, %zu bytes", cfg->replay_window_s,
	       cfg->replay_capacity, ns_replay_memory(g->window));
	return 0;
}

/*
 * Check the ephemeral key e of a decrypted msg1.  A full window refuses
 * only a msg1 that carries data: replaying an empty one gains nothing.
 */
enum ns_replay_verdict
ns_replay_guard_check(const uint8_t e[NS_KEY_LEN], int carries_data)
{
	enum ns_replay_verdict v;

	if (guard == NULL)
		/* No window could be made: no 0-RTT data is safe to accept. */
		return carries_data ? NS_REPLAY_FULL : NS_REPLAY_FRESH;
	if (pthread_mutex_lock(&guard->lock) == EOWNERDEAD)
		pthread_mutex_consistent(&guard->lock);
	v = ns_replay_check(guard->window, e, ns_now_ms());
	pthread_mutex_unlock(&guard->lock);
	return v == NS_REPLAY_FULL && !carries_data ? NS_REPLAY_FRESH : v;
}
