/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "psrd.h"
#include "random.h"
#include "secret.h"

static const char *const pool_owner_table[_POOL_OWNER_MAX] = {
        [POOL_OWNER_LOCAL] = "local",
        [POOL_OWNER_PEER] = "peer",
};

const char *pool_owner_to_string(PoolOwner o) {
        if (o < 0 || o >= _POOL_OWNER_MAX)
                return NULL;
        return pool_owner_table[o];
}

PoolOwner pool_owner_from_string(const char *s) {
        if (!s)
                return _POOL_OWNER_INVALID;
        for (PoolOwner o = 0; o < _POOL_OWNER_MAX; o++)
                if (streq(s, pool_owner_table[o]))
                        return o;
        return _POOL_OWNER_INVALID;
}

/* The bitmap keeps the bits past the end of the block clear, which bitmap_find() relies on. */

static size_t bitmap_bytes(size_t size) {
        return size / 8 + (size % 8 != 0);
}

static bool bitmap_get(const uint8_t *map, size_t i) {
        return map[i / 8] & (1u << (i % 8));
}

/* The lowest index in [from, size) whose bit equals value, or size. Whole words that cannot hold a
 * match are skipped, so a long used prefix of a large block costs little. */
static size_t bitmap_find(const uint8_t *map, size_t from, size_t size, bool value) {
        const uint64_t skip_word = value ? 0 : UINT64_MAX;
        size_t i = from;

        if (i >= size)
                return size;

        if (i % 8 != 0) {
                uint8_t x = value ? map[i / 8] : (uint8_t) ~map[i / 8];

                x &= (uint8_t) (0xffu << (i % 8));
                if (x != 0)
                        return MIN(i / 8 * 8 + (size_t) __builtin_ctz(x), size);
                i = (i / 8 + 1) * 8;
        }

        while (i < size) {
                uint8_t x;

                if (size - i >= 64) {
                        uint64_t w;

                        memcpy(&w, map + i / 8, sizeof(w));
                        if (w == skip_word) {
                                i += 64;
                                continue;
                        }
                }

                x = value ? map[i / 8] : (uint8_t) ~map[i / 8];
                if (x != 0)
                        return MIN(i + (size_t) __builtin_ctz(x), size);
                i += 8;
        }

        return size;
}

/* Sets or clears the bits of [start, start+n), whole bytes at a time in the middle. */
static void bitmap_set_range(uint8_t *map, size_t start, size_t n, bool value) {
        size_t i = start, end = start + n;

        while (i < end && i % 8 != 0) {
                if (value)
                        map[i / 8] |= (uint8_t) (1u << (i % 8));
                else
                        map[i / 8] &= (uint8_t) ~(1u << (i % 8));
                i++;
        }

        if (end - i >= 8) {
                memset(map + i / 8, value ? 0xff : 0x00, (end - i) / 8);
                i += (end - i) / 8 * 8;
        }

        for (; i < end; i++) {
                if (value)
                        map[i / 8] |= (uint8_t) (1u << (i % 8));
                else
                        map[i / 8] &= (uint8_t) ~(1u << (i % 8));
        }
}

static Block *block_alloc(size_t size) {
        Block *b;

        b = calloc(1, sizeof(Block));
        if (!b)
                return NULL;

        b->data = secret_alloc(size);
        b->used = calloc(1, bitmap_bytes(size));
        if (!b->data || !b->used)
                return block_free(b);

        b->size = size;
        return b;
}

int block_new(const Uuid *uuid, const uint8_t *data, size_t size, Block **ret) {
        Block *b;

        if (!uuid || !data || !ret || size == 0 || size > PSRD_BLOCK_SIZE_MAX)
                return -EINVAL;

        b = block_alloc(size);
        if (!b)
                return -ENOMEM;

        b->uuid = *uuid;
        memcpy(b->data, data, size);

        *ret = b;
        return 0;
}

int block_new_random(size_t size, Block **ret) {
        _cleanup_(block_freep) Block *b = NULL;
        int r;

        if (!ret || size == 0 || size > PSRD_BLOCK_SIZE_MAX)
                return -EINVAL;

        b = block_alloc(size);
        if (!b)
                return -ENOMEM;

        r = uuid_random(&b->uuid);
        if (r < 0)
                return r;

        r = random_bytes(b->data, size);
        if (r < 0)
                return r;

        *ret = TAKE_PTR(b);
        return 0;
}

Block *block_free(Block *b) {
        if (!b)
                return NULL;

        b->data = erase_and_free(b->data, b->size);
        free(b->used);
        free(b);
        return NULL;
}

bool block_is_used(const Block *b, size_t i) {
        if (i >= b->size)
                return false;
        return bitmap_get(b->used, i);
}

bool block_range_any_used(const Block *b, size_t start, size_t size) {
        size_t end;

        if (size == 0 || !size_add(start, size, &end) || end > b->size)
                return false;

        return bitmap_find(b->used, start, end, true) < end;
}

/* Marks [start, start+size) used and destroys the bytes; the caller has copied them out and
 * checked the range is unused. */
static void block_mark_used(Block *b, size_t start, size_t size) {
        bitmap_set_range(b->used, start, size, true);
        explicit_bzero(b->data + start, size);
        b->n_used += size;
}

int block_burn(Block *b, size_t start, size_t size) {
        size_t end, n = 0;

        if (!b || !size_add(start, size, &end) || end > b->size)
                return -ERANGE;

        for (size_t i = bitmap_find(b->used, start, end, false); i < end;) {
                size_t j = bitmap_find(b->used, i, end, true);

                block_mark_used(b, i, j - i);
                n += j - i;
                i = bitmap_find(b->used, j, end, false);
        }

        if (b->first_unused >= start && b->first_unused < end)
                b->first_unused = bitmap_find(b->used, b->first_unused, b->size, false);
        return (int) MIN(n, (size_t) INT_MAX);
}

/* Puts the original bytes back and marks them unused, byte by byte, so that bytes not used (which
 * a correct caller never passes) are neither counted twice nor overwritten. */
static size_t block_restore(Block *b, size_t start, size_t size, const uint8_t *data) {
        size_t n = 0;

        for (size_t i = 0; i < size; i++) {
                size_t j = start + i;

                if (!bitmap_get(b->used, j))
                        continue;
                b->data[j] = data[i];
                b->used[j / 8] &= (uint8_t) ~(1u << (j % 8));
                n++;
        }

        b->n_used -= n;
        b->first_unused = MIN(b->first_unused, start);
        return n;
}

Allocation *allocation_new(void) {
        return calloc(1, sizeof(Allocation));
}

Allocation *allocation_free(Allocation *a) {
        if (!a)
                return NULL;

        a->data = erase_and_free(a->data, a->size);
        free(a->fragments);
        free(a);
        return NULL;
}

int allocation_add_fragment(Allocation *a, const Uuid *uuid, size_t start, size_t size) {
        Fragment *f;
        size_t end, total;

        if (!a || !uuid || a->data || size == 0)
                return -EINVAL;
        if (!size_add(start, size, &end) || end > PSRD_BLOCK_SIZE_MAX)
                return -ERANGE;
        if (a->n_fragments >= PSRD_FRAGMENTS_MAX)
                return -E2BIG;
        if (!size_add(a->size, size, &total))
                return -ERANGE;

        f = reallocarray(a->fragments, a->n_fragments + 1, sizeof(Fragment));
        if (!f)
                return -ENOMEM;
        a->fragments = f;

        a->fragments[a->n_fragments++] = (Fragment){
                .block_uuid = *uuid,
                .start = start,
                .size = size,
        };
        a->size = total;
        return 0;
}

static bool fragments_overlap(const Fragment *x, const Fragment *y) {
        size_t x_end, y_end;

        if (x->size == 0 || y->size == 0 || !uuid_equal(&x->block_uuid, &y->block_uuid))
                return false;

        /* An end past SIZE_MAX is as good as SIZE_MAX for this comparison. */
        if (!size_add(x->start, x->size, &x_end))
                x_end = SIZE_MAX;
        if (!size_add(y->start, y->size, &y_end))
                y_end = SIZE_MAX;

        return x->start < y_end && y->start < x_end;
}

bool allocation_has_overlap(const Allocation *a) {
        for (size_t i = 1; i < a->n_fragments; i++)
                for (size_t j = 0; j < i; j++)
                        if (fragments_overlap(&a->fragments[i], &a->fragments[j]))
                                return true;
        return false;
}

bool allocation_fragments_equal(const Allocation *a, const Allocation *b) {
        if (a->n_fragments != b->n_fragments)
                return false;

        for (size_t i = 0; i < a->n_fragments; i++) {
                const Fragment *x = &a->fragments[i], *y = &b->fragments[i];

                if (!uuid_equal(&x->block_uuid, &y->block_uuid) || x->start != y->start ||
                    x->size != y->size)
                        return false;
        }
        return true;
}

int pool_new(const char *name, PoolOwner owner, Pool **ret) {
        _cleanup_(pool_freep) Pool *p = NULL;

        if (!name || !ret || owner < 0 || owner >= _POOL_OWNER_MAX)
                return -EINVAL;

        p = calloc(1, sizeof(Pool));
        if (!p)
                return -ENOMEM;

        p->name = strdup(name);
        if (!p->name)
                return -ENOMEM;
        p->owner = owner;

        *ret = TAKE_PTR(p);
        return 0;
}

Pool *pool_free(Pool *p) {
        if (!p)
                return NULL;

        for (size_t i = 0; i < p->n_blocks; i++)
                block_free(p->blocks[i]);
        free(p->blocks);
        free(p->name);
        free(p);
        return NULL;
}

void pool_set_observer(Pool *p, PoolObserver observer, void *userdata) {
        p->observer = observer;
        p->observer_userdata = userdata;
}

static int pool_notify(Pool *p, PsrdChange change, const Block *b, size_t start, size_t size) {
        if (!p->observer)
                return 0;
        return p->observer(p, change, b, start, size, p->observer_userdata);
}

Block *pool_find_block(const Pool *p, const Uuid *uuid) {
        for (size_t i = 0; i < p->n_blocks; i++)
                if (uuid_equal(&p->blocks[i]->uuid, uuid))
                        return p->blocks[i];
        return NULL;
}

int pool_add_block(Pool *p, Block *b) {
        Block **blocks;
        int r;

        if (!p || !b)
                return -EINVAL;
        if (pool_find_block(p, &b->uuid))
                return -EEXIST;

        blocks = reallocarray(p->blocks, p->n_blocks + 1, sizeof(Block *));
        if (!blocks)
                return -ENOMEM;
        p->blocks = blocks;
        p->blocks[p->n_blocks++] = b;

        r = pool_notify(p, PSRD_CHANGE_BLOCK_ADDED, b, 0, b->size);
        if (r < 0) {
                /* Not recorded, so not ours: the caller keeps the block. */
                p->blocks[--p->n_blocks] = NULL;
                return r;
        }

        return 0;
}

void pool_get_stats(const Pool *p, PoolStats *ret) {
        PoolStats s = {
                .n_blocks = p->n_blocks,
        };

        for (size_t i = 0; i < p->n_blocks; i++) {
                s.total_bytes += p->blocks[i]->size;
                s.used_bytes += p->blocks[i]->n_used;
        }
        s.available_bytes = s.total_bytes - s.used_bytes;

        *ret = s;
}

uint64_t pool_available(const Pool *p) {
        PoolStats s;

        pool_get_stats(p, &s);
        return s.available_bytes;
}

/* Undoes the first n_done fragments of a, whose bytes sit at the start of a->data, and tells the
 * observer; used when a later step of an allocation or take fails. */
static void pool_undo(Pool *p, Allocation *a, Block **blocks, size_t n_done) {
        size_t offset = 0;

        for (size_t i = 0; i < n_done; i++) {
                const Fragment *f = &a->fragments[i];

                (void) block_restore(blocks[i], f->start, f->size, a->data + offset);
                (void) pool_notify(p, PSRD_CHANGE_GIVEN_BACK, blocks[i], f->start, f->size);
                offset += f->size;
        }
}

/* Copies out, marks and reports each fragment in turn; the fragments have been checked. On an
 * observer error everything done so far is undone, the failing fragment without a report since
 * the observer did not record it. */
static int pool_consume(Pool *p, Allocation *a, Block **blocks) {
        size_t offset = 0;
        int r;

        for (size_t i = 0; i < a->n_fragments; i++) {
                const Fragment *f = &a->fragments[i];
                Block *b = blocks[i];

                memcpy(a->data + offset, b->data + f->start, f->size);
                block_mark_used(b, f->start, f->size);

                r = pool_notify(p, PSRD_CHANGE_MARKED_USED, b, f->start, f->size);
                if (r < 0) {
                        (void) block_restore(b, f->start, f->size, a->data + offset);
                        pool_undo(p, a, blocks, i);
                        return r;
                }

                offset += f->size;
        }

        return 0;
}

int pool_allocate(Pool *p, size_t n, Allocation **ret) {
        _cleanup_(allocation_freep) Allocation *a = NULL;
        _cleanup_free_ Block **blocks = NULL;
        size_t remaining = n;
        int r;

        if (!p || !ret || n == 0)
                return -EINVAL;
        if (pool_available(p) < n)
                return -ENOSPC;

        a = allocation_new();
        blocks = calloc(PSRD_FRAGMENTS_MAX, sizeof(Block *));
        if (!a || !blocks)
                return -ENOMEM;

        /* Plan first, so that running out of fragments consumes nothing. */
        for (size_t i = 0; i < p->n_blocks && remaining > 0; i++) {
                Block *b = p->blocks[i];
                size_t s;

                if (b->n_used == b->size)
                        continue;

                /* Bytes below first_unused are used: where the previous allocation stopped. */
                s = b->first_unused = bitmap_find(b->used, b->first_unused, b->size, false);

                while (s < b->size && remaining > 0) {
                        size_t e, len;

                        /* Looking further than needed would scan the whole unused rest of the block. */
                        e = bitmap_find(b->used, s, s + MIN(b->size - s, remaining), true);
                        len = e - s;

                        r = allocation_add_fragment(a, &b->uuid, s, len);
                        if (r < 0)
                                return r;
                        blocks[a->n_fragments - 1] = b;
                        remaining -= len;

                        s = bitmap_find(b->used, s + len, b->size, false);
                }
        }

        /* pool_available() counted these bytes, so the walk finds them all. */
        if (remaining > 0)
                return -EIO;

        a->data = secret_alloc(n);
        if (!a->data)
                return -ENOMEM;

        r = pool_consume(p, a, blocks);
        if (r < 0)
                return r;

        *ret = TAKE_PTR(a);
        return 0;
}

int pool_take(Pool *p, Allocation *a, size_t expected_size, size_t *ret_bad) {
        _cleanup_free_ Block **blocks = NULL;
        size_t total = 0, bad;
        int r;

        if (!p || !a)
                return -EINVAL;
        if (a->data) {
                r = -EINVAL;
                bad = a->n_fragments;
                goto fail;
        }
        if (a->n_fragments == 0) {
                r = -EBADMSG;
                bad = 0;
                goto fail;
        }

        blocks = calloc(a->n_fragments, sizeof(Block *));
        if (!blocks)
                return -ENOMEM;

        for (size_t i = 0; i < a->n_fragments; i++) {
                const Fragment *f = &a->fragments[i];
                size_t end;

                bad = i;

                if (f->size == 0 || !size_add(total, f->size, &total)) {
                        r = -EBADMSG;
                        goto fail;
                }

                blocks[i] = pool_find_block(p, &f->block_uuid);
                if (!blocks[i]) {
                        r = -ENOENT;
                        goto fail;
                }

                if (!size_add(f->start, f->size, &end) || end > blocks[i]->size) {
                        r = -ERANGE;
                        goto fail;
                }

                for (size_t j = 0; j < i; j++)
                        if (fragments_overlap(f, &a->fragments[j])) {
                                r = -EBADMSG;
                                goto fail;
                        }

                if (block_range_any_used(blocks[i], f->start, f->size)) {
                        r = -EALREADY;
                        goto fail;
                }
        }

        bad = a->n_fragments;
        if (total != a->size || (expected_size != 0 && total != expected_size)) {
                r = -EBADMSG;
                goto fail;
        }

        a->data = secret_alloc(total);
        if (!a->data)
                return -ENOMEM;

        r = pool_consume(p, a, blocks);
        if (r < 0) {
                a->data = erase_and_free(a->data, total);
                return r;
        }

        return 0;

fail:
        log_debug("Refusing PSRD of pool %s, fragment %zu: %s", p->name, bad, strerror(-r));
        if (ret_bad)
                *ret_bad = bad;
        return r;
}

void pool_give_back(Pool *p, Allocation *a) {
        size_t offset = 0;

        if (!p || !a || !a->data)
                return;

        for (size_t i = 0; i < a->n_fragments; i++) {
                const Fragment *f = &a->fragments[i];
                Block *b;
                size_t end;

                b = pool_find_block(p, &f->block_uuid);
                if (b && size_add(f->start, f->size, &end) && end <= b->size &&
                    block_restore(b, f->start, f->size, a->data + offset) > 0)
                        (void) pool_notify(p, PSRD_CHANGE_GIVEN_BACK, b, f->start, f->size);

                offset += f->size;
        }

        a->data = erase_and_free(a->data, a->size);
}

size_t pool_drop_used_blocks(Pool *p) {
        size_t n_kept = 0, n_dropped = 0;

        if (!p)
                return 0;

        for (size_t i = 0; i < p->n_blocks; i++) {
                Block *b = p->blocks[i];

                if (b->n_used < b->size) {
                        p->blocks[n_kept++] = b;
                        continue;
                }

                (void) pool_notify(p, PSRD_CHANGE_BLOCK_DROPPED, b, 0, b->size);
                block_free(b);
                n_dropped++;
        }

        p->n_blocks = n_kept;
        return n_dropped;
}
