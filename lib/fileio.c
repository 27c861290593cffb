/*
 * Small file helpers shared by the key loader, the key ring, the allowlist
 * and the command.
 */
#include "fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

/* Write all len bytes of buf to fd, retrying short writes and EINTR.  0 or -1 (errno). */
int
ns_write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len > 0) {
		ssize_t n = write(fd, p, len);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static struct ns_file_stamp
stamp_of(const struct stat *st)
{
	struct ns_file_stamp s = {
		.dev = st->st_dev,
		.ino = st->st_ino,
		.size = st->st_size,
		.mtime = st->st_mtim,
	};

	return s;
}

/* Read fd to its end or to max bytes; one byte past max means the file is too big. */
static int
read_up_to_max(int fd, size_t max, char *buf, size_t *len)
{
	size_t got = 0;

	while (got <= max) {
		ssize_t n = read(fd, buf + got, max + 1 - got);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		if (n == 0) {
			*len = got;
			return 0;
		}
		got += (size_t)n;
	}
	errno = EFBIG;
	return -1;
}

int
ns_read_file(const char *path, size_t max, char **text, size_t *len,
             struct ns_file_stamp *stamp)
{
	struct stat st;
	char *buf;
	int fd, saved;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		goto err0;
	if (fstat(fd, &st) != 0)
		goto err1;
	if (!S_ISREG(st.st_mode)) {
		errno = S_ISDIR(st.st_mode) ? EISDIR : EINVAL;
		goto err1;
	}
	/* max + 1 to see that a file grew past max, + 1 for the NUL. */
	buf = malloc(max + 2);
	if (buf == NULL)
		goto err1;
	if (read_up_to_max(fd, max, buf, len) != 0)
		goto err2;
	buf[*len] = '\0';
	close(fd);
	*text = buf;
	*stamp = stamp_of(&st);
	return 0;

err2:
	saved = errno;
	free(buf);
	errno = saved;
err1:
	saved = errno;
	close(fd);
	errno = saved;
err0:
	return -1;
}

int
ns_file_stamp_get(const char *path, struct ns_file_stamp *stamp)
{
	struct stat st;

	if (stat(path, &st) != 0)
		return -1;
	*stamp = stamp_of(&st);
	return 0;
}

int
ns_file_stamp_same(const struct ns_file_stamp *a, const struct ns_file_stamp *b)
{
	return a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
	       a->mtime.tv_sec == b->mtime.tv_sec && a->mtime.tv_nsec == b->mtime.tv_nsec;
}
