/*
 * noiseshim serve: a server program under the accept shim, and the
 * NodeURLs its clients need.
 */
#include <arpa/inet.h>
#include <getopt.h>
#include <limits.h>
#include <netdb.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "keyring.h"
#include "launch.h"
#include "listen.h"
#include "localaddr.h"
#include "nodeurl.h"
#include "proxy_hint.h"
#include "server_identity.h"
#include "shimpath.h"
#include "tfo.h"

static const char USAGE[] =
	"usage: noiseshim serve --key FILE[,FILE...] --listen PORTS [--accept noise|mixed]\n"
	"                       [--addr HOST] [--proto 1|2] [--tfo] [--shim PATH] [--force]\n"
	"                       [--] PROGRAM [ARGS...]\n"
	"\n"
	"Run the server PROGRAM, found through PATH, with the accept shim preloaded:\n"
	"its listening sockets in PORTS answer Noise_IK with the key in FILE.  First,\n"
	"print to stderr the NodeURL of each port, for 'noiseshim cache add' on clients.\n"
	"\n"
	"  --key FILE[,FILE...]\n"
	"                   the server's private key files (sets NOISESHIM_KEY): the\n"
	"                   first is current and goes into the NodeURLs, the others are\n"
	"                   still accepted, for clients that hold an older NodeURL\n"
	"  --listen PORTS   the listening sockets to wrap, separated by commas: PORT\n"
	"                   (any address), ADDR:PORT or [IPV6]:PORT (sets NOISESHIM_LISTEN)\n"
	"  --accept MODE    sets NOISESHIM_ACCEPT: noise takes only Noise (the default),\n"
	"                   mixed takes Noise and plaintext on one port\n"
	"  --addr HOST      where clients connect, for the NodeURLs (default: the\n"
	"                   address in PORTS; for a port on every address, one NodeURL\n"
	"                   for each address of this host, 127.0.0.1 and ::1 first); a\n"
	"                   host name gets one NodeURL for each address it resolves to\n"
	"                   now, as a cache holds addresses, not names\n"
	"  --proto 1|2      the NodeURLs' noise_proto: 1 ChaChaPoly (default), 2 AESGCM\n"
	"  --tfo            the NodeURLs say the server accepts TCP Fast Open (f=1)\n"
	"  --shim PATH      the accept shim (default: " SERVER_SHIM_NAME " beside this\n"
	"                   noiseshim, as in a build directory, else PREFIX/lib/noiseshim/\n"
	"                   for a noiseshim installed as PREFIX/bin/noiseshim)\n"
	"  --force          launch PROGRAM even if LD_PRELOAD cannot reach it\n"
	"\n"
	"PROGRAM is refused, with the reason, when LD_PRELOAD cannot reach it: a static\n"
	"or Go binary, or one that gains privileges (set-user-ID, set-group-ID, file\n"
	"capabilities).  A #! script is judged by its interpreter.\n";

static const struct option OPTIONS[] = {
	{ "key", required_argument, NULL, 'k' },
	{ "listen", required_argument, NULL, 'l' },
	{ "accept", required_argument, NULL, 'A' },
	{ "addr", required_argument, NULL, 'a' },
	{ "proto", required_argument, NULL, 'p' },
	{ "tfo", no_argument, NULL, 't' },
	{ "shim", required_argument, NULL, 's' },
	{ "force", no_argument, NULL, 'f' },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

struct serve_args {
	const char *key_path;
	const char *listen;
	const char *accept;
	const char *addr; /* without brackets */
	char addr_buf[NS_NODEURL_HOST_MAX];
	int addr_is_name;
	struct localaddr_list addr_resolved; /* when addr is a name */
	int proto;
	int tfo;
	const char *shim;
	int force;
	char **program; /* PROGRAM, then its arguments; NULL-terminated */
};

/* HOST:PORT text for ns_nodeurl_parse, with an IPv6 host in brackets. */
static int host_port(const char *host, unsigned port, char *out, size_t cap)
{
	int n = snprintf(out, cap, strchr(host, ':') != NULL ? "[%s]:%u" : "%s:%u", host, port);

	return n >= 0 && (size_t)n < cap ? 0 : -1;
}

/* Parse host as a NodeURL's host with port into u.  NULL, or the reason it is not one. */
static const char *parse_host(const char *host, unsigned port, struct ns_nodeurl *u)
{
	char text[NS_NODEURL_HOST_MAX + sizeof "[]:65535"];
	enum ns_nodeurl_status status;

	if (host_port(host, port, text, sizeof text) < 0)
		return "too long";
	status = ns_nodeurl_parse(text, strlen(text), u);
	return status == NS_NODEURL_OK ? NULL : ns_nodeurl_strerror(status);
}

/* The addresses the name --addr resolves to, into a->addr_resolved.  -1 with *done set. */
static int resolve_addr(const char *cmd, struct serve_args *a, int *done)
{
	int rc = localaddr_resolve(a->addr, &a->addr_resolved);

	if (rc != 0)
		*done = cli_usage_error(cmd, USAGE, "--addr '%s' does not resolve (%s); a NodeURL needs "
		                        "the addresses clients connect to", a->addr, gai_strerror(rc));
	else if (a->addr_resolved.count == 0)
		*done = cli_usage_error(cmd, USAGE, "--addr '%s' resolves to no address a NodeURL can "
		                        "hold", a->addr);
	else
		return 0;
	return -1;
}

/* Check --addr and keep it without brackets.  -1 with *done set. */
static int set_addr(const char *cmd, const char *text, struct serve_args *a, int *done)
{
	size_t len = strlen(text);
	struct in6_addr a6;
	struct ns_nodeurl u;
	const char *problem;

	if (len >= 2 && text[0] == '[' && text[len - 1] == ']') {
		text++;
		len -= 2;
	}
	if (len >= sizeof a->addr_buf) {
		*done = cli_usage_error(cmd, USAGE, "--addr: too long");
		return -1;
	}
	memcpy(a->addr_buf, text, len);
	a->addr_buf[len] = '\0';
	/* Only an IPv6 address has a colon: anything else carries a port. */
	if (strchr(a->addr_buf, ':') != NULL && inet_pton(AF_INET6, a->addr_buf, &a6) != 1) {
		*done = cli_usage_error(cmd, USAGE,
		                        "--addr '%s': expected a host without a port (ports come "
		                        "from --listen)",
		                        a->addr_buf);
		return -1;
	}
	if (strpbrk(a->addr_buf, "@?,") != NULL) {
		*done = cli_usage_error(cmd, USAGE, "--addr '%s': expected a host name or address",
		                        a->addr_buf);
		return -1;
	}
	if ((problem = parse_host(a->addr_buf, 1, &u)) != NULL) {
		*done = cli_usage_error(cmd, USAGE, "--addr '%s': %s", a->addr_buf, problem);
		return -1;
	}
	a->addr = a->addr_buf;
	a->addr_is_name = u.family == NS_ADDR_NAME;
	return a->addr_is_name ? resolve_addr(cmd, a, done) : 0;
}

/* Check every entry of --listen, and that there is one.  -1 with *done set. */
static int check_listen(const char *cmd, const char *list, int *done)
{
	struct listen_entry e;
	char err[256];
	int more, entries = 0;

	while ((more = listen_next(&list, &e, err, sizeof err)) > 0)
		entries++;
	if (more < 0)
		*done = cli_usage_error(cmd, USAGE, "--listen: %s", err);
	else if (entries == 0)
		*done = cli_usage_error(cmd, USAGE, "--listen names no port");
	else
		return 0;
	return -1;
}

/* Parse the command line: 0 to go on, -1 when *done holds the exit code. */
static int parse_args(int argc, char **argv, struct serve_args *a, int *done)
{
	int c;

	*a = (struct serve_args){ .proto = PROTO_CHACHAPOLY };
	/* '+': options end at PROGRAM, so that its own options stay its own. */
	while ((c = getopt_long(argc, argv, "+:k:l:A:a:p:ts:fh", OPTIONS, NULL)) != -1) {
		switch (c) {
		case 'k':
			a->key_path = optarg;
			break;
		case 'l':
			if (check_listen(argv[0], optarg, done) < 0)
				return -1;
			a->listen = optarg;
			break;
		case 'A':
			if (strcmp(optarg, "noise") != 0 && strcmp(optarg, "mixed") != 0) {
				*done = cli_usage_error(argv[0], USAGE,
				                        "--accept must be noise or mixed, not '%s'", optarg);
				return -1;
			}
			a->accept = optarg;
			break;
		case 'a':
			if (set_addr(argv[0], optarg, a, done) < 0)
				return -1;
			break;
		case 'p':
			a->proto = server_identity_parse_proto(optarg);
			if (a->proto == 0) {
				*done = cli_usage_error(argv[0], USAGE,
				                        "--proto must be 1 or 2, not '%s'", optarg);
				return -1;
			}
			break;
		case 't':
			a->tfo = 1;
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
	if (a->key_path == NULL || a->listen == NULL)
		*done = cli_usage_error(argv[0], USAGE, "--key and --listen are required");
	else if (optind == argc)
		*done = cli_usage_error(argv[0], USAGE, "no PROGRAM given");
	else {
		a->program = argv + optind;
		return 0;
	}
	return -1;
}

/* Print the NodeURL of host and port.  -1 with an error printed. */
static int print_nodeurl(const struct serve_args *a, const char *host, unsigned port,
                         const uint8_t pub[NS_KEY_LEN])
{
	char text[NS_NODEURL_STR_MAX];
	const char *problem;
	struct ns_nodeurl u;

	problem = parse_host(host, port, &u);
	if (problem != NULL) {
		cli_error("%s port %u: %s", host, port, problem);
		return -1;
	}
	server_identity_apply(&u, pub, a->proto, a->tfo);
	if (ns_nodeurl_format(&u, text, sizeof text) == 0) {
		cli_error("%s port %u: the NodeURL does not fit %d bytes", host, port,
		          NS_NODEURL_STR_MAX);
		return -1;
	}
	fprintf(stderr, "%s\n", text);
	return 0;
}

/* Whether e takes IPv4 connections: all but an IPv6 address other than :: (dual-stack) do. */
static int listens_v4(const struct listen_entry *e)
{
	return strchr(e->addr, ':') == NULL || listen_is_wildcard(e);
}

/* Whether e takes IPv6 connections: a bare port, ::, or an IPv6 address; 0.0.0.0 does not. */
static int listens_v6(const struct listen_entry *e)
{
	return e->addr[0] == '\0' || strchr(e->addr, ':') != NULL;
}

/* The addresses of from that e can be reached at, by family. */
static void reachable_of(const struct listen_entry *e, const struct localaddr_list *from,
                         struct localaddr_list *to)
{
	to->count = 0;
	for (size_t i = 0; i < from->count; i++)
		if (strchr(from->addr[i], ':') != NULL ? listens_v6(e) : listens_v4(e))
			strcpy(to->addr[to->count++], from->addr[i]);
}

/*
 * Where clients reach e: what the name --addr resolves to in the families
 * e listens on, else --addr, else e's own address, else (a wildcard) every
 * address of this host of the families e listens on.
 */
static void client_hosts(const struct serve_args *a, const struct listen_entry *e,
                         struct localaddr_list *hosts)
{
	const char *only;

	if (a->addr_is_name) {
		reachable_of(e, &a->addr_resolved, hosts);
		return;
	}
	only = a->addr != NULL ? a->addr : !listen_is_wildcard(e) ? e->addr : NULL;
	if (only != NULL) {
		hosts->count = 1;
		snprintf(hosts->addr[0], sizeof hosts->addr[0], "%s", only);
		return;
	}
	localaddr_list(listens_v4(e), listens_v6(e), hosts);
}

/* Print the NodeURLs of each --listen entry to stderr.  -1 with an error printed. */
static int print_nodeurls(const struct serve_args *a, const uint8_t pub[NS_KEY_LEN])
{
	const char *list = a->listen;
	struct localaddr_list hosts;
	struct listen_entry e;
	char err[256];

	fprintf(stderr, "noiseshim: clients add these NodeURLs with 'noiseshim cache add URL':\n");
	while (listen_next(&list, &e, err, sizeof err) > 0) {
		client_hosts(a, &e, &hosts);
		if (hosts.count == 0) {
			cli_error("--addr '%s' resolves to no address of the family --listen %s takes",
			          a->addr, e.addr);
			return -1;
		}
		for (size_t i = 0; i < hosts.count; i++)
			if (print_nodeurl(a, hosts.addr[i], e.port, pub) < 0)
				return -1;
	}
	return 0;
}

/* The public half of the current (first) key of the list.  -1 with an error printed. */
static int current_public_key(const char *list, uint8_t pub[NS_KEY_LEN])
{
	char err[NS_KEYRING_ERR_MAX];
	struct ns_keyring *ring = ns_keyring_load(list, err, sizeof err);

	if (ring == NULL) {
		cli_error("%s", err);
		return -1;
	}
	memcpy(pub, ns_keyring_key(ring, 0)->pub, NS_KEY_LEN);
	ns_keyring_free(ring);
	return 0;
}

/* f=1 promises SYN data will be taken: say when this host's kernel will not. */
static void warn_tfo_server_off(void)
{
	unsigned value;

	if (tfo_sysctl_read(&value) == 0 && !(value & TFO_SERVER))
		cli_error("warning: --tfo, but net.ipv4.tcp_fastopen = %u lacks bit %d, so listeners "
		          "here ignore data in the SYN; enable it with: sysctl -w "
		          "net.ipv4.tcp_fastopen=%u",
		          value, TFO_SERVER, value | TFO_CLIENT | TFO_SERVER);
}

/*
 * noiseshim serve --key FILE --listen PORTS [options] PROGRAM [ARGS]: run
 * PROGRAM under the accept shim.
 */
int cmd_serve(int argc, char **argv)
{
	struct serve_args args;
	uint8_t pub[NS_KEY_LEN];
	char shim[PATH_MAX];
	int done;

	if (parse_args(argc, argv, &args, &done) < 0)
		return done;
	/* Every key in the list is loaded, so that a bad one is refused before the program runs. */
	if (current_public_key(args.key_path, pub) < 0)
		return 1;
	if (launch_find_shim(args.shim, SERVER_SHIM_NAME, shim, sizeof shim) < 0)
		return 1;
	if (launch_check_reach(args.program[0], args.force) < 0) {
		proxy_hint_server(args.program[0], args.key_path, args.listen, args.accept);
		return 1;
	}
	if (print_nodeurls(&args, pub) < 0)
		return 1;
	if (args.tfo)
		warn_tfo_server_off();
	if (launch_set_path_list("NOISESHIM_KEY", args.key_path) < 0 ||
	    launch_set("NOISESHIM_LISTEN", args.listen) < 0 ||
	    (args.accept != NULL && launch_set("NOISESHIM_ACCEPT", args.accept) < 0) ||
	    launch_preload(shim) < 0)
		return 1;
	return launch_exec(args.program);
}
