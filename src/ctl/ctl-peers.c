/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl-http.h"
#include "ctl-peers.h"
#include "ctl-util.h"
#include "json-util.h"
#include "log.h"

void peer_infos_free(PeerInfo *peers, size_t n) {
        for (size_t i = 0; i < n; i++) {
                free(peers[i].name);
                free(peers[i].state);
                free(peers[i].last_error);
        }
        free(peers);
}

int peer_infos_add(PeerInfo **peers, size_t *n, const PeerInfo *p) {
        PeerInfo copy = *p, *a;

        copy.name = strdup(strempty(p->name));
        copy.state = strdup(strempty(p->state));
        copy.last_error = strdup(strempty(p->last_error));
        a = copy.name && copy.state && copy.last_error ? reallocarray(*peers, *n + 1, sizeof(PeerInfo))
                                                       : NULL;
        if (!a) {
                free(copy.name);
                free(copy.state);
                free(copy.last_error);
                return -ENOMEM;
        }
        a[(*n)++] = copy;
        *peers = a;
        return 0;
}

static int peer_info_compare(const void *a, const void *b) {
        const PeerInfo *x = a, *y = b;

        return strcmp(x->name, y->name);
}

void peer_infos_sort(PeerInfo *peers, size_t n) {
        if (n > 1)
                qsort(peers, n, sizeof(PeerInfo), peer_info_compare);
}

static uint64_t member_u64(json_object *o, const char *key) {
        json_object *v;

        if (!o || !json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_int))
                return 0;
        int64_t i = json_object_get_int64(v);
        return i > 0 ? (uint64_t) i : 0;
}

/* Sums the blocks of a status "local_pool"/"peer_pool" object as the daemons' pool statistics do. */
static PeerPoolInfo pool_from_status(json_object *peer, const char *key) {
        json_object *pool, *blocks;
        PeerPoolInfo s = {};

        if (!json_object_object_get_ex(peer, key, &pool) ||
            !json_object_object_get_ex(pool, "blocks", &blocks) ||
            !json_object_is_type(blocks, json_type_array))
                return s;
        s.blocks = json_object_array_length(blocks);
        for (size_t i = 0; i < s.blocks; i++) {
                json_object *b = json_object_array_get_idx(blocks, i);

                s.total_bytes += member_u64(b, "size");
                s.used_bytes += member_u64(b, "nr_used_bytes");
        }
        s.available_bytes = s.total_bytes - MIN(s.used_bytes, s.total_bytes);
        return s;
}

int peer_infos_from_status(json_object *status, PeerInfo **ret, size_t *ret_n) {
        PeerInfo *peers = NULL;
        json_object *array, *v;
        size_t n = 0;
        bool hub;
        int r;

        if (json_object_object_get_ex(status, "peer_clients", &array))
                hub = true;
        else if (json_object_object_get_ex(status, "peer_hubs", &array))
                hub = false;
        else
                return -EBADMSG;
        if (!json_object_is_type(array, json_type_array))
                return -EBADMSG;

        for (size_t i = 0; i < json_object_array_length(array); i++) {
                json_object *o = json_object_array_get_idx(array, i);
                PeerInfo p = {
                        .local_pool = pool_from_status(o, "local_pool"),
                        .peer_pool = pool_from_status(o, "peer_pool"),
                };

                if (hub) {
                        /* As org.dske.Peer1 on the hub: a client is listed only while registered,
                         * and the hub records no per-client failure. */
                        p.name = (char *) json_get_string_member(o, "client_name");
                        p.registered = true;
                        p.state = (char *) "registered";
                        p.shares_relayed = member_u64(o, "nr_shares_relayed");
                } else {
                        p.name = (char *) (json_get_string_member(o, "name")
                                                   ?: json_get_string_member(o, "hub_name"));
                        p.registered =
                                json_object_object_get_ex(o, "registered", &v) && json_object_get_boolean(v);
                        p.state = (char *) json_get_string_member(o, "state");
                        p.shares_relayed = member_u64(o, "shares_sent") + member_u64(o, "shares_received");
                        p.last_error = (char *) json_get_string_member(o, "last_error");
                }
                r = peer_infos_add(&peers, &n, &p);
                if (r < 0) {
                        peer_infos_free(peers, n);
                        return r;
                }
        }
        peer_infos_sort(peers, n);
        *ret = peers;
        *ret_n = n;
        return 0;
}

static int json_add_u64(json_object *o, const char *key, uint64_t u) {
        return json_object_object_add(o, key, json_object_new_int64((int64_t) MIN(u, (uint64_t) INT64_MAX)));
}

int peer_infos_print_peers(const PeerInfo *peers, size_t n, bool json) {
        if (json) {
                _cleanup_json_ json_object *out = json_object_new_array();

                if (!out)
                        return log_oom();
                for (size_t i = 0; i < n; i++) {
                        const PeerInfo *p = peers + i;
                        json_object *o = json_object_new_object();

                        if (!o || json_object_array_add(out, o) < 0) {
                                json_object_put(o);
                                return log_oom();
                        }
                        if (json_object_object_add(o, "name", json_object_new_string(p->name)) < 0 ||
                            json_object_object_add(o, "registered", json_object_new_boolean(p->registered)) <
                                    0 ||
                            json_object_object_add(o, "state", json_object_new_string(p->state)) < 0 ||
                            json_add_u64(o, "shares_relayed", p->shares_relayed) < 0 ||
                            json_object_object_add(o, "last_error", json_object_new_string(p->last_error)) <
                                    0)
                                return log_oom();
                }
                json_print(out);
                return 0;
        }

        if (n == 0) {
                printf("No peers.\n");
                return 0;
        }
        printf("%-24s %-10s %-13s %14s  %s\n", "PEER", "REGISTERED", "STATE", "SHARES RELAYED",
               "LAST ERROR");
        for (size_t i = 0; i < n; i++) {
                const PeerInfo *p = peers + i;

                printf("%-24s %-10s %-13s %14" PRIu64 "  %s\n", p->name, p->registered ? "yes" : "no",
                       p->state, p->shares_relayed, isempty(p->last_error) ? "-" : p->last_error);
        }
        return 0;
}

static json_object *pool_json(const PeerPoolInfo *pool) {
        _cleanup_json_ json_object *o = json_object_new_object();

        if (!o || json_add_u64(o, "blocks", pool->blocks) < 0 ||
            json_add_u64(o, "total_bytes", pool->total_bytes) < 0 ||
            json_add_u64(o, "used_bytes", pool->used_bytes) < 0 ||
            json_add_u64(o, "available_bytes", pool->available_bytes) < 0)
                return NULL;
        return TAKE_PTR(o);
}

static void pool_row(const PeerPoolInfo *pool, const char *label) {
        printf("  %-8s %8" PRIu64 " %14" PRIu64 " %14" PRIu64 " %14" PRIu64 "\n", label, pool->blocks,
               pool->total_bytes, pool->used_bytes, pool->available_bytes);
}

int peer_infos_print_pools(const PeerInfo *peers, size_t n, bool json) {
        if (json) {
                _cleanup_json_ json_object *out = json_object_new_array();

                if (!out)
                        return log_oom();
                for (size_t i = 0; i < n; i++) {
                        json_object *o = json_object_new_object(), *local, *peer;

                        if (!o || json_object_array_add(out, o) < 0) {
                                json_object_put(o);
                                return log_oom();
                        }
                        if (json_object_object_add(o, "name", json_object_new_string(peers[i].name)) < 0)
                                return log_oom();
                        local = pool_json(&peers[i].local_pool);
                        if (!local || json_object_object_add(o, "local_pool", local) < 0) {
                                json_object_put(local);
                                return log_oom();
                        }
                        peer = pool_json(&peers[i].peer_pool);
                        if (!peer || json_object_object_add(o, "peer_pool", peer) < 0) {
                                json_object_put(peer);
                                return log_oom();
                        }
                }
                json_print(out);
                return 0;
        }

        if (n == 0) {
                printf("No peers.\n");
                return 0;
        }
        for (size_t i = 0; i < n; i++) {
                const PeerInfo *p = peers + i;

                printf("%sPeer %s (%s)\n", i > 0 ? "\n" : "", p->name, p->state);
                printf("  %-8s %8s %14s %14s %14s\n", "POOL", "BLOCKS", "TOTAL", "USED", "AVAILABLE");
                pool_row(&p->local_pool, "local");
                pool_row(&p->peer_pool, "peer");
        }
        return 0;
}
