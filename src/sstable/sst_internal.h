/*
 * sst_internal.h: what the sstable source files share (not a public API).
 *
 * The on-disk constants, the decoded block (which is also the unit the block
 * cache holds), the block cursor used by both seek_one and the iterator, the
 * bloom filter probe and the parsers of every untrusted structure (exposed
 * here so that the fuzz target can attack each one directly, not only through
 * a file whose checksums would reject most mutations).
 *
 * docs/format/sstable.md is the authority on the bytes.
 */
#ifndef NK_SST_INTERNAL_H
#define NK_SST_INTERNAL_H

#include <inttypes.h>

#include "sstable/sstable.h"

#define SST_MAGIC          0x3154535349524f4eull /* "NORISST1" little-endian */
#define SST_FORMAT_VERSION 1u
#define SST_FOOTER_SIZE    64u
#define SST_TRAILER_SIZE   5u /* type byte + masked CRC32C */
/* Largest decompressed block a reader accepts: one maximal entry plus a
 * maximal block of small ones; bounds the allocation a corrupt length causes. */
#define SST_MAX_BLOCK_SIZE (16u << 20) /* sst_options.block_size upper bound */
#define SST_MAX_BLOCK_RAW  (SST_MAX_VALUE + SST_MAX_KEY + SST_MAX_BLOCK_SIZE + (64u << 10))
#define SST_BLOOM_LINE     64u         /* bytes per bloom cache line */

/* Block type byte in the trailer. */
enum { SST_BLOCK_RAW = 0, SST_BLOCK_LZ4 = 1, SST_BLOCK_ZSTD = 2 };

struct sst_handle {
    uint64_t offset; /* of the block's first byte in the file */
    uint64_t size;   /* stored bytes, without the 5-byte trailer */
};

struct sst_footer {
    struct sst_handle filter; /* size 0: the table has no filter */
    struct sst_handle index;
    struct sst_handle props;
    uint32_t version;
};

/*
 * A decoded block: uncompressed contents ending in the restart array. One
 * allocation holds the bytes and, right after them, this struct: a lookup
 * reads the header (cache probe) and then the restart array at the end of
 * the contents, so both usually come in with one or two adjacent cache
 * lines. While cached, the first fields belong to cache.c under its lock.
 */
struct sst_block {
    struct sst_block *hnext;      /* hash chain */
    struct sst_block *prev, *next; /* LRU list (only while refs == 1 and cached) */
    uint64_t file_id, offset;
    uint32_t hash;
    uint32_t refs;  /* the cache's own reference counts while in_cache */
    bool in_cache;
    bool borrowed; /* a view of a mapped file: nothing to release */
    size_t charge;

    const uint8_t *data; /* contents */
    uint32_t size;       /* contents size */
    uint32_t restart_off; /* offset of the restart array */
    uint32_t num_restarts;
    uint8_t *buf; /* the allocation: n bytes of storage, then this header */
};

/* A block with n bytes of storage at b->buf (header zeroed, data unset). */
struct sst_block *sst_block_alloc(size_t n);

/* Checks the restart array of b->data/b->size and fills the restart fields.
 * False when it is malformed. */
bool sst_block_init(struct sst_block *b);
void sst_block_free(struct sst_block *b);

/* --------------------------------------------------------------- cache.c */

/* Returns the block pinned (refs + 1) or NULL. */
struct sst_block *sst_cache_lookup(struct sst_cache *c, uint64_t file_id, uint64_t offset);
/* Takes b (refs must be 0); returns it pinned. When it does not fit without
 * exceeding the capacity, it stays outside the cache and is freed on release. */
struct sst_block *sst_cache_insert(struct sst_cache *c, uint64_t file_id, uint64_t offset,
                                   struct sst_block *b, size_t charge);
void sst_cache_release(struct sst_cache *c, struct sst_block *b);

/* --------------------------------------------------------- block cursor */

/* Cursor over one block's entries; the key is rebuilt into *key. */
struct sst_blk_iter {
    const struct sst_block *b;
    struct nk_buf *key;
    struct nk_slice value;
    uint32_t cur;  /* offset of the current entry */
    uint32_t next; /* offset of the entry after it */
    bool valid;
    bool corrupt;
};

typedef int (*sst_cmp_fn)(struct nk_slice a, struct nk_slice b);

void sst_bi_init(struct sst_blk_iter *bi, const struct sst_block *b, struct nk_buf *key);
void sst_bi_first(struct sst_blk_iter *bi);
void sst_bi_next(struct sst_blk_iter *bi);
/* First entry with key >= target; cmp NULL means bytewise. */
void sst_bi_seek(struct sst_blk_iter *bi, struct nk_slice target, sst_cmp_fn cmp);

static inline int sst_bytewise_cmp_inline(struct nk_slice a, struct nk_slice b)
{
    size_t n = a.len < b.len ? a.len : b.len;
    int c = n ? memcmp(a.data, b.data, n) : 0;
    if (c)
        return c;
    return a.len < b.len ? -1 : (a.len > b.len ? 1 : 0);
}

static inline int sst_cmp(sst_cmp_fn cmp, struct nk_slice a, struct nk_slice b)
{
    return cmp ? cmp(a, b) : sst_bytewise_cmp_inline(a, b);
}

/* CRC32C, identical to nk_crc32c, faster on long inputs (crc.c). */
uint32_t sst_crc32c(const void *data, size_t n);

/* ------------------------------------------------------------------ bloom */

static inline uint64_t sst_bloom_hash(struct nk_slice filter_key)
{
    return nk_xxhash64(filter_key.data, filter_key.len);
}

/*
 * Cache-line-local bloom filter: the low 32 bits of the hash choose one
 * 512-bit line, then k probes inside it by double hashing (a + i*b mod 512,
 * b odd so the k bits are distinct). One cache miss per lookup.
 */
static inline bool sst_bloom_probe(const uint8_t *bits, uint32_t nlines, uint32_t k, uint64_t h)
{
    uint32_t line = (uint32_t)(((uint64_t)(uint32_t)h * nlines) >> 32);
    const uint8_t *p = bits + (size_t)line * SST_BLOOM_LINE;
    uint32_t a = (uint32_t)(h >> 32);
    uint32_t b = (uint32_t)(h >> 41) | 1u;
    for (uint32_t i = 0; i < k; i++) {
        uint32_t bit = a & 511u;
        if (!(p[bit >> 3] & (1u << (bit & 7))))
            return false;
        a += b;
    }
    return true;
}

static inline void sst_bloom_set(uint8_t *bits, uint32_t nlines, uint32_t k, uint64_t h)
{
    uint32_t line = (uint32_t)(((uint64_t)(uint32_t)h * nlines) >> 32);
    uint8_t *p = bits + (size_t)line * SST_BLOOM_LINE;
    uint32_t a = (uint32_t)(h >> 32);
    uint32_t b = (uint32_t)(h >> 41) | 1u;
    for (uint32_t i = 0; i < k; i++) {
        uint32_t bit = a & 511u;
        p[bit >> 3] |= (uint8_t)(1u << (bit & 7));
        a += b;
    }
}

static inline uint32_t sst_bloom_k(uint32_t bits_per_key)
{
    uint32_t k = (uint32_t)((double)bits_per_key * 0.6931471805599453 + 0.5);
    return k < 1 ? 1 : (k > 30 ? 30 : k);
}

/* ---------------------------------------------------------------- parsers */

/* Footer: exactly SST_FOOTER_SIZE bytes. Checks magic, checksum, version. */
nk_status sst_footer_decode(const uint8_t *p, const char *path, struct sst_footer *out);
void sst_footer_encode(const struct sst_footer *f, uint8_t *p);

struct sst_props {
    uint64_t num_entries, raw_key_bytes, raw_value_bytes, num_data_blocks, data_size;
    uint32_t compression, bloom_bits_per_key, restart_interval, block_size;
    struct nk_slice smallest, largest, cmp_name; /* borrowed from the block */
};
nk_status sst_props_decode(const uint8_t *p, size_t n, const char *path, struct sst_props *out);

struct sst_filter {
    const uint8_t *bits;
    uint32_t nlines;
    uint32_t k;
};
nk_status sst_filter_decode(const uint8_t *p, size_t n, const char *path, struct sst_filter *out);

/*
 * Checks the trailer of stored bytes [p, p+size+5) and produces a decoded
 * block: type RAW reuses the storage of `hold` (the allocation that holds p;
 * ownership passes to the block), compressed types decompress into a new
 * block. has_restarts: the contents end in a restart array (data and index
 * blocks), checked here. On error `hold` is freed.
 */
nk_status sst_block_from_stored(struct sst_block *hold, const uint8_t *p, uint64_t size,
                                bool verify, bool has_restarts, const char *path,
                                uint64_t offset, struct sst_block **out);

#endif /* NK_SST_INTERNAL_H */
