/*
 * noiseshim doctor: what is wrong with a setup, one finding per line.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cache.h"
#include "cachefile.h"
#include "cli.h"
#include "nodeurl.h"
#include "proxy_hint.h"
#include "reach.h"
#include "server_identity.h"
#include "shimpath.h"
#include "tfo.h"

static const char USAGE[] =
	"usage: noiseshim doctor [--key FILE] [--cache FILE] [PROGRAM]\n"
	"\n"
	"Check what the shims depend on and print one line per finding, starting with\n"
	"ok, warn or error; exit 1 if there is an error.  The checks:\n"
	"\n"
	"  - TCP Fast Open in this host's kernel (net.ipv4.tcp_fastopen)\n"
	"  - the private key FILE (else $NOISESHIM_KEY): loads, and only its owner can\n"
	"    read it\n"
	"  - the NodeURL cache FILE (else $NOISESHIM_CACHE, else\n"
	"    ~/.config/noiseshim/cache): every line the shim would skip\n"
	"  - the shims beside this noiseshim (or in ../lib/noiseshim/)\n"
	"  - whether LD_PRELOAD reaches PROGRAM, found through PATH\n";

static const struct option OPTIONS[] = {
	{ "key", required_argument, NULL, 'k' },
	{ "cache", required_argument, NULL, 'c' },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

enum level { LEVEL_OK, LEVEL_WARN, LEVEL_ERROR };

static const char *const LEVEL_NAMES[] = { "ok", "warn", "error" };

struct doctor {
	unsigned errors;
};

struct doctor_args {
	const char *key_path;
	const char *cache_path;
	const char *program;
};

/* Print one finding as "LEVEL: message". */
__attribute__((format(printf, 3, 4)))
static void finding(struct doctor *d, enum level level, const char *fmt, ...)
{
	va_list ap;

	if (level == LEVEL_ERROR)
		d->errors++;
	printf("%s: ", LEVEL_NAMES[level]);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
}

static void check_tfo(struct doctor *d)
{
	unsigned value, missing;
	const char *what;

	if (tfo_sysctl_read(&value) < 0) {
		finding(d, LEVEL_WARN, "TCP Fast Open: cannot read %s: %s", TFO_SYSCTL_PATH,
		        strerror(errno));
		return;
	}
	missing = (TFO_CLIENT | TFO_SERVER) & ~value;
	if (missing == 0) {
		finding(d, LEVEL_OK, "net.ipv4.tcp_fastopen = %u: clients may send data in the SYN "
		        "(bit 1) and listeners accept it (bit 2)", value);
	} else {
		if (missing == TFO_CLIENT)
			what = "clients here cannot send data in the SYN (bit 1 is off)";
		else if (missing == TFO_SERVER)
			what = "listeners here ignore data in the SYN (bit 2 is off)";
		else
			what = "TCP Fast Open is off for clients (bit 1) and listeners (bit 2)";
		finding(d, LEVEL_WARN, "net.ipv4.tcp_fastopen = %u: %s, so a first exchange takes a "
		        "round trip more; enable both with: sysctl -w net.ipv4.tcp_fastopen=%u",
		        value, what, value | TFO_CLIENT | TFO_SERVER);
	}
	if (value & TFO_SERVER_NO_COOKIE)
		finding(d, LEVEL_WARN, "net.ipv4.tcp_fastopen = %u has bit 0x%x: listeners take SYN "
		        "data without a cookie, so a spoofed SYN makes this host send a reply to "
		        "its victim", value, TFO_SERVER_NO_COOKIE);
}

static void check_key(struct doctor *d, const char *path)
{
	uint8_t pub[NS_KEY_LEN];
	char err[512], text[NS_NODEURL_STR_MAX];

	if (path == NULL) {
		finding(d, LEVEL_OK, "key: none given (--key or NOISESHIM_KEY); a client then uses "
		        "a fresh key per process, a server needs one");
		return;
	}
	if (server_identity_load(path, pub, err, sizeof err) < 0) {
		finding(d, LEVEL_ERROR, "key: %s", err);
		return;
	}
	if (ns_noise_pub_encode(pub, text, sizeof text) == 0)
		finding(d, LEVEL_ERROR, "key: %s: cannot encode its public key", path);
	else
		finding(d, LEVEL_OK, "key: %s loads, readable only by its owner; noise_pub=%s",
		        path, text);
}

static void report_cache_problem(void *ctx, const char *file, unsigned line, const char *reason)
{
	struct doctor *d = ctx;

	if (line == 0)
		finding(d, LEVEL_ERROR, "cache: %s: %s", file, reason);
	else
		finding(d, LEVEL_ERROR, "cache: %s:%u: %s", file, line, reason);
}

/* Anyone who can write the cache chooses which keys clients trust. */
static void check_cache_mode(struct doctor *d, const char *path)
{
	struct stat st;

	if (stat(path, &st) == 0 && (st.st_mode & S_IWOTH))
		finding(d, LEVEL_ERROR, "cache: %s: mode %04o lets anyone change the keys clients "
		        "trust; fix it with: chmod o-w %s", path, (unsigned)(st.st_mode & 07777), path);
}

static void check_cache(struct doctor *d, const char *given)
{
	const char *env = getenv("NOISESHIM_CACHE");
	int is_default = given == NULL && (env == NULL || env[0] == '\0');
	char default_path[PATH_MAX];
	const char *path = given;
	struct ns_cache_table *table;
	unsigned errors_before = d->errors;
	size_t entries;

	if (path == NULL) {
		if (cachefile_default_path(default_path, sizeof default_path) < 0)
			return;
		path = default_path;
	}
	/* The client shim, too, reads the default cache only if it exists. */
	if (is_default && access(path, F_OK) < 0 && errno == ENOENT) {
		finding(d, LEVEL_WARN, "cache: none (no --cache, NOISESHIM_CACHE unset, no %s): the "
		        "client shim wraps no connection", path);
		return;
	}
	table = ns_cache_table_load(path, report_cache_problem, d);
	if (table == NULL)
		return;
	entries = ns_cache_table_count(table);
	ns_cache_table_free(table);
	check_cache_mode(d, path);
	if (d->errors > errors_before)
		return;
	if (entries == 0)
		finding(d, LEVEL_WARN, "cache: %s has no entries: the client shim wraps no "
		        "connection", path);
	else
		finding(d, LEVEL_OK, "cache: %s: %zu %s", path, entries,
		        entries == 1 ? "entry" : "entries");
}

static void check_shim(struct doctor *d, const char *name, const char *command)
{
	char path[PATH_MAX], tried[2 * PATH_MAX];

	if (shimpath_find(name, path, sizeof path, tried, sizeof tried) == 0)
		finding(d, LEVEL_OK, "shim: %s", path);
	else
		finding(d, LEVEL_WARN, "shim: %s not found (tried %s); 'noiseshim %s' needs it, or "
		        "--shim PATH", name, tried, command);
}

static void check_program(struct doctor *d, const char *program)
{
	static const enum level LEVELS[] = {
		[REACH_OK] = LEVEL_OK,
		[REACH_UNKNOWN] = LEVEL_WARN,
		[REACH_REFUSED] = LEVEL_ERROR,
		[REACH_NO_RUN] = LEVEL_ERROR,
	};
	char why[4096];
	enum reach_verdict verdict = reach_check(program, why, sizeof why);

	finding(d, LEVELS[verdict], "program: %s", why);
}

/* Parse the command line: 0 to go on, -1 when *done holds the exit code. */
static int parse_args(int argc, char **argv, struct doctor_args *a, int *done)
{
	int c;

	*a = (struct doctor_args){ .key_path = getenv("NOISESHIM_KEY") };
	if (a->key_path != NULL && a->key_path[0] == '\0')
		a->key_path = NULL;
	while ((c = getopt_long(argc, argv, ":k:c:h", OPTIONS, NULL)) != -1) {
		switch (c) {
		case 'k':
			a->key_path = optarg;
			break;
		case 'c':
			a->cache_path = optarg;
			break;
		case 'h':
			*done = cli_help(USAGE);
			return -1;
		default:
			*done = cli_option_error(argv[0], USAGE, c, argv);
			return -1;
		}
	}
	if (argc - optind > 1) {
		*done = cli_usage_error(argv[0], USAGE, "unexpected argument '%s'", argv[optind + 1]);
		return -1;
	}
	a->program = optind < argc ? argv[optind] : NULL;
	return 0;
}

/* noiseshim doctor [--key FILE] [--cache FILE] [PROGRAM]: report what is wrong with a setup. */
int cmd_doctor(int argc, char **argv)
{
	struct doctor_args args;
	struct doctor d = { 0 };
	int done;

	if (parse_args(argc, argv, &args, &done) < 0)
		return done;
	check_tfo(&d);
	check_key(&d, args.key_path);
	check_cache(&d, args.cache_path);
	check_shim(&d, CLIENT_SHIM_NAME, "run");
	check_shim(&d, SERVER_SHIM_NAME, "serve");
	if (args.program != NULL) {
		check_program(&d, args.program);
		fflush(stdout);
		proxy_hint_client(args.program, args.cache_path);
		if (args.key_path != NULL)
			proxy_hint_server(args.program, args.key_path, NULL, NULL);
	}
	return d.errors > 0 ? 1 : 0;
}
