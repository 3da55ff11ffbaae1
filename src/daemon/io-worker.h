/* SPDX-License-Identifier: MIT */
#pragma once

/* A thread that runs blocking file work (writes, fsync, renames) in the order it was submitted,
 * so that the event loop never waits for the disk. Each job's completion is reported back on the
 * event loop, in submission order. The jobs own their data: the thread never touches what the
 * loop works on. */

#include <stddef.h>
#include <systemd/sd-event.h>

#include "macro.h"

typedef struct IoWorker IoWorker;
typedef struct IoJob IoJob;

/* Runs in the worker thread (or on the caller's thread in io_worker_run_now()). */
typedef int (*IoJobRun)(IoJob *job);
/* Runs on the event loop once the job ran, with run's result; frees the job. */
typedef void (*IoJobDone)(IoJob *job, int result);

/* Embed as the first member of a job structure. */
struct IoJob {
        IoJobRun run;
        IoJobDone done;
        int result;
        IoJob *next;
};

int io_worker_new(sd_event *event, const char *description, IoWorker **ret);
/* Waits for every submitted job, reports them, and stops the thread. */
IoWorker *io_worker_free(IoWorker *w);
DEFINE_TRIVIAL_CLEANUP_FUNC(IoWorker *, io_worker_free);

/* Queues job behind every job submitted before it. Never fails. */
void io_worker_submit(IoWorker *w, IoJob *job);
/* Blocks until every job submitted so far ran, then reports them (their done callbacks run before
 * this returns). */
void io_worker_drain(IoWorker *w);
/* Runs job here after every job submitted before it, and reports it: the synchronous form of
 * submit, for start-up and shutdown. Returns the job's result. */
int io_worker_run_now(IoWorker *w, IoJob *job);
/* Jobs submitted and not reported yet. */
size_t io_worker_pending(const IoWorker *w);
