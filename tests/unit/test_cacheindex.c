/*
 * The compiled cache index: on random caches it answers exactly as a plain
 * model of the text does, both in memory and as a file; a truncated,
 * corrupted, wrong-version or stale index is never trusted, and rebuilt.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "cache.h"
#include "cacheindex.h"

enum {
	RANDOM_LINES = 3000,
	RANDOM_ROUNDS = 4,
	REBUILDERS = 4,
	REBUILDS_EACH = 3,
	ABSENT_PROBES = 2000,
	LOG_MAX = 8192,
};

/* What the model expects for one key: the first line that gave it an address. */
struct expected {
	struct ns_index_key key;
	unsigned line;
	int broken;
	int noise_proto;
	uint8_t noise_pub[32];
};

struct model {
	struct expected e[RANDOM_LINES];
	size_t n;
	size_t entries, broken;
};

struct fixture {
	char dir[64];
	char path[128];
	char idx[160];
	char log[LOG_MAX]; /* every report, one per line */
	unsigned errors;
};

static void collect(void *ctx, enum ns_cache_level level, const char *file, unsigned line,
                    const char *reason)
{
	struct fixture *f = ctx;
	size_t used = strlen(f->log);

	if (level == NS_CACHE_ERROR)
		f->errors++;
	snprintf(f->log + used, sizeof f->log - used, "%d %s:%u: %s\n", (int)level, file, line,
	         reason);
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof *f);

	assert_non_null(f);
	strcpy(f->dir, "/tmp/test_cacheindex.XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->path, sizeof f->path, "%s/cache", f->dir);
	snprintf(f->idx, sizeof f->idx, "%s.idx", f->path);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	unlink(f->idx);
	unlink(f->path);
	rmdir(f->dir);
	free(f);
	return 0;
}

static void write_file(const char *path, const char *text, size_t len)
{
	char tmp[256];
	FILE *fp;

	snprintf(tmp, sizeof tmp, "%s.new", path);
	fp = fopen(tmp, "w");
	assert_non_null(fp);
	assert_int_equal(fwrite(text, 1, len, fp), len);
	assert_int_equal(fclose(fp), 0);
	assert_int_equal(rename(tmp, path), 0);
}

static struct expected *model_find(struct model *m, const struct ns_index_key *k)
{
	for (size_t i = 0; i < m->n; i++)
		if (memcmp(&m->e[i].key, k, sizeof *k) == 0)
			return &m->e[i];
	return NULL;
}

/* A random address from a small space, so that duplicates and v4-mapped twins are common. */
static void random_address(struct ns_nodeurl *u)
{
	memset(u, 0, sizeof *u);
	u->port = (uint16_t)(7000 + rand() % 8);
	if (rand() % 3 == 0) {
		static const uint8_t base[16] = { 0x20, 0x01, 0x0d, 0xb8 };

		u->family = NS_ADDR_IPV6;
		memcpy(u->addr, base, 16);
		u->addr[15] = (uint8_t)(rand() % 64);
		u->addr[14] = (uint8_t)(rand() % 4);
	} else {
		u->family = NS_ADDR_IPV4;
		u->addr[0] = 10;
		u->addr[2] = (uint8_t)(rand() % 4);
		u->addr[3] = (uint8_t)(rand() % 64);
	}
}

/* HOST:PORT of u, IPv4 sometimes written as IPv4-mapped IPv6. */
static int format_address(const struct ns_nodeurl *u, char *out, size_t cap)
{
	char host[INET6_ADDRSTRLEN];

	if (u->family == NS_ADDR_IPV4 && rand() % 4 == 0) {
		inet_ntop(AF_INET, u->addr, host, sizeof host);
		return snprintf(out, cap, "[::ffff:%s]:%u", host, u->port);
	}
	inet_ntop(u->family == NS_ADDR_IPV4 ? AF_INET : AF_INET6, u->addr, host, sizeof host);
	return snprintf(out, cap, u->family == NS_ADDR_IPV6 ? "[%s]:%u" : "%s:%u", host, u->port);
}

/*
 * One random line into out; the model learns what it should yield.  Kinds:
 * good entries, broken ones (address and port fine, the rest not), lines
 * with no address at all, comments and blanks.
 */
static int random_line(struct model *m, unsigned line, char *out, size_t cap)
{
	struct ns_nodeurl u;
	struct ns_index_key key;
	char addr[80], pub[64];
	uint8_t key_bytes[32];
	int kind = rand() % 10, proto = rand() % 3;

	random_address(&u);
	format_address(&u, addr, sizeof addr);
	for (size_t i = 0; i < sizeof key_bytes; i++)
		key_bytes[i] = (uint8_t)rand();
	assert_true(ns_noise_pub_encode(key_bytes, pub, sizeof pub) > 0);
	if (kind == 8)
		return snprintf(out, cap, "%s", rand() % 2 ? "# a comment" : "   ");
	if (kind == 9) {
		/* No address and port: a name, no port, port 0. */
		static const char *const NO_ADDRESS[] = { "node.example:80?noise_pub=%s",
		                                          "10.9.9.9?noise_pub=%s",
		                                          "10.9.9.9:0?noise_pub=%s" };

		return snprintf(out, cap, NO_ADDRESS[rand() % 3], pub);
	}
	ns_index_make_key(&key, u.family, u.addr, u.port);
	if (model_find(m, &key) == NULL) {
		struct expected *e = &m->e[m->n++];

		e->key = key;
		e->line = line;
		e->broken = kind >= 6;
		e->noise_proto = proto;
		memcpy(e->noise_pub, key_bytes, sizeof key_bytes);
		if (e->broken)
			m->broken++;
		else
			m->entries++;
	}
	if (kind == 6)
		return snprintf(out, cap, "%s?noise_proto=%d", addr, proto); /* no noise_pub */
	if (kind == 7)
		return snprintf(out, cap, "%s?noise_proto=7&noise_pub=%s", addr, pub);
	return snprintf(out, cap, "%s?noise_proto=%d&noise_pub=%s  # node %u", addr, proto, pub,
	                line);
}

static char *random_cache(struct model *m, size_t *len)
{
	size_t cap = RANDOM_LINES * 160, used = 0;
	char *text = malloc(cap);

	assert_non_null(text);
	memset(m, 0, sizeof *m);
	for (unsigned line = 1; line <= RANDOM_LINES; line++) {
		used += (size_t)random_line(m, line, text + used, cap - used);
		text[used++] = '\n';
	}
	*len = used;
	return text;
}

static void sockaddr_of(const struct ns_index_key *k, struct sockaddr_in6 *sin6, socklen_t *len)
{
	memset(sin6, 0, sizeof *sin6);
	if (k->family == NS_ADDR_IPV4) {
		struct sockaddr_in *sin = (struct sockaddr_in *)sin6;

		sin->sin_family = AF_INET;
		sin->sin_port = htons(k->port);
		memcpy(&sin->sin_addr, k->addr, 4);
		*len = sizeof *sin;
		return;
	}
	sin6->sin6_family = AF_INET6;
	sin6->sin6_port = htons(k->port);
	memcpy(&sin6->sin6_addr, k->addr, 16);
	*len = sizeof *sin6;
}

typedef enum ns_cache_verdict lookup_fn(void *where, const struct sockaddr *sa, socklen_t len,
                                        struct ns_cache_hit *hit);

static enum ns_cache_verdict in_table(void *where, const struct sockaddr *sa, socklen_t len,
                                      struct ns_cache_hit *hit)
{
	return ns_cache_table_lookup(where, sa, len, hit);
}

static enum ns_cache_verdict in_watcher(void *where, const struct sockaddr *sa, socklen_t len,
                                        struct ns_cache_hit *hit)
{
	return ns_cache_lookup(where, sa, len, hit);
}

/* Every key of the model, its IPv4-mapped twin, and absent keys answer as the model says. */
static void expect_model(const struct model *m, const char *name, lookup_fn *lookup, void *where)
{
	struct ns_cache_hit hit;
	struct sockaddr_in6 sa;
	socklen_t len;
	char where_want[PATH_MAX + 16];

	for (size_t i = 0; i < m->n; i++) {
		const struct expected *e = &m->e[i];

		sockaddr_of(&e->key, &sa, &len);
		snprintf(where_want, sizeof where_want, "%s:%u", name, e->line);
		if (e->broken) {
			assert_int_equal(lookup(where, (struct sockaddr *)&sa, len, &hit),
			                 NS_CACHE_BROKEN);
		} else {
			assert_int_equal(lookup(where, (struct sockaddr *)&sa, len, &hit), NS_CACHE_HIT);
			assert_int_equal(hit.url.noise_proto, e->noise_proto);
			assert_memory_equal(hit.url.noise_pub, e->noise_pub, 32);
			assert_int_equal(hit.url.port, e->key.port);
		}
		assert_string_equal(hit.where, where_want);
		if (e->key.family == NS_ADDR_IPV4) {
			/* The same destination as a dual-stack program writes it. */
			struct ns_index_key mapped = { .family = NS_ADDR_IPV6, .port = e->key.port };

			mapped.addr[10] = mapped.addr[11] = 0xff;
			memcpy(mapped.addr + 12, e->key.addr, 4);
			sockaddr_of(&mapped, &sa, &len);
			assert_int_equal(lookup(where, (struct sockaddr *)&sa, len, &hit),
			                 e->broken ? NS_CACHE_BROKEN : NS_CACHE_HIT);
			assert_string_equal(hit.where, where_want);
		}
	}
	for (int i = 0; i < ABSENT_PROBES; i++) {
		struct ns_nodeurl u;
		struct ns_index_key k;

		random_address(&u);
		u.port = (uint16_t)(u.port + (rand() % 2 ? 0 : 100)); /* half surely absent */
		ns_index_make_key(&k, u.family, u.addr, u.port);
		sockaddr_of(&k, &sa, &len);
		assert_int_equal(lookup(where, (struct sockaddr *)&sa, len, &hit),
		                 model_find((struct model *)m, &k) == NULL
		                         ? NS_CACHE_MISS
		                         : (model_find((struct model *)m, &k)->broken ? NS_CACHE_BROKEN
		                                                                       : NS_CACHE_HIT));
	}
}

static void test_random_caches_agree_with_model(void **state)
{
	struct fixture *f = *state;
	static struct model m;

	srand(12345);
	for (int round = 0; round < RANDOM_ROUNDS; round++) {
		struct ns_cache_table *t;
		struct ns_cache *c;
		size_t len;
		char *text = random_cache(&m, &len);

		/* In memory. */
		t = ns_cache_table_parse(text, len, "random", NULL, NULL);
		assert_non_null(t);
		assert_int_equal(ns_cache_table_count(t), m.entries);
		assert_int_equal(ns_cache_table_broken(t), m.broken);
		expect_model(&m, "random", in_table, t);
		ns_cache_table_free(t);

		/* As a file, mapped by a watcher. */
		write_file(f->path, text, len);
		c = ns_cache_open(f->path, NULL, NULL);
		assert_non_null(c);
		assert_int_equal(ns_cache_count(c), m.entries);
		expect_model(&m, f->path, in_watcher, c);
		ns_cache_close(c);
		free(text);
	}
}

static void ignore(void *ctx, enum ns_cache_level level, const char *file, unsigned line,
                   const char *reason)
{
}

/* Several processes rebuilding at once leave one valid index and no temporary files. */
static void test_concurrent_rebuilders(void **state)
{
	struct fixture *f = *state;
	static struct model m;
	struct ns_cache *c;
	struct dirent *d;
	size_t len, files = 0;
	char *text;
	DIR *dir;

	srand(777);
	text = random_cache(&m, &len);
	write_file(f->path, text, len);
	free(text);
	for (int i = 0; i < REBUILDERS; i++) {
		pid_t pid = fork();

		assert_true(pid >= 0);
		if (pid == 0) {
			size_t entries, broken;

			for (int j = 0; j < REBUILDS_EACH; j++)
				if (ns_cache_index_update(f->path, ignore, NULL, &entries, &broken) != 0 ||
				    entries != m.entries || broken != m.broken)
					_exit(1);
			_exit(0);
		}
	}
	for (int i = 0; i < REBUILDERS; i++) {
		int status;

		assert_true(wait(&status) > 0);
		assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	}
	c = ns_cache_open(f->path, collect, f);
	if (strstr(f->log, "mapped index") == NULL || strstr(f->log, "built index") != NULL)
		fail_msg("expected the rebuilders' index to be mapped as it is:\n%s", f->log);
	expect_model(&m, f->path, in_watcher, c);
	ns_cache_close(c);
	dir = opendir(f->dir);
	assert_non_null(dir);
	while ((d = readdir(dir)) != NULL)
		if (d->d_name[0] != '.')
			files++;
	closedir(dir);
	assert_int_equal(files, 2); /* the cache and its index */
}

static const char SMALL[] = "127.0.0.1:7777?noise_pub=14N7s89T436KFPmWgbYtPSNergNUhPRDfDhudzwhrgSfzNFjvy\n"
                            "[2001:db8::1]:7777?noise_pub=14N7s89T436KFPmWgbYtPSNergNUhPRDfDhudzwhrgSfzNFjvy\n";

static enum ns_cache_verdict lookup_local(struct ns_cache *c, uint16_t port)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons(port) };
	struct ns_cache_hit hit;

	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	return ns_cache_lookup(c, (struct sockaddr *)&sin, sizeof sin, &hit);
}

static void stat_or_fail(const char *path, struct stat *st)
{
	assert_int_equal(stat(path, st), 0);
}

/* Build the index once; a second watcher maps the same file without building. */
static void make_index(struct fixture *f, struct stat *st)
{
	struct ns_cache *c;

	write_file(f->path, SMALL, strlen(SMALL));
	c = ns_cache_open(f->path, collect, f);
	assert_non_null(c);
	assert_non_null(strstr(f->log, "built index"));
	ns_cache_close(c);
	stat_or_fail(f->idx, st);
	f->log[0] = '\0';
}

/* Open a watcher on the damaged index: it must say why, rebuild, and answer correctly. */
static void expect_rebuilt(struct fixture *f, const struct stat *before, const char *why)
{
	struct ns_cache *c;
	struct stat after;

	c = ns_cache_open(f->path, collect, f);
	assert_non_null(c);
	if (strstr(f->log, why) == NULL || strstr(f->log, "built index") == NULL)
		fail_msg("expected \"%s\" and a rebuild, got:\n%s", why, f->log);
	assert_int_equal(lookup_local(c, 7777), NS_CACHE_HIT);
	assert_int_equal(lookup_local(c, 7778), NS_CACHE_MISS);
	ns_cache_close(c);
	stat_or_fail(f->idx, &after);
	assert_true(after.st_ino != before->st_ino);
	assert_int_equal(after.st_size, before->st_size);
	assert_int_equal(f->errors, 0);
}

static void patch(const char *path, off_t offset, const void *bytes, size_t n)
{
	int fd = open(path, O_WRONLY);

	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, bytes, n, offset), (ssize_t)n);
	assert_int_equal(close(fd), 0);
}

static void flip_byte(const char *path, off_t offset)
{
	uint8_t b;
	int fd = open(path, O_RDWR);

	assert_true(fd >= 0);
	assert_int_equal(pread(fd, &b, 1, offset), 1);
	b ^= 0x5a;
	assert_int_equal(pwrite(fd, &b, 1, offset), 1);
	assert_int_equal(close(fd), 0);
}

static void test_second_open_maps_without_building(void **state)
{
	struct fixture *f = *state;
	struct ns_cache *c;
	struct stat before, after;

	make_index(f, &before);
	c = ns_cache_open(f->path, collect, f);
	assert_non_null(strstr(f->log, "mapped index"));
	assert_null(strstr(f->log, "built index"));
	assert_int_equal(lookup_local(c, 7777), NS_CACHE_HIT);
	ns_cache_close(c);
	stat_or_fail(f->idx, &after);
	assert_int_equal(after.st_ino, before.st_ino);
	assert_int_equal(after.st_mtim.tv_nsec, before.st_mtim.tv_nsec);
}

static void test_truncated_index_is_rebuilt(void **state)
{
	struct fixture *f = *state;
	struct stat st;

	make_index(f, &st);
	assert_int_equal(truncate(f->idx, st.st_size - 1), 0);
	expect_rebuilt(f, &st, "truncated");
	make_index(f, &st);
	assert_int_equal(truncate(f->idx, 64), 0);
	expect_rebuilt(f, &st, "shorter than its header");
}

/* Where the buckets of an index start: after the header and the path (64 bytes for these). */
static const off_t BUCKETS_AT = NS_INDEX_HEADER_SIZE + 64;

/*
 * A damaged bucket could hide an entry, so a lookup that reads one is
 * refused, whether the key is there or not, and the index rebuilt.
 */
static void test_corrupt_bucket_is_refused_then_rebuilt(void **state)
{
	struct fixture *f = *state;
	struct ns_cache *c;
	struct stat st;
	off_t records_at;

	make_index(f, &st);
	/* Two records end the file; everything between the path and them is buckets. */
	records_at = st.st_size - 2 * NS_INDEX_RECORD_SIZE;
	for (off_t at = BUCKETS_AT; at < records_at; at += 64)
		flip_byte(f->idx, at + 7);
	c = ns_cache_open(f->path, collect, f);
	assert_non_null(strstr(f->log, "mapped index"));
	assert_int_equal(lookup_local(c, 7777), NS_CACHE_BROKEN);
	assert_int_equal(lookup_local(c, 7778), NS_CACHE_BROKEN);
	assert_int_equal(ns_cache_refresh(c), 1);
	assert_non_null(strstr(f->log, "built index"));
	assert_int_equal(lookup_local(c, 7777), NS_CACHE_HIT);
	assert_int_equal(lookup_local(c, 7778), NS_CACHE_MISS);
	ns_cache_close(c);
}

static void test_corrupt_header_is_rebuilt(void **state)
{
	struct fixture *f = *state;
	struct stat st;

	make_index(f, &st);
	flip_byte(f->idx, 72); /* inside the header, past the counts it checks by value */
	expect_rebuilt(f, &st, "checksum mismatch");
	make_index(f, &st);
	flip_byte(f->idx, NS_INDEX_HEADER_SIZE + 3); /* the source path */
	expect_rebuilt(f, &st, "checksum mismatch");
}

static void test_wrong_version_or_magic_is_rebuilt(void **state)
{
	struct fixture *f = *state;
	uint32_t version = NS_INDEX_VERSION + 1;
	struct stat st;

	make_index(f, &st);
	patch(f->idx, 8, &version, sizeof version);
	expect_rebuilt(f, &st, "another version");
	make_index(f, &st);
	patch(f->idx, 0, "XX", 2);
	expect_rebuilt(f, &st, "bad magic");
}

static void test_stale_index_is_rebuilt(void **state)
{
	struct fixture *f = *state;
	struct stat st;
	struct ns_cache *c;

	make_index(f, &st);
	write_file(f->path, SMALL, strlen(SMALL) / 2 + 1); /* the first line only */
	c = ns_cache_open(f->path, collect, f);
	assert_non_null(strstr(f->log, "another version of the text file"));
	assert_non_null(strstr(f->log, "built index"));
	assert_int_equal(ns_cache_count(c), 1);
	ns_cache_close(c);
}

/* A record is checked when read: a damaged one is refused, then the index rebuilt. */
static void test_corrupt_record_is_refused_then_rebuilt(void **state)
{
	struct fixture *f = *state;
	struct ns_cache *c;
	struct stat st;

	make_index(f, &st);
	/* The last byte of the file belongs to the last record. */
	flip_byte(f->idx, st.st_size - 20);
	flip_byte(f->idx, st.st_size - NS_INDEX_RECORD_SIZE - 20);
	c = ns_cache_open(f->path, collect, f);
	assert_non_null(strstr(f->log, "mapped index"));
	assert_int_equal(lookup_local(c, 7777), NS_CACHE_BROKEN);
	assert_int_equal(ns_cache_refresh(c), 1);
	assert_int_equal(lookup_local(c, 7777), NS_CACHE_HIT);
	ns_cache_close(c);
}

/* An index others could write, or that is a symlink, is not even read. */
static void test_untrusted_index_is_ignored(void **state)
{
	struct fixture *f = *state;
	struct stat st;

	make_index(f, &st);
	assert_int_equal(chmod(f->idx, 0666), 0);
	expect_rebuilt(f, &st, "closed to writes by others");
}

static void test_validate_rejects_short_memory(void **state)
{
	struct ns_file_id id = { 0 };
	struct ns_index_builder b;
	size_t cap = ns_index_max_size(4, "x"), len;
	uint8_t *mem = calloc(1, cap);
	struct ns_nodeurl u = { .family = NS_ADDR_IPV4, .addr = { 1, 2, 3, 4 }, .port = 5,
	                        .has_noise_pub = 1 };

	assert_non_null(mem);
	assert_int_equal(ns_index_begin(&b, mem, cap, 4, "x", &id, 99), 0);
	assert_int_equal(ns_index_add(&b, &u, 1, 0), 0);
	assert_int_equal(ns_index_add(&b, &u, 2, 0), 1);
	len = ns_index_finish(&b, 0);
	assert_null(ns_index_validate(mem, len));
	assert_non_null(ns_index_validate(mem, len - 1));
	assert_non_null(ns_index_validate(mem, len + NS_INDEX_RECORD_SIZE));
	assert_non_null(ns_index_validate(mem, 10));
	assert_int_equal(ns_index_begin(&b, mem, cap, NS_INDEX_MAX_ENTRIES + 1, "x", &id, 1), -1);
	free(mem);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_random_caches_agree_with_model, setup, teardown),
		cmocka_unit_test_setup_teardown(test_second_open_maps_without_building, setup, teardown),
		cmocka_unit_test_setup_teardown(test_concurrent_rebuilders, setup, teardown),
		cmocka_unit_test_setup_teardown(test_truncated_index_is_rebuilt, setup, teardown),
		cmocka_unit_test_setup_teardown(test_corrupt_bucket_is_refused_then_rebuilt, setup,
		                                teardown),
		cmocka_unit_test_setup_teardown(test_corrupt_header_is_rebuilt, setup, teardown),
		cmocka_unit_test_setup_teardown(test_wrong_version_or_magic_is_rebuilt, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stale_index_is_rebuilt, setup, teardown),
		cmocka_unit_test_setup_teardown(test_corrupt_record_is_refused_then_rebuilt, setup,
		                                teardown),
		cmocka_unit_test_setup_teardown(test_untrusted_index_is_ignored, setup, teardown),
		cmocka_unit_test(test_validate_rejects_short_memory),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
