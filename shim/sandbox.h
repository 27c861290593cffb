/*
 * Processes that lock themselves in a seccomp sandbox (sshd's pre-auth
 * child allows little beyond read, write, writev, poll and futex, and
 * kills on anything else): from the moment a program announces one, the
 * shim moves bytes with read and write only, keeps no readiness in the
 * kernel (no SO_RCVLOWAT, no kept-back byte: its poll reports held
 * plaintext itself), grows no memory file and writes no log line.
 */
#ifndef NOISESHIM_SANDBOX_H
#define NOISESHIM_SANDBOX_H

#include <stddef.h>
#include <sys/types.h>

/* Set once a sandbox may be in force in this process. */
extern int ns_sandboxed;

/* recv() as the sandbox allows it (no MSG_PEEK while sandboxed). */
ssize_t ns_sock_recv(int fd, void *buf, size_t len, int flags);

/* send() as the sandbox allows it. */
ssize_t ns_sock_send(int fd, const void *buf, size_t len, int flags);

#endif
