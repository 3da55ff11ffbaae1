/* SPDX-License-Identifier: MIT */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#include <cmocka.h>

#include "io-worker.h"

typedef struct Log {
        unsigned ran[64], reported[64];
        unsigned n_ran, n_reported;
        pthread_t loop; /* the thread done callbacks must run on */
} Log;

typedef struct Job {
        IoJob io;
        Log *log;
        unsigned id;
        unsigned sleep_ms;
        int result;
} Job;

static int job_run(IoJob *io) {
        Job *j = (Job *) io;

        if (j->sleep_ms > 0)
                usleep(j->sleep_ms * 1000u);
        /* The worker runs one job at a time: no lock needed for the log. */
        j->log->ran[j->log->n_ran++] = j->id;
        return j->result;
}

static void job_done(IoJob *io, int result) {
        Job *j = (Job *) io;

        assert_true(pthread_equal(pthread_self(), j->log->loop));
        assert_int_equal(result, j->result);
        j->log->reported[j->log->n_reported++] = j->id;
        free(j);
}

static Job *job_new(Log *log, unsigned id, unsigned sleep_ms, int result) {
        Job *j = calloc(1, sizeof(Job));

        assert_non_null(j);
        j->io.run = job_run;
        j->io.done = job_done;
        j->log = log;
        j->id = id;
        j->sleep_ms = sleep_ms;
        j->result = result;
        return j;
}

static void test_order(void **state) {
        sd_event *e = NULL;
        IoWorker *w = NULL;
        Log log = {.loop = pthread_self()};

        (void) state;
        assert_int_equal(sd_event_new(&e), 0);
        assert_int_equal(io_worker_new(e, "test-io", &w), 0);

        /* Jobs run and are reported in submission order, the slow first one included. */
        for (unsigned i = 0; i < 8; i++)
                io_worker_submit(w, &job_new(&log, i, i == 0 ? 30 : 0, i == 3 ? -EIO : 0)->io);
        assert_int_equal(io_worker_pending(w), 8);
        while (log.n_reported < 8)
                assert_true(sd_event_run(e, 5 * 1000 * 1000) > 0);
        assert_int_equal(io_worker_pending(w), 0);
        for (unsigned i = 0; i < 8; i++) {
                assert_int_equal(log.ran[i], i);
                assert_int_equal(log.reported[i], i);
        }

        /* Drain waits for everything queued and reports it before returning. */
        for (unsigned i = 8; i < 12; i++)
                io_worker_submit(w, &job_new(&log, i, 5, 0)->io);
        io_worker_drain(w);
        assert_int_equal(log.n_reported, 12);
        assert_int_equal(io_worker_pending(w), 0);

        /* Run now: after what was queued, on this thread, with its result. */
        io_worker_submit(w, &job_new(&log, 12, 20, 0)->io);
        assert_int_equal(io_worker_run_now(w, &job_new(&log, 13, 0, -ENOSPC)->io), -ENOSPC);
        assert_int_equal(log.n_reported, 14);
        assert_int_equal(log.ran[12], 12);
        assert_int_equal(log.ran[13], 13);

        /* Freeing the worker finishes and reports what is still queued. */
        io_worker_submit(w, &job_new(&log, 14, 10, 0)->io);
        w = io_worker_free(w);
        assert_int_equal(log.n_reported, 15);

        sd_event_unref(e);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_order),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
