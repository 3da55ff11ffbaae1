/* SPDX-License-Identifier: MIT */
#pragma once

/* Keys: scatter and gather across the hubs (PROTOCOL.md §8.2, §8.3), and the store of gathered
 * keys that could not be delivered yet.
 *
 * Scatter (initiator): a fresh random key is split into n Shamir shares, k of which recover it;
 * share i is one-time-pad encrypted with bytes of hub i's client-owned pool and POSTed to hub i,
 * signed with 32 more bytes of that pool. All hubs are called at once; the operation ends when
 * every hub answered or timed out, and succeeds when at least MinSharesScattered hubs took their
 * share.
 *
 * Gather (responder): every hub is asked for its share at once. A reply counts when its MAC
 * (over the raw body, keyed from the hub-owned pool) verifies, its share index is that hub's, and
 * its share decrypts with hub-owned bytes of the share's length. The key is recovered from all
 * consistent shares; a share that disagrees with the others is dropped when spares allow it, and
 * its hub named in the log.
 *
 * PSRD taken for a message that then failed verification is given back (H3); PSRD allocated for
 * a request that never left this host is given back too. Fully used blocks are dropped after
 * every exchange. */

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <systemd/sd-event.h>

#include "client-manager.h"
#include "codec.h"

typedef struct KeyOp KeyOp;

typedef enum KeyOpKind {
        KEY_OP_SCATTER,
        KEY_OP_GATHER,
} KeyOpKind;

/* Called once, from the event loop, when the operation has its result. The callback may free op. */
typedef void (*KeyOpDone)(KeyOp *op, void *userdata);

/* Makes a key of key_size bytes for master (one of this client's SAEs) and slave, and scatters
 * its shares. */
int key_op_scatter(Manager *m, const char *master_sae, const char *slave_sae, size_t key_size,
                   KeyOpDone done, void *userdata, KeyOp **ret);
/* Gathers the shares of key_id, which master sent to slave (one of this client's SAEs). */
int key_op_gather(Manager *m, const char *master_sae, const char *slave_sae, const Uuid *key_id,
                  KeyOpDone done, void *userdata, KeyOp **ret);
/* Cancels whatever still runs (without calling done) and wipes the key. Accepts NULL. */
KeyOp *key_op_free(KeyOp *op);
DEFINE_TRIVIAL_CLEANUP_FUNC(KeyOp *, key_op_free);

/* The outcome, once done was called:
 *    0        the key is available through key_op_key()
 *   -EAGAIN   not enough hubs took or delivered a share (503)
 *   -ENOENT   gather: too many hubs know no share with this ID (the key does not exist, or it was
 *             delivered already)
 *   -EACCES   gather: the hubs refuse the share to this slave or master SAE
 *   -EBADMSG  gather: the shares received are inconsistent beyond repair */
int key_op_result(const KeyOp *op);
const Uuid *key_op_key_id(const KeyOp *op);
const uint8_t *key_op_key(const KeyOp *op, size_t *ret_size);
/* Moves the key out of the operation (the caller wipes and frees it). */
uint8_t *key_op_steal_key(KeyOp *op, size_t *ret_size);
/* {"key_ID", "nr_successful_shares", "nr_required_shares", "causes": [...]} for an error reply. */
json_object *key_op_failure_details(const KeyOp *op);

/* Gathered keys waiting to be delivered, bounded in number and time. */
typedef struct StoredKey StoredKey;
typedef struct KeyStore KeyStore;

int key_store_new(sd_event *event, KeyStore **ret);
KeyStore *key_store_free(KeyStore *s);
DEFINE_TRIVIAL_CLEANUP_FUNC(KeyStore *, key_store_free);
/* Takes ownership of key (size bytes, wiped when dropped). When the store is full the oldest key
 * makes room. */
int key_store_add(KeyStore *s, const Uuid *key_id, const char *master_sae, const char *slave_sae,
                  uint8_t *key, size_t size, unsigned max_keys, uint64_t ttl_usec);
StoredKey *key_store_find(KeyStore *s, const Uuid *key_id);
bool stored_key_matches(const StoredKey *k, const char *master_sae, const char *slave_sae);
/* Whether k holds the shares of a gather that fell short rather than a key: the next gather of
 * the key uses them. */
bool stored_key_is_partial(const StoredKey *k);
/* Unlinks k and hands its key to the caller (who wipes and frees it). */
uint8_t *key_store_take(KeyStore *s, StoredKey *k, size_t *ret_size);
/* Keys stored (for the pair; in all): the shares held of keys not rebuilt yet do not count. */
size_t key_store_count(const KeyStore *s, const char *master_sae, const char *slave_sae);
size_t key_store_size(const KeyStore *s);
/* Wipes every key. */
void key_store_clear(KeyStore *s);
/* From now on keys added and removed are journaled in d (NULL: not at all); freeing the store
 * journals nothing, so that its keys are there at the next start. */
void key_store_set_state(KeyStore *s, StateDir *d);
/* Adds every stored key to the snapshot being written in d. */
int key_store_snapshot(KeyStore *s, StateDir *d);
/* Applies a record of the state directory; -EBADMSG for one that is not a key record. */
int key_store_restore(KeyStore *s, uint8_t type, const uint8_t *payload, size_t size, unsigned max_keys);
