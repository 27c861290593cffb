/*
 * The TCP sockets listening on this host now (in this network namespace),
 * from /proc/net/tcp and /proc/net/tcp6: what doctor holds NOISESHIM_LISTEN
 * against.
 */
#ifndef NOISESHIM_CLI_LISTENING_H
#define NOISESHIM_CLI_LISTENING_H

#include <netinet/in.h>
#include <stddef.h>

enum {
	LISTENING_MAX = 1024,
};

struct listening_socket {
	char addr[INET6_ADDRSTRLEN]; /* numeric, canonical (inet_ntop) */
	unsigned port;
};

struct listening_list {
	size_t count;
	struct listening_socket socket[LISTENING_MAX];
};

/* Fill l with every listening TCP socket.  -1 (errno set) when neither file can be read. */
int listening_read(struct listening_list *l);

#endif
