/*
 * The connection arena: the state of every wrapped socket, in one memfd
 * mapped MAP_SHARED.  Processes forked from the creator share the mapping,
 * so they share each connection's Noise state exactly as they share the
 * kernel socket; an exec'd image maps the same memfd again (its number is
 * in the environment), at another address, so nothing in the arena points:
 * blocks refer to each other by offset.
 *
 * Two kinds of block, each in a region of its own: slots (NS_ARENA_SLOT
 * bytes, one per socket object) and buffers (NS_ARENA_BUF bytes, lent to a
 * connection only while a record is partial).  The file is sparse: a page
 * costs memory only once written, and pages that hold only free blocks are
 * given back to the kernel, so an idle connection costs its slot and a
 * closed one nothing.  What the allocator keeps (which blocks are free, and
 * each slot's generation) lives outside the blocks, in pages never given
 * back.  The arena lock (robust, process-shared) guards that bookkeeping;
 * nothing else.  Lock order: a connection's rx_lock, then its tx_lock,
 * then the arena lock.
 */
#ifndef NOISESHIM_ARENA_H
#define NOISESHIM_ARENA_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "wire.h"

enum {
	/* One socket object; a multiple of 64, so that slots start on cache lines. */
	NS_ARENA_SLOT = 832,
	/* A partly sent first flight and its plaintext: the largest thing a buffer holds. */
	NS_ARENA_BUF = 34 * 4096,
	NS_ARENA_BUF_PLAIN = NS_ARENA_BUF - NS_MAX_PLAINTEXT,
	/* Free buffers kept with their pages; more are given back to the kernel. */
	NS_ARENA_WARM_BUFS = 16,
	/* Likewise pages of free slots: connections that come and go reuse them without a fault. */
	NS_ARENA_WARM_SLOT_PAGES = 8,
	/* Socket objects one arena holds at once, across every process that shares it. */
	NS_ARENA_MAX_SLOTS = 1 << 20,
};

/* Address space reserved, and the file's size: offsets stay below 4 GiB. */
#define NS_ARENA_RESERVE ((size_t)2 << 30)

_Static_assert((int)NS_ARENA_BUF_PLAIN >= (int)NS_MAX_FIRST_FLIGHT, "a buffer holds a first flight and its plaintext");

/* Offset of a block in the arena; 0 is never a block. */
typedef uint32_t ns_off;

/* Map (creating on first need) this process's arena.  0, or -1 with errno. */
int ns_arena_open(void);

/* Whether an arena is mapped in this process. */
int ns_arena_ready(void);

/* The memfd, for an exec'd image to inherit; -1 if none. */
int ns_arena_fd(void);

/* Map the arena an exec'ing process handed over as fd.  0, or -1 with errno. */
int ns_arena_adopt(int fd);

/* Pointer for an offset, and back. */
void *ns_arena_ptr(ns_off off);
ns_off ns_arena_off(const void *p);

/*
 * A zeroed slot, or 0 (errno ENOMEM).  Each slot has a generation, kept
 * outside it, that changes when the slot is taken and when it is given
 * back, so that a stale reference to the slot is recognised.
 */
ns_off ns_arena_slot_alloc(void);

/* The first slot in use after `after` (0: from the start), or 0 when there is none. */
ns_off ns_arena_slot_next(ns_off after);

/* Whether off is where a slot begins (for offsets read from outside). */
int ns_arena_is_slot(ns_off off);

/* The slot's generation. */
uint32_t ns_arena_slot_gen(ns_off slot);

/* Give a slot back (the caller has wiped what it must). */
void ns_arena_slot_free(ns_off slot);

/* A buffer of NS_ARENA_BUF bytes (contents undefined), or 0 (errno ENOMEM). */
ns_off ns_arena_buf_alloc(void);

/* Give a buffer back; its contents are wiped first. */
void ns_arena_buf_free(ns_off buf, size_t used);

/*
 * Lock a process-shared robust mutex.  0; or 1 when its last owner died
 * holding it, in which case the lock is held and consistent again, but what
 * it guarded cannot be trusted.
 */
int ns_shared_lock(pthread_mutex_t *m);
void ns_shared_unlock(pthread_mutex_t *m);

/* Initialise a mutex for use across processes, robust. */
void ns_shared_mutex_init(pthread_mutex_t *m);

/* Wait until *word is no longer old, or timeout_ms passes (wakeups may be spurious). */
void ns_shared_wait(const uint32_t *word, uint32_t old, int timeout_ms);

/* Wake every process waiting on word (the caller has changed it). */
void ns_shared_wake(const uint32_t *word);

#endif
