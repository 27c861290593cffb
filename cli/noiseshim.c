/*
 * noiseshim: keys, NodeURLs and the client's NodeURL cache.
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"

static const char USAGE[] =
	"usage: noiseshim COMMAND [ARGS]\n"
	"\n"
	"commands:\n"
	"  keygen [FILE]        create a private key file (default ./noiseshim.key)\n"
	"                       and print its public key\n"
	"  pubkey FILE          print the public key of a private key file\n"
	"  nodeurl --key FILE --addr HOST:PORT [--proto 1|2] [--tfo]\n"
	"                       print the NodeURL a client puts in its cache\n"
	"  cache add|remove|list|check [--cache FILE]\n"
	"                       edit or check a client's NodeURL cache\n"
	"\n"
	"'noiseshim COMMAND --help' describes each command.\n";

struct command {
	const char *name;
	cli_command_fn *run;
};

static const struct command COMMANDS[] = {
	{ "keygen", cmd_keygen },
	{ "pubkey", cmd_pubkey },
	{ "nodeurl", cmd_nodeurl },
	{ "cache", cmd_cache },
};

int main(int argc, char **argv)
{
	const char *name;

	if (argc < 2) {
		cli_error("no command given");
		fputs(USAGE, stderr);
		return EXIT_USAGE;
	}
	name = argv[1];
	if (strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0)
		return cli_help(USAGE);
	for (size_t i = 0; i < sizeof COMMANDS / sizeof COMMANDS[0]; i++)
		if (strcmp(name, COMMANDS[i].name) == 0)
			return COMMANDS[i].run(argc - 1, argv + 1);
	cli_error(name[0] == '-' ? "unknown option '%s'" : "unknown command '%s'", name);
	fputs(USAGE, stderr);
	return EXIT_USAGE;
}
