/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <json-c/json.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "daemon-util.h"
#include "hub-bus.h"
#include "hub-http.h"
#include "hub-manager.h"
#include "hub-state.h"
#include "log.h"

/* How long a stop waits for requests in progress before it closes what is left. */
#define STOP_GRACE_USEC (5u * 1000000u)
#define STOP_POLL_USEC  (20u * 1000u)
/* Replies are handed to the server before the loop ends; this lets them reach the wire. */
#define STOP_MIN_DELAY_USEC  (100u * 1000u)
#define STATUS_INTERVAL_USEC (1000u * 1000u)

bool peer_client_has_encryptor(const PeerClient *c, const char *sae_id) {
        for (size_t i = 0; i < c->n_encryptor_names; i++)
                if (streq(c->encryptor_names[i], sae_id))
                        return true;
        return false;
}

static void strv_free_n(char **l, size_t n) {
        if (!l)
                return;
        for (size_t i = 0; i < n; i++)
                free(l[i]);
        free(l);
}

/* Frees c; with destroy its stored PSRD goes too (it unregistered), else it stays for the next
 * start. */
static PeerClient *peer_client_free(PeerClient *c, bool destroy) {
        if (!c)
                return NULL;
        state_dir_release_pool(c->manager->state, c->client_pool, destroy);
        state_dir_release_pool(c->manager->state, c->hub_pool, destroy);
        pool_free(c->client_pool);
        pool_free(c->hub_pool);
        strv_free_n(c->encryptor_names, c->n_encryptor_names);
        free(c->name);
        free(c);
        return NULL;
}

static void peer_client_freep(PeerClient **c) {
        peer_client_free(*c, true);
}

/* Gives c a new encryptor list and its pools: those stored for it when restore is set (start-up),
 * else fresh, empty ones (a registration; the old pools are wiped, freed and their files removed).
 * On failure c is left without pools and must be removed. */
static int peer_client_reset(PeerClient *c, char *const *encryptor_names, size_t n, bool restore) {
        StateDir *d = c->manager->state;
        char **names;
        int r;

        names = calloc(n + 1, sizeof(char *));
        if (!names)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                names[i] = strdup(encryptor_names[i]);
                if (!names[i]) {
                        strv_free_n(names, i);
                        return -ENOMEM;
                }
        }
        strv_free_n(c->encryptor_names, c->n_encryptor_names);
        c->encryptor_names = names;
        c->n_encryptor_names = n;

        state_dir_release_pool(d, c->client_pool, !restore);
        state_dir_release_pool(d, c->hub_pool, !restore);
        c->client_pool = pool_free(c->client_pool);
        c->hub_pool = pool_free(c->hub_pool);
        r = state_dir_take_pool(d, c->name, POOL_OWNER_PEER, &c->client_pool);
        if (r < 0)
                return r;
        r = state_dir_take_pool(d, c->name, POOL_OWNER_LOCAL, &c->hub_pool);
        if (r < 0)
                return r;
        if (!restore)
                c->n_registrations++;
        return 0;
}

void peer_client_drop_used_blocks(PeerClient *c) {
        (void) pool_drop_used_blocks(c->client_pool);
        (void) pool_drop_used_blocks(c->hub_pool);
}

PeerClient *manager_find_client(const Manager *m, const char *name) {
        return hub_hashmap_get(m->clients_by_name, name, strlen(name));
}

PeerClient *manager_find_client_by_encryptor(const Manager *m, const char *sae_id) {
        for (PeerClient *c = m->clients_head; c; c = c->next)
                if (peer_client_has_encryptor(c, sae_id))
                        return c;
        return NULL;
}

int manager_register_client(Manager *m, const char *name, char *const *encryptor_names, size_t n,
                            PeerClient **ret, const char **ret_conflict) {
        PeerClient *c;
        int r;

        c = manager_find_client(m, name);

        /* SAE IDs are unique across the topology: the hub hands a share to the client that
         * registered its slave SAE, so a second client must not be able to claim one. */
        for (size_t i = 0; i < n; i++) {
                PeerClient *owner = manager_find_client_by_encryptor(m, encryptor_names[i]);
                if (owner && owner != c) {
                        if (ret_conflict)
                                *ret_conflict = encryptor_names[i];
                        return -EADDRINUSE;
                }
        }

        if (c) {
                r = peer_client_reset(c, encryptor_names, n, false);
                if (r < 0) {
                        (void) manager_unregister_client(m, name);
                        return r;
                }
                log_info("Client %s registered again: its PSRD pools start empty.", name);
        } else {
                if (m->n_clients >= m->config.max_clients)
                        return -EUSERS;
                r = manager_add_client(m, name, encryptor_names, n, false, &c);
                if (r < 0)
                        return r;
                log_info("Client %s registered with %zu encryptor(s).", name, n);
        }

        r = hub_state_save_clients(m);
        if (r < 0) {
                (void) manager_unregister_client(m, name);
                return r;
        }
        *ret = c;
        return 0;
}

int manager_add_client(Manager *m, const char *name, char *const *encryptor_names, size_t n, bool restore,
                       PeerClient **ret) {
        _cleanup_(peer_client_freep) PeerClient *fresh = NULL;
        PeerClient *c;
        int r;

        fresh = calloc(1, sizeof(*fresh));
        if (!fresh)
                return -ENOMEM;
        fresh->manager = m;
        fresh->name = strdup(name);
        if (!fresh->name)
                return -ENOMEM;
        r = peer_client_reset(fresh, encryptor_names, n, restore);
        if (r < 0)
                return r;

        r = hub_hashmap_put(m->clients_by_name, fresh->name, strlen(fresh->name), fresh);
        if (r < 0)
                return r;

        c = TAKE_PTR(fresh);
        c->prev = m->clients_tail;
        if (m->clients_tail)
                m->clients_tail->next = c;
        else
                m->clients_head = c;
        m->clients_tail = c;
        m->n_clients++;

        manager_notify_status(m);
        hub_bus_client_added(m, c);
        *ret = c;
        return 0;
}

static void manager_remove_client(Manager *m, PeerClient *c, bool destroy) {
        (void) hub_hashmap_remove(m->clients_by_name, c->name, strlen(c->name));
        if (c->prev)
                c->prev->next = c->next;
        else
                m->clients_head = c->next;
        if (c->next)
                c->next->prev = c->prev;
        else
                m->clients_tail = c->prev;
        m->n_clients--;
        peer_client_free(c, destroy);
}

int manager_unregister_client(Manager *m, const char *name) {
        PeerClient *c;
        size_t n;

        c = manager_find_client(m, name);
        if (!c)
                return -ENOENT;

        n = share_store_drop_client(&m->shares, c);
        log_info("Client %s unregistered: PSRD destroyed, %zu pending share(s) dropped.", name, n);
        hub_bus_client_removed(m, c);
        manager_remove_client(m, c, true);
        manager_notify_status(m);
        return hub_state_save_clients(m);
}

static void manager_send_status(Manager *m) {
        if (m->stopping)
                return;
        (void) daemon_notify_status("Serving %zu client(s), %zu share(s) pending.", m->n_clients,
                                    m->shares.n_shares);
}

static int manager_on_status_timer(sd_event_source *source, uint64_t usec, void *userdata) {
        manager_send_status(userdata);
        return 0;
}

void manager_notify_status(Manager *m) {
        int r;

        /* A busy hub changes state on every request: report it at most once per interval. */
        if (m->status_source) {
                r = sd_event_source_get_enabled(m->status_source, NULL);
                if (r > 0)
                        return;
                r = sd_event_source_set_time_relative(m->status_source, STATUS_INTERVAL_USEC);
                if (r >= 0)
                        r = sd_event_source_set_enabled(m->status_source, SD_EVENT_ONESHOT);
        } else
                r = sd_event_add_time_relative(m->event, &m->status_source, CLOCK_MONOTONIC,
                                               STATUS_INTERVAL_USEC, 0, manager_on_status_timer, m);
        if (r < 0)
                manager_send_status(m);
}

int manager_new(HubConfig *config, Manager **ret) {
        _cleanup_(manager_freep) Manager *m = NULL;
        int r;

        m = calloc(1, sizeof(*m));
        if (!m)
                return -ENOMEM;

        /* A loop of our own rather than the thread's default one: sd-event checks the thread id of a
         * default loop with a gettid() system call on every iteration. */
        r = sd_event_new(&m->event);
        if (r < 0)
                return r;
        r = hub_hashmap_new(&m->clients_by_name);
        if (r < 0)
                return r;
        r = share_store_init(&m->shares, m->event);
        if (r < 0)
                return r;

        m->config = *config;
        hub_config_init(config);

        *ret = TAKE_PTR(m);
        return 0;
}

Manager *manager_free(Manager *m) {
        if (!m)
                return NULL;

        node_bus_done(&m->bus);
        m->server = http_server_free(m->server);

        share_store_done(&m->shares);
        while (m->clients_head)
                manager_remove_client(m, m->clients_head, false);
        m->state = state_dir_free(m->state);
        m->clients_by_name = hub_hashmap_free(m->clients_by_name);
        if (m->tokener)
                json_tokener_free(m->tokener);

        sd_event_source_disable_unref(m->stop_source);
        sd_event_source_disable_unref(m->status_source);
        sd_event_unref(m->event);

        hub_config_done(&m->config);
        hub_config_done(&m->overrides);
        free(m->config_path);
        free(m);
        return NULL;
}

static int manager_stop_poll(sd_event_source *source, uint64_t usec, void *userdata) {
        Manager *m = userdata;
        size_t n = http_server_requests(m->server);
        int r;

        /* Idle keep-alive connections do not hold the stop up: clients reconnect to whoever
         * serves next. */
        if (n == 0 || usec >= m->stop_deadline) {
                if (n > 0)
                        log_notice("Closing %zu request(s) still in progress after the grace period.", n);
                return sd_event_exit(m->event, 0);
        }
        r = sd_event_source_set_time_relative(source, STOP_POLL_USEC);
        if (r >= 0)
                r = sd_event_source_set_enabled(source, SD_EVENT_ONESHOT);
        if (r < 0)
                return sd_event_exit(m->event, 0);
        return 0;
}

void manager_stop(Manager *m, const char *reason) {
        uint64_t now;
        int r;

        if (m->stopping)
                return;
        m->stopping = true;

        log_info("Stopping: %s.", reason);
        hub_bus_state_changed(m);

        /* Closed before STOPPING=1 goes out: whoever sees it finds the port closed. */
        if (m->server) {
                r = http_server_quiesce(m->server);
                if (r < 0)
                        log_warning_errno(r, "Failed to stop accepting connections: %m");
        }
        (void) daemon_notify_stopping("Stopping.");

        r = sd_event_now(m->event, CLOCK_MONOTONIC, &now);
        if (r >= 0) {
                m->stop_deadline = now + STOP_GRACE_USEC;
                r = sd_event_add_time(m->event, &m->stop_source, CLOCK_MONOTONIC, now + STOP_MIN_DELAY_USEC,
                                      0, manager_stop_poll, m);
        }
        if (r < 0 || !m->server) {
                if (r < 0)
                        log_warning_errno(r, "Failed to arm the stop timer, stopping at once: %m");
                (void) sd_event_exit(m->event, 0);
        }
}

/* Applies the settings that may change at run time; reports those that need a restart. */
static void manager_apply_config(Manager *m, HubConfig *c) {
        if (!streq_ptr(c->name, m->config.name) || !streq_ptr(c->listen_address, m->config.listen_address) ||
            c->port != m->config.port || c->max_body_size != m->config.max_body_size ||
            c->max_connections != m->config.max_connections || !streq_ptr(c->state_dir, m->config.state_dir))
                log_notice("Name, address, port, state directory, body size and connection limits change "
                           "only on restart; keeping the running values.");

        m->config.oob_api = c->oob_api;
        m->config.management_from_anywhere = c->management_from_anywhere;
        m->config.max_block_size = c->max_block_size;
        m->config.max_pool_size = c->max_pool_size;
        m->config.share_ttl_usec = c->share_ttl_usec;
        m->config.max_shares_per_client = c->max_shares_per_client;
        m->config.max_clients = c->max_clients;
        m->config.log_level = c->log_level;
        log_set_max_level(c->log_level);
}

/* Builds the configuration as at start-up: defaults, the file, then the command line. */
int manager_load_config(const char *path, bool required, const HubConfig *overrides, bool override_log_level,
                        HubConfig *ret) {
        HubConfig c;
        int r;

        hub_config_init(&c);
        if (path) {
                /* The parser logs every failure but a missing file. */
                r = hub_config_parse_file(&c, path);
                if (r < 0 && (r != -ENOENT || required)) {
                        if (r == -ENOENT)
                                log_error_errno(r, "Configuration file %s does not exist.", path);
                        hub_config_done(&c);
                        return r;
                }
        }

#define OVERRIDE_STRING(field)                                                                              \
        if (overrides->field) {                                                                             \
                free(c.field);                                                                              \
                c.field = strdup(overrides->field);                                                         \
                if (!c.field) {                                                                             \
                        hub_config_done(&c);                                                                \
                        return log_oom();                                                                   \
                }                                                                                           \
        }
        OVERRIDE_STRING(name);
        OVERRIDE_STRING(listen_address);
        OVERRIDE_STRING(state_dir);
#undef OVERRIDE_STRING
        if (overrides->ephemeral)
                c.ephemeral = true;
        if (!c.ephemeral && !c.state_dir && c.name) {
                r = daemon_default_state_dir("hub", c.name, &c.state_dir);
                if (r < 0) {
                        hub_config_done(&c);
                        return log_oom();
                }
        }
        if (overrides->port != 0)
                c.port = overrides->port;
        if (override_log_level)
                c.log_level = overrides->log_level;

        r = hub_config_verify(&c);
        if (r < 0) {
                hub_config_done(&c);
                return r;
        }
        *ret = c;
        return 0;
}

int manager_reload(Manager *m) {
        HubConfig c;
        int r;

        (void) daemon_notify_reloading();
        r = manager_load_config(m->config_path, m->config_path_required, &m->overrides,
                                m->override_log_level, &c);
        if (r < 0)
                log_error_errno(r, "Failed to reload the configuration, keeping the running one: %m");
        else {
                manager_apply_config(m, &c);
                hub_config_done(&c);
                log_info("Configuration reloaded.");
        }
        (void) daemon_notify_ready();
        manager_send_status(m);
        return r;
}

static int manager_on_stop_signal(sd_event_source *source, const struct signalfd_siginfo *si,
                                  void *userdata) {
        manager_stop(userdata, si->ssi_signo == SIGTERM ? "SIGTERM received" : "SIGINT received");
        return 0;
}

static int manager_on_reload_signal(sd_event_source *source, const struct signalfd_siginfo *si,
                                    void *userdata) {
        (void) manager_reload(userdata);
        return 0;
}

int manager_start(Manager *m, int listen_fd) {
        HttpServerConfig sc = {
                .address = m->config.listen_address,
                .port = m->config.port,
                .listen_fd = listen_fd,
                .max_body_size = m->config.max_body_size,
                .max_connections = m->config.max_connections,
        };
        int r;

        r = daemon_setup_event(m->event, manager_on_stop_signal, manager_on_reload_signal, m);
        if (r < 0)
                return log_error_errno(r, "Failed to set up signal handling: %m");

        r = hub_state_open(m);
        if (r < 0)
                return r;

        r = http_server_new(m->event, &sc, hub_http_handler, m, &m->server);
        if (r < 0)
                return log_error_errno(r, "Failed to listen on %s port %u: %m",
                                       m->config.listen_address ?: HUB_DEFAULT_ADDRESS, m->config.port);
        if (m->state)
                http_server_set_reply_hook(m->server, state_dir_flush_callback, m->state);

        log_info("Hub %s listening on %s port %u.", m->config.name, http_server_get_address(m->server),
                 http_server_get_port(m->server));

        /* Logged and reported in the status when it fails: the hub serves HTTP regardless. */
        (void) hub_bus_connect(m);
        return 0;
}

int manager_run(Manager *m) {
        int r;

        (void) daemon_notify_ready();
        manager_send_status(m);

        r = sd_event_loop(m->event);
        if (r < 0)
                return log_error_errno(r, "Event loop failed: %m");
        if (!m->failed)
                (void) state_dir_close(m->state); /* logs what fails */
        log_info("Stopped.");
        return m->failed ? -EIO : 0;
}
