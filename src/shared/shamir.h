/* SPDX-License-Identifier: MIT */
#pragma once

/* Shamir secret sharing over GF(256) with a digest share, as the reference (PROTOCOL.md §6,
 * derived from SLIP-0039): polynomial 0x11B, log/exp tables with generator 3, the digest share
 * at x = 254, the secret at x = 255, shares at x = 0..n-1. */

#include <stddef.h>
#include <stdint.h>

#define SHAMIR_SHARES_MAX  16u
#define SHAMIR_SECRET_MIN  4u /* the digest length */
#define SHAMIR_DIGEST_X    254u
#define SHAMIR_SECRET_X    255u
#define SHAMIR_DIGEST_SIZE 4u

typedef struct ShamirShare {
        uint8_t x;
        const uint8_t *value; /* len bytes */
} ShamirShare;

/* Splits secret (len >= 4 bytes) into n shares, any k of which recover it, 1 <= k <= n <= 16.
 * *ret_shares is n * len bytes, share i at offset i * len, allocated with secret_alloc(); the
 * caller frees it with erase_and_free(*ret_shares, n * len). Random bytes come from random_bytes():
 * first the k-2 random shares in order, then R. With k == 1 every share is the secret. Returns 0,
 * -EINVAL, -ENOMEM or the error of random_bytes(). */
int shamir_split(const uint8_t *secret, size_t len, unsigned n, unsigned k, uint8_t **ret_shares);

/* Recovers the secret from n_shares >= k shares of len bytes with distinct x < 254 into
 * ret_secret (len bytes). When all the shares together fail the digest check and there are
 * spares, tries k-subsets; on success *ret_bad (if not NULL) has bit i set for each shares[i]
 * that is inconsistent with the recovered secret, else it is 0. With k == 1 there is no digest: the
 * shares must all be equal. ret_secret is written only on success. Returns 0, -EINVAL (bad
 * arguments, fewer than k or more than 16 shares, duplicate x), -EBADMSG (no subset passes the
 * digest check), -ENOMEM. */
int shamir_recover(const ShamirShare *shares, size_t n_shares, unsigned k, size_t len, uint8_t *ret_secret,
                   uint32_t *ret_bad);

/* The field arithmetic underneath, exposed so the tests can check it against its definition.
 * gf256_exp[i] = 3^i for i = 0..254; gf256_log is its inverse (gf256_log[0] is 0 and unused). */
extern const uint8_t gf256_exp[255];
extern const uint8_t gf256_log[256];
uint8_t gf256_mul(uint8_t a, uint8_t b);
/* b must not be 0. */
uint8_t gf256_div(uint8_t a, uint8_t b);
/* dst[i] ^= c * src[i] for i < len, in time independent of the contents of src and dst. */
void gf256_mul_add_row(uint8_t *dst, const uint8_t *src, size_t len, uint8_t c);
