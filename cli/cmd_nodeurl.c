/*
 * noiseshim nodeurl: the NodeURL of a server, for clients' caches.
 */
#include <getopt.h>
#include <netdb.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "localaddr.h"
#include "nodeurl.h"
#include "server_identity.h"

static const char USAGE[] =
	"usage: noiseshim nodeurl --key FILE --addr HOST:PORT [--proto 1|2] [--tfo]\n"
	"\n"
	"Print the NodeURL of a server whose private key is FILE and which clients\n"
	"reach at HOST:PORT (an IPv6 address in brackets: [::1]:7777).  Add the\n"
	"output to a client's cache with 'noiseshim cache add'.  HOST must be a\n"
	"numeric address: the cache is matched against the addresses programs\n"
	"connect() to, so a host name is refused with the addresses it resolves to.\n"
	"\n"
	"  --key FILE         the server's private key file\n"
	"  --addr HOST:PORT   where clients connect\n"
	"  --proto 1|2        1: ChaChaPoly (default), 2: AESGCM\n"
	"  --tfo              the server accepts TCP Fast Open (sets f=1)\n";

static const struct option OPTIONS[] = {
	{ "key", required_argument, NULL, 'k' },
	{ "addr", required_argument, NULL, 'a' },
	{ "proto", required_argument, NULL, 'p' },
	{ "tfo", no_argument, NULL, 't' },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

struct nodeurl_args {
	const char *key_path;
	const char *addr;
	int proto;
	int tfo;
};

/* Parse the command line: 0 to go on, -1 when *done holds the exit code. */
static int parse_args(int argc, char **argv, struct nodeurl_args *a, int *done)
{
	int c;

	*a = (struct nodeurl_args){ .proto = PROTO_CHACHAPOLY };
	while ((c = getopt_long(argc, argv, ":k:a:p:th", OPTIONS, NULL)) != -1) {
		switch (c) {
		case 'k':
			a->key_path = optarg;
			break;
		case 'a':
			a->addr = optarg;
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
		case 'h':
			*done = cli_help(USAGE);
			return -1;
		default:
			*done = cli_option_error(argv[0], USAGE, c, argv);
			return -1;
		}
	}
	if (optind < argc)
		*done = cli_usage_error(argv[0], USAGE, "unexpected argument '%s'", argv[optind]);
	else if (a->key_path == NULL || a->addr == NULL)
		*done = cli_usage_error(argv[0], USAGE, "--key and --addr are required");
	else
		return 0;
	return -1;
}

/*
 * A cache entry needs the address a program connects to, which a name does
 * not fix (curl tries ::1 before 127.0.0.1 for localhost): refuse it, and
 * list what it resolves to so that the user can pick.
 */
static void refuse_host_name(const char *cmd, const char *addr, const struct ns_nodeurl *u)
{
	struct localaddr_list resolved;
	char found[512] = "none a NodeURL can hold";
	size_t used = 0;
	int rc = localaddr_resolve(u->host, &resolved);

	if (rc != 0) {
		cli_usage_error(cmd, USAGE, "--addr '%s': the cache needs a numeric IP address, and %s "
		                "does not resolve (%s)", addr, u->host, gai_strerror(rc));
		return;
	}
	for (size_t i = 0; i < resolved.count && used < sizeof found; i++)
		used += (size_t)snprintf(found + used, sizeof found - used, "%s%s",
		                         used == 0 ? "" : ", ", resolved.addr[i]);
	cli_usage_error(cmd, USAGE, "--addr '%s': the cache needs a numeric IP address; %s is %s: "
	                "give one (and one NodeURL for each address clients connect to)", addr,
	                u->host, found);
}

/*
 * Fill u's host and port from HOST:PORT text.  -1 with the mistake printed
 * as one of cmd's command line.
 */
static int parse_addr(const char *cmd, const char *addr, struct ns_nodeurl *u)
{
	enum ns_nodeurl_status status;

	if (strpbrk(addr, "@?,") != NULL) {
		cli_usage_error(cmd, USAGE, "--addr '%s': expected HOST:PORT, without node id or "
		                "parameters", addr);
		return -1;
	}
	status = ns_nodeurl_parse(addr, strlen(addr), u);
	if (status != NS_NODEURL_OK) {
		cli_usage_error(cmd, USAGE, "--addr '%s': %s", addr, ns_nodeurl_strerror(status));
		return -1;
	}
	if (u->port == 0) {
		cli_usage_error(cmd, USAGE, "--addr '%s': no port; expected HOST:PORT", addr);
		return -1;
	}
	if (u->family == NS_ADDR_NAME) {
		refuse_host_name(cmd, addr, u);
		return -1;
	}
	return 0;
}

/* noiseshim nodeurl --key FILE --addr HOST:PORT: print the server's NodeURL. */
int cmd_nodeurl(int argc, char **argv)
{
	struct nodeurl_args args;
	struct ns_nodeurl u;
	uint8_t pub[NS_KEY_LEN];
	char text[NS_NODEURL_STR_MAX], err[512];
	int done;

	if (parse_args(argc, argv, &args, &done) < 0)
		return done;
	if (parse_addr(argv[0], args.addr, &u) < 0)
		return EXIT_USAGE;
	if (server_identity_load(args.key_path, pub, err, sizeof err) < 0) {
		cli_error("%s", err);
		return 1;
	}
	server_identity_apply(&u, pub, args.proto, args.tfo);
	if (ns_nodeurl_format(&u, text, sizeof text) == 0) {
		cli_error("--addr '%s': the NodeURL does not fit %d bytes", args.addr,
		          NS_NODEURL_STR_MAX);
		return 1;
	}
	printf("%s\n", text);
	return 0;
}
