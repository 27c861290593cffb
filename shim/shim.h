/*
 * Process-wide shim state: configuration, this side's static key, the
 * client's NodeURL cache.  Set up once, on the first call that needs it.
 */
#ifndef NOISESHIM_SHIM_H
#define NOISESHIM_SHIM_H

#include <pthread.h>
#include <stdint.h>

#include "cache.h"
#include "config.h"
#include "conn.h"
#include "noise.h"
#include "wire.h"

struct ns_shim {
	struct ns_config config;
	struct ns_keypair static_key;
	int have_key;                  /* static_key is usable */
	char key_error[256];           /* why not, when a key was required */

	pthread_mutex_t cache_lock;
	struct ns_cache *cache;        /* client: opened on the first connect() */
};

extern struct ns_shim ns_shim;

/* Which side this preload object is: the client shim initiates, the accept shim responds. */
extern const enum ns_role ns_shim_role;

/* Load the configuration once; every wrapper that may track an fd calls it. */
void ns_shim_init(void);

/*
 * The static key, loaded on first need: only a process that wraps a
 * connection or listens on a wrapped port reads the key file.  0 when
 * ns_shim.static_key is usable; -1 with the reason in ns_shim.key_error.
 */
int ns_shim_load_key(void);

/* Milliseconds on the monotonic clock. */
uint64_t ns_now_ms(void);

#endif
