/*
 * What run and serve share: finding the shim, handing the program its
 * settings through the environment, and the exec itself.
 */
#ifndef NOISESHIM_CLI_LAUNCH_H
#define NOISESHIM_CLI_LAUNCH_H

#include <stddef.h>

/*
 * The absolute path of the shim to preload: given (--shim) unless NULL, else
 * the installed shim called name.  -1 with an error printed.
 */
int launch_find_shim(const char *given, const char *name, char *out, size_t cap);

/* Set the environment variable name to value.  -1 with an error printed. */
int launch_set(const char *name, const char *value);

/*
 * Set the environment variable name to path made absolute, as the program may
 * change directory before the shim opens it.  -1 with an error printed.
 */
int launch_set_path(const char *name, const char *path);

/*
 * Set name to a NOISESHIM_KEY list of paths, each made absolute (spaces
 * around the commas dropped).  -1 with an error printed.
 */
int launch_set_path_list(const char *name, const char *list);

/* Put shim first in LD_PRELOAD, keeping the entries already there.  -1 with an error printed. */
int launch_preload(const char *shim);

/*
 * Go on with program (0) if LD_PRELOAD reaches it, or if it would run and
 * force is set; otherwise -1 after saying why.
 */
int launch_check_reach(const char *program, int force);

/* Replace this process with argv[0] run with argv; returns 1 after printing why it could not. */
int launch_exec(char **argv);

#endif
