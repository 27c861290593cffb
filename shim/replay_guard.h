/*
 * The accept shim's replay protection: one window per server key, kept in
 * a file-backed map on this host (NOISESHIM_REPLAY_FILE, else
 * /run/noiseshim/replay-<key id>.map), so that restarts, independently
 * started servers with the same key and pre-fork workers share it; and,
 * with NOISESHIM_REPLAY_STORE=redis://HOST:PORT, one Redis shared by a
 * fleet, asked after the local window says a data-carrying first flight
 * is new.  An unreachable store refuses data-carrying first flights only.
 */
#ifndef NOISESHIM_REPLAY_GUARD_H
#define NOISESHIM_REPLAY_GUARD_H

#include <stddef.h>
#include <stdint.h>

#include "replay.h"
#include "wire.h"

/*
 * Open the window of the key server_pub and check the store's URL, before
 * any worker is forked.  0, or -1 with why (why_len bytes) saying what is
 * misconfigured; then no listener may serve.
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
