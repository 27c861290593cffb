/*
 * The NodeURL cache: a text file, one NodeURL per line, indexed by address
 * and port.  '#' starts a comment that runs to the end of the line (it never
 * occurs in a NodeURL); blank lines are skipped.  Entries are matched
 * against connect() addresses and start Noise_IK, so each needs an IP
 * address (not a host name), a port and a noise_pub.  A line that does not
 * parse, lacks one of those, or repeats an earlier line's address and port
 * is reported with its file:line and skipped (the first line is kept).  A
 * table is immutable once loaded; the watcher swaps in a new one when the
 * file changes and keeps the last good table when the new file cannot be
 * read.
 */
#ifndef NOISESHIM_CACHE_H
#define NOISESHIM_CACHE_H

#include <stddef.h>
#include <sys/socket.h>

#include "nodeurl.h"

/* Called once per problem found while loading: file, 1-based line (0: whole file), reason. */
typedef void ns_report_fn(void *ctx, const char *file, unsigned line, const char *reason);

struct ns_cache_table;

/* Parse text (len bytes) named name into a new table; NULL only if out of memory. */
struct ns_cache_table *ns_cache_table_parse(const char *text, size_t len, const char *name,
                                            ns_report_fn *report, void *ctx);

/* Read and parse the file at path; NULL (errno set, reported with line 0) if unreadable. */
struct ns_cache_table *ns_cache_table_load(const char *path, ns_report_fn *report, void *ctx);

/* The entry for a connect() destination (IPv4, IPv6, or IPv4-mapped IPv6), or NULL. */
const struct ns_nodeurl *ns_cache_table_lookup(const struct ns_cache_table *t,
                                               const struct sockaddr *sa, socklen_t len);

/* Number of entries in the table. */
size_t ns_cache_table_count(const struct ns_cache_table *t);

/* Free a table; NULL is a no-op. */
void ns_cache_table_free(struct ns_cache_table *t);

struct ns_cache;

/* A watcher for the file at path; loads it once.  NULL if out of memory. */
struct ns_cache *ns_cache_open(const char *path, ns_report_fn *report, void *ctx);

/*
 * Reload when the file's identity, size or mtime changed.  Returns 1 if a
 * new table was swapped in, 0 if unchanged, -1 if the reload failed (the
 * last good table stays current).
 */
int ns_cache_refresh(struct ns_cache *c, ns_report_fn *report, void *ctx);

/* The current table, or NULL if no load ever succeeded. */
const struct ns_cache_table *ns_cache_current(const struct ns_cache *c);

/* Free the watcher and its table; NULL is a no-op. */
void ns_cache_close(struct ns_cache *c);

#endif
