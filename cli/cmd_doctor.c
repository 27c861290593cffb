/*
 * noiseshim doctor: what is wrong with a setup, one finding per line.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "allowlist.h"
#include "cache.h"
#include "cachefile.h"
#include "cli.h"
#include "config.h"
#include "keyring.h"
#include "listen.h"
#include "listening.h"
#include "nodeurl.h"
#include "proxy_hint.h"
#include "reach.h"
#include "replay_config.h"
#include "server_identity.h"
#include "shimpath.h"
#include "tfo.h"

static const char USAGE[] =
	"usage: noiseshim doctor [--key FILE[,FILE...]] [--cache FILE] [--allow FILE] [PROGRAM]\n"
	"\n"
	"Check what the shims depend on and print one line per finding, starting with\n"
	"ok, warn or error; exit 1 if there is an error.  The checks:\n"
	"\n"
	"  - every NOISESHIM_* setting the shims would read, from the environment and\n"
	"    the file named by NOISESHIM_CONFIG (a problem there names FILE:LINE)\n"
	"    (a NOISESHIM_* variable that is none of noiseshim's is an error too)\n"
	"  - that each NOISESHIM_LISTEN entry parses and matches a socket listening\n"
	"    now (a socket on its port bound to another address is the usual mistake)\n"
	"  - NOISESHIM_REPLAY_STORE and NOISESHIM_REPLAY_FILE, with the accept shim's\n"
	"    own checks (a bad one makes every wrapped listen() fail)\n"
	"  - TCP Fast Open in this host's kernel (net.ipv4.tcp_fastopen), and whether\n"
	"    listeners take SYN data without a cookie\n"
	"  - each private key file in FILE,... (else NOISESHIM_KEY): loads, and only\n"
	"    its owner can read it; and that there is one if NOISESHIM_LISTEN is set\n"
	"  - the client allowlist FILE (else $NOISESHIM_ALLOW): every line that is not\n"
	"    a key, and who may change it\n"
	"  - the NodeURL cache FILE (else $NOISESHIM_CACHE, else\n"
	"    ~/.config/noiseshim/cache): every line the shim would skip\n"
	"  - the shims beside this noiseshim (or in ../lib/noiseshim/)\n"
	"  - whether LD_PRELOAD reaches PROGRAM, found through PATH\n";

static const struct option OPTIONS[] = {
	{ "key", required_argument, NULL, 'k' },
	{ "cache", required_argument, NULL, 'c' },
	{ "allow", required_argument, NULL, 'a' },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

enum level { LEVEL_OK, LEVEL_WARN, LEVEL_ERROR };

static const char *const LEVEL_NAMES[] = { "ok", "warn", "error" };

struct doctor {
	unsigned errors;
};

struct doctor_args {
	const char *key_list;
	const char *cache_path;
	const char *allow_path;
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
	if (value & TFO_SERVER_ALL_LISTENERS)
		finding(d, LEVEL_WARN, "net.ipv4.tcp_fastopen = %u has bit 0x%x: every listener "
		        "takes SYN data, even in programs that never asked for it", value,
		        TFO_SERVER_ALL_LISTENERS);
}

/* One key file of the list: loads, mode 0600.  Says which entry is current. */
static void check_key_file(struct doctor *d, const char *path, int current)
{
	uint8_t pub[NS_KEY_LEN];
	char err[512], text[NS_NODEURL_STR_MAX];

	if (server_identity_load(path, pub, err, sizeof err) < 0) {
		finding(d, LEVEL_ERROR, "key: %s", err);
		return;
	}
	if (ns_noise_pub_encode(pub, text, sizeof text) == 0)
		finding(d, LEVEL_ERROR, "key: %s: cannot encode its public key", path);
	else
		finding(d, LEVEL_OK, "key: %s loads, readable only by its owner; %snoise_pub=%s",
		        path, current ? "" : "still accepted, not current; ", text);
}

/* What the shims load from the list beyond each file: its length. */
static void check_key_list(struct doctor *d, const char *list)
{
	char err[NS_KEYRING_ERR_MAX];
	struct ns_keyring *ring = ns_keyring_load(list, err, sizeof err);

	if (ring == NULL)
		finding(d, LEVEL_ERROR, "key: %s", err);
	ns_keyring_free(ring);
}

/* Every file of a NOISESHIM_KEY list, each problem on its own line. */
static void check_keys(struct doctor *d, const char *list)
{
	char path[PATH_MAX], err[NS_KEYRING_ERR_MAX];
	unsigned errors_before = d->errors;
	const char *cursor = list;
	unsigned entry = 0;
	int more;

	while ((more = ns_keyring_next_path(&cursor, &entry, path, err, sizeof err)) != 0) {
		if (more < 0)
			finding(d, LEVEL_ERROR, "key: %s", err);
		else
			check_key_file(d, path, entry == 1);
	}
	if (d->errors == errors_before)
		check_key_list(d, list);
}

/* Without a key the accept shim refuses every wrapped listen(); a client makes its own. */
static void check_no_key(struct doctor *d, const struct ns_config *c)
{
	if (c->transport == NS_TRANSPORT_NOISE && c->listen[0] != '\0')
		finding(d, LEVEL_ERROR, "key: none given (--key or NOISESHIM_KEY), but "
		        "NOISESHIM_LISTEN=%s: the accept shim refuses to listen there (EACCES); make "
		        "one with: noiseshim keygen FILE", c->listen);
	else
		finding(d, LEVEL_OK, "key: none given (--key or NOISESHIM_KEY); a client then uses "
		        "a fresh key per process, a server needs one");
}

/* The doctor the config reporter writes to: ns_config_load's callback has no context. */
static struct doctor *config_doctor;

static void report_config_problem(const char *where, const char *problem)
{
	finding(config_doctor, LEVEL_ERROR, "config: %s: %s", where, problem);
}

/* The settings as the shims would read them; every bad one is an error naming where it is. */
static void check_config(struct doctor *d, struct ns_config *c)
{
	const char *file = getenv("NOISESHIM_CONFIG");
	unsigned errors_before = d->errors;

	config_doctor = d;
	ns_config_load(c, report_config_problem);
	config_doctor = NULL;
	if (d->errors > errors_before)
		return;
	if (file != NULL && file[0] != '\0')
		finding(d, LEVEL_OK, "config: NOISESHIM_CONFIG=%s and the environment parse", file);
	else
		finding(d, LEVEL_OK, "config: the NOISESHIM_* environment parses (no NOISESHIM_CONFIG "
		        "file)");
}

/* addr in inet_ntop's canonical form, so that "::0001" and "::1" compare equal. */
static void canonical_address(const char *addr, char out[INET6_ADDRSTRLEN])
{
	unsigned char bytes[sizeof(struct in6_addr)];

	if (inet_pton(AF_INET, addr, bytes) == 1)
		inet_ntop(AF_INET, bytes, out, INET6_ADDRSTRLEN);
	else if (inet_pton(AF_INET6, addr, bytes) == 1)
		inet_ntop(AF_INET6, bytes, out, INET6_ADDRSTRLEN);
	else
		snprintf(out, INET6_ADDRSTRLEN, "%s", addr);
}

/*
 * Hold one entry against the sockets listening now: the accept shim wraps a
 * socket bound to exactly ADDR:PORT, or any socket on PORT for a bare port,
 * and a socket bound to every address whose port an entry names with one
 * address on every address (with a warning).  A socket on the port but
 * another single address is the likely mistake.
 */
static void check_listen_entry(struct doctor *d, const struct listen_entry *e,
                               const struct listening_list *now)
{
	char want[INET6_ADDRSTRLEN], entry[INET6_ADDRSTRLEN + 16];
	const char *other = NULL;

	canonical_address(e->addr, want);
	/* As the user would write it: PORT, ADDR:PORT or [IPV6]:PORT. */
	if (e->addr[0] == '\0')
		snprintf(entry, sizeof entry, "%u", e->port);
	else
		snprintf(entry, sizeof entry, strchr(e->addr, ':') ? "[%s]:%u" : "%s:%u", e->addr,
		         e->port);
	for (size_t i = 0; i < now->count; i++) {
		const struct listening_socket *s = &now->socket[i];

		if (s->port != e->port)
			continue;
		if (e->addr[0] == '\0' || strcmp(s->addr, want) == 0) {
			finding(d, LEVEL_OK, "listen: NOISESHIM_LISTEN entry %s matches the socket "
			        "listening on %s port %u", entry, s->addr, s->port);
			return;
		}
		if (strcmp(s->addr, "0.0.0.0") == 0 || strcmp(s->addr, "::") == 0) {
			finding(d, LEVEL_WARN, "listen: NOISESHIM_LISTEN entry %s: the socket on port %u "
			        "is bound to every address (%s), so the shim wraps it on every address; "
			        "write %u to say so", entry, e->port, s->addr, e->port);
			return;
		}
		other = s->addr;
	}
	if (other != NULL)
		finding(d, LEVEL_WARN, "listen: NOISESHIM_LISTEN entry %s matches no socket: the one "
		        "on port %u is bound to %s; name that address, or write %u for any address",
		        entry, e->port, other, e->port);
	else
		finding(d, LEVEL_WARN, "listen: NOISESHIM_LISTEN entry %s: nothing listens on port %u "
		        "now (fine if the server has not started)", entry, e->port);
}

/* Each NOISESHIM_LISTEN entry must parse, or the accept shim wraps nothing there. */
static void check_listen(struct doctor *d, const char *list)
{
	struct listening_list *now;
	struct listen_entry e;
	const char *cursor = list;
	char err[256];
	int more, entries = 0;

	if (list[0] == '\0')
		return;
	while ((more = listen_next(&cursor, &e, err, sizeof err)) > 0)
		entries++;
	if (more < 0) {
		finding(d, LEVEL_ERROR, "listen: NOISESHIM_LISTEN=%s: %s", list, err);
		return;
	}
	if (entries == 0) {
		finding(d, LEVEL_ERROR, "listen: NOISESHIM_LISTEN=%s names no port", list);
		return;
	}
	if (entries > NS_LISTEN_MAX) {
		finding(d, LEVEL_ERROR, "listen: NOISESHIM_LISTEN=%s has more than %d entries: the "
		        "accept shim refuses every listen() (EACCES)", list, NS_LISTEN_MAX);
		return;
	}
	finding(d, LEVEL_OK, "listen: NOISESHIM_LISTEN=%s: %d %s", list, entries,
	        entries == 1 ? "entry" : "entries");
	now = malloc(sizeof *now);
	if (now == NULL || listening_read(now) < 0) {
		finding(d, LEVEL_WARN, "listen: cannot list the listening sockets (/proc/net/tcp): %s",
		        strerror(now == NULL ? ENOMEM : errno));
		free(now);
		return;
	}
	cursor = list;
	while (listen_next(&cursor, &e, err, sizeof err) > 0)
		check_listen_entry(d, &e, now);
	free(now);
}

/* NOISESHIM_REPLAY_STORE's URL, parsed as the accept shim parses it. */
static void check_replay_store(struct doctor *d, const char *url)
{
	char host[NS_REPLAY_STORE_HOST_MAX], why[NS_CONFIG_TEXT_MAX + 128];
	int port;

	if (ns_replay_store_parse(url, host, &port, why, sizeof why) != 0)
		finding(d, LEVEL_ERROR, "replay: %s: the accept shim refuses every wrapped listen() "
		        "(EACCES)", why);
	else
		finding(d, LEVEL_OK, "replay: NOISESHIM_REPLAY_STORE=%s: Redis at %s port %d (not "
		        "tried)", url, host, port);
}

/* NOISESHIM_REPLAY_FILE, as the accept shim checks it before it opens the window there. */
static void check_replay_file(struct doctor *d, const char *path)
{
	char why[2 * PATH_MAX + 128];

	if (ns_replay_file_check("NOISESHIM_REPLAY_FILE", path, why, sizeof why) != 0)
		finding(d, LEVEL_ERROR, "replay: %s: the accept shim refuses every wrapped listen() "
		        "(EACCES)", why);
	else
		finding(d, LEVEL_OK, "replay: NOISESHIM_REPLAY_FILE=%s can be opened or created by "
		        "uid %u", path, (unsigned)geteuid());
}

static void check_replay(struct doctor *d, const struct ns_config *c)
{
	if (c->replay_store[0] != '\0')
		check_replay_store(d, c->replay_store);
	if (c->replay_file[0] != '\0')
		check_replay_file(d, c->replay_file);
}

static void report_allow_problem(void *ctx, enum ns_cache_level level, const char *file, unsigned line,
                                 const char *reason)
{
	struct doctor *d = ctx;

	if (line == 0)
		finding(d, LEVEL_ERROR, "allowlist: %s: %s", file, reason);
	else
		finding(d, LEVEL_ERROR, "allowlist: %s:%u: %s", file, line, reason);
}

/* Whoever can write the allowlist decides which clients get in. */
static void check_allow_mode(struct doctor *d, const char *path)
{
	struct stat st;

	if (stat(path, &st) == 0 && (st.st_mode & (S_IWGRP | S_IWOTH)))
		finding(d, LEVEL_ERROR, "allowlist: %s: mode %04o lets others choose which clients "
		        "get in; fix it with: chmod go-w %s", path, (unsigned)(st.st_mode & 07777),
		        path);
}

static void check_allowlist(struct doctor *d, const char *path)
{
	unsigned errors_before = d->errors;
	struct ns_allowlist *a;
	size_t keys;

	if (path == NULL) {
		finding(d, LEVEL_OK, "allowlist: none (--allow or NOISESHIM_ALLOW): a server lets in "
		        "every client that knows its key");
		return;
	}
	a = ns_allowlist_load(path, report_allow_problem, d);
	if (a == NULL)
		return;
	keys = ns_allowlist_count(a);
	ns_allowlist_free(a);
	check_allow_mode(d, path);
	if (d->errors > errors_before)
		return;
	if (keys == 0)
		finding(d, LEVEL_WARN, "allowlist: %s lists no key: the server lets no client in",
		        path);
	else
		finding(d, LEVEL_OK, "allowlist: %s: %zu client %s", path, keys,
		        keys == 1 ? "key" : "keys");
}

static void report_cache_problem(void *ctx, enum ns_cache_level level, const char *file,
                                 unsigned line, const char *reason)
{
	struct doctor *d = ctx;

	if (level != NS_CACHE_ERROR)
		return;
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

	*a = (struct doctor_args){ .allow_path = getenv("NOISESHIM_ALLOW") };
	if (a->allow_path != NULL && a->allow_path[0] == '\0')
		a->allow_path = NULL;
	while ((c = getopt_long(argc, argv, ":k:c:a:h", OPTIONS, NULL)) != -1) {
		switch (c) {
		case 'k':
			a->key_list = optarg;
			break;
		case 'c':
			a->cache_path = optarg;
			break;
		case 'a':
			a->allow_path = optarg;
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

/* noiseshim doctor [options] [PROGRAM]: report what is wrong with a setup. */
int cmd_doctor(int argc, char **argv)
{
	struct doctor_args args;
	struct doctor d = { 0 };
	struct ns_config config;
	const char *key_list;
	int done;

	if (parse_args(argc, argv, &args, &done) < 0)
		return done;
	check_config(&d, &config);
	check_listen(&d, config.listen);
	check_replay(&d, &config);
	check_tfo(&d);
	/* --key, else NOISESHIM_KEY from the environment or the config file. */
	key_list = args.key_list != NULL ? args.key_list : config.key[0] != '\0' ? config.key : NULL;
	if (key_list != NULL)
		check_keys(&d, key_list);
	else
		check_no_key(&d, &config);
	check_allowlist(&d, args.allow_path);
	/* --cache, else NOISESHIM_CACHE from the environment or the config file. */
	check_cache(&d, args.cache_path != NULL ? args.cache_path
	                                        : config.cache[0] != '\0' ? config.cache : NULL);
	check_shim(&d, CLIENT_SHIM_NAME, "run");
	check_shim(&d, SERVER_SHIM_NAME, "serve");
	if (args.program != NULL) {
		check_program(&d, args.program);
		fflush(stdout);
		/* doctor cannot tell a client from a server: both commands. */
		proxy_hint_client(args.program, args.cache_path != NULL ? args.cache_path
		                                : config.cache[0] != '\0' ? config.cache : NULL);
		proxy_hint_server(args.program, key_list, config.listen[0] != '\0' ? config.listen : NULL,
		                  NULL);
	}
	return d.errors > 0 ? 1 : 0;
}
