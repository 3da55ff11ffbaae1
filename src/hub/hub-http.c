/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "auth.h"
#include "codec.h"
#include "hub-http.h"
#include "hub-manager.h"
#include "json-util.h"
#include "log.h"
#include "psrd-metadata.h"
#include "secret.h"
#include "shamir.h"
#include "share-msg.h"

#define PURPOSE_MESSAGE_SIGNING_KEY  "message-signing-key"
#define PURPOSE_SHARE_ENCRYPTION_KEY "share-encryption-key"

/* pool_allocate() failures that mean the pool cannot serve this size now. */
#define IS_OUT_OF_PSRD(r) ((r) == -ENOSPC || (r) == -E2BIG)

/* Builds a details object from name/value pairs ending with NULL. Values are taken over. */
_sentinel_ static json_object *details_new_sentinel(const char *name, ...) {
        json_object *o = json_object_new_object();
        va_list ap;

        va_start(ap, name);
        for (const char *n = name; n; n = va_arg(ap, const char *)) {
                json_object *v = va_arg(ap, json_object *);
                if (o)
                        (void) json_object_object_add(o, n, v);
                else
                        json_object_put(v);
        }
        va_end(ap);
        return o;
}

#define details_new(...) details_new_sentinel(__VA_ARGS__, (const char *) NULL)

static json_object *json_uuid(const Uuid *u) {
        char buf[UUID_STRING_MAX];
        return json_object_new_string(uuid_to_string(u, buf));
}

static int reply_bad_body(HttpRequest *req, const char *field, const char *reason) {
        return http_request_reply_error(req, 400,
                                        details_new("field", field ? json_object_new_string(field) : NULL,
                                                    "reason", json_object_new_string(reason)),
                                        "Invalid request body.");
}

static int reply_client_not_registered(HttpRequest *req, const char *name) {
        return http_request_reply_error(req, 400, details_new("client_name", json_object_new_string(name)),
                                        "Client is not registered.");
}

static int reply_invalid_signature(HttpRequest *req, const char *reason) {
        return http_request_reply_error(req, 403, details_new("reason", json_object_new_string(reason)),
                                        "Invalid signature.");
}

static int reply_out_of_psrd(HttpRequest *req, const Pool *p, const char *purpose, size_t size) {
        return http_request_reply_error(
                req, 503,
                details_new("purpose", json_object_new_string(purpose), "allocation_size",
                            json_object_new_uint64(size), "pool_available_bytes",
                            json_object_new_uint64(pool_available(p))),
                "Pool %s %s out of Pre-Shared Random Data (PSRD).", p->name, pool_owner_to_string(p->owner));
}

/* Answers a failed pool_take() with the reference's error for that case. */
static int reply_take_error(HttpRequest *req, int error, const Pool *p, const Allocation *a, size_t bad) {
        const Fragment *f = bad < a->n_fragments ? a->fragments + bad : NULL;

        /* Errors about one fragment name it; without one it is the allocation as a whole. */
        if (!f && (error == -ENOENT || error == -ERANGE || error == -EALREADY))
                error = -EBADMSG;

        switch (error) {
        case -ENOENT:
                return http_request_reply_error(req, 400,
                                                details_new("block_uuid", json_uuid(&f->block_uuid)),
                                                "Invalid PSRD block UUID.");
        case -ERANGE:
                return http_request_reply_error(req, 400,
                                                details_new("block_uuid", json_uuid(&f->block_uuid), "index",
                                                            json_object_new_uint64(f->start)),
                                                "Invalid byte index into PSRD block.");
        case -EALREADY:
                return http_request_reply_error(req, 400,
                                                details_new("block_uuid", json_uuid(&f->block_uuid), "start",
                                                            json_object_new_uint64(f->start), "size",
                                                            json_object_new_uint64(f->size)),
                                                "Attempt to use PSRD data more than once.");
        case -EBADMSG:
        case -EINVAL:
                return http_request_reply_error(
                        req, 400,
                        details_new("reason",
                                    json_object_new_string("empty, zero-size, overlapping or wrongly sized "
                                                           "fragments")),
                        "Invalid encoded fragment.");
        default:
                return log_error_errno(error, "Failed to take PSRD from pool %s %s: %m", p->name,
                                       pool_owner_to_string(p->owner));
        }
}

/* Parses the whole body as one JSON value (RFC 8259, UTF-8). */
static int parse_json_body(Manager *m, HttpRequest *req, json_object **ret) {
        _cleanup_json_ json_object *o = NULL;
        const uint8_t *body;
        size_t size, end;
        bool ok;

        body = http_request_body(req, &size);
        if (size == 0 || size > INT32_MAX)
                return -EBADMSG;

        /* Kept from request to request: a new tokener per body cost more than the parse. */
        if (!m->tokener) {
                m->tokener = json_tokener_new();
                if (!m->tokener)
                        return -ENOMEM;
                json_tokener_set_flags(m->tokener, JSON_TOKENER_STRICT | JSON_TOKENER_ALLOW_TRAILING_CHARS |
                                                           JSON_TOKENER_VALIDATE_UTF8);
        } else
                json_tokener_reset(m->tokener);
        o = json_tokener_parse_ex(m->tokener, (const char *) body, (int) size);
        ok = o && json_tokener_get_error(m->tokener) == json_tokener_success;
        end = json_tokener_get_parse_end(m->tokener);
        if (!ok)
                return -EBADMSG;

        /* Only white space may follow the value. */
        for (size_t i = end; i < size; i++)
                if (body[i] != ' ' && body[i] != '\t' && body[i] != '\r' && body[i] != '\n')
                        return -EBADMSG;

        *ret = TAKE_PTR(o);
        return 0;
}

/* A member of type t, or NULL. Strings with an embedded NUL count as the wrong type: the C code
 * would see only a prefix of them. */
static json_object *member(json_object *o, const char *name, json_type t) {
        json_object *v;

        if (!json_object_object_get_ex(o, name, &v) || !json_object_is_type(v, t))
                return NULL;
        if (t == json_type_string &&
            strlen(json_object_get_string(v)) != (size_t) json_object_get_string_len(v))
                return NULL;
        return v;
}

/* Rejects query parameters that are not in allowed (R13), or given twice. Returns 1 if it replied. */
static int check_query(HttpRequest *req, const char *const *allowed) {
        const char *bad = NULL;
        int r = http_request_check_query(req, allowed, &bad);

        if (r >= 0)
                return 0;
        (void) http_request_reply_error(
                req, 400, details_new("parameter", json_object_new_string(strempty(bad))),
                r == -EEXIST ? "Query parameter given more than once." : "Unknown query parameter.");
        return 1;
}

/* Fetches a required query parameter; replies 400 and returns NULL when it is absent. */
static const char *require_query(HttpRequest *req, const char *name) {
        const char *v = http_request_query(req, name);

        if (!v)
                (void) http_request_reply_error(req, 400,
                                                details_new("parameter", json_object_new_string(name)),
                                                "Missing query parameter.");
        return v;
}

/* Like require_query() for a client name, which must also be well-formed. */
static const char *require_client_name(HttpRequest *req) {
        const char *v = require_query(req, "client_name");

        if (v && !name_is_valid(v)) {
                (void) http_request_reply_error(req, 400,
                                                details_new("client_name", json_object_new_string(v)),
                                                "Invalid client name.");
                return NULL;
        }
        return v;
}

/* ---- out of band: registration and PSRD issue ---- */

static int route_register(Manager *m, HttpRequest *req) {
        _cleanup_json_ json_object *body = NULL;
        _cleanup_free_ char **names = NULL;
        const char *client_name, *conflict = NULL;
        json_object *v, *list;
        PeerClient *c;
        size_t n;
        int r;

        if (check_query(req, (const char *const[]){NULL}))
                return 0;

        r = parse_json_body(m, req, &body);
        if (r == -ENOMEM)
                return r;
        if (r < 0 || !json_object_is_type(body, json_type_object))
                return reply_bad_body(req, NULL, "not a JSON object");

        v = member(body, "client_name", json_type_string);
        if (!v)
                return reply_bad_body(req, "client_name", "missing or not a string");
        client_name = json_object_get_string(v);
        if (!name_is_valid(client_name))
                return reply_bad_body(req, "client_name", "not a valid name");

        list = member(body, "encryptor_names", json_type_array);
        if (!list)
                return reply_bad_body(req, "encryptor_names", "missing or not an array");
        n = json_object_array_length(list);
        if (n > HUB_ENCRYPTORS_PER_CLIENT_MAX)
                return reply_bad_body(req, "encryptor_names", "too many encryptors");

        names = calloc(n + 1, sizeof(char *));
        if (!names)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                json_object *e = json_object_array_get_idx(list, i);

                if (!json_object_is_type(e, json_type_string) || !name_is_valid(json_object_get_string(e)) ||
                    strlen(json_object_get_string(e)) != (size_t) json_object_get_string_len(e))
                        return reply_bad_body(req, "encryptor_names", "an entry is not a valid name");
                names[i] = (char *) json_object_get_string(e);
                for (size_t j = 0; j < i; j++)
                        if (streq(names[i], names[j]))
                                return reply_bad_body(req, "encryptor_names", "duplicate entry");
        }

        r = manager_register_client(m, client_name, names, n, &c, &conflict);
        if (r == -EUSERS)
                return http_request_reply_error(
                        req, 503, details_new("max_clients", json_object_new_uint64(m->config.max_clients)),
                        "Too many clients are registered.");
        if (r == -EADDRINUSE)
                return http_request_reply_error(
                        req, 409,
                        details_new("client_name", json_object_new_string(client_name), "encryptor_name",
                                    json_object_new_string(conflict)),
                        "Encryptor is registered for another client.");
        if (r < 0)
                return log_error_errno(r, "Failed to register client %s: %m", client_name);

        return http_request_reply_json(req, 200,
                                       details_new("hub_name", json_object_new_string(m->config.name)));
}

static int route_unregister(Manager *m, HttpRequest *req) {
        const char *client_name;
        int r;

        if (check_query(req, (const char *const[]){"client_name", NULL}))
                return 0;
        client_name = require_client_name(req);
        if (!client_name)
                return 0;

        r = manager_unregister_client(m, client_name);
        if (r < 0 && r != -ENOENT)
                return r;

        return http_request_reply_json(req, 200,
                                       details_new("client_name", json_object_new_string(client_name),
                                                   "was_registered", json_object_new_boolean(r >= 0)));
}

typedef struct PsrdReply {
        HttpRequest *req;
        char *body; /* key material */
        size_t size;
} PsrdReply;

static void psrd_reply_send(void *userdata) {
        PsrdReply *x = userdata;

        if (http_request_reply(x->req, 200, "application/json", x->body, x->size) < 0)
                http_request_release(x->req);
        erase_and_free(x->body, x->size);
        free(x);
}

static int route_psrd(Manager *m, HttpRequest *req) {
        _cleanup_(block_freep) Block *b = NULL;
        const char *client_name, *owner, *size_str;
        size_t b64_size, body_size;
        char uuid[UUID_STRING_MAX];
        char *b64 = NULL, *body = NULL;
        PsrdReply *reply;
        PoolStats stats;
        PeerClient *c;
        uint64_t size;
        Pool *p;
        int r;

        if (check_query(req, (const char *const[]){"client_name", "pool_owner", "size", NULL}))
                return 0;
        client_name = require_client_name(req);
        if (!client_name)
                return 0;
        owner = require_query(req, "pool_owner");
        if (!owner)
                return 0;
        size_str = require_query(req, "size");
        if (!size_str)
                return 0;

        r = parse_size(size_str, strlen(size_str), m->config.max_block_size, &size);
        if (r < 0 || size == 0)
                return http_request_reply_error(
                        req, 400,
                        details_new("size", json_object_new_string(size_str), "min_size",
                                    json_object_new_int(1), "max_size",
                                    json_object_new_uint64(m->config.max_block_size)),
                        "Invalid PSRD block size.");

        c = manager_find_client(m, client_name);
        if (!c)
                return reply_client_not_registered(req, client_name);

        if (strcasecmp(owner, "client") == 0)
                p = c->client_pool;
        else if (strcasecmp(owner, "hub") == 0)
                p = c->hub_pool;
        else
                return http_request_reply_error(req, 400,
                                                details_new("pool_owner", json_object_new_string(owner)),
                                                "Pool owner %s is invalid.", owner);

        pool_get_stats(p, &stats);
        if (stats.total_bytes + size > m->config.max_pool_size)
                return http_request_reply_error(
                        req, 503,
                        details_new("pool_size", json_object_new_uint64(stats.total_bytes), "max_pool_size",
                                    json_object_new_uint64(m->config.max_pool_size)),
                        "Pool %s %s is full.", p->name, pool_owner_to_string(p->owner));

        r = block_new_random(size, &b);
        if (r < 0)
                return log_error_errno(r, "Failed to create a PSRD block: %m");

        r = base64_encode(b->data, b->size, &b64);
        if (r < 0)
                return r;
        b64_size = strlen(b64);
        (void) uuid_to_string(&b->uuid, uuid);

        /* Built by hand rather than through json-c so that every copy of the PSRD is wiped. */
        body_size = strlen("{\"block_uuid\":\"\",\"data\":\"\"}") + strlen(uuid) + b64_size;
        body = secret_alloc(body_size + 1);
        if (!body) {
                erase_and_free(b64, b64_size);
                return -ENOMEM;
        }
        (void) snprintf(body, body_size + 1, "{\"block_uuid\":\"%s\",\"data\":\"%s\"}", uuid, b64);
        b64 = erase_and_free(b64, b64_size);

        reply = malloc(sizeof(PsrdReply));
        if (!reply) {
                erase_and_free(body, body_size);
                return -ENOMEM;
        }
        *reply = (PsrdReply){req, body, body_size};

        r = pool_add_block(p, b);
        if (r < 0) {
                erase_and_free(body, body_size);
                free(reply);
                return log_error_errno(r, "Failed to add a PSRD block to pool %s %s: %m", p->name,
                                       pool_owner_to_string(p->owner));
        }
        TAKE_PTR(b);

        log_info("Issued PSRD block %s of %" PRIu64 " bytes to client %s (%s-owned pool).", uuid, size,
                 client_name, p == c->client_pool ? "client" : "hub");

        /* The client may use the block as soon as it has it: the reply waits for the block's file,
         * so that a restart of this hub still knows it. */
        r = state_dir_call_when_written(m->state, psrd_reply_send, reply);
        if (r < 0) {
                erase_and_free(body, body_size);
                free(reply);
        }
        return r;
}

/* ---- in band: key shares ---- */

/* The PSRD one key-share request uses, and what goes back to the pools when it is refused.
 *
 * Bytes of the client-owned pool taken only to check a MAC that fails go back (H3): a forged
 * message must not burn the real client's PSRD. Once the MAC has verified, the client really
 * spent the bytes the request names (its MAC key and, for a POST, the share-encryption key):
 * they stay used whatever the answer, or the captured request could be replayed later and the
 * hub's copy of the pool would keep a hole that its owner never allocates again.
 *
 * Bytes the hub allocated itself from the hub-owned pool go back unless the signed answer left
 * the process (committed): nobody has seen them. */
typedef struct KeyShareContext {
        PeerClient *client;
        Allocation *request_mac; /* taken from the client-owned pool */
        Allocation *share_key;   /* taken (POST) or allocated (GET) */
        Pool *share_key_pool;
        Allocation *response_mac; /* allocated from the hub-owned pool */
        bool verified;            /* the request's MAC checked out */
        bool committed;
} KeyShareContext;

/* A POST's share key is taken only after the MAC verified, so it never goes back. */
static void key_share_context_give_back(KeyShareContext *ctx) {
        if (!ctx->client)
                return;
        if (ctx->response_mac && ctx->response_mac->data)
                pool_give_back(ctx->client->hub_pool, ctx->response_mac);
        if (ctx->share_key && ctx->share_key->data && ctx->share_key_pool == ctx->client->hub_pool)
                pool_give_back(ctx->share_key_pool, ctx->share_key);
        if (ctx->request_mac && ctx->request_mac->data && !ctx->verified)
                pool_give_back(ctx->client->client_pool, ctx->request_mac);
}

static void key_share_context_done(KeyShareContext *ctx) {
        if (!ctx->committed)
                key_share_context_give_back(ctx);
        ctx->response_mac = allocation_free(ctx->response_mac);
        ctx->share_key = allocation_free(ctx->share_key);
        ctx->request_mac = allocation_free(ctx->request_mac);
        if (ctx->client)
                peer_client_drop_used_blocks(ctx->client);
}

/* Checks DSKE-Signature over the raw query and body against the client-owned pool (§4.7, C1).
 * Returns 0 when it verifies, 1 after replying with the error, or a negative errno. */
static int verify_request(KeyShareContext *ctx, HttpRequest *req) {
        _cleanup_(allocation_freep) Allocation *a = NULL;
        uint8_t mac[DSKE_MAC_SIZE];
        const char *header, *query;
        const uint8_t *body;
        size_t body_size, bad = 0;
        int r;

        header = http_request_header(req, DSKE_SIGNATURE_HEADER);
        if (!header) {
                (void) reply_invalid_signature(req, "missing DSKE-Signature header");
                return 1;
        }
        r = signature_header_parse(header, &a, mac);
        if (r == -ENOMEM)
                return r;
        if (r < 0) {
                (void) reply_invalid_signature(req, "malformed DSKE-Signature header");
                return 1;
        }

        r = pool_take(ctx->client->client_pool, a, DSKE_MAC_KEY_SIZE, &bad);
        if (r < 0) {
                r = reply_take_error(req, r, ctx->client->client_pool, a, bad);
                return r < 0 ? r : 1;
        }
        ctx->request_mac = TAKE_PTR(a);

        query = http_request_raw_query(req);
        body = http_request_body(req, &body_size);
        r = dske_mac_verify(ctx->request_mac->data, ctx->request_mac->size, query, strlen(query), body,
                            body_size, mac);
        explicit_bzero(mac, sizeof(mac));
        if (r < 0) {
                log_notice("Request from client %s has an invalid MAC; its PSRD goes back to the pool.",
                           ctx->client->name);
                (void) reply_invalid_signature(req, "MAC mismatch");
                return 1;
        }
        ctx->verified = true;
        return 0;
}

/* Allocates the response MAC key from the hub-owned pool. Returns 0, 1 after replying 503. */
static int allocate_response_mac(KeyShareContext *ctx, HttpRequest *req) {
        Pool *p = ctx->client->hub_pool;
        int r;

        r = pool_allocate(p, DSKE_MAC_KEY_SIZE, &ctx->response_mac);
        if (IS_OUT_OF_PSRD(r)) {
                /* The level reported must be the real one, so the hub-owned bytes this request
                 * holds go back first. */
                key_share_context_give_back(ctx);
                ctx->response_mac = NULL;
                (void) reply_out_of_psrd(req, p, PURPOSE_MESSAGE_SIGNING_KEY, DSKE_MAC_KEY_SIZE);
                return 1;
        }
        if (r < 0)
                return log_error_errno(r, "Failed to allocate PSRD from pool %s local: %m", p->name);
        return 0;
}

/* Signs body with the response MAC key and replies 200. */
static int reply_signed(KeyShareContext *ctx, HttpRequest *req, const char *body, size_t size) {
        _cleanup_free_ char *allocated = NULL;
        uint8_t mac[DSKE_MAC_SIZE];
        char buf[512], *header = buf;
        size_t n;
        int r;

        r = dske_mac(ctx->response_mac->data, ctx->response_mac->size, NULL, 0, body, size, mac);
        if (r < 0)
                return r;

        /* A MAC key of one or two fragments, the usual case, fits on the stack. */
        n = signature_header_length(ctx->response_mac);
        if (n >= sizeof(buf)) {
                header = allocated = malloc(n + 1);
                if (!header)
                        return -ENOMEM;
        }
        *signature_header_write(ctx->response_mac, mac, header) = '\0';

        r = http_request_add_header(req, DSKE_SIGNATURE_HEADER, header);
        if (r < 0)
                return r;
        return http_request_reply(req, 200, "application/json", body, size);
}

/* The POST key-share fields, from the fast reader or from json-c. */
typedef struct PostShareFields {
        SharePostView view; /* filled by share_post_parse() */
        json_object *body;  /* or this, when the body had another form */
        const char *master_client_name, *master_sae_id, *slave_sae_id, *user_key_id;
        int64_t share_index;
        json_object *allocation;
        const char *encrypted_share_value;
        size_t encrypted_share_value_size;
} PostShareFields;

static void post_share_fields_done(PostShareFields *f) {
        share_post_view_done(&f->view);
        json_object_putp(&f->body);
}

/* Reads the body, in the usual compact form without json-c. Returns 0, 1 after replying, or a
 * negative errno. */
static int post_share_fields_read(Manager *m, HttpRequest *req, PostShareFields *f) {
        static const struct {
                const char *name;
                json_type type;
        } fields[] = {
                {"master_client_name", json_type_string},
                {"master_sae_id", json_type_string},
                {"slave_sae_id", json_type_string},
                {"user_key_id", json_type_string},
                {"share_index", json_type_int},
                {"encryption_key_allocation", json_type_object},
                {"encrypted_share_value", json_type_string},
        };
        json_object *values[ELEMENTSOF(fields)];
        const uint8_t *body;
        size_t size;
        int r;

        body = http_request_body(req, &size);
        if (size > 0 && size <= INT32_MAX) {
                r = share_post_parse(body, size, &f->view);
                if (r == -ENOMEM)
                        return r;
                if (r >= 0) {
                        f->master_client_name = f->view.master_client_name;
                        f->master_sae_id = f->view.master_sae_id;
                        f->slave_sae_id = f->view.slave_sae_id;
                        f->user_key_id = f->view.user_key_id;
                        f->share_index = f->view.share_index;
                        f->encrypted_share_value = f->view.encrypted_share_value;
                        f->encrypted_share_value_size = f->view.encrypted_share_value_size;
                        return 0;
                }
        }

        r = parse_json_body(m, req, &f->body);
        if (r == -ENOMEM)
                return r;
        if (r < 0 || !json_object_is_type(f->body, json_type_object)) {
                (void) reply_bad_body(req, NULL, "not a JSON object");
                return 1;
        }
        for (size_t i = 0; i < ELEMENTSOF(fields); i++) {
                values[i] = member(f->body, fields[i].name, fields[i].type);
                if (!values[i]) {
                        (void) reply_bad_body(req, fields[i].name, "missing or of the wrong type");
                        return 1;
                }
        }
        f->master_client_name = json_object_get_string(values[0]);
        f->master_sae_id = json_object_get_string(values[1]);
        f->slave_sae_id = json_object_get_string(values[2]);
        f->user_key_id = json_object_get_string(values[3]);
        f->share_index = json_object_get_int64(values[4]);
        f->allocation = values[5];
        f->encrypted_share_value = json_object_get_string(values[6]);
        f->encrypted_share_value_size = (size_t) json_object_get_string_len(values[6]);
        return 0;
}

static int route_post_share(Manager *m, HttpRequest *req) {
        _cleanup_(key_share_context_done) KeyShareContext ctx = {};
        _cleanup_(post_share_fields_done) PostShareFields fields = {};
        _cleanup_(allocation_freep) Allocation *share_key = NULL;
        _cleanup_(share_freep) Share *share = NULL;
        _cleanup_secret_ Secret value = {};
        const char *master_sae_id, *slave_sae_id, *key_id_str;
        int64_t share_index;
        Share *existing;
        Uuid key_id;
        size_t bad = 0;
        int r;

        if (check_query(req, (const char *const[]){NULL}))
                return 0;

        /* The shape is checked first so that a malformed request costs no PSRD at all; nothing in
         * it is believed until the MAC has been verified. */
        r = post_share_fields_read(m, req, &fields);
        if (r != 0)
                return r < 0 ? r : 0;

        ctx.client = manager_find_client(m, fields.master_client_name);
        if (!ctx.client)
                return reply_client_not_registered(req, fields.master_client_name);

        r = verify_request(&ctx, req);
        if (r != 0)
                return r < 0 ? r : 0;

        master_sae_id = fields.master_sae_id;
        if (!peer_client_has_encryptor(ctx.client, master_sae_id))
                return http_request_reply_error(
                        req, 400,
                        details_new("client_name", json_object_new_string(ctx.client->name),
                                    "encryptor_name", json_object_new_string(master_sae_id)),
                        "Encryptor is not registered for client.");

        slave_sae_id = fields.slave_sae_id;
        if (!name_is_valid(slave_sae_id))
                return reply_bad_body(req, "slave_sae_id", "not a valid name");

        key_id_str = fields.user_key_id;
        if (uuid_from_string(key_id_str, &key_id) < 0)
                return http_request_reply_error(req, 400,
                                                details_new("key_id", json_object_new_string(key_id_str)),
                                                "Invalid key ID.");

        share_index = fields.share_index;
        if (share_index < 0 || share_index >= (int64_t) SHAMIR_SHARES_MAX)
                return http_request_reply_error(
                        req, 400,
                        details_new("share_index", json_object_new_int64(share_index), "min_share_index",
                                    json_object_new_int(0), "max_share_index",
                                    json_object_new_int(SHAMIR_SHARES_MAX - 1)),
                        "Invalid share index.");

        if (fields.view.encryption_key)
                share_key = TAKE_PTR(fields.view.encryption_key);
        else {
                r = allocation_from_json(fields.allocation, &share_key);
                if (r == -ENOMEM)
                        return r;
                if (r < 0)
                        return http_request_reply_error(
                                req, 400,
                                details_new("encoded_fragment",
                                            json_object_new_string(json_object_to_json_string_ext(
                                                    fields.allocation, JSON_C_TO_STRING_DSKE))),
                                "Invalid encoded fragment.");
        }

        r = base64_decode(fields.encrypted_share_value, fields.encrypted_share_value_size, &value.data,
                          &value.size);
        if (r == -ENOMEM)
                return r;
        if (r < 0)
                return reply_bad_body(req, "encrypted_share_value", "not valid base64");
        if (value.size == 0)
                return reply_bad_body(req, "encrypted_share_value", "empty share");

        /* C3: the pad must cover exactly the ciphertext, no more, no less. */
        if (share_key->size != value.size)
                return http_request_reply_error(
                        req, 400,
                        details_new("allocation_size", json_object_new_uint64(share_key->size), "share_size",
                                    json_object_new_uint64(value.size)),
                        "Encryption key allocation size does not match the share size.");

        r = pool_take(ctx.client->client_pool, share_key, value.size, &bad);
        if (r < 0) {
                r = reply_take_error(req, r, ctx.client->client_pool, share_key, bad);
                return r < 0 ? r : 0;
        }
        ctx.share_key = TAKE_PTR(share_key);
        ctx.share_key_pool = ctx.client->client_pool;

        for (size_t i = 0; i < value.size; i++)
                value.data[i] ^= ctx.share_key->data[i];

        r = share_new(&key_id, (unsigned) share_index, ctx.client, master_sae_id, slave_sae_id, value.data,
                      value.size, &share);
        if (r < 0)
                return r;

        /* C5: a key ID is never overwritten. The same share again from the same client (a retry
         * after a lost response) is accepted without storing anything. */
        existing = share_store_get(&m->shares, &key_id);
        if (existing && !share_equal(existing, share))
                return http_request_reply_error(req, 409, details_new("key_id", json_uuid(&key_id)),
                                                "Key ID is already in use.");

        if (!existing && ctx.client->n_shares >= m->config.max_shares_per_client)
                return http_request_reply_error(
                        req, 503,
                        details_new("client_name", json_object_new_string(ctx.client->name), "max_shares",
                                    json_object_new_uint64(m->config.max_shares_per_client)),
                        "Too many shares are stored for this client.");

        /* Allocated before the share is committed: a hub that cannot sign its answer stores
         * nothing. */
        r = allocate_response_mac(&ctx, req);
        if (r != 0)
                return r < 0 ? r : 0;

        if (!existing) {
                r = share_store_add(&m->shares, share, m->config.share_ttl_usec);
                if (r < 0)
                        return log_error_errno(r, "Failed to store a share: %m");
                TAKE_PTR(share);
        }
        ctx.committed = true;

        r = reply_signed(&ctx, req, "null", 4);
        if (r < 0) {
                /* Nothing left the process: the client was told nothing, so nothing is stored. */
                ctx.committed = false;
                if (!existing)
                        share_store_remove(&m->shares, share_store_get(&m->shares, &key_id),
                                           SHARE_REMOVAL_DROPPED);
                return r;
        }

        log_debug("Stored share %" PRIi64 " of key %s from client %s (%s -> %s)%s.", share_index, key_id_str,
                  ctx.client->name, master_sae_id, slave_sae_id, existing ? " again" : "");
        manager_notify_status(m);
        return 0;
}

static int route_get_share(Manager *m, HttpRequest *req) {
        _cleanup_(key_share_context_done) KeyShareContext ctx = {};
        _cleanup_free_ char *body = NULL;
        const char *client_name, *master_sae_id, *slave_sae_id, *key_id_str;
        char key_id_buf[UUID_STRING_MAX];
        Share *share;
        Uuid key_id;
        size_t size;
        int r;

        if (check_query(req, (const char *const[]){"client_name", "master_sae_id", "slave_sae_id", "key_id",
                                                   NULL}))
                return 0;
        client_name = require_client_name(req);
        if (!client_name)
                return 0;
        master_sae_id = require_query(req, "master_sae_id");
        if (!master_sae_id)
                return 0;
        slave_sae_id = require_query(req, "slave_sae_id");
        if (!slave_sae_id)
                return 0;
        key_id_str = require_query(req, "key_id");
        if (!key_id_str)
                return 0;

        ctx.client = manager_find_client(m, client_name);
        if (!ctx.client)
                return reply_client_not_registered(req, client_name);

        r = verify_request(&ctx, req);
        if (r != 0)
                return r < 0 ? r : 0;

        if (uuid_from_string(key_id_str, &key_id) < 0)
                return http_request_reply_error(req, 400,
                                                details_new("key_id", json_object_new_string(key_id_str)),
                                                "Invalid key ID.");
        /* The canonical spelling, for the replies and log lines below. */
        (void) uuid_to_string(&key_id, key_id_buf);

        share = share_store_get(&m->shares, &key_id);
        if (!share)
                return http_request_reply_error(req, 404,
                                                details_new("key_ID", json_object_new_string(key_id_buf)),
                                                "Unknown key ID");

        /* C4: only the responder named when the share was posted gets it. */
        if (!peer_client_has_encryptor(ctx.client, share->slave_sae_id) ||
            !streq(slave_sae_id, share->slave_sae_id) || !streq(master_sae_id, share->master_sae_id)) {
                log_notice("Client %s asked for share of key %s, which is not meant for it.", client_name,
                           key_id_buf);
                return http_request_reply_error(req, 403,
                                                details_new("client_name",
                                                            json_object_new_string(client_name), "key_ID",
                                                            json_object_new_string(key_id_buf)),
                                                "Key share is not available to this client.");
        }

        r = pool_allocate(ctx.client->hub_pool, share->size, &ctx.share_key);
        if (IS_OUT_OF_PSRD(r))
                return reply_out_of_psrd(req, ctx.client->hub_pool, PURPOSE_SHARE_ENCRYPTION_KEY,
                                         share->size);
        if (r < 0)
                return log_error_errno(r, "Failed to allocate PSRD from pool %s local: %m", client_name);
        ctx.share_key_pool = ctx.client->hub_pool;

        r = allocate_response_mac(&ctx, req);
        if (r != 0)
                return r < 0 ? r : 0;

        r = share_reply_format(share->share_index, ctx.share_key, share->value, share->size, &body, &size);
        if (r < 0)
                return r;

        ctx.committed = true;
        r = reply_signed(&ctx, req, body, size);
        if (r < 0) {
                /* Nothing left the process: the share stays for a retry. */
                ctx.committed = false;
                return r;
        }

        log_debug("Delivered share %u of key %s to client %s.", share->share_index, key_id_buf, client_name);
        share_store_remove(&m->shares, share, SHARE_REMOVAL_DELIVERED);
        manager_notify_status(m);
        return 0;
}

/* ---- management ---- */

static json_object *pool_to_json(const Pool *p) {
        json_object *o = json_object_new_object(), *blocks = json_object_new_array();

        if (!o || !blocks) {
                json_object_put(o);
                json_object_put(blocks);
                return NULL;
        }
        for (size_t i = 0; i < p->n_blocks; i++) {
                const Block *b = p->blocks[i];
                (void) json_object_array_add(
                        blocks,
                        details_new("uuid", json_uuid(&b->uuid), "size", json_object_new_uint64(b->size),
                                    "nr_used_bytes", json_object_new_uint64(b->n_used), "nr_unused_bytes",
                                    json_object_new_uint64(b->size - b->n_used)));
        }
        (void) json_object_object_add(o, "blocks", blocks);
        (void) json_object_object_add(o, "owner", json_object_new_string(pool_owner_to_string(p->owner)));
        return o;
}

json_object *hub_status_json(Manager *m) {
        _cleanup_json_ json_object *o = NULL;
        json_object *clients, *shares;

        o = json_object_new_object();
        clients = json_object_new_array();
        shares = json_object_new_array();
        if (!o || !clients || !shares) {
                json_object_put(clients);
                json_object_put(shares);
                return NULL;
        }

        for (PeerClient *c = m->clients_head; c; c = c->next) {
                json_object *names = json_object_new_array();
                for (size_t i = 0; i < c->n_encryptor_names; i++)
                        (void) json_object_array_add(names, json_object_new_string(c->encryptor_names[i]));
                (void) json_object_array_add(
                        clients,
                        details_new("client_name", json_object_new_string(c->name), "encryptor_names", names,
                                    "local_pool", pool_to_json(c->hub_pool), "peer_pool",
                                    pool_to_json(c->client_pool), "nr_shares_posted",
                                    json_object_new_uint64(c->n_shares), "nr_shares_relayed",
                                    json_object_new_uint64(c->n_shares_posted)));
        }

        for (Share *s = m->shares.head; s; s = s->next)
                (void) json_object_array_add(
                        shares,
                        details_new("master_client_name", json_object_new_string(s->master_client->name),
                                    "master_sae_id", json_object_new_string(s->master_sae_id),
                                    "slave_sae_id", json_object_new_string(s->slave_sae_id), "key_id",
                                    json_uuid(&s->key_id), "share_index",
                                    json_object_new_int((int) s->share_index), "size",
                                    json_object_new_uint64(s->size)));

        (void) json_object_object_add(o, "name", json_object_new_string(m->config.name));
        (void) json_object_object_add(o, "version", json_object_new_string(PACKAGE_VERSION));
        (void) json_object_object_add(o, "ready", json_object_new_boolean(!m->stopping));
        (void) json_object_object_add(o, "peer_clients", clients);
        (void) json_object_object_add(o, "shares", shares);
        (void) json_object_object_add(o, "nr_shares_delivered",
                                      json_object_new_uint64(m->shares.n_delivered));
        (void) json_object_object_add(o, "nr_shares_expired", json_object_new_uint64(m->shares.n_expired));
        (void) json_object_object_add(o, "bus",
                                      node_bus_ok(&m->bus)
                                              ? json_object_new_boolean(true)
                                              : json_object_new_string(m->bus.error ?: "not connected"));
        return TAKE_PTR(o);
}

static int route_status(Manager *m, HttpRequest *req) {
        json_object *o;

        if (check_query(req, (const char *const[]){NULL}))
                return 0;

        o = hub_status_json(m);
        if (!o)
                return -ENOMEM;
        return http_request_reply_json(req, 200, o);
}

static int route_stop(Manager *m, HttpRequest *req) {
        int r;

        if (check_query(req, (const char *const[]){NULL}))
                return 0;

        /* The client need not keep the connection: it is about to go. */
        (void) http_request_add_header(req, "Connection", "close");
        r = http_request_reply_json(req, 200,
                                    details_new("result", json_object_new_string("Hub stop initiated")));
        manager_stop(m, "stop requested over HTTP");
        return r;
}

/* ---- dispatch ---- */

typedef enum RouteFlags {
        ROUTE_OUT_OF_BAND = 1 << 0,
        ROUTE_MANAGEMENT = 1 << 1,
} RouteFlags;

typedef struct Route {
        const char *path; /* below /hub/{name}/ */
        const char *method;
        int (*handler)(Manager *m, HttpRequest *req);
        RouteFlags flags;
} Route;

static const Route routes[] = {
        {"dske/oob/v1/registration", "PUT", route_register, ROUTE_OUT_OF_BAND},
        {"dske/oob/v1/registration", "DELETE", route_unregister, ROUTE_OUT_OF_BAND},
        {"dske/oob/v1/psrd", "GET", route_psrd, ROUTE_OUT_OF_BAND},
        {"dske/api/v1/key-share", "POST", route_post_share, 0},
        {"dske/api/v1/key-share", "GET", route_get_share, 0},
        {"mgmt/v1/status", "GET", route_status, ROUTE_MANAGEMENT},
        {"mgmt/v1/stop", "POST", route_stop, ROUTE_MANAGEMENT},
};

static int reply_not_found(HttpRequest *req, const char *path) {
        return http_request_reply_error(req, 404, details_new("path", json_object_new_string(path)),
                                        "Not found.");
}

int hub_http_handler(HttpRequest *req, void *userdata) {
        Manager *m = userdata;
        const char *path = http_request_path(req), *method = http_request_method(req), *rest;
        char allow[64] = "";
        bool path_known = false;
        size_t n;

        /* While stopping, requests still arriving on kept-alive connections are answered, and
         * those connections closed after the answer. */
        if (m->stopping)
                (void) http_request_add_header(req, "Connection", "close");

        rest = startswith(path, "/hub/");
        n = strlen(m->config.name);
        if (!rest || strncmp(rest, m->config.name, n) != 0 || rest[n] != '/')
                return reply_not_found(req, path);
        rest += n + 1;

        for (size_t i = 0; i < ELEMENTSOF(routes); i++) {
                const Route *route = routes + i;

                if (!streq(rest, route->path))
                        continue;
                if ((route->flags & ROUTE_OUT_OF_BAND) && !m->config.oob_api)
                        continue;

                path_known = true;
                if (!streq(method, route->method)) {
                        if (allow[0])
                                (void) strncat(allow, ", ", sizeof(allow) - strlen(allow) - 1);
                        (void) strncat(allow, route->method, sizeof(allow) - strlen(allow) - 1);
                        continue;
                }

                if ((route->flags & ROUTE_MANAGEMENT) && !m->config.management_from_anywhere &&
                    !http_request_from_loopback(req))
                        return http_request_reply_error(req, 403, NULL,
                                                        "Management is only available from the local host.");

                return route->handler(m, req);
        }

        if (!path_known)
                return reply_not_found(req, path);

        (void) http_request_add_header(req, "Allow", allow);
        return http_request_reply_error(req, 405,
                                        details_new("method", json_object_new_string(method), "allowed",
                                                    json_object_new_string(allow)),
                                        "Method not allowed.");
}
