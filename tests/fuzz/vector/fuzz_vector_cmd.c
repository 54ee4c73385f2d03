/* Fuzz target: vec_cmd_decode on untrusted bytes (Raft entries from peers or
 * disk). Apply only ever sees commands that decoded, so the decoder is the
 * boundary to attack. */
#include <stdlib.h>

#include "vector/vector.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct vec_cmd c;
    nk_status s = vec_cmd_decode(data, size, &c);
    if (nk_ok(s)) {
        /* whatever decodes is valid, and its canonical encoding round-trips
         * (the input may use non-minimal varints) */
        NK_ASSERT(vec_cmd_is_vector(data, size));
        NK_ASSERT(nk_ok(vec_cmd_validate(&c)));
        struct nk_buf b, b2;
        nk_buf_init(&b);
        nk_buf_init(&b2);
        vec_cmd_encode(&c, &b);
        struct vec_cmd d;
        nk_status s2 = vec_cmd_decode(b.data, b.len, &d);
        NK_ASSERT(nk_ok(s2));
        vec_cmd_encode(&d, &b2);
        NK_ASSERT(b.len == b2.len && memcmp(b.data, b2.data, b.len) == 0);
        NK_ASSERT(vec_cmd_fingerprint(&c) == vec_cmd_fingerprint(&d));
        if (c.op == VEC_OP_CREATE_INDEX) {
            /* decoded options always make an index */
            struct vec_index *ix;
            NK_ASSERT(nk_ok(vec_index_create(&c.opt, &ix)));
            vec_index_destroy(ix);
        }
        nk_buf_free(&b);
        nk_buf_free(&b2);
    }
    nk_status_free(&s);
    return 0;
}

size_t LLVMFuzzerSeedCorpus(const uint8_t ***out, const size_t **lens);
size_t LLVMFuzzerSeedCorpus(const uint8_t ***out, const size_t **lens)
{
    static const uint8_t *seeds[4];
    static size_t sl[4];
    static const float v[5] = {0.5f, -1, 3, 0, 1e-3f};
    struct vec_cmd cmds[4] = {
        {.op = VEC_OP_CREATE_INDEX, .timestamp_ms = 1700000000000ULL, .ns = nk_slice_str("emb"),
         .idem_key = nk_slice_str("create-1")},
        {.op = VEC_OP_DROP_INDEX, .timestamp_ms = 5, .ns = nk_slice_str("emb")},
        {.op = VEC_OP_INSERT, .timestamp_ms = 7, .ns = nk_slice_str("emb"),
         .id = nk_slice_str("doc-1"), .vector = (const uint8_t *)v, .dims = 5},
        {.op = VEC_OP_DELETE, .timestamp_ms = 9, .ns = nk_slice_str("emb"),
         .id = nk_slice_str("doc-1"), .idem_key = nk_slice_str("d")},
    };
    vec_index_options_default(&cmds[0].opt);
    cmds[0].opt.dims = 5;
    cmds[0].opt.metric = VEC_METRIC_COSINE;
    for (int i = 0; i < 4; i++) {
        struct nk_buf b;
        nk_buf_init(&b);
        vec_cmd_encode(&cmds[i], &b);
        seeds[i] = b.data; /* owned by the corpus for the life of the process */
        sl[i] = b.len;
    }
    *out = seeds;
    *lens = sl;
    return 4;
}
