/*
 * What a server proxy answers with and whom it lets in: the accept shim's
 * rules, from the same code.  Its key ring and client allowlist
 * (lib/server_keys.h) are re-read when their files change; its replay
 * windows (lib/replay_guard.h) are the accept shim's files, so that a
 * restart, a second proxy and an accept shim with the same key all refuse
 * a first flight one of them has accepted; its load guard
 * (lib/load_guard.h) limits each address's first flights while it is
 * under load.  Every decision about who may complete a handshake is made
 * here, so that the rest of the proxy never sees a key.
 *
 * --key takes a comma-separated list of key files: the first is the
 * current key, the others are still accepted (a rotation in progress).
 * The replay window is the current key's, as in the accept shim.
 */
#ifndef NOISESHIM_CLI_PROXY_IDENTITY_H
#define NOISESHIM_CLI_PROXY_IDENTITY_H

#include <stddef.h>
#include <stdint.h>

#include <sys/socket.h>

#include "load_guard.h"
#include "noise.h"
#include "replay_guard.h"
#include "server_keys.h"

struct proxy_identity;

/*
 * Load the keys and the allowlist, open the current key's replay window
 * and set the load guard up.  NULL with err, naming the file or setting
 * at fault.
 */
struct proxy_identity *proxy_identity_load(const struct ns_server_keys_config *keys,
                                           const struct ns_replay_guard_config *replay,
                                           const struct ns_load_guard_config *load,
                                           char *err, size_t errlen);

/*
 * Whether a whole msg1 from peer may be decrypted: not while the proxy is
 * under load and peer is above its rate.  Asked before any DH.
 */
int proxy_identity_admit_peer(const struct sockaddr *peer);

/* Re-read the key files and the allowlist if they changed; at most once a second. */
void proxy_identity_refresh(struct proxy_identity *id);

/*
 * Decrypt msg1 (len bytes, in place) under each key and each suite until
 * one fits, counted by the load guard as a msg1 in progress.  A new
 * responder handshake in *hs and the payload's length, or -1 when none
 * fits.
 */
long proxy_identity_read_msg1(const struct proxy_identity *id, uint8_t *msg, size_t len,
                              const uint8_t **payload, struct ns_handshake **hs);

/*
 * Whether the client that made msg1 of hs may enter.  If not, why
 * (NS_SERVER_KEYS_REFUSAL_MAX bytes) names its key and the allowlist.
 */
int proxy_identity_allowed(const struct proxy_identity *id, const struct ns_handshake *hs,
                           char *why, size_t why_len);

/*
 * Whether the first flight of hs is fresh.  A window that is full or
 * cannot be consulted refuses only a msg1 that carries data: replaying an
 * empty one gains nothing.
 */
enum ns_replay_verdict proxy_identity_check_replay(const struct proxy_identity *id,
                                                   const struct ns_handshake *hs,
                                                   int carries_data);

/* Wipe the keys and free everything; NULL is a no-op. */
void proxy_identity_free(struct proxy_identity *id);

#endif
