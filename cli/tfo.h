/*
 * The kernel's TCP Fast Open switch, net.ipv4.tcp_fastopen: a bit mask
 * for the current network namespace.
 */
#ifndef NOISESHIM_CLI_TFO_H
#define NOISESHIM_CLI_TFO_H

#define TFO_SYSCTL_PATH "/proc/sys/net/ipv4/tcp_fastopen"

enum {
	TFO_CLIENT = 0x1,             /* connect() may put data in the SYN */
	TFO_SERVER = 0x2,             /* listeners with TCP_FASTOPEN accept data in the SYN */
	TFO_SERVER_NO_COOKIE = 0x200, /* ... even from a client that never got a cookie */
	TFO_SERVER_ALL_LISTENERS = 0x400, /* every listener, with TCP_FASTOPEN or not */
};

/* Read net.ipv4.tcp_fastopen into *value.  -1 with errno set. */
int tfo_sysctl_read(unsigned *value);

#endif
