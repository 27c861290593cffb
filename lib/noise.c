/*
 * Noise_IK over X25519 (libsodium), BLAKE2b and the suite's AEAD: one
 * function per handshake message, one line per token.
 */
#include "noise.h"

#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "dhcache.h"
#include "symmetric.h"
#include "x25519.h"

enum hs_step { WRITE_MSG1, READ_MSG1, WRITE_MSG2, READ_MSG2, DONE, FAILED };

/* Why a call failed: kept as a number, since the state may be read by another program image. */
enum hs_error {
	ERR_NONE,
	ERR_LOW_ORDER,
	ERR_CIPHER,
	ERR_ORDER,
	ERR_MSG1_TOO_LARGE,
	ERR_MSG2_TOO_LARGE,
	ERR_EPHEMERAL,
	ERR_ENCRYPT,
	ERR_MSG1_LENGTH,
	ERR_MSG1_STATIC,
	ERR_MSG1_PAYLOAD,
	ERR_MSG2_LENGTH,
	ERR_MSG2_PAYLOAD,
};

static const char *const error_text[] = {
	[ERR_NONE] = "no error",
	[ERR_LOW_ORDER] = "peer sent a low-order public key",
	[ERR_CIPHER] = "cipher setup failed",
	[ERR_ORDER] = "handshake message out of order",
	[ERR_MSG1_TOO_LARGE] = "msg1 payload too large",
	[ERR_MSG2_TOO_LARGE] = "msg2 payload too large",
	[ERR_EPHEMERAL] = "bad ephemeral key",
	[ERR_ENCRYPT] = "encryption failed",
	[ERR_MSG1_LENGTH] = "msg1 has an impossible length",
	[ERR_MSG1_STATIC] = "msg1 does not decrypt: it was made for another static key",
	[ERR_MSG1_PAYLOAD] = "msg1 payload fails authentication",
	[ERR_MSG2_LENGTH] = "msg2 has an impossible length",
	[ERR_MSG2_PAYLOAD] = "msg2 does not decrypt: the peer does not hold the expected key",
};

/* ikm = a DH result (dh_failed: it was all zeros, a low-order point), mixed into the chaining key, then wiped. */
static int
mix_shared(struct ns_handshake *hs, int dh_failed, uint8_t shared[NS_KEY_LEN])
{
	int ret = -1;

	if (dh_failed)
		hs->error = ERR_LOW_ORDER;
	else if (ns_symmetric_mix_key(&hs->ss, shared))
		hs->error = ERR_CIPHER;
	else
		ret = 0;
	sodium_memzero(shared, NS_KEY_LEN);
	return ret;
}

/* ikm = DH(priv, pub). */
static int
mix_dh(struct ns_handshake *hs, const uint8_t priv[NS_KEY_LEN], const uint8_t pub[NS_KEY_LEN])
{
	uint8_t shared[NS_KEY_LEN];

	return mix_shared(hs, crypto_scalarmult(shared, priv, pub) != 0, shared);
}

/* The ss token: DH(s, rs), which two static keys seen together before need not compute again. */
static int
mix_static_dh(struct ns_handshake *hs)
{
	uint8_t shared[NS_KEY_LEN];

	return mix_shared(hs, ns_dh_static(shared, hs->s_priv, hs->s_pub, hs->rs) != 0, shared);
}

static int
make_ephemeral(struct ns_handshake *hs)
{
	if (!hs->fixed_ephemeral)
		randombytes_buf(hs->e_priv, NS_KEY_LEN);
	return ns_x25519_public(hs->e_pub, hs->e_priv);
}

/* Fill kp from priv.  0, or -1 for a degenerate key. */
int
ns_keypair_from_private(struct ns_keypair *kp, const uint8_t priv[NS_KEY_LEN])
{
	if (sodium_init() < 0)
		return -1;
	memcpy(kp->priv, priv, NS_KEY_LEN);
	return crypto_scalarmult_base(kp->pub, kp->priv) == 0 ? 0 : -1;
}

static int
handshake_init(struct ns_handshake *hs, enum ns_suite suite, int initiator,
               const struct ns_keypair *s, const uint8_t *prologue, size_t prologue_len)
{
	if (sodium_init() < 0 || ns_suite_from_proto(suite) == 0)
		return -1;
	memset(hs, 0, sizeof(*hs));
	hs->initiator = initiator;
	memcpy(hs->s_priv, s->priv, NS_KEY_LEN);
	memcpy(hs->s_pub, s->pub, NS_KEY_LEN);
	ns_symmetric_init(&hs->ss, suite);
	ns_symmetric_mix_hash(&hs->ss, prologue, prologue_len);
	return 0;
}

/* An initiator in caller-owned memory.  0, or -1. */
int
ns_handshake_init_initiator(struct ns_handshake *hs, enum ns_suite suite,
                            const struct ns_keypair *s, const uint8_t rs[NS_KEY_LEN],
                            const uint8_t *prologue, size_t prologue_len)
{
	if (handshake_init(hs, suite, 1, s, prologue, prologue_len))
		return -1;
	memcpy(hs->rs, rs, NS_KEY_LEN);
	/* <- s */
	ns_symmetric_mix_hash(&hs->ss, hs->rs, NS_KEY_LEN);
	hs->step = WRITE_MSG1;
	return 0;
}

/* A responder in caller-owned memory.  0, or -1. */
int
ns_handshake_init_responder(struct ns_handshake *hs, enum ns_suite suite,
                            const struct ns_keypair *s, const uint8_t *prologue,
                            size_t prologue_len)
{
	if (handshake_init(hs, suite, 0, s, prologue, prologue_len))
		return -1;
	/* <- s */
	ns_symmetric_mix_hash(&hs->ss, hs->s_pub, NS_KEY_LEN);
	hs->step = READ_MSG1;
	return 0;
}

/* An initiator with static key s talking to the responder whose static key is rs. */
struct ns_handshake *
ns_handshake_new_initiator(enum ns_suite suite, const struct ns_keypair *s,
                           const uint8_t rs[NS_KEY_LEN], const uint8_t *prologue,
                           size_t prologue_len)
{
	struct ns_handshake *hs = malloc(sizeof(*hs));

	if (hs != NULL && ns_handshake_init_initiator(hs, suite, s, rs, prologue, prologue_len)) {
		free(hs);
		hs = NULL;
	}
	return hs;
}

/* A responder with static key s. */
struct ns_handshake *
ns_handshake_new_responder(enum ns_suite suite, const struct ns_keypair *s,
                           const uint8_t *prologue, size_t prologue_len)
{
	struct ns_handshake *hs = malloc(sizeof(*hs));

	if (hs != NULL && ns_handshake_init_responder(hs, suite, s, prologue, prologue_len)) {
		free(hs);
		hs = NULL;
	}
	return hs;
}

/* Use e_priv as the ephemeral key instead of a random one (test vectors only). */
void
ns_handshake_fix_ephemeral(struct ns_handshake *hs, const uint8_t e_priv[NS_KEY_LEN])
{
	memcpy(hs->e_priv, e_priv, NS_KEY_LEN);
	hs->fixed_ephemeral = 1;
}

static int
expect_step(struct ns_handshake *hs, int step)
{
	if (hs->step == step)
		return 0;
	if (hs->step != FAILED)
		hs->error = ERR_ORDER;
	return -1;
}

static long
fail(struct ns_handshake *hs, enum hs_error why)
{
	if (why != ERR_NONE)
		hs->error = why;
	hs->step = FAILED;
	return -1;
}

/* Initiator: write msg1 carrying len payload bytes into out (len + NS_MSG1_OVERHEAD).  Length or -1. */
long
ns_handshake_write_msg1(struct ns_handshake *hs, const uint8_t *payload, size_t len, uint8_t *out)
{
	uint8_t *p = out;
	long n;

	if (expect_step(hs, WRITE_MSG1))
		return -1;
	if (len > NS_MAX_PLAINTEXT)
		return fail(hs, ERR_MSG1_TOO_LARGE);
	/* e */
	if (make_ephemeral(hs))
		return fail(hs, ERR_EPHEMERAL);
	memcpy(p, hs->e_pub, NS_KEY_LEN);
	ns_symmetric_mix_hash(&hs->ss, hs->e_pub, NS_KEY_LEN);
	p += NS_KEY_LEN;
	/* es */
	if (mix_dh(hs, hs->e_priv, hs->rs))
		return fail(hs, ERR_NONE);
	/* s */
	if ((n = ns_symmetric_encrypt_and_hash(&hs->ss, hs->s_pub, NS_KEY_LEN, p)) < 0)
		return fail(hs, ERR_ENCRYPT);
	p += n;
	/* ss */
	if (mix_static_dh(hs))
		return fail(hs, ERR_NONE);
	/* payload */
	if ((n = ns_symmetric_encrypt_and_hash(&hs->ss, payload, len, p)) < 0)
		return fail(hs, ERR_ENCRYPT);
	p += n;
	hs->step = READ_MSG2;
	return p - out;
}

/*
 * Responder: read msg1 of len bytes, decrypting in place; *payload points
 * at the payload inside msg.  Its length, or -1.
 */
long
ns_handshake_read_msg1(struct ns_handshake *hs, uint8_t *msg, size_t len,
                       const uint8_t **payload)
{
	uint8_t *p = msg;
	long n;

	if (expect_step(hs, READ_MSG1))
		return -1;
	if (len < NS_MSG1_OVERHEAD || len > NS_MAX_MSG1_BODY)
		return fail(hs, ERR_MSG1_LENGTH);
	/* e */
	memcpy(hs->re, p, NS_KEY_LEN);
	ns_symmetric_mix_hash(&hs->ss, hs->re, NS_KEY_LEN);
	p += NS_KEY_LEN;
	/* es */
	if (mix_dh(hs, hs->s_priv, hs->re))
		return fail(hs, ERR_NONE);
	/* s */
	if (ns_symmetric_decrypt_and_hash(&hs->ss, p, NS_KEY_LEN + NS_TAG_LEN, hs->rs) < 0)
		return fail(hs, ERR_MSG1_STATIC);
	p += NS_KEY_LEN + NS_TAG_LEN;
	/* ss */
	if (mix_static_dh(hs))
		return fail(hs, ERR_NONE);
	/* payload */
	if ((n = ns_symmetric_decrypt_and_hash(&hs->ss, p, len - (size_t)(p - msg), p)) < 0)
		return fail(hs, ERR_MSG1_PAYLOAD);
	*payload = p;
	hs->step = WRITE_MSG2;
	return n;
}

/* Responder: write msg2 carrying len payload bytes into out (len + NS_MSG2_OVERHEAD).  Length or -1. */
long
ns_handshake_write_msg2(struct ns_handshake *hs, const uint8_t *payload, size_t len, uint8_t *out)
{
	uint8_t *p = out;
	long n;

	if (expect_step(hs, WRITE_MSG2))
		return -1;
	if (len > NS_MAX_PLAINTEXT)
		return fail(hs, ERR_MSG2_TOO_LARGE);
	/* e */
	if (make_ephemeral(hs))
		return fail(hs, ERR_EPHEMERAL);
	memcpy(p, hs->e_pub, NS_KEY_LEN);
	ns_symmetric_mix_hash(&hs->ss, hs->e_pub, NS_KEY_LEN);
	p += NS_KEY_LEN;
	/* ee */
	if (mix_dh(hs, hs->e_priv, hs->re))
		return fail(hs, ERR_NONE);
	/* se */
	if (mix_dh(hs, hs->e_priv, hs->rs))
		return fail(hs, ERR_NONE);
	/* payload */
	if ((n = ns_symmetric_encrypt_and_hash(&hs->ss, payload, len, p)) < 0)
		return fail(hs, ERR_ENCRYPT);
	p += n;
	hs->step = DONE;
	return p - out;
}

/*
 * Initiator: read msg2 of len bytes, decrypting in place; *payload points
 * at the payload inside msg.  Its length, or -1.
 */
long
ns_handshake_read_msg2(struct ns_handshake *hs, uint8_t *msg, size_t len,
                       const uint8_t **payload)
{
	uint8_t *p = msg;
	long n;

	if (expect_step(hs, READ_MSG2))
		return -1;
	if (len < NS_MSG2_OVERHEAD || len > NS_MAX_MSG2_BODY)
		return fail(hs, ERR_MSG2_LENGTH);
	/* e */
	memcpy(hs->re, p, NS_KEY_LEN);
	ns_symmetric_mix_hash(&hs->ss, hs->re, NS_KEY_LEN);
	p += NS_KEY_LEN;
	/* ee */
	if (mix_dh(hs, hs->e_priv, hs->re))
		return fail(hs, ERR_NONE);
	/* se */
	if (mix_dh(hs, hs->s_priv, hs->re))
		return fail(hs, ERR_NONE);
	/* payload */
	if ((n = ns_symmetric_decrypt_and_hash(&hs->ss, p, len - NS_KEY_LEN, p)) < 0)
		return fail(hs, ERR_MSG2_PAYLOAD);
	*payload = p;
	hs->step = DONE;
	return n;
}

/* After msg2: this side's sending and receiving keys.  0 or -1. */
int
ns_handshake_split_keys(struct ns_handshake *hs, uint8_t send[NS_KEY_LEN], uint8_t recv[NS_KEY_LEN])
{
	uint8_t k1[NS_KEY_LEN], k2[NS_KEY_LEN];

	if (expect_step(hs, DONE))
		return -1;
	ns_symmetric_split(&hs->ss, k1, k2);
	memcpy(send, hs->initiator ? k1 : k2, NS_KEY_LEN);
	memcpy(recv, hs->initiator ? k2 : k1, NS_KEY_LEN);
	sodium_memzero(k1, sizeof(k1));
	sodium_memzero(k2, sizeof(k2));
	/* Nothing but the handshake hash and the public keys is needed any more. */
	ns_symmetric_clear(&hs->ss);
	sodium_memzero(hs->s_priv, NS_KEY_LEN);
	sodium_memzero(hs->e_priv, NS_KEY_LEN);
	return 0;
}

/*
 * After msg2: hand over this side's sending and receiving ciphers (the
 * caller frees them).  Returns 0 or -1.
 */
int
ns_handshake_split(struct ns_handshake *hs, struct ns_cipher **send, struct ns_cipher **recv)
{
	uint8_t ks[NS_KEY_LEN], kr[NS_KEY_LEN];
	int ret = -1;

	if (ns_handshake_split_keys(hs, ks, kr))
		return -1;
	*send = ns_cipher_new(hs->ss.suite, ks);
	*recv = ns_cipher_new(hs->ss.suite, kr);
	if (*send == NULL || *recv == NULL) {
		ns_cipher_free(*send);
		ns_cipher_free(*recv);
		*send = *recv = NULL;
		fail(hs, ERR_CIPHER);
		goto out;
	}
	ret = 0;
out:
	sodium_memzero(ks, sizeof(ks));
	sodium_memzero(kr, sizeof(kr));
	return ret;
}

/* The handshake hash (NS_HASH_LEN bytes), equal on both sides once complete. */
const uint8_t *
ns_handshake_hash(const struct ns_handshake *hs)
{
	return hs->ss.h;
}

/* The peer's static public key (responder: known after msg1). */
const uint8_t *
ns_handshake_remote_static(const struct ns_handshake *hs)
{
	return hs->rs;
}

/* The peer's ephemeral public key (known after reading its message). */
const uint8_t *
ns_handshake_remote_ephemeral(const struct ns_handshake *hs)
{
	return hs->re;
}

/* Why the last call failed, for logs. */
const char *
ns_handshake_error(const struct ns_handshake *hs)
{
	return hs->error >= 0 && (size_t)hs->error < sizeof(error_text) / sizeof(error_text[0])
	               ? error_text[hs->error]
	               : "unknown error";
}

/* Wipe every secret of a handshake in caller-owned memory. */
void
ns_handshake_wipe(struct ns_handshake *hs)
{
	sodium_memzero(hs, sizeof(*hs));
}

/* Free the handshake, wiping every secret; NULL is a no-op. */
void
ns_handshake_free(struct ns_handshake *hs)
{
	if (hs == NULL)
		return;
	ns_handshake_wipe(hs);
	free(hs);
}
