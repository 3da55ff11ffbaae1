/* SPDX-License-Identifier: MIT */
#pragma once

/* NULL-terminated lists of heap strings. */

#include <stdbool.h>
#include <stddef.h>

#include "macro.h"

size_t strv_length(char *const *l);
bool strv_contains(char *const *l, const char *s);
/* Frees every string and the list; accepts NULL; returns NULL. */
char **strv_free(char **l);
static inline void strv_freep(char ***l) {
        *l = strv_free(*l);
}
#define _cleanup_strv_free_ _cleanup_(strv_freep)

/* Appends a copy of the first n bytes of s. Returns 0 or -ENOMEM (the list is unchanged). */
int strv_push(char ***l, const char *s, size_t n);
/* Appends every word of s, words being separated by any run of the characters in separators. */
int strv_extend_split(char ***l, const char *s, const char *separators);
