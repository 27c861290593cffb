/*
 * Key generation, derivation and key files.
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

#include "keys.h"

struct keydir {
	char dir[64];
	char path[128];
};

static int keydir_setup(void **state)
{
	struct keydir *k = calloc(1, sizeof *k);

	if (k == NULL)
		return -1;
	strcpy(k->dir, "/tmp/test_keys.XXXXXX");
	if (mkdtemp(k->dir) == NULL) {
		free(k);
		return -1;
	}
	snprintf(k->path, sizeof k->path, "%s/key", k->dir);
	*state = k;
	return 0;
}

static int keydir_teardown(void **state)
{
	struct keydir *k = *state;

	unlink(k->path);
	rmdir(k->dir);
	free(k);
	return 0;
}

static void write_text(const char *path, const char *text, mode_t mode)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	assert_true(fputs(text, f) >= 0);
	assert_int_equal(fclose(f), 0);
	assert_int_equal(chmod(path, mode), 0);
}

static void test_known_public_key(void **state)
{
	static const uint8_t expected[NS_KEY_LEN] = {
		0x07, 0xa3, 0x7c, 0xbc, 0x14, 0x20, 0x93, 0xc8, 0xb7, 0x55, 0xdc,
		0x1b, 0x10, 0xe8, 0x6c, 0xb4, 0x26, 0x37, 0x4a, 0xd1, 0x6a, 0xa8,
		0x53, 0xed, 0x0b, 0xdf, 0xc0, 0xb2, 0xb8, 0x6d, 0x1c, 0x7c,
	};
	uint8_t priv[NS_KEY_LEN], pub[NS_KEY_LEN];

	for (int i = 0; i < NS_KEY_LEN; i++)
		priv[i] = (uint8_t)(i + 1);
	assert_int_equal(ns_key_public(priv, pub), 0);
	assert_memory_equal(pub, expected, NS_KEY_LEN);
}

static void test_generate_pairs_match(void **state)
{
	uint8_t priv1[NS_KEY_LEN], pub1[NS_KEY_LEN], priv2[NS_KEY_LEN], pub2[NS_KEY_LEN];
	uint8_t derived[NS_KEY_LEN];

	ns_key_generate(priv1, pub1);
	ns_key_generate(priv2, pub2);
	assert_memory_not_equal(priv1, priv2, NS_KEY_LEN);
	assert_int_equal(ns_key_public(priv1, derived), 0);
	assert_memory_equal(derived, pub1, NS_KEY_LEN);
}

static void test_write_load_round_trip(void **state)
{
	struct keydir *k = *state;
	uint8_t priv[NS_KEY_LEN], pub[NS_KEY_LEN], loaded[NS_KEY_LEN];
	char err[256], text[80];
	struct stat st;
	FILE *f;

	ns_key_generate(priv, pub);
	assert_int_equal(ns_key_write(k->path, priv, err, sizeof err), 0);
	assert_int_equal(stat(k->path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(st.st_size, 65);

	f = fopen(k->path, "r");
	assert_non_null(f);
	assert_non_null(fgets(text, sizeof text, f));
	fclose(f);
	assert_int_equal(strlen(text), 65);
	assert_int_equal(text[64], '\n');
	for (int i = 0; i < 64; i++)
		assert_non_null(strchr("0123456789abcdef", text[i]));

	assert_int_equal(ns_key_load(k->path, loaded, err, sizeof err), 0);
	assert_memory_equal(loaded, priv, NS_KEY_LEN);
}

static void test_write_refuses_existing(void **state)
{
	struct keydir *k = *state;
	uint8_t priv[NS_KEY_LEN], pub[NS_KEY_LEN], loaded[NS_KEY_LEN];
	char err[256];

	ns_key_generate(priv, pub);
	assert_int_equal(ns_key_write(k->path, priv, err, sizeof err), 0);
	ns_key_generate(priv, pub);
	err[0] = '\0';
	assert_int_equal(ns_key_write(k->path, priv, err, sizeof err), -1);
	assert_non_null(strstr(err, k->path));
	assert_non_null(strstr(err, "exists"));
	/* The first key is untouched. */
	assert_int_equal(ns_key_load(k->path, loaded, err, sizeof err), 0);
	assert_memory_not_equal(loaded, priv, NS_KEY_LEN);
}

static void test_load_refuses_group_readable(void **state)
{
	struct keydir *k = *state;
	uint8_t priv[NS_KEY_LEN];
	char err[512];

	write_text(k->path, "0102030405060708091011121314151617181920212223242526272829303132\n",
	           0644);
	err[0] = '\0';
	assert_int_equal(ns_key_load(k->path, priv, err, sizeof err), -1);
	assert_non_null(strstr(err, "chmod 600"));
	assert_non_null(strstr(err, k->path));
	assert_non_null(strstr(err, "0644"));

	assert_int_equal(chmod(k->path, 0640), 0);
	assert_int_equal(ns_key_load(k->path, priv, err, sizeof err), -1);
	assert_int_equal(chmod(k->path, 0602), 0);
	assert_int_equal(ns_key_load(k->path, priv, err, sizeof err), -1);
	assert_int_equal(chmod(k->path, 0400), 0);
	assert_int_equal(ns_key_load(k->path, priv, err, sizeof err), 0);
}

static void test_load_missing(void **state)
{
	struct keydir *k = *state;
	uint8_t priv[NS_KEY_LEN];
	char err[256];

	err[0] = '\0';
	assert_int_equal(ns_key_load(k->path, priv, err, sizeof err), -1);
	assert_non_null(strstr(err, k->path));
}

static void test_load_refuses_malformed(void **state)
{
	static const char *const bad[] = {
		"",
		"\n",
		"010203\n",
		/* 63 digits */
		"010203040506070809101112131415161718192021222324252627282930313\n",
		/* 66 digits */
		"010203040506070809101112131415161718192021222324252627282930313233\n",
		/* a non-hex digit */
		"0102030405060708091011121314151617181920212223242526272829303g32\n",
		/* two newlines */
		"0102030405060708091011121314151617181920212223242526272829303132\n\n",
		/* a space before the newline */
		"0102030405060708091011121314151617181920212223242526272829303132 \n",
	};
	struct keydir *k = *state;
	uint8_t priv[NS_KEY_LEN];
	char err[256];

	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		unlink(k->path);
		write_text(k->path, bad[i], 0600);
		err[0] = '\0';
		assert_int_equal(ns_key_load(k->path, priv, err, sizeof err), -1);
		assert_non_null(strstr(err, k->path));
		assert_non_null(strstr(err, "64 hex digits"));
	}
}

static void test_load_accepts_missing_newline(void **state)
{
	struct keydir *k = *state;
	uint8_t priv[NS_KEY_LEN];
	char err[256];

	write_text(k->path, "0102030405060708091011121314151617181920212223242526272829303132",
	           0600);
	assert_int_equal(ns_key_load(k->path, priv, err, sizeof err), 0);
	assert_int_equal(priv[0], 0x01);
	assert_int_equal(priv[31], 0x32);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_known_public_key),
		cmocka_unit_test(test_generate_pairs_match),
		cmocka_unit_test_setup_teardown(test_write_load_round_trip, keydir_setup,
		                                keydir_teardown),
		cmocka_unit_test_setup_teardown(test_write_refuses_existing, keydir_setup,
		                                keydir_teardown),
		cmocka_unit_test_setup_teardown(test_load_refuses_group_readable, keydir_setup,
		                                keydir_teardown),
		cmocka_unit_test_setup_teardown(test_load_missing, keydir_setup, keydir_teardown),
		cmocka_unit_test_setup_teardown(test_load_refuses_malformed, keydir_setup,
		                                keydir_teardown),
		cmocka_unit_test_setup_teardown(test_load_accepts_missing_newline, keydir_setup,
		                                keydir_teardown),
	};

	return cmocka_run_group_tests_name("keys", tests, NULL, NULL);
}
