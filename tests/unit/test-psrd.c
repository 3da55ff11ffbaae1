/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "json-util.h"
#include "psrd-metadata.h"
#include "psrd.h"
#include "secret.h"

/* A deterministic generator, so that a failing run can be repeated (DSKE_TEST_SEED=...). */
static uint64_t rng_state;

static uint64_t rng_next(void) {
        uint64_t z = (rng_state += UINT64_C(0x9e3779b97f4a7c15));
        z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
        z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
        return z ^ (z >> 31);
}

/* Uniform enough in [lo, hi]. */
static size_t rng_range(size_t lo, size_t hi) {
        return lo + (size_t) (rng_next() % (hi - lo + 1));
}

static void rng_seed(void) {
        const char *e = getenv("DSKE_TEST_SEED");

        rng_state = e ? strtoull(e, NULL, 0) : UINT64_C(0x5eed);
        print_message("seed %#llx\n", (unsigned long long) rng_state);
}

static void fill_pattern(uint8_t *p, size_t n, uint8_t salt) {
        for (size_t i = 0; i < n; i++)
                p[i] = (uint8_t) (i * 7 + salt + 1) | 1; /* never 0, so zeroing shows */
}

static Block *block_new_pattern(const char *uuid, size_t size, uint8_t salt) {
        _cleanup_free_ uint8_t *data = malloc(size);
        Block *b = NULL;
        Uuid u;

        assert_non_null(data);
        fill_pattern(data, size, salt);
        assert_int_equal(uuid_from_string(uuid, &u), 0);
        assert_int_equal(block_new(&u, data, size, &b), 0);
        return b;
}

static Pool *pool_new_with(PoolOwner owner, const size_t *sizes, size_t n) {
        static const char *const uuids[] = {
                "00000000-0000-4000-8000-000000000001",
                "00000000-0000-4000-8000-000000000002",
                "00000000-0000-4000-8000-000000000003",
                "00000000-0000-4000-8000-000000000004",
        };
        Pool *p = NULL;

        assert_true(n <= ELEMENTSOF(uuids));
        assert_int_equal(pool_new("hank", owner, &p), 0);
        for (size_t i = 0; i < n; i++)
                assert_int_equal(pool_add_block(p, block_new_pattern(uuids[i], sizes[i], (uint8_t) i)), 0);
        return p;
}

static void assert_fragment(const Fragment *f, const Block *b, size_t start, size_t size) {
        assert_true(uuid_equal(&f->block_uuid, &b->uuid));
        assert_int_equal(f->start, start);
        assert_int_equal(f->size, size);
}

/* All of a pool's state that allocation, take and give back change. */
typedef struct Snapshot {
        PoolStats stats;
        size_t n;
        uint8_t *data;
        uint8_t *used;
} Snapshot;

static void snapshot_take(const Pool *p, Snapshot *ret) {
        size_t k = 0;

        pool_get_stats(p, &ret->stats);
        ret->n = (size_t) ret->stats.total_bytes;
        ret->data = malloc(ret->n + 1);
        ret->used = malloc(ret->n + 1);
        assert_non_null(ret->data);
        assert_non_null(ret->used);
        for (size_t i = 0; i < p->n_blocks; i++)
                for (size_t j = 0; j < p->blocks[i]->size; j++, k++) {
                        ret->data[k] = p->blocks[i]->data[j];
                        ret->used[k] = block_is_used(p->blocks[i], j);
                }
}

static void snapshot_done(Snapshot *s) {
        free(s->data);
        free(s->used);
}

static void assert_pool_unchanged(const Pool *p, Snapshot *before) {
        Snapshot after;

        snapshot_take(p, &after);
        assert_int_equal(before->stats.n_blocks, after.stats.n_blocks);
        assert_int_equal(before->stats.total_bytes, after.stats.total_bytes);
        assert_int_equal(before->stats.used_bytes, after.stats.used_bytes);
        assert_int_equal(before->stats.available_bytes, after.stats.available_bytes);
        assert_memory_equal(before->data, after.data, before->n);
        assert_memory_equal(before->used, after.used, before->n);
        snapshot_done(&after);
        snapshot_done(before);
}

static void test_pool_owner_strings(void **state) {
        assert_string_equal(pool_owner_to_string(POOL_OWNER_LOCAL), "local");
        assert_string_equal(pool_owner_to_string(POOL_OWNER_PEER), "peer");
        assert_null(pool_owner_to_string(_POOL_OWNER_MAX));
        assert_null(pool_owner_to_string(_POOL_OWNER_INVALID));
        assert_int_equal(pool_owner_from_string("local"), POOL_OWNER_LOCAL);
        assert_int_equal(pool_owner_from_string("peer"), POOL_OWNER_PEER);
        assert_int_equal(pool_owner_from_string("Local"), -EINVAL);
        assert_int_equal(pool_owner_from_string("client"), -EINVAL);
        assert_int_equal(pool_owner_from_string(""), -EINVAL);
        assert_int_equal(pool_owner_from_string(NULL), -EINVAL);
}

static void test_block_new(void **state) {
        _cleanup_(block_freep) Block *b = NULL, *r1 = NULL, *r2 = NULL;
        uint8_t data[3] = {1, 2, 3};
        Uuid u = {};

        assert_int_equal(block_new(&u, data, 0, &b), -EINVAL);
        assert_int_equal(block_new(&u, data, (size_t) PSRD_BLOCK_SIZE_MAX + 1, &b), -EINVAL);
        assert_null(b);
        assert_int_equal(block_new(&u, data, sizeof(data), &b), 0);
        assert_int_equal(b->size, 3);
        assert_int_equal(b->n_used, 0);
        assert_memory_equal(b->data, data, 3);
        assert_false(block_is_used(b, 0));
        assert_false(block_is_used(b, 3));

        assert_int_equal(block_new_random(0, &r1), -EINVAL);
        assert_int_equal(block_new_random(1000, &r1), 0);
        assert_int_equal(block_new_random(1000, &r2), 0);
        assert_false(uuid_equal(&r1->uuid, &r2->uuid));
        assert_memory_not_equal(r1->data, r2->data, 1000);
}

static void test_block_bitmap(void **state) {
        _cleanup_(pool_freep) Pool *p = NULL;
        _cleanup_(allocation_freep) Allocation *a = NULL;
        const size_t sizes[] = {300};
        Block *b;

        p = pool_new_with(POOL_OWNER_PEER, sizes, 1);
        b = p->blocks[0];

        /* Mark [70, 205) used: partial bytes at both ends, whole bytes and a word between. */
        a = allocation_new();
        assert_non_null(a);
        assert_int_equal(allocation_add_fragment(a, &b->uuid, 70, 135), 0);
        assert_int_equal(pool_take(p, a, 135, NULL), 0);

        for (size_t i = 0; i < 300; i++)
                assert_int_equal(block_is_used(b, i), i >= 70 && i < 205);
        assert_int_equal(b->n_used, 135);

        assert_false(block_range_any_used(b, 0, 70));
        assert_true(block_range_any_used(b, 0, 71));
        assert_true(block_range_any_used(b, 204, 1));
        assert_false(block_range_any_used(b, 205, 95));
        assert_true(block_range_any_used(b, 0, 300));
        assert_true(block_range_any_used(b, 100, 8));
        /* Ranges outside the block are not "used": they are refused elsewhere. */
        assert_false(block_range_any_used(b, 299, 2));
        assert_false(block_range_any_used(b, SIZE_MAX, 2));
        assert_false(block_range_any_used(b, 80, 0));
}

/* PROTOCOL.md §3.3: fresh blocks of 5 and 10 bytes, allocating 8 gives [(B1,0,5),(B2,0,3)]. */
static void test_allocate_example(void **state) {
        _cleanup_(pool_freep) Pool *p = NULL;
        _cleanup_(allocation_freep) Allocation *a = NULL;
        const size_t sizes[] = {5, 10};
        uint8_t expected[8];
        PoolStats s;

        p = pool_new_with(POOL_OWNER_LOCAL, sizes, 2);
        memcpy(expected, p->blocks[0]->data, 5);
        memcpy(expected + 5, p->blocks[1]->data, 3);

        assert_int_equal(pool_allocate(p, 8, &a), 0);
        assert_int_equal(a->n_fragments, 2);
        assert_fragment(&a->fragments[0], p->blocks[0], 0, 5);
        assert_fragment(&a->fragments[1], p->blocks[1], 0, 3);
        assert_int_equal(a->size, 8);
        assert_memory_equal(a->data, expected, 8);

        /* The block keeps zeros where the bytes were. */
        for (size_t i = 0; i < 5; i++)
                assert_int_equal(p->blocks[0]->data[i], 0);
        for (size_t i = 0; i < 10; i++)
                assert_int_equal(p->blocks[1]->data[i] == 0, i < 3);

        pool_get_stats(p, &s);
        assert_int_equal(s.n_blocks, 2);
        assert_int_equal(s.total_bytes, 15);
        assert_int_equal(s.used_bytes, 8);
        assert_int_equal(s.available_bytes, 7);
        assert_int_equal(pool_available(p), 7);
}

static void test_allocate_holes(void **state) {
        _cleanup_(pool_freep) Pool *p = NULL;
        _cleanup_(allocation_freep) Allocation *a1 = NULL, *a2 = NULL, *a3 = NULL, *a4 = NULL, *a5 = NULL,
                                               *big = NULL;
        const size_t sizes[] = {100, 50};
        uint8_t orig[100];

        p = pool_new_with(POOL_OWNER_LOCAL, sizes, 2);
        memcpy(orig, p->blocks[0]->data, sizeof(orig));

        assert_int_equal(pool_allocate(p, 10, &a1), 0); /* [0, 10) */
        assert_int_equal(pool_allocate(p, 20, &a2), 0); /* [10, 30) */
        assert_int_equal(pool_allocate(p, 10, &a3), 0); /* [30, 40) */
        assert_int_equal(pool_allocate(p, 20, &a4), 0); /* [40, 60) */
        assert_int_equal(pool_allocate(p, 10, &a5), 0); /* [60, 70) */
        assert_fragment(&a4->fragments[0], p->blocks[0], 40, 20);

        /* Holes at [10, 30) and [40, 60). */
        pool_give_back(p, a2);
        pool_give_back(p, a4);
        assert_null(a2->data);
        assert_memory_equal(p->blocks[0]->data + 10, orig + 10, 20);
        assert_memory_equal(p->blocks[0]->data + 40, orig + 40, 20);
        assert_int_equal(pool_available(p), 150 - 30);

        /* 20 + 20 + the 30 at the end of block 1 + 5 of block 2. */
        assert_int_equal(pool_allocate(p, 75, &big), 0);
        assert_int_equal(big->n_fragments, 4);
        assert_fragment(&big->fragments[0], p->blocks[0], 10, 20);
        assert_fragment(&big->fragments[1], p->blocks[0], 40, 20);
        assert_fragment(&big->fragments[2], p->blocks[0], 70, 30);
        assert_fragment(&big->fragments[3], p->blocks[1], 0, 5);
        assert_memory_equal(big->data, orig + 10, 20);
        assert_memory_equal(big->data + 20, orig + 40, 20);
        assert_memory_equal(big->data + 40, orig + 70, 30);
        assert_int_equal(p->blocks[0]->n_used, 100);
}

static void test_allocate_out_of_psrd(void **state) {
        _cleanup_(pool_freep) Pool *p = NULL, *empty = NULL;
        _cleanup_(allocation_freep) Allocation *a = NULL, *b = NULL;
        const size_t sizes[] = {20, 20};
        Snapshot before;

        p = pool_new_with(POOL_OWNER_LOCAL, sizes, 2);
        assert_int_equal(pool_allocate(p, 15, &a), 0);

        snapshot_take(p, &before);
        assert_int_equal(pool_allocate(p, 26, &b), -ENOSPC);
        assert_null(b);
        assert_pool_unchanged(p, &before);

        snapshot_take(p, &before);
        assert_int_equal(pool_allocate(p, 0, &b), -EINVAL);
        assert_pool_unchanged(p, &before);

        /* Exactly what is left works. */
        assert_int_equal(pool_allocate(p, 25, &b), 0);
        assert_int_equal(pool_available(p), 0);

        assert_int_equal(pool_new("x", POOL_OWNER_LOCAL, &empty), 0);
        allocation_free(b);
        b = NULL;
        assert_int_equal(pool_allocate(empty, 1, &b), -ENOSPC);
        assert_null(b);
}

static void test_allocate_too_fragmented(void **state) {
        _cleanup_(pool_freep) Pool *p = NULL;
        _cleanup_(allocation_freep) Allocation *a = NULL;
        const size_t sizes[] = {400};
        Allocation *singles[200] = {};
        Snapshot before;

        p = pool_new_with(POOL_OWNER_LOCAL, sizes, 1);
        for (size_t i = 0; i < 200; i++)
                assert_int_equal(pool_allocate(p, 2, &singles[i]), 0);

        /* Every other 2-byte piece back: 100 holes of 2 bytes, nothing free at the end. */
        for (size_t i = 0; i < 200; i += 2)
                pool_give_back(p, singles[i]);
        assert_int_equal(pool_available(p), 200);

        /* 64 holes hold 128 bytes; one more byte needs a 65th fragment. */
        snapshot_take(p, &before);
        assert_int_equal(pool_allocate(p, 129, &a), -E2BIG);
        assert_null(a);
        assert_pool_unchanged(p, &before);

        assert_int_equal(pool_allocate(p, 128, &a), 0);
        assert_int_equal(a->n_fragments, PSRD_FRAGMENTS_MAX);

        for (size_t i = 0; i < 200; i++)
                allocation_free(singles[i]);
}

static void test_add_block(void **state) {
        _cleanup_(pool_freep) Pool *p = NULL;
        _cleanup_(block_freep) Block *dup = NULL;
        const size_t sizes[] = {10, 20};
        PoolStats s;

        p = pool_new_with(POOL_OWNER_PEER, sizes, 2);
        dup = block_new_pattern("00000000-0000-4000-8000-000000000002", 30, 9);
        assert_int_equal(pool_add_block(p, dup), -EEXIST);

        pool_get_stats(p, &s);
        assert_int_equal(s.n_blocks, 2);
        assert_int_equal(s.total_bytes, 30);
        assert_ptr_equal(pool_find_block(p, &dup->uuid), p->blocks[1]);
        assert_int_equal(p->blocks[1]->size, 20);
}

static void test_take_errors(void **state) {
        _cleanup_(pool_freep) Pool *p = NULL;
        _cleanup_(allocation_freep) Allocation *a = NULL;
        const size_t sizes[] = {40, 40};
        Snapshot before;
        size_t bad;
        Uuid u1, u2;

        p = pool_new_with(POOL_OWNER_PEER, sizes, 2);
        u1 = p->blocks[0]->uuid;
        u2 = p->blocks[1]->uuid;

        /* Empty. */
        a = allocation_new();
        assert_non_null(a);
        snapshot_take(p, &before);
        bad = 99;
        assert_int_equal(pool_take(p, a, 0, &bad), -EBADMSG);
        assert_int_equal(bad, 0);
        assert_pool_unchanged(p, &before);

        /* The size a MAC key must have, or any other expected size. */
        assert_int_equal(allocation_add_fragment(a, &u1, 0, 16), 0);
        assert_int_equal(allocation_add_fragment(a, &u2, 0, 15), 0);
        snapshot_take(p, &before);
        assert_int_equal(pool_take(p, a, 32, &bad), -EBADMSG);
        assert_int_equal(bad, 2);
        assert_null(a->data);
        assert_pool_unchanged(p, &before);

        /* A zero-size fragment, which allocation_add_fragment() would refuse, built by hand. */
        a->fragments[1].size = 0;
        a->size = 16;
        snapshot_take(p, &before);
        assert_int_equal(pool_take(p, a, 0, &bad), -EBADMSG);
        assert_int_equal(bad, 1);
        assert_pool_unchanged(p, &before);

        /* A size field that disagrees with the fragments. */
        a->fragments[1].size = 15;
        a->size = 32;
        snapshot_take(p, &before);
        assert_int_equal(pool_take(p, a, 0, &bad), -EBADMSG);
        assert_int_equal(bad, 2);
        assert_pool_unchanged(p, &before);

        /* Start near SIZE_MAX must not wrap around into the block. */
        a->fragments[1].start = SIZE_MAX - 5;
        a->fragments[1].size = 10;
        a->size = 26;
        snapshot_take(p, &before);
        assert_int_equal(pool_take(p, a, 0, &bad), -ERANGE);
        assert_int_equal(bad, 1);
        assert_pool_unchanged(p, &before);

        /* Size near SIZE_MAX likewise (and the total would overflow). */
        a->fragments[1].start = 5;
        a->fragments[1].size = SIZE_MAX;
        a->size = 15;
        snapshot_take(p, &before);
        assert_int_equal(pool_take(p, a, 0, &bad), -EBADMSG);
        assert_int_equal(bad, 1);
        assert_pool_unchanged(p, &before);

        /* Fragments of one allocation naming a byte twice, all of them unused. */
        a->fragments[1] = (Fragment){.block_uuid = u1, .start = 15, .size = 4};
        a->size = 20;
        assert_true(allocation_has_overlap(a));
        snapshot_take(p, &before);
        assert_int_equal(pool_take(p, a, 20, &bad), -EBADMSG);
        assert_int_equal(bad, 1);
        assert_pool_unchanged(p, &before);

        /* Same block, touching but not overlapping: fine; then taken twice. */
        a->fragments[1] = (Fragment){.block_uuid = u1, .start = 16, .size = 4};
        a->size = 20;
        assert_false(allocation_has_overlap(a));
        assert_int_equal(pool_take(p, a, 20, &bad), 0);
        assert_non_null(a->data);

        snapshot_take(p, &before);
        assert_int_equal(pool_take(p, a, 20, &bad), -EINVAL);
        assert_pool_unchanged(p, &before);

        a = allocation_free(a);
        a = allocation_new();
        assert_int_equal(allocation_add_fragment(a, &u2, 0, 4), 0);
        assert_int_equal(allocation_add_fragment(a, &u1, 19, 1), 0);
        snapshot_take(p, &before);
        assert_int_equal(pool_take(p, a, 0, &bad), -EALREADY);
        assert_int_equal(bad, 1);
        assert_pool_unchanged(p, &before);
}

static void test_overlap(void **state) {
        _cleanup_(allocation_freep) Allocation *a = allocation_new();
        Uuid u1 = {.bytes = {1}}, u2 = {.bytes = {2}};

        assert_non_null(a);
        assert_false(allocation_has_overlap(a));
        assert_int_equal(allocation_add_fragment(a, &u1, 10, 10), 0);
        assert_false(allocation_has_overlap(a));
        assert_int_equal(allocation_add_fragment(a, &u2, 10, 10), 0); /* other block */
        assert_int_equal(allocation_add_fragment(a, &u1, 20, 5), 0);  /* adjacent */
        assert_int_equal(allocation_add_fragment(a, &u1, 5, 5), 0);   /* adjacent */
        assert_false(allocation_has_overlap(a));
        assert_int_equal(allocation_add_fragment(a, &u1, 19, 1), 0); /* inside the first */
        assert_true(allocation_has_overlap(a));

        a->n_fragments = 4;
        a->fragments[3].start = 0;
        a->fragments[3].size = 30; /* covers all others of u1 */
        assert_true(allocation_has_overlap(a));
        a->fragments[3].start = SIZE_MAX - 1;
        a->fragments[3].size = 10; /* wraps: counts as reaching the end */
        assert_false(allocation_has_overlap(a));
        a->fragments[0].start = SIZE_MAX - 3;
        assert_true(allocation_has_overlap(a));
}

static void test_give_back(void **state) {
        _cleanup_(pool_freep) Pool *owner = NULL, *receiver = NULL;
        _cleanup_(allocation_freep) Allocation *a = NULL, *b = NULL;
        _cleanup_free_ char *s = NULL;
        const size_t sizes[] = {30, 30};
        Snapshot fresh;
        uint8_t key[40];

        owner = pool_new_with(POOL_OWNER_LOCAL, sizes, 2);
        receiver = pool_new_with(POOL_OWNER_PEER, sizes, 2);
        snapshot_take(owner, &fresh);

        assert_int_equal(pool_allocate(owner, 40, &a), 0);
        memcpy(key, a->data, sizeof(key));
        assert_int_equal(allocation_to_string(a, &s), 0);
        assert_int_equal(allocation_from_string(s, strlen(s), &b), 0);
        assert_int_equal(pool_take(receiver, b, 40, NULL), 0);
        assert_memory_equal(b->data, key, sizeof(key));

        /* Both sides give back: both pools are as new, the allocations keep their fragments. */
        pool_give_back(owner, a);
        pool_give_back(receiver, b);
        assert_null(a->data);
        assert_null(b->data);
        assert_int_equal(a->n_fragments, 2);
        assert_pool_unchanged(owner, &fresh);
        {
                Snapshot o, r;

                /* Both pools were built from the same bytes. */
                snapshot_take(owner, &o);
                snapshot_take(receiver, &r);
                assert_int_equal(r.stats.used_bytes, 0);
                assert_memory_equal(o.data, r.data, o.n);
                assert_memory_equal(o.used, r.used, o.n);
                snapshot_done(&o);
                snapshot_done(&r);
        }

        /* Giving back twice, or what has no data, changes nothing. */
        snapshot_take(owner, &fresh);
        pool_give_back(owner, a);
        assert_pool_unchanged(owner, &fresh);

        /* The same bytes again: the receiver takes them anew. */
        assert_int_equal(pool_take(receiver, b, 40, NULL), 0);
        assert_memory_equal(b->data, key, sizeof(key));

        /* A block dropped in the meantime is skipped; the rest comes back. */
        assert_int_equal(pool_drop_used_blocks(receiver), 1);
        assert_int_equal(receiver->n_blocks, 1);
        pool_give_back(receiver, b);
        assert_int_equal(pool_available(receiver), 30);
        assert_memory_equal(receiver->blocks[0]->data, key + 30, 10);
}

static void test_drop_used_blocks(void **state) {
        _cleanup_(pool_freep) Pool *p = NULL;
        _cleanup_(allocation_freep) Allocation *a = NULL, *b = NULL;
        const size_t sizes[] = {10, 20, 10, 5};
        Uuid kept;

        p = pool_new_with(POOL_OWNER_LOCAL, sizes, 4);
        assert_int_equal(pool_drop_used_blocks(p), 0);

        assert_int_equal(pool_allocate(p, 25, &a), 0);
        kept = p->blocks[1]->uuid;
        assert_int_equal(pool_drop_used_blocks(p), 1);
        assert_int_equal(p->n_blocks, 3);
        assert_true(uuid_equal(&p->blocks[0]->uuid, &kept));

        /* Fully used blocks anywhere in the list go; order is kept. */
        assert_int_equal(pool_allocate(p, 15, &b), 0);
        assert_int_equal(p->blocks[1]->n_used, 10);
        b = allocation_free(b);
        assert_int_equal(pool_drop_used_blocks(p), 2);
        assert_int_equal(p->n_blocks, 1);
        assert_int_equal(p->blocks[0]->size, 5);
        assert_int_equal(pool_available(p), 5);
}

typedef struct Event {
        PsrdChange change;
        Uuid uuid;
        size_t start, size;
} Event;

typedef struct Recorder {
        Event events[64];
        size_t n_events;
        int fail_change; /* fail this change ... */
        size_t fail_at;  /* ... when it is the n-th event, counting from 0 */
} Recorder;

static int recorder_observe(Pool *p, PsrdChange change, const Block *b, size_t start, size_t size,
                            void *userdata) {
        Recorder *r = userdata;
        size_t n = r->n_events;

        assert_true(n < ELEMENTSOF(r->events));
        r->events[r->n_events++] = (Event){.change = change, .uuid = b->uuid, .start = start, .size = size};

        /* The block already shows the change. */
        if (change == PSRD_CHANGE_MARKED_USED)
                for (size_t i = start; i < start + size; i++) {
                        assert_true(block_is_used(b, i));
                        assert_int_equal(b->data[i], 0);
                }
        if (change == PSRD_CHANGE_GIVEN_BACK)
                for (size_t i = start; i < start + size; i++)
                        assert_false(block_is_used(b, i));

        return (int) change == r->fail_change && n == r->fail_at ? -EIO : 0;
}

static void assert_event(const Recorder *r, size_t i, PsrdChange change, const Block *b, size_t start,
                         size_t size) {
        assert_true(i < r->n_events);
        assert_int_equal(r->events[i].change, change);
        assert_true(uuid_equal(&r->events[i].uuid, &b->uuid));
        assert_int_equal(r->events[i].start, start);
        assert_int_equal(r->events[i].size, size);
}

static void test_observer(void **state) {
        _cleanup_(pool_freep) Pool *p = NULL;
        _cleanup_(allocation_freep) Allocation *a = NULL, *b = NULL;
        Recorder r = {.fail_change = -1};
        Block *b1 = block_new_pattern("00000000-0000-4000-8000-000000000001", 10, 1);
        Block *b2 = block_new_pattern("00000000-0000-4000-8000-000000000002", 10, 2);
        Uuid u1 = b1->uuid;

        assert_int_equal(pool_new("carol", POOL_OWNER_LOCAL, &p), 0);
        pool_set_observer(p, recorder_observe, &r);

        assert_int_equal(pool_add_block(p, b1), 0);
        assert_int_equal(pool_add_block(p, b2), 0);
        assert_event(&r, 0, PSRD_CHANGE_BLOCK_ADDED, b1, 0, 10);
        assert_event(&r, 1, PSRD_CHANGE_BLOCK_ADDED, b2, 0, 10);

        assert_int_equal(pool_allocate(p, 4, &a), 0);
        assert_event(&r, 2, PSRD_CHANGE_MARKED_USED, b1, 0, 4);
        assert_int_equal(pool_allocate(p, 10, &b), 0);
        assert_event(&r, 3, PSRD_CHANGE_MARKED_USED, b1, 4, 6);
        assert_event(&r, 4, PSRD_CHANGE_MARKED_USED, b2, 0, 4);

        pool_give_back(p, a);
        assert_event(&r, 5, PSRD_CHANGE_GIVEN_BACK, b1, 0, 4);
        assert_int_equal(r.n_events, 6);

        /* Nothing changes, nothing is reported. */
        pool_give_back(p, a);
        assert_int_equal(r.n_events, 6);

        a = allocation_free(a);
        assert_int_equal(pool_allocate(p, 4, &a), 0);
        assert_event(&r, 6, PSRD_CHANGE_MARKED_USED, b1, 0, 4);
        /* Checked before the drop frees b1. */
        assert_int_equal(r.n_events, 7);
        assert_int_equal(pool_drop_used_blocks(p), 1);
        assert_int_equal(r.n_events, 8);
        assert_int_equal(r.events[7].change, PSRD_CHANGE_BLOCK_DROPPED);
        assert_true(uuid_equal(&r.events[7].uuid, &u1));
        assert_int_equal(r.events[7].start, 0);
        assert_int_equal(r.events[7].size, 10);
        assert_ptr_equal(p->blocks[0], b2);
}

static void test_observer_failure(void **state) {
        _cleanup_(pool_freep) Pool *owner = NULL, *receiver = NULL;
        _cleanup_(allocation_freep) Allocation *hole = NULL, *a = NULL, *t = NULL;
        _cleanup_(block_freep) Block *refused = NULL;
        const size_t sizes[] = {10, 10, 10};
        Recorder r = {.fail_change = PSRD_CHANGE_MARKED_USED, .fail_at = 1};
        Snapshot before;

        owner = pool_new_with(POOL_OWNER_LOCAL, sizes, 3);
        receiver = pool_new_with(POOL_OWNER_PEER, sizes, 3);

        /* A hole so that the next allocation has four fragments: [0,3) [4,10) of the first block. */
        assert_int_equal(pool_allocate(owner, 3, &hole), 0);
        assert_int_equal(pool_allocate(owner, 1, &a), 0);
        pool_give_back(owner, hole);
        a = allocation_free(a);

        /* The second report fails: all of it is undone, the first reported back. */
        pool_set_observer(owner, recorder_observe, &r);
        snapshot_take(owner, &before);
        assert_int_equal(pool_allocate(owner, 20, &a), -EIO);
        assert_null(a);
        assert_pool_unchanged(owner, &before);
        assert_int_equal(r.n_events, 3);
        assert_event(&r, 0, PSRD_CHANGE_MARKED_USED, owner->blocks[0], 0, 3);
        assert_event(&r, 1, PSRD_CHANGE_MARKED_USED, owner->blocks[0], 4, 6);
        assert_event(&r, 2, PSRD_CHANGE_GIVEN_BACK, owner->blocks[0], 0, 3);

        /* Without failures the same allocation works. */
        r = (Recorder){.fail_change = -1};
        assert_int_equal(pool_allocate(owner, 20, &a), 0);
        assert_int_equal(a->n_fragments, 4);
        assert_int_equal(r.n_events, 4);

        /* The receiver: the first report fails. */
        t = allocation_new();
        for (size_t i = 0; i < a->n_fragments; i++)
                assert_int_equal(allocation_add_fragment(t, &a->fragments[i].block_uuid,
                                                         a->fragments[i].start, a->fragments[i].size),
                                 0);
        r = (Recorder){.fail_change = PSRD_CHANGE_MARKED_USED, .fail_at = 0};
        pool_set_observer(receiver, recorder_observe, &r);
        snapshot_take(receiver, &before);
        assert_int_equal(pool_take(receiver, t, 20, NULL), -EIO);
        assert_null(t->data);
        assert_pool_unchanged(receiver, &before);
        assert_int_equal(r.n_events, 1);

        /* The third one fails. */
        r = (Recorder){.fail_change = PSRD_CHANGE_MARKED_USED, .fail_at = 2};
        snapshot_take(receiver, &before);
        assert_int_equal(pool_take(receiver, t, 20, NULL), -EIO);
        assert_pool_unchanged(receiver, &before);
        assert_int_equal(r.n_events, 5);
        assert_event(&r, 3, PSRD_CHANGE_GIVEN_BACK, receiver->blocks[0], 0, 3);
        assert_event(&r, 4, PSRD_CHANGE_GIVEN_BACK, receiver->blocks[0], 4, 6);

        r = (Recorder){.fail_change = -1};
        assert_int_equal(pool_take(receiver, t, 20, NULL), 0);
        assert_memory_equal(t->data, a->data, 20);

        /* A block the observer could not record is not added, and stays the caller's. */
        r = (Recorder){.fail_change = PSRD_CHANGE_BLOCK_ADDED, .fail_at = 0};
        refused = block_new_pattern("00000000-0000-4000-8000-0000000000ff", 10, 7);
        snapshot_take(receiver, &before);
        assert_int_equal(pool_add_block(receiver, refused), -EIO);
        assert_pool_unchanged(receiver, &before);
        assert_null(pool_find_block(receiver, &refused->uuid));
}

static void test_large_block(void **state) {
        _cleanup_(pool_freep) Pool *p = NULL;
        _cleanup_(block_freep) Block *b = NULL;
        size_t n = 0;

        /* The largest block, used up in small allocations: each must find its place quickly. */
        assert_int_equal(block_new_random(PSRD_BLOCK_SIZE_MAX, &b), 0);
        assert_int_equal(pool_new("hugo", POOL_OWNER_LOCAL, &p), 0);
        assert_int_equal(pool_add_block(p, b), 0);
        b = NULL;

        for (;;) {
                _cleanup_(allocation_freep) Allocation *a = NULL;
                int r = pool_allocate(p, 4096 + 32, &a);

                if (r == -ENOSPC)
                        break;
                assert_int_equal(r, 0);
                assert_int_equal(a->n_fragments, 1);
                assert_int_equal(a->fragments[0].start, n);
                n += a->size;
        }
        assert_int_equal(pool_available(p), PSRD_BLOCK_SIZE_MAX - n);
        assert_true(pool_available(p) < 4096 + 32);
}

/* The randomised test keeps its own view of every block, and a second one built only from what the
 * observer reports, and checks both pools against them. */

#define RANDOM_BLOCKS_MAX 512

typedef struct ModelBlock {
        Uuid uuid;
        size_t size;
        uint8_t *orig;
        bool *used;
        size_t n_used;
        bool dropped;
} ModelBlock;

typedef struct Shadow {
        Uuid uuid[RANDOM_BLOCKS_MAX];
        bool *used[RANDOM_BLOCKS_MAX];
        size_t size[RANDOM_BLOCKS_MAX];
        size_t n;
} Shadow;

static bool *shadow_find(Shadow *s, const Uuid *u, size_t *ret_size) {
        for (size_t i = 0; i < s->n; i++)
                if (s->used[i] && uuid_equal(&s->uuid[i], u)) {
                        *ret_size = s->size[i];
                        return s->used[i];
                }
        return NULL;
}

static int shadow_observe(Pool *p, PsrdChange change, const Block *b, size_t start, size_t size,
                          void *userdata) {
        Shadow *s = userdata;
        size_t bsize = 0;
        bool *used = shadow_find(s, &b->uuid, &bsize);

        switch (change) {
        case PSRD_CHANGE_BLOCK_ADDED:
                assert_null(used);
                assert_true(s->n < RANDOM_BLOCKS_MAX);
                s->uuid[s->n] = b->uuid;
                s->size[s->n] = b->size;
                s->used[s->n] = calloc(b->size, sizeof(bool));
                assert_non_null(s->used[s->n]);
                s->n++;
                break;
        case PSRD_CHANGE_MARKED_USED:
                assert_non_null(used);
                for (size_t i = start; i < start + size; i++) {
                        assert_false(used[i]);
                        used[i] = true;
                }
                break;
        case PSRD_CHANGE_GIVEN_BACK:
                assert_non_null(used);
                for (size_t i = start; i < start + size; i++)
                        used[i] = false;
                break;
        case PSRD_CHANGE_BLOCK_DROPPED:
                assert_non_null(used);
                for (size_t i = 0; i < bsize; i++)
                        assert_true(used[i]);
                for (size_t i = 0; i < s->n; i++)
                        if (s->used[i] == used) {
                                free(s->used[i]);
                                s->used[i] = NULL;
                        }
                break;
        }
        return 0;
}

static void shadow_done(Shadow *s) {
        for (size_t i = 0; i < s->n; i++)
                free(s->used[i]);
}

typedef struct Model {
        ModelBlock blocks[RANDOM_BLOCKS_MAX];
        size_t n_blocks;
        uint64_t available;
} Model;

static void model_mark(Model *m, ModelBlock *mb, size_t i, bool used) {
        assert_int_not_equal(mb->used[i], used);
        mb->used[i] = used;
        if (used) {
                mb->n_used++;
                m->available--;
        } else {
                mb->n_used--;
                m->available++;
        }
}

/* PROTOCOL.md §3.3 taken literally, one byte at a time. Returns the number of fragments, which
 * may exceed max (then the plan is cut short). */
static size_t model_plan(const Model *m, size_t n, Fragment *plan, size_t max) {
        size_t k = 0;

        for (size_t i = 0; i < m->n_blocks && n > 0; i++) {
                const ModelBlock *b = &m->blocks[i];
                size_t pos = 0;

                if (b->dropped || b->n_used == b->size)
                        continue;

                while (n > 0) {
                        size_t s, e, len;

                        for (s = pos; s < b->size && b->used[s]; s++)
                                ;
                        if (s == b->size)
                                break;
                        for (e = s; e < b->size && !b->used[e]; e++)
                                ;
                        len = MIN(e - s, n);
                        if (k < max)
                                plan[k] = (Fragment){.block_uuid = b->uuid, .start = s, .size = len};
                        k++;
                        n -= len;
                        pos = s + len;
                }
        }
        return k;
}

static ModelBlock *model_find(Model *m, const Uuid *u) {
        for (size_t i = 0; i < m->n_blocks; i++)
                if (uuid_equal(&m->blocks[i].uuid, u))
                        return &m->blocks[i];
        return NULL;
}

static void model_add_block(Model *m, Pool *owner, Pool *receiver, size_t size) {
        ModelBlock *mb;
        Block *b = NULL, *c = NULL;

        assert_true(m->n_blocks < RANDOM_BLOCKS_MAX);
        mb = &m->blocks[m->n_blocks++];
        assert_int_equal(block_new_random(size, &b), 0);
        assert_int_equal(block_new(&b->uuid, b->data, size, &c), 0);

        *mb = (ModelBlock){.uuid = b->uuid, .size = size};
        mb->orig = malloc(size);
        mb->used = calloc(size, sizeof(bool));
        assert_non_null(mb->orig);
        assert_non_null(mb->used);
        memcpy(mb->orig, b->data, size);
        m->available += size;

        assert_int_equal(pool_add_block(owner, b), 0);
        assert_int_equal(pool_add_block(receiver, c), 0);
}

static void model_done(Model *m) {
        for (size_t i = 0; i < m->n_blocks; i++) {
                free(m->blocks[i].orig);
                free(m->blocks[i].used);
        }
}

/* Both pools hold the same blocks in the same state, which is the model's and the shadow's. */
static void model_check(Model *m, const Pool *owner, const Pool *receiver, Shadow *so, Shadow *sr) {
        size_t k = 0;

        assert_int_equal(owner->n_blocks, receiver->n_blocks);
        for (size_t i = 0; i < m->n_blocks; i++) {
                const ModelBlock *mb = &m->blocks[i];
                const Block *bo, *br;
                const bool *uo, *ur;
                size_t n_used = 0, size;

                if (mb->dropped) {
                        assert_null(pool_find_block(owner, &mb->uuid));
                        assert_null(pool_find_block(receiver, &mb->uuid));
                        continue;
                }

                bo = owner->blocks[k];
                br = receiver->blocks[k];
                k++;
                assert_true(uuid_equal(&bo->uuid, &mb->uuid));
                assert_true(uuid_equal(&br->uuid, &mb->uuid));
                uo = shadow_find(so, &mb->uuid, &size);
                ur = shadow_find(sr, &mb->uuid, &size);
                assert_non_null(uo);
                assert_non_null(ur);

                for (size_t j = 0; j < mb->size; j++) {
                        assert_int_equal(block_is_used(bo, j), mb->used[j]);
                        assert_int_equal(block_is_used(br, j), mb->used[j]);
                        assert_int_equal(uo[j], mb->used[j]);
                        assert_int_equal(ur[j], mb->used[j]);
                        assert_int_equal(bo->data[j], mb->used[j] ? 0 : mb->orig[j]);
                        assert_int_equal(br->data[j], bo->data[j]);
                        n_used += mb->used[j];
                }
                assert_int_equal(mb->n_used, n_used);
                assert_int_equal(bo->n_used, n_used);
                assert_int_equal(br->n_used, n_used);
        }
        assert_int_equal(k, owner->n_blocks);
        assert_int_equal(pool_available(owner), m->available);
}

/* The receiver's copy of an allocation, through one of the two wire forms. */
static Allocation *wire_copy(const Allocation *a, bool json) {
        Allocation *b = NULL;

        if (json) {
                _cleanup_json_ json_object *o = NULL, *parsed = NULL;

                o = allocation_to_json(a);
                assert_non_null(o);
                parsed = json_tokener_parse(json_object_to_json_string_ext(o, JSON_C_TO_STRING_DSKE));
                assert_non_null(parsed);
                assert_int_equal(allocation_from_json(parsed, &b), 0);
        } else {
                _cleanup_free_ char *s = NULL;

                assert_int_equal(allocation_to_string(a, &s), 0);
                assert_int_equal(allocation_from_string(s, strlen(s), &b), 0);
        }

        assert_true(allocation_fragments_equal(a, b));
        assert_null(b->data);
        assert_int_equal(b->size, a->size);
        return b;
}

typedef struct Live {
        Allocation *sent, *received;
} Live;

static void test_randomised(void **state) {
        _cleanup_(pool_freep) Pool *owner = NULL, *receiver = NULL;
        Shadow so = {}, sr = {};
        Model m = {};
        Live live[256];
        size_t n_live = 0, n_allocated = 0, n_bytes = 0, n_given_back = 0, n_refused = 0;

        rng_seed();
        assert_int_equal(pool_new("hank", POOL_OWNER_LOCAL, &owner), 0);
        assert_int_equal(pool_new("carol", POOL_OWNER_PEER, &receiver), 0);
        pool_set_observer(owner, shadow_observe, &so);
        pool_set_observer(receiver, shadow_observe, &sr);

        /* Odd sizes, tiny blocks and one large enough for whole-word skipping. */
        model_add_block(&m, owner, receiver, 1);
        model_add_block(&m, owner, receiver, 2000);
        model_add_block(&m, owner, receiver, 37);
        model_add_block(&m, owner, receiver, 9001);
        model_add_block(&m, owner, receiver, 64);

        for (size_t step = 0; step < 20000; step++) {
                size_t action = rng_range(0, 99);

                if (action < 65 && n_live < ELEMENTSOF(live)) {
                        _cleanup_(allocation_freep) Allocation *a = NULL, *b = NULL;
                        Fragment plan[PSRD_FRAGMENTS_MAX];
                        size_t n, k, offset = 0;
                        uint64_t avail = m.available;
                        int r;

                        n = rng_range(0, 19) == 0 ? rng_range(1, 3000) : rng_range(1, 120);
                        k = model_plan(&m, n, plan, ELEMENTSOF(plan));

                        r = pool_allocate(owner, n, &a);
                        if (avail < n) {
                                assert_int_equal(r, -ENOSPC);
                                n_refused++;
                                /* Running dry: provision a new block on both sides. */
                                if (m.n_blocks < RANDOM_BLOCKS_MAX)
                                        model_add_block(&m, owner, receiver, rng_range(1, 4000));
                                continue;
                        }
                        if (k > PSRD_FRAGMENTS_MAX) {
                                assert_int_equal(r, -E2BIG);
                                n_refused++;
                                continue;
                        }
                        assert_int_equal(r, 0);
                        assert_int_equal(a->size, n);
                        assert_int_equal(a->n_fragments, k);

                        for (size_t i = 0; i < k; i++) {
                                const Fragment *f = &a->fragments[i];
                                ModelBlock *mb = model_find(&m, &f->block_uuid);

                                assert_true(uuid_equal(&f->block_uuid, &plan[i].block_uuid));
                                assert_int_equal(f->start, plan[i].start);
                                assert_int_equal(f->size, plan[i].size);
                                assert_non_null(mb);
                                assert_memory_equal(a->data + offset, mb->orig + f->start, f->size);
                                /* Never handed out twice (model_mark() checks). */
                                for (size_t j = f->start; j < f->start + f->size; j++)
                                        model_mark(&m, mb, j, true);
                                offset += f->size;
                        }

                        b = wire_copy(a, rng_range(0, 1));
                        assert_int_equal(pool_take(receiver, b, n, NULL), 0);
                        assert_memory_equal(b->data, a->data, n);

                        live[n_live++] = (Live){TAKE_PTR(a), TAKE_PTR(b)};
                        n_allocated++;
                        n_bytes += n;

                } else if (action < 80 && n_live > 0) {
                        size_t i = rng_range(0, n_live - 1);
                        Live l = live[i];
                        size_t offset = 0;

                        /* Give back on both sides; bytes of dropped blocks stay gone. */
                        for (size_t f = 0; f < l.sent->n_fragments; f++) {
                                const Fragment *fr = &l.sent->fragments[f];
                                ModelBlock *mb = model_find(&m, &fr->block_uuid);

                                if (!mb->dropped)
                                        for (size_t j = fr->start; j < fr->start + fr->size; j++)
                                                model_mark(&m, mb, j, false);
                                assert_memory_equal(l.sent->data + offset, mb->orig + fr->start, fr->size);
                                offset += fr->size;
                        }
                        pool_give_back(owner, l.sent);
                        pool_give_back(receiver, l.received);
                        allocation_free(l.sent);
                        allocation_free(l.received);
                        live[i] = live[--n_live];
                        n_given_back++;

                } else if (action < 90 && n_live > 0) {
                        size_t i = rng_range(0, n_live - 1);
                        _cleanup_(allocation_freep) Allocation *replay = wire_copy(live[i].received, true);
                        size_t bad = SIZE_MAX;

                        int r;

                        /* A replay is refused, unless its block has gone in the meantime. */
                        r = pool_take(receiver, replay, 0, &bad);
                        assert_true(r == -EALREADY || r == -ENOENT);
                        assert_true(bad < replay->n_fragments);

                        /* Done with: the bytes stay used. */
                        allocation_free(live[i].sent);
                        allocation_free(live[i].received);
                        live[i] = live[--n_live];

                } else {
                        size_t d = pool_drop_used_blocks(owner);

                        assert_int_equal(pool_drop_used_blocks(receiver), d);
                        for (size_t i = 0; i < m.n_blocks; i++) {
                                ModelBlock *mb = &m.blocks[i];

                                if (!mb->dropped && mb->n_used == mb->size) {
                                        mb->dropped = true;
                                        d--;
                                }
                        }
                        assert_int_equal(d, 0);
                }

                if (step % 50 == 0)
                        model_check(&m, owner, receiver, &so, &sr);
                assert_int_equal(pool_available(owner), m.available);
                assert_int_equal(pool_available(receiver), m.available);
        }

        model_check(&m, owner, receiver, &so, &sr);
        print_message("%zu allocations (%zu bytes), %zu given back, %zu refused, %zu blocks\n", n_allocated,
                      n_bytes, n_given_back, n_refused, m.n_blocks);
        assert_true(n_allocated > 5000);
        assert_true(n_given_back > 1000);

        for (size_t i = 0; i < n_live; i++) {
                allocation_free(live[i].sent);
                allocation_free(live[i].received);
        }
        owner = pool_free(owner);
        receiver = pool_free(receiver);
        model_done(&m);
        shadow_done(&so);
        shadow_done(&sr);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_pool_owner_strings),
                cmocka_unit_test(test_block_new),
                cmocka_unit_test(test_block_bitmap),
                cmocka_unit_test(test_allocate_example),
                cmocka_unit_test(test_allocate_holes),
                cmocka_unit_test(test_allocate_out_of_psrd),
                cmocka_unit_test(test_allocate_too_fragmented),
                cmocka_unit_test(test_add_block),
                cmocka_unit_test(test_take_errors),
                cmocka_unit_test(test_overlap),
                cmocka_unit_test(test_give_back),
                cmocka_unit_test(test_drop_used_blocks),
                cmocka_unit_test(test_observer),
                cmocka_unit_test(test_observer_failure),
                cmocka_unit_test(test_large_block),
                cmocka_unit_test(test_randomised),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
