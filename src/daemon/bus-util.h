/* SPDX-License-Identifier: MIT */
#pragma once

/* The D-Bus connection both daemons keep on their event loop: the system bus (or whatever
 * DBUS_SYSTEM_BUS_ADDRESS names), one well-known name per instance. A bus that cannot be reached
 * is not fatal: the node keeps serving HTTP and reports the problem (NodeBus.error). */

#include <stdbool.h>
#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>

#include "macro.h"
#include "psrd.h"

#define BUS_NODE_PATH        "/org/dske/Node"
#define BUS_PEER_PATH_PREFIX "/org/dske/Node/peer"

#define BUS_ERROR_STOPPING "org.dske.Error.Stopping"

typedef struct NodeBus {
        sd_bus *bus;
        char *name;  /* the well-known name requested */
        char *error; /* NULL while the bus is connected and the name owned (or being requested) */
} NodeBus;

/* Maps an instance name to a bus name element: '.' becomes '_', a leading digit gets a '_' in
 * front, '-' stays. Returns -EINVAL for names with other characters (or empty ones). */
int bus_name_element_from_instance(const char *instance, char **ret);

/* Opens the system bus and builds the name "<prefix>.<element>". Vtables are added to b->bus
 * afterwards, then node_bus_start() requests the name and attaches to the loop. On failure b->bus
 * is NULL, b->error says why, and the warning is logged here (once). */
int node_bus_open(NodeBus *b, const char *prefix, const char *instance);
int node_bus_start(NodeBus *b, sd_event *event);
/* Sends what is queued (a reply to Stop(), say) and closes. */
void node_bus_done(NodeBus *b);

/* Property getter for the pool statistics of org.dske.Peer1: userdata points at a Pool * (the
 * property's offset selects which pool), the property name's suffix which figure ("Blocks" u,
 * "TotalBytes", "UsedBytes", "AvailableBytes" t). A NULL pool reads as empty. */
int bus_property_get_pool(sd_bus *bus, const char *path, const char *interface, const char *property,
                          sd_bus_message *reply, void *userdata, sd_bus_error *error);

/* What org.dske.Node1 says the same way for both roles: Version, State ("starting" until the node
 * listens, "running", "stopping") and ListenAddress ("ADDRESS:PORT", IPv6 in brackets). */
int bus_property_get_version(sd_bus *bus, const char *path, const char *interface, const char *property,
                             sd_bus_message *reply, void *userdata, sd_bus_error *error);
int bus_append_node_state(sd_bus_message *reply, bool stopping, bool listening);
int bus_append_listen_address(sd_bus_message *reply, const char *address, unsigned port);

/* Whether the bus is up; what the management status reports under "bus". */
bool node_bus_ok(const NodeBus *b);
