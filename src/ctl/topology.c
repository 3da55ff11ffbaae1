/* SPDX-License-Identifier: MIT */
#include <arpa/inet.h>
#include <ctype.h>
#include <ini.h>
#include <libgen.h>
#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>

#include "codec.h"
#include "conf-parser.h"
#include "ctl-util.h"
#include "log.h"
#include "topology.h"

static const char *const node_type_table[_NODE_TYPE_MAX] = {
        [NODE_HUB] = "hub",
        [NODE_CLIENT] = "client",
};

const char *node_type_to_string(NodeType t) {
        if (t < 0 || t >= _NODE_TYPE_MAX)
                return NULL;
        return node_type_table[t];
}

NodeType node_type_from_string(const char *s) {
        for (NodeType t = 0; t < _NODE_TYPE_MAX; t++)
                if (streq_ptr(s, node_type_table[t]))
                        return t;
        return _NODE_TYPE_INVALID;
}

static void topology_node_done(TopologyNode *n) {
        free(n->name);
        strv_free(n->encryptors);
        free(n->config);
}

Topology *topology_free(Topology *t) {
        if (!t)
                return NULL;
        for (size_t i = 0; i < t->n_nodes; i++)
                topology_node_done(t->nodes + i);
        free(t->nodes);
        free(t->path);
        free(t->id);
        free(t->address);
        free(t->log_level);
        free(t);
        return NULL;
}

typedef enum SectionKind {
        SECTION_NONE,
        SECTION_TOPOLOGY,
        SECTION_NODE,
        SECTION_BAD,
} SectionKind;

/* libinih reports keys but not section headers or line numbers, and an empty "[Hub hank]" must
 * still declare a hub. The reader below sees every line before libinih does, so it tracks the
 * line number and handles the section headers, following libinih's own rules for comments and
 * continuation lines; the handler then deals with the keys. */
typedef struct Parser {
        FILE *f;
        const char *path;
        Topology *t;
        unsigned line;      /* of the text most recently returned by the reader */
        unsigned next_line; /* of the text the reader returns next */
        bool after_key;     /* an indented line would continue the last key's value */
        SectionKind kind;
        size_t current; /* node index when kind is SECTION_NODE */
        char *hub_config;
        char *client_config;
        char *node_config; /* the current node's Config=, moved into the node */
        char **encryptors;
        unsigned encryptors_line;
        int error;
} Parser;

static int parser_fail(Parser *p, int r) {
        if (p->error == 0)
                p->error = r;
        return r;
}

static void parser_finish_section(Parser *p) {
        if (p->kind != SECTION_NODE)
                return;

        TopologyNode *n = p->t->nodes + p->current;
        free(n->config);
        n->config = TAKE_PTR(p->node_config);
        if (p->encryptors) {
                if (n->type != NODE_CLIENT) {
                        log_error("%s:%u: Encryptors= is only valid for clients.", p->path,
                                  p->encryptors_line);
                        (void) parser_fail(p, -EINVAL);
                        strv_free(TAKE_PTR(p->encryptors));
                } else {
                        strv_free(n->encryptors);
                        n->encryptors = TAKE_PTR(p->encryptors);
                        n->encryptors_line = p->encryptors_line;
                }
        }
}

static int parser_add_node(Parser *p, NodeType type, const char *name) {
        Topology *t = p->t;

        if (!name_is_valid(name)) {
                log_error("%s:%u: Invalid %s name \"%s\": names are 1-63 characters from [A-Za-z0-9._-], "
                          "starting with a letter or digit.",
                          p->path, p->line, node_type_to_string(type), name);
                return parser_fail(p, -EINVAL);
        }

        TopologyNode *existing = topology_find_node(t, type, name);
        if (existing) {
                log_error("%s:%u: Duplicate %s \"%s\" (already defined on line %u).", p->path, p->line,
                          node_type_to_string(type), name, existing->line);
                return parser_fail(p, -EINVAL);
        }

        TopologyNode *nodes = reallocarray(t->nodes, t->n_nodes + 1, sizeof(TopologyNode));
        if (!nodes)
                return parser_fail(p, log_oom());
        t->nodes = nodes;

        char *copy = strdup(name);
        if (!copy)
                return parser_fail(p, log_oom());

        t->nodes[t->n_nodes] = (TopologyNode){
                .type = type,
                .name = copy,
                .line = p->line,
        };
        p->current = t->n_nodes++;
        if (type == NODE_HUB)
                t->n_hubs++;
        p->kind = SECTION_NODE;
        return 0;
}

static void parser_section(Parser *p, char *s) {
        char *end = strchr(s, ']');
        if (!end)
                return; /* libinih reports the malformed line */
        *end = '\0';

        parser_finish_section(p);
        p->kind = SECTION_BAD;

        while (isspace((unsigned char) *s))
                s++;
        size_t l = strlen(s);
        while (l > 0 && isspace((unsigned char) s[l - 1]))
                s[--l] = '\0';

        if (streq(s, "Topology")) {
                p->kind = SECTION_TOPOLOGY;
                return;
        }

        char *name = s + strcspn(s, " \t");
        if (*name != '\0') {
                *name++ = '\0';
                name += strspn(name, " \t");
        }

        NodeType type = streq(s, "Hub") ? NODE_HUB : streq(s, "Client") ? NODE_CLIENT : _NODE_TYPE_INVALID;
        if (type < 0) {
                log_error("%s:%u: Unknown section [%s]; expected [Topology], [Hub NAME] or [Client NAME].",
                          p->path, p->line, s);
                (void) parser_fail(p, -EINVAL);
                return;
        }
        if (*name == '\0') {
                log_error("%s:%u: Section [%s] needs a node name, e.g. [%s %s].", p->path, p->line, s, s,
                          type == NODE_HUB ? "hank" : "carol");
                (void) parser_fail(p, -EINVAL);
                return;
        }
        (void) parser_add_node(p, type, name);
}

static char *parser_read(char *str, int num, void *stream) {
        Parser *p = stream;

        if (!fgets(str, num, p->f))
                return NULL;

        p->line = p->next_line;
        size_t l = strlen(str);
        bool complete = l > 0 && str[l - 1] == '\n';
        if (complete || feof(p->f))
                p->next_line++;
        else
                return str; /* the rest of an over-long line: libinih rejects it */

        const char *s = str;
        while (isspace((unsigned char) *s))
                s++;

        if (*s == '\0' || *s == ';' || *s == '#')
                return str;
        if (p->after_key && s > str)
                return str;
        if (*s == '[') {
                /* Work on a copy: libinih parses the original after us. */
                _cleanup_free_ char *copy = strdup(s + 1);
                p->after_key = false;
                if (!copy)
                        (void) parser_fail(p, log_oom());
                else
                        parser_section(p, copy);
                return str;
        }
        p->after_key = true;
        return str;
}

static int parser_handle_topology(Parser *p, const char *key, const char *value) {
        Topology *t = p->t;

        if (streq(key, "BasePort"))
                return conf_parse_port(p->path, p->line, key, value, &t->base_port);
        if (streq(key, "Address")) {
                union {
                        struct in_addr in;
                        struct in6_addr in6;
                } buf;
                if (inet_pton(AF_INET, value, &buf) != 1 && inet_pton(AF_INET6, value, &buf) != 1) {
                        log_error("%s:%u: Address= must be a numeric IPv4 or IPv6 address: \"%s\".", p->path,
                                  p->line, value);
                        return -EINVAL;
                }
                return conf_parse_string(p->path, p->line, key, value, &t->address);
        }
        if (streq(key, "HubConfig"))
                return conf_parse_string(p->path, p->line, key, value, &p->hub_config);
        if (streq(key, "ClientConfig"))
                return conf_parse_string(p->path, p->line, key, value, &p->client_config);
        if (streq(key, "SharesRequired"))
                return conf_parse_unsigned(p->path, p->line, key, value, &t->shares_required);
        if (streq(key, "LogLevel")) {
                if (log_level_from_string(value) < 0) {
                        log_error(
                                "%s:%u: LogLevel= must be one of emerg, alert, crit, err, warning, notice, "
                                "info, debug: \"%s\".",
                                p->path, p->line, value);
                        return -EINVAL;
                }
                return conf_parse_string(p->path, p->line, key, value, &t->log_level);
        }
        if (streq(key, "ReadyTimeoutSec"))
                return conf_parse_sec(p->path, p->line, key, value, &t->ready_timeout_usec);
        if (streq(key, "CPUSchedulingPolicy")) {
                if (streq(value, "batch"))
                        t->cpu_scheduling_policy = SCHED_BATCH;
                else if (streq(value, "other"))
                        t->cpu_scheduling_policy = SCHED_OTHER;
                else {
                        log_error("%s:%u: CPUSchedulingPolicy= must be batch or other: \"%s\".", p->path,
                                  p->line, value);
                        return -EINVAL;
                }
                return 0;
        }

        log_error("%s:%u: Unknown key %s= in section [Topology].", p->path, p->line, key);
        return -EINVAL;
}

static int parser_handle_node(Parser *p, const char *key, const char *value) {
        TopologyNode *n = p->t->nodes + p->current;

        if (streq(key, "Config"))
                return conf_parse_string(p->path, p->line, key, value, &p->node_config);
        if (streq(key, "Encryptors")) {
                if (!p->encryptors)
                        p->encryptors_line = p->line;
                return conf_parse_strv(p->path, p->line, key, value, &p->encryptors);
        }

        log_error("%s:%u: Unknown key %s= in section [%s %s].", p->path, p->line, key,
                  n->type == NODE_HUB ? "Hub" : "Client", n->name);
        return -EINVAL;
}

static int parser_handler(void *user, const char *section, const char *key, const char *value) {
        Parser *p = user;
        int r;

        switch (p->kind) {
        case SECTION_NONE:
                log_error("%s:%u: %s= appears before any section.", p->path, p->line, key);
                r = -EINVAL;
                break;
        case SECTION_TOPOLOGY:
                r = parser_handle_topology(p, key, value);
                break;
        case SECTION_NODE:
                r = parser_handle_node(p, key, value);
                break;
        default:
                return 1; /* the section header was reported already */
        }
        if (r < 0)
                (void) parser_fail(p, r);
        /* Keep going so that one run reports every problem. */
        return 1;
}

static int node_compare(const void *a, const void *b) {
        const TopologyNode *x = a, *y = b;

        if (x->type != y->type)
                return x->type < y->type ? -1 : 1;
        return strcmp(x->name, y->name);
}

static int path_make_absolute(const char *base_dir, const char *p, char **ret) {
        char *s;

        if (p[0] == '/')
                s = strdup(p);
        else if (asprintf(&s, "%s/%s", base_dir, p) < 0)
                s = NULL;
        if (!s)
                return -ENOMEM;
        *ret = s;
        return 0;
}

static int topology_check(Topology *t, const char *display, const char *hub_config,
                          const char *client_config) {
        _cleanup_free_ char *dir_buf = strdup(t->path);
        int r;

        if (!dir_buf)
                return log_oom();
        const char *dir = dirname(dir_buf);

        if (t->n_nodes == 0) {
                log_error("%s: The topology has no [Hub NAME] or [Client NAME] sections.", display);
                return -EINVAL;
        }
        if (t->n_hubs == 0) {
                log_error("%s: The topology has clients but no hubs.", display);
                return -EINVAL;
        }

        if (t->shares_required != 0 && (t->shares_required < 2 || t->shares_required > t->n_hubs)) {
                log_error("%s: SharesRequired=%u must lie between 2 and the number of hubs (%zu).", display,
                          t->shares_required, t->n_hubs);
                return -EINVAL;
        }

        for (size_t i = 0; i < t->n_nodes; i++) {
                TopologyNode *n = t->nodes + i;

                const char *c = n->config ?: n->type == NODE_HUB ? hub_config : client_config;
                if (c) {
                        char *absolute;
                        r = path_make_absolute(dir, c, &absolute);
                        if (r < 0)
                                return log_oom();
                        free(n->config);
                        n->config = absolute;
                }

                for (char **e = n->encryptors; e && *e; e++) {
                        if (!name_is_valid(*e)) {
                                log_error("%s:%u: Invalid SAE ID \"%s\" for client %s.", display,
                                          n->encryptors_line, *e, n->name);
                                return -EINVAL;
                        }
                        TopologyNode *owner = topology_find_sae(t, *e);
                        if (owner != n) {
                                log_error("%s:%u: SAE ID \"%s\" of client %s is already used by client %s "
                                          "(line %u); SAE IDs must be unique.",
                                          display, n->encryptors_line, *e, n->name, owner->name,
                                          owner->encryptors_line);
                                return -EINVAL;
                        }
                        for (char **f = n->encryptors; f < e; f++)
                                if (streq(*f, *e)) {
                                        log_error("%s:%u: SAE ID \"%s\" is listed twice for client %s.",
                                                  display, n->encryptors_line, *e, n->name);
                                        return -EINVAL;
                                }
                }
        }

        qsort(t->nodes, t->n_nodes, sizeof(TopologyNode), node_compare);

        r = topology_assign_ports(t, t->base_port);
        if (r < 0) {
                log_error("%s: %zu nodes from base port %u run past port 65535.", display, t->n_nodes,
                          t->base_port);
                return r;
        }
        return 0;
}

int topology_id_from_path(const char *path, char **ret) {
        const char *slash = strrchr(path, '/');
        const char *b = slash ? slash + 1 : path;
        const char *dot = strrchr(b, '.');
        char *id = strndup(b, dot && dot != b ? (size_t) (dot - b) : strlen(b));

        if (!id)
                return -ENOMEM;
        if (!name_is_valid(id)) {
                free(id);
                return -EINVAL;
        }
        *ret = id;
        return 0;
}

int topology_load(const char *path, Topology **ret) {
        _cleanup_(topology_freep) Topology *t = NULL;
        int r;

        t = calloc(1, sizeof(Topology));
        if (!t)
                return log_oom();

        t->path = realpath(path, NULL);
        if (!t->path)
                return log_error_errno(negative_errno(), "Failed to open topology file %s: %m", path);

        r = topology_id_from_path(t->path, &t->id);
        if (r == -EINVAL)
                return log_error_errno(r,
                                       "%s: The file name (without extension) must be a valid name, it "
                                       "names the run directory.",
                                       path);
        if (r < 0)
                return log_oom();
        t->address = strdup("127.0.0.1");
        if (!t->address)
                return log_oom();
        t->base_port = TOPOLOGY_BASE_PORT_DEFAULT;
        t->ready_timeout_usec = TOPOLOGY_READY_TIMEOUT_DEFAULT;
        t->cpu_scheduling_policy = SCHED_BATCH;

        Parser p = {
                .path = path,
                .t = t,
                .next_line = 1,
        };
        p.f = fopen(t->path, "re");
        if (!p.f)
                return log_error_errno(negative_errno(), "Failed to open topology file %s: %m", path);

        r = ini_parse_stream(parser_read, &p, parser_handler, &p);
        parser_finish_section(&p);
        (void) fclose(p.f);
        strv_free(p.encryptors);
        free(p.node_config);

        if (r > 0 && p.error == 0) {
                log_error("%s:%d: Syntax error: expected [Section] or Key=Value.", path, r);
                p.error = -EINVAL;
        } else if (r < 0 && p.error == 0)
                p.error = log_oom();

        if (p.error == 0)
                p.error = topology_check(t, path, p.hub_config, p.client_config);
        free(p.hub_config);
        free(p.client_config);
        if (p.error < 0)
                return p.error;

        *ret = TAKE_PTR(t);
        return 0;
}

int topology_assign_ports(Topology *t, unsigned base_port) {
        if (base_port == 0 || base_port + t->n_nodes - 1 > 65535)
                return -ERANGE;

        t->base_port = base_port;
        for (size_t i = 0; i < t->n_nodes; i++)
                t->nodes[i].port = (uint16_t) (base_port + i);
        return 0;
}

TopologyNode *topology_find_node(const Topology *t, NodeType type, const char *name) {
        for (size_t i = 0; i < t->n_nodes; i++)
                if ((type < 0 || t->nodes[i].type == type) && streq(t->nodes[i].name, name))
                        return t->nodes + i;
        return NULL;
}

TopologyNode *topology_find_sae(const Topology *t, const char *sae) {
        for (size_t i = 0; i < t->n_nodes; i++)
                for (char **e = t->nodes[i].encryptors; e && *e; e++)
                        if (streq(*e, sae))
                                return t->nodes + i;
        return NULL;
}

int topology_node_url(const Topology *t, const TopologyNode *n, char **ret) {
        bool v6 = strchr(t->address, ':');
        char *s;

        if (asprintf(&s, "http://%s%s%s:%u/%s/%s", v6 ? "[" : "", t->address, v6 ? "]" : "", n->port,
                     node_type_to_string(n->type), n->name) < 0)
                return -ENOMEM;
        *ret = s;
        return 0;
}
