/*
 * A responder's key ring and client allowlist: loaded together, reloaded
 * together when a file changed, each problem logged once.
 */
#include "server_keys.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "nodeurl.h"

/* Where an allowlist problem goes: the first one is kept, with the setting's name. */
struct allow_report {
	const char *setting;
	char problem[NS_SERVER_KEYS_ERR_MAX];
};

static void keep_allow_problem(void *ctx, enum ns_cache_level level, const char *file,
                               unsigned line, const char *reason)
{
	struct allow_report *r = ctx;

	if (r->problem[0] != '\0')
		return;
	if (line == 0)
		snprintf(r->problem, sizeof r->problem, "%s: %.300s: %s", r->setting, file, reason);
	else
		snprintf(r->problem, sizeof r->problem, "%s: %.300s:%u: %s", r->setting, file, line,
		         reason);
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static int allow_configured(const struct ns_server_keys *k)
{
	return k->cfg.allow != NULL && k->cfg.allow[0] != '\0';
}

int ns_server_keys_load(struct ns_server_keys *k, const struct ns_server_keys_config *cfg,
                        char *err, size_t errlen)
{
	struct allow_report report = {.setting = cfg->allow_setting};

	*k = (struct ns_server_keys){.cfg = *cfg};
	if ((k->ring = ns_keyring_load(cfg->keys, err, errlen)) == NULL)
		return -1;
	__atomic_store_n(&k->checked_ms, now_ms(), __ATOMIC_RELAXED);
	if (!allow_configured(k))
		return 0;
	k->allow = ns_allowlist_load(cfg->allow, keep_allow_problem, &report);
	if (k->allow != NULL && report.problem[0] == '\0')
		return 0;
	ns_allowlist_free(k->allow);
	k->allow = NULL;
	if (report.problem[0] != '\0')
		snprintf(err, errlen, "%s", report.problem);
	else
		snprintf(err, errlen, "%s: out of memory", cfg->allow_setting);
	return -2;
}

int ns_server_keys_due(struct ns_server_keys *k)
{
	uint64_t now = now_ms(), last = __atomic_load_n(&k->checked_ms, __ATOMIC_RELAXED);

	if (k->ring == NULL || now - last < NS_SERVER_KEYS_CHECK_MS)
		return 0;
	/* One thread looks; the others go on with the keys they have. */
	return __atomic_compare_exchange_n(&k->checked_ms, &last, now, 0, __ATOMIC_RELAXED,
	                                   __ATOMIC_RELAXED);
}

/* Log a reload problem unless it is the one logged last time; NULL: the source loads again. */
static void note_problem(char last[NS_SERVER_KEYS_ERR_MAX], const char *problem,
                         const char *outcome, ns_line_fn *log)
{
	enum { OUTCOME_MAX = 64 };
	char line[2 * NS_SERVER_KEYS_ERR_MAX + OUTCOME_MAX];
	size_t kept;

	if (problem == NULL) {
		last[0] = '\0';
		return;
	}
	/* last holds as much of a problem as it has room for. */
	kept = strnlen(problem, NS_SERVER_KEYS_ERR_MAX - 1);
	if (strncmp(last, problem, kept) == 0 && last[kept] == '\0')
		return;
	memcpy(last, problem, kept);
	last[kept] = '\0';
	snprintf(line, sizeof line, "%s; %s", problem, outcome);
	log(NS_LINE_ERROR, line);
}

/* Swap in a new ring if a key file changed.  1 when one was swapped in. */
static int refresh_ring(struct ns_server_keys *k, ns_line_fn *log)
{
	char err[NS_SERVER_KEYS_ERR_MAX], line[2 * NS_SERVER_KEYS_ERR_MAX];
	int r = ns_keyring_refresh(&k->ring, err, sizeof err);

	if (r < 0) {
		snprintf(line, sizeof line, "%s: reload failed: %s", k->cfg.key_setting, err);
		note_problem(k->ring_problem, line, "still using what was loaded before", log);
		return 0;
	}
	if (r == 0)
		return 0;
	note_problem(k->ring_problem, NULL, NULL, log);
	snprintf(line, sizeof line, "%s: reloaded, %zu keys", k->cfg.key_setting,
	         ns_keyring_count(k->ring));
	log(NS_LINE_INFO, line);
	return 1;
}

/* Swap in a new allowlist if its file changed; a bad line only keeps its client out. */
static void refresh_allow(struct ns_server_keys *k, ns_line_fn *log)
{
	struct allow_report report = {.setting = k->cfg.allow_setting};
	char line[NS_SERVER_KEYS_ERR_MAX + 64];
	int r = ns_allowlist_refresh(&k->allow, keep_allow_problem, &report);

	if (r == 0)
		return;
	if (r < 0) {
		note_problem(k->allow_problem, report.problem, "still using what was loaded before", log);
		return;
	}
	note_problem(k->allow_problem, report.problem[0] != '\0' ? report.problem : NULL,
	             "the other lines are in use", log);
	snprintf(line, sizeof line, "%s: reloaded, %zu keys", k->cfg.allow_setting,
	         ns_allowlist_count(k->allow));
	log(NS_LINE_INFO, line);
}

int ns_server_keys_refresh(struct ns_server_keys *k, ns_line_fn *log)
{
	int swapped = refresh_ring(k, log);

	/* An allowlist that never loaded is not looked for again: every client stays out. */
	if (k->allow != NULL)
		refresh_allow(k, log);
	return swapped;
}

int ns_server_keys_allowed(const struct ns_server_keys *k, const uint8_t pub[NS_KEY_LEN])
{
	if (k->ring == NULL)
		return 0;
	if (!allow_configured(k))
		return 1;
	return k->allow != NULL && ns_allowlist_contains(k->allow, pub);
}

void ns_server_keys_refusal(const struct ns_server_keys *k, const uint8_t pub[NS_KEY_LEN],
                            char *out, size_t cap)
{
	char text[56];

	if (ns_noise_pub_encode(pub, text, sizeof text) == 0)
		snprintf(text, sizeof text, "?");
	snprintf(out, cap, "client %s refused: its key is not in %s (%s)", text, k->cfg.allow,
	         k->cfg.allow_setting);
}

void ns_server_keys_free(struct ns_server_keys *k)
{
	ns_keyring_free(k->ring);
	ns_allowlist_free(k->allow);
	k->ring = NULL;
	k->allow = NULL;
}
