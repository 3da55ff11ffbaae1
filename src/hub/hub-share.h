/* SPDX-License-Identifier: MIT */
#pragma once

/* Key shares waiting at the hub for their responder (PROTOCOL.md §7.3, §7.4, §12 C4, C5, R1).
 *
 * A share is indexed by its key ID: one key has at most one share on a given hub, and a key ID
 * cannot be reused or overwritten while its share is stored. It is removed when it is delivered,
 * when its time to live runs out, or when the client that posted it, or the one it waits for,
 * unregisters. The share value is plaintext key material: it is wiped when the share goes. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <systemd/sd-event.h>

#include "codec.h"
#include "hub-hashmap.h"
#include "macro.h"

typedef struct PeerClient PeerClient;
typedef struct ShareStore ShareStore;
typedef struct Share Share;

struct Share {
        ShareStore *store;
        Uuid key_id;
        unsigned share_index;
        PeerClient *master_client; /* who posted it */
        char *master_sae_id;
        char *slave_sae_id;
        uint8_t *value;
        size_t size;
        uint64_t expires_usec; /* CLOCK_MONOTONIC */
        Share *prev, *next;    /* by expiry, then arrival: arrival order while the time to live stays */
};

struct ShareStore {
        sd_event *event;
        struct StateDir *state; /* where additions and removals are journaled; NULL: nowhere */
        HubHashmap *by_key_id;
        Share *head, *tail;
        /* One timer for the whole store, due at or before the first expiry: a time source per share
         * cost an allocation and two priority queue updates for each share posted and delivered. */
        sd_event_source *expiry_source;
        uint64_t expiry_due_usec; /* while expiry_armed */
        bool expiry_armed;
        size_t n_shares;
        uint64_t n_expired;
        uint64_t n_delivered;
};

/* Creates a share holding a copy of value (size bytes). */
int share_new(const Uuid *key_id, unsigned share_index, PeerClient *master_client, const char *master_sae_id,
              const char *slave_sae_id, const uint8_t *value, size_t size, Share **ret);
/* Frees a share that is not in a store, wiping its value. */
Share *share_free(Share *s);
DEFINE_TRIVIAL_CLEANUP_FUNC(Share *, share_free);

/* Whether a and b carry the same key, index, SAEs, poster and value (the value in constant time). */
bool share_equal(const Share *a, const Share *b);

int share_store_init(ShareStore *st, sd_event *event);
/* Frees every share; none of that is journaled (the shares stay stored for the next start). */
void share_store_done(ShareStore *st);

Share *share_store_get(const ShareStore *st, const Uuid *key_id);
/* Stores s (taking ownership on success) to expire ttl_usec from now, and journals it. -EEXIST when
 * its key ID is present. */
int share_store_add(ShareStore *st, Share *s, uint64_t ttl_usec);
typedef enum ShareRemoval {
        SHARE_REMOVAL_DELIVERED,
        SHARE_REMOVAL_EXPIRED,
        SHARE_REMOVAL_DROPPED,
} ShareRemoval;
/* Unlinks and frees s, and journals its removal. */
void share_store_remove(ShareStore *st, Share *s, ShareRemoval why);
/* Drops the shares c posted and those whose slave SAE is one of c's encryptors. Returns the count. */
size_t share_store_drop_client(ShareStore *st, PeerClient *c);
