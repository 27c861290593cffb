/*
 * The counters block: attach, exact adds, children adding to their
 * parent's block through fork, what readers see, what a reader refuses
 * (a block that is not the asked process's), and what is removed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "stats.h"

/* The argument that makes this program attach and exit, for a process that attaches afresh. */
#define ATTACH_ONLY "--attach-only"

static char dir[64];

/* Field 22 of /proc/PID/stat: when pid started; 0 if it is not running. */
static unsigned long long start_of(pid_t pid)
{
	char path[64], text[1024], *p;
	unsigned long long start = 0;
	FILE *f;
	size_t n;

	snprintf(path, sizeof path, "/proc/%ld/stat", (long)pid);
	if ((f = fopen(path, "r")) == NULL)
		return 0;
	n = fread(text, 1, sizeof text - 1, f);
	fclose(f);
	text[n] = '\0';
	p = strrchr(text, ')');
	for (int field = 2; field < 22 && p != NULL; field++)
		p = strchr(p + 1, ' ');
	if (p != NULL)
		sscanf(p + 1, "%llu", &start);
	return start;
}

/* DIR/PID.START of pid, which must be running. */
static void path_of(pid_t pid, char *out, size_t cap)
{
	snprintf(out, cap, "%s/%ld.%llu", dir, (long)pid, start_of(pid));
}

/* Make DIR/NAME: a link to target, or an empty file when target is NULL. */
static void make_entry(const char *name, const char *target)
{
	char path[PATH_MAX];
	FILE *f;

	snprintf(path, sizeof path, "%s/%s", dir, name);
	if (target != NULL) {
		assert_int_equal(symlink(target, path), 0);
		return;
	}
	assert_non_null(f = fopen(path, "w"));
	assert_int_equal(fclose(f), 0);
}

static int entry_exists(const char *name)
{
	char path[PATH_MAX];
	struct stat st;

	snprintf(path, sizeof path, "%s/%s", dir, name);
	return lstat(path, &st) == 0;
}

/* Whether DIR holds an entry PID.START for pid, whatever START: dead processes' too. */
static int exists(pid_t pid)
{
	char prefix[32];
	struct dirent *e;
	DIR *d = opendir(dir);
	int found = 0;

	assert_non_null(d);
	snprintf(prefix, sizeof prefix, "%ld.", (long)pid);
	while (!found && (e = readdir(d)) != NULL)
		found = strncmp(e->d_name, prefix, strlen(prefix)) == 0;
	closedir(d);
	return found;
}

/* A pid that has just exited (until the kernel gives it out again). */
static pid_t dead_pid(void)
{
	pid_t pid = fork();

	assert_true(pid >= 0);
	if (pid == 0)
		_exit(0);
	assert_int_equal(waitpid(pid, NULL, 0), pid);
	return pid;
}

/* Run body in a child; the child's exit status (0 when body returned 0). */
static int in_child(int (*body)(void))
{
	pid_t pid = fork();
	int status;

	assert_true(pid >= 0);
	if (pid == 0)
		exit(body());
	assert_int_equal(waitpid(pid, &status, 0), pid);
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

static int count_alone(void)
{
	struct ns_stats_snapshot s;
	char err[NS_STATS_ERR_MAX];

	ns_stats_add(NS_STAT_BYTES_IN, 5);
	if (ns_stats_read(getpid(), &s, err, sizeof err) != 0 || s.value[NS_STAT_BYTES_IN] != 5 ||
	    s.owner != getpid() || !exists(getpid()))
		return 1;
	return 0;
}

/* Must run first: the test process itself has not attached yet. */
static void test_block_of_a_process_that_never_forked_goes_at_exit(void **state)
{
	pid_t before = getpid();

	assert_int_equal(in_child(count_alone), 0);
	/* Every file in the directory is gone: the child's block went with it. */
	assert_int_equal(rmdir(dir), 0);
	assert_int_equal(mkdir(dir, 0755), 0);
	assert_int_equal(getpid(), before);
}

static void test_attach_and_exact_adds(void **state)
{
	struct ns_stats *b = ns_stats_attach();
	struct ns_stats_snapshot s;
	char err[NS_STATS_ERR_MAX], path[PATH_MAX];
	struct stat st;

	assert_non_null(b);
	assert_ptr_equal(ns_stats_attach(), b);
	path_of(getpid(), path, sizeof path);
	assert_int_equal(lstat(path, &st), 0);
	assert_true(S_ISREG(st.st_mode));
	assert_int_equal(st.st_mode & 0777, 0644);

	for (int i = 0; i < NS_STAT_COUNT; i++)
		ns_stats_add((enum ns_stat)i, 1000 + i);
	ns_stats_add(NS_STAT_CONNECTIONS_OPEN, -3);
	ns_stats_add(NS_STAT_COUNT, 1); /* not a field: ignored */
	assert_int_equal(ns_stats_read(getpid(), &s, err, sizeof err), 0);
	assert_int_equal(s.pid, getpid());
	assert_int_equal(s.owner, getpid());
	assert_string_equal(s.path, path);
	for (int i = 0; i < NS_STAT_COUNT; i++)
		assert_int_equal(s.value[i], 1000 + i - (i == NS_STAT_CONNECTIONS_OPEN ? 3 : 0));
}

static int pipe_to_child[2], pipe_to_parent[2];

/* The worker: adds, says so, waits to be told to exit. */
static int worker(void)
{
	char c = 'x';

	ns_stats_add(NS_STAT_HANDSHAKES_OK, 7);
	ns_stats_add(NS_STAT_CONNECTIONS_OPEN, 1);
	if (write(pipe_to_parent[1], &c, 1) != 1 || read(pipe_to_child[0], &c, 1) != 1)
		return 1;
	return 0;
}

static void test_children_add_to_the_parents_block(void **state)
{
	struct ns_stats_snapshot before, s;
	char err[NS_STATS_ERR_MAX], path[PATH_MAX], target[64], expected[64];
	pid_t pid;
	ssize_t n;
	int status;
	char c;

	assert_int_equal(ns_stats_read(getpid(), &before, err, sizeof err), 0);
	assert_int_equal(pipe(pipe_to_child), 0);
	assert_int_equal(pipe(pipe_to_parent), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		exit(worker());
	assert_int_equal(read(pipe_to_parent[0], &c, 1), 1);

	/* The child's pid finds the parent's block through its link, both named with start times. */
	path_of(pid, path, sizeof path);
	n = readlink(path, target, sizeof target - 1);
	assert_true(n > 0);
	target[n] = '\0';
	snprintf(expected, sizeof expected, "%ld.%llu", (long)getpid(), start_of(getpid()));
	assert_string_equal(target, expected);
	assert_int_equal(ns_stats_read(pid, &s, err, sizeof err), 0);
	assert_int_equal(s.pid, pid);
	assert_int_equal(s.owner, getpid());
	assert_int_equal(s.value[NS_STAT_HANDSHAKES_OK], before.value[NS_STAT_HANDSHAKES_OK] + 7);
	assert_int_equal(s.value[NS_STAT_CONNECTIONS_OPEN],
	                 before.value[NS_STAT_CONNECTIONS_OPEN] + 1);
	assert_int_equal(ns_stats_read(getpid(), &s, err, sizeof err), 0);
	assert_int_equal(s.value[NS_STAT_HANDSHAKES_OK], before.value[NS_STAT_HANDSHAKES_OK] + 7);

	/* The child exits: its link goes, the parent's block stays. */
	assert_int_equal(write(pipe_to_child[1], "x", 1), 1);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	assert_false(exists(pid));
	assert_true(exists(getpid()));
	close(pipe_to_child[0]);
	close(pipe_to_child[1]);
	close(pipe_to_parent[0]);
	close(pipe_to_parent[1]);
}

static int die_at_once(void)
{
	_exit(0);
}

/* A child that left the files alone (sandboxed): its link stays, and its own child makes none. */
static int leave_files_then_fork(void)
{
	pid_t grandchild;
	int status;

	ns_stats_leave_files();
	ns_stats_add(NS_STAT_BYTES_OUT, 1);
	if ((grandchild = fork()) < 0)
		return 1;
	if (grandchild == 0)
		exit(exists(getpid()) ? 1 : 0);
	if (waitpid(grandchild, &status, 0) != grandchild || !WIFEXITED(status) ||
	    WEXITSTATUS(status) != 0)
		return 2;
	return 0;
}

static void test_a_process_that_left_the_files_removes_nothing(void **state)
{
	struct ns_stats_snapshot s;
	char err[NS_STATS_ERR_MAX];
	uint64_t before;
	pid_t child;
	int status;

	assert_non_null(ns_stats_attach());
	assert_int_equal(ns_stats_read(getpid(), &s, err, sizeof err), 0);
	before = s.value[NS_STAT_BYTES_OUT];
	child = fork();
	assert_true(child >= 0);
	if (child == 0)
		exit(leave_files_then_fork());
	assert_int_equal(waitpid(child, &status, 0), child);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	/* The child's link outlived it, until a reader swept it; its add still counted. */
	assert_true(exists(child));
	assert_int_equal(ns_stats_read(getpid(), &s, err, sizeof err), 0);
	assert_int_equal(s.value[NS_STAT_BYTES_OUT], before + 1);
	assert_false(exists(child));
}

static void test_what_dead_processes_leave_is_removed(void **state)
{
	char err[NS_STATS_ERR_MAX], name[64];
	struct ns_stats_snapshot s;
	pid_t dead = fork();

	assert_true(dead >= 0);
	if (dead == 0)
		die_at_once();
	assert_int_equal(waitpid(dead, NULL, 0), dead);

	/* The link of a child that left by _exit, without removing it. */
	assert_true(exists(dead));
	assert_int_equal(ns_stats_read(dead, &s, err, sizeof err), -1);
	assert_non_null(strstr(err, "is not running"));
	assert_false(exists(dead));

	/* A block left by a killed owner, with no live child linking to it. */
	snprintf(name, sizeof name, "%ld.12345", (long)dead);
	make_entry(name, NULL);
	assert_int_equal(ns_stats_read(dead, &s, err, sizeof err), -1);
	assert_false(exists(dead));

	/* Our own block is in use: it stays. */
	assert_true(exists(getpid()));
}

/* A new image of this test that attaches and exits: a fork would inherit our attachment. */
static int attach_in_new_process(void)
{
	execl("/proc/self/exe", "test_stats", ATTACH_ONLY, (char *)NULL);
	return 127;
}

/*
 * A process that attaches removes what exited processes left, links and
 * blocks, whether or not their exit handlers ran, and an entry named for
 * a live pid but another start time; it keeps a dead owner's block that a
 * live process's link leads to, and files that are not ours.
 */
static void test_attach_sweeps_what_exited_processes_left(void **state)
{
	char dead_block[64], dead_link[64], old_layout[64], reused[64], kept_block[64], live_link[64];
	char path[PATH_MAX];
	pid_t dead = dead_pid(), parent = getppid();

	snprintf(dead_block, sizeof dead_block, "%ld.111", (long)dead);
	snprintf(dead_link, sizeof dead_link, "%ld.222", (long)dead_pid());
	snprintf(old_layout, sizeof old_layout, "%ld", (long)dead_pid());
	snprintf(reused, sizeof reused, "%ld.%llu", (long)parent, start_of(parent) + 1);
	snprintf(kept_block, sizeof kept_block, "%ld.333", (long)dead_pid());
	snprintf(live_link, sizeof live_link, "%ld.%llu", (long)parent, start_of(parent));
	make_entry(dead_block, NULL);
	make_entry(dead_link, dead_block);
	make_entry(old_layout, NULL);
	make_entry(reused, NULL);
	make_entry(kept_block, NULL);
	make_entry(live_link, kept_block);
	make_entry("notes.txt", NULL);

	assert_int_equal(in_child(attach_in_new_process), 0);
	assert_false(entry_exists(dead_block));
	assert_false(entry_exists(dead_link));
	assert_false(entry_exists(old_layout));
	assert_false(entry_exists(reused));
	assert_true(entry_exists(kept_block));
	assert_true(entry_exists(live_link));
	assert_true(entry_exists("notes.txt"));
	assert_true(exists(getpid()));

	/* Once the live link goes, the block it kept goes with the next sweep. */
	snprintf(path, sizeof path, "%s/%s", dir, live_link);
	assert_int_equal(unlink(path), 0);
	assert_int_equal(in_child(attach_in_new_process), 0);
	assert_false(entry_exists(kept_block));
	snprintf(path, sizeof path, "%s/notes.txt", dir);
	assert_int_equal(unlink(path), 0);
}

static void test_live_process_without_a_block(void **state)
{
	char err[NS_STATS_ERR_MAX], path[PATH_MAX];
	struct ns_stats_snapshot s;
	pid_t parent = getppid();
	FILE *fp;

	assert_int_equal(ns_stats_read(parent, &s, err, sizeof err), -1);
	assert_non_null(strstr(err, "no counters for pid"));
	path_of(parent, path, sizeof path);
	assert_non_null(strstr(err, path));

	/* Something else under that name is refused, naming the file. */
	assert_non_null(fp = fopen(path, "w"));
	fputs("not counters\n", fp);
	assert_int_equal(fclose(fp), 0);
	assert_int_equal(ns_stats_read(parent, &s, err, sizeof err), -1);
	assert_non_null(strstr(err, "not a counters block"));
	assert_non_null(strstr(err, path));
	assert_int_equal(unlink(path), 0);
}

/* A block under a live process's name that is not its own is refused, naming the owner. */
static void test_a_block_under_another_name_is_refused(void **state)
{
	char err[NS_STATS_ERR_MAX], mine[PATH_MAX], theirs[PATH_MAX], cmd[2 * PATH_MAX + 16];
	char owner[64];
	struct ns_stats_snapshot s;
	pid_t parent = getppid();

	path_of(getpid(), mine, sizeof mine);
	path_of(parent, theirs, sizeof theirs);
	snprintf(cmd, sizeof cmd, "cp %s %s", mine, theirs);
	assert_int_equal(system(cmd), 0);
	assert_int_equal(ns_stats_read(parent, &s, err, sizeof err), -1);
	snprintf(owner, sizeof owner, "holds the counters of pid %ld started at tick %llu",
	         (long)getpid(), start_of(getpid()));
	assert_non_null(strstr(err, owner));
	assert_non_null(strstr(err, "refused"));
	assert_int_equal(s.value[NS_STAT_HANDSHAKES_OK], 0);
	assert_int_equal(unlink(theirs), 0);
	/* Our own stays readable. */
	assert_int_equal(ns_stats_read(getpid(), &s, err, sizeof err), 0);
}

/*
 * Counters left under a pid by an earlier process are not those of the
 * process that has the pid now: the reader says so, and they go.
 */
static void test_an_earlier_process_with_the_pid_is_not_this_one(void **state)
{
	char err[NS_STATS_ERR_MAX], mine[PATH_MAX], earlier[PATH_MAX], cmd[2 * PATH_MAX + 16];
	struct ns_stats_snapshot s;
	pid_t parent = getppid();

	path_of(getpid(), mine, sizeof mine);
	snprintf(earlier, sizeof earlier, "%s/%ld.%llu", dir, (long)parent, start_of(parent) - 1);
	snprintf(cmd, sizeof cmd, "cp %s %s", mine, earlier);
	assert_int_equal(system(cmd), 0);
	assert_int_equal(ns_stats_read(parent, &s, err, sizeof err), -1);
	assert_non_null(strstr(err, "no counters for pid"));
	assert_non_null(strstr(err, earlier));
	assert_non_null(strstr(err, "earlier process"));
	assert_int_equal(s.value[NS_STAT_HANDSHAKES_OK], 0);
	assert_false(entry_exists(strrchr(earlier, '/') + 1));
}

static void test_field_names(void **state)
{
	static const char *const want[NS_STAT_COUNT] = {
		"handshakes_ok", "handshakes_failed", "replays_refused", "clients_refused",
		"connections_open", "bytes_in", "bytes_out", "tfo_syn_data",
	};

	for (int i = 0; i < NS_STAT_COUNT; i++) {
		assert_string_equal(ns_stat_name((enum ns_stat)i), want[i]);
		assert_true(strlen(ns_stat_help((enum ns_stat)i)) > 0);
		assert_int_equal(ns_stat_is_gauge((enum ns_stat)i), i == NS_STAT_CONNECTIONS_OPEN);
	}
}

static int remove_dir(void **state)
{
	char path[PATH_MAX];

	path_of(getpid(), path, sizeof path);
	unlink(path);
	rmdir(dir);
	return 0;
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_block_of_a_process_that_never_forked_goes_at_exit),
		cmocka_unit_test(test_attach_and_exact_adds),
		cmocka_unit_test(test_children_add_to_the_parents_block),
		cmocka_unit_test(test_a_process_that_left_the_files_removes_nothing),
		cmocka_unit_test(test_what_dead_processes_leave_is_removed),
		cmocka_unit_test(test_attach_sweeps_what_exited_processes_left),
		cmocka_unit_test(test_live_process_without_a_block),
		cmocka_unit_test(test_a_block_under_another_name_is_refused),
		cmocka_unit_test(test_an_earlier_process_with_the_pid_is_not_this_one),
		cmocka_unit_test(test_field_names),
	};

	if (argc == 2 && strcmp(argv[1], ATTACH_ONLY) == 0)
		return ns_stats_attach() != NULL ? 0 : 1;
	strcpy(dir, "/tmp/test_stats.XXXXXX");
	if (mkdtemp(dir) == NULL || setenv("NOISESHIM_STATS_DIR", dir, 1) != 0)
		return 1;
	return cmocka_run_group_tests(tests, NULL, remove_dir);
}
