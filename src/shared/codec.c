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

/* The 6-bit value of c in the standard alphabet, or -1. */
static int base64_char_value(char c) {
        if (c >= 'A' && c <= 'Z')
                return c - 'A';
        if (c >= 'a' && c <= 'z')
                return c - 'a' + 26;
        if (c >= '0' && c <= '9')
                return c - '0' + 52;
        if (c == '+')
                return 62;
        if (c == '/')
                return 63;
        return -1;
}

/* Strict, unlike most decoders (which skip whitespace and ignore the padding bits): only the alphabet,
 * padding only at the end and only as much as the group needs, and the bits the padding discards must be
 * zero (one encoding per byte string). */
static int base64_validate(const char *s, size_t len, size_t *ret_size) {
        size_t n_pad = 0;

        if (len % 4 != 0)
                return -EINVAL;
        if (len == 0) {
                *ret_size = 0;
                return 0;
        }

        if (s[len - 1] == '=')
                n_pad++;
        if (s[len - 2] == '=') {
                if (n_pad == 0)
                        return -EINVAL;
                n_pad++;
        }

        for (size_t i = 0; i < len - n_pad; i++)
                if (base64_char_value(s[i]) < 0)
                        return -EINVAL;

        if (n_pad > 0) {
                int last = base64_char_value(s[len - n_pad - 1]);
                /* "QQ==" carries 12 bits for 8, "QUI=" 18 bits for 16. */
                int mask = n_pad == 2 ? 0x0f : 0x03;

                if (last & mask)
                        return -EINVAL;
        }

        *ret_size = len / 4 * 3 - n_pad;
        return 0;
}

int base64_decode_into(const char *s, size_t len, uint8_t *buf, size_t buf_size, size_t *ret_size) {
        uint32_t acc = 0;
        size_t expected, n = 0, bits = 0;
        int r;

        if (!ret_size || (!s && len > 0) || (!buf && buf_size > 0))
                return -EINVAL;

        r = base64_validate(s, len, &expected);
        if (r < 0)
                return r;
        if (expected > buf_size)
                return -ENOBUFS;

        /* The text was checked above, so every character before the padding is in the alphabet. */
        for (size_t i = 0; i < len && s[i] != '='; i++) {
                acc = (acc << 6 | (uint32_t) base64_char_value(s[i])) & 0xffffff;
                bits += 6;
                if (bits >= 8) {
                        bits -= 8;
                        buf[n++] = (uint8_t) (acc >> bits);
                }
        }
        explicit_bzero(&acc, sizeof(acc));

        *ret_size = n;
        return 0;
}

int base64_decode(const char *s, size_t len, uint8_t **ret, size_t *ret_size) {
        size_t expected, done;
        uint8_t *buf;
        int r;

        if (!ret || !ret_size || (!s && len > 0))
                return -EINVAL;

        r = base64_validate(s, len, &expected);
        if (r < 0)
                return r;

        buf = secret_alloc(expected);
        if (!buf)
                return -ENOMEM;

        r = base64_decode_into(s, len, buf, expected, &done);
        if (r < 0 || done != expected) {
                erase_and_free(buf, expected);
                return r < 0 ? r : -EINVAL;
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

int uuid_from_string(const char *s, Uuid *ret) {
        if (!s || !ret)
                return -EINVAL;
        /* Exactly 36 characters: hex digits with dashes at 8, 13, 18 and 23; either case. */
        if (uuid_parse(s, ret->bytes) < 0)
                return -EINVAL;
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
