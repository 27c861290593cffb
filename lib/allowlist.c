/*
 * The client allowlist: a sorted array of public keys, searched by bisection.
 */
#include "allowlist.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fileio.h"
#include "nodeurl.h"

enum {
	REASON_MAX = 256,
	EXCERPT_MAX = 60, /* how much of a bad line a report quotes */
	FIRST_CAPACITY = 16,
};

struct ns_allowlist {
	uint8_t (*keys)[NS_KEY_LEN];
	size_t count, capacity;
	char *path;                 /* NULL for a list parsed from text */
	struct ns_file_stamp stamp; /* of the file read */
};

static int is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
}

static int add_key(struct ns_allowlist *a, const uint8_t pub[NS_KEY_LEN])
{
	if (a->count == a->capacity) {
		size_t grown = a->capacity == 0 ? FIRST_CAPACITY : 2 * a->capacity;
		void *bigger = realloc(a->keys, grown * sizeof a->keys[0]);

		if (bigger == NULL)
			return -1;
		a->keys = bigger;
		a->capacity = grown;
	}
	memcpy(a->keys[a->count++], pub, NS_KEY_LEN);
	return 0;
}

/* Take one line: a comment, a blank, a key, or a problem to report.  -1 only when out of memory. */
static int parse_line(struct ns_allowlist *a, const char *text, size_t len, const char *name,
                      unsigned line, ns_report_fn *report, void *ctx)
{
	const char *hash = memchr(text, '#', len);
	char why[REASON_MAX];
	uint8_t pub[NS_KEY_LEN];
	enum ns_nodeurl_status status;

	if (hash != NULL)
		len = (size_t)(hash - text);
	while (len > 0 && is_space(*text)) {
		text++;
		len--;
	}
	while (len > 0 && is_space(text[len - 1]))
		len--;
	if (len == 0)
		return 0;
	status = ns_noise_pub_decode(text, len, pub);
	if (status != NS_NODEURL_OK) {
		snprintf(why, sizeof why, "not a public key in noise_pub form (%s): \"%.*s%s\"",
		         ns_nodeurl_strerror(status), (int)(len < EXCERPT_MAX ? len : EXCERPT_MAX),
		         text, len > EXCERPT_MAX ? "..." : "");
		report(ctx, NS_CACHE_ERROR, name, line, why);
		return 0;
	}
	return add_key(a, pub);
}

static int compare_keys(const void *x, const void *y)
{
	return memcmp(x, y, NS_KEY_LEN);
}

/* Sort, and drop repeats so that count is the number of distinct clients. */
static void sort_unique(struct ns_allowlist *a)
{
	size_t kept = 0;

	if (a->count == 0)
		return;
	qsort(a->keys, a->count, sizeof a->keys[0], compare_keys);
	for (size_t i = 0; i < a->count; i++)
		if (kept == 0 || memcmp(a->keys[kept - 1], a->keys[i], NS_KEY_LEN) != 0)
			memmove(a->keys[kept++], a->keys[i], NS_KEY_LEN);
	a->count = kept;
}

struct ns_allowlist *ns_allowlist_parse(const char *text, size_t len, const char *name,
                                        ns_report_fn *report, void *ctx)
{
	struct ns_allowlist *a = calloc(1, sizeof *a);
	const char *end = text + len;
	unsigned line = 0;

	if (a == NULL)
		goto err0;
	while (text < end) {
		const char *newline = memchr(text, '\n', (size_t)(end - text));
		size_t n = newline != NULL ? (size_t)(newline - text) : (size_t)(end - text);

		if (parse_line(a, text, n, name, ++line, report, ctx) != 0)
			goto err1;
		text += n + (newline != NULL);
	}
	sort_unique(a);
	return a;

err1:
	ns_allowlist_free(a);
err0:
	errno = ENOMEM;
	return NULL;
}

static void report_file_error(ns_report_fn *report, void *ctx, const char *path, int err)
{
	char why[REASON_MAX];

	snprintf(why, sizeof why, "cannot read the allowlist: %s", strerror(err));
	report(ctx, NS_CACHE_ERROR, path, 0, why);
}

struct ns_allowlist *ns_allowlist_load(const char *path, ns_report_fn *report, void *ctx)
{
	struct ns_file_stamp stamp;
	struct ns_allowlist *a;
	char *text;
	size_t len;

	if (ns_read_file(path, NS_ALLOWLIST_FILE_MAX, &text, &len, &stamp) != 0)
		goto err0;
	a = ns_allowlist_parse(text, len, path, report, ctx);
	free(text);
	if (a == NULL)
		goto err0;
	a->path = strdup(path);
	if (a->path == NULL) {
		ns_allowlist_free(a);
		errno = ENOMEM;
		goto err0;
	}
	a->stamp = stamp;
	return a;

err0:
	report_file_error(report, ctx, path, errno);
	return NULL;
}

int ns_allowlist_contains(const struct ns_allowlist *a, const uint8_t pub[NS_KEY_LEN])
{
	/* bsearch's base must not be NULL, even for no keys. */
	if (a->count == 0)
		return 0;
	return bsearch(pub, a->keys, a->count, sizeof a->keys[0], compare_keys) != NULL;
}

size_t ns_allowlist_count(const struct ns_allowlist *a)
{
	return a->count;
}

int ns_allowlist_changed(const struct ns_allowlist *a)
{
	struct ns_file_stamp now;

	if (a->path == NULL)
		return 0;
	return ns_file_stamp_get(a->path, &now) != 0 || !ns_file_stamp_same(&now, &a->stamp);
}

int ns_allowlist_refresh(struct ns_allowlist **list, ns_report_fn *report, void *ctx)
{
	struct ns_allowlist *fresh;

	if (!ns_allowlist_changed(*list))
		return 0;
	fresh = ns_allowlist_load((*list)->path, report, ctx);
	if (fresh == NULL)
		return -1;
	ns_allowlist_free(*list);
	*list = fresh;
	return 1;
}

void ns_allowlist_free(struct ns_allowlist *a)
{
	if (a == NULL)
		return;
	free(a->keys);
	free(a->path);
	free(a);
}
