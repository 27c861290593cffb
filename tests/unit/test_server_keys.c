/*
 * A responder's keys and allowlist: what loading refuses, whom the
 * allowlist lets in and how a refusal reads, and reloads that keep what
 * was loaded before when the new files fail, logged once per problem.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "keys.h"
#include "nodeurl.h"
#include "server_keys.h"

enum { CLIENTS = 2, LINES_MAX = 16, LOGGED_LINE_MAX = 2048 };

struct fixture {
	char dir[64];
	char key[128], allow[128];
	uint8_t server_pub[NS_KEY_LEN];
	uint8_t client_pub[CLIENTS][NS_KEY_LEN];
	char client_text[CLIENTS][64];
	struct ns_server_keys k;
	char err[NS_SERVER_KEYS_ERR_MAX];
};

/* What the module logged, in order. */
static struct {
	enum ns_line_level level[LINES_MAX];
	char text[LINES_MAX][LOGGED_LINE_MAX];
	int count;
} logged;

static void capture(enum ns_line_level level, const char *line)
{
	if (logged.count == LINES_MAX)
		return;
	logged.level[logged.count] = level;
	snprintf(logged.text[logged.count], LOGGED_LINE_MAX, "%s", line);
	logged.count++;
}

/* How many error lines hold text. */
static int errors_with(const char *text)
{
	int n = 0;

	for (int i = 0; i < logged.count; i++)
		n += logged.level[i] == NS_LINE_ERROR && strstr(logged.text[i], text) != NULL;
	return n;
}

/* Write a fresh key to path by rename, as a rotation tool would. */
static void new_key(const char *path, uint8_t pub[NS_KEY_LEN])
{
	uint8_t priv[NS_KEY_LEN];
	char err[256], tmp[160];

	snprintf(tmp, sizeof tmp, "%s.new", path);
	ns_key_generate(priv, pub);
	assert_int_equal(ns_key_write(tmp, priv, err, sizeof err), 0);
	assert_int_equal(rename(tmp, path), 0);
}

/* Replace the file at path with text, by rename. */
static void write_file(const char *path, const char *text)
{
	char tmp[160];
	FILE *fp;

	snprintf(tmp, sizeof tmp, "%s.new", path);
	fp = fopen(tmp, "w");
	assert_non_null(fp);
	fputs(text, fp);
	assert_int_equal(fclose(fp), 0);
	assert_int_equal(rename(tmp, path), 0);
}

/* An allowlist naming the clients whose bits are set in which. */
static void write_allow(struct fixture *f, unsigned which)
{
	char text[256] = "# clients\n";

	for (int i = 0; i < CLIENTS; i++)
		if (which & 1u << i)
			snprintf(text + strlen(text), sizeof text - strlen(text), "%s\n", f->client_text[i]);
	write_file(f->allow, text);
}

static struct ns_server_keys_config config(const struct fixture *f, const char *allow)
{
	return (struct ns_server_keys_config){
		.keys = f->key, .key_setting = "--key", .allow = allow, .allow_setting = "--allow",
	};
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof *f);
	uint8_t priv[NS_KEY_LEN];
	char dir[sizeof f->dir];

	assert_non_null(f);
	strcpy(f->dir, "/tmp/test_server_keys.XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	strcpy(dir, f->dir);
	snprintf(f->key, sizeof f->key, "%s/server.key", dir);
	snprintf(f->allow, sizeof f->allow, "%s/allow", dir);
	new_key(f->key, f->server_pub);
	for (int i = 0; i < CLIENTS; i++) {
		ns_key_generate(priv, f->client_pub[i]);
		assert_true(ns_noise_pub_encode(f->client_pub[i], f->client_text[i],
		                                sizeof f->client_text[i]) > 0);
	}
	memset(&logged, 0, sizeof logged);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	ns_server_keys_free(&f->k);
	unlink(f->key);
	unlink(f->allow);
	rmdir(f->dir);
	free(f);
	return 0;
}

static void test_without_allowlist_every_client_enters(void **state)
{
	struct fixture *f = *state;
	const struct ns_server_keys_config cfg = config(f, NULL);

	assert_int_equal(ns_server_keys_load(&f->k, &cfg, f->err, sizeof f->err), 0);
	assert_memory_equal(ns_keyring_key(f->k.ring, 0)->pub, f->server_pub, NS_KEY_LEN);
	assert_true(ns_server_keys_allowed(&f->k, f->client_pub[0]));
	assert_true(ns_server_keys_allowed(&f->k, f->client_pub[1]));
	/* Just loaded: the files are not looked at again for a second. */
	assert_false(ns_server_keys_due(&f->k));
}

static void test_allowlist_lets_in_whom_it_lists(void **state)
{
	struct fixture *f = *state;
	const struct ns_server_keys_config cfg = config(f, f->allow);
	char line[NS_SERVER_KEYS_REFUSAL_MAX], expected[NS_SERVER_KEYS_REFUSAL_MAX];

	write_allow(f, 1);
	assert_int_equal(ns_server_keys_load(&f->k, &cfg, f->err, sizeof f->err), 0);
	assert_true(ns_server_keys_allowed(&f->k, f->client_pub[0]));
	assert_false(ns_server_keys_allowed(&f->k, f->client_pub[1]));
	ns_server_keys_refusal(&f->k, f->client_pub[1], line, sizeof line);
	snprintf(expected, sizeof expected, "client %s refused: its key is not in %s (--allow)",
	         f->client_text[1], f->allow);
	assert_string_equal(line, expected);
}

static void test_bad_files_refuse_to_load(void **state)
{
	struct fixture *f = *state;
	const struct ns_server_keys_config cfg = config(f, f->allow);
	char where[160];

	/* A bad line: the ring loads, the allowlist does not, and no one gets in. */
	write_file(f->allow, "# clients\nnot-a-key\n");
	assert_int_equal(ns_server_keys_load(&f->k, &cfg, f->err, sizeof f->err), -2);
	snprintf(where, sizeof where, "--allow: %s:2: ", f->allow);
	assert_non_null(strstr(f->err, where));
	assert_non_null(f->k.ring);
	assert_false(ns_server_keys_allowed(&f->k, f->client_pub[0]));
	ns_server_keys_free(&f->k);

	/* A key file that does not load: no ring, no one gets in. */
	write_file(f->key, "not a key\n");
	assert_int_equal(ns_server_keys_load(&f->k, &cfg, f->err, sizeof f->err), -1);
	assert_non_null(strstr(f->err, f->key));
	assert_null(f->k.ring);
	assert_false(ns_server_keys_allowed(&f->k, f->client_pub[0]));
}

static void test_reload_swaps_in_changed_files(void **state)
{
	struct fixture *f = *state;
	const struct ns_server_keys_config cfg = config(f, f->allow);
	uint8_t next[NS_KEY_LEN];

	write_allow(f, 1);
	assert_int_equal(ns_server_keys_load(&f->k, &cfg, f->err, sizeof f->err), 0);
	assert_int_equal(ns_server_keys_refresh(&f->k, capture), 0);
	assert_int_equal(logged.count, 0);

	new_key(f->key, next);
	write_allow(f, 3);
	assert_int_equal(ns_server_keys_refresh(&f->k, capture), 1);
	assert_memory_equal(ns_keyring_key(f->k.ring, 0)->pub, next, NS_KEY_LEN);
	assert_true(ns_server_keys_allowed(&f->k, f->client_pub[1]));
	assert_int_equal(logged.count, 2);
	assert_string_equal(logged.text[0], "--key: reloaded, 1 keys");
	assert_string_equal(logged.text[1], "--allow: reloaded, 2 keys");
}

static void test_failed_reload_keeps_what_was_loaded(void **state)
{
	struct fixture *f = *state;
	const struct ns_server_keys_config cfg = config(f, f->allow);

	write_allow(f, 3);
	assert_int_equal(ns_server_keys_load(&f->k, &cfg, f->err, sizeof f->err), 0);
	write_file(f->key, "not a key\n");
	assert_int_equal(unlink(f->allow), 0);
	/* Looked at twice: the same problems are logged once each. */
	assert_int_equal(ns_server_keys_refresh(&f->k, capture), 0);
	assert_int_equal(ns_server_keys_refresh(&f->k, capture), 0);
	assert_memory_equal(ns_keyring_key(f->k.ring, 0)->pub, f->server_pub, NS_KEY_LEN);
	assert_true(ns_server_keys_allowed(&f->k, f->client_pub[1]));
	assert_int_equal(errors_with("--key: reload failed: "), 1);
	assert_int_equal(errors_with(f->key), 1);
	assert_int_equal(errors_with("--allow: "), 1);
	assert_int_equal(errors_with("still using what was loaded before"), 2);

	/* A new list with a bad line is used all the same: the bad line keeps only its client out. */
	write_file(f->allow, "not-a-key\n");
	assert_int_equal(ns_server_keys_refresh(&f->k, capture), 0);
	assert_false(ns_server_keys_allowed(&f->k, f->client_pub[0]));
	assert_int_equal(errors_with("the other lines are in use"), 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_without_allowlist_every_client_enters, setup,
		                                teardown),
		cmocka_unit_test_setup_teardown(test_allowlist_lets_in_whom_it_lists, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_files_refuse_to_load, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reload_swaps_in_changed_files, setup, teardown),
		cmocka_unit_test_setup_teardown(test_failed_reload_keeps_what_was_loaded, setup,
		                                teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
