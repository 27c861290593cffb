/*
 * A plain socket program for the cache tests and benchmark, run under the
 * client shim (it links nothing of ours).  It listens on a loopback port of
 * its own, so every connect it times goes to a destination of its choosing.
 *
 *   cache_probe first HOST PORT
 *       one connect(); prints first_connect_us, private_kb (Private_Clean +
 *       Private_Dirty added, from /proc/self/smaps_rollup) and result (ok or
 *       the errno name).  PORT 0 means the probe's own listener.
 *   cache_probe loop THREADS MS PAUSE_US CANARY_HOST CANARY_PORT NEW_FILE CACHE_FILE
 *       THREADS threads connect to the probe's listener (an address in no
 *       cache) for MS ms, pausing PAUSE_US between connects (as a program
 *       that does something with its connections would; 0 saturates the
 *       CPUs); after a quarter of it NEW_FILE is renamed over
 *       CACHE_FILE.  Each thread also tries the canary address, which the new
 *       file lists as a broken line, until that is refused (EACCES).  Prints
 *       connects, failures, max_us (longest connect), max_after_us (longest
 *       after the rename) and max_after_at_ms (when it began), and effect_ms
 *       (rename to first refusal, -1: never).
 *   cache_probe rate MS
 *       one thread connects to the listener for MS ms; prints per_connect_ns.
 *   cache_probe forkreload CANARY_HOST CANARY_PORT NEW_FILE CACHE_FILE
 *       connects once, forks; the child renames NEW_FILE over CACHE_FILE and
 *       connects to the canary until it is refused (at most 5 s).  Exit 0 if
 *       the child saw the refusal.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum { MAX_THREADS = 16, FORK_WAIT_MS = 5000 };

static struct sockaddr_storage listener_addr;
static socklen_t listener_len;

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void die(const char *what)
{
	fprintf(stderr, "cache_probe: %s: %s\n", what, strerror(errno));
	exit(2);
}

/* Accept and drop connections, so the backlog never fills. */
static void *acceptor(void *arg)
{
	int lfd = (int)(intptr_t)arg;

	for (;;) {
		int fd = accept(lfd, NULL, NULL);

		if (fd >= 0)
			close(fd);
	}
	return NULL;
}

static void start_listener(void)
{
	struct sockaddr_in *sin = (struct sockaddr_in *)&listener_addr;
	pthread_t t;
	int lfd = socket(AF_INET, SOCK_STREAM, 0);

	if (lfd < 0)
		die("socket");
	sin->sin_family = AF_INET;
	sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	listener_len = sizeof *sin;
	if (bind(lfd, (struct sockaddr *)sin, listener_len) != 0 || listen(lfd, 4096) != 0 ||
	    getsockname(lfd, (struct sockaddr *)sin, &listener_len) != 0)
		die("listen");
	if (pthread_create(&t, NULL, acceptor, (void *)(intptr_t)lfd) != 0)
		die("pthread_create");
	pthread_detach(t);
}

static void parse_addr(const char *host, const char *port, struct sockaddr_storage *ss,
                       socklen_t *len)
{
	struct sockaddr_in *sin = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;

	memset(ss, 0, sizeof *ss);
	if (inet_pton(AF_INET, host, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		sin->sin_port = htons((uint16_t)atoi(port));
		*len = sizeof *sin;
	} else if (inet_pton(AF_INET6, host, &sin6->sin6_addr) == 1) {
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons((uint16_t)atoi(port));
		*len = sizeof *sin6;
	} else {
		fprintf(stderr, "cache_probe: '%s' is not an IP address\n", host);
		exit(2);
	}
}

/* One blocking connect, closed with a reset so that no TIME_WAIT piles up.  0 or an errno. */
static int connect_once(const struct sockaddr_storage *ss, socklen_t len, uint64_t *took_ns)
{
	struct linger no_linger = { .l_onoff = 1, .l_linger = 0 };
	uint64_t start;
	int fd = socket(ss->ss_family, SOCK_STREAM, 0), err = 0;

	if (fd < 0)
		die("socket");
	start = now_ns();
	if (connect(fd, (const struct sockaddr *)ss, len) != 0)
		err = errno;
	*took_ns = now_ns() - start;
	setsockopt(fd, SOL_SOCKET, SO_LINGER, &no_linger, sizeof no_linger);
	close(fd);
	return err;
}

static long private_kb(void)
{
	char line[256];
	long total = 0, kb;
	FILE *f = fopen("/proc/self/smaps_rollup", "r");

	if (f == NULL)
		die("/proc/self/smaps_rollup");
	while (fgets(line, sizeof line, f) != NULL)
		if (sscanf(line, "Private_Clean: %ld kB", &kb) == 1 ||
		    sscanf(line, "Private_Dirty: %ld kB", &kb) == 1)
			total += kb;
	fclose(f);
	return total;
}

static const char *result_name(int err)
{
	return err == 0 ? "ok" : err == EACCES ? "EACCES" : strerror(err);
}

static int run_first(const char *host, const char *port)
{
	struct sockaddr_storage ss;
	socklen_t len;
	uint64_t took;
	long before;
	int err;

	start_listener();
	if (strcmp(port, "0") == 0) {
		ss = listener_addr;
		len = listener_len;
	} else {
		parse_addr(host, port, &ss, &len);
	}
	before = private_kb();
	err = connect_once(&ss, len, &took);
	printf("first_connect_us=%.1f\nprivate_kb=%ld\nresult=%s\n", (double)took / 1000,
	       private_kb() - before, result_name(err));
	return 0;
}

struct loop {
	struct sockaddr_storage canary;
	socklen_t canary_len;
	uint64_t end_ns;
	useconds_t pause_us;
	_Atomic uint64_t renamed_ns;   /* 0 until the rename */
	_Atomic uint64_t refused_ns;   /* first EACCES from the canary after it */
	atomic_long connects, failures;
	_Atomic uint64_t max_ns, max_after_ns;
	_Atomic uint64_t max_after_at_ns; /* when the longest connect after the rename began */
};

static void raise_max(_Atomic uint64_t *max, uint64_t v)
{
	uint64_t cur = atomic_load(max);

	while (v > cur && !atomic_compare_exchange_weak(max, &cur, v))
		;
}

static void *loop_thread(void *arg)
{
	struct loop *l = arg;
	uint64_t took;

	while (now_ns() < l->end_ns) {
		uint64_t renamed = atomic_load(&l->renamed_ns);
		int err = connect_once(&listener_addr, listener_len, &took);

		atomic_fetch_add(&l->connects, 1);
		if (err != 0) {
			atomic_fetch_add(&l->failures, 1);
			fprintf(stderr, "cache_probe: connect to the listener failed: %s\n",
			        strerror(err));
		}
		raise_max(&l->max_ns, took);
		if (renamed != 0 && took > atomic_load(&l->max_after_ns)) {
			raise_max(&l->max_after_ns, took);
			atomic_store(&l->max_after_at_ns, now_ns() - took - renamed);
		}
		if (renamed != 0 && atomic_load(&l->refused_ns) == 0 &&
		    connect_once(&l->canary, l->canary_len, &took) == EACCES) {
			uint64_t zero = 0;

			atomic_compare_exchange_strong(&l->refused_ns, &zero, now_ns());
		}
		if (l->pause_us > 0)
			usleep(l->pause_us);
	}
	return NULL;
}

static int run_loop(int threads, long ms, long pause_us, const char *host, const char *port,
                    const char *src, const char *dst)
{
	static struct loop l;
	pthread_t t[MAX_THREADS];
	uint64_t start, refused;

	if (threads < 1 || threads > MAX_THREADS) {
		fprintf(stderr, "cache_probe: 1 to %d threads\n", MAX_THREADS);
		return 2;
	}
	start_listener();
	parse_addr(host, port, &l.canary, &l.canary_len);
	l.pause_us = (useconds_t)pause_us;
	start = now_ns();
	l.end_ns = start + (uint64_t)ms * 1000000u;
	for (int i = 0; i < threads; i++)
		if (pthread_create(&t[i], NULL, loop_thread, &l) != 0)
			die("pthread_create");
	usleep((useconds_t)ms * 250);
	if (rename(src, dst) != 0)
		die("rename");
	atomic_store(&l.renamed_ns, now_ns());
	for (int i = 0; i < threads; i++)
		pthread_join(t[i], NULL);
	refused = atomic_load(&l.refused_ns);
	printf("connects=%ld\nfailures=%ld\nmax_us=%.1f\nmax_after_us=%.1f\nmax_after_at_ms=%.1f\n"
	       "effect_ms=%.1f\n",
	       atomic_load(&l.connects), atomic_load(&l.failures),
	       (double)atomic_load(&l.max_ns) / 1000, (double)atomic_load(&l.max_after_ns) / 1000,
	       (double)atomic_load(&l.max_after_at_ns) / 1e6,
	       refused == 0 ? -1.0 : (double)(refused - atomic_load(&l.renamed_ns)) / 1e6);
	return 0;
}

static int run_rate(long ms)
{
	uint64_t end, took, total = 0;
	long n = 0;

	start_listener();
	end = now_ns() + (uint64_t)ms * 1000000u;
	while (now_ns() < end) {
		if (connect_once(&listener_addr, listener_len, &took) != 0)
			die("connect");
		total += took;
		n++;
	}
	printf("connects=%ld\nper_connect_ns=%.0f\n", n, (double)total / (double)n);
	return 0;
}

static int run_forkreload(const char *host, const char *port, const char *src, const char *dst)
{
	struct sockaddr_storage canary;
	socklen_t len;
	uint64_t took, deadline;
	int status;
	pid_t pid;

	start_listener();
	parse_addr(host, port, &canary, &len);
	if (connect_once(&listener_addr, listener_len, &took) != 0)
		die("connect before fork");
	pid = fork();
	if (pid < 0)
		die("fork");
	if (pid == 0) {
		if (rename(src, dst) != 0)
			die("rename");
		deadline = now_ns() + (uint64_t)FORK_WAIT_MS * 1000000u;
		while (now_ns() < deadline) {
			if (connect_once(&canary, len, &took) == EACCES)
				_exit(0);
			usleep(10000);
		}
		_exit(1);
	}
	if (waitpid(pid, &status, 0) != pid)
		die("waitpid");
	printf("child=%s\n", WIFEXITED(status) && WEXITSTATUS(status) == 0 ? "reloaded" : "stale");
	return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
	if (argc == 4 && strcmp(argv[1], "first") == 0)
		return run_first(argv[2], argv[3]);
	if (argc == 9 && strcmp(argv[1], "loop") == 0)
		return run_loop(atoi(argv[2]), atol(argv[3]), atol(argv[4]), argv[5], argv[6], argv[7],
		                argv[8]);
	if (argc == 3 && strcmp(argv[1], "rate") == 0)
		return run_rate(atol(argv[2]));
	if (argc == 6 && strcmp(argv[1], "forkreload") == 0)
		return run_forkreload(argv[2], argv[3], argv[4], argv[5]);
	fprintf(stderr, "usage: cache_probe first HOST PORT | loop THREADS MS PAUSE_US CANARY_HOST "
	        "CANARY_PORT NEW_FILE CACHE_FILE | rate MS | forkreload CANARY_HOST CANARY_PORT "
	        "NEW_FILE CACHE_FILE\n");
	return 2;
}
