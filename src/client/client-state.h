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
/* Writes the final checkpoint. */
void client_state_close(Manager *m);
/* Rewrites node.json after a registration was gained or lost. */
int client_state_save_hubs(Manager *m);
