/*
 * The client allowlist (NOISESHIM_ALLOW): the static public keys of the
 * clients a server lets in.  A text file, one key per line in noise_pub
 * form (what `noiseshim pubkey` prints); '#' starts a comment that runs to
 * the end of the line; blank lines and spaces around a key are skipped.
 * A line that is not a key is reported with its file:line and skipped, so
 * a mistake can only keep a client out, never let one in.
 *
 * A list is immutable once loaded.  ns_allowlist_refresh swaps in a new one
 * when the file changed and keeps the old one when the new file cannot be
 * read.  Callers serialise refreshes against lookups.
 */
#ifndef NOISESHIM_ALLOWLIST_H
#define NOISESHIM_ALLOWLIST_H

#include <stddef.h>
#include <stdint.h>

#include "cache.h"
#include "wire.h"

enum {
	NS_ALLOWLIST_FILE_MAX = 16 << 20, /* bytes: some 300,000 keys */
};

struct ns_allowlist;

/* Parse text (len bytes) named name.  NULL only if out of memory. */
struct ns_allowlist *ns_allowlist_parse(const char *text, size_t len, const char *name,
                                        ns_report_fn *report, void *ctx);

/*
 * Read and parse the file at path, remembering it for ns_allowlist_changed.
 * NULL (errno set, reported with line 0) when it cannot be read.
 */
struct ns_allowlist *ns_allowlist_load(const char *path, ns_report_fn *report, void *ctx);

/* Whether pub is listed. */
int ns_allowlist_contains(const struct ns_allowlist *a, const uint8_t pub[NS_KEY_LEN]);

/* Number of distinct keys listed. */
size_t ns_allowlist_count(const struct ns_allowlist *a);

/* Whether the file a list was loaded from was replaced, rewritten, touched or removed. */
int ns_allowlist_changed(const struct ns_allowlist *a);

/*
 * Reload *list from its file if ns_allowlist_changed.  1 when a new list
 * replaced (and freed) the old one, 0 when nothing changed, -1 (reported
 * with line 0) when the file cannot be read and *list stays as it was.
 */
int ns_allowlist_refresh(struct ns_allowlist **list, ns_report_fn *report, void *ctx);

/* Free; NULL is a no-op. */
void ns_allowlist_free(struct ns_allowlist *a);

#endif
