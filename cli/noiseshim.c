/*
 * noiseshim: keys, NodeURLs, the client's NodeURL cache, and programs
 * launched under the shims.
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "version.h"

static const char USAGE[] =
	"usage: noiseshim COMMAND [ARGS]\n"
	"       noiseshim --version\n"
	"\n"
	"commands:\n"
	"  keygen [FILE]        create a private key file (default ./noiseshim.key)\n"
	"                       and print its public key\n"
	"  pubkey FILE          print the public key of a private key file\n"
	"  nodeurl --key FILE --addr HOST:PORT [--proto 1|2] [--tfo]\n"
	"                       print the NodeURL a client puts in its cache\n"
	"  cache add|remove|list|check [--cache FILE]\n"
	"                       edit or check a client's NodeURL cache\n"
	"  run [--cache FILE] [--transport noise|tcp|off] [--shim PATH] [--force]\n"
	"      [--] PROGRAM [ARGS...]\n"
	"                       run a client program under the client shim\n"
	"  serve --key FILE[,FILE...] --listen PORTS [--accept noise|mixed] [--addr HOST]\n"
	"        [--proto 1|2] [--tfo] [--shim PATH] [--force] [--] PROGRAM [ARGS...]\n"
	"                       run a server program under the accept shim and print\n"
	"                       the NodeURLs its clients need\n"
	"  stats [--json|--prometheus] PID\n"
	"                       print the counters of a process under a shim\n"
	"  doctor [--key FILE[,FILE...]] [--cache FILE] [--allow FILE] [PROGRAM]\n"
	"                       say what is wrong with a setup\n"
	"  proxy client|server --listen ADDR:PORT --target HOST:PORT [...]\n"
	"                       the same wire for programs LD_PRELOAD cannot reach\n"
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
	{ "run", cmd_run },
	{ "serve", cmd_serve },
	{ "doctor", cmd_doctor },
	{ "stats", cmd_stats },
	{ "proxy", cmd_proxy },
};

int main(int argc, char **argv)
{
	const char *name;

	if (argc < 2) {
		cli_error("no command given\ntry 'noiseshim --help'");
		return EXIT_USAGE;
	}
	name = argv[1];
	if (strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0)
		return cli_help(USAGE);
	if (strcmp(name, "--version") == 0 || strcmp(name, "-V") == 0) {
		printf("noiseshim %s\n", NS_VERSION);
		return 0;
	}
	for (size_t i = 0; i < sizeof COMMANDS / sizeof COMMANDS[0]; i++)
		if (strcmp(name, COMMANDS[i].name) == 0)
			return COMMANDS[i].run(argc - 1, argv + 1);
	cli_error(name[0] == '-' ? "unknown option '%s'\ntry 'noiseshim --help'"
	                         : "unknown command '%s'\ntry 'noiseshim --help'", name);
	return EXIT_USAGE;
}
