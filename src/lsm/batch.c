/*
 * batch.c: write batches. The encoding (docs/format/manifest.md, "write
 * batch") is the WAL record payload, so the bytes built here are logged
 * as they are, without a second copy:
 *
 *   fixed64 sequence of the first record | fixed32 count | count records
 *   record: u8 type | varint32 key length | key
 *           type 1 (put):        varint32 value length | value
 *           type 2 (put+expiry): fixed64 expiry ms | varint32 value length | value
 *           type 0 (delete):     nothing more
 */
#include "lsm/internal.h"

#define BATCH_HEADER 12

void lsm_batch_init(struct lsm_batch *b)
{
    nk_buf_init(&b->rep);
    lsm_batch_clear(b);
}

void lsm_batch_free(struct lsm_batch *b)
{
    nk_buf_free(&b->rep);
    b->count = 0;
    b->user_bytes = 0;
}

void lsm_batch_clear(struct lsm_batch *b)
{
    nk_buf_clear(&b->rep);
    nk_buf_reserve(&b->rep, BATCH_HEADER);
    memset(b->rep.data, 0, BATCH_HEADER);
    b->rep.len = BATCH_HEADER;
    b->count = 0;
    b->user_bytes = 0;
}

static nk_status check_sizes(const struct lsm_batch *b, size_t klen, size_t vlen)
{
    if (klen > LSM_MAX_KEY)
        return nk_status_make(NK_INVALID_ARGUMENT, "key of %zu bytes exceeds the limit of %u",
                              klen, LSM_MAX_KEY);
    if (vlen > LSM_MAX_VALUE)
        return nk_status_make(NK_INVALID_ARGUMENT, "value of %zu bytes exceeds the limit of %u",
                              vlen, LSM_MAX_VALUE);
    if (b->rep.len + klen + vlen + 32 > LSM_MAX_BATCH)
        return nk_status_make(NK_INVALID_ARGUMENT,
                              "batch would exceed the limit of %u encoded bytes", LSM_MAX_BATCH);
    if (b->count == UINT32_MAX)
        return nk_status_make(NK_INVALID_ARGUMENT, "batch holds too many records");
    return NK_OK;
}

nk_status lsm_batch_put(struct lsm_batch *b, struct nk_slice key, struct nk_slice value,
                        uint64_t expire_at_ms)
{
    NK_TRY(check_sizes(b, key.len, value.len));
    struct nk_buf *r = &b->rep;
    nk_buf_reserve(r, 1 + 5 + key.len + 8 + 5 + value.len);
    r->data[r->len++] = expire_at_ms ? LSM_T_PUT_EXP : LSM_T_PUT;
    r->len += nk_enc_varint32(r->data + r->len, (uint32_t)key.len);
    if (key.len)
        memcpy(r->data + r->len, key.data, key.len);
    r->len += key.len;
    if (expire_at_ms) {
        nk_enc_fixed64(r->data + r->len, expire_at_ms);
        r->len += 8;
    }
    r->len += nk_enc_varint32(r->data + r->len, (uint32_t)value.len);
    if (value.len)
        memcpy(r->data + r->len, value.data, value.len);
    r->len += value.len;
    b->count++;
    b->user_bytes += key.len + value.len;
    nk_enc_fixed32(r->data + 8, b->count);
    return NK_OK;
}

nk_status lsm_batch_delete(struct lsm_batch *b, struct nk_slice key)
{
    NK_TRY(check_sizes(b, key.len, 0));
    struct nk_buf *r = &b->rep;
    nk_buf_reserve(r, 1 + 5 + key.len);
    r->data[r->len++] = LSM_T_DEL;
    r->len += nk_enc_varint32(r->data + r->len, (uint32_t)key.len);
    if (key.len)
        memcpy(r->data + r->len, key.data, key.len);
    r->len += key.len;
    b->count++;
    b->user_bytes += key.len;
    nk_enc_fixed32(r->data + 8, b->count);
    return NK_OK;
}

nk_status lsm_batch_decode(struct nk_slice rep, uint64_t *seq_out, uint32_t *count_out,
                           lsm_batch_fn fn, void *ctx)
{
    struct nk_reader r;
    nk_reader_init(&r, rep.data, rep.len);
    uint64_t seq;
    uint32_t count;
    if (!nk_reader_fixed64(&r, &seq) || !nk_reader_fixed32(&r, &count))
        return nk_status_make(NK_DATA_LOSS, "write batch: header of %zu bytes is short", rep.len);
    if (seq > LSM_MAX_SEQ || (uint64_t)count > LSM_MAX_SEQ - seq)
        return nk_status_make(NK_DATA_LOSS, "write batch: sequence %llu + count %u out of range",
                              (unsigned long long)seq, count);
    if (seq_out)
        *seq_out = seq;
    if (count_out)
        *count_out = count;
    for (uint32_t i = 0; i < count; i++) {
        uint8_t type;
        struct nk_slice key, value = {0};
        uint64_t exp = 0;
        if (!nk_reader_u8(&r, &type))
            return nk_status_make(NK_DATA_LOSS, "write batch: record %u of %u missing", i, count);
        if (type > LSM_T_MAX)
            return nk_status_make(NK_DATA_LOSS, "write batch: record %u has unknown type %u", i,
                                  type);
        if (!nk_reader_lenbytes(&r, LSM_MAX_KEY, &key))
            return nk_status_make(NK_DATA_LOSS, "write batch: record %u key malformed", i);
        if (type == LSM_T_PUT_EXP) {
            if (!nk_reader_fixed64(&r, &exp) || exp == 0)
                return nk_status_make(NK_DATA_LOSS, "write batch: record %u expiry malformed",
                                      i);
        }
        if (type != LSM_T_DEL && !nk_reader_lenbytes(&r, LSM_MAX_VALUE, &value))
            return nk_status_make(NK_DATA_LOSS, "write batch: record %u value malformed", i);
        if (fn)
            fn(ctx, seq + i, type, key, value, exp);
    }
    if (nk_reader_left(&r))
        return nk_status_make(NK_DATA_LOSS, "write batch: %zu trailing bytes after %u records",
                              nk_reader_left(&r), count);
    return NK_OK;
}
