/*
 * Reading net.ipv4.tcp_fastopen.
 */
#include "tfo.h"

#include <errno.h>
#include <stdio.h>

/* Read net.ipv4.tcp_fastopen into *value.  -1 with errno set. */
int tfo_sysctl_read(unsigned *value)
{
	FILE *f = fopen(TFO_SYSCTL_PATH, "re");
	int fields;

	if (f == NULL)
		return -1;
	fields = fscanf(f, "%u", value);
	fclose(f);
	if (fields != 1) {
		errno = EINVAL;
		return -1;
	}
	return 0;
}
