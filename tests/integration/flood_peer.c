/*
 * Initiators for the replay and load tests, built on the core library.
 *
 *   flood_peer flight --remote-pub HEX --payload TEXT --out FILE
 *   flood_peer send --connect IP:PORT --from IP --remote-pub HEX --flight FILE
 *   flood_peer flood --connect IP:PORT --from IP --remote-pub HEX --seconds S --parallel P
 *   flood_peer handshakes --connect IP:PORT --from IP --remote-pub HEX --seconds S --rate R
 *
 * flight      writes one first flight (route prefix, frame, msg1 carrying
 *             TEXT) made for the key, to be sent and replayed later.
 * send        sends the flight in FILE and prints "reply BYTES closed" when
 *             the server closes (BYTES received before), or "reply BYTES
 *             open" when bytes came and then QUIET_MS of silence.
 * flood       P connections at a time from IP, for S seconds, each sending
 *             a valid first flight (a pool of distinct msg1s, cycled: all
 *             decrypt, so each costs a server without protection its
 *             DH) and waiting for the server to answer or close.  Prints
 *             "flood sent N answered A refused R".
 * handshakes  complete handshakes from IP, one at a time, at most R a
 *             second, for S seconds: msg1 with 0-RTT data, msg2, and the
 *             echo of the data, each checked.  Prints "handshakes ok N
 *             failed F rate X/s p50_ms M".
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "cipher.h"
#include "frame.h"
#include "noise.h"

enum {
	POOL = 512,
	MAX_PARALLEL = 256,
	MAX_SAMPLES = 1 << 16,
	IO_TIMEOUT_MS = 3000,
	QUIET_MS = 200,
	PING_LEN = 32,
	FLIGHT_MAX = NS_ROUTE_PREFIX_LEN + NS_FRAME_HEADER_LEN + NS_MSG1_OVERHEAD + 1024,
};

struct flight {
	uint8_t bytes[FLIGHT_MAX];
	size_t len;
};

static struct sockaddr_in server_addr, source_addr;
static uint8_t remote_pub[NS_KEY_LEN];
static struct flight pool[POOL];
static double deadline;
static long sent, answered, refused;

static void die(const char *what)
{
	fprintf(stderr, "flood_peer: %s\n", what);
	exit(1);
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static const char *option(int argc, char **argv, const char *name)
{
	for (int i = 2; i + 1 < argc; i++)
		if (strcmp(argv[i], name) == 0)
			return argv[i + 1];
	return NULL;
}

static const char *required(int argc, char **argv, const char *name)
{
	const char *v = option(argc, argv, name);

	if (v == NULL) {
		fprintf(stderr, "flood_peer: %s is required\n", name);
		exit(2);
	}
	return v;
}

static void parse_addr(const char *text, struct sockaddr_in *sa, int with_port)
{
	char host[64];
	const char *colon = strrchr(text, ':');

	memset(sa, 0, sizeof *sa);
	sa->sin_family = AF_INET;
	if (with_port) {
		if (colon == NULL || (size_t)(colon - text) >= sizeof host)
			die("expected IP:PORT");
		memcpy(host, text, (size_t)(colon - text));
		host[colon - text] = '\0';
		sa->sin_port = htons((uint16_t)atoi(colon + 1));
	} else {
		snprintf(host, sizeof host, "%s", text);
	}
	if (inet_pton(AF_INET, host, &sa->sin_addr) != 1)
		die("not an IPv4 address");
}

/* A first flight carrying payload, with a fresh ephemeral key; the handshake is kept if hs. */
static void make_flight(const uint8_t *payload, size_t len, struct flight *f,
                        struct ns_handshake **keep)
{
	static struct ns_keypair me;
	static int have_me;
	struct ns_handshake *hs;
	long n;

	if (!have_me) {
		uint8_t priv[NS_KEY_LEN];

		randombytes_buf(priv, sizeof priv);
		if (ns_keypair_from_private(&me, priv) != 0)
			die("cannot make a static key");
		have_me = 1;
	}
	if (len > FLIGHT_MAX - (NS_ROUTE_PREFIX_LEN + NS_FRAME_HEADER_LEN + NS_MSG1_OVERHEAD))
		die("payload too long");
	if ((hs = ns_handshake_new_initiator(NS_SUITE_CHACHAPOLY, &me, remote_pub, NULL, 0)) == NULL)
		die("cannot start a handshake");
	memcpy(f->bytes, NS_ROUTE_PREFIX_DEFAULT, NS_ROUTE_PREFIX_LEN);
	n = ns_handshake_write_msg1(hs, payload, len,
	                            f->bytes + NS_ROUTE_PREFIX_LEN + NS_FRAME_HEADER_LEN);
	if (n < 0)
		die("cannot write msg1");
	ns_frame_header_put(f->bytes + NS_ROUTE_PREFIX_LEN, (size_t)n);
	f->len = NS_ROUTE_PREFIX_LEN + NS_FRAME_HEADER_LEN + (size_t)n;
	if (keep != NULL)
		*keep = hs;
	else
		ns_handshake_free(hs);
}

/* A connection from the source address; -1 if it cannot be made. */
static int dial(void)
{
	struct timeval tv = {IO_TIMEOUT_MS / 1000, (IO_TIMEOUT_MS % 1000) * 1000};
	struct linger reset = {1, 0};
	int one = 1, fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -1;
	/* The port is chosen at connect, per destination: thousands of dials need no bind ports. */
	setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
	/* Close with a reset: no TIME_WAIT left to run out of ports with. */
	setsockopt(fd, SOL_SOCKET, SO_LINGER, &reset, sizeof reset);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
	if (bind(fd, (struct sockaddr *)&source_addr, sizeof source_addr) != 0 ||
	    connect(fd, (struct sockaddr *)&server_addr, sizeof server_addr) != 0) {
		close(fd);
		return -1;
	}
	return fd;
}

static int send_all(int fd, const uint8_t *buf, size_t len)
{
	while (len > 0) {
		ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);

		if (n <= 0)
			return -1;
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

static int recv_all(int fd, uint8_t *buf, size_t len)
{
	while (len > 0) {
		ssize_t n = recv(fd, buf, len, 0);

		if (n <= 0)
			return -1;
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

/* One frame's body into body (at most cap bytes); its length or -1. */
static long read_frame(int fd, uint8_t *body, size_t cap)
{
	uint8_t header[NS_FRAME_HEADER_LEN];
	size_t len;

	if (recv_all(fd, header, sizeof header) != 0 || header[0] != NS_FRAME_MARKER)
		return -1;
	len = (size_t)header[1] << 16 | (size_t)header[2] << 8 | header[3];
	if (len > cap || recv_all(fd, body, len) != 0)
		return -1;
	return (long)len;
}

static void *flood_worker(void *arg)
{
	unsigned next = (unsigned)(uintptr_t)arg;

	while (now_s() < deadline) {
		const struct flight *f = &pool[next++ % POOL];
		uint8_t byte;
		int fd = dial();

		if (fd < 0)
			continue;
		__atomic_add_fetch(&sent, 1, __ATOMIC_RELAXED);
		if (send_all(fd, f->bytes, f->len) == 0 && recv(fd, &byte, 1, 0) == 1)
			__atomic_add_fetch(&answered, 1, __ATOMIC_RELAXED);
		else
			__atomic_add_fetch(&refused, 1, __ATOMIC_RELAXED);
		close(fd);
	}
	return NULL;
}

static int flood(double seconds, int parallel)
{
	static const uint8_t junk[PING_LEN];
	pthread_t tids[MAX_PARALLEL];

	if (parallel < 1 || parallel > MAX_PARALLEL)
		die("--parallel out of range");
	for (int i = 0; i < POOL; i++)
		make_flight(junk, sizeof junk, &pool[i], NULL);
	deadline = now_s() + seconds;
	for (int i = 0; i < parallel; i++)
		if (pthread_create(&tids[i], NULL, flood_worker, (void *)(uintptr_t)(i * 7)) != 0)
			die("cannot start a thread");
	for (int i = 0; i < parallel; i++)
		pthread_join(tids[i], NULL);
	printf("flood sent %ld answered %ld refused %ld\n", sent, answered, refused);
	return 0;
}

/* One whole handshake with a checked echo of its 0-RTT data; 0 or -1. */
static int handshake_once(void)
{
	uint8_t ping[PING_LEN], body[NS_MAX_FRAME_BODY];
	struct ns_cipher *tx = NULL, *rx = NULL;
	struct ns_handshake *hs = NULL;
	const uint8_t *payload;
	struct flight f;
	int fd, ok = -1;
	long n;

	randombytes_buf(ping, sizeof ping);
	make_flight(ping, sizeof ping, &f, &hs);
	if ((fd = dial()) < 0)
		goto out;
	if (send_all(fd, f.bytes, f.len) != 0 || (n = read_frame(fd, body, sizeof body)) < 0 ||
	    (n = ns_handshake_read_msg2(hs, body, (size_t)n, &payload)) < 0 ||
	    ns_handshake_split(hs, &tx, &rx) != 0)
		goto out;
	/* The echo rides in msg2 when the server answers at once, else in the record after it. */
	if (n == 0) {
		if ((n = read_frame(fd, body, sizeof body)) != PING_LEN + NS_TAG_LEN ||
		    ns_cipher_open(rx, NULL, 0, body, (size_t)n, body) != 0)
			goto out;
		payload = body;
		n = PING_LEN;
	}
	if (n != PING_LEN || memcmp(payload, ping, PING_LEN) != 0)
		goto out;
	ok = 0;
out:
	if (fd >= 0)
		close(fd);
	ns_cipher_free(tx);
	ns_cipher_free(rx);
	ns_handshake_free(hs);
	return ok;
}

static int compare_doubles(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static int handshakes(double seconds, double rate)
{
	static double took[MAX_SAMPLES];
	long ok = 0, failed = 0;
	double start = now_s(), next = start;

	deadline = start + seconds;
	while (now_s() < deadline) {
		double t0 = now_s(), wait = next - t0;

		if (wait > 0) {
			usleep((useconds_t)(wait * 1e6));
			t0 = now_s();
		}
		next = t0 + 1.0 / rate;
		if (handshake_once() == 0) {
			if (ok < MAX_SAMPLES)
				took[ok] = now_s() - t0;
			ok++;
		} else {
			failed++;
		}
	}
	qsort(took, (size_t)(ok < MAX_SAMPLES ? ok : MAX_SAMPLES), sizeof took[0], compare_doubles);
	printf("handshakes ok %ld failed %ld rate %.1f/s p50_ms %.2f\n", ok, failed,
	       (double)ok / seconds, ok > 0 ? took[(ok < MAX_SAMPLES ? ok : MAX_SAMPLES) / 2] * 1e3 : 0.0);
	return ok > 0 ? 0 : 1;
}

/* Send a stored flight and report what came back, as the usage says. */
static int send_flight(const char *path)
{
	struct timeval quiet = {0, QUIET_MS * 1000};
	struct flight f;
	uint8_t buf[4096];
	long received = 0;
	FILE *file;
	ssize_t n;
	int fd;

	if ((file = fopen(path, "rb")) == NULL)
		die("cannot read the flight");
	f.len = fread(f.bytes, 1, sizeof f.bytes, file);
	fclose(file);
	if ((fd = dial()) < 0)
		die("cannot connect");
	if (send_all(fd, f.bytes, f.len) != 0) {
		printf("reply 0 closed\n");
		return 0;
	}
	while ((n = recv(fd, buf, sizeof buf, 0)) > 0) {
		received += n;
		/* After the first bytes, wait only a short while for more. */
		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &quiet, sizeof quiet);
	}
	printf("reply %ld %s\n", received,
	       n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) ? "open" : "closed");
	close(fd);
	return 0;
}

static int write_flight(const char *payload, const char *out)
{
	struct flight f;
	FILE *file;

	make_flight((const uint8_t *)payload, strlen(payload), &f, NULL);
	if ((file = fopen(out, "wb")) == NULL || fwrite(f.bytes, 1, f.len, file) != f.len ||
	    fclose(file) != 0)
		die("cannot write the flight");
	return 0;
}

int main(int argc, char **argv)
{
	size_t len;

	if (argc < 2 || sodium_init() < 0)
		die("usage: flood_peer flight|send|flood|handshakes OPTIONS");
	if (sodium_hex2bin(remote_pub, sizeof remote_pub, required(argc, argv, "--remote-pub"),
	                   2 * NS_KEY_LEN, NULL, &len, NULL) != 0 || len != NS_KEY_LEN)
		die("--remote-pub: expected 64 hex digits");
	if (strcmp(argv[1], "flight") == 0)
		return write_flight(required(argc, argv, "--payload"), required(argc, argv, "--out"));
	parse_addr(required(argc, argv, "--connect"), &server_addr, 1);
	parse_addr(required(argc, argv, "--from"), &source_addr, 0);
	if (strcmp(argv[1], "send") == 0)
		return send_flight(required(argc, argv, "--flight"));
	if (strcmp(argv[1], "flood") == 0)
		return flood(atof(required(argc, argv, "--seconds")),
		             atoi(required(argc, argv, "--parallel")));
	if (strcmp(argv[1], "handshakes") == 0)
		return handshakes(atof(required(argc, argv, "--seconds")),
		                  atof(required(argc, argv, "--rate")));
	die("usage: flood_peer flight|send|flood|handshakes OPTIONS");
	return 2;
}
