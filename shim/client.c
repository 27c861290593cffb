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
#include <sys/stat.h>
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

/* The address describe() wrote, back as a sockaddr.  0, or -1. */
static int
undescribe(const char *peer, struct sockaddr_storage *ss, socklen_t *len)
{
	char host[INET6_ADDRSTRLEN + 2];
	const char *colon = strrchr(peer, ':');
	unsigned long port;
	char *end;

	if (colon == NULL || (size_t)(colon - peer) >= sizeof(host))
		return -1;
	port = strtoul(colon + 1, &end, 10);
	if (*end != '\0' || port > 65535)
		return -1;
	memset(ss, 0, sizeof(*ss));
	if (peer[0] == '[' && colon[-1] == ']') {
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
		snprintf(host, sizeof(host), "%.*s", (int)(colon - peer - 2), peer + 1);
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons((uint16_t)port);
		*len = sizeof(*in6);
		return inet_pton(AF_INET6, host, &in6->sin6_addr) == 1 ? 0 : -1;
	}
	struct sockaddr_in *in = (struct sockaddr_in *)ss;
	snprintf(host, sizeof(host), "%.*s", (int)(colon - peer), peer);
	in->sin_family = AF_INET;
	in->sin_port = htons((uint16_t)port);
	*len = sizeof(*in);
	return inet_pton(AF_INET, host, &in->sin_addr) == 1 ? 0 : -1;
}

/*
 * TCP Fast Open holds the SYN back until the first write, and until then
 * the kernel calls the socket not connected, though the program's connect
 * succeeded (and, without the shim, it may never have asked for TFO): the
 * peer is the one it connected to.
 */
NS_EXPORT int
getpeername(int fd, struct sockaddr *addr, socklen_t *len)
{
	struct sockaddr_storage ss;
	socklen_t have;
	struct ns_conn *c;
	int ret = REAL(getpeername)(fd, addr, len);

	if (ret == 0 || errno != ENOTCONN || (c = ns_fd_wrapped(fd)) == NULL)
		return ret;
	if (c->role == NS_ROLE_INITIATOR && c->tfo && ns_conn_phase(c) != NS_PHASE_FAILED &&
	    undescribe(c->peer, &ss, &have) == 0) {
		memcpy(addr, &ss, *len < have ? *len : have);
		*len = have;
		ret = 0;
	} else {
		errno = ENOTCONN;
	}
	ns_conn_unref(c);
	return ret;
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

/* The socket's inode, which names it across exec. */
static uint64_t
inode_of(int fd)
{
	struct stat st;

	return fstat(fd, &st) == 0 ? (uint64_t)st.st_ino : 0;
}

/*
 * Make fd's socket object (fresh, promoted, or one the shim never saw
 * being made) a wrapped initiator towards entry.  The object, with a
 * reference for the caller, or NULL with errno set.
 */
static struct ns_conn *
wrap(int fd, struct ns_conn *existing, const struct ns_nodeurl *entry, const char *peer)
{
	enum ns_suite suite = entry->noise_proto ? ns_suite_from_proto(entry->noise_proto)
	                                         : NS_SUITE_CHACHAPOLY;
	struct ns_conn *c = existing;
	int flags;

	if (ns_shim_load_key() != 0) {
		ns_log(NS_LOG_ERROR, "connect to %s refused: no usable static key (%s)", peer,
		       ns_shim.key_error);
		errno = EACCES;
		return NULL;
	}
	if (c == NULL && (c = ns_conn_new(NS_SOCK_FRESH, 0)) == NULL)
		goto nomem;
	if (ns_conn_lock_rx(c, fd) != 0)
		goto drop;
	if (ns_conn_lock_tx(c, fd) != 0) {
		ns_conn_unlock_rx(c);
		goto drop;
	}
	/* Another fd or process of this socket got here first. */
	if (c->kind != NS_SOCK_FRESH) {
		ns_conn_unlock_tx(c);
		ns_conn_unlock_rx(c);
		if (c->kind == NS_SOCK_WRAPPED)
			return c;
		errno = EISCONN;
		goto drop;
	}
	flags = REAL(fcntl)(fd, F_GETFL);
	c->nonblock = flags >= 0 && (flags & O_NONBLOCK);
	c->ino = inode_of(fd);
	if (REAL(setsockopt)(fd, SOL_SOCKET, SO_RCVLOWAT, &(int){NS_MSG2_LOWAT}, sizeof(int)) == 0)
		c->kernel_lowat = NS_MSG2_LOWAT;
	if (ns_conn_start_initiator(c, suite, entry->noise_pub, ns_shim.config.zero_rtt, peer)) {
		ns_conn_unlock_tx(c);
		ns_conn_unlock_rx(c);
		goto drop;
	}
	ns_conn_unlock_tx(c);
	ns_conn_unlock_rx(c);
	if (existing == NULL && ns_fd_attach(fd, c) != 0) {
		ns_log(NS_LOG_ERROR, "connect to %s refused: fd %d is beyond what the shim can track",
		       peer, fd);
		errno = EMFILE;
		goto drop;
	}
	return c;
nomem:
	ns_log(NS_LOG_ERROR, "connect to %s refused: %s", peer, strerror(errno));
	return NULL;
drop:
	ns_conn_unref(c);
	return NULL;
}

/* fd turned out not to be wrapped: every fd and process of it goes straight to libc. */
static void
let_go(int fd, struct ns_conn *c)
{
	uint32_t fresh = NS_SOCK_FRESH;

	if (c == NULL) {
		if (ns_fd_entry(fd) == NS_FD_FRESH)
			ns_conn_unref(ns_fd_take(fd));
		return;
	}
	__atomic_compare_exchange_n(&c->kind, &fresh, NS_SOCK_PLAIN, 0, __ATOMIC_ACQ_REL,
	                            __ATOMIC_ACQUIRE);
}

/*
 * The one decision for every way a program starts a TCP connection
 * (connect, and sendto/sendmsg/sendmmsg with MSG_FASTOPEN): a cached
 * destination is wrapped before the kernel sees the connect, one we cannot
 * wrap is refused, anything else goes to libc.  NS_START_PLAIN,
 * NS_START_WRAPPED (*out gets the object with a reference), or -1 with
 * errno.
 */
/* A connected socket that came from elsewhere: whether its peer is one the shim wraps (or refuses). */
int
ns_client_would_wrap(int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	struct ns_nodeurl entry;
	char why[NS_CACHE_WHERE_MAX + NS_CACHE_REASON_MAX + 2];

	if (getpeername(fd, (struct sockaddr *)&ss, &len) != 0)
		return 0;
	return lookup((struct sockaddr *)&ss, len, &entry, why, sizeof(why)) != LOOKUP_MISS;
}

int
ns_client_start(int fd, const struct sockaddr *addr, socklen_t len, struct ns_conn **out)
{
	struct ns_conn *c = NULL;
	struct ns_nodeurl entry;
	uint64_t known;
	char peer[64], why[NS_CACHE_WHERE_MAX + NS_CACHE_REASON_MAX + 2];
	int ret = NS_START_PLAIN;

	*out = NULL;
	if (addr == NULL || (addr->sa_family != AF_INET && addr->sa_family != AF_INET6))
		return NS_START_PLAIN;
	ns_shim_init();
	if (ns_shim.config.transport == NS_TRANSPORT_OFF)
		return NS_START_PLAIN;
	known = ns_fd_entry(fd);
	if (known > NS_FD_FRESH) {
		if ((c = ns_fd_get(fd)) == NULL)
			return NS_START_PLAIN;
		/* A second connect() on a wrapped socket asks how the first is going. */
		if (c->kind == NS_SOCK_WRAPPED) {
			*out = c;
			return NS_START_WRAPPED;
		}
		if (c->kind == NS_SOCK_PLAIN)
			goto out;
	} else if (known == 0 && !is_stream_socket(fd)) {
		/* Not a TCP socket, or one the shim cannot tell: only TCP is ever wrapped. */
		return NS_START_PLAIN;
	}
	switch (lookup(addr, len, &entry, why, sizeof(why))) {
	case LOOKUP_MISS:
		let_go(fd, c);
		goto out;
	case LOOKUP_BROKEN:
		/* The address is listed, but its line cannot be used: never plaintext to it. */
		describe(addr, peer, sizeof(peer));
		ns_log(NS_LOG_ERROR, "connect to %s refused: %s", peer, why);
		errno = EACCES;
		ret = -1;
		goto out;
	case LOOKUP_UNREADABLE:
		describe(addr, peer, sizeof(peer));
		ns_log(NS_LOG_ERROR, "connect to %s refused: the NodeURL cache %s cannot be read",
		       peer, cache_file);
		errno = EACCES;
		ret = -1;
		goto out;
	case LOOKUP_HIT:
		break;
	}
	describe(addr, peer, sizeof(peer));
	if (wants_tfo(&entry))
		enable_tfo(fd, peer);
	if (ns_shim.config.transport == NS_TRANSPORT_TCP) {
		let_go(fd, c);
		goto out;
	}
	if ((*out = wrap(fd, c, &entry, peer)) == NULL) {
		ret = -1;
		goto out;
	}
	c = NULL;  /* the caller has its reference now */
	(*out)->tfo = (uint8_t)wants_tfo(&entry);
	ret = NS_START_WRAPPED;
	ns_log(NS_LOG_INFO, "fd %d, %s: Noise_IK_25519_%s_BLAKE2b, TCP Fast Open %s, 0-RTT %s", fd,
	       peer, ns_suite_name((enum ns_suite)(*out)->suite), wants_tfo(&entry) ? "on" : "off",
	       ns_shim.config.zero_rtt ? "on" : "off");
out:
	ns_conn_unref(c);
	return ret;
}

/*
 * connect() for the client shim: wrap a cached destination, refuse one we
 * cannot wrap, pass anything else to libc.
 */
int
ns_client_connect(int fd, const struct sockaddr *addr, socklen_t len)
{
	struct ns_conn *c;
	int ret, saved;

	switch (ns_client_start(fd, addr, len, &c)) {
	case NS_START_PLAIN:
		return REAL(connect)(fd, addr, len);
	case NS_START_WRAPPED:
		break;
	default:
		return -1;
	}
	ret = REAL(connect)(fd, addr, len);
	saved = errno;
	if (ret < 0 && errno != EINPROGRESS && errno != EINTR && errno != EALREADY &&
	    errno != EISCONN && ns_conn_phase(c) == NS_PHASE_START)
		/* Nothing was sent: the connection never started, and cannot now. */
		ns_conn_fail(c, fd, saved, "connect failed");
	ns_conn_unref(c);
	errno = saved;
	return ret;
}

NS_EXPORT int
connect(int fd, const struct sockaddr *addr, socklen_t len)
{
	return ns_client_connect(fd, addr, len);
}
