/* SPDX-License-Identifier: MIT */
#include <endian.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "hub-state.h"
#include "json-util.h"
#include "log.h"
#include "secret.h"

enum {
        RECORD_SHARE_PUT = STATE_RECORD_USER,
        RECORD_SHARE_DELETE,
};

/* A share record: key ID, index, expiry (CLOCK_REALTIME, µs), then the posting client, the master
 * and slave SAE (each a length byte and the text), then the value (two length bytes and the
 * bytes). */
#define SHARE_FIXED_SIZE (16u + 4u + 8u)

static uint64_t realtime_usec(void) {
        struct timespec ts;

        (void) clock_gettime(CLOCK_REALTIME, &ts);
        return (uint64_t) ts.tv_sec * 1000000u + (uint64_t) ts.tv_nsec / 1000u;
}

/* Encodes s with the given expiry; the caller wipes and frees *ret. */
static int share_record_encode(const Share *s, uint64_t expires, uint8_t **ret, size_t *ret_size) {
        uint32_t index = htole32(s->share_index);
        size_t off = SHARE_FIXED_SIZE,
               alloc = SHARE_FIXED_SIZE + STATE_TEXT_SIZE_MAX(3) + STATE_VALUE_SIZE_MAX(s->size);
        uint8_t *buf;
        int r;

        buf = secret_alloc(alloc);
        if (!buf)
                return -ENOMEM;
        expires = htole64(expires);
        memcpy(buf, s->key_id.bytes, 16);
        memcpy(buf + 16, &index, 4);
        memcpy(buf + 20, &expires, 8);
        r = state_record_put_text(buf, &off, s->master_client->name);
        if (r >= 0)
                r = state_record_put_text(buf, &off, s->master_sae_id);
        if (r >= 0)
                r = state_record_put_text(buf, &off, s->slave_sae_id);
        if (r >= 0)
                r = state_record_put_value(buf, &off, s->value, s->size);
        if (r < 0) {
                erase_and_free(buf, alloc);
                return r;
        }
        *ret = buf;
        *ret_size = off;
        return 0;
}

static int share_record(StateDir *d, const Share *s, uint64_t ttl_usec, bool snapshot) {
        uint64_t now = realtime_usec();
        uint8_t *buf;
        size_t n;
        int r;

        r = share_record_encode(s, ttl_usec > UINT64_MAX - now ? UINT64_MAX : now + ttl_usec, &buf, &n);
        if (r < 0)
                return r;
        r = snapshot ? state_dir_snapshot_add(d, RECORD_SHARE_PUT, buf, n)
                     : state_dir_append(d, RECORD_SHARE_PUT, buf, n);
        erase_and_free(buf, n);
        return r;
}

int hub_state_share_put(StateDir *d, const Share *s, uint64_t ttl_usec) {
        if (!d)
                return 0;
        return share_record(d, s, ttl_usec, false);
}

void hub_state_share_delete(StateDir *d, const Share *s) {
        int r;

        r = state_dir_append(d, RECORD_SHARE_DELETE, s->key_id.bytes, sizeof(s->key_id.bytes));
        if (r < 0)
                log_warning_errno(r, "Failed to record the removal of a share: %m");
}

static int restore_share(Manager *m, const uint8_t *p, size_t n) {
        _cleanup_free_ char *client = NULL, *master = NULL, *slave = NULL;
        _cleanup_(share_freep) Share *s = NULL;
        uint64_t expires, now = realtime_usec();
        uint32_t index;
        size_t off = SHARE_FIXED_SIZE, size;
        const uint8_t *value;
        PeerClient *c;
        Uuid key_id;
        Share *old;
        int r;

        if (n < SHARE_FIXED_SIZE)
                return -EBADMSG;
        memcpy(key_id.bytes, p, 16);
        memcpy(&index, p + 16, 4);
        memcpy(&expires, p + 20, 8);
        index = le32toh(index);
        expires = le64toh(expires);
        r = state_record_get_text(p, n, &off, &client);
        if (r >= 0)
                r = state_record_get_text(p, n, &off, &master);
        if (r >= 0)
                r = state_record_get_text(p, n, &off, &slave);
        if (r >= 0)
                r = state_record_get_value(p, n, &off, &value, &size);
        if (r < 0)
                return r;

        /* A later record for the same key replaces an earlier one. */
        old = share_store_get(&m->shares, &key_id);
        if (old)
                share_store_remove(&m->shares, old, SHARE_REMOVAL_DROPPED);

        c = manager_find_client(m, client);
        if (!c || expires <= now)
                return 0; /* unregistered since, or expired while the hub was down */

        r = share_new(&key_id, index, c, master, slave, value, size, &s);
        if (r < 0)
                return r;
        r = share_store_add(&m->shares, s, expires - now);
        if (r < 0)
                return r;
        TAKE_PTR(s);
        return 0;
}

static int on_record(uint8_t type, const void *payload, size_t size, void *userdata) {
        Manager *m = userdata;
        Share *s;
        Uuid key_id;

        switch (type) {
        case RECORD_SHARE_PUT:
                return restore_share(m, payload, size);
        case RECORD_SHARE_DELETE:
                if (size != sizeof(key_id.bytes))
                        return -EBADMSG;
                memcpy(key_id.bytes, payload, size);
                s = share_store_get(&m->shares, &key_id);
                if (s)
                        share_store_remove(&m->shares, s, SHARE_REMOVAL_DROPPED);
                return 0;
        default:
                return -EBADMSG;
        }
}

static int write_snapshot(StateDir *d, void *userdata) {
        Manager *m = userdata;
        uint64_t now;
        int r;

        r = sd_event_now(m->event, CLOCK_MONOTONIC, &now);
        if (r < 0)
                return r;
        for (Share *s = m->shares.head; s; s = s->next) {
                r = share_record(d, s, s->expires_usec > now ? s->expires_usec - now : 0, true);
                if (r < 0)
                        return r;
        }
        return 0;
}

int hub_state_save_clients(Manager *m) {
        _cleanup_(json_object_putp) json_object *data = NULL, *clients = NULL;
        int r;

        if (!m->state)
                return 0;
        data = json_object_new_object();
        clients = json_object_new_array();
        if (!data || !clients)
                return log_oom();
        for (PeerClient *c = m->clients_head; c; c = c->next) {
                json_object *o = json_object_new_object(), *e = json_object_new_array();

                if (!o || !e || json_object_array_add(clients, o) < 0) {
                        json_object_put(o);
                        json_object_put(e);
                        return log_oom();
                }
                if (json_object_object_add(o, "name", json_object_new_string(c->name)) < 0 ||
                    json_object_object_add(o, "encryptors", e) < 0 ||
                    json_object_object_add(o, "registrations", json_object_new_uint64(c->n_registrations)) <
                            0)
                        return log_oom();
                for (size_t i = 0; i < c->n_encryptor_names; i++)
                        if (json_object_array_add(e, json_object_new_string(c->encryptor_names[i])) < 0)
                                return log_oom();
        }
        if (json_object_object_add(data, "clients", TAKE_PTR(clients)) < 0)
                return log_oom();
        r = state_dir_save_node(m->state, data);
        if (r < 0)
                return log_error_errno(r, "Failed to save the registered clients: %m");
        return 0;
}

static int restore_clients(Manager *m) {
        json_object *data = state_dir_node(m->state), *clients, *c, *v;
        const char *path = state_dir_path(m->state);
        int r;

        if (!data)
                return 0;
        if (!json_object_object_get_ex(data, "clients", &clients) ||
            !json_object_is_type(clients, json_type_array))
                goto bad;

        for (size_t i = 0; i < json_object_array_length(clients); i++) {
                _cleanup_free_ char **names = NULL;
                const char *name;
                PeerClient *pc;
                size_t n;

                c = json_object_array_get_idx(clients, i);
                if (!json_object_object_get_ex(c, "name", &v) || !json_object_is_type(v, json_type_string))
                        goto bad;
                name = json_object_get_string(v);
                if (!name_is_valid(name) || manager_find_client(m, name))
                        goto bad;
                if (!json_object_object_get_ex(c, "encryptors", &v) ||
                    !json_object_is_type(v, json_type_array))
                        goto bad;
                n = json_object_array_length(v);
                if (n > HUB_ENCRYPTORS_PER_CLIENT_MAX)
                        goto bad;
                names = calloc(n + 1, sizeof(char *));
                if (!names)
                        return log_oom();
                for (size_t j = 0; j < n; j++) {
                        json_object *e = json_object_array_get_idx(v, j);

                        if (!json_object_is_type(e, json_type_string) ||
                            !name_is_valid(json_object_get_string(e)))
                                goto bad;
                        names[j] = (char *) json_object_get_string(e);
                }
                r = manager_add_client(m, name, names, n, true, &pc);
                if (r < 0)
                        return log_error_errno(r, "Failed to restore client %s: %m", name);
                if (json_object_object_get_ex(c, "registrations", &v) &&
                    json_object_is_type(v, json_type_int))
                        pc->n_registrations = json_object_get_uint64(v);
        }
        return 0;

bad:
        log_error("State file %s/node.json does not describe the hub's clients; refusing to use it.", path);
        return -EBADMSG;
}

static void on_state_failed(StateDir *d, int error, void *userdata) {
        Manager *m = userdata;

        (void) d;
        log_error_errno(error, "The state directory failed: %m. Stopping, as nothing can be recorded.");
        m->failed = true;
        manager_stop(m, "state directory failure");
}

int hub_state_open(Manager *m) {
        int r;

        if (m->config.ephemeral || !m->config.state_dir)
                return 0;

        r = state_dir_open(m->event, m->config.state_dir, "hub", m->config.name, 0, &m->state);
        if (r < 0)
                return r;
        m->shares.state = NULL; /* restoring is not news for the journal */

        r = restore_clients(m);
        if (r < 0)
                return r;
        r = state_dir_replay(m->state, on_record, m);
        if (r == -EBADMSG)
                return log_error_errno(r,
                                       "State file %s/records or journal holds a malformed share; "
                                       "refusing to use it.",
                                       state_dir_path(m->state));
        if (r < 0)
                return log_error_errno(r, "Failed to restore the stored shares: %m");
        (void) state_dir_drop_unclaimed(m->state); /* logs what it destroys */

        m->shares.state = m->state;
        state_dir_set_snapshot_writer(m->state, write_snapshot, m);
        state_dir_set_failure_callback(m->state, on_state_failed, m);
        log_info("State restored from %s: %zu client(s), %zu share(s) pending.", m->config.state_dir,
                 m->n_clients, m->shares.n_shares);
        return 0;
}
