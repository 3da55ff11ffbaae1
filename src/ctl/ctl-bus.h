/* SPDX-License-Identifier: MIT */
#pragma once

/* A node's management over the system bus (org.dske.Node1 and friends, the XML files in dbus/): status,
 * peers, pools and stop, with synchronous calls. */

#include <stdbool.h>
#include <systemd/sd-bus.h>

typedef enum BusCommand {
        BUS_COMMAND_STATUS,
        BUS_COMMAND_PEERS,
        BUS_COMMAND_POOLS,
        BUS_COMMAND_STOP,
        _BUS_COMMAND_MAX,
        _BUS_COMMAND_INVALID = -EINVAL,
} BusCommand;

BusCommand bus_command_from_string(const char *s);

/* Whether node names its role explicitly: "hub/NAME" or "client/NAME". */
bool bus_node_has_role(const char *node);

/* Finds the bus name of node: "hub/NAME", "client/NAME", or a bare NAME that must be owned as
 * exactly one of org.dske.Hub.NAME and org.dske.Client.NAME (NAME mapped as the daemons map their
 * instance names). Returns -ENXIO without logging when the node is not on the bus; other errors are
 * logged. */
int bus_node_resolve(sd_bus *bus, const char *node, char **ret_name);

/* Logs that node is not on the system bus, naming the bus names looked for; returns -ENXIO. */
int bus_node_log_not_running(const char *node);

/* Runs command on the node owning the bus name and prints the outcome, as JSON when json is set.
 * Stop waits up to timeout_usec for the name to go away. Returns 0 or a negative errno after
 * logging. */
int bus_node_run(sd_bus *bus, const char *name, BusCommand command, bool json, uint64_t timeout_usec);
