/*
 * fuzz_peer_frames.c: the peer frame stream decoder (and the HELLO decoder)
 * against arbitrary bytes. The first input byte picks how the rest is cut
 * into reads; the frames decoded from those pieces must be exactly the
 * frames decoded from the whole input at once (the in-place fast path and the
 * buffering slow path agree), every frame must respect its type's limit, and
 * nothing may crash, leak or read out of bounds.
 */
#include <stdlib.h>

#include "transport/transport.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
size_t LLVMFuzzerSeedCorpus(const uint8_t ***out, const size_t **lens);

#define MAX_FRAME 4096 /* small, so inputs reach the limits */
#define MAX_FRAMES 4096

struct seen {
    size_t n;
    uint8_t type[MAX_FRAMES];
    uint32_t len[MAX_FRAMES];
    uint32_t crc[MAX_FRAMES];
    bool error;
};

static void check_frame(const struct transport_frame *f)
{
    size_t limit = MAX_FRAME;
    if (f->type == TRANSPORT_FRAME_HELLO || f->type == TRANSPORT_FRAME_CLOSE)
        limit = TRANSPORT_HELLO_MAX;
    else if (f->type == TRANSPORT_FRAME_PING || f->type == TRANSPORT_FRAME_ACCEPT)
        limit = 0;
    else if (f->type == TRANSPORT_FRAME_BULK_ACK)
        limit = 8;
    if (f->type == TRANSPORT_FRAME_BULK_ACK && f->len != 8)
        abort();
    if (f->len > limit || !f->data)
        abort();
    if (f->type == TRANSPORT_FRAME_HELLO) {
        struct transport_hello h;
        nk_status s = transport_hello_decode(f->data, f->len, &h);
        if (nk_ok(s)) {
            struct nk_buf b;
            nk_buf_init(&b);
            transport_hello_encode(&h, &b);
            struct transport_hello h2;
            nk_status s2 = transport_hello_decode(b.data, b.len, &h2);
            if (!nk_ok(s2) || h2.node_id != h.node_id || h2.cluster_id != h.cluster_id ||
                h2.total_shards != h.total_shards || strcmp(h2.name, h.name) != 0)
                abort();
            nk_buf_free(&b);
        } else if (s.code != NK_DATA_LOSS || !s.msg) {
            abort();
        }
        nk_status_free(&s);
    }
}

static void run(const uint8_t *data, size_t size, uint8_t cut, struct seen *out)
{
    struct transport_decoder d;
    transport_decoder_init(&d, MAX_FRAME);
    struct nk_rng r;
    nk_rng_seed(&r, cut);
    size_t pos = 0;
    memset(out, 0, sizeof *out);
    while (pos < size && !out->error) {
        size_t piece = cut == 0 ? size - pos : 1 + nk_rng_uniform(&r, cut);
        piece = NK_MIN(piece, size - pos);
        const uint8_t *p = data + pos;
        size_t n = piece;
        for (;;) {
            struct transport_frame f;
            nk_status err;
            enum transport_decode_result res = transport_decoder_next(&d, &p, &n, &f, &err);
            if (res == TRANSPORT_DECODE_MORE) {
                if (n != 0)
                    abort(); /* MORE means every byte was taken */
                break;
            }
            if (res == TRANSPORT_DECODE_ERROR) {
                if (err.code != NK_DATA_LOSS || !err.msg)
                    abort();
                nk_status_free(&err);
                out->error = true;
                break;
            }
            check_frame(&f);
            if (out->n < MAX_FRAMES) {
                out->type[out->n] = f.type;
                out->len[out->n] = (uint32_t)f.len;
                out->crc[out->n] = nk_crc32c(f.data, f.len);
                out->n++;
            }
        }
        pos += piece;
    }
    transport_decoder_free(&d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    static struct seen whole, pieces;
    run(data + 1, size - 1, 0, &whole);
    run(data + 1, size - 1, (uint8_t)(data[0] | 1), &pieces);
    if (whole.error != pieces.error || whole.n != pieces.n)
        abort();
    for (size_t i = 0; i < whole.n; i++)
        if (whole.type[i] != pieces.type[i] || whole.len[i] != pieces.len[i] ||
            whole.crc[i] != pieces.crc[i])
            abort();
    return 0;
}

static void frame(struct nk_buf *b, uint8_t type, uint8_t flags, const void *p, size_t len)
{
    uint8_t hdr[TRANSPORT_FRAME_HEADER];
    transport_frame_header(hdr, type, flags, p, len);
    nk_buf_append(b, hdr, sizeof hdr);
    nk_buf_append(b, p, len);
}

size_t LLVMFuzzerSeedCorpus(const uint8_t ***out, const size_t **lens)
{
    static struct nk_buf bufs[3];
    static const uint8_t *ptrs[3];
    static size_t ls[3];
    struct transport_hello h = {.version = 1, .node_id = 2, .cluster_id = 42,
                                .total_shards = 1024, .incarnation = 9};
    strcpy(h.name, "node-2");
    struct nk_buf hb;
    nk_buf_init(&hb);
    transport_hello_encode(&h, &hb);
    uint8_t payload[3000];
    for (size_t i = 0; i < sizeof payload; i++)
        payload[i] = (uint8_t)i;
    for (int k = 0; k < 3; k++) {
        struct nk_buf *b = &bufs[k];
        nk_buf_free(b);
        nk_buf_put_u8(b, (uint8_t)(7 + k * 40)); /* the cut byte */
        frame(b, TRANSPORT_FRAME_HELLO, 0, hb.data, hb.len);
        if (k == 2) {
            frame(b, TRANSPORT_FRAME_CLOSE, 0, "cluster id mismatch", 19);
        } else {
            frame(b, TRANSPORT_FRAME_ACCEPT, 0, NULL, 0);
            frame(b, TRANSPORT_FRAME_RAFT, 0, payload, 100);
            frame(b, TRANSPORT_FRAME_BULK, TRANSPORT_FRAME_MORE, payload, 1500);
            frame(b, TRANSPORT_FRAME_RAFT, 0, payload, 7);
            frame(b, TRANSPORT_FRAME_BULK, 0, payload + 1500, k ? 1500 : 0);
            frame(b, TRANSPORT_FRAME_PING, 0, NULL, 0);
            uint8_t ack[8] = {0xdc, 0x05};
            frame(b, TRANSPORT_FRAME_BULK_ACK, 0, ack, 8);
            frame(b, TRANSPORT_FRAME_BULK, 0, payload, 3000);
        }
        ptrs[k] = b->data;
        ls[k] = b->len;
    }
    nk_buf_free(&hb);
    *out = ptrs;
    *lens = ls;
    return 3;
}
