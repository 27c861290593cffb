/*
 * ff_client: the request shapes of a program's first flight, written the
 * way ordinary programs write them, and the ways a program waits for a
 * handshake that does not come.  Plain sockets only: the first-flight
 * tests run it under the client shim, and it must not know about it.
 *
 * usage: ff_client SHAPE HOST PORT REPEAT      SHAPE: one two more cork eor
 *        ff_client nbwrite|nbwrite-epoll HOST PORT SIZE
 *        ff_client WAIT HOST PORT              WAIT: read write poll epoll
 *        ff_client FILL HOST PORT              FILL: fill-poll fill-select fill-epoll
 *
 * Shapes send a 500-byte request and read the 500-byte answer (the
 * server returns the request once it has all of it), on a fresh
 * connection each time:
 *   one   one write of 500 bytes
 *   two   write(200 bytes), write(300 bytes), then read
 *   more  send(200 bytes, MSG_MORE), send(300 bytes)
 *   cork  TCP_CORK on, write 200, write 300, TCP_CORK off
 *   eor   write(200 bytes), send(300 bytes, MSG_EOR), 100 ms of something
 *         else, then read: the answer is there when the program reads only
 *         if MSG_EOR sent the request
 * Each connection prints "time_ms T" (connect to the answer's last byte);
 * the last line is "median_ms M".
 *
 * nbwrite: a non-blocking socket with SO_SNDBUF 4096 set before connect
 * writes SIZE bytes through a poll() loop, as an event loop does
 * (EAGAIN and short writes handled), against an echo server, and checks
 * every byte that comes back.  Prints "echoed SIZE cpu_ms C idle_wakeups W".
 * nbwrite-epoll waits in a level-triggered epoll set instead of poll().
 *
 * WAIT modes send a 100-byte request and then wait for an answer that
 * should never come as data: read blocks in read(), write keeps writing
 * 1 KB pieces on a blocking socket until a write fails, poll and epoll
 * wait for readability of a non-blocking socket and read when woken.
 * One line: "result errno=NAME ms=T cpu_ms=C wakeups=W revents=0xR" or
 * "result data=N ..." or "result eof ...".  T counts from the connect
 * call; C is the whole process's CPU time (so a spinning thread of a
 * preloaded library counts too); W counts wakeups whose read gave EAGAIN.
 *
 * FILL modes (fill-poll, fill-select, fill-epoll) write 16 KB pieces on a
 * non-blocking socket as fast as the named call reports it writable, to a
 * server that never answers: more than the shim holds before the
 * handshake, so writes come back EAGAIN, and the call must then sleep
 * until the connection has room or fails, not report it writable again at
 * once.  Same result line as WAIT; W counts writability reports whose
 * write then got EAGAIN.
 *
 * alarm() bounds every mode: a hang prints "result hung" and exits 1.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum {
	RUN_SECONDS = 20,       /* bound on a whole run, enforced by alarm() */
	STALL_MS = 10000,       /* bound on one wait for readiness */
	REQUEST_FIRST = 200,    /* Storj-shaped: a request, then an order */
	EOR_PAUSE_MS = 100,     /* eor: how long the program waits after its writes before it reads */
	REQUEST_SECOND = 300,
	REQUEST_BYTES = REQUEST_FIRST + REQUEST_SECOND,
	MAX_REPEAT = 100,
	WAIT_REQUEST = 100,
	WRITE_PIECE = 1024,
	SMALL_SNDBUF = 4096,
	MAX_NBWRITE = 1 << 20,
	READ_CHUNK = 16384,
};

static const char *mode_name = "?";

static void write_to_stderr(const char *text)
{
	/* Called from a signal handler: async-signal-safe calls only. */
	if (write(STDERR_FILENO, text, strlen(text)) < 0)
		return;
}

static void on_alarm(int signal_number)
{
	static const char hung[] = "result hung\n";

	if (write(STDOUT_FILENO, hung, sizeof(hung) - 1) < 0)
		write_to_stderr("ff_client: stdout is gone\n");
	write_to_stderr("ff_client ");
	write_to_stderr(mode_name);
	write_to_stderr(": no result in time\n");
	_exit(1);
}

static void fail(const char *format, ...) __attribute__((noreturn, format(printf, 1, 2)));
static void fail(const char *format, ...)
{
	va_list args;

	fprintf(stderr, "ff_client %s: ", mode_name);
	va_start(args, format);
	vfprintf(stderr, format, args);
	va_end(args);
	fputc('\n', stderr);
	exit(1);
}

static void fail_errno(const char *call) __attribute__((noreturn));
static void fail_errno(const char *call)
{
	int error = errno;

	fail("%s: %s", call, strerror(error));
}

static double now_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

static double cpu_ms(void)
{
	struct rusage usage;

	getrusage(RUSAGE_SELF, &usage);
	return (double)(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) * 1e3 +
	       (double)(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e3;
}

/* Bytes that differ per connection and per offset, so that an answer
 * from another connection or a shifted stream does not match. */
static void fill_pattern(uint8_t *buffer, size_t length, unsigned seed)
{
	uint32_t state = 2166136261u ^ seed;

	for (size_t i = 0; i < length; i++) {
		state = (state ^ (uint32_t)i) * 16777619u;
		buffer[i] = (uint8_t)(state >> 13);
	}
}

static struct addrinfo *resolve(const char *host, const char *port)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV };
	struct addrinfo *addresses;
	int status = getaddrinfo(host, port, &hints, &addresses);

	if (status != 0)
		fail("%s port %s: %s", host, port, gai_strerror(status));
	return addresses;
}

static int new_socket(const struct addrinfo *address, int extra_type)
{
	int fd = socket(address->ai_family, SOCK_STREAM | SOCK_CLOEXEC | extra_type, 0);

	if (fd < 0)
		fail_errno("socket");
	return fd;
}

static void write_all(int fd, const uint8_t *data, size_t length, int flags)
{
	while (length > 0) {
		ssize_t n = send(fd, data, length, flags);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			fail_errno("send");
		data += n;
		length -= (size_t)n;
	}
}

static void set_cork(int fd, int on)
{
	if (setsockopt(fd, IPPROTO_TCP, TCP_CORK, &on, sizeof(on)) != 0)
		fail_errno("setsockopt TCP_CORK");
}

/* The request in the shape named by mode_name. */
static void send_request(int fd, const uint8_t *request)
{
	const uint8_t *second = request + REQUEST_FIRST;

	if (strcmp(mode_name, "one") == 0) {
		write_all(fd, request, REQUEST_BYTES, 0);
	} else if (strcmp(mode_name, "two") == 0) {
		write_all(fd, request, REQUEST_FIRST, 0);
		write_all(fd, second, REQUEST_SECOND, 0);
	} else if (strcmp(mode_name, "more") == 0) {
		write_all(fd, request, REQUEST_FIRST, MSG_MORE);
		write_all(fd, second, REQUEST_SECOND, 0);
	} else if (strcmp(mode_name, "eor") == 0) {
		struct timespec pause = { .tv_nsec = EOR_PAUSE_MS * 1000000L };
		write_all(fd, request, REQUEST_FIRST, 0);
		write_all(fd, second, REQUEST_SECOND, MSG_EOR);
		while (nanosleep(&pause, &pause) != 0 && errno == EINTR)
			;
	} else {
		set_cork(fd, 1);
		write_all(fd, request, REQUEST_FIRST, 0);
		write_all(fd, second, REQUEST_SECOND, 0);
		set_cork(fd, 0);
	}
}

static void read_answer(int fd, const uint8_t *request)
{
	uint8_t answer[REQUEST_BYTES];
	size_t have = 0;

	while (have < sizeof(answer)) {
		ssize_t n = read(fd, answer + have, sizeof(answer) - have);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			fail_errno("read");
		if (n == 0)
			fail("connection closed after %zu of %d answer bytes", have, REQUEST_BYTES);
		have += (size_t)n;
	}
	if (memcmp(answer, request, sizeof(answer)) != 0)
		fail("the answer differs from the request");
}

static int compare_doubles(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static int run_shape(const char *host, const char *port, int repeat)
{
	struct addrinfo *address = resolve(host, port);
	double times[MAX_REPEAT];
	uint8_t request[REQUEST_BYTES];

	if (repeat < 1 || repeat > MAX_REPEAT)
		fail("REPEAT must be 1..%d, not %d", MAX_REPEAT, repeat);
	for (int i = 0; i < repeat; i++) {
		fill_pattern(request, sizeof(request), (unsigned)getpid() * 131u + (unsigned)i);
		int fd = new_socket(address, 0);
		double start = now_ms();
		if (connect(fd, address->ai_addr, address->ai_addrlen) != 0)
			fail_errno("connect");
		send_request(fd, request);
		read_answer(fd, request);
		times[i] = now_ms() - start;
		close(fd);
		printf("time_ms %.1f\n", times[i]);
	}
	freeaddrinfo(address);
	qsort(times, (size_t)repeat, sizeof(times[0]), compare_doubles);
	printf("median_ms %.1f\n", repeat % 2 ? times[repeat / 2]
	                                      : (times[repeat / 2 - 1] + times[repeat / 2]) / 2);
	return 0;
}

/* One event loop turn's wait; a stall is a failure, not a hang. */
/* nbwrite-epoll: the same wait in a level-triggered epoll set, its interest changed each time. */
static short wait_in_epoll_set(int fd, short events)
{
	static int ep = -1;
	struct epoll_event interest = { .data.fd = fd }, ready;
	int n;

	interest.events = ((events & POLLIN) ? EPOLLIN : 0) | ((events & POLLOUT) ? EPOLLOUT : 0);
	if (ep < 0) {
		if ((ep = epoll_create1(EPOLL_CLOEXEC)) < 0 ||
		    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &interest) != 0)
			fail_errno("epoll");
	} else if (epoll_ctl(ep, EPOLL_CTL_MOD, fd, &interest) != 0) {
		fail_errno("epoll_ctl");
	}
	do
		n = epoll_wait(ep, &ready, 1, STALL_MS);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		fail_errno("epoll_wait");
	if (n == 0)
		fail("no readiness within %d ms (events 0x%x)", STALL_MS, events);
	return (short)(((ready.events & EPOLLIN) ? POLLIN : 0) | ((ready.events & EPOLLOUT) ? POLLOUT : 0) |
	               ((ready.events & EPOLLERR) ? POLLERR : 0) | ((ready.events & EPOLLHUP) ? POLLHUP : 0));
}

static short wait_for(int fd, short events)
{
	struct pollfd p = { .fd = fd, .events = events };
	int n;

	if (strcmp(mode_name, "nbwrite-epoll") == 0)
		return wait_in_epoll_set(fd, events);
	do
		n = poll(&p, 1, STALL_MS);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		fail_errno("poll");
	if (n == 0)
		fail("no readiness within %d ms (events 0x%x)", STALL_MS, events);
	return p.revents;
}

static void check_echo(const uint8_t *sent, size_t received, const uint8_t *data, size_t length,
                       size_t total)
{
	if (length > total - received)
		fail("%zu bytes arrived beyond the %zu-byte echo", length - (total - received), total);
	for (size_t i = 0; i < length; i++)
		if (data[i] != sent[received + i])
			fail("echo differs at byte %zu of %zu", received + i, total);
}

static int run_nbwrite(const char *host, const char *port, long size)
{
	struct addrinfo *address = resolve(host, port);
	size_t total = (size_t)size, written = 0, received = 0;
	unsigned idle_wakeups = 0;
	int sndbuf = SMALL_SNDBUF, connected;

	if (size < 1 || size > MAX_NBWRITE)
		fail("SIZE must be 1..%d, not %ld", MAX_NBWRITE, size);
	uint8_t *sent = malloc(total);
	uint8_t *chunk = malloc(READ_CHUNK);
	if (sent == NULL || chunk == NULL)
		fail("out of memory for %zu bytes", total);
	fill_pattern(sent, total, (unsigned)size);

	int fd = new_socket(address, SOCK_NONBLOCK);
	if (setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf)) != 0)
		fail_errno("setsockopt SO_SNDBUF");
	connected = connect(fd, address->ai_addr, address->ai_addrlen) == 0;
	if (!connected && errno != EINPROGRESS)
		fail_errno("connect");
	freeaddrinfo(address);

	while (received < total) {
		short revents = wait_for(fd, POLLIN | (written < total ? POLLOUT : 0));
		int progress = 0;
		if (!connected && (revents & (POLLOUT | POLLERR | POLLHUP))) {
			int error = 0;
			socklen_t len = sizeof(error);
			if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &len) != 0)
				fail_errno("getsockopt SO_ERROR");
			if (error != 0)
				fail("connect: %s", strerror(error));
			connected = 1;
		}
		if (connected && written < total && (revents & POLLOUT)) {
			ssize_t n = write(fd, sent + written, total - written);
			if (n > 0) {
				written += (size_t)n;
				progress = 1;
			} else if (n < 0 && errno != EAGAIN && errno != EINTR) {
				fail("write at byte %zu of %zu: %s", written, total, strerror(errno));
			}
		}
		if (revents & (POLLIN | POLLERR | POLLHUP)) {
			ssize_t n = read(fd, chunk, READ_CHUNK);
			if (n > 0) {
				check_echo(sent, received, chunk, (size_t)n, total);
				received += (size_t)n;
				progress = 1;
			} else if (n == 0) {
				fail("connection closed after %zu of %zu echoed bytes (%zu written)",
				     received, total, written);
			} else if (errno != EAGAIN && errno != EINTR) {
				fail("read after %zu of %zu echoed bytes (%zu written): %s", received,
				     total, written, strerror(errno));
			}
		}
		if (!progress)
			idle_wakeups++;
	}
	printf("echoed %zu cpu_ms %.0f idle_wakeups %u\n", received, cpu_ms(), idle_wakeups);
	close(fd);
	free(sent);
	free(chunk);
	return 0;
}

struct outcome {
	ssize_t result;
	int error;
	unsigned wakeups;
	unsigned revents;
};

static void print_outcome(const struct outcome *o, double start)
{
	double elapsed = now_ms() - start;

	if (o->result > 0)
		printf("result data=%zd", o->result);
	else if (o->result == 0)
		printf("result eof");
	else
		printf("result errno=%s", strerrorname_np(o->error) ? strerrorname_np(o->error) : "?");
	printf(" ms=%.0f cpu_ms=%.0f wakeups=%u revents=0x%x\n", elapsed, cpu_ms(), o->wakeups,
	       o->revents);
}

/* A read after a wakeup: EAGAIN means the wakeup had nothing for us. */
static int read_after_wakeup(int fd, struct outcome *o)
{
	uint8_t buffer[READ_CHUNK];

	o->result = read(fd, buffer, sizeof(buffer));
	o->error = errno;
	if (o->result < 0 && (o->error == EAGAIN || o->error == EINTR)) {
		o->wakeups++;
		return 0;
	}
	return 1;
}

static void wait_in_poll(int fd, struct outcome *o)
{
	for (;;) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		int n = poll(&p, 1, STALL_MS);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			fail_errno("poll");
		if (n == 0)
			fail("poll: not woken within %d ms", STALL_MS);
		o->revents = (unsigned)p.revents;
		if (read_after_wakeup(fd, o))
			return;
	}
}

static void wait_in_epoll(int fd, struct outcome *o)
{
	int ep = epoll_create1(EPOLL_CLOEXEC);
	struct epoll_event interest = { .events = EPOLLIN, .data.fd = fd }, ready;

	if (ep < 0)
		fail_errno("epoll_create1");
	if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &interest) != 0)
		fail_errno("epoll_ctl");
	for (;;) {
		int n = epoll_wait(ep, &ready, 1, STALL_MS);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			fail_errno("epoll_wait");
		if (n == 0)
			fail("epoll_wait: not woken within %d ms", STALL_MS);
		o->revents = ready.events;
		if (read_after_wakeup(fd, o))
			break;
	}
	close(ep);
}

static void write_until_failure(int fd, struct outcome *o)
{
	uint8_t piece[WRITE_PIECE];

	fill_pattern(piece, sizeof(piece), 7);
	for (;;) {
		ssize_t n = write(fd, piece, sizeof(piece));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			o->result = -1;
			o->error = n < 0 ? errno : EIO;
			return;
		}
	}
}

static int run_wait(const char *host, const char *port)
{
	struct addrinfo *address = resolve(host, port);
	int nonblocking = strcmp(mode_name, "poll") == 0 || strcmp(mode_name, "epoll") == 0;
	uint8_t request[WAIT_REQUEST];
	struct outcome o = { 0 };

	fill_pattern(request, sizeof(request), 1);
	int fd = new_socket(address, nonblocking ? SOCK_NONBLOCK : 0);
	double start = now_ms();
	if (connect(fd, address->ai_addr, address->ai_addrlen) != 0 &&
	    !(nonblocking && errno == EINPROGRESS))
		fail_errno("connect");
	freeaddrinfo(address);
	if (nonblocking) {
		size_t sent = 0;
		while (sent < sizeof(request)) {
			ssize_t n = write(fd, request + sent, sizeof(request) - sent);
			if (n > 0)
				sent += (size_t)n;
			else if (n < 0 && errno == EAGAIN)
				wait_for(fd, POLLOUT);
			else if (errno != EINTR)
				fail_errno("write of the request");
		}
	} else if (strcmp(mode_name, "read") == 0) {
		write_all(fd, request, sizeof(request), 0);
	}

	if (strcmp(mode_name, "read") == 0) {
		uint8_t buffer[READ_CHUNK];
		o.result = read(fd, buffer, sizeof(buffer));
		o.error = errno;
	} else if (strcmp(mode_name, "write") == 0) {
		write_until_failure(fd, &o);
	} else if (strcmp(mode_name, "poll") == 0) {
		wait_in_poll(fd, &o);
	} else {
		wait_in_epoll(fd, &o);
	}
	print_outcome(&o, start);
	close(fd);
	return 0;
}

/* Wait until fd is reported writable (or in error) by the call the mode names. */
static void wait_writable_by(int fd, int ep)
{
	int n;

	do {
		if (strcmp(mode_name, "fill-poll") == 0) {
			struct pollfd p = { .fd = fd, .events = POLLOUT };
			n = poll(&p, 1, STALL_MS);
		} else if (strcmp(mode_name, "fill-select") == 0) {
			fd_set w;
			struct timeval t = { .tv_sec = STALL_MS / 1000 };
			FD_ZERO(&w);
			FD_SET(fd, &w);
			n = select(fd + 1, NULL, &w, NULL, &t);
		} else {
			struct epoll_event ready;
			n = epoll_wait(ep, &ready, 1, STALL_MS);
		}
	} while (n < 0 && errno == EINTR);
	if (n < 0)
		fail_errno(mode_name);
	if (n == 0)
		fail("%s: not woken within %d ms", mode_name, STALL_MS);
}

static int run_fill(const char *host, const char *port)
{
	struct addrinfo *address = resolve(host, port);
	struct epoll_event interest = { .events = EPOLLOUT };
	struct outcome o = { 0 };
	uint8_t piece[16384];
	int fd = new_socket(address, SOCK_NONBLOCK), ep = -1;
	double start = now_ms();

	fill_pattern(piece, sizeof(piece), 3);
	if (connect(fd, address->ai_addr, address->ai_addrlen) != 0 && errno != EINPROGRESS)
		fail_errno("connect");
	freeaddrinfo(address);
	if (strcmp(mode_name, "fill-epoll") == 0) {
		interest.data.fd = fd;
		if ((ep = epoll_create1(EPOLL_CLOEXEC)) < 0 ||
		    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &interest) != 0)
			fail_errno("epoll");
	}
	for (;;) {
		wait_writable_by(fd, ep);
		ssize_t n = write(fd, piece, sizeof(piece));
		if (n < 0 && errno == EAGAIN) {
			o.wakeups++;
			continue;
		}
		if (n < 0 && errno != EINTR) {
			o.result = -1;
			o.error = errno;
			break;
		}
		/* Writes that fit are what the shim holds until the handshake: keep filling. */
		while (n > 0)
			n = write(fd, piece, sizeof(piece));
		if (n < 0 && errno != EAGAIN && errno != EINTR) {
			o.result = -1;
			o.error = errno;
			break;
		}
	}
	print_outcome(&o, start);
	if (ep >= 0)
		close(ep);
	close(fd);
	return 0;
}

static int is_one_of(const char *word, const char *const *list)
{
	for (; *list != NULL; list++)
		if (strcmp(word, *list) == 0)
			return 1;
	return 0;
}

int main(int argc, char **argv)
{
	static const char *const shapes[] = { "one", "two", "more", "cork", "eor", NULL };
	static const char *const waits[] = { "read", "write", "poll", "epoll", NULL };
	static const char *const fills[] = { "fill-poll", "fill-select", "fill-epoll", NULL };

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc < 4) {
		fprintf(stderr, "usage: ff_client one|two|more|cork HOST PORT REPEAT\n"
		                "       ff_client nbwrite HOST PORT SIZE\n"
		                "       ff_client read|write|poll|epoll HOST PORT\n"
		                "       ff_client fill-poll|fill-select|fill-epoll HOST PORT\n");
		return 2;
	}
	mode_name = argv[1];
	signal(SIGALRM, on_alarm);
	/* A write into a dead connection must come back as EPIPE, not kill us. */
	signal(SIGPIPE, SIG_IGN);
	alarm(RUN_SECONDS);
	if (is_one_of(mode_name, shapes) && argc == 5)
		return run_shape(argv[2], argv[3], atoi(argv[4]));
	if ((strcmp(mode_name, "nbwrite") == 0 || strcmp(mode_name, "nbwrite-epoll") == 0) && argc == 5)
		return run_nbwrite(argv[2], argv[3], strtol(argv[4], NULL, 10));
	if (is_one_of(mode_name, waits) && argc == 4)
		return run_wait(argv[2], argv[3]);
	if (is_one_of(mode_name, fills) && argc == 4)
		return run_fill(argv[2], argv[3]);
	fail("unknown mode or wrong number of arguments");
}
