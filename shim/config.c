/*
 * Configuration from NOISESHIM_* variables and an optional file.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "prefix.h"

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

static const struct variable *
find_variable(const char *name)
{
	for (size_t i = 0; i < sizeof(variables) / sizeof(variables[0]); i++)
		if (strcmp(variables[i].name, name) == 0)
			return &variables[i];
	return NULL;
}

static void
apply(struct ns_config *c, const struct variable *var, const char *value, const char *where,
      ns_config_report_fn *report)
{
	char problem[NS_CONFIG_TEXT_MAX + 128];

	if (var->parse(c, value) == 0)
		return;
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
		if ((var = find_variable(trim(text))) == NULL) {
			report(where, "unknown variable");
			continue;
		}
		apply(c, var, trim(eq + 1), where, report);
	}
	fclose(f);
}

/*
 * Fill c from the defaults, then the config file, then the environment.
 * A bad value is reported and ignored: the setting keeps the value it had
 * (the default, or the config file's), except NOISESHIM_0RTT, which
 * becomes off.
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
	for (size_t i = 0; i < sizeof(variables) / sizeof(variables[0]); i++) {
		const char *value = getenv(variables[i].name);
		if (value != NULL)
			apply(c, &variables[i], value, variables[i].name, report);
	}
}
