/*
 * Load detection and the per-address limiter, shared across fork.
 *
 * Load is judged on first flights arriving, not on handshakes completed:
 * refused flights must keep counting, or refusing them would end the load
 * at once and let the flood straight back in.  Load begins when first
 * flights have kept up LOAD_FLIGHTS_PER_S for a whole second (every
 * tenth of it), or when LOAD_PENDING msg1s are being processed at once; a
 * one-off burst, such as a client opening a pool of connections, is not
 * load.  It lasts while a quarter of either remains, and LOAD_HOLD_MS
 * after, so that the limit does not flap at the threshold.
 */
#include "load_guard.h"

#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>

#include "ratelimit.h"

enum {
	LOAD_FLIGHTS_PER_S = 500,   /* first flights arriving per second, sustained */
	LOAD_PENDING = 16,          /* msg1s being processed at once */
	LOAD_HOLD_MS = 1000,
	SLICE_MS = 100,
	SLICES = 10,                /* one second of slices */
	LIMITER_ENTRIES = 4096,
	LINE_MAX_LEN = 256,
};

struct load_state {
	pthread_mutex_t lock;
	int pending;                /* atomic: msg1s between begin and end */
	uint64_t slice;             /* the slice counts[slice % (SLICES + 1)] is filling */
	uint32_t counts[SLICES + 1];/* first flights per slice: the last SLICES whole ones and this one */
	uint64_t loaded_until_ms;
	int loaded;                 /* the last admit saw load: for the log */
	uint64_t refused;           /* atomic: first flights refused since the load began */
};

static struct load_state *state;
static struct ns_ratelimit *limiter;
static struct ns_load_guard_config settings;
static ns_line_fn *log_line;

/*
 * Set up from cfg, with where lines go, before any worker is forked; a
 * second call changes nothing.  0 or -1 (no memory).
 */
int ns_load_guard_init(const struct ns_load_guard_config *cfg, ns_line_fn *log)
{
	pthread_mutexattr_t attr;
	struct load_state *s;

	if (state != NULL || cfg->rate_limit == 0)
		return 0;
	s = mmap(NULL, sizeof *s, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (s == MAP_FAILED)
		return -1;
	if ((limiter = ns_ratelimit_new(cfg->rate_limit, cfg->rate_burst, LIMITER_ENTRIES, 1)) == NULL) {
		munmap(s, sizeof *s);
		return -1;
	}
	pthread_mutexattr_init(&attr);
	pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
	pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
	pthread_mutex_init(&s->lock, &attr);
	pthread_mutexattr_destroy(&attr);
	settings = *cfg;
	log_line = log;
	state = s;
	return 0;
}

/* The limiter's key for peer: IPv4 mapped into IPv6, IPv6 cut to its /64.  0 or -1. */
static int address_key(const struct sockaddr *peer, uint8_t key[NS_RATELIMIT_ADDR_LEN])
{
	static const uint8_t v4_mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

	memset(key, 0, NS_RATELIMIT_ADDR_LEN);
	if (peer == NULL)
		return -1;
	if (peer->sa_family == AF_INET) {
		memcpy(key, v4_mapped, sizeof v4_mapped);
		memcpy(key + 12, &((const struct sockaddr_in *)peer)->sin_addr, 4);
		return 0;
	}
	if (peer->sa_family != AF_INET6)
		return -1;
	memcpy(key, &((const struct sockaddr_in6 *)peer)->sin6_addr, NS_RATELIMIT_ADDR_LEN);
	/* An IPv4 client of a dual-stack socket is one address, not a /64. */
	if (memcmp(key, v4_mapped, sizeof v4_mapped) != 0)
		memset(key + 8, 0, 8);
	return 0;
}

/* Count one first flight at now_ms and say whether the server is under load.  Under state->lock. */
static int count_and_judge(uint64_t now_ms)
{
	uint64_t slice = now_ms / SLICE_MS;
	uint32_t last_second = 0, pending;
	char line[LINE_MAX_LEN];
	int sustained = 1;

	/* Slices with no flight at all must read zero, however long the quiet was. */
	for (uint64_t i = state->slice + 1; i <= slice && i <= state->slice + SLICES + 1; i++)
		state->counts[i % (SLICES + 1)] = 0;
	state->slice = slice;
	state->counts[slice % (SLICES + 1)]++;
	for (uint64_t i = slice - SLICES; i < slice; i++) {
		uint32_t n = state->counts[i % (SLICES + 1)];

		last_second += n;
		sustained &= n >= LOAD_FLIGHTS_PER_S / SLICES;
	}
	pending = (uint32_t)__atomic_load_n(&state->pending, __ATOMIC_RELAXED);
	if (sustained || pending >= LOAD_PENDING ||
	    (state->loaded &&
	     (last_second >= LOAD_FLIGHTS_PER_S / 4 || pending >= LOAD_PENDING / 4)))
		state->loaded_until_ms = now_ms + LOAD_HOLD_MS;
	if (now_ms < state->loaded_until_ms && !state->loaded) {
		snprintf(line, sizeof line, "under load (%u first flights in the last second, %u msg1s "
		         "in progress): each address is limited to %u first flights/s, burst %u "
		         "(NOISESHIM_RATE_LIMIT, NOISESHIM_RATE_BURST)", last_second, pending,
		         settings.rate_limit, settings.rate_burst);
		log_line(NS_LINE_WARN, line);
		state->loaded = 1;
		__atomic_store_n(&state->refused, 0, __ATOMIC_RELAXED);
	} else if (now_ms >= state->loaded_until_ms && state->loaded) {
		snprintf(line, sizeof line, "load is over: %llu first flights were refused while it lasted",
		         (unsigned long long)__atomic_load_n(&state->refused, __ATOMIC_RELAXED));
		log_line(NS_LINE_WARN, line);
		state->loaded = 0;
	}
	return state->loaded;
}

/* The limiter's verdict on the peer: 0 to go on, -1 to close unanswered. */
static int peer_allowed(ns_load_guard_peer_fn *peer_fn, void *arg, uint64_t now_us)
{
	struct sockaddr_storage peer;
	uint8_t key[NS_RATELIMIT_ADDR_LEN];

	if (peer_fn(arg, &peer) != 0 || address_key((struct sockaddr *)&peer, key) != 0 ||
	    ns_ratelimit_allow(limiter, key, now_us))
		return 0;
	__atomic_add_fetch(&state->refused, 1, __ATOMIC_RELAXED);
	return -1;
}

/* A whole msg1 has arrived: 0 to go on, -1 to close unanswered. */
int ns_load_guard_admit(ns_load_guard_peer_fn *peer_fn, void *arg)
{
	uint64_t now_us;
	int loaded;

	if (state == NULL)
		return 0;
	now_us = ns_ratelimit_clock_us();
	if (pthread_mutex_lock(&state->lock) == EOWNERDEAD)
		/* Counters at worst one flight off: nothing to repair. */
		pthread_mutex_consistent(&state->lock);
	loaded = count_and_judge(now_us / 1000);
	pthread_mutex_unlock(&state->lock);
	/* Only under load does the peer's address matter: asking the kernel costs every flight. */
	return loaded ? peer_allowed(peer_fn, arg, now_us) : 0;
}

/* Around the processing of one msg1, so that handshakes in progress are counted. */
void ns_load_guard_begin(void)
{
	if (state != NULL)
		__atomic_add_fetch(&state->pending, 1, __ATOMIC_RELAXED);
}

void ns_load_guard_end(void)
{
	if (state != NULL)
		__atomic_sub_fetch(&state->pending, 1, __ATOMIC_RELAXED);
}
