/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "json-util.h"
#include "psrd-metadata.h"

#define STRLEN(s) (sizeof("" s "") - 1)

static char *uuid_write(char *p, const Uuid *u) {
        char buf[UUID_STRING_MAX];

        memcpy(p, uuid_to_string(u, buf), UUID_STRING_MAX - 1);
        return p + UUID_STRING_MAX - 1;
}

size_t allocation_string_length(const Allocation *a) {
        size_t n = 0;

        for (size_t i = 0; i < a->n_fragments; i++)
                n += (i > 0) + UUID_STRING_MAX - 1 + 1 + decimal_length(a->fragments[i].start) + 1 +
                     decimal_length(a->fragments[i].size);
        return n;
}

char *allocation_string_write(const Allocation *a, char *p) {
        for (size_t i = 0; i < a->n_fragments; i++) {
                const Fragment *f = &a->fragments[i];

                if (i > 0)
                        *p++ = ',';
                p = uuid_write(p, &f->block_uuid);
                *p++ = ':';
                p = decimal_write(p, f->start);
                *p++ = ':';
                p = decimal_write(p, f->size);
        }
        return p;
}

int allocation_to_string(const Allocation *a, char **ret) {
        char *s, *e;

        if (!a || !ret || a->n_fragments == 0)
                return -EINVAL;

        s = malloc(allocation_string_length(a) + 1);
        if (!s)
                return -ENOMEM;
        e = allocation_string_write(a, s);
        *e = '\0';

        *ret = s;
        return 0;
}

#define JSON_FRAGMENTS_HEAD "{\"fragments\":["
#define JSON_FRAGMENTS_TAIL "]}"
#define JSON_UUID_HEAD      "{\"block_uuid\":\""
#define JSON_START_HEAD     "\",\"start\":"
#define JSON_SIZE_HEAD      ",\"size\":"
#define JSON_FRAGMENT_TAIL  "}"

size_t allocation_json_length(const Allocation *a) {
        size_t n = STRLEN(JSON_FRAGMENTS_HEAD) + STRLEN(JSON_FRAGMENTS_TAIL);

        for (size_t i = 0; i < a->n_fragments; i++)
                n += (i > 0) + STRLEN(JSON_UUID_HEAD) + UUID_STRING_MAX - 1 + STRLEN(JSON_START_HEAD) +
                     decimal_length(a->fragments[i].start) + STRLEN(JSON_SIZE_HEAD) +
                     decimal_length(a->fragments[i].size) + STRLEN(JSON_FRAGMENT_TAIL);
        return n;
}

#define APPEND_LITERAL(p, lit) (memcpy((p), (lit), STRLEN(lit)), (p) + STRLEN(lit))

char *allocation_json_write(const Allocation *a, char *p) {
        p = APPEND_LITERAL(p, JSON_FRAGMENTS_HEAD);
        for (size_t i = 0; i < a->n_fragments; i++) {
                const Fragment *f = &a->fragments[i];

                if (i > 0)
                        *p++ = ',';
                p = APPEND_LITERAL(p, JSON_UUID_HEAD);
                p = uuid_write(p, &f->block_uuid);
                p = APPEND_LITERAL(p, JSON_START_HEAD);
                p = decimal_write(p, f->start);
                p = APPEND_LITERAL(p, JSON_SIZE_HEAD);
                p = decimal_write(p, f->size);
                p = APPEND_LITERAL(p, JSON_FRAGMENT_TAIL);
        }
        return APPEND_LITERAL(p, JSON_FRAGMENTS_TAIL);
}

/* Parses one "<uuid>:<start>:<size>" of n bytes. */
static int fragment_from_string(const char *s, size_t n, Allocation *a) {
        const char *c1, *c2, *end = s + n;
        char buf[UUID_STRING_MAX];
        uint64_t start, size;
        Uuid uuid;
        int r;

        c1 = memchr(s, ':', n);
        if (!c1)
                return -EBADMSG;
        c2 = memchr(c1 + 1, ':', (size_t) (end - c1 - 1));
        if (!c2 || memchr(c2 + 1, ':', (size_t) (end - c2 - 1)))
                return -EBADMSG;

        if (c1 - s != UUID_STRING_MAX - 1)
                return -EBADMSG;
        memcpy(buf, s, UUID_STRING_MAX - 1);
        buf[UUID_STRING_MAX - 1] = '\0';
        if (uuid_from_string(buf, &uuid) < 0)
                return -EBADMSG;

        if (parse_size(c1 + 1, (size_t) (c2 - c1 - 1), PSRD_BLOCK_SIZE_MAX, &start) < 0 ||
            parse_size(c2 + 1, (size_t) (end - c2 - 1), PSRD_BLOCK_SIZE_MAX, &size) < 0)
                return -EBADMSG;

        r = allocation_add_fragment(a, &uuid, (size_t) start, (size_t) size);
        if (r == -EINVAL || r == -ERANGE)
                return -EBADMSG;
        return r;
}

int allocation_from_string(const char *s, size_t n, Allocation **ret) {
        _cleanup_(allocation_freep) Allocation *a = NULL;
        const char *p, *end;
        int r;

        if (!ret || (!s && n > 0))
                return -EINVAL;
        if (n == 0)
                return -EBADMSG;

        a = allocation_new();
        if (!a)
                return -ENOMEM;

        /* A trailing comma leaves an empty last fragment, which fails like any empty one. */
        for (p = s, end = s + n;;) {
                const char *comma = memchr(p, ',', (size_t) (end - p));
                size_t l = comma ? (size_t) (comma - p) : (size_t) (end - p);

                r = fragment_from_string(p, l, a);
                if (r < 0)
                        return r;

                if (!comma)
                        break;
                p = comma + 1;
        }

        *ret = TAKE_PTR(a);
        return 0;
}

static json_object *fragment_to_json(const Fragment *f) {
        _cleanup_json_ json_object *o = NULL;
        char buf[UUID_STRING_MAX];

        o = json_object_new_object();
        if (!o)
                return NULL;

        /* Member order is the reference's, so the bytes (and MACs over them) agree. */
        if (json_object_object_add(o, "block_uuid",
                                   json_object_new_string(uuid_to_string(&f->block_uuid, buf))) < 0 ||
            json_object_object_add(o, "start", json_object_new_int64((int64_t) f->start)) < 0 ||
            json_object_object_add(o, "size", json_object_new_int64((int64_t) f->size)) < 0)
                return NULL;

        /* json_object_object_add() takes NULL values without complaint; catch failed allocations. */
        if (!json_object_object_get(o, "block_uuid") || !json_object_object_get(o, "start") ||
            !json_object_object_get(o, "size"))
                return NULL;

        return TAKE_PTR(o);
}

json_object *allocation_to_json(const Allocation *a) {
        _cleanup_json_ json_object *o = NULL, *array = NULL;

        if (!a)
                return NULL;

        array = json_object_new_array_ext((int) MIN(a->n_fragments, (size_t) INT32_MAX));
        if (!array)
                return NULL;

        for (size_t i = 0; i < a->n_fragments; i++) {
                json_object *f = fragment_to_json(&a->fragments[i]);

                if (!f)
                        return NULL;
                if (json_object_array_add(array, f) < 0) {
                        json_object_put(f);
                        return NULL;
                }
        }

        o = json_object_new_object();
        if (!o)
                return NULL;
        if (json_object_object_add(o, "fragments", array) < 0)
                return NULL;
        TAKE_PTR(array);

        return TAKE_PTR(o);
}

/* A JSON integer 0 <= v <= PSRD_BLOCK_SIZE_MAX; doubles, strings and booleans are not integers. */
static int json_size_get(json_object *o, size_t *ret) {
        uint64_t v;

        if (!json_object_is_type(o, json_type_int))
                return -EBADMSG;
        /* json-c keeps values above INT64_MAX as unsigned; get_int64() clamps those to INT64_MAX. */
        if (json_object_get_int64(o) < 0)
                return -EBADMSG;
        v = json_object_get_uint64(o);
        if (v > PSRD_BLOCK_SIZE_MAX)
                return -EBADMSG;

        *ret = (size_t) v;
        return 0;
}

static int fragment_from_json(json_object *o, Allocation *a) {
        json_object *uuid_o, *start_o, *size_o;
        size_t start, size;
        Uuid uuid;
        int r;

        if (!json_object_is_type(o, json_type_object) || json_object_object_length(o) != 3)
                return -EBADMSG;
        if (!json_object_object_get_ex(o, "block_uuid", &uuid_o) ||
            !json_object_object_get_ex(o, "start", &start_o) ||
            !json_object_object_get_ex(o, "size", &size_o))
                return -EBADMSG;

        if (!json_object_is_type(uuid_o, json_type_string) ||
            json_object_get_string_len(uuid_o) != UUID_STRING_MAX - 1 ||
            uuid_from_string(json_object_get_string(uuid_o), &uuid) < 0)
                return -EBADMSG;

        if (json_size_get(start_o, &start) < 0 || json_size_get(size_o, &size) < 0)
                return -EBADMSG;

        r = allocation_add_fragment(a, &uuid, start, size);
        if (r == -EINVAL || r == -ERANGE)
                return -EBADMSG;
        return r;
}

int allocation_from_json(json_object *o, Allocation **ret) {
        _cleanup_(allocation_freep) Allocation *a = NULL;
        json_object *array;
        size_t n;
        int r;

        if (!ret)
                return -EINVAL;

        if (!json_object_is_type(o, json_type_object) || json_object_object_length(o) != 1 ||
            !json_object_object_get_ex(o, "fragments", &array) ||
            !json_object_is_type(array, json_type_array))
                return -EBADMSG;

        n = json_object_array_length(array);
        if (n == 0)
                return -EBADMSG;
        if (n > PSRD_FRAGMENTS_MAX)
                return -E2BIG;

        a = allocation_new();
        if (!a)
                return -ENOMEM;

        for (size_t i = 0; i < n; i++) {
                r = fragment_from_json(json_object_array_get_idx(array, i), a);
                if (r < 0)
                        return r;
        }

        *ret = TAKE_PTR(a);
        return 0;
}
