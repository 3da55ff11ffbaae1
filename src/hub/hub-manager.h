/* SPDX-License-Identifier: MIT */
#pragma once

/* The hub's state and event loop (PROTOCOL.md §8.4): the registered clients (PeerClient), each with
 * its two PSRD pools, and the store of key shares waiting for their responder.
 *
 * Every change to it goes through the functions below (registration, unregistration, share store
 * and remove) and every PSRD change through the pools' PoolObserver, so that hub-state.c records it
 * in the state directory before it is acted upon (unless the hub is ephemeral). */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <systemd/sd-event.h>

#include "bus-util.h"
#include "http-server.h"
#include "hub-conf.h"
#include "hub-hashmap.h"
#include "hub-share.h"
#include "macro.h"
#include "psrd.h"
#include "state.h"

/* A registering client may name this many encryptors (SAEs) at most. */
#define HUB_ENCRYPTORS_PER_CLIENT_MAX 256u

typedef struct Manager Manager;
typedef struct PeerClient PeerClient;

struct PeerClient {
        Manager *manager;
        char *name;
        char **encryptor_names; /* NULL-terminated */
        size_t n_encryptor_names;

        /* The client allocates from the client-owned pool, the hub takes what it names there; the
         * hub allocates from the hub-owned pool for what it sends to this client. On the hub the
         * first is the "peer" pool and the second the "local" one (§3.2). */
        Pool *client_pool;
        Pool *hub_pool;

        size_t n_shares;          /* shares this client posted that are still stored */
        uint64_t n_shares_posted; /* every share this client posted while registered here */
        uint64_t n_registrations;

        PeerClient *prev, *next; /* registration order (kept across re-registration) */
};

bool peer_client_has_encryptor(const PeerClient *c, const char *sae_id);

struct Manager {
        sd_event *event;
        HttpServer *server;

        HubConfig config;
        /* What the command line set (strings non-NULL, port non-zero), re-applied over the file on
         * reload; main fills these in after manager_new(). */
        HubConfig overrides;
        bool override_log_level;
        char *config_path; /* NULL: none */
        bool config_path_required;

        PeerClient *clients_head, *clients_tail;
        HubHashmap *clients_by_name;
        size_t n_clients;

        StateDir *state; /* NULL: ephemeral */
        ShareStore shares;
        /* Request bodies are parsed one at a time: one tokener serves them all. */
        struct json_tokener *tokener;

        NodeBus bus;

        sd_event_source *stop_source;
        sd_event_source *status_source;
        bool stopping;
        bool failed; /* the loop ends with a failure exit status */
        uint64_t stop_deadline;
};

/* Takes config (moved; c is reset to defaults). The config must have passed hub_config_verify(). */
int manager_new(HubConfig *config, Manager **ret);
Manager *manager_free(Manager *m);
DEFINE_TRIVIAL_CLEANUP_FUNC(Manager *, manager_free);

/* Binds the listener (listen_fd >= 0: an inherited socket) and installs signal handlers. */
int manager_start(Manager *m, int listen_fd);
/* Runs the loop until a stop completes; returns the exit code for main. */
int manager_run(Manager *m);

/* Begins a graceful stop: no new connections, requests in progress are answered, then the loop
 * ends. Safe to call more than once. */
void manager_stop(Manager *m, const char *reason);
/* Builds a configuration as at start-up: built-in defaults, then the file at path (if path is not
 * NULL; a missing file is an error only when required), then overrides (see Manager), then checks
 * it. Logs what is wrong. */
int manager_load_config(const char *path, bool required, const HubConfig *overrides, bool override_log_level,
                        HubConfig *ret);
/* Re-reads the configuration file and applies the run-time settings. */
int manager_reload(Manager *m);

PeerClient *manager_find_client(const Manager *m, const char *name);
/* Registers name, or re-registers it with fresh empty pools and the given encryptor list; the
 * shares it posted are kept. Returns 0 or:
 *   -EUSERS      MaxClients reached
 *   -EADDRINUSE  an encryptor is registered for another client (*ret_conflict names it)
 *   -ENOMEM */
int manager_register_client(Manager *m, const char *name, char *const *encryptor_names, size_t n,
                            PeerClient **ret, const char **ret_conflict);
/* Adds a client that is not registered yet: with fresh pools, or with those of the state directory
 * when restore is set. */
int manager_add_client(Manager *m, const char *name, char *const *encryptor_names, size_t n, bool restore,
                       PeerClient **ret);
/* Forgets a client: both pools are wiped and freed, the shares it posted and those waiting for
 * its encryptors are dropped. Returns 0, or -ENOENT when it was not registered. */
int manager_unregister_client(Manager *m, const char *name);

/* The client that registered sae_id as one of its encryptors, or NULL. */
PeerClient *manager_find_client_by_encryptor(const Manager *m, const char *sae_id);

/* Removes the blocks of both pools that are entirely used. */
void peer_client_drop_used_blocks(PeerClient *c);

/* Reports the hub's state through STATUS= to the service manager, soon (changes are coalesced). */
void manager_notify_status(Manager *m);
