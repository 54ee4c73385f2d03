/*
 * batch.c: the RAFT batch, the records (group, message) that the node layer
 * puts in one RAFT payload per peer (docs/format/peer-frames.md). Untrusted
 * input: every length is checked against the bytes left.
 */
#include "transport/transport.h"

void transport_batch_init(struct nk_buf *b)
{
    nk_buf_put_u8(b, TRANSPORT_BATCH_VERSION);
}

void transport_batch_add(struct nk_buf *b, uint32_t group, const void *msg, size_t len)
{
    nk_buf_put_varint32(b, group);
    nk_buf_put_lenbytes(b, msg, len);
}

nk_status transport_batch_open(struct transport_batch_reader *br, const uint8_t *p, size_t n)
{
    memset(br, 0, sizeof *br);
    if (n == 0)
        return nk_status_make(NK_DATA_LOSS, "transport: empty RAFT batch");
    if (p[0] != TRANSPORT_BATCH_VERSION)
        return nk_status_make(NK_DATA_LOSS, "transport: RAFT batch version %u, expected %u", p[0],
                              TRANSPORT_BATCH_VERSION);
    nk_reader_init(&br->r, p + 1, n - 1);
    return NK_OK;
}

nk_status transport_batch_next(struct transport_batch_reader *br, bool *has, uint32_t *group,
                               struct nk_slice *msg)
{
    *has = false;
    if (nk_reader_left(&br->r) == 0)
        return NK_OK;
    if (!nk_reader_varint32(&br->r, group))
        return nk_status_make(NK_DATA_LOSS, "transport: RAFT batch record %u: bad group id",
                              br->records);
    if (!nk_reader_lenbytes(&br->r, nk_reader_left(&br->r), msg))
        return nk_status_make(NK_DATA_LOSS,
                              "transport: RAFT batch record %u (group %u): length truncated or "
                              "beyond the payload",
                              br->records, *group);
    br->records++;
    *has = true;
    return NK_OK;
}
