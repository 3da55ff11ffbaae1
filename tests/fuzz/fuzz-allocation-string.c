/* SPDX-License-Identifier: MIT */
#include <stdint.h>
#include <stdlib.h>
#include <strings.h>

#include "json-util.h"
#include "psrd-metadata.h"
#include "psrd.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* What every parsed allocation must satisfy, whatever the input. */
static void check_allocation(const Allocation *a) {
        size_t total = 0;

        if (a->data || a->n_fragments < 1 || a->n_fragments > PSRD_FRAGMENTS_MAX)
                abort();
        for (size_t i = 0; i < a->n_fragments; i++) {
                const Fragment *f = &a->fragments[i];

                if (f->size < 1 || f->start > PSRD_BLOCK_SIZE_MAX ||
                    f->size > PSRD_BLOCK_SIZE_MAX - f->start)
                        abort();
                total += f->size;
        }
        if (total != a->size)
                abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        _cleanup_(allocation_freep) Allocation *a = NULL, *b = NULL, *c = NULL;
        _cleanup_free_ char *s = NULL, *t = NULL;
        _cleanup_json_ json_object *o = NULL;
        int r;

        r = allocation_from_string((const char *) data, size, &a);
        if (r < 0) {
                if (a || (r != -EBADMSG && r != -E2BIG && r != -ENOMEM))
                        abort();
                return 0;
        }
        check_allocation(a);

        if (allocation_to_string(a, &s) < 0)
                return 0;

        /* The accepted syntax has one spelling per allocation, up to the case of the UUIDs. */
        if (strlen(s) != size || strncasecmp(s, (const char *) data, size) != 0)
                abort();

        if (allocation_from_string(s, strlen(s), &b) < 0 || !allocation_fragments_equal(a, b))
                abort();
        if (allocation_to_string(b, &t) < 0)
                return 0;
        if (strcmp(s, t) != 0)
                abort();

        /* The other wire form carries the same fragments. */
        o = allocation_to_json(a);
        if (!o)
                return 0;
        r = allocation_from_json(o, &c);
        if (r == -ENOMEM)
                return 0;
        if (r < 0 || !allocation_fragments_equal(a, c))
                abort();

        return 0;
}
