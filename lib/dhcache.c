/*
 * The static-static Diffie-Hellman table (see dhcache.h).
 */
#include "dhcache.h"

#include <pthread.h>
#include <string.h>

#include <sodium.h>

struct entry {
	uint8_t own[NS_KEY_LEN], peer[NS_KEY_LEN];  /* the pair of public keys */
	uint8_t shared[NS_KEY_LEN];
	uint64_t used;                               /* 0: empty */
};

static struct {
	pthread_mutex_t lock;                        /* guards everything below */
	uint64_t clock, hits;
	struct entry entry[NS_DH_CACHE_ENTRIES];
} table = {.lock = PTHREAD_MUTEX_INITIALIZER};

static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

/* A fork while another thread holds the lock must not leave the child a held lock. */
static void
lock_table(void)
{
	pthread_mutex_lock(&table.lock);
}

static void
unlock_table(void)
{
	pthread_mutex_unlock(&table.lock);
}

static void
register_atfork(void)
{
	pthread_atfork(lock_table, unlock_table, unlock_table);
}

/* The entry for the pair, or NULL.  Under the lock. */
static struct entry *
find(const uint8_t own[NS_KEY_LEN], const uint8_t peer[NS_KEY_LEN])
{
	for (int i = 0; i < NS_DH_CACHE_ENTRIES; i++) {
		struct entry *e = &table.entry[i];
		if (e->used != 0 && sodium_memcmp(e->peer, peer, NS_KEY_LEN) == 0 &&
		    sodium_memcmp(e->own, own, NS_KEY_LEN) == 0)
			return e;
	}
	return NULL;
}

/* An empty entry, or the least recently used one, wiped.  Under the lock. */
static struct entry *
victim(void)
{
	struct entry *v = &table.entry[0];

	for (int i = 1; i < NS_DH_CACHE_ENTRIES && v->used != 0; i++)
		if (table.entry[i].used < v->used)
			v = &table.entry[i];
	sodium_memzero(v, sizeof(*v));
	return v;
}

int
ns_dh_static(uint8_t out[NS_KEY_LEN], const uint8_t priv[NS_KEY_LEN],
             const uint8_t own_pub[NS_KEY_LEN], const uint8_t peer_pub[NS_KEY_LEN])
{
	struct entry *e;

	pthread_once(&atfork_once, register_atfork);
	lock_table();
	if ((e = find(own_pub, peer_pub)) != NULL) {
		e->used = ++table.clock;
		table.hits++;
		memcpy(out, e->shared, NS_KEY_LEN);
		unlock_table();
		return 0;
	}
	unlock_table();
	/* Outside the lock: the computation is the slow part, and threads may race to it harmlessly. */
	if (crypto_scalarmult(out, priv, peer_pub) != 0)
		return -1;
	lock_table();
	if (find(own_pub, peer_pub) == NULL) {
		e = victim();
		memcpy(e->own, own_pub, NS_KEY_LEN);
		memcpy(e->peer, peer_pub, NS_KEY_LEN);
		memcpy(e->shared, out, NS_KEY_LEN);
		e->used = ++table.clock;
	}
	unlock_table();
	return 0;
}

void
ns_dh_static_clear(void)
{
	lock_table();
	sodium_memzero(table.entry, sizeof(table.entry));
	unlock_table();
}

uint64_t
ns_dh_static_hits(void)
{
	uint64_t hits;

	lock_table();
	hits = table.hits;
	unlock_table();
	return hits;
}
