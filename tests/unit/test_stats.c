/*
 * The counters block: attach, exact adds, children adding to their
 * parent's block through fork, what readers see, and what is removed.
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
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "stats.h"

static char dir[64];

static void path_of(pid_t pid, char *out, size_t cap)
{
	snprintf(out, cap, "%s/%ld", dir, (long)pid);
}

static int exists(pid_t pid)
{
	char path[PATH_MAX];
	struct stat st;

	path_of(pid, path, sizeof path);
	return lstat(path, &st) == 0;
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
	char err[NS_STATS_ERR_MAX], path[PATH_MAX], target[32];
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

	/* The child's pid finds the parent's block through its link. */
	path_of(pid, path, sizeof path);
	n = readlink(path, target, sizeof target - 1);
	assert_true(n > 0);
	target[n] = '\0';
	assert_int_equal(atol(target), getpid());
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
	char err[NS_STATS_ERR_MAX], path[PATH_MAX];
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
	/* The child's link outlived it; its add still counted. */
	assert_true(exists(child));
	path_of(child, path, sizeof path);
	assert_int_equal(unlink(path), 0);
	assert_int_equal(ns_stats_read(getpid(), &s, err, sizeof err), 0);
	assert_int_equal(s.value[NS_STAT_BYTES_OUT], before + 1);
}

static void test_what_dead_processes_leave_is_removed(void **state)
{
	char err[NS_STATS_ERR_MAX], path[PATH_MAX];
	struct ns_stats_snapshot s;
	pid_t dead = fork();
	FILE *fp;

	assert_true(dead >= 0);
	if (dead == 0)
		die_at_once();
	assert_int_equal(waitpid(dead, NULL, 0), dead);

	/* The link of a child that left by _exit, without removing it. */
	path_of(dead, path, sizeof path);
	assert_true(exists(dead));
	assert_int_equal(ns_stats_read(dead, &s, err, sizeof err), -1);
	assert_non_null(strstr(err, "is not running"));
	assert_false(exists(dead));

	/* A block left by a killed owner, with no live child linking to it. */
	fp = fopen(path, "w");
	assert_non_null(fp);
	assert_int_equal(fclose(fp), 0);
	assert_int_equal(ns_stats_read(dead, &s, err, sizeof err), -1);
	assert_false(exists(dead));

	/* Our own block is in use: it stays. */
	assert_true(exists(getpid()));
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
	fp = fopen(path, "w");
	assert_non_null(fp);
	fputs("not counters\n", fp);
	assert_int_equal(fclose(fp), 0);
	assert_int_equal(ns_stats_read(parent, &s, err, sizeof err), -1);
	assert_non_null(strstr(err, "not a counters block"));
	assert_non_null(strstr(err, path));
	assert_int_equal(unlink(path), 0);
}

/* A block under a live pid's name that its owner did not make there is left over: not read. */
static void test_a_block_under_another_name_is_left_over(void **state)
{
	char err[NS_STATS_ERR_MAX], mine[PATH_MAX], theirs[PATH_MAX], cmd[2 * PATH_MAX + 16];
	struct ns_stats_snapshot s;
	pid_t parent = getppid();

	path_of(getpid(), mine, sizeof mine);
	path_of(parent, theirs, sizeof theirs);
	snprintf(cmd, sizeof cmd, "cp %s %s", mine, theirs);
	assert_int_equal(system(cmd), 0);
	assert_int_equal(ns_stats_read(parent, &s, err, sizeof err), -1);
	assert_non_null(strstr(err, "left over, removed"));
	assert_int_equal(s.value[NS_STAT_HANDSHAKES_OK], 0);
	assert_false(exists(parent));
	/* Our own stays readable. */
	assert_int_equal(ns_stats_read(getpid(), &s, err, sizeof err), 0);
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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_block_of_a_process_that_never_forked_goes_at_exit),
		cmocka_unit_test(test_attach_and_exact_adds),
		cmocka_unit_test(test_children_add_to_the_parents_block),
		cmocka_unit_test(test_a_process_that_left_the_files_removes_nothing),
		cmocka_unit_test(test_what_dead_processes_leave_is_removed),
		cmocka_unit_test(test_live_process_without_a_block),
		cmocka_unit_test(test_a_block_under_another_name_is_left_over),
		cmocka_unit_test(test_field_names),
	};

	strcpy(dir, "/tmp/test_stats.XXXXXX");
	if (mkdtemp(dir) == NULL || setenv("NOISESHIM_STATS_DIR", dir, 1) != 0)
		return 1;
	return cmocka_run_group_tests(tests, NULL, remove_dir);
}
