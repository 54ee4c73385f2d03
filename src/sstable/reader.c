/*
 * reader.c: opening a table, point lookups and iterators.
 *
 * Open reads the footer, then the properties, index and filter blocks, all
 * checksummed and structurally checked (the index must describe contiguous
 * data blocks that end where the filter begins, with strictly increasing
 * separators), so that later lookups can trust the in-memory index. The
 * index is decoded into a flat array (binary search without prefix decoding)
 * and the filter is kept in a 64-byte aligned copy (one cache line per
 * probe). Both stay in memory for the reader's lifetime: their size is the
 * price of an open table, which the LSM bounds by how many it keeps open.
 *
 * Data blocks are read with pread, verified and handed to the block cache;
 * without a cache, the caller owns the block until it moves on.
 */
#include "sstable/sst_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

struct idx_ent {
    uint64_t offset;
    uint32_t size;
    uint32_t key_len;
    const uint8_t *key;
};

/* What a lookup needs of block i, 16 bytes so that the last steps of the
 * prefix search and the block's offset share a cache line. loc[nblocks] is a
 * sentinel holding the end of the data region: block i's stored size is
 * loc[i + 1].offset - loc[i].offset - SST_TRAILER_SIZE (blocks are
 * contiguous, checked at open). */
struct blk_loc {
    uint64_t pfx;
    uint64_t offset;
};

struct sst_reader {
    int fd;
    char *path;
    uint64_t file_size;
    sst_cmp_fn cmp; /* NULL: bytewise (inlined) */
    struct sst_cache *cache;
    uint64_t file_id;
    bool verify;

    uint32_t nblocks;
    struct idx_ent *idx;
    uint8_t *idx_keys;
    /*
     * With a comparator that orders_by_filter_key (use_pfx): loc[i].pfx is
     * the big-endian value of the 8 filter-key bytes of index key i after the
     * prefix all of them share (pfx_skip bytes at pfx_common), zero-padded.
     * Strictly smaller pfx means a smaller key, so most of the binary search
     * runs on this compact array.
     */
    struct blk_loc *loc;
    bool use_pfx;
    size_t pfx_skip;
    const uint8_t *pfx_common;
    struct nk_slice (*filter_key)(struct nk_slice key);

    const uint8_t *map; /* use_mmap: the whole file */
    _Atomic uint64_t *verified; /* use_mmap: bit i = block i's checksum passed */

    bool has_filter;
    uint8_t *filter_mem; /* aligned */
    struct sst_filter filter;

    uint8_t *props_mem;
    struct sst_props props;
};

void sst_read_options_default(struct sst_read_options *o)
{
    o->cmp = &sst_bytewise;
    o->cache = NULL;
    o->file_id = 0;
    o->verify_checksums = true;
    o->use_mmap = false;
}

static nk_status pread_full(const struct sst_reader *r, void *buf, size_t n, uint64_t off)
{
    uint8_t *p = buf;
    size_t done = 0;
    while (done < n) {
        ssize_t got = nk_fs_pread(r->fd, p + done, n - done, (int64_t)(off + done));
        if (got < 0) {
            if (errno == EINTR)
                continue;
            return nk_status_errno(errno, "sstable %s: read at offset %" PRIu64, r->path,
                                   off + done);
        }
        if (got == 0)
            return nk_status_make(NK_DATA_LOSS,
                                  "sstable %s: unexpected end of file at offset %" PRIu64
                                  " (truncated?)",
                                  r->path, off + done);
        done += (size_t)got;
    }
    return NK_OK;
}

/* Reads the block at h (checksum verified when verify) as a decoded block
 * with refs 0. */
static nk_status read_block(const struct sst_reader *r, struct sst_handle h, bool verify,
                            bool has_restarts, struct sst_block **out)
{
    struct sst_block *hold = sst_block_alloc((size_t)h.size + SST_TRAILER_SIZE);
    nk_status s = pread_full(r, hold->buf, (size_t)h.size + SST_TRAILER_SIZE, h.offset);
    if (!nk_ok(s)) {
        sst_block_free(hold);
        return s;
    }
    return sst_block_from_stored(hold, hold->buf, h.size, verify, has_restarts, r->path, h.offset,
                                 out);
}

/* Block i read in place from the mapping into *view; NULL when it is
 * compressed (then it takes the ordinary path). */
static nk_status map_block(struct sst_reader *r, uint32_t i, struct sst_block *view,
                           struct sst_block **out)
{
    uint64_t off = r->loc[i].offset;
    uint32_t size = (uint32_t)(r->loc[i + 1].offset - off - SST_TRAILER_SIZE);
    const uint8_t *p = r->map + off;
    *out = NULL;
    if (p[size] != SST_BLOCK_RAW)
        return NK_OK;
    uint64_t bit = 1ull << (i & 63);
    bool checked = atomic_load_explicit(&r->verified[i >> 6], memory_order_relaxed) & bit;
    if (r->verify && !checked) {
        uint32_t want = nk_crc32c_unmask(nk_dec_fixed32(p + size + 1));
        if (want != sst_crc32c(p, (size_t)size + 1))
            return nk_status_make(NK_DATA_LOSS,
                                  "sstable %s: block at offset %" PRIu64
                                  " (%u bytes): checksum mismatch",
                                  r->path, off, size);
    }
    view->data = p;
    view->size = size;
    view->borrowed = true;
    if (checked) { /* the restart array was checked with the checksum */
        view->num_restarts = nk_dec_fixed32(p + size - 4);
        view->restart_off = size - 4 - 4 * view->num_restarts;
    } else {
        if (!sst_block_init(view))
            return nk_status_make(NK_DATA_LOSS,
                                  "sstable %s: block at offset %" PRIu64
                                  ": malformed restart array",
                                  r->path, off);
        if (r->verify)
            atomic_fetch_or_explicit(&r->verified[i >> 6], bit, memory_order_relaxed);
    }
    *out = view;
    return NK_OK;
}

/* The pinned block i of the index; view is storage for a mapped block. */
static inline nk_status get_block(struct sst_reader *r, uint32_t i, struct sst_block *view,
                                  struct sst_block **out)
{
    if (r->map) {
        NK_TRY(map_block(r, i, view, out));
        if (*out)
            return NK_OK;
    }
    uint64_t off = r->loc[i].offset;
    if (r->cache) {
        struct sst_block *b = sst_cache_lookup(r->cache, r->file_id, off);
        if (b) {
            *out = b;
            return NK_OK;
        }
    }
    struct sst_block *b;
    uint64_t size = r->loc[i + 1].offset - off - SST_TRAILER_SIZE;
    NK_TRY(read_block(r, (struct sst_handle){off, size}, r->verify, true, &b));
    if (r->cache)
        b = sst_cache_insert(r->cache, r->file_id, off, b,
                             sizeof *b + (size_t)b->size + SST_TRAILER_SIZE);
    *out = b;
    return NK_OK;
}

static inline void put_block(struct sst_reader *r, struct sst_block *b)
{
    if (!b->borrowed)
        sst_cache_release(r->cache, b);
}

static nk_status corrupt_entry(const struct sst_reader *r, uint32_t i)
{
    return nk_status_make(NK_DATA_LOSS, "sstable %s: block at offset %" PRIu64 ": corrupt entry",
                          r->path, r->idx[i].offset);
}

/* ------------------------------------------------------------------- open */

static bool handle_in(struct sst_handle h, uint64_t limit)
{
    return h.offset <= limit && h.size <= limit - h.offset &&
           SST_TRAILER_SIZE <= limit - h.offset - h.size;
}

static inline uint64_t handle_end(struct sst_handle h)
{
    return h.offset + h.size + SST_TRAILER_SIZE;
}

static nk_status bad_layout(const struct sst_reader *r, const char *what)
{
    return nk_status_make(NK_DATA_LOSS, "sstable %s: %s", r->path, what);
}

static nk_status load_index(struct sst_reader *r, struct sst_handle h, uint64_t data_end)
{
    struct sst_block *b;
    NK_TRY(read_block(r, h, true, true, &b));
    struct nk_buf key, keys;
    nk_buf_init(&key);
    nk_buf_init(&keys);
    size_t cap = 0, n = 0;
    struct idx_ent *ents = NULL;
    uint64_t expect = 0;
    nk_status s = NK_OK;
    struct sst_blk_iter bi;
    sst_bi_init(&bi, b, &key);
    for (sst_bi_first(&bi); bi.valid; sst_bi_next(&bi)) {
        struct nk_reader vr;
        uint64_t off, size;
        nk_reader_init(&vr, bi.value.data, bi.value.len);
        nk_reader_varint64(&vr, &off);
        nk_reader_varint64(&vr, &size);
        if (vr.bad || nk_reader_left(&vr) != 0 || off != expect || size > SST_MAX_BLOCK_RAW ||
            !handle_in((struct sst_handle){off, size}, data_end)) {
            s = bad_layout(r, "index entry does not describe the next data block");
            break;
        }
        if (n > 0) {
            struct nk_slice prev = nk_slice_make(keys.data + (uintptr_t)ents[n - 1].key,
                                                 ents[n - 1].key_len);
            if (sst_cmp(r->cmp, prev, nk_slice_make(key.data, key.len)) >= 0) {
                s = bad_layout(r, "index keys are not increasing");
                break;
            }
        }
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            ents = nk_realloc(ents, cap * sizeof *ents);
        }
        /* key holds an offset into keys until the buffer stops moving */
        ents[n] = (struct idx_ent){off, (uint32_t)size, (uint32_t)key.len,
                                   (const uint8_t *)(uintptr_t)keys.len};
        nk_buf_append(&keys, key.data, key.len);
        n++;
        expect = off + size + SST_TRAILER_SIZE;
    }
    if (nk_ok(s) && bi.corrupt)
        s = bad_layout(r, "corrupt index block");
    if (nk_ok(s) && expect != data_end)
        s = bad_layout(r, "index does not cover the data blocks");
    if (nk_ok(s) && n != r->props.num_data_blocks)
        s = bad_layout(r, "index and properties disagree on the number of data blocks");
    nk_buf_free(&key);
    sst_block_free(b);
    if (!nk_ok(s)) {
        free(ents);
        nk_buf_free(&keys);
        return s;
    }
    for (size_t i = 0; i < n; i++)
        ents[i].key = keys.data + (uintptr_t)ents[i].key;
    r->loc = nk_calloc(n + 1, sizeof *r->loc);
    for (size_t i = 0; i < n; i++)
        r->loc[i].offset = ents[i].offset;
    r->loc[n].offset = data_end;
    r->idx = ents;
    r->idx_keys = keys.data;
    r->nblocks = (uint32_t)n;
    return NK_OK;
}

static inline struct nk_slice fkey(const struct sst_reader *r, struct nk_slice k)
{
    return r->filter_key ? r->filter_key(k) : k;
}

static inline uint64_t load_pfx(const uint8_t *p, size_t n)
{
    uint8_t b[8] = {0};
    memcpy(b, p, n < 8 ? n : 8);
    uint64_t v;
    memcpy(&v, b, 8);
    return __builtin_bswap64(v);
}

/* Builds r->pfx; leaves it NULL when the keys do not fit the promise of
 * orders_by_filter_key (a damaged or foreign table), which only costs speed. */
static void build_prefix_index(struct sst_reader *r)
{
    uint32_t n = r->nblocks;
    if (n == 0)
        return;
    struct nk_slice first = fkey(r, nk_slice_make(r->idx[0].key, r->idx[0].key_len));
    struct nk_slice last = fkey(r, nk_slice_make(r->idx[n - 1].key, r->idx[n - 1].key_len));
    size_t L = 0, m = NK_MIN(first.len, last.len);
    while (L < m && first.data[L] == last.data[L])
        L++;
    for (uint32_t i = 0; i < n; i++) {
        struct nk_slice f = fkey(r, nk_slice_make(r->idx[i].key, r->idx[i].key_len));
        if (f.len < L || (L && memcmp(f.data, first.data, L) != 0))
            return;
        r->loc[i].pfx = load_pfx(f.data + L, f.len - L);
        if (i > 0 && r->loc[i].pfx < r->loc[i - 1].pfx)
            return;
    }
    r->use_pfx = true;
    r->pfx_skip = L;
    r->pfx_common = first.data;
}

static nk_status load_filter(struct sst_reader *r, struct sst_handle h)
{
    size_t n = (size_t)h.size + SST_TRAILER_SIZE;
    uint8_t *mem = aligned_alloc(SST_BLOOM_LINE, (n + SST_BLOOM_LINE - 1) & ~(size_t)63);
    if (!mem)
        nk_panic("out of memory allocating a %zu-byte filter", n);
    nk_status s = pread_full(r, mem, n, h.offset);
    if (nk_ok(s)) {
        uint8_t type = mem[h.size];
        uint32_t want = nk_crc32c_unmask(nk_dec_fixed32(mem + h.size + 1));
        if (want != sst_crc32c(mem, (size_t)h.size + 1) || type != SST_BLOCK_RAW)
            s = nk_status_make(NK_DATA_LOSS, "sstable %s: filter block checksum mismatch",
                               r->path);
    }
    if (nk_ok(s))
        s = sst_filter_decode(mem, (size_t)h.size, r->path, &r->filter);
    if (!nk_ok(s)) {
        free(mem);
        return s;
    }
    r->filter_mem = mem;
    r->has_filter = true;
    return NK_OK;
}

static nk_status load(struct sst_reader *r, const struct sst_comparator *cmp)
{
    struct stat st;
    if (fstat(r->fd, &st) != 0)
        return nk_status_errno(errno, "sstable %s: fstat", r->path);
    r->file_size = (uint64_t)st.st_size;
    if (r->file_size < SST_FOOTER_SIZE)
        return nk_status_make(NK_DATA_LOSS,
                              "sstable %s: file is %" PRIu64
                              " bytes, shorter than its %u-byte footer (truncated?)",
                              r->path, r->file_size, SST_FOOTER_SIZE);
    uint8_t foot[SST_FOOTER_SIZE];
    uint64_t body = r->file_size - SST_FOOTER_SIZE;
    NK_TRY(pread_full(r, foot, sizeof foot, body));
    struct sst_footer f;
    NK_TRY(sst_footer_decode(foot, r->path, &f));

    /* Layout: data | filter | index | props | footer, nothing in between. */
    bool has_filter = f.filter.size != 0 || f.filter.offset != 0;
    if (!handle_in(f.props, body) || handle_end(f.props) != body || !handle_in(f.index, body) ||
        handle_end(f.index) != f.props.offset ||
        (has_filter && (!handle_in(f.filter, body) || handle_end(f.filter) != f.index.offset)))
        return bad_layout(r, "footer handles do not describe the file");
    uint64_t data_end = has_filter ? f.filter.offset : f.index.offset;

    struct sst_block *pb;
    NK_TRY(read_block(r, f.props, true, false, &pb));
    r->props_mem = (uint8_t *)pb; /* owns the bytes props' slices borrow */
    NK_TRY(sst_props_decode(pb->data, pb->size, r->path, &r->props));
    if (r->props.data_size != data_end)
        return bad_layout(r, "properties and footer disagree on the data size");
    size_t nl = strlen(cmp->name);
    if (r->props.cmp_name.len != nl || memcmp(r->props.cmp_name.data, cmp->name, nl) != 0)
        return nk_status_make(NK_INVALID_ARGUMENT,
                              "sstable %s: written with comparator \"%.*s\", opened with \"%s\"",
                              r->path, (int)r->props.cmp_name.len,
                              (const char *)r->props.cmp_name.data, cmp->name);

    NK_TRY(load_index(r, f.index, data_end));
    if (cmp->orders_by_filter_key)
        build_prefix_index(r);
    if (has_filter)
        NK_TRY(load_filter(r, f.filter));
    return NK_OK;
}

nk_status sst_reader_open(const char *path, const struct sst_read_options *o,
                          struct sst_reader **out)
{
    struct sst_read_options opt;
    if (o)
        opt = *o;
    else
        sst_read_options_default(&opt);
    const struct sst_comparator *cmp = opt.cmp ? opt.cmp : &sst_bytewise;
    int fd = nk_fs_open(path, O_RDONLY | O_CLOEXEC, 0);
    if (fd < 0)
        return nk_status_errno(errno, "sstable %s: open", path);
    struct sst_reader *r = nk_calloc(1, sizeof *r);
    r->fd = fd;
    r->path = nk_strdup(path);
    r->cmp = cmp->cmp == sst_bytewise.cmp ? NULL : cmp->cmp;
    r->filter_key = cmp->filter_key;
    r->cache = opt.cache;
    r->file_id = opt.file_id;
    r->verify = opt.verify_checksums;
    nk_status s = load(r, cmp);
    if (nk_ok(s) && opt.use_mmap) {
        void *m = nk_fs_mmap((size_t)r->file_size, PROT_READ, MAP_SHARED, fd, 0);
        if (m == MAP_FAILED) {
            s = nk_status_errno(errno, "sstable %s: mmap", path);
        } else {
            r->map = m;
            r->verified = nk_calloc((r->nblocks + 63) / 64 + 1, sizeof *r->verified);
        }
    }
    if (!nk_ok(s)) {
        sst_reader_close(r);
        return s;
    }
    *out = r;
    return NK_OK;
}

void sst_reader_close(struct sst_reader *r)
{
    if (!r)
        return;
    if (r->map)
        munmap((void *)r->map, (size_t)r->file_size);
    free((void *)r->verified);
    if (r->fd >= 0)
        nk_fs_close(r->fd);
    free(r->path);
    free(r->idx);
    free(r->idx_keys);
    free(r->loc);
    free(r->filter_mem);
    sst_block_free((struct sst_block *)r->props_mem);
    free(r);
}

uint64_t sst_reader_file_size(const struct sst_reader *r)
{
    return r->file_size;
}

uint64_t sst_reader_num_entries(const struct sst_reader *r)
{
    return r->props.num_entries;
}

struct nk_slice sst_reader_smallest(const struct sst_reader *r)
{
    return r->props.smallest;
}

struct nk_slice sst_reader_largest(const struct sst_reader *r)
{
    return r->props.largest;
}

bool sst_reader_may_contain(struct sst_reader *r, struct nk_slice filter_key)
{
    if (!r->has_filter)
        return true;
    return sst_bloom_probe(r->filter.bits, r->filter.nlines, r->filter.k,
                           sst_bloom_hash(filter_key));
}

/* First block whose separator is >= target (nblocks when none). */
static inline uint32_t index_lower_bound(const struct sst_reader *r, struct nk_slice target)
{
    uint32_t lo = 0, hi = r->nblocks;
    if (r->use_pfx) {
        struct nk_slice t = fkey(r, target);
        size_t L = r->pfx_skip;
        size_t m = NK_MIN(L, t.len);
        int c = m ? memcmp(t.data, r->pfx_common, m) : 0;
        if (c < 0 || (c == 0 && t.len < L))
            return 0; /* below every key's common prefix */
        if (c > 0)
            return r->nblocks;
        uint64_t tp = load_pfx(t.data + L, t.len - L);
        while (lo < hi) { /* first pfx >= tp */
            uint32_t mid = lo + (hi - lo) / 2;
            if (r->loc[mid].pfx < tp)
                lo = mid + 1;
            else
                hi = mid;
        }
        hi = lo;
        while (hi < r->nblocks && hi - lo < 8 && r->loc[hi].pfx == tp) /* usually 0-1 steps */
            hi++;
        if (hi < r->nblocks && r->loc[hi].pfx == tp) { /* long run of equal prefixes */
            uint32_t a = hi, b = r->nblocks;
            while (a < b) {
                uint32_t mid = a + (b - a) / 2;
                if (r->loc[mid].pfx <= tp)
                    a = mid + 1;
                else
                    b = mid;
            }
            hi = a;
        }
    }
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        const struct idx_ent *e = &r->idx[mid];
        if (sst_cmp(r->cmp, nk_slice_make(e->key, e->key_len), target) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

nk_status sst_reader_seek_one(struct sst_reader *r, struct nk_slice target,
                              struct nk_slice filter_key, bool *found, struct nk_buf *key_out,
                              struct nk_buf *value_out)
{
    *found = false;
    if (!sst_reader_may_contain(r, filter_key))
        return NK_OK;
    bool first = true;
    /* A target between a block's last key and its (shortened) separator lands
     * in that block but is answered by the next one. */
    for (uint32_t i = index_lower_bound(r, target); i < r->nblocks; i++, first = false) {
        struct sst_block view, *b;
        NK_TRY(get_block(r, i, &view, &b));
        struct sst_blk_iter bi;
        sst_bi_init(&bi, b, key_out);
        if (first)
            sst_bi_seek(&bi, target, r->cmp);
        else
            sst_bi_first(&bi);
        if (bi.valid) {
            value_out->len = 0;
            nk_buf_append(value_out, bi.value.data, bi.value.len);
            put_block(r, b);
            *found = true;
            return NK_OK;
        }
        put_block(r, b);
        if (bi.corrupt)
            return corrupt_entry(r, i);
    }
    return NK_OK;
}

/* --------------------------------------------------------------- iterator */

#define SST_MAX_READAHEAD (8u << 20)

/* How the iterator holds its current block. */
enum blk_kind {
    BLK_PINNED,   /* from get_block: released through the cache */
    BLK_OWNED,    /* read for this iterator only: freed */
    BLK_BORROWED, /* a view of the mapping or the readahead buffer */
};

struct sst_iter {
    struct sst_reader *r;
    uint32_t bidx;
    struct sst_block *blk; /* pinned while the iterator is on it */
    enum blk_kind kind;
    struct sst_block view; /* blk's storage when read in place */
    struct sst_blk_iter bi;
    struct nk_buf key;
    nk_status st;
    bool fill_cache;
    uint8_t *ra;      /* readahead buffer of ra_cap bytes, or NULL */
    size_t ra_cap, ra_len;
    uint64_t ra_off;  /* file offset of ra[0] */
};

void sst_iter_options_default(struct sst_iter_options *o)
{
    o->fill_cache = true;
    o->readahead = 0;
}

nk_status sst_iter_new_opts(struct sst_reader *r, const struct sst_iter_options *o,
                            struct sst_iter **out)
{
    struct sst_iter_options opt;
    if (o)
        opt = *o;
    else
        sst_iter_options_default(&opt);
    struct sst_iter *it = nk_calloc(1, sizeof *it);
    it->r = r;
    it->bidx = r->nblocks;
    nk_buf_init(&it->key);
    it->st = NK_OK;
    it->fill_cache = opt.fill_cache;
    if (!opt.fill_cache && opt.readahead > 0) {
        it->ra_cap = NK_MIN(opt.readahead, (size_t)SST_MAX_READAHEAD);
        it->ra = nk_malloc(it->ra_cap);
    }
    *out = it;
    return NK_OK;
}

nk_status sst_iter_new(struct sst_reader *r, struct sst_iter **out)
{
    return sst_iter_new_opts(r, NULL, out);
}

static void drop_block(struct sst_iter *it)
{
    if (it->blk) {
        if (it->kind == BLK_PINNED)
            put_block(it->r, it->blk);
        else if (it->kind == BLK_OWNED)
            sst_block_free(it->blk);
        it->blk = NULL;
    }
    it->bi.valid = false;
}

void sst_iter_free(struct sst_iter *it)
{
    if (!it)
        return;
    drop_block(it);
    nk_buf_free(&it->key);
    nk_status_free(&it->st);
    free(it->ra);
    free(it);
}

/* Block i from the readahead buffer, refilled from the block's offset when
 * it is not inside. Raw blocks become views of the buffer (valid until the
 * next refill, which only happens once the iterator has left them). */
static nk_status ra_block(struct sst_iter *it, uint64_t off, uint64_t size)
{
    struct sst_reader *r = it->r;
    uint64_t need = size + SST_TRAILER_SIZE;
    if (off < it->ra_off || off + need > it->ra_off + it->ra_len) {
        uint64_t data_end = r->loc[r->nblocks].offset;
        size_t len = (size_t)NK_MIN((uint64_t)it->ra_cap, data_end - off);
        it->ra_len = 0;
        NK_TRY(pread_full(r, it->ra, len, off));
        it->ra_off = off;
        it->ra_len = len;
    }
    const uint8_t *p = it->ra + (off - it->ra_off);
    if (p[size] != SST_BLOCK_RAW) { /* compressed: decode into a block of its own */
        struct sst_block *hold = sst_block_alloc((size_t)need);
        memcpy(hold->buf, p, (size_t)need);
        NK_TRY(sst_block_from_stored(hold, hold->buf, size, r->verify, true, r->path, off,
                                     &it->blk));
        it->kind = BLK_OWNED;
        return NK_OK;
    }
    if (r->verify && nk_crc32c_unmask(nk_dec_fixed32(p + size + 1)) != sst_crc32c(p, size + 1))
        return nk_status_make(NK_DATA_LOSS,
                              "sstable %s: block at offset %" PRIu64
                              " (%" PRIu64 " bytes): checksum mismatch",
                              r->path, off, size);
    struct sst_block *v = &it->view;
    memset(v, 0, sizeof *v);
    v->data = p;
    v->size = (uint32_t)size;
    v->borrowed = true;
    if (!sst_block_init(v))
        return nk_status_make(NK_DATA_LOSS,
                              "sstable %s: block at offset %" PRIu64 ": malformed restart array",
                              r->path, off);
    it->blk = v;
    it->kind = BLK_BORROWED;
    return NK_OK;
}

static nk_status iter_get_block(struct sst_iter *it, uint32_t i)
{
    struct sst_reader *r = it->r;
    it->blk = NULL;
    if (it->fill_cache) {
        NK_TRY(get_block(r, i, &it->view, &it->blk));
        it->kind = it->blk->borrowed ? BLK_BORROWED : BLK_PINNED;
        return NK_OK;
    }
    if (r->map) {
        NK_TRY(map_block(r, i, &it->view, &it->blk));
        if (it->blk) {
            it->kind = BLK_BORROWED;
            return NK_OK;
        }
    }
    uint64_t off = r->loc[i].offset;
    if (r->cache) { /* use what is cached, but add nothing */
        struct sst_block *b = sst_cache_lookup(r->cache, r->file_id, off);
        if (b) {
            it->blk = b;
            it->kind = BLK_PINNED;
            return NK_OK;
        }
    }
    uint64_t size = r->loc[i + 1].offset - off - SST_TRAILER_SIZE;
    if (it->ra && size + SST_TRAILER_SIZE <= it->ra_cap)
        return ra_block(it, off, size);
    NK_TRY(read_block(r, (struct sst_handle){off, size}, r->verify, true, &it->blk));
    it->kind = BLK_OWNED;
    return NK_OK;
}

/* Moves onto block i; false at the end or on error (then it->st is set). */
static bool enter_block(struct sst_iter *it, uint32_t i)
{
    drop_block(it);
    it->bidx = i;
    if (i >= it->r->nblocks)
        return false;
    nk_status s = iter_get_block(it, i);
    if (!nk_ok(s)) {
        it->blk = NULL;
        it->st = s;
        return false;
    }
    sst_bi_init(&it->bi, it->blk, &it->key);
    return true;
}

/* After a block cursor ran off its block: continue with the next blocks. */
static void settle(struct sst_iter *it)
{
    while (!it->bi.valid) {
        if (it->bi.corrupt) {
            it->st = corrupt_entry(it->r, it->bidx);
            drop_block(it);
            return;
        }
        if (!enter_block(it, it->bidx + 1))
            return;
        sst_bi_first(&it->bi);
    }
}

void sst_iter_seek_first(struct sst_iter *it)
{
    if (!nk_ok(it->st))
        return;
    if (!enter_block(it, 0))
        return;
    sst_bi_first(&it->bi);
    settle(it);
}

void sst_iter_seek(struct sst_iter *it, struct nk_slice target)
{
    if (!nk_ok(it->st))
        return;
    uint32_t i = index_lower_bound(it->r, target);
    if (!enter_block(it, i))
        return;
    sst_bi_seek(&it->bi, target, it->r->cmp);
    settle(it);
}

void sst_iter_next(struct sst_iter *it)
{
    NK_ASSERT(sst_iter_valid(it));
    sst_bi_next(&it->bi);
    settle(it);
}

bool sst_iter_valid(const struct sst_iter *it)
{
    return it->blk != NULL && it->bi.valid;
}

struct nk_slice sst_iter_key(const struct sst_iter *it)
{
    NK_DASSERT(sst_iter_valid(it));
    return nk_slice_make(it->key.data, it->key.len);
}

struct nk_slice sst_iter_value(const struct sst_iter *it)
{
    NK_DASSERT(sst_iter_valid(it));
    return it->bi.value;
}

nk_status sst_iter_status(const struct sst_iter *it)
{
    if (nk_ok(it->st))
        return NK_OK;
    return nk_status_make(it->st.code, "%s", nk_status_msg(it->st));
}
