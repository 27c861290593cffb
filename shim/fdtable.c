/*
 * fd table (see fdtable.h).  Lookups of unknown fds take no lock; an
 * object's reference is taken under a read lock so that a concurrent close
 * cannot drop the last reference in between.
 */
#include "fdtable.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "conn.h"

enum { CHUNK_BITS = 10, CHUNK_SIZE = 1 << CHUNK_BITS, CHUNKS = 1024, MAX_FD = CHUNKS * CHUNK_SIZE };

struct chunk {
	uint64_t slot[CHUNK_SIZE];
};

static struct chunk *chunks[CHUNKS];

/* Zero pages until touched: a server only touches the few listener fds it has. */
static uint8_t listener_state[MAX_FD];
static pthread_rwlock_t table_lock = PTHREAD_RWLOCK_INITIALIZER;

/*
 * One more than the highest fd ever given an entry or a listener state:
 * scans stop there instead of walking the whole table, which an event loop
 * would otherwise pay for in every wait.
 */
static int fd_top;

static void
raise_top(int fd)
{
	int top = __atomic_load_n(&fd_top, __ATOMIC_RELAXED);

	while (fd >= top && !__atomic_compare_exchange_n(&fd_top, &top, fd + 1, 1, __ATOMIC_RELEASE,
	                                                 __ATOMIC_RELAXED))
		;
}

static uint64_t
entry_for(const struct ns_conn *c)
{
	ns_off off = ns_arena_off(c);

	return (uint64_t)off | (uint64_t)ns_arena_slot_gen(off) << 32;
}

/* The object an entry refers to (entry must be neither 0 nor NS_FD_FRESH). */
struct ns_conn *
ns_fd_entry_conn(uint64_t entry)
{
	return ns_conn_at((ns_off)entry);
}

static uint64_t *
cell(int fd, int create)
{
	struct chunk *ch;

	if (fd < 0 || fd >= MAX_FD)
		return NULL;
	ch = __atomic_load_n(&chunks[fd >> CHUNK_BITS], __ATOMIC_ACQUIRE);
	if (ch == NULL && create) {
		if ((ch = calloc(1, sizeof(*ch))) == NULL)
			return NULL;
		__atomic_store_n(&chunks[fd >> CHUNK_BITS], ch, __ATOMIC_RELEASE);
	}
	return ch == NULL ? NULL : &ch->slot[fd & (CHUNK_SIZE - 1)];
}

/* The raw entry of fd: 0 (nothing), NS_FD_FRESH, or an object reference. */
uint64_t
ns_fd_entry(int fd)
{
	uint64_t *p = cell(fd, 0);

	return p == NULL ? 0 : __atomic_load_n(p, __ATOMIC_ACQUIRE);
}

/* An entry whose object was freed and perhaps reused: the generation tells. */
static int
stale(uint64_t entry)
{
	return ns_arena_slot_gen((ns_off)entry) != (uint32_t)(entry >> 32);
}

/* The object at fd with a reference taken, or NULL (fd is unknown or fresh). */
struct ns_conn *
ns_fd_get(int fd)
{
	struct ns_conn *c = NULL;
	uint64_t e;

	if (__builtin_expect((e = ns_fd_entry(fd)) <= NS_FD_FRESH, 1))
		return NULL;
	pthread_rwlock_rdlock(&table_lock);
	if ((e = ns_fd_entry(fd)) > NS_FD_FRESH && !stale(e)) {
		c = ns_fd_entry_conn(e);
		ns_conn_ref(c);
	}
	pthread_rwlock_unlock(&table_lock);
	return c;
}

/* The wrapped connection at fd with a reference taken, or NULL for any other fd. */
struct ns_conn *
ns_fd_wrapped(int fd)
{
	struct ns_conn *c = ns_fd_get(fd);

	if (c != NULL && __atomic_load_n(&c->kind, __ATOMIC_ACQUIRE) != NS_SOCK_WRAPPED) {
		ns_conn_unref(c);
		c = NULL;
	}
	return c;
}

/* Store e at fd under the write lock; the previous entry's object comes back with its reference. */
static struct ns_conn *
replace(int fd, uint64_t e, int *ok)
{
	struct ns_conn *old = NULL;
	uint64_t *p, prev;

	pthread_rwlock_wrlock(&table_lock);
	if ((p = cell(fd, e != 0)) == NULL) {
		*ok = e == 0;
		goto out;
	}
	if (e != 0)
		raise_top(fd);
	prev = *p;
	if (prev > NS_FD_FRESH && !stale(prev))
		old = ns_fd_entry_conn(prev);
	__atomic_store_n(p, e, __ATOMIC_RELEASE);
	*ok = 1;
out:
	pthread_rwlock_unlock(&table_lock);
	return old;
}

/* Remember fd as a fresh socket.  -1 if fd is beyond the table. */
int
ns_fd_set_fresh(int fd)
{
	int ok;

	ns_conn_unref(replace(fd, NS_FD_FRESH, &ok));
	return ok ? 0 : -1;
}

/* Point fd at c, taking a reference for the table.  -1 if fd is beyond the table. */
int
ns_fd_attach(int fd, struct ns_conn *c)
{
	int ok;

	ns_conn_ref(c);
	ns_conn_unref(replace(fd, entry_for(c), &ok));
	if (!ok)
		ns_conn_unref(c);
	return ok ? 0 : -1;
}

/*
 * fd is fresh and must be shared: make it an object (kind FRESH) in place.
 * The object, or NULL (errno) when no arena memory is left.
 */
struct ns_conn *
ns_fd_promote(int fd)
{
	struct ns_conn *c = ns_conn_new(NS_SOCK_FRESH, 0);

	if (c == NULL)
		return NULL;
	if (ns_fd_attach(fd, c) != 0) {
		ns_conn_unref(c);
		errno = EMFILE;
		return NULL;
	}
	ns_conn_unref(c);  /* the table's reference is the one that stays */
	return c;
}

/* Forget fd; returns the object with the table's reference, or NULL. */
struct ns_conn *
ns_fd_take(int fd)
{
	int ok;

	if (ns_fd_entry(fd) == 0)
		return NULL;
	return replace(fd, 0, &ok);
}

/* The listener state of fd. */
enum ns_listener
ns_fd_listener(int fd)
{
	if (fd < 0 || fd >= MAX_FD)
		return NS_LISTENER_PLAIN;
	return (enum ns_listener)__atomic_load_n(&listener_state[fd], __ATOMIC_ACQUIRE);
}

/* Record the listener state of fd (ignored for fds beyond the table). */
void
ns_fd_set_listener(int fd, enum ns_listener state)
{
	if (fd < 0 || fd >= MAX_FD)
		return;
	raise_top(fd);
	__atomic_store_n(&listener_state[fd], (uint8_t)state, __ATOMIC_RELEASE);
}

static int
chunk_has_listener(int first)
{
	for (int i = 0; i < CHUNK_SIZE; i++)
		if (listener_state[first + i] != NS_LISTENER_UNKNOWN)
			return 1;
	return 0;
}

/* The lowest fd >= from that has an entry or a listener state, or -1. */
int
ns_fd_next_in_use(int from)
{
	int top = __atomic_load_n(&fd_top, __ATOMIC_ACQUIRE);

	for (int fd = from < 0 ? 0 : from; fd < top; fd++) {
		/* Whole chunks that were never used hold nothing: skip them. */
		if ((fd & (CHUNK_SIZE - 1)) == 0 && chunks[fd >> CHUNK_BITS] == NULL &&
		    !chunk_has_listener(fd)) {
			fd += CHUNK_SIZE - 1;
			continue;
		}
		if (ns_fd_entry(fd) != 0 || listener_state[fd] != NS_LISTENER_UNKNOWN)
			return fd;
	}
	return -1;
}

/* Call fn for every fd with an entry, with the table locked against changes. */
void
ns_fd_foreach(void (*fn)(int fd, uint64_t entry, void *ctx), void *ctx)
{
	for (int c = 0; c < CHUNKS; c++) {
		if (chunks[c] == NULL)
			continue;
		for (int i = 0; i < CHUNK_SIZE; i++)
			if (chunks[c]->slot[i] != 0)
				fn(c * CHUNK_SIZE + i, chunks[c]->slot[i], ctx);
	}
}

/* Hold the table against changes (not against lookups) while acting on an fd it names. */
void
ns_fd_rdlock(void)
{
	pthread_rwlock_rdlock(&table_lock);
}

void
ns_fd_rdunlock(void)
{
	pthread_rwlock_unlock(&table_lock);
}

/* Hold and release the table while fork copies it. */
void
ns_fd_lock(void)
{
	pthread_rwlock_wrlock(&table_lock);
}

void
ns_fd_unlock(void)
{
	pthread_rwlock_unlock(&table_lock);
}

/* In a fork child: the lock belongs to a thread that did not come along; start it afresh. */
void
ns_fd_reset_lock(void)
{
	pthread_rwlock_init(&table_lock, NULL);
}
