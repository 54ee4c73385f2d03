/*
 * frame.c: the peer frame codec (docs/format/peer-frames.md). Pure functions
 * and a byte-stream state machine, no I/O, so the fuzz target drives exactly
 * what the connections run.
 *
 * The decoder never trusts a declared length: the length is checked against
 * the limit of the frame's type before a byte of payload is kept, and the
 * buffers only grow as payload bytes actually arrive. When a whole frame lies
 * in the caller's input it is checked and handed out in place (no copy).
 */
#include "transport/transport.h"

static uint32_t frame_crc(const uint8_t *hdr8, const uint8_t *p, size_t len)
{
    uint32_t c = nk_crc32c(hdr8, 8);
    return nk_crc32c_extend(c, p, len);
}

void transport_frame_header(uint8_t hdr[TRANSPORT_FRAME_HEADER], uint8_t type, uint8_t flags,
                            const void *p, size_t len)
{
    NK_ASSERT(len <= UINT32_MAX);
    nk_enc_fixed32(hdr, (uint32_t)len);
    hdr[4] = type;
    hdr[5] = flags;
    hdr[6] = 0;
    hdr[7] = 0;
    nk_enc_fixed32(hdr + 8, nk_crc32c_mask(frame_crc(hdr, p, len)));
}

/* ------------------------------------------------------------------ HELLO */

#define HELLO_FIXED 37 /* bytes before the name */

void transport_hello_encode(const struct transport_hello *h, struct nk_buf *out)
{
    size_t nl = strnlen(h->name, TRANSPORT_NAME_MAX);
    nk_buf_put_fixed32(out, TRANSPORT_HELLO_MAGIC);
    nk_buf_put_fixed16(out, h->version);
    nk_buf_put_fixed16(out, 0);
    nk_buf_put_fixed64(out, h->node_id);
    nk_buf_put_fixed64(out, h->cluster_id);
    nk_buf_put_fixed32(out, h->total_shards);
    nk_buf_put_fixed64(out, h->incarnation);
    nk_buf_put_u8(out, (uint8_t)nl);
    nk_buf_append(out, h->name, nl);
}

nk_status transport_hello_decode(const uint8_t *p, size_t n, struct transport_hello *h)
{
    memset(h, 0, sizeof *h);
    if (n < HELLO_FIXED)
        return nk_status_make(NK_DATA_LOSS, "transport: HELLO of %zu bytes, needs at least %d", n,
                              HELLO_FIXED);
    uint32_t magic = nk_dec_fixed32(p);
    if (magic != TRANSPORT_HELLO_MAGIC)
        return nk_status_make(NK_DATA_LOSS,
                              "transport: HELLO magic 0x%08x, expected 0x%08x (not a NoriKV peer)",
                              magic, TRANSPORT_HELLO_MAGIC);
    h->version = nk_dec_fixed16(p + 4);
    uint16_t flags = nk_dec_fixed16(p + 6);
    if (flags != 0)
        return nk_status_make(NK_DATA_LOSS, "transport: HELLO flags 0x%04x, expected 0", flags);
    h->node_id = nk_dec_fixed64(p + 8);
    h->cluster_id = nk_dec_fixed64(p + 16);
    h->total_shards = nk_dec_fixed32(p + 24);
    h->incarnation = nk_dec_fixed64(p + 28);
    size_t nl = p[36];
    if (n != HELLO_FIXED + nl)
        return nk_status_make(NK_DATA_LOSS,
                              "transport: HELLO of %zu bytes with a %zu-byte name (expected %zu)",
                              n, nl, HELLO_FIXED + nl);
    if (h->node_id == 0)
        return nk_status_make(NK_DATA_LOSS, "transport: HELLO with node id 0");
    memcpy(h->name, p + HELLO_FIXED, nl);
    h->name[nl] = 0;
    for (size_t i = 0; i < nl; i++)
        if (h->name[i] < 0x20 || h->name[i] == 0x7f)
            h->name[i] = '?'; /* it ends up in logs */
    return NK_OK;
}

/* ---------------------------------------------------------------- decoder */

void transport_decoder_init(struct transport_decoder *d, uint32_t max_frame_bytes)
{
    memset(d, 0, sizeof *d);
    d->max_frame_bytes = max_frame_bytes;
    nk_buf_init(&d->body);
    nk_buf_init(&d->bulk);
}

void transport_decoder_free(struct transport_decoder *d)
{
    nk_buf_free(&d->body);
    nk_buf_free(&d->bulk);
}

static const char *type_name(uint8_t t)
{
    switch (t) {
    case TRANSPORT_FRAME_HELLO:
        return "HELLO";
    case TRANSPORT_FRAME_ACCEPT:
        return "ACCEPT";
    case TRANSPORT_FRAME_BULK_ACK:
        return "BULK_ACK";
    case TRANSPORT_FRAME_RAFT:
        return "RAFT";
    case TRANSPORT_FRAME_BULK:
        return "BULK";
    case TRANSPORT_FRAME_PING:
        return "PING";
    case TRANSPORT_FRAME_CLOSE:
        return "CLOSE";
    }
    return "?";
}

static enum transport_decode_result fail(struct transport_decoder *d, nk_status *err,
                                         nk_status s)
{
    d->failed = true;
    *err = s;
    return TRANSPORT_DECODE_ERROR;
}

/* Checks a complete header; sets type/flags/need/crc. */
static nk_status check_header(struct transport_decoder *d, const uint8_t *h)
{
    uint32_t len = nk_dec_fixed32(h);
    uint8_t type = h[4], flags = h[5];
    uint16_t reserved = nk_dec_fixed16(h + 6);
    if (reserved != 0)
        return nk_status_make(NK_DATA_LOSS, "transport: frame header reserved bytes 0x%04x",
                              reserved);
    if (type < TRANSPORT_FRAME_HELLO || type > TRANSPORT_FRAME_BULK_ACK)
        return nk_status_make(NK_DATA_LOSS, "transport: unknown frame type %u", type);
    if (d->phase == 0 && type != TRANSPORT_FRAME_HELLO)
        return nk_status_make(NK_DATA_LOSS, "transport: %s frame before HELLO", type_name(type));
    if (d->phase == 1 && type != TRANSPORT_FRAME_ACCEPT && type != TRANSPORT_FRAME_CLOSE)
        return nk_status_make(NK_DATA_LOSS, "transport: %s frame before ACCEPT", type_name(type));
    if (type == TRANSPORT_FRAME_BULK_ACK && len != 8)
        return nk_status_make(NK_DATA_LOSS, "transport: BULK_ACK of %u bytes, expected 8", len);
    if (d->phase == 2 && (type == TRANSPORT_FRAME_HELLO || type == TRANSPORT_FRAME_ACCEPT))
        return nk_status_make(NK_DATA_LOSS, "transport: second %s on a connection",
                              type_name(type));
    if (flags & ~(type == TRANSPORT_FRAME_BULK ? TRANSPORT_FRAME_MORE : 0))
        return nk_status_make(NK_DATA_LOSS, "transport: %s frame flags 0x%02x", type_name(type),
                              flags);
    uint32_t limit;
    switch (type) {
    case TRANSPORT_FRAME_HELLO:
    case TRANSPORT_FRAME_CLOSE:
        limit = TRANSPORT_HELLO_MAX;
        break;
    case TRANSPORT_FRAME_PING:
    case TRANSPORT_FRAME_ACCEPT:
        limit = 0;
        break;
    case TRANSPORT_FRAME_BULK_ACK:
        limit = 8;
        break;
    case TRANSPORT_FRAME_BULK:
        /* the reassembled payload is bounded too */
        limit = d->max_frame_bytes - (uint32_t)NK_MIN(d->bulk.len, d->max_frame_bytes);
        break;
    default:
        limit = d->max_frame_bytes;
    }
    if (len > limit) {
        if (type == TRANSPORT_FRAME_BULK && d->bulk_open)
            return nk_status_make(NK_DATA_LOSS,
                                  "transport: BULK payload over %u bytes (%zu reassembled, "
                                  "fragment of %u)",
                                  d->max_frame_bytes, d->bulk.len, len);
        return nk_status_make(NK_DATA_LOSS, "transport: %s frame of %u bytes exceeds %u",
                              type_name(type), len, limit);
    }
    d->type = type;
    d->flags = flags;
    d->need = len;
    d->crc = nk_crc32c_unmask(nk_dec_fixed32(h + 8));
    memcpy(d->hdr, h, TRANSPORT_FRAME_HEADER);
    return NK_OK;
}

/* A complete, CRC-checked payload: turn it into a frame for the caller, or
 * keep it (BULK fragment) and ask for more. Returns FRAME or MORE. */
static enum transport_decode_result complete(struct transport_decoder *d, const uint8_t *p,
                                             size_t len, struct transport_frame *f,
                                             nk_status *err)
{
    if (d->type == TRANSPORT_FRAME_BULK) {
        d->bulk_received += len;
        bool more = d->flags & TRANSPORT_FRAME_MORE;
        if (more || d->bulk_open) {
            NK_ASSERT(d->bulk.len + len <= d->max_frame_bytes);
            nk_buf_append(&d->bulk, p, len);
            d->bulk_open = more;
            if (more)
                return TRANSPORT_DECODE_MORE;
            p = d->bulk.data;
            len = d->bulk.len;
            d->bulk.len = 0; /* handed out now; reused by the next payload */
        }
    }
    if (d->type == TRANSPORT_FRAME_HELLO)
        d->phase = 1;
    else if (d->type == TRANSPORT_FRAME_ACCEPT)
        d->phase = 2;
    f->type = d->type;
    f->data = p ? p : (const uint8_t *)"";
    f->len = len;
    (void)err;
    return TRANSPORT_DECODE_FRAME;
}

enum transport_decode_result transport_decoder_next(struct transport_decoder *d,
                                                    const uint8_t **pp, size_t *np,
                                                    struct transport_frame *f, nk_status *err)
{
    *err = NK_OK;
    if (d->failed)
        return fail(d, err, nk_status_make(NK_DATA_LOSS, "transport: decoder already failed"));
    /* Buffers that held a huge payload handed out last time are released, so
     * an idle connection does not pin 16 MiB. */
    if (!d->in_body && d->body.cap > (1u << 20))
        nk_buf_free(&d->body);
    if (!d->bulk_open && d->bulk.cap > (1u << 20))
        nk_buf_free(&d->bulk);

    for (;;) {
        const uint8_t *p = *pp;
        size_t n = *np;
        if (!d->in_body) {
            if (d->hdr_have == 0 && n >= TRANSPORT_FRAME_HEADER) {
                nk_status s = check_header(d, p);
                if (!nk_ok(s))
                    return fail(d, err, s);
                p += TRANSPORT_FRAME_HEADER;
                n -= TRANSPORT_FRAME_HEADER;
                if (n >= d->need) {
                    /* fast path: the whole frame is in the input */
                    if (frame_crc(d->hdr, p, d->need) != d->crc)
                        return fail(d, err,
                                    nk_status_make(NK_DATA_LOSS,
                                                   "transport: CRC mismatch on a %s frame of %u "
                                                   "bytes",
                                                   type_name(d->type), d->need));
                    *pp = p + d->need;
                    *np = n - d->need;
                    enum transport_decode_result r = complete(d, p, d->need, f, err);
                    if (r == TRANSPORT_DECODE_FRAME)
                        return r;
                    continue;
                }
                d->in_body = true;
                d->body.len = 0;
                *pp = p;
                *np = n;
                continue;
            }
            if (n == 0)
                return TRANSPORT_DECODE_MORE;
            size_t take = NK_MIN(n, TRANSPORT_FRAME_HEADER - d->hdr_have);
            memcpy(d->hdr + d->hdr_have, p, take);
            d->hdr_have += take;
            *pp = p + take;
            *np = n - take;
            if (d->hdr_have < TRANSPORT_FRAME_HEADER)
                return TRANSPORT_DECODE_MORE;
            d->hdr_have = 0;
            uint8_t h[TRANSPORT_FRAME_HEADER];
            memcpy(h, d->hdr, sizeof h);
            nk_status s = check_header(d, h);
            if (!nk_ok(s))
                return fail(d, err, s);
            d->in_body = true;
            d->body.len = 0;
            continue;
        }
        /* gathering a payload that spans inputs */
        size_t want = d->need - d->body.len;
        size_t take = NK_MIN(n, want);
        if (take)
            nk_buf_append(&d->body, p, take);
        *pp = p + take;
        *np = n - take;
        if (d->body.len < d->need)
            return TRANSPORT_DECODE_MORE;
        d->in_body = false;
        if (frame_crc(d->hdr, d->body.data, d->body.len) != d->crc)
            return fail(d, err,
                        nk_status_make(NK_DATA_LOSS,
                                       "transport: CRC mismatch on a %s frame of %u bytes",
                                       type_name(d->type), d->need));
        enum transport_decode_result r = complete(d, d->body.data, d->body.len, f, err);
        if (r == TRANSPORT_DECODE_FRAME)
            return r;
    }
}
