/*
 * Replay window for responders: remembers the ephemeral keys of first
 * messages for a fixed time, in bounded memory, and reports a repeat.
 *
 * A window lives in one block: on the heap (one process), in an anonymous
 * shared mapping (the processes forked after it), or in a file mapped
 * shared (every process on the host that opens the same file: restarts,
 * independently started servers, pre-fork workers).  The block holds its
 * own robust process-shared lock, so ns_replay_check needs no outside
 * locking, and a holder that dies mid-check is recovered from by the next
 * one: an insert that had begun is completed, never lost, and the index is
 * rebuilt from the entries, so no key seen before is forgotten.
 *
 * Time stamps are CLOCK_BOOTTIME milliseconds (ns_replay_clock_ms), which
 * every process on a host shares and which never steps; a file records the
 * boot it was written in and starts empty on another boot.
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
	NS_REPLAY_UNCHECKED,   /* the window (or a shared store) could not be consulted */
};

/* What ns_replay_open found at the path. */
enum ns_replay_opened {
	NS_REPLAY_OPENED_EXISTING = 0, /* a valid window, entries kept */
	NS_REPLAY_OPENED_CREATED,      /* no window there yet: made an empty one */
	NS_REPLAY_OPENED_NEW_BOOT,     /* written in another boot: emptied, as its times mean nothing now */
	NS_REPLAY_OPENED_REBUILT,      /* corrupt or of another format: replaced by an empty one */
};

enum {
	NS_REPLAY_MAX_CAPACITY = 1u << 30,
	/* Room for a path (PATH_MAX) and what went wrong with it. */
	NS_REPLAY_REASON_MAX = 4096 + 256,
};

struct ns_replay;

/* A window of window_ms milliseconds holding at most capacity entries; NULL on failure. */
struct ns_replay *ns_replay_new(uint64_t window_ms, size_t capacity);

/* The same, in memory shared with processes forked later. */
struct ns_replay *ns_replay_new_shared(uint64_t window_ms, size_t capacity);

/*
 * The window kept in the file at path (created 0600 if missing), shared by
 * every process that opens it.  A file that is corrupt or was made with
 * another capacity or format is replaced by an empty one: *opened says so
 * and reason (NS_REPLAY_REASON_MAX bytes) says what was wrong.  NULL on
 * failure, with reason saying why.
 */
struct ns_replay *ns_replay_open(const char *path, uint64_t window_ms, size_t capacity,
                                 enum ns_replay_opened *opened, char *reason);

/* Check key at time now_ms (ns_replay_clock_ms) and remember it if fresh. */
enum ns_replay_verdict ns_replay_check(struct ns_replay *r, const uint8_t key[NS_KEY_LEN],
                                       uint64_t now_ms);

/* Milliseconds on CLOCK_BOOTTIME: the clock every window's time stamps use. */
uint64_t ns_replay_clock_ms(void);

/* Bytes of memory the window uses at its capacity. */
size_t ns_replay_memory(const struct ns_replay *r);

/*
 * Crash testing: the next insert through this handle calls _exit(0) after
 * `stores` of its stores to the window, holding the lock, as a process
 * killed at that point would.
 */
void ns_replay_crash_after(struct ns_replay *r, unsigned stores);

/* Unmap or free the window (a file stays); NULL is a no-op. */
void ns_replay_free(struct ns_replay *r);

#endif
