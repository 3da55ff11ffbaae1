/* SPDX-License-Identifier: MIT */
#pragma once

/* Outbound HTTP on an sd-event loop: one libcurl multi handle whose socket and timer callbacks
 * map to sd-event io and time sources; finished calls are collected with curl_multi_info_read()
 * right after curl ran, outside any curl callback. Connections are kept alive in the multi
 * handle's cache and reused per host.
 *
 * Completion callbacks may start new calls and cancel others; they must not free the client. */

#include <stddef.h>
#include <stdint.h>
#include <systemd/sd-event.h>

#include "macro.h"

typedef struct HttpClient HttpClient;
typedef struct HttpCall HttpCall;

typedef struct HttpResponse {
        long status;         /* HTTP status, 0 when no response arrived */
        const uint8_t *body; /* NUL-terminated for convenience; size excludes the NUL */
        size_t body_size;
} HttpResponse;

/* Called exactly once per call unless it was cancelled, never from within http_client_call().
 * error is 0 when a response arrived (any status), otherwise a negative errno (-ETIMEDOUT,
 * -ECONNREFUSED, -EHOSTUNREACH, -EMSGSIZE for a body over 4 MiB, -EIO, -EPROTO, ...) and response
 * holds status 0. message describes a transport failure for logs and error details. response and
 * its body are valid only during the callback. */
typedef void (*HttpCallDone)(HttpCall *call, int error, const char *message, const HttpResponse *response,
                             void *userdata);

int http_client_new(sd_event *event, HttpClient **ret);
/* Cancels every call still running (their callbacks are not invoked). Accepts NULL. */
HttpClient *http_client_free(HttpClient *c);
DEFINE_TRIVIAL_CLEANUP_FUNC(HttpClient *, http_client_free);

typedef struct HttpCallSpec {
        const char *method; /* "GET", "POST", "PUT", "DELETE" */
        const char *url;    /* http:// or https:// only */
        /* NULL-terminated "Name: value" lines, or NULL. A body goes out as application/json
         * unless a Content-Type line is among them. */
        const char *const *headers;
        const void *body; /* sent as is; copied */
        size_t body_size;
        unsigned timeout_ms; /* whole call; 0 means 5000 */
        /* Not to be sent twice: goes out on a new connection. libcurl sends a request again, once,
         * when a kept-alive connection turns out closed before any answer, and the peer may have
         * acted on the first one (a hub that issued a PSRD block and was killed before answering). */
        bool fresh_connection;
        /* The size of the reply expected when it is large (a PSRD block), for the size of curl's
         * receive buffer; 0 for a reply of a few KiB at most. Any reply is received in full. */
        size_t reply_size;
} HttpCallSpec;

/* Starts a call. *ret (optional) stays valid until done is called or the call is cancelled. */
int http_client_call(HttpClient *c, const HttpCallSpec *spec, HttpCallDone done, void *userdata,
                     HttpCall **ret);
/* A response header of a completed call (inside the done callback), NULL when absent. */
const char *http_call_response_header(const HttpCall *call, const char *name);
/* Cancels a running call; its callback is not invoked. Accepts NULL. */
void http_call_cancel(HttpCall *call);
size_t http_client_running(const HttpClient *c);
