/*
 * sendfile and splice onto (or off) a wrapped socket cannot go through the
 * kernel's zero-copy path: the bytes must be sealed.  They are emulated
 * with read, seal and send.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <unistd.h>

#include "conn.h"
#include "fdtable.h"
#include "real.h"

enum { CHUNK = NS_MAX_PLAINTEXT };

/*
 * Copy up to count bytes from in_fd (at *offset, or its file position) to
 * the wrapped socket.  Bytes sent, or -1.
 */
static ssize_t
emulate_sendfile(struct ns_conn *c, int out_fd, int in_fd, off64_t *offset, size_t count)
{
	uint8_t *buf = malloc(CHUNK);
	size_t total = 0;

	if (buf == NULL) {
		errno = ENOMEM;
		return -1;
	}
	while (total < count) {
		size_t want = count - total < CHUNK ? count - total : CHUNK;
		ssize_t got = offset != NULL ? pread64(in_fd, buf, want, *offset)
		                             : REAL(read)(in_fd, buf, want);
		struct iovec iov;
		ssize_t sent;

		if (got <= 0)
			break;
		iov = (struct iovec){buf, (size_t)got};
		sent = ns_conn_send(c, out_fd, &iov, 1, 0);
		if (sent > 0) {
			total += (size_t)sent;
			if (offset != NULL)
				*offset += sent;
		}
		if (sent < got) {
			/* Give back what was read but not sent: the program will ask for it again. */
			if (offset == NULL)
				lseek64(in_fd, (off64_t)(sent > 0 ? sent : 0) - got, SEEK_CUR);
			if (sent < 0 && total == 0) {
				int saved = errno;
				free(buf);
				errno = saved;
				return -1;
			}
			break;
		}
	}
	free(buf);
	return (ssize_t)total;
}

NS_EXPORT ssize_t
sendfile(int out_fd, int in_fd, off_t *offset, size_t count)
{
	struct ns_conn *c = ns_fd_wrapped(out_fd);
	off64_t off;
	ssize_t n;

	if (c == NULL)
		return REAL(sendfile)(out_fd, in_fd, offset, count);
	off = offset != NULL ? *offset : 0;
	n = emulate_sendfile(c, out_fd, in_fd, offset != NULL ? &off : NULL, count);
	if (offset != NULL)
		*offset = (off_t)off;
	int saved = errno;
	ns_conn_unref(c);
	errno = saved;
	return n;
}

NS_EXPORT ssize_t
sendfile64(int out_fd, int in_fd, off64_t *offset, size_t count)
{
	struct ns_conn *c = ns_fd_wrapped(out_fd);
	ssize_t n;

	if (c == NULL)
		return REAL(sendfile64)(out_fd, in_fd, offset, count);
	n = emulate_sendfile(c, out_fd, in_fd, offset, count);
	int saved = errno;
	ns_conn_unref(c);
	errno = saved;
	return n;
}

/*
 * Write all of buf to fd (through c when it is a wrapped socket), waiting as
 * needed: bytes already taken out of a pipe or socket must not be lost.
 */
static int
write_fully(struct ns_conn *c, int fd, const uint8_t *buf, size_t len)
{
	while (len > 0) {
		struct iovec iov = {(void *)buf, len};
		ssize_t n = c != NULL ? ns_conn_send(c, fd, &iov, 1, 0) : REAL(write)(fd, buf, len);
		if (n < 0 && (errno == EINTR || errno == EAGAIN)) {
			struct pollfd p = {.fd = fd, .events = POLLOUT};
			REAL(poll)(&p, 1, -1);
			continue;
		}
		if (n < 0)
			return -1;
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

NS_EXPORT ssize_t
splice(int fd_in, loff_t *off_in, int fd_out, loff_t *off_out, size_t len, unsigned int flags)
{
	struct ns_conn *in = ns_fd_wrapped(fd_in), *out = in == NULL ? ns_fd_wrapped(fd_out) : NULL;
	uint8_t *buf;
	ssize_t n = -1;

	if (in == NULL && out == NULL)
		return REAL(splice)(fd_in, off_in, fd_out, off_out, len, flags);
	if ((buf = malloc(CHUNK)) == NULL) {
		errno = ENOMEM;
		goto out;
	}
	if (len > CHUNK)
		len = CHUNK;
	if (in != NULL) {
		/* Socket to pipe or file: decrypt, then write it all. */
		struct iovec iov = {buf, len};
		int dontwait = flags & SPLICE_F_NONBLOCK ? MSG_DONTWAIT : 0;
		if ((n = ns_conn_recv(in, fd_in, &iov, 1, dontwait)) > 0 &&
		    (off_out != NULL ? pwrite64(fd_out, buf, (size_t)n, *off_out) != n
		                     : write_fully(NULL, fd_out, buf, (size_t)n) != 0))
			n = -1;
		else if (n > 0 && off_out != NULL)
			*off_out += n;
	} else {
		/* Pipe or file to socket: what is read cannot be put back into a pipe. */
		n = off_in != NULL ? pread64(fd_in, buf, len, *off_in) : REAL(read)(fd_in, buf, len);
		if (n > 0 && write_fully(out, fd_out, buf, (size_t)n) != 0)
			n = -1;
		else if (n > 0 && off_in != NULL)
			*off_in += n;
	}
	free(buf);
out:;
	int saved = errno;
	ns_conn_unref(in);
	ns_conn_unref(out);
	errno = saved;
	return n;
}
