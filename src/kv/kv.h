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

/* The outcome of applying one command; what the client is told. */
struct kv_result {
    enum nk_code code;        /* OK, FAILED_PRECONDITION (CAS), ALREADY_EXISTS, INVALID_ARGUMENT */
    uint64_t term, index;     /* Version of the entry (also for failures) */
    bool tombstoned;          /* DELETE: a live value was removed */
    bool has_current;         /* CAS failure on an existing key: its version */
    uint64_t cur_term, cur_index;
    uint64_t time_ms;         /* the shard's replicated time after the entry */
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

#endif /* NK_KV_H */
