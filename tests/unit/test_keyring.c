/*
 * The key ring: lists of key files, which errors name which file, change
 * detection, and reloads that keep the old ring when the new files fail.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "keyring.h"
#include "keys.h"

enum { KEYS = 3 };

struct fixture {
	char dir[64];
	char path[KEYS][128];
	uint8_t pub[KEYS][NS_KEY_LEN];
	char list[512];
	char err[NS_KEYRING_ERR_MAX];
};

/* Write a fresh key to path (replacing any file there, as a rotation tool would). */
static void new_key(const char *path, uint8_t pub[NS_KEY_LEN])
{
	uint8_t priv[NS_KEY_LEN];
	char err[256], tmp[160];

	snprintf(tmp, sizeof tmp, "%s.new", path);
	ns_key_generate(priv, pub);
	assert_int_equal(ns_key_write(tmp, priv, err, sizeof err), 0);
	assert_int_equal(rename(tmp, path), 0);
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof *f);

	assert_non_null(f);
	strcpy(f->dir, "/tmp/test_keyring.XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	for (int i = 0; i < KEYS; i++) {
		/* Through a copy: gcc -O1 takes two members of *f for overlapping objects. */
		char dir[sizeof f->dir];

		strcpy(dir, f->dir);
		snprintf(f->path[i], sizeof f->path[i], "%s/k%d", dir, i);
		new_key(f->path[i], f->pub[i]);
	}
	snprintf(f->list, sizeof f->list, "%s, %s,%s", f->path[0], f->path[1], f->path[2]);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	char other[160];

	for (int i = 0; i < KEYS; i++)
		unlink(f->path[i]);
	snprintf(other, sizeof other, "%s/extra", f->dir);
	unlink(other);
	rmdir(f->dir);
	free(f);
	return 0;
}

static void test_list_order_and_keys(void **state)
{
	struct fixture *f = *state;
	struct ns_keyring *r = ns_keyring_load(f->list, f->err, sizeof f->err);
	uint8_t pub[NS_KEY_LEN];

	assert_non_null(r);
	assert_int_equal(ns_keyring_count(r), KEYS);
	for (size_t i = 0; i < KEYS; i++) {
		const struct ns_keypair *k = ns_keyring_key(r, i);

		assert_non_null(k);
		/* The first file is the current key; order is the list's. */
		assert_memory_equal(k->pub, f->pub[i], NS_KEY_LEN);
		assert_int_equal(ns_key_public(k->priv, pub), 0);
		assert_memory_equal(pub, k->pub, NS_KEY_LEN);
		assert_string_equal(ns_keyring_path(r, i), f->path[i]);
	}
	assert_null(ns_keyring_key(r, KEYS));
	assert_null(ns_keyring_path(r, KEYS));
	assert_int_equal(ns_keyring_changed(r), 0);
	ns_keyring_free(r);
	ns_keyring_free(NULL);
}

static void test_single_file(void **state)
{
	struct fixture *f = *state;
	struct ns_keyring *r = ns_keyring_load(f->path[1], f->err, sizeof f->err);

	assert_non_null(r);
	assert_int_equal(ns_keyring_count(r), 1);
	assert_memory_equal(ns_keyring_key(r, 0)->pub, f->pub[1], NS_KEY_LEN);
	ns_keyring_free(r);
}

/* load list: refused, and err contains want. */
static void expect_refused(struct fixture *f, const char *list, const char *want)
{
	f->err[0] = '\0';
	assert_null(ns_keyring_load(list, f->err, sizeof f->err));
	if (strstr(f->err, want) == NULL)
		fail_msg("error \"%s\" lacks \"%s\"", f->err, want);
}

static void test_errors_name_the_file(void **state)
{
	struct fixture *f = *state;
	char list[512], missing[160];

	snprintf(missing, sizeof missing, "%s/absent", f->dir);
	snprintf(list, sizeof list, "%s,%s", f->path[0], missing);
	expect_refused(f, list, missing);

	/* A key that group or others can read is refused, naming that file only. */
	assert_int_equal(chmod(f->path[1], 0640), 0);
	snprintf(list, sizeof list, "%s,%s", f->path[0], f->path[1]);
	expect_refused(f, list, f->path[1]);
	if (strstr(f->err, f->path[0]) != NULL)
		fail_msg("error \"%s\" blames the good file too", f->err);
}

static void test_malformed_lists(void **state)
{
	struct fixture *f = *state;
	char list[NS_KEYRING_MAX * 160];

	expect_refused(f, "", "entry 1 of the list is empty");
	snprintf(list, sizeof list, "%s,", f->path[0]);
	expect_refused(f, list, "entry 2 of the list is empty");
	snprintf(list, sizeof list, "%s, ,%s", f->path[0], f->path[1]);
	expect_refused(f, list, "entry 2 of the list is empty");
	snprintf(list, sizeof list, "%s,%s,%s,%s,%s,%s,%s,%s,%s", f->path[0], f->path[0],
	         f->path[0], f->path[0], f->path[0], f->path[0], f->path[0], f->path[0], f->path[0]);
	expect_refused(f, list, "more than 8 key files");
}

/* The list walker goes on past a bad entry, so that a checker can report each one. */
static void test_next_path_steps_over_bad_entries(void **state)
{
	const char *cursor = " a ,\t,b/c,";
	char path[PATH_MAX], err[NS_KEYRING_ERR_MAX];
	unsigned n = 0;

	assert_int_equal(ns_keyring_next_path(&cursor, &n, path, err, sizeof err), 1);
	assert_string_equal(path, "a");
	assert_int_equal(ns_keyring_next_path(&cursor, &n, path, err, sizeof err), -1);
	assert_string_equal(err, "NOISESHIM_KEY: entry 2 of the list is empty");
	assert_int_equal(ns_keyring_next_path(&cursor, &n, path, err, sizeof err), 1);
	assert_string_equal(path, "b/c");
	assert_int_equal(ns_keyring_next_path(&cursor, &n, path, err, sizeof err), -1);
	assert_string_equal(err, "NOISESHIM_KEY: entry 4 of the list is empty");
	assert_int_equal(ns_keyring_next_path(&cursor, &n, path, err, sizeof err), 0);
	assert_int_equal(ns_keyring_next_path(&cursor, &n, path, err, sizeof err), 0);
	assert_int_equal(n, 4);
}

static void test_refresh_picks_up_a_replaced_file(void **state)
{
	struct fixture *f = *state;
	struct ns_keyring *r = ns_keyring_load(f->list, f->err, sizeof f->err);
	uint8_t fresh[NS_KEY_LEN];

	assert_non_null(r);
	assert_int_equal(ns_keyring_refresh(&r, f->err, sizeof f->err), 0);
	new_key(f->path[2], fresh);
	assert_int_equal(ns_keyring_changed(r), 1);
	assert_int_equal(ns_keyring_refresh(&r, f->err, sizeof f->err), 1);
	assert_memory_equal(ns_keyring_key(r, 2)->pub, fresh, NS_KEY_LEN);
	assert_memory_equal(ns_keyring_key(r, 0)->pub, f->pub[0], NS_KEY_LEN);
	assert_int_equal(ns_keyring_changed(r), 0);
	ns_keyring_free(r);
}

static void test_failed_reload_keeps_the_old_ring(void **state)
{
	struct fixture *f = *state;
	struct ns_keyring *r = ns_keyring_load(f->list, f->err, sizeof f->err), *before = r;
	FILE *fp;

	assert_non_null(r);
	/* The current key is rewritten with garbage: the ring in use must not change. */
	fp = fopen(f->path[0], "w");
	assert_non_null(fp);
	fputs("not a key\n", fp);
	assert_int_equal(fclose(fp), 0);
	assert_int_equal(ns_keyring_changed(r), 1);
	assert_int_equal(ns_keyring_refresh(&r, f->err, sizeof f->err), -1);
	assert_ptr_equal(r, before);
	assert_non_null(strstr(f->err, f->path[0]));
	assert_memory_equal(ns_keyring_key(r, 0)->pub, f->pub[0], NS_KEY_LEN);

	/* A removed file is a change too, and the reload fails the same way. */
	new_key(f->path[0], f->pub[0]);
	assert_int_equal(ns_keyring_refresh(&r, f->err, sizeof f->err), 1);
	assert_int_equal(unlink(f->path[1]), 0);
	assert_int_equal(ns_keyring_changed(r), 1);
	assert_int_equal(ns_keyring_refresh(&r, f->err, sizeof f->err), -1);
	assert_non_null(strstr(f->err, f->path[1]));
	assert_int_equal(ns_keyring_count(r), KEYS);
	ns_keyring_free(r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_list_order_and_keys, setup, teardown),
		cmocka_unit_test_setup_teardown(test_single_file, setup, teardown),
		cmocka_unit_test_setup_teardown(test_errors_name_the_file, setup, teardown),
		cmocka_unit_test_setup_teardown(test_malformed_lists, setup, teardown),
		cmocka_unit_test(test_next_path_steps_over_bad_entries),
		cmocka_unit_test_setup_teardown(test_refresh_picks_up_a_replaced_file, setup, teardown),
		cmocka_unit_test_setup_teardown(test_failed_reload_keeps_the_old_ring, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
