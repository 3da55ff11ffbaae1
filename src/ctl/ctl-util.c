/* SPDX-License-Identifier: MIT */
#include <string.h>

#include "ctl-util.h"

static void json_wipe_string(json_object *v) {
        if (!v || !json_object_is_type(v, json_type_string))
                return;
        /* json-c owns the buffer; its length is what the string holds. */
        explicit_bzero((char *) json_object_get_string(v), (size_t) json_object_get_string_len(v));
}

void json_wipe_keys(json_object *container) {
        json_object *keys;

        if (!container || !json_object_object_get_ex(container, "keys", &keys))
                return;
        if (json_object_is_type(keys, json_type_object)) {
                json_object *v;
                if (json_object_object_get_ex(keys, "key", &v))
                        json_wipe_string(v);
                return;
        }
        if (!json_object_is_type(keys, json_type_array))
                return;
        for (size_t i = 0; i < json_object_array_length(keys); i++) {
                json_object *v, *k = json_object_array_get_idx(keys, i);
                if (k && json_object_object_get_ex(k, "key", &v))
                        json_wipe_string(v);
        }
}

const char *json_get_string_member(json_object *o, const char *key) {
        json_object *v;

        if (!o || !json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string))
                return NULL;
        return json_object_get_string(v);
}
