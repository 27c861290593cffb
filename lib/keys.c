/*
 * Static X25519 key files: 64 hex digits and a newline, mode 0600.
 */
#include "keys.h"
#include "fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

enum {
	KEY_HEX_LEN = 2 * NS_KEY_LEN,
	KEY_FILE_LEN = KEY_HEX_LEN + 1, /* hex digits and the newline */
	/* Read one byte past a valid file so that trailing junk is noticed. */
	KEY_READ_MAX = KEY_FILE_LEN + 1,
};

static void set_err(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

/* Fill priv with a fresh random key and pub with its public half. */
void ns_key_generate(uint8_t priv[NS_KEY_LEN], uint8_t pub[NS_KEY_LEN])
{
	/*
	 * sodium_init fails only when no randomness source can be opened;
	 * randombytes_buf would then abort anyway, and a key must never be
	 * made from anything weaker.
	 */
	if (sodium_init() < 0)
		abort();
	do {
		randombytes_buf(priv, NS_KEY_LEN);
	} while (ns_key_public(priv, pub) != 0);
}

/* Derive the public key of priv.  Returns 0, or -1 for a degenerate key. */
int ns_key_public(const uint8_t priv[NS_KEY_LEN], uint8_t pub[NS_KEY_LEN])
{
	if (crypto_scalarmult_base(pub, priv) != 0 || sodium_is_zero(pub, NS_KEY_LEN))
		return -1;
	return 0;
}

/* Create path (must not exist) with mode 0600 holding priv.  -1 with a reason in err. */
int ns_key_write(const char *path, const uint8_t priv[NS_KEY_LEN], char *err, size_t errlen)
{
	char text[KEY_FILE_LEN + 1];
	int fd;

	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0) {
		if (errno == EEXIST)
			set_err(err, errlen, "%s: already exists; not overwriting a key file", path);
		else
			set_err(err, errlen, "%s: cannot create: %s", path, strerror(errno));
		goto err0;
	}
	sodium_bin2hex(text, sizeof text, priv, NS_KEY_LEN);
	text[KEY_HEX_LEN] = '\n';
	if (ns_write_all(fd, text, KEY_FILE_LEN) < 0 || fsync(fd) < 0) {
		set_err(err, errlen, "%s: cannot write: %s", path, strerror(errno));
		goto err1;
	}
	if (close(fd) < 0) {
		set_err(err, errlen, "%s: cannot write: %s", path, strerror(errno));
		goto err2;
	}
	sodium_memzero(text, sizeof text);
	return 0;

err1:
	close(fd);
err2:
	/* A half-written key must not be mistaken for a usable one later. */
	unlink(path);
	sodium_memzero(text, sizeof text);
err0:
	return -1;
}

static ssize_t read_up_to(int fd, char *buf, size_t cap)
{
	size_t got = 0;

	while (got < cap) {
		ssize_t n = read(fd, buf + got, cap - got);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		if (n == 0)
			break;
		got += (size_t)n;
	}
	return (ssize_t)got;
}

/* Accepts exactly 64 hex digits, then a newline or nothing. */
static int parse_key_text(const char *text, size_t len, uint8_t priv[NS_KEY_LEN])
{
	size_t decoded = 0;
	const char *end = NULL;

	if (len != KEY_HEX_LEN && !(len == KEY_FILE_LEN && text[KEY_HEX_LEN] == '\n'))
		return -1;
	if (sodium_hex2bin(priv, NS_KEY_LEN, text, KEY_HEX_LEN, NULL, &decoded, &end) != 0 ||
	    decoded != NS_KEY_LEN || end != text + KEY_HEX_LEN)
		return -1;
	return 0;
}

/* Load priv from path; refuses files readable by group or others.  -1 with a reason in err. */
int ns_key_load(const char *path, uint8_t priv[NS_KEY_LEN], char *err, size_t errlen)
{
	char text[KEY_READ_MAX];
	struct stat st;
	ssize_t len;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		set_err(err, errlen, "%s: cannot open key file: %s", path, strerror(errno));
		goto err0;
	}
	if (fstat(fd, &st) < 0) {
		set_err(err, errlen, "%s: cannot stat: %s", path, strerror(errno));
		goto err1;
	}
	if (!S_ISREG(st.st_mode)) {
		set_err(err, errlen, "%s: not a regular file", path);
		goto err1;
	}
	if (st.st_mode & (S_IRWXG | S_IRWXO)) {
		set_err(err, errlen,
		        "%s: mode %04o gives group or others access to a private key; "
		        "fix it with: chmod 600 %s",
		        path, (unsigned)(st.st_mode & 07777), path);
		goto err1;
	}
	len = read_up_to(fd, text, sizeof text);
	if (len < 0) {
		set_err(err, errlen, "%s: cannot read: %s", path, strerror(errno));
		goto err2;
	}
	if (parse_key_text(text, (size_t)len, priv) < 0) {
		set_err(err, errlen, "%s: not a key file: expected %d hex digits and a newline",
		        path, KEY_HEX_LEN);
		goto err2;
	}
	close(fd);
	sodium_memzero(text, sizeof text);
	return 0;

err2:
	sodium_memzero(text, sizeof text);
	sodium_memzero(priv, NS_KEY_LEN);
err1:
	close(fd);
err0:
	return -1;
}
