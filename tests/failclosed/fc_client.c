/*
 * fc_client: one way of getting bytes onto a TCP socket, crossed with one
 * way the socket's fd came to be, for the fail-closed matrix.  It knows
 * nothing about noiseshim on purpose: the matrix runs it under the client
 * shim against cached destinations, where every path must either carry
 * the marker through Noise or fail with an errno.
 *
 * usage: fc_client [OPTIONS] METHOD ORIGIN HOST PORT MARKER_HEX
 *        fc_client [OPTIONS] inherited FD METHOD MARKER_HEX OFFSET
 *
 * The second form is what the exec origins run: the new image writes the
 * marker from OFFSET on, on the fd it inherited.
 *
 * Options:
 *   --tfo-connect    set TCP_FASTOPEN_CONNECT on every socket before use
 *   --read           after writing, read the marker's echo and compare
 *   --pause MS       write the marker in two halves, MS milliseconds apart
 *   --plain-port P   fclose-fdopen: the uncached plain echo server at HOST:P
 *
 * ORIGIN says how the fd that writes came to be: connect; connect-on-dup
 * (connect a dup, write on the original); dup-before, dup2-before,
 * dup3-before, fdupfd-before, fdupfd-cloexec-before (copy, connect the
 * original, write on the copy); fork-before (the child connects and
 * writes); fork-before-parent (the parent connects, then the child
 * writes); fork-after; exec-keep and exec-keep-spawn (the new image writes
 * on the inherited fd, environment unchanged); exec-strip-execve,
 * exec-strip-spawn, exec-strip-execvp (the same without LD_PRELOAD);
 * exec-keep-execveat, exec-strip-execveat (execveat, relative to a directory fd);
 * fclose-fdopen (connect to HOST:PORT, close it inside libc, then a new
 * socket on the same number talks to --plain-port); failed-dup2-onto
 * (connect, then a dup2 onto the fd that fails); scm-rights (the connected fd
 * goes over a unix socket to this process and is written on as received);
 * scm-rights-unrelated (to a child forked before any socket existed, which
 * shares no state with its parent, and writes on it).
 *
 * The connect step is connect() for the plain methods; for the *-fastopen
 * methods it is the call itself (MSG_FASTOPEN with the address, on an
 * unconnected socket), carrying the marker's first half.  The write step
 * sends the rest with the method's variant for a connected socket.
 *
 * Prints exactly one result line on stdout and exits with its code:
 *   echo-ok                      0   the echo came back equal
 *   delivered                   10   every write succeeded (no --read)
 *   errno=NAME (where: CALL)    11   a socket call failed (", after exec"
 *                                     when it was the exec'd image's)
 *   echo-mismatch (...)         12   the echo differs from the marker
 *   eof (where: read)           13   the stream ended before the echo
 *   timeout (where: STEP)       14   RUN_SECONDS passed
 *   signal=NAME (where: child)  15   a child process was killed
 *   setup-error: ...             2   bad usage, or the test itself failed
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

enum {
	RUN_SECONDS = 12,      /* bound on one case, alarm() */
	MARKER_MAX = 256,      /* bytes of marker the command line may give */
	EXIT_ECHO_OK = 0,
	EXIT_SETUP = 2,
	EXIT_DELIVERED = 10,
	EXIT_ERRNO = 11,
	EXIT_MISMATCH = 12,
	EXIT_EOF = 13,
	EXIT_TIMEOUT = 14,
	EXIT_SIGNAL = 15,
	/* Fixed fd numbers for the dup2/dup3/F_DUPFD origins, far from the
	 * ones the program holds anyway. */
	DUP2_TARGET = 77,
	DUP3_TARGET = 78,
	DUPFD_FLOOR = 80,
	NEVER_OPEN_FD = 1000, /* the source of a dup2 that must fail */
	FD_TEXT_MAX = 16,
};

#ifndef TCP_FASTOPEN_CONNECT
#define TCP_FASTOPEN_CONNECT 30
#endif

enum method {
	M_WRITE, M_WRITEV, M_SEND, M_SENDTO, M_SENDTO_FASTOPEN, M_SENDMSG,
	M_SENDMSG_FASTOPEN, M_SENDMMSG, M_SENDMMSG_FASTOPEN, M_SENDFILE, M_SPLICE,
	METHOD_COUNT
};

static const char *const method_names[METHOD_COUNT] = {
	[M_WRITE] = "write", [M_WRITEV] = "writev", [M_SEND] = "send",
	[M_SENDTO] = "sendto", [M_SENDTO_FASTOPEN] = "sendto-fastopen",
	[M_SENDMSG] = "sendmsg", [M_SENDMSG_FASTOPEN] = "sendmsg-fastopen",
	[M_SENDMMSG] = "sendmmsg", [M_SENDMMSG_FASTOPEN] = "sendmmsg-fastopen",
	[M_SENDFILE] = "sendfile", [M_SPLICE] = "splice",
};

static const char *const origin_names[] = {
	"connect", "connect-on-dup", "dup-before", "dup2-before", "dup3-before",
	"fdupfd-before", "fdupfd-cloexec-before", "fork-before", "fork-before-parent",
	"fork-after", "exec-keep", "exec-keep-spawn", "exec-strip-execve",
	"exec-strip-spawn", "exec-strip-execvp", "exec-keep-execveat", "exec-strip-execveat",
	"fclose-fdopen", "failed-dup2-onto", "scm-rights", "scm-rights-unrelated",
};

struct options {
	bool tfo_connect;
	bool read_echo;
	int pause_ms;
	const char *plain_port;
};

/* What one case sends and where. */
struct job {
	struct options opt;
	enum method method;
	struct sockaddr_storage addr;
	socklen_t addr_len;
	unsigned char marker[MARKER_MAX];
	size_t marker_len;
	const char *marker_hex;
};

static const char *volatile current_step = "starting";
/* Set in the image an exec origin starts, so that its errors say so. */
static bool after_exec;

static void write_to_stdout(const char *text)
{
	/* From a signal handler: async-signal-safe calls only. */
	if (write(STDOUT_FILENO, text, strlen(text)) < 0)
		return;
}

static void on_alarm(int signal_number)
{
	write_to_stdout("timeout (where: ");
	write_to_stdout(current_step);
	write_to_stdout(")\n");
	_exit(EXIT_TIMEOUT);
}

static void finish(int code, const char *format, ...) __attribute__((noreturn, format(printf, 2, 3)));
static void finish(int code, const char *format, ...)
{
	va_list args;

	va_start(args, format);
	vprintf(format, args);
	va_end(args);
	putchar('\n');
	fflush(stdout);
	exit(code);
}

static void finish_errno(const char *call) __attribute__((noreturn));
static void finish_errno(const char *call)
{
	const char *name = strerrorname_np(errno);

	finish(EXIT_ERRNO, "errno=%s (where: %s%s)", name ? name : "unknown", call,
	       after_exec ? ", after exec" : "");
}

static void setup_error(const char *what) __attribute__((noreturn));
static void setup_error(const char *what)
{
	finish(EXIT_SETUP, "setup-error: %s: %s", what, strerror(errno));
}

static bool is_fastopen(enum method method)
{
	return method == M_SENDTO_FASTOPEN || method == M_SENDMSG_FASTOPEN ||
	       method == M_SENDMMSG_FASTOPEN;
}

/* The variant of METHOD for a socket that is already connected. */
static enum method connected_variant(enum method method)
{
	switch (method) {
	case M_SENDTO_FASTOPEN: return M_SENDTO;
	case M_SENDMSG_FASTOPEN: return M_SENDMSG;
	case M_SENDMMSG_FASTOPEN: return M_SENDMMSG;
	default: return method;
	}
}

static int method_by_name(const char *name)
{
	for (int i = 0; i < METHOD_COUNT; i++)
		if (strcmp(name, method_names[i]) == 0)
			return i;
	return -1;
}

static bool origin_known(const char *name)
{
	for (size_t i = 0; i < sizeof(origin_names) / sizeof(origin_names[0]); i++)
		if (strcmp(name, origin_names[i]) == 0)
			return true;
	return false;
}

static void sleep_ms(int ms)
{
	struct timespec t = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000 };

	while (nanosleep(&t, &t) < 0 && errno == EINTR)
		;
}

/* sendfile and splice send from a file and a pipe holding the bytes. */
static int temp_file_with(const unsigned char *bytes, size_t len)
{
	char path[] = "/tmp/fc_client.XXXXXX";
	int fd = mkstemp(path);

	if (fd < 0)
		setup_error("mkstemp");
	unlink(path);
	if (write(fd, bytes, len) != (ssize_t)len)
		setup_error("writing the temp file");
	return fd;
}

static ssize_t send_by_sendfile(int fd, const unsigned char *bytes, size_t len)
{
	int file = temp_file_with(bytes, len);
	off_t offset = 0;
	ssize_t sent = sendfile(fd, file, &offset, len);
	int saved = errno;

	close(file);
	errno = saved;
	return sent;
}

static ssize_t send_by_splice(int fd, const unsigned char *bytes, size_t len)
{
	int pipe_fds[2];
	ssize_t sent;
	int saved;

	if (pipe(pipe_fds) < 0)
		setup_error("pipe");
	if (write(pipe_fds[1], bytes, len) != (ssize_t)len)
		setup_error("filling the pipe");
	sent = splice(pipe_fds[0], NULL, fd, NULL, len, 0);
	saved = errno;
	close(pipe_fds[0]);
	close(pipe_fds[1]);
	errno = saved;
	return sent;
}

/* sendmmsg: the bytes in two messages.  With MSG_FASTOPEN, which the
 * kernel applies to every message, one message of two iovecs carrying the
 * address: a second message would be a second connect. */
static ssize_t send_by_sendmmsg(int fd, const unsigned char *bytes, size_t len,
				const struct job *job, bool fastopen)
{
	size_t half = len / 2;
	struct iovec iov[2] = {
		{ .iov_base = (void *)bytes, .iov_len = half },
		{ .iov_base = (void *)(bytes + half), .iov_len = len - half },
	};
	struct mmsghdr msgs[2] = {
		{ .msg_hdr = { .msg_iov = &iov[0], .msg_iovlen = 1 } },
		{ .msg_hdr = { .msg_iov = &iov[1], .msg_iovlen = 1 } },
	};
	unsigned int count = 2;

	if (fastopen) {
		msgs[0].msg_hdr.msg_iovlen = 2;
		msgs[0].msg_hdr.msg_name = (void *)&job->addr;
		msgs[0].msg_hdr.msg_namelen = job->addr_len;
		count = 1;
	}
	int sent = sendmmsg(fd, msgs, count, fastopen ? MSG_FASTOPEN : 0);
	if (sent < 0)
		return -1;
	ssize_t total = 0;
	for (int i = 0; i < sent; i++)
		total += msgs[i].msg_len;
	return total;
}

/* One call of METHOD; fastopen methods pass the address and MSG_FASTOPEN. */
static ssize_t send_once(int fd, enum method method, const unsigned char *bytes, size_t len,
			 const struct job *job)
{
	size_t half = len / 2;
	struct iovec iov[2] = {
		{ .iov_base = (void *)bytes, .iov_len = half },
		{ .iov_base = (void *)(bytes + half), .iov_len = len - half },
	};
	struct msghdr msg = { .msg_iov = iov, .msg_iovlen = 2 };

	switch (method) {
	case M_WRITE: return write(fd, bytes, len);
	case M_WRITEV: return writev(fd, iov, 2);
	case M_SEND: return send(fd, bytes, len, 0);
	case M_SENDTO: return sendto(fd, bytes, len, 0, NULL, 0);
	case M_SENDTO_FASTOPEN:
		return sendto(fd, bytes, len, MSG_FASTOPEN, (const struct sockaddr *)&job->addr,
			      job->addr_len);
	case M_SENDMSG: return sendmsg(fd, &msg, 0);
	case M_SENDMSG_FASTOPEN:
		msg.msg_name = (void *)&job->addr;
		msg.msg_namelen = job->addr_len;
		return sendmsg(fd, &msg, MSG_FASTOPEN);
	case M_SENDMMSG: return send_by_sendmmsg(fd, bytes, len, job, false);
	case M_SENDMMSG_FASTOPEN: return send_by_sendmmsg(fd, bytes, len, job, true);
	case M_SENDFILE: return send_by_sendfile(fd, bytes, len);
	case M_SPLICE: return send_by_splice(fd, bytes, len);
	default: break;
	}
	errno = EINVAL;
	return -1;
}

/* Sends all of BYTES: the first call with METHOD, any rest of a short
 * send with its connected variant. */
static void send_all(int fd, enum method method, const unsigned char *bytes, size_t len,
		     const struct job *job)
{
	size_t done = 0;

	while (done < len) {
		current_step = method_names[method];
		ssize_t sent = send_once(fd, method, bytes + done, len - done, job);
		if (sent < 0)
			finish_errno(method_names[method]);
		if (sent == 0)
			finish(EXIT_SETUP, "setup-error: %s sent 0 of %zu bytes", method_names[method],
			       len - done);
		done += (size_t)sent;
		method = connected_variant(method);
	}
}

static int new_socket(const struct job *job)
{
	current_step = "socket";
	int fd = socket(job->addr.ss_family, SOCK_STREAM, 0);
	if (fd < 0)
		finish_errno("socket");
	if (job->opt.tfo_connect) {
		int on = 1;
		current_step = "setsockopt(TCP_FASTOPEN_CONNECT)";
		if (setsockopt(fd, IPPROTO_TCP, TCP_FASTOPEN_CONNECT, &on, sizeof(on)) < 0)
			finish_errno("setsockopt(TCP_FASTOPEN_CONNECT)");
	}
	return fd;
}

/* Bytes the connect step sends: the first half for fastopen methods. */
static size_t connect_step_len(const struct job *job)
{
	return is_fastopen(job->method) ? job->marker_len / 2 : 0;
}

static void connect_step(int fd, const struct job *job)
{
	if (is_fastopen(job->method)) {
		send_all(fd, job->method, job->marker, connect_step_len(job), job);
		return;
	}
	current_step = "connect";
	if (connect(fd, (const struct sockaddr *)&job->addr, job->addr_len) < 0)
		finish_errno("connect");
}

static void read_echo(int fd, const struct job *job)
{
	unsigned char echo[MARKER_MAX];
	size_t got = 0;

	current_step = "read";
	while (got < job->marker_len) {
		ssize_t n = read(fd, echo + got, job->marker_len - got);
		if (n < 0)
			finish_errno("read");
		if (n == 0)
			finish(EXIT_EOF, "eof (where: read, after %zu of %zu bytes)", got, job->marker_len);
		got += (size_t)n;
	}
	if (memcmp(echo, job->marker, job->marker_len) != 0)
		finish(EXIT_MISMATCH, "echo-mismatch (%zu bytes differ from the marker)", got);
	finish(EXIT_ECHO_OK, "echo-ok");
}

/* Sends the marker from OFFSET on with the connected variant, in two
 * pieces when --pause asks for a second write; then reads or reports. */
static void write_step(int fd, const struct job *job, size_t offset)
{
	enum method method = connected_variant(job->method);
	size_t rest = job->marker_len - offset;

	if (job->opt.pause_ms > 0 && offset == 0 && rest > 1) {
		send_all(fd, method, job->marker, rest / 2, job);
		offset = rest / 2;
		rest -= offset;
	}
	if (job->opt.pause_ms > 0) {
		current_step = "pause before the second write";
		sleep_ms(job->opt.pause_ms);
	}
	send_all(fd, method, job->marker + offset, rest, job);
	if (job->opt.read_echo)
		read_echo(fd, job);
	finish(EXIT_DELIVERED, "delivered");
}

static void wait_child(pid_t pid) __attribute__((noreturn));
static void wait_child(pid_t pid)
{
	int status;

	current_step = "waiting for the child";
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			setup_error("waitpid");
	if (WIFEXITED(status))
		exit(WEXITSTATUS(status)); /* the child printed the result */
	finish(EXIT_SIGNAL, "signal=%s (where: child)", sigabbrev_np(WTERMSIG(status)));
}

static pid_t fork_or_die(void)
{
	fflush(stdout);
	pid_t pid = fork();
	if (pid < 0)
		setup_error("fork");
	if (pid == 0)
		alarm(RUN_SECONDS);
	return pid;
}

static const char *self_path(void)
{
	static char path[4096];
	ssize_t n = readlink("/proc/self/exe", path, sizeof(path) - 1);

	if (n < 0)
		setup_error("readlink /proc/self/exe");
	path[n] = '\0';
	return path;
}

/* argv for the new image: "inherited FD METHOD MARKER OFFSET" plus options. */
struct child_argv {
	char fd_text[FD_TEXT_MAX];
	char offset_text[FD_TEXT_MAX];
	char pause_text[FD_TEXT_MAX];
	char *argv[16];
};

static void build_child_argv(struct child_argv *c, const char *path, int fd, const struct job *job)
{
	int n = 0;

	snprintf(c->fd_text, sizeof(c->fd_text), "%d", fd);
	snprintf(c->offset_text, sizeof(c->offset_text), "%zu", connect_step_len(job));
	snprintf(c->pause_text, sizeof(c->pause_text), "%d", job->opt.pause_ms);
	c->argv[n++] = (char *)path;
	if (job->opt.read_echo)
		c->argv[n++] = "--read";
	c->argv[n++] = "--pause";
	c->argv[n++] = c->pause_text;
	c->argv[n++] = "inherited";
	c->argv[n++] = c->fd_text;
	c->argv[n++] = (char *)method_names[connected_variant(job->method)];
	c->argv[n++] = (char *)job->marker_hex;
	c->argv[n++] = c->offset_text;
	c->argv[n] = NULL;
}

/* environ without LD_PRELOAD: what a program that strips it passes on. */
static char **environment_without_preload(void)
{
	size_t count = 0, kept = 0;

	while (environ[count] != NULL)
		count++;
	char **envp = calloc(count + 1, sizeof(*envp));
	if (envp == NULL)
		setup_error("calloc");
	for (size_t i = 0; i < count; i++)
		if (strncmp(environ[i], "LD_PRELOAD=", strlen("LD_PRELOAD=")) != 0)
			envp[kept++] = environ[i];
	return envp;
}

static void exec_self(int fd, const struct job *job, bool strip) __attribute__((noreturn));
static void exec_self(int fd, const struct job *job, bool strip)
{
	struct child_argv c;
	const char *path = self_path();

	build_child_argv(&c, path, fd, job);
	fflush(stdout);
	current_step = "execve";
	execve(path, c.argv, strip ? environment_without_preload() : environ);
	finish_errno("execve");
}

/* execveat, with the program named relative to an fd of its directory. */
static void execveat_self(int fd, const struct job *job, bool strip) __attribute__((noreturn));
static void execveat_self(int fd, const struct job *job, bool strip)
{
	struct child_argv c;
	const char *path = self_path();
	const char *slash = strrchr(path, '/');
	char directory[4096];

	snprintf(directory, sizeof(directory), "%.*s", (int)(slash - path), path);
	int dirfd = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dirfd < 0)
		setup_error("open the program's directory");
	build_child_argv(&c, path, fd, job);
	fflush(stdout);
	current_step = "execveat";
	execveat(dirfd, slash + 1, c.argv, strip ? environment_without_preload() : environ, 0);
	finish_errno("execveat");
}

static void spawn_self(int fd, const struct job *job, bool strip) __attribute__((noreturn));
static void spawn_self(int fd, const struct job *job, bool strip)
{
	struct child_argv c;
	const char *path = self_path();
	pid_t pid;

	build_child_argv(&c, path, fd, job);
	fflush(stdout);
	current_step = "posix_spawn";
	int error = posix_spawn(&pid, path, NULL, NULL, c.argv,
				strip ? environment_without_preload() : environ);
	if (error != 0) {
		errno = error;
		finish_errno("posix_spawn");
	}
	wait_child(pid);
}

/* The way system()-like code starts a program: fork, change the
 * environment, execvp. */
static void fork_execvp_stripped(int fd, const struct job *job) __attribute__((noreturn));
static void fork_execvp_stripped(int fd, const struct job *job)
{
	struct child_argv c;
	const char *path = self_path();
	pid_t pid = fork_or_die();

	if (pid == 0) {
		build_child_argv(&c, path, fd, job);
		unsetenv("LD_PRELOAD");
		current_step = "execvp";
		execvp(path, c.argv);
		finish_errno("execvp");
	}
	wait_child(pid);
}

static int dup_or_die(int fd, const char *how)
{
	int copy;

	current_step = how;
	if (strcmp(how, "dup") == 0)
		copy = dup(fd);
	else if (strcmp(how, "dup2") == 0)
		copy = dup2(fd, DUP2_TARGET);
	else if (strcmp(how, "dup3") == 0)
		copy = dup3(fd, DUP3_TARGET, O_CLOEXEC);
	else if (strcmp(how, "F_DUPFD") == 0)
		copy = fcntl(fd, F_DUPFD, DUPFD_FLOOR);
	else
		copy = fcntl(fd, F_DUPFD_CLOEXEC, DUPFD_FLOOR);
	if (copy < 0)
		finish_errno(how);
	return copy;
}

static void resolve(const char *host, const char *port, struct job *job)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV };
	struct addrinfo *found;
	int error = getaddrinfo(host, port, &hints, &found);

	if (error != 0)
		finish(EXIT_SETUP, "setup-error: address %s port %s: %s", host, port, gai_strerror(error));
	memcpy(&job->addr, found->ai_addr, found->ai_addrlen);
	job->addr_len = found->ai_addrlen;
	freeaddrinfo(found);
}

/* fclose(fdopen()) closes the socket inside libc, where no wrapper sees
 * it; the next socket gets the same number and must be a fresh one. */
static void run_fclose_fdopen(const struct job *job, const char *host)
{
	int fd = new_socket(job);
	struct job plain = *job;

	connect_step(fd, job);
	FILE *stream = fdopen(fd, "r+");
	if (stream == NULL)
		setup_error("fdopen");
	fclose(stream);
	if (job->opt.plain_port == NULL)
		finish(EXIT_SETUP, "setup-error: fclose-fdopen needs --plain-port");
	resolve(host, job->opt.plain_port, &plain);
	int again = new_socket(&plain);
	if (again != fd) {
		/* Name what took the number: an fd opened behind the program's back. */
		char link[64], held[256] = "?";
		ssize_t n;

		snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
		if ((n = readlink(link, held, sizeof held - 1)) > 0)
			held[n] = '\0';
		finish(EXIT_SETUP, "setup-error: the new socket is fd %d, not %d, which is %s", again, fd,
		       held);
	}
	connect_step(again, &plain);
	write_step(again, &plain, connect_step_len(&plain));
}

/* A dup2 that fails (its source is not open) must leave the connected
 * socket it targets exactly as it was. */
static void run_failed_dup2_onto(int fd, const struct job *job)
{
	connect_step(fd, job);
	if (fcntl(NEVER_OPEN_FD, F_GETFD) >= 0)
		finish(EXIT_SETUP, "setup-error: fd %d is open", NEVER_OPEN_FD);
	current_step = "dup2 from a closed fd";
	if (dup2(NEVER_OPEN_FD, fd) >= 0 || errno != EBADF)
		finish(EXIT_SETUP, "setup-error: dup2(%d, %d) did not fail with EBADF", NEVER_OPEN_FD, fd);
	write_step(fd, job, connect_step_len(job));
}

/* Send fd over sock as SCM_RIGHTS. */
static void send_fd(int sock, int fd)
{
	char byte = 'f';
	struct iovec iov = { .iov_base = &byte, .iov_len = 1 };
	union { struct cmsghdr h; char space[CMSG_SPACE(sizeof(int))]; } control;
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.space,
			      .msg_controllen = sizeof(control.space) };
	struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);

	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(cm), &fd, sizeof(int));
	current_step = "sendmsg(SCM_RIGHTS)";
	if (sendmsg(sock, &msg, 0) != 1)
		setup_error("sendmsg(SCM_RIGHTS)");
}

/* The fd sent over sock, as received. */
static int recv_fd(int sock)
{
	char byte;
	struct iovec iov = { .iov_base = &byte, .iov_len = 1 };
	union { struct cmsghdr h; char space[CMSG_SPACE(sizeof(int))]; } control;
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.space,
			      .msg_controllen = sizeof(control.space) };
	struct cmsghdr *cm;
	int fd;

	current_step = "recvmsg(SCM_RIGHTS)";
	if (recvmsg(sock, &msg, 0) != 1 || (cm = CMSG_FIRSTHDR(&msg)) == NULL ||
	    cm->cmsg_type != SCM_RIGHTS)
		finish(EXIT_SETUP, "setup-error: no fd arrived over the unix socket");
	memcpy(&fd, CMSG_DATA(cm), sizeof(int));
	return fd;
}

/* Pass the connected fd over a unix socket, to this process or to an unrelated child. */
static void run_scm_rights(const struct job *job, bool unrelated)
{
	size_t offset = connect_step_len(job);
	int pair[2];
	pid_t pid = 0;

	if (socketpair(AF_UNIX, SOCK_STREAM, 0, pair) < 0)
		setup_error("socketpair");
	/* Forked before any TCP socket: the child shares nothing of the parent's sockets. */
	if (unrelated && (pid = fork_or_die()) == 0) {
		close(pair[0]);
		write_step(recv_fd(pair[1]), job, offset);
	}
	int fd = new_socket(job);
	connect_step(fd, job);
	send_fd(pair[0], fd);
	close(fd);
	if (unrelated)
		wait_child(pid);
	write_step(recv_fd(pair[1]), job, offset);
}

static void run_origin(const char *origin, struct job *job, const char *host)
{
	if (strncmp(origin, "scm-rights", 10) == 0)
		run_scm_rights(job, strcmp(origin, "scm-rights-unrelated") == 0);

	size_t offset = connect_step_len(job);
	int fd = new_socket(job);

	if (strcmp(origin, "connect") == 0) {
		connect_step(fd, job);
		write_step(fd, job, offset);
	} else if (strcmp(origin, "connect-on-dup") == 0) {
		int copy = dup_or_die(fd, "dup");
		connect_step(copy, job);
		write_step(fd, job, offset);
	} else if (strcmp(origin, "dup-before") == 0 || strcmp(origin, "dup2-before") == 0 ||
		   strcmp(origin, "dup3-before") == 0 || strcmp(origin, "fdupfd-before") == 0 ||
		   strcmp(origin, "fdupfd-cloexec-before") == 0) {
		const char *how = strcmp(origin, "dup-before") == 0    ? "dup"
				  : strcmp(origin, "dup2-before") == 0  ? "dup2"
				  : strcmp(origin, "dup3-before") == 0  ? "dup3"
				  : strcmp(origin, "fdupfd-before") == 0 ? "F_DUPFD"
									  : "F_DUPFD_CLOEXEC";
		int copy = dup_or_die(fd, how);
		connect_step(fd, job);
		write_step(copy, job, offset);
	} else if (strcmp(origin, "fork-before") == 0) {
		pid_t pid = fork_or_die();
		if (pid == 0) {
			connect_step(fd, job);
			write_step(fd, job, offset);
		}
		wait_child(pid);
	} else if (strcmp(origin, "fork-before-parent") == 0) {
		int order[2];
		char go;
		if (pipe(order) < 0)
			setup_error("pipe");
		pid_t pid = fork_or_die();
		if (pid == 0) {
			close(order[1]);
			current_step = "waiting for the parent's connect";
			if (read(order[0], &go, 1) != 1)
				finish(EXIT_SETUP, "setup-error: the parent did not connect");
			write_step(fd, job, offset);
		}
		close(order[0]);
		connect_step(fd, job);
		if (write(order[1], "c", 1) != 1)
			setup_error("telling the child");
		wait_child(pid);
	} else if (strcmp(origin, "fork-after") == 0) {
		connect_step(fd, job);
		pid_t pid = fork_or_die();
		if (pid == 0)
			write_step(fd, job, offset);
		wait_child(pid);
	} else if (strncmp(origin, "exec-", 5) == 0) {
		connect_step(fd, job);
		if (strcmp(origin, "exec-keep") == 0)
			exec_self(fd, job, false);
		else if (strcmp(origin, "exec-keep-spawn") == 0)
			spawn_self(fd, job, false);
		else if (strcmp(origin, "exec-strip-execve") == 0)
			exec_self(fd, job, true);
		else if (strcmp(origin, "exec-strip-spawn") == 0)
			spawn_self(fd, job, true);
		else if (strcmp(origin, "exec-keep-execveat") == 0)
			execveat_self(fd, job, false);
		else if (strcmp(origin, "exec-strip-execveat") == 0)
			execveat_self(fd, job, true);
		else
			fork_execvp_stripped(fd, job);
	} else if (strcmp(origin, "failed-dup2-onto") == 0) {
		run_failed_dup2_onto(fd, job);
	} else {
		close(fd);
		run_fclose_fdopen(job, host);
	}
}

static bool parse_marker(const char *hex, struct job *job)
{
	size_t len = strlen(hex);

	if (len == 0 || len % 2 != 0 || len / 2 > MARKER_MAX)
		return false;
	for (size_t i = 0; i < len / 2; i++) {
		unsigned int byte;
		if (sscanf(hex + 2 * i, "%2x", &byte) != 1)
			return false;
		job->marker[i] = (unsigned char)byte;
	}
	job->marker_len = len / 2;
	job->marker_hex = hex;
	return true;
}

static void usage(void) __attribute__((noreturn));
static void usage(void)
{
	fprintf(stderr, "usage: fc_client [--tfo-connect] [--read] [--pause MS] [--plain-port P]\n"
			"                 METHOD ORIGIN HOST PORT MARKER_HEX\n"
			"       fc_client [--read] [--pause MS] inherited FD METHOD MARKER_HEX OFFSET\n"
			"methods:");
	for (int i = 0; i < METHOD_COUNT; i++)
		fprintf(stderr, " %s", method_names[i]);
	fprintf(stderr, "\norigins:");
	for (size_t i = 0; i < sizeof(origin_names) / sizeof(origin_names[0]); i++)
		fprintf(stderr, " %s", origin_names[i]);
	fprintf(stderr, "\n");
	exit(EXIT_SETUP);
}

int main(int argc, char **argv)
{
	struct job job = { .method = M_WRITE };
	int i = 1;

	for (; i < argc && strncmp(argv[i], "--", 2) == 0; i++) {
		if (strcmp(argv[i], "--tfo-connect") == 0)
			job.opt.tfo_connect = true;
		else if (strcmp(argv[i], "--read") == 0)
			job.opt.read_echo = true;
		else if (strcmp(argv[i], "--pause") == 0 && i + 1 < argc)
			job.opt.pause_ms = atoi(argv[++i]);
		else if (strcmp(argv[i], "--plain-port") == 0 && i + 1 < argc)
			job.opt.plain_port = argv[++i];
		else
			usage();
	}
	/* A broken connection must show up as EPIPE, not end the program. */
	signal(SIGPIPE, SIG_IGN);
	signal(SIGALRM, on_alarm);
	alarm(RUN_SECONDS);

	if (argc - i == 5 && strcmp(argv[i], "inherited") == 0) {
		int method = method_by_name(argv[i + 2]);
		if (method < 0 || !parse_marker(argv[i + 3], &job))
			usage();
		job.method = (enum method)method;
		after_exec = true;
		size_t offset = strtoul(argv[i + 4], NULL, 10);
		if (offset > job.marker_len)
			usage();
		write_step(atoi(argv[i + 1]), &job, offset);
	}
	if (argc - i != 5)
		usage();
	int method = method_by_name(argv[i]);
	if (method < 0 || !origin_known(argv[i + 1]) || !parse_marker(argv[i + 4], &job))
		usage();
	job.method = (enum method)method;
	resolve(argv[i + 2], argv[i + 3], &job);
	run_origin(argv[i + 1], &job, argv[i + 2]);
	return EXIT_SETUP;
}
