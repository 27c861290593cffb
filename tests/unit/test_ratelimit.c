/*
 * Per-address token buckets: the burst, the steady rate, addresses kept
 * apart, expiry of idle entries, the bound on entries, sharing across fork.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <sodium.h>

#include "ratelimit.h"

enum { RATE = 20, BURST = 5, COST_US = 1000000 / RATE, START_US = 10 * 1000000 };

static void address(uint32_t n, uint8_t addr[NS_RATELIMIT_ADDR_LEN])
{
	memset(addr, 0, NS_RATELIMIT_ADDR_LEN);
	addr[10] = addr[11] = 0xff;
	memcpy(addr + 12, &n, sizeof n);
}

static void test_burst_then_refill(void **state)
{
	struct ns_ratelimit *rl = ns_ratelimit_new(RATE, BURST, 64, 0);
	uint8_t a[NS_RATELIMIT_ADDR_LEN];

	assert_non_null(rl);
	address(1, a);
	for (int i = 0; i < BURST; i++)
		assert_true(ns_ratelimit_allow(rl, a, START_US));
	assert_false(ns_ratelimit_allow(rl, a, START_US));
	/* One token back after exactly one cost, not before. */
	assert_false(ns_ratelimit_allow(rl, a, START_US + COST_US - 1));
	assert_true(ns_ratelimit_allow(rl, a, START_US + COST_US));
	assert_false(ns_ratelimit_allow(rl, a, START_US + COST_US));
	ns_ratelimit_free(rl);
}

static void test_steady_rate(void **state)
{
	struct ns_ratelimit *rl = ns_ratelimit_new(RATE, BURST, 64, 0);
	uint8_t a[NS_RATELIMIT_ADDR_LEN];
	int allowed = 0;

	assert_non_null(rl);
	address(2, a);
	/* Ten seconds of one attempt per millisecond: the burst plus RATE a second. */
	for (uint64_t t = 0; t < 10 * 1000; t++)
		allowed += ns_ratelimit_allow(rl, a, START_US + t * 1000);
	assert_int_equal(allowed, BURST + 10 * RATE - 1);
	ns_ratelimit_free(rl);
}

static void test_addresses_are_independent(void **state)
{
	struct ns_ratelimit *rl = ns_ratelimit_new(RATE, BURST, 64, 0);
	uint8_t flooder[NS_RATELIMIT_ADDR_LEN], other[NS_RATELIMIT_ADDR_LEN];

	assert_non_null(rl);
	address(3, flooder);
	address(4, other);
	for (int i = 0; i < 100; i++)
		ns_ratelimit_allow(rl, flooder, START_US + (uint64_t)i);
	assert_false(ns_ratelimit_allow(rl, flooder, START_US + 100));
	for (int i = 0; i < BURST; i++)
		assert_true(ns_ratelimit_allow(rl, other, START_US + 100));
	assert_false(ns_ratelimit_allow(rl, other, START_US + 100));
	ns_ratelimit_free(rl);
}

static void test_idle_entries_expire(void **state)
{
	struct ns_ratelimit *rl = ns_ratelimit_new(RATE, BURST, 64, 0);
	uint8_t a[NS_RATELIMIT_ADDR_LEN];

	assert_non_null(rl);
	assert_int_equal(ns_ratelimit_tracked(rl, START_US), 0);
	for (uint32_t n = 0; n < 10; n++) {
		address(100 + n, a);
		assert_true(ns_ratelimit_allow(rl, a, START_US));
	}
	assert_int_equal(ns_ratelimit_tracked(rl, START_US), 10);
	/* Each spent one token: back in one cost, when the entry is no longer needed. */
	assert_int_equal(ns_ratelimit_tracked(rl, START_US + COST_US - 1), 10);
	assert_int_equal(ns_ratelimit_tracked(rl, START_US + COST_US), 0);
	/* An expired entry comes back with a full burst. */
	address(100, a);
	for (int i = 0; i < BURST; i++)
		assert_true(ns_ratelimit_allow(rl, a, START_US + COST_US));
	assert_false(ns_ratelimit_allow(rl, a, START_US + COST_US));
	ns_ratelimit_free(rl);
}

static void test_entries_are_bounded(void **state)
{
	enum { ENTRIES = 16, ADDRESSES = 10000 };
	struct ns_ratelimit *rl = ns_ratelimit_new(RATE, BURST, ENTRIES, 0);
	uint8_t heavy[NS_RATELIMIT_ADDR_LEN], a[NS_RATELIMIT_ADDR_LEN];
	size_t memory;

	assert_non_null(rl);
	memory = ns_ratelimit_memory(rl);
	assert_true(memory <= 4096);
	address(7, heavy);
	for (int i = 0; i < BURST; i++)
		assert_true(ns_ratelimit_allow(rl, heavy, START_US));
	/* Many addresses, each once, interleaved with the heavy one. */
	for (uint32_t n = 0; n < ADDRESSES; n++) {
		uint64_t now = START_US + 1 + n;

		address(1000 + n, a);
		assert_true(ns_ratelimit_allow(rl, a, now));
		/* The busiest address is never the one given up: it stays limited. */
		assert_false(ns_ratelimit_allow(rl, heavy, now));
	}
	assert_true(ns_ratelimit_tracked(rl, START_US + ADDRESSES) <= ENTRIES);
	assert_int_equal(ns_ratelimit_memory(rl), memory);
	ns_ratelimit_free(rl);
}

static void test_shared_across_fork(void **state)
{
	struct ns_ratelimit *rl = ns_ratelimit_new(RATE, BURST, 64, 1);
	uint8_t a[NS_RATELIMIT_ADDR_LEN];
	int status;
	pid_t pid;

	assert_non_null(rl);
	address(9, a);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int ok = 1;

		for (int i = 0; i < BURST; i++)
			ok &= ns_ratelimit_allow(rl, a, START_US);
		_exit(ok ? 0 : 1);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	/* The child took the whole burst. */
	assert_false(ns_ratelimit_allow(rl, a, START_US));
	ns_ratelimit_free(rl);
}

static void test_bad_arguments(void **state)
{
	assert_null(ns_ratelimit_new(0, BURST, 64, 0));
	assert_null(ns_ratelimit_new(RATE, 0, 64, 0));
	assert_null(ns_ratelimit_new(RATE, BURST, 0, 0));
	assert_null(ns_ratelimit_new(NS_RATELIMIT_MAX_RATE + 1, BURST, 64, 0));
	ns_ratelimit_free(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_burst_then_refill),
		cmocka_unit_test(test_steady_rate),
		cmocka_unit_test(test_addresses_are_independent),
		cmocka_unit_test(test_idle_entries_expire),
		cmocka_unit_test(test_entries_are_bounded),
		cmocka_unit_test(test_shared_across_fork),
		cmocka_unit_test(test_bad_arguments),
	};

	if (sodium_init() < 0)
		return 1;
	return cmocka_run_group_tests_name("ratelimit", tests, NULL, NULL);
}
