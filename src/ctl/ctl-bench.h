/* SPDX-License-Identifier: MIT */
#pragma once

/* A load generator for a running topology: keeps `concurrency` key pairs in flight (enc_keys on the
 * master's KME, then dec_keys on the slave's), all on one event loop through the asynchronous
 * HttpClient, checks that both sides got the same keys and reports throughput, latency and the
 * PSRD spent per key. */

#include <stdbool.h>
#include <stdint.h>

#include "ctl-http.h"
#include "topology-run.h"

typedef struct BenchOptions {
        const char *master;     /* NULL: the first SAE of the first client that has one */
        const char *slave;      /* NULL: the first SAE of the next such client */
        unsigned concurrency;   /* pairs in flight */
        uint64_t duration_usec; /* run this long ... */
        uint64_t pairs;         /* ... or until this many request pairs completed (wins when set) */
        unsigned size_bits;
        unsigned number; /* keys per request */
        bool up;         /* bring the topology up first and down afterwards */
        bool json;
        TopologyRunOptions run;
} BenchOptions;

#define BENCH_CONCURRENCY_DEFAULT 16u
#define BENCH_DURATION_DEFAULT    (10 * 1000000ULL)
#define BENCH_SIZE_DEFAULT        256u

int bench_run(Ctl *ctl, const char *path, const BenchOptions *o);
