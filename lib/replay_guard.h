/*
 * A responder's replay protection, the one the accept shim and the server
 * proxy share: one window per server key, kept in a file-backed map on
 * this host (the configured file, else /run/noiseshim/replay-<key id>.map),
 * so that restarts, servers started on their own with the same key (a
 * shim or a proxy, in any mix) and pre-fork workers share it; and, with a
 * store URL redis://HOST:PORT, one Redis shared by a fleet, asked after
 * the local window says a data-carrying first flight is new.  An
 * unreachable store refuses data-carrying first flights only.
 *
 * One guard per process.  ns_replay_guard_configure comes first, once;
 * then ns_replay_guard_init and ns_replay_guard_check may be called from
 * any thread, and in a child of fork, which opens its own connection to
 * the store.  A window is opened on a key's first use, with the settings
 * of the configuration; two servers share a window file only if they
 * agree on its capacity (a file made with another capacity is rebuilt
 * empty).  What the guard finds on its own (a window rebuilt or kept in
 * memory, the store down or back) goes to the log function, each store
 * outage and its end once.
 */
#ifndef NOISESHIM_REPLAY_GUARD_H
#define NOISESHIM_REPLAY_GUARD_H

#include <stddef.h>
#include <stdint.h>

#include "logline.h"
#include "replay.h"
#include "wire.h"

struct ns_replay_guard_config {
	/*
	 * The window file of the first key the process opens; a later key's
	 * window goes next to it, "FILE-<key id>".  Empty: the default path.
	 */
	const char *file;
	const char *file_setting;  /* how messages name it: "NOISESHIM_REPLAY_FILE", "--replay-file" */
	const char *store;         /* NOISESHIM_REPLAY_STORE; empty: no store */
	unsigned window_s;
	unsigned capacity;
};

/*
 * Take the settings (the strings must outlive the guard) and where lines
 * go.  A store URL that does not parse is reported by ns_replay_guard_init.
 */
void ns_replay_guard_configure(const struct ns_replay_guard_config *cfg, ns_line_fn *log);

/*
 * Open the window of the key server_pub and check the store's URL, before
 * any worker is forked.  0, or -1 with why (why_len bytes) saying what is
 * misconfigured; then the server must not serve.
 */
int ns_replay_guard_init(const uint8_t server_pub[NS_KEY_LEN], char *why, size_t why_len);

/*
 * Check the ephemeral key e of a msg1 that server_pub's key decrypted.  A
 * window that is full or cannot be consulted refuses only a msg1 that
 * carries data: replaying an empty one gains nothing.
 */
enum ns_replay_verdict ns_replay_guard_check(const uint8_t server_pub[NS_KEY_LEN],
                                             const uint8_t e[NS_KEY_LEN], int carries_data);

#endif
