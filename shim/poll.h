/*
 * What the waiting calls (poll.c) keep for connections whose early buffer
 * is full: the epoll registrations they took writability out of, to give
 * it back once there is room.
 */
#ifndef NOISESHIM_POLL_H
#define NOISESHIM_POLL_H

/* fd's early buffer has room again: its epoll registrations get their writability back. */
void ns_poll_resume(int fd);

/* fd is closed: forget its epoll registrations. */
void ns_poll_forget(int fd);

/* In a fork child: the registrations' lock may belong to a thread that did not come along. */
void ns_poll_after_fork_child(void);

#endif
