/* SPDX-License-Identifier: MIT */
#pragma once

/* The client's configuration: built-in defaults, then an INI file, then the command line, which
 * wins. Sections: [Client] (identity and listeners), [Keys] (Shamir and key limits), [PSRD]
 * (pool thresholds), [Hubs] (timeouts and retry), [ETSI] (the key delivery API and the SAE
 * directory), [Management]. Settings marked "run time" change on SIGHUP; the others need a
 * restart. */

#include "strv.h"
#include <stdbool.h>
#include <stdint.h>

#define CLIENT_DEFAULT_PORT                8100u
#define CLIENT_DEFAULT_ADDRESS             "127.0.0.1"
#define CLIENT_DEFAULT_SHARES_REQUIRED     3u
#define CLIENT_DEFAULT_KEY_SIZE_BITS       256u
#define CLIENT_MIN_KEY_SIZE_BITS           32u
#define CLIENT_DEFAULT_MAX_KEY_SIZE_BITS   8192u
#define CLIENT_DEFAULT_MAX_KEYS_PER_REQ    64u
#define CLIENT_DEFAULT_MAX_STORED_KEYS     1024u
#define CLIENT_DEFAULT_STORED_KEY_TTL_USEC (300ull * 1000000ull)
#define CLIENT_DEFAULT_BLOCK_SIZE          (64u * 1024u)
#define CLIENT_DEFAULT_LOW_WATER           (128u * 1024u)
#define CLIENT_DEFAULT_HIGH_WATER          (256u * 1024u)
#define CLIENT_DEFAULT_HUB_TIMEOUT_USEC    (2ull * 1000000ull)
#define CLIENT_DEFAULT_OOB_TIMEOUT_USEC    (5ull * 1000000ull)
#define CLIENT_DEFAULT_RETRY_MIN_USEC      (1ull * 1000000ull)
#define CLIENT_DEFAULT_RETRY_MAX_USEC      (30ull * 1000000ull)
#define CLIENT_DEFAULT_MAX_BODY_SIZE       (1024u * 1024u)
#define CLIENT_DEFAULT_MAX_CONNECTIONS     1024u
#define CLIENT_HUBS_MAX                    16u

/* Where the ETSI caller's SAE ID comes from. Only the header mode exists so far: the SAE ID is the
 * trimmed Authorization header, a development mode with no authentication of the caller. */
typedef enum EtsiIdentity {
        ETSI_IDENTITY_HEADER,
        _ETSI_IDENTITY_MAX,
        _ETSI_IDENTITY_INVALID = -EINVAL,
} EtsiIdentity;

const char *etsi_identity_to_string(EtsiIdentity i);
EtsiIdentity etsi_identity_from_string(const char *s);

/* One SAE of the directory: which client (KME) serves it. */
typedef struct SaeEntry {
        char *sae;
        char *kme;
} SaeEntry;

typedef struct SaeDirectory {
        SaeEntry *entries;
        size_t n_entries;
} SaeDirectory;

typedef struct ClientConfig {
        /* Fixed for the life of the process. */
        char *name;
        char *listen_address;
        uint16_t port;
        char **hubs;       /* hub base URLs, NULL-terminated, share i goes to hubs[i] */
        char **encryptors; /* this client's SAE IDs, NULL-terminated */
        char *state_dir;
        bool ephemeral; /* state in memory only: no state directory */
        uint64_t max_body_size;
        unsigned max_connections;
        EtsiIdentity etsi_identity;

        /* Run time. */
        unsigned shares_required;  /* k */
        unsigned min_scatter;      /* hubs that must accept a share; 0 means k */
        unsigned default_key_bits; /* ETSI key_size */
        unsigned max_key_bits;
        unsigned max_keys_per_request;
        unsigned max_stored_keys;
        uint64_t stored_key_ttl_usec;
        uint64_t block_size;
        uint64_t low_water;
        uint64_t high_water;
        uint64_t hub_timeout_usec;
        uint64_t oob_timeout_usec;
        uint64_t retry_min_usec;
        uint64_t retry_max_usec;
        SaeDirectory directory;
        bool management_from_anywhere;
        int log_level;
} ClientConfig;

void client_config_init(ClientConfig *c);
void client_config_done(ClientConfig *c);

/* Reads path into c, on top of what c holds. Returns 0, -ENOENT when the file does not exist
 * (nothing logged), -EINVAL after logging "FILE:LINE: ..." for a bad entry, or another negative
 * errno. */
int client_config_parse_file(ClientConfig *c, const char *path);

/* Checks the combination of values (names, URLs, 2 <= k <= n <= 16, thresholds). Logs and returns
 * -EINVAL on the first problem. */
int client_config_verify(const ClientConfig *c);

/* The configuration file used when none is given: SYSCONFDIR/dske/client/NAME.conf. */
int client_config_default_path(const char *name, char **ret);

/* Hubs and encryptors are listed separated by commas or white space. */
#define LIST_SEPARATORS ", \t\n"

/* What the command line gave; it overrides the configuration file, at start-up and on reload. */
typedef struct ClientArgs {
        char *name;
        char *listen_address;
        uint16_t port; /* 0: not given */
        char **hubs;
        char **encryptors;
        char *config_path; /* NULL: the default path, which may be missing */
        char *state_dir;
        bool ephemeral;
        int log_level; /* -1: not given */
} ClientArgs;

void client_args_done(ClientArgs *a);

/* Parses the command line. Returns 1 to go on, 0 after --help or --version, or a negative errno
 * after logging what is wrong. */
int client_parse_argv(int argc, char *argv[], ClientArgs *ret);

/* Builds the complete configuration: defaults, the file, then args; checks it. */
int client_config_load(const ClientArgs *args, ClientConfig *ret);

/* The KME (client name) serving sae: this client for its own encryptors, else the directory's
 * entry, else NULL. */
const char *client_config_kme_of(const ClientConfig *c, const char *sae);

/* The number of hubs that must take a share for a key to be handed out. */
unsigned client_config_min_scatter(const ClientConfig *c);

/* The largest key in bits the pools can serve, as advertised in the ETSI status. */
unsigned client_config_max_key_bits(const ClientConfig *c);
