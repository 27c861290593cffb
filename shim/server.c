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

#include "conn.h"
#include "fdtable.h"
#include "load_guard.h"
#include "log.h"
#include "real.h"
#include "replay_guard.h"
#include "shim.h"

const enum ns_role ns_shim_role = NS_ROLE_RESPONDER;

enum { MAX_LISTEN = 64, TFO_QUEUE = 4096 };

/* One NOISESHIM_LISTEN entry: a port, and an address unless any will do. */
struct listen_spec {
	uint16_t port;
	int family;                    /* 0: any address */
	uint8_t addr[16];
};

static struct listen_spec specs[MAX_LISTEN];
static int nspecs;
static pthread_once_t specs_once = PTHREAD_ONCE_INIT;

static int
parse_spec(const char *text, struct listen_spec *spec)
{
	char host[64];
	const char *colon = strrchr(text, ':');
	char *end;
	unsigned long port;

	memset(spec, 0, sizeof(*spec));
	port = strtoul(colon != NULL ? colon + 1 : text, &end, 10);
	if (*end != '\0' || port == 0 || port > 65535)
		return -1;
	spec->port = (uint16_t)port;
	if (colon == NULL)
		return 0;
	if ((size_t)(colon - text) >= sizeof(host))
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
	return 0;
}

static void
load_specs(void)
{
	char list[NS_CONFIG_TEXT_MAX], *save = NULL;

	ns_shim_init();
	snprintf(list, sizeof(list), "%s", ns_shim.config.listen);
	for (char *item = strtok_r(list, ", ", &save); item != NULL; item = strtok_r(NULL, ", ", &save)) {
		if (nspecs == MAX_LISTEN) {
			ns_log(NS_LOG_ERROR, "NOISESHIM_LISTEN: more than %d entries; the rest are ignored",
			       MAX_LISTEN);
			break;
		}
		if (parse_spec(item, &specs[nspecs]) == 0)
			nspecs++;
		else
			ns_log(NS_LOG_ERROR, "NOISESHIM_LISTEN: \"%s\" is not a port or addr:port", item);
	}
	if (nspecs == 0 && ns_shim.config.transport != NS_TRANSPORT_OFF)
		ns_log(NS_LOG_WARN, "NOISESHIM_LISTEN names no port: no listener is wrapped");
}

/* Whether the socket's bound address is one NOISESHIM_LISTEN names. */
static int
named(int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	const uint8_t *addr;
	uint16_t port;
	int family;

	if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0)
		return 0;
	family = ss.ss_family;
	if (family == AF_INET) {
		struct sockaddr_in *in = (struct sockaddr_in *)&ss;
		port = ntohs(in->sin_port);
		addr = (const uint8_t *)&in->sin_addr;
	} else if (family == AF_INET6) {
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
		port = ntohs(in6->sin6_port);
		addr = (const uint8_t *)&in6->sin6_addr;
	} else {
		return 0;
	}
	for (int i = 0; i < nspecs; i++) {
		if (specs[i].port != port)
			continue;
		if (specs[i].family == 0 ||
		    (specs[i].family == family &&
		     memcmp(specs[i].addr, addr, family == AF_INET ? 4 : 16) == 0))
			return 1;
	}
	return 0;
}

/*
 * Decide whether a listening socket is wrapped, and prepare it if so.  -1
 * with errno when it is named but cannot be served safely.
 */
static int
classify(int fd)
{
	char why[NS_CONFIG_TEXT_MAX + 256];
	int qlen = TFO_QUEUE;

	pthread_once(&specs_once, load_specs);
	if (!named(fd)) {
		ns_fd_set_listener(fd, NS_LISTENER_PLAIN);
		return 0;
	}
	if (ns_shim.config.transport == NS_TRANSPORT_NOISE) {
		if (!ns_shim.have_key) {
			ns_log(NS_LOG_ERROR, "fd %d: refusing to serve: %s", fd, ns_shim.key_error);
			errno = EACCES;
			return -1;
		}
		if (ns_replay_guard_init(ns_shim.static_key.pub, why, sizeof(why)) != 0) {
			ns_log(NS_LOG_ERROR, "fd %d: refusing to serve: %s", fd, why);
			errno = EACCES;
			return -1;
		}
		if (ns_load_guard_init() != 0) {
			ns_log(NS_LOG_ERROR, "fd %d: refusing to serve: no memory for the load guard", fd);
			errno = ENOMEM;
			return -1;
		}
	}
	if (REAL(setsockopt)(fd, IPPROTO_TCP, TCP_FASTOPEN, &qlen, sizeof(qlen)) != 0)
		ns_log(NS_LOG_WARN, "fd %d: TCP Fast Open unavailable on this listener: %s", fd,
		       strerror(errno));
	ns_fd_set_listener(fd, ns_shim.config.transport == NS_TRANSPORT_NOISE ? NS_LISTENER_NOISE
	                                                                        : NS_LISTENER_PLAIN);
	ns_log(NS_LOG_INFO, "fd %d: listening with %s, TCP Fast Open on", fd,
	       ns_shim.config.transport == NS_TRANSPORT_TCP ? "plain TCP (NOISESHIM_TRANSPORT=tcp)"
	       : ns_shim.config.accept == NS_ACCEPT_MIXED ? "Noise_IK and plaintext (mixed)"
	                                                  : "Noise_IK");
	return 0;
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

static void
describe_peer(int fd, char *out, size_t cap)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	char host[INET6_ADDRSTRLEN] = "?";
	unsigned port = 0;

	if (getpeername(fd, (struct sockaddr *)&ss, &len) == 0) {
		if (ss.ss_family == AF_INET) {
			struct sockaddr_in *in = (struct sockaddr_in *)&ss;
			inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
			port = ntohs(in->sin_port);
		} else if (ss.ss_family == AF_INET6) {
			struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
			inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
			port = ntohs(in6->sin6_port);
		}
	}
	snprintf(out, cap, ss.ss_family == AF_INET6 ? "[%s]:%u" : "%s:%u", host, port);
}

/* Make an accepted connection a responder; on failure it is closed, never served plain. */
static int
track_accepted(int fd, int nonblock)
{
	struct ns_conn *c;
	char peer[64];

	describe_peer(fd, peer, sizeof(peer));
	if ((c = ns_conn_new(NS_ROLE_RESPONDER, NULL, 0, peer, nonblock)) == NULL)
		goto fail;
	c->mixed = ns_shim.config.accept == NS_ACCEPT_MIXED;
	if (ns_fd_set(fd, c)) {
		ns_conn_unref(c);
		goto fail;
	}
	ns_conn_unref(c);
	return fd;
fail:
	ns_log(NS_LOG_ERROR, "fd %d, %s: dropped: cannot track the connection", fd, peer);
	REAL(close)(fd);
	errno = ECONNABORTED;
	return -1;
}

static int
accepted(int listener, int fd, int flags)
{
	enum ns_listener state = ns_fd_listener(listener);
	int fl;

	if (fd < 0 || state == NS_LISTENER_PLAIN)
		return fd;
	if (state == NS_LISTENER_UNKNOWN) {
		/* A socket that was listening before this program started (inherited, activated). */
		ns_shim_init();
		if (ns_shim.config.transport == NS_TRANSPORT_OFF) {
			ns_fd_set_listener(listener, NS_LISTENER_PLAIN);
			return fd;
		}
		if (classify(listener) != 0) {
			REAL(close)(fd);
			return -1;
		}
		if (ns_fd_listener(listener) != NS_LISTENER_NOISE)
			return fd;
	}
	fl = flags & SOCK_NONBLOCK ? O_NONBLOCK : REAL(fcntl)(fd, F_GETFL);
	return track_accepted(fd, fl >= 0 && (fl & O_NONBLOCK));
}

NS_EXPORT int
accept(int fd, struct sockaddr *addr, socklen_t *len)
{
	return accepted(fd, REAL(accept)(fd, addr, len), 0);
}

NS_EXPORT int
accept4(int fd, struct sockaddr *addr, socklen_t *len, int flags)
{
	return accepted(fd, REAL(accept4)(fd, addr, len, flags), flags);
}
