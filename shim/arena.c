/*
 * The connection arena (see arena.h): a memfd that only grows, mapped once
 * at its full reserve so that a block another process added is already in
 * everyone's mapping.
 */
#include "arena.h"
#include "ownfd.h"
#include "sandbox.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "real.h"

#include <sodium.h>

enum {
	ARENA_MAGIC = 0x4e534152,     /* "NSAR" */
	ARENA_VERSION = 3,
	PAGE = 4096,
	HEADER_SIZE = PAGE,
	BITS = 64,
};

/*
 * Layout, in offsets from the start of the file: the header; a generation
 * for every slot; a bit for every slot, set while it is in use; a bit for
 * every page of slots, set while it holds only free slots and is kept; the
 * slots; the buffers.  Only the slots and buffers are ever given back.
 */
#define SLOT_PAGES (((size_t)NS_ARENA_MAX_SLOTS * NS_ARENA_SLOT + PAGE - 1) / PAGE)
#define GENS_AT ((size_t)HEADER_SIZE)
#define SLOT_BITS_AT (GENS_AT + (size_t)NS_ARENA_MAX_SLOTS * sizeof(uint32_t))
#define WARM_PAGE_BITS_AT (SLOT_BITS_AT + (size_t)NS_ARENA_MAX_SLOTS / 8)
#define SLOTS_AT ((WARM_PAGE_BITS_AT + (SLOT_PAGES + BITS - 1) / BITS * 8 + PAGE - 1) / PAGE * PAGE)
#define BUFS_AT (SLOTS_AT + SLOT_PAGES * PAGE)
#define MAX_BUFS ((NS_ARENA_RESERVE - BUFS_AT) / NS_ARENA_BUF)
#define BUF_WORDS ((MAX_BUFS + BITS - 1) / BITS)

struct header {
	uint32_t magic, version;
	uint32_t waiters;             /* threads of any process in ns_shared_wait on a word here */
	pthread_mutex_t lock;         /* guards everything below, the slot bits and the generations */
	uint32_t slot_top;            /* slots above this were never handed out */
	uint32_t slot_hint;           /* no slot below this word of bits is free */
	uint32_t slots_in_use;
	uint32_t warm_slot_pages;     /* pages of free slots kept, their bits set */
	uint32_t buf_top;             /* likewise for buffers */
	uint32_t warm_bufs;           /* free buffers whose pages are still there */
	uint64_t buf_free[BUF_WORDS]; /* a bit per buffer below buf_top: free */
	uint64_t buf_warm[BUF_WORDS]; /* free, with its pages still there */
};

_Static_assert(sizeof(struct header) <= HEADER_SIZE, "the header fits its page");
_Static_assert(SLOTS_AT % PAGE == 0 && BUFS_AT % PAGE == 0, "regions start on pages");
_Static_assert(NS_ARENA_RESERVE <= (size_t)UINT32_MAX + 1, "offsets fit an ns_off");

static uint8_t *base;
static int arena_fd = -1;
static pthread_once_t open_once = PTHREAD_ONCE_INIT;
static int open_errno;


/* Initialise a mutex for use across processes, robust. */
void
ns_shared_mutex_init(pthread_mutex_t *m)
{
	pthread_mutexattr_t attr;

	pthread_mutexattr_init(&attr);
	pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
	pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
	pthread_mutex_init(m, &attr);
	pthread_mutexattr_destroy(&attr);
}

/*
 * Lock a process-shared robust mutex.  0; or 1 when its last owner died
 * holding it, in which case the lock is held and consistent again, but what
 * it guarded cannot be trusted.
 */
int
ns_shared_lock(pthread_mutex_t *m)
{
	if (pthread_mutex_lock(m) != EOWNERDEAD)
		return 0;
	pthread_mutex_consistent(m);
	return 1;
}

void
ns_shared_unlock(pthread_mutex_t *m)
{
	pthread_mutex_unlock(m);
}

/* Threads of this process waiting on a word outside the arena. */
static uint32_t local_waiters;

/*
 * The count of threads waiting on word, which a wake reads to skip the
 * system call when there are none: the arena's count for a word in it (its
 * waiters may be in any process), this process's otherwise.
 */
static uint32_t *
waiters_of(const uint32_t *word)
{
	const uint8_t *b = __atomic_load_n(&base, __ATOMIC_ACQUIRE), *p = (const uint8_t *)word;

	return b != NULL && p >= b && p < b + NS_ARENA_RESERVE ? &((struct header *)b)->waiters
	                                                       : &local_waiters;
}

/* Wait until *word is no longer old, or timeout_ms passes (wakeups may be spurious). */
void
ns_shared_wait(const uint32_t *word, uint32_t old, int timeout_ms)
{
	struct timespec ts = {timeout_ms / 1000, (long)(timeout_ms % 1000) * 1000000L};
	uint32_t *waiters = waiters_of(word);

	/*
	 * Counted before the kernel compares *word with old: a wake then
	 * either sees this waiter or changed the word first.
	 */
	__atomic_add_fetch(waiters, 1, __ATOMIC_SEQ_CST);
	/* Not FUTEX_PRIVATE: the word is in memory other processes map. */
	syscall(SYS_futex, word, FUTEX_WAIT, old, timeout_ms < 0 ? NULL : &ts, NULL, 0);
	__atomic_sub_fetch(waiters, 1, __ATOMIC_SEQ_CST);
}

/* Wake every process waiting on word (the caller has changed it). */
void
ns_shared_wake(const uint32_t *word)
{
	/* The caller's change to *word is ordered before the look at the waiters. */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	if (__atomic_load_n(waiters_of(word), __ATOMIC_RELAXED) == 0)
		return;
	syscall(SYS_futex, word, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
}


static int
map(int fd)
{
	void *p = mmap(NULL, NS_ARENA_RESERVE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE,
	               fd, 0);

	if (p == MAP_FAILED)
		return -1;
	base = p;
	arena_fd = fd;
	ns_own_fd_register(&arena_fd);
	return 0;
}

static struct header *
hdr(void)
{
	return (struct header *)base;
}

static uint32_t *
gens(void)
{
	return (uint32_t *)(base + GENS_AT);
}

static uint64_t *
slot_bits(void)
{
	return (uint64_t *)(base + SLOT_BITS_AT);
}

static uint64_t *
warm_page_bits(void)
{
	return (uint64_t *)(base + WARM_PAGE_BITS_AT);
}

static void
create(void)
{
	struct header *h;
	int fd;

	/* Adopted from the image before this one: nothing to create. */
	if (base != NULL)
		return;
	if ((fd = memfd_create("noiseshim", MFD_CLOEXEC)) < 0)
		goto fail;
	fd = ns_own_fd_high(fd);
	/* Its full size at once: sparse, so it costs nothing until written, and never grows later. */
	if (ftruncate(fd, (off_t)NS_ARENA_RESERVE) != 0 || map(fd) != 0) {
		REAL(close)(fd);
		goto fail;
	}
	h = hdr();
	ns_shared_mutex_init(&h->lock);
	h->version = ARENA_VERSION;
	__atomic_store_n(&h->magic, ARENA_MAGIC, __ATOMIC_RELEASE);
	return;
fail:
	open_errno = errno;
}

/* Map (creating on first need) this process's arena.  0, or -1 with errno. */
int
ns_arena_open(void)
{
	if (__atomic_load_n(&base, __ATOMIC_ACQUIRE) != NULL)
		return 0;
	pthread_once(&open_once, create);
	if (base == NULL) {
		errno = open_errno ? open_errno : ENOMEM;
		return -1;
	}
	return 0;
}

/* Whether an arena is mapped in this process. */
int
ns_arena_ready(void)
{
	return __atomic_load_n(&base, __ATOMIC_ACQUIRE) != NULL;
}

/* The memfd, for an exec'd image to inherit; -1 if none. */
int
ns_arena_fd(void)
{
	return arena_fd;
}

/* Map the arena an exec'ing process handed over as fd.  0, or -1 with errno. */
int
ns_arena_adopt(int fd)
{
	struct stat st;

	if (base != NULL)
		return 0;
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || (size_t)st.st_size != NS_ARENA_RESERVE ||
	    map(fd) != 0)
		return -1;
	if (hdr()->magic != ARENA_MAGIC || hdr()->version != ARENA_VERSION) {
		munmap(base, NS_ARENA_RESERVE);
		base = NULL;
		arena_fd = -1;
		errno = EINVAL;
		return -1;
	}
	/* Only this process uses the fd from now on; an exec must not leak it further. */
	REAL(fcntl)(fd, F_SETFD, FD_CLOEXEC);
	arena_fd = ns_own_fd_high(fd);
	/* Later calls to ns_arena_open() find it mapped. */
	pthread_once(&open_once, create);
	return 0;
}

/* Pointer for an offset, and back. */
void *
ns_arena_ptr(ns_off off)
{
	return off == 0 ? NULL : base + off;
}

ns_off
ns_arena_off(const void *p)
{
	return p == NULL ? 0 : (ns_off)((const uint8_t *)p - base);
}

/* Lock the arena; a holder that died left at worst a block lost, never a block twice. */
static void
lock_arena(void)
{
	ns_shared_lock(&hdr()->lock);
}

static void
unlock_arena(void)
{
	ns_shared_unlock(&hdr()->lock);
}

/* Give the pages of [off, off + len) back to the kernel; they read as zeros after. */
static void
release_pages(size_t off, size_t len)
{
	/* A sandbox may kill the process for the call: the pages stay. */
	if (!ns_sandboxed)
		fallocate(arena_fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len);
}

static int
bit_get(const uint64_t *bits, size_t i)
{
	return (int)(bits[i / BITS] >> (i % BITS) & 1);
}

static void
bit_set(uint64_t *bits, size_t i, int on)
{
	if (on)
		bits[i / BITS] |= (uint64_t)1 << (i % BITS);
	else
		bits[i / BITS] &= ~((uint64_t)1 << (i % BITS));
}

static ns_off
slot_at(size_t index)
{
	return (ns_off)(SLOTS_AT + index * NS_ARENA_SLOT);
}

/* Whether off is where a slot begins (for offsets read from outside). */
int
ns_arena_is_slot(ns_off off)
{
	return base != NULL && off >= SLOTS_AT && (off - SLOTS_AT) % NS_ARENA_SLOT == 0 &&
	       (off - SLOTS_AT) / NS_ARENA_SLOT < NS_ARENA_MAX_SLOTS;
}

static uint32_t *
gen_of(ns_off slot)
{
	return &gens()[(slot - SLOTS_AT) / NS_ARENA_SLOT];
}

/* The index, among the pages of slots, of the page at off. */
static size_t
slot_page(size_t off)
{
	return (off - SLOTS_AT) / PAGE;
}

/* The slot at slot is taken: the kept pages it lies on are in use again.  Under the lock. */
static void
reuse_warm_pages(ns_off slot)
{
	size_t first = slot_page(slot), last = slot_page((size_t)slot + NS_ARENA_SLOT - 1);

	for (size_t p = first; p <= last; p++)
		if (bit_get(warm_page_bits(), p)) {
			bit_set(warm_page_bits(), p, 0);
			hdr()->warm_slot_pages--;
		}
}

/*
 * The page at off holds only free slots now: keep it while few are kept,
 * else give it back, so that closed connections cost nothing.  Under the lock.
 */
static void
retire_slot_page(size_t off)
{
	struct header *h = hdr();

	if (h->warm_slot_pages < NS_ARENA_WARM_SLOT_PAGES) {
		bit_set(warm_page_bits(), slot_page(off), 1);
		h->warm_slot_pages++;
	} else {
		release_pages(off, PAGE);
	}
}

/* A zeroed slot, or 0 (errno ENOMEM). */
ns_off
ns_arena_slot_alloc(void)
{
	struct header *h;
	uint64_t *bits;
	size_t index = SIZE_MAX;

	if (ns_arena_open() != 0)
		return 0;
	h = hdr();
	bits = slot_bits();
	lock_arena();
	/* The lowest free slot, so that the slots in use stay on few pages. */
	for (size_t w = h->slot_hint; w < (h->slot_top + BITS - 1) / BITS; w++) {
		if (bits[w] != UINT64_MAX) {
			index = w * BITS + (size_t)__builtin_ctzll(~bits[w]);
			break;
		}
	}
	if (index >= h->slot_top) {
		if (h->slot_top == NS_ARENA_MAX_SLOTS) {
			unlock_arena();
			errno = ENOMEM;
			return 0;
		}
		index = h->slot_top++;
	}
	bit_set(bits, index, 1);
	reuse_warm_pages(slot_at(index));
	h->slot_hint = (uint32_t)(index / BITS);
	h->slots_in_use++;
	__atomic_add_fetch(&gens()[index], 1, __ATOMIC_RELEASE);
	unlock_arena();
	memset(ns_arena_ptr(slot_at(index)), 0, NS_ARENA_SLOT);
	return slot_at(index);
}

/* The first slot in use after `after` (0: from the start), or 0 when there is none. */
ns_off
ns_arena_slot_next(ns_off after)
{
	size_t index = after == 0 ? 0 : (after - SLOTS_AT) / NS_ARENA_SLOT + 1;
	ns_off found = 0;

	if (!ns_arena_ready())
		return 0;
	lock_arena();
	for (; index < hdr()->slot_top; index++)
		if (bit_get(slot_bits(), index)) {
			found = slot_at(index);
			break;
		}
	unlock_arena();
	return found;
}

/* The slot's generation. */
uint32_t
ns_arena_slot_gen(ns_off slot)
{
	return __atomic_load_n(gen_of(slot), __ATOMIC_ACQUIRE);
}

/* Whether every slot with a byte on the page at off (in the slot region) is free.  Under the lock. */
static int
page_of_free_slots(size_t off)
{
	size_t first = (off - SLOTS_AT) / NS_ARENA_SLOT;
	size_t last = (off + PAGE - 1 - SLOTS_AT) / NS_ARENA_SLOT;

	for (size_t i = first; i <= last && i < hdr()->slot_top; i++)
		if (bit_get(slot_bits(), i))
			return 0;
	return 1;
}

/* Give a slot back (the caller has wiped what it must). */
void
ns_arena_slot_free(ns_off slot)
{
	struct header *h = hdr();
	size_t index = (slot - SLOTS_AT) / NS_ARENA_SLOT;
	size_t first_page = slot / PAGE * PAGE, end = (size_t)slot + NS_ARENA_SLOT;

	lock_arena();
	/* A stale reference to the slot no longer matches, even before it is reused. */
	__atomic_add_fetch(gen_of(slot), 1, __ATOMIC_RELEASE);
	bit_set(slot_bits(), index, 0);
	if (index / BITS < h->slot_hint)
		h->slot_hint = (uint32_t)(index / BITS);
	h->slots_in_use--;
	for (size_t page = first_page; page < end; page += PAGE)
		if (page_of_free_slots(page))
			retire_slot_page(page);
	unlock_arena();
}

static ns_off
buf_at(size_t index)
{
	return (ns_off)(BUFS_AT + index * NS_ARENA_BUF);
}

/* The lowest buffer whose bit is set in bits, below top; SIZE_MAX if none. */
static size_t
first_set(const uint64_t *bits, size_t top)
{
	for (size_t w = 0; w < (top + BITS - 1) / BITS; w++)
		if (bits[w] != 0)
			return w * BITS + (size_t)__builtin_ctzll(bits[w]);
	return SIZE_MAX;
}

/* A buffer of NS_ARENA_BUF bytes (contents undefined), or 0 (errno ENOMEM). */
ns_off
ns_arena_buf_alloc(void)
{
	struct header *h;
	size_t index;

	if (ns_arena_open() != 0)
		return 0;
	h = hdr();
	lock_arena();
	/* One whose pages are still there, then any free one, then a new one. */
	if ((index = first_set(h->buf_warm, h->buf_top)) != SIZE_MAX) {
		bit_set(h->buf_warm, index, 0);
		h->warm_bufs--;
	} else if ((index = first_set(h->buf_free, h->buf_top)) == SIZE_MAX) {
		if (h->buf_top == MAX_BUFS) {
			unlock_arena();
			errno = ENOMEM;
			return 0;
		}
		index = h->buf_top++;
	}
	bit_set(h->buf_free, index, 0);
	unlock_arena();
	return buf_at(index);
}

/* Give a buffer back; its contents are wiped first. */
void
ns_arena_buf_free(ns_off buf, size_t used)
{
	struct header *h = hdr();
	size_t index;
	int warm;

	if (buf == 0)
		return;
	index = (buf - BUFS_AT) / NS_ARENA_BUF;
	sodium_memzero(ns_arena_ptr(buf), used < NS_ARENA_BUF ? used : NS_ARENA_BUF);
	lock_arena();
	/* In a sandbox the pages cannot go back: keep them all. */
	warm = h->warm_bufs < NS_ARENA_WARM_BUFS || ns_sandboxed;
	if (warm)
		h->warm_bufs++;
	else
		/* Beyond a few, give the pages back: an idle connection must cost next to nothing. */
		release_pages(buf, NS_ARENA_BUF);
	bit_set(h->buf_warm, index, warm);
	bit_set(h->buf_free, index, 1);
	unlock_arena();
}
