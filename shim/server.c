/*
 * Accept side: listen() on a port named in NOISESHIM_LISTEN turns on TCP
 * Fast Open and marks the socket; every connection accepted from it
 * becomes a Noise_IK responder with the server's static key.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "conn.h"
#include "fdtable.h"
#include "load_guard.h"
#include "log.h"
#include "real.h"
#include "replay_guard.h"
#include "sandbox.h"
#include "service.h"
#include "shim.h"
#include "stats.h"

const enum ns_role ns_shim_role = NS_ROLE_RESPONDER;

enum { TFO_QUEUE = 4096 };

/* One NOISESHIM_LISTEN entry: a port, and an address unless any will do. */
struct listen_spec {
	uint16_t port;
	int family;                    /* 0: any address */
	uint8_t addr[16];
};

static struct listen_spec specs[NS_LISTEN_MAX];
static int nspecs;
static char specs_error[NS_CONFIG_TEXT_MAX + 128];  /* why NOISESHIM_LISTEN cannot be applied */
static pthread_once_t specs_once = PTHREAD_ONCE_INIT;

/* An IPv4-mapped IPv6 address is the IPv4 address: fold it so that both compare equal. */
static void
fold_mapped(int *family, uint8_t addr[16])
{
	static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

	if (*family == AF_INET6 && memcmp(addr, mapped, sizeof(mapped)) == 0) {
		memmove(addr, addr + 12, 4);
		*family = AF_INET;
	}
}

static int
unspecified(int family, const uint8_t *addr)
{
	static const uint8_t zero[16];

	return memcmp(addr, zero, family == AF_INET ? 4 : 16) == 0;
}

static int
parse_spec(const char *text, struct listen_spec *spec)
{
	char host[64];
	const char *colon = strrchr(text, ':');
	char *end;
	unsigned long port;

	memset(spec, 0, sizeof(*spec));
	port = strtoul(colon != NULL ? colon + 1 : text, &end, 10);
	if ((colon != NULL ? colon[1] : text[0]) == '\0' || *end != '\0' || port == 0 ||
	    port > 65535)
		return -1;
	spec->port = (uint16_t)port;
	if (colon == NULL)
		return 0;
	if ((size_t)(colon - text) >= sizeof(host) || colon == text)
		return -1;
	memcpy(host, text, (size_t)(colon - text));
	host[colon - text] = '\0';
	if (host[0] == '[' && host[strlen(host) - 1] == ']') {
		memmove(host, host + 1, strlen(host) - 2);
		host[strlen(host) - 2] = '\0';
	}
	if (inet_pton(AF_INET, host, spec->addr) == 1)
		spec->family = AF_INET;
	else if (inet_pton(AF_INET6, host, spec->addr) == 1)
		spec->family = AF_INET6;
	else
		return -1;
	fold_mapped(&spec->family, spec->addr);
	/* 0.0.0.0:P and [::]:P name the port on every address, like P alone. */
	if (unspecified(spec->family, spec->addr))
		spec->family = 0;
	return 0;
}

static void
load_specs(void)
{
	char list[NS_CONFIG_TEXT_MAX], *save = NULL;

	ns_shim_init();
	if (ns_shim.config.listen_too_long) {
		snprintf(specs_error, sizeof(specs_error),
		         "NOISESHIM_LISTEN is longer than %d characters", NS_CONFIG_TEXT_MAX - 1);
		return;
	}
	snprintf(list, sizeof(list), "%s", ns_shim.config.listen);
	for (char *item = strtok_r(list, ", ", &save); item != NULL; item = strtok_r(NULL, ", ", &save)) {
		if (nspecs == NS_LISTEN_MAX) {
			snprintf(specs_error, sizeof(specs_error),
			         "NOISESHIM_LISTEN has more than %d entries", NS_LISTEN_MAX);
			return;
		}
		if (parse_spec(item, &specs[nspecs]) != 0) {
			snprintf(specs_error, sizeof(specs_error),
			         "NOISESHIM_LISTEN: \"%.200s\" is not a port or addr:port", item);
			return;
		}
		nspecs++;
	}
	/* The accept shim is loaded to wrap something: with nothing named, nothing may serve. */
	if (nspecs == 0)
		snprintf(specs_error, sizeof(specs_error),
		         "NOISESHIM_LISTEN names no port (set it to the ports to wrap, or "
		         "NOISESHIM_TRANSPORT=off to serve without the shim)");
}

enum naming { NOT_NAMED, NAMED, PORT_ONLY, WILDCARD_FOR_ADDRESS };

/* Whether the socket's bound address is one NOISESHIM_LISTEN names; *where gets it for logs. */
static enum naming
named(int fd, char *where, size_t cap)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	uint8_t addr[16];
	char host[INET6_ADDRSTRLEN] = "?";
	uint16_t port;
	int family, port_seen = 0;

	if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0)
		return NOT_NAMED;
	family = ss.ss_family;
	if (family == AF_INET) {
		struct sockaddr_in *in = (struct sockaddr_in *)&ss;
		port = ntohs(in->sin_port);
		memcpy(addr, &in->sin_addr, 4);
	} else if (family == AF_INET6) {
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
		port = ntohs(in6->sin6_port);
		memcpy(addr, &in6->sin6_addr, 16);
	} else {
		return NOT_NAMED;
	}
	inet_ntop(family, addr, host, sizeof(host));
	snprintf(where, cap, family == AF_INET6 ? "[%s]:%u" : "%s:%u", host, port);
	fold_mapped(&family, addr);
	for (int i = 0; i < nspecs; i++) {
		if (specs[i].port != port)
			continue;
		port_seen = 1;
		if (specs[i].family == 0 ||
		    (specs[i].family == family &&
		     memcmp(specs[i].addr, addr, family == AF_INET ? 4 : 16) == 0))
			return NAMED;
	}
	/* Bound to every address: it answers on the named one too, so it is wrapped. */
	if (port_seen && unspecified(family, addr))
		return WILDCARD_FOR_ADDRESS;
	return port_seen ? PORT_ONLY : NOT_NAMED;
}

static int
is_inet(int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);

	return getsockname(fd, (struct sockaddr *)&ss, &len) == 0 &&
	       (ss.ss_family == AF_INET || ss.ss_family == AF_INET6);
}

/* A server that cannot wrap must not serve: say why, once per listener. */
static int
refuse(int fd, const char *why)
{
	ns_log(NS_LOG_ERROR, "fd %d: listening refused: %s", fd, why);
	ns_fd_set_listener(fd, NS_LISTENER_REFUSED);
	errno = EACCES;
	return -1;
}

/*
 * Decide whether a listening socket is wrapped, and prepare it if so.  -1
 * with errno when it must not serve: the configuration cannot be applied,
 * or the port is named but cannot be served safely.
 */
static int
classify(int fd)
{
	const struct ns_load_guard_config load = { .rate_limit = ns_shim.config.rate_limit,
	                                           .rate_burst = ns_shim.config.rate_burst };
	char why[NS_CONFIG_TEXT_MAX + 256];
	int qlen = TFO_QUEUE;
	char where[64] = "?";
	enum naming naming;

	pthread_once(&specs_once, load_specs);
	if (specs_error[0] != '\0') {
		if (!is_inet(fd)) {
			ns_fd_set_listener(fd, NS_LISTENER_PLAIN);
			return 0;
		}
		return refuse(fd, specs_error);
	}
	naming = named(fd, where, sizeof(where));
	if (naming == WILDCARD_FOR_ADDRESS)
		ns_log(NS_LOG_WARN, "fd %d: %s is bound to every address and NOISESHIM_LISTEN names its "
		       "port with one of them: wrapped on every address", fd, where);
	else if (naming != NAMED) {
		if (naming == PORT_ONLY)
			ns_log(NS_LOG_ERROR, "fd %d: %s is not wrapped: NOISESHIM_LISTEN names its port "
			       "with another address", fd, where);
		else
			ns_log(NS_LOG_INFO, "fd %d: listening on %s in plaintext: NOISESHIM_LISTEN does "
			       "not name its port", fd, where);
		ns_fd_set_listener(fd, NS_LISTENER_PLAIN);
		return 0;
	}
	if (ns_shim.config.transport == NS_TRANSPORT_NOISE) {
		if (ns_shim_load_key() != 0) {
			char why_key[sizeof(ns_shim.key_error) + sizeof(where) + 2];
			snprintf(why_key, sizeof(why_key), "%s: %s", where, ns_shim.key_error);
			return refuse(fd, why_key);
		}
		if (ns_replay_guard_init(ns_shim.static_key.pub, why, sizeof(why)) != 0)
			return refuse(fd, why);
		if (ns_load_guard_init(&load, ns_log_line) != 0)
			return refuse(fd, "no memory for the load guard");
	}
	/*
	 * The counters file is made now, before a pre-fork server forks its
	 * workers, so that they all add to it; never inside a sandbox.
	 */
	if (!ns_sandboxed)
		ns_stats_attach();
	if (REAL(setsockopt)(fd, IPPROTO_TCP, TCP_FASTOPEN, &qlen, sizeof(qlen)) != 0)
		ns_log(NS_LOG_WARN, "fd %d: TCP Fast Open unavailable on this listener: %s", fd,
		       strerror(errno));
	ns_fd_set_listener(fd, ns_shim.config.transport == NS_TRANSPORT_NOISE ? NS_LISTENER_NOISE
	                                                                        : NS_LISTENER_PLAIN);
	ns_log(NS_LOG_INFO, "fd %d: listening on %s with %s, TCP Fast Open on", fd, where,
	       ns_shim.config.transport == NS_TRANSPORT_TCP ? "plain TCP (NOISESHIM_TRANSPORT=tcp)"
	       : ns_shim.config.accept == NS_ACCEPT_MIXED ? "Noise_IK and plaintext (mixed)"
	                                                  : "Noise_IK");
	return 0;
}

/* An accepted socket that came from elsewhere: whether it is on a port the shim wraps (or refuses). */
int
ns_server_would_wrap(int fd)
{
	char where[64];

	pthread_once(&specs_once, load_specs);
	if (specs_error[0] != '\0')
		return 1;
	/* Its port named with any address: the listener it came from may well have been wrapped. */
	return named(fd, where, sizeof(where)) != NOT_NAMED;
}

NS_EXPORT int
listen(int fd, int backlog)
{
	ns_shim_init();
	if (ns_shim.config.transport == NS_TRANSPORT_OFF)
		return REAL(listen)(fd, backlog);
	/* TCP_FASTOPEN must be set before the socket starts listening. */
	if (classify(fd) != 0)
		return -1;
	return REAL(listen)(fd, backlog);
}

/* "addr:port" of peer (NULL: unknown), for logs. */
static void
describe_peer(const struct sockaddr *peer, char *out, size_t cap)
{
	char host[INET6_ADDRSTRLEN] = "?";
	unsigned port = 0;

	if (peer != NULL && peer->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)peer;
		inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
		port = ntohs(in->sin_port);
	} else if (peer != NULL && peer->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)peer;
		inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
		port = ntohs(in6->sin6_port);
	}
	snprintf(out, cap, peer != NULL && peer->sa_family == AF_INET6 ? "[%s]:%u" : "%s:%u", host,
	         port);
}

/* The peer of fd: the address accept gave, else the kernel's answer now (NULL if none). */
static const struct sockaddr *
peer_of(int fd, const struct sockaddr *given, struct sockaddr_storage *ss)
{
	socklen_t len = sizeof(*ss);

	if (given != NULL)
		return given;
	return getpeername(fd, (struct sockaddr *)ss, &len) == 0 ? (struct sockaddr *)ss : NULL;
}

/* Make an accepted connection a responder; on failure it is closed, never served plain. */
static int
track_accepted(int fd, int nonblock, const struct sockaddr *given)
{
	struct sockaddr_storage ss;
	struct ns_conn *c;
	struct stat st;
	char peer[64];

	describe_peer(peer_of(fd, given, &ss), peer, sizeof(peer));
	if ((c = ns_conn_new(NS_SOCK_FRESH, fstat(fd, &st) == 0 ? (uint64_t)st.st_ino : 0)) == NULL)
		goto fail;
	c->nonblock = (uint8_t)nonblock;
	ns_conn_start_responder(c, ns_shim.config.accept == NS_ACCEPT_MIXED, peer);
	if (ns_fd_attach(fd, c)) {
		ns_conn_unref(c);
		goto fail;
	}
	/* A client that never completes its first flight is closed, even if the program never looks. */
	ns_service_at(fd, c, NS_JOB_DEADLINE, c->hs_start_ms + ns_shim.config.handshake_timeout_ms);
	ns_conn_unref(c);
	return fd;
fail:
	ns_log(NS_LOG_ERROR, "fd %d, %s: dropped: cannot track the connection", fd, peer);
	REAL(close)(fd);
	errno = ECONNABORTED;
	return -1;
}

/*
 * A connection accepted on listener: a responder if the listener is
 * wrapped.  peer: the address accept gave, or NULL.
 */
int
ns_server_accepted(int listener, int fd, int flags, const struct sockaddr *peer)
{
	enum ns_listener state = ns_fd_listener(listener);
	int fl;

	if (state == NS_LISTENER_PLAIN)
		return fd;
	if (state == NS_LISTENER_UNKNOWN) {
		/* A socket that was listening before this program started (inherited, activated). */
		ns_shim_init();
		if (ns_shim.config.transport == NS_TRANSPORT_OFF) {
			ns_fd_set_listener(listener, NS_LISTENER_PLAIN);
			return fd;
		}
		classify(listener);
		state = ns_fd_listener(listener);
		if (state == NS_LISTENER_PLAIN)
			return fd;
	}
	if (state == NS_LISTENER_REFUSED) {
		REAL(close)(fd);
		errno = EACCES;
		return -1;
	}
	fl = flags & SOCK_NONBLOCK ? O_NONBLOCK : REAL(fcntl)(fd, F_GETFL);
	return track_accepted(fd, fl >= 0 && (fl & O_NONBLOCK), peer);
}
