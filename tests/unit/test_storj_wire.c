/*
 * The Storj wire transcripts in ../shared/vectors reproduced byte for byte:
 * route prefix, msg1 with a 0-RTT payload, msg2, transport frames and the
 * handshake hash, then read back through the frame reader by the other side.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <cmocka.h>

#include <sodium.h>

#include "frame.h"
#include "hex.h"
#include "noise.h"
#include "nodeurl.h"
#include "prefix.h"

#define DEFAULT_DIR "../shared/vectors"

enum { MAX_BLOBS = 8, MAX_LINE = 4096 };

struct transcript {
	uint8_t init_s[NS_KEY_LEN], resp_s[NS_KEY_LEN], resp_pub[NS_KEY_LEN];
	uint8_t init_e[NS_KEY_LEN], resp_e[NS_KEY_LEN];
	uint8_t hash[NS_HASH_LEN];
	char noise_pub[128];
	char label[MAX_BLOBS][MAX_LINE];     /* the line describing each blob */
	uint8_t *blob[MAX_BLOBS];
	size_t blob_len[MAX_BLOBS];
	int nblobs;
};

static void
value_after(const char *line, const char *key, char *out, size_t cap)
{
	size_t k = strlen(key);

	if (strncmp(line, key, k) == 0 && line[k] == '=') {
		snprintf(out, cap, "%s", line + k + 1);
		out[strcspn(out, " ")] = '\0';
	}
}

static void
load(const char *file, struct transcript *t)
{
	const char *dir = getenv("NOISESHIM_VECTORS_DIR");
	char path[1024], line[MAX_LINE], v[MAX_LINE];
	int expect_blob = 0;
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir != NULL ? dir : DEFAULT_DIR, file);
	if ((f = fopen(path, "r")) == NULL)
		fail_msg("cannot open %s (set NOISESHIM_VECTORS_DIR)", path);
	memset(t, 0, sizeof(*t));
	while (fgets(line, sizeof(line), f) != NULL) {
		line[strcspn(line, "\r\n")] = '\0';
		if (expect_blob) {
			assert_true(t->nblobs < MAX_BLOBS);
			t->blob[t->nblobs] = hex_decode(line, &t->blob_len[t->nblobs]);
			assert_non_null(t->blob[t->nblobs]);
			t->nblobs++;
			expect_blob = 0;
			continue;
		}
		v[0] = '\0';
#define KEY(name, dst)                                                        \
	value_after(line, name, v, sizeof(v));                                \
	if (v[0] != '\0') {                                                   \
		assert_int_equal(hex_decode_exact(v, dst, sizeof(dst)), 0);   \
		continue;                                                     \
	}
		KEY("init_static_priv", t->init_s);
		KEY("resp_static_priv", t->resp_s);
		KEY("resp_static_pub", t->resp_pub);
		KEY("init_ephemeral_priv", t->init_e);
		KEY("resp_ephemeral_priv", t->resp_e);
		KEY("handshake_hash", t->hash);
#undef KEY
		value_after(line, "noise_pub (NodeURL form)", t->noise_pub, sizeof(t->noise_pub));
		if (strlen(line) > 2 && strcmp(line + strlen(line) - 2, "):") == 0) {
			snprintf(t->label[t->nblobs], MAX_LINE, "%s", line);
			expect_blob = 1;
		}
	}
	fclose(f);
	assert_int_equal(t->nblobs, 5);
}

static void
unload(struct transcript *t)
{
	for (int i = 0; i < t->nblobs; i++)
		free(t->blob[i]);
}

/* The last quoted string in a label such as: ... plaintext "second" (26 bytes): */
static const char *
quoted(const char *label, char *out, size_t cap)
{
	const char *b = strrchr(label, '"'), *a = label;

	assert_non_null(b);
	for (const char *p = label; p < b; p++)
		if (*p == '"')
			a = p;
	assert_true(a < b && *a == '"');
	snprintf(out, cap, "%.*s", (int)(b - a - 1), a + 1);
	return out;
}

/* Frame a sealed transport record and compare it with a transcript blob. */
static void
check_transport(struct ns_cipher *send, struct ns_cipher *recv, const struct transcript *t,
                int i)
{
	uint8_t wire[512], body[512];
	char text[256];
	struct ns_frame_reader r;
	size_t len;

	quoted(t->label[i], text, sizeof(text));
	len = strlen(text);
	ns_frame_header_put(wire, len + NS_TAG_LEN);
	assert_int_equal(ns_cipher_seal(send, NULL, 0, (const uint8_t *)text, len,
	                                wire + NS_FRAME_HEADER_LEN), 0);
	assert_int_equal(NS_FRAME_HEADER_LEN + len + NS_TAG_LEN, t->blob_len[i]);
	assert_memory_equal(wire, t->blob[i], t->blob_len[i]);

	ns_frame_reader_init(&r, body, NS_MIN_TRANSPORT_BODY, NS_MAX_TRANSPORT_BODY);
	assert_int_equal(ns_frame_reader_feed(&r, t->blob[i], t->blob_len[i]), t->blob_len[i]);
	assert_true(ns_frame_reader_ready(&r, &len));
	assert_int_equal(ns_cipher_open(recv, NULL, 0, body, len, body), 0);
	assert_memory_equal(body, text, strlen(text));
}

static void
run_transcript(const char *file, enum ns_suite suite)
{
	uint8_t wire[1024], body[1024], pub[NS_KEY_LEN];
	struct ns_cipher *i_send, *i_recv, *r_send, *r_recv;
	struct ns_handshake *ini, *resp;
	struct ns_frame_reader r;
	struct transcript t;
	struct ns_keypair init_kp, resp_kp;
	const uint8_t *got;
	char text[256], noise_pub[128];
	size_t len;
	long n;

	load(file, &t);
	assert_int_equal(crypto_scalarmult_base(pub, t.resp_s), 0);
	assert_memory_equal(pub, t.resp_pub, NS_KEY_LEN);
	assert_true(ns_noise_pub_encode(pub, noise_pub, sizeof(noise_pub)) > 0);
	assert_string_equal(noise_pub, t.noise_pub);

	assert_int_equal(ns_keypair_from_private(&init_kp, t.init_s), 0);
	assert_int_equal(ns_keypair_from_private(&resp_kp, t.resp_s), 0);
	ini = ns_handshake_new_initiator(suite, &init_kp, t.resp_pub, NULL, 0);
	resp = ns_handshake_new_responder(suite, &resp_kp, NULL, 0);
	ns_handshake_fix_ephemeral(ini, t.init_e);
	ns_handshake_fix_ephemeral(resp, t.resp_e);

	/* First write: prefix | header | msg1 with the 0-RTT payload. */
	quoted(t.label[0], text, sizeof(text));
	memcpy(wire, NS_ROUTE_PREFIX_DEFAULT, NS_ROUTE_PREFIX_LEN);
	n = ns_handshake_write_msg1(ini, (const uint8_t *)text, strlen(text),
	                            wire + NS_ROUTE_PREFIX_LEN + NS_FRAME_HEADER_LEN);
	ns_frame_header_put(wire + NS_ROUTE_PREFIX_LEN, (size_t)n);
	assert_int_equal(NS_ROUTE_PREFIX_LEN + NS_FRAME_HEADER_LEN + (size_t)n, t.blob_len[0]);
	assert_memory_equal(wire, t.blob[0], t.blob_len[0]);

	/* The responder takes the same bytes apart. */
	assert_int_equal(ns_prefix_match(t.blob[0], t.blob_len[0],
	                                 (const uint8_t *)NS_ROUTE_PREFIX_DEFAULT), NS_PREFIX_MATCH);
	ns_frame_reader_init(&r, body, NS_MSG1_OVERHEAD, NS_MAX_MSG1_BODY);
	ns_frame_reader_feed(&r, t.blob[0] + NS_ROUTE_PREFIX_LEN, t.blob_len[0] - NS_ROUTE_PREFIX_LEN);
	assert_true(ns_frame_reader_ready(&r, &len));
	n = ns_handshake_read_msg1(resp, body, len, &got);
	assert_int_equal(n, strlen(text));
	assert_memory_equal(got, text, (size_t)n);

	/* msg2 with an empty payload. */
	n = ns_handshake_write_msg2(resp, NULL, 0, wire + NS_FRAME_HEADER_LEN);
	ns_frame_header_put(wire, (size_t)n);
	assert_int_equal(NS_FRAME_HEADER_LEN + (size_t)n, t.blob_len[1]);
	assert_memory_equal(wire, t.blob[1], t.blob_len[1]);
	assert_int_equal(ns_handshake_read_msg2(ini, wire + NS_FRAME_HEADER_LEN, (size_t)n, &got), 0);

	assert_memory_equal(ns_handshake_hash(ini), t.hash, NS_HASH_LEN);
	assert_memory_equal(ns_handshake_hash(resp), t.hash, NS_HASH_LEN);
	assert_int_equal(ns_handshake_split(ini, &i_send, &i_recv), 0);
	assert_int_equal(ns_handshake_split(resp, &r_send, &r_recv), 0);

	check_transport(i_send, r_recv, &t, 2);   /* C->S n=0 */
	check_transport(i_send, r_recv, &t, 3);   /* C->S n=1 */
	check_transport(r_send, i_recv, &t, 4);   /* S->C n=0 */

	ns_cipher_free(i_send);
	ns_cipher_free(i_recv);
	ns_cipher_free(r_send);
	ns_cipher_free(r_recv);
	ns_handshake_free(ini);
	ns_handshake_free(resp);
	unload(&t);
}

static void
test_chachapoly_transcript(void **state)
{
	run_transcript("storj-wire-chachapoly.txt", NS_SUITE_CHACHAPOLY);
}

static void
test_aesgcm_transcript(void **state)
{
	run_transcript("storj-wire-aesgcm.txt", NS_SUITE_AESGCM);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_chachapoly_transcript),
		cmocka_unit_test(test_aesgcm_transcript),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
