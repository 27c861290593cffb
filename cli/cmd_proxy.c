/*
 * noiseshim proxy client|server: the shims' wire for programs that
 * LD_PRELOAD cannot reach.
 */
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "config.h"
#include "keys.h"
#include "proxy.h"
#include "proxy_target.h"

#define STR_(x) #x
#define STR(x) STR_(x)

static const char USAGE[] =
	"usage: noiseshim proxy client --listen ADDR:PORT --target HOST:PORT [--cache FILE]\n"
	"                              [--key FILE] [--first-wait-us N] [--first-quiet-us N]\n"
	"                              [--handshake-timeout-ms N]\n"
	"       noiseshim proxy server --key FILE[,FILE...] --listen ADDR:PORT --target HOST:PORT\n"
	"                              [--allow FILE] [--replay-file FILE]\n"
	"                              [--accept noise|mixed] [--proxy-protocol]\n"
	"                              [--handshake-timeout-ms N]\n"
	"\n"
	"The shims' wire, for programs that LD_PRELOAD cannot reach (Go, static and\n"
	"set-user-ID binaries).  One process, one event loop, any number of connections.\n"
	"\n"
	"client: take plaintext connections on ADDR:PORT and carry each to the target\n"
	"  over Noise_IK, with the key, suite and TCP Fast Open that the target's entry\n"
	"  in the NodeURL cache gives.  The program's first bytes ride in msg1, inside\n"
	"  the SYN when the entry has f=1.  Without a usable entry it refuses to start.\n"
	"  --cache FILE           the NodeURL cache (default $NOISESHIM_CACHE, else\n"
	"                         ~/.config/noiseshim/cache)\n"
	"  --key FILE             our static key (default: a new one per process)\n"
	"  --first-wait-us N      msg1 leaves empty when the program has sent nothing\n"
	"                         for N us, for protocols where the server speaks first,\n"
	"                         and at most N us after its first byte\n"
	"                         (default " STR(PROXY_DEFAULT_FIRST_WAIT_US) ")\n"
	"  --first-quiet-us N     msg1 leaves N us after the program's last write, or at\n"
	"                         65535 bytes (default " STR(PROXY_DEFAULT_FIRST_QUIET_US) ")\n"
	"\n"
	"server: answer Noise_IK on ADDR:PORT and carry each connection to the target\n"
	"  in plaintext, connecting once msg1 has been read and checked as the accept\n"
	"  shim checks it.  Key files and the allowlist are re-read when they change.\n"
	"  --key FILE[,FILE...]   the server's private key files: the first is current,\n"
	"                         the others are still accepted (a key rotation)\n"
	"  --allow FILE           let in only the clients whose public keys FILE lists,\n"
	"                         one per line (default $NOISESHIM_ALLOW, else all)\n"
	"  --replay-file FILE     the window of first flights seen, shared with every\n"
	"                         proxy and accept shim that uses FILE (default\n"
	"                         $NOISESHIM_REPLAY_FILE, else a file per key under\n"
	"                         /run/noiseshim); NOISESHIM_REPLAY_STORE,\n"
	"                         NOISESHIM_REPLAY_WINDOW and NOISESHIM_REPLAY_CAPACITY\n"
	"                         apply as in the accept shim\n"
	"  --accept MODE          noise takes only Noise (default); mixed also relays\n"
	"                         plaintext clients, told apart by the route prefix\n"
	"  --proxy-protocol       send a PROXY protocol v2 header to the target first,\n"
	"                         naming the real client address\n"
	"  Under load (500 first flights a second, kept up for a second), an address\n"
	"  above NOISESHIM_RATE_LIMIT first flights a second (default 20, burst\n"
	"  NOISESHIM_RATE_BURST, default 5) is closed before any DH, as by the accept\n"
	"  shim; NOISESHIM_RATE_LIMIT=0 turns this off.\n"
	"\n"
	"both:\n"
	"  --handshake-timeout-ms N   close a connection whose handshake is not done in\n"
	"                             N ms (default " STR(PROXY_DEFAULT_HANDSHAKE_TIMEOUT_MS) ")\n"
	"\n"
	"Each proxy prints 'listening ADDR:PORT' when ready (PORT 0 picks a free one),\n"
	"and one line on stderr for every connection it closes on an error.\n";

static const struct option OPTIONS[] = {
	{ "listen", required_argument, NULL, 'l' },
	{ "target", required_argument, NULL, 't' },
	{ "cache", required_argument, NULL, 'c' },
	{ "key", required_argument, NULL, 'k' },
	{ "allow", required_argument, NULL, 'a' },
	{ "replay-file", required_argument, NULL, 'R' },
	{ "accept", required_argument, NULL, 'A' },
	{ "proxy-protocol", no_argument, NULL, 'P' },
	{ "first-wait-us", required_argument, NULL, 'w' },
	{ "first-quiet-us", required_argument, NULL, 'q' },
	{ "handshake-timeout-ms", required_argument, NULL, 'T' },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

enum { NUMBER_MAX = 3600 * 1000 * 1000U };

struct proxy_args {
	const char *listen, *target, *cache, *key, *accept, *allow, *replay_file;
	int proxy_protocol;
	int first_flight_set;  /* --first-wait-us or --first-quiet-us given */
	unsigned first_wait_us, first_quiet_us, handshake_timeout_ms;
};

/* A decimal option value from 1 to NUMBER_MAX.  -1 if text is not one. */
static int parse_number(const char *text, unsigned *out)
{
	char *end;
	unsigned long v = strtoul(text, &end, 10);

	if (text[0] < '0' || text[0] > '9' || *end != '\0' || v == 0 || v > NUMBER_MAX)
		return -1;
	*out = (unsigned)v;
	return 0;
}

/*
 * Parse the command line of cmd ("proxy client" or "proxy server"): 0 to go
 * on, -1 when *done holds the exit code.
 */
static int parse_args(const char *cmd, int argc, char **argv, struct proxy_args *a, int *done)
{
	int c;

	*a = (struct proxy_args){ .first_wait_us = PROXY_DEFAULT_FIRST_WAIT_US,
	                          .first_quiet_us = PROXY_DEFAULT_FIRST_QUIET_US,
	                          .handshake_timeout_ms = PROXY_DEFAULT_HANDSHAKE_TIMEOUT_MS };
	while ((c = getopt_long(argc, argv, ":h", OPTIONS, NULL)) != -1) {
		unsigned *number = NULL;
		const char *option = NULL;
		switch (c) {
		case 'l': a->listen = optarg; break;
		case 't': a->target = optarg; break;
		case 'c': a->cache = optarg; break;
		case 'k': a->key = optarg; break;
		case 'a': a->allow = optarg; break;
		case 'R': a->replay_file = optarg; break;
		case 'A': a->accept = optarg; break;
		case 'P': a->proxy_protocol = 1; break;
		case 'w':
			number = &a->first_wait_us, option = "--first-wait-us";
			a->first_flight_set = 1;
			break;
		case 'q':
			number = &a->first_quiet_us, option = "--first-quiet-us";
			a->first_flight_set = 1;
			break;
		case 'T': number = &a->handshake_timeout_ms, option = "--handshake-timeout-ms"; break;
		case 'h':
			*done = cli_help(USAGE);
			return -1;
		default:
			*done = cli_option_error(cmd, USAGE, c, argv);
			return -1;
		}
		if (number != NULL && parse_number(optarg, number) < 0) {
			*done = cli_usage_error(cmd, USAGE, "%s: expected a number from 1 to %u, not '%s'",
			                        option, NUMBER_MAX, optarg);
			return -1;
		}
	}
	if (optind < argc) {
		*done = cli_usage_error(cmd, USAGE, "unexpected argument '%s'", argv[optind]);
		return -1;
	}
	if (a->listen == NULL || a->target == NULL) {
		*done = cli_usage_error(cmd, USAGE, "--listen and --target are required");
		return -1;
	}
	if ((a->allow != NULL && a->allow[0] == '\0') ||
	    (a->replay_file != NULL && a->replay_file[0] == '\0')) {
		*done = cli_usage_error(cmd, USAGE, "--allow and --replay-file name a file");
		return -1;
	}
	if (a->accept != NULL && strcmp(a->accept, "noise") != 0 && strcmp(a->accept, "mixed") != 0) {
		*done = cli_usage_error(cmd, USAGE, "--accept must be noise or mixed, not '%s'",
		                        a->accept);
		return -1;
	}
	return 0;
}

/* --listen and --target into cfg.  0, or -1 with the error printed. */
static int resolve(const char *cmd, const struct proxy_args *a, struct proxy_config *cfg)
{
	char err[512];

	if (proxy_parse_addr(a->listen, 1, &cfg->listen_addr, &cfg->listen_len, err, sizeof err) < 0) {
		cli_usage_error(cmd, USAGE, "--listen %s", err);
		return -1;
	}
	if (proxy_parse_addr(a->target, 0, &cfg->target_addr, &cfg->target_len, err, sizeof err) < 0) {
		cli_usage_error(cmd, USAGE, "--target %s", err);
		return -1;
	}
	proxy_addr_text((const struct sockaddr *)&cfg->target_addr, cfg->target_text,
	                sizeof cfg->target_text);
	return 0;
}

/* The client's static key: --key, else a fresh one for this process.  0 or -1 printed. */
static int client_key(const char *path, struct ns_keypair *kp)
{
	uint8_t priv[NS_KEY_LEN], pub[NS_KEY_LEN];
	char err[512];
	int rc = -1;

	if (path == NULL)
		ns_key_generate(priv, pub);
	else if (ns_key_load(path, priv, err, sizeof err) < 0) {
		cli_error("%s", err);
		goto out;
	}
	if (ns_keypair_from_private(kp, priv) < 0) {
		cli_error("%s: degenerate key", path);
		goto out;
	}
	rc = 0;
out:
	sodium_memzero(priv, sizeof priv);
	return rc;
}

/*
 * Which proxy is loading its configuration, and how many problems
 * ns_config_load reported: its callback has no context.
 */
static const char *config_role;
static unsigned config_problems;

/* A proxy that cannot apply its configuration (a bad value, a name none of ours) must not run. */
static void refuse_config(const char *where, const char *problem)
{
	cli_error("proxy %s: refusing to start: %s: %s", config_role, where, problem);
	config_problems++;
}

/* NOISESHIM_* from the environment and NOISESHIM_CONFIG, as the shims read them.  0 or -1. */
static int load_config(const char *role, struct ns_config *env)
{
	config_role = role;
	ns_config_load(env, refuse_config);
	return config_problems > 0 ? -1 : 0;
}

static int run_client(const struct proxy_args *a, struct proxy_config *cfg)
{
	struct ns_config env;
	char err[1024];

	if (a->accept != NULL || a->proxy_protocol || a->allow != NULL || a->replay_file != NULL)
		return cli_usage_error("proxy client", USAGE, "--accept, --proxy-protocol, --allow "
		                       "and --replay-file are server options");
	if (load_config("client", &env) < 0)
		return 1;
	if (proxy_lookup_target(a->cache, cfg, err, sizeof err) < 0) {
		cli_error("proxy client: refusing to start: %s", err);
		return EXIT_USAGE;
	}
	if (client_key(a->key, &cfg->static_key) < 0)
		return 1;
	cfg->first_wait_us = a->first_wait_us;
	cfg->first_quiet_us = a->first_quiet_us;
	return proxy_run(cfg);
}


/*
 * The replay guard's settings: --replay-file over NOISESHIM_REPLAY_FILE
 * (messages name whichever was used), and the other NOISESHIM_REPLAY_*
 * variables, so that the window files of the proxy and of the accept
 * shim agree.
 */
static struct ns_replay_guard_config replay_settings(const struct proxy_args *a,
                                                    const struct ns_config *env)
{
	return (struct ns_replay_guard_config){
		.file = a->replay_file != NULL ? a->replay_file : env->replay_file,
		.file_setting = a->replay_file != NULL ? "--replay-file" : "NOISESHIM_REPLAY_FILE",
		.store = env->replay_store,
		.window_s = env->replay_window_s,
		.capacity = env->replay_capacity,
	};
}

static int run_server(const struct proxy_args *a, struct proxy_config *cfg)
{
	/* NOISESHIM_ALLOW, NOISESHIM_REPLAY_* and NOISESHIM_RATE_*, read as the accept shim reads them. */
	struct ns_config env;
	struct ns_server_keys_config keys;
	struct ns_replay_guard_config replay;
	struct ns_load_guard_config load;
	char err[NS_REPLAY_REASON_MAX + 128];

	if (a->cache != NULL || a->first_flight_set)
		return cli_usage_error("proxy server", USAGE, "--cache, --first-wait-us and "
		                       "--first-quiet-us are client options");
	if (a->key == NULL)
		return cli_usage_error("proxy server", USAGE, "--key is required");
	if (load_config("server", &env) < 0)
		return 1;
	/* The option wins over the variable, and messages name whichever was used. */
	keys = (struct ns_server_keys_config){
		.keys = a->key,
		.key_setting = "--key",
		.allow = a->allow != NULL ? a->allow : env.allow,
		.allow_setting = a->allow != NULL ? "--allow" : "NOISESHIM_ALLOW",
	};
	replay = replay_settings(a, &env);
	/* The accept shim's load guard, with its variables and defaults. */
	load = (struct ns_load_guard_config){ .rate_limit = env.rate_limit,
	                                      .rate_burst = env.rate_burst };
	if ((cfg->identity = proxy_identity_load(&keys, &replay, &load, err, sizeof err)) == NULL) {
		cli_error("proxy server: %s", err);
		return 1;
	}
	cfg->mixed = a->accept != NULL && strcmp(a->accept, "mixed") == 0;
	cfg->proxy_protocol = a->proxy_protocol;
	return proxy_run(cfg);
}

/* noiseshim proxy client|server [options]: run a proxy. */
int cmd_proxy(int argc, char **argv)
{
	struct proxy_config cfg = { 0 };
	struct proxy_args args;
	const char *cmd;
	int done, rc;

	if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0))
		return cli_help(USAGE);
	if (argc < 2)
		return cli_usage_error(argv[0], USAGE, "client or server?");
	if (strcmp(argv[1], "client") != 0 && strcmp(argv[1], "server") != 0)
		return cli_usage_error(argv[0], USAGE, "expected client or server, not '%s'", argv[1]);
	cfg.role = strcmp(argv[1], "client") == 0 ? PROXY_CLIENT : PROXY_SERVER;
	cmd = cfg.role == PROXY_CLIENT ? "proxy client" : "proxy server";
	if (parse_args(cmd, argc - 1, argv + 1, &args, &done) < 0)
		return done;
	if (resolve(cmd, &args, &cfg) < 0)
		return EXIT_USAGE;
	cfg.handshake_timeout_ms = args.handshake_timeout_ms;
	/* A peer that resets while we write must cost its pair, not the process. */
	signal(SIGPIPE, SIG_IGN);
	rc = cfg.role == PROXY_CLIENT ? run_client(&args, &cfg) : run_server(&args, &cfg);
	proxy_identity_free(cfg.identity);
	sodium_memzero(&cfg.static_key, sizeof cfg.static_key);
	return rc;
}
