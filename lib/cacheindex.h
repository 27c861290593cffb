/*
 * The compiled NodeURL cache index: one read-only block of memory (a file
 * mapped with mmap, or an anonymous mapping of the same bytes) that every
 * process on the host can share through the page cache.
 *
 * Layout, all integers in host byte order (an index never leaves the host):
 *
 *   header   NS_INDEX_HEADER_SIZE bytes: magic, version, sizes, a random
 *            hash seed, the identity of the text file it was compiled from
 *            (dev, ino, size, mtime in ns), how many of its lines had
 *            problems, and a checksum over the header and path
 *   path     the text file's path as given, NUL-terminated, padded to 64
 *   buckets  bucket_count (a power of two) buckets of one 64-byte cache
 *            line: 15 slots of 32 bits and a checksum of the bucket.  A
 *            slot is 0 when empty, else an 8-bit tag from the key's hash
 *            over 24 bits of record index + 1.  Open addressing, linear
 *            probing from bucket to bucket.
 *   records  record_count records of one 64-byte cache line, each with its
 *            own checksum: address, port, line, noise_pub, noise_proto and
 *            the low 16 bits of f (a NodeURL's node id and debounce are not
 *            kept: connect() needs neither); a broken entry keeps a code
 *            for its reason instead
 *
 * A key is (family, address, port) with IPv4-mapped IPv6 folded to IPv4.
 * The table is at most half full, so a bucket is almost never full: a
 * lookup of an absent key reads one cache line, and a hit a second one,
 * its record (the tag rules out nearly every other occupied slot).  A
 * record is an entry (a NodeURL the shim can use) or a broken entry: a line
 * whose address and port parse but whose other parameters do not, kept
 * with its line number and reason so that connects to it fail closed.
 *
 * Validation is in two parts, so that opening a million-entry index costs
 * no more than opening a small one.  ns_index_validate checks the header,
 * its checksum, and that the sizes add up to the file's (so a truncated
 * file is never read past its end).  Every bucket and record checksum is
 * checked by the lookup that reads it; one that fails makes the lookup
 * CORRUPT (refused, never a miss), and the caller rebuilds.
 */
#ifndef NOISESHIM_CACHEINDEX_H
#define NOISESHIM_CACHEINDEX_H

#include <stddef.h>
#include <stdint.h>

#include "nodeurl.h"

enum {
	NS_INDEX_VERSION = 2,
	NS_INDEX_HEADER_SIZE = 128,
	NS_INDEX_RECORD_SIZE = 64,
	NS_INDEX_MAX_ENTRIES = (1 << 24) - 1, /* what the 24-bit record field can name */
	NS_INDEX_PATH_MAX = 4096,
};

/* What identifies one version of the text file: a rename, rewrite or touch changes it. */
struct ns_file_id {
	uint64_t dev;
	uint64_t ino;
	uint64_t size;
	int64_t mtime_sec;
	int64_t mtime_nsec;
};

/* A key as the index hashes it. */
struct ns_index_key {
	uint8_t addr[16]; /* IPv4: first 4 bytes, rest zero */
	uint16_t port;
	uint8_t family;   /* NS_ADDR_IPV4 or NS_ADDR_IPV6 */
};

/* Fill *k for an address; an IPv4-mapped IPv6 address gets its IPv4 key. */
void ns_index_make_key(struct ns_index_key *k, enum ns_addr_family family, const uint8_t *addr,
                       uint16_t port);

/* Bytes a build of at most max_entries entries from source path may need. */
size_t ns_index_max_size(size_t max_entries, const char *path);

/* An index being written into caller-provided, zeroed memory. */
struct ns_index_builder {
	uint8_t *base;
	size_t cap;
	uint64_t bucket_count;
	uint64_t record_count;
	uint64_t broken_count;
	uint64_t seed;
	size_t records_offset;
};

/*
 * Start an index of at most max_entries in mem (cap bytes, zeroed, at least
 * ns_index_max_size), for the text file path whose identity is *src.
 * -1 if max_entries or path is too big.
 */
int ns_index_begin(struct ns_index_builder *b, void *mem, size_t cap, size_t max_entries,
                   const char *path, const struct ns_file_id *src, uint64_t seed);

/*
 * Add an entry, or (reason != 0, the caller's code for why) a broken entry
 * for u's address and port only.  Returns 0 if added, else the line number
 * of the earlier entry with the same key (which is kept); -1 if the
 * builder is full.
 */
long ns_index_add(struct ns_index_builder *b, const struct ns_nodeurl *u, unsigned line,
                  uint8_t reason);

/* Write the header (with how many lines had problems) and checksum; returns the size in bytes. */
size_t ns_index_finish(struct ns_index_builder *b, uint64_t problem_lines);

/* Check the header of the index held in len bytes of mem; NULL if valid, else why not. */
const char *ns_index_validate(const void *mem, size_t len);

/* The text file's identity and path recorded in a valid index. */
void ns_index_source(const void *mem, struct ns_file_id *src, const char **path);

/* Counts in a valid index: entries, broken entries, lines that were reported. */
size_t ns_index_entry_count(const void *mem);
size_t ns_index_broken_count(const void *mem);
uint64_t ns_index_problem_count(const void *mem);

enum ns_index_result { NS_INDEX_MISS, NS_INDEX_HIT, NS_INDEX_BROKEN, NS_INDEX_CORRUPT };

/*
 * Find key in a valid index.  On a hit *u is the entry and *line its line;
 * on a broken entry *line and *reason (the code it was added with) say why;
 * a bucket or record that fails its checksum makes it CORRUPT.
 */
enum ns_index_result ns_index_lookup(const void *mem, const struct ns_index_key *key,
                                     struct ns_nodeurl *u, unsigned *line, uint8_t *reason);

#endif
