/* SPDX-License-Identifier: MIT */
#pragma once

/* A small chained hash table from byte-string keys to pointers, for the hub's lookups by client
 * name and by key ID (constant time per request whatever the number of clients and shares).
 * Keys are borrowed: each points into the value it indexes and must stay valid while stored. The
 * hash is seeded from the kernel's CSPRNG so peers cannot aim for collisions. */

#include <stddef.h>

#include "macro.h"

typedef struct HubHashmap HubHashmap;

int hub_hashmap_new(HubHashmap **ret);
/* Frees the table, not the keys or values. Accepts NULL. */
HubHashmap *hub_hashmap_free(HubHashmap *m);
DEFINE_TRIVIAL_CLEANUP_FUNC(HubHashmap *, hub_hashmap_free);

/* Returns 0, -EEXIST when the key is present, -ENOMEM. */
int hub_hashmap_put(HubHashmap *m, const void *key, size_t key_size, void *value);
void *hub_hashmap_get(const HubHashmap *m, const void *key, size_t key_size);
/* Removes and returns the value, or NULL when absent. */
void *hub_hashmap_remove(HubHashmap *m, const void *key, size_t key_size);
size_t hub_hashmap_size(const HubHashmap *m);
