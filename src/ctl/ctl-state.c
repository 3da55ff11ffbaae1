/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "ctl-http.h"
#include "ctl-state.h"
#include "json-util.h"
#include "log.h"
#include "state.h"

static int print_json(const StateDir *d, const StatePoolInfo *pools, size_t n) {
        _cleanup_json_ json_object *o = json_object_new_object(), *a = json_object_new_array();

        if (!o || !a)
                return log_oom();
        for (size_t i = 0; i < n; i++) {
                json_object *p = json_object_new_object();

                if (!p || json_object_array_add(a, p) < 0) {
                        json_object_put(p);
                        return log_oom();
                }
                if (json_object_object_add(p, "peer", json_object_new_string(pools[i].peer)) < 0 ||
                    json_object_object_add(
                            p, "owner", json_object_new_string(pool_owner_to_string(pools[i].owner))) < 0 ||
                    json_object_object_add(p, "blocks", json_object_new_uint64(pools[i].stats.n_blocks)) <
                            0 ||
                    json_object_object_add(p, "total_bytes",
                                           json_object_new_uint64(pools[i].stats.total_bytes)) < 0 ||
                    json_object_object_add(p, "used_bytes",
                                           json_object_new_uint64(pools[i].stats.used_bytes)) < 0 ||
                    json_object_object_add(p, "available_bytes",
                                           json_object_new_uint64(pools[i].stats.available_bytes)) < 0)
                        return log_oom();
        }
        if (json_object_object_add(o, "path", json_object_new_string(state_dir_path(d))) < 0 ||
            json_object_object_add(
                    o, "role", state_dir_role(d) ? json_object_new_string(state_dir_role(d)) : NULL) < 0 ||
            json_object_object_add(
                    o, "name", state_dir_name(d) ? json_object_new_string(state_dir_name(d)) : NULL) < 0 ||
            json_object_object_add(o, "records", json_object_new_uint64(state_dir_n_records(d))) < 0 ||
            json_object_object_add(o, "pools", TAKE_PTR(a)) < 0)
                return log_oom();
        json_print(o);
        return 0;
}

int check_state(const char *path, bool json) {
        _cleanup_(state_dir_freep) StateDir *d = NULL;
        _cleanup_free_ StatePoolInfo *pools = NULL;
        size_t n;
        int r;

        /* The daemon's own checks: any problem is logged with the file it is in. */
        r = state_dir_open(NULL, path, NULL, NULL, STATE_OPEN_READ_ONLY, &d);
        if (r < 0)
                return r;
        r = state_dir_list_pools(d, &pools, &n);
        if (r < 0)
                return log_oom();

        if (json)
                return print_json(d, pools, n);

        if (!state_dir_role(d)) {
                printf("%s: no state yet.\n", path);
                return 0;
        }
        printf("%s: state of %s %s, intact; %zu record(s).\n", path, state_dir_role(d), state_dir_name(d),
               state_dir_n_records(d));
        if (n == 0)
                return 0;
        printf("%-24s %-6s %6s %12s %12s %12s\n", "PEER", "OWNER", "BLOCKS", "TOTAL", "USED", "AVAILABLE");
        for (size_t i = 0; i < n; i++)
                printf("%-24s %-6s %6zu %12" PRIu64 " %12" PRIu64 " %12" PRIu64 "\n", pools[i].peer,
                       pool_owner_to_string(pools[i].owner), pools[i].stats.n_blocks,
                       pools[i].stats.total_bytes, pools[i].stats.used_bytes,
                       pools[i].stats.available_bytes);
        return 0;
}
