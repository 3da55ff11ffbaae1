/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "client-bus.h"
#include "client-peer.h"
#include "client-state.h"
#include "codec.h"
#include "json-util.h"
#include "log.h"
#include "random.h"
#include "secret.h"

static const char *const peer_hub_state_table[_PEER_HUB_STATE_MAX] = {
        [PEER_HUB_UNREGISTERED] = "unregistered",
        [PEER_HUB_REGISTERING] = "registering",
        [PEER_HUB_PROVISIONING] = "provisioning",
        [PEER_HUB_READY] = "ready",
};

const char *peer_hub_state_to_string(PeerHubState s) {
        if (s < 0 || s >= _PEER_HUB_STATE_MAX)
                return NULL;
        return peer_hub_state_table[s];
}

static uint64_t now_usec(void) {
        struct timespec ts;

        (void) clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000u + (uint64_t) ts.tv_nsec / 1000u;
}

static const ClientConfig *peer_config(const PeerHub *p) {
        return &p->manager->config;
}

static Pool **peer_hub_pool(PeerHub *p, PoolOwner owner) {
        return owner == POOL_OWNER_LOCAL ? &p->local_pool : &p->peer_pool;
}

/* Lets go of both pools: with destroy their stored blocks go too (the hub forgot them), else they
 * stay for the next start. Freeing wipes every block. */
static void peer_hub_drop_pools(PeerHub *p, bool destroy) {
        state_dir_release_pool(p->manager->state, p->local_pool, destroy);
        state_dir_release_pool(p->manager->state, p->peer_pool, destroy);
        p->local_pool = pool_free(p->local_pool);
        p->peer_pool = pool_free(p->peer_pool);
}

/* Takes the pools stored for the hub's name (empty ones when there are none). */
static int peer_hub_take_pools(PeerHub *p) {
        int r;

        r = state_dir_take_pool(p->manager->state, p->name, POOL_OWNER_LOCAL, &p->local_pool);
        if (r >= 0)
                r = state_dir_take_pool(p->manager->state, p->name, POOL_OWNER_PEER, &p->peer_pool);
        if (r < 0) {
                peer_hub_drop_pools(p, false);
                return r;
        }
        /* The state directory observes the pools it stores and passes changes on to the manager. */
        if (!p->manager->state) {
                pool_set_observer(p->local_pool, manager_pool_observer, p->manager);
                pool_set_observer(p->peer_pool, manager_pool_observer, p->manager);
        }
        return 0;
}

static int peer_hub_new_pools(PeerHub *p) {
        peer_hub_drop_pools(p, true);
        return peer_hub_take_pools(p);
}

int peer_hub_new(Manager *m, unsigned index, const char *url, PeerHub **ret) {
        _cleanup_(peer_hub_freep) PeerHub *p = NULL;
        const char *slash;
        size_t len = strlen(url);
        int r;

        /* Like the reference, one trailing '/' is forgiven. */
        if (len > 0 && url[len - 1] == '/')
                len--;

        p = calloc(1, sizeof(PeerHub));
        if (!p)
                return -ENOMEM;
        p->manager = m;
        for (int o = 0; o < _POOL_OWNER_MAX; o++)
                (void) random_bytes(&p->refill_phase[o], sizeof(p->refill_phase[o]));
        p->index = index;
        p->url = strndup(url, len);
        if (!p->url)
                return -ENOMEM;
        slash = strrchr(p->url, '/');
        if (!slash || !name_is_valid(slash + 1))
                return -EINVAL;
        p->name = strdup(slash + 1);
        if (!p->name)
                return -ENOMEM;
        r = peer_hub_take_pools(p);
        if (r < 0)
                return r;

        *ret = TAKE_PTR(p);
        return 0;
}

PeerHub *peer_hub_free(PeerHub *p) {
        if (!p)
                return NULL;
        http_call_cancel(p->registration_call);
        http_call_cancel(p->unregister_call);
        for (int o = 0; o < _POOL_OWNER_MAX; o++)
                http_call_cancel(p->psrd_call[o]);
        sd_event_source_disable_unref(p->retry_timer);
        peer_hub_drop_pools(p, false);
        free(p->in_use);
        free(p->url);
        free(p->name);
        free(p->last_error);
        free(p);
        return NULL;
}

void peer_hub_set_error(PeerHub *p, const char *format, ...) {
        va_list ap;
        char *s;

        va_start(ap, format);
        if (vasprintf(&s, format, ap) >= 0) {
                free(p->last_error);
                p->last_error = s;
        }
        va_end(ap);
}

static uint64_t jitter(uint64_t usec) {
        uint32_t r = 0;

        /* ±25% so that many clients retrying against one hub spread out. */
        (void) random_bytes(&r, sizeof(r));
        return usec - usec / 4 + (usec / 2 ? r % (usec / 2 + 1) : 0);
}

static uint64_t backoff_next(const ClientConfig *c, uint64_t *backoff) {
        if (*backoff == 0)
                *backoff = c->retry_min_usec;
        else
                *backoff = MIN(*backoff * 2, c->retry_max_usec);
        return jitter(*backoff);
}

static void peer_hub_step(PeerHub *p);

static int on_retry_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        PeerHub *p = userdata;

        p->retry_timer = sd_event_source_disable_unref(p->retry_timer);
        peer_hub_step(p);
        return 0;
}

static void peer_hub_schedule_retry(PeerHub *p) {
        uint64_t delay;
        int r;

        if (p->retry_timer)
                return;
        delay = backoff_next(peer_config(p), &p->backoff_usec);
        r = sd_event_add_time_relative(p->manager->event, &p->retry_timer, CLOCK_MONOTONIC, delay, 0,
                                       on_retry_timer, p);
        if (r < 0)
                log_error_errno(r, "Hub %s: failed to schedule a retry: %m", p->name);
        else
                log_debug("Hub %s: retrying in %.1f s.", p->name, (double) delay / 1e6);
}

void hub_error_parse(const HttpResponse *response, HubError *ret) {
        _cleanup_json_ json_object *o = NULL;
        json_object *v, *details;

        *ret = (HubError){};
        if (!response || !response->body || response->body_size == 0)
                return;
        o = json_tokener_parse((const char *) response->body);
        if (!o || !json_object_is_type(o, json_type_object))
                return;
        if (json_object_object_get_ex(o, "message", &v) && json_object_is_type(v, json_type_string))
                snprintf(ret->message, sizeof(ret->message), "%s", json_object_get_string(v));
        ret->client_not_registered =
                response->status == 400 && streq(ret->message, "Client is not registered.");
        ret->out_of_psrd = response->status == 503 && json_object_object_get_ex(o, "details", &details) &&
                           json_object_is_type(details, json_type_object) &&
                           json_object_object_get_ex(details, "pool_available_bytes", NULL);
        ret->block_rejected = response->status == 400 &&
                              (streq(ret->message, "Invalid PSRD block UUID.") ||
                               streq(ret->message, "Attempt to use PSRD data more than once.")) &&
                              json_object_object_get_ex(o, "details", &details) &&
                              json_object_object_get_ex(details, "block_uuid", &v) &&
                              json_object_is_type(v, json_type_string) &&
                              uuid_from_string(json_object_get_string(v), &ret->block_uuid) >= 0;
}

static void peer_hub_describe_failure(PeerHub *p, const char *what, int error, const char *message,
                                      const HttpResponse *response) {
        HubError e;

        if (error < 0) {
                peer_hub_set_error(p, "%s: %s", what, strna(message));
                return;
        }
        hub_error_parse(response, &e);
        peer_hub_set_error(p, "%s: HTTP %ld %s", what, response->status, e.message);
}

/* Registration */

static void peer_hub_reset(PeerHub *p) {
        for (int o = 0; o < _POOL_OWNER_MAX; o++) {
                http_call_cancel(p->psrd_call[o]);
                p->psrd_call[o] = NULL;
                p->refilling[o] = false;
                p->low_signalled[o] = false;
        }
        p->hub_reported_low = false;
        p->generation++;
        if (peer_hub_new_pools(p) < 0)
                log_oom();
        p->state = PEER_HUB_UNREGISTERED;
        (void) client_state_save_hubs(p->manager);
}

static void on_registered(HttpCall *call, int error, const char *message, const HttpResponse *response,
                          void *userdata) {
        PeerHub *p = userdata;
        _cleanup_json_ json_object *o = NULL;
        json_object *v;
        const char *hub_name;
        char *copy;

        p->registration_call = NULL;

        if (error < 0 || response->status != 200) {
                peer_hub_describe_failure(p, "registration", error, message, response);
                log_full(p->backoff_usec == 0 ? LOG_WARNING : LOG_DEBUG, "Hub %s: registration failed (%s).",
                         p->name, p->last_error);
                p->state = PEER_HUB_UNREGISTERED;
                p->n_failures++;
                peer_hub_schedule_retry(p);
                manager_peers_changed(p->manager);
                return;
        }

        o = json_tokener_parse((const char *) response->body);
        if (!o || !json_object_object_get_ex(o, "hub_name", &v) ||
            !json_object_is_type(v, json_type_string) || !name_is_valid(json_object_get_string(v))) {
                peer_hub_set_error(p, "registration: malformed reply");
                log_warning("Hub %s: registration reply does not carry a valid hub_name.", p->name);
                p->state = PEER_HUB_UNREGISTERED;
                p->n_failures++;
                peer_hub_schedule_retry(p);
                return;
        }
        hub_name = json_object_get_string(v);
        if (!streq(hub_name, p->name)) {
                log_notice("Hub at %s calls itself %s.", p->url, hub_name);
                copy = strdup(hub_name);
                if (copy) {
                        free(p->name);
                        p->name = copy;
                }
        }

        /* Whatever PSRD we had is gone on the hub: start from fresh pools. */
        peer_hub_reset(p);
        p->state = PEER_HUB_PROVISIONING;
        p->backoff_usec = 0;
        p->unreachable_until = 0;
        p->unreachable_backoff = 0;
        p->n_registrations++;
        if (client_state_save_hubs(p->manager) < 0) {
                peer_hub_reset(p);
                peer_hub_schedule_retry(p);
                return;
        }
        log_info("Hub %s: registered, fetching PSRD.", p->name);
        manager_peers_changed(p->manager);
        peer_hub_step(p);
}

static int peer_hub_register(PeerHub *p) {
        static const char *const headers[] = {"Content-Type: application/json", NULL};
        _cleanup_json_ json_object *o = NULL;
        _cleanup_free_ char *url = NULL;
        const ClientConfig *c = peer_config(p);
        json_object *list;
        const char *body;
        int r;

        o = json_object_new_object();
        list = json_object_new_array();
        if (!o || !list) {
                json_object_put(list);
                return -ENOMEM;
        }
        for (size_t i = 0; c->encryptors && c->encryptors[i]; i++)
                if (json_object_array_add(list, json_object_new_string(c->encryptors[i])) < 0) {
                        json_object_put(list);
                        return -ENOMEM;
                }
        if (json_object_object_add(o, "client_name", json_object_new_string(c->name)) < 0 ||
            json_object_object_add(o, "encryptor_names", list) < 0)
                return -ENOMEM;
        body = json_object_to_json_string_ext(o, JSON_C_TO_STRING_DSKE);
        if (asprintf(&url, "%s/dske/oob/v1/registration", p->url) < 0)
                return -ENOMEM;

        r = http_client_call(p->manager->http,
                             &(HttpCallSpec){
                                     .method = "PUT",
                                     .url = url,
                                     .headers = headers,
                                     .body = body,
                                     .body_size = strlen(body),
                                     .timeout_ms = (unsigned) (c->oob_timeout_usec / 1000),
                             },
                             on_registered, p, &p->registration_call);
        if (r < 0)
                return r;
        p->state = PEER_HUB_REGISTERING;
        return 0;
}

/* PSRD */

static PoolOwner peer_hub_call_owner(PeerHub *p, HttpCall *call) {
        return call == p->psrd_call[POOL_OWNER_LOCAL] ? POOL_OWNER_LOCAL : POOL_OWNER_PEER;
}

static int peer_hub_add_block(PeerHub *p, PoolOwner owner, const HttpResponse *response) {
        _cleanup_json_ json_object *o = NULL;
        _cleanup_(block_freep) Block *b = NULL;
        json_object *uuid_v, *data_v;
        uint8_t *data = NULL;
        size_t size = 0;
        Uuid uuid;
        int r;

        o = json_tokener_parse((const char *) response->body);
        if (!o || !json_object_is_type(o, json_type_object) ||
            !json_object_object_get_ex(o, "block_uuid", &uuid_v) ||
            !json_object_object_get_ex(o, "data", &data_v) ||
            !json_object_is_type(uuid_v, json_type_string) || !json_object_is_type(data_v, json_type_string))
                return -EBADMSG;
        if (uuid_from_string(json_object_get_string(uuid_v), &uuid) < 0)
                return -EBADMSG;
        r = base64_decode(json_object_get_string(data_v), (size_t) json_object_get_string_len(data_v), &data,
                          &size);
        if (r < 0)
                return -EBADMSG;
        /* R15: the block must be what we asked for. */
        if (size != peer_config(p)->block_size) {
                erase_and_free(data, size);
                return -EMSGSIZE;
        }
        r = block_new(&uuid, data, size, &b);
        erase_and_free(data, size);
        if (r < 0)
                return r;
        r = pool_add_block(*peer_hub_pool(p, owner), b);
        if (r < 0)
                return r; /* -EEXIST: a duplicate UUID is refused (R15) */
        TAKE_PTR(b);
        return 0;
}

static void peer_hub_check_ready(PeerHub *p) {
        if (p->state != PEER_HUB_PROVISIONING)
                return;
        if (pool_available(p->local_pool) == 0 || pool_available(p->peer_pool) == 0)
                return;
        p->state = PEER_HUB_READY;
        log_info("Hub %s: ready (share index %u).", p->name, p->index);
        manager_peers_changed(p->manager);
}

/* The outcome of a fetch for the pools: for the hub-owned pool, the fetch is recorded as ended only
 * once its outcome is settled (the block stored, or the link reset), so that a crash in between
 * still makes the next start register again. */
static int peer_hub_store_block(PeerHub *p, PoolOwner owner, int error, const char *message,
                                const HttpResponse *response) {
        HubError e;
        int r;

        if (error < 0 && owner == POOL_OWNER_PEER && error != -ECONNREFUSED) {
                /* The hub may have added the block to its copy before the answer was lost: it would
                 * name bytes this client does not have. (A refused connection carried nothing: the
                 * fetch goes out on a new one.) */
                peer_hub_describe_failure(p, "PSRD request", error, message, response);
                p->n_failures++;
                peer_hub_lost_psrd(p, p->generation);
                return error;
        }
        if (error < 0 || response->status != 200) {
                peer_hub_describe_failure(p, "PSRD request", error, message, response);
                p->n_failures++;
                if (error == 0) {
                        hub_error_parse(response, &e);
                        if (e.client_not_registered) {
                                peer_hub_lost_registration(p, p->generation);
                                return -ENOENT;
                        }
                }
                log_full(p->backoff_usec == 0 ? LOG_WARNING : LOG_DEBUG, "Hub %s: %s.", p->name,
                         p->last_error);
                peer_hub_schedule_retry(p);
                return -EPROTO;
        }

        r = peer_hub_add_block(p, owner, response);
        if (r < 0) {
                p->n_failures++;
                peer_hub_set_error(p, "PSRD block refused: %s", strerror(-r));
                log_warning_errno(r, "Hub %s: refusing the PSRD block it sent: %m", p->name);
                if (owner == POOL_OWNER_PEER)
                        /* The hub holds it all the same. */
                        peer_hub_lost_psrd(p, p->generation);
                else
                        peer_hub_schedule_retry(p);
                return r;
        }
        return 0;
}

/* The pools of a client for its hubs drain in step, a share for each hub per key. Were their refills
 * to start at one level, every node would serve a burst of blocks at the same moment, and the keys
 * in flight would wait behind it. So each refill starts at its own level between LowWater and
 * HighWater, drawn anew once the pool is full. */
static uint64_t peer_hub_refill_level(const PeerHub *p, PoolOwner owner) {
        const ClientConfig *c = peer_config(p);
        uint64_t band = c->high_water - c->low_water;

        return c->low_water + (band > 0 ? p->refill_phase[owner] % band : 0);
}

static void peer_hub_refill_done(PeerHub *p, PoolOwner owner) {
        p->refilling[owner] = false;
        p->low_signalled[owner] = false;
        (void) random_bytes(&p->refill_phase[owner], sizeof(p->refill_phase[owner]));
}

static void on_psrd(HttpCall *call, int error, const char *message, const HttpResponse *response,
                    void *userdata) {
        PeerHub *p = userdata;
        PoolOwner owner = peer_hub_call_owner(p, call);
        int r;

        p->psrd_call[owner] = NULL;
        r = peer_hub_store_block(p, owner, error, message, response);
        if (owner == POOL_OWNER_PEER)
                client_state_fetch_end(p->manager, p->name);
        if (r < 0)
                return;

        p->n_blocks_fetched++;
        p->backoff_usec = 0;
        if (owner == POOL_OWNER_PEER)
                p->hub_reported_low = false;
        if (pool_available(*peer_hub_pool(p, owner)) >= peer_config(p)->high_water)
                peer_hub_refill_done(p, owner);
        peer_hub_check_ready(p);
        manager_peers_changed(p->manager);
        peer_hub_step(p);
}

static int peer_hub_fetch_block(PeerHub *p, PoolOwner owner) {
        _cleanup_free_ char *url = NULL;
        const ClientConfig *c = peer_config(p);
        int r;

        if (asprintf(&url, "%s/dske/oob/v1/psrd?client_name=%s&pool_owner=%s&size=%llu", p->url, c->name,
                     owner == POOL_OWNER_LOCAL ? "client" : "hub", (unsigned long long) c->block_size) < 0)
                return -ENOMEM;
        if (owner == POOL_OWNER_PEER) {
                r = client_state_fetch_begin(p->manager, p->name);
                if (r < 0)
                        return r;
        }
        r = http_client_call(p->manager->http,
                             &(HttpCallSpec){
                                     .method = "GET",
                                     .url = url,
                                     .timeout_ms = (unsigned) (c->oob_timeout_usec / 1000),
                                     /* The hub keeps the block it answers with. */
                                     .fresh_connection = true,
                                     /* The block in base64, in JSON. */
                                     .reply_size = c->block_size / 3 * 4 + 256,
                             },
                             on_psrd, p, &p->psrd_call[owner]);
        if (r < 0 && owner == POOL_OWNER_PEER)
                client_state_fetch_end(p->manager, p->name);
        return r;
}

static void peer_hub_maybe_refill(PeerHub *p, PoolOwner owner) {
        const ClientConfig *c = peer_config(p);
        Pool *pool = *peer_hub_pool(p, owner);
        uint64_t available;
        int r;

        if (p->psrd_call[owner])
                return;
        available = pool_available(pool);
        if (available >= c->high_water) {
                if (p->refilling[owner])
                        peer_hub_refill_done(p, owner);
        } else if (available < peer_hub_refill_level(p, owner))
                p->refilling[owner] = true;
        /* Once per crossing, until the pool is full again. A pool that has not been filled yet after
         * registering has not crossed anything. */
        if (available < c->low_water && !p->low_signalled[owner] && p->state == PEER_HUB_READY) {
                client_bus_pool_low(p, owner, available, c->low_water);
                p->low_signalled[owner] = true;
        }
        if (!p->refilling[owner] && !(owner == POOL_OWNER_PEER && p->hub_reported_low))
                return;
        if (pool->n_blocks >= 4096) {
                log_warning("Hub %s: pool holds too many blocks, not fetching more.", p->name);
                return;
        }
        r = peer_hub_fetch_block(p, owner);
        if (r < 0) {
                log_error_errno(r, "Hub %s: failed to request PSRD: %m", p->name);
                peer_hub_schedule_retry(p);
        }
}

static void peer_hub_step(PeerHub *p) {
        int r;

        if (p->manager->stopping || p->manager->decommissioning || p->retry_timer)
                return;

        switch (p->state) {
        case PEER_HUB_UNREGISTERED:
                r = peer_hub_register(p);
                if (r < 0) {
                        log_error_errno(r, "Hub %s: failed to start registration: %m", p->name);
                        peer_hub_schedule_retry(p);
                }
                break;
        case PEER_HUB_REGISTERING:
                break;
        case PEER_HUB_PROVISIONING:
        case PEER_HUB_READY:
                peer_hub_maybe_refill(p, POOL_OWNER_LOCAL);
                peer_hub_maybe_refill(p, POOL_OWNER_PEER);
                break;
        default:
                break;
        }
}

int peer_hub_restore(PeerHub *p, const char *name) {
        int r;

        if (!streq(name, p->name)) {
                char *copy = strdup(name);

                if (!copy)
                        return -ENOMEM;
                peer_hub_drop_pools(p, false);
                free(p->name);
                p->name = copy;
                r = peer_hub_take_pools(p);
                if (r < 0)
                        return r;
        }
        p->state = PEER_HUB_PROVISIONING;
        peer_hub_check_ready(p);
        log_info("Hub %s: registration restored, %" PRIu64 " + %" PRIu64 " bytes of PSRD available.",
                 p->name, pool_available(p->local_pool), pool_available(p->peer_pool));
        return 0;
}

void peer_hub_start(PeerHub *p) {
        peer_hub_step(p);
}

bool peer_hub_usable(const PeerHub *p) {
        return p->state == PEER_HUB_READY && now_usec() >= p->unreachable_until;
}

bool peer_hub_pools_healthy(const PeerHub *p) {
        const ClientConfig *c = peer_config(p);

        return p->state == PEER_HUB_READY && pool_available(p->local_pool) >= c->low_water &&
               pool_available(p->peer_pool) >= c->low_water;
}

void peer_hub_note_unreachable(PeerHub *p, const char *why) {
        uint64_t now = now_usec();

        if (now < p->unreachable_until)
                return;
        if (p->unreachable_backoff == 0)
                log_warning("Hub %s is unreachable (%s); leaving it alone for a while.", p->name,
                            strna(why));
        p->unreachable_until = now + backoff_next(peer_config(p), &p->unreachable_backoff);
        peer_hub_set_error(p, "unreachable: %s", strna(why));
        manager_peers_changed(p->manager);
}

void peer_hub_note_reachable(PeerHub *p) {
        if (p->unreachable_backoff == 0)
                return;
        log_info("Hub %s is reachable again.", p->name);
        p->unreachable_backoff = 0;
        p->unreachable_until = 0;
        manager_peers_changed(p->manager);
}

static void peer_hub_register_again(PeerHub *p, uint64_t generation, const char *why) {
        if (generation != p->generation || p->state == PEER_HUB_UNREGISTERED ||
            p->state == PEER_HUB_REGISTERING)
                return;
        log_warning("Hub %s %s; registering again.", p->name, why);
        peer_hub_reset(p);
        p->backoff_usec = 0;
        p->unreachable_until = 0;
        p->unreachable_backoff = 0;
        p->retry_timer = sd_event_source_disable_unref(p->retry_timer);
        manager_peers_changed(p->manager);
        peer_hub_step(p);
}

void peer_hub_lost_registration(PeerHub *p, uint64_t generation) {
        peer_hub_register_again(p, generation, "no longer knows this client (it restarted?)");
}

void peer_hub_lost_psrd(PeerHub *p, uint64_t generation) {
        peer_hub_register_again(
                p, generation,
                "uses a PSRD block this client does not hold (this client stopped before the "
                "block arrived?)");
}

void peer_hub_hub_pool_low(PeerHub *p) {
        if (p->state != PEER_HUB_READY && p->state != PEER_HUB_PROVISIONING)
                return;
        p->hub_reported_low = true;
        peer_hub_step(p);
}

/* Marks every unused byte of b used, so that the block can be dropped. */
static uint64_t block_retire(Pool *pool, Block *b) {
        uint64_t burnt = 0;
        size_t i = 0;

        while (i < b->size) {
                _cleanup_(allocation_freep) Allocation *a = allocation_new();

                if (!a)
                        return burnt;
                while (i < b->size && a->n_fragments < PSRD_FRAGMENTS_MAX) {
                        size_t s;

                        while (i < b->size && block_is_used(b, i))
                                i++;
                        s = i;
                        while (i < b->size && !block_is_used(b, i))
                                i++;
                        if (i > s && allocation_add_fragment(a, &b->uuid, s, i - s) < 0)
                                return burnt;
                }
                if (a->n_fragments == 0 || pool_take(pool, a, 0, NULL) < 0)
                        return burnt;
                burnt += a->size;
        }
        return burnt;
}

void peer_hub_retire_local_block(PeerHub *p, const Uuid *uuid) {
        char id[UUID_STRING_MAX];
        uint64_t burnt;
        Block *b;

        b = pool_find_block(p->local_pool, uuid);
        if (!b)
                return;
        burnt = block_retire(p->local_pool, b);
        p->n_bytes_retired += burnt;
        log_notice("Hub %s rejected PSRD block %s: no longer using it (%" PRIu64 " bytes retired).", p->name,
                   uuid_to_string(uuid, id), burnt);
        peer_hub_after_use(p);
}

/* R4: bytes the hub allocated for replies that never arrived (timed out, lost) stay unused in this
 * client's copy of the hub-owned pool, and their block would never become fully used. The hub
 * allocates first-fit, block by block, so once it has been taking from a later block for longer
 * than any reply can take to arrive, what is left in the earlier blocks will never be named:
 * those bytes are burnt and the blocks dropped. */
static void peer_hub_retire_stale_blocks(PeerHub *p) {
        Pool *pool = p->peer_pool;
        uint64_t now = now_usec(), horizon = 2 * peer_config(p)->hub_timeout_usec;
        size_t n = 0, cut = 0;
        void *l;

        /* Forget blocks that are gone, note those newly in use. */
        for (size_t i = 0; i < p->n_in_use; i++)
                if (pool_find_block(pool, &p->in_use[i].uuid))
                        p->in_use[n++] = p->in_use[i];
        p->n_in_use = n;
        for (size_t i = 0; i < pool->n_blocks; i++) {
                const Block *b = pool->blocks[i];
                bool known = false;

                if (b->n_used == 0)
                        continue;
                for (size_t j = 0; j < p->n_in_use && !known; j++)
                        known = uuid_equal(&p->in_use[j].uuid, &b->uuid);
                if (known)
                        continue;
                l = reallocarray(p->in_use, p->n_in_use + 1, sizeof(*p->in_use));
                if (!l)
                        return;
                p->in_use = l;
                p->in_use[p->n_in_use].uuid = b->uuid;
                p->in_use[p->n_in_use++].since = now;
        }

        /* The last block in use for longer than the horizon: everything before it is stale. */
        for (size_t i = 0; i < pool->n_blocks; i++)
                for (size_t j = 0; j < p->n_in_use; j++)
                        if (uuid_equal(&p->in_use[j].uuid, &pool->blocks[i]->uuid) &&
                            now >= p->in_use[j].since + horizon)
                                cut = i;
        if (cut == 0)
                return;
        for (size_t i = 0; i < cut; i++) {
                uint64_t burnt = block_retire(pool, pool->blocks[i]);

                if (burnt > 0) {
                        char buf[UUID_STRING_MAX];

                        log_info(
                                "Hub %s: retiring PSRD block %s, whose %llu unused bytes the hub will never "
                                "name (replies that were lost).",
                                p->name, uuid_to_string(&pool->blocks[i]->uuid, buf),
                                (unsigned long long) burnt);
                        p->n_bytes_retired += burnt;
                }
        }
        (void) pool_drop_used_blocks(pool);
}

void peer_hub_after_use(PeerHub *p) {
        (void) pool_drop_used_blocks(p->local_pool);
        (void) pool_drop_used_blocks(p->peer_pool);
        peer_hub_retire_stale_blocks(p);
        peer_hub_step(p);
}

/* Decommissioning */

static void on_unregistered(HttpCall *call, int error, const char *message, const HttpResponse *response,
                            void *userdata) {
        PeerHub *p = userdata;
        PeerHubUnregistered done = p->unregister_done;
        HubError e = {};
        int r = 0;

        p->unregister_call = NULL;
        if (error < 0)
                r = error;
        else if (response->status != 200) {
                hub_error_parse(response, &e);
                /* Already gone is as good as removed. */
                r = e.client_not_registered ? 0 : -EPROTO;
        }
        if (r < 0) {
                peer_hub_describe_failure(p, "unregistration", error, message, response);
                log_warning("Hub %s: unregistration failed (%s).", p->name, p->last_error);
        } else
                log_info("Hub %s: unregistered.", p->name);

        /* Our PSRD goes either way: the client is being taken out of service. */
        peer_hub_reset(p);
        manager_peers_changed(p->manager);
        p->unregister_done = NULL;
        done(p, r, p->unregister_userdata);
}

int peer_hub_unregister(PeerHub *p, PeerHubUnregistered done, void *userdata) {
        _cleanup_free_ char *url = NULL;
        const ClientConfig *c = peer_config(p);
        int r;

        http_call_cancel(p->registration_call);
        p->registration_call = NULL;
        for (int o = 0; o < _POOL_OWNER_MAX; o++) {
                http_call_cancel(p->psrd_call[o]);
                p->psrd_call[o] = NULL;
        }
        p->retry_timer = sd_event_source_disable_unref(p->retry_timer);

        if (asprintf(&url, "%s/dske/oob/v1/registration?client_name=%s", p->url, c->name) < 0)
                return -ENOMEM;
        p->unregister_done = done;
        p->unregister_userdata = userdata;
        r = http_client_call(p->manager->http,
                             &(HttpCallSpec){
                                     .method = "DELETE",
                                     .url = url,
                                     .timeout_ms = (unsigned) (c->oob_timeout_usec / 1000),
                             },
                             on_unregistered, p, &p->unregister_call);
        return r;
}

/* Status */

static json_object *pool_status_json(const Pool *pool, const char *owner) {
        _cleanup_json_ json_object *o = NULL;
        json_object *blocks;
        PoolStats st;

        o = json_object_new_object();
        blocks = json_object_new_array();
        if (!o || !blocks) {
                json_object_put(blocks);
                return NULL;
        }
        for (size_t i = 0; i < pool->n_blocks; i++) {
                const Block *b = pool->blocks[i];
                char buf[UUID_STRING_MAX];
                json_object *bo = json_object_new_object();

                if (!bo || json_object_array_add(blocks, bo) < 0) {
                        json_object_put(bo);
                        json_object_put(blocks);
                        return NULL;
                }
                (void) json_object_object_add(bo, "uuid",
                                              json_object_new_string(uuid_to_string(&b->uuid, buf)));
                (void) json_object_object_add(bo, "size", json_object_new_int64((int64_t) b->size));
                (void) json_object_object_add(bo, "nr_used_bytes",
                                              json_object_new_int64((int64_t) b->n_used));
                (void) json_object_object_add(bo, "nr_unused_bytes",
                                              json_object_new_int64((int64_t) (b->size - b->n_used)));
        }
        pool_get_stats(pool, &st);
        (void) json_object_object_add(o, "blocks", blocks);
        (void) json_object_object_add(o, "owner", json_object_new_string(owner));
        (void) json_object_object_add(o, "total_bytes", json_object_new_int64((int64_t) st.total_bytes));
        (void) json_object_object_add(o, "used_bytes", json_object_new_int64((int64_t) st.used_bytes));
        (void) json_object_object_add(o, "available_bytes",
                                      json_object_new_int64((int64_t) st.available_bytes));
        return TAKE_PTR(o);
}

json_object *peer_hub_status_json(const PeerHub *p) {
        _cleanup_json_ json_object *o = NULL;
        bool registered = p->state == PEER_HUB_PROVISIONING || p->state == PEER_HUB_READY;
        json_object *local, *peer;

        o = json_object_new_object();
        if (!o)
                return NULL;
        /* "name" is the configured one, known before the hub has confirmed it at registration. */
        (void) json_object_object_add(o, "name", json_object_new_string(p->name));
        (void) json_object_object_add(o, "hub_name", registered ? json_object_new_string(p->name) : NULL);
        (void) json_object_object_add(o, "url", json_object_new_string(p->url));
        (void) json_object_object_add(o, "share_index", json_object_new_int((int) p->index));
        (void) json_object_object_add(o, "registered", json_object_new_boolean(registered));
        (void) json_object_object_add(o, "state",
                                      json_object_new_string(peer_hub_state_to_string(p->state)));
        (void) json_object_object_add(o, "reachable",
                                      json_object_new_boolean(now_usec() >= p->unreachable_until));
        (void) json_object_object_add(o, "registrations",
                                      json_object_new_int64((int64_t) p->n_registrations));
        (void) json_object_object_add(o, "shares_sent", json_object_new_int64((int64_t) p->n_shares_sent));
        (void) json_object_object_add(o, "shares_received",
                                      json_object_new_int64((int64_t) p->n_shares_received));
        (void) json_object_object_add(o, "failures", json_object_new_int64((int64_t) p->n_failures));
        (void) json_object_object_add(o, "blocks_fetched",
                                      json_object_new_int64((int64_t) p->n_blocks_fetched));
        (void) json_object_object_add(o, "bytes_retired",
                                      json_object_new_int64((int64_t) p->n_bytes_retired));
        (void) json_object_object_add(o, "last_error",
                                      p->last_error ? json_object_new_string(p->last_error) : NULL);
        local = pool_status_json(p->local_pool, "local");
        peer = pool_status_json(p->peer_pool, "peer");
        if (!local || !peer) {
                json_object_put(local);
                json_object_put(peer);
                return NULL;
        }
        (void) json_object_object_add(o, "local_pool", local);
        (void) json_object_object_add(o, "peer_pool", peer);
        return TAKE_PTR(o);
}
