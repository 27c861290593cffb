/*
 * Where the preloadable shims are installed: beside the noiseshim binary
 * (the build directory), else in ../lib/noiseshim/ (an install prefix).
 */
#ifndef NOISESHIM_CLI_SHIMPATH_H
#define NOISESHIM_CLI_SHIMPATH_H

#include <stddef.h>

#define CLIENT_SHIM_NAME "libnoiseshim.so"
#define SERVER_SHIM_NAME "libnoiseshim-server.so"

/*
 * Find the shim file called name.  0 with its absolute path in out, or -1 with
 * the places tried in tried.
 */
int shimpath_find(const char *name, char *out, size_t cap, char *tried, size_t tried_cap);

#endif
