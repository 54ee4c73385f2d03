/* coding.c: slices, growable buffers, varints and the bounds-checked reader. */
#include "util/util.h"

#include <stdlib.h>

int nk_slice_cmp(struct nk_slice a, struct nk_slice b)
{
    size_t n = a.len < b.len ? a.len : b.len;
    int c = n ? memcmp(a.data, b.data, n) : 0;
    if (c)
        return c;
    return a.len < b.len ? -1 : (a.len > b.len ? 1 : 0);
}

void nk_buf_init(struct nk_buf *b)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}

void nk_buf_free(struct nk_buf *b)
{
    free(b->data);
    nk_buf_init(b);
}

void nk_buf_reserve(struct nk_buf *b, size_t extra)
{
    if (b->len + extra <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < b->len + extra)
        cap *= 2;
    b->data = nk_realloc(b->data, cap);
    b->cap = cap;
}

void nk_buf_append(struct nk_buf *b, const void *p, size_t n)
{
    if (!n)
        return;
    nk_buf_reserve(b, n);
    memcpy(b->data + b->len, p, n);
    b->len += n;
}

void nk_buf_put_u8(struct nk_buf *b, uint8_t v)
{
    nk_buf_reserve(b, 1);
    b->data[b->len++] = v;
}

void nk_buf_put_fixed16(struct nk_buf *b, uint16_t v)
{
    nk_buf_reserve(b, 2);
    nk_enc_fixed16(b->data + b->len, v);
    b->len += 2;
}

void nk_buf_put_fixed32(struct nk_buf *b, uint32_t v)
{
    nk_buf_reserve(b, 4);
    nk_enc_fixed32(b->data + b->len, v);
    b->len += 4;
}

void nk_buf_put_fixed64(struct nk_buf *b, uint64_t v)
{
    nk_buf_reserve(b, 8);
    nk_enc_fixed64(b->data + b->len, v);
    b->len += 8;
}

void nk_buf_put_varint32(struct nk_buf *b, uint32_t v)
{
    nk_buf_reserve(b, NK_VARINT32_MAX);
    b->len += nk_enc_varint32(b->data + b->len, v);
}

void nk_buf_put_varint64(struct nk_buf *b, uint64_t v)
{
    nk_buf_reserve(b, NK_VARINT64_MAX);
    b->len += nk_enc_varint64(b->data + b->len, v);
}

void nk_buf_put_lenbytes(struct nk_buf *b, const void *p, size_t n)
{
    nk_buf_put_varint64(b, n);
    nk_buf_append(b, p, n);
}

size_t nk_enc_varint32(uint8_t *p, uint32_t v)
{
    return nk_enc_varint64(p, v);
}

size_t nk_enc_varint64(uint8_t *p, uint64_t v)
{
    size_t i = 0;
    while (v >= 0x80) {
        p[i++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    p[i++] = (uint8_t)v;
    return i;
}

size_t nk_varint_len(uint64_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

const uint8_t *nk_dec_varint64(const uint8_t *p, const uint8_t *limit, uint64_t *v)
{
    uint64_t r = 0;
    for (unsigned shift = 0; shift <= 63 && p < limit; shift += 7) {
        uint64_t byte = *p++;
        if (shift == 63 && byte > 1)
            return NULL; /* overflows 64 bits */
        r |= (byte & 0x7f) << shift;
        if (!(byte & 0x80)) {
            *v = r;
            return p;
        }
    }
    return NULL;
}

const uint8_t *nk_dec_varint32(const uint8_t *p, const uint8_t *limit, uint32_t *v)
{
    uint64_t r;
    const uint8_t *q = nk_dec_varint64(p, limit, &r);
    if (!q || r > UINT32_MAX || q - p > NK_VARINT32_MAX)
        return NULL;
    *v = (uint32_t)r;
    return q;
}

static bool reader_need(struct nk_reader *r, size_t n)
{
    if (r->bad || (size_t)(r->end - r->p) < n) {
        r->bad = true;
        return false;
    }
    return true;
}

bool nk_reader_u8(struct nk_reader *r, uint8_t *v)
{
    if (!reader_need(r, 1))
        return false;
    *v = *r->p++;
    return true;
}

bool nk_reader_fixed16(struct nk_reader *r, uint16_t *v)
{
    if (!reader_need(r, 2))
        return false;
    *v = nk_dec_fixed16(r->p);
    r->p += 2;
    return true;
}

bool nk_reader_fixed32(struct nk_reader *r, uint32_t *v)
{
    if (!reader_need(r, 4))
        return false;
    *v = nk_dec_fixed32(r->p);
    r->p += 4;
    return true;
}

bool nk_reader_fixed64(struct nk_reader *r, uint64_t *v)
{
    if (!reader_need(r, 8))
        return false;
    *v = nk_dec_fixed64(r->p);
    r->p += 8;
    return true;
}

bool nk_reader_varint32(struct nk_reader *r, uint32_t *v)
{
    if (r->bad)
        return false;
    const uint8_t *q = nk_dec_varint32(r->p, r->end, v);
    if (!q) {
        r->bad = true;
        return false;
    }
    r->p = q;
    return true;
}

bool nk_reader_varint64(struct nk_reader *r, uint64_t *v)
{
    if (r->bad)
        return false;
    const uint8_t *q = nk_dec_varint64(r->p, r->end, v);
    if (!q) {
        r->bad = true;
        return false;
    }
    r->p = q;
    return true;
}

bool nk_reader_bytes(struct nk_reader *r, size_t n, struct nk_slice *out)
{
    if (!reader_need(r, n))
        return false;
    out->data = r->p;
    out->len = n;
    r->p += n;
    return true;
}

bool nk_reader_lenbytes(struct nk_reader *r, size_t max, struct nk_slice *out)
{
    uint64_t n;
    if (!nk_reader_varint64(r, &n))
        return false;
    if (n > max) {
        r->bad = true;
        return false;
    }
    return nk_reader_bytes(r, (size_t)n, out);
}
