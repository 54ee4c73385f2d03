/* Fuzz target: kv_batch_decode on untrusted bytes (Raft entries from peers
 * or disk; docs/format/batch.md). Whatever decodes is valid, and its
 * canonical encoding decodes to the same batch (same fingerprint). */
#include "kv/kv.h"

#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct kv_batch b;
    nk_status s = kv_batch_decode(data, size, &b);
    if (nk_ok(s)) {
        NK_ASSERT(b.n >= 1 && b.n <= KV_BATCH_MAX_OPS);
        NK_ASSERT(nk_ok(kv_batch_validate(&b)));
        struct nk_buf e1, e2;
        nk_buf_init(&e1);
        nk_buf_init(&e2);
        kv_batch_encode(&b, &e1);
        struct kv_batch d;
        nk_status s2 = kv_batch_decode(e1.data, e1.len, &d);
        NK_ASSERT(nk_ok(s2));
        kv_batch_encode(&d, &e2);
        NK_ASSERT(e1.len == e2.len && memcmp(e1.data, e2.data, e1.len) == 0);
        NK_ASSERT(kv_batch_fingerprint(&b) == kv_batch_fingerprint(&d));
        uint64_t ts = 0;
        NK_ASSERT(kv_cmd_timestamp(e1.data, e1.len, &ts) && ts == b.timestamp_ms);
        kv_batch_free(&d);
        kv_batch_free(&b);
        nk_buf_free(&e1);
        nk_buf_free(&e2);
    } else {
        NK_ASSERT(s.code == NK_DATA_LOSS);
    }
    nk_status_free(&s);
    return 0;
}

size_t LLVMFuzzerSeedCorpus(const uint8_t ***out, const size_t **lens);
size_t LLVMFuzzerSeedCorpus(const uint8_t ***out, const size_t **lens)
{
    static const uint8_t *seeds[2];
    static size_t sl[2];
    struct kv_batch_op ops[3] = {
        {.op = KV_OP_PUT, .key = nk_slice_str("a"), .value = nk_slice_str("1"), .ttl_ms = 5000},
        {.op = KV_OP_DELETE, .key = nk_slice_str("b"), .has_if_match = true, .if_match_term = 2,
         .if_match_index = 9},
        {.op = KV_OP_PUT, .key = nk_slice_str("c"), .if_not_exists = true},
    };
    struct kv_batch bs[2] = {
        {.timestamp_ms = 1700000000000ULL, .idem_key = nk_slice_str("idem"), .n = 3, .ops = ops},
        {.timestamp_ms = 3, .n = 1, .ops = ops + 1},
    };
    for (int i = 0; i < 2; i++) {
        struct nk_buf b;
        nk_buf_init(&b);
        kv_batch_encode(&bs[i], &b);
        seeds[i] = b.data; /* owned by the corpus for the life of the process */
        sl[i] = b.len;
    }
    *out = seeds;
    *lens = sl;
    return 2;
}
