/* SPDX-License-Identifier: MIT */
#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>

#include "codec.h"
#include "conf-parser.h"
#include "daemon-util.h"
#include "hub-conf.h"
#include "log.h"
#include "psrd.h"

void hub_config_init(HubConfig *c) {
        *c = (HubConfig){
                .port = HUB_DEFAULT_PORT,
                .max_body_size = HUB_DEFAULT_MAX_BODY_SIZE,
                .max_connections = HUB_DEFAULT_MAX_CONNECTIONS,
                /* The reference's demo registers and provisions over HTTP; see C7 in the docs. */
                .oob_api = true,
                .management_from_anywhere = false,
                .max_block_size = HUB_DEFAULT_MAX_BLOCK_SIZE,
                .max_pool_size = HUB_DEFAULT_MAX_POOL_SIZE,
                .share_ttl_usec = HUB_DEFAULT_SHARE_TTL_USEC,
                .max_shares_per_client = HUB_DEFAULT_MAX_SHARES_PER_CLIENT,
                .max_clients = HUB_DEFAULT_MAX_CLIENTS,
                .log_level = LOG_INFO,
        };
}

void hub_config_done(HubConfig *c) {
        if (!c)
                return;
        free(c->name);
        free(c->listen_address);
        free(c->state_dir);
        c->name = c->listen_address = c->state_dir = NULL;
}

/* Limits a single setting has, whatever the others say: named with the file and line. */
static_assert(PSRD_BLOCK_SIZE_MAX == 64u * 1024u * 1024u, "the range below says 64M");
CONF_PARSER_RANGE(conf_parse_max_block_size, conf_parse_bytes_range, 1, PSRD_BLOCK_SIZE_MAX, "1..64M")

static const ConfItem hub_config_items[] = {
        {"Hub", "Name", conf_parse_string, offsetof(HubConfig, name)},
        {"Hub", "ListenAddress", conf_parse_string, offsetof(HubConfig, listen_address)},
        {"Hub", "Port", conf_parse_port, offsetof(HubConfig, port)},
        {"Hub", "StateDirectory", conf_parse_string, offsetof(HubConfig, state_dir)},
        {"Hub", "Ephemeral", conf_parse_bool, offsetof(HubConfig, ephemeral)},
        {"Hub", "MaxBodySize", daemon_conf_parse_max_body_size, offsetof(HubConfig, max_body_size)},
        {"Hub", "MaxConnections", conf_parse_unsigned_positive, offsetof(HubConfig, max_connections)},
        {"Hub", "OutOfBandAPI", conf_parse_bool, offsetof(HubConfig, oob_api)},
        {"Hub", "ManagementFromAnywhere", conf_parse_bool, offsetof(HubConfig, management_from_anywhere)},
        {"Hub", "MaxBlockSize", conf_parse_max_block_size, offsetof(HubConfig, max_block_size)},
        {"Hub", "MaxPoolSize", conf_parse_bytes, offsetof(HubConfig, max_pool_size)},
        {"Hub", "ShareTTL", conf_parse_sec_positive, offsetof(HubConfig, share_ttl_usec)},
        {"Hub", "MaxSharesPerClient", conf_parse_unsigned_positive,
         offsetof(HubConfig, max_shares_per_client)},
        {"Hub", "MaxClients", conf_parse_unsigned_positive, offsetof(HubConfig, max_clients)},
        {"Hub", "LogLevel", conf_parse_log_level, offsetof(HubConfig, log_level)},
};

int hub_config_parse_file(HubConfig *c, const char *path) {
        return conf_parse_file(path, hub_config_items, ELEMENTSOF(hub_config_items), c);
}

int hub_config_verify(const HubConfig *c) {
        struct in6_addr a6;
        struct in_addr a4;

        if (!c->name)
                return log_error_errno(-EINVAL, "No hub name given (NAME argument or [Hub] Name=).");
        if (!name_is_valid(c->name))
                return log_error_errno(-EINVAL,
                                       "Invalid hub name \"%s\": use 1-63 of A-Z a-z 0-9 . _ - "
                                       "starting with a letter or digit.",
                                       c->name);
        if (c->listen_address && inet_pton(AF_INET, c->listen_address, &a4) != 1 &&
            inet_pton(AF_INET6, c->listen_address, &a6) != 1)
                return log_error_errno(-EINVAL,
                                       "Invalid listen address \"%s\": expected a numeric IPv4 or "
                                       "IPv6 address.",
                                       c->listen_address);
        if (c->max_pool_size < c->max_block_size)
                return log_error_errno(-EINVAL, "MaxPoolSize=%llu is smaller than MaxBlockSize=%llu.",
                                       (unsigned long long) c->max_pool_size,
                                       (unsigned long long) c->max_block_size);
        return 0;
}

int hub_config_default_path(const char *name, char **ret) {
        char *p;

        if (asprintf(&p, "%s/dske/hub/%s.conf", SYSCONFDIR, name) < 0)
                return -ENOMEM;
        *ret = p;
        return 0;
}
