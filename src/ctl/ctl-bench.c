/* SPDX-License-Identifier: MIT */
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/resource.h>
#include <time.h>

#include "bench-conn.h"
#include "codec.h"
#include "ctl-bench.h"
#include "ctl-keys.h"
#include "ctl-util.h"
#include "json-util.h"
#include "log.h"
#include "secret.h"
#include "topology-run.h"

#define BENCH_CALL_TIMEOUT_USEC ((uint64_t) 10 * 1000000)
#define BENCH_SWEEP_USEC        ((uint64_t) 1000000)
#define BENCH_MAX_CONSECUTIVE   200u
#define BENCH_ERRORS_SHOWN      5u

static uint64_t now_usec(void) {
        struct timespec ts;

        (void) clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000ULL + (uint64_t) ts.tv_nsec / 1000;
}

typedef struct BenchKey {
        char *id;
        char *value; /* base64, wiped when freed */
} BenchKey;

typedef struct Bench Bench;

typedef struct Worker {
        Bench *bench;
        BenchConn *master, *slave; /* kept alive from pair to pair */
        uint64_t started;
        BenchKey *keys; /* as enc_keys returned them */
        size_t n_keys;
        char *dec_request;
        size_t dec_request_size;
} Worker;

struct Bench {
        Ctl *ctl;
        const BenchOptions *o;
        char *enc_request; /* the whole GET …/enc_keys request */
        size_t enc_request_size;
        char *dec_path; /* "…/dec_keys": GET with ?key_ID= for one key, POST for several */
        char *dec_host, *slave;
        json_tokener *tok;
        Worker *workers;
        unsigned active;
        bool stopping;
        uint64_t t_start, t_end;
        uint64_t started, completed, errors, mismatches, consecutive_errors;
        uint32_t *latencies; /* µs per completed pair */
        size_t n_latencies, cap_latencies;
        char *first_errors[BENCH_ERRORS_SHOWN];
        unsigned n_first_errors;
        bool gave_up;
        sd_event_source *deadline;
        sd_event_source *sweep; /* times out requests that hang */
};

static void worker_clear_keys(Worker *w) {
        for (size_t i = 0; i < w->n_keys; i++) {
                free(w->keys[i].id);
                if (w->keys[i].value)
                        erase_and_free(w->keys[i].value, strlen(w->keys[i].value));
        }
        free(w->keys);
        w->keys = NULL;
        w->n_keys = 0;
        free(w->dec_request);
        w->dec_request = NULL;
        w->dec_request_size = 0;
}

static void bench_record_error(Bench *b, const char *what, int error, const char *message, long status,
                               const char *body) {
        b->errors++;
        b->consecutive_errors++;

        if (b->n_first_errors < BENCH_ERRORS_SHOWN) {
                char *s = NULL;
                if (error < 0)
                        (void) asprintf(&s, "%s: %s", what, strna(message));
                else if (status != 0)
                        (void) asprintf(&s, "%s: status %ld: %.200s", what, status, strempty(body));
                else
                        (void) asprintf(&s, "%s: %s", what, strna(message));
                if (s)
                        b->first_errors[b->n_first_errors++] = s;
        }

        if (b->consecutive_errors >= BENCH_MAX_CONSECUTIVE && !b->stopping) {
                log_error("%u key pairs in a row failed; stopping the benchmark.", BENCH_MAX_CONSECUTIVE);
                b->gave_up = true;
                b->stopping = true;
        }
}

static int bench_record_latency(Bench *b, uint64_t usec) {
        if (b->n_latencies == b->cap_latencies) {
                size_t cap = MAX(b->cap_latencies * 2, (size_t) 4096);
                uint32_t *l = reallocarray(b->latencies, cap, sizeof(uint32_t));
                if (!l)
                        return -ENOMEM;
                b->latencies = l;
                b->cap_latencies = cap;
        }
        b->latencies[b->n_latencies++] = (uint32_t) MIN(usec, (uint64_t) UINT32_MAX);
        return 0;
}

/* Parses a key container; NULL when the body is not one. */
static json_object *bench_parse(Bench *b, const char *body, size_t body_size) {
        if (body_size > INT_MAX)
                return NULL;
        json_tokener_reset(b->tok);
        json_object *o = json_tokener_parse_ex(b->tok, body, (int) body_size);
        if (!o)
                return NULL;
        if (json_tokener_get_parse_end(b->tok) != body_size) {
                json_object_put(o);
                return NULL;
        }
        return o;
}

static void json_put_wiped(json_object *o) {
        json_wipe_keys(o);
        json_object_put(o);
}

/* The key objects of a container: an array as the standard says, or the reference's single object. */
static size_t container_keys(json_object *o, json_object ***ret_items, json_object **single) {
        json_object *keys;

        if (!json_object_object_get_ex(o, "keys", &keys))
                return 0;
        if (json_object_is_type(keys, json_type_object)) {
                *single = keys;
                *ret_items = single;
                return 1;
        }
        if (!json_object_is_type(keys, json_type_array))
                return 0;
        *ret_items = NULL;
        return json_object_array_length(keys);
}

static json_object *container_key_at(json_object *o, json_object **items, size_t i) {
        json_object *keys;

        if (items)
                return items[i];
        (void) json_object_object_get_ex(o, "keys", &keys);
        return json_object_array_get_idx(keys, i);
}

static void worker_next(Worker *w);

static void on_dec(BenchConn *c, int error, const char *message, unsigned status, const char *body,
                   size_t body_size, void *userdata) {
        Worker *w = userdata;
        Bench *b = w->bench;
        json_object *o = NULL, **items = NULL, *single = NULL;

        if (error < 0 || status != 200) {
                bench_record_error(b, "dec_keys", error, message, status, body);
                goto next;
        }

        o = bench_parse(b, body, body_size);
        size_t n = o ? container_keys(o, &items, &single) : 0;
        if (n != w->n_keys) {
                bench_record_error(b, "dec_keys", 0, "unexpected number of keys in the response", 0, NULL);
                goto next;
        }

        bool match = true;
        for (size_t i = 0; i < n && match; i++) {
                json_object *k = container_key_at(o, items, i);
                const char *id = json_get_string_member(k, "key_ID"),
                           *value = json_get_string_member(k, "key");
                bool found = false;

                for (size_t j = 0; id && value && j < w->n_keys; j++) {
                        if (!streq(w->keys[j].id, id))
                                continue;
                        size_t l = strlen(value);
                        found = strlen(w->keys[j].value) == l && secret_equal(w->keys[j].value, value, l);
                        break;
                }
                match = found;
        }
        if (!match) {
                b->mismatches++;
                bench_record_error(b, "dec_keys", 0, "the slave's key differs from the master's", 0, NULL);
                goto next;
        }

        b->completed++;
        b->consecutive_errors = 0;
        if (bench_record_latency(b, now_usec() - w->started) < 0) {
                log_oom();
                b->stopping = true;
        }

next:
        if (o)
                json_put_wiped(o);
        worker_next(w);
}

static int worker_store_keys(Worker *w, json_object *o) {
        json_object **items = NULL, *single = NULL;
        size_t n = container_keys(o, &items, &single);

        if (n == 0)
                return -EBADMSG;
        w->keys = calloc(n, sizeof(BenchKey));
        if (!w->keys)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                json_object *k = container_key_at(o, items, i);
                const char *id = json_get_string_member(k, "key_ID"),
                           *value = json_get_string_member(k, "key");
                if (!id || !value)
                        return -EBADMSG;
                w->keys[i].id = strdup(id);
                w->keys[i].value = secret_memdup(value, strlen(value) + 1);
                w->n_keys++;
                if (!w->keys[i].id || !w->keys[i].value)
                        return -ENOMEM;
        }
        return 0;
}

/* Key IDs go into a URL and JSON as they are: they must need no escaping. */
static bool key_id_is_plain(const char *id) {
        return !isempty(id) && strspn(id, "0123456789abcdefABCDEF-") == strlen(id);
}

static int worker_dec_request(Worker *w) {
        Bench *b = w->bench;
        _cleanup_free_ char *body = NULL;
        size_t size = 0;
        int n;

        for (size_t i = 0; i < w->n_keys; i++)
                if (!key_id_is_plain(w->keys[i].id))
                        return -EBADMSG;

        if (w->n_keys == 1) {
                n = asprintf(&w->dec_request,
                             "GET %s?key_ID=%s HTTP/1.1\r\nHost: %s\r\nAuthorization: %s\r\n\r\n",
                             b->dec_path, w->keys[0].id, b->dec_host, b->slave);
                if (n < 0)
                        return -ENOMEM;
                w->dec_request_size = (size_t) n;
                return 0;
        }

        FILE *f = open_memstream(&body, &size);
        if (!f)
                return -ENOMEM;
        fputs("{\"key_IDs\":[", f);
        for (size_t i = 0; i < w->n_keys; i++)
                fprintf(f, "%s{\"key_ID\":\"%s\"}", i > 0 ? "," : "", w->keys[i].id);
        fputs("]}", f);
        if (fclose(f) != 0)
                return -ENOMEM;
        n = asprintf(&w->dec_request,
                     "POST %s HTTP/1.1\r\nHost: %s\r\nAuthorization: %s\r\n"
                     "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
                     b->dec_path, b->dec_host, b->slave, size, body);
        if (n < 0)
                return -ENOMEM;
        w->dec_request_size = (size_t) n;
        return 0;
}

static void on_enc(BenchConn *c, int error, const char *message, unsigned status, const char *body,
                   size_t body_size, void *userdata) {
        Worker *w = userdata;
        Bench *b = w->bench;
        int r;

        if (error < 0 || status != 200) {
                bench_record_error(b, "enc_keys", error, message, status, body);
                worker_next(w);
                return;
        }

        json_object *o = bench_parse(b, body, body_size);
        r = o ? worker_store_keys(w, o) : -EBADMSG;
        if (o)
                json_put_wiped(o);
        if (r == 0)
                r = worker_dec_request(w);
        if (r == 0)
                r = bench_conn_request(w->slave, w->dec_request, w->dec_request_size, on_dec, w);
        if (r < 0) {
                bench_record_error(b, "enc_keys", r,
                                   r == -EBADMSG ? "the response is not a key container" : strerror(-r), 0,
                                   NULL);
                worker_next(w);
        }
}

static void worker_next(Worker *w) {
        Bench *b = w->bench;
        const BenchOptions *o = b->o;

        worker_clear_keys(w);

        if (b->stopping || (o->pairs > 0 && b->started >= o->pairs)) {
                if (--b->active == 0)
                        b->t_end = now_usec();
                return;
        }

        b->started++;
        w->started = now_usec();
        int r = bench_conn_request(w->master, b->enc_request, b->enc_request_size, on_enc, w);
        if (r < 0) {
                log_error_errno(r, "Failed to start a request: %m");
                b->stopping = true;
                if (--b->active == 0)
                        b->t_end = now_usec();
        }
}

static int on_deadline(sd_event_source *s, uint64_t usec, void *userdata) {
        Bench *b = userdata;

        b->stopping = true;
        return 0;
}

/* One timer for all requests: a request is given up a little after its deadline rather than on the
 * dot, which spares arming a timer per request. */
static int on_sweep(sd_event_source *s, uint64_t usec, void *userdata) {
        Bench *b = userdata;
        uint64_t now = now_usec(), since;

        for (unsigned i = 0; i < b->o->concurrency; i++) {
                Worker *w = b->workers + i;
                BenchConn *c = bench_conn_busy(w->master, &since)  ? w->master
                               : bench_conn_busy(w->slave, &since) ? w->slave
                                                                   : NULL;
                if (c && now - since >= BENCH_CALL_TIMEOUT_USEC)
                        bench_conn_abort(c, -ETIMEDOUT, "Timed out.");
        }
        (void) sd_event_source_set_time_relative(s, BENCH_SWEEP_USEC);
        (void) sd_event_source_set_enabled(s, SD_EVENT_ON);
        return 0;
}

/* PSRD accounting from the clients' management status: every block of every pool, by UUID. Bytes
 * spent between two snapshots are, per block, its unused bytes before (its size if it arrived in
 * between) minus its unused bytes after (none if it was used up and deleted). */
typedef struct BlockUse {
        char *id; /* "HUB/POOL/UUID" */
        uint64_t size, unused;
} BlockUse;

typedef struct PsrdSnapshot {
        BlockUse *blocks;
        size_t n_blocks;
        /* The clients' own running totals ("psrd": {"bytes_used", "bytes_given_back"}), when every
         * client reports them: exact, whatever happened to blocks in between. */
        bool have_counters;
        uint64_t used, given_back;
} PsrdSnapshot;

static void psrd_snapshot_done(PsrdSnapshot *s) {
        for (size_t i = 0; i < s->n_blocks; i++)
                free(s->blocks[i].id);
        free(s->blocks);
        *s = (PsrdSnapshot){};
}

static uint64_t json_u64(json_object *o, const char *key) {
        json_object *v;

        if (!o || !json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_int))
                return 0;
        int64_t i = json_object_get_int64(v);
        return i > 0 ? (uint64_t) i : 0;
}

static int psrd_snapshot_add(PsrdSnapshot *s, const char *kme, size_t hub, const char *pool_name,
                             json_object *pool) {
        json_object *blocks;

        if (!pool || !json_object_object_get_ex(pool, "blocks", &blocks) ||
            !json_object_is_type(blocks, json_type_array))
                return 0;

        for (size_t i = 0; i < json_object_array_length(blocks); i++) {
                json_object *bl = json_object_array_get_idx(blocks, i);
                const char *uuid = json_get_string_member(bl, "uuid");
                BlockUse *n = reallocarray(s->blocks, s->n_blocks + 1, sizeof(BlockUse));
                if (!n)
                        return -ENOMEM;
                s->blocks = n;

                uint64_t used = json_u64(bl, "nr_used_bytes"), unused = json_u64(bl, "nr_unused_bytes");
                BlockUse *u = s->blocks + s->n_blocks;
                *u = (BlockUse){
                        .size = json_u64(bl, "size") ?: used + unused,
                        .unused = unused,
                };
                /* Without a UUID, the block's place in its pool names it. */
                if (uuid ? asprintf(&u->id, "%s/%zu/%s/%s", kme, hub, pool_name, uuid) < 0
                         : asprintf(&u->id, "%s/%zu/%s/#%zu", kme, hub, pool_name, i) < 0)
                        return -ENOMEM;
                s->n_blocks++;
        }
        return 0;
}

static int psrd_snapshot_take(Ctl *ctl, const Topology *t, TopologyNode *const *kmes, size_t n_kmes,
                              PsrdSnapshot *ret) {
        _cleanup_free_ CtlCall *calls = calloc(n_kmes, sizeof(CtlCall));
        PsrdSnapshot s = {};
        int r = 0;

        if (!calls)
                return -ENOMEM;
        for (size_t i = 0; i < n_kmes; i++) {
                calls[i].timeout_ms = 5000;
                if (node_mgmt_url(t, kmes[i], "status", &calls[i].url) < 0) {
                        r = -ENOMEM;
                        goto finish;
                }
        }
        r = ctl_run_calls(ctl, calls, n_kmes);
        if (r < 0)
                goto finish;

        s.have_counters = true;
        for (size_t i = 0; i < n_kmes && r >= 0; i++) {
                _cleanup_json_ json_object *o = ctl_call_json(calls + i);
                json_object *hubs;

                if (calls[i].status != 200 || !o || !json_object_object_get_ex(o, "peer_hubs", &hubs) ||
                    !json_object_is_type(hubs, json_type_array)) {
                        r = -EBADMSG;
                        break;
                }
                json_object *psrd, *v;
                if (json_object_object_get_ex(o, "psrd", &psrd) &&
                    json_object_object_get_ex(psrd, "bytes_used", &v) &&
                    json_object_is_type(v, json_type_int)) {
                        s.used += json_u64(psrd, "bytes_used");
                        s.given_back += json_u64(psrd, "bytes_given_back");
                } else
                        s.have_counters = false;

                for (size_t h = 0; h < json_object_array_length(hubs) && r >= 0; h++) {
                        json_object *hub = json_object_array_get_idx(hubs, h), *pool;
                        if (json_object_object_get_ex(hub, "local_pool", &pool))
                                r = psrd_snapshot_add(&s, kmes[i]->name, h, "local", pool);
                        if (r >= 0 && json_object_object_get_ex(hub, "peer_pool", &pool))
                                r = psrd_snapshot_add(&s, kmes[i]->name, h, "peer", pool);
                }
        }

finish:
        for (size_t i = 0; i < n_kmes; i++)
                ctl_call_done(calls + i);
        if (r < 0) {
                psrd_snapshot_done(&s);
                return r;
        }
        *ret = s;
        return 0;
}

static uint64_t psrd_spent(const PsrdSnapshot *before, const PsrdSnapshot *after) {
        uint64_t spent = 0;

        if (before->have_counters && after->have_counters) {
                uint64_t b = before->used - MIN(before->used, before->given_back),
                         a = after->used - MIN(after->used, after->given_back);
                return a > b ? a - b : 0;
        }

        for (size_t i = 0; i < before->n_blocks; i++) {
                const BlockUse *b = before->blocks + i;
                uint64_t left = 0;
                for (size_t j = 0; j < after->n_blocks; j++)
                        if (streq(after->blocks[j].id, b->id)) {
                                left = after->blocks[j].unused;
                                break;
                        }
                spent += b->unused > left ? b->unused - left : 0;
        }
        for (size_t j = 0; j < after->n_blocks; j++) {
                const BlockUse *a = after->blocks + j;
                bool old = false;
                for (size_t i = 0; i < before->n_blocks && !old; i++)
                        old = streq(before->blocks[i].id, a->id);
                if (!old)
                        spent += a->size > a->unused ? a->size - a->unused : 0;
        }
        return spent;
}

/* CPU time used so far by the topology's hubs, its clients and this process. The difference over
 * a run, divided by the pairs, shows where the work goes even on a machine busy with other things,
 * where throughput and latency alone say little. */
typedef struct CpuSnapshot {
        uint64_t hubs, clients, self; /* µs */
        bool valid;
} CpuSnapshot;

static void cpu_snapshot_take(const TopologyState *state, CpuSnapshot *ret) {
        CpuSnapshot c = {.valid = state};
        struct rusage ru;

        for (size_t i = 0; state && i < state->n_nodes; i++) {
                const NodeState *n = state->nodes + i;
                uint64_t usec;
                if (!node_state_is_running(n) || process_cpu_usec(n->pid, &usec) < 0) {
                        c.valid = false;
                        break;
                }
                *(n->type == NODE_HUB ? &c.hubs : &c.clients) += usec;
        }
        if (getrusage(RUSAGE_SELF, &ru) < 0)
                c.valid = false;
        else
                c.self = (uint64_t) ru.ru_utime.tv_sec * 1000000 + (uint64_t) ru.ru_utime.tv_usec +
                         (uint64_t) ru.ru_stime.tv_sec * 1000000 + (uint64_t) ru.ru_stime.tv_usec;
        *ret = c;
}

static int compare_u32(const void *a, const void *b) {
        uint32_t x = *(const uint32_t *) a, y = *(const uint32_t *) b;
        return x < y ? -1 : x > y;
}

static double percentile_ms(const uint32_t *sorted, size_t n, double p) {
        if (n == 0)
                return 0;
        size_t rank = (size_t) ceil(p / 100.0 * (double) n);
        return sorted[rank > 0 ? rank - 1 : 0] / 1000.0;
}

static void bench_done(Bench *b) {
        for (unsigned i = 0; b->workers && i < b->o->concurrency; i++) {
                bench_conn_free(b->workers[i].master);
                bench_conn_free(b->workers[i].slave);
                worker_clear_keys(b->workers + i);
        }
        free(b->workers);
        free(b->enc_request);
        free(b->dec_path);
        free(b->dec_host);
        free(b->slave);
        free(b->latencies);
        for (unsigned i = 0; i < b->n_first_errors; i++)
                free(b->first_errors[i]);
        if (b->tok)
                json_tokener_free(b->tok);
        sd_event_source_disable_unref(b->deadline);
        sd_event_source_disable_unref(b->sweep);
}

/* "http://HOST:PORT/PATH" into "HOST:PORT" and "/PATH". */
static int url_split(const char *url, char **ret_host, char **ret_path) {
        const char *h = startswith(url, "http://"), *p;
        _cleanup_free_ char *host = NULL, *path = NULL;

        if (!h || !(p = strchr(h, '/')))
                return -EINVAL;
        host = strndup(h, (size_t) (p - h));
        path = strdup(p);
        if (!host || !path)
                return -ENOMEM;
        *ret_host = TAKE_PTR(host);
        *ret_path = TAKE_PTR(path);
        return 0;
}

static int strextend_printf(char **s, const char *format, ...) _printf_(2, 3);
static int strextend_printf(char **s, const char *format, ...) {
        _cleanup_free_ char *tail = NULL;
        va_list ap;
        char *n;
        int k;

        va_start(ap, format);
        k = vasprintf(&tail, format, ap);
        va_end(ap);
        if (k < 0)
                return -ENOMEM;
        if (asprintf(&n, "%s%s", *s, tail) < 0)
                return -ENOMEM;
        free(*s);
        *s = n;
        return 0;
}

/* The first SAE of the first client with one, skipping the client that serves `other`. */
static const char *pick_sae(const Topology *t, const char *other) {
        TopologyNode *skip = other ? topology_find_sae(t, other) : NULL;

        for (size_t i = t->n_hubs; i < t->n_nodes; i++)
                if (t->nodes + i != skip && t->nodes[i].encryptors && t->nodes[i].encryptors[0])
                        return t->nodes[i].encryptors[0];
        return NULL;
}

static int bench_print(Bench *b, const Topology *t, const char *master, const char *slave,
                       const TopologyNode *master_kme, const TopologyNode *slave_kme, bool have_psrd,
                       uint64_t psrd, const CpuSnapshot *cpu0, const CpuSnapshot *cpu1) {
        const BenchOptions *o = b->o;
        double secs = (double) (b->t_end - b->t_start) / 1e6;
        uint64_t keys = b->completed * o->number;
        double rate = secs > 0 ? (double) keys / secs : 0;
        double per_key = keys > 0 ? (double) psrd / (double) keys : 0;
        unsigned s = o->size_bits / 8;
        uint64_t expected = (uint64_t) t->n_hubs * (2 * s + 128);

        if (b->n_latencies > 0)
                qsort(b->latencies, b->n_latencies, sizeof(uint32_t), compare_u32);
        bool have_cpu = cpu0->valid && cpu1->valid && keys > 0;
        double cpu_hubs = have_cpu ? (double) (cpu1->hubs - cpu0->hubs) / (double) keys : 0,
               cpu_clients = have_cpu ? (double) (cpu1->clients - cpu0->clients) / (double) keys : 0,
               cpu_self = have_cpu ? (double) (cpu1->self - cpu0->self) / (double) keys : 0;
        double p50 = percentile_ms(b->latencies, b->n_latencies, 50),
               p90 = percentile_ms(b->latencies, b->n_latencies, 90),
               p99 = percentile_ms(b->latencies, b->n_latencies, 99),
               max = percentile_ms(b->latencies, b->n_latencies, 100);

        if (o->json) {
                _cleanup_json_ json_object *j = json_object_new_object(), *lat = json_object_new_object();
                if (!j || !lat)
                        return log_oom();
                json_object_object_add(j, "master_SAE_ID", json_object_new_string(master));
                json_object_object_add(j, "master_KME_ID", json_object_new_string(master_kme->name));
                json_object_object_add(j, "slave_SAE_ID", json_object_new_string(slave));
                json_object_object_add(j, "slave_KME_ID", json_object_new_string(slave_kme->name));
                json_object_object_add(j, "hubs", json_object_new_int((int) t->n_hubs));
                json_object_object_add(j, "key_size", json_object_new_int((int) o->size_bits));
                json_object_object_add(j, "keys_per_request", json_object_new_int((int) o->number));
                json_object_object_add(j, "concurrency", json_object_new_int((int) o->concurrency));
                json_object_object_add(j, "seconds", json_object_new_double(secs));
                json_object_object_add(j, "key_pairs", json_object_new_int64((int64_t) keys));
                json_object_object_add(j, "request_pairs", json_object_new_int64((int64_t) b->completed));
                json_object_object_add(j, "errors", json_object_new_int64((int64_t) b->errors));
                json_object_object_add(j, "mismatches", json_object_new_int64((int64_t) b->mismatches));
                json_object_object_add(j, "key_pairs_per_second", json_object_new_double(rate));
                json_object_object_add(lat, "p50", json_object_new_double(p50));
                json_object_object_add(lat, "p90", json_object_new_double(p90));
                json_object_object_add(lat, "p99", json_object_new_double(p99));
                json_object_object_add(lat, "max", json_object_new_double(max));
                json_object_object_add(j, "latency_ms", json_object_get(lat));
                json_object_object_add(j, "psrd_bytes_per_key",
                                       have_psrd ? json_object_new_double(per_key) : NULL);
                json_object_object_add(j, "psrd_bytes_per_key_expected",
                                       json_object_new_int64((int64_t) expected));
                if (have_cpu) {
                        _cleanup_json_ json_object *cpu = json_object_new_object();
                        if (!cpu)
                                return log_oom();
                        json_object_object_add(cpu, "hubs", json_object_new_double(cpu_hubs));
                        json_object_object_add(cpu, "clients", json_object_new_double(cpu_clients));
                        json_object_object_add(cpu, "benchmark", json_object_new_double(cpu_self));
                        json_object_object_add(j, "cpu_usec_per_key", json_object_get(cpu));
                }
                /* Microseconds are the resolution measured: no more digits than that. */
                (void) json_c_set_serialization_double_format("%.3f", JSON_C_OPTION_GLOBAL);
                json_print(j);
                return 0;
        }

        printf("Benchmark: %s (client %s) -> %s (client %s), %zu hubs, %u-bit keys, %u key%s per request,\n"
               "           %u pairs in flight, %.2f s\n",
               master, master_kme->name, slave, slave_kme->name, t->n_hubs, o->size_bits, o->number,
               o->number == 1 ? "" : "s", o->concurrency, secs);
        printf("Key pairs completed:  %" PRIu64 "%s\n", keys, b->gave_up ? " (stopped early)" : "");
        printf("Errors:               %" PRIu64 " (of which key mismatches: %" PRIu64 ")\n", b->errors,
               b->mismatches);
        printf("Key pairs per second: %.1f\n", rate);
        printf("Latency of a pair (enc_keys, then dec_keys), ms: p50 %.2f  p90 %.2f  p99 %.2f  max %.2f\n",
               p50, p90, p99, max);
        if (have_psrd)
                printf("PSRD used per key:    %.1f bytes\n", per_key);
        else
                printf("PSRD used per key:    unknown (the clients' management status was not available)\n");
        printf("  PSRD is counted on the two clients: the bytes that left their PSRD pools (client-owned\n"
               "  and hub-owned, for every hub) during the run, divided by the keys delivered. Each byte\n"
               "  is also spent once in the hub's copy of the same pool. For one key of S bytes, each hub\n"
               "  link costs S (one-time pad of the share) + 2 x 32 (MAC keys of request and response) on\n"
               "  the master's side, and the same on the slave's: %zu x (2 x %u + 128) = %" PRIu64
               " bytes here.\n",
               t->n_hubs, s, expected);
        if (have_cpu)
                printf("CPU per key:          %.0f us (hubs %.0f, clients %.0f, benchmark %.0f)\n",
                       cpu_hubs + cpu_clients + cpu_self, cpu_hubs, cpu_clients, cpu_self);
        for (unsigned i = 0; i < b->n_first_errors; i++)
                printf("%s %s\n", i == 0 ? "First errors:" : "             ", b->first_errors[i]);
        return 0;
}

int bench_run(Ctl *ctl, const char *path, const BenchOptions *o) {
        _cleanup_(topology_freep) Topology *t = NULL;
        _cleanup_free_ char *master_keys = NULL, *slave_keys = NULL, *enc_path = NULL, *master_host = NULL;
        _cleanup_(topology_state_freep) TopologyState *state = NULL;
        PsrdSnapshot before = {}, after = {};
        CpuSnapshot cpu0 = {}, cpu1 = {};
        bool brought_up = false, have_psrd = false;
        Bench b = {.ctl = ctl, .o = o};
        int r, n;

        if (o->up) {
                TopologyRunOptions run = o->run;
                run.quiet = o->json;
                r = topology_up(ctl, path, &run);
                if (r < 0)
                        return r;
                brought_up = true;
        }

        r = topology_open(path, &o->run, &t, &state);
        if (r < 0)
                goto finish;

        const char *master = o->master ?: pick_sae(t, o->slave);
        const char *slave = o->slave ?: pick_sae(t, master);
        if (!master || !slave) {
                r = log_error_errno(
                        -ENOENT, "%s needs two clients with encryptors, or --master and --slave.", t->path);
                goto finish;
        }
        TopologyNode *master_kme = topology_find_sae(t, master), *slave_kme = topology_find_sae(t, slave);
        if (!master_kme || !slave_kme) {
                r = log_error_errno(-ENOENT, "No client of %s serves SAE %s.", t->path,
                                    master_kme ? slave : master);
                goto finish;
        }

        if (!name_is_valid(master) || !name_is_valid(slave)) {
                r = log_error_errno(-EINVAL, "Invalid SAE name.");
                goto finish;
        }
        if (etsi_keys_url(t, master_kme, &master_keys) < 0 || etsi_keys_url(t, slave_kme, &slave_keys) < 0 ||
            url_split(master_keys, &master_host, &enc_path) < 0 ||
            url_split(slave_keys, &b.dec_host, &b.dec_path) < 0 || !(b.slave = strdup(slave)) ||
            strextend_printf(&enc_path, "/%s/enc_keys?size=%u&number=%u", slave, o->size_bits, o->number) <
                    0 ||
            strextend_printf(&b.dec_path, "/%s/dec_keys", master) < 0 ||
            (n = asprintf(&b.enc_request, "GET %s HTTP/1.1\r\nHost: %s\r\nAuthorization: %s\r\n\r\n",
                          enc_path, master_host, master)) < 0) {
                r = log_oom();
                goto finish;
        }
        b.enc_request_size = (size_t) n;

        TopologyNode *kmes[2] = {master_kme, slave_kme};
        size_t n_kmes = master_kme == slave_kme ? 1 : 2;
        have_psrd = psrd_snapshot_take(ctl, t, kmes, n_kmes, &before) >= 0;

        b.tok = json_tokener_new();
        b.workers = calloc(o->concurrency, sizeof(Worker));
        if (!b.tok || !b.workers) {
                r = log_oom();
                goto finish;
        }
        for (unsigned i = 0; i < o->concurrency; i++) {
                r = bench_conn_new(ctl->event, t->address, master_kme->port, &b.workers[i].master);
                if (r >= 0)
                        r = bench_conn_new(ctl->event, t->address, slave_kme->port, &b.workers[i].slave);
                if (r < 0) {
                        log_error_errno(r, "Failed to set up a connection: %m");
                        goto finish;
                }
        }
        r = sd_event_add_time_relative(ctl->event, &b.sweep, CLOCK_MONOTONIC, BENCH_SWEEP_USEC, 0, on_sweep,
                                       &b);
        if (r < 0) {
                log_error_errno(r, "Failed to set up the timer: %m");
                goto finish;
        }

        if (!o->json) {
                if (o->pairs > 0)
                        printf("Running %" PRIu64 " key requests, %u in flight...\n", o->pairs,
                               o->concurrency);
                else
                        printf("Running for %.1f s, %u key pairs in flight...\n",
                               (double) o->duration_usec / 1e6, o->concurrency);
                (void) fflush(stdout);
        }

        if (o->pairs == 0) {
                r = sd_event_add_time_relative(ctl->event, &b.deadline, CLOCK_MONOTONIC, o->duration_usec, 0,
                                               on_deadline, &b);
                if (r < 0) {
                        log_error_errno(r, "Failed to set up the timer: %m");
                        goto finish;
                }
        }

        cpu_snapshot_take(state, &cpu0);
        b.t_start = now_usec();
        b.active = o->concurrency;
        for (unsigned i = 0; i < o->concurrency; i++) {
                b.workers[i].bench = &b;
                worker_next(b.workers + i);
        }
        while (b.active > 0) {
                r = sd_event_run(ctl->event, UINT64_MAX);
                if (r < 0) {
                        log_error_errno(r, "Event loop failed: %m");
                        goto finish;
                }
        }

        cpu_snapshot_take(state, &cpu1);
        if (have_psrd)
                have_psrd = psrd_snapshot_take(ctl, t, kmes, n_kmes, &after) >= 0;

        r = bench_print(&b, t, master, slave, master_kme, slave_kme, have_psrd,
                        have_psrd ? psrd_spent(&before, &after) : 0, &cpu0, &cpu1);
        if (r >= 0)
                r = b.errors > 0 || b.completed == 0 ? 1 : 0;

finish:
        bench_done(&b);
        psrd_snapshot_done(&before);
        psrd_snapshot_done(&after);
        if (brought_up) {
                TopologyRunOptions run = o->run;
                run.quiet = o->json;
                int q = topology_down(path, &run);
                if (q < 0 && r >= 0)
                        r = q;
        }
        return r;
}
