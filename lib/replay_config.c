/*
 * Whether NOISESHIM_REPLAY_STORE and NOISESHIM_REPLAY_FILE can be used, by
 * looking only: the accept shim then connects or opens, the doctor never.
 */
#include "replay_config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define STORE_SCHEME "redis://"

static int
bad_store(const char *url, char *why, size_t why_len)
{
	snprintf(why, why_len, "NOISESHIM_REPLAY_STORE: \"%s\" is not redis://HOST:PORT", url);
	return -1;
}

/*
 * Split url, "redis://HOST:PORT" (HOST a name, an IPv4 address or [IPv6];
 * PORT 6379 if left out), into host and *port.  0, or -1 with why (why_len
 * bytes) naming the variable and its value.
 */
int
ns_replay_store_parse(const char *url, char host[NS_REPLAY_STORE_HOST_MAX], int *port,
                      char *why, size_t why_len)
{
	const char *p = url + strlen(STORE_SCHEME), *end, *colon;
	unsigned long n = NS_REPLAY_STORE_DEFAULT_PORT;
	char *stop;

	if (strncmp(url, STORE_SCHEME, strlen(STORE_SCHEME)) != 0)
		return bad_store(url, why, why_len);
	if (*p == '[') {
		if ((end = strchr(p, ']')) == NULL)
			return bad_store(url, why, why_len);
		p++;
		colon = end + 1;
		if (*colon != '\0' && *colon != ':')
			return bad_store(url, why, why_len);
	} else {
		end = colon = p + strcspn(p, ":");
	}
	if (end == p || (size_t)(end - p) >= NS_REPLAY_STORE_HOST_MAX ||
	    memchr(p, '/', (size_t)(end - p)) != NULL || memchr(p, '@', (size_t)(end - p)) != NULL)
		return bad_store(url, why, why_len);
	if (*colon == ':') {
		n = strtoul(colon + 1, &stop, 10);
		if (colon[1] == '\0' || *stop != '\0' || n == 0 || n > 65535)
			return bad_store(url, why, why_len);
	}
	memcpy(host, p, (size_t)(end - p));
	host[end - p] = '\0';
	*port = (int)n;
	return 0;
}

__attribute__((format(printf, 5, 6)))
static int
bad_file(const char *setting, const char *path, char *why, size_t why_len, const char *fmt, ...)
{
	char problem[PATH_MAX + 128];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(problem, sizeof(problem), fmt, ap);
	va_end(ap);
	snprintf(why, why_len, "%s: \"%s\": %s", setting, path, problem);
	return -1;
}

/* The directory that holds path: "." for a bare name. */
static void
directory_of(const char *path, char dir[PATH_MAX])
{
	const char *slash = strrchr(path, '/');

	if (slash == NULL)
		snprintf(dir, PATH_MAX, ".");
	else if (slash == path)
		snprintf(dir, PATH_MAX, "/");
	else
		snprintf(dir, PATH_MAX, "%.*s", (int)(slash - path), path);
}

/* What would stop the window from opening the existing file at path (lstat st): as open would see it. */
static int
check_existing(const char *setting, const char *path, const struct stat *st, char *why,
               size_t why_len)
{
	if (S_ISLNK(st->st_mode))
		return bad_file(setting, path, why, why_len, "is a symbolic link, which the window never follows");
	if (!S_ISREG(st->st_mode))
		return bad_file(setting, path, why, why_len, "is not a regular file");
	if (faccessat(AT_FDCWD, path, R_OK | W_OK, AT_EACCESS) != 0)
		return bad_file(setting, path, why, why_len, "cannot be opened for reading and writing: %s",
		                strerror(errno));
	return 0;
}

/*
 * Whether this process can open the window file at path read-write, or
 * create it (and the files of later keys beside it).  0, or -1 with why
 * naming the setting (the variable, or an option of the same meaning) and
 * its value.
 */
int
ns_replay_file_check(const char *setting, const char *path, char *why, size_t why_len)
{
	char dir[PATH_MAX];
	struct stat st;

	if (strlen(path) + sizeof("-") + NS_REPLAY_KEY_ID_HEX > PATH_MAX)
		return bad_file(setting, path, why, why_len, "too long for the files of later keys");
	if (lstat(path, &st) == 0)
		return check_existing(setting, path, &st, why, why_len);
	if (errno != ENOENT)
		return bad_file(setting, path, why, why_len, "%s", strerror(errno));
	directory_of(path, dir);
	if (faccessat(AT_FDCWD, dir, W_OK | X_OK, AT_EACCESS) != 0)
		return bad_file(setting, path, why, why_len, "cannot be created in %s: %s", dir,
		                strerror(errno));
	return 0;
}
