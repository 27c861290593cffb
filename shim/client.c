/*
 * Client side: connect() to a destination in the NodeURL cache turns on
 * TCP Fast Open and makes the socket a Noise_IK initiator.  Every other
 * connect() goes straight to libc.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cache.h"
#include "client.h"
#include "conn.h"
#include "fdtable.h"
#include "log.h"
#include "real.h"
#include "shim.h"

const enum ns_role ns_shim_role = NS_ROLE_INITIATOR;

static char cache_file[PATH_MAX];       /* the file in use, for log lines */

/* Problems in the cache are errors: a bad line's address is refused, or went out in plaintext. */
static void
report_cache_problem(void *ctx, enum ns_cache_level level, const char *file, unsigned line,
                     const char *reason)
{
	enum ns_log_level to = level == NS_CACHE_ERROR  ? NS_LOG_ERROR
	                       : level == NS_CACHE_WARN ? NS_LOG_WARN
	                                                : NS_LOG_DEBUG;

	if (line == 0)
		ns_log(to, "%s: %s", file, reason);
	else
		ns_log(to, "%s:%u: %s", file, line, reason);
}

/* The cache file: NOISESHIM_CACHE, else the default the CLI uses if it exists. */
static const char *
cache_path(char *buf, size_t cap)
{
	const char *home = getenv("HOME");

	if (ns_shim.config.cache[0] != '\0')
		return ns_shim.config.cache;
	if (home == NULL)
		return NULL;
	snprintf(buf, cap, "%s/.config/noiseshim/cache", home);
	return access(buf, F_OK) == 0 ? buf : NULL;
}

enum lookup_result { LOOKUP_MISS, LOOKUP_HIT, LOOKUP_BROKEN, LOOKUP_UNREADABLE };

/*
 * Find addr in the cache, opened on the first call (the only one that may
 * wait, to build a missing index); lock-free after that.  *entry gets a
 * copy on a hit; why gets FILE:LINE: reason for a broken entry.
 */
static enum lookup_result
lookup(const struct sockaddr *addr, socklen_t len, struct ns_nodeurl *entry, char *why,
       size_t cap)
{
	struct ns_cache *cache = __atomic_load_n(&ns_shim.cache, __ATOMIC_ACQUIRE);
	struct ns_cache_hit hit;
	char buf[PATH_MAX];
	const char *path = NULL;

	if (cache == NULL) {
		pthread_mutex_lock(&ns_shim.cache_lock);
		cache = ns_shim.cache;
		if (cache == NULL && (path = cache_path(buf, sizeof(buf))) != NULL) {
			snprintf(cache_file, sizeof(cache_file), "%s", path);
			cache = ns_cache_open(path, report_cache_problem, NULL);
			__atomic_store_n(&ns_shim.cache, cache, __ATOMIC_RELEASE);
		}
		pthread_mutex_unlock(&ns_shim.cache_lock);
		if (cache == NULL)
			return path == NULL ? LOOKUP_MISS : LOOKUP_UNREADABLE;
	}
	switch (ns_cache_lookup(cache, addr, len, &hit)) {
	case NS_CACHE_MISS:
		return LOOKUP_MISS;
	case NS_CACHE_HIT:
		*entry = hit.url;
		return LOOKUP_HIT;
	case NS_CACHE_BROKEN:
		snprintf(why, cap, "%s: %s", hit.where, hit.reason);
		return LOOKUP_BROKEN;
	case NS_CACHE_UNREADABLE:
		break;
	}
	/* A configured cache that never loaded: refuse rather than send plaintext. */
	return LOOKUP_UNREADABLE;
}

static void
describe(const struct sockaddr *addr, char *out, size_t cap)
{
	char host[INET6_ADDRSTRLEN] = "?";
	unsigned port = 0;

	if (addr->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)addr;
		inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
		port = ntohs(in->sin_port);
		snprintf(out, cap, "%s:%u", host, port);
	} else {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)addr;
		inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
		port = ntohs(in6->sin6_port);
		snprintf(out, cap, "[%s]:%u", host, port);
	}
}

static int
is_stream_socket(int fd)
{
	int type = 0;
	socklen_t len = sizeof(type);

	return REAL(getsockopt)(fd, SOL_SOCKET, SO_TYPE, &type, &len) == 0 && type == SOCK_STREAM;
}

static int
wants_tfo(const struct ns_nodeurl *entry)
{
	switch (ns_shim.config.tfo) {
	case NS_TFO_ON:
		return 1;
	case NS_TFO_OFF:
		return 0;
	default:
		return entry->has_features && (entry->features & NS_FEATURE_TCP_FASTOPEN);
	}
}

static void
enable_tfo(int fd, const char *peer)
{
	int one = 1;

	if (REAL(setsockopt)(fd, IPPROTO_TCP, TCP_FASTOPEN_CONNECT, &one, sizeof(one)) != 0)
		ns_log(NS_LOG_WARN, "fd %d, %s: TCP Fast Open unavailable (%s); connecting without it",
		       fd, peer, strerror(errno));
}

/* Start tracking fd as an initiator towards entry.  0, or -1 with errno set. */
static int
track(int fd, const struct ns_nodeurl *entry, const char *peer)
{
	enum ns_suite suite = entry->noise_proto ? ns_suite_from_proto(entry->noise_proto)
	                                         : NS_SUITE_CHACHAPOLY;
	struct ns_handshake *hs;
	struct ns_conn *c;
	int flags;

	if (!ns_shim.have_key) {
		ns_log(NS_LOG_ERROR, "fd %d, %s: refused: no usable static key (%s)", fd, peer,
		       ns_shim.key_error);
		errno = EACCES;
		return -1;
	}
	if ((hs = ns_handshake_new_initiator(suite, &ns_shim.static_key, entry->noise_pub, NULL,
	                                     0)) == NULL)
		goto nomem;
	flags = REAL(fcntl)(fd, F_GETFL);
	if ((c = ns_conn_new(NS_ROLE_INITIATOR, hs, suite, peer, flags >= 0 && (flags & O_NONBLOCK)))
	    == NULL) {
		ns_handshake_free(hs);
		goto nomem;
	}
	c->zero_rtt = ns_shim.config.zero_rtt;
	if (REAL(setsockopt)(fd, SOL_SOCKET, SO_RCVLOWAT, &(int){NS_MSG2_LOWAT}, sizeof(int)) == 0)
		c->kernel_lowat = NS_MSG2_LOWAT;
	if (ns_fd_set(fd, c)) {
		ns_conn_unref(c);
		ns_log(NS_LOG_ERROR, "fd %d, %s: refused: fd beyond what the shim can track", fd, peer);
		errno = EMFILE;
		return -1;
	}
	ns_conn_unref(c);  /* the table holds it now */
	return 0;
nomem:
	errno = ENOMEM;
	return -1;
}

/* Drop tracking after a connect() that failed for good. */
static void
untrack(int fd)
{
	ns_conn_unref(ns_fd_take(fd));
}

/*
 * connect() for the client shim: wrap a cached destination, refuse one we
 * cannot wrap, pass anything else to libc.
 */
int
ns_client_connect(int fd, const struct sockaddr *addr, socklen_t len)
{
	struct ns_conn *existing;
	struct ns_nodeurl entry;
	char peer[64], why[NS_CACHE_WHERE_MAX + NS_CACHE_REASON_MAX + 2];
	int ret;

	if (addr == NULL || (addr->sa_family != AF_INET && addr->sa_family != AF_INET6))
		return REAL(connect)(fd, addr, len);
	ns_shim_init();
	if (ns_shim.config.transport == NS_TRANSPORT_OFF)
		return REAL(connect)(fd, addr, len);
	/* A second connect() on a tracked fd asks how the first is going. */
	if ((existing = ns_fd_get(fd)) != NULL) {
		ns_conn_unref(existing);
		return REAL(connect)(fd, addr, len);
	}
	switch (lookup(addr, len, &entry, why, sizeof(why))) {
	case LOOKUP_MISS:
		return REAL(connect)(fd, addr, len);
	case LOOKUP_BROKEN:
		if (!is_stream_socket(fd))
			return REAL(connect)(fd, addr, len);
		describe(addr, peer, sizeof(peer));
		ns_log(NS_LOG_ERROR, "connect to %s refused: %s", peer, why);
		errno = EACCES;
		return -1;
	case LOOKUP_UNREADABLE:
		if (!is_stream_socket(fd))
			return REAL(connect)(fd, addr, len);
		describe(addr, peer, sizeof(peer));
		ns_log(NS_LOG_ERROR, "connect to %s refused: the NodeURL cache %s cannot be read",
		       peer, cache_file);
		errno = EACCES;
		return -1;
	case LOOKUP_HIT:
		break;
	}
	describe(addr, peer, sizeof(peer));
	if (!is_stream_socket(fd)) {
		ns_log(NS_LOG_ERROR, "connect to %s refused: it is a Noise node, and this is not a "
		       "TCP socket", peer);
		errno = EPROTONOSUPPORT;
		return -1;
	}
	if (wants_tfo(&entry))
		enable_tfo(fd, peer);
	if (ns_shim.config.transport == NS_TRANSPORT_NOISE && track(fd, &entry, peer))
		return -1;
	ret = REAL(connect)(fd, addr, len);
	if (ret < 0 && errno != EINPROGRESS && errno != EINTR && errno != EALREADY) {
		int saved = errno;
		untrack(fd);
		errno = saved;
		return -1;
	}
	ns_log(NS_LOG_INFO, "fd %d, %s: %s, TCP Fast Open %s, 0-RTT %s", fd, peer,
	       ns_shim.config.transport == NS_TRANSPORT_TCP
	               ? "plain TCP (NOISESHIM_TRANSPORT=tcp)"
	               : (entry.noise_proto == 2 ? "Noise_IK_25519_AESGCM_BLAKE2b"
	                                         : "Noise_IK_25519_ChaChaPoly_BLAKE2b"),
	       wants_tfo(&entry) ? "on" : "off", ns_shim.config.zero_rtt ? "on" : "off");
	return ret;
}

NS_EXPORT int
connect(int fd, const struct sockaddr *addr, socklen_t len)
{
	return ns_client_connect(fd, addr, len);
}
