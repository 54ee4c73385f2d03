/*
 * cmd.c: the command codec. The layout (docs/format/commands.md):
 *
 *   u8 version (2) | u8 op | fixed64 timestamp_ms | lenbytes key |
 *   [PUT: lenbytes value | varint ttl_ms] | u8 flags |
 *   [flags&1: varint if_match_term | varint if_match_index] |
 *   lenbytes idem_key
 *
 * flags: bit 0 has_if_match, bit 1 if_not_exists (PUT only); other bits must
 * be zero so that a newer format is never misread as this one.
 *
 * Version 1 (logs written before version 2) had a varint timestamp. Version 2
 * puts it at a fixed place so that the leader can stamp a queued command in
 * place when it proposes (kv_cmd_stamp), without re-encoding a 1 MiB value.
 */
#include "kv/kv.h"

#define FLAG_IF_MATCH      0x01
#define FLAG_IF_NOT_EXISTS 0x02

nk_status kv_cmd_validate(const struct kv_cmd *c)
{
    if (c->op != KV_OP_PUT && c->op != KV_OP_DELETE)
        return nk_status_make(NK_INVALID_ARGUMENT, "unknown command op %d", (int)c->op);
    if (c->key.len == 0)
        return nk_status_make(NK_INVALID_ARGUMENT, "key is empty; keys are 1 to %u bytes",
                              KV_MAX_KEY);
    if (c->key.len > KV_MAX_KEY)
        return nk_status_make(NK_INVALID_ARGUMENT, "key is %zu bytes; the limit is %u bytes",
                              c->key.len, KV_MAX_KEY);
    if (c->value.len > KV_MAX_VALUE)
        return nk_status_make(NK_INVALID_ARGUMENT, "value is %zu bytes; the limit is %u bytes",
                              c->value.len, KV_MAX_VALUE);
    if (c->idem_key.len > KV_MAX_IDEM_KEY)
        return nk_status_make(NK_INVALID_ARGUMENT,
                              "idempotency key is %zu bytes; the limit is %u bytes",
                              c->idem_key.len, KV_MAX_IDEM_KEY);
    if (c->op == KV_OP_DELETE && (c->value.len || c->ttl_ms || c->if_not_exists))
        return nk_status_make(NK_INVALID_ARGUMENT, "delete carries put-only fields");
    if (c->has_if_match && (c->if_match_term == 0 || c->if_match_index == 0))
        return nk_status_make(NK_INVALID_ARGUMENT,
                              "if_match version %llu.%llu is invalid: term and index are >= 1",
                              (unsigned long long)c->if_match_term,
                              (unsigned long long)c->if_match_index);
    if (c->has_if_match && c->if_not_exists)
        return nk_status_make(NK_INVALID_ARGUMENT,
                              "if_match and if_not_exists cannot be combined");
    /* ttl beyond ~292 million years would overflow the absolute expiry */
    if (c->ttl_ms > (UINT64_MAX >> 2))
        return nk_status_make(NK_INVALID_ARGUMENT, "ttl_ms %llu is out of range",
                              (unsigned long long)c->ttl_ms);
    return NK_OK;
}

static void encode_as(const struct kv_cmd *c, uint8_t version, struct nk_buf *out)
{
    nk_buf_reserve(out, 32 + c->key.len + c->value.len + c->idem_key.len);
    nk_buf_put_u8(out, version);
    nk_buf_put_u8(out, (uint8_t)c->op);
    if (version == 1)
        nk_buf_put_varint64(out, c->timestamp_ms);
    else
        nk_buf_put_fixed64(out, c->timestamp_ms);
    nk_buf_put_lenbytes(out, c->key.data, c->key.len);
    if (c->op == KV_OP_PUT) {
        nk_buf_put_lenbytes(out, c->value.data, c->value.len);
        nk_buf_put_varint64(out, c->ttl_ms);
    }
    uint8_t flags = (c->has_if_match ? FLAG_IF_MATCH : 0) |
                    (c->if_not_exists ? FLAG_IF_NOT_EXISTS : 0);
    nk_buf_put_u8(out, flags);
    if (c->has_if_match) {
        nk_buf_put_varint64(out, c->if_match_term);
        nk_buf_put_varint64(out, c->if_match_index);
    }
    nk_buf_put_lenbytes(out, c->idem_key.data, c->idem_key.len);
}

void kv_cmd_encode(const struct kv_cmd *c, struct nk_buf *out)
{
    encode_as(c, KV_CMD_VERSION, out);
}

/* A version 2 command or a batch (docs/format/batch.md): both keep the
 * timestamp at bytes [2, 10). */
static bool stampable(const uint8_t *data, size_t n)
{
    if (n < KV_CMD_STAMP_END)
        return false;
    return data[0] == KV_CMD_VERSION || (data[0] == KV_BATCH_TAG && data[1] == KV_BATCH_FORMAT) ||
           (data[0] == KV_TICK_TAG && data[1] == KV_TICK_FORMAT && n == KV_TICK_LEN);
}

bool kv_cmd_stamp(uint8_t *data, size_t n, uint64_t timestamp_ms)
{
    if (!stampable(data, n))
        return false;
    nk_enc_fixed64(data + 2, timestamp_ms);
    return true;
}

bool kv_cmd_timestamp(const uint8_t *data, size_t n, uint64_t *timestamp_ms)
{
    if (!stampable(data, n))
        return false;
    *timestamp_ms = nk_dec_fixed64(data + 2);
    return true;
}

nk_status kv_cmd_decode(const void *data, size_t n, struct kv_cmd *c)
{
    memset(c, 0, sizeof(*c));
    struct nk_reader r;
    nk_reader_init(&r, data, n);
    uint8_t ver = 0, op = 0, flags = 0;
    if (!nk_reader_u8(&r, &ver))
        return nk_status_make(NK_DATA_LOSS, "command is empty");
    if (ver != 1 && ver != KV_CMD_VERSION)
        return nk_status_make(NK_DATA_LOSS, "command format version %u is not supported", ver);
    if (!nk_reader_u8(&r, &op) || (op != KV_OP_PUT && op != KV_OP_DELETE))
        return nk_status_make(NK_DATA_LOSS, "command op %u is unknown", op);
    c->op = (enum kv_op)op;
    if (ver == 1)
        nk_reader_varint64(&r, &c->timestamp_ms);
    else
        nk_reader_fixed64(&r, &c->timestamp_ms);
    nk_reader_lenbytes(&r, KV_MAX_KEY, &c->key);
    if (c->op == KV_OP_PUT) {
        nk_reader_lenbytes(&r, KV_MAX_VALUE, &c->value);
        nk_reader_varint64(&r, &c->ttl_ms);
    }
    nk_reader_u8(&r, &flags);
    if (flags & ~(FLAG_IF_MATCH | FLAG_IF_NOT_EXISTS))
        return nk_status_make(NK_DATA_LOSS, "command flags 0x%02x have unknown bits", flags);
    c->has_if_match = flags & FLAG_IF_MATCH;
    c->if_not_exists = flags & FLAG_IF_NOT_EXISTS;
    if (c->has_if_match) {
        nk_reader_varint64(&r, &c->if_match_term);
        nk_reader_varint64(&r, &c->if_match_index);
    }
    nk_reader_lenbytes(&r, KV_MAX_IDEM_KEY, &c->idem_key);
    if (r.bad)
        return nk_status_make(NK_DATA_LOSS, "command is truncated or a field exceeds its limit");
    if (nk_reader_left(&r) != 0)
        return nk_status_make(NK_DATA_LOSS, "command has %zu trailing bytes",
                              nk_reader_left(&r));
    nk_status s = kv_cmd_validate(c);
    if (!nk_ok(s))
        return nk_status_wrap(s, "decoded command is invalid");
    return NK_OK;
}

uint64_t kv_cmd_fingerprint(const struct kv_cmd *c)
{
    /* a canonical encoding without the timestamp, hashed once; always the
     * version 1 layout, so that idempotency records written before version 2
     * still match their retries */
    struct nk_buf b;
    nk_buf_init(&b);
    struct kv_cmd k = *c;
    k.timestamp_ms = 0;
    k.idem_key = nk_slice_make(NULL, 0);
    encode_as(&k, 1, &b);
    uint64_t h = nk_xxhash64(b.data, b.len);
    nk_buf_free(&b);
    return h;
}
