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
	ARENA_VERSION = 1,
	HEADER_SIZE = 4096,
	SLOT_CHUNK = 64 * NS_ARENA_SLOT,
};

struct header {
	uint32_t magic, version;
	pthread_mutex_t lock;         /* guards everything below */
	uint64_t size;                /* bytes of the memfd in use */
	ns_off free_slots;            /* chains through the first word of each free block */
	ns_off free_bufs;
	uint32_t warm_bufs;           /* free buffers whose pages are still there */
	uint32_t slots_in_use;
};

/* A free block: its first word links to the next. */
struct free_block {
	ns_off next;
	uint32_t warm;                /* buffers: its pages are still there */
	uint32_t gen;                 /* slots: bumped on every allocation, kept while free */
};

static uint8_t *base;
static int arena_fd = -1;
static pthread_once_t open_once = PTHREAD_ONCE_INIT;
static int open_errno;

static struct header *
hdr(void)
{
	return (struct header *)base;
}

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

/* Wait until *word is no longer old, or timeout_ms passes (wakeups may be spurious). */
void
ns_shared_wait(const uint32_t *word, uint32_t old, int timeout_ms)
{
	struct timespec ts = {timeout_ms / 1000, (long)(timeout_ms % 1000) * 1000000L};

	/* Not FUTEX_PRIVATE: the word is in memory other processes map. */
	syscall(SYS_futex, word, FUTEX_WAIT, old, timeout_ms < 0 ? NULL : &ts, NULL, 0);
}

/* Wake every process waiting on word. */
void
ns_shared_wake(const uint32_t *word)
{
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
	if (ftruncate(fd, HEADER_SIZE) != 0 || map(fd) != 0) {
		REAL(close)(fd);
		goto fail;
	}
	h = hdr();
	ns_shared_mutex_init(&h->lock);
	h->size = HEADER_SIZE;
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
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size < HEADER_SIZE || map(fd) != 0)
		return -1;
	if (hdr()->magic != ARENA_MAGIC || hdr()->version != ARENA_VERSION ||
	    hdr()->size > (uint64_t)st.st_size) {
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

/* Grow the file by len bytes; the new range's offset, or 0.  Under the arena lock. */
static ns_off
grow(size_t len)
{
	struct header *h = hdr();
	uint64_t off = h->size;

	/* A sandbox may kill the process for ftruncate: then only free blocks can be had. */
	if (off + len > NS_ARENA_RESERVE || ns_sandboxed ||
	    ftruncate(arena_fd, (off_t)(off + len)) != 0) {
		errno = ENOMEM;
		return 0;
	}
	h->size = off + len;
	return (ns_off)off;
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

/* A zeroed slot, or 0 (errno ENOMEM). */
ns_off
ns_arena_slot_alloc(void)
{
	struct header *h;
	struct free_block *b;
	ns_off slot;

	if (ns_arena_open() != 0)
		return 0;
	h = hdr();
	lock_arena();
	if (h->free_slots == 0) {
		ns_off chunk = grow(SLOT_CHUNK);
		if (chunk == 0) {
			unlock_arena();
			return 0;
		}
		/* Chain the new slots, lowest first. */
		for (size_t i = SLOT_CHUNK / NS_ARENA_SLOT; i-- > 0;) {
			b = ns_arena_ptr(chunk + (ns_off)(i * NS_ARENA_SLOT));
			b->next = h->free_slots;
			h->free_slots = chunk + (ns_off)(i * NS_ARENA_SLOT);
		}
	}
	slot = h->free_slots;
	b = ns_arena_ptr(slot);
	h->free_slots = b->next;
	h->slots_in_use++;
	b->next = 0;
	__atomic_add_fetch(&b->gen, 1, __ATOMIC_RELEASE);
	unlock_arena();
	memset((uint8_t *)b + NS_ARENA_SLOT_RESERVED, 0, NS_ARENA_SLOT - NS_ARENA_SLOT_RESERVED);
	return slot;
}

/* The slot's generation. */
uint32_t
ns_arena_slot_gen(ns_off slot)
{
	return __atomic_load_n(&((struct free_block *)ns_arena_ptr(slot))->gen, __ATOMIC_ACQUIRE);
}

/* Give a slot back (the caller has wiped what it must). */
void
ns_arena_slot_free(ns_off slot)
{
	struct header *h = hdr();
	struct free_block *b = ns_arena_ptr(slot);

	lock_arena();
	/* A stale reference to the slot no longer matches, even before it is reused. */
	__atomic_add_fetch(&b->gen, 1, __ATOMIC_RELEASE);
	b->next = h->free_slots;
	h->free_slots = slot;
	h->slots_in_use--;
	unlock_arena();
}

/* A buffer of NS_ARENA_BUF bytes (contents undefined), or 0 (errno ENOMEM). */
ns_off
ns_arena_buf_alloc(void)
{
	struct header *h;
	ns_off buf;

	if (ns_arena_open() != 0)
		return 0;
	h = hdr();
	lock_arena();
	if ((buf = h->free_bufs) != 0) {
		struct free_block *b = ns_arena_ptr(buf);
		h->free_bufs = b->next;
		if (b->warm)
			h->warm_bufs--;
	} else {
		buf = grow(NS_ARENA_BUF);
	}
	unlock_arena();
	return buf;
}

/* Give a buffer back; its contents are wiped first. */
void
ns_arena_buf_free(ns_off buf, size_t used)
{
	struct header *h = hdr();
	struct free_block *b = ns_arena_ptr(buf);
	int warm;

	if (buf == 0)
		return;
	sodium_memzero(b, used < NS_ARENA_BUF ? used : NS_ARENA_BUF);
	lock_arena();
	warm = h->warm_bufs < NS_ARENA_WARM_BUFS || ns_sandboxed;
	if (warm)
		h->warm_bufs++;
	unlock_arena();
	/* Beyond a few, give the pages back: an idle connection must cost next to nothing. */
	if (!warm)
		fallocate(arena_fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, buf, NS_ARENA_BUF);
	lock_arena();
	b->next = h->free_bufs;
	b->warm = (uint32_t)warm;
	h->free_bufs = buf;
	unlock_arena();
}
