/*
 * Plain socket programs for measuring what idle connections cost, run
 * under the shims by bench/memory.sh.  Nothing of noiseshim is linked in:
 * the same binary runs with and without a shim preloaded.
 *
 *   hostile_idle serve --port PORT
 *   hostile_idle hold --port PORT --count N [--commands FILE]
 *
 * serve  an event-driven echo server on 127.0.0.1:PORT: one thread,
 *        non-blocking sockets in level-triggered epoll; a connection is
 *        closed at end of stream or on an error.
 * hold   opens one connection, exchanges a line and closes it, so that
 *        what a process sets up once on its first connection is not
 *        counted per connection; prints "ready" and takes commands from
 *        FILE (a FIFO, say; default stdin), one a line: "open"
 *        opens N connections, sends a short line on each and reads its
 *        echo (so each has finished its handshake and carried a record
 *        both ways), then prints "held N"; "close" closes them all and
 *        prints "closed"; end of input exits.  Memory can be measured
 *        before, while and after the connections are held.
 *
 * Every failure names the call and the connection (0 is the warm-up, the
 * held ones count from 1), and exits 1.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

enum {
	LISTEN_BACKLOG = 8192,
	EVENTS_PER_WAIT = 256,
	ECHO_CHUNK = 4096,
	LINE_MAX_LEN = 64,
	MAX_CONNECTIONS = 100000,
};

static void
die(const char *what, long connection)
{
	if (connection >= 0)
		fprintf(stderr, "hostile_idle: connection %ld: %s: %s\n", connection, what,
		        strerror(errno));
	else
		fprintf(stderr, "hostile_idle: %s: %s\n", what, strerror(errno));
	exit(1);
}

static struct sockaddr_in
loopback(const char *port_text)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	long port = strtol(port_text, NULL, 10);

	if (port < 1 || port > 65535) {
		fprintf(stderr, "hostile_idle: --port %s is not a port\n", port_text);
		exit(2);
	}
	sa.sin_port = htons((uint16_t)port);
	return sa;
}

/* Echo what is there; 0 to keep the connection, -1 to close it. */
static int
echo_ready(int fd)
{
	char buf[ECHO_CHUNK];

	for (;;) {
		ssize_t n = read(fd, buf, sizeof(buf));
		if (n == 0)
			return -1;
		if (n < 0)
			return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? 0 : -1;
		/* The lines are short: a blocking-free write takes them whole or the peer is gone. */
		if (write(fd, buf, (size_t)n) != n)
			return -1;
	}
}

static _Noreturn void
serve(const char *port_text)
{
	struct sockaddr_in sa = loopback(port_text);
	struct epoll_event ev = {.events = EPOLLIN}, events[EVENTS_PER_WAIT];
	int one = 1, lfd, ep;

	if ((lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0)) < 0 ||
	    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ||
	    bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) || listen(lfd, LISTEN_BACKLOG))
		die("listen on 127.0.0.1", -1);
	if ((ep = epoll_create1(0)) < 0)
		die("epoll_create1", -1);
	ev.data.fd = lfd;
	if (epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev))
		die("epoll_ctl on the listener", -1);
	for (;;) {
		int n = epoll_wait(ep, events, EVENTS_PER_WAIT, -1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			die("epoll_wait", -1);
		for (int i = 0; i < n; i++) {
			int fd = events[i].data.fd;

			if (fd == lfd) {
				int conn;
				while ((conn = accept4(lfd, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
					ev.data.fd = conn;
					if (epoll_ctl(ep, EPOLL_CTL_ADD, conn, &ev))
						close(conn);
				}
			} else if (echo_ready(fd) < 0) {
				epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
				close(fd);
			}
		}
	}
}

static void
open_and_echo(long i, const struct sockaddr_in *sa, int *fd)
{
	char line[LINE_MAX_LEN], back[LINE_MAX_LEN];
	int len = snprintf(line, sizeof(line), "idle connection %ld\n", i);
	ssize_t got = 0, n;

	if ((*fd = socket(AF_INET, SOCK_STREAM, 0)) < 0)
		die("socket", i);
	if (connect(*fd, (const struct sockaddr *)sa, sizeof(*sa)))
		die("connect", i);
	if (write(*fd, line, (size_t)len) != len)
		die("write", i);
	while (got < len) {
		if ((n = read(*fd, back + got, (size_t)(len - got))) <= 0) {
			if (n == 0)
				errno = ECONNRESET;
			die("read of the echo", i);
		}
		got += n;
	}
	if (memcmp(line, back, (size_t)len) != 0) {
		fprintf(stderr, "hostile_idle: connection %ld: the echo differs\n", i);
		exit(1);
	}
}

static int
hold(const char *port_text, const char *count_text, const char *commands_path)
{
	struct sockaddr_in sa = loopback(port_text);
	long count = strtol(count_text, NULL, 10);
	FILE *commands = stdin;
	char command[LINE_MAX_LEN];
	int *fds;

	if (count < 1 || count > MAX_CONNECTIONS) {
		fprintf(stderr, "hostile_idle: --count %s is not 1..%d\n", count_text, MAX_CONNECTIONS);
		return 2;
	}
	if (commands_path != NULL && (commands = fopen(commands_path, "r")) == NULL)
		die(commands_path, -1);
	if ((fds = calloc((size_t)count, sizeof(*fds))) == NULL)
		die("calloc", -1);
	open_and_echo(0, &sa, &fds[0]);
	close(fds[0]);
	printf("ready\n");
	fflush(stdout);
	while (fgets(command, sizeof(command), commands) != NULL) {
		if (strcmp(command, "open\n") == 0) {
			for (long i = 0; i < count; i++)
				open_and_echo(i + 1, &sa, &fds[i]);
			printf("held %ld\n", count);
		} else if (strcmp(command, "close\n") == 0) {
			for (long i = 0; i < count; i++)
				close(fds[i]);
			printf("closed\n");
		}
		fflush(stdout);
	}
	free(fds);
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
	const char *port = option(argc, argv, "--port");

	if (argc >= 2 && port != NULL && strcmp(argv[1], "serve") == 0)
		serve(port);
	if (argc >= 2 && port != NULL && option(argc, argv, "--count") != NULL &&
	    strcmp(argv[1], "hold") == 0)
		return hold(port, option(argc, argv, "--count"), option(argc, argv, "--commands"));
	fprintf(stderr, "usage: hostile_idle serve --port PORT | hold --port PORT --count N [--commands FILE]\n");
	return 2;
}
