/* SPDX-License-Identifier: MIT */
#pragma once

/* Buffers that hold key material (keys, shares, PSRD) are wiped before their memory is released. */

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "macro.h"

/* Zeroes n bytes at p in a way the compiler may not elide, then frees p. Returns NULL. */
void *erase_and_free(void *p, size_t n);

/* Allocates n zeroed bytes (n may be 0). */
void *secret_alloc(size_t n);

/* Copies n bytes into a fresh secret buffer. */
void *secret_memdup(const void *p, size_t n);

/* Compares two buffers of equal length in time independent of their contents. */
bool secret_equal(const void *a, const void *b, size_t n);

/* A heap buffer with its length, wiped when freed. */
typedef struct Secret {
        uint8_t *data;
        size_t size;
} Secret;

void secret_done(Secret *s);

static inline void secret_donep(Secret *s) {
        secret_done(s);
}
#define _cleanup_secret_ _cleanup_(secret_donep)
