/* SPDX-License-Identifier: MIT */
#include <assert.h>
#include <dirent.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "codec.h"
#include "crc32.h"
#include "io-worker.h"
#include "json-util.h"
#include "log.h"
#include "random.h"
#include "secret.h"
#include "state.h"

#define STATE_VERSION 1u

#define NODE_FILE          "node.json"
#define RECORDS_FILE       "records"
#define JOURNAL_FILE       "journal"
#define JOURNAL_NEXT_FILE  "journal.next"
#define JOURNAL_SPARE_FILE "journal.spare"
#define LOCK_FILE          "lock"
#define PSRD_DIR           "psrd"
#define BLOCK_SUFFIX       ".blk"
#define TMP_SUFFIX         ".tmp"
#define NEW_SUFFIX         ".new" /* a new block's file until it is synced: as long as BLOCK_SUFFIX */
#define DEL_SUFFIX         ".del" /* a removed block's file until the I/O thread deletes it */

#define JOURNAL_MAGIC "DSKEJNL1"
#define RECORDS_MAGIC "DSKEREC1"
#define BLOCK_MAGIC   "DSKEPSR1"

/* File header of the journal and the snapshot: magic, generation, when the running kernel booted
 * (µs since the epoch, then 8 zero bytes), CRC of the three. Writes survive a crash of the process
 * in the kernel's page cache; only a new boot can have lost those not synced. */
#define LOG_HEADER_SIZE 36u
#define LOG_HEADER_CRC  32u
/* The journal: its header, zero, where its records end (updated after each write), the records, in
 * a file of whole extents allocated ahead and mapped. Records are copied into the mapping and the end
 * moved past them: no system call per reply, and a record a kill -9 cut short lies past the end.
 * Allocating ahead makes a full disk an error of fallocate() rather than a SIGBUS. */
#define JOURNAL_END_OFFSET  40u
#define JOURNAL_DATA_OFFSET 48u
#define JOURNAL_EXTENT      (1024u * 1024u)

/* Record header: CRC of the rest, type, zero, payload size. */
#define RECORD_HEADER_SIZE 8u

/* Records below STATE_RECORD_USER belong to this module. */
enum {
        RECORD_PSRD_USED = 1,     /* a peer named these bytes: used (journal only) */
        RECORD_PSRD_RETURNED = 2, /* ... given back after a failed MAC check */
        RECORD_PSRD_RESERVED = 3, /* own pool: bytes up to start may have been handed out */
        RECORD_PSRD_ACTIVE = 4,   /* peer's pool: bytes of this block are taken, maybe not synced */
        RECORD_END = 255,         /* closes the snapshot; payload: number of records */
};

/* Block file: header, data, used-byte bitmap. */
#define BLOCK_HEADER_SIZE 128u
#define PEER_NAME_MAX     64u

/* Own pools are reserved ahead of what was handed out by an eighth of the block, within these
 * bounds: one sync per chunk, and what a crash burns stays small next to the pool. */
#define RESERVE_CHUNK_MIN 512u
#define RESERVE_CHUNK_MAX (16u * 1024u)
/* Journal writes are synced this long after the first unsynced one. */
#define SYNC_DELAY_USEC (200u * 1000u)
/* The journal is folded into a checkpoint once it is this large. */
#define JOURNAL_CHECKPOINT_SIZE     (4u * 1024u * 1024u)
#define CHECKPOINT_INTERVAL_DEFAULT 10u

typedef struct StatePool StatePool;
typedef struct StateBlock StateBlock;

/* A block file to write. A block destroyed meanwhile cancels it (under files_lock), so that no
 * file comes back after its removal. */
typedef struct FileCopy {
        char name[UUID_STRING_MAX + sizeof(BLOCK_SUFFIX)];
        uint8_t *data; /* header, data, bitmap: key material, wiped when freed */
        size_t size;
        bool drop_new;     /* the block's NEW_SUFFIX file goes once this one has its name */
        bool from_new;     /* no data: the NEW_SUFFIX file, unchanged since, is synced and renamed */
        StateBlock *owner; /* event loop only */
        bool cancelled;
} FileCopy;

struct StateBlock {
        StatePool *pool;
        Block *block;
        uint64_t seq;         /* arrival order across the node, kept in the file */
        size_t reserved;      /* own pools: bytes below may have been handed out */
        size_t reserve_want;  /* own pools: the reservation asked for ahead of need ... */
        uint64_t reserve_pos; /* ... in effect once the journal is durable up to here (0: none asked) */
        bool dirty;           /* memory differs from the file */
        bool active;          /* peer's pool: a synced record says that takes may be in the journal only */
        uint64_t active_pos;  /* peer's pool: active once the journal is durable up to here (0: not asked) */
        uint8_t *replayed;    /* while loading: the journal's used bits for this block */
        bool fresh;           /* while loading: read from its NEW_SUFFIX file */
        bool fresh_file;      /* its file is the NEW_SUFFIX one, not synced: the next checkpoint writes it */
        FileCopy *copies[2];  /* writes of this block queued: its arrival, a checkpoint */
};

struct StatePool {
        StateDir *dir;
        char *peer;
        PoolOwner owner;
        Pool *pool;
        bool taken;
        bool burned; /* whole blocks were burned at load: their takes may not have been synced */
        StatePool *next;
};

typedef struct Record {
        uint8_t type;
        size_t size;
        struct Record *next;
        uint8_t payload[];
} Record;

/* A growable buffer that may hold key material: growing wipes the old copy. */
typedef struct SecretBuffer {
        uint8_t *data;
        size_t size;
        size_t alloc;
} SecretBuffer;

struct StateDir {
        sd_event *event;
        char *path;
        char *role;
        char *name;
        StateOpenFlags flags;

        int dir_fd;
        int psrd_fd;
        int lock_fd;
        int journal_fd;
        uint8_t *journal_map; /* the whole file, journal_map_size bytes */
        size_t journal_map_size;
        uint64_t generation;
        uint64_t journal_size; /* where its records end */
        uint64_t journal_base; /* ... as its checkpoint started it */
        uint64_t next_seq;

        /* Journal bytes written since open, across journals; how many of them are durable; how many
         * a reservation or an activation waits for. */
        uint64_t jpos, jpos_durable, jpos_wanted;
        IoWorker *worker;      /* NULL: file work runs on the caller's thread */
        IoWorker *sync_worker; /* journal syncs, which a checkpoint in the other thread does not delay */
        int old_journal_fd;    /* while a checkpoint runs: the journal it replaces */
        int spare_fd;          /* JOURNAL_SPARE_FILE, made ready for the next checkpoint */
        bool stopping;         /* the threads are being stopped: jobs run on the caller's thread */
        bool sync_running;
        bool checkpoint_running;
        pthread_mutex_t files_lock; /* renames in psrd/ by the thread against removals by the loop */

        json_object *node;
        StatePool *pools;
        Record *records, *records_tail;
        size_t n_records;

        uint8_t boot[16]; /* the header field for this boot */

        SecretBuffer pending; /* journal records not written yet */
        bool changed;         /* something a checkpoint would write */
        bool failed;
        bool other_boot; /* while loading: the journal was written before the system restarted */

        SecretBuffer snapshot;
        size_t n_snapshot;
        StateSnapshotWriter writer;
        void *writer_userdata;

        StateFailed failed_callback;
        void *failed_userdata;

        PoolObserver next_observer;
        void *next_observer_userdata;

        sd_event_source *sync_timer;
        sd_event_source *checkpoint_timer;
        unsigned checkpoint_sec;
};

static int secret_buffer_append(SecretBuffer *b, const void *data, size_t size) {
        size_t need;

        if (!size_add(b->size, size, &need))
                return -ENOMEM;
        if (need > b->alloc) {
                size_t n = MAX(need, MAX(b->alloc * 2, (size_t) 4096));
                uint8_t *p = malloc(n);

                if (!p)
                        return -ENOMEM;
                if (b->size > 0)
                        memcpy(p, b->data, b->size);
                erase_and_free(b->data, b->alloc);
                b->data = p;
                b->alloc = n;
        }
        memcpy(b->data + b->size, data, size);
        b->size = need;
        return 0;
}

static void secret_buffer_clear(SecretBuffer *b) {
        if (b->data)
                explicit_bzero(b->data, b->size);
        b->size = 0;
}

static void secret_buffer_done(SecretBuffer *b) {
        b->data = erase_and_free(b->data, b->alloc);
        b->size = b->alloc = 0;
}

static size_t bitmap_size(size_t n) {
        return (n + 7) / 8;
}

static void put_le32(uint8_t *p, uint32_t v) {
        v = htole32(v);
        memcpy(p, &v, sizeof(v));
}

static void put_le64(uint8_t *p, uint64_t v) {
        v = htole64(v);
        memcpy(p, &v, sizeof(v));
}

static uint32_t get_le32(const uint8_t *p) {
        uint32_t v;
        memcpy(&v, p, sizeof(v));
        return le32toh(v);
}

static uint64_t get_le64(const uint8_t *p) {
        uint64_t v;
        memcpy(&v, p, sizeof(v));
        return le64toh(v);
}

static int write_all(int fd, const struct iovec *iov, int n) {
        struct iovec v[4];

        assert(n <= (int) ELEMENTSOF(v));
        memcpy(v, iov, sizeof(struct iovec) * (size_t) n);
        for (int i = 0; i < n;) {
                ssize_t k = writev(fd, v + i, n - i);

                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                while (i < n && (size_t) k >= v[i].iov_len) {
                        k -= (ssize_t) v[i].iov_len;
                        i++;
                }
                if (i < n) {
                        v[i].iov_base = (uint8_t *) v[i].iov_base + k;
                        v[i].iov_len -= (size_t) k;
                }
        }
        return 0;
}

/* Writes name in dir_fd atomically, in two steps so that several files can be written back at
 * once: the contents go to a temporary file whose write-back starts at once; finishing syncs it
 * and renames it over name. The caller syncs the directory. */
static int file_begin_atomic(int dir_fd, const char *name, const struct iovec *iov, int n, int *ret_fd) {
        char tmp[PATH_MAX];
        _cleanup_close_ int fd = -EBADF;
        int r;

        if (snprintf(tmp, sizeof(tmp), "%s" TMP_SUFFIX, name) >= (int) sizeof(tmp))
                return -ENAMETOOLONG;
        fd = openat(dir_fd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0)
                return -errno;
        r = write_all(fd, iov, n);
        if (r < 0) {
                (void) unlinkat(dir_fd, tmp, 0);
                return r;
        }
        (void) sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE);
        *ret_fd = TAKE_FD(fd);
        return 0;
}

static int file_finish_atomic(int dir_fd, const char *name, int fd) {
        char tmp[PATH_MAX];
        int r = 0;

        (void) snprintf(tmp, sizeof(tmp), "%s" TMP_SUFFIX, name);
        if (fsync(fd) < 0)
                r = -errno;
        safe_close(fd);
        if (r >= 0 && renameat(dir_fd, tmp, dir_fd, name) < 0)
                r = -errno;
        if (r < 0)
                (void) unlinkat(dir_fd, tmp, 0);
        return r;
}

static int write_file_atomic(int dir_fd, const char *name, const struct iovec *iov, int n) {
        int fd, r;

        r = file_begin_atomic(dir_fd, name, iov, n, &fd);
        if (r < 0)
                return r;
        return file_finish_atomic(dir_fd, name, fd);
}

/* Reads the whole of name; -ENOENT when it does not exist. */
static int read_file(int dir_fd, const char *name, uint8_t **ret, size_t *ret_size) {
        _cleanup_close_ int fd = -EBADF;
        _cleanup_free_ uint8_t *buf = NULL;
        struct stat st;
        size_t done = 0;

        fd = openat(dir_fd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0)
                return -errno;
        if (fstat(fd, &st) < 0)
                return -errno;
        if (!S_ISREG(st.st_mode))
                return -EBADMSG;
        buf = malloc((size_t) st.st_size + 1);
        if (!buf)
                return -ENOMEM;
        while (done < (size_t) st.st_size) {
                ssize_t k = read(fd, buf + done, (size_t) st.st_size - done);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (k == 0)
                        break;
                done += (size_t) k;
        }
        buf[done] = 0;
        *ret = TAKE_PTR(buf);
        *ret_size = done;
        return 0;
}

static int state_fail(const StateDir *d, const char *file, const char *what) {
        return log_error_errno(-EBADMSG, "State file %s/%s %s; refusing to use it.", d->path, file, what);
}

static void log_header_build(uint8_t h[LOG_HEADER_SIZE], const char *magic, uint64_t generation,
                             const uint8_t boot[16]) {
        memcpy(h, magic, 8);
        put_le64(h + 8, generation);
        memcpy(h + 16, boot, 16);
        put_le32(h + LOG_HEADER_CRC, crc32_update(0, h, LOG_HEADER_CRC));
}

static size_t record_build(uint8_t h[RECORD_HEADER_SIZE], uint8_t type, const void *payload, size_t size) {
        uint32_t crc;

        h[4] = type;
        h[5] = 0;
        h[6] = (uint8_t) (size & 0xff);
        h[7] = (uint8_t) (size >> 8);
        crc = crc32_update(0, h + 4, 4);
        crc = crc32_update(crc, payload, size);
        put_le32(h, crc);
        return RECORD_HEADER_SIZE + size;
}

static int buffer_add_record(SecretBuffer *b, uint8_t type, const void *payload, size_t size) {
        uint8_t h[RECORD_HEADER_SIZE];
        int r;

        if (size > STATE_RECORD_SIZE_MAX)
                return -E2BIG;
        (void) record_build(h, type, payload, size);
        r = secret_buffer_append(b, h, sizeof(h));
        if (r < 0)
                return r;
        return secret_buffer_append(b, payload, size);
}

/* ---- PSRD blocks ---- */

static StatePool *state_pool_find(StateDir *d, const char *peer, PoolOwner owner) {
        for (StatePool *sp = d->pools; sp; sp = sp->next)
                if (sp->owner == owner && streq(sp->peer, peer))
                        return sp;
        return NULL;
}

static StatePool *state_pool_find_by_pool(StateDir *d, const Pool *p) {
        for (StatePool *sp = d->pools; sp; sp = sp->next)
                if (sp->pool == p)
                        return sp;
        return NULL;
}

static int state_pool_new(StateDir *d, const char *peer, PoolOwner owner, StatePool **ret) {
        StatePool *sp;
        int r;

        sp = calloc(1, sizeof(StatePool));
        if (!sp)
                return -ENOMEM;
        sp->dir = d;
        sp->owner = owner;
        sp->peer = strdup(peer);
        if (!sp->peer) {
                free(sp);
                return -ENOMEM;
        }
        r = pool_new(peer, owner, &sp->pool);
        if (r < 0) {
                free(sp->peer);
                free(sp);
                return r;
        }
        sp->next = d->pools;
        d->pools = sp;
        *ret = sp;
        return 0;
}

static void block_file_name(const Block *b, char buf[static UUID_STRING_MAX + sizeof(BLOCK_SUFFIX)]) {
        char u[UUID_STRING_MAX];

        (void) snprintf(buf, UUID_STRING_MAX + sizeof(BLOCK_SUFFIX), "%s" BLOCK_SUFFIX,
                        uuid_to_string(&b->uuid, u));
}

/* UUID.blk → UUID.new in place (the suffixes are as long). */
static void block_file_name_to_new(char *name) {
        memcpy(name + strlen(name) - strlen(BLOCK_SUFFIX), NEW_SUFFIX, strlen(NEW_SUFFIX));
}

static void state_block_free(StateBlock *sb) {
        if (!sb)
                return;
        /* Queued writes go on (a stop); a destruction cancelled them first. */
        for (size_t i = 0; i < ELEMENTSOF(sb->copies); i++)
                if (sb->copies[i])
                        sb->copies[i]->owner = NULL;
        if (sb->block)
                sb->block->userdata = NULL;
        free(sb->replayed);
        free(sb);
}

/* The header of a block's file, but for its checksums (block_file_seal()). */
static void block_header_build(const StateBlock *sb, uint8_t h[BLOCK_HEADER_SIZE]) {
        const Block *b = sb->block;

        memset(h, 0, BLOCK_HEADER_SIZE);
        memcpy(h, BLOCK_MAGIC, 8);
        put_le32(h + 8, STATE_VERSION);
        put_le32(h + 12, (uint32_t) sb->pool->owner);
        memcpy(h + 16, b->uuid.bytes, 16);
        put_le64(h + 32, b->size);
        /* A reservation asked for goes into the file: once the file replaces the journal holding
         * its record, that record is gone. */
        put_le64(h + 40, sb->reserve_pos > 0 ? MAX(sb->reserved, sb->reserve_want) : sb->reserved);
        put_le64(h + 48, sb->seq);
        (void) strncpy((char *) h + 56, sb->pool->peer, PEER_NAME_MAX - 1);
}

/* Puts the checksums into a block's file (header, data, bitmap): done by the I/O thread, as they
 * take a while for a large block. */
static void block_file_seal(uint8_t *f, size_t size) {
        put_le32(f + 120, crc32_update(0, f + BLOCK_HEADER_SIZE, size - BLOCK_HEADER_SIZE));
        put_le32(f + 124, crc32_update(0, f, 124));
}

/* ---- the I/O threads ----
 *
 * File work the event loop would otherwise wait for runs in the I/O thread, in the order it was
 * asked for: new block files, checkpoints, deletions. Journal syncs run in a thread of their own,
 * so that no checkpoint holds them up. The loop goes on meanwhile, and whatever a kill -9 must not
 * lose reaches the kernel from the loop first (journal records, the removal of a block's file) or
 * before anything depends on it (a new block's file, see state_block_write_new()). What must be
 * durable before a byte leaves (a reservation of an own pool, the first take from a peer's block)
 * is asked for ahead of need; only when the need comes first does the loop sync itself.
 *
 * Journal bytes are counted across journals (jpos). A job that syncs tells how far they are durable
 * (a sync while a checkpoint runs syncs the journal it replaces too); state_durable() only moves
 * forward. */

typedef enum StateJobType {
        JOB_SYNC,   /* fdatasync the journal */
        JOB_NEW,    /* write a new block's NEW_SUFFIX file */
        JOB_UNLINK, /* delete a removed block's file */
        JOB_CHECKPOINT,
        JOB_BARRIER, /* nothing: done once the jobs before it are */
        JOB_CLOSE,   /* nothing but closing its files, which can take long */
} StateJobType;

typedef struct StateJob {
        IoJob io;
        StateDir *dir;
        StateJobType type;
        uint64_t pos;       /* the journals are durable up to here once the job is done (0: no claim) */
        int journal_fd;     /* JOB_SYNC, JOB_CHECKPOINT: the journal to sync */
        int old_journal_fd; /* JOB_CHECKPOINT: the journal it replaces ... */
        uint8_t *old_journal_map; /* ... and its mapping */
        size_t old_journal_map_size;
        int spare_fd;    /* JOB_CHECKPOINT: the next checkpoint's journal, made ready */
        FileCopy *files; /* JOB_CHECKPOINT, JOB_NEW */
        size_t n_files;
        StateWritten written; /* JOB_BARRIER */
        void *written_userdata;
        SecretBuffer records;                            /* JOB_CHECKPOINT: the snapshot */
        char name[UUID_STRING_MAX + sizeof(DEL_SUFFIX)]; /* JOB_UNLINK */
        char failed[PATH_MAX];                           /* what could not be written */
} StateJob;

static void file_copy_detach(FileCopy *f) {
        StateBlock *sb = f->owner;

        if (!sb)
                return;
        for (size_t i = 0; i < ELEMENTSOF(sb->copies); i++)
                if (sb->copies[i] == f)
                        sb->copies[i] = NULL;
        f->owner = NULL;
}

static StateJob *state_job_free(StateJob *j) {
        if (!j)
                return NULL;
        safe_close(j->journal_fd);
        safe_close(j->old_journal_fd);
        safe_close(j->spare_fd);
        if (j->old_journal_map)
                (void) munmap(j->old_journal_map, j->old_journal_map_size);
        for (size_t i = 0; i < j->n_files; i++) {
                file_copy_detach(j->files + i);
                erase_and_free(j->files[i].data, j->files[i].size);
        }
        free(j->files);
        secret_buffer_done(&j->records);
        free(j);
        return NULL;
}
DEFINE_TRIVIAL_CLEANUP_FUNC(StateJob *, state_job_free);

static StateJob *state_job_new(StateDir *d, StateJobType type, size_t n_files) {
        StateJob *j = calloc(1, sizeof(StateJob));

        if (!j)
                return NULL;
        j->dir = d;
        j->type = type;
        j->journal_fd = j->old_journal_fd = j->spare_fd = -EBADF;
        if (n_files > 0) {
                j->files = calloc(n_files, sizeof(FileCopy));
                if (!j->files) {
                        free(j);
                        return NULL;
                }
        }
        return j;
}

static int job_fail(StateJob *j, int r, const char *dir, const char *file) {
        (void) snprintf(j->failed, sizeof(j->failed), "%s%s%s", dir, *dir ? "/" : "", file);
        return r;
}

static bool file_copy_cancelled(StateDir *d, const FileCopy *f) {
        bool cancelled;

        pthread_mutex_lock(&d->files_lock);
        cancelled = f->cancelled;
        pthread_mutex_unlock(&d->files_lock);
        return cancelled;
}

/* Gives a synced file its name, unless its block was destroyed meanwhile. */
static int job_file_rename(StateJob *j, FileCopy *f, const char *from) {
        StateDir *d = j->dir;
        int r = 0;

        pthread_mutex_lock(&d->files_lock);
        if (f->cancelled)
                (void) unlinkat(d->psrd_fd, from, 0);
        else if (renameat(d->psrd_fd, from, d->psrd_fd, f->name) < 0)
                r = -errno;
        else if (f->drop_new) {
                char new[sizeof(f->name)];

                memcpy(new, f->name, sizeof(new));
                block_file_name_to_new(new);
                (void) unlinkat(d->psrd_fd, new, 0);
        }
        pthread_mutex_unlock(&d->files_lock);
        return r;
}

/* Writes the job's files into psrd/, a batch at a time: the write-back of a batch runs in parallel,
 * so this waits about one sync per batch rather than one per file. */
#define WRITE_BATCH 64u

static int job_write_files(StateJob *j) {
        int psrd_fd = j->dir->psrd_fd, fds[WRITE_BATCH];
        char tmp[sizeof(j->files->name) + sizeof(TMP_SUFFIX)];
        int r = 0;

        for (size_t i = 0; i < j->n_files && r >= 0; i += WRITE_BATCH) {
                size_t n = MIN(j->n_files - i, (size_t) WRITE_BATCH), started;

                for (started = 0; started < n; started++) {
                        FileCopy *f = j->files + i + started;

                        if (f->from_new) {
                                memcpy(tmp, f->name, sizeof(f->name));
                                block_file_name_to_new(tmp);
                                fds[started] = openat(psrd_fd, tmp, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
                                /* Gone with its block, removed meanwhile: nothing to do. */
                                if (fds[started] < 0 && (errno != ENOENT || !file_copy_cancelled(j->dir, f)))
                                        r = -errno;
                        } else {
                                block_file_seal(f->data, f->size);
                                r = file_begin_atomic(psrd_fd, f->name, &(struct iovec){f->data, f->size}, 1,
                                                      &fds[started]);
                        }
                        if (r < 0) {
                                (void) job_fail(j, r, PSRD_DIR, f->name);
                                break;
                        }
                }
                for (size_t k = 0; k < started; k++) {
                        FileCopy *f = j->files + i + k;
                        int q = 0;

                        if (fds[k] < 0)
                                continue;
                        if (f->from_new) {
                                memcpy(tmp, f->name, sizeof(f->name));
                                block_file_name_to_new(tmp);
                        } else
                                (void) snprintf(tmp, sizeof(tmp), "%s" TMP_SUFFIX, f->name);
                        if (fsync(fds[k]) < 0)
                                q = -errno;
                        safe_close(fds[k]);
                        if (q >= 0)
                                q = job_file_rename(j, f, tmp);
                        if (q < 0) {
                                if (!f->from_new)
                                        (void) unlinkat(psrd_fd, tmp, 0);
                                if (r >= 0)
                                        r = job_fail(j, q, PSRD_DIR, f->name);
                        }
                }
        }
        return r;
}

/* A new block's file, complete under its name or not there: not synced, it only has to survive the
 * process. */
static int job_write_new(StateJob *j) {
        FileCopy *f = j->files;
        char tmp[sizeof(f->name) + sizeof(TMP_SUFFIX)];
        _cleanup_close_ int fd = -EBADF;
        int r;

        block_file_seal(f->data, f->size);
        (void) snprintf(tmp, sizeof(tmp), "%s" TMP_SUFFIX, f->name);
        fd = openat(j->dir->psrd_fd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0)
                return job_fail(j, -errno, PSRD_DIR, f->name);
        r = write_all(fd, &(struct iovec){f->data, f->size}, 1);
        if (r >= 0)
                r = job_file_rename(j, f, tmp);
        if (r < 0) {
                (void) unlinkat(j->dir->psrd_fd, tmp, 0);
                return job_fail(j, r, PSRD_DIR, f->name);
        }
        return 0;
}

/* Creates the next checkpoint's journal ahead, allocated and empty: creating a file can take a
 * millisecond or more, which the event loop would wait for. The checkpoint only renames it. Not
 * having one is no error: the checkpoint then creates its journal itself. */
static void job_make_spare(StateJob *j) {
        int fd;

        fd = openat(j->dir->dir_fd, JOURNAL_SPARE_FILE, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW,
                    0600);
        if (fd >= 0 && posix_fallocate(fd, 0, JOURNAL_EXTENT) != 0)
                fd = safe_close(fd);
        j->spare_fd = fd;
}

/* The checkpoint's file work. Until the last rename the old snapshot and journal stay valid, with
 * the new journal read after the old one; from it on, the new snapshot and journal. */
static int job_checkpoint(StateJob *j) {
        StateDir *d = j->dir;
        int r;

        if (j->old_journal_fd >= 0 && fdatasync(j->old_journal_fd) < 0)
                return job_fail(j, -errno, "", JOURNAL_FILE);
        if (fdatasync(j->journal_fd) < 0)
                return job_fail(j, -errno, "", JOURNAL_NEXT_FILE);
        if (fsync(d->dir_fd) < 0)
                return job_fail(j, -errno, "", ".");
        r = job_write_files(j);
        if (r < 0)
                return r;
        /* Blocks renamed and removed are durable before the journal that describes their older
         * versions goes. */
        if (fsync(d->psrd_fd) < 0)
                return job_fail(j, -errno, "", PSRD_DIR);
        r = write_file_atomic(d->dir_fd, RECORDS_FILE, &(struct iovec){j->records.data, j->records.size}, 1);
        if (r < 0)
                return job_fail(j, r, "", RECORDS_FILE);
        if (fsync(d->dir_fd) < 0)
                return job_fail(j, -errno, "", ".");
        if (renameat(d->dir_fd, JOURNAL_NEXT_FILE, d->dir_fd, JOURNAL_FILE) < 0)
                return job_fail(j, -errno, "", JOURNAL_FILE);
        if (fsync(d->dir_fd) < 0)
                return job_fail(j, -errno, "", ".");
        job_make_spare(j);
        return 0;
}

static int state_job_run(IoJob *io) {
        StateJob *j = (StateJob *) io;
        int r = -EINVAL;

        switch (j->type) {
        case JOB_SYNC:
                /* While a checkpoint runs, the journal is its new one: the old one holds what came
                 * before, and the new one's name is durable only once the directory is. */
                if (j->old_journal_fd >= 0 && fdatasync(j->old_journal_fd) < 0)
                        r = job_fail(j, -errno, "", JOURNAL_FILE);
                else if (fdatasync(j->journal_fd) < 0)
                        r = job_fail(j, -errno, "",
                                     j->old_journal_fd >= 0 ? JOURNAL_NEXT_FILE : JOURNAL_FILE);
                else if (j->old_journal_fd >= 0 && fsync(j->dir->dir_fd) < 0)
                        r = job_fail(j, -errno, "", ".");
                else
                        r = 0;
                break;
        case JOB_NEW:
                r = job_write_new(j);
                break;
        case JOB_BARRIER:
        case JOB_CLOSE:
                r = 0;
                break;
        case JOB_UNLINK:
                r = unlinkat(j->dir->psrd_fd, j->name, 0) < 0 && errno != ENOENT
                            ? job_fail(j, -errno, PSRD_DIR, j->name)
                            : 0;
                break;
        case JOB_CHECKPOINT:
                r = job_checkpoint(j);
                break;
        }

        /* Closing may take long too: the last reference to a replaced journal frees its blocks. */
        j->journal_fd = safe_close(j->journal_fd);
        j->old_journal_fd = safe_close(j->old_journal_fd);
        if (j->old_journal_map) {
                (void) munmap(j->old_journal_map, j->old_journal_map_size);
                j->old_journal_map = NULL;
        }
        return r;
}

static void state_failed(StateDir *d, int error) {
        /* Nothing can be recorded any more, so nothing may be promised: the node has to stop. */
        d->failed = true;
        if (d->failed_callback)
                d->failed_callback(d, error, d->failed_userdata);
}

static void state_sync_async(StateDir *d);
static void state_submit(StateDir *d, StateJob *j);

/* Activations and reservations whose records are durable now take effect. */
static void state_promote(StateDir *d) {
        for (StatePool *sp = d->pools; sp; sp = sp->next)
                for (size_t i = 0; i < sp->pool->n_blocks; i++) {
                        StateBlock *sb = sp->pool->blocks[i]->userdata;

                        if (!sb)
                                continue;
                        if (sb->active_pos > 0 && sb->active_pos <= d->jpos_durable) {
                                sb->active = true;
                                sb->active_pos = 0;
                        }
                        if (sb->reserve_pos > 0 && sb->reserve_pos <= d->jpos_durable) {
                                sb->reserved = MAX(sb->reserved, sb->reserve_want);
                                sb->reserve_pos = 0;
                        }
                }
}

static void state_durable(StateDir *d, uint64_t pos) {
        if (pos <= d->jpos_durable)
                return;
        d->jpos_durable = pos;
        state_promote(d);
        if (d->jpos_durable >= d->jpos && d->sync_timer)
                (void) sd_event_source_set_enabled(d->sync_timer, SD_EVENT_OFF);
}

static void state_job_done(IoJob *io, int r) {
        StateJob *j = (StateJob *) io;
        StateDir *d = j->dir;

        if (j->type == JOB_SYNC)
                d->sync_running = false;
        if (j->type == JOB_CHECKPOINT) {
                StateJob *c = d->old_journal_fd >= 0 ? state_job_new(d, JOB_CLOSE, 0) : NULL;

                d->checkpoint_running = false;
                if (j->spare_fd >= 0) {
                        safe_close(d->spare_fd);
                        d->spare_fd = TAKE_FD(j->spare_fd);
                }
                /* Likely the replaced journal's last reference, whose closing frees its blocks. */
                if (c) {
                        c->journal_fd = TAKE_FD(d->old_journal_fd);
                        state_submit(d, c);
                } else
                        d->old_journal_fd = safe_close(d->old_journal_fd);
        }
        if (j->type == JOB_BARRIER)
                j->written(j->written_userdata);
        else if (r < 0 && j->type == JOB_UNLINK)
                log_warning_errno(r, "Failed to remove %s/%s: %m", d->path, j->failed);
        else if (r < 0) {
                log_error_errno(r, "Failed to write %s/%s: %m", d->path, j->failed);
                state_failed(d, r);
        } else
                state_durable(d, j->pos);
        state_job_free(j);

        /* More was asked for while this job ran. */
        if (!d->failed && d->jpos_wanted > d->jpos_durable)
                state_sync_async(d);
}

static void state_submit(StateDir *d, StateJob *j) {
        j->io.run = state_job_run;
        j->io.done = state_job_done;
        if (d->worker && !d->stopping)
                io_worker_submit(j->type == JOB_SYNC ? d->sync_worker : d->worker, &j->io);
        else
                state_job_done(&j->io, state_job_run(&j->io));
}

/* ---- PSRD blocks ---- */

/* Makes f a write of sb's file, cancelled should the block be destroyed before it is done. */
static void file_copy_attach(StateBlock *sb, FileCopy *f) {
        block_file_name(sb->block, f->name);
        for (size_t i = 0; i < ELEMENTSOF(sb->copies); i++)
                if (!sb->copies[i]) {
                        sb->copies[i] = f;
                        f->owner = sb;
                        break;
                }
        assert(f->owner);
}

/* Copies the block's file as it is now into f, for the I/O thread to write. */
static int state_block_copy(StateBlock *sb, FileCopy *f) {
        const Block *b = sb->block;
        size_t n = BLOCK_HEADER_SIZE + b->size + bitmap_size(b->size);

        f->data = malloc(n);
        if (!f->data)
                return -ENOMEM;
        f->size = n;
        block_header_build(sb, f->data);
        memcpy(f->data + BLOCK_HEADER_SIZE, b->data, b->size);
        memcpy(f->data + BLOCK_HEADER_SIZE + b->size, b->used, bitmap_size(b->size));
        file_copy_attach(sb, f);
        return 0;
}

/* Copies every block that changed into j. */
static int state_copy_dirty_blocks(StateDir *d, StateJob *j) {
        FileCopy *f;
        size_t n = 0;
        int r;

        for (StatePool *sp = d->pools; sp; sp = sp->next)
                for (size_t i = 0; i < sp->pool->n_blocks; i++) {
                        StateBlock *sb = sp->pool->blocks[i]->userdata;

                        if (sb && (sb->dirty || sb->fresh_file))
                                n++;
                }
        if (n == 0)
                return 0;
        j->files = calloc(n, sizeof(FileCopy));
        if (!j->files)
                return -ENOMEM;
        for (StatePool *sp = d->pools; sp; sp = sp->next)
                for (size_t i = 0; i < sp->pool->n_blocks; i++) {
                        StateBlock *sb = sp->pool->blocks[i]->userdata;

                        if (!sb || !(sb->dirty || sb->fresh_file))
                                continue;
                        f = j->files + j->n_files++;
                        if (sb->fresh_file && !sb->dirty) {
                                /* Its file is as it arrived: written already, to be synced. */
                                f->from_new = true;
                                file_copy_attach(sb, f);
                        } else {
                                r = state_block_copy(sb, f);
                                if (r < 0) {
                                        j->n_files--;
                                        return r;
                                }
                                f->drop_new = sb->fresh_file;
                        }
                        sb->fresh_file = false;
                        sb->dirty = false;
                }
        return 0;
}

/* A new block's file is written by the I/O thread (under a temporary name, renamed when complete),
 * so that it survives the process soon, and not synced: the next checkpoint syncs it and gives it
 * its block file's name, or writes the block file anew if the block changed meanwhile. A block that
 * is gone after a crash cannot be used twice, and the peer is told that it is unknown when it names
 * it; a hub answers a PSRD fetch only once the file is written (state_dir_call_when_written()). */
static int state_block_write_new(StateBlock *sb) {
        StateDir *d = sb->pool->dir;
        StateJob *j;
        FileCopy *f;
        int r;

        j = state_job_new(d, JOB_NEW, 1);
        if (!j)
                return log_oom();
        f = j->files;
        r = state_block_copy(sb, f);
        if (r < 0) {
                state_job_free(j);
                return log_oom();
        }
        j->n_files = 1;
        block_file_name_to_new(f->name);
        sb->fresh_file = true;
        d->changed = true;
        state_submit(d, j);
        return 0;
}

/* Removes a block's file (under either name) at once, and cancels writes of it still queued. The
 * file is renamed here and deleted by the I/O thread: freeing its blocks takes a while. */
static void state_block_unlink(StateBlock *sb) {
        StateDir *d = sb->pool->dir;
        char name[UUID_STRING_MAX + sizeof(BLOCK_SUFFIX)], gone[sizeof(name)];
        StateJob *j;
        int r = 0;

        d->changed = true; /* psrd/ is synced at the next checkpoint */
        block_file_name(sb->block, name);
        memcpy(gone, name, sizeof(gone));
        memcpy(gone + strlen(gone) - strlen(BLOCK_SUFFIX), DEL_SUFFIX, strlen(DEL_SUFFIX));
        pthread_mutex_lock(&d->files_lock);
        for (size_t i = 0; i < ELEMENTSOF(sb->copies); i++)
                if (sb->copies[i])
                        sb->copies[i]->cancelled = true;
        if (renameat(d->psrd_fd, name, d->psrd_fd, gone) < 0) {
                block_file_name_to_new(name);
                if (errno != ENOENT || (renameat(d->psrd_fd, name, d->psrd_fd, gone) < 0 && errno != ENOENT))
                        r = -errno;
        }
        pthread_mutex_unlock(&d->files_lock);
        if (r < 0) {
                log_warning_errno(r, "Failed to remove %s/" PSRD_DIR "/%s: %m", d->path, name);
                return;
        }

        j = state_job_new(d, JOB_UNLINK, 0);
        if (!j) {
                log_oom(); /* deleted at the next start */
                return;
        }
        memcpy(j->name, gone, sizeof(gone));
        state_submit(d, j);
}

static int state_block_attach(StatePool *sp, Block *b, uint64_t seq, StateBlock **ret) {
        StateBlock *sb;

        sb = calloc(1, sizeof(StateBlock));
        if (!sb)
                return -ENOMEM;
        sb->pool = sp;
        sb->block = b;
        sb->seq = seq;
        b->userdata = sb;
        if (ret)
                *ret = sb;
        return 0;
}

static int top_dir_sync(StateDir *d) {
        if (fsync(d->dir_fd) < 0)
                return log_error_errno(-errno, "Failed to sync state directory %s: %m", d->path);
        return 0;
}

/* Records wait in the pending buffer for the next flush (before a reply leaves, see
 * state_dir_flush()) or for the sync timer, whichever comes first. */
static void state_pending(StateDir *d) {
        if (d->sync_timer && sd_event_source_get_enabled(d->sync_timer, NULL) == 0) {
                (void) sd_event_source_set_time_relative(d->sync_timer, SYNC_DELAY_USEC);
                (void) sd_event_source_set_enabled(d->sync_timer, SD_EVENT_ONESHOT);
        }
}

/* Grows a journal's file and mapping to hold need bytes. */
static int journal_reserve(int fd, uint8_t **map, size_t *map_size, size_t need) {
        size_t size = (need + JOURNAL_EXTENT - 1) / JOURNAL_EXTENT * JOURNAL_EXTENT;
        void *p;
        int r;

        if (size <= *map_size)
                return 0;
        r = posix_fallocate(fd, 0, (off_t) size);
        if (r != 0)
                return -r;
        p = *map ? mremap(*map, *map_size, size, MREMAP_MAYMOVE)
                 : mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (p == MAP_FAILED)
                return -errno;
        *map = p;
        *map_size = size;
        return 0;
}

/* The records before end are complete: a kill -9 after this store leaves them in the journal. */
static void journal_set_end(uint8_t *map, uint64_t end) {
        __atomic_store_n((uint64_t *) (void *) (map + JOURNAL_END_OFFSET), htole64(end), __ATOMIC_RELEASE);
}

/* Hands the pending records to the kernel: from here they survive the process (kill -9). */
static int state_journal_write(StateDir *d) {
        int r;

        if (d->pending.size == 0)
                return 0;
        r = journal_reserve(d->journal_fd, &d->journal_map, &d->journal_map_size,
                            d->journal_size + d->pending.size);
        if (r < 0) {
                secret_buffer_clear(&d->pending);
                log_error_errno(r, "Failed to write %s/" JOURNAL_FILE ": %m", d->path);
                state_failed(d, r);
                return r;
        }
        memcpy(d->journal_map + d->journal_size, d->pending.data, d->pending.size);
        journal_set_end(d->journal_map, d->journal_size + d->pending.size);
        d->journal_size += d->pending.size;
        d->jpos += d->pending.size;
        secret_buffer_clear(&d->pending);
        if (d->journal_size > JOURNAL_CHECKPOINT_SIZE && d->checkpoint_timer)
                (void) sd_event_source_set_time_relative(d->checkpoint_timer, 0);
        return 0;
}

/* Asks the sync thread to sync the journal as written so far. */
static void state_sync_async(StateDir *d) {
        StateJob *j;

        if (d->failed || state_journal_write(d) < 0)
                return;
        if (d->jpos <= d->jpos_durable || d->sync_running)
                return; /* a running sync asks again when done, if needed */
        j = state_job_new(d, JOB_SYNC, 0);
        if (j) {
                j->journal_fd = fcntl(d->journal_fd, F_DUPFD_CLOEXEC, 3);
                if (d->old_journal_fd >= 0)
                        j->old_journal_fd = fcntl(d->old_journal_fd, F_DUPFD_CLOEXEC, 3);
        }
        if (!j || j->journal_fd < 0 || (d->old_journal_fd >= 0 && j->old_journal_fd < 0)) {
                state_job_free(j);
                (void) state_dir_sync(d);
                return;
        }
        j->pos = d->jpos;
        d->sync_running = true;
        state_submit(d, j);
}

/* Writes what is pending and returns where the journal ends, to be durable soon. */
static uint64_t state_want_durable(StateDir *d) {
        if (state_journal_write(d) < 0)
                return UINT64_MAX; /* never: the node is stopping */
        d->jpos_wanted = MAX(d->jpos_wanted, d->jpos);
        state_sync_async(d);
        return d->jpos;
}

static int psrd_record(SecretBuffer *buf, uint8_t type, const StatePool *sp, const Block *b, uint64_t start,
                       uint64_t size) {
        uint8_t p[2 + PEER_NAME_MAX + 16 + 16];
        size_t n = strlen(sp->peer);

        p[0] = (uint8_t) sp->owner;
        p[1] = (uint8_t) n;
        memcpy(p + 2, sp->peer, n);
        memcpy(p + 2 + n, b->uuid.bytes, 16);
        put_le64(p + 18 + n, start);
        put_le64(p + 26 + n, size);
        return buffer_add_record(buf, type, p, 34 + n);
}

static size_t reserve_chunk(const Block *b) {
        return MIN(MAX(b->size / 8, (size_t) RESERVE_CHUNK_MIN), (size_t) RESERVE_CHUNK_MAX);
}

/* Reserves up to end and a chunk beyond, synced before returning: the bytes leave soon after. Only
 * when the reservation asked for ahead was not durable in time. */
static int state_block_reserve(StateBlock *sb, size_t end) {
        StateDir *d = sb->pool->dir;
        size_t want = MIN(sb->block->size, end + reserve_chunk(sb->block));
        int r;

        r = psrd_record(&d->pending, RECORD_PSRD_RESERVED, sb->pool, sb->block, want, 0);
        if (r < 0)
                return r;
        r = state_dir_sync(d);
        if (r < 0)
                return r;
        sb->reserved = MAX(sb->reserved, want);
        return 0;
}

/* The first block of sp from index i on that is not used up. */
static StateBlock *state_pool_block_from(StatePool *sp, size_t i) {
        Pool *p = sp->pool;

        for (; i < p->n_blocks; i++)
                if (p->blocks[i]->userdata && p->blocks[i]->n_used < p->blocks[i]->size)
                        return p->blocks[i]->userdata;
        return NULL;
}

/* The block of sp after b that a pool takes from next. */
static StateBlock *state_pool_next_block(StatePool *sp, const Block *b) {
        size_t i;

        for (i = 0; i < sp->pool->n_blocks && sp->pool->blocks[i] != b; i++)
                ;
        return state_pool_block_from(sp, i + 1);
}

/* Asks for sb to be reserved up to want in the background; the file it is copied into from now on
 * says so (block_header_build()). */
static void state_block_reserve_async(StateBlock *sb, size_t want) {
        StateDir *d = sb->pool->dir;

        if (psrd_record(&d->pending, RECORD_PSRD_RESERVED, sb->pool, sb->block, want, 0) < 0)
                return;
        sb->reserve_want = want;
        sb->reserve_pos = state_want_durable(d);
        sb->dirty = true;
        d->changed = true;
}

/* Once less than a quarter of a chunk is left of an own block's reservation, the next one is asked
 * for in the background: up to three quarters of a chunk beyond what was handed out, or, at the
 * block's end, as much of the block the pool takes from next. A crash then burns half a chunk on
 * average, as with a chunk reserved at a time when needed. */
static void state_block_reserve_ahead(StateBlock *sb, size_t end) {
        size_t chunk = reserve_chunk(sb->block);
        StateBlock *next;

        if (sb->reserve_pos > 0 || sb->reserved - end >= chunk / 4)
                return;
        if (sb->reserved < sb->block->size) {
                state_block_reserve_async(sb, MIN(sb->block->size, end + chunk / 4 * 3));
                return;
        }
        next = state_pool_next_block(sb->pool, sb->block);
        if (next && next->reserved == 0 && next->reserve_pos == 0)
                state_block_reserve_async(next, MIN(next->block->size, reserve_chunk(next->block) / 4 * 3));
}

/* Marks a peer's block active, synced before returning: a take from it is about to be answered. */
static int state_block_activate(StateBlock *sb) {
        StateDir *d = sb->pool->dir;
        int r;

        r = psrd_record(&d->pending, RECORD_PSRD_ACTIVE, sb->pool, sb->block, 0, 0);
        if (r >= 0)
                r = state_dir_sync(d);
        if (r < 0)
                return r;
        sb->active = true;
        sb->active_pos = 0;
        return 0;
}

/* Asks for a peer's block to be marked active in the background, unless it is or is about to be. */
static void state_block_activate_async(StateBlock *sb) {
        StateDir *d = sb->pool->dir;

        if (sb->active || sb->active_pos > 0 ||
            psrd_record(&d->pending, RECORD_PSRD_ACTIVE, sb->pool, sb->block, 0, 0) < 0)
                return;
        sb->active_pos = state_want_durable(d);
}

/* When a peer's block is three quarters used, the next one it will take from is marked active in
 * the background. */
static void state_pool_activate_ahead(StatePool *sp, const Block *b) {
        StateBlock *next;

        if (b->size - b->n_used > b->size / 4)
                return;
        next = state_pool_next_block(sp, b);
        if (next)
                state_block_activate_async(next);
}

/* What the ahead logic above does as a pool is used, done for a pool that has not been used yet:
 * at start, or when a block arrives after the ahead logic last looked (the pool's first block, a
 * refill that came late). The current block's reservation or activation, and the next one's when
 * due, are asked for in the background, so that the first take finds them durable instead of
 * syncing on the loop. */
static void state_pool_prepare_ahead(StatePool *sp) {
        StateDir *d = sp->dir;
        StateBlock *cur;

        if (d->flags & STATE_OPEN_READ_ONLY)
                return;
        cur = state_pool_block_from(sp, 0); /* the block takes come from now */
        if (!cur)
                return;

        /* Takes from a block go from its start up, so the bytes used tell where they are. */
        if (sp->owner == POOL_OWNER_LOCAL) {
                if (cur->reserve_pos > 0)
                        return;
                if (cur->reserved <= cur->block->n_used)
                        state_block_reserve_async(
                                cur, MIN(cur->block->size, cur->block->n_used + reserve_chunk(cur->block)));
                else
                        state_block_reserve_ahead(cur, cur->block->n_used);
                return;
        }

        state_block_activate_async(cur);
        state_pool_activate_ahead(sp, cur->block);
}

static int state_pool_record(Pool *p, PsrdChange change, const Block *b, size_t start, size_t size,
                             void *userdata);

static int state_pool_observer(Pool *p, PsrdChange change, const Block *b, size_t start, size_t size,
                               void *userdata) {
        StatePool *sp = userdata;
        StateDir *d = sp->dir;
        int r;

        r = state_pool_record(p, change, b, start, size, userdata);
        if (r < 0 || !d->next_observer)
                return r;
        return d->next_observer(p, change, b, start, size, d->next_observer_userdata);
}

static int state_pool_record(Pool *p, PsrdChange change, const Block *b, size_t start, size_t size,
                             void *userdata) {
        StatePool *sp = userdata;
        StateDir *d = sp->dir;
        StateBlock *sb = b->userdata;
        int r;

        (void) p;
        if (d->failed)
                return -EIO;

        switch (change) {
        case PSRD_CHANGE_BLOCK_ADDED:
                r = state_block_attach(sp, (Block *) b, d->next_seq, &sb);
                if (r < 0)
                        return r;
                r = state_block_write_new(sb);
                if (r < 0) {
                        state_block_free(sb);
                        return r;
                }
                d->next_seq++;
                state_pool_prepare_ahead(sp);
                return 0;

        case PSRD_CHANGE_MARKED_USED:
                if (!sb)
                        return -ESTALE;
                sb->dirty = true;
                d->changed = true;
                if (sp->owner == POOL_OWNER_LOCAL) {
                        if (start + size > sb->reserved)
                                return state_block_reserve(sb, start + size);
                        state_block_reserve_ahead(sb, start + size);
                        return 0;
                }
                /* A reboot may lose takes not synced yet: a synced record that the block is active
                 * makes the next start burn all of it then, rather than accept a replay. */
                if (!sb->active) {
                        r = state_block_activate(sb);
                        if (r < 0)
                                return r;
                }
                r = psrd_record(&d->pending, RECORD_PSRD_USED, sp, b, start, size);
                if (r < 0)
                        return r;
                state_pending(d);
                state_pool_activate_ahead(sp, b);
                return 0;

        case PSRD_CHANGE_GIVEN_BACK:
                if (!sb)
                        return 0;
                sb->dirty = true;
                d->changed = true;
                if (sp->owner == POOL_OWNER_PEER &&
                    psrd_record(&d->pending, RECORD_PSRD_RETURNED, sp, b, start, size) >= 0)
                        state_pending(d);
                return 0;

        case PSRD_CHANGE_BLOCK_DROPPED:
                if (!sb)
                        return 0;
                state_block_unlink(sb);
                state_block_free(sb);
                return 0;
        }
        return 0;
}

/* Burns the bytes whose bit is set in map. Returns whether any changed. */
static bool block_burn_bitmap(Block *b, const uint8_t *map) {
        bool changed = false;

        for (size_t i = 0; i < b->size;) {
                size_t j;

                if (!(map[i / 8] & (1u << (i % 8)))) {
                        i++;
                        continue;
                }
                for (j = i + 1; j < b->size && (map[j / 8] & (1u << (j % 8))); j++)
                        ;
                if (block_burn(b, i, j - i) > 0)
                        changed = true;
                i = j;
        }
        return changed;
}

/* Reads and checks one block file, and files it under its pool. A new block's file (fresh, under
 * NEW_SUFFIX) may be cut short by a power loss: it is then dropped, since nothing was promised about
 * a block whose file was not synced. */
static int state_load_block(StateDir *d, const char *name, bool fresh) {
        _cleanup_free_ uint8_t *buf = NULL;
        _cleanup_(block_freep) Block *b = NULL;
        char peer[PEER_NAME_MAX], expect[UUID_STRING_MAX + sizeof(BLOCK_SUFFIX)];
        StatePool *sp;
        StateBlock *sb;
        size_t n, size, reserved;
        PoolOwner owner;
        Uuid uuid;
        int r;

        r = read_file(d->psrd_fd, name, &buf, &n);
        if (r < 0)
                return log_error_errno(r, "Failed to read %s/" PSRD_DIR "/%s: %m", d->path, name);

        if (n < BLOCK_HEADER_SIZE || memcmp(buf, BLOCK_MAGIC, 8) != 0)
                goto corrupt;
        if (get_le32(buf + 124) != crc32_update(0, buf, 124))
                goto corrupt;
        if (get_le32(buf + 8) != STATE_VERSION) {
                log_error("State file %s/" PSRD_DIR "/%s has format version %u; this version reads %u.",
                          d->path, name, get_le32(buf + 8), STATE_VERSION);
                return -EBADMSG;
        }
        owner = (PoolOwner) get_le32(buf + 12);
        size = (size_t) get_le64(buf + 32);
        reserved = (size_t) get_le64(buf + 40);
        memcpy(uuid.bytes, buf + 16, 16);
        memcpy(peer, buf + 56, PEER_NAME_MAX);
        if ((owner != POOL_OWNER_LOCAL && owner != POOL_OWNER_PEER) || size == 0 ||
            size > PSRD_BLOCK_SIZE_MAX || reserved > size || peer[PEER_NAME_MAX - 1] != 0 ||
            !name_is_valid(peer))
                goto corrupt;
        if (n != BLOCK_HEADER_SIZE + size + bitmap_size(size))
                goto corrupt;
        if (get_le32(buf + 120) != crc32_update(0, buf + BLOCK_HEADER_SIZE, size + bitmap_size(size)))
                goto corrupt;

        r = block_new(&uuid, buf + BLOCK_HEADER_SIZE, size, &b);
        explicit_bzero(buf + BLOCK_HEADER_SIZE, size);
        if (r < 0)
                return r;
        block_file_name(b, expect);
        if (fresh)
                block_file_name_to_new(expect);
        if (!streq(expect, name))
                goto corrupt;
        (void) block_burn_bitmap(b, buf + BLOCK_HEADER_SIZE + size);

        sp = state_pool_find(d, peer, owner);
        if (!sp) {
                r = state_pool_new(d, peer, owner, &sp);
                if (r < 0)
                        return r;
        }
        r = pool_add_block(sp->pool, b);
        if (r == -EEXIST)
                goto corrupt;
        if (r < 0)
                return r;
        r = state_block_attach(sp, TAKE_PTR(b), get_le64(buf + 48), &sb);
        if (r < 0)
                return r;
        sb->reserved = reserved;
        d->next_seq = MAX(d->next_seq, sb->seq + 1);
        sb->fresh = fresh;
        return 0;

corrupt:
        if (buf)
                explicit_bzero(buf, n);
        if (fresh && d->other_boot) {
                log_notice("State file %s/" PSRD_DIR "/%s was not written completely before the system "
                           "restarted; dropping it.",
                           d->path, name);
                if (!(d->flags & STATE_OPEN_READ_ONLY))
                        (void) unlinkat(d->psrd_fd, name, 0);
                return 0;
        }
        return log_error_errno(
                -EBADMSG, "State file %s/" PSRD_DIR "/%s is corrupted or truncated; refusing to use it.",
                d->path, name);
}

static int block_seq_compare(const void *a, const void *b) {
        const StateBlock *x = (*(Block *const *) a)->userdata, *y = (*(Block *const *) b)->userdata;

        return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static int state_load_block_files(StateDir *d, DIR *dir, bool *any) {
        struct dirent *de;
        int r;

        while ((errno = 0, de = readdir(dir))) {
                const char *n = de->d_name;
                size_t l = strlen(n);

                if (n[0] == '.')
                        continue;
                if ((l > strlen(TMP_SUFFIX) && streq(n + l - strlen(TMP_SUFFIX), TMP_SUFFIX)) ||
                    (l > strlen(DEL_SUFFIX) && streq(n + l - strlen(DEL_SUFFIX), DEL_SUFFIX))) {
                        /* A write interrupted by a crash (the file it was to replace is intact), or
                         * a removed block's file the crash left. */
                        if (!(d->flags & STATE_OPEN_READ_ONLY))
                                (void) unlinkat(d->psrd_fd, n, 0);
                        continue;
                }
                bool fresh = l > strlen(NEW_SUFFIX) && streq(n + l - strlen(NEW_SUFFIX), NEW_SUFFIX);
                if (!fresh &&
                    (l <= strlen(BLOCK_SUFFIX) || !streq(n + l - strlen(BLOCK_SUFFIX), BLOCK_SUFFIX))) {
                        log_warning("Ignoring unexpected file %s/" PSRD_DIR "/%s.", d->path, n);
                        continue;
                }
                if (fresh) {
                        char blk[NAME_MAX + 1];

                        (void) snprintf(blk, sizeof(blk), "%.*s" BLOCK_SUFFIX,
                                        (int) (l - strlen(NEW_SUFFIX)), n);
                        if (faccessat(d->psrd_fd, blk, F_OK, AT_SYMLINK_NOFOLLOW) >= 0) {
                                /* A checkpoint wrote the block file and was stopped before it
                                 * removed this older copy. */
                                if (!(d->flags & STATE_OPEN_READ_ONLY))
                                        (void) unlinkat(d->psrd_fd, n, 0);
                                continue;
                        }
                }
                r = state_load_block(d, n, fresh);
                if (r < 0)
                        return r;
                *any = true;
        }
        if (errno != 0)
                return log_error_errno(-errno, "Failed to list %s/" PSRD_DIR ": %m", d->path);
        return 0;
}

static int state_load_blocks(StateDir *d, bool *ret_any) {
        DIR *dir;
        int fd, r = 0;
        bool any = false;

        fd = fcntl(d->psrd_fd, F_DUPFD_CLOEXEC, 3);
        if (fd < 0)
                return -errno;
        dir = fdopendir(fd);
        if (!dir) {
                safe_close(fd);
                return -errno;
        }
        r = state_load_block_files(d, dir, &any);
        closedir(dir);
        if (r < 0)
                return r;

        /* New blocks get their names as the I/O thread would have given them; not while listing
         * the directory, where a rename may make the listing skip or repeat a file. */
        for (StatePool *sp = d->pools; sp; sp = sp->next)
                for (size_t i = 0; i < sp->pool->n_blocks; i++) {
                        StateBlock *sb = sp->pool->blocks[i]->userdata;
                        char from[UUID_STRING_MAX + sizeof(NEW_SUFFIX)], to[sizeof(from)];
                        _cleanup_close_ int file_fd = -EBADF;

                        if (!sb->fresh)
                                continue;
                        sb->fresh = false;
                        if (d->flags & STATE_OPEN_READ_ONLY)
                                continue;
                        block_file_name(sb->block, to);
                        memcpy(from, to, sizeof(from));
                        block_file_name_to_new(from);
                        file_fd = openat(d->psrd_fd, from, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
                        if (file_fd < 0 || fsync(file_fd) < 0 ||
                            renameat(d->psrd_fd, from, d->psrd_fd, to) < 0)
                                return log_error_errno(-errno, "Failed to write %s/" PSRD_DIR "/%s: %m",
                                                       d->path, to);
                        if (fsync(d->psrd_fd) < 0)
                                return log_error_errno(-errno, "Failed to sync %s/" PSRD_DIR ": %m",
                                                       d->path);
                }

        for (StatePool *sp = d->pools; sp; sp = sp->next)
                qsort(sp->pool->blocks, sp->pool->n_blocks, sizeof(Block *), block_seq_compare);
        *ret_any = any;
        return 0;
}

/* ---- records, snapshot and journal ---- */

static int record_list_add(StateDir *d, uint8_t type, const uint8_t *payload, size_t size) {
        Record *rec;

        rec = malloc(sizeof(Record) + size);
        if (!rec)
                return -ENOMEM;
        rec->type = type;
        rec->size = size;
        rec->next = NULL;
        memcpy(rec->payload, payload, size);
        if (d->records_tail)
                d->records_tail->next = rec;
        else
                d->records = rec;
        d->records_tail = rec;
        d->n_records++;
        return 0;
}

static void record_list_free(StateDir *d) {
        while (d->records) {
                Record *rec = d->records;

                d->records = rec->next;
                erase_and_free(rec, sizeof(Record) + rec->size);
        }
        d->records_tail = NULL;
}

static int apply_psrd_record(StateDir *d, uint8_t type, const uint8_t *p, size_t n) {
        char peer[PEER_NAME_MAX];
        StatePool *sp;
        Block *b;
        StateBlock *sb;
        uint64_t start, size;
        Uuid uuid;
        size_t l;

        if (n < 2)
                return -EBADMSG;
        l = p[1];
        if (l == 0 || l >= PEER_NAME_MAX || n != 34 + l || p[0] >= _POOL_OWNER_MAX)
                return -EBADMSG;
        memcpy(peer, p + 2, l);
        peer[l] = 0;
        memcpy(uuid.bytes, p + 2 + l, 16);
        start = get_le64(p + 18 + l);
        size = get_le64(p + 26 + l);

        sp = state_pool_find(d, peer, (PoolOwner) p[0]);
        b = sp ? pool_find_block(sp->pool, &uuid) : NULL;
        if (!b)
                return 0; /* the block was dropped since: fully used */
        sb = b->userdata;

        if (type == RECORD_PSRD_ACTIVE) {
                sb->active = true;
                return 0;
        }
        if (type == RECORD_PSRD_RESERVED) {
                if (start > b->size)
                        return -EBADMSG;
                sb->reserved = MAX(sb->reserved, (size_t) start);
                return 0;
        }

        if (size == 0 || start > b->size || size > b->size - start)
                return -EBADMSG;
        if (!sb->replayed) {
                sb->replayed = calloc(1, bitmap_size(b->size));
                if (!sb->replayed)
                        return -ENOMEM;
        }
        for (uint64_t i = start; i < start + size; i++)
                if (type == RECORD_PSRD_USED)
                        sb->replayed[i / 8] |= (uint8_t) (1u << (i % 8));
                else
                        sb->replayed[i / 8] &= (uint8_t) ~(1u << (i % 8));
        return 0;
}

/* Parses a journal or snapshot; records go to the list, PSRD ranges to their blocks. */
/* When the running kernel booted: CLOCK_BOOTTIME counts from then, suspend included. A step of
 * the wall clock moves it too; that only ever makes a boot look new, which burns more than needed
 * and never less. (The boot ID is not used: sandboxes hide /proc/sys, and a container's boot ID
 * changes while the kernel and its page cache stay.) */
static uint64_t boot_time_usec(void) {
        struct timespec rt, bt;

        (void) clock_gettime(CLOCK_REALTIME, &rt);
        (void) clock_gettime(CLOCK_BOOTTIME, &bt);
        return ((uint64_t) rt.tv_sec - (uint64_t) bt.tv_sec) * 1000000u + (uint64_t) rt.tv_nsec / 1000u -
               (uint64_t) bt.tv_nsec / 1000u;
}

#define BOOT_TOLERANCE_USEC (2u * 1000000u)

static bool boot_differs(const StateDir *d, const uint8_t field[16]) {
        uint64_t then = get_le64(field), now = get_le64(d->boot);

        for (size_t i = 8; i < 16; i++)
                if (field[i] != 0)
                        return true;
        return (then > now ? then - now : now - then) > BOOT_TOLERANCE_USEC;
}

static bool memory_is_zero(const uint8_t *p, size_t n) {
        return n == 0 || (p[0] == 0 && memcmp(p, p + 1, n - 1) == 0);
}

static bool log_header_valid(const uint8_t *buf, size_t n, const char *magic) {
        return n >= LOG_HEADER_SIZE && memcmp(buf, magic, 8) == 0 &&
               get_le32(buf + LOG_HEADER_CRC) == crc32_update(0, buf, LOG_HEADER_CRC);
}

/* Parses a journal or snapshot, its records from off to n; records go to the list, PSRD ranges to
 * their blocks. With tolerate_tail (a journal of an earlier boot, which may end in writes the crash
 * did not sync), a damaged end is cut off rather than refused. */
static int state_parse_log(StateDir *d, const char *file, const char *magic, const uint8_t *buf, size_t off,
                           size_t n, bool tolerate_tail, uint64_t *ret_generation) {
        bool snapshot = streq(magic, RECORDS_MAGIC), ended = false;
        uint64_t count = 0;
        int r;

        if (!log_header_valid(buf, n, magic))
                return state_fail(d, file, "has a bad header");

        while (off < n) {
                size_t size;
                uint8_t type;
                const uint8_t *payload;

                if (ended)
                        return state_fail(d, file, "has data after its end");
                if (n - off < RECORD_HEADER_SIZE ||
                    n - off - RECORD_HEADER_SIZE < ((size_t) buf[off + 6] | (size_t) buf[off + 7] << 8) ||
                    get_le32(buf + off) !=
                            crc32_update(crc32_update(0, buf + off + 4, 4), buf + off + RECORD_HEADER_SIZE,
                                         (size_t) buf[off + 6] | (size_t) buf[off + 7] << 8)) {
                        if (!tolerate_tail)
                                return state_fail(d, file,
                                                  n - off < RECORD_HEADER_SIZE
                                                          ? "ends in a truncated record"
                                                          : "has a truncated or damaged record");
                        log_notice(
                                "State file %s/%s: dropping %zu bytes of writes the system lost before its "
                                "restart.",
                                d->path, file, n - off);
                        break;
                }
                type = buf[off + 4];
                size = (size_t) buf[off + 6] | (size_t) buf[off + 7] << 8;
                payload = buf + off + RECORD_HEADER_SIZE;

                if (type == RECORD_END) {
                        if (!snapshot || size != 8 || get_le64(payload) != count)
                                return state_fail(d, file, "has a bad end record");
                        ended = true;
                } else if (type >= STATE_RECORD_USER) {
                        r = record_list_add(d, type, payload, size);
                        if (r < 0)
                                return r;
                        count++;
                } else if (!snapshot && type >= RECORD_PSRD_USED && type <= RECORD_PSRD_ACTIVE) {
                        r = apply_psrd_record(d, type, payload, size);
                        if (r == -EBADMSG)
                                return state_fail(d, file, "has a malformed PSRD record");
                        if (r < 0)
                                return r;
                } else
                        return state_fail(d, file, "has a record of unknown type");
                off += RECORD_HEADER_SIZE + size;
        }

        if (snapshot && !ended)
                return state_fail(d, file, "is truncated");
        *ret_generation = get_le64(buf + 8);
        return 0;
}

/* Applies the journal's PSRD ranges and the reservations: after a crash, every byte a pool of ours
 * may have handed out is used. */
static void state_settle_blocks(StateDir *d, bool rebooted) {
        for (StatePool *sp = d->pools; sp; sp = sp->next)
                for (size_t i = 0; i < sp->pool->n_blocks; i++) {
                        Block *b = sp->pool->blocks[i];
                        StateBlock *sb = b->userdata;

                        /* The system went down with takes of this block perhaps not on disk: none of
                         * its bytes may be trusted to be unused. */
                        if (rebooted && sb->active && block_burn(b, 0, b->size) > 0) {
                                sp->burned = true;
                                sb->dirty = true;
                        }

                        if (sb->replayed) {
                                if (block_burn_bitmap(b, sb->replayed))
                                        sb->dirty = true;
                                free(sb->replayed);
                                sb->replayed = NULL;
                        }
                        if (sp->owner == POOL_OWNER_LOCAL && sb->reserved > 0 &&
                            block_burn(b, 0, sb->reserved) > 0)
                                sb->dirty = true;
                        if (sb->dirty)
                                d->changed = true;
                }
}

/* Opens the journal that loading found valid. */
static int state_open_journal(StateDir *d) {
        struct stat st;
        void *p;

        d->journal_fd = openat(d->dir_fd, JOURNAL_FILE, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
        if (d->journal_fd < 0 || fstat(d->journal_fd, &st) < 0)
                return log_error_errno(-errno, "Failed to open %s/" JOURNAL_FILE ": %m", d->path);
        p = mmap(NULL, (size_t) st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, d->journal_fd, 0);
        if (p == MAP_FAILED)
                return log_error_errno(-errno, "Failed to map %s/" JOURNAL_FILE ": %m", d->path);
        d->journal_map = p;
        d->journal_map_size = (size_t) st.st_size;
        d->journal_size = d->journal_base = get_le64(d->journal_map + JOURNAL_END_OFFSET);
        return 0;
}

/* JSON has no room for damage detection of its own: node.json carries the CRC-32 of its role, name
 * and data, the data in json-c's plain form (which parsing and printing again reproduces). */
static int node_checksum(const char *role, const char *name, json_object *data, char ret[static 16]) {
        const char *text = data ? json_object_to_json_string_ext(
                                          data, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE)
                                : "null";
        uint32_t crc;

        if (!text)
                return -ENOMEM;
        crc = crc32_update(0, role, strlen(role) + 1);
        crc = crc32_update(crc, name, strlen(name) + 1);
        crc = crc32_update(crc, text, strlen(text));
        (void) snprintf(ret, 16, "crc32:%08x", crc);
        return 0;
}

static int state_write_node(StateDir *d, json_object *data) {
        _cleanup_(json_object_putp) json_object *o = NULL;
        char checksum[16];
        const char *text;
        int r;

        r = node_checksum(d->role, d->name, data, checksum);
        if (r < 0)
                return r;
        o = json_object_new_object();
        if (!o || json_object_object_add(o, "version", json_object_new_int(STATE_VERSION)) < 0 ||
            json_object_object_add(o, "role", json_object_new_string(d->role)) < 0 ||
            json_object_object_add(o, "name", json_object_new_string(d->name)) < 0 ||
            json_object_object_add(o, "data", json_object_get(data)) < 0 ||
            json_object_object_add(o, "checksum", json_object_new_string(checksum)) < 0)
                return -ENOMEM;
        text = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE);
        if (!text)
                return -ENOMEM;
        r = write_file_atomic(d->dir_fd, NODE_FILE,
                              (const struct iovec[]){
                                      {(void *) text, strlen(text)},
                                      {(void *) "\n", 1},
                              },
                              2);
        if (r < 0)
                return log_error_errno(r, "Failed to write %s/" NODE_FILE ": %m", d->path);
        return top_dir_sync(d);
}

static int state_load_node(StateDir *d, const uint8_t *buf, size_t n) {
        _cleanup_(json_object_putp) json_object *o = NULL;
        json_tokener *tok;
        json_object *v, *role, *name, *data;
        char checksum[16];

        tok = json_tokener_new();
        if (!tok)
                return -ENOMEM;
        o = json_tokener_parse_ex(tok, (const char *) buf, (int) MIN(n, (size_t) INT_MAX));
        /* Exactly one object and the newline written after it: nothing cut, nothing added. */
        if (!o || !json_object_is_type(o, json_type_object) || strlen((const char *) buf) != n || n < 2 ||
            buf[n - 1] != '\n' || buf[n - 2] != '}' || json_tokener_get_parse_end(tok) < n - 1) {
                json_tokener_free(tok);
                return state_fail(d, NODE_FILE, "is not valid JSON or was cut or extended");
        }
        json_tokener_free(tok);
        if (!json_object_object_get_ex(o, "version", &v) || !json_object_is_type(v, json_type_int))
                return state_fail(d, NODE_FILE, "has no format version");
        if (json_object_get_int(v) != STATE_VERSION) {
                log_error("State file %s/" NODE_FILE " has format version %d; this version reads %u.",
                          d->path, json_object_get_int(v), STATE_VERSION);
                return -EBADMSG;
        }
        if (!json_object_object_get_ex(o, "role", &role) || !json_object_is_type(role, json_type_string) ||
            !json_object_object_get_ex(o, "name", &name) || !json_object_is_type(name, json_type_string))
                return state_fail(d, NODE_FILE, "does not name its node");
        data = json_object_object_get_ex(o, "data", &v) && !json_object_is_type(v, json_type_null) ? v
                                                                                                   : NULL;
        if (!json_object_object_get_ex(o, "checksum", &v) || !json_object_is_type(v, json_type_string) ||
            node_checksum(json_object_get_string(role), json_object_get_string(name), data, checksum) < 0 ||
            !streq(json_object_get_string(v), checksum))
                return state_fail(d, NODE_FILE, "does not match its checksum");
        if (!d->role) {
                /* Inspecting: the directory says whose it is. */
                d->role = strdup(json_object_get_string(role));
                d->name = strdup(json_object_get_string(name));
                if (!d->role || !d->name)
                        return -ENOMEM;
        } else if (!streq(json_object_get_string(role), d->role) ||
                   !streq(json_object_get_string(name), d->name)) {
                log_error("State directory %s belongs to %s %s, not to %s %s.", d->path,
                          json_object_get_string(role), json_object_get_string(name), d->role, d->name);
                return -EXDEV;
        }
        d->node = json_object_get(data);
        return 0;
}

/* Builds the snapshot of the next generation from memory. */
static int state_build_snapshot(StateDir *d, SecretBuffer *out) {
        uint8_t h[LOG_HEADER_SIZE], end[RECORD_HEADER_SIZE + 8], count[8];
        int r;

        secret_buffer_clear(&d->snapshot);
        d->n_snapshot = 0;
        log_header_build(h, RECORDS_MAGIC, d->generation + 1, d->boot);
        r = secret_buffer_append(&d->snapshot, h, sizeof(h));
        if (r < 0)
                return r;
        if (d->writer) {
                r = d->writer(d, d->writer_userdata);
                if (r < 0)
                        return r;
        } else
                for (Record *rec = d->records; rec; rec = rec->next) {
                        r = state_dir_snapshot_add(d, rec->type, rec->payload, rec->size);
                        if (r < 0)
                                return r;
                }
        put_le64(count, d->n_snapshot);
        memcpy(end + RECORD_HEADER_SIZE, count, 8);
        (void) record_build(end, RECORD_END, count, 8);
        r = secret_buffer_append(&d->snapshot, end, sizeof(end));
        if (r < 0)
                return r;
        /* The job takes the buffer; the next snapshot grows a new one. */
        *out = d->snapshot;
        d->snapshot = (SecretBuffer){};
        return 0;
}

/* Starts a checkpoint: the snapshot and copies of the blocks that changed are taken now, a new
 * journal (JOURNAL_NEXT_FILE until the checkpoint is done) takes the changes from here, and the job
 * returned writes it all.
 *
 * With keep_active, the peer's blocks marked active stay so, the new journal saying it from its
 * start: a checkpoint in the background then costs the blocks in use no sync. Otherwise (at start
 * and stop) every block starts inactive, so that a reboot burns nothing a clean stop left. */
static int state_checkpoint_begin(StateDir *d, bool keep_active, StateJob **ret) {
        _cleanup_(state_job_freep) StateJob *j = NULL;
        SecretBuffer next = {};
        uint8_t h[LOG_HEADER_SIZE], *map = NULL;
        size_t map_size = 0;
        int r, fd = -EBADF;

        if (d->journal_fd >= 0) {
                r = state_journal_write(d);
                if (r < 0)
                        return r;
        }
        j = state_job_new(d, JOB_CHECKPOINT, 0);
        if (!j)
                return -ENOMEM;
        r = state_copy_dirty_blocks(d, j);
        if (r >= 0)
                r = state_build_snapshot(d, &j->records);

        log_header_build(h, JOURNAL_MAGIC, d->generation + 1, d->boot);
        for (StatePool *sp = d->pools; sp && r >= 0; sp = sp->next)
                for (size_t i = 0; i < sp->pool->n_blocks && r >= 0; i++) {
                        Block *b = sp->pool->blocks[i];
                        StateBlock *sb = b->userdata;
                        bool keep = keep_active && sb && (sb->active || sb->active_pos > 0) &&
                                    b->n_used < b->size;

                        if (sb && !keep) {
                                sb->active = false;
                                sb->active_pos = 0;
                        }
                        if (keep)
                                r = psrd_record(&next, RECORD_PSRD_ACTIVE, sp, b, 0, 0);
                }
        if (r >= 0 && d->spare_fd >= 0 &&
            renameat(d->dir_fd, JOURNAL_SPARE_FILE, d->dir_fd, JOURNAL_NEXT_FILE) >= 0)
                fd = TAKE_FD(d->spare_fd);
        d->spare_fd = safe_close(d->spare_fd);
        if (r >= 0 && fd < 0) {
                fd = openat(d->dir_fd, JOURNAL_NEXT_FILE,
                            O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
                if (fd < 0)
                        r = -errno;
        }
        if (r >= 0)
                r = journal_reserve(fd, &map, &map_size, JOURNAL_DATA_OFFSET + next.size);
        if (r >= 0) {
                memcpy(map, h, sizeof(h));
                if (next.size > 0)
                        memcpy(map + JOURNAL_DATA_OFFSET, next.data, next.size);
                journal_set_end(map, JOURNAL_DATA_OFFSET + next.size);
                j->journal_fd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
                if (j->journal_fd < 0)
                        r = -errno;
        }
        /* For the syncs while the checkpoint runs. */
        if (r >= 0 && d->journal_fd >= 0) {
                d->old_journal_fd = fcntl(d->journal_fd, F_DUPFD_CLOEXEC, 3);
                if (d->old_journal_fd < 0)
                        r = -errno;
        }
        if (r < 0) {
                if (map)
                        (void) munmap(map, map_size);
                safe_close(fd);
                secret_buffer_done(&next);
                return log_error_errno(r, "Failed to start a checkpoint in %s: %m", d->path);
        }

        j->old_journal_fd = d->journal_fd;
        j->old_journal_map = d->journal_map;
        j->old_journal_map_size = d->journal_map_size;
        d->journal_fd = fd;
        d->journal_map = map;
        d->journal_map_size = map_size;
        d->journal_size = d->journal_base = JOURNAL_DATA_OFFSET + next.size;
        d->jpos += JOURNAL_DATA_OFFSET + next.size;
        j->pos = d->jpos;
        d->generation++;
        /* Activations asked for and not durable yet are in the new journal's start now. */
        for (StatePool *sp = d->pools; sp; sp = sp->next)
                for (size_t i = 0; i < sp->pool->n_blocks; i++) {
                        StateBlock *sb = sp->pool->blocks[i]->userdata;

                        if (sb && sb->active_pos > 0)
                                sb->active_pos = j->pos;
                }
        secret_buffer_done(&next);
        d->changed = false;
        d->checkpoint_running = true;
        *ret = TAKE_PTR(j);
        return 0;
}

/* A checkpoint done before returning: everything is then in synced files, and no block of a peer's
 * pool has unsynced takes. */
static int state_checkpoint(StateDir *d) {
        StateJob *j;
        int r;

        if (d->worker) {
                io_worker_drain(d->sync_worker);
                io_worker_drain(d->worker);
        }
        if (d->failed)
                return -EIO;
        r = state_checkpoint_begin(d, false, &j);
        if (r < 0) {
                state_failed(d, r);
                return r;
        }
        j->io.run = state_job_run;
        j->io.done = state_job_done;
        r = state_job_run(&j->io);
        state_job_done(&j->io, r);
        return d->failed ? -EIO : r;
}

/* A checkpoint written in the background. */
static void state_checkpoint_async(StateDir *d) {
        StateJob *j;
        int r;

        if (d->failed || d->checkpoint_running)
                return;
        r = state_checkpoint_begin(d, true, &j);
        if (r < 0) {
                state_failed(d, r);
                return;
        }
        state_submit(d, j);
}

static int state_create(StateDir *d) {
        int r;

        d->generation = 0;
        r = state_checkpoint(d);
        if (r < 0)
                return r;
        /* node.json comes last: a directory without it is empty, whatever else it holds. */
        return state_write_node(d, NULL);
}

/* Reads a journal, or the next one; -ENOENT when there is none. */
static int state_read_journal(StateDir *d, const char *file, uint8_t **ret, size_t *ret_size) {
        int r;

        r = read_file(d->dir_fd, file, ret, ret_size);
        if (r < 0 && r != -ENOENT)
                return log_error_errno(r, "Failed to read %s/%s: %m", d->path, file);
        return r;
}

/* Applies a journal that must belong to the snapshot of generation expect. */
static int state_apply_journal(StateDir *d, const char *file, uint8_t *buf, size_t n, bool tolerate_tail,
                               uint64_t expect) {
        uint64_t gen, end;
        int r;

        if (!log_header_valid(buf, n, JOURNAL_MAGIC))
                r = state_fail(d, file, "has a bad header");
        else if (n < JOURNAL_DATA_OFFSET || n % JOURNAL_EXTENT != 0)
                r = state_fail(d, file, "is truncated");
        else if (get_le32(buf + LOG_HEADER_SIZE) != 0 ||
                 (end = get_le64(buf + JOURNAL_END_OFFSET)) < JOURNAL_DATA_OFFSET || end > n)
                r = state_fail(d, file, "has a bad end offset");
        else
                r = state_parse_log(d, file, JOURNAL_MAGIC, buf, JOURNAL_DATA_OFFSET, end, tolerate_tail,
                                    &gen);
        explicit_bzero(buf, n);
        if (r < 0)
                return r;
        if (gen != expect)
                return state_fail(d, file, "does not belong to the snapshot in " RECORDS_FILE);
        return 0;
}

static int state_load(StateDir *d) {
        _cleanup_free_ uint8_t *node = NULL, *records = NULL, *journal = NULL, *next = NULL;
        size_t n_node = 0, n_records = 0, n_journal = 0, n_next = 0;
        uint64_t gen_records, expect;
        bool any_blocks = false, journal_other_boot, rebooted = false, fold;
        int r;

        r = read_file(d->dir_fd, NODE_FILE, &node, &n_node);
        if (r < 0 && r != -ENOENT)
                return log_error_errno(r, "Failed to read %s/" NODE_FILE ": %m", d->path);
        if (r >= 0) {
                r = state_load_node(d, node, n_node);
                if (r < 0)
                        return r;
        }

        r = state_read_journal(d, JOURNAL_FILE, &journal, &n_journal);
        if (r < 0 && r != -ENOENT)
                return r;
        journal_other_boot = r >= 0 && log_header_valid(journal, n_journal, JOURNAL_MAGIC) &&
                             boot_differs(d, journal + 16);
        d->other_boot = journal_other_boot;

        r = state_load_blocks(d, &any_blocks);
        if (r < 0)
                return r;

        if (!node) {
                if (any_blocks)
                        return state_fail(d, NODE_FILE, "is missing while PSRD blocks are present");
                if (d->flags & STATE_OPEN_READ_ONLY)
                        return 0;
                return state_create(d);
        }

        r = read_file(d->dir_fd, RECORDS_FILE, &records, &n_records);
        if (r == -ENOENT)
                return state_fail(d, RECORDS_FILE, "is missing");
        if (r < 0)
                return log_error_errno(r, "Failed to read %s/" RECORDS_FILE ": %m", d->path);
        r = state_parse_log(d, RECORDS_FILE, RECORDS_MAGIC, records, LOG_HEADER_SIZE, n_records, false,
                            &gen_records);
        explicit_bzero(records, n_records);
        if (r < 0)
                return r;

        if (!journal)
                return state_fail(d, JOURNAL_FILE, "is missing");
        if (log_header_valid(journal, n_journal, JOURNAL_MAGIC) && get_le64(journal + 8) < gen_records) {
                /* A checkpoint was cut short after its snapshot: the snapshot has it all. */
                fold = true;
                expect = gen_records;
        } else {
                rebooted = journal_other_boot;
                r = state_apply_journal(d, JOURNAL_FILE, journal, n_journal, rebooted, gen_records);
                if (r < 0)
                        return r;
                fold = rebooted;
                expect = gen_records + 1;
        }
        d->generation = gen_records;

        /* A checkpoint was cut short before its last rename: what was journaled after it began is in
         * the next journal. */
        r = state_read_journal(d, JOURNAL_NEXT_FILE, &next, &n_next);
        if (r < 0 && r != -ENOENT)
                return r;
        if (r >= 0) {
                fold = true;
                if (!log_header_valid(next, n_next, JOURNAL_MAGIC) &&
                    ((expect > gen_records && journal_other_boot) || memory_is_zero(next, n_next))) {
                        /* Created, and the process stopped before its header or the system went
                         * down before it was synced: nothing relied on it, since what relies on
                         * the journal syncs it first. */
                        log_notice("State file %s/" JOURNAL_NEXT_FILE
                                   " was not written completely before the process or the system stopped; "
                                   "dropping it.",
                                   d->path);
                        d->generation = expect; /* its number is not used again */
                } else {
                        bool other =
                                log_header_valid(next, n_next, JOURNAL_MAGIC) && boot_differs(d, next + 16);

                        r = state_apply_journal(d, JOURNAL_NEXT_FILE, next, n_next, other, expect);
                        if (r < 0)
                                return r;
                        rebooted = rebooted || other;
                        d->generation = expect;
                }
        }

        state_settle_blocks(d, rebooted);

        if (d->flags & STATE_OPEN_READ_ONLY)
                return 0;
        /* A journal names the boot it was written in: fold one of an earlier boot into a checkpoint,
         * so that only this boot's writes are ever in question; and a checkpoint cut short is
         * finished. */
        if (fold)
                return state_checkpoint(d);
        return state_open_journal(d);
}

/* ---- event loop ---- */

static int on_sync(sd_event_source *s, uint64_t usec, void *userdata) {
        (void) s;
        (void) usec;
        state_sync_async(userdata);
        return 0;
}

/* The interval, 25% of it at random: nodes started together (a topology, a boot) do not all stop
 * for a checkpoint at the same moment. */
static uint64_t checkpoint_delay(const StateDir *d) {
        uint64_t usec = (uint64_t) d->checkpoint_sec * 1000000u, r = 0;

        (void) random_bytes(&r, sizeof(r));
        return usec - usec / 8 + r % (usec / 4 + 1);
}

static int on_checkpoint(sd_event_source *s, uint64_t usec, void *userdata) {
        StateDir *d = userdata;

        (void) usec;
        if (!(d->flags & STATE_OPEN_READ_ONLY) && (d->changed || d->journal_size > d->journal_base))
                state_checkpoint_async(d);
        if (d->checkpoint_sec > 0)
                (void) sd_event_source_set_time_relative(s, checkpoint_delay(d));
        return 0;
}

int state_dir_open(sd_event *event, const char *path, const char *role, const char *name,
                   StateOpenFlags flags, StateDir **ret) {
        _cleanup_(state_dir_freep) StateDir *d = NULL;
        int r;

        assert(path && ret);
        assert((role && name) || (flags & STATE_OPEN_READ_ONLY));

        d = calloc(1, sizeof(StateDir));
        if (!d)
                return -ENOMEM;
        d->dir_fd = d->psrd_fd = d->lock_fd = d->journal_fd = d->old_journal_fd = d->spare_fd = -EBADF;
        pthread_mutex_init(&d->files_lock, NULL);
        d->flags = flags;
        d->checkpoint_sec = CHECKPOINT_INTERVAL_DEFAULT;
        d->path = strdup(path);
        d->role = role ? strdup(role) : NULL;
        d->name = name ? strdup(name) : NULL;
        if (!d->path || (role && !d->role) || (name && !d->name))
                return -ENOMEM;

        put_le64(d->boot, boot_time_usec());

        d->dir_fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (d->dir_fd < 0)
                return log_error_errno(-errno, "Failed to open state directory %s: %m", path);

        if (!(flags & STATE_OPEN_READ_ONLY)) {
                d->lock_fd = openat(d->dir_fd, LOCK_FILE, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
                if (d->lock_fd < 0)
                        return log_error_errno(-errno, "Failed to open %s/" LOCK_FILE ": %m", path);
                if (flock(d->lock_fd, LOCK_EX | LOCK_NB) < 0) {
                        if (errno == EWOULDBLOCK)
                                return log_error_errno(
                                        -EBUSY, "State directory %s is in use by another process.", path);
                        return log_error_errno(-errno, "Failed to lock %s/" LOCK_FILE ": %m", path);
                }
                if (mkdirat(d->dir_fd, PSRD_DIR, 0700) < 0 && errno != EEXIST)
                        return log_error_errno(-errno, "Failed to create %s/" PSRD_DIR ": %m", path);
        }

        d->psrd_fd = openat(d->dir_fd, PSRD_DIR, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
        if (d->psrd_fd < 0 && !(errno == ENOENT && (flags & STATE_OPEN_READ_ONLY)))
                return log_error_errno(-errno, "Failed to open %s/" PSRD_DIR ": %m", path);

        if (d->psrd_fd >= 0)
                r = state_load(d);
        else if (faccessat(d->dir_fd, NODE_FILE, F_OK, 0) < 0 && errno == ENOENT)
                r = 0; /* inspecting a directory no node has used yet */
        else
                r = state_fail(d, PSRD_DIR, "is missing");
        if (r < 0)
                return r;

        if (event && !(flags & STATE_OPEN_READ_ONLY)) {
                d->event = sd_event_ref(event);
                r = io_worker_new(event, "state-io", &d->worker);
                if (r >= 0)
                        r = io_worker_new(event, "state-sync", &d->sync_worker);
                if (r < 0)
                        return log_error_errno(r, "Failed to start the state I/O threads: %m");
                r = sd_event_add_time_relative(event, &d->sync_timer, CLOCK_MONOTONIC, SYNC_DELAY_USEC, 0,
                                               on_sync, d);
                if (r < 0)
                        return r;
                (void) sd_event_source_set_description(d->sync_timer, "state-sync");
                (void) sd_event_source_set_enabled(d->sync_timer, SD_EVENT_OFF);
                r = sd_event_add_time_relative(event, &d->checkpoint_timer, CLOCK_MONOTONIC,
                                               checkpoint_delay(d), 1000000u, on_checkpoint, d);
                if (r < 0)
                        return r;
                (void) sd_event_source_set_description(d->checkpoint_timer, "state-checkpoint");
                (void) sd_event_source_set_enabled(d->checkpoint_timer, SD_EVENT_ON);
        }

        *ret = TAKE_PTR(d);
        return 0;
}

StateDir *state_dir_free(StateDir *d) {
        if (!d)
                return NULL;

        /* Jobs still queued finish first: they name d and its blocks. Those their completions ask
         * for run at once. */
        d->stopping = true;
        d->sync_worker = io_worker_free(d->sync_worker);
        d->worker = io_worker_free(d->worker);
        while (d->pools) {
                StatePool *sp = d->pools;

                d->pools = sp->next;
                for (size_t i = 0; i < sp->pool->n_blocks; i++)
                        state_block_free(sp->pool->blocks[i]->userdata);
                /* A pool handed out belongs to its taker, who frees it. */
                if (sp->taken)
                        pool_set_observer(sp->pool, NULL, NULL);
                else
                        pool_free(sp->pool);
                free(sp->peer);
                free(sp);
        }
        record_list_free(d);
        secret_buffer_done(&d->pending);
        secret_buffer_done(&d->snapshot);
        json_object_put(d->node);
        sd_event_source_disable_unref(d->sync_timer);
        sd_event_source_disable_unref(d->checkpoint_timer);
        sd_event_unref(d->event);
        if (d->journal_map)
                (void) munmap(d->journal_map, d->journal_map_size);
        safe_close(d->journal_fd);
        safe_close(d->old_journal_fd);
        safe_close(d->spare_fd);
        safe_close(d->psrd_fd);
        safe_close(d->lock_fd);
        safe_close(d->dir_fd);
        pthread_mutex_destroy(&d->files_lock);
        free(d->path);
        free(d->role);
        free(d->name);
        free(d);
        return NULL;
}

const char *state_dir_path(const StateDir *d) {
        return d ? d->path : NULL;
}

const char *state_dir_role(const StateDir *d) {
        return d ? d->role : NULL;
}

const char *state_dir_name(const StateDir *d) {
        return d ? d->name : NULL;
}

json_object *state_dir_node(const StateDir *d) {
        return d ? d->node : NULL;
}

int state_dir_save_node(StateDir *d, json_object *data) {
        int r;

        if (!d)
                return 0;
        if (d->flags & STATE_OPEN_READ_ONLY)
                return -EROFS;
        r = state_write_node(d, data);
        if (r < 0)
                return r;
        json_object_put(d->node);
        d->node = json_object_get(data);
        return 0;
}

int state_dir_take_pool(StateDir *d, const char *peer, PoolOwner owner, Pool **ret) {
        StatePool *sp;
        int r;

        if (!d)
                return pool_new(peer, owner, ret);
        if (!name_is_valid(peer) || strlen(peer) >= PEER_NAME_MAX)
                return -EINVAL;

        sp = state_pool_find(d, peer, owner);
        if (sp && sp->taken)
                return -EBUSY;
        if (!sp) {
                r = state_pool_new(d, peer, owner, &sp);
                if (r < 0)
                        return r;
        }
        sp->taken = true;
        pool_set_observer(sp->pool, state_pool_observer, sp);
        state_pool_prepare_ahead(sp);
        *ret = sp->pool;
        return 0;
}

static void state_pool_unlink(StateDir *d, StatePool *sp) {
        for (StatePool **i = &d->pools; *i; i = &(*i)->next)
                if (*i == sp) {
                        *i = sp->next;
                        break;
                }
        free(sp->peer);
        free(sp);
}

void state_dir_release_pool(StateDir *d, Pool *p, bool destroy) {
        StatePool *sp;

        if (!d || !p)
                return;
        sp = state_pool_find_by_pool(d, p);
        if (!sp)
                return;

        for (size_t i = 0; i < p->n_blocks; i++) {
                StateBlock *sb = p->blocks[i]->userdata;

                if (!sb)
                        continue;
                if (destroy && !(d->flags & STATE_OPEN_READ_ONLY))
                        state_block_unlink(sb);
                state_block_free(sb);
        }
        pool_set_observer(p, NULL, NULL);
        state_pool_unlink(d, sp);
}

size_t state_dir_drop_unclaimed(StateDir *d) {
        size_t n = 0;

        if (!d)
                return 0;
        for (StatePool *sp = d->pools, *next; sp; sp = next) {
                next = sp->next;
                if (sp->taken)
                        continue;
                log_notice("Destroying the stored PSRD of %s (%s pool, %zu blocks): %s is no longer known.",
                           sp->peer, pool_owner_to_string(sp->owner), sp->pool->n_blocks, sp->peer);
                n += sp->pool->n_blocks;
                if (d->flags & STATE_OPEN_READ_ONLY)
                        continue;
                {
                        Pool *p = sp->pool;

                        state_dir_release_pool(d, p, true);
                        pool_free(p);
                }
        }
        return n;
}

int state_dir_replay(StateDir *d, StateRecordHandler handler, void *userdata) {
        int r = 0;

        if (!d)
                return 0;
        for (Record *rec = d->records; rec; rec = rec->next) {
                r = handler(rec->type, rec->payload, rec->size, userdata);
                if (r < 0)
                        break;
        }
        record_list_free(d);
        return r;
}

int state_record_put_text(uint8_t *buf, size_t *off, const char *s) {
        size_t n = strlen(s);

        if (n == 0 || n > UINT8_MAX)
                return -E2BIG;
        buf[(*off)++] = (uint8_t) n;
        memcpy(buf + *off, s, n);
        *off += n;
        return 0;
}

int state_record_put_value(uint8_t *buf, size_t *off, const void *data, size_t size) {
        if (size == 0 || size > UINT16_MAX)
                return -E2BIG;
        buf[(*off)++] = (uint8_t) (size & 0xff);
        buf[(*off)++] = (uint8_t) (size >> 8);
        memcpy(buf + *off, data, size);
        *off += size;
        return 0;
}

int state_record_get_text(const uint8_t *p, size_t n, size_t *off, char **ret) {
        size_t l;

        if (*off >= n)
                return -EBADMSG;
        l = p[*off];
        if (l == 0 || l > n - *off - 1 || memchr(p + *off + 1, 0, l))
                return -EBADMSG;
        *ret = memdup_suffix0(p + *off + 1, l);
        if (!*ret)
                return -ENOMEM;
        *off += 1 + l;
        return 0;
}

int state_record_get_value(const uint8_t *p, size_t n, size_t *off, const uint8_t **ret, size_t *ret_size) {
        size_t size;

        if (*off > n || n - *off < 2)
                return -EBADMSG;
        size = (size_t) p[*off] | (size_t) p[*off + 1] << 8;
        if (size == 0 || size != n - *off - 2)
                return -EBADMSG;
        *ret = p + *off + 2;
        *ret_size = size;
        *off = n;
        return 0;
}

int state_dir_append(StateDir *d, uint8_t type, const void *payload, size_t size) {
        int r;

        if (!d)
                return 0;
        if (type < STATE_RECORD_USER || type == RECORD_END)
                return -EINVAL;
        if (d->failed)
                return -EIO;
        r = buffer_add_record(&d->pending, type, payload, size);
        if (r < 0)
                return r;
        d->changed = true;
        state_pending(d);
        return 0;
}

int state_dir_flush(StateDir *d) {
        if (!d || (d->flags & STATE_OPEN_READ_ONLY))
                return 0;
        if (d->failed)
                return -EIO;
        return state_journal_write(d);
}

int state_dir_flush_callback(void *userdata) {
        return state_dir_flush(userdata);
}

void state_dir_set_pool_observer(StateDir *d, PoolObserver observer, void *userdata) {
        if (!d)
                return;
        d->next_observer = observer;
        d->next_observer_userdata = userdata;
}

void state_dir_set_snapshot_writer(StateDir *d, StateSnapshotWriter writer, void *userdata) {
        if (!d)
                return;
        d->writer = writer;
        d->writer_userdata = userdata;
}

int state_dir_snapshot_add(StateDir *d, uint8_t type, const void *payload, size_t size) {
        int r;

        if (!d)
                return 0;
        if (type < STATE_RECORD_USER || type == RECORD_END)
                return -EINVAL;
        r = buffer_add_record(&d->snapshot, type, payload, size);
        if (r < 0)
                return r;
        d->n_snapshot++;
        return 0;
}

int state_dir_checkpoint(StateDir *d) {
        if (!d || (d->flags & STATE_OPEN_READ_ONLY))
                return 0;
        if (d->failed)
                return -EIO;
        if (!d->changed && d->journal_size <= d->journal_base && !d->checkpoint_running &&
            io_worker_pending(d->worker) == 0 && io_worker_pending(d->sync_worker) == 0)
                return 0;
        return state_checkpoint(d);
}

int state_dir_close(StateDir *d) {
        if (!d || (d->flags & STATE_OPEN_READ_ONLY))
                return 0;
        for (StatePool *sp = d->pools; sp; sp = sp->next) {
                if (sp->owner != POOL_OWNER_LOCAL)
                        continue;
                for (size_t i = 0; i < sp->pool->n_blocks; i++) {
                        StateBlock *sb = sp->pool->blocks[i]->userdata;

                        if (sb && (sb->reserved > 0 || sb->reserve_pos > 0)) {
                                sb->reserved = 0;
                                sb->reserve_pos = 0;
                                sb->dirty = true;
                                d->changed = true;
                        }
                }
        }
        return state_dir_checkpoint(d);
}

int state_dir_set_checkpoint_interval(StateDir *d, unsigned sec) {
        if (!d || !d->checkpoint_timer)
                return 0;
        d->checkpoint_sec = sec;
        if (sec == 0)
                return sd_event_source_set_enabled(d->checkpoint_timer, SD_EVENT_OFF);
        (void) sd_event_source_set_time_relative(d->checkpoint_timer, checkpoint_delay(d));
        return sd_event_source_set_enabled(d->checkpoint_timer, SD_EVENT_ON);
}

void state_dir_set_failure_callback(StateDir *d, StateFailed callback, void *userdata) {
        if (!d)
                return;
        d->failed_callback = callback;
        d->failed_userdata = userdata;
}

int state_dir_call_when_written(StateDir *d, StateWritten callback, void *userdata) {
        StateJob *j;

        assert(callback);
        if (!d || !d->worker) {
                callback(userdata);
                return 0;
        }
        j = state_job_new(d, JOB_BARRIER, 0);
        if (!j)
                return -ENOMEM;
        j->written = callback;
        j->written_userdata = userdata;
        state_submit(d, j);
        return 0;
}

int state_dir_wait(StateDir *d) {
        if (!d || !d->worker)
                return 0;
        /* A job that completes may ask for more: the sync of what was written while it ran. */
        do {
                io_worker_drain(d->sync_worker);
                io_worker_drain(d->worker);
        } while (!d->failed && (d->sync_running || d->checkpoint_running));
        return d->failed ? -EIO : 0;
}

int state_dir_sync(StateDir *d) {
        int r;

        if (!d || (d->flags & STATE_OPEN_READ_ONLY))
                return 0;
        if (d->failed)
                return -EIO;
        r = state_journal_write(d);
        if (r < 0)
                return r;
        if (d->jpos <= d->jpos_durable)
                return 0;
        if (fdatasync(d->journal_fd) < 0) {
                r = log_error_errno(-errno, "Failed to sync %s/" JOURNAL_FILE ": %m", d->path);
                state_failed(d, r);
                return r;
        }
        if (d->checkpoint_running) {
                /* The journal is the checkpoint's new one, whose name may not be durable yet; the
                 * old one may not be synced yet either, so only what was just written counts. */
                if (fsync(d->dir_fd) < 0) {
                        r = log_error_errno(-errno, "Failed to sync state directory %s: %m", d->path);
                        state_failed(d, r);
                        return r;
                }
                return 0;
        }
        state_durable(d, d->jpos);
        return 0;
}

bool state_dir_peer_burned(const StateDir *d, const char *peer) {
        if (!d)
                return false;
        for (const StatePool *sp = d->pools; sp; sp = sp->next)
                if (sp->burned && streq(sp->peer, peer))
                        return true;
        return false;
}

int state_dir_list_pools(const StateDir *d, StatePoolInfo **ret, size_t *ret_n) {
        StatePoolInfo *l = NULL;
        size_t n = 0;

        if (d)
                for (const StatePool *sp = d->pools; sp; sp = sp->next) {
                        StatePoolInfo *nl = reallocarray(l, n + 1, sizeof(StatePoolInfo));

                        if (!nl) {
                                free(l);
                                return -ENOMEM;
                        }
                        l = nl;
                        memset(&l[n], 0, sizeof(StatePoolInfo));
                        (void) snprintf(l[n].peer, sizeof(l[n].peer), "%s", sp->peer);
                        l[n].owner = sp->owner;
                        pool_get_stats(sp->pool, &l[n].stats);
                        n++;
                }
        *ret = l;
        *ret_n = n;
        return 0;
}

size_t state_dir_n_records(const StateDir *d) {
        return d ? d->n_records : 0;
}
