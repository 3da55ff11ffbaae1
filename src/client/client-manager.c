/* SPDX-License-Identifier: MIT */
#include <ctype.h>
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <systemd/sd-daemon.h>
#include <time.h>

#include "client-bus.h"
#include "client-etsi.h"
#include "client-keys.h"
#include "client-manager.h"
#include "client-peer.h"
#include "client-state.h"
#include "json-util.h"
#include "log.h"

#define EXIT_POLL_USEC  (20u * 1000u)
#define EXIT_GRACE_USEC (1000u * 1000u)

static uint64_t now_usec(void) {
        struct timespec ts;

        (void) clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000u + (uint64_t) ts.tv_nsec / 1000u;
}

int manager_new(Manager **ret) {
        _cleanup_(manager_freep) Manager *m = NULL;
        int r;

        m = calloc(1, sizeof(Manager));
        if (!m)
                return -ENOMEM;
        *m = (Manager){
                .notified_ready = -1,
                .args = {.log_level = -1},
        };
        client_config_init(&m->config);

        /* A loop of our own rather than the thread's default one: sd-event checks the thread id of a
         * default loop with a gettid() system call on every iteration. */
        r = sd_event_new(&m->event);
        if (r < 0)
                return r;
        r = key_store_new(m->event, &m->keys);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(m);
        return 0;
}

Manager *manager_free(Manager *m) {
        if (!m)
                return NULL;

        /* Kept requests first: they hold hub calls and keys. */
        client_etsi_abort_all(m);
        if (m->decommission_request)
                http_request_release(m->decommission_request);
        if (m->decommission_report)
                json_object_put(m->decommission_report);
        node_bus_done(&m->bus);
        for (size_t i = 0; i < m->n_hubs; i++)
                peer_hub_free(m->hubs[i]);
        free(m->hubs);
        key_store_free(m->keys);
        m->state = state_dir_free(m->state);
        http_server_free(m->server);
        http_client_free(m->http);
        sd_event_source_disable_unref(m->sigterm_source);
        sd_event_source_disable_unref(m->sigint_source);
        sd_event_source_disable_unref(m->sighup_source);
        sd_event_source_disable_unref(m->exit_timer);
        sd_event_unref(m->event);
        client_config_done(&m->config);
        client_args_done(&m->args);
        free(m);
        return NULL;
}

int manager_pool_observer(Pool *p, PsrdChange change, const Block *b, size_t start, size_t size,
                          void *userdata) {
        Manager *m = userdata;

        /* Accounting only: the state directory has recorded the change before this is called. */
        switch (change) {
        case PSRD_CHANGE_MARKED_USED:
                m->psrd_bytes_used += size;
                break;
        case PSRD_CHANGE_GIVEN_BACK:
                m->psrd_bytes_given_back += size;
                break;
        case PSRD_CHANGE_BLOCK_ADDED:
        case PSRD_CHANGE_BLOCK_DROPPED:
                break;
        }
        return 0;
}

unsigned manager_hubs_ready(const Manager *m) {
        unsigned n = 0;

        for (size_t i = 0; i < m->n_hubs; i++)
                if (m->hubs[i]->state == PEER_HUB_READY)
                        n++;
        return n;
}

bool manager_is_ready(const Manager *m) {
        for (size_t i = 0; i < m->n_hubs; i++)
                if (!peer_hub_pools_healthy(m->hubs[i]))
                        return false;
        return m->n_hubs > 0 && !m->stopping;
}

void manager_peers_changed(Manager *m) {
        unsigned ready = manager_hubs_ready(m);
        int all = manager_is_ready(m);

        client_bus_peers_changed(m);
        if (ready == m->notified_hubs_ready && all == m->notified_ready)
                return;
        m->notified_hubs_ready = ready;
        m->notified_ready = all;
        client_bus_ready_changed(m);
        (void) sd_notifyf(false, "STATUS=%u of %zu hubs registered and provisioned%s.", ready, m->n_hubs,
                          all ? ", all pools above their low-water mark" : "");
}

const char *manager_etsi_caller(Manager *m, HttpRequest *req) {
        const char *h, *end;
        size_t len;

        switch (m->config.etsi_identity) {
        case ETSI_IDENTITY_HEADER:
                /* Development mode: the SAE names itself in the Authorization header. */
                h = http_request_header(req, "Authorization");
                if (!h)
                        return NULL;
                while (isspace((unsigned char) *h))
                        h++;
                end = h + strlen(h);
                while (end > h && isspace((unsigned char) end[-1]))
                        end--;
                len = (size_t) (end - h);
                for (size_t i = 0; m->config.encryptors && m->config.encryptors[i]; i++)
                        if (strlen(m->config.encryptors[i]) == len &&
                            strncmp(m->config.encryptors[i], h, len) == 0)
                                return m->config.encryptors[i];
                return NULL;
        default:
                return NULL;
        }
}

/* Stopping */

static int on_exit_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Manager *m = userdata;
        bool idle = client_etsi_pending(m) == 0 && !m->decommission_request &&
                    (!m->server || http_server_pending(m->server) == 0);

        /* Idle for a few rounds, so the replies just queued leave before the loop ends. */
        m->idle_polls = idle ? m->idle_polls + 1 : 0;
        if (m->idle_polls >= 3 || now_usec() >= m->exit_deadline) {
                m->exit_timer = sd_event_source_disable_unref(m->exit_timer);
                return sd_event_exit(m->event, 0);
        }
        (void) sd_event_source_set_time_relative(s, EXIT_POLL_USEC);
        return sd_event_source_set_enabled(s, SD_EVENT_ONESHOT);
}

void manager_begin_stop(Manager *m) {
        int r;

        if (m->stopping)
                return;
        m->stopping = true;
        log_info("Stopping.");
        client_bus_state_changed(m);
        (void) sd_notify(false, "STOPPING=1\nSTATUS=Stopping.");
        if (m->server)
                (void) http_server_quiesce(m->server);
        m->exit_deadline = now_usec() + m->config.hub_timeout_usec + EXIT_GRACE_USEC;
        r = sd_event_add_time_relative(m->event, &m->exit_timer, CLOCK_MONOTONIC, EXIT_POLL_USEC, 0,
                                       on_exit_timer, m);
        if (r < 0) {
                log_error_errno(r, "Failed to arm the exit timer, exiting at once: %m");
                (void) sd_event_exit(m->event, 0);
        }
}

/* Reloading */

int manager_reload(Manager *m) {
        ClientConfig c;
        int r;

        (void) sd_notify(false, "RELOADING=1\nSTATUS=Reloading configuration.");
        r = client_config_load(&m->args, &c);
        if (r < 0) {
                log_warning("Keeping the previous configuration.");
                (void) sd_notify(false, "READY=1");
                return r;
        }

        if (!streq_ptr(c.name, m->config.name) || !streq_ptr(c.listen_address, m->config.listen_address) ||
            c.port != m->config.port || strv_length(c.hubs) != strv_length(m->config.hubs) ||
            strv_length(c.encryptors) != strv_length(m->config.encryptors) ||
            c.etsi_identity != m->config.etsi_identity)
                log_notice("Name, listen address, port, hubs, encryptors and the ETSI identity mode change "
                           "only "
                           "on restart.");
        else
                for (size_t i = 0; c.hubs[i]; i++)
                        if (!streq(c.hubs[i], m->config.hubs[i])) {
                                log_notice("Hubs change only on restart.");
                                break;
                        }

                        /* Swap the run-time settings; the fixed ones stay as they are. */
#define SWAP(field)                                                                                         \
        do {                                                                                                \
                __typeof__(c.field) _t = m->config.field;                                                   \
                m->config.field = c.field;                                                                  \
                c.field = _t;                                                                               \
        } while (0)
        SWAP(shares_required);
        SWAP(min_scatter);
        SWAP(default_key_bits);
        SWAP(max_key_bits);
        SWAP(max_keys_per_request);
        SWAP(max_stored_keys);
        SWAP(stored_key_ttl_usec);
        SWAP(block_size);
        SWAP(low_water);
        SWAP(high_water);
        SWAP(hub_timeout_usec);
        SWAP(oob_timeout_usec);
        SWAP(retry_min_usec);
        SWAP(retry_max_usec);
        SWAP(directory);
        SWAP(management_from_anywhere);
        SWAP(log_level);
#undef SWAP
        if (c.shares_required != m->config.shares_required)
                client_bus_shares_required_changed(m);
        client_config_done(&c);

        log_set_max_level(m->config.log_level);
        log_info("Configuration reloaded.");
        (void) sd_notify(false, "READY=1");
        for (size_t i = 0; i < m->n_hubs; i++)
                peer_hub_after_use(m->hubs[i]);
        m->notified_ready = -1;
        manager_peers_changed(m);
        return 0;
}

static int on_signal(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        Manager *m = userdata;

        if (si->ssi_signo == SIGHUP)
                (void) manager_reload(m);
        else
                manager_begin_stop(m);
        return 0;
}

/* Management */

json_object *manager_status_json(Manager *m) {
        _cleanup_json_ json_object *o = NULL;
        json_object *encryptors, *hubs, *keys, *psrd;

        o = json_object_new_object();
        encryptors = json_object_new_array();
        hubs = json_object_new_array();
        keys = json_object_new_object();
        psrd = json_object_new_object();
        if (!o || !encryptors || !hubs || !keys || !psrd) {
                json_object_put(encryptors);
                json_object_put(hubs);
                json_object_put(keys);
                json_object_put(psrd);
                return NULL;
        }
        for (size_t i = 0; m->config.encryptors && m->config.encryptors[i]; i++)
                (void) json_object_array_add(encryptors, json_object_new_string(m->config.encryptors[i]));
        for (size_t i = 0; i < m->n_hubs; i++) {
                json_object *h = peer_hub_status_json(m->hubs[i]);

                if (!h || json_object_array_add(hubs, h) < 0) {
                        json_object_put(h);
                        json_object_put(encryptors);
                        json_object_put(hubs);
                        json_object_put(keys);
                        json_object_put(psrd);
                        return NULL;
                }
        }
        (void) json_object_object_add(keys, "scattered",
                                      json_object_new_int64((int64_t) m->n_keys_scattered));
        (void) json_object_object_add(keys, "gathered", json_object_new_int64((int64_t) m->n_keys_gathered));
        (void) json_object_object_add(keys, "scatter_failures",
                                      json_object_new_int64((int64_t) m->n_scatter_failures));
        (void) json_object_object_add(keys, "gather_failures",
                                      json_object_new_int64((int64_t) m->n_gather_failures));
        (void) json_object_object_add(keys, "stored",
                                      json_object_new_int64((int64_t) key_store_size(m->keys)));
        (void) json_object_object_add(keys, "requests_pending",
                                      json_object_new_int64((int64_t) client_etsi_pending(m)));
        (void) json_object_object_add(psrd, "bytes_used",
                                      json_object_new_int64((int64_t) m->psrd_bytes_used));
        (void) json_object_object_add(psrd, "bytes_given_back",
                                      json_object_new_int64((int64_t) m->psrd_bytes_given_back));
        (void) json_object_object_add(psrd, "block_size",
                                      json_object_new_int64((int64_t) m->config.block_size));
        (void) json_object_object_add(psrd, "low_water",
                                      json_object_new_int64((int64_t) m->config.low_water));
        (void) json_object_object_add(psrd, "high_water",
                                      json_object_new_int64((int64_t) m->config.high_water));

        (void) json_object_object_add(o, "name", json_object_new_string(m->config.name));
        (void) json_object_object_add(o, "version", json_object_new_string(PACKAGE_VERSION));
        (void) json_object_object_add(o, "ready", json_object_new_boolean(manager_is_ready(m)));
        (void) json_object_object_add(o, "stopping", json_object_new_boolean(m->stopping));
        (void) json_object_object_add(o, "encryptor_names", encryptors);
        (void) json_object_object_add(o, "shares_required",
                                      json_object_new_int((int) m->config.shares_required));
        (void) json_object_object_add(o, "hubs_ready", json_object_new_int((int) manager_hubs_ready(m)));
        (void) json_object_object_add(o, "peer_hubs", hubs);
        (void) json_object_object_add(o, "keys", keys);
        (void) json_object_object_add(o, "psrd", psrd);
        (void) json_object_object_add(o, "bus",
                                      node_bus_ok(&m->bus)
                                              ? json_object_new_boolean(true)
                                              : json_object_new_string(m->bus.error ?: "not connected"));
        return TAKE_PTR(o);
}

static void on_hub_unregistered(PeerHub *p, int error, void *userdata) {
        Manager *m = userdata;
        json_object *h = json_object_new_object();

        if (h) {
                (void) json_object_object_add(h, "hub_name", json_object_new_string(p->name));
                (void) json_object_object_add(h, "url", json_object_new_string(p->url));
                (void) json_object_object_add(h, "unregistered", json_object_new_boolean(error >= 0));
                if (error < 0)
                        (void) json_object_object_add(h, "error",
                                                      json_object_new_string(strna(p->last_error)));
                (void) json_object_array_add(m->decommission_report, h);
        }

        if (--m->n_unregister_pending > 0)
                return;

        log_info("Decommissioned: PSRD destroyed, stopping.");
        if (m->decommission_request) {
                json_object *o = json_object_new_object();

                if (o) {
                        (void) json_object_object_add(o, "result",
                                                      json_object_new_string("Client decommissioned"));
                        (void) json_object_object_add(o, "hubs", TAKE_PTR(m->decommission_report));
                        (void) http_request_reply_json(m->decommission_request, 200, o);
                } else
                        (void) http_request_reply_error(m->decommission_request, 500, NULL,
                                                        "Out of memory.");
                m->decommission_request = NULL;
        }
        manager_begin_stop(m);
}

static int mgmt_decommission(Manager *m, HttpRequest *req) {
        if (m->decommissioning || m->stopping)
                return http_request_reply_error(req, 409, NULL, "The client is already stopping.");

        log_notice("Decommissioning: unregistering from every hub and destroying all PSRD.");
        m->decommissioning = true;
        m->decommission_report = json_object_new_array();
        if (!m->decommission_report)
                return -ENOMEM;

        /* Nothing more is served: kept requests fail, stored keys go. */
        client_etsi_abort_all(m);
        key_store_clear(m->keys);

        m->decommission_request = req;
        m->n_unregister_pending = (unsigned) m->n_hubs;
        for (size_t i = 0; i < m->n_hubs; i++) {
                int r = peer_hub_unregister(m->hubs[i], on_hub_unregistered, m);

                if (r < 0) {
                        log_error_errno(r, "Failed to unregister from hub %s: %m", m->hubs[i]->name);
                        on_hub_unregistered(m->hubs[i], r, m);
                }
        }
        return 0;
}

static int manager_handle_mgmt(Manager *m, HttpRequest *req, const char *operation) {
        const char *method = http_request_method(req);

        if (!m->config.management_from_anywhere && !http_request_from_loopback(req))
                return http_request_reply_error(req, 403, NULL,
                                                "Management is only available from this host.");

        if (streq(operation, "status")) {
                json_object *o;

                if (!streq(method, "GET"))
                        goto not_allowed;
                o = manager_status_json(m);
                if (!o)
                        return -ENOMEM;
                return http_request_reply_json(req, 200, o);
        }
        if (streq(operation, "stop")) {
                json_object *o;

                if (!streq(method, "POST"))
                        goto not_allowed;
                o = json_object_new_object();
                if (!o)
                        return -ENOMEM;
                (void) json_object_object_add(o, "result", json_object_new_string("Client stopped"));
                manager_begin_stop(m);
                return http_request_reply_json(req, 200, o);
        }
        if (streq(operation, "decommission")) {
                if (!streq(method, "POST"))
                        goto not_allowed;
                return mgmt_decommission(m, req);
        }
        return http_request_reply_error(req, 404, NULL, "Not Found");

not_allowed:
        return http_request_reply_error(req, 405, NULL, "Method Not Allowed");
}

static int manager_handle_request(HttpRequest *req, void *userdata) {
        Manager *m = userdata;
        const char *path = http_request_path(req), *rest;
        int r;

        r = client_etsi_dispatch(m, req);
        if (r != 0)
                return r < 0 ? r : 0;

        rest = startswith(path, "/client/");
        if (rest)
                rest = startswith(rest, m->config.name);
        if (rest)
                rest = startswith(rest, "/mgmt/v1/");
        if (rest)
                return manager_handle_mgmt(m, req, rest);

        return http_request_reply_error(req, 404, NULL, "Not Found");
}

/* Start-up */

int manager_start(Manager *m, ClientConfig *config, ClientArgs *args, int listen_fd) {
        size_t n_hubs;
        int r;

        client_config_done(&m->config);
        m->config = *config;
        *config = (ClientConfig){};
        client_args_done(&m->args);
        m->args = *args;
        *args = (ClientArgs){.log_level = -1};

        r = sd_event_add_signal(m->event, &m->sigterm_source, SIGTERM, on_signal, m);
        if (r >= 0)
                r = sd_event_add_signal(m->event, &m->sigint_source, SIGINT, on_signal, m);
        if (r >= 0)
                r = sd_event_add_signal(m->event, &m->sighup_source, SIGHUP, on_signal, m);
        if (r < 0)
                return log_error_errno(r, "Failed to set up signal handling: %m");
        (void) sd_event_set_watchdog(m->event, true);

        r = http_client_new(m->event, &m->http);
        if (r < 0)
                return log_error_errno(r, "Failed to set up the HTTP client: %m");

        r = client_state_open(m);
        if (r < 0)
                return r;

        n_hubs = strv_length(m->config.hubs);
        m->hubs = calloc(n_hubs, sizeof(PeerHub *));
        if (!m->hubs)
                return log_oom();
        for (size_t i = 0; i < n_hubs; i++) {
                r = peer_hub_new(m, (unsigned) i, m->config.hubs[i], &m->hubs[i]);
                if (r < 0)
                        return log_error_errno(r, "Failed to set up hub %s: %m", m->config.hubs[i]);
                m->n_hubs++;
        }
        r = client_state_restore(m);
        if (r < 0)
                return r;

        r = http_server_new(m->event,
                            &(HttpServerConfig){
                                    .address = m->config.listen_address,
                                    .port = m->config.port,
                                    .listen_fd = listen_fd,
                                    .max_body_size = m->config.max_body_size,
                                    .max_connections = m->config.max_connections,
                            },
                            manager_handle_request, m, &m->server);
        if (r < 0)
                return log_error_errno(r, "Failed to listen on %s port %u: %m",
                                       m->config.listen_address ?: CLIENT_DEFAULT_ADDRESS, m->config.port);
        if (m->state)
                http_server_set_reply_hook(m->server, state_dir_flush_callback, m->state);

        log_info("Client %s listening on %s port %u with %zu hubs (k = %u).", m->config.name,
                 http_server_get_address(m->server), http_server_get_port(m->server), m->n_hubs,
                 m->config.shares_required);

        /* Logged and reported in the status when it fails: the client serves HTTP regardless. */
        (void) client_bus_connect(m);

        for (size_t i = 0; i < m->n_hubs; i++)
                peer_hub_start(m->hubs[i]);

        (void) sd_notify(false, "READY=1");
        manager_peers_changed(m);
        return 0;
}

int manager_run(Manager *m) {
        int r;

        r = sd_event_loop(m->event);
        if (r < 0)
                return log_error_errno(r, "Event loop failed: %m");
        if (!m->failed)
                (void) state_dir_close(m->state); /* logs what fails */
        return m->failed ? -EIO : 0;
}
