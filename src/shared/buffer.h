/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdlib.h>

#include "macro.h"

/* Grows the heap buffer *buf of *alloc bytes to hold at least need bytes, at least doubling it so
 * that appending byte by byte stays linear. Returns 0 or -ENOMEM (the buffer is unchanged). */
static inline int buffer_reserve(void **buf, size_t *alloc, size_t need) {
        size_t n;
        void *p;

        if (need <= *alloc)
                return 0;
        n = MAX(need, *alloc * 2);
        n = MAX(n, (size_t) 64);
        p = realloc(*buf, n);
        if (!p)
                return -ENOMEM;
        *buf = p;
        *alloc = n;
        return 0;
}
