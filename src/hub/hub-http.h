/* SPDX-License-Identifier: MIT */
#pragma once

/* The hub's HTTP routes (PROTOCOL.md §7.1-§7.5), all under /hub/{name}/:
 *
 *   PUT    dske/oob/v1/registration                      register a client (out of band)
 *   DELETE dske/oob/v1/registration?client_name=         unregister it, destroying its PSRD
 *   GET    dske/oob/v1/psrd?client_name=&pool_owner=&size=   issue a PSRD block
 *   POST   dske/api/v1/key-share                         store a share (signed both ways)
 *   GET    dske/api/v1/key-share?client_name=&master_sae_id=&slave_sae_id=&key_id=
 *                                                        deliver a share (signed both ways)
 *   GET    mgmt/v1/status                                counts and sizes, never key material
 *   POST   mgmt/v1/stop                                  graceful stop
 *
 * Errors are JSON {"message": ..., "details": ...} with the reference's messages. */

#include <json-c/json.h>

#include "http-server.h"
#include "hub-manager.h"

/* The HttpHandler of the hub; userdata is the Manager. */
int hub_http_handler(HttpRequest *req, void *userdata);

/* The management status (GET .../mgmt/v1/status): names, counters and pool sizes, never PSRD.
 * NULL when out of memory. */
json_object *hub_status_json(Manager *m);
