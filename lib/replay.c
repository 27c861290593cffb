/*
 * Replay window: an exact set of recently seen ephemeral keys.
 *
 * Entries live in a ring in arrival order, so the oldest is always at the
 * head and expiry is a matter of advancing it.  An open-addressing index
 * (linear probing, at most half full, backward-shift deletion so there are
 * no tombstones) maps keys to ring positions.  Both are sized once, from
 * the capacity, so memory never grows under load.
 *
 * Only the first 16 bytes of each key are kept: ephemeral keys are
 * uniformly random, so two distinct ones sharing 128 bits is not a real
 * event, and a sender cannot target another sender's future key.  The
 * index hashes with a random per-window key because senders choose their
 * ephemeral keys and could otherwise aim them at one probe chain.
 *
 * The block holds offsets, never pointers, so that processes mapping it at
 * different addresses share it.  head and tail count entries ever expired
 * and ever added; each moves by one aligned store, so the ring is always
 * [head, tail) whatever moment a process dies at.  An insert is written
 * to a journal first and sealed; the entry itself is written only after.
 * The next holder of a lock whose owner died replays a sealed journal and
 * rebuilds the index from the ring, which the index only mirrors: a torn
 * entry or a torn probe chain can therefore never hide a key.
 */
#include "replay.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

enum {
	STORED_KEY_LEN = 16,
	BOOT_ID_LEN = 16,
	CHECKSUM_LEN = 16,
	FORMAT_VERSION = 1,
	BLOCK_ALIGN = 64,
	/* Opening races a replacement of the file at most this often. */
	OPEN_ATTEMPTS = 8,
};

/* "nsreplay" */
#define FILE_MAGIC UINT64_C(0x79616c7065727372)

/* A slot holds a ring position plus one; zero is empty, so fresh pages need no set-up. */
#define SLOT_EMPTY 0u

struct replay_entry {
	uint8_t key[STORED_KEY_LEN];
	uint64_t seen_ms;
};

/* An insert in progress: the entry and where it goes. */
struct replay_journal {
	uint64_t pos;     /* ring counter the entry is added at */
	uint8_t key[STORED_KEY_LEN];
	uint64_t seen_ms;
	uint32_t sealed;  /* written last: the fields above are whole */
};

/* Start of the block.  The fields up to checksum never change after set-up. */
struct replay_header {
	uint64_t magic;
	uint32_t version;
	uint32_t capacity;   /* ring size */
	uint32_t nslots;     /* index size: twice the capacity */
	uint32_t header_size;
	uint64_t block_size;
	uint8_t boot_id[BOOT_ID_LEN];
	uint8_t hash_key[crypto_shorthash_KEYBYTES];
	uint8_t checksum[CHECKSUM_LEN]; /* BLAKE2b of the fields above */

	pthread_mutex_t lock;
	uint64_t head;       /* entries ever expired */
	uint64_t tail;       /* entries ever added */
	struct replay_journal journal;
};

enum backing { BACKING_HEAP, BACKING_ANONYMOUS, BACKING_FILE };

/* A process's handle on a block. */
struct ns_replay {
	struct replay_header *h;
	struct replay_entry *ring;
	uint32_t *slots;
	uint64_t window_ms;
	enum backing backing;
	long crash_countdown; /* stores left before _exit(0); negative: never */
};

static size_t header_size(void)
{
	return (sizeof(struct replay_header) + BLOCK_ALIGN - 1) / BLOCK_ALIGN * BLOCK_ALIGN;
}

/* Bytes for the header, the ring and the index, laid out in one block. */
static size_t block_size(size_t capacity)
{
	return header_size() + capacity * sizeof(struct replay_entry) +
	       2 * capacity * sizeof(uint32_t);
}

static int capacity_ok(size_t capacity)
{
	return capacity > 0 && capacity <= NS_REPLAY_MAX_CAPACITY && sodium_init() >= 0;
}

/* The kernel's id of this boot, or zeros where it cannot be read. */
static void read_boot_id(uint8_t id[BOOT_ID_LEN])
{
	char text[64];
	size_t n = 0;
	FILE *f = fopen("/proc/sys/kernel/random/boot_id", "re");

	memset(id, 0, BOOT_ID_LEN);
	if (f == NULL)
		return;
	if (fgets(text, sizeof(text), f) != NULL)
		for (const char *p = text; *p != '\0' && n < 2 * BOOT_ID_LEN; p++) {
			int v = *p >= '0' && *p <= '9' ? *p - '0' : *p >= 'a' && *p <= 'f' ? *p - 'a' + 10 : -1;
			if (v < 0)
				continue;
			id[n / 2] = (uint8_t)(id[n / 2] << 4 | v);
			n++;
		}
	fclose(f);
}

static void header_checksum(const struct replay_header *h, uint8_t out[CHECKSUM_LEN])
{
	crypto_generichash(out, CHECKSUM_LEN, (const uint8_t *)h,
	                   offsetof(struct replay_header, checksum), NULL, 0);
}

static void init_lock(pthread_mutex_t *lock, int shared)
{
	pthread_mutexattr_t attr;

	pthread_mutexattr_init(&attr);
	if (shared) {
		pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
		pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
	}
	pthread_mutex_init(lock, &attr);
	pthread_mutexattr_destroy(&attr);
}

/* Write an empty window's header into a zeroed block of block_size(capacity) bytes. */
static void init_header(struct replay_header *h, size_t capacity, int shared)
{
	memset(h, 0, sizeof *h);
	h->magic = FILE_MAGIC;
	h->version = FORMAT_VERSION;
	h->capacity = (uint32_t)capacity;
	h->nslots = 2 * (uint32_t)capacity;
	h->header_size = (uint32_t)header_size();
	h->block_size = block_size(capacity);
	read_boot_id(h->boot_id);
	crypto_shorthash_keygen(h->hash_key);
	header_checksum(h, h->checksum);
	init_lock(&h->lock, shared);
}

static struct ns_replay *new_handle(void *block, uint64_t window_ms, enum backing backing)
{
	struct ns_replay *r = calloc(1, sizeof *r);

	if (r == NULL)
		return NULL;
	r->h = block;
	r->ring = (struct replay_entry *)((uint8_t *)block + header_size());
	r->slots = (uint32_t *)(r->ring + r->h->capacity);
	r->window_ms = window_ms;
	r->backing = backing;
	r->crash_countdown = -1;
	return r;
}

/* A window of window_ms milliseconds holding at most capacity entries; NULL on failure. */
struct ns_replay *ns_replay_new(uint64_t window_ms, size_t capacity)
{
	struct ns_replay *r;
	void *block;

	if (!capacity_ok(capacity) || (block = calloc(1, block_size(capacity))) == NULL)
		return NULL;
	init_header(block, capacity, 0);
	if ((r = new_handle(block, window_ms, BACKING_HEAP)) == NULL)
		free(block);
	return r;
}

/* The same, in memory shared with processes forked later. */
struct ns_replay *ns_replay_new_shared(uint64_t window_ms, size_t capacity)
{
	struct ns_replay *r;
	void *block;

	if (!capacity_ok(capacity))
		return NULL;
	/* Anonymous mappings start zeroed and are backed only as entries arrive. */
	block = mmap(NULL, block_size(capacity), PROT_READ | PROT_WRITE,
	             MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (block == MAP_FAILED)
		return NULL;
	init_header(block, capacity, 1);
	if ((r = new_handle(block, window_ms, BACKING_ANONYMOUS)) == NULL)
		munmap(block, block_size(capacity));
	return r;
}

/* What is wrong with the header of a mapped file, or NULL if nothing. */
static const char *header_problem(const struct replay_header *h, size_t capacity, char *detail)
{
	uint8_t sum[CHECKSUM_LEN];

	if (h->magic != FILE_MAGIC)
		return "not a replay window (bad magic)";
	if (h->version != FORMAT_VERSION) {
		snprintf(detail, NS_REPLAY_REASON_MAX, "format version %u, expected %u", h->version,
		         FORMAT_VERSION);
		return detail;
	}
	header_checksum(h, sum);
	if (sodium_memcmp(sum, h->checksum, CHECKSUM_LEN) != 0)
		return "header checksum mismatch";
	if (h->capacity != capacity) {
		snprintf(detail, NS_REPLAY_REASON_MAX, "capacity %u, expected %zu", h->capacity,
		         capacity);
		return detail;
	}
	if (h->nslots != 2 * h->capacity || h->header_size != header_size() ||
	    h->block_size != block_size(capacity))
		return "layout does not match its capacity";
	if (h->tail < h->head || h->tail - h->head > h->capacity ||
	    (h->journal.sealed != 0 && h->journal.sealed != 1))
		return "ring counters out of range";
	return NULL;
}

/* Size the file at fd for capacity, map it and write an empty window.  The block or NULL. */
static void *create_block(int fd, size_t capacity)
{
	size_t size = block_size(capacity);
	void *block;

	/*
	 * Shrink to nothing first: stale bytes must not survive into the new
	 * window.  Then reserve every block, so that a full file system fails
	 * here rather than with SIGBUS on a later store into a hole.
	 */
	if (ftruncate(fd, 0) != 0)
		return NULL;
	if ((errno = posix_fallocate(fd, 0, (off_t)size)) != 0)
		return NULL;
	block = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (block == MAP_FAILED)
		return NULL;
	init_header(block, capacity, 1);
	return block;
}

/*
 * Replace the file at path by an empty window, made under a temporary name
 * and renamed over it, so that no process ever maps a half-made one.
 */
static void *replace_file(const char *path, size_t capacity, char *reason)
{
	char tmp[4096];
	void *block = NULL;
	int fd;

	if ((size_t)snprintf(tmp, sizeof tmp, "%s.new.%ld", path, (long)getpid()) >= sizeof tmp) {
		snprintf(reason, NS_REPLAY_REASON_MAX, "%s: path too long", path);
		return NULL;
	}
	if ((fd = open(tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600)) < 0) {
		snprintf(reason, NS_REPLAY_REASON_MAX, "%s: cannot create: %s", tmp, strerror(errno));
		return NULL;
	}
	if ((block = create_block(fd, capacity)) == NULL)
		snprintf(reason, NS_REPLAY_REASON_MAX, "%s: cannot size or map: %s", tmp,
		         strerror(errno));
	else if (rename(tmp, path) != 0) {
		snprintf(reason, NS_REPLAY_REASON_MAX, "%s: cannot rename to %s: %s", tmp, path,
		         strerror(errno));
		munmap(block, block_size(capacity));
		block = NULL;
	}
	if (block == NULL)
		unlink(tmp);
	close(fd);
	return block;
}

/*
 * With the file locked (flock) and known to be the one at its path: map a
 * valid window, or make one.  The block or NULL with reason.
 */
static void *map_locked_file(int fd, const char *path, size_t capacity,
                             enum ns_replay_opened *opened, char *reason)
{
	size_t size = block_size(capacity);
	uint8_t boot_id[BOOT_ID_LEN];
	char detail[NS_REPLAY_REASON_MAX];
	const char *problem;
	struct replay_header *h;
	struct stat st;

	if (fstat(fd, &st) != 0) {
		snprintf(reason, NS_REPLAY_REASON_MAX, "%s: cannot stat: %s", path, strerror(errno));
		return NULL;
	}
	if (st.st_size == 0) {
		*opened = NS_REPLAY_OPENED_CREATED;
		if ((h = create_block(fd, capacity)) == NULL)
			snprintf(reason, NS_REPLAY_REASON_MAX, "%s: cannot size or map: %s", path,
			         strerror(errno));
		return h;
	}
	if ((size_t)st.st_size != size) {
		snprintf(reason, NS_REPLAY_REASON_MAX, "size %lld bytes, expected %zu for capacity %zu",
		         (long long)st.st_size, size, capacity);
		*opened = NS_REPLAY_OPENED_REBUILT;
		return replace_file(path, capacity, reason);
	}
	h = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (h == MAP_FAILED) {
		snprintf(reason, NS_REPLAY_REASON_MAX, "%s: cannot map: %s", path, strerror(errno));
		return NULL;
	}
	if ((problem = header_problem(h, capacity, detail)) != NULL) {
		snprintf(reason, NS_REPLAY_REASON_MAX, "%s", problem);
		munmap(h, size);
		*opened = NS_REPLAY_OPENED_REBUILT;
		return replace_file(path, capacity, reason);
	}
	read_boot_id(boot_id);
	if (memcmp(boot_id, h->boot_id, BOOT_ID_LEN) != 0) {
		/* Nobody of this boot has opened it yet (they all pass the flock): reset in place. */
		munmap(h, size);
		*opened = NS_REPLAY_OPENED_NEW_BOOT;
		if ((h = create_block(fd, capacity)) == NULL)
			snprintf(reason, NS_REPLAY_REASON_MAX, "%s: cannot size or map: %s", path,
			         strerror(errno));
		return h;
	}
	*opened = NS_REPLAY_OPENED_EXISTING;
	return h;
}

/* Whether fd is still the file at path (a rebuild by another process renames over it). */
static int still_at_path(int fd, const char *path)
{
	struct stat at_fd, at_path;

	return fstat(fd, &at_fd) == 0 && stat(path, &at_path) == 0 && at_fd.st_dev == at_path.st_dev &&
	       at_fd.st_ino == at_path.st_ino;
}

/*
 * The window kept in the file at path (created 0600 if missing), shared by
 * every process that opens it.  A file that is corrupt or was made with
 * another capacity or format is replaced by an empty one: *opened says so
 * and reason (NS_REPLAY_REASON_MAX bytes) says what was wrong.  NULL on
 * failure, with reason saying why.
 */
struct ns_replay *ns_replay_open(const char *path, uint64_t window_ms, size_t capacity,
                                 enum ns_replay_opened *opened, char *reason)
{
	struct ns_replay *r;
	void *block = NULL;

	reason[0] = '\0';
	if (!capacity_ok(capacity)) {
		snprintf(reason, NS_REPLAY_REASON_MAX, "capacity %zu out of range 1..%u", capacity,
		         NS_REPLAY_MAX_CAPACITY);
		return NULL;
	}
	for (int attempt = 0; attempt < OPEN_ATTEMPTS && block == NULL; attempt++) {
		int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);

		if (fd < 0) {
			snprintf(reason, NS_REPLAY_REASON_MAX, "%s: cannot open: %s", path,
			         strerror(errno));
			return NULL;
		}
		/* Openers take turns, so only one of them ever makes or rebuilds the window. */
		if (flock(fd, LOCK_EX) != 0) {
			snprintf(reason, NS_REPLAY_REASON_MAX, "%s: cannot lock: %s", path,
			         strerror(errno));
			close(fd);
			return NULL;
		}
		if (still_at_path(fd, path) &&
		    (block = map_locked_file(fd, path, capacity, opened, reason)) == NULL) {
			flock(fd, LOCK_UN);
			close(fd);
			return NULL;
		}
		/* The mapping keeps the open file alive, so the flock must be dropped by name. */
		flock(fd, LOCK_UN);
		close(fd);
	}
	if (block == NULL) {
		snprintf(reason, NS_REPLAY_REASON_MAX, "%s: replaced by others %d times while opening",
		         path, OPEN_ATTEMPTS);
		return NULL;
	}
	if ((r = new_handle(block, window_ms, BACKING_FILE)) == NULL) {
		munmap(block, block_size(capacity));
		snprintf(reason, NS_REPLAY_REASON_MAX, "%s: out of memory", path);
	}
	return r;
}

/* A point between two stores of an insert, where the crash test may stop the process. */
static void crash_point(struct ns_replay *r)
{
	/* The stores before this point must reach memory before a crash at it. */
	__atomic_signal_fence(__ATOMIC_SEQ_CST);
	if (r->crash_countdown == 0)
		_exit(0);
	if (r->crash_countdown > 0)
		r->crash_countdown--;
}

static uint32_t home_slot(const struct ns_replay *r, const uint8_t key[STORED_KEY_LEN])
{
	uint8_t digest[crypto_shorthash_BYTES];
	uint64_t h;

	crypto_shorthash(digest, key, STORED_KEY_LEN, r->h->hash_key);
	memcpy(&h, digest, sizeof h);
	/* Scale the top 32 bits onto [0, nslots) without a division. */
	return (uint32_t)(((h >> 32) * r->h->nslots) >> 32);
}

static uint32_t next_slot(const struct ns_replay *r, uint32_t i)
{
	return i + 1 == r->h->nslots ? 0 : i + 1;
}

static const struct replay_entry *slot_entry(const struct ns_replay *r, uint32_t i)
{
	return &r->ring[r->slots[i] - 1];
}

/* The slot holding key, or the empty slot where it would go; *found says which. */
static uint32_t find_slot(const struct ns_replay *r, const uint8_t key[STORED_KEY_LEN], int *found)
{
	uint32_t i = home_slot(r, key);

	while (r->slots[i] != SLOT_EMPTY) {
		if (memcmp(slot_entry(r, i)->key, key, STORED_KEY_LEN) == 0) {
			*found = 1;
			return i;
		}
		i = next_slot(r, i);
	}
	*found = 0;
	return i;
}

/* Whether home lies cyclically in (hole, j]: then the entry at j cannot move to hole. */
static int stays_put(uint32_t hole, uint32_t j, uint32_t home)
{
	if (hole <= j)
		return hole < home && home <= j;
	return hole < home || home <= j;
}

/* Empty slot hole and pull later entries of its probe chain back into the hole. */
static void delete_slot(struct ns_replay *r, uint32_t hole)
{
	uint32_t j = hole;

	for (;;) {
		j = next_slot(r, j);
		if (r->slots[j] == SLOT_EMPTY)
			break;
		if (stays_put(hole, j, home_slot(r, slot_entry(r, j)->key)))
			continue;
		r->slots[hole] = r->slots[j];
		hole = j;
	}
	r->slots[hole] = SLOT_EMPTY;
}

static uint32_t ring_index(const struct ns_replay *r, uint64_t counter)
{
	return (uint32_t)(counter % r->h->capacity);
}

static int is_expired(const struct ns_replay *r, uint64_t seen_ms, uint64_t now_ms)
{
	/* A clock that stepped back keeps entries rather than forgetting them early. */
	return now_ms >= seen_ms && now_ms - seen_ms >= r->window_ms;
}

/* Forget entries older than the window, oldest first. */
static void expire(struct ns_replay *r, uint64_t now_ms)
{
	struct replay_header *h = r->h;

	while (h->tail != h->head && is_expired(r, r->ring[ring_index(r, h->head)].seen_ms, now_ms)) {
		int found;
		uint32_t slot = find_slot(r, r->ring[ring_index(r, h->head)].key, &found);

		if (found)
			delete_slot(r, slot);
		__atomic_store_n(&h->head, h->head + 1, __ATOMIC_RELEASE);
	}
}

/* Put the entry at ring counter pos into the index, unless it is there already. */
static void index_entry(struct ns_replay *r, uint64_t pos)
{
	int found;
	uint32_t slot = find_slot(r, r->ring[ring_index(r, pos)].key, &found);

	if (!found)
		r->slots[slot] = ring_index(r, pos) + 1;
}

/*
 * The lock's last owner died holding it: finish its insert if the journal
 * was sealed (the entry may be torn), then rebuild the index from the ring.
 */
static void recover(struct ns_replay *r)
{
	struct replay_header *h = r->h;
	struct replay_journal *j = &h->journal;

	if (j->sealed && (j->pos == h->tail || j->pos + 1 == h->tail)) {
		struct replay_entry *e = &r->ring[ring_index(r, j->pos)];

		memcpy(e->key, j->key, STORED_KEY_LEN);
		e->seen_ms = j->seen_ms;
		h->tail = j->pos + 1;
	}
	j->sealed = 0;
	if (h->tail < h->head || h->tail - h->head > h->capacity)
		/* Not reachable by a crash; keep what the ring can hold rather than nothing. */
		h->head = h->tail > h->capacity ? h->tail - h->capacity : 0;
	memset(r->slots, 0, (size_t)h->nslots * sizeof *r->slots);
	for (uint64_t pos = h->head; pos != h->tail; pos++)
		index_entry(r, pos);
}

/* Add key as the newest entry, journaled so that a crash at any store keeps it. */
static void insert(struct ns_replay *r, uint32_t slot, const uint8_t key[STORED_KEY_LEN],
                   uint64_t now_ms)
{
	struct replay_header *h = r->h;
	struct replay_journal *j = &h->journal;
	struct replay_entry *e = &r->ring[ring_index(r, h->tail)];

	crash_point(r);
	j->pos = h->tail;
	crash_point(r);
	memcpy(j->key, key, STORED_KEY_LEN);
	crash_point(r);
	j->seen_ms = now_ms;
	crash_point(r);
	__atomic_store_n(&j->sealed, 1, __ATOMIC_RELEASE);
	crash_point(r);
	memcpy(e->key, key, STORED_KEY_LEN / 2);
	crash_point(r);
	memcpy(e->key + STORED_KEY_LEN / 2, key + STORED_KEY_LEN / 2, STORED_KEY_LEN / 2);
	crash_point(r);
	e->seen_ms = now_ms;
	crash_point(r);
	__atomic_store_n(&h->tail, h->tail + 1, __ATOMIC_RELEASE);
	crash_point(r);
	r->slots[slot] = ring_index(r, h->tail - 1) + 1;
	crash_point(r);
	__atomic_store_n(&j->sealed, 0, __ATOMIC_RELEASE);
	crash_point(r);
}

/* Check key at time now_ms (ns_replay_clock_ms) and remember it if fresh. */
enum ns_replay_verdict ns_replay_check(struct ns_replay *r, const uint8_t key[NS_KEY_LEN],
                                       uint64_t now_ms)
{
	enum ns_replay_verdict v = NS_REPLAY_FRESH;
	uint32_t slot;
	int found, rc;

	rc = pthread_mutex_lock(&r->h->lock);
	if (rc == EOWNERDEAD) {
		recover(r);
		pthread_mutex_consistent(&r->h->lock);
	} else if (rc != 0) {
		return NS_REPLAY_UNCHECKED;
	}
	expire(r, now_ms);
	slot = find_slot(r, key, &found);
	if (found)
		v = NS_REPLAY_REPEAT;
	else if (r->h->tail - r->h->head == r->h->capacity)
		v = NS_REPLAY_FULL;
	else
		insert(r, slot, key, now_ms);
	pthread_mutex_unlock(&r->h->lock);
	return v;
}

/* Milliseconds on CLOCK_BOOTTIME: the clock every window's time stamps use. */
uint64_t ns_replay_clock_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_BOOTTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Bytes of memory the window uses at its capacity. */
size_t ns_replay_memory(const struct ns_replay *r)
{
	return block_size(r->h->capacity);
}

/*
 * Crash testing: the next insert through this handle calls _exit(0) after
 * `stores` of its stores to the window, holding the lock, as a process
 * killed at that point would.
 */
void ns_replay_crash_after(struct ns_replay *r, unsigned stores)
{
	r->crash_countdown = stores;
}

/* Unmap or free the window (a file stays); NULL is a no-op. */
void ns_replay_free(struct ns_replay *r)
{
	size_t size;

	if (r == NULL)
		return;
	size = block_size(r->h->capacity);
	if (r->backing == BACKING_HEAP) {
		/* Nobody else sees a heap window: its hash key goes with it. */
		sodium_memzero(r->h->hash_key, sizeof r->h->hash_key);
		pthread_mutex_destroy(&r->h->lock);
		free(r->h);
	} else {
		/* Other processes may still use a shared block: leave its contents be. */
		munmap(r->h, size);
	}
	free(r);
}
