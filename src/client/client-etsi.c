/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client-etsi.h"
#include "client-keys.h"
#include "client-peer.h"
#include "codec.h"
#include "json-util.h"
#include "log.h"
#include "secret.h"

/* Messages ETSI GS QKD 014 gives verbatim. */
#define ETSI_MSG_SIZE_MULTIPLE_OF_8  "size shall be a multiple of 8"
#define ETSI_MSG_EXTENSION_MANDATORY "not all extension_mandatory parameters are supported"
#define ETSI_MSG_KEYS_NOT_FOUND      "one or more keys specified are not found on KME"
/* The reference's messages, which its tests match. */
#define DSKE_MSG_COULD_NOT_SCATTER "Could not scatter enough shares for key."
#define DSKE_MSG_COULD_NOT_GATHER  "Could not gather enough shares for key."

typedef struct EtsiRequest EtsiRequest;

typedef struct EtsiKey {
        EtsiRequest *request;
        KeyOp *op;
        Uuid key_id;
        uint8_t *key;
        size_t size;
        int result;
        json_object *details;
} EtsiKey;

struct EtsiRequest {
        Manager *manager;
        HttpRequest *req;
        bool decrypt; /* dec_keys (responder) rather than enc_keys (initiator) */
        char *master_sae;
        char *slave_sae;
        EtsiKey *keys;
        size_t n_keys;
        unsigned n_pending;
        EtsiRequest *prev, *next;
};

static void etsi_key_done(EtsiKey *k) {
        k->op = key_op_free(k->op);
        if (k->key)
                k->key = erase_and_free(k->key, k->size);
        if (k->details)
                json_object_put(k->details);
        k->details = NULL;
}

static void etsi_request_unlink(EtsiRequest *r) {
        Manager *m = r->manager;

        if (r->prev)
                r->prev->next = r->next;
        else if (m->etsi_requests == r)
                m->etsi_requests = r->next;
        if (r->next)
                r->next->prev = r->prev;
        r->prev = r->next = NULL;
}

static EtsiRequest *etsi_request_free(EtsiRequest *r) {
        if (!r)
                return NULL;
        etsi_request_unlink(r);
        for (size_t i = 0; i < r->n_keys; i++)
                etsi_key_done(&r->keys[i]);
        free(r->keys);
        free(r->master_sae);
        free(r->slave_sae);
        free(r);
        return NULL;
}
DEFINE_TRIVIAL_CLEANUP_FUNC(EtsiRequest *, etsi_request_free);

void client_etsi_abort_all(Manager *m) {
        while (m->etsi_requests) {
                /* Unanswered: the connection is closed. */
                http_request_release(m->etsi_requests->req);
                etsi_request_free(m->etsi_requests);
        }
}

size_t client_etsi_pending(const Manager *m) {
        size_t n = 0;

        for (EtsiRequest *r = m->etsi_requests; r; r = r->next)
                n++;
        return n;
}

/* Replies */

static int etsi_reply_unauthorized(HttpRequest *req) {
        /* The standard's 401 carries no body. */
        return http_request_reply(req, 401, NULL, NULL, 0);
}

/* {"message": message, "details": [details...]}; details (an array, or NULL to leave it out) is
 * consumed. */
static int etsi_reply_error(HttpRequest *req, unsigned status, json_object *details, const char *message) {
        json_object *o = json_object_new_object();

        if (!o) {
                json_object_put(details);
                return -ENOMEM;
        }
        (void) json_object_object_add(o, "message", json_object_new_string(message));
        if (details)
                (void) json_object_object_add(o, "details", details);
        return http_request_reply_json(req, status, o);
}

/* A details array of one object {name: value}. */
static json_object *details_one(const char *name, json_object *value) {
        json_object *a = json_object_new_array(), *o = json_object_new_object();

        if (!a || !o) {
                json_object_put(a);
                json_object_put(o);
                json_object_put(value);
                return NULL;
        }
        (void) json_object_object_add(o, name, value);
        (void) json_object_array_add(a, o);
        return a;
}

static json_object *details_add(json_object *a, const char *name, json_object *value) {
        json_object *o = json_object_new_object();

        if (!a || !o) {
                json_object_put(o);
                json_object_put(value);
                return a;
        }
        (void) json_object_object_add(o, name, value);
        (void) json_object_array_add(a, o);
        return a;
}

static int etsi_reply_bad(HttpRequest *req, const char *message, const char *name, json_object *value) {
        return etsi_reply_error(req, 400, name ? details_one(name, value) : NULL, message);
}

/* The key container, written by hand into a buffer that is wiped afterwards: the key material
 * must not linger in JSON library buffers. */
static int etsi_reply_keys(HttpRequest *req, EtsiKey *keys, size_t n_keys) {
        static const char head[] = "{\"keys\":[", tail[] = "]}";
        size_t size = sizeof(head) - 1 + sizeof(tail) - 1, off = 0;
        char *body;
        int r;

        for (size_t i = 0; i < n_keys; i++)
                size += strlen("{\"key_ID\":\"\",\"key\":\"\"},") + UUID_STRING_MAX - 1 +
                        base64_encoded_length(keys[i].size);
        body = secret_alloc(size + 1);
        if (!body)
                return -ENOMEM;

        memcpy(body, head, sizeof(head) - 1);
        off = sizeof(head) - 1;
        for (size_t i = 0; i < n_keys; i++) {
                static const char id_head[] = "{\"key_ID\":\"", key_head[] = "\",\"key\":\"",
                                  key_tail[] = "\"}";

                if (i > 0)
                        body[off++] = ',';
                memcpy(body + off, id_head, sizeof(id_head) - 1);
                off += sizeof(id_head) - 1;
                (void) uuid_to_string(&keys[i].key_id, body + off); /* its NUL is overwritten next */
                off += UUID_STRING_MAX - 1;
                memcpy(body + off, key_head, sizeof(key_head) - 1);
                off += sizeof(key_head) - 1;
                off = (size_t) (base64_encode_into(keys[i].key, keys[i].size, body + off) - body);
                memcpy(body + off, key_tail, sizeof(key_tail) - 1);
                off += sizeof(key_tail) - 1;
        }
        memcpy(body + off, tail, sizeof(tail) - 1);
        off += sizeof(tail) - 1;

        r = http_request_reply(req, 200, "application/json", body, off);
        erase_and_free(body, size + 1);
        return r;
}

/* Requests to the hubs */

static void etsi_request_complete(EtsiRequest *r);

static void on_key_op_done(KeyOp *op, void *userdata) {
        EtsiKey *k = userdata;
        EtsiRequest *r = k->request;

        k->result = key_op_result(op);
        k->key_id = *key_op_key_id(op);
        if (k->result == 0)
                k->key = key_op_steal_key(op, &k->size);
        else
                k->details = key_op_failure_details(op);
        k->op = key_op_free(op);

        if (--r->n_pending == 0)
                etsi_request_complete(r);
}

static void etsi_request_complete_encrypt(EtsiRequest *r) {
        json_object *details = NULL;
        size_t n_failed = 0;

        for (size_t i = 0; i < r->n_keys; i++)
                if (r->keys[i].result < 0) {
                        n_failed++;
                        if (!details)
                                details = json_object_new_array();
                        if (details && r->keys[i].details)
                                (void) json_object_array_add(details, json_object_get(r->keys[i].details));
                }
        if (n_failed == 0) {
                (void) etsi_reply_keys(r->req, r->keys, r->n_keys);
                return;
        }
        /* All or nothing: the keys that did go out are dropped with the others. */
        log_warning("enc_keys for %s -> %s: %zu of %zu keys could not be scattered.", r->master_sae,
                    r->slave_sae, n_failed, r->n_keys);
        (void) etsi_reply_error(r->req, 503, details, DSKE_MSG_COULD_NOT_SCATTER);
}

static void etsi_request_complete_decrypt(EtsiRequest *r) {
        Manager *m = r->manager;
        bool forbidden = false, not_found = false;
        json_object *details = NULL, *missing = NULL;

        for (size_t i = 0; i < r->n_keys; i++) {
                EtsiKey *k = &r->keys[i];
                char id[UUID_STRING_MAX];

                if (k->result == -EACCES)
                        forbidden = true;
                else if (k->result == -ENOENT) {
                        not_found = true;
                        if (!missing)
                                missing = json_object_new_array();
                        (void) details_add(missing, "key_ID",
                                           json_object_new_string(uuid_to_string(&k->key_id, id)));
                } else if (k->result < 0) {
                        if (!details)
                                details = json_object_new_array();
                        if (details && k->details)
                                (void) json_object_array_add(details, json_object_get(k->details));
                }
        }
        if (!forbidden && !not_found && !details) {
                (void) etsi_reply_keys(r->req, r->keys, r->n_keys);
                return;
        }

        /* The hubs forget a share once delivered: keys recovered for a request that fails as a
         * whole wait in the store for the SAE to ask again. */
        for (size_t i = 0; i < r->n_keys; i++) {
                EtsiKey *k = &r->keys[i];

                if (k->result != 0 || !k->key)
                        continue;
                if (key_store_add(m->keys, &k->key_id, r->master_sae, r->slave_sae, k->key, k->size,
                                  m->config.max_stored_keys, m->config.stored_key_ttl_usec) >= 0)
                        k->key = NULL;
        }

        if (forbidden) {
                json_object_put(details);
                json_object_put(missing);
                (void) etsi_reply_unauthorized(r->req);
        } else if (not_found) {
                json_object_put(details);
                (void) etsi_reply_error(r->req, 400, missing, ETSI_MSG_KEYS_NOT_FOUND);
        } else {
                json_object_put(missing);
                (void) etsi_reply_error(r->req, 503, details, DSKE_MSG_COULD_NOT_GATHER);
        }
}

static void etsi_request_complete(EtsiRequest *r) {
        if (r->decrypt)
                etsi_request_complete_decrypt(r);
        else
                etsi_request_complete_encrypt(r);
        etsi_request_free(r);
}

static int etsi_request_new(Manager *m, HttpRequest *req, bool decrypt, const char *master_sae,
                            const char *slave_sae, size_t n_keys, EtsiRequest **ret) {
        _cleanup_(etsi_request_freep) EtsiRequest *r = NULL;

        r = calloc(1, sizeof(EtsiRequest));
        if (!r)
                return -ENOMEM;
        r->manager = m;
        r->req = req;
        r->decrypt = decrypt;
        r->master_sae = strdup(master_sae);
        r->slave_sae = strdup(slave_sae);
        r->keys = calloc(n_keys, sizeof(EtsiKey));
        if (!r->master_sae || !r->slave_sae || !r->keys)
                return -ENOMEM;
        r->n_keys = n_keys;
        for (size_t i = 0; i < n_keys; i++)
                r->keys[i] = (EtsiKey){.request = r, .result = -EAGAIN};
        *ret = TAKE_PTR(r);
        return 0;
}

/* Keeps the request until its hub operations finish. */
static void etsi_request_keep(EtsiRequest *r) {
        Manager *m = r->manager;

        r->next = m->etsi_requests;
        if (m->etsi_requests)
                m->etsi_requests->prev = r;
        m->etsi_requests = r;
}

static unsigned hubs_usable(const Manager *m) {
        unsigned n = 0;

        for (size_t i = 0; i < m->n_hubs; i++)
                if (peer_hub_usable(m->hubs[i]))
                        n++;
        return n;
}

static json_object *too_few_hubs_details(const Manager *m, unsigned required) {
        json_object *o = json_object_new_object(), *a = json_object_new_array();

        if (!o || !a) {
                json_object_put(o);
                json_object_put(a);
                return NULL;
        }
        (void) json_object_object_add(o, "nr_available_hubs", json_object_new_int((int) hubs_usable(m)));
        (void) json_object_object_add(o, "nr_required_shares", json_object_new_int((int) required));
        (void) json_object_array_add(a, o);
        return a;
}

/* Parameters */

typedef struct KeyRequest {
        uint64_t number;
        uint64_t size; /* bits */
} KeyRequest;

static int parse_number(Manager *m, HttpRequest *req, uint64_t v, bool syntax_ok, const char *raw) {
        if (!syntax_ok)
                return etsi_reply_bad(req, "number shall be a positive integer", "number",
                                      json_object_new_string(raw));
        if (v < 1 || v > m->config.max_keys_per_request) {
                json_object *d = details_one("number", json_object_new_string(raw));

                d = details_add(d, "max_key_per_request",
                                json_object_new_int((int) m->config.max_keys_per_request));
                return etsi_reply_error(req, 400, d, "number is out of range");
        }
        return 0;
}

static int parse_size_bits(Manager *m, HttpRequest *req, uint64_t v, int syntax, const char *raw) {
        json_object *d;

        if (syntax == -EINVAL)
                return etsi_reply_bad(req, "size shall be a positive integer", "size",
                                      json_object_new_string(raw));
        if (syntax == 0 && v % 8 != 0)
                return etsi_reply_bad(req, ETSI_MSG_SIZE_MULTIPLE_OF_8, "size", json_object_new_string(raw));
        if (syntax < 0 || v < CLIENT_MIN_KEY_SIZE_BITS || v > m->config.max_key_bits) {
                d = details_one("size", json_object_new_string(raw));
                d = details_add(d, "min_key_size", json_object_new_int(CLIENT_MIN_KEY_SIZE_BITS));
                d = details_add(d, "max_key_size", json_object_new_int((int) m->config.max_key_bits));
                return etsi_reply_error(req, 400, d, "size is out of range");
        }
        return 0;
}

/* Query parameters: strict decimal; returns 1 when the request was answered with an error. */
static int query_key_request(Manager *m, HttpRequest *req, KeyRequest *kr) {
        const char *v;
        int r;

        v = http_request_query(req, "number");
        if (v) {
                r = parse_size(v, strlen(v), UINT32_MAX, &kr->number);
                r = parse_number(m, req, kr->number, r == 0, v);
                if (r != 0 || http_request_replied(req))
                        return r < 0 ? r : 1;
        }
        v = http_request_query(req, "size");
        if (v) {
                r = parse_size(v, strlen(v), UINT32_MAX, &kr->size);
                r = parse_size_bits(m, req, kr->size, r, v);
                if (r != 0 || http_request_replied(req))
                        return r < 0 ? r : 1;
        }
        return 0;
}

static bool json_is_array_of(json_object *a, json_type t) {
        if (!json_object_is_type(a, json_type_array))
                return false;
        for (size_t i = 0; i < json_object_array_length(a); i++)
                if (!json_object_is_type(json_object_array_get_idx(a, i), t))
                        return false;
        return true;
}

/* Parses a body of at most max bytes as a JSON object; an empty body is NULL. Returns 1 after
 * answering 400. */
static int body_json(HttpRequest *req, json_object **ret) {
        _cleanup_json_ json_object *o = NULL;
        json_tokener *tok;
        const uint8_t *body;
        size_t size;

        body = http_request_body(req, &size);
        *ret = NULL;
        if (size == 0)
                return 0;
        tok = json_tokener_new();
        if (!tok)
                return -ENOMEM;
        o = json_tokener_parse_ex(tok, (const char *) body, (int) size);
        if (!o || json_tokener_get_error(tok) != json_tokener_success ||
            json_tokener_get_parse_end(tok) != size) {
                json_tokener_free(tok);
                return etsi_reply_bad(req, "request body is not valid JSON", NULL, NULL) < 0 ? -EIO : 1;
        }
        json_tokener_free(tok);
        if (!json_object_is_type(o, json_type_object))
                return etsi_reply_bad(req, "request body is not a JSON object", NULL, NULL) < 0 ? -EIO : 1;
        *ret = TAKE_PTR(o);
        return 0;
}

static int json_uint(json_object *v, uint64_t *ret, int *ret_syntax) {
        int64_t i;

        if (!json_object_is_type(v, json_type_int)) {
                *ret_syntax = -EINVAL;
                return 0;
        }
        errno = 0;
        i = json_object_get_int64(v);
        if (i < 0) {
                *ret_syntax = -EINVAL;
                return 0;
        }
        /* json-c clamps what does not fit; anything that large is out of range anyway. */
        *ret = (uint64_t) i;
        *ret_syntax = (i == INT64_MAX || i > UINT32_MAX) ? -ERANGE : 0;
        return 0;
}

/* The POST key request. Returns 1 when the request was answered with an error. */
static int body_key_request(Manager *m, HttpRequest *req, KeyRequest *kr) {
        _cleanup_json_ json_object *o = NULL;
        int r, syntax;

        r = body_json(req, &o);
        if (r != 0 || !o)
                return r;

        json_object_object_foreach (o, name, v) {
                const char *raw = json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN);

                if (streq(name, "number")) {
                        (void) json_uint(v, &kr->number, &syntax);
                        r = parse_number(m, req, kr->number, syntax == 0, raw);
                } else if (streq(name, "size")) {
                        (void) json_uint(v, &kr->size, &syntax);
                        r = parse_size_bits(m, req, kr->size, syntax, raw);
                } else if (streq(name, "additional_slave_SAE_IDs")) {
                        if (!json_is_array_of(v, json_type_string))
                                r = etsi_reply_bad(req,
                                                   "additional_slave_SAE_IDs shall be an array of strings",
                                                   NULL, NULL);
                        else if (json_object_array_length(v) > 0)
                                /* Multicast is not offered: status says max_SAE_ID_count 0. */
                                r = etsi_reply_bad(req, "additional_slave_SAE_IDs is not supported",
                                                   "max_SAE_ID_count", json_object_new_int(0));
                } else if (streq(name, "extension_mandatory")) {
                        if (!json_is_array_of(v, json_type_object))
                                r = etsi_reply_bad(req, "extension_mandatory shall be an array of objects",
                                                   NULL, NULL);
                        else if (json_object_array_length(v) > 0) {
                                json_object *unsupported = json_object_new_array();

                                for (size_t i = 0; unsupported && i < json_object_array_length(v); i++) {
                                        json_object_object_foreach (json_object_array_get_idx(v, i), ext,
                                                                    ev) {
                                                (void) ev;
                                                (void) json_object_array_add(unsupported,
                                                                             json_object_new_string(ext));
                                        }
                                }
                                r = etsi_reply_bad(req, ETSI_MSG_EXTENSION_MANDATORY,
                                                   "extension_mandatory_unsupported", unsupported);
                        }
                } else if (streq(name, "extension_optional")) {
                        /* The standard lets a KME ignore optional extensions and answer 200. */
                        if (!json_is_array_of(v, json_type_object))
                                r = etsi_reply_bad(req, "extension_optional shall be an array of objects",
                                                   NULL, NULL);
                } else
                        r = etsi_reply_bad(req, "unknown parameter in key request", "parameter",
                                           json_object_new_string(name));
                if (r < 0)
                        return r;
                if (http_request_replied(req))
                        return 1;
        }
        return 0;
}

/* The key IDs of a dec_keys request, from ?key_ID= or the POST body. Returns 1 when answered. */
static int parse_key_ids(Manager *m, HttpRequest *req, bool post, Uuid **ret, size_t *ret_n) {
        _cleanup_json_ json_object *o = NULL;
        _cleanup_free_ Uuid *ids = NULL;
        json_object *list = NULL;
        size_t n;
        int r;

        if (!post) {
                const char *v = http_request_query(req, "key_ID");

                if (!v)
                        return etsi_reply_bad(req, "key_ID is required", NULL, NULL) < 0 ? -EIO : 1;
                ids = calloc(1, sizeof(Uuid));
                if (!ids)
                        return -ENOMEM;
                if (uuid_from_string(v, &ids[0]) < 0)
                        return etsi_reply_bad(req, ETSI_MSG_KEYS_NOT_FOUND, "key_ID",
                                              json_object_new_string(v)) < 0
                                       ? -EIO
                                       : 1;
                *ret = TAKE_PTR(ids);
                *ret_n = 1;
                return 0;
        }

        r = body_json(req, &o);
        if (r != 0)
                return r;
        if (!o)
                return etsi_reply_bad(req, "key_IDs is required", NULL, NULL) < 0 ? -EIO : 1;
        json_object_object_foreach (o, name, v) {
                if (streq(name, "key_IDs"))
                        list = v;
                else if (streq(name, "key_IDs_extension")) {
                        if (!json_object_is_type(v, json_type_object))
                                return etsi_reply_bad(req, "key_IDs_extension shall be an object", NULL,
                                                      NULL) < 0
                                               ? -EIO
                                               : 1;
                } else
                        return etsi_reply_bad(req, "unknown parameter in key IDs request", "parameter",
                                              json_object_new_string(name)) < 0
                                       ? -EIO
                                       : 1;
        }
        if (!list || !json_is_array_of(list, json_type_object) || json_object_array_length(list) == 0)
                return etsi_reply_bad(req, "key_IDs shall be a non-empty array of objects", NULL, NULL) < 0
                               ? -EIO
                               : 1;
        n = json_object_array_length(list);
        if (n > m->config.max_keys_per_request)
                return etsi_reply_bad(req, "too many key_IDs", "max_key_per_request",
                                      json_object_new_int((int) m->config.max_keys_per_request)) < 0
                               ? -EIO
                               : 1;
        ids = calloc(n, sizeof(Uuid));
        if (!ids)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                json_object *item = json_object_array_get_idx(list, i), *id_v = NULL;

                json_object_object_foreach (item, iname, iv) {
                        if (streq(iname, "key_ID"))
                                id_v = iv;
                        else if (!streq(iname, "key_ID_extension"))
                                return etsi_reply_bad(req, "unknown parameter in key IDs request",
                                                      "parameter", json_object_new_string(iname)) < 0
                                               ? -EIO
                                               : 1;
                }
                if (!id_v || !json_object_is_type(id_v, json_type_string))
                        return etsi_reply_bad(req, "key_ID is required", NULL, NULL) < 0 ? -EIO : 1;
                if (uuid_from_string(json_object_get_string(id_v), &ids[i]) < 0)
                        return etsi_reply_bad(req, ETSI_MSG_KEYS_NOT_FOUND, "key_ID",
                                              json_object_new_string(json_object_get_string(id_v))) < 0
                                       ? -EIO
                                       : 1;
                for (size_t j = 0; j < i; j++)
                        if (uuid_equal(&ids[i], &ids[j]))
                                return etsi_reply_bad(req, "key_IDs lists a key twice", "key_ID",
                                                      json_object_new_string(json_object_get_string(id_v))) <
                                                       0
                                               ? -EIO
                                               : 1;
        }
        *ret = TAKE_PTR(ids);
        *ret_n = n;
        return 0;
}

/* Handlers. sae_id is the SAE named in the path; caller the authenticated SAE. */

typedef int (*EtsiHandler)(Manager *m, HttpRequest *req, const char *caller, const char *sae_id);

static bool etsi_sae_unknown(const Manager *m, const char *sae_id) {
        /* With a directory configured, SAEs outside it are refused; without one any SAE may be named,
         * and the hubs decide. */
        return m->config.directory.n_entries > 0 && !client_config_kme_of(&m->config, sae_id);
}

static int etsi_get_status(Manager *m, HttpRequest *req, const char *caller, const char *slave) {
        json_object *o, *ext;
        const char *target;
        size_t stored;

        if (etsi_sae_unknown(m, slave))
                return etsi_reply_bad(req, "slave_SAE_ID is not known to this KME", "slave_SAE_ID",
                                      json_object_new_string(slave));
        target = client_config_kme_of(&m->config, slave);
        stored = key_store_count(m->keys, caller, slave) + key_store_count(m->keys, slave, caller);

        o = json_object_new_object();
        ext = json_object_new_object();
        if (!o || !ext) {
                json_object_put(o);
                json_object_put(ext);
                return -ENOMEM;
        }
        (void) json_object_object_add(o, "source_KME_ID", json_object_new_string(m->config.name));
        (void) json_object_object_add(o, "target_KME_ID", json_object_new_string(strempty(target)));
        (void) json_object_object_add(o, "master_SAE_ID", json_object_new_string(caller));
        (void) json_object_object_add(o, "slave_SAE_ID", json_object_new_string(slave));
        (void) json_object_object_add(o, "key_size", json_object_new_int((int) m->config.default_key_bits));
        (void) json_object_object_add(o, "stored_key_count", json_object_new_int64((int64_t) stored));
        (void) json_object_object_add(o, "max_key_count",
                                      json_object_new_int((int) m->config.max_stored_keys));
        (void) json_object_object_add(o, "max_key_per_request",
                                      json_object_new_int((int) m->config.max_keys_per_request));
        (void) json_object_object_add(o, "max_key_size", json_object_new_int((int) m->config.max_key_bits));
        (void) json_object_object_add(o, "min_key_size", json_object_new_int(CLIENT_MIN_KEY_SIZE_BITS));
        (void) json_object_object_add(o, "max_SAE_ID_count", json_object_new_int(0));
        (void) json_object_object_add(ext, "hubs", json_object_new_int((int) m->n_hubs));
        (void) json_object_object_add(ext, "hubs_ready", json_object_new_int((int) hubs_usable(m)));
        (void) json_object_object_add(ext, "shares_required",
                                      json_object_new_int((int) m->config.shares_required));
        (void) json_object_object_add(o, "status_extension", ext);
        return http_request_reply_json(req, 200, o);
}

static int etsi_get_key(Manager *m, HttpRequest *req, const char *caller, const char *slave) {
        _cleanup_(etsi_request_freep) EtsiRequest *r = NULL;
        KeyRequest kr = {.number = 1, .size = m->config.default_key_bits};
        unsigned required = client_config_min_scatter(&m->config);
        int q;

        q = streq(http_request_method(req), "POST") ? body_key_request(m, req, &kr)
                                                    : query_key_request(m, req, &kr);
        if (q != 0)
                return q < 0 ? q : 0;
        if (etsi_sae_unknown(m, slave))
                return etsi_reply_bad(req, "slave_SAE_ID is not known to this KME", "slave_SAE_ID",
                                      json_object_new_string(slave));
        /* No PSRD is spent on a request that cannot succeed. */
        if (hubs_usable(m) < required)
                return etsi_reply_error(req, 503, too_few_hubs_details(m, required),
                                        DSKE_MSG_COULD_NOT_SCATTER);

        q = etsi_request_new(m, req, false, caller, slave, kr.number, &r);
        if (q < 0)
                return q;
        for (size_t i = 0; i < r->n_keys; i++) {
                q = key_op_scatter(m, caller, slave, kr.size / 8, on_key_op_done, &r->keys[i],
                                   &r->keys[i].op);
                if (q < 0)
                        return log_error_errno(q, "Failed to start scattering a key: %m");
                r->n_pending++;
        }
        etsi_request_keep(TAKE_PTR(r));
        return 0;
}

static int etsi_get_key_with_ids(Manager *m, HttpRequest *req, const char *caller, const char *master) {
        _cleanup_(etsi_request_freep) EtsiRequest *r = NULL;
        _cleanup_free_ Uuid *ids = NULL;
        size_t n_ids = 0;
        int q;

        q = parse_key_ids(m, req, streq(http_request_method(req), "POST"), &ids, &n_ids);
        if (q != 0)
                return q < 0 ? q : 0;

        q = etsi_request_new(m, req, true, master, caller, n_ids, &r);
        if (q < 0)
                return q;

        /* Keys recovered earlier for a request that failed as a whole are delivered from the
         * store, to their slave only. Shares held from a gather that fell short are used by the
         * next gather of their key. */
        for (size_t i = 0; i < n_ids; i++) {
                StoredKey *k = key_store_find(m->keys, &ids[i]);

                r->keys[i].key_id = ids[i];
                if (!k)
                        continue;
                if (!stored_key_matches(k, master, caller)) {
                        /* Put back what this request already took. */
                        for (size_t j = 0; j < i; j++)
                                if (r->keys[j].key &&
                                    key_store_add(m->keys, &r->keys[j].key_id, master, caller,
                                                  r->keys[j].key, r->keys[j].size, m->config.max_stored_keys,
                                                  m->config.stored_key_ttl_usec) >= 0)
                                        r->keys[j].key = NULL;
                        return etsi_reply_unauthorized(req);
                }
                if (stored_key_is_partial(k))
                        continue;
                r->keys[i].key = key_store_take(m->keys, k, &r->keys[i].size);
                r->keys[i].result = 0;
        }

        for (size_t i = 0; i < n_ids; i++) {
                if (r->keys[i].result == 0)
                        continue;
                if (hubs_usable(m) < m->config.shares_required) {
                        /* Nothing was asked of the hubs; keys taken from the store go back. */
                        for (size_t j = 0; j < n_ids; j++)
                                if (r->keys[j].key &&
                                    key_store_add(m->keys, &r->keys[j].key_id, master, caller,
                                                  r->keys[j].key, r->keys[j].size, m->config.max_stored_keys,
                                                  m->config.stored_key_ttl_usec) >= 0)
                                        r->keys[j].key = NULL;
                        return etsi_reply_error(req, 503, too_few_hubs_details(m, m->config.shares_required),
                                                DSKE_MSG_COULD_NOT_GATHER);
                }
                break;
        }

        for (size_t i = 0; i < n_ids; i++) {
                if (r->keys[i].result == 0)
                        continue;
                q = key_op_gather(m, master, caller, &ids[i], on_key_op_done, &r->keys[i], &r->keys[i].op);
                if (q < 0)
                        return log_error_errno(q, "Failed to start gathering a key: %m");
                r->n_pending++;
        }
        if (r->n_pending == 0) {
                etsi_request_complete(TAKE_PTR(r));
                return 0;
        }
        etsi_request_keep(TAKE_PTR(r));
        return 0;
}

/* The route table, one place for every version of the API. */

typedef struct EtsiRoute {
        const char *method;
        const char *operation;
        const char *const *query; /* allowed query parameters, NULL-terminated */
        bool body;                /* whether a body is allowed */
        EtsiHandler handler;
} EtsiRoute;

static const char *const query_none[] = {NULL};
static const char *const query_enc_keys[] = {"number", "size", NULL};
static const char *const query_dec_keys[] = {"key_ID", NULL};

static const EtsiRoute etsi_routes_v1[] = {
        {"GET", "status", query_none, false, etsi_get_status},
        {"GET", "enc_keys", query_enc_keys, false, etsi_get_key},
        {"POST", "enc_keys", query_none, true, etsi_get_key},
        {"GET", "dec_keys", query_dec_keys, false, etsi_get_key_with_ids},
        {"POST", "dec_keys", query_none, true, etsi_get_key_with_ids},
};

/* Splits ".../keys/{SAE_ID}/{operation}" after one of the two prefixes. */
static int etsi_split_path(const Manager *m, const char *path, const char **ret_rest) {
        const char *rest;

        rest = startswith(path, "/api/v1/keys/");
        if (!rest) {
                rest = startswith(path, "/client/");
                if (!rest)
                        return 0;
                rest = startswith(rest, m->config.name);
                if (!rest)
                        return 0;
                rest = startswith(rest, "/etsi/api/v1/keys/");
                if (!rest)
                        return 0;
        }
        *ret_rest = rest;
        return 1;
}

int client_etsi_dispatch(Manager *m, HttpRequest *req) {
        _cleanup_free_ char *sae_id = NULL;
        const char *rest, *slash, *operation, *caller, *bad = NULL;
        const EtsiRoute *route = NULL;
        bool operation_known = false;
        size_t body_size;
        int r;

        if (!etsi_split_path(m, http_request_path(req), &rest))
                return 0;

        slash = strchr(rest, '/');
        if (!slash)
                return etsi_reply_error(req, 404, NULL, "Not Found") < 0 ? -EIO : 1;
        operation = slash + 1;
        for (size_t i = 0; i < ELEMENTSOF(etsi_routes_v1); i++) {
                if (!streq(etsi_routes_v1[i].operation, operation))
                        continue;
                operation_known = true;
                if (streq(etsi_routes_v1[i].method, http_request_method(req)))
                        route = &etsi_routes_v1[i];
        }
        if (!operation_known)
                return etsi_reply_error(req, 404, NULL, "Not Found") < 0 ? -EIO : 1;
        if (!route) {
                (void) http_request_add_header(req, "Allow",
                                               streq(operation, "status") ? "GET" : "GET, POST");
                return etsi_reply_error(req, 405, NULL, "Method Not Allowed") < 0 ? -EIO : 1;
        }

        caller = manager_etsi_caller(m, req);
        if (!caller)
                return etsi_reply_unauthorized(req) < 0 ? -EIO : 1;

        sae_id = strndup(rest, (size_t) (slash - rest));
        if (!sae_id)
                return -ENOMEM;
        if (!name_is_valid(sae_id))
                return etsi_reply_bad(req, "SAE ID in the path is not valid", "SAE_ID",
                                      json_object_new_string(sae_id)) < 0
                               ? -EIO
                               : 1;

        r = http_request_check_query(req, route->query, &bad);
        if (r < 0)
                return etsi_reply_bad(req,
                                      r == -EEXIST ? "query parameter given more than once"
                                                   : "unknown query parameter",
                                      "parameter", json_object_new_string(bad)) < 0
                               ? -EIO
                               : 1;
        (void) http_request_body(req, &body_size);
        if (!route->body && body_size > 0)
                return etsi_reply_bad(req, "this request takes no body", NULL, NULL) < 0 ? -EIO : 1;

        r = route->handler(m, req, caller, sae_id);
        if (r < 0)
                return r;
        return 1;
}
