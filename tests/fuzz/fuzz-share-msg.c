/* SPDX-License-Identifier: MIT */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "json-util.h"
#include "psrd-metadata.h"
#include "share-msg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Key-share bodies are small; larger inputs only slow the fuzzer down. */
#define INPUT_MAX (64u * 1024u)

/* The general parser's reading of a body: a JSON object and nothing after it but white space. */
static json_object *json_read(const uint8_t *data, size_t size) {
        json_tokener *tok = json_tokener_new();
        json_object *o;
        size_t end;

        if (!tok)
                abort();
        json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_ALLOW_TRAILING_CHARS |
                                            JSON_TOKENER_VALIDATE_UTF8);
        o = json_tokener_parse_ex(tok, (const char *) data, (int) size);
        end = json_tokener_get_parse_end(tok);
        if (json_tokener_get_error(tok) != json_tokener_success || !json_object_is_type(o, json_type_object))
                abort(); /* the fast readers accepted something that is not a JSON object */
        json_tokener_free(tok);
        for (size_t i = end; i < size; i++)
                if (!memchr(" \t\r\n", data[i], 4) || data[i] == 0)
                        abort();
        return o;
}

static const char *member_string(json_object *o, const char *name) {
        json_object *v;

        if (!json_object_object_get_ex(o, name, &v) || !json_object_is_type(v, json_type_string))
                abort();
        return json_object_get_string(v);
}

/* Both readers must agree on the values the fast one returned. */
static void check_common(json_object *o, int64_t share_index, const Allocation *key, const char *value,
                         size_t value_size) {
        json_object *v;
        Allocation *a = NULL;

        if (!json_object_object_get_ex(o, "share_index", &v) || !json_object_is_type(v, json_type_int) ||
            json_object_get_int64(v) != share_index)
                abort();
        if (!json_object_object_get_ex(o, "encryption_key_allocation", &v) ||
            allocation_from_json(v, &a) < 0 || !allocation_fragments_equal(a, key))
                abort();
        allocation_free(a);
        if (strlen(member_string(o, "encrypted_share_value")) != value_size ||
            memcmp(member_string(o, "encrypted_share_value"), value, value_size) != 0)
                abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        SharePostView post = {};
        ShareReplyView reply = {};

        if (size > INPUT_MAX)
                return 0;

        if (share_post_parse(data, size, &post) >= 0) {
                json_object *o = json_read(data, size);

                if (strcmp(member_string(o, "master_client_name"), post.master_client_name) != 0 ||
                    strcmp(member_string(o, "master_sae_id"), post.master_sae_id) != 0 ||
                    strcmp(member_string(o, "slave_sae_id"), post.slave_sae_id) != 0 ||
                    strcmp(member_string(o, "user_key_id"), post.user_key_id) != 0)
                        abort();
                check_common(o, post.share_index, post.encryption_key, post.encrypted_share_value,
                             post.encrypted_share_value_size);
                json_object_put(o);
                share_post_view_done(&post);
        } else if (post.encryption_key)
                abort(); /* a refusal leaves the view empty */

        if (share_reply_parse(data, size, &reply) >= 0) {
                json_object *o = json_read(data, size);

                check_common(o, reply.share_index, reply.encryption_key, reply.encrypted_share_value,
                             reply.encrypted_share_value_size);
                json_object_put(o);
                share_reply_view_done(&reply);
        } else if (reply.encryption_key)
                abort();
        return 0;
}
