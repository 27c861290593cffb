/*
 * X25519 public keys through the Edwards curve: byte for byte what
 * libsodium's crypto_scalarmult_base computes, for RFC 7748's keys, for
 * keys at the edges of clamping, and for many random ones.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>

#include "hex.h"
#include "x25519.h"

enum { RANDOM_KEYS = 20000 };

static void assert_as_libsodium(const uint8_t priv[NS_KEY_LEN])
{
	uint8_t want[NS_KEY_LEN], got[NS_KEY_LEN];

	assert_int_equal(crypto_scalarmult_base(want, priv), 0);
	assert_int_equal(ns_x25519_public(got, priv), 0);
	assert_memory_equal(got, want, NS_KEY_LEN);
}

static void rfc7748_keys(void **state)
{
	static const char *const pairs[][2] = {
		{"77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a",
		 "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"},
		{"5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb",
		 "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f"},
	};

	for (size_t i = 0; i < sizeof(pairs) / sizeof(pairs[0]); i++) {
		uint8_t priv[NS_KEY_LEN], want[NS_KEY_LEN], got[NS_KEY_LEN];

		assert_int_equal(hex_decode_exact(pairs[i][0], priv, sizeof(priv)), 0);
		assert_int_equal(hex_decode_exact(pairs[i][1], want, sizeof(want)), 0);
		assert_int_equal(ns_x25519_public(got, priv), 0);
		assert_memory_equal(got, want, NS_KEY_LEN);
	}
}

/* Clamping decides the scalar: keys that differ only in the bits it sets or clears. */
static void clamping_edges(void **state)
{
	uint8_t priv[NS_KEY_LEN];

	memset(priv, 0, sizeof(priv));
	assert_as_libsodium(priv);
	memset(priv, 0xff, sizeof(priv));
	assert_as_libsodium(priv);
	memset(priv, 0, sizeof(priv));
	priv[0] = 7;
	priv[31] = 0x80;
	assert_as_libsodium(priv);
}

static void random_keys(void **state)
{
	uint8_t priv[NS_KEY_LEN];

	for (int i = 0; i < RANDOM_KEYS; i++) {
		randombytes_buf(priv, sizeof(priv));
		assert_as_libsodium(priv);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(rfc7748_keys),
		cmocka_unit_test(clamping_edges),
		cmocka_unit_test(random_keys),
	};

	if (sodium_init() < 0)
		return 1;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
