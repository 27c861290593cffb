/*
 * What a server proxy answers with: its static keys, and the replay window
 * of the first flights it has accepted.  Every decision about who may
 * complete a handshake is made here, in proxy_identity_read_msg1 and
 * proxy_identity_check_replay, so that the rest of the proxy never sees a
 * key.
 *
 * --key takes a comma-separated list of key files: the first is the
 * current key, the others are still accepted (a rotation in progress).
 */
#ifndef NOISESHIM_CLI_PROXY_IDENTITY_H
#define NOISESHIM_CLI_PROXY_IDENTITY_H

#include <stddef.h>
#include <stdint.h>

#include "noise.h"
#include "replay.h"

enum {
	PROXY_KEYS_MAX = 8,
	/* The accept shim's defaults (NOISESHIM_REPLAY_WINDOW, NOISESHIM_REPLAY_CAPACITY). */
	PROXY_REPLAY_WINDOW_MS = 10 * 60 * 1000,
	PROXY_REPLAY_CAPACITY = 1 << 20,
};

struct proxy_identity;

/* Load the key files in list (comma-separated) and make the replay window.  NULL with err. */
struct proxy_identity *proxy_identity_load(const char *list, char *err, size_t errlen);

/*
 * Decrypt msg1 (len bytes, in place) under each key and each suite until
 * one fits.  A new responder handshake in *hs and the payload's length, or
 * -1 when none fits.
 */
long proxy_identity_read_msg1(const struct proxy_identity *id, uint8_t *msg, size_t len,
                              const uint8_t **payload, struct ns_handshake **hs);

/*
 * Whether the first flight with ephemeral key e is fresh.  A full window
 * refuses only a msg1 that carries data: replaying an empty one gains
 * nothing.
 */
enum ns_replay_verdict proxy_identity_check_replay(struct proxy_identity *id,
                                                   const uint8_t e[NS_KEY_LEN], int carries_data,
                                                   uint64_t now_ms);

/* Wipe the keys and free everything; NULL is a no-op. */
void proxy_identity_free(struct proxy_identity *id);

#endif
