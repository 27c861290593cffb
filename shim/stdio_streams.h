/*
 * Standard streams and fdopen on wrapped sockets go through the shim, not
 * past it (stdio.c).
 */
#ifndef NOISESHIM_STDIO_STREAMS_H
#define NOISESHIM_STDIO_STREAMS_H

/* fd (0, 1 or 2) may have changed what it is: make its standard stream match. */
void ns_stdio_refresh(int fd);

#endif
