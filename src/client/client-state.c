/* SPDX-License-Identifier: MIT */
#include <errno.h>

#include "client-keys.h"
#include "client-peer.h"
#include "client-state.h"
#include "json-util.h"
#include "log.h"
#include "strv.h"

/* A fetch of a block of the hub-owned pool is recorded before it is sent: the hub adds the block to
 * its copy when it answers, so if this client dies before the answer arrives, the hub names bytes
 * this client never had, and the link needs fresh pools. The record is written, not synced: a
 * power loss may take the block file as well, and then the first reply naming a block this client
 * lacks makes it register again. Their payload is the hub's name. (The key store's records use the
 * types below these.) */
enum {
        RECORD_FETCH_BEGIN = STATE_RECORD_USER + 8,
        RECORD_FETCH_END,
};

typedef struct Restore {
        Manager *manager;
        char **fetching; /* hubs with a fetch begun and not ended */
} Restore;

static void restore_done(Restore *x) {
        x->fetching = strv_free(x->fetching);
}

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
        int r;

        for (size_t i = 0; i < m->n_hubs; i++)
                if (m->hubs[i]->psrd_call[POOL_OWNER_PEER]) {
                        r = state_dir_snapshot_add(d, RECORD_FETCH_BEGIN, m->hubs[i]->name,
                                                   strlen(m->hubs[i]->name));
                        if (r < 0)
                                return r;
                }
        return key_store_snapshot(m->keys, d);
}

int client_state_fetch_begin(Manager *m, const char *hub) {
        int r;

        r = state_dir_append(m->state, RECORD_FETCH_BEGIN, hub, strlen(hub));
        if (r >= 0)
                r = state_dir_flush(m->state);
        return r;
}

void client_state_fetch_end(Manager *m, const char *hub) {
        if (state_dir_append(m->state, RECORD_FETCH_END, hub, strlen(hub)) < 0)
                log_warning("Failed to record the end of a PSRD fetch from hub %s.", hub);
}

static int on_record(uint8_t type, const void *payload, size_t size, void *userdata) {
        Restore *x = userdata;
        _cleanup_free_ char *hub = NULL;
        char **l = NULL;

        if (type != RECORD_FETCH_BEGIN && type != RECORD_FETCH_END)
                return key_store_restore(x->manager->keys, type, payload, size,
                                         x->manager->config.max_stored_keys);

        hub = memdup_suffix0(payload, size);
        if (!hub)
                return -ENOMEM;
        if (strlen(hub) != size || !name_is_valid(hub))
                return -EBADMSG;
        if (type == RECORD_FETCH_BEGIN)
                return strv_contains(x->fetching, hub) ? 0 : strv_push(&x->fetching, hub, strlen(hub));
        for (char **i = x->fetching; i && *i; i++)
                if (!streq(*i, hub) && strv_push(&l, *i, strlen(*i)) < 0) {
                        strv_free(l);
                        return -ENOMEM;
                }
        strv_free(x->fetching);
        x->fetching = l;
        return 0;
}

int client_state_open(Manager *m) {
        if (m->config.ephemeral || !m->config.state_dir)
                return 0;
        return state_dir_open(m->event, m->config.state_dir, "client", m->config.name, 0, &m->state);
}

static int restore_hubs(Manager *m, char *const *fetching) {
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
                        if (strv_contains(fetching, json_object_get_string(name))) {
                                log_notice("Hub %s: the client stopped while a PSRD block was on its way; "
                                           "registering again.",
                                           json_object_get_string(name));
                                break;
                        }
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
        _cleanup_(restore_done) Restore x = {.manager = m};
        int r;

        if (!m->state)
                return 0;

        r = state_dir_replay(m->state, on_record, &x);
        if (r == -EBADMSG)
                return log_error_errno(
                        r, "State file %s/records or journal holds a malformed key; refusing to use it.",
                        state_dir_path(m->state));
        if (r < 0)
                return log_error_errno(r, "Failed to restore the stored keys: %m");
        r = restore_hubs(m, x.fetching);
        if (r < 0)
                return r;
        /* Registrations not resumed (the link needs fresh PSRD) are forgotten now, not only once
         * registered again: a crash in between must not resume them either. */
        r = client_state_save_hubs(m);
        if (r < 0)
                return r;
        (void) state_dir_drop_unclaimed(m->state); /* logs what it destroys */

        key_store_set_state(m->keys, m->state);
        state_dir_set_snapshot_writer(m->state, write_snapshot, m);
        state_dir_set_pool_observer(m->state, manager_pool_observer, m);
        state_dir_set_failure_callback(m->state, on_state_failed, m);
        log_info("State restored from %s: %u hub registration(s), %zu key(s) awaiting delivery.",
                 m->config.state_dir, manager_hubs_ready(m), key_store_size(m->keys));
        return 0;
}
