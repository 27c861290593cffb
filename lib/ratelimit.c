/*
 * Token buckets per address.  Tokens are kept in microseconds of credit:
 * one handshake costs 1e6 / per_second of them and an entry holds at most
 * burst times that, so refilling is adding the time elapsed, and an entry
 * whose credit would be full is no different from no entry at all.
 *
 * The table is set-associative: an address hashes (with a random key, as
 * addresses are chosen by the sender) to one bucket of WAYS entries.
 */
#include "ratelimit.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include <sodium.h>

enum { WAYS = 8, US_PER_S = 1000000 };

struct rate_entry {
	uint8_t addr[NS_RATELIMIT_ADDR_LEN];
	uint64_t last_us;   /* 0: never used */
	uint64_t credit_us; /* as of last_us */
};

struct ns_ratelimit {
	pthread_mutex_t lock;
	uint64_t cost_us;   /* credit one handshake takes */
	uint64_t full_us;   /* credit of a full bucket */
	uint32_t nbuckets;
	int shared;
	uint8_t hash_key[crypto_shorthash_KEYBYTES];
	struct rate_entry entries[]; /* nbuckets * WAYS */
};

static size_t table_size(uint32_t nbuckets)
{
	return sizeof(struct ns_ratelimit) + (size_t)nbuckets * WAYS * sizeof(struct rate_entry);
}

/*
 * A table for at most `entries` addresses (rounded up to whole buckets),
 * in memory shared with later children if shared is set.  NULL on failure
 * or when a value is out of range (per_second and burst from 1).
 */
struct ns_ratelimit *ns_ratelimit_new(unsigned per_second, unsigned burst, size_t entries,
                                      int shared)
{
	pthread_mutexattr_t attr;
	struct ns_ratelimit *rl;
	uint32_t nbuckets;

	if (per_second == 0 || per_second > NS_RATELIMIT_MAX_RATE || burst == 0 ||
	    burst > NS_RATELIMIT_MAX_BURST || entries == 0 || entries > NS_RATELIMIT_MAX_ENTRIES ||
	    sodium_init() < 0)
		return NULL;
	nbuckets = (uint32_t)((entries + WAYS - 1) / WAYS);
	if (shared) {
		rl = mmap(NULL, table_size(nbuckets), PROT_READ | PROT_WRITE,
		          MAP_SHARED | MAP_ANONYMOUS, -1, 0);
		if (rl == MAP_FAILED)
			return NULL;
	} else if ((rl = calloc(1, table_size(nbuckets))) == NULL) {
		return NULL;
	}
	rl->cost_us = US_PER_S / per_second;
	rl->full_us = rl->cost_us * burst;
	rl->nbuckets = nbuckets;
	rl->shared = shared;
	crypto_shorthash_keygen(rl->hash_key);
	pthread_mutexattr_init(&attr);
	if (shared) {
		pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
		pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
	}
	pthread_mutex_init(&rl->lock, &attr);
	pthread_mutexattr_destroy(&attr);
	return rl;
}

static struct rate_entry *bucket_of(struct ns_ratelimit *rl, const uint8_t addr[NS_RATELIMIT_ADDR_LEN])
{
	uint8_t digest[crypto_shorthash_BYTES];
	uint64_t h;

	crypto_shorthash(digest, addr, NS_RATELIMIT_ADDR_LEN, rl->hash_key);
	memcpy(&h, digest, sizeof h);
	return &rl->entries[(size_t)(((h >> 32) * rl->nbuckets) >> 32) * WAYS];
}

/* Credit of e at now_us: what it had plus what it earned since, up to a full bucket. */
static uint64_t credit_at(const struct ns_ratelimit *rl, const struct rate_entry *e, uint64_t now_us)
{
	uint64_t earned;

	if (e->last_us == 0)
		return rl->full_us;
	/* A clock read in another process may be a little behind: nothing earned. */
	earned = now_us > e->last_us ? now_us - e->last_us : 0;
	return earned >= rl->full_us - e->credit_us ? rl->full_us : e->credit_us + earned;
}

/* The entry of addr in its bucket, or the one to give it: unused, expired, or idle longest. */
static struct rate_entry *entry_for(struct ns_ratelimit *rl, const uint8_t addr[NS_RATELIMIT_ADDR_LEN],
                                    uint64_t now_us)
{
	struct rate_entry *bucket = bucket_of(rl, addr), *spare = NULL;

	for (int i = 0; i < WAYS; i++) {
		struct rate_entry *e = &bucket[i];

		if (e->last_us != 0 && memcmp(e->addr, addr, NS_RATELIMIT_ADDR_LEN) == 0)
			return e;
		if (spare == NULL || credit_at(rl, e, now_us) == rl->full_us ||
		    (credit_at(rl, spare, now_us) != rl->full_us && e->last_us < spare->last_us))
			spare = e;
	}
	memcpy(spare->addr, addr, NS_RATELIMIT_ADDR_LEN);
	spare->last_us = 0;
	return spare;
}

static void lock(struct ns_ratelimit *rl)
{
	/* A holder that died left at worst one entry half updated: harmless. */
	if (pthread_mutex_lock(&rl->lock) == EOWNERDEAD)
		pthread_mutex_consistent(&rl->lock);
}

/* Take one token for addr at time now_us (monotonic): 1 if it had one, 0 if not. */
int ns_ratelimit_allow(struct ns_ratelimit *rl, const uint8_t addr[NS_RATELIMIT_ADDR_LEN],
                       uint64_t now_us)
{
	struct rate_entry *e;
	uint64_t credit;
	int allowed;

	/* 0 marks an unused entry. */
	if (now_us == 0)
		now_us = 1;
	lock(rl);
	e = entry_for(rl, addr, now_us);
	credit = credit_at(rl, e, now_us);
	allowed = credit >= rl->cost_us;
	e->credit_us = allowed ? credit - rl->cost_us : credit;
	if (now_us > e->last_us)
		e->last_us = now_us;
	pthread_mutex_unlock(&rl->lock);
	return allowed;
}

/* Addresses still remembered at now_us: those that have not earned a full bucket back. */
size_t ns_ratelimit_tracked(struct ns_ratelimit *rl, uint64_t now_us)
{
	size_t n = 0;

	lock(rl);
	for (size_t i = 0; i < (size_t)rl->nbuckets * WAYS; i++)
		n += credit_at(rl, &rl->entries[i], now_us) != rl->full_us;
	pthread_mutex_unlock(&rl->lock);
	return n;
}

/* Bytes of memory the table uses. */
size_t ns_ratelimit_memory(const struct ns_ratelimit *rl)
{
	return table_size(rl->nbuckets);
}

/* Microseconds on CLOCK_MONOTONIC, the clock ns_ratelimit_allow expects. */
uint64_t ns_ratelimit_clock_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * US_PER_S + (uint64_t)ts.tv_nsec / 1000;
}

/* Free or unmap the table; NULL is a no-op. */
void ns_ratelimit_free(struct ns_ratelimit *rl)
{
	if (rl == NULL)
		return;
	sodium_memzero(rl->hash_key, sizeof rl->hash_key);
	if (rl->shared) {
		munmap(rl, table_size(rl->nbuckets));
	} else {
		pthread_mutex_destroy(&rl->lock);
		free(rl);
	}
}
