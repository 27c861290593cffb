/*
 * Logging.  The file is opened for each line: a program may close any fd
 * at any time (closefrom), and a log line is rare enough to afford it.
 * NOISESHIM_LOG_FILE=syslog sends the lines to syslog instead.
 */
#include "log.h"

#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

#include "real.h"
#include "sandbox.h"

static enum ns_log_level log_level = NS_LOG_ERROR;
static char log_path[PATH_MAX];
static int log_syslog;             /* NOISESHIM_LOG_FILE=syslog */

/* Take the level and destination from the configuration. */
void
ns_log_configure(const struct ns_config *c)
{
	log_level = c->log_level;
	snprintf(log_path, sizeof(log_path), "%s", c->log_file);
	log_syslog = strcmp(log_path, "syslog") == 0;
}

/* The level becomes the priority; the line keeps its prefix, as the program's ident is not ours. */
static void
log_to_syslog(enum ns_log_level level, const char *message)
{
	static const int priorities[] = {LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG};

	syslog(LOG_DAEMON | priorities[level], "%s", message);
}

/* Whether messages at level are written. */
int
ns_log_enabled(enum ns_log_level level)
{
	/* A sandboxed process may be killed for opening a file or writing to one. */
	return level <= log_level && !ns_sandboxed;
}

/* Write one line: "noiseshim[PID]: LEVEL: message". */
void
ns_log(enum ns_log_level level, const char *fmt, ...)
{
	static const char *const names[] = {"error", "warn", "info", "debug"};
	char line[1024];
	va_list ap;
	int n, fd = STDERR_FILENO;

	if (!ns_log_enabled(level))
		return;
	n = snprintf(line, sizeof(line), "noiseshim[%d]: %s: ", (int)getpid(), names[level]);
	va_start(ap, fmt);
	n += vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
	va_end(ap);
	if (log_syslog) {
		log_to_syslog(level, line);
		return;
	}
	if (n >= (int)sizeof(line) - 1)
		n = (int)sizeof(line) - 2;
	line[n++] = '\n';
	if (log_path[0] != '\0' &&
	    (fd = open(log_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600)) < 0)
		fd = STDERR_FILENO;
	(void)!REAL(write)(fd, line, (size_t)n);
	if (fd != STDERR_FILENO)
		REAL(close)(fd);
}

/* Write a line of a lib/ module (lib/logline.h) as ns_log does, at its level. */
void
ns_log_line(enum ns_line_level level, const char *line)
{
	static const enum ns_log_level levels[] = {
		[NS_LINE_ERROR] = NS_LOG_ERROR,
		[NS_LINE_WARN] = NS_LOG_WARN,
		[NS_LINE_INFO] = NS_LOG_INFO,
	};

	ns_log(levels[level], "%s", line);
}
