/*
 * The accept shim's replay window: one per server, in memory shared with
 * the processes it forks, so workers of a pre-fork server see each other's
 * first flights.
 */
#ifndef NOISESHIM_REPLAY_GUARD_H
#define NOISESHIM_REPLAY_GUARD_H

#include <stdint.h>

#include "replay.h"
#include "wire.h"

/* Create the window from the configuration, before any worker is forked.  0 or -1. */
int ns_replay_guard_init(void);

/*
 * Check the ephemeral key e of a decrypted msg1.  A full window refuses
 * only a msg1 that carries data: replaying an empty one gains nothing.
 */
enum ns_replay_verdict ns_replay_guard_check(const uint8_t e[NS_KEY_LEN], int carries_data);

#endif
