/*
 * fuzz_batch.c: the write-batch decoder (WAL payloads read at recovery) on
 * untrusted bytes. A batch that decodes must re-encode to a batch that
 * decodes to the same records (the canonical encoding is a fixed point; the
 * input may use non-minimal varints, which the decoder accepts).
 */
#include "lsm/internal.h"

#include <stdlib.h>

struct rebuild {
    struct lsm_batch b;
    bool failed;
};

static void add(void *ctx, uint64_t seq, unsigned type, struct nk_slice key, struct nk_slice value,
                uint64_t exp)
{
    struct rebuild *r = ctx;
    nk_status s = type == LSM_T_DEL ? lsm_batch_delete(&r->b, key)
                                    : lsm_batch_put(&r->b, key, value, exp);
    if (!nk_ok(s))
        r->failed = true;
    nk_status_free(&s);
    (void)seq;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct rebuild r;
    lsm_batch_init(&r.b);
    r.failed = false;
    uint64_t seq;
    uint32_t count;
    nk_status s = lsm_batch_decode(nk_slice_make(data, size), &seq, &count, add, &r);
    if (nk_ok(s)) {
        NK_ASSERT(!r.failed && r.b.count == count);
        nk_enc_fixed64(r.b.rep.data, seq);
        NK_ASSERT(r.b.rep.len <= size);
        struct rebuild r2;
        lsm_batch_init(&r2.b);
        r2.failed = false;
        uint64_t seq2;
        uint32_t count2;
        nk_status s2 = lsm_batch_decode(nk_slice_make(r.b.rep.data, r.b.rep.len), &seq2, &count2,
                                        add, &r2);
        NK_ASSERT(nk_ok(s2) && !r2.failed && seq2 == seq && count2 == count);
        nk_enc_fixed64(r2.b.rep.data, seq);
        NK_ASSERT(r2.b.rep.len == r.b.rep.len &&
                  memcmp(r2.b.rep.data, r.b.rep.data, r.b.rep.len) == 0);
        lsm_batch_free(&r2.b);
    } else {
        NK_ASSERT(s.code == NK_DATA_LOSS);
    }
    nk_status_free(&s);
    lsm_batch_free(&r.b);
    return 0;
}

size_t LLVMFuzzerSeedCorpus(const uint8_t ***out, const size_t **lens)
{
    static const uint8_t *seeds[2];
    static size_t sl[2];
    struct lsm_batch b;
    lsm_batch_init(&b);
    lsm_batch_put(&b, nk_slice_str("key"), nk_slice_str("value"), 0);
    lsm_batch_delete(&b, nk_slice_str("gone"));
    lsm_batch_put(&b, nk_slice_str(""), nk_slice_str("expiring"), 1700000000000ull);
    nk_enc_fixed64(b.rep.data, 42);
    seeds[0] = nk_memdup(b.rep.data, b.rep.len);
    sl[0] = b.rep.len;
    lsm_batch_clear(&b);
    seeds[1] = nk_memdup(b.rep.data, b.rep.len);
    sl[1] = b.rep.len;
    lsm_batch_free(&b);
    *out = seeds;
    *lens = sl;
    return 2;
}
