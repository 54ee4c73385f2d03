/*
 * internal.h: declarations shared by the files of the lsm module (not part of
 * its public interface).
 *
 *   key.c       internal keys (user key + 8-byte trailer) and their comparator
 *   memtable.c  the arena skiplist (one writer, lock-free readers)
 *   batch.c     write-batch encoding and decoding
 *   edit.c      version edits, their encoding, versions, manifest files
 *   pick.c      leveled compaction picking (pure functions over a version)
 *   iter.c      internal iterators (memtable, table, level, merging) and the
 *               user iterator
 *   db.c        open/recovery, writes, reads, flush, compaction, stats
 */
#ifndef NK_LSM_INTERNAL_H
#define NK_LSM_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>

#include "lsm/lsm.h"
#include "sstable/sstable.h"
#include "util/util.h"

/* ------------------------------------------------------------ internal key */

/*
 * internal key = user key | fixed64 LE trailer, trailer = seq << 8 | type.
 * Order: user key ascending (memcmp), then trailer descending, so the newest
 * version of a key comes first and a seek to (key, snapshot seq, LSM_T_SEEK)
 * lands on the newest version visible at that snapshot.
 */
enum { LSM_T_DEL = 0, LSM_T_PUT = 1, LSM_T_PUT_EXP = 2, LSM_T_MAX = 2, LSM_T_SEEK = 0xff };
#define LSM_MAX_SEQ ((UINT64_C(1) << 56) - 1)
#define LSM_TRAILER 8

struct ikey {
    struct nk_slice user;
    uint64_t seq;
    unsigned type;
};

/*
 * memcmp order of two byte strings, shorter first on a common prefix.
 * Inline, 8 bytes at a time: keys are short and this is the innermost loop
 * of every skiplist search, merge and binary search.
 */
static inline int lsm_bytes_cmp(const uint8_t *a, size_t al, const uint8_t *b, size_t bl)
{
    size_t n = al < bl ? al : bl;
    while (n >= 8) {
        uint64_t x, y;
        memcpy(&x, a, 8);
        memcpy(&y, b, 8);
        if (x != y) {
            x = __builtin_bswap64(x);
            y = __builtin_bswap64(y);
            return x < y ? -1 : 1;
        }
        a += 8;
        b += 8;
        n -= 8;
    }
    while (n) {
        if (*a != *b)
            return *a < *b ? -1 : 1;
        a++;
        b++;
        n--;
    }
    return al < bl ? -1 : (al > bl ? 1 : 0);
}

static inline uint64_t ik_trailer(uint64_t seq, unsigned type)
{
    return (seq << 8) | type;
}
/* False for keys shorter than the trailer or with an unknown type. */
bool ik_parse(struct nk_slice ik, struct ikey *out);
static inline struct nk_slice ik_user(struct nk_slice ik)
{
    return nk_slice_make(ik.data, ik.len >= LSM_TRAILER ? ik.len - LSM_TRAILER : ik.len);
}
void ik_append(struct nk_buf *b, struct nk_slice user, uint64_t seq, unsigned type);
int ik_cmp(struct nk_slice a, struct nk_slice b);
int lsm_user_cmp(struct nk_slice a, struct nk_slice b);
extern const struct sst_comparator lsm_ik_comparator;

/* Stored value of LSM_T_PUT_EXP: fixed64 LE expiry ms, then the user value. */
static inline bool ival_expired(unsigned type, struct nk_slice ival, uint64_t now_ms)
{
    return type == LSM_T_PUT_EXP && ival.len >= 8 && nk_dec_fixed64(ival.data) <= now_ms;
}

/* ---------------------------------------------------------------- memtable */

struct mem_node;

struct memtable {
    atomic_int refs;
    struct nk_arena arena; /* written by the one writer only */
    struct mem_node *head;
    atomic_int height; /* current max height of the list */
    uint64_t rnd;
    uint64_t wal_segment;   /* WAL position of this memtable's first record: */
    uint64_t wal_offset;    /* (segment, offset) */
    bool unlogged;          /* holds writes that skipped the WAL */
    uint64_t first_seq;     /* 0 while empty */
    atomic_uint_fast64_t last_seq;
    atomic_size_t entries;
    atomic_size_t usage;    /* bytes of nodes allocated, readable from any thread */
    /* Blocked bloom filter over user keys (NULL: none): a point read that
     * misses the memtable costs one cache line instead of a skiplist search. */
    uint8_t *bloom;
    uint32_t bloom_lines; /* 64-byte lines */
};

/* bloom_bytes: size of the memtable's bloom filter (0: none). */
struct memtable *mem_new(size_t bloom_bytes);
void mem_ref(struct memtable *m);
void mem_unref(struct memtable *m);
/* Writer only. value for LSM_T_PUT_EXP excludes the expiry (passed apart). */
void mem_add(struct memtable *m, uint64_t seq, unsigned type, struct nk_slice key,
             struct nk_slice value, uint64_t expire_at_ms);
static inline size_t mem_usage(const struct memtable *m)
{
    return atomic_load_explicit(&m->usage, memory_order_relaxed);
}
/* Newest entry of key with seq <= snap: true with its type and stored value. */
bool mem_get(struct memtable *m, struct nk_slice key, uint64_t snap, unsigned *type,
             struct nk_slice *ival);

/* ------------------------------------------------------ internal iterators */

struct lsm_iiter;
struct lsm_iiter_ops {
    void (*seek_first)(struct lsm_iiter *it);
    void (*seek)(struct lsm_iiter *it, struct nk_slice ikey);
    void (*next)(struct lsm_iiter *it);
    bool (*valid)(const struct lsm_iiter *it);
    struct nk_slice (*key)(const struct lsm_iiter *it);
    struct nk_slice (*value)(const struct lsm_iiter *it);
    nk_status (*status)(const struct lsm_iiter *it); /* copy; caller frees */
    void (*free)(struct lsm_iiter *it);
};
struct lsm_iiter {
    const struct lsm_iiter_ops *ops;
};

struct lsm_iiter *mem_iter_new(struct memtable *m); /* takes a reference */
struct lsm_file;
/* A sorted run of disjoint tables (their readers must be open); refs them. */
struct lsm_iiter *level_iter_new(struct lsm_file **files, uint32_t n);
/* Takes ownership of the children. */
struct lsm_iiter *merge_iter_new(struct lsm_iiter **kids, uint32_t n);

/* ------------------------------------------------------- files and versions */

struct lsm_file {
    atomic_int refs;
    uint64_t number;
    uint64_t size;
    struct nk_buf smallest, largest; /* internal keys */
    struct sst_reader *reader;       /* NULL while only described (manifest replay) */
    char *path;                      /* set when obsolete files must be unlinked */
    atomic_bool obsolete;            /* unlink when the last reference goes */
};

struct lsm_file *lsm_file_new(uint64_t number, uint64_t size, struct nk_slice smallest,
                              struct nk_slice largest);
void lsm_file_ref(struct lsm_file *f);
void lsm_file_unref(struct lsm_file *f);

/* An immutable set of tables: L0 newest first, L1+ sorted and disjoint. */
struct lsm_version {
    atomic_int refs;
    struct lsm_file **files[LSM_NUM_LEVELS];
    uint32_t nfiles[LSM_NUM_LEVELS];
};

struct lsm_version *version_new_empty(void);
void version_ref(struct lsm_version *v);
void version_unref(struct lsm_version *v);
uint64_t version_level_bytes(const struct lsm_version *v, int level);
/* Index of the first file in level (>= 1) whose largest key >= ikey. */
uint32_t version_find_file(const struct lsm_version *v, int level, struct nk_slice ikey);
/* Whether any file of level overlaps the user-key range [lo, hi] (NULL: unbounded). */
bool version_overlaps(const struct lsm_version *v, int level, const struct nk_slice *lo,
                      const struct nk_slice *hi);
/* Files of level overlapping [lo, hi] in user keys (for L0, expanded until
 * stable). *out is malloc'd; *n its count. */
void version_overlapping(const struct lsm_version *v, int level, const struct nk_slice *lo,
                         const struct nk_slice *hi, struct lsm_file ***out, uint32_t *n);

/* A version edit: what one manifest record changes. */
struct lsm_edit_file {
    int level;
    struct lsm_file *file; /* referenced by the edit */
};
struct lsm_edit_del {
    int level;
    uint64_t number;
};
struct lsm_edit {
    bool has_comparator, has_log_number, has_next_file, has_last_seq;
    char comparator[64];
    uint64_t log_number; /* WAL position (segment, offset) from which records */
    uint64_t log_offset; /* are not all in tables: recovery replays from here */
    uint64_t next_file;
    uint64_t last_seq;
    struct lsm_edit_del *dels;
    uint32_t ndels, dels_cap;
    struct lsm_edit_file *adds;
    uint32_t nadds, adds_cap;
};

void edit_init(struct lsm_edit *e);
void edit_free(struct lsm_edit *e);
void edit_add_file(struct lsm_edit *e, int level, struct lsm_file *f); /* takes a ref */
void edit_del_file(struct lsm_edit *e, int level, uint64_t number);
void edit_encode(const struct lsm_edit *e, struct nk_buf *out);
/* Untrusted bytes: NK_DATA_LOSS naming the field on anything malformed. */
nk_status edit_decode(struct nk_slice in, struct lsm_edit *e);
/* New version = base + edit. Fails (DATA_LOSS) when the edit deletes a file
 * that is not there or makes L1+ files overlap. */
nk_status version_apply(const struct lsm_version *base, const struct lsm_edit *e,
                        struct lsm_version **out);
/* An edit that recreates v from nothing (first record of a new manifest). */
void version_snapshot_edit(const struct lsm_version *v, struct lsm_edit *e);

/* Manifest file framing: fixed32 masked crc32c(len bytes + payload),
 * fixed32 len, payload. */
void manifest_frame(struct nk_slice payload, struct nk_buf *out);
/*
 * Parses a whole manifest file into edits, calling fn for each payload.
 * A last record cut short or failing its checksum at the very end is a torn
 * tail (stops, *torn = true); damage followed by more data is NK_DATA_LOSS.
 */
nk_status manifest_parse(struct nk_slice file, const char *name,
                         nk_status (*fn)(void *ctx, struct nk_slice payload), void *ctx,
                         bool *torn);

/* --------------------------------------------------------------- picking */

struct lsm_pick_options {
    uint32_t l0_trigger;
    uint64_t max_bytes_base;
    uint32_t ratio;
};

/* Compaction score of each level (>= 1: needs compaction); returns the level
 * with the highest score (or -1 when none reaches 1). */
int pick_level(const struct lsm_version *v, const struct lsm_pick_options *o, double *score);
uint64_t pick_max_bytes(const struct lsm_pick_options *o, int level);

struct lsm_compaction {
    int level; /* inputs from level and level + 1; output to level + 1 */
    struct lsm_file **in[2];
    uint32_t nin[2];
    bool trivial_move; /* one file moved down unchanged */
};

/*
 * Picks the inputs of a compaction out of level: for L0 every L0 file
 * overlapping the oldest one's range (with the files they overlap), for L1+
 * the first file after compact_pointer (round robin through the key space),
 * plus the overlapping files of level + 1. NULL compact_pointer: start.
 */
void pick_compaction(const struct lsm_version *v, int level, struct nk_slice compact_pointer,
                     struct lsm_compaction *c);
/* Inputs for compacting [lo, hi] of level (NULL: unbounded); false if none. */
bool pick_range(const struct lsm_version *v, int level, const struct nk_slice *lo,
                const struct nk_slice *hi, struct lsm_compaction *c);
void compaction_free(struct lsm_compaction *c);

#endif /* NK_LSM_INTERNAL_H */
