/*
 * Socket objects: creation in the arena, references, locks, failure, this
 * process's cipher contexts, and the calls that are neither a read nor a
 * write.
 */
#include "conn.h"

#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <sodium.h>

#include "log.h"
#include "nodeurl.h"
#include "poll.h"
#include "real.h"
#include "sandbox.h"
#include "shim.h"
#include "stats.h"

int ns_conn_unstarted;
int ns_conn_msg2_due;
int ns_conn_write_blocked;

/* Under tx_lock: the early buffer has room again (or the connection failed): writers may wake. */
void
ns_conn_unblock_writers(struct ns_conn *c, int fd)
{
	if (ns_conn_phase(c) != NS_PHASE_FAILED && c->early_len >= NS_ARENA_BUF)
		return;
	if (!__atomic_exchange_n(&c->write_blocked, 0, __ATOMIC_ACQ_REL))
		return;
	/* Another process may have blocked it: this count is only this process's hint. */
	if (__atomic_sub_fetch(&ns_conn_write_blocked, 1, __ATOMIC_ACQ_REL) < 0)
		__atomic_store_n(&ns_conn_write_blocked, 0, __ATOMIC_RELEASE);
	ns_poll_resume(fd);
}

/* Add to a counter; a sandboxed process may be killed for creating the counters file. */
static void
count(enum ns_stat field, int64_t n)
{
	if (!ns_sandboxed)
		ns_stats_add(field, n);
}

/*
 * This thread's cipher contexts.  OpenSSL state cannot live in shared
 * memory, so a process keys its own contexts from the raw keys in the slot,
 * and takes the nonce from the slot for every record.  A thread keeps a
 * few, keyed again for whichever connection needs one, least recently used
 * first: an idle connection holds no context, and a thread that serves more
 * connections at once than it keeps pays one key setup per switch.  The
 * contexts are the thread's alone, so using one takes no lock.
 */
enum { THREAD_CIPHERS = 8 };

struct cipher_entry {
	ns_off slot;                   /* the connection it is keyed for (0: none) */
	uint32_t gen;                  /* the slot's generation when it was keyed */
	uint8_t tx;                    /* its direction: 1 send, 0 receive */
	uint8_t suite;
	uint64_t used;                 /* when last used, on the thread's counter */
	struct ns_cipher *cipher;
};

struct thread_ciphers {
	uint64_t clock;
	struct cipher_entry entry[THREAD_CIPHERS];
};

static pthread_key_t ciphers_key;
static pthread_once_t ciphers_once = PTHREAD_ONCE_INIT;

static void
free_thread_ciphers(void *p)
{
	struct thread_ciphers *t = p;

	for (int i = 0; i < THREAD_CIPHERS; i++)
		ns_cipher_free(t->entry[i].cipher);
	free(t);
}

static void
make_ciphers_key(void)
{
	pthread_key_create(&ciphers_key, free_thread_ciphers);
}

static struct thread_ciphers *
thread_ciphers(int create)
{
	struct thread_ciphers *t;

	pthread_once(&ciphers_once, make_ciphers_key);
	if ((t = pthread_getspecific(ciphers_key)) == NULL && create &&
	    (t = calloc(1, sizeof(*t))) != NULL)
		pthread_setspecific(ciphers_key, t);
	return t;
}


/* This process's cipher for a direction of an open connection (keyed from the raw key on first use). */
struct ns_cipher *
ns_conn_cipher(struct ns_conn *c, int tx)
{
	struct thread_ciphers *t = thread_ciphers(1);
	ns_off slot = ns_arena_off(c);
	uint32_t gen = ns_arena_slot_gen(slot);
	const uint8_t *key = tx ? c->u.key.tx : c->u.key.rx;
	struct cipher_entry *e, *victim;

	if (t == NULL) {
		errno = ENOMEM;
		return NULL;
	}
	victim = &t->entry[0];
	for (int i = 0; i < THREAD_CIPHERS; i++) {
		e = &t->entry[i];
		if (e->cipher != NULL && e->slot == slot && e->gen == gen && e->tx == tx) {
			e->used = ++t->clock;
			return e->cipher;
		}
		if (e->used < victim->used)
			victim = e;
	}
	/* Unused entries come first (used 0), then the least recently used. */
	if (victim->cipher != NULL &&
	    (victim->suite != c->suite || ns_cipher_rekey(victim->cipher, key) != 0)) {
		ns_cipher_free(victim->cipher);
		victim->cipher = NULL;
	}
	if (victim->cipher == NULL &&
	    (victim->cipher = ns_cipher_new((enum ns_suite)c->suite, key)) == NULL) {
		victim->slot = 0;
		victim->used = 0;
		errno = ENOMEM;
		return NULL;
	}
	*victim = (struct cipher_entry){slot, gen, (uint8_t)tx, (uint8_t)c->suite, ++t->clock,
	                                victim->cipher};
	return victim->cipher;
}

/*
 * The connection is gone: this thread's contexts for it are keyed with
 * zeros, which overwrites its keys, and kept for the next connection.  Other
 * threads' are overwritten when next reused, or freed when the thread ends;
 * the slot's new generation keeps them from serving another connection.
 */
static void
forget_ciphers(ns_off slot, uint32_t gen)
{
	static const uint8_t no_key[NS_KEY_LEN];
	struct thread_ciphers *t = thread_ciphers(0);

	for (int i = 0; t != NULL && i < THREAD_CIPHERS; i++) {
		struct cipher_entry *e = &t->entry[i];
		if (e->cipher != NULL && e->slot == slot && e->gen == gen) {
			if (ns_cipher_rekey(e->cipher, no_key) != 0) {
				ns_cipher_free(e->cipher);
				e->cipher = NULL;
			}
			e->slot = 0;
			e->used = 0;
		}
	}
}

/* A new socket object of kind, with one reference (the caller's fd); NULL (errno) on failure. */
struct ns_conn *
ns_conn_new(enum ns_sock_kind kind, uint64_t ino)
{
	ns_off slot = ns_arena_slot_alloc();
	struct ns_conn *c;

	if (slot == 0)
		return NULL;
	c = ns_arena_ptr(slot);
	c->kind = kind;
	c->refs = 1;
	c->ino = ino;
	c->kernel_lowat = 1;
	c->user_lowat = 1;
	ns_shared_mutex_init(&c->rx_lock);
	ns_shared_mutex_init(&c->tx_lock);
	return c;
}

/* The object at a slot. */
struct ns_conn *
ns_conn_at(ns_off slot)
{
	return ns_arena_ptr(slot);
}

/* The wrapped connection of the socket with inode ino, with a reference taken; NULL if none. */
struct ns_conn *
ns_conn_find(uint64_t ino)
{
	for (ns_off slot = ns_arena_slot_next(0); slot != 0; slot = ns_arena_slot_next(slot)) {
		struct ns_conn *c = ns_conn_at(slot);
		int32_t refs = __atomic_load_n(&c->refs, __ATOMIC_ACQUIRE);

		if (c->ino != ino)
			continue;
		/* A reference only while another is held: an object at zero is being freed. */
		while (refs > 0 && !__atomic_compare_exchange_n(&c->refs, &refs, refs + 1, 0,
		                                                 __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
			;
		if (refs <= 0)
			continue;
		if (c->ino == ino && __atomic_load_n(&c->kind, __ATOMIC_ACQUIRE) == NS_SOCK_WRAPPED)
			return c;
		ns_conn_unref(c);
	}
	return NULL;
}

/* Take and drop a reference; the last drop wipes the object and frees its slot. */
void
ns_conn_ref(struct ns_conn *c)
{
	__atomic_add_fetch(&c->refs, 1, __ATOMIC_RELAXED);
}


/* Bytes of the receive buffer that held anything: a record's body, or plaintext held from earlier ones. */
static size_t
rx_written(const struct ns_conn *c)
{
	size_t record = c->reader.body_have + c->reader.ahead;

	return record > c->plain_end ? record : c->plain_end;
}

/* The last fd of a wrapped connection is gone: its byte counts, and why it ended. */
static void
report_end(const struct ns_conn *c)
{
	if (c->reached_open)
		count(NS_STAT_CONNECTIONS_OPEN, -1);
	if (!ns_log_enabled(NS_LOG_INFO))
		return;
	if (ns_conn_phase(c) == NS_PHASE_FAILED)
		ns_log(NS_LOG_INFO, "%s: connection ended: %" PRIu64 " bytes in, %" PRIu64
		       " bytes out, failed: %s", c->peer, c->bytes_in, c->bytes_out,
		       strerror(c->error ? c->error : EPIPE));
	else
		ns_log(NS_LOG_INFO, "%s: connection ended: %" PRIu64 " bytes in, %" PRIu64
		       " bytes out, closed", c->peer, c->bytes_in, c->bytes_out);
}

void
ns_conn_unref(struct ns_conn *c)
{
	ns_off slot;

	if (c == NULL || __atomic_sub_fetch(&c->refs, 1, __ATOMIC_ACQ_REL) != 0)
		return;
	slot = ns_arena_off(c);
	forget_ciphers(slot, ns_arena_slot_gen(slot));
	if (c->write_blocked && __atomic_sub_fetch(&ns_conn_write_blocked, 1, __ATOMIC_ACQ_REL) < 0)
		__atomic_store_n(&ns_conn_write_blocked, 0, __ATOMIC_RELEASE);
	if (c->kind == NS_SOCK_WRAPPED && ns_conn_phase(c) == NS_PHASE_START)
		__atomic_sub_fetch(&ns_conn_unstarted, 1, __ATOMIC_RELAXED);
	if (c->kind == NS_SOCK_WRAPPED && ns_conn_phase(c) == NS_PHASE_MSG2_DUE)
		__atomic_sub_fetch(&ns_conn_msg2_due, 1, __ATOMIC_RELAXED);
	if (c->kind == NS_SOCK_WRAPPED)
		report_end(c);
	/* Wipe only what was written: touching a whole buffer would make its pages resident. */
	ns_arena_buf_free(c->rx_buf, rx_written(c));
	if (c->tx_buf != 0)
		sodium_memzero((uint8_t *)ns_arena_ptr(c->tx_buf) + NS_ARENA_BUF_PLAIN,
		               c->tail_plain_len);
	ns_arena_buf_free(c->tx_buf, c->tail_len);
	ns_arena_buf_free(c->early_buf, c->early_len);
	pthread_mutex_destroy(&c->rx_lock);
	pthread_mutex_destroy(&c->tx_lock);
	sodium_memzero(c, sizeof(*c));
	ns_arena_slot_free(slot);
}

/* Make a FRESH object a wrapped initiator towards rs (under both locks).  0, or -1 (errno). */
int
ns_conn_start_initiator(struct ns_conn *c, enum ns_suite suite, const uint8_t rs[NS_KEY_LEN],
                        int zero_rtt, const char *peer)
{
	if (ns_handshake_init_initiator(&c->u.hs, suite, &ns_shim.static_key, rs, NULL, 0)) {
		errno = EINVAL;
		return -1;
	}
	/* The counters file exists before the program can fork, so its children add to it. */
	if (!ns_sandboxed)
		ns_stats_attach();
	c->role = NS_ROLE_INITIATOR;
	c->suite = suite;
	c->zero_rtt = (uint8_t)zero_rtt;
	c->hs_start_ms = ns_now_ms();
	snprintf(c->peer, sizeof(c->peer), "%s", peer);
	c->phase = NS_PHASE_START;
	__atomic_add_fetch(&ns_conn_unstarted, 1, __ATOMIC_RELAXED);
	__atomic_store_n(&c->kind, NS_SOCK_WRAPPED, __ATOMIC_RELEASE);
	return 0;
}

/* Make a FRESH object a responder waiting for msg1.  0, or -1 (errno). */
int
ns_conn_start_responder(struct ns_conn *c, int mixed, const char *peer)
{
	c->role = NS_ROLE_RESPONDER;
	c->mixed = (uint8_t)mixed;
	c->hs_start_ms = ns_now_ms();
	snprintf(c->peer, sizeof(c->peer), "%s", peer);
	c->phase = NS_PHASE_AWAIT_MSG1;
	__atomic_store_n(&c->kind, NS_SOCK_WRAPPED, __ATOMIC_RELEASE);
	return 0;
}

/* Move to phase and wake whoever waits on it. */
void
ns_conn_set_phase(struct ns_conn *c, enum ns_phase phase)
{
	if (phase == NS_PHASE_OPEN) {
		c->handshake_ms = (uint32_t)(ns_now_ms() - c->hs_start_ms);
		c->reached_open = 1;
		count(NS_STAT_HANDSHAKES_OK, 1);
		count(NS_STAT_CONNECTIONS_OPEN, 1);
	}
	__atomic_store_n(&c->phase, phase, __ATOMIC_RELEASE);
	ns_shared_wake(&c->phase);
}

/* Mark the connection failed with err, log why once, and shut the socket down. */
void
ns_conn_fail(struct ns_conn *c, int fd, int err, const char *why)
{
	uint32_t phase = ns_conn_phase(c);

	/* Only the caller that moves the phase to FAILED logs and sets the error. */
	do {
		if (phase == NS_PHASE_FAILED)
			return;
	} while (!__atomic_compare_exchange_n(&c->phase, &phase, NS_PHASE_FAILED, 0, __ATOMIC_ACQ_REL,
	                                      __ATOMIC_ACQUIRE));
	if (phase == NS_PHASE_START)
		__atomic_sub_fetch(&ns_conn_unstarted, 1, __ATOMIC_RELAXED);
	if (phase == NS_PHASE_MSG2_DUE)
		__atomic_sub_fetch(&ns_conn_msg2_due, 1, __ATOMIC_RELAXED);
	/* A client turned away by policy has its own counter. */
	if (phase != NS_PHASE_OPEN && !c->refused)
		count(NS_STAT_HANDSHAKES_FAILED, 1);
	c->error = err;
	/* A dial that fails is the program's problem; bad input to a server is routine. */
	ns_log(c->role == NS_ROLE_INITIATOR ? NS_LOG_ERROR : NS_LOG_WARN,
	       "fd %d, %s: connection closed: %s", fd, c->peer, why);
	/* Nothing more may cross in either direction, not even plaintext by mistake. */
	REAL(shutdown)(fd, SHUT_RDWR);
	ns_shared_wake(&c->phase);
	/* A writer waiting for room must wake to hear of it. */
	ns_conn_unblock_writers(c, fd);
}

/* Whether the SYN of fd's connection carried data: "yes", "no", or "unknown" (no TCP_INFO). */
static const char *
syn_data(int fd)
{
	struct tcp_info ti;
	socklen_t len = sizeof(ti);

	/* getsockopt is outside what a sandbox allows. */
	if (ns_sandboxed || getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) != 0 ||
	    len < offsetof(struct tcp_info, tcpi_options) + sizeof(ti.tcpi_options))
		return "unknown";
	return ti.tcpi_options & TCPI_OPT_SYN_DATA ? "yes" : "no";
}

/* The handshake completed: one line with what an operator asks of a new connection. */
static void
report_open(struct ns_conn *c, int fd)
{
	const char *syn = syn_data(fd);
	char client[100] = "";

	if (strcmp(syn, "yes") == 0)
		count(NS_STAT_TFO_SYN_DATA, 1);
	if (!ns_log_enabled(NS_LOG_INFO))
		return;
	if (c->role == NS_ROLE_RESPONDER) {
		char pub[56];
		if (ns_noise_pub_encode(c->peer_pub, pub, sizeof(pub)) == 0)
			snprintf(pub, sizeof(pub), "?");
		/* Which server key answered tells when no client uses an old key any more. */
		snprintf(client, sizeof(client), ", client %s, server key %u", pub, c->key_index);
	}
	ns_log(NS_LOG_INFO, "fd %d, %s: handshake complete: %s, %u ms, 0-RTT %u bytes, SYN data %s%s",
	       fd, c->peer, ns_suite_name((enum ns_suite)c->suite), c->handshake_ms,
	       c->zero_rtt_bytes, syn, client);
}

/*
 * The end of ns_conn_recv (rx, under rx_lock) or ns_conn_send (tx, under
 * tx_lock) with its result: count the plaintext bytes, and once the
 * handshake is complete report it (log line, counters) with this fd.
 */
void
ns_conn_account(struct ns_conn *c, int fd, ssize_t ret, int tx)
{
	enum ns_phase phase = ns_conn_phase(c);

	if (ret > 0 && tx) {
		c->bytes_out += (uint64_t)ret;
		count(NS_STAT_BYTES_OUT, ret);
	} else if (ret > 0) {
		c->bytes_in += (uint64_t)ret;
		count(NS_STAT_BYTES_IN, ret);
	}
	if (phase == NS_PHASE_OPEN && !__atomic_exchange_n(&c->open_reported, 1, __ATOMIC_ACQ_REL))
		report_open(c, fd);
}

static int
lock_side(struct ns_conn *c, pthread_mutex_t *m, int fd)
{
	if (ns_shared_lock(m)) {
		/* A process died in the middle of changing this state. */
		ns_conn_fail(c, fd, EPIPE, "a process died while using this connection");
	}
	if (ns_conn_phase(c) == NS_PHASE_FAILED) {
		ns_shared_unlock(m);
		errno = c->error ? c->error : EPIPE;
		return -1;
	}
	return 0;
}

/*
 * Take a connection's locks.  0, or -1 with errno when the connection has
 * failed meanwhile or a process died holding the lock (then it is failed).
 */
int
ns_conn_lock_rx(struct ns_conn *c, int fd)
{
	return lock_side(c, &c->rx_lock, fd);
}

int
ns_conn_lock_tx(struct ns_conn *c, int fd)
{
	return lock_side(c, &c->tx_lock, fd);
}

void
ns_conn_unlock_rx(struct ns_conn *c)
{
	ns_shared_unlock(&c->rx_lock);
}

void
ns_conn_unlock_tx(struct ns_conn *c)
{
	ns_shared_unlock(&c->tx_lock);
}

/* The receive buffer, lent on first need (NULL, errno ENOMEM), with the reader pointed at it. */
uint8_t *
ns_conn_rx_body(struct ns_conn *c)
{
	if (c->rx_buf == 0) {
		if ((c->rx_buf = ns_arena_buf_alloc()) == 0) {
			errno = ENOMEM;
			return NULL;
		}
	}
	c->reader.body = ns_arena_ptr(c->rx_buf);
	return c->reader.body;
}

/* Give the receive buffer back when it holds nothing. */
void
ns_conn_rx_idle(struct ns_conn *c)
{
	if (c->rx_buf == 0 || c->plain_len > 0 || c->reader.header_have > 0)
		return;
	ns_arena_buf_free(c->rx_buf, rx_written(c));
	c->rx_buf = 0;
	c->reader.body = NULL;
	c->plain_end = 0;
}

/* Milliseconds left before the handshake deadline (0 when it has passed). */
int
ns_conn_deadline_left(const struct ns_conn *c)
{
	uint64_t deadline = c->hs_start_ms + ns_shim.config.handshake_timeout_ms, now = ns_now_ms();

	return now >= deadline ? 0 : (int)(deadline - now);
}

/* Wait up to timeout_ms for fd to be writable; 1 if it is. */
static int
wait_writable(int fd, int timeout_ms)
{
	struct pollfd p = {.fd = fd, .events = POLLOUT};

	return REAL(poll)(&p, 1, timeout_ms) == 1 && (p.revents & POLLOUT);
}

/*
 * Push out what the program was told had left before shutdown or close,
 * waiting at most timeout_ms: a tail, and writes that waited for msg2
 * (which this call then reads itself).
 */
void
ns_conn_flush(struct ns_conn *c, int fd, int timeout_ms)
{
	uint64_t deadline = ns_now_ms() + (uint64_t)timeout_ms;

	if (ns_conn_lock_tx(c, fd))
		return;
	while (ns_conn_flush_pending(c, fd) != 0 && ns_conn_phase(c) != NS_PHASE_FAILED) {
		uint64_t now = ns_now_ms();

		if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
			break;
		if (now >= deadline)
			break;
		if (c->tail_len > c->tail_off) {
			wait_writable(fd, (int)(deadline - now));
		} else if (ns_conn_phase(c) == NS_PHASE_AWAIT_MSG2) {
			/* The writes wait for msg2: read it here, for no longer than this flush may take. */
			struct pollfd p = {.fd = fd, .events = POLLIN};
			if (pthread_mutex_trylock(&c->rx_lock) == 0) {
				ns_conn_read_handshake(c, fd);
				ns_conn_unlock_rx(c);
			}
			if (ns_conn_phase(c) == NS_PHASE_AWAIT_MSG2)
				REAL(poll)(&p, 1, (int)(deadline - now) < 50 ? (int)(deadline - now) : 50);
		} else {
			break;
		}
	}
	if (c->tail_len > c->tail_off || c->early_len > 0)
		ns_log(NS_LOG_WARN, "fd %d, %s: closed with %u bytes unsent", fd, c->peer,
		       c->tail_len - c->tail_off + c->early_len);
	ns_conn_unlock_tx(c);
}
