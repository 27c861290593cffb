/*
 * The addresses of this host that clients may connect to: where a server
 * bound to every address can be reached, for its NodeURLs.
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

#endif
