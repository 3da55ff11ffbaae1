/* SPDX-License-Identifier: MIT */
#include <assert.h>
#include <endian.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "auth.h"
#include "client-keys.h"
#include "client-peer.h"
#include "json-util.h"
#include "log.h"
#include "psrd-metadata.h"
#include "random.h"
#include "secret.h"
#include "shamir.h"
#include "share-msg.h"

typedef enum HubOutcome {
        HUB_OUTCOME_PENDING,
        HUB_OUTCOME_OK,
        HUB_OUTCOME_SKIPPED,      /* not registered yet, or known to be down: not contacted */
        HUB_OUTCOME_NO_PSRD,      /* this client's pool could not pay for the message */
        HUB_OUTCOME_UNREACHABLE,  /* transport failure or time-out */
        HUB_OUTCOME_REJECTED,     /* an error reply */
        HUB_OUTCOME_NOT_FOUND,    /* gather: no share with this key ID */
        HUB_OUTCOME_FORBIDDEN,    /* gather: the share is not for this slave/master */
        HUB_OUTCOME_BAD_REPLY,    /* signature, share index or share failed its checks */
        HUB_OUTCOME_INCONSISTENT, /* gather: the share disagrees with the recovered key */
} HubOutcome;

typedef struct HubExchange {
        KeyOp *op;
        PeerHub *hub;
        uint64_t generation; /* of the hub's pools when the allocations were made */
        HttpCall *call;
        Allocation *enc; /* scatter: share-encryption key, client-owned pool */
        Allocation *mac; /* request MAC key, client-owned pool */
        HubOutcome outcome;
        char *cause;
        uint8_t *share; /* gather: the decrypted share */
        size_t share_size;
} HubExchange;

struct KeyOp {
        Manager *manager;
        KeyOpKind kind;
        Uuid key_id;
        char key_id_string[UUID_STRING_MAX];
        char *master_sae;
        char *slave_sae;
        uint8_t *key;
        size_t key_size;
        size_t n_exchanges;
        unsigned n_pending;
        unsigned n_ok;
        unsigned k;
        int result;
        bool finished;
        sd_event_source *defer;
        KeyOpDone done;
        void *userdata;
        /* One per hub, sized to the configured hubs: with the room for CLIENT_HUBS_MAX, every
         * operation was a large allocation, which makes malloc() consolidate its free lists. */
        HubExchange exchanges[];
};

struct StoredKey {
        Uuid key_id;
        char *master_sae;
        char *slave_sae;
        uint8_t *key; /* the key; or, partial, the shares held (held_shares_parse()) */
        size_t size;
        bool partial;
        uint64_t expires_usec;
        StoredKey *prev, *next;
};

struct KeyStore {
        sd_event *event;
        StateDir *state;        /* where keys added and removed are journaled; NULL: nowhere */
        StoredKey *head, *tail; /* oldest first */
        size_t n_keys;          /* entries, partial ones included */
        size_t n_partial;       /* entries holding shares */
};

static void exchange_set_outcome(HubExchange *x, HubOutcome outcome, const char *format, ...) _printf_(3, 4);

static void exchange_set_outcome(HubExchange *x, HubOutcome outcome, const char *format, ...) {
        va_list ap;

        x->outcome = outcome;
        free(x->cause);
        x->cause = NULL;
        if (!format)
                return;
        va_start(ap, format);
        if (vasprintf(&x->cause, format, ap) < 0)
                x->cause = NULL;
        va_end(ap);
}

static bool exchange_pools_current(const HubExchange *x) {
        return x->generation == x->hub->generation;
}

/* Gives back what this client allocated for a request, when the hub never saw it. */
static void exchange_give_back_request(HubExchange *x) {
        if (!exchange_pools_current(x))
                return;
        if (x->mac)
                pool_give_back(x->hub->local_pool, x->mac);
        if (x->enc)
                pool_give_back(x->hub->local_pool, x->enc);
}

static void exchange_done(HubExchange *x) {
        x->enc = allocation_free(x->enc);
        x->mac = allocation_free(x->mac);
        if (x->share) {
                x->share = erase_and_free(x->share, x->share_size);
                x->share_size = 0;
        }
        free(x->cause);
        x->cause = NULL;
        http_call_cancel(x->call);
        x->call = NULL;
}

KeyOp *key_op_free(KeyOp *op) {
        if (!op)
                return NULL;
        for (size_t i = 0; i < op->n_exchanges; i++)
                exchange_done(&op->exchanges[i]);
        sd_event_source_disable_unref(op->defer);
        if (op->key)
                erase_and_free(op->key, op->key_size);
        free(op->master_sae);
        free(op->slave_sae);
        free(op);
        return NULL;
}

int key_op_result(const KeyOp *op) {
        return op->result;
}

const Uuid *key_op_key_id(const KeyOp *op) {
        return &op->key_id;
}

const uint8_t *key_op_key(const KeyOp *op, size_t *ret_size) {
        if (ret_size)
                *ret_size = op->key_size;
        return op->key;
}

uint8_t *key_op_steal_key(KeyOp *op, size_t *ret_size) {
        if (ret_size)
                *ret_size = op->key_size;
        op->key_size = 0;
        return TAKE_PTR(op->key);
}

static const char *hub_outcome_to_string(HubOutcome o) {
        switch (o) {
        case HUB_OUTCOME_PENDING:
                return "pending";
        case HUB_OUTCOME_OK:
                return "ok";
        case HUB_OUTCOME_SKIPPED:
                return "hub not available";
        case HUB_OUTCOME_NO_PSRD:
                return "out of PSRD";
        case HUB_OUTCOME_UNREACHABLE:
                return "HTTP request failed";
        case HUB_OUTCOME_REJECTED:
                return "rejected";
        case HUB_OUTCOME_NOT_FOUND:
                return "unknown key ID";
        case HUB_OUTCOME_FORBIDDEN:
                return "share not released to this SAE";
        case HUB_OUTCOME_BAD_REPLY:
                return "invalid reply";
        case HUB_OUTCOME_INCONSISTENT:
                return "inconsistent share";
        }
        return "unknown";
}

json_object *key_op_failure_details(const KeyOp *op) {
        _cleanup_json_ json_object *o = NULL;
        json_object *causes;

        o = json_object_new_object();
        causes = json_object_new_array();
        if (!o || !causes) {
                json_object_put(causes);
                return NULL;
        }
        (void) json_object_object_add(o, "key_ID", json_object_new_string(op->key_id_string));
        (void) json_object_object_add(o, "nr_successful_shares", json_object_new_int((int) op->n_ok));
        (void) json_object_object_add(
                o, "nr_required_shares",
                json_object_new_int((int) (op->kind == KEY_OP_SCATTER
                                                   ? client_config_min_scatter(&op->manager->config)
                                                   : op->k)));
        for (size_t i = 0; i < op->n_exchanges; i++) {
                const HubExchange *x = &op->exchanges[i];
                _cleanup_free_ char *s = NULL;

                if (x->outcome == HUB_OUTCOME_OK)
                        continue;
                if (asprintf(&s, "%s: %s%s%s", x->hub->name, hub_outcome_to_string(x->outcome),
                             x->cause ? ": " : "", strempty(x->cause)) < 0)
                        continue;
                (void) json_object_array_add(causes, json_object_new_string(s));
        }
        (void) json_object_object_add(o, "causes", causes);
        return TAKE_PTR(o);
}

static int on_defer_finish(sd_event_source *s, void *userdata);

static void key_op_finish(KeyOp *op);

static int key_op_new(Manager *m, KeyOpKind kind, const char *master_sae, const char *slave_sae,
                      KeyOpDone done, void *userdata, KeyOp **ret) {
        _cleanup_(key_op_freep) KeyOp *op = NULL;

        assert(m->n_hubs <= CLIENT_HUBS_MAX);
        op = calloc(1, sizeof(KeyOp) + m->n_hubs * sizeof(HubExchange));
        if (!op)
                return -ENOMEM;
        *op = (KeyOp){
                .manager = m,
                .kind = kind,
                .k = m->config.shares_required,
                .result = -EAGAIN,
                .done = done,
                .userdata = userdata,
                .master_sae = strdup(master_sae),
                .slave_sae = strdup(slave_sae),
        };
        if (!op->master_sae || !op->slave_sae)
                return -ENOMEM;
        op->n_exchanges = m->n_hubs;
        for (size_t i = 0; i < op->n_exchanges; i++)
                op->exchanges[i] =
                        (HubExchange){.op = op, .hub = m->hubs[i], .outcome = HUB_OUTCOME_PENDING};
        *ret = TAKE_PTR(op);
        return 0;
}

/* The done callback always runs from the loop, even when no hub could be called. */
static int key_op_arm(KeyOp *op) {
        if (op->n_pending > 0)
                return 0;
        return sd_event_add_defer(op->manager->event, &op->defer, on_defer_finish, op);
}

static int on_defer_finish(sd_event_source *s, void *userdata) {
        KeyOp *op = userdata;

        op->defer = sd_event_source_disable_unref(op->defer);
        key_op_finish(op);
        return 0;
}

/* The concatenation of the strings up to NULL, or NULL when out of memory: a request URL per hub call,
 * without the cost of a printf. */
static char *url_join_internal(const char *first, ...) _sentinel_;
/* The strings given, concatenated; the list's end is typed, as a variadic sentinel must be. */
#define url_join(...) url_join_internal(__VA_ARGS__, (const char *) NULL)

static char *url_join_internal(const char *first, ...) {
        size_t n = 0;
        va_list ap;
        char *url, *p;

        va_start(ap, first);
        for (const char *s = first; s; s = va_arg(ap, const char *))
                n += strlen(s);
        va_end(ap);

        url = malloc(n + 1);
        if (!url)
                return NULL;
        p = url;
        va_start(ap, first);
        for (const char *s = first; s; s = va_arg(ap, const char *))
                p = stpcpy(p, s);
        va_end(ap);
        return url;
}

/* Signs a request: 32 bytes of the client-owned pool key an HMAC over query || body. *ret_header
 * is the whole header line. */
static int exchange_sign(HubExchange *x, const char *query, const char *body, size_t body_size,
                         char **ret_header) {
        static const char prefix[] = DSKE_SIGNATURE_HEADER ": ";
        uint8_t mac[DSKE_MAC_SIZE];
        char *header;
        int r;

        r = pool_allocate(x->hub->local_pool, DSKE_MAC_KEY_SIZE, &x->mac);
        if (r < 0)
                return r;
        r = dske_mac(x->mac->data, x->mac->size, query, strlen(query), body, body_size, mac);
        if (r < 0)
                return r;

        header = malloc(sizeof(prefix) - 1 + signature_header_length(x->mac) + 1);
        if (!header)
                return -ENOMEM;
        memcpy(header, prefix, sizeof(prefix) - 1);
        *signature_header_write(x->mac, mac, header + sizeof(prefix) - 1) = '\0';
        *ret_header = header;
        return 0;
}

/* Checks the DSKE-Signature of a 200 reply: the MAC key comes from the hub-owned pool. Bytes
 * taken for a MAC that does not verify are given back (H3). */
static int exchange_verify_reply(HubExchange *x, HttpCall *call, const HttpResponse *response) {
        _cleanup_(allocation_freep) Allocation *a = NULL;
        uint8_t mac[DSKE_MAC_SIZE];
        const char *header;
        int r;

        if (!exchange_pools_current(x))
                return -ESTALE;
        header = http_call_response_header(call, DSKE_SIGNATURE_HEADER);
        if (!header)
                return -ENOKEY;
        r = signature_header_parse(header, &a, mac);
        if (r < 0)
                return -EBADMSG;
        r = pool_take(x->hub->peer_pool, a, DSKE_MAC_KEY_SIZE, NULL);
        if (r < 0)
                return r;
        r = dske_mac_verify(a->data, a->size, NULL, 0, response->body, response->body_size, mac);
        if (r < 0) {
                pool_give_back(x->hub->peer_pool, a);
                return r;
        }
        return 0;
}

static void exchange_classify_error(HubExchange *x, const HttpResponse *response) {
        HubError e;

        hub_error_parse(response, &e);
        if (e.client_not_registered)
                peer_hub_lost_registration(x->hub, x->generation);
        if (e.block_rejected && exchange_pools_current(x))
                peer_hub_retire_local_block(x->hub, &e.block_uuid);
        if (e.out_of_psrd)
                peer_hub_hub_pool_low(x->hub);

        if (x->op->kind == KEY_OP_GATHER) {
                if (response->status == 404 ||
                    (response->status == 400 && startswith(e.message, "Unknown key ID"))) {
                        exchange_set_outcome(x, HUB_OUTCOME_NOT_FOUND, "%s", e.message);
                        return;
                }
                if (response->status == 401 ||
                    (response->status == 403 && !streq(e.message, "Invalid signature."))) {
                        exchange_set_outcome(x, HUB_OUTCOME_FORBIDDEN, "%s", e.message);
                        return;
                }
        }
        exchange_set_outcome(x, HUB_OUTCOME_REJECTED, "HTTP %ld%s%s", response->status,
                             e.message[0] ? " " : "", e.message);
}

static int exchange_take_share(HubExchange *x, const HttpResponse *response);

static void on_exchange_done(HttpCall *call, int error, const char *message, const HttpResponse *response,
                             void *userdata) {
        HubExchange *x = userdata;
        KeyOp *op = x->op;
        PeerHub *hub = x->hub;
        int r;

        if (error < 0) {
                /* The PSRD stays used even when the connection was refused: libcurl may have sent the
                 * request on a kept-alive connection first, so its bytes may have left this host. */
                exchange_set_outcome(x, HUB_OUTCOME_UNREACHABLE, "%s", strna(message));
                peer_hub_note_unreachable(hub, message);
        } else {
                peer_hub_note_reachable(hub);
                if (response->status != 200)
                        exchange_classify_error(x, response);
                else {
                        r = exchange_verify_reply(x, call, response);
                        if (r == -ENOENT)
                                peer_hub_lost_psrd(hub, x->generation);
                        if (r < 0)
                                exchange_set_outcome(x, HUB_OUTCOME_BAD_REPLY, "reply signature: %s",
                                                     r == -EBADMSG ? "Invalid signature." : strerror(-r));
                        else if (op->kind == KEY_OP_SCATTER)
                                exchange_set_outcome(x, HUB_OUTCOME_OK, NULL);
                        else {
                                r = exchange_take_share(x, response);
                                if (r >= 0)
                                        exchange_set_outcome(x, HUB_OUTCOME_OK, NULL);
                        }
                }
        }
        x->call = NULL;
        x->enc = allocation_free(x->enc);
        x->mac = allocation_free(x->mac);

        if (x->outcome == HUB_OUTCOME_OK) {
                op->n_ok++;
                if (op->kind == KEY_OP_SCATTER)
                        hub->n_shares_sent++;
                else
                        hub->n_shares_received++;
        } else {
                hub->n_failures++;
                peer_hub_set_error(hub, "%s %s: %s%s%s", op->kind == KEY_OP_SCATTER ? "scatter" : "gather",
                                   op->key_id_string, hub_outcome_to_string(x->outcome),
                                   x->cause ? ": " : "", strempty(x->cause));
                log_debug("Hub %s: %s.", hub->name, hub->last_error);
        }
        peer_hub_after_use(hub);

        if (--op->n_pending == 0)
                key_op_finish(op);
}

/* Scatter */

static int exchange_start_scatter(HubExchange *x, const uint8_t *share, size_t size) {
        static const char *const content_type = "Content-Type: application/json";
        KeyOp *op = x->op;
        Manager *m = op->manager;
        _cleanup_free_ char *url = NULL, *signature = NULL, *body = NULL;
        const char *headers[3];
        size_t body_size;
        int r;

        r = pool_allocate(x->hub->local_pool, size, &x->enc);
        if (r < 0)
                return r;

        r = share_post_format(m->config.name, op->master_sae, op->slave_sae, &op->key_id, x->hub->index,
                              x->enc, share, size, &body, &body_size);
        if (r < 0)
                return r;

        r = exchange_sign(x, "", body, body_size, &signature);
        if (r < 0)
                return r;

        url = url_join(x->hub->url, "/dske/api/v1/key-share");
        if (!url)
                return -ENOMEM;
        headers[0] = content_type;
        headers[1] = signature;
        headers[2] = NULL;
        return http_client_call(m->http,
                                &(HttpCallSpec){
                                        .method = "POST",
                                        .url = url,
                                        .headers = headers,
                                        .body = body,
                                        .body_size = body_size,
                                        .timeout_ms = (unsigned) (m->config.hub_timeout_usec / 1000),
                                },
                                on_exchange_done, x, &x->call);
}

static void exchange_start_failed(HubExchange *x, int r) {
        /* Nothing left this host: whatever was allocated goes back. */
        exchange_give_back_request(x);
        x->enc = allocation_free(x->enc);
        x->mac = allocation_free(x->mac);
        if (r == -ENOSPC || r == -E2BIG) {
                exchange_set_outcome(x, HUB_OUTCOME_NO_PSRD, "pool %s local out of PSRD", x->hub->name);
                x->hub->n_failures++;
                peer_hub_after_use(x->hub);
        } else
                exchange_set_outcome(x, HUB_OUTCOME_REJECTED, "could not send: %s", strerror(-r));
}

int key_op_scatter(Manager *m, const char *master_sae, const char *slave_sae, size_t key_size,
                   KeyOpDone done, void *userdata, KeyOp **ret) {
        _cleanup_(key_op_freep) KeyOp *op = NULL;
        uint8_t *shares = NULL;
        int r;

        r = key_op_new(m, KEY_OP_SCATTER, master_sae, slave_sae, done, userdata, &op);
        if (r < 0)
                return r;
        r = uuid_random(&op->key_id);
        if (r < 0)
                return r;
        (void) uuid_to_string(&op->key_id, op->key_id_string);

        op->key = secret_alloc(key_size);
        if (!op->key)
                return -ENOMEM;
        op->key_size = key_size;
        r = random_bytes(op->key, key_size);
        if (r < 0)
                return r;
        r = shamir_split(op->key, key_size, (unsigned) op->n_exchanges, op->k, &shares);
        if (r < 0)
                return r;

        for (size_t i = 0; i < op->n_exchanges; i++) {
                HubExchange *x = &op->exchanges[i];

                if (!peer_hub_usable(x->hub)) {
                        exchange_set_outcome(x, HUB_OUTCOME_SKIPPED, "%s",
                                             peer_hub_state_to_string(x->hub->state));
                        continue;
                }
                x->generation = x->hub->generation;
                r = exchange_start_scatter(x, shares + i * key_size, key_size);
                if (r < 0) {
                        exchange_start_failed(x, r);
                        continue;
                }
                op->n_pending++;
        }
        erase_and_free(shares, op->n_exchanges * key_size);

        r = key_op_arm(op);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(op);
        return 0;
}

/* Gather */

static int exchange_start_gather(HubExchange *x) {
        static const char path[] = "/dske/api/v1/key-share?";
        KeyOp *op = x->op;
        Manager *m = op->manager;
        _cleanup_free_ char *url = NULL, *signature = NULL;
        const char *headers[2];
        size_t n;
        int r;

        /* The reference's parameter order; the MAC covers the query exactly as sent, which is the
         * tail of the URL. Names are restricted to URL-safe characters, so nothing needs escaping. */
        url = url_join(x->hub->url, path, "client_name=", m->config.name, "&master_sae_id=", op->master_sae,
                       "&slave_sae_id=", op->slave_sae, "&key_id=", op->key_id_string);
        if (!url)
                return -ENOMEM;
        n = strlen(x->hub->url) + sizeof(path) - 1;
        r = exchange_sign(x, url + n, NULL, 0, &signature);
        if (r < 0)
                return r;
        headers[0] = signature;
        headers[1] = NULL;
        return http_client_call(m->http,
                                &(HttpCallSpec){
                                        .method = "GET",
                                        .url = url,
                                        .headers = headers,
                                        .timeout_ms = (unsigned) (m->config.hub_timeout_usec / 1000),
                                },
                                on_exchange_done, x, &x->call);
}

/* Parses a verified GET key-share reply and decrypts the share with hub-owned bytes. */
static int exchange_take_share(HubExchange *x, const HttpResponse *response) {
        _cleanup_(share_reply_view_done) ShareReplyView view = {};
        _cleanup_json_ json_object *o = NULL;
        _cleanup_(allocation_freep) Allocation *a = NULL;
        json_object *index_v, *alloc_v = NULL, *value_v, *key_id_v;
        size_t max_size = x->op->manager->config.max_key_bits / 8;
        const char *value_b64;
        size_t value_b64_size;
        uint8_t *encrypted = NULL;
        size_t size = 0;
        int64_t index;
        Uuid key_id;
        int r;

        /* Our hubs' compact form is read directly; anything else goes through json-c. */
        r = share_reply_parse(response->body, response->body_size, &view);
        if (r == -ENOMEM) {
                exchange_set_outcome(x, HUB_OUTCOME_BAD_REPLY, "out of memory");
                return r;
        }
        if (r >= 0) {
                index = view.share_index;
                value_b64 = view.encrypted_share_value;
                value_b64_size = view.encrypted_share_value_size;
        } else {
                o = json_tokener_parse((const char *) response->body);
                if (!o || !json_object_is_type(o, json_type_object) ||
                    !json_object_object_get_ex(o, "share_index", &index_v) ||
                    !json_object_object_get_ex(o, "encryption_key_allocation", &alloc_v) ||
                    !json_object_object_get_ex(o, "encrypted_share_value", &value_v) ||
                    !json_object_is_type(index_v, json_type_int) ||
                    !json_object_is_type(value_v, json_type_string)) {
                        exchange_set_outcome(x, HUB_OUTCOME_BAD_REPLY, "malformed share reply");
                        return -EBADMSG;
                }
                /* A hub that also names the key must name this one (C6). */
                if (json_object_object_get_ex(o, "key_id", &key_id_v) &&
                    (!json_object_is_type(key_id_v, json_type_string) ||
                     uuid_from_string(json_object_get_string(key_id_v), &key_id) < 0 ||
                     !uuid_equal(&key_id, &x->op->key_id))) {
                        exchange_set_outcome(x, HUB_OUTCOME_BAD_REPLY, "reply names another key");
                        return -EBADMSG;
                }
                index = json_object_get_int64(index_v);
                value_b64 = json_object_get_string(value_v);
                value_b64_size = (size_t) json_object_get_string_len(value_v);
        }
        /* R16: hub i carries share i. */
        if (index != (int64_t) x->hub->index) {
                exchange_set_outcome(x, HUB_OUTCOME_BAD_REPLY, "share index %lld, expected %u",
                                     (long long) index, x->hub->index);
                return -EBADMSG;
        }
        r = base64_decode(value_b64, value_b64_size, &encrypted, &size);
        if (r < 0) {
                exchange_set_outcome(x, HUB_OUTCOME_BAD_REPLY, "share is not base64");
                return -EBADMSG;
        }
        if (size < SHAMIR_SECRET_MIN || size > max_size) {
                erase_and_free(encrypted, size);
                exchange_set_outcome(x, HUB_OUTCOME_BAD_REPLY, "share of %zu bytes", size);
                return -EBADMSG;
        }
        if (view.encryption_key)
                a = TAKE_PTR(view.encryption_key);
        else {
                r = allocation_from_json(alloc_v, &a);
                if (r < 0) {
                        erase_and_free(encrypted, size);
                        exchange_set_outcome(x, HUB_OUTCOME_BAD_REPLY,
                                             "malformed encryption_key_allocation");
                        return -EBADMSG;
                }
        }
        /* C3: the pad must be exactly as long as the share. */
        r = pool_take(x->hub->peer_pool, a, size, NULL);
        if (r == -ENOENT)
                peer_hub_lost_psrd(x->hub, x->generation);
        if (r < 0) {
                erase_and_free(encrypted, size);
                exchange_set_outcome(x, HUB_OUTCOME_BAD_REPLY, "encryption key allocation: %s",
                                     strerror(-r));
                return r;
        }
        for (size_t i = 0; i < size; i++)
                encrypted[i] ^= a->data[i];
        x->share = encrypted;
        x->share_size = size;
        return 0;
}

/* Shares held from a gather that fell short, kept in the store as a partial entry: a hub forgets a
 * share once it has delivered it, so without them the key could never be recovered. The layout:
 * the number of shares n, their length L (two bytes, little endian), then n times the share's x
 * and its L bytes. */
#define HELD_HEADER 3u

/* Where share i starts in such an entry: its x, then its len bytes. With i = n, the entry's size. */
static size_t held_share_offset(size_t len, size_t i) {
        return HELD_HEADER + i * (1 + len);
}

static int held_shares_parse(const uint8_t *p, size_t size, size_t *ret_n, size_t *ret_len) {
        size_t n, len;
        uint32_t seen = 0;

        if (size < HELD_HEADER)
                return -EBADMSG;
        n = p[0];
        len = (size_t) p[1] | (size_t) p[2] << 8;
        if (n == 0 || n > CLIENT_HUBS_MAX || len == 0 || size != held_share_offset(len, n))
                return -EBADMSG;
        for (size_t i = 0; i < n; i++) {
                uint8_t x = p[held_share_offset(len, i)];

                if (x >= CLIENT_HUBS_MAX || (seen & (UINT32_C(1) << x)))
                        return -EBADMSG;
                seen |= UINT32_C(1) << x;
        }
        if (ret_n)
                *ret_n = n;
        if (ret_len)
                *ret_len = len;
        return 0;
}

static int key_store_put(KeyStore *s, const Uuid *key_id, const char *master_sae, const char *slave_sae,
                         uint8_t *key, size_t size, bool partial, unsigned max_keys, uint64_t ttl_usec);
static void key_store_remove(KeyStore *s, StoredKey *k);

/* The partial entry of op's key, for op's master and slave SAE. */
static StoredKey *gather_held(KeyOp *op) {
        StoredKey *k = key_store_find(op->manager->keys, &op->key_id);

        return k && k->partial && stored_key_matches(k, op->master_sae, op->slave_sae) ? k : NULL;
}

/* The hubs whose share is held, by share index. */
static uint32_t gather_held_mask(KeyOp *op) {
        StoredKey *held = gather_held(op);
        size_t n, len;
        uint32_t mask = 0;

        if (!held || held_shares_parse(held->key, held->size, &n, &len) < 0)
                return 0;
        for (size_t i = 0; i < n; i++)
                mask |= UINT32_C(1) << held->key[held_share_offset(len, i)];
        return mask;
}

/* Keeps the n shares of a gather that fell short (replacing what was held) for the next one. */
static void gather_hold(KeyOp *op, const ShamirShare *shares, size_t n, size_t len) {
        const ClientConfig *c = &op->manager->config;
        size_t size = held_share_offset(len, n);
        StoredKey *old;
        uint8_t *blob;

        if (len > UINT16_MAX)
                return;
        blob = secret_alloc(size);
        if (!blob)
                return;
        blob[0] = (uint8_t) n;
        blob[1] = (uint8_t) len;
        blob[2] = (uint8_t) (len >> 8);
        for (size_t i = 0; i < n; i++) {
                blob[held_share_offset(len, i)] = shares[i].x;
                memcpy(blob + held_share_offset(len, i) + 1, shares[i].value, len);
        }
        old = gather_held(op);
        if (old)
                key_store_remove(op->manager->keys, old);
        if (key_store_put(op->manager->keys, &op->key_id, op->master_sae, op->slave_sae, blob, size, true,
                          c->max_stored_keys, c->stored_key_ttl_usec) < 0) {
                erase_and_free(blob, size);
                log_warning("Key %s: failed to keep the %zu shares gathered.", op->key_id_string, n);
        }
}

int key_op_gather(Manager *m, const char *master_sae, const char *slave_sae, const Uuid *key_id,
                  KeyOpDone done, void *userdata, KeyOp **ret) {
        _cleanup_(key_op_freep) KeyOp *op = NULL;
        uint32_t held;
        int r;

        r = key_op_new(m, KEY_OP_GATHER, master_sae, slave_sae, done, userdata, &op);
        if (r < 0)
                return r;
        op->key_id = *key_id;
        (void) uuid_to_string(&op->key_id, op->key_id_string);
        held = gather_held_mask(op);

        for (size_t i = 0; i < op->n_exchanges; i++) {
                HubExchange *x = &op->exchanges[i];

                if (held & (UINT32_C(1) << x->hub->index)) {
                        /* It delivered its share to an earlier request, and no longer has it. */
                        exchange_set_outcome(x, HUB_OUTCOME_SKIPPED, "share held from an earlier request");
                        continue;
                }
                if (!peer_hub_usable(x->hub)) {
                        exchange_set_outcome(x, HUB_OUTCOME_SKIPPED, "%s",
                                             peer_hub_state_to_string(x->hub->state));
                        continue;
                }
                x->generation = x->hub->generation;
                r = exchange_start_gather(x);
                if (r < 0) {
                        exchange_start_failed(x, r);
                        continue;
                }
                op->n_pending++;
        }

        r = key_op_arm(op);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(op);
        return 0;
}

/* The shares of this length: those received, and those held if they have it. */
static unsigned gather_votes(const KeyOp *op, size_t size, size_t held_len, size_t n_held) {
        unsigned n = size == held_len ? (unsigned) n_held : 0;

        for (size_t i = 0; i < op->n_exchanges; i++)
                if (op->exchanges[i].outcome == HUB_OUTCOME_OK && op->exchanges[i].share_size == size)
                        n++;
        return n;
}

/* The share length most shares agree on, the held ones included; shares of another length cannot
 * belong to the key. On a tie the held shares win: one hub must not outvote them, since their hubs
 * have forgotten them. */
static size_t gather_majority_size(const KeyOp *op, size_t held_len, size_t n_held) {
        size_t best = held_len;
        unsigned best_count = gather_votes(op, held_len, held_len, n_held);

        for (size_t i = 0; i < op->n_exchanges; i++) {
                unsigned count;

                if (op->exchanges[i].outcome != HUB_OUTCOME_OK)
                        continue;
                count = gather_votes(op, op->exchanges[i].share_size, held_len, n_held);
                if (count > best_count) {
                        best_count = count;
                        best = op->exchanges[i].share_size;
                }
        }
        return best;
}

static void gather_recover(KeyOp *op) {
        ShamirShare shares[CLIENT_HUBS_MAX];
        HubExchange *owners[CLIENT_HUBS_MAX] = {};
        unsigned n_absent = 0, n_forbidden = 0;
        size_t size, n = 0, n_held = 0, held_len = 0;
        StoredKey *held = gather_held(op);
        uint32_t bad = 0, have = 0;
        uint8_t *key;
        int r;

        if (held && held_shares_parse(held->key, held->size, &n_held, &held_len) < 0)
                held = NULL;
        size = gather_majority_size(op, held_len, n_held);
        for (size_t i = 0; i < op->n_exchanges; i++) {
                HubExchange *x = &op->exchanges[i];

                if (x->outcome == HUB_OUTCOME_OK && x->share_size != size) {
                        log_warning("Hub %s sent a share of %zu bytes for key %s where the others sent %zu.",
                                    x->hub->name, x->share_size, op->key_id_string, size);
                        exchange_set_outcome(x, HUB_OUTCOME_INCONSISTENT, "share length differs");
                        op->n_ok--;
                }
                if (x->outcome == HUB_OUTCOME_OK) {
                        shares[n] = (ShamirShare){.x = (uint8_t) x->hub->index, .value = x->share};
                        have |= UINT32_C(1) << x->hub->index;
                        owners[n++] = x;
                }
        }
        /* A hub that delivered its share to an earlier gather no longer has it. */
        for (size_t i = 0; held && held_len == size && i < n_held; i++) {
                const uint8_t *h = held->key + held_share_offset(held_len, i);

                if (have & (UINT32_C(1) << h[0]))
                        continue;
                have |= UINT32_C(1) << h[0];
                shares[n++] = (ShamirShare){.x = h[0], .value = h + 1};
        }
        for (size_t i = 0; i < op->n_exchanges; i++) {
                HubExchange *x = &op->exchanges[i];

                if (have & (UINT32_C(1) << x->hub->index))
                        continue;
                if (x->outcome == HUB_OUTCOME_NOT_FOUND)
                        n_absent++;
                if (x->outcome == HUB_OUTCOME_FORBIDDEN) {
                        n_absent++;
                        n_forbidden++;
                }
        }

        if (n < op->k) {
                if (n > 0)
                        gather_hold(op, shares, n, size);
                /* When more hubs deny having the share than the scheme can lose, the key cannot
                 * exist for this caller: say so instead of "try again". */
                if (n_absent > op->n_exchanges - op->k)
                        op->result = n_forbidden > 0 ? -EACCES : -ENOENT;
                else
                        op->result = -EAGAIN;
                return;
        }

        key = secret_alloc(size);
        r = key ? shamir_recover(shares, n, op->k, size, key, &bad) : -ENOMEM;
        if (r < 0) {
                erase_and_free(key, size);
                if (r == -EBADMSG)
                        log_warning("Key %s: the %zu shares received are inconsistent; no subset of %u "
                                    "recovers it.",
                                    op->key_id_string, n, op->k);
                /* Their hubs have forgotten them: the next gather brings more to choose from. */
                gather_hold(op, shares, n, size);
                op->result = r == -EBADMSG ? -EBADMSG : -EAGAIN;
                return;
        }
        if (held)
                key_store_remove(op->manager->keys, held);
        for (size_t i = 0; i < n; i++) {
                if (!(bad & (UINT32_C(1) << i)))
                        continue;
                /* Hub i carries share i; a held share may come from a hub configured no more. */
                if (shares[i].x < op->n_exchanges)
                        log_warning("Hub %s sent a share inconsistent with the others for key %s; it was "
                                    "left out.",
                                    op->exchanges[shares[i].x].hub->name, op->key_id_string);
                if (owners[i]) {
                        exchange_set_outcome(owners[i], HUB_OUTCOME_INCONSISTENT, "share left out");
                        op->n_ok--;
                }
        }
        op->key = key;
        op->key_size = size;
        op->result = 0;
}

static void key_op_finish(KeyOp *op) {
        Manager *m = op->manager;

        if (op->finished)
                return;
        op->finished = true;

        if (op->kind == KEY_OP_SCATTER) {
                op->result = op->n_ok >= client_config_min_scatter(&m->config) ? 0 : -EAGAIN;
                if (op->result == 0)
                        m->n_keys_scattered++;
                else {
                        m->n_scatter_failures++;
                        log_warning("Key %s: only %u of %zu hubs took a share (%u needed).",
                                    op->key_id_string, op->n_ok, op->n_exchanges,
                                    client_config_min_scatter(&m->config));
                        /* The shares that did go out are useless; the key must not be handed out. */
                        erase_and_free(op->key, op->key_size);
                        op->key = NULL;
                        op->key_size = 0;
                }
        } else {
                gather_recover(op);
                if (op->result == 0)
                        m->n_keys_gathered++;
                else {
                        m->n_gather_failures++;
                        log_info("Key %s: gathered %u shares of %u needed (%s).", op->key_id_string,
                                 op->n_ok, op->k, strerror(-op->result));
                }
        }
        for (size_t i = 0; i < op->n_exchanges; i++)
                if (op->exchanges[i].share)
                        op->exchanges[i].share =
                                erase_and_free(op->exchanges[i].share, op->exchanges[i].share_size);

        op->done(op, op->userdata);
}

/* The store */

enum {
        RECORD_KEY_PUT = STATE_RECORD_USER,
        RECORD_KEY_DELETE,
        RECORD_SHARES_PUT, /* a partial entry: the shares of a gather that fell short */
};

static uint64_t realtime_usec(void) {
        struct timespec ts;

        (void) clock_gettime(CLOCK_REALTIME, &ts);
        return (uint64_t) ts.tv_sec * 1000000u + (uint64_t) ts.tv_nsec / 1000u;
}

static uint64_t now_usec(void) {
        struct timespec ts;

        (void) clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000u + (uint64_t) ts.tv_nsec / 1000u;
}

int key_store_new(sd_event *event, KeyStore **ret) {
        KeyStore *s = calloc(1, sizeof(KeyStore));

        if (!s)
                return -ENOMEM;
        s->event = event;
        *ret = s;
        return 0;
}

/* A key record: key ID, expiry (CLOCK_REALTIME, µs), master and slave SAE (a length byte and the
 * text each), the key (two length bytes and the bytes). The caller wipes and frees *ret. */
static int stored_key_record(const StoredKey *k, uint64_t now_mono, uint8_t **ret, size_t *ret_size) {
        uint64_t expires =
                htole64(realtime_usec() + (k->expires_usec > now_mono ? k->expires_usec - now_mono : 0));
        size_t off = 24, alloc = 24 + STATE_TEXT_SIZE_MAX(2) + STATE_VALUE_SIZE_MAX(k->size);
        uint8_t *buf;
        int r;

        buf = secret_alloc(alloc);
        if (!buf)
                return -ENOMEM;
        memcpy(buf, k->key_id.bytes, 16);
        memcpy(buf + 16, &expires, 8);
        r = state_record_put_text(buf, &off, k->master_sae);
        if (r >= 0)
                r = state_record_put_text(buf, &off, k->slave_sae);
        if (r >= 0)
                r = state_record_put_value(buf, &off, k->key, k->size);
        if (r < 0) {
                erase_and_free(buf, alloc);
                return r;
        }
        *ret = buf;
        *ret_size = off;
        return 0;
}

static int stored_key_journal(StateDir *d, const StoredKey *k, bool snapshot) {
        uint8_t *buf, type;
        size_t n;
        int r;

        if (!d)
                return 0;
        r = stored_key_record(k, now_usec(), &buf, &n);
        if (r < 0)
                return r;
        type = k->partial ? RECORD_SHARES_PUT : RECORD_KEY_PUT;
        r = snapshot ? state_dir_snapshot_add(d, type, buf, n) : state_dir_append(d, type, buf, n);
        erase_and_free(buf, n);
        return r;
}

static void stored_key_free(StoredKey *k) {
        erase_and_free(k->key, k->size);
        free(k->master_sae);
        free(k->slave_sae);
        free(k);
}

static void key_store_unlink(KeyStore *s, StoredKey *k) {
        if (k->prev)
                k->prev->next = k->next;
        else
                s->head = k->next;
        if (k->next)
                k->next->prev = k->prev;
        else
                s->tail = k->prev;
        k->prev = k->next = NULL;
        s->n_keys--;
        s->n_partial -= k->partial;
        if (s->state &&
            state_dir_append(s->state, RECORD_KEY_DELETE, k->key_id.bytes, sizeof(k->key_id.bytes)) < 0)
                log_warning("Failed to record that a stored key is gone.");
}

static void key_store_remove(KeyStore *s, StoredKey *k) {
        key_store_unlink(s, k);
        stored_key_free(k);
}

void key_store_clear(KeyStore *s) {
        while (s && s->head)
                key_store_remove(s, s->head);
}

KeyStore *key_store_free(KeyStore *s) {
        if (!s)
                return NULL;
        s->state = NULL; /* the keys stay stored for the next start */
        key_store_clear(s);
        free(s);
        return NULL;
}

static void key_store_expire(KeyStore *s) {
        uint64_t now = now_usec();

        /* Keys are appended in time order with one TTL, so the expired ones lead. */
        while (s->head && s->head->expires_usec <= now) {
                StoredKey *k = s->head;
                char buf[UUID_STRING_MAX];

                log_info("Key %s expired before it was delivered.", uuid_to_string(&k->key_id, buf));
                key_store_remove(s, k);
        }
}

static int key_store_put(KeyStore *s, const Uuid *key_id, const char *master_sae, const char *slave_sae,
                         uint8_t *key, size_t size, bool partial, unsigned max_keys, uint64_t ttl_usec) {
        StoredKey *k;
        int r;

        key_store_expire(s);
        if (max_keys == 0)
                return -ENOSPC;
        while (s->n_keys >= max_keys) {
                StoredKey *old = s->head;
                char buf[UUID_STRING_MAX];

                log_notice("Key %s dropped before it was delivered: MaxStoredKeys=%u keys are stored.",
                           uuid_to_string(&old->key_id, buf), max_keys);
                key_store_remove(s, old);
        }
        k = calloc(1, sizeof(StoredKey));
        if (!k)
                return -ENOMEM;
        k->key_id = *key_id;
        k->master_sae = strdup(master_sae);
        k->slave_sae = strdup(slave_sae);
        if (!k->master_sae || !k->slave_sae) {
                free(k->master_sae);
                free(k->slave_sae);
                free(k);
                return -ENOMEM;
        }
        k->key = key;
        k->size = size;
        k->partial = partial;
        k->expires_usec = now_usec() + ttl_usec;
        r = stored_key_journal(s->state, k, false);
        if (r < 0) {
                k->key = NULL; /* still the caller's */
                stored_key_free(k);
                return r;
        }
        k->prev = s->tail;
        if (s->tail)
                s->tail->next = k;
        else
                s->head = k;
        s->tail = k;
        s->n_keys++;
        s->n_partial += k->partial;
        return 0;
}

int key_store_add(KeyStore *s, const Uuid *key_id, const char *master_sae, const char *slave_sae,
                  uint8_t *key, size_t size, unsigned max_keys, uint64_t ttl_usec) {
        return key_store_put(s, key_id, master_sae, slave_sae, key, size, false, max_keys, ttl_usec);
}

StoredKey *key_store_find(KeyStore *s, const Uuid *key_id) {
        key_store_expire(s);
        for (StoredKey *k = s->head; k; k = k->next)
                if (uuid_equal(&k->key_id, key_id))
                        return k;
        return NULL;
}

bool stored_key_matches(const StoredKey *k, const char *master_sae, const char *slave_sae) {
        return streq(k->master_sae, master_sae) && streq(k->slave_sae, slave_sae);
}

bool stored_key_is_partial(const StoredKey *k) {
        return k->partial;
}

uint8_t *key_store_take(KeyStore *s, StoredKey *k, size_t *ret_size) {
        uint8_t *key = TAKE_PTR(k->key);

        *ret_size = k->size;
        k->size = 0;
        key_store_remove(s, k);
        return key;
}

size_t key_store_count(const KeyStore *s, const char *master_sae, const char *slave_sae) {
        uint64_t now = now_usec();
        size_t n = 0;

        for (const StoredKey *k = s->head; k; k = k->next)
                if (!k->partial && k->expires_usec > now && stored_key_matches(k, master_sae, slave_sae))
                        n++;
        return n;
}

size_t key_store_size(const KeyStore *s) {
        return s->n_keys - s->n_partial;
}

void key_store_set_state(KeyStore *s, StateDir *d) {
        s->state = d;
}

int key_store_snapshot(KeyStore *s, StateDir *d) {
        int r;

        for (StoredKey *k = s->head; k; k = k->next) {
                r = stored_key_journal(d, k, true);
                if (r < 0)
                        return r;
        }
        return 0;
}

int key_store_restore(KeyStore *s, uint8_t type, const uint8_t *p, size_t n, unsigned max_keys) {
        _cleanup_free_ char *master = NULL, *slave = NULL;
        uint64_t expires, now = realtime_usec();
        size_t off = 24, size;
        const uint8_t *value;
        StoredKey *old;
        uint8_t *key;
        Uuid key_id;
        int r;

        if (n < 16)
                return -EBADMSG;
        memcpy(key_id.bytes, p, 16);
        old = key_store_find(s, &key_id);
        if (old) {
                key_store_remove(s, old);
        }
        if (type == RECORD_KEY_DELETE)
                return n == 16 ? 0 : -EBADMSG;
        if ((type != RECORD_KEY_PUT && type != RECORD_SHARES_PUT) || n < 24)
                return -EBADMSG;

        memcpy(&expires, p + 16, 8);
        expires = le64toh(expires);
        r = state_record_get_text(p, n, &off, &master);
        if (r >= 0)
                r = state_record_get_text(p, n, &off, &slave);
        if (r >= 0)
                r = state_record_get_value(p, n, &off, &value, &size);
        if (r < 0)
                return r;
        if (expires <= now)
                return 0;
        if (type == RECORD_SHARES_PUT && held_shares_parse(value, size, NULL, NULL) < 0)
                return -EBADMSG;

        key = secret_memdup(value, size);
        if (!key)
                return -ENOMEM;
        r = key_store_put(s, &key_id, master, slave, key, size, type == RECORD_SHARES_PUT, max_keys,
                          expires - now);
        if (r < 0)
                erase_and_free(key, size);
        return r;
}
