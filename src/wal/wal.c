/*
 * wal.c: the segmented write-ahead log (wal.h; format in docs/format/wal.md).
 *
 * Design. One mutex serializes the writers: an append frames its records
 * (payload CRCs are computed before taking the lock) and writes them with one
 * pwritev at the end of the current segment, so the file always holds a
 * contiguous prefix of whole appends in the order the lock was taken. Bytes
 * are counted with a log sequence number (written_lsn: bytes of the current
 * and earlier segments since open, starting at the recovered end); durability
 * is tracked as synced_lsn. An append that must be durable waits until
 * synced_lsn covers it. If nobody is syncing it becomes the syncer: in BATCH
 * mode it first waits (up to batch_window_us) while other appenders are on
 * their way in (batch_linger), then fdatasyncs with the lock released, so
 * later writers keep writing while the disk works, and one fdatasync
 * acknowledges everyone written before it started (group commit). A lone
 * writer never waits: with nobody arriving it syncs at once.
 *
 * Rotation (segment full, or wal_rotate) happens under the lock: it trims
 * the segment's unused preallocation, fdatasyncs it unless already synced and
 * creates the next segment atomically (temp file with header, fallocate,
 * fdatasync, rename, fsync of the directory). A sync in flight on the old
 * file finishes on its own and closes it. Hence only the newest segment can
 * ever have a torn tail, and recovery treats damage in any older one as data
 * loss.
 *
 * A failed write or fdatasync poisons the log (sticky error): after a failed
 * fdatasync the kernel may have dropped the dirty pages, so nothing later
 * could be acknowledged honestly; the owner must reopen.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "wal/wal.h"
#include "wal/wal_internal.h"

#define WAL_MIN_SEGMENT_SIZE (4u * 1024)
#define WAL_MAX_BATCH_WINDOW_US 1000000u
/* Read-ahead of an iterator: starts small (a point read at a position reads
 * little), doubles per refill up to the maximum; the buffer is bounded by
 * max(WAL_ITER_READ_MAX, one record). */
#define WAL_ITER_READ_MIN (16u * 1024)
#define WAL_ITER_READ_MAX (256u * 1024)
/* Records framed on the stack before a heap scratch is needed. */
#define WAL_STACK_RECORDS 16

struct wal_seg {
    uint64_t num;
    uint64_t end; /* end of data; for the current segment, updated on every write */
};

struct wal {
    char *dir;
    struct wal_options opt;
    int lock_fd;

    pthread_mutex_t mu;
    pthread_cond_t synced_cv; /* a sync finished (or a syncer gave up its role) */
    pthread_cond_t arrive_cv; /* a writer wrote; wakes the batching syncer */

    /* All below guarded by mu. */
    struct wal_seg *segs; /* on disk, ascending and consecutive; last is current */
    size_t nsegs, segs_cap;
    int fd;           /* current segment, O_RDWR */
    uint64_t cur_cap; /* the current segment's size limit */
    bool cur_prealloc; /* the current segment is preallocated to cur_cap */
    uint64_t written_lsn, synced_lsn;
    uint64_t cur_base_lsn; /* the LSN of the current segment's first record offset */
    bool syncing;
    int sync_fd;          /* the file the syncer is syncing (while syncing) */
    bool sync_fd_retired; /* rotated away meanwhile: the syncer closes it */
    /* Group commit heuristics (BATCH): appends written since the last sync
     * started, the size of the last group, and an EWMA of fdatasync time. */
    uint32_t pending_appends, last_group;
    uint64_t sync_ns_avg;
    nk_status error; /* sticky: set once a write or sync failed */
    struct wal_stats stats;

    /* Appenders that have entered but not yet written (read by the syncer). */
    atomic_uint arriving;
};

/* ------------------------------------------------------------------ helpers */

void wal_options_default(struct wal_options *o)
{
    memset(o, 0, sizeof *o);
    o->sync = WAL_SYNC_ALWAYS;
    o->batch_window_us = 2000;
    o->segment_size = 64ull << 20;
    o->max_record_size = 64u << 20;
    o->preallocate = true;
}

bool wal_parse_sync_mode(const char *s, enum wal_sync_mode *out)
{
    if (!s)
        return false;
    if (strcmp(s, "always") == 0)
        *out = WAL_SYNC_ALWAYS;
    else if (strcmp(s, "batch") == 0)
        *out = WAL_SYNC_BATCH;
    else if (strcmp(s, "os") == 0)
        *out = WAL_SYNC_OS;
    else
        return false;
    return true;
}

static void seg_path(const struct wal *w, uint64_t num, const char *suffix, char *out, size_t cap)
{
    snprintf(out, cap, "%s/%020" PRIu64 "%s%s", w->dir, num, WAL_SEGMENT_SUFFIX, suffix);
}

static struct wal_seg *cur_seg(struct wal *w)
{
    NK_ASSERT(w->nsegs > 0);
    return &w->segs[w->nsegs - 1];
}

static void segs_push(struct wal *w, uint64_t num, uint64_t end)
{
    if (w->nsegs == w->segs_cap) {
        w->segs_cap = w->segs_cap ? w->segs_cap * 2 : 16;
        w->segs = nk_realloc(w->segs, w->segs_cap * sizeof *w->segs);
    }
    w->segs[w->nsegs++] = (struct wal_seg){num, end};
}

/* Index of segment num, or -1. Segments are consecutive, so this is O(1). */
static long segs_find(const struct wal *w, uint64_t num)
{
    if (w->nsegs == 0 || num < w->segs[0].num)
        return -1;
    uint64_t i = num - w->segs[0].num;
    if (i >= w->nsegs)
        return -1;
    NK_DASSERT(w->segs[i].num == num);
    return (long)i;
}

static nk_status sticky_copy(const struct wal *w)
{
    return nk_status_make(w->error.code, "%s", nk_status_msg(w->error));
}

/* Records a fatal write/sync failure; returns a copy for the caller. */
static nk_status poison(struct wal *w, nk_status s)
{
    if (nk_ok(w->error))
        w->error = s;
    else
        nk_status_free(&s);
    NK_ERROR("wal", "%s (the log refuses further writes until reopened)", nk_status_msg(w->error));
    pthread_cond_broadcast(&w->synced_cv);
    return sticky_copy(w);
}

static nk_status write_full(int fd, struct iovec *iov, int iovcnt, uint64_t off, const char *what)
{
    uint64_t start = off;
    while (iovcnt > 0) {
        int cnt = iovcnt > IOV_MAX ? IOV_MAX : iovcnt;
        ssize_t k = nk_fs_pwritev(fd, iov, cnt, (int64_t)off);
        if (k < 0) {
            if (errno == EINTR)
                continue;
            return nk_status_errno(errno, "wal: write%s%s at offset %" PRIu64 " (failed at %" PRIu64 ")",
                                   *what ? " " : "", what, start, off);
        }
        if (k == 0)
            return nk_status_make(NK_IO_ERROR,
                                  "wal: write%s%s at offset %" PRIu64 " wrote nothing at %" PRIu64,
                                  *what ? " " : "", what, start, off);
        off += (uint64_t)k;
        size_t left = (size_t)k;
        while (iovcnt > 0 && left >= iov->iov_len) {
            left -= iov->iov_len;
            iov++;
            iovcnt--;
        }
        if (left) {
            iov->iov_base = (uint8_t *)iov->iov_base + left;
            iov->iov_len -= left;
        }
    }
    return NK_OK;
}

/* fallocate, ignoring file systems that cannot (the zero-tail rule holds either way). */
static nk_status prealloc(int fd, uint64_t size, const char *what)
{
    if (size == 0)
        return NK_OK;
    if (nk_fs_fallocate(fd, 0, 0, (int64_t)size) != 0) {
        if (errno == EOPNOTSUPP || errno == ENOSYS)
            return NK_OK;
        return nk_status_errno(errno, "wal: fallocate %s to %" PRIu64 " bytes", what, size);
    }
    return NK_OK;
}

/*
 * Creates segment num atomically: it appears under its name only with a
 * durable, valid header, so a crash never leaves a headerless newest segment.
 * It is not preallocated here: that happens when the first record goes into
 * it (append_locked), so a log that is opened but never written (the LSM's,
 * when every write skips it) costs one header, not a segment of disk.
 * Nothing in w changes; *out_fd receives the open segment.
 */
static nk_status create_segment_file(struct wal *w, uint64_t num, int *out_fd)
{
    char tmp[PATH_MAX], final[PATH_MAX];
    seg_path(w, num, ".tmp", tmp, sizeof tmp);
    seg_path(w, num, "", final, sizeof final);
    int fd = nk_fs_open(tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return nk_status_errno(errno, "wal: create %s", tmp);
    uint8_t hdr[WAL_SEGMENT_HEADER_SIZE];
    wal_encode_segment_header(hdr, num);
    struct iovec iov = {hdr, sizeof hdr};
    nk_status s = write_full(fd, &iov, 1, 0, tmp);
    if (nk_ok(s) && nk_fs_fdatasync(fd) != 0)
        s = nk_status_errno(errno, "wal: fdatasync %s", tmp);
    bool renamed = false;
    if (nk_ok(s) && nk_fs_rename(tmp, final) != 0)
        s = nk_status_errno(errno, "wal: rename %s to %s", tmp, final);
    else if (nk_ok(s))
        renamed = true;
    if (nk_ok(s))
        s = nk_fsync_dir(w->dir);
    if (!nk_ok(s)) {
        nk_fs_close(fd);
        /* under whichever name it has now, it is not part of the log */
        nk_fs_unlink(renamed ? final : tmp);
        return s;
    }
    w->stats.syncs++;
    *out_fd = fd;
    return NK_OK;
}

/* Makes the new segment num (open as fd) the current one. */
static void install_segment(struct wal *w, uint64_t num, int fd, uint64_t cap)
{
    w->fd = fd;
    w->cur_cap = cap;
    w->cur_prealloc = false;
    w->cur_base_lsn = w->written_lsn;
    segs_push(w, num, WAL_SEGMENT_HEADER_SIZE);
}

static nk_status create_segment(struct wal *w, uint64_t num, uint64_t cap)
{
    int fd;
    NK_TRY(create_segment_file(w, num, &fd));
    install_segment(w, num, fd, cap);
    return NK_OK;
}

/* Out of space (or quota): the operation failed whole and may be retried. */
static bool is_no_space(nk_status s)
{
    return s.code == NK_RESOURCE_EXHAUSTED;
}

/* ------------------------------------------------------------- durability */

static void cv_wait_until(pthread_cond_t *cv, pthread_mutex_t *mu, uint64_t deadline_ns)
{
    struct timespec ts = {(time_t)(deadline_ns / 1000000000ull),
                          (long)(deadline_ns % 1000000000ull)};
    pthread_cond_timedwait(cv, mu, &ts);
}

/*
 * Group commit (BATCH, mu held, called by the syncer before it syncs): wait
 * while other appenders are in flight (entered wal_append*, not yet written),
 * up to batch_window_us. Appenders of the last group that are not in flight
 * yet (woken by the last sync, on their way back) are waited for only about
 * one fdatasync time: a writer that does not return that fast is not
 * waiting on the log, and waiting longer would cost more than a sync. A lone
 * writer has nobody in flight and a last group of one, so it never waits.
 */
static void batch_linger(struct wal *w)
{
    uint64_t now = nk_mono_ns();
    uint64_t window = (uint64_t)w->opt.batch_window_us * 1000;
    uint64_t hard = now + window;
    uint64_t soft = now + NK_MIN(window, w->sync_ns_avg);
    while (now < hard) {
        if (atomic_load(&w->arriving) > 0)
            cv_wait_until(&w->arrive_cv, &w->mu, hard);
        else if (w->pending_appends < w->last_group && now < soft)
            cv_wait_until(&w->arrive_cv, &w->mu, soft);
        else
            break;
        now = nk_mono_ns();
    }
}

/* Waits (mu held) until every byte up to target is on disk; may become the syncer. */
static nk_status wait_durable(struct wal *w, uint64_t target)
{
    while (w->synced_lsn < target) {
        if (!nk_ok(w->error))
            return sticky_copy(w);
        if (w->syncing) {
            pthread_cond_wait(&w->synced_cv, &w->mu);
            continue;
        }
        w->syncing = true;
        if (w->opt.sync == WAL_SYNC_BATCH && w->opt.batch_window_us > 0)
            batch_linger(w);
        uint64_t upto = w->written_lsn;
        int fd = w->fd;
        w->sync_fd = fd;
        w->last_group = w->pending_appends;
        w->pending_appends = 0;
        pthread_mutex_unlock(&w->mu);
        uint64_t t0 = nk_mono_ns();
        int rc = nk_fs_fdatasync(fd);
        int err = errno;
        uint64_t took = nk_mono_ns() - t0;
        pthread_mutex_lock(&w->mu);
        if (w->sync_fd_retired) {
            nk_fs_close(fd);
            w->sync_fd_retired = false;
        }
        w->sync_fd = -1;
        w->sync_ns_avg = w->sync_ns_avg ? (7 * w->sync_ns_avg + took) / 8 : took;
        w->syncing = false;
        w->stats.syncs++;
        if (rc != 0) {
            char path[PATH_MAX];
            seg_path(w, cur_seg(w)->num, "", path, sizeof path);
            return poison(w, nk_status_errno(err, "wal: fdatasync %s", path));
        }
        if (upto > w->synced_lsn)
            w->synced_lsn = upto;
        pthread_cond_broadcast(&w->synced_cv);
    }
    return NK_OK;
}

/* ---------------------------------------------------------------- writing */

/*
 * Seals the current segment and starts the next (mu held throughout, so no
 * other append can slip in between: a caller's decision to rotate stays
 * valid). cap: the new segment's limit. A syncer may be in fdatasync on the
 * old file meanwhile; syncing it here as well is harmless, and the syncer
 * closes it when done.
 */
static nk_status rotate_locked(struct wal *w, uint64_t cap)
{
    if (!nk_ok(w->error))
        return sticky_copy(w);

    struct wal_seg *cur = cur_seg(w);
    char path[PATH_MAX];
    seg_path(w, cur->num, "", path, sizeof path);
    if (w->synced_lsn < w->written_lsn) {
        if (nk_fs_fdatasync(w->fd) != 0)
            return poison(w, nk_status_errno(errno, "wal: fdatasync %s", path));
        w->stats.syncs++;
        w->synced_lsn = w->written_lsn;
        pthread_cond_broadcast(&w->synced_cv);
    }
    /*
     * The next segment first: when it cannot be created (disk full), the
     * current one stays current and intact, nothing is poisoned, and the
     * append that wanted the rotation fails and may be retried.
     */
    int fd;
    nk_status s = create_segment_file(w, cur->num + 1, &fd);
    if (!nk_ok(s))
        return s;
    /*
     * Give back the unused preallocation. Whether the shorter size reaches
     * the disk does not matter (a zero tail reads as the end of data), and
     * a failure only wastes space.
     */
    if (nk_fs_ftruncate(w->fd, (int64_t)cur->end) != 0)
        NK_WARN("wal", "truncate %s to %" PRIu64 ": %s", path, cur->end, strerror(errno));
    if (w->syncing && w->sync_fd == w->fd)
        w->sync_fd_retired = true;
    else
        nk_fs_close(w->fd);
    install_segment(w, cur->num + 1, fd, cap);
    return NK_OK;
}

struct framed {
    uint8_t hdr[WAL_RECORD_HEADER_SIZE];
};

/*
 * Writes records [i, j) contiguously at the end of the current segment
 * (mu held, they fit).
 */
static nk_status write_run(struct wal *w, const struct wal_record *recs, const uint32_t *crcs,
                           struct framed *fr, struct iovec *iov, size_t i, size_t j)
{
    struct wal_seg *cur = cur_seg(w);
    uint64_t off = cur->end;
    int cnt = 0;
    for (size_t k = i; k < j; k++) {
        uint32_t len = (uint32_t)recs[k].payload.len;
        wal_encode_record_header(fr[k].hdr, crcs[k], len, recs[k].type, cur->num, off);
        iov[cnt++] = (struct iovec){fr[k].hdr, WAL_RECORD_HEADER_SIZE};
        if (len)
            iov[cnt++] = (struct iovec){(void *)recs[k].payload.data, len};
        off += WAL_RECORD_HEADER_SIZE + len;
    }
    nk_status s = write_full(w->fd, iov, cnt, cur->end, "");
    if (!nk_ok(s)) {
        /* name the file only on failure: formatting it costs on every append */
        char path[PATH_MAX];
        seg_path(w, cur->num, "", path, sizeof path);
        s = nk_status_wrap(s, "%s", path);
        /*
         * Disk full: cut what part of the append reached the file, so that
         * nothing of it can be read back (or resurface under a later record
         * of another length), and report the error without poisoning: the
         * log is exactly as before the call and a later append may succeed.
         */
        if (is_no_space(s) && nk_fs_ftruncate(w->fd, (int64_t)cur->end) == 0) {
            w->cur_prealloc = false;
            return s;
        }
        return poison(w, s);
    }
    uint64_t bytes = off - cur->end;
    cur->end = off;
    w->written_lsn += bytes;
    w->stats.bytes_appended += bytes;
    w->stats.records_appended += j - i;
    return NK_OK;
}

static uint64_t rec_size(const struct wal_record *r)
{
    return WAL_RECORD_HEADER_SIZE + (uint64_t)r->payload.len;
}

/* Appends recs (mu held); *first_pos gets records[0]'s position. */
static nk_status append_locked(struct wal *w, const struct wal_record *recs, const uint32_t *crcs,
                               struct framed *fr, struct iovec *iov, size_t n, uint64_t total,
                               struct wal_pos *first_pos)
{
    if (!nk_ok(w->error))
        return sticky_copy(w);
    uint64_t seg_room = w->opt.segment_size - WAL_SEGMENT_HEADER_SIZE;
    /* Keep a batch contiguous when a fresh segment can hold it. */
    if (cur_seg(w)->end + total > w->cur_cap && cur_seg(w)->end > WAL_SEGMENT_HEADER_SIZE &&
        total <= seg_room)
        NK_TRY(rotate_locked(w, w->opt.segment_size));
    size_t i = 0;
    while (i < n) {
        struct wal_seg *cur = cur_seg(w);
        uint64_t room = w->cur_cap - cur->end;
        uint64_t need = rec_size(&recs[i]);
        if (need > room) {
            if (cur->end > WAL_SEGMENT_HEADER_SIZE) {
                NK_TRY(rotate_locked(w, NK_MAX(w->opt.segment_size,
                                               WAL_SEGMENT_HEADER_SIZE + need)));
                continue;
            }
            /* An empty segment grows to hold a record larger than a segment. */
            w->cur_cap = WAL_SEGMENT_HEADER_SIZE + need;
            w->cur_prealloc = false;
            room = w->cur_cap - cur->end;
        }
        if (w->opt.preallocate && !w->cur_prealloc) {
            /* nothing written yet: a failure (disk full) leaves the log as it was */
            char path[PATH_MAX];
            seg_path(w, cur->num, "", path, sizeof path);
            NK_TRY(prealloc(w->fd, w->cur_cap, path));
            w->cur_prealloc = true;
        }
        size_t j = i;
        uint64_t run = 0;
        while (j < n && run + rec_size(&recs[j]) <= room)
            run += rec_size(&recs[j++]);
        NK_ASSERT(j > i);
        if (i == 0 && first_pos)
            *first_pos = (struct wal_pos){cur->num, cur->end};
        NK_TRY(write_run(w, recs, crcs, fr, iov, i, j));
        i = j;
    }
    return NK_OK;
}

static nk_status append_impl(struct wal *w, const struct wal_record *records, size_t n,
                             struct wal_pos *first, struct wal_pos *end, bool wait)
{
    if (n == 0) {
        struct wal_pos e = wal_end(w);
        if (first)
            *first = e;
        if (end)
            *end = e;
        return NK_OK;
    }
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++) {
        if (records[i].type == 0)
            return nk_status_make(NK_INVALID_ARGUMENT,
                                  "wal: record %zu has type 0, which the format reserves", i);
        if (records[i].payload.len > w->opt.max_record_size)
            return nk_status_make(NK_INVALID_ARGUMENT,
                                  "wal: record %zu is %zu bytes, over max_record_size %" PRIu32, i,
                                  records[i].payload.len, w->opt.max_record_size);
        total += rec_size(&records[i]);
    }
    uint32_t crc_stack[WAL_STACK_RECORDS];
    struct framed fr_stack[WAL_STACK_RECORDS];
    struct iovec iov_stack[2 * WAL_STACK_RECORDS];
    uint32_t *crcs = crc_stack;
    struct framed *fr = fr_stack;
    struct iovec *iov = iov_stack;
    if (n > WAL_STACK_RECORDS) {
        crcs = nk_malloc(n * sizeof *crcs);
        fr = nk_malloc(n * sizeof *fr);
        iov = nk_malloc(2 * n * sizeof *iov);
    }
    /* The payload checksums (the expensive part), outside the lock. */
    for (size_t i = 0; i < n; i++)
        crcs[i] = nk_crc32c(records[i].payload.data, records[i].payload.len);

    atomic_fetch_add(&w->arriving, 1);
    pthread_mutex_lock(&w->mu);
    nk_status s = append_locked(w, records, crcs, fr, iov, n, total, first);
    w->pending_appends++;
    atomic_fetch_sub(&w->arriving, 1);
    if (w->syncing)
        pthread_cond_signal(&w->arrive_cv);
    if (nk_ok(s) && end)
        *end = (struct wal_pos){cur_seg(w)->num, cur_seg(w)->end};
    if (nk_ok(s) && wait && w->opt.sync != WAL_SYNC_OS)
        s = wait_durable(w, w->written_lsn);
    pthread_mutex_unlock(&w->mu);

    if (n > WAL_STACK_RECORDS) {
        free(crcs);
        free(fr);
        free(iov);
    }
    return s;
}

nk_status wal_append_many(struct wal *w, const struct wal_record *records, size_t n,
                          struct wal_pos *first)
{
    return append_impl(w, records, n, first, NULL, true);
}

nk_status wal_append_many_nowait(struct wal *w, const struct wal_record *records, size_t n,
                                 struct wal_pos *first, struct wal_pos *end)
{
    return append_impl(w, records, n, first, end, false);
}

nk_status wal_sync_to(struct wal *w, struct wal_pos end)
{
    pthread_mutex_lock(&w->mu);
    nk_status s = NK_OK;
    struct wal_seg *cur = cur_seg(w);
    if (!nk_ok(w->error)) {
        s = sticky_copy(w);
    } else if (end.segment > cur->num || (end.segment == cur->num && end.offset > cur->end)) {
        s = nk_status_make(NK_OUT_OF_RANGE,
                           "wal: sync to %" PRIu64 ":%" PRIu64 " is past the end %" PRIu64
                           ":%" PRIu64 " of %s",
                           end.segment, end.offset, cur->num, cur->end, w->dir);
    } else if (end.segment == cur->num && end.offset > WAL_SEGMENT_HEADER_SIZE) {
        /* older segments were made durable when they were sealed */
        s = wait_durable(w, w->cur_base_lsn + (end.offset - WAL_SEGMENT_HEADER_SIZE));
    }
    pthread_mutex_unlock(&w->mu);
    return s;
}

nk_status wal_append(struct wal *w, uint8_t type, const void *data, size_t n, struct wal_pos *pos)
{
    struct wal_record r = {type, nk_slice_make(data, n)};
    return wal_append_many(w, &r, 1, pos);
}

nk_status wal_sync(struct wal *w)
{
    pthread_mutex_lock(&w->mu);
    nk_status s = nk_ok(w->error) ? wait_durable(w, w->written_lsn) : sticky_copy(w);
    pthread_mutex_unlock(&w->mu);
    return s;
}

nk_status wal_rotate(struct wal *w, uint64_t *next)
{
    pthread_mutex_lock(&w->mu);
    nk_status s = nk_ok(w->error) ? rotate_locked(w, w->opt.segment_size) : sticky_copy(w);
    if (nk_ok(s) && next)
        *next = cur_seg(w)->num;
    pthread_mutex_unlock(&w->mu);
    return s;
}

nk_status wal_remove_before(struct wal *w, uint64_t segment)
{
    nk_status s = NK_OK;
    bool removed = false;
    pthread_mutex_lock(&w->mu);
    while (w->nsegs > 1 && w->segs[0].num < segment) {
        char path[PATH_MAX];
        seg_path(w, w->segs[0].num, "", path, sizeof path);
        if (nk_fs_unlink(path) != 0 && errno != ENOENT) {
            s = nk_status_errno(errno, "wal: remove %s", path);
            break;
        }
        memmove(w->segs, w->segs + 1, (w->nsegs - 1) * sizeof *w->segs);
        w->nsegs--;
        removed = true;
    }
    pthread_mutex_unlock(&w->mu);
    if (removed && nk_ok(s))
        s = nk_fsync_dir(w->dir);
    return s;
}

struct wal_pos wal_end(struct wal *w)
{
    pthread_mutex_lock(&w->mu);
    struct wal_pos p = {cur_seg(w)->num, cur_seg(w)->end};
    pthread_mutex_unlock(&w->mu);
    return p;
}

uint64_t wal_first_segment(struct wal *w)
{
    pthread_mutex_lock(&w->mu);
    uint64_t n = w->segs[0].num;
    pthread_mutex_unlock(&w->mu);
    return n;
}

void wal_get_stats(struct wal *w, struct wal_stats *out)
{
    pthread_mutex_lock(&w->mu);
    *out = w->stats;
    out->segments = w->nsegs;
    pthread_mutex_unlock(&w->mu);
}

/* --------------------------------------------------------------- recovery */

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Segment numbers found in the directory, sorted; removes leftover temp files. */
static nk_status list_segments(struct wal *w, uint64_t **out, size_t *count)
{
    DIR *d = opendir(w->dir);
    if (!d)
        return nk_status_errno(errno, "wal: open directory %s", w->dir);
    uint64_t *v = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        uint64_t num;
        size_t len = strlen(e->d_name);
        if (len == WAL_SEGMENT_NAME_LEN + 4 &&
            strcmp(e->d_name + WAL_SEGMENT_NAME_LEN, ".tmp") == 0) {
            /* a segment whose creation never finished: never named, never used */
            char base[WAL_SEGMENT_NAME_LEN + 1];
            memcpy(base, e->d_name, WAL_SEGMENT_NAME_LEN);
            base[WAL_SEGMENT_NAME_LEN] = 0;
            if (wal_parse_segment_name(base, &num)) {
                char path[PATH_MAX];
                snprintf(path, sizeof path, "%s/%s", w->dir, e->d_name);
                nk_fs_unlink(path);
            }
            continue;
        }
        if (!wal_parse_segment_name(e->d_name, &num))
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            v = nk_realloc(v, cap * sizeof *v);
        }
        v[n++] = num;
    }
    closedir(d);
    if (n)
        qsort(v, n, sizeof *v, cmp_u64);
    *out = v;
    *count = n;
    return NK_OK;
}

/*
 * Scans one segment and applies the recovery rules; for the newest segment
 * (fd open O_RDWR) a torn tail is cut off. *end receives the data end.
 */
static nk_status recover_segment(struct wal *w, uint64_t num, bool newest, int fd, uint64_t *end)
{
    char path[PATH_MAX];
    seg_path(w, num, "", path, sizeof path);
    struct stat st;
    if (fstat(fd, &st) != 0)
        return nk_status_errno(errno, "wal: stat %s", path);
    size_t n = (size_t)st.st_size;
    const uint8_t *p = NULL;
    if (n > 0) {
        p = nk_fs_mmap(n, PROT_READ, MAP_SHARED, fd, 0);
        if (p == MAP_FAILED)
            return nk_status_errno(errno, "wal: mmap %s", path);
        madvise((void *)p, n, MADV_SEQUENTIAL);
    }
    struct wal_scan_result r;
    nk_status s = wal_scan_segment(p ? p : (const uint8_t *)"", n, path, num, &r);
    if (p)
        munmap((void *)p, n);
    NK_TRY(s);
    if (r.next_valid)
        return nk_status_make(NK_DATA_LOSS,
                              "wal segment %s: damaged record at offset %" PRIu64
                              " followed by a valid record at offset %" PRIu64,
                              path, r.end, r.next_valid);
    if (r.dirty_end > r.end && !newest)
        return nk_status_make(NK_DATA_LOSS,
                              "wal segment %s: damaged record at offset %" PRIu64
                              " in a sealed segment (%" PRIu64 " bytes unreadable)",
                              path, r.end, r.dirty_end - r.end);
    if (r.dirty_end > r.end) {
        NK_WARN("wal", "%s: torn tail at offset %" PRIu64 " (%" PRIu64 " bytes) truncated", path,
                r.end, r.dirty_end - r.end);
        if (nk_fs_ftruncate(fd, (int64_t)r.end) != 0)
            return nk_status_errno(errno, "wal: truncate %s to %" PRIu64, path, r.end);
        if (nk_fs_fdatasync(fd) != 0)
            return nk_status_errno(errno, "wal: fdatasync %s", path);
        w->stats.syncs++;
        w->stats.torn_bytes_truncated += r.dirty_end - r.end;
    }
    *end = r.end;
    return NK_OK;
}

static nk_status fsync_parent(const char *dir)
{
    char parent[PATH_MAX];
    size_t n = strlen(dir);
    if (n >= sizeof parent)
        return nk_status_make(NK_INVALID_ARGUMENT, "wal: path too long: %s", dir);
    memcpy(parent, dir, n + 1);
    while (n > 1 && parent[n - 1] == '/')
        parent[--n] = 0;
    char *slash = strrchr(parent, '/');
    if (!slash)
        return nk_fsync_dir(".");
    if (slash == parent)
        slash[1] = 0;
    else
        *slash = 0;
    return nk_fsync_dir(parent);
}

static nk_status recover(struct wal *w)
{
    uint64_t *nums = NULL;
    size_t count = 0;
    NK_TRY(list_segments(w, &nums, &count));
    nk_status s = NK_OK;
    for (size_t i = 0; i < count && nk_ok(s); i++) {
        if (nums[i] == 0)
            s = nk_status_make(NK_DATA_LOSS, "wal: segment number 0 in %s is invalid", w->dir);
        else if (i > 0 && nums[i] != nums[i - 1] + 1)
            s = nk_status_make(NK_DATA_LOSS,
                               "wal: segment %" PRIu64 " is missing from %s (found %" PRIu64
                               " and %" PRIu64 ")",
                               nums[i - 1] + 1, w->dir, nums[i - 1], nums[i]);
    }
    for (size_t i = 0; i < count && nk_ok(s); i++) {
        bool newest = i + 1 == count;
        char path[PATH_MAX];
        seg_path(w, nums[i], "", path, sizeof path);
        int fd = nk_fs_open(path, (newest ? O_RDWR : O_RDONLY) | O_CLOEXEC, 0);
        if (fd < 0) {
            s = nk_status_errno(errno, "wal: open %s", path);
            break;
        }
        uint64_t end = 0;
        s = recover_segment(w, nums[i], newest, fd, &end);
        if (!nk_ok(s)) {
            nk_fs_close(fd);
            break;
        }
        segs_push(w, nums[i], end);
        if (!newest) {
            nk_fs_close(fd);
            continue;
        }
        w->fd = fd;
        w->cur_cap = NK_MAX(w->opt.segment_size, end);
        /* an empty newest segment is preallocated by its first append */
        if (w->opt.preallocate && end > WAL_SEGMENT_HEADER_SIZE) {
            s = prealloc(fd, w->cur_cap, path);
            w->cur_prealloc = nk_ok(s);
            if (is_no_space(s)) {
                /* the log is readable; appends will retry (and report) it */
                nk_status_free(&s);
                s = NK_OK;
            }
        }
        /*
         * What a crashed process wrote may still be only in the page cache;
         * it is part of the log now, so make it durable before anything
         * later is acknowledged (and before a rotation could seal it).
         */
        if (nk_ok(s)) {
            if (nk_fs_fdatasync(fd) != 0)
                s = nk_status_errno(errno, "wal: fdatasync %s", path);
            w->stats.syncs++;
        }
        w->written_lsn = w->synced_lsn = end - WAL_SEGMENT_HEADER_SIZE;
        w->cur_base_lsn = 0;
    }
    if (nk_ok(s) && count == 0) {
        s = create_segment(w, 1, w->opt.segment_size);
        /* a new log: make its directory's own entry durable too */
        if (nk_ok(s))
            s = fsync_parent(w->dir);
    }
    free(nums);
    return s;
}

static nk_status check_options(const struct wal_options *o)
{
    if (o->sync != WAL_SYNC_ALWAYS && o->sync != WAL_SYNC_BATCH && o->sync != WAL_SYNC_OS)
        return nk_status_make(NK_INVALID_ARGUMENT, "wal: unknown sync mode %d", (int)o->sync);
    if (o->batch_window_us > WAL_MAX_BATCH_WINDOW_US)
        return nk_status_make(NK_INVALID_ARGUMENT,
                              "wal: batch_window_us %" PRIu32 " over the limit %u",
                              o->batch_window_us, WAL_MAX_BATCH_WINDOW_US);
    if (o->segment_size < WAL_MIN_SEGMENT_SIZE)
        return nk_status_make(NK_INVALID_ARGUMENT,
                              "wal: segment_size %" PRIu64 " under the minimum %u",
                              o->segment_size, WAL_MIN_SEGMENT_SIZE);
    if (o->max_record_size == 0 || o->max_record_size > WAL_RECORD_SIZE_LIMIT)
        return nk_status_make(NK_INVALID_ARGUMENT,
                              "wal: max_record_size %" PRIu32 " outside 1..%u", o->max_record_size,
                              WAL_RECORD_SIZE_LIMIT);
    return NK_OK;
}

nk_status wal_open(const char *dir, const struct wal_options *opt, struct wal **out)
{
    struct wal_options o;
    if (opt)
        o = *opt;
    else
        wal_options_default(&o);
    NK_TRY(check_options(&o));
    /* every path the log builds is dir + "/" + segment name + ".tmp" */
    if (!dir || !*dir || strlen(dir) + 1 + WAL_SEGMENT_NAME_LEN + 4 >= PATH_MAX)
        return nk_status_make(NK_INVALID_ARGUMENT, "wal: directory path empty or too long (%zu bytes)",
                              dir ? strlen(dir) : 0);
    NK_TRY(nk_mkdirs(dir, 0755));

    char lock_path[PATH_MAX];
    snprintf(lock_path, sizeof lock_path, "%s/LOCK", dir);
    int lock_fd = nk_fs_open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (lock_fd < 0)
        return nk_status_errno(errno, "wal: open %s", lock_path);
    if (flock(lock_fd, LOCK_EX | LOCK_NB) != 0) {
        int err = errno;
        nk_fs_close(lock_fd);
        if (err == EWOULDBLOCK)
            return nk_status_make(NK_FAILED_PRECONDITION,
                                  "wal: %s is in use (locked by another open log)", dir);
        return nk_status_errno(err, "wal: lock %s", lock_path);
    }

    struct wal *w = nk_calloc(1, sizeof *w);
    w->dir = nk_strdup(dir);
    w->opt = o;
    w->lock_fd = lock_fd;
    w->fd = -1;
    w->sync_fd = -1;
    pthread_mutex_init(&w->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&w->synced_cv, &ca);
    pthread_cond_init(&w->arrive_cv, &ca);
    pthread_condattr_destroy(&ca);
    atomic_init(&w->arriving, 0);

    nk_status s = recover(w);
    if (!nk_ok(s)) {
        wal_close(w); /* nothing was appended: closing only releases */
        return s;
    }
    *out = w;
    return NK_OK;
}

void wal_close(struct wal *w)
{
    if (!w)
        return;
    if (w->fd >= 0) {
        pthread_mutex_lock(&w->mu);
        if (nk_ok(w->error) && w->synced_lsn < w->written_lsn) {
            nk_status s = wait_durable(w, w->written_lsn);
            if (!nk_ok(s)) {
                NK_ERROR("wal", "close %s: %s", w->dir, nk_status_msg(s));
                nk_status_free(&s);
            }
        }
        pthread_mutex_unlock(&w->mu);
        nk_fs_close(w->fd);
    }
    nk_status_free(&w->error);
    nk_fs_close(w->lock_fd);
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->synced_cv);
    pthread_cond_destroy(&w->arrive_cv);
    free(w->segs);
    free(w->dir);
    free(w);
}

/* --------------------------------------------------------------- iterator */

struct wal_iter {
    struct wal *w;
    uint64_t seg;   /* segment being read */
    int fd;         /* its file */
    uint64_t off;   /* next record's offset */
    uint64_t limit; /* known end of complete data in seg */
    bool sealed;    /* seg is no longer the current segment: limit is final */
    uint8_t *buf;   /* bytes [buf_off, buf_off + buf_len) of seg */
    size_t buf_cap, buf_len;
    size_t readahead;
    uint64_t buf_off;
};

static nk_status iter_open_seg(struct wal_iter *it, uint64_t num)
{
    char path[PATH_MAX];
    seg_path(it->w, num, "", path, sizeof path);
    int fd = nk_fs_open(path, O_RDONLY | O_CLOEXEC, 0);
    if (fd < 0) {
        if (errno == ENOENT)
            return nk_status_make(NK_OUT_OF_RANGE, "wal: segment %s was removed", path);
        return nk_status_errno(errno, "wal: open %s", path);
    }
    if (it->fd >= 0)
        nk_fs_close(it->fd);
    it->fd = fd;
    it->seg = num;
    it->buf_len = 0;
    it->buf_off = 0;
    return NK_OK;
}

/* Refreshes limit/sealed for it->seg from the log (takes mu). */
static nk_status iter_refresh(struct wal_iter *it)
{
    struct wal *w = it->w;
    pthread_mutex_lock(&w->mu);
    long i = segs_find(w, it->seg);
    nk_status s = NK_OK;
    if (i < 0) {
        /*
         * Removed under us. If we had already seen it sealed, `limit` is its
         * final end and the open file is still readable up to it; otherwise
         * we do not know where its data ends, and guessing could skip records.
         */
        if (!it->sealed)
            s = nk_status_make(NK_OUT_OF_RANGE,
                               "wal: segment %" PRIu64 " of %s was removed while being read",
                               it->seg, w->dir);
    } else {
        it->limit = w->segs[i].end;
        it->sealed = (size_t)i + 1 < w->nsegs;
    }
    pthread_mutex_unlock(&w->mu);
    return s;
}

nk_status wal_iter_open(struct wal *w, struct wal_pos from, struct wal_iter **out)
{
    struct wal_iter *it = nk_calloc(1, sizeof *it);
    it->w = w;
    it->fd = -1;
    it->readahead = WAL_ITER_READ_MIN;
    pthread_mutex_lock(&w->mu);
    uint64_t first = w->segs[0].num, last = cur_seg(w)->num;
    nk_status s = NK_OK;
    long i = -1;
    if (from.segment == 0)
        i = 0;
    else if ((i = segs_find(w, from.segment)) < 0)
        s = nk_status_make(NK_OUT_OF_RANGE,
                           "wal: position %" PRIu64 ":%" PRIu64
                           " is outside the log (segments %" PRIu64 "..%" PRIu64 " in %s)",
                           from.segment, from.offset, first, last, w->dir);
    if (nk_ok(s)) {
        it->off = from.segment == 0 ? WAL_SEGMENT_HEADER_SIZE
                                    : NK_MAX(from.offset, (uint64_t)WAL_SEGMENT_HEADER_SIZE);
        it->limit = w->segs[i].end;
        it->sealed = (size_t)i + 1 < w->nsegs;
        if (it->off > it->limit)
            s = nk_status_make(NK_OUT_OF_RANGE,
                               "wal: position %" PRIu64 ":%" PRIu64
                               " is past the end of segment %" PRIu64 " (%" PRIu64 ")",
                               from.segment, from.offset, w->segs[i].num, it->limit);
        else
            s = iter_open_seg(it, w->segs[i].num);
    }
    pthread_mutex_unlock(&w->mu);
    if (!nk_ok(s)) {
        wal_iter_close(it);
        return s;
    }
    *out = it;
    return NK_OK;
}

/* Makes [off, off + n) of the segment readable in it->buf; n <= limit - off. */
static nk_status iter_fill(struct wal_iter *it, uint64_t off, size_t n, const uint8_t **p)
{
    if (off >= it->buf_off && off + n <= it->buf_off + it->buf_len) {
        *p = it->buf + (off - it->buf_off);
        return NK_OK;
    }
    size_t want = NK_MAX(n, it->readahead);
    it->readahead = NK_MIN(2 * it->readahead, (size_t)WAL_ITER_READ_MAX);
    if ((uint64_t)want > it->limit - off)
        want = (size_t)(it->limit - off);
    NK_ASSERT(want >= n);
    if (want > it->buf_cap) {
        free(it->buf);
        it->buf = nk_malloc(want);
        it->buf_cap = want;
    }
    size_t got = 0;
    while (got < want) {
        ssize_t k = nk_fs_pread(it->fd, it->buf + got, want - got, (int64_t)(off + got));
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0) {
            it->buf_len = 0;
            return nk_status_errno(errno, "wal: read segment %" PRIu64 " of %s at offset %" PRIu64,
                                   it->seg, it->w->dir, off + got);
        }
        if (k == 0)
            break;
        got += (size_t)k;
    }
    it->buf_off = off;
    it->buf_len = got;
    if (got < n)
        return nk_status_make(NK_DATA_LOSS,
                              "wal: segment %020" PRIu64 "%s in %s ends at %" PRIu64
                              ", before its recorded end %" PRIu64,
                              it->seg, WAL_SEGMENT_SUFFIX, it->w->dir, off + got, it->limit);
    *p = it->buf;
    return NK_OK;
}

nk_status wal_iter_next(struct wal_iter *it, bool *has, uint8_t *type, struct nk_slice *payload,
                        struct wal_pos *pos)
{
    for (;;) {
        if (it->off >= it->limit) {
            NK_TRY(iter_refresh(it));
            if (it->off < it->limit)
                continue;
            if (!it->sealed) {
                *has = false;
                return NK_OK;
            }
            /* Segments are consecutive: the next one must be seg + 1. */
            pthread_mutex_lock(&it->w->mu);
            long i = segs_find(it->w, it->seg + 1);
            pthread_mutex_unlock(&it->w->mu);
            if (i < 0)
                return nk_status_make(NK_OUT_OF_RANGE,
                                      "wal: segment %" PRIu64 " of %s was removed while iterating",
                                      it->seg + 1, it->w->dir);
            NK_TRY(iter_open_seg(it, it->seg + 1));
            it->off = WAL_SEGMENT_HEADER_SIZE;
            it->limit = 0; /* unknown until the next refresh */
            it->sealed = false;
            continue;
        }
        uint64_t avail = it->limit - it->off;
        const uint8_t *p;
        size_t hn = (size_t)NK_MIN(avail, (uint64_t)WAL_RECORD_HEADER_SIZE);
        NK_TRY(iter_fill(it, it->off, hn, &p));
        uint32_t len;
        uint8_t t;
        /* the header first: a damaged length never makes us read (or allocate) its claim */
        enum wal_rec_check c = wal_check_record_header(p, (size_t)NK_MIN(avail, (uint64_t)SIZE_MAX),
                                                       it->seg, it->off, &len, &t);
        if (c == WAL_REC_OK) {
            size_t whole = WAL_RECORD_HEADER_SIZE + (size_t)len;
            NK_TRY(iter_fill(it, it->off, whole, &p));
            c = wal_check_record(p, whole, it->seg, it->off, &len, &t);
        }
        if (c != WAL_REC_OK)
            return nk_status_make(NK_DATA_LOSS,
                                  "wal segment %s/%020" PRIu64 "%s: damaged record at offset %" PRIu64,
                                  it->w->dir, it->seg, WAL_SEGMENT_SUFFIX, it->off);
        *has = true;
        *type = t;
        *payload = nk_slice_make(p + WAL_RECORD_HEADER_SIZE, len);
        if (pos)
            *pos = (struct wal_pos){it->seg, it->off};
        it->off += WAL_RECORD_HEADER_SIZE + (uint64_t)len;
        return NK_OK;
    }
}

void wal_iter_close(struct wal_iter *it)
{
    if (!it)
        return;
    if (it->fd >= 0)
        nk_fs_close(it->fd);
    free(it->buf);
    free(it);
}
