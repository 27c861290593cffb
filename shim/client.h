/*
 * The client shim's connect(), shared with sendto(MSG_FASTOPEN).
 */
#ifndef NOISESHIM_CLIENT_H
#define NOISESHIM_CLIENT_H

#include <sys/socket.h>

struct ns_conn;

enum { NS_START_PLAIN = 0, NS_START_WRAPPED = 1 };

/*
 * The one decision for every way a program starts a TCP connection
 * (connect, and sendto/sendmsg/sendmmsg with MSG_FASTOPEN): a cached
 * destination is wrapped before the kernel sees the connect, one we cannot
 * wrap is refused, anything else goes to libc.  NS_START_PLAIN,
 * NS_START_WRAPPED (*out gets the object with a reference), or -1 with
 * errno.
 */
int ns_client_start(int fd, const struct sockaddr *addr, socklen_t len, struct ns_conn **out);

/*
 * connect() for the client shim: wrap a cached destination, refuse one we
 * cannot wrap, pass anything else to libc.
 */
int ns_client_connect(int fd, const struct sockaddr *addr, socklen_t len);

#endif
