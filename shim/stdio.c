/*
 * stdio on wrapped sockets.  glibc's FILE streams write and read through
 * its own internal calls, past every wrapper: an inetd-style server whose
 * stdout is the connection would print plaintext onto a Noise stream.  So
 * a standard stream whose fd is a wrapped socket (after exec, or after
 * dup2 onto 0, 1 or 2), and every fdopen of one, becomes a stream whose
 * reads and writes go through the shim's own read and write.
 */
#include "stdio_streams.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "conn.h"
#include "fdtable.h"
#include "real.h"

static ssize_t
cookie_read(void *cookie, char *buf, size_t len)
{
	return read((int)(intptr_t)cookie, buf, len);
}

/* stdio treats a short write as an error, so wait for room as a blocking stream would. */
static ssize_t
cookie_write(void *cookie, const char *buf, size_t len)
{
	int fd = (int)(intptr_t)cookie;
	size_t done = 0;

	while (done < len) {
		ssize_t n = write(fd, buf + done, len - done);
		if (n > 0) {
			done += (size_t)n;
		} else if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
			struct pollfd p = {.fd = fd, .events = POLLOUT};
			REAL(poll)(&p, 1, -1);
		} else {
			return done > 0 ? (ssize_t)done : -1;
		}
	}
	return (ssize_t)done;
}

static int
cookie_close(void *cookie)
{
	return close((int)(intptr_t)cookie);
}

static const cookie_io_functions_t socket_io = {
	.read = cookie_read,
	.write = cookie_write,
	.seek = NULL,
	.close = cookie_close,
};

/* A stream on wrapped socket fd that goes through the shim; NULL with errno. */
static FILE *
socket_stream(int fd, const char *mode)
{
	FILE *f = fopencookie((void *)(intptr_t)fd, mode, socket_io);

	/* fileno() must still name the socket: programs poll it and pass it on. */
	if (f != NULL)
		f->_fileno = fd;
	return f;
}

/* glibc's own standard streams, kept for when the fd stops being a wrapped socket. */
static FILE *original[3];
static FILE *replacement[3];

static FILE **
standard(int fd)
{
	return fd == 0 ? &stdin : fd == 1 ? &stdout : &stderr;
}

/* fd (0, 1 or 2) may have changed what it is: make its standard stream match. */
void
ns_stdio_refresh(int fd)
{
	struct ns_conn *c;
	FILE **std;

	if (fd < 0 || fd > 2)
		return;
	std = standard(fd);
	c = ns_fd_wrapped(fd);
	if (c != NULL && replacement[fd] == NULL) {
		FILE *f = socket_stream(fd, fd == 0 ? "r" : "w");
		if (f != NULL) {
			fflush(*std);
			/* The stream carries what the connection does: no buffer beyond the shim's own. */
			setvbuf(f, NULL, fd == 2 ? _IONBF : _IOFBF, BUFSIZ);
			original[fd] = *std;
			replacement[fd] = *std = f;
		}
	} else if (c == NULL && replacement[fd] != NULL && *std == replacement[fd]) {
		/* The socket stream is left open, unused: closing it would close the fd. */
		fflush(*std);
		*std = original[fd];
		replacement[fd] = NULL;
	}
	ns_conn_unref(c);
}

NS_EXPORT FILE *
fdopen(int fd, const char *mode)
{
	struct ns_conn *c = ns_fd_wrapped(fd);

	if (c == NULL)
		return REAL(fdopen)(fd, mode);
	ns_conn_unref(c);
	return socket_stream(fd, mode);
}
