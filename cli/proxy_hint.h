/*
 * What run, serve and doctor print when LD_PRELOAD cannot reach a program:
 * the `noiseshim proxy` commands that would put it on the same wire.
 * Each prints nothing unless reach_check refuses the program.
 */
#ifndef NOISESHIM_CLI_PROXY_HINT_H
#define NOISESHIM_CLI_PROXY_HINT_H

enum { PROXY_HINT_ENTRIES_MAX = 8 };

/*
 * A client program: one `proxy client` command per entry of the cache at
 * cache_path (NULL: the default cache), to stderr; a command to fill in
 * when there is no cache to read.
 */
void proxy_hint_client(const char *program, const char *cache_path);

/*
 * A server program with its key file (NULL: "KEYFILE") and the listen list
 * given to serve (NULL: "PORT"), to stderr.
 */
void proxy_hint_server(const char *program, const char *key_path, const char *listen,
                       const char *accept);

#endif
