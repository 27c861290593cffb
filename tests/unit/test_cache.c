/*
 * The NodeURL cache: which lines load, which are reported, lookups by
 * connect() address, and reloading when the file changes.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

#include "cache.h"

#define NOISE_PUB "14N7s89T436KFPmWgbYtPSNergNUhPRDfDhudzwhrgSfzNFjvy"
#define NODE_ID "12vha9oTFnerxYRgeQ2BZqoFrLrnmmf5UWTCY2jA77dF3YvWew7"

enum { MAX_REPORTS = 16 };

/* Everything the cache reported, in order. */
struct reports {
	size_t n;
	unsigned line[MAX_REPORTS];
	char file[MAX_REPORTS][PATH_MAX];
	char reason[MAX_REPORTS][256];
};

struct fixture {
	char dir[64];
	char path[128];
	struct reports reports;
};

/* Problems only: which index was mapped or built is logged at debug level, and not counted. */
static void record(void *ctx, enum ns_cache_level level, const char *file, unsigned line,
                   const char *reason)
{
	struct reports *r = ctx;

	if (level == NS_CACHE_DEBUG)
		return;
	assert_true(r->n < MAX_REPORTS);
	r->line[r->n] = line;
	snprintf(r->file[r->n], sizeof r->file[0], "%s", file);
	snprintf(r->reason[r->n], sizeof r->reason[0], "%s", reason);
	r->n++;
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof *f);

	assert_non_null(f);
	strcpy(f->dir, "/tmp/test_cache.XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->path, sizeof f->path, "%s/cache", f->dir);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	char idx[160];

	snprintf(idx, sizeof idx, "%s.idx", f->path);
	unlink(idx);
	unlink(f->path);
	rmdir(f->dir);
	free(f);
	return 0;
}

/* Replace the file at path with text, as editors and config tools do: write aside, rename. */
static void replace_file(const char *path, const char *text)
{
	char tmp[256];
	FILE *fp;

	snprintf(tmp, sizeof tmp, "%s.new", path);
	fp = fopen(tmp, "w");
	assert_non_null(fp);
	assert_true(fputs(text, fp) >= 0);
	assert_int_equal(fclose(fp), 0);
	assert_int_equal(rename(tmp, path), 0);
}

static struct sockaddr_in ipv4(const char *ip, uint16_t port)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons(port) };

	assert_int_equal(inet_pton(AF_INET, ip, &sin.sin_addr), 1);
	return sin;
}

static struct sockaddr_in6 ipv6(const char *ip, uint16_t port)
{
	struct sockaddr_in6 sin6 = { .sin6_family = AF_INET6, .sin6_port = htons(port) };

	assert_int_equal(inet_pton(AF_INET6, ip, &sin6.sin6_addr), 1);
	return sin6;
}

/* The last hit, so that the NodeURL a lookup returned can be inspected. */
static struct ns_cache_hit last;

static const struct ns_nodeurl *verdict_url(enum ns_cache_verdict v)
{
	return v == NS_CACHE_HIT ? &last.url : NULL;
}

static enum ns_cache_verdict verdict4(const struct ns_cache_table *t, const char *ip,
                                      uint16_t port)
{
	struct sockaddr_in sin = ipv4(ip, port);

	return ns_cache_table_lookup(t, (const struct sockaddr *)&sin, sizeof sin, &last);
}

static enum ns_cache_verdict verdict6(const struct ns_cache_table *t, const char *ip,
                                      uint16_t port)
{
	struct sockaddr_in6 sin6 = ipv6(ip, port);

	return ns_cache_table_lookup(t, (const struct sockaddr *)&sin6, sizeof sin6, &last);
}

static const struct ns_nodeurl *find4(const struct ns_cache_table *t, const char *ip,
                                      uint16_t port)
{
	return verdict_url(verdict4(t, ip, port));
}

static const struct ns_nodeurl *find6(const struct ns_cache_table *t, const char *ip,
                                      uint16_t port)
{
	return verdict_url(verdict6(t, ip, port));
}

static enum ns_cache_verdict watch4(struct ns_cache *c, const char *ip, uint16_t port)
{
	struct sockaddr_in sin = ipv4(ip, port);

	return ns_cache_lookup(c, (const struct sockaddr *)&sin, sizeof sin, &last);
}

static const char MIXED[] =
	"# NodeURL cache\n"                                                        /* 1 */
	"\n"                                                                       /* 2 */
	"127.0.0.1:7777?noise_pub=" NOISE_PUB "\n"                                 /* 3 */
	"  [2001:db8::1]:8888?noise_proto=2&noise_pub=" NOISE_PUB "  # a node\r\n" /* 4 */
	"10.0.0.1:0?noise_pub=" NOISE_PUB "\n"                                     /* 5 */
	"node.example.com:80?noise_pub=" NOISE_PUB "\n"                            /* 6 */
	"10.0.0.2?noise_pub=" NOISE_PUB "\n"                                       /* 7 */
	"10.0.0.3:80\n"                                                            /* 8 */
	"127.0.0.1:7777?noise_proto=1&noise_pub=" NOISE_PUB "\n"                   /* 9 */
	"[2001:db8::2:80?noise_pub=" NOISE_PUB "\n"                                /* 10 */
	"\t# indented comment\n"                                                   /* 11 */
	NODE_ID "@10.0.0.4:443?f=1&noise_pub=" NOISE_PUB "\n"                      /* 12 */
	"[::ffff:10.0.0.5]:80?noise_pub=" NOISE_PUB;                               /* 13, no newline */

static void test_parse_reports_bad_lines(void **state)
{
	struct fixture *f = *state;
	struct reports *r = &f->reports;
	const unsigned want[] = { 5, 6, 7, 8, 9, 10 };
	struct ns_cache_table *t;

	t = ns_cache_table_parse(MIXED, strlen(MIXED), "cache.txt", record, r);
	assert_non_null(t);
	assert_int_equal(ns_cache_table_count(t), 4);
	assert_int_equal(ns_cache_table_broken(t), 1);
	assert_int_equal(r->n, sizeof want / sizeof want[0]);
	for (size_t i = 0; i < r->n; i++) {
		assert_int_equal(r->line[i], want[i]);
		assert_string_equal(r->file[i], "cache.txt");
	}
	assert_non_null(strstr(r->reason[0], "bad port"));
	assert_non_null(strstr(r->reason[0], "\"10.0.0.1:0?noise_pub="));
	assert_non_null(strstr(r->reason[1], "name"));
	assert_non_null(strstr(r->reason[2], "no port"));
	assert_non_null(strstr(r->reason[3], "no noise_pub"));
	assert_non_null(strstr(r->reason[3], "refused"));
	assert_non_null(strstr(r->reason[4], "line 3"));
	assert_non_null(strstr(r->reason[5], "bad host"));
	/* Line 8 has an address and port: connects to it fail closed, naming the line. */
	assert_int_equal(verdict4(t, "10.0.0.3", 80), NS_CACHE_BROKEN);
	assert_string_equal(last.where, "cache.txt:8");
	assert_string_equal(last.reason, "no noise_pub");
	assert_int_equal(verdict6(t, "::ffff:10.0.0.3", 80), NS_CACHE_BROKEN);
	/* Lines without an address and port leave nothing behind. */
	assert_int_equal(verdict4(t, "10.0.0.1", 0), NS_CACHE_MISS);
	assert_int_equal(verdict4(t, "10.0.0.2", 80), NS_CACHE_MISS);
	ns_cache_table_free(t);
}

static void test_unsupported_noise_proto_is_reported(void **state)
{
	static const char text[] = "127.0.0.1:7777?noise_proto=9&noise_pub=" NOISE_PUB "\n"
	                           "127.0.0.1:7778?noise_proto=2&noise_pub=" NOISE_PUB "\n";
	struct fixture *f = *state;
	struct ns_cache_table *t;

	t = ns_cache_table_parse(text, strlen(text), "c", record, &f->reports);
	assert_int_equal(ns_cache_table_count(t), 1);
	assert_int_equal(ns_cache_table_broken(t), 1);
	assert_int_equal(f->reports.n, 1);
	assert_int_equal(f->reports.line[0], 1);
	assert_non_null(strstr(f->reports.reason[0], "unsupported noise_proto"));
	assert_int_equal(verdict4(t, "127.0.0.1", 7777), NS_CACHE_BROKEN);
	assert_string_equal(last.where, "c:1");
	assert_int_equal(verdict4(t, "127.0.0.1", 7778), NS_CACHE_HIT);
	ns_cache_table_free(t);
}

/* Every way a line with an address can be bad fails closed; the first line for an address wins. */
static void test_broken_entries(void **state)
{
	static const char text[] =
		"10.0.0.1:80?noise_pub=14N7s89T436KFPmWgbYtPSNergNUhPRDfDhudzwhrgSfzNFjvz\n" /* 1 */
		"10.0.0.2:80?noise_pub=0OIl\n"                                               /* 2 */
		"bad-id@10.0.0.3:80?noise_pub=" NOISE_PUB "\n"                               /* 3 */
		"10.0.0.4:80?noise_pub=" NOISE_PUB "&debounce=x\n"                           /* 4 */
		"[2001:db8::9]:80?f=zz&noise_pub=" NOISE_PUB "\n"                            /* 5 */
		"10.0.0.4:80?noise_pub=" NOISE_PUB "\n"                                      /* 6 */
		"10.0.0.5:80?noise_pub=" NOISE_PUB "\n"                                      /* 7 */
		"10.0.0.5:80?noise_pub=bad\n";                                               /* 8 */
	struct fixture *f = *state;
	struct ns_cache_table *t;

	t = ns_cache_table_parse(text, strlen(text), "c", record, &f->reports);
	assert_non_null(t);
	assert_int_equal(ns_cache_table_count(t), 1);
	assert_int_equal(ns_cache_table_broken(t), 5);
	assert_int_equal(f->reports.n, 7);
	assert_int_equal(verdict4(t, "10.0.0.1", 80), NS_CACHE_BROKEN);
	assert_non_null(strstr(last.reason, "checksum"));
	assert_int_equal(verdict4(t, "10.0.0.2", 80), NS_CACHE_BROKEN);
	assert_int_equal(verdict4(t, "10.0.0.3", 80), NS_CACHE_BROKEN);
	assert_string_equal(last.where, "c:3");
	assert_int_equal(verdict4(t, "10.0.0.4", 80), NS_CACHE_BROKEN); /* line 6 repeats it */
	assert_string_equal(last.where, "c:4");
	assert_int_equal(verdict6(t, "2001:db8::9", 80), NS_CACHE_BROKEN);
	assert_int_equal(verdict4(t, "10.0.0.5", 80), NS_CACHE_HIT);     /* line 8 repeats it */
	assert_string_equal(last.where, "c:7");
	assert_int_equal(verdict4(t, "10.0.0.6", 80), NS_CACHE_MISS);
	ns_cache_table_free(t);
}

static void test_long_line_is_shortened_in_report(void **state)
{
	struct fixture *f = *state;
	char line[600];
	struct ns_cache_table *t;

	memset(line, 'x', sizeof line - 1);
	line[sizeof line - 1] = '\0';
	memcpy(line, "1.2.3.4:", 8);
	t = ns_cache_table_parse(line, strlen(line), "c", record, &f->reports);
	assert_int_equal(f->reports.n, 1);
	assert_int_equal(f->reports.line[0], 1);
	assert_true(strlen(f->reports.reason[0]) < 200);
	assert_non_null(strstr(f->reports.reason[0], "...\""));
	ns_cache_table_free(t);
}

static void test_lookup(void **state)
{
	struct ns_cache_table *t = ns_cache_table_parse(MIXED, strlen(MIXED), "c", NULL, NULL);
	const struct ns_nodeurl *u;
	uint8_t pub[32];

	assert_non_null(t);
	u = find4(t, "127.0.0.1", 7777);
	assert_non_null(u);
	assert_int_equal(u->noise_proto, 0); /* line 3, not its duplicate on line 9 */
	u = find6(t, "2001:db8::1", 8888);
	assert_non_null(u);
	assert_int_equal(u->noise_proto, 2);
	u = find4(t, "10.0.0.4", 443);
	assert_non_null(u);
	assert_true(u->has_features);
	assert_int_equal(u->features, 1);
	assert_int_equal(ns_noise_pub_decode(NOISE_PUB, strlen(NOISE_PUB), pub), NS_NODEURL_OK);
	assert_memory_equal(u->noise_pub, pub, sizeof pub);

	u = find6(t, "::ffff:127.0.0.1", 7777);
	assert_non_null(u);
	assert_int_equal(u->family, NS_ADDR_IPV4);
	assert_int_equal(u->port, 7777);
	assert_string_equal(last.where, "c:3");
	assert_non_null(find4(t, "10.0.0.5", 80)); /* written as a v4-mapped address */
	assert_non_null(find6(t, "::ffff:10.0.0.5", 80));

	assert_null(find4(t, "127.0.0.1", 7778));
	assert_null(find6(t, "2001:db8::1", 8889));
	assert_null(find4(t, "127.0.0.2", 7777));
	assert_null(find6(t, "::1", 7777));
	assert_null(find4(t, "10.0.0.1", 0));
	ns_cache_table_free(t);
}

static void test_lookup_rejects_odd_addresses(void **state)
{
	struct ns_cache_table *t = ns_cache_table_parse(MIXED, strlen(MIXED), "c", NULL, NULL);
	struct sockaddr_in sin = ipv4("127.0.0.1", 7777);
	struct sockaddr_un un = { .sun_family = AF_UNIX, .sun_path = "/tmp/sock" };

	assert_int_equal(ns_cache_table_lookup(t, (const struct sockaddr *)&sin, sizeof sin - 1, &last),
	                 NS_CACHE_MISS);
	assert_int_equal(ns_cache_table_lookup(t, (const struct sockaddr *)&un, sizeof un, &last),
	                 NS_CACHE_MISS);
	assert_int_equal(ns_cache_table_lookup(t, NULL, 0, &last), NS_CACHE_MISS);
	assert_int_equal(ns_cache_table_lookup(NULL, (const struct sockaddr *)&sin, sizeof sin, &last),
	                 NS_CACHE_UNREADABLE);
	ns_cache_table_free(t);
}

static void test_empty_and_comment_only(void **state)
{
	static const char comments[] = "# only\n\n   \n";
	struct fixture *f = *state;
	struct ns_cache_table *t;

	t = ns_cache_table_parse("", 0, "c", record, &f->reports);
	assert_non_null(t);
	assert_int_equal(ns_cache_table_count(t), 0);
	ns_cache_table_free(t);
	t = ns_cache_table_parse(comments, strlen(comments), "c", record, &f->reports);
	assert_int_equal(ns_cache_table_count(t), 0);
	assert_int_equal(f->reports.n, 0);
	ns_cache_table_free(t);
	ns_cache_table_free(NULL);
}

static void test_load_file(void **state)
{
	struct fixture *f = *state;
	struct ns_cache_table *t;

	replace_file(f->path, MIXED);
	t = ns_cache_table_load(f->path, record, &f->reports);
	assert_non_null(t);
	assert_int_equal(ns_cache_table_count(t), 4);
	assert_int_equal(f->reports.n, 6);
	assert_string_equal(f->reports.file[0], f->path);
	ns_cache_table_free(t);
}

static void test_load_missing_file(void **state)
{
	struct fixture *f = *state;

	errno = 0;
	assert_null(ns_cache_table_load(f->path, record, &f->reports));
	assert_int_equal(errno, ENOENT);
	assert_int_equal(f->reports.n, 1);
	assert_int_equal(f->reports.line[0], 0);
	assert_non_null(strstr(f->reports.reason[0], strerror(ENOENT)));
}

static void test_refresh(void **state)
{
	struct fixture *f = *state;
	struct ns_cache *c;

	replace_file(f->path, "127.0.0.1:7777?noise_pub=" NOISE_PUB "\n");
	c = ns_cache_open(f->path, record, &f->reports);
	assert_non_null(c);
	assert_int_equal(watch4(c, "127.0.0.1", 7777), NS_CACHE_HIT);
	assert_int_equal(ns_cache_refresh(c), 0);

	replace_file(f->path, "10.1.1.1:9000?noise_pub=" NOISE_PUB "\n");
	assert_int_equal(ns_cache_refresh(c), 1);
	assert_int_equal(watch4(c, "10.1.1.1", 9000), NS_CACHE_HIT);
	assert_int_equal(watch4(c, "127.0.0.1", 7777), NS_CACHE_MISS);
	assert_int_equal(ns_cache_refresh(c), 0);
	assert_int_equal(f->reports.n, 0);

	/* The file goes away: the last good index keeps answering, and it is said once. */
	assert_int_equal(unlink(f->path), 0);
	assert_int_equal(ns_cache_refresh(c), -1);
	assert_int_equal(ns_cache_refresh(c), -1);
	assert_int_equal(watch4(c, "10.1.1.1", 9000), NS_CACHE_HIT);
	assert_int_equal(f->reports.n, 1);
	assert_int_equal(f->reports.line[0], 0);

	replace_file(f->path, "10.2.2.2:9000?noise_pub=" NOISE_PUB "\n");
	assert_int_equal(ns_cache_refresh(c), 1);
	assert_int_equal(watch4(c, "10.2.2.2", 9000), NS_CACHE_HIT);
	ns_cache_close(c);
}

static void test_refresh_sees_in_place_rewrite(void **state)
{
	struct fixture *f = *state;
	struct ns_cache *c;
	FILE *fp;

	replace_file(f->path, "10.1.1.1:9000?noise_pub=" NOISE_PUB "\n");
	c = ns_cache_open(f->path, NULL, NULL);
	fp = fopen(f->path, "a");
	assert_non_null(fp);
	fputs("10.1.1.2:9000?noise_pub=" NOISE_PUB "\n", fp);
	assert_int_equal(fclose(fp), 0);
	assert_int_equal(ns_cache_refresh(c), 1);
	assert_int_equal(ns_cache_count(c), 2);
	ns_cache_close(c);
}

static void test_open_before_file_exists(void **state)
{
	struct fixture *f = *state;
	struct ns_cache *c;

	c = ns_cache_open(f->path, record, &f->reports);
	assert_non_null(c);
	assert_int_equal(watch4(c, "10.1.1.1", 9000), NS_CACHE_UNREADABLE);
	assert_int_equal(f->reports.n, 1);
	assert_int_equal(ns_cache_refresh(c), -1);
	assert_int_equal(watch4(c, "10.1.1.1", 9000), NS_CACHE_UNREADABLE);

	replace_file(f->path, "10.1.1.1:9000?noise_pub=" NOISE_PUB "\n");
	assert_int_equal(ns_cache_refresh(c), 1);
	assert_int_equal(watch4(c, "10.1.1.1", 9000), NS_CACHE_HIT);
	ns_cache_close(c);
	ns_cache_close(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_parse_reports_bad_lines, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unsupported_noise_proto_is_reported, setup, teardown),
		cmocka_unit_test_setup_teardown(test_broken_entries, setup, teardown),
cmocka_unit_test_setup_teardown(test_long_line_is_shortened_in_report, setup, teardown),
		cmocka_unit_test(test_lookup),
		cmocka_unit_test(test_lookup_rejects_odd_addresses),
		cmocka_unit_test_setup_teardown(test_empty_and_comment_only, setup, teardown),
		cmocka_unit_test_setup_teardown(test_load_file, setup, teardown),
		cmocka_unit_test_setup_teardown(test_load_missing_file, setup, teardown),
		cmocka_unit_test_setup_teardown(test_refresh, setup, teardown),
		cmocka_unit_test_setup_teardown(test_refresh_sees_in_place_rewrite, setup, teardown),
		cmocka_unit_test_setup_teardown(test_open_before_file_exists, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
