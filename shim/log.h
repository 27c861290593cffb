/*
 * One-line log messages to stderr or NOISESHIM_LOG_FILE, filtered by level.
 */
#ifndef NOISESHIM_LOG_H
#define NOISESHIM_LOG_H

#include "config.h"
#include "logline.h"

/* Take the level and destination from the configuration. */
void ns_log_configure(const struct ns_config *c);

/* Whether messages at level are written. */
int ns_log_enabled(enum ns_log_level level);

/* Write one line: "noiseshim[PID]: LEVEL: message". */
void ns_log(enum ns_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Write a line of a lib/ module (lib/logline.h) as ns_log does, at its level. */
void ns_log_line(enum ns_line_level level, const char *line);

#endif
