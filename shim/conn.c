/*
 * Connection lifecycle: creation, references, failure, fork ownership,
 * and the calls that are neither a read nor a write.
 */
#include "conn.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <sodium.h>

#include "fork.h"
#include "log.h"
#include "real.h"
#include "shim.h"

int ns_conn_unstarted;

/* A new connection in role with the given handshake (taken over); NULL on failure. */
struct ns_conn *
ns_conn_new(enum ns_role role, struct ns_handshake *hs, enum ns_suite suite, const char *peer,
            int nonblock)
{
	struct ns_conn *c;

	if ((c = calloc(1, sizeof(*c))) == NULL)
		return NULL;
	c->refs = 1;  /* the caller's */
	c->role = role;
	c->phase = role == NS_ROLE_INITIATOR ? NS_PHASE_START : NS_PHASE_AWAIT_MSG1;
	c->hs = hs;
	c->suite = suite;
	c->nonblock = nonblock;
	c->kernel_lowat = 1;
	c->user_lowat = 1;
	snprintf(c->peer, sizeof(c->peer), "%s", peer);
	pthread_mutex_init(&c->tx_lock, NULL);
	pthread_mutex_init(&c->rx_lock, NULL);
	pthread_mutex_init(&c->hs_lock, NULL);
	pthread_cond_init(&c->hs_done, NULL);
	if (role == NS_ROLE_INITIATOR)
		__atomic_add_fetch(&ns_conn_unstarted, 1, __ATOMIC_RELAXED);
	return c;
}

/* Take and drop a reference; the last drop frees the connection. */
void
ns_conn_ref(struct ns_conn *c)
{
	__atomic_add_fetch(&c->refs, 1, __ATOMIC_RELAXED);
}

void
ns_conn_unref(struct ns_conn *c)
{
	if (c == NULL || __atomic_sub_fetch(&c->refs, 1, __ATOMIC_ACQ_REL) != 0)
		return;
	if (c->phase == NS_PHASE_START)
		__atomic_sub_fetch(&ns_conn_unstarted, 1, __ATOMIC_RELAXED);
	ns_handshake_free(c->hs);
	ns_cipher_free(c->tx);
	ns_cipher_free(c->rx);
	if (c->rx_body != NULL)
		sodium_memzero(c->rx_body, NS_MAX_FRAME_BODY);
	free(c->rx_body);
	free(c->tail);
	if (c->tail_plain != NULL)
		sodium_memzero(c->tail_plain, c->tail_plain_len);
	free(c->tail_plain);
	ns_owner_release(c);
	pthread_mutex_destroy(&c->tx_lock);
	pthread_mutex_destroy(&c->rx_lock);
	pthread_mutex_destroy(&c->hs_lock);
	pthread_cond_destroy(&c->hs_done);
	free(c);
}

/* Mark the connection failed with err, log why once, and shut the socket down. */
void
ns_conn_fail(struct ns_conn *c, int fd, int err, const char *why)
{
	pthread_mutex_lock(&c->hs_lock);
	if (c->phase != NS_PHASE_FAILED) {
		if (c->phase == NS_PHASE_START)
			__atomic_sub_fetch(&ns_conn_unstarted, 1, __ATOMIC_RELAXED);
		__atomic_store_n(&c->phase, NS_PHASE_FAILED, __ATOMIC_RELEASE);
		c->error = err;
		/* A dial that fails is the program's problem; bad input to a server is routine. */
		ns_log(c->role == NS_ROLE_INITIATOR ? NS_LOG_ERROR : NS_LOG_WARN,
		       "fd %d, %s: connection closed: %s", fd, c->peer, why);
		/* Nothing more may cross in either direction, not even plaintext by mistake. */
		REAL(shutdown)(fd, SHUT_RDWR);
	}
	pthread_cond_broadcast(&c->hs_done);
	pthread_mutex_unlock(&c->hs_lock);
}

/*
 * Claim the connection for this process if it was shared by fork.  0 if this
 * process may use it; -1 with errno set if another process owns it.
 */
int
ns_conn_claim(struct ns_conn *c, int fd)
{
	int expected = 0, me;

	if (__builtin_expect(c->owner == NULL, 1))
		return 0;
	me = (int)getpid();
	if (__atomic_load_n(c->owner, __ATOMIC_ACQUIRE) == me ||
	    __atomic_compare_exchange_n(c->owner, &expected, me, 0, __ATOMIC_ACQ_REL,
	                                __ATOMIC_ACQUIRE))
		return 0;
	ns_log(NS_LOG_WARN, "fd %d, %s: in use by process %d since fork; only one process may use it",
	       fd, c->peer, expected);
	errno = EPROTO;
	return -1;
}

/* Wait up to timeout_ms for fd to be writable; 1 if it is. */
static int
wait_writable(int fd, int timeout_ms)
{
	struct pollfd p = {.fd = fd, .events = POLLOUT};

	return REAL(poll)(&p, 1, timeout_ms) == 1 && (p.revents & POLLOUT);
}

/* Push out a pending tail before shutdown or close, waiting at most timeout_ms. */
void
ns_conn_flush(struct ns_conn *c, int fd, int timeout_ms)
{
	uint64_t deadline = ns_now_ms() + (uint64_t)timeout_ms;

	pthread_mutex_lock(&c->tx_lock);
	while (c->tail_len > c->tail_off && c->phase != NS_PHASE_FAILED) {
		ssize_t n = REAL(send)(fd, c->tail + c->tail_off, c->tail_len - c->tail_off,
		                      MSG_DONTWAIT | MSG_NOSIGNAL);
		if (n > 0) {
			c->tail_off += (size_t)n;
			continue;
		}
		if (n < 0 && errno != EAGAIN && errno != EINTR)
			break;
		uint64_t now = ns_now_ms();
		if (now >= deadline || !wait_writable(fd, (int)(deadline - now)))
			break;
	}
	if (c->tail_len > c->tail_off)
		ns_log(NS_LOG_WARN, "fd %d, %s: closed with %zu bytes of a record unsent", fd, c->peer,
		       c->tail_len - c->tail_off);
	pthread_mutex_unlock(&c->tx_lock);
}
