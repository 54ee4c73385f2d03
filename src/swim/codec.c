/*
 * codec.c: SWIM packets to bytes and back (docs/format/swim.md).
 *
 * Packets arrive over UDP from anyone who can reach the peer port, so the
 * decoder trusts nothing: every length and count is checked against the
 * input left and against the protocol limits before it is used, ids and
 * states must be possible, the trailing CRC32C must match and nothing may
 * follow it. Decoding allocates nothing (updates go into the fixed array of
 * struct swim_msg; addresses are borrowed slices of the input).
 */
#include <inttypes.h>

#include "swim/swim.h"

/* version, type, flags, cluster, from, seq, subject, 2 address lengths,
 * update count, crc */
#define HDR_FIXED (1 + 1 + 1 + 8 + 8 + 4 + 8 + 1 + 1 + 1 + 4)

const char *swim_msg_type_name(uint8_t type)
{
    switch (type) {
    case SWIM_MSG_PING:
        return "PING";
    case SWIM_MSG_ACK:
        return "ACK";
    case SWIM_MSG_PING_REQ:
        return "PING_REQ";
    case SWIM_MSG_NACK:
        return "NACK";
    case SWIM_MSG_SYNC:
        return "SYNC";
    default:
        return "UNKNOWN";
    }
}

const char *swim_state_name(uint8_t state)
{
    switch (state) {
    case SWIM_NONE:
        return "none";
    case SWIM_ALIVE:
        return "alive";
    case SWIM_SUSPECT:
        return "suspect";
    case SWIM_DEAD:
        return "dead";
    case SWIM_LEFT:
        return "left";
    default:
        return "unknown";
    }
}

size_t swim_update_encoded_len(size_t addr_len)
{
    /* state, id, incarnation (varint, at most 10), from, address length
     * (varint), address; counted at its largest so that the budget never
     * overflows a packet */
    return 1 + 8 + NK_VARINT64_MAX + 8 + nk_varint_len(addr_len) + addr_len;
}

size_t swim_msg_header_len(size_t from_addr_len, size_t subject_addr_len)
{
    /* HDR_FIXED counts one byte per address length */
    return HDR_FIXED + nk_varint_len(from_addr_len) - 1 + from_addr_len +
           nk_varint_len(subject_addr_len) - 1 + subject_addr_len;
}

static void put_addr(struct nk_buf *b, struct nk_slice a)
{
    NK_ASSERT(a.len <= SWIM_MAX_ADDR);
    nk_buf_put_lenbytes(b, a.data, a.len);
}

void swim_msg_encode(const struct swim_msg *m, struct nk_buf *out)
{
    NK_ASSERT(m->type >= 1 && m->type <= SWIM_MSG_TYPE_MAX);
    NK_ASSERT(m->from != 0 && m->from_addr.len >= 1);
    NK_ASSERT(m->n_updates <= SWIM_MAX_UPDATES);
    size_t start = out->len;
    nk_buf_put_u8(out, SWIM_WIRE_VERSION);
    nk_buf_put_u8(out, m->type);
    nk_buf_put_u8(out, m->flags);
    nk_buf_put_fixed64(out, m->cluster);
    nk_buf_put_fixed64(out, m->from);
    nk_buf_put_fixed32(out, m->seq);
    nk_buf_put_fixed64(out, m->subject);
    put_addr(out, m->from_addr);
    put_addr(out, m->subject_addr);
    nk_buf_put_u8(out, (uint8_t)m->n_updates);
    for (uint32_t i = 0; i < m->n_updates; i++) {
        const struct swim_update *u = &m->updates[i];
        NK_ASSERT(u->state >= SWIM_ALIVE && u->state <= SWIM_LEFT && u->id != 0);
        NK_ASSERT(u->addr.len >= 1);
        nk_buf_put_u8(out, u->state);
        nk_buf_put_fixed64(out, u->id);
        nk_buf_put_varint64(out, u->incarnation);
        nk_buf_put_fixed64(out, u->from);
        put_addr(out, u->addr);
    }
    uint32_t crc = nk_crc32c_mask(nk_crc32c(out->data + start, out->len - start));
    nk_buf_put_fixed32(out, crc);
}

static nk_status bad(const char *what)
{
    return nk_status_make(NK_DATA_LOSS, "swim packet: %s", what);
}

nk_status swim_msg_decode(const uint8_t *p, size_t n, struct swim_msg *m)
{
    if (n < HDR_FIXED + 1)
        return nk_status_make(NK_DATA_LOSS, "swim packet: %zu bytes, shorter than a header", n);
    if (n > SWIM_MAX_PACKET)
        return nk_status_make(NK_DATA_LOSS, "swim packet: %zu bytes, over the %u-byte limit", n,
                              (unsigned)SWIM_MAX_PACKET);
    if (p[0] != SWIM_WIRE_VERSION)
        return nk_status_make(NK_DATA_LOSS, "swim packet: version %u, expected %u", p[0],
                              SWIM_WIRE_VERSION);
    /* The checksum first: a damaged packet is reported as damaged, not as
     * whatever field the damage happened to hit. */
    uint32_t stored = nk_crc32c_unmask(nk_dec_fixed32(p + n - 4));
    if (stored != nk_crc32c(p, n - 4))
        return bad("checksum mismatch");

    struct nk_reader r;
    nk_reader_init(&r, p + 1, n - 1 - 4);
    nk_reader_u8(&r, &m->type);
    nk_reader_u8(&r, &m->flags);
    nk_reader_fixed64(&r, &m->cluster);
    nk_reader_fixed64(&r, &m->from);
    nk_reader_fixed32(&r, &m->seq);
    nk_reader_fixed64(&r, &m->subject);
    if (r.bad)
        return bad("truncated header");
    if (m->type < 1 || m->type > SWIM_MSG_TYPE_MAX)
        return nk_status_make(NK_DATA_LOSS, "swim packet: unknown type %u", m->type);
    if (m->flags & ~SWIM_FLAG_SYNC_REQ)
        return nk_status_make(NK_DATA_LOSS, "swim packet: unknown flags 0x%02x", m->flags);
    if (m->from == 0)
        return bad("sender id is 0");
    if (m->type == SWIM_MSG_SYNC ? m->subject != 0 : m->subject == 0)
        return nk_status_make(NK_DATA_LOSS, "swim packet: %s with subject id %" PRIu64,
                              swim_msg_type_name(m->type), m->subject);
    if (!nk_reader_lenbytes(&r, SWIM_MAX_ADDR, &m->from_addr))
        return bad("truncated sender address");
    if (m->from_addr.len == 0)
        return bad("empty sender address");
    if (!nk_reader_lenbytes(&r, SWIM_MAX_ADDR, &m->subject_addr))
        return bad("truncated subject address");
    if ((m->type == SWIM_MSG_PING_REQ) != (m->subject_addr.len != 0))
        return nk_status_make(NK_DATA_LOSS, "swim packet: %s with a %zu-byte subject address",
                              swim_msg_type_name(m->type), m->subject_addr.len);
    uint8_t count;
    if (!nk_reader_u8(&r, &count))
        return bad("truncated update count");
    if (count > SWIM_MAX_UPDATES)
        return nk_status_make(NK_DATA_LOSS, "swim packet: %u updates, over the limit of %u", count,
                              SWIM_MAX_UPDATES);
    m->n_updates = count;
    for (uint32_t i = 0; i < count; i++) {
        struct swim_update *u = &m->updates[i];
        nk_reader_u8(&r, &u->state);
        nk_reader_fixed64(&r, &u->id);
        nk_reader_varint64(&r, &u->incarnation);
        nk_reader_fixed64(&r, &u->from);
        if (r.bad)
            return nk_status_make(NK_DATA_LOSS, "swim packet: update %u of %u truncated", i + 1,
                                  count);
        if (u->state < SWIM_ALIVE || u->state > SWIM_LEFT)
            return nk_status_make(NK_DATA_LOSS, "swim packet: update %u has unknown state %u",
                                  i + 1, u->state);
        if (u->id == 0)
            return nk_status_make(NK_DATA_LOSS, "swim packet: update %u is about member id 0",
                                  i + 1);
        if (!nk_reader_lenbytes(&r, SWIM_MAX_ADDR, &u->addr))
            return nk_status_make(NK_DATA_LOSS, "swim packet: update %u address truncated", i + 1);
        if (u->addr.len == 0)
            return nk_status_make(NK_DATA_LOSS, "swim packet: update %u has an empty address",
                                  i + 1);
    }
    if (nk_reader_left(&r) != 0)
        return nk_status_make(NK_DATA_LOSS, "swim packet: %zu trailing bytes", nk_reader_left(&r));
    return NK_OK;
}
