/* Fuzz target: kv_cmd_decode on untrusted bytes (Raft entries from peers or disk). */
#include "kv/kv.h"

#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct kv_cmd c;
    nk_status s = kv_cmd_decode(data, size, &c);
    if (nk_ok(s)) {
        /* whatever decodes is valid, and its canonical encoding round-trips
         * (the input itself may use non-minimal varints) */
        NK_ASSERT(nk_ok(kv_cmd_validate(&c)));
        struct nk_buf b, b2;
        nk_buf_init(&b);
        nk_buf_init(&b2);
        kv_cmd_encode(&c, &b);
        struct kv_cmd d;
        nk_status s2 = kv_cmd_decode(b.data, b.len, &d);
        NK_ASSERT(nk_ok(s2));
        kv_cmd_encode(&d, &b2);
        NK_ASSERT(b.len == b2.len && memcmp(b.data, b2.data, b.len) == 0);
        NK_ASSERT(kv_cmd_fingerprint(&c) == kv_cmd_fingerprint(&d));
        nk_buf_free(&b);
        nk_buf_free(&b2);
        (void)kv_cmd_fingerprint(&c);
    }
    nk_status_free(&s);
    return 0;
}

size_t LLVMFuzzerSeedCorpus(const uint8_t ***out, const size_t **lens);
size_t LLVMFuzzerSeedCorpus(const uint8_t ***out, const size_t **lens)
{
    static const uint8_t *seeds[3];
    static size_t sl[3];
    struct kv_cmd cmds[3] = {
        {.op = KV_OP_PUT, .timestamp_ms = 1700000000000ULL, .key = nk_slice_str("user:1"),
         .value = nk_slice_str("alice"), .ttl_ms = 60000, .idem_key = nk_slice_str("idem-1")},
        {.op = KV_OP_DELETE, .timestamp_ms = 5, .key = nk_slice_str("k"), .has_if_match = true,
         .if_match_term = 3, .if_match_index = 99},
        {.op = KV_OP_PUT, .timestamp_ms = 7, .key = nk_slice_str("x"), .if_not_exists = true},
    };
    for (int i = 0; i < 3; i++) {
        struct nk_buf b;
        nk_buf_init(&b);
        kv_cmd_encode(&cmds[i], &b);
        seeds[i] = b.data; /* owned by the corpus for the life of the process */
        sl[i] = b.len;
    }
    *out = seeds;
    *lens = sl;
    return 3;
}
