/*
 * The NodeURL cache: parse a text file into a hash table keyed by
 * (family, address, port), and reload it when the file changes.
 */
#include "cache.h"

#include "cipher.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Running out of memory must not exit() the host program: uthash flags the entry instead. */
#define HASH_NONFATAL_OOM 1
#define uthash_nonfatal_oom(entry) ((entry)->not_added = 1)
#include <uthash.h>

enum {
	REASON_MAX = 256,
	EXCERPT_MAX = 100, /* how much of a bad line a report quotes */
	READ_CHUNK = 4096,
};

/* Hashed as raw bytes, so always zeroed before it is filled. */
struct cache_key {
	uint8_t addr[16];
	uint16_t port;
	uint8_t family;
};

struct cache_entry {
	struct cache_key key;
	unsigned line;    /* where the entry came from, for duplicate reports */
	int not_added;    /* set by uthash when it could not allocate */
	struct ns_nodeurl url;
	UT_hash_handle hh;
};

struct ns_cache_table {
	struct cache_entry *entries;
};

/* What identifies one version of the file: a rename, rewrite or touch changes it. */
struct file_stamp {
	dev_t dev;
	ino_t ino;
	off_t size;
	struct timespec mtime;
};

struct ns_cache {
	char *path;
	struct ns_cache_table *table;
	struct file_stamp stamp; /* of the file that table was loaded from */
};

/* Where parsed lines go and where problems are reported. */
struct loader {
	struct ns_cache_table *table;
	const char *name;
	ns_report_fn *report;
	void *ctx;
};

static const uint8_t V4_MAPPED_PREFIX[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

/* Build the key for an address; an IPv4-mapped IPv6 address gets its IPv4 key. */
static void make_key(struct cache_key *k, enum ns_addr_family family, const uint8_t *addr,
                     uint16_t port)
{
	memset(k, 0, sizeof *k);
	if (family == NS_ADDR_IPV6 && memcmp(addr, V4_MAPPED_PREFIX, sizeof V4_MAPPED_PREFIX) == 0) {
		family = NS_ADDR_IPV4;
		addr += sizeof V4_MAPPED_PREFIX;
	}
	k->family = (uint8_t)family;
	memcpy(k->addr, addr, family == NS_ADDR_IPV4 ? 4 : 16);
	k->port = port;
}

/* Key for a connect() destination; -1 for other families or a short length. */
static int key_from_sockaddr(struct cache_key *k, const struct sockaddr *sa, socklen_t len)
{
	if (sa == NULL)
		return -1;
	if (sa->sa_family == AF_INET && len >= sizeof(struct sockaddr_in)) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)sa;

		make_key(k, NS_ADDR_IPV4, (const uint8_t *)&in->sin_addr, ntohs(in->sin_port));
		return 0;
	}
	if (sa->sa_family == AF_INET6 && len >= sizeof(struct sockaddr_in6)) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;

		make_key(k, NS_ADDR_IPV6, in6->sin6_addr.s6_addr, ntohs(in6->sin6_port));
		return 0;
	}
	return -1;
}

static void report_problem(const struct loader *ld, unsigned line, const char *reason,
                           const char *text, size_t len)
{
	char msg[REASON_MAX];

	if (ld->report == NULL)
		return;
	if (len > EXCERPT_MAX)
		snprintf(msg, sizeof msg, "%s: \"%.*s...\"", reason, (int)EXCERPT_MAX, text);
	else
		snprintf(msg, sizeof msg, "%s: \"%.*s\"", reason, (int)len, text);
	ld->report(ld->ctx, ld->name, line, msg);
}

static void report_file_error(ns_report_fn *report, void *ctx, const char *path, int err)
{
	char msg[REASON_MAX];

	if (report == NULL)
		return;
	snprintf(msg, sizeof msg, "cannot read the cache: %s", strerror(err));
	report(ctx, path, 0, msg);
}

/* Why a well-formed NodeURL cannot be a cache entry, or NULL if it can. */
static const char *unusable_reason(const struct ns_nodeurl *u)
{
	/* Entries are matched against connect() addresses and start Noise_IK. */
	if (u->family == NS_ADDR_NAME)
		return "host is a name, not an IP address";
	if (u->port == 0)
		return "no port";
	if (!u->has_noise_pub)
		return "no noise_pub";
	if (u->noise_proto != 0 && ns_suite_from_proto(u->noise_proto) == 0)
		return "unsupported noise_proto (1 = ChaChaPoly, 2 = AESGCM)";
	return NULL;
}

/* Add the NodeURL in text (trimmed, non-empty); bad lines are reported.  -1 if out of memory. */
static int add_entry(struct loader *ld, unsigned line, const char *text, size_t len)
{
	struct ns_nodeurl url;
	struct cache_key key;
	struct cache_entry *entry;
	enum ns_nodeurl_status status;
	const char *problem;
	char why[REASON_MAX];

	status = ns_nodeurl_parse(text, len, &url);
	problem = status != NS_NODEURL_OK ? ns_nodeurl_strerror(status) : unusable_reason(&url);
	if (problem != NULL) {
		report_problem(ld, line, problem, text, len);
		return 0;
	}
	make_key(&key, url.family, url.addr, url.port);
	HASH_FIND(hh, ld->table->entries, &key, sizeof key, entry);
	if (entry != NULL) {
		snprintf(why, sizeof why, "same address and port as line %u, which is kept",
		         entry->line);
		report_problem(ld, line, why, text, len);
		return 0;
	}
	entry = calloc(1, sizeof *entry);
	if (entry == NULL)
		return -1;
	entry->key = key;
	entry->line = line;
	entry->url = url;
	HASH_ADD(hh, ld->table->entries, key, sizeof entry->key, entry);
	if (entry->not_added) {
		free(entry);
		return -1;
	}
	return 0;
}

static int is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
}

/*
 * One line of the file: everything from '#' on is a comment ('#' never
 * occurs in a NodeURL), surrounding whitespace is ignored, and what is
 * left, if anything, is an entry.  -1 if out of memory.
 */
static int load_line(struct loader *ld, unsigned line, const char *text, size_t len)
{
	const char *hash = memchr(text, '#', len);

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
	return add_entry(ld, line, text, len);
}

/* Parse text (len bytes) named name into a new table; NULL only if out of memory. */
struct ns_cache_table *ns_cache_table_parse(const char *text, size_t len, const char *name,
                                            ns_report_fn *report, void *ctx)
{
	struct loader ld = { .name = name, .report = report, .ctx = ctx };
	const char *p = text, *end = text + len;
	unsigned line = 1;

	ld.table = calloc(1, sizeof *ld.table);
	if (ld.table == NULL)
		goto err0;
	for (; p < end; line++) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *line_end = nl == NULL ? end : nl;

		if (load_line(&ld, line, p, (size_t)(line_end - p)) != 0)
			goto err1;
		p = nl == NULL ? end : nl + 1;
	}
	return ld.table;

err1:
	ns_cache_table_free(ld.table);
err0:
	errno = ENOMEM;
	return NULL;
}

/* Read fd to the end into a new buffer; -1 with errno set. */
static int read_all(int fd, size_t size_hint, char **out, size_t *outlen)
{
	/* One spare byte, so that a file that did not grow ends on a 0-byte read. */
	size_t cap = size_hint + 1, len = 0;
	char *buf = malloc(cap), *bigger;
	int saved;

	if (buf == NULL)
		goto err0;
	for (;;) {
		ssize_t n;

		if (len == cap) {
			bigger = realloc(buf, cap + READ_CHUNK);
			if (bigger == NULL)
				goto err1;
			buf = bigger;
			cap += READ_CHUNK;
		}
		n = read(fd, buf + len, cap - len);
		if (n == 0)
			break;
		if (n < 0) {
			if (errno == EINTR)
				continue;
			goto err1;
		}
		len += (size_t)n;
	}
	*out = buf;
	*outlen = len;
	return 0;

err1:
	saved = errno;
	free(buf);
	errno = saved;
err0:
	return -1;
}

/*
 * Load path into a new table and fill *st from the file actually read, so
 * that a change after this point is seen by the next refresh.  Failures
 * are reported with line 0; NULL with errno set.
 */
static struct ns_cache_table *load_file(const char *path, struct stat *st, ns_report_fn *report,
                                        void *ctx)
{
	struct ns_cache_table *table;
	char *text;
	size_t len;
	int fd, saved;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		goto err0;
	if (fstat(fd, st) != 0 || read_all(fd, (size_t)st->st_size, &text, &len) != 0)
		goto err1;
	close(fd);
	table = ns_cache_table_parse(text, len, path, report, ctx);
	free(text);
	if (table == NULL) {
		errno = ENOMEM;
		goto err0;
	}
	return table;

err1:
	saved = errno;
	close(fd);
	errno = saved;
err0:
	report_file_error(report, ctx, path, errno);
	return NULL;
}

/* Read and parse the file at path; NULL (errno set, reported with line 0) if unreadable. */
struct ns_cache_table *ns_cache_table_load(const char *path, ns_report_fn *report, void *ctx)
{
	struct stat st;

	return load_file(path, &st, report, ctx);
}

/* The entry for a connect() destination (IPv4, IPv6, or IPv4-mapped IPv6), or NULL. */
const struct ns_nodeurl *ns_cache_table_lookup(const struct ns_cache_table *t,
                                               const struct sockaddr *sa, socklen_t len)
{
	struct cache_key key;
	struct cache_entry *entry;

	if (t == NULL || key_from_sockaddr(&key, sa, len) != 0)
		return NULL;
	HASH_FIND(hh, t->entries, &key, sizeof key, entry);
	return entry == NULL ? NULL : &entry->url;
}

/* Number of entries in the table. */
size_t ns_cache_table_count(const struct ns_cache_table *t)
{
	return t == NULL ? 0 : HASH_COUNT(t->entries);
}

/* Free a table; NULL is a no-op. */
void ns_cache_table_free(struct ns_cache_table *t)
{
	struct cache_entry *entry, *next;

	if (t == NULL)
		return;
	HASH_ITER(hh, t->entries, entry, next) {
		HASH_DEL(t->entries, entry);
		free(entry);
	}
	free(t);
}

static struct file_stamp stamp_of(const struct stat *st)
{
	struct file_stamp s = {
		.dev = st->st_dev,
		.ino = st->st_ino,
		.size = st->st_size,
		.mtime = st->st_mtim,
	};

	return s;
}

static int same_stamp(const struct file_stamp *a, const struct file_stamp *b)
{
	return a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
	       a->mtime.tv_sec == b->mtime.tv_sec && a->mtime.tv_nsec == b->mtime.tv_nsec;
}

/* A watcher for the file at path; loads it once.  NULL if out of memory. */
struct ns_cache *ns_cache_open(const char *path, ns_report_fn *report, void *ctx)
{
	struct ns_cache *c;

	c = calloc(1, sizeof *c);
	if (c == NULL)
		goto err0;
	c->path = strdup(path);
	if (c->path == NULL)
		goto err1;
	/* A missing or unreadable file is reported now and tried again by each refresh. */
	(void)ns_cache_refresh(c, report, ctx);
	return c;

err1:
	free(c);
err0:
	return NULL;
}

/*
 * Reload when the file's identity, size or mtime changed.  Returns 1 if a
 * new table was swapped in, 0 if unchanged, -1 if the reload failed (the
 * last good table stays current).
 */
int ns_cache_refresh(struct ns_cache *c, ns_report_fn *report, void *ctx)
{
	struct ns_cache_table *table;
	struct stat st;
	struct file_stamp now;

	if (stat(c->path, &st) != 0) {
		report_file_error(report, ctx, c->path, errno);
		return -1;
	}
	now = stamp_of(&st);
	if (c->table != NULL && same_stamp(&c->stamp, &now))
		return 0;
	table = load_file(c->path, &st, report, ctx);
	if (table == NULL)
		return -1;
	ns_cache_table_free(c->table);
	c->table = table;
	c->stamp = stamp_of(&st);
	return 1;
}

/* The current table, or NULL if no load ever succeeded. */
const struct ns_cache_table *ns_cache_current(const struct ns_cache *c)
{
	return c->table;
}

/* Free the watcher and its table; NULL is a no-op. */
void ns_cache_close(struct ns_cache *c)
{
	if (c == NULL)
		return;
	ns_cache_table_free(c->table);
	free(c->path);
	free(c);
}
