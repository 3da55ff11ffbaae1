/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include "client-conf.h"
#include "client-manager.h"
#include "daemon-util.h"
#include "log.h"

static int run(int argc, char *argv[]) {
        _cleanup_(manager_freep) Manager *m = NULL;
        _cleanup_(client_args_done) ClientArgs args = {.log_level = -1};
        _cleanup_(client_config_done) ClientConfig config = {};
        int listen_fd = -1, n, r;
        sigset_t mask;

        r = client_parse_argv(argc, argv, &args);
        if (r <= 0)
                return r;

        r = client_config_load(&args, &config);
        if (r < 0)
                return r;
        log_set_max_level(config.log_level);

        if (!config.ephemeral) {
                r = daemon_prepare_state_dir(config.state_dir);
                if (r < 0)
                        return r;
        }

        /* The loop receives these through signalfd; they must not be delivered the default way. */
        (void) sigemptyset(&mask);
        (void) sigaddset(&mask, SIGTERM);
        (void) sigaddset(&mask, SIGINT);
        (void) sigaddset(&mask, SIGHUP);
        if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0)
                return log_error_errno(-errno, "Failed to block signals: %m");
        (void) signal(SIGPIPE, SIG_IGN);

        n = sd_listen_fds(true);
        if (n < 0)
                return log_error_errno(n, "Failed to read the sockets passed by the service manager: %m");
        if (n > 1)
                return log_error_errno(-EINVAL,
                                       "Expected at most one socket from the service manager, got %d.", n);
        if (n == 1)
                listen_fd = SD_LISTEN_FDS_START;

        r = manager_new(&m);
        if (r < 0)
                return log_error_errno(r, "Failed to set up the client: %m");
        r = manager_start(m, &config, &args, listen_fd);
        if (r < 0)
                return r;
        return manager_run(m);
}

int main(int argc, char *argv[]) {
        int r;

        log_open("dske-client");
        r = run(argc, argv);
        return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
