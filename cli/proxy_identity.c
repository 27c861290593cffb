/*
 * Server proxy keys and replay window.
 */
#include "proxy_identity.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keys.h"

struct proxy_identity {
	size_t count;
	struct ns_keypair keys[PROXY_KEYS_MAX];
	struct ns_replay *replay;
};

/* Load one key file named by the len bytes at path into kp.  0, or -1 with err. */
static int load_key(const char *path, size_t len, struct ns_keypair *kp, char *err, size_t errlen)
{
	char name[4096];
	uint8_t priv[NS_KEY_LEN];
	int rc = -1;

	if (len == 0 || len >= sizeof name) {
		snprintf(err, errlen, "--key: empty or overlong file name in the list");
		return -1;
	}
	memcpy(name, path, len);
	name[len] = '\0';
	if (ns_key_load(name, priv, err, errlen) < 0)
		goto out;
	if (ns_keypair_from_private(kp, priv) < 0) {
		snprintf(err, errlen, "%s: degenerate key", name);
		goto out;
	}
	rc = 0;
out:
	sodium_memzero(priv, sizeof priv);
	return rc;
}

/* Load the key files in list (comma-separated) and make the replay window.  NULL with err. */
struct proxy_identity *proxy_identity_load(const char *list, char *err, size_t errlen)
{
	struct proxy_identity *id = calloc(1, sizeof *id);
	const char *p = list, *comma;

	if (id == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	for (;;) {
		comma = strchr(p, ',');
		if (id->count == PROXY_KEYS_MAX) {
			snprintf(err, errlen, "--key: more than %d key files", PROXY_KEYS_MAX);
			goto fail;
		}
		if (load_key(p, comma != NULL ? (size_t)(comma - p) : strlen(p), &id->keys[id->count],
		             err, errlen) < 0)
			goto fail;
		id->count++;
		if (comma == NULL)
			break;
		p = comma + 1;
	}
	id->replay = ns_replay_new(PROXY_REPLAY_WINDOW_MS, PROXY_REPLAY_CAPACITY);
	if (id->replay == NULL) {
		snprintf(err, errlen, "cannot make the replay window (%d entries)", PROXY_REPLAY_CAPACITY);
		goto fail;
	}
	return id;
fail:
	proxy_identity_free(id);
	return NULL;
}

/*
 * Decrypt msg1 (len bytes, in place) under each key and each suite until
 * one fits.  A new responder handshake in *hs and the payload's length, or
 * -1 when none fits.
 */
long proxy_identity_read_msg1(const struct proxy_identity *id, uint8_t *msg, size_t len,
                              const uint8_t **payload, struct ns_handshake **hs)
{
	static const enum ns_suite suites[] = { NS_SUITE_CHACHAPOLY, NS_SUITE_AESGCM };
	struct ns_handshake *h;
	long n;

	/*
	 * A wrong key or suite fails on the encrypted static key, which is
	 * decrypted into the handshake state: msg is intact for the next try.
	 */
	for (size_t k = 0; k < id->count; k++) {
		for (size_t s = 0; s < sizeof suites / sizeof suites[0]; s++) {
			h = ns_handshake_new_responder(suites[s], &id->keys[k], NULL, 0);
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
 * Whether the first flight with ephemeral key e is fresh.  A full window
 * refuses only a msg1 that carries data: replaying an empty one gains
 * nothing.
 */
enum ns_replay_verdict proxy_identity_check_replay(struct proxy_identity *id,
                                                   const uint8_t e[NS_KEY_LEN], int carries_data,
                                                   uint64_t now_ms)
{
	enum ns_replay_verdict v = ns_replay_check(id->replay, e, now_ms);

	return v == NS_REPLAY_FULL && !carries_data ? NS_REPLAY_FRESH : v;
}

/* Wipe the keys and free everything; NULL is a no-op. */
void proxy_identity_free(struct proxy_identity *id)
{
	if (id == NULL)
		return;
	ns_replay_free(id->replay);
	sodium_memzero(id, sizeof *id);
	free(id);
}
