/* SPDX-License-Identifier: MIT */
#include <getopt.h>
#include <stdio.h>

#include "codec.h"
#include "ctl-bench.h"
#include "ctl-bus.h"
#include "ctl-http.h"
#include "ctl-keys.h"
#include "ctl-node.h"
#include "ctl-state.h"
#include "log.h"
#include "topology-run.h"

#define NODE_EXIT_TIMEOUT_MS 30000

static bool arg_json = false;
static const char *arg_http = NULL;
static const char *arg_topology = NULL;
static const char *arg_run_dir = NULL;
static unsigned arg_base_port = 0;
static bool arg_ephemeral = false;
static uint64_t arg_timeout_usec = 0;
static unsigned arg_size = 0;
static unsigned arg_number = 1;
static const char *arg_master = NULL;
static const char *arg_slave = NULL;
static unsigned arg_concurrency = BENCH_CONCURRENCY_DEFAULT;
static uint64_t arg_duration_usec = 0;
static uint64_t arg_pairs = 0;
static bool arg_up = false;

static int help(void) {
        printf("%s [OPTIONS...] COMMAND ...\n"
               "\n"
               "Manage DSKE hubs and clients, and run a local topology of them.\n"
               "\n"
               "Local topology (each node its own process, no systemd needed):\n"
               "  topology up FILE          Start every node of FILE, wait until all are ready\n"
               "  topology down FILE        Stop the nodes (clients first, then hubs)\n"
               "  topology status FILE      Show each node: port, PID, running, ready\n"
               "\n"
               "Keys (ETSI GS QKD 014, playing both encryptors):\n"
               "  get-key-pair MASTER SLAVE Get a key for SAE MASTER and the same key for SAE\n"
               "                            SLAVE, print both and whether they match\n"
               "  bench FILE                Drive key pairs through a running topology and\n"
               "                            report throughput, latency and PSRD per key\n"
               "\n"
               "Nodes (NODE is hub/NAME, client/NAME or NAME on the system bus; or a URL such\n"
               "as http://127.0.0.1:8100/hub/hank, --http URL, or a name from --topology,\n"
               "--run-dir or a running topology, over the HTTP management routes):\n"
               "  status NODE               Show a node's state and figures\n"
               "  peers NODE                Show a node's peers: registration, shares, errors\n"
               "  pools NODE                Show the two PSRD pools of each peer in bytes\n"
               "  stop NODE                 Stop a node and wait until it is gone\n"
               "  decommission CLIENT       Unregister a client from every hub, destroy its\n"
               "                            PSRD and stop it (HTTP only)\n"
               "\n"
               "State:\n"
               "  check-state DIR           Check a node's state directory as the node would at\n"
               "                            start-up (read only) and show its pools\n"
               "\n"
               "Options:\n"
               "  -h --help                 Show this help\n"
               "     --version              Show the version\n"
               "     --json                 Print JSON instead of text\n"
               "     --http URL             Use the node's HTTP management routes at URL instead\n"
               "                            of the system bus (status, peers, pools, stop,\n"
               "                            decommission)\n"
               "  -t --topology FILE        The topology that names SAEs and nodes (default:\n"
               "                            the running topology that knows them)\n"
               "     --run-dir DIR          Keep a topology's state and logs in DIR (default:\n"
               "                            $XDG_RUNTIME_DIR/dske/NAME, /run/dske/NAME as root,\n"
               "                            else /tmp/dske-UID/NAME; NAME is FILE's base name)\n"
               "     --base-port N          Number the nodes' ports from N instead of the file's\n"
               "                            BasePort=\n"
               "     --ephemeral            Start the nodes with their state in memory instead of\n"
               "                            in the run directory\n"
               "     --timeout SEC          How long \"topology up\" waits for readiness\n"
               "     --size BITS            Key size (default: 256 for bench, the KME's default\n"
               "                            for get-key-pair)\n"
               "\n"
               "Benchmark options:\n"
               "     --master SAE --slave SAE  The encryptors (default: the first SAEs of the\n"
               "                            first two clients that have one)\n"
               "     --concurrency N        Key pairs in flight (default %u)\n"
               "     --duration SEC         Run this long (default 10)\n"
               "     --pairs N              Run until N key requests completed instead\n"
               "     --number N             Keys per request (default 1)\n"
               "     --up                   Bring the topology up first and down afterwards\n"
               "\n"
               "Exit status: 0 on success; 1 when key values differ or a command failed;\n"
               "3 from \"topology status\" when a node is not running or not ready.\n",
               program_invocation_short_name, BENCH_CONCURRENCY_DEFAULT);
        return 0;
}

static int parse_unsigned_arg(const char *s, const char *option, uint64_t min, uint64_t max, uint64_t *ret) {
        uint64_t v;

        if (parse_size(s, strlen(s), max, &v) < 0 || v < min)
                return log_error_errno(-EINVAL, "%s expects a number from %" PRIu64 " to %" PRIu64 ": %s",
                                       option, min, max, s);
        *ret = v;
        return 0;
}

static int parse_seconds_arg(const char *s, const char *option, uint64_t *ret) {
        char *end;

        errno = 0;
        double d = strtod(s, &end);
        if (errno != 0 || end == s || *end != '\0' || !(d > 0) || d > 86400.0 * 365)
                return log_error_errno(-EINVAL, "%s expects a positive number of seconds: %s", option, s);
        *ret = (uint64_t) (d * 1e6);
        return 0;
}

static int parse_argv(int argc, char *argv[]) {
        enum {
                ARG_VERSION = 0x100,
                ARG_JSON,
                ARG_HTTP,
                ARG_RUN_DIR,
                ARG_BASE_PORT,
                ARG_EPHEMERAL,
                ARG_TIMEOUT,
                ARG_SIZE,
                ARG_NUMBER,
                ARG_MASTER,
                ARG_SLAVE,
                ARG_CONCURRENCY,
                ARG_DURATION,
                ARG_PAIRS,
                ARG_UP,
        };
        static const struct option options[] = {
                {"help", no_argument, NULL, 'h'},
                {"version", no_argument, NULL, ARG_VERSION},
                {"json", no_argument, NULL, ARG_JSON},
                {"http", required_argument, NULL, ARG_HTTP},
                {"topology", required_argument, NULL, 't'},
                {"run-dir", required_argument, NULL, ARG_RUN_DIR},
                {"base-port", required_argument, NULL, ARG_BASE_PORT},
                {"ephemeral", no_argument, NULL, ARG_EPHEMERAL},
                {"timeout", required_argument, NULL, ARG_TIMEOUT},
                {"size", required_argument, NULL, ARG_SIZE},
                {"number", required_argument, NULL, ARG_NUMBER},
                {"master", required_argument, NULL, ARG_MASTER},
                {"slave", required_argument, NULL, ARG_SLAVE},
                {"concurrency", required_argument, NULL, ARG_CONCURRENCY},
                {"duration", required_argument, NULL, ARG_DURATION},
                {"pairs", required_argument, NULL, ARG_PAIRS},
                {"up", no_argument, NULL, ARG_UP},
                {},
        };
        uint64_t v;
        int c, r;

        while ((c = getopt_long(argc, argv, "ht:", options, NULL)) >= 0) {
                switch (c) {
                case 'h':
                        return help();
                case ARG_VERSION:
                        printf("%s %s\n", PACKAGE_NAME, PACKAGE_VERSION);
                        return 0;
                case ARG_JSON:
                        arg_json = true;
                        break;
                case ARG_HTTP:
                        arg_http = optarg;
                        break;
                case 't':
                        arg_topology = optarg;
                        break;
                case ARG_RUN_DIR:
                        arg_run_dir = optarg;
                        break;
                case ARG_EPHEMERAL:
                        arg_ephemeral = true;
                        break;
                case ARG_BASE_PORT:
                        r = parse_unsigned_arg(optarg, "--base-port", 1, 65535, &v);
                        if (r < 0)
                                return r;
                        arg_base_port = (unsigned) v;
                        break;
                case ARG_TIMEOUT:
                        r = parse_seconds_arg(optarg, "--timeout", &arg_timeout_usec);
                        if (r < 0)
                                return r;
                        break;
                case ARG_SIZE:
                        r = parse_unsigned_arg(optarg, "--size", 8, 1u << 24, &v);
                        if (r < 0)
                                return r;
                        arg_size = (unsigned) v;
                        break;
                case ARG_NUMBER:
                        r = parse_unsigned_arg(optarg, "--number", 1, 1024, &v);
                        if (r < 0)
                                return r;
                        arg_number = (unsigned) v;
                        break;
                case ARG_MASTER:
                        arg_master = optarg;
                        break;
                case ARG_SLAVE:
                        arg_slave = optarg;
                        break;
                case ARG_CONCURRENCY:
                        r = parse_unsigned_arg(optarg, "--concurrency", 1, 4096, &v);
                        if (r < 0)
                                return r;
                        arg_concurrency = (unsigned) v;
                        break;
                case ARG_DURATION:
                        r = parse_seconds_arg(optarg, "--duration", &arg_duration_usec);
                        if (r < 0)
                                return r;
                        break;
                case ARG_PAIRS:
                        r = parse_unsigned_arg(optarg, "--pairs", 1, UINT32_MAX, &arg_pairs);
                        if (r < 0)
                                return r;
                        break;
                case ARG_UP:
                        arg_up = true;
                        break;
                case '?':
                        return -EINVAL;
                default:
                        return log_error_errno(-EINVAL, "Unhandled option %c.", c);
                }
        }
        return 1;
}

static TopologyRunOptions run_options(void) {
        return (TopologyRunOptions){
                .run_dir = arg_run_dir,
                .base_port = arg_base_port,
                .ephemeral = arg_ephemeral,
                .timeout_usec = arg_timeout_usec,
                .json = arg_json,
        };
}

/* The topology named with --topology, or the running one that knows all of names. */
static int open_topology(const char *const *names, Topology **ret) {
        _cleanup_free_ char *found = NULL;
        TopologyRunOptions o = run_options();
        const char *path = arg_topology;
        int r;

        if (!path) {
                r = topology_discover(&o, names, &found);
                if (r < 0)
                        return r;
                path = found;
        }
        return topology_open(path, &o, ret, NULL);
}

static int verb_topology(Ctl *ctl, int argc, char *argv[]) {
        TopologyRunOptions o = run_options();
        const char *action = argv[1], *path = argv[2];

        if (streq(action, "up"))
                return topology_up(ctl, path, &o);
        if (streq(action, "down"))
                return topology_down(path, &o);
        if (streq(action, "status"))
                return topology_status(ctl, path, &o);
        return log_error_errno(-EINVAL, "Unknown topology command \"%s\": expected up, down or status.",
                               action);
}

static int verb_get_key_pair(Ctl *ctl, int argc, char *argv[]) {
        _cleanup_(topology_freep) Topology *t = NULL;
        const char *names[] = {argv[1], argv[2], NULL};
        int r;

        r = open_topology(names, &t);
        if (r < 0)
                return r;
        /* 0 asks the KME for its default size; the reference's manager sends 128 by default. */
        return get_key_pair(ctl, t, argv[1], argv[2], arg_size, arg_json);
}

/* The management URL of the node the user named: --http URL, a URL argument, or a name looked up in
 * the topology. For a node of a running topology, *ret_process names its process (pid 0 otherwise). */
static int node_mgmt_base(const char *spec, NodeType required, char **ret, NodeState *ret_process) {
        _cleanup_(topology_freep) Topology *t = NULL;
        _cleanup_(topology_state_freep) TopologyState *s = NULL;
        _cleanup_free_ char *found = NULL;
        TopologyRunOptions o = run_options();
        TopologyNode *n;
        int r;

        if (arg_http && spec)
                return log_error_errno(-EINVAL,
                                       "Give the node either as an argument or with --http, not both.");
        if (arg_http || (spec && (startswith(spec, "http://") || startswith(spec, "https://"))))
                return node_mgmt_base_from_url(arg_http ?: spec, ret);
        if (!spec)
                return log_error_errno(-EINVAL, "Which node? Give its URL (e.g. --http "
                                                "http://127.0.0.1:8100/hub/hank) or its name.");

        const char *names[] = {spec, NULL}, *path = arg_topology;
        if (!path) {
                r = topology_discover(&o, names, &found);
                if (r < 0)
                        return r;
                path = found;
        }
        r = topology_open(path, &o, &t, &s);
        if (r < 0)
                return r;
        r = topology_lookup_node(t, spec, &n);
        if (r < 0)
                return r;
        if (required >= 0 && n->type != required)
                return log_error_errno(-EINVAL, "%s is a %s, not a %s.", spec, node_type_to_string(n->type),
                                       node_type_to_string(required));

        _cleanup_free_ char *base = NULL;
        if (topology_node_url(t, n, &base) < 0 || asprintf(ret, "%s/mgmt/v1", base) < 0)
                return log_oom();

        NodeState *ns = s ? topology_state_find(s, n->type, n->name) : NULL;
        if (ns) {
                *ret_process = *ns;
                ret_process->name = strdup(ns->name);
                if (!ret_process->name)
                        return log_oom();
        }
        return 0;
}

static int node_wait_exit(const NodeState *process) {
        int r;

        r = node_state_wait_exit(process, NODE_EXIT_TIMEOUT_MS);
        if (r == -ETIMEDOUT)
                return log_error_errno(r, "%s %s (pid %d) is still running after %d s.",
                                       node_type_to_string(process->type), process->name, (int) process->pid,
                                       NODE_EXIT_TIMEOUT_MS / 1000);
        if (r < 0)
                return log_error_errno(r, "Failed to wait for pid %d: %m", (int) process->pid);
        if (!arg_json)
                printf("%s %s (pid %d) has exited.\n", node_type_to_string(process->type), process->name,
                       (int) process->pid);
        return 0;
}

/* Whether a bare node name belongs to a running topology; asked quietly, since the name is only
 * looked for there when it is not on the bus. */
static bool node_in_running_topology(const char *spec) {
        _cleanup_free_ char *found = NULL;
        TopologyRunOptions o = run_options();
        const char *names[] = {spec, NULL};
        int saved = log_get_max_level(), r;

        log_set_max_level(LOG_CRIT);
        r = topology_discover(&o, names, &found);
        log_set_max_level(saved);
        return r >= 0;
}

/* Where a node command goes, first match wins: --http URL or a URL as NODE → that node's HTTP
 * management routes; --topology FILE or --run-dir DIR → HTTP, the node looked up in that topology;
 * hub/NAME or client/NAME → the system bus; a bare NAME → the system bus when a hub or client of
 * that name is on it, else a running topology that knows NAME, else an error. */
static int verb_node_bus(const char *spec, BusCommand command, bool *ret_fallback) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_free_ char *name = NULL;
        bool bare = !bus_node_has_role(spec);
        int r;

        *ret_fallback = false;
        r = sd_bus_open_system(&bus);
        if (r < 0) {
                if (bare && node_in_running_topology(spec)) {
                        *ret_fallback = true;
                        return 0;
                }
                return log_error_errno(r, "Failed to connect to the system bus: %m");
        }
        (void) sd_bus_set_description(bus, "dskectl");

        r = bus_node_resolve(bus, spec, &name);
        if (r == -ENXIO) {
                if (bare && node_in_running_topology(spec)) {
                        *ret_fallback = true;
                        return 0;
                }
                return bus_node_log_not_running(spec);
        }
        if (r < 0)
                return r;
        return bus_node_run(bus, name, command, arg_json, NODE_EXIT_TIMEOUT_MS * 1000ull);
}

static int verb_node(Ctl *ctl, int argc, char *argv[]) {
        _cleanup_free_ char *base = NULL;
        NodeState process = {};
        const char *spec = argc > 1 ? argv[1] : NULL;
        BusCommand command = bus_command_from_string(argv[0]);
        NodeAction action = streq(argv[0], "stop")           ? NODE_ACTION_STOP
                            : streq(argv[0], "decommission") ? NODE_ACTION_DECOMMISSION
                            : streq(argv[0], "peers")        ? NODE_ACTION_PEERS
                            : streq(argv[0], "pools")        ? NODE_ACTION_POOLS
                                                             : NODE_ACTION_STATUS;
        bool over_http = arg_http || arg_topology || arg_run_dir || !spec || startswith(spec, "http://") ||
                         startswith(spec, "https://");
        int r;

        if (command >= 0 && !over_http) {
                bool fallback;

                r = verb_node_bus(spec, command, &fallback);
                if (r < 0 || !fallback)
                        return r;
        }

        r = node_mgmt_base(spec, action == NODE_ACTION_DECOMMISSION ? NODE_CLIENT : _NODE_TYPE_INVALID,
                           &base, &process);
        if (r >= 0 && action == NODE_ACTION_DECOMMISSION && !strstr(base, "/client/"))
                r = log_error_errno(-EINVAL, "Only clients can be decommissioned: %s", base);
        if (r >= 0)
                r = node_action(ctl, base, action, arg_json);

        /* A node of a running topology: report when it is really gone. */
        if (r >= 0 && (action == NODE_ACTION_STOP || action == NODE_ACTION_DECOMMISSION) && process.pid > 0)
                r = node_wait_exit(&process);
        free(process.name);
        return r;
}

static int verb_bench(Ctl *ctl, int argc, char *argv[]) {
        BenchOptions o = {
                .master = arg_master,
                .slave = arg_slave,
                .concurrency = arg_concurrency,
                .duration_usec = arg_duration_usec,
                .pairs = arg_pairs,
                .size_bits = arg_size ?: BENCH_SIZE_DEFAULT,
                .number = arg_number,
                .up = arg_up,
                .json = arg_json,
                .run = run_options(),
        };

        if (o.pairs > 0 && o.duration_usec > 0)
                return log_error_errno(-EINVAL, "--duration and --pairs exclude each other.");
        if (o.pairs == 0 && o.duration_usec == 0)
                o.duration_usec = BENCH_DURATION_DEFAULT;
        return bench_run(ctl, argv[1], &o);
}

static int verb_check_state(Ctl *ctl, int argc, char *argv[]) {
        (void) ctl;
        (void) argc;
        return check_state(argv[1], arg_json);
}

typedef struct Verb {
        const char *name;
        unsigned min_args, max_args; /* after the verb */
        int (*run)(Ctl *ctl, int argc, char *argv[]);
} Verb;

/* Node commands pick their transport in verb_node(). */
static const Verb verbs[] = {
        {"topology", 2, 2, verb_topology},
        {"get-key-pair", 2, 2, verb_get_key_pair},
        {"bench", 1, 1, verb_bench},
        {"status", 0, 1, verb_node},
        {"peers", 0, 1, verb_node},
        {"pools", 0, 1, verb_node},
        {"stop", 0, 1, verb_node},
        {"decommission", 0, 1, verb_node},
        {"check-state", 1, 1, verb_check_state},
};

static int dispatch(int argc, char *argv[]) {
        _cleanup_(ctl_freep) Ctl *ctl = NULL;
        int r;

        if (argc <= 0)
                return log_error_errno(-EINVAL, "No command given; see --help.");
        if (streq(argv[0], "help"))
                return help();

        for (size_t i = 0; i < ELEMENTSOF(verbs); i++) {
                const Verb *v = verbs + i;
                unsigned n = (unsigned) argc - 1;

                if (!streq(argv[0], v->name))
                        continue;
                if (n < v->min_args)
                        return log_error_errno(-EINVAL, "Too few arguments for %s; see --help.", v->name);
                if (n > v->max_args)
                        return log_error_errno(-EINVAL, "Too many arguments for %s; see --help.", v->name);

                r = ctl_new(&ctl);
                if (r < 0)
                        return r;
                return v->run(ctl, argc, argv);
        }
        return log_error_errno(-EINVAL, "Unknown command \"%s\"; see --help.", argv[0]);
}

int main(int argc, char *argv[]) {
        int r;

        log_open(program_invocation_short_name);

        r = parse_argv(argc, argv);
        if (r <= 0)
                return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;

        r = dispatch(argc - optind, argv + optind);
        if (r < 0)
                return EXIT_FAILURE;
        return r;
}
