/*
 * Proxy addresses and the client proxy's cache lookup.
 */
#include "proxy_target.h"

#include <netdb.h>
#include <stdio.h>
#include <string.h>

#include "cache.h"
#include "cachefile.h"
#include "cipher.h"

/* Resolve HOST:PORT into sa.  0, or -1 with the reason in err. */
int proxy_parse_addr(const char *text, int listener, struct sockaddr_storage *sa, socklen_t *len,
                     char *err, size_t errlen)
{
	const char *colon = strrchr(text, ':');
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV };
	struct addrinfo *res;
	char host[NS_NODEURL_HOST_MAX];
	size_t hlen;
	int rc;

	if (colon == NULL || colon[1] == '\0') {
		snprintf(err, errlen, "'%s': expected HOST:PORT", text);
		return -1;
	}
	hlen = (size_t)(colon - text);
	if (hlen >= 2 && text[0] == '[' && text[hlen - 1] == ']') {
		text++;
		hlen -= 2;
	}
	if (hlen >= sizeof host) {
		snprintf(err, errlen, "'%s': host name too long", text);
		return -1;
	}
	memcpy(host, text, hlen);
	host[hlen] = '\0';
	if (listener)
		hints.ai_flags |= AI_PASSIVE;
	rc = getaddrinfo(hlen == 0 || strcmp(host, "*") == 0 ? NULL : host, colon + 1, &hints, &res);
	if (rc != 0) {
		snprintf(err, errlen, "'%s': %s", text, gai_strerror(rc));
		return -1;
	}
	memcpy(sa, res->ai_addr, res->ai_addrlen);
	*len = res->ai_addrlen;
	freeaddrinfo(res);
	if (!listener && ((struct sockaddr_in *)sa)->sin_port == 0) {
		snprintf(err, errlen, "'%s': port 0", text);
		return -1;
	}
	return 0;
}

/*
 * What the cache loader complained about, kept for the refusal message:
 * the first problem with a line that names the target's host if there is
 * one (a line missing its port, say), else the first problem.
 */
struct problems {
	char text[512];
	unsigned count;
	int names_host;       /* text is about a line naming host */
	char host[NS_NODEURL_HOST_MAX + 2];  /* as a NodeURL writes it: IPv6 in brackets */
};

/* Whether reason quotes a line whose address is host: "HOST or @HOST, then ':', '?' or '"'. */
static int quotes_host(const char *reason, const char *host)
{
	size_t n = strlen(host);

	for (const char *at = strstr(reason, host); at != NULL; at = strstr(at + 1, host))
		if (at > reason && (at[-1] == '"' || at[-1] == '@') && strchr(":?\"", at[n]) != NULL &&
		    at[n] != '\0')
			return 1;
	return 0;
}

static void note_problem(void *ctx, enum ns_cache_level level, const char *file, unsigned line,
                         const char *reason)
{
	struct problems *pr = ctx;
	int names_host;

	if (level != NS_CACHE_ERROR)
		return;
	names_host = pr->host[0] != '\0' && quotes_host(reason, pr->host);
	if (pr->count++ > 0 && (pr->names_host || !names_host))
		return;
	pr->names_host = names_host;
	if (line > 0)
		snprintf(pr->text, sizeof pr->text, "%s:%u: %s", file, line, reason);
	else
		snprintf(pr->text, sizeof pr->text, "%s: %s", file, reason);
}

/* The host part of "HOST:PORT" or "[V6]:PORT", brackets kept. */
static void host_of(const char *target, char *out, size_t cap)
{
	const char *colon = strrchr(target, ':');
	size_t n = colon != NULL ? (size_t)(colon - target) : strlen(target);

	snprintf(out, cap, "%.*s", (int)n, target);
}

/* Find cfg's target in the cache at path and fill in what the entry says.  0 or -1 with err. */
int proxy_lookup_target(const char *path, struct proxy_config *cfg, char *err, size_t errlen)
{
	struct problems pr = { .count = 0 };
	char default_path[4096];
	struct ns_cache_table *t;
	struct ns_cache_hit hit;
	const struct ns_nodeurl *u = &hit.url;
	int rc = -1;

	if (path == NULL) {
		if (cachefile_default_path(default_path, sizeof default_path) < 0) {
			snprintf(err, errlen, "no cache: give --cache FILE or set NOISESHIM_CACHE");
			return -1;
		}
		path = default_path;
	}
	host_of(cfg->target_text, pr.host, sizeof pr.host);
	t = ns_cache_table_load(path, note_problem, &pr);
	if (t == NULL) {
		snprintf(err, errlen, "cache %s: %s", path, pr.count > 0 ? pr.text : "cannot be read");
		return -1;
	}
	switch (ns_cache_table_lookup(t, (const struct sockaddr *)&cfg->target_addr, cfg->target_len,
	                              &hit)) {
	case NS_CACHE_HIT:
		break;
	case NS_CACHE_BROKEN:
		/* Listed, but its line cannot be used: the proxy must not start towards it. */
		snprintf(err, errlen, "the cache entry for %s cannot be used: %s: %s", cfg->target_text,
		         hit.where, hit.reason);
		goto out;
	default:
		snprintf(err, errlen, "no usable entry for %s in the cache %s%s%s", cfg->target_text, path,
		         pr.names_host ? "; a line for its host: "
		         : pr.count > 0 ? "; first problem: " : " (add one with 'noiseshim cache add URL')",
		         pr.count > 0 ? pr.text : "");
		goto out;
	}
	cfg->suite = ns_suite_from_proto(u->noise_proto != 0 ? u->noise_proto : 1);
	if (cfg->suite == 0) {
		snprintf(err, errlen, "cache %s: the entry for %s has noise_proto=%d, which is not 1 or 2",
		         path, cfg->target_text, u->noise_proto);
		goto out;
	}
	memcpy(cfg->remote_pub, u->noise_pub, NS_KEY_LEN);
	cfg->tfo = u->has_features && (u->features & NS_FEATURE_TCP_FASTOPEN);
	rc = 0;
out:
	ns_cache_table_free(t);
	return rc;
}
