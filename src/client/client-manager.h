/* SPDX-License-Identifier: MIT */
#pragma once

/* The client's Manager owns everything of one dske-client process: the event loop, the HTTP
 * server (ETSI key delivery and management), the HTTP client for the hubs, one PeerHub per hub,
 * the store of gathered keys not yet delivered, and the configuration. */

#include <json-c/json.h>
#include <stdbool.h>
#include <stdint.h>
#include <systemd/sd-event.h>

#include "bus-util.h"
#include "client-conf.h"
#include "http-client.h"
#include "http-server.h"
#include "macro.h"
#include "psrd.h"
#include "state.h"

typedef struct PeerHub PeerHub;
typedef struct KeyStore KeyStore;
typedef struct EtsiRequest EtsiRequest;
typedef struct Manager Manager;

struct Manager {
        sd_event *event;
        HttpServer *server;
        HttpClient *http;
        ClientConfig config;
        ClientArgs args; /* the command line, applied again over each reload */

        PeerHub **hubs;
        size_t n_hubs;

        NodeBus bus;

        StateDir *state; /* NULL: ephemeral */
        KeyStore *keys;
        EtsiRequest *etsi_requests; /* kept ETSI requests, waiting for hubs */

        sd_event_source *sigterm_source;
        sd_event_source *sigint_source;
        sd_event_source *sighup_source;
        sd_event_source *exit_timer;
        uint64_t exit_deadline;
        unsigned idle_polls;
        bool decommissioning;
        bool stopping;
        bool failed; /* the loop ends with a failure exit status */
        unsigned notified_hubs_ready;
        int notified_ready; /* -1 before the first STATUS= */

        HttpRequest *decommission_request;
        unsigned n_unregister_pending;
        json_object *decommission_report;

        /* Counters for the management status. */
        uint64_t n_keys_scattered;
        uint64_t n_keys_gathered;
        uint64_t n_scatter_failures;
        uint64_t n_gather_failures;
        uint64_t psrd_bytes_used;
        uint64_t psrd_bytes_given_back;
};

int manager_new(Manager **ret);
Manager *manager_free(Manager *m);
DEFINE_TRIVIAL_CLEANUP_FUNC(Manager *, manager_free);

/* Takes the configuration and arguments (moved into m), creates the peers, starts listening
 * (on listen_fd when it is not -1) and registering. */
int manager_start(Manager *m, ClientConfig *config, ClientArgs *args, int listen_fd);
int manager_run(Manager *m);

/* Reads the configuration file again and applies what may change at run time. */
int manager_reload(Manager *m);

/* Stops gracefully: no new connections; kept ETSI requests get their answers (within the hub
 * timeout), then the loop ends. */
void manager_begin_stop(Manager *m);

/* Called by peers when their state or pools change: updates readiness and the STATUS= line. */
void manager_peers_changed(Manager *m);

/* Whether every hub is registered and every pool is above its low-water mark (R19). */
bool manager_is_ready(const Manager *m);
unsigned manager_hubs_ready(const Manager *m);

/* The management status (GET .../mgmt/v1/status and Status() on the bus): names, counters and
 * pool sizes, never PSRD. NULL when out of memory. */
json_object *manager_status_json(Manager *m);

/* Observes every pool of every hub (the hook where persistence records PSRD changes). */
int manager_pool_observer(Pool *p, PsrdChange change, const Block *b, size_t start, size_t size,
                          void *userdata);

/* The one place where the calling SAE of an ETSI request is established. Returns the SAE ID
 * (borrowed from the configuration) when the caller is one of this client's encryptors, else
 * NULL: the request is then answered 401. */
const char *manager_etsi_caller(Manager *m, HttpRequest *req);
