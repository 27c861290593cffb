/*
 * Replay window for responders: remembers the ephemeral keys of first
 * messages for a fixed time, in bounded memory, and reports a repeat.
 */
#ifndef NOISESHIM_REPLAY_H
#define NOISESHIM_REPLAY_H

#include <stddef.h>
#include <stdint.h>

#include "wire.h"

enum ns_replay_verdict {
	NS_REPLAY_FRESH = 0,   /* not seen within the window; now remembered */
	NS_REPLAY_REPEAT,      /* seen within the window */
	NS_REPLAY_FULL,        /* not seen, but no room without forgetting a live entry */
};

struct ns_replay;

/* A window of window_ms milliseconds holding at most capacity entries; NULL on failure. */
struct ns_replay *ns_replay_new(uint64_t window_ms, size_t capacity);

/*
 * The same, in memory shared with processes forked later, so that workers
 * of a pre-fork server see each other's entries.  Callers must lock.
 */
struct ns_replay *ns_replay_new_shared(uint64_t window_ms, size_t capacity);

/* Check key at time now_ms (monotonic) and remember it if fresh. */
enum ns_replay_verdict ns_replay_check(struct ns_replay *r, const uint8_t key[NS_KEY_LEN],
                                       uint64_t now_ms);

/* Bytes of memory the window uses at its capacity. */
size_t ns_replay_memory(const struct ns_replay *r);

/* Free the window; NULL is a no-op. */
void ns_replay_free(struct ns_replay *r);

#endif
