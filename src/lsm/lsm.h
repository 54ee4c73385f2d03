/*
 * lsm: NoriKV's log-structured merge-tree storage engine.
 *
 * One database is a directory: a write-ahead log (src/wal, subdirectory
 * wal/), sorted tables (src/sstable, <number>.sst), a MANIFEST of version
 * edits and a CURRENT file naming the live manifest (docs/format/manifest.md;
 * design notes in docs/lsm.md). Writes go to the WAL (unless a write skips
 * it) and to an arena-allocated skiplist memtable; a full memtable becomes
 * immutable and a background thread flushes it to a level-0 table, then
 * compacts levels (leveled: L0 file-count trigger, size ratio 10 between
 * levels, no overlapping tables in L1 and below).
 *
 * Records: a key maps to a value, a tombstone, or a value with an absolute
 * expiry time in milliseconds (the clock is lsm_options.clock_ms, wall time
 * by default). An expired record reads as absent and keeps hiding older
 * versions of its key until compaction has dropped those too; expiry is
 * evaluated against the clock at read time, also for reads at a snapshot.
 *
 * Memory: the database owns everything it allocates. Values returned by
 * lsm_get are copied into the caller's nk_buf. Slices from an iterator are
 * valid until it moves or is freed. A batch is owned by its caller.
 *
 * Threading: writes (lsm_write, lsm_put, lsm_delete) are serialized inside
 * the engine: one writer at a time runs, others wait on a mutex. Reads
 * (lsm_get, iterators, snapshots) may run from any number of threads
 * concurrently with the writer and never wait for it: the memtable is a
 * skiplist whose readers take no lock. An iterator or batch belongs to one
 * thread. One background thread flushes and compacts; lsm_flush and
 * lsm_compact_range hand it work and wait.
 *
 * Bounds: the active memtable holds at most write_buffer_size bytes (plus
 * the one batch that crossed the line, plus a bloom filter of 1/64 of that
 * size); at most max_immutable immutable
 * memtables wait for flush; level 0 holds at most l0_stop_trigger tables.
 * When a write finds these full it stalls until the background thread has
 * made room, or, with lsm_write_options.no_stall, fails at once with
 * NK_RESOURCE_EXHAUSTED. Cached blocks are bounded by block_cache_bytes. Every
 * live table is held open (one descriptor plus its index and filter).
 *
 * Server use (ARCHITECTURE.md, storage): one database per node holds every
 * shard, keys prefixed with the shard id (big-endian u16); an apply batch
 * puts the data and the shard's applied index in one lsm_write with
 * skip_wal; after a crash everything up to lsm_persisted_sequence() is
 * there and nothing later that skipped the WAL (flushes preserve sequence
 * order, so the surviving state is a prefix of the applied batches); a
 * shard snapshot is an iterator with a prefix at a snapshot.
 */
#ifndef NK_LSM_H
#define NK_LSM_H

#include "util/util.h"

/* Limits. A key of 0..LSM_MAX_KEY bytes and a value of 0..LSM_MAX_VALUE bytes
 * are accepted; larger ones are NK_INVALID_ARGUMENT naming the size. */
#define LSM_MAX_KEY   (64u * 1024u - 8u) /* + 8-byte internal trailer = SST_MAX_KEY */
#define LSM_MAX_VALUE (16u * 1024u * 1024u)
#define LSM_MAX_BATCH (64u * 1024u * 1024u) /* encoded bytes of one batch */
#define LSM_NUM_LEVELS 7

enum lsm_wal_sync {
    LSM_WAL_SYNC_ALWAYS = 0, /* fdatasync every logged write before it returns */
    LSM_WAL_SYNC_BATCH = 1,  /* group commit window (wal's WAL_SYNC_BATCH) */
    LSM_WAL_SYNC_OS = 2,     /* written to the OS; survives a process crash only */
};

/* What lsm_options.on_event reports. */
enum lsm_event_kind {
    LSM_EVENT_FLUSH = 0,        /* a memtable became a level-0 table */
    LSM_EVENT_COMPACTION = 1,   /* tables of level `level` merged into `out_level` */
    LSM_EVENT_TRIVIAL_MOVE = 2, /* one table moved down a level without rewriting */
    LSM_EVENT_WRITE_STALL = 3,  /* a write waited duration_us for flush or compaction */
};

struct lsm_event {
    enum lsm_event_kind kind;
    int level, out_level;
    uint64_t bytes_in, bytes_out; /* read from inputs / written to new tables */
    uint32_t files_in, files_out;
    uint64_t duration_us;
    bool l0_full; /* WRITE_STALL: level 0 was full (else: memtables waited for flush) */
};

struct lsm_options {
    bool create_if_missing;         /* default true */
    bool error_if_exists;           /* default false */
    uint64_t write_buffer_size;     /* memtable bytes; default 8 MiB */
    uint32_t max_immutable;         /* immutable memtables waiting for flush; default 2 */
    uint32_t l0_compaction_trigger; /* default 4 */
    uint32_t l0_stop_trigger;       /* writes stall at this many L0 tables; default 20 */
    uint64_t max_bytes_base;        /* L1 target size; L(n+1) = ratio * L(n); default 64 MiB */
    uint32_t level_ratio;           /* default 10 */
    uint64_t target_file_size;      /* compaction output tables; default 8 MiB */
    uint64_t block_cache_bytes;     /* default 64 MiB; 0 disables the cache */
    /* Read uncompressed table blocks in place from a read-only mapping (as
     * LevelDB does by default): no copy, no system call, no block cache; the
     * OS page cache holds them and checksums are verified on first use.
     * Default true. Compressed blocks still use the block cache. */
    bool use_mmap_reads;
    uint32_t block_size;            /* default 4096 */
    uint32_t bloom_bits_per_key;    /* default 10; 0 disables filters */
    int compression;                /* enum sst_compression; default none */
    enum lsm_wal_sync wal_sync;     /* default LSM_WAL_SYNC_ALWAYS */
    uint32_t wal_batch_window_us;   /* LSM_WAL_SYNC_BATCH only; default 2000 */
    /*
     * Called by the background thread before a flush writes a memtable to a
     * table, that is before writes that skipped the WAL become durable in
     * tables (also for the final flush of lsm_close). The server applies
     * Raft entries with skip_wal and keeps the shard's applied index in the
     * same batches, so it must make its Raft log durable up to what it has
     * applied before the LSM persists that index: pass a function that syncs
     * the log (raftlog_sync). A non-OK status fails the flush (a background
     * error that is retried). NULL: nothing to do. Called without engine
     * locks held; it must not call into this database.
     */
    nk_status (*before_flush)(void *arg);
    void *before_flush_arg;
    /* Clock for expiry, ms since the epoch; NULL: nk_wall_ms. Tests inject one. */
    uint64_t (*clock_ms)(void *ctx);
    void *clock_ctx;
    /* A clock per key, ms since the epoch; when set it replaces clock_ms for
     * every expiry decision (reads, iterators, compaction). A replicated
     * state machine sets it to its replicated time, so that whether a record
     * is visible, or dropped by compaction, never depends on a node's wall
     * clock (docs/format/kv-state.md). Called concurrently from any thread;
     * must be cheap and must never go backwards for a key. */
    uint64_t (*key_clock_ms)(void *ctx, struct nk_slice user_key);
    void *key_clock_ctx;
    /*
     * Listener for background work (observability): called once per finished
     * flush, compaction or trivial move and once per write stall (when the
     * stalled write goes on). May be called with engine locks held, from the
     * background thread or a writer: it must be quick and must not call into
     * this database. NULL: nobody listens.
     */
    void (*on_event)(void *arg, const struct lsm_event *e);
    void *on_event_arg;
};

void lsm_options_default(struct lsm_options *o);

/* ------------------------------------------------------------ write batch */

/*
 * An atomic group of puts and deletes: all of it is applied, with
 * consecutive sequence numbers, or none of it (also across a crash).
 * Encoding: docs/format/manifest.md ("write batch"); it is also the WAL
 * record payload.
 */
struct lsm_batch {
    struct nk_buf rep; /* header (sequence, count) + records */
    uint32_t count;
    uint64_t user_bytes; /* sum of key and value lengths, for stats */
};

void lsm_batch_init(struct lsm_batch *b);
void lsm_batch_free(struct lsm_batch *b);
void lsm_batch_clear(struct lsm_batch *b);
/* expire_at_ms == 0: never expires. Oversized key/value: NK_INVALID_ARGUMENT. */
nk_status lsm_batch_put(struct lsm_batch *b, struct nk_slice key, struct nk_slice value,
                        uint64_t expire_at_ms);
nk_status lsm_batch_delete(struct lsm_batch *b, struct nk_slice key);
static inline uint32_t lsm_batch_count(const struct lsm_batch *b)
{
    return b->count;
}
/* After a successful lsm_write: the sequence number of the batch's first
 * record (its last is that + count - 1). Compare with
 * lsm_persisted_sequence() to learn when an unlogged batch is on disk. */
static inline uint64_t lsm_batch_sequence(const struct lsm_batch *b)
{
    return nk_dec_fixed64(b->rep.data);
}

/* Visits every record of an encoded batch (untrusted bytes: a malformed batch
 * is NK_DATA_LOSS and may have visited a prefix). type: 0 delete, 1 put,
 * 2 put with expiry. */
typedef void (*lsm_batch_fn)(void *ctx, uint64_t seq, unsigned type, struct nk_slice key,
                             struct nk_slice value, uint64_t expire_at_ms);
nk_status lsm_batch_decode(struct nk_slice rep, uint64_t *seq, uint32_t *count, lsm_batch_fn fn,
                           void *ctx);

/* --------------------------------------------------------------- database */

struct lsm_db;
struct lsm_snapshot;

struct lsm_write_options {
    bool skip_wal; /* not logged: lost by a crash before its memtable is flushed */
    bool sync;     /* fdatasync the WAL even when wal_sync is OS */
    bool no_stall; /* fail with NK_RESOURCE_EXHAUSTED instead of waiting for room */
};

struct lsm_read_options {
    const struct lsm_snapshot *snapshot; /* NULL: the latest state */
};

/* Opens (creating with create_if_missing) the database in dir. The directory
 * is locked (flock) against other processes. */
nk_status lsm_open(const char *dir, const struct lsm_options *opt, struct lsm_db **out);
/* Stops the background thread, flushes memtables holding writes that skipped
 * the WAL, and frees everything. Outstanding snapshots and iterators must be
 * released first. NULL is fine. */
void lsm_close(struct lsm_db *db);
/* The same, but says whether the final flush failed (after one more attempt,
 * whatever the background retry schedule): then writes that skipped the WAL
 * since the last flush are not on disk, and the status says why (the server
 * then exits non-zero). The database is closed and freed either way. */
nk_status lsm_close_checked(struct lsm_db *db);

/*
 * True when a write now would soon have to wait for room (level 0 one table
 * short of its stop trigger, or every immutable slot taken and the active
 * memtable half full). A caller that must never wait (the node's Ready loop,
 * whose applies cannot be refused) stops taking new work while it holds.
 * Thread-safe; cheap.
 */
bool lsm_write_would_stall(struct lsm_db *db);

/* wo may be NULL (defaults: logged, no extra sync, stall when full). */
nk_status lsm_write(struct lsm_db *db, const struct lsm_write_options *wo, struct lsm_batch *b);
nk_status lsm_put(struct lsm_db *db, const struct lsm_write_options *wo, struct nk_slice key,
                  struct nk_slice value, uint64_t expire_at_ms);
nk_status lsm_delete(struct lsm_db *db, const struct lsm_write_options *wo, struct nk_slice key);

/*
 * Point read. *found is false when the key is absent, deleted or expired.
 * Otherwise its value replaces value's contents and *expire_at_ms (may be
 * NULL) gets its expiry (0: none). ro may be NULL. Corruption: NK_DATA_LOSS.
 */
nk_status lsm_get(struct lsm_db *db, const struct lsm_read_options *ro, struct nk_slice key,
                  struct nk_buf *value, bool *found, uint64_t *expire_at_ms);

/* A consistent point-in-time view; release every snapshot taken. */
const struct lsm_snapshot *lsm_snapshot_new(struct lsm_db *db);
void lsm_snapshot_release(struct lsm_db *db, const struct lsm_snapshot *s);
uint64_t lsm_snapshot_sequence(const struct lsm_snapshot *s);

/* --------------------------------------------------------------- iterator */

struct lsm_iter_options {
    const struct lsm_snapshot *snapshot; /* NULL: the state when the iterator is made */
    struct nk_slice lower;               /* inclusive; data == NULL: unbounded */
    struct nk_slice upper;               /* exclusive; data == NULL: unbounded */
    struct nk_slice prefix;              /* data != NULL: only keys with this prefix */
};

struct lsm_iter;

/* A forward iterator over live (not deleted, not expired) keys in order.
 * opt may be NULL. It starts unpositioned: call seek_first or seek. */
nk_status lsm_iter_new(struct lsm_db *db, const struct lsm_iter_options *opt,
                       struct lsm_iter **out);
void lsm_iter_free(struct lsm_iter *it);
void lsm_iter_seek_first(struct lsm_iter *it);
/* First key >= key (and within the bounds). */
void lsm_iter_seek(struct lsm_iter *it, struct nk_slice key);
void lsm_iter_next(struct lsm_iter *it);
bool lsm_iter_valid(const struct lsm_iter *it);
struct nk_slice lsm_iter_key(const struct lsm_iter *it);
struct nk_slice lsm_iter_value(const struct lsm_iter *it);
uint64_t lsm_iter_expire_at(const struct lsm_iter *it); /* 0: none */
/* Not OK when a read failed (the iterator is then invalid); caller frees. */
nk_status lsm_iter_status(const struct lsm_iter *it);

/* ------------------------------------------------------------ maintenance */

/* Makes the active memtable immutable and waits until every immutable
 * memtable is on disk as a table. */
nk_status lsm_flush(struct lsm_db *db);
/* Flushes, then compacts the tables overlapping [begin, end] (NULL:
 * unbounded) of every level into the next, down to one level below the
 * deepest holding such data, dropping deleted, expired and overwritten
 * records that no snapshot needs. Waits. */
nk_status lsm_compact_range(struct lsm_db *db, const struct nk_slice *begin,
                            const struct nk_slice *end);

/* Pauses (true) or resumes (false) flushes and compactions after the work
 * in progress. While paused, writes fill the memtables and then stall (or
 * fail with no_stall); lsm_flush and lsm_compact_range wait. lsm_close
 * resumes. For maintenance windows and tests of the stall path. */
void lsm_pause_background(struct lsm_db *db, bool paused);

/* Sequence number of the last write applied (visible to new reads). */
uint64_t lsm_last_sequence(struct lsm_db *db);
/* Every write with a sequence number <= this is in tables: it survives a
 * crash even if it skipped the WAL. */
uint64_t lsm_persisted_sequence(struct lsm_db *db);

/* ------------------------------------------------------------------ health */

/*
 * Degraded operation. A flush or compaction that fails (disk full, I/O
 * error) is retried by the background thread, after 50 ms doubling to 2 s;
 * until one succeeds, writes fail with the failure's code
 * (NK_RESOURCE_EXHAUSTED for a full disk) and a message naming the
 * database and the file, and reads go on. A table found damaged by a
 * compaction (checksum) is quarantined: kept as quarantine/<number>.sst
 * (never deleted), dropped from the database, and reported here with its key
 * range; point reads that would need it fail with NK_DATA_LOSS naming it
 * (iterators do not check: a scan over the range misses its keys), the rest
 * of the database is read and written as usual. The owner restores the range
 * (a server: from a healthy replica) and then calls lsm_quarantine_resolve.
 */
struct lsm_quarantined_table {
    uint64_t number;
    int level;      /* -1 when found at open (quarantined in an earlier run) */
    char *path;     /* where the table is kept */
    bool range_known;
    struct nk_buf smallest, largest; /* user keys of the affected range, inclusive */
    char *reason;
};

struct lsm_health {
    bool writable;           /* false while a background failure stands */
    enum nk_code error_code; /* NK_CODE_OK when none */
    char *error;             /* the failure (names the file); NULL when none */
    uint64_t error_since_ms; /* nk_mono_ms() when it first happened */
    uint64_t retries;        /* background retries since */
    size_t nquarantined;
    struct lsm_quarantined_table *quarantined;
};

/* A snapshot of the database's health; free with lsm_health_free. */
void lsm_health(struct lsm_db *db, struct lsm_health *out);
void lsm_health_free(struct lsm_health *h);
/* The caller has rewritten the user keys [lo, hi) (for instance installed a
 * shard snapshot from a replica): quarantined tables whose whole range lies
 * inside stop being reported and refused (their files are renamed to
 * *.resolved and kept). Returns how many. A table whose range only overlaps
 * keeps being reported, but point reads in [lo, hi) are served again (in
 * this run: after a restart the owner restores and resolves again). */
uint32_t lsm_quarantine_resolve(struct lsm_db *db, struct nk_slice lo, struct nk_slice hi);

struct lsm_level_stats {
    uint32_t files;
    uint64_t bytes;
    uint64_t compaction_bytes_read;    /* input read by compactions into this level */
    uint64_t compaction_bytes_written; /* tables written into this level */
};

struct lsm_stats {
    struct lsm_level_stats level[LSM_NUM_LEVELS];
    uint64_t user_bytes_written; /* keys + values of every write */
    uint64_t wal_bytes_written;
    uint64_t flush_bytes_written;      /* L0 tables written by flushes */
    uint64_t compaction_bytes_read;    /* sum over levels */
    uint64_t compaction_bytes_written; /* sum over levels (trivial moves write nothing) */
    uint64_t flushes, compactions, trivial_moves;
    uint64_t write_stalls; /* writes that had to wait for room */
    /* (wal + flush + compaction bytes written) / user bytes; 0 before any write */
    double write_amplification;
    uint64_t memtable_bytes;  /* active + immutable */
    uint32_t immutable_memtables;
    uint64_t last_sequence, persisted_sequence;
    uint64_t block_cache_usage, block_cache_hits, block_cache_misses;
};

void lsm_get_stats(struct lsm_db *db, struct lsm_stats *out);

#endif /* NK_LSM_H */
