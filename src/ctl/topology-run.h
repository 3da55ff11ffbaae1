/* SPDX-License-Identifier: MIT */
#pragma once

/* Running a topology on this machine without systemd: "up" starts every node as its own detached
 * process with a NOTIFY_SOCKET of ours, waits for READY=1 from each (the systemd readiness
 * protocol) and then for every client to report "ready" in its management status; "down" stops
 * them, clients first; "status" shows what runs. */

#include <stdbool.h>
#include <stdint.h>

#include "ctl-http.h"
#include "topology-state.h"
#include "topology.h"

typedef struct TopologyRunOptions {
        const char *run_dir;   /* NULL: run_dir_default() for the topology */
        unsigned base_port;    /* 0: from the file */
        uint64_t timeout_usec; /* 0: the file's ReadyTimeoutSec= */
        bool json;
        bool quiet;     /* print errors only */
        bool ephemeral; /* nodes keep their state in memory, not in the run directory */
} TopologyRunOptions;

int topology_up(Ctl *ctl, const char *path, const TopologyRunOptions *o);
/* Idempotent: a topology that is not up is reported and is not an error. */
int topology_down(const char *path, const TopologyRunOptions *o);
/* Returns 0 when every node runs and is ready, 3 otherwise (as "systemctl status" does). */
int topology_status(Ctl *ctl, const char *path, const TopologyRunOptions *o);

/* Loads the topology with the ports and address it runs on, when it is up; *ret_state (optional)
 * is NULL when it is not. */
int topology_open(const char *path, const TopologyRunOptions *o, Topology **ret, TopologyState **ret_state);

/* Finds the topology file of a running topology when none was named: the one recorded in
 * o->run_dir, or among the default run directories the one running topology that knows every SAE
 * and node named in the NULL-terminated list names ("hub/NAME", "client/NAME", a node or SAE name).
 * Logs what went wrong and returns -ENOENT when there is none, -ENOTUNIQ when several fit. */
int topology_discover(const TopologyRunOptions *o, const char *const *names, char **ret_path);

/* Finds a node by "hub/NAME", "client/NAME" or a NAME that only one node has. Logs and returns
 * -ENOENT or -ENOTUNIQ. */
int topology_lookup_node(const Topology *t, const char *spec, TopologyNode **ret);

/* "URL/mgmt/v1/ACTION" for a node. */
int node_mgmt_url(const Topology *t, const TopologyNode *n, const char *action, char **ret);
