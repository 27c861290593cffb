/*
 * Counters of a wrapped process in a shared file mapping: the writer side
 * (attach, add, fork, exit) and the reader side (find, check, copy, clean).
 */
#include "stats.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define STATS_MAGIC "NSSTATS1"

enum {
	MAGIC_LEN = 8,
	CACHE_LINE = 64,
	MAX_DIRS = 3,
	PROC_STAT_MAX = 1024,
	START_TIME_FIELD = 22, /* of /proc/PID/stat: when the process started */
	PID_TEXT_MAX = 24,
};

/* Each counter on its own cache line: workers on different cores do not contend. */
struct counter {
	_Atomic uint64_t v;
	char pad[CACHE_LINE - sizeof(uint64_t)];
};

/* The file's layout.  magic is written last, so a reader never sees a half-made block. */
struct ns_stats {
	_Atomic uint64_t magic;
	uint32_t fields;
	uint32_t header_size;
	int64_t owner;
	uint64_t owner_start; /* tells the owner from a later process given the same pid */
	char pad[CACHE_LINE - 4 * sizeof(uint64_t)];
	struct counter value[NS_STAT_COUNT];
};

static const struct field_info {
	const char *name;
	const char *help;
	int gauge;
} FIELDS[NS_STAT_COUNT] = {
	[NS_STAT_HANDSHAKES_OK] = { "handshakes_ok", "Noise handshakes completed", 0 },
	[NS_STAT_HANDSHAKES_FAILED] = { "handshakes_failed",
	                                "Noise handshakes that failed: bad message, wrong key, "
	                                "timeout, reset", 0 },
	[NS_STAT_REPLAYS_REFUSED] = { "replays_refused",
	                              "first flights refused as replays of one already seen", 0 },
	[NS_STAT_CLIENTS_REFUSED] = { "clients_refused",
	                              "clients closed because their key is not in the allowlist",
	                              0 },
	[NS_STAT_CONNECTIONS_OPEN] = { "connections_open", "wrapped connections open now", 1 },
	[NS_STAT_BYTES_IN] = { "bytes_in", "plaintext bytes the program received", 0 },
	[NS_STAT_BYTES_OUT] = { "bytes_out", "plaintext bytes the program sent", 0 },
	[NS_STAT_TFO_SYN_DATA] = { "tfo_syn_data",
	                           "connections whose SYN carried data (TCP Fast Open)", 0 },
};

/* The writer's state: set once by attach, inherited across fork. */
static pthread_once_t attach_once = PTHREAD_ONCE_INIT;
static struct ns_stats *block;
static char block_dir[PATH_MAX];
static pid_t block_owner;
static volatile sig_atomic_t owner_forked;
static pid_t link_pid; /* the child that made DIR/link_pid, or 0 */
static volatile sig_atomic_t files_left; /* ns_stats_leave_files: no more file operations */

const char *ns_stat_name(enum ns_stat field)
{
	return FIELDS[field].name;
}

const char *ns_stat_help(enum ns_stat field)
{
	return FIELDS[field].help;
}

int ns_stat_is_gauge(enum ns_stat field)
{
	return FIELDS[field].gauge;
}

__attribute__((format(printf, 3, 4)))
static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

static uint64_t magic_value(void)
{
	uint64_t m;

	memcpy(&m, STATS_MAGIC, MAGIC_LEN);
	return m;
}

/* Decimal text of n into out (PID_TEXT_MAX); async-signal-safe, for the fork handler. */
static void pid_text(pid_t n, char out[PID_TEXT_MAX])
{
	char rev[PID_TEXT_MAX];
	size_t len = 0, i = 0;
	unsigned long v = (unsigned long)n;

	do {
		rev[len++] = (char)('0' + v % 10);
		v /= 10;
	} while (v != 0 && len < PID_TEXT_MAX - 1);
	while (len > 0)
		out[i++] = rev[--len];
	out[i] = '\0';
}

/* dir/name into out, async-signal-safe.  -1 if it does not fit. */
static int join_path(const char *dir, const char *name, char *out, size_t cap)
{
	size_t d = strlen(dir), n = strlen(name);

	if (d + 1 + n + 1 > cap)
		return -1;
	memcpy(out, dir, d);
	out[d] = '/';
	memcpy(out + d + 1, name, n + 1);
	return 0;
}

/* mkdir that accepts an existing directory. */
static int make_dir(const char *path, mode_t mode)
{
	struct stat st;

	if (mkdir(path, mode) == 0)
		return 0;
	if (errno != EEXIST || lstat(path, &st) != 0 || !S_ISDIR(st.st_mode)) {
		if (errno == EEXIST)
			errno = ENOTDIR;
		return -1;
	}
	return 0;
}

/*
 * /tmp is everyone's: our directory there must be a real directory that we
 * own and no one else can write, or someone could plant links in it.
 */
static int make_private_dir(const char *path)
{
	struct stat st;

	if (make_dir(path, 0700) != 0 || lstat(path, &st) != 0)
		return -1;
	if (st.st_uid != getuid() || (st.st_mode & (S_IWGRP | S_IWOTH))) {
		errno = EPERM;
		return -1;
	}
	return 0;
}

/*
 * Candidate directory i for a process of uid (the reader's view), or for
 * this process (create set: made on the way).  0 with the path in out, -1
 * when there is no candidate i or it cannot be made.
 */
static int stats_dir(size_t i, uid_t uid, int create, char *out, size_t cap)
{
	/* secure_getenv: a program that gained privileges must not write where its caller says. */
	const char *override = secure_getenv(NS_STATS_DIR_VAR);
	const char *runtime = secure_getenv("XDG_RUNTIME_DIR");
	char base[PATH_MAX];
	int n;

	if (override != NULL && override[0] != '\0') {
		if (i != 0 || strlen(override) >= cap)
			return -1;
		strcpy(out, override);
		return create ? make_dir(out, 0755) : 0;
	}
	switch (i) {
	case 0:
		if (create && make_dir("/run/noiseshim", 0755) != 0)
			return -1;
		n = snprintf(out, cap, "/run/noiseshim/stats");
		break;
	case 1:
		/* A reader of another user's process looks where that user's runtime dir would be. */
		if (create || uid == getuid()) {
			if (runtime == NULL || runtime[0] != '/')
				return -1;
			n = snprintf(base, sizeof base, "%s/noiseshim", runtime);
		} else {
			n = snprintf(base, sizeof base, "/run/user/%u/noiseshim", (unsigned)uid);
		}
		if (n < 0 || (size_t)n >= sizeof base || (create && make_dir(base, 0700) != 0))
			return -1;
		n = snprintf(out, cap, "%s/stats", base);
		break;
	case 2:
		n = snprintf(base, sizeof base, "/tmp/noiseshim-%u", (unsigned)uid);
		if (create && make_private_dir(base) != 0)
			return -1;
		n = snprintf(out, cap, "%s/stats", base);
		break;
	default:
		return -1;
	}
	if (n < 0 || (size_t)n >= cap)
		return -1;
	return create ? make_dir(out, 0755) : 0;
}

/* When process pid started, in clock ticks since boot; 0 when unknown. */
static uint64_t process_start(pid_t pid)
{
	char path[PID_TEXT_MAX + 16], text[PROC_STAT_MAX], *p;
	FILE *f;
	size_t n;

	snprintf(path, sizeof path, "/proc/%ld/stat", (long)pid);
	f = fopen(path, "re");
	if (f == NULL)
		return 0;
	n = fread(text, 1, sizeof text - 1, f);
	fclose(f);
	text[n] = '\0';
	/* The command name, field 2, may hold spaces and parentheses: count from its end. */
	p = strrchr(text, ')');
	if (p == NULL)
		return 0;
	for (int field = 2; field < START_TIME_FIELD && p != NULL; field++)
		p = strchr(p + 1, ' ');
	return p != NULL ? strtoull(p + 1, NULL, 10) : 0;
}

/* Create and map DIR/PID in dir.  NULL with errno set. */
static struct ns_stats *create_block(const char *dir, pid_t pid)
{
	char name[PID_TEXT_MAX], path[PATH_MAX];
	struct ns_stats *b;
	int fd, saved;

	pid_text(pid, name);
	if (join_path(dir, name, path, sizeof path) != 0) {
		errno = ENAMETOOLONG;
		return NULL;
	}
	/* Whatever holds our pid's name is from a dead process: an old block or a link. */
	unlink(path);
	fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
	if (fd < 0)
		return NULL;
	/* 0644 whatever the umask: readers of counters need not be the server's user. */
	if (fchmod(fd, 0644) != 0 || ftruncate(fd, sizeof *b) != 0)
		goto err;
	b = mmap(NULL, sizeof *b, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (b == MAP_FAILED)
		goto err;
	close(fd);
	b->fields = NS_STAT_COUNT;
	b->header_size = (uint32_t)offsetof(struct ns_stats, value);
	b->owner = pid;
	b->owner_start = process_start(pid);
	atomic_store_explicit(&b->magic, magic_value(), memory_order_release);
	return b;

err:
	saved = errno;
	close(fd);
	unlink(path);
	errno = saved;
	return NULL;
}

/* A forked child: leave DIR/CHILDPID -> OWNER, so that the child's pid finds the block. */
static void after_fork_in_child(void)
{
	char name[PID_TEXT_MAX], target[PID_TEXT_MAX], path[PATH_MAX];
	pid_t self = getpid();

	/* Only system calls from here on: the parent may have had other threads. */
	if (files_left)
		return;
	pid_text(self, name);
	pid_text(block_owner, target);
	link_pid = 0;
	if (join_path(block_dir, name, path, sizeof path) != 0)
		return;
	unlink(path);
	if (symlink(target, path) == 0)
		link_pid = self;
}

static void after_fork_in_parent(void)
{
	if (getpid() == block_owner)
		owner_forked = 1;
}

/*
 * At exit: a child removes its link; the owner removes its block unless it
 * forked (children may still be adding, and their links point to it).
 */
static void remove_at_exit(void)
{
	char name[PID_TEXT_MAX], path[PATH_MAX];
	pid_t self = getpid();

	if (files_left)
		return;
	if (self == link_pid || (self == block_owner && !owner_forked)) {
		pid_text(self, name);
		if (join_path(block_dir, name, path, sizeof path) == 0)
			unlink(path);
	}
}

static void attach_once_fn(void)
{
	pid_t self = getpid();
	struct ns_stats *b = NULL;

	for (size_t i = 0; i < MAX_DIRS && b == NULL; i++)
		if (stats_dir(i, getuid(), 1, block_dir, sizeof block_dir) == 0)
			b = create_block(block_dir, self);
	if (b == NULL)
		return;
	block_owner = self;
	if (pthread_atfork(NULL, after_fork_in_parent, after_fork_in_child) != 0 ||
	    atexit(remove_at_exit) != 0) {
		/* Without the hooks a child's pid would find nothing: count nothing rather than mislead. */
		munmap(b, sizeof *b);
		remove_at_exit();
		return;
	}
	block = b;
}

struct ns_stats *ns_stats_attach(void)
{
	pthread_once(&attach_once, attach_once_fn);
	return block;
}

void ns_stats_leave_files(void)
{
	files_left = 1;
}

void ns_stats_add(enum ns_stat field, int64_t n)
{
	struct ns_stats *b = ns_stats_attach();

	if (b != NULL && (unsigned)field < NS_STAT_COUNT)
		atomic_fetch_add_explicit(&b->value[field].v, (uint64_t)n, memory_order_relaxed);
}

/* --- reader ------------------------------------------------------------------ */

static int is_running(pid_t pid)
{
	return kill(pid, 0) == 0 || errno == EPERM;
}

/* Whether a live process's link in dir points to the block named owner. */
static int block_in_use(const char *dir, const char *owner)
{
	char path[PATH_MAX], target[PID_TEXT_MAX];
	struct dirent *e;
	DIR *d = opendir(dir);
	int used = 0;

	if (d == NULL)
		return 1; /* cannot tell: keep it */
	while (!used && (e = readdir(d)) != NULL) {
		ssize_t n;

		if (join_path(dir, e->d_name, path, sizeof path) != 0)
			continue;
		n = readlink(path, target, sizeof target - 1);
		if (n <= 0)
			continue;
		target[n] = '\0';
		used = strcmp(target, owner) == 0 && is_running((pid_t)atol(e->d_name));
	}
	closedir(d);
	return used;
}

/* A dead pid's name: its link goes, its block too unless a live child still links to it. */
static void remove_stale(const char *dir, const char *name, const char *path)
{
	struct stat st;

	if (lstat(path, &st) != 0)
		return;
	if (S_ISLNK(st.st_mode) || !block_in_use(dir, name))
		unlink(path);
}

/* Remove a left-over block (a regular file): a link belongs to a live child. */
static void remove_left_over(const char *path)
{
	struct stat st;

	if (lstat(path, &st) == 0 && S_ISREG(st.st_mode))
		unlink(path);
}

/*
 * Whether b belongs to an earlier process that had its owner's pid: the
 * owner's pid runs, but started at another time.  (A dead owner is fine:
 * its forked children may still be adding.)
 */
static int is_older_owner(const struct ns_stats *b)
{
	uint64_t now = process_start((pid_t)b->owner);

	return now != 0 && b->owner_start != 0 && now != b->owner_start;
}

/*
 * Copy the block in the open file fd (reached through a link if is_link) into
 * s.  0, 1 when the block is left over from an earlier process with the same
 * pid, or -1 with the reason in err.
 */
static int copy_block(int fd, int is_link, struct ns_stats_snapshot *s, char *err,
                      size_t errlen)
{
	const struct ns_stats *b;
	struct stat st;
	int stale;

	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || (size_t)st.st_size < sizeof *b) {
		set_err(err, errlen, "%s: not a counters block", s->path);
		return -1;
	}
	b = mmap(NULL, sizeof *b, PROT_READ, MAP_SHARED, fd, 0);
	if (b == MAP_FAILED) {
		set_err(err, errlen, "%s: cannot map: %s", s->path, strerror(errno));
		return -1;
	}
	if (atomic_load_explicit(&b->magic, memory_order_acquire) != magic_value() ||
	    b->fields != NS_STAT_COUNT ||
	    b->header_size != (uint32_t)offsetof(struct ns_stats, value)) {
		set_err(err, errlen, "%s: not a counters block of this noiseshim version", s->path);
		munmap((void *)b, sizeof *b);
		return -1;
	}
	s->owner = (pid_t)b->owner;
	for (size_t i = 0; i < NS_STAT_COUNT; i++)
		s->value[i] = atomic_load_explicit(&b->value[i].v, memory_order_relaxed);
	/* Under its own name a block must be its owner's; through a link, a child's. */
	stale = is_older_owner(b) || (!is_link && s->owner != s->pid);
	munmap((void *)b, sizeof *b);
	return stale ? 1 : 0;
}

/* The uid that owns process pid, from /proc.  -1 if it is not running. */
static int process_uid(pid_t pid, uid_t *uid)
{
	char path[PID_TEXT_MAX + 8];
	struct stat st;

	snprintf(path, sizeof path, "/proc/%ld", (long)pid);
	if (stat(path, &st) != 0)
		return -1;
	*uid = st.st_uid;
	return 0;
}

/* Add path, and why it did not serve, to the list of places looked at. */
static void note_looked(char *looked, size_t cap, size_t *used, const char *path,
                        const char *why)
{
	int n;

	if (*used >= cap)
		return;
	n = snprintf(looked + *used, cap - *used, "%s%s%s", *used == 0 ? "" : ", ", path, why);
	*used = n < 0 ? cap : *used + (size_t)n;
}

/* Whether path is a symbolic link (a child's pointer to its parent's block). */
static int is_symlink(const char *path)
{
	struct stat st;

	return lstat(path, &st) == 0 && S_ISLNK(st.st_mode);
}

int ns_stats_read(pid_t pid, struct ns_stats_snapshot *s, char *err, size_t errlen)
{
	char dir[PATH_MAX], name[PID_TEXT_MAX], looked[MAX_DIRS * PATH_MAX];
	size_t used = 0;
	uid_t uid = getuid();
	int running = process_uid(pid, &uid) == 0;

	memset(s, 0, sizeof *s);
	s->pid = pid;
	pid_text(pid, name);
	looked[0] = '\0';
	for (size_t i = 0; i < MAX_DIRS; i++) {
		int fd, copied;

		if (stats_dir(i, uid, 0, dir, sizeof dir) != 0 ||
		    join_path(dir, name, s->path, sizeof s->path) != 0)
			continue;
		if (!running) {
			remove_stale(dir, name, s->path);
			continue;
		}
		fd = open(s->path, O_RDONLY | O_CLOEXEC);
		if (fd < 0) {
			note_looked(looked, sizeof looked, &used, s->path, "");
			continue;
		}
		copied = copy_block(fd, is_symlink(s->path), s, err, errlen);
		close(fd);
		if (copied < 0)
			return -1;
		if (copied == 0)
			return 0;
		/* An earlier process's: it tells nothing about this one. */
		remove_left_over(s->path);
		note_looked(looked, sizeof looked, &used, s->path, " (left over, removed)");
	}
	memset(s->value, 0, sizeof s->value);
	if (!running)
		set_err(err, errlen, "pid %ld is not running", (long)pid);
	else
		set_err(err, errlen,
		        "no counters for pid %ld (looked for %s): it runs under no shim, or its "
		        "shim has not counted anything yet", (long)pid, looked[0] ? looked : "nothing");
	return -1;
}
