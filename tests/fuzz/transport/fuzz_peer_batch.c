/*
 * fuzz_peer_batch.c: the RAFT batch reader against arbitrary bytes. Every
 * record read must lie inside the input, the records read must re-encode
 * into a batch that reads back the same number of records, and nothing may
 * crash or read out of bounds.
 */
#include <stdlib.h>

#include "transport/transport.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
size_t LLVMFuzzerSeedCorpus(const uint8_t ***out, const size_t **lens);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct transport_batch_reader br;
    nk_status s = transport_batch_open(&br, data, size);
    if (!nk_ok(s)) {
        if (s.code != NK_DATA_LOSS || !s.msg)
            abort();
        nk_status_free(&s);
        return 0;
    }
    struct nk_buf b;
    nk_buf_init(&b);
    transport_batch_init(&b);
    uint32_t n = 0;
    for (;;) {
        bool has;
        uint32_t group;
        struct nk_slice msg;
        s = transport_batch_next(&br, &has, &group, &msg);
        if (!nk_ok(s)) {
            if (s.code != NK_DATA_LOSS || !s.msg)
                abort();
            nk_status_free(&s);
            break;
        }
        if (!has)
            break;
        if (msg.data < data || msg.data + msg.len > data + size)
            abort();
        transport_batch_add(&b, group, msg.data, msg.len);
        n++;
    }
    /* the records read re-encode and read back the same */
    struct transport_batch_reader br2;
    s = transport_batch_open(&br2, b.data, b.len);
    if (!nk_ok(s))
        abort();
    for (uint32_t i = 0; i < n; i++) {
        bool has;
        uint32_t g;
        struct nk_slice m;
        s = transport_batch_next(&br2, &has, &g, &m);
        if (!nk_ok(s) || !has)
            abort();
    }
    bool has = true;
    uint32_t g;
    struct nk_slice m;
    s = transport_batch_next(&br2, &has, &g, &m);
    if (!nk_ok(s) || has)
        abort();
    nk_buf_free(&b);
    return 0;
}

size_t LLVMFuzzerSeedCorpus(const uint8_t ***out, const size_t **lens)
{
    static struct nk_buf b;
    static const uint8_t *ptrs[1];
    static size_t ls[1];
    nk_buf_free(&b);
    transport_batch_init(&b);
    uint8_t hb[13] = {0x07, 0x00, 0x01, 0x02, 0x03, 0x00, 0xa0, 0x8d, 0x06, 0xe8, 0x07, 0x00, 0x05};
    for (uint32_t g = 0; g < 40; g += 3)
        transport_batch_add(&b, g * 97, hb, sizeof hb);
    transport_batch_add(&b, 1023, NULL, 0);
    ptrs[0] = b.data;
    ls[0] = b.len;
    *out = ptrs;
    *lens = ls;
    return 1;
}
