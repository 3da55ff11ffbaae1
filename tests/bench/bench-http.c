/* SPDX-License-Identifier: MIT */
/* The cost of the HTTP layer alone. A client process keeps calls in flight to a server process, both
 * on an sd-event loop through the glue the nodes use (libcurl's multi interface in http-client.c,
 * libmicrohttpd in http-server.c), with requests and replies of the size of a key-share POST and its
 * reply, and no DSKE work at all. It prints the exchanges per second and the CPU time of each side
 * per exchange: the floor under what each of the ten hub exchanges of a key pair costs. */

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "http-client.h"
#include "http-server.h"
#include "log.h"

/* As long as a real one: an allocation string and a base64 HMAC-SHA256. */
#define SIGNATURE "9ad7f620-5a0c-4979-8a2d-66142e06fd79:0:32%2gSpqpwuZ+AGd0MbrkngOqY+qPEcHe/lNfU/NhFnTac="

typedef struct Options {
        unsigned concurrency;
        double duration_sec;
        size_t request_size;
        size_t reply_size;
} Options;

typedef struct Driver {
        sd_event *event;
        HttpClient *http;
        const Options *o;
        char url[64];
        char *body;
        unsigned long n_done;
        bool stopping;
        int error;
} Driver;

static int server_handle(HttpRequest *req, void *userdata) {
        const char *reply = userdata;
        int r;

        r = http_request_add_header(req, "DSKE-Signature", SIGNATURE);
        if (r < 0)
                return r;
        return http_request_reply(req, 200, "application/json", reply, strlen(reply));
}

/* Serves until SIGTERM; the port it listens on goes to port_fd first. */
static int run_server(const Options *o, int port_fd) {
        _cleanup_(sd_event_unrefp) sd_event *event = NULL;
        _cleanup_(http_server_freep) HttpServer *server = NULL;
        _cleanup_free_ char *reply = NULL;
        sigset_t ss;
        uint16_t port;
        int r;

        reply = malloc(o->reply_size + 1);
        if (!reply)
                return log_oom();
        memset(reply, 'r', o->reply_size);
        reply[o->reply_size] = 0;

        if (sigemptyset(&ss) < 0 || sigaddset(&ss, SIGTERM) < 0 || sigprocmask(SIG_BLOCK, &ss, NULL) < 0)
                return log_error_errno(-errno, "Failed to block SIGTERM: %m");
        r = sd_event_new(&event);
        if (r < 0)
                return log_error_errno(r, "Failed to create an event loop: %m");
        r = sd_event_add_signal(event, NULL, SIGTERM, NULL, NULL);
        if (r < 0)
                return log_error_errno(r, "Failed to watch SIGTERM: %m");
        r = http_server_new(event, &(HttpServerConfig){.listen_fd = -1}, server_handle, reply, &server);
        if (r < 0)
                return log_error_errno(r, "Failed to start the server: %m");
        port = http_server_get_port(server);
        if (write(port_fd, &port, sizeof(port)) != (ssize_t) sizeof(port))
                return log_error_errno(-EIO, "Failed to pass on the port.");
        return sd_event_loop(event);
}

static int driver_start(Driver *d);

static void driver_on_done(HttpCall *call, int error, const char *message, const HttpResponse *response,
                           void *userdata) {
        Driver *d = userdata;
        int r;

        if (error < 0 || response->status != 200 || response->body_size != d->o->reply_size) {
                d->error = log_error_errno(error < 0 ? error : -EPROTO, "Call failed: %s (status %ld)",
                                           message ?: "unexpected reply", response->status);
                (void) sd_event_exit(d->event, d->error);
                return;
        }
        d->n_done++;
        if (d->stopping)
                return;
        r = driver_start(d);
        if (r < 0) {
                d->error = log_error_errno(r, "Failed to start a call: %m");
                (void) sd_event_exit(d->event, r);
        }
}

static int driver_start(Driver *d) {
        const char *const headers[] = {"DSKE-Signature: " SIGNATURE, NULL};

        return http_client_call(d->http,
                                &(HttpCallSpec){
                                        .method = "POST",
                                        .url = d->url,
                                        .headers = headers,
                                        .body = d->body,
                                        .body_size = d->o->request_size,
                                },
                                driver_on_done, d, NULL);
}

static int driver_on_end(sd_event_source *s, uint64_t usec, void *userdata) {
        Driver *d = userdata;

        d->stopping = true;
        return sd_event_exit(d->event, 0);
}

/* Keeps the calls going for the duration; the number completed goes to count_fd. */
static int run_client(const Options *o, uint16_t port, int count_fd) {
        _cleanup_(sd_event_unrefp) sd_event *event = NULL;
        _cleanup_free_ char *body = NULL;
        Driver d = {.o = o};
        int r;

        body = malloc(MAX(o->request_size, (size_t) 1));
        if (!body)
                return log_oom();
        memset(body, 'q', o->request_size);
        d.body = body;
        (void) snprintf(d.url, sizeof(d.url), "http://127.0.0.1:%u/bench", port);

        r = sd_event_new(&event);
        if (r < 0)
                return log_error_errno(r, "Failed to create an event loop: %m");
        d.event = event;
        r = http_client_new(event, &d.http);
        if (r < 0)
                return log_error_errno(r, "Failed to create the HTTP client: %m");
        for (unsigned i = 0; i < o->concurrency && r >= 0; i++)
                r = driver_start(&d);
        if (r >= 0)
                r = sd_event_add_time_relative(event, NULL, CLOCK_MONOTONIC,
                                               (uint64_t) (o->duration_sec * 1e6), 0, driver_on_end, &d);
        if (r >= 0)
                r = sd_event_loop(event);
        d.http = http_client_free(d.http);
        if (r < 0)
                return d.error < 0 ? r : log_error_errno(r, "Failed to run the calls: %m");
        if (write(count_fd, &d.n_done, sizeof(d.n_done)) != (ssize_t) sizeof(d.n_done))
                return log_error_errno(-EIO, "Failed to pass on the count.");
        return 0;
}

static double cpu_usec(const struct rusage *ru) {
        return (double) (ru->ru_utime.tv_sec + ru->ru_stime.tv_sec) * 1e6 +
               (double) (ru->ru_utime.tv_usec + ru->ru_stime.tv_usec);
}

static int wait_child(pid_t pid, const char *what, struct rusage *ret) {
        int status;

        if (wait4(pid, &status, 0, ret) < 0)
                return log_error_errno(-errno, "Failed to wait for the %s: %m", what);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
                return log_error_errno(-EPROTO, "The %s failed.", what);
        return 0;
}

static void help(void) {
        printf("bench-http [--concurrency N] [--duration SEC] [--request-size BYTES] [--reply-size "
               "BYTES]\n\n"
               "Measure the HTTP layer of dske alone: calls from a libcurl multi client to a\n"
               "libmicrohttpd server, each in its own process, and the CPU time per exchange.\n");
}

static int parse_number(const char *s, const char *name, double min, double max, double *ret) {
        char *end = NULL;
        double v;

        errno = 0;
        v = strtod(s, &end);
        if (errno != 0 || end == s || *end || !(v >= min && v <= max))
                return log_error_errno(-EINVAL, "Invalid value for %s: \"%s\" (%g to %g).", name, s, min,
                                       max);
        *ret = v;
        return 0;
}

static int parse_args(int argc, char **argv, Options *o) {
        static const struct option options[] = {
                {"help", no_argument, NULL, 'h'},
                {"concurrency", required_argument, NULL, 'c'},
                {"duration", required_argument, NULL, 'd'},
                {"request-size", required_argument, NULL, 'q'},
                {"reply-size", required_argument, NULL, 'r'},
                {},
        };
        double v;
        int c;

        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0)
                switch (c) {
                case 'h':
                        help();
                        return 0;
                case 'c':
                        if (parse_number(optarg, "--concurrency", 1, 1024, &v) < 0)
                                return -EINVAL;
                        o->concurrency = (unsigned) v;
                        break;
                case 'd':
                        if (parse_number(optarg, "--duration", 0.01, 3600, &o->duration_sec) < 0)
                                return -EINVAL;
                        break;
                case 'q':
                        if (parse_number(optarg, "--request-size", 0, 1 << 20, &v) < 0)
                                return -EINVAL;
                        o->request_size = (size_t) v;
                        break;
                case 'r':
                        if (parse_number(optarg, "--reply-size", 0, 1 << 20, &v) < 0)
                                return -EINVAL;
                        o->reply_size = (size_t) v;
                        break;
                default:
                        return -EINVAL;
                }
        if (optind < argc)
                return log_error_errno(-EINVAL, "Unexpected argument \"%s\".", argv[optind]);
        return 1;
}

int main(int argc, char **argv) {
        /* A key-share POST of a 256-bit key carries about 420 bytes; the hub answers "null". */
        Options o = {.concurrency = 16, .duration_sec = 5, .request_size = 420, .reply_size = 4};
        struct rusage server_ru, client_ru;
        unsigned long n = 0;
        int port_pipe[2], count_pipe[2];
        uint16_t port;
        pid_t server, client;
        int r;

        r = parse_args(argc, argv, &o);
        if (r <= 0)
                return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
        if (pipe2(port_pipe, O_CLOEXEC) < 0 || pipe2(count_pipe, O_CLOEXEC) < 0)
                return log_error_errno(-errno, "Failed to create pipes: %m"), EXIT_FAILURE;

        /* Each child goes when we go, however that happens. */
        server = fork();
        if (server == 0)
                _exit(prctl(PR_SET_PDEATHSIG, SIGTERM) < 0 || run_server(&o, port_pipe[1]) < 0
                              ? EXIT_FAILURE
                              : EXIT_SUCCESS);
        if (server < 0)
                return log_error_errno(-errno, "Failed to fork: %m"), EXIT_FAILURE;
        (void) close(port_pipe[1]);
        if (read(port_pipe[0], &port, sizeof(port)) != (ssize_t) sizeof(port)) {
                (void) wait_child(server, "server", &server_ru);
                return EXIT_FAILURE;
        }

        client = fork();
        if (client == 0)
                _exit(prctl(PR_SET_PDEATHSIG, SIGTERM) < 0 || run_client(&o, port, count_pipe[1]) < 0
                              ? EXIT_FAILURE
                              : EXIT_SUCCESS);
        if (client < 0) {
                (void) kill(server, SIGTERM);
                return log_error_errno(-errno, "Failed to fork: %m"), EXIT_FAILURE;
        }
        (void) close(count_pipe[1]);
        r = wait_child(client, "client", &client_ru);
        if (r >= 0 && read(count_pipe[0], &n, sizeof(n)) != (ssize_t) sizeof(n))
                r = log_error_errno(-EIO, "The client did not report.");
        (void) kill(server, SIGTERM);
        if (wait_child(server, "server", &server_ru) < 0 || r < 0 || n == 0)
                return EXIT_FAILURE;

        printf("Exchanges:         %lu in %.1f s, %.0f per second, %u in flight\n", n, o.duration_sec,
               (double) n / o.duration_sec, o.concurrency);
        printf("Request, reply:    %zu, %zu bytes of body\n", o.request_size, o.reply_size);
        printf("CPU per exchange:  %.1f us (client %.1f, server %.1f)\n",
               (cpu_usec(&client_ru) + cpu_usec(&server_ru)) / (double) n, cpu_usec(&client_ru) / (double) n,
               cpu_usec(&server_ru) / (double) n);
        return EXIT_SUCCESS;
}
