/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <nettle/base64.h>
#include <stdlib.h>
#include <string.h>
#include <uuid/uuid.h>

#include "codec.h"
#include "macro.h"
#include "random.h"
#include "secret.h"

size_t base64_encoded_length(size_t n) {
        /* Every started group of 3 bytes becomes 4 characters. */
        return (n / 3 + (n % 3 != 0)) * 4;
}

int base64_encode(const void *p, size_t n, char **ret) {
        size_t l;
        char *s;

        if (!ret || (!p && n > 0))
                return -EINVAL;
        if (n > (SIZE_MAX - 1) / 4 * 3 - 3)
                return -ENOMEM;

        l = base64_encoded_length(n);
        s = malloc(l + 1);
        if (!s)
                return -ENOMEM;

        base64_encode_into(p, n, s);
        s[l] = '\0';

        *ret = s;
        return 0;
}

char *base64_encode_into(const void *p, size_t n, char *buf) {
        if (n > 0)
                base64_encode_raw(buf, n, p);
        return buf + base64_encoded_length(n);
}

/* The 6-bit value of x in the standard alphabet; *ok is cleared when x is outside it. Without branches
 * or a table, so that neither the branch predictor nor the cache learns about the (secret) text, and in
 * a form the compiler turns into vector code when it is applied to a run of characters. */
static inline uint8_t base64_sextet(uint8_t x, uint8_t *ok) {
        uint8_t up = (uint8_t) (x - 'A') < 26, lo = (uint8_t) (x - 'a') < 26, dg = (uint8_t) (x - '0') < 10,
                pl = x == '+', sl = x == '/';

        *ok &= up | lo | dg | pl | sl;
        return (uint8_t) ((-up & (x - 'A')) | (-lo & (x - 'a' + 26)) | (-dg & (x - '0' + 52)) | (-pl & 62) |
                          (-sl & 63));
}

/* The values of n characters, one byte each; returns false when one of them is outside the alphabet. */
static bool base64_sextets(const char *s, size_t n, uint8_t *out) {
        uint8_t ok = 1;

        for (size_t i = 0; i < n; i++)
                out[i] = base64_sextet((uint8_t) s[i], &ok);
        return ok;
}

/* Strict, unlike most decoders (which skip whitespace and ignore the padding bits): only the alphabet,
 * padding only at the end and only as much as the group needs, and the bits the padding discards must be
 * zero (one encoding per byte string). This checks the length and where the padding is; the characters
 * are checked while they are decoded. */
static int base64_layout(const char *s, size_t len, size_t *ret_n_pad, size_t *ret_size) {
        size_t n_pad = 0;

        if (len % 4 != 0)
                return -EINVAL;
        if (len > 0 && s[len - 1] == '=')
                n_pad++;
        if (len > 0 && s[len - 2] == '=') {
                if (n_pad == 0)
                        return -EINVAL;
                n_pad++;
        }

        *ret_n_pad = n_pad;
        *ret_size = len / 4 * 3 - n_pad;
        return 0;
}

/* Decodes the n_groups full groups of 4 characters at s into 3 bytes each at out (when out is not
 * NULL), then the final group of 4 - n_pad characters and n_pad padding characters. Returns false when
 * a character is outside the alphabet or the padding discards bits that are not zero. Every character
 * is looked at however early the text goes wrong: no branch on the data. */
static bool base64_decode_groups(const char *s, size_t n_groups, size_t n_pad, uint8_t *out) {
        /* Mapping characters in runs lets the compiler vectorize it; packing them is the cheap part. */
        uint8_t v[256];
        bool ok = true;

        for (size_t done = 0, total = n_groups * 4; done < total;) {
                size_t l = MIN(total - done, sizeof(v));

                ok = base64_sextets(s + done, l, v) && ok;
                for (size_t i = 0; out && i < l; i += 4, out += 3) {
                        out[0] = (uint8_t) (v[i] << 2 | v[i + 1] >> 4);
                        out[1] = (uint8_t) (v[i + 1] << 4 | v[i + 2] >> 2);
                        out[2] = (uint8_t) (v[i + 2] << 6 | v[i + 3]);
                }
                done += l;
        }
        s += n_groups * 4;

        if (n_pad > 0) {
                uint8_t tail_ok = 1, a = base64_sextet((uint8_t) s[0], &tail_ok),
                        b = base64_sextet((uint8_t) s[1], &tail_ok),
                        c = n_pad == 1 ? base64_sextet((uint8_t) s[2], &tail_ok) : 0;
                /* "QQ==" carries 12 bits for 8, "QUI=" 18 bits for 16: what is left over must be zero. */
                uint8_t discarded = n_pad == 2 ? b & 0x0f : c & 0x03;

                ok = tail_ok && discarded == 0 && ok;
                if (out) {
                        out[0] = (uint8_t) (a << 2 | b >> 4);
                        if (n_pad == 1)
                                out[1] = (uint8_t) (b << 4 | c >> 2);
                }
        }

        explicit_bzero(v, sizeof(v));
        return ok;
}

int base64_decode_into(const char *s, size_t len, uint8_t *buf, size_t buf_size, size_t *ret_size) {
        size_t expected, n_pad, n_groups;
        int r;

        if (!ret_size || (!s && len > 0) || (!buf && buf_size > 0))
                return -EINVAL;

        r = base64_layout(s, len, &n_pad, &expected);
        if (r < 0)
                return r;
        n_groups = len / 4 - (n_pad > 0);

        /* Malformed text is -EINVAL whatever the size of buf. */
        if (expected > buf_size)
                return base64_decode_groups(s, n_groups, n_pad, NULL) ? -ENOBUFS : -EINVAL;

        if (!base64_decode_groups(s, n_groups, n_pad, buf)) {
                /* Leave nothing of a half-decoded secret behind. */
                explicit_bzero(buf, expected);
                return -EINVAL;
        }

        *ret_size = expected;
        return 0;
}

int base64_decode(const char *s, size_t len, uint8_t **ret, size_t *ret_size) {
        size_t expected, n_pad, done;
        uint8_t *buf;
        int r;

        if (!ret || !ret_size || (!s && len > 0))
                return -EINVAL;

        r = base64_layout(s, len, &n_pad, &expected);
        if (r < 0)
                return r;

        buf = secret_alloc(expected);
        if (!buf)
                return -ENOMEM;

        r = base64_decode_into(s, len, buf, expected, &done);
        if (r < 0) {
                erase_and_free(buf, expected);
                return r;
        }

        *ret = buf;
        *ret_size = expected;
        return 0;
}

int uuid_random(Uuid *ret) {
        Uuid u;
        int r;

        if (!ret)
                return -EINVAL;

        /* Straight from getrandom(): libuuid's generator also reseeds a userspace PRNG with the
         * process and thread ids on every call, several system calls per UUID. */
        r = random_bytes(u.bytes, sizeof(u.bytes));
        if (r < 0)
                return r;
        /* RFC 9562: version 4 in the high nibble of byte 6, variant 10 in the top bits of byte 8. */
        u.bytes[6] = (u.bytes[6] & 0x0f) | 0x40;
        u.bytes[8] = (u.bytes[8] & 0x3f) | 0x80;
        *ret = u;
        return 0;
}

static int hex_digit(char c) {
        if (c >= '0' && c <= '9')
                return c - '0';
        if (c >= 'a' && c <= 'f')
                return c - 'a' + 10;
        if (c >= 'A' && c <= 'F')
                return c - 'A' + 10;
        return -1;
}

/* Not libuuid's uuid_parse(), which accepts the same but converts with strtoul(): that took 4% of a
 * hub's time, which parses several UUIDs per request. */
int uuid_from_string(const char *s, Uuid *ret) {
        Uuid u;
        size_t n = 0;

        if (!s || !ret)
                return -EINVAL;
        /* Exactly 36 characters: hex digits with dashes at 8, 13, 18 and 23; either case. Each
         * character is checked before the next is read, so a shorter string ends the walk at its
         * NUL. */
        for (size_t i = 0; i < UUID_STRING_MAX - 1;) {
                int hi, lo;

                if (i == 8 || i == 13 || i == 18 || i == 23) {
                        if (s[i++] != '-')
                                return -EINVAL;
                        continue;
                }
                hi = hex_digit(s[i]);
                if (hi < 0)
                        return -EINVAL;
                lo = hex_digit(s[i + 1]);
                if (lo < 0)
                        return -EINVAL;
                u.bytes[n++] = (uint8_t) (hi << 4 | lo);
                i += 2;
        }
        if (s[UUID_STRING_MAX - 1] != '\0')
                return -EINVAL;
        *ret = u;
        return 0;
}

char *uuid_to_string(const Uuid *u, char buf[static UUID_STRING_MAX]) {
        uuid_unparse_lower(u->bytes, buf);
        return buf;
}

bool uuid_equal(const Uuid *a, const Uuid *b) {
        return memcmp(a->bytes, b->bytes, sizeof(a->bytes)) == 0;
}

bool uuid_is_nil(const Uuid *u) {
        static const Uuid null = {};
        return uuid_equal(u, &null);
}

static bool name_char_is_valid(char c, bool first) {
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
                return true;
        return !first && (c == '.' || c == '_' || c == '-');
}

bool name_is_valid(const char *s) {
        size_t i;

        if (!s)
                return false;

        for (i = 0; s[i] != '\0'; i++) {
                if (i >= 63)
                        return false;
                if (!name_char_is_valid(s[i], i == 0))
                        return false;
        }
        return i > 0;
}

int parse_size(const char *s, size_t n, uint64_t max, uint64_t *ret) {
        uint64_t v = 0;
        bool overflow = false;

        if (!s || n == 0)
                return -EINVAL;
        if (s[0] == '0' && n > 1)
                return -EINVAL;

        /* Syntax first, so that a long malformed string is -EINVAL rather than -ERANGE. */
        for (size_t i = 0; i < n; i++)
                if (s[i] < '0' || s[i] > '9')
                        return -EINVAL;

        for (size_t i = 0; i < n && !overflow; i++)
                overflow = __builtin_mul_overflow(v, 10u, &v) ||
                           __builtin_add_overflow(v, (uint64_t) (s[i] - '0'), &v);
        if (overflow || v > max)
                return -ERANGE;

        if (ret)
                *ret = v;
        return 0;
}

size_t decimal_length(uint64_t v) {
        size_t n = 1;

        while (v >= 10) {
                v /= 10;
                n++;
        }
        return n;
}

char *decimal_write(char *p, uint64_t v) {
        size_t n = decimal_length(v);

        for (size_t i = n; i > 0; i--) {
                p[i - 1] = (char) ('0' + v % 10);
                v /= 10;
        }
        return p + n;
}
