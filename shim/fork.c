/*
 * fork must never let two processes seal with the same keys and nonces.  At
 * fork, every connection this process may use gets a word in memory shared
 * with the child, set to "unclaimed"; the first process that then reads or
 * writes on the connection claims it, and the other gets EPROTO.  A
 * connection that never carried data (an accepted one still waiting for
 * msg1) works the same way: it belongs to whichever process uses it.
 */
#include "fork.h"

#include <pthread.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "conn.h"
#include "fdtable.h"
#include "log.h"
#include "shim.h"

struct ns_owner_block {
	int *words;
	size_t count;
	size_t bytes;
	int refs;                      /* connections of this process pointing into it */
};

struct prepare {
	struct ns_owner_block *block;
	size_t wanted;
	int me;
	unsigned mark;
};

static unsigned fork_generation;

static int
ours(const struct ns_conn *c, int me)
{
	return c->owner == NULL || __atomic_load_n(c->owner, __ATOMIC_ACQUIRE) == me;
}

/* First pass: count the connections (not fds) this process may hand over. */
static void
count_conn(int fd, struct ns_conn *c, void *ctx)
{
	struct prepare *p = ctx;

	if (c->fork_mark != p->mark && ours(c, p->me)) {
		c->fork_mark = p->mark;
		p->wanted++;
	}
}

/* Second pass: point each at a fresh unclaimed word. */
static void
assign_word(int fd, struct ns_conn *c, void *ctx)
{
	struct prepare *p = ctx;

	if (c->fork_mark != p->mark)
		return;
	c->fork_mark = p->mark + 1;
	ns_owner_release(c);
	c->owner_block = p->block;
	c->owner = &p->block->words[p->block->refs++];
	*c->owner = 0;
}

static void
before_fork(void)
{
	struct prepare p = {.me = (int)getpid()};
	size_t page = (size_t)sysconf(_SC_PAGESIZE);

	ns_fd_lock();
	fork_generation += 2;
	p.mark = fork_generation;
	ns_fd_foreach(count_conn, &p);
	if (p.wanted == 0)
		return;
	if ((p.block = calloc(1, sizeof(*p.block))) == NULL)
		goto fail;
	p.block->bytes = (p.wanted * sizeof(int) + page - 1) / page * page;
	p.block->words = mmap(NULL, p.block->bytes, PROT_READ | PROT_WRITE,
	                      MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (p.block->words == MAP_FAILED) {
		free(p.block);
		goto fail;
	}
	p.block->count = p.wanted;
	ns_fd_foreach(assign_word, &p);
	return;
fail:
	/* Without shared words nobody could ever use these connections safely in both. */
	ns_log(NS_LOG_ERROR, "fork: no memory to share connection ownership; "
	       "wrapped connections will fail in the child");
}

static void
after_fork_parent(void)
{
	ns_fd_unlock();
}

static void
reset_locks(int fd, struct ns_conn *c, void *ctx)
{
	/* Other threads did not come along: a lock they held would never be released. */
	pthread_mutex_init(&c->tx_lock, NULL);
	pthread_mutex_init(&c->rx_lock, NULL);
	pthread_mutex_init(&c->hs_lock, NULL);
	pthread_cond_init(&c->hs_done, NULL);
}

static void
after_fork_child(void)
{
	ns_fd_foreach(reset_locks, NULL);
	pthread_mutex_init(&ns_shim.cache_lock, NULL);
	ns_fd_reset_lock();
}

/* Register the fork handlers (once, from the constructor). */
void
ns_fork_init(void)
{
	pthread_atfork(before_fork, after_fork_parent, after_fork_child);
}

/* The connection no longer needs its ownership word (it is being freed or given a new one). */
void
ns_owner_release(struct ns_conn *c)
{
	struct ns_owner_block *b = c->owner_block;

	if (b == NULL)
		return;
	c->owner_block = NULL;
	c->owner = NULL;
	if (__atomic_sub_fetch(&b->refs, 1, __ATOMIC_ACQ_REL) == 0) {
		munmap(b->words, b->bytes);
		free(b);
	}
}
