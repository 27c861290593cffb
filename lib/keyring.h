/*
 * The server's key ring: NOISESHIM_KEY as a comma-separated list of private
 * key files (spaces around the commas are ignored).  The first key is
 * current: its public half goes into new NodeURLs.  The others are still
 * accepted, so that clients whose cache holds an older NodeURL keep
 * working while a server rotates its key.
 *
 * A ring is immutable once loaded.  The accept shim tries each key in
 * order on msg1 (the trial decrypt is the caller's); ns_keyring_refresh
 * swaps in a new ring when any file changed and keeps the old one, with
 * the reason in err, when the new files do not load.  Callers serialise
 * refreshes against use.  Private keys are wiped when a ring is freed.
 */
#ifndef NOISESHIM_KEYRING_H
#define NOISESHIM_KEYRING_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>

#include "noise.h"
#include "wire.h"

enum {
	NS_KEYRING_MAX = 8,          /* key files in one list */
	NS_KEYRING_ERR_MAX = 512,    /* enough for any reason, path included */
};

struct ns_keyring;

/*
 * Step through a key list: copy the entry at *cursor, trimmed, into path and
 * advance *cursor (to NULL after the last entry; start with the list
 * itself).  *n counts the entries seen, for messages.  1 with path filled,
 * 0 past the end, -1 with the reason in err for an empty or too long entry
 * (the cursor still advances, so a checker can go on to the next one).
 */
int ns_keyring_next_path(const char **cursor, unsigned *n, char path[PATH_MAX], char *err,
                         size_t errlen);

/*
 * Load every key file in list.  NULL with the reason in err, naming the
 * file (or the list entry) at fault; errno is ENOMEM when out of memory.
 */
struct ns_keyring *ns_keyring_load(const char *list, char *err, size_t errlen);

/* Number of keys: at least 1. */
size_t ns_keyring_count(const struct ns_keyring *r);

/* Key i, 0 being the current one; NULL past the end. */
const struct ns_keypair *ns_keyring_key(const struct ns_keyring *r, size_t i);

/* The file key i came from. */
const char *ns_keyring_path(const struct ns_keyring *r, size_t i);

/* Whether any file was replaced, rewritten, touched or removed since the load. */
int ns_keyring_changed(const struct ns_keyring *r);

/*
 * Reload *ring from the same list if ns_keyring_changed.  1 when a new ring
 * replaced (and freed) the old one, 0 when nothing changed, -1 with the
 * reason in err when the reload failed and *ring stays as it was.
 */
int ns_keyring_refresh(struct ns_keyring **ring, char *err, size_t errlen);

/* Wipe and free; NULL is a no-op. */
void ns_keyring_free(struct ns_keyring *r);

#endif
