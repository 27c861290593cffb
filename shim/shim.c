/*
 * Process-wide set-up, done once: configuration, logging, the static key.
 */
#include "shim.h"

#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>
#include <sodium.h>

#include "exec.h"
#include "keys.h"
#include "log.h"
#include "real.h"

struct ns_shim ns_shim = {.cache_lock = PTHREAD_MUTEX_INITIALIZER};

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

static void
load_key(void)
{
	struct ns_config *c = &ns_shim.config;
	uint8_t priv[NS_KEY_LEN];

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
	if (ns_key_load(c->key, priv, ns_shim.key_error, sizeof(ns_shim.key_error)) == 0) {
		ns_shim.have_key = ns_keypair_from_private(&ns_shim.static_key, priv) == 0;
		sodium_memzero(priv, sizeof(priv));
		if (ns_shim.have_key)
			return;
		snprintf(ns_shim.key_error, sizeof(ns_shim.key_error), "%.200s: not a usable X25519 key",
		         c->key);
	}
	ns_log(NS_LOG_ERROR, "NOISESHIM_KEY: %s", ns_shim.key_error);
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
	for (int i = 0; i < nproblems; i++)
		ns_log(NS_LOG_ERROR, "%s", problems[i]);
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
