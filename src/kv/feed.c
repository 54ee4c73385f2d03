/*
 * feed.c: a shard's change feed and its expiry index (docs/watch.md,
 * docs/format/kv-state.md).
 *
 *   [shard be16][0x07][index be64]          -> feed record of entry `index`
 *   [shard be16][0x08][expiry be64][key]    -> varint term | varint index
 *                                              (the put that set the TTL)
 *   [shard be16][0x00]['F']                 -> varint floor (feed retention)
 *
 * Feed record: u8 1 | varint term | varint time_ms | varint count | events;
 * event: u8 kind (1 put, 2 delete, 3 expire) | varint key_len | key
 *        | put only: varint expiry_ms | varint value_len | value.
 *
 * Apply builds one record per entry that changed something (kv_feed_*) and
 * writes it in the entry's own LSM batch, so the feed is replicated and
 * durable exactly like the data. Before a command is applied, the keys
 * whose expiry the shard's time has reached are expired (kv_expire_due):
 * each gets an EXPIRE event and is deleted, in the same batch; at most
 * KV_EXPIRE_PER_ENTRY per entry (the rest at the next entries). The expiry
 * index entry names the version of the put that set the TTL, so an entry
 * made stale by a later put or delete is recognised and dropped.
 *
 * Retention (kv_feed_trim) is local, like Raft log compaction: it deletes a
 * shard's oldest records beyond the configured count, bytes or age and
 * raises the shard's floor; it never changes what a record says, so every
 * replica that holds a record holds the same one.
 */
#include <stdlib.h>

#include "kv/internal.h"

#define FEED_FORMAT 1

/* ------------------------------------------------------------ building */

void kv_feed_begin(struct kv_store *s)
{
    nk_buf_clear(&s->fb);
    s->fb_count = 0;
}

static void ev_head(struct kv_store *s, uint8_t kind, struct nk_slice key)
{
    nk_buf_put_u8(&s->fb, kind);
    nk_buf_put_lenbytes(&s->fb, key.data, key.len);
    s->fb_count++;
}

void kv_feed_put(struct kv_store *s, struct nk_slice key, struct nk_slice value, uint64_t expiry)
{
    ev_head(s, KV_EV_PUT, key);
    nk_buf_put_varint64(&s->fb, expiry);
    nk_buf_put_lenbytes(&s->fb, value.data, value.len);
}

void kv_feed_delete(struct kv_store *s, struct nk_slice key)
{
    ev_head(s, KV_EV_DELETE, key);
}

static void feed_key(uint8_t out[11], uint16_t shard, uint64_t index)
{
    nk_enc_be16(out, shard);
    out[2] = NS_FEED;
    nk_enc_be64(out + 3, index);
}

nk_status kv_feed_finish(struct kv_store *s, struct lsm_batch *b, uint16_t shard, uint64_t term,
                         uint64_t index, uint64_t time_ms)
{
    if (s->fb_count == 0)
        return NK_OK;
    struct nk_buf rec;
    nk_buf_init(&rec);
    nk_buf_reserve(&rec, s->fb.len + 32);
    nk_buf_put_u8(&rec, FEED_FORMAT);
    nk_buf_put_varint64(&rec, term);
    nk_buf_put_varint64(&rec, time_ms);
    nk_buf_put_varint64(&rec, s->fb_count);
    nk_buf_append(&rec, s->fb.data, s->fb.len);
    uint8_t k[11];
    feed_key(k, shard, index);
    nk_status st = lsm_batch_put(b, nk_slice_make(k, sizeof k), nk_slice_make(rec.data, rec.len),
                                 0);
    struct kv_feed_stat *fs = &s->fstat[shard];
    if (nk_ok(st) && fs->loaded) {
        if (fs->count == 0) {
            fs->oldest_index = index;
            fs->oldest_time = time_ms;
        }
        fs->count++;
        fs->bytes += rec.len;
    }
    nk_buf_free(&rec);
    return st;
}

/* ------------------------------------------------------------- reading */

bool kv_feed_decode(struct nk_slice rec, struct kv_feed_record *out)
{
    struct nk_reader r;
    nk_reader_init(&r, rec.data, rec.len);
    uint8_t fmt = 0;
    nk_reader_u8(&r, &fmt);
    uint64_t count = 0;
    nk_reader_varint64(&r, &out->term);
    nk_reader_varint64(&r, &out->time_ms);
    nk_reader_varint64(&r, &count);
    if (r.bad || fmt != FEED_FORMAT || count == 0 || count > KV_FEED_MAX_EVENTS)
        return false;
    out->count = (uint32_t)count;
    out->events = nk_slice_make(r.p, nk_reader_left(&r));
    return true;
}

bool kv_feed_next_event(struct nk_reader *r, struct kv_feed_event *e)
{
    memset(e, 0, sizeof *e);
    uint8_t kind = 0;
    if (!nk_reader_u8(r, &kind) || !nk_reader_lenbytes(r, KV_MAX_KEY, &e->key) ||
        e->key.len == 0 || (kind != KV_EV_PUT && kind != KV_EV_DELETE && kind != KV_EV_EXPIRE))
        return false;
    e->kind = kind;
    if (kind == KV_EV_PUT &&
        (!nk_reader_varint64(r, &e->expiry_ms) ||
         !nk_reader_lenbytes(r, KV_MAX_REQUEST, &e->value)))
        return false;
    return !r->bad;
}

nk_status kv_feed_floor(struct kv_store *s, uint16_t shard, uint64_t *floor)
{
    uint8_t k[4];
    kv_make_key(k, shard, NS_META, nk_slice_str("F"));
    struct nk_buf v;
    nk_buf_init(&v);
    bool found = false;
    nk_status st = lsm_get(s->db, NULL, nk_slice_make(k, 4), &v, &found, NULL);
    *floor = 0;
    if (nk_ok(st) && found) {
        struct nk_reader r;
        nk_reader_init(&r, v.data, v.len);
        nk_reader_varint64(&r, floor);
        if (r.bad)
            st = nk_status_make(NK_DATA_LOSS, "shard %u: feed floor record is malformed", shard);
    }
    nk_buf_free(&v);
    return st;
}

nk_status kv_feed_read(struct kv_store *s, uint16_t shard, uint64_t after_index,
                       uint64_t upto_index, kv_feed_fn fn, void *ctx)
{
    uint8_t lo[11], hi[11];
    feed_key(lo, shard, after_index + 1);
    feed_key(hi, shard, upto_index == UINT64_MAX ? UINT64_MAX : upto_index + 1);
    struct lsm_iter_options io = {.lower = nk_slice_make(lo, sizeof lo),
                                  .upper = nk_slice_make(hi, sizeof hi)};
    struct lsm_iter *it = NULL;
    NK_TRY(lsm_iter_new(s->db, &io, &it));
    nk_status st = NK_OK;
    for (lsm_iter_seek_first(it); lsm_iter_valid(it); lsm_iter_next(it)) {
        struct nk_slice k = lsm_iter_key(it);
        if (k.len != sizeof lo)
            continue;
        uint64_t index = nk_dec_be64(k.data + 3);
        struct kv_feed_record rec;
        if (!kv_feed_decode(lsm_iter_value(it), &rec)) {
            st = nk_status_make(NK_DATA_LOSS, "shard %u: feed record %llu is malformed", shard,
                                (unsigned long long)index);
            break;
        }
        rec.index = index;
        if (!fn(ctx, &rec))
            break;
    }
    if (nk_ok(st))
        st = lsm_iter_status(it);
    lsm_iter_free(it);
    return st;
}

/* ------------------------------------------------------------- expiry */

static void exp_key(uint8_t *out, size_t *n, uint16_t shard, uint64_t expiry, struct nk_slice key)
{
    nk_enc_be16(out, shard);
    out[2] = NS_EXP;
    nk_enc_be64(out + 3, expiry);
    memcpy(out + 11, key.data, key.len);
    *n = 11 + key.len;
}

nk_status kv_exp_note(struct kv_store *s, struct lsm_batch *b, uint16_t shard,
                      struct nk_slice key, uint64_t expiry, uint64_t term, uint64_t index)
{
    uint8_t k[11 + KV_MAX_KEY];
    size_t kn;
    exp_key(k, &kn, shard, expiry, key);
    uint8_t v[2 * NK_VARINT64_MAX];
    size_t vn = nk_enc_varint64(v, term);
    vn += nk_enc_varint64(v + vn, index);
    NK_TRY(lsm_batch_put(b, nk_slice_make(k, kn), nk_slice_make(v, vn), 0));
    /* only a known earliest expiry may be lowered: 0 means "not loaded",
     * and the index may hold earlier entries (apply loads it first anyway,
     * in kv_expire_due; a replica's replay must not depend on that order) */
    if (s->next_exp[shard] != 0 && expiry < s->next_exp[shard])
        s->next_exp[shard] = expiry;
    return NK_OK;
}

nk_status kv_expire_due(struct kv_store *s, struct lsm_batch *b, uint16_t shard, uint64_t now)
{
    if (s->next_exp[shard] != 0 && s->next_exp[shard] > now)
        return NK_OK; /* nothing due (UINT64_MAX: nothing at all) */
    uint8_t lo[3], hi[3];
    nk_enc_be16(lo, shard);
    lo[2] = NS_EXP;
    nk_enc_be16(hi, shard);
    hi[2] = NS_EXP + 1;
    struct lsm_iter_options io = {.lower = nk_slice_make(lo, 3), .upper = nk_slice_make(hi, 3)};
    struct lsm_iter *it = NULL;
    NK_TRY(lsm_iter_new(s->db, &io, &it));
    nk_status st = NK_OK;
    uint32_t done = 0;
    uint64_t next = UINT64_MAX;
    struct nk_buf cur;
    nk_buf_init(&cur);
    for (lsm_iter_seek_first(it); lsm_iter_valid(it); lsm_iter_next(it)) {
        struct nk_slice k = lsm_iter_key(it);
        if (k.len < 12)
            continue;
        uint64_t expiry = nk_dec_be64(k.data + 3);
        if (expiry > now || done == KV_EXPIRE_PER_ENTRY) {
            next = expiry;
            break;
        }
        struct nk_slice ukey = nk_slice_make(k.data + 11, k.len - 11);
        struct nk_reader r;
        struct nk_slice v = lsm_iter_value(it);
        nk_reader_init(&r, v.data, v.len);
        uint64_t term = 0, index = 0;
        nk_reader_varint64(&r, &term);
        nk_reader_varint64(&r, &index);
        /* the key expires only if its value is still the one that set this
         * expiry (a later put or delete made the index entry stale) */
        uint8_t dk[MAX_LSM_KEY];
        size_t dkn = kv_make_key(dk, shard, NS_DATA, ukey);
        bool found = false;
        st = lsm_get(s->db, NULL, nk_slice_make(dk, dkn), &cur, &found, NULL);
        if (!nk_ok(st))
            break;
        struct value_rec vr;
        if (found && !r.bad && kv_decode_value(nk_slice_make(cur.data, cur.len), &vr) &&
            vr.term == term && vr.index == index && vr.expiry_ms == expiry) {
            ev_head(s, KV_EV_EXPIRE, ukey);
            st = lsm_batch_delete(b, nk_slice_make(dk, dkn));
            if (!nk_ok(st))
                break;
        }
        st = lsm_batch_delete(b, k);
        if (!nk_ok(st))
            break;
        done++;
    }
    if (nk_ok(st))
        st = lsm_iter_status(it);
    lsm_iter_free(it);
    nk_buf_free(&cur);
    if (nk_ok(st))
        s->next_exp[shard] = next;
    return st;
}

/* ----------------------------------------------------------- retention */

/* Loads a shard's feed statistics by reading its feed once. */
static nk_status stat_load(struct kv_store *s, uint16_t shard)
{
    struct kv_feed_stat *fs = &s->fstat[shard];
    memset(fs, 0, sizeof *fs);
    uint8_t lo[3], hi[3];
    nk_enc_be16(lo, shard);
    lo[2] = NS_FEED;
    nk_enc_be16(hi, shard);
    hi[2] = NS_FEED + 1;
    struct lsm_iter_options io = {.lower = nk_slice_make(lo, 3), .upper = nk_slice_make(hi, 3)};
    struct lsm_iter *it = NULL;
    NK_TRY(lsm_iter_new(s->db, &io, &it));
    for (lsm_iter_seek_first(it); lsm_iter_valid(it); lsm_iter_next(it)) {
        struct nk_slice k = lsm_iter_key(it), v = lsm_iter_value(it);
        if (k.len != 11)
            continue;
        if (fs->count == 0) {
            struct kv_feed_record rec;
            fs->oldest_index = nk_dec_be64(k.data + 3);
            fs->oldest_time = kv_feed_decode(v, &rec) ? rec.time_ms : 0;
        }
        fs->count++;
        fs->bytes += v.len;
    }
    nk_status st = lsm_iter_status(it);
    lsm_iter_free(it);
    if (nk_ok(st))
        fs->loaded = true;
    return st;
}

nk_status kv_feed_trim(struct kv_store *s, uint16_t shard, uint64_t now)
{
    const struct kv_options *o = &s->opt;
    struct kv_feed_stat *fs = &s->fstat[shard];
    if (!fs->loaded)
        NK_TRY(stat_load(s, shard));
    /* hysteresis: trim an eighth below the bounds at once, so that the
     * iterator this takes is paid once per many appends */
    bool over = fs->count > o->feed_max_entries || fs->bytes > o->feed_max_bytes ||
                (fs->count && o->feed_max_age_ms && now > fs->oldest_time &&
                 now - fs->oldest_time > o->feed_max_age_ms);
    if (!over)
        return NK_OK;
    uint64_t keep_n = o->feed_max_entries - o->feed_max_entries / 8;
    uint64_t keep_b = o->feed_max_bytes - o->feed_max_bytes / 8;
    uint8_t lo[11], hi[3];
    feed_key(lo, shard, 0);
    nk_enc_be16(hi, shard);
    hi[2] = NS_FEED + 1;
    struct lsm_iter_options io = {.lower = nk_slice_make(lo, sizeof lo),
                                  .upper = nk_slice_make(hi, 3)};
    struct lsm_iter *it = NULL;
    NK_TRY(lsm_iter_new(s->db, &io, &it));
    struct lsm_batch b;
    lsm_batch_init(&b);
    nk_status st = NK_OK;
    uint64_t floor = 0;
    bool trimmed = false;
    for (lsm_iter_seek_first(it); lsm_iter_valid(it); lsm_iter_next(it)) {
        struct nk_slice k = lsm_iter_key(it), v = lsm_iter_value(it);
        if (k.len != 11)
            continue;
        struct kv_feed_record rec;
        uint64_t t = kv_feed_decode(v, &rec) ? rec.time_ms : 0;
        bool old = o->feed_max_age_ms && now > t && now - t > o->feed_max_age_ms;
        if (fs->count <= keep_n && fs->bytes <= keep_b && !old) {
            fs->oldest_index = nk_dec_be64(k.data + 3);
            fs->oldest_time = t;
            break;
        }
        st = lsm_batch_delete(&b, k);
        if (!nk_ok(st))
            break;
        floor = nk_dec_be64(k.data + 3);
        trimmed = true;
        fs->count--;
        fs->bytes -= NK_MIN(fs->bytes, (uint64_t)v.len);
    }
    if (nk_ok(st))
        st = lsm_iter_status(it);
    lsm_iter_free(it);
    if (nk_ok(st) && trimmed) {
        uint8_t fk[4];
        kv_make_key(fk, shard, NS_META, nk_slice_str("F"));
        uint8_t fv[NK_VARINT64_MAX];
        size_t fn = nk_enc_varint64(fv, floor);
        st = lsm_batch_put(&b, nk_slice_make(fk, 4), nk_slice_make(fv, fn), 0);
        if (nk_ok(st))
            st = lsm_write(s->db, &KV_APPLY_WO, &b);
    }
    if (fs->count == 0)
        fs->oldest_index = fs->oldest_time = 0;
    lsm_batch_free(&b);
    return st;
}

/* --------------------------------------------------------- the apply tail */

nk_status kv_apply_commit(struct kv_store *s, struct lsm_batch *b, uint16_t shard, uint64_t term,
                          uint64_t index, uint64_t now)
{
    NK_TRY(kv_feed_finish(s, b, shard, term, index, now));
    NK_TRY(lsm_write(s->db, &KV_APPLY_WO, b));
    s->time[shard] = now;
    /* Retention is local garbage collection after the entry is written: its
     * failure (a full disk) must not fail the apply, which the node would
     * retry — re-applying an entry already written. The next write trims. */
    if (s->fb_count) {
        nk_status t = kv_feed_trim(s, shard, now);
        if (!nk_ok(t)) {
            NK_WARN("kv", "shard %u: trimming the change feed failed (retried at the next write): %s",
                    shard, nk_status_msg(t));
            nk_status_free(&t);
            s->fstat[shard].loaded = false; /* recount from disk next time */
        }
    }
    return NK_OK;
}

/* ---------------------------------------------------------- time commands */

void kv_tick_encode(uint8_t out[KV_TICK_LEN], uint64_t timestamp_ms)
{
    out[0] = KV_TICK_TAG;
    out[1] = KV_TICK_FORMAT;
    nk_enc_fixed64(out + 2, timestamp_ms);
}

uint64_t kv_next_expiry(struct kv_store *s, uint16_t shard)
{
    if (s->next_exp[shard] == 0) {
        /* not known since the start: the expiry index's first entry */
        uint8_t lo[3], hi[3];
        nk_enc_be16(lo, shard);
        lo[2] = NS_EXP;
        nk_enc_be16(hi, shard);
        hi[2] = NS_EXP + 1;
        struct lsm_iter_options io = {.lower = nk_slice_make(lo, 3),
                                      .upper = nk_slice_make(hi, 3)};
        struct lsm_iter *it = NULL;
        nk_status st = lsm_iter_new(s->db, &io, &it);
        if (!nk_ok(st)) {
            nk_status_free(&st);
            return 0;
        }
        lsm_iter_seek_first(it);
        uint64_t next = UINT64_MAX;
        if (lsm_iter_valid(it) && lsm_iter_key(it).len >= 12)
            next = nk_dec_be64(lsm_iter_key(it).data + 3);
        st = lsm_iter_status(it);
        lsm_iter_free(it);
        if (!nk_ok(st)) {
            nk_status_free(&st);
            return 0;
        }
        s->next_exp[shard] = next;
    }
    return s->next_exp[shard];
}

nk_status kv_apply_tick(struct kv_store *s, uint16_t shard, uint64_t term, uint64_t index,
                        const uint8_t *data, struct kv_result *res)
{
    memset(res, 0, sizeof(*res));
    res->term = term;
    res->index = index;
    uint64_t prev;
    NK_TRY(kv_shard_time_cached(s, shard, &prev));
    uint64_t now = nk_dec_fixed64(data + 2);
    if (now < prev)
        now = prev;
    struct lsm_batch b;
    lsm_batch_init(&b);
    kv_feed_begin(s);
    nk_status st = kv_expire_due(s, &b, shard, now);
    if (nk_ok(st))
        st = kv_put_applied(&b, shard, term, index, now);
    if (nk_ok(st))
        st = kv_apply_commit(s, &b, shard, term, index, now);
    lsm_batch_free(&b);
    res->code = NK_CODE_OK;
    res->time_ms = now;
    return st;
}
