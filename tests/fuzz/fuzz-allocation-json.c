/* SPDX-License-Identifier: MIT */
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "json-util.h"
#include "psrd-metadata.h"
#include "psrd.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Request bodies are capped well below this; larger inputs only slow the fuzzer down. */
#define INPUT_MAX (256u * 1024u)

static void json_tokener_freep(struct json_tokener **t) {
        if (*t)
                json_tokener_free(*t);
}

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
        _cleanup_(json_tokener_freep) struct json_tokener *tok = NULL;
        _cleanup_json_ json_object *o = NULL, *out = NULL, *reparsed = NULL, *out2 = NULL;
        _cleanup_(allocation_freep) Allocation *a = NULL, *b = NULL, *c = NULL;
        _cleanup_free_ char *text = NULL, *s = NULL;
        int r;

        if (size > INPUT_MAX)
                return 0;

        tok = json_tokener_new_ex(32);
        if (!tok)
                return 0;
        o = json_tokener_parse_ex(tok, (const char *) data, (int) size);
        if (!o || json_tokener_get_error(tok) != json_tokener_success)
                return 0;

        r = allocation_from_json(o, &a);
        if (r < 0) {
                if (a || (r != -EBADMSG && r != -E2BIG && r != -ENOMEM))
                        abort();
                return 0;
        }
        check_allocation(a);

        /* Serialise as on the wire, parse back: the same fragments, and the same bytes again. */
        out = allocation_to_json(a);
        if (!out)
                return 0;
        text = strdup(json_object_to_json_string_ext(out, JSON_C_TO_STRING_DSKE));
        if (!text)
                return 0;

        reparsed = json_tokener_parse(text);
        if (!reparsed)
                abort();
        r = allocation_from_json(reparsed, &b);
        if (r == -ENOMEM)
                return 0;
        if (r < 0 || !allocation_fragments_equal(a, b))
                abort();

        out2 = allocation_to_json(b);
        if (!out2)
                return 0;
        if (strcmp(text, json_object_to_json_string_ext(out2, JSON_C_TO_STRING_DSKE)) != 0)
                abort();

        /* The other wire form carries the same fragments. */
        if (allocation_to_string(a, &s) < 0)
                return 0;
        r = allocation_from_string(s, strlen(s), &c);
        if (r == -ENOMEM)
                return 0;
        if (r < 0 || !allocation_fragments_equal(a, c))
                abort();

        return 0;
}
