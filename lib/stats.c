/*
 * Counters of a wrapped process in a shared file mapping: the writer side
 * (attach, add, fork, exit), the sweep of what exited processes left, and
 * the reader side (find, check, copy).
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
	/* PID.START: a pid and a 64-bit start time in decimal. */
	ENTRY_NAME_MAX = PID_TEXT_MAX + 1 + 21,
};

/* Who a directory entry's name says it belongs to: PID.START, or PID alone before start times. */
struct entry_id {
	pid_t pid;
	uint64_t start; /* 0: not recorded */
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
static char block_name[ENTRY_NAME_MAX]; /* OWNER.START, which children's links point to */
static pid_t block_owner;
static volatile sig_atomic_t owner_forked;
static pid_t link_pid; /* the child that made DIR/link_name, or 0 */
static char link_name[ENTRY_NAME_MAX];
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

/* Decimal text of v at out, NUL-terminated; its length.  async-signal-safe, for the fork handler. */
static size_t decimal_text(uint64_t v, char out[PID_TEXT_MAX])
{
	char rev[PID_TEXT_MAX];
	size_t len = 0, i = 0;

	do {
		rev[len++] = (char)('0' + v % 10);
		v /= 10;
	} while (v != 0 && len < PID_TEXT_MAX - 1);
	while (len > 0)
		out[i++] = rev[--len];
	out[i] = '\0';
	return i;
}

/* The name of process pid's entry, PID.START, at out; async-signal-safe. */
static void entry_name(pid_t pid, uint64_t start, char out[ENTRY_NAME_MAX])
{
	size_t n = decimal_text((uint64_t)pid, out);

	out[n++] = '.';
	decimal_text(start, out + n);
}

/* Digits at *p, moved past them: the number, or -1 when there are none or too many. */
static int64_t parse_decimal(const char **p)
{
	uint64_t v = 0;
	const char *start = *p;

	while (**p >= '0' && **p <= '9' && *p - start < 19)
		v = v * 10 + (uint64_t)(*(*p)++ - '0');
	return *p == start || (**p >= '0' && **p <= '9') ? -1 : (int64_t)v;
}

/* Whose entry name is: 0 with *id filled, -1 when it is no name of ours. */
static int parse_entry_name(const char *name, struct entry_id *id)
{
	const char *p = name;
	int64_t pid = parse_decimal(&p), start = 0;

	if (pid <= 0 || pid > INT32_MAX)
		return -1;
	if (*p == '.') {
		p++;
		if ((start = parse_decimal(&p)) <= 0)
			return -1;
	}
	if (*p != '\0')
		return -1;
	id->pid = (pid_t)pid;
	id->start = (uint64_t)start;
	return 0;
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

/*
 * When process pid started, in clock ticks since boot: with the pid, it
 * names one process for the life of the host.  0 when pid has exited (a
 * zombie too: it counts nothing any more).  async-signal-safe, for the
 * fork handler: system calls and plain parsing only.
 */
static uint64_t process_start(pid_t pid)
{
	char path[PID_TEXT_MAX + 16] = "/proc/", text[PROC_STAT_MAX];
	const char *p;
	int64_t start;
	ssize_t n;
	int fd;

	decimal_text((uint64_t)pid, path + strlen(path));
	memcpy(path + strlen(path), "/stat", sizeof "/stat");
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return 0;
	n = read(fd, text, sizeof text - 1);
	close(fd);
	if (n <= 0)
		return 0;
	text[n] = '\0';
	/* The command name, field 2, may hold spaces and parentheses: count from its end. */
	if ((p = strrchr(text, ')')) == NULL || p[1] != ' ' || p[2] == 'Z' || p[2] == 'X')
		return 0;
	for (int field = 2; field < START_TIME_FIELD && p != NULL; field++)
		p = strchr(p + 1, ' ');
	if (p == NULL)
		return 0;
	p++;
	start = parse_decimal(&p);
	return start > 0 ? (uint64_t)start : 0;
}

/* Whether the process an entry names still runs: the same pid, started at the same time. */
static int entry_alive(const struct entry_id *id)
{
	uint64_t now = process_start(id->pid);

	return now != 0 && (id->start == 0 || id->start == now);
}

/* --- sweep ------------------------------------------------------------------ */

/* One entry of a counters directory, as the sweep finds it. */
struct dir_entry {
	char name[ENTRY_NAME_MAX];
	char target[ENTRY_NAME_MAX]; /* a link's: the name of the block it leads to */
	int is_link;
	int alive;                   /* the process its name names still runs */
};

static void describe_entry(const char *dir, const char *name, const struct entry_id *id,
                           struct dir_entry *out)
{
	char path[PATH_MAX];
	ssize_t n = -1;

	snprintf(out->name, sizeof out->name, "%.*s", ENTRY_NAME_MAX - 1, name);
	out->alive = entry_alive(id);
	/* readlink tells a link from a block in the same call that reads where it leads. */
	if (join_path(dir, name, path, sizeof path) == 0)
		n = readlink(path, out->target, sizeof out->target - 1);
	out->is_link = n >= 0;
	out->target[n >= 0 ? n : 0] = '\0';
}

/*
 * The entries of dir whose names are ours, in *n.  NULL (and *n 0) when dir
 * cannot be read or memory runs out: a partial list could miss the live
 * link that keeps a block in use.
 */
static struct dir_entry *read_entries(const char *dir, size_t *n)
{
	struct dir_entry *list = NULL, *grown;
	struct entry_id id;
	struct dirent *e;
	size_t cap = 0;
	DIR *d;

	*n = 0;
	if ((d = opendir(dir)) == NULL)
		return NULL;
	while ((e = readdir(d)) != NULL) {
		if (parse_entry_name(e->d_name, &id) != 0)
			continue;
		if (*n == cap) {
			cap = cap == 0 ? 64 : 2 * cap;
			if ((grown = realloc(list, cap * sizeof *list)) == NULL)
				goto err;
			list = grown;
		}
		describe_entry(dir, e->d_name, &id, &list[(*n)++]);
	}
	closedir(d);
	return list;

err:
	closedir(d);
	free(list);
	*n = 0;
	return NULL;
}

/* Whether a live process's link leads to the block named name. */
static int block_in_use(const struct dir_entry *list, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (list[i].is_link && list[i].alive && strcmp(list[i].target, name) == 0)
			return 1;
	return 0;
}

/*
 * Remove from dir what processes that have exited left behind, whether
 * their exit handlers ran or not: their links, and their blocks unless the
 * link of a live child (a pre-fork server's worker) still leads there.
 */
static void sweep(const char *dir)
{
	char path[PATH_MAX];
	size_t n;
	struct dir_entry *list = read_entries(dir, &n);

	for (size_t i = 0; i < n; i++) {
		const struct dir_entry *e = &list[i];

		if (e->alive || (!e->is_link && block_in_use(list, n, e->name)))
			continue;
		if (join_path(dir, e->name, path, sizeof path) == 0)
			unlink(path);
	}
	free(list);
}

/* --- writer ------------------------------------------------------------------ */

/* Create and map DIR/PID.START in dir.  NULL with errno set. */
static struct ns_stats *create_block(const char *dir, pid_t pid, uint64_t start)
{
	char name[ENTRY_NAME_MAX], path[PATH_MAX];
	struct ns_stats *b;
	int fd, saved;

	entry_name(pid, start, name);
	if (join_path(dir, name, path, sizeof path) != 0) {
		errno = ENAMETOOLONG;
		return NULL;
	}
	/* Our name can only be taken by this process before an exec: its link or its old block. */
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
	b->owner_start = start;
	atomic_store_explicit(&b->magic, magic_value(), memory_order_release);
	return b;

err:
	saved = errno;
	close(fd);
	unlink(path);
	errno = saved;
	return NULL;
}

/* A forked child: leave DIR/CHILDPID.START -> OWNER.START, so that the child's pid finds the block. */
static void after_fork_in_child(void)
{
	char path[PATH_MAX];
	pid_t self = getpid();
	uint64_t start;

	/* Only system calls from here on: the parent may have had other threads. */
	link_pid = 0;
	if (files_left || (start = process_start(self)) == 0)
		return;
	entry_name(self, start, link_name);
	if (join_path(block_dir, link_name, path, sizeof path) == 0 && symlink(block_name, path) == 0)
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
	char path[PATH_MAX];
	pid_t self = getpid();
	const char *name = NULL;

	if (self == link_pid)
		name = link_name;
	else if (self == block_owner && !owner_forked)
		name = block_name;
	if (!files_left && name != NULL && join_path(block_dir, name, path, sizeof path) == 0)
		unlink(path);
}

static void attach_once_fn(void)
{
	pid_t self = getpid();
	uint64_t start = process_start(self);
	struct ns_stats *b = NULL;

	/* Without its start time no name would tell this process from a later one with its pid. */
	if (start == 0)
		return;
	for (size_t i = 0; i < MAX_DIRS && b == NULL; i++)
		if (stats_dir(i, getuid(), 1, block_dir, sizeof block_dir) == 0)
			b = create_block(block_dir, self, start);
	if (b == NULL)
		return;
	block_owner = self;
	entry_name(self, start, block_name);
	if (pthread_atfork(NULL, after_fork_in_parent, after_fork_in_child) != 0 ||
	    atexit(remove_at_exit) != 0) {
		/* Without the hooks a child's pid would find nothing: count nothing rather than mislead. */
		munmap(b, sizeof *b);
		remove_at_exit();
		return;
	}
	block = b;
	/* Every process that attaches clears what exited ones left, so the directory stays small. */
	if (!files_left)
		sweep(block_dir);
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

/*
 * Whose block the entry name at path must hold: the process a link's
 * target names, else the one name itself names.  -1 if neither is ours.
 */
static int expected_owner(const char *path, const char *name, struct entry_id *owner)
{
	char target[ENTRY_NAME_MAX];
	ssize_t n = readlink(path, target, sizeof target - 1);

	if (n < 0)
		return parse_entry_name(name, owner);
	target[n] = '\0';
	return parse_entry_name(target, owner);
}

/* Whether the mapped block b is one this version writes. */
static int is_current_block(const struct ns_stats *b)
{
	return atomic_load_explicit(&b->magic, memory_order_acquire) == magic_value() &&
	       b->fields == NS_STAT_COUNT &&
	       b->header_size == (uint32_t)offsetof(struct ns_stats, value);
}

/*
 * Copy the block in the open file fd into s, once it proves to be the
 * block of owner: a name and what it holds must tell the same process.
 * 0, or -1 with the reason in err.
 */
static int copy_block(int fd, const struct entry_id *owner, struct ns_stats_snapshot *s,
                      char *err, size_t errlen)
{
	const struct ns_stats *b;
	struct stat st;
	int rc = -1;

	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || (size_t)st.st_size < sizeof *b) {
		set_err(err, errlen, "%s: not a counters block", s->path);
		return -1;
	}
	b = mmap(NULL, sizeof *b, PROT_READ, MAP_SHARED, fd, 0);
	if (b == MAP_FAILED) {
		set_err(err, errlen, "%s: cannot map: %s", s->path, strerror(errno));
		return -1;
	}
	if (!is_current_block(b)) {
		set_err(err, errlen, "%s: not a counters block of this noiseshim version", s->path);
	} else if (b->owner != owner->pid || b->owner_start != owner->start) {
		set_err(err, errlen, "%s: holds the counters of pid %lld started at tick %llu, not "
		        "those of pid %ld started at tick %llu: refused", s->path, (long long)b->owner,
		        (unsigned long long)b->owner_start, (long)owner->pid,
		        (unsigned long long)owner->start);
	} else {
		s->owner = (pid_t)b->owner;
		for (size_t i = 0; i < NS_STAT_COUNT; i++)
			s->value[i] = atomic_load_explicit(&b->value[i].v, memory_order_relaxed);
		rc = 0;
	}
	munmap((void *)b, sizeof *b);
	return rc;
}

/*
 * Read the block of the process id names from dir into s.  0, 1 when dir
 * has no entry for it, or -1 with the reason in err.
 */
static int read_in_dir(const char *dir, const struct entry_id *id, struct ns_stats_snapshot *s,
                       char *err, size_t errlen)
{
	char name[ENTRY_NAME_MAX];
	struct entry_id owner;
	int fd, rc;

	entry_name(id->pid, id->start, name);
	if (join_path(dir, name, s->path, sizeof s->path) != 0)
		return 1;
	if ((fd = open(s->path, O_RDONLY | O_CLOEXEC)) < 0)
		return 1;
	if (expected_owner(s->path, name, &owner) != 0) {
		set_err(err, errlen, "%s: leads to no counters block", s->path);
		rc = -1;
	} else {
		rc = copy_block(fd, &owner, s, err, errlen);
	}
	close(fd);
	return rc;
}

/* Whether dir holds an entry of an earlier process that had id's pid; its path into found. */
static int find_earlier(const char *dir, const struct entry_id *id, char found[PATH_MAX])
{
	struct entry_id other;
	struct dirent *e;
	DIR *d = opendir(dir);
	int seen = 0;

	if (d == NULL)
		return 0;
	while (!seen && (e = readdir(d)) != NULL)
		seen = parse_entry_name(e->d_name, &other) == 0 && other.pid == id->pid &&
		       other.start != id->start && join_path(dir, e->d_name, found, PATH_MAX) == 0;
	closedir(d);
	return seen;
}

/* The uid that owns process pid, from /proc; ours when it is not running. */
static uid_t process_uid(pid_t pid)
{
	char path[PID_TEXT_MAX + 8];
	struct stat st;

	snprintf(path, sizeof path, "/proc/%ld", (long)pid);
	return stat(path, &st) == 0 ? st.st_uid : getuid();
}

/* Add path to the list of places looked at. */
static void note_looked(char *looked, size_t cap, size_t *used, const char *path)
{
	int n;

	if (*used >= cap)
		return;
	n = snprintf(looked + *used, cap - *used, "%s%s", *used == 0 ? "" : ", ", path);
	*used = n < 0 ? cap : *used + (size_t)n;
}

/* Why a running process has no counters, in err. */
static void explain_missing(const struct entry_id *id, const char *looked, const char *earlier,
                            char *err, size_t errlen)
{
	if (earlier[0] != '\0')
		set_err(err, errlen, "no counters for pid %ld: %s was left by an earlier process with "
		        "that pid, which has exited (now removed); this one runs under no shim, or its "
		        "shim has not counted anything yet", (long)id->pid, earlier);
	else
		set_err(err, errlen, "no counters for pid %ld (looked for %s): it runs under no shim, "
		        "or its shim has not counted anything yet", (long)id->pid,
		        looked[0] != '\0' ? looked : "nothing");
}

int ns_stats_read(pid_t pid, struct ns_stats_snapshot *s, char *err, size_t errlen)
{
	char dir[PATH_MAX], looked[MAX_DIRS * PATH_MAX] = "", earlier[PATH_MAX] = "";
	struct entry_id id = { .pid = pid, .start = process_start(pid) };
	uid_t uid = process_uid(pid);
	size_t used = 0;
	int rc = 1;

	memset(s, 0, sizeof *s);
	s->pid = pid;
	for (size_t i = 0; i < MAX_DIRS && rc == 1; i++) {
		if (stats_dir(i, uid, 0, dir, sizeof dir) != 0)
			continue;
		if (id.start != 0 && (rc = read_in_dir(dir, &id, s, err, errlen)) == 1) {
			note_looked(looked, sizeof looked, &used, s->path);
			if (earlier[0] == '\0')
				find_earlier(dir, &id, earlier);
		}
		/* Reading is the other moment the directory is cleared of what exited processes left. */
		sweep(dir);
	}
	if (rc == 0)
		return 0;
	memset(s->value, 0, sizeof s->value);
	if (id.start == 0)
		set_err(err, errlen, "pid %ld is not running", (long)pid);
	else if (rc == 1)
		explain_missing(&id, looked, earlier, err, errlen);
	return -1;
}
