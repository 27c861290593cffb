/*
 * Calls that create fds: stale table entries for the new number are
 * dropped (birth.c).
 */
#ifndef NOISESHIM_BIRTH_H
#define NOISESHIM_BIRTH_H

/* fd was just made by the kernel: whatever the table says of that number is stale. */
void ns_fd_created(int fd);

/* fd is about to be closed (by close, dup2 onto it, fclose): drop its share of its socket. */
void ns_fd_closing(int fd);

#endif
