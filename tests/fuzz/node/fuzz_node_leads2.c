/*
 * fuzz_node_leads2.c: the LEADS2 node frame (docs/format/node-frames.md), the
 * one a peer sends every second with the configurations of the shards it
 * leads, against arbitrary bytes. Every entry the decoder accepts names a
 * shard in range with configurations within Raft's bounds that survive
 * their own encoding; a malformed entry stops the frame; nothing crashes or
 * reads out of bounds.
 */
#include <stdlib.h>

#include "node/internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
size_t LLVMFuzzerSeedCorpus(const uint8_t ***out, const size_t **lens);

#define NSHARDS 64

static void check_conf(const struct raft_conf_state *c)
{
    if (c->n_voters > RAFT_MAX_MEMBERS || c->n_voters_out > RAFT_MAX_MEMBERS ||
        c->n_learners > RAFT_MAX_MEMBERS)
        abort();
    /* what was accepted survives its own encoding unchanged */
    struct nk_buf b;
    nk_buf_init(&b);
    node_conf_encode(c, &b);
    struct raft_conf_state back;
    if (!node_conf_decode(b.data, b.len, &back) || !node_conf_equal(c, &back))
        abort();
    nk_buf_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct nk_reader r;
    nk_reader_init(&r, data, size);
    uint64_t count = 0;
    nk_reader_varint64(&r, &count);
    for (uint64_t k = 0; k < count && !r.bad; k++) {
        struct node_leads2_entry e;
        if (!node_leads2_next(&r, NSHARDS, &e)) {
            if (!r.bad)
                abort(); /* a refusal always marks the reader */
            break;
        }
        if (e.shard >= NSHARDS)
            abort();
        check_conf(&e.applied);
        if (e.more)
            check_conf(&e.latest);
        bool listed = node_conf_lists(&e.latest, 7);
        (void)listed;
    }
    return 0;
}

size_t LLVMFuzzerSeedCorpus(const uint8_t ***out, const size_t **lens)
{
    static struct nk_buf b;
    static const uint8_t *seeds[1];
    static size_t sl[1];
    nk_buf_init(&b);
    struct raft_conf_state c = {.n_voters = 3, .voters = {7, 8, 9}, .n_learners = 1,
                                .learners = {10}};
    struct raft_conf_state j = {.n_voters = 3, .voters = {7, 8, 10}, .n_voters_out = 3,
                                .voters_out = {7, 8, 9}};
    struct nk_buf cb;
    nk_buf_init(&cb);
    nk_buf_put_varint64(&b, 2);
    nk_buf_put_varint64(&b, 5); /* shard */
    nk_buf_put_varint64(&b, 3); /* term */
    node_conf_encode(&c, &cb);
    nk_buf_put_lenbytes(&b, cb.data, cb.len);
    nk_buf_put_u8(&b, 1);
    node_conf_encode(&j, &cb);
    nk_buf_put_lenbytes(&b, cb.data, cb.len);
    nk_buf_put_varint64(&b, 63);
    nk_buf_put_varint64(&b, 9);
    nk_buf_put_lenbytes(&b, NULL, 0);
    nk_buf_put_u8(&b, 0);
    nk_buf_free(&cb);
    seeds[0] = b.data;
    sl[0] = b.len;
    *out = seeds;
    *lens = sl;
    return 1;
}
