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
#include <dirent.h>
#include <endian.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <sys/stat.h>
#include <systemd/sd-event.h>
#include <systemd/sd-id128.h>
#include <unistd.h>

#include "crc32.h"
#include "psrd.h"
#include "state.h"

#define ROLE "hub"
#define NAME "h1"
#define PEER "p1"

/* The most an own pool is reserved ahead of what it handed out. */
#define RESERVE_CHUNK_MAX (16u * 1024u)

/* Journal header: magic, generation, boot ID, CRC of the 32 bytes before it; then zero, where the
 * records end, and the records. */
#define JOURNAL_HEADER_SIZE 36u
#define JOURNAL_END_OFFSET  40u
#define JOURNAL_DATA_OFFSET 48u

/* Syncs made by the thread that runs the loop: the state code's own threads make theirs in the
 * background. The test is linked with --wrap=fdatasync. */
static pthread_t loop_thread;
static unsigned loop_syncs;

int __real_fdatasync(int fd);
int __wrap_fdatasync(int fd);
int __wrap_fdatasync(int fd) {
        if (pthread_equal(pthread_self(), loop_thread))
                loop_syncs++;
        return __real_fdatasync(fd);
}

/* ---- files and directories ---- */

/* Directories of the running test, removed by the teardown should it fail half-way. */
static char *tmpdirs[4];

static char *tmpdir_new(void) {
        char *p = strdup("/tmp/dske-test-state-XXXXXX");

        assert_non_null(p);
        assert_non_null(mkdtemp(p));
        for (size_t i = 0; i < ELEMENTSOF(tmpdirs); i++)
                if (!tmpdirs[i]) {
                        tmpdirs[i] = p;
                        return p;
                }
        fail_msg("too many temporary directories");
        return NULL;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
        (void) st;
        (void) flag;
        (void) ftw;
        return remove(path);
}

static void tmpdir_free(char *p) {
        for (size_t i = 0; i < ELEMENTSOF(tmpdirs); i++)
                if (tmpdirs[i] == p)
                        tmpdirs[i] = NULL;
        assert_int_equal(nftw(p, rm_one, 16, FTW_DEPTH | FTW_PHYS), 0);
        free(p);
}

static int tmpdirs_remove(void **state) {
        (void) state;
        for (size_t i = 0; i < ELEMENTSOF(tmpdirs); i++)
                if (tmpdirs[i]) {
                        (void) nftw(tmpdirs[i], rm_one, 16, FTW_DEPTH | FTW_PHYS);
                        free(tmpdirs[i]);
                        tmpdirs[i] = NULL;
                }
        return 0;
}

static char *path_join(const char *dir, const char *name) {
        char *p;

        assert_true(asprintf(&p, "%s/%s", dir, name) > 0);
        return p;
}

static uint8_t *file_read(const char *path, size_t *ret_size) {
        struct stat st;
        uint8_t *buf;
        int fd;

        fd = open(path, O_RDONLY | O_CLOEXEC);
        assert_true(fd >= 0);
        assert_int_equal(fstat(fd, &st), 0);
        buf = malloc((size_t) st.st_size + 1);
        assert_non_null(buf);
        assert_int_equal(read(fd, buf, (size_t) st.st_size), st.st_size);
        close(fd);
        *ret_size = (size_t) st.st_size;
        return buf;
}

static void file_write(const char *path, const uint8_t *buf, size_t size) {
        int fd;

        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, buf, size), (ssize_t) size);
        close(fd);
}

static void tree_copy(const char *src, const char *dst) {
        struct dirent *de;
        DIR *dir;

        assert_true(mkdir(dst, 0700) == 0 || errno == EEXIST);
        dir = opendir(src);
        assert_non_null(dir);
        while ((de = readdir(dir))) {
                char *s, *t;
                struct stat st;

                if (de->d_name[0] == '.')
                        continue;
                s = path_join(src, de->d_name);
                t = path_join(dst, de->d_name);
                assert_int_equal(lstat(s, &st), 0);
                if (S_ISDIR(st.st_mode))
                        tree_copy(s, t);
                else {
                        size_t n;
                        uint8_t *buf = file_read(s, &n);

                        file_write(t, buf, n);
                        free(buf);
                }
                free(s);
                free(t);
        }
        closedir(dir);
}

/* Makes dst (an existing directory) hold exactly what src holds. */
static void tree_restore(const char *src, const char *dst) {
        assert_int_equal(nftw(dst, rm_one, 16, FTW_DEPTH | FTW_PHYS), 0);
        tree_copy(src, dst);
}

/* The path of the first block file in dir/psrd. */
static char *block_file_first(const char *dir) {
        char *psrd = path_join(dir, "psrd"), *ret = NULL;
        struct dirent *de;
        DIR *d;

        d = opendir(psrd);
        assert_non_null(d);
        while ((de = readdir(d)))
                if (strstr(de->d_name, ".blk") || strstr(de->d_name, ".new")) {
                        ret = path_join(psrd, de->d_name);
                        break;
                }
        closedir(d);
        free(psrd);
        assert_non_null(ret);
        return ret;
}

static size_t entries_count(const char *path) {
        struct dirent *de;
        size_t n = 0;
        DIR *d;

        d = opendir(path);
        assert_non_null(d);
        while ((de = readdir(d)))
                if (de->d_name[0] != '.')
                        n++;
        closedir(d);
        return n;
}

static size_t block_files_count(const char *dir) {
        char *psrd = path_join(dir, "psrd");
        size_t n = entries_count(psrd);

        free(psrd);
        return n;
}

static bool block_file_exists(const char *dir, const Uuid *u) {
        char s[UUID_STRING_MAX], *p;
        bool r;

        assert_true(asprintf(&p, "%s/psrd/%s.blk", dir, uuid_to_string(u, s)) > 0);
        r = access(p, F_OK) == 0;
        free(p);
        return r;
}

/* Flips bit 0 of the byte at offset, counted from the end when negative. */
/* Where a file's contents end: a journal's header says where its records end (its file is
 * allocated ahead); other files end with their last byte. */
static size_t file_data_end(const char *path, const uint8_t *buf, size_t n) {
        const char *base = strrchr(path, '/');
        uint64_t end;

        if (!base || strncmp(base + 1, "journal", strlen("journal")) != 0)
                return n;
        assert_true(n >= JOURNAL_DATA_OFFSET);
        memcpy(&end, buf + JOURNAL_END_OFFSET, sizeof(end));
        assert_true(le64toh(end) <= n);
        return le64toh(end);
}

/* Flips a bit of the byte at offset, counted back from the end of the contents if negative. */
static void file_flip(const char *path, ssize_t offset) {
        size_t n, end;
        uint8_t *buf = file_read(path, &n);

        end = file_data_end(path, buf, n);
        if (offset < 0)
                offset += (ssize_t) end;
        assert_true(offset >= 0 && (size_t) offset < end);
        buf[offset] ^= 0x01;
        file_write(path, buf, n);
        free(buf);
}

/* Garbles the last bytes of a journal's records: what a power loss can leave of a write. */
static void journal_tear(const char *path, size_t bytes) {
        size_t n, end;
        uint8_t *buf = file_read(path, &n);

        end = file_data_end(path, buf, n);
        assert_true(end >= JOURNAL_DATA_OFFSET + bytes);
        for (size_t i = end - bytes; i < end; i++)
                buf[i] ^= 0xa5;
        file_write(path, buf, n);
        free(buf);
}

static void file_flip_middle(const char *path) {
        size_t n, end;
        uint8_t *buf = file_read(path, &n);

        end = file_data_end(path, buf, n);
        free(buf);
        file_flip(path, (ssize_t) end / 2);
}

static void file_cut(const char *path, size_t bytes) {
        struct stat st;

        assert_int_equal(stat(path, &st), 0);
        assert_true((size_t) st.st_size > bytes);
        assert_int_equal(truncate(path, st.st_size - (off_t) bytes), 0);
}

/* Rewrites the journal header's generation and boot ID (NULL: unchanged), with a valid CRC. */
static void journal_rewrite_header(const char *dir, const uint64_t *generation, const uint8_t boot_id[16]) {
        char *path = path_join(dir, "journal");
        uint32_t crc;
        size_t n;
        uint8_t *buf = file_read(path, &n);

        assert_true(n >= JOURNAL_HEADER_SIZE);
        assert_memory_equal(buf, "DSKEJNL1", 8);
        if (generation) {
                uint64_t g = htole64(*generation);
                memcpy(buf + 8, &g, 8);
        }
        if (boot_id)
                memcpy(buf + 16, boot_id, 16);
        crc = htole32(crc32_update(0, buf, 32));
        memcpy(buf + 32, &crc, 4);
        file_write(path, buf, n);
        free(buf);
        free(path);
}

static uint64_t journal_generation(const char *dir) {
        char *path = path_join(dir, "journal");
        uint64_t g;
        size_t n;
        uint8_t *buf = file_read(path, &n);

        assert_true(n >= JOURNAL_HEADER_SIZE);
        memcpy(&g, buf + 8, 8);
        free(buf);
        free(path);
        return le64toh(g);
}

/* As if the journal had been written before the system restarted. */
static void journal_set_other_boot(const char *dir) {
        sd_id128_t boot;
        uint8_t other[16];

        assert_int_equal(sd_id128_get_boot(&boot), 0);
        for (size_t i = 0; i < 16; i++)
                other[i] = boot.bytes[i] ^ 0x5a;
        journal_rewrite_header(dir, NULL, other);
}

/* ---- state and PSRD ---- */

static void on_written(void *userdata) {
        *(bool *) userdata = true;
}

/* Runs the loop until the file work asked for so far is done. */
static void wait_written(sd_event *e, StateDir *d) {
        bool done = false;

        assert_int_equal(state_dir_call_when_written(d, on_written, &done), 0);
        while (!done)
                assert_true(sd_event_run(e, UINT64_MAX) >= 0);
}

static sd_event *event_new(void) {
        sd_event *e = NULL;

        assert_int_equal(sd_event_new(&e), 0);
        return e;
}

static StateDir *state_open(sd_event *e, const char *dir) {
        StateDir *d = NULL;

        assert_int_equal(state_dir_open(e, dir, ROLE, NAME, 0, &d), 0);
        assert_non_null(d);
        return d;
}

static int state_open_error(sd_event *e, const char *dir) {
        StateDir *d = NULL;
        int r;

        r = state_dir_open(e, dir, ROLE, NAME, 0, &d);
        if (r >= 0)
                state_dir_free(d);
        return r;
}

static Pool *state_take(StateDir *d, const char *peer, PoolOwner owner) {
        Pool *p = NULL;

        assert_int_equal(state_dir_take_pool(d, peer, owner, &p), 0);
        assert_non_null(p);
        return p;
}

/* Releases the pools without destroying their files, then frees everything: what a stop (clean
 * when state_dir_close() came first) or a kill -9 after the last reply leaves on disk (a daemon
 * flushes the journal before every reply). */
static void state_drop(StateDir *d, Pool **pools, size_t n) {
        assert_int_equal(state_dir_flush(d), 0);
        for (size_t i = 0; i < n; i++) {
                state_dir_release_pool(d, pools[i], false);
                pools[i] = pool_free(pools[i]);
        }
        state_dir_free(d);
}

/* The original bytes of a block, kept to check what comes back after a restart. */
typedef struct Orig {
        Uuid uuid;
        size_t size;
        uint8_t *data;
} Orig;

static Block *block_add(Pool *p, size_t size, Orig *o) {
        Block *b = NULL;

        assert_int_equal(block_new_random(size, &b), 0);
        o->uuid = b->uuid;
        o->size = size;
        o->data = malloc(size);
        assert_non_null(o->data);
        memcpy(o->data, b->data, size);
        assert_int_equal(pool_add_block(p, b), 0);
        return b;
}

static void orig_done(Orig *o, size_t n) {
        for (size_t i = 0; i < n; i++)
                free(o[i].data);
}

static uint8_t *bitmap_dup(const Block *b) {
        uint8_t *m = malloc((b->size + 7) / 8);

        assert_non_null(m);
        memcpy(m, b->used, (b->size + 7) / 8);
        return m;
}

/* Checks b against its original: used bytes (used bitmap as given, when given) are zero, every
 * other byte has its original value. */
static void assert_block(const Block *b, const Orig *o, const uint8_t *used) {
        assert_true(uuid_equal(&b->uuid, &o->uuid));
        assert_int_equal(b->size, o->size);
        if (used)
                assert_memory_equal(b->used, used, (b->size + 7) / 8);
        for (size_t i = 0; i < b->size; i++)
                if (block_is_used(b, i))
                        assert_int_equal(b->data[i], 0);
                else
                        assert_int_equal(b->data[i], o->data[i]);
}

static void assert_range(const Block *b, size_t start, size_t size, bool used) {
        for (size_t i = start; i < start + size; i++)
                assert_int_equal(block_is_used(b, i), used);
}

/* What a receiver builds from a peer's metadata: up to two ranges, by block UUID. */
static Allocation *names(const Block *b1, size_t s1, size_t n1, const Block *b2, size_t s2, size_t n2) {
        Allocation *a = allocation_new();

        assert_non_null(a);
        assert_int_equal(allocation_add_fragment(a, &b1->uuid, s1, n1), 0);
        if (b2)
                assert_int_equal(allocation_add_fragment(a, &b2->uuid, s2, n2), 0);
        return a;
}

/* The data of a taken or allocated allocation equals the originals it names. */
static void assert_allocation_data(const Allocation *a, const Orig *o, size_t n_orig) {
        size_t off = 0;

        assert_non_null(a->data);
        for (size_t i = 0; i < a->n_fragments; i++) {
                const Fragment *f = &a->fragments[i];
                const Orig *m = NULL;

                for (size_t j = 0; j < n_orig; j++)
                        if (uuid_equal(&o[j].uuid, &f->block_uuid))
                                m = &o[j];
                assert_non_null(m);
                assert_memory_equal(a->data + off, m->data + f->start, f->size);
                off += f->size;
        }
}

static bool fragments_overlap(const Allocation *a, const Allocation *b) {
        for (size_t i = 0; i < a->n_fragments; i++)
                for (size_t j = 0; j < b->n_fragments; j++) {
                        const Fragment *x = &a->fragments[i], *y = &b->fragments[j];

                        if (uuid_equal(&x->block_uuid, &y->block_uuid) && x->start < y->start + y->size &&
                            y->start < x->start + x->size)
                                return true;
                }
        return false;
}

static void assert_mode(const char *dir, const char *name, mode_t mode) {
        char *p = path_join(dir, name);
        struct stat st;

        assert_int_equal(lstat(p, &st), 0);
        assert_int_equal(st.st_mode & 07777, mode);
        free(p);
}

/* ---- records ---- */

typedef struct Seen {
        size_t n;
        uint8_t type[16];
        char payload[16][64];
        size_t size[16];
} Seen;

static int on_record(uint8_t type, const void *payload, size_t size, void *userdata) {
        Seen *s = userdata;

        assert_true(s->n < ELEMENTSOF(s->type));
        assert_true(size < sizeof(s->payload[0]));
        s->type[s->n] = type;
        memcpy(s->payload[s->n], payload, size);
        s->payload[s->n][size] = 0;
        s->size[s->n] = size;
        s->n++;
        return 0;
}

static void assert_seen(const Seen *s, size_t i, uint8_t type, const char *payload) {
        assert_true(i < s->n);
        assert_int_equal(s->type[i], type);
        assert_int_equal(s->size[i], strlen(payload));
        assert_string_equal(s->payload[i], payload);
}

static int append_str(StateDir *d, uint8_t type, const char *s) {
        return state_dir_append(d, type, s, strlen(s));
}

/* The records live at a checkpoint, as the daemon keeps them. */
typedef struct Live {
        size_t n;
        const char *payload[8];
        unsigned calls;
} Live;

static int write_live(StateDir *d, void *userdata) {
        Live *l = userdata;
        int r;

        l->calls++;
        for (size_t i = 0; i < l->n; i++) {
                r = state_dir_snapshot_add(d, STATE_RECORD_USER + 1, l->payload[i], strlen(l->payload[i]));
                if (r < 0)
                        return r;
        }
        return 0;
}

/* ---- tests ---- */

static void test_fresh(void **state) {
        char *dir = tmpdir_new(), *psrd_path, *blk;
        sd_event *e = event_new();
        json_object *data, *v;
        StateDir *d;
        Pool *p;
        Orig o;

        (void) state;
        d = state_open(e, dir);
        assert_string_equal(state_dir_path(d), dir);
        assert_string_equal(state_dir_role(d), ROLE);
        assert_string_equal(state_dir_name(d), NAME);
        assert_null(state_dir_node(d));
        assert_int_equal(state_dir_n_records(d), 0);

        assert_mode(dir, "node.json", 0600);
        assert_mode(dir, "records", 0600);
        assert_mode(dir, "journal", 0600);
        assert_mode(dir, "lock", 0600);
        assert_mode(dir, "psrd", 0700);
        assert_int_equal(block_files_count(dir), 0);

        p = state_take(d, PEER, POOL_OWNER_PEER);
        assert_null(p->blocks);
        (void) block_add(p, 512, &o);
        /* A new block's file is written by the I/O thread, as UUID.new until the next checkpoint;
         * the callback comes once it is there. */
        wait_written(e, d);
        blk = block_file_first(dir);
        assert_non_null(strstr(blk, ".new"));
        psrd_path = path_join(dir, "psrd");
        assert_mode(psrd_path, strrchr(blk, '/') + 1, 0600);

        data = json_object_new_object();
        assert_non_null(data);
        assert_int_equal(json_object_object_add(data, "answer", json_object_new_int(42)), 0);
        assert_int_equal(json_object_object_add(data, "who", json_object_new_string("c1")), 0);
        assert_int_equal(state_dir_save_node(d, data), 0);
        /* The reference was not taken. */
        json_object_put(data);
        assert_non_null(state_dir_node(d));
        assert_mode(dir, "node.json", 0600);

        assert_int_equal(state_dir_close(d), 0);
        state_drop(d, &p, 1);

        d = state_open(e, dir);
        assert_non_null(state_dir_node(d));
        assert_true(json_object_object_get_ex(state_dir_node(d), "answer", &v));
        assert_int_equal(json_object_get_int(v), 42);
        assert_true(json_object_object_get_ex(state_dir_node(d), "who", &v));
        assert_string_equal(json_object_get_string(v), "c1");
        p = state_take(d, PEER, POOL_OWNER_PEER);
        assert_int_equal(p->n_blocks, 1);
        assert_block(p->blocks[0], &o, NULL);
        assert_int_equal(p->blocks[0]->n_used, 0);
        /* One pool per peer and owner. */
        {
                Pool *again = NULL;
                assert_int_equal(state_dir_take_pool(d, PEER, POOL_OWNER_PEER, &again), -EBUSY);
                assert_int_equal(state_dir_take_pool(d, "bad/name", POOL_OWNER_PEER, &again), -EINVAL);
                assert_null(again);
        }
        state_drop(d, &p, 1);

        orig_done(&o, 1);
        free(blk);
        free(psrd_path);
        sd_event_unref(e);
        tmpdir_free(dir);
}

static void test_ownership(void **state) {
        char *dir = tmpdir_new();
        sd_event *e = event_new();
        StateDir *d, *d2 = NULL, *ro = NULL;
        StatePoolInfo *info = NULL;
        Pool *p[2];
        Orig o[3];
        size_t n = 0;

        (void) state;
        d = state_open(e, dir);
        p[0] = state_take(d, PEER, POOL_OWNER_LOCAL);
        p[1] = state_take(d, PEER, POOL_OWNER_PEER);
        (void) block_add(p[0], 1000, &o[0]);
        (void) block_add(p[0], 500, &o[1]);
        (void) block_add(p[1], 2000, &o[2]);
        {
                Allocation *a = NULL;
                assert_int_equal(pool_allocate(p[0], 100, &a), 0);
                allocation_free(a);
        }

        assert_int_equal(state_dir_wait(d), 0);
        /* Held: a second writer is refused, whoever it claims to be; an inspector is not. */
        assert_int_equal(state_dir_open(e, dir, ROLE, NAME, 0, &d2), -EBUSY);
        assert_int_equal(state_dir_open(e, dir, "client", "c9", 0, &d2), -EBUSY);
        assert_null(d2);
        assert_int_equal(state_dir_open(NULL, dir, NULL, NULL, STATE_OPEN_READ_ONLY, &ro), 0);
        assert_string_equal(state_dir_role(ro), ROLE);
        assert_string_equal(state_dir_name(ro), NAME);
        assert_int_equal(state_dir_list_pools(ro, &info, &n), 0);
        assert_int_equal(n, 2);
        for (size_t i = 0; i < n; i++) {
                assert_string_equal(info[i].peer, PEER);
                if (info[i].owner == POOL_OWNER_LOCAL) {
                        assert_int_equal(info[i].stats.n_blocks, 2);
                        assert_int_equal(info[i].stats.total_bytes, 1500);
                } else {
                        assert_int_equal(info[i].owner, POOL_OWNER_PEER);
                        assert_int_equal(info[i].stats.n_blocks, 1);
                        assert_int_equal(info[i].stats.total_bytes, 2000);
                        assert_int_equal(info[i].stats.used_bytes, 0);
                }
        }
        free(info);
        /* Inspecting writes nothing. */
        assert_int_equal(state_dir_save_node(ro, NULL), -EROFS);
        assert_int_equal(state_dir_checkpoint(ro), 0);
        ro = state_dir_free(ro);

        assert_int_equal(state_dir_close(d), 0);
        state_drop(d, p, 2);

        /* Another node's directory. */
        assert_int_equal(state_dir_open(e, dir, ROLE, "h2", 0, &d2), -EXDEV);
        assert_int_equal(state_dir_open(e, dir, "client", NAME, 0, &d2), -EXDEV);
        assert_int_equal(state_dir_open(NULL, dir, "client", NAME, STATE_OPEN_READ_ONLY, &d2), -EXDEV);
        assert_null(d2);
        /* The refused opens let go of the lock. */
        d = state_open(e, dir);
        state_dir_free(d);

        /* Read-only, after the stop: the LOCAL pool shows only what was handed out. */
        assert_int_equal(state_dir_open(NULL, dir, NULL, NULL, STATE_OPEN_READ_ONLY, &ro), 0);
        assert_int_equal(state_dir_list_pools(ro, &info, &n), 0);
        assert_int_equal(n, 2);
        for (size_t i = 0; i < n; i++)
                if (info[i].owner == POOL_OWNER_LOCAL) {
                        assert_int_equal(info[i].stats.used_bytes, 100);
                        assert_int_equal(info[i].stats.available_bytes, 1400);
                }
        free(info);
        state_dir_free(ro);

        orig_done(o, ELEMENTSOF(o));
        sd_event_unref(e);
        tmpdir_free(dir);
}

static void test_read_only_empty(void **state) {
        char *dir = tmpdir_new();
        StateDir *ro = NULL;

        (void) state;
        /* A directory the service manager just created: no state yet, and inspecting it creates none. */
        assert_int_equal(state_dir_open(NULL, dir, NULL, NULL, STATE_OPEN_READ_ONLY, &ro), 0);
        assert_non_null(ro);
        assert_null(state_dir_role(ro));
        assert_null(state_dir_name(ro));
        assert_null(state_dir_node(ro));
        state_dir_free(ro);
        assert_int_equal(entries_count(dir), 0);
        tmpdir_free(dir);
}

/* Pools for the restart tests: LOCAL 200000 + 3000 bytes, PEER 4096 + 2048 bytes, all for PEER. */
typedef struct Setup {
        Pool *pools[2];
        Orig orig[4];
        Block *blocks[4];
} Setup;

static void setup_pools(StateDir *d, Setup *s) {
        s->pools[0] = state_take(d, PEER, POOL_OWNER_LOCAL);
        s->pools[1] = state_take(d, PEER, POOL_OWNER_PEER);
        s->blocks[0] = block_add(s->pools[0], 200000, &s->orig[0]);
        s->blocks[1] = block_add(s->pools[0], 3000, &s->orig[1]);
        s->blocks[2] = block_add(s->pools[1], 4096, &s->orig[2]);
        s->blocks[3] = block_add(s->pools[1], 2048, &s->orig[3]);
}

/* After a restart: the pools come back with the same blocks in the same order. */
static void reopen_pools(StateDir *d, Setup *s) {
        s->pools[0] = state_take(d, PEER, POOL_OWNER_LOCAL);
        s->pools[1] = state_take(d, PEER, POOL_OWNER_PEER);
        assert_int_equal(s->pools[0]->n_blocks, 2);
        assert_int_equal(s->pools[1]->n_blocks, 2);
        for (size_t i = 0; i < 4; i++) {
                s->blocks[i] = s->pools[i / 2]->blocks[i % 2];
                assert_true(uuid_equal(&s->blocks[i]->uuid, &s->orig[i].uuid));
        }
}

static void test_clean_restart(void **state) {
        char *dir = tmpdir_new();
        sd_event *e = event_new();
        Allocation *sent[3] = {}, *got[3] = {};
        uint8_t *used[4];
        StateDir *d;
        Setup s;

        (void) state;
        d = state_open(e, dir);
        setup_pools(d, &s);

        assert_int_equal(pool_allocate(s.pools[0], 5000, &sent[0]), 0);
        assert_int_equal(pool_allocate(s.pools[0], 2000, &sent[1]), 0);
        assert_int_equal(pool_allocate(s.pools[0], 700, &sent[2]), 0);
        pool_give_back(s.pools[0], sent[1]);

        got[0] = names(s.blocks[2], 100, 100, NULL, 0, 0);
        got[1] = names(s.blocks[2], 1000, 500, s.blocks[3], 0, 10);
        got[2] = names(s.blocks[2], 2000, 100, s.blocks[3], 2040, 8);
        for (size_t i = 0; i < 3; i++) {
                assert_int_equal(pool_take(s.pools[1], got[i], 0, NULL), 0);
                assert_allocation_data(got[i], s.orig, 4);
        }
        pool_give_back(s.pools[1], got[2]);

        assert_int_equal(s.blocks[0]->n_used, 5700);
        assert_int_equal(s.blocks[2]->n_used, 600);
        assert_int_equal(s.blocks[3]->n_used, 10);
        for (size_t i = 0; i < 4; i++)
                used[i] = bitmap_dup(s.blocks[i]);

        assert_int_equal(state_dir_close(d), 0);
        state_drop(d, s.pools, 2);

        d = state_open(e, dir);
        reopen_pools(d, &s);
        /* Nothing reserved was burned, and what was given back is there again. */
        for (size_t i = 0; i < 4; i++)
                assert_block(s.blocks[i], &s.orig[i], used[i]);
        assert_int_equal(s.blocks[0]->n_used, 5700);
        assert_int_equal(s.blocks[1]->n_used, 0);
        assert_range(s.blocks[0], 5000, 2000, false);
        assert_range(s.blocks[2], 2000, 100, false);
        assert_range(s.blocks[3], 2040, 8, false);
        assert_false(state_dir_peer_burned(d, PEER));

        /* The given-back bytes serve again, with their original values. */
        allocation_free(sent[1]);
        assert_int_equal(pool_allocate(s.pools[0], 2000, &sent[1]), 0);
        assert_int_equal(sent[1]->n_fragments, 1);
        assert_int_equal(sent[1]->fragments[0].start, 5000);
        assert_allocation_data(sent[1], s.orig, 4);
        allocation_free(got[2]);
        got[2] = names(s.blocks[2], 2000, 100, s.blocks[3], 2040, 8);
        assert_int_equal(pool_take(s.pools[1], got[2], 0, NULL), 0);
        assert_allocation_data(got[2], s.orig, 4);
        /* The others stay used. */
        {
                Allocation *again = names(s.blocks[2], 1000, 500, NULL, 0, 0);
                assert_int_equal(pool_take(s.pools[1], again, 0, NULL), -EALREADY);
                allocation_free(again);
        }

        state_drop(d, s.pools, 2);
        for (size_t i = 0; i < 3; i++) {
                allocation_free(sent[i]);
                allocation_free(got[i]);
        }
        for (size_t i = 0; i < 4; i++)
                free(used[i]);
        orig_done(s.orig, 4);
        sd_event_unref(e);
        tmpdir_free(dir);
}

static void test_crash_restart(void **state) {
        char *dir = tmpdir_new();
        sd_event *e = event_new();
        Allocation *sent[3] = {}, *got[2] = {}, *after = NULL;
        size_t burned;
        Pool *small;
        StateDir *d;
        Orig o_small;
        Setup s;

        (void) state;
        d = state_open(e, dir);
        setup_pools(d, &s);
        /* A block smaller than one reservation: reserved whole. */
        small = state_take(d, "p2", POOL_OWNER_LOCAL);
        (void) block_add(small, 400, &o_small);

        assert_int_equal(pool_allocate(s.pools[0], 5000, &sent[0]), 0);
        assert_int_equal(pool_allocate(s.pools[0], 1000, &sent[1]), 0);
        pool_give_back(s.pools[0], sent[1]);
        sent[1] = allocation_free(sent[1]);
        assert_int_equal(pool_allocate(s.pools[0], 3000, &sent[1]), 0);
        assert_int_equal(pool_allocate(small, 100, &sent[2]), 0);

        got[0] = names(s.blocks[2], 100, 100, s.blocks[3], 0, 10);
        got[1] = names(s.blocks[2], 300, 100, NULL, 0, 0);
        assert_int_equal(pool_take(s.pools[1], got[0], 0, NULL), 0);
        assert_int_equal(pool_take(s.pools[1], got[1], 0, NULL), 0);
        pool_give_back(s.pools[1], got[1]);

        /* kill -9: nothing more is written. */
        state_dir_release_pool(d, small, false);
        small = pool_free(small);
        state_drop(d, s.pools, 2);

        d = state_open(e, dir);
        reopen_pools(d, &s);
        small = state_take(d, "p2", POOL_OWNER_LOCAL);
        assert_int_equal(small->n_blocks, 1);

        /* Every byte reserved before the crash is used: what was handed out (8000 bytes) and at
         * most a chunk beyond; the rest is intact. */
        burned = s.blocks[0]->n_used;
        print_message("burned %zu of %zu bytes\n", burned, s.blocks[0]->size);
        assert_true(burned >= 8000 && burned <= 8000 + RESERVE_CHUNK_MAX);
        assert_range(s.blocks[0], 0, burned, true);
        assert_block(s.blocks[0], &s.orig[0], NULL);
        assert_int_equal(s.blocks[1]->n_used, 0);
        assert_int_equal(small->blocks[0]->n_used, 400);
        assert_block(small->blocks[0], &o_small, NULL);
        assert_false(state_dir_peer_burned(d, PEER));

        /* Nothing handed out before the crash is handed out again. */
        assert_int_equal(pool_allocate(s.pools[0], 4000, &after), 0);
        for (size_t i = 0; i < 2; i++)
                assert_false(fragments_overlap(after, sent[i]));
        assert_allocation_data(after, s.orig, 4);
        after = allocation_free(after);
        assert_int_equal(pool_allocate(small, 1, &after), -ENOSPC);
        assert_null(after);

        /* The peer's named bytes stay used; the given-back ones serve again. */
        assert_int_equal(s.blocks[2]->n_used, 100);
        assert_int_equal(s.blocks[3]->n_used, 10);
        assert_block(s.blocks[2], &s.orig[2], NULL);
        assert_block(s.blocks[3], &s.orig[3], NULL);
        {
                Allocation *replay = names(s.blocks[2], 100, 100, s.blocks[3], 0, 10);
                size_t bad = SIZE_MAX;

                assert_int_equal(pool_take(s.pools[1], replay, 0, &bad), -EALREADY);
                assert_int_equal(bad, 0);
                allocation_free(replay);
        }
        allocation_free(got[1]);
        got[1] = names(s.blocks[2], 300, 100, NULL, 0, 0);
        assert_int_equal(pool_take(s.pools[1], got[1], 0, NULL), 0);
        assert_allocation_data(got[1], s.orig, 4);

        /* A crash right after a restart from a crash: the same holds. */
        state_dir_release_pool(d, small, false);
        small = pool_free(small);
        state_drop(d, s.pools, 2);
        d = state_open(e, dir);
        reopen_pools(d, &s);
        assert_range(s.blocks[0], 0, burned + 4000, true);
        assert_range(s.blocks[2], 100, 100, true);
        assert_range(s.blocks[2], 300, 100, true);
        state_drop(d, s.pools, 2);

        for (size_t i = 0; i < 3; i++)
                allocation_free(sent[i]);
        for (size_t i = 0; i < 2; i++)
                allocation_free(got[i]);
        orig_done(s.orig, 4);
        orig_done(&o_small, 1);
        sd_event_unref(e);
        tmpdir_free(dir);
}

/* Reservations asked for in the background, whether durable in time or overtaken by the handing
 * out: after a crash at any point, all that was handed out stays used, and at most a chunk beyond. */
static void test_reserve_ahead(void **state) {
        const size_t block_size = 200000, chunk = RESERVE_CHUNK_MAX, piece = 700;
        char *dir = tmpdir_new();
        sd_event *e = event_new();
        Allocation *sent[80] = {};
        size_t n_sent = 0, handed = 0;
        Pool *p;
        StateDir *d;
        Block *b;
        Orig o;

        (void) state;
        d = state_open(e, dir);
        p = state_take(d, PEER, POOL_OWNER_LOCAL);
        (void) block_add(p, block_size, &o);

        for (unsigned round = 0; round < 4; round++) {
                /* Every third piece, the I/O thread catches up; otherwise it lags behind. */
                for (size_t i = 0; i < 20; i++) {
                        assert_int_equal(pool_allocate(p, piece, &sent[n_sent++]), 0);
                        handed += piece;
                        if (i % 3 == 2)
                                assert_int_equal(state_dir_wait(d), 0);
                }

                /* kill -9 */
                state_drop(d, &p, 1);
                d = state_open(e, dir);
                p = state_take(d, PEER, POOL_OWNER_LOCAL);
                b = p->blocks[0];
                print_message("round %u: handed out %zu, burned %zu\n", round, handed, b->n_used);
                assert_true(b->n_used >= handed && b->n_used <= handed + chunk);
                assert_range(b, 0, b->n_used, true);
                assert_block(b, &o, NULL);
                handed = b->n_used;
        }
        for (size_t i = 0; i < n_sent; i++)
                for (size_t j = 0; j < i; j++)
                        assert_false(fragments_overlap(sent[i], sent[j]));

        /* At a block's end, the next block is reserved ahead; a checkpoint retiring the journal
         * that says so keeps it in the block's file. */
        {
                Orig o2[2];
                Block *blocks[2];
                Allocation *x = NULL;
                size_t left = p->blocks[0]->size - p->blocks[0]->n_used;

                blocks[0] = block_add(p, 8000, &o2[0]);
                blocks[1] = block_add(p, 8000, &o2[1]);
                assert_int_equal(pool_allocate(p, left, &x), 0);
                allocation_free(x);
                for (size_t used = 0; used < 8000; used += 500) {
                        assert_int_equal(pool_allocate(p, 500, &x), 0);
                        allocation_free(x);
                        assert_int_equal(state_dir_wait(d), 0);
                }
                assert_int_equal(blocks[0]->n_used, 8000);
                assert_int_equal(state_dir_checkpoint(d), 0);
                /* Within what was reserved ahead: no sync, no record. */
                assert_int_equal(pool_allocate(p, 300, &x), 0);
                assert_int_equal(blocks[1]->n_used, 300);
                allocation_free(x);

                /* kill -9 */
                state_drop(d, &p, 1);
                d = state_open(e, dir);
                p = state_take(d, PEER, POOL_OWNER_LOCAL);
                b = p->blocks[p->n_blocks - 1];
                assert_true(b->n_used >= 300);
                assert_range(b, 0, b->n_used, true);
                assert_block(b, &o2[1], NULL);
                orig_done(o2, 2);
        }

        state_drop(d, &p, 1);
        for (size_t i = 0; i < n_sent; i++)
                allocation_free(sent[i]);
        orig_done(&o, 1);
        sd_event_unref(e);
        tmpdir_free(dir);
}

/* Once the background work is done, a take from each of s's pools (the peer's from offset at) makes
 * no sync on the loop. */
static void assert_takes_without_sync(StateDir *d, Setup *s, size_t at) {
        Allocation *a = NULL;

        assert_int_equal(state_dir_wait(d), 0);
        loop_syncs = 0;
        assert_int_equal(pool_allocate(s->pools[0], 700, &a), 0);
        allocation_free(a);
        a = names(s->blocks[2], at, 100, NULL, 0, 0);
        assert_int_equal(pool_take(s->pools[1], a, 0, NULL), 0);
        allocation_free(a);
        assert_int_equal(loop_syncs, 0);
}

/* A pool's first take, and the first take from a block that arrived late, find the block reserved
 * (own pools) or marked active (peers' pools) in the background: the loop does not sync. */
static void test_ahead_of_first_take(void **state) {
        char *dir = tmpdir_new();
        sd_event *e = event_new();
        Allocation *a = NULL;
        Orig late[2];
        Pool *p;
        StateDir *d;
        Setup s;

        (void) state;
        d = state_open(e, dir);
        setup_pools(d, &s);
        assert_takes_without_sync(d, &s, 0);

        /* The same after a restart (kill -9), which burns what was reserved and not handed out. */
        state_drop(d, s.pools, 2);
        d = state_open(e, dir);
        reopen_pools(d, &s);
        assert_takes_without_sync(d, &s, 100);

        /* A block that arrives once the pool's last one is reserved to its end. */
        p = state_take(d, "p2", POOL_OWNER_LOCAL);
        (void) block_add(p, 3000, &late[0]);
        assert_int_equal(pool_allocate(p, 2900, &a), 0);
        allocation_free(a);
        assert_int_equal(state_dir_wait(d), 0);
        (void) block_add(p, 3000, &late[1]);
        assert_int_equal(state_dir_wait(d), 0);
        loop_syncs = 0;
        assert_int_equal(pool_allocate(p, 300, &a), 0);
        allocation_free(a);
        assert_int_equal(p->blocks[1]->n_used, 200);
        assert_int_equal(loop_syncs, 0);

        state_dir_release_pool(d, p, false);
        pool_free(p);
        state_drop(d, s.pools, 2);
        orig_done(s.orig, 4);
        orig_done(late, 2);
        sd_event_unref(e);
        tmpdir_free(dir);
}

static void test_records(void **state) {
        char *dir = tmpdir_new();
        sd_event *e = event_new();
        Live live = {.n = 2, .payload = {"live-1", "live-2"}};
        Seen seen = {};
        StateDir *d;

        (void) state;
        d = state_open(e, dir);
        assert_int_equal(append_str(d, STATE_RECORD_USER, "first"), 0);
        assert_int_equal(append_str(d, STATE_RECORD_USER + 3, ""), 0);
        assert_int_equal(append_str(d, 255 - 1, "third record"), 0);
        /* The module's own types, and the end marker, are not the daemon's. */
        assert_int_equal(append_str(d, 1, "x"), -EINVAL);
        assert_int_equal(append_str(d, STATE_RECORD_USER - 1, "x"), -EINVAL);
        assert_int_equal(append_str(d, 255, "x"), -EINVAL);
        assert_int_equal(state_dir_snapshot_add(d, 2, "x", 1), -EINVAL);
        {
                uint8_t *big = calloc(1, STATE_RECORD_SIZE_MAX + 1);
                assert_non_null(big);
                assert_int_equal(state_dir_append(d, STATE_RECORD_USER, big, STATE_RECORD_SIZE_MAX + 1),
                                 -E2BIG);
                free(big);
        }
        assert_int_equal(state_dir_sync(d), 0);
        state_dir_free(d);

        d = state_open(e, dir);
        assert_int_equal(state_dir_n_records(d), 3);
        assert_int_equal(state_dir_replay(d, on_record, &seen), 0);
        assert_int_equal(seen.n, 3);
        assert_seen(&seen, 0, STATE_RECORD_USER, "first");
        assert_seen(&seen, 1, STATE_RECORD_USER + 3, "");
        assert_seen(&seen, 2, 254, "third record");

        /* A checkpoint keeps what the writer names, and the journal what comes after. */
        state_dir_set_snapshot_writer(d, write_live, &live);
        assert_int_equal(append_str(d, STATE_RECORD_USER, "folded"), 0);
        assert_int_equal(state_dir_checkpoint(d), 0);
        assert_int_equal(live.calls, 1);
        assert_int_equal(append_str(d, STATE_RECORD_USER + 2, "after-1"), 0);
        assert_int_equal(append_str(d, STATE_RECORD_USER + 2, "after-2"), 0);
        assert_int_equal(state_dir_flush(d), 0);
        state_dir_free(d);

        d = state_open(e, dir);
        assert_int_equal(state_dir_n_records(d), 4);
        seen = (Seen){};
        assert_int_equal(state_dir_replay(d, on_record, &seen), 0);
        assert_int_equal(seen.n, 4);
        assert_seen(&seen, 0, STATE_RECORD_USER + 1, "live-1");
        assert_seen(&seen, 1, STATE_RECORD_USER + 1, "live-2");
        assert_seen(&seen, 2, STATE_RECORD_USER + 2, "after-1");
        assert_seen(&seen, 3, STATE_RECORD_USER + 2, "after-2");

        /* A clean stop folds everything into the snapshot. */
        live.n = 1;
        live.payload[0] = "only";
        state_dir_set_snapshot_writer(d, write_live, &live);
        assert_int_equal(append_str(d, STATE_RECORD_USER + 2, "after-3"), 0);
        assert_int_equal(state_dir_close(d), 0);
        state_dir_free(d);
        d = state_open(e, dir);
        seen = (Seen){};
        assert_int_equal(state_dir_replay(d, on_record, &seen), 0);
        assert_int_equal(seen.n, 1);
        assert_seen(&seen, 0, STATE_RECORD_USER + 1, "only");
        state_dir_free(d);

        sd_event_unref(e);
        tmpdir_free(dir);
}

static int replay_stop(uint8_t type, const void *payload, size_t size, void *userdata) {
        unsigned *calls = userdata;

        (void) type;
        (void) payload;
        (void) size;
        return ++*calls == 2 ? -ENOTRECOVERABLE : 0;
}

static void test_replay_stops(void **state) {
        char *dir = tmpdir_new();
        sd_event *e = event_new();
        unsigned calls = 0;
        StateDir *d;

        (void) state;
        d = state_open(e, dir);
        for (unsigned i = 0; i < 4; i++)
                assert_int_equal(append_str(d, STATE_RECORD_USER, "r"), 0);
        assert_int_equal(state_dir_flush(d), 0);
        state_dir_free(d);
        d = state_open(e, dir);
        assert_int_equal(state_dir_replay(d, replay_stop, &calls), -ENOTRECOVERABLE);
        assert_int_equal(calls, 2);
        state_dir_free(d);
        sd_event_unref(e);
        tmpdir_free(dir);
}

/* A stopped node with something in every file: node.json, a snapshot with records, a journal with a
 * record after its header, and a block. */
static void make_full_state(sd_event *e, const char *dir) {
        Live live = {.n = 2, .payload = {"share-a", "share-b"}};
        Allocation *a = NULL;
        json_object *data;
        StateDir *d;
        Pool *p;
        Orig o;

        d = state_open(e, dir);
        state_dir_set_snapshot_writer(d, write_live, &live);
        data = json_object_new_object();
        assert_non_null(data);
        assert_int_equal(json_object_object_add(data, "clients", json_object_new_string("c1 c2 c3")), 0);
        assert_int_equal(state_dir_save_node(d, data), 0);
        json_object_put(data);
        p = state_take(d, PEER, POOL_OWNER_LOCAL);
        (void) block_add(p, 1000, &o);
        assert_int_equal(pool_allocate(p, 10, &a), 0);
        assert_int_equal(state_dir_close(d), 0);
        assert_int_equal(append_str(d, STATE_RECORD_USER, "after the stop"), 0);
        assert_int_equal(append_str(d, STATE_RECORD_USER, "and another"), 0);
        assert_int_equal(state_dir_sync(d), 0);
        state_drop(d, &p, 1);
        allocation_free(a);
        orig_done(&o, 1);
}

static void test_corruption(void **state) {
        char *dir = tmpdir_new(), *pristine = tmpdir_new(), *blk;
        const char *files[] = {"records", "journal", NULL};
        sd_event *e = event_new();
        StateDir *d;

        (void) state;
        make_full_state(e, dir);
        tree_copy(dir, pristine);
        blk = block_file_first(dir);
        files[2] = strrchr(blk, '/') + 1;

        d = state_open(e, dir);
        assert_int_equal(state_dir_n_records(d), 4);
        state_dir_free(d);

        for (size_t i = 0; i < ELEMENTSOF(files); i++) {
                char *p = i < 2 ? path_join(dir, files[i]) : strdup(blk);
                size_t n;
                uint8_t *buf;

                assert_non_null(p);
                buf = file_read(p, &n);
                /* The journal has more than its header. */
                assert_true(file_data_end(p, buf, n) > JOURNAL_DATA_OFFSET + 8);

                file_flip_middle(p);
                print_message("flipped a byte in %s\n", files[i]);
                assert_int_equal(state_open_error(e, dir), -EBADMSG);
                tree_restore(pristine, dir);

                /* The last record's payload. */
                file_flip(p, -3);
                assert_int_equal(state_open_error(e, dir), -EBADMSG);
                tree_restore(pristine, dir);

                file_cut(p, 1);
                print_message("cut a byte off %s\n", files[i]);
                assert_int_equal(state_open_error(e, dir), -EBADMSG);
                tree_restore(pristine, dir);

                /* The header alone. */
                buf[i < 2 ? 3 : 20] ^= 0x80;
                file_write(p, buf, n);
                assert_int_equal(state_open_error(e, dir), -EBADMSG);
                tree_restore(pristine, dir);

                if (i == 1) {
                        /* Where the journal's records end: past the file, before the records. */
                        uint64_t bad[] = {htole64(n + 1), htole64(JOURNAL_DATA_OFFSET - 1)};

                        for (size_t k = 0; k < ELEMENTSOF(bad); k++) {
                                uint8_t *copy = file_read(p, &n);

                                memcpy(copy + JOURNAL_END_OFFSET, &bad[k], sizeof(bad[k]));
                                file_write(p, copy, n);
                                free(copy);
                                assert_int_equal(state_open_error(e, dir), -EBADMSG);
                                tree_restore(pristine, dir);
                        }
                }

                free(buf);
                free(p);
        }

        /* Missing files of a directory that has state. */
        for (size_t i = 0; i < 2; i++) {
                char *p = path_join(dir, files[i]);

                assert_int_equal(unlink(p), 0);
                assert_int_equal(state_open_error(e, dir), -EBADMSG);
                tree_restore(pristine, dir);
                free(p);
        }
        {
                char *p = path_join(dir, "node.json");

                /* Blocks without the node that owns them. */
                assert_int_equal(unlink(p), 0);
                assert_int_equal(state_open_error(e, dir), -EBADMSG);
                tree_restore(pristine, dir);
                free(p);
        }

        /* A journal of another generation than the snapshot's. */
        {
                uint64_t g = journal_generation(dir) + 1;

                journal_rewrite_header(dir, &g, NULL);
                assert_int_equal(state_open_error(e, dir), -EBADMSG);
                tree_restore(pristine, dir);
        }

        /* A block file under another block's name. */
        {
                char *other;
                size_t n;
                uint8_t *buf = file_read(blk, &n);

                assert_true(asprintf(&other, "%s/psrd/00000000-0000-4000-8000-000000000000.blk", dir) > 0);
                file_write(other, buf, n);
                assert_int_equal(state_open_error(e, dir), -EBADMSG);
                tree_restore(pristine, dir);
                free(other);
                free(buf);
        }

        /* Restored, it opens again. */
        d = state_open(e, dir);
        assert_int_equal(state_dir_n_records(d), 4);
        state_dir_free(d);

        free(blk);
        tmpdir_free(pristine);
        sd_event_unref(e);
        tmpdir_free(dir);
}

static void test_corrupt_node(void **state) {
        char *dir = tmpdir_new(), *path;
        sd_event *e = event_new();
        size_t n, accepted = 0;
        uint8_t *orig, *longer;
        int r;

        (void) state;
        make_full_state(e, dir);
        path = path_join(dir, "node.json");
        orig = file_read(path, &n);

        file_flip_middle(path);
        assert_int_equal(state_open_error(e, dir), -EBADMSG);
        file_write(path, orig, n);

        /* Whatever byte a flip hits, the file is refused, never read as something else. */
        for (size_t i = 0; i < n; i++) {
                orig[i] ^= 0x01;
                file_write(path, orig, n);
                orig[i] ^= 0x01;
                r = state_open_error(e, dir);
                if (r != -EBADMSG) {
                        print_message("node.json of %zu bytes, bit 0 of byte %zu (%#x) flipped: %s\n", n, i,
                                      orig[i], r < 0 ? strerror(-r) : "accepted");
                        accepted++;
                }
        }

        /* Cut short or grown, it is no longer what was written. */
        file_write(path, orig, n - 1);
        r = state_open_error(e, dir);
        if (r != -EBADMSG) {
                print_message("node.json cut by one byte: %s\n", r < 0 ? strerror(-r) : "accepted");
                accepted++;
        }
        longer = malloc(n + 4);
        assert_non_null(longer);
        memcpy(longer, orig, n);
        memcpy(longer + n, "{}\n", 3);
        file_write(path, longer, n + 3);
        r = state_open_error(e, dir);
        if (r != -EBADMSG) {
                print_message("node.json with bytes appended: %s\n", r < 0 ? strerror(-r) : "accepted");
                accepted++;
        }

        file_write(path, orig, n);
        assert_int_equal(state_open_error(e, dir), 0);

        free(longer);
        free(orig);
        free(path);
        sd_event_unref(e);
        tmpdir_free(dir);
        assert_int_equal(accepted, 0);
}

static void test_checkpoint_cut_short(void **state) {
        char *dir = tmpdir_new(), *journal;
        sd_event *e = event_new();
        Live live = {.n = 1, .payload = {"kept"}};
        Seen seen = {};
        uint8_t *old;
        Allocation *a;
        StateDir *d;
        Block *b;
        Pool *p;
        Orig o;
        size_t n;

        (void) state;
        journal = path_join(dir, "journal");
        d = state_open(e, dir);
        state_dir_set_snapshot_writer(d, write_live, &live);
        p = state_take(d, PEER, POOL_OWNER_PEER);
        b = block_add(p, 1000, &o);
        a = names(b, 10, 20, NULL, 0, 0);
        assert_int_equal(pool_take(p, a, 0, NULL), 0);
        assert_int_equal(append_str(d, STATE_RECORD_USER + 1, "kept"), 0);
        old = file_read(journal, &n);
        assert_int_equal(state_dir_checkpoint(d), 0);
        assert_int_equal(journal_generation(dir), 2);
        state_drop(d, &p, 1);

        /* The system stopped after the new snapshot, before the new journal: the old one is stale,
         * and what it holds is not applied twice. */
        file_write(journal, old, n);
        assert_int_equal(journal_generation(dir), 1);
        d = state_open(e, dir);
        /* Finished by a checkpoint of its own. */
        assert_int_equal(journal_generation(dir), 3);
        assert_int_equal(state_dir_replay(d, on_record, &seen), 0);
        assert_int_equal(seen.n, 1);
        assert_seen(&seen, 0, STATE_RECORD_USER + 1, "kept");
        p = state_take(d, PEER, POOL_OWNER_PEER);
        assert_int_equal(p->blocks[0]->n_used, 20);
        assert_range(p->blocks[0], 10, 20, true);
        assert_block(p->blocks[0], &o, NULL);
        allocation_free(a);
        a = names(p->blocks[0], 10, 20, NULL, 0, 0);
        assert_int_equal(pool_take(p, a, 0, NULL), -EALREADY);
        state_drop(d, &p, 1);

        allocation_free(a);
        free(old);
        free(journal);
        orig_done(&o, 1);
        sd_event_unref(e);
        tmpdir_free(dir);
}

/* A checkpoint in the background cut short before its last rename: its new journal (journal.next)
 * holds what came after it began. It is read after the old journal while the old snapshot is in
 * place (variant 0), and alone once the new snapshot is (variant 1). */
static void test_checkpoint_next_journal(void **state) {
        char *dir, *journal, *next, *records;
        sd_event *e = event_new();
        uint8_t *old_journal, *old_records;
        size_t n_journal, n_records;
        Allocation *a[2];
        StateDir *d;
        Block *b;
        Pool *p;
        Orig o;

        (void) state;
        for (unsigned variant = 0; variant < 4; variant++) {
                Seen seen = {};

                dir = tmpdir_new();
                journal = path_join(dir, "journal");
                next = path_join(dir, "journal.next");
                records = path_join(dir, "records");

                d = state_open(e, dir);
                p = state_take(d, PEER, POOL_OWNER_PEER);
                b = block_add(p, 1000, &o);
                a[0] = names(b, 10, 20, NULL, 0, 0);
                assert_int_equal(pool_take(p, a[0], 0, NULL), 0);
                assert_int_equal(state_dir_flush(d), 0);
                old_journal = file_read(journal, &n_journal);
                old_records = file_read(records, &n_records);
                assert_int_equal(state_dir_checkpoint(d), 0);
                a[1] = names(b, 100, 20, NULL, 0, 0);
                assert_int_equal(pool_take(p, a[1], 0, NULL), 0);
                assert_int_equal(append_str(d, STATE_RECORD_USER + 1, "after"), 0);
                state_drop(d, &p, 1);

                /* The journal the checkpoint started has not got its name yet. */
                assert_int_equal(rename(journal, next), 0);
                file_write(journal, old_journal, n_journal);
                if (variant != 1)
                        file_write(records, old_records, n_records);

                if (variant == 2) {
                        /* Its header did not reach the disk before the system went down: nothing
                         * relied on it, so it is dropped; on the same boot it is damage. */
                        assert_int_equal(truncate(next, 20), 0);
                        assert_int_equal(state_open_error(e, dir), -EBADMSG);
                        journal_set_other_boot(dir);
                }
                if (variant == 3) {
                        /* Created, and the process stopped before its header was in it: nothing
                         * relied on it, so it is dropped on the same boot too. */
                        assert_int_equal(truncate(next, 0), 0);
                        assert_int_equal(truncate(next, 4096), 0);
                }

                d = state_open(e, dir);
                assert_int_equal(access(next, F_OK), -1);
                assert_int_equal(journal_generation(dir), 3);
                assert_int_equal(state_dir_replay(d, on_record, &seen), 0);
                p = state_take(d, PEER, POOL_OWNER_PEER);
                if (variant < 2) {
                        assert_int_equal(seen.n, 1);
                        assert_seen(&seen, 0, STATE_RECORD_USER + 1, "after");
                        /* Both takes are known: neither is accepted again. */
                        for (size_t i = 0; i < 2; i++) {
                                Allocation *again = names(p->blocks[0], i == 0 ? 10 : 100, 20, NULL, 0, 0);
                                assert_int_equal(pool_take(p, again, 0, NULL), -EALREADY);
                                allocation_free(again);
                        }
                } else if (variant == 2)
                        /* The journal of the earlier boot says the block was active: burned. */
                        assert_int_equal(p->blocks[0]->n_used, p->blocks[0]->size);
                else {
                        /* Only what the old journal holds. */
                        assert_int_equal(seen.n, 0);
                        assert_int_equal(p->blocks[0]->n_used, 20);
                        assert_range(p->blocks[0], 10, 20, true);
                }
                state_drop(d, &p, 1);

                for (size_t i = 0; i < 2; i++)
                        allocation_free(a[i]);
                free(old_journal);
                free(old_records);
                free(journal);
                free(next);
                free(records);
                orig_done(&o, 1);
                tmpdir_free(dir);
        }
        sd_event_unref(e);
}

static char *block_path(const char *dir, const Uuid *uuid, const char *suffix) {
        char u[UUID_STRING_MAX], *p;

        assert_true(asprintf(&p, "%s/psrd/%s%s", dir, uuid_to_string(uuid, u), suffix) > 0);
        return p;
}

/* A new block's file is UUID.new until a checkpoint writes UUID.blk: it survives a kill -9, a
 * damaged one is refused on the same boot and dropped after a reboot (it was never synced), and
 * one a checkpoint already replaced is removed. */
static void test_new_block_file(void **state) {
        char *dir = tmpdir_new(), *x_new, *x_blk, *z_new;
        sd_event *e = event_new();
        Allocation *a;
        StateDir *d;
        Block *b, *w;
        Pool *p;
        Orig o[5];
        uint8_t *copy;
        size_t n;

        (void) state;
        d = state_open(e, dir);
        p = state_take(d, PEER, POOL_OWNER_PEER);
        b = block_add(p, 1000, &o[0]);
        a = names(b, 10, 20, NULL, 0, 0);
        assert_int_equal(pool_take(p, a, 0, NULL), 0);
        allocation_free(a);
        state_drop(d, &p, 1);
        x_new = block_path(dir, &o[0].uuid, ".new");
        x_blk = block_path(dir, &o[0].uuid, ".blk");
        assert_int_equal(access(x_new, F_OK), 0);
        assert_int_equal(access(x_blk, F_OK), -1);

        /* kill -9: the block is back with its takes, and gets its name. */
        d = state_open(e, dir);
        p = state_take(d, PEER, POOL_OWNER_PEER);
        assert_int_equal(p->n_blocks, 1);
        assert_block(p->blocks[0], &o[0], NULL);
        assert_range(p->blocks[0], 10, 20, true);
        assert_int_equal(access(x_new, F_OK), -1);
        assert_int_equal(access(x_blk, F_OK), 0);

        /* A checkpoint stopped after it wrote a block file and before it removed the older copy. */
        copy = file_read(x_blk, &n);
        file_write(x_new, copy, n);
        free(copy);
        (void) block_add(p, 500, &o[1]);
        state_drop(d, &p, 1);
        d = state_open(e, dir);
        p = state_take(d, PEER, POOL_OWNER_PEER);
        assert_int_equal(p->n_blocks, 2);
        assert_int_equal(access(x_new, F_OK), -1);

        /* Cut short: damage on the same boot, a write the system lost after a reboot. */
        (void) block_add(p, 300, &o[2]);
        state_drop(d, &p, 1);
        z_new = block_path(dir, &o[2].uuid, ".new");
        file_cut(z_new, 10);
        assert_int_equal(state_open_error(e, dir), -EBADMSG);
        journal_set_other_boot(dir);
        d = state_open(e, dir);
        p = state_take(d, PEER, POOL_OWNER_PEER);
        assert_int_equal(p->n_blocks, 2);
        assert_int_equal(access(z_new, F_OK), -1);

        /* A checkpoint gives a new block's file its name, or writes it anew if the block changed. */
        (void) block_add(p, 700, &o[3]);
        w = block_add(p, 600, &o[4]);
        a = names(w, 0, 30, NULL, 0, 0);
        assert_int_equal(pool_take(p, a, 0, NULL), 0);
        allocation_free(a);
        assert_int_equal(state_dir_checkpoint(d), 0);
        for (size_t i = 3; i < 5; i++) {
                char *new = block_path(dir, &o[i].uuid, ".new"), *blk = block_path(dir, &o[i].uuid, ".blk");

                assert_int_equal(access(new, F_OK), -1);
                assert_int_equal(access(blk, F_OK), 0);
                free(new);
                free(blk);
        }
        state_drop(d, &p, 1);
        d = state_open(e, dir);
        p = state_take(d, PEER, POOL_OWNER_PEER);
        assert_int_equal(p->n_blocks, 4);
        assert_block(p->blocks[2], &o[3], NULL);
        assert_int_equal(p->blocks[2]->n_used, 0);
        assert_block(p->blocks[3], &o[4], NULL);
        assert_int_equal(p->blocks[3]->n_used, 30);
        assert_range(p->blocks[3], 0, 30, true);
        state_drop(d, &p, 1);

        free(x_new);
        free(x_blk);
        free(z_new);
        orig_done(o, 5);
        sd_event_unref(e);
        tmpdir_free(dir);
}

static void test_timers(void **state) {
        char *dir = tmpdir_new();
        sd_event *e = event_new();
        Live live = {.n = 1, .payload = {"timed"}};
        Seen seen = {};
        uint64_t start, now;
        StateDir *d;

        (void) state;
        d = state_open(e, dir);
        state_dir_set_snapshot_writer(d, write_live, &live);
        assert_int_equal(state_dir_set_checkpoint_interval(d, 0), 0);
        assert_int_equal(state_dir_set_checkpoint_interval(d, 1), 0);
        assert_int_equal(append_str(d, STATE_RECORD_USER + 1, "timed"), 0);
        assert_int_equal(journal_generation(dir), 1);

        /* With changes, a checkpoint comes by itself within the interval and its accuracy. */
        assert_true(sd_event_now(e, CLOCK_MONOTONIC, &start) >= 0);
        do {
                assert_true(sd_event_run(e, 100 * 1000) >= 0);
                assert_true(sd_event_now(e, CLOCK_MONOTONIC, &now) >= 0);
        } while (live.calls == 0 && now - start < 5 * 1000 * 1000);
        assert_int_equal(live.calls, 1);
        /* Written in the background. */
        assert_int_equal(state_dir_wait(d), 0);
        assert_int_equal(journal_generation(dir), 2);
        state_dir_free(d);

        d = state_open(e, dir);
        assert_int_equal(state_dir_replay(d, on_record, &seen), 0);
        assert_int_equal(seen.n, 1);
        assert_seen(&seen, 0, STATE_RECORD_USER + 1, "timed");
        state_dir_free(d);

        sd_event_unref(e);
        tmpdir_free(dir);
}

static bool all_zero(const uint8_t *p, size_t n) {
        for (size_t i = 0; i < n; i++)
                if (p[i] != 0)
                        return false;
        return true;
}

static ino_t file_inode(const char *path) {
        struct stat st;

        assert_int_equal(stat(path, &st), 0);
        return st.st_ino;
}

/* A spare journal, allocated and empty, is made ready after each checkpoint; the next checkpoint
 * takes it as its journal rather than create a file on the event loop. Left over, it is harmless. */
static void test_spare_journal(void **state) {
        char *dir = tmpdir_new(), *journal = path_join(dir, "journal"),
             *spare = path_join(dir, "journal.spare");
        sd_event *e = event_new();
        Live live = {.n = 1, .payload = {"spare"}};
        Seen seen = {};
        uint8_t *buf;
        size_t n;
        ino_t ino;
        StateDir *d;

        (void) state;
        d = state_open(e, dir);
        state_dir_set_snapshot_writer(d, write_live, &live);
        assert_int_equal(append_str(d, STATE_RECORD_USER + 1, "one"), 0);
        /* In the background. */
        assert_int_equal(state_dir_set_checkpoint_interval(d, 1), 0);
        while (live.calls == 0)
                assert_true(sd_event_run(e, UINT64_MAX) >= 0);
        assert_int_equal(state_dir_wait(d), 0);
        assert_int_equal(state_dir_set_checkpoint_interval(d, 0), 0);
        buf = file_read(spare, &n);
        assert_int_equal(n, 1024 * 1024);
        assert_true(all_zero(buf, n));
        free(buf);

        /* Taken by the next checkpoint, and another made ready. */
        ino = file_inode(spare);
        assert_int_equal(append_str(d, STATE_RECORD_USER + 1, "two"), 0);
        assert_int_equal(state_dir_checkpoint(d), 0);
        assert_true(file_inode(journal) == ino);
        assert_true(file_inode(spare) != ino);
        assert_int_equal(append_str(d, STATE_RECORD_USER + 1, "three"), 0);
        state_drop(d, NULL, 0);

        /* Whatever a crash left in it is not read, and the next one is empty again. */
        file_write(spare, (const uint8_t *) "junk", 4);
        d = state_open(e, dir);
        state_dir_set_snapshot_writer(d, write_live, &live);
        assert_int_equal(state_dir_replay(d, on_record, &seen), 0);
        assert_int_equal(seen.n, 2);
        assert_seen(&seen, 0, STATE_RECORD_USER + 1, "spare");
        assert_seen(&seen, 1, STATE_RECORD_USER + 1, "three");
        assert_int_equal(append_str(d, STATE_RECORD_USER + 1, "four"), 0);
        assert_int_equal(state_dir_checkpoint(d), 0);
        buf = file_read(spare, &n);
        assert_int_equal(n, 1024 * 1024);
        assert_true(all_zero(buf, n));
        free(buf);
        state_dir_free(d);

        free(journal);
        free(spare);
        sd_event_unref(e);
        tmpdir_free(dir);
}

/* A crash with takes from the first PEER block, the second untouched. */
static void make_crashed_peer(sd_event *e, const char *dir, Orig o[2]) {
        Allocation *a;
        StateDir *d;
        Block *b;
        Pool *p;

        d = state_open(e, dir);
        p = state_take(d, PEER, POOL_OWNER_PEER);
        b = block_add(p, 4096, &o[0]);
        (void) block_add(p, 2048, &o[1]);
        for (size_t i = 0; i < 3; i++) {
                a = names(b, 100 * i, 50, NULL, 0, 0);
                assert_int_equal(pool_take(p, a, 0, NULL), 0);
                allocation_free(a);
        }
        state_drop(d, &p, 1);
}

static void test_reboot(void **state) {
        char *dir = tmpdir_new(), *pristine = tmpdir_new(), *journal;
        sd_event *e = event_new();
        StateDir *d;
        Pool *p;
        Orig o[2];

        (void) state;
        make_crashed_peer(e, dir, o);
        tree_copy(dir, pristine);
        journal = path_join(dir, "journal");

        /* The same boot: only the named bytes are used. */
        d = state_open(e, dir);
        p = state_take(d, PEER, POOL_OWNER_PEER);
        assert_int_equal(p->n_blocks, 2);
        assert_int_equal(p->blocks[0]->n_used, 150);
        assert_false(state_dir_peer_burned(d, PEER));
        state_drop(d, &p, 1);
        tree_restore(pristine, dir);

        /* After a reboot, the block taken from is burned whole; the other is intact. */
        journal_set_other_boot(dir);
        d = state_open(e, dir);
        assert_true(state_dir_peer_burned(d, PEER));
        assert_false(state_dir_peer_burned(d, "p2"));
        p = state_take(d, PEER, POOL_OWNER_PEER);
        assert_int_equal(p->blocks[0]->n_used, 4096);
        assert_block(p->blocks[0], &o[0], NULL);
        assert_int_equal(p->blocks[1]->n_used, 0);
        assert_block(p->blocks[1], &o[1], NULL);
        state_drop(d, &p, 1);
        /* That was folded into a checkpoint: it holds without the old journal. */
        d = state_open(e, dir);
        p = state_take(d, PEER, POOL_OWNER_PEER);
        assert_int_equal(p->blocks[0]->n_used, 4096);
        assert_int_equal(p->blocks[1]->n_used, 0);
        state_drop(d, &p, 1);
        tree_restore(pristine, dir);

        /* A torn last record: lost by the reboot, tolerated... */
        journal_tear(journal, 5);
        journal_set_other_boot(dir);
        d = state_open(e, dir);
        assert_true(state_dir_peer_burned(d, PEER));
        p = state_take(d, PEER, POOL_OWNER_PEER);
        assert_int_equal(p->blocks[0]->n_used, 4096);
        assert_int_equal(p->blocks[1]->n_used, 0);
        state_drop(d, &p, 1);
        tree_restore(pristine, dir);

        /* ...but not within one boot, where nothing is lost that was written. */
        journal_tear(journal, 5);
        assert_int_equal(state_open_error(e, dir), -EBADMSG);
        tree_restore(pristine, dir);

        /* What lies past the records' end is a record a kill -9 cut short: ignored. */
        {
                size_t n, end;
                uint8_t *buf = file_read(journal, &n);

                end = file_data_end(journal, buf, n);
                memset(buf + end, 0x5a, 40);
                file_write(journal, buf, n);
                free(buf);
        }
        d = state_open(e, dir);
        assert_false(state_dir_peer_burned(d, PEER));
        p = state_take(d, PEER, POOL_OWNER_PEER);
        assert_int_equal(p->blocks[0]->n_used, 150);
        state_drop(d, &p, 1);

        free(journal);
        orig_done(o, 2);
        tmpdir_free(pristine);
        sd_event_unref(e);
        tmpdir_free(dir);
}

static void test_release_and_drop(void **state) {
        char *dir = tmpdir_new();
        sd_event *e = event_new();
        Pool *p[3], *gone;
        StatePoolInfo *info = NULL;
        StateDir *d;
        Orig o[5];
        size_t n;

        (void) state;
        d = state_open(e, dir);
        p[0] = state_take(d, PEER, POOL_OWNER_LOCAL);
        p[1] = state_take(d, "p2", POOL_OWNER_PEER);
        p[2] = state_take(d, "p2", POOL_OWNER_LOCAL);
        (void) block_add(p[0], 100, &o[0]);
        (void) block_add(p[1], 200, &o[1]);
        (void) block_add(p[1], 300, &o[2]);
        (void) block_add(p[2], 400, &o[3]);
        gone = state_take(d, "p3", POOL_OWNER_PEER);
        (void) block_add(gone, 500, &o[4]);
        assert_int_equal(state_dir_wait(d), 0);
        assert_int_equal(block_files_count(dir), 5);

        /* A link reset: its files go at once. */
        state_dir_release_pool(d, gone, true);
        gone = pool_free(gone);
        assert_int_equal(state_dir_wait(d), 0);
        assert_int_equal(block_files_count(dir), 4);
        assert_false(block_file_exists(dir, &o[4].uuid));
        /* Harmless. */
        state_dir_release_pool(d, NULL, true);
        state_dir_release_pool(NULL, p[0], true);

        assert_int_equal(state_dir_close(d), 0);
        state_drop(d, p, 3);
        assert_int_equal(block_files_count(dir), 4);

        /* p2 is no longer known: its pools are not taken. */
        d = state_open(e, dir);
        p[0] = state_take(d, PEER, POOL_OWNER_LOCAL);
        assert_int_equal(p[0]->n_blocks, 1);
        assert_int_equal(state_dir_drop_unclaimed(d), 3);
        assert_int_equal(state_dir_wait(d), 0);
        assert_int_equal(block_files_count(dir), 1);
        assert_true(block_file_exists(dir, &o[0].uuid));
        assert_int_equal(state_dir_drop_unclaimed(d), 0);
        /* Taken again later: nothing left. */
        p[1] = state_take(d, "p2", POOL_OWNER_PEER);
        assert_int_equal(p[1]->n_blocks, 0);
        assert_int_equal(state_dir_close(d), 0);
        state_drop(d, p, 2);

        assert_int_equal(state_dir_open(NULL, dir, NULL, NULL, STATE_OPEN_READ_ONLY, &d), 0);
        assert_int_equal(state_dir_list_pools(d, &info, &n), 0);
        assert_int_equal(n, 1);
        assert_string_equal(info[0].peer, PEER);
        assert_int_equal(info[0].owner, POOL_OWNER_LOCAL);
        assert_int_equal(info[0].stats.n_blocks, 1);
        free(info);
        state_dir_free(d);

        orig_done(o, ELEMENTSOF(o));
        sd_event_unref(e);
        tmpdir_free(dir);
}

static void test_ephemeral(void **state) {
        StatePoolInfo *info = (StatePoolInfo *) 1;
        Allocation *a = NULL;
        Seen seen = {};
        Pool *p = NULL;
        Orig o;
        size_t n = 1;

        (void) state;
        assert_int_equal(state_dir_take_pool(NULL, PEER, POOL_OWNER_LOCAL, &p), 0);
        assert_non_null(p);
        assert_null(p->observer);
        assert_int_equal(p->owner, POOL_OWNER_LOCAL);
        assert_string_equal(p->name, PEER);
        (void) block_add(p, 100, &o);
        assert_int_equal(pool_allocate(p, 10, &a), 0);
        state_dir_release_pool(NULL, p, true);
        assert_int_equal(p->n_blocks, 1);

        assert_int_equal(append_str(NULL, STATE_RECORD_USER, "x"), 0);
        assert_int_equal(state_dir_snapshot_add(NULL, STATE_RECORD_USER, "x", 1), 0);
        assert_int_equal(state_dir_sync(NULL), 0);
        assert_int_equal(state_dir_checkpoint(NULL), 0);
        assert_int_equal(state_dir_close(NULL), 0);
        assert_int_equal(state_dir_save_node(NULL, NULL), 0);
        assert_int_equal(state_dir_set_checkpoint_interval(NULL, 5), 0);
        assert_int_equal(state_dir_replay(NULL, on_record, &seen), 0);
        assert_int_equal(seen.n, 0);
        assert_int_equal(state_dir_drop_unclaimed(NULL), 0);
        assert_int_equal(state_dir_n_records(NULL), 0);
        assert_false(state_dir_peer_burned(NULL, PEER));
        assert_null(state_dir_node(NULL));
        assert_null(state_dir_path(NULL));
        assert_null(state_dir_role(NULL));
        assert_int_equal(state_dir_list_pools(NULL, &info, &n), 0);
        assert_null(info);
        assert_int_equal(n, 0);
        state_dir_set_pool_observer(NULL, NULL, NULL);
        state_dir_set_snapshot_writer(NULL, write_live, NULL);
        state_dir_set_failure_callback(NULL, NULL, NULL);
        assert_null(state_dir_free(NULL));

        allocation_free(a);
        pool_free(p);
        orig_done(&o, 1);
}

/* The daemon's observer sees only what was recorded. */
typedef struct Told {
        unsigned added, used, back;
} Told;

static int on_change(Pool *p, PsrdChange change, const Block *b, size_t start, size_t size, void *userdata) {
        Told *t = userdata;

        (void) p;
        (void) b;
        (void) start;
        (void) size;
        if (change == PSRD_CHANGE_BLOCK_ADDED)
                t->added++;
        else if (change == PSRD_CHANGE_MARKED_USED)
                t->used++;
        else if (change == PSRD_CHANGE_GIVEN_BACK)
                t->back++;
        return 0;
}

static void test_pool_observer(void **state) {
        char *dir = tmpdir_new();
        sd_event *e = event_new();
        Told told = {};
        Allocation *a;
        StateDir *d;
        Block *b;
        Pool *p;
        Orig o;

        (void) state;
        d = state_open(e, dir);
        state_dir_set_pool_observer(d, on_change, &told);
        p = state_take(d, PEER, POOL_OWNER_PEER);
        b = block_add(p, 1000, &o);
        a = names(b, 0, 10, NULL, 0, 0);
        assert_int_equal(pool_take(p, a, 0, NULL), 0);
        pool_give_back(p, a);
        allocation_free(a);
        assert_int_equal(told.added, 1);
        assert_int_equal(told.used, 1);
        assert_int_equal(told.back, 1);
        state_drop(d, &p, 1);

        orig_done(&o, 1);
        sd_event_unref(e);
        tmpdir_free(dir);
}

int main(void) {
        loop_thread = pthread_self();
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_teardown(test_fresh, tmpdirs_remove),
                cmocka_unit_test_teardown(test_ownership, tmpdirs_remove),
                cmocka_unit_test_teardown(test_read_only_empty, tmpdirs_remove),
                cmocka_unit_test_teardown(test_clean_restart, tmpdirs_remove),
                cmocka_unit_test_teardown(test_crash_restart, tmpdirs_remove),
                cmocka_unit_test_teardown(test_reserve_ahead, tmpdirs_remove),
                cmocka_unit_test_teardown(test_ahead_of_first_take, tmpdirs_remove),
                cmocka_unit_test_teardown(test_records, tmpdirs_remove),
                cmocka_unit_test_teardown(test_replay_stops, tmpdirs_remove),
                cmocka_unit_test_teardown(test_corruption, tmpdirs_remove),
                cmocka_unit_test_teardown(test_corrupt_node, tmpdirs_remove),
                cmocka_unit_test_teardown(test_checkpoint_cut_short, tmpdirs_remove),
                cmocka_unit_test_teardown(test_checkpoint_next_journal, tmpdirs_remove),
                cmocka_unit_test_teardown(test_new_block_file, tmpdirs_remove),
                cmocka_unit_test_teardown(test_timers, tmpdirs_remove),
                cmocka_unit_test_teardown(test_spare_journal, tmpdirs_remove),
                cmocka_unit_test_teardown(test_reboot, tmpdirs_remove),
                cmocka_unit_test_teardown(test_release_and_drop, tmpdirs_remove),
                cmocka_unit_test_teardown(test_ephemeral, tmpdirs_remove),
                cmocka_unit_test_teardown(test_pool_observer, tmpdirs_remove),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
