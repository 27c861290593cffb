/*
 * Small file helpers shared by the key loader and the command.
 */
#ifndef NOISESHIM_FILEIO_H
#define NOISESHIM_FILEIO_H

#include <stddef.h>

/* Write all len bytes of buf to fd, retrying short writes and EINTR.  0 or -1 (errno). */
int ns_write_all(int fd, const void *buf, size_t len);

#endif
