/*
 * Server proxy keys, allowlist and replay window.
 */
#include "proxy_identity.h"

#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keyring.h"

struct proxy_identity {
	struct ns_server_keys keys;
};

/* The lines of lib/ modules go where the proxy's own lines go. */
static void log_line(enum ns_line_level level, const char *line)
{
	fprintf(stderr, "noiseshim proxy: %s\n", line);
}

/* The current key: the first of the ring, as the accept shim's windows are named by it. */
static const uint8_t *current_pub(const struct proxy_identity *id)
{
	return ns_keyring_key(id->keys.ring, 0)->pub;
}

/*
 * Load the keys and the allowlist, open the current key's replay window
 * and set the load guard up.  NULL with err, naming the file or setting
 * at fault.
 */
struct proxy_identity *proxy_identity_load(const struct ns_server_keys_config *keys,
                                           const struct ns_replay_guard_config *replay,
                                           const struct ns_load_guard_config *load,
                                           char *err, size_t errlen)
{
	struct proxy_identity *id = calloc(1, sizeof *id);

	if (id == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	if (ns_server_keys_load(&id->keys, keys, err, errlen) != 0)
		goto fail;
	ns_replay_guard_configure(replay, log_line);
	if (ns_replay_guard_init(current_pub(id), err, errlen) != 0)
		goto fail;
	if (ns_load_guard_init(load, log_line) != 0) {
		snprintf(err, errlen, "no memory for the load guard");
		goto fail;
	}
	return id;
fail:
	proxy_identity_free(id);
	return NULL;
}

/* The load guard's question: the proxy has the address from accept. */
static int known_peer(void *arg, struct sockaddr_storage *peer)
{
	const struct sockaddr *sa = arg;
	size_t len = sa->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);

	memcpy(peer, sa, len);
	return 0;
}

/*
 * Whether a whole msg1 from peer may be decrypted: not while the proxy is
 * under load and peer is above its rate.  Asked before any DH.
 */
int proxy_identity_admit_peer(const struct sockaddr *peer)
{
	return ns_load_guard_admit(known_peer, (void *)peer) == 0;
}

/* Re-read the key files and the allowlist if they changed; at most once a second. */
void proxy_identity_refresh(struct proxy_identity *id)
{
	/* One thread: nothing uses the keys while they are swapped. */
	if (ns_server_keys_due(&id->keys))
		ns_server_keys_refresh(&id->keys, log_line);
}

/* Each key and suite in turn until one fits.  The handshake and the payload's length, or -1. */
static long try_keys(const struct proxy_identity *id, uint8_t *msg, size_t len,
                     const uint8_t **payload, struct ns_handshake **hs)
{
	static const enum ns_suite suites[] = { NS_SUITE_CHACHAPOLY, NS_SUITE_AESGCM };
	const struct ns_keypair *key;
	struct ns_handshake *h;
	long n;

	/*
	 * A wrong key or suite fails on the encrypted static key, which is
	 * decrypted into the handshake state: msg is intact for the next try.
	 */
	for (size_t k = 0; (key = ns_keyring_key(id->keys.ring, k)) != NULL; k++) {
		for (size_t s = 0; s < sizeof suites / sizeof suites[0]; s++) {
			h = ns_handshake_new_responder(suites[s], key, NULL, 0);
			if (h == NULL)
				return -1;
			n = ns_handshake_read_msg1(h, msg, len, payload);
			if (n >= 0) {
				*hs = h;
				return n;
			}
			ns_handshake_free(h);
		}
	}
	return -1;
}

/*
 * Decrypt msg1 (len bytes, in place) under each key and each suite until
 * one fits, counted by the load guard as a msg1 in progress.  A new
 * responder handshake in *hs and the payload's length, or -1 when none
 * fits.
 */
long proxy_identity_read_msg1(const struct proxy_identity *id, uint8_t *msg, size_t len,
                              const uint8_t **payload, struct ns_handshake **hs)
{
	long n;

	ns_load_guard_begin();
	n = try_keys(id, msg, len, payload, hs);
	ns_load_guard_end();
	return n;
}

/*
 * Whether the client that made msg1 of hs may enter.  If not, why
 * (NS_SERVER_KEYS_REFUSAL_MAX bytes) names its key and the allowlist.
 */
int proxy_identity_allowed(const struct proxy_identity *id, const struct ns_handshake *hs,
                           char *why, size_t why_len)
{
	const uint8_t *client = ns_handshake_remote_static(hs);

	if (ns_server_keys_allowed(&id->keys, client))
		return 1;
	ns_server_keys_refusal(&id->keys, client, why, why_len);
	return 0;
}

/*
 * Whether the first flight of hs is fresh.  A window that is full or
 * cannot be consulted refuses only a msg1 that carries data: replaying an
 * empty one gains nothing.
 */
enum ns_replay_verdict proxy_identity_check_replay(const struct proxy_identity *id,
                                                   const struct ns_handshake *hs,
                                                   int carries_data)
{
	return ns_replay_guard_check(current_pub(id), ns_handshake_remote_ephemeral(hs),
	                             carries_data);
}

/* Wipe the keys and free everything; NULL is a no-op. */
void proxy_identity_free(struct proxy_identity *id)
{
	if (id == NULL)
		return;
	ns_server_keys_free(&id->keys);
	free(id);
}
