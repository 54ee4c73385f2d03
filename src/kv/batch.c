/*
 * batch.c: atomic batches of puts and deletes on one shard: the codec and
 * the apply (docs/format/batch.md).
 *
 *   u8 tag 0x42 | u8 format 1 | fixed64 timestamp_ms | lenbytes idem_key |
 *   varint n | n x ( u8 op | lenbytes key | [PUT: lenbytes value |
 *   varint ttl_ms] | u8 flags | [flags&1: varint term | varint index] )
 *
 * Apply evaluates every op's condition against the state before the batch
 * (keys are distinct, so no op sees another's effect); when all hold, every
 * op goes into the one LSM write batch that also records the applied index,
 * otherwise nothing but the applied index (and the idempotency record) is
 * written. Like a single command, its time is the shard's replicated time,
 * never the local clock.
 */
#include <stdlib.h>

#include "kv/internal.h"

#define FLAG_IF_MATCH      0x01
#define FLAG_IF_NOT_EXISTS 0x02

static void op_as_cmd(const struct kv_batch_op *o, struct kv_cmd *c)
{
    *c = (struct kv_cmd){.op = o->op,
                         .key = o->key,
                         .value = o->value,
                         .ttl_ms = o->ttl_ms,
                         .has_if_match = o->has_if_match,
                         .if_match_term = o->if_match_term,
                         .if_match_index = o->if_match_index,
                         .if_not_exists = o->if_not_exists};
}

static int cmp_op_key(const void *a, const void *b)
{
    const struct kv_batch_op *x = *(const struct kv_batch_op *const *)a;
    const struct kv_batch_op *y = *(const struct kv_batch_op *const *)b;
    return nk_slice_cmp(x->key, y->key);
}

nk_status kv_batch_validate(const struct kv_batch *b)
{
    if (b->n == 0)
        return nk_status_make(NK_INVALID_ARGUMENT, "batch has no operations");
    if (b->n > KV_BATCH_MAX_OPS)
        return nk_status_make(NK_INVALID_ARGUMENT,
                              "batch has %u operations; the limit is %u", b->n,
                              KV_BATCH_MAX_OPS);
    if (b->idem_key.len > KV_MAX_IDEM_KEY)
        return nk_status_make(NK_INVALID_ARGUMENT,
                              "idempotency key is %zu bytes; the limit is %u bytes",
                              b->idem_key.len, KV_MAX_IDEM_KEY);
    uint64_t bytes = 0;
    for (uint32_t i = 0; i < b->n; i++) {
        struct kv_cmd c;
        op_as_cmd(&b->ops[i], &c);
        nk_status s = kv_cmd_validate(&c);
        if (!nk_ok(s)) {
            nk_status w = nk_status_make(s.code, "operation %u: %s", i, nk_status_msg(s));
            nk_status_free(&s);
            return w;
        }
        bytes += c.key.len + c.value.len;
    }
    if (bytes > KV_BATCH_MAX_BYTES)
        return nk_status_make(NK_INVALID_ARGUMENT,
                              "batch holds %llu bytes of keys and values; the limit is %u bytes",
                              (unsigned long long)bytes, KV_BATCH_MAX_BYTES);
    /* distinct keys: each op's condition is judged against the state before
     * the batch, which is only unambiguous when no two ops share a key */
    const struct kv_batch_op **p = nk_malloc(b->n * sizeof(*p));
    for (uint32_t i = 0; i < b->n; i++)
        p[i] = &b->ops[i];
    qsort(p, b->n, sizeof(*p), cmp_op_key);
    nk_status s = NK_OK;
    for (uint32_t i = 1; i < b->n; i++) {
        if (nk_slice_cmp(p[i - 1]->key, p[i]->key) == 0) {
            s = nk_status_make(NK_INVALID_ARGUMENT,
                               "operations %u and %u use the same key; a batch's keys must be "
                               "distinct",
                               (unsigned)(p[i - 1] - b->ops), (unsigned)(p[i] - b->ops));
            break;
        }
    }
    free(p);
    return s;
}

static void encode_body(const struct kv_batch *b, uint64_t ts, struct nk_slice idem,
                        struct nk_buf *out)
{
    nk_buf_put_u8(out, KV_BATCH_TAG);
    nk_buf_put_u8(out, KV_BATCH_FORMAT);
    nk_buf_put_fixed64(out, ts);
    nk_buf_put_lenbytes(out, idem.data, idem.len);
    nk_buf_put_varint32(out, b->n);
    for (uint32_t i = 0; i < b->n; i++) {
        const struct kv_batch_op *o = &b->ops[i];
        nk_buf_put_u8(out, (uint8_t)o->op);
        nk_buf_put_lenbytes(out, o->key.data, o->key.len);
        if (o->op == KV_OP_PUT) {
            nk_buf_put_lenbytes(out, o->value.data, o->value.len);
            nk_buf_put_varint64(out, o->ttl_ms);
        }
        uint8_t flags = (o->has_if_match ? FLAG_IF_MATCH : 0) |
                        (o->if_not_exists ? FLAG_IF_NOT_EXISTS : 0);
        nk_buf_put_u8(out, flags);
        if (o->has_if_match) {
            nk_buf_put_varint64(out, o->if_match_term);
            nk_buf_put_varint64(out, o->if_match_index);
        }
    }
}

void kv_batch_encode(const struct kv_batch *b, struct nk_buf *out)
{
    encode_body(b, b->timestamp_ms, b->idem_key, out);
}

void kv_batch_free(struct kv_batch *b)
{
    free(b->ops);
    b->ops = NULL;
    b->n = 0;
}

nk_status kv_batch_decode(const void *data, size_t n, struct kv_batch *b)
{
    memset(b, 0, sizeof(*b));
    struct nk_reader r;
    nk_reader_init(&r, data, n);
    uint8_t tag = 0, fmt = 0;
    nk_reader_u8(&r, &tag);
    nk_reader_u8(&r, &fmt);
    if (r.bad || tag != KV_BATCH_TAG)
        return nk_status_make(NK_DATA_LOSS, "not a batch command");
    if (fmt != KV_BATCH_FORMAT)
        return nk_status_make(NK_DATA_LOSS, "batch command format %u is not supported", fmt);
    uint32_t count = 0;
    nk_reader_fixed64(&r, &b->timestamp_ms);
    nk_reader_lenbytes(&r, KV_MAX_IDEM_KEY, &b->idem_key);
    nk_reader_varint32(&r, &count);
    if (r.bad)
        return nk_status_make(NK_DATA_LOSS, "batch command header is truncated");
    if (count == 0 || count > KV_BATCH_MAX_OPS)
        return nk_status_make(NK_DATA_LOSS, "batch command has %u operations (1 to %u)", count,
                              KV_BATCH_MAX_OPS);
    /* each op takes at least 3 bytes: refuse a count the bytes cannot hold
     * before allocating for it */
    if ((size_t)count * 3 > nk_reader_left(&r))
        return nk_status_make(NK_DATA_LOSS, "batch command is truncated");
    b->ops = nk_calloc(count, sizeof(*b->ops));
    b->n = count;
    for (uint32_t i = 0; i < count && !r.bad; i++) {
        struct kv_batch_op *o = &b->ops[i];
        uint8_t op = 0, flags = 0;
        nk_reader_u8(&r, &op);
        if (op != KV_OP_PUT && op != KV_OP_DELETE) {
            kv_batch_free(b);
            return nk_status_make(NK_DATA_LOSS, "batch operation %u has unknown op %u", i, op);
        }
        o->op = (enum kv_op)op;
        nk_reader_lenbytes(&r, KV_MAX_KEY, &o->key);
        if (o->op == KV_OP_PUT) {
            nk_reader_lenbytes(&r, KV_MAX_VALUE, &o->value);
            nk_reader_varint64(&r, &o->ttl_ms);
        }
        nk_reader_u8(&r, &flags);
        if (flags & ~(FLAG_IF_MATCH | FLAG_IF_NOT_EXISTS)) {
            kv_batch_free(b);
            return nk_status_make(NK_DATA_LOSS, "batch operation %u flags 0x%02x have unknown bits",
                                  i, flags);
        }
        o->has_if_match = flags & FLAG_IF_MATCH;
        o->if_not_exists = flags & FLAG_IF_NOT_EXISTS;
        if (o->has_if_match) {
            nk_reader_varint64(&r, &o->if_match_term);
            nk_reader_varint64(&r, &o->if_match_index);
        }
    }
    if (r.bad) {
        kv_batch_free(b);
        return nk_status_make(NK_DATA_LOSS, "batch command is truncated or a field exceeds its limit");
    }
    if (nk_reader_left(&r) != 0) {
        size_t left = nk_reader_left(&r);
        kv_batch_free(b);
        return nk_status_make(NK_DATA_LOSS, "batch command has %zu trailing bytes", left);
    }
    nk_status s = kv_batch_validate(b);
    if (!nk_ok(s)) {
        kv_batch_free(b);
        nk_status d = nk_status_make(NK_DATA_LOSS, "decoded batch command is invalid: %s",
                                     nk_status_msg(s));
        nk_status_free(&s);
        return d;
    }
    return NK_OK;
}

uint64_t kv_batch_fingerprint(const struct kv_batch *b)
{
    struct nk_buf e;
    nk_buf_init(&e);
    encode_body(b, 0, nk_slice_make(NULL, 0), &e);
    uint64_t h = nk_xxhash64(e.data, e.len);
    nk_buf_free(&e);
    return h;
}

/* ------------------------------------------------- idempotency records */

/* u8 2 | fixed64 fp | varint ts | u8 applied | varint term | varint index |
 * varint n | n x (u8 code | u8 flags (1 tombstoned, 2 has_current) |
 * [varint cur_term | varint cur_index]) */
static void encode_batch_idem(struct nk_buf *out, uint64_t fp, uint64_t ts, uint64_t term,
                              uint64_t index, const struct kv_batch_result *r)
{
    nk_buf_put_u8(out, REC_BATCH);
    nk_buf_put_fixed64(out, fp);
    nk_buf_put_varint64(out, ts);
    nk_buf_put_u8(out, r->applied ? 1 : 0);
    nk_buf_put_varint64(out, term);
    nk_buf_put_varint64(out, index);
    nk_buf_put_varint32(out, r->n);
    for (uint32_t i = 0; i < r->n; i++) {
        const struct kv_batch_op_result *o = &r->ops[i];
        nk_buf_put_u8(out, (uint8_t)o->code);
        nk_buf_put_u8(out, (uint8_t)((o->tombstoned ? 1 : 0) | (o->has_current ? 2 : 0)));
        if (o->has_current) {
            nk_buf_put_varint64(out, o->cur_term);
            nk_buf_put_varint64(out, o->cur_index);
        }
    }
}

static bool decode_batch_idem(struct nk_slice b, uint64_t *term, uint64_t *index,
                              struct kv_batch_result *r)
{
    struct nk_reader rd;
    nk_reader_init(&rd, b.data, b.len);
    uint8_t ver = 0, applied = 0;
    uint64_t fp, ts;
    uint32_t n = 0;
    nk_reader_u8(&rd, &ver);
    nk_reader_fixed64(&rd, &fp);
    nk_reader_varint64(&rd, &ts);
    nk_reader_u8(&rd, &applied);
    nk_reader_varint64(&rd, term);
    nk_reader_varint64(&rd, index);
    nk_reader_varint32(&rd, &n);
    if (rd.bad || ver != REC_BATCH || n > KV_BATCH_MAX_OPS)
        return false;
    r->applied = applied != 0;
    r->n = n;
    for (uint32_t i = 0; i < n; i++) {
        struct kv_batch_op_result *o = &r->ops[i];
        uint8_t code = 0, flags = 0;
        nk_reader_u8(&rd, &code);
        nk_reader_u8(&rd, &flags);
        memset(o, 0, sizeof(*o));
        o->code = (enum nk_code)code;
        o->tombstoned = flags & 1;
        o->has_current = (flags & 2) != 0;
        if (o->has_current) {
            nk_reader_varint64(&rd, &o->cur_term);
            nk_reader_varint64(&rd, &o->cur_index);
        }
    }
    return !rd.bad && nk_reader_left(&rd) == 0;
}

/* ------------------------------------------------------------------ apply */

nk_status kv_apply_batch(struct kv_store *s, uint16_t shard, uint64_t term, uint64_t index,
                         const uint8_t *data, size_t n, struct kv_result *res)
{
    memset(res, 0, sizeof(*res));
    res->term = term;
    res->index = index;
    struct kv_batch_result *br = s->bres;
    br->applied = false;
    br->n = 0;
    struct kv_batch b;
    nk_status st = kv_batch_decode(data, n, &b);
    if (!nk_ok(st)) {
        NK_ERROR("kv", "shard %u entry %llu.%llu: %s; applied as a no-op", shard,
                 (unsigned long long)term, (unsigned long long)index, nk_status_msg(st));
        nk_status_free(&st);
        res->code = NK_DATA_LOSS;
        st = kv_apply_noop(s, shard, term, index);
        res->time_ms = s->time[shard];
        return st;
    }

    /* the shard's replicated time, as for a single command (store.c) */
    uint64_t prev_time;
    st = kv_shard_time_cached(s, shard, &prev_time);
    if (!nk_ok(st)) {
        kv_batch_free(&b);
        return st;
    }
    uint64_t now = b.timestamp_ms < prev_time ? prev_time : b.timestamp_ms;

    struct lsm_batch lb;
    lsm_batch_init(&lb);
    struct nk_buf cur, raw;
    nk_buf_init(&cur);
    nk_buf_init(&raw);
    uint64_t fp = 0;
    bool write_idem = false;

    /* keys the shard's time has expired go first, each with its event */
    kv_feed_begin(s);
    st = kv_expire_due(s, &lb, shard, now);
    if (!nk_ok(st))
        goto out;

    if (b.idem_key.len) {
        fp = kv_batch_fingerprint(&b);
        bool found = false, is_batch = false;
        uint64_t rfp = 0, rts = 0;
        struct kv_result single;
        st = kv_idem_get(s, shard, b.idem_key, &found, &rfp, &rts, &single, &is_batch, &raw);
        if (!nk_ok(st))
            goto out;
        if (found && now > rts && now - rts > s->opt.idem_retention_ms)
            found = false; /* outside the window: the key may be used afresh */
        if (found) {
            uint64_t t0 = 0, i0 = 0;
            if (is_batch && rfp == fp) {
                if (!decode_batch_idem(nk_slice_make(raw.data, raw.len), &t0, &i0, br)) {
                    st = nk_status_make(NK_DATA_LOSS,
                                        "shard %u: batch idempotency record is malformed", shard);
                    goto out;
                }
                /* a retry: the first execution's outcome, nothing re-executed */
                res->code = NK_CODE_OK;
                res->term = t0;
                res->index = i0;
                res->batch = br;
            } else {
                res->code = NK_INVALID_ARGUMENT;
            }
            st = kv_put_applied(&lb, shard, term, index, now);
            goto write;
        }
        write_idem = true;
    }

    /* every op's condition against the state before the batch */
    br->n = b.n;
    bool all_ok = true;
    for (uint32_t i = 0; i < b.n; i++) {
        const struct kv_batch_op *o = &b.ops[i];
        struct kv_batch_op_result *r = &br->ops[i];
        memset(r, 0, sizeof(*r));
        r->code = NK_CODE_OK;
        bool needs_current = o->op != KV_OP_PUT || o->has_if_match || o->if_not_exists;
        if (!needs_current)
            continue;
        uint8_t key[MAX_LSM_KEY];
        size_t kn = kv_make_key(key, shard, NS_DATA, o->key);
        bool found = false;
        st = lsm_get(s->db, NULL, nk_slice_make(key, kn), &cur, &found, NULL);
        if (!nk_ok(st))
            goto out;
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
        if (o->has_if_match &&
            (!live || v.term != o->if_match_term || v.index != o->if_match_index)) {
            r->code = NK_FAILED_PRECONDITION;
            all_ok = false;
        } else if (o->op == KV_OP_PUT && o->if_not_exists && live) {
            r->code = NK_ALREADY_EXISTS;
            all_ok = false;
        }
        if (live) {
            r->has_current = r->code != NK_CODE_OK;
            r->cur_term = v.term;
            r->cur_index = v.index;
        }
        r->tombstoned = o->op == KV_OP_DELETE && live;
    }

    if (all_ok) {
        for (uint32_t i = 0; i < b.n && nk_ok(st); i++) {
            const struct kv_batch_op *o = &b.ops[i];
            uint8_t key[MAX_LSM_KEY];
            size_t kn = kv_make_key(key, shard, NS_DATA, o->key);
            if (o->op == KV_OP_PUT) {
                uint64_t expiry = o->ttl_ms ? now + o->ttl_ms : 0;
                struct nk_buf rec;
                nk_buf_init(&rec);
                nk_buf_reserve(&rec, 32 + o->value.len);
                nk_buf_put_u8(&rec, REC_V1);
                nk_buf_put_varint64(&rec, term);
                nk_buf_put_varint64(&rec, index);
                nk_buf_put_varint64(&rec, expiry);
                nk_buf_append(&rec, o->value.data, o->value.len);
                /* no LSM expiry: apply expires it, with its event (feed.c) */
                st = lsm_batch_put(&lb, nk_slice_make(key, kn), nk_slice_make(rec.data, rec.len),
                                   0);
                nk_buf_free(&rec);
                if (nk_ok(st) && expiry)
                    st = kv_exp_note(s, &lb, shard, o->key, expiry, term, index);
                kv_feed_put(s, o->key, o->value, expiry);
            } else {
                /* a tombstone even where the record is expired or absent:
                 * cheap, and keeps apply free of a second read */
                st = lsm_batch_delete(&lb, nk_slice_make(key, kn));
                if (br->ops[i].tombstoned)
                    kv_feed_delete(s, o->key);
            }
        }
        if (!nk_ok(st))
            goto out;
        br->applied = true;
    } else {
        for (uint32_t i = 0; i < b.n; i++) {
            br->ops[i].tombstoned = false;
            if (br->ops[i].code == NK_CODE_OK)
                br->ops[i].code = NK_ABORTED;
        }
    }
    res->code = NK_CODE_OK;
    res->batch = br;

    if (write_idem) {
        uint8_t ik[3 + KV_MAX_IDEM_KEY];
        size_t ikn = kv_make_key(ik, shard, NS_IDEM, b.idem_key);
        struct nk_buf rec;
        nk_buf_init(&rec);
        encode_batch_idem(&rec, fp, now, term, index, br);
        st = lsm_batch_put(&lb, nk_slice_make(ik, ikn), nk_slice_make(rec.data, rec.len),
                           now + s->opt.idem_retention_ms + 1);
        nk_buf_free(&rec);
        if (!nk_ok(st))
            goto out;
    }
    st = kv_put_applied(&lb, shard, term, index, now);
write:
    if (nk_ok(st))
        st = kv_apply_commit(s, &lb, shard, term, index, now);
    res->time_ms = now;
out:
    nk_buf_free(&cur);
    nk_buf_free(&raw);
    lsm_batch_free(&lb);
    kv_batch_free(&b);
    return st;
}
