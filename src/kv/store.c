/*
 * store.c: apply and read of the KV state machine over the node's LSM.
 *
 * LSM layout (docs/format/kv-state.md):
 *   [shard be16][0x00]['A']        -> varint term, varint index, varint time_ms (applied)
 *   [shard be16][0x01][user key]   -> value record
 *   [shard be16][0x02][idem key]   -> idempotency record
 *
 * Value record:  u8 1 | varint term | varint index | varint expiry_ms | value
 * Idem record:   u8 1 | u64 fingerprint | varint timestamp_ms | u8 code |
 *                varint term | varint index | u8 flags (1 tombstoned,
 *                2 has_current) | [varint cur_term | varint cur_index]
 */
#include <stdlib.h>

#include "kv/internal.h"

void kv_options_default(struct kv_options *o)
{
    o->idem_retention_ms = 24ULL * 3600 * 1000;
    o->feed_max_entries = 1000;
    o->feed_max_bytes = 1u << 20;
    o->feed_max_age_ms = 3600ULL * 1000;
}

nk_status kv_store_open(struct lsm_db *db, const struct kv_options *o, struct kv_store **out)
{
    struct kv_store *s = nk_calloc(1, sizeof(*s));
    s->db = db;
    if (o)
        s->opt = *o;
    else
        kv_options_default(&s->opt);
    s->time = nk_calloc(NSHARDS_MAX, sizeof(*s->time));
    s->bres = nk_calloc(1, sizeof(*s->bres) + KV_BATCH_MAX_OPS * sizeof(s->bres->ops[0]));
    s->time_loaded = nk_calloc(NSHARDS_MAX, 1);
    s->next_exp = nk_calloc(NSHARDS_MAX, sizeof(*s->next_exp));
    s->fstat = nk_calloc(NSHARDS_MAX, sizeof(*s->fstat));
    nk_buf_init(&s->fb);
    if (!s->opt.feed_max_entries)
        s->opt.feed_max_entries = 1000;
    if (!s->opt.feed_max_bytes)
        s->opt.feed_max_bytes = 1u << 20;
    *out = s;
    return NK_OK;
}

void kv_store_close(struct kv_store *s)
{
    if (!s)
        return;
    free(s->time);
    free(s->bres);
    free(s->time_loaded);
    free(s->next_exp);
    free(s->fstat);
    nk_buf_free(&s->fb);
    free(s);
}

void kv_shard_forget(struct kv_store *s, uint16_t shard)
{
    s->time_loaded[shard] = 0;
    s->next_exp[shard] = 0;
    s->fstat[shard].loaded = false;
}

bool kv_lsm_key_shard(struct nk_slice lsm_key, uint16_t *shard)
{
    if (lsm_key.len < 3)
        return false;
    *shard = nk_dec_be16(lsm_key.data);
    return true;
}

size_t kv_make_key(uint8_t *out, uint16_t shard, uint8_t ns, struct nk_slice k)
{
    nk_enc_be16(out, shard);
    out[2] = ns;
    if (k.len)
        memcpy(out + 3, k.data, k.len);
    return 3 + k.len;
}

void kv_data_prefix(uint16_t shard, uint8_t out[3])
{
    nk_enc_be16(out, shard);
    out[2] = NS_DATA;
}

/* ---------------------------------------------------------------- records */

bool kv_decode_value(struct nk_slice b, struct value_rec *v)
{
    struct nk_reader r;
    nk_reader_init(&r, b.data, b.len);
    uint8_t ver = 0;
    nk_reader_u8(&r, &ver);
    nk_reader_varint64(&r, &v->term);
    nk_reader_varint64(&r, &v->index);
    nk_reader_varint64(&r, &v->expiry_ms);
    if (r.bad || ver != REC_V1)
        return false;
    v->value = nk_slice_make(r.p, nk_reader_left(&r));
    return true;
}

void kv_encode_idem(struct nk_buf *b, uint64_t fp, uint64_t ts, const struct kv_result *res)
{
    nk_buf_put_u8(b, REC_V1);
    nk_buf_put_fixed64(b, fp);
    nk_buf_put_varint64(b, ts);
    nk_buf_put_u8(b, (uint8_t)res->code);
    nk_buf_put_varint64(b, res->term);
    nk_buf_put_varint64(b, res->index);
    nk_buf_put_u8(b, (uint8_t)((res->tombstoned ? 1 : 0) | (res->has_current ? 2 : 0)));
    if (res->has_current) {
        nk_buf_put_varint64(b, res->cur_term);
        nk_buf_put_varint64(b, res->cur_index);
    }
}

/* Decodes an idempotency record. A batch's record (REC_BATCH, batch.c)
 * shares the first three fields; for it *is_batch is set, res is left
 * zero, and the caller decodes the rest (kv_batch_idem_decode). */
static bool decode_idem(struct nk_slice b, uint64_t *fp, uint64_t *ts, struct kv_result *res,
                        bool *is_batch)
{
    struct nk_reader r;
    nk_reader_init(&r, b.data, b.len);
    uint8_t ver = 0, code = 0, flags = 0;
    memset(res, 0, sizeof(*res));
    *is_batch = false;
    nk_reader_u8(&r, &ver);
    nk_reader_fixed64(&r, fp);
    nk_reader_varint64(&r, ts);
    if (!r.bad && ver == REC_BATCH) {
        *is_batch = true;
        return true;
    }
    nk_reader_u8(&r, &code);
    nk_reader_varint64(&r, &res->term);
    nk_reader_varint64(&r, &res->index);
    nk_reader_u8(&r, &flags);
    if (flags & 2) {
        nk_reader_varint64(&r, &res->cur_term);
        nk_reader_varint64(&r, &res->cur_index);
    }
    if (r.bad || ver != REC_V1 || nk_reader_left(&r) != 0)
        return false;
    res->code = (enum nk_code)code;
    res->tombstoned = flags & 1;
    res->has_current = (flags & 2) != 0;
    return true;
}

nk_status kv_put_applied(struct lsm_batch *b, uint16_t shard, uint64_t term, uint64_t index,
                             uint64_t time_ms)
{
    uint8_t k[4];
    kv_make_key(k, shard, NS_META, nk_slice_str("A"));
    uint8_t v[3 * NK_VARINT64_MAX];
    size_t n = nk_enc_varint64(v, term);
    n += nk_enc_varint64(v + n, index);
    n += nk_enc_varint64(v + n, time_ms);
    return lsm_batch_put(b, nk_slice_make(k, 4), nk_slice_make(v, n), 0);
}

const struct lsm_write_options KV_APPLY_WO = {.skip_wal = true};

nk_status kv_read_applied_at(struct kv_store *s, const struct lsm_snapshot *snap,
                             uint16_t shard, uint64_t *term, uint64_t *index, uint64_t *time_ms)
{
    struct lsm_read_options ro = {.snapshot = snap};
    uint8_t k[4];
    kv_make_key(k, shard, NS_META, nk_slice_str("A"));
    struct nk_buf v;
    nk_buf_init(&v);
    bool found = false;
    nk_status st = lsm_get(s->db, &ro, nk_slice_make(k, 4), &v, &found, NULL);
    *term = *index = *time_ms = 0;
    if (nk_ok(st) && found) {
        struct nk_reader r;
        nk_reader_init(&r, v.data, v.len);
        nk_reader_varint64(&r, term);
        nk_reader_varint64(&r, index);
        if (nk_reader_left(&r)) /* records written before the time was kept have none */
            nk_reader_varint64(&r, time_ms);
        if (r.bad)
            st = nk_status_make(NK_DATA_LOSS, "shard %u: applied index record is malformed",
                                shard);
    }
    nk_buf_free(&v);
    return st;
}

nk_status kv_shard_time_cached(struct kv_store *s, uint16_t shard, uint64_t *time_ms)
{
    if (!s->time_loaded[shard]) {
        uint64_t t, i;
        NK_TRY(kv_read_applied_at(s, NULL, shard, &t, &i, &s->time[shard]));
        s->time_loaded[shard] = 1;
    }
    *time_ms = s->time[shard];
    return NK_OK;
}

nk_status kv_applied(struct kv_store *s, uint16_t shard, uint64_t *term, uint64_t *index)
{
    uint64_t t;
    return kv_read_applied_at(s, NULL, shard, term, index, &t);
}

nk_status kv_shard_time(struct kv_store *s, uint16_t shard, uint64_t *time_ms)
{
    return kv_shard_time_cached(s, shard, time_ms);
}

nk_status kv_apply_noop(struct kv_store *s, uint16_t shard, uint64_t term, uint64_t index)
{
    uint64_t now;
    NK_TRY(kv_shard_time_cached(s, shard, &now));
    struct lsm_batch b;
    lsm_batch_init(&b);
    nk_status st = kv_put_applied(&b, shard, term, index, now);
    if (nk_ok(st))
        st = lsm_write(s->db, &KV_APPLY_WO, &b);
    lsm_batch_free(&b);
    return st;
}

/* ------------------------------------------------------------------ apply */

nk_status kv_idem_get(struct kv_store *s, uint16_t shard, struct nk_slice idem, bool *found,
                      uint64_t *fp, uint64_t *ts, struct kv_result *res, bool *is_batch,
                      struct nk_buf *raw)
{
    uint8_t k[3 + KV_MAX_IDEM_KEY];
    size_t kn = kv_make_key(k, shard, NS_IDEM, idem);
    struct nk_buf v;
    nk_buf_init(&v);
    nk_status st = lsm_get(s->db, NULL, nk_slice_make(k, kn), &v, found, NULL);
    if (nk_ok(st) && *found &&
        !decode_idem(nk_slice_make(v.data, v.len), fp, ts, res, is_batch))
        st = nk_status_make(NK_DATA_LOSS, "shard %u: idempotency record is malformed", shard);
    if (nk_ok(st) && *found && raw) {
        nk_buf_clear(raw);
        nk_buf_append(raw, v.data, v.len);
    }
    nk_buf_free(&v);
    return st;
}

nk_status kv_idem_lookup(struct kv_store *s, uint16_t shard, struct nk_slice idem_key,
                         uint64_t fingerprint, uint64_t now_ms, bool *found, bool *same,
                         struct kv_result *res)
{
    uint64_t fp = 0, ts = 0;
    bool is_batch = false;
    *same = false;
    NK_TRY(kv_idem_get(s, shard, idem_key, found, &fp, &ts, res, &is_batch, NULL));
    if (*found && now_ms > ts && now_ms - ts > s->opt.idem_retention_ms)
        *found = false; /* outside the window: the key may be used afresh */
    if (*found) /* a batch's record is never the same request as one write */
        *same = !is_batch && fp == fingerprint;
    return NK_OK;
}

nk_status kv_apply(struct kv_store *s, uint16_t shard, uint64_t term, uint64_t index,
                   const uint8_t *data, size_t n, struct kv_result *res)
{
    if (kv_batch_is_batch(data, n))
        return kv_apply_batch(s, shard, term, index, data, n, res);
    if (kv_is_tick(data, n))
        return kv_apply_tick(s, shard, term, index, data, res);
    memset(res, 0, sizeof(*res));
    res->term = term;
    res->index = index;
    struct kv_cmd c;
    nk_status st = kv_cmd_decode(data, n, &c);
    if (!nk_ok(st)) {
        NK_ERROR("kv", "shard %u entry %llu.%llu: %s; applied as a no-op", shard,
                 (unsigned long long)term, (unsigned long long)index, nk_status_msg(st));
        nk_status_free(&st);
        res->code = NK_DATA_LOSS;
        st = kv_apply_noop(s, shard, term, index);
        res->time_ms = s->time[shard];
        return st;
    }

    /* The command's time is the shard's replicated time: the running maximum
     * of the timestamps its leaders stamped (they are monotonic per shard
     * already; the maximum keeps them so across leaders with skewed clocks).
     * It is part of the state, so every replica and every replay judges
     * expiry and retention against the same time. */
    uint64_t prev_time;
    NK_TRY(kv_shard_time_cached(s, shard, &prev_time));
    if (c.timestamp_ms < prev_time)
        c.timestamp_ms = prev_time;
    uint64_t now = c.timestamp_ms;

    struct lsm_batch b;
    lsm_batch_init(&b);
    struct nk_buf cur;
    nk_buf_init(&cur);
    uint64_t fp = 0;
    bool write_idem = false;

    /* keys the shard's time has expired go first, each with its event */
    kv_feed_begin(s);
    st = kv_expire_due(s, &b, shard, now);
    if (!nk_ok(st))
        goto out;

    if (c.idem_key.len) {
        fp = kv_cmd_fingerprint(&c);
        bool found, same;
        struct kv_result prev;
        st = kv_idem_lookup(s, shard, c.idem_key, fp, now, &found, &same, &prev);
        if (!nk_ok(st))
            goto out;
        if (found) {
            if (same) {
                *res = prev; /* a retry: the first execution's result, nothing re-executed */
            } else {
                res->code = NK_INVALID_ARGUMENT;
            }
            st = kv_put_applied(&b, shard, term, index, now);
            goto write;
        }
        write_idem = true;
    }

    /* the key's current state, as of the command's own time; an
     * unconditional put does not depend on it, so it skips the read */
    uint8_t key[MAX_LSM_KEY];
    size_t kn = kv_make_key(key, shard, NS_DATA, c.key);
    bool found = false;
    bool needs_current = c.op != KV_OP_PUT || c.has_if_match || c.if_not_exists;
    if (needs_current) {
        st = lsm_get(s->db, NULL, nk_slice_make(key, kn), &cur, &found, NULL);
        if (!nk_ok(st))
            goto out;
    }
    struct value_rec v = {0};
    bool live = false;
    if (found) {
        if (!kv_decode_value(nk_slice_make(cur.data, cur.len), &v)) {
            st = nk_status_make(NK_DATA_LOSS, "shard %u: value record of a key is malformed",
                                shard);
            goto out;
        }
        live = v.expiry_ms == 0 || v.expiry_ms > now;
    }

    if (c.has_if_match && (!live || v.term != c.if_match_term || v.index != c.if_match_index)) {
        res->code = NK_FAILED_PRECONDITION;
        if (live) {
            res->has_current = true;
            res->cur_term = v.term;
            res->cur_index = v.index;
        }
    } else if (c.op == KV_OP_PUT && c.if_not_exists && live) {
        res->code = NK_ALREADY_EXISTS;
        res->has_current = true;
        res->cur_term = v.term;
        res->cur_index = v.index;
    } else if (c.op == KV_OP_PUT) {
        uint64_t expiry = kv_cmd_expiry_ms(&c);
        struct nk_buf rec;
        nk_buf_init(&rec);
        nk_buf_reserve(&rec, 32 + c.value.len);
        nk_buf_put_u8(&rec, REC_V1);
        nk_buf_put_varint64(&rec, term);
        nk_buf_put_varint64(&rec, index);
        nk_buf_put_varint64(&rec, expiry);
        nk_buf_append(&rec, c.value.data, c.value.len);
        /* no LSM expiry: the record stays until apply expires it (feed.c),
         * so that its EXPIRE event is decided once, by the shard's time;
         * readers judge expiry themselves meanwhile */
        st = lsm_batch_put(&b, nk_slice_make(key, kn), nk_slice_make(rec.data, rec.len), 0);
        nk_buf_free(&rec);
        if (nk_ok(st) && expiry)
            st = kv_exp_note(s, &b, shard, c.key, expiry, term, index);
        kv_feed_put(s, c.key, c.value, expiry);
        res->code = NK_CODE_OK;
    } else {
        res->tombstoned = live;
        if (found)
            st = lsm_batch_delete(&b, nk_slice_make(key, kn));
        if (live)
            kv_feed_delete(s, c.key);
        res->code = NK_CODE_OK;
    }
    if (!nk_ok(st))
        goto out;

    if (write_idem) {
        uint8_t ik[3 + KV_MAX_IDEM_KEY];
        size_t ikn = kv_make_key(ik, shard, NS_IDEM, c.idem_key);
        struct nk_buf rec;
        nk_buf_init(&rec);
        kv_encode_idem(&rec, fp, now, res);
        /* found while cmd_time - now <= retention; gone for the LSM once its
         * clock reaches now + retention + 1, when apply no longer finds it */
        st = lsm_batch_put(&b, nk_slice_make(ik, ikn), nk_slice_make(rec.data, rec.len),
                           now + s->opt.idem_retention_ms + 1);
        nk_buf_free(&rec);
        if (!nk_ok(st))
            goto out;
    }
    st = kv_put_applied(&b, shard, term, index, now);
write:
    if (nk_ok(st))
        st = kv_apply_commit(s, &b, shard, term, index, now);
    res->time_ms = now;
out:
    nk_buf_free(&cur);
    lsm_batch_free(&b);
    return st;
}

/* ------------------------------------------------------------------- read */

nk_status kv_get(struct kv_store *s, uint16_t shard, struct nk_slice key, uint64_t now_ms,
                 struct nk_buf *value, uint64_t *term, uint64_t *index, bool *found)
{
    uint8_t k[MAX_LSM_KEY];
    if (key.len > KV_MAX_KEY)
        return nk_status_make(NK_INVALID_ARGUMENT, "key is %zu bytes; the limit is %u bytes",
                              key.len, KV_MAX_KEY);
    size_t kn = kv_make_key(k, shard, NS_DATA, key);
    NK_TRY(lsm_get(s->db, NULL, nk_slice_make(k, kn), value, found, NULL));
    if (!*found)
        return NK_OK;
    struct value_rec v;
    if (!kv_decode_value(nk_slice_make(value->data, value->len), &v))
        return nk_status_make(NK_DATA_LOSS, "shard %u: value record of a key is malformed",
                              shard);
    if (v.expiry_ms && v.expiry_ms <= now_ms) {
        *found = false;
        return NK_OK;
    }
    *term = v.term;
    *index = v.index;
    /* drop the record header in place */
    size_t hdr = (size_t)(v.value.data - value->data);
    memmove(value->data, value->data + hdr, v.value.len);
    value->len = v.value.len;
    return NK_OK;
}
