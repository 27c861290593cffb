/*
 * The client allowlist: which lines load, which are reported with their
 * file:line, lookups, and reloads on change.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "allowlist.h"
#include "keys.h"
#include "nodeurl.h"

enum { MAX_REPORTS = 8, CLIENTS = 3 };

struct reports {
	size_t n;
	unsigned line[MAX_REPORTS];
	char file[MAX_REPORTS][PATH_MAX];
	char reason[MAX_REPORTS][256];
};

struct fixture {
	char dir[64];
	char path[128];
	uint8_t pub[CLIENTS][NS_KEY_LEN];
	char text[CLIENTS][NS_NODEURL_STR_MAX];
	struct reports reports;
};

static void record(void *ctx, enum ns_cache_level level, const char *file, unsigned line,
                   const char *reason)
{
	struct reports *r = ctx;

	assert_true(r->n < MAX_REPORTS);
	r->line[r->n] = line;
	snprintf(r->file[r->n], sizeof r->file[0], "%s", file);
	snprintf(r->reason[r->n], sizeof r->reason[0], "%s", reason);
	r->n++;
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof *f);
	uint8_t priv[NS_KEY_LEN];

	assert_non_null(f);
	strcpy(f->dir, "/tmp/test_allowlist.XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->path, sizeof f->path, "%s/allow", f->dir);
	for (int i = 0; i < CLIENTS; i++) {
		ns_key_generate(priv, f->pub[i]);
		assert_true(ns_noise_pub_encode(f->pub[i], f->text[i], sizeof f->text[i]) > 0);
	}
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	char tmp[160];

	unlink(f->path);
	snprintf(tmp, sizeof tmp, "%s.new", f->path);
	unlink(tmp);
	rmdir(f->dir);
	free(f);
	return 0;
}

static void replace_file(const char *path, const char *text)
{
	char tmp[160];
	FILE *fp;

	snprintf(tmp, sizeof tmp, "%s.new", path);
	fp = fopen(tmp, "w");
	assert_non_null(fp);
	assert_true(fputs(text, fp) >= 0);
	assert_int_equal(fclose(fp), 0);
	assert_int_equal(rename(tmp, path), 0);
}

static void test_parse_lines(void **state)
{
	struct fixture *f = *state;
	struct reports *r = &f->reports;
	char text[4 * NS_NODEURL_STR_MAX + 256];
	struct ns_allowlist *a;
	uint8_t stranger[NS_KEY_LEN], priv[NS_KEY_LEN];

	snprintf(text, sizeof text,
	         "# clients of the backup service\n"      /* 1 */
	         "\n"                                     /* 2 */
	         "%s\n"                                   /* 3 */
	         "  %s   # laptop\r\n"                    /* 4 */
	         "not-a-key\n"                            /* 5 */
	         "%s\n"                                   /* 6: a repeat */
	         "%.20s\n"                                /* 7: cut short */
	         "\t# indented comment\n",                /* 8 */
	         f->text[0], f->text[1], f->text[0], f->text[2]);
	a = ns_allowlist_parse(text, strlen(text), "allow.txt", record, r);
	assert_non_null(a);
	assert_int_equal(ns_allowlist_count(a), 2);
	assert_true(ns_allowlist_contains(a, f->pub[0]));
	assert_true(ns_allowlist_contains(a, f->pub[1]));
	/* A line that did not parse lets nobody in, not even the key it was meant to be. */
	assert_false(ns_allowlist_contains(a, f->pub[2]));
	ns_key_generate(priv, stranger);
	assert_false(ns_allowlist_contains(a, stranger));

	assert_int_equal(r->n, 2);
	assert_int_equal(r->line[0], 5);
	assert_int_equal(r->line[1], 7);
	assert_string_equal(r->file[0], "allow.txt");
	assert_non_null(strstr(r->reason[0], "not-a-key"));
	assert_non_null(strstr(r->reason[0], "noise_pub"));
	ns_allowlist_free(a);
	ns_allowlist_free(NULL);
}

static void test_empty_list_lets_nobody_in(void **state)
{
	struct fixture *f = *state;
	struct ns_allowlist *a = ns_allowlist_parse("# none yet\n", 11, "x", record, &f->reports);

	assert_non_null(a);
	assert_int_equal(ns_allowlist_count(a), 0);
	assert_false(ns_allowlist_contains(a, f->pub[0]));
	assert_int_equal(ns_allowlist_changed(a), 0);
	ns_allowlist_free(a);
	assert_int_equal(f->reports.n, 0);
}

static void test_load_and_refresh(void **state)
{
	struct fixture *f = *state;
	char text[NS_NODEURL_STR_MAX + 2];
	struct ns_allowlist *a, *before;

	snprintf(text, sizeof text, "%s\n", f->text[0]);
	replace_file(f->path, text);
	a = ns_allowlist_load(f->path, record, &f->reports);
	assert_non_null(a);
	assert_true(ns_allowlist_contains(a, f->pub[0]));
	assert_false(ns_allowlist_contains(a, f->pub[1]));
	assert_int_equal(ns_allowlist_refresh(&a, record, &f->reports), 0);

	/* A client is added, another removed: both take effect on the reload. */
	snprintf(text, sizeof text, "%s\n", f->text[1]);
	replace_file(f->path, text);
	assert_int_equal(ns_allowlist_changed(a), 1);
	assert_int_equal(ns_allowlist_refresh(&a, record, &f->reports), 1);
	assert_false(ns_allowlist_contains(a, f->pub[0]));
	assert_true(ns_allowlist_contains(a, f->pub[1]));

	/* The file goes away: the last good list stays, and the failure is reported. */
	before = a;
	assert_int_equal(unlink(f->path), 0);
	assert_int_equal(ns_allowlist_refresh(&a, record, &f->reports), -1);
	assert_ptr_equal(a, before);
	assert_true(ns_allowlist_contains(a, f->pub[1]));
	assert_int_equal(f->reports.n, 1);
	assert_int_equal(f->reports.line[0], 0);
	assert_string_equal(f->reports.file[0], f->path);
	assert_non_null(strstr(f->reports.reason[0], strerror(ENOENT)));
	ns_allowlist_free(a);
}

static void test_unreadable_file(void **state)
{
	struct fixture *f = *state;

	assert_null(ns_allowlist_load(f->path, record, &f->reports));
	assert_int_equal(f->reports.n, 1);
	assert_int_equal(f->reports.line[0], 0);
	assert_null(ns_allowlist_load(f->dir, record, &f->reports));
	assert_int_equal(f->reports.n, 2);
	assert_string_equal(f->reports.file[1], f->dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_parse_lines, setup, teardown),
		cmocka_unit_test_setup_teardown(test_empty_list_lets_nobody_in, setup, teardown),
		cmocka_unit_test_setup_teardown(test_load_and_refresh, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unreadable_file, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
