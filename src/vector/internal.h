/*
 * internal.h: what the files of src/vector share and nothing outside uses.
 *
 * Storage of an index (index.c): slots numbered from 0, each holding one
 * vector. A slot's level-0 block lives in fixed-size chunks (no realloc of
 * the bulk, so growth never needs twice the memory):
 *   HNSW: [u32 count][2M x u32 links][dims x f32 vector]
 *   flat: [dims x f32 vector]
 * Per-slot metadata (id, level, upper links, inverse norm, flags) lives in
 * a parallel array. An open-addressing map from id to slot finds live ids.
 * The HNSW graph code is in hnsw.c.
 */
#ifndef NK_VECTOR_INTERNAL_H
#define NK_VECTOR_INTERNAL_H

#include <pthread.h>

#include "vector/vector.h"

#define VEC_CHUNK_SLOTS 4096u
#define VEC_MAX_LEVEL   16
#define VEC_INDEX_OVERHEAD 4096u /* accounted bytes of an empty index */

float vec_cosine_from(float dot, float inv_na, float inv_nb);
float vec_inv_norm(const float *a, size_t n);

/* (distance, slot) ordered by distance then slot: every tie breaks alike. */
struct vec_cand {
    float d;
    uint32_t slot;
};

static inline bool vec_cand_less(struct vec_cand a, struct vec_cand b)
{
    return a.d < b.d || (a.d == b.d && a.slot < b.slot);
}

/* A binary heap of candidates; max-heap when max is true. */
struct vec_heap {
    struct vec_cand *v;
    uint32_t n, cap;
    bool max;
};

void vec_heap_push(struct vec_heap *h, struct vec_cand c);
struct vec_cand vec_heap_pop(struct vec_heap *h);
static inline struct vec_cand vec_heap_top(const struct vec_heap *h)
{
    return h->v[0];
}

/* Per-search scratch: a visited set (epoch tags) and heaps. Pooled. */
struct vec_scratch {
    uint16_t *tags;
    uint32_t tags_cap;
    uint16_t epoch;
    struct vec_heap cand, res;
    struct vec_cand *tmp; /* selection buffer */
    uint32_t tmp_cap;
    struct vec_scratch *next;
};

enum { SLOT_FREE = 1, SLOT_DELETED = 2 };

struct vec_slot {
    char *id; /* NUL-terminated */
    uint32_t id_len;
    uint8_t level;
    uint8_t flags;
    uint8_t dirty;   /* HNSW: node record changed since the last take */
    float inv_norm;  /* cosine only */
    uint32_t *upper; /* level x (1 + M) u32: per level [count][M links] */
};

struct vec_index {
    struct vec_index_options o;
    pthread_rwlock_t lock;
    size_t stride;       /* bytes of a level-0 block */
    size_t vec_off;      /* offset of the vector inside the block */
    uint32_t m0;         /* level-0 links capacity (2M) */
    uint8_t **chunks;
    uint32_t n_chunks, chunks_cap;
    struct vec_slot *slots;
    uint32_t n_slots, slots_cap; /* slots in use or free, below the high water */
    uint32_t *free_slots;
    uint32_t n_free, free_cap;
    /* id -> slot + 1 (0 empty); linear probing, backward-shift deletion */
    uint32_t *map;
    uint64_t map_cap, map_used;
    uint64_t live, tombstones;
    uint64_t accounted;
    /* HNSW */
    int64_t entry; /* -1: empty graph */
    int max_level;
    struct vec_scratch *writer_scratch;
    /* HNSW persistence: slots whose node record changed, and whether the
     * entry point did, since vec_graph_take_dirty */
    uint32_t *dirty;
    uint32_t n_dirty, dirty_cap;
    bool meta_dirty;
    pthread_mutex_t pool_mu;
    struct vec_scratch *pool;
    uint32_t pool_n;
};

static inline uint8_t *vec_block(const struct vec_index *ix, uint32_t slot)
{
    return ix->chunks[slot / VEC_CHUNK_SLOTS] + (size_t)(slot % VEC_CHUNK_SLOTS) * ix->stride;
}
static inline float *vec_slot_vector(const struct vec_index *ix, uint32_t slot)
{
    return (float *)(vec_block(ix, slot) + ix->vec_off);
}
/* links of slot at level l: [0] is the count, then the links */
static inline uint32_t *vec_links(const struct vec_index *ix, uint32_t slot, int l)
{
    if (l == 0)
        return (uint32_t *)vec_block(ix, slot);
    return ix->slots[slot].upper + (size_t)(l - 1) * (1 + ix->o.m);
}
static inline uint32_t vec_max_links(const struct vec_index *ix, int l)
{
    return l == 0 ? ix->m0 : ix->o.m;
}

/* Ordering distance between a query (with its inverse norm) and a slot:
 * squared L2, 1 - cos, or -dot. */
static inline float vec_qdist(const struct vec_index *ix, const float *q, float q_inv,
                              uint32_t slot)
{
    const float *v = vec_slot_vector(ix, slot);
    switch (ix->o.metric) {
    case VEC_METRIC_L2:
        return vec_l2_sq(q, v, ix->o.dims);
    case VEC_METRIC_COSINE:
        return vec_cosine_from(vec_dot(q, v, ix->o.dims), q_inv, ix->slots[slot].inv_norm);
    default:
        return -vec_dot(q, v, ix->o.dims);
    }
}

static inline void vec_mark_dirty(struct vec_index *ix, uint32_t slot)
{
    if (ix->o.type != VEC_INDEX_HNSW || ix->slots[slot].dirty)
        return;
    ix->slots[slot].dirty = 1;
    if (ix->n_dirty == ix->dirty_cap) {
        ix->dirty_cap = ix->dirty_cap ? ix->dirty_cap * 2 : 64;
        ix->dirty = nk_realloc(ix->dirty, (size_t)ix->dirty_cap * sizeof(uint32_t));
    }
    ix->dirty[ix->n_dirty++] = slot;
}

/* ---- graph persistence (graph.c); called by store.c with no concurrent
 * mutation (the apply thread is the only writer) ---- */

/* The slots whose node record must be rewritten (or deleted, when the slot
 * is now free) since the last call, ascending; *meta: the entry point
 * changed. The list stays valid until the next mutation. */
uint32_t vec_graph_take_dirty(struct vec_index *ix, const uint32_t **slots, bool *meta);
/* Node record of slot (docs/format/vector-state.md); false when the slot is
 * free (its record is to be deleted). */
bool vec_graph_encode_node(struct vec_index *ix, uint32_t slot, struct nk_buf *out);
void vec_graph_encode_meta(struct vec_index *ix, struct nk_buf *out);
/* Loading, in this order: meta, every node record (any order), every live
 * vector, finish (checks the graph and derives the counts). */
nk_status vec_graph_load_meta(struct vec_index *ix, struct nk_slice rec);
nk_status vec_graph_load_node(struct vec_index *ix, uint32_t slot, struct nk_slice rec);
nk_status vec_graph_load_vector(struct vec_index *ix, struct nk_slice id, const float *v);
nk_status vec_graph_load_finish(struct vec_index *ix);

/* index.c helpers for graph.c */
uint32_t vec_slot_new(struct vec_index *ix);
uint64_t vec_map_lookup(const struct vec_index *ix, struct nk_slice id, bool *found);
bool vec_map_add(struct vec_index *ix, uint32_t slot);
void vec_free_push(struct vec_index *ix, uint32_t slot);
void vec_sort_free_list(struct vec_index *ix);

struct vec_scratch *vec_scratch_get(struct vec_index *ix);
void vec_scratch_put(struct vec_index *ix, struct vec_scratch *s);
void vec_scratch_free(struct vec_scratch *s);

/* hnsw.c */
int vec_hnsw_level_for(struct nk_slice id, uint32_t m);
void vec_hnsw_insert(struct vec_index *ix, uint32_t slot, struct vec_scratch *s);
/* Candidates (ascending) of a query at level 0 into s->res (as a max-heap). */
void vec_hnsw_search(const struct vec_index *ix, const float *q, float q_inv, uint32_t ef,
                     struct vec_scratch *s);
/* Repairs every live node's links around the tombstones and frees them. */
void vec_hnsw_purge(struct vec_index *ix, struct vec_scratch *s);

#endif /* NK_VECTOR_INTERNAL_H */
