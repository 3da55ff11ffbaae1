/* SPDX-License-Identifier: MIT */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "macro.h"
#include "random.h"
#include "secret.h"
#include "shamir.h"

/* Random bytes served from a fixed buffer, so that split is reproducible. */
typedef struct ForcedRandom {
        const uint8_t *data;
        size_t size;
        size_t offset;
} ForcedRandom;

static int forced_random(void *p, size_t n, void *userdata) {
        ForcedRandom *f = userdata;

        assert_true(n <= f->size - f->offset);
        memcpy(p, f->data + f->offset, n);
        f->offset += n;
        return 0;
}

/* xorshift64*, a deterministic stream for test data and for split's randomness. */
static uint64_t prng_state;

static uint64_t prng_next(void) {
        prng_state ^= prng_state >> 12;
        prng_state ^= prng_state << 25;
        prng_state ^= prng_state >> 27;
        return prng_state * UINT64_C(2685821657736338717);
}

static void prng_fill(void *p, size_t n) {
        uint8_t *q = p;

        for (size_t i = 0; i < n; i++)
                q[i] = (uint8_t) (prng_next() >> 56);
}

static int prng_random(void *p, size_t n, void *userdata) {
        prng_fill(p, n);
        return 0;
}

static int failing_random(void *p, size_t n, void *userdata) {
        return -EIO;
}

static int setup_prng(void **state) {
        prng_state = UINT64_C(0x9e3779b97f4a7c15);
        random_set_hook(prng_random, NULL);
        return 0;
}

static int teardown_random(void **state) {
        random_set_hook(NULL, NULL);
        return 0;
}

/* The field's definition, bit by bit, to check the tables and the fast paths against. */
static uint8_t slow_mul(uint8_t a, uint8_t b) {
        unsigned r = 0, aa = a;

        for (unsigned i = 0; i < 8; i++) {
                if (b & (1u << i))
                        r ^= aa;
                aa <<= 1;
                if (aa & 0x100)
                        aa ^= 0x11b;
        }
        return (uint8_t) r;
}

static void test_gf256_tables(void **state) {
        static const uint8_t exp_1_8[] = {3, 5, 15, 17, 51, 85, 255, 26};
        bool seen[256] = {};
        uint8_t e = 1;

        for (unsigned i = 0; i < 255; i++) {
                assert_int_equal(gf256_exp[i], e);
                assert_false(seen[e]);
                seen[e] = true;
                assert_int_equal(gf256_log[e], i);
                e = slow_mul(e, 3);
        }
        assert_int_equal(e, 1);
        assert_int_equal(gf256_log[0], 0);

        assert_memory_equal(gf256_exp + 1, exp_1_8, sizeof(exp_1_8));
        assert_int_equal(gf256_exp[254], 246);
        assert_int_equal(gf256_log[2], 25);
        assert_int_equal(gf256_log[3], 1);
}

static void test_gf256_mul_div(void **state) {
        for (unsigned a = 0; a < 256; a++)
                for (unsigned b = 0; b < 256; b++) {
                        uint8_t p = gf256_mul((uint8_t) a, (uint8_t) b);

                        assert_int_equal(p, slow_mul((uint8_t) a, (uint8_t) b));
                        if (b != 0)
                                assert_int_equal(gf256_div(p, (uint8_t) b), a);
                }
}

static void test_gf256_mul_add_row(void **state) {
        /* Odd offsets and a length that is not a multiple of 8 cover the unaligned word loads
         * and the byte-wise tail. */
        uint8_t src[256 + 8], dst[256 + 8], orig[256 + 8];

        for (unsigned i = 0; i < 256; i++)
                src[3 + i] = (uint8_t) i;

        for (unsigned c = 0; c < 256; c++)
                for (size_t len = 250; len <= 256; len += 3) {
                        prng_fill(dst, sizeof(dst));
                        memcpy(orig, dst, sizeof(dst));

                        gf256_mul_add_row(dst + 1, src + 3, len, (uint8_t) c);

                        assert_int_equal(dst[0], orig[0]);
                        for (size_t i = 0; i < len; i++)
                                assert_int_equal(dst[1 + i],
                                                 orig[1 + i] ^ slow_mul((uint8_t) c, src[3 + i]));
                        for (size_t i = 1 + len; i < sizeof(dst); i++)
                                assert_int_equal(dst[i], orig[i]);
                }
}

/* PROTOCOL.md §6.6 */
static const uint8_t vector_secret[16] = {0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07,
                                          0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f};
static const uint8_t vector_random[16 + 12] = {
        0xa0, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8, 0xa9, 0xaa, 0xab, 0xac, 0xad,
        0xae, 0xaf, 0xb0, 0xb1, 0xb2, 0xb3, 0xb4, 0xb5, 0xb6, 0xb7, 0xb8, 0xb9, 0xba, 0xbb,
};
static const uint8_t vector_shares[5][16] = {
        {0xa0, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8, 0xa9, 0xaa, 0xab, 0xac, 0xad, 0xae, 0xaf},
        {0xdc, 0x83, 0xe3, 0x86, 0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x1b},
        {0xbb, 0xbe, 0xad, 0x4c, 0x64, 0x65, 0x66, 0x67, 0xfc, 0xfd, 0xfe, 0xff, 0x6c, 0x6d, 0x6e, 0x6f},
        {0xc7, 0x9c, 0xec, 0x69, 0xd0, 0xd1, 0xd2, 0xd3, 0x40, 0x41, 0x42, 0x43, 0xd8, 0xd9, 0xda, 0xdb},
        {0x37, 0xe8, 0xbe, 0xc4, 0xc5, 0xc4, 0xc7, 0xc6, 0xdc, 0xdd, 0xde, 0xdf, 0xcd, 0xcc, 0xcf, 0xce},
};
static const uint8_t vector_digest_share[16] = {0x7c, 0x23, 0x43, 0x26, 0xb0, 0xb1, 0xb2, 0xb3,
                                                0xb4, 0xb5, 0xb6, 0xb7, 0xb8, 0xb9, 0xba, 0xbb};

/* Lagrange interpolation written straight from the definition, independent of shamir.c. */
static void slow_interpolate(const uint8_t *xs, const uint8_t *const *ys, size_t n, size_t len, uint8_t x,
                             uint8_t *ret) {
        memset(ret, 0, len);
        for (size_t i = 0; i < n; i++) {
                uint8_t num = 1, den = 1, l;

                for (size_t j = 0; j < n; j++)
                        if (j != i) {
                                num = slow_mul(num, x ^ xs[j]);
                                den = slow_mul(den, xs[i] ^ xs[j]);
                        }
                l = 0;
                for (unsigned c = 1; c < 256; c++)
                        if (slow_mul((uint8_t) c, den) == num) {
                                l = (uint8_t) c;
                                break;
                        }
                for (size_t b = 0; b < len; b++)
                        ret[b] ^= slow_mul(l, ys[i][b]);
        }
}

static void test_vector_split(void **state) {
        ForcedRandom f = {.data = vector_random, .size = sizeof(vector_random)};
        uint8_t *shares = NULL, digest_share[16];
        const uint8_t *ys[5];
        const uint8_t xs[5] = {0, 1, 2, 3, 4};

        random_set_hook(forced_random, &f);
        assert_int_equal(shamir_split(vector_secret, 16, 5, 3, &shares), 0);
        random_set_hook(NULL, NULL);
        assert_int_equal(f.offset, sizeof(vector_random));

        for (unsigned i = 0; i < 5; i++) {
                assert_memory_equal(shares + i * 16, vector_shares[i], 16);
                ys[i] = shares + i * 16;
        }

        slow_interpolate(xs, ys, 3, 16, 254, digest_share);
        assert_memory_equal(digest_share, vector_digest_share, 16);
        slow_interpolate(xs + 2, ys + 2, 3, 16, 254, digest_share);
        assert_memory_equal(digest_share, vector_digest_share, 16);

        erase_and_free(shares, 5 * 16);
}

static void recover_vector_subset(const unsigned *idx, size_t n) {
        ShamirShare s[5];
        uint8_t secret[16];
        uint32_t bad = UINT32_MAX;

        for (size_t i = 0; i < n; i++)
                s[i] = (ShamirShare){.x = (uint8_t) idx[i], .value = vector_shares[idx[i]]};

        memset(secret, 0x55, sizeof(secret));
        assert_int_equal(shamir_recover(s, n, 3, 16, secret, &bad), 0);
        assert_memory_equal(secret, vector_secret, 16);
        assert_int_equal(bad, 0);
}

static void test_vector_recover(void **state) {
        unsigned idx[5], n_three = 0, n_four = 0;

        for (unsigned a = 0; a < 5; a++)
                for (unsigned b = a + 1; b < 5; b++)
                        for (unsigned c = b + 1; c < 5; c++) {
                                recover_vector_subset((unsigned[]){a, b, c}, 3);
                                /* The order of the shares must not matter. */
                                recover_vector_subset((unsigned[]){c, a, b}, 3);
                                n_three++;
                                for (unsigned d = c + 1; d < 5; d++) {
                                        recover_vector_subset((unsigned[]){a, b, c, d}, 4);
                                        recover_vector_subset((unsigned[]){d, b, a, c}, 4);
                                        n_four++;
                                }
                        }
        assert_int_equal(n_three, 10);
        assert_int_equal(n_four, 5);

        for (unsigned i = 0; i < 5; i++)
                idx[i] = i;
        recover_vector_subset(idx, 5);
}

static void test_vector_bit_flip(void **state) {
        uint8_t corrupted[16], secret[16];
        uint32_t bad = 0x1234;
        ShamirShare s[3] = {
                {.x = 0, .value = vector_shares[0]},
                {.x = 1, .value = corrupted},
                {.x = 2, .value = vector_shares[2]},
        };

        memcpy(corrupted, vector_shares[1], 16);
        corrupted[5] ^= 0x10;

        memset(secret, 0x55, sizeof(secret));
        assert_int_equal(shamir_recover(s, 3, 3, 16, secret, &bad), -EBADMSG);
        /* Out parameters stay untouched on failure. */
        for (size_t i = 0; i < sizeof(secret); i++)
                assert_int_equal(secret[i], 0x55);
        assert_int_equal(bad, 0x1234);
}

static void test_vector_too_few(void **state) {
        uint8_t secret[16];
        ShamirShare s[2] = {
                {.x = 0, .value = vector_shares[0]},
                {.x = 3, .value = vector_shares[3]},
        };

        assert_int_equal(shamir_recover(s, 2, 3, 16, secret, NULL), -EINVAL);
        assert_int_equal(shamir_recover(s, 0, 3, 16, secret, NULL), -EINVAL);
}

static void test_vector_one_corrupted(void **state) {
        for (unsigned bad_i = 0; bad_i < 5; bad_i++)
                for (unsigned reverse = 0; reverse < 2; reverse++) {
                        uint8_t corrupted[16], secret[16];
                        ShamirShare s[5];
                        uint32_t bad = UINT32_MAX;
                        unsigned pos = 0;

                        memcpy(corrupted, vector_shares[bad_i], 16);
                        corrupted[15 - bad_i] ^= 0x80;

                        for (unsigned i = 0; i < 5; i++) {
                                unsigned x = reverse ? 4 - i : i;

                                s[i] = (ShamirShare){.x = (uint8_t) x,
                                                     .value = x == bad_i ? corrupted : vector_shares[x]};
                                if (x == bad_i)
                                        pos = i;
                        }

                        assert_int_equal(shamir_recover(s, 5, 3, 16, secret, &bad), 0);
                        assert_memory_equal(secret, vector_secret, 16);
                        /* Bits name positions in the array, not x coordinates. */
                        assert_int_equal(bad, UINT32_C(1) << pos);

                        assert_int_equal(shamir_recover(s, 5, 3, 16, secret, NULL), 0);
                        assert_memory_equal(secret, vector_secret, 16);
                }
}

static void test_split_invalid(void **state) {
        uint8_t secret[32] = {}, *shares = (uint8_t *) &shares;

        assert_int_equal(shamir_split(secret, 3, 5, 3, &shares), -EINVAL);
        assert_int_equal(shamir_split(secret, 0, 5, 3, &shares), -EINVAL);
        assert_int_equal(shamir_split(secret, 16, 5, 0, &shares), -EINVAL);
        assert_int_equal(shamir_split(secret, 16, 5, 6, &shares), -EINVAL);
        assert_int_equal(shamir_split(secret, 16, 17, 3, &shares), -EINVAL);
        assert_int_equal(shamir_split(secret, 16, 0, 0, &shares), -EINVAL);
        assert_int_equal(shamir_split(NULL, 16, 5, 3, &shares), -EINVAL);
        assert_int_equal(shamir_split(secret, 16, 5, 3, NULL), -EINVAL);
        assert_int_equal(shamir_split(secret, SIZE_MAX / 2, 5, 3, &shares), -EINVAL);
        assert_ptr_equal(shares, (uint8_t *) &shares);
}

static void test_split_random_failure(void **state) {
        uint8_t secret[32] = {}, *shares = (uint8_t *) &shares;

        random_set_hook(failing_random, NULL);
        assert_int_equal(shamir_split(secret, 32, 5, 3, &shares), -EIO);
        assert_int_equal(shamir_split(secret, 32, 5, 2, &shares), -EIO);
        random_set_hook(NULL, NULL);
        assert_ptr_equal(shares, (uint8_t *) &shares);
}

static void test_recover_invalid(void **state) {
        static const uint8_t v[4][8] = {};
        uint8_t secret[8];
        ShamirShare s[17];

        for (unsigned i = 0; i < 4; i++)
                s[i] = (ShamirShare){.x = (uint8_t) i, .value = v[i]};

        assert_int_equal(shamir_recover(s, 3, 3, 3, secret, NULL), -EINVAL);
        assert_int_equal(shamir_recover(s, 3, 0, 8, secret, NULL), -EINVAL);
        assert_int_equal(shamir_recover(s, 3, 17, 8, secret, NULL), -EINVAL);
        assert_int_equal(shamir_recover(NULL, 3, 3, 8, secret, NULL), -EINVAL);
        assert_int_equal(shamir_recover(s, 3, 3, 8, NULL, NULL), -EINVAL);

        s[2].x = 0;
        assert_int_equal(shamir_recover(s, 3, 3, 8, secret, NULL), -EINVAL);
        s[2].x = 254;
        assert_int_equal(shamir_recover(s, 3, 3, 8, secret, NULL), -EINVAL);
        s[2].x = 255;
        assert_int_equal(shamir_recover(s, 3, 3, 8, secret, NULL), -EINVAL);
        s[2] = (ShamirShare){.x = 2, .value = NULL};
        assert_int_equal(shamir_recover(s, 3, 3, 8, secret, NULL), -EINVAL);

        for (unsigned i = 0; i < 17; i++)
                s[i] = (ShamirShare){.x = (uint8_t) i, .value = v[0]};
        assert_int_equal(shamir_recover(s, 17, 3, 8, secret, NULL), -EINVAL);
}

static void test_k1(void **state) {
        uint8_t secret[20], out[20], *shares = NULL;
        ShamirShare s[4];
        uint32_t bad = UINT32_MAX;

        prng_fill(secret, sizeof(secret));
        random_set_hook(failing_random, NULL);
        assert_int_equal(shamir_split(secret, sizeof(secret), 4, 1, &shares), 0);
        random_set_hook(prng_random, NULL);

        for (unsigned i = 0; i < 4; i++) {
                assert_memory_equal(shares + i * sizeof(secret), secret, sizeof(secret));
                s[i] = (ShamirShare){.x = (uint8_t) i, .value = shares + i * sizeof(secret)};
        }

        assert_int_equal(shamir_recover(s + 2, 1, 1, sizeof(secret), out, &bad), 0);
        assert_memory_equal(out, secret, sizeof(secret));
        assert_int_equal(bad, 0);
        assert_int_equal(shamir_recover(s, 4, 1, sizeof(secret), out, NULL), 0);
        assert_memory_equal(out, secret, sizeof(secret));

        shares[3 * sizeof(secret)] ^= 1;
        assert_int_equal(shamir_recover(s, 4, 1, sizeof(secret), out, NULL), -EBADMSG);

        erase_and_free(shares, 4 * sizeof(secret));
}

/* Picks m distinct indices below n in random order. */
static void pick(unsigned *ret, unsigned m, unsigned n) {
        unsigned perm[SHAMIR_SHARES_MAX] = {};

        for (unsigned i = 0; i < n; i++)
                perm[i] = i;
        for (unsigned i = n - 1; i > 0; i--) {
                unsigned j = (unsigned) (prng_next() % (i + 1)), t = perm[i];

                perm[i] = perm[j];
                perm[j] = t;
        }
        memcpy(ret, perm, m * sizeof(unsigned));
}

static void test_round_trips(void **state) {
        static const size_t lens[] = {4, 5, 7, 8, 16, 31, 32, 33, 64};

        for (unsigned n = 1; n <= SHAMIR_SHARES_MAX; n++)
                for (unsigned k = 1; k <= n; k++)
                        for (size_t l = 0; l < ELEMENTSOF(lens); l++) {
                                size_t len = lens[l];
                                uint8_t secret[64], out[64], *shares = NULL;
                                ShamirShare s[SHAMIR_SHARES_MAX];
                                unsigned idx[SHAMIR_SHARES_MAX], m;
                                uint32_t bad = UINT32_MAX;

                                prng_fill(secret, len);
                                assert_int_equal(shamir_split(secret, len, n, k, &shares), 0);

                                /* Any m >= k of the shares, in any order. */
                                m = k + (unsigned) (prng_next() % (n - k + 1));
                                pick(idx, m, n);
                                for (unsigned i = 0; i < m; i++)
                                        s[i] = (ShamirShare){.x = (uint8_t) idx[i],
                                                             .value = shares + idx[i] * len};
                                assert_int_equal(shamir_recover(s, m, k, len, out, &bad), 0);
                                assert_memory_equal(out, secret, len);
                                assert_int_equal(bad, 0);

                                if (k > 1) {
                                        /* k - 1 shares must not be accepted; with k of them
                                         * one byte changed the digest must catch it. */
                                        assert_int_equal(shamir_recover(s, k - 1, k, len, out, NULL),
                                                         -EINVAL);
                                        shares[idx[0] * len + len - 1] ^= 0x01;
                                        assert_int_equal(shamir_recover(s, k, k, len, out, NULL), -EBADMSG);
                                }

                                erase_and_free(shares, n * len);
                        }
}

/* Corrupts the shares at positions in mask, each with a different non-zero change. */
static void corrupt(uint8_t *shares, size_t len, uint32_t mask) {
        for (unsigned i = 0; i < 32; i++)
                if (mask & (UINT32_C(1) << i))
                        shares[i * len + prng_next() % len] ^= (uint8_t) (1 + prng_next() % 255);
}

static uint32_t random_mask(unsigned m, unsigned n) {
        unsigned idx[SHAMIR_SHARES_MAX];
        uint32_t mask = 0;

        pick(idx, m, n);
        for (unsigned i = 0; i < m; i++)
                mask |= UINT32_C(1) << idx[i];
        return mask;
}

static void check_robust(unsigned n, unsigned k, size_t len, unsigned n_bad) {
        uint8_t secret[64], out[64], *shares = NULL;
        ShamirShare s[SHAMIR_SHARES_MAX];
        uint32_t mask, bad = UINT32_MAX;

        prng_fill(secret, len);
        assert_int_equal(shamir_split(secret, len, n, k, &shares), 0);
        mask = random_mask(n_bad, n);
        corrupt(shares, len, mask);

        for (unsigned i = 0; i < n; i++)
                s[i] = (ShamirShare){.x = (uint8_t) i, .value = shares + i * len};

        memset(out, 0x55, sizeof(out));
        if (n_bad <= n - k) {
                assert_int_equal(shamir_recover(s, n, k, len, out, &bad), 0);
                assert_memory_equal(out, secret, len);
                assert_int_equal(bad, mask);
        } else {
                assert_int_equal(shamir_recover(s, n, k, len, out, &bad), -EBADMSG);
                assert_int_equal(bad, UINT32_MAX);
                for (size_t i = 0; i < sizeof(out); i++)
                        assert_int_equal(out[i], 0x55);
        }

        erase_and_free(shares, n * len);
}

static void test_robust_16_8(void **state) {
        /* Up to n - k corrupted shares are found and named; one more defeats every subset, which
         * is also the worst case for the search (all C(16,8) = 12870 subsets tried). */
        for (unsigned n_bad = 1; n_bad <= 8; n_bad++)
                check_robust(16, 8, 32, n_bad);
        check_robust(16, 8, 32, 9);
        check_robust(16, 8, 64, 8);
}

static void test_robust_various(void **state) {
        for (unsigned n = 3; n <= SHAMIR_SHARES_MAX; n++)
                for (unsigned k = 2; k < n; k++)
                        for (unsigned n_bad = 1; n_bad <= n - k && n_bad <= 3; n_bad++)
                                check_robust(n, k, 4 + (size_t) (prng_next() % 40), n_bad);

        check_robust(5, 3, 16, 3);
        check_robust(4, 2, 4, 3);
}

static void test_robust_partial_set(void **state) {
        /* 12 of 16 shares arrive, k = 8, 4 of those are bad. */
        uint8_t secret[32], out[32], *shares = NULL;
        ShamirShare s[12];
        unsigned idx[12];
        uint32_t bad = 0, expected = 0;

        prng_fill(secret, sizeof(secret));
        assert_int_equal(shamir_split(secret, sizeof(secret), 16, 8, &shares), 0);
        pick(idx, 12, 16);
        for (unsigned i = 0; i < 12; i++)
                s[i] = (ShamirShare){.x = (uint8_t) idx[i], .value = shares + idx[i] * sizeof(secret)};
        for (unsigned i = 1; i < 12; i += 3) {
                shares[idx[i] * sizeof(secret) + i] ^= 0xa5;
                expected |= UINT32_C(1) << i;
        }

        assert_int_equal(shamir_recover(s, 12, 8, sizeof(secret), out, &bad), 0);
        assert_memory_equal(out, secret, sizeof(secret));
        assert_int_equal(bad, expected);

        erase_and_free(shares, 16 * sizeof(secret));
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_gf256_tables),
                cmocka_unit_test(test_gf256_mul_div),
                cmocka_unit_test_setup_teardown(test_gf256_mul_add_row, setup_prng, teardown_random),
                cmocka_unit_test(test_vector_split),
                cmocka_unit_test(test_vector_recover),
                cmocka_unit_test(test_vector_bit_flip),
                cmocka_unit_test(test_vector_too_few),
                cmocka_unit_test(test_vector_one_corrupted),
                cmocka_unit_test(test_split_invalid),
                cmocka_unit_test(test_split_random_failure),
                cmocka_unit_test(test_recover_invalid),
                cmocka_unit_test_setup_teardown(test_k1, setup_prng, teardown_random),
                cmocka_unit_test_setup_teardown(test_round_trips, setup_prng, teardown_random),
                cmocka_unit_test_setup_teardown(test_robust_16_8, setup_prng, teardown_random),
                cmocka_unit_test_setup_teardown(test_robust_various, setup_prng, teardown_random),
                cmocka_unit_test_setup_teardown(test_robust_partial_set, setup_prng, teardown_random),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
