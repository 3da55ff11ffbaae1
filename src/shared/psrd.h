/* SPDX-License-Identifier: MIT */
#pragma once

/* Pre-shared random data (PROTOCOL.md §3): blocks, pools and allocations.
 *
 * A Block is one piece of PSRD as the hub issued it. A Pool is the ordered list of blocks one side
 * of a peer link owns (it allocates) or mirrors (it takes what the owner names). An Allocation is
 * a list of fragments (block UUID, start, size) plus, once allocated or taken, the key material
 * they name, concatenated in fragment order.
 *
 * Used bytes are zeroed in the block at once; the allocation keeps the only copy until it is freed
 * (and wiped) or given back. Every byte range that changes state is reported through the pool's
 * PoolObserver, so a persistence layer can record it before the bytes leave the process. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "codec.h"
#include "macro.h"

/* Limits that protect parsers and pools from hostile metadata. */
#define PSRD_FRAGMENTS_MAX  64u
#define PSRD_BLOCK_SIZE_MAX (64u * 1024u * 1024u)

typedef enum PoolOwner {
        POOL_OWNER_LOCAL, /* this node allocates from it (it sends with it) */
        POOL_OWNER_PEER,  /* the peer allocates; this node takes what the peer names */
        _POOL_OWNER_MAX,
        _POOL_OWNER_INVALID = -EINVAL,
} PoolOwner;

const char *pool_owner_to_string(PoolOwner o);
PoolOwner pool_owner_from_string(const char *s);

typedef struct Block {
        Uuid uuid;
        size_t size;
        uint8_t *data; /* size bytes; used bytes are zero */
        uint8_t *used; /* bitmap, bit i (byte i / 8, bit i % 8) set when byte i is used */
        size_t n_used;
        size_t first_unused; /* every byte below this index is used: where allocation looks first */
        void *userdata;      /* for the persistence layer */
} Block;

/* Creates a block from size bytes of data (copied; the caller wipes its copy).
 * 0 < size <= PSRD_BLOCK_SIZE_MAX, else -EINVAL. */
int block_new(const Uuid *uuid, const uint8_t *data, size_t size, Block **ret);
/* Creates a block of size fresh random bytes with a random UUID. */
int block_new_random(size_t size, Block **ret);
Block *block_free(Block *b);
DEFINE_TRIVIAL_CLEANUP_FUNC(Block *, block_free);
bool block_is_used(const Block *b, size_t i);
/* Whether any byte in [start, start+size) is used; the range must lie within the block. */
bool block_range_any_used(const Block *b, size_t start, size_t size);
/* Marks the unused bytes of [start, start+size) used and destroys them, without an allocation and
 * without telling any observer: for state restored from storage. Returns how many bytes changed,
 * or -ERANGE when the range does not lie within the block. */
int block_burn(Block *b, size_t start, size_t size);

typedef struct Fragment {
        Uuid block_uuid;
        size_t start;
        size_t size;
} Fragment;

typedef struct Allocation {
        Fragment *fragments;
        size_t n_fragments;
        size_t size;   /* sum of fragment sizes */
        uint8_t *data; /* size bytes of key material, or NULL for metadata only (parsed, not taken) */
} Allocation;

/* An empty, metadata-only allocation, or NULL when out of memory. */
Allocation *allocation_new(void);
Allocation *allocation_free(Allocation *a); /* wipes data */
DEFINE_TRIVIAL_CLEANUP_FUNC(Allocation *, allocation_free);
/* Appends a fragment to a metadata-only allocation. Returns 0, -EINVAL (size 0, or a->data is
 * set), -ERANGE (start + size beyond PSRD_BLOCK_SIZE_MAX), -E2BIG (already PSRD_FRAGMENTS_MAX
 * fragments), -ENOMEM. */
int allocation_add_fragment(Allocation *a, const Uuid *uuid, size_t start, size_t size);
/* Whether two fragments of a name a common byte of the same block. Key material must never be
 * built from a byte twice, so a receiver checks this on metadata before it touches any PSRD
 * (pool_take() does so itself; the MAC allocation is checked earlier, while parsing). */
bool allocation_has_overlap(const Allocation *a);
/* Whether a and b name the same fragments in the same order (the data is not compared). */
bool allocation_fragments_equal(const Allocation *a, const Allocation *b);

typedef struct PoolStats {
        size_t n_blocks;
        uint64_t total_bytes;
        uint64_t used_bytes;
        uint64_t available_bytes;
} PoolStats;

typedef enum PsrdChange {
        PSRD_CHANGE_BLOCK_ADDED,   /* block appended; start=0, size=block size */
        PSRD_CHANGE_MARKED_USED,   /* [start, start+size) became used */
        PSRD_CHANGE_GIVEN_BACK,    /* [start, start+size) became unused again */
        PSRD_CHANGE_BLOCK_DROPPED, /* block removed from the pool, about to be freed */
} PsrdChange;

typedef struct Pool Pool;

/* Called for every change, before the operation returns, after the block reflects it. A negative
 * return from a PSRD_CHANGE_MARKED_USED or PSRD_CHANGE_BLOCK_ADDED notification makes the operation
 * fail and be undone (the bytes were not recorded, so they must not be used): ranges of the same
 * operation already reported as used are then reported as PSRD_CHANGE_GIVEN_BACK, the refused one is
 * not. Allocations and takes report one PSRD_CHANGE_MARKED_USED per fragment. Errors from the other
 * notifications are ignored. */
typedef int (*PoolObserver)(Pool *p, PsrdChange change, const Block *b, size_t start, size_t size,
                            void *userdata);

struct Pool {
        char *name; /* the peer's name, for messages */
        PoolOwner owner;
        Block **blocks; /* in arrival order */
        size_t n_blocks;
        PoolObserver observer;
        void *observer_userdata;
};

int pool_new(const char *name, PoolOwner owner, Pool **ret);
Pool *pool_free(Pool *p); /* frees and wipes every block */
DEFINE_TRIVIAL_CLEANUP_FUNC(Pool *, pool_free);
void pool_set_observer(Pool *p, PoolObserver observer, void *userdata);

/* Appends a block, taking ownership on success. -EEXIST when a block with that UUID is present. */
int pool_add_block(Pool *p, Block *b);
Block *pool_find_block(const Pool *p, const Uuid *uuid);
void pool_get_stats(const Pool *p, PoolStats *ret);
uint64_t pool_available(const Pool *p);

/* The owner allocates n > 0 bytes, first-fit in block order from the lowest unused index, as
 * PROTOCOL.md §3.3. Nothing is consumed on failure:
 *   -EINVAL  n == 0
 *   -ENOSPC  fewer than n bytes available
 *   -E2BIG   the bytes lie in more than PSRD_FRAGMENTS_MAX gaps (a receiver would refuse them)
 * and -ENOMEM, or an observer's error. */
int pool_allocate(Pool *p, size_t n, Allocation **ret);

/* The receiver takes the bytes a peer named. a carries fragments only; on success a->data is set.
 * All or nothing: every fragment is checked before any byte is marked, and on failure nothing is
 * marked used. *ret_bad (if given) is set on failure to the index of the failing fragment, or to
 * a->n_fragments when the allocation as a whole is wrong (empty, or not expected_size). If
 * expected_size is not 0, a->size must equal it.
 *   -EINVAL   a->data is already set (taken twice)
 *   -EBADMSG  empty allocation, zero-size fragment, a fragment overlapping an earlier one, or a->size
 *             different from the sum of the fragments or from expected_size
 *   -ENOENT   no block with that UUID in this pool        (InvalidBlockUUID)
 *   -ERANGE   start/size outside the block                 (InvalidPSRDIndex)
 *   -EALREADY some byte already used                       (PSRDDataAlreadyUsed)
 * and -ENOMEM, or an observer's error. Fragments are checked in order, each for size 0, its block,
 * its range, overlap with earlier fragments and used bytes, so the error names the first problem;
 * the total size is checked last. */
int pool_take(Pool *p, Allocation *a, size_t expected_size, size_t *ret_bad);

/* Returns the bytes of an allocated or taken allocation to the pool (their original values come
 * back and they are unused again). Blocks dropped in the meantime are skipped. a->data is wiped
 * and freed; the fragments stay. */
void pool_give_back(Pool *p, Allocation *a);

/* Removes and frees the blocks whose every byte is used. Returns how many were dropped. */
size_t pool_drop_used_blocks(Pool *p);
