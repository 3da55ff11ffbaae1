/* SPDX-License-Identifier: MIT */
#include <inttypes.h>
#include <stdio.h>

#include "ctl-node.h"
#include "ctl-peers.h"
#include "ctl-util.h"
#include "json-util.h"
#include "log.h"

static const char *const action_route[_NODE_ACTION_MAX] = {
        [NODE_ACTION_STATUS] = "status",
        [NODE_ACTION_STOP] = "stop",
        [NODE_ACTION_DECOMMISSION] = "decommission",
        [NODE_ACTION_PEERS] = "status",
        [NODE_ACTION_POOLS] = "status",
};

int node_mgmt_base_from_url(const char *url, char **ret) {
        const char *rest = startswith(url, "http://") ?: startswith(url, "https://");

        if (!rest || isempty(rest))
                return log_error_errno(-EINVAL, "%s is not an http:// or https:// URL.", url);

        /* Everything up to and including ".../TYPE/NAME", then the management prefix. */
        const char *p = strstr(rest, "/hub/");
        if (!p)
                p = strstr(rest, "/client/");
        if (!p)
                return log_error_errno(
                        -EINVAL, "%s does not name a node: expected e.g. http://127.0.0.1:8100/hub/hank.",
                        url);
        p = strchr(p + 1, '/') + 1;
        size_t name_len = strcspn(p, "/?#");
        if (name_len == 0)
                return log_error_errno(-EINVAL, "%s does not name a node.", url);

        if (asprintf(ret, "%.*s/mgmt/v1", (int) (p + name_len - url), url) < 0)
                return log_oom();
        return 0;
}

typedef struct PoolSummary {
        size_t blocks;
        uint64_t size, used, unused;
} PoolSummary;

static uint64_t json_u64(json_object *o, const char *key) {
        json_object *v;

        if (!o || !json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_int))
                return 0;
        int64_t i = json_object_get_int64(v);
        return i > 0 ? (uint64_t) i : 0;
}

static PoolSummary pool_summarize(json_object *pool) {
        PoolSummary s = {};
        json_object *blocks;

        if (!pool || !json_object_object_get_ex(pool, "blocks", &blocks) ||
            !json_object_is_type(blocks, json_type_array))
                return s;
        s.blocks = json_object_array_length(blocks);
        for (size_t i = 0; i < s.blocks; i++) {
                json_object *b = json_object_array_get_idx(blocks, i);
                s.size += json_u64(b, "size");
                s.used += json_u64(b, "nr_used_bytes");
                s.unused += json_u64(b, "nr_unused_bytes");
        }
        return s;
}

static void pool_print(const char *label, json_object *peer, const char *key) {
        json_object *pool = NULL;

        (void) json_object_object_get_ex(peer, key, &pool);
        PoolSummary s = pool_summarize(pool);
        printf("    %-22s %zu block%s, %" PRIu64 " bytes used, %" PRIu64 " unused\n", label, s.blocks,
               s.blocks == 1 ? "" : "s", s.used, s.unused);
}

static void strings_print(json_object *array) {
        if (!array || !json_object_is_type(array, json_type_array) || json_object_array_length(array) == 0) {
                printf("none");
                return;
        }
        for (size_t i = 0; i < json_object_array_length(array); i++) {
                json_object *v = json_object_array_get_idx(array, i);
                printf("%s%s", i > 0 ? ", " : "",
                       json_object_is_type(v, json_type_string) ? json_object_get_string(v) : "?");
        }
}

void node_status_print(json_object *st) {
        json_object *peers, *v;
        const char *name = json_get_string_member(st, "name");

        if (json_object_object_get_ex(st, "peer_hubs", &peers) &&
            json_object_is_type(peers, json_type_array)) {
                bool ready = json_object_object_get_ex(st, "ready", &v) && json_object_get_boolean(v);
                printf("Client %s: %s\n", strna(name), ready ? "ready" : "not ready");
                printf("  Encryptors: ");
                (void) json_object_object_get_ex(st, "encryptor_names", &v);
                strings_print(v);
                printf("\n");
                for (size_t i = 0; i < json_object_array_length(peers); i++) {
                        json_object *h = json_object_array_get_idx(peers, i);
                        bool reg =
                                json_object_object_get_ex(h, "registered", &v) && json_object_get_boolean(v);
                        printf("  Hub %s: %s\n", strna(json_get_string_member(h, "hub_name")),
                               reg ? "registered" : "not registered");
                        pool_print("client-owned (local):", h, "local_pool");
                        pool_print("hub-owned (peer):", h, "peer_pool");
                }
                return;
        }

        if (json_object_object_get_ex(st, "peer_clients", &peers) &&
            json_object_is_type(peers, json_type_array)) {
                printf("Hub %s: %zu client%s registered\n", strna(name), json_object_array_length(peers),
                       json_object_array_length(peers) == 1 ? "" : "s");
                for (size_t i = 0; i < json_object_array_length(peers); i++) {
                        json_object *c = json_object_array_get_idx(peers, i);
                        printf("  Client %s (encryptors: ", strna(json_get_string_member(c, "client_name")));
                        (void) json_object_object_get_ex(c, "encryptor_names", &v);
                        strings_print(v);
                        printf(")\n");
                        pool_print("hub-owned (local):", c, "local_pool");
                        pool_print("client-owned (peer):", c, "peer_pool");
                }
                if (json_object_object_get_ex(st, "shares", &v) && json_object_is_type(v, json_type_array))
                        printf("  Shares held: %zu\n", json_object_array_length(v));
                return;
        }

        json_print(st);
}

int node_action(Ctl *ctl, const char *mgmt_base, NodeAction action, bool json) {
        _cleanup_json_ json_object *o = NULL;
        CtlCall call = {
                .method = streq(action_route[action], "status") ? "GET" : "POST",
                .timeout_ms = action == NODE_ACTION_DECOMMISSION ? 30000 : 5000,
        };
        int r;

        if (asprintf(&call.url, "%s/%s", mgmt_base, action_route[action]) < 0)
                return log_oom();

        r = ctl_run_calls(ctl, &call, 1);
        if (r >= 0 && (call.error < 0 || call.status != 200)) {
                _cleanup_free_ char *d = NULL;
                if (ctl_call_describe_failure(&call, &d) < 0)
                        r = log_oom();
                else
                        r = log_error_errno(call.error < 0 ? call.error : -EIO, "%s", d);
        }
        if (r >= 0)
                o = ctl_call_json(&call);
        ctl_call_done(&call);
        if (r < 0)
                return r;

        if (action == NODE_ACTION_PEERS || action == NODE_ACTION_POOLS) {
                PeerInfo *peers = NULL;
                size_t n = 0;

                r = o ? peer_infos_from_status(o, &peers, &n) : -EBADMSG;
                if (r == -ENOMEM)
                        return log_oom();
                if (r < 0)
                        return log_error_errno(r, "The status of %s lists no peers.", mgmt_base);
                r = action == NODE_ACTION_POOLS ? peer_infos_print_pools(peers, n, json)
                                                : peer_infos_print_peers(peers, n, json);
                peer_infos_free(peers, n);
                return r;
        }

        if (json) {
                if (o)
                        json_print(o);
                return 0;
        }

        if (action == NODE_ACTION_STATUS) {
                if (!o)
                        return log_error_errno(-EBADMSG, "The status is not JSON.");
                node_status_print(o);
                return 0;
        }

        const char *result = json_get_string_member(o, "result") ?: json_get_string_member(o, "message");
        printf("%s\n", result ?: (action == NODE_ACTION_STOP ? "Stop initiated" : "Decommissioned"));
        return 0;
}
