/* SPDX-License-Identifier: MIT */
#include <arpa/inet.h>
#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>

#include "auth.h"
#include "client-conf.h"
#include "codec.h"
#include "conf-parser.h"
#include "daemon-util.h"
#include "log.h"
#include "psrd.h"

static const char *const etsi_identity_table[_ETSI_IDENTITY_MAX] = {
        [ETSI_IDENTITY_HEADER] = "header",
};

const char *etsi_identity_to_string(EtsiIdentity i) {
        if (i < 0 || i >= _ETSI_IDENTITY_MAX)
                return NULL;
        return etsi_identity_table[i];
}

EtsiIdentity etsi_identity_from_string(const char *s) {
        if (!s)
                return _ETSI_IDENTITY_INVALID;
        for (int i = 0; i < _ETSI_IDENTITY_MAX; i++)
                if (streq(s, etsi_identity_table[i]))
                        return i;
        return _ETSI_IDENTITY_INVALID;
}

static void sae_directory_done(SaeDirectory *d) {
        for (size_t i = 0; i < d->n_entries; i++) {
                free(d->entries[i].sae);
                free(d->entries[i].kme);
        }
        free(d->entries);
        *d = (SaeDirectory){};
}

void client_config_init(ClientConfig *c) {
        *c = (ClientConfig){
                .port = CLIENT_DEFAULT_PORT,
                .max_body_size = CLIENT_DEFAULT_MAX_BODY_SIZE,
                .max_connections = CLIENT_DEFAULT_MAX_CONNECTIONS,
                .etsi_identity = ETSI_IDENTITY_HEADER,
                .shares_required = CLIENT_DEFAULT_SHARES_REQUIRED,
                .default_key_bits = CLIENT_DEFAULT_KEY_SIZE_BITS,
                .max_key_bits = CLIENT_DEFAULT_MAX_KEY_SIZE_BITS,
                .max_keys_per_request = CLIENT_DEFAULT_MAX_KEYS_PER_REQ,
                .max_stored_keys = CLIENT_DEFAULT_MAX_STORED_KEYS,
                .stored_key_ttl_usec = CLIENT_DEFAULT_STORED_KEY_TTL_USEC,
                .block_size = CLIENT_DEFAULT_BLOCK_SIZE,
                .low_water = CLIENT_DEFAULT_LOW_WATER,
                .high_water = CLIENT_DEFAULT_HIGH_WATER,
                .hub_timeout_usec = CLIENT_DEFAULT_HUB_TIMEOUT_USEC,
                .oob_timeout_usec = CLIENT_DEFAULT_OOB_TIMEOUT_USEC,
                .retry_min_usec = CLIENT_DEFAULT_RETRY_MIN_USEC,
                .retry_max_usec = CLIENT_DEFAULT_RETRY_MAX_USEC,
                .log_level = LOG_INFO,
        };
}

void client_config_done(ClientConfig *c) {
        if (!c)
                return;
        free(c->name);
        free(c->listen_address);
        free(c->state_dir);
        c->hubs = strv_free(c->hubs);
        c->encryptors = strv_free(c->encryptors);
        sae_directory_done(&c->directory);
        c->name = c->listen_address = c->state_dir = NULL;
}

static int conf_parse_list(const char *filename, unsigned line, const char *key, const char *value,
                           void *data) {
        char ***strv = data;
        int r;

        r = strv_extend_split(strv, value, LIST_SEPARATORS);
        if (r < 0)
                return log_error_errno(r, "%s:%u: Failed to parse %s=: %m", filename, line, key);
        return 0;
}

static int conf_parse_key_bits(const char *filename, unsigned line, const char *key, const char *value,
                               void *data) {
        unsigned *bits = data;
        uint64_t v;

        if (parse_size(value, strlen(value), 1u << 24, &v) < 0 || v < CLIENT_MIN_KEY_SIZE_BITS ||
            v % 8 != 0) {
                log_error("%s:%u: %s=%s is not a key size in bits (a multiple of 8, %u..%u).", filename,
                          line, key, value, CLIENT_MIN_KEY_SIZE_BITS, 1u << 24);
                return -EINVAL;
        }
        *bits = (unsigned) v;
        return 0;
}

static int conf_parse_etsi_identity(const char *filename, unsigned line, const char *key, const char *value,
                                    void *data) {
        EtsiIdentity *i = data, v;

        v = etsi_identity_from_string(value);
        if (v < 0) {
                log_error("%s:%u: %s=%s is not supported (only \"header\").", filename, line, key, value);
                return -EINVAL;
        }
        *i = v;
        return 0;
}

/* SAE=NAME:KME ..., repeatable: the remote SAEs and the clients (KMEs) that serve them. */
static int conf_parse_sae_directory(const char *filename, unsigned line, const char *key, const char *value,
                                    void *data) {
        SaeDirectory *d = data;
        char **items = NULL;
        int r = 0;

        r = strv_extend_split(&items, value, LIST_SEPARATORS);
        if (r < 0)
                return log_oom();
        for (size_t i = 0; items && items[i]; i++) {
                char *colon = strchr(items[i], ':');
                SaeEntry *e;

                if (!colon) {
                        log_error("%s:%u: %s entry \"%s\" is not SAE:KME.", filename, line, key, items[i]);
                        r = -EINVAL;
                        break;
                }
                *colon = '\0';
                if (!name_is_valid(items[i]) || !name_is_valid(colon + 1)) {
                        log_error("%s:%u: %s entry \"%s:%s\" does not name a valid SAE and KME.", filename,
                                  line, key, items[i], colon + 1);
                        r = -EINVAL;
                        break;
                }
                e = reallocarray(d->entries, d->n_entries + 1, sizeof(SaeEntry));
                if (!e) {
                        r = log_oom();
                        break;
                }
                d->entries = e;
                e[d->n_entries] = (SaeEntry){.sae = strdup(items[i]), .kme = strdup(colon + 1)};
                if (!e[d->n_entries].sae || !e[d->n_entries].kme) {
                        free(e[d->n_entries].sae);
                        free(e[d->n_entries].kme);
                        r = log_oom();
                        break;
                }
                d->n_entries++;
        }
        strv_free(items);
        return r;
}

/* Limits a single setting has, whatever the others say: named with the file and line. */
CONF_PARSER_RANGE(conf_parse_shares_required, conf_parse_unsigned_range, 2, CLIENT_HUBS_MAX)
CONF_PARSER_RANGE(conf_parse_keys_per_request, conf_parse_unsigned_range, 1, 1024)
CONF_PARSER_RANGE(conf_parse_stored_keys, conf_parse_unsigned_range, 0, 1000000)
static_assert(PSRD_BLOCK_SIZE_MAX == 64u * 1024u * 1024u, "the range below says 64M");
CONF_PARSER_RANGE(conf_parse_block_size, conf_parse_bytes_range, 1024, PSRD_BLOCK_SIZE_MAX, "1K..64M")

static const ConfItem client_config_items[] = {
        {"Client", "Name", conf_parse_string, offsetof(ClientConfig, name)},
        {"Client", "ListenAddress", conf_parse_string, offsetof(ClientConfig, listen_address)},
        {"Client", "Port", conf_parse_port, offsetof(ClientConfig, port)},
        {"Client", "Hubs", conf_parse_list, offsetof(ClientConfig, hubs)},
        {"Client", "Encryptors", conf_parse_list, offsetof(ClientConfig, encryptors)},
        {"Client", "StateDirectory", conf_parse_string, offsetof(ClientConfig, state_dir)},
        {"Client", "Ephemeral", conf_parse_bool, offsetof(ClientConfig, ephemeral)},
        {"Client", "MaxBodySize", daemon_conf_parse_max_body_size, offsetof(ClientConfig, max_body_size)},
        {"Client", "MaxConnections", conf_parse_unsigned_positive, offsetof(ClientConfig, max_connections)},
        {"Client", "LogLevel", conf_parse_log_level, offsetof(ClientConfig, log_level)},
        {"Keys", "SharesRequired", conf_parse_shares_required, offsetof(ClientConfig, shares_required)},
        {"Keys", "MinSharesScattered", conf_parse_unsigned, offsetof(ClientConfig, min_scatter)},
        {"Keys", "DefaultKeySize", conf_parse_key_bits, offsetof(ClientConfig, default_key_bits)},
        {"Keys", "MaxKeySize", conf_parse_key_bits, offsetof(ClientConfig, max_key_bits)},
        {"Keys", "MaxKeysPerRequest", conf_parse_keys_per_request,
         offsetof(ClientConfig, max_keys_per_request)},
        {"Keys", "MaxStoredKeys", conf_parse_stored_keys, offsetof(ClientConfig, max_stored_keys)},
        {"Keys", "StoredKeyTTL", conf_parse_sec_positive, offsetof(ClientConfig, stored_key_ttl_usec)},
        {"PSRD", "BlockSize", conf_parse_block_size, offsetof(ClientConfig, block_size)},
        {"PSRD", "LowWater", conf_parse_bytes, offsetof(ClientConfig, low_water)},
        {"PSRD", "HighWater", conf_parse_bytes, offsetof(ClientConfig, high_water)},
        {"Hubs", "Timeout", conf_parse_sec_positive, offsetof(ClientConfig, hub_timeout_usec)},
        {"Hubs", "ProvisioningTimeout", conf_parse_sec_positive, offsetof(ClientConfig, oob_timeout_usec)},
        {"Hubs", "RetryMin", conf_parse_sec_positive, offsetof(ClientConfig, retry_min_usec)},
        {"Hubs", "RetryMax", conf_parse_sec_positive, offsetof(ClientConfig, retry_max_usec)},
        {"ETSI", "Identity", conf_parse_etsi_identity, offsetof(ClientConfig, etsi_identity)},
        {"ETSI", "SAE", conf_parse_sae_directory, offsetof(ClientConfig, directory)},
        {"Management", "FromAnywhere", conf_parse_bool, offsetof(ClientConfig, management_from_anywhere)},
};

int client_config_parse_file(ClientConfig *c, const char *path) {
        return conf_parse_file(path, client_config_items, ELEMENTSOF(client_config_items), c);
}

unsigned client_config_min_scatter(const ClientConfig *c) {
        return c->min_scatter > 0 ? c->min_scatter : c->shares_required;
}

/* Per hub and pool, one request of the largest keys needs number * (size + one MAC key) bytes on
 * the initiator and the responder alike; the low-water mark must cover it so that replenishment
 * runs ahead of any single request. */
static uint64_t request_psrd_need(const ClientConfig *c) {
        return (uint64_t) c->max_keys_per_request * (c->max_key_bits / 8 + DSKE_MAC_KEY_SIZE);
}

unsigned client_config_max_key_bits(const ClientConfig *c) {
        return c->max_key_bits;
}

static int hub_url_verify(const char *url) {
        const char *rest, *slash;

        rest = startswith(url, "http://");
        if (!rest)
                rest = startswith(url, "https://");
        if (!rest || isempty(rest))
                return log_error_errno(-EINVAL, "Hub URL \"%s\" is not an http:// or https:// URL.", url);
        for (const char *p = url; *p; p++)
                if (!isgraph((unsigned char) *p) || *p == '?' || *p == '#')
                        return log_error_errno(-EINVAL,
                                               "Hub URL \"%s\" contains a character not allowed here.", url);
        slash = strrchr(rest, '/');
        if (!slash || !name_is_valid(slash + 1))
                return log_error_errno(-EINVAL,
                                       "Hub URL \"%s\" does not end in the hub's name (e.g. "
                                       "http://127.0.0.1:8100/hub/hank).",
                                       url);
        return 0;
}

int client_config_verify(const ClientConfig *c) {
        struct in6_addr a6;
        struct in_addr a4;
        size_t n_hubs = strv_length(c->hubs);
        int r;

        if (!c->name)
                return log_error_errno(-EINVAL, "No client name given (NAME argument or [Client] Name=).");
        if (!name_is_valid(c->name))
                return log_error_errno(-EINVAL,
                                       "Invalid client name \"%s\": use 1-63 of A-Z a-z 0-9 . _ - "
                                       "starting with a letter or digit.",
                                       c->name);
        if (c->listen_address && inet_pton(AF_INET, c->listen_address, &a4) != 1 &&
            inet_pton(AF_INET6, c->listen_address, &a6) != 1)
                return log_error_errno(
                        -EINVAL, "Invalid listen address \"%s\": expected a numeric IPv4 or IPv6 address.",
                        c->listen_address);
        if (n_hubs > CLIENT_HUBS_MAX)
                return log_error_errno(-EINVAL, "%zu hubs configured, at most %u are supported.", n_hubs,
                                       CLIENT_HUBS_MAX);
        for (size_t i = 0; i < n_hubs; i++) {
                r = hub_url_verify(c->hubs[i]);
                if (r < 0)
                        return r;
                for (size_t j = 0; j < i; j++)
                        if (streq(c->hubs[i], c->hubs[j]))
                                return log_error_errno(-EINVAL, "Hub URL \"%s\" is listed twice.",
                                                       c->hubs[i]);
        }
        if (c->shares_required < 2 || c->shares_required > n_hubs)
                return log_error_errno(-EINVAL,
                                       "SharesRequired=%u does not satisfy 2 <= k <= n = %zu (the number of "
                                       "hubs, at most %u).",
                                       c->shares_required, n_hubs, CLIENT_HUBS_MAX);
        if (c->min_scatter != 0 && (c->min_scatter < c->shares_required || c->min_scatter > n_hubs))
                return log_error_errno(-EINVAL, "MinSharesScattered=%u is not between k = %u and n = %zu.",
                                       c->min_scatter, c->shares_required, n_hubs);
        for (size_t i = 0; c->encryptors && c->encryptors[i]; i++) {
                if (!name_is_valid(c->encryptors[i]))
                        return log_error_errno(-EINVAL, "Invalid encryptor (SAE) name \"%s\".",
                                               c->encryptors[i]);
                for (size_t j = 0; j < i; j++)
                        if (streq(c->encryptors[i], c->encryptors[j]))
                                return log_error_errno(-EINVAL, "Encryptor \"%s\" is listed twice.",
                                                       c->encryptors[i]);
        }
        for (size_t i = 0; i < c->directory.n_entries; i++)
                for (size_t j = 0; j < i; j++)
                        if (streq(c->directory.entries[i].sae, c->directory.entries[j].sae) &&
                            !streq(c->directory.entries[i].kme, c->directory.entries[j].kme))
                                return log_error_errno(-EINVAL, "SAE \"%s\" is given two different KMEs.",
                                                       c->directory.entries[i].sae);
        if (c->default_key_bits > c->max_key_bits)
                return log_error_errno(-EINVAL, "DefaultKeySize=%u is above MaxKeySize=%u.",
                                       c->default_key_bits, c->max_key_bits);
        if (c->low_water < request_psrd_need(c))
                return log_error_errno(
                        -EINVAL,
                        "LowWater=%llu is below what one request of MaxKeysPerRequest=%u keys of "
                        "MaxKeySize=%u bits needs (%llu bytes); raise LowWater or lower the "
                        "limits.",
                        (unsigned long long) c->low_water, c->max_keys_per_request, c->max_key_bits,
                        (unsigned long long) request_psrd_need(c));
        if (c->high_water < c->low_water)
                return log_error_errno(-EINVAL, "HighWater=%llu is below LowWater=%llu.",
                                       (unsigned long long) c->high_water,
                                       (unsigned long long) c->low_water);
        if (c->retry_max_usec < c->retry_min_usec)
                return log_error_errno(-EINVAL, "RetryMin= is above RetryMax=.");
        return 0;
}

int client_config_default_path(const char *name, char **ret) {
        char *p;

        if (asprintf(&p, "%s/dske/client/%s.conf", SYSCONFDIR, name) < 0)
                return -ENOMEM;
        *ret = p;
        return 0;
}

const char *client_config_kme_of(const ClientConfig *c, const char *sae) {
        if (strv_contains(c->encryptors, sae))
                return c->name;
        for (size_t i = 0; i < c->directory.n_entries; i++)
                if (streq(c->directory.entries[i].sae, sae))
                        return c->directory.entries[i].kme;
        return NULL;
}

void client_args_done(ClientArgs *a) {
        if (!a)
                return;
        free(a->name);
        free(a->listen_address);
        free(a->config_path);
        free(a->state_dir);
        a->hubs = strv_free(a->hubs);
        a->encryptors = strv_free(a->encryptors);
        a->name = a->listen_address = a->config_path = a->state_dir = NULL;
}

static void help(void) {
        printf("Usage: %s [OPTIONS] NAME --hubs URL...\n"
               "\n"
               "The DSKE client (key management entity): registers with every hub, keeps pre-shared\n"
               "random data (PSRD) with each, splits keys into Shamir shares relayed through the\n"
               "hubs, and delivers keys to encryptors (SAEs) over ETSI GS QKD 014 at\n"
               "http://ADDRESS:PORT/api/v1/keys/ and http://ADDRESS:PORT/client/NAME/etsi/api/v1/keys/.\n"
               "\n"
               "Options:\n"
               "  -p --port=PORT            TCP port to listen on (default %u)\n"
               "  -a --address=ADDRESS      numeric IPv4 or IPv6 address to listen on (default %s)\n"
               "     --hubs URL...          hub base URLs (http://HOST:PORT/hub/NAME), as separate\n"
               "                            arguments or comma-separated; share i goes to hub i\n"
               "     --encryptors SAE...    this client's encryptors (SAE IDs), as separate\n"
               "                            arguments or comma-separated\n"
               "  -c --config=FILE          configuration file to read instead of\n"
               "                            %s/dske/client/NAME.conf (which is optional)\n"
               "     --state-dir=DIR        directory for the client's durable state (default\n"
               "                            $STATE_DIRECTORY, else %s/lib/dske/client-NAME)\n"
               "     --ephemeral            keep all state in memory: a restart registers anew\n"
               "                            and forgets keys awaiting delivery\n"
               "     --log-level=LEVEL      emerg, alert, crit, err, warning, notice, info or debug\n"
               "  -h --help                 show this help and exit\n"
               "     --version              show the version and exit\n"
               "\n"
               "Options given here override the configuration file; see dske-client(8) and\n"
               "dske.conf(5) for its sections [Client], [Keys], [PSRD], [Hubs], [ETSI] and\n"
               "[Management]. SIGTERM and SIGINT stop gracefully, SIGHUP reloads the configuration.\n",
               program_invocation_short_name, CLIENT_DEFAULT_PORT, CLIENT_DEFAULT_ADDRESS, SYSCONFDIR,
               LOCALSTATEDIR);
}

static int set_string(char **dst, const char *value) {
        char *s = strdup(value);

        if (!s)
                return log_oom();
        free(*dst);
        *dst = s;
        return 0;
}

/* Options take "--opt=VALUE" or "--opt VALUE"; --hubs and --encryptors also take the arguments that
 * follow, like the reference's argparse "nargs='+'". */
int client_parse_argv(int argc, char *argv[], ClientArgs *ret) {
        ClientArgs a = {.log_level = -1};
        int r = 0;

        for (int i = 1; i < argc && r >= 0; i++) {
                const char *arg = argv[i], *value = NULL, *eq;
                char opt[32];

                if (arg[0] != '-' || streq(arg, "-")) {
                        if (a.name) {
                                r = log_error_errno(-EINVAL, "Too many arguments: \"%s\". See --help.", arg);
                                break;
                        }
                        r = set_string(&a.name, arg);
                        continue;
                }
                if (streq(arg, "-h") || streq(arg, "--help")) {
                        help();
                        client_args_done(&a);
                        return 0;
                }
                if (streq(arg, "--ephemeral")) {
                        a.ephemeral = true;
                        continue;
                }
                if (streq(arg, "--version")) {
                        printf("%s %s\n", PACKAGE_NAME, PACKAGE_VERSION);
                        client_args_done(&a);
                        return 0;
                }

                eq = strchr(arg, '=');
                if (eq && startswith(arg, "--")) {
                        snprintf(opt, sizeof(opt), "%.*s", (int) (eq - arg), arg);
                        value = eq + 1;
                } else
                        snprintf(opt, sizeof(opt), "%s", arg);

                if (!streq(opt, "-p") && !streq(opt, "--port") && !streq(opt, "-a") &&
                    !streq(opt, "--address") && !streq(opt, "--hubs") && !streq(opt, "--encryptors") &&
                    !streq(opt, "-c") && !streq(opt, "--config") && !streq(opt, "--state-dir") &&
                    !streq(opt, "--log-level")) {
                        r = log_error_errno(-EINVAL, "Unknown option \"%s\". See --help.", arg);
                        break;
                }
                if (!value) {
                        if (i + 1 >= argc) {
                                r = log_error_errno(-EINVAL, "Option %s needs a value. See --help.", opt);
                                break;
                        }
                        value = argv[++i];
                }

                if (streq(opt, "-p") || streq(opt, "--port")) {
                        uint64_t port;

                        if (parse_size(value, strlen(value), UINT16_MAX, &port) < 0 || port == 0)
                                r = log_error_errno(-EINVAL, "Invalid port \"%s\": expected 1..65535.",
                                                    value);
                        else
                                a.port = (uint16_t) port;
                } else if (streq(opt, "-a") || streq(opt, "--address"))
                        r = set_string(&a.listen_address, value);
                else if (streq(opt, "--hubs") || streq(opt, "--encryptors")) {
                        char ***list = streq(opt, "--hubs") ? &a.hubs : &a.encryptors;

                        r = strv_extend_split(list, value, LIST_SEPARATORS);
                        while (r >= 0 && i + 1 < argc && argv[i + 1][0] != '-')
                                r = strv_extend_split(list, argv[++i], LIST_SEPARATORS);
                        if (r < 0)
                                r = log_oom();
                } else if (streq(opt, "-c") || streq(opt, "--config"))
                        r = set_string(&a.config_path, value);
                else if (streq(opt, "--state-dir"))
                        r = set_string(&a.state_dir, value);
                else if (streq(opt, "--log-level")) {
                        r = log_level_from_string(value);
                        if (r < 0)
                                r = log_error_errno(-EINVAL, "Invalid log level \"%s\".", value);
                        else {
                                a.log_level = r;
                                log_set_max_level(r);
                        }
                }
        }
        if (r >= 0 && !a.name && !a.config_path)
                r = log_error_errno(-EINVAL, "No client name given. See --help.");
        if (r < 0) {
                client_args_done(&a);
                return r;
        }
        *ret = a;
        return 1;
}

static int strv_copy(char **from, char ***to) {
        char **l = NULL;

        for (size_t i = 0; from && from[i]; i++)
                if (strv_push(&l, from[i], strlen(from[i])) < 0) {
                        strv_free(l);
                        return -ENOMEM;
                }
        strv_free(*to);
        *to = l;
        return 0;
}

int client_config_load(const ClientArgs *args, ClientConfig *ret) {
        _cleanup_free_ char *default_path = NULL;
        ClientConfig c;
        const char *path;
        int r;

        client_config_init(&c);

        path = args->config_path;
        if (!path) {
                if (!args->name || !name_is_valid(args->name))
                        path = NULL;
                else if (client_config_default_path(args->name, &default_path) < 0) {
                        client_config_done(&c);
                        return log_oom();
                } else
                        path = default_path;
        }
        if (path) {
                r = client_config_parse_file(&c, path);
                if (r == -ENOENT && !args->config_path)
                        r = 0;
                else if (r == -ENOENT)
                        r = log_error_errno(r, "Configuration file %s does not exist.", path);
                else if (r < 0 && r != -EINVAL)
                        r = log_error_errno(r, "Failed to read configuration file %s: %m", path);
                if (r < 0) {
                        client_config_done(&c);
                        return r;
                }
        }

        r = 0;
        if (args->name)
                r = set_string(&c.name, args->name);
        if (r >= 0 && args->listen_address)
                r = set_string(&c.listen_address, args->listen_address);
        if (r >= 0 && args->state_dir)
                r = set_string(&c.state_dir, args->state_dir);
        if (args->ephemeral)
                c.ephemeral = true;
        if (r >= 0 && !c.ephemeral && !c.state_dir && c.name &&
            daemon_default_state_dir("client", c.name, &c.state_dir) < 0)
                r = log_oom();
        if (r >= 0 && args->hubs && strv_copy(args->hubs, &c.hubs) < 0)
                r = log_oom();
        if (r >= 0 && args->encryptors && strv_copy(args->encryptors, &c.encryptors) < 0)
                r = log_oom();
        if (args->port != 0)
                c.port = args->port;
        if (args->log_level >= 0)
                c.log_level = args->log_level;

        /* Like the reference, one trailing '/' of a hub URL is forgiven. */
        for (size_t i = 0; c.hubs && c.hubs[i]; i++) {
                size_t len = strlen(c.hubs[i]);

                if (len > 0 && c.hubs[i][len - 1] == '/')
                        c.hubs[i][len - 1] = '\0';
        }

        if (r >= 0)
                r = client_config_verify(&c);
        if (r < 0) {
                client_config_done(&c);
                return r;
        }
        *ret = c;
        return 0;
}
