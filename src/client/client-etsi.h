/* SPDX-License-Identifier: MIT */
#pragma once

/* The ETSI GS QKD 014 V1.1.1 key delivery API (PROTOCOL.md §7.6-§7.10, §13), served at the
 * standard root and under the reference's prefix:
 *
 *   /api/v1/keys/{SAE_ID}/{status|enc_keys|dec_keys}
 *   /client/{name}/etsi/api/v1/keys/{SAE_ID}/{status|enc_keys|dec_keys}
 *
 * Requests that need the hubs keep their HTTP request (its connection is suspended) and are
 * answered when every hub operation of the request has finished. */

#include "client-manager.h"
#include "http-server.h"

/* Returns 1 when req was an ETSI request (answered or kept for later), 0 when its path is not
 * one of the ETSI routes, or a negative errno. */
int client_etsi_dispatch(Manager *m, HttpRequest *req);

/* Drops every kept ETSI request (shutdown): running hub operations are cancelled, keys wiped. */
void client_etsi_abort_all(Manager *m);
size_t client_etsi_pending(const Manager *m);
