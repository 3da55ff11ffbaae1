/* SPDX-License-Identifier: MIT */
#pragma once

/* Encodings used on the wire: base64 (RFC 4648 standard alphabet, padded) and UUIDs. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define UUID_STRING_MAX 37 /* 36 characters and the NUL */

typedef struct Uuid {
        uint8_t bytes[16];
} Uuid;

/* Encodes n bytes; *ret is a NUL-terminated string the caller frees. Returns 0 or -ENOMEM. */
int base64_encode(const void *p, size_t n, char **ret);
/* Length of the encoding of n bytes, without the NUL. */
size_t base64_encoded_length(size_t n);

/* Writes the base64_encoded_length(n) characters of the encoding at buf (no NUL) and returns the
 * end. */
char *base64_encode_into(const void *p, size_t n, char *buf);

/* Decodes strictly: only the standard alphabet, padding exactly as RFC 4648 requires, no
 * whitespace, length a multiple of 4. *ret is allocated with secret_alloc() (the caller wipes it
 * with erase_and_free(*ret, *ret_size)). Returns 0, -EINVAL for malformed input, -ENOMEM. */
int base64_decode(const char *s, size_t len, uint8_t **ret, size_t *ret_size);
/* The same into buf of buf_size bytes, which the caller owns (and wipes when it holds secrets).
 * Returns 0, -EINVAL for malformed input, -ENOBUFS when the bytes do not fit. Decoding and
 * checking are one pass: after -EINVAL the first bytes of buf (as many as the text would have
 * decoded to) are zero; after any other failure buf is untouched. */
int base64_decode_into(const char *s, size_t len, uint8_t *buf, size_t buf_size, size_t *ret_size);

/* A fresh random (version 4) UUID from the kernel's CSPRNG; returns 0 or a negative errno. */
int uuid_random(Uuid *ret);
/* Parses the canonical 8-4-4-4-12 hex form, either case. Returns 0 or -EINVAL. */
int uuid_from_string(const char *s, Uuid *ret);
/* Writes the lowercase canonical form into buf (UUID_STRING_MAX bytes) and returns buf. */
char *uuid_to_string(const Uuid *u, char buf[static UUID_STRING_MAX]);
bool uuid_equal(const Uuid *a, const Uuid *b);
/* Whether u is the nil UUID (all zero). Not "uuid_is_null": libuuid exports that symbol. */
bool uuid_is_nil(const Uuid *u);

/* Node, hub, client and SAE names that are safe as URL path segments and file names:
 * [A-Za-z0-9][A-Za-z0-9._-]{0,62}. */
bool name_is_valid(const char *s);

/* Strict decimal: 0|[1-9][0-9]* without sign, space or separators, at most max. Returns 0 or
 * -EINVAL (syntax) or -ERANGE (above max). n is the length of s to consider. */
int parse_size(const char *s, size_t n, uint64_t max, uint64_t *ret);

/* Digits of v in decimal, and writing them (no NUL) at p, returning the end: for text built in
 * place with its length known beforehand. */
size_t decimal_length(uint64_t v);
char *decimal_write(char *p, uint64_t v);
