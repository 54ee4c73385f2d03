/*
 * kv/internal.h: what the files of the KV state machine share (store.c:
 * single writes and reads; batch.c: atomic batches; scan.c: range scans).
 * Not a public header.
 */
#ifndef NK_KV_INTERNAL_H
#define NK_KV_INTERNAL_H

#include "kv/kv.h"
#include "lsm/lsm.h"

/* LSM key namespaces after the shard id (docs/format/kv-state.md). */
#define NS_META 0x00
#define NS_DATA 0x01
#define NS_IDEM 0x02
#define NS_FEED 0x07 /* change feed: [index be64] -> record (feed.c) */
#define NS_EXP  0x08 /* expiry index: [expiry be64][key] -> version (feed.c) */
/* Record formats: REC_V1 value and single-write idempotency records,
 * REC_BATCH a batch's idempotency record (docs/format/batch.md). */
#define REC_V1    1
#define REC_BATCH 2
#define MAX_LSM_KEY (3 + KV_MAX_KEY)

#define NSHARDS_MAX 65536

struct kv_store {
    struct lsm_db *db;
    struct kv_options opt;
    /* Each shard's replicated time (the running maximum of its applied
     * commands' timestamps), as the applied record holds it; loaded on first
     * use. Only the apply thread touches these. */
    uint64_t *time;
    uint8_t *time_loaded;
    /* The per-op results of the last applied batch (apply thread only);
     * kv_result.batch points here until the next apply. */
    struct kv_batch_result *bres;
    /* The feed record being built for the entry in apply (feed.c). */
    struct nk_buf fb;
    uint32_t fb_count;
    /* Per shard (apply thread only): the earliest expiry in the expiry
     * index (0: not loaded yet; UINT64_MAX: none), and the feed's size for
     * retention (loaded on first use). */
    uint64_t *next_exp;
    struct kv_feed_stat *fstat;
};

struct kv_feed_stat {
    bool loaded;
    uint64_t count, bytes, oldest_index, oldest_time;
};

struct value_rec {
    uint64_t term, index, expiry_ms;
    struct nk_slice value;
};

extern const struct lsm_write_options KV_APPLY_WO;

/* [shard be16][ns][k]; returns the length (3 + k.len). */
size_t kv_make_key(uint8_t *out, uint16_t shard, uint8_t ns, struct nk_slice k);
bool kv_decode_value(struct nk_slice b, struct value_rec *v);
void kv_encode_idem(struct nk_buf *b, uint64_t fp, uint64_t ts, const struct kv_result *res);
nk_status kv_put_applied(struct lsm_batch *b, uint16_t shard, uint64_t term, uint64_t index,
                         uint64_t time_ms);
/* The shard's applied record as of snap (NULL: latest). */
nk_status kv_read_applied_at(struct kv_store *s, const struct lsm_snapshot *snap,
                             uint16_t shard, uint64_t *term, uint64_t *index, uint64_t *time_ms);
nk_status kv_shard_time_cached(struct kv_store *s, uint16_t shard, uint64_t *time_ms);
/* The idempotency record of a key: *is_batch when it is a batch's record
 * (res then left zero); raw (may be NULL) receives the record's bytes. */
nk_status kv_idem_get(struct kv_store *s, uint16_t shard, struct nk_slice idem, bool *found,
                      uint64_t *fp, uint64_t *ts, struct kv_result *res, bool *is_batch,
                      struct nk_buf *raw);

/* feed.c: building an entry's feed record, expiring due keys, retention */
void kv_feed_begin(struct kv_store *s);
void kv_feed_put(struct kv_store *s, struct nk_slice key, struct nk_slice value, uint64_t expiry);
void kv_feed_delete(struct kv_store *s, struct nk_slice key);
nk_status kv_feed_finish(struct kv_store *s, struct lsm_batch *b, uint16_t shard, uint64_t term,
                         uint64_t index, uint64_t time_ms);
nk_status kv_exp_note(struct kv_store *s, struct lsm_batch *b, uint16_t shard,
                      struct nk_slice key, uint64_t expiry, uint64_t term, uint64_t index);
nk_status kv_expire_due(struct kv_store *s, struct lsm_batch *b, uint16_t shard, uint64_t now);
nk_status kv_feed_trim(struct kv_store *s, uint16_t shard, uint64_t now);
/* The end of every apply: the entry's feed record joins its batch, the batch
 * is written, the shard's time moves to now, then the feed's retention. */
nk_status kv_apply_commit(struct kv_store *s, struct lsm_batch *b, uint16_t shard, uint64_t term,
                          uint64_t index, uint64_t now);
nk_status kv_apply_tick(struct kv_store *s, uint16_t shard, uint64_t term, uint64_t index,
                        const uint8_t *data, struct kv_result *res);

/* batch.c */
nk_status kv_apply_batch(struct kv_store *s, uint16_t shard, uint64_t term, uint64_t index,
                         const uint8_t *data, size_t n, struct kv_result *res);

#endif /* NK_KV_INTERNAL_H */
