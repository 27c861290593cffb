/*
 * NodeURL parsing and canonical formatting, against Storj's own examples.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>

#include "base58.h"
#include "nodeurl.h"

#define NODE_ID "12vha9oTFnerxYRgeQ2BZqoFrLrnmmf5UWTCY2jA77dF3YvWew7"
#define NODE_ID_HEX "fda09d6bed970d7a38fe7389cd2b1b9620cf0ea1fcda2404d353c3fa113dec00"
#define NOISE_PUB "14N7s89T436KFPmWgbYtPSNergNUhPRDfDhudzwhrgSfzNFjvy"
#define NOISE_PUB_HEX "07a37cbc142093c8b755dc1b10e86cb426374ad16aa853ed0bdfc0b2b86d1c7c"

static void from_hex(const char *hex, uint8_t *out, size_t len)
{
	size_t got = 0;

	assert_int_equal(sodium_hex2bin(out, len, hex, strlen(hex), NULL, &got, NULL), 0);
	assert_int_equal(got, len);
}

static enum ns_nodeurl_status parse(const char *s, struct ns_nodeurl *u)
{
	return ns_nodeurl_parse(s, strlen(s), u);
}

/* Parse s and check that its canonical form is want. */
static void assert_canonical(const char *s, const char *want)
{
	struct ns_nodeurl u;
	char out[NS_NODEURL_STR_MAX];

	assert_int_equal(parse(s, &u), NS_NODEURL_OK);
	assert_int_equal(ns_nodeurl_format(&u, out, sizeof out), strlen(want));
	assert_string_equal(out, want);
}

static void test_storj_examples_round_trip(void **state)
{
	const char *examples[] = {
		NODE_ID "@33.20.0.1:7777?noise_proto=2",
		NODE_ID "@33.20.0.1:7777?debounce=3&f=ff&noise_proto=1&noise_pub=" NODE_ID,
		"33.20.0.1:7777",
		NODE_ID "@[2001:db8:1f70::999:de8:7648:6e8]:7777",
	};

	for (size_t i = 0; i < sizeof examples / sizeof examples[0]; i++)
		assert_canonical(examples[i], examples[i]);
}

static void test_storj_example_fields(void **state)
{
	struct ns_nodeurl u;
	uint8_t id[NS_NODE_ID_LEN];
	const uint8_t addr[] = { 33, 20, 0, 1 };

	from_hex(NODE_ID_HEX, id, sizeof id);
	assert_int_equal(parse(NODE_ID "@33.20.0.1:7777?debounce=3&f=ff&noise_proto=1&noise_pub=" NODE_ID,
	                       &u),
	                 NS_NODEURL_OK);
	assert_true(u.has_id);
	assert_memory_equal(u.id, id, sizeof id);
	assert_string_equal(u.host, "33.20.0.1");
	assert_int_equal(u.family, NS_ADDR_IPV4);
	assert_memory_equal(u.addr, addr, sizeof addr);
	assert_int_equal(u.port, 7777);
	assert_true(u.has_debounce);
	assert_int_equal(u.debounce, 3);
	assert_true(u.has_features);
	assert_int_equal(u.features, 0xff);
	assert_int_equal(u.noise_proto, 1);
	assert_true(u.has_noise_pub);
	assert_memory_equal(u.noise_pub, id, NS_KEY_LEN);
}

static void test_node_id_text_form(void **state)
{
	uint8_t want[NS_NODE_ID_LEN], id[NS_NODE_ID_LEN];
	char text[64];

	from_hex(NODE_ID_HEX, want, sizeof want);
	assert_int_equal(ns_node_id_decode(NODE_ID, strlen(NODE_ID), id), NS_NODEURL_OK);
	assert_memory_equal(id, want, sizeof want);
	assert_int_equal(ns_node_id_encode(id, text, sizeof text), strlen(NODE_ID));
	assert_string_equal(text, NODE_ID);
}

static void test_node_id_version_is_last_byte(void **state)
{
	uint8_t id[NS_NODE_ID_LEN], back[NS_NODE_ID_LEN];
	char text[64];

	from_hex(NODE_ID_HEX, id, sizeof id);
	id[NS_NODE_ID_LEN - 1] = 2;
	ns_node_id_encode(id, text, sizeof text);
	assert_string_not_equal(text, NODE_ID);
	assert_int_equal(ns_node_id_decode(text, strlen(text), back), NS_NODEURL_OK);
	assert_memory_equal(back, id, sizeof id);
}

static void test_noise_pub_vector(void **state)
{
	uint8_t want[NS_KEY_LEN], pub[NS_KEY_LEN];
	char text[64];

	from_hex(NOISE_PUB_HEX, want, sizeof want);
	assert_int_equal(ns_noise_pub_decode(NOISE_PUB, strlen(NOISE_PUB), pub), NS_NODEURL_OK);
	assert_memory_equal(pub, want, sizeof want);
	assert_int_equal(ns_noise_pub_encode(pub, text, sizeof text), strlen(NOISE_PUB));
	assert_string_equal(text, NOISE_PUB);
}

static void test_ipv6_host(void **state)
{
	const char *s = "[2001:db8::1]:443?noise_pub=" NOISE_PUB;
	const uint8_t addr[16] = { 0x20, 0x01, 0x0d, 0xb8, [15] = 1 };
	struct ns_nodeurl u;

	assert_int_equal(parse(s, &u), NS_NODEURL_OK);
	assert_string_equal(u.host, "2001:db8::1");
	assert_int_equal(u.family, NS_ADDR_IPV6);
	assert_memory_equal(u.addr, addr, sizeof addr);
	assert_int_equal(u.port, 443);
	assert_canonical(s, s);
	assert_canonical("[::1]", "[::1]");
}

static void test_hostname_stays_a_name(void **state)
{
	struct ns_nodeurl u;

	assert_int_equal(parse("node-1.example.com:7777", &u), NS_NODEURL_OK);
	assert_int_equal(u.family, NS_ADDR_NAME);
	assert_string_equal(u.host, "node-1.example.com");
	assert_int_equal(u.port, 7777);
	assert_int_equal(parse("1.2.3:80", &u), NS_NODEURL_OK);
	assert_int_equal(u.family, NS_ADDR_NAME);
}

static void test_unknown_params_ignored(void **state)
{
	assert_canonical("33.20.0.1:7777?zone=eu&noise_proto=2&flag&x=", "33.20.0.1:7777?noise_proto=2");
}

static void test_empty_values_are_absent(void **state)
{
	assert_canonical("33.20.0.1:7777?noise_pub=&noise_proto=", "33.20.0.1:7777");
}

static void test_noise_pk_alias(void **state)
{
	assert_canonical("33.20.0.1:7777?noise_pk=" NOISE_PUB, "33.20.0.1:7777?noise_pub=" NOISE_PUB);
}

static void test_param_order_canonicalised(void **state)
{
	assert_canonical("1.2.3.4:5?noise_pub=" NOISE_PUB "&noise_proto=2&f=1&debounce=10",
	                 "1.2.3.4:5?debounce=10&f=1&noise_proto=2&noise_pub=" NOISE_PUB);
	assert_canonical("1.2.3.4:5?f=00FF", "1.2.3.4:5?f=ff");
}

static void test_list(void **state)
{
	struct ns_nodeurl u[3];
	size_t count = 99;

	assert_int_equal(ns_nodeurl_parse_list(NODE_ID "@33.20.0.1:7777,[::1]:1?noise_proto=1,host:2",
	                                       u, 3, &count),
	                 NS_NODEURL_OK);
	assert_int_equal(count, 3);
	assert_true(u[0].has_id);
	assert_int_equal(u[0].port, 7777);
	assert_int_equal(u[1].family, NS_ADDR_IPV6);
	assert_int_equal(u[1].noise_proto, 1);
	assert_string_equal(u[2].host, "host");

	assert_int_equal(ns_nodeurl_parse_list("a:1,b:2,c:3", u, 2, &count), NS_NODEURL_TOO_LONG);
	assert_int_equal(ns_nodeurl_parse_list("a:1,,c:3", u, 3, &count), NS_NODEURL_EMPTY);
	assert_int_equal(count, 1);
}

static void test_format_needs_room(void **state)
{
	struct ns_nodeurl u;
	char out[NS_NODEURL_STR_MAX];
	size_t len;

	assert_int_equal(parse("33.20.0.1:7777?noise_pub=" NOISE_PUB, &u), NS_NODEURL_OK);
	len = ns_nodeurl_format(&u, out, sizeof out);
	assert_int_equal(ns_nodeurl_format(&u, out, len), 0);
	assert_int_equal(ns_nodeurl_format(&u, out, len + 1), len);
}

struct bad_case {
	const char *url;
	enum ns_nodeurl_status want;
};

/* A noise_pub that decodes, with a valid checksum, to 31 bytes. */
static void short_key_url(char *out, size_t cap)
{
	uint8_t key[NS_KEY_LEN - 1] = { 1 };
	char text[64];

	ns_base58check_encode(0, key, sizeof key, text, sizeof text);
	snprintf(out, cap, "1.2.3.4:5?noise_pub=%s", text);
}

static void test_errors(void **state)
{
	const struct bad_case cases[] = {
		{ "", NS_NODEURL_EMPTY },
		{ "1.2.3.4:5?noise_pub=0" NOISE_PUB, NS_NODEURL_BAD_NOISE_PUB },
		{ "1.2.3.4:5?noise_pub=15N7s89T436KFPmWgbYtPSNergNUhPRDfDhudzwhrgSfzNFjvy",
		  NS_NODEURL_NOISE_PUB_CHECKSUM },
		{ "1.2.3.4:0", NS_NODEURL_BAD_PORT },
		{ "1.2.3.4:70000", NS_NODEURL_BAD_PORT },
		{ "1.2.3.4:", NS_NODEURL_BAD_PORT },
		{ "1.2.3.4:8o", NS_NODEURL_BAD_PORT },
		{ "[2001:db8::1:7777", NS_NODEURL_BAD_HOST },
		{ "[not-ipv6]:1", NS_NODEURL_BAD_HOST },
		{ "[::1]x", NS_NODEURL_BAD_HOST },
		{ ":7777", NS_NODEURL_BAD_HOST },
		{ "bad host:1", NS_NODEURL_BAD_HOST },
		{ "12vha9oTFnerxYRgeQ2BZqoFrLrnmmf5UWTCY2jA77dF3YvWew8@1.2.3.4:5", NS_NODEURL_BAD_ID },
		{ "@1.2.3.4:5", NS_NODEURL_BAD_ID },
		{ "1.2.3.4:5?noise_proto=x", NS_NODEURL_BAD_NOISE_PROTO },
		{ "1.2.3.4:5?debounce=4294967296", NS_NODEURL_BAD_DEBOUNCE },
		{ "1.2.3.4:5?f=1g", NS_NODEURL_BAD_FEATURES },
		{ "1.2.3.4:5?f=10000000000000000", NS_NODEURL_BAD_FEATURES },
	};
	struct ns_nodeurl u;
	char short_key[256];

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
		assert_int_equal(parse(cases[i].url, &u), cases[i].want);
	short_key_url(short_key, sizeof short_key);
	assert_int_equal(parse(short_key, &u), NS_NODEURL_NOISE_PUB_LENGTH);
}

static void test_host_too_long(void **state)
{
	char s[NS_NODEURL_HOST_MAX + 8];
	struct ns_nodeurl u;

	memset(s, 'a', NS_NODEURL_HOST_MAX);
	strcpy(s + NS_NODEURL_HOST_MAX, ":1");
	assert_int_equal(parse(s, &u), NS_NODEURL_TOO_LONG);
	strcpy(s + NS_NODEURL_HOST_MAX - 1, ":1");
	assert_int_equal(parse(s, &u), NS_NODEURL_OK);
}

static void test_strerror_distinct(void **state)
{
	const enum ns_nodeurl_status all[] = {
		NS_NODEURL_OK, NS_NODEURL_EMPTY, NS_NODEURL_BAD_ID, NS_NODEURL_BAD_HOST,
		NS_NODEURL_BAD_PORT, NS_NODEURL_BAD_NOISE_PUB, NS_NODEURL_NOISE_PUB_CHECKSUM,
		NS_NODEURL_NOISE_PUB_LENGTH, NS_NODEURL_BAD_NOISE_PROTO, NS_NODEURL_BAD_DEBOUNCE,
		NS_NODEURL_BAD_FEATURES, NS_NODEURL_TOO_LONG,
	};
	const size_t n = sizeof all / sizeof all[0];

	for (size_t i = 0; i < n; i++) {
		assert_true(strlen(ns_nodeurl_strerror(all[i])) > 0);
		for (size_t j = 0; j < i; j++)
			assert_string_not_equal(ns_nodeurl_strerror(all[i]), ns_nodeurl_strerror(all[j]));
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_storj_examples_round_trip),
		cmocka_unit_test(test_storj_example_fields),
		cmocka_unit_test(test_node_id_text_form),
		cmocka_unit_test(test_node_id_version_is_last_byte),
		cmocka_unit_test(test_noise_pub_vector),
		cmocka_unit_test(test_ipv6_host),
		cmocka_unit_test(test_hostname_stays_a_name),
		cmocka_unit_test(test_unknown_params_ignored),
		cmocka_unit_test(test_empty_values_are_absent),
		cmocka_unit_test(test_noise_pk_alias),
		cmocka_unit_test(test_param_order_canonicalised),
		cmocka_unit_test(test_list),
		cmocka_unit_test(test_format_needs_room),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_host_too_long),
		cmocka_unit_test(test_strerror_distinct),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
