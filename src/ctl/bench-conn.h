/* SPDX-License-Identifier: MIT */
#pragma once

/* A lean HTTP/1.1 keep-alive connection for the benchmark's load generator. It costs the client side
 * a fraction of a general-purpose HTTP client, which matters when the load generator shares the CPU
 * with the nodes it measures. One request at a time; responses must carry a Content-Length. */

#include <stdint.h>
#include <sys/socket.h>
#include <systemd/sd-event.h>

#include "macro.h"

typedef struct BenchConn BenchConn;

/* error < 0 with message: no response. Otherwise status and body (NUL-terminated, valid during the
 * callback only, wiped afterwards). */
typedef void (*BenchConnDone)(BenchConn *c, int error, const char *message, unsigned status,
                              const char *body, size_t body_size, void *userdata);

int bench_conn_new(sd_event *event, const char *address, uint16_t port, BenchConn **ret);
BenchConn *bench_conn_free(BenchConn *c);
DEFINE_TRIVIAL_CLEANUP_FUNC(BenchConn *, bench_conn_free);

/* Sends request (a whole HTTP/1.1 request, copied), connecting first if needed. */
int bench_conn_request(BenchConn *c, const void *request, size_t size, BenchConnDone done, void *userdata);

/* Whether a request is waiting for its response, and since when (CLOCK_MONOTONIC, µs). */
bool bench_conn_busy(const BenchConn *c, uint64_t *ret_since);

/* Fails the request in flight with error (its callback runs) and drops the connection. */
void bench_conn_abort(BenchConn *c, int error, const char *message);
