/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <json-c/json.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "hub-bus.h"
#include "hub-http.h"
#include "json-util.h"
#include "log.h"

/* The counters (shares, pool bytes) change on nearly every request: a PropertiesChanged signal
 * for them would cost one signal per key share. They are declared without change signals
 * (EmitsChangedSignal=false in the introspection) and readers poll them; the node's state and
 * registrations (objects added and removed) are signalled. */

static int property_get_role(sd_bus *bus, const char *path, const char *interface, const char *property,
                             sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        return sd_bus_message_append(reply, "s", "hub");
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
        return bus_append_listen_address(reply, m->config.listen_address ?: HUB_DEFAULT_ADDRESS,
                                         m->config.port);
}

static int property_get_size(sd_bus *bus, const char *path, const char *interface, const char *property,
                             sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        const size_t *n = userdata;

        return sd_bus_message_append(reply, "u", (uint32_t) MIN(*n, (size_t) UINT32_MAX));
}

static int method_stop(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;

        if (m->stopping)
                return sd_bus_error_set(error, BUS_ERROR_STOPPING, "The hub is already stopping.");
        manager_stop(m, "stop requested over D-Bus");
        return sd_bus_reply_method_return(msg, NULL);
}

static int method_status(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        _cleanup_json_ json_object *o = NULL;

        o = hub_status_json(userdata);
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

static const sd_bus_vtable hub_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_PROPERTY("ClientCount", "u", property_get_size, offsetof(Manager, n_clients), 0),
        SD_BUS_PROPERTY("SharesStored", "u", property_get_size, offsetof(Manager, shares.n_shares), 0),
        SD_BUS_PROPERTY("SharesDelivered", "t", NULL, offsetof(Manager, shares.n_delivered), 0),
        SD_BUS_PROPERTY("SharesExpired", "t", NULL, offsetof(Manager, shares.n_expired), 0),
        SD_BUS_VTABLE_END,
};

static int property_get_true(sd_bus *bus, const char *path, const char *interface, const char *property,
                             sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        return sd_bus_message_append(reply, "b", 1);
}

static int property_get_peer_state(sd_bus *bus, const char *path, const char *interface,
                                   const char *property, sd_bus_message *reply, void *userdata,
                                   sd_bus_error *error) {
        return sd_bus_message_append(reply, "s", "registered");
}

static int property_get_empty(sd_bus *bus, const char *path, const char *interface, const char *property,
                              sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        /* A hub records no per-client failure: a bad request is answered and forgotten. */
        return sd_bus_message_append(reply, "s", "");
}

/* Flags as org.dske.Peer1.xml, shared with the client, although a registered client's name and
 * state never change here.
 *
 * On the hub the "local" pool is the hub-owned one, the "peer" pool the client-owned one (§3.2);
 * SharesRelayed counts the shares this client posted. */
static const sd_bus_vtable peer_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_PROPERTY("Name", "s", NULL, offsetof(PeerClient, name), 0),
        SD_BUS_PROPERTY("Registered", "b", property_get_true, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("State", "s", property_get_peer_state, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("LocalPoolBlocks", "u", bus_property_get_pool, offsetof(PeerClient, hub_pool), 0),
        SD_BUS_PROPERTY("LocalPoolTotalBytes", "t", bus_property_get_pool, offsetof(PeerClient, hub_pool),
                        0),
        SD_BUS_PROPERTY("LocalPoolUsedBytes", "t", bus_property_get_pool, offsetof(PeerClient, hub_pool), 0),
        SD_BUS_PROPERTY("LocalPoolAvailableBytes", "t", bus_property_get_pool,
                        offsetof(PeerClient, hub_pool), 0),
        SD_BUS_PROPERTY("PeerPoolBlocks", "u", bus_property_get_pool, offsetof(PeerClient, client_pool), 0),
        SD_BUS_PROPERTY("PeerPoolTotalBytes", "t", bus_property_get_pool, offsetof(PeerClient, client_pool),
                        0),
        SD_BUS_PROPERTY("PeerPoolUsedBytes", "t", bus_property_get_pool, offsetof(PeerClient, client_pool),
                        0),
        SD_BUS_PROPERTY("PeerPoolAvailableBytes", "t", bus_property_get_pool,
                        offsetof(PeerClient, client_pool), 0),
        SD_BUS_PROPERTY("SharesRelayed", "t", NULL, offsetof(PeerClient, n_shares_posted), 0),
        SD_BUS_PROPERTY("LastError", "s", property_get_empty, 0, 0),
        SD_BUS_VTABLE_END,
};

static int peer_find(sd_bus *bus, const char *path, const char *interface, void *userdata, void **found,
                     sd_bus_error *error) {
        Manager *m = userdata;
        _cleanup_free_ char *name = NULL;
        PeerClient *c;
        int r;

        r = sd_bus_path_decode(path, BUS_PEER_PATH_PREFIX, &name);
        if (r <= 0)
                return r;
        c = manager_find_client(m, name);
        if (!c)
                return 0;
        *found = c;
        return 1;
}

static int peer_enumerate(sd_bus *bus, const char *path, void *userdata, char ***ret_nodes,
                          sd_bus_error *error) {
        Manager *m = userdata;
        char **l;
        size_t k = 0;
        int r;

        l = calloc(m->n_clients + 1, sizeof(char *));
        if (!l)
                return -ENOMEM;
        for (PeerClient *c = m->clients_head; c; c = c->next) {
                r = sd_bus_path_encode(BUS_PEER_PATH_PREFIX, c->name, &l[k]);
                if (r < 0) {
                        while (k > 0)
                                free(l[--k]);
                        free(l);
                        return r;
                }
                k++;
        }
        *ret_nodes = l;
        return 0;
}

int hub_bus_connect(Manager *m) {
        int r;

        r = node_bus_open(&m->bus, "org.dske.Hub", m->config.name);
        if (r < 0)
                return r;

        r = sd_bus_add_object_vtable(m->bus.bus, NULL, BUS_NODE_PATH, "org.dske.Node1", node_vtable, m);
        if (r >= 0)
                r = sd_bus_add_object_vtable(m->bus.bus, NULL, BUS_NODE_PATH, "org.dske.Hub1", hub_vtable,
                                             m);
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
        return node_bus_start(&m->bus, m->event);
}

void hub_bus_state_changed(Manager *m) {
        if (!m->bus.bus)
                return;
        (void) sd_bus_emit_properties_changed(m->bus.bus, BUS_NODE_PATH, "org.dske.Node1", "State", NULL);
}

static void hub_bus_client_emit(Manager *m, PeerClient *c, bool added) {
        _cleanup_free_ char *path = NULL;

        if (!m->bus.bus)
                return;
        if (sd_bus_path_encode(BUS_PEER_PATH_PREFIX, c->name, &path) < 0)
                return;
        if (added)
                (void) sd_bus_emit_object_added(m->bus.bus, path);
        else
                (void) sd_bus_emit_object_removed(m->bus.bus, path);
}

void hub_bus_client_added(Manager *m, PeerClient *c) {
        hub_bus_client_emit(m, c, true);
}

void hub_bus_client_removed(Manager *m, PeerClient *c) {
        hub_bus_client_emit(m, c, false);
}
