/*
 * The NodeURL cache: a text file, one NodeURL per line, compiled into a
 * read-only index (cacheindex.h) that every process maps and shares.
 *
 * Lines.  '#' starts a comment that runs to the end of the line (it never
 * occurs in a NodeURL); blank lines are skipped.  An entry needs an IP
 * address (not a host name), a port and a noise_pub, and a supported
 * noise_proto if it has one.  Every problem is reported with its file:line:
 *   - a line whose address and port parse but whose other parts do not (a
 *     bad noise_pub, no noise_pub, a bad node id, an unknown noise_proto...)
 *     becomes a BROKEN entry: connects to that address are refused, never
 *     sent in plaintext;
 *   - a line that gives no address and port is skipped;
 *   - a line that repeats an earlier line's address and port is skipped
 *     (the first is kept, whether entry or broken).
 *
 * Index.  Kept next to the text file (FILE.idx) when that directory is
 * writable, else in $XDG_RUNTIME_DIR/noiseshim/ or /tmp/noiseshim-UID/
 * (mode 0700, named by a hash of the cache's real path).  Whoever finds it
 * missing, invalid or compiled from another version of the text file (by
 * dev, inode, size and mtime) rebuilds it: a temporary file, renamed over
 * the old one, so concurrent rebuilders only race to an identical result.
 * When no place is writable the index is built in anonymous memory.
 *
 * Watcher.  ns_cache_lookup is lock-free and never waits for a rebuild: at
 * most once a second one caller stats the text file, and a change starts a
 * background thread that builds or maps the new index and swaps it in; the
 * old one is unmapped once no lookup still reads it.  A reload that fails
 * keeps the last good index.  After fork the child starts a new thread when
 * it needs one.
 */
#ifndef NOISESHIM_CACHE_H
#define NOISESHIM_CACHE_H

#include <limits.h>
#include <stddef.h>
#include <sys/socket.h>

#include "cacheindex.h"
#include "nodeurl.h"

enum ns_cache_level { NS_CACHE_ERROR, NS_CACHE_WARN, NS_CACHE_DEBUG };

/*
 * Called for what loading finds: problems in the cache (ERROR) with their
 * file and 1-based line (0: the whole file), the in-memory fallback (WARN),
 * and which index was built or mapped (DEBUG).
 */
typedef void ns_report_fn(void *ctx, enum ns_cache_level level, const char *file, unsigned line,
                          const char *reason);

enum ns_cache_verdict {
	NS_CACHE_MISS,       /* not a cached destination: plain libc */
	NS_CACHE_HIT,        /* a Noise node: url says how to reach it */
	NS_CACHE_BROKEN,     /* a line for it exists but is bad: refuse */
	NS_CACHE_UNREADABLE, /* the cache never loaded: refuse every connect */
};

enum {
	NS_CACHE_WHERE_MAX = PATH_MAX + sizeof ":4294967295",
	NS_CACHE_REASON_MAX = 64,
};

struct ns_cache_hit {
	struct ns_nodeurl url;               /* HIT: what connect needs (no node id, no debounce) */
	char where[NS_CACHE_WHERE_MAX];      /* HIT, BROKEN: FILE:LINE */
	char reason[NS_CACHE_REASON_MAX];    /* BROKEN */
};

/* One compiled index, mapped read-only. */
struct ns_cache_table;

/* Compile text (len bytes) named name into an in-memory table; NULL if out of memory. */
struct ns_cache_table *ns_cache_table_parse(const char *text, size_t len, const char *name,
                                            ns_report_fn *report, void *ctx);

/* Read and compile the file at path in memory; NULL (errno set, reported with line 0) if unreadable. */
struct ns_cache_table *ns_cache_table_load(const char *path, ns_report_fn *report, void *ctx);

/* What the table says about a connect() destination (IPv4, IPv6, or IPv4-mapped IPv6). */
enum ns_cache_verdict ns_cache_table_lookup(const struct ns_cache_table *t,
                                            const struct sockaddr *sa, socklen_t len,
                                            struct ns_cache_hit *out);

/* Usable entries, and broken entries, in the table. */
size_t ns_cache_table_count(const struct ns_cache_table *t);
size_t ns_cache_table_broken(const struct ns_cache_table *t);

/* Free a table; NULL is a no-op. */
void ns_cache_table_free(struct ns_cache_table *t);

/*
 * Compile the text file at path into its index file now, whether or not it
 * is current (for the CLI, after it rewrites the file).  Problems go to
 * report; *entries and *broken get the counts.  0, or -1 (errno set) if the text could not be read; an index
 * that can only be built in memory still counts as success.
 */
int ns_cache_index_update(const char *path, ns_report_fn *report, void *ctx, size_t *entries,
                          size_t *broken);

struct ns_cache;

/*
 * A watcher for the file at path: maps its index now (building it first if
 * needed, which only this first call ever waits for).  report and ctx are
 * kept for later reloads and may be called from the reload thread.  NULL if
 * out of memory; a missing file is reported and retried by later lookups.
 */
struct ns_cache *ns_cache_open(const char *path, ns_report_fn *report, void *ctx);

/* Look up a connect() destination; lock-free, safe from any thread and after fork. */
enum ns_cache_verdict ns_cache_lookup(struct ns_cache *c, const struct sockaddr *sa,
                                      socklen_t len, struct ns_cache_hit *out);

/*
 * Reload now, in the calling thread, if the text file changed (for tests
 * and tools that cannot wait for the once-a-second check).  1 if a new
 * index was swapped in, 0 if unchanged, -1 if the reload failed (the last
 * good index stays current).
 */
int ns_cache_refresh(struct ns_cache *c);

/* Entries in the current index (0 if none is loaded). */
size_t ns_cache_count(struct ns_cache *c);

/* Free the watcher and its index (no lookup may be running); NULL is a no-op. */
void ns_cache_close(struct ns_cache *c);

#endif
