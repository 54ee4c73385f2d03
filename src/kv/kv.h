/*
 * kv: the replicated key-value state machine of a shard.
 *
 * A client write becomes a command (kv_cmd), encoded into the data of one
 * Raft entry (docs/format/commands.md). Every replica decodes and applies the
 * committed commands of a shard in log order; apply is deterministic: it
 * depends only on the command, the entry's (term, index) and the state
 * written by earlier entries, never on the local clock. Time enters only
 * through the command's timestamp, taken from the leader's clock when it
 * proposed the write (TTL expiry, idempotency retention).
 *
 * This header has two halves: the command codec (pure functions over bytes;
 * the decoder takes untrusted bytes and rejects malformed input with
 * NK_INVALID_ARGUMENT / NK_DATA_LOSS), and the state machine over the node's
 * LSM (see the second half).
 *
 * Memory: a decoded kv_cmd borrows its slices from the input bytes.
 * Thread-safety: the codec is pure and thread-safe.
 */
#ifndef NK_KV_H
#define NK_KV_H

#include "util/util.h"

/* Limits of CONTRACT.md, plus the idempotency key bound of this server. */
#define KV_MAX_KEY       1024u
#define KV_MAX_VALUE     (1024u * 1024u)
#define KV_MAX_REQUEST   (2u * 1024u * 1024u)
#define KV_MAX_IDEM_KEY  512u
#define KV_CMD_VERSION   2
/* Version 2 commands hold the timestamp at bytes [2, 10). */
#define KV_CMD_STAMP_END 10

enum kv_op { KV_OP_PUT = 1, KV_OP_DELETE = 2 };

/* A write as proposed to Raft. */
struct kv_cmd {
    enum kv_op op;
    uint64_t timestamp_ms;  /* leader's shard time at proposal (kv_cmd_stamp) */
    struct nk_slice key;    /* 1..KV_MAX_KEY bytes */
    struct nk_slice value;  /* PUT only, <= KV_MAX_VALUE */
    uint64_t ttl_ms;        /* PUT only; 0: no expiry */
    bool has_if_match;      /* CAS on PUT or DELETE */
    uint64_t if_match_term, if_match_index;
    bool if_not_exists;     /* PUT only */
    struct nk_slice idem_key; /* empty: none */
};

/*
 * Checks a request against the limits; the status message names the limit
 * ("key is 1025 bytes; the limit is 1024"). Used by the API before proposing
 * and by the decoder.
 */
nk_status kv_cmd_validate(const struct kv_cmd *c);

/* Appends the encoding of c to out. c must be valid. */
void kv_cmd_encode(const struct kv_cmd *c, struct nk_buf *out);

/*
 * Sets the timestamp of an encoded command in place (the leader stamps every
 * proposal with its shard's monotonic time just before proposing it). False
 * when data is not a current-version command.
 */
bool kv_cmd_stamp(uint8_t *data, size_t n, uint64_t timestamp_ms);
/* (Both also accept a batch command, whose timestamp sits at the same place.) */
/* Reads the timestamp of an encoded current-version command. */
bool kv_cmd_timestamp(const uint8_t *data, size_t n, uint64_t *timestamp_ms);

/* Decodes untrusted bytes (version 1 or 2); slices in *c point into data. */
nk_status kv_cmd_decode(const void *data, size_t n, struct kv_cmd *c);

/*
 * Fingerprint of a command's parameters for idempotency: two requests with
 * the same idempotency key are "the same request" when their fingerprints
 * match (op, key, value, ttl_ms, if_match, if_not_exists; not the timestamp).
 */
uint64_t kv_cmd_fingerprint(const struct kv_cmd *c);

/* Absolute expiry (ms since the epoch) of a PUT; 0 when it has no TTL. */
static inline uint64_t kv_cmd_expiry_ms(const struct kv_cmd *c)
{
    return c->ttl_ms ? c->timestamp_ms + c->ttl_ms : 0;
}

struct kv_batch_result;

/* The outcome of applying one command; what the client is told. */
struct kv_result {
    enum nk_code code;        /* OK, FAILED_PRECONDITION (CAS), ALREADY_EXISTS, INVALID_ARGUMENT */
    uint64_t term, index;     /* Version of the entry (also for failures) */
    bool tombstoned;          /* DELETE: a live value was removed */
    bool has_current;         /* CAS failure on an existing key: its version */
    uint64_t cur_term, cur_index;
    uint64_t time_ms;         /* the shard's replicated time after the entry */
    /* A batch (code OK: it was evaluated, applied or not): its per-op
     * results, owned by the kv_store and valid until its next apply. */
    const struct kv_batch_result *batch;
};

/* ------------------------------------------------------------ batches */

/*
 * A batch command (docs/format/batch.md): puts and deletes on keys of one
 * shard, applied as one entry, all or nothing. Its first byte is
 * KV_BATCH_TAG, which no single command (version 1 or 2) and no vector
 * command (0x56) starts with; bytes [2, 10) hold the timestamp as in a
 * version 2 command, so kv_cmd_stamp stamps both.
 */
#define KV_BATCH_TAG      0x42 /* 'B' */
#define KV_BATCH_FORMAT   1
#define KV_BATCH_MAX_OPS  1000u
/* sum of key and value bytes of a batch: the request limit of CONTRACT.md */
#define KV_BATCH_MAX_BYTES KV_MAX_REQUEST

struct kv_batch_op {
    enum kv_op op;
    struct nk_slice key, value;
    uint64_t ttl_ms;
    bool has_if_match;
    uint64_t if_match_term, if_match_index;
    bool if_not_exists;
};

struct kv_batch {
    uint64_t timestamp_ms;
    struct nk_slice idem_key;
    uint32_t n;
    struct kv_batch_op *ops; /* decoded: allocated by kv_batch_decode */
};

/* Checks counts, sizes, each op (as kv_cmd_validate) and that no key
 * appears twice; the message names the op and the limit. */
nk_status kv_batch_validate(const struct kv_batch *b);
void kv_batch_encode(const struct kv_batch *b, struct nk_buf *out);
/* Decodes untrusted bytes; b->ops is allocated (kv_batch_free), slices
 * borrow from data. */
nk_status kv_batch_decode(const void *data, size_t n, struct kv_batch *b);
void kv_batch_free(struct kv_batch *b);
uint64_t kv_batch_fingerprint(const struct kv_batch *b);
static inline bool kv_batch_is_batch(const uint8_t *data, size_t n)
{
    return n > 0 && data[0] == KV_BATCH_TAG;
}

struct kv_batch_op_result {
    enum nk_code code; /* OK; FAILED_PRECONDITION; ALREADY_EXISTS; ABORTED (another op failed) */
    bool tombstoned;
    bool has_current;
    uint64_t cur_term, cur_index;
};

struct kv_batch_result {
    bool applied;
    uint32_t n;
    struct kv_batch_op_result ops[];
};

/* ------------------------------------------------------ the state machine */

/*
 * kv_store: every shard's KV state inside the node's one LSM database
 * (docs/format/kv-state.md). Keys are prefixed with the shard id (big-endian
 * u16) and a namespace byte: 0x00 shard metadata (the applied index), 0x01
 * user data, 0x02 idempotency records. Every apply is one LSM write batch
 * that also records the shard's applied (term, index), written without the
 * LSM's WAL: the Raft log is the durable record, and after a crash a shard
 * replays its log from the applied index the LSM kept.
 *
 * Time: each shard has a replicated time, the running maximum of the
 * timestamps of its applied commands (kept with the applied index). Apply
 * judges expiry and idempotency retention against it, never the local
 * clock; reads (kv_get) judge expiry against the reader's clock. The LSM
 * holding this state must be opened with a key clock (lsm_options.
 * key_clock_ms) that gives, for a key of shard s, a time no later than the
 * replicated time of s as of the state the LSM has persisted: then neither a
 * read inside apply nor a compaction can drop a record that apply would
 * still judge live, on any replica, at any replay (docs/format/kv-state.md).
 *
 * Memory: kv_store borrows the LSM (the caller opens and closes it).
 * Thread-safety: kv_apply* are called by one thread (the node's apply step);
 * kv_get and kv_applied may run concurrently from any thread.
 */
struct lsm_db;

struct kv_options {
    uint64_t idem_retention_ms; /* default 24 h */
    /* change feed retention per shard (docs/watch.md): records, bytes and
     * age of the oldest (by the entries' replicated time); beyond any of
     * them the oldest records go and the shard's feed floor rises */
    uint64_t feed_max_entries; /* default 1000 */
    uint64_t feed_max_bytes;   /* default 1 MiB */
    uint64_t feed_max_age_ms;  /* default 1 h; 0: no age bound */
};

void kv_options_default(struct kv_options *o);

struct kv_store;

nk_status kv_store_open(struct lsm_db *db, const struct kv_options *o, struct kv_store **out);
void kv_store_close(struct kv_store *s);

/*
 * Applies the committed command in `data` (entry term/index) to shard.
 * *res is what the proposer's client is told. A command that does not decode
 * (impossible unless the log is damaged) is applied as a no-op whose result
 * is NK_DATA_LOSS, so every replica still advances identically. The return
 * status reports storage failures only (the replica must stop).
 */
nk_status kv_apply(struct kv_store *s, uint16_t shard, uint64_t term, uint64_t index,
                   const uint8_t *data, size_t n, struct kv_result *res);
/* An entry with no KV command (leader no-op, conf change): records the index. */
nk_status kv_apply_noop(struct kv_store *s, uint16_t shard, uint64_t term, uint64_t index);
/* The shard's applied (term, index) as the LSM holds it; (0, 0) when none. */
nk_status kv_applied(struct kv_store *s, uint16_t shard, uint64_t *term, uint64_t *index);
/* The shard's replicated time (ms since the epoch; 0 before any command).
 * Apply thread only. */
nk_status kv_shard_time(struct kv_store *s, uint16_t shard, uint64_t *time_ms);
/* Forgets what is cached of the shard (its state was replaced: a snapshot). */
void kv_shard_forget(struct kv_store *s, uint16_t shard);
/* The shard an LSM key of this state machine belongs to (for key clocks). */
bool kv_lsm_key_shard(struct nk_slice lsm_key, uint16_t *shard);

/*
 * Reads a live value at time now_ms. *found false: missing or expired. value
 * receives the bytes; *term and *index the Version that wrote it.
 */
nk_status kv_get(struct kv_store *s, uint16_t shard, struct nk_slice key, uint64_t now_ms,
                 struct nk_buf *value, uint64_t *term, uint64_t *index, bool *found);

/*
 * Looks up a stored idempotency result for a retry at now_ms: *found is true
 * when the key has a record within the retention window. *same reports
 * whether its fingerprint matches. Used by the API to answer retries without
 * a new proposal; apply performs the same check authoritatively.
 */
nk_status kv_idem_lookup(struct kv_store *s, uint16_t shard, struct nk_slice idem_key,
                         uint64_t fingerprint, uint64_t now_ms, bool *found, bool *same,
                         struct kv_result *res);

/* The LSM key prefix of a shard's user data ([shard be16][0x01]); 3 bytes. */
void kv_data_prefix(uint16_t shard, uint8_t out[3]);

/* ------------------------------------------------------------ range scans */

/*
 * kv_scan: one page of a key-ordered scan over several shards (scan.c).
 * Every shard's user data is a contiguous LSM key range, but a user key
 * range is spread over all shards (keys are hash-distributed), so a page
 * merges one LSM iterator per shard (a binary heap on the user key), all at
 * one LSM snapshot taken for the page and released before it returns: no
 * snapshot or iterator outlives a page. A page ends at `limit` entries, at
 * `max_bytes` of keys and values (at least one entry), or after examining
 * `max_examined` records (expired ones included), whichever comes first;
 * then `more` is set and `resume_after` is the last key examined, from which
 * the next page starts (exclusively).
 *
 * Expiry is judged against now_ms, the reader's clock, as kv_get does.
 * Thread-safety: as kv_get (any thread, concurrently with apply).
 */
struct kv_scan_options {
    struct nk_slice start;  /* inclusive; len 0: unbounded */
    struct nk_slice end;    /* exclusive; len 0: unbounded */
    struct nk_slice prefix; /* len 0: none */
    bool has_after;         /* resume strictly after `after` */
    struct nk_slice after;
    bool keys_only;
    uint32_t limit;         /* >= 1 */
    uint64_t max_bytes;
    uint64_t max_examined;  /* >= 1 */
    uint64_t now_ms;
    const uint16_t *shards; /* ascending, distinct */
    uint32_t nshards;
};

struct kv_scan_entry {
    size_t key_off, key_len, val_off, val_len; /* into kv_scan_page.data */
    uint16_t shard;
    uint64_t term, index, expiry_ms;
};

struct kv_scan_revision {
    uint16_t shard;
    uint64_t term, index; /* the shard's applied entry at the page's snapshot */
};

struct kv_scan_page {
    struct nk_buf data;
    struct kv_scan_entry *entries;
    uint32_t n, cap;
    struct kv_scan_revision *revs; /* one per scanned shard */
    uint32_t nrevs;
    bool more;
    struct nk_buf resume_after;
    uint64_t examined;
};

void kv_scan_page_init(struct kv_scan_page *p);
void kv_scan_page_free(struct kv_scan_page *p);
nk_status kv_scan(struct kv_store *s, const struct kv_scan_options *o, struct kv_scan_page *out);

/*
 * The k-way merge underneath kv_scan, usable alone (tests): the records of
 * the given shards inside the bounds, in user-key order, at one snapshot.
 */
struct kv_merge_iter;
struct lsm_snapshot;
nk_status kv_merge_new(struct kv_store *s, const struct lsm_snapshot *snap,
                       const struct kv_scan_options *o, struct kv_merge_iter **out);
void kv_merge_free(struct kv_merge_iter *m);
bool kv_merge_valid(const struct kv_merge_iter *m);
/* The current record (user key, decoded value record fields, shard). */
struct nk_slice kv_merge_key(const struct kv_merge_iter *m);
struct nk_slice kv_merge_value(const struct kv_merge_iter *m);
uint16_t kv_merge_shard(const struct kv_merge_iter *m);
void kv_merge_version(const struct kv_merge_iter *m, uint64_t *term, uint64_t *index,
                      uint64_t *expiry_ms);
/* Whether the current record has expired by the reader's clock (now_ms):
 * the merge yields them (the LSM hides only what replicated time expired)
 * so that its caller can count them against its work bound. */
bool kv_merge_expired(const struct kv_merge_iter *m);
void kv_merge_next(struct kv_merge_iter *m);
nk_status kv_merge_status(const struct kv_merge_iter *m);

/*
 * A time command (docs/format/commands.md): no change of its own, only the
 * leader's time, so that a quiet shard whose keys are due expires them
 * (with their EXPIRE events). Bytes: KV_TICK_TAG, KV_TICK_FORMAT, then the
 * timestamp (u64 little-endian) at [2, 10) like every stampable command.
 */
#define KV_TICK_TAG    0x54 /* 'T' */
#define KV_TICK_FORMAT 1
#define KV_TICK_LEN    10
void kv_tick_encode(uint8_t out[KV_TICK_LEN], uint64_t timestamp_ms);
static inline bool kv_is_tick(const uint8_t *data, size_t n)
{
    return n == KV_TICK_LEN && data[0] == KV_TICK_TAG;
}
/*
 * The earliest expiry among the shard's TTL keys as apply knows it (0: not
 * known yet, UINT64_MAX: none). Apply thread only: the leader's loop asks
 * it to decide whether a quiet shard needs a time command.
 */
uint64_t kv_next_expiry(struct kv_store *s, uint16_t shard);

/* ---------------------------------------------------------- change feed */

/*
 * The change feed of a shard (feed.c, docs/watch.md): one record per applied
 * entry that changed something, under the entry's index, written in the
 * entry's own atomic write. Reading it: any thread, concurrently with apply.
 */
#define KV_EV_PUT    1
#define KV_EV_DELETE 2
#define KV_EV_EXPIRE 3
/* events in one record: a batch's ops plus the expiries it carried out */
#define KV_EXPIRE_PER_ENTRY 256u
#define KV_FEED_MAX_EVENTS  (KV_BATCH_MAX_OPS + KV_EXPIRE_PER_ENTRY)

struct kv_feed_record {
    uint64_t index, term, time_ms;
    uint32_t count;
    struct nk_slice events; /* kv_feed_next_event over these bytes */
};

struct kv_feed_event {
    uint8_t kind; /* KV_EV_* */
    struct nk_slice key, value;
    uint64_t expiry_ms; /* PUT: 0 none */
};

/* Decodes a stored record (untrusted: false when malformed). */
bool kv_feed_decode(struct nk_slice rec, struct kv_feed_record *out);
/* The next event of a record's events; false at the end or when malformed. */
struct nk_reader;
bool kv_feed_next_event(struct nk_reader *r, struct kv_feed_event *e);
/* fn for each record with after_index < index <= upto_index, in order;
 * fn returns false to stop. Slices are valid during the call only. */
typedef bool (*kv_feed_fn)(void *ctx, const struct kv_feed_record *rec);
nk_status kv_feed_read(struct kv_store *s, uint16_t shard, uint64_t after_index,
                       uint64_t upto_index, kv_feed_fn fn, void *ctx);
/* The shard's feed floor: events of entries <= floor may be gone (a watch
 * resuming from a revision below it is told "compacted"). */
nk_status kv_feed_floor(struct kv_store *s, uint16_t shard, uint64_t *floor);

#endif /* NK_KV_H */
