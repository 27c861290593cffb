/*
 * fc_server: a plain TCP server for the accept-shim half of the
 * fail-closed matrix.  Like fc_client it knows nothing about noiseshim:
 * the matrix runs it under the accept shim, and every way it gets at a
 * connection (accept or accept4, then a copy, a child, an exec) and every
 * way it reads must see only what a Noise client sent, never a plaintext
 * client's bytes.
 *
 * usage: fc_server [--accept4] [--bind ADDR] [--listen-fd N] READ ORIGIN PORT LOGFILE
 *        fc_server prelisten PRELOAD [--accept4] [--bind ADDR] READ ORIGIN PORT LOGFILE
 *        fc_server serve-fd RFD WFD READ LOGFILE
 *
 * It listens on ADDR (default 127.0.0.1) port PORT, prints "listening
 * PORT", and for each connection reads once with READ and answers
 * "ANSWER".  Every byte it reads is appended to LOGFILE.  If listen()
 * fails it prints "errno=NAME (where: listen)" and exits 11.
 *
 *   prelisten  listens without any preload, then execs the first form with
 *              LD_PRELOAD=PRELOAD on the inherited listener (the way a
 *              socket-activated server starts)
 *   serve-fd   what the exec origins run: serve RFD (reading) and WFD
 *
 * READ: read recv readv recvmsg recvmmsg splice
 * ORIGIN: direct dup dup2-stdio fork exec-keep exec-strip inetd-exec
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

extern char **environ;

enum {
	READ_MAX = 4096,  /* one read of a request */
	LISTEN_BACKLOG = 64,
	FD_TEXT_MAX = 16,
	EXIT_SETUP = 2,
	EXIT_ERRNO = 11,
};

static const char answer[] = "ANSWER";

static const char *const read_names[] = { "read", "recv", "readv", "recvmsg", "recvmmsg", "splice" };
static const char *const origin_names[] = {
	"direct", "dup", "dup2-stdio", "fork", "exec-keep", "exec-strip", "inetd-exec",
};

struct server {
	bool use_accept4;
	const char *bind_addr;
	int listen_fd;
	const char *read_method;
	const char *origin;
	const char *port;
	const char *log_path;
};

static void die_errno(const char *call) __attribute__((noreturn));
static void die_errno(const char *call)
{
	const char *name = strerrorname_np(errno);

	printf("errno=%s (where: %s)\n", name ? name : "unknown", call);
	fflush(stdout);
	exit(EXIT_ERRNO);
}

static void report_errno(const char *call)
{
	const char *name = strerrorname_np(errno);

	fprintf(stderr, "fc_server[%d]: errno=%s (where: %s)\n", (int)getpid(), name ? name : "unknown",
		call);
}

static bool name_in(const char *name, const char *const *names, size_t count)
{
	for (size_t i = 0; i < count; i++)
		if (strcmp(name, names[i]) == 0)
			return true;
	return false;
}

static ssize_t read_by_splice(int fd, char *buf, size_t len)
{
	int pipe_fds[2];
	ssize_t moved, got = -1;
	int saved;

	if (pipe(pipe_fds) < 0)
		return -1;
	moved = splice(fd, NULL, pipe_fds[1], NULL, len, 0);
	saved = errno;
	if (moved > 0)
		got = read(pipe_fds[0], buf, (size_t)moved);
	else
		got = moved;
	close(pipe_fds[0]);
	close(pipe_fds[1]);
	errno = saved;
	return got;
}

/* One read of up to LEN bytes with the named call. */
static ssize_t read_once(int fd, const char *method, char *buf, size_t len)
{
	struct iovec iov = { .iov_base = buf, .iov_len = len };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
	struct mmsghdr mmsg = { .msg_hdr = msg };

	if (strcmp(method, "read") == 0)
		return read(fd, buf, len);
	if (strcmp(method, "recv") == 0)
		return recv(fd, buf, len, 0);
	if (strcmp(method, "readv") == 0)
		return readv(fd, &iov, 1);
	if (strcmp(method, "recvmsg") == 0)
		return recvmsg(fd, &msg, 0);
	if (strcmp(method, "recvmmsg") == 0) {
		int n = recvmmsg(fd, &mmsg, 1, 0, NULL);
		return n < 0 ? -1 : (ssize_t)mmsg.msg_len;
	}
	return read_by_splice(fd, buf, len);
}

static void append_to_log(const char *path, const char *bytes, size_t len)
{
	int fd = open(path, O_WRONLY | O_APPEND | O_CREAT, 0644);

	if (fd < 0 || write(fd, bytes, len) != (ssize_t)len)
		report_errno(path);
	if (fd >= 0)
		close(fd);
}

/* Reads once, logs what came, answers; a failed read answers nothing. */
static void serve(int rfd, int wfd, const char *method, const char *log_path)
{
	char buf[READ_MAX];
	ssize_t got = read_once(rfd, method, buf, sizeof(buf));

	if (got < 0) {
		report_errno(method);
	} else if (got > 0) {
		append_to_log(log_path, buf, (size_t)got);
		if (write(wfd, answer, strlen(answer)) != (ssize_t)strlen(answer))
			report_errno("write");
	}
	close(rfd);
	if (wfd != rfd)
		close(wfd);
}

static const char *self_path(void)
{
	static char path[4096];
	ssize_t n = readlink("/proc/self/exe", path, sizeof(path) - 1);

	if (n < 0) {
		report_errno("readlink /proc/self/exe");
		exit(EXIT_SETUP);
	}
	path[n] = '\0';
	return path;
}

static char **environment_without_preload(void)
{
	size_t count = 0, kept = 0;

	while (environ[count] != NULL)
		count++;
	char **envp = calloc(count + 1, sizeof(*envp));
	if (envp == NULL)
		exit(EXIT_SETUP);
	for (size_t i = 0; i < count; i++)
		if (strncmp(environ[i], "LD_PRELOAD=", strlen("LD_PRELOAD=")) != 0)
			envp[kept++] = environ[i];
	return envp;
}

/* In a child: exec "serve-fd RFD WFD READ LOG", environment kept or stripped. */
static void exec_serve_fd(int rfd, int wfd, const struct server *s, bool strip)
{
	char rfd_text[FD_TEXT_MAX], wfd_text[FD_TEXT_MAX];
	const char *path = self_path();

	snprintf(rfd_text, sizeof(rfd_text), "%d", rfd);
	snprintf(wfd_text, sizeof(wfd_text), "%d", wfd);
	char *argv[] = { (char *)path, "serve-fd", rfd_text, wfd_text, (char *)s->read_method,
			 (char *)s->log_path, NULL };
	execve(path, argv, strip ? environment_without_preload() : environ);
	report_errno("execve");
	_exit(EXIT_SETUP);
}

/* inetd's way: the connection becomes the child's stdin and stdout. */
static void move_to_stdio(int conn)
{
	if (dup2(conn, STDIN_FILENO) < 0 || dup2(conn, STDOUT_FILENO) < 0) {
		report_errno("dup2");
		_exit(EXIT_ERRNO);
	}
	close(conn);
}

static void handle_connection(int conn, const struct server *s)
{
	const char *origin = s->origin;

	if (strcmp(origin, "direct") == 0) {
		serve(conn, conn, s->read_method, s->log_path);
		return;
	}
	if (strcmp(origin, "dup") == 0) {
		int copy = dup(conn);
		if (copy < 0) {
			report_errno("dup");
			close(conn);
			return;
		}
		close(conn);
		serve(copy, copy, s->read_method, s->log_path);
		return;
	}
	fflush(stdout);
	pid_t pid = fork();
	if (pid < 0) {
		report_errno("fork");
		close(conn);
		return;
	}
	if (pid > 0) {
		close(conn);
		return;
	}
	close(s->listen_fd);
	if (strcmp(origin, "dup2-stdio") == 0) {
		move_to_stdio(conn);
		serve(STDIN_FILENO, STDOUT_FILENO, s->read_method, s->log_path);
	} else if (strcmp(origin, "fork") == 0) {
		serve(conn, conn, s->read_method, s->log_path);
	} else if (strcmp(origin, "exec-keep") == 0) {
		exec_serve_fd(conn, conn, s, false);
	} else if (strcmp(origin, "exec-strip") == 0) {
		exec_serve_fd(conn, conn, s, true);
	} else {
		move_to_stdio(conn);
		exec_serve_fd(STDIN_FILENO, STDOUT_FILENO, s, false);
	}
	_exit(0);
}

static int open_listener(const struct server *s)
{
	struct sockaddr_storage addr = { 0 };
	socklen_t addr_len;
	int port = atoi(s->port), on = 1, off = 0;
	struct sockaddr_in *v4 = (struct sockaddr_in *)&addr;
	struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&addr;

	if (inet_pton(AF_INET, s->bind_addr, &v4->sin_addr) == 1) {
		v4->sin_family = AF_INET;
		v4->sin_port = htons((uint16_t)port);
		addr_len = sizeof(*v4);
	} else if (inet_pton(AF_INET6, s->bind_addr, &v6->sin6_addr) == 1) {
		v6->sin6_family = AF_INET6;
		v6->sin6_port = htons((uint16_t)port);
		addr_len = sizeof(*v6);
	} else {
		fprintf(stderr, "fc_server: --bind %s is not a numeric address\n", s->bind_addr);
		exit(EXIT_SETUP);
	}
	int fd = socket(addr.ss_family, SOCK_STREAM, 0);
	if (fd < 0)
		die_errno("socket");
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
	/* The wildcard and v4-mapped binds take IPv4 clients too; [::1] stays v6. */
	if (addr.ss_family == AF_INET6 && !IN6_IS_ADDR_LOOPBACK(&v6->sin6_addr))
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof(off));
	if (bind(fd, (struct sockaddr *)&addr, addr_len) < 0)
		die_errno("bind");
	if (listen(fd, LISTEN_BACKLOG) < 0)
		die_errno("listen");
	return fd;
}

static void accept_forever(struct server *s) __attribute__((noreturn));
static void accept_forever(struct server *s)
{
	printf("listening %s\n", s->port);
	fflush(stdout);
	for (;;) {
		int conn = s->use_accept4 ? accept4(s->listen_fd, NULL, NULL, SOCK_CLOEXEC)
					  : accept(s->listen_fd, NULL, NULL);
		if (conn < 0) {
			int error = errno;

			report_errno(s->use_accept4 ? "accept4" : "accept");
			/* A listener that is gone will not come back; anything else is one connection. */
			if (error == EBADF || error == EINVAL || error == ENOTSOCK)
				exit(EXIT_ERRNO);
			continue;
		}
		/* accept4's SOCK_CLOEXEC would close the connection at exec. */
		if (s->use_accept4)
			fcntl(conn, F_SETFD, 0);
		handle_connection(conn, s);
	}
}

static void usage(void) __attribute__((noreturn));
static void usage(void)
{
	fprintf(stderr,
		"usage: fc_server [--accept4] [--bind ADDR] [--listen-fd N] READ ORIGIN PORT LOGFILE\n"
		"       fc_server prelisten PRELOAD [--accept4] [--bind ADDR] READ ORIGIN PORT LOGFILE\n"
		"       fc_server serve-fd RFD WFD READ LOGFILE\n");
	exit(EXIT_SETUP);
}

/* Listens here, unwrapped, then becomes the server under PRELOAD. */
static void listen_then_exec(struct server *s, const char *preload, char **rest) __attribute__((noreturn));
static void listen_then_exec(struct server *s, const char *preload, char **rest)
{
	char fd_text[FD_TEXT_MAX];
	char *argv[16];
	int n = 0;
	const char *path = self_path();

	snprintf(fd_text, sizeof(fd_text), "%d", open_listener(s));
	argv[n++] = (char *)path;
	argv[n++] = "--listen-fd";
	argv[n++] = fd_text;
	for (; *rest != NULL && n < 15; rest++)
		argv[n++] = *rest;
	argv[n] = NULL;
	setenv("LD_PRELOAD", preload, 1);
	execv(path, argv);
	die_errno("execv");
}

int main(int argc, char **argv)
{
	struct server s = { .bind_addr = "127.0.0.1", .listen_fd = -1 };
	const char *preload = NULL;
	int i = 1;

	signal(SIGCHLD, SIG_IGN); /* children are reaped by the kernel */
	signal(SIGPIPE, SIG_IGN);
	if (argc == 6 && strcmp(argv[1], "serve-fd") == 0) {
		if (!name_in(argv[4], read_names, sizeof(read_names) / sizeof(read_names[0])))
			usage();
		serve(atoi(argv[2]), atoi(argv[3]), argv[4], argv[5]);
		return 0;
	}
	if (argc > 2 && strcmp(argv[1], "prelisten") == 0) {
		preload = argv[2];
		i = 3;
	}
	char **rest = argv + i;
	for (; i < argc && strncmp(argv[i], "--", 2) == 0; i++) {
		if (strcmp(argv[i], "--accept4") == 0)
			s.use_accept4 = true;
		else if (strcmp(argv[i], "--bind") == 0 && i + 1 < argc)
			s.bind_addr = argv[++i];
		else if (strcmp(argv[i], "--listen-fd") == 0 && i + 1 < argc && preload == NULL)
			s.listen_fd = atoi(argv[++i]);
		else
			usage();
	}
	if (argc - i != 4 || !name_in(argv[i], read_names, sizeof(read_names) / sizeof(read_names[0])) ||
	    !name_in(argv[i + 1], origin_names, sizeof(origin_names) / sizeof(origin_names[0])))
		usage();
	s.read_method = argv[i];
	s.origin = argv[i + 1];
	s.port = argv[i + 2];
	s.log_path = argv[i + 3];
	if (preload != NULL)
		listen_then_exec(&s, preload, rest);
	if (s.listen_fd < 0)
		s.listen_fd = open_listener(&s);
	accept_forever(&s);
}
