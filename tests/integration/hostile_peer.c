/*
 * A Noise_IK initiator on the core library that misbehaves on purpose, for
 * the hostile-peer tests of the accept shim: the attacks that need a real
 * handshake, which a raw-socket client cannot make.
 *
 *   hostile_peer flight --remote-pub KEY [--size N]
 *   hostile_peer partial-record --connect HOST:PORT --remote-pub KEY --send N --end fin|rst
 *   hostile_peer slow --connect HOST:PORT --remote-pub KEY --payload TEXT --expect TEXT
 *                     --pieces K --gap-ms MS
 *   hostile_peer forged-record --connect HOST:PORT --remote-pub KEY --marker TEXT
 *                              [--valid N] [--size M] [--bad-header]
 *   hostile_peer records --connect HOST:PORT --remote-pub KEY --count N
 *
 * flight          writes a valid first flight (route prefix, frame header,
 *                 msg1 with N random payload bytes, default 0) to stdout.
 * partial-record  completes a handshake with an empty msg1, then sends the
 *                 first N bytes (1..SEALED_RECORD_LEN) of a sealed record
 *                 and ends with a FIN or a reset.  After a FIN it prints
 *                 "closed" if the server ends the connection within
 *                 VERDICT_SECONDS without sending a byte, else "open" or
 *                 "answered"; after a reset it prints "reset".
 * slow            sends a first flight carrying TEXT in K pieces MS apart,
 *                 then reads until the plaintext starts with the expected
 *                 TEXT: "ok slow" if it does, a reason and exit 1 if not.
 * forged-record   completes a handshake with an empty msg1, sends a record
 *                 of N bytes 'v' (default 0: none), then a record of M
 *                 bytes (default 60000) of TEXT repeated with one bit of
 *                 its ciphertext flipped, and a FIN; prints the server's
 *                 verdict as partial-record does.  --bad-header: the good
 *                 record and a frame header with a wrong marker leave in
 *                 one write instead, and no FIN follows.
 * records         completes a handshake with an empty msg1, then sends N
 *                 records of 0 to 4 bytes (every fifth one empty) and one
 *                 of RECORDS_LAST_LEN, all in one write, and reads the
 *                 echo: "ok records BYTES" if it is every byte sent, in
 *                 order, a reason and exit 1 if not.
 *
 * KEY is 64 hex digits or a noise_pub string.  Exit 2 for a failed
 * handshake or bad usage.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "frame.h"
#include "nodeurl.h"
#include "noise.h"

enum {
	/* Time for the server's half of the handshake, on loopback. */
	HANDSHAKE_SECONDS = 5,
	/* After a FIN a fixed server closes at once; a broken one never does. */
	VERDICT_SECONDS = 1,
	/* The record a partial-record attack begins: small, so any split is cheap. */
	SEALED_PLAINTEXT_LEN = 84,
	SEALED_RECORD_LEN = NS_FRAME_HEADER_LEN + SEALED_PLAINTEXT_LEN + NS_TAG_LEN,
	MAX_PIECES = 64,
	/* records: at most this many small ones, then a large one that may straddle reads. */
	RECORDS_MAX = 100000,
	RECORDS_LAST_LEN = 40000,
};

struct peer {
	int fd;
	struct ns_handshake *hs;
	struct ns_cipher *send, *recv;
	struct ns_frame_reader reader;
	uint8_t body[NS_MAX_FRAME_BODY];
	uint8_t out[NS_MAX_FIRST_FLIGHT];
	size_t out_len;
	uint8_t first[NS_MAX_PLAINTEXT];  /* msg2's payload: the server's first answer, if it rode there */
	size_t first_len;
};

static void
die(int status, const char *what, const char *detail)
{
	fprintf(stderr, "hostile_peer: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
	exit(status);
}

static const char *
option(int argc, char **argv, const char *name)
{
	for (int i = 2; i + 1 < argc; i++)
		if (strcmp(argv[i], name) == 0)
			return argv[i + 1];
	return NULL;
}

static const char *
required(int argc, char **argv, const char *name)
{
	const char *value = option(argc, argv, name);

	if (value == NULL)
		die(2, "missing option", name);
	return value;
}

static void
parse_key(const char *text, uint8_t key[NS_KEY_LEN])
{
	size_t len;

	if (strlen(text) == 2 * NS_KEY_LEN &&
	    sodium_hex2bin(key, NS_KEY_LEN, text, strlen(text), NULL, &len, NULL) == 0 &&
	    len == NS_KEY_LEN)
		return;
	if (ns_noise_pub_decode(text, strlen(text), key) != NS_NODEURL_OK)
		die(2, "--remote-pub is neither 64 hex digits nor a noise_pub string", text);
}

static int
connect_to(const char *text)
{
	struct timeval timeout = {HANDSHAKE_SECONDS, 0};
	struct sockaddr_in sa = {.sin_family = AF_INET};
	const char *colon = strrchr(text, ':');
	char host[64];
	int fd;

	if (colon == NULL || (size_t)(colon - text) >= sizeof(host))
		die(2, "--connect must be HOST:PORT", text);
	memcpy(host, text, (size_t)(colon - text));
	host[colon - text] = '\0';
	sa.sin_port = htons((uint16_t)atoi(colon + 1));
	if (inet_pton(AF_INET, host, &sa.sin_addr) != 1)
		die(2, "--connect needs an IPv4 address", text);
	if ((fd = socket(AF_INET, SOCK_STREAM, 0)) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout)) ||
	    connect(fd, (struct sockaddr *)&sa, sizeof(sa)))
		die(2, "cannot connect", text);
	return fd;
}

static void
write_all(int fd, const uint8_t *buf, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, buf, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			die(2, "write failed", strerror(errno));
		buf += (size_t)n;
		len -= (size_t)n;
	}
}

/* Build prefix | header | msg1(payload) in p->out for the server key rs. */
static void
make_flight(struct peer *p, const uint8_t rs[NS_KEY_LEN], const uint8_t *payload, size_t len)
{
	uint8_t s_priv[NS_KEY_LEN];
	struct ns_keypair kp;
	long n;

	randombytes_buf(s_priv, sizeof(s_priv));
	if (ns_keypair_from_private(&kp, s_priv) ||
	    (p->hs = ns_handshake_new_initiator(NS_SUITE_CHACHAPOLY, &kp, rs, NULL, 0)) == NULL)
		die(2, "handshake setup failed", NULL);
	sodium_memzero(s_priv, sizeof(s_priv));
	sodium_memzero(&kp, sizeof(kp));
	memcpy(p->out, NS_ROUTE_PREFIX_DEFAULT, NS_ROUTE_PREFIX_LEN);
	n = ns_handshake_write_msg1(p->hs, payload, len, p->out + NS_ROUTE_PREFIX_LEN + NS_FRAME_HEADER_LEN);
	if (n < 0)
		die(2, "msg1", ns_handshake_error(p->hs));
	ns_frame_header_put(p->out + NS_ROUTE_PREFIX_LEN, (size_t)n);
	p->out_len = NS_ROUTE_PREFIX_LEN + NS_FRAME_HEADER_LEN + (size_t)n;
}

/* Read one whole frame into p->body.  Its length, or -1 at end of stream or timeout. */
static long
read_frame(struct peer *p, size_t min_body, size_t max_body)
{
	size_t want, len;
	uint8_t *space;
	ssize_t n;

	ns_frame_reader_next(&p->reader);
	ns_frame_reader_limits(&p->reader, min_body, max_body);
	while (!ns_frame_reader_ready(&p->reader, &len)) {
		space = ns_frame_reader_space(&p->reader, &want);
		n = read(p->fd, space, want);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		if (ns_frame_reader_commit(&p->reader, (size_t)n))
			die(2, "bad frame from the server", ns_frame_strerror(p->reader.error));
	}
	return (long)len;
}

/* msg2 in, transport ciphers out; msg2's payload kept in first. */
static void
finish_handshake(struct peer *p)
{
	const uint8_t *payload;
	long n;

	if ((n = read_frame(p, NS_MSG2_OVERHEAD, NS_MAX_MSG2_BODY)) < 0)
		die(2, "no msg2 from the server", strerror(errno));
	if ((n = ns_handshake_read_msg2(p->hs, p->body, (size_t)n, &payload)) < 0)
		die(2, "msg2", ns_handshake_error(p->hs));
	memcpy(p->first, payload, (size_t)n);
	p->first_len = (size_t)n;
	if (ns_handshake_split(p->hs, &p->send, &p->recv))
		die(2, "split failed", NULL);
	ns_handshake_free(p->hs);
	p->hs = NULL;
}

/* Connect to address and complete a handshake with an empty msg1 (the transport ciphers in p). */
static void
open_session(struct peer *p, const char *address, const uint8_t rs[NS_KEY_LEN])
{
	p->fd = connect_to(address);
	ns_frame_reader_init(&p->reader, p->body, 0, 0);
	make_flight(p, rs, NULL, 0);
	write_all(p->fd, p->out, p->out_len);
	finish_handshake(p);
}

static void
free_peer(struct peer *p)
{
	ns_handshake_free(p->hs);
	ns_cipher_free(p->send);
	ns_cipher_free(p->recv);
	close(p->fd);
}

static int
write_flight(int argc, char **argv)
{
	static struct peer p;
	const char *size_text = option(argc, argv, "--size");
	size_t size = size_text ? strtoul(size_text, NULL, 10) : 0;
	uint8_t rs[NS_KEY_LEN], *payload;

	parse_key(required(argc, argv, "--remote-pub"), rs);
	if (size > NS_MAX_PLAINTEXT)
		die(2, "--size is at most 65535", size_text);
	if ((payload = malloc(size + 1)) == NULL)
		die(2, "out of memory", NULL);
	randombytes_buf(payload, size);
	make_flight(&p, rs, payload, size);
	write_all(STDOUT_FILENO, p.out, p.out_len);
	ns_handshake_free(p.hs);
	free(payload);
	return 0;
}

/* After a FIN: whether the server ends the connection, and sends nothing first. */
static const char *
server_verdict(int fd)
{
	struct timeval timeout = {VERDICT_SECONDS, 0};
	uint8_t byte;
	ssize_t n;

	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
	while ((n = read(fd, &byte, 1)) < 0 && errno == EINTR)
		;
	if (n == 0 || (n < 0 && errno == ECONNRESET))
		return "closed";
	return n > 0 ? "answered" : "open";
}

static int
partial_record(int argc, char **argv)
{
	static struct peer p;
	const char *end = required(argc, argv, "--end");
	long send_len = strtol(required(argc, argv, "--send"), NULL, 10);
	uint8_t rs[NS_KEY_LEN], plaintext[SEALED_PLAINTEXT_LEN], record[SEALED_RECORD_LEN];
	const char *verdict = "reset";

	parse_key(required(argc, argv, "--remote-pub"), rs);
	if (send_len < 1 || send_len >= SEALED_RECORD_LEN)
		die(2, "--send must leave the record partial", required(argc, argv, "--send"));
	if (strcmp(end, "fin") != 0 && strcmp(end, "rst") != 0)
		die(2, "--end is fin or rst", end);
	open_session(&p, required(argc, argv, "--connect"), rs);

	randombytes_buf(plaintext, sizeof(plaintext));
	ns_frame_header_put(record, SEALED_PLAINTEXT_LEN + NS_TAG_LEN);
	if (ns_cipher_seal(p.send, NULL, 0, plaintext, sizeof(plaintext), record + NS_FRAME_HEADER_LEN))
		die(2, "seal failed", NULL);
	write_all(p.fd, record, (size_t)send_len);
	if (strcmp(end, "fin") == 0) {
		shutdown(p.fd, SHUT_WR);
		verdict = server_verdict(p.fd);
	} else {
		/* Linger 0: close sends a reset instead of a FIN. */
		setsockopt(p.fd, SOL_SOCKET, SO_LINGER, &(struct linger){1, 0}, sizeof(struct linger));
	}
	printf("%s\n", verdict);
	free_peer(&p);
	return strcmp(verdict, "closed") == 0 || strcmp(verdict, "reset") == 0 ? 0 : 1;
}

static int
has_flag(int argc, char **argv, const char *name)
{
	for (int i = 2; i < argc; i++)
		if (strcmp(argv[i], name) == 0)
			return 1;
	return 0;
}

/*
 * Seal plaintext as the next record and write it: with one ciphertext bit
 * flipped if forge, followed in the same write by a header with a wrong
 * marker if bad_header.
 */
static void
send_record(struct peer *p, const uint8_t *plaintext, size_t len, int forge, int bad_header)
{
	size_t record_len = NS_FRAME_HEADER_LEN + len + NS_TAG_LEN;
	uint8_t *record = malloc(record_len + NS_FRAME_HEADER_LEN);

	if (record == NULL)
		die(2, "out of memory", NULL);
	ns_frame_header_put(record, len + NS_TAG_LEN);
	if (ns_cipher_seal(p->send, NULL, 0, plaintext, len, record + NS_FRAME_HEADER_LEN))
		die(2, "seal failed", NULL);
	if (forge)
		record[NS_FRAME_HEADER_LEN + len / 2] ^= 0x01;
	if (bad_header)
		memcpy(record + record_len, (const uint8_t[]){0x81, 0x00, 0x00, 0x20}, NS_FRAME_HEADER_LEN);
	write_all(p->fd, record, record_len + (bad_header ? NS_FRAME_HEADER_LEN : 0));
	free(record);
}

static int
forged_record(int argc, char **argv)
{
	static struct peer p;
	const char *marker = required(argc, argv, "--marker");
	const char *valid_text = option(argc, argv, "--valid"), *size_text = option(argc, argv, "--size");
	size_t valid = valid_text ? strtoul(valid_text, NULL, 10) : 0;
	size_t size = size_text ? strtoul(size_text, NULL, 10) : 60000;
	size_t marker_len = strlen(marker);
	uint8_t rs[NS_KEY_LEN], *plaintext;
	const char *verdict;

	parse_key(required(argc, argv, "--remote-pub"), rs);
	if (valid > NS_MAX_PLAINTEXT || size > NS_MAX_PLAINTEXT || size < marker_len || marker_len == 0)
		die(2, "--valid and --size are at most 65535, and --size holds the marker", NULL);
	if ((plaintext = malloc(NS_MAX_PLAINTEXT)) == NULL)
		die(2, "out of memory", NULL);
	open_session(&p, required(argc, argv, "--connect"), rs);
	memset(plaintext, 'v', valid);
	if (has_flag(argc, argv, "--bad-header")) {
		/* The server must drop the connection on its own: no FIN tells it to. */
		send_record(&p, plaintext, valid, 0, 1);
		verdict = server_verdict(p.fd);
	} else {
		if (valid > 0)
			send_record(&p, plaintext, valid, 0, 0);
		for (size_t i = 0; i < size; i++)
			plaintext[i] = (uint8_t)marker[i % marker_len];
		send_record(&p, plaintext, size, 1, 0);
		shutdown(p.fd, SHUT_WR);
		verdict = server_verdict(p.fd);
	}
	printf("%s\n", verdict);
	free(plaintext);
	free_peer(&p);
	return strcmp(verdict, "closed") == 0 ? 0 : 1;
}

static void
sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* msg2's payload, then records, until at least len plaintext bytes are in got.  Bytes read. */
static size_t
read_plaintext(struct peer *p, uint8_t *got, size_t len)
{
	size_t have = p->first_len < len ? p->first_len : len;
	long n;

	memcpy(got, p->first, have);
	while (have < len && (n = read_frame(p, NS_MIN_TRANSPORT_BODY, NS_MAX_TRANSPORT_BODY)) >= 0) {
		if (ns_cipher_open(p->recv, NULL, 0, p->body, (size_t)n, p->body))
			die(2, "a record from the server fails authentication", NULL);
		n -= NS_TAG_LEN;
		if ((size_t)n > len - have)
			n = (long)(len - have);
		memcpy(got + have, p->body, (size_t)n);
		have += (size_t)n;
	}
	return have;
}

static int
slow(int argc, char **argv)
{
	static struct peer p;
	const char *payload = required(argc, argv, "--payload");
	const char *expect = required(argc, argv, "--expect");
	long pieces = strtol(required(argc, argv, "--pieces"), NULL, 10);
	long gap_ms = strtol(required(argc, argv, "--gap-ms"), NULL, 10);
	size_t expect_len = strlen(expect), sent = 0, have;
	uint8_t rs[NS_KEY_LEN], *got;
	int status = 0;

	parse_key(required(argc, argv, "--remote-pub"), rs);
	if (pieces < 1 || pieces > MAX_PIECES || gap_ms < 0)
		die(2, "--pieces is 1..64 and --gap-ms not negative", NULL);
	if ((got = malloc(expect_len + 1)) == NULL)
		die(2, "out of memory", NULL);
	p.fd = connect_to(required(argc, argv, "--connect"));
	ns_frame_reader_init(&p.reader, p.body, 0, 0);
	make_flight(&p, rs, (const uint8_t *)payload, strlen(payload));
	for (long i = 1; i <= pieces; i++) {
		size_t upto = p.out_len * (size_t)i / (size_t)pieces;

		if (i > 1)
			sleep_ms(gap_ms);
		write_all(p.fd, p.out + sent, upto - sent);
		sent = upto;
	}
	finish_handshake(&p);
	have = read_plaintext(&p, got, expect_len);
	if (have < expect_len || memcmp(got, expect, expect_len) != 0) {
		fprintf(stderr, "hostile_peer: slow: got %zu bytes of the %zu expected, %s\n", have,
		        expect_len, have < expect_len ? "then the stream ended" : "and they differ");
		status = 1;
	} else {
		printf("ok slow\n");
	}
	free(got);
	free_peer(&p);
	return status;
}

/* Seal len bytes of plaintext into one record at out.  The record's length. */
static size_t
seal_record(struct peer *p, const uint8_t *plaintext, size_t len, uint8_t *out)
{
	ns_frame_header_put(out, len + NS_TAG_LEN);
	if (ns_cipher_seal(p->send, NULL, 0, plaintext, len, out + NS_FRAME_HEADER_LEN))
		die(2, "seal failed", NULL);
	return NS_FRAME_HEADER_LEN + len + NS_TAG_LEN;
}

static int
records(int argc, char **argv)
{
	static struct peer p;
	long count = strtol(required(argc, argv, "--count"), NULL, 10);
	size_t total = 0, wire = 0, len, have;
	uint8_t rs[NS_KEY_LEN], *sent, *out, *got;
	int status = 0;

	parse_key(required(argc, argv, "--remote-pub"), rs);
	if (count < 1 || count > RECORDS_MAX)
		die(2, "--count is 1..100000", NULL);
	sent = malloc((size_t)count * 4 + RECORDS_LAST_LEN);
	out = malloc((size_t)(count + 1) * (NS_FRAME_HEADER_LEN + NS_TAG_LEN) + (size_t)count * 4 +
	             RECORDS_LAST_LEN);
	got = malloc((size_t)count * 4 + RECORDS_LAST_LEN);
	if (sent == NULL || out == NULL || got == NULL)
		die(2, "out of memory", NULL);
	open_session(&p, required(argc, argv, "--connect"), rs);

	for (long i = 0; i <= count; i++) {
		len = i == count ? RECORDS_LAST_LEN : (size_t)(i % 5);
		randombytes_buf(sent + total, len);
		wire += seal_record(&p, sent + total, len, out + wire);
		total += len;
	}
	write_all(p.fd, out, wire);
	have = read_plaintext(&p, got, total);
	if (have < total || memcmp(got, sent, total) != 0) {
		fprintf(stderr, "hostile_peer: records: got %zu bytes of the %zu sent, %s\n", have, total,
		        have < total ? "then the stream ended" : "and they differ");
		status = 1;
	} else {
		printf("ok records %zu\n", total);
	}
	free(sent);
	free(out);
	free(got);
	free_peer(&p);
	return status;
}

int
main(int argc, char **argv)
{
	if (argc < 2 || sodium_init() < 0)
		die(2, "usage: hostile_peer flight|partial-record|slow|forged-record|records OPTIONS", NULL);
	if (strcmp(argv[1], "flight") == 0)
		return write_flight(argc, argv);
	if (strcmp(argv[1], "partial-record") == 0)
		return partial_record(argc, argv);
	if (strcmp(argv[1], "slow") == 0)
		return slow(argc, argv);
	if (strcmp(argv[1], "forged-record") == 0)
		return forged_record(argc, argv);
	if (strcmp(argv[1], "records") == 0)
		return records(argc, argv);
	die(2, "usage: hostile_peer flight|partial-record|slow|forged-record|records OPTIONS", argv[1]);
	return 2;
}
