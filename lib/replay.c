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
 * Not locked: callers sharing a window serialise ns_replay_check.
 */
#include "replay.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <sodium.h>

enum {
	STORED_KEY_LEN = 16,
};

#define SLOT_EMPTY UINT32_MAX

struct replay_entry {
	uint8_t key[STORED_KEY_LEN];
	uint64_t seen_ms;
};

struct ns_replay {
	uint64_t window_ms;
	uint32_t capacity; /* ring size */
	uint32_t head;     /* ring position of the oldest entry */
	uint32_t count;    /* entries in the ring */
	uint32_t nslots;   /* index size: twice the capacity */
	uint8_t hash_key[crypto_shorthash_KEYBYTES];
	struct replay_entry *ring;
	uint32_t *slots; /* ring positions, or SLOT_EMPTY */
	int shared;      /* the block is a shared mapping */
};

/* Bytes for the window, its ring and its index, laid out in one block. */
static size_t block_size(size_t capacity)
{
	return sizeof(struct ns_replay) + capacity * sizeof(struct replay_entry) +
	       2 * capacity * sizeof(uint32_t);
}

/* Set up a window in block (block_size(capacity) bytes, zeroed). */
static struct ns_replay *init_block(void *block, uint64_t window_ms, size_t capacity, int shared)
{
	struct ns_replay *r = block;

	r->window_ms = window_ms;
	r->capacity = (uint32_t)capacity;
	r->nslots = 2 * (uint32_t)capacity;
	r->shared = shared;
	r->ring = (struct replay_entry *)(r + 1);
	r->slots = (uint32_t *)(r->ring + capacity);
	memset(r->slots, 0xff, (size_t)r->nslots * sizeof *r->slots);
	crypto_shorthash_keygen(r->hash_key);
	return r;
}

static int capacity_ok(size_t capacity)
{
	/* Ring positions and SLOT_EMPTY must fit a slot. */
	return capacity > 0 && capacity <= (SLOT_EMPTY - 1) / 2 && sodium_init() >= 0;
}

/* A window of window_ms milliseconds holding at most capacity entries; NULL on failure. */
struct ns_replay *ns_replay_new(uint64_t window_ms, size_t capacity)
{
	void *block;

	if (!capacity_ok(capacity) || (block = calloc(1, block_size(capacity))) == NULL)
		return NULL;
	return init_block(block, window_ms, capacity, 0);
}

/*
 * The same, in memory shared with processes forked later, so that workers
 * of a pre-fork server see each other's entries.  Callers must lock.
 */
struct ns_replay *ns_replay_new_shared(uint64_t window_ms, size_t capacity)
{
	void *block;

	if (!capacity_ok(capacity))
		return NULL;
	/* Anonymous mappings start zeroed and are backed only as entries arrive. */
	block = mmap(NULL, block_size(capacity), PROT_READ | PROT_WRITE,
	             MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (block == MAP_FAILED)
		return NULL;
	return init_block(block, window_ms, capacity, 1);
}

static uint32_t home_slot(const struct ns_replay *r, const uint8_t key[STORED_KEY_LEN])
{
	uint8_t digest[crypto_shorthash_BYTES];
	uint64_t h;

	crypto_shorthash(digest, key, STORED_KEY_LEN, r->hash_key);
	memcpy(&h, digest, sizeof h);
	/* Scale the top 32 bits onto [0, nslots) without a division. */
	return (uint32_t)(((h >> 32) * r->nslots) >> 32);
}

static uint32_t next_slot(const struct ns_replay *r, uint32_t i)
{
	return i + 1 == r->nslots ? 0 : i + 1;
}

/* The slot holding key, or the empty slot where it would go; *found says which. */
static uint32_t find_slot(const struct ns_replay *r, const uint8_t key[STORED_KEY_LEN], int *found)
{
	uint32_t i = home_slot(r, key);

	while (r->slots[i] != SLOT_EMPTY) {
		if (memcmp(r->ring[r->slots[i]].key, key, STORED_KEY_LEN) == 0) {
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
		if (stays_put(hole, j, home_slot(r, r->ring[r->slots[j]].key)))
			continue;
		r->slots[hole] = r->slots[j];
		hole = j;
	}
	r->slots[hole] = SLOT_EMPTY;
}

static int is_expired(const struct ns_replay *r, uint64_t seen_ms, uint64_t now_ms)
{
	/* A clock that stepped back keeps entries rather than forgetting them early. */
	return now_ms >= seen_ms && now_ms - seen_ms >= r->window_ms;
}

/* Forget entries older than the window, oldest first. */
static void expire(struct ns_replay *r, uint64_t now_ms)
{
	while (r->count > 0 && is_expired(r, r->ring[r->head].seen_ms, now_ms)) {
		int found;
		uint32_t slot = find_slot(r, r->ring[r->head].key, &found);

		delete_slot(r, slot);
		r->head = r->head + 1 == r->capacity ? 0 : r->head + 1;
		r->count--;
	}
}

/* Check key at time now_ms (monotonic) and remember it if fresh. */
enum ns_replay_verdict ns_replay_check(struct ns_replay *r, const uint8_t key[NS_KEY_LEN],
                                       uint64_t now_ms)
{
	uint32_t slot, pos;
	int found;

	expire(r, now_ms);
	slot = find_slot(r, key, &found);
	if (found)
		return NS_REPLAY_REPEAT;
	if (r->count == r->capacity)
		return NS_REPLAY_FULL;
	pos = (uint32_t)(((uint64_t)r->head + r->count) % r->capacity);
	memcpy(r->ring[pos].key, key, STORED_KEY_LEN);
	r->ring[pos].seen_ms = now_ms;
	r->slots[slot] = pos;
	r->count++;
	return NS_REPLAY_FRESH;
}

/* Bytes of memory the window uses at its capacity. */
size_t ns_replay_memory(const struct ns_replay *r)
{
	return block_size(r->capacity);
}

/* Free the window; NULL is a no-op. */
void ns_replay_free(struct ns_replay *r)
{
	if (r == NULL)
		return;
	sodium_memzero(r->hash_key, sizeof r->hash_key);
	if (r->shared)
		munmap(r, block_size(r->capacity));
	else
		free(r);
}
