/* SPDX-License-Identifier: MIT */
#include <stdio.h>

#include "ctl-keys.h"
#include "ctl-util.h"
#include "json-util.h"
#include "log.h"
#include "secret.h"

int etsi_keys_url(const Topology *t, const TopologyNode *kme, char **ret) {
        _cleanup_free_ char *base = NULL;

        if (topology_node_url(t, kme, &base) < 0 || asprintf(ret, "%s/etsi/api/v1/keys", base) < 0)
                return -ENOMEM;
        return 0;
}

/* The first key of a key container. The reference answers "keys" as an object, the standard as an
 * array: accept both. */
static json_object *container_first_key(json_object *o) {
        json_object *keys;

        if (!o || !json_object_object_get_ex(o, "keys", &keys))
                return NULL;
        if (json_object_is_type(keys, json_type_array))
                return json_object_array_length(keys) > 0 ? json_object_array_get_idx(keys, 0) : NULL;
        if (json_object_is_type(keys, json_type_object))
                return keys;
        return NULL;
}

static int call_failed(const CtlCall *c, const char *what) {
        _cleanup_free_ char *d = NULL;

        if (ctl_call_describe_failure(c, &d) < 0)
                return log_oom();
        return log_error_errno(c->error < 0 ? c->error : -EIO, "Failed to %s: %s", what, d);
}

static void print_side(const char *role, const char *sae, const TopologyNode *kme, const char *url,
                       const char *key_id, const char *key) {
        printf("%s SAE %s (client %s, %s):\n", role, sae, kme->name, url);
        printf("  key_ID: %s\n", key_id);
        printf("  key: %s\n", key);
}

int get_key_pair(Ctl *ctl, const Topology *t, const char *master, const char *slave, unsigned size_bits,
                 bool json) {
        _cleanup_free_ char *master_url = NULL, *slave_url = NULL, *auth_master = NULL, *auth_slave = NULL;
        _cleanup_json_ json_object *enc = NULL, *dec = NULL;
        CtlCall call = {};
        int r;

        TopologyNode *master_kme = topology_find_sae(t, master), *slave_kme = topology_find_sae(t, slave);
        if (!master_kme)
                return log_error_errno(-ENOENT, "No client of %s serves SAE %s.", t->path, master);
        if (!slave_kme)
                return log_error_errno(-ENOENT, "No client of %s serves SAE %s.", t->path, slave);

        if (etsi_keys_url(t, master_kme, &master_url) < 0 || etsi_keys_url(t, slave_kme, &slave_url) < 0 ||
            asprintf(&auth_master, "Authorization: %s", master) < 0 ||
            asprintf(&auth_slave, "Authorization: %s", slave) < 0)
                return log_oom();

        call = (CtlCall){.method = "GET", .headers = {auth_master}};
        r = size_bits > 0 ? asprintf(&call.url, "%s/%s/enc_keys?size=%u", master_url, slave, size_bits)
                          : asprintf(&call.url, "%s/%s/enc_keys", master_url, slave);
        if (r < 0)
                return log_oom();
        r = ctl_run_calls(ctl, &call, 1);
        if (r >= 0 && (call.error < 0 || call.status != 200))
                r = call_failed(&call, "get a key for the master SAE");
        if (r >= 0 && !(enc = ctl_call_json(&call)))
                r = log_error_errno(-EBADMSG, "GET %s returned a body that is not JSON.", call.url);
        ctl_call_done(&call);
        if (r < 0)
                return r;

        json_object *ek = container_first_key(enc);
        const char *key_id = json_get_string_member(ek, "key_ID"), *key = json_get_string_member(ek, "key");
        if (!key_id || !key) {
                json_wipe_keys(enc);
                return log_error_errno(-EBADMSG, "The master's KME returned no key_ID and key.");
        }

        call = (CtlCall){.method = "GET", .headers = {auth_slave}};
        if (asprintf(&call.url, "%s/%s/dec_keys?key_ID=%s", slave_url, master, key_id) < 0) {
                json_wipe_keys(enc);
                return log_oom();
        }
        r = ctl_run_calls(ctl, &call, 1);
        if (r >= 0 && (call.error < 0 || call.status != 200))
                r = call_failed(&call, "get the key for the slave SAE");
        if (r >= 0 && !(dec = ctl_call_json(&call)))
                r = log_error_errno(-EBADMSG, "GET %s returned a body that is not JSON.", call.url);
        ctl_call_done(&call);
        if (r < 0) {
                json_wipe_keys(enc);
                return r;
        }

        json_object *dk = container_first_key(dec);
        const char *dec_id = json_get_string_member(dk, "key_ID"),
                   *dec_key = json_get_string_member(dk, "key");
        if (!dec_id || !dec_key) {
                json_wipe_keys(enc);
                json_wipe_keys(dec);
                return log_error_errno(-EBADMSG, "The slave's KME returned no key_ID and key.");
        }

        bool match = streq(key_id, dec_id) && strlen(key) == strlen(dec_key) &&
                     secret_equal(key, dec_key, strlen(key));

        if (json) {
                _cleanup_json_ json_object *o = json_object_new_object();
                if (!o) {
                        r = log_oom();
                        goto finish;
                }
                json_object_object_add(o, "master_SAE_ID", json_object_new_string(master));
                json_object_object_add(o, "master_KME_ID", json_object_new_string(master_kme->name));
                json_object_object_add(o, "master", json_object_get(enc));
                json_object_object_add(o, "slave_SAE_ID", json_object_new_string(slave));
                json_object_object_add(o, "slave_KME_ID", json_object_new_string(slave_kme->name));
                json_object_object_add(o, "slave", json_object_get(dec));
                json_object_object_add(o, "match", json_object_new_boolean(match));
                json_print(o);
        } else {
                print_side("Master", master, master_kme, master_url, key_id, key);
                print_side("Slave", slave, slave_kme, slave_url, dec_id, dec_key);
                printf("%s\n", match ? "Key values match" : "Key values do not match");
        }
        r = match ? 0 : 1;

finish:
        json_wipe_keys(enc);
        json_wipe_keys(dec);
        return r;
}
