/*
 * The proxy commands suggested for programs that LD_PRELOAD cannot reach.
 */
#include "proxy_hint.h"

#include <arpa/inet.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cachefile.h"
#include "listen.h"
#include "nodeurl.h"
#include "reach.h"

static int refused(const char *program)
{
	char why[4096];

	return reach_check(program, why, sizeof why) == REACH_REFUSED;
}

/* A loopback port free right now, for the proxy's side the program talks to; 0 if none. */
static unsigned free_loopback_port(void)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof sa;
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	unsigned port = 0;

	if (fd < 0)
		return 0;
	if (bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0 &&
	    getsockname(fd, (struct sockaddr *)&sa, &len) == 0)
		port = ntohs(sa.sin_port);
	close(fd);
	return port;
}

/* A client program: one `proxy client` command per cache entry, to stderr. */
void proxy_hint_client(const char *program, const char *cache_path)
{
	char path[PATH_MAX], absolute[PATH_MAX];
	struct cache_line line = { 0 };
	struct cachefile f;
	struct ns_nodeurl u;
	unsigned shown = 0;

	if (!refused(program))
		return;
	if (cache_path == NULL && cachefile_default_path(path, sizeof path) == 0)
		cache_path = path;
	fprintf(stderr, "noiseshim: instead, run a client proxy per server and point %s at its "
	        "--listen address:\n", program);
	if (cache_path == NULL || cachefile_read(cache_path, 1, &f) < 0) {
		fprintf(stderr, "  noiseshim proxy client --listen 127.0.0.1:%u --target HOST:PORT "
		        "--cache FILE   (FILE holding HOST:PORT's NodeURL: 'noiseshim cache add')\n",
		        free_loopback_port());
		return;
	}
	if (realpath(cache_path, absolute) != NULL)
		cache_path = absolute;
	while (cachefile_next_line(f.text, f.len, &line) && shown < PROXY_HINT_ENTRIES_MAX) {
		if (line.entry_len == 0 || ns_nodeurl_parse(line.entry, line.entry_len, &u) != NS_NODEURL_OK ||
		    u.family == NS_ADDR_NAME || u.port == 0)
			continue;
		fprintf(stderr, u.family == NS_ADDR_IPV6
		        ? "  noiseshim proxy client --listen 127.0.0.1:%u --target [%s]:%u --cache %s\n"
		        : "  noiseshim proxy client --listen 127.0.0.1:%u --target %s:%u --cache %s\n",
		        free_loopback_port(), u.host, u.port, cache_path);
		shown++;
	}
	if (shown == 0)
		fprintf(stderr, "  noiseshim proxy client --listen 127.0.0.1:%u --target HOST:PORT "
		        "--cache %s   (after 'noiseshim cache add' of HOST:PORT's NodeURL)\n",
		        free_loopback_port(), cache_path);
	cachefile_release(&f);
}

/* A server program with its key file and listen list, to stderr. */
void proxy_hint_server(const char *program, const char *key_path, const char *listen,
                       const char *accept)
{
	const char *cursor = listen;
	struct listen_entry e;
	char err[256], key[PATH_MAX];
	unsigned inner;

	if (!refused(program))
		return;
	if (key_path == NULL)
		snprintf(key, sizeof key, "KEYFILE");
	else if (realpath(key_path, key) == NULL)
		snprintf(key, sizeof key, "%s", key_path);
	fprintf(stderr, "noiseshim: instead, start %s listening on the loopback port shown and "
	        "run, per port:\n", program);
	if (listen == NULL) {
		fprintf(stderr, "  noiseshim proxy server --key %s --listen PORT --target 127.0.0.1:%u%s\n",
		        key, free_loopback_port(),
		        key_path == NULL ? "   (KEYFILE from 'noiseshim keygen')" : "");
		return;
	}
	while (listen_next(&cursor, &e, err, sizeof err) > 0) {
		inner = free_loopback_port();
		if (e.addr[0] == '\0')
			fprintf(stderr, "  noiseshim proxy server --key %s --listen [::]:%u", key, e.port);
		else
			fprintf(stderr, strchr(e.addr, ':') != NULL
			        ? "  noiseshim proxy server --key %s --listen [%s]:%u"
			        : "  noiseshim proxy server --key %s --listen %s:%u", key, e.addr, e.port);
		fprintf(stderr, " --target 127.0.0.1:%u%s%s\n", inner, accept != NULL ? " --accept " : "",
		        accept != NULL ? accept : "");
	}
}
