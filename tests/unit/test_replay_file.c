/*
 * File-backed replay window: shared between handles as between processes,
 * kept across close and reopen, expiry and the capacity bound in a file,
 * rebuilt when corrupt or of another shape, and a writer killed at any
 * store of an insert never letting a key through.
 */
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <sodium.h>

#include "replay.h"

enum {
	WINDOW_MS = 60000,
	/* Stores in one insert: journal (4), entry (3), tail, index, unseal. */
	INSERT_STORES = 10,
	/* Stores after which the journal is sealed: from then on the key is kept. */
	SEALED_AFTER = 4,
};

static char dir[] = "/tmp/noiseshim-replay-test.XXXXXX";

static void path_for(const char *name, char *path, size_t cap)
{
	snprintf(path, cap, "%s/%s", dir, name);
	unlink(path);
}

static void key_from_counter(uint32_t n, uint8_t key[NS_KEY_LEN])
{
	memset(key, 0xa5, NS_KEY_LEN);
	memcpy(key, &n, sizeof n);
}

static struct ns_replay *open_ok(const char *path, size_t capacity, enum ns_replay_opened want)
{
	char reason[NS_REPLAY_REASON_MAX];
	enum ns_replay_opened opened;
	struct ns_replay *r = ns_replay_open(path, WINDOW_MS, capacity, &opened, reason);

	if (r == NULL)
		fail_msg("ns_replay_open(%s): %s", path, reason);
	assert_int_equal(opened, want);
	return r;
}

static void test_two_handles_share_entries(void **state)
{
	char path[256];
	uint8_t a[NS_KEY_LEN], b[NS_KEY_LEN];
	struct ns_replay *one, *two;
	struct stat st;

	path_for("shared.map", path, sizeof path);
	one = open_ok(path, 64, NS_REPLAY_OPENED_CREATED);
	two = open_ok(path, 64, NS_REPLAY_OPENED_EXISTING);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	key_from_counter(1, a);
	key_from_counter(2, b);
	assert_int_equal(ns_replay_check(one, a, 1000), NS_REPLAY_FRESH);
	assert_int_equal(ns_replay_check(two, a, 1001), NS_REPLAY_REPEAT);
	assert_int_equal(ns_replay_check(two, b, 1002), NS_REPLAY_FRESH);
	assert_int_equal(ns_replay_check(one, b, 1003), NS_REPLAY_REPEAT);
	ns_replay_free(one);
	ns_replay_free(two);
}

static void test_reopen_keeps_entries(void **state)
{
	enum { N = 500 };
	char path[256];
	uint8_t key[NS_KEY_LEN];
	struct ns_replay *r;

	path_for("reopen.map", path, sizeof path);
	r = open_ok(path, 1000, NS_REPLAY_OPENED_CREATED);
	for (uint32_t i = 0; i < N; i++) {
		key_from_counter(i, key);
		assert_int_equal(ns_replay_check(r, key, 1000), NS_REPLAY_FRESH);
	}
	ns_replay_free(r);
	r = open_ok(path, 1000, NS_REPLAY_OPENED_EXISTING);
	for (uint32_t i = 0; i < N; i++) {
		key_from_counter(i, key);
		assert_int_equal(ns_replay_check(r, key, 2000), NS_REPLAY_REPEAT);
	}
	key_from_counter(N, key);
	assert_int_equal(ns_replay_check(r, key, 2000), NS_REPLAY_FRESH);
	ns_replay_free(r);
}

static void test_expiry_and_capacity_in_a_file(void **state)
{
	enum { CAP = 4 };
	char reason[NS_REPLAY_REASON_MAX], path[256];
	enum ns_replay_opened opened;
	uint8_t key[NS_KEY_LEN];
	struct ns_replay *r, *other;

	path_for("bounded.map", path, sizeof path);
	r = open_ok(path, CAP, NS_REPLAY_OPENED_CREATED);
	/* A second handle with a shorter window expires the same entries sooner. */
	other = ns_replay_open(path, 100, CAP, &opened, reason);
	assert_non_null(other);
	for (uint32_t i = 0; i < CAP; i++) {
		key_from_counter(i, key);
		assert_int_equal(ns_replay_check(r, key, 1000 + i), NS_REPLAY_FRESH);
	}
	key_from_counter(CAP, key);
	assert_int_equal(ns_replay_check(r, key, 1050), NS_REPLAY_FULL);
	key_from_counter(0, key);
	assert_int_equal(ns_replay_check(other, key, 1099), NS_REPLAY_REPEAT);
	/* At 1101 the first two (1000, 1001) are 100 ms old: expired for this handle. */
	key_from_counter(CAP, key);
	assert_int_equal(ns_replay_check(other, key, 1101), NS_REPLAY_FRESH);
	key_from_counter(0, key);
	assert_int_equal(ns_replay_check(other, key, 1101), NS_REPLAY_FRESH);
	key_from_counter(2, key);
	assert_int_equal(ns_replay_check(r, key, 1101), NS_REPLAY_REPEAT);
	key_from_counter(CAP + 1, key);
	assert_int_equal(ns_replay_check(r, key, 1101), NS_REPLAY_FULL);
	/* The file is sized once, from the capacity. */
	assert_true(ns_replay_memory(r) <= CAP * 32 + 4096);
	ns_replay_free(r);
	ns_replay_free(other);
}

/* Write len bytes at offset of the file at path. */
static void overwrite(const char *path, off_t offset, const void *bytes, size_t len)
{
	int fd = open(path, O_WRONLY);

	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, bytes, len, offset), (ssize_t)len);
	close(fd);
}

/* A window with one entry whose file is then damaged by damage(); reopening must rebuild. */
static void check_rebuilt(const char *name, void (*damage)(const char *path), const char *expect)
{
	char reason[NS_REPLAY_REASON_MAX], path[256];
	enum ns_replay_opened opened;
	uint8_t key[NS_KEY_LEN];
	struct ns_replay *r;

	path_for(name, path, sizeof path);
	r = open_ok(path, 16, NS_REPLAY_OPENED_CREATED);
	key_from_counter(9, key);
	assert_int_equal(ns_replay_check(r, key, 1000), NS_REPLAY_FRESH);
	ns_replay_free(r);
	damage(path);
	r = ns_replay_open(path, WINDOW_MS, 16, &opened, reason);
	assert_non_null(r);
	assert_int_equal(opened, NS_REPLAY_OPENED_REBUILT);
	if (strstr(reason, expect) == NULL)
		fail_msg("%s: reason \"%s\" does not mention \"%s\"", name, reason, expect);
	/* Rebuilt empty, and usable. */
	assert_int_equal(ns_replay_check(r, key, 1000), NS_REPLAY_FRESH);
	assert_int_equal(ns_replay_check(r, key, 1001), NS_REPLAY_REPEAT);
	ns_replay_free(r);
	/* What is there now is a valid window. */
	r = open_ok(path, 16, NS_REPLAY_OPENED_EXISTING);
	assert_int_equal(ns_replay_check(r, key, 1002), NS_REPLAY_REPEAT);
	ns_replay_free(r);
}

static void damage_magic(const char *path)
{
	overwrite(path, 0, "garbage!", 8);
}

static void damage_version(const char *path)
{
	uint32_t version = 99;

	overwrite(path, 8, &version, sizeof version);
}

static void damage_capacity_field(const char *path)
{
	uint32_t capacity = 17;

	overwrite(path, 12, &capacity, sizeof capacity);
}

static void damage_size(const char *path)
{
	assert_int_equal(truncate(path, 4096), 0);
}

static void test_corrupt_header_is_rebuilt(void **state)
{
	check_rebuilt("magic.map", damage_magic, "magic");
	check_rebuilt("version.map", damage_version, "version 99");
	check_rebuilt("checksum.map", damage_capacity_field, "checksum");
	check_rebuilt("size.map", damage_size, "size 4096");
}

/*
 * The header's layout, as the file format fixes it: magic, version,
 * capacity, index size, header size (4 bytes each after the 8-byte magic),
 * block size, then the boot id, the hash key and a BLAKE2b-128 of all of it.
 */
enum { BOOT_ID_AT = 32, CHECKSUM_AT = 64, CHECKSUM_LEN = 16 };

/* Pretend the file was written in another boot, with a header that is otherwise valid. */
static void move_to_other_boot(const char *path)
{
	uint8_t header[CHECKSUM_AT];
	uint8_t sum[CHECKSUM_LEN];
	int fd = open(path, O_RDWR);

	assert_true(fd >= 0);
	assert_int_equal(pread(fd, header, sizeof header, 0), (ssize_t)sizeof header);
	header[BOOT_ID_AT] ^= 0xff;
	crypto_generichash(sum, sizeof sum, header, sizeof header, NULL, 0);
	assert_int_equal(pwrite(fd, header, sizeof header, 0), (ssize_t)sizeof header);
	assert_int_equal(pwrite(fd, sum, sizeof sum, CHECKSUM_AT), (ssize_t)sizeof sum);
	close(fd);
}

static void test_other_boot_starts_empty(void **state)
{
	char path[256];
	uint8_t key[NS_KEY_LEN];
	struct ns_replay *r;

	path_for("boot.map", path, sizeof path);
	r = open_ok(path, 16, NS_REPLAY_OPENED_CREATED);
	key_from_counter(5, key);
	assert_int_equal(ns_replay_check(r, key, 1000), NS_REPLAY_FRESH);
	ns_replay_free(r);
	/* Untouched, the entry is still there: the header edit below is all that differs. */
	r = open_ok(path, 16, NS_REPLAY_OPENED_EXISTING);
	assert_int_equal(ns_replay_check(r, key, 1001), NS_REPLAY_REPEAT);
	ns_replay_free(r);
	move_to_other_boot(path);
	r = open_ok(path, 16, NS_REPLAY_OPENED_NEW_BOOT);
	assert_int_equal(ns_replay_check(r, key, 1002), NS_REPLAY_FRESH);
	ns_replay_free(r);
}

static void test_other_capacity_is_rebuilt(void **state)
{
	char reason[NS_REPLAY_REASON_MAX], path[256];
	enum ns_replay_opened opened;
	struct ns_replay *r;

	path_for("capacity.map", path, sizeof path);
	r = open_ok(path, 16, NS_REPLAY_OPENED_CREATED);
	ns_replay_free(r);
	r = ns_replay_open(path, WINDOW_MS, 32, &opened, reason);
	assert_non_null(r);
	assert_int_equal(opened, NS_REPLAY_OPENED_REBUILT);
	assert_non_null(strstr(reason, "expected"));
	ns_replay_free(r);
}

static void test_unusable_path_is_refused(void **state)
{
	char reason[NS_REPLAY_REASON_MAX], path[256];
	enum ns_replay_opened opened;

	snprintf(path, sizeof path, "%s/no-such-dir/x.map", dir);
	assert_null(ns_replay_open(path, WINDOW_MS, 16, &opened, reason));
	assert_non_null(strstr(reason, path));
	assert_null(ns_replay_open(path, WINDOW_MS, 0, &opened, reason));
}

/* Fork a child that opens path, inserts key and is stopped after `stores` stores. */
static void die_mid_insert(const char *path, const uint8_t key[NS_KEY_LEN], unsigned stores)
{
	int status;
	pid_t pid = fork();

	assert_true(pid >= 0);
	if (pid == 0) {
		char reason[NS_REPLAY_REASON_MAX];
		enum ns_replay_opened opened;
		struct ns_replay *r = ns_replay_open(path, WINDOW_MS, 64, &opened, reason);

		if (r == NULL)
			_exit(2);
		ns_replay_crash_after(r, stores);
		ns_replay_check(r, key, 5000);
		/* Only reached if the insert has fewer stores than asked for. */
		_exit(3);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
}

static void test_writer_killed_mid_insert(void **state)
{
	enum { OLD = 40 };
	uint8_t key[NS_KEY_LEN], torn[NS_KEY_LEN], after[NS_KEY_LEN];

	for (unsigned stores = 0; stores <= INSERT_STORES; stores++) {
		char path[256];
		struct ns_replay *r;

		path_for("torn.map", path, sizeof path);
		r = open_ok(path, 64, NS_REPLAY_OPENED_CREATED);
		for (uint32_t i = 0; i < OLD; i++) {
			key_from_counter(i, key);
			assert_int_equal(ns_replay_check(r, key, 4000), NS_REPLAY_FRESH);
		}
		key_from_counter(1000 + stores, torn);
		die_mid_insert(path, torn, stores);
		/* This handle's next check finds the lock's owner dead and recovers. */
		for (uint32_t i = 0; i < OLD; i++) {
			key_from_counter(i, key);
			assert_int_equal(ns_replay_check(r, key, 6000), NS_REPLAY_REPEAT);
		}
		/* Once any byte of the entry may be written, the key is known. */
		assert_int_equal(ns_replay_check(r, torn, 6000),
		                 stores >= SEALED_AFTER ? NS_REPLAY_REPEAT : NS_REPLAY_FRESH);
		assert_int_equal(ns_replay_check(r, torn, 6001), NS_REPLAY_REPEAT);
		key_from_counter(2000 + stores, after);
		assert_int_equal(ns_replay_check(r, after, 6002), NS_REPLAY_FRESH);
		assert_int_equal(ns_replay_check(r, after, 6003), NS_REPLAY_REPEAT);
		ns_replay_free(r);
		/* And a process opening the file afterwards sees the same. */
		r = open_ok(path, 64, NS_REPLAY_OPENED_EXISTING);
		assert_int_equal(ns_replay_check(r, torn, 7000), NS_REPLAY_REPEAT);
		ns_replay_free(r);
	}
}

/* A writer killed mid-insert into a file nobody else has open: the next opener recovers. */
static void test_torn_entry_seen_by_next_opener(void **state)
{
	char path[256];
	uint8_t torn[NS_KEY_LEN];
	struct ns_replay *r;

	path_for("torn-alone.map", path, sizeof path);
	ns_replay_free(open_ok(path, 64, NS_REPLAY_OPENED_CREATED));
	key_from_counter(77, torn);
	/* Half an entry: the journal sealed, the first half of the key written. */
	die_mid_insert(path, torn, SEALED_AFTER + 1);
	r = open_ok(path, 64, NS_REPLAY_OPENED_EXISTING);
	assert_int_equal(ns_replay_check(r, torn, 6000), NS_REPLAY_REPEAT);
	ns_replay_free(r);
}

static void test_concurrent_openers_share_one_window(void **state)
{
	enum { CHILDREN = 4, EACH = 200 };
	char path[256];
	uint8_t key[NS_KEY_LEN];
	struct ns_replay *r;

	path_for("race.map", path, sizeof path);
	for (int c = 0; c < CHILDREN; c++) {
		pid_t pid = fork();

		assert_true(pid >= 0);
		if (pid == 0) {
			char reason[NS_REPLAY_REASON_MAX];
			enum ns_replay_opened opened;
			struct ns_replay *w = ns_replay_open(path, WINDOW_MS, 1024, &opened, reason);
			int bad = w == NULL;

			for (uint32_t i = 0; i < EACH && !bad; i++) {
				key_from_counter((uint32_t)c * EACH + i, key);
				bad = ns_replay_check(w, key, 1000) != NS_REPLAY_FRESH;
			}
			_exit(bad);
		}
	}
	for (int c = 0; c < CHILDREN; c++) {
		int status;

		assert_true(wait(&status) > 0);
		assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	}
	r = open_ok(path, 1024, NS_REPLAY_OPENED_EXISTING);
	for (uint32_t i = 0; i < CHILDREN * EACH; i++) {
		key_from_counter(i, key);
		assert_int_equal(ns_replay_check(r, key, 2000), NS_REPLAY_REPEAT);
	}
	ns_replay_free(r);
}

static int make_dir(void **state)
{
	return mkdtemp(dir) == NULL ? -1 : 0;
}

static int remove_dir(void **state)
{
	char command[sizeof dir + 16];

	snprintf(command, sizeof command, "rm -rf %s", dir);
	return system(command) == 0 ? 0 : -1;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_two_handles_share_entries),
		cmocka_unit_test(test_reopen_keeps_entries),
		cmocka_unit_test(test_expiry_and_capacity_in_a_file),
		cmocka_unit_test(test_corrupt_header_is_rebuilt),
		cmocka_unit_test(test_other_boot_starts_empty),
		cmocka_unit_test(test_other_capacity_is_rebuilt),
		cmocka_unit_test(test_unusable_path_is_refused),
		cmocka_unit_test(test_writer_killed_mid_insert),
		cmocka_unit_test(test_torn_entry_seen_by_next_opener),
		cmocka_unit_test(test_concurrent_openers_share_one_window),
	};

	if (sodium_init() < 0)
		return 1;
	return cmocka_run_group_tests_name("replay_file", tests, make_dir, remove_dir);
}
