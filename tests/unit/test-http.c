/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include "http-client.h"
#include "http-server.h"
#include "json-util.h"
#include "log.h"

#define MAX_BODY     1024
#define LATER_USEC   (50 * 1000)
#define MAX_HELD     8
#define N_CONCURRENT 200

typedef struct Fixture {
        sd_event *event;
        HttpServer *server;
        HttpClient *client;
        char base[64];
        HttpRequest *held[MAX_HELD]; /* requests kept by /hang */
        size_t n_held;
} Fixture;

typedef struct Result {
        bool done;
        int error;
        char *message;
        long status;
        char *body;
        size_t body_size;
        char *content_type;
        char *reply_header;
        uint64_t usec;
} Result;

static uint64_t now_usec(void) {
        struct timespec ts;

        assert_int_equal(clock_gettime(CLOCK_MONOTONIC, &ts), 0);
        return (uint64_t) ts.tv_sec * 1000000 + (uint64_t) ts.tv_nsec / 1000;
}

static void result_done(Result *r) {
        free(r->message);
        free(r->body);
        free(r->content_type);
        free(r->reply_header);
        *r = (Result){};
}

static char *strdup_or_null(const char *s) {
        return s ? strdup(s) : NULL;
}

static void on_done(HttpCall *call, int error, const char *message, const HttpResponse *response,
                    void *userdata) {
        Result *r = userdata;

        assert_false(r->done);
        r->done = true;
        r->error = error;
        r->message = strdup_or_null(message);
        r->status = response->status;
        assert_non_null(response->body);
        assert_int_equal(response->body[response->body_size], 0);
        r->body = malloc(response->body_size + 1);
        assert_non_null(r->body);
        memcpy(r->body, response->body, response->body_size + 1);
        r->body_size = response->body_size;
        r->content_type = strdup_or_null(http_call_response_header(call, "content-TYPE"));
        r->reply_header = strdup_or_null(http_call_response_header(call, "X-Reply"));
        r->usec = now_usec();
}

static int on_reply_later(sd_event_source *source, uint64_t usec, void *userdata) {
        HttpRequest *req = userdata;
        const char *q = http_request_raw_query(req);

        assert_int_equal(http_request_reply(req, 200, "text/plain", q, strlen(q)), 0);
        return 0;
}

static int on_release_later(sd_event_source *source, uint64_t usec, void *userdata) {
        http_request_release(userdata);
        return 0;
}

static int reply_echo(HttpRequest *req) {
        _cleanup_json_ json_object *o = json_object_new_object();
        const char *v;
        size_t size;
        const uint8_t *body = http_request_body(req, &size);

        assert_non_null(o);
        json_object_object_add(o, "method", json_object_new_string(http_request_method(req)));
        json_object_object_add(o, "path", json_object_new_string(http_request_path(req)));
        json_object_object_add(o, "raw_query", json_object_new_string(http_request_raw_query(req)));
        v = http_request_query(req, "a");
        json_object_object_add(o, "a", v ? json_object_new_string(v) : NULL);
        v = http_request_query(req, "b");
        json_object_object_add(o, "b", v ? json_object_new_string(v) : NULL);
        v = http_request_query(req, "flag");
        json_object_object_add(o, "flag", v ? json_object_new_string(v) : NULL);
        v = http_request_header(req, "x-test");
        json_object_object_add(o, "x_test", v ? json_object_new_string(v) : NULL);
        v = http_request_header(req, "Content-Type");
        json_object_object_add(o, "content_type", v ? json_object_new_string(v) : NULL);
        v = http_request_header(req, "X-Other");
        json_object_object_add(o, "x_other", v ? json_object_new_string(v) : NULL);
        v = http_request_header(req, "Expect");
        json_object_object_add(o, "expect", v ? json_object_new_string(v) : NULL);
        json_object_object_add(o, "body", json_object_new_string_len((const char *) body, (int) size));
        json_object_object_add(o, "loopback", json_object_new_boolean(http_request_from_loopback(req)));
        assert_int_equal(http_request_add_header(req, "X-Reply", "yes"), 0);
        return http_request_reply_json(req, 200, TAKE_PTR(o));
}

static int handler(HttpRequest *req, void *userdata) {
        Fixture *f = userdata;
        const char *path = http_request_path(req);

        assert_false(http_request_replied(req));

        if (startswith(path, "/echo"))
                return reply_echo(req);
        if (streq(path, "/raw")) {
                size_t size;
                const uint8_t *body = http_request_body(req, &size);
                return http_request_reply(req, 200, "application/octet-stream", body, size);
        }
        if (streq(path, "/later")) {
                assert_int_equal(sd_event_add_time_relative(f->event, NULL, CLOCK_MONOTONIC, LATER_USEC,
                                                            1000, on_reply_later, req),
                                 0);
                return 0;
        }
        if (streq(path, "/release")) {
                assert_int_equal(sd_event_add_time_relative(f->event, NULL, CLOCK_MONOTONIC, 10000, 1000,
                                                            on_release_later, req),
                                 0);
                return 0;
        }
        if (streq(path, "/hang")) {
                assert_true(f->n_held < MAX_HELD);
                f->held[f->n_held++] = req;
                return 0;
        }
        if (streq(path, "/fail"))
                return -EIO;
        if (streq(path, "/null"))
                return http_request_reply_json(req, 200, NULL);
        if (streq(path, "/error")) {
                json_object *d = json_object_new_object();
                json_object_object_add(d, "key_id", json_object_new_string("a/b"));
                return http_request_reply_error(req, 400, d, "Bad thing %d.", 7);
        }
        if (streq(path, "/check")) {
                static const char *const allowed[] = {"a", "b", NULL};
                const char *unknown = NULL;
                int k = http_request_check_query(req, allowed, &unknown);
                if (k < 0)
                        return http_request_reply_error(req, 400, json_object_new_string(unknown),
                                                        k == -EEXIST ? "Twice." : "Unknown parameter.");
                return http_request_reply(req, 204, NULL, NULL, 0);
        }
        if (streq(path, "/twice")) {
                assert_int_equal(http_request_reply(req, 200, NULL, NULL, 0), 0);
                assert_true(http_request_replied(req));
                assert_int_equal(http_request_reply(req, 200, NULL, NULL, 0), -EBUSY);
                assert_int_equal(http_request_add_header(req, "X-Late", "1"), -EBUSY);
                return 0;
        }
        if (streq(path, "/bytes")) {
                size_t n = strtoul(http_request_query(req, "n"), NULL, 10);
                _cleanup_free_ char *b = malloc(n);
                assert_non_null(b);
                for (size_t i = 0; i < n; i++)
                        b[i] = (char) ('a' + i % 23);
                return http_request_reply(req, 200, "text/plain", b, n);
        }
        if (streq(path, "/big")) {
                size_t n = 5 * 1024 * 1024;
                _cleanup_free_ char *b = malloc(n);
                assert_non_null(b);
                memset(b, 'x', n);
                return http_request_reply(req, 200, "text/plain", b, n);
        }
        return http_request_reply_error(req, 404, NULL, "Not found.");
}

static int setup_server(void **state, const char *address) {
        Fixture *f = calloc(1, sizeof(Fixture));
        HttpServerConfig config = {
                .address = address,
                .listen_fd = -1,
                .max_body_size = MAX_BODY,
        };
        int k;

        assert_non_null(f);
        assert_int_equal(sd_event_new(&f->event), 0);
        k = http_server_new(f->event, &config, handler, f, &f->server);
        if (k < 0) {
                sd_event_unref(f->event);
                free(f);
                return k;
        }
        assert_int_equal(http_client_new(f->event, &f->client), 0);
        if (strchr(address, ':'))
                snprintf(f->base, sizeof(f->base), "http://[%s]:%u", address,
                         http_server_get_port(f->server));
        else
                snprintf(f->base, sizeof(f->base), "http://%s:%u", address, http_server_get_port(f->server));
        *state = f;
        return 0;
}

static int setup(void **state) {
        return setup_server(state, "127.0.0.1");
}

static int teardown(void **state) {
        Fixture *f = *state;

        for (size_t i = 0; i < f->n_held; i++)
                http_request_release(f->held[i]);
        http_client_free(f->client);
        http_server_free(f->server);
        sd_event_unref(f->event);
        free(f);
        return 0;
}

/* Runs the loop until *done or the deadline; returns whether *done. */
static bool run_until(Fixture *f, const bool *done, uint64_t timeout_usec) {
        uint64_t deadline = now_usec() + timeout_usec;

        while (!*done && now_usec() < deadline)
                assert_true(sd_event_run(f->event, 10 * 1000) >= 0);
        return *done;
}

/* Runs until the server holds a request, for at most 10 s. */
static void run_until_held(Fixture *f) {
        uint64_t deadline = now_usec() + 10 * 1000000;

        while (f->n_held == 0) {
                assert_true(now_usec() < deadline);
                assert_true(sd_event_run(f->event, 10 * 1000) >= 0);
        }
}

static void run_for(Fixture *f, uint64_t usec) {
        bool never = false;
        (void) run_until(f, &never, usec);
}

/* Makes the call and runs the loop until it is done, for at most 10 s. */
static void call_spec(Fixture *f, const HttpCallSpec *spec, Result *r) {
        assert_int_equal(http_client_call(f->client, spec, on_done, r, NULL), 0);
        /* Never called back from within http_client_call(). */
        assert_false(r->done);
        assert_true(run_until(f, &r->done, 10 * 1000000));
}

static void call(Fixture *f, const char *method, const char *path, const char *const *headers,
                 const void *body, size_t size, unsigned timeout_ms, Result *r) {
        char url[256];
        HttpCallSpec spec = {
                .method = method,
                .url = url,
                .headers = headers,
                .body = body,
                .body_size = size,
                .timeout_ms = timeout_ms,
        };

        snprintf(url, sizeof(url), "%s%s", f->base, path);
        call_spec(f, &spec, r);
}

static json_object *parse(const Result *r) {
        json_object *o = json_tokener_parse(r->body);
        assert_non_null(o);
        return o;
}

static const char *field(json_object *o, const char *key) {
        json_object *v;

        if (!json_object_object_get_ex(o, key, &v) || json_object_is_type(v, json_type_null))
                return NULL;
        return json_object_get_string(v);
}

static void test_get_query(void **state) {
        Fixture *f = *state;
        static const char *const headers[] = {"X-Test: hello there", NULL};
        _cleanup_json_ json_object *o = NULL;
        Result r = {};

        call(f, "GET", "/echo?a=1&b=%2Fx&b=2&flag", headers, NULL, 0, 0, &r);
        assert_int_equal(r.error, 0);
        assert_null(r.message);
        assert_int_equal(r.status, 200);
        assert_string_equal(r.content_type, "application/json");
        assert_string_equal(r.reply_header, "yes");
        o = parse(&r);
        assert_string_equal(field(o, "method"), "GET");
        assert_string_equal(field(o, "path"), "/echo");
        /* Exactly the bytes on the wire: still encoded, duplicates and bare names kept. */
        assert_string_equal(field(o, "raw_query"), "a=1&b=%2Fx&b=2&flag");
        assert_string_equal(field(o, "a"), "1");
        assert_string_equal(field(o, "b"), "/x");
        assert_string_equal(field(o, "flag"), "");
        assert_string_equal(field(o, "x_test"), "hello there");
        assert_string_equal(field(o, "body"), "");
        assert_string_equal(field(o, "loopback"), "true");
        /* Compact, with "/" unescaped: the reference's serialisation. */
        assert_non_null(strstr(r.body, "\"b\":\"/x\""));
        result_done(&r);

        call(f, "GET", "/echo/x%20y", NULL, NULL, 0, 0, &r);
        json_object_put(o);
        o = parse(&r);
        assert_string_equal(field(o, "path"), "/echo/x y");
        result_done(&r);

        call(f, "GET", "/echo", NULL, NULL, 0, 0, &r);
        json_object_put(o);
        o = parse(&r);
        assert_string_equal(field(o, "path"), "/echo");
        assert_string_equal(field(o, "raw_query"), "");
        assert_null(field(o, "a"));
        result_done(&r);
}

/* Origins are kept parsed and calls reuse their handles: each call still goes to its own path and
 * query, whether the origin is new or seen before, with a query or without; so do the URLs whose
 * target curl rewrites (dot segments, a fragment) and those of more origins than are kept. */
static void test_urls_across_calls(void **state) {
        Fixture *f = *state;
        static const struct {
                const char *target, *path, *query;
        } rewritten[] = {
                {"/a/../echo/1", "/echo/1", ""},        {"/echo/./2?x=.", "/echo/2", "x=."},
                {"/echo/3/..?y=1", "/echo/", "y=1"},    {"/echo/4#frag", "/echo/4", ""},
                {"/echo/5?q=1#frag", "/echo/5", "q=1"}, {"/echo/..x/.y?z=/../", "/echo/..x/.y", "z=/../"},
        };

        for (unsigned i = 0; i < 300; i++) {
                _cleanup_json_ json_object *o = NULL;
                char path[64], query[64] = "", target[160];
                Result r = {};

                (void) snprintf(path, sizeof(path), "/echo/%u", i % 3 == 0 ? i : i % 7);
                if (i % 5 == 1)
                        (void) snprintf(query, sizeof(query), "a=%u&b=x%%2Fy", i);
                else if (i % 2 == 0)
                        (void) snprintf(query, sizeof(query), "a=%u&flag", i);
                (void) snprintf(target, sizeof(target), "%s%s%s", path, *query ? "?" : "", query);
                call(f, "GET", target, NULL, NULL, 0, 0, &r);
                assert_int_equal(r.status, 200);
                o = parse(&r);
                assert_string_equal(field(o, "path"), path);
                assert_string_equal(field(o, "raw_query"), query);
                result_done(&r);
        }

        for (unsigned round = 0; round < 2; round++)
                for (size_t i = 0; i < ELEMENTSOF(rewritten); i++) {
                        _cleanup_json_ json_object *o = NULL;
                        Result r = {};

                        call(f, "GET", rewritten[i].target, NULL, NULL, 0, 0, &r);
                        assert_int_equal(r.status, 200);
                        o = parse(&r);
                        assert_string_equal(field(o, "path"), rewritten[i].path);
                        assert_string_equal(field(o, "raw_query"), rewritten[i].query);
                        result_done(&r);
                }

        /* Each user name makes an origin of its own: more of them than are kept. */
        for (unsigned i = 0; i < 80; i++) {
                _cleanup_json_ json_object *o = NULL;
                char url[160], path[32], query[32];
                Result r = {};
                HttpCallSpec spec = {.method = "GET", .url = url};

                (void) snprintf(path, sizeof(path), "/echo/%u", i);
                (void) snprintf(query, sizeof(query), "n=%u", i);
                (void) snprintf(url, sizeof(url), "http://user%u@%s%s?%s", i, f->base + strlen("http://"),
                                path, query);
                call_spec(f, &spec, &r);
                assert_int_equal(r.status, 200);
                o = parse(&r);
                assert_string_equal(field(o, "path"), path);
                assert_string_equal(field(o, "raw_query"), query);
                result_done(&r);
        }
}

/* Calls reuse their handles and header buffers: nothing of one call's headers may reach the next. */
static void test_request_headers(void **state) {
        Fixture *f = *state;
        static const char *const two[] = {"X-Test: one", "X-Other: two", NULL};
        static const char *const bad[] = {"X-Test: ok", "X-Other: a\r\nX-Injected: b", NULL};
        char *many[41] = {};
        _cleanup_json_ json_object *o = NULL;
        Result r = {};

        for (unsigned round = 0; round < 3; round++) {
                call(f, "POST", "/echo", two, "{}", 2, 0, &r);
                assert_int_equal(r.status, 200);
                o = parse(&r);
                assert_string_equal(field(o, "x_test"), "one");
                assert_string_equal(field(o, "x_other"), "two");
                assert_string_equal(field(o, "content_type"), "application/json");
                /* A small body goes out at once, without waiting for "100 Continue". */
                assert_null(field(o, "expect"));
                json_object_put(TAKE_PTR(o));
                result_done(&r);

                call(f, "GET", "/echo", NULL, NULL, 0, 0, &r);
                assert_int_equal(r.status, 200);
                o = parse(&r);
                assert_null(field(o, "x_test"));
                assert_null(field(o, "x_other"));
                assert_null(field(o, "content_type"));
                assert_null(field(o, "expect"));
                json_object_put(TAKE_PTR(o));
                result_done(&r);
        }

        /* Header lines cannot smuggle in others. */
        {
                HttpCallSpec spec = {.method = "GET", .url = f->base, .headers = bad};
                assert_int_equal(http_client_call(f->client, &spec, on_done, &r, NULL), -EINVAL);
                assert_false(r.done);
        }

        /* More lines than any call before: the buffers grow, the last line still arrives. */
        for (size_t i = 0; i < ELEMENTSOF(many) - 1; i++)
                assert_true(asprintf(&many[i], "X-%s: value number %zu",
                                     i == ELEMENTSOF(many) - 2 ? "Test" : "Filler", i) > 0);
        call(f, "GET", "/echo", (const char *const *) many, NULL, 0, 0, &r);
        assert_int_equal(r.status, 200);
        o = parse(&r);
        assert_string_equal(field(o, "x_test"), "value number 39");
        assert_null(field(o, "x_other"));
        result_done(&r);
        for (size_t i = 0; i < ELEMENTSOF(many); i++)
                free(many[i]);
}

static void test_post_echo(void **state) {
        Fixture *f = *state;
        static const char body[] = "{\"share\":\"AAEC\",\"n\":5}";
        static const uint8_t binary[] = {0, 1, 2, 0xff, 0, 'x'};
        _cleanup_json_ json_object *o = NULL;
        Result r = {};

        call(f, "POST", "/echo", NULL, body, strlen(body), 0, &r);
        assert_int_equal(r.error, 0);
        assert_int_equal(r.status, 200);
        o = parse(&r);
        assert_string_equal(field(o, "method"), "POST");
        assert_string_equal(field(o, "body"), body);
        assert_string_equal(field(o, "content_type"), "application/json");
        result_done(&r);

        {
                static const char *const headers[] = {"content-type: text/plain", NULL};
                call(f, "POST", "/echo", headers, "x", 1, 0, &r);
                json_object_put(o);
                o = parse(&r);
                assert_string_equal(field(o, "content_type"), "text/plain");
                result_done(&r);
        }

        call(f, "PUT", "/raw", NULL, binary, sizeof(binary), 0, &r);
        assert_int_equal(r.status, 200);
        assert_string_equal(r.content_type, "application/octet-stream");
        assert_int_equal(r.body_size, sizeof(binary));
        assert_memory_equal(r.body, binary, sizeof(binary));
        result_done(&r);

        /* Exactly at the limit is fine. */
        {
                _cleanup_free_ char *full = malloc(MAX_BODY);
                assert_non_null(full);
                memset(full, 'k', MAX_BODY);
                call(f, "POST", "/raw", NULL, full, MAX_BODY, 0, &r);
                assert_int_equal(r.status, 200);
                assert_int_equal(r.body_size, MAX_BODY);
                result_done(&r);
        }
}

static void test_body_too_large(void **state) {
        Fixture *f = *state;
        static const char *const chunked[] = {"Transfer-Encoding: chunked", NULL};
        _cleanup_free_ char *big = malloc(4 * MAX_BODY);
        Result r = {};

        assert_non_null(big);
        memset(big, 'z', 4 * MAX_BODY);

        /* Announced length: refused before the body is read. */
        call(f, "POST", "/raw", NULL, big, MAX_BODY + 1, 0, &r);
        assert_int_equal(r.error, 0);
        assert_int_equal(r.status, 413);
        assert_string_equal(r.content_type, "application/json");
        assert_string_equal(r.body, "{\"message\":\"Request body too large.\",\"details\":null}");
        result_done(&r);

        /* Chunked: noticed while the body arrives. */
        call(f, "POST", "/raw", chunked, big, 4 * MAX_BODY, 0, &r);
        assert_int_equal(r.error, 0);
        assert_int_equal(r.status, 413);
        assert_string_equal(r.body, "{\"message\":\"Request body too large.\",\"details\":null}");
        result_done(&r);

        /* The server goes on serving. */
        call(f, "POST", "/raw", chunked, big, 100, 0, &r);
        assert_int_equal(r.status, 200);
        assert_int_equal(r.body_size, 100);
        result_done(&r);
}

static void test_reply_later(void **state) {
        Fixture *f = *state;
        uint64_t start = now_usec();
        Result r = {};

        call(f, "GET", "/later?id=7&x=%41", NULL, NULL, 0, 0, &r);
        assert_int_equal(r.error, 0);
        assert_int_equal(r.status, 200);
        assert_string_equal(r.body, "id=7&x=%41");
        assert_true(r.usec - start >= LATER_USEC);
        assert_int_equal(http_server_pending(f->server), 0);
        result_done(&r);
}

static void test_pending_count(void **state) {
        Fixture *f = *state;
        char url[128];
        HttpCallSpec spec = {.method = "GET", .url = url};
        Result r = {};

        snprintf(url, sizeof(url), "%s/hang", f->base);
        assert_int_equal(http_client_call(f->client, &spec, on_done, &r, NULL), 0);
        run_until_held(f);
        assert_int_equal(http_server_pending(f->server), 1);
        assert_false(http_request_replied(f->held[0]));
        /* A kept request still shows what it asked. */
        assert_string_equal(http_request_path(f->held[0]), "/hang");
        assert_string_equal(http_request_method(f->held[0]), "GET");

        assert_int_equal(http_request_add_header(f->held[0], "X-Reply", "later"), 0);
        assert_int_equal(http_request_reply(f->held[0], 202, "text/plain", "ok", 2), 0);
        f->n_held = 0;
        assert_int_equal(http_server_pending(f->server), 0);
        assert_true(run_until(f, &r.done, 5 * 1000000));
        assert_int_equal(r.status, 202);
        assert_string_equal(r.body, "ok");
        assert_string_equal(r.reply_header, "later");
        result_done(&r);
}

static void test_concurrent(void **state) {
        Fixture *f = *state;
        Result *results = calloc(N_CONCURRENT, sizeof(Result));
        size_t done = 0;
        uint64_t deadline = now_usec() + 20 * 1000000;

        assert_non_null(results);
        for (size_t i = 0; i < N_CONCURRENT; i++) {
                char url[128];
                HttpCallSpec spec = {.method = "GET", .url = url};

                snprintf(url, sizeof(url), "%s/later?n=%zu", f->base, i);
                assert_int_equal(http_client_call(f->client, &spec, on_done, &results[i], NULL), 0);
        }
        assert_int_equal(http_client_running(f->client), N_CONCURRENT);

        while (done < N_CONCURRENT && now_usec() < deadline) {
                assert_true(sd_event_run(f->event, 100 * 1000) >= 0);
                done = 0;
                for (size_t i = 0; i < N_CONCURRENT; i++)
                        done += results[i].done;
        }
        assert_int_equal(done, N_CONCURRENT);
        for (size_t i = 0; i < N_CONCURRENT; i++) {
                char expected[32];

                snprintf(expected, sizeof(expected), "n=%zu", i);
                assert_int_equal(results[i].error, 0);
                assert_int_equal(results[i].status, 200);
                assert_string_equal(results[i].body, expected);
                result_done(&results[i]);
        }
        assert_int_equal(http_client_running(f->client), 0);
        assert_int_equal(http_server_pending(f->server), 0);
        free(results);
}

typedef struct Chain {
        Fixture *fixture;
        unsigned left;
        unsigned answered;
        bool done;
} Chain;

static void chain_next(Chain *c);

static void on_chain_done(HttpCall *call, int error, const char *message, const HttpResponse *response,
                          void *userdata) {
        Chain *c = userdata;

        assert_int_equal(error, 0);
        assert_int_equal(response->status, 200);
        c->answered++;
        if (c->left == 0) {
                c->done = true;
                return;
        }
        /* Started from within a callback. */
        chain_next(c);
}

static void chain_next(Chain *c) {
        char url[128];
        HttpCallSpec spec = {.method = "POST", .url = url, .body = "{}", .body_size = 2};

        c->left--;
        snprintf(url, sizeof(url), "%s/raw", c->fixture->base);
        assert_int_equal(http_client_call(c->fixture->client, &spec, on_chain_done, c, NULL), 0);
}

static void test_keep_alive(void **state) {
        Fixture *f = *state;
        Chain c = {.fixture = f, .left = 20};
        uint64_t before, after;

        (void) http_server_connections(f->server, &before);
        chain_next(&c);
        assert_true(run_until(f, &c.done, 10 * 1000000));
        assert_int_equal(c.answered, 20);
        (void) http_server_connections(f->server, &after);
        /* Twenty requests one after the other over a single connection. */
        assert_int_equal(after - before, 1);
        assert_int_equal(http_server_connections(f->server, NULL), 1);
}

static uint16_t unused_port(void) {
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        socklen_t len = sizeof(sa);
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

        assert_true(fd >= 0);
        assert_int_equal(bind(fd, (struct sockaddr *) &sa, sizeof(sa)), 0);
        assert_int_equal(getsockname(fd, (struct sockaddr *) &sa, &len), 0);
        close(fd);
        return ntohs(sa.sin_port);
}

static void test_connection_refused(void **state) {
        Fixture *f = *state;
        char url[128];
        HttpCallSpec spec = {.method = "GET", .url = url};
        Result r = {};

        snprintf(url, sizeof(url), "http://127.0.0.1:%u/x", unused_port());
        assert_int_equal(http_client_call(f->client, &spec, on_done, &r, NULL), 0);
        assert_true(run_until(f, &r.done, 5 * 1000000));
        assert_int_equal(r.error, -ECONNREFUSED);
        assert_int_equal(r.status, 0);
        assert_non_null(r.message);
        assert_int_equal(r.body_size, 0);
        result_done(&r);
}

/* A server that answers the first request on each connection and closes the connection on the
 * second without an answer, counting the requests it read: what a peer killed between reading a
 * request and answering it looks like. */
typedef struct OneShot {
        int listen_fd;
        uint16_t port;
        const char *reply; /* NULL: a 200 with "ok" */
        unsigned requests;
        struct {
                int fd;
                unsigned served;
                sd_event_source *source;
        } conns[8];
        size_t n_conns;
        sd_event_source *accept_source;
} OneShot;

static int oneshot_on_data(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        OneShot *o = userdata;
        char buf[4096];
        ssize_t n;

        (void) revents;
        for (size_t i = 0; i < o->n_conns; i++) {
                if (o->conns[i].fd != fd)
                        continue;
                n = read(fd, buf, sizeof(buf));
                if (n <= 0 || !memmem(buf, (size_t) n, "\r\n\r\n", 4)) {
                        sd_event_source_set_enabled(s, SD_EVENT_OFF);
                        return 0;
                }
                o->requests++;
                if (o->conns[i].served++ == 0) {
                        const char *reply = o->reply ?: "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
                        assert_int_equal(write(fd, reply, strlen(reply)), (ssize_t) strlen(reply));
                } else {
                        sd_event_source_set_enabled(s, SD_EVENT_OFF);
                        shutdown(fd, SHUT_RDWR);
                }
        }
        return 0;
}

static int oneshot_on_accept(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        OneShot *o = userdata;
        int c;

        (void) s;
        (void) revents;
        c = accept4(fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
        assert_true(c >= 0);
        assert_true(o->n_conns < ELEMENTSOF(o->conns));
        o->conns[o->n_conns].fd = c;
        assert_int_equal(sd_event_add_io(sd_event_source_get_event(s), &o->conns[o->n_conns].source, c,
                                         EPOLLIN, oneshot_on_data, o),
                         0);
        o->n_conns++;
        return 0;
}

static void oneshot_start(Fixture *f, OneShot *o) {
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        socklen_t len = sizeof(sa);

        o->listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        assert_true(o->listen_fd >= 0);
        assert_int_equal(bind(o->listen_fd, (struct sockaddr *) &sa, sizeof(sa)), 0);
        assert_int_equal(listen(o->listen_fd, 8), 0);
        assert_int_equal(getsockname(o->listen_fd, (struct sockaddr *) &sa, &len), 0);
        o->port = ntohs(sa.sin_port);
        assert_int_equal(
                sd_event_add_io(f->event, &o->accept_source, o->listen_fd, EPOLLIN, oneshot_on_accept, o),
                0);
}

static void oneshot_stop(OneShot *o) {
        for (size_t i = 0; i < o->n_conns; i++) {
                sd_event_source_disable_unref(o->conns[i].source);
                close(o->conns[i].fd);
        }
        sd_event_source_disable_unref(o->accept_source);
        close(o->listen_fd);
}

static void oneshot_call(Fixture *f, uint16_t port, bool fresh, long expect_status) {
        char url[128];
        HttpCallSpec spec = {.method = "GET", .url = url, .fresh_connection = fresh};
        Result r = {};

        snprintf(url, sizeof(url), "http://127.0.0.1:%u/psrd", port);
        assert_int_equal(http_client_call(f->client, &spec, on_done, &r, NULL), 0);
        assert_true(run_until(f, &r.done, 5 * 1000000));
        assert_int_equal(r.status, expect_status);
        result_done(&r);
}

static void test_fresh_connection(void **state) {
        Fixture *f = *state;
        OneShot o = {};

        oneshot_start(f, &o);
        oneshot_call(f, o.port, false, 200);
        assert_int_equal(o.requests, 1);
        /* On the kept-alive connection, closed unanswered: libcurl sends it again on a new one. */
        oneshot_call(f, o.port, false, 200);
        assert_int_equal(o.requests, 3);
        /* A call that must not go out twice takes a new connection from the start. */
        oneshot_call(f, o.port, true, 200);
        assert_int_equal(o.requests, 4);
        oneshot_stop(&o);
}

/* A reply's header fields are kept up to 64 KiB in all; a peer that sends more fails the call
 * rather than growing the client's memory. */
static void test_response_headers_too_large(void **state) {
        Fixture *f = *state;
        /* Each field is kept as its name and value, each with a NUL. */
        static const char field[] = "X-Filler: %01000d\r\n";
        const size_t kept = 8 + 1000 + 2, content_length_kept = 14 + 1 + 2;

        for (size_t n = 64 * 1024 / kept; n <= 64 * 1024 / kept + 1; n++) {
                char *reply = malloc(64 + n * (kept + 16));
                char url[128];
                HttpCallSpec spec = {.method = "GET", .url = url};
                OneShot o = {};
                Result r = {};
                size_t len;

                assert_non_null(reply);
                len = (size_t) sprintf(reply, "HTTP/1.1 200 OK\r\n");
                for (size_t i = 0; i < n; i++)
                        len += (size_t) sprintf(reply + len, field, 0);
                (void) sprintf(reply + len, "Content-Length: 2\r\n\r\nok");
                o.reply = reply;
                oneshot_start(f, &o);
                snprintf(url, sizeof(url), "http://127.0.0.1:%u/psrd", o.port);
                assert_int_equal(http_client_call(f->client, &spec, on_done, &r, NULL), 0);
                assert_true(run_until(f, &r.done, 5 * 1000000));
                if (n * kept + content_length_kept <= 64 * 1024) {
                        assert_int_equal(r.status, 200);
                } else {
                        assert_int_equal(r.error, -EMSGSIZE);
                        assert_string_equal(r.message, "Response too large.");
                }
                result_done(&r);
                oneshot_stop(&o);
                free(reply);
        }
}

static void test_timeout(void **state) {
        Fixture *f = *state;
        uint64_t start = now_usec();
        Result r = {};

        call(f, "GET", "/hang", NULL, NULL, 0, 200, &r);
        assert_int_equal(r.error, -ETIMEDOUT);
        assert_int_equal(r.status, 0);
        assert_non_null(r.message);
        assert_true(r.usec - start >= 200 * 1000);
        assert_true(r.usec - start < 3 * 1000000);
        result_done(&r);

        /* The server still holds the request; the application gives it up. */
        assert_int_equal(http_server_pending(f->server), 1);
        http_request_release(f->held[0]);
        f->n_held = 0;
        assert_int_equal(http_server_pending(f->server), 0);
        run_for(f, 50 * 1000);
}

static void test_cancel(void **state) {
        Fixture *f = *state;
        char url[128];
        HttpCallSpec spec = {.method = "GET", .url = url};
        HttpCall *c = NULL;
        Result r = {};

        snprintf(url, sizeof(url), "%s/later", f->base);
        assert_int_equal(http_client_call(f->client, &spec, on_done, &r, &c), 0);
        assert_non_null(c);
        run_for(f, 10 * 1000);
        http_call_cancel(c);
        http_call_cancel(NULL);
        assert_int_equal(http_client_running(f->client), 0);
        run_for(f, 3 * LATER_USEC);
        assert_false(r.done);

        /* The client keeps working afterwards. */
        call(f, "GET", "/echo", NULL, NULL, 0, 0, &r);
        assert_int_equal(r.status, 200);
        result_done(&r);
}

typedef struct Canceller {
        HttpCall *victim;
        bool done;
} Canceller;

static void on_cancel_other(HttpCall *call, int error, const char *message, const HttpResponse *response,
                            void *userdata) {
        Canceller *c = userdata;

        assert_int_equal(error, 0);
        http_call_cancel(c->victim);
        /* A finished call has nothing left to cancel. */
        http_call_cancel(call);
        c->done = true;
}

static void test_cancel_from_callback(void **state) {
        Fixture *f = *state;
        char url_fast[128], url_slow[128];
        HttpCallSpec fast = {.method = "GET", .url = url_fast}, slow = {.method = "GET", .url = url_slow};
        Canceller c = {};
        Result r = {};

        snprintf(url_fast, sizeof(url_fast), "%s/echo", f->base);
        snprintf(url_slow, sizeof(url_slow), "%s/later", f->base);
        assert_int_equal(http_client_call(f->client, &slow, on_done, &r, &c.victim), 0);
        assert_int_equal(http_client_call(f->client, &fast, on_cancel_other, &c, NULL), 0);
        assert_true(run_until(f, &c.done, 5 * 1000000));
        assert_int_equal(http_client_running(f->client), 0);
        run_for(f, 3 * LATER_USEC);
        assert_false(r.done);
}

static void test_error_bodies(void **state) {
        Fixture *f = *state;
        Result r = {};

        call(f, "GET", "/error", NULL, NULL, 0, 0, &r);
        assert_int_equal(r.status, 400);
        assert_string_equal(r.content_type, "application/json");
        assert_string_equal(r.body, "{\"message\":\"Bad thing 7.\",\"details\":{\"key_id\":\"a/b\"}}");
        result_done(&r);

        call(f, "GET", "/fail", NULL, NULL, 0, 0, &r);
        assert_int_equal(r.status, 500);
        assert_string_equal(r.body, "{\"message\":\"Internal server error.\",\"details\":null}");
        result_done(&r);

        /* The reference answers a successful POST key-share with a bare null. */
        call(f, "POST", "/null", NULL, "{}", 2, 0, &r);
        assert_int_equal(r.status, 200);
        assert_string_equal(r.content_type, "application/json");
        assert_string_equal(r.body, "null");
        result_done(&r);

        call(f, "GET", "/nowhere", NULL, NULL, 0, 0, &r);
        assert_int_equal(r.status, 404);
        assert_string_equal(r.body, "{\"message\":\"Not found.\",\"details\":null}");
        result_done(&r);

        call(f, "GET", "/check?a=1&b=2", NULL, NULL, 0, 0, &r);
        assert_int_equal(r.status, 204);
        assert_null(r.content_type);
        assert_int_equal(r.body_size, 0);
        result_done(&r);

        call(f, "GET", "/check?a=1&zz=2", NULL, NULL, 0, 0, &r);
        assert_int_equal(r.status, 400);
        assert_string_equal(r.body, "{\"message\":\"Unknown parameter.\",\"details\":\"zz\"}");
        result_done(&r);

        /* A name given twice, also when encoded, even without a value. */
        static const char *const twice[] = {"/check?b=1&a=2&b=3", "/check?a&b&a=", "/check?a=1&%61=2"};
        for (size_t i = 0; i < ELEMENTSOF(twice); i++) {
                call(f, "GET", twice[i], NULL, NULL, 0, 0, &r);
                assert_int_equal(r.status, 400);
                assert_string_equal(r.body, i == 0 ? "{\"message\":\"Twice.\",\"details\":\"b\"}"
                                                   : "{\"message\":\"Twice.\",\"details\":\"a\"}");
                result_done(&r);
        }

        call(f, "GET", "/twice", NULL, NULL, 0, 0, &r);
        assert_int_equal(r.status, 200);
        result_done(&r);
}

static void test_release(void **state) {
        Fixture *f = *state;
        Result r = {};

        /* Released without a reply: the connection closes and the caller sees a transport error. */
        call(f, "GET", "/release", NULL, NULL, 0, 0, &r);
        assert_true(r.error < 0);
        assert_int_equal(r.status, 0);
        assert_int_equal(http_server_pending(f->server), 0);
        result_done(&r);

        call(f, "GET", "/echo", NULL, NULL, 0, 0, &r);
        assert_int_equal(r.status, 200);
        result_done(&r);
}

/* curl's receive buffer is sized for each call: replies larger or smaller than it, or than
 * expected, arrive whole. */
static void test_reply_sizes(void **state) {
        static const size_t sizes[] = {0, 1, 1023, 1024, 1025, 16385, 70000, 600000};
        static const size_t expected[] = {0, 1, 1024, 65536, 524288, 4 * 1024 * 1024};
        Fixture *f = *state;

        for (size_t i = 0; i < ELEMENTSOF(sizes); i++)
                for (size_t j = 0; j < ELEMENTSOF(expected); j++) {
                        char url[128];
                        HttpCallSpec spec = {.method = "GET", .url = url, .reply_size = expected[j]};
                        Result r = {};

                        (void) snprintf(url, sizeof(url), "%s/bytes?n=%zu", f->base, sizes[i]);
                        call_spec(f, &spec, &r);
                        assert_int_equal(r.status, 200);
                        assert_int_equal(r.body_size, sizes[i]);
                        for (size_t k = 0; k < sizes[i]; k++)
                                if (r.body[k] != (char) ('a' + k % 23))
                                        fail_msg("byte %zu of %zu differs (buffer for %zu)", k, sizes[i],
                                                 expected[j]);
                        result_done(&r);
                }
}

static void test_response_too_large(void **state) {
        Fixture *f = *state;
        Result r = {};

        call(f, "GET", "/big", NULL, NULL, 0, 0, &r);
        assert_int_equal(r.error, -EMSGSIZE);
        assert_int_equal(r.status, 0);
        result_done(&r);
}

static void test_bad_spec(void **state) {
        Fixture *f = *state;
        HttpCallSpec spec = {.method = "GET", .url = "ftp://127.0.0.1/x"};
        Result r = {};

        assert_int_equal(http_client_call(f->client, &spec, on_done, &r, NULL), -EINVAL);
        spec.url = "file:///etc/passwd";
        assert_int_equal(http_client_call(f->client, &spec, on_done, &r, NULL), -EINVAL);
        spec.url = "http://127.0.0.1/";
        spec.method = "";
        assert_int_equal(http_client_call(f->client, &spec, on_done, &r, NULL), -EINVAL);
        spec.method = "POST";
        spec.body_size = 3;
        assert_int_equal(http_client_call(f->client, &spec, on_done, &r, NULL), -EINVAL);
        assert_int_equal(http_client_running(f->client), 0);
}

static void test_quiesce(void **state) {
        Fixture *f = *state;
        HttpClient *fresh = NULL;
        char url[128];
        HttpCallSpec spec = {.method = "GET", .url = url};
        Result r = {}, held = {};

        /* One request in progress when the server stops accepting. */
        snprintf(url, sizeof(url), "%s/hang", f->base);
        assert_int_equal(http_client_call(f->client, &spec, on_done, &held, NULL), 0);
        run_until_held(f);

        assert_int_equal(http_server_quiesce(f->server), 0);
        assert_int_equal(http_server_quiesce(f->server), 0);
        run_for(f, 20 * 1000);

        /* A new connection is refused... */
        assert_int_equal(http_client_new(f->event, &fresh), 0);
        snprintf(url, sizeof(url), "%s/echo", f->base);
        assert_int_equal(http_client_call(fresh, &spec, on_done, &r, NULL), 0);
        assert_true(run_until(f, &r.done, 5 * 1000000));
        assert_int_equal(r.error, -ECONNREFUSED);
        result_done(&r);
        http_client_free(fresh);

        /* ...while the request in progress still completes. */
        assert_int_equal(http_request_reply(f->held[0], 200, "text/plain", "bye", 3), 0);
        f->n_held = 0;
        assert_true(run_until(f, &held.done, 5 * 1000000));
        assert_int_equal(held.status, 200);
        assert_string_equal(held.body, "bye");
        result_done(&held);
}

static void test_orphaned_request(void **state) {
        Fixture *f = *state;
        char url[128];
        HttpCallSpec spec = {.method = "GET", .url = url};
        HttpRequest *req;
        Result r = {};

        snprintf(url, sizeof(url), "%s/hang", f->base);
        assert_int_equal(http_client_call(f->client, &spec, on_done, &r, NULL), 0);
        run_until_held(f);
        req = f->held[0];
        f->n_held = 0;

        /* The server goes first; the request it leaves behind is still safe to answer. */
        f->server = http_server_free(f->server);
        assert_true(run_until(f, &r.done, 5 * 1000000));
        assert_true(r.error < 0);
        assert_null(http_request_path(req));
        assert_string_equal(http_request_raw_query(req), "");
        assert_null(http_request_header(req, "Host"));
        assert_int_equal(http_request_reply_json(req, 200, json_object_new_object()), 0);
        result_done(&r);
}

typedef struct Peer {
        int fd;
        bool closed;
} Peer;

static int peer_on_data(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        Peer *p = userdata;
        char buf[256];
        ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);

        if (n == 0 || (n < 0 && errno != EAGAIN)) {
                p->closed = true;
                (void) sd_event_source_set_enabled(s, SD_EVENT_OFF);
        }
        return 0;
}

/* A connection that sends nothing, and one that stops half-way through its headers, are closed
 * once they have been idle for the server's timeout, and not before. */
static void test_idle_timeout(void **state) {
        Fixture *f = *state;
        HttpServerConfig config = {.address = "127.0.0.1", .listen_fd = -1, .timeout_sec = 1};
        static const char partial[] = "GET /echo HTTP/1.1\r\nHost: x\r\n";
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        sd_event_source *sources[2] = {};
        Peer peers[2] = {};
        HttpServer *s = NULL;
        uint64_t start;

        assert_int_equal(http_server_new(f->event, &config, handler, f, &s), 0);
        sa.sin_port = htons(http_server_get_port(s));
        for (size_t i = 0; i < ELEMENTSOF(peers); i++) {
                peers[i].fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
                assert_true(peers[i].fd >= 0);
                assert_int_equal(connect(peers[i].fd, (struct sockaddr *) &sa, sizeof(sa)), 0);
                assert_int_equal(sd_event_add_io(f->event, &sources[i], peers[i].fd, EPOLLIN | EPOLLRDHUP,
                                                 peer_on_data, &peers[i]),
                                 0);
        }
        assert_int_equal(send(peers[1].fd, partial, sizeof(partial) - 1, 0), (ssize_t) sizeof(partial) - 1);

        start = now_usec();
        run_for(f, 500 * 1000);
        assert_false(peers[0].closed);
        assert_false(peers[1].closed);
        assert_true(run_until(f, &peers[0].closed, 10 * 1000000));
        assert_true(run_until(f, &peers[1].closed, 10 * 1000000));
        assert_true(now_usec() - start >= 900 * 1000);

        for (size_t i = 0; i < ELEMENTSOF(peers); i++) {
                sd_event_source_unref(sources[i]);
                close(peers[i].fd);
        }
        http_server_free(s);
}

static void test_ipv6(void **state) {
        Fixture *f = NULL;
        _cleanup_json_ json_object *o = NULL;
        Result r = {};
        int k;

        k = setup_server((void **) &f, "::1");
        if (k == -EADDRNOTAVAIL || k == -EAFNOSUPPORT)
                skip();
        assert_int_equal(k, 0);

        call(f, "GET", "/echo?a=6", NULL, NULL, 0, 0, &r);
        assert_int_equal(r.status, 200);
        o = parse(&r);
        assert_string_equal(field(o, "a"), "6");
        assert_string_equal(field(o, "loopback"), "true");
        result_done(&r);
        teardown((void **) &f);
}

static void test_listen_fd(void **state) {
        Fixture *f = *state;
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        socklen_t len = sizeof(sa);
        HttpServerConfig config = {.listen_fd = -1};
        HttpServer *s = NULL;
        char url[128];
        HttpCallSpec spec = {.method = "GET", .url = url};
        Result r = {};

        /* A socket handed over as by socket activation. */
        config.listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_true(config.listen_fd >= 0);
        assert_int_equal(bind(config.listen_fd, (struct sockaddr *) &sa, sizeof(sa)), 0);
        assert_int_equal(listen(config.listen_fd, 16), 0);
        assert_int_equal(getsockname(config.listen_fd, (struct sockaddr *) &sa, &len), 0);

        assert_int_equal(http_server_new(f->event, &config, handler, f, &s), 0);
        assert_int_equal(http_server_get_port(s), ntohs(sa.sin_port));
        assert_string_equal(http_server_get_address(s), "127.0.0.1");
        snprintf(url, sizeof(url), "http://127.0.0.1:%u/echo?a=fd", ntohs(sa.sin_port));
        assert_int_equal(http_client_call(f->client, &spec, on_done, &r, NULL), 0);
        assert_true(run_until(f, &r.done, 5 * 1000000));
        assert_int_equal(r.status, 200);
        result_done(&r);
        http_server_free(s);

        /* Bad addresses and a port in use. */
        config = (HttpServerConfig){.address = "localhost", .listen_fd = -1};
        assert_int_equal(http_server_new(f->event, &config, handler, f, &s), -EINVAL);
        config = (HttpServerConfig){.port = http_server_get_port(f->server), .listen_fd = -1};
        assert_int_equal(http_server_new(f->event, &config, handler, f, &s), -EADDRINUSE);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_get_query, setup, teardown),
                cmocka_unit_test_setup_teardown(test_urls_across_calls, setup, teardown),
                cmocka_unit_test_setup_teardown(test_post_echo, setup, teardown),
                cmocka_unit_test_setup_teardown(test_request_headers, setup, teardown),
                cmocka_unit_test_setup_teardown(test_body_too_large, setup, teardown),
                cmocka_unit_test_setup_teardown(test_reply_later, setup, teardown),
                cmocka_unit_test_setup_teardown(test_pending_count, setup, teardown),
                cmocka_unit_test_setup_teardown(test_concurrent, setup, teardown),
                cmocka_unit_test_setup_teardown(test_keep_alive, setup, teardown),
                cmocka_unit_test_setup_teardown(test_connection_refused, setup, teardown),
                cmocka_unit_test_setup_teardown(test_timeout, setup, teardown),
                cmocka_unit_test_setup_teardown(test_cancel, setup, teardown),
                cmocka_unit_test_setup_teardown(test_cancel_from_callback, setup, teardown),
                cmocka_unit_test_setup_teardown(test_error_bodies, setup, teardown),
                cmocka_unit_test_setup_teardown(test_release, setup, teardown),
                cmocka_unit_test_setup_teardown(test_reply_sizes, setup, teardown),
                cmocka_unit_test_setup_teardown(test_response_too_large, setup, teardown),
                cmocka_unit_test_setup_teardown(test_bad_spec, setup, teardown),
                cmocka_unit_test_setup_teardown(test_quiesce, setup, teardown),
                cmocka_unit_test_setup_teardown(test_orphaned_request, setup, teardown),
                cmocka_unit_test_setup_teardown(test_listen_fd, setup, teardown),
                cmocka_unit_test_setup_teardown(test_idle_timeout, setup, teardown),
                cmocka_unit_test_setup_teardown(test_fresh_connection, setup, teardown),
                cmocka_unit_test_setup_teardown(test_response_headers_too_large, setup, teardown),
                cmocka_unit_test(test_ipv6),
        };

        log_set_max_level(LOG_WARNING);
        return cmocka_run_group_tests(tests, NULL, NULL);
}
