/* SPDX-License-Identifier: MIT */
#pragma once

/* A local topology: hubs and clients described in one INI file, each node run as its own process
 * on one address with consecutive ports.
 *
 *   [Topology]
 *   BasePort=8100            ports are given out in node order from here
 *   Address=127.0.0.1        where every node listens
 *   HubConfig=FILE           added to every hub's configuration (relative to the topology file)
 *   ClientConfig=FILE        added to every client's configuration
 *   SharesRequired=3         k, the shares a client needs to rebuild a key (default: the client's)
 *   LogLevel=notice          every node's log level (default: the daemons' own)
 *   ReadyTimeoutSec=30s      how long "up" waits for every node to become ready
 *   CPUSchedulingPolicy=batch  the nodes' scheduling policy, batch or other, as in the units
 *
 *   [Hub hank]               one section per hub; Config= overrides HubConfig=
 *   [Client carol]           one section per client
 *   Encryptors=sam           the client's SAE IDs, unique across the topology; Config= as for hubs
 *
 * Nodes are ordered hubs first, then clients, each by name (byte order); the i-th node listens on
 * BasePort+i. Every client is configured with every hub, in that order. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "macro.h"

typedef enum NodeType {
        NODE_HUB,
        NODE_CLIENT,
        _NODE_TYPE_MAX,
        _NODE_TYPE_INVALID = -EINVAL,
} NodeType;

const char *node_type_to_string(NodeType t) _const_;
NodeType node_type_from_string(const char *s) _pure_;

typedef struct TopologyNode {
        NodeType type;
        char *name;
        char **encryptors; /* clients only; NULL-terminated, may be NULL */
        char *config;      /* absolute path of extra configuration, or NULL */
        unsigned line;     /* where the section starts in the file */
        unsigned encryptors_line;
        uint16_t port;
} TopologyNode;

typedef struct Topology {
        char *path;    /* absolute */
        char *id;      /* the file name without directory and extension: names the run directory */
        char *address; /* numeric IPv4 or IPv6 */
        uint16_t base_port;
        unsigned shares_required; /* 0: the clients' default */
        char *log_level;          /* NULL: the daemons' default */
        uint64_t ready_timeout_usec;
        int cpu_scheduling_policy; /* SCHED_BATCH or SCHED_OTHER */
        TopologyNode *nodes;       /* hubs first, then clients, each sorted by name */
        size_t n_nodes;
        size_t n_hubs;
} Topology;

#define TOPOLOGY_BASE_PORT_DEFAULT     8100
#define TOPOLOGY_READY_TIMEOUT_DEFAULT (30 * 1000000ULL)

/* The topology's identifier: the file name without directory and extension. */
int topology_id_from_path(const char *path, char **ret);

/* Reads and checks a topology file. Problems are logged as "FILE:LINE: ..." and give -EINVAL. */
int topology_load(const char *path, Topology **ret);
Topology *topology_free(Topology *t);
DEFINE_TRIVIAL_CLEANUP_FUNC(Topology *, topology_free);

/* Numbers the nodes from base_port; -ERANGE when the last port would exceed 65535. */
int topology_assign_ports(Topology *t, unsigned base_port);

/* type may be _NODE_TYPE_INVALID to match either type. */
TopologyNode *topology_find_node(const Topology *t, NodeType type, const char *name);
/* The client that serves SAE sae, or NULL. */
TopologyNode *topology_find_sae(const Topology *t, const char *sae);

/* "http://ADDRESS:PORT/TYPE/NAME" (IPv6 addresses in brackets). */
int topology_node_url(const Topology *t, const TopologyNode *n, char **ret);
