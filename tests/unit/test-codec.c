/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <uuid/uuid.h>

#include "codec.h"
#include "crc32.h"
#include "macro.h"
#include "random.h"
#include "secret.h"

/* RFC 4648 §10. */
static const struct {
        const char *plain;
        const char *encoded;
} rfc4648_vectors[] = {
        {"", ""},
        {"f", "Zg=="},
        {"fo", "Zm8="},
        {"foo", "Zm9v"},
        {"foob", "Zm9vYg=="},
        {"fooba", "Zm9vYmE="},
        {"foobar", "Zm9vYmFy"},
};

static void test_base64_rfc4648(void **state) {
        for (size_t i = 0; i < ELEMENTSOF(rfc4648_vectors); i++) {
                const char *plain = rfc4648_vectors[i].plain, *encoded = rfc4648_vectors[i].encoded;
                _cleanup_free_ char *s = NULL;
                uint8_t *d = NULL;
                size_t n = SIZE_MAX;

                assert_int_equal(base64_encode(plain, strlen(plain), &s), 0);
                assert_string_equal(s, encoded);
                assert_int_equal(base64_encoded_length(strlen(plain)), strlen(encoded));

                assert_int_equal(base64_decode(encoded, strlen(encoded), &d, &n), 0);
                assert_non_null(d);
                assert_int_equal(n, strlen(plain));
                assert_memory_equal(d, plain, n);
                erase_and_free(d, n);
        }
}

static void test_base64_all_bytes(void **state) {
        uint8_t in[256];

        for (size_t i = 0; i < sizeof(in); i++)
                in[i] = (uint8_t) (255 - i);

        /* Every length from 0 to 256 exercises each padding case and the full alphabet. */
        for (size_t l = 0; l <= sizeof(in); l++) {
                _cleanup_free_ char *s = NULL;
                uint8_t *d = NULL;
                size_t n;

                assert_int_equal(base64_encode(in, l, &s), 0);
                assert_int_equal(strlen(s), base64_encoded_length(l));
                assert_int_equal(base64_decode(s, strlen(s), &d, &n), 0);
                assert_int_equal(n, l);
                if (l > 0)
                        assert_memory_equal(d, in, l);
                erase_and_free(d, n);
        }
}

static void test_base64_mac_vector(void **state) {
        /* The 32-byte MAC of PROTOCOL.md §4.3 decodes and re-encodes to the same 44 characters. */
        const char *mac = "2gSpqpwuZ+AGd0MbrkngOqY+qPEcHe/lNfU/NhFnTac=";
        _cleanup_free_ char *s = NULL;
        uint8_t *d = NULL;
        size_t n;

        assert_int_equal(base64_decode(mac, strlen(mac), &d, &n), 0);
        assert_int_equal(n, 32);
        assert_int_equal(d[0], 0xda);
        assert_int_equal(base64_encode(d, n, &s), 0);
        assert_string_equal(s, mac);
        erase_and_free(d, n);
}

static void test_base64_malformed(void **state) {
        static const char *const bad[] = {
                "Zg",         /* missing padding */
                "Zg=",        /* short padding */
                "Zg===",      /* too much padding, length not a multiple of 4 */
                "Z===",       /* three padding characters */
                "====",       /* padding only */
                "Zm9v====",   /* a whole group of padding */
                "Zg==Zg==",   /* padding in the middle */
                "Z=g=",       /* padding before data */
                "Zh==",       /* non-zero bits discarded by the padding */
                "Zm9=",       /* same, one padding character */
                "Zm 9v",      /* whitespace */
                "Zm9v\n",     /* trailing newline */
                " Zm9v",      /* leading space */
                "Zm9v\tYmFy", /* tab */
                "Zm-v",       /* base64url alphabet */
                "Zm_v",       /* base64url alphabet */
                "Zm9",        /* length 3 */
                "Z",          /* length 1 */
                "Zm9v!A==",   /* punctuation */
                "Zm\xc3\xa9", /* non-ASCII */
                "=Zg=",       /* leading padding */
        };

        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                uint8_t *d = (uint8_t *) 0x1;
                size_t n = 4242;

                assert_int_equal(base64_decode(bad[i], strlen(bad[i]), &d, &n), -EINVAL);
                /* Out parameters are untouched on failure. */
                assert_ptr_equal(d, (uint8_t *) 0x1);
                assert_int_equal(n, 4242);
        }

        /* An embedded NUL is outside the alphabet too. */
        {
                uint8_t *d = NULL;
                size_t n;
                assert_int_equal(base64_decode("Zm\0v", 4, &d, &n), -EINVAL);
                assert_null(d);
        }
}

/* The 6-bit value of c, or -1: the alphabet spelled out, as a reference for the decoder. */
static int reference_value(unsigned char c) {
        static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        const char *p = c != 0 ? memchr(alphabet, c, 64) : NULL;

        return p ? (int) (p - alphabet) : -1;
}

static void test_base64_every_byte(void **state) {
        /* Each byte value at each position of a full group, of a group with one padding character and
         * of a group with two, in the middle of a text and at its end: accepted exactly when it is in
         * the alphabet (and leaves the bits the padding discards zero), with the value it stands for. */
        static const char *const templates[] = {"QUJDREVG", "QUJDREU=", "QUJDRA=="};

        for (size_t t = 0; t < ELEMENTSOF(templates); t++)
                for (size_t pos = 0; pos < 8; pos++)
                        for (unsigned c = 0; c < 256; c++) {
                                char text[9];
                                uint8_t out[6], expect[6];
                                size_t n_pad = t, n = 4242, m = 0;
                                int v = reference_value((unsigned char) c), r;
                                bool ok;

                                if (pos >= 8 - n_pad)
                                        continue;
                                memcpy(text, templates[t], sizeof(text));
                                text[pos] = (char) c;

                                /* Expected bytes, from the reference alphabet. */
                                ok = v >= 0;
                                if (ok) {
                                        uint64_t bits = 0;

                                        for (size_t i = 0; i < 8 - n_pad; i++)
                                                bits = bits << 6 |
                                                       (uint64_t) reference_value((unsigned char) text[i]);
                                        /* The padding discards the low 2 (one '=') or 4 (two) bits;
                                         * they must be zero. */
                                        if ((bits & ((UINT64_C(1) << (2 * n_pad)) - 1)) != 0)
                                                ok = false;
                                        bits >>= 2 * n_pad;
                                        m = 6 - n_pad;
                                        for (size_t i = 0; i < m; i++)
                                                expect[i] = (uint8_t) (bits >> (8 * (m - 1 - i)));
                                }

                                memset(out, 0xaa, sizeof(out));
                                r = base64_decode_into(text, 8, out, sizeof(out), &n);
                                if (!ok) {
                                        assert_int_equal(r, -EINVAL);
                                        assert_int_equal(n, 4242);
                                        continue;
                                }
                                assert_int_equal(r, 0);
                                assert_int_equal(n, m);
                                assert_memory_equal(out, expect, m);
                        }
}

static void test_base64_decode_into(void **state) {
        uint8_t buf[8], zero[8] = {};
        size_t n = 4242;

        /* Too small a buffer is -ENOBUFS for good text, -EINVAL for bad text, and leaves it alone. */
        memset(buf, 0xaa, sizeof(buf));
        assert_int_equal(base64_decode_into("Zm9vYmFy", 8, buf, 5, &n), -ENOBUFS);
        assert_int_equal(base64_decode_into("Zm9vYm!y", 8, buf, 5, &n), -EINVAL);
        assert_int_equal(base64_decode_into("Zm9vYh==", 8, buf, 3, &n), -EINVAL);
        assert_int_equal(base64_decode_into("Zm9vYg==", 8, buf, 3, &n), -ENOBUFS);
        assert_int_equal(n, 4242);
        assert_int_equal(buf[0], 0xaa);

        /* Text that goes wrong late leaves no decoded byte behind. */
        assert_int_equal(base64_decode_into("Zm9vYm!y", 8, buf, sizeof(buf), &n), -EINVAL);
        assert_memory_equal(buf, zero, 6);
        assert_int_equal(buf[6], 0xaa);
        assert_int_equal(n, 4242);

        /* A long text is decoded in runs: a bad character is caught in any of them, and in the last
         * group, whatever came before. */
        {
                uint8_t in[768], out[768];
                _cleanup_free_ char *text = NULL;
                size_t l;

                for (size_t i = 0; i < sizeof(in); i++)
                        in[i] = (uint8_t) (i * 7);
                assert_int_equal(base64_encode(in, sizeof(in), &text), 0);
                l = strlen(text);
                assert_int_equal(base64_decode_into(text, l, out, sizeof(out), &n), 0);
                assert_int_equal(n, sizeof(in));
                assert_memory_equal(out, in, sizeof(in));
                for (size_t pos = 0; pos < l; pos += 13) {
                        char saved = text[pos];

                        text[pos] = pos % 2 ? '.' : '\x80';
                        assert_int_equal(base64_decode_into(text, l, out, sizeof(out), &n), -EINVAL);
                        text[pos] = saved;
                }
                n = 4242;
        }

        /* An exact fit, and the empty text. */
        assert_int_equal(base64_decode_into("Zm9vYmE=", 8, buf, 5, &n), 0);
        assert_int_equal(n, 5);
        assert_memory_equal(buf, "fooba", 5);
        assert_int_equal(base64_decode_into("", 0, NULL, 0, &n), 0);
        assert_int_equal(n, 0);
}

static void test_base64_length(void **state) {
        assert_int_equal(base64_encoded_length(0), 0);
        assert_int_equal(base64_encoded_length(1), 4);
        assert_int_equal(base64_encoded_length(2), 4);
        assert_int_equal(base64_encoded_length(3), 4);
        assert_int_equal(base64_encoded_length(4), 8);
        assert_int_equal(base64_encoded_length(32), 44);
}

static void test_uuid_parse(void **state) {
        static const struct {
                const char *s;
                int r;
                const char *canonical;
        } table[] = {
                {"9ad7f620-5a0c-4979-8a2d-66142e06fd79", 0, "9ad7f620-5a0c-4979-8a2d-66142e06fd79"},
                {"9AD7F620-5A0C-4979-8A2D-66142E06FD79", 0, "9ad7f620-5a0c-4979-8a2d-66142e06fd79"},
                {"9Ad7f620-5a0C-4979-8a2D-66142e06Fd79", 0, "9ad7f620-5a0c-4979-8a2d-66142e06fd79"},
                {"00000000-0000-0000-0000-000000000000", 0, "00000000-0000-0000-0000-000000000000"},
                {"ffffffff-ffff-ffff-ffff-ffffffffffff", 0, "ffffffff-ffff-ffff-ffff-ffffffffffff"},
                {"", -EINVAL, NULL},
                {"9ad7f6205a0c49798a2d66142e06fd79", -EINVAL, NULL},
                {"{9ad7f620-5a0c-4979-8a2d-66142e06fd79}", -EINVAL, NULL},
                {"urn:uuid:9ad7f620-5a0c-4979-8a2d-66142e06fd79", -EINVAL, NULL},
                {"9ad7f620-5a0c-4979-8a2d-66142e06fd7", -EINVAL, NULL},
                {"9ad7f620-5a0c-4979-8a2d-66142e06fd790", -EINVAL, NULL},
                {"9ad7f620-5a0c-4979-8a2d-66142e06fd79 ", -EINVAL, NULL},
                {" 9ad7f620-5a0c-4979-8a2d-66142e06fd79", -EINVAL, NULL},
                {"9ad7f6205-a0c-4979-8a2d-66142e06fd79", -EINVAL, NULL},
                {"9ad7f620-5a0c-4979-8a2d_66142e06fd79", -EINVAL, NULL},
                {"9ad7f620-5a0c-4979-8a2d-66142e06fd7g", -EINVAL, NULL},
                {"9ad7f620-5a0c-4979-8a2d-66142e06fdx9", -EINVAL, NULL},
                {"9ad7f620--5a0c-4979-8a2d-66142e06fd7", -EINVAL, NULL},
                {"-9ad7f620-5a0c-4979-8a2d-66142e06fd7", -EINVAL, NULL},
                {"9ad7f620-5a0c-4979-8a2d-66142e06fd\xc3\xa9", -EINVAL, NULL},
        };

        for (size_t i = 0; i < ELEMENTSOF(table); i++) {
                Uuid u = {.bytes = {0xaa}};
                char buf[UUID_STRING_MAX];

                assert_int_equal(uuid_from_string(table[i].s, &u), table[i].r);
                if (table[i].r == 0)
                        assert_string_equal(uuid_to_string(&u, buf), table[i].canonical);
                else
                        assert_int_equal(u.bytes[0], 0xaa);
        }
}

/* The parser accepts what libuuid's uuid_parse() accepts, with the same bytes: strings one to three
 * characters away from a UUID, the characters drawn from those that matter. */
static void test_uuid_parse_like_libuuid(void **state) {
        static const char alphabet[] = "0123456789abcdefABCDEF-gG x\xc3";
        unsigned accepted = 0;

        for (unsigned i = 0; i < 20000; i++) {
                char s[UUID_STRING_MAX + 2];
                uint8_t r[4];
                Uuid u, v;
                uuid_t expected;
                int ours, theirs;

                assert_int_equal(uuid_random(&v), 0);
                uuid_to_string(&v, s);
                s[UUID_STRING_MAX] = 0;
                assert_int_equal(random_bytes(r, sizeof(r)), 0);
                for (unsigned j = 0; j < 1u + r[0] % 3u; j++) {
                        assert_int_equal(random_bytes(r, sizeof(r)), 0);
                        /* A character replaced, or the string cut or lengthened by one. */
                        if (r[2] % 8 == 0)
                                s[r[1] % UUID_STRING_MAX] = 0;
                        else if (r[2] % 8 == 1 && strlen(s) <= UUID_STRING_MAX - 1)
                                strcat(s, "0");
                        else
                                s[r[1] % (UUID_STRING_MAX - 1)] = alphabet[r[3] % (sizeof(alphabet) - 1)];
                }
                ours = uuid_from_string(s, &u);
                theirs = uuid_parse(s, expected);
                assert_int_equal(ours == 0, theirs == 0);
                if (ours == 0) {
                        assert_memory_equal(u.bytes, expected, sizeof(u.bytes));
                        accepted++;
                }
        }
        /* Replacing a hex digit by another keeps a UUID valid: both outcomes were seen. */
        assert_true(accepted > 100 && accepted < 19900);
}

static void test_uuid_bytes(void **state) {
        Uuid u, v;
        char buf[UUID_STRING_MAX];

        assert_int_equal(uuid_from_string("00010203-0405-0607-0809-0a0b0c0d0e0f", &u), 0);
        for (size_t i = 0; i < 16; i++)
                assert_int_equal(u.bytes[i], i);
        assert_false(uuid_is_nil(&u));

        memset(&v, 0, sizeof(v));
        assert_true(uuid_is_nil(&v));
        assert_false(uuid_equal(&u, &v));
        assert_string_equal(uuid_to_string(&v, buf), "00000000-0000-0000-0000-000000000000");
}

static void test_uuid_random(void **state) {
        Uuid a, b, c;
        char buf[UUID_STRING_MAX];

        assert_int_equal(uuid_random(&a), 0);
        assert_int_equal(uuid_random(&b), 0);
        assert_false(uuid_equal(&a, &b));

        /* Version 4, RFC 4122 variant. */
        assert_int_equal(a.bytes[6] >> 4, 4);
        assert_int_equal(a.bytes[8] & 0xc0, 0x80);

        uuid_to_string(&a, buf);
        assert_int_equal(strlen(buf), 36);
        assert_int_equal(buf[14], '4');
        assert_int_equal(uuid_from_string(buf, &c), 0);
        assert_true(uuid_equal(&a, &c));
}

#define N_UUIDS 256

static void test_uuid_random_many(void **state) {
        static Uuid u[N_UUIDS];
        unsigned ones[128] = {};

        for (size_t i = 0; i < N_UUIDS; i++) {
                assert_int_equal(uuid_random(&u[i]), 0);
                assert_int_equal(u[i].bytes[6] >> 4, 4);
                assert_int_equal(u[i].bytes[8] >> 6, 2);
                assert_false(uuid_is_nil(&u[i]));
                for (size_t j = 0; j < i; j++)
                        assert_false(uuid_equal(&u[i], &u[j]));
                for (size_t b = 0; b < 128; b++)
                        ones[b] += (u[i].bytes[b / 8] >> (7 - b % 8)) & 1;
        }

        /* The 122 random bits each come out both ways; the six fixed ones never change. */
        for (size_t b = 0; b < 128; b++) {
                bool fixed = (b >= 48 && b < 52) || b == 64 || b == 65;

                if (fixed)
                        assert_true(ones[b] == 0 || ones[b] == N_UUIDS);
                else {
                        assert_true(ones[b] > N_UUIDS / 4);
                        assert_true(ones[b] < N_UUIDS * 3 / 4);
                }
        }
}

static int constant_random(void *p, size_t n, void *userdata) {
        memset(p, *(const uint8_t *) userdata, n);
        return 0;
}

static int failing_random(void *p, size_t n, void *userdata) {
        return -EIO;
}

static void test_uuid_random_bits(void **state) {
        char buf[UUID_STRING_MAX];
        uint8_t fill;
        Uuid u, before;

        /* Only the version and variant bits are forced, whatever the random bytes. */
        fill = 0xff;
        random_set_hook(constant_random, &fill);
        assert_int_equal(uuid_random(&u), 0);
        assert_string_equal(uuid_to_string(&u, buf), "ffffffff-ffff-4fff-bfff-ffffffffffff");

        fill = 0x00;
        assert_int_equal(uuid_random(&u), 0);
        assert_string_equal(uuid_to_string(&u, buf), "00000000-0000-4000-8000-000000000000");

        /* A failing source leaves the output alone. */
        random_set_hook(failing_random, NULL);
        before = u;
        assert_int_equal(uuid_random(&u), -EIO);
        assert_true(uuid_equal(&u, &before));
        random_set_hook(NULL, NULL);

        assert_int_equal(uuid_random(NULL), -EINVAL);
}

static void test_name_is_valid(void **state) {
        static const struct {
                const char *s;
                bool valid;
        } table[] = {
                {"carol", true},
                {"hub-1", true},
                {"Hank", true},
                {"a", true},
                {"0", true},
                {"sae_1.x", true},
                {"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", true},   /* 63 */
                {"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", false}, /* 64 */
                {"", false},
                {"-carol", false},
                {".carol", false},
                {"_carol", false},
                {"..", false},
                {"a/b", false},
                {"a b", false},
                {"a%2f", false},
                {"caról", false},
                {"a\n", false},
        };

        for (size_t i = 0; i < ELEMENTSOF(table); i++)
                assert_int_equal(name_is_valid(table[i].s), table[i].valid);
        assert_false(name_is_valid(NULL));
}

static void test_parse_size(void **state) {
        static const struct {
                const char *s;
                uint64_t max;
                int r;
                uint64_t v;
        } table[] = {
                {"0", UINT64_MAX, 0, 0},
                {"1", UINT64_MAX, 0, 1},
                {"10", UINT64_MAX, 0, 10},
                {"4096", 4096, 0, 4096},
                {"4097", 4096, -ERANGE, 0},
                {"18446744073709551615", UINT64_MAX, 0, UINT64_MAX},
                {"18446744073709551616", UINT64_MAX, -ERANGE, 0},
                {"99999999999999999999999999999", UINT64_MAX, -ERANGE, 0},
                {"", UINT64_MAX, -EINVAL, 0},
                {"00", UINT64_MAX, -EINVAL, 0},
                {"01", UINT64_MAX, -EINVAL, 0},
                {"+1", UINT64_MAX, -EINVAL, 0},
                {"-1", UINT64_MAX, -EINVAL, 0},
                {"-0", UINT64_MAX, -EINVAL, 0},
                {" 1", UINT64_MAX, -EINVAL, 0},
                {"1 ", UINT64_MAX, -EINVAL, 0},
                {"1_0", UINT64_MAX, -EINVAL, 0},
                {"0x10", UINT64_MAX, -EINVAL, 0},
                {"1e3", UINT64_MAX, -EINVAL, 0},
                {"1.0", UINT64_MAX, -EINVAL, 0},
                {"\xd9\xa1", UINT64_MAX, -EINVAL, 0}, /* Arabic-Indic digit one */
                {"99999999999999999999999x", UINT64_MAX, -EINVAL, 0},
        };

        for (size_t i = 0; i < ELEMENTSOF(table); i++) {
                uint64_t v = 4242;

                assert_int_equal(parse_size(table[i].s, strlen(table[i].s), table[i].max, &v), table[i].r);
                assert_int_equal(v, table[i].r == 0 ? table[i].v : 4242);
        }
}

static void test_parse_size_length(void **state) {
        uint64_t v = 0;

        /* Only the first n bytes count, so a field can be parsed in place. */
        assert_int_equal(parse_size("123:456", 3, UINT64_MAX, &v), 0);
        assert_int_equal(v, 123);
        assert_int_equal(parse_size("123:456", 4, UINT64_MAX, &v), -EINVAL);
        assert_int_equal(parse_size("1\0", 2, UINT64_MAX, &v), -EINVAL);
        assert_int_equal(parse_size(NULL, 0, UINT64_MAX, &v), -EINVAL);
}

/* The check value of CRC-32/ISO-HDLC (as zlib), and the same CRC whether the bytes come at once, in
 * pieces or unaligned. */
static void test_crc32(void **state) {
        uint8_t buf[1001];

        (void) state;
        assert_int_equal(crc32_update(0, "123456789", 9), 0xcbf43926u);
        assert_int_equal(crc32_update(0, "", 0), 0u);
        for (size_t i = 0; i < sizeof(buf); i++)
                buf[i] = (uint8_t) (i * 7);
        assert_int_equal(crc32_update(0, buf, 1000), 0x114ad5ffu);
        for (size_t cut = 0; cut <= 1000; cut += 37)
                assert_int_equal(crc32_update(crc32_update(0, buf, cut), buf + cut, 1000 - cut),
                                 0x114ad5ffu);
        assert_int_equal(crc32_update(0, buf + 1, 1000),
                         crc32_update(crc32_update(0, buf + 1, 5), buf + 6, 995));
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_crc32),
                cmocka_unit_test(test_base64_rfc4648),
                cmocka_unit_test(test_base64_all_bytes),
                cmocka_unit_test(test_base64_mac_vector),
                cmocka_unit_test(test_base64_malformed),
                cmocka_unit_test(test_base64_every_byte),
                cmocka_unit_test(test_base64_decode_into),
                cmocka_unit_test(test_base64_length),
                cmocka_unit_test(test_uuid_parse),
                cmocka_unit_test(test_uuid_parse_like_libuuid),
                cmocka_unit_test(test_uuid_bytes),
                cmocka_unit_test(test_uuid_random),
                cmocka_unit_test(test_uuid_random_many),
                cmocka_unit_test(test_uuid_random_bits),
                cmocka_unit_test(test_name_is_valid),
                cmocka_unit_test(test_parse_size),
                cmocka_unit_test(test_parse_size_length),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
