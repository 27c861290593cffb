/*
 * Every Noise_IK vector for our two suites in flynn/noise's vectors.txt,
 * read from that file at test time: fixed ephemerals, both sides run to
 * completion, every byte compared.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <cmocka.h>

#include <sodium.h>

#include "hex.h"
#include "noise.h"

#define DEFAULT_VECTORS "/usr/share/gocode/src/github.com/flynn/noise/vectors.txt"

enum { MAX_FIELDS = 32, MAX_MSGS = 4 };

struct vector {
	char *handshake;
	char *fields[MAX_FIELDS][2];
	int nfields;
};

static const char *
field(const struct vector *v, const char *name)
{
	for (int i = 0; i < v->nfields; i++)
		if (strcmp(v->fields[i][0], name) == 0)
			return v->fields[i][1];
	return NULL;
}

static void
vector_clear(struct vector *v)
{
	for (int i = 0; i < v->nfields; i++) {
		free(v->fields[i][0]);
		free(v->fields[i][1]);
	}
	memset(v, 0, sizeof(*v));
}

static uint8_t *
field_bytes(const struct vector *v, const char *name, size_t *len)
{
	const char *hex = field(v, name);

	*len = 0;
	if (hex == NULL || *hex == '\0')
		return calloc(1, 1);
	return hex_decode(hex, len);
}

static void
assert_bytes_equal(const uint8_t *got, size_t got_len, const uint8_t *want, size_t want_len)
{
	assert_int_equal(got_len, want_len);
	assert_memory_equal(got, want, want_len);
}

/* Run one IK vector: msg 0 and 1 are the handshake, 2 and 3 transport messages. */
static void
run_vector(const struct vector *v, enum ns_suite suite)
{
	uint8_t init_s[NS_KEY_LEN], resp_s[NS_KEY_LEN], resp_pub[NS_KEY_LEN], init_pub[NS_KEY_LEN];
	uint8_t init_e[NS_KEY_LEN], resp_e[NS_KEY_LEN];
	uint8_t buf[1024], out[1024];
	struct ns_cipher *i_send, *i_recv, *r_send, *r_recv;
	size_t plen, prologue_len, want_len;
	uint8_t *prologue, *payload, *want;
	struct ns_handshake *ini, *resp;
	struct ns_keypair init_kp, resp_kp;
	const uint8_t *got;
	long n;

	assert_int_equal(hex_decode_exact(field(v, "init_static"), init_s, NS_KEY_LEN), 0);
	assert_int_equal(hex_decode_exact(field(v, "resp_static"), resp_s, NS_KEY_LEN), 0);
	assert_int_equal(hex_decode_exact(field(v, "gen_init_ephemeral"), init_e, NS_KEY_LEN), 0);
	assert_int_equal(hex_decode_exact(field(v, "gen_resp_ephemeral"), resp_e, NS_KEY_LEN), 0);
	prologue = field_bytes(v, "prologue", &prologue_len);
	assert_int_equal(crypto_scalarmult_base(resp_pub, resp_s), 0);
	assert_int_equal(crypto_scalarmult_base(init_pub, init_s), 0);

	assert_int_equal(ns_keypair_from_private(&init_kp, init_s), 0);
	assert_int_equal(ns_keypair_from_private(&resp_kp, resp_s), 0);
	ini = ns_handshake_new_initiator(suite, &init_kp, resp_pub, prologue, prologue_len);
	resp = ns_handshake_new_responder(suite, &resp_kp, prologue, prologue_len);
	assert_non_null(ini);
	assert_non_null(resp);
	ns_handshake_fix_ephemeral(ini, init_e);
	ns_handshake_fix_ephemeral(resp, resp_e);

	/* msg 0: initiator -> responder */
	payload = field_bytes(v, "msg_0_payload", &plen);
	want = field_bytes(v, "msg_0_ciphertext", &want_len);
	n = ns_handshake_write_msg1(ini, payload, plen, buf);
	assert_bytes_equal(buf, (size_t)n, want, want_len);
	n = ns_handshake_read_msg1(resp, buf, (size_t)n, &got);
	assert_bytes_equal(got, (size_t)n, payload, plen);
	assert_memory_equal(ns_handshake_remote_static(resp), init_pub, NS_KEY_LEN);
	free(payload);
	free(want);

	/* msg 1: responder -> initiator */
	payload = field_bytes(v, "msg_1_payload", &plen);
	want = field_bytes(v, "msg_1_ciphertext", &want_len);
	n = ns_handshake_write_msg2(resp, payload, plen, buf);
	assert_bytes_equal(buf, (size_t)n, want, want_len);
	n = ns_handshake_read_msg2(ini, buf, (size_t)n, &got);
	assert_bytes_equal(got, (size_t)n, payload, plen);
	free(payload);
	free(want);

	assert_memory_equal(ns_handshake_hash(ini), ns_handshake_hash(resp), NS_HASH_LEN);
	assert_int_equal(ns_handshake_split(ini, &i_send, &i_recv), 0);
	assert_int_equal(ns_handshake_split(resp, &r_send, &r_recv), 0);

	/* msg 2: transport, initiator -> responder */
	payload = field_bytes(v, "msg_2_payload", &plen);
	want = field_bytes(v, "msg_2_ciphertext", &want_len);
	assert_int_equal(ns_cipher_seal(i_send, NULL, 0, payload, plen, buf), 0);
	assert_bytes_equal(buf, plen + NS_TAG_LEN, want, want_len);
	assert_int_equal(ns_cipher_open(r_recv, NULL, 0, buf, want_len, out), 0);
	assert_memory_equal(out, payload, plen);
	free(payload);
	free(want);

	/* msg 3: transport, responder -> initiator */
	payload = field_bytes(v, "msg_3_payload", &plen);
	want = field_bytes(v, "msg_3_ciphertext", &want_len);
	assert_int_equal(ns_cipher_seal(r_send, NULL, 0, payload, plen, buf), 0);
	assert_bytes_equal(buf, plen + NS_TAG_LEN, want, want_len);
	assert_int_equal(ns_cipher_open(i_recv, NULL, 0, buf, want_len, out), 0);
	assert_memory_equal(out, payload, plen);
	free(payload);
	free(want);

	ns_cipher_free(i_send);
	ns_cipher_free(i_recv);
	ns_cipher_free(r_send);
	ns_cipher_free(r_recv);
	ns_handshake_free(ini);
	ns_handshake_free(resp);
	free(prologue);
}

/* Read vectors.txt and run every vector whose handshake is name; returns how many ran. */
static int
run_file(const char *name, enum ns_suite suite)
{
	const char *path = getenv("NOISESHIM_FLYNN_VECTORS");
	char line[16384];
	struct vector v = {0};
	int ran = 0;
	FILE *f;

	if (path == NULL)
		path = DEFAULT_VECTORS;
	f = fopen(path, "r");
	if (f == NULL)
		fail_msg("cannot open %s (install golang-github-flynn-noise-dev)", path);
	for (;;) {
		char *got = fgets(line, sizeof(line), f);
		char *eq;

		if (got != NULL)
			line[strcspn(line, "\r\n")] = '\0';
		if (got == NULL || line[0] == '\0') {
			if (v.handshake != NULL && strcmp(v.handshake, name) == 0) {
				run_vector(&v, suite);
				ran++;
			}
			free(v.handshake);
			vector_clear(&v);
			if (got == NULL)
				break;
			continue;
		}
		if ((eq = strchr(line, '=')) == NULL)
			continue;
		*eq = '\0';
		if (strcmp(line, "handshake") == 0) {
			v.handshake = strdup(eq + 1);
		} else if (v.nfields < MAX_FIELDS) {
			v.fields[v.nfields][0] = strdup(line);
			v.fields[v.nfields][1] = strdup(eq + 1);
			v.nfields++;
		}
	}
	fclose(f);
	return ran;
}

static void
test_ik_chachapoly_blake2b(void **state)
{
	assert_int_equal(run_file("Noise_IK_25519_ChaChaPoly_BLAKE2b", NS_SUITE_CHACHAPOLY), 4);
}

static void
test_ik_aesgcm_blake2b(void **state)
{
	assert_int_equal(run_file("Noise_IK_25519_AESGCM_BLAKE2b", NS_SUITE_AESGCM), 4);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ik_chachapoly_blake2b),
		cmocka_unit_test(test_ik_aesgcm_blake2b),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
