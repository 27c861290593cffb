/*
 * X25519 public keys through Ed25519's fixed-base table (see x25519.h).
 * The map needs one inversion modulo p = 2^255 - 19, done here with field
 * elements of five 51-bit limbs, as in ref10 and libsodium.
 */
#include "x25519.h"

#include <string.h>

#include <sodium.h>

typedef unsigned __int128 u128;

/* A field element: sum of v[i] * 2^(51 i), limbs a little above 2^51 at most between carries. */
struct fe {
	uint64_t v[5];
};

static const uint64_t LIMB = ((uint64_t)1 << 51) - 1;

static uint64_t
load64(const uint8_t *p)
{
	uint64_t r = 0;

	for (int i = 7; i >= 0; i--)
		r = r << 8 | p[i];
	return r;
}

/* The low 255 bits of s, little-endian. */
static void
fe_frombytes(struct fe *h, const uint8_t s[32])
{
	h->v[0] = load64(s) & LIMB;
	h->v[1] = (load64(s + 6) >> 3) & LIMB;
	h->v[2] = (load64(s + 12) >> 6) & LIMB;
	h->v[3] = (load64(s + 19) >> 1) & LIMB;
	h->v[4] = (load64(s + 24) >> 12) & LIMB;
}

/*
 * h = the five 128-bit column sums t, carried down to limbs (2^255 folds
 * back as 19).  Inlined: the inversion's 265 products are most of the map.
 */
static inline __attribute__((always_inline)) void
fe_reduce(struct fe *h, u128 t[5])
{
	uint64_t c;

	for (int i = 0; i < 4; i++) {
		t[i + 1] += (uint64_t)(t[i] >> 51);
		h->v[i] = (uint64_t)t[i] & LIMB;
	}
	h->v[4] = (uint64_t)t[4] & LIMB;
	h->v[0] += (uint64_t)(t[4] >> 51) * 19;
	c = h->v[0] >> 51;
	h->v[0] &= LIMB;
	h->v[1] += c;
}

static void
fe_mul(struct fe *h, const struct fe *f, const struct fe *g)
{
	const uint64_t *a = f->v, *b = g->v;
	uint64_t b1 = b[1] * 19, b2 = b[2] * 19, b3 = b[3] * 19, b4 = b[4] * 19;
	u128 t[5];

	t[0] = (u128)a[0] * b[0] + (u128)a[1] * b4 + (u128)a[2] * b3 + (u128)a[3] * b2 +
	       (u128)a[4] * b1;
	t[1] = (u128)a[0] * b[1] + (u128)a[1] * b[0] + (u128)a[2] * b4 + (u128)a[3] * b3 +
	       (u128)a[4] * b2;
	t[2] = (u128)a[0] * b[2] + (u128)a[1] * b[1] + (u128)a[2] * b[0] + (u128)a[3] * b4 +
	       (u128)a[4] * b3;
	t[3] = (u128)a[0] * b[3] + (u128)a[1] * b[2] + (u128)a[2] * b[1] + (u128)a[3] * b[0] +
	       (u128)a[4] * b4;
	t[4] = (u128)a[0] * b[4] + (u128)a[1] * b[3] + (u128)a[2] * b[2] + (u128)a[3] * b[1] +
	       (u128)a[4] * b[0];
	fe_reduce(h, t);
}

/* h = f^(2^n): squarings share their cross products, so they are cheaper than fe_mul. */
static void
fe_sq_times(struct fe *h, const struct fe *f, int n)
{
	struct fe x = *f;
	u128 t[5];

	while (n-- > 0) {
		const uint64_t *a = x.v;
		uint64_t d0 = a[0] * 2, d1 = a[1] * 2, d2 = a[2] * 2 * 19, d3 = a[3] * 19,
		         d4 = a[4] * 19;

		t[0] = (u128)a[0] * a[0] + (u128)d1 * d4 + (u128)d2 * a[3];
		t[1] = (u128)d0 * a[1] + (u128)d2 * a[4] + (u128)a[3] * d3;
		t[2] = (u128)d0 * a[2] + (u128)a[1] * a[1] + (u128)(a[3] * 2) * d4;
		t[3] = (u128)d0 * a[3] + (u128)d1 * a[2] + (u128)a[4] * d4;
		t[4] = (u128)d0 * a[4] + (u128)d1 * a[3] + (u128)a[2] * a[2];
		fe_reduce(&x, t);
	}
	*h = x;
}

/* h = z^(p - 2) = 1/z (z nonzero), by ref10's chain of 254 squarings and 11 multiplications. */
static void
fe_invert(struct fe *h, const struct fe *z)
{
	struct fe t0, t1, t2, t3;

	fe_sq_times(&t0, z, 1);
	fe_sq_times(&t1, &t0, 2);
	fe_mul(&t1, z, &t1);
	fe_mul(&t0, &t0, &t1);
	fe_sq_times(&t2, &t0, 1);
	fe_mul(&t1, &t1, &t2);
	fe_sq_times(&t2, &t1, 5);
	fe_mul(&t1, &t2, &t1);
	fe_sq_times(&t2, &t1, 10);
	fe_mul(&t2, &t2, &t1);
	fe_sq_times(&t3, &t2, 20);
	fe_mul(&t2, &t3, &t2);
	fe_sq_times(&t2, &t2, 10);
	fe_mul(&t1, &t2, &t1);
	fe_sq_times(&t2, &t1, 50);
	fe_mul(&t2, &t2, &t1);
	fe_sq_times(&t3, &t2, 100);
	fe_mul(&t2, &t3, &t2);
	fe_sq_times(&t2, &t2, 50);
	fe_mul(&t1, &t2, &t1);
	fe_sq_times(&t1, &t1, 5);
	fe_mul(h, &t1, &t0);
}

/* Every limb below 2^51, the value below 2^255 (not yet below p). */
static void
fe_carry(struct fe *h)
{
	for (int round = 0; round < 2; round++) {
		for (int i = 0; i < 4; i++) {
			h->v[i + 1] += h->v[i] >> 51;
			h->v[i] &= LIMB;
		}
		h->v[0] += (h->v[4] >> 51) * 19;
		h->v[4] &= LIMB;
	}
}

/* The canonical 32-byte encoding of f (fully reduced below p). */
static void
fe_tobytes(uint8_t s[32], const struct fe *f)
{
	struct fe h = *f;
	uint64_t q, w[4];

	fe_carry(&h);
	/* q = 1 exactly when h >= p, that is when h + 19 reaches 2^255. */
	q = (h.v[0] + 19) >> 51;
	for (int i = 1; i < 5; i++)
		q = (h.v[i] + q) >> 51;
	h.v[0] += 19 * q;
	for (int i = 0; i < 4; i++) {
		h.v[i + 1] += h.v[i] >> 51;
		h.v[i] &= LIMB;
	}
	h.v[4] &= LIMB;
	w[0] = h.v[0] | h.v[1] << 51;
	w[1] = h.v[1] >> 13 | h.v[2] << 38;
	w[2] = h.v[2] >> 26 | h.v[3] << 25;
	w[3] = h.v[3] >> 39 | h.v[4] << 12;
	for (int i = 0; i < 32; i++)
		s[i] = (uint8_t)(w[i / 8] >> (8 * (i % 8)));
}

/* u = (1 + y) / (1 - y) for the Edwards point encoded in ed (y, and x's sign in the top bit). */
static void
edwards_to_montgomery(uint8_t u[NS_KEY_LEN], const uint8_t ed[NS_KEY_LEN])
{
	/* 2p, limb by limb: 1 - y + 2p keeps every limb positive. */
	static const uint64_t two_p[5] = {0xfffffffffffda, 0xffffffffffffe, 0xffffffffffffe,
	                                  0xffffffffffffe, 0xffffffffffffe};
	struct fe y, num, den;

	fe_frombytes(&y, ed);
	for (int i = 0; i < 5; i++) {
		num.v[i] = (i == 0) + y.v[i];
		den.v[i] = (i == 0) + two_p[i] - y.v[i];
	}
	fe_invert(&den, &den);
	fe_mul(&num, &num, &den);
	fe_tobytes(u, &num);
}

int
ns_x25519_public(uint8_t pub[NS_KEY_LEN], const uint8_t priv[NS_KEY_LEN])
{
	uint8_t scalar[NS_KEY_LEN], ed[NS_KEY_LEN];
	int ret = -1;

	/* X25519's clamping, which crypto_scalarmult_base applies itself. */
	memcpy(scalar, priv, NS_KEY_LEN);
	scalar[0] &= 248;
	scalar[31] &= 127;
	scalar[31] |= 64;
	if (crypto_scalarmult_ed25519_base_noclamp(ed, scalar) == 0) {
		edwards_to_montgomery(pub, ed);
		ret = 0;
	}
	sodium_memzero(scalar, sizeof(scalar));
	return ret;
}
