/*
 * Launching a program under a shim.
 */
#include "launch.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "keyring.h"
#include "reach.h"
#include "shimpath.h"

enum { WHY_MAX = 4096 };

/* ld.so splits LD_PRELOAD at these, so a path holding one cannot be listed. */
static const char PRELOAD_SEPARATORS[] = " :";

/*
 * The absolute path of the shim to preload: given (--shim) unless NULL, else
 * the installed shim called name.  -1 with an error printed.
 */
int launch_find_shim(const char *given, const char *name, char *out, size_t cap)
{
	char resolved[PATH_MAX], tried[2 * PATH_MAX];
	struct stat st;

	if (given != NULL) {
		if (realpath(given, resolved) == NULL || stat(resolved, &st) < 0) {
			cli_error("--shim %s: %s", given, strerror(errno));
			return -1;
		}
		if (!S_ISREG(st.st_mode)) {
			cli_error("--shim %s: not a regular file", given);
			return -1;
		}
	} else if (shimpath_find(name, resolved, sizeof resolved, tried, sizeof tried) < 0) {
		cli_error("cannot find %s (tried %s); build it with make, or give --shim PATH", name,
		          tried);
		return -1;
	}
	/* ld.so opens it as the program's user, which is ours. */
	if (access(resolved, R_OK) < 0) {
		cli_error("%s: cannot read the shim: %s", resolved, strerror(errno));
		return -1;
	}
	if (strpbrk(resolved, PRELOAD_SEPARATORS) != NULL) {
		cli_error("%s: ld.so splits LD_PRELOAD at spaces and colons, so the shim must be at a "
		          "path without them",
		          resolved);
		return -1;
	}
	if (strlen(resolved) >= cap) {
		cli_error("%s: path too long", resolved);
		return -1;
	}
	strcpy(out, resolved);
	return 0;
}

/* Set the environment variable name to value.  -1 with an error printed. */
int launch_set(const char *name, const char *value)
{
	if (setenv(name, value, 1) < 0) {
		cli_error("cannot set %s: %s", name, strerror(errno));
		return -1;
	}
	return 0;
}

/*
 * Set the environment variable name to path made absolute, as the program may
 * change directory before the shim opens it.  -1 with an error printed.
 */
int launch_set_path(const char *name, const char *path)
{
	char cwd[PATH_MAX], absolute[2 * PATH_MAX];

	if (path[0] == '/')
		return launch_set(name, path);
	if (getcwd(cwd, sizeof cwd) == NULL) {
		cli_error("%s: cannot make the path absolute: %s", path, strerror(errno));
		return -1;
	}
	snprintf(absolute, sizeof absolute, "%s/%s", cwd, path);
	return launch_set(name, absolute);
}

int launch_set_path_list(const char *name, const char *list)
{
	char cwd[PATH_MAX], path[PATH_MAX], joined[NS_KEYRING_MAX * (2 * PATH_MAX + 1)];
	char err[NS_KEYRING_ERR_MAX];
	const char *cursor = list;
	unsigned entries = 0;
	size_t used = 0;
	int more;

	if (getcwd(cwd, sizeof cwd) == NULL) {
		cli_error("%s: cannot make the paths absolute: %s", list, strerror(errno));
		return -1;
	}
	while ((more = ns_keyring_next_path(&cursor, &entries, path, err, sizeof err)) > 0) {
		int n = snprintf(joined + used, sizeof joined - used, "%s%s%s%s", used == 0 ? "" : ",",
		                 path[0] == '/' ? "" : cwd, path[0] == '/' ? "" : "/", path);

		if (n < 0 || (size_t)n >= sizeof joined - used) {
			cli_error("%s: more than %d key files", list, NS_KEYRING_MAX);
			return -1;
		}
		used += (size_t)n;
	}
	if (more < 0) {
		cli_error("%s", err);
		return -1;
	}
	return launch_set(name, joined);
}

/* Put shim first in LD_PRELOAD, keeping the entries already there.  -1 with an error printed. */
int launch_preload(const char *shim)
{
	const char *existing = getenv("LD_PRELOAD");
	char *list;
	int failed;

	if (existing == NULL || existing[strspn(existing, PRELOAD_SEPARATORS)] == '\0')
		return launch_set("LD_PRELOAD", shim);
	if (asprintf(&list, "%s:%s", shim, existing) < 0) {
		cli_error("out of memory");
		return -1;
	}
	failed = launch_set("LD_PRELOAD", list);
	free(list);
	return failed;
}

/*
 * Go on with program (0) if LD_PRELOAD reaches it, or if it would run and
 * force is set; otherwise -1 after saying why.
 */
int launch_check_reach(const char *program, int force)
{
	char why[WHY_MAX];

	switch (reach_check(program, why, sizeof why)) {
	case REACH_OK:
		return 0;
	case REACH_UNKNOWN:
		cli_error("warning: %s", why);
		return 0;
	case REACH_NO_RUN:
		cli_error("%s", why);
		return -1;
	case REACH_REFUSED:
		break;
	}
	if (force) {
		cli_error("warning: %s; launching it anyway (--force)", why);
		return 0;
	}
	cli_error("%s", why);
	cli_error("not launching %s; --force launches it anyway", program);
	return -1;
}

/* Replace this process with argv[0] run with argv; returns 1 after printing why it could not. */
int launch_exec(char **argv)
{
	execvp(argv[0], argv);
	cli_error("%s: cannot run: %s", argv[0], strerror(errno));
	return 1;
}
