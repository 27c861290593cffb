/*
 * Route prefix matching.
 */
#include "prefix.h"

#include <string.h>

/* Compare the first len bytes of a stream against prefix. */
enum ns_prefix_match
ns_prefix_match(const uint8_t *buf, size_t len, const uint8_t prefix[NS_ROUTE_PREFIX_LEN])
{
	size_t n = len < NS_ROUTE_PREFIX_LEN ? len : NS_ROUTE_PREFIX_LEN;

	if (memcmp(buf, prefix, n) != 0)
		return NS_PREFIX_MISMATCH;
	return n == NS_ROUTE_PREFIX_LEN ? NS_PREFIX_MATCH : NS_PREFIX_PARTIAL;
}

/* Copy a configured prefix string into out; -1 unless it is exactly 8 bytes. */
int
ns_prefix_parse(const char *text, uint8_t out[NS_ROUTE_PREFIX_LEN])
{
	if (strlen(text) != NS_ROUTE_PREFIX_LEN)
		return -1;
	memcpy(out, text, NS_ROUTE_PREFIX_LEN);
	return 0;
}
