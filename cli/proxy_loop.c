/*
 * The proxy's event loop: the listener, the pairs' lifetimes, handshake
 * deadlines and first-flight timers.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <malloc.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "cipher.h"
#include "proxy.h"

enum { EVENTS_PER_WAIT = 256 };

struct proxy_loop {
	const struct proxy_config *cfg;
	int epfd;
	struct proxy_side listener;
	int out_of_fds;              /* accept ran out of fds; the queue not yet drained since */
	int fds_freed;               /* a pair closed since accept last ran out of fds */
	struct proxy_pair *pending;  /* pairs still in their handshake */
	struct proxy_pair *dead;     /* closed in this batch, freed after it */
};

/* Monotonic clock in microseconds. */
uint64_t proxy_now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

/* Format a socket address as "a.b.c.d:port" or "[v6]:port". */
void proxy_addr_text(const struct sockaddr *sa, char *out, size_t cap)
{
	char host[INET6_ADDRSTRLEN] = "?";

	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
		inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
		snprintf(out, cap, "%s:%u", host, ntohs(in->sin_port));
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
		inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
		snprintf(out, cap, "[%s]:%u", host, ntohs(in6->sin6_port));
	} else {
		snprintf(out, cap, "(address family %d)", sa->sa_family);
	}
}

static void pending_remove(struct proxy_pair *p)
{
	struct proxy_loop *l = p->loop;

	if (p->deadline_us == 0)
		return;
	if (p->prev != NULL)
		p->prev->next = p->next;
	else
		l->pending = p->next;
	if (p->next != NULL)
		p->next->prev = p->prev;
	p->prev = p->next = NULL;
	p->deadline_us = 0;
}

static void pending_add(struct proxy_pair *p, uint64_t deadline_us)
{
	struct proxy_loop *l = p->loop;

	p->prev = NULL;
	p->next = l->pending;
	if (l->pending != NULL)
		l->pending->prev = p;
	l->pending = p;
	p->deadline_us = deadline_us;
}

/* The proxy never forks or duplicates a socket, so closing it leaves the epoll set too. */
static void side_close(struct proxy_side *s)
{
	if (s->fd < 0)
		return;
	close(s->fd);
	s->fd = -1;
}

/*
 * A failed pair's sockets end with a reset, not a FIN: a peer that got
 * part of a stream must not take its end for the end of the data.
 */
static void side_reset(struct proxy_side *s)
{
	const struct linger now = { .l_onoff = 1, .l_linger = 0 };

	if (s->fd >= 0)
		setsockopt(s->fd, SOL_SOCKET, SO_LINGER, &now, sizeof now);
}

/* Close p's sockets now, free its memory after the current batch of events. */
static void pair_close(struct proxy_pair *p)
{
	struct proxy_loop *l = p->loop;

	if (p->dead)
		return;
	pending_remove(p);
	side_close(&p->plain);
	side_close(&p->noise);
	l->fds_freed = 1;
	p->dead = 1;
	p->next = l->dead;
	l->dead = p;
}

static void pair_free(struct proxy_pair *p)
{
	ns_handshake_free(p->hs);
	ns_cipher_free(p->tx);
	ns_cipher_free(p->rx);
	free(p->rx_body);
	free(p->opened.data);
	free(p->to_noise.data);
	free(p->to_plain.data);
	free(p->flight);
	free(p);
}

static void free_dead(struct proxy_loop *l)
{
	struct proxy_pair *p;

	while ((p = l->dead) != NULL) {
		l->dead = p->next;
		pair_free(p);
	}
}

/* Log "noiseshim proxy: PEER: why" and close the pair.  Always returns -1. */
int proxy_fail(struct proxy_pair *p, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "noiseshim proxy: %s: ", p->peer);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	if (!p->dead) {
		side_reset(&p->plain);
		side_reset(&p->noise);
	}
	pair_close(p);
	return -1;
}

static int watch(struct proxy_loop *l, struct proxy_side *s)
{
	struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
	                          .data.ptr = s };

	return epoll_ctl(l->epfd, EPOLL_CTL_ADD, s->fd, &ev);
}

/* A non-blocking TCP socket connecting to the target (TFO deferred if tfo).  0 or -1 logged. */
int proxy_connect_target(struct proxy_pair *p, int tfo)
{
	const struct proxy_config *cfg = p->cfg;
	struct proxy_side *s = cfg->role == PROXY_CLIENT ? &p->noise : &p->plain;
	int one = 1;

	s->fd = socket(cfg->target_addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (s->fd < 0)
		return proxy_fail(p, "target %s: socket: %s", cfg->target_text, strerror(errno));
	setsockopt(s->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	/* The SYN leaves with the first write, carrying it when a cookie is cached. */
	if (tfo && setsockopt(s->fd, IPPROTO_TCP, TCP_FASTOPEN_CONNECT, &one, sizeof one) < 0)
		return proxy_fail(p, "target %s: TCP_FASTOPEN_CONNECT: %s", cfg->target_text,
		                  strerror(errno));
	if (connect(s->fd, (const struct sockaddr *)&cfg->target_addr, cfg->target_len) < 0) {
		if (errno != EINPROGRESS)
			return proxy_fail(p, "target %s: connect: %s", cfg->target_text, strerror(errno));
		s->connecting = 1;
	}
	s->writable = !s->connecting;
	if (watch(p->loop, s) < 0)
		return proxy_fail(p, "target %s: epoll: %s", cfg->target_text, strerror(errno));
	return 0;
}

/* One step of whatever p is doing.  >0 progress, 0 none, -1 closed. */
static int pair_step(struct proxy_pair *p)
{
	if (p->phase == PHASE_RELAY)
		return proxy_relay_step(p);
	return p->cfg->role == PROXY_CLIENT ? proxy_client_step(p) : proxy_server_step(p);
}

/* Run p until it waits for an event; close it when both directions are shut. */
static void pair_drive(struct proxy_pair *p)
{
	int r;

	do
		r = pair_step(p);
	while (r > 0);
	if (r < 0 || p->dead)
		return;
	if (p->plain.shut && p->noise.shut) {
		pair_close(p);
		return;
	}
	if (p->phase == PHASE_RELAY && !p->plain.connecting && !p->noise.connecting)
		pending_remove(p);
}

static void accept_one(struct proxy_loop *l, int fd, const struct sockaddr_storage *peer)
{
	const struct proxy_config *cfg = l->cfg;
	struct proxy_pair *p = calloc(1, sizeof *p);
	socklen_t len = sizeof p->local_addr;

	if (p == NULL) {
		fprintf(stderr, "noiseshim proxy: out of memory for a connection\n");
		close(fd);
		return;
	}
	p->loop = l;
	p->cfg = cfg;
	p->peer_addr = *peer;
	proxy_addr_text((const struct sockaddr *)peer, p->peer, sizeof p->peer);
	/* Only the PROXY header names the address the client reached. */
	if (cfg->proxy_protocol)
		getsockname(fd, (struct sockaddr *)&p->local_addr, &len);
	p->plain = (struct proxy_side){ .fd = -1, .pair = p };
	p->noise = (struct proxy_side){ .fd = -1, .pair = p };
	if (cfg->role == PROXY_CLIENT) {
		p->plain.fd = fd;
		p->plain.name = "program";
		p->noise.name = "target";
	} else {
		p->noise.fd = fd;
		p->noise.name = "client";
		p->plain.name = "target";
		p->phase = PHASE_WAIT_MSG1;
	}
	pending_add(p, proxy_now_us() + (uint64_t)cfg->handshake_timeout_ms * 1000);
	if (watch(l, cfg->role == PROXY_CLIENT ? &p->plain : &p->noise) < 0) {
		proxy_fail(p, "epoll: %s", strerror(errno));
		return;
	}
	if (cfg->role == PROXY_CLIENT && proxy_client_start(p) < 0)
		return;
	pair_drive(p);
}

static void accept_all(struct proxy_loop *l)
{
	struct sockaddr_storage peer;
	socklen_t len;
	int fd;

	for (;;) {
		len = sizeof peer;
		fd = accept4(l->listener.fd, (struct sockaddr *)&peer, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			/*
			 * The listener is edge-triggered: connections left in the queue
			 * bring no new event, so accept runs again when a pair closes.
			 */
			if (errno == EMFILE || errno == ENFILE) {
				if (!l->out_of_fds)
					fprintf(stderr, "noiseshim proxy: accept: %s: new connections wait "
					        "until a connection closes\n", strerror(errno));
				l->out_of_fds = 1;
				l->fds_freed = 0;
			} else if (errno == EAGAIN || errno == EWOULDBLOCK) {
				if (l->out_of_fds)
					fprintf(stderr, "noiseshim proxy: accept: every waiting connection "
					        "is accepted again\n");
				l->out_of_fds = 0;
			} else {
				fprintf(stderr, "noiseshim proxy: accept: %s\n", strerror(errno));
			}
			return;
		}
		accept_one(l, fd, &peer);
	}
}

/* A socket error reported by epoll: a failed connect, a reset. */
static void side_error(struct proxy_side *s)
{
	struct proxy_pair *p = s->pair;
	int err = 0;
	socklen_t len = sizeof err;

	if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
		err = errno;
	if (err == 0)
		return;
	if (s->connecting)
		proxy_fail(p, "%s %s: connect: %s", s->name, p->cfg->target_text, strerror(err));
	else
		proxy_fail(p, "%s: %s", s->name, strerror(err));
}

static void side_event(struct proxy_side *s, uint32_t events)
{
	struct proxy_pair *p = s->pair;

	if (p->dead)
		return;
	if (events & EPOLLERR) {
		side_error(s);
		if (p->dead)
			return;
	}
	if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
		s->readable = 1;
	if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))
		s->hup = 1;
	if (events & (EPOLLOUT | EPOLLHUP | EPOLLERR)) {
		s->writable = 1;
		s->connecting = 0;
	}
	pair_drive(p);
}

/* Fire the deadlines and first-flight timers that are due; the wait until the next, in us. */
static int64_t run_timers(struct proxy_loop *l)
{
	uint64_t now = proxy_now_us(), next = UINT64_MAX, due;
	struct proxy_pair *p = l->pending, *following;

	for (; p != NULL; p = following) {
		following = p->next;
		if (p->deadline_us <= now) {
			proxy_fail(p, "handshake not done within %u ms", l->cfg->handshake_timeout_ms);
			continue;
		}
		if (p->flight_due_us != 0 && p->flight_due_us <= now) {
			if (proxy_client_timer(p) < 0)
				continue;
			pair_drive(p);
			if (p->dead || p->deadline_us == 0)
				continue;
		}
		due = p->flight_due_us != 0 && p->flight_due_us < p->deadline_us ? p->flight_due_us
		                                                                   : p->deadline_us;
		if (due < next)
			next = due;
	}
	free_dead(l);
	return next == UINT64_MAX ? -1 : (int64_t)(next - now);
}

/* Room for two sockets per connection pair: the default soft limit of 1024 is too few. */
static void raise_fd_limit(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

static int open_listener(struct proxy_loop *l)
{
	const struct proxy_config *cfg = l->cfg;
	struct sockaddr_storage bound;
	socklen_t len = sizeof bound;
	char text[PROXY_ADDR_TEXT_MAX];
	int one = 1, qlen = PROXY_LISTEN_BACKLOG, fd;

	proxy_addr_text((const struct sockaddr *)&cfg->listen_addr, text, sizeof text);
	fd = socket(cfg->listen_addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		fprintf(stderr, "noiseshim proxy: --listen %s: socket: %s\n", text, strerror(errno));
		return -1;
	}
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	/* Accepted sockets inherit it: small writes leave at once, with no call per connection. */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	/* A client's msg1 may arrive in its SYN (the kernel wants bit 2 of net.ipv4.tcp_fastopen). */
	if (cfg->role == PROXY_SERVER)
		setsockopt(fd, IPPROTO_TCP, TCP_FASTOPEN, &qlen, sizeof qlen);
	if (bind(fd, (const struct sockaddr *)&cfg->listen_addr, cfg->listen_len) < 0 ||
	    listen(fd, PROXY_LISTEN_BACKLOG) < 0 ||
	    getsockname(fd, (struct sockaddr *)&bound, &len) < 0) {
		fprintf(stderr, "noiseshim proxy: --listen %s: %s\n", text, strerror(errno));
		close(fd);
		return -1;
	}
	l->listener = (struct proxy_side){ .fd = fd, .name = "listener" };
	if (watch(l, &l->listener) < 0) {
		fprintf(stderr, "noiseshim proxy: epoll: %s\n", strerror(errno));
		return -1;
	}
	proxy_addr_text((const struct sockaddr *)&bound, text, sizeof text);
	printf("listening %s\n", text);
	fflush(stdout);
	return 0;
}

/* Run the proxy described by cfg until a fatal error; returns the exit code. */
int proxy_run(const struct proxy_config *cfg)
{
	struct proxy_loop l = { .cfg = cfg, .epfd = -1 };
	struct epoll_event events[EVENTS_PER_WAIT];
	struct timespec ts;
	int64_t wait_us;
	int n;

	raise_fd_limit();
	/*
	 * Each batch takes a buffer of about 128 KiB and gives it back once it
	 * has left: kept in the heap, not mapped and unmapped (or the heap's
	 * top trimmed) per batch, it costs no page faults or TLB flushes.
	 */
	mallopt(M_MMAP_THRESHOLD, PROXY_HEAP_KEEP);
	mallopt(M_TRIM_THRESHOLD, PROXY_HEAP_KEEP);
	if ((l.epfd = epoll_create1(EPOLL_CLOEXEC)) < 0) {
		fprintf(stderr, "noiseshim proxy: epoll: %s\n", strerror(errno));
		return 1;
	}
	if (open_listener(&l) < 0)
		return 1;
	for (;;) {
		wait_us = run_timers(&l);
		if (l.out_of_fds && l.fds_freed) {
			accept_all(&l);
			wait_us = run_timers(&l);
		}
		ts.tv_sec = wait_us / 1000000;
		ts.tv_nsec = (wait_us % 1000000) * 1000;
		n = epoll_pwait2(l.epfd, events, EVENTS_PER_WAIT, wait_us < 0 ? NULL : &ts, NULL);
		if (n < 0 && errno != EINTR) {
			fprintf(stderr, "noiseshim proxy: epoll_wait: %s\n", strerror(errno));
			return 1;
		}
		for (int i = 0; i < n; i++) {
			struct proxy_side *s = events[i].data.ptr;
			if (s == &l.listener)
				accept_all(&l);
			else
				side_event(s, events[i].events);
		}
		free_dead(&l);
	}
}
