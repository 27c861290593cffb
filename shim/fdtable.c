/*
 * fd -> connection table.  Lookups of untracked fds take no lock; a
 * tracked fd's reference is taken under a read lock so that a concurrent
 * close cannot free the connection in between.
 */
#include "fdtable.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "conn.h"

enum { CHUNK_BITS = 10, CHUNK_SIZE = 1 << CHUNK_BITS, CHUNKS = 1024 };

struct chunk {
	struct ns_conn *slot[CHUNK_SIZE];
};

static struct chunk *chunks[CHUNKS];

/* Zero pages until touched: a server only touches the few listener fds it has. */
static uint8_t listener_state[CHUNKS * CHUNK_SIZE];
static pthread_rwlock_t table_lock = PTHREAD_RWLOCK_INITIALIZER;

static struct ns_conn *
peek(int fd)
{
	struct chunk *ch;

	if (fd < 0 || fd >= CHUNKS * CHUNK_SIZE)
		return NULL;
	ch = __atomic_load_n(&chunks[fd >> CHUNK_BITS], __ATOMIC_ACQUIRE);
	if (ch == NULL)
		return NULL;
	return __atomic_load_n(&ch->slot[fd & (CHUNK_SIZE - 1)], __ATOMIC_ACQUIRE);
}

/* The connection at fd with a reference taken, or NULL if fd is not tracked. */
struct ns_conn *
ns_fd_get(int fd)
{
	struct ns_conn *conn;

	if (__builtin_expect(peek(fd) == NULL, 1))
		return NULL;
	pthread_rwlock_rdlock(&table_lock);
	if ((conn = peek(fd)) != NULL)
		ns_conn_ref(conn);
	pthread_rwlock_unlock(&table_lock);
	return conn;
}

/* Track conn at fd (taking a reference), replacing nothing.  -1 if fd is out of range. */
int
ns_fd_set(int fd, struct ns_conn *conn)
{
	struct chunk *ch;
	int ret = -1;

	if (fd < 0 || fd >= CHUNKS * CHUNK_SIZE)
		return -1;
	pthread_rwlock_wrlock(&table_lock);
	if ((ch = chunks[fd >> CHUNK_BITS]) == NULL) {
		if ((ch = calloc(1, sizeof(*ch))) == NULL)
			goto out;
		__atomic_store_n(&chunks[fd >> CHUNK_BITS], ch, __ATOMIC_RELEASE);
	}
	ns_conn_ref(conn);
	__atomic_store_n(&ch->slot[fd & (CHUNK_SIZE - 1)], conn, __ATOMIC_RELEASE);
	ret = 0;
out:
	pthread_rwlock_unlock(&table_lock);
	return ret;
}

/* Stop tracking fd; returns the connection with the table's reference, or NULL. */
struct ns_conn *
ns_fd_take(int fd)
{
	struct ns_conn *conn;

	if (peek(fd) == NULL)
		return NULL;
	pthread_rwlock_wrlock(&table_lock);
	conn = peek(fd);
	if (conn != NULL)
		__atomic_store_n(&chunks[fd >> CHUNK_BITS]->slot[fd & (CHUNK_SIZE - 1)], NULL,
		                 __ATOMIC_RELEASE);
	pthread_rwlock_unlock(&table_lock);
	return conn;
}

/* The listener state of fd. */
enum ns_listener
ns_fd_listener(int fd)
{
	if (fd < 0 || fd >= CHUNKS * CHUNK_SIZE)
		return NS_LISTENER_PLAIN;
	return (enum ns_listener)__atomic_load_n(&listener_state[fd], __ATOMIC_ACQUIRE);
}

/* Record the listener state of fd (ignored for fds beyond the table). */
void
ns_fd_set_listener(int fd, enum ns_listener state)
{
	if (fd >= 0 && fd < CHUNKS * CHUNK_SIZE)
		__atomic_store_n(&listener_state[fd], (uint8_t)state, __ATOMIC_RELEASE);
}

/* The lowest fd >= from that is tracked or a known listener, or -1. */
int
ns_fd_next_in_use(int from)
{
	for (int fd = from < 0 ? 0 : from; fd < CHUNKS * CHUNK_SIZE; fd++) {
		/* Whole chunks that were never used hold nothing: skip them. */
		if ((fd & (CHUNK_SIZE - 1)) == 0 && chunks[fd >> CHUNK_BITS] == NULL &&
		    !memchr(&listener_state[fd], 1, CHUNK_SIZE) && !memchr(&listener_state[fd], 2, CHUNK_SIZE)) {
			fd += CHUNK_SIZE - 1;
			continue;
		}
		if (peek(fd) != NULL || listener_state[fd] != NS_LISTENER_UNKNOWN)
			return fd;
	}
	return -1;
}

/* Call fn for every tracked fd while no entry can change. */
void
ns_fd_foreach(void (*fn)(int fd, struct ns_conn *conn, void *ctx), void *ctx)
{
	for (int c = 0; c < CHUNKS; c++) {
		if (chunks[c] == NULL)
			continue;
		for (int i = 0; i < CHUNK_SIZE; i++)
			if (chunks[c]->slot[i] != NULL)
				fn(c * CHUNK_SIZE + i, chunks[c]->slot[i], ctx);
	}
}

/* Hold and release the table across fork. */
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
