/*
 * sstable: immutable sorted tables of (key, value) pairs on disk.
 *
 * A table is a sequence of ~4 KiB data blocks (prefix-compressed keys with a
 * restart point every 16 keys, each block optionally compressed with lz4 or
 * zstd and checksummed with CRC32C), a bloom filter block, an index block
 * (one entry per data block: a separator key >= every key of the block and
 * the block's handle), a properties block and a fixed-size footer with a
 * magic number and checksums. docs/format/sstable.md gives every byte.
 *
 * Order: keys are ordered by a comparator supplied by the user (the LSM uses
 * internal keys: user key, then sequence number descending). The bloom filter
 * hashes the "filter key" of each key (by default the key itself; the LSM
 * passes a function that strips its 8-byte trailer), so point lookups of a
 * user key can skip a table without reading a data block.
 *
 * Memory: a builder and a reader own their buffers. An open reader keeps its
 * index (decoded into an array) and its bloom filter in memory, outside the
 * cache: about (separator length + 32) bytes per data block plus
 * bits_per_key/8 bytes per key. Slices returned by an iterator are valid
 * until the iterator moves. Blocks read from disk go to a shared block cache
 * (bounded in bytes, sharded LRU, thread-safe, reference-counted so that a
 * block an iterator is on survives its eviction), or are owned by the
 * iterator while it is on them when no cache is given. With use_mmap,
 * uncompressed blocks are read in place from the mapped file instead.
 *
 * Thread-safety: a builder is single-threaded. A reader is thread-safe (it
 * reads with pread and only touches the thread-safe cache); each iterator
 * belongs to one thread. A cache is shared by every reader of a database and
 * must outlive them; file_id must be unique per file among its readers.
 *
 * Durability: sst_builder_finish fdatasyncs the file; making its directory
 * entry durable (nk_fsync_dir) is the caller's job, once per batch of files.
 *
 * Corruption: every read verifies checksums; a damaged footer, index, filter
 * or block is NK_DATA_LOSS naming the file, never returned as data.
 */
#ifndef NK_SSTABLE_H
#define NK_SSTABLE_H

#include "util/util.h"

enum sst_compression { SST_COMPRESS_NONE = 0, SST_COMPRESS_LZ4 = 1, SST_COMPRESS_ZSTD = 2 };

/* Total order on keys: <0, 0, >0 like memcmp. */
struct sst_comparator {
    int (*cmp)(struct nk_slice a, struct nk_slice b);
    /* The part of a key that the bloom filter hashes; NULL: the whole key. */
    struct nk_slice (*filter_key)(struct nk_slice key);
    /* Stored in the table; a reader with a differently named comparator refuses it. */
    const char *name;
    /*
     * Optional (NULL: the index stores the last key of each block itself).
     * Sets *out to a short key k with a <= k < b, given a < b; the index uses
     * it as the separator between two data blocks, which keeps the index
     * small. Bytewise picks the shortest such byte string it can.
     */
    void (*separator)(struct nk_slice a, struct nk_slice b, struct nk_buf *out);
    /*
     * Optional hint: true when filter keys decide the order whenever they
     * differ, that is bytewise(filter_key(a), filter_key(b)) < 0 implies
     * cmp(a, b) < 0 (true for bytewise, and for internal keys that begin
     * with the user key and use it as filter key). The reader then searches
     * the index on 8-byte key prefixes in a compact array, which saves most
     * of the cache misses of a point lookup on a large table.
     */
    bool orders_by_filter_key;
};

/* The default: memcmp order, whole-key filter, name "bytewise". */
extern const struct sst_comparator sst_bytewise;

struct sst_options {
    const struct sst_comparator *cmp; /* default &sst_bytewise */
    uint32_t block_size;              /* default 4096 (uncompressed target) */
    uint32_t restart_interval;        /* default 16 */
    enum sst_compression compression; /* default SST_COMPRESS_NONE */
    int zstd_level;                   /* default 3 */
    uint32_t bloom_bits_per_key;      /* default 10; 0 disables the filter */
};

void sst_options_default(struct sst_options *o);

/* Limits enforced by builder and reader alike. */
#define SST_MAX_KEY   (64u * 1024u)
#define SST_MAX_VALUE (64u * 1024u * 1024u)

/* ------------------------------------------------------------- block cache */

struct sst_cache;

/* capacity_bytes bounds the charged size of cached blocks; 0 caches nothing. */
nk_status sst_cache_new(size_t capacity_bytes, struct sst_cache **out);
void sst_cache_free(struct sst_cache *c);

struct sst_cache_stats {
    uint64_t hits, misses, inserts, evictions;
    size_t usage, capacity;
};
void sst_cache_get_stats(struct sst_cache *c, struct sst_cache_stats *out);

/* ------------------------------------------------------------------ builder */

struct sst_builder;

/* Information about a finished table; keys are heap copies owned by the struct. */
struct sst_file_info {
    uint64_t file_size;
    uint64_t num_entries;
    uint64_t raw_key_bytes, raw_value_bytes;
    uint8_t *smallest;
    size_t smallest_len;
    uint8_t *largest;
    size_t largest_len;
};
void sst_file_info_free(struct sst_file_info *info);

/* Creates (truncating) the file at path. */
nk_status sst_builder_open(const char *path, const struct sst_options *o, struct sst_builder **out);
/*
 * Adds an entry; keys must be strictly increasing under the comparator
 * (asserted). Keys over SST_MAX_KEY or values over SST_MAX_VALUE:
 * NK_INVALID_ARGUMENT.
 */
nk_status sst_builder_add(struct sst_builder *b, struct nk_slice key, struct nk_slice value);
/* Bytes the file would have if finished now (estimate). */
uint64_t sst_builder_file_size(struct sst_builder *b);
uint64_t sst_builder_num_entries(struct sst_builder *b);
/* Writes filter, index, properties and footer, fdatasyncs and closes; frees b. */
nk_status sst_builder_finish(struct sst_builder *b, struct sst_file_info *info);
/* Closes and deletes the partial file; frees b. */
void sst_builder_abandon(struct sst_builder *b);

/* ------------------------------------------------------------------ reader */

struct sst_reader;

struct sst_read_options {
    const struct sst_comparator *cmp; /* must have the table's name; default bytewise */
    struct sst_cache *cache;          /* may be NULL */
    uint64_t file_id;                 /* unique per file within a cache (cache key) */
    bool verify_checksums;            /* default true; always true for index/filter/footer */
    /*
     * Default false. When true the file is also mapped (mmap, read-only) and
     * uncompressed data blocks are read in place: no copy, no system call,
     * no block cache (the OS page cache holds them); each such block's
     * checksum is verified on its first use (verify_checksums) and
     * remembered. Compressed blocks still go through the cache. The file
     * must not be truncated while open (tables are immutable).
     */
    bool use_mmap;
};

void sst_read_options_default(struct sst_read_options *o);

/* Opens the table: reads and verifies footer, index, filter and properties. */
nk_status sst_reader_open(const char *path, const struct sst_read_options *o,
                          struct sst_reader **out);
void sst_reader_close(struct sst_reader *r);

uint64_t sst_reader_file_size(const struct sst_reader *r);
uint64_t sst_reader_num_entries(const struct sst_reader *r);
struct nk_slice sst_reader_smallest(const struct sst_reader *r);
struct nk_slice sst_reader_largest(const struct sst_reader *r);

/* False when the bloom filter proves no key with this filter key is in the table. */
bool sst_reader_may_contain(struct sst_reader *r, struct nk_slice filter_key);

/*
 * Point lookup: consults the bloom filter with filter_key, then finds the
 * first entry whose key is >= target. *found is false when the filter rules
 * the table out or no such entry exists. On success key and value are copied
 * into key_out and value_out (replacing their contents); key_out is also the
 * scratch space of the search, so its contents are unspecified when *found
 * is false. With a cache and the block cached, it allocates nothing (beyond
 * growing the caller's buffers).
 */
nk_status sst_reader_seek_one(struct sst_reader *r, struct nk_slice target,
                              struct nk_slice filter_key, bool *found, struct nk_buf *key_out,
                              struct nk_buf *value_out);

/* ---------------------------------------------------------------- iterator */

struct sst_iter;

nk_status sst_iter_new(struct sst_reader *r, struct sst_iter **out);

/* For scans that should not disturb the cache (compaction): */
struct sst_iter_options {
    /* Default true. False: blocks not already cached are read for this
     * iterator only and never inserted into the block cache. */
    bool fill_cache;
    /* Default 0 (off). With fill_cache false, blocks are read in chunks of
     * this many bytes (one pread for many blocks; capped at 8 MiB; the
     * iterator owns one such buffer). Blocks larger than a chunk, and any
     * block with fill_cache true, are read one by one. */
    size_t readahead;
};
void sst_iter_options_default(struct sst_iter_options *o);
/* sst_iter_new with options; o NULL means the defaults. */
nk_status sst_iter_new_opts(struct sst_reader *r, const struct sst_iter_options *o,
                            struct sst_iter **out);
void sst_iter_free(struct sst_iter *it);
void sst_iter_seek_first(struct sst_iter *it);
/* Positions at the first entry with key >= target. */
void sst_iter_seek(struct sst_iter *it, struct nk_slice target);
void sst_iter_next(struct sst_iter *it);
bool sst_iter_valid(const struct sst_iter *it);
struct nk_slice sst_iter_key(const struct sst_iter *it);
struct nk_slice sst_iter_value(const struct sst_iter *it);
/* Not OK once a read or checksum failed (the iterator is then invalid); the
 * returned status is a copy that the caller frees. */
nk_status sst_iter_status(const struct sst_iter *it);

#endif /* NK_SSTABLE_H */
