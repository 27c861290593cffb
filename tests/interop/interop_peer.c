/*
 * Our side of the interop test: a blocking Noise_IK peer built directly on
 * the core library, speaking Storj's wire.
 *
 *   interop_peer respond  --listen HOST:PORT --key HEX [--suite chachapoly|aesgcm]
 *   interop_peer initiate --connect HOST:PORT --remote-pub KEY --size N [--suite S]
 *
 * The responder echoes every byte; the initiator sends N random bytes as its
 * 0-RTT first write and checks the echo byte for byte.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sodium.h>

#include "frame.h"
#include "noise.h"
#include "nodeurl.h"
#include "prefix.h"

struct peer {
	int fd;
	struct ns_cipher *send, *recv;
	struct ns_frame_reader reader;
	uint8_t body[NS_MAX_FRAME_BODY];
	uint8_t out[NS_MAX_FIRST_FLIGHT];
};

static void
die(const char *what)
{
	fprintf(stderr, "interop_peer: %s\n", what);
	exit(1);
}

static void
write_all(int fd, const uint8_t *buf, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, buf, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			die("write failed");
		buf += n;
		len -= (size_t)n;
	}
}

/* Read bytes until a whole frame is in the body.  Length of the body, or -1 at a clean EOF. */
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
		if (n < 0)
			die("read failed");
		if (n == 0) {
			if (ns_frame_reader_finish(&p->reader))
				die(ns_frame_strerror(p->reader.error));
			return -1;
		}
		if (ns_frame_reader_commit(&p->reader, (size_t)n))
			die(ns_frame_strerror(p->reader.error));
	}
	return (long)len;
}

/* Seal and send data in frames of at most NS_MAX_PLAINTEXT bytes. */
static void
send_data(struct peer *p, const uint8_t *data, size_t len)
{
	while (len > 0) {
		size_t n = len < NS_MAX_PLAINTEXT ? len : NS_MAX_PLAINTEXT;

		ns_frame_header_put(p->out, n + NS_TAG_LEN);
		if (ns_cipher_seal(p->send, NULL, 0, data, n, p->out + NS_FRAME_HEADER_LEN))
			die("seal failed");
		write_all(p->fd, p->out, NS_FRAME_HEADER_LEN + n + NS_TAG_LEN);
		data += n;
		len -= n;
	}
}

static void
parse_addr(const char *text, struct sockaddr_in *sa)
{
	char host[64];
	const char *colon = strrchr(text, ':');

	if (colon == NULL || (size_t)(colon - text) >= sizeof(host))
		die("address must be HOST:PORT");
	memcpy(host, text, (size_t)(colon - text));
	host[colon - text] = '\0';
	memset(sa, 0, sizeof(*sa));
	sa->sin_family = AF_INET;
	sa->sin_port = htons((uint16_t)atoi(colon + 1));
	if (inet_pton(AF_INET, host, &sa->sin_addr) != 1)
		die("bad IPv4 address");
}

/* A key as 64 hex digits, or a public key in NodeURL noise_pub form. */
static void
parse_key(const char *text, uint8_t key[NS_KEY_LEN])
{
	size_t len;

	if (text == NULL)
		die("a key is missing");
	if (strlen(text) == 2 * NS_KEY_LEN &&
	    sodium_hex2bin(key, NS_KEY_LEN, text, strlen(text), NULL, &len, NULL) == 0 &&
	    len == NS_KEY_LEN)
		return;
	if (ns_noise_pub_decode(text, strlen(text), key) != NS_NODEURL_OK)
		die("keys are 64 hex digits or a noise_pub string");
}

static enum ns_suite
parse_suite(const char *name)
{
	if (name == NULL || strcmp(name, "chachapoly") == 0)
		return NS_SUITE_CHACHAPOLY;
	if (strcmp(name, "aesgcm") == 0)
		return NS_SUITE_AESGCM;
	die("suite is chachapoly or aesgcm");
	return 0;
}

/* Responder side of one connection: prefix, msg1, msg2 at once, then echo. */
static void
serve(int fd, enum ns_suite suite, const uint8_t key[NS_KEY_LEN])
{
	static struct peer p;
	uint8_t prefix[NS_ROUTE_PREFIX_LEN];
	struct ns_handshake *hs;
	struct ns_keypair kp;
	const uint8_t *payload;
	size_t got = 0;
	long n;

	p.fd = fd;
	ns_frame_reader_init(&p.reader, p.body, 0, 0);
	while (got < sizeof(prefix)) {
		ssize_t r = read(fd, prefix + got, sizeof(prefix) - got);
		if (r <= 0)
			die("connection closed before the route prefix");
		got += (size_t)r;
	}
	if (ns_prefix_match(prefix, sizeof(prefix), (const uint8_t *)NS_ROUTE_PREFIX_DEFAULT) !=
	    NS_PREFIX_MATCH)
		die("wrong route prefix");
	if (ns_keypair_from_private(&kp, key) ||
	    (hs = ns_handshake_new_responder(suite, &kp, NULL, 0)) == NULL)
		die("handshake setup failed");
	if ((n = read_frame(&p, NS_MSG1_OVERHEAD, NS_MAX_MSG1_BODY)) < 0)
		die("connection closed before msg1");
	if ((n = ns_handshake_read_msg1(hs, p.body, (size_t)n, &payload)) < 0)
		die(ns_handshake_error(hs));
	/* The 0-RTT payload stays in p.body while msg2 is built in p.out. */
	memmove(p.body, payload, (size_t)n);
	long m = ns_handshake_write_msg2(hs, NULL, 0, p.out + NS_FRAME_HEADER_LEN);
	ns_frame_header_put(p.out, (size_t)m);
	write_all(fd, p.out, NS_FRAME_HEADER_LEN + (size_t)m);
	if (ns_handshake_split(hs, &p.send, &p.recv))
		die("split failed");
	ns_handshake_free(hs);
	send_data(&p, p.body, (size_t)n);
	while ((n = read_frame(&p, NS_MIN_TRANSPORT_BODY, NS_MAX_TRANSPORT_BODY)) >= 0) {
		if (ns_cipher_open(p.recv, NULL, 0, p.body, (size_t)n, p.body))
			die("transport frame fails authentication");
		send_data(&p, p.body, (size_t)n - NS_TAG_LEN);
	}
	ns_cipher_free(p.send);
	ns_cipher_free(p.recv);
	close(fd);
}

static int
respond(const char *listen_at, enum ns_suite suite, const uint8_t key[NS_KEY_LEN])
{
	struct sockaddr_in sa;
	socklen_t salen = sizeof(sa);
	int one = 1, lfd;

	parse_addr(listen_at, &sa);
	signal(SIGCHLD, SIG_IGN);  /* children reap themselves */
	if ((lfd = socket(AF_INET, SOCK_STREAM, 0)) < 0 ||
	    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ||
	    bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) || listen(lfd, 64) ||
	    getsockname(lfd, (struct sockaddr *)&sa, &salen))
		die("cannot listen");
	printf("listening 127.0.0.1:%u\n", ntohs(sa.sin_port));
	fflush(stdout);
	for (;;) {
		int fd = accept(lfd, NULL, NULL);
		if (fd < 0)
			continue;
		if (fork() == 0) {
			close(lfd);
			serve(fd, suite, key);
			_exit(0);
		}
		close(fd);
	}
}

struct sender {
	struct peer *p;
	const uint8_t *data;
	size_t len;
};

static void *
send_rest(void *arg)
{
	struct sender *s = arg;

	send_data(s->p, s->data, s->len);
	return NULL;
}

static int
initiate(const char *connect_to, enum ns_suite suite, const uint8_t rs[NS_KEY_LEN], size_t size)
{
	static struct peer p;
	uint8_t s_priv[NS_KEY_LEN], *data, *echo;
	size_t first = size < NS_MAX_PLAINTEXT ? size : NS_MAX_PLAINTEXT, got = 0;
	struct ns_handshake *hs;
	struct ns_keypair kp;
	const uint8_t *payload;
	struct sockaddr_in sa;
	struct sender s;
	pthread_t tid;
	long n;

	parse_addr(connect_to, &sa);
	randombytes_buf(s_priv, sizeof(s_priv));
	if ((data = malloc(size + 1)) == NULL || (echo = malloc(size + 1)) == NULL)
		die("out of memory");
	randombytes_buf(data, size);
	if ((p.fd = socket(AF_INET, SOCK_STREAM, 0)) < 0 ||
	    connect(p.fd, (struct sockaddr *)&sa, sizeof(sa)))
		die("cannot connect");
	ns_frame_reader_init(&p.reader, p.body, 0, 0);
	if (ns_keypair_from_private(&kp, s_priv) ||
	    (hs = ns_handshake_new_initiator(suite, &kp, rs, NULL, 0)) == NULL)
		die("handshake setup failed");

	/* First write: prefix | frame(msg1 with up to 65535 bytes of 0-RTT data). */
	memcpy(p.out, NS_ROUTE_PREFIX_DEFAULT, NS_ROUTE_PREFIX_LEN);
	n = ns_handshake_write_msg1(hs, data, first, p.out + NS_ROUTE_PREFIX_LEN + NS_FRAME_HEADER_LEN);
	ns_frame_header_put(p.out + NS_ROUTE_PREFIX_LEN, (size_t)n);
	write_all(p.fd, p.out, NS_ROUTE_PREFIX_LEN + NS_FRAME_HEADER_LEN + (size_t)n);

	if ((n = read_frame(&p, NS_MSG2_OVERHEAD, NS_MAX_MSG2_BODY)) < 0)
		die("connection closed before msg2");
	if ((n = ns_handshake_read_msg2(hs, p.body, (size_t)n, &payload)) < 0)
		die(ns_handshake_error(hs));
	if (ns_handshake_split(hs, &p.send, &p.recv))
		die("split failed");
	ns_handshake_free(hs);
	/* A responder may answer in msg2 itself: its payload is the start of the echo. */
	if ((size_t)n > first)
		die("msg2 carries more than was sent");
	memcpy(echo, payload, (size_t)n);
	got = (size_t)n;

	/* The rest goes from a second thread so that the echo is read meanwhile. */
	s = (struct sender){&p, data + first, size - first};
	if (pthread_create(&tid, NULL, send_rest, &s))
		die("cannot start the sender");
	while (got < size) {
		if ((n = read_frame(&p, NS_MIN_TRANSPORT_BODY, NS_MAX_TRANSPORT_BODY)) < 0)
			die("connection closed before the whole echo");
		if (ns_cipher_open(p.recv, NULL, 0, p.body, (size_t)n, p.body))
			die("transport frame fails authentication");
		n -= NS_TAG_LEN;
		if (got + (size_t)n > size)
			die("echo longer than what was sent");
		memcpy(echo + got, p.body, (size_t)n);
		got += (size_t)n;
	}
	pthread_join(tid, NULL);
	if (memcmp(echo, data, size) != 0)
		die("echo differs from what was sent");
	printf("ok %zu\n", size);
	ns_cipher_free(p.send);
	ns_cipher_free(p.recv);
	close(p.fd);
	free(data);
	free(echo);
	return 0;
}

static const char *
option(int argc, char **argv, const char *name)
{
	for (int i = 2; i + 1 < argc; i++)
		if (strcmp(argv[i], name) == 0)
			return argv[i + 1];
	return NULL;
}

int
main(int argc, char **argv)
{
	uint8_t key[NS_KEY_LEN];
	enum ns_suite suite;

	if (argc < 2 || sodium_init() < 0)
		die("usage: interop_peer respond|initiate OPTIONS");
	suite = parse_suite(option(argc, argv, "--suite"));
	if (strcmp(argv[1], "respond") == 0 && option(argc, argv, "--listen") != NULL) {
		parse_key(option(argc, argv, "--key"), key);
		return respond(option(argc, argv, "--listen"), suite, key);
	}
	if (strcmp(argv[1], "initiate") == 0 && option(argc, argv, "--connect") != NULL &&
	    option(argc, argv, "--size") != NULL) {
		parse_key(option(argc, argv, "--remote-pub"), key);
		return initiate(option(argc, argv, "--connect"), suite, key,
		                strtoul(option(argc, argv, "--size"), NULL, 10));
	}
	die("usage: interop_peer respond|initiate OPTIONS");
	return 2;
}
