/*
 * Replay windows per server key, in files shared by every process on the
 * host, and the optional Redis store shared by a fleet.
 *
 * The local window is asked first: it is cheap and catches a replay to
 * the same host.  Only a data-carrying first flight that it calls fresh
 * costs a round trip to the store: one SET NX PX, whose expiry is the
 * window, so the store needs no clean-up of its own.  The connection to
 * the store belongs to one process: a child of fork opens its own, and
 * any error closes it, to be opened again on the next flight after a
 * short pause (so that an outage costs no connect timeout per flight).
 */
#include "replay_guard.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>
#include <sodium.h>

#include "replay_config.h"

enum {
	MAX_KEYS = 16,
	KEY_ID_BYTES = NS_REPLAY_KEY_ID_HEX / 2,
	KEY_ID_HEX = NS_REPLAY_KEY_ID_HEX + 1,
	STORE_TIMEOUT_MS = 200,
	/* After a failure the store is not tried again for this long: flights are refused at once. */
	STORE_RETRY_MS = 500,
	STORE_KEY_MAX = 160,
	/* Room for the URL quoted back and what is wrong with it. */
	STORE_ERROR_MAX = 1024 + 128,
	/* The servers' logs cut a line there too. */
	LOG_LINE_MAX = 1024,
};

#define DEFAULT_DIR "/run/noiseshim"
#define STORE_KEY_PREFIX "noiseshim:replay"

/* The window of one server key. */
struct key_window {
	uint8_t pub[NS_KEY_LEN];
	char id[KEY_ID_HEX];         /* hex of BLAKE2b(pub), first 16 bytes */
	struct ns_replay *window;    /* NULL: none could be made */
};

static struct ns_replay_guard_config settings = {.file = "", .store = ""};
static ns_line_fn *log_line;

static pthread_mutex_t windows_lock = PTHREAD_MUTEX_INITIALIZER;
static struct key_window windows[MAX_KEYS];
static int nwindows;

/* The fleet's store, when the configuration names one. */
static struct {
	pthread_mutex_t lock;
	char error[STORE_ERROR_MAX]; /* the URL is unusable: why */
	int configured;
	char host[NS_REPLAY_STORE_HOST_MAX];
	int port;
	redisContext *conn;
	pid_t conn_pid;              /* the process conn belongs to */
	int down;                    /* the last attempt failed; logged once */
	uint64_t retry_at_ms;
} store = {.lock = PTHREAD_MUTEX_INITIALIZER};

__attribute__((format(printf, 2, 3)))
static void say(enum ns_line_level level, const char *fmt, ...)
{
	char line[LOG_LINE_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	log_line(level, line);
}

static void key_id(const uint8_t pub[NS_KEY_LEN], char id[KEY_ID_HEX])
{
	uint8_t digest[KEY_ID_BYTES];

	crypto_generichash(digest, sizeof digest, pub, NS_KEY_LEN, NULL, 0);
	sodium_bin2hex(id, KEY_ID_HEX, digest, sizeof digest);
}

static void parse_store(const char *url)
{
	if (url[0] == '\0')
		return;
	if (ns_replay_store_parse(url, store.host, &store.port, store.error, sizeof store.error) != 0)
		return;
	store.configured = 1;
}

void ns_replay_guard_configure(const struct ns_replay_guard_config *cfg, ns_line_fn *log)
{
	settings = *cfg;
	log_line = log;
	parse_store(settings.store);
}

/* Where the window of key id lives; the first key gets the configured file itself. */
static int window_path(const char *id, int first, char *path, size_t cap)
{
	const char *file = settings.file;
	int n;

	if (file[0] != '\0')
		n = first ? snprintf(path, cap, "%s", file) : snprintf(path, cap, "%s-%s", file, id);
	else
		n = snprintf(path, cap, DEFAULT_DIR "/replay-%s.map", id);
	return n < 0 || (size_t)n >= cap ? -1 : 0;
}

/* Say what opening found, at error level when entries were lost to corruption. */
static void log_opened(const char *path, enum ns_replay_opened opened, const char *reason,
                       const struct ns_replay *w)
{
	switch (opened) {
	case NS_REPLAY_OPENED_REBUILT:
		say(NS_LINE_ERROR, "replay window %s: %s; rebuilt empty, first flights seen before "
		    "are forgotten", path, reason);
		break;
	case NS_REPLAY_OPENED_NEW_BOOT:
		say(NS_LINE_INFO, "replay window %s: written before this boot; emptied", path);
		break;
	case NS_REPLAY_OPENED_CREATED:
	case NS_REPLAY_OPENED_EXISTING:
		break;
	}
	say(NS_LINE_INFO, "replay window %s: %u s, %u first flights, %zu bytes", path,
	    settings.window_s, settings.capacity, ns_replay_memory(w));
}

/*
 * Open the window of one key into kw.  A configured file that cannot be
 * used is an error (-1, why); the default directory falling short is not,
 * and the window is then this process's and its children's only.
 */
static int open_window(struct key_window *kw, int first, char *why, size_t why_len)
{
	uint64_t window_ms = (uint64_t)settings.window_s * 1000;
	char path[PATH_MAX], reason[NS_REPLAY_REASON_MAX];
	enum ns_replay_opened opened;

	/* The doctor's check, so that both say the same of a path that cannot serve. */
	if (settings.file[0] != '\0' && ns_replay_file_check(settings.file_setting, settings.file, why, why_len) != 0)
		return -1;
	if (window_path(kw->id, first, path, sizeof path) != 0) {
		snprintf(why, why_len, "%s: path too long", settings.file_setting);
		return -1;
	}
	if (settings.file[0] == '\0' && mkdir(DEFAULT_DIR, 0700) != 0 && errno != EEXIST)
		snprintf(reason, sizeof reason, DEFAULT_DIR ": cannot create: %s", strerror(errno));
	else if ((kw->window = ns_replay_open(path, window_ms, settings.capacity, &opened,
	                                      reason)) != NULL) {
		log_opened(path, opened, reason, kw->window);
		return 0;
	}
	if (settings.file[0] != '\0') {
		snprintf(why, why_len, "%s: replay window %s", settings.file_setting, reason);
		return -1;
	}
	kw->window = ns_replay_new_shared(window_ms, settings.capacity);
	say(NS_LINE_ERROR, "replay window %s; %s: restarts and other processes with this key will "
	    "not share it (set %s to a writable path)", reason,
	    kw->window != NULL ? "using one in this process and its children"
	                       : "no memory for one either: 0-RTT data is refused",
	    settings.file_setting);
	return 0;
}

/* The window of key pub, opened on first use; NULL if none.  Under windows_lock. */
static struct key_window *find_window(const uint8_t pub[NS_KEY_LEN], char *why, size_t why_len)
{
	struct key_window *kw;

	for (int i = 0; i < nwindows; i++)
		if (sodium_memcmp(windows[i].pub, pub, NS_KEY_LEN) == 0)
			return &windows[i];
	if (nwindows == MAX_KEYS) {
		snprintf(why, why_len, "replay windows: more than %d server keys", MAX_KEYS);
		return NULL;
	}
	kw = &windows[nwindows];
	memcpy(kw->pub, pub, NS_KEY_LEN);
	key_id(pub, kw->id);
	if (open_window(kw, nwindows == 0, why, why_len) != 0)
		return NULL;
	nwindows++;
	return kw;
}

int ns_replay_guard_init(const uint8_t server_pub[NS_KEY_LEN], char *why, size_t why_len)
{
	struct key_window *kw;

	if (store.error[0] != '\0') {
		snprintf(why, why_len, "%s", store.error);
		return -1;
	}
	pthread_mutex_lock(&windows_lock);
	kw = find_window(server_pub, why, why_len);
	pthread_mutex_unlock(&windows_lock);
	return kw != NULL ? 0 : -1;
}

static uint64_t now_ms(void)
{
	return ns_replay_clock_ms();
}

static void close_store(void)
{
	/* A context inherited through fork shares its socket with the parent: just let it go. */
	if (store.conn != NULL)
		redisFree(store.conn);
	store.conn = NULL;
}

/* A connection of this process's own, or NULL with why.  Under store.lock. */
static redisContext *store_connection(char *why, size_t why_len)
{
	struct timeval timeout = {0, STORE_TIMEOUT_MS * 1000};

	if (store.conn != NULL && store.conn_pid != getpid())
		close_store();
	if (store.conn != NULL)
		return store.conn;
	store.conn = redisConnectWithTimeout(store.host, store.port, timeout);
	store.conn_pid = getpid();
	if (store.conn == NULL) {
		snprintf(why, why_len, "out of memory");
	} else if (store.conn->err != 0) {
		snprintf(why, why_len, "%s", store.conn->errstr);
		close_store();
	} else if (redisSetTimeout(store.conn, timeout) != REDIS_OK) {
		snprintf(why, why_len, "cannot set a timeout");
		close_store();
	}
	return store.conn;
}

/* SET NX PX for e under key id: fresh, repeat, or unchecked with why.  Under store.lock. */
static enum ns_replay_verdict claim_in_store(const char *id, const uint8_t e[NS_KEY_LEN],
                                             char *why, size_t why_len)
{
	char name[STORE_KEY_MAX], hex[2 * NS_KEY_LEN + 1];
	enum ns_replay_verdict v = NS_REPLAY_UNCHECKED;
	redisContext *conn;
	redisReply *reply;

	if ((conn = store_connection(why, why_len)) == NULL)
		return NS_REPLAY_UNCHECKED;
	sodium_bin2hex(hex, sizeof hex, e, NS_KEY_LEN);
	snprintf(name, sizeof name, STORE_KEY_PREFIX ":%s:%s", id, hex);
	reply = redisCommand(conn, "SET %s 1 NX PX %llu", name,
	                     (unsigned long long)settings.window_s * 1000);
	if (reply == NULL) {
		snprintf(why, why_len, "%s", conn->errstr[0] != '\0' ? conn->errstr : "no reply");
		close_store();
		return NS_REPLAY_UNCHECKED;
	}
	if (reply->type == REDIS_REPLY_STATUS && strcmp(reply->str, "OK") == 0)
		v = NS_REPLAY_FRESH;
	else if (reply->type == REDIS_REPLY_NIL)
		v = NS_REPLAY_REPEAT;
	else
		snprintf(why, why_len, "unexpected reply to SET: %.100s",
		         reply->type == REDIS_REPLY_ERROR ? reply->str : "not a status");
	freeReplyObject(reply);
	if (v == NS_REPLAY_UNCHECKED)
		close_store();
	return v;
}

/* Ask the fleet's store about e; an outage and its end are logged once each. */
static enum ns_replay_verdict check_store(const char *id, const uint8_t e[NS_KEY_LEN])
{
	char why[256] = "";
	enum ns_replay_verdict v;

	pthread_mutex_lock(&store.lock);
	if (store.down && now_ms() < store.retry_at_ms) {
		pthread_mutex_unlock(&store.lock);
		return NS_REPLAY_UNCHECKED;
	}
	v = claim_in_store(id, e, why, sizeof why);
	if (v == NS_REPLAY_UNCHECKED) {
		if (!store.down)
			say(NS_LINE_ERROR, "replay store redis://%s:%d unreachable: %s; first flights "
			    "carrying data are refused until it is back", store.host, store.port, why);
		store.down = 1;
		store.retry_at_ms = now_ms() + STORE_RETRY_MS;
	} else if (store.down) {
		say(NS_LINE_ERROR, "replay store redis://%s:%d reachable again; first flights carrying "
		    "data are accepted", store.host, store.port);
		store.down = 0;
	}
	pthread_mutex_unlock(&store.lock);
	return v;
}

enum ns_replay_verdict ns_replay_guard_check(const uint8_t server_pub[NS_KEY_LEN],
                                             const uint8_t e[NS_KEY_LEN], int carries_data)
{
	enum ns_replay_verdict v = NS_REPLAY_UNCHECKED;
	struct key_window *kw;
	char why[256];

	pthread_mutex_lock(&windows_lock);
	kw = find_window(server_pub, why, sizeof why);
	pthread_mutex_unlock(&windows_lock);
	if (kw == NULL)
		say(NS_LINE_ERROR, "replay window: %s", why);
	else if (kw->window != NULL)
		v = ns_replay_check(kw->window, e, now_ms());
	if (!carries_data)
		return v == NS_REPLAY_REPEAT ? NS_REPLAY_REPEAT : NS_REPLAY_FRESH;
	if (v == NS_REPLAY_FRESH && store.configured)
		v = check_store(kw->id, e);
	return v;
}
