/*
 * exec and posix_spawn: wrapped sockets are handed to a new image that
 * loads the shim, and cut off from one that does not (exec.c).
 */
#ifndef NOISESHIM_EXEC_H
#define NOISESHIM_EXEC_H

/* Names the arena and the sockets handed to the new image (exec.c describes the value). */
#define NS_INHERIT_VAR "NOISESHIM_INHERIT"

/* At start-up: take over the sockets an exec'ing process handed to this image. */
void ns_exec_adopt(void);

#endif
