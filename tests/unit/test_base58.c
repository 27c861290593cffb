/*
 * base58 and base58check: Bitcoin's published vectors, leading zeros,
 * and every error status.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>

#include "base58.h"

struct vector {
	const char *hex;
	const char *text;
};

static const struct vector VECTORS[] = {
	{ "", "" },
	{ "61", "2g" },
	{ "626262", "a3gV" },
	{ "636363", "aPEr" },
	{ "73696d706c792061206c6f6e6720737472696e67", "2cFupjhnEsSn59qHXstmK2ffpLv2" },
	{ "00eb15231dfceb60925886b67d065299925915aeb172c06647", "1NS17iag9jJgTHD1VXjvLCEnZuQ3rJDE9L" },
	{ "516b6fcd0f", "ABnLTmg" },
	{ "bf4f89001e670274dd", "3SEo3LWLoPntC" },
	{ "572e4794", "3EFU7m" },
	{ "ecac89cad93923c02321", "EJDM8drfXA6uyA" },
	{ "10c8511e", "Rt5zm" },
	{ "00000000000000000000", "1111111111" },
};

/* Bitcoin's genesis block address: base58check of version 0 and a 20-byte hash. */
static const char ADDRESS[] = "1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa";
static const char ADDRESS_HASH_HEX[] = "62e907b15cbf27d5425399ebf6f0fb50ebb88f18";

static size_t from_hex(const char *hex, uint8_t *out, size_t cap)
{
	size_t len = 0;

	assert_int_equal(sodium_hex2bin(out, cap, hex, strlen(hex), NULL, &len, NULL), 0);
	return len;
}

static void test_encode_vectors(void **state)
{
	for (size_t i = 0; i < sizeof VECTORS / sizeof VECTORS[0]; i++) {
		uint8_t bytes[64];
		char text[128];
		size_t len = from_hex(VECTORS[i].hex, bytes, sizeof bytes);

		assert_int_equal(ns_base58_encode(bytes, len, text, sizeof text),
		                 strlen(VECTORS[i].text));
		assert_string_equal(text, VECTORS[i].text);
	}
}

static void test_decode_vectors(void **state)
{
	for (size_t i = 0; i < sizeof VECTORS / sizeof VECTORS[0]; i++) {
		uint8_t want[64], got[64];
		size_t want_len = from_hex(VECTORS[i].hex, want, sizeof want), got_len = 99;

		assert_int_equal(ns_base58_decode(VECTORS[i].text, strlen(VECTORS[i].text), got,
		                                  sizeof got, &got_len),
		                 NS_BASE58_OK);
		assert_int_equal(got_len, want_len);
		assert_memory_equal(got, want, want_len);
	}
}

static void test_leading_zeros_round_trip(void **state)
{
	const uint8_t bytes[] = { 0, 0, 0, 1, 0, 0xff };
	uint8_t back[sizeof bytes];
	char text[32];
	size_t len;

	ns_base58_encode(bytes, sizeof bytes, text, sizeof text);
	assert_memory_equal(text, "111", 3);
	assert_true(text[3] != '1');
	assert_int_equal(ns_base58_decode(text, strlen(text), back, sizeof back, &len), NS_BASE58_OK);
	assert_int_equal(len, sizeof bytes);
	assert_memory_equal(back, bytes, sizeof bytes);
}

static void test_encode_needs_room_for_nul(void **state)
{
	const uint8_t bytes[] = { 0x61 };
	char text[3];

	assert_int_equal(ns_base58_encode(bytes, sizeof bytes, text, 2), 0);
	assert_int_equal(ns_base58_encode(bytes, sizeof bytes, text, 3), 2);
	assert_int_equal(ns_base58_encode((const uint8_t *)"\0\0", 2, text, 2), 0);
}

static void test_decode_rejects_bad_chars(void **state)
{
	const char *bad[] = { "0", "O", "I", "l", "2g+", " 2g", "\xc3\xa9" };
	uint8_t out[16];
	size_t len;

	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		assert_int_equal(ns_base58_decode(bad[i], strlen(bad[i]), out, sizeof out, &len),
		                 NS_BASE58_BAD_CHAR);
}

static void test_decode_too_long(void **state)
{
	uint8_t out[2];
	size_t len;

	assert_int_equal(ns_base58_decode("a3gV", 4, out, sizeof out, &len), NS_BASE58_TOO_LONG);
	assert_int_equal(ns_base58_decode("111", 3, out, sizeof out, &len), NS_BASE58_TOO_LONG);
}

static void test_check_decode_address(void **state)
{
	uint8_t hash[20], want[20], version = 0xaa;
	size_t len;

	from_hex(ADDRESS_HASH_HEX, want, sizeof want);
	assert_int_equal(ns_base58check_decode(ADDRESS, strlen(ADDRESS), &version, hash, sizeof hash,
	                                       &len),
	                 NS_BASE58_OK);
	assert_int_equal(version, 0);
	assert_int_equal(len, sizeof want);
	assert_memory_equal(hash, want, sizeof want);
}

static void test_check_encode_address(void **state)
{
	uint8_t hash[20];
	char text[64];

	from_hex(ADDRESS_HASH_HEX, hash, sizeof hash);
	assert_int_equal(ns_base58check_encode(0, hash, sizeof hash, text, sizeof text),
	                 strlen(ADDRESS));
	assert_string_equal(text, ADDRESS);
}

static void test_check_round_trip_with_version(void **state)
{
	const uint8_t payload[] = { 0, 1, 2, 3 };
	uint8_t back[sizeof payload], version;
	char text[32];
	size_t len;

	ns_base58check_encode(0x42, payload, sizeof payload, text, sizeof text);
	assert_int_equal(ns_base58check_decode(text, strlen(text), &version, back, sizeof back, &len),
	                 NS_BASE58_OK);
	assert_int_equal(version, 0x42);
	assert_int_equal(len, sizeof payload);
	assert_memory_equal(back, payload, sizeof payload);
}

static void test_check_errors(void **state)
{
	char corrupt[sizeof ADDRESS];
	uint8_t out[32], version;
	size_t len;

	memcpy(corrupt, ADDRESS, sizeof ADDRESS);
	corrupt[5] = corrupt[5] == 'a' ? 'b' : 'a';
	assert_int_equal(ns_base58check_decode(corrupt, strlen(corrupt), &version, out, sizeof out,
	                                       &len),
	                 NS_BASE58_BAD_CHECKSUM);
	assert_int_equal(ns_base58check_decode("2g", 2, &version, out, sizeof out, &len),
	                 NS_BASE58_TOO_SHORT);
	assert_int_equal(ns_base58check_decode(ADDRESS, strlen(ADDRESS), &version, out, 19, &len),
	                 NS_BASE58_TOO_LONG);
	assert_int_equal(ns_base58check_decode("1A0", 3, &version, out, sizeof out, &len),
	                 NS_BASE58_BAD_CHAR);
}

static void test_strerror_distinct(void **state)
{
	const enum ns_base58_status all[] = {
		NS_BASE58_OK, NS_BASE58_BAD_CHAR, NS_BASE58_BAD_CHECKSUM,
		NS_BASE58_TOO_SHORT, NS_BASE58_TOO_LONG,
	};
	const size_t n = sizeof all / sizeof all[0];

	for (size_t i = 0; i < n; i++) {
		assert_true(strlen(ns_base58_strerror(all[i])) > 0);
		for (size_t j = 0; j < i; j++)
			assert_string_not_equal(ns_base58_strerror(all[i]), ns_base58_strerror(all[j]));
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_encode_vectors),
		cmocka_unit_test(test_decode_vectors),
		cmocka_unit_test(test_leading_zeros_round_trip),
		cmocka_unit_test(test_encode_needs_room_for_nul),
		cmocka_unit_test(test_decode_rejects_bad_chars),
		cmocka_unit_test(test_decode_too_long),
		cmocka_unit_test(test_check_decode_address),
		cmocka_unit_test(test_check_encode_address),
		cmocka_unit_test(test_check_round_trip_with_version),
		cmocka_unit_test(test_check_errors),
		cmocka_unit_test(test_strerror_distinct),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
