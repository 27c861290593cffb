/*
 * The waiting calls (poll.c) take writability out of the epoll
 * registration of a connection whose early buffer is full; it comes back
 * once there is room.
 */
#ifndef NOISESHIM_POLL_H
#define NOISESHIM_POLL_H

/* fd's early buffer has room again: its epoll registration gets its writability back. */
void ns_poll_resume(int fd);

#endif
