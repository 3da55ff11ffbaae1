/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "json-util.h"
#include "psrd-metadata.h"
#include "psrd.h"
#include "secret.h"

#define U1 "9ad7f620-5a0c-4979-8a2d-66142e06fd79"
#define U2 "cda527e9-5ca7-40d6-a842-0b606597611c"
#define U3 "0b5e1b6e-5d3c-4f51-9d0e-4f1a2b3c4d5e"

#define B1_SIZE 100u
#define B2_SIZE 50u

static void uuid_parse_or_die(const char *s, Uuid *ret) {
        assert_int_equal(uuid_from_string(s, ret), 0);
}

/* Everything a take could change, to prove that a refused one changed nothing. */
typedef struct PoolSnapshot {
        PoolStats stats;
        uint8_t data[B1_SIZE + B2_SIZE];
        bool used[B1_SIZE + B2_SIZE];
} PoolSnapshot;

static void pool_snapshot(const Pool *p, PoolSnapshot *ret) {
        size_t k = 0;

        memset(ret, 0, sizeof(*ret));
        pool_get_stats(p, &ret->stats);
        for (size_t i = 0; i < p->n_blocks; i++)
                for (size_t j = 0; j < p->blocks[i]->size; j++, k++) {
                        ret->data[k] = p->blocks[i]->data[j];
                        ret->used[k] = block_is_used(p->blocks[i], j);
                }
}

static void assert_snapshot_equal(const PoolSnapshot *a, const PoolSnapshot *b) {
        assert_int_equal(a->stats.n_blocks, b->stats.n_blocks);
        assert_int_equal(a->stats.total_bytes, b->stats.total_bytes);
        assert_int_equal(a->stats.used_bytes, b->stats.used_bytes);
        assert_int_equal(a->stats.available_bytes, b->stats.available_bytes);
        assert_memory_equal(a->data, b->data, sizeof(a->data));
        assert_memory_equal(a->used, b->used, sizeof(a->used));
}

/* A receiver's pool with U1 (100 bytes of 1, 2, 3...) and U2 (50 bytes), U1's bytes 10..19 taken. */
static Pool *receiver_pool_new(void) {
        Pool *p = NULL;
        uint8_t data[B1_SIZE];
        Uuid u1, u2, u;
        Block *b = NULL;
        _cleanup_(allocation_freep) Allocation *a = NULL;

        for (size_t i = 0; i < sizeof(data); i++)
                data[i] = (uint8_t) (i + 1);

        uuid_parse_or_die(U1, &u1);
        uuid_parse_or_die(U2, &u2);
        assert_int_equal(pool_new("carol", POOL_OWNER_PEER, &p), 0);
        assert_int_equal(block_new(&u1, data, B1_SIZE, &b), 0);
        assert_int_equal(pool_add_block(p, b), 0);
        assert_int_equal(block_new(&u2, data, B2_SIZE, &b), 0);
        assert_int_equal(pool_add_block(p, b), 0);

        a = allocation_new();
        assert_non_null(a);
        uuid_parse_or_die(U1, &u);
        assert_int_equal(allocation_add_fragment(a, &u, 10, 10), 0);
        assert_int_equal(pool_take(p, a, 10, NULL), 0);
        return p;
}

static void test_string_example(void **state) {
        const char *s = U1 ":0:20," U2 ":0:12";
        _cleanup_(allocation_freep) Allocation *a = NULL;
        _cleanup_free_ char *t = NULL;
        char buf[UUID_STRING_MAX];

        assert_int_equal(allocation_from_string(s, strlen(s), &a), 0);
        assert_null(a->data);
        assert_int_equal(a->n_fragments, 2);
        assert_int_equal(a->size, 32);
        assert_string_equal(uuid_to_string(&a->fragments[0].block_uuid, buf), U1);
        assert_int_equal(a->fragments[0].start, 0);
        assert_int_equal(a->fragments[0].size, 20);
        assert_string_equal(uuid_to_string(&a->fragments[1].block_uuid, buf), U2);
        assert_int_equal(a->fragments[1].start, 0);
        assert_int_equal(a->fragments[1].size, 12);

        assert_int_equal(allocation_to_string(a, &t), 0);
        assert_string_equal(t, s);
}

static void test_string_upper_case(void **state) {
        const char *s = "9AD7F620-5A0C-4979-8A2D-66142E06FD79:7:3";
        _cleanup_(allocation_freep) Allocation *a = NULL;
        _cleanup_free_ char *t = NULL;

        assert_int_equal(allocation_from_string(s, strlen(s), &a), 0);
        assert_int_equal(allocation_to_string(a, &t), 0);
        assert_string_equal(t, U1 ":7:3");
}

static void test_string_limits(void **state) {
        _cleanup_(allocation_freep) Allocation *a = NULL;
        _cleanup_free_ char *s = NULL, *t = NULL;
        char *p;

        /* The largest values allowed, and PSRD_FRAGMENTS_MAX fragments. */
        s = malloc(PSRD_FRAGMENTS_MAX * 64);
        assert_non_null(s);
        p = s;
        for (size_t i = 0; i < PSRD_FRAGMENTS_MAX; i++)
                p += sprintf(p, "%s" U1 ":%zu:1", i > 0 ? "," : "", (size_t) PSRD_BLOCK_SIZE_MAX - 1 - i);

        assert_int_equal(allocation_from_string(s, strlen(s), &a), 0);
        assert_int_equal(a->n_fragments, PSRD_FRAGMENTS_MAX);
        assert_int_equal(a->size, PSRD_FRAGMENTS_MAX);
        assert_int_equal(allocation_to_string(a, &t), 0);
        assert_string_equal(t, s);
}

static void test_to_string_empty(void **state) {
        _cleanup_(allocation_freep) Allocation *a = allocation_new();
        char *s = NULL;

        assert_non_null(a);
        assert_int_equal(allocation_to_string(a, &s), -EINVAL);
        assert_null(s);
}

static void test_json_reference_bytes(void **state) {
        _cleanup_(allocation_freep) Allocation *a = NULL, *b = NULL;
        _cleanup_json_ json_object *o = NULL, *parsed = NULL;
        const char *s = U1 ":0:16";
        const char *expected = "{\"fragments\":[{\"block_uuid\":\"" U1 "\",\"start\":0,\"size\":16}]}";

        assert_int_equal(allocation_from_string(s, strlen(s), &a), 0);
        o = allocation_to_json(a);
        assert_non_null(o);
        assert_string_equal(json_object_to_json_string_ext(o, JSON_C_TO_STRING_DSKE), expected);

        parsed = json_tokener_parse(expected);
        assert_non_null(parsed);
        assert_int_equal(allocation_from_json(parsed, &b), 0);
        assert_true(allocation_fragments_equal(a, b));
        assert_null(b->data);
        assert_int_equal(b->size, 16);
}

static void test_json_two_fragments(void **state) {
        _cleanup_(allocation_freep) Allocation *a = NULL;
        _cleanup_json_ json_object *o = NULL, *parsed = NULL;
        const char *text = "{\"fragments\": [{\"block_uuid\": \"" U1 "\", \"start\": 20, \"size\": 12}, "
                           "{\"size\": 4, \"start\": 67108860, \"block_uuid\": \"" U2 "\"}]}";

        parsed = json_tokener_parse(text);
        assert_non_null(parsed);
        assert_int_equal(allocation_from_json(parsed, &a), 0);
        assert_int_equal(a->n_fragments, 2);
        assert_int_equal(a->fragments[0].start, 20);
        assert_int_equal(a->fragments[1].start, 67108860);
        assert_int_equal(a->size, 16);

        o = allocation_to_json(a);
        assert_non_null(o);
        assert_string_equal(json_object_to_json_string_ext(o, JSON_C_TO_STRING_DSKE),
                            "{\"fragments\":[{\"block_uuid\":\"" U1 "\",\"start\":20,\"size\":12},"
                            "{\"block_uuid\":\"" U2 "\",\"start\":67108860,\"size\":4}]}");
}

typedef struct MalformedCase {
        const char *input;
        int parse_error; /* 0 when the metadata is well formed */
        int take_error;  /* then the error pool_take() gives */
        size_t take_bad;
} MalformedCase;

static const MalformedCase malformed_strings[] = {
        {"", -EBADMSG, 0, 0},
        {",", -EBADMSG, 0, 0},
        {":", -EBADMSG, 0, 0},
        {"::", -EBADMSG, 0, 0},
        {U1, -EBADMSG, 0, 0},
        {U1 ":0", -EBADMSG, 0, 0},
        {U1 "::5", -EBADMSG, 0, 0},
        {U1 ":0:", -EBADMSG, 0, 0},
        {":0:5", -EBADMSG, 0, 0},
        {U1 ":0:5:", -EBADMSG, 0, 0},
        {U1 ":0:5:7", -EBADMSG, 0, 0},
        {U1 "::0:5", -EBADMSG, 0, 0},
        {U1 ":0:5,", -EBADMSG, 0, 0},
        {"," U1 ":0:5", -EBADMSG, 0, 0},
        {U1 ":0:5,," U2 ":0:5", -EBADMSG, 0, 0},
        {U1 ":0:5;" U2 ":0:5", -EBADMSG, 0, 0},
        {U1 ":-1:5", -EBADMSG, 0, 0},
        {U1 ":0:-5", -EBADMSG, 0, 0},
        {U1 ":+1:5", -EBADMSG, 0, 0},
        {U1 ": 1:5", -EBADMSG, 0, 0},
        {U1 ":1 :5", -EBADMSG, 0, 0},
        {U1 ":0:5 ", -EBADMSG, 0, 0},
        {U1 ":0:5\n", -EBADMSG, 0, 0},
        {" " U1 ":0:5", -EBADMSG, 0, 0},
        {U1 ":1_0:5", -EBADMSG, 0, 0},
        {U1 ":01:5", -EBADMSG, 0, 0},
        {U1 ":0:05", -EBADMSG, 0, 0},
        {U1 ":0x1:5", -EBADMSG, 0, 0},
        {U1 ":1.0:5", -EBADMSG, 0, 0},
        {U1 ":18446744073709551616:5", -EBADMSG, 0, 0},
        {U1 ":0:18446744073709551617", -EBADMSG, 0, 0},
        {U1 ":0:67108865", -EBADMSG, 0, 0},
        {U1 ":67108864:1", -EBADMSG, 0, 0},
        {U1 ":67108863:2", -EBADMSG, 0, 0},
        {U1 ":0:0", -EBADMSG, 0, 0},
        {U1 ":0:\xff", -EBADMSG, 0, 0},
        {U1 ":\xc3\xa9:5", -EBADMSG, 0, 0},
        {"9ad7f620-5a0c-4979-8a2d-66142e06fd\xc3\xa9:0:5", -EBADMSG, 0, 0},
        {"9ad7f620-5a0c-4979-8a2d-66142e06fd7:0:5", -EBADMSG, 0, 0},
        {"9ad7f620-5a0c-4979-8a2d-66142e06fd790:0:5", -EBADMSG, 0, 0},
        {"9ad7f6205a0c49798a2d66142e06fd79:0:5", -EBADMSG, 0, 0},
        {"{9ad7f620-5a0c-4979-8a2d-66142e06fd79}:0:5", -EBADMSG, 0, 0},
        {"urn:uuid:" U1 ":0:5", -EBADMSG, 0, 0},
        {U1 ":0:5," U2 ":0:0", -EBADMSG, 0, 0},
        /* Well formed, refused by the pool. */
        {U3 ":0:5", 0, -ENOENT, 0},
        {U1 ":0:5," U3 ":0:5", 0, -ENOENT, 1},
        {U1 ":96:5", 0, -ERANGE, 0},
        {U1 ":100:1", 0, -ERANGE, 0},
        {U2 ":0:51", 0, -ERANGE, 0},
        {U1 ":0:5," U2 ":49:2", 0, -ERANGE, 1},
        {U1 ":5:10", 0, -EALREADY, 0},
        {U1 ":19:1", 0, -EALREADY, 0},
        {U2 ":0:5," U1 ":0:11", 0, -EALREADY, 1},
        {U1 ":0:5," U1 ":4:2", 0, -EBADMSG, 1},
        {U2 ":0:5," U2 ":0:5", 0, -EBADMSG, 1},
        {U2 ":10:5," U1 ":0:1," U2 ":0:11", 0, -EBADMSG, 2},
};

static void check_malformed(Pool *p, const MalformedCase *c, Allocation *a, int parse_r) {
        PoolSnapshot before, after;
        size_t bad = SIZE_MAX;

        assert_int_equal(parse_r, c->parse_error);
        if (parse_r < 0) {
                assert_null(a);
                return;
        }

        assert_non_null(a);
        pool_snapshot(p, &before);
        assert_int_equal(pool_take(p, a, 0, &bad), c->take_error);
        assert_int_equal(bad, c->take_bad);
        assert_null(a->data);
        pool_snapshot(p, &after);
        assert_snapshot_equal(&before, &after);
}

static void test_string_malformed(void **state) {
        _cleanup_(pool_freep) Pool *p = receiver_pool_new();

        for (size_t i = 0; i < ELEMENTSOF(malformed_strings); i++) {
                const MalformedCase *c = &malformed_strings[i];
                _cleanup_(allocation_freep) Allocation *a = NULL;
                int r;

                print_message("%zu: %s\n", i, c->input);
                r = allocation_from_string(c->input, strlen(c->input), &a);
                check_malformed(p, c, a, r);
        }
}

static void test_string_huge(void **state) {
        _cleanup_(allocation_freep) Allocation *a = NULL;
        _cleanup_free_ char *s = NULL;
        size_t n = 1024 * 1024;
        char *q;

        s = malloc(n + 128);
        assert_non_null(s);

        /* A megabyte of digits as the start. */
        q = s + sprintf(s, U1 ":");
        memset(q, '7', n);
        strcpy(q + n, ":5");
        assert_int_equal(allocation_from_string(s, strlen(s), &a), -EBADMSG);
        assert_null(a);

        /* One fragment more than allowed. */
        q = s;
        for (size_t i = 0; i <= PSRD_FRAGMENTS_MAX; i++)
                q += sprintf(q, "%s" U2 ":%zu:1", i > 0 ? "," : "", i);
        assert_int_equal(allocation_from_string(s, strlen(s), &a), -E2BIG);
        assert_null(a);

        /* The length given counts, not the NUL: the same text cut after 64 fragments is fine. */
        assert_int_equal(allocation_from_string(s, (size_t) (strrchr(s, ',') - s), &a), 0);
        assert_int_equal(a->n_fragments, PSRD_FRAGMENTS_MAX);

        /* An embedded NUL is not part of any valid field. */
        a = allocation_free(a);
        assert_int_equal(allocation_from_string(U1 ":0:5\0", sizeof(U1 ":0:5\0") - 1, &a), -EBADMSG);
        assert_null(a);
}

static void test_string_valid_take(void **state) {
        _cleanup_(pool_freep) Pool *p = receiver_pool_new();
        _cleanup_(allocation_freep) Allocation *a = NULL;
        const char *s = U1 ":0:5," U2 ":7:3," U1 ":20:2";
        static const uint8_t expected[] = {1, 2, 3, 4, 5, 8, 9, 10, 21, 22};

        assert_int_equal(allocation_from_string(s, strlen(s), &a), 0);
        assert_int_equal(pool_take(p, a, sizeof(expected), NULL), 0);
        assert_non_null(a->data);
        assert_memory_equal(a->data, expected, sizeof(expected));
        assert_int_equal(pool_available(p), B1_SIZE + B2_SIZE - 10 - sizeof(expected));
}

static const MalformedCase malformed_json[] = {
        {"null", -EBADMSG, 0, 0},
        {"1", -EBADMSG, 0, 0},
        {"\"" U1 ":0:5\"", -EBADMSG, 0, 0},
        {"[]", -EBADMSG, 0, 0},
        {"[{\"block_uuid\":\"" U1 "\",\"start\":0,\"size\":5}]", -EBADMSG, 0, 0},
        {"{}", -EBADMSG, 0, 0},
        {"{\"fragments\":[]}", -EBADMSG, 0, 0},
        {"{\"fragments\":{}}", -EBADMSG, 0, 0},
        {"{\"fragments\":null}", -EBADMSG, 0, 0},
        {"{\"fragments\":\"" U1 ":0:5\"}", -EBADMSG, 0, 0},
        {"{\"fragments\":[1]}", -EBADMSG, 0, 0},
        {"{\"fragments\":[null]}", -EBADMSG, 0, 0},
        {"{\"fragments\":[[]]}", -EBADMSG, 0, 0},
        {"{\"Fragments\":[{\"block_uuid\":\"" U1 "\",\"start\":0,\"size\":5}]}", -EBADMSG, 0, 0},
        {"{\"fragments\":[{\"block_uuid\":\"" U1 "\",\"start\":0,\"size\":5}],\"x\":1}", -EBADMSG, 0, 0},
        {"{\"fragments\":[{\"block_uuid\":\"" U1 "\",\"start\":0,\"size\":5,\"x\":1}]}", -EBADMSG, 0, 0},
        {"{\"fragments\":[{\"block_uuid\":\"" U1 "\",\"start\":0}]}", -EBADMSG, 0, 0},
        {"{\"fragments\":[{\"block_uuid\":\"" U1 "\",\"size\":5}]}", -EBADMSG, 0, 0},
        {"{\"fragments\":[{\"start\":0,\"size\":5}]}", -EBADMSG, 0, 0},
        {"{\"fragments\":[{\"block_uuid\":\"" U1 "\",\"start_byte\":0,\"size\":5}]}", -EBADMSG, 0, 0},
        {"{\"fragments\":[{\"block_uuid\":\"" U1 "\",\"start\":\"0\",\"size\":5}]}", -EBADMSG, 0, 0},
        {"{\"fragments\":[{\"block_uuid\":\"" U1 "\",\"start\":0,\"size\":\"5\"}]}", -EBADMSG, 0, 0},
        {"{\"fragments\":[{\"block_uuid\":\"" U1 "\",\"start\":0.0,\"size\":5}]}", -EBADMSG, 0, 0},
        {"{\"fragments\":[{\"block_uuid\":\"" U1 "\",\"start\":0,\"size\":5.0}]}", -EBADMSG, 0, 0},
        {"{\"fragments\":[{\"block_uuid\":\"" U1 "\",\"start\":0,\"size\":5e0}]}", -EBADMSG, 0, 0},
        {"{\"fragments\":[{\"block_uuid\":\"" U1 "\",\"start\":false,\"size\":5}]}", -EBADMSG, 0, 0},
        {"{\"fragments\":[{\"block_uuid\":\"" U1 "\",\"start\":0,\"size\":true}]}", -EBADMSG, 0, 0},
        {"{\"fragments\":[{\"block_uuid\":\"" U1 "\",\"start\":null,\"size\":5}]}", -EBADMSG, 0, 0},
        {"{\"fragments\":[{\"block_uuid\":\"" U1 "\",\"start\":-1,\"size\":5}]}", -EBADMSG, 0, 0},
        {"{\"fragments\":[{\"block_uuid\":\"" U1 "\",\"start\":0,\"size\":-5}]}", -EBADMSG, 0, 0},
        {"{\"fragments\":[{\"block_uuid\":\"" U1 "\",\"start\":0,\"size\":0}]}", -EBADMSG, 0, 0},
        {"{\"fragments\":[{\"block_uuid\":\"" U1 "\",\"start\":0,\"size\":67108865}]}", -EBADMSG, 0, 0},
        {"{\"fragments\":[{\"block_uuid\":\"" U1 "\",\"start\":67108864,\"size\":1}]}", -EBADMSG, 0, 0},
        {"{\"fragments\":[{\"block_uuid\":\"" U1 "\",\"start\":9223372036854775807,\"size\":1}]}", -EBADMSG,
         0, 0},
        {"{\"fragments\":[{\"block_uuid\":\"" U1 "\",\"start\":18446744073709551615,\"size\":1}]}", -EBADMSG,
         0, 0},
        {"{\"fragments\":[{\"block_uuid\":\"" U1 "\",\"start\":18446744073709551616,\"size\":1}]}", -EBADMSG,
         0, 0},
        {"{\"fragments\":[{\"block_uuid\":\"" U1 "\",\"start\":0,\"size\":-9223372036854775808}]}", -EBADMSG,
         0, 0},
        {"{\"fragments\":[{\"block_uuid\":1,\"start\":0,\"size\":5}]}", -EBADMSG, 0, 0},
        {"{\"fragments\":[{\"block_uuid\":null,\"start\":0,\"size\":5}]}", -EBADMSG, 0, 0},
        {"{\"fragments\":[{\"block_uuid\":\"\",\"start\":0,\"size\":5}]}", -EBADMSG, 0, 0},
        {"{\"fragments\":[{\"block_uuid\":\"{" U1 "}\",\"start\":0,\"size\":5}]}", -EBADMSG, 0, 0},
        {"{\"fragments\":[{\"block_uuid\":\"9ad7f620-5a0c-4979-8a2d-66142e06fd7\\u0000\",\"start\":0,"
         "\"size\":5}]}",
         -EBADMSG, 0, 0},
        {"{\"fragments\":[{\"block_uuid\":\"9ad7f620-5a0c-4979-8a2d-66142e06fd\xc3\xa9\",\"start\":0,"
         "\"size\":5}]}",
         -EBADMSG, 0, 0},
        /* Well formed, refused by the pool. */
        {"{\"fragments\":[{\"block_uuid\":\"" U3 "\",\"start\":0,\"size\":5}]}", 0, -ENOENT, 0},
        {"{\"fragments\":[{\"block_uuid\":\"" U2 "\",\"start\":46,\"size\":5}]}", 0, -ERANGE, 0},
        {"{\"fragments\":[{\"block_uuid\":\"" U2 "\",\"start\":0,\"size\":1},"
         "{\"block_uuid\":\"" U1 "\",\"start\":0,\"size\":11}]}",
         0, -EALREADY, 1},
        {"{\"fragments\":[{\"block_uuid\":\"" U2 "\",\"start\":0,\"size\":3},"
         "{\"block_uuid\":\"" U2 "\",\"start\":2,\"size\":3}]}",
         0, -EBADMSG, 1},
};

static void test_json_malformed(void **state) {
        _cleanup_(pool_freep) Pool *p = receiver_pool_new();

        for (size_t i = 0; i < ELEMENTSOF(malformed_json); i++) {
                const MalformedCase *c = &malformed_json[i];
                _cleanup_(allocation_freep) Allocation *a = NULL;
                _cleanup_json_ json_object *o = NULL;
                int r;

                print_message("%zu: %s\n", i, c->input);
                o = json_tokener_parse(c->input);
                /* "null" parses to NULL, which is as much not an object as anything. */
                if (!streq(c->input, "null"))
                        assert_non_null(o);
                r = allocation_from_json(o, &a);
                check_malformed(p, c, a, r);
        }
}

static void test_json_too_many(void **state) {
        _cleanup_(allocation_freep) Allocation *a = NULL;
        _cleanup_json_ json_object *o = NULL, *array = NULL;
        Uuid u;

        uuid_parse_or_die(U2, &u);
        a = allocation_new();
        assert_non_null(a);
        for (size_t i = 0; i < PSRD_FRAGMENTS_MAX; i++)
                assert_int_equal(allocation_add_fragment(a, &u, i, 1), 0);
        assert_int_equal(allocation_add_fragment(a, &u, 99, 1), -E2BIG);

        o = allocation_to_json(a);
        assert_non_null(o);
        a = allocation_free(a);
        assert_int_equal(allocation_from_json(o, &a), 0);
        assert_int_equal(a->n_fragments, PSRD_FRAGMENTS_MAX);
        a = allocation_free(a);

        /* One more element than allowed. */
        assert_true(json_object_object_get_ex(o, "fragments", &array));
        assert_int_equal(json_object_array_add(array, json_object_get(json_object_array_get_idx(array, 0))),
                         0);
        array = NULL;
        assert_int_equal(allocation_from_json(o, &a), -E2BIG);
        assert_null(a);
}

static void test_add_fragment_limits(void **state) {
        _cleanup_(allocation_freep) Allocation *a = allocation_new();
        Uuid u;

        uuid_parse_or_die(U1, &u);
        assert_non_null(a);
        assert_int_equal(allocation_add_fragment(a, &u, 0, 0), -EINVAL);
        assert_int_equal(allocation_add_fragment(a, &u, SIZE_MAX, 1), -ERANGE);
        assert_int_equal(allocation_add_fragment(a, &u, 1, SIZE_MAX), -ERANGE);
        assert_int_equal(allocation_add_fragment(a, &u, PSRD_BLOCK_SIZE_MAX, 1), -ERANGE);
        assert_int_equal(allocation_add_fragment(a, &u, 0, PSRD_BLOCK_SIZE_MAX), 0);
        assert_int_equal(a->n_fragments, 1);
        assert_int_equal(a->size, PSRD_BLOCK_SIZE_MAX);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_string_example),       cmocka_unit_test(test_string_upper_case),
                cmocka_unit_test(test_string_limits),        cmocka_unit_test(test_to_string_empty),
                cmocka_unit_test(test_json_reference_bytes), cmocka_unit_test(test_json_two_fragments),
                cmocka_unit_test(test_string_malformed),     cmocka_unit_test(test_string_huge),
                cmocka_unit_test(test_string_valid_take),    cmocka_unit_test(test_json_malformed),
                cmocka_unit_test(test_json_too_many),        cmocka_unit_test(test_add_fragment_limits),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
