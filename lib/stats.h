/*
 * Counters of a wrapped process, in shared memory, so that a pre-fork
 * server's workers add to one block and `noiseshim stats PID` reads it
 * without a word to the server.
 *
 * The block is a file, DIR/PID.START, named after the process that created
 * it: its pid and its start time (field 22 of /proc/PID/stat), which
 * together tell it from any later process given the same pid.  It is
 * mapped MAP_SHARED; fork()ed children inherit the mapping and add to it,
 * and each child leaves a symbolic link DIR/CHILDPID.START -> PID.START so
 * that its pid finds the block too.  DIR is $NOISESHIM_STATS_DIR when set,
 * else the first of /run/noiseshim/stats, $XDG_RUNTIME_DIR/noiseshim/stats
 * and /tmp/noiseshim-UID/stats where the file can be created.
 *
 * A process that never forked removes its block at exit, a child its link.
 * What exited processes left all the same (killed, or _exit without exit
 * handlers, or a block its forked children used) goes when any process
 * attaches to DIR or a reader reads it: every name whose process no longer
 * runs, except a block that a live child's link still leads to.
 *
 * Adds are relaxed atomic 64-bit adds: cheap, and exact once the adding
 * stops.  A process where no block can be created counts nothing.
 */
#ifndef NOISESHIM_STATS_H
#define NOISESHIM_STATS_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* The variable that overrides where the blocks live. */
#define NS_STATS_DIR_VAR "NOISESHIM_STATS_DIR"

enum ns_stat {
	NS_STAT_HANDSHAKES_OK,
	NS_STAT_HANDSHAKES_FAILED,
	NS_STAT_REPLAYS_REFUSED,
	NS_STAT_CLIENTS_REFUSED,
	NS_STAT_CONNECTIONS_OPEN,
	NS_STAT_BYTES_IN,
	NS_STAT_BYTES_OUT,
	NS_STAT_TFO_SYN_DATA,
	NS_STAT_COUNT
};

enum {
	NS_STATS_ERR_MAX = PATH_MAX + 256,
};

struct ns_stats;

/*
 * This process's block, created on the first call (later calls, and
 * fork()ed children, get the same one).  NULL when none could be created:
 * counting is then off for the life of the process.
 */
struct ns_stats *ns_stats_attach(void);

/*
 * From now on this process and the children it forks touch no file of the
 * block (a seccomp sandbox kills a process for unlink or symlink): their
 * links, and a block the process owns, are left for the next sweep once
 * the process is gone.  Adds go on as before.
 */
void ns_stats_leave_files(void);

/* Add n (negative for the connections_open gauge) to field; attaches on first use. */
void ns_stats_add(enum ns_stat field, int64_t n);

/* The field's name as the outputs print it: "handshakes_ok" ... */
const char *ns_stat_name(enum ns_stat field);

/* One line saying what the field counts. */
const char *ns_stat_help(enum ns_stat field);

/* Whether the field goes up and down (a gauge) rather than only up (a counter). */
int ns_stat_is_gauge(enum ns_stat field);

/* What a reader sees of one process's counters. */
struct ns_stats_snapshot {
	pid_t pid;    /* the process asked about */
	pid_t owner;  /* the process that created the block: pid itself, or its ancestor */
	uint64_t value[NS_STAT_COUNT];
	char path[PATH_MAX]; /* the file read */
};

/*
 * Read the counters of process pid.  0, or -1 with the reason in err: pid
 * is not running, it has no block (one left under its pid by an earlier
 * process is named, and removed), or the file under its name holds
 * another process's counters.
 */
int ns_stats_read(pid_t pid, struct ns_stats_snapshot *s, char *err, size_t errlen);

#endif
