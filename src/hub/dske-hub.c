/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "codec.h"
#include "daemon-util.h"
#include "hub-conf.h"
#include "hub-manager.h"
#include "log.h"

typedef struct Args {
        HubConfig overrides; /* strings NULL and port 0 when not given */
        bool log_level_set;
        char *config_path;
} Args;

static void args_done(Args *a) {
        hub_config_done(&a->overrides);
        free(a->config_path);
}

static void help(void) {
        printf("Usage: %s [OPTIONS] NAME\n"
               "\n"
               "The DSKE security hub: registers clients, issues pre-shared random data (PSRD)\n"
               "and relays one-time-pad encrypted, MAC-authenticated key shares between clients.\n"
               "The API is served at http://ADDRESS:PORT/hub/NAME/.\n"
               "\n"
               "Options:\n"
               "  -p --port=PORT         TCP port to listen on (default %u)\n"
               "  -a --address=ADDRESS   numeric IPv4 or IPv6 address to listen on\n"
               "                         (default %s)\n"
               "  -c --config=FILE       configuration file to read instead of\n"
               "                         %s/dske/hub/NAME.conf (which is optional);\n"
               "                         FILE must exist; its [Hub] Name= can stand in for NAME\n"
               "     --state-dir=DIR     directory for the hub's durable state (default\n"
               "                         $STATE_DIRECTORY, else %s/lib/dske/hub-NAME)\n"
               "     --ephemeral         keep all state in memory: a restart forgets clients,\n"
               "                         PSRD and shares (for tests and demonstrations)\n"
               "     --log-level=LEVEL   emerg, alert, crit, err, warning, notice, info or debug\n"
               "                         (default info)\n"
               "  -h --help              show this help and exit\n"
               "     --version           show the version and exit\n"
               "\n"
               "Options given here override the configuration file. NAME is 1 to 63 characters\n"
               "from A-Z a-z 0-9 . _ - starting with a letter or digit.\n"
               "\n"
               "Configuration file, section [Hub]:\n"
               "  Name=, ListenAddress=, Port=, StateDirectory=   as the options above\n"
               "  Ephemeral=yes|no            as --ephemeral (default no)\n"
               "  OutOfBandAPI=yes|no         serve registration and PSRD issue over HTTP\n"
               "                              (default yes). These endpoints are not\n"
               "                              authenticated and hand out PSRD in clear: whoever\n"
               "                              reaches them can impersonate any client. Use them\n"
               "                              only on loopback, for tests and demonstrations.\n"
               "  ManagementFromAnywhere=yes|no  answer mgmt/v1 requests from other hosts\n"
               "                              (default no: loopback only)\n"
               "  MaxBlockSize=BYTES          largest PSRD block issued (default %u, at most %u)\n"
               "  MaxPoolSize=BYTES           PSRD bytes one pool may hold (default 16M)\n"
               "  ShareTTL=TIME               how long an undelivered share is kept (default 300s)\n"
               "  MaxSharesPerClient=N        shares one client may have waiting (default %u)\n"
               "  MaxClients=N                registered clients (default %u)\n"
               "  MaxBodySize=BYTES           largest request body (default 1M)\n"
               "  MaxConnections=N            simultaneous connections (default %u)\n"
               "  LogLevel=LEVEL              as --log-level\n"
               "BYTES take a K, M or G suffix; TIME takes ms, s, min or h.\n"
               "\n"
               "Signals: SIGTERM and SIGINT stop gracefully; SIGHUP reloads the configuration\n"
               "(OutOfBandAPI, ManagementFromAnywhere, the limits but MaxBodySize and\n"
               "MaxConnections, ShareTTL for new shares and LogLevel; the other settings need a\n"
               "restart). The hub notifies the service manager (READY=1, STATUS=, STOPPING=1)\n"
               "and accepts one socket-activated listening socket.\n",
               program_invocation_short_name, HUB_DEFAULT_PORT, HUB_DEFAULT_ADDRESS, SYSCONFDIR,
               LOCALSTATEDIR, HUB_DEFAULT_MAX_BLOCK_SIZE, PSRD_BLOCK_SIZE_MAX,
               HUB_DEFAULT_MAX_SHARES_PER_CLIENT, HUB_DEFAULT_MAX_CLIENTS, HUB_DEFAULT_MAX_CONNECTIONS);
}

/* Returns 1 to go on, 0 to exit successfully (--help, --version), or a negative errno. */
static int parse_argv(int argc, char *argv[], Args *a) {
        enum {
                ARG_VERSION = 0x100,
                ARG_STATE_DIR,
                ARG_EPHEMERAL,
                ARG_LOG_LEVEL,
        };
        static const struct option options[] = {
                {"port", required_argument, NULL, 'p'},
                {"address", required_argument, NULL, 'a'},
                {"config", required_argument, NULL, 'c'},
                {"state-dir", required_argument, NULL, ARG_STATE_DIR},
                {"ephemeral", no_argument, NULL, ARG_EPHEMERAL},
                {"log-level", required_argument, NULL, ARG_LOG_LEVEL},
                {"help", no_argument, NULL, 'h'},
                {"version", no_argument, NULL, ARG_VERSION},
                {},
        };
        uint64_t port;
        int c, r;

        while ((c = getopt_long(argc, argv, "p:a:c:h", options, NULL)) >= 0)
                switch (c) {
                case 'p':
                        r = parse_size(optarg, strlen(optarg), UINT16_MAX, &port);
                        if (r < 0 || port == 0)
                                return log_error_errno(-EINVAL, "Invalid port \"%s\": expected 1..65535.",
                                                       optarg);
                        a->overrides.port = (uint16_t) port;
                        break;
                case 'a':
                        free(a->overrides.listen_address);
                        a->overrides.listen_address = strdup(optarg);
                        if (!a->overrides.listen_address)
                                return log_oom();
                        break;
                case 'c':
                        free(a->config_path);
                        a->config_path = strdup(optarg);
                        if (!a->config_path)
                                return log_oom();
                        break;
                case ARG_STATE_DIR:
                        free(a->overrides.state_dir);
                        a->overrides.state_dir = strdup(optarg);
                        if (!a->overrides.state_dir)
                                return log_oom();
                        break;
                case ARG_EPHEMERAL:
                        a->overrides.ephemeral = true;
                        break;
                case ARG_LOG_LEVEL:
                        r = log_level_from_string(optarg);
                        if (r < 0)
                                return log_error_errno(-EINVAL, "Invalid log level \"%s\".", optarg);
                        a->overrides.log_level = r;
                        a->log_level_set = true;
                        log_set_max_level(r);
                        break;
                case 'h':
                        help();
                        return 0;
                case ARG_VERSION:
                        printf("%s %s\n", PACKAGE_NAME, PACKAGE_VERSION);
                        return 0;
                case '?':
                        return -EINVAL;
                default:
                        return log_error_errno(-EINVAL, "Unexpected option.");
                }

        if (optind < argc) {
                a->overrides.name = strdup(argv[optind]);
                if (!a->overrides.name)
                        return log_oom();
                optind++;
        }
        if (optind < argc)
                return log_error_errno(-EINVAL, "Too many arguments: \"%s\". See --help.", argv[optind]);
        if (!a->overrides.name && !a->config_path)
                return log_error_errno(-EINVAL, "No hub name given. See --help.");
        return 1;
}

static int run(int argc, char *argv[]) {
        _cleanup_(manager_freep) Manager *m = NULL;
        _cleanup_(args_done) Args args = {};
        _cleanup_(hub_config_done) HubConfig config = {};
        _cleanup_free_ char *default_path = NULL;
        const char *path;
        int listen_fd = -1, r;

        r = parse_argv(argc, argv, &args);
        if (r <= 0)
                return r;

        if (args.config_path)
                path = args.config_path;
        else {
                r = hub_config_default_path(args.overrides.name, &default_path);
                if (r < 0)
                        return log_oom();
                path = default_path;
        }

        r = manager_load_config(path, !!args.config_path, &args.overrides, args.log_level_set, &config);
        if (r < 0)
                return r;
        log_set_max_level(config.log_level);

        if (!config.ephemeral) {
                r = daemon_prepare_state_dir(config.state_dir);
                if (r < 0)
                        return r;
        }

        r = daemon_listen_fd(&listen_fd);
        if (r < 0)
                return log_error_errno(
                        r, "Expected at most one listening TCP socket from the service manager: %m");

        r = daemon_raise_fd_limit();
        if (r < 0)
                log_warning_errno(r, "Failed to raise the limit on open files, keeping it: %m");

        r = manager_new(&config, &m);
        if (r < 0)
                return log_error_errno(r, "Failed to set up the hub: %m");
        m->overrides = args.overrides;
        args.overrides = (HubConfig){};
        m->override_log_level = args.log_level_set;
        m->config_path = strdup(path);
        if (!m->config_path)
                return log_oom();
        m->config_path_required = !!args.config_path;

        r = manager_start(m, listen_fd);
        if (r < 0)
                return r;

        return manager_run(m);
}

int main(int argc, char *argv[]) {
        int r;

        log_open("dske-hub");

        /* Before anything else: a SIGTERM during start-up then waits for the loop. */
        r = daemon_block_signals();
        if (r < 0) {
                log_error_errno(r, "Failed to block signals: %m");
                return EXIT_FAILURE;
        }

        r = run(argc, argv);
        return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
