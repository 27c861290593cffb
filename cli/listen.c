/*
 * The NOISESHIM_LISTEN list, read with the accept shim's grammar.
 */
#include "listen.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

enum { PORT_MAX = 65535 };

static const char SEPARATORS[] = ", ";

/* A decimal port, 1..65535, exactly len bytes of text.  0 if text is not one. */
static unsigned parse_port(const char *text, size_t len)
{
	unsigned port = 0;

	if (len == 0 || len > 5)
		return 0;
	for (size_t i = 0; i < len; i++) {
		if (text[i] < '0' || text[i] > '9')
			return 0;
		port = port * 10 + (unsigned)(text[i] - '0');
	}
	return port <= PORT_MAX ? port : 0;
}

/*
 * Copy the numeric address in the len bytes at text, brackets removed, to out.
 * -1 if it is not one.
 */
static int copy_address(const char *text, size_t len, char out[INET6_ADDRSTRLEN])
{
	unsigned char bytes[sizeof(struct in6_addr)];

	if (len >= 2 && text[0] == '[' && text[len - 1] == ']') {
		text++;
		len -= 2;
	}
	if (len >= INET6_ADDRSTRLEN)
		return -1;
	memcpy(out, text, len);
	out[len] = '\0';
	return inet_pton(AF_INET, out, bytes) == 1 || inet_pton(AF_INET6, out, bytes) == 1 ? 0 : -1;
}

/* Split one entry (len bytes) into e.  -1 with the reason in err. */
static int parse_entry(const char *text, size_t len, struct listen_entry *e, char *err,
                       size_t errlen)
{
	const char *colon = memrchr(text, ':', len);
	const char *port_text = colon == NULL ? text : colon + 1;

	e->port = parse_port(port_text, (size_t)(text + len - port_text));
	if (e->port == 0) {
		snprintf(err, errlen, "'%.*s': expected a port from 1 to %d", (int)len, text, PORT_MAX);
		return -1;
	}
	e->addr[0] = '\0';
	if (colon != NULL && copy_address(text, (size_t)(colon - text), e->addr) < 0) {
		snprintf(err, errlen, "'%.*s': expected a numeric IPv4 or IPv6 address before the port",
		         (int)len, text);
		return -1;
	}
	return 0;
}

/*
 * Parse the entry at *cursor and step past it.  1 with e filled, 0 at the end,
 * -1 with the reason in err.
 */
int listen_next(const char **cursor, struct listen_entry *e, char *err, size_t errlen)
{
	const char *start = *cursor + strspn(*cursor, SEPARATORS);
	size_t len = strcspn(start, SEPARATORS);

	if (len == 0)
		return 0;
	if (parse_entry(start, len, e, err, errlen) < 0)
		return -1;
	*cursor = start + len;
	return 1;
}

/* Whether e listens on every local address: no address, 0.0.0.0 or ::. */
int listen_is_wildcard(const struct listen_entry *e)
{
	struct in6_addr a6;
	struct in_addr a4;

	if (e->addr[0] == '\0')
		return 1;
	if (inet_pton(AF_INET, e->addr, &a4) == 1)
		return a4.s_addr == htonl(INADDR_ANY);
	return inet_pton(AF_INET6, e->addr, &a6) == 1 && IN6_IS_ADDR_UNSPECIFIED(&a6);
}
