/* SPDX-License-Identifier: MIT */
#include <nettle/memops.h>
#include <stdlib.h>
#include <string.h>

#include "secret.h"

void *erase_and_free(void *p, size_t n) {
        if (!p)
                return NULL;
        explicit_bzero(p, n);
        free(p);
        return NULL;
}

void *secret_alloc(size_t n) {
        return calloc(1, n > 0 ? n : 1);
}

void *secret_memdup(const void *p, size_t n) {
        void *q = secret_alloc(n);
        if (q && n > 0)
                memcpy(q, p, n);
        return q;
}

bool secret_equal(const void *a, const void *b, size_t n) {
        return memeql_sec(a, b, n) != 0;
}

void secret_done(Secret *s) {
        if (!s)
                return;
        s->data = erase_and_free(s->data, s->size);
        s->size = 0;
}
