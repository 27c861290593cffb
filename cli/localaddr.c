/*
 * This host's addresses, from getifaddrs, loopback first; a name's, from
 * getaddrinfo.
 */
#include "localaddr.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <netdb.h>
#include <string.h>
#include <sys/socket.h>

static const char LOOPBACK4[] = "127.0.0.1";
static const char LOOPBACK6[] = "::1";

static void add_unique(struct localaddr_list *l, const char *addr)
{
	for (size_t i = 0; i < l->count; i++)
		if (strcmp(l->addr[i], addr) == 0)
			return;
	if (l->count < LOCALADDR_MAX)
		strcpy(l->addr[l->count++], addr);
}

/* Numeric text of an interface address, or 0 when it is none we list. */
static int usable_text(const struct sockaddr *sa, int v4, int v6, char out[INET6_ADDRSTRLEN])
{
	if (sa == NULL)
		return 0;
	if (sa->sa_family == AF_INET && v4)
		return inet_ntop(AF_INET, &((const struct sockaddr_in *)(const void *)sa)->sin_addr,
		                 out, INET6_ADDRSTRLEN) != NULL;
	if (sa->sa_family == AF_INET6 && v6) {
		const struct in6_addr *a6 = &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr;

		return !IN6_IS_ADDR_LINKLOCAL(a6) &&
		       inet_ntop(AF_INET6, a6, out, INET6_ADDRSTRLEN) != NULL;
	}
	return 0;
}

void localaddr_list(int v4, int v6, struct localaddr_list *l)
{
	struct ifaddrs *all, *i;
	char text[INET6_ADDRSTRLEN];
	int have_interfaces = getifaddrs(&all) == 0;

	l->count = 0;
	if (!have_interfaces) {
		if (v4)
			add_unique(l, LOOPBACK4);
		if (v6)
			add_unique(l, LOOPBACK6);
		return;
	}
	/* Loopback first: what a client on this host uses, and the likeliest to be copied. */
	for (i = all; i != NULL; i = i->ifa_next)
		if (usable_text(i->ifa_addr, v4, v6, text) &&
		    (strcmp(text, LOOPBACK4) == 0 || strcmp(text, LOOPBACK6) == 0))
			add_unique(l, text);
	if (l->count == 2 && strcmp(l->addr[0], LOOPBACK6) == 0) {
		strcpy(l->addr[0], LOOPBACK4);
		strcpy(l->addr[1], LOOPBACK6);
	}
	for (i = all; i != NULL; i = i->ifa_next)
		if (usable_text(i->ifa_addr, v4, v6, text))
			add_unique(l, text);
	freeifaddrs(all);
}

int localaddr_resolve(const char *name, struct localaddr_list *l)
{
	/* SOCK_STREAM: one result per address, without the datagram twins. */
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *all, *ai;
	char text[INET6_ADDRSTRLEN];
	int rc = getaddrinfo(name, NULL, &hints, &all);

	l->count = 0;
	if (rc != 0)
		return rc;
	for (ai = all; ai != NULL; ai = ai->ai_next)
		if (usable_text(ai->ai_addr, 1, 1, text))
			add_unique(l, text);
	freeaddrinfo(all);
	return 0;
}
