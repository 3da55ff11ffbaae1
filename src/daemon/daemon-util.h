/* SPDX-License-Identifier: MIT */
#pragma once

/* What dske-hub and dske-client share as processes: signals on the event loop, the systemd
 * notification protocol and watchdog, socket activation and the file descriptor limit. */

#include <systemd/sd-event.h>

#include "macro.h"

/* Blocks SIGTERM, SIGINT and SIGHUP, which an event loop then receives through signalfd, and
 * ignores SIGPIPE. Call it early, before anything could start a thread: a signal that arrives
 * before the loop runs stays pending instead of killing the process. */
int daemon_block_signals(void);

/* Handles the signals on e: SIGTERM and SIGINT call on_stop (NULL: sd_event_exit(e, 0)), SIGHUP
 * calls on_reload (NULL: SIGHUP is ignored). The sources belong to e. Blocks the signals if that
 * was not done yet, and turns the systemd watchdog on for e when the service manager asks for one
 * (WatchdogSec=). */
int daemon_setup_event(sd_event *e, sd_event_signal_handler_t on_stop, sd_event_signal_handler_t on_reload,
                       void *userdata);

/* Socket activation: the one listening TCP socket passed by the service manager. Returns 1 and
 * the socket in *ret_fd, 0 and -1 in *ret_fd when nothing was passed, -EINVAL when more than one
 * was passed, -ENOTSOCK when it is not a listening TCP socket. */
int daemon_listen_fd(int *ret_fd);

/* Raises the soft limit on open files to the hard one, for many concurrent connections; every
 * poller in the process is epoll or poll, so large descriptor numbers are fine. Returns 1 when
 * raised, 0 when already there. */
int daemon_raise_fd_limit(void);

/* The service manager's notification protocol (sd_notify). Without a service manager listening
 * (NOTIFY_SOCKET unset) they do nothing and return 0; a failure to reach it is logged at debug
 * level and returned. Status texts are single lines: line breaks become spaces. */
int daemon_notify_ready(void);
int daemon_notify_status(const char *format, ...) _printf_(1, 2);
/* STOPPING=1 with an optional status text. */
int daemon_notify_stopping(const char *status);
/* RELOADING=1 with the monotonic time; send daemon_notify_ready() once the reload is done. */
int daemon_notify_reloading(void);

/* Creates the state directory (mode 0700) if it is missing and checks that it is a directory this
 * process may write to. Logs and returns a negative errno on failure. */
int daemon_prepare_state_dir(const char *path);
/* Where a node keeps its state when no directory is configured: the service manager's
 * $STATE_DIRECTORY, else LOCALSTATEDIR/lib/dske/ROLE-NAME. */
int daemon_default_state_dir(const char *role, const char *name, char **ret);

/* ConfParser for the MaxBodySize= both daemons take: a size in bytes, 1K..64M. */
int daemon_conf_parse_max_body_size(const char *filename, unsigned line, const char *key, const char *value,
                                    void *data);
