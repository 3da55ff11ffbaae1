/* SPDX-License-Identifier: MIT */
#include <assert.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <poll.h>
#include <stdio.h>
#include <sys/file.h>
#include <sys/pidfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "json-util.h"
#include "log.h"
#include "topology-state.h"

TopologyState *topology_state_free(TopologyState *s) {
        if (!s)
                return NULL;
        for (size_t i = 0; i < s->n_nodes; i++)
                free(s->nodes[i].name);
        free(s->nodes);
        free(s->topology_path);
        free(s->address);
        free(s);
        return NULL;
}

int run_dir_default(const char *id, char **ret) {
        const char *xdg = getenv("XDG_RUNTIME_DIR");
        char *s;
        int r;

        if (xdg && xdg[0] == '/')
                r = asprintf(&s, "%s/dske/%s", xdg, id);
        else if (geteuid() == 0)
                r = asprintf(&s, "/run/dske/%s", id);
        else
                r = asprintf(&s, "/tmp/dske-%u/%s", (unsigned) geteuid(), id);
        if (r < 0)
                return -ENOMEM;
        *ret = s;
        return 0;
}

static int mkdir_private(const char *path) {
        struct stat st;

        if (mkdir(path, 0700) < 0 && errno != EEXIST)
                return log_error_errno(negative_errno(), "Failed to create directory %s: %m", path);
        if (lstat(path, &st) < 0)
                return log_error_errno(negative_errno(), "Failed to check directory %s: %m", path);
        if (!S_ISDIR(st.st_mode))
                return log_error_errno(-ENOTDIR, "%s exists and is not a directory.", path);
        if (st.st_uid != geteuid())
                return log_error_errno(-EPERM, "Directory %s belongs to another user.", path);
        return 0;
}

int run_dir_make(const char *dir) {
        _cleanup_free_ char *p = strdup(dir);
        int r;

        if (!p)
                return log_oom();

        /* Parents may be shared (/tmp, /run, $XDG_RUNTIME_DIR) and are only created when missing;
         * the run directory itself and its own parent ("dske") must be ours. */
        for (char *s = p + 1; *s; s++) {
                if (*s != '/')
                        continue;
                *s = '\0';
                if (mkdir(p, 0755) < 0 && errno != EEXIST)
                        return log_error_errno(negative_errno(), "Failed to create directory %s: %m", p);
                *s = '/';
        }

        char *slash = strrchr(p, '/');
        if (slash && slash != p) {
                *slash = '\0';
                struct stat st;
                if (stat(p, &st) < 0)
                        return log_error_errno(negative_errno(), "Failed to check directory %s: %m", p);
                if ((st.st_uid != geteuid() && st.st_uid != 0) ||
                    ((st.st_mode & 0022) != 0 && (st.st_mode & S_ISVTX) == 0))
                        return log_error_errno(-EPERM, "Directory %s may be changed by other users.", p);
                *slash = '/';
        }

        r = mkdir_private(p);
        if (r < 0)
                return r;
        return 0;
}

int run_dir_lock(const char *dir) {
        _cleanup_free_ char *p = NULL;
        _cleanup_close_ int fd = -EBADF;

        if (asprintf(&p, "%s/lock", dir) < 0)
                return log_oom();

        fd = open(p, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0)
                return log_error_errno(negative_errno(), "Failed to open %s: %m", p);
        if (flock(fd, LOCK_EX) < 0)
                return log_error_errno(negative_errno(), "Failed to lock %s: %m", p);
        return TAKE_FD(fd);
}

static int state_path(const char *dir, char **ret) {
        return asprintf(ret, "%s/state", dir) < 0 ? -ENOMEM : 0;
}

static int json_get_uint(json_object *o, const char *key, uint64_t max, uint64_t *ret) {
        json_object *v;

        if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_int))
                return -EBADMSG;
        int64_t i = json_object_get_int64(v);
        if (i < 0 || (uint64_t) i > max)
                return -EBADMSG;
        *ret = (uint64_t) i;
        return 0;
}

static const char *json_get_string(json_object *o, const char *key) {
        json_object *v;

        if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string))
                return NULL;
        return json_object_get_string(v);
}

static int node_state_from_json(json_object *o, NodeState *ret) {
        uint64_t port, pid, start_time;
        const char *type = json_get_string(o, "type"), *name = json_get_string(o, "name");

        if (!type || !name || node_type_from_string(type) < 0)
                return -EBADMSG;
        if (json_get_uint(o, "port", 65535, &port) < 0 || json_get_uint(o, "pid", INT32_MAX, &pid) < 0 ||
            json_get_uint(o, "start_time", UINT64_MAX, &start_time) < 0)
                return -EBADMSG;

        char *n = strdup(name);
        if (!n)
                return -ENOMEM;
        *ret = (NodeState){
                .type = node_type_from_string(type),
                .name = n,
                .port = (uint16_t) port,
                .pid = (pid_t) pid,
                .start_time = start_time,
        };
        return 0;
}

int topology_state_load(const char *dir, TopologyState **ret) {
        _cleanup_(topology_state_freep) TopologyState *s = NULL;
        _cleanup_free_ char *p = NULL;
        _cleanup_json_ json_object *o = NULL;
        json_object *nodes;
        int r;

        r = state_path(dir, &p);
        if (r < 0)
                return log_oom();

        if (access(p, F_OK) < 0) {
                if (errno == ENOENT)
                        return -ENOENT;
                return log_error_errno(negative_errno(), "Failed to access %s: %m", p);
        }

        o = json_object_from_file(p);
        if (!o)
                return log_error_errno(-EBADMSG, "Failed to read %s: %s", p, json_util_get_last_err());

        s = calloc(1, sizeof(TopologyState));
        if (!s)
                return log_oom();

        const char *path = json_get_string(o, "topology"), *address = json_get_string(o, "address");
        if (!path || !address || !json_object_object_get_ex(o, "nodes", &nodes) ||
            !json_object_is_type(nodes, json_type_array))
                return log_error_errno(-EBADMSG, "%s is not a topology state file.", p);
        s->topology_path = strdup(path);
        s->address = strdup(address);
        if (!s->topology_path || !s->address)
                return log_oom();

        size_t n = json_object_array_length(nodes);
        s->nodes = calloc(n ?: 1, sizeof(NodeState));
        if (!s->nodes)
                return log_oom();
        for (size_t i = 0; i < n; i++) {
                r = node_state_from_json(json_object_array_get_idx(nodes, i), s->nodes + i);
                if (r == -ENOMEM)
                        return log_oom();
                if (r < 0)
                        return log_error_errno(r, "%s: node %zu is malformed.", p, i);
                s->n_nodes++;
        }

        *ret = TAKE_PTR(s);
        return 0;
}

static int json_add(json_object *o, const char *key, json_object *v) {
        if (!v || json_object_object_add(o, key, v) < 0) {
                json_object_put(v);
                return -ENOMEM;
        }
        return 0;
}

static int topology_state_to_json(const TopologyState *s, json_object **ret) {
        _cleanup_json_ json_object *o = json_object_new_object();
        json_object *nodes = json_object_new_array();
        int r;

        if (!o)
                return -ENOMEM;
        r = json_add(o, "nodes", nodes);
        if (r < 0)
                return r;
        if (json_add(o, "topology", json_object_new_string(s->topology_path)) < 0 ||
            json_add(o, "address", json_object_new_string(s->address)) < 0)
                return -ENOMEM;

        for (size_t i = 0; i < s->n_nodes; i++) {
                const NodeState *n = s->nodes + i;
                json_object *e = json_object_new_object();

                if (!e || json_object_array_add(nodes, e) < 0) {
                        json_object_put(e);
                        return -ENOMEM;
                }
                if (json_add(e, "type", json_object_new_string(node_type_to_string(n->type))) < 0 ||
                    json_add(e, "name", json_object_new_string(n->name)) < 0 ||
                    json_add(e, "port", json_object_new_int(n->port)) < 0 ||
                    json_add(e, "pid", json_object_new_int(n->pid)) < 0 ||
                    json_add(e, "start_time", json_object_new_int64((int64_t) n->start_time)) < 0)
                        return -ENOMEM;
        }

        *ret = TAKE_PTR(o);
        return 0;
}

int topology_state_save(const char *dir, const TopologyState *s) {
        _cleanup_json_ json_object *o = NULL;
        _cleanup_free_ char *p = NULL, *tmp = NULL;
        _cleanup_close_ int fd = -EBADF;
        int r;

        r = topology_state_to_json(s, &o);
        if (r < 0)
                return log_oom();

        if (state_path(dir, &p) < 0 || asprintf(&tmp, "%s.tmp", p) < 0)
                return log_oom();

        const char *text = json_object_to_json_string_ext(
                o, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED | JSON_C_TO_STRING_NOSLASHESCAPE);
        if (!text)
                return log_oom();

        fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0)
                return log_error_errno(negative_errno(), "Failed to create %s: %m", tmp);

        size_t l = strlen(text);
        for (size_t done = 0; done < l;) {
                ssize_t k = write(fd, text + done, l - done);
                if (k < 0) {
                        r = log_error_errno(negative_errno(), "Failed to write %s: %m", tmp);
                        (void) unlink(tmp);
                        return r;
                }
                done += (size_t) k;
        }
        if (write(fd, "\n", 1) != 1 || fsync(fd) < 0) {
                r = log_error_errno(negative_errno(), "Failed to write %s: %m", tmp);
                (void) unlink(tmp);
                return r;
        }
        if (rename(tmp, p) < 0) {
                r = log_error_errno(negative_errno(), "Failed to rename %s to %s: %m", tmp, p);
                (void) unlink(tmp);
                return r;
        }
        return 0;
}

int topology_state_remove(const char *dir) {
        _cleanup_free_ char *p = NULL;

        if (state_path(dir, &p) < 0)
                return log_oom();
        if (unlink(p) < 0 && errno != ENOENT)
                return log_error_errno(negative_errno(), "Failed to remove %s: %m", p);
        return 0;
}

int topology_state_from_topology(const Topology *t, TopologyState **ret) {
        _cleanup_(topology_state_freep) TopologyState *s = calloc(1, sizeof(TopologyState));

        if (!s)
                return -ENOMEM;
        s->topology_path = strdup(t->path);
        s->address = strdup(t->address);
        s->nodes = calloc(t->n_nodes, sizeof(NodeState));
        if (!s->topology_path || !s->address || !s->nodes)
                return -ENOMEM;

        for (size_t i = 0; i < t->n_nodes; i++) {
                s->nodes[i] = (NodeState){
                        .type = t->nodes[i].type,
                        .name = strdup(t->nodes[i].name),
                        .port = t->nodes[i].port,
                };
                if (!s->nodes[i].name)
                        return -ENOMEM;
                s->n_nodes++;
        }

        *ret = TAKE_PTR(s);
        return 0;
}

NodeState *topology_state_find(const TopologyState *s, NodeType type, const char *name) {
        for (size_t i = 0; i < s->n_nodes; i++)
                if (s->nodes[i].type == type && streq(s->nodes[i].name, name))
                        return s->nodes + i;
        return NULL;
}

/* Reads the numeric fields first..last (1-based, as proc(5) counts them) of /proc/PID/stat. */
static int process_stat_fields(pid_t pid, unsigned first, unsigned last, uint64_t *ret) {
        char p[64], buf[1024];
        _cleanup_close_ int fd = -EBADF;
        ssize_t l;

        assert(first >= 3 && first <= last);

        (void) snprintf(p, sizeof(p), "/proc/%d/stat", (int) pid);
        fd = open(p, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return errno == ENOENT ? -ESRCH : negative_errno();
        l = read(fd, buf, sizeof(buf) - 1);
        if (l < 0)
                return negative_errno();
        buf[l] = '\0';

        /* The command name may contain anything, including ") ", so parse after the last ')'. */
        char *s = strrchr(buf, ')');
        if (!s || s[1] != ' ')
                return -EBADMSG;
        s += 2;

        /* s is at field 3 (state). */
        if (*s == 'Z' || *s == 'X')
                return -ESRCH;
        for (unsigned field = 3; field <= last; field++) {
                if (field >= first) {
                        char *end;
                        errno = 0;
                        unsigned long long v = strtoull(s, &end, 10);
                        if (errno != 0 || end == s)
                                return -EBADMSG;
                        ret[field - first] = v;
                }
                if (field == last)
                        break;
                s = strchr(s, ' ');
                if (!s)
                        return -EBADMSG;
                s++;
        }
        return 0;
}

int process_start_time(pid_t pid, uint64_t *ret) {
        return process_stat_fields(pid, 22, 22, ret);
}

int process_cpu_usec(pid_t pid, uint64_t *ret) {
        uint64_t t[2]; /* utime, stime */
        long hz = sysconf(_SC_CLK_TCK);
        int r;

        if (hz <= 0)
                return -EINVAL;
        r = process_stat_fields(pid, 14, 15, t);
        if (r < 0)
                return r;
        *ret = (t[0] + t[1]) * UINT64_C(1000000) / (uint64_t) hz;
        return 0;
}

static bool process_is_node(pid_t pid, NodeType type, const char *name) {
        char p[64], buf[4096];
        _cleanup_close_ int fd = -EBADF;
        ssize_t l;

        (void) snprintf(p, sizeof(p), "/proc/%d/cmdline", (int) pid);
        fd = open(p, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return false;
        l = read(fd, buf, sizeof(buf) - 1);
        if (l <= 0)
                return false;
        buf[l] = '\0';

        const char *argv0 = buf, *slash = strrchr(argv0, '/');
        const char *base = slash ? slash + 1 : argv0;
        size_t l0 = strlen(argv0);
        if ((size_t) l <= l0 + 1)
                return false;
        const char *argv1 = buf + l0 + 1;

        return streq(base, type == NODE_HUB ? "dske-hub" : "dske-client") && streq(argv1, name);
}

bool node_state_is_running(const NodeState *n) {
        uint64_t st;

        if (n->pid <= 0)
                return false;
        if (process_start_time(n->pid, &st) < 0 || st != n->start_time)
                return false;
        return process_is_node(n->pid, n->type, n->name);
}

int node_state_wait_exit(const NodeState *n, int timeout_ms) {
        _cleanup_close_ int fd = -EBADF;

        if (!node_state_is_running(n))
                return 0;
        fd = pidfd_open(n->pid, 0);
        if (fd < 0)
                return errno == ESRCH ? 0 : negative_errno();
        /* The pidfd pins the process: check it is still ours before waiting on it. */
        if (!node_state_is_running(n))
                return 0;

        struct pollfd p = {.fd = fd, .events = POLLIN};
        for (;;) {
                int r = poll(&p, 1, timeout_ms);
                if (r > 0)
                        return 0;
                if (r == 0)
                        return -ETIMEDOUT;
                if (errno != EINTR)
                        return negative_errno();
        }
}

int node_log_path(const char *dir, NodeType type, const char *name, char **ret) {
        return asprintf(ret, "%s/%s-%s.log", dir, node_type_to_string(type), name) < 0 ? -ENOMEM : 0;
}

int node_state_dir_path(const char *dir, NodeType type, const char *name, char **ret) {
        return asprintf(ret, "%s/%s-%s", dir, node_type_to_string(type), name) < 0 ? -ENOMEM : 0;
}
