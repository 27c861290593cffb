/*
 * noiseshim run: a program under the client shim.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
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
	"                     noiseshim, else ../lib/noiseshim/" CLIENT_SHIM_NAME ")\n"
	"  --force            launch PROGRAM even if LD_PRELOAD cannot reach it\n"
	"\n"
	"PROGRAM is refused, with the reason, when LD_PRELOAD cannot reach it: a static\n"
	"or Go binary, or one that gains privileges (set-user-ID, set-group-ID, file\n"
	"capabilities).  A #! script is judged by its interpreter.\n";

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

/* The shim fails closed on a cache it cannot read: say so before it happens. */
static void warn_unreadable_cache(const char *path)
{
	if (access(path, R_OK) < 0)
		cli_error("warning: %s: %s; while it cannot be read, the shim refuses TCP "
		          "connections rather than risk plaintext",
		          path, strerror(errno));
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
	if (args.cache != NULL) {
		warn_unreadable_cache(args.cache);
		if (launch_set_path("NOISESHIM_CACHE", args.cache) < 0)
			return 1;
	}
	if (args.transport != NULL && launch_set("NOISESHIM_TRANSPORT", args.transport) < 0)
		return 1;
	if (launch_preload(shim) < 0)
		return 1;
	return launch_exec(args.program);
}
