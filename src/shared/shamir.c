/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <string.h>
#include <sys/uio.h>

#include "auth.h"
#include "random.h"
#include "secret.h"
#include "shamir.h"

/* Generated once from exp[0] = 1, exp[i+1] = exp[i] * 3 in GF(2^8) mod 0x11B; test-shamir checks
 * both tables against that definition. A literal table needs no lazy initialisation, so it is
 * safe to use from any thread. */
/* clang-format off */
const uint8_t gf256_exp[255] = {
        0x01, 0x03, 0x05, 0x0f, 0x11, 0x33, 0x55, 0xff, 0x1a, 0x2e, 0x72, 0x96, 0xa1, 0xf8, 0x13, 0x35,
        0x5f, 0xe1, 0x38, 0x48, 0xd8, 0x73, 0x95, 0xa4, 0xf7, 0x02, 0x06, 0x0a, 0x1e, 0x22, 0x66, 0xaa,
        0xe5, 0x34, 0x5c, 0xe4, 0x37, 0x59, 0xeb, 0x26, 0x6a, 0xbe, 0xd9, 0x70, 0x90, 0xab, 0xe6, 0x31,
        0x53, 0xf5, 0x04, 0x0c, 0x14, 0x3c, 0x44, 0xcc, 0x4f, 0xd1, 0x68, 0xb8, 0xd3, 0x6e, 0xb2, 0xcd,
        0x4c, 0xd4, 0x67, 0xa9, 0xe0, 0x3b, 0x4d, 0xd7, 0x62, 0xa6, 0xf1, 0x08, 0x18, 0x28, 0x78, 0x88,
        0x83, 0x9e, 0xb9, 0xd0, 0x6b, 0xbd, 0xdc, 0x7f, 0x81, 0x98, 0xb3, 0xce, 0x49, 0xdb, 0x76, 0x9a,
        0xb5, 0xc4, 0x57, 0xf9, 0x10, 0x30, 0x50, 0xf0, 0x0b, 0x1d, 0x27, 0x69, 0xbb, 0xd6, 0x61, 0xa3,
        0xfe, 0x19, 0x2b, 0x7d, 0x87, 0x92, 0xad, 0xec, 0x2f, 0x71, 0x93, 0xae, 0xe9, 0x20, 0x60, 0xa0,
        0xfb, 0x16, 0x3a, 0x4e, 0xd2, 0x6d, 0xb7, 0xc2, 0x5d, 0xe7, 0x32, 0x56, 0xfa, 0x15, 0x3f, 0x41,
        0xc3, 0x5e, 0xe2, 0x3d, 0x47, 0xc9, 0x40, 0xc0, 0x5b, 0xed, 0x2c, 0x74, 0x9c, 0xbf, 0xda, 0x75,
        0x9f, 0xba, 0xd5, 0x64, 0xac, 0xef, 0x2a, 0x7e, 0x82, 0x9d, 0xbc, 0xdf, 0x7a, 0x8e, 0x89, 0x80,
        0x9b, 0xb6, 0xc1, 0x58, 0xe8, 0x23, 0x65, 0xaf, 0xea, 0x25, 0x6f, 0xb1, 0xc8, 0x43, 0xc5, 0x54,
        0xfc, 0x1f, 0x21, 0x63, 0xa5, 0xf4, 0x07, 0x09, 0x1b, 0x2d, 0x77, 0x99, 0xb0, 0xcb, 0x46, 0xca,
        0x45, 0xcf, 0x4a, 0xde, 0x79, 0x8b, 0x86, 0x91, 0xa8, 0xe3, 0x3e, 0x42, 0xc6, 0x51, 0xf3, 0x0e,
        0x12, 0x36, 0x5a, 0xee, 0x29, 0x7b, 0x8d, 0x8c, 0x8f, 0x8a, 0x85, 0x94, 0xa7, 0xf2, 0x0d, 0x17,
        0x39, 0x4b, 0xdd, 0x7c, 0x84, 0x97, 0xa2, 0xfd, 0x1c, 0x24, 0x6c, 0xb4, 0xc7, 0x52, 0xf6,
};

const uint8_t gf256_log[256] = {
        0x00, 0x00, 0x19, 0x01, 0x32, 0x02, 0x1a, 0xc6, 0x4b, 0xc7, 0x1b, 0x68, 0x33, 0xee, 0xdf, 0x03,
        0x64, 0x04, 0xe0, 0x0e, 0x34, 0x8d, 0x81, 0xef, 0x4c, 0x71, 0x08, 0xc8, 0xf8, 0x69, 0x1c, 0xc1,
        0x7d, 0xc2, 0x1d, 0xb5, 0xf9, 0xb9, 0x27, 0x6a, 0x4d, 0xe4, 0xa6, 0x72, 0x9a, 0xc9, 0x09, 0x78,
        0x65, 0x2f, 0x8a, 0x05, 0x21, 0x0f, 0xe1, 0x24, 0x12, 0xf0, 0x82, 0x45, 0x35, 0x93, 0xda, 0x8e,
        0x96, 0x8f, 0xdb, 0xbd, 0x36, 0xd0, 0xce, 0x94, 0x13, 0x5c, 0xd2, 0xf1, 0x40, 0x46, 0x83, 0x38,
        0x66, 0xdd, 0xfd, 0x30, 0xbf, 0x06, 0x8b, 0x62, 0xb3, 0x25, 0xe2, 0x98, 0x22, 0x88, 0x91, 0x10,
        0x7e, 0x6e, 0x48, 0xc3, 0xa3, 0xb6, 0x1e, 0x42, 0x3a, 0x6b, 0x28, 0x54, 0xfa, 0x85, 0x3d, 0xba,
        0x2b, 0x79, 0x0a, 0x15, 0x9b, 0x9f, 0x5e, 0xca, 0x4e, 0xd4, 0xac, 0xe5, 0xf3, 0x73, 0xa7, 0x57,
        0xaf, 0x58, 0xa8, 0x50, 0xf4, 0xea, 0xd6, 0x74, 0x4f, 0xae, 0xe9, 0xd5, 0xe7, 0xe6, 0xad, 0xe8,
        0x2c, 0xd7, 0x75, 0x7a, 0xeb, 0x16, 0x0b, 0xf5, 0x59, 0xcb, 0x5f, 0xb0, 0x9c, 0xa9, 0x51, 0xa0,
        0x7f, 0x0c, 0xf6, 0x6f, 0x17, 0xc4, 0x49, 0xec, 0xd8, 0x43, 0x1f, 0x2d, 0xa4, 0x76, 0x7b, 0xb7,
        0xcc, 0xbb, 0x3e, 0x5a, 0xfb, 0x60, 0xb1, 0x86, 0x3b, 0x52, 0xa1, 0x6c, 0xaa, 0x55, 0x29, 0x9d,
        0x97, 0xb2, 0x87, 0x90, 0x61, 0xbe, 0xdc, 0xfc, 0xbc, 0x95, 0xcf, 0xcd, 0x37, 0x3f, 0x5b, 0xd1,
        0x53, 0x39, 0x84, 0x3c, 0x41, 0xa2, 0x6d, 0x47, 0x14, 0x2a, 0x9e, 0x5d, 0x56, 0xf2, 0xd3, 0xab,
        0x44, 0x11, 0x92, 0xd9, 0x23, 0x20, 0x2e, 0x89, 0xb4, 0x7c, 0xb8, 0x26, 0x77, 0x99, 0xe3, 0xa5,
        0x67, 0x4a, 0xed, 0xde, 0xc5, 0x31, 0xfe, 0x18, 0x0d, 0x63, 0x8c, 0x80, 0xc0, 0xf7, 0x70, 0x07,
};
/* clang-format on */

uint8_t gf256_mul(uint8_t a, uint8_t b) {
        if (a == 0 || b == 0)
                return 0;
        return gf256_exp[(gf256_log[a] + gf256_log[b]) % 255];
}

uint8_t gf256_div(uint8_t a, uint8_t b) {
        if (a == 0 || b == 0)
                return 0;
        return gf256_exp[(gf256_log[a] + 255 - gf256_log[b]) % 255];
}

static uint8_t gf256_xtime(uint8_t a) {
        return (uint8_t) ((a << 1) ^ ((uint8_t) - (a >> 7) & 0x1b));
}

/* The coefficient c only depends on x coordinates, which are public, but src holds share bytes:
 * indexing the log table with them would leak them through the cache. Multiplication by a fixed c
 * is linear over GF(2), so c * y is the XOR of c * x^j over the bits j set in y; doing that with
 * masks instead of branches or lookups keeps it constant-time, eight bytes per word. */
void gf256_mul_add_row(uint8_t *dst, const uint8_t *src, size_t len, uint8_t c) {
        const uint64_t lsb = UINT64_C(0x0101010101010101);
        uint64_t m[8];
        uint8_t t = c;
        size_t i = 0;

        for (unsigned j = 0; j < 8; j++) {
                m[j] = t * lsb;
                t = gf256_xtime(t);
        }

        for (; i + 8 <= len; i += 8) {
                uint64_t y, d, r = 0;

                memcpy(&y, src + i, 8);
                for (unsigned j = 0; j < 8; j++)
                        r ^= (((y >> j) & lsb) * 0xff) & m[j];
                memcpy(&d, dst + i, 8);
                d ^= r;
                memcpy(dst + i, &d, 8);
        }

        for (; i < len; i++) {
                uint8_t r = 0;

                for (unsigned j = 0; j < 8; j++)
                        r ^= (uint8_t) - ((src[i] >> j) & 1) & (uint8_t) m[j];
                dst[i] ^= r;
        }
}

/* ret[i] = prod_{j != i} (x - xs[j]) / (xs[i] - xs[j]), the Lagrange basis at x. The xs are
 * distinct. When x is one of them the basis is 1 there and 0 elsewhere, as it should be. */
static void lagrange_basis(const uint8_t *xs, size_t n, uint8_t x, uint8_t *ret) {
        for (size_t i = 0; i < n; i++) {
                uint8_t num = 1, den = 1;

                for (size_t j = 0; j < n; j++) {
                        if (j == i)
                                continue;
                        num = gf256_mul(num, x ^ xs[j]);
                        den = gf256_mul(den, xs[i] ^ xs[j]);
                }
                ret[i] = gf256_div(num, den);
        }
}

static void interpolate(const uint8_t *const *ys, const uint8_t *basis, size_t n, size_t len, uint8_t *ret) {
        memset(ret, 0, len);
        for (size_t i = 0; i < n; i++)
                gf256_mul_add_row(ret, ys[i], len, basis[i]);
}

static void digest_compute(const uint8_t *secret, size_t len, const uint8_t *r,
                           uint8_t ret[static SHAMIR_DIGEST_SIZE]) {
        uint8_t mac[32];

        hmac_sha256(r, len - SHAMIR_DIGEST_SIZE,
                    &(struct iovec){.iov_base = (void *) secret, .iov_len = len}, 1, mac);
        memcpy(ret, mac, SHAMIR_DIGEST_SIZE);
        explicit_bzero(mac, sizeof(mac));
}

static bool digest_check(const uint8_t *secret, const uint8_t *digest_share, size_t len) {
        uint8_t d[SHAMIR_DIGEST_SIZE];
        bool ok;

        digest_compute(secret, len, digest_share + SHAMIR_DIGEST_SIZE, d);
        ok = secret_equal(d, digest_share, SHAMIR_DIGEST_SIZE);
        explicit_bzero(d, sizeof(d));
        return ok;
}

int shamir_split(const uint8_t *secret, size_t len, unsigned n, unsigned k, uint8_t **ret_shares) {
        _cleanup_secret_ Secret shares = {}, digest_share = {};
        const uint8_t *ys[SHAMIR_SHARES_MAX];
        uint8_t xs[SHAMIR_SHARES_MAX], basis[SHAMIR_SHARES_MAX];
        size_t total;
        int r;

        if (!secret || !ret_shares)
                return -EINVAL;
        if (len < SHAMIR_SECRET_MIN || k < 1 || k > n || n > SHAMIR_SHARES_MAX)
                return -EINVAL;
        if (!size_mul(len, n, &total))
                return -EINVAL;

        shares.data = secret_alloc(total);
        if (!shares.data)
                return -ENOMEM;
        shares.size = total;

        if (k == 1) {
                for (unsigned x = 0; x < n; x++)
                        memcpy(shares.data + x * len, secret, len);
                *ret_shares = TAKE_PTR(shares.data);
                return 0;
        }

        /* The order of the random draws is part of the construction: the known-answer test forces
         * them. */
        for (unsigned x = 0; x < k - 2; x++) {
                r = random_bytes(shares.data + x * len, len);
                if (r < 0)
                        return r;
                xs[x] = (uint8_t) x;
                ys[x] = shares.data + x * len;
        }

        digest_share.data = secret_alloc(len);
        if (!digest_share.data)
                return -ENOMEM;
        digest_share.size = len;

        if (len > SHAMIR_DIGEST_SIZE) {
                r = random_bytes(digest_share.data + SHAMIR_DIGEST_SIZE, len - SHAMIR_DIGEST_SIZE);
                if (r < 0)
                        return r;
        }
        digest_compute(secret, len, digest_share.data + SHAMIR_DIGEST_SIZE, digest_share.data);

        xs[k - 2] = SHAMIR_DIGEST_X;
        ys[k - 2] = digest_share.data;
        xs[k - 1] = SHAMIR_SECRET_X;
        ys[k - 1] = secret;

        for (unsigned x = k - 2; x < n; x++) {
                lagrange_basis(xs, k, (uint8_t) x, basis);
                interpolate(ys, basis, k, len, shares.data + x * len);
        }

        *ret_shares = TAKE_PTR(shares.data);
        return 0;
}

/* Interpolates the secret and the digest share through the given points into secret and
 * digest_share (len bytes each) and says whether the digest matches. */
static bool recover_points(const uint8_t *xs, const uint8_t *const *ys, size_t n, size_t len,
                           uint8_t *secret, uint8_t *digest_share) {
        uint8_t basis[SHAMIR_SHARES_MAX];

        lagrange_basis(xs, n, SHAMIR_SECRET_X, basis);
        interpolate(ys, basis, n, len, secret);
        lagrange_basis(xs, n, SHAMIR_DIGEST_X, basis);
        interpolate(ys, basis, n, len, digest_share);
        return digest_check(secret, digest_share, len);
}

/* Advances idx (k ascending indices below n) to the next k-subset in lexicographic order. */
static bool subset_next(unsigned *idx, unsigned k, unsigned n) {
        unsigned i = k;

        while (i > 0 && idx[i - 1] == n - k + i - 1)
                i--;
        if (i == 0)
                return false;
        idx[i - 1]++;
        for (unsigned j = i; j < k; j++)
                idx[j] = idx[j - 1] + 1;
        return true;
}

static int recover_robust(const uint8_t *xs, const uint8_t *const *ys, unsigned n, unsigned k, size_t len,
                          uint8_t *secret, uint8_t *digest_share, uint8_t *check, uint32_t *ret_bad) {
        unsigned idx[SHAMIR_SHARES_MAX];
        const uint8_t *sub_ys[SHAMIR_SHARES_MAX];
        uint8_t sub_xs[SHAMIR_SHARES_MAX], basis[SHAMIR_SHARES_MAX];
        uint32_t in_subset = 0, bad = 0;

        for (unsigned i = 0; i < k; i++)
                idx[i] = i;

        for (;;) {
                for (unsigned i = 0; i < k; i++) {
                        sub_xs[i] = xs[idx[i]];
                        sub_ys[i] = ys[idx[i]];
                }
                if (recover_points(sub_xs, sub_ys, k, len, secret, digest_share))
                        break;
                if (!subset_next(idx, k, n))
                        return -EBADMSG;
        }

        for (unsigned i = 0; i < k; i++)
                in_subset |= UINT32_C(1) << idx[i];

        /* The good subset fixes the polynomial; every other share must lie on it. */
        for (unsigned i = 0; i < n; i++) {
                if (in_subset & (UINT32_C(1) << i))
                        continue;
                lagrange_basis(sub_xs, k, xs[i], basis);
                interpolate(sub_ys, basis, k, len, check);
                if (!secret_equal(check, ys[i], len))
                        bad |= UINT32_C(1) << i;
        }

        *ret_bad = bad;
        return 0;
}

int shamir_recover(const ShamirShare *shares, size_t n_shares, unsigned k, size_t len, uint8_t *ret_secret,
                   uint32_t *ret_bad) {
        _cleanup_secret_ Secret work = {};
        const uint8_t *ys[SHAMIR_SHARES_MAX];
        uint8_t xs[SHAMIR_SHARES_MAX], seen[256 / 8] = {};
        uint8_t *secret, *digest_share, *check;
        uint32_t bad = 0;

        if (!shares || !ret_secret)
                return -EINVAL;
        if (len < SHAMIR_SECRET_MIN || k < 1 || k > SHAMIR_SHARES_MAX || n_shares < k ||
            n_shares > SHAMIR_SHARES_MAX)
                return -EINVAL;

        for (size_t i = 0; i < n_shares; i++) {
                uint8_t x = shares[i].x;

                if (!shares[i].value || x >= SHAMIR_DIGEST_X)
                        return -EINVAL;
                if (seen[x / 8] & (1u << (x % 8)))
                        return -EINVAL;
                seen[x / 8] |= (uint8_t) (1u << (x % 8));
                xs[i] = x;
                ys[i] = shares[i].value;
        }

        if (k == 1) {
                /* Without a digest, disagreeing shares cannot be told apart. */
                for (size_t i = 1; i < n_shares; i++)
                        if (!secret_equal(ys[0], ys[i], len))
                                return -EBADMSG;
                memcpy(ret_secret, ys[0], len);
                if (ret_bad)
                        *ret_bad = 0;
                return 0;
        }

        if (!size_mul(len, 3, &work.size))
                return -EINVAL;
        work.data = secret_alloc(work.size);
        if (!work.data)
                return -ENOMEM;
        secret = work.data;
        digest_share = work.data + len;
        check = work.data + 2 * len;

        /* With all shares consistent the polynomial through all of them is the one of degree k-1,
         * so the common case costs one interpolation. */
        if (!recover_points(xs, ys, n_shares, len, secret, digest_share)) {
                int r;

                if (n_shares == k)
                        return -EBADMSG;
                r = recover_robust(xs, ys, (unsigned) n_shares, k, len, secret, digest_share, check, &bad);
                if (r < 0)
                        return r;
        }

        memcpy(ret_secret, secret, len);
        if (ret_bad)
                *ret_bad = bad;
        return 0;
}
