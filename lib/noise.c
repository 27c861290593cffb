/*
 * Noise_IK over X25519 (libsodium), BLAKE2b and the suite's AEAD: one
 * function per handshake message, one line per token.
 */
#include "noise.h"

#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "symmetric.h"

enum hs_step { WRITE_MSG1, READ_MSG1, WRITE_MSG2, READ_MSG2, DONE, FAILED };

struct ns_handshake {
	struct ns_symmetric ss;
	enum hs_step step;
	int initiator;
	int fixed_ephemeral;
	uint8_t s_priv[NS_KEY_LEN], s_pub[NS_KEY_LEN];
	uint8_t e_priv[NS_KEY_LEN], e_pub[NS_KEY_LEN];
	uint8_t rs[NS_KEY_LEN], re[NS_KEY_LEN];
	const char *error;
};

/* ikm = DH(priv, pub), mixed into the chaining key; an all-zero result (low-order point) fails. */
static int
mix_dh(struct ns_handshake *hs, const uint8_t priv[NS_KEY_LEN], const uint8_t pub[NS_KEY_LEN])
{
	uint8_t shared[NS_KEY_LEN];
	int ret = -1;

	if (crypto_scalarmult(shared, priv, pub) != 0) {
		hs->error = "peer sent a low-order public key";
		goto out;
	}
	if (ns_symmetric_mix_key(&hs->ss, shared)) {
		hs->error = "cipher setup failed";
		goto out;
	}
	ret = 0;
out:
	sodium_memzero(shared, sizeof(shared));
	return ret;
}

static int
make_ephemeral(struct ns_handshake *hs)
{
	if (!hs->fixed_ephemeral)
		randombytes_buf(hs->e_priv, NS_KEY_LEN);
	return crypto_scalarmult_base(hs->e_pub, hs->e_priv);
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

static struct ns_handshake *
handshake_new(enum ns_suite suite, int initiator, const struct ns_keypair *s,
              const uint8_t *prologue, size_t prologue_len)
{
	struct ns_handshake *hs;

	if (sodium_init() < 0 || ns_suite_from_proto(suite) == 0)
		return NULL;
	if ((hs = calloc(1, sizeof(*hs))) == NULL)
		return NULL;
	hs->initiator = initiator;
	memcpy(hs->s_priv, s->priv, NS_KEY_LEN);
	memcpy(hs->s_pub, s->pub, NS_KEY_LEN);
	ns_symmetric_init(&hs->ss, suite);
	ns_symmetric_mix_hash(&hs->ss, prologue, prologue_len);
	return hs;
}

/* An initiator with static key s talking to the responder whose static key is rs. */
struct ns_handshake *
ns_handshake_new_initiator(enum ns_suite suite, const struct ns_keypair *s,
                           const uint8_t rs[NS_KEY_LEN], const uint8_t *prologue,
                           size_t prologue_len)
{
	struct ns_handshake *hs;

	if ((hs = handshake_new(suite, 1, s, prologue, prologue_len)) == NULL)
		return NULL;
	memcpy(hs->rs, rs, NS_KEY_LEN);
	/* <- s */
	ns_symmetric_mix_hash(&hs->ss, hs->rs, NS_KEY_LEN);
	hs->step = WRITE_MSG1;
	return hs;
}

/* A responder with static key s. */
struct ns_handshake *
ns_handshake_new_responder(enum ns_suite suite, const struct ns_keypair *s,
                           const uint8_t *prologue, size_t prologue_len)
{
	struct ns_handshake *hs;

	if ((hs = handshake_new(suite, 0, s, prologue, prologue_len)) == NULL)
		return NULL;
	/* <- s */
	ns_symmetric_mix_hash(&hs->ss, hs->s_pub, NS_KEY_LEN);
	hs->step = READ_MSG1;
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
expect_step(struct ns_handshake *hs, enum hs_step step)
{
	if (hs->step == step)
		return 0;
	if (hs->step != FAILED)
		hs->error = "handshake message out of order";
	return -1;
}

static long
fail(struct ns_handshake *hs, const char *why)
{
	if (why != NULL)
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
		return fail(hs, "msg1 payload too large");
	/* e */
	if (make_ephemeral(hs))
		return fail(hs, "bad ephemeral key");
	memcpy(p, hs->e_pub, NS_KEY_LEN);
	ns_symmetric_mix_hash(&hs->ss, hs->e_pub, NS_KEY_LEN);
	p += NS_KEY_LEN;
	/* es */
	if (mix_dh(hs, hs->e_priv, hs->rs))
		return fail(hs, NULL);
	/* s */
	if ((n = ns_symmetric_encrypt_and_hash(&hs->ss, hs->s_pub, NS_KEY_LEN, p)) < 0)
		return fail(hs, "encryption failed");
	p += n;
	/* ss */
	if (mix_dh(hs, hs->s_priv, hs->rs))
		return fail(hs, NULL);
	/* payload */
	if ((n = ns_symmetric_encrypt_and_hash(&hs->ss, payload, len, p)) < 0)
		return fail(hs, "encryption failed");
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
		return fail(hs, "msg1 has an impossible length");
	/* e */
	memcpy(hs->re, p, NS_KEY_LEN);
	ns_symmetric_mix_hash(&hs->ss, hs->re, NS_KEY_LEN);
	p += NS_KEY_LEN;
	/* es */
	if (mix_dh(hs, hs->s_priv, hs->re))
		return fail(hs, NULL);
	/* s */
	if (ns_symmetric_decrypt_and_hash(&hs->ss, p, NS_KEY_LEN + NS_TAG_LEN, hs->rs) < 0)
		return fail(hs, "msg1 does not decrypt: it was made for another static key");
	p += NS_KEY_LEN + NS_TAG_LEN;
	/* ss */
	if (mix_dh(hs, hs->s_priv, hs->rs))
		return fail(hs, NULL);
	/* payload */
	if ((n = ns_symmetric_decrypt_and_hash(&hs->ss, p, len - (size_t)(p - msg), p)) < 0)
		return fail(hs, "msg1 payload fails authentication");
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
		return fail(hs, "msg2 payload too large");
	/* e */
	if (make_ephemeral(hs))
		return fail(hs, "bad ephemeral key");
	memcpy(p, hs->e_pub, NS_KEY_LEN);
	ns_symmetric_mix_hash(&hs->ss, hs->e_pub, NS_KEY_LEN);
	p += NS_KEY_LEN;
	/* ee */
	if (mix_dh(hs, hs->e_priv, hs->re))
		return fail(hs, NULL);
	/* se */
	if (mix_dh(hs, hs->e_priv, hs->rs))
		return fail(hs, NULL);
	/* payload */
	if ((n = ns_symmetric_encrypt_and_hash(&hs->ss, payload, len, p)) < 0)
		return fail(hs, "encryption failed");
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
		return fail(hs, "msg2 has an impossible length");
	/* e */
	memcpy(hs->re, p, NS_KEY_LEN);
	ns_symmetric_mix_hash(&hs->ss, hs->re, NS_KEY_LEN);
	p += NS_KEY_LEN;
	/* ee */
	if (mix_dh(hs, hs->e_priv, hs->re))
		return fail(hs, NULL);
	/* se */
	if (mix_dh(hs, hs->s_priv, hs->re))
		return fail(hs, NULL);
	/* payload */
	if ((n = ns_symmetric_decrypt_and_hash(&hs->ss, p, len - NS_KEY_LEN, p)) < 0)
		return fail(hs, "msg2 does not decrypt: the peer does not hold the expected key");
	*payload = p;
	hs->step = DONE;
	return n;
}

/*
 * After msg2: hand over this side's sending and receiving ciphers (the
 * caller frees them).  Returns 0 or -1.
 */
int
ns_handshake_split(struct ns_handshake *hs, struct ns_cipher **send, struct ns_cipher **recv)
{
	struct ns_cipher *c1, *c2;

	if (expect_step(hs, DONE))
		return -1;
	if (ns_symmetric_split(&hs->ss, &c1, &c2))
		return (int)fail(hs, "cipher setup failed");
	*send = hs->initiator ? c1 : c2;
	*recv = hs->initiator ? c2 : c1;
	/* Nothing but the handshake hash and the public keys is needed any more. */
	ns_symmetric_clear(&hs->ss);
	sodium_memzero(hs->s_priv, NS_KEY_LEN);
	sodium_memzero(hs->e_priv, NS_KEY_LEN);
	return 0;
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
	return hs->error != NULL ? hs->error : "no error";
}

/* Free the handshake, wiping every secret; NULL is a no-op. */
void
ns_handshake_free(struct ns_handshake *hs)
{
	if (hs == NULL)
		return;
	ns_symmetric_clear(&hs->ss);
	sodium_memzero(hs, sizeof(*hs));
	free(hs);
}
