/*
 * The NOISESHIM_LISTEN list of listening sockets the accept shim wraps:
 * entries separated by commas or spaces, each PORT (any local address) or
 * ADDR:PORT, where ADDR is a numeric IPv4 or IPv6 address, the latter
 * optionally in brackets.
 */
#ifndef NOISESHIM_CLI_LISTEN_H
#define NOISESHIM_CLI_LISTEN_H

#include <netinet/in.h>
#include <stddef.h>

struct listen_entry {
	char addr[INET6_ADDRSTRLEN]; /* numeric, without brackets; empty for PORT alone */
	unsigned port;
};

/*
 * Parse the entry at *cursor and step past it.  1 with e filled, 0 at the end,
 * -1 with the reason in err.
 */
int listen_next(const char **cursor, struct listen_entry *e, char *err, size_t errlen);

/* Whether e listens on every local address: no address, 0.0.0.0 or ::. */
int listen_is_wildcard(const struct listen_entry *e);

#endif
