/* SPDX-License-Identifier: MIT */
#pragma once

/* dskectl's outbound HTTP: the daemons' HttpClient on an sd-event loop, with a helper that runs
 * the loop until a batch of calls has completed. Every command uses it, so there is one HTTP code
 * path in the tool. */

#include <json-c/json.h>
#include <stdbool.h>
#include <systemd/sd-event.h>

#include "http-client.h"
#include "macro.h"

typedef struct Ctl {
        sd_event *event;
        HttpClient *http;
} Ctl;

int ctl_new(Ctl **ret);
Ctl *ctl_free(Ctl *c);
DEFINE_TRIVIAL_CLEANUP_FUNC(Ctl *, ctl_free);

typedef struct CtlCall {
        /* Filled in by the caller. */
        const char *method;
        char *url;              /* owned */
        const char *headers[4]; /* NULL-terminated */
        const char *body;       /* borrowed, NUL-terminated */
        unsigned timeout_ms;

        /* Results. */
        bool done;
        int error;     /* 0 when a response arrived, else a negative errno */
        char *message; /* the transport failure */
        long status;
        char *body_text; /* NUL-terminated; may hold key material, so it is wiped when freed */
        size_t body_size;
} CtlCall;

void ctl_call_done(CtlCall *c);

/* Starts every call and runs the loop until all have completed (or failed). Returns 0, or a
 * negative errno when the loop itself failed; per-call failures are in the calls. */
int ctl_run_calls(Ctl *ctl, CtlCall *calls, size_t n);

/* The response body as JSON, when the call succeeded with a parseable body; NULL otherwise. */
json_object *ctl_call_json(const CtlCall *c);

/* Describes a failed call for the user: "GET URL: connection refused" or
 * "GET URL returned status 503: MESSAGE" (MESSAGE from the JSON error body if there is one). */
int ctl_call_describe_failure(const CtlCall *c, char **ret);

/* Prints o as indented JSON with a newline. */
void json_print(json_object *o);
