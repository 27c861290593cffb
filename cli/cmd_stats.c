/*
 * noiseshim stats: the counters of a process under a shim, as text, JSON or
 * the Prometheus text format.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "cli.h"
#include "stats.h"

static const char USAGE[] =
	"usage: noiseshim stats [--json | --prometheus] PID\n"
	"\n"
	"Print the counters of process PID, which runs under a noiseshim shim.  The\n"
	"workers of a pre-fork server share their parent's counters, so any of their\n"
	"pids gives the total.  Reading them costs the process nothing: they live in a\n"
	"shared file under /run/noiseshim/stats, $XDG_RUNTIME_DIR/noiseshim/stats or\n"
	"/tmp/noiseshim-UID/stats ($NOISESHIM_STATS_DIR when set), named after the\n"
	"process's pid and start time: counters an earlier process with the same pid\n"
	"left are refused, never shown as PID's.\n"
	"\n"
	"  --json         one JSON object: pid, owner (the process whose counters they\n"
	"                 are) and each counter\n"
	"  --prometheus   the Prometheus text format, names prefixed noiseshim_\n";

static const struct option OPTIONS[] = {
	{ "json", no_argument, NULL, 'j' },
	{ "prometheus", no_argument, NULL, 'p' },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

enum format { FORMAT_TEXT, FORMAT_JSON, FORMAT_PROMETHEUS };

struct stats_args {
	enum format format;
	pid_t pid;
};

/* A pid: decimal, above 0, within pid_t. */
static int parse_pid(const char *text, pid_t *pid)
{
	char *end;
	long n;

	errno = 0;
	n = strtol(text, &end, 10);
	if (errno != 0 || end == text || *end != '\0' || n <= 0 || n > INT32_MAX)
		return -1;
	*pid = (pid_t)n;
	return 0;
}

/* Parse the command line: 0 to go on, -1 when *done holds the exit code. */
static int parse_args(int argc, char **argv, struct stats_args *a, int *done)
{
	int c;

	*a = (struct stats_args){ .format = FORMAT_TEXT };
	while ((c = getopt_long(argc, argv, ":jph", OPTIONS, NULL)) != -1) {
		switch (c) {
		case 'j':
		case 'p':
			if (a->format != FORMAT_TEXT) {
				*done = cli_usage_error(argv[0], USAGE,
				                        "--json and --prometheus exclude each other");
				return -1;
			}
			a->format = c == 'j' ? FORMAT_JSON : FORMAT_PROMETHEUS;
			break;
		case 'h':
			*done = cli_help(USAGE);
			return -1;
		default:
			*done = cli_option_error(argv[0], USAGE, c, argv);
			return -1;
		}
	}
	if (argc - optind != 1)
		*done = cli_usage_error(argv[0], USAGE, "expected one PID, got %d arguments",
		                        argc - optind);
	else if (parse_pid(argv[optind], &a->pid) < 0)
		*done = cli_usage_error(argv[0], USAGE, "'%s' is not a process id", argv[optind]);
	else
		return 0;
	return -1;
}

static void print_text(const struct ns_stats_snapshot *s)
{
	for (int i = 0; i < NS_STAT_COUNT; i++)
		printf("%-17s %" PRIu64 "\n", ns_stat_name((enum ns_stat)i), s->value[i]);
}

static void print_json(const struct ns_stats_snapshot *s)
{
	printf("{\"pid\":%ld,\"owner\":%ld", (long)s->pid, (long)s->owner);
	for (int i = 0; i < NS_STAT_COUNT; i++)
		printf(",\"%s\":%" PRIu64, ns_stat_name((enum ns_stat)i), s->value[i]);
	printf("}\n");
}

/* Counters get Prometheus's _total suffix; the gauge keeps its name. */
static void print_prometheus(const struct ns_stats_snapshot *s)
{
	for (int i = 0; i < NS_STAT_COUNT; i++) {
		enum ns_stat f = (enum ns_stat)i;
		int gauge = ns_stat_is_gauge(f);
		const char *suffix = gauge ? "" : "_total";

		printf("# HELP noiseshim_%s%s %s.\n", ns_stat_name(f), suffix, ns_stat_help(f));
		printf("# TYPE noiseshim_%s%s %s\n", ns_stat_name(f), suffix,
		       gauge ? "gauge" : "counter");
		printf("noiseshim_%s%s{pid=\"%ld\"} %" PRIu64 "\n", ns_stat_name(f), suffix,
		       (long)s->owner, s->value[i]);
	}
}

/* noiseshim stats [--json|--prometheus] PID: print a process's counters. */
int cmd_stats(int argc, char **argv)
{
	struct stats_args args;
	struct ns_stats_snapshot s;
	char err[NS_STATS_ERR_MAX];
	int done;

	if (parse_args(argc, argv, &args, &done) < 0)
		return done;
	if (ns_stats_read(args.pid, &s, err, sizeof err) < 0) {
		cli_error("%s", err);
		return 1;
	}
	switch (args.format) {
	case FORMAT_TEXT:
		print_text(&s);
		break;
	case FORMAT_JSON:
		print_json(&s);
		break;
	case FORMAT_PROMETHEUS:
		print_prometheus(&s);
		break;
	}
	return 0;
}
