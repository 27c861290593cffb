/*
 * noiseshim keygen and noiseshim pubkey.
 */
#include <getopt.h>
#include <stdio.h>

#include <sodium.h>

#include "cli.h"
#include "keys.h"
#include "nodeurl.h"
#include "server_identity.h"

#define DEFAULT_KEY_FILE "noiseshim.key"

static const char KEYGEN_USAGE[] =
	"usage: noiseshim keygen [FILE]\n"
	"\n"
	"Create FILE (default ./" DEFAULT_KEY_FILE ") holding a new X25519 private key,\n"
	"readable only by its owner, and print the public key in noise_pub form.\n"
	"An existing FILE is never overwritten.\n";

static const char PUBKEY_USAGE[] =
	"usage: noiseshim pubkey FILE\n"
	"\n"
	"Print the public key of the private key in FILE, in noise_pub form.\n";

static const struct option HELP_ONLY[] = {
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

/* Parse options that are only --help: 0 to go on, -1 when *done holds the exit code. */
static int parse_help_only(int argc, char **argv, const char *usage, int *done)
{
	int c;

	while ((c = getopt_long(argc, argv, ":h", HELP_ONLY, NULL)) != -1) {
		if (c == 'h') {
			*done = cli_help(usage);
			return -1;
		}
		*done = cli_option_error(argv[0], usage, c, argv);
		return -1;
	}
	return 0;
}

/* Print pub as noise_pub text on stdout. */
static int print_noise_pub(const uint8_t pub[NS_KEY_LEN])
{
	char text[NS_NODEURL_STR_MAX];

	if (ns_noise_pub_encode(pub, text, sizeof text) == 0) {
		cli_error("cannot encode the public key");
		return 1;
	}
	printf("%s\n", text);
	return 0;
}

/* noiseshim keygen [FILE]: write a new key file, print its public key. */
int cmd_keygen(int argc, char **argv)
{
	uint8_t priv[NS_KEY_LEN], pub[NS_KEY_LEN];
	const char *path = DEFAULT_KEY_FILE;
	char err[512];
	int done;

	if (parse_help_only(argc, argv, KEYGEN_USAGE, &done) < 0)
		return done;
	if (argc - optind > 1)
		return cli_usage_error(argv[0], KEYGEN_USAGE, "too many arguments");
	if (argc - optind == 1)
		path = argv[optind];

	ns_key_generate(priv, pub);
	if (ns_key_write(path, priv, err, sizeof err) < 0) {
		sodium_memzero(priv, sizeof priv);
		cli_error("%s", err);
		return 1;
	}
	sodium_memzero(priv, sizeof priv);
	return print_noise_pub(pub);
}

/* noiseshim pubkey FILE: print the public key of a key file. */
int cmd_pubkey(int argc, char **argv)
{
	uint8_t pub[NS_KEY_LEN];
	char err[512];
	int done;

	if (parse_help_only(argc, argv, PUBKEY_USAGE, &done) < 0)
		return done;
	if (argc - optind != 1)
		return cli_usage_error(argv[0], PUBKEY_USAGE, "expected one key file, got %d arguments",
		                       argc - optind);

	if (server_identity_load(argv[optind], pub, err, sizeof err) < 0) {
		cli_error("%s", err);
		return 1;
	}
	return print_noise_pub(pub);
}
