/* SPDX-License-Identifier: MIT */
#include <assert.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <systemd/sd-daemon.h>
#include <time.h>

#include "conf-parser.h"
#include "daemon-util.h"
#include "log.h"

/* Far more than a hub's connection limit needs, and what systemd itself raises services to. */
#define FD_LIMIT_MAX ((rlim_t) 512 * 1024)

int daemon_block_signals(void) {
        sigset_t mask;

        (void) sigemptyset(&mask);
        (void) sigaddset(&mask, SIGTERM);
        (void) sigaddset(&mask, SIGINT);
        (void) sigaddset(&mask, SIGHUP);
        if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0)
                return -errno;
        /* A peer that closes its end must cost an EPIPE, not the process. */
        if (signal(SIGPIPE, SIG_IGN) == SIG_ERR)
                return -errno;
        return 0;
}

static int on_stop_default(sd_event_source *source, const struct signalfd_siginfo *si, void *userdata) {
        log_info("Received %s, stopping.", strsignal((int) si->ssi_signo));
        return sd_event_exit(sd_event_source_get_event(source), 0);
}

static int on_reload_ignore(sd_event_source *source, const struct signalfd_siginfo *si, void *userdata) {
        log_debug("Received SIGHUP, nothing to reload.");
        return 0;
}

int daemon_setup_event(sd_event *e, sd_event_signal_handler_t on_stop, sd_event_signal_handler_t on_reload,
                       void *userdata) {
        int r;

        assert(e);

        r = daemon_block_signals();
        if (r < 0)
                return r;

        r = sd_event_add_signal(e, NULL, SIGTERM, on_stop ?: on_stop_default, userdata);
        if (r < 0)
                return r;
        r = sd_event_add_signal(e, NULL, SIGINT, on_stop ?: on_stop_default, userdata);
        if (r < 0)
                return r;
        r = sd_event_add_signal(e, NULL, SIGHUP, on_reload ?: on_reload_ignore, userdata);
        if (r < 0)
                return r;

        r = sd_event_set_watchdog(e, true);
        if (r < 0)
                return r;
        return 0;
}

int daemon_listen_fd(int *ret_fd) {
        int n, r;

        assert(ret_fd);

        n = sd_listen_fds(true);
        if (n < 0)
                return n;
        if (n == 0) {
                *ret_fd = -1;
                return 0;
        }
        if (n > 1)
                return -EINVAL;

        r = sd_is_socket_inet(SD_LISTEN_FDS_START, AF_UNSPEC, SOCK_STREAM, 1, 0);
        if (r < 0)
                return r;
        if (r == 0)
                return -ENOTSOCK;
        *ret_fd = SD_LISTEN_FDS_START;
        return 1;
}

int daemon_raise_fd_limit(void) {
        struct rlimit rl;
        rlim_t target;

        if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
                return -errno;
        target = rl.rlim_max == RLIM_INFINITY ? FD_LIMIT_MAX : MIN(rl.rlim_max, FD_LIMIT_MAX);
        if (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur >= target)
                return 0;
        rl.rlim_cur = target;
        if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
                return -errno;
        return 1;
}

static int notify(const char *state) {
        int r;

        r = sd_notify(false, state);
        if (r < 0)
                log_debug_errno(r, "Failed to notify the service manager: %m");
        return r;
}

/* Sends prefix followed by the formatted text, flattened onto one line. */
_printf_(2, 0) static int notify_text(const char *prefix, const char *format, va_list ap) {
        _cleanup_free_ char *text = NULL, *state = NULL;

        if (vasprintf(&text, format, ap) < 0)
                return -ENOMEM;
        for (char *p = text; *p; p++)
                if (*p == '\n' || *p == '\r')
                        *p = ' ';
        if (asprintf(&state, "%s%s", prefix, text) < 0)
                return -ENOMEM;
        return notify(state);
}

int daemon_notify_ready(void) {
        return notify("READY=1");
}

int daemon_notify_status(const char *format, ...) {
        va_list ap;
        int r;

        assert(format);

        va_start(ap, format);
        r = notify_text("STATUS=", format, ap);
        va_end(ap);
        return r;
}

_printf_(2, 3) static int notify_textf(const char *prefix, const char *format, ...) {
        va_list ap;
        int r;

        va_start(ap, format);
        r = notify_text(prefix, format, ap);
        va_end(ap);
        return r;
}

int daemon_notify_stopping(const char *status) {
        if (isempty(status))
                return notify("STOPPING=1");
        return notify_textf("STOPPING=1\nSTATUS=", "%s", status);
}

int daemon_notify_reloading(void) {
        struct timespec ts;
        char state[64];

        if (clock_gettime(CLOCK_MONOTONIC, &ts) < 0)
                return -errno;
        (void) snprintf(state, sizeof(state), "RELOADING=1\nMONOTONIC_USEC=%" PRIu64,
                        (uint64_t) ts.tv_sec * 1000000 + (uint64_t) ts.tv_nsec / 1000);
        return notify(state);
}

int daemon_prepare_state_dir(const char *path) {
        _cleanup_free_ char *parents = strdup(path);
        struct stat st;

        if (!parents)
                return log_oom();
        /* The parents as mkdir -p would (the service manager does this for StateDirectory=). */
        for (char *s = strchr(parents + 1, '/'); s; s = strchr(s + 1, '/')) {
                *s = 0;
                if (mkdir(parents, 0755) < 0 && errno != EEXIST)
                        return log_error_errno(-errno, "Failed to create directory %s: %m", parents);
                *s = '/';
        }
        if (mkdir(path, 0700) < 0 && errno != EEXIST)
                return log_error_errno(-errno, "Failed to create state directory %s: %m", path);
        if (stat(path, &st) < 0)
                return log_error_errno(-errno, "Failed to access state directory %s: %m", path);
        if (!S_ISDIR(st.st_mode))
                return log_error_errno(-ENOTDIR, "State directory %s is not a directory.", path);
        if (access(path, W_OK | X_OK) < 0)
                return log_error_errno(-errno, "State directory %s is not writable: %m", path);
        return 0;
}

int daemon_default_state_dir(const char *role, const char *name, char **ret) {
        const char *e = getenv("STATE_DIRECTORY");
        char *p;

        if (!isempty(e))
                p = strndup(e, strcspn(e, ":"));
        else if (asprintf(&p, LOCALSTATEDIR "/lib/dske/%s-%s", role, name) < 0)
                p = NULL;
        if (!p)
                return -ENOMEM;
        *ret = p;
        return 0;
}

int daemon_conf_parse_max_body_size(const char *filename, unsigned line, const char *key, const char *value,
                                    void *data) {
        return conf_parse_bytes_range(filename, line, key, value, data, 1024, UINT64_C(64) * 1024 * 1024,
                                      "1K..64M");
}
