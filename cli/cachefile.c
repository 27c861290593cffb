/*
 * The cache file as text: where it is, its lines, and atomic rewrites.
 */
#include "cachefile.h"
#include "fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"

enum {
	READ_CHUNK = 4096,
	NEW_DIR_MODE = 0755,
	NEW_FILE_MODE = 0666, /* before the umask: the cache holds only public keys */
};

/* Path of the cache: $NOISESHIM_CACHE, else ~/.config/noiseshim/cache.  -1 with an error printed. */
int cachefile_default_path(char *out, size_t cap)
{
	const char *env = getenv("NOISESHIM_CACHE"), *home = getenv("HOME");
	int n;

	if (env != NULL && env[0] != '\0') {
		n = snprintf(out, cap, "%s", env);
	} else if (home != NULL && home[0] != '\0') {
		n = snprintf(out, cap, "%s/.config/noiseshim/cache", home);
	} else {
		cli_error("no cache file: set NOISESHIM_CACHE or HOME, or give --cache FILE");
		return -1;
	}
	if (n < 0 || (size_t)n >= cap) {
		cli_error("the cache path is longer than %zu bytes", cap - 1);
		return -1;
	}
	return 0;
}

/* Mode a new file gets from open(2) under the current umask. */
static mode_t new_file_mode(void)
{
	mode_t mask = umask(0);

	umask(mask);
	return NEW_FILE_MODE & ~mask;
}

/* Read the rest of fd into f->text; -1 with errno set. */
static int read_text(int fd, size_t size_hint, struct cachefile *f)
{
	size_t cap = size_hint + 1; /* room to see the end of a file that did not grow */
	char *bigger;

	f->text = malloc(cap);
	if (f->text == NULL)
		return -1;
	for (;;) {
		ssize_t n;

		if (f->len == cap) {
			bigger = realloc(f->text, cap + READ_CHUNK);
			if (bigger == NULL)
				return -1;
			f->text = bigger;
			cap += READ_CHUNK;
		}
		n = read(fd, f->text + f->len, cap - f->len);
		if (n == 0)
			return 0;
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		f->len += (size_t)n;
	}
}

/* Read path; a missing file reads as empty if missing_ok.  -1 with an error printed. */
int cachefile_read(const char *path, int missing_ok, struct cachefile *f)
{
	struct stat st;
	int fd;

	*f = (struct cachefile){ .mode = new_file_mode() };
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 && errno == ENOENT && missing_ok) {
		f->text = malloc(1); /* so that text is never NULL */
		if (f->text == NULL) {
			cli_error("out of memory");
			goto err0;
		}
		return 0;
	}
	if (fd < 0) {
		cli_error("%s: cannot read: %s", path, strerror(errno));
		goto err0;
	}
	if (fstat(fd, &st) < 0) {
		cli_error("%s: cannot read: %s", path, strerror(errno));
		goto err1;
	}
	if (!S_ISREG(st.st_mode)) {
		cli_error("%s: not a regular file", path);
		goto err1;
	}
	if (read_text(fd, (size_t)st.st_size, f) < 0) {
		cli_error("%s: cannot read: %s", path, strerror(errno));
		goto err2;
	}
	close(fd);
	f->mode = st.st_mode & 07777;
	f->exists = 1;
	return 0;

err2:
	cachefile_release(f);
err1:
	close(fd);
err0:
	return -1;
}

/* Release what cachefile_read allocated. */
void cachefile_release(struct cachefile *f)
{
	free(f->text);
	f->text = NULL;
	f->len = 0;
}

/* Create dir and any missing parents, like mkdir -p.  -1 with an error printed. */
static int make_dirs(char *dir)
{
	for (char *p = dir + 1;; p++) {
		char saved = *p;

		if (saved != '/' && saved != '\0')
			continue;
		*p = '\0';
		if (mkdir(dir, NEW_DIR_MODE) < 0 && errno != EEXIST) {
			cli_error("%s: cannot create directory: %s", dir, strerror(errno));
			*p = saved;
			return -1;
		}
		*p = saved;
		if (saved == '\0')
			return 0;
	}
}

/* The file a rewrite must replace: a symlink's target, so that the link survives. */
static int resolve_target(const char *path, char *target)
{
	struct stat st;

	if (lstat(path, &st) == 0 && S_ISLNK(st.st_mode)) {
		if (realpath(path, target) == NULL) {
			cli_error("%s: cannot follow the symbolic link: %s", path, strerror(errno));
			return -1;
		}
		return 0;
	}
	if (strlen(path) >= PATH_MAX) {
		cli_error("%s: path too long", path);
		return -1;
	}
	strcpy(target, path);
	return 0;
}

/* Split target into its directory (made to exist) and a temporary file name beside it. */
static int temp_name_beside(const char *target, char *dir, char *tmp)
{
	const char *slash = strrchr(target, '/');
	const char *base = slash == NULL ? target : slash + 1;
	struct stat st;
	int n;

	if (slash == NULL)
		strcpy(dir, ".");
	else if (slash == target)
		strcpy(dir, "/");
	else
		snprintf(dir, PATH_MAX, "%.*s", (int)(slash - target), target);
	if (stat(dir, &st) < 0 && errno == ENOENT && make_dirs(dir) < 0)
		return -1;
	n = snprintf(tmp, PATH_MAX, "%s/.%s.XXXXXX", dir, base);
	if (n < 0 || n >= PATH_MAX) {
		cli_error("%s: path too long", target);
		return -1;
	}
	return 0;
}

/* Persist the rename in dir.  Best effort: some file systems cannot sync a directory. */
static void sync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (fd < 0)
		return;
	if (fsync(fd) < 0 && errno != EINVAL)
		cli_error("%s: cannot sync directory: %s", dir, strerror(errno));
	close(fd);
}

/*
 * Make text the content of path atomically: a temporary file in the same
 * directory, written, synced, then renamed over path (a symlink's target
 * is replaced, not the link).  Missing parent directories are created.
 * -1 with an error printed; path is then unchanged.
 */
int cachefile_replace(const char *path, const char *text, size_t len, mode_t mode)
{
	char target[PATH_MAX], dir[PATH_MAX], tmp[PATH_MAX];
	int fd;

	if (resolve_target(path, target) < 0 || temp_name_beside(target, dir, tmp) < 0)
		goto err0;
	fd = mkstemp(tmp);
	if (fd < 0) {
		cli_error("%s: cannot create a temporary file in %s: %s", path, dir, strerror(errno));
		goto err0;
	}
	if (fchmod(fd, mode) < 0 || ns_write_all(fd, text, len) < 0 || fsync(fd) < 0) {
		cli_error("%s: cannot write: %s", tmp, strerror(errno));
		goto err1;
	}
	if (close(fd) < 0) {
		cli_error("%s: cannot write: %s", tmp, strerror(errno));
		goto err2;
	}
	if (rename(tmp, target) < 0) {
		cli_error("%s: cannot replace with %s: %s", target, tmp, strerror(errno));
		goto err2;
	}
	sync_dir(dir);
	return 0;

err1:
	close(fd);
err2:
	unlink(tmp);
err0:
	return -1;
}

static int is_blank(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
}

/* The NodeURL part of a line: '#' starts a comment to the end of the line, blanks around are ignored. */
static void find_entry(struct cache_line *line)
{
	const char *hash = memchr(line->text, '#', line->len);
	const char *p = line->text;
	size_t n = hash == NULL ? line->len : (size_t)(hash - p);

	while (n > 0 && is_blank(*p)) {
		p++;
		n--;
	}
	while (n > 0 && is_blank(p[n - 1]))
		n--;
	line->entry = p;
	line->entry_len = n;
}

/* Step line to the next line of text (len bytes).  Returns 1, or 0 past the last line. */
int cachefile_next_line(const char *text, size_t len, struct cache_line *line)
{
	const char *start, *nl;

	if (line->next >= len)
		return 0;
	start = text + line->next;
	nl = memchr(start, '\n', len - line->next);
	line->text = start;
	line->len = nl == NULL ? len - line->next : (size_t)(nl - start);
	line->next += line->len + 1;
	line->number++;
	find_entry(line);
	return 1;
}
