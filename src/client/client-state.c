/* SPDX-License-Identifier: MIT */
#include <errno.h>

#include "client-keys.h"
#include "client-peer.h"
#include "client-state.h"
#include "json-util.h"
#include "log.h"

int client_state_save_hubs(Manager *m) {
        _cleanup_(json_object_putp) json_object *data = NULL, *hubs = NULL;
        int r;

        if (!m->state)
                return 0;
        data = json_object_new_object();
        hubs = json_object_new_array();
        if (!data || !hubs)
                return log_oom();
        for (size_t i = 0; i < m->n_hubs; i++) {
                PeerHub *p = m->hubs[i];
                json_object *o;

                if (p->state != PEER_HUB_PROVISIONING && p->state != PEER_HUB_READY)
                        continue;
                o = json_object_new_object();
                if (!o || json_object_array_add(hubs, o) < 0) {
                        json_object_put(o);
                        return log_oom();
                }
                if (json_object_object_add(o, "url", json_object_new_string(p->url)) < 0 ||
                    json_object_object_add(o, "name", json_object_new_string(p->name)) < 0)
                        return log_oom();
        }
        if (json_object_object_add(data, "hubs", TAKE_PTR(hubs)) < 0)
                return log_oom();
        r = state_dir_save_node(m->state, data);
        if (r < 0)
                return log_error_errno(r, "Failed to save the hub registrations: %m");
        return 0;
}

static int write_snapshot(StateDir *d, void *userdata) {
        Manager *m = userdata;

        return key_store_snapshot(m->keys, d);
}

static int on_record(uint8_t type, const void *payload, size_t size, void *userdata) {
        Manager *m = userdata;

        return key_store_restore(m->keys, type, payload, size, m->config.max_stored_keys);
}

int client_state_open(Manager *m) {
        if (m->config.ephemeral || !m->config.state_dir)
                return 0;
        return state_dir_open(m->event, m->config.state_dir, "client", m->config.name, 0, &m->state);
}

static int restore_hubs(Manager *m) {
        json_object *data = state_dir_node(m->state), *hubs, *h, *url, *name;
        int r;

        if (!data)
                return 0;
        if (!json_object_object_get_ex(data, "hubs", &hubs) || !json_object_is_type(hubs, json_type_array))
                goto bad;
        for (size_t i = 0; i < json_object_array_length(hubs); i++) {
                h = json_object_array_get_idx(hubs, i);
                if (!json_object_object_get_ex(h, "url", &url) ||
                    !json_object_is_type(url, json_type_string) ||
                    !json_object_object_get_ex(h, "name", &name) ||
                    !json_object_is_type(name, json_type_string) ||
                    !name_is_valid(json_object_get_string(name)))
                        goto bad;
                for (size_t j = 0; j < m->n_hubs; j++) {
                        if (!streq(m->hubs[j]->url, json_object_get_string(url)))
                                continue;
                        if (state_dir_peer_burned(m->state, json_object_get_string(name))) {
                                /* The hub would go on naming bytes we burned: start afresh with it. */
                                log_notice(
                                        "Hub %s: PSRD burned after the system went down; registering again.",
                                        json_object_get_string(name));
                                break;
                        }
                        r = peer_hub_restore(m->hubs[j], json_object_get_string(name));
                        if (r < 0)
                                return log_error_errno(r, "Failed to restore hub %s: %m",
                                                       json_object_get_string(name));
                        break;
                }
        }
        return 0;

bad:
        log_error("State file %s/node.json does not describe the client's hubs; refusing to use it.",
                  state_dir_path(m->state));
        return -EBADMSG;
}

static void on_state_failed(StateDir *d, int error, void *userdata) {
        Manager *m = userdata;

        (void) d;
        log_error_errno(error, "The state directory failed: %m. Stopping, as nothing can be recorded.");
        m->failed = true;
        manager_begin_stop(m);
}

int client_state_restore(Manager *m) {
        size_t n;
        int r;

        if (!m->state)
                return 0;

        r = restore_hubs(m);
        if (r < 0)
                return r;
        r = state_dir_replay(m->state, on_record, m);
        if (r == -EBADMSG)
                return log_error_errno(
                        r, "State file %s/records or journal holds a malformed key; refusing to use it.",
                        state_dir_path(m->state));
        if (r < 0)
                return log_error_errno(r, "Failed to restore the stored keys: %m");
        n = state_dir_drop_unclaimed(m->state);
        if (n > 0)
                log_notice("Destroyed %zu stored PSRD block(s) of hubs no longer registered.", n);

        key_store_set_state(m->keys, m->state);
        state_dir_set_snapshot_writer(m->state, write_snapshot, m);
        state_dir_set_pool_observer(m->state, manager_pool_observer, m);
        state_dir_set_failure_callback(m->state, on_state_failed, m);
        log_info("State restored from %s: %u hub registration(s), %zu key(s) awaiting delivery.",
                 m->config.state_dir, manager_hubs_ready(m), key_store_size(m->keys));
        return 0;
}

void client_state_close(Manager *m) {
        int r;

        if (!m->state)
                return;
        r = state_dir_close(m->state);
        if (r < 0)
                log_error_errno(r, "Failed to write the final checkpoint of the state: %m");
}
