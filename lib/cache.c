/*
 * The NodeURL cache: compile the text file into an index (cacheindex.c),
 * keep the index file current, map it, and swap in a new one off the
 * connect path when the text file changes.
 */
#include "cache.h"

#include "cipher.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

enum {
	REASON_MAX = 256,
	EXCERPT_MAX = 100,          /* how much of a bad line a report quotes */
	READ_CHUNK = 1 << 16,
	CHECK_INTERVAL_MS = 1000,   /* at most one stat of the text file per second */
	DRAIN_POLL_US = 1000,       /* how often a retired index checks for its last reader */
	DRAIN_LIMIT_POLLS = 10000,  /* after 10 s an index is leaked rather than unmapped */
	TEMP_NAME_TRIES = 16,
	RELOAD_NICE = 10,           /* the reload thread's priority below the program's */
};

struct ns_cache_table {
	void *mem;
	size_t len;       /* the index's bytes */
	size_t map_len;   /* what was mapped (an in-memory build maps more) */
	struct ns_file_id source;
	const char *path; /* the text file's name, inside mem */
};

/* Where parsed lines go and where problems are reported. */
struct loader {
	struct ns_index_builder *builder;
	const char *name;
	ns_report_fn *report;
	void *ctx;
	uint64_t problems;
};

/* The text file as read, with the identity of the version read. */
struct source {
	char *text;
	size_t len;
	struct ns_file_id id;
};

static void report(ns_report_fn *fn, void *ctx, enum ns_cache_level level, const char *file,
                   unsigned line, const char *fmt, ...) __attribute__((format(printf, 6, 7)));

static void report(ns_report_fn *fn, void *ctx, enum ns_cache_level level, const char *file,
                   unsigned line, const char *fmt, ...)
{
	char msg[REASON_MAX + PATH_MAX];
	va_list ap;

	if (fn == NULL)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	fn(ctx, level, file, line, msg);
}

static void report_problem(struct loader *ld, unsigned line, const char *reason,
                           const char *text, size_t len)
{
	ld->problems++;
	if (len > EXCERPT_MAX)
		report(ld->report, ld->ctx, NS_CACHE_ERROR, ld->name, line, "%s: \"%.*s...\"", reason,
		       (int)EXCERPT_MAX, text);
	else
		report(ld->report, ld->ctx, NS_CACHE_ERROR, ld->name, line, "%s: \"%.*s\"", reason,
		       (int)len, text);
}

static void report_file_error(ns_report_fn *fn, void *ctx, const char *path, int err)
{
	report(fn, ctx, NS_CACHE_ERROR, path, 0, "cannot read the cache: %s", strerror(err));
}

/*
 * What is wrong with a line, as a broken entry's record keeps it: a
 * NodeURL parse status (below PROBLEM_FIRST), or one of these.
 */
enum problem {
	PROBLEM_NONE = 0,
	PROBLEM_FIRST = 64,
	PROBLEM_NAME = PROBLEM_FIRST,
	PROBLEM_NO_PORT,
	PROBLEM_NO_NOISE_PUB,
	PROBLEM_NOISE_PROTO,
};

_Static_assert((int)NS_NODEURL_TOO_LONG < (int)PROBLEM_FIRST, "parse statuses fit below the others");

static const char *problem_text(unsigned problem)
{
	switch (problem) {
	case PROBLEM_NAME:
		return "host is a name, not an IP address";
	case PROBLEM_NO_PORT:
		return "no port";
	case PROBLEM_NO_NOISE_PUB:
		return "no noise_pub";
	case PROBLEM_NOISE_PROTO:
		return "unsupported noise_proto (1 = ChaChaPoly, 2 = AESGCM)";
	}
	return ns_nodeurl_strerror((enum ns_nodeurl_status)problem);
}

/* Why a well-formed NodeURL cannot be a cache entry, or PROBLEM_NONE if it can. */
static enum problem unusable(const struct ns_nodeurl *u)
{
	/* Entries are matched against connect() addresses and start Noise_IK. */
	if (u->family == NS_ADDR_NAME)
		return PROBLEM_NAME;
	if (u->port == 0)
		return PROBLEM_NO_PORT;
	if (!u->has_noise_pub)
		return PROBLEM_NO_NOISE_PUB;
	if (u->noise_proto != 0 && ns_suite_from_proto(u->noise_proto) == 0)
		return PROBLEM_NOISE_PROTO;
	return PROBLEM_NONE;
}

/*
 * The IP address and port of a line that is not a usable entry, if it has
 * them: the part between any "id@" and the '?' parsed on its own.
 */
static int address_of_line(const char *text, size_t len, struct ns_nodeurl *u)
{
	const char *query = memchr(text, '?', len);
	size_t n = query == NULL ? len : (size_t)(query - text);
	const char *at = memchr(text, '@', n);

	if (at != NULL) {
		n -= (size_t)(at + 1 - text);
		text = at + 1;
	}
	return ns_nodeurl_parse(text, n, u) == NS_NODEURL_OK && u->family != NS_ADDR_NAME &&
	       u->port != 0;
}

/* Add the line's entry, or its broken entry; report what is wrong.  -1 if the index is full. */
static int add_entry(struct loader *ld, unsigned line, const char *text, size_t len)
{
	struct ns_nodeurl url;
	enum ns_nodeurl_status status;
	unsigned problem;
	char why[REASON_MAX];
	long earlier;

	status = ns_nodeurl_parse(text, len, &url);
	problem = status != NS_NODEURL_OK ? (unsigned)status : unusable(&url);
	if (problem != PROBLEM_NONE && !address_of_line(text, len, &url)) {
		report_problem(ld, line, problem_text(problem), text, len);
		return 0;
	}
	earlier = ns_index_add(ld->builder, &url, line, (uint8_t)problem);
	if (earlier < 0)
		return -1;
	if (earlier > 0) {
		snprintf(why, sizeof why, "%s%ssame address and port as line %ld, which is kept",
		         problem != PROBLEM_NONE ? problem_text(problem) : "",
		         problem != PROBLEM_NONE ? ", and " : "", earlier);
		report_problem(ld, line, why, text, len);
	} else if (problem != PROBLEM_NONE) {
		snprintf(why, sizeof why, "%s; connects to this address and port are refused",
		         problem_text(problem));
		report_problem(ld, line, why, text, len);
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
 * left, if anything, is an entry.  -1 if the index is full.
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

static size_t count_lines(const char *text, size_t len)
{
	size_t n = 1;

	for (const char *p = text, *end = text + len; (p = memchr(p, '\n', (size_t)(end - p))); p++)
		n++;
	return n;
}

static uint64_t random_seed(void)
{
	uint64_t seed = 0;

	/* A fixed seed only makes crafted collisions easier; lookups stay correct. */
	if (getrandom(&seed, sizeof seed, GRND_NONBLOCK) != sizeof seed)
		seed = (uint64_t)time(NULL) ^ (uint64_t)getpid() << 32;
	return seed;
}

/*
 * Compile src (named name) into mem (cap bytes, zeroed, at least
 * ns_index_max_size for its line count).  Returns the index's size, or 0
 * (errno set) if it has more lines than an index holds.
 */
static size_t compile(void *mem, size_t cap, const struct source *src, const char *name,
                      ns_report_fn *fn, void *ctx)
{
	struct ns_index_builder b;
	struct loader ld = { .builder = &b, .name = name, .report = fn, .ctx = ctx };
	const char *p = src->text, *end = src->text + src->len;
	unsigned line = 1;

	if (ns_index_begin(&b, mem, cap, count_lines(src->text, src->len), name, &src->id,
	                   random_seed()) != 0)
		goto too_big;
	for (; p < end; line++) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *line_end = nl == NULL ? end : nl;

		if (load_line(&ld, line, p, (size_t)(line_end - p)) != 0)
			goto too_big;
		p = nl == NULL ? end : nl + 1;
	}
	return ns_index_finish(&b, ld.problems);

too_big:
	report(fn, ctx, NS_CACHE_ERROR, name, 0, "more than %d lines, or a path of %d bytes or more: "
	       "too big for an index", NS_INDEX_MAX_ENTRIES, NS_INDEX_PATH_MAX);
	errno = EFBIG;
	return 0;
}

static size_t max_size(const struct source *src, const char *name)
{
	size_t lines = count_lines(src->text, src->len);

	return ns_index_max_size(lines > NS_INDEX_MAX_ENTRIES ? NS_INDEX_MAX_ENTRIES : lines, name);
}

static struct ns_cache_table *table_of(void *mem, size_t len, size_t map_len)
{
	struct ns_cache_table *t = calloc(1, sizeof *t);

	if (t == NULL)
		return NULL;
	t->mem = mem;
	t->len = len;
	t->map_len = map_len;
	ns_index_source(mem, &t->source, &t->path);
	return t;
}

/* Compile src into anonymous memory, left read-only.  NULL with errno set. */
static struct ns_cache_table *compile_in_memory(const struct source *src, const char *name,
                                                ns_report_fn *fn, void *ctx)
{
	size_t cap = max_size(src, name), len;
	struct ns_cache_table *t;
	void *mem;

	mem = mmap(NULL, cap, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED)
		goto err0;
	len = compile(mem, cap, src, name, fn, ctx);
	if (len == 0 || mprotect(mem, cap, PROT_READ) != 0)
		goto err1;
	t = table_of(mem, len, cap);
	if (t == NULL)
		goto err1;
	return t;

err1:
	munmap(mem, cap);
err0:
	if (errno == 0)
		errno = ENOMEM;
	return NULL;
}

static struct ns_file_id id_of(const struct stat *st)
{
	struct ns_file_id id = {
		.dev = st->st_dev,
		.ino = st->st_ino,
		.size = (uint64_t)st->st_size,
		.mtime_sec = st->st_mtim.tv_sec,
		.mtime_nsec = st->st_mtim.tv_nsec,
	};

	return id;
}

static int same_id(const struct ns_file_id *a, const struct ns_file_id *b)
{
	return a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
	       a->mtime_sec == b->mtime_sec && a->mtime_nsec == b->mtime_nsec;
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
 * Read the text file.  Its identity is taken before reading, so a change
 * made while it is read is seen by the next check.  Failures are reported
 * with line 0; -1 with errno set.
 */
static int read_source(const char *path, struct source *src, ns_report_fn *fn, void *ctx)
{
	struct stat st;
	int fd, saved;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		goto err0;
	if (fstat(fd, &st) != 0 || read_all(fd, (size_t)st.st_size, &src->text, &src->len) != 0)
		goto err1;
	close(fd);
	src->id = id_of(&st);
	return 0;

err1:
	saved = errno;
	close(fd);
	errno = saved;
err0:
	saved = errno;
	report_file_error(fn, ctx, path, errno);
	errno = saved;
	return -1;
}

/* Compile text (len bytes) named name into an in-memory table; NULL if out of memory. */
struct ns_cache_table *ns_cache_table_parse(const char *text, size_t len, const char *name,
                                            ns_report_fn *report_fn, void *ctx)
{
	struct source src = { .text = (char *)text, .len = len };

	return compile_in_memory(&src, name, report_fn, ctx);
}

/* Read and compile the file at path in memory; NULL (errno set, reported with line 0) if unreadable. */
struct ns_cache_table *ns_cache_table_load(const char *path, ns_report_fn *report_fn, void *ctx)
{
	struct ns_cache_table *t;
	struct source src;
	int saved;

	if (read_source(path, &src, report_fn, ctx) != 0)
		return NULL;
	t = compile_in_memory(&src, path, report_fn, ctx);
	saved = errno;
	free(src.text);
	errno = saved;
	return t;
}

/* Key for a connect() destination; -1 for other families or a short length. */
static int key_from_sockaddr(struct ns_index_key *k, const struct sockaddr *sa, socklen_t len)
{
	if (sa == NULL)
		return -1;
	if (sa->sa_family == AF_INET && len >= sizeof(struct sockaddr_in)) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)sa;

		ns_index_make_key(k, NS_ADDR_IPV4, (const uint8_t *)&in->sin_addr,
		                  ntohs(in->sin_port));
		return 0;
	}
	if (sa->sa_family == AF_INET6 && len >= sizeof(struct sockaddr_in6)) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;

		ns_index_make_key(k, NS_ADDR_IPV6, in6->sin6_addr.s6_addr, ntohs(in6->sin6_port));
		return 0;
	}
	return -1;
}

/* The table's verdict for key; *corrupt is set when a record fails its check. */
static enum ns_cache_verdict table_lookup_key(const struct ns_cache_table *t,
                                              const struct ns_index_key *key,
                                              struct ns_cache_hit *out, int *corrupt)
{
	unsigned line = 0;
	uint8_t problem = 0;

	switch (ns_index_lookup(t->mem, key, &out->url, &line, &problem)) {
	case NS_INDEX_MISS:
		return NS_CACHE_MISS;
	case NS_INDEX_HIT:
		snprintf(out->where, sizeof out->where, "%s:%u", t->path, line);
		return NS_CACHE_HIT;
	case NS_INDEX_BROKEN:
		snprintf(out->where, sizeof out->where, "%s:%u", t->path, line);
		snprintf(out->reason, sizeof out->reason, "%s", problem_text(problem));
		return NS_CACHE_BROKEN;
	case NS_INDEX_CORRUPT:
		break;
	}
	*corrupt = 1;
	snprintf(out->where, sizeof out->where, "%s", t->path);
	snprintf(out->reason, sizeof out->reason, "its index is corrupt and is being rebuilt");
	return NS_CACHE_BROKEN;
}

/* What the table says about a connect() destination (IPv4, IPv6, or IPv4-mapped IPv6). */
enum ns_cache_verdict ns_cache_table_lookup(const struct ns_cache_table *t,
                                            const struct sockaddr *sa, socklen_t len,
                                            struct ns_cache_hit *out)
{
	struct ns_index_key key;
	int corrupt = 0;

	if (t == NULL)
		return NS_CACHE_UNREADABLE;
	if (key_from_sockaddr(&key, sa, len) != 0)
		return NS_CACHE_MISS;
	return table_lookup_key(t, &key, out, &corrupt);
}

/* Usable entries, and broken entries, in the table. */
size_t ns_cache_table_count(const struct ns_cache_table *t)
{
	return t == NULL ? 0 : ns_index_entry_count(t->mem);
}

size_t ns_cache_table_broken(const struct ns_cache_table *t)
{
	return t == NULL ? 0 : ns_index_broken_count(t->mem);
}

/* Free a table; NULL is a no-op. */
void ns_cache_table_free(struct ns_cache_table *t)
{
	if (t == NULL)
		return;
	munmap(t->mem, t->map_len);
	free(t);
}

/* --- where index files live -------------------------------------------------- */

enum { PLACE_BESIDE, PLACE_PRIVATE, PLACES };

/* The index beside the text file, and the per-user one; "" where there is none. */
struct places {
	char path[PLACES][PATH_MAX];
};

/* A 64-bit FNV-1a hash: a stable name for the per-user index of one cache. */
static uint64_t name_hash(const char *s)
{
	uint64_t h = 0xcbf29ce484222325ULL;

	for (; *s != '\0'; s++)
		h = (h ^ (uint8_t)*s) * 0x100000001b3ULL;
	return h;
}

/* The per-user directory: $XDG_RUNTIME_DIR/noiseshim, else /tmp/noiseshim-UID. */
static int private_dir(char *out, size_t cap)
{
	const char *runtime = getenv("XDG_RUNTIME_DIR");
	int n;

	if (runtime != NULL && runtime[0] == '/')
		n = snprintf(out, cap, "%s/noiseshim", runtime);
	else
		n = snprintf(out, cap, "/tmp/noiseshim-%u", (unsigned)geteuid());
	return n > 0 && (size_t)n < cap ? 0 : -1;
}

static void find_places(const char *path, struct places *p)
{
	char dir[PATH_MAX], real[PATH_MAX];
	const char *name = realpath(path, real) != NULL ? real : path;
	int n;

	n = snprintf(p->path[PLACE_BESIDE], PATH_MAX, "%s.idx", path);
	if (n < 0 || n >= PATH_MAX)
		p->path[PLACE_BESIDE][0] = '\0';
	p->path[PLACE_PRIVATE][0] = '\0';
	if (private_dir(dir, sizeof dir) == 0) {
		n = snprintf(p->path[PLACE_PRIVATE], PATH_MAX, "%s/%016" PRIx64 ".idx", dir,
		             name_hash(name));
		if (n < 0 || n >= PATH_MAX)
			p->path[PLACE_PRIVATE][0] = '\0';
	}
}

/* Whether the directory holding file may be written by us. */
static int dir_writable(const char *file)
{
	char dir[PATH_MAX];
	char *slash;

	snprintf(dir, sizeof dir, "%s", file);
	slash = strrchr(dir, '/');
	if (slash == NULL)
		return access(".", W_OK | X_OK) == 0;
	if (slash == dir)
		slash[1] = '\0';
	else
		*slash = '\0';
	return access(dir, W_OK | X_OK) == 0;
}

/*
 * Check the per-user directory, made first if create is set: it must be
 * ours and closed to others, or an index there could be planted.  -1
 * (errno set) if not.
 */
static int private_dir_trusted(int create)
{
	char dir[PATH_MAX];
	struct stat st;

	if (private_dir(dir, sizeof dir) != 0) {
		errno = ENAMETOOLONG;
		return -1;
	}
	if (create && mkdir(dir, 0700) != 0 && errno != EEXIST)
		return -1;
	if (lstat(dir, &st) != 0)
		return -1;
	if (!S_ISDIR(st.st_mode) || st.st_uid != geteuid() || (st.st_mode & 077) != 0) {
		errno = EPERM;
		return -1;
	}
	return 0;
}

/* --- index files -------------------------------------------------------------- */

/*
 * Map the index file at path if it is valid and was compiled from the
 * text file whose identity is *want.  NULL otherwise (why goes to *why).
 */
static struct ns_cache_table *map_index_file(const char *path, const struct ns_file_id *want,
                                             const char **why)
{
	struct ns_cache_table *t;
	struct ns_file_id src;
	const char *source_path;
	struct stat st;
	void *mem;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0) {
		*why = errno == ENOENT ? "missing" : "cannot be opened";
		goto err0;
	}
	/* Only an index we or root wrote, and nobody else can change, is worth checking. */
	*why = "not a regular file owned by this user or root, closed to writes by others";
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) ||
	    (st.st_uid != geteuid() && st.st_uid != 0) || (st.st_mode & 022) != 0)
		goto err1;
	*why = "shorter than its header";
	if ((size_t)st.st_size < NS_INDEX_HEADER_SIZE)
		goto err1;
	mem = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
	*why = "cannot be mapped";
	if (mem == MAP_FAILED)
		goto err1;
	if ((*why = ns_index_validate(mem, (size_t)st.st_size)) != NULL)
		goto err2;
	ns_index_source(mem, &src, &source_path);
	*why = "compiled from another version of the text file";
	if (!same_id(&src, want))
		goto err2;
	*why = "out of memory";
	t = table_of(mem, (size_t)st.st_size, (size_t)st.st_size);
	if (t == NULL)
		goto err2;
	close(fd);
	return t;

err2:
	munmap(mem, (size_t)st.st_size);
err1:
	close(fd);
err0:
	return NULL;
}

/* A new temporary file beside final; its name goes to tmp.  -1 with errno set. */
static int create_temp(const char *final, char tmp[PATH_MAX])
{
	for (int i = 0; i < TEMP_NAME_TRIES; i++) {
		int fd, n;

		n = snprintf(tmp, PATH_MAX, "%s.%ld.%08" PRIx64 ".tmp", final, (long)getpid(),
		             random_seed() & 0xffffffffu);
		if (n < 0 || n >= PATH_MAX) {
			errno = ENAMETOOLONG;
			return -1;
		}
		fd = open(tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0644);
		if (fd >= 0 || errno != EEXIST)
			return fd;
	}
	return -1;
}

/*
 * Compile src into a new index file at path: written to a temporary file,
 * renamed over path, and mapped read-only from the file written (so a
 * concurrent rebuilder's rename cannot swap it under us).  NULL with errno
 * set; path is then unchanged.
 */
static struct ns_cache_table *write_index_file(const char *path, const struct source *src,
                                               const char *name, ns_report_fn *fn, void *ctx)
{
	size_t cap = max_size(src, name), len;
	struct ns_cache_table *t;
	char tmp[PATH_MAX];
	void *mem, *ro;
	int fd, saved;

	fd = create_temp(path, tmp);
	if (fd < 0)
		goto err0;
	if (ftruncate(fd, (off_t)cap) != 0)
		goto err1;
	mem = mmap(NULL, cap, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (mem == MAP_FAILED)
		goto err1;
	len = compile(mem, cap, src, name, fn, ctx);
	munmap(mem, cap);
	/*
	 * No fsync: the index is derived data.  After a crash a half-written
	 * file fails validation and is rebuilt.
	 */
	if (len == 0 || ftruncate(fd, (off_t)len) != 0 || rename(tmp, path) != 0)
		goto err1;
	ro = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, 0);
	if (ro == MAP_FAILED)
		goto err0_renamed;
	t = table_of(ro, len, len);
	if (t == NULL) {
		munmap(ro, len);
		errno = ENOMEM;
		goto err0_renamed;
	}
	close(fd);
	return t;

err1:
	saved = errno;
	unlink(tmp);
	errno = saved;
err0_renamed:
	saved = errno;
	close(fd);
	errno = saved;
err0:
	return NULL;
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/*
 * Compile src into the first place that can be written; if none can, into
 * memory (*in_memory set).  NULL with errno set.
 */
static struct ns_cache_table *build(const char *path, const struct source *src, ns_report_fn *fn,
                                    void *ctx, int *in_memory)
{
	struct ns_cache_table *t;
	struct places p;
	uint64_t started = now_ms();
	int beside_ok;

	find_places(path, &p);
	beside_ok = p.path[PLACE_BESIDE][0] != '\0' && dir_writable(p.path[PLACE_BESIDE]);
	*in_memory = 0;
	for (int i = 0; i < PLACES; i++) {
		if (p.path[i][0] == '\0' || (i == PLACE_BESIDE && !beside_ok) ||
		    (i == PLACE_PRIVATE && private_dir_trusted(1) != 0))
			continue;
		t = write_index_file(p.path[i], src, path, fn, ctx);
		if (t != NULL) {
			report(fn, ctx, NS_CACHE_DEBUG, path, 0,
			       "built index %s: %zu entries, %zu broken, in %" PRIu64 " ms", p.path[i],
			       ns_cache_table_count(t), ns_cache_table_broken(t), now_ms() - started);
			return t;
		}
		if (errno == EFBIG)
			return NULL;
	}
	*in_memory = 1;
	return compile_in_memory(src, path, fn, ctx);
}

/*
 * Map a current index of the text file at path, building one if none is.
 * want is the identity the text file has now (NULL: unknown, rebuild).
 */
static struct ns_cache_table *load_index(const char *path, const struct ns_file_id *want,
                                         ns_report_fn *fn, void *ctx, int *in_memory)
{
	struct ns_cache_table *t;
	struct places p;
	struct source src;
	const char *why = NULL;
	int saved;

	*in_memory = 0;
	find_places(path, &p);
	for (int i = 0; want != NULL && i < PLACES; i++) {
		if (p.path[i][0] == '\0' || (i == PLACE_PRIVATE && private_dir_trusted(0) != 0))
			continue;
		t = map_index_file(p.path[i], want, &why);
		if (t != NULL) {
			report(fn, ctx, NS_CACHE_DEBUG, path, 0, "mapped index %s: %zu entries, "
			       "%zu broken", p.path[i], ns_cache_table_count(t),
			       ns_cache_table_broken(t));
			/* Whoever compiled it saw each line; this process should hear of them too. */
			if (ns_index_problem_count(t->mem) > 0)
				report(fn, ctx, NS_CACHE_ERROR, path, 0, "%" PRIu64 " lines have "
				       "problems (%zu of them fail closed); noiseshim cache check "
				       "--cache %s lists them", ns_index_problem_count(t->mem),
				       ns_cache_table_broken(t), path);
			return t;
		}
		if (strcmp(why, "missing") != 0)
			report(fn, ctx, NS_CACHE_DEBUG, path, 0, "index %s %s: rebuilding it",
			       p.path[i], why);
	}
	if (read_source(path, &src, fn, ctx) != 0)
		return NULL;
	t = build(path, &src, fn, ctx, in_memory);
	saved = errno;
	free(src.text);
	errno = saved;
	return t;
}

/*
 * Compile the text file at path into its index file now, whether or not it
 * is current (for the CLI, after it rewrites the file).  Problems go to
 * report; *entries and *broken get the counts.  0, or -1 (errno set) if the text could not be read; an index
 * that can only be built in memory still counts as success.
 */
int ns_cache_index_update(const char *path, ns_report_fn *fn, void *ctx, size_t *entries,
                          size_t *broken)
{
	struct ns_cache_table *t;
	int in_memory;

	t = load_index(path, NULL, fn, ctx, &in_memory);
	if (t == NULL)
		return -1;
	if (in_memory)
		report(fn, ctx, NS_CACHE_WARN, path, 0, "no writable place for its index; "
		       "each program will compile the cache for itself");
	*entries = ns_cache_table_count(t);
	*broken = ns_cache_table_broken(t);
	ns_cache_table_free(t);
	return 0;
}

/* --- the watcher ---------------------------------------------------------------- */

struct ns_cache {
	char *path;
	ns_report_fn *report;
	void *ctx;
	_Atomic(struct ns_cache_table *) current;
	/*
	 * Readers announce themselves in readers[epoch & 1]; a swap moves the
	 * epoch on and waits for the old parity to drain before unmapping.
	 */
	atomic_uint epoch;
	atomic_uint readers[2];
	_Atomic uint64_t next_check_ms;
	atomic_int reload_running;   /* a background reload thread exists */
	atomic_int rebuild_wanted;   /* a record failed its check: rebuild, do not remap */
	atomic_int stat_errno;       /* why the last stat failed (0: it did not) */
	int warned_in_memory;        /* under reload_lock */
	int reported_errno;          /* under reload_lock: last failure reported */
	pthread_mutex_t reload_lock; /* one reload at a time */
	struct ns_cache *next_open;
};

/* Every open watcher, so that a forked child can reset what threads left behind. */
static pthread_mutex_t open_lock = PTHREAD_MUTEX_INITIALIZER;
static struct ns_cache *open_caches;
static pthread_once_t fork_once = PTHREAD_ONCE_INIT;

static void before_fork(void)
{
	pthread_mutex_lock(&open_lock);
}

static void after_fork_parent(void)
{
	pthread_mutex_unlock(&open_lock);
}

/*
 * Only the forking thread lives on in the child: no lookup is running, no
 * reload thread exists, and a reload lock held by one would never be
 * released.  The next lookup checks the file again and starts a thread if
 * one is needed.
 */
static void after_fork_child(void)
{
	for (struct ns_cache *c = open_caches; c != NULL; c = c->next_open) {
		atomic_store(&c->readers[0], 0);
		atomic_store(&c->readers[1], 0);
		atomic_store(&c->reload_running, 0);
		atomic_store(&c->next_check_ms, 0);
		pthread_mutex_init(&c->reload_lock, NULL);
	}
	pthread_mutex_init(&open_lock, NULL);
}

static void register_fork_handlers(void)
{
	pthread_atfork(before_fork, after_fork_parent, after_fork_child);
}

static unsigned read_enter(struct ns_cache *c)
{
	for (;;) {
		unsigned e = atomic_load(&c->epoch);

		atomic_fetch_add(&c->readers[e & 1], 1);
		/* Counted under the epoch a swap will wait for, or try again. */
		if (atomic_load(&c->epoch) == e)
			return e & 1;
		atomic_fetch_sub(&c->readers[e & 1], 1);
	}
}

static void read_leave(struct ns_cache *c, unsigned parity)
{
	atomic_fetch_sub(&c->readers[parity], 1);
}

/* Make t current and unmap the old index once no lookup reads it.  Under reload_lock. */
static void swap_in(struct ns_cache *c, struct ns_cache_table *t)
{
	struct ns_cache_table *old = atomic_exchange(&c->current, t);
	unsigned parity;
	int polls = 0;

	if (old == NULL)
		return;
	parity = atomic_fetch_add(&c->epoch, 1) & 1;
	while (atomic_load(&c->readers[parity]) != 0) {
		if (++polls > DRAIN_LIMIT_POLLS) {
			report(c->report, c->ctx, NS_CACHE_DEBUG, c->path, 0,
			       "an old index still has readers after %d s; left mapped",
			       DRAIN_LIMIT_POLLS * DRAIN_POLL_US / 1000000);
			return;
		}
		usleep(DRAIN_POLL_US);
	}
	ns_cache_table_free(old);
}

/* Reload if the text file changed (or a rebuild is wanted).  Under reload_lock; 1, 0 or -1. */
static int reload_locked(struct ns_cache *c)
{
	struct ns_cache_table *t, *cur = atomic_load(&c->current);
	int force = atomic_exchange(&c->rebuild_wanted, 0), in_memory;
	struct ns_file_id id;
	struct stat st;

	if (stat(c->path, &st) != 0) {
		int err = errno;

		atomic_store(&c->stat_errno, err);
		/* Once per change of state, not once a second. */
		if (c->reported_errno != err)
			report_file_error(c->report, c->ctx, c->path, err);
		c->reported_errno = err;
		return -1;
	}
	atomic_store(&c->stat_errno, 0);
	c->reported_errno = 0;
	id = id_of(&st);
	if (cur != NULL && !force && same_id(&cur->source, &id))
		return 0;
	t = load_index(c->path, force ? NULL : &id, c->report, c->ctx, &in_memory);
	if (t == NULL) {
		if (force)
			atomic_store(&c->rebuild_wanted, 1);
		return -1;
	}
	if (in_memory && !c->warned_in_memory) {
		report(c->report, c->ctx, NS_CACHE_WARN, c->path, 0,
		       "no writable place for its index; compiled in this process's memory");
		c->warned_in_memory = 1;
	}
	swap_in(c, t);
	return 1;
}

static void *reload_thread(void *arg)
{
	struct ns_cache *c = arg;

	/*
	 * The program's own threads come first: on a busy machine they would
	 * otherwise wait for a CPU while this one compiles.  Best effort.
	 */
	(void)setpriority(PRIO_PROCESS, (id_t)gettid(), RELOAD_NICE);
	pthread_mutex_lock(&c->reload_lock);
	reload_locked(c);
	pthread_mutex_unlock(&c->reload_lock);
	atomic_store(&c->reload_running, 0);
	return NULL;
}

/* Start the reload thread unless one is running; it takes no signals meant for the program. */
static void start_reload(struct ns_cache *c)
{
	pthread_attr_t attr;
	sigset_t all, saved;
	pthread_t thread;

	if (atomic_exchange(&c->reload_running, 1) != 0)
		return;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &saved);
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	if (pthread_create(&thread, &attr, reload_thread, c) != 0)
		atomic_store(&c->reload_running, 0); /* tried again at the next check */
	pthread_attr_destroy(&attr);
	pthread_sigmask(SIG_SETMASK, &saved, NULL);
}

/* At most once a second, one caller stats the file; a change starts a reload. */
static void check_for_changes(struct ns_cache *c)
{
	struct timespec ts;
	uint64_t now, due = atomic_load(&c->next_check_ms);
	struct ns_cache_table *cur;
	struct ns_file_id id;
	struct stat st;
	unsigned parity;
	int changed;

	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	now = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
	if (now < due || !atomic_compare_exchange_strong(&c->next_check_ms, &due,
	                                                 now + CHECK_INTERVAL_MS))
		return;
	if (atomic_load(&c->reload_running))
		return;
	if (stat(c->path, &st) != 0) {
		/* A failure already seen is not worth a thread. */
		if (errno != atomic_load(&c->stat_errno))
			start_reload(c);
		return;
	}
	id = id_of(&st);
	parity = read_enter(c);
	cur = atomic_load(&c->current);
	changed = cur == NULL || atomic_load(&c->rebuild_wanted) || !same_id(&cur->source, &id);
	read_leave(c, parity);
	if (changed)
		start_reload(c);
}

/*
 * A watcher for the file at path: maps its index now (building it first if
 * needed, which only this first call ever waits for).  report and ctx are
 * kept for later reloads and may be called from the reload thread.  NULL if
 * out of memory; a missing file is reported and retried by later lookups.
 */
struct ns_cache *ns_cache_open(const char *path, ns_report_fn *report_fn, void *ctx)
{
	struct ns_cache *c;

	pthread_once(&fork_once, register_fork_handlers);
	c = calloc(1, sizeof *c);
	if (c == NULL)
		goto err0;
	c->path = strdup(path);
	if (c->path == NULL)
		goto err1;
	c->report = report_fn;
	c->ctx = ctx;
	pthread_mutex_init(&c->reload_lock, NULL);
	atomic_store(&c->next_check_ms, now_ms() + CHECK_INTERVAL_MS);
	(void)ns_cache_refresh(c);
	pthread_mutex_lock(&open_lock);
	c->next_open = open_caches;
	open_caches = c;
	pthread_mutex_unlock(&open_lock);
	return c;

err1:
	free(c);
err0:
	return NULL;
}

/* Look up a connect() destination; lock-free, safe from any thread and after fork. */
enum ns_cache_verdict ns_cache_lookup(struct ns_cache *c, const struct sockaddr *sa,
                                      socklen_t len, struct ns_cache_hit *out)
{
	enum ns_cache_verdict verdict = NS_CACHE_UNREADABLE;
	struct ns_cache_table *t;
	struct ns_index_key key;
	unsigned parity;
	int corrupt = 0;

	check_for_changes(c);
	parity = read_enter(c);
	t = atomic_load(&c->current);
	if (t != NULL)
		verdict = key_from_sockaddr(&key, sa, len) != 0
		                  ? NS_CACHE_MISS
		                  : table_lookup_key(t, &key, out, &corrupt);
	read_leave(c, parity);
	if (corrupt) {
		/* Refused now; the next check rebuilds rather than maps the same file again. */
		atomic_store(&c->rebuild_wanted, 1);
		atomic_store(&c->next_check_ms, 0);
	}
	return verdict;
}

/*
 * Reload now, in the calling thread, if the text file changed (for tests
 * and tools that cannot wait for the once-a-second check).  1 if a new
 * index was swapped in, 0 if unchanged, -1 if the reload failed (the last
 * good index stays current).
 */
int ns_cache_refresh(struct ns_cache *c)
{
	int ret;

	pthread_mutex_lock(&c->reload_lock);
	ret = reload_locked(c);
	pthread_mutex_unlock(&c->reload_lock);
	return ret;
}

/* Entries in the current index (0 if none is loaded). */
size_t ns_cache_count(struct ns_cache *c)
{
	unsigned parity = read_enter(c);
	size_t n = ns_cache_table_count(atomic_load(&c->current));

	read_leave(c, parity);
	return n;
}

/* Free the watcher and its index (no lookup may be running); NULL is a no-op. */
void ns_cache_close(struct ns_cache *c)
{
	struct ns_cache **p;

	if (c == NULL)
		return;
	while (atomic_load(&c->reload_running))
		usleep(DRAIN_POLL_US);
	pthread_mutex_lock(&open_lock);
	for (p = &open_caches; *p != NULL; p = &(*p)->next_open)
		if (*p == c) {
			*p = c->next_open;
			break;
		}
	pthread_mutex_unlock(&open_lock);
	ns_cache_table_free(atomic_load(&c->current));
	pthread_mutex_destroy(&c->reload_lock);
	free(c->path);
	free(c);
}
