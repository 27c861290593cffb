/*
 * Process-wide set-up, done once: configuration, logging, the static key,
 * the key ring and the allowlist, and their reloads.
 */
#include "shim.h"

#include <stdio.h>

#include <openssl/crypto.h>
#include <sodium.h>

#include "exec.h"
#include "keys.h"
#include "log.h"
#include "real.h"
#include "replay_guard.h"
#include "version.h"

struct ns_shim ns_shim = {.cache_lock = PTHREAD_MUTEX_INITIALIZER,
                          .keys_lock = PTHREAD_RWLOCK_INITIALIZER};

static pthread_once_t init_once = PTHREAD_ONCE_INIT;

enum { MAX_PROBLEMS = 16 };
static char problems[MAX_PROBLEMS][NS_CONFIG_TEXT_MAX + 300];
static int nproblems;

/* Problems are kept until logging knows where to write. */
static void
keep_problem(const char *where, const char *problem)
{
	if (nproblems < MAX_PROBLEMS)
		snprintf(problems[nproblems++], sizeof(problems[0]), "%s: %s", where, problem);
}

static pthread_once_t key_once = PTHREAD_ONCE_INIT;

/*
 * Every file NOISESHIM_KEY lists, and the allowlist.  The client shim dials
 * with the first key; it loads the rest too, because in a process under
 * both shims its wrappers answer the connections the accept shim accepted.
 * A client shim whose allowlist does not load can still dial; what it
 * would answer is refused.
 */
static void
load_key_files(void)
{
	struct ns_config *c = &ns_shim.config;
	const struct ns_server_keys_config files = {
		.keys = c->key,
		.key_setting = "NOISESHIM_KEY",
		.allow = c->allow,
		.allow_setting = "NOISESHIM_ALLOW",
	};

	switch (ns_server_keys_load(&ns_shim.keys, &files, ns_shim.key_error,
	                            sizeof(ns_shim.key_error))) {
	case -1:
		ns_log(NS_LOG_ERROR, "NOISESHIM_KEY: %s", ns_shim.key_error);
		return;
	case -2:
		/* The listener's refusal is the one line that says why. */
		if (ns_shim_role == NS_ROLE_RESPONDER)
			return;
		ns_log(NS_LOG_ERROR, "%s: no connection this process answers is let in",
		       ns_shim.key_error);
		break;
	}
	ns_shim.static_key = *ns_keyring_key(ns_shim.keys.ring, 0);
	ns_shim.have_key = 1;
}

static void
load_key(void)
{
	struct ns_config *c = &ns_shim.config;

	if (c->key[0] == '\0' && ns_shim_role == NS_ROLE_RESPONDER) {
		snprintf(ns_shim.key_error, sizeof(ns_shim.key_error),
		         "NOISESHIM_KEY is not set; the accept shim needs the server's private key "
		         "(make one with: noiseshim keygen FILE)");
		return;
	}
	if (c->key[0] == '\0') {
		/* No key file: a fresh identity for this process, as a Storj uplink does per dial. */
		ns_key_generate(ns_shim.static_key.priv, ns_shim.static_key.pub);
		ns_shim.have_key = 1;
		return;
	}
	load_key_files();
}

/* The replay guard's settings: the NOISESHIM_REPLAY_* variables. */
static void
configure_replay_guard(const struct ns_config *c)
{
	const struct ns_replay_guard_config guard = {
		.file = c->replay_file,
		.file_setting = "NOISESHIM_REPLAY_FILE",
		.store = c->replay_store,
		.window_s = c->replay_window_s,
		.capacity = c->replay_capacity,
	};

	ns_replay_guard_configure(&guard, ns_log_line);
}

static void
init(void)
{
	ns_real_init();
	/*
	 * OpenSSL must not tear itself down at exit: the service thread (and
	 * the exit flush) may still seal records while exit handlers run.  The
	 * memory goes with the process anyway.
	 */
	OPENSSL_init_crypto(OPENSSL_INIT_NO_ATEXIT, NULL);
	ns_config_load(&ns_shim.config, keep_problem);
	ns_log_configure(&ns_shim.config);
	ns_log(NS_LOG_DEBUG, "noiseshim %s, %s shim", NS_VERSION,
	       ns_shim_role == NS_ROLE_RESPONDER ? "accept" : "client");
	for (int i = 0; i < nproblems; i++)
		ns_log(NS_LOG_ERROR, "%s", problems[i]);
	configure_replay_guard(&ns_shim.config);
	if (sodium_init() < 0) {
		ns_log(NS_LOG_ERROR, "libsodium failed to initialise; no connection will be wrapped");
		snprintf(ns_shim.key_error, sizeof(ns_shim.key_error), "libsodium failed to initialise");
	}
}

/*
 * The static key, loaded on first need: only a process that wraps a
 * connection or listens on a wrapped port reads the key file.  0 when
 * ns_shim.static_key is usable; -1 with the reason in ns_shim.key_error.
 */
int
ns_shim_load_key(void)
{
	ns_shim_init();
	if (ns_shim.key_error[0] == '\0')
		pthread_once(&key_once, load_key);
	return ns_shim.have_key ? 0 : -1;
}

/* Re-read the key files and the allowlist if they changed, at most once a second. */
void
ns_shim_refresh_keys(void)
{
	if (!ns_server_keys_due(&ns_shim.keys))
		return;
	pthread_rwlock_wrlock(&ns_shim.keys_lock);
	/* A client dials with the key it started with: connect reads it without this lock. */
	if (ns_server_keys_refresh(&ns_shim.keys, ns_log_line) && ns_shim_role == NS_ROLE_RESPONDER)
		ns_shim.static_key = *ns_keyring_key(ns_shim.keys.ring, 0);
	pthread_rwlock_unlock(&ns_shim.keys_lock);
}

/* Whether a client with static key pub may enter (always, without NOISESHIM_ALLOW). */
int
ns_shim_client_allowed(const uint8_t pub[NS_KEY_LEN])
{
	int allowed;

	if (ns_shim.config.allow[0] == '\0')
		return 1;
	pthread_rwlock_rdlock(&ns_shim.keys_lock);
	allowed = ns_server_keys_allowed(&ns_shim.keys, pub);
	pthread_rwlock_unlock(&ns_shim.keys_lock);
	return allowed;
}

/* Load the configuration and key once; every wrapper that may track an fd calls it. */
void
ns_shim_init(void)
{
	pthread_once(&init_once, init);
}

/* Milliseconds on the monotonic clock. */
uint64_t
ns_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

__attribute__((constructor)) static void
shim_constructor(void)
{
	ns_shim_init();
	ns_exec_adopt();
}
