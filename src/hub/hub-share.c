/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "hub-manager.h"
#include "hub-share.h"
#include "hub-state.h"
#include "log.h"
#include "secret.h"

int share_new(const Uuid *key_id, unsigned share_index, PeerClient *master_client, const char *master_sae_id,
              const char *slave_sae_id, const uint8_t *value, size_t size, Share **ret) {
        _cleanup_(share_freep) Share *s = NULL;

        s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        *s = (Share){
                .key_id = *key_id,
                .share_index = share_index,
                .master_client = master_client,
                .master_sae_id = strdup(master_sae_id),
                .slave_sae_id = strdup(slave_sae_id),
                .value = secret_memdup(value, size),
                .size = size,
        };
        if (!s->master_sae_id || !s->slave_sae_id || !s->value)
                return -ENOMEM;

        *ret = TAKE_PTR(s);
        return 0;
}

Share *share_free(Share *s) {
        if (!s)
                return NULL;
        free(s->master_sae_id);
        free(s->slave_sae_id);
        erase_and_free(s->value, s->size);
        free(s);
        return NULL;
}

bool share_equal(const Share *a, const Share *b) {
        return uuid_equal(&a->key_id, &b->key_id) && a->share_index == b->share_index &&
               a->master_client == b->master_client && streq(a->master_sae_id, b->master_sae_id) &&
               streq(a->slave_sae_id, b->slave_sae_id) && a->size == b->size &&
               secret_equal(a->value, b->value, a->size);
}

static int store_on_expiry(sd_event_source *source, uint64_t usec, void *userdata);

int share_store_init(ShareStore *st, sd_event *event) {
        int r;

        *st = (ShareStore){.event = event};
        r = hub_hashmap_new(&st->by_key_id);
        if (r < 0)
                return r;
        r = sd_event_add_time(event, &st->expiry_source, CLOCK_MONOTONIC, 0, 0, store_on_expiry, st);
        if (r < 0)
                return r;
        (void) sd_event_source_set_description(st->expiry_source, "share-expiry");
        return sd_event_source_set_enabled(st->expiry_source, SD_EVENT_OFF);
}

void share_store_done(ShareStore *st) {
        st->state = NULL;
        while (st->head)
                share_store_remove(st, st->head, SHARE_REMOVAL_DROPPED);
        st->by_key_id = hub_hashmap_free(st->by_key_id);
        st->expiry_source = sd_event_source_disable_unref(st->expiry_source);
}

Share *share_store_get(const ShareStore *st, const Uuid *key_id) {
        return hub_hashmap_get(st->by_key_id, key_id->bytes, sizeof(key_id->bytes));
}

/* Makes the timer go off at usec at the latest. It is not put back when the first share leaves
 * early: going off before any share is due only sets it again, once per time to live at most. */
static int store_arm(ShareStore *st, uint64_t usec) {
        int r;

        if (st->expiry_armed && st->expiry_due_usec <= usec)
                return 0;
        r = sd_event_source_set_time(st->expiry_source, usec);
        if (r < 0)
                return r;
        r = sd_event_source_set_enabled(st->expiry_source, SD_EVENT_ONESHOT);
        if (r < 0)
                return r;
        st->expiry_due_usec = usec;
        st->expiry_armed = true;
        return 0;
}

static int store_on_expiry(sd_event_source *source, uint64_t usec, void *userdata) {
        ShareStore *st = userdata;
        uint64_t now;
        int r;

        st->expiry_armed = false;
        r = sd_event_now(st->event, CLOCK_MONOTONIC, &now);
        if (r < 0)
                now = usec;

        while (st->head && st->head->expires_usec <= now) {
                Share *s = st->head;
                char id[UUID_STRING_MAX];

                log_info("Share %u of key %s from client %s expired undelivered.", s->share_index,
                         uuid_to_string(&s->key_id, id), s->master_client->name);
                share_store_remove(st, s, SHARE_REMOVAL_EXPIRED);
        }

        if (st->head) {
                r = store_arm(st, st->head->expires_usec);
                if (r < 0)
                        log_error_errno(r, "Failed to arm the share expiry timer: %m");
        }
        return 0;
}

int share_store_add(ShareStore *st, Share *s, uint64_t ttl_usec) {
        Share *after;
        uint64_t now;
        int r;

        r = sd_event_now(st->event, CLOCK_MONOTONIC, &now);
        if (r < 0)
                return r;
        s->expires_usec = ttl_usec > UINT64_MAX - now ? UINT64_MAX - 1 : now + ttl_usec;

        /* With one time to live a new share goes last: the walk stops at once. */
        for (after = st->tail; after && after->expires_usec > s->expires_usec; after = after->prev)
                ;
        if (!after) {
                r = store_arm(st, s->expires_usec);
                if (r < 0)
                        return r;
        }

        r = hub_hashmap_put(st->by_key_id, s->key_id.bytes, sizeof(s->key_id.bytes), s);
        if (r >= 0) {
                r = hub_state_share_put(st->state, s, ttl_usec);
                if (r < 0)
                        (void) hub_hashmap_remove(st->by_key_id, s->key_id.bytes, sizeof(s->key_id.bytes));
        }
        if (r < 0)
                return r;

        s->store = st;
        s->prev = after;
        s->next = after ? after->next : st->head;
        if (s->next)
                s->next->prev = s;
        else
                st->tail = s;
        if (after)
                after->next = s;
        else
                st->head = s;
        st->n_shares++;
        s->master_client->n_shares++;
        s->master_client->n_shares_posted++;
        return 0;
}

void share_store_remove(ShareStore *st, Share *s, ShareRemoval why) {
        hub_state_share_delete(st->state, s);
        (void) hub_hashmap_remove(st->by_key_id, s->key_id.bytes, sizeof(s->key_id.bytes));
        if (s->prev)
                s->prev->next = s->next;
        else
                st->head = s->next;
        if (s->next)
                s->next->prev = s->prev;
        else
                st->tail = s->prev;
        st->n_shares--;
        s->master_client->n_shares--;

        if (why == SHARE_REMOVAL_EXPIRED)
                st->n_expired++;
        else if (why == SHARE_REMOVAL_DELIVERED)
                st->n_delivered++;

        share_free(s);
}

size_t share_store_drop_client(ShareStore *st, PeerClient *c) {
        size_t n = 0;

        for (Share *s = st->head, *next; s; s = next) {
                next = s->next;
                if (s->master_client == c || peer_client_has_encryptor(c, s->slave_sae_id)) {
                        share_store_remove(st, s, SHARE_REMOVAL_DROPPED);
                        n++;
                }
        }
        return n;
}
