/* SPDX-License-Identifier: MIT */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "psrd-metadata.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_equal(const Allocation *a, const Allocation *b) {
        if (a->n_fragments != b->n_fragments || a->size != b->size)
                abort();
        for (size_t i = 0; i < a->n_fragments; i++)
                if (!uuid_equal(&a->fragments[i].block_uuid, &b->fragments[i].block_uuid) ||
                    a->fragments[i].start != b->fragments[i].start ||
                    a->fragments[i].size != b->fragments[i].size)
                        abort();
}

/* What a parsed header promises to the code that takes the MAC key (C1). */
static void check_mac_key(const Allocation *a) {
        size_t total = 0;

        if (a->data || a->n_fragments == 0 || a->n_fragments > PSRD_FRAGMENTS_MAX)
                abort();
        for (size_t i = 0; i < a->n_fragments; i++) {
                const Fragment *f = a->fragments + i;

                if (f->size == 0)
                        abort();
                total += f->size;
                for (size_t j = 0; j < i; j++) {
                        const Fragment *g = a->fragments + j;

                        if (uuid_equal(&f->block_uuid, &g->block_uuid) && f->start < g->start + g->size &&
                            g->start < f->start + f->size)
                                abort();
                }
        }
        if (total != DSKE_MAC_KEY_SIZE || a->size != DSKE_MAC_KEY_SIZE)
                abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        _cleanup_(allocation_freep) Allocation *a = NULL, *b = NULL;
        _cleanup_free_ char *s = NULL, *t = NULL, *u = NULL;
        uint8_t mac[DSKE_MAC_SIZE], mac2[DSKE_MAC_SIZE];

        /* Header values are text; an embedded NUL would only end the string early. */
        if (size > 16 * 1024 || memchr(data, 0, size))
                return 0;
        s = strndup((const char *) data, size);
        if (!s)
                return 0;

        if (signature_header_parse(s, &a, mac) < 0)
                return 0;
        check_mac_key(a);

        if (signature_header_format(a, mac, &t) < 0)
                abort();
        if (signature_header_parse(t, &b, mac2) < 0)
                abort();
        check_equal(a, b);
        if (memcmp(mac, mac2, sizeof(mac)) != 0)
                abort();

        /* The canonical form is a fixed point. */
        if (signature_header_format(b, mac2, &u) < 0 || strcmp(t, u) != 0)
                abort();

        return 0;
}
