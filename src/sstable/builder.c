/*
 * builder.c: writes a table in one pass.
 *
 * Entries go into the current data block (prefix-compressed against the
 * previous key, a full key every restart_interval entries). When the block
 * reaches block_size it is compressed if that pays (saves >= 1/8), framed
 * with its type byte and CRC32C and appended to an output buffer of bounded
 * size (flushed with write(2) at SST_WRITE_BUFFER). The index entry of a
 * block is written only when the next key is known, so that its separator
 * can be shortened to something between the two blocks. The bloom filter
 * keeps one 64-bit hash per distinct filter key until finish.
 */
#include "sstable/sst_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <lz4.h>
#include <stdlib.h>
#include <unistd.h>
#include <zstd.h>

#define SST_WRITE_BUFFER (256u * 1024u)

/* ------------------------------------------------------ comparator, options */

static int bytewise_cmp(struct nk_slice a, struct nk_slice b)
{
    return sst_bytewise_cmp_inline(a, b);
}

static void bytewise_separator(struct nk_slice a, struct nk_slice b, struct nk_buf *out)
{
    size_t n = NK_MIN(a.len, b.len);
    size_t i = 0;
    while (i < n && a.data[i] == b.data[i])
        i++;
    out->len = 0;
    /* a[0..i] + (a[i] + 1) is > a and still < b when the byte can grow
     * without reaching b[i]; otherwise a itself is the separator. */
    if (i < n && a.data[i] < 0xff && a.data[i] + 1 < b.data[i]) {
        nk_buf_append(out, a.data, i);
        nk_buf_put_u8(out, (uint8_t)(a.data[i] + 1));
        return;
    }
    nk_buf_append(out, a.data, a.len);
}

const struct sst_comparator sst_bytewise = {
    .cmp = bytewise_cmp,
    .filter_key = NULL,
    .name = "bytewise",
    .separator = bytewise_separator,
    .orders_by_filter_key = true,
};

void sst_options_default(struct sst_options *o)
{
    o->cmp = &sst_bytewise;
    o->block_size = 4096;
    o->restart_interval = 16;
    o->compression = SST_COMPRESS_NONE;
    o->zstd_level = 3;
    o->bloom_bits_per_key = 10;
}

void sst_file_info_free(struct sst_file_info *info)
{
    free(info->smallest);
    free(info->largest);
    info->smallest = info->largest = NULL;
    info->smallest_len = info->largest_len = 0;
}

/* ---------------------------------------------------------- block builder */

struct blockb {
    struct nk_buf buf;
    uint32_t *restarts;
    size_t nr, capr;
    uint32_t counter, interval;
    struct nk_buf last;
    uint64_t entries;
};

static void bb_push_restart(struct blockb *bb, uint32_t off)
{
    if (bb->nr == bb->capr) {
        bb->capr = bb->capr ? bb->capr * 2 : 64;
        bb->restarts = nk_realloc(bb->restarts, bb->capr * sizeof *bb->restarts);
    }
    bb->restarts[bb->nr++] = off;
}

static void bb_reset(struct blockb *bb)
{
    bb->buf.len = 0;
    bb->nr = 0;
    bb_push_restart(bb, 0);
    bb->counter = 0;
    bb->last.len = 0;
    bb->entries = 0;
}

static void bb_init(struct blockb *bb, uint32_t interval)
{
    memset(bb, 0, sizeof *bb);
    bb->interval = interval;
    bb_reset(bb);
}

static void bb_free(struct blockb *bb)
{
    nk_buf_free(&bb->buf);
    nk_buf_free(&bb->last);
    free(bb->restarts);
}

static inline size_t bb_estimate(const struct blockb *bb)
{
    return bb->buf.len + bb->nr * 4 + 4;
}

static void bb_add(struct blockb *bb, struct nk_slice key, struct nk_slice value)
{
    size_t shared = 0;
    if (bb->counter < bb->interval) {
        size_t n = NK_MIN(bb->last.len, key.len);
        while (shared < n && bb->last.data[shared] == key.data[shared])
            shared++;
    } else {
        bb_push_restart(bb, (uint32_t)bb->buf.len);
        bb->counter = 0;
    }
    size_t unshared = key.len - shared;
    nk_buf_reserve(&bb->buf, 3 * NK_VARINT32_MAX + unshared + value.len);
    uint8_t *p = bb->buf.data + bb->buf.len;
    p += nk_enc_varint32(p, (uint32_t)shared);
    p += nk_enc_varint32(p, (uint32_t)unshared);
    p += nk_enc_varint32(p, (uint32_t)value.len);
    if (unshared)
        memcpy(p, key.data + shared, unshared);
    p += unshared;
    if (value.len)
        memcpy(p, value.data, value.len);
    p += value.len;
    bb->buf.len = (size_t)(p - bb->buf.data);
    bb->last.len = shared;
    nk_buf_append(&bb->last, key.data + shared, unshared);
    bb->counter++;
    bb->entries++;
}

/* Appends the restart array; the block's contents are then bb->buf. */
static void bb_finish(struct blockb *bb)
{
    nk_buf_reserve(&bb->buf, bb->nr * 4 + 4);
    for (size_t i = 0; i < bb->nr; i++)
        nk_buf_put_fixed32(&bb->buf, bb->restarts[i]);
    nk_buf_put_fixed32(&bb->buf, (uint32_t)bb->nr);
}

/* ---------------------------------------------------------------- builder */

struct sst_builder {
    char *path;
    int fd;
    struct sst_options o;
    sst_cmp_fn cmp; /* NULL: bytewise */
    nk_status err;  /* sticky: the first failure */

    uint64_t offset;     /* file bytes produced so far (written + buffered) */
    struct nk_buf out;   /* bounded by SST_WRITE_BUFFER + one block */
    struct nk_buf cbuf;  /* compression output */
    ZSTD_CCtx *zctx;

    struct blockb data, index;
    struct nk_buf last_key, smallest, sep;
    bool pending; /* a finished data block awaits its index entry */
    struct sst_handle pending_handle;

    uint64_t num_entries, raw_key_bytes, raw_value_bytes, num_data_blocks, data_size;

    uint64_t *hashes; /* one per distinct filter key, in key order */
    size_t nh, caph;
};

static nk_status copy_err(const struct sst_builder *b)
{
    return nk_status_make(b->err.code, "%s", nk_status_msg(b->err));
}

static void flush_out(struct sst_builder *b)
{
    size_t done = 0;
    while (nk_ok(b->err) && done < b->out.len) {
        ssize_t w = nk_fs_write(b->fd, b->out.data + done, b->out.len - done);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            b->err = nk_status_errno(errno, "sstable %s: write", b->path);
            break;
        }
        done += (size_t)w;
    }
    b->out.len = 0;
}

static void emit(struct sst_builder *b, const void *p, size_t n)
{
    nk_buf_append(&b->out, p, n);
    b->offset += n;
    if (b->out.len >= SST_WRITE_BUFFER)
        flush_out(b);
}

/* Frames contents as a block (compressing when asked and worthwhile). */
static struct sst_handle write_block(struct sst_builder *b, struct nk_slice contents,
                                     bool compress)
{
    uint8_t type = SST_BLOCK_RAW;
    struct nk_slice payload = contents;
    NK_ASSERT(contents.len <= SST_MAX_BLOCK_RAW); /* what readers accept */
    if (compress && b->o.compression != SST_COMPRESS_NONE && contents.len > 0) {
        size_t bound = b->o.compression == SST_COMPRESS_LZ4
                           ? (size_t)LZ4_compressBound((int)contents.len)
                           : ZSTD_compressBound(contents.len);
        nk_buf_clear(&b->cbuf);
        nk_buf_reserve(&b->cbuf, NK_VARINT32_MAX + bound);
        size_t hl = nk_enc_varint32(b->cbuf.data, (uint32_t)contents.len);
        size_t clen = 0;
        if (b->o.compression == SST_COMPRESS_LZ4) {
            int r = LZ4_compress_default((const char *)contents.data, (char *)b->cbuf.data + hl,
                                         (int)contents.len, (int)bound);
            clen = r > 0 ? (size_t)r : 0;
        } else {
            if (!b->zctx)
                b->zctx = ZSTD_createCCtx();
            size_t r = ZSTD_compressCCtx(b->zctx, b->cbuf.data + hl, bound, contents.data,
                                         contents.len, b->o.zstd_level);
            clen = ZSTD_isError(r) ? 0 : r;
        }
        /* Keep the compressed form only when it saves at least 1/8: reading
         * an uncompressed block is cheaper than decompressing a barely smaller
         * one. */
        if (clen > 0 && hl + clen <= contents.len - contents.len / 8) {
            type = b->o.compression == SST_COMPRESS_LZ4 ? SST_BLOCK_LZ4 : SST_BLOCK_ZSTD;
            payload = nk_slice_make(b->cbuf.data, hl + clen);
        }
    }
    struct sst_handle h = {b->offset, payload.len};
    uint8_t trailer[SST_TRAILER_SIZE];
    trailer[0] = type;
    uint32_t crc = nk_crc32c_extend(sst_crc32c(payload.data, payload.len), &type, 1);
    nk_enc_fixed32(trailer + 1, nk_crc32c_mask(crc));
    emit(b, payload.data, payload.len);
    emit(b, trailer, sizeof trailer);
    return h;
}

static void add_index_entry(struct sst_builder *b, struct nk_slice sep)
{
    uint8_t v[2 * NK_VARINT64_MAX];
    size_t n = nk_enc_varint64(v, b->pending_handle.offset);
    n += nk_enc_varint64(v + n, b->pending_handle.size);
    bb_add(&b->index, sep, nk_slice_make(v, n));
    b->pending = false;
}

static void flush_data_block(struct sst_builder *b)
{
    if (b->data.entries == 0)
        return;
    NK_ASSERT(!b->pending);
    bb_finish(&b->data);
    b->pending_handle = write_block(b, nk_slice_make(b->data.buf.data, b->data.buf.len), true);
    b->pending = true;
    b->num_data_blocks++;
    b->data_size = b->offset;
    bb_reset(&b->data);
}

nk_status sst_builder_open(const char *path, const struct sst_options *o, struct sst_builder **out)
{
    struct sst_options opt;
    if (o)
        opt = *o;
    else
        sst_options_default(&opt);
    if (!opt.cmp)
        opt.cmp = &sst_bytewise;
    if (opt.block_size == 0 || opt.block_size > SST_MAX_BLOCK_SIZE)
        return nk_status_make(NK_INVALID_ARGUMENT, "sstable %s: block_size %u not in 1..%u", path,
                              opt.block_size, SST_MAX_BLOCK_SIZE);
    if (opt.restart_interval == 0 || opt.restart_interval > 1024)
        return nk_status_make(NK_INVALID_ARGUMENT, "sstable %s: restart_interval %u not in 1..1024",
                              path, opt.restart_interval);
    if (opt.compression > SST_COMPRESS_ZSTD)
        return nk_status_make(NK_INVALID_ARGUMENT, "sstable %s: unknown compression %d", path,
                              (int)opt.compression);
    if (opt.bloom_bits_per_key > 100)
        return nk_status_make(NK_INVALID_ARGUMENT, "sstable %s: bloom_bits_per_key %u over 100",
                              path, opt.bloom_bits_per_key);
    if (!opt.cmp->name || strlen(opt.cmp->name) > 255 || !opt.cmp->cmp)
        return nk_status_make(NK_INVALID_ARGUMENT,
                              "sstable %s: comparator needs cmp and a name of at most 255 bytes",
                              path);
    int fd = nk_fs_open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return nk_status_errno(errno, "sstable %s: create", path);
    struct sst_builder *b = nk_calloc(1, sizeof *b);
    b->path = nk_strdup(path);
    b->fd = fd;
    b->o = opt;
    b->cmp = opt.cmp->cmp == sst_bytewise.cmp ? NULL : opt.cmp->cmp;
    b->err = NK_OK;
    bb_init(&b->data, opt.restart_interval);
    bb_init(&b->index, 16);
    *out = b;
    return NK_OK;
}

nk_status sst_builder_add(struct sst_builder *b, struct nk_slice key, struct nk_slice value)
{
    if (!nk_ok(b->err))
        return copy_err(b);
    if (key.len > SST_MAX_KEY)
        return nk_status_make(NK_INVALID_ARGUMENT,
                              "sstable %s: key of %zu bytes exceeds the maximum of %u", b->path,
                              key.len, SST_MAX_KEY);
    if (value.len > SST_MAX_VALUE)
        return nk_status_make(NK_INVALID_ARGUMENT,
                              "sstable %s: value of %zu bytes exceeds the maximum of %u", b->path,
                              value.len, SST_MAX_VALUE);
    struct nk_slice last = nk_slice_make(b->last_key.data, b->last_key.len);
    if (b->num_entries > 0)
        NK_ASSERT(sst_cmp(b->cmp, last, key) < 0);
    else
        nk_buf_append(&b->smallest, key.data, key.len);

    if (b->pending) {
        if (b->o.cmp->separator) {
            b->o.cmp->separator(last, key, &b->sep);
            add_index_entry(b, nk_slice_make(b->sep.data, b->sep.len));
        } else {
            add_index_entry(b, last);
        }
    }

    if (b->o.bloom_bits_per_key > 0) {
        struct nk_slice fk = b->o.cmp->filter_key ? b->o.cmp->filter_key(key) : key;
        uint64_t h = sst_bloom_hash(fk);
        /* Consecutive versions of one user key share a filter key. */
        if (b->nh == 0 || b->hashes[b->nh - 1] != h) {
            if (b->nh == b->caph) {
                b->caph = b->caph ? b->caph * 2 : 1024;
                b->hashes = nk_realloc(b->hashes, b->caph * sizeof *b->hashes);
            }
            b->hashes[b->nh++] = h;
        }
    }

    bb_add(&b->data, key, value);
    b->last_key.len = 0;
    nk_buf_append(&b->last_key, key.data, key.len);
    b->num_entries++;
    b->raw_key_bytes += key.len;
    b->raw_value_bytes += value.len;
    if (bb_estimate(&b->data) >= b->o.block_size)
        flush_data_block(b);
    if (!nk_ok(b->err))
        return copy_err(b);
    return NK_OK;
}

uint64_t sst_builder_file_size(struct sst_builder *b)
{
    return b->offset + (b->data.entries ? bb_estimate(&b->data) : 0);
}

uint64_t sst_builder_num_entries(struct sst_builder *b)
{
    return b->num_entries;
}

static void builder_free(struct sst_builder *b)
{
    if (b->fd >= 0)
        nk_fs_close(b->fd);
    nk_status_free(&b->err);
    free(b->path);
    nk_buf_free(&b->out);
    nk_buf_free(&b->cbuf);
    if (b->zctx)
        ZSTD_freeCCtx(b->zctx);
    bb_free(&b->data);
    bb_free(&b->index);
    nk_buf_free(&b->last_key);
    nk_buf_free(&b->smallest);
    nk_buf_free(&b->sep);
    free(b->hashes);
    free(b);
}

void sst_builder_abandon(struct sst_builder *b)
{
    if (!b)
        return;
    nk_fs_unlink(b->path);
    builder_free(b);
}

nk_status sst_builder_finish(struct sst_builder *b, struct sst_file_info *info)
{
    if (info)
        memset(info, 0, sizeof *info);
    flush_data_block(b);
    if (b->pending)
        add_index_entry(b, nk_slice_make(b->last_key.data, b->last_key.len));

    struct sst_footer f = {.version = SST_FORMAT_VERSION};
    if (b->o.bloom_bits_per_key > 0) {
        uint64_t bits = (uint64_t)b->nh * b->o.bloom_bits_per_key;
        uint64_t nlines = (bits + 511) / 512;
        if (nlines == 0)
            nlines = 1;
        NK_ASSERT(nlines <= UINT32_MAX);
        uint32_t k = sst_bloom_k(b->o.bloom_bits_per_key);
        size_t fsz = (size_t)nlines * SST_BLOOM_LINE;
        uint8_t *fb = nk_calloc(1, fsz + 5);
        for (size_t i = 0; i < b->nh; i++)
            sst_bloom_set(fb, (uint32_t)nlines, k, b->hashes[i]);
        nk_enc_fixed32(fb + fsz, (uint32_t)nlines);
        fb[fsz + 4] = (uint8_t)k;
        f.filter = write_block(b, nk_slice_make(fb, fsz + 5), false);
        free(fb);
    }

    bb_finish(&b->index);
    f.index = write_block(b, nk_slice_make(b->index.buf.data, b->index.buf.len), false);

    struct nk_buf p;
    nk_buf_init(&p);
    nk_buf_put_u8(&p, 1); /* properties layout version */
    nk_buf_put_varint64(&p, b->num_entries);
    nk_buf_put_varint64(&p, b->raw_key_bytes);
    nk_buf_put_varint64(&p, b->raw_value_bytes);
    nk_buf_put_varint64(&p, b->num_data_blocks);
    nk_buf_put_varint64(&p, b->data_size);
    nk_buf_put_varint32(&p, (uint32_t)b->o.compression);
    nk_buf_put_varint32(&p, b->o.bloom_bits_per_key);
    nk_buf_put_varint32(&p, b->o.restart_interval);
    nk_buf_put_varint32(&p, b->o.block_size);
    nk_buf_put_lenbytes(&p, b->smallest.data, b->smallest.len);
    nk_buf_put_lenbytes(&p, b->last_key.data, b->last_key.len);
    nk_buf_put_lenbytes(&p, b->o.cmp->name, strlen(b->o.cmp->name));
    f.props = write_block(b, nk_slice_make(p.data, p.len), false);
    nk_buf_free(&p);

    uint8_t foot[SST_FOOTER_SIZE];
    sst_footer_encode(&f, foot);
    emit(b, foot, sizeof foot);
    flush_out(b);
    if (nk_ok(b->err) && nk_fs_fdatasync(b->fd) != 0)
        b->err = nk_status_errno(errno, "sstable %s: fdatasync", b->path);
    int rc = nk_fs_close(b->fd);
    b->fd = -1;
    if (nk_ok(b->err) && rc != 0)
        b->err = nk_status_errno(errno, "sstable %s: close", b->path);
    if (!nk_ok(b->err)) {
        nk_status s = b->err;
        b->err = NK_OK;
        nk_fs_unlink(b->path);
        builder_free(b);
        return s;
    }
    if (info) {
        info->file_size = b->offset;
        info->num_entries = b->num_entries;
        info->raw_key_bytes = b->raw_key_bytes;
        info->raw_value_bytes = b->raw_value_bytes;
        info->smallest = nk_memdup(b->smallest.data, b->smallest.len);
        info->smallest_len = b->smallest.len;
        info->largest = nk_memdup(b->last_key.data, b->last_key.len);
        info->largest_len = b->last_key.len;
    }
    builder_free(b);
    return NK_OK;
}
