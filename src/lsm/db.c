/*
 * db.c: the engine: open and recovery, writes, reads, snapshots, the user
 * iterator, flush, compaction and stats. Design notes: docs/lsm.md.
 *
 * Locks. write_mu serializes writers (WAL append + memtable insert + publish
 * of last_seq). mu guards the memtable list, the current version, snapshots,
 * background state and stats; it is held only for short bookkeeping, never
 * across I/O except the WAL rotation at a memtable switch. Lock order:
 * write_mu, then mu. Readers take mu just long enough to reference the
 * current "super version" (memtables + version) and then read without locks.
 *
 * The background thread is the only one that builds tables, changes the
 * version or writes the manifest, so a version it computes under mu stays
 * valid while it drops mu to log the edit.
 */
#define _GNU_SOURCE
#include "lsm/internal.h"
#include "wal/wal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_IMM 16
#define WAL_REC_BATCH 1
#define MANIFEST_MAX_BYTES (64u << 20) /* start a new manifest beyond this */
/* Background work that failed is retried after a delay doubling from the
 * minimum to the maximum (disk full: the engine resumes once space is freed). */
#define RETRY_MIN_MS 50
#define RETRY_MAX_MS 2000
#define QUARANTINE_DIR "quarantine"
#define LOG_MODULE "lsm"

struct lsm_snapshot {
    uint64_t seq;
    struct lsm_snapshot *prev, *next;
};

/* What a read needs, referenced as one unit: memtables and tables. */
struct super_version {
    atomic_int refs;
    struct memtable *mem;
    struct memtable *imm[MAX_IMM + 1]; /* oldest first */
    uint32_t nimm;
    struct lsm_version *v;
};

/* A table moved aside because compaction found it damaged (lsm_health). */
struct quarantined {
    uint64_t number;
    int level;
    char *path;
    bool range_known;
    struct nk_buf lo, hi; /* user keys, inclusive */
    char *reason;
    /* sub-ranges [lo, hi) the owner restored since (reads there are
     * served); bounded: beyond QUAR_MAX_RESOLVED the oldest is forgotten,
     * so a read there fails again (safe, merely cautious) */
    struct nk_buf *res_lo, *res_hi;
    uint32_t nres;
};
#define QUAR_MAX_RESOLVED 4096

struct lsm_db {
    char *dir;
    struct lsm_options opt;
    int lock_fd;
    struct wal *wal;
    struct sst_cache *cache;
    struct sst_options sst_opt;

    pthread_mutex_t write_mu;
    pthread_mutex_t mu;
    pthread_cond_t bg_cv;   /* work for the background thread */
    pthread_cond_t done_cv; /* the background thread made progress */

    struct memtable *mem;
    struct memtable *imm[MAX_IMM + 1]; /* oldest first; +1: lsm_close may exceed the bound */
    uint32_t nimm;
    atomic_uint nimm_pending; /* nimm, readable without mu */
    struct lsm_version *current;
    struct super_version *sv;
    atomic_uint l0_files;

    atomic_uint_fast64_t last_seq;
    atomic_uint_fast64_t persisted_seq;
    atomic_uint_fast64_t next_file;
    uint64_t log_number, log_offset; /* replay the WAL from here */

    int manifest_fd;
    uint64_t manifest_number;
    uint64_t manifest_size;

    struct lsm_snapshot snapshots; /* circular list sentinel, oldest first */

    pthread_t bg;
    bool bg_started;
    atomic_bool shutting_down;
    nk_status bg_error;     /* blocks background work until retry_at_ms */
    atomic_bool bg_failed;  /* degraded: last_error is set, writes are refused */
    nk_status last_error;   /* the last background failure, until work succeeds again */
    uint64_t error_since_ms, retry_at_ms, retry_delay_ms, retries;
    uint64_t failures; /* background failures ever (lsm_close waits for the next) */
    bool manifest_broken; /* an append failed: the next edit starts a new manifest */
    uint64_t *orphans;    /* tables of edits whose manifest write failed */
    uint32_t norphans, orphans_cap;
    struct quarantined *quar;
    uint32_t nquar, quar_cap;
    atomic_uint nquar_pending; /* nquar, readable without mu */
    bool bg_busy;
    bool bg_paused;

    bool manual_pending;
    bool manual_has_lo, manual_has_hi;
    struct nk_buf manual_lo, manual_hi;
    nk_status manual_status;
    uint64_t manual_gen_done;

    struct nk_buf compact_ptr[LSM_NUM_LEVELS];
    struct lsm_pick_options pick;

    /* stats (under mu unless atomic) */
    atomic_uint_fast64_t user_bytes;
    atomic_uint_fast64_t write_stalls;
    uint64_t flush_bytes, flushes, flushes_done, compactions, trivial_moves;
    uint64_t level_read[LSM_NUM_LEVELS], level_written[LSM_NUM_LEVELS];
};

/* One byte of memtable bloom filter per 64 bytes of write buffer: about 15
 * bits per entry for small records, one cache line per probe. */
static size_t mem_bloom_bytes(const struct lsm_db *db)
{
    uint64_t b = db->opt.write_buffer_size / 64;
    return (size_t)(b < 4096 ? 4096 : (b > (8u << 20) ? (8u << 20) : b));
}

static uint64_t db_now(const struct lsm_db *db)
{
    return db->opt.clock_ms ? db->opt.clock_ms(db->opt.clock_ctx) : nk_wall_ms();
}

/* The time an expiring record of `user` is judged against: the key clock
 * when there is one, else `now` (db_now, read once per operation). */
static inline uint64_t db_now_for(const struct lsm_db *db, struct nk_slice user, uint64_t now)
{
    return db->opt.key_clock_ms ? db->opt.key_clock_ms(db->opt.key_clock_ctx, user) : now;
}

void lsm_options_default(struct lsm_options *o)
{
    memset(o, 0, sizeof(*o));
    o->create_if_missing = true;
    o->write_buffer_size = 8u << 20;
    o->max_immutable = 2;
    o->l0_compaction_trigger = 4;
    o->l0_stop_trigger = 20;
    o->max_bytes_base = 64u << 20;
    o->level_ratio = 10;
    o->target_file_size = 8u << 20;
    o->block_cache_bytes = 64u << 20;
    o->use_mmap_reads = true;
    o->block_size = 4096;
    o->bloom_bits_per_key = 10;
    o->compression = SST_COMPRESS_NONE;
    o->wal_sync = LSM_WAL_SYNC_ALWAYS;
    o->wal_batch_window_us = 2000;
}

static char *path_join(const char *dir, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static char *path_join(const char *dir, const char *fmt, ...)
{
    char name[64];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = nk_malloc(n);
    snprintf(p, n, "%s/%s", dir, name);
    return p;
}

static char *table_path(const struct lsm_db *db, uint64_t number)
{
    return path_join(db->dir, "%06" PRIu64 ".sst", number);
}

static nk_status copy_status(nk_status s)
{
    return nk_ok(s) ? NK_OK : nk_status_make(s.code, "%s", nk_status_msg(s));
}

/*
 * mu held. Records a failed piece of background work: the work stops until
 * retry_at_ms, writes are refused (make_room) and lsm_health reports it,
 * until a retry succeeds (bg_recovered).
 */
static void set_bg_error(struct lsm_db *db, nk_status s)
{
    if (nk_ok(s))
        return;
    if (s.code == NK_CANCELLED) { /* shutting down: not a failure */
        nk_status_free(&s);
        return;
    }
    uint64_t now = nk_mono_ms();
    if (nk_ok(db->last_error)) {
        db->error_since_ms = now;
        db->retry_delay_ms = RETRY_MIN_MS;
    } else {
        db->retry_delay_ms = NK_MIN(2 * db->retry_delay_ms, (uint64_t)RETRY_MAX_MS);
    }
    db->retry_at_ms = now + db->retry_delay_ms;
    db->failures++;
    NK_ERROR(LOG_MODULE, "%s: background work failed (retry %" PRIu64 " in %" PRIu64 " ms): %s",
             db->dir, db->retries + 1, db->retry_delay_ms, nk_status_msg(s));
    nk_status_free(&db->last_error);
    db->last_error = copy_status(s);
    nk_status_free(&db->bg_error);
    db->bg_error = s;
    atomic_store(&db->bg_failed, true);
    pthread_cond_broadcast(&db->done_cv);
}

/* mu held: background work succeeded after failures; writes resume. */
static void bg_recovered(struct lsm_db *db)
{
    if (!nk_ok(db->bg_error) || nk_ok(db->last_error))
        return;
    NK_INFO(LOG_MODULE, "%s: background work succeeds again after %" PRIu64
                        " retries; writes resume (the error was: %s)",
            db->dir, db->retries, nk_status_msg(db->last_error));
    nk_status_free(&db->last_error);
    db->retries = 0;
    atomic_store(&db->bg_failed, false);
    pthread_cond_broadcast(&db->done_cv);
}

/* ----------------------------------------------------------- super version */

static void sv_unref(struct super_version *sv)
{
    if (!sv || atomic_fetch_sub_explicit(&sv->refs, 1, memory_order_acq_rel) != 1)
        return;
    mem_unref(sv->mem);
    for (uint32_t i = 0; i < sv->nimm; i++)
        mem_unref(sv->imm[i]);
    version_unref(sv->v);
    free(sv);
}

/* mu held: publishes the current memtables and version to new readers. */
static void sv_install(struct lsm_db *db)
{
    struct super_version *sv = nk_calloc(1, sizeof(*sv));
    atomic_init(&sv->refs, 1);
    sv->mem = db->mem;
    mem_ref(sv->mem);
    sv->nimm = db->nimm;
    for (uint32_t i = 0; i < db->nimm; i++) {
        sv->imm[i] = db->imm[i];
        mem_ref(sv->imm[i]);
    }
    sv->v = db->current;
    version_ref(sv->v);
    struct super_version *old = db->sv;
    db->sv = sv;
    atomic_store(&db->nimm_pending, db->nimm);
    atomic_store(&db->l0_files, db->current->nfiles[0]);
    sv_unref(old);
}

static struct super_version *sv_get(struct lsm_db *db)
{
    pthread_mutex_lock(&db->mu);
    struct super_version *sv = db->sv;
    atomic_fetch_add_explicit(&sv->refs, 1, memory_order_relaxed);
    pthread_mutex_unlock(&db->mu);
    return sv;
}

/* ---------------------------------------------------------------- manifest */

static nk_status write_all(int fd, const void *p, size_t n, const char *what)
{
    const uint8_t *b = p;
    while (n) {
        ssize_t w = nk_fs_write(fd, b, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return nk_status_errno(errno, "write %s", what);
        }
        b += w;
        n -= (size_t)w;
    }
    return NK_OK;
}

/*
 * Starts a new manifest holding the whole of v, then points CURRENT at it
 * (atomic rename) and removes the old one. Called at open and when the
 * manifest has grown past MANIFEST_MAX_BYTES.
 */
static nk_status new_manifest(struct lsm_db *db, const struct lsm_version *v, uint64_t last_seq)
{
    uint64_t number = atomic_fetch_add(&db->next_file, 1);
    struct lsm_edit e;
    edit_init(&e);
    e.has_comparator = true;
    snprintf(e.comparator, sizeof e.comparator, "%s", lsm_ik_comparator.name);
    e.has_log_number = true;
    e.log_number = db->log_number;
    e.log_offset = db->log_offset;
    e.has_next_file = true;
    e.next_file = atomic_load(&db->next_file);
    e.has_last_seq = true;
    e.last_seq = last_seq;
    version_snapshot_edit(v, &e);
    struct nk_buf payload, rec;
    nk_buf_init(&payload);
    nk_buf_init(&rec);
    edit_encode(&e, &payload);
    manifest_frame(nk_slice_make(payload.data, payload.len), &rec);
    edit_free(&e);
    nk_buf_free(&payload);

    char *path = path_join(db->dir, "MANIFEST-%06" PRIu64, number);
    nk_status s = NK_OK;
    int fd = nk_fs_open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        s = nk_status_errno(errno, "create manifest %s", path);
    if (nk_ok(s))
        s = write_all(fd, rec.data, rec.len, path);
    if (nk_ok(s) && nk_fs_fdatasync(fd) != 0)
        s = nk_status_errno(errno, "fdatasync manifest %s", path);
    if (nk_ok(s)) {
        char cur[64];
        int n = snprintf(cur, sizeof cur, "MANIFEST-%06" PRIu64 "\n", number);
        char *cpath = path_join(db->dir, "CURRENT");
        s = nk_write_file_atomic(cpath, cur, (size_t)n);
        free(cpath);
    }
    if (!nk_ok(s)) {
        if (fd >= 0)
            nk_fs_close(fd);
        nk_fs_unlink(path);
        free(path);
        nk_buf_free(&rec);
        return s;
    }
    if (db->manifest_fd >= 0) {
        nk_fs_close(db->manifest_fd);
        char *old = path_join(db->dir, "MANIFEST-%06" PRIu64, db->manifest_number);
        nk_fs_unlink(old);
        free(old);
    }
    db->manifest_fd = fd;
    db->manifest_number = number;
    db->manifest_size = rec.len;
    free(path);
    nk_buf_free(&rec);
    return NK_OK;
}

/*
 * mu held (dropped while writing). Logs e to the manifest and installs
 * current + e. Tables the edit deletes (and does not re-add elsewhere, as a
 * trivial move does) become obsolete: unlinked once no reader holds them.
 */
static nk_status log_and_apply(struct lsm_db *db, struct lsm_edit *e)
{
    e->has_next_file = true;
    e->next_file = atomic_load(&db->next_file);
    struct lsm_version *v;
    nk_status s = version_apply(db->current, e, &v);
    if (!nk_ok(s)) {
        /* never logged: new tables the edit adds can go (not a table that a
         * trivial move re-adds: that one is live in the current version) */
        for (uint32_t i = 0; i < e->nadds; i++) {
            bool live = false;
            for (int l = 0; l < LSM_NUM_LEVELS && !live; l++)
                for (uint32_t k = 0; k < db->current->nfiles[l] && !live; k++)
                    live = db->current->files[l][k] == e->adds[i].file;
            if (!live)
                atomic_store(&e->adds[i].file->obsolete, true);
        }
        return s;
    }
    pthread_mutex_unlock(&db->mu);
    bool fresh = db->manifest_broken || db->manifest_size > MANIFEST_MAX_BYTES;
    if (fresh) {
        /* A failed append may have left part of a record in the old file;
         * appending after it would make damage in the middle. Start anew. */
        /* the snapshot already includes e; nothing else changes the version */
        s = new_manifest(db, v, atomic_load(&db->persisted_seq) > e->last_seq
                                    ? atomic_load(&db->persisted_seq)
                                    : e->last_seq);
    } else {
        struct nk_buf payload, rec;
        nk_buf_init(&payload);
        nk_buf_init(&rec);
        edit_encode(e, &payload);
        manifest_frame(nk_slice_make(payload.data, payload.len), &rec);
        char mpath[64];
        snprintf(mpath, sizeof mpath, "MANIFEST-%06" PRIu64, db->manifest_number);
        s = write_all(db->manifest_fd, rec.data, rec.len, mpath);
        if (nk_ok(s) && nk_fs_fdatasync(db->manifest_fd) != 0)
            s = nk_status_errno(errno, "fdatasync %s", mpath);
        if (nk_ok(s))
            db->manifest_size += rec.len;
        else
            s = nk_status_wrap(s, "%s", db->dir);
        nk_buf_free(&payload);
        nk_buf_free(&rec);
    }
    pthread_mutex_lock(&db->mu);
    if (!nk_ok(s)) {
        /*
         * Whether the record reached the disk is unknown (a failed fdatasync
         * may still have written it), so the tables it adds stay on disk
         * until a new manifest that does not name them is durable.
         */
        db->manifest_broken = true;
        for (uint32_t i = 0; i < e->nadds; i++) {
            if (db->norphans == db->orphans_cap) {
                db->orphans_cap = db->orphans_cap ? 2 * db->orphans_cap : 8;
                db->orphans = nk_realloc(db->orphans, db->orphans_cap * sizeof *db->orphans);
            }
            db->orphans[db->norphans++] = e->adds[i].file->number;
        }
        version_unref(v);
        return s;
    }
    if (fresh && db->manifest_broken) {
        db->manifest_broken = false;
        /* the new manifest names exactly v: orphans not in it can go */
        for (uint32_t k = 0; k < db->norphans; k++) {
            bool live = false;
            for (int l = 0; l < LSM_NUM_LEVELS && !live; l++)
                for (uint32_t i = 0; i < v->nfiles[l] && !live; i++)
                    live = v->files[l][i]->number == db->orphans[k];
            if (!live) {
                char *p = table_path(db, db->orphans[k]);
                nk_fs_unlink(p);
                free(p);
            }
        }
        db->norphans = 0;
    }
    for (uint32_t d = 0; d < e->ndels; d++) {
        bool readded = false;
        for (uint32_t a = 0; a < e->nadds && !readded; a++)
            readded = e->adds[a].file->number == e->dels[d].number;
        if (readded)
            continue;
        int l = e->dels[d].level;
        for (uint32_t i = 0; i < db->current->nfiles[l]; i++)
            if (db->current->files[l][i]->number == e->dels[d].number)
                atomic_store(&db->current->files[l][i]->obsolete, true);
    }
    version_unref(db->current);
    db->current = v;
    sv_install(db);
    return NK_OK;
}

/* ------------------------------------------------------------ table output */

struct merge_out {
    struct lsm_db *db;
    int out_level;
    uint64_t split_size;   /* start a new table beyond this (at a user-key change) */
    uint64_t smallest_snap;
    uint64_t now;
    const struct lsm_version *base; /* for tombstone dropping; NULL: keep tombstones */
    int base_from_level;
    uint32_t level_ptr[LSM_NUM_LEVELS];
    bool flush_imm; /* flush immutable memtables while this runs (compactions) */
    struct lsm_edit *edit;
    uint64_t bytes_written;

    struct sst_builder *b;
    uint64_t b_number;
    char *b_path;
};

static bool no_older_data_below(struct merge_out *mo, struct nk_slice user)
{
    if (!mo->base)
        return false;
    for (int l = mo->base_from_level; l < LSM_NUM_LEVELS; l++) {
        const struct lsm_version *v = mo->base;
        while (mo->level_ptr[l] < v->nfiles[l]) {
            const struct lsm_file *f = v->files[l][mo->level_ptr[l]];
            if (lsm_user_cmp(user, ik_user(nk_slice_make(f->largest.data, f->largest.len))) <= 0) {
                if (lsm_user_cmp(user, ik_user(nk_slice_make(f->smallest.data,
                                                             f->smallest.len))) >= 0)
                    return false;
                break;
            }
            mo->level_ptr[l]++;
        }
    }
    return true;
}

static nk_status open_table(struct lsm_db *db, const char *path, uint64_t number,
                            struct sst_reader **out)
{
    struct sst_read_options ro;
    sst_read_options_default(&ro);
    ro.cmp = &lsm_ik_comparator;
    ro.cache = db->cache;
    ro.file_id = number;
    ro.use_mmap = db->opt.use_mmap_reads;
    return sst_reader_open(path, &ro, out);
}

static nk_status out_finish(struct merge_out *mo)
{
    if (!mo->b)
        return NK_OK;
    struct sst_file_info info;
    memset(&info, 0, sizeof info);
    nk_status s = sst_builder_finish(mo->b, &info);
    mo->b = NULL;
    if (!nk_ok(s)) {
        nk_fs_unlink(mo->b_path);
        free(mo->b_path);
        mo->b_path = NULL; /* out_abandon must not free it again */
        return s;
    }
    struct lsm_file *f = lsm_file_new(mo->b_number, info.file_size,
                                      nk_slice_make(info.smallest, info.smallest_len),
                                      nk_slice_make(info.largest, info.largest_len));
    sst_file_info_free(&info);
    f->path = mo->b_path;
    mo->b_path = NULL;
    mo->bytes_written += f->size;
    s = open_table(mo->db, f->path, f->number, &f->reader);
    if (!nk_ok(s)) {
        atomic_store(&f->obsolete, true);
        lsm_file_unref(f);
        return s;
    }
    edit_add_file(mo->edit, mo->out_level, f);
    lsm_file_unref(f);
    return NK_OK;
}

static void out_abandon(struct merge_out *mo)
{
    if (mo->b) {
        sst_builder_abandon(mo->b);
        mo->b = NULL;
    }
    free(mo->b_path);
    mo->b_path = NULL;
    /* tables already finished are unlinked with the edit's references */
    for (uint32_t i = 0; i < mo->edit->nadds; i++)
        atomic_store(&mo->edit->adds[i].file->obsolete, true);
}

static void flush_one_locked(struct lsm_db *db);
static bool parse_number(const char *s, const char *prefix, const char *suffix, uint64_t *out);

/*
 * Writes the entries of in, in order, to tables of out_level, dropping what
 * no reader can see: older versions of a key hidden from every snapshot by a
 * newer one, and tombstones (or expired values) that no snapshot needs when
 * no older version of the key can exist below the output level. An expired
 * value that must stay (something older may lie below, or a snapshot needs
 * the older versions hidden) is kept as a tombstone, without its value, so
 * that it keeps shadowing what lies below.
 */
static nk_status merge_to_tables(struct merge_out *mo, struct lsm_iiter *in)
{
    struct lsm_db *db = mo->db;
    struct nk_buf cur_user, kbuf;
    nk_buf_init(&cur_user);
    nk_buf_init(&kbuf);
    bool has_cur = false;
    uint64_t last_seq_for_key = UINT64_MAX;
    nk_status s = NK_OK;
    uint64_t n = 0;
    for (in->ops->seek_first(in); in->ops->valid(in); in->ops->next(in)) {
        if ((++n & 255) == 0) {
            if (atomic_load_explicit(&db->shutting_down, memory_order_relaxed)) {
                s = nk_status_make(NK_CANCELLED, "database closing");
                break;
            }
            if (mo->flush_imm && atomic_load_explicit(&db->nimm_pending, memory_order_relaxed)) {
                pthread_mutex_lock(&db->mu);
                while (db->nimm > 0 && nk_ok(db->bg_error) &&
                       !atomic_load(&db->shutting_down))
                    flush_one_locked(db);
                pthread_mutex_unlock(&db->mu);
            }
        }
        struct nk_slice k = in->ops->key(in), val = in->ops->value(in);
        struct ikey ik;
        if (!ik_parse(k, &ik)) {
            s = nk_status_make(NK_DATA_LOSS, "table holds a malformed internal key of %zu bytes",
                               k.len);
            break;
        }
        bool new_key = !has_cur || !nk_slice_eq(ik.user, nk_slice_make(cur_user.data, cur_user.len));
        if (new_key) {
            if (mo->b && sst_builder_file_size(mo->b) >= mo->split_size) {
                s = out_finish(mo);
                if (!nk_ok(s))
                    break;
            }
            nk_buf_clear(&cur_user);
            nk_buf_append(&cur_user, ik.user.data, ik.user.len);
            has_cur = true;
            last_seq_for_key = UINT64_MAX;
        }
        bool drop = false, as_tombstone = false;
        if (last_seq_for_key <= mo->smallest_snap) {
            drop = true; /* a newer version is visible to every reader */
        } else {
            bool expired = ik.type == LSM_T_PUT_EXP &&
                           ival_expired(ik.type, val, db_now_for(db, ik.user, mo->now));
            bool dead = ik.type == LSM_T_DEL || expired;
            if (dead && ik.seq <= mo->smallest_snap && no_older_data_below(mo, ik.user))
                drop = true;
            else if (expired)
                as_tombstone = true;
        }
        last_seq_for_key = ik.seq;
        if (drop)
            continue;
        if (!mo->b) {
            mo->b_number = atomic_fetch_add(&db->next_file, 1);
            mo->b_path = table_path(db, mo->b_number);
            s = sst_builder_open(mo->b_path, &db->sst_opt, &mo->b);
            if (!nk_ok(s)) {
                mo->b = NULL;
                break;
            }
        }
        if (as_tombstone) {
            nk_buf_clear(&kbuf);
            ik_append(&kbuf, ik.user, ik.seq, LSM_T_DEL);
            s = sst_builder_add(mo->b, nk_slice_make(kbuf.data, kbuf.len), nk_slice_make(NULL, 0));
        } else {
            s = sst_builder_add(mo->b, k, val);
        }
        if (!nk_ok(s))
            break;
    }
    if (nk_ok(s))
        s = in->ops->status(in);
    if (nk_ok(s))
        s = out_finish(mo);
    if (!nk_ok(s))
        out_abandon(mo);
    nk_buf_free(&cur_user);
    nk_buf_free(&kbuf);
    return s;
}

static uint64_t smallest_snapshot_locked(struct lsm_db *db)
{
    if (db->snapshots.next != &db->snapshots)
        return db->snapshots.next->seq;
    return atomic_load(&db->last_seq);
}

/* ------------------------------------------------------------------- flush */

/* mu held (dropped while the table is built): writes imm[0] to L0. */
static void flush_one_locked(struct lsm_db *db)
{
    struct memtable *m = db->imm[0];
    struct lsm_edit e;
    edit_init(&e);
    struct merge_out mo;
    memset(&mo, 0, sizeof mo);
    mo.db = db;
    mo.out_level = 0;
    mo.split_size = UINT64_MAX;
    mo.smallest_snap = smallest_snapshot_locked(db);
    mo.now = db_now(db);
    mo.base = NULL; /* a flush never drops tombstones: older data may lie below */
    mo.edit = &e;
    pthread_mutex_unlock(&db->mu);
    uint64_t ev_t0 = nk_mono_ns();
    uint64_t ev_in = mem_usage(m);

    /* whoever logged these writes elsewhere makes that log durable first */
    nk_status s = db->opt.before_flush ? db->opt.before_flush(db->opt.before_flush_arg) : NK_OK;
    if (!nk_ok(s))
        s = nk_status_wrap(s, "before_flush hook");
    if (nk_ok(s)) {
        struct lsm_iiter *it = mem_iter_new(m);
        s = merge_to_tables(&mo, it);
        it->ops->free(it);
    }
    if (nk_ok(s) && e.nadds)
        s = nk_fsync_dir(db->dir);

    pthread_mutex_lock(&db->mu);
    if (nk_ok(s)) {
        const struct memtable *next = db->nimm > 1 ? db->imm[1] : db->mem;
        uint64_t next_log = next->wal_segment;
        e.has_log_number = true;
        e.log_number = next_log;
        e.log_offset = next->wal_offset;
        e.has_last_seq = true;
        e.last_seq = atomic_load(&m->last_seq);
        s = log_and_apply(db, &e);
        if (nk_ok(s)) {
            db->log_number = next_log;
            db->log_offset = e.log_offset;
            atomic_store(&db->persisted_seq, e.last_seq);
            memmove(db->imm, db->imm + 1, (db->nimm - 1) * sizeof(db->imm[0]));
            db->nimm--;
            sv_install(db);
            mem_unref(m);
            db->flushes++;
            db->flushes_done++;
            db->flush_bytes += mo.bytes_written;
            db->level_written[0] += mo.bytes_written;
            if (db->opt.on_event) {
                struct lsm_event ev = {.kind = LSM_EVENT_FLUSH, .level = -1, .out_level = 0,
                                       .bytes_in = ev_in, .bytes_out = mo.bytes_written,
                                       .files_in = 1, .files_out = (uint32_t)e.nadds,
                                       .duration_us = (nk_mono_ns() - ev_t0) / 1000};
                db->opt.on_event(db->opt.on_event_arg, &ev);
            }
            nk_status ws = wal_remove_before(db->wal, next_log);
            if (!nk_ok(ws)) {
                NK_WARN(LOG_MODULE, "cannot remove old WAL segments: %s", nk_status_msg(ws));
                nk_status_free(&ws);
            }
        }
    }
    edit_free(&e);
    set_bg_error(db, s);
    pthread_cond_broadcast(&db->done_cv);
}

/* -------------------------------------------------------------- compaction */

/* ------------------------------------------------------------- quarantine */

/* Reads every block of a table, checking its checksum. */
static nk_status verify_table(struct lsm_file *f)
{
    struct sst_iter_options io;
    sst_iter_options_default(&io);
    io.fill_cache = false;
    struct sst_iter *it;
    NK_TRY(sst_iter_new_opts(f->reader, &io, &it));
    for (sst_iter_seek_first(it); sst_iter_valid(it); sst_iter_next(it)) {
    }
    nk_status s = sst_iter_status(it);
    sst_iter_free(it);
    return s;
}

/* mu held: remembers a quarantined table (range in internal keys, or unknown). */
static void quarantine_note(struct lsm_db *db, uint64_t number, int level, const char *path,
                            const struct nk_slice *lo, const struct nk_slice *hi,
                            const char *reason)
{
    if (db->nquar == db->quar_cap) {
        db->quar_cap = db->quar_cap ? 2 * db->quar_cap : 4;
        db->quar = nk_realloc(db->quar, db->quar_cap * sizeof *db->quar);
    }
    struct quarantined *q = &db->quar[db->nquar++];
    memset(q, 0, sizeof *q);
    q->number = number;
    q->level = level;
    q->path = nk_strdup(path);
    q->reason = nk_strdup(reason);
    nk_buf_init(&q->lo);
    nk_buf_init(&q->hi);
    if (lo && hi) {
        struct nk_slice l = ik_user(*lo), h = ik_user(*hi);
        nk_buf_append(&q->lo, l.data, l.len);
        nk_buf_append(&q->hi, h.data, h.len);
        q->range_known = true;
    }
    atomic_store(&db->nquar_pending, db->nquar);
}

/*
 * mu held (dropped while reading). A compaction met damaged data: find the
 * input tables that fail a full read, keep each as a hard link under
 * quarantine/ (made durable first: the table is never deleted), then drop
 * them from the version (their original name goes with the last reader).
 * Their key ranges are reported by lsm_health and reads that would need
 * them fail with DATA_LOSS; everything else keeps being served and written.
 */
static nk_status quarantine_inputs_locked(struct lsm_db *db, const struct lsm_compaction *c)
{
    pthread_mutex_unlock(&db->mu);
    struct lsm_file *bad[16];
    int bad_level[16];
    char *why[16];
    uint32_t nbad = 0;
    for (int w = 0; w < 2; w++) {
        for (uint32_t i = 0; i < c->nin[w] && nbad < 16; i++) {
            nk_status v = verify_table(c->in[w][i]);
            if (v.code == NK_DATA_LOSS) {
                bad[nbad] = c->in[w][i];
                bad_level[nbad] = c->level + w;
                why[nbad++] = nk_strdup(nk_status_msg(v));
            }
            nk_status_free(&v);
        }
    }
    char *qdir = path_join(db->dir, QUARANTINE_DIR);
    nk_status s = nbad ? nk_mkdirs(qdir, 0755)
                       : nk_status_make(NK_DATA_LOSS, "compaction read damaged data but every "
                                                      "input table reads back whole");
    char **qpath = nk_calloc(nbad ? nbad : 1, sizeof *qpath);
    for (uint32_t i = 0; i < nbad && nk_ok(s); i++) {
        qpath[i] = path_join(qdir, "%06" PRIu64 ".sst", bad[i]->number);
        if (nk_fs_link(bad[i]->path, qpath[i]) != 0 && errno != EEXIST)
            s = nk_status_errno(errno, "quarantine: link %s to %s", bad[i]->path, qpath[i]);
    }
    if (nk_ok(s) && nbad)
        s = nk_fsync_dir(qdir);
    pthread_mutex_lock(&db->mu);
    if (nk_ok(s)) {
        struct lsm_edit e;
        edit_init(&e);
        for (uint32_t i = 0; i < nbad; i++)
            edit_del_file(&e, bad_level[i], bad[i]->number);
        s = log_and_apply(db, &e);
        edit_free(&e);
    }
    for (uint32_t i = 0; i < nbad; i++) {
        if (nk_ok(s)) {
            struct nk_slice lo = nk_slice_make(bad[i]->smallest.data, bad[i]->smallest.len);
            struct nk_slice hi = nk_slice_make(bad[i]->largest.data, bad[i]->largest.len);
            quarantine_note(db, bad[i]->number, bad_level[i], qpath[i], &lo, &hi, why[i]);
            NK_ERROR(LOG_MODULE,
                     "%s: table %06" PRIu64 " (level %d) is damaged and was moved to %s; keys "
                     "%zu..%zu bytes long from its range are unreadable until restored from a "
                     "replica (%s)",
                     db->dir, bad[i]->number, bad_level[i], qpath[i], lo.len, hi.len, why[i]);
        }
        free(why[i]);
        free(qpath[i]);
    }
    free(qpath);
    free(qdir);
    return s;
}

/* At open: tables moved aside earlier stay reported (and their ranges refused). */
static void load_quarantine(struct lsm_db *db)
{
    char *qdir = path_join(db->dir, QUARANTINE_DIR);
    DIR *d = opendir(qdir);
    struct dirent *de;
    while (d && (de = readdir(d)) != NULL) {
        uint64_t num;
        if (!parse_number(de->d_name, "", ".sst", &num))
            continue;
        char *p = path_join(qdir, "%s", de->d_name);
        struct sst_read_options ro;
        sst_read_options_default(&ro);
        ro.cmp = &lsm_ik_comparator;
        struct sst_reader *r = NULL;
        nk_status s = sst_reader_open(p, &ro, &r);
        if (nk_ok(s)) {
            struct nk_slice lo = sst_reader_smallest(r), hi = sst_reader_largest(r);
            quarantine_note(db, num, -1, p, &lo, &hi, "quarantined earlier");
            sst_reader_close(r);
        } else {
            quarantine_note(db, num, -1, p, NULL, NULL, nk_status_msg(s));
            nk_status_free(&s);
        }
        free(p);
    }
    if (d)
        closedir(d);
    free(qdir);
}

/* A read that would need a quarantined table: DATA_LOSS naming it. */
static nk_status check_quarantine(struct lsm_db *db, struct nk_slice key)
{
    nk_status s = NK_OK;
    pthread_mutex_lock(&db->mu);
    for (uint32_t i = 0; i < db->nquar && nk_ok(s); i++) {
        const struct quarantined *q = &db->quar[i];
        bool restored = false;
        for (uint32_t r = 0; r < q->nres && !restored; r++)
            restored =
                lsm_user_cmp(key, nk_slice_make(q->res_lo[r].data, q->res_lo[r].len)) >= 0 &&
                lsm_user_cmp(key, nk_slice_make(q->res_hi[r].data, q->res_hi[r].len)) < 0;
        if (!restored && q->range_known &&
            lsm_user_cmp(key, nk_slice_make(q->lo.data, q->lo.len)) >= 0 &&
            lsm_user_cmp(key, nk_slice_make(q->hi.data, q->hi.len)) <= 0)
            s = nk_status_make(NK_DATA_LOSS,
                               "database %s: the key lies in the range of damaged table %s "
                               "(quarantined); restore the range from a replica",
                               db->dir, q->path);
    }
    pthread_mutex_unlock(&db->mu);
    return s;
}

/* mu held (dropped while tables are written). */
static nk_status run_compaction_locked(struct lsm_db *db, struct lsm_compaction *c,
                                       bool allow_trivial)
{
    int out_level = c->level + 1;
    struct lsm_edit e;
    edit_init(&e);
    if (allow_trivial && c->trivial_move) {
        struct lsm_file *f = c->in[0][0];
        edit_del_file(&e, c->level, f->number);
        edit_add_file(&e, out_level, f);
        nk_status s = log_and_apply(db, &e);
        if (nk_ok(s)) {
            db->trivial_moves++;
            if (db->opt.on_event) {
                struct lsm_event ev = {.kind = LSM_EVENT_TRIVIAL_MOVE, .level = c->level,
                                       .out_level = out_level, .bytes_in = f->size,
                                       .bytes_out = f->size, .files_in = 1, .files_out = 1};
                db->opt.on_event(db->opt.on_event_arg, &ev);
            }
            nk_buf_clear(&db->compact_ptr[c->level]);
            nk_buf_append(&db->compact_ptr[c->level], f->largest.data, f->largest.len);
        }
        edit_free(&e);
        return s;
    }
    struct lsm_version *base = db->current;
    version_ref(base);
    struct merge_out mo;
    memset(&mo, 0, sizeof mo);
    mo.db = db;
    mo.out_level = out_level;
    mo.split_size = db->opt.target_file_size;
    mo.smallest_snap = smallest_snapshot_locked(db);
    mo.now = db_now(db);
    mo.base = base;
    mo.base_from_level = out_level + 1;
    mo.flush_imm = true;
    mo.edit = &e;
    pthread_mutex_unlock(&db->mu);
    uint64_t ev_t0 = nk_mono_ns();

    uint64_t read = 0;
    struct lsm_iiter **kids = nk_malloc((c->nin[0] + 2) * sizeof(*kids));
    uint32_t nk = 0;
    if (c->level == 0) {
        for (uint32_t i = 0; i < c->nin[0]; i++)
            kids[nk++] = level_iter_new(&c->in[0][i], 1);
    } else {
        kids[nk++] = level_iter_new(c->in[0], c->nin[0]);
    }
    if (c->nin[1])
        kids[nk++] = level_iter_new(c->in[1], c->nin[1]);
    for (int w = 0; w < 2; w++)
        for (uint32_t i = 0; i < c->nin[w]; i++)
            read += c->in[w][i]->size;
    struct lsm_iiter *in = merge_iter_new(kids, nk);
    free(kids);
    nk_status s = merge_to_tables(&mo, in);
    in->ops->free(in);
    bool merge_failed = !nk_ok(s);
    if (nk_ok(s) && e.nadds)
        s = nk_fsync_dir(db->dir);

    pthread_mutex_lock(&db->mu);
    if (nk_ok(s)) {
        for (int w = 0; w < 2; w++)
            for (uint32_t i = 0; i < c->nin[w]; i++)
                edit_del_file(&e, c->level + w, c->in[w][i]->number);
        s = log_and_apply(db, &e);
    }
    if (merge_failed && s.code == NK_DATA_LOSS) {
        /* a damaged input: move it aside and carry on with the rest */
        nk_status q = quarantine_inputs_locked(db, c);
        if (nk_ok(q)) {
            nk_status_free(&s);
            edit_free(&e);
            version_unref(base);
            return NK_OK;
        }
        NK_ERROR(LOG_MODULE, "%s: %s", db->dir, nk_status_msg(q));
        nk_status_free(&q);
    }
    if (nk_ok(s)) {
        db->compactions++;
        if (db->opt.on_event) {
            struct lsm_event ev = {.kind = LSM_EVENT_COMPACTION, .level = c->level,
                                   .out_level = out_level, .bytes_in = read,
                                   .bytes_out = mo.bytes_written,
                                   .files_in = c->nin[0] + c->nin[1],
                                   .files_out = (uint32_t)e.nadds,
                                   .duration_us = (nk_mono_ns() - ev_t0) / 1000};
            db->opt.on_event(db->opt.on_event_arg, &ev);
        }
        db->level_read[out_level] += read;
        db->level_written[out_level] += mo.bytes_written;
        struct lsm_file *last = c->in[0][c->nin[0] - 1];
        nk_buf_clear(&db->compact_ptr[c->level]);
        nk_buf_append(&db->compact_ptr[c->level], last->largest.data, last->largest.len);
    }
    edit_free(&e);
    version_unref(base);
    return s;
}

/* mu held: compacts [lo, hi] of every level down past the deepest one with data. */
static nk_status run_manual_locked(struct lsm_db *db)
{
    struct nk_slice lo = nk_slice_make(db->manual_lo.data, db->manual_lo.len);
    struct nk_slice hi = nk_slice_make(db->manual_hi.data, db->manual_hi.len);
    const struct nk_slice *plo = db->manual_has_lo ? &lo : NULL;
    const struct nk_slice *phi = db->manual_has_hi ? &hi : NULL;
    int deepest = 0;
    for (int l = 0; l < LSM_NUM_LEVELS; l++)
        if (version_overlaps(db->current, l, plo, phi))
            deepest = l;
    /* Down to one level below the deepest with data (as LevelDB does), so
     * the bottom level's own tombstones and expired records go too; data
     * already in the last level stays there. */
    if (deepest > LSM_NUM_LEVELS - 2)
        deepest = LSM_NUM_LEVELS - 2;
    for (int l = 0; l <= deepest; l++) {
        struct lsm_compaction c;
        if (!pick_range(db->current, l, plo, phi, &c))
            continue;
        /* the version the inputs come from must outlive the compaction */
        struct lsm_version *v = db->current;
        version_ref(v);
        nk_status s = run_compaction_locked(db, &c, false);
        compaction_free(&c);
        version_unref(v);
        if (!nk_ok(s))
            return s;
    }
    return NK_OK;
}

/* Waits on cv (default clock: CLOCK_REALTIME) for at most ms. */
static void cond_wait_ms(pthread_cond_t *cv, pthread_mutex_t *mu, uint64_t ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t ns = (uint64_t)ts.tv_nsec + (ms % 1000) * 1000000ull;
    ts.tv_sec += (time_t)(ms / 1000 + ns / 1000000000ull);
    ts.tv_nsec = (long)(ns % 1000000000ull);
    pthread_cond_timedwait(cv, mu, &ts);
}

static void *bg_main(void *arg)
{
    struct lsm_db *db = arg;
    pthread_mutex_lock(&db->mu);
    while (!atomic_load(&db->shutting_down)) {
        if (db->bg_paused) {
            /* no broadcast of done_cv here: stalled writers signal bg_cv, and
             * waking them without progress would make the two spin */
            db->bg_busy = false;
            pthread_cond_wait(&db->bg_cv, &db->mu);
            continue;
        }
        if (!nk_ok(db->bg_error)) {
            uint64_t now = nk_mono_ms();
            if (now < db->retry_at_ms) {
                db->bg_busy = false;
                cond_wait_ms(&db->bg_cv, &db->mu, db->retry_at_ms - now);
                continue;
            }
            /* retry; the failure stays reported until the work succeeds */
            nk_status_free(&db->bg_error);
            db->retries++;
        }
        db->bg_busy = true;
        if (db->nimm > 0) {
            flush_one_locked(db);
            bg_recovered(db);
            continue;
        }
        if (db->manual_pending) {
            nk_status s = run_manual_locked(db);
            db->manual_status = copy_status(s);
            set_bg_error(db, s);
            db->manual_pending = false;
            db->manual_gen_done++;
            bg_recovered(db);
            pthread_cond_broadcast(&db->done_cv);
            continue;
        }
        int level = pick_level(db->current, &db->pick, NULL);
        if (level >= 0) {
            struct lsm_compaction c;
            pick_compaction(db->current, level,
                            nk_slice_make(db->compact_ptr[level].data,
                                          db->compact_ptr[level].len),
                            &c);
            struct lsm_version *v = db->current;
            version_ref(v);
            nk_status s = run_compaction_locked(db, &c, true);
            compaction_free(&c);
            version_unref(v);
            set_bg_error(db, s);
            bg_recovered(db);
            pthread_cond_broadcast(&db->done_cv);
            continue;
        }
        bg_recovered(db);
        db->bg_busy = false;
        pthread_cond_broadcast(&db->done_cv);
        pthread_cond_wait(&db->bg_cv, &db->mu);
    }
    db->bg_busy = false;
    pthread_mutex_unlock(&db->mu);
    return NULL;
}

/* -------------------------------------------------------------------- open */

struct replay_ctx {
    struct lsm_version *v;
    struct lsm_edit acc; /* log number, next file, last seq, comparator */
    nk_status err;
};

static nk_status replay_edit(void *ctx, struct nk_slice payload)
{
    struct replay_ctx *rc = ctx;
    struct lsm_edit e;
    nk_status s = edit_decode(payload, &e);
    if (nk_ok(s)) {
        struct lsm_version *nv;
        s = version_apply(rc->v, &e, &nv);
        if (nk_ok(s)) {
            version_unref(rc->v);
            rc->v = nv;
        }
    }
    if (nk_ok(s)) {
        if (e.has_comparator) {
            rc->acc.has_comparator = true;
            memcpy(rc->acc.comparator, e.comparator, sizeof e.comparator);
        }
        if (e.has_log_number) {
            rc->acc.has_log_number = true;
            rc->acc.log_number = e.log_number;
            rc->acc.log_offset = e.log_offset;
        }
        if (e.has_next_file) {
            rc->acc.has_next_file = true;
            rc->acc.next_file = e.next_file;
        }
        if (e.has_last_seq) {
            rc->acc.has_last_seq = true;
            if (e.last_seq > rc->acc.last_seq)
                rc->acc.last_seq = e.last_seq;
        }
    }
    edit_free(&e);
    return s;
}

static nk_status load_manifest(struct lsm_db *db, const char *name, struct lsm_version **vout,
                               uint64_t *last_seq)
{
    char *path = path_join(db->dir, "%s", name);
    uint8_t *data;
    size_t n;
    nk_status s = nk_read_file(path, (size_t)1 << 31, &data, &n);
    if (!nk_ok(s)) {
        free(path);
        return nk_status_wrap(s, "manifest named by CURRENT");
    }
    struct replay_ctx rc;
    memset(&rc, 0, sizeof rc);
    rc.v = version_new_empty();
    edit_init(&rc.acc);
    bool torn;
    s = manifest_parse(nk_slice_make(data, n), path, replay_edit, &rc, &torn);
    free(data);
    if (nk_ok(s) && torn)
        NK_WARN(LOG_MODULE, "%s: torn last record ignored", path);
    if (nk_ok(s) && (!rc.acc.has_comparator || !rc.acc.has_next_file || !rc.acc.has_log_number))
        s = nk_status_make(NK_DATA_LOSS, "%s: lacks comparator, next file or log number", path);
    if (nk_ok(s) && strcmp(rc.acc.comparator, lsm_ik_comparator.name) != 0)
        s = nk_status_make(NK_INVALID_ARGUMENT, "%s: written with comparator %s, not %s", path,
                           rc.acc.comparator, lsm_ik_comparator.name);
    free(path);
    if (!nk_ok(s)) {
        version_unref(rc.v);
        return s;
    }
    atomic_store(&db->next_file, rc.acc.next_file);
    db->log_number = rc.acc.log_number;
    db->log_offset = rc.acc.log_offset;
    *last_seq = rc.acc.last_seq;
    *vout = rc.v;
    return NK_OK;
}

static nk_status open_tables(struct lsm_db *db, struct lsm_version *v)
{
    for (int l = 0; l < LSM_NUM_LEVELS; l++) {
        for (uint32_t i = 0; i < v->nfiles[l]; i++) {
            struct lsm_file *f = v->files[l][i];
            if (f->number >= atomic_load(&db->next_file))
                atomic_store(&db->next_file, f->number + 1);
            f->path = table_path(db, f->number);
            struct stat st;
            if (stat(f->path, &st) != 0)
                return nk_status_make(NK_DATA_LOSS,
                                      "table %s (level %d) named by the manifest is missing: %s",
                                      f->path, l, strerror(errno));
            NK_TRY(open_table(db, f->path, f->number, &f->reader));
        }
    }
    return NK_OK;
}

static void replay_apply(void *ctx, uint64_t seq, unsigned type, struct nk_slice key,
                         struct nk_slice value, uint64_t exp)
{
    mem_add(ctx, seq, type, key, value, exp);
}

/* Replays WAL records from (log_number, log_offset) into a memtable; *mem
 * NULL if none. Records before that position are all in tables. */
static nk_status replay_wal(struct lsm_db *db, struct memtable **mem, uint64_t *max_seq)
{
    struct wal_iter *it;
    NK_TRY(wal_iter_open(db->wal, (struct wal_pos){db->log_number, db->log_offset}, &it));
    nk_status s = NK_OK;
    struct memtable *m = NULL;
    for (;;) {
        bool has;
        uint8_t type;
        struct nk_slice payload;
        struct wal_pos pos;
        s = wal_iter_next(it, &has, &type, &payload, &pos);
        if (!nk_ok(s) || !has)
            break;
        if (type != WAL_REC_BATCH) {
            s = nk_status_make(NK_DATA_LOSS, "WAL segment %" PRIu64 " offset %" PRIu64
                               ": unknown record type %u", pos.segment, pos.offset, type);
            break;
        }
        uint64_t seq;
        uint32_t count;
        s = lsm_batch_decode(payload, &seq, &count, NULL, NULL); /* validate first: all or none */
        if (!nk_ok(s)) {
            s = nk_status_wrap(s, "WAL segment %" PRIu64 " offset %" PRIu64, pos.segment,
                               pos.offset);
            break;
        }
        if (count == 0)
            continue;
        if (!m)
            m = mem_new(mem_bloom_bytes(db));
        s = lsm_batch_decode(payload, NULL, NULL, replay_apply, m);
        NK_ASSERT(nk_ok(s));
        if (seq + count - 1 > *max_seq)
            *max_seq = seq + count - 1;
    }
    wal_iter_close(it);
    if (!nk_ok(s)) {
        mem_unref(m);
        return s;
    }
    *mem = m;
    return NK_OK;
}

static bool parse_number(const char *s, const char *prefix, const char *suffix, uint64_t *out)
{
    size_t pl = strlen(prefix), sl = strlen(suffix), n = strlen(s);
    if (n <= pl + sl || strncmp(s, prefix, pl) != 0 || strcmp(s + n - sl, suffix) != 0)
        return false;
    uint64_t v = 0;
    for (size_t i = pl; i < n - sl; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    *out = v;
    return true;
}

/* Removes tables and manifests that no version names (left by a crash). */
static void remove_garbage(struct lsm_db *db)
{
    DIR *d = opendir(db->dir);
    if (!d)
        return;
    struct dirent *de;
    while ((de = readdir(d))) {
        uint64_t num;
        bool garbage = false;
        if (parse_number(de->d_name, "", ".sst", &num)) {
            garbage = true;
            for (int l = 0; l < LSM_NUM_LEVELS && garbage; l++)
                for (uint32_t i = 0; i < db->current->nfiles[l] && garbage; i++)
                    garbage = db->current->files[l][i]->number != num;
        } else if (parse_number(de->d_name, "MANIFEST-", "", &num)) {
            garbage = num != db->manifest_number;
        }
        if (garbage) {
            char *p = path_join(db->dir, "%s", de->d_name);
            NK_DEBUG(LOG_MODULE, "removing unreferenced %s", p);
            nk_fs_unlink(p);
            free(p);
        }
    }
    closedir(d);
}

static nk_status check_options(const struct lsm_options *o)
{
    if (o->write_buffer_size < 4096)
        return nk_status_make(NK_INVALID_ARGUMENT, "write_buffer_size %" PRIu64 " below 4096",
                              o->write_buffer_size);
    if (o->max_immutable < 1 || o->max_immutable > MAX_IMM)
        return nk_status_make(NK_INVALID_ARGUMENT, "max_immutable %u not in 1..%d",
                              o->max_immutable, MAX_IMM);
    if (o->l0_compaction_trigger < 1 || o->l0_stop_trigger < o->l0_compaction_trigger ||
        o->l0_stop_trigger > 64)
        return nk_status_make(NK_INVALID_ARGUMENT,
                              "l0 triggers: compaction %u, stop %u (need 1 <= compaction <= "
                              "stop <= 64)",
                              o->l0_compaction_trigger, o->l0_stop_trigger);
    if (o->level_ratio < 2 || o->max_bytes_base < 4096 || o->target_file_size < 4096)
        return nk_status_make(NK_INVALID_ARGUMENT,
                              "level_ratio >= 2, max_bytes_base and target_file_size >= 4096");
    if (o->wal_sync > LSM_WAL_SYNC_OS)
        return nk_status_make(NK_INVALID_ARGUMENT, "wal_sync %d unknown", (int)o->wal_sync);
    return NK_OK;
}

static void db_free(struct lsm_db *db)
{
    sv_unref(db->sv);
    mem_unref(db->mem);
    for (uint32_t i = 0; i < db->nimm; i++)
        mem_unref(db->imm[i]);
    version_unref(db->current);
    wal_close(db->wal);
    if (db->cache)
        sst_cache_free(db->cache);
    if (db->manifest_fd >= 0)
        nk_fs_close(db->manifest_fd);
    if (db->lock_fd >= 0)
        nk_fs_close(db->lock_fd); /* releases the flock */
    nk_status_free(&db->bg_error);
    nk_status_free(&db->last_error);
    free(db->orphans);
    for (uint32_t i = 0; i < db->nquar; i++) {
        free(db->quar[i].path);
        free(db->quar[i].reason);
        nk_buf_free(&db->quar[i].lo);
        nk_buf_free(&db->quar[i].hi);
        for (uint32_t r = 0; r < db->quar[i].nres; r++) {
            nk_buf_free(&db->quar[i].res_lo[r]);
            nk_buf_free(&db->quar[i].res_hi[r]);
        }
        free(db->quar[i].res_lo);
        free(db->quar[i].res_hi);
    }
    free(db->quar);
    nk_status_free(&db->manual_status);
    nk_buf_free(&db->manual_lo);
    nk_buf_free(&db->manual_hi);
    for (int l = 0; l < LSM_NUM_LEVELS; l++)
        nk_buf_free(&db->compact_ptr[l]);
    pthread_mutex_destroy(&db->mu);
    pthread_mutex_destroy(&db->write_mu);
    pthread_cond_destroy(&db->bg_cv);
    pthread_cond_destroy(&db->done_cv);
    free(db->dir);
    free(db);
}

static nk_status db_open(struct lsm_db *db)
{
    const struct lsm_options *o = &db->opt;
    if (o->create_if_missing)
        NK_TRY(nk_mkdirs(db->dir, 0755));
    else if (access(db->dir, F_OK) != 0)
        return nk_status_make(NK_NOT_FOUND, "database %s does not exist", db->dir);
    char *lock_path = path_join(db->dir, "LOCK");
    db->lock_fd = nk_fs_open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (db->lock_fd < 0) {
        nk_status s = nk_status_errno(errno, "open %s", lock_path);
        free(lock_path);
        return s;
    }
    if (flock(db->lock_fd, LOCK_EX | LOCK_NB) != 0) {
        nk_status s = nk_status_make(NK_FAILED_PRECONDITION,
                                     "database %s is in use by another process (%s locked)",
                                     db->dir, lock_path);
        free(lock_path);
        return s;
    }
    free(lock_path);

    char *cur_path = path_join(db->dir, "CURRENT");
    uint8_t *cur;
    size_t curn;
    nk_status s = nk_read_file(cur_path, 256, &cur, &curn);
    struct lsm_version *v = NULL;
    uint64_t last_seq = 0;
    if (!nk_ok(s) && access(cur_path, F_OK) != 0 && errno == ENOENT) {
        nk_status_free(&s);
        free(cur_path);
        if (!o->create_if_missing)
            return nk_status_make(NK_NOT_FOUND, "database %s does not exist", db->dir);
        v = version_new_empty();
        atomic_store(&db->next_file, 2);
        db->log_number = 0;
        db->log_offset = 0;
    } else if (!nk_ok(s)) {
        free(cur_path);
        return s;
    } else {
        free(cur_path);
        if (o->error_if_exists) {
            free(cur);
            return nk_status_make(NK_ALREADY_EXISTS, "database %s already exists", db->dir);
        }
        char name[64];
        size_t nl = curn;
        while (nl && (cur[nl - 1] == '\n' || cur[nl - 1] == '\r'))
            nl--;
        uint64_t num;
        if (nl == 0 || nl >= sizeof name) {
            free(cur);
            return nk_status_make(NK_DATA_LOSS, "%s/CURRENT is malformed", db->dir);
        }
        memcpy(name, cur, nl);
        name[nl] = 0;
        free(cur);
        if (!parse_number(name, "MANIFEST-", "", &num))
            return nk_status_make(NK_DATA_LOSS, "%s/CURRENT names \"%s\", not a manifest",
                                  db->dir, name);
        NK_TRY(load_manifest(db, name, &v, &last_seq));
        db->manifest_number = num;
    }
    db->current = v;
    NK_TRY(open_tables(db, v));

    struct wal_options wo;
    wal_options_default(&wo);
    wo.sync = o->wal_sync == LSM_WAL_SYNC_ALWAYS  ? WAL_SYNC_ALWAYS
              : o->wal_sync == LSM_WAL_SYNC_BATCH ? WAL_SYNC_BATCH
                                                  : WAL_SYNC_OS;
    wo.batch_window_us = o->wal_batch_window_us;
    wo.max_record_size = LSM_MAX_BATCH + 4096;
    /* segments go away whole once every memtable they feed is flushed */
    wo.segment_size = NK_MAX(2 * o->write_buffer_size, (uint64_t)4 << 20);
    /* Preallocation saves a metadata update per fdatasync; with WAL_SYNC_OS
     * there are none to save, only disk space to waste. */
    wo.preallocate = o->wal_sync != LSM_WAL_SYNC_OS;
    char *wal_dir = path_join(db->dir, "wal");
    s = wal_open(wal_dir, &wo, &db->wal);
    free(wal_dir);
    NK_TRY(s);

    /*
     * With the WAL synced by the OS only, a power cut can take WAL bytes
     * that a flush had already put in tables: the manifest's replay point
     * then lies past the end of the log. Nothing is missing (everything
     * before that point is in tables), but new records must not land below
     * the point, where the next recovery would skip them: start a new
     * segment (segments themselves are created durably, so only the tail
     * of the point's segment can be short).
     */
    struct wal_pos log_end = wal_end(db->wal);
    if (wal_pos_cmp(log_end, (struct wal_pos){db->log_number, db->log_offset}) < 0) {
        NK_WARN(LOG_MODULE,
                "%s: the WAL ends at %" PRIu64 ":%" PRIu64 ", before the replay point %" PRIu64
                ":%" PRIu64 " (its tail was lost, already in tables); starting a new segment",
                db->dir, log_end.segment, log_end.offset, db->log_number, db->log_offset);
        uint64_t next;
        NK_TRY(wal_rotate(db->wal, &next));
        db->log_number = next;
        db->log_offset = 0;
    }
    uint64_t max_seq = last_seq;
    struct memtable *recovered = NULL;
    NK_TRY(replay_wal(db, &recovered, &max_seq));
    /* New writes start at the end of the log; no rotation needed. */
    struct wal_pos end = wal_end(db->wal);
    if (recovered) {
        recovered->wal_segment = db->log_number;
        recovered->wal_offset = db->log_offset;
        db->imm[db->nimm++] = recovered; /* flushed by the background thread */
    } else {
        db->log_number = end.segment;
        db->log_offset = end.offset;
    }
    atomic_store(&db->last_seq, max_seq);
    atomic_store(&db->persisted_seq, last_seq);
    db->manifest_fd = -1;
    uint64_t old_manifest = db->manifest_number;
    NK_TRY(new_manifest(db, v, last_seq));
    (void)old_manifest;
    s = wal_remove_before(db->wal, db->log_number);
    if (!nk_ok(s)) {
        NK_WARN(LOG_MODULE, "cannot remove old WAL segments: %s", nk_status_msg(s));
        nk_status_free(&s);
    }
    remove_garbage(db);
    load_quarantine(db);
    db->mem = mem_new(mem_bloom_bytes(db));
    db->mem->wal_segment = end.segment;
    db->mem->wal_offset = end.offset;
    sv_install(db);
    if (pthread_create(&db->bg, NULL, bg_main, db) != 0)
        return nk_status_errno(errno, "start the background thread of %s", db->dir);
    db->bg_started = true;
    if (db->nimm)
        pthread_cond_signal(&db->bg_cv);
    return NK_OK;
}

nk_status lsm_open(const char *dir, const struct lsm_options *opt, struct lsm_db **out)
{
    struct lsm_options o;
    if (opt)
        o = *opt;
    else
        lsm_options_default(&o);
    NK_TRY(check_options(&o));
    struct lsm_db *db = nk_calloc(1, sizeof(*db));
    db->dir = nk_strdup(dir);
    db->opt = o;
    db->lock_fd = -1;
    db->manifest_fd = -1;
    db->bg_error = NK_OK;
    db->manual_status = NK_OK;
    pthread_mutex_init(&db->mu, NULL);
    pthread_mutex_init(&db->write_mu, NULL);
    pthread_cond_init(&db->bg_cv, NULL);
    pthread_cond_init(&db->done_cv, NULL);
    db->snapshots.next = db->snapshots.prev = &db->snapshots;
    db->pick.l0_trigger = o.l0_compaction_trigger;
    db->pick.max_bytes_base = o.max_bytes_base;
    db->pick.ratio = o.level_ratio;
    sst_options_default(&db->sst_opt);
    db->sst_opt.cmp = &lsm_ik_comparator;
    db->sst_opt.block_size = o.block_size;
    db->sst_opt.bloom_bits_per_key = o.bloom_bits_per_key;
    db->sst_opt.compression = (enum sst_compression)o.compression;
    nk_status s = NK_OK;
    if (o.block_cache_bytes)
        s = sst_cache_new(o.block_cache_bytes, &db->cache);
    if (nk_ok(s))
        s = db_open(db);
    if (!nk_ok(s)) {
        db_free(db);
        return nk_status_wrap(s, "open database %s", dir);
    }
    *out = db;
    return NK_OK;
}

/*
 * mu and write_mu held: turns the active memtable into an immutable one. The
 * WAL is not rotated (a rotation would also fdatasync the segment): the new
 * memtable remembers the log position where its records begin, and a flush
 * records that position as the point recovery replays from.
 */
static nk_status switch_memtable_locked(struct lsm_db *db)
{
    struct wal_pos end = wal_end(db->wal);
    db->imm[db->nimm++] = db->mem;
    db->mem = mem_new(mem_bloom_bytes(db));
    db->mem->wal_segment = end.segment;
    db->mem->wal_offset = end.offset;
    sv_install(db);
    pthread_cond_signal(&db->bg_cv);
    return NK_OK;
}

nk_status lsm_close_checked(struct lsm_db *db)
{
    if (!db)
        return NK_OK;
    pthread_mutex_lock(&db->write_mu);
    pthread_mutex_lock(&db->mu);
    db->bg_paused = false;
    pthread_cond_broadcast(&db->bg_cv);
    /* Writes that skipped the WAL exist only in memory: put them in tables. */
    bool unlogged = db->mem->unlogged && atomic_load(&db->mem->entries) > 0;
    for (uint32_t i = 0; i < db->nimm; i++)
        unlogged |= db->imm[i]->unlogged;
    nk_status result = NK_OK;
    if (unlogged) {
        if (atomic_load(&db->mem->entries) > 0)
            switch_memtable_locked(db);
        /* one more attempt now, whatever the retry schedule says */
        db->retry_at_ms = 0;
        pthread_cond_broadcast(&db->bg_cv);
        uint64_t failures = db->failures;
        while (db->nimm > 0 && db->failures == failures)
            pthread_cond_wait(&db->done_cv, &db->mu);
        if (db->nimm > 0)
            result = nk_status_make(
                nk_ok(db->last_error) ? NK_INTERNAL : db->last_error.code,
                "database %s: the final flush failed, so writes that skipped the WAL since the "
                "last flush are not on disk: %s",
                db->dir, nk_ok(db->last_error) ? "unknown error" : nk_status_msg(db->last_error));
    }
    atomic_store(&db->shutting_down, true);
    pthread_cond_broadcast(&db->bg_cv);
    pthread_mutex_unlock(&db->mu);
    if (db->bg_started)
        pthread_join(db->bg, NULL);
    pthread_mutex_unlock(&db->write_mu);
    NK_ASSERT(db->snapshots.next == &db->snapshots);
    db_free(db);
    return result;
}

void lsm_close(struct lsm_db *db)
{
    nk_status s = lsm_close_checked(db);
    if (!nk_ok(s)) {
        NK_ERROR(LOG_MODULE, "%s", nk_status_msg(s));
        nk_status_free(&s);
    }
}

/* ------------------------------------------------------------------ writes */

/* write_mu held: makes sure the active memtable may take a batch. */
static void stall_report(struct lsm_db *db, bool stalled, uint64_t t0, bool l0_full)
{
    if (!stalled || !db->opt.on_event)
        return;
    struct lsm_event ev = {.kind = LSM_EVENT_WRITE_STALL, .level = l0_full ? 0 : -1,
                           .out_level = -1, .duration_us = (nk_mono_ns() - t0) / 1000,
                           .l0_full = l0_full};
    db->opt.on_event(db->opt.on_event_arg, &ev);
}

static nk_status make_room(struct lsm_db *db, bool no_stall)
{
    bool stalled = false, stall_l0 = false;
    uint64_t stall_t0 = 0;
    for (;;) {
        bool mem_full = mem_usage(db->mem) >= db->opt.write_buffer_size;
        if (!mem_full && atomic_load_explicit(&db->l0_files, memory_order_relaxed) <
                             db->opt.l0_stop_trigger &&
            !atomic_load_explicit(&db->bg_failed, memory_order_relaxed)) {
            stall_report(db, stalled, stall_t0, stall_l0);
            return NK_OK;
        }
        pthread_mutex_lock(&db->mu);
        if (!nk_ok(db->last_error)) {
            /* Degraded (disk full, I/O error): refuse writes, like etcd's
             * NOSPACE alarm, until the background retry succeeds. Reads go on. */
            nk_status s = nk_status_make(
                db->last_error.code,
                "database %s refuses writes until its background work succeeds again "
                "(retried automatically, %" PRIu64 " retries so far): %s",
                db->dir, db->retries, nk_status_msg(db->last_error));
            pthread_mutex_unlock(&db->mu);
            stall_report(db, stalled, stall_t0, stall_l0);
            return s;
        }
        bool l0_full = db->current->nfiles[0] >= db->opt.l0_stop_trigger;
        if (l0_full || (mem_full && db->nimm >= db->opt.max_immutable)) {
            if (no_stall) {
                nk_status s = nk_status_make(
                    NK_RESOURCE_EXHAUSTED,
                    l0_full ? "write stalled: level 0 holds %u tables (limit %u), compaction "
                              "behind"
                            : "write stalled: %u immutable memtables (limit %u) wait for flush",
                    l0_full ? db->current->nfiles[0] : db->nimm,
                    l0_full ? db->opt.l0_stop_trigger : db->opt.max_immutable);
                pthread_mutex_unlock(&db->mu);
                return s;
            }
            if (!stalled) {
                stalled = true;
                stall_t0 = nk_mono_ns();
                stall_l0 = l0_full;
                atomic_fetch_add(&db->write_stalls, 1);
            }
            pthread_cond_signal(&db->bg_cv);
            pthread_cond_wait(&db->done_cv, &db->mu);
            pthread_mutex_unlock(&db->mu);
            continue;
        }
        nk_status s = NK_OK;
        if (mem_full)
            s = switch_memtable_locked(db);
        pthread_mutex_unlock(&db->mu);
        stall_report(db, stalled, stall_t0, stall_l0);
        return s;
    }
}

struct apply_ctx {
    struct memtable *m;
};

static void apply_record(void *ctx, uint64_t seq, unsigned type, struct nk_slice key,
                         struct nk_slice value, uint64_t exp)
{
    mem_add(((struct apply_ctx *)ctx)->m, seq, type, key, value, exp);
}

nk_status lsm_write(struct lsm_db *db, const struct lsm_write_options *wo, struct lsm_batch *b)
{
    static const struct lsm_write_options defaults = {0};
    if (!wo)
        wo = &defaults;
    if (b->count == 0)
        return NK_OK;
    pthread_mutex_lock(&db->write_mu);
    nk_status s = make_room(db, wo->no_stall);
    if (!nk_ok(s)) {
        pthread_mutex_unlock(&db->write_mu);
        return s;
    }
    uint64_t seq = atomic_load_explicit(&db->last_seq, memory_order_relaxed) + 1;
    if (seq + b->count - 1 > LSM_MAX_SEQ) {
        pthread_mutex_unlock(&db->write_mu);
        return nk_status_make(NK_OUT_OF_RANGE, "sequence numbers exhausted");
    }
    nk_enc_fixed64(b->rep.data, seq);
    if (!wo->skip_wal) {
        s = wal_append(db->wal, WAL_REC_BATCH, b->rep.data, b->rep.len, NULL);
        if (nk_ok(s) && wo->sync && db->opt.wal_sync != LSM_WAL_SYNC_ALWAYS)
            s = wal_sync(db->wal);
        if (!nk_ok(s)) {
            pthread_mutex_unlock(&db->write_mu);
            return nk_status_wrap(s, "database %s: WAL append", db->dir);
        }
    }
    struct apply_ctx ac = {db->mem};
    s = lsm_batch_decode(nk_slice_make(b->rep.data, b->rep.len), NULL, NULL, apply_record, &ac);
    NK_ASSERT(nk_ok(s)); /* the engine encoded it */
    if (wo->skip_wal)
        db->mem->unlogged = true;
    atomic_store_explicit(&db->last_seq, seq + b->count - 1, memory_order_release);
    atomic_fetch_add_explicit(&db->user_bytes, b->user_bytes, memory_order_relaxed);
    pthread_mutex_unlock(&db->write_mu);
    return NK_OK;
}

nk_status lsm_put(struct lsm_db *db, const struct lsm_write_options *wo, struct nk_slice key,
                  struct nk_slice value, uint64_t expire_at_ms)
{
    struct lsm_batch b;
    uint8_t stack[512];
    /* small puts: encode on the stack, no allocation */
    b.rep.data = stack;
    b.rep.cap = sizeof stack;
    b.rep.len = 12;
    memset(stack, 0, 12);
    b.count = 0;
    b.user_bytes = 0;
    nk_status s;
    if (key.len + value.len + 32 <= sizeof stack) {
        s = lsm_batch_put(&b, key, value, expire_at_ms);
        if (nk_ok(s))
            s = lsm_write(db, wo, &b);
        return s;
    }
    lsm_batch_init(&b);
    s = lsm_batch_put(&b, key, value, expire_at_ms);
    if (nk_ok(s))
        s = lsm_write(db, wo, &b);
    lsm_batch_free(&b);
    return s;
}

nk_status lsm_delete(struct lsm_db *db, const struct lsm_write_options *wo, struct nk_slice key)
{
    struct lsm_batch b;
    lsm_batch_init(&b);
    nk_status s = lsm_batch_delete(&b, key);
    if (nk_ok(s))
        s = lsm_write(db, wo, &b);
    lsm_batch_free(&b);
    return s;
}

/* ------------------------------------------------------------------- reads */

/* Resolves a found entry: value or absence. */
static bool resolve(unsigned type, struct nk_slice ival, uint64_t now, struct nk_buf *value,
                    uint64_t *exp)
{
    if (type == LSM_T_DEL)
        return false;
    uint64_t e = 0;
    if (type == LSM_T_PUT_EXP) {
        if (ival.len < 8)
            return false;
        e = nk_dec_fixed64(ival.data);
        if (e <= now)
            return false;
        ival.data += 8;
        ival.len -= 8;
    }
    nk_buf_clear(value);
    nk_buf_append(value, ival.data, ival.len);
    if (exp)
        *exp = e;
    return true;
}

/*
 * Per-thread scratch buffers of lsm_get (lookup key, found key), so that a
 * read allocates nothing once warm. A thread-exit destructor frees them.
 */
struct get_scratch {
    struct nk_buf lookup, key;
};
static __thread struct get_scratch *tls_scratch;
static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;

static void scratch_free(void *p)
{
    struct get_scratch *g = p;
    nk_buf_free(&g->lookup);
    nk_buf_free(&g->key);
    free(g);
}

static void scratch_init(void)
{
    NK_ASSERT(pthread_key_create(&scratch_key, scratch_free) == 0);
}

static struct get_scratch *get_scratch(void)
{
    if (NK_LIKELY(tls_scratch != NULL))
        return tls_scratch;
    pthread_once(&scratch_once, scratch_init);
    tls_scratch = nk_calloc(1, sizeof(*tls_scratch));
    pthread_setspecific(scratch_key, tls_scratch);
    return tls_scratch;
}

nk_status lsm_get(struct lsm_db *db, const struct lsm_read_options *ro, struct nk_slice key,
                  struct nk_buf *value, bool *found, uint64_t *expire_at_ms)
{
    *found = false;
    if (key.len > LSM_MAX_KEY)
        return nk_status_make(NK_INVALID_ARGUMENT, "key of %zu bytes exceeds the limit of %u",
                              key.len, LSM_MAX_KEY);
    struct super_version *sv = sv_get(db);
    uint64_t snap = ro && ro->snapshot
                        ? ro->snapshot->seq
                        : atomic_load_explicit(&db->last_seq, memory_order_acquire);
    unsigned type;
    struct nk_slice ival;
    nk_status s = NK_OK;
    if (mem_get(sv->mem, key, snap, &type, &ival)) {
        *found = resolve(type, ival, type == LSM_T_PUT_EXP ? db_now_for(db, key, db_now(db)) : 0,
                         value, expire_at_ms);
        goto done;
    }
    for (uint32_t i = sv->nimm; i-- > 0;) {
        if (mem_get(sv->imm[i], key, snap, &type, &ival)) {
            *found = resolve(type, ival,
                             type == LSM_T_PUT_EXP ? db_now_for(db, key, db_now(db)) : 0, value,
                             expire_at_ms);
            goto done;
        }
    }
    if (NK_UNLIKELY(atomic_load_explicit(&db->nquar_pending, memory_order_relaxed) > 0)) {
        s = check_quarantine(db, key);
        if (!nk_ok(s))
            goto done;
    }
    struct get_scratch *gs = get_scratch();
    struct nk_buf *lk = &gs->lookup, *kb = &gs->key;
    nk_buf_clear(lk);
    ik_append(lk, key, snap, LSM_T_SEEK);
    struct nk_slice target = nk_slice_make(lk->data, lk->len);
    const struct lsm_version *v = sv->v;
    for (int l = 0; l < LSM_NUM_LEVELS; l++) {
        uint32_t n = v->nfiles[l];
        if (!n)
            continue;
        uint32_t i = 0, end = n;
        if (l > 0) {
            i = version_find_file(v, l, target);
            if (i == n)
                continue;
            end = i + 1;
        }
        for (; i < end; i++) {
            struct lsm_file *f = v->files[l][i];
            if (lsm_user_cmp(key, ik_user(nk_slice_make(f->smallest.data, f->smallest.len))) < 0)
                continue;
            if (l == 0 &&
                lsm_user_cmp(key, ik_user(nk_slice_make(f->largest.data, f->largest.len))) > 0)
                continue;
            bool hit;
            s = sst_reader_seek_one(f->reader, target, key, &hit, kb, value);
            if (!nk_ok(s))
                goto done;
            if (!hit)
                continue;
            struct ikey ik;
            if (!ik_parse(nk_slice_make(kb->data, kb->len), &ik)) {
                s = nk_status_make(NK_DATA_LOSS, "table %06" PRIu64 " holds a malformed key",
                                   f->number);
                goto done;
            }
            if (!nk_slice_eq(ik.user, key))
                continue;
            if (ik.type == LSM_T_DEL) {
                nk_buf_clear(value);
                goto done;
            }
            if (ik.type == LSM_T_PUT_EXP) {
                if (value->len < 8) {
                    s = nk_status_make(NK_DATA_LOSS, "table %06" PRIu64 ": expiring value short",
                                       f->number);
                    goto done;
                }
                uint64_t e = nk_dec_fixed64(value->data);
                if (e <= db_now_for(db, key, db_now(db))) {
                    nk_buf_clear(value);
                    goto done;
                }
                memmove(value->data, value->data + 8, value->len - 8);
                value->len -= 8;
                if (expire_at_ms)
                    *expire_at_ms = e;
            } else if (expire_at_ms) {
                *expire_at_ms = 0;
            }
            *found = true;
            goto done;
        }
    }
done:
    sv_unref(sv);
    return s;
}

/* --------------------------------------------------------------- snapshots */

const struct lsm_snapshot *lsm_snapshot_new(struct lsm_db *db)
{
    struct lsm_snapshot *s = nk_calloc(1, sizeof(*s));
    pthread_mutex_lock(&db->mu);
    s->seq = atomic_load(&db->last_seq);
    s->prev = db->snapshots.prev;
    s->next = &db->snapshots;
    s->prev->next = s;
    db->snapshots.prev = s;
    pthread_mutex_unlock(&db->mu);
    return s;
}

void lsm_snapshot_release(struct lsm_db *db, const struct lsm_snapshot *cs)
{
    if (!cs)
        return;
    struct lsm_snapshot *s = (struct lsm_snapshot *)cs;
    pthread_mutex_lock(&db->mu);
    s->prev->next = s->next;
    s->next->prev = s->prev;
    pthread_mutex_unlock(&db->mu);
    free(s);
}

uint64_t lsm_snapshot_sequence(const struct lsm_snapshot *s)
{
    return s->seq;
}

/* ---------------------------------------------------------------- iterator */

struct lsm_iter {
    struct lsm_db *db;
    struct super_version *sv;
    struct lsm_iiter *in;
    uint64_t snap, now;
    struct nk_buf lower, upper, seekbuf;
    bool has_lower, has_upper;
    bool valid;
    struct nk_buf key;
    struct nk_slice value;
    uint64_t exp;
    nk_status err;
};

/* The smallest key greater than every key with prefix p; false if none. */
static bool prefix_successor(struct nk_slice p, struct nk_buf *out)
{
    nk_buf_clear(out);
    nk_buf_append(out, p.data, p.len);
    while (out->len) {
        if (out->data[out->len - 1] != 0xff) {
            out->data[out->len - 1]++;
            return true;
        }
        out->len--;
    }
    return false;
}

nk_status lsm_iter_new(struct lsm_db *db, const struct lsm_iter_options *opt,
                       struct lsm_iter **out)
{
    static const struct lsm_iter_options none = {0};
    if (!opt)
        opt = &none;
    struct lsm_iter *it = nk_calloc(1, sizeof(*it));
    it->db = db;
    it->err = NK_OK;
    it->sv = sv_get(db);
    it->snap = opt->snapshot ? opt->snapshot->seq
                             : atomic_load_explicit(&db->last_seq, memory_order_acquire);
    it->now = db_now(db);
    if (opt->lower.data) {
        it->has_lower = true;
        nk_buf_append(&it->lower, opt->lower.data, opt->lower.len);
    }
    if (opt->upper.data) {
        it->has_upper = true;
        nk_buf_append(&it->upper, opt->upper.data, opt->upper.len);
    }
    if (opt->prefix.data) {
        if (!it->has_lower || lsm_user_cmp(opt->prefix, nk_slice_make(it->lower.data,
                                                                      it->lower.len)) > 0) {
            nk_buf_clear(&it->lower);
            nk_buf_append(&it->lower, opt->prefix.data, opt->prefix.len);
            it->has_lower = true;
        }
        struct nk_buf succ;
        nk_buf_init(&succ);
        if (prefix_successor(opt->prefix, &succ) &&
            (!it->has_upper ||
             lsm_user_cmp(nk_slice_make(succ.data, succ.len),
                          nk_slice_make(it->upper.data, it->upper.len)) < 0)) {
            nk_buf_free(&it->upper);
            it->upper = succ;
            it->has_upper = true;
        } else {
            nk_buf_free(&succ);
        }
    }
    struct super_version *sv = it->sv;
    const struct lsm_version *v = sv->v;
    uint32_t cap = 1 + sv->nimm + v->nfiles[0] + LSM_NUM_LEVELS;
    struct lsm_iiter **kids = nk_malloc(cap * sizeof(*kids));
    uint32_t n = 0;
    kids[n++] = mem_iter_new(sv->mem);
    for (uint32_t i = sv->nimm; i-- > 0;)
        kids[n++] = mem_iter_new(sv->imm[i]);
    for (uint32_t i = 0; i < v->nfiles[0]; i++)
        kids[n++] = level_iter_new(&v->files[0][i], 1);
    for (int l = 1; l < LSM_NUM_LEVELS; l++)
        if (v->nfiles[l])
            kids[n++] = level_iter_new(v->files[l], v->nfiles[l]);
    it->in = merge_iter_new(kids, n);
    free(kids);
    *out = it;
    return NK_OK;
}

void lsm_iter_free(struct lsm_iter *it)
{
    if (!it)
        return;
    it->in->ops->free(it->in);
    sv_unref(it->sv);
    nk_buf_free(&it->lower);
    nk_buf_free(&it->upper);
    nk_buf_free(&it->seekbuf);
    nk_buf_free(&it->key);
    nk_status_free(&it->err);
    free(it);
}

/* Advances the internal iterator to the next visible user key. With skip,
 * versions of it->key (and smaller keys) are passed over first. */
static void find_next(struct lsm_iter *it, bool skip)
{
    struct lsm_iiter *in = it->in;
    it->valid = false;
    while (in->ops->valid(in)) {
        struct ikey ik;
        if (!ik_parse(in->ops->key(in), &ik)) {
            it->err = nk_status_make(NK_DATA_LOSS, "iterator met a malformed internal key");
            return;
        }
        if (ik.seq > it->snap) {
            in->ops->next(in);
            continue;
        }
        if (skip && lsm_user_cmp(ik.user, nk_slice_make(it->key.data, it->key.len)) <= 0) {
            in->ops->next(in);
            continue;
        }
        if (it->has_upper &&
            lsm_user_cmp(ik.user, nk_slice_make(it->upper.data, it->upper.len)) >= 0)
            return;
        struct nk_slice val = in->ops->value(in);
        nk_buf_clear(&it->key);
        nk_buf_append(&it->key, ik.user.data, ik.user.len);
        if (ik.type == LSM_T_DEL ||
            (ik.type == LSM_T_PUT_EXP &&
             ival_expired(ik.type, val, db_now_for(it->db, ik.user, it->now)))) {
            skip = true; /* hides the older versions of this key */
            in->ops->next(in);
            continue;
        }
        if (ik.type == LSM_T_PUT_EXP) {
            if (val.len < 8) {
                it->err = nk_status_make(NK_DATA_LOSS, "iterator met a short expiring value");
                return;
            }
            it->exp = nk_dec_fixed64(val.data);
            val.data += 8;
            val.len -= 8;
        } else {
            it->exp = 0;
        }
        it->value = val;
        it->valid = true;
        return;
    }
    nk_status s = in->ops->status(in);
    if (!nk_ok(s)) {
        if (nk_ok(it->err))
            it->err = s;
        else
            nk_status_free(&s);
    }
}

void lsm_iter_seek(struct lsm_iter *it, struct nk_slice key)
{
    if (!nk_ok(it->err)) {
        it->valid = false;
        return;
    }
    if (it->has_lower && lsm_user_cmp(key, nk_slice_make(it->lower.data, it->lower.len)) < 0)
        key = nk_slice_make(it->lower.data, it->lower.len);
    nk_buf_clear(&it->seekbuf);
    ik_append(&it->seekbuf, key, it->snap, LSM_T_SEEK);
    it->in->ops->seek(it->in, nk_slice_make(it->seekbuf.data, it->seekbuf.len));
    find_next(it, false);
}

void lsm_iter_seek_first(struct lsm_iter *it)
{
    if (it->has_lower) {
        lsm_iter_seek(it, nk_slice_make(it->lower.data, it->lower.len));
        return;
    }
    if (!nk_ok(it->err)) {
        it->valid = false;
        return;
    }
    it->in->ops->seek_first(it->in);
    find_next(it, false);
}

void lsm_iter_next(struct lsm_iter *it)
{
    NK_ASSERT(it->valid);
    it->in->ops->next(it->in);
    find_next(it, true);
}

bool lsm_iter_valid(const struct lsm_iter *it)
{
    return it->valid;
}

struct nk_slice lsm_iter_key(const struct lsm_iter *it)
{
    return nk_slice_make(it->key.data, it->key.len);
}

struct nk_slice lsm_iter_value(const struct lsm_iter *it)
{
    return it->value;
}

uint64_t lsm_iter_expire_at(const struct lsm_iter *it)
{
    return it->exp;
}

nk_status lsm_iter_status(const struct lsm_iter *it)
{
    return copy_status(it->err);
}

/* ------------------------------------------------------------- maintenance */

nk_status lsm_flush(struct lsm_db *db)
{
    pthread_mutex_lock(&db->write_mu);
    pthread_mutex_lock(&db->mu);
    nk_status s = NK_OK;
    if (atomic_load(&db->mem->entries) > 0) {
        while (db->nimm >= db->opt.max_immutable && nk_ok(db->bg_error))
            pthread_cond_wait(&db->done_cv, &db->mu);
        if (nk_ok(db->bg_error))
            s = switch_memtable_locked(db);
    }
    pthread_mutex_unlock(&db->write_mu);
    uint64_t target = db->flushes_done + db->nimm;
    while (nk_ok(s) && db->flushes_done < target && nk_ok(db->bg_error))
        pthread_cond_wait(&db->done_cv, &db->mu);
    if (nk_ok(s) && !nk_ok(db->bg_error))
        s = copy_status(db->bg_error);
    pthread_mutex_unlock(&db->mu);
    return s;
}

nk_status lsm_compact_range(struct lsm_db *db, const struct nk_slice *begin,
                            const struct nk_slice *end)
{
    NK_TRY(lsm_flush(db));
    pthread_mutex_lock(&db->mu);
    while (db->manual_pending)
        pthread_cond_wait(&db->done_cv, &db->mu);
    db->manual_pending = true;
    db->manual_has_lo = begin != NULL;
    db->manual_has_hi = end != NULL;
    nk_buf_clear(&db->manual_lo);
    nk_buf_clear(&db->manual_hi);
    if (begin)
        nk_buf_append(&db->manual_lo, begin->data, begin->len);
    if (end)
        nk_buf_append(&db->manual_hi, end->data, end->len);
    uint64_t gen = db->manual_gen_done + 1;
    pthread_cond_signal(&db->bg_cv);
    while (db->manual_gen_done < gen && nk_ok(db->bg_error))
        pthread_cond_wait(&db->done_cv, &db->mu);
    nk_status s = NK_OK;
    if (db->manual_gen_done >= gen) {
        s = db->manual_status;
        db->manual_status = NK_OK;
    } else {
        s = copy_status(db->bg_error);
    }
    pthread_mutex_unlock(&db->mu);
    return s;
}

void lsm_pause_background(struct lsm_db *db, bool paused)
{
    pthread_mutex_lock(&db->mu);
    db->bg_paused = paused;
    pthread_cond_broadcast(&db->bg_cv);
    pthread_mutex_unlock(&db->mu);
}

uint64_t lsm_last_sequence(struct lsm_db *db)
{
    return atomic_load(&db->last_seq);
}

uint64_t lsm_persisted_sequence(struct lsm_db *db)
{
    return atomic_load(&db->persisted_seq);
}

void lsm_get_stats(struct lsm_db *db, struct lsm_stats *out)
{
    memset(out, 0, sizeof(*out));
    pthread_mutex_lock(&db->mu);
    for (int l = 0; l < LSM_NUM_LEVELS; l++) {
        out->level[l].files = db->current->nfiles[l];
        out->level[l].bytes = version_level_bytes(db->current, l);
        out->level[l].compaction_bytes_read = db->level_read[l];
        out->level[l].compaction_bytes_written = l ? db->level_written[l] : 0;
        if (l) {
            out->compaction_bytes_read += db->level_read[l];
            out->compaction_bytes_written += db->level_written[l];
        }
    }
    out->flush_bytes_written = db->flush_bytes;
    out->flushes = db->flushes;
    out->compactions = db->compactions;
    out->trivial_moves = db->trivial_moves;
    out->memtable_bytes = mem_usage(db->mem);
    for (uint32_t i = 0; i < db->nimm; i++)
        out->memtable_bytes += mem_usage(db->imm[i]);
    out->immutable_memtables = db->nimm;
    pthread_mutex_unlock(&db->mu);
    struct wal_stats ws;
    wal_get_stats(db->wal, &ws);
    out->wal_bytes_written = ws.bytes_appended;
    out->user_bytes_written = atomic_load(&db->user_bytes);
    out->write_stalls = atomic_load(&db->write_stalls);
    out->last_sequence = atomic_load(&db->last_seq);
    out->persisted_sequence = atomic_load(&db->persisted_seq);
    if (out->user_bytes_written)
        out->write_amplification =
            (double)(out->wal_bytes_written + out->flush_bytes_written +
                     out->compaction_bytes_written) /
            (double)out->user_bytes_written;
    if (db->cache) {
        struct sst_cache_stats cs;
        sst_cache_get_stats(db->cache, &cs);
        out->block_cache_usage = cs.usage;
        out->block_cache_hits = cs.hits;
        out->block_cache_misses = cs.misses;
    }
}

/* ------------------------------------------------------------------ health */

void lsm_health(struct lsm_db *db, struct lsm_health *out)
{
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&db->mu);
    out->writable = nk_ok(db->last_error);
    out->error_code = db->last_error.code;
    if (!nk_ok(db->last_error)) {
        out->error = nk_strdup(nk_status_msg(db->last_error));
        out->error_since_ms = db->error_since_ms;
        out->retries = db->retries;
    }
    out->nquarantined = db->nquar;
    out->quarantined = nk_calloc(db->nquar ? db->nquar : 1, sizeof *out->quarantined);
    for (uint32_t i = 0; i < db->nquar; i++) {
        const struct quarantined *q = &db->quar[i];
        struct lsm_quarantined_table *t = &out->quarantined[i];
        t->number = q->number;
        t->level = q->level;
        t->path = nk_strdup(q->path);
        t->reason = nk_strdup(q->reason);
        t->range_known = q->range_known;
        nk_buf_init(&t->smallest);
        nk_buf_init(&t->largest);
        nk_buf_append(&t->smallest, q->lo.data, q->lo.len);
        nk_buf_append(&t->largest, q->hi.data, q->hi.len);
    }
    pthread_mutex_unlock(&db->mu);
}

void lsm_health_free(struct lsm_health *h)
{
    free(h->error);
    for (size_t i = 0; i < h->nquarantined; i++) {
        free(h->quarantined[i].path);
        free(h->quarantined[i].reason);
        nk_buf_free(&h->quarantined[i].smallest);
        nk_buf_free(&h->quarantined[i].largest);
    }
    free(h->quarantined);
    memset(h, 0, sizeof *h);
}

uint32_t lsm_quarantine_resolve(struct lsm_db *db, struct nk_slice lo, struct nk_slice hi)
{
    uint32_t n = 0;
    pthread_mutex_lock(&db->mu);
    for (uint32_t i = 0; i < db->nquar;) {
        struct quarantined *q = &db->quar[i];
        if (q->range_known && lsm_user_cmp(nk_slice_make(q->lo.data, q->lo.len), lo) >= 0 &&
            lsm_user_cmp(nk_slice_make(q->hi.data, q->hi.len), hi) <= 0) {
            /* renamed so that the next open no longer reports it; kept for inspection */
            char *kept = nk_malloc(strlen(q->path) + 10);
            sprintf(kept, "%s.resolved", q->path);
            if (nk_fs_rename(q->path, kept) != 0)
                NK_WARN(LOG_MODULE, "rename %s: %s", q->path, strerror(errno));
            NK_INFO(LOG_MODULE, "%s: range of quarantined table %s restored; file kept as %s",
                    db->dir, q->path, kept);
            free(kept);
            free(q->path);
            free(q->reason);
            nk_buf_free(&q->lo);
            nk_buf_free(&q->hi);
            for (uint32_t r = 0; r < q->nres; r++) {
                nk_buf_free(&q->res_lo[r]);
                nk_buf_free(&q->res_hi[r]);
            }
            free(q->res_lo);
            free(q->res_hi);
            db->quar[i] = db->quar[--db->nquar];
            n++;
        } else {
            if (q->range_known && lsm_user_cmp(lo, nk_slice_make(q->hi.data, q->hi.len)) <= 0 &&
                lsm_user_cmp(hi, nk_slice_make(q->lo.data, q->lo.len)) > 0) {
                /* part of its range restored: reads there are served again */
                if (q->nres == QUAR_MAX_RESOLVED) {
                    nk_buf_free(&q->res_lo[0]);
                    nk_buf_free(&q->res_hi[0]);
                    memmove(q->res_lo, q->res_lo + 1, (q->nres - 1) * sizeof(*q->res_lo));
                    memmove(q->res_hi, q->res_hi + 1, (q->nres - 1) * sizeof(*q->res_hi));
                    q->nres--;
                }
                q->res_lo = nk_realloc(q->res_lo, (q->nres + 1) * sizeof(*q->res_lo));
                q->res_hi = nk_realloc(q->res_hi, (q->nres + 1) * sizeof(*q->res_hi));
                nk_buf_init(&q->res_lo[q->nres]);
                nk_buf_init(&q->res_hi[q->nres]);
                nk_buf_append(&q->res_lo[q->nres], lo.data, lo.len);
                nk_buf_append(&q->res_hi[q->nres], hi.data, hi.len);
                q->nres++;
            }
            i++;
        }
    }
    atomic_store(&db->nquar_pending, db->nquar);
    pthread_mutex_unlock(&db->mu);
    return n;
}

bool lsm_write_would_stall(struct lsm_db *db)
{
    if (atomic_load_explicit(&db->l0_files, memory_order_relaxed) + 1 >= db->opt.l0_stop_trigger)
        return true;
    pthread_mutex_lock(&db->mu);
    bool full = db->nimm >= db->opt.max_immutable &&
                mem_usage(db->mem) >= db->opt.write_buffer_size / 2;
    pthread_mutex_unlock(&db->mu);
    return full;
}
