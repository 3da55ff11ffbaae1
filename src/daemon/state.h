/* SPDX-License-Identifier: MIT */
#pragma once

/* Durable node state: DESIGN.md "State and the one-time-pad invariant".
 *
 * One directory per node (StateDirectory= or --state-dir), owned by the service user, mode 0700:
 *
 *   lock        flock()ed while a process uses the directory
 *   node.json   what changes rarely (registrations, encryptor lists), rewritten whole
 *   psrd/UUID.blk one file per PSRD block: header, data (used bytes zero), used-byte bitmap;
 *               UUID.new for a block that arrived since the last checkpoint (not synced),
 *               UUID.del while a removed block's file waits to be deleted
 *   records     snapshot of the daemon's records (the hub's stored shares, the client's keys
 *               awaiting delivery) as of the last checkpoint
 *   journal     what changed since: PSRD ranges taken from a peer's pool and given back,
 *               reservations of the node's own pools, records put and deleted
 *   journal.next the journal of a checkpoint being written, read after the journal
 *
 * Every file is written to a temporary name, synced and renamed, and the directory is synced;
 * the journal is only appended to (a file allocated ahead and mapped: a record is a copy, no system
 * call). Every file carries a format version and CRC-32 checksums, so a truncated or corrupted
 * file is refused at start-up with its name, never used.
 *
 * The event loop waits for the disk only for a reservation that the handing out overtook: a thread
 * syncs the journal, another writes new blocks' files and checkpoints, in the order they were asked
 * for. Journal records and removals reach the kernel from the loop, before any reply that depends
 * on them; a new block's file from the thread, before the hub answers the fetch that issued the
 * block.
 *
 * The guarantees, and what they cost:
 *  - Changes are written to the journal (one copy for all made since the last) before any reply
 *    leaves the node (state_dir_flush() from the HTTP server's reply hook), so they survive the
 *    process (kill -9); the journal is synced within 200 ms, at every checkpoint and where a
 *    guarantee below needs it.
 *  - PSRD a node sends with (its own pools) is reserved ahead in chunks: the reservation is synced
 *    before any byte of it is handed out, and after a crash the reserved but unused bytes are
 *    burned (half a chunk per block in use, on average). The next reservation is asked for in the
 *    background when a quarter of a chunk is left, the first one when the pool is taken or its
 *    block arrives; the loop syncs only when it is not durable in time.
 *  - PSRD a peer names (the peer's pools) is journaled as used before the reply to its message,
 *    so a replay after a restart finds it used. Against power loss, where the last writes may be
 *    lost, a block is marked active by a durable record before the reply to its first take; a
 *    journal of an earlier boot (the system went down) then burns every active block whole. The
 *    block in use is marked in the background when the pool is taken or the block arrives, the
 *    next block of a pool when three quarters of the one in use are used, and blocks in use stay
 *    marked across checkpoints, so a power loss burns the blocks in use of every peer's pool. The
 *    peer is told "Invalid PSRD block UUID." or "Attempt to use PSRD data more than once." for
 *    those bytes and retires the block.
 *  - A new block may be lost by a power loss until the next checkpoint syncs its file, and with
 *    it the records naming it: that cannot make PSRD used twice, and a peer naming it is told it
 *    is unknown. (Blocks arrive several times a second under load: a sync for each was about two
 *    in five of a node's syncs.) A client killed within moments of a block's arrival may lose it
 *    the same way, as when killed during the fetch; a hub replies only once the file is written.
 *  - Bytes taken to check a MAC that fails are given back; the journal records that too.
 *  - Used bytes are zero in memory at once and in the block files from the next checkpoint
 *    (every 10 s give or take 12% with changes, when the journal grows large, and at exit).
 *
 * Every function accepts a NULL StateDir: that is the ephemeral mode, where state lives in memory
 * only and nothing is written. */

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <systemd/sd-event.h>

#include "macro.h"
#include "psrd.h"

typedef struct StateDir StateDir;

/* Types of the daemon's own records: from STATE_RECORD_USER up to 255. */
#define STATE_RECORD_USER     16u
#define STATE_RECORD_SIZE_MAX 65535u

typedef enum StateOpenFlags {
        STATE_OPEN_READ_ONLY = 1 << 0, /* inspect only: no lock, nothing created or written */
} StateOpenFlags;

/* Opens (creating it when empty) the state of the node role/name in path and loads it: node.json,
 * every block, the snapshot and the journal. A read-only open may leave role and name NULL to
 * accept any node's directory. Errors are logged naming the file:
 *   -EBUSY     another process holds the directory
 *   -EBADMSG   a file is corrupted, truncated or of an unknown format version
 *   -EXDEV     the directory belongs to another node (role or name differ)
 * and errors from the file system. event may be NULL in read-only mode. */
int state_dir_open(sd_event *event, const char *path, const char *role, const char *name,
                   StateOpenFlags flags, StateDir **ret);
/* The final checkpoint of a clean stop: own pools keep only what was handed out (nothing reserved
 * is burned at the next start). Changes after it are still recorded. */
int state_dir_close(StateDir *d);
/* Frees d without writing anything; pools handed out stop being recorded (their owner frees them). */
StateDir *state_dir_free(StateDir *d);
DEFINE_TRIVIAL_CLEANUP_FUNC(StateDir *, state_dir_free);
const char *state_dir_path(const StateDir *d);
/* The node the directory belongs to; NULL for a read-only open of a directory without state. */
const char *state_dir_role(const StateDir *d);
const char *state_dir_name(const StateDir *d);

/* The daemon's part of node.json as last saved (borrowed), or NULL on a fresh directory. */
json_object *state_dir_node(const StateDir *d);
/* Replaces node.json with data (the reference is not taken), synced before returning. */
int state_dir_save_node(StateDir *d, json_object *data);

/* A pool for the link to peer, with the blocks stored for it (none on a fresh start), observed so
 * that every change is recorded. Without a StateDir this is pool_new(). */
int state_dir_take_pool(StateDir *d, const char *peer, PoolOwner owner, Pool **ret);
/* An observer of the daemon's own, told of every change to pools taken from d once it is recorded
 * (a refused change is not passed on). */
void state_dir_set_pool_observer(StateDir *d, PoolObserver observer, void *userdata);
/* Stops recording p before it is freed: when destroy is set its files go too (the link was
 * reset or ended), else they stay for the next start. Accepts NULL for either argument. */
void state_dir_release_pool(StateDir *d, Pool *p, bool destroy);
/* Destroys the stored blocks no pool was taken for (peers no longer known). Returns how many. */
size_t state_dir_drop_unclaimed(StateDir *d);

/* Loaded records, in the order they were put and not deleted since, for handler to rebuild the
 * daemon's state; a negative return stops the replay and is returned. Call once, after open. */
typedef int (*StateRecordHandler)(uint8_t type, const void *payload, size_t size, void *userdata);
int state_dir_replay(StateDir *d, StateRecordHandler handler, void *userdata);
/* Journals a record: a put (payload) or a deletion, whose meaning is the daemon's. Durable at the
 * next commit. */
int state_dir_append(StateDir *d, uint8_t type, const void *payload, size_t size);

/* Fields of the daemons' records. A text is a length byte and 1 to 255 bytes without NUL; a value
 * is two length bytes (little endian) and 1 to 65535 bytes, and ends the record. The writers append
 * at *off to a buffer the caller sized (-E2BIG when the field does not fit its form); the readers
 * advance *off and return -EBADMSG for anything malformed. */
#define STATE_TEXT_SIZE_MAX(n)  ((size_t) (n) * (1 + UINT8_MAX))
#define STATE_VALUE_SIZE_MAX(n) (2 + (size_t) (n))
int state_record_put_text(uint8_t *buf, size_t *off, const char *s);
int state_record_put_value(uint8_t *buf, size_t *off, const void *data, size_t size);
int state_record_get_text(const uint8_t *p, size_t n, size_t *off, char **ret);
int state_record_get_value(const uint8_t *p, size_t n, size_t *off, const uint8_t **ret, size_t *ret_size);

/* At a checkpoint the snapshot is rebuilt from what the writer adds with state_dir_snapshot_add()
 * (the records live at that moment). */
typedef int (*StateSnapshotWriter)(StateDir *d, void *userdata);
void state_dir_set_snapshot_writer(StateDir *d, StateSnapshotWriter writer, void *userdata);
int state_dir_snapshot_add(StateDir *d, uint8_t type, const void *payload, size_t size);
int state_dir_checkpoint(StateDir *d);
/* Seconds between checkpoints while there are changes; 0 disables the timer. */
int state_dir_set_checkpoint_interval(StateDir *d, unsigned sec);

/* Called once when writing fails: nothing can be recorded, so the node must stop. */
typedef void (*StateFailed)(StateDir *d, int error, void *userdata);
void state_dir_set_failure_callback(StateDir *d, StateFailed callback, void *userdata);
/* Writes the changes recorded so far to the journal: called before anything that depends on them
 * leaves the node. */
int state_dir_flush(StateDir *d);
/* The same for callbacks that pass a StateDir as a void pointer. */
int state_dir_flush_callback(void *userdata);
/* Writes and syncs the journal now (otherwise done within 200 ms of a change). */
int state_dir_sync(StateDir *d);
/* Waits until the file work asked for so far (block files, syncs, a checkpoint) is done. */
int state_dir_wait(StateDir *d);
/* Calls back on the loop once the file work asked for so far is done: a PSRD block added before
 * then has its file, which survives the process (at once when d is NULL or has no I/O thread). */
typedef void (*StateWritten)(void *userdata);
int state_dir_call_when_written(StateDir *d, StateWritten callback, void *userdata);
/* Whether whole blocks of a pool of peer were burned at load, because the system went down before
 * their use was synced: the peer does not know, so the link may need fresh PSRD. */
bool state_dir_peer_burned(const StateDir *d, const char *peer);

/* What a read-only open found, for dskectl. */
typedef struct StatePoolInfo {
        char peer[64];
        PoolOwner owner;
        PoolStats stats;
} StatePoolInfo;
int state_dir_list_pools(const StateDir *d, StatePoolInfo **ret, size_t *ret_n);
size_t state_dir_n_records(const StateDir *d);
