/*
 * Shim configuration: NOISESHIM_* environment variables over an optional
 * file named by NOISESHIM_CONFIG (same names, NAME=VALUE per line).
 */
#ifndef NOISESHIM_CONFIG_H
#define NOISESHIM_CONFIG_H

#include <limits.h>
#include <stdint.h>

#include "wire.h"

enum ns_transport { NS_TRANSPORT_NOISE, NS_TRANSPORT_TCP, NS_TRANSPORT_OFF };
enum ns_tfo_mode { NS_TFO_AUTO, NS_TFO_ON, NS_TFO_OFF };
enum ns_accept_mode { NS_ACCEPT_NOISE, NS_ACCEPT_MIXED };
enum ns_log_level { NS_LOG_ERROR, NS_LOG_WARN, NS_LOG_INFO, NS_LOG_DEBUG };

enum {
	NS_CONFIG_TEXT_MAX = 1024,
	NS_LISTEN_MAX = 64, /* NOISESHIM_LISTEN entries the accept shim can hold */
};

struct ns_config {
	enum ns_transport transport;
	char cache[PATH_MAX];                  /* empty: no cache configured */
	enum ns_tfo_mode tfo;
	int zero_rtt;
	char key[PATH_MAX];                    /* empty: none; the server's may list several */
	char allow[PATH_MAX];                  /* client allowlist; empty: every client may enter */
	char listen[NS_CONFIG_TEXT_MAX];
	int listen_too_long;                   /* NOISESHIM_LISTEN was given but did not fit */
	enum ns_accept_mode accept;
	enum ns_log_level log_level;
	char log_file[PATH_MAX];
	uint8_t prefix[NS_ROUTE_PREFIX_LEN];
	unsigned handshake_timeout_ms;
	unsigned first_flight_us;              /* quiet time that releases a coalesced first flight */
	unsigned replay_window_s;
	unsigned replay_capacity;
	char replay_file[PATH_MAX];            /* empty: /run/noiseshim/replay-<key id>.map */
	char replay_store[NS_CONFIG_TEXT_MAX]; /* empty: no fleet-wide store */
	unsigned rate_limit;                   /* handshakes/s per address under load; 0: off */
	unsigned rate_burst;
};

/* Called for each problem: the variable (or FILE:LINE) at fault and why. */
typedef void ns_config_report_fn(const char *where, const char *problem);

/*
 * Fill c from the defaults, then the config file, then the environment.
 * A bad value is reported and ignored: the setting keeps the value it had
 * (the default, or the config file's), except NOISESHIM_0RTT, which
 * becomes off.  A name that is none of ours, in the file or among the
 * environment's NOISESHIM_* variables, is reported with the name it is
 * likely a typo of.
 */
void ns_config_load(struct ns_config *c, ns_config_report_fn *report);

#endif
