/* SPDX-License-Identifier: MIT */
#pragma once

/* One PeerHub per configured hub (PROTOCOL.md §8.1, §3.7): its registration state machine and
 * its two PSRD pools.
 *
 *   UNREGISTERED --PUT registration--> REGISTERING --200--> PROVISIONING --blocks--> READY
 *        ^                                  |                                         |
 *        +------ failure: back-off ---------+                                         |
 *        +------ 400 "Client is not registered." (the hub restarted) -----------------+
 *
 * Retries back off exponentially from RetryMin to RetryMax with jitter. Once registered, each
 * pool is refilled with BlockSize blocks when its unused bytes fall under LowWater, up to
 * HighWater; the hub-owned pool is also refilled when the hub reports it is running low. Every
 * re-registration starts a new generation with fresh pools: work started on an older generation
 * finishes without touching the new pools. */

#include <json-c/json.h>
#include <stdbool.h>
#include <stdint.h>
#include <systemd/sd-event.h>

#include "client-manager.h"
#include "http-client.h"
#include "psrd.h"

typedef enum PeerHubState {
        PEER_HUB_UNREGISTERED,
        PEER_HUB_REGISTERING,
        PEER_HUB_PROVISIONING,
        PEER_HUB_READY,
        _PEER_HUB_STATE_MAX,
        _PEER_HUB_STATE_INVALID = -EINVAL,
} PeerHubState;

const char *peer_hub_state_to_string(PeerHubState s);

struct PeerHub {
        Manager *manager;
        unsigned index; /* share index this hub carries */
        char *url;      /* base URL, ".../hub/NAME", no trailing '/' */
        char *name;     /* from the URL until the hub names itself at registration */
        PeerHubState state;
        PeerHubState bus_state; /* the state last signalled on the bus */
        uint64_t generation;

        Pool *local_pool; /* client-owned: what this client sends to the hub */
        Pool *peer_pool;  /* hub-owned: what the hub sends to this client */

        HttpCall *registration_call;
        HttpCall *psrd_call[_POOL_OWNER_MAX];
        bool refilling[_POOL_OWNER_MAX];
        bool hub_reported_low;                  /* the hub said its copy of the hub-owned pool is low (R5) */
        bool low_signalled[_POOL_OWNER_MAX];    /* PoolLow sent since the pool was last full */
        uint64_t refill_phase[_POOL_OWNER_MAX]; /* peer_hub_refill_level() */

        sd_event_source *retry_timer;
        uint64_t backoff_usec;

        /* After a transport failure key operations leave the hub alone until then (monotonic). */
        uint64_t unreachable_until;
        uint64_t unreachable_backoff;

        HttpCall *unregister_call;
        void (*unregister_done)(PeerHub *p, int error, void *userdata);
        void *unregister_userdata;

        /* When each block of the hub-owned pool was first seen in use (R4, see
         * peer_hub_retire_stale_blocks()). */
        struct {
                Uuid uuid;
                uint64_t since;
        } * in_use;
        size_t n_in_use;
        uint64_t n_bytes_retired;

        uint64_t n_registrations;
        uint64_t n_shares_sent;
        uint64_t n_shares_received;
        uint64_t n_failures;
        uint64_t n_blocks_fetched;
        char *last_error;
};

int peer_hub_new(Manager *m, unsigned index, const char *url, PeerHub **ret);
PeerHub *peer_hub_free(PeerHub *p);
DEFINE_TRIVIAL_CLEANUP_FUNC(PeerHub *, peer_hub_free);

/* Resumes a registration recorded in the state directory under name (the hub's own name): the
 * stored pools are used, and the hub is ready once both hold PSRD. */
int peer_hub_restore(PeerHub *p, const char *name);
/* Starts (or continues) whatever the hub needs: registration, then PSRD. */
void peer_hub_start(PeerHub *p);

/* Whether key operations may use the hub now. */
bool peer_hub_usable(const PeerHub *p);
/* Whether both pools are above the low-water mark. */
bool peer_hub_pools_healthy(const PeerHub *p);

/* What a key operation learnt about the hub. */
void peer_hub_note_unreachable(PeerHub *p, const char *why);
void peer_hub_note_reachable(PeerHub *p);
/* The hub answered 400 ClientNotRegistered to a request of the given generation: it lost our
 * registration (restarted). Answers about older generations are ignored. */
void peer_hub_lost_registration(PeerHub *p, uint64_t generation);
/* Stops using a block of the client-owned pool that the hub rejected (HubError.block_rejected). */
void peer_hub_retire_local_block(PeerHub *p, const Uuid *uuid);
/* A reply of the given generation named a block of the hub-owned pool this client does not have:
 * the pools disagree for good (the client was killed while the block was on its way), so the
 * client registers again for fresh pools. */
void peer_hub_lost_psrd(PeerHub *p, uint64_t generation);
/* The hub reported its copy of the hub-owned pool is low (503 with pool_available_bytes). */
void peer_hub_hub_pool_low(PeerHub *p);
/* Drops fully used blocks and refills pools under their threshold. */
void peer_hub_after_use(PeerHub *p);

void peer_hub_set_error(PeerHub *p, const char *format, ...) _printf_(2, 3);

/* The management status of the hub: names, state, counters and pool sizes, never PSRD. */
json_object *peer_hub_status_json(const PeerHub *p);

/* Unregisters from the hub (DELETE registration) and destroys the pools; done is called once. */
typedef void (*PeerHubUnregistered)(PeerHub *p, int error, void *userdata);
int peer_hub_unregister(PeerHub *p, PeerHubUnregistered done, void *userdata);

/* Classifies an error reply of a hub: its "message", and whether it is the reference's
 * ClientNotRegistered or an out-of-PSRD report. The JSON is parsed leniently (it is unsigned). */
typedef struct HubError {
        char message[128];
        bool client_not_registered;
        bool out_of_psrd;
        /* The hub does not have, or has used, bytes of this block of ours ("Invalid PSRD block
         * UUID.", "Attempt to use PSRD data more than once."): the pools disagree, as after the
         * hub's system went down and it burned blocks whose use was not yet on disk. */
        bool block_rejected;
        Uuid block_uuid;
} HubError;
void hub_error_parse(const HttpResponse *response, HubError *ret);
