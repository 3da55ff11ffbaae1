/* SPDX-License-Identifier: MIT */
#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/pidfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>

#include "ctl-util.h"
#include "json-util.h"
#include "log.h"
#include "random.h"
#include "topology-run.h"

#define STATUS_POLL_USEC (100 * 1000ULL)
#define STATUS_CALL_MS   2000u
#define STOP_TIMEOUT_MS  10000
#define KILL_TIMEOUT_MS  5000
#define LOG_TAIL_LINES   10

static int run_dir_resolve(const char *path, const TopologyRunOptions *o, char **ret) {
        _cleanup_free_ char *id = NULL;
        int r;

        if (o->run_dir) {
                char *s = strdup(o->run_dir);
                if (!s)
                        return log_oom();
                *ret = s;
                return 0;
        }

        r = topology_id_from_path(path, &id);
        if (r == -EINVAL)
                return log_error_errno(r, "%s: The file name cannot name a run directory; use --run-dir.",
                                       path);
        if (r < 0)
                return log_oom();
        r = run_dir_default(id, ret);
        if (r < 0)
                return log_oom();
        return 0;
}

int node_mgmt_url(const Topology *t, const TopologyNode *n, const char *action, char **ret) {
        _cleanup_free_ char *base = NULL;

        if (topology_node_url(t, n, &base) < 0 || asprintf(ret, "%s/mgmt/v1/%s", base, action) < 0)
                return -ENOMEM;
        return 0;
}

static bool state_any_running(const TopologyState *s) {
        for (size_t i = 0; i < s->n_nodes; i++)
                if (node_state_is_running(s->nodes + i))
                        return true;
        return false;
}

int topology_open(const char *path, const TopologyRunOptions *o, Topology **ret, TopologyState **ret_state) {
        _cleanup_(topology_freep) Topology *t = NULL;
        _cleanup_(topology_state_freep) TopologyState *s = NULL;
        _cleanup_free_ char *dir = NULL;
        int r;

        r = topology_load(path, &t);
        if (r < 0)
                return r;
        if (o->base_port != 0 && topology_assign_ports(t, o->base_port) < 0)
                return log_error_errno(-ERANGE, "%zu nodes from base port %u run past port 65535.",
                                       t->n_nodes, o->base_port);

        r = run_dir_resolve(path, o, &dir);
        if (r < 0)
                return r;

        r = topology_state_load(dir, &s);
        if (r < 0 && r != -ENOENT)
                return r;
        if (s && !streq(s->topology_path, t->path))
                s = topology_state_free(s);

        if (s && o->base_port == 0) {
                /* The topology runs: talk to it where it actually listens. */
                for (size_t i = 0; i < t->n_nodes; i++) {
                        NodeState *ns = topology_state_find(s, t->nodes[i].type, t->nodes[i].name);
                        if (ns)
                                t->nodes[i].port = ns->port;
                }
                char *a = strdup(s->address);
                if (!a)
                        return log_oom();
                free(t->address);
                t->address = a;
        }

        *ret = TAKE_PTR(t);
        if (ret_state)
                *ret_state = TAKE_PTR(s);
        return 0;
}

/* Stopping */

typedef struct Stopping {
        NodeState *node;
        int pidfd;
} Stopping;

static void wait_pidfds(Stopping *list, size_t n, int timeout_ms) {
        struct timespec start;
        (void) clock_gettime(CLOCK_MONOTONIC, &start);

        _cleanup_free_ struct pollfd *fds = calloc(n ?: 1, sizeof(struct pollfd));
        if (!fds)
                return;

        for (;;) {
                size_t k = 0;

                for (size_t i = 0; i < n; i++)
                        if (list[i].pidfd >= 0)
                                fds[k++] = (struct pollfd){.fd = list[i].pidfd, .events = POLLIN};
                if (k == 0)
                        return;

                struct timespec now;
                (void) clock_gettime(CLOCK_MONOTONIC, &now);
                long elapsed = (now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000;
                if (elapsed >= timeout_ms)
                        return;

                int r = poll(fds, k, (int) (timeout_ms - elapsed));
                if (r < 0 && errno != EINTR)
                        return;

                for (size_t j = 0; j < k; j++) {
                        if (!(fds[j].revents & (POLLIN | POLLHUP | POLLERR)))
                                continue;
                        for (size_t i = 0; i < n; i++)
                                if (list[i].pidfd == fds[j].fd) {
                                        list[i].pidfd = safe_close(list[i].pidfd);
                                        /* Our own child (a failed "up"): reap it. */
                                        (void) waitpid(list[i].node->pid, NULL, WNOHANG);
                                }
                }
        }
}

static int stop_nodes_of_type(TopologyState *s, NodeType type, bool verbose) {
        _cleanup_free_ Stopping *list = calloc(s->n_nodes ?: 1, sizeof(Stopping));
        size_t n = 0;
        int ret = 0;

        if (!list)
                return log_oom();

        /* Newest first, like the reference manager: clients curtis..carol, then hubs hugo..hank. */
        for (size_t i = s->n_nodes; i-- > 0;) {
                NodeState *ns = s->nodes + i;

                if (ns->type != type || !node_state_is_running(ns))
                        continue;

                int fd = pidfd_open(ns->pid, 0);
                if (fd < 0)
                        continue; /* gone meanwhile */
                /* Check again now that the pidfd pins the process: the PID cannot be reused anymore. */
                if (!node_state_is_running(ns)) {
                        safe_close(fd);
                        continue;
                }
                if (verbose)
                        printf("Stopping %s %s (pid %d, port %u)\n", node_type_to_string(type), ns->name,
                               (int) ns->pid, ns->port);
                if (pidfd_send_signal(fd, SIGTERM, NULL, 0) < 0) {
                        ret = log_error_errno(negative_errno(), "Failed to stop %s %s (pid %d): %m",
                                              node_type_to_string(type), ns->name, (int) ns->pid);
                        safe_close(fd);
                        continue;
                }
                list[n++] = (Stopping){.node = ns, .pidfd = fd};
        }
        (void) fflush(stdout);

        wait_pidfds(list, n, STOP_TIMEOUT_MS);

        bool killed = false;
        for (size_t i = 0; i < n; i++) {
                if (list[i].pidfd < 0)
                        continue;
                log_warning("%s %s (pid %d) did not stop within %d s; killing it.",
                            node_type_to_string(type), list[i].node->name, (int) list[i].node->pid,
                            STOP_TIMEOUT_MS / 1000);
                (void) pidfd_send_signal(list[i].pidfd, SIGKILL, NULL, 0);
                killed = true;
        }
        if (killed)
                wait_pidfds(list, n, KILL_TIMEOUT_MS);

        for (size_t i = 0; i < n; i++)
                if (list[i].pidfd >= 0) {
                        ret = log_error_errno(-ETIMEDOUT, "%s %s (pid %d) is still running.",
                                              node_type_to_string(type), list[i].node->name,
                                              (int) list[i].node->pid);
                        list[i].pidfd = safe_close(list[i].pidfd);
                }
        return ret;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
        if (flag == FTW_DP)
                (void) rmdir(path);
        else
                (void) unlink(path);
        return 0;
}

/* Node state directories hold PSRD, which must not outlive the topology run. */
static void remove_node_state_dirs(const char *dir, const TopologyState *s) {
        for (size_t i = 0; i < s->n_nodes; i++) {
                _cleanup_free_ char *p = NULL;

                if (node_state_dir_path(dir, s->nodes[i].type, s->nodes[i].name, &p) < 0)
                        continue;
                (void) nftw(p, remove_entry, 16, FTW_DEPTH | FTW_PHYS | FTW_MOUNT);
        }
}

static int stop_all(const char *dir, TopologyState *s, bool verbose) {
        int r, ret = 0;

        r = stop_nodes_of_type(s, NODE_CLIENT, verbose);
        if (r < 0)
                ret = r;
        r = stop_nodes_of_type(s, NODE_HUB, verbose);
        if (r < 0 && ret == 0)
                ret = r;
        if (ret < 0)
                return ret;

        remove_node_state_dirs(dir, s);
        return topology_state_remove(dir);
}

int topology_down(const char *path, const TopologyRunOptions *o) {
        _cleanup_(topology_state_freep) TopologyState *s = NULL;
        _cleanup_free_ char *dir = NULL;
        _cleanup_close_ int lock = -EBADF;
        int r;

        r = run_dir_resolve(path, o, &dir);
        if (r < 0)
                return r;

        if (access(dir, F_OK) < 0) {
                if (!o->quiet)
                        printf("Topology %s is not up (no run directory %s).\n", path, dir);
                return 0;
        }

        lock = run_dir_lock(dir);
        if (lock < 0)
                return lock;

        r = topology_state_load(dir, &s);
        if (r == -ENOENT) {
                if (!o->quiet)
                        printf("Topology %s is not up.\n", path);
                return 0;
        }
        if (r < 0)
                return r;

        r = stop_all(dir, s, !o->quiet);
        if (r < 0)
                return r;

        if (!o->quiet)
                printf("Topology %s is down.\n", path);
        return 0;
}

/* Starting */

typedef struct RunNode {
        TopologyNode *node;
        NodeState *state;
        char *log_path;
        sd_event_source *child_source;
        HttpCall *status_call;
        bool notified; /* READY=1 arrived */
        bool ready;
        char *status_text;      /* the last STATUS= it sent */
        char *not_ready_reason; /* from its last management status */
        struct Up *up;
} RunNode;

typedef struct Up {
        Ctl *ctl;
        Topology *t;
        TopologyState *state;
        const char *dir;
        RunNode *nodes;
        size_t n_ready;
        int notify_fd;
        char notify_address[64];
        sd_event_source *notify_source, *timeout_source, *poll_source, *sigint_source, *sigterm_source;
        int result; /* 0 while waiting, 1 when every node is ready, negative on failure */
        bool quiet;
        bool ephemeral;
} Up;

static void up_done(Up *u) {
        for (size_t i = 0; u->nodes && i < u->t->n_nodes; i++) {
                RunNode *rn = u->nodes + i;
                free(rn->log_path);
                free(rn->status_text);
                free(rn->not_ready_reason);
                http_call_cancel(rn->status_call);
                sd_event_source_disable_unref(rn->child_source);
        }
        free(u->nodes);
        sd_event_source_disable_unref(u->notify_source);
        sd_event_source_disable_unref(u->timeout_source);
        sd_event_source_disable_unref(u->poll_source);
        sd_event_source_disable_unref(u->sigint_source);
        sd_event_source_disable_unref(u->sigterm_source);
        safe_close(u->notify_fd);
}

static const char *node_label(const RunNode *rn) {
        return node_type_to_string(rn->node->type);
}

static void print_log_tail(const char *path) {
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        char buf[4096];

        if (fd < 0)
                return;
        off_t size = lseek(fd, 0, SEEK_END);
        off_t start = size > (off_t) sizeof(buf) - 1 ? size - (off_t) sizeof(buf) + 1 : 0;
        ssize_t l = pread(fd, buf, sizeof(buf) - 1, start);
        if (l <= 0)
                return;
        buf[l] = '\0';
        while (l > 0 && buf[l - 1] == '\n')
                buf[--l] = '\0';

        const char *p = buf + l;
        unsigned lines = 0;
        while (p > buf && lines < LOG_TAIL_LINES) {
                p--;
                if (*p == '\n')
                        lines++;
        }
        if (*p == '\n')
                p++;

        fprintf(stderr, "Last lines of %s:\n", path);
        for (const char *line = p; *line;) {
                size_t n = strcspn(line, "\n");
                fprintf(stderr, "    %.*s\n", (int) n, line);
                line += n;
                if (*line == '\n')
                        line++;
        }
}

static void up_fail(Up *u, int r) {
        if (u->result == 0)
                u->result = r;
}

static int on_child(sd_event_source *s, const siginfo_t *si, void *userdata) {
        RunNode *rn = userdata;
        Up *u = rn->up;

        rn->child_source = sd_event_source_disable_unref(rn->child_source);
        if (u->result != 0)
                return 0;

        if (si->si_code == CLD_EXITED)
                log_error("%s %s (pid %d) exited with status %d before the topology was ready.",
                          node_label(rn), rn->node->name, (int) si->si_pid, si->si_status);
        else
                log_error("%s %s (pid %d) was killed by signal %s before the topology was ready.",
                          node_label(rn), rn->node->name, (int) si->si_pid, strsignal(si->si_status));
        print_log_tail(rn->log_path);
        up_fail(u, -ECHILD);
        return 0;
}

static RunNode *up_find_pid(Up *u, pid_t pid) {
        for (size_t i = 0; i < u->t->n_nodes; i++)
                if (u->nodes[i].state->pid == pid)
                        return u->nodes + i;
        return NULL;
}

static void up_check_done(Up *u) {
        if (u->result == 0 && u->n_ready == u->t->n_nodes)
                u->result = 1;
}

static void node_set_ready(RunNode *rn) {
        if (rn->ready)
                return;
        rn->ready = true;
        rn->up->n_ready++;
        up_check_done(rn->up);
}

static void node_handle_notify(RunNode *rn, char *msg) {
        for (char *line = msg; line && *line;) {
                char *next = strchr(line, '\n');
                if (next)
                        *next++ = '\0';

                if (streq(line, "READY=1") && !rn->notified) {
                        rn->notified = true;
                        log_debug("%s %s sent READY=1.", node_label(rn), rn->node->name);
                        /* A hub is ready once it listens; a client also needs its hubs and PSRD. */
                        if (rn->node->type == NODE_HUB)
                                node_set_ready(rn);
                } else {
                        const char *v = startswith(line, "STATUS=");
                        if (v) {
                                char *c = strdup(v);
                                if (c) {
                                        free(rn->status_text);
                                        rn->status_text = c;
                                }
                        }
                }
                line = next;
        }
}

static int on_notify(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        Up *u = userdata;

        for (;;) {
                char buf[4096];
                union {
                        struct cmsghdr cmsghdr;
                        uint8_t buf[CMSG_SPACE(sizeof(struct ucred)) + CMSG_SPACE(sizeof(int) * 16)];
                } control;
                struct iovec iov = {.iov_base = buf, .iov_len = sizeof(buf) - 1};
                struct msghdr mh = {
                        .msg_iov = &iov,
                        .msg_iovlen = 1,
                        .msg_control = &control,
                        .msg_controllen = sizeof(control),
                };
                struct ucred *ucred = NULL;

                ssize_t n = recvmsg(fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
                if (n < 0) {
                        if (errno == EAGAIN || errno == EINTR)
                                return 0;
                        log_warning_errno(negative_errno(), "Failed to receive a notification: %m");
                        return 0;
                }

                for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
                        if (c->cmsg_level != SOL_SOCKET)
                                continue;
                        if (c->cmsg_type == SCM_CREDENTIALS && c->cmsg_len == CMSG_LEN(sizeof(struct ucred)))
                                ucred = (struct ucred *) CMSG_DATA(c);
                        else if (c->cmsg_type == SCM_RIGHTS) {
                                /* File descriptors for a store we do not keep. */
                                size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
                                int *fds = (int *) CMSG_DATA(c);
                                for (size_t i = 0; i < k; i++)
                                        safe_close(fds[i]);
                        }
                }
                if (!ucred)
                        continue;

                RunNode *rn = up_find_pid(u, ucred->pid);
                if (!rn) {
                        log_debug("Ignoring a notification from unknown pid %d.", (int) ucred->pid);
                        continue;
                }
                buf[n] = '\0';
                node_handle_notify(rn, buf);
        }
}

/* Why a client is not ready, from its management status: the hubs it is not registered with. Its
 * hubs are the topology's, in order; an unregistered hub's name is not known to the client yet. */
static char *client_not_ready_reason(const Topology *t, json_object *o) {
        json_object *hubs;
        char *s = NULL;
        size_t size = 0, total = 0, registered = 0;
        FILE *f;

        if (!json_object_object_get_ex(o, "peer_hubs", &hubs) || !json_object_is_type(hubs, json_type_array))
                return strdup("its status does not list its hubs");

        f = open_memstream(&s, &size);
        if (!f)
                return NULL;
        total = json_object_array_length(hubs);
        for (size_t i = 0; i < total; i++) {
                json_object *h = json_object_array_get_idx(hubs, i), *v;
                bool reg = json_object_object_get_ex(h, "registered", &v) && json_object_get_boolean(v);
                if (reg) {
                        registered++;
                        continue;
                }
                const char *name = i < t->n_hubs ? t->nodes[i].name : json_get_string_member(h, "hub_name");
                fprintf(f, "%s%s", ftell(f) > 0 ? ", " : "not registered with ", strna(name));
        }
        if (registered == total)
                fprintf(f, "registered with all %zu hubs, PSRD pools not filled yet", total);
        if (fclose(f) != 0) {
                free(s);
                return NULL;
        }
        return s;
}

static void on_status(HttpCall *call, int error, const char *message, const HttpResponse *response,
                      void *userdata) {
        RunNode *rn = userdata;

        rn->status_call = NULL;
        free(rn->not_ready_reason);
        rn->not_ready_reason = NULL;

        if (error < 0) {
                (void) asprintf(&rn->not_ready_reason, "management status failed: %s", strna(message));
                return;
        }
        if (response->status != 200) {
                (void) asprintf(&rn->not_ready_reason, "management status returned %ld", response->status);
                return;
        }

        _cleanup_json_ json_object *o = json_tokener_parse((const char *) response->body);
        json_object *v;
        if (o && json_object_object_get_ex(o, "ready", &v) && json_object_get_boolean(v)) {
                node_set_ready(rn);
                return;
        }
        rn->not_ready_reason =
                o ? client_not_ready_reason(rn->up->t, o) : strdup("management status is not JSON");
}

static int on_poll(sd_event_source *s, uint64_t usec, void *userdata) {
        Up *u = userdata;

        for (size_t i = 0; i < u->t->n_nodes; i++) {
                RunNode *rn = u->nodes + i;
                _cleanup_free_ char *url = NULL;

                if (rn->node->type != NODE_CLIENT || !rn->notified || rn->ready || rn->status_call)
                        continue;
                if (node_mgmt_url(u->t, rn->node, "status", &url) < 0) {
                        up_fail(u, log_oom());
                        return 0;
                }
                HttpCallSpec spec = {.method = "GET", .url = url, .timeout_ms = STATUS_CALL_MS};
                int r = http_client_call(u->ctl->http, &spec, on_status, rn, &rn->status_call);
                if (r < 0) {
                        up_fail(u, log_error_errno(r, "Failed to query %s: %m", url));
                        return 0;
                }
        }

        (void) sd_event_source_set_time_relative(s, STATUS_POLL_USEC);
        return 0;
}

static int on_timeout(sd_event_source *s, uint64_t usec, void *userdata) {
        Up *u = userdata;
        uint64_t t = u->t->ready_timeout_usec;

        log_error("The topology did not become ready within %" PRIu64 ".%01" PRIu64 " s:", t / 1000000,
                  t / 100000 % 10);
        for (size_t i = 0; i < u->t->n_nodes; i++) {
                RunNode *rn = u->nodes + i;

                if (rn->ready)
                        continue;
                if (!rn->notified)
                        log_error("  %s %s (pid %d) did not report READY=1%s%s%s; see %s", node_label(rn),
                                  rn->node->name, (int) rn->state->pid, rn->status_text ? " (status: " : "",
                                  strempty(rn->status_text), rn->status_text ? ")" : "", rn->log_path);
                else
                        log_error("  client %s is not ready: %s; see %s", rn->node->name,
                                  rn->not_ready_reason ?: "no management status yet", rn->log_path);
        }
        up_fail(u, -ETIMEDOUT);
        return 0;
}

static int on_signal(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        Up *u = userdata;

        log_error("Interrupted by %s; stopping the nodes started so far.", strsignal((int) si->ssi_signo));
        up_fail(u, -EINTR);
        return 0;
}

static int notify_socket_open(Up *u) {
        _cleanup_close_ int fd = -EBADF;
        uint8_t rnd[8];
        int one = 1, r;

        fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
                return log_error_errno(negative_errno(), "Failed to create the notification socket: %m");
        if (setsockopt(fd, SOL_SOCKET, SO_PASSCRED, &one, sizeof(one)) < 0)
                return log_error_errno(negative_errno(), "Failed to enable credentials on the notification "
                                                         "socket: %m");

        r = random_bytes(rnd, sizeof(rnd));
        if (r < 0)
                return log_error_errno(r, "Failed to get random bytes: %m");

        /* An abstract socket: no path length limit from deep run directories, nothing to clean up. */
        (void) snprintf(u->notify_address, sizeof(u->notify_address),
                        "@dskectl/%d/%02x%02x%02x%02x%02x%02x%02x%02x", (int) getpid(), rnd[0], rnd[1],
                        rnd[2], rnd[3], rnd[4], rnd[5], rnd[6], rnd[7]);
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        size_t l = strlen(u->notify_address);
        memcpy(sa.sun_path + 1, u->notify_address + 1, l - 1);
        if (bind(fd, (struct sockaddr *) &sa, (socklen_t) (offsetof(struct sockaddr_un, sun_path) + l)) < 0)
                return log_error_errno(negative_errno(), "Failed to bind the notification socket: %m");

        u->notify_fd = TAKE_FD(fd);
        return 0;
}

static int port_check(const char *address, uint16_t port) {
        union {
                struct sockaddr sa;
                struct sockaddr_in in;
                struct sockaddr_in6 in6;
        } sa = {};
        socklen_t len;
        int one = 1;

        if (inet_pton(AF_INET, address, &sa.in.sin_addr) == 1) {
                sa.in.sin_family = AF_INET;
                sa.in.sin_port = htons(port);
                len = sizeof(sa.in);
        } else if (inet_pton(AF_INET6, address, &sa.in6.sin6_addr) == 1) {
                sa.in6.sin6_family = AF_INET6;
                sa.in6.sin6_port = htons(port);
                len = sizeof(sa.in6);
        } else
                return -EINVAL;

        _cleanup_close_ int fd = socket(sa.sa.sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return negative_errno();
        /* As the daemons do, so that connections of a previous run in TIME_WAIT do not count. */
        (void) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (bind(fd, &sa.sa, len) < 0)
                return negative_errno();
        return 0;
}

static int ports_check(const Topology *t) {
        int ret = 0;

        for (size_t i = 0; i < t->n_nodes; i++) {
                const TopologyNode *n = t->nodes + i;
                int r = port_check(t->address, n->port);
                if (r == -EADDRINUSE)
                        ret = log_error_errno(r, "Port %u on %s (for %s %s) is already in use.", n->port,
                                              t->address, node_type_to_string(n->type), n->name);
                else if (r < 0)
                        ret = log_error_errno(r, "Cannot listen on %s port %u (for %s %s): %m", t->address,
                                              n->port, node_type_to_string(n->type), n->name);
        }
        if (ret < 0)
                log_error("Not starting the topology: choose another base port with --base-port or free the "
                          "ports.");
        return ret;
}

static int find_daemon(const char *name, char **ret) {
        char buf[PATH_MAX];
        ssize_t l;

        l = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
        if (l > 0) {
                buf[l] = '\0';
                char *slash = strrchr(buf, '/');
                if (slash) {
                        *slash = '\0';
                        /* Installed side by side, or in the build tree (src/ctl next to src/hub). */
                        const char *const subdirs[] = {"", "/../hub", "/../client"};
                        for (size_t i = 0; i < ELEMENTSOF(subdirs); i++) {
                                _cleanup_free_ char *p = NULL;
                                if (asprintf(&p, "%s%s/%s", buf, subdirs[i], name) < 0)
                                        return log_oom();
                                if (access(p, X_OK) == 0) {
                                        *ret = realpath(p, NULL) ?: TAKE_PTR(p);
                                        return 0;
                                }
                        }
                }
        }

        const char *path = getenv("PATH") ?: "/usr/local/bin:/usr/bin:/bin";
        _cleanup_free_ char *copy = strdup(path);
        if (!copy)
                return log_oom();
        char *save = NULL;
        for (char *d = strtok_r(copy, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
                _cleanup_free_ char *p = NULL;
                if (asprintf(&p, "%s/%s", d, name) < 0)
                        return log_oom();
                if (access(p, X_OK) == 0) {
                        *ret = TAKE_PTR(p);
                        return 0;
                }
        }

        _cleanup_free_ char *p = NULL;
        if (asprintf(&p, "%s/%s", BINDIR, name) < 0)
                return log_oom();
        if (access(p, X_OK) == 0) {
                *ret = TAKE_PTR(p);
                return 0;
        }
        return log_error_errno(-ENOENT, "Cannot find %s next to dskectl or in $PATH.", name);
}

static int file_append(FILE *f, const char *path) {
        _cleanup_(fclosep) FILE *in = fopen(path, "re");
        char buf[4096];
        size_t n;

        if (!in)
                return log_error_errno(negative_errno(), "Failed to open %s: %m", path);
        fprintf(f, "\n# From %s:\n", path);
        while ((n = fread(buf, 1, sizeof(buf), in)) > 0)
                if (fwrite(buf, 1, n, f) != n)
                        return -EIO;
        return ferror(in) ? -EIO : 0;
}

/* The node's configuration: what the topology needs that has no command line option, followed by
 * the topology's extra configuration, if any. */
static int node_write_config(const Up *u, const TopologyNode *n, char **ret) {
        _cleanup_free_ char *p = NULL;
        _cleanup_(fclosep) FILE *f = NULL;
        int r;

        if (asprintf(&p, "%s/%s-%s.conf", u->dir, node_type_to_string(n->type), n->name) < 0)
                return log_oom();

        f = fopen(p, "we");
        if (!f)
                return log_error_errno(negative_errno(), "Failed to create %s: %m", p);

        fprintf(f, "# Written by \"dskectl topology up\" for %s; rewritten at every start.\n", u->t->path);
        if (n->type == NODE_HUB) {
                /* Registration and PSRD delivery over HTTP simulate provisioning: a local topology
                 * relies on them. */
                fprintf(f, "[Hub]\nOutOfBandAPI=yes\n");
                if (u->t->log_level)
                        fprintf(f, "LogLevel=%s\n", u->t->log_level);
        } else {
                if (u->t->log_level)
                        fprintf(f, "[Client]\nLogLevel=%s\n", u->t->log_level);
                if (u->t->shares_required > 0)
                        fprintf(f, "[Keys]\nSharesRequired=%u\n", u->t->shares_required);
                /* Every other client's SAEs, so that the client knows the KME of each peer SAE. */
                fprintf(f, "[ETSI]\n");
                for (size_t i = 0; i < u->t->n_nodes; i++) {
                        const TopologyNode *o = u->t->nodes + i;
                        if (o == n)
                                continue;
                        for (char **e = o->encryptors; e && *e; e++)
                                fprintf(f, "SAE=%s:%s\n", *e, o->name);
                }
        }
        if (n->config) {
                r = file_append(f, n->config);
                if (r < 0)
                        return r;
        }
        if (fflush(f) != 0 || ferror(f))
                return log_error_errno(-EIO, "Failed to write %s.", p);

        *ret = TAKE_PTR(p);
        return 0;
}

typedef struct Argv {
        char **v;
        size_t n;
} Argv;

static void argv_done(Argv *a) {
        for (size_t i = 0; i < a->n; i++)
                free(a->v[i]);
        free(a->v);
}

static int argv_add(Argv *a, const char *format, ...) _printf_(2, 3);
static int argv_add(Argv *a, const char *format, ...) {
        char **v = reallocarray(a->v, a->n + 2, sizeof(char *));
        va_list ap;

        if (!v)
                return -ENOMEM;
        a->v = v;
        va_start(ap, format);
        int r = vasprintf(&a->v[a->n], format, ap);
        va_end(ap);
        if (r < 0)
                return -ENOMEM;
        a->v[++a->n] = NULL;
        return 0;
}

static int node_argv(const Up *u, const TopologyNode *n, const char *binary, const char *config, Argv *a) {
        _cleanup_free_ char *state_dir = NULL;

        if (node_state_dir_path(u->dir, n->type, n->name, &state_dir) < 0)
                return -ENOMEM;

        if (argv_add(a, "%s", binary) < 0 || argv_add(a, "%s", n->name) < 0 || argv_add(a, "--port") < 0 ||
            argv_add(a, "%u", n->port) < 0 || argv_add(a, "--address") < 0 ||
            argv_add(a, "%s", u->t->address) < 0 || argv_add(a, "--config") < 0 ||
            argv_add(a, "%s", config) < 0)
                return -ENOMEM;
        if (u->ephemeral ? argv_add(a, "--ephemeral") < 0
                         : argv_add(a, "--state-dir") < 0 || argv_add(a, "%s", state_dir) < 0)
                return -ENOMEM;

        if (n->type != NODE_CLIENT)
                return 0;

        if (argv_add(a, "--hubs") < 0)
                return -ENOMEM;
        for (size_t i = 0; i < u->t->n_hubs; i++) {
                _cleanup_free_ char *url = NULL;
                if (topology_node_url(u->t, u->t->nodes + i, &url) < 0 || argv_add(a, "%s", url) < 0)
                        return -ENOMEM;
        }
        if (n->encryptors && n->encryptors[0]) {
                _cleanup_free_ char *list = NULL;
                size_t size = 0;
                FILE *f = open_memstream(&list, &size);
                if (!f)
                        return -ENOMEM;
                for (char **e = n->encryptors; *e; e++)
                        fprintf(f, "%s%s", e == n->encryptors ? "" : ",", *e);
                if (fclose(f) != 0)
                        return -ENOMEM;
                if (argv_add(a, "--encryptors") < 0 || argv_add(a, "%s", list) < 0)
                        return -ENOMEM;
        }
        return 0;
}

static _noreturn_ void child_exec(const Up *u, int log_fd, int null_fd, char **argv) {
        sigset_t ss;

        /* Undo what dskectl set up for itself: blocked signals and inherited descriptors. */
        (void) sigemptyset(&ss);
        (void) sigprocmask(SIG_SETMASK, &ss, NULL);
        (void) signal(SIGPIPE, SIG_DFL);

        /* The units' CPUSchedulingPolicy=: see there. Said on our own stderr, still the terminal. */
        if (sched_setscheduler(0, u->t->cpu_scheduling_policy, &(struct sched_param){}) < 0)
                dprintf(STDERR_FILENO, "dskectl: %s runs with the default scheduling policy: %s\n", argv[1],
                        strerror(errno));

        if (setsid() < 0 || dup2(null_fd, STDIN_FILENO) < 0 || dup2(log_fd, STDOUT_FILENO) < 0 ||
            dup2(log_fd, STDERR_FILENO) < 0)
                _exit(126);
        (void) close_range(3, ~0U, 0);

        if (setenv("NOTIFY_SOCKET", u->notify_address, 1) < 0)
                _exit(126);
        /* Our own service environment, if any, is not the node's. */
        const char *const drop[] = {"WATCHDOG_USEC", "WATCHDOG_PID",   "LISTEN_FDS",
                                    "LISTEN_PID",    "LISTEN_FDNAMES", "JOURNAL_STREAM"};
        for (size_t i = 0; i < ELEMENTSOF(drop); i++)
                (void) unsetenv(drop[i]);

        execv(argv[0], argv);
        dprintf(STDERR_FILENO, "dskectl: failed to execute %s: %s\n", argv[0], strerror(errno));
        _exit(127);
}

static int node_start(Up *u, RunNode *rn, const char *binary) {
        _cleanup_free_ char *config = NULL;
        _cleanup_(argv_done) Argv a = {};
        _cleanup_close_ int log_fd = -EBADF, null_fd = -EBADF;
        const TopologyNode *n = rn->node;
        int r;

        r = node_write_config(u, n, &config);
        if (r < 0)
                return r;
        if (node_argv(u, n, binary, config, &a) < 0)
                return log_oom();

        log_fd = open(rn->log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOCTTY, 0640);
        if (log_fd < 0)
                return log_error_errno(negative_errno(), "Failed to open %s: %m", rn->log_path);
        null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (null_fd < 0)
                return log_error_errno(negative_errno(), "Failed to open /dev/null: %m");

        time_t now = time(NULL);
        char when[64];
        (void) strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", localtime(&now));
        dprintf(log_fd, "-- %s: dskectl starts %s %s on %s port %u\n", when, node_type_to_string(n->type),
                n->name, u->t->address, n->port);

        if (!u->quiet) {
                printf("Starting %s %s on port %u\n", node_type_to_string(n->type), n->name, n->port);
                (void) fflush(stdout);
        }

        pid_t pid = fork();
        if (pid < 0)
                return log_error_errno(negative_errno(), "Failed to fork: %m");
        if (pid == 0)
                child_exec(u, log_fd, null_fd, a.v);

        rn->state->pid = pid;
        r = process_start_time(pid, &rn->state->start_time);
        if (r < 0)
                return log_error_errno(r, "Failed to read the start time of pid %d: %m", (int) pid);

        r = sd_event_add_child(u->ctl->event, &rn->child_source, pid, WEXITED, on_child, rn);
        if (r < 0)
                return log_error_errno(r, "Failed to watch pid %d: %m", (int) pid);
        return 0;
}

static void print_nodes(const Topology *t, const TopologyState *s) {
        size_t w = 4;

        for (size_t i = 0; i < t->n_nodes; i++)
                w = MAX(w, strlen(t->nodes[i].name));

        printf("%-6s  %-*s  %5s  %7s  %s\n", "TYPE", (int) w, "NAME", "PORT", "PID", "URL (ENCRYPTORS)");
        for (size_t i = 0; i < t->n_nodes; i++) {
                const TopologyNode *n = t->nodes + i;
                const NodeState *ns = topology_state_find(s, n->type, n->name);
                _cleanup_free_ char *url = NULL;

                if (topology_node_url(t, n, &url) < 0)
                        return;
                printf("%-6s  %-*s  %5u  %7d  %s", node_type_to_string(n->type), (int) w, n->name, n->port,
                       ns ? (int) ns->pid : 0, url);
                for (char **e = n->encryptors; e && *e; e++)
                        printf("%s%s", e == n->encryptors ? " (" : ", ", *e);
                printf("%s\n", n->encryptors && n->encryptors[0] ? ")" : "");
        }
}

int topology_up(Ctl *ctl, const char *path, const TopologyRunOptions *o) {
        _cleanup_(topology_freep) Topology *t = NULL;
        _cleanup_(topology_state_freep) TopologyState *old = NULL, *state = NULL;
        _cleanup_free_ char *dir = NULL, *hub_bin = NULL, *client_bin = NULL;
        _cleanup_close_ int lock = -EBADF;
        sigset_t mask, saved_mask;
        int r;

        r = topology_load(path, &t);
        if (r < 0)
                return r;
        if (o->base_port != 0 && topology_assign_ports(t, o->base_port) < 0)
                return log_error_errno(-ERANGE, "%zu nodes from base port %u run past port 65535.",
                                       t->n_nodes, o->base_port);
        if (o->timeout_usec != 0)
                t->ready_timeout_usec = o->timeout_usec;

        r = run_dir_resolve(path, o, &dir);
        if (r < 0)
                return r;
        r = run_dir_make(dir);
        if (r < 0)
                return r;
        lock = run_dir_lock(dir);
        if (lock < 0)
                return lock;

        r = topology_state_load(dir, &old);
        if (r < 0 && r != -ENOENT)
                return r;
        if (old) {
                if (state_any_running(old))
                        return log_error_errno(-EALREADY,
                                               "Topology %s is already up (run directory %s); stop it first "
                                               "with \"dskectl topology down %s\".",
                                               path, dir, path);
                /* Left behind by nodes that died or a machine that rebooted. */
                remove_node_state_dirs(dir, old);
                r = topology_state_remove(dir);
                if (r < 0)
                        return r;
        }

        r = ports_check(t);
        if (r < 0)
                return r;

        r = find_daemon("dske-hub", &hub_bin);
        if (r < 0)
                return r;
        if (t->n_nodes > t->n_hubs) {
                r = find_daemon("dske-client", &client_bin);
                if (r < 0)
                        return r;
        }

        r = topology_state_from_topology(t, &state);
        if (r < 0)
                return log_oom();

        Up u = {
                .ctl = ctl,
                .t = t,
                .state = state,
                .dir = dir,
                .notify_fd = -EBADF,
                .quiet = o->quiet,
                .ephemeral = o->ephemeral,
        };
        u.nodes = calloc(t->n_nodes, sizeof(RunNode));
        if (!u.nodes)
                return log_oom();
        for (size_t i = 0; i < t->n_nodes; i++) {
                u.nodes[i] = (RunNode){.node = t->nodes + i, .state = state->nodes + i, .up = &u};
                if (node_log_path(dir, t->nodes[i].type, t->nodes[i].name, &u.nodes[i].log_path) < 0) {
                        up_done(&u);
                        return log_oom();
                }
        }

        /* sd-event watches children and signals through descriptors; both need the signals
         * blocked. The children get a clean mask back before exec. */
        (void) sigemptyset(&mask);
        (void) sigaddset(&mask, SIGCHLD);
        (void) sigaddset(&mask, SIGINT);
        (void) sigaddset(&mask, SIGTERM);
        (void) sigprocmask(SIG_BLOCK, &mask, &saved_mask);

        r = notify_socket_open(&u);
        if (r < 0)
                goto finish;
        r = sd_event_add_io(ctl->event, &u.notify_source, u.notify_fd, EPOLLIN, on_notify, &u);
        if (r < 0) {
                log_error_errno(r, "Failed to watch the notification socket: %m");
                goto finish;
        }
        if (sd_event_add_signal(ctl->event, &u.sigint_source, SIGINT, on_signal, &u) < 0 ||
            sd_event_add_signal(ctl->event, &u.sigterm_source, SIGTERM, on_signal, &u) < 0) {
                r = log_error_errno(-ENOMEM, "Failed to watch signals.");
                goto finish;
        }

        for (size_t i = 0; i < t->n_nodes; i++) {
                RunNode *rn = u.nodes + i;
                r = node_start(&u, rn, rn->node->type == NODE_HUB ? hub_bin : client_bin);
                if (r < 0)
                        goto fail;
        }

        /* Recorded at once, so that "down" finds the nodes even if we are killed while waiting. */
        r = topology_state_save(dir, state);
        if (r < 0)
                goto fail;

        if (!o->quiet) {
                printf("Waiting for %zu nodes to be ready\n", t->n_nodes);
                (void) fflush(stdout);
        }

        r = sd_event_add_time_relative(ctl->event, &u.timeout_source, CLOCK_MONOTONIC, t->ready_timeout_usec,
                                       0, on_timeout, &u);
        if (r >= 0)
                r = sd_event_add_time_relative(ctl->event, &u.poll_source, CLOCK_MONOTONIC, STATUS_POLL_USEC,
                                               0, on_poll, &u);
        if (r >= 0)
                r = sd_event_source_set_enabled(u.poll_source, SD_EVENT_ON);
        if (r < 0) {
                log_error_errno(r, "Failed to set up timers: %m");
                goto fail;
        }

        up_check_done(&u);
        while (u.result == 0) {
                r = sd_event_run(ctl->event, UINT64_MAX);
                if (r < 0) {
                        up_fail(&u, log_error_errno(r, "Event loop failed: %m"));
                        break;
                }
        }
        if (u.result < 0) {
                r = u.result;
                goto fail;
        }

        if (!o->quiet) {
                printf("Topology %s is up (run directory %s):\n", path, dir);
                print_nodes(t, state);
        }
        r = 0;
        goto finish;

fail:
        for (size_t i = 0; i < t->n_nodes; i++)
                u.nodes[i].child_source = sd_event_source_disable_unref(u.nodes[i].child_source);
        (void) stop_all(dir, state, false);
        log_error("The topology was not started; the nodes' logs are in %s.", dir);
finish:
        up_done(&u);
        (void) sigprocmask(SIG_SETMASK, &saved_mask, NULL);
        return r;
}

/* Status */

typedef struct StatusRow {
        const TopologyNode *node;
        const NodeState *state;
        bool running;
        CtlCall call;
} StatusRow;

int topology_status(Ctl *ctl, const char *path, const TopologyRunOptions *o) {
        _cleanup_(topology_freep) Topology *t = NULL;
        _cleanup_(topology_state_freep) TopologyState *s = NULL;
        _cleanup_free_ StatusRow *rows = NULL;
        _cleanup_free_ CtlCall *calls = NULL;
        _cleanup_json_ json_object *array = NULL;
        bool all_good = true;
        size_t w = 4;
        int r;

        r = topology_open(path, o, &t, &s);
        if (r < 0)
                return r;

        rows = calloc(t->n_nodes, sizeof(StatusRow));
        calls = calloc(t->n_nodes, sizeof(CtlCall));
        if (!rows || !calls)
                return log_oom();

        size_t n_calls = 0;
        for (size_t i = 0; i < t->n_nodes; i++) {
                StatusRow *row = rows + i;
                row->node = t->nodes + i;
                row->state = s ? topology_state_find(s, row->node->type, row->node->name) : NULL;
                row->running = row->state && node_state_is_running(row->state);
                w = MAX(w, strlen(row->node->name));
                if (!row->running)
                        continue;
                if (node_mgmt_url(t, row->node, "status", &calls[n_calls].url) < 0) {
                        r = log_oom();
                        goto finish;
                }
                calls[n_calls].timeout_ms = STATUS_CALL_MS;
                n_calls++;
        }

        r = ctl_run_calls(ctl, calls, n_calls);
        if (r < 0)
                goto finish;

        array = o->json ? json_object_new_array() : NULL;
        if (o->json && !array) {
                r = log_oom();
                goto finish;
        }
        if (!o->json)
                printf("%-6s  %-*s  %5s  %7s  %-7s  %s\n", "TYPE", (int) w, "NAME", "PORT", "PID", "STATE",
                       "READY");

        for (size_t i = 0, c = 0; i < t->n_nodes; i++) {
                StatusRow *row = rows + i;
                const char *ready = "-";

                if (row->running) {
                        CtlCall *call = calls + c++;
                        _cleanup_json_ json_object *st = ctl_call_json(call);
                        json_object *v;

                        if (call->error < 0 || call->status != 200 || !st)
                                ready = "no (no management status)";
                        else if (row->node->type == NODE_HUB)
                                ready = "yes";
                        else
                                ready = json_object_object_get_ex(st, "ready", &v) &&
                                                        json_object_get_boolean(v)
                                                ? "yes"
                                                : "no";
                }
                if (!row->running || !streq(ready, "yes"))
                        all_good = false;

                int pid = row->running ? (int) row->state->pid : 0;
                char pid_text[16] = "-";
                if (pid > 0)
                        (void) snprintf(pid_text, sizeof(pid_text), "%d", pid);
                if (o->json) {
                        json_object *e = json_object_new_object();
                        if (!e || json_object_array_add(array, e) < 0) {
                                json_object_put(e);
                                r = log_oom();
                                goto finish;
                        }
                        json_object_object_add(e, "type",
                                               json_object_new_string(node_type_to_string(row->node->type)));
                        json_object_object_add(e, "name", json_object_new_string(row->node->name));
                        json_object_object_add(e, "port", json_object_new_int(row->node->port));
                        json_object_object_add(e, "pid", pid > 0 ? json_object_new_int(pid) : NULL);
                        json_object_object_add(e, "running", json_object_new_boolean(row->running));
                        json_object_object_add(e, "ready", json_object_new_boolean(streq(ready, "yes")));
                } else
                        printf("%-6s  %-*s  %5u  %7s  %-7s  %s\n", node_type_to_string(row->node->type),
                               (int) w, row->node->name, row->node->port, pid_text,
                               row->running ? "running" : "stopped", ready);
        }
        if (o->json)
                json_print(array);
        r = all_good ? 0 : 3;

finish:
        for (size_t i = 0; i < t->n_nodes; i++)
                ctl_call_done(calls + i);
        return r;
}

/* Finding a running topology */

static TopologyNode *topology_match(const Topology *t, const char *spec) {
        const char *name;

        if ((name = startswith(spec, "hub/")))
                return topology_find_node(t, NODE_HUB, name);
        if ((name = startswith(spec, "client/")))
                return topology_find_node(t, NODE_CLIENT, name);
        return topology_find_node(t, _NODE_TYPE_INVALID, spec) ?: topology_find_sae(t, spec);
}

int topology_lookup_node(const Topology *t, const char *spec, TopologyNode **ret) {
        TopologyNode *n = NULL;

        if (startswith(spec, "hub/") || startswith(spec, "client/"))
                n = topology_match(t, spec);
        else {
                TopologyNode *hub = topology_find_node(t, NODE_HUB, spec),
                             *client = topology_find_node(t, NODE_CLIENT, spec);
                if (hub && client)
                        return log_error_errno(-ENOTUNIQ,
                                               "Both a hub and a client are called %s in %s; say hub/%s or "
                                               "client/%s.",
                                               spec, t->path, spec, spec);
                n = hub ?: client;
        }
        if (!n)
                return log_error_errno(-ENOENT, "%s has no node %s.", t->path, spec);
        *ret = n;
        return 0;
}

static bool topology_knows(const Topology *t, const char *const *names) {
        for (const char *const *n = names; n && *n; n++)
                if (!topology_match(t, *n))
                        return false;
        return true;
}

static int state_topology_path(const char *dir, char **ret) {
        _cleanup_(topology_state_freep) TopologyState *s = NULL;
        int r;

        r = topology_state_load(dir, &s);
        if (r < 0)
                return r;
        if (!state_any_running(s))
                return -ESRCH;
        *ret = TAKE_PTR(s->topology_path);
        return 0;
}

int topology_discover(const TopologyRunOptions *o, const char *const *names, char **ret_path) {
        _cleanup_free_ char *top = NULL, *found = NULL;
        _cleanup_(closedirp) DIR *d = NULL;
        unsigned n_found = 0;
        int r;

        if (o->run_dir) {
                r = state_topology_path(o->run_dir, ret_path);
                if (r == -ENOENT || r == -ESRCH)
                        return log_error_errno(-ENOENT, "No topology is up in %s.", o->run_dir);
                return r;
        }

        /* The default run directories all live in one parent: list it. */
        r = run_dir_default("x", &top);
        if (r < 0)
                return log_oom();
        top[strlen(top) - 2] = '\0';

        d = opendir(top);
        if (!d && errno != ENOENT)
                return log_error_errno(negative_errno(), "Failed to open %s: %m", top);

        for (struct dirent *de; d && (de = readdir(d));) {
                _cleanup_free_ char *dir = NULL, *path = NULL;
                _cleanup_(topology_freep) Topology *t = NULL;

                if (de->d_name[0] == '.')
                        continue;
                if (asprintf(&dir, "%s/%s", top, de->d_name) < 0)
                        return log_oom();
                if (state_topology_path(dir, &path) < 0)
                        continue;

                /* A topology file that changed or vanished since it was brought up cannot be used. */
                int saved = log_get_max_level();
                log_set_max_level(LOG_CRIT);
                r = topology_load(path, &t);
                log_set_max_level(saved);
                if (r < 0 || !topology_knows(t, names))
                        continue;

                n_found++;
                free(found);
                found = TAKE_PTR(path);
        }

        if (n_found == 0) {
                _cleanup_free_ char *list = NULL;
                size_t size = 0;
                FILE *f = open_memstream(&list, &size);
                if (!f)
                        return log_oom();
                for (const char *const *n = names; n && *n; n++)
                        fprintf(f, "%s%s", n == names ? "" : n[1] ? ", " : " and ", *n);
                if (fclose(f) != 0)
                        return log_oom();
                return log_error_errno(-ENOENT,
                                       "No running topology knows %s; name one with --topology FILE.",
                                       isempty(list) ? "the nodes asked for" : list);
        }
        if (n_found > 1)
                return log_error_errno(-ENOTUNIQ,
                                       "Several running topologies fit; name one with --topology FILE.");

        *ret_path = TAKE_PTR(found);
        return 0;
}
