/*
 * What a responder answers with and whom it lets in, for the accept shim
 * (NOISESHIM_KEY, NOISESHIM_ALLOW) and the server proxy (--key, --allow):
 * its key ring (lib/keyring.h) and its client allowlist (lib/allowlist.h),
 * loaded together and re-read together when their files change.
 *
 * Loading is strict: an allowlist with a bad line refuses service like a
 * bad key, so that a typo cannot pass unnoticed until the client it meant
 * to let in is refused.  Reloading keeps service going: key files that no
 * longer load leave the ring loaded before in use; a changed allowlist is
 * used even with bad lines (a bad line only keeps its client out), and
 * one that cannot be read leaves the list loaded before in use.  Each
 * reload problem is logged once, at error level, naming the file.
 *
 * The files are looked at (a stat each) at most once a second.
 * ns_server_keys_due may be called from any thread without a lock and
 * lets one caller a second through; callers serialise
 * ns_server_keys_refresh against every other use of ring and allow.
 */
#ifndef NOISESHIM_SERVER_KEYS_H
#define NOISESHIM_SERVER_KEYS_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>

#include "allowlist.h"
#include "keyring.h"
#include "logline.h"
#include "wire.h"

enum {
	NS_SERVER_KEYS_CHECK_MS = 1000,   /* how often the files are looked at, at most */
	NS_SERVER_KEYS_ERR_MAX = NS_KEYRING_ERR_MAX,
	NS_SERVER_KEYS_REFUSAL_MAX = PATH_MAX + 128,  /* a refusal line, the allowlist's path in it */
};

/* Where the keys come from, and how messages name each setting.  The strings must outlive the keys. */
struct ns_server_keys_config {
	const char *keys;            /* comma-separated key files, the current one first */
	const char *key_setting;     /* "NOISESHIM_KEY", "--key" */
	const char *allow;           /* the allowlist's file; NULL or empty: every client enters */
	const char *allow_setting;   /* "NOISESHIM_ALLOW", "--allow" */
};

struct ns_server_keys {
	struct ns_server_keys_config cfg;
	struct ns_keyring *ring;     /* NULL: the key files did not load */
	struct ns_allowlist *allow;  /* NULL: none configured, or it did not load */
	uint64_t checked_ms;         /* atomic: when the files were last looked at */
	/* The last reload problem of each source, so that a lasting one is logged once. */
	char ring_problem[NS_SERVER_KEYS_ERR_MAX], allow_problem[NS_SERVER_KEYS_ERR_MAX];
};

/*
 * Load k from cfg.  0; -1 with err when the key files do not load; -2 with
 * err naming the allowlist's file (and line) when it cannot be read or has
 * a bad line: the ring is loaded, the allowlist is not, and
 * ns_server_keys_allowed refuses every client.  ns_server_keys_free k
 * either way.
 */
int ns_server_keys_load(struct ns_server_keys *k, const struct ns_server_keys_config *cfg,
                        char *err, size_t errlen);

/* Whether this caller is the one to look at the files now. */
int ns_server_keys_due(struct ns_server_keys *k);

/*
 * Re-read the key files and the allowlist if they changed, logging what
 * happened.  1 when a new ring replaced the old one (its current key may
 * be another), else 0.
 */
int ns_server_keys_refresh(struct ns_server_keys *k, ns_line_fn *log);

/* Whether a client with static key pub may enter: always without an allowlist, never without keys. */
int ns_server_keys_allowed(const struct ns_server_keys *k, const uint8_t pub[NS_KEY_LEN]);

/* "client KEY refused: its key is not in FILE (SETTING)": the line for a client kept out. */
void ns_server_keys_refusal(const struct ns_server_keys *k, const uint8_t pub[NS_KEY_LEN],
                            char *out, size_t cap);

/* Wipe and free the ring and the allowlist (k itself is the caller's). */
void ns_server_keys_free(struct ns_server_keys *k);

#endif
