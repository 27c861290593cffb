/*
 * Core benchmark, run on one core by `make bench`: Noise_IK handshakes per
 * second for each role, and framed AEAD throughput next to raw OpenSSL EVP
 * measured in the same run, for both suites.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>
#include <sodium.h>

#include "frame.h"
#include "dhcache.h"
#include "noise.h"

/*
 * Each figure is the best of ROUNDS short runs, and paired figures alternate
 * their rounds, so a noisy neighbour on a shared machine skews both alike.
 */
enum { RUN_NS = 100 * 1000 * 1000, ROUNDS = 5 };

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void
die(const char *what)
{
	fprintf(stderr, "bench_core: %s\n", what);
	exit(1);
}

struct keys {
	struct ns_keypair init_s, resp_s;
	uint8_t init_e[NS_KEY_LEN];
	uint8_t msg1[NS_MSG1_OVERHEAD], msg2[NS_MSG2_OVERHEAD];
};

/* A matching msg1/msg2 pair; the initiator's ephemeral is fixed so msg2 stays valid. */
static void
make_keys(struct keys *k, enum ns_suite suite)
{
	struct ns_handshake *ini, *resp;
	uint8_t scratch[NS_MSG1_OVERHEAD];
	const uint8_t *payload;

	uint8_t priv[NS_KEY_LEN];

	randombytes_buf(priv, NS_KEY_LEN);
	ns_keypair_from_private(&k->init_s, priv);
	randombytes_buf(priv, NS_KEY_LEN);
	ns_keypair_from_private(&k->resp_s, priv);
	randombytes_buf(k->init_e, NS_KEY_LEN);
	ini = ns_handshake_new_initiator(suite, &k->init_s, k->resp_s.pub, NULL, 0);
	resp = ns_handshake_new_responder(suite, &k->resp_s, NULL, 0);
	ns_handshake_fix_ephemeral(ini, k->init_e);
	if (ns_handshake_write_msg1(ini, NULL, 0, k->msg1) != NS_MSG1_OVERHEAD ||
	    (memcpy(scratch, k->msg1, sizeof(scratch)),
	     ns_handshake_read_msg1(resp, scratch, sizeof(scratch), &payload)) != 0 ||
	    ns_handshake_write_msg2(resp, NULL, 0, k->msg2) != NS_MSG2_OVERHEAD)
		die("handshake setup failed");
	ns_handshake_free(ini);
	ns_handshake_free(resp);
}

static void
finish(struct ns_handshake *hs)
{
	struct ns_cipher *send, *recv;

	if (ns_handshake_split(hs, &send, &recv))
		die("split failed");
	ns_cipher_free(send);
	ns_cipher_free(recv);
	ns_handshake_free(hs);
}

/* X25519 alone: each side of Noise_IK generates one key and does four DH. */
static double
x25519_ceiling(enum ns_suite unused)
{
	uint8_t priv[NS_KEY_LEN], pub[NS_KEY_LEN], shared[NS_KEY_LEN];
	double start = now_s(), end;
	long n = 0;

	randombytes_buf(priv, sizeof(priv));
	do {
		if (crypto_scalarmult_base(pub, priv) != 0)
			die("X25519 failed");
		for (int dh = 0; dh < 4; dh++)
			if (crypto_scalarmult(shared, priv, pub) != 0)
				die("X25519 failed");
		n++;
	} while ((end = now_s()) - start < RUN_NS / 1e9);
	return (double)n / (end - start);
}

/* Whether each handshake meets a peer key it has not seen (the ss table empty every time). */
static int new_peer_each_time;

static void
forget_peers(void)
{
	if (new_peer_each_time)
		ns_dh_static_clear();
}

/* Full responder work per connection: read msg1, write msg2, split. */
static double
responder_rate(enum ns_suite suite)
{
	uint8_t out[NS_MSG1_OVERHEAD];
	const uint8_t *payload;
	struct keys k;
	double start = now_s(), end;
	long n = 0;

	make_keys(&k, suite);
	do {
		struct ns_handshake *hs = ns_handshake_new_responder(suite, &k.resp_s, NULL, 0);
		forget_peers();
		memcpy(out, k.msg1, sizeof(out));
		if (ns_handshake_read_msg1(hs, out, sizeof(out), &payload) != 0 ||
		    ns_handshake_write_msg2(hs, NULL, 0, out) != NS_MSG2_OVERHEAD)
			die("responder failed");
		finish(hs);
		n++;
	} while ((end = now_s()) - start < RUN_NS / 1e9);
	return (double)n / (end - start);
}

/* Full initiator work per connection: write msg1, read msg2, split. */
static double
initiator_rate(enum ns_suite suite)
{
	uint8_t out[NS_MSG1_OVERHEAD], msg2[NS_MSG2_OVERHEAD];
	const uint8_t *payload;
	struct keys k;
	double start = now_s(), end;
	long n = 0;

	make_keys(&k, suite);
	do {
		struct ns_handshake *hs =
			ns_handshake_new_initiator(suite, &k.init_s, k.resp_s.pub, NULL, 0);
		ns_handshake_fix_ephemeral(hs, k.init_e);
		forget_peers();
		memcpy(msg2, k.msg2, sizeof(msg2));
		if (ns_handshake_write_msg1(hs, NULL, 0, out) != NS_MSG1_OVERHEAD ||
		    ns_handshake_read_msg2(hs, msg2, sizeof(msg2), &payload) != 0)
			die("initiator failed");
		finish(hs);
		n++;
	} while ((end = now_s()) - start < RUN_NS / 1e9);
	return (double)n / (end - start);
}

/* The raw rate: one EVP context, nonce set per record, no framing. */
static double
raw_evp_rate(enum ns_suite suite, size_t len, uint8_t *in, uint8_t *out)
{
	const EVP_CIPHER *cipher = suite == NS_SUITE_AESGCM ? EVP_aes_256_gcm()
	                                                    : EVP_chacha20_poly1305();
	uint8_t key[NS_KEY_LEN] = {1}, iv[NS_NONCE_LEN] = {0};
	EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
	double start = now_s(), end;
	uint64_t n = 0;
	int outl;

	EVP_EncryptInit_ex(ctx, cipher, NULL, key, NULL);
	do {
		memcpy(iv + 4, &n, sizeof(n));
		if (EVP_EncryptInit_ex(ctx, NULL, NULL, NULL, iv) != 1 ||
		    EVP_EncryptUpdate(ctx, out, &outl, in, (int)len) != 1 ||
		    EVP_EncryptFinal_ex(ctx, out + len, &outl) != 1 ||
		    EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, NS_TAG_LEN, out + len) != 1)
			die("EVP failed");
		n++;
	} while ((end = now_s()) - start < RUN_NS / 1e9);
	EVP_CIPHER_CTX_free(ctx);
	return (double)n * (double)len / (end - start);
}

/* Our record path: frame header plus ns_cipher_seal. */
static double
framed_rate(enum ns_suite suite, size_t len, uint8_t *in, uint8_t *out)
{
	uint8_t key[NS_KEY_LEN] = {1};
	struct ns_cipher *c = ns_cipher_new(suite, key);
	double start = now_s(), end;
	long n = 0;

	do {
		ns_frame_header_put(out, len + NS_TAG_LEN);
		if (ns_cipher_seal(c, NULL, 0, in, len, out + NS_FRAME_HEADER_LEN))
			die("seal failed");
		n++;
	} while ((end = now_s()) - start < RUN_NS / 1e9);
	ns_cipher_free(c);
	return (double)n * (double)len / (end - start);
}

static double
best_of(double (*rate)(enum ns_suite), enum ns_suite suite)
{
	double best = 0;

	for (int r = 0; r < ROUNDS; r++)
		best = fmax(best, rate(suite));
	return best;
}

/*
 * bench_core            every figure
 * bench_core --ceiling  the X25519 ceiling alone, as a number (for the
 *                       benchmarks that compare a real rate with it)
 */
int
main(int argc, char **argv)
{
	const enum ns_suite suites[] = {NS_SUITE_CHACHAPOLY, NS_SUITE_AESGCM};
	const size_t sizes[] = {1024, 16384, NS_MAX_PLAINTEXT};
	static uint8_t in[NS_MAX_PLAINTEXT], out[NS_MAX_FRAME];

	if (sodium_init() < 0)
		die("libsodium init failed");
	if (argc == 2 && strcmp(argv[1], "--ceiling") == 0) {
		printf("%.0f\n", best_of(x25519_ceiling, 0));
		return 0;
	}
	randombytes_buf(in, sizeof(in));
	printf("handshakes per second (one core, best of %d runs):\n", ROUNDS);
	printf("  X25519 ceiling       %7.0f/s (a key generation and four DH each)\n",
	       best_of(x25519_ceiling, 0));
	for (int fresh = 0; fresh < 2; fresh++) {
		new_peer_each_time = fresh;
		printf("  %s:\n", fresh ? "a new peer key each time (Storj's uplinks)"
		                        : "a peer key seen before (its ss DH from the table)");
		for (int s = 0; s < 2; s++)
			printf("  %-10s responder %7.0f/s   initiator %7.0f/s\n",
			       ns_suite_name(suites[s]), best_of(responder_rate, suites[s]),
			       best_of(initiator_rate, suites[s]));
	}
	printf("framed AEAD throughput vs raw OpenSSL EVP (MB/s, one core, best of %d):\n", ROUNDS);
	for (int s = 0; s < 2; s++) {
		for (int i = 0; i < 3; i++) {
			double raw = 0, framed = 0;
			for (int r = 0; r < ROUNDS; r++) {
				raw = fmax(raw, raw_evp_rate(suites[s], sizes[i], in, out));
				framed = fmax(framed, framed_rate(suites[s], sizes[i], in, out));
			}
			printf("  %-10s %6zu B  framed %8.1f  raw %8.1f  ratio %.3f\n",
			       ns_suite_name(suites[s]), sizes[i], framed / 1e6, raw / 1e6,
			       framed / raw);
		}
	}
	return 0;
}
