/*
 * What a server's NodeURL says about it: the public half of its key file,
 * the Noise protocol it speaks and whether it takes TCP Fast Open.
 */
#ifndef NOISESHIM_CLI_SERVER_IDENTITY_H
#define NOISESHIM_CLI_SERVER_IDENTITY_H

#include <stddef.h>
#include <stdint.h>

#include "nodeurl.h"

enum {
	PROTO_CHACHAPOLY = 1,
	PROTO_AESGCM = 2,
};

/* The public key of the private key file at path.  -1 with the reason, naming path, in err. */
int server_identity_load(const char *path, uint8_t pub[NS_KEY_LEN], char *err, size_t errlen);

/* The noise_proto named by text ("1" or "2"), or 0 if it names none. */
int server_identity_parse_proto(const char *text);

/* Give u the server's key, noise_proto and, with tfo, the TCP Fast Open feature bit. */
void server_identity_apply(struct ns_nodeurl *u, const uint8_t pub[NS_KEY_LEN], int proto,
                           int tfo);

#endif
