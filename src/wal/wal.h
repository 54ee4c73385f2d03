/*
 * wal: a segmented, append-only log of checksummed records.
 *
 * The log is a directory of segment files named by a 64-bit sequence number
 * (format: docs/format/wal.md). Each record is framed with its length, a
 * type byte chosen by the user, and a CRC32C; payloads are opaque. The LSM
 * engine logs write batches here; the Raft log engine (src/raftlog) logs the
 * entries and hard states of every shard group of a node here, so appends of
 * many records in one write and one fdatasync (group commit) are first-class.
 *
 * Durability (wal_options.sync):
 *   WAL_SYNC_ALWAYS  every append is on disk (fdatasync) before it returns.
 *   WAL_SYNC_BATCH   every append is on disk before it returns, but appends
 *                    from concurrent threads share one fdatasync: the first
 *                    waiter becomes the syncer and may wait up to
 *                    batch_window_us for others to join (group commit).
 *   WAL_SYNC_OS      appends return once written to the OS; a process crash
 *                    loses nothing, a machine crash may lose the tail. The
 *                    caller may call wal_sync() itself (the Raft log does).
 *
 * Recovery: wal_open scans every segment. A record that is cut short or fails
 * its checksum at the end of the newest segment is a torn tail: it and what
 * follows are truncated away. The same damage anywhere else is corruption
 * (NK_DATA_LOSS naming the file and offset), never skipped silently.
 *
 * Segments are preallocated (fallocate) to segment_size; a new segment starts
 * when a record would not fit, or on wal_rotate(). Whole segments are removed
 * with wal_remove_before() once their owner no longer needs them.
 *
 * Errors: a failed write or fdatasync poisons the open log; every later
 * append, sync or rotate returns that error (the kernel may have dropped the
 * unsynced pages, so nothing later could be acknowledged honestly). Reopen to
 * recover. A directory is opened by one wal at a time (flock on dir/LOCK);
 * a second wal_open fails with NK_FAILED_PRECONDITION.
 *
 * Memory: the wal owns its buffers; payloads passed in are copied (or
 * written) before the call returns. Iterators hand out slices that stay valid
 * until the next call on that iterator.
 *
 * Thread-safety: wal_append*, wal_sync, wal_sync_to, wal_rotate,
 * wal_remove_before and the getters may be called from any thread
 * concurrently. An iterator belongs to one thread; iterating while appending
 * is allowed (the iterator sees records that were complete when it reached
 * them). wal_close must not race with any
 * other call, and every iterator must be closed before it.
 */
#ifndef NK_WAL_H
#define NK_WAL_H

#include "util/util.h"

enum wal_sync_mode { WAL_SYNC_ALWAYS = 0, WAL_SYNC_BATCH = 1, WAL_SYNC_OS = 2 };

struct wal_options {
    enum wal_sync_mode sync;  /* default WAL_SYNC_ALWAYS */
    uint32_t batch_window_us; /* WAL_SYNC_BATCH only; default 2000 */
    uint64_t segment_size;    /* default 64 MiB; a larger record gets a segment of its own */
    uint32_t max_record_size; /* default 64 MiB; larger appends: NK_INVALID_ARGUMENT */
    bool preallocate;         /* fallocate new segments; default true */
};

void wal_options_default(struct wal_options *o);

/* Parses "always", "batch", "os". */
bool wal_parse_sync_mode(const char *s, enum wal_sync_mode *out);

/* A record's position: the segment's sequence number and the record's offset in it. */
struct wal_pos {
    uint64_t segment;
    uint64_t offset;
};

static inline int wal_pos_cmp(struct wal_pos a, struct wal_pos b)
{
    if (a.segment != b.segment)
        return a.segment < b.segment ? -1 : 1;
    return a.offset < b.offset ? -1 : (a.offset > b.offset ? 1 : 0);
}

/* One record to append. Type 0 is reserved by the format; use 1..255. */
struct wal_record {
    uint8_t type;
    struct nk_slice payload;
};

struct wal;

/* Opens (creating the directory if needed) and recovers the log in dir. */
nk_status wal_open(const char *dir, const struct wal_options *opt, struct wal **out);
/* Syncs what was appended and closes. NULL is fine. */
void wal_close(struct wal *w);

/* Appends one record; *pos (may be NULL) receives its position. */
nk_status wal_append(struct wal *w, uint8_t type, const void *data, size_t n, struct wal_pos *pos);
/*
 * Appends n records with one write (and, per the sync mode, one fdatasync);
 * they are contiguous in one segment unless they do not fit in one. first
 * (may be NULL) receives the position of records[0]. Each record is atomic
 * across a crash, the group is not: after a crash before the call returned,
 * a prefix of the records may be present. Put what must be all-or-nothing
 * in one record (as the LSM does with a write batch).
 */
nk_status wal_append_many(struct wal *w, const struct wal_record *records, size_t n,
                          struct wal_pos *first);
/* fdatasync everything appended so far. */
nk_status wal_sync(struct wal *w);

/*
 * For callers that order their appends under a lock of their own (the LSM's
 * writer lock, the Raft log's): append under that lock without waiting for
 * the disk, release it, then wal_sync_to(end). Concurrent callers then share
 * fdatasyncs exactly as concurrent wal_append calls do in WAL_SYNC_BATCH
 * (the syncer also waits for appenders in flight, up to batch_window_us, in
 * BATCH mode). The _nowait append never syncs, whatever the sync mode; *end
 * (may be NULL) receives the position just past its last record. wal_sync_to
 * returns once everything before `end` is on disk (at once if it already
 * is); a position past the end of the log is NK_OUT_OF_RANGE.
 */
nk_status wal_append_many_nowait(struct wal *w, const struct wal_record *records, size_t n,
                                 struct wal_pos *first, struct wal_pos *end);
nk_status wal_sync_to(struct wal *w, struct wal_pos end);
/* Closes the current segment and starts a new one; *next gets its number. */
nk_status wal_rotate(struct wal *w, uint64_t *next);
/* Deletes every whole segment whose number is < segment (never the current one). */
nk_status wal_remove_before(struct wal *w, uint64_t segment);

/* Position just past the last appended record. */
struct wal_pos wal_end(struct wal *w);
/* Lowest segment number still on disk. */
uint64_t wal_first_segment(struct wal *w);

struct wal_stats {
    uint64_t records_appended;
    uint64_t bytes_appended;
    uint64_t syncs;           /* fdatasync calls */
    uint64_t segments;        /* segments on disk */
    uint64_t torn_bytes_truncated; /* by recovery at open */
};
void wal_get_stats(struct wal *w, struct wal_stats *out);

struct wal_iter;

/*
 * Iterates records from position `from`: {0,0} is the first record of the
 * log, {segment,0} the first record of that segment, otherwise a position
 * returned by an append or an iterator. A segment no longer on disk or an
 * offset past its data is NK_OUT_OF_RANGE; an offset that is not a record
 * boundary fails the (position-bound) checksum: NK_DATA_LOSS.
 */
nk_status wal_iter_open(struct wal *w, struct wal_pos from, struct wal_iter **out);
/*
 * Next record: *has is false at the end of the log. The payload slice is
 * valid until the next call on this iterator. A damaged record in the middle
 * of the log is NK_DATA_LOSS.
 */
nk_status wal_iter_next(struct wal_iter *it, bool *has, uint8_t *type, struct nk_slice *payload,
                        struct wal_pos *pos);
void wal_iter_close(struct wal_iter *it);

#endif /* NK_WAL_H */
