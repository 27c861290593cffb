/*
 * Load protection for the accept shim, before any Diffie-Hellman: while
 * the server is under load (many msg1s being processed at once, or many
 * first flights arriving per second), a source address above
 * NOISESHIM_RATE_LIMIT first flights per second (burst
 * NOISESHIM_RATE_BURST) has its connections closed unread.  Addresses
 * below the rate, and every address while the server is not under load,
 * are never limited.  IPv6 addresses count per /64, as one host usually
 * holds the whole prefix.
 *
 * The counters and the table live in memory shared with the workers a
 * pre-fork server forks after listen().
 */
#ifndef NOISESHIM_LOAD_GUARD_H
#define NOISESHIM_LOAD_GUARD_H

/* Set up from the configuration, before any worker is forked.  0 or -1 (no memory). */
int ns_load_guard_init(void);

/* A whole msg1 has arrived on fd: 0 to go on, -1 to close unanswered. */
int ns_load_guard_admit(int fd);

/* Around the processing of one msg1, so that handshakes in progress are counted. */
void ns_load_guard_begin(void);
void ns_load_guard_end(void);

#endif
