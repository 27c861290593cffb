/*
 * The checks of NOISESHIM_REPLAY_STORE and NOISESHIM_REPLAY_FILE that a
 * wrapped listener must pass before it serves: shared by the accept shim,
 * which refuses to listen when one fails, and `noiseshim doctor`, which
 * says so beforehand.  Nothing here connects or creates a file.
 */
#ifndef NOISESHIM_REPLAY_CONFIG_H
#define NOISESHIM_REPLAY_CONFIG_H

#include <stddef.h>

enum {
	NS_REPLAY_STORE_HOST_MAX = 256,
	NS_REPLAY_STORE_DEFAULT_PORT = 6379,
	/* The file of a key other than the first is NOISESHIM_REPLAY_FILE-<key id>: this long. */
	NS_REPLAY_KEY_ID_HEX = 32,
};

/*
 * Split url, "redis://HOST:PORT" (HOST a name, an IPv4 address or [IPv6];
 * PORT 6379 if left out), into host and *port.  0, or -1 with why (why_len
 * bytes) naming the variable and its value.
 */
int ns_replay_store_parse(const char *url, char host[NS_REPLAY_STORE_HOST_MAX], int *port,
                          char *why, size_t why_len);

/*
 * Whether this process can open the window file at path read-write, or
 * create it (and the files of later keys beside it).  0, or -1 with why
 * naming setting (NOISESHIM_REPLAY_FILE, or an option of the same meaning)
 * and its value.
 */
int ns_replay_file_check(const char *setting, const char *path, char *why, size_t why_len);

#endif
