/*
 * The noiseshim command: shared pieces of the subcommands.
 *
 * Exit codes: 0 success, 1 the work failed, 2 the command line was wrong.
 */
#ifndef NOISESHIM_CLI_H
#define NOISESHIM_CLI_H

enum {
	EXIT_USAGE = 2,
};

/* One subcommand: argv[0] is its name. */
typedef int cli_command_fn(int argc, char **argv);

/* noiseshim keygen [FILE]: write a new key file, print its public key. */
cli_command_fn cmd_keygen;

/* noiseshim pubkey FILE: print the public key of a key file. */
cli_command_fn cmd_pubkey;

/* noiseshim nodeurl --key FILE --addr HOST:PORT: print the server's NodeURL. */
cli_command_fn cmd_nodeurl;

/* noiseshim cache add|remove|list|check: edit or check a NodeURL cache. */
cli_command_fn cmd_cache;

/* noiseshim run [options] PROGRAM [ARGS]: run PROGRAM under the client shim. */
cli_command_fn cmd_run;

/*
 * noiseshim serve --key FILE --listen PORTS [options] PROGRAM [ARGS]: run
 * PROGRAM under the accept shim.
 */
cli_command_fn cmd_serve;

/* noiseshim doctor [options] [PROGRAM]: report what is wrong with a setup. */
cli_command_fn cmd_doctor;

/* noiseshim stats [--json|--prometheus] PID: print a process's counters. */
cli_command_fn cmd_stats;

/* noiseshim proxy client|server [options]: the shims' wire for programs LD_PRELOAD cannot reach. */
cli_command_fn cmd_proxy;

/* Print "noiseshim: <message>" and a newline to stderr. */
void cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Report a getopt failure (c is '?' or ':') for command cmd; returns EXIT_USAGE. */
int cli_option_error(const char *cmd, const char *usage, int c, char **argv);

/*
 * Report a command-line mistake for cmd in one line, and point to
 * 'noiseshim CMD --help' (usage is what that prints); returns EXIT_USAGE.
 */
int cli_usage_error(const char *cmd, const char *usage, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Print usage to stdout for --help; returns 0. */
int cli_help(const char *usage);

#endif
