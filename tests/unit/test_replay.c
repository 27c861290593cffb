/*
 * Replay window: repeats, expiry, the capacity bound, and no false repeats.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <sodium.h>

#include "replay.h"

static void key_from_counter(uint32_t n, uint8_t key[NS_KEY_LEN])
{
	memset(key, 0, NS_KEY_LEN);
	memcpy(key, &n, sizeof n);
}

static void test_fresh_then_repeat(void **state)
{
	struct ns_replay *r = ns_replay_new(1000, 16);
	uint8_t a[NS_KEY_LEN], b[NS_KEY_LEN];

	assert_non_null(r);
	key_from_counter(1, a);
	key_from_counter(2, b);
	assert_int_equal(ns_replay_check(r, a, 10), NS_REPLAY_FRESH);
	assert_int_equal(ns_replay_check(r, a, 11), NS_REPLAY_REPEAT);
	assert_int_equal(ns_replay_check(r, b, 12), NS_REPLAY_FRESH);
	assert_int_equal(ns_replay_check(r, a, 13), NS_REPLAY_REPEAT);
	assert_int_equal(ns_replay_check(r, b, 14), NS_REPLAY_REPEAT);
	ns_replay_free(r);
}

static void test_expiry_after_window(void **state)
{
	struct ns_replay *r = ns_replay_new(500, 16);
	uint8_t a[NS_KEY_LEN];

	assert_non_null(r);
	key_from_counter(7, a);
	assert_int_equal(ns_replay_check(r, a, 1000), NS_REPLAY_FRESH);
	assert_int_equal(ns_replay_check(r, a, 1499), NS_REPLAY_REPEAT);
	/* A repeat does not renew the entry. */
	assert_int_equal(ns_replay_check(r, a, 1500), NS_REPLAY_FRESH);
	assert_int_equal(ns_replay_check(r, a, 1999), NS_REPLAY_REPEAT);
	ns_replay_free(r);
}

static void test_clock_step_back_keeps_entries(void **state)
{
	struct ns_replay *r = ns_replay_new(100, 4);
	uint8_t a[NS_KEY_LEN];

	assert_non_null(r);
	key_from_counter(3, a);
	assert_int_equal(ns_replay_check(r, a, 5000), NS_REPLAY_FRESH);
	assert_int_equal(ns_replay_check(r, a, 10), NS_REPLAY_REPEAT);
	ns_replay_free(r);
}

static void test_full_then_room_after_expiry(void **state)
{
	enum { CAP = 8 };
	struct ns_replay *r = ns_replay_new(100, CAP);
	uint8_t key[NS_KEY_LEN];

	assert_non_null(r);
	for (uint32_t i = 0; i < CAP; i++) {
		key_from_counter(i, key);
		assert_int_equal(ns_replay_check(r, key, 1000 + i), NS_REPLAY_FRESH);
	}
	key_from_counter(CAP, key);
	assert_int_equal(ns_replay_check(r, key, 1050), NS_REPLAY_FULL);
	/* Full, yet live entries are still known. */
	for (uint32_t i = 0; i < CAP; i++) {
		key_from_counter(i, key);
		assert_int_equal(ns_replay_check(r, key, 1050), NS_REPLAY_REPEAT);
	}
	/* At 1101 the first two entries (1000, 1001) have expired. */
	key_from_counter(CAP, key);
	assert_int_equal(ns_replay_check(r, key, 1101), NS_REPLAY_FRESH);
	key_from_counter(CAP + 1, key);
	assert_int_equal(ns_replay_check(r, key, 1101), NS_REPLAY_FRESH);
	key_from_counter(CAP + 2, key);
	assert_int_equal(ns_replay_check(r, key, 1101), NS_REPLAY_FULL);
	key_from_counter(2, key);
	assert_int_equal(ns_replay_check(r, key, 1101), NS_REPLAY_REPEAT);
	ns_replay_free(r);
}

static void test_many_random_keys(void **state)
{
	enum { N = 100000 };
	struct ns_replay *r = ns_replay_new(60000, N);
	uint8_t(*keys)[NS_KEY_LEN] = malloc((size_t)N * NS_KEY_LEN);

	assert_non_null(r);
	assert_non_null(keys);
	randombytes_buf(keys, (size_t)N * NS_KEY_LEN);
	for (size_t i = 0; i < N; i++)
		assert_int_equal(ns_replay_check(r, keys[i], 1000), NS_REPLAY_FRESH);
	for (size_t i = 0; i < N; i++)
		assert_int_equal(ns_replay_check(r, keys[i], 2000), NS_REPLAY_REPEAT);
	free(keys);
	ns_replay_free(r);
}

/*
 * Steady churn: keys arrive ten per millisecond and live 50 ms, so entries
 * are expired and deleted from the index all the time.  Every key still in
 * the window must keep being found.
 */
static void test_churn_keeps_live_entries(void **state)
{
	enum { N = 200000, PER_MS = 10, WINDOW = 50, LIVE = PER_MS * WINDOW };
	struct ns_replay *r = ns_replay_new(WINDOW, LIVE + PER_MS);
	uint8_t(*keys)[NS_KEY_LEN] = malloc((size_t)N * NS_KEY_LEN);

	assert_non_null(r);
	assert_non_null(keys);
	randombytes_buf(keys, (size_t)N * NS_KEY_LEN);
	for (uint32_t i = 0; i < N; i++) {
		uint64_t now = i / PER_MS;
		uint32_t back = randombytes_uniform(LIVE - PER_MS);

		assert_int_equal(ns_replay_check(r, keys[i], now), NS_REPLAY_FRESH);
		if (back <= i)
			assert_int_equal(ns_replay_check(r, keys[i - back], now),
			                 NS_REPLAY_REPEAT);
	}
	free(keys);
	ns_replay_free(r);
}

static void test_memory_is_bounded(void **state)
{
	struct ns_replay *r = ns_replay_new(1000, 1000000);

	assert_non_null(r);
	assert_true(ns_replay_memory(r) >= 1000000u * 32);
	assert_true(ns_replay_memory(r) <= 1000000u * 32 + 4096);
	ns_replay_free(r);
}

static void test_shared_window_spans_fork(void **state)
{
	struct ns_replay *r = ns_replay_new_shared(60000, 64);
	uint8_t seen_by_child[NS_KEY_LEN], seen_by_parent[NS_KEY_LEN];
	int status;
	pid_t pid;

	assert_non_null(r);
	key_from_counter(1, seen_by_child);
	key_from_counter(2, seen_by_parent);
	assert_int_equal(ns_replay_check(r, seen_by_parent, 10), NS_REPLAY_FRESH);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		_exit(ns_replay_check(r, seen_by_child, 20) == NS_REPLAY_FRESH &&
		      ns_replay_check(r, seen_by_parent, 20) == NS_REPLAY_REPEAT ? 0 : 1);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	/* What the child saw is a repeat here too. */
	assert_int_equal(ns_replay_check(r, seen_by_child, 30), NS_REPLAY_REPEAT);
	ns_replay_free(r);
}

static void test_bad_arguments(void **state)
{
	assert_null(ns_replay_new(1000, 0));
	ns_replay_free(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fresh_then_repeat),
		cmocka_unit_test(test_expiry_after_window),
		cmocka_unit_test(test_clock_step_back_keeps_entries),
		cmocka_unit_test(test_full_then_room_after_expiry),
		cmocka_unit_test(test_many_random_keys),
		cmocka_unit_test(test_churn_keeps_live_entries),
		cmocka_unit_test(test_memory_is_bounded),
		cmocka_unit_test(test_shared_window_spans_fork),
		cmocka_unit_test(test_bad_arguments),
	};

	if (sodium_init() < 0)
		return 1;
	return cmocka_run_group_tests_name("replay", tests, NULL, NULL);
}
