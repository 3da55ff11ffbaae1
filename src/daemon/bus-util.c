/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus-util.h"
#include "log.h"

static bool char_is_alnum(char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

int bus_name_element_from_instance(const char *instance, char **ret) {
        _cleanup_free_ char *s = NULL;
        size_t n, k = 0;

        if (!instance || !*instance)
                return -EINVAL;
        n = strlen(instance);
        /* Bus names are at most 255 characters; leave room for the prefix. */
        if (n > 200)
                return -EINVAL;
        s = malloc(n + 2);
        if (!s)
                return -ENOMEM;
        if (instance[0] >= '0' && instance[0] <= '9')
                s[k++] = '_';
        for (size_t i = 0; i < n; i++) {
                char c = instance[i];

                /* '-' is allowed in a well-known name's elements; only '.' would split one. */
                if (char_is_alnum(c) || c == '_' || c == '-')
                        s[k++] = c;
                else if (c == '.')
                        s[k++] = '_';
                else
                        return -EINVAL;
        }
        s[k] = 0;
        *ret = TAKE_PTR(s);
        return 0;
}

static void node_bus_fail(NodeBus *b, int error, const char *what) {
        char *e = NULL;

        if (asprintf(&e, "%s: %s", what, strerror(-error)) < 0)
                e = NULL;
        free(b->error);
        b->error = e ?: strdup("unavailable");
        log_warning_errno(error, "%s, continuing without D-Bus: %m", what);
}

int node_bus_open(NodeBus *b, const char *prefix, const char *instance) {
        _cleanup_free_ char *element = NULL;
        int r;

        r = bus_name_element_from_instance(instance, &element);
        if (r == -ENOMEM)
                return log_oom();
        if (r < 0) {
                node_bus_fail(b, r, "Instance name cannot be used in a bus name");
                return r;
        }
        if (asprintf(&b->name, "%s.%s", prefix, element) < 0) {
                b->name = NULL;
                return log_oom();
        }

        r = sd_bus_open_system(&b->bus);
        if (r < 0) {
                b->bus = NULL;
                node_bus_fail(b, r, "Failed to connect to the system bus");
                return r;
        }
        (void) sd_bus_set_description(b->bus, "dske");
        return 0;
}

static int on_name_acquired(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        NodeBus *b = userdata;
        const sd_bus_error *e = sd_bus_message_get_error(reply);
        char *s = NULL;

        if (!e) {
                log_debug("Acquired bus name %s.", b->name);
                return 0;
        }
        log_warning("Failed to acquire bus name %s, continuing without it: %s", b->name,
                    e->message ?: e->name);
        if (asprintf(&s, "Failed to acquire bus name %s: %s", b->name, e->message ?: e->name) < 0)
                s = NULL;
        free(b->error);
        b->error = s ?: strdup("bus name not acquired");
        return 0;
}

static int on_message(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        NodeBus *b = userdata;

        /* sd-bus reports the loss of the connection as this local signal; the connection stays
         * closed (the node does not reconnect), and the status says so. */
        if (!sd_bus_message_is_signal(m, "org.freedesktop.DBus.Local", "Disconnected"))
                return 0;
        log_warning("Disconnected from the system bus, continuing without D-Bus.");
        free(b->error);
        b->error = strdup("disconnected from the system bus");
        return 0;
}

int node_bus_start(NodeBus *b, sd_event *event) {
        int r;

        if (!b->bus)
                return -ENOTCONN;

        r = sd_bus_add_filter(b->bus, NULL, on_message, b);
        if (r >= 0)
                r = sd_bus_request_name_async(b->bus, NULL, b->name, 0, on_name_acquired, b);
        if (r >= 0)
                r = sd_bus_attach_event(b->bus, event, SD_EVENT_PRIORITY_NORMAL);
        if (r < 0) {
                b->bus = sd_bus_flush_close_unref(b->bus);
                node_bus_fail(b, r, "Failed to set up the bus connection");
                return r;
        }
        return 0;
}

void node_bus_done(NodeBus *b) {
        b->bus = sd_bus_flush_close_unref(b->bus);
        free(b->name);
        b->name = NULL;
        free(b->error);
        b->error = NULL;
}

bool node_bus_ok(const NodeBus *b) {
        return b->bus && !b->error;
}

int bus_property_get_pool(sd_bus *bus, const char *path, const char *interface, const char *property,
                          sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Pool *const *pool = userdata;
        PoolStats st = {};
        size_t n = strlen(property);

        if (*pool)
                pool_get_stats(*pool, &st);

#define ENDS_WITH(suffix) (n >= strlen(suffix) && streq(property + n - strlen(suffix), suffix))
        if (ENDS_WITH("Blocks"))
                return sd_bus_message_append(reply, "u", (uint32_t) MIN(st.n_blocks, (size_t) UINT32_MAX));
        if (ENDS_WITH("TotalBytes"))
                return sd_bus_message_append(reply, "t", st.total_bytes);
        if (ENDS_WITH("UsedBytes"))
                return sd_bus_message_append(reply, "t", st.used_bytes);
        if (ENDS_WITH("AvailableBytes"))
                return sd_bus_message_append(reply, "t", st.available_bytes);
#undef ENDS_WITH
        return -EINVAL;
}

int bus_property_get_version(sd_bus *bus, const char *path, const char *interface, const char *property,
                             sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        return sd_bus_message_append(reply, "s", PACKAGE_VERSION);
}

int bus_append_node_state(sd_bus_message *reply, bool stopping, bool listening) {
        return sd_bus_message_append(reply, "s", stopping ? "stopping" : listening ? "running" : "starting");
}

int bus_append_listen_address(sd_bus_message *reply, const char *address, unsigned port) {
        _cleanup_free_ char *s = NULL;

        if (asprintf(&s, strchr(address, ':') ? "[%s]:%u" : "%s:%u", address, port) < 0)
                return -ENOMEM;
        return sd_bus_message_append(reply, "s", s);
}
