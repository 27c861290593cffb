/*
 * noiseshim cache: add, remove, list and check the entries of a client's
 * NodeURL cache.  What counts as an entry, and what is wrong with a line,
 * is decided by the cache loader itself, so these commands agree with
 * what the shim will use.
 */
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cache.h"
#include "cachefile.h"
#include "cli.h"
#include "nodeurl.h"

static const char USAGE[] =
	"usage: noiseshim cache add URL [--cache FILE]\n"
	"       noiseshim cache remove ADDR:PORT [--cache FILE]\n"
	"       noiseshim cache list [--cache FILE]\n"
	"       noiseshim cache check [--cache FILE]\n"
	"\n"
	"Edit or check the NodeURL cache that the client shim reads: FILE, else\n"
	"$NOISESHIM_CACHE, else ~/.config/noiseshim/cache.\n"
	"\n"
	"  add URL           append URL (as printed by 'noiseshim nodeurl'), refusing\n"
	"                    it if the cache already has its address and port\n"
	"  remove ADDR:PORT  delete the lines for ADDR:PORT ([::1]:7777 for IPv6)\n"
	"  list              print each entry the shim uses, in canonical form\n"
	"  check             print every problem as FILE:LINE: reason; exit 1 if any\n"
	"\n"
	"add and remove rewrite the file atomically and keep comments and other lines.\n";

static const struct option OPTIONS[] = {
	{ "cache", required_argument, NULL, 'c' },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

enum {
	ENDPOINT_TEXT_MAX = NS_NODEURL_HOST_MAX + sizeof "[]:65535",
};

static const uint8_t V4_MAPPED_PREFIX[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

/* The 4 address bytes of an IPv4 or IPv4-mapped IPv6 host, else NULL. */
static const uint8_t *ipv4_of(const struct ns_nodeurl *u)
{
	if (u->family == NS_ADDR_IPV4)
		return u->addr;
	if (u->family == NS_ADDR_IPV6 &&
	    memcmp(u->addr, V4_MAPPED_PREFIX, sizeof V4_MAPPED_PREFIX) == 0)
		return u->addr + sizeof V4_MAPPED_PREFIX;
	return NULL;
}

/* Whether a and b name the same address and port, as the shim matches connect() calls. */
static int same_endpoint(const struct ns_nodeurl *a, const struct ns_nodeurl *b)
{
	const uint8_t *a4 = ipv4_of(a), *b4 = ipv4_of(b);

	if (a->port != b->port)
		return 0;
	if (a4 != NULL || b4 != NULL)
		return a4 != NULL && b4 != NULL && memcmp(a4, b4, 4) == 0;
	if (a->family != b->family)
		return 0;
	if (a->family == NS_ADDR_IPV6)
		return memcmp(a->addr, b->addr, 16) == 0;
	return strcasecmp(a->host, b->host) == 0;
}

/* u's HOST:PORT for messages, with an IPv6 host in brackets. */
static const char *endpoint_text(const struct ns_nodeurl *u, char out[ENDPOINT_TEXT_MAX])
{
	snprintf(out, ENDPOINT_TEXT_MAX, u->family == NS_ADDR_IPV6 ? "[%s]:%u" : "%s:%u", u->host,
	         (unsigned)u->port);
	return out;
}

/* Parse the entry on line, if it has one that is a NodeURL. */
static int parse_line_entry(const struct cache_line *line, struct ns_nodeurl *u)
{
	return line->entry_len > 0 &&
	       ns_nodeurl_parse(line->entry, line->entry_len, u) == NS_NODEURL_OK;
}

/* The first problem the cache loader reports. */
struct first_problem {
	int found;
	char reason[512];
};

static void keep_first_problem(void *ctx, enum ns_cache_level level, const char *file,
                               unsigned line, const char *reason)
{
	struct first_problem *p = ctx;

	if (level != NS_CACHE_ERROR || p->found)
		return;
	p->found = 1;
	snprintf(p->reason, sizeof p->reason, "%s", reason);
}

/* Notes about the index (it could only be built in memory) go to stderr. */
static void print_index_note(void *ctx, enum ns_cache_level level, const char *file,
                             unsigned line, const char *reason)
{
	if (level == NS_CACHE_WARN)
		cli_error("%s: %s", file, reason);
}

/* Rewrite path and then its index, so that no program has to compile it on its next connect. */
static int replace_and_index(const char *path, const char *text, size_t len, mode_t mode)
{
	size_t entries, broken;

	if (cachefile_replace(path, text, len, mode) < 0)
		return -1;
	if (ns_cache_index_update(path, print_index_note, NULL, &entries, &broken) < 0)
		cli_error("%s: written, but its index could not be rebuilt; programs will "
		          "rebuild it", path);
	return 0;
}

/* Check that url would be loaded as a cache entry on its own, and parse it into *u. */
static int parse_new_entry(const char *url, struct ns_nodeurl *u)
{
	struct first_problem problem = { 0 };
	struct ns_cache_table *table;
	size_t entries;

	/* A newline would make two lines, and '#' would start a comment. */
	if (url[strcspn(url, " \t\r\n\v\f#")] != '\0') {
		cli_error("'%s': a NodeURL has no blanks and no '#'", url);
		return -1;
	}
	table = ns_cache_table_parse(url, strlen(url), "URL", keep_first_problem, &problem);
	if (table == NULL) {
		cli_error("out of memory");
		return -1;
	}
	entries = ns_cache_table_count(table);
	ns_cache_table_free(table);
	if (problem.found) {
		cli_error("not added (the cache is unchanged): %s", problem.reason);
		return -1;
	}
	if (entries != 1) {
		cli_error("no NodeURL given");
		return -1;
	}
	return ns_nodeurl_parse(url, strlen(url), u) == NS_NODEURL_OK ? 0 : -1;
}

/* Refuse u if a line of f already has its address and port. */
static int check_not_present(const char *path, const struct cachefile *f,
                             const struct ns_nodeurl *u)
{
	struct cache_line line = { 0 };
	struct ns_nodeurl existing;
	char endpoint[ENDPOINT_TEXT_MAX];

	while (cachefile_next_line(f->text, f->len, &line)) {
		if (!parse_line_entry(&line, &existing) || !same_endpoint(&existing, u))
			continue;
		endpoint_text(u, endpoint);
		cli_error("%s:%u: already has an entry for %s; remove it first with: "
		          "noiseshim cache remove %s",
		          path, line.number, endpoint, endpoint);
		return -1;
	}
	return 0;
}

static int cache_add(const char *path, const char *url)
{
	char canonical[NS_NODEURL_STR_MAX];
	struct cachefile f;
	struct ns_nodeurl u;
	size_t n, len;
	char *text;

	if (parse_new_entry(url, &u) < 0)
		goto err0;
	n = ns_nodeurl_format(&u, canonical, sizeof canonical);
	if (n == 0) {
		cli_error("'%s': too long for a cache entry", url);
		goto err0;
	}
	if (cachefile_read(path, 1, &f) < 0)
		goto err0;
	if (check_not_present(path, &f, &u) < 0)
		goto err1;
	/* The old text, a newline if its last line lacks one, the entry and its newline. */
	text = malloc(f.len + n + 2);
	if (text == NULL) {
		cli_error("out of memory");
		goto err1;
	}
	memcpy(text, f.text, f.len);
	len = f.len;
	if (len > 0 && text[len - 1] != '\n')
		text[len++] = '\n';
	memcpy(text + len, canonical, n);
	len += n;
	text[len++] = '\n';
	if (replace_and_index(path, text, len, f.mode) < 0)
		goto err2;
	free(text);
	cachefile_release(&f);
	return 0;

err2:
	free(text);
err1:
	cachefile_release(&f);
err0:
	return 1;
}

/* Parse ADDR:PORT (or a whole NodeURL) naming the entries to remove. */
static int parse_endpoint(const char *arg, struct ns_nodeurl *u)
{
	enum ns_nodeurl_status status = ns_nodeurl_parse(arg, strlen(arg), u);

	if (status != NS_NODEURL_OK) {
		cli_error("'%s': %s", arg, ns_nodeurl_strerror(status));
		return -1;
	}
	if (u->port == 0) {
		cli_error("'%s': no port; expected ADDR:PORT", arg);
		return -1;
	}
	return 0;
}

/* Copy into out the lines of f whose entry is not for target; returns how many were dropped. */
static unsigned drop_endpoint(const struct cachefile *f, const struct ns_nodeurl *target,
                              char *out, size_t *outlen)
{
	struct cache_line line = { 0 };
	struct ns_nodeurl u;
	unsigned dropped = 0;

	*outlen = 0;
	while (cachefile_next_line(f->text, f->len, &line)) {
		/* The line and its newline, if it has one. */
		size_t n = line.next <= f->len ? line.len + 1 : line.len;

		if (parse_line_entry(&line, &u) && same_endpoint(&u, target)) {
			dropped++;
			continue;
		}
		memcpy(out + *outlen, line.text, n);
		*outlen += n;
	}
	return dropped;
}

static int cache_remove(const char *path, const char *arg)
{
	struct ns_nodeurl target;
	struct cachefile f;
	size_t len;
	char *text;

	if (parse_endpoint(arg, &target) < 0 || cachefile_read(path, 0, &f) < 0)
		goto err0;
	text = malloc(f.len + 1);
	if (text == NULL) {
		cli_error("out of memory");
		goto err1;
	}
	if (drop_endpoint(&f, &target, text, &len) == 0) {
		char endpoint[ENDPOINT_TEXT_MAX];

		cli_error("%s: no entry for %s", path, endpoint_text(&target, endpoint));
		goto err2;
	}
	if (replace_and_index(path, text, len, f.mode) < 0)
		goto err2;
	free(text);
	cachefile_release(&f);
	return 0;

err2:
	free(text);
err1:
	cachefile_release(&f);
err0:
	return 1;
}

/* Lines the cache loader skipped, by line number; each is also reported on stderr. */
struct skipped_lines {
	unsigned nlines;
	unsigned char *skipped; /* nlines + 1 flags */
};

static void note_skipped_line(void *ctx, enum ns_cache_level level, const char *file,
                              unsigned line, const char *reason)
{
	struct skipped_lines *s = ctx;

	if (level != NS_CACHE_ERROR)
		return;
	cli_error("%s:%u: skipped: %s", file, line, reason);
	if (line <= s->nlines)
		s->skipped[line] = 1;
}

static unsigned count_lines(const struct cachefile *f)
{
	struct cache_line line = { 0 };

	while (cachefile_next_line(f->text, f->len, &line))
		;
	return line.number;
}

/* Print the canonical form of each line the loader kept. */
static int print_kept_entries(const struct cachefile *f, const struct skipped_lines *s)
{
	struct cache_line line = { 0 };
	char canonical[NS_NODEURL_STR_MAX];
	struct ns_nodeurl u;

	while (cachefile_next_line(f->text, f->len, &line)) {
		if (s->skipped[line.number] || !parse_line_entry(&line, &u))
			continue;
		if (ns_nodeurl_format(&u, canonical, sizeof canonical) == 0)
			return -1;
		printf("%s\n", canonical);
	}
	return 0;
}

static int cache_list(const char *path, const char *operand)
{
	struct skipped_lines skipped;
	struct ns_cache_table *table;
	struct cachefile f;

	if (cachefile_read(path, 0, &f) < 0)
		goto err0;
	skipped.nlines = count_lines(&f);
	skipped.skipped = calloc(skipped.nlines + 1, 1);
	if (skipped.skipped == NULL) {
		cli_error("out of memory");
		goto err1;
	}
	table = ns_cache_table_parse(f.text, f.len, path, note_skipped_line, &skipped);
	if (table == NULL) {
		cli_error("out of memory");
		goto err2;
	}
	ns_cache_table_free(table);
	if (print_kept_entries(&f, &skipped) < 0) {
		cli_error("%s: an entry does not fit %d bytes", path, NS_NODEURL_STR_MAX);
		goto err2;
	}
	free(skipped.skipped);
	cachefile_release(&f);
	return 0;

err2:
	free(skipped.skipped);
err1:
	cachefile_release(&f);
err0:
	return 1;
}

/* Problems go to stdout and are counted; a note about the index goes to stderr. */
static void print_problem(void *ctx, enum ns_cache_level level, const char *file, unsigned line,
                          const char *reason)
{
	unsigned *problems = ctx;

	if (level == NS_CACHE_DEBUG)
		return;
	if (level == NS_CACHE_WARN) {
		cli_error("%s: %s", file, reason);
		return;
	}
	(*problems)++;
	if (line == 0)
		printf("%s: %s\n", file, reason);
	else
		printf("%s:%u: %s\n", file, line, reason);
}

/* Report every problem, and leave the index current (check is what a satellite runs after writing). */
static int cache_check(const char *path, const char *operand)
{
	unsigned problems = 0;
	size_t entries, broken;

	if (ns_cache_index_update(path, print_problem, &problems, &entries, &broken) < 0)
		return 1;
	if (problems > 0) {
		if (broken > 0)
			printf("%s: %zu %s refused: their lines are broken\n", path, broken,
			       broken == 1 ? "address is" : "addresses are");
		return 1;
	}
	printf("%s: %zu %s, no problems\n", path, entries, entries == 1 ? "entry" : "entries");
	return 0;
}

struct action {
	const char *name;
	int operands; /* 0 or 1 */
	const char *operand_name;
	int (*run)(const char *path, const char *operand);
};

static const struct action ACTIONS[] = {
	{ "add", 1, "URL", cache_add },
	{ "remove", 1, "ADDR:PORT", cache_remove },
	{ "list", 0, NULL, cache_list },
	{ "check", 0, NULL, cache_check },
};

static const struct action *find_action(const char *name)
{
	for (size_t i = 0; i < sizeof ACTIONS / sizeof ACTIONS[0]; i++)
		if (strcmp(name, ACTIONS[i].name) == 0)
			return &ACTIONS[i];
	return NULL;
}

/* Check the action word and its operand count: the action, or NULL with *done set. */
static const struct action *parse_action(int argc, char **argv, int *done)
{
	const struct action *a;
	int operands;

	if (optind >= argc) {
		*done = cli_usage_error(argv[0], USAGE, "no action given");
		return NULL;
	}
	a = find_action(argv[optind]);
	if (a == NULL) {
		*done = cli_usage_error(argv[0], USAGE, "unknown action '%s'", argv[optind]);
		return NULL;
	}
	operands = argc - optind - 1;
	if (operands < a->operands) {
		*done = cli_usage_error(argv[0], USAGE, "%s needs %s", a->name, a->operand_name);
		return NULL;
	}
	if (operands > a->operands) {
		*done = cli_usage_error(argv[0], USAGE, "unexpected argument '%s'",
		                        argv[optind + 1 + a->operands]);
		return NULL;
	}
	return a;
}

/* noiseshim cache add|remove|list|check: edit or check a NodeURL cache. */
int cmd_cache(int argc, char **argv)
{
	const char *cache_path = NULL;
	const struct action *action;
	char default_path[PATH_MAX];
	int c, done;

	while ((c = getopt_long(argc, argv, ":c:h", OPTIONS, NULL)) != -1) {
		switch (c) {
		case 'c':
			cache_path = optarg;
			break;
		case 'h':
			return cli_help(USAGE);
		default:
			return cli_option_error(argv[0], USAGE, c, argv);
		}
	}
	action = parse_action(argc, argv, &done);
	if (action == NULL)
		return done;
	if (cache_path == NULL) {
		if (cachefile_default_path(default_path, sizeof default_path) < 0)
			return 1;
		cache_path = default_path;
	}
	return action->run(cache_path, action->operands > 0 ? argv[optind + 1] : NULL);
}
