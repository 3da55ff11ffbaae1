/* SPDX-License-Identifier: MIT */
#pragma once

/* The hub's durable state (see state.h): node.json lists the registered clients and their
 * encryptors; each client's two pools are stored by the state directory; the shares waiting for
 * their responder are records, journaled as they are stored and removed. */

#include <stdint.h>

#include "hub-manager.h"

/* Opens the state directory of the configuration (unless ephemeral) and restores the clients,
 * their pools and the stored shares. Logs what is wrong. */
int hub_state_open(Manager *m);

/* Rewrites node.json after a registration or unregistration. */
int hub_state_save_clients(Manager *m);
int hub_state_share_put(StateDir *d, const Share *s, uint64_t ttl_usec);
void hub_state_share_delete(StateDir *d, const Share *s);
