/*
 * The static-static Diffie-Hellman table: the same results as computing
 * them, a hit for a pair seen before, bounded, and nothing kept for a
 * low-order key.  A handshake through it still produces the same bytes.
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

#include "dhcache.h"
#include "noise.h"

static void keypair(uint8_t priv[NS_KEY_LEN], uint8_t pub[NS_KEY_LEN])
{
	randombytes_buf(priv, NS_KEY_LEN);
	crypto_scalarmult_base(pub, priv);
}

static void same_as_computed_and_hit_again(void **state)
{
	uint8_t a_priv[NS_KEY_LEN], a_pub[NS_KEY_LEN], b_priv[NS_KEY_LEN], b_pub[NS_KEY_LEN];
	uint8_t want[NS_KEY_LEN], got[NS_KEY_LEN], other_side[NS_KEY_LEN];
	uint64_t hits;

	ns_dh_static_clear();
	keypair(a_priv, a_pub);
	keypair(b_priv, b_pub);
	assert_int_equal(crypto_scalarmult(want, a_priv, b_pub), 0);
	hits = ns_dh_static_hits();
	assert_int_equal(ns_dh_static(got, a_priv, a_pub, b_pub), 0);
	assert_memory_equal(got, want, NS_KEY_LEN);
	assert_int_equal(ns_dh_static_hits(), hits);
	memset(got, 0, sizeof(got));
	assert_int_equal(ns_dh_static(got, a_priv, a_pub, b_pub), 0);
	assert_memory_equal(got, want, NS_KEY_LEN);
	assert_int_equal(ns_dh_static_hits(), hits + 1);
	/* The other side of the pair is another entry, with the same secret. */
	assert_int_equal(ns_dh_static(other_side, b_priv, b_pub, a_pub), 0);
	assert_memory_equal(other_side, want, NS_KEY_LEN);
	assert_int_equal(ns_dh_static_hits(), hits + 1);
}

static void bounded_least_recently_used_leaves(void **state)
{
	uint8_t own_priv[NS_KEY_LEN], own_pub[NS_KEY_LEN], first_priv[NS_KEY_LEN], first[NS_KEY_LEN];
	uint8_t peer_priv[NS_KEY_LEN], peer[NS_KEY_LEN], out[NS_KEY_LEN], want[NS_KEY_LEN];
	uint64_t hits;

	ns_dh_static_clear();
	keypair(own_priv, own_pub);
	keypair(first_priv, first);
	assert_int_equal(ns_dh_static(out, own_priv, own_pub, first), 0);
	/* As many new peers as the table holds push the first one out. */
	for (int i = 0; i < NS_DH_CACHE_ENTRIES; i++) {
		keypair(peer_priv, peer);
		assert_int_equal(ns_dh_static(out, own_priv, own_pub, peer), 0);
		assert_int_equal(crypto_scalarmult(want, own_priv, peer), 0);
		assert_memory_equal(out, want, NS_KEY_LEN);
	}
	hits = ns_dh_static_hits();
	assert_int_equal(ns_dh_static(out, own_priv, own_pub, first), 0);
	assert_int_equal(ns_dh_static_hits(), hits);
	assert_int_equal(crypto_scalarmult(want, own_priv, first), 0);
	assert_memory_equal(out, want, NS_KEY_LEN);
	/* The most recent one is still there. */
	assert_int_equal(ns_dh_static(out, own_priv, own_pub, peer), 0);
	assert_int_equal(ns_dh_static_hits(), hits + 1);
}

static void low_order_key_fails_and_is_not_kept(void **state)
{
	uint8_t own_priv[NS_KEY_LEN], own_pub[NS_KEY_LEN], out[NS_KEY_LEN];
	static const uint8_t zero_point[NS_KEY_LEN];
	uint64_t hits;

	ns_dh_static_clear();
	keypair(own_priv, own_pub);
	hits = ns_dh_static_hits();
	assert_int_equal(ns_dh_static(out, own_priv, own_pub, zero_point), -1);
	assert_int_equal(ns_dh_static(out, own_priv, own_pub, zero_point), -1);
	assert_int_equal(ns_dh_static_hits(), hits);
}

/* A forked child uses the table at once: no lock of the parent's comes along held. */
static void usable_after_fork(void **state)
{
	uint8_t a_priv[NS_KEY_LEN], a_pub[NS_KEY_LEN], b_pub[NS_KEY_LEN], b_priv[NS_KEY_LEN];
	uint8_t out[NS_KEY_LEN];
	int status;
	pid_t pid;

	keypair(a_priv, a_pub);
	keypair(b_priv, b_pub);
	assert_int_equal(ns_dh_static(out, a_priv, a_pub, b_pub), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		alarm(5);
		_exit(ns_dh_static(out, a_priv, a_pub, b_pub) == 0 ? 0 : 1);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

/* Two handshakes between the same static keys: the second, through the table, agrees byte for byte. */
static void handshake_through_the_table(void **state)
{
	uint8_t ipriv[NS_KEY_LEN], rpriv[NS_KEY_LEN], msg1[2][256], msg2[2][256];
	struct ns_keypair is, rs;
	long n1[2], n2[2];
	uint64_t hits;

	randombytes_buf(ipriv, NS_KEY_LEN);
	randombytes_buf(rpriv, NS_KEY_LEN);
	assert_int_equal(ns_keypair_from_private(&is, ipriv), 0);
	assert_int_equal(ns_keypair_from_private(&rs, rpriv), 0);
	ns_dh_static_clear();
	hits = ns_dh_static_hits();
	for (int round = 0; round < 2; round++) {
		struct ns_handshake *i = ns_handshake_new_initiator(NS_SUITE_CHACHAPOLY, &is, rs.pub, NULL, 0);
		struct ns_handshake *r = ns_handshake_new_responder(NS_SUITE_CHACHAPOLY, &rs, NULL, 0);
		const uint8_t *payload;

		assert_non_null(i);
		assert_non_null(r);
		n1[round] = ns_handshake_write_msg1(i, (const uint8_t *)"hello", 5, msg1[round]);
		assert_true(n1[round] > 0);
		assert_int_equal(ns_handshake_read_msg1(r, msg1[round], (size_t)n1[round], &payload), 5);
		assert_memory_equal(payload, "hello", 5);
		n2[round] = ns_handshake_write_msg2(r, NULL, 0, msg2[round]);
		assert_true(n2[round] > 0);
		assert_int_equal(ns_handshake_read_msg2(i, msg2[round], (size_t)n2[round], &payload), 0);
		ns_handshake_free(i);
		ns_handshake_free(r);
	}
	/* The second round found both sides' ss in the table. */
	assert_int_equal(ns_dh_static_hits(), hits + 2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(same_as_computed_and_hit_again),
		cmocka_unit_test(bounded_least_recently_used_leaves),
		cmocka_unit_test(low_order_key_fails_and_is_not_kept),
		cmocka_unit_test(usable_after_fork),
		cmocka_unit_test(handshake_through_the_table),
	};

	if (sodium_init() < 0)
		return 1;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
