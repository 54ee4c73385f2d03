/*
 * block.c: decoding of stored blocks and the cursor over a block's entries.
 *
 * Every structure here comes from disk and is untrusted: a block is checked
 * (trailer CRC, restart array) once when it is loaded, so that the cursor,
 * which runs on every lookup, only needs the cheap per-entry bounds checks.
 * An entry that fails them marks the cursor corrupt; callers turn that into
 * NK_DATA_LOSS naming the file and block.
 */
#include "sstable/sst_internal.h"

#include <lz4.h>
#include <stdlib.h>
#include <zstd.h>

struct sst_block *sst_block_alloc(size_t n)
{
    size_t at = (n + 7) & ~(size_t)7;
    uint8_t *base = nk_malloc(at + sizeof(struct sst_block));
    struct sst_block *b = (struct sst_block *)(base + at);
    memset(b, 0, sizeof *b);
    b->buf = base;
    return b;
}

void sst_block_free(struct sst_block *b)
{
    if (b)
        free(b->buf);
}

bool sst_block_init(struct sst_block *b)
{
    if (b->size < 4)
        return false;
    uint32_t n = nk_dec_fixed32(b->data + b->size - 4);
    if (n == 0 || n > (b->size - 4) / 4)
        return false;
    uint32_t roff = b->size - 4 - 4 * n;
    const uint8_t *r = b->data + roff;
    /* Restarts must start at 0 and strictly increase inside the entry area, so
     * that the binary search in sst_bi_seek never leaves the block. */
    uint32_t prev = 0;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t v = nk_dec_fixed32(r + 4 * i);
        if (i == 0 ? v != 0 : (v <= prev || v >= roff))
            return false;
        prev = v;
    }
    if (roff == 0 && n != 1)
        return false;
    b->restart_off = roff;
    b->num_restarts = n;
    return true;
}

static inline uint32_t restart_at(const struct sst_block *b, uint32_t i)
{
    return nk_dec_fixed32(b->data + b->restart_off + 4 * i);
}

/* Decodes the three varints of an entry at p; returns the key delta's start
 * or NULL when the entry does not fit before limit. */
static inline const uint8_t *decode_entry(const uint8_t *p, const uint8_t *limit, uint32_t *shared,
                                          uint32_t *unshared, uint32_t *vlen)
{
    if (limit - p < 3)
        return NULL;
    if ((p[0] | p[1] | p[2]) < 128) {
        *shared = p[0];
        *unshared = p[1];
        *vlen = p[2];
        p += 3;
    } else {
        if (!(p = nk_dec_varint32(p, limit, shared)))
            return NULL;
        if (!(p = nk_dec_varint32(p, limit, unshared)))
            return NULL;
        if (!(p = nk_dec_varint32(p, limit, vlen)))
            return NULL;
    }
    if ((uint64_t)*unshared + *vlen > (uint64_t)(limit - p))
        return NULL;
    return p;
}

void sst_bi_init(struct sst_blk_iter *bi, const struct sst_block *b, struct nk_buf *key)
{
    bi->b = b;
    bi->key = key;
    bi->value = nk_slice_make(NULL, 0);
    bi->cur = bi->next = 0;
    bi->valid = false;
    bi->corrupt = false;
}

static inline void set_corrupt(struct sst_blk_iter *bi)
{
    bi->valid = false;
    bi->corrupt = true;
}

/* Parses the entry at bi->next into the cursor. */
static inline void parse_next(struct sst_blk_iter *bi)
{
    const struct sst_block *b = bi->b;
    if (bi->next >= b->restart_off) {
        bi->valid = false;
        return;
    }
    const uint8_t *p = b->data + bi->next;
    const uint8_t *limit = b->data + b->restart_off;
    uint32_t shared, unshared, vlen;
    p = decode_entry(p, limit, &shared, &unshared, &vlen);
    if (!p || shared > bi->key->len || (uint64_t)shared + unshared > SST_MAX_KEY) {
        set_corrupt(bi);
        return;
    }
    struct nk_buf *k = bi->key;
    k->len = shared;
    nk_buf_append(k, p, unshared);
    bi->value = nk_slice_make(p + unshared, vlen);
    bi->cur = bi->next;
    bi->next = (uint32_t)(p + unshared + vlen - b->data);
    bi->valid = true;
}

void sst_bi_first(struct sst_blk_iter *bi)
{
    bi->corrupt = false;
    bi->key->len = 0;
    bi->next = 0;
    parse_next(bi);
}

void sst_bi_next(struct sst_blk_iter *bi)
{
    NK_DASSERT(bi->valid);
    parse_next(bi);
}

void sst_bi_seek(struct sst_blk_iter *bi, struct nk_slice target, sst_cmp_fn cmp)
{
    const struct sst_block *b = bi->b;
    bi->corrupt = false;
    bi->valid = false;
    if (b->restart_off == 0)
        return; /* empty block */
    const uint8_t *limit = b->data + b->restart_off;
    /* Blocks are read at random, so each restart key is a cache miss: ask
     * for all of them at once rather than one per binary-search step. */
    if (b->num_restarts <= 8)
        for (uint32_t i = 1; i < b->num_restarts; i++)
            __builtin_prefetch(b->data + restart_at(b, i));
    /* Last restart whose key is < target: every entry before it is smaller. */
    uint32_t lo = 0, hi = b->num_restarts - 1;
    while (lo < hi) {
        uint32_t mid = (lo + hi + 1) / 2;
        uint32_t shared, unshared, vlen;
        const uint8_t *p = decode_entry(b->data + restart_at(b, mid), limit, &shared, &unshared,
                                        &vlen);
        if (!p || shared != 0) {
            set_corrupt(bi);
            return;
        }
        if (sst_cmp(cmp, nk_slice_make(p, unshared), target) < 0)
            lo = mid;
        else
            hi = mid - 1;
    }
    bi->key->len = 0;
    bi->next = restart_at(b, lo);
    /* Likewise the lines of the restart interval the scan walks (<= ~2 KiB
     * for 4 KiB blocks): fetched in parallel instead of one miss per entry. */
    uint32_t end = lo + 1 < b->num_restarts ? restart_at(b, lo + 1) : b->restart_off;
    end = NK_MIN(end, bi->next + 4096); /* huge entries: no point */
    for (uint32_t o = (bi->next & ~63u) + 64; o < end; o += 64)
        __builtin_prefetch(b->data + o);
    for (;;) {
        parse_next(bi);
        if (!bi->valid)
            return;
        if (sst_cmp(cmp, nk_slice_make(bi->key->data, bi->key->len), target) >= 0)
            return;
    }
}

/* ------------------------------------------------------------ stored blocks */

nk_status sst_block_from_stored(struct sst_block *hold, const uint8_t *p, uint64_t size,
                                bool verify, bool has_restarts, const char *path,
                                uint64_t offset, struct sst_block **out)
{
    *out = NULL;
    uint8_t type = p[size];
    if (verify) {
        uint32_t want = nk_crc32c_unmask(nk_dec_fixed32(p + size + 1));
        uint32_t got = sst_crc32c(p, size + 1);
        if (want != got) {
            sst_block_free(hold);
            return nk_status_make(NK_DATA_LOSS,
                                  "sstable %s: block at offset %" PRIu64
                                  " (%" PRIu64 " bytes): checksum mismatch",
                                  path, offset, size);
        }
    }
    struct sst_block *b = NULL;
    if (type == SST_BLOCK_RAW) {
        if (size > UINT32_MAX) {
            sst_block_free(hold);
            return nk_status_make(NK_DATA_LOSS, "sstable %s: block at offset %" PRIu64 " too large",
                                  path, offset);
        }
        b = hold;
        b->data = p;
        b->size = (uint32_t)size;
    } else if (type == SST_BLOCK_LZ4 || type == SST_BLOCK_ZSTD) {
        uint32_t raw_len;
        const uint8_t *q = nk_dec_varint32(p, p + size, &raw_len);
        if (!q || raw_len > SST_MAX_BLOCK_RAW || size - (uint64_t)(q - p) > INT32_MAX) {
            sst_block_free(hold);
            return nk_status_make(NK_DATA_LOSS,
                                  "sstable %s: block at offset %" PRIu64
                                  ": bad uncompressed length",
                                  path, offset);
        }
        size_t clen = (size_t)(size - (uint64_t)(q - p));
        b = sst_block_alloc(raw_len);
        bool ok;
        if (type == SST_BLOCK_LZ4) {
            int r = LZ4_decompress_safe((const char *)q, (char *)b->buf, (int)clen, (int)raw_len);
            ok = r >= 0 && (uint32_t)r == raw_len;
        } else {
            size_t r = ZSTD_decompress(b->buf, raw_len, q, clen);
            ok = !ZSTD_isError(r) && r == raw_len;
        }
        sst_block_free(hold);
        if (!ok) {
            sst_block_free(b);
            return nk_status_make(NK_DATA_LOSS,
                                  "sstable %s: block at offset %" PRIu64 ": %s data is corrupt",
                                  path, offset, type == SST_BLOCK_LZ4 ? "lz4" : "zstd");
        }
        b->data = b->buf;
        b->size = raw_len;
    } else {
        sst_block_free(hold);
        return nk_status_make(NK_DATA_LOSS,
                              "sstable %s: block at offset %" PRIu64 ": unknown block type %u",
                              path, offset, type);
    }
    if (has_restarts && !sst_block_init(b)) {
        sst_block_free(b);
        return nk_status_make(NK_DATA_LOSS,
                              "sstable %s: block at offset %" PRIu64 ": malformed restart array",
                              path, offset);
    }
    *out = b;
    return NK_OK;
}

/* ----------------------------------------------------------------- footer */

void sst_footer_encode(const struct sst_footer *f, uint8_t *p)
{
    memset(p, 0, SST_FOOTER_SIZE);
    nk_enc_fixed64(p + 0, f->filter.offset);
    nk_enc_fixed64(p + 8, f->filter.size);
    nk_enc_fixed64(p + 16, f->index.offset);
    nk_enc_fixed64(p + 24, f->index.size);
    nk_enc_fixed64(p + 32, f->props.offset);
    nk_enc_fixed64(p + 40, f->props.size);
    nk_enc_fixed32(p + 48, f->version);
    nk_enc_fixed32(p + 52, nk_crc32c_mask(nk_crc32c(p, 52)));
    nk_enc_fixed64(p + 56, SST_MAGIC);
}

nk_status sst_footer_decode(const uint8_t *p, const char *path, struct sst_footer *out)
{
    if (nk_dec_fixed64(p + 56) != SST_MAGIC)
        return nk_status_make(NK_DATA_LOSS,
                              "sstable %s: bad magic number in footer (not an sstable, or "
                              "truncated)",
                              path);
    if (nk_crc32c_unmask(nk_dec_fixed32(p + 52)) != nk_crc32c(p, 52))
        return nk_status_make(NK_DATA_LOSS, "sstable %s: footer checksum mismatch", path);
    out->filter.offset = nk_dec_fixed64(p + 0);
    out->filter.size = nk_dec_fixed64(p + 8);
    out->index.offset = nk_dec_fixed64(p + 16);
    out->index.size = nk_dec_fixed64(p + 24);
    out->props.offset = nk_dec_fixed64(p + 32);
    out->props.size = nk_dec_fixed64(p + 40);
    out->version = nk_dec_fixed32(p + 48);
    if (out->version != SST_FORMAT_VERSION)
        return nk_status_make(NK_DATA_LOSS, "sstable %s: unsupported format version %u", path,
                              out->version);
    return NK_OK;
}

/* ------------------------------------------------------------- properties */

nk_status sst_props_decode(const uint8_t *p, size_t n, const char *path, struct sst_props *out)
{
    struct nk_reader r;
    nk_reader_init(&r, p, n);
    uint8_t ver = 0;
    memset(out, 0, sizeof *out);
    nk_reader_u8(&r, &ver);
    nk_reader_varint64(&r, &out->num_entries);
    nk_reader_varint64(&r, &out->raw_key_bytes);
    nk_reader_varint64(&r, &out->raw_value_bytes);
    nk_reader_varint64(&r, &out->num_data_blocks);
    nk_reader_varint64(&r, &out->data_size);
    nk_reader_varint32(&r, &out->compression);
    nk_reader_varint32(&r, &out->bloom_bits_per_key);
    nk_reader_varint32(&r, &out->restart_interval);
    nk_reader_varint32(&r, &out->block_size);
    nk_reader_lenbytes(&r, SST_MAX_KEY, &out->smallest);
    nk_reader_lenbytes(&r, SST_MAX_KEY, &out->largest);
    nk_reader_lenbytes(&r, 255, &out->cmp_name);
    if (r.bad || ver != 1 || nk_reader_left(&r) != 0 || out->compression > SST_COMPRESS_ZSTD)
        return nk_status_make(NK_DATA_LOSS, "sstable %s: malformed properties block", path);
    return NK_OK;
}

/* ----------------------------------------------------------------- filter */

nk_status sst_filter_decode(const uint8_t *p, size_t n, const char *path, struct sst_filter *out)
{
    if (n < 5)
        return nk_status_make(NK_DATA_LOSS, "sstable %s: filter block too short", path);
    uint32_t nlines = nk_dec_fixed32(p + n - 5);
    uint32_t k = p[n - 1];
    if (nlines == 0 || k == 0 || k > 30 || (uint64_t)nlines * SST_BLOOM_LINE != n - 5)
        return nk_status_make(NK_DATA_LOSS, "sstable %s: malformed filter block", path);
    out->bits = p;
    out->nlines = nlines;
    out->k = k;
    return NK_OK;
}
