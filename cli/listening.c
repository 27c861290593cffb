/*
 * Listening TCP sockets, from the kernel's /proc/net tables.
 */
#include "listening.h"

#include <arpa/inet.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
	TCP_LISTEN_STATE = 0x0A,
	LINE_MAX_LEN = 512,
	WORD_HEX_DIGITS = 8,
};

/*
 * The address in hex as /proc prints it: each 32-bit word in host order.
 * Parsing each word back into a uint32_t and copying its bytes yields the
 * address in network order, whatever the host's byte order.
 */
static int parse_hex_address(const char *hex, size_t words, uint8_t *out)
{
	for (size_t w = 0; w < words; w++) {
		char word[WORD_HEX_DIGITS + 1];
		char *end;
		uint32_t v;

		memcpy(word, hex + w * WORD_HEX_DIGITS, WORD_HEX_DIGITS);
		word[WORD_HEX_DIGITS] = '\0';
		v = (uint32_t)strtoul(word, &end, 16);
		if (*end != '\0')
			return -1;
		memcpy(out + 4 * w, &v, sizeof v);
	}
	return 0;
}

/* Add the listening sockets of one table (family AF_INET or AF_INET6).  -1 if unreadable. */
static int read_table(const char *path, int family, struct listening_list *l)
{
	size_t words = family == AF_INET ? 1 : 4;
	char line[LINE_MAX_LEN], hex[4 * WORD_HEX_DIGITS + 1];
	unsigned port, state;
	uint8_t addr[16];
	FILE *f = fopen(path, "re");

	if (f == NULL)
		return -1;
	while (fgets(line, sizeof line, f) != NULL && l->count < LISTENING_MAX) {
		struct listening_socket *s = &l->socket[l->count];

		/* "  sl  local_address rem_address   st ...": the header line does not scan. */
		if (sscanf(line, " %*u: %32[0-9A-Fa-f]:%x %*[0-9A-Fa-f]:%*x %x", hex, &port, &state) != 3 ||
		    state != TCP_LISTEN_STATE || strlen(hex) != words * WORD_HEX_DIGITS ||
		    parse_hex_address(hex, words, addr) != 0 ||
		    inet_ntop(family, addr, s->addr, sizeof s->addr) == NULL)
			continue;
		s->port = port;
		l->count++;
	}
	fclose(f);
	return 0;
}

int listening_read(struct listening_list *l)
{
	int v4, v6;

	l->count = 0;
	v4 = read_table("/proc/net/tcp", AF_INET, l);
	v6 = read_table("/proc/net/tcp6", AF_INET6, l);
	return v4 == 0 || v6 == 0 ? 0 : -1;
}
