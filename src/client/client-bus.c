/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <json-c/json.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "client-bus.h"
#include "json-util.h"
#include "log.h"

/* The counters (keys, shares, pool bytes) change on nearly every request: a PropertiesChanged
 * signal for them would cost signals per key. They are declared without change signals
 * (EmitsChangedSignal=false in the introspection) and readers poll them. The node's state, the
 * readiness and each hub's registration state are signalled, and PoolLow marks a pool going under
 * its low-water mark. */

static int property_get_role(sd_bus *bus, const char *path, const char *interface, const char *property,
                             sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        return sd_bus_message_append(reply, "s", "client");
}

static int property_get_state(sd_bus *bus, const char *path, const char *interface, const char *property,
                              sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;

        return bus_append_node_state(reply, m->stopping, m->server);
}

static int property_get_listen_address(sd_bus *bus, const char *path, const char *interface,
                                       const char *property, sd_bus_message *reply, void *userdata,
                                       sd_bus_error *error) {
        Manager *m = userdata;

        if (m->server)
                return bus_append_listen_address(reply, http_server_get_address(m->server),
                                                 http_server_get_port(m->server));
        return bus_append_listen_address(reply, m->config.listen_address ?: CLIENT_DEFAULT_ADDRESS,
                                         m->config.port);
}

static int method_stop(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;

        if (m->stopping || m->decommissioning)
                return sd_bus_error_set(error, BUS_ERROR_STOPPING, "The client is already stopping.");
        log_info("Stop requested over D-Bus.");
        manager_begin_stop(m);
        return sd_bus_reply_method_return(msg, NULL);
}

static int method_status(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        _cleanup_json_ json_object *o = NULL;

        o = manager_status_json(userdata);
        if (!o)
                return -ENOMEM;
        return sd_bus_reply_method_return(msg, "s",
                                          json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
}

static const sd_bus_vtable node_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_PROPERTY("Name", "s", NULL, offsetof(Manager, config.name), SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Role", "s", property_get_role, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Version", "s", bus_property_get_version, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("State", "s", property_get_state, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("ListenAddress", "s", property_get_listen_address, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_METHOD("Stop", NULL, NULL, method_stop, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("Status", SD_BUS_NO_ARGS, SD_BUS_RESULT("s", status), method_status,
                                SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_VTABLE_END,
};

static int property_get_hubs_ready(sd_bus *bus, const char *path, const char *interface,
                                   const char *property, sd_bus_message *reply, void *userdata,
                                   sd_bus_error *error) {
        return sd_bus_message_append(reply, "u", (uint32_t) manager_hubs_ready(userdata));
}

static int property_get_hub_count(sd_bus *bus, const char *path, const char *interface, const char *property,
                                  sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;

        return sd_bus_message_append(reply, "u", (uint32_t) m->n_hubs);
}

static int property_get_ready(sd_bus *bus, const char *path, const char *interface, const char *property,
                              sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        return sd_bus_message_append(reply, "b", manager_is_ready(userdata));
}

static const sd_bus_vtable client_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_PROPERTY("SharesRequired", "u", NULL, offsetof(Manager, config.shares_required),
                        SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("HubCount", "u", property_get_hub_count, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("HubsReady", "u", property_get_hubs_ready, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("Ready", "b", property_get_ready, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("KeysScattered", "t", NULL, offsetof(Manager, n_keys_scattered), 0),
        SD_BUS_PROPERTY("KeysGathered", "t", NULL, offsetof(Manager, n_keys_gathered), 0),
        SD_BUS_SIGNAL_WITH_ARGS("PoolLow",
                                SD_BUS_ARGS("s", peer, "s", pool, "t", available_bytes, "t", threshold), 0),
        SD_BUS_VTABLE_END,
};

static bool peer_hub_registered(const PeerHub *p) {
        return p->state == PEER_HUB_PROVISIONING || p->state == PEER_HUB_READY;
}

static int property_get_registered(sd_bus *bus, const char *path, const char *interface,
                                   const char *property, sd_bus_message *reply, void *userdata,
                                   sd_bus_error *error) {
        return sd_bus_message_append(reply, "b", peer_hub_registered(userdata));
}

static int property_get_peer_state(sd_bus *bus, const char *path, const char *interface,
                                   const char *property, sd_bus_message *reply, void *userdata,
                                   sd_bus_error *error) {
        PeerHub *p = userdata;

        return sd_bus_message_append(reply, "s", peer_hub_state_to_string(p->state));
}

static int property_get_shares_relayed(sd_bus *bus, const char *path, const char *interface,
                                       const char *property, sd_bus_message *reply, void *userdata,
                                       sd_bus_error *error) {
        PeerHub *p = userdata;

        return sd_bus_message_append(reply, "t", p->n_shares_sent + p->n_shares_received);
}

/* On the client the "local" pool is the client-owned one, the "peer" pool the hub-owned one
 * (§3.2); SharesRelayed counts the shares sent to and received from the hub. */
static const sd_bus_vtable peer_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_PROPERTY("Name", "s", NULL, offsetof(PeerHub, name), 0),
        SD_BUS_PROPERTY("Registered", "b", property_get_registered, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("State", "s", property_get_peer_state, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("LocalPoolBlocks", "u", bus_property_get_pool, offsetof(PeerHub, local_pool), 0),
        SD_BUS_PROPERTY("LocalPoolTotalBytes", "t", bus_property_get_pool, offsetof(PeerHub, local_pool), 0),
        SD_BUS_PROPERTY("LocalPoolUsedBytes", "t", bus_property_get_pool, offsetof(PeerHub, local_pool), 0),
        SD_BUS_PROPERTY("LocalPoolAvailableBytes", "t", bus_property_get_pool, offsetof(PeerHub, local_pool),
                        0),
        SD_BUS_PROPERTY("PeerPoolBlocks", "u", bus_property_get_pool, offsetof(PeerHub, peer_pool), 0),
        SD_BUS_PROPERTY("PeerPoolTotalBytes", "t", bus_property_get_pool, offsetof(PeerHub, peer_pool), 0),
        SD_BUS_PROPERTY("PeerPoolUsedBytes", "t", bus_property_get_pool, offsetof(PeerHub, peer_pool), 0),
        SD_BUS_PROPERTY("PeerPoolAvailableBytes", "t", bus_property_get_pool, offsetof(PeerHub, peer_pool),
                        0),
        SD_BUS_PROPERTY("SharesRelayed", "t", property_get_shares_relayed, 0, 0),
        SD_BUS_PROPERTY("LastError", "s", NULL, offsetof(PeerHub, last_error), 0),
        SD_BUS_VTABLE_END,
};

static PeerHub *manager_find_hub(Manager *m, const char *name) {
        for (size_t i = 0; i < m->n_hubs; i++)
                if (streq(m->hubs[i]->name, name))
                        return m->hubs[i];
        return NULL;
}

static int peer_find(sd_bus *bus, const char *path, const char *interface, void *userdata, void **found,
                     sd_bus_error *error) {
        _cleanup_free_ char *name = NULL;
        PeerHub *p;
        int r;

        r = sd_bus_path_decode(path, BUS_PEER_PATH_PREFIX, &name);
        if (r <= 0)
                return r;
        p = manager_find_hub(userdata, name);
        if (!p)
                return 0;
        *found = p;
        return 1;
}

static int peer_enumerate(sd_bus *bus, const char *path, void *userdata, char ***ret_nodes,
                          sd_bus_error *error) {
        Manager *m = userdata;
        char **l;
        int r;

        l = calloc(m->n_hubs + 1, sizeof(char *));
        if (!l)
                return -ENOMEM;
        for (size_t i = 0; i < m->n_hubs; i++) {
                r = sd_bus_path_encode(BUS_PEER_PATH_PREFIX, m->hubs[i]->name, &l[i]);
                if (r < 0) {
                        for (size_t j = 0; j < i; j++)
                                free(l[j]);
                        free(l);
                        return r;
                }
        }
        *ret_nodes = l;
        return 0;
}

int client_bus_connect(Manager *m) {
        int r;

        r = node_bus_open(&m->bus, "org.dske.Client", m->config.name);
        if (r < 0)
                return r;

        r = sd_bus_add_object_vtable(m->bus.bus, NULL, BUS_NODE_PATH, "org.dske.Node1", node_vtable, m);
        if (r >= 0)
                r = sd_bus_add_object_vtable(m->bus.bus, NULL, BUS_NODE_PATH, "org.dske.Client1",
                                             client_vtable, m);
        if (r >= 0)
                r = sd_bus_add_fallback_vtable(m->bus.bus, NULL, BUS_PEER_PATH_PREFIX, "org.dske.Peer1",
                                               peer_vtable, peer_find, m);
        if (r >= 0)
                r = sd_bus_add_node_enumerator(m->bus.bus, NULL, BUS_PEER_PATH_PREFIX, peer_enumerate, m);
        if (r >= 0)
                r = sd_bus_add_object_manager(m->bus.bus, NULL, BUS_NODE_PATH);
        if (r < 0) {
                log_warning_errno(r, "Failed to export the D-Bus objects, continuing without D-Bus: %m");
                node_bus_done(&m->bus);
                m->bus.error = strdup("failed to export the D-Bus objects");
                return r;
        }
        for (size_t i = 0; i < m->n_hubs; i++)
                m->hubs[i]->bus_state = m->hubs[i]->state;
        return node_bus_start(&m->bus, m->event);
}

void client_bus_state_changed(Manager *m) {
        if (!m->bus.bus)
                return;
        (void) sd_bus_emit_properties_changed(m->bus.bus, BUS_NODE_PATH, "org.dske.Node1", "State", NULL);
}

void client_bus_shares_required_changed(Manager *m) {
        if (!m->bus.bus)
                return;
        (void) sd_bus_emit_properties_changed(m->bus.bus, BUS_NODE_PATH, "org.dske.Client1",
                                              "SharesRequired", NULL);
}

void client_bus_peers_changed(Manager *m) {
        for (size_t i = 0; i < m->n_hubs; i++) {
                PeerHub *p = m->hubs[i];
                _cleanup_free_ char *path = NULL;

                if (p->bus_state == p->state)
                        continue;
                p->bus_state = p->state;
                if (!m->bus.bus || sd_bus_path_encode(BUS_PEER_PATH_PREFIX, p->name, &path) < 0)
                        continue;
                (void) sd_bus_emit_properties_changed(m->bus.bus, path, "org.dske.Peer1", "Registered",
                                                      "State", NULL);
        }
}

void client_bus_ready_changed(Manager *m) {
        if (!m->bus.bus)
                return;
        (void) sd_bus_emit_properties_changed(m->bus.bus, BUS_NODE_PATH, "org.dske.Client1", "HubsReady",
                                              "Ready", NULL);
}

void client_bus_pool_low(PeerHub *p, PoolOwner owner, uint64_t available, uint64_t threshold) {
        Manager *m = p->manager;

        if (!m->bus.bus)
                return;
        (void) sd_bus_emit_signal(m->bus.bus, BUS_NODE_PATH, "org.dske.Client1", "PoolLow", "sstt", p->name,
                                  owner == POOL_OWNER_LOCAL ? "local" : "peer", available, threshold);
}
