/* SPDX-License-Identifier: MIT */
#include <assert.h>
#include <curl/curl.h>
#include <strings.h>
#include <sys/epoll.h>
#include <time.h>

#include "buffer.h"
#include "http-client.h"
#include "log.h"

#define DEFAULT_TIMEOUT_MS 5000u
#define CONNECT_TIMEOUT_MS 5000u
/* curl allocates its receive buffer for every transfer. Its default of 16 KiB is too large for
 * malloc's per-thread cache and took over 1% of a client's time; 1 KiB, curl's smallest, mostly
 * comes from the cache, at half the cost, and holds the reply to a key share. Expected large
 * replies get a buffer of their size, up to curl's largest. */
#define RECEIVE_BUFFER_MIN ((size_t) 1024)
#define RECEIVE_BUFFER_MAX ((size_t) 512 * 1024)
/* Our peers answer with a few kilobytes of JSON; anything far larger is a broken or hostile peer. */
#define MAX_RESPONSE_BODY    ((size_t) 4 * 1024 * 1024)
#define MAX_RESPONSE_HEADERS ((size_t) 64 * 1024)
/* Connections kept alive across calls, for all hosts together: enough for every call in flight. */
#define MAX_CACHED_CONNECTIONS 256L
/* Recycled calls, as many as there are cached connections: a burst of calls then finds easy handles
 * ready, rather than creating and destroying one per call beyond the cap. */
#define FREE_CALLS_MAX  256u
#define KEEP_BUFFER_MAX ((size_t) 64 * 1024)
/* curl's deadlines are request and connect timeouts: firing them a little late costs nothing, while
 * re-arming the timer on every change costs a system call. */
#define TIMER_ACCURACY_MAX_USEC ((uint64_t) 1000 * 1000)
/* Ready sockets taken per turn of the event loop; more wait for the next turn. */
#define EPOLL_BATCH 32
/* Origins kept parsed (see call_set_url()): a client calls one per hub. */
#define ORIGINS_MAX 64u

typedef struct CurlSocket CurlSocket;

/* A socket of curl's, watched from its creation to its closing. Between transfers the connection
 * waits in curl's cache; its watch stays in place (for input only) so that the next transfer on it
 * needs no epoll_ctl(). */
struct CurlSocket {
        HttpClient *client;
        int fd;
        uint32_t events; /* what the client's epoll watches */
        bool enabled;    /* in the client's epoll */
        bool wanted;     /* curl wants to hear about this socket */
};

struct HttpCall {
        HttpClient *client;
        CURL *easy;
        HttpCall *prev, *next; /* the client's running list, or its free list */
        bool running;
        bool too_large;
        bool out_of_memory;

        HttpCallDone done;
        void *userdata;

        /* The request's header lines, linked through nodes of a reused array and copied into a reused
         * text buffer: no allocation per call once the buffers are big enough. */
        struct curl_slist *request_headers;
        struct curl_slist *header_nodes;
        size_t header_nodes_alloc; /* in bytes */
        char *header_text;
        size_t header_text_alloc;
        uint8_t *request_body;
        size_t request_body_alloc;

        uint8_t *body; /* NUL-terminated */
        size_t body_size, body_alloc;
        char *headers; /* "Name\0Value\0"... of the final response */
        size_t headers_size, headers_alloc;

        char error[CURL_ERROR_SIZE];
};

/* A URL's origin, parsed once. */
typedef struct ParsedOrigin {
        char *text; /* scheme://host[:port] */
        size_t size;
        CURLU *url;
} ParsedOrigin;

struct HttpClient {
        sd_event *event;
        CURLM *multi;
        sd_event_source *timer_source;
        sd_event_source *defer_source; /* curl's "time out now", without a timer */
        /* curl's sockets are watched by an epoll instance of our own, itself one source of the event
         * loop: the answers of several hubs are then handled in one turn of the loop, not one each. */
        int epoll_fd;
        sd_event_source *epoll_source;
        CurlSocket **sockets; /* by file descriptor */
        size_t n_sockets;

        HttpCall *running_head;
        size_t n_running;
        HttpCall *free_head;
        size_t n_free;

        ParsedOrigin origins[ORIGINS_MAX];
        size_t n_origins;
};

/* Bodies may carry encrypted shares and signatures: wipe them before the memory is reused. */
static void buffer_drop(void **buf, size_t *alloc, size_t used) {
        if (*buf)
                explicit_bzero(*buf, MIN(used + 1, *alloc));
        if (*alloc > KEEP_BUFFER_MAX) {
                free(*buf);
                *buf = NULL;
                *alloc = 0;
        }
}

static void running_add(HttpClient *c, HttpCall *call) {
        call->prev = NULL;
        call->next = c->running_head;
        if (c->running_head)
                c->running_head->prev = call;
        c->running_head = call;
        c->n_running++;
        call->running = true;
}

static void running_remove(HttpClient *c, HttpCall *call) {
        if (call->prev)
                call->prev->next = call->next;
        else
                c->running_head = call->next;
        if (call->next)
                call->next->prev = call->prev;
        call->prev = call->next = NULL;
        assert(c->n_running > 0);
        c->n_running--;
        call->running = false;
}

static void call_destroy(HttpCall *call) {
        if (!call)
                return;
        if (call->easy)
                curl_easy_cleanup(call->easy);
        free(call->header_nodes);
        free(call->header_text);
        if (call->request_body)
                explicit_bzero(call->request_body, call->request_body_alloc);
        free(call->request_body);
        if (call->body)
                explicit_bzero(call->body, call->body_alloc);
        free(call->body);
        free(call->headers);
        free(call);
}

static int call_setup_fixed(HttpCall *call);

static HttpCall *client_call_acquire(HttpClient *c) {
        HttpCall *call = c->free_head;

        /* A recycled handle keeps the options common to every call; call_setup() sets all others. */
        if (call) {
                c->free_head = call->next;
                c->n_free--;
                call->next = NULL;
                return call;
        }

        call = calloc(1, sizeof(HttpCall));
        if (!call)
                return NULL;
        call->client = c;
        call->easy = curl_easy_init();
        if (!call->easy || call_setup_fixed(call) < 0) {
                call_destroy(call);
                return NULL;
        }
        return call;
}

/* A call that is done or cancelled: its easy handle is already out of the multi handle. */
static void client_call_recycle(HttpClient *c, HttpCall *call) {
        call->request_headers = NULL;
        buffer_drop((void **) &call->header_nodes, &call->header_nodes_alloc, 0);
        buffer_drop((void **) &call->header_text, &call->header_text_alloc, 0);
        buffer_drop((void **) &call->request_body, &call->request_body_alloc, call->request_body_alloc);
        buffer_drop((void **) &call->body, &call->body_alloc, call->body_size);
        call->body_size = 0;
        call->headers_size = 0;
        call->done = NULL;
        call->userdata = NULL;
        call->too_large = call->out_of_memory = false;
        call->error[0] = 0;

        if (c->n_free >= FREE_CALLS_MAX) {
                call_destroy(call);
                return;
        }
        call->prev = NULL;
        call->next = c->free_head;
        c->free_head = call;
        c->n_free++;
}

static int curl_code_to_errno(CURLcode code) {
        switch (code) {
        case CURLE_COULDNT_CONNECT:
                return -ECONNREFUSED;
        case CURLE_OPERATION_TIMEDOUT:
                return -ETIMEDOUT;
        case CURLE_COULDNT_RESOLVE_HOST:
                return -EHOSTUNREACH;
        case CURLE_OUT_OF_MEMORY:
                return -ENOMEM;
        case CURLE_UNSUPPORTED_PROTOCOL:
        case CURLE_URL_MALFORMAT:
                return -EINVAL;
        case CURLE_SEND_ERROR:
        case CURLE_RECV_ERROR:
        case CURLE_GOT_NOTHING:
        case CURLE_PARTIAL_FILE:
                return -EIO;
        default:
                return -EPROTO;
        }
}

static void call_finish(HttpCall *call, CURLcode code) {
        HttpClient *c = call->client;
        HttpResponse response = {};
        const char *message = NULL;
        int error = 0;

        running_remove(c, call);
        (void) curl_multi_remove_handle(c->multi, call->easy);

        if (code == CURLE_OK) {
                long status = 0;

                (void) curl_easy_getinfo(call->easy, CURLINFO_RESPONSE_CODE, &status);
                response.status = status;
                response.body = call->body_size > 0 ? call->body : (const uint8_t *) "";
                response.body_size = call->body_size;
        } else {
                response.body = (const uint8_t *) "";
                if (call->too_large) {
                        error = -EMSGSIZE;
                        message = "Response too large.";
                } else if (call->out_of_memory) {
                        error = -ENOMEM;
                        message = "Out of memory.";
                } else {
                        error = curl_code_to_errno(code);
                        message = call->error[0] ? call->error : curl_easy_strerror(code);
                }
        }

        call->done(call, error, message, &response, call->userdata);
        client_call_recycle(c, call);
}

/* Runs the callbacks of finished calls. They may start and cancel calls: curl drops the message of
 * a handle removed meanwhile, so nothing read here goes stale. */
static void client_process_done(HttpClient *c) {
        CURLMsg *msg;
        int left;

        while ((msg = curl_multi_info_read(c->multi, &left))) {
                HttpCall *call = NULL;
                CURLcode code;

                if (msg->msg != CURLMSG_DONE)
                        continue;
                code = msg->data.result;
                if (curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **) &call) != CURLE_OK ||
                    !call)
                        continue;
                call_finish(call, code);
        }
}

static void client_run_timeout(HttpClient *c) {
        int running;

        (void) curl_multi_socket_action(c->multi, CURL_SOCKET_TIMEOUT, 0, &running);
        client_process_done(c);
}

static int curl_socket_watch(CurlSocket *s, uint32_t events) {
        struct epoll_event ev = {.events = events, .data.fd = s->fd};

        if (s->enabled && s->events == events)
                return 0;
        if (epoll_ctl(s->client->epoll_fd, s->enabled ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, s->fd, &ev) < 0)
                return -errno;
        s->events = events;
        s->enabled = true;
        return 0;
}

static void curl_socket_unwatch(CurlSocket *s) {
        /* Level-triggered errors and hangups are reported even for no events: only removal silences
         * a socket. */
        if (s->enabled && epoll_ctl(s->client->epoll_fd, EPOLL_CTL_DEL, s->fd, NULL) >= 0)
                s->enabled = false;
}

static CurlSocket *client_socket_get(HttpClient *c, int fd);

static int client_on_io(sd_event_source *source, int fd, uint32_t revents, void *userdata) {
        HttpClient *c = userdata;
        struct epoll_event events[EPOLL_BATCH];
        int n, running;

        n = epoll_wait(c->epoll_fd, events, EPOLL_BATCH, 0);
        if (n < 0) {
                /* Returning an error would disable the source, and with it every call for good. */
                if (errno != EINTR)
                        log_debug_errno(errno, "HTTP client: epoll_wait() failed: %m");
                return 0;
        }

        for (int i = 0; i < n; i++) {
                /* Looked up by descriptor: curl may have closed a socket of this batch meanwhile. */
                CurlSocket *s = client_socket_get(c, events[i].data.fd);
                uint32_t e = events[i].events;
                int action = 0;

                if (!s)
                        continue;
                if (!s->wanted) {
                        /* An idle cached connection: the peer closed it or sent something unasked
                         * for. curl finds out when it next looks at the connection; until then, stay
                         * quiet. */
                        curl_socket_unwatch(s);
                        continue;
                }

                if (e & EPOLLIN)
                        action |= CURL_CSELECT_IN;
                if (e & EPOLLOUT)
                        action |= CURL_CSELECT_OUT;
                if (e & (EPOLLERR | EPOLLHUP))
                        action |= CURL_CSELECT_ERR;
                (void) curl_multi_socket_action(c->multi, s->fd, action, &running);
        }
        client_process_done(c);
        return 0;
}

static int client_on_timer(sd_event_source *source, uint64_t usec, void *userdata) {
        client_run_timeout(userdata);
        return 0;
}

static int client_on_defer(sd_event_source *source, void *userdata) {
        client_run_timeout(userdata);
        return 0;
}

static CurlSocket *client_socket_get(HttpClient *c, int fd) {
        return fd >= 0 && (size_t) fd < c->n_sockets ? c->sockets[fd] : NULL;
}

static void curl_socket_free(CurlSocket *s) {
        HttpClient *c = s->client;

        assert(c->sockets[s->fd] == s);
        c->sockets[s->fd] = NULL;
        curl_socket_unwatch(s);
        free(s);
}

static int client_socket_new(HttpClient *c, int fd, uint32_t events, CurlSocket **ret) {
        CurlSocket *s;
        int k;

        if ((size_t) fd >= c->n_sockets) {
                size_t n = MAX((size_t) fd + 1, c->n_sockets * 2);
                CurlSocket **a = reallocarray(c->sockets, n, sizeof(CurlSocket *));
                if (!a)
                        return -ENOMEM;
                memset(a + c->n_sockets, 0, (n - c->n_sockets) * sizeof(CurlSocket *));
                c->sockets = a;
                c->n_sockets = n;
        }

        s = calloc(1, sizeof(CurlSocket));
        if (!s)
                return -ENOMEM;
        s->client = c;
        s->fd = fd;
        k = curl_socket_watch(s, events);
        if (k < 0) {
                free(s);
                return k;
        }
        c->sockets[fd] = s;
        *ret = s;
        return 0;
}

static int client_on_curl_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp) {
        HttpClient *c = userp;
        CurlSocket *s = client_socket_get(c, fd);
        uint32_t events = 0;
        int k;

        if (what == CURL_POLL_REMOVE) {
                /* The socket stays watched until curl closes it (client_on_curl_close). Waiting for
                 * output on an idle connection would wake us up for nothing. */
                if (s) {
                        s->wanted = false;
                        if (s->enabled && (s->events & EPOLLOUT) && curl_socket_watch(s, EPOLLIN) < 0)
                                curl_socket_free(s);
                }
                return 0;
        }

        if (what & CURL_POLL_IN)
                events |= EPOLLIN;
        if (what & CURL_POLL_OUT)
                events |= EPOLLOUT;

        if (s)
                k = curl_socket_watch(s, events);
        else
                k = client_socket_new(c, fd, events, &s);
        if (k < 0) {
                log_debug_errno(k, "HTTP client: failed to watch socket %i: %m", fd);
                return -1;
        }
        s->wanted = true;
        return 0;
}

static int client_on_curl_close(void *userp, curl_socket_t fd) {
        HttpClient *c = userp;
        CurlSocket *s = client_socket_get(c, fd);

        if (s)
                curl_socket_free(s);
        return close(fd) < 0 ? 1 : 0;
}

static int client_on_curl_timer(CURLM *multi, long timeout_ms, void *userp) {
        HttpClient *c = userp;
        int k;

        if (timeout_ms == 0) {
                /* "Run again now", asked for on every new transfer: a defer source costs no timer. */
                k = sd_event_source_set_enabled(c->timer_source, SD_EVENT_OFF);
                if (k >= 0)
                        k = sd_event_source_set_enabled(c->defer_source, SD_EVENT_ONESHOT);
        } else {
                k = sd_event_source_set_enabled(c->defer_source, SD_EVENT_OFF);
                if (k >= 0 && timeout_ms < 0)
                        k = sd_event_source_set_enabled(c->timer_source, SD_EVENT_OFF);
                else if (k >= 0) {
                        uint64_t usec = (uint64_t) timeout_ms * 1000;

                        k = sd_event_source_set_time_relative(c->timer_source, usec);
                        if (k >= 0)
                                k = sd_event_source_set_time_accuracy(
                                        c->timer_source, MIN(usec / 4, TIMER_ACCURACY_MAX_USEC) ?: 1);
                        if (k >= 0)
                                k = sd_event_source_set_enabled(c->timer_source, SD_EVENT_ONESHOT);
                }
        }
        if (k < 0) {
                log_debug_errno(k, "HTTP client: failed to arm the timer: %m");
                return -1;
        }
        return 0;
}

int http_client_new(sd_event *event, HttpClient **ret) {
        _cleanup_(http_client_freep) HttpClient *c = NULL;
        int k;

        assert(event);
        assert(ret);

        /* Reference counted by curl; balanced in http_client_free(). */
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
                return -EIO;

        c = calloc(1, sizeof(HttpClient));
        if (!c) {
                curl_global_cleanup();
                return -ENOMEM;
        }
        c->event = sd_event_ref(event);
        c->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
        if (c->epoll_fd < 0)
                return -errno;

        c->multi = curl_multi_init();
        if (!c->multi)
                return -ENOMEM;
        if (curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, client_on_curl_socket) != CURLM_OK ||
            curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c) != CURLM_OK ||
            curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, client_on_curl_timer) != CURLM_OK ||
            curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, c) != CURLM_OK ||
            curl_multi_setopt(c->multi, CURLMOPT_MAXCONNECTS, MAX_CACHED_CONNECTIONS) != CURLM_OK ||
            curl_multi_setopt(c->multi, CURLMOPT_MAX_HOST_CONNECTIONS, 0L) != CURLM_OK)
                return -EIO;

        k = sd_event_add_io(event, &c->epoll_source, c->epoll_fd, EPOLLIN, client_on_io, c);
        if (k < 0)
                return k;
        (void) sd_event_source_set_description(c->epoll_source, "http-client-io");

        k = sd_event_add_time(event, &c->timer_source, CLOCK_MONOTONIC, 0, 1, client_on_timer, c);
        if (k < 0)
                return k;
        (void) sd_event_source_set_description(c->timer_source, "http-client-timer");
        k = sd_event_source_set_enabled(c->timer_source, SD_EVENT_OFF);
        if (k < 0)
                return k;

        k = sd_event_add_defer(event, &c->defer_source, client_on_defer, c);
        if (k < 0)
                return k;
        (void) sd_event_source_set_description(c->defer_source, "http-client-run");
        k = sd_event_source_set_enabled(c->defer_source, SD_EVENT_OFF);
        if (k < 0)
                return k;

        *ret = TAKE_PTR(c);
        return 0;
}

HttpClient *http_client_free(HttpClient *c) {
        HttpCall *call;

        if (!c)
                return NULL;

        while ((call = c->running_head)) {
                running_remove(c, call);
                (void) curl_multi_remove_handle(c->multi, call->easy);
                call_destroy(call);
        }
        while ((call = c->free_head)) {
                c->free_head = call->next;
                call_destroy(call);
        }
        /* Closing the cached connections goes through client_on_curl_close(), while c is still here. */
        if (c->multi)
                (void) curl_multi_cleanup(c->multi);
        for (size_t i = 0; i < c->n_sockets; i++)
                if (c->sockets[i])
                        curl_socket_free(c->sockets[i]);
        free(c->sockets);
        for (size_t i = 0; i < c->n_origins; i++) {
                free(c->origins[i].text);
                curl_url_cleanup(c->origins[i].url);
        }
        sd_event_source_disable_unref(c->epoll_source);
        safe_close(c->epoll_fd);
        sd_event_source_disable_unref(c->timer_source);
        sd_event_source_disable_unref(c->defer_source);
        sd_event_unref(c->event);
        free(c);
        curl_global_cleanup();
        return NULL;
}

static size_t call_on_write(char *data, size_t size, size_t n, void *userdata) {
        HttpCall *call = userdata;

        assert(size == 1);
        if (n > MAX_RESPONSE_BODY - call->body_size) {
                call->too_large = true;
                return 0;
        }
        if (buffer_reserve((void **) &call->body, &call->body_alloc, call->body_size + n + 1) < 0) {
                call->out_of_memory = true;
                return 0;
        }
        memcpy(call->body + call->body_size, data, n);
        call->body_size += n;
        call->body[call->body_size] = 0;
        return n;
}

static bool is_blank(char c) {
        return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static size_t call_on_header(char *data, size_t size, size_t n, void *userdata) {
        HttpCall *call = userdata;
        const char *colon, *name_end, *value, *value_end;
        size_t nl, vl;

        assert(size == 1);

        /* A status line starts a new response (after an interim "100 Continue"): only the headers
         * of the final one count. */
        if (n >= 5 && memcmp(data, "HTTP/", 5) == 0) {
                call->headers_size = 0;
                return n;
        }
        colon = memchr(data, ':', n);
        if (!colon || colon == data)
                return n;

        name_end = colon;
        while (name_end > data && is_blank(name_end[-1]))
                name_end--;
        value = colon + 1;
        value_end = data + n;
        while (value < value_end && is_blank(*value))
                value++;
        while (value_end > value && is_blank(value_end[-1]))
                value_end--;

        nl = (size_t) (name_end - data);
        vl = (size_t) (value_end - value);
        if (nl + vl + 2 > MAX_RESPONSE_HEADERS - call->headers_size) {
                call->too_large = true;
                return 0;
        }
        if (buffer_reserve((void **) &call->headers, &call->headers_alloc,
                           call->headers_size + nl + vl + 2) < 0) {
                call->out_of_memory = true;
                return 0;
        }
        memcpy(call->headers + call->headers_size, data, nl);
        call->headers[call->headers_size + nl] = 0;
        memcpy(call->headers + call->headers_size + nl + 1, value, vl);
        call->headers[call->headers_size + nl + 1 + vl] = 0;
        call->headers_size += nl + vl + 2;
        return n;
}

const char *http_call_response_header(const HttpCall *call, const char *name) {
        assert(call);
        assert(name);

        for (size_t i = 0; i < call->headers_size;) {
                const char *h = call->headers + i;
                const char *v = h + strlen(h) + 1;

                if (strcasecmp(h, name) == 0)
                        return v;
                i = (size_t) (v - call->headers) + strlen(v) + 1;
        }
        return NULL;
}

static bool url_is_http(const char *url) {
        return strncasecmp(url, "http://", 7) == 0 || strncasecmp(url, "https://", 8) == 0;
}

/* "Name: value" lines: whether name is among them. */
static bool headers_have(const char *const *headers, const char *name) {
        size_t n = strlen(name);

        for (const char *const *h = headers; h && *h; h++)
                if (strncasecmp(*h, name, n) == 0 && (*h)[n] == ':')
                        return true;
        return false;
}

/* Sets the request header lines: the caller's, then the extra ones. */
static int call_set_headers(HttpCall *call, const char *const *headers, const char *const *extra) {
        size_t n_headers = 0, n_extra = 0, text = 0, pos = 0;
        struct curl_slist *nodes;
        int k;

        for (const char *const *h = headers; h && *h; h++, n_headers++) {
                if (strpbrk(*h, "\r\n"))
                        return -EINVAL;
                text += strlen(*h) + 1;
        }
        for (const char *const *h = extra; *h; h++, n_extra++)
                text += strlen(*h) + 1;
        assert(n_extra > 0);

        /* Both reserved before anything points into them. */
        k = buffer_reserve((void **) &call->header_nodes, &call->header_nodes_alloc,
                           (n_headers + n_extra) * sizeof(struct curl_slist));
        if (k < 0)
                return k;
        k = buffer_reserve((void **) &call->header_text, &call->header_text_alloc, text);
        if (k < 0)
                return k;

        nodes = call->header_nodes;
        for (size_t i = 0; i < n_headers + n_extra; i++) {
                const char *line = i < n_headers ? headers[i] : extra[i - n_headers];
                size_t l = strlen(line) + 1;

                memcpy(call->header_text + pos, line, l);
                nodes[i] = (struct curl_slist){
                        .data = call->header_text + pos,
                        .next = i + 1 < n_headers + n_extra ? &nodes[i + 1] : NULL,
                };
                pos += l;
        }
        call->request_headers = nodes;
        return 0;
}

#define SETOPT(easy, opt, value)                                                                            \
        do {                                                                                                \
                if (curl_easy_setopt(easy, opt, value) != CURLE_OK)                                         \
                        return -ENOMEM;                                                                     \
        } while (false)

/* The options every call shares, set once per easy handle. */
static int call_setup_fixed(HttpCall *call) {
        CURL *e = call->easy;

        SETOPT(e, CURLOPT_PRIVATE, call);
        SETOPT(e, CURLOPT_ERRORBUFFER, call->error);
        SETOPT(e, CURLOPT_NOSIGNAL, 1L);
#if LIBCURL_VERSION_NUM >= 0x075500
        SETOPT(e, CURLOPT_PROTOCOLS_STR, "http,https");
#else
        SETOPT(e, CURLOPT_PROTOCOLS, (long) (CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
        SETOPT(e, CURLOPT_HTTP_VERSION, (long) CURL_HTTP_VERSION_1_1);
        SETOPT(e, CURLOPT_TCP_NODELAY, 1L);
        SETOPT(e, CURLOPT_TCP_KEEPALIVE, 1L);
        SETOPT(e, CURLOPT_USERAGENT, PACKAGE_NAME "/" PACKAGE_VERSION);
        /* Peers are called directly at the URLs configured for them. Left unset, curl looks up the
         * proxy environment variables again for every transfer. */
        SETOPT(e, CURLOPT_PROXY, "");
        SETOPT(e, CURLOPT_NOPROXY, "");
        SETOPT(e, CURLOPT_WRITEFUNCTION, call_on_write);
        SETOPT(e, CURLOPT_WRITEDATA, call);
        SETOPT(e, CURLOPT_HEADERFUNCTION, call_on_header);
        SETOPT(e, CURLOPT_HEADERDATA, call);
        /* Connections remember this: sockets stay watched until they are really closed. */
        SETOPT(e, CURLOPT_CLOSESOCKETFUNCTION, client_on_curl_close);
        SETOPT(e, CURLOPT_CLOSESOCKETDATA, call->client);
        return 0;
}

/* The parsed form of the origin text[0..size), parsed now if it is new. NULL if it cannot be kept. */
static CURLU *client_origin(HttpClient *c, const char *text, size_t size) {
        ParsedOrigin *p;

        for (size_t i = 0; i < c->n_origins; i++)
                if (c->origins[i].size == size && memcmp(c->origins[i].text, text, size) == 0)
                        return c->origins[i].url;
        if (c->n_origins >= ORIGINS_MAX)
                return NULL;

        p = &c->origins[c->n_origins];
        p->text = strndup(text, size);
        p->url = curl_url();
        if (!p->text || !p->url || curl_url_set(p->url, CURLUPART_URL, p->text, 0) != CURLUE_OK) {
                free(p->text);
                curl_url_cleanup(p->url);
                *p = (ParsedOrigin){};
                return NULL;
        }
        p->size = size;
        c->n_origins++;
        return p->url;
}

/* Whether curl sends the request target t (a path and query) as it is: not if it has a fragment,
 * characters curl would percent-encode or dot segments curl would remove. */
static bool target_is_verbatim(const char *t) {
        static const char other[] = "-._~!$&'()*+,;=:@/?%";
        size_t path_size = strcspn(t, "?");

        if (t[0] != '/')
                return false;
        for (const char *p = t; *p; p++)
                if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
                      strchr(other, *p)))
                        return false;
        for (size_t i = 1; i <= path_size;) {
                size_t n = strcspn(t + i, "/?");

                if ((n == 1 || n == 2) && memcmp(t + i, "..", n) == 0)
                        return false;
                i += n + 1;
        }
        return true;
}

/* Given a URL as text, curl parses it anew for every transfer, prints it back with its
 * byte-at-a-time printf, and prints the path and query once more for the request line: a tenth of a
 * client's time. So each origin (scheme, host and port) is parsed once and handed to curl parsed
 * (CURLOPT_CURLU, which takes precedence over the text and is only copied), and the path and query
 * go as the request target, which curl copies into the request line as they are. The text is set
 * too: curl reports it. A target curl would rewrite, and origins beyond those kept, are left to
 * curl. */
static int call_set_url(HttpCall *call, const char *url) {
        const char *authority = strstr(url, "://") + 3; /* url_is_http() */
        const char *target = authority + strcspn(authority, "/?#");
        CURLU *origin = NULL;

        if (target_is_verbatim(target))
                origin = client_origin(call->client, url, (size_t) (target - url));
        if (curl_easy_setopt(call->easy, CURLOPT_URL, url) != CURLE_OK ||
            curl_easy_setopt(call->easy, CURLOPT_CURLU, origin) != CURLE_OK ||
            curl_easy_setopt(call->easy, CURLOPT_REQUEST_TARGET, origin ? target : NULL) != CURLE_OK)
                return -ENOMEM;
        return 0;
}

/* The options of one call. Every option that differs between calls is set here, each time. */
static int call_setup(HttpCall *call, const HttpCallSpec *spec) {
        CURL *e = call->easy;
        unsigned timeout_ms = spec->timeout_ms > 0 ? spec->timeout_ms : DEFAULT_TIMEOUT_MS;
        bool has_body = spec->body || spec->body_size > 0;
        int k;

        SETOPT(e, CURLOPT_TIMEOUT_MS, (long) timeout_ms);
        SETOPT(e, CURLOPT_CONNECTTIMEOUT_MS, (long) MIN(timeout_ms, CONNECT_TIMEOUT_MS));
        k = call_set_url(call, spec->url);
        if (k < 0)
                return k;
        SETOPT(e, CURLOPT_FRESH_CONNECT, spec->fresh_connection ? 1L : 0L);
        SETOPT(e, CURLOPT_BUFFERSIZE,
               (long) MIN(MAX(spec->reply_size, RECEIVE_BUFFER_MIN), RECEIVE_BUFFER_MAX));
        /* Back to a plain GET: the previous call may have been anything. */
        SETOPT(e, CURLOPT_CUSTOMREQUEST, (char *) NULL);
        SETOPT(e, CURLOPT_HTTPGET, 1L);

        if (has_body) {
                /* Our own copy, reused from call to call; curl sends from it without copying. */
                k = buffer_reserve((void **) &call->request_body, &call->request_body_alloc,
                                   MAX(spec->body_size, (size_t) 1));
                if (k < 0)
                        return k;
                if (spec->body_size > 0)
                        memcpy(call->request_body, spec->body, spec->body_size);
                SETOPT(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) spec->body_size);
                SETOPT(e, CURLOPT_POSTFIELDS, call->request_body);
                if (!streq(spec->method, "POST"))
                        SETOPT(e, CURLOPT_CUSTOMREQUEST, spec->method);
        } else if (streq(spec->method, "GET"))
                SETOPT(e, CURLOPT_HTTPGET, 1L);
        else if (streq(spec->method, "HEAD"))
                SETOPT(e, CURLOPT_NOBODY, 1L);
        else if (streq(spec->method, "POST")) {
                SETOPT(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) 0);
                SETOPT(e, CURLOPT_POSTFIELDS, "");
        } else
                SETOPT(e, CURLOPT_CUSTOMREQUEST, spec->method);

        /* Waiting for "100 Continue" costs a round trip for no gain with bodies this small. */
        if ((has_body || streq(spec->method, "POST")) && !headers_have(spec->headers, "Content-Type"))
                k = call_set_headers(
                        call, spec->headers,
                        (const char *const[]){"Expect:", "Content-Type: application/json", NULL});
        else
                k = call_set_headers(call, spec->headers, (const char *const[]){"Expect:", NULL});
        if (k < 0)
                return k;
        SETOPT(e, CURLOPT_HTTPHEADER, call->request_headers);
        return 0;
}

int http_client_call(HttpClient *c, const HttpCallSpec *spec, HttpCallDone done, void *userdata,
                     HttpCall **ret) {
        HttpCall *call;
        int k;

        assert(c);
        assert(spec);
        assert(done);

        if (isempty(spec->method) || !spec->url || !url_is_http(spec->url))
                return -EINVAL;
        if (!spec->body && spec->body_size > 0)
                return -EINVAL;

        call = client_call_acquire(c);
        if (!call)
                return -ENOMEM;
        call->done = done;
        call->userdata = userdata;

        k = call_setup(call, spec);
        if (k < 0) {
                client_call_recycle(c, call);
                return k;
        }
        if (curl_multi_add_handle(c->multi, call->easy) != CURLM_OK) {
                client_call_recycle(c, call);
                return -ENOMEM;
        }
        running_add(c, call);

        if (ret)
                *ret = call;
        return 0;
}

void http_call_cancel(HttpCall *call) {
        HttpClient *c;

        /* Inside its own callback a call is already finished: nothing to cancel. */
        if (!call || !call->running)
                return;
        c = call->client;
        running_remove(c, call);
        (void) curl_multi_remove_handle(c->multi, call->easy);
        client_call_recycle(c, call);
}

size_t http_client_running(const HttpClient *c) {
        assert(c);
        return c->n_running;
}
