/* SPDX-License-Identifier: MIT */
#include <stdio.h>

#include "ctl-http.h"
#include "ctl-util.h"
#include "json-util.h"
#include "log.h"
#include "secret.h"

int ctl_new(Ctl **ret) {
        _cleanup_(ctl_freep) Ctl *c = calloc(1, sizeof(Ctl));
        int r;

        if (!c)
                return log_oom();

        r = sd_event_default(&c->event);
        if (r < 0)
                return log_error_errno(r, "Failed to allocate event loop: %m");

        r = http_client_new(c->event, &c->http);
        if (r < 0)
                return log_error_errno(r, "Failed to set up the HTTP client: %m");

        *ret = TAKE_PTR(c);
        return 0;
}

Ctl *ctl_free(Ctl *c) {
        if (!c)
                return NULL;
        http_client_free(c->http);
        sd_event_unref(c->event);
        free(c);
        return NULL;
}

void ctl_call_done(CtlCall *c) {
        free(c->url);
        free(c->message);
        if (c->body_text)
                erase_and_free(c->body_text, c->body_size);
        *c = (CtlCall){};
}

typedef struct Batch {
        size_t pending;
} Batch;

typedef struct CallContext {
        CtlCall *call;
        Batch *batch;
} CallContext;

static void on_call_done(HttpCall *hc, int error, const char *message, const HttpResponse *response,
                         void *userdata) {
        CallContext *ctx = userdata;
        CtlCall *c = ctx->call;

        c->done = true;
        c->error = error;
        if (error < 0) {
                c->message = strdup(message ?: "transport failure");
        } else {
                c->status = response->status;
                c->body_text = secret_alloc(response->body_size + 1);
                if (c->body_text) {
                        memcpy(c->body_text, response->body, response->body_size);
                        c->body_size = response->body_size;
                } else
                        c->error = -ENOMEM;
        }
        ctx->batch->pending--;
}

int ctl_run_calls(Ctl *ctl, CtlCall *calls, size_t n) {
        _cleanup_free_ CallContext *ctx = calloc(n ?: 1, sizeof(CallContext));
        Batch batch = {};
        int r;

        if (!ctx)
                return log_oom();

        for (size_t i = 0; i < n; i++) {
                CtlCall *c = calls + i;
                HttpCallSpec spec = {
                        .method = c->method ?: "GET",
                        .url = c->url,
                        .headers = c->headers[0] ? c->headers : NULL,
                        .body = c->body,
                        .body_size = c->body ? strlen(c->body) : 0,
                        .timeout_ms = c->timeout_ms,
                };

                ctx[i] = (CallContext){.call = c, .batch = &batch};
                r = http_client_call(ctl->http, &spec, on_call_done, ctx + i, NULL);
                if (r < 0) {
                        c->done = true;
                        c->error = r;
                        c->message = strdup(strerror(-r));
                        continue;
                }
                batch.pending++;
        }

        while (batch.pending > 0) {
                r = sd_event_run(ctl->event, UINT64_MAX);
                if (r < 0)
                        return log_error_errno(r, "Event loop failed: %m");
        }
        return 0;
}

json_object *ctl_call_json(const CtlCall *c) {
        if (c->error < 0 || !c->body_text || c->body_size == 0)
                return NULL;

        _cleanup_(json_tokener_freep) json_tokener *tok = json_tokener_new();
        if (!tok)
                return NULL;
        json_object *o = json_tokener_parse_ex(tok, c->body_text, (int) c->body_size);
        if (!o)
                return NULL;
        if (json_tokener_get_parse_end(tok) != c->body_size) {
                json_object_put(o);
                return NULL;
        }
        return o;
}

int ctl_call_describe_failure(const CtlCall *c, char **ret) {
        const char *method = c->method ?: "GET";
        int r;

        if (c->error < 0)
                r = asprintf(ret, "%s %s failed: %s", method, c->url, c->message ?: strerror(-c->error));
        else {
                _cleanup_json_ json_object *o = ctl_call_json(c);
                json_object *m = NULL;
                const char *message = NULL;

                if (o && json_object_object_get_ex(o, "message", &m) &&
                    json_object_is_type(m, json_type_string))
                        message = json_object_get_string(m);
                if (message)
                        r = asprintf(ret, "%s %s returned status %ld: %s", method, c->url, c->status,
                                     message);
                else
                        r = asprintf(ret, "%s %s returned status %ld", method, c->url, c->status);
        }
        return r < 0 ? -ENOMEM : 0;
}

void json_print(json_object *o) {
        const char *s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED |
                                                                  JSON_C_TO_STRING_NOSLASHESCAPE);
        printf("%s\n", s ?: "null");
}
