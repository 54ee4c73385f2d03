/*
 * cmd.c: the vector command codec and the validation helpers of the API
 * layer. The layout (docs/format/vector-commands.md):
 *
 *   u8 tag 'V' | u8 version (1) | u8 op | varint timestamp_ms | lenbytes ns |
 *   CREATE: varint dims | u8 metric | u8 type | varint m |
 *           varint ef_construction | varint ef_search | varint max_bytes
 *   INSERT: lenbytes id | varint dims | dims x f32 (little-endian)
 *   DELETE: lenbytes id
 *   | lenbytes idem_key
 */
#include <math.h>

#include "vector/vector.h"

/* ------------------------------------------------------------ validation */

nk_status vec_validate_namespace(struct nk_slice ns)
{
    if (ns.len == 0)
        return nk_status_make(NK_INVALID_ARGUMENT,
                              "namespace is empty; namespaces are 1 to %u bytes",
                              VEC_MAX_NAMESPACE);
    if (ns.len > VEC_MAX_NAMESPACE)
        return nk_status_make(NK_INVALID_ARGUMENT, "namespace is %zu bytes; the limit is %u bytes",
                              ns.len, VEC_MAX_NAMESPACE);
    return NK_OK;
}

nk_status vec_validate_id(struct nk_slice id)
{
    if (id.len == 0)
        return nk_status_make(NK_INVALID_ARGUMENT, "vector id is empty; ids are 1 to %u bytes",
                              VEC_MAX_ID);
    if (id.len > VEC_MAX_ID)
        return nk_status_make(NK_INVALID_ARGUMENT, "vector id is %zu bytes; the limit is %u bytes",
                              id.len, VEC_MAX_ID);
    return NK_OK;
}

nk_status vec_validate_dims(uint64_t dims)
{
    if (dims == 0 || dims > VEC_MAX_DIMS)
        return nk_status_make(NK_INVALID_ARGUMENT, "dimensions is %llu; it must be 1 to %u",
                              (unsigned long long)dims, VEC_MAX_DIMS);
    return NK_OK;
}

nk_status vec_validate_k(uint64_t k)
{
    if (k == 0 || k > VEC_MAX_K)
        return nk_status_make(NK_INVALID_ARGUMENT, "k is %llu; it must be 1 to %u",
                              (unsigned long long)k, VEC_MAX_K);
    return NK_OK;
}

static nk_status check_value(float x, size_t i)
{
    if (isnan(x))
        return nk_status_make(NK_INVALID_ARGUMENT, "vector value %zu is NaN", i);
    if (isinf(x))
        return nk_status_make(NK_INVALID_ARGUMENT, "vector value %zu is infinite", i);
    return NK_OK;
}

nk_status vec_validate_vector(const float *v, size_t n, uint32_t dims)
{
    if (n == 0 || n > VEC_MAX_DIMS)
        return nk_status_make(NK_INVALID_ARGUMENT, "vector has %zu values; it must have 1 to %u",
                              n, VEC_MAX_DIMS);
    if (dims && n != dims)
        return nk_status_make(NK_INVALID_ARGUMENT,
                              "vector has %zu dimensions; the index has %u dimensions", n, dims);
    for (size_t i = 0; i < n; i++)
        if (!isfinite(v[i]))
            return check_value(v[i], i);
    return NK_OK;
}

nk_status vec_metric_from_proto(int v, enum vec_metric *out)
{
    if (v < VEC_METRIC_L2 || v > VEC_METRIC_IP)
        return nk_status_make(NK_INVALID_ARGUMENT,
                              "distance %d is %s; use EUCLIDEAN (1), COSINE (2) or "
                              "INNER_PRODUCT (3)",
                              v, v == 0 ? "unspecified" : "unknown");
    *out = (enum vec_metric)v;
    return NK_OK;
}

nk_status vec_index_type_from_proto(int v, enum vec_index_type *out)
{
    if (v < VEC_INDEX_FLAT || v > VEC_INDEX_HNSW)
        return nk_status_make(NK_INVALID_ARGUMENT,
                              "index_type %d is %s; use BRUTE_FORCE (1) or HNSW (2)", v,
                              v == 0 ? "unspecified" : "unknown");
    *out = (enum vec_index_type)v;
    return NK_OK;
}

nk_status vec_cmd_validate(const struct vec_cmd *c)
{
    if (c->op < VEC_OP_CREATE_INDEX || c->op > VEC_OP_DELETE)
        return nk_status_make(NK_INVALID_ARGUMENT, "unknown vector command op %d", (int)c->op);
    NK_TRY(vec_validate_namespace(c->ns));
    if (c->idem_key.len > VEC_MAX_IDEM_KEY)
        return nk_status_make(NK_INVALID_ARGUMENT,
                              "idempotency key is %zu bytes; the limit is %u bytes",
                              c->idem_key.len, VEC_MAX_IDEM_KEY);
    switch (c->op) {
    case VEC_OP_CREATE_INDEX:
        NK_TRY(vec_index_options_validate(&c->opt));
        break;
    case VEC_OP_DROP_INDEX:
        break;
    case VEC_OP_INSERT:
        NK_TRY(vec_validate_id(c->id));
        NK_TRY(vec_validate_dims(c->dims));
        if (!c->vector)
            return nk_status_make(NK_INVALID_ARGUMENT, "insert carries no vector");
        for (uint32_t i = 0; i < c->dims; i++) {
            float x;
            memcpy(&x, c->vector + 4 * (size_t)i, 4);
            if (!isfinite(x))
                return check_value(x, i);
        }
        break;
    case VEC_OP_DELETE:
        NK_TRY(vec_validate_id(c->id));
        break;
    }
    return NK_OK;
}

/* ----------------------------------------------------------------- codec */

void vec_cmd_encode(const struct vec_cmd *c, struct nk_buf *out)
{
    nk_buf_reserve(out, 64 + c->ns.len + c->id.len + 4 * (size_t)c->dims + c->idem_key.len);
    nk_buf_put_u8(out, VEC_CMD_TAG);
    nk_buf_put_u8(out, VEC_CMD_VERSION);
    nk_buf_put_u8(out, (uint8_t)c->op);
    nk_buf_put_varint64(out, c->timestamp_ms);
    nk_buf_put_lenbytes(out, c->ns.data, c->ns.len);
    switch (c->op) {
    case VEC_OP_CREATE_INDEX:
        nk_buf_put_varint32(out, c->opt.dims);
        nk_buf_put_u8(out, (uint8_t)c->opt.metric);
        nk_buf_put_u8(out, (uint8_t)c->opt.type);
        nk_buf_put_varint32(out, c->opt.m);
        nk_buf_put_varint32(out, c->opt.ef_construction);
        nk_buf_put_varint32(out, c->opt.ef_search);
        nk_buf_put_varint64(out, c->opt.max_bytes);
        break;
    case VEC_OP_DROP_INDEX:
        break;
    case VEC_OP_INSERT:
        nk_buf_put_lenbytes(out, c->id.data, c->id.len);
        nk_buf_put_varint32(out, c->dims);
        nk_buf_append(out, c->vector, 4 * (size_t)c->dims); /* already little-endian */
        break;
    case VEC_OP_DELETE:
        nk_buf_put_lenbytes(out, c->id.data, c->id.len);
        break;
    }
    nk_buf_put_lenbytes(out, c->idem_key.data, c->idem_key.len);
}

nk_status vec_cmd_decode(const void *data, size_t n, struct vec_cmd *c)
{
    memset(c, 0, sizeof(*c));
    struct nk_reader r;
    nk_reader_init(&r, data, n);
    uint8_t tag = 0, ver = 0, op = 0;
    if (!nk_reader_u8(&r, &tag) || tag != VEC_CMD_TAG)
        return nk_status_make(NK_DATA_LOSS, "not a vector command (first byte 0x%02x)", tag);
    if (!nk_reader_u8(&r, &ver) || ver != VEC_CMD_VERSION)
        return nk_status_make(NK_DATA_LOSS, "vector command format version %u is not supported",
                              ver);
    if (!nk_reader_u8(&r, &op) || op < VEC_OP_CREATE_INDEX || op > VEC_OP_DELETE)
        return nk_status_make(NK_DATA_LOSS, "vector command op %u is unknown", op);
    c->op = (enum vec_op)op;
    nk_reader_varint64(&r, &c->timestamp_ms);
    nk_reader_lenbytes(&r, VEC_MAX_NAMESPACE, &c->ns);
    uint8_t metric = 0, type = 0;
    struct nk_slice vec = {0};
    switch (c->op) {
    case VEC_OP_CREATE_INDEX:
        nk_reader_varint32(&r, &c->opt.dims);
        nk_reader_u8(&r, &metric);
        nk_reader_u8(&r, &type);
        c->opt.metric = (enum vec_metric)metric;
        c->opt.type = (enum vec_index_type)type;
        nk_reader_varint32(&r, &c->opt.m);
        nk_reader_varint32(&r, &c->opt.ef_construction);
        nk_reader_varint32(&r, &c->opt.ef_search);
        nk_reader_varint64(&r, &c->opt.max_bytes);
        break;
    case VEC_OP_DROP_INDEX:
        break;
    case VEC_OP_INSERT:
        nk_reader_lenbytes(&r, VEC_MAX_ID, &c->id);
        nk_reader_varint32(&r, &c->dims);
        if (!r.bad && (c->dims == 0 || c->dims > VEC_MAX_DIMS))
            return nk_status_make(NK_DATA_LOSS, "vector command has %u dimensions", c->dims);
        if (nk_reader_bytes(&r, 4 * (size_t)c->dims, &vec))
            c->vector = vec.data;
        break;
    case VEC_OP_DELETE:
        nk_reader_lenbytes(&r, VEC_MAX_ID, &c->id);
        break;
    }
    nk_reader_lenbytes(&r, VEC_MAX_IDEM_KEY, &c->idem_key);
    if (r.bad)
        return nk_status_make(NK_DATA_LOSS,
                              "vector command is truncated or a field exceeds its limit");
    if (nk_reader_left(&r) != 0)
        return nk_status_make(NK_DATA_LOSS, "vector command has %zu trailing bytes",
                              nk_reader_left(&r));
    nk_status s = vec_cmd_validate(c);
    if (!nk_ok(s))
        return nk_status_wrap(s, "decoded vector command is invalid");
    return NK_OK;
}

uint64_t vec_cmd_fingerprint(const struct vec_cmd *c)
{
    struct nk_buf b;
    nk_buf_init(&b);
    struct vec_cmd k = *c;
    k.timestamp_ms = 0;
    k.idem_key = nk_slice_make(NULL, 0);
    vec_cmd_encode(&k, &b);
    uint64_t h = nk_xxhash64(b.data, b.len);
    nk_buf_free(&b);
    return h;
}
