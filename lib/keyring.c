/*
 * The server's key ring: a list of key files, loaded together, reloaded
 * together when one of them changes.
 */
#include "keyring.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "fileio.h"
#include "keys.h"

struct ns_keyring {
	char *list; /* as given, for reloads */
	size_t count;
	struct ns_keypair keys[NS_KEYRING_MAX];
	char paths[NS_KEYRING_MAX][PATH_MAX];
	struct ns_file_stamp stamps[NS_KEYRING_MAX]; /* of each file before it was read */
};

__attribute__((format(printf, 3, 4)))
static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

static int is_space(char c)
{
	return c == ' ' || c == '\t';
}

int ns_keyring_next_path(const char **cursor, unsigned *n, char path[PATH_MAX], char *err,
                         size_t errlen)
{
	const char *start = *cursor, *comma, *end;

	if (start == NULL)
		return 0;
	comma = strchr(start, ',');
	end = comma != NULL ? comma : start + strlen(start);
	*cursor = comma != NULL ? comma + 1 : NULL;
	++*n;
	while (start < end && is_space(*start))
		start++;
	while (end > start && is_space(end[-1]))
		end--;
	if (start == end) {
		set_err(err, errlen, "NOISESHIM_KEY: entry %u of the list is empty", *n);
		return -1;
	}
	if ((size_t)(end - start) >= PATH_MAX) {
		set_err(err, errlen, "NOISESHIM_KEY: entry %u of the list is longer than %d bytes",
		        *n, PATH_MAX - 1);
		return -1;
	}
	memcpy(path, start, (size_t)(end - start));
	path[end - start] = '\0';
	return 1;
}

/* Load the key at r->paths[i] into r->keys[i], stamping the file first. */
static int load_key(struct ns_keyring *r, size_t i, char *err, size_t errlen)
{
	struct ns_keypair *k = &r->keys[i];

	/* Stamped before reading: a change while we read is seen by the next check. */
	if (ns_file_stamp_get(r->paths[i], &r->stamps[i]) != 0) {
		set_err(err, errlen, "%s: cannot open key file: %s", r->paths[i], strerror(errno));
		return -1;
	}
	if (ns_key_load(r->paths[i], k->priv, err, errlen) != 0)
		return -1;
	if (ns_key_public(k->priv, k->pub) != 0) {
		set_err(err, errlen, "%s: a degenerate key (its public half is zero)", r->paths[i]);
		return -1;
	}
	return 0;
}

struct ns_keyring *ns_keyring_load(const char *list, char *err, size_t errlen)
{
	struct ns_keyring *r;
	const char *cursor = list;
	char path[PATH_MAX];
	unsigned entries = 0;
	int more;

	/* sodium_malloc would lock the pages, but a ring must stay cheap to swap. */
	r = calloc(1, sizeof *r);
	if (r == NULL)
		goto err0;
	r->list = strdup(list);
	if (r->list == NULL)
		goto err1;
	while ((more = ns_keyring_next_path(&cursor, &entries, path, err, errlen)) > 0) {
		if (r->count == NS_KEYRING_MAX) {
			set_err(err, errlen, "NOISESHIM_KEY: more than %d key files", NS_KEYRING_MAX);
			goto err2;
		}
		strcpy(r->paths[r->count], path);
		if (load_key(r, r->count, err, errlen) != 0)
			goto err2;
		r->count++;
	}
	if (more < 0)
		goto err2;
	return r;

err2:
	ns_keyring_free(r);
	return NULL;
err1:
	free(r);
err0:
	set_err(err, errlen, "NOISESHIM_KEY: out of memory");
	return NULL;
}

size_t ns_keyring_count(const struct ns_keyring *r)
{
	return r->count;
}

const struct ns_keypair *ns_keyring_key(const struct ns_keyring *r, size_t i)
{
	return i < r->count ? &r->keys[i] : NULL;
}

const char *ns_keyring_path(const struct ns_keyring *r, size_t i)
{
	return i < r->count ? r->paths[i] : NULL;
}

int ns_keyring_changed(const struct ns_keyring *r)
{
	struct ns_file_stamp now;

	for (size_t i = 0; i < r->count; i++)
		if (ns_file_stamp_get(r->paths[i], &now) != 0 ||
		    !ns_file_stamp_same(&now, &r->stamps[i]))
			return 1;
	return 0;
}

int ns_keyring_refresh(struct ns_keyring **ring, char *err, size_t errlen)
{
	struct ns_keyring *fresh;

	if (!ns_keyring_changed(*ring))
		return 0;
	fresh = ns_keyring_load((*ring)->list, err, errlen);
	if (fresh == NULL)
		return -1;
	ns_keyring_free(*ring);
	*ring = fresh;
	return 1;
}

void ns_keyring_free(struct ns_keyring *r)
{
	if (r == NULL)
		return;
	free(r->list);
	sodium_memzero(r->keys, sizeof r->keys);
	free(r);
}
