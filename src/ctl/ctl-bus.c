/* SPDX-License-Identifier: MIT */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bus-util.h"
#include "ctl-bus.h"
#include "ctl-http.h"
#include "ctl-peers.h"
#include "ctl-util.h"
#include "json-util.h"
#include "log.h"

#define NODE_INTERFACE   "org.dske.Node1"
#define HUB_INTERFACE    "org.dske.Hub1"
#define CLIENT_INTERFACE "org.dske.Client1"
#define PEER_INTERFACE   "org.dske.Peer1"
#define HUB_PREFIX       "org.dske.Hub"
#define CLIENT_PREFIX    "org.dske.Client"

static const char *const bus_command_table[_BUS_COMMAND_MAX] = {
        [BUS_COMMAND_STATUS] = "status",
        [BUS_COMMAND_PEERS] = "peers",
        [BUS_COMMAND_POOLS] = "pools",
        [BUS_COMMAND_STOP] = "stop",
};

BusCommand bus_command_from_string(const char *s) {
        for (size_t i = 0; i < ELEMENTSOF(bus_command_table); i++)
                if (streq_ptr(s, bus_command_table[i]))
                        return (BusCommand) i;
        return _BUS_COMMAND_INVALID;
}

bool bus_node_has_role(const char *node) {
        return startswith(node, "hub/") || startswith(node, "client/");
}

static int bus_has_owner(sd_bus *bus, const char *name, bool *ret) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        int b, r;

        r = sd_bus_call_method(bus, "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus",
                               "NameHasOwner", &error, &reply, "s", name);
        if (r < 0)
                return log_error_errno(r, "Failed to ask the bus whether %s is owned: %s", name,
                                       error.message ?: strerror(-r));
        r = sd_bus_message_read(reply, "b", &b);
        if (r < 0)
                return log_error_errno(r, "Failed to parse the bus's answer: %m");
        *ret = b;
        return 0;
}

static int bus_name_build(const char *prefix, const char *instance, char **ret) {
        _cleanup_free_ char *element = NULL;
        int r;

        r = bus_name_element_from_instance(instance, &element);
        if (r == -ENOMEM)
                return log_oom();
        if (r < 0)
                return log_error_errno(r, "\"%s\" is not a node name.", instance);
        if (asprintf(ret, "%s.%s", prefix, element) < 0)
                return log_oom();
        return 0;
}

int bus_node_resolve(sd_bus *bus, const char *node, char **ret_name) {
        _cleanup_free_ char *hub = NULL, *client = NULL;
        const char *instance;
        bool has_hub = false, has_client = false;
        int r;

        if ((instance = startswith(node, "hub/"))) {
                r = bus_name_build(HUB_PREFIX, instance, &hub);
                if (r >= 0)
                        r = bus_has_owner(bus, hub, &has_hub);
                if (r < 0)
                        return r;
                if (!has_hub)
                        return -ENXIO;
                *ret_name = TAKE_PTR(hub);
                return 0;
        }
        if ((instance = startswith(node, "client/"))) {
                r = bus_name_build(CLIENT_PREFIX, instance, &client);
                if (r >= 0)
                        r = bus_has_owner(bus, client, &has_client);
                if (r < 0)
                        return r;
                if (!has_client)
                        return -ENXIO;
                *ret_name = TAKE_PTR(client);
                return 0;
        }

        r = bus_name_build(HUB_PREFIX, node, &hub);
        if (r >= 0)
                r = bus_name_build(CLIENT_PREFIX, node, &client);
        if (r >= 0)
                r = bus_has_owner(bus, hub, &has_hub);
        if (r >= 0)
                r = bus_has_owner(bus, client, &has_client);
        if (r < 0)
                return r;
        if (has_hub && has_client)
                return log_error_errno(-ENOTUNIQ,
                                       "Both a hub and a client named %s are on the system bus (%s, %s); "
                                       "say which with hub/%s or client/%s.",
                                       node, hub, client, node, node);
        if (!has_hub && !has_client)
                return -ENXIO;
        *ret_name = has_hub ? TAKE_PTR(hub) : TAKE_PTR(client);
        return 0;
}

int bus_node_log_not_running(const char *node) {
        _cleanup_free_ char *hub = NULL, *client = NULL, *element = NULL;
        const char *instance = startswith(node, "hub/") ?: startswith(node, "client/") ?: node;

        if (bus_name_element_from_instance(instance, &element) < 0)
                return log_error_errno(-ENXIO, "Node %s is not running on the system bus.", instance);
        if (startswith(node, "hub/"))
                return log_error_errno(-ENXIO, "Node %s is not running on the system bus (%s.%s).", instance,
                                       HUB_PREFIX, element);
        if (startswith(node, "client/"))
                return log_error_errno(-ENXIO, "Node %s is not running on the system bus (%s.%s).", instance,
                                       CLIENT_PREFIX, element);
        return log_error_errno(-ENXIO, "Node %s is not running on the system bus (%s.%s or %s.%s).",
                               instance, HUB_PREFIX, element, CLIENT_PREFIX, element);
}

/* Reads one "{sv}" dictionary (at the message's read position) into a JSON object; values of types
 * the interfaces do not use are skipped. */
static int properties_read(sd_bus_message *m, json_object **ret) {
        _cleanup_json_ json_object *o = json_object_new_object();
        int r;

        if (!o)
                return -ENOMEM;
        r = sd_bus_message_enter_container(m, 'a', "{sv}");
        if (r < 0)
                return r;
        while ((r = sd_bus_message_enter_container(m, 'e', "sv")) > 0) {
                const char *key, *contents;
                json_object *v = NULL;
                char type;

                r = sd_bus_message_read(m, "s", &key);
                if (r < 0)
                        return r;
                r = sd_bus_message_peek_type(m, &type, &contents);
                if (r < 0)
                        return r;
                r = sd_bus_message_enter_container(m, 'v', contents);
                if (r < 0)
                        return r;
                if (contents[0] == 's' && contents[1] == 0) {
                        const char *s;
                        r = sd_bus_message_read_basic(m, 's', &s);
                        if (r >= 0)
                                v = json_object_new_string(s);
                } else if (contents[0] == 'b' && contents[1] == 0) {
                        int b;
                        r = sd_bus_message_read_basic(m, 'b', &b);
                        if (r >= 0)
                                v = json_object_new_boolean(b);
                } else if (contents[0] == 'u' && contents[1] == 0) {
                        uint32_t u;
                        r = sd_bus_message_read_basic(m, 'u', &u);
                        if (r >= 0)
                                v = json_object_new_int64(u);
                } else if (contents[0] == 't' && contents[1] == 0) {
                        uint64_t t;
                        r = sd_bus_message_read_basic(m, 't', &t);
                        if (r >= 0)
                                v = json_object_new_int64((int64_t) MIN(t, (uint64_t) INT64_MAX));
                } else
                        r = sd_bus_message_skip(m, contents);
                if (r < 0)
                        return r;
                if (v && json_object_object_add(o, key, v) < 0) {
                        json_object_put(v);
                        return -ENOMEM;
                }
                r = sd_bus_message_exit_container(m);
                if (r >= 0)
                        r = sd_bus_message_exit_container(m);
                if (r < 0)
                        return r;
        }
        if (r < 0)
                return r;
        r = sd_bus_message_exit_container(m);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(o);
        return 0;
}

static int log_call_error(int r, const sd_bus_error *error, const char *what, const char *name) {
        if (sd_bus_error_has_name(error, SD_BUS_ERROR_SERVICE_UNKNOWN) ||
            sd_bus_error_has_name(error, SD_BUS_ERROR_NAME_HAS_NO_OWNER))
                return log_error_errno(-ENXIO, "%s went away from the system bus.", name);
        return log_error_errno(r, "Failed to %s from %s: %s", what, name, error->message ?: strerror(-r));
}

static int properties_get_all(sd_bus *bus, const char *name, const char *interface, json_object **ret) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        int r;

        r = sd_bus_call_method(bus, name, BUS_NODE_PATH, "org.freedesktop.DBus.Properties", "GetAll", &error,
                               &reply, "s", interface);
        if (r < 0)
                return log_call_error(r, &error, "read the properties", name);
        r = properties_read(reply, ret);
        if (r == -ENOMEM)
                return log_oom();
        if (r < 0)
                return log_error_errno(r, "Failed to parse the properties of %s: %m", name);
        return 0;
}

static int json_compare_names(const void *a, const void *b) {
        json_object *const *x = a, *const *y = b;

        return strcmp(strempty(json_get_string_member(*x, "Name")),
                      strempty(json_get_string_member(*y, "Name")));
}

/* The org.dske.Peer1 properties of every peer object, sorted by name. */
static int peers_get(sd_bus *bus, const char *name, json_object **ret) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        _cleanup_json_ json_object *peers = json_object_new_array();
        int r;

        if (!peers)
                return log_oom();
        r = sd_bus_call_method(bus, name, BUS_NODE_PATH, "org.freedesktop.DBus.ObjectManager",
                               "GetManagedObjects", &error, &reply, NULL);
        if (r < 0)
                return log_call_error(r, &error, "list the peers", name);

        r = sd_bus_message_enter_container(reply, 'a', "{oa{sa{sv}}}");
        while (r >= 0 && (r = sd_bus_message_enter_container(reply, 'e', "oa{sa{sv}}")) > 0) {
                const char *path;

                r = sd_bus_message_read(reply, "o", &path);
                if (r >= 0)
                        r = sd_bus_message_enter_container(reply, 'a', "{sa{sv}}");
                while (r >= 0 && (r = sd_bus_message_enter_container(reply, 'e', "sa{sv}")) > 0) {
                        const char *interface;

                        r = sd_bus_message_read(reply, "s", &interface);
                        if (r < 0)
                                break;
                        if (streq(interface, PEER_INTERFACE)) {
                                json_object *p = NULL;

                                r = properties_read(reply, &p);
                                if (r >= 0 && json_object_array_add(peers, p) < 0) {
                                        json_object_put(p);
                                        r = -ENOMEM;
                                }
                        } else
                                r = sd_bus_message_skip(reply, "a{sv}");
                        if (r >= 0)
                                r = sd_bus_message_exit_container(reply);
                }
                if (r >= 0)
                        r = sd_bus_message_exit_container(reply);
                if (r >= 0)
                        r = sd_bus_message_exit_container(reply);
        }
        if (r >= 0)
                r = sd_bus_message_exit_container(reply);
        if (r == -ENOMEM)
                return log_oom();
        if (r < 0)
                return log_error_errno(r, "Failed to parse the peer objects of %s: %m", name);

        json_object_array_sort(peers, json_compare_names);
        *ret = TAKE_PTR(peers);
        return 0;
}

static void properties_print(json_object *props) {
        json_object_object_foreach (props, key, v) {
                if (json_object_is_type(v, json_type_boolean))
                        printf("%20s: %s\n", key, json_object_get_boolean(v) ? "yes" : "no");
                else
                        printf("%20s: %s\n", key, json_object_get_string(v));
        }
}

static int command_status(sd_bus *bus, const char *name, bool json) {
        _cleanup_json_ json_object *node = NULL, *role = NULL;
        int r;

        if (json) {
                _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
                _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
                _cleanup_json_ json_object *o = NULL;
                const char *s;

                r = sd_bus_call_method(bus, name, BUS_NODE_PATH, NODE_INTERFACE, "Status", &error, &reply,
                                       NULL);
                if (r < 0)
                        return log_call_error(r, &error, "get the status", name);
                r = sd_bus_message_read(reply, "s", &s);
                if (r < 0)
                        return log_error_errno(r, "Failed to parse the status of %s: %m", name);
                o = json_tokener_parse(s);
                if (!o)
                        return log_error_errno(-EBADMSG, "The status of %s is not JSON.", name);
                json_print(o);
                return 0;
        }

        r = properties_get_all(bus, name, NODE_INTERFACE, &node);
        if (r < 0)
                return r;
        const char *node_role = json_get_string_member(node, "Role");
        r = properties_get_all(bus, name, streq_ptr(node_role, "hub") ? HUB_INTERFACE : CLIENT_INTERFACE,
                               &role);
        if (r < 0)
                return r;

        printf("%s %s (%s)\n", streq_ptr(node_role, "hub") ? "Hub" : "Client",
               strna(json_get_string_member(node, "Name")), name);
        properties_print(node);
        properties_print(role);
        return 0;
}

static uint64_t member_u64(json_object *o, const char *key) {
        json_object *v;

        if (!json_object_object_get_ex(o, key, &v))
                return 0;
        int64_t i = json_object_get_int64(v);
        return i > 0 ? (uint64_t) i : 0;
}

static bool member_bool(json_object *o, const char *key) {
        json_object *v;

        return json_object_object_get_ex(o, key, &v) && json_object_get_boolean(v);
}

static PeerPoolInfo pool_from_properties(json_object *p, const char *prefix) {
        char property[4][64];
        static const char *const suffix[] = {"Blocks", "TotalBytes", "UsedBytes", "AvailableBytes"};

        for (size_t i = 0; i < ELEMENTSOF(suffix); i++)
                (void) snprintf(property[i], sizeof(property[i]), "%sPool%s", prefix, suffix[i]);
        return (PeerPoolInfo){
                .blocks = member_u64(p, property[0]),
                .total_bytes = member_u64(p, property[1]),
                .used_bytes = member_u64(p, property[2]),
                .available_bytes = member_u64(p, property[3]),
        };
}

/* The org.dske.Peer1 objects as PeerInfo, sorted by name. */
static int peer_infos_get(sd_bus *bus, const char *name, PeerInfo **ret, size_t *ret_n) {
        _cleanup_json_ json_object *objects = NULL;
        PeerInfo *peers = NULL;
        size_t n = 0;
        int r;

        r = peers_get(bus, name, &objects);
        if (r < 0)
                return r;
        for (size_t i = 0; i < json_object_array_length(objects); i++) {
                json_object *o = json_object_array_get_idx(objects, i);
                PeerInfo p = {
                        .name = (char *) json_get_string_member(o, "Name"),
                        .registered = member_bool(o, "Registered"),
                        .state = (char *) json_get_string_member(o, "State"),
                        .shares_relayed = member_u64(o, "SharesRelayed"),
                        .last_error = (char *) json_get_string_member(o, "LastError"),
                        .local_pool = pool_from_properties(o, "Local"),
                        .peer_pool = pool_from_properties(o, "Peer"),
                };

                if (peer_infos_add(&peers, &n, &p) < 0) {
                        peer_infos_free(peers, n);
                        return log_oom();
                }
        }
        peer_infos_sort(peers, n);
        *ret = peers;
        *ret_n = n;
        return 0;
}

static int command_peers_or_pools(sd_bus *bus, const char *name, BusCommand command, bool json) {
        PeerInfo *peers = NULL;
        size_t n = 0;
        int r;

        r = peer_infos_get(bus, name, &peers, &n);
        if (r < 0)
                return r;
        r = command == BUS_COMMAND_POOLS ? peer_infos_print_pools(peers, n, json)
                                         : peer_infos_print_peers(peers, n, json);
        peer_infos_free(peers, n);
        return r;
}

static uint64_t now_usec(void) {
        struct timespec ts;

        (void) clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000u + (uint64_t) ts.tv_nsec / 1000u;
}

static int command_stop(sd_bus *bus, const char *name, bool json, uint64_t timeout_usec) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        int r;

        r = sd_bus_call_method(bus, name, BUS_NODE_PATH, NODE_INTERFACE, "Stop", &error, NULL, NULL);
        if (r < 0) {
                if (sd_bus_error_has_name(&error, SD_BUS_ERROR_ACCESS_DENIED))
                        return log_error_errno(
                                -EACCES, "Permission denied: only root may stop %s over the system bus.",
                                name);
                return log_call_error(r, &error, "stop", name);
        }

        /* The name goes away when the process exits (or closes its connection on the way out). */
        for (uint64_t deadline = now_usec() + timeout_usec;;) {
                bool owned;

                r = bus_has_owner(bus, name, &owned);
                if (r < 0)
                        return r;
                if (!owned)
                        break;
                if (now_usec() > deadline)
                        return log_error_errno(-ETIMEDOUT, "%s is still on the bus after %" PRIu64 " s.",
                                               name, timeout_usec / 1000000u);
                (void) usleep(50 * 1000);
        }
        if (json) {
                _cleanup_json_ json_object *o = json_object_new_object();

                if (!o || json_object_object_add(o, "result", json_object_new_string("stopped")) < 0 ||
                    json_object_object_add(o, "bus_name", json_object_new_string(name)) < 0)
                        return log_oom();
                json_print(o);
        } else
                printf("%s has stopped.\n", name);
        return 0;
}

int bus_node_run(sd_bus *bus, const char *name, BusCommand command, bool json, uint64_t timeout_usec) {
        switch (command) {
        case BUS_COMMAND_STATUS:
                return command_status(bus, name, json);
        case BUS_COMMAND_PEERS:
        case BUS_COMMAND_POOLS:
                return command_peers_or_pools(bus, name, command, json);
        case BUS_COMMAND_STOP:
                return command_stop(bus, name, json, timeout_usec);
        default:
                return -EINVAL;
        }
}
