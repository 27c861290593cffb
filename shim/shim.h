/*
 * Process-wide shim state: configuration, this side's static key, the
 * server's key ring and client allowlist, the client's NodeURL cache.  Set
 * up once, on the first call that needs it.
 *
 * The ring and the allowlist are re-read when their files change (at most
 * once a second, ns_shim_refresh_keys); keys_lock keeps a reload from
 * freeing them under a handshake that is using them.
 */
#ifndef NOISESHIM_SHIM_H
#define NOISESHIM_SHIM_H

#include <pthread.h>
#include <stdint.h>

#include "cache.h"
#include "config.h"
#include "conn.h"
#include "noise.h"
#include "server_keys.h"
#include "wire.h"

struct ns_shim {
	struct ns_config config;
	struct ns_keypair static_key;  /* the ring's first key, or the client's fresh one */
	int have_key;                  /* static_key is usable */
	char key_error[NS_KEYRING_ERR_MAX]; /* why not, when a key was required */

	pthread_rwlock_t keys_lock;    /* write: a reload; read: a handshake using keys */
	struct ns_server_keys keys;    /* NOISESHIM_KEY and NOISESHIM_ALLOW; no ring without a key file */

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

/* Re-read the key files and the allowlist if they changed, at most once a second. */
void ns_shim_refresh_keys(void);

/* Whether a client with static key pub may enter (always, without NOISESHIM_ALLOW). */
int ns_shim_client_allowed(const uint8_t pub[NS_KEY_LEN]);

/* Milliseconds on the monotonic clock. */
uint64_t ns_now_ms(void);

#endif
