/*
 * Noise_IK handshake, initiator and responder, sans I/O:
 *
 *   <- s
 *   ...
 *   -> e, es, s, ss     msg1 = e(32) | enc(s)(48) | enc(payload)(n+16)
 *   <- e, ee, se        msg2 = e(32) | enc(payload)(m+16)
 *
 * Each call takes and returns whole message bodies (no frame header).
 * The state is flat (no pointers, no references to this process's
 * memory), so it may be embedded in memory that other processes map, at
 * another address after exec.
 */
#ifndef NOISESHIM_NOISE_H
#define NOISESHIM_NOISE_H

#include <stddef.h>
#include <stdint.h>

#include "cipher.h"
#include "symmetric.h"

/* A static key with its public half, derived once rather than per handshake. */
struct ns_keypair {
	uint8_t priv[NS_KEY_LEN];
	uint8_t pub[NS_KEY_LEN];
};

struct ns_handshake {
	struct ns_symmetric ss;
	int step;                      /* which message comes next (noise.c) */
	int initiator;
	int fixed_ephemeral;
	int error;                     /* why the last call failed (noise.c), for logs */
	uint8_t s_priv[NS_KEY_LEN], s_pub[NS_KEY_LEN];
	uint8_t e_priv[NS_KEY_LEN], e_pub[NS_KEY_LEN];
	uint8_t rs[NS_KEY_LEN], re[NS_KEY_LEN];
};

/* Fill kp from priv.  0, or -1 for a degenerate key. */
int ns_keypair_from_private(struct ns_keypair *kp, const uint8_t priv[NS_KEY_LEN]);

/* An initiator with static key s talking to the responder whose static key is rs. */
struct ns_handshake *ns_handshake_new_initiator(enum ns_suite suite, const struct ns_keypair *s,
                                                const uint8_t rs[NS_KEY_LEN],
                                                const uint8_t *prologue, size_t prologue_len);

/* A responder with static key s. */
struct ns_handshake *ns_handshake_new_responder(enum ns_suite suite, const struct ns_keypair *s,
                                                const uint8_t *prologue, size_t prologue_len);

/* The same in caller-owned memory (wipe it with ns_handshake_wipe).  0, or -1. */
int ns_handshake_init_initiator(struct ns_handshake *hs, enum ns_suite suite,
                                const struct ns_keypair *s, const uint8_t rs[NS_KEY_LEN],
                                const uint8_t *prologue, size_t prologue_len);
int ns_handshake_init_responder(struct ns_handshake *hs, enum ns_suite suite,
                                const struct ns_keypair *s, const uint8_t *prologue,
                                size_t prologue_len);

/* Use e_priv as the ephemeral key instead of a random one (test vectors only). */
void ns_handshake_fix_ephemeral(struct ns_handshake *hs, const uint8_t e_priv[NS_KEY_LEN]);

/* Initiator: write msg1 carrying len payload bytes into out (len + NS_MSG1_OVERHEAD).  Length or -1. */
long ns_handshake_write_msg1(struct ns_handshake *hs, const uint8_t *payload, size_t len,
                             uint8_t *out);

/*
 * Responder: read msg1 of len bytes, decrypting in place; *payload points
 * at the payload inside msg.  Its length, or -1.
 */
long ns_handshake_read_msg1(struct ns_handshake *hs, uint8_t *msg, size_t len,
                            const uint8_t **payload);

/* Responder: write msg2 carrying len payload bytes into out (len + NS_MSG2_OVERHEAD).  Length or -1. */
long ns_handshake_write_msg2(struct ns_handshake *hs, const uint8_t *payload, size_t len,
                             uint8_t *out);

/*
 * Initiator: read msg2 of len bytes, decrypting in place; *payload points
 * at the payload inside msg.  Its length, or -1.
 */
long ns_handshake_read_msg2(struct ns_handshake *hs, uint8_t *msg, size_t len,
                            const uint8_t **payload);

/*
 * After msg2: hand over this side's sending and receiving ciphers (the
 * caller frees them).  Returns 0 or -1.
 */
int ns_handshake_split(struct ns_handshake *hs, struct ns_cipher **send, struct ns_cipher **recv);

/* The same as raw transport keys, for state kept outside this process.  0 or -1. */
int ns_handshake_split_keys(struct ns_handshake *hs, uint8_t send[NS_KEY_LEN],
                            uint8_t recv[NS_KEY_LEN]);

/* The handshake hash (NS_HASH_LEN bytes), equal on both sides once complete. */
const uint8_t *ns_handshake_hash(const struct ns_handshake *hs);

/* The peer's static public key (responder: known after msg1). */
const uint8_t *ns_handshake_remote_static(const struct ns_handshake *hs);

/* The peer's ephemeral public key (known after reading its message). */
const uint8_t *ns_handshake_remote_ephemeral(const struct ns_handshake *hs);

/* Why the last call failed, for logs. */
const char *ns_handshake_error(const struct ns_handshake *hs);

/* Free the handshake, wiping every secret; NULL is a no-op. */
void ns_handshake_free(struct ns_handshake *hs);

/* Wipe every secret of a handshake in caller-owned memory. */
void ns_handshake_wipe(struct ns_handshake *hs);

#endif
