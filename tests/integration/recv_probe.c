/*
 * A server that reads one connection and reports what reached its buffer,
 * for the record tests: run under the accept shim, it shows whether
 * plaintext of a record that failed authentication was ever visible to the
 * program, and whether a stream arrived whole.
 *
 *   recv_probe --port P [--buf N] [--iov K] [--marker TEXT] [--pattern] [--poll]
 *              [--pause-ms MS]
 *
 * Listens on 127.0.0.1:P, prints "listening", accepts one connection and
 * reads it to its end with recv (K = 1, the default) or readv over K equal
 * pieces of an N-byte buffer (default 131072).  The buffer is zeroed
 * before every read and searched whole for TEXT after it.  --pattern: the
 * stream must be the bytes i % 251.  --poll: each read waits in poll()
 * first, at most POLL_SECONDS.  --pause-ms: sleep that long before each
 * read, so that the writer stays ahead.  Prints at the end:
 *
 *   bytes B            plaintext read in all
 *   end eof|ERRNO|poll-timeout  how the stream ended (ERRNO: EPROTO, ...)
 *   marker seen|absent TEXT anywhere in the buffer after any read
 *   pattern ok|bad at OFFSET
 *
 * Plain sockets only: nothing of the project is linked in.
 */
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

enum { MAX_PIECES = 16, POLL_SECONDS = 10 };

struct probe {
	size_t buf_len;
	int pieces;
	const char *marker;
	int pattern;
	int poll_first;
	long pause_ms;
	unsigned long long bytes;
	long long pattern_bad_at;
	int marker_seen;
};

static void
usage(void)
{
	fprintf(stderr, "usage: recv_probe --port P [--buf N] [--iov K] [--marker TEXT] [--pattern] [--poll]"
	                " [--pause-ms MS]\n");
	exit(2);
}

static const char *
errno_name(int err)
{
	switch (err) {
	case EPROTO: return "EPROTO";
	case ECONNRESET: return "ECONNRESET";
	case EPIPE: return "EPIPE";
	case ETIMEDOUT: return "ETIMEDOUT";
	case EBADMSG: return "EBADMSG";
	case ETIME: return "poll-timeout";
	default: return strerror(err);
	}
}

static int
listen_on(int port)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
	                         .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &(int){1}, sizeof(int)) ||
	    bind(fd, (struct sockaddr *)&sa, sizeof(sa)) || listen(fd, 4)) {
		perror("recv_probe: listen");
		exit(2);
	}
	return fd;
}

/* One read into the zeroed buffer.  Bytes, 0 at the end, -1 with errno (ETIME: poll timed out). */
static ssize_t
read_once(const struct probe *p, int fd, unsigned char *buf)
{
	struct iovec iov[MAX_PIECES];
	size_t piece = p->buf_len / (size_t)p->pieces;
	struct pollfd pfd = {.fd = fd, .events = POLLIN};

	memset(buf, 0, p->buf_len);
	if (p->pause_ms > 0)
		nanosleep(&(struct timespec){p->pause_ms / 1000, p->pause_ms % 1000 * 1000000L}, NULL);
	if (p->poll_first && poll(&pfd, 1, POLL_SECONDS * 1000) == 0) {
		errno = ETIME;
		return -1;
	}
	if (p->pieces == 1)
		return recv(fd, buf, p->buf_len, 0);
	for (int i = 0; i < p->pieces; i++)
		iov[i] = (struct iovec){buf + (size_t)i * piece, piece};
	return readv(fd, iov, p->pieces);
}

static void
check(struct probe *p, const unsigned char *buf, size_t n)
{
	if (p->marker != NULL && memmem(buf, p->buf_len, p->marker, strlen(p->marker)) != NULL)
		p->marker_seen = 1;
	for (size_t i = 0; p->pattern && p->pattern_bad_at < 0 && i < n; i++)
		if (buf[i] != (p->bytes + i) % 251)
			p->pattern_bad_at = (long long)(p->bytes + i);
	p->bytes += n;
}

int
main(int argc, char **argv)
{
	struct probe p = {.buf_len = 131072, .pieces = 1, .pattern_bad_at = -1};
	int port = 0, lfd, fd, err = 0;
	unsigned char *buf;
	ssize_t n;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--pattern") == 0)
			p.pattern = 1;
		else if (strcmp(argv[i], "--poll") == 0)
			p.poll_first = 1;
		else if (i + 1 >= argc)
			usage();
		else if (strcmp(argv[i], "--port") == 0)
			port = atoi(argv[++i]);
		else if (strcmp(argv[i], "--buf") == 0)
			p.buf_len = strtoul(argv[++i], NULL, 10);
		else if (strcmp(argv[i], "--iov") == 0)
			p.pieces = atoi(argv[++i]);
		else if (strcmp(argv[i], "--pause-ms") == 0)
			p.pause_ms = strtol(argv[++i], NULL, 10);
		else if (strcmp(argv[i], "--marker") == 0)
			p.marker = argv[++i];
		else
			usage();
	}
	if (port <= 0 || p.pieces < 1 || p.pieces > MAX_PIECES || p.buf_len < (size_t)p.pieces)
		usage();
	if ((buf = malloc(p.buf_len)) == NULL)
		return 2;
	lfd = listen_on(port);
	printf("listening\n");
	fflush(stdout);
	if ((fd = accept(lfd, NULL, NULL)) < 0) {
		perror("recv_probe: accept");
		return 2;
	}
	while ((n = read_once(&p, fd, buf)) != 0) {
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			err = errno;
			check(&p, buf, 0);
			break;
		}
		check(&p, buf, (size_t)n);
	}
	printf("bytes %llu\nend %s\nmarker %s\n", p.bytes, err ? errno_name(err) : "eof",
	       p.marker_seen ? "seen" : "absent");
	if (p.pattern_bad_at >= 0)
		printf("pattern bad at %lld\n", p.pattern_bad_at);
	else
		printf("pattern ok\n");
	close(fd);
	close(lfd);
	free(buf);
	return 0;
}
