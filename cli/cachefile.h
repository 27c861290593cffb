/*
 * The cache file as text: where it is, its lines, and atomic rewrites that
 * keep every line the command did not mean to change.
 */
#ifndef NOISESHIM_CLI_CACHEFILE_H
#define NOISESHIM_CLI_CACHEFILE_H

#include <stddef.h>
#include <sys/types.h>

/* Path of the cache: $NOISESHIM_CACHE, else ~/.config/noiseshim/cache.  -1 with an error printed. */
int cachefile_default_path(char *out, size_t cap);

/* A cache file read whole. */
struct cachefile {
	char *text;
	size_t len;
	mode_t mode;   /* permission bits a rewrite keeps */
	int exists;
};

/* Read path; a missing file reads as empty if missing_ok.  -1 with an error printed. */
int cachefile_read(const char *path, int missing_ok, struct cachefile *f);

/* Release what cachefile_read allocated. */
void cachefile_release(struct cachefile *f);

/*
 * Make text the content of path atomically: a temporary file in the same
 * directory, written, synced, then renamed over path (a symlink's target
 * is replaced, not the link).  Missing parent directories are created.
 * -1 with an error printed; path is then unchanged.
 */
int cachefile_replace(const char *path, const char *text, size_t len, mode_t mode);

/* One line of a cache file; zero-initialise before the first cachefile_next_line. */
struct cache_line {
	const char *text;  /* without its newline */
	size_t len;
	unsigned number;   /* 1-based */
	const char *entry; /* the NodeURL on the line, comment and blanks removed */
	size_t entry_len;  /* 0 for blank and comment-only lines */
	size_t next;       /* offset of the following line */
};

/* Step line to the next line of text (len bytes).  Returns 1, or 0 past the last line. */
int cachefile_next_line(const char *text, size_t len, struct cache_line *line);

#endif
