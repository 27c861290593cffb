/*
 * Error and usage messages of the noiseshim command.
 */
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>

#include "cli.h"

/* Print "noiseshim: <message>" and a newline to stderr. */
void cli_error(const char *fmt, ...)
{
	va_list ap;

	fputs("noiseshim: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/* Report a getopt failure (c is '?' or ':') for command cmd; returns EXIT_USAGE. */
int cli_option_error(const char *cmd, const char *usage, int c, char **argv)
{
	char shortopt[3] = { '-', (char)optopt, '\0' };

	/* getopt has stepped past the word holding an option that lacks its value. */
	if (c == ':')
		return cli_usage_error(cmd, usage, "option '%s' needs a value", argv[optind - 1]);
	/* An unknown short option may share its word with others; optopt names it exactly. */
	return cli_usage_error(cmd, usage, "unknown option '%s'",
	                       optopt != 0 ? shortopt : argv[optind - 1]);
}

/*
 * Report a command-line mistake for cmd: one line, then where the whole usage
 * is.  usage is what --help prints; a mistake gets only the pointer to it, so
 * that the reason is not lost above a screenful of text.
 */
int cli_usage_error(const char *cmd, const char *usage, const char *fmt, ...)
{
	va_list ap;

	(void)usage;
	fprintf(stderr, "noiseshim: %s: ", cmd);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\ntry 'noiseshim %s --help'\n", cmd);
	return EXIT_USAGE;
}

/* Print usage to stdout for --help; returns 0. */
int cli_help(const char *usage)
{
	fputs(usage, stdout);
	return 0;
}
