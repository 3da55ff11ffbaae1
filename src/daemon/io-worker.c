/* SPDX-License-Identifier: MIT */
#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "io-worker.h"
#include "log.h"

struct IoWorker {
        pthread_t thread;
        bool thread_started;

        pthread_mutex_t lock;
        pthread_cond_t wake; /* the thread: a job was queued, or stop */
        pthread_cond_t idle; /* io_worker_drain(): the queue ran empty */
        IoJob *queue, *queue_tail;
        IoJob *ran, *ran_tail;
        bool running;
        bool waiting; /* the thread waits for a job */
        bool stop;

        size_t pending; /* event loop only */
        int event_fd;
        sd_event_source *source;
};

static void list_push(IoJob **head, IoJob **tail, IoJob *job) {
        job->next = NULL;
        if (*tail)
                (*tail)->next = job;
        else
                *head = job;
        *tail = job;
}

/* Neither side makes a system call while holding the lock: on a busy machine the holder may be
 * preempted there, and the event loop would wait for it to run again. */
static void *worker_main(void *userdata) {
        IoWorker *w = userdata;

        pthread_mutex_lock(&w->lock);
        for (;;) {
                IoJob *job;
                bool notify, idle;

                while (!w->queue && !w->stop) {
                        w->waiting = true;
                        pthread_cond_wait(&w->wake, &w->lock);
                        w->waiting = false;
                }
                if (!w->queue)
                        break;

                job = w->queue;
                w->queue = job->next;
                if (!w->queue)
                        w->queue_tail = NULL;
                w->running = true;
                pthread_mutex_unlock(&w->lock);

                job->result = job->run(job);

                pthread_mutex_lock(&w->lock);
                w->running = false;
                notify = !w->ran; /* else the loop was woken for the jobs before and takes this one too */
                list_push(&w->ran, &w->ran_tail, job);
                idle = !w->queue;
                pthread_mutex_unlock(&w->lock);

                if (idle)
                        pthread_cond_broadcast(&w->idle);
                if (notify)
                        (void) eventfd_write(w->event_fd, 1);
                pthread_mutex_lock(&w->lock);
        }
        pthread_mutex_unlock(&w->lock);
        return NULL;
}

/* Reports the jobs that ran, in order. */
static void worker_report(IoWorker *w) {
        IoJob *list;

        pthread_mutex_lock(&w->lock);
        list = w->ran;
        w->ran = w->ran_tail = NULL;
        pthread_mutex_unlock(&w->lock);

        while (list) {
                IoJob *job = list;

                list = job->next;
                assert(w->pending > 0);
                w->pending--;
                job->done(job, job->result);
        }
}

static int on_event(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        eventfd_t v;

        (void) s;
        (void) revents;
        (void) eventfd_read(fd, &v);
        worker_report(userdata);
        return 0;
}

int io_worker_new(sd_event *event, const char *description, IoWorker **ret) {
        _cleanup_(io_worker_freep) IoWorker *w = NULL;
        sigset_t all, old;
        int r;

        assert(event && ret);

        w = calloc(1, sizeof(IoWorker));
        if (!w)
                return -ENOMEM;
        w->event_fd = -EBADF;
        pthread_mutex_init(&w->lock, NULL);
        pthread_cond_init(&w->wake, NULL);
        pthread_cond_init(&w->idle, NULL);

        w->event_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (w->event_fd < 0)
                return -errno;
        r = sd_event_add_io(event, &w->source, w->event_fd, EPOLLIN, on_event, w);
        if (r < 0)
                return r;
        (void) sd_event_source_set_description(w->source, description);

        /* Signals are the event loop's business: the thread takes none. */
        sigfillset(&all);
        r = -pthread_sigmask(SIG_SETMASK, &all, &old);
        if (r < 0)
                return r;
        r = -pthread_create(&w->thread, NULL, worker_main, w);
        (void) pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (r < 0)
                return r;
        w->thread_started = true;

        *ret = TAKE_PTR(w);
        return 0;
}

IoWorker *io_worker_free(IoWorker *w) {
        if (!w)
                return NULL;
        if (w->thread_started) {
                pthread_mutex_lock(&w->lock);
                w->stop = true;
                pthread_cond_signal(&w->wake);
                pthread_mutex_unlock(&w->lock);
                (void) pthread_join(w->thread, NULL);
                worker_report(w);
        }
        sd_event_source_disable_unref(w->source);
        if (w->event_fd >= 0)
                (void) close(w->event_fd);
        pthread_cond_destroy(&w->idle);
        pthread_cond_destroy(&w->wake);
        pthread_mutex_destroy(&w->lock);
        free(w);
        return NULL;
}

void io_worker_submit(IoWorker *w, IoJob *job) {
        bool wake;

        assert(w && job && job->run && job->done);

        w->pending++;
        pthread_mutex_lock(&w->lock);
        list_push(&w->queue, &w->queue_tail, job);
        wake = w->waiting;
        pthread_mutex_unlock(&w->lock);
        if (wake)
                pthread_cond_signal(&w->wake);
}

void io_worker_drain(IoWorker *w) {
        assert(w);

        pthread_mutex_lock(&w->lock);
        while (w->queue || w->running)
                pthread_cond_wait(&w->idle, &w->lock);
        pthread_mutex_unlock(&w->lock);
        worker_report(w);
}

int io_worker_run_now(IoWorker *w, IoJob *job) {
        int r;

        assert(w && job && job->run && job->done);

        io_worker_drain(w);
        r = job->result = job->run(job);
        job->done(job, r);
        return r;
}

size_t io_worker_pending(const IoWorker *w) {
        return w ? w->pending : 0;
}
