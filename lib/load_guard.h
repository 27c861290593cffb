/*
 * Load protection for a responder, the one the accept shim and the server
 * proxy share, before any Diffie-Hellman: while the server is under load
 * (many msg1s being processed at once, or many first flights arriving per
 * second), a source address above NOISESHIM_RATE_LIMIT first flights per
 * second (burst NOISESHIM_RATE_BURST) has its connections closed unread.
 * Addresses below the rate, and every address while the server is not
 * under load, are never limited.  IPv6 addresses count per /64, as one
 * host usually holds the whole prefix.
 *
 * One guard per process.  The counters and the table live in memory
 * shared with the workers a pre-fork server forks after listen().  When
 * load begins and ends goes to the log function, once each.
 */
#ifndef NOISESHIM_LOAD_GUARD_H
#define NOISESHIM_LOAD_GUARD_H

#include <sys/socket.h>

#include "logline.h"

struct ns_load_guard_config {
	unsigned rate_limit;  /* NOISESHIM_RATE_LIMIT: first flights/s per address; 0: no guard */
	unsigned rate_burst;  /* NOISESHIM_RATE_BURST */
};

/*
 * Set up from cfg, with where lines go, before any worker is forked; a
 * second call changes nothing.  0 or -1 (no memory).
 */
int ns_load_guard_init(const struct ns_load_guard_config *cfg, ns_line_fn *log);

/* Puts the peer's address in *peer: 0, or -1 when it cannot be had. */
typedef int ns_load_guard_peer_fn(void *arg, struct sockaddr_storage *peer);

/*
 * A whole msg1 has arrived: 0 to go on, -1 to close unanswered.  The
 * peer's address is asked of peer_fn only while the server is under load:
 * a lookup would cost every first flight.
 */
int ns_load_guard_admit(ns_load_guard_peer_fn *peer_fn, void *arg);

/* Around the processing of one msg1, so that handshakes in progress are counted. */
void ns_load_guard_begin(void);
void ns_load_guard_end(void);

#endif
