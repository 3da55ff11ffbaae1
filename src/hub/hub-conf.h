/* SPDX-License-Identifier: MIT */
#pragma once

/* The hub's configuration: built-in defaults, then an INI file ([Hub] section), then the command
 * line, which wins. Only the settings marked "run time" below change on SIGHUP; the others need a
 * restart (a reload that changes them is logged and otherwise ignored). */

#include <stdbool.h>
#include <stdint.h>

#define HUB_DEFAULT_PORT                  8100u
#define HUB_DEFAULT_ADDRESS               "127.0.0.1"
#define HUB_DEFAULT_MAX_BLOCK_SIZE        65536u
#define HUB_DEFAULT_MAX_POOL_SIZE         (16u * 1024u * 1024u)
#define HUB_DEFAULT_SHARE_TTL_USEC        (300u * 1000000u)
#define HUB_DEFAULT_MAX_SHARES_PER_CLIENT 1024u
#define HUB_DEFAULT_MAX_CLIENTS           1024u
#define HUB_DEFAULT_MAX_BODY_SIZE         (1024u * 1024u)
#define HUB_DEFAULT_MAX_CONNECTIONS       1024u

typedef struct HubConfig {
        /* Fixed for the life of the process. */
        char *name;
        char *listen_address;
        uint16_t port;
        uint64_t max_body_size;
        unsigned max_connections;
        char *state_dir;
        bool ephemeral; /* state in memory only: no state directory */

        /* Run time. */
        bool oob_api;
        bool management_from_anywhere;
        uint64_t max_block_size;
        uint64_t max_pool_size;
        uint64_t share_ttl_usec;
        unsigned max_shares_per_client;
        unsigned max_clients;
        int log_level;
} HubConfig;

/* Fills c with the built-in defaults (strings NULL: no name, the default address). */
void hub_config_init(HubConfig *c);
void hub_config_done(HubConfig *c);

/* Reads the [Hub] section of path into c, on top of what c holds. Returns 0, -ENOENT when the file
 * does not exist (nothing logged), -EINVAL after logging "FILE:LINE: ..." for a bad entry, or
 * another negative errno. */
int hub_config_parse_file(HubConfig *c, const char *path);

/* Checks the combination of values (name present and valid, limits in range). Logs and returns
 * -EINVAL on the first problem. */
int hub_config_verify(const HubConfig *c);

/* The configuration file used when none is given: SYSCONFDIR/dske/hub/NAME.conf. */
int hub_config_default_path(const char *name, char **ret);
