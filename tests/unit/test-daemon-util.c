/* SPDX-License-Identifier: MIT */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cmocka.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <systemd/sd-daemon.h>

#include "daemon-util.h"
#include "log.h"

/* A notification socket like the service manager's, named in NOTIFY_SOCKET. */
static int notify_socket_open(void) {
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        int fd;

        fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        assert_true(fd >= 0);
        /* Abstract namespace: nothing to clean up on disk. */
        snprintf(sa.sun_path + 1, sizeof(sa.sun_path) - 1, "dske-test-notify-%d", (int) getpid());
        assert_int_equal(bind(fd, (struct sockaddr *) &sa,
                              offsetof(struct sockaddr_un, sun_path) + 1 + strlen(sa.sun_path + 1)),
                         0);
        {
                char name[sizeof(sa.sun_path) + 1];
                snprintf(name, sizeof(name), "@%s", sa.sun_path + 1);
                assert_int_equal(setenv("NOTIFY_SOCKET", name, 1), 0);
        }
        return fd;
}

static void expect_message(int fd, const char *expected_prefix, bool exact) {
        char buf[512];
        ssize_t n;

        n = recv(fd, buf, sizeof(buf) - 1, MSG_DONTWAIT);
        assert_true(n > 0);
        buf[n] = 0;
        if (exact)
                assert_string_equal(buf, expected_prefix);
        else
                assert_memory_equal(buf, expected_prefix, strlen(expected_prefix));
}

static void test_notify(void **state) {
        int fd = notify_socket_open();

        assert_true(daemon_notify_ready() > 0);
        expect_message(fd, "READY=1", true);
        assert_true(daemon_notify_status("Serving %d client(s).", 3) > 0);
        expect_message(fd, "STATUS=Serving 3 client(s).", true);
        assert_true(daemon_notify_status("two\nlines") > 0);
        expect_message(fd, "STATUS=two lines", true);
        assert_true(daemon_notify_stopping("Stopping.") > 0);
        expect_message(fd, "STOPPING=1\nSTATUS=Stopping.", true);
        assert_true(daemon_notify_stopping(NULL) > 0);
        expect_message(fd, "STOPPING=1", true);
        assert_true(daemon_notify_reloading() > 0);
        expect_message(fd, "RELOADING=1\nMONOTONIC_USEC=", false);

        /* Outside systemd: quietly nothing. */
        assert_int_equal(unsetenv("NOTIFY_SOCKET"), 0);
        assert_int_equal(daemon_notify_ready(), 0);
        assert_int_equal(daemon_notify_status("x"), 0);
        close(fd);
}

typedef struct Signals {
        unsigned stops, reloads;
} Signals;

static int on_stop(sd_event_source *source, const struct signalfd_siginfo *si, void *userdata) {
        Signals *s = userdata;

        assert_true(si->ssi_signo == SIGTERM || si->ssi_signo == SIGINT);
        s->stops++;
        return 0;
}

static int on_reload(sd_event_source *source, const struct signalfd_siginfo *si, void *userdata) {
        Signals *s = userdata;

        assert_int_equal(si->ssi_signo, SIGHUP);
        s->reloads++;
        return 0;
}

static void run_until_quiet(sd_event *e) {
        while (sd_event_run(e, 50 * 1000) > 0)
                ;
}

static void test_signals(void **state) {
        sd_event *e = NULL;
        Signals s = {};
        int fd;
        uint64_t usec = 0;

        /* Ask for a watchdog, as WatchdogSec= would. */
        fd = notify_socket_open();
        assert_int_equal(setenv("WATCHDOG_USEC", "10000000", 1), 0);
        {
                char pid[32];
                snprintf(pid, sizeof(pid), "%d", (int) getpid());
                assert_int_equal(setenv("WATCHDOG_PID", pid, 1), 0);
        }

        assert_int_equal(sd_event_new(&e), 0);
        assert_int_equal(daemon_setup_event(e, on_stop, on_reload, &s), 0);
        assert_true(sd_event_get_watchdog(e) > 0);
        assert_int_equal(sd_watchdog_enabled(false, &usec), 1);

        /* Blocked, so they wait for the loop instead of killing the process. */
        assert_int_equal(raise(SIGHUP), 0);
        assert_int_equal(raise(SIGTERM), 0);
        assert_int_equal(raise(SIGINT), 0);
        run_until_quiet(e);
        assert_int_equal(s.reloads, 1);
        assert_int_equal(s.stops, 2);
        sd_event_unref(e);

        assert_int_equal(unsetenv("WATCHDOG_USEC"), 0);
        assert_int_equal(unsetenv("WATCHDOG_PID"), 0);
        assert_int_equal(unsetenv("NOTIFY_SOCKET"), 0);
        close(fd);

        /* Defaults: SIGHUP does nothing, SIGTERM ends the loop with success. */
        e = NULL;
        assert_int_equal(sd_event_new(&e), 0);
        assert_int_equal(daemon_setup_event(e, NULL, NULL, NULL), 0);
        assert_int_equal(sd_event_get_watchdog(e), 0);
        assert_int_equal(raise(SIGHUP), 0);
        assert_int_equal(raise(SIGTERM), 0);
        assert_int_equal(sd_event_loop(e), 0);
        sd_event_unref(e);
}

/* In a child, hands over fds as the service manager would and reports daemon_listen_fd() through
 * the exit status: 100 + r, or 10 when r == 1 and the fd is the right one. */
static int listen_fd_in_child(int n_fds, bool listening) {
        pid_t pid = fork();
        int status;

        assert_true(pid >= 0);
        if (pid == 0) {
                char v[32];
                int fd, r;

                for (int i = 0; i < n_fds; i++) {
                        struct sockaddr_in sa = {.sin_family = AF_INET,
                                                 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};

                        fd = socket(AF_INET, SOCK_STREAM, 0);
                        if (fd < 0 || bind(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0)
                                _exit(1);
                        if (listening && listen(fd, 4) < 0)
                                _exit(1);
                        if (dup2(fd, SD_LISTEN_FDS_START + i) < 0)
                                _exit(1);
                        if (fd != SD_LISTEN_FDS_START + i)
                                close(fd);
                }
                /* The service manager sets nothing when it passes nothing. */
                if (n_fds > 0) {
                        snprintf(v, sizeof(v), "%d", (int) getpid());
                        setenv("LISTEN_PID", v, 1);
                        snprintf(v, sizeof(v), "%d", n_fds);
                        setenv("LISTEN_FDS", v, 1);
                }

                fd = -2;
                r = daemon_listen_fd(&fd);
                if (r == 1 && fd == SD_LISTEN_FDS_START)
                        _exit(10);
                if (r == 0 && fd == -1)
                        _exit(100);
                _exit(r < 0 && r > -100 ? 100 + r : 2);
        }
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFEXITED(status));
        return WEXITSTATUS(status);
}

static void test_listen_fd(void **state) {
        int fd = 5;

        assert_int_equal(listen_fd_in_child(1, true), 10);
        assert_int_equal(listen_fd_in_child(0, true), 100);
        assert_int_equal(listen_fd_in_child(2, true), 100 - EINVAL);
        assert_int_equal(listen_fd_in_child(1, false), 100 - ENOTSOCK);

        /* And here, where nothing was passed. */
        assert_int_equal(daemon_listen_fd(&fd), 0);
        assert_int_equal(fd, -1);
}

static void test_fd_limit(void **state) {
        struct rlimit before, after;
        int r;

        assert_int_equal(getrlimit(RLIMIT_NOFILE, &before), 0);
        r = daemon_raise_fd_limit();
        assert_true(r >= 0);
        assert_int_equal(getrlimit(RLIMIT_NOFILE, &after), 0);
        assert_true(after.rlim_cur >= before.rlim_cur);
        assert_int_equal(after.rlim_max, before.rlim_max);
        if (before.rlim_max != RLIM_INFINITY && before.rlim_max <= 512 * 1024)
                assert_int_equal(after.rlim_cur, before.rlim_max);
        assert_int_equal(r, after.rlim_cur != before.rlim_cur);
        /* Once raised it stays. */
        assert_int_equal(daemon_raise_fd_limit(), 0);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_notify),
                cmocka_unit_test(test_signals),
                cmocka_unit_test(test_listen_fd),
                cmocka_unit_test(test_fd_limit),
        };

        log_set_max_level(LOG_WARNING);
        return cmocka_run_group_tests(tests, NULL, NULL);
}
