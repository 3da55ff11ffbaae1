/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "auth.h"
#include "codec.h"
#include "json-util.h"
#include "psrd-metadata.h"
#include "psrd.h"
#include "secret.h"
#include "share-msg.h"

#define KEY_ID "0aa99444-fddc-44d2-ac23-49657e5e6021"
#define U1     "9ad7f620-5a0c-4979-8a2d-66142e06fd79"
#define U2     "cda527e9-5ca7-40d6-a842-0b606597611c"

/* PROTOCOL.md §4.8, string B. */
#define BODY_B                                                                                              \
        "{\"master_client_name\":\"carol\",\"master_sae_id\":\"sam\",\"slave_sae_id\":\"sofia\","           \
        "\"user_key_id\":\"" KEY_ID "\",\"share_index\":0,\"encryption_key_allocation\":{\"fragments\":"    \
        "[{\"block_uuid\":\"" U1 "\",\"start\":0,\"size\":16}]},\"encrypted_share_value\":"                 \
        "\"AAECAwQFBgcICQoLDA0ODw==\"}"

#define REPLY_B                                                                                             \
        "{\"share_index\":3,\"encryption_key_allocation\":{\"fragments\":[{\"block_uuid\":\"" U1            \
        "\",\"start\":0,\"size\":16}]},\"encrypted_share_value\":\"AAECAwQFBgcICQoLDA0ODw==\"}"

static Uuid uuid_or_die(const char *s) {
        Uuid u;

        assert_int_equal(uuid_from_string(s, &u), 0);
        return u;
}

/* An allocation with key material, as pool_allocate() returns it. */
static Allocation *pad_new(const Fragment *f, size_t n, uint8_t fill) {
        Allocation *a = allocation_new();

        assert_non_null(a);
        for (size_t i = 0; i < n; i++)
                assert_int_equal(allocation_add_fragment(a, &f[i].block_uuid, f[i].start, f[i].size), 0);
        a->data = secret_alloc(a->size);
        assert_non_null(a->data);
        memset(a->data, fill, a->size);
        return a;
}

static void test_post_reference_bytes(void **state) {
        static const uint8_t key[32] = {0,  1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 12, 13, 14, 15,
                                        16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31};
        Fragment f = {.block_uuid = uuid_or_die(U1), .start = 0, .size = 16};
        _cleanup_(allocation_freep) Allocation *pad = pad_new(&f, 1, 0xa5);
        _cleanup_free_ char *body = NULL, *b64 = NULL;
        Uuid key_id = uuid_or_die(KEY_ID);
        uint8_t share[16], mac[DSKE_MAC_SIZE];
        size_t size;

        /* share XOR pad = 00 01 … 0f */
        for (size_t i = 0; i < sizeof(share); i++)
                share[i] = (uint8_t) (i ^ 0xa5);
        assert_int_equal(share_post_format("carol", "sam", "sofia", &key_id, 0, pad, share, sizeof(share),
                                           &body, &size),
                         0);
        assert_string_equal(body, BODY_B);
        assert_int_equal(size, strlen(BODY_B));

        assert_int_equal(dske_mac(key, sizeof(key), NULL, 0, body, size, mac), 0);
        assert_int_equal(base64_encode(mac, sizeof(mac), &b64), 0);
        assert_string_equal(b64, "NMJ5WfhXzGps8/3PYbGWuZFm9hjiMeE4tJ4oJmu5k+w=");
}

static void test_reply_reference_bytes(void **state) {
        Fragment f = {.block_uuid = uuid_or_die(U1), .start = 0, .size = 16};
        _cleanup_(allocation_freep) Allocation *pad = pad_new(&f, 1, 0);
        _cleanup_free_ char *body = NULL;
        uint8_t share[16];
        size_t size;

        for (size_t i = 0; i < sizeof(share); i++)
                share[i] = (uint8_t) i;
        assert_int_equal(share_reply_format(3, pad, share, sizeof(share), &body, &size), 0);
        assert_string_equal(body, REPLY_B);
        assert_int_equal(size, strlen(REPLY_B));
}

/* The bodies must be byte for byte what json-c made of the same values before (the MAC covers
 * them), also with several fragments, large numbers and a share longer than one base64 group. */
static void test_same_bytes_as_json_c(void **state) {
        const Fragment f[] = {
                {.block_uuid = uuid_or_die(U1), .start = 1999, .size = 1},
                {.block_uuid = uuid_or_die(U2), .start = 0, .size = 99},
                {.block_uuid = uuid_or_die(U1), .start = 1234567, .size = 100},
        };
        _cleanup_(allocation_freep) Allocation *pad = pad_new(f, 3, 0x3c);
        _cleanup_json_ json_object *post = json_object_new_object(), *reply = json_object_new_object();
        _cleanup_free_ char *body = NULL, *body2 = NULL, *cipher_b64 = NULL;
        Uuid key_id = uuid_or_die(KEY_ID);
        uint8_t share[200], cipher[200];
        size_t size;

        for (size_t i = 0; i < sizeof(share); i++) {
                share[i] = (uint8_t) (i * 7 + 1);
                cipher[i] = share[i] ^ 0x3c;
        }
        assert_int_equal(base64_encode(cipher, sizeof(cipher), &cipher_b64), 0);

        json_object_object_add(post, "master_client_name", json_object_new_string("c-1.x_y"));
        json_object_object_add(post, "master_sae_id", json_object_new_string("Sam"));
        json_object_object_add(post, "slave_sae_id", json_object_new_string("s0"));
        json_object_object_add(post, "user_key_id", json_object_new_string(KEY_ID));
        json_object_object_add(post, "share_index", json_object_new_int(15));
        json_object_object_add(post, "encryption_key_allocation", allocation_to_json(pad));
        json_object_object_add(post, "encrypted_share_value", json_object_new_string(cipher_b64));
        assert_int_equal(share_post_format("c-1.x_y", "Sam", "s0", &key_id, 15, pad, share, sizeof(share),
                                           &body, &size),
                         0);
        assert_string_equal(body, json_object_to_json_string_ext(post, JSON_C_TO_STRING_DSKE));
        assert_int_equal(size, strlen(body));

        json_object_object_add(reply, "share_index", json_object_new_int(15));
        json_object_object_add(reply, "encryption_key_allocation", allocation_to_json(pad));
        json_object_object_add(reply, "encrypted_share_value", json_object_new_string(cipher_b64));
        assert_int_equal(share_reply_format(15, pad, share, sizeof(share), &body2, &size), 0);
        assert_string_equal(body2, json_object_to_json_string_ext(reply, JSON_C_TO_STRING_DSKE));
        assert_int_equal(size, strlen(body2));
}

static void test_format_refuses(void **state) {
        Fragment f = {.block_uuid = uuid_or_die(U1), .start = 0, .size = 4};
        _cleanup_(allocation_freep) Allocation *pad = pad_new(&f, 1, 0);
        Uuid key_id = uuid_or_die(KEY_ID);
        uint8_t share[4] = {1, 2, 3, 4};
        char *body = NULL;
        size_t size;

        /* Names that would need escaping, or are not names. */
        assert_int_equal(share_post_format("a\"b", "sam", "sofia", &key_id, 0, pad, share, 4, &body, &size),
                         -EINVAL);
        assert_int_equal(
                share_post_format("carol", "sa\\m", "sofia", &key_id, 0, pad, share, 4, &body, &size),
                -EINVAL);
        assert_int_equal(share_post_format("carol", "sam", "", &key_id, 0, pad, share, 4, &body, &size),
                         -EINVAL);
        /* The pad must cover the share exactly. */
        assert_int_equal(share_post_format("carol", "sam", "sofia", &key_id, 0, pad, share, 3, &body, &size),
                         -EINVAL);
        assert_int_equal(share_reply_format(0, pad, share, 3, &body, &size), -EINVAL);
        free(TAKE_PTR(pad->data));
        assert_int_equal(share_reply_format(0, pad, share, 4, &body, &size), -EINVAL);
        assert_null(body);
}

static void test_parse_reference(void **state) {
        _cleanup_(share_post_view_done) SharePostView v = {};
        _cleanup_(share_reply_view_done) ShareReplyView r = {};
        Uuid u1 = uuid_or_die(U1);

        assert_int_equal(share_post_parse(BODY_B, strlen(BODY_B), &v), 0);
        assert_string_equal(v.master_client_name, "carol");
        assert_string_equal(v.master_sae_id, "sam");
        assert_string_equal(v.slave_sae_id, "sofia");
        assert_string_equal(v.user_key_id, KEY_ID);
        assert_int_equal(v.share_index, 0);
        assert_non_null(v.encryption_key);
        assert_int_equal(v.encryption_key->n_fragments, 1);
        assert_true(uuid_equal(&v.encryption_key->fragments[0].block_uuid, &u1));
        assert_int_equal(v.encryption_key->fragments[0].start, 0);
        assert_int_equal(v.encryption_key->fragments[0].size, 16);
        assert_null(v.encryption_key->data);
        assert_int_equal(v.encrypted_share_value_size, strlen("AAECAwQFBgcICQoLDA0ODw=="));
        assert_memory_equal(v.encrypted_share_value,
                            "AAECAwQFBgcICQoLDA0ODw==", v.encrypted_share_value_size);

        assert_int_equal(share_reply_parse(REPLY_B, strlen(REPLY_B), &r), 0);
        assert_int_equal(r.share_index, 3);
        assert_int_equal(r.encryption_key->size, 16);
        assert_memory_equal(r.encrypted_share_value,
                            "AAECAwQFBgcICQoLDA0ODw==", r.encrypted_share_value_size);
}

/* What the hub's general path makes of a body: strict json-c and the same member checks. */
typedef struct Fields {
        char strings[4][128];
        int64_t share_index;
        Allocation *allocation;
        char value[512];
} Fields;

static bool json_fields(const char *body, size_t size, Fields *ret) {
        static const char *const names[] = {"master_client_name", "master_sae_id", "slave_sae_id",
                                            "user_key_id"};
        _cleanup_json_ json_object *o = NULL;
        json_tokener *tok = json_tokener_new();
        json_object *v;
        size_t end;

        assert_non_null(tok);
        json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_ALLOW_TRAILING_CHARS |
                                            JSON_TOKENER_VALIDATE_UTF8);
        o = json_tokener_parse_ex(tok, body, (int) size);
        end = json_tokener_get_parse_end(tok);
        if (!o || json_tokener_get_error(tok) != json_tokener_success) {
                json_tokener_free(tok);
                return false;
        }
        json_tokener_free(tok);
        for (size_t i = end; i < size; i++)
                if (!strchr(" \t\r\n", body[i]) || body[i] == '\0')
                        return false;
        if (!json_object_is_type(o, json_type_object))
                return false;

        memset(ret, 0, sizeof(*ret));
        for (size_t i = 0; i < ELEMENTSOF(names); i++) {
                if (!json_object_object_get_ex(o, names[i], &v) ||
                    !json_object_is_type(v, json_type_string) ||
                    (size_t) json_object_get_string_len(v) >= sizeof(ret->strings[i]) ||
                    strlen(json_object_get_string(v)) != (size_t) json_object_get_string_len(v))
                        return false;
                strcpy(ret->strings[i], json_object_get_string(v));
        }
        if (!json_object_object_get_ex(o, "share_index", &v) || !json_object_is_type(v, json_type_int))
                return false;
        ret->share_index = json_object_get_int64(v);
        if (!json_object_object_get_ex(o, "encryption_key_allocation", &v) ||
            allocation_from_json(v, &ret->allocation) < 0)
                return false;
        if (!json_object_object_get_ex(o, "encrypted_share_value", &v) ||
            !json_object_is_type(v, json_type_string) ||
            (size_t) json_object_get_string_len(v) >= sizeof(ret->value)) {
                ret->allocation = allocation_free(ret->allocation);
                return false;
        }
        strcpy(ret->value, json_object_get_string(v));
        return true;
}

/* Whatever the fast reader accepts, the general path accepts with the same values. */
static void check_subset(const char *body, size_t size) {
        _cleanup_(share_post_view_done) SharePostView v = {};
        Fields f;

        if (share_post_parse(body, size, &v) < 0) {
                assert_null(v.encryption_key);
                return;
        }
        assert_true(json_fields(body, size, &f));
        assert_string_equal(f.strings[0], v.master_client_name);
        assert_string_equal(f.strings[1], v.master_sae_id);
        assert_string_equal(f.strings[2], v.slave_sae_id);
        assert_string_equal(f.strings[3], v.user_key_id);
        assert_int_equal(f.share_index, v.share_index);
        assert_true(allocation_fragments_equal(f.allocation, v.encryption_key));
        assert_int_equal(strlen(f.value), v.encrypted_share_value_size);
        assert_memory_equal(f.value, v.encrypted_share_value, v.encrypted_share_value_size);
        allocation_free(f.allocation);
}

static void test_parse_mutations(void **state) {
        static const char replacements[] = " \t\"\\09-aAzZ,:{}[]=+/.x\x01\x7f\x80\xff";
        const char *b = BODY_B;
        size_t n = strlen(b);
        char buf[sizeof(BODY_B) + 1];

        check_subset(b, n);
        for (size_t i = 0; i < n; i++) {
                /* Every proper prefix is refused. */
                SharePostView v;
                assert_int_equal(share_post_parse(b, i, &v), -EBADMSG);

                /* One character replaced, deleted or inserted. */
                for (size_t k = 0; k < sizeof(replacements); k++) {
                        memcpy(buf, b, n);
                        buf[i] = replacements[k];
                        check_subset(buf, n);

                        memcpy(buf, b, i);
                        buf[i] = replacements[k];
                        memcpy(buf + i + 1, b + i, n - i);
                        check_subset(buf, n + 1);
                }
                memcpy(buf, b, i);
                memcpy(buf + i, b + i + 1, n - i - 1);
                check_subset(buf, n - 1);
        }
}

static void test_parse_refuses(void **state) {
        static const char *const bad[] = {
                /* Valid JSON in another form: left to the general parser. */
                "{ \"master_client_name\":\"carol\",\"master_sae_id\":\"sam\",\"slave_sae_id\":\"sofia\","
                "\"user_key_id\":\"" KEY_ID
                "\",\"share_index\":0,\"encryption_key_allocation\":{\"fragments\":"
                "[{\"block_uuid\":\"" U1 "\",\"start\":0,\"size\":16}]},\"encrypted_share_value\":\"AAAA\"}",
                BODY_B " ",
                BODY_B "x",
                "{\"master_client_name\":\"car\\u006fl\",\"master_sae_id\":\"sam\",\"slave_sae_id\":"
                "\"sofia\","
                "\"user_key_id\":\"" KEY_ID
                "\",\"share_index\":0,\"encryption_key_allocation\":{\"fragments\":"
                "[{\"block_uuid\":\"" U1 "\",\"start\":0,\"size\":16}]},\"encrypted_share_value\":\"AAAA\"}",
                "{\"master_client_name\":\"carol\",\"master_sae_id\":\"sam\",\"slave_sae_id\":\"sofia\","
                "\"user_key_id\":\"" KEY_ID
                "\",\"share_index\":00,\"encryption_key_allocation\":{\"fragments\":"
                "[{\"block_uuid\":\"" U1 "\",\"start\":0,\"size\":16}]},\"encrypted_share_value\":\"AAAA\"}",
                "{\"master_client_name\":\"carol\",\"master_sae_id\":\"sam\",\"slave_sae_id\":\"sofia\","
                "\"user_key_id\":\"" KEY_ID
                "\",\"share_index\":-1,\"encryption_key_allocation\":{\"fragments\":"
                "[{\"block_uuid\":\"" U1 "\",\"start\":0,\"size\":16}]},\"encrypted_share_value\":\"AAAA\"}",
                "{\"master_client_name\":\"carol\",\"master_sae_id\":\"sam\",\"slave_sae_id\":\"sofia\","
                "\"user_key_id\":\"" KEY_ID "\",\"share_index\":1000000000000000000,"
                "\"encryption_key_allocation\":{\"fragments\":"
                "[{\"block_uuid\":\"" U1 "\",\"start\":0,\"size\":16}]},\"encrypted_share_value\":\"AAAA\"}",
                /* The order of members differs. */
                "{\"master_sae_id\":\"sam\",\"master_client_name\":\"carol\",\"slave_sae_id\":\"sofia\","
                "\"user_key_id\":\"" KEY_ID
                "\",\"share_index\":0,\"encryption_key_allocation\":{\"fragments\":"
                "[{\"block_uuid\":\"" U1 "\",\"start\":0,\"size\":16}]},\"encrypted_share_value\":\"AAAA\"}",
                /* An extra member. */
                "{\"master_client_name\":\"carol\",\"master_sae_id\":\"sam\",\"slave_sae_id\":\"sofia\","
                "\"user_key_id\":\"" KEY_ID
                "\",\"share_index\":0,\"encryption_key_allocation\":{\"fragments\":"
                "[{\"block_uuid\":\"" U1 "\",\"start\":0,\"size\":16}]},\"encrypted_share_value\":\"AAAA\","
                "\"x\":1}",
                /* Allocations allocation_from_json() refuses. */
                "{\"master_client_name\":\"carol\",\"master_sae_id\":\"sam\",\"slave_sae_id\":\"sofia\","
                "\"user_key_id\":\"" KEY_ID
                "\",\"share_index\":0,\"encryption_key_allocation\":{\"fragments\":"
                "[]},\"encrypted_share_value\":\"AAAA\"}",
                "{\"master_client_name\":\"carol\",\"master_sae_id\":\"sam\",\"slave_sae_id\":\"sofia\","
                "\"user_key_id\":\"" KEY_ID
                "\",\"share_index\":0,\"encryption_key_allocation\":{\"fragments\":"
                "[{\"block_uuid\":\"" U1 "\",\"start\":0,\"size\":0}]},\"encrypted_share_value\":\"AAAA\"}",
                "{\"master_client_name\":\"carol\",\"master_sae_id\":\"sam\",\"slave_sae_id\":\"sofia\","
                "\"user_key_id\":\"" KEY_ID
                "\",\"share_index\":0,\"encryption_key_allocation\":{\"fragments\":"
                "[{\"block_uuid\":\"9ad7f620-5a0c-4979-8a2d-66142e06fd7g\",\"start\":0,\"size\":1}]},"
                "\"encrypted_share_value\":\"AAAA\"}",
                "{\"master_client_name\":\"carol\",\"master_sae_id\":\"sam\",\"slave_sae_id\":\"sofia\","
                "\"user_key_id\":\"" KEY_ID
                "\",\"share_index\":0,\"encryption_key_allocation\":{\"fragments\":"
                "[{\"block_uuid\":\"" U1 "\",\"start\":999999999999,\"size\":1}]},"
                "\"encrypted_share_value\":\"AAAA\"}",
                /* Names longer than any valid one. */
                "{\"master_client_name\":"
                "\"c123456789012345678901234567890123456789012345678901234567890123\","
                "\"master_sae_id\":\"sam\",\"slave_sae_id\":\"sofia\","
                "\"user_key_id\":\"" KEY_ID
                "\",\"share_index\":0,\"encryption_key_allocation\":{\"fragments\":"
                "[{\"block_uuid\":\"" U1 "\",\"start\":0,\"size\":16}]},\"encrypted_share_value\":\"AAAA\"}",
                "",
        };

        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                SharePostView v;

                assert_int_equal(share_post_parse(bad[i], strlen(bad[i]), &v), -EBADMSG);
                assert_null(v.encryption_key);
                check_subset(bad[i], strlen(bad[i]));
        }
}

static void test_parse_too_many_fragments(void **state) {
        _cleanup_free_ char *body = NULL;
        char *p;
        SharePostView v;

        body = malloc(200 + (PSRD_FRAGMENTS_MAX + 1) * 80);
        assert_non_null(body);
        p = body + sprintf(body, "{\"share_index\":1,\"encryption_key_allocation\":{\"fragments\":[");
        for (size_t i = 0; i <= PSRD_FRAGMENTS_MAX; i++)
                p += sprintf(p, "%s{\"block_uuid\":\"" U1 "\",\"start\":%zu,\"size\":1}", i > 0 ? "," : "",
                             i);
        p += sprintf(p, "]},\"encrypted_share_value\":\"AAAA\"}");

        ShareReplyView r;
        assert_int_equal(share_reply_parse(body, (size_t) (p - body), &r), -EBADMSG);
        assert_null(r.encryption_key);
        assert_int_equal(share_post_parse(body, (size_t) (p - body), &v), -EBADMSG);
}

static void test_round_trip(void **state) {
        const Fragment f[] = {
                {.block_uuid = uuid_or_die(U2), .start = 7, .size = 30},
                {.block_uuid = uuid_or_die(U1), .start = 0, .size = 20},
        };
        _cleanup_(allocation_freep) Allocation *pad = pad_new(f, 2, 0x5a);
        _cleanup_(share_reply_view_done) ShareReplyView r = {};
        _cleanup_free_ char *body = NULL;
        uint8_t share[50], decoded[50];
        size_t size, n;

        for (size_t i = 0; i < sizeof(share); i++)
                share[i] = (uint8_t) (255 - i);
        assert_int_equal(share_reply_format(9, pad, share, sizeof(share), &body, &size), 0);
        assert_int_equal(share_reply_parse(body, size, &r), 0);
        assert_int_equal(r.share_index, 9);
        assert_true(allocation_fragments_equal(r.encryption_key, pad));
        assert_int_equal(base64_decode_into(r.encrypted_share_value, r.encrypted_share_value_size, decoded,
                                            sizeof(decoded), &n),
                         0);
        assert_int_equal(n, sizeof(share));
        for (size_t i = 0; i < n; i++)
                assert_int_equal(decoded[i] ^ 0x5a, share[i]);
}

static void test_allocation_writers(void **state) {
        const Fragment f[] = {
                {.block_uuid = uuid_or_die(U1), .start = 0, .size = 9},
                {.block_uuid = uuid_or_die(U2), .start = 10, .size = 1000000},
        };
        _cleanup_(allocation_freep) Allocation *a = pad_new(f, 2, 0);
        _cleanup_json_ json_object *j = allocation_to_json(a);
        _cleanup_free_ char *s = NULL;
        char buf[512], *e;

        assert_int_equal(allocation_to_string(a, &s), 0);
        assert_string_equal(s, U1 ":0:9," U2 ":10:1000000");
        assert_int_equal(allocation_string_length(a), strlen(s));

        e = allocation_json_write(a, buf);
        *e = '\0';
        assert_string_equal(buf, json_object_to_json_string_ext(j, JSON_C_TO_STRING_DSKE));
        assert_int_equal(allocation_json_length(a), strlen(buf));
}

static void test_base64_decode_into(void **state) {
        uint8_t buf[8];
        size_t n = 99;

        assert_int_equal(base64_decode_into("AAECAw==", 8, buf, sizeof(buf), &n), 0);
        assert_int_equal(n, 4);
        assert_memory_equal(buf, "\x00\x01\x02\x03", 4);
        assert_int_equal(base64_decode_into("", 0, NULL, 0, &n), 0);
        assert_int_equal(n, 0);
        assert_int_equal(base64_decode_into("QUJD", 4, buf, 3, &n), 0);
        assert_memory_equal(buf, "ABC", 3);

        n = 99;
        assert_int_equal(base64_decode_into("QUJDRA==", 8, buf, 3, &n), -ENOBUFS);
        assert_int_equal(base64_decode_into("QQ=", 3, buf, sizeof(buf), &n), -EINVAL);
        assert_int_equal(base64_decode_into("QR==", 4, buf, sizeof(buf), &n), -EINVAL);
        assert_int_equal(base64_decode_into("QU I", 4, buf, sizeof(buf), &n), -EINVAL);
        assert_int_equal(base64_decode_into("Q=JD", 4, buf, sizeof(buf), &n), -EINVAL);
        assert_int_equal(n, 99);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_post_reference_bytes), cmocka_unit_test(test_reply_reference_bytes),
                cmocka_unit_test(test_same_bytes_as_json_c), cmocka_unit_test(test_format_refuses),
                cmocka_unit_test(test_parse_reference),      cmocka_unit_test(test_parse_mutations),
                cmocka_unit_test(test_parse_refuses),        cmocka_unit_test(test_parse_too_many_fragments),
                cmocka_unit_test(test_round_trip),           cmocka_unit_test(test_allocation_writers),
                cmocka_unit_test(test_base64_decode_into),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
