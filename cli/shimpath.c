/*
 * Where the preloadable shims are installed.
 */
#include "shimpath.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Places to look, relative to the directory that holds the noiseshim binary. */
static const char *const SHIM_DIRS[] = { "", "/../lib/noiseshim" };

/* The directory of the running noiseshim binary. */
static int own_directory(char *out, size_t cap)
{
	ssize_t n = readlink("/proc/self/exe", out, cap - 1);
	char *slash;

	if (n < 0)
		return -1;
	out[n] = '\0';
	slash = strrchr(out, '/');
	if (slash == NULL) {
		errno = ENOENT;
		return -1;
	}
	*slash = '\0';
	return 0;
}

static int is_regular_file(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/*
 * Find the shim file called name.  0 with its absolute path in out, or -1 with
 * the places tried in tried.
 */
int shimpath_find(const char *name, char *out, size_t cap, char *tried, size_t tried_cap)
{
	char dir[PATH_MAX], candidate[PATH_MAX + 64];
	size_t used = 0;

	if (own_directory(dir, sizeof dir) < 0) {
		snprintf(tried, tried_cap, "cannot read /proc/self/exe: %s", strerror(errno));
		return -1;
	}
	tried[0] = '\0';
	for (size_t i = 0; i < sizeof SHIM_DIRS / sizeof SHIM_DIRS[0]; i++) {
		char resolved[PATH_MAX];

		snprintf(candidate, sizeof candidate, "%s%s/%s", dir, SHIM_DIRS[i], name);
		if (is_regular_file(candidate) && realpath(candidate, resolved) != NULL &&
		    strlen(resolved) < cap) {
			strcpy(out, resolved);
			return 0;
		}
		if (used < tried_cap)
			used += (size_t)snprintf(tried + used, tried_cap - used, "%s%s",
			                         i == 0 ? "" : ", ", candidate);
	}
	return -1;
}
