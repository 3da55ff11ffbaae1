/* SPDX-License-Identifier: MIT */
#pragma once

/* One node's management routes over HTTP: GET .../mgmt/v1/status (also read for peers and pools),
 * POST .../mgmt/v1/stop and, for clients, POST .../mgmt/v1/decommission. */

#include <stdbool.h>

#include "ctl-http.h"

typedef enum NodeAction {
        NODE_ACTION_STATUS,
        NODE_ACTION_STOP,
        NODE_ACTION_DECOMMISSION,
        NODE_ACTION_PEERS, /* the status, shown as "dskectl peers" shows peers */
        NODE_ACTION_POOLS,
        _NODE_ACTION_MAX,
        _NODE_ACTION_INVALID = -EINVAL,
} NodeAction;

/* Turns what the user gave into the node's management URL "…/TYPE/NAME/mgmt/v1": a node's base
 * URL ("http://127.0.0.1:8100/hub/hank") or any URL below it ("…/mgmt/v1/status"). */
int node_mgmt_base_from_url(const char *url, char **ret);

/* Runs action on the node whose management URL is mgmt_base and prints the outcome, as JSON when
 * json is set. Returns 0 or a negative errno after logging. */
int node_action(Ctl *ctl, const char *mgmt_base, NodeAction action, bool json);

/* Prints a node's status JSON as a short human-readable summary: byte counts, no key material. */
void node_status_print(json_object *status);
