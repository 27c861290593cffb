/*
 * The client shim's connect(), shared with sendto(MSG_FASTOPEN).
 */
#ifndef NOISESHIM_CLIENT_H
#define NOISESHIM_CLIENT_H

#include <sys/socket.h>

/*
 * connect() for the client shim: wrap a cached destination, refuse one we
 * cannot wrap, pass anything else to libc.
 */
int ns_client_connect(int fd, const struct sockaddr *addr, socklen_t len);

#endif
