/* SPDX-License-Identifier: MIT */
#include <stdlib.h>
#include <string.h>

#include "strv.h"

size_t strv_length(char *const *l) {
        size_t n = 0;

        while (l && l[n])
                n++;
        return n;
}

bool strv_contains(char *const *l, const char *s) {
        for (size_t i = 0; l && l[i]; i++)
                if (streq(l[i], s))
                        return true;
        return false;
}

char **strv_free(char **l) {
        for (size_t i = 0; l && l[i]; i++)
                free(l[i]);
        free(l);
        return NULL;
}

int strv_push(char ***l, const char *s, size_t n) {
        size_t len = strv_length(*l);
        _cleanup_free_ char *copy = NULL;
        char **m;

        copy = strndup(s, n);
        if (!copy)
                return -ENOMEM;
        m = reallocarray(*l, len + 2, sizeof(char *));
        if (!m)
                return -ENOMEM;
        m[len] = TAKE_PTR(copy);
        m[len + 1] = NULL;
        *l = m;
        return 0;
}

int strv_extend_split(char ***l, const char *s, const char *separators) {
        for (const char *p = s;;) {
                size_t n;
                int r;

                p += strspn(p, separators);
                if (*p == '\0')
                        return 0;
                n = strcspn(p, separators);
                r = strv_push(l, p, n);
                if (r < 0)
                        return r;
                p += n;
        }
}
