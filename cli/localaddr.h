/*
 * Numeric addresses for NodeURLs, which a cache matches against the
 * addresses programs connect() to: this host's, where a server bound to
 * every address can be reached, and those a host name resolves to.
 */
#ifndef NOISESHIM_CLI_LOCALADDR_H
#define NOISESHIM_CLI_LOCALADDR_H

#include <netinet/in.h>
#include <stddef.h>

enum {
	LOCALADDR_MAX = 64,
};

struct localaddr_list {
	size_t count;
	char addr[LOCALADDR_MAX][INET6_ADDRSTRLEN]; /* numeric, without brackets */
};

/*
 * Fill l with this host's IPv4 (with v4) and IPv6 (with v6) addresses, the
 * loopback ones first (127.0.0.1, then ::1), each once.  IPv6 link-local
 * addresses are left out: a NodeURL cannot carry their interface.  When the
 * interfaces cannot be listed, l holds the loopback addresses asked for.
 */
void localaddr_list(int v4, int v6, struct localaddr_list *l);

/*
 * Fill l with the addresses name resolves to, each once, in the resolver's
 * order, IPv6 link-local ones left out as above.  0, or getaddrinfo's
 * error code (for gai_strerror) when name does not resolve.
 */
int localaddr_resolve(const char *name, struct localaddr_list *l);

#endif
