/*
 * A stand-in for a pre-fork server, for the test of `noiseshim stats`: it
 * counts known values through lib/stats, forks a worker that adds more,
 * prints "PARENT_PID WORKER_PID" once both have counted, and keeps both
 * alive until its standard input reaches its end.
 *
 *   stats_writer < FIFO
 *
 * The totals, which the test expects exactly: handshakes_ok 13,
 * handshakes_failed 2, replays_refused 1, clients_refused 4,
 * connections_open 3, bytes_in 1024, bytes_out 2345, tfo_syn_data 6.
 */
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "stats.h"

/* Block until fd reaches its end. */
static void wait_for_eof(int fd)
{
	char buf[64];

	while (read(fd, buf, sizeof buf) > 0)
		;
}

int main(void)
{
	int ready[2];
	pid_t worker;
	char c;

	if (ns_stats_attach() == NULL) {
		fprintf(stderr, "stats_writer: no counters block could be created\n");
		return 1;
	}
	ns_stats_add(NS_STAT_HANDSHAKES_OK, 3);
	ns_stats_add(NS_STAT_HANDSHAKES_FAILED, 2);
	ns_stats_add(NS_STAT_REPLAYS_REFUSED, 1);
	ns_stats_add(NS_STAT_CLIENTS_REFUSED, 4);
	ns_stats_add(NS_STAT_CONNECTIONS_OPEN, 5);
	ns_stats_add(NS_STAT_CONNECTIONS_OPEN, -2);
	ns_stats_add(NS_STAT_BYTES_IN, 1000);
	ns_stats_add(NS_STAT_BYTES_OUT, 2345);
	ns_stats_add(NS_STAT_TFO_SYN_DATA, 6);
	if (pipe(ready) != 0)
		return 1;
	worker = fork();
	if (worker < 0)
		return 1;
	if (worker == 0) {
		ns_stats_add(NS_STAT_HANDSHAKES_OK, 10);
		ns_stats_add(NS_STAT_BYTES_IN, 24);
		if (write(ready[1], "x", 1) != 1)
			return 1;
		wait_for_eof(STDIN_FILENO);
		return 0;
	}
	if (read(ready[0], &c, 1) != 1)
		return 1;
	printf("%ld %ld\n", (long)getpid(), (long)worker);
	fflush(stdout);
	wait_for_eof(STDIN_FILENO);
	return waitpid(worker, NULL, 0) == worker ? 0 : 1;
}
