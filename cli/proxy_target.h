/*
 * The addresses a proxy is given, and what the client proxy learns about
 * its target from the NodeURL cache.  The cache is consulted through
 * proxy_lookup_target alone.
 */
#ifndef NOISESHIM_CLI_PROXY_TARGET_H
#define NOISESHIM_CLI_PROXY_TARGET_H

#include <stddef.h>
#include <sys/socket.h>

#include "proxy.h"

/*
 * Resolve HOST:PORT ([IPV6]:PORT, a name, or for a listener *:PORT) into
 * sa.  Port 0 only if listener.  0, or -1 with the reason in err.
 */
int proxy_parse_addr(const char *text, int listener, struct sockaddr_storage *sa, socklen_t *len,
                     char *err, size_t errlen);

/*
 * Find cfg's target in the cache at path (NULL: the default cache) and
 * fill in cfg's suite, remote key and TFO.  0, or -1 with the reason in
 * err, naming the file and, for a line that does not parse, the line.
 */
int proxy_lookup_target(const char *path, struct proxy_config *cfg, char *err, size_t errlen);

#endif
