/*
 * noiseshim run: a program under the client shim.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cache.h"
#include "cachefile.h"
#include "cli.h"
#include "config.h"
#include "launch.h"
#include "proxy_hint.h"
#include "shimpath.h"

static const char USAGE[] =
	"usage: noiseshim run [--cache FILE] [--transport noise|tcp|off] [--shim PATH] [--force]\n"
	"                     [--] PROGRAM [ARGS...]\n"
	"\n"
	"Run PROGRAM, found through PATH, with the client shim preloaded: its\n"
	"connections to the servers in the NodeURL cache speak Noise_IK.\n"
	"\n"
	"  --cache FILE       the NodeURL cache (sets NOISESHIM_CACHE; without it the shim\n"
	"                     reads $NOISESHIM_CACHE, else ~/.config/noiseshim/cache)\n"
	"  --transport MODE   sets NOISESHIM_TRANSPORT: noise encrypts (the default), tcp\n"
	"                     keeps TCP Fast Open but sends plaintext, off disables the shim\n"
	"  --shim PATH        the client shim (default: " CLIENT_SHIM_NAME " beside this\n"
	"                     noiseshim, as in a build directory, else PREFIX/lib/noiseshim/\n"
	"                     for a noiseshim installed as PREFIX/bin/noiseshim)\n"
	"  --force            launch PROGRAM even if LD_PRELOAD cannot reach it\n"
	"\n"
	"PROGRAM is refused, with the reason, when LD_PRELOAD cannot reach it: a static\n"
	"or Go binary, or one that gains privileges (set-user-ID, set-group-ID, file\n"
	"capabilities).  A #! script is judged by its interpreter.  A warning says when\n"
	"the cache does not exist or has no usable entry: the shim then wraps nothing.\n";

static const struct option OPTIONS[] = {
	{ "cache", required_argument, NULL, 'c' },
	{ "transport", required_argument, NULL, 'T' },
	{ "shim", required_argument, NULL, 's' },
	{ "force", no_argument, NULL, 'f' },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

static const char *const TRANSPORTS[] = { "noise", "tcp", "off" };

struct run_args {
	const char *cache;
	const char *transport;
	const char *shim;
	int force;
	char **program; /* PROGRAM, then its arguments; NULL-terminated */
};

static int is_transport(const char *name)
{
	for (size_t i = 0; i < sizeof TRANSPORTS / sizeof TRANSPORTS[0]; i++)
		if (strcmp(name, TRANSPORTS[i]) == 0)
			return 1;
	return 0;
}

/* Parse the command line: 0 to go on, -1 when *done holds the exit code. */
static int parse_args(int argc, char **argv, struct run_args *a, int *done)
{
	int c;

	*a = (struct run_args){ 0 };
	/* '+': options end at PROGRAM, so that its own options stay its own. */
	while ((c = getopt_long(argc, argv, "+:c:T:s:fh", OPTIONS, NULL)) != -1) {
		switch (c) {
		case 'c':
			a->cache = optarg;
			break;
		case 'T':
			if (!is_transport(optarg)) {
				*done = cli_usage_error(argv[0], USAGE,
				                        "--transport must be noise, tcp or off, not '%s'",
				                        optarg);
				return -1;
			}
			a->transport = optarg;
			break;
		case 's':
			a->shim = optarg;
			break;
		case 'f':
			a->force = 1;
			break;
		case 'h':
			*done = cli_help(USAGE);
			return -1;
		default:
			*done = cli_option_error(argv[0], USAGE, c, argv);
			return -1;
		}
	}
	if (optind == argc) {
		*done = cli_usage_error(argv[0], USAGE, "no PROGRAM given");
		return -1;
	}
	a->program = argv + optind;
	return 0;
}

/* Problems the shim itself will log are not run's to repeat. */
static void ignore_problem(const char *where, const char *problem)
{
	(void)where;
	(void)problem;
}

static void ignore_cache_problem(void *ctx, enum ns_cache_level level, const char *file,
                                 unsigned line, const char *reason)
{
	(void)ctx;
	(void)level;
	(void)file;
	(void)line;
	(void)reason;
}

/*
 * What the shim will do with a cache of entries usable lines and broken
 * bad ones that still name an address: it refuses every connect to those
 * addresses rather than send them plaintext, which a program shows only
 * as EACCES.  Nothing to say when every line is usable.
 */
static void warn_about_entries(const char *path, size_t entries, size_t broken)
{
	if (broken > 0)
		cli_error("warning: %s: %zu bad %s: the shim refuses every connection to %s "
		          "(connect fails with EACCES) rather than send plaintext%s; see why with "
		          "'noiseshim cache check --cache %s'", path, broken,
		          broken == 1 ? "line" : "lines", broken == 1 ? "its address" : "their addresses",
		          entries == 0 ? ", and wraps no other connection, as the cache has no usable "
		                         "entry" : "",
		          path);
	else if (entries == 0)
		cli_error("warning: %s has no usable entry: the shim wraps no connection; add "
		          "servers with 'noiseshim cache add URL', check it with 'noiseshim cache "
		          "check'", path);
}

/*
 * A shim without cache entries wraps nothing and says nothing, and one
 * whose cache has bad lines refuses their addresses with a bare EACCES: say
 * it here, in one line.  It fails closed on a configured cache it cannot
 * read.  The cache is --cache, else NOISESHIM_CACHE from the environment or
 * the config file; an inert shim (--transport or NOISESHIM_TRANSPORT off)
 * reads none.
 */
static void warn_about_cache(const struct run_args *a)
{
	struct ns_config config;
	const char *path;
	char default_path[PATH_MAX];
	struct ns_cache_table *table;
	size_t entries, broken;

	ns_config_load(&config, ignore_problem);
	if (a->transport != NULL ? strcmp(a->transport, "off") == 0
	                         : config.transport == NS_TRANSPORT_OFF)
		return;
	path = a->cache != NULL ? a->cache : config.cache[0] != '\0' ? config.cache : NULL;
	if (path == NULL) {
		if (cachefile_default_path(default_path, sizeof default_path) < 0)
			return;
		if (access(default_path, F_OK) < 0) {
			cli_error("warning: no NodeURL cache (no --cache, no NOISESHIM_CACHE, no %s): "
			          "the shim wraps no connection; add servers with 'noiseshim cache "
			          "add URL'", default_path);
			return;
		}
		path = default_path;
	}
	if (access(path, R_OK) < 0) {
		cli_error("warning: %s: %s; while it cannot be read, the shim refuses TCP "
		          "connections rather than risk plaintext",
		          path, strerror(errno));
		return;
	}
	table = ns_cache_table_load(path, ignore_cache_problem, NULL);
	if (table == NULL)
		return;
	entries = ns_cache_table_count(table);
	broken = ns_cache_table_broken(table);
	ns_cache_table_free(table);
	warn_about_entries(path, entries, broken);
}

/* noiseshim run [options] PROGRAM [ARGS]: run PROGRAM under the client shim. */
int cmd_run(int argc, char **argv)
{
	struct run_args args;
	char shim[PATH_MAX];
	int done;

	if (parse_args(argc, argv, &args, &done) < 0)
		return done;
	if (launch_find_shim(args.shim, CLIENT_SHIM_NAME, shim, sizeof shim) < 0)
		return 1;
	if (launch_check_reach(args.program[0], args.force) < 0) {
		proxy_hint_client(args.program[0], args.cache);
		return 1;
	}
	warn_about_cache(&args);
	if (args.cache != NULL && launch_set_path("NOISESHIM_CACHE", args.cache) < 0)
		return 1;
	if (args.transport != NULL && launch_set("NOISESHIM_TRANSPORT", args.transport) < 0)
		return 1;
	if (launch_preload(shim) < 0)
		return 1;
	return launch_exec(args.program);
}
