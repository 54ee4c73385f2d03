/*
 * index.c: the in-memory index behind vec_index_*: options, slot storage,
 * the id map, memory accounting, the flat (exact) search, and the public
 * entry points that take the index's readers-writer lock and hand HNSW work
 * to hnsw.c.
 *
 * Deletes: a flat index frees the slot at once. An HNSW index turns the slot
 * into a tombstone: it stays in the graph as a stepping stone (searches walk
 * through it but never return it), and once tombstones reach a quarter of
 * the live count (at most 16384/m), vec_hnsw_purge reconnects their
 * neighbours and frees them all. A replace is a delete and an insert. Both
 * are deterministic functions of the sequence of operations, so replicas
 * agree.
 */
#include <math.h>
#include <stdlib.h>

#include "vector/internal.h"

/* bytes of per-index fixed state, counted in vec_index_memory */
#define INDEX_OVERHEAD VEC_INDEX_OVERHEAD
/* bookkeeping bytes per vector: slot record, id allocation header, map */
#define PER_VECTOR_OVERHEAD (sizeof(struct vec_slot) + 16u + 8u)

/* ---------------------------------------------------------------- options */

void vec_index_options_default(struct vec_index_options *o)
{
    memset(o, 0, sizeof(*o));
    o->type = VEC_INDEX_HNSW;
    o->metric = VEC_METRIC_L2;
    o->m = VEC_DEFAULT_M;
    o->ef_construction = VEC_DEFAULT_EF_CONSTRUCTION;
    o->ef_search = VEC_DEFAULT_EF_SEARCH;
    o->max_bytes = VEC_DEFAULT_MAX_BYTES;
}

nk_status vec_index_options_validate(const struct vec_index_options *o)
{
    if (o->type != VEC_INDEX_FLAT && o->type != VEC_INDEX_HNSW)
        return nk_status_make(NK_INVALID_ARGUMENT,
                              "index type %d is unknown: use 1 (brute force) or 2 (HNSW)",
                              (int)o->type);
    if (o->metric != VEC_METRIC_L2 && o->metric != VEC_METRIC_COSINE &&
        o->metric != VEC_METRIC_IP)
        return nk_status_make(NK_INVALID_ARGUMENT,
                              "distance %d is unknown: use 1 (euclidean), 2 (cosine) or 3 "
                              "(inner product)",
                              (int)o->metric);
    NK_TRY(vec_validate_dims(o->dims));
    if (o->m < VEC_MIN_M || o->m > VEC_MAX_M)
        return nk_status_make(NK_INVALID_ARGUMENT, "HNSW m is %u; it must be %u to %u", o->m,
                              VEC_MIN_M, VEC_MAX_M);
    if (o->ef_construction < 1 || o->ef_construction > VEC_MAX_EF)
        return nk_status_make(NK_INVALID_ARGUMENT, "ef_construction is %u; it must be 1 to %u",
                              o->ef_construction, VEC_MAX_EF);
    if (o->ef_search < 1 || o->ef_search > VEC_MAX_EF)
        return nk_status_make(NK_INVALID_ARGUMENT, "ef_search is %u; it must be 1 to %u",
                              o->ef_search, VEC_MAX_EF);
    if (o->max_bytes < VEC_MIN_MAX_BYTES || o->max_bytes > VEC_MAX_MAX_BYTES)
        return nk_status_make(NK_INVALID_ARGUMENT,
                              "max_bytes is %llu; it must be %llu to %llu",
                              (unsigned long long)o->max_bytes,
                              (unsigned long long)VEC_MIN_MAX_BYTES,
                              (unsigned long long)VEC_MAX_MAX_BYTES);
    return NK_OK;
}

static size_t block_stride(const struct vec_index_options *o, size_t *vec_off)
{
    size_t links = o->type == VEC_INDEX_HNSW ? 4 + 4 * (size_t)(2 * o->m) : 0;
    links = (links + 15) & ~(size_t)15; /* vectors start 16-byte aligned */
    if (vec_off)
        *vec_off = links;
    return (links + 4 * (size_t)o->dims + 15) & ~(size_t)15;
}

static uint64_t level_cost(const struct vec_index_options *o, int level)
{
    return level ? (uint64_t)level * (1 + o->m) * 4 + 16 : 0;
}

uint64_t vec_index_cost(const struct vec_index_options *o, struct nk_slice id)
{
    uint64_t c = block_stride(o, NULL) + id.len + 1 + PER_VECTOR_OVERHEAD;
    if (o->type == VEC_INDEX_HNSW)
        c += level_cost(o, vec_hnsw_level_for(id, o->m));
    return c;
}

const struct vec_index_options *vec_index_get_options(const struct vec_index *ix)
{
    return &ix->o;
}

/* ---------------------------------------------------------------- results */

void vec_results_init(struct vec_results *r)
{
    memset(r, 0, sizeof(*r));
    nk_arena_init(&r->arena);
}

void vec_results_free(struct vec_results *r)
{
    nk_arena_free(&r->arena);
    memset(r, 0, sizeof(*r));
}

/* ------------------------------------------------------------------- heap */

static inline bool heap_above(const struct vec_heap *h, struct vec_cand a, struct vec_cand b)
{
    return h->max ? vec_cand_less(b, a) : vec_cand_less(a, b);
}

void vec_heap_push(struct vec_heap *h, struct vec_cand c)
{
    if (h->n == h->cap) {
        h->cap = h->cap ? h->cap * 2 : 64;
        h->v = nk_realloc(h->v, (size_t)h->cap * sizeof(*h->v));
    }
    uint32_t i = h->n++;
    while (i > 0) {
        uint32_t p = (i - 1) / 2;
        if (!heap_above(h, c, h->v[p]))
            break;
        h->v[i] = h->v[p];
        i = p;
    }
    h->v[i] = c;
}

struct vec_cand vec_heap_pop(struct vec_heap *h)
{
    NK_DASSERT(h->n > 0);
    struct vec_cand top = h->v[0];
    struct vec_cand last = h->v[--h->n];
    uint32_t i = 0;
    for (;;) {
        uint32_t l = 2 * i + 1, best = i;
        struct vec_cand bv = last;
        if (l < h->n && heap_above(h, h->v[l], bv)) {
            best = l;
            bv = h->v[l];
        }
        if (l + 1 < h->n && heap_above(h, h->v[l + 1], bv))
            best = l + 1;
        if (best == i)
            break;
        h->v[i] = h->v[best];
        i = best;
    }
    if (h->n)
        h->v[i] = last;
    return top;
}

/* ---------------------------------------------------------------- scratch */

static void scratch_fit(struct vec_scratch *s, uint32_t n_slots)
{
    if (s->tags_cap < n_slots) {
        uint32_t cap = n_slots + n_slots / 2 + 64;
        free(s->tags);
        s->tags = nk_calloc(cap, sizeof(*s->tags));
        s->tags_cap = cap;
        s->epoch = 0;
    }
}

struct vec_scratch *vec_scratch_get(struct vec_index *ix)
{
    pthread_mutex_lock(&ix->pool_mu);
    struct vec_scratch *s = ix->pool;
    if (s) {
        ix->pool = s->next;
        ix->pool_n--;
    }
    pthread_mutex_unlock(&ix->pool_mu);
    if (!s) {
        s = nk_calloc(1, sizeof(*s));
        s->res.max = true;
    }
    scratch_fit(s, ix->n_slots);
    return s;
}

void vec_scratch_free(struct vec_scratch *s)
{
    if (!s)
        return;
    free(s->tags);
    free(s->cand.v);
    free(s->res.v);
    free(s->tmp);
    free(s);
}

void vec_scratch_put(struct vec_index *ix, struct vec_scratch *s)
{
    pthread_mutex_lock(&ix->pool_mu);
    if (ix->pool_n < 64) { /* bound: more concurrent searches than this allocate afresh */
        s->next = ix->pool;
        ix->pool = s;
        ix->pool_n++;
        s = NULL;
    }
    pthread_mutex_unlock(&ix->pool_mu);
    vec_scratch_free(s);
}

/* ------------------------------------------------------------------- map */

static inline uint64_t id_hash(struct nk_slice id)
{
    return nk_xxhash64(id.data, id.len);
}

static inline bool slot_is(const struct vec_index *ix, uint32_t slot, struct nk_slice id)
{
    const struct vec_slot *s = &ix->slots[slot];
    return s->id_len == id.len && memcmp(s->id, id.data, id.len) == 0;
}

/* The map position holding id, or of the empty cell where it would go. */
static uint64_t map_find(const struct vec_index *ix, struct nk_slice id, bool *found)
{
    uint64_t mask = ix->map_cap - 1;
    uint64_t i = id_hash(id) & mask;
    for (;;) {
        uint32_t v = ix->map[i];
        if (v == 0) {
            *found = false;
            return i;
        }
        if (slot_is(ix, v - 1, id)) {
            *found = true;
            return i;
        }
        i = (i + 1) & mask;
    }
}

static void map_grow(struct vec_index *ix)
{
    uint32_t *old = ix->map;
    uint64_t old_cap = ix->map_cap;
    ix->map_cap = old_cap ? old_cap * 2 : 64;
    ix->map = nk_calloc(ix->map_cap, sizeof(uint32_t));
    uint64_t mask = ix->map_cap - 1;
    for (uint64_t j = 0; j < old_cap; j++) {
        if (!old[j])
            continue;
        const struct vec_slot *s = &ix->slots[old[j] - 1];
        uint64_t i = id_hash(nk_slice_make(s->id, s->id_len)) & mask;
        while (ix->map[i])
            i = (i + 1) & mask;
        ix->map[i] = old[j];
    }
    free(old);
}

static void map_erase(struct vec_index *ix, uint64_t i)
{
    uint64_t mask = ix->map_cap - 1;
    ix->map[i] = 0;
    ix->map_used--;
    /* backward shift: move later members of the run into the hole when
     * their home position does not lie (cyclically) in (hole, j] */
    uint64_t j = i;
    for (;;) {
        j = (j + 1) & mask;
        uint32_t v = ix->map[j];
        if (!v)
            return;
        const struct vec_slot *s = &ix->slots[v - 1];
        uint64_t home = id_hash(nk_slice_make(s->id, s->id_len)) & mask;
        bool stays = i <= j ? (home > i && home <= j) : (home > i || home <= j);
        if (!stays) {
            ix->map[i] = v;
            ix->map[j] = 0;
            i = j;
        }
    }
}

uint64_t vec_map_lookup(const struct vec_index *ix, struct nk_slice id, bool *found)
{
    return map_find(ix, id, found);
}

/* Adds id -> slot (the slot's id is set); false when id is there already. */
bool vec_map_add(struct vec_index *ix, uint32_t slot)
{
    struct nk_slice id = nk_slice_make(ix->slots[slot].id, ix->slots[slot].id_len);
    bool found;
    if (ix->map_used + 1 > ix->map_cap / 2)
        map_grow(ix);
    uint64_t pos = map_find(ix, id, &found);
    if (found)
        return false;
    ix->map[pos] = slot + 1;
    ix->map_used++;
    return true;
}


/* ------------------------------------------------------------------ slots */

static uint32_t slot_alloc(struct vec_index *ix)
{
    if (ix->n_free)
        return ix->free_slots[--ix->n_free];
    uint32_t slot = ix->n_slots;
    if (slot % VEC_CHUNK_SLOTS == 0) {
        uint32_t c = slot / VEC_CHUNK_SLOTS;
        if (c == ix->chunks_cap) {
            ix->chunks_cap = ix->chunks_cap ? ix->chunks_cap * 2 : 8;
            ix->chunks = nk_realloc(ix->chunks, ix->chunks_cap * sizeof(*ix->chunks));
        }
        ix->chunks[c] = aligned_alloc(64, (VEC_CHUNK_SLOTS * ix->stride + 63) & ~(size_t)63);
        NK_ASSERT(ix->chunks[c]);
        ix->n_chunks = c + 1;
    }
    if (slot == ix->slots_cap) {
        ix->slots_cap = ix->slots_cap ? ix->slots_cap + ix->slots_cap / 2 : 64;
        ix->slots = nk_realloc(ix->slots, (size_t)ix->slots_cap * sizeof(*ix->slots));
    }
    memset(&ix->slots[slot], 0, sizeof(ix->slots[slot]));
    ix->slots[slot].flags = SLOT_FREE;
    ix->n_slots++;
    ix->meta_dirty = true; /* the persisted slot count grew */
    return slot;
}

uint32_t vec_slot_new(struct vec_index *ix)
{
    return slot_alloc(ix);
}

static void slot_release(struct vec_index *ix, uint32_t slot)
{
    struct vec_slot *s = &ix->slots[slot];
    vec_mark_dirty(ix, slot); /* its node record goes */
    free(s->id);
    free(s->upper);
    uint8_t dirty = s->dirty;
    memset(s, 0, sizeof(*s));
    s->flags = SLOT_FREE;
    s->dirty = dirty;
    if (ix->n_free == ix->free_cap) {
        ix->free_cap = ix->free_cap ? ix->free_cap * 2 : 64;
        ix->free_slots = nk_realloc(ix->free_slots, ix->free_cap * sizeof(uint32_t));
    }
    ix->free_slots[ix->n_free++] = slot;
}

/* Fills a fresh slot with id and vector (its graph links still empty). */
static void slot_fill(struct vec_index *ix, uint32_t slot, struct nk_slice id, const float *v)
{
    struct vec_slot *s = &ix->slots[slot];
    uint8_t dirty = slot < ix->n_slots ? s->dirty : 0;
    memset(s, 0, sizeof(*s));
    s->dirty = dirty;
    s->id = nk_malloc(id.len + 1);
    memcpy(s->id, id.data, id.len);
    s->id[id.len] = 0;
    s->id_len = (uint32_t)id.len;
    float *dst = vec_slot_vector(ix, slot);
    memcpy(dst, v, (size_t)ix->o.dims * sizeof(float));
    if (ix->o.metric == VEC_METRIC_COSINE)
        s->inv_norm = vec_inv_norm(dst, ix->o.dims);
    if (ix->o.type == VEC_INDEX_HNSW) {
        int level = vec_hnsw_level_for(id, ix->o.m);
        s->level = (uint8_t)level;
        *(uint32_t *)vec_block(ix, slot) = 0;
        if (level)
            s->upper = nk_calloc((size_t)level * (1 + ix->o.m), sizeof(uint32_t));
    }
}

/* ------------------------------------------------------------- lifecycle */

nk_status vec_index_create(const struct vec_index_options *o, struct vec_index **out)
{
    NK_TRY(vec_index_options_validate(o));
    struct vec_index *ix = nk_calloc(1, sizeof(*ix));
    ix->o = *o;
    ix->m0 = 2 * o->m;
    ix->stride = block_stride(o, &ix->vec_off);
    ix->entry = -1;
    ix->accounted = INDEX_OVERHEAD;
    NK_ASSERT(pthread_rwlock_init(&ix->lock, NULL) == 0);
    NK_ASSERT(pthread_mutex_init(&ix->pool_mu, NULL) == 0);
    map_grow(ix);
    *out = ix;
    return NK_OK;
}

void vec_index_destroy(struct vec_index *ix)
{
    if (!ix)
        return;
    for (uint32_t i = 0; i < ix->n_slots; i++) {
        free(ix->slots[i].id);
        free(ix->slots[i].upper);
    }
    for (uint32_t c = 0; c < ix->n_chunks; c++)
        free(ix->chunks[c]);
    free(ix->chunks);
    free(ix->slots);
    free(ix->free_slots);
    free(ix->map);
    free(ix->dirty);
    while (ix->pool) {
        struct vec_scratch *s = ix->pool;
        ix->pool = s->next;
        vec_scratch_free(s);
    }
    vec_scratch_free(ix->writer_scratch);
    pthread_rwlock_destroy(&ix->lock);
    pthread_mutex_destroy(&ix->pool_mu);
    free(ix);
}

/* -------------------------------------------------------------- mutation */

/* A clean-up runs when tombstones reach a quarter of the live count, but at
 * most 16384/m of them: that bounds the node records one clean-up rewrites
 * (about the tombstones' in-links, ~2m each), which go into one LSM batch. */
static bool wants_purge(const struct vec_index *ix)
{
    if (!ix->tombstones)
        return false;
    uint64_t at = NK_MIN(ix->live / 4, 16384u / ix->o.m);
    return ix->live == 0 || ix->tombstones >= NK_MAX(at, 16u);
}

static struct vec_scratch *writer_scratch(struct vec_index *ix)
{
    if (!ix->writer_scratch) {
        ix->writer_scratch = nk_calloc(1, sizeof(*ix->writer_scratch));
        ix->writer_scratch->res.max = true;
    }
    scratch_fit(ix->writer_scratch, ix->n_slots);
    return ix->writer_scratch;
}

static int desc_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? 1 : (x > y ? -1 : 0);
}

/* Descending, so that the lowest free slot is handed out first: the slot
 * numbers (and so the persisted graph) depend only on the set of free slots,
 * also after a restart rebuilt the list. */
void vec_sort_free_list(struct vec_index *ix)
{
    if (ix->n_free)
        qsort(ix->free_slots, ix->n_free, sizeof(uint32_t), desc_u32);
}
#define sort_free_list vec_sort_free_list

void vec_free_push(struct vec_index *ix, uint32_t slot)
{
    if (ix->n_free == ix->free_cap) {
        ix->free_cap = ix->free_cap ? ix->free_cap * 2 : 64;
        ix->free_slots = nk_realloc(ix->free_slots, ix->free_cap * sizeof(uint32_t));
    }
    ix->free_slots[ix->n_free++] = slot;
}

/* Reconnects around the tombstones, then frees them; the free list hands
 * out the lowest slot first. */
static void purge(struct vec_index *ix)
{
    vec_hnsw_purge(ix, writer_scratch(ix));
    for (uint32_t i = ix->n_slots; i > 0; i--)
        if (ix->slots[i - 1].flags & SLOT_DELETED)
            slot_release(ix, i - 1);
    ix->tombstones = 0;
    sort_free_list(ix);
}

/* Removes the live slot at map position pos (write lock held). */
static void remove_at(struct vec_index *ix, uint64_t pos)
{
    uint32_t slot = ix->map[pos] - 1;
    struct vec_slot *s = &ix->slots[slot];
    ix->accounted -= vec_index_cost(&ix->o, nk_slice_make(s->id, s->id_len));
    map_erase(ix, pos);
    ix->live--;
    if (ix->o.type == VEC_INDEX_FLAT) {
        slot_release(ix, slot);
    } else {
        s->flags = SLOT_DELETED;
        vec_mark_dirty(ix, slot);
        ix->tombstones++;
    }
}

nk_status vec_index_insert(struct vec_index *ix, struct nk_slice id, const float *v,
                           bool *replaced)
{
    NK_TRY(vec_validate_id(id));
    NK_TRY(vec_validate_vector(v, ix->o.dims, ix->o.dims));
    pthread_rwlock_wrlock(&ix->lock);
    bool found;
    uint64_t pos = map_find(ix, id, &found);
    *replaced = found;
    uint64_t cost = vec_index_cost(&ix->o, id);
    uint64_t after = ix->accounted + (found ? 0 : cost); /* a replace keeps the id's cost */
    if (after > ix->o.max_bytes) {
        pthread_rwlock_unlock(&ix->lock);
        return nk_status_make(NK_RESOURCE_EXHAUSTED,
                              "the index would use %llu bytes with this vector; its bound "
                              "max_bytes is %llu bytes (%llu vectors of %u dimensions)",
                              (unsigned long long)after, (unsigned long long)ix->o.max_bytes,
                              (unsigned long long)ix->live, ix->o.dims);
    }
    if (found && ix->o.type == VEC_INDEX_FLAT) {
        /* exact search needs no structure: overwrite in place */
        uint32_t slot = ix->map[pos] - 1;
        memcpy(vec_slot_vector(ix, slot), v, (size_t)ix->o.dims * sizeof(float));
        if (ix->o.metric == VEC_METRIC_COSINE)
            ix->slots[slot].inv_norm = vec_inv_norm(v, ix->o.dims);
        pthread_rwlock_unlock(&ix->lock);
        return NK_OK;
    }
    if (found) {
        remove_at(ix, pos);
        pos = map_find(ix, id, &found);
    }
    uint32_t slot = slot_alloc(ix);
    slot_fill(ix, slot, id, v);
    if (ix->map_used + 1 > ix->map_cap / 2) {
        map_grow(ix);
        pos = map_find(ix, id, &found);
    }
    ix->map[pos] = slot + 1;
    ix->map_used++;
    ix->live++;
    ix->accounted += cost;
    if (ix->o.type == VEC_INDEX_HNSW) {
        vec_hnsw_insert(ix, slot, writer_scratch(ix));
        if (wants_purge(ix))
            purge(ix);
    }
    pthread_rwlock_unlock(&ix->lock);
    return NK_OK;
}

void vec_index_delete(struct vec_index *ix, struct nk_slice id, bool *deleted)
{
    pthread_rwlock_wrlock(&ix->lock);
    bool found;
    uint64_t pos = map_find(ix, id, &found);
    *deleted = found;
    if (found) {
        remove_at(ix, pos);
        if (ix->o.type == VEC_INDEX_HNSW && wants_purge(ix))
            purge(ix);
    }
    pthread_rwlock_unlock(&ix->lock);
}

/* ----------------------------------------------------------------- reads */

bool vec_index_get(struct vec_index *ix, struct nk_slice id, float *out)
{
    pthread_rwlock_rdlock(&ix->lock);
    bool found;
    uint64_t pos = map_find(ix, id, &found);
    if (found && out)
        memcpy(out, vec_slot_vector(ix, ix->map[pos] - 1), (size_t)ix->o.dims * sizeof(float));
    pthread_rwlock_unlock(&ix->lock);
    return found;
}

uint64_t vec_index_count(struct vec_index *ix)
{
    pthread_rwlock_rdlock(&ix->lock);
    uint64_t n = ix->live;
    pthread_rwlock_unlock(&ix->lock);
    return n;
}

uint64_t vec_index_memory(struct vec_index *ix)
{
    pthread_rwlock_rdlock(&ix->lock);
    uint64_t n = ix->accounted;
    pthread_rwlock_unlock(&ix->lock);
    return n;
}

uint64_t vec_index_allocated(struct vec_index *ix)
{
    pthread_rwlock_rdlock(&ix->lock);
    uint64_t b = sizeof(*ix) + (uint64_t)ix->n_chunks * VEC_CHUNK_SLOTS * ix->stride +
                 (uint64_t)ix->slots_cap * sizeof(struct vec_slot) + ix->map_cap * 4 +
                 (uint64_t)ix->free_cap * 4;
    for (uint32_t i = 0; i < ix->n_slots; i++) {
        const struct vec_slot *s = &ix->slots[i];
        if (s->flags & SLOT_FREE)
            continue;
        b += s->id_len + 1 + 16 + level_cost(&ix->o, s->level);
    }
    pthread_rwlock_unlock(&ix->lock);
    return b;
}

struct ranked {
    float d;
    uint32_t slot;
    const struct vec_index *ix;
};

static int ranked_cmp(const void *pa, const void *pb)
{
    const struct ranked *a = pa, *b = pb;
    if (a->d != b->d)
        return a->d < b->d ? -1 : 1;
    const struct vec_slot *x = &a->ix->slots[a->slot], *y = &b->ix->slots[b->slot];
    return nk_slice_cmp(nk_slice_make(x->id, x->id_len), nk_slice_make(y->id, y->id_len));
}

static void flat_search(const struct vec_index *ix, const float *q, float q_inv, uint32_t k,
                        struct vec_scratch *s)
{
    struct vec_heap *h = &s->res;
    h->n = 0;
    for (uint32_t i = 0; i < ix->n_slots; i++) {
        if (ix->slots[i].flags)
            continue;
        struct vec_cand c = {vec_qdist(ix, q, q_inv, i), i};
        if (h->n < k) {
            vec_heap_push(h, c);
        } else if (vec_cand_less(c, vec_heap_top(h))) {
            vec_heap_pop(h);
            vec_heap_push(h, c);
        }
    }
}

nk_status vec_index_search(struct vec_index *ix, const float *q, uint32_t k, uint32_t ef,
                           bool include_vectors, struct vec_results *r)
{
    NK_TRY(vec_validate_k(k));
    NK_TRY(vec_validate_vector(q, ix->o.dims, ix->o.dims));
    nk_arena_free(&r->arena);
    nk_arena_init(&r->arena);
    r->m = NULL;
    r->n = 0;
    if (ef == 0)
        ef = ix->o.ef_search;
    if (ef < k)
        ef = k;
    if (ef > VEC_MAX_EF)
        ef = VEC_MAX_EF < k ? k : VEC_MAX_EF;
    float q_inv = ix->o.metric == VEC_METRIC_COSINE ? vec_inv_norm(q, ix->o.dims) : 0.0f;

    pthread_rwlock_rdlock(&ix->lock);
    struct vec_scratch *s = vec_scratch_get(ix);
    if (ix->live) {
        /* An ef that covers every live vector asks for the exact
         * answer, and a walk cannot promise it: re-selecting the links of a
         * full neighbour (connect() in hnsw.c) can drop the last link into a
         * node, which no walk then reaches. Scanning costs no more than
         * walking the whole graph would. */
        if (ix->o.type == VEC_INDEX_FLAT || (uint64_t)ef >= ix->live)
            flat_search(ix, q, q_inv, k, s);
        else
            vec_hnsw_search(ix, q, q_inv, ef, s);
    } else {
        s->res.n = 0;
    }
    uint32_t n = s->res.n;
    struct ranked *rk = nk_malloc((n ? n : 1) * sizeof(*rk));
    for (uint32_t i = 0; i < n; i++)
        rk[i] = (struct ranked){s->res.v[i].d, s->res.v[i].slot, ix};
    qsort(rk, n, sizeof(*rk), ranked_cmp);
    if (n > k)
        n = k;
    r->m = nk_arena_alloc_aligned(&r->arena, (n ? n : 1) * sizeof(*r->m));
    for (uint32_t i = 0; i < n; i++) {
        const struct vec_slot *sl = &ix->slots[rk[i].slot];
        struct vec_match *m = &r->m[i];
        char *id = nk_arena_alloc(&r->arena, sl->id_len + 1);
        memcpy(id, sl->id, sl->id_len + 1);
        m->id = id;
        m->id_len = sl->id_len;
        m->distance = ix->o.metric == VEC_METRIC_L2 ? sqrtf(rk[i].d) : rk[i].d;
        m->vector = NULL;
        if (include_vectors) {
            float *v = nk_arena_alloc_aligned(&r->arena, (size_t)ix->o.dims * sizeof(float));
            memcpy(v, vec_slot_vector(ix, rk[i].slot), (size_t)ix->o.dims * sizeof(float));
            m->vector = v;
        }
    }
    r->n = n;
    vec_scratch_put(ix, s);
    pthread_rwlock_unlock(&ix->lock);
    free(rk);
    return NK_OK;
}
