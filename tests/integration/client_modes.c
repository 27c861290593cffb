/*
 * client_modes: one socket usage pattern per mode, against a TCP echo
 * server, written the way ordinary programs use sockets.  It knows nothing
 * about noiseshim on purpose: the client-shim integration tests run it
 * under LD_PRELOAD, where every call it makes must keep its plain-TCP
 * meaning.  Against a plaintext echo server it checks itself.
 *
 * usage: client_modes MODE HOST PORT
 *
 * Prints "ok MODE" and exits 0 on success; otherwise says on stderr what
 * went wrong and exits 1.  alarm() bounds every mode and every wait for
 * readiness has its own timeout, so a hang becomes a failure rather than
 * a stuck test run.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define KB 1024
#define MB (1024 * 1024)

enum {
	RUN_SECONDS = 30,  /* bound on a whole mode, enforced by alarm() */
	STALL_MS = 10000,  /* bound on any single wait for readiness */
	/* Event loops write in pieces that are not a multiple of what they
	 * read, and read less than an echo server returns at once, so that
	 * reads end in the middle of whatever unit the other side wrote. */
	LOOP_WRITE_CHUNK = 50000,
	LOOP_READ_CHUNK = 16 * KB,
};

static const char *mode_name = "?";
/* What the program is doing, named in the timeout message. */
static const char *volatile current_step = "starting";

static void write_to_stderr(const char *text)
{
	/* Called from a signal handler: only async-signal-safe functions, and
	 * nothing to do if stderr is gone. */
	if (write(STDERR_FILENO, text, strlen(text)) < 0)
		return;
}

static void on_alarm(int signal_number)
{
	write_to_stderr("client_modes ");
	write_to_stderr(mode_name);
	write_to_stderr(": timed out while: ");
	write_to_stderr(current_step);
	write_to_stderr("\n");
	_exit(1);
}

static void fail(const char *format, ...) __attribute__((noreturn, format(printf, 1, 2)));
static void fail(const char *format, ...)
{
	va_list args;

	fprintf(stderr, "client_modes %s: ", mode_name);
	va_start(args, format);
	vfprintf(stderr, format, args);
	va_end(args);
	fprintf(stderr, " (while: %s)\n", current_step);
	exit(1);
}

static void fail_errno(const char *call) __attribute__((noreturn));
static void fail_errno(const char *call)
{
	int error = errno;

	fail("%s: %s", call, strerror(error));
}

static void *checked_malloc(size_t size)
{
	void *memory = malloc(size);

	if (memory == NULL)
		fail("out of memory for %zu bytes", size);
	return memory;
}

/* SplitMix64 output, little-endian: well mixed, and easy to regenerate by
 * hand when a mismatch needs investigating. */
static uint8_t *make_pattern(size_t length, uint64_t seed)
{
	uint8_t *pattern = checked_malloc(length);
	uint64_t state = seed;

	for (size_t offset = 0; offset < length; offset += 8) {
		state += 0x9e3779b97f4a7c15;
		uint64_t word = state;
		word = (word ^ (word >> 30)) * 0xbf58476d1ce4e5b9;
		word = (word ^ (word >> 27)) * 0x94d049bb133111eb;
		word ^= word >> 31;
		for (size_t i = 0; i < 8 && offset + i < length; i++)
			pattern[offset + i] = (uint8_t)(word >> (8 * i));
	}
	return pattern;
}

/* One stream written to the echo server, and how much of it has come back;
 * each piece of echo is checked as it arrives. */
struct echo {
	const uint8_t *sent;
	size_t total;
	size_t written;
	size_t received;
};

static struct echo new_echo(size_t total, uint64_t seed)
{
	return (struct echo){ .sent = make_pattern(total, seed), .total = total };
}

static void free_echo(struct echo *echo)
{
	free((void *)echo->sent);
}

static void check_echoed(struct echo *echo, const uint8_t *data, size_t length)
{
	size_t outstanding = echo->total - echo->received;

	if (length > outstanding)
		fail("%zu bytes arrived beyond the %zu-byte echo", length - outstanding, echo->total);
	const uint8_t *expected = echo->sent + echo->received;
	if (memcmp(data, expected, length) != 0) {
		size_t at = 0;
		while (data[at] == expected[at])
			at++;
		fail("echo differs at byte %zu of %zu: sent 0x%02x, got 0x%02x",
		     echo->received + at, echo->total, expected[at], data[at]);
	}
	echo->received += length;
}

static void fail_connection_closed(const struct echo *echo) __attribute__((noreturn));
static void fail_connection_closed(const struct echo *echo)
{
	fail("connection closed after %zu of %zu echoed bytes", echo->received, echo->total);
}

/* How the socket is made non-blocking, if it is: the ways programs do it
 * differ, and a wrapper must notice each of them. */
enum socket_setup {
	SETUP_BLOCKING,
	SETUP_SOCK_NONBLOCK,    /* socket(SOCK_NONBLOCK), as libuv does */
	SETUP_FCNTL_NONBLOCK,   /* fcntl(O_NONBLOCK) before connect, as curl does */
};

/* Connects to the first address HOST resolves to.  A non-blocking connect
 * may still be in progress on return; callers find out from writability. */
static int connect_to(const char *host, const char *port, enum socket_setup setup)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV };
	struct addrinfo *addresses;
	int status = getaddrinfo(host, port, &hints, &addresses);

	if (status != 0)
		fail("%s port %s: %s", host, port, gai_strerror(status));
	int type = SOCK_STREAM | SOCK_CLOEXEC | (setup == SETUP_SOCK_NONBLOCK ? SOCK_NONBLOCK : 0);
	int fd = socket(addresses->ai_family, type, 0);
	if (fd < 0)
		fail_errno("socket");
	if (setup == SETUP_FCNTL_NONBLOCK) {
		int flags = fcntl(fd, F_GETFL);
		if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0)
			fail_errno("fcntl O_NONBLOCK");
	}
	current_step = "connecting";
	if (connect(fd, addresses->ai_addr, addresses->ai_addrlen) < 0 &&
	    !(setup != SETUP_BLOCKING && errno == EINPROGRESS))
		fail_errno("connect");
	freeaddrinfo(addresses);
	return fd;
}

static void fail_with_socket_error(int fd, const char *context) __attribute__((noreturn));
static void fail_with_socket_error(int fd, const char *context)
{
	int error = 0;
	socklen_t length = sizeof error;

	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length) < 0)
		fail_errno("getsockopt SO_ERROR");
	fail("%s: %s", context, error ? strerror(error) : "no SO_ERROR pending");
}

/* A non-blocking connect has finished once the socket is writable; SO_ERROR
 * says whether it succeeded. */
static void check_connected(int fd)
{
	int error = 0;
	socklen_t length = sizeof error;

	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length) < 0)
		fail_errno("getsockopt SO_ERROR");
	if (error != 0)
		fail("connect: %s", strerror(error));
}

/* poll() for EVENTS, failing after the stall timeout; returns the events
 * that came. */
static short poll_until(int fd, short events)
{
	struct pollfd watched = { .fd = fd, .events = events };
	int ready;

	do
		ready = poll(&watched, 1, STALL_MS);
	while (ready < 0 && errno == EINTR);
	if (ready < 0)
		fail_errno("poll");
	if (ready == 0)
		fail("nothing happened for %d s", STALL_MS / 1000);
	if (watched.revents & POLLNVAL)
		fail("poll: fd %d is not open", fd);
	return watched.revents;
}

static void write_all(int fd, const uint8_t *data, size_t length)
{
	while (length > 0) {
		ssize_t written = write(fd, data, length);
		if (written < 0 && errno == EINTR)
			continue;
		if (written < 0)
			fail_errno("write");
		if (written == 0)
			fail("write returned 0 for %zu bytes", length);
		data += written;
		length -= (size_t)written;
	}
}

/* Reads the whole echo of what echo->sent holds; blocking fds only. */
static void read_echo(int fd, struct echo *echo)
{
	uint8_t buffer[16 * KB];

	while (echo->received < echo->total) {
		size_t wanted = echo->total - echo->received;
		ssize_t got = read(fd, buffer, wanted < sizeof buffer ? wanted : sizeof buffer);
		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0)
			fail_errno("read");
		if (got == 0)
			fail_connection_closed(echo);
		check_echoed(echo, buffer, (size_t)got);
	}
}

/* Writes LENGTH bytes, then reads their echo back; blocking fds only.  The
 * sizes used stay well inside what loopback socket buffers hold, so
 * writing everything before reading cannot deadlock. */
static void echo_round(int fd, size_t length, uint64_t seed)
{
	struct echo echo = new_echo(length, seed);

	write_all(fd, echo.sent, echo.total);
	read_echo(fd, &echo);
	free_echo(&echo);
}

/* After shutdown(SHUT_WR) the echo server finishes and closes, so the
 * stream must end exactly where the echo did: nothing repeated, nothing
 * left behind. */
static void expect_end_of_stream(int fd)
{
	uint8_t extra[256];

	current_step = "shutdown(SHUT_WR), waiting for the end of the stream";
	if (shutdown(fd, SHUT_WR) < 0)
		fail_errno("shutdown");
	for (;;) {
		poll_until(fd, POLLIN);
		ssize_t got = read(fd, extra, sizeof extra);
		if (got == 0)
			return;
		if (got > 0)
			fail("%zd bytes after the complete echo", got);
		if (errno != EAGAIN && errno != EINTR)
			fail_errno("read at the end of the stream");
	}
}

/* Non-blocking I/O steps: each returns whether it moved any bytes; false
 * means EAGAIN or nothing left to do. */
static bool write_some(int fd, struct echo *echo, size_t max_chunk)
{
	size_t remaining = echo->total - echo->written;

	if (remaining == 0)
		return false;
	ssize_t written = write(fd, echo->sent + echo->written,
				remaining < max_chunk ? remaining : max_chunk);
	if (written < 0) {
		if (errno == EAGAIN || errno == EINTR)
			return false;
		fail_errno("write");
	}
	if (written == 0)
		fail("write returned 0 with %zu bytes to write", remaining);
	if ((size_t)written > remaining)
		fail("write reports %zd bytes written, more than the %zu asked for", written, remaining);
	echo->written += (size_t)written;
	return true;
}

static bool read_some(int fd, struct echo *echo, uint8_t *buffer, size_t size)
{
	ssize_t got = read(fd, buffer, size);

	if (got < 0) {
		if (errno == EAGAIN || errno == EINTR)
			return false;
		fail_errno("read");
	}
	if (got == 0)
		fail_connection_closed(echo);
	check_echoed(echo, buffer, (size_t)got);
	return true;
}

/* Reads until EAGAIN or the whole echo is in. */
static void drain_echo(int fd, struct echo *echo, uint8_t *buffer, size_t size)
{
	while (echo->received < echo->total && read_some(fd, echo, buffer, size))
		continue;
}

/* What a wait reports, whichever mechanism made it. */
enum { READY_IN = 1, READY_OUT = 2, READY_ERROR = 4 };

enum waiter_kind { WAIT_EPOLL_LEVEL, WAIT_EPOLL_EDGE_ONESHOT, WAIT_POLL, WAIT_SELECT };

struct waiter {
	enum waiter_kind kind;
	int epoll_fd;
	/* Events fd is registered for in epoll_fd; 0 until it is added. */
	uint32_t registered_events;
};

static unsigned wait_with_epoll(struct waiter *waiter, int fd, bool want_write)
{
	bool oneshot = waiter->kind == WAIT_EPOLL_EDGE_ONESHOT;
	uint32_t events = EPOLLIN | (want_write ? EPOLLOUT : 0) | (oneshot ? EPOLLET | EPOLLONESHOT : 0);
	struct epoll_event interest = { .events = events, .data.fd = fd };

	if (waiter->registered_events == 0) {
		if (epoll_ctl(waiter->epoll_fd, EPOLL_CTL_ADD, fd, &interest) < 0)
			fail_errno("epoll_ctl ADD");
	} else if (oneshot || events != waiter->registered_events) {
		/* A one-shot registration is disarmed by every event it reports. */
		if (epoll_ctl(waiter->epoll_fd, EPOLL_CTL_MOD, fd, &interest) < 0)
			fail_errno("epoll_ctl MOD");
	}
	waiter->registered_events = events;

	struct epoll_event event;
	int ready;
	do
		ready = epoll_wait(waiter->epoll_fd, &event, 1, STALL_MS);
	while (ready < 0 && errno == EINTR);
	if (ready < 0)
		fail_errno("epoll_wait");
	if (ready == 0)
		return 0;
	if (event.data.fd != fd)
		fail("epoll_wait reported fd %d, only %d is registered", event.data.fd, fd);
	return (event.events & EPOLLIN ? READY_IN : 0) | (event.events & EPOLLOUT ? READY_OUT : 0) |
	       (event.events & EPOLLERR ? READY_ERROR : 0);
}

static unsigned wait_with_poll(int fd, bool want_write)
{
	struct pollfd watched = { .fd = fd, .events = POLLIN | (want_write ? POLLOUT : 0) };
	int ready;

	do
		ready = poll(&watched, 1, STALL_MS);
	while (ready < 0 && errno == EINTR);
	if (ready < 0)
		fail_errno("poll");
	if (watched.revents & POLLNVAL)
		fail("poll: fd %d is not open", fd);
	return (watched.revents & POLLIN ? READY_IN : 0) | (watched.revents & POLLOUT ? READY_OUT : 0) |
	       (watched.revents & POLLERR ? READY_ERROR : 0);
}

static unsigned wait_with_select(int fd, bool want_write)
{
	fd_set readable, writable;
	int ready;

	if (fd >= FD_SETSIZE)
		fail("fd %d does not fit in an fd_set", fd);
	do {
		struct timeval timeout = { .tv_sec = STALL_MS / 1000 };
		FD_ZERO(&readable);
		FD_ZERO(&writable);
		FD_SET(fd, &readable);
		if (want_write)
			FD_SET(fd, &writable);
		ready = select(fd + 1, &readable, &writable, NULL, &timeout);
	} while (ready < 0 && errno == EINTR);
	if (ready < 0)
		fail_errno("select");
	if (ready == 0)
		return 0;
	return (FD_ISSET(fd, &readable) ? READY_IN : 0) | (FD_ISSET(fd, &writable) ? READY_OUT : 0);
}

/* Waits for fd with the waiter's mechanism; returns READY_* bits, or 0
 * when nothing happened within the stall timeout. */
static unsigned wait_ready(struct waiter *waiter, int fd, bool want_write)
{
	switch (waiter->kind) {
	case WAIT_EPOLL_LEVEL:
	case WAIT_EPOLL_EDGE_ONESHOT:
		return wait_with_epoll(waiter, fd, want_write);
	case WAIT_POLL:
		return wait_with_poll(fd, want_write);
	case WAIT_SELECT:
		return wait_with_select(fd, want_write);
	}
	fail("unknown waiter kind %d", waiter->kind);
}

/* Sends 1 MB and reads its echo concurrently from one event loop, as a
 * single-threaded server or client library does.  Level-triggered loops do
 * one write or one read per readiness report, so a read that leaves data
 * behind relies on the fd staying readable; edge-triggered ones must go on
 * in each direction until EAGAIN, since readiness is reported once per
 * change. */
static void echo_with_event_loop(int fd, struct waiter *waiter, uint64_t seed)
{
	bool until_eagain = waiter->kind == WAIT_EPOLL_EDGE_ONESHOT;
	struct echo echo = new_echo(MB, seed);
	uint8_t *buffer = checked_malloc(LOOP_READ_CHUNK);
	bool connected = false;

	current_step = "event loop: writing 1 MB and reading its echo";
	while (echo.received < echo.total) {
		unsigned ready = wait_ready(waiter, fd, echo.written < echo.total);
		if (ready == 0)
			fail("no readiness for %d s: wrote %zu of %zu bytes, %zu echoed",
			     STALL_MS / 1000, echo.written, echo.total, echo.received);
		if (ready & READY_ERROR)
			fail_with_socket_error(fd, "error event");
		if (ready & READY_OUT) {
			if (!connected) {
				check_connected(fd);
				connected = true;
			}
			while (write_some(fd, &echo, LOOP_WRITE_CHUNK) && until_eagain)
				continue;
		}
		if (ready & READY_IN) {
			if (until_eagain)
				drain_echo(fd, &echo, buffer, LOOP_READ_CHUNK);
			else
				read_some(fd, &echo, buffer, LOOP_READ_CHUNK);
		}
	}
	free(buffer);
	free_echo(&echo);
}

static void run_epoll(const char *host, const char *port, enum waiter_kind kind)
{
	int fd = connect_to(host, port, SETUP_SOCK_NONBLOCK);
	struct waiter waiter = { .kind = kind, .epoll_fd = epoll_create1(EPOLL_CLOEXEC) };

	if (waiter.epoll_fd < 0)
		fail_errno("epoll_create1");
	echo_with_event_loop(fd, &waiter, 1);
	close(waiter.epoll_fd);
	close(fd);
}

static void run_epoll_level(const char *host, const char *port)
{
	run_epoll(host, port, WAIT_EPOLL_LEVEL);
}

static void run_epoll_edge(const char *host, const char *port)
{
	run_epoll(host, port, WAIT_EPOLL_EDGE_ONESHOT);
}

static void run_poll(const char *host, const char *port)
{
	int fd = connect_to(host, port, SETUP_FCNTL_NONBLOCK);
	struct waiter waiter = { .kind = WAIT_POLL };

	echo_with_event_loop(fd, &waiter, 2);
	close(fd);
}

static void run_select(const char *host, const char *port)
{
	int fd = connect_to(host, port, SETUP_FCNTL_NONBLOCK);
	struct waiter waiter = { .kind = WAIT_SELECT };

	echo_with_event_loop(fd, &waiter, 3);
	close(fd);
}

static void run_read1(const char *host, const char *port)
{
	int fd = connect_to(host, port, SETUP_BLOCKING);
	struct echo echo = new_echo(100 * KB, 4);

	current_step = "writing 100 KB";
	write_all(fd, echo.sent, echo.total);
	current_step = "reading the echo with 1-byte read() calls";
	while (echo.received < echo.total) {
		uint8_t byte;
		ssize_t got = read(fd, &byte, 1);
		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0)
			fail_errno("read");
		if (got == 0)
			fail_connection_closed(&echo);
		check_echoed(&echo, &byte, 1);
	}
	free_echo(&echo);
	close(fd);
}

enum { WRITE_CALLS = 4, READ_CALLS = 4 };

/* Sends with the CALLth write-side function; vectored calls split the data
 * into several iovecs, one of them possibly empty. */
static ssize_t write_with(unsigned call, int fd, const uint8_t *data, size_t length)
{
	uint8_t *bytes = (uint8_t *)data;
	struct iovec thirds[3] = {
		{ bytes, length / 3 },
		{ bytes + length / 3, length / 3 },
		{ bytes + 2 * (length / 3), length - 2 * (length / 3) },
	};
	struct iovec halves[2] = {
		{ bytes, length / 2 },
		{ bytes + length / 2, length - length / 2 },
	};
	struct msghdr message = { .msg_iov = halves, .msg_iovlen = 2 };

	switch (call) {
	case 0:
		return write(fd, data, length);
	case 1:
		return send(fd, data, length, 0);
	case 2:
		return writev(fd, thirds, 3);
	default:
		return sendmsg(fd, &message, 0);
	}
}

static const char *const write_call_names[WRITE_CALLS] = { "write", "send", "writev", "sendmsg" };

static ssize_t read_with(unsigned call, int fd, uint8_t *buffer, size_t size)
{
	struct iovec halves[2] = {
		{ buffer, size / 2 },
		{ buffer + size / 2, size - size / 2 },
	};
	struct msghdr message = { .msg_iov = halves, .msg_iovlen = 2 };

	switch (call) {
	case 0:
		return recv(fd, buffer, size, 0);
	case 1:
		return read(fd, buffer, size);
	case 2:
		return readv(fd, halves, 2);
	default:
		return recvmsg(fd, &message, 0);
	}
}

static const char *const read_call_names[READ_CALLS] = { "recv", "read", "readv", "recvmsg" };

/* Every write-side call with every write size, each batch read back with a
 * cycle of read-side calls and read sizes that runs across batches: reads
 * end inside, exactly at and beyond whatever unit the other side wrote. */
static void run_mixed_reads(const char *host, const char *port)
{
	static const size_t write_sizes[] = { 1, 7, 1000, 65535, 65536, 100000, 3 };
	static const size_t read_sizes[] = { 1, 7, 100, 65536, 3 };
	enum { WRITE_SIZES = sizeof write_sizes / sizeof write_sizes[0] };
	enum { READ_SIZES = sizeof read_sizes / sizeof read_sizes[0] };
	int fd = connect_to(host, port, SETUP_BLOCKING);
	uint8_t *buffer = checked_malloc(64 * KB);
	unsigned read_count = 0;

	for (unsigned batch = 0; batch < WRITE_SIZES * WRITE_CALLS; batch++) {
		unsigned write_call = batch % WRITE_CALLS;
		struct echo echo = new_echo(write_sizes[batch % WRITE_SIZES], 100 + batch);

		current_step = write_call_names[write_call];
		while (echo.written < echo.total) {
			ssize_t written = write_with(write_call, fd, echo.sent + echo.written,
						     echo.total - echo.written);
			if (written < 0 && errno == EINTR)
				continue;
			if (written <= 0)
				fail("%s of %zu bytes returned %zd: %s", write_call_names[write_call],
				     echo.total - echo.written, written, strerror(errno));
			echo.written += (size_t)written;
		}
		while (echo.received < echo.total) {
			unsigned read_call = read_count % READ_CALLS;
			size_t size = read_sizes[read_count % READ_SIZES];
			size_t outstanding = echo.total - echo.received;
			read_count++;
			current_step = read_call_names[read_call];
			/* Asking beyond this batch would block: nothing more has
			 * been sent. */
			ssize_t got = read_with(read_call, fd, buffer, size < outstanding ? size : outstanding);
			if (got < 0 && errno == EINTR)
				continue;
			if (got < 0)
				fail("%s: %s", read_call_names[read_call], strerror(errno));
			if (got == 0)
				fail_connection_closed(&echo);
			check_echoed(&echo, buffer, (size_t)got);
		}
		free_echo(&echo);
	}
	expect_end_of_stream(fd);
	free(buffer);
	close(fd);
}

/* One write() call per attempt for everything not yet written, against a
 * reader far slower than the writer: the calls come back short or with
 * EAGAIN, and the loop resumes from exactly what each call reported. */
static void run_bigwrite(const char *host, const char *port)
{
	/* Loopback send buffers grow past 1 MB on their own, which would take
	 * the whole write at once; a fixed small one makes writes come back
	 * short on every kernel. */
	int send_buffer_size = 64 * KB;
	int fd = connect_to(host, port, SETUP_BLOCKING);
	int nonblocking = 1;
	struct echo echo = new_echo(MB, 5);
	uint8_t *buffer = checked_malloc(LOOP_READ_CHUNK);
	size_t incomplete_writes = 0;

	if (setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &send_buffer_size, sizeof send_buffer_size) < 0)
		fail_errno("setsockopt SO_SNDBUF");
	if (ioctl(fd, FIONBIO, &nonblocking) < 0)
		fail_errno("ioctl FIONBIO");
	current_step = "writing 1 MB with write() against a slow reader";
	while (echo.written < echo.total) {
		size_t remaining = echo.total - echo.written;
		ssize_t written = write(fd, echo.sent + echo.written, remaining);
		if (written > 0) {
			if ((size_t)written > remaining)
				fail("write reports %zd bytes written, more than the %zu asked for",
				     written, remaining);
			echo.written += (size_t)written;
			if ((size_t)written < remaining)
				incomplete_writes++;
			continue;
		}
		if (written == 0)
			fail("write returned 0 with %zu bytes to write", remaining);
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN)
			fail_errno("write");
		incomplete_writes++;
		/* The echo server stops reading once its replies back up, so
		 * the echo has to be taken in while waiting for room. */
		short events = poll_until(fd, POLLOUT | POLLIN);
		if (events & POLLERR)
			fail_with_socket_error(fd, "poll reported an error");
		if (events & POLLIN)
			drain_echo(fd, &echo, buffer, LOOP_READ_CHUNK);
	}
	current_step = "reading the rest of the echo";
	while (echo.received < echo.total) {
		poll_until(fd, POLLIN);
		drain_echo(fd, &echo, buffer, LOOP_READ_CHUNK);
	}
	if (incomplete_writes == 0)
		fail("every write was taken whole: the reader was not slow enough to test short writes");
	expect_end_of_stream(fd);
	free(buffer);
	free_echo(&echo);
	close(fd);
}

struct duplex_writer {
	int fd;
	const struct echo *echo;
};

/* Writes in uneven chunks, then half-closes so that the reader sees where
 * the echo ends. */
static void *write_duplex(void *argument)
{
	static const size_t chunk_sizes[] = { 1000, 65536, 70001, 4096, 1, 131072 };
	enum { CHUNK_SIZES = sizeof chunk_sizes / sizeof chunk_sizes[0] };
	const struct duplex_writer *writer = argument;
	size_t offset = 0;

	for (unsigned chunk = 0; offset < writer->echo->total; chunk++) {
		size_t length = chunk_sizes[chunk % CHUNK_SIZES];
		if (length > writer->echo->total - offset)
			length = writer->echo->total - offset;
		write_all(writer->fd, writer->echo->sent + offset, length);
		offset += length;
	}
	if (shutdown(writer->fd, SHUT_WR) < 0)
		fail_errno("shutdown in the writing thread");
	return NULL;
}

static void run_duplex(const char *host, const char *port)
{
	int fd = connect_to(host, port, SETUP_BLOCKING);
	struct echo echo = new_echo(4 * MB, 6);
	struct duplex_writer writer = { .fd = fd, .echo = &echo };
	uint8_t *buffer = checked_malloc(64 * KB);
	pthread_t writing_thread;
	int error;

	current_step = "one thread writing 4 MB, another reading the echo";
	error = pthread_create(&writing_thread, NULL, write_duplex, &writer);
	if (error != 0)
		fail("pthread_create: %s", strerror(error));
	for (;;) {
		ssize_t got = read(fd, buffer, 64 * KB);
		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0)
			fail_errno("read in the reading thread");
		if (got == 0)
			break;
		check_echoed(&echo, buffer, (size_t)got);
	}
	if (echo.received != echo.total)
		fail_connection_closed(&echo);
	error = pthread_join(writing_thread, NULL);
	if (error != 0)
		fail("pthread_join: %s", strerror(error));
	free(buffer);
	free_echo(&echo);
	close(fd);
}

/* The connection reached through descriptors made by dup, dup2 and
 * F_DUPFD_CLOEXEC, with the original closed; then one descriptor is
 * replaced by /dev/null, which must leave the others working. */
static void run_dup2(const char *host, const char *port)
{
	enum { MOVED_FD = 100, CLOEXEC_COPY_MIN = 200 };
	int original = connect_to(host, port, SETUP_BLOCKING);

	current_step = "echo through the original fd";
	echo_round(original, 4 * KB, 20);

	int copy = dup(original);
	if (copy < 0)
		fail_errno("dup");
	current_step = "echo through a dup() copy";
	echo_round(copy, 64 * KB, 21);

	if (dup2(copy, MOVED_FD) != MOVED_FD)
		fail_errno("dup2 to fd 100");
	current_step = "echo through the dup2() copy at fd 100";
	echo_round(MOVED_FD, 64 * KB, 22);

	int cloexec_copy = fcntl(MOVED_FD, F_DUPFD_CLOEXEC, CLOEXEC_COPY_MIN);
	if (cloexec_copy < 0)
		fail_errno("fcntl F_DUPFD_CLOEXEC");
	current_step = "echo through an F_DUPFD_CLOEXEC copy";
	echo_round(cloexec_copy, 64 * KB, 23);

	if (close(original) < 0)
		fail_errno("close of the original fd");
	current_step = "echo through fd 100 after closing the original";
	echo_round(MOVED_FD, 64 * KB, 24);

	current_step = "dup2 of /dev/null over a copy of the connection";
	int null_fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
	if (null_fd < 0)
		fail_errno("open /dev/null");
	if (dup2(null_fd, copy) != copy)
		fail_errno("dup2 of /dev/null");
	close(null_fd);
	struct stat status;
	if (fstat(copy, &status) < 0)
		fail_errno("fstat");
	if (!S_ISCHR(status.st_mode))
		fail("fd %d is not a character device after dup2 of /dev/null", copy);
	if (write(copy, "/dev/null", 9) != 9)
		fail_errno("write to /dev/null");

	current_step = "echo through fd 100 after /dev/null replaced a copy";
	echo_round(MOVED_FD, 64 * KB, 25);
	current_step = "echo through the F_DUPFD_CLOEXEC copy after /dev/null replaced a copy";
	echo_round(cloexec_copy, 4 * KB, 26);
	close(copy);
	close(cloexec_copy);
	close(MOVED_FD);
}

/* The parent hands an established connection to a child and keeps its
 * hands off, as fork-per-task programs do. */
static void run_fork(const char *host, const char *port)
{
	int fd = connect_to(host, port, SETUP_BLOCKING);

	current_step = "echo before fork";
	echo_round(fd, 1000, 30);
	fflush(NULL);
	pid_t child = fork();
	if (child < 0)
		fail_errno("fork");
	if (child == 0) {
		/* A pending alarm is not inherited. */
		alarm(RUN_SECONDS);
		mode_name = "fork (child)";
		current_step = "64 KB echo in the child";
		echo_round(fd, 64 * KB, 31);
		_exit(0);
	}
	if (close(fd) < 0)
		fail_errno("close in the parent");
	current_step = "waiting for the child";
	int status;
	while (waitpid(child, &status, 0) < 0)
		if (errno != EINTR)
			fail_errno("waitpid");
	if (WIFSIGNALED(status))
		fail("child killed by signal %d", WTERMSIG(status));
	if (WEXITSTATUS(status) != 0)
		fail("child exited with status %d", WEXITSTATUS(status));
}

/* A server-speaks-first protocol: the program only reads, so whatever sets
 * the connection up must not wait for the program to write. */
static void run_banner(const char *host, const char *port)
{
	static const char expected[] = "HELLO from gopeer\n";
	enum { BANNER_LENGTH = sizeof expected - 1, BANNER_WAIT_MS = 10000 };
	int fd = connect_to(host, port, SETUP_BLOCKING);
	char banner[BANNER_LENGTH];
	size_t have = 0;
	struct timespec start, now;

	current_step = "waiting for the server's banner without writing";
	clock_gettime(CLOCK_MONOTONIC, &start);
	while (have < BANNER_LENGTH && memchr(banner, '\n', have) == NULL) {
		clock_gettime(CLOCK_MONOTONIC, &now);
		long waited_ms = (now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000;
		if (waited_ms >= BANNER_WAIT_MS)
			break;
		struct pollfd watched = { .fd = fd, .events = POLLIN };
		int ready = poll(&watched, 1, (int)(BANNER_WAIT_MS - waited_ms));
		if (ready < 0 && errno != EINTR)
			fail_errno("poll");
		if (ready <= 0)
			continue;
		/* Never more than the banner: nothing else is expected. */
		ssize_t got = read(fd, banner + have, BANNER_LENGTH - have);
		if (got < 0 && errno != EINTR)
			fail_errno("read");
		if (got == 0)
			fail("connection closed after %zu bytes of the banner", have);
		if (got > 0)
			have += (size_t)got;
	}
	if (have != BANNER_LENGTH || memcmp(banner, expected, BANNER_LENGTH) != 0)
		fail("banner \"%.*s\" (%zu bytes) after %d s, want \"HELLO from gopeer\\n\"",
		     (int)have, banner, have, BANNER_WAIT_MS / 1000);
	close(fd);
}

/* FIONREAD must count bytes the program can actually read: reading exactly
 * the reported amount has to return exactly that much. */
static void run_fionread(const char *host, const char *port)
{
	int fd = connect_to(host, port, SETUP_BLOCKING);
	struct echo echo = new_echo(1000, 7);
	uint8_t buffer[1000];

	current_step = "writing 1000 bytes";
	write_all(fd, echo.sent, echo.total);
	current_step = "reading the echo by FIONREAD amounts";
	while (echo.received < echo.total) {
		poll_until(fd, POLLIN);
		int available;
		if (ioctl(fd, FIONREAD, &available) < 0)
			fail_errno("ioctl FIONREAD");
		size_t outstanding = echo.total - echo.received;
		if (available == 0) {
			/* Readable with nothing to read is also how the end of
			 * the stream or an error looks: one byte tells them apart. */
			ssize_t got = read(fd, buffer, 1);
			if (got == 0)
				fail_connection_closed(&echo);
			if (got < 0)
				fail_errno("read after FIONREAD reported 0");
		}
		if (available <= 0 || (size_t)available > outstanding)
			fail("readable, but FIONREAD reports %d with %zu echoed bytes outstanding",
			     available, outstanding);
		ssize_t got = read(fd, buffer, (size_t)available);
		if (got != available)
			fail("FIONREAD reported %d bytes, read returned %zd (%s)", available, got,
			     got < 0 ? strerror(errno) : "a different count");
		check_echoed(&echo, buffer, (size_t)got);
	}
	free_echo(&echo);
	close(fd);
}

struct mode {
	const char *name;
	void (*run)(const char *host, const char *port);
};

static const struct mode modes[] = {
	{ "epoll-lt", run_epoll_level },
	{ "epoll-et", run_epoll_edge },
	{ "poll", run_poll },
	{ "select", run_select },
	{ "read1", run_read1 },
	{ "mixed-reads", run_mixed_reads },
	{ "bigwrite", run_bigwrite },
	{ "duplex", run_duplex },
	{ "dup2", run_dup2 },
	{ "fork", run_fork },
	{ "banner", run_banner },
	{ "fionread", run_fionread },
};

static void usage(void)
{
	fprintf(stderr, "usage: client_modes MODE HOST PORT\nmodes:");
	for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++)
		fprintf(stderr, " %s", modes[i].name);
	fprintf(stderr, "\n");
	exit(2);
}

int main(int argc, char **argv)
{
	const struct mode *chosen = NULL;

	if (argc != 4)
		usage();
	for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++)
		if (strcmp(argv[1], modes[i].name) == 0)
			chosen = &modes[i];
	if (chosen == NULL)
		usage();
	mode_name = chosen->name;

	/* Errors on a closed connection must come back as EPIPE, to be
	 * reported, rather than kill the program silently. */
	signal(SIGPIPE, SIG_IGN);
	struct sigaction alarm_action = { .sa_handler = on_alarm };
	sigaction(SIGALRM, &alarm_action, NULL);
	alarm(RUN_SECONDS);

	chosen->run(argv[2], argv[3]);
	printf("ok %s\n", chosen->name);
	return 0;
}
