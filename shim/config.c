/*
 * Configuration from NOISESHIM_* variables and an optional file.
 */
#include "config.h"

#include <ctype.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "exec.h"
#include "prefix.h"
#include "stats.h"

extern char **environ;

#define NAME_PREFIX "NOISESHIM_"

enum {
	/* Longer than any name of ours, so a longer one is unknown whatever its tail. */
	NAME_TEXT_MAX = 64,
	/* A name this few edits from one of ours is taken for a typo of it. */
	TYPO_MAX_EDITS = 2,
};

typedef int parse_fn(struct ns_config *c, const char *value);

/* Match value against names (NULL-terminated); the index, or -1. */
static int
choice(const char *value, const char *const *names)
{
	for (int i = 0; names[i] != NULL; i++)
		if (strcasecmp(value, names[i]) == 0)
			return i;
	return -1;
}

static int
parse_transport(struct ns_config *c, const char *v)
{
	static const char *const names[] = {"noise", "tcp", "off", NULL};
	int i = choice(v, names);

	if (i < 0)
		return -1;
	c->transport = (enum ns_transport)i;
	return 0;
}

static int
parse_tfo(struct ns_config *c, const char *v)
{
	static const char *const names[] = {"auto", "on", "off", NULL};
	int i = choice(v, names);

	if (i < 0)
		return -1;
	c->tfo = (enum ns_tfo_mode)i;
	return 0;
}

static int
parse_zero_rtt(struct ns_config *c, const char *v)
{
	static const char *const names[] = {"off", "on", NULL};
	int i = choice(v, names);

	/* Unknown means off: a request unsafe to replay must never ride in msg1 by mistake. */
	c->zero_rtt = i == 1;
	return i < 0 ? -1 : 0;
}

static int
parse_accept(struct ns_config *c, const char *v)
{
	static const char *const names[] = {"noise", "mixed", NULL};
	int i = choice(v, names);

	if (i < 0)
		return -1;
	c->accept = (enum ns_accept_mode)i;
	return 0;
}

static int
parse_log(struct ns_config *c, const char *v)
{
	static const char *const names[] = {"error", "warn", "info", "debug", NULL};
	int i = choice(v, names);

	if (i < 0)
		return -1;
	c->log_level = (enum ns_log_level)i;
	return 0;
}

static int
copy_text(char *dst, size_t cap, const char *v)
{
	if (strlen(v) >= cap)
		return -1;
	strcpy(dst, v);
	return 0;
}

static int
parse_cache(struct ns_config *c, const char *v)
{
	return copy_text(c->cache, sizeof(c->cache), v);
}

static int
parse_key(struct ns_config *c, const char *v)
{
	return copy_text(c->key, sizeof(c->key), v);
}

static int
parse_allow(struct ns_config *c, const char *v)
{
	return copy_text(c->allow, sizeof(c->allow), v);
}

static int
parse_listen(struct ns_config *c, const char *v)
{
	/* Remembered: a list the accept shim cannot hold must refuse to serve, not wrap nothing. */
	c->listen_too_long = copy_text(c->listen, sizeof(c->listen), v) != 0;
	return c->listen_too_long ? -1 : 0;
}

static int
parse_log_file(struct ns_config *c, const char *v)
{
	return copy_text(c->log_file, sizeof(c->log_file), v);
}

static int
parse_prefix(struct ns_config *c, const char *v)
{
	return ns_prefix_parse(v, c->prefix);
}

/* A decimal number in [min, max]. */
static int
parse_number(const char *v, unsigned min, unsigned max, unsigned *out)
{
	char *end;
	unsigned long n = strtoul(v, &end, 10);

	if (*v == '\0' || *end != '\0' || n < min || n > max)
		return -1;
	*out = (unsigned)n;
	return 0;
}

static int
parse_handshake_timeout(struct ns_config *c, const char *v)
{
	return parse_number(v, 1, 3600 * 1000, &c->handshake_timeout_ms);
}

static int
parse_first_flight(struct ns_config *c, const char *v)
{
	return parse_number(v, 0, 1000 * 1000, &c->first_flight_us);
}

static int
parse_replay_window(struct ns_config *c, const char *v)
{
	return parse_number(v, 1, 24 * 3600, &c->replay_window_s);
}

static int
parse_replay_capacity(struct ns_config *c, const char *v)
{
	return parse_number(v, 1, 1u << 30, &c->replay_capacity);
}

static int
parse_replay_file(struct ns_config *c, const char *v)
{
	return copy_text(c->replay_file, sizeof(c->replay_file), v);
}

/* Checked when a listener is set up, so that a bad URL refuses to serve rather than being ignored. */
static int
parse_replay_store(struct ns_config *c, const char *v)
{
	return copy_text(c->replay_store, sizeof(c->replay_store), v);
}

static int
parse_rate_limit(struct ns_config *c, const char *v)
{
	return parse_number(v, 0, 1000000, &c->rate_limit);
}

static int
parse_rate_burst(struct ns_config *c, const char *v)
{
	return parse_number(v, 1, 1000000, &c->rate_burst);
}

static const struct variable {
	const char *name;
	parse_fn *parse;
	const char *expect;
} variables[] = {
	{"NOISESHIM_TRANSPORT", parse_transport, "noise, tcp or off"},
	{"NOISESHIM_CACHE", parse_cache, "a path"},
	{"NOISESHIM_TFO", parse_tfo, "auto, on or off"},
	{"NOISESHIM_0RTT", parse_zero_rtt, "on or off (using off)"},
	{"NOISESHIM_KEY", parse_key, "a path, or comma-separated paths (server)"},
	{"NOISESHIM_ALLOW", parse_allow, "a path"},
	{"NOISESHIM_LISTEN", parse_listen, "ports or addr:port, comma-separated"},
	{"NOISESHIM_ACCEPT", parse_accept, "noise or mixed"},
	{"NOISESHIM_LOG", parse_log, "error, warn, info or debug"},
	{"NOISESHIM_LOG_FILE", parse_log_file, "a path"},
	{"NOISESHIM_PREFIX", parse_prefix, "exactly 8 bytes"},
	{"NOISESHIM_HANDSHAKE_TIMEOUT_MS", parse_handshake_timeout, "1..3600000"},
	{"NOISESHIM_FIRST_FLIGHT_US", parse_first_flight, "microseconds, 0..1000000"},
	{"NOISESHIM_REPLAY_WINDOW", parse_replay_window, "seconds, 1..86400"},
	{"NOISESHIM_REPLAY_CAPACITY", parse_replay_capacity, "entries, 1..1073741824"},
	{"NOISESHIM_REPLAY_FILE", parse_replay_file, "a path"},
	{"NOISESHIM_REPLAY_STORE", parse_replay_store, "redis://HOST:PORT"},
	{"NOISESHIM_RATE_LIMIT", parse_rate_limit, "handshakes/s per address, 0..1000000 (0: off)"},
	{"NOISESHIM_RATE_BURST", parse_rate_burst, "handshakes, 1..1000000"},
};

/*
 * Names of ours that are not settings: read elsewhere, or handed to a new
 * image by the exec wrapper.  An environment holding them is no typo.
 */
static const char *const other_names[] = {
	"NOISESHIM_CONFIG",
	NS_STATS_DIR_VAR,
	NS_INHERIT_VAR,
	"NOISESHIM_SHIM",          /* examples/ab.sh: the client shim it compares */
	"NOISESHIM_VECTORS_DIR",   /* unit tests: the Storj wire transcripts */
	"NOISESHIM_FLYNN_VECTORS", /* unit tests: the Noise test vectors */
};

enum {
	NVARIABLES = sizeof(variables) / sizeof(variables[0]),
	NOTHER_NAMES = sizeof(other_names) / sizeof(other_names[0]),
};

static const struct variable *
find_variable(const char *name)
{
	for (size_t i = 0; i < NVARIABLES; i++)
		if (strcmp(variables[i].name, name) == 0)
			return &variables[i];
	return NULL;
}

/* Name i of all our names: the settings first, then the others. */
static const char *
known_name(size_t i)
{
	return i < NVARIABLES ? variables[i].name : other_names[i - NVARIABLES];
}

static int
is_known_name(const char *name)
{
	for (size_t i = 0; i < NVARIABLES + NOTHER_NAMES; i++)
		if (strcmp(known_name(i), name) == 0)
			return 1;
	return 0;
}

/* Edits (insert, delete, replace; case ignored) from a to b; UINT_MAX past NAME_TEXT_MAX. */
static unsigned
edit_distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	unsigned row[NAME_TEXT_MAX + 1];

	if (la > NAME_TEXT_MAX || lb > NAME_TEXT_MAX)
		return UINT_MAX;
	for (size_t j = 0; j <= lb; j++)
		row[j] = (unsigned)j;
	for (size_t i = 1; i <= la; i++) {
		unsigned diagonal = row[0];

		row[0] = (unsigned)i;
		for (size_t j = 1; j <= lb; j++) {
			unsigned above = row[j];
			unsigned best = diagonal + (tolower((unsigned char)a[i - 1]) !=
			                            tolower((unsigned char)b[j - 1]));

			if (above + 1 < best)
				best = above + 1;
			if (row[j - 1] + 1 < best)
				best = row[j - 1] + 1;
			row[j] = best;
			diagonal = above;
		}
	}
	return row[lb];
}

/* The one name of ours that name is a likely typo of; NULL when none or several are. */
static const char *
closest_name(const char *name)
{
	unsigned best = TYPO_MAX_EDITS + 1;
	const char *closest = NULL;

	for (size_t i = 0; i < NVARIABLES + NOTHER_NAMES; i++) {
		unsigned d;

		if (strcmp(known_name(i), name) == 0)
			continue;
		d = edit_distance(name, known_name(i));
		if (d < best) {
			best = d;
			closest = known_name(i);
		} else if (d == best) {
			closest = NULL;
		}
	}
	return closest;
}

/* Say that name, set to value, is none of ours, and which name of ours it may mean. */
static void
report_unknown(const char *where, const char *name, const char *value,
               ns_config_report_fn *report)
{
	char problem[2 * NAME_TEXT_MAX + 128];
	const char *guess = closest_name(name);

	snprintf(problem, sizeof(problem), "unknown variable %.*s=\"%.64s\"%s%s%s",
	         NAME_TEXT_MAX, name, value, guess != NULL ? "; did you mean " : "",
	         guess != NULL ? guess : "", guess != NULL ? "?" : "");
	report(where, problem);
}

static void
apply(struct ns_config *c, const struct variable *var, const char *value, const char *where,
      ns_config_report_fn *report)
{
	char problem[NS_CONFIG_TEXT_MAX + 128];

	if (var->parse(c, value) == 0)
		return;
	/* From the environment, where is the name already. */
	if (strcmp(where, var->name) == 0)
		snprintf(problem, sizeof(problem), "bad value \"%.64s\": expected %s", value,
		         var->expect);
	else
		snprintf(problem, sizeof(problem), "bad value \"%.64s\" for %s: expected %s", value,
		         var->name, var->expect);
	report(where, problem);
}

/* Trim spaces and tabs at both ends, in place. */
static char *
trim(char *s)
{
	size_t n;

	while (*s == ' ' || *s == '\t')
		s++;
	n = strlen(s);
	while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r' || s[n - 1] == '\n'))
		s[--n] = '\0';
	return s;
}

static void
load_file(struct ns_config *c, const char *path, ns_config_report_fn *report)
{
	char line[NS_CONFIG_TEXT_MAX + PATH_MAX], where[PATH_MAX + 32];
	unsigned lineno = 0;
	FILE *f;

	if ((f = fopen(path, "re")) == NULL) {
		report(path, "cannot read the config file");
		return;
	}
	while (fgets(line, sizeof(line), f) != NULL) {
		char *text = trim(line), *eq;
		const struct variable *var;

		lineno++;
		snprintf(where, sizeof(where), "%s:%u", path, lineno);
		if (*text == '\0' || *text == '#')
			continue;
		if ((eq = strchr(text, '=')) == NULL) {
			report(where, "expected NAME=VALUE");
			continue;
		}
		*eq = '\0';
		text = trim(text);
		if ((var = find_variable(text)) == NULL) {
			report_unknown(where, text, trim(eq + 1), report);
			continue;
		}
		apply(c, var, trim(eq + 1), where, report);
	}
	fclose(f);
}

/*
 * A NOISESHIM_* variable that no part of noiseshim reads is most likely a
 * typo, which would otherwise leave its setting at the default unnoticed,
 * as the config file's unknown names are not.
 */
static void
check_environment_names(ns_config_report_fn *report)
{
	for (char **entry = environ; entry != NULL && *entry != NULL; entry++) {
		char name[NAME_TEXT_MAX + 2];
		const char *eq;

		if (strncmp(*entry, NAME_PREFIX, strlen(NAME_PREFIX)) != 0 ||
		    (eq = strchr(*entry, '=')) == NULL)
			continue;
		/* A name cut short here is longer than all of ours: unknown all the same. */
		snprintf(name, sizeof(name), "%.*s", (int)(eq - *entry), *entry);
		if (!is_known_name(name))
			report_unknown("environment", name, eq + 1, report);
	}
}

/*
 * Fill c from the defaults, then the config file, then the environment.
 * A bad value is reported and ignored: the setting keeps the value it had
 * (the default, or the config file's), except NOISESHIM_0RTT, which
 * becomes off.  A name that is none of ours, in the file or among the
 * environment's NOISESHIM_* variables, is reported with the name it is
 * likely a typo of.
 */
void
ns_config_load(struct ns_config *c, ns_config_report_fn *report)
{
	const char *file = getenv("NOISESHIM_CONFIG");

	memset(c, 0, sizeof(*c));
	c->transport = NS_TRANSPORT_NOISE;
	c->tfo = NS_TFO_AUTO;
	c->zero_rtt = 1;
	c->accept = NS_ACCEPT_NOISE;
	c->log_level = NS_LOG_ERROR;
	memcpy(c->prefix, NS_ROUTE_PREFIX_DEFAULT, NS_ROUTE_PREFIX_LEN);
	c->handshake_timeout_ms = 10 * 1000;
	/*
	 * A program that writes its request and then waits for the answer
	 * releases msg1 by waiting; the quiet time only matters to one that
	 * waits where the shim cannot see it.  2 ms is far below any round trip
	 * worth a first flight and far above the gap between two writes of one
	 * request.
	 */
	c->first_flight_us = 2000;
	c->replay_window_s = 10 * 60;
	c->replay_capacity = 1u << 20;
	c->rate_limit = 20;
	c->rate_burst = 5;

	if (file != NULL && *file != '\0')
		load_file(c, file, report);
	for (size_t i = 0; i < NVARIABLES; i++) {
		const char *value = getenv(variables[i].name);
		if (value != NULL)
			apply(c, &variables[i], value, variables[i].name, report);
	}
	check_environment_names(report);
}
