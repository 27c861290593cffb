/*
 * What a server's NodeURL says about it: key, Noise protocol, TCP Fast Open.
 */
#include "server_identity.h"

#include <stdio.h>
#include <string.h>

#include <sodium.h>

#include "keys.h"

/* The public key of the private key file at path.  -1 with the reason, naming path, in err. */
int server_identity_load(const char *path, uint8_t pub[NS_KEY_LEN], char *err, size_t errlen)
{
	uint8_t priv[NS_KEY_LEN];
	int derived;

	if (ns_key_load(path, priv, err, errlen) < 0)
		return -1;
	derived = ns_key_public(priv, pub);
	sodium_memzero(priv, sizeof priv);
	if (derived < 0) {
		snprintf(err, errlen, "%s: the key is degenerate (its public key is zero)", path);
		return -1;
	}
	return 0;
}

/* The noise_proto named by text ("1" or "2"), or 0 if it names none. */
int server_identity_parse_proto(const char *text)
{
	if (strcmp(text, "1") == 0)
		return PROTO_CHACHAPOLY;
	if (strcmp(text, "2") == 0)
		return PROTO_AESGCM;
	return 0;
}

/* Give u the server's key, noise_proto and, with tfo, the TCP Fast Open feature bit. */
void server_identity_apply(struct ns_nodeurl *u, const uint8_t pub[NS_KEY_LEN], int proto,
                           int tfo)
{
	memcpy(u->noise_pub, pub, NS_KEY_LEN);
	u->has_noise_pub = 1;
	u->noise_proto = proto;
	if (tfo) {
		u->has_features = 1;
		u->features = NS_FEATURE_TCP_FASTOPEN;
	}
}
