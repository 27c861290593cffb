/*
 * Small file helpers shared by the key loader and the command.
 */
#include "fileio.h"

#include <errno.h>
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
