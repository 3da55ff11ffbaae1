/* SPDX-License-Identifier: MIT */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <nettle/sha2.h>

#include "auth.h"
#include "codec.h"
#include "psrd-metadata.h"
#include "secret.h"

static void hex_decode(const char *hex, uint8_t *ret, size_t n) {
        assert_int_equal(strlen(hex), 2 * n);
        for (size_t i = 0; i < n; i++) {
                unsigned v;

                assert_int_equal(sscanf(hex + 2 * i, "%2x", &v), 1);
                ret[i] = (uint8_t) v;
        }
}

static void assert_b64_equal(const uint8_t *p, size_t n, const char *expected) {
        _cleanup_free_ char *s = NULL;

        assert_int_equal(base64_encode(p, n, &s), 0);
        assert_string_equal(s, expected);
}

/* RFC 4231 §4.2 to §4.8. */
static void test_hmac_sha256_rfc4231(void **state) {
        static const uint8_t key_20_0b[20] = {0x0b, 0x0b, 0x0b, 0x0b, 0x0b, 0x0b, 0x0b, 0x0b, 0x0b, 0x0b,
                                              0x0b, 0x0b, 0x0b, 0x0b, 0x0b, 0x0b, 0x0b, 0x0b, 0x0b, 0x0b};
        uint8_t key_aa[131], key_0c[20], key_25[25], data_dd[50], data_cd[50], mac[32], expected[32];
        const struct {
                const uint8_t *key;
                size_t key_size;
                const void *data;
                size_t data_size;
                const char *hmac_hex;
        } cases[] = {
                {key_20_0b, 20, "Hi There", 8,
                 "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"},
                {(const uint8_t *) "Jefe", 4, "what do ya want for nothing?", 28,
                 "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"},
                {key_aa, 20, data_dd, 50,
                 "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe"},
                {key_25, 25, data_cd, 50,
                 "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b"},
                /* Test case 5 specifies only the first 128 bits. */
                {key_0c, 20, "Test With Truncation", 20, "a3b6167473100ee06e0c796c2955552b"},
                {key_aa, 131, "Test Using Larger Than Block-Size Key - Hash Key First", 54,
                 "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"},
                {key_aa, 131,
                 "This is a test using a larger than block-size key and a larger than block-size data. The "
                 "key needs to be hashed before being used by the HMAC algorithm.",
                 152, "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2"},
        };

        memset(key_aa, 0xaa, sizeof(key_aa));
        memset(key_0c, 0x0c, sizeof(key_0c));
        for (unsigned i = 0; i < sizeof(key_25); i++)
                key_25[i] = (uint8_t) (i + 1);
        memset(data_dd, 0xdd, sizeof(data_dd));
        memset(data_cd, 0xcd, sizeof(data_cd));

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                size_t n = strlen(cases[i].hmac_hex) / 2;

                hex_decode(cases[i].hmac_hex, expected, n);

                hmac_sha256(
                        cases[i].key, cases[i].key_size,
                        &(struct iovec){.iov_base = (void *) cases[i].data, .iov_len = cases[i].data_size},
                        1, mac);
                assert_memory_equal(mac, expected, n);

                /* The same bytes cut into pieces, some of them empty, give the same MAC. */
                memset(mac, 0, sizeof(mac));
                hmac_sha256(cases[i].key, cases[i].key_size,
                            (const struct iovec[]){
                                    {.iov_base = NULL, .iov_len = 0},
                                    {.iov_base = (void *) cases[i].data, .iov_len = 3},
                                    {.iov_base = (uint8_t *) cases[i].data + 3, .iov_len = 0},
                                    {.iov_base = (uint8_t *) cases[i].data + 3,
                                     .iov_len = cases[i].data_size - 3},
                            },
                            4, mac);
                assert_memory_equal(mac, expected, n);
        }
}

/* PROTOCOL.md §4.8 */
static const char vector_query[] = "client_name=connie&master_sae_id=sam&slave_sae_id=sofia&key_id=0aa99444-"
                                   "fddc-44d2-ac23-49657e5e6021";
static const char vector_body_b[] =
        "{\"master_client_name\":\"carol\",\"master_sae_id\":\"sam\",\"slave_sae_id\":\"sofia\","
        "\"user_key_id\":\"0aa99444-fddc-44d2-ac23-49657e5e6021\",\"share_index\":0,"
        "\"encryption_key_allocation\":{\"fragments\":[{\"block_uuid\":\"9ad7f620-5a0c-4979-8a2d-"
        "66142e06fd79\","
        "\"start\":0,\"size\":16}]},\"encrypted_share_value\":\"AAECAwQFBgcICQoLDA0ODw==\"}";
static const char vector_query_mac[] = "2gSpqpwuZ+AGd0MbrkngOqY+qPEcHe/lNfU/NhFnTac=";
static const char vector_header[] =
        "9ad7f620-5a0c-4979-8a2d-66142e06fd79:0:32%2gSpqpwuZ+AGd0MbrkngOqY+qPEcHe/lNfU/NhFnTac=";

static void vector_key(uint8_t key[static 32]) {
        for (unsigned i = 0; i < 32; i++)
                key[i] = (uint8_t) i;
}

static void test_dske_mac_vectors(void **state) {
        uint8_t key[32], mac[32], wrong[SHA256_DIGEST_SIZE];
        struct sha256_ctx sha;

        vector_key(key);
        assert_int_equal(strlen(vector_query), 99);
        assert_int_equal(strlen(vector_body_b), 313);

        assert_int_equal(dske_mac(key, 32, vector_query, strlen(vector_query), NULL, 0, mac), 0);
        assert_b64_equal(mac, 32, vector_query_mac);
        assert_int_equal(dske_mac(key, 32, vector_query, strlen(vector_query), "", 0, mac), 0);
        assert_b64_equal(mac, 32, vector_query_mac);

        assert_int_equal(dske_mac(key, 32, NULL, 0, "null", 4, mac), 0);
        assert_b64_equal(mac, 32, "iE7XVzQt6heVU6t1K2GOo3J76RqLW8d11bUaoX7SkcA=");

        assert_int_equal(dske_mac(key, 32, "", 0, vector_body_b, strlen(vector_body_b), mac), 0);
        assert_b64_equal(mac, 32, "NMJ5WfhXzGps8/3PYbGWuZFm9hjiMeE4tJ4oJmu5k+w=");

        /* Query and body are concatenated without a separator (C6): moving the boundary does not
         * change the MAC. */
        assert_int_equal(
                dske_mac(key, 32, vector_query, 40, vector_query + 40, strlen(vector_query) - 40, mac), 0);
        assert_b64_equal(mac, 32, vector_query_mac);

        /* The secret-prefix construction the reference's documentation describes gives other bytes. */
        sha256_init(&sha);
        sha256_update(&sha, sizeof(key), key);
        sha256_update(&sha, strlen(vector_query), (const uint8_t *) vector_query);
        sha256_digest(&sha, sizeof(wrong), wrong);
        assert_b64_equal(wrong, sizeof(wrong), "AC82uVtpO6jUV9n3xdyoNOx/el9OdStTS7iVeOGxQA8=");
        assert_int_equal(dske_mac(key, 32, vector_query, strlen(vector_query), NULL, 0, mac), 0);
        assert_memory_not_equal(mac, wrong, 32);
}

static void test_dske_mac_key_size(void **state) {
        uint8_t key[33] = {}, mac[32];
        static const size_t bad_sizes[] = {0, 1, 31, 33};

        for (size_t i = 0; i < ELEMENTSOF(bad_sizes); i++) {
                memset(mac, 0x55, sizeof(mac));
                assert_int_equal(dske_mac(key, bad_sizes[i], "a", 1, "b", 1, mac), -EINVAL);
                for (size_t j = 0; j < sizeof(mac); j++)
                        assert_int_equal(mac[j], 0x55);
                assert_int_equal(dske_mac_verify(key, bad_sizes[i], "a", 1, "b", 1, mac), -EINVAL);
        }

        assert_int_equal(dske_mac(NULL, 32, "a", 1, "b", 1, mac), -EINVAL);
        assert_int_equal(dske_mac(key, 32, NULL, 1, "b", 1, mac), -EINVAL);
        assert_int_equal(dske_mac(key, 32, "a", 1, NULL, 1, mac), -EINVAL);
        assert_int_equal(dske_mac(key, 32, NULL, 0, NULL, 0, mac), 0);
}

static void test_dske_mac_verify(void **state) {
        uint8_t key[32], mac[32];

        vector_key(key);
        assert_int_equal(dske_mac(key, 32, vector_query, strlen(vector_query), NULL, 0, mac), 0);
        assert_int_equal(dske_mac_verify(key, 32, vector_query, strlen(vector_query), NULL, 0, mac), 0);

        /* Any single flipped bit is caught, wherever it is. */
        for (unsigned i = 0; i < 32 * 8; i++) {
                mac[i / 8] ^= (uint8_t) (1u << (i % 8));
                assert_int_equal(dske_mac_verify(key, 32, vector_query, strlen(vector_query), NULL, 0, mac),
                                 -EBADMSG);
                mac[i / 8] ^= (uint8_t) (1u << (i % 8));
        }

        /* A different key, query or body. */
        key[31] ^= 1;
        assert_int_equal(dske_mac_verify(key, 32, vector_query, strlen(vector_query), NULL, 0, mac),
                         -EBADMSG);
        key[31] ^= 1;
        assert_int_equal(dske_mac_verify(key, 32, vector_query, strlen(vector_query) - 1, NULL, 0, mac),
                         -EBADMSG);
        assert_int_equal(dske_mac_verify(key, 32, vector_query, strlen(vector_query), "x", 1, mac),
                         -EBADMSG);
        assert_int_equal(dske_mac_verify(key, 32, NULL, 0, NULL, 0, mac), -EBADMSG);

        assert_int_equal(dske_mac_verify(key, 32, vector_query, strlen(vector_query), NULL, 0, mac), 0);
}

static void test_header_vector(void **state) {
        _cleanup_(allocation_freep) Allocation *a = NULL, *b = NULL;
        _cleanup_free_ char *s = NULL, *semicolon = NULL;
        uint8_t key[32], mac[32], parsed[32];
        Uuid u;

        vector_key(key);
        assert_int_equal(dske_mac(key, 32, vector_query, strlen(vector_query), NULL, 0, mac), 0);
        assert_int_equal(uuid_from_string("9ad7f620-5a0c-4979-8a2d-66142e06fd79", &u), 0);

        assert_int_equal(allocation_from_string("9ad7f620-5a0c-4979-8a2d-66142e06fd79:0:32", 41, &a), 0);
        assert_int_equal(signature_header_format(a, mac, &s), 0);
        assert_string_equal(s, vector_header);

        assert_int_equal(signature_header_parse(vector_header, &b, parsed), 0);
        assert_memory_equal(parsed, mac, 32);
        assert_int_equal(b->n_fragments, 1);
        assert_true(uuid_equal(&b->fragments[0].block_uuid, &u));
        assert_int_equal(b->fragments[0].start, 0);
        assert_int_equal(b->fragments[0].size, 32);
        assert_int_equal(b->size, 32);
        assert_null(b->data);
        b = allocation_free(b);

        /* The separator the reference's documentation shows. */
        semicolon = strdup(vector_header);
        assert_non_null(semicolon);
        *strchr(semicolon, '%') = ';';
        memset(parsed, 0, sizeof(parsed));
        assert_int_equal(signature_header_parse(semicolon, &b, parsed), 0);
        assert_memory_equal(parsed, mac, 32);
        assert_int_equal(b->n_fragments, 1);
        assert_true(uuid_equal(&b->fragments[0].block_uuid, &u));
        assert_int_equal(b->fragments[0].size, 32);
        free(s);
        s = NULL;
        assert_int_equal(signature_header_format(b, parsed, &s), 0);
        assert_string_equal(s, vector_header);
}

#define U1  "9ad7f620-5a0c-4979-8a2d-66142e06fd79"
#define U2  "cda527e9-5ca7-40d6-a842-0b606597611c"
#define MAC "2gSpqpwuZ+AGd0MbrkngOqY+qPEcHe/lNfU/NhFnTac="

static void test_header_parse_valid(void **state) {
        static const struct {
                const char *header;
                size_t n_fragments;
        } cases[] = {
                {U1 ":0:32%" MAC, 1},
                {U1 ":0:32;" MAC, 1},
                {U1 ":1000:32%" MAC, 1},
                {U1 ":0:20," U2 ":0:12%" MAC, 2},
                /* Adjacent ranges of one block, and the same range of two blocks. */
                {U1 ":0:16," U1 ":16:16%" MAC, 2},
                {U1 ":16:16," U1 ":0:16%" MAC, 2},
                {U1 ":0:16," U2 ":0:16%" MAC, 2},
                {"9AD7F620-5A0C-4979-8A2D-66142E06FD79:0:32%" MAC, 1},
                {U1 ":0:1," U1 ":2:1," U1 ":4:30%" MAC, 3},
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_(allocation_freep) Allocation *a = NULL;
                uint8_t mac[32];

                assert_int_equal(signature_header_parse(cases[i].header, &a, mac), 0);
                assert_int_equal(a->n_fragments, cases[i].n_fragments);
                assert_int_equal(a->size, 32);
                assert_b64_equal(mac, 32, MAC);
        }
}

static void test_header_parse_malformed(void **state) {
        static const struct {
                const char *header;
                int error;
        } cases[] = {
                /* separators */
                {"", -EBADMSG},
                {U1 ":0:32" MAC, -EBADMSG},
                {U1 ":0:32%%" MAC, -EBADMSG},
                {U1 ":0:32%" MAC "%", -EBADMSG},
                {U1 ":0:32;" MAC ";", -EBADMSG},
                {U1 ":0:32%;" MAC, -EBADMSG},
                {U1 ":0:32;%" MAC, -EBADMSG},
                {"%" U1 ":0:32%" MAC, -EBADMSG},
                {U1 ":0:32%2gSpqpwuZ+AGd0MbrkngOqY+q;EcHe/lNfU/NhFnTac=", -EBADMSG},
                /* empty parts */
                {"%", -EBADMSG},
                {";", -EBADMSG},
                {"%" MAC, -EBADMSG},
                {";" MAC, -EBADMSG},
                {U1 ":0:32%", -EBADMSG},
                {U1 ":0:32;", -EBADMSG},
                /* MAC of the wrong length */
                {U1 ":0:32%2gSpqpwuZ+AGd0MbrkngOqY+qPEcHe/lNfU/NhFnTQ==", -EBADMSG},     /* 31 bytes */
                {U1 ":0:32%2gSpqpwuZ+AGd0MbrkngOqY+qPEcHe/lNfU/NhFnTacA", -EBADMSG},     /* 33 bytes */
                {U1 ":0:32%2gSpqpwuZ+AGd0MbrkngOqY+qPEcHe/lNfU/NhFn", -EBADMSG},         /* 30 bytes */
                {U1 ":0:32%2gSpqpwuZ+AGd0MbrkngOqY+qPEcHe/lNfU/NhFnTafaBA==", -EBADMSG}, /* 34 bytes */
                {U1 ":0:32%2gSpqpwuZ+AGd0MbrkngOqY+qPEcHe/lNfU/NhFnTac", -EBADMSG},
                {U1 ":0:32%AA==", -EBADMSG},
                /* bad base64 */
                {U1 ":0:32%2gSpqpwuZ-AGd0MbrkngOqY+qPEcHe_lNfU/NhFnTac=", -EBADMSG},
                {U1 ":0:32%2gSpqpwuZ+AGd0MbrkngOqY+qPEcHe/lNfU/NhFnTa==", -EBADMSG},
                {U1 ":0:32%2gSpqpwuZ+AGd0MbrkngOqY+qPEcHe/lNfU/NhFnTad=", -EBADMSG},
                {U1 ":0:32%2gSpqpwuZ+AGd0MbrkngOqY+qPEcHe/lNfU/NhFnT c=", -EBADMSG},
                {U1 ":0:32%2gSpqpwuZ+AGd0MbrkngOqY+qPEcHe/lNfU/NhFnTa!=", -EBADMSG},
                {U1 ":0:32%=gSpqpwuZ+AGd0MbrkngOqY+qPEcHe/lNfU/NhFnTac=", -EBADMSG},
                {U1 ":0:32% " MAC, -EBADMSG},
                {U1 ":0:32%" MAC " ", -EBADMSG},
                /* C1: the MAC key must be exactly 32 bytes */
                {U1 ":0:31%" MAC, -EBADMSG},
                {U1 ":0:33%" MAC, -EBADMSG},
                {U1 ":0:1%" MAC, -EBADMSG},
                {U1 ":0:20," U2 ":0:11%" MAC, -EBADMSG},
                {U1 ":0:20," U2 ":0:13%" MAC, -EBADMSG},
                {U1 ":0:0%" MAC, -EBADMSG},
                {U1 ":0:0," U2 ":0:32%" MAC, -EBADMSG},
                {U1 ":0:32," U2 ":5:0%" MAC, -EBADMSG},
                /* C1: overlapping fragments */
                {U1 ":0:16," U1 ":8:16%" MAC, -EBADMSG},
                {U1 ":0:16," U1 ":0:16%" MAC, -EBADMSG},
                {U1 ":8:16," U1 ":0:16%" MAC, -EBADMSG},
                {U1 ":0:1," U2 ":0:30," U1 ":0:1%" MAC, -EBADMSG},
                {U1 ":10:2," U1 ":0:30%" MAC, -EBADMSG},
                /* C2: numbers */
                {U1 ":-1:32%" MAC, -EBADMSG},
                {U1 ":0:-32%" MAC, -EBADMSG},
                {U1 ":16:32," U1 ":0:-16%" MAC, -EBADMSG},
                {U1 ":+0:32%" MAC, -EBADMSG},
                {U1 ":00:32%" MAC, -EBADMSG},
                {U1 ":0:032%" MAC, -EBADMSG},
                {U1 ":0:3_2%" MAC, -EBADMSG},
                {U1 ": 0:32%" MAC, -EBADMSG},
                {U1 ":0:32 %" MAC, -EBADMSG},
                {U1 ":0x0:32%" MAC, -EBADMSG},
                {U1 ":18446744073709551615:32%" MAC, -EBADMSG},
                {U1 ":18446744073709551616:32%" MAC, -EBADMSG},
                /* the allocation string */
                {U1 ":0%" MAC, -EBADMSG},
                {U1 ":0:32:0%" MAC, -EBADMSG},
                {U1 "%" MAC, -EBADMSG},
                {"9ad7f620-5a0c-4979-8a2d-66142e06fd7:0:32%" MAC, -EBADMSG},
                {"9ad7f6205a0c49798a2d66142e06fd79:0:32%" MAC, -EBADMSG},
                {"{" U1 "}:0:32%" MAC, -EBADMSG},
                {U1 ":0:16,%" MAC, -EBADMSG},
                {"," U1 ":0:32%" MAC, -EBADMSG},
                {U1 ":0:16,," U1 ":16:16%" MAC, -EBADMSG},
                {" " U1 ":0:32%" MAC, -EBADMSG},
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                Allocation *a = (Allocation *) &cases;
                uint8_t mac[32];

                int r;

                memset(mac, 0x55, sizeof(mac));
                r = signature_header_parse(cases[i].header, &a, mac);
                if (r != cases[i].error)
                        print_message("case %zu: \"%s\"\n", i, cases[i].header);
                assert_int_equal(r, cases[i].error);
                assert_ptr_equal(a, (Allocation *) &cases);
                for (size_t j = 0; j < sizeof(mac); j++)
                        assert_int_equal(mac[j], 0x55);
        }
}

static void test_header_parse_too_many_fragments(void **state) {
        _cleanup_free_ char *s = NULL;
        Allocation *a = NULL;
        uint8_t mac[32];
        size_t n = 0;
        char *p;

        /* More fragments than any allocation may have: refused by count, whatever they add up to. */
        s = malloc((PSRD_FRAGMENTS_MAX + 1) * 64 + 64);
        assert_non_null(s);
        p = s;
        for (unsigned i = 0; i <= PSRD_FRAGMENTS_MAX; i++) {
                p += sprintf(p, "%s" U1 ":%u:1", i > 0 ? "," : "", i);
                n++;
        }
        strcpy(p, "%" MAC);
        assert_int_equal(n, PSRD_FRAGMENTS_MAX + 1);
        assert_int_equal(signature_header_parse(s, &a, mac), -E2BIG);
        assert_null(a);

        /* 33 one-byte fragments are within the count but add up to 33 bytes. */
        p = s;
        for (unsigned i = 0; i < 33; i++)
                p += sprintf(p, "%s" U1 ":%u:1", i > 0 ? "," : "", i);
        strcpy(p, "%" MAC);
        assert_int_equal(signature_header_parse(s, &a, mac), -EBADMSG);
        assert_null(a);

        /* 32 of them are a valid MAC key. */
        p = s;
        for (unsigned i = 0; i < 32; i++)
                p += sprintf(p, "%s" U1 ":%u:1", i > 0 ? "," : "", 31 - i);
        strcpy(p, "%" MAC);
        assert_int_equal(signature_header_parse(s, &a, mac), 0);
        assert_int_equal(a->n_fragments, 32);
        a = allocation_free(a);
}

static void test_header_parse_null(void **state) {
        Allocation *a = NULL;
        uint8_t mac[32];

        assert_int_equal(signature_header_parse(NULL, &a, mac), -EINVAL);
        assert_int_equal(signature_header_parse(U1 ":0:32%" MAC, NULL, mac), -EINVAL);
        assert_null(a);
}

static void test_header_format_invalid(void **state) {
        _cleanup_(allocation_freep) Allocation *a = NULL;
        uint8_t mac[32] = {};
        char *s = NULL;

        assert_int_equal(allocation_from_string(U1 ":0:31", strlen(U1 ":0:31"), &a), 0);
        assert_int_equal(signature_header_format(a, mac, &s), -EINVAL);
        a = allocation_free(a);
        assert_int_equal(allocation_from_string(U1 ":0:20," U2 ":0:13", strlen(U1 ":0:20," U2 ":0:13"), &a),
                         0);
        assert_int_equal(signature_header_format(a, mac, &s), -EINVAL);
        assert_int_equal(signature_header_format(NULL, mac, &s), -EINVAL);
        assert_null(s);
}

/* xorshift64*, for reproducible random allocations. */
static uint64_t prng_state = UINT64_C(0x2545f4914f6cdd1d);

static uint64_t prng_next(void) {
        prng_state ^= prng_state >> 12;
        prng_state ^= prng_state << 25;
        prng_state ^= prng_state >> 27;
        return prng_state * UINT64_C(2685821657736338717);
}

static void test_header_round_trip(void **state) {
        for (unsigned iteration = 0; iteration < 500; iteration++) {
                _cleanup_(allocation_freep) Allocation *a = NULL, *b = NULL;
                _cleanup_free_ char *s = NULL, *t = NULL, *str = NULL;
                uint8_t mac[32], parsed[32];
                size_t left = 32, offset = prng_next() % 1000;
                Uuid u;

                a = calloc(1, sizeof(Allocation));
                assert_non_null(a);
                for (unsigned i = 0; i < sizeof(u.bytes); i++)
                        u.bytes[i] = (uint8_t) prng_next();
                /* Consecutive ranges in one block, or in fresh blocks, so none overlap. */
                while (left > 0) {
                        size_t size = 1 + prng_next() % left;

                        if (prng_next() % 2)
                                u.bytes[prng_next() % 16] ^= (uint8_t) (1 + prng_next() % 255);
                        assert_int_equal(allocation_add_fragment(a, &u, offset, size), 0);
                        offset += size;
                        left -= size;
                }
                for (unsigned i = 0; i < 32; i++)
                        mac[i] = (uint8_t) prng_next();

                assert_int_equal(signature_header_format(a, mac, &s), 0);
                assert_int_equal(signature_header_parse(s, &b, parsed), 0);
                assert_memory_equal(parsed, mac, 32);
                assert_int_equal(b->n_fragments, a->n_fragments);
                assert_int_equal(b->size, 32);
                for (size_t i = 0; i < a->n_fragments; i++) {
                        assert_true(uuid_equal(&a->fragments[i].block_uuid, &b->fragments[i].block_uuid));
                        assert_int_equal(a->fragments[i].start, b->fragments[i].start);
                        assert_int_equal(a->fragments[i].size, b->fragments[i].size);
                }
                assert_int_equal(signature_header_format(b, parsed, &t), 0);
                assert_string_equal(s, t);

                assert_int_equal(allocation_to_string(a, &str), 0);
                assert_int_equal(strncmp(s, str, strlen(str)), 0);
                assert_int_equal(s[strlen(str)], '%');
                assert_int_equal(strlen(s), strlen(str) + 1 + 44);
        }
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_hmac_sha256_rfc4231),
                cmocka_unit_test(test_dske_mac_vectors),
                cmocka_unit_test(test_dske_mac_key_size),
                cmocka_unit_test(test_dske_mac_verify),
                cmocka_unit_test(test_header_vector),
                cmocka_unit_test(test_header_parse_valid),
                cmocka_unit_test(test_header_parse_malformed),
                cmocka_unit_test(test_header_parse_too_many_fragments),
                cmocka_unit_test(test_header_parse_null),
                cmocka_unit_test(test_header_format_invalid),
                cmocka_unit_test(test_header_round_trip),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
