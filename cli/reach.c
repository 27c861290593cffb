/*
 * Whether LD_PRELOAD reaches a program, judged the way execvp, the kernel
 * and ld.so will treat it.
 */
#include "reach.h"

#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "elfinfo.h"

enum {
	SHEBANG_MAX = 256,    /* bytes of a #! line the kernel reads */
	INTERPRETERS_MAX = 4, /* nested #! interpreters the kernel follows */
	WHY_MAX = 2048,
};

static enum reach_verdict check_file(const char *path, int depth, char *why, size_t cap);

/* Where execvp finds name: as given if it has a slash, else the first executable file in PATH. */
static int find_in_path(const char *name, char *out, size_t cap)
{
	const char *search = getenv("PATH");
	char fallback[PATH_MAX];
	int n;

	if (strchr(name, '/') != NULL) {
		n = snprintf(out, cap, "%s", name);
		return n >= 0 && (size_t)n < cap ? 0 : -1;
	}
	if (search == NULL) {
		/* execvp's own default when PATH is unset. */
		confstr(_CS_PATH, fallback, sizeof fallback);
		search = fallback;
	}
	for (const char *dir = search;;) {
		const char *end = strchrnul(dir, ':');
		struct stat st;

		/* An empty PATH entry is the current directory. */
		n = end == dir ? snprintf(out, cap, "%s", name)
		               : snprintf(out, cap, "%.*s/%s", (int)(end - dir), dir, name);
		if (n >= 0 && (size_t)n < cap && stat(out, &st) == 0 && S_ISREG(st.st_mode) &&
		    access(out, X_OK) == 0)
			return 0;
		if (*end == '\0')
			return -1;
		dir = end + 1;
	}
}

/*
 * Whether running path raises privileges, which puts ld.so in secure-
 * execution mode, where it ignores LD_PRELOAD paths.  The kernel ignores
 * set-ID bits and file capabilities under no_new_privs and on nosuid
 * mounts, and a set-ID bit naming the caller's own user or group changes
 * nothing.  1 with the explanation in why.
 */
static int raises_privileges(const char *path, const struct stat *st, char *why, size_t cap)
{
	struct statvfs vfs;

	if (prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) == 1 ||
	    (statvfs(path, &vfs) == 0 && (vfs.f_flag & ST_NOSUID)))
		return 0;
	if ((st->st_mode & S_ISUID) && st->st_uid != getuid()) {
		snprintf(why, cap,
		         "%s is set-user-ID (owner uid %u): it runs with another user's rights, so "
		         "ld.so ignores LD_PRELOAD for it; run it as uid %u, or run a copy without "
		         "the bit",
		         path, (unsigned)st->st_uid, (unsigned)st->st_uid);
		return 1;
	}
	/* Set-group-ID without group execute marks mandatory locking, not a group change. */
	if ((st->st_mode & (S_ISGID | S_IXGRP)) == (S_ISGID | S_IXGRP) && st->st_gid != getgid()) {
		snprintf(why, cap,
		         "%s is set-group-ID (group gid %u): it runs with another group's rights, so "
		         "ld.so ignores LD_PRELOAD for it; run a copy without the bit",
		         path, (unsigned)st->st_gid);
		return 1;
	}
	/* File capabilities raise privileges for everyone but root. */
	if (getuid() != 0 && getxattr(path, "security.capability", NULL, 0) > 0) {
		snprintf(why, cap,
		         "%s has file capabilities (see getcap %s): it gains privileges, so ld.so "
		         "ignores LD_PRELOAD for it; run it as root, or run a copy without them",
		         path, path);
		return 1;
	}
	return 0;
}

static const char *class_name(unsigned elf_class)
{
	switch (elf_class) {
	case ELFCLASS32:
		return "a 32-bit ELF file";
	case ELFCLASS64:
		return "a 64-bit ELF file";
	default:
		return "an ELF file of unknown class";
	}
}

/* Judge the ELF executable open on fd. */
static enum reach_verdict check_elf(int fd, const char *path, const struct stat *st, char *why,
                                    size_t cap)
{
	struct elf_info info;

	if (elf_inspect(fd, path, &info, why, cap) < 0)
		return REACH_UNKNOWN;
	if (info.foreign) {
		snprintf(why, cap,
		         "%s is %s for another machine than the shim: ld.so will not load the shim "
		         "into it",
		         path, class_name(info.elf_class));
		return REACH_REFUSED;
	}
	if (info.type != ET_EXEC && info.type != ET_DYN) {
		snprintf(why, cap, "%s is an ELF file but not a program (ELF type %u)", path,
		         info.type);
		return REACH_NO_RUN;
	}
	if (info.go) {
		snprintf(why, cap,
		         "%s is a Go program: Go makes its socket calls as raw system calls, not "
		         "through libc, so the shim cannot see them; put it behind noiseshim proxy, "
		         "or give the program a Go Noise library (github.com/jtolio/noiseconn over "
		         "github.com/flynn/noise speaks this wire)",
		         path);
		return REACH_REFUSED;
	}
	if (!info.has_interp) {
		snprintf(why, cap,
		         "%s is statically linked: LD_PRELOAD cannot reach a static binary, because "
		         "no dynamic loader runs to load the shim; use a dynamically linked build, or "
		         "put it behind noiseshim proxy",
		         path);
		return REACH_REFUSED;
	}
	if (raises_privileges(path, st, why, cap))
		return REACH_REFUSED;
	snprintf(why, cap, "%s is dynamically linked (loader %s), so LD_PRELOAD reaches it", path,
	         info.interp);
	return REACH_OK;
}

/* The program /usr/bin/env runs, given the rest of a #! line: its first operand. */
static const char *env_program(char *args)
{
	char *save = NULL;
	int skip_next = 0;

	for (char *word = strtok_r(args, " \t", &save); word != NULL;
	     word = strtok_r(NULL, " \t", &save)) {
		if (skip_next) {
			skip_next = 0;
			continue;
		}
		/* env's options that take the following word as their value */
		if (strcmp(word, "-u") == 0 || strcmp(word, "-C") == 0 ||
		    strcmp(word, "--unset") == 0 || strcmp(word, "--chdir") == 0) {
			skip_next = 1;
			continue;
		}
		if (word[0] == '-' || strchr(word, '=') != NULL)
			continue;
		return word;
	}
	return NULL;
}

static int is_env(const char *interpreter)
{
	const char *slash = strrchr(interpreter, '/');

	return strcmp(slash == NULL ? interpreter : slash + 1, "env") == 0;
}

/* Judge what /usr/bin/env will run, after env itself passed. */
static enum reach_verdict check_env_program(char *args, int depth, char *why, size_t cap)
{
	const char *name = env_program(args);
	char path[PATH_MAX];

	if (name == NULL)
		return REACH_OK;
	if (find_in_path(name, path, sizeof path) < 0) {
		snprintf(why, cap, "%s: not found in PATH", name);
		return REACH_NO_RUN;
	}
	return check_file(path, depth, why, cap);
}

/* A #! script runs its interpreter: judge that, and for env the program it runs. */
static enum reach_verdict check_script(const char *path, char *head, int depth, char *why,
                                       size_t cap)
{
	char line[SHEBANG_MAX], inner[WHY_MAX];
	char *interpreter, *args;
	enum reach_verdict verdict;

	head[strcspn(head, "\n")] = '\0';
	interpreter = head + 2 + strspn(head + 2, " \t");
	snprintf(line, sizeof line, "%s", interpreter);
	args = interpreter + strcspn(interpreter, " \t");
	if (*args != '\0')
		*args++ = '\0';
	if (*interpreter == '\0') {
		snprintf(why, cap, "%s: its #! line names no interpreter", path);
		return REACH_NO_RUN;
	}
	verdict = check_file(interpreter, depth + 1, inner, sizeof inner);
	if (verdict == REACH_OK && is_env(interpreter))
		verdict = check_env_program(args, depth + 1, inner, sizeof inner);
	snprintf(why, cap, "%s is a script for '%s'; %s", path, line, inner);
	return verdict;
}

/* Judge the file at path, which the kernel is asked to execute. */
static enum reach_verdict check_file(const char *path, int depth, char *why, size_t cap)
{
	char head[SHEBANG_MAX + 1], inner[WHY_MAX];
	enum reach_verdict verdict;
	struct stat st;
	ssize_t len;
	int fd;

	if (depth > INTERPRETERS_MAX) {
		snprintf(why, cap, "%s: more than %d nested interpreters, which the kernel refuses",
		         path, INTERPRETERS_MAX);
		return REACH_NO_RUN;
	}
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 && errno == EACCES && access(path, X_OK) == 0) {
		snprintf(why, cap,
		         "%s can be run but not read, so noiseshim cannot tell whether LD_PRELOAD "
		         "reaches it",
		         path);
		return REACH_UNKNOWN;
	}
	if (fd < 0) {
		snprintf(why, cap, "%s: cannot run it: %s", path, strerror(errno));
		return REACH_NO_RUN;
	}
	if (fstat(fd, &st) < 0) {
		snprintf(why, cap, "%s: cannot read: %s", path, strerror(errno));
		verdict = REACH_UNKNOWN;
	} else if (!S_ISREG(st.st_mode) || access(path, X_OK) != 0) {
		snprintf(why, cap, "%s: cannot run it: not an executable file (mode %04o)", path,
		         (unsigned)(st.st_mode & 07777));
		verdict = REACH_NO_RUN;
	} else if ((len = pread(fd, head, SHEBANG_MAX, 0)) < 0) {
		snprintf(why, cap, "%s: cannot read: %s", path, strerror(errno));
		verdict = REACH_UNKNOWN;
	} else if (len >= 2 && head[0] == '#' && head[1] == '!') {
		head[len] = '\0';
		verdict = check_script(path, head, depth, why, cap);
	} else if (elf_has_magic((const unsigned char *)head, (size_t)len)) {
		verdict = check_elf(fd, path, &st, why, cap);
	} else {
		/* execvp hands a file the kernel cannot run to the shell. */
		verdict = check_file("/bin/sh", depth + 1, inner, sizeof inner);
		snprintf(why, cap, "%s is neither ELF nor a #! script, so execvp runs it with /bin/sh; %s",
		         path, inner);
	}
	close(fd);
	return verdict;
}

/*
 * Judge program as execvp would run it: found through PATH, and through
 * the interpreters of #! scripts (including /usr/bin/env's program) down to
 * the ELF file that runs.  why gets one explanation naming the file at fault.
 */
enum reach_verdict reach_check(const char *program, char *why, size_t cap)
{
	char path[PATH_MAX];

	if (find_in_path(program, path, sizeof path) < 0) {
		snprintf(why, cap, "%s: not found in PATH", program);
		return REACH_NO_RUN;
	}
	return check_file(path, 0, why, cap);
}
