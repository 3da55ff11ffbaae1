/* SPDX-License-Identifier: MIT */
#pragma once

/* A node's peers as "dskectl peers" and "dskectl pools" show them, whichever way they were read: the
 * org.dske.Peer1 objects on the system bus or the node's GET .../mgmt/v1/status. */

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct PeerPoolInfo {
        uint64_t blocks, total_bytes, used_bytes, available_bytes;
} PeerPoolInfo;

typedef struct PeerInfo {
        char *name;
        bool registered;
        char *state;
        uint64_t shares_relayed;
        char *last_error; /* "" when there was none */
        PeerPoolInfo local_pool, peer_pool;
} PeerInfo;

void peer_infos_free(PeerInfo *peers, size_t n);

/* Adds one peer, copying the strings (NULL taken as ""). Returns 0 or -ENOMEM. */
int peer_infos_add(PeerInfo **peers, size_t *n, const PeerInfo *p);

/* Orders the peers by name, as both transports list them. */
void peer_infos_sort(PeerInfo *peers, size_t n);

/* Reads the peers from a hub's (peer_clients) or a client's (peer_hubs) status JSON. Returns 0,
 * -EBADMSG when status is neither, or -ENOMEM; does not log. */
int peer_infos_from_status(json_object *status, PeerInfo **ret, size_t *ret_n);

/* Print the peers as "dskectl peers" or "dskectl pools", as JSON when json is set. Return 0 or
 * -ENOMEM after logging. */
int peer_infos_print_peers(const PeerInfo *peers, size_t n, bool json);
int peer_infos_print_pools(const PeerInfo *peers, size_t n, bool json);
