/* SPDX-License-Identifier: MIT */
#pragma once

/* What "topology up" leaves behind in its run directory: the file "state" (JSON) records the
 * topology file, and for every node its port and the process that serves it. A process is named by
 * its PID and its start time, so a PID reused by another program is never mistaken for a node. */

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "macro.h"
#include "topology.h"

typedef struct NodeState {
        NodeType type;
        char *name;
        uint16_t port;
        pid_t pid;
        uint64_t start_time; /* clock ticks after boot, field 22 of /proc/PID/stat */
} NodeState;

typedef struct TopologyState {
        char *topology_path;
        char *address;
        NodeState *nodes;
        size_t n_nodes;
} TopologyState;

TopologyState *topology_state_free(TopologyState *s);
DEFINE_TRIVIAL_CLEANUP_FUNC(TopologyState *, topology_state_free);

/* $XDG_RUNTIME_DIR/dske/ID, /run/dske/ID for root, otherwise /tmp/dske-UID/ID. */
int run_dir_default(const char *id, char **ret);
/* Creates the run directory (mode 0700) and its parents, refusing a directory owned by another
 * user or reachable through a symbolic link at its last component. */
int run_dir_make(const char *dir);
/* Takes an exclusive lock on DIR/lock for the life of the returned fd, waiting for other dskectl
 * processes working on the same topology. */
int run_dir_lock(const char *dir);

/* Returns 0 and *ret, or -ENOENT when there is no state. */
int topology_state_load(const char *dir, TopologyState **ret);
/* Writes atomically (a temporary file renamed over the old one). */
int topology_state_save(const char *dir, const TopologyState *s);
int topology_state_remove(const char *dir);

/* A state with one entry per node of t (pid 0: not started). */
int topology_state_from_topology(const Topology *t, TopologyState **ret);
NodeState *topology_state_find(const TopologyState *s, NodeType type, const char *name);

/* The start time of a live (not zombie) process, or -ESRCH. */
int process_start_time(pid_t pid, uint64_t *ret);
/* The CPU time (user and system) a live process has used so far, in clock-tick resolution. */
int process_cpu_usec(pid_t pid, uint64_t *ret);
/* Whether pid is still the dske-hub or dske-client process serving the node recorded in n. */
bool node_state_is_running(const NodeState *n);

/* Waits until the process recorded in n has exited; 0 when it is gone, -ETIMEDOUT. */
int node_state_wait_exit(const NodeState *n, int timeout_ms);

/* "DIR/TYPE-NAME.log" and "DIR/TYPE-NAME" (the node's --state-dir). */
int node_log_path(const char *dir, NodeType type, const char *name, char **ret);
int node_state_dir_path(const char *dir, NodeType type, const char *name, char **ret);
