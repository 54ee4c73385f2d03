/*
 * raftlog: one durable log per node holding the Raft entries and hard state
 * of every shard group hosted on it.
 *
 * Why one log: a node hosts ~1024 groups. One file per group would mean 1024
 * fsyncs per round of work; here the Ready loop gathers the new entries and
 * hard states of every group with work into one batch, and raftlog_write()
 * makes it durable with one write and one fdatasync (group commit).
 *
 * On disk it is a src/wal log; each raftlog_write() is one WAL record (so a
 * batch is durable whole or not at all) holding sub-records tagged with the
 * group id (docs/format/raftlog.md): ENTRIES (a run of consecutive entries of one
 * group; a run that starts at or below the group's last index replaces the
 * suffix from there, which is how conflicting entries are truncated),
 * HARDSTATE (term, vote, commit), COMPACT (the group's log now starts after
 * this index/term: the prefix is covered by a snapshot or by state the LSM
 * has flushed) and CHECKPOINT (the hard states and compaction points of many
 * groups, rewritten so that old segments can be deleted).
 *
 * In memory: per group, an index of its live entries (term, type, where on
 * disk) and a bounded cache of entry payloads (the newest are kept; older
 * ones are read back from the WAL on demand). Opening the log scans the WAL
 * once and rebuilds all of it.
 *
 * Segment GC: raftlog_gc() deletes every WAL segment that holds no live entry
 * of any group and no group's latest hard state or compaction point; groups
 * whose latest hard state pins an old segment are checkpointed first.
 *
 * Memory: raftlog owns all its memory. Entry payloads returned by
 * raftlog_entries() are copied into the caller's buffers/arena.
 *
 * Thread-safety: all functions are thread-safe (one internal mutex); the
 * design expects one writer (the node's Ready loop) and occasional readers.
 * Reads of payloads from disk run outside the mutex (GC keeps the segments
 * they read), so a lagging reader never holds up raftlog_write.
 */
#ifndef NK_RAFTLOG_H
#define NK_RAFTLOG_H

#include "util/util.h"
#include "wal/wal.h"

struct raftlog;

struct raftlog_options {
    /* The WAL under the log. Default WAL_SYNC_ALWAYS: each raftlog_write is
     * one record and one fdatasync. WAL_SYNC_OS skips the fdatasync (the
     * ephemeral server, whose "disk" is memory). */
    struct wal_options wal;
    size_t cache_bytes;  /* payload cache bound; default 64 MiB */
    size_t fetch_bytes;  /* bound of payloads held by raftlog_prefetch; default 64 MiB */
    /* Instrumentation: called (no lock held) just before payloads are read
     * from disk; tests use it to hold a read in flight. NULL by default. */
    void (*before_disk_read)(void *arg);
    void *before_disk_read_arg;
    uint32_t max_groups; /* group ids are < max_groups; default 65536 */
    uint32_t max_batch_bytes; /* a larger batch is refused (RESOURCE_EXHAUSTED); default 32 MiB */
};

void raftlog_options_default(struct raftlog_options *o);

/* One entry as stored; data is borrowed when passed in. */
struct raftlog_entry {
    uint64_t index;
    uint64_t term;
    uint8_t type; /* opaque to raftlog (the Raft core's entry type) */
    struct nk_slice data;
};

struct raftlog_hardstate {
    uint64_t term;
    uint64_t vote;
    uint64_t commit;
};

/* ------------------------------------------------------------------ writing */

/*
 * A batch of changes for many groups, made durable together. Building a batch
 * copies the entries' data into it. Entries of one group in one batch must be
 * consecutive.
 */
struct raftlog_batch;

struct raftlog_batch *raftlog_batch_new(void);
void raftlog_batch_free(struct raftlog_batch *b);
void raftlog_batch_clear(struct raftlog_batch *b);
size_t raftlog_batch_bytes(const struct raftlog_batch *b);
bool raftlog_batch_empty(const struct raftlog_batch *b);
/* The batch's encoding: the payload of the WAL record raftlog_write appends. */
struct nk_slice raftlog_batch_payload(const struct raftlog_batch *b);
/* Entries for a group; n >= 1; indexes consecutive. */
void raftlog_batch_entries(struct raftlog_batch *b, uint32_t group,
                           const struct raftlog_entry *ents, size_t n);
void raftlog_batch_hardstate(struct raftlog_batch *b, uint32_t group,
                             const struct raftlog_hardstate *hs);
/*
 * The group's log is compacted up to and including index (with its term).
 * conf is an opaque blob stored with the point (the node keeps the group's
 * membership at that index there); it may be empty. Raft's snapshot rule
 * applies: the entries after index are kept only when the log holds index
 * with this same term; otherwise the whole log is dropped.
 */
void raftlog_batch_compact(struct raftlog_batch *b, uint32_t group, uint64_t index,
                           uint64_t term, struct nk_slice conf);

/*
 * The group's replica left this node: its entries, hard state and compaction
 * point are forgotten, as if it had never existed here (a later replica of
 * the same group starts from nothing). Apply order within the batch holds.
 */
void raftlog_batch_reset(struct raftlog_batch *b, uint32_t group);

/*
 * Writes the batch with one WAL append and one fdatasync, then updates the
 * in-memory index. Entries that start at or below a group's last index
 * replace its suffix. On error nothing in memory changes (the WAL may hold a
 * partial tail, which the next open truncates or replays whole records of).
 */
nk_status raftlog_write(struct raftlog *l, struct raftlog_batch *b);
/*
 * The same, but with sync false the record is only written (it becomes
 * durable with the next synced write or raftlog_sync). For batches whose loss
 * Raft tolerates: a hard state that changed only its commit index (etcd's
 * rule: sync for new entries, a new term or a new vote).
 */
nk_status raftlog_write_ex(struct raftlog *l, struct raftlog_batch *b, bool sync);

/* fdatasync everything written so far (for WAL_SYNC_OS logs synced on a timer). */
nk_status raftlog_sync(struct raftlog *l);

/* ------------------------------------------------------------------ reading */

nk_status raftlog_open(const char *dir, const struct raftlog_options *o, struct raftlog **out);
void raftlog_close(struct raftlog *l);

/* Group ids that have any state in the log, ascending; *n gets the count. */
uint32_t *raftlog_groups(struct raftlog *l, size_t *n);

/* Hard state of a group; all zero when it has none. */
void raftlog_get_hardstate(struct raftlog *l, uint32_t group, struct raftlog_hardstate *hs);
/* Compaction point: entries <= *index are gone; (0,0) when never compacted.
 * conf (may be NULL) receives a copy of the point's conf blob. */
void raftlog_get_compacted(struct raftlog *l, uint32_t group, uint64_t *index, uint64_t *term,
                           struct nk_buf *conf);
/* First live index (compacted + 1) and last index (compacted index when empty). */
uint64_t raftlog_first_index(struct raftlog *l, uint32_t group);
uint64_t raftlog_last_index(struct raftlog *l, uint32_t group);
/*
 * Term of the entry at index. The compaction point's own index answers its
 * term. Below it: NK_OUT_OF_RANGE ("compacted"); above the last: NK_NOT_FOUND.
 */
nk_status raftlog_term(struct raftlog *l, uint32_t group, uint64_t index, uint64_t *term);
/*
 * Entries [lo, hi) of a group, at most max_bytes of payload (but at least one
 * entry). Payloads are copied into arena. *n receives the count; out must
 * have room for hi - lo entries. lo below the first index: NK_OUT_OF_RANGE;
 * hi beyond last + 1: NK_INVALID_ARGUMENT.
 */
nk_status raftlog_entries(struct raftlog *l, uint32_t group, uint64_t lo, uint64_t hi,
                          uint64_t max_bytes, struct nk_arena *arena,
                          struct raftlog_entry *out, size_t *n);

/*
 * For senders that must not wait for the disk (the Ready loop sending
 * entries to a lagging follower): as raftlog_entries, but it stops at the
 * first entry whose payload is not in memory, and answers NK_UNAVAILABLE
 * when that is the first one. raftlog_prefetch (from another thread) then
 * reads up to max_bytes of payloads (and at most 4096 entries) from lo on
 * from disk and holds them in
 * memory (bounded by fetch_bytes; one held run per group, released when the
 * group's next prefetch starts, when the entries are compacted or truncated,
 * or when another group's prefetch needs the room: a group that caught up
 * would otherwise hold its last run for good and starve the others). Only a
 * run larger than the whole bound answers NK_RESOURCE_EXHAUSTED.
 */
nk_status raftlog_entries_nowait(struct raftlog *l, uint32_t group, uint64_t lo, uint64_t hi,
                                 uint64_t max_bytes, struct nk_arena *arena,
                                 struct raftlog_entry *out, size_t *n);
nk_status raftlog_prefetch(struct raftlog *l, uint32_t group, uint64_t lo, uint64_t max_bytes);

/*
 * Decodes one batch record as recovery would, into a scratch log with no
 * files (group ids < 4096), and reports whether it is well-formed. For the
 * fuzz target and tools; records on disk are untrusted input.
 */
nk_status raftlog_check_record(const uint8_t *p, size_t n);

/* ---------------------------------------------------------------------- gc */

/* Deletes WAL segments that nothing live needs (checkpointing first). */
nk_status raftlog_gc(struct raftlog *l);

struct raftlog_stats {
    uint64_t writes, fsyncs, bytes_written;
    uint64_t live_entries;
    uint64_t cache_bytes, cache_hits, cache_misses;
    uint64_t fetched_bytes, fetches, fetch_waits; /* raftlog_prefetch / _nowait */
    uint64_t segments;
    uint64_t last_fsync_us;
};
void raftlog_get_stats(struct raftlog *l, struct raftlog_stats *out);

#endif /* NK_RAFTLOG_H */
