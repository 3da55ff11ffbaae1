/* SPDX-License-Identifier: MIT */
#pragma once

/* An HTTP/1.1 server on an sd-event loop: libmicrohttpd with MHD_USE_EPOLL and no thread of its
 * own; its epoll fd is an sd-event io source and MHD_get_timeout() drives a timer source.
 *
 * The handler is called once per request, after the whole body arrived (bodies over the limit get
 * 413 without reaching it). It either replies before returning, or keeps the request (the
 * connection is then suspended) and replies later from any loop callback; the connection resumes
 * then. A request whose client went away is still valid until replied to or released.
 *
 * Lifetime: the server owns a request, except while a handler keeps it. Once a kept request is
 * replied to or released the server owns it again, and the caller must not touch it any more. A
 * kept request outlives http_server_free(): replying to it or releasing it then just frees it,
 * and the other accessors return NULL or empty values. */

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <systemd/sd-event.h>

#include "macro.h"

typedef struct HttpServer HttpServer;
typedef struct HttpRequest HttpRequest;

/* Returns 0 after replying or keeping the request for later. A negative return makes the server
 * answer 500 with a JSON error body if nothing was replied. */
typedef int (*HttpHandler)(HttpRequest *req, void *userdata);

typedef struct HttpServerConfig {
        const char *address;      /* numeric IPv4/IPv6 address; NULL means 127.0.0.1 */
        uint16_t port;            /* 0 picks a free port; see http_server_get_port() */
        int listen_fd;            /* a listening socket (socket activation), or -1; the server
                                   * owns it once http_server_new() succeeded */
        size_t max_body_size;     /* 0 means 1 MiB */
        unsigned max_connections; /* 0 means 1024 */
        unsigned timeout_sec;     /* idle connection timeout; 0 means 30 */
} HttpServerConfig;

int http_server_new(sd_event *event, const HttpServerConfig *config, HttpHandler handler, void *userdata,
                    HttpServer **ret);
/* Stops accepting, answers nothing more; kept requests are dropped. Accepts NULL. */
HttpServer *http_server_free(HttpServer *s);
DEFINE_TRIVIAL_CLEANUP_FUNC(HttpServer *, http_server_free);
uint16_t http_server_get_port(const HttpServer *s);
/* The numeric address of the socket listened on: the configured one, or a passed socket's. */
const char *http_server_get_address(const HttpServer *s);
/* Stops accepting new connections; requests in progress and kept ones still complete. */
int http_server_quiesce(HttpServer *s);
/* Number of requests kept by handlers and not yet replied to. */
size_t http_server_pending(const HttpServer *s);
/* Called before each reply is handed to the connection; a negative return closes the connection
 * instead (used to make state durable before anything that depends on it leaves). */
typedef int (*HttpReplyHook)(void *userdata);
void http_server_set_reply_hook(HttpServer *s, HttpReplyHook hook, void *userdata);
/* Requests begun (their headers arrived) and not completed: being received, handled, kept or
 * sent. Idle keep-alive connections have none. */
size_t http_server_requests(const HttpServer *s);
/* Connections open now; *ret_accepted (optional) gets how many were accepted since the start. */
size_t http_server_connections(const HttpServer *s, uint64_t *ret_accepted);

const char *http_request_method(const HttpRequest *r);
/* The percent-decoded path without the query. */
const char *http_request_path(const HttpRequest *r);
/* The query exactly as received (still percent-encoded), without '?'; "" when there is none. */
const char *http_request_raw_query(const HttpRequest *r);
/* A percent-decoded query argument, NULL when absent. */
const char *http_request_query(const HttpRequest *r, const char *name);
/* Checks the query's argument names against the NULL-terminated list allowed (at most 64): returns
 * -EINVAL for a name not in it, -EEXIST for a name given twice, and sets *ret_name (borrowed) to
 * that name; otherwise 0. */
int http_request_check_query(const HttpRequest *r, const char *const *allowed, const char **ret_name);
/* A request header (case-insensitive name), NULL when absent. */
const char *http_request_header(const HttpRequest *r, const char *name);
const uint8_t *http_request_body(const HttpRequest *r, size_t *ret_size);
bool http_request_from_loopback(const HttpRequest *r);

/* Adds a header to the reply to come. */
int http_request_add_header(HttpRequest *r, const char *name, const char *value);
/* Replies with the given body (copied); content_type NULL means no body type header. The copy is
 * wiped once sent, so this is the call for replies that carry key material. */
int http_request_reply(HttpRequest *r, unsigned status, const char *content_type, const void *body,
                       size_t size);
/* Replies with o serialised compactly (application/json); takes the reference to o. The text is
 * sent from o's own buffer, which json-c does not wipe. */
int http_request_reply_json(HttpRequest *r, unsigned status, json_object *o);
/* Replies {"message": message, "details": details} (details may be NULL: JSON null); takes the
 * reference to details. */
int http_request_reply_error(HttpRequest *r, unsigned status, json_object *details, const char *format, ...)
        _printf_(4, 5);
/* Whether a reply was already given. */
bool http_request_replied(const HttpRequest *r);
/* Gives up a kept request without a reply: its connection is closed. Accepts NULL. */
void http_request_release(HttpRequest *r);
