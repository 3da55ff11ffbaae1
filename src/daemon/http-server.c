/* SPDX-License-Identifier: MIT */
#include <arpa/inet.h>
#include <assert.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/epoll.h>
#include <sys/stat.h>
#include <time.h>

#include "buffer.h"
#include "http-server.h"
#include "json-util.h"
#include "log.h"

#define DEFAULT_ADDRESS         "127.0.0.1"
#define DEFAULT_MAX_BODY_SIZE   ((size_t) 1024 * 1024)
#define DEFAULT_MAX_CONNECTIONS 1024u
#define DEFAULT_TIMEOUT_SEC     30u
/* Per connection: request line, headers and read buffer. Our requests are small; the body is
 * copied out as it arrives, so this does not bound the body size. MHD zeroes the whole pool between
 * the requests of a keep-alive connection: a larger pool costs time on every request. */
#define CONNECTION_MEMORY_LIMIT ((size_t) 16 * 1024)
/* Recycled requests keep buffers up to this size; larger ones go back to the allocator. */
#define KEEP_BUFFER_MAX   ((size_t) 64 * 1024)
#define FREE_REQUESTS_MAX 256u
/* MHD asks to be woken up at most this far ahead; beyond it the value is meaningless to us. */
#define TIMER_MAX_USEC ((uint64_t) 3600 * 1000000)
/* MHD's deadlines are idle connection timeouts of many seconds: firing them a little late costs
 * nothing, while re-arming the timer after every request costs a system call. */
#define TIMER_ACCURACY_MAX_USEC ((uint64_t) 1000 * 1000)

typedef enum RequestState {
        REQUEST_RECEIVING, /* headers and body arriving */
        REQUEST_HANDLING,  /* inside the handler */
        REQUEST_KEPT,      /* the connection is suspended until the application replies */
        REQUEST_REPLIED,   /* a response is stored and waits to be queued */
        REQUEST_SENDING,   /* the response is queued on the connection */
        REQUEST_RELEASED,  /* the application gave up; the connection is to be closed */
} RequestState;

struct HttpRequest {
        HttpServer *server;
        struct MHD_Connection *connection;
        HttpRequest *prev, *next; /* the server's pending list while kept, else its free list */
        RequestState state;
        bool started;
        bool too_large;
        bool orphaned; /* kept while its server went away: only reply or release remain */

        const char *method; /* owned by MHD, valid until the request completes */
        const char *path;

        char *uri; /* the raw request target, as received */
        size_t uri_alloc;
        const char *raw_query;

        uint8_t *body; /* NUL-terminated */
        size_t body_size, body_alloc;

        char *headers; /* reply headers to come: "Name\0Value\0"... */
        size_t headers_size, headers_alloc;

        struct MHD_Response *response;
        unsigned status;
};

struct HttpServer {
        sd_event *event;
        struct MHD_Daemon *daemon;
        sd_event_source *io_source;
        sd_event_source *timer_source;
        sd_event_source *resume_source;

        HttpHandler handler;
        void *userdata;
        HttpReplyHook reply_hook;
        void *reply_hook_userdata;
        size_t max_body_size;
        uint16_t port;
        char address[INET6_ADDRSTRLEN]; /* numeric, of the socket listened on */
        bool quiesced;

        HttpRequest *pending_head;
        size_t n_pending;
        HttpRequest *free_head;
        size_t n_free;

        size_t n_connections;
        uint64_t n_accepted;
        size_t n_requests; /* begun and not completed */
};

static void request_free(HttpRequest *r) {
        if (!r)
                return;
        if (r->response)
                MHD_destroy_response(r->response);
        free(r->uri);
        if (r->body)
                explicit_bzero(r->body, r->body_size);
        free(r->body);
        free(r->headers);
        free(r);
}

static void server_pending_add(HttpServer *s, HttpRequest *r) {
        r->prev = NULL;
        r->next = s->pending_head;
        if (s->pending_head)
                s->pending_head->prev = r;
        s->pending_head = r;
        s->n_pending++;
}

static void server_pending_remove(HttpServer *s, HttpRequest *r) {
        if (r->prev)
                r->prev->next = r->next;
        else
                s->pending_head = r->next;
        if (r->next)
                r->next->prev = r->prev;
        r->prev = r->next = NULL;
        assert(s->n_pending > 0);
        s->n_pending--;
}

static HttpRequest *server_request_acquire(HttpServer *s) {
        HttpRequest *r = s->free_head;

        if (r) {
                s->free_head = r->next;
                s->n_free--;
                r->next = NULL;
                return r;
        }
        return calloc(1, sizeof(HttpRequest));
}

/* Returns a finished request to the free list, keeping its buffers for the next request. */
static void server_request_recycle(HttpServer *s, HttpRequest *r) {
        if (r->response) {
                MHD_destroy_response(r->response);
                r->response = NULL;
        }
        if (s->n_free >= FREE_REQUESTS_MAX) {
                request_free(r);
                return;
        }
        if (r->body)
                explicit_bzero(r->body, r->body_size);
        if (r->body_alloc > KEEP_BUFFER_MAX) {
                free(r->body);
                r->body = NULL;
                r->body_alloc = 0;
        }
        if (r->uri_alloc > KEEP_BUFFER_MAX) {
                free(r->uri);
                r->uri = NULL;
                r->uri_alloc = 0;
        }
        if (r->headers_alloc > KEEP_BUFFER_MAX) {
                free(r->headers);
                r->headers = NULL;
                r->headers_alloc = 0;
        }
        *r = (HttpRequest){
                .uri = r->uri,
                .uri_alloc = r->uri_alloc,
                .body = r->body,
                .body_alloc = r->body_alloc,
                .headers = r->headers,
                .headers_alloc = r->headers_alloc,
                .next = s->free_head,
        };
        s->free_head = r;
        s->n_free++;
}

/* The server is going away while the application still holds r: detach it. */
static void request_orphan(HttpRequest *r) {
        r->orphaned = true;
        r->server = NULL;
        r->connection = NULL;
        r->method = r->path = NULL;
}

static bool request_drop_if_orphaned(HttpRequest *r) {
        if (!r->orphaned)
                return false;
        request_free(r);
        return true;
}

/* With external polling MHD has no wake-up channel of its own: a resumed connection is only picked
 * up by the next MHD_run(). Run it from a defer source rather than right here, which may be deep
 * inside MHD already (a handler answering another kept request). */
static void server_resume(HttpServer *s, HttpRequest *r) {
        int k;

        server_pending_remove(s, r);
        MHD_resume_connection(r->connection);
        k = sd_event_source_set_enabled(s->resume_source, SD_EVENT_ONESHOT);
        if (k < 0)
                log_warning_errno(k, "HTTP server: failed to schedule a resumed connection: %m");
}

static int request_can_reply(const HttpRequest *r, unsigned status) {
        if (status < 200 || status > 599)
                return -EINVAL;
        /* A request is answered once: from the handler, while it is kept, or by the server itself
         * while the body arrives (413). */
        if (r->state != REQUEST_HANDLING && r->state != REQUEST_KEPT && r->state != REQUEST_RECEIVING)
                return -EBUSY;
        return 0;
}

/* Stores resp (consumed) as the reply; a kept request's connection resumes, and the access handler
 * queues the response on its next call. */
static int request_set_response(HttpRequest *r, unsigned status, const char *content_type,
                                struct MHD_Response *resp) {
        if (content_type &&
            MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type) != MHD_YES)
                goto fail;
        for (size_t i = 0; i < r->headers_size;) {
                const char *name = r->headers + i;
                const char *value = name + strlen(name) + 1;

                if (MHD_add_response_header(resp, name, value) != MHD_YES)
                        goto fail;
                i = (size_t) (value - r->headers) + strlen(value) + 1;
        }

        r->response = resp;
        r->status = status;
        if (r->state == REQUEST_KEPT)
                server_resume(r->server, r);
        r->state = REQUEST_REPLIED;
        return 0;

fail:
        MHD_destroy_response(resp);
        return -ENOMEM;
}

#if MHD_VERSION >= 0x00097302
typedef struct WipedBuffer {
        size_t size;
        uint8_t data[];
} WipedBuffer;

static void wiped_buffer_free(void *cls) {
        WipedBuffer *b = cls;

        explicit_bzero(b->data, b->size);
        free(b);
}

/* A copy of body that is wiped once sent: replies may carry keys. */
static struct MHD_Response *response_new_wiped(const void *body, size_t size) {
        struct MHD_Response *resp;
        WipedBuffer *b;

        b = malloc(offsetof(WipedBuffer, data) + size);
        if (!b)
                return NULL;
        b->size = size;
        memcpy(b->data, body, size);
        resp = MHD_create_response_from_buffer_with_free_callback_cls(size, b->data, wiped_buffer_free, b);
        if (!resp)
                wiped_buffer_free(b);
        return resp;
}
#else
static struct MHD_Response *response_new_wiped(const void *body, size_t size) {
        return MHD_create_response_from_buffer(size, (void *) body, MHD_RESPMEM_MUST_COPY);
}
#endif

int http_request_reply(HttpRequest *r, unsigned status, const char *content_type, const void *body,
                       size_t size) {
        struct MHD_Response *resp;
        int k;

        assert(r);
        assert(body || size == 0);

        if (request_drop_if_orphaned(r))
                return 0;
        k = request_can_reply(r, status);
        if (k < 0)
                return k;

        if (size == 0)
                resp = MHD_create_response_from_buffer(0, (void *) "", MHD_RESPMEM_PERSISTENT);
        else
                resp = response_new_wiped(body, size);
        if (!resp)
                return -ENOMEM;
        return request_set_response(r, status, content_type, resp);
}

#if MHD_VERSION >= 0x00097302
static void json_response_free(void *cls) {
        json_object_put(cls);
}
#endif

int http_request_reply_json(HttpRequest *r, unsigned status, json_object *o) {
        _cleanup_json_ json_object *owned = o;
        struct MHD_Response *resp;
        const char *text;
        size_t size;
        int k;

        assert(r);

        if (request_drop_if_orphaned(r))
                return 0;
        k = request_can_reply(r, status);
        if (k < 0)
                return k;

        text = json_object_to_json_string_length(o, JSON_C_TO_STRING_DSKE, &size);
        if (!text)
                return -ENOMEM;
#if MHD_VERSION >= 0x00097302
        /* The text lives in o's own print buffer: the response keeps o alive instead of copying. */
        resp = MHD_create_response_from_buffer_with_free_callback_cls(size, (void *) text,
                                                                      json_response_free, o);
        if (!resp)
                return -ENOMEM;
        TAKE_PTR(owned);
#else
        resp = MHD_create_response_from_buffer(size, (void *) text, MHD_RESPMEM_MUST_COPY);
        if (!resp)
                return -ENOMEM;
#endif
        return request_set_response(r, status, "application/json", resp);
}

int http_request_reply_error(HttpRequest *r, unsigned status, json_object *details, const char *format,
                             ...) {
        _cleanup_json_ json_object *d = details, *o = NULL;
        _cleanup_free_ char *message = NULL;
        json_object *m;
        va_list ap;
        int k;

        assert(r);
        assert(format);

        if (request_drop_if_orphaned(r))
                return 0;
        k = request_can_reply(r, status);
        if (k < 0)
                return k;

        va_start(ap, format);
        k = vasprintf(&message, format, ap);
        va_end(ap);
        if (k < 0) {
                message = NULL;
                return -ENOMEM;
        }

        o = json_object_new_object();
        if (!o)
                return -ENOMEM;
        m = json_object_new_string(message);
        if (!m || json_object_object_add(o, "message", m) < 0) {
                json_object_put(m);
                return -ENOMEM;
        }
        /* A NULL value is serialised as JSON null. */
        if (json_object_object_add(o, "details", d) < 0)
                return -ENOMEM;
        TAKE_PTR(d);
        return http_request_reply_json(r, status, TAKE_PTR(o));
}

static bool header_name_is_valid(const char *name) {
        if (isempty(name))
                return false;
        for (const char *p = name; *p; p++)
                if (*p <= ' ' || *p >= 127 || *p == ':')
                        return false;
        return true;
}

static bool header_value_is_valid(const char *value) {
        return !strpbrk(value, "\r\n");
}

int http_request_add_header(HttpRequest *r, const char *name, const char *value) {
        size_t n, v;
        int k;

        assert(r);
        assert(name);
        assert(value);

        if (r->orphaned)
                return 0;
        if (r->state != REQUEST_HANDLING && r->state != REQUEST_KEPT)
                return -EBUSY;
        if (!header_name_is_valid(name) || !header_value_is_valid(value))
                return -EINVAL;

        n = strlen(name) + 1;
        v = strlen(value) + 1;
        k = buffer_reserve((void **) &r->headers, &r->headers_alloc, r->headers_size + n + v);
        if (k < 0)
                return k;
        memcpy(r->headers + r->headers_size, name, n);
        memcpy(r->headers + r->headers_size + n, value, v);
        r->headers_size += n + v;
        return 0;
}

bool http_request_replied(const HttpRequest *r) {
        assert(r);
        return r->state == REQUEST_REPLIED || r->state == REQUEST_SENDING;
}

void http_request_release(HttpRequest *r) {
        if (!r)
                return;
        if (request_drop_if_orphaned(r))
                return;

        switch (r->state) {
        case REQUEST_KEPT:
                server_resume(r->server, r);
                r->state = REQUEST_RELEASED;
                break;
        case REQUEST_HANDLING:
                r->state = REQUEST_RELEASED;
                break;
        default:
                /* Already answered: nothing left to give up. */
                break;
        }
}

const char *http_request_method(const HttpRequest *r) {
        assert(r);
        return r->method;
}

const char *http_request_path(const HttpRequest *r) {
        assert(r);
        return r->path;
}

const char *http_request_raw_query(const HttpRequest *r) {
        assert(r);
        return r->orphaned ? "" : r->raw_query;
}

const char *http_request_query(const HttpRequest *r, const char *name) {
        const char *value = NULL;
        size_t size;

        assert(r);
        assert(name);

        if (!r->connection)
                return NULL;
        if (MHD_lookup_connection_value_n(r->connection, MHD_GET_ARGUMENT_KIND, name, strlen(name), &value,
                                          &size) != MHD_YES)
                return NULL;
        /* "?flag" has no value; report it as present and empty. */
        return value ?: "";
}

typedef struct QueryCheck {
        const char *const *allowed;
        uint64_t seen; /* by index in allowed */
        const char *bad;
        int error;
} QueryCheck;

static enum MHD_Result query_check_one(void *cls, enum MHD_ValueKind kind, const char *key,
                                       const char *value) {
        QueryCheck *c = cls;
        size_t i = 0;

        c->bad = key;
        c->error = -EINVAL;
        for (const char *const *a = c->allowed; a && *a; a++, i++)
                if (streq(*a, key)) {
                        uint64_t bit = UINT64_C(1) << i;

                        assert(i < 64);
                        if (c->seen & bit) {
                                c->error = -EEXIST;
                                return MHD_NO;
                        }
                        c->seen |= bit;
                        c->error = 0;
                        return MHD_YES;
                }
        return MHD_NO;
}

int http_request_check_query(const HttpRequest *r, const char *const *allowed, const char **ret_name) {
        QueryCheck c = {.allowed = allowed};

        assert(r);

        if (!r->connection)
                return 0;
        (void) MHD_get_connection_values(r->connection, MHD_GET_ARGUMENT_KIND, query_check_one, &c);
        if (c.error < 0 && ret_name)
                *ret_name = c.bad;
        return c.error;
}

const char *http_request_header(const HttpRequest *r, const char *name) {
        assert(r);
        assert(name);

        if (!r->connection)
                return NULL;
        return MHD_lookup_connection_value(r->connection, MHD_HEADER_KIND, name);
}

const uint8_t *http_request_body(const HttpRequest *r, size_t *ret_size) {
        assert(r);

        if (ret_size)
                *ret_size = r->orphaned ? 0 : r->body_size;
        if (r->orphaned || r->body_size == 0)
                return (const uint8_t *) "";
        return r->body;
}

bool http_request_from_loopback(const HttpRequest *r) {
        const union MHD_ConnectionInfo *info;
        const struct sockaddr *sa;

        assert(r);

        if (!r->connection)
                return false;
        info = MHD_get_connection_info(r->connection, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
        if (!info || !info->client_addr)
                return false;
        sa = info->client_addr;

        if (sa->sa_family == AF_INET) {
                const struct sockaddr_in *in = (const struct sockaddr_in *) sa;
                return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
        }
        if (sa->sa_family == AF_INET6) {
                const struct in6_addr *a = &((const struct sockaddr_in6 *) sa)->sin6_addr;
                return IN6_IS_ADDR_LOOPBACK(a) || (IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127);
        }
        return false;
}

/* MHD calls this once per request, with the request target before it splits off and decodes the
 * query: the one place where the raw query bytes, which MACs cover, can be seen. */
static void *server_log_uri(void *cls, const char *uri, struct MHD_Connection *connection) {
        HttpServer *s = cls;
        HttpRequest *r;
        size_t n;
        char *q;

        r = server_request_acquire(s);
        if (!r)
                return NULL;

        uri = strempty(uri);
        n = strlen(uri);
        if (buffer_reserve((void **) &r->uri, &r->uri_alloc, n + 1) < 0) {
                server_request_recycle(s, r);
                return NULL;
        }
        memcpy(r->uri, uri, n + 1);
        q = memchr(r->uri, '?', n);
        r->raw_query = q ? q + 1 : "";
        r->server = s;
        r->connection = connection;
        r->state = REQUEST_RECEIVING;
        s->n_requests++;
        return r;
}

static void server_request_completed(void *cls, struct MHD_Connection *connection, void **req_cls,
                                     enum MHD_RequestTerminationCode toe) {
        HttpServer *s = cls;
        HttpRequest *r = *req_cls;

        *req_cls = NULL;
        if (!r || r->orphaned)
                return;
        s->n_requests--;
        if (r->state == REQUEST_KEPT) {
                /* The application still holds it: it is freed on its reply or release. */
                server_pending_remove(s, r);
                request_orphan(r);
                return;
        }
        server_request_recycle(s, r);
}

static void server_connection_notify(void *cls, struct MHD_Connection *connection, void **socket_context,
                                     enum MHD_ConnectionNotificationCode toe) {
        HttpServer *s = cls;

        if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
                s->n_connections++;
                s->n_accepted++;
        } else if (s->n_connections > 0)
                s->n_connections--;
}

static enum MHD_Result request_queue(HttpRequest *r) {
        struct MHD_Response *resp = TAKE_PTR(r->response);
        enum MHD_Result ret;

        assert(resp);
        if (r->server->reply_hook && r->server->reply_hook(r->server->reply_hook_userdata) < 0) {
                /* What the reply depends on could not be recorded: it must not leave. */
                MHD_destroy_response(resp);
                r->state = REQUEST_SENDING;
                return MHD_NO;
        }
        ret = MHD_queue_response(r->connection, r->status, resp);
        MHD_destroy_response(resp);
        r->state = REQUEST_SENDING;
        return ret;
}

static enum MHD_Result request_reply_too_large(HttpRequest *r) {
        if (http_request_reply_error(r, MHD_HTTP_CONTENT_TOO_LARGE, NULL, "Request body too large.") < 0)
                return MHD_NO;
        return request_queue(r);
}

/* First call, once the headers are in. A body announced too large is refused before it is read:
 * MHD then sends the 413 and closes the connection. */
static enum MHD_Result request_begin(HttpServer *s, HttpRequest *r) {
        const char *cl;

        cl = MHD_lookup_connection_value(r->connection, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl) {
                unsigned long long v;
                char *end;

                errno = 0;
                v = strtoull(cl, &end, 10);
                /* A malformed length is MHD's to reject; only a valid one tells us anything. */
                if (errno == 0 && end != cl && *end == '\0') {
                        if (v > s->max_body_size)
                                return request_reply_too_large(r);
                        if (buffer_reserve((void **) &r->body, &r->body_alloc,
                                           MIN((size_t) v, KEEP_BUFFER_MAX) + 1) < 0)
                                return MHD_NO;
                }
        }
        return MHD_YES;
}

static enum MHD_Result request_append_body(HttpServer *s, HttpRequest *r, const char *data, size_t size) {
        /* Chunked bodies have no announced length: past the limit the rest is read and dropped, and
         * the 413 goes out at the end. */
        if (r->too_large)
                return MHD_YES;
        if (size > s->max_body_size - r->body_size) {
                r->too_large = true;
                return MHD_YES;
        }
        if (buffer_reserve((void **) &r->body, &r->body_alloc, r->body_size + size + 1) < 0)
                return MHD_NO;
        memcpy(r->body + r->body_size, data, size);
        r->body_size += size;
        r->body[r->body_size] = 0;
        return MHD_YES;
}

static enum MHD_Result request_dispatch(HttpServer *s, HttpRequest *r) {
        int k;

        r->state = REQUEST_HANDLING;
        k = s->handler(r, s->userdata);

        switch (r->state) {
        case REQUEST_HANDLING:
                if (k < 0) {
                        log_debug_errno(k, "Handler for %s %s failed: %m", r->method, r->path);
                        if (http_request_reply_error(r, MHD_HTTP_INTERNAL_SERVER_ERROR, NULL,
                                                     "Internal server error.") < 0)
                                return MHD_NO;
                        return request_queue(r);
                }
                r->state = REQUEST_KEPT;
                server_pending_add(s, r);
                MHD_suspend_connection(r->connection);
                return MHD_YES;
        case REQUEST_REPLIED:
                return request_queue(r);
        default:
                /* Released from within the handler: close the connection without an answer. */
                return MHD_NO;
        }
}

static enum MHD_Result server_access(void *cls, struct MHD_Connection *connection, const char *url,
                                     const char *method, const char *version, const char *upload_data,
                                     size_t *upload_data_size, void **req_cls) {
        HttpServer *s = cls;
        HttpRequest *r = *req_cls;

        if (!r) /* out of memory when the request line arrived */
                return MHD_NO;

        switch (r->state) {
        case REQUEST_RECEIVING:
                if (!r->started) {
                        r->started = true;
                        r->method = method;
                        r->path = url;
                        return request_begin(s, r);
                }
                if (*upload_data_size > 0) {
                        size_t n = *upload_data_size;
                        *upload_data_size = 0;
                        return request_append_body(s, r, upload_data, n);
                }
                if (r->too_large)
                        return request_reply_too_large(r);
                return request_dispatch(s, r);
        case REQUEST_REPLIED:
                /* Resumed after a reply to a kept request. */
                return request_queue(r);
        default:
                return MHD_NO;
        }
}

_printf_(2, 0) static void server_log_mhd(void *cls, const char *format, va_list ap) {
        HttpServer *s = cls;
        char buf[512];
        size_t n;

        (void) vsnprintf(buf, sizeof(buf), format, ap);
        n = strlen(buf);
        while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
                buf[--n] = 0;
        /* While starting, MHD's messages explain a failure; later they are mostly about clients. */
        log_full(s->daemon ? LOG_DEBUG : LOG_WARNING, "HTTP server: %s", buf);
}

static int server_arm_timer(HttpServer *s) {
        MHD_UNSIGNED_LONG_LONG ms;
        uint64_t usec;
        int k;

        if (MHD_get_timeout(s->daemon, &ms) != MHD_YES)
                return sd_event_source_set_enabled(s->timer_source, SD_EVENT_OFF);
        if (ms == 0) {
                /* Work is waiting already: run again on the next iteration, without a timer. */
                k = sd_event_source_set_enabled(s->timer_source, SD_EVENT_OFF);
                if (k < 0)
                        return k;
                return sd_event_source_set_enabled(s->resume_source, SD_EVENT_ONESHOT);
        }

        usec = ms >= TIMER_MAX_USEC / 1000 ? TIMER_MAX_USEC : (uint64_t) ms * 1000;
        k = sd_event_source_set_time_relative(s->timer_source, usec);
        if (k < 0)
                return k;
        k = sd_event_source_set_time_accuracy(s->timer_source, MIN(usec / 4, TIMER_ACCURACY_MAX_USEC) ?: 1);
        if (k < 0)
                return k;
        return sd_event_source_set_enabled(s->timer_source, SD_EVENT_ONESHOT);
}

static void server_run(HttpServer *s) {
        int k;

        if (MHD_run(s->daemon) != MHD_YES)
                log_debug("HTTP server: MHD_run() failed.");
        k = server_arm_timer(s);
        if (k < 0)
                log_warning_errno(k, "HTTP server: failed to arm the timer: %m");
}

static int server_on_io(sd_event_source *source, int fd, uint32_t revents, void *userdata) {
        server_run(userdata);
        return 0;
}

static int server_on_timer(sd_event_source *source, uint64_t usec, void *userdata) {
        server_run(userdata);
        return 0;
}

static int server_on_resume(sd_event_source *source, void *userdata) {
        server_run(userdata);
        return 0;
}

static int listen_socket_open(const char *address, uint16_t port, int *ret_fd) {
        _cleanup_close_ int fd = -EBADF;
        union {
                struct sockaddr sa;
                struct sockaddr_in in;
                struct sockaddr_in6 in6;
        } sa = {};
        socklen_t salen;
        const int one = 1;

        if (inet_pton(AF_INET, address, &sa.in.sin_addr) == 1) {
                sa.in.sin_family = AF_INET;
                sa.in.sin_port = htons(port);
                salen = sizeof(sa.in);
        } else if (inet_pton(AF_INET6, address, &sa.in6.sin6_addr) == 1) {
                sa.in6.sin6_family = AF_INET6;
                sa.in6.sin6_port = htons(port);
                salen = sizeof(sa.in6);
        } else
                return -EINVAL;

        fd = socket(sa.sa.sa_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, IPPROTO_TCP);
        if (fd < 0)
                return -errno;
        if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0)
                return -errno;
        if (bind(fd, &sa.sa, salen) < 0)
                return -errno;
        if (listen(fd, SOMAXCONN) < 0)
                return -errno;

        *ret_fd = TAKE_FD(fd);
        return 0;
}

/* Whether a and b are the same open file. */
static bool fd_same_file(int a, int b) {
        struct stat sa, sb;

        if (fstat(a, &sa) < 0 || fstat(b, &sb) < 0)
                return false;
        return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

int http_server_new(sd_event *event, const HttpServerConfig *config, HttpHandler handler, void *userdata,
                    HttpServer **ret) {
        _cleanup_(http_server_freep) HttpServer *s = NULL;
        _cleanup_close_ int fd = -EBADF, mhd_fd = -EBADF;
        struct sockaddr_storage ss = {};
        socklen_t sslen = sizeof(ss);
        const union MHD_DaemonInfo *info;
        unsigned flags, max_connections, timeout_sec;
        int k;

        assert(event);
        assert(config);
        assert(handler);
        assert(ret);

        s = calloc(1, sizeof(HttpServer));
        if (!s)
                return -ENOMEM;
        *s = (HttpServer){
                .event = sd_event_ref(event),
                .handler = handler,
                .userdata = userdata,
                .max_body_size = config->max_body_size > 0 ? config->max_body_size : DEFAULT_MAX_BODY_SIZE,
        };

        if (config->listen_fd >= 0) {
                fd = fcntl(config->listen_fd, F_DUPFD_CLOEXEC, 3);
                if (fd < 0)
                        return -errno;
                if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) < 0)
                        return -errno;
        } else {
                k = listen_socket_open(config->address ?: DEFAULT_ADDRESS, config->port, &fd);
                if (k < 0)
                        return k;
        }

        if (getsockname(fd, (struct sockaddr *) &ss, &sslen) < 0)
                return -errno;
        if (ss.ss_family == AF_INET) {
                s->port = ntohs(((struct sockaddr_in *) &ss)->sin_port);
                (void) inet_ntop(AF_INET, &((struct sockaddr_in *) &ss)->sin_addr, s->address,
                                 sizeof(s->address));
        } else if (ss.ss_family == AF_INET6) {
                s->port = ntohs(((struct sockaddr_in6 *) &ss)->sin6_port);
                (void) inet_ntop(AF_INET6, &((struct sockaddr_in6 *) &ss)->sin6_addr, s->address,
                                 sizeof(s->address));
        } else
                return -EAFNOSUPPORT;

        /* MHD closes the socket it is given on some failure paths and not on others: hand it a
         * duplicate, so that ours stays well defined. */
        mhd_fd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
        if (mhd_fd < 0)
                return -errno;

        flags = MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG | MHD_USE_TURBO;
        if (ss.ss_family == AF_INET6)
                flags |= MHD_USE_IPv6;

        max_connections = config->max_connections > 0 ? config->max_connections : DEFAULT_MAX_CONNECTIONS;
        timeout_sec = config->timeout_sec > 0 ? config->timeout_sec : DEFAULT_TIMEOUT_SEC;
        /* clang-format off */
        s->daemon = MHD_start_daemon(flags, 0, NULL, NULL, server_access, s,
                                     MHD_OPTION_EXTERNAL_LOGGER, server_log_mhd, s,
                                     MHD_OPTION_LISTEN_SOCKET, (MHD_socket) mhd_fd,
                                     MHD_OPTION_URI_LOG_CALLBACK, server_log_uri, s,
                                     MHD_OPTION_NOTIFY_COMPLETED, server_request_completed, s,
                                     MHD_OPTION_NOTIFY_CONNECTION, server_connection_notify, s,
                                     MHD_OPTION_CONNECTION_LIMIT, max_connections,
                                     MHD_OPTION_CONNECTION_TIMEOUT, timeout_sec,
                                     MHD_OPTION_CONNECTION_MEMORY_LIMIT, CONNECTION_MEMORY_LIMIT,
                                     MHD_OPTION_END);
        /* clang-format on */
        if (!s->daemon) {
                if (!fd_same_file(mhd_fd, fd))
                        TAKE_FD(mhd_fd); /* MHD closed it already */
                return -EIO;
        }
        TAKE_FD(mhd_fd);

        info = MHD_get_daemon_info(s->daemon, MHD_DAEMON_INFO_EPOLL_FD);
        if (!info)
                return -EIO;
        k = sd_event_add_io(event, &s->io_source, info->epoll_fd, EPOLLIN, server_on_io, s);
        if (k < 0)
                return k;
        (void) sd_event_source_set_description(s->io_source, "http-server-io");

        k = sd_event_add_time(event, &s->timer_source, CLOCK_MONOTONIC, 0, 1, server_on_timer, s);
        if (k < 0)
                return k;
        (void) sd_event_source_set_description(s->timer_source, "http-server-timer");

        k = sd_event_add_defer(event, &s->resume_source, server_on_resume, s);
        if (k < 0)
                return k;
        (void) sd_event_source_set_description(s->resume_source, "http-server-resume");
        k = sd_event_source_set_enabled(s->resume_source, SD_EVENT_OFF);
        if (k < 0)
                return k;

        k = server_arm_timer(s);
        if (k < 0)
                return k;

        /* Our copy of the listening socket: MHD has its own now. A socket passed in is ours to
         * close only on success, as the header promises. */
        fd = safe_close(fd);
        if (config->listen_fd >= 0)
                (void) close(config->listen_fd);

        *ret = TAKE_PTR(s);
        return 0;
}

HttpServer *http_server_free(HttpServer *s) {
        HttpRequest *r;

        if (!s)
                return NULL;

        /* MHD must not be stopped with suspended connections: resume them, and leave their requests
         * to the application, which may still reply to them (that frees them). */
        while ((r = s->pending_head)) {
                server_pending_remove(s, r);
                if (s->daemon)
                        MHD_resume_connection(r->connection);
                request_orphan(r);
        }

        s->io_source = sd_event_source_disable_unref(s->io_source);
        s->timer_source = sd_event_source_disable_unref(s->timer_source);
        s->resume_source = sd_event_source_disable_unref(s->resume_source);
        if (s->daemon)
                MHD_stop_daemon(s->daemon);

        while ((r = s->free_head)) {
                s->free_head = r->next;
                request_free(r);
        }
        sd_event_unref(s->event);
        free(s);
        return NULL;
}

uint16_t http_server_get_port(const HttpServer *s) {
        assert(s);
        return s->port;
}

const char *http_server_get_address(const HttpServer *s) {
        assert(s);
        return s->address;
}

int http_server_quiesce(HttpServer *s) {
        MHD_socket fd;

        assert(s);

        if (s->quiesced)
                return 0;
        fd = MHD_quiesce_daemon(s->daemon);
        s->quiesced = true;
        if (fd != MHD_INVALID_SOCKET)
                (void) close(fd);
        return 0;
}

size_t http_server_pending(const HttpServer *s) {
        assert(s);
        return s->n_pending;
}

void http_server_set_reply_hook(HttpServer *s, HttpReplyHook hook, void *userdata) {
        assert(s);
        s->reply_hook = hook;
        s->reply_hook_userdata = userdata;
}

size_t http_server_requests(const HttpServer *s) {
        assert(s);
        return s->n_requests;
}

size_t http_server_connections(const HttpServer *s, uint64_t *ret_accepted) {
        assert(s);
        if (ret_accepted)
                *ret_accepted = s->n_accepted;
        return s->n_connections;
}
