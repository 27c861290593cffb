/*
 * Token buckets per source address, in a fixed-size hashed table: each
 * address may take `burst` tokens at once and earns them back at
 * `per_second`.  An address idle long enough to have earned a full bucket
 * again is forgotten (its entry expires and is reused), and a bucket of
 * the table that is full of live entries gives up the one idle longest,
 * so memory never grows with the number of addresses.
 *
 * The table may live in memory shared with processes forked later; it
 * holds its own robust process-shared lock.
 */
#ifndef NOISESHIM_RATELIMIT_H
#define NOISESHIM_RATELIMIT_H

#include <stddef.h>
#include <stdint.h>

enum {
	/* Addresses are given as 16 bytes: IPv6, or IPv4 mapped into it. */
	NS_RATELIMIT_ADDR_LEN = 16,
	NS_RATELIMIT_MAX_RATE = 1000000,
	NS_RATELIMIT_MAX_BURST = 1000000,
	NS_RATELIMIT_MAX_ENTRIES = 1u << 24,
};

struct ns_ratelimit;

/*
 * A table for at most `entries` addresses (rounded up to whole buckets),
 * in memory shared with later children if shared is set.  NULL on failure
 * or when a value is out of range (per_second and burst from 1).
 */
struct ns_ratelimit *ns_ratelimit_new(unsigned per_second, unsigned burst, size_t entries,
                                      int shared);

/* Take one token for addr at time now_us (monotonic): 1 if it had one, 0 if not. */
int ns_ratelimit_allow(struct ns_ratelimit *rl, const uint8_t addr[NS_RATELIMIT_ADDR_LEN],
                       uint64_t now_us);

/* Addresses still remembered at now_us: those that have not earned a full bucket back. */
size_t ns_ratelimit_tracked(struct ns_ratelimit *rl, uint64_t now_us);

/* Bytes of memory the table uses. */
size_t ns_ratelimit_memory(const struct ns_ratelimit *rl);

/* Microseconds on CLOCK_MONOTONIC, the clock ns_ratelimit_allow expects. */
uint64_t ns_ratelimit_clock_us(void);

/* Free or unmap the table; NULL is a no-op. */
void ns_ratelimit_free(struct ns_ratelimit *rl);

#endif
