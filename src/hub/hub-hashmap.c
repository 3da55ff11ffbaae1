/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "hub-hashmap.h"
#include "random.h"

typedef struct Entry {
        struct Entry *next;
        const void *key;
        size_t key_size;
        uint64_t hash;
        void *value;
} Entry;

struct HubHashmap {
        Entry **buckets;
        size_t n_buckets; /* a power of two */
        size_t n_entries;
        uint64_t seed[2];
};

#define INITIAL_BUCKETS 64u

static uint64_t mix64(uint64_t x) {
        x ^= x >> 33;
        x *= UINT64_C(0xff51afd7ed558ccd);
        x ^= x >> 33;
        x *= UINT64_C(0xc4ceb9fe1a85ec53);
        x ^= x >> 33;
        return x;
}

/* FNV-1a over the seeded state with a final avalanche: cheap, and with a secret seed good enough
 * against peers that choose names and key IDs (their number is bounded by configuration). */
static uint64_t hash_bytes(const HubHashmap *m, const void *key, size_t key_size) {
        const uint8_t *p = key;
        uint64_t h = UINT64_C(0xcbf29ce484222325) ^ m->seed[0];

        for (size_t i = 0; i < key_size; i++) {
                h ^= p[i];
                h *= UINT64_C(0x100000001b3);
        }
        return mix64(h ^ m->seed[1] ^ key_size);
}

int hub_hashmap_new(HubHashmap **ret) {
        HubHashmap *m;
        int r;

        m = calloc(1, sizeof(*m));
        if (!m)
                return -ENOMEM;
        m->buckets = calloc(INITIAL_BUCKETS, sizeof(Entry *));
        if (!m->buckets) {
                free(m);
                return -ENOMEM;
        }
        m->n_buckets = INITIAL_BUCKETS;
        r = random_bytes(m->seed, sizeof(m->seed));
        if (r < 0) {
                free(m->buckets);
                free(m);
                return r;
        }
        *ret = m;
        return 0;
}

HubHashmap *hub_hashmap_free(HubHashmap *m) {
        if (!m)
                return NULL;
        for (size_t i = 0; i < m->n_buckets; i++)
                for (Entry *e = m->buckets[i], *next; e; e = next) {
                        next = e->next;
                        free(e);
                }
        free(m->buckets);
        free(m);
        return NULL;
}

static Entry **find(const HubHashmap *m, const void *key, size_t key_size, uint64_t hash) {
        Entry **e = &m->buckets[hash & (m->n_buckets - 1)];

        for (; *e; e = &(*e)->next)
                if ((*e)->hash == hash && (*e)->key_size == key_size &&
                    memcmp((*e)->key, key, key_size) == 0)
                        return e;
        return e;
}

static void grow(HubHashmap *m) {
        size_t n = m->n_buckets * 2;
        Entry **b;

        if (n < m->n_buckets)
                return;
        b = calloc(n, sizeof(Entry *));
        if (!b)
                return; /* longer chains, still correct */

        for (size_t i = 0; i < m->n_buckets; i++)
                for (Entry *e = m->buckets[i], *next; e; e = next) {
                        next = e->next;
                        e->next = b[e->hash & (n - 1)];
                        b[e->hash & (n - 1)] = e;
                }
        free(m->buckets);
        m->buckets = b;
        m->n_buckets = n;
}

int hub_hashmap_put(HubHashmap *m, const void *key, size_t key_size, void *value) {
        uint64_t hash = hash_bytes(m, key, key_size);
        Entry **slot, *e;

        slot = find(m, key, key_size, hash);
        if (*slot)
                return -EEXIST;

        e = malloc(sizeof(*e));
        if (!e)
                return -ENOMEM;
        *e = (Entry){.key = key, .key_size = key_size, .hash = hash, .value = value};
        *slot = e;
        m->n_entries++;

        if (m->n_entries > m->n_buckets)
                grow(m);
        return 0;
}

void *hub_hashmap_get(const HubHashmap *m, const void *key, size_t key_size) {
        Entry **slot = find(m, key, key_size, hash_bytes(m, key, key_size));

        return *slot ? (*slot)->value : NULL;
}

void *hub_hashmap_remove(HubHashmap *m, const void *key, size_t key_size) {
        Entry **slot = find(m, key, key_size, hash_bytes(m, key, key_size));
        Entry *e = *slot;
        void *value;

        if (!e)
                return NULL;
        *slot = e->next;
        value = e->value;
        free(e);
        m->n_entries--;
        return value;
}

size_t hub_hashmap_size(const HubHashmap *m) {
        return m->n_entries;
}
