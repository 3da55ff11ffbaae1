/* SPDX-License-Identifier: MIT */
#pragma once

/* The client's durable state (see state.h): node.json lists the hubs the client is registered
 * with; each hub's two pools are stored by the state directory; the gathered keys awaiting
 * delivery to their SAE are records, journaled as they are stored and removed. */

#include "client-manager.h"

/* Opens the state directory of the configuration (unless ephemeral). Logs what is wrong. */
int client_state_open(Manager *m);
/* Once the hubs exist: resumes their recorded registrations, restores the stored keys and
 * destroys the PSRD of hubs no longer configured. */
int client_state_restore(Manager *m);
/* Records (written before the request is sent) that a block of the hub-owned pool is being fetched from hub;
 * and that the fetch ended (the block arrived, or the hub refused). A fetch that began and did not end makes
 * the next start register with that hub again. */
int client_state_fetch_begin(Manager *m, const char *hub);
void client_state_fetch_end(Manager *m, const char *hub);
/* Rewrites node.json after a registration was gained or lost. */
int client_state_save_hubs(Manager *m);
