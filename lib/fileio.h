/*
 * Small file helpers shared by the key loader, the key ring, the allowlist
 * and the command.
 */
#ifndef NOISESHIM_FILEIO_H
#define NOISESHIM_FILEIO_H

#include <stddef.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>

/* What identifies one version of a file: a rename, rewrite or touch changes it. */
struct ns_file_stamp {
	dev_t dev;
	ino_t ino;
	off_t size;
	struct timespec mtime;
};

/* Write all len bytes of buf to fd, retrying short writes and EINTR.  0 or -1 (errno). */
int ns_write_all(int fd, const void *buf, size_t len);

/*
 * Read the regular file at path, at most max bytes, into a new NUL-terminated
 * buffer (*text, free() it; *len excludes the NUL) and fill *stamp from the
 * file actually read.  -1 with errno set: EFBIG above max, EISDIR/EINVAL for
 * a directory or a non-regular file.
 */
int ns_read_file(const char *path, size_t max, char **text, size_t *len,
                 struct ns_file_stamp *stamp);

/* The stamp of path now.  -1 with errno set. */
int ns_file_stamp_get(const char *path, struct ns_file_stamp *stamp);

/* Whether two stamps name the same version of a file. */
int ns_file_stamp_same(const struct ns_file_stamp *a, const struct ns_file_stamp *b);

#endif
