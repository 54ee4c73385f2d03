/*
 * hnsw.c: the Hierarchical Navigable Small World graph (Malkov & Yashunin,
 * 2016): greedy descent through the upper levels, a beam search of width ef
 * at the bottom, the neighbour-selection heuristic that keeps a candidate
 * only when it is closer to the base than to every neighbour already kept,
 * and the tombstone clean-up.
 *
 * Determinism: a node's level is a function of its id (the id's xxhash64
 * drives an integer PRNG draw, so no libm and no clock); candidates are
 * ordered by (distance, slot) everywhere; the distance kernels give
 * bit-identical results on every CPU (distance.c). So the same sequence of
 * inserts and deletes builds the same graph on every replica.
 *
 * No recursion anywhere; every loop is bounded by the node count, the link
 * counts (M, 2M) and ef.
 */
#include <math.h>
#include <stdlib.h>

#include "vector/internal.h"

static inline uint64_t splitmix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

int vec_hnsw_level_for(struct nk_slice id, uint32_t m)
{
    /* P(level >= l) = m^-l, i.e. the paper's mL = 1/ln(m), drawn with
     * integers only: level l needs x < 2^64 / m^l. */
    uint64_t x = splitmix64(nk_xxhash64(id.data, id.len) ^ 0x4e4f52494b56ULL);
    uint64_t t = UINT64_MAX;
    int level = 0;
    while (level < VEC_MAX_LEVEL) {
        t /= m;
        if (t == 0 || x >= t)
            break;
        level++;
    }
    return level;
}

static inline bool is_deleted(const struct vec_index *ix, uint32_t slot)
{
    return ix->slots[slot].flags & SLOT_DELETED;
}

static inline float node_dist(const struct vec_index *ix, uint32_t a, uint32_t b)
{
    return vec_qdist(ix, vec_slot_vector(ix, a), ix->slots[a].inv_norm, b);
}

static void bump_epoch(struct vec_scratch *s)
{
    if (++s->epoch == 0) {
        memset(s->tags, 0, (size_t)s->tags_cap * sizeof(*s->tags));
        s->epoch = 1;
    }
}

static void tmp_fit(struct vec_scratch *s, uint32_t n)
{
    if (s->tmp_cap < n) {
        s->tmp_cap = n + n / 2 + 16;
        s->tmp = nk_realloc(s->tmp, (size_t)s->tmp_cap * sizeof(*s->tmp));
    }
}

static void greedy(const struct vec_index *ix, const float *q, float q_inv, int level,
                   uint32_t *cur, float *curd)
{
    bool changed = true;
    while (changed) { /* ends: the distance strictly falls at every move */
        changed = false;
        const uint32_t *l = vec_links(ix, *cur, level);
        uint32_t n = l[0];
        for (uint32_t j = 1; j <= n; j++) {
            float d = vec_qdist(ix, q, q_inv, l[j]);
            if (d < *curd) {
                *curd = d;
                *cur = l[j];
                changed = true;
            }
        }
    }
}

/* Beam search at one level from ep; the best ef in s->res (a max-heap). */
static void search_layer(const struct vec_index *ix, const float *q, float q_inv, uint32_t ep,
                         float ep_d, uint32_t ef, int level, bool skip_deleted,
                         struct vec_scratch *s)
{
    bump_epoch(s);
    uint16_t *tags = s->tags;
    uint16_t epoch = s->epoch;
    s->cand.n = 0;
    s->res.n = 0;
    tags[ep] = epoch;
    vec_heap_push(&s->cand, (struct vec_cand){ep_d, ep});
    if (!skip_deleted || !is_deleted(ix, ep))
        vec_heap_push(&s->res, (struct vec_cand){ep_d, ep});
    float bound = s->res.n ? vec_heap_top(&s->res).d : INFINITY;
    while (s->cand.n) {
        struct vec_cand c = vec_heap_pop(&s->cand);
        if (c.d > bound && s->res.n >= ef)
            break;
        const uint32_t *l = vec_links(ix, c.slot, level);
        uint32_t n = l[0];
        if (n)
            __builtin_prefetch(vec_slot_vector(ix, l[1]));
        for (uint32_t j = 1; j <= n; j++) {
            uint32_t e = l[j];
            if (j < n) {
                __builtin_prefetch(&tags[l[j + 1]]);
                __builtin_prefetch(vec_slot_vector(ix, l[j + 1]));
            }
            if (tags[e] == epoch)
                continue;
            tags[e] = epoch;
            float d = vec_qdist(ix, q, q_inv, e);
            if (s->res.n < ef || d < bound) {
                vec_heap_push(&s->cand, (struct vec_cand){d, e});
                if (!skip_deleted || !is_deleted(ix, e)) {
                    vec_heap_push(&s->res, (struct vec_cand){d, e});
                    if (s->res.n > ef)
                        vec_heap_pop(&s->res);
                }
                if (s->res.n)
                    bound = vec_heap_top(&s->res).d;
            }
        }
    }
}

/* Keeps, from c[0..n) sorted ascending by distance to the base, at most
 * max candidates that are closer to the base than to any kept one; they
 * are moved to the front of c. Returns how many. */
static uint32_t select_heuristic(const struct vec_index *ix, struct vec_cand *c, uint32_t n,
                                 uint32_t max)
{
    uint32_t kept = 0;
    for (uint32_t i = 0; i < n && kept < max; i++) {
        bool good = true;
        for (uint32_t j = 0; j < kept; j++) {
            if (node_dist(ix, c[i].slot, c[j].slot) < c[i].d) {
                good = false;
                break;
            }
        }
        if (good)
            c[kept++] = c[i];
    }
    return kept;
}

static int cand_cmp(const void *pa, const void *pb)
{
    const struct vec_cand *a = pa, *b = pb;
    return vec_cand_less(*a, *b) ? -1 : (vec_cand_less(*b, *a) ? 1 : 0);
}

/* Adds link nb -> add at level; when nb is full, re-selects its links. */
static void connect(struct vec_index *ix, uint32_t nb, uint32_t add, float d, int level)
{
    uint32_t *l = vec_links(ix, nb, level);
    uint32_t n = l[0], max = vec_max_links(ix, level);
    for (uint32_t j = 1; j <= n; j++)
        if (l[j] == add)
            return;
    vec_mark_dirty(ix, nb);
    if (n < max) {
        l[n + 1] = add;
        l[0] = n + 1;
        return;
    }
    struct vec_cand buf[2 * VEC_MAX_M + 1];
    for (uint32_t j = 0; j < n; j++)
        buf[j] = (struct vec_cand){node_dist(ix, nb, l[j + 1]), l[j + 1]};
    buf[n] = (struct vec_cand){d, add};
    qsort(buf, n + 1, sizeof(buf[0]), cand_cmp);
    uint32_t kept = select_heuristic(ix, buf, n + 1, max);
    for (uint32_t j = 0; j < kept; j++)
        l[j + 1] = buf[j].slot;
    l[0] = kept;
}

/* Moves s->res into s->tmp, ascending. Returns the count. */
static uint32_t drain_sorted(struct vec_scratch *s)
{
    uint32_t n = s->res.n;
    tmp_fit(s, n);
    for (uint32_t i = n; i > 0; i--)
        s->tmp[i - 1] = vec_heap_pop(&s->res);
    return n;
}

void vec_hnsw_insert(struct vec_index *ix, uint32_t slot, struct vec_scratch *s)
{
    int level = ix->slots[slot].level;
    vec_mark_dirty(ix, slot);
    if (ix->entry < 0) {
        ix->entry = slot;
        ix->max_level = level;
        ix->meta_dirty = true;
        return;
    }
    const float *q = vec_slot_vector(ix, slot);
    float q_inv = ix->slots[slot].inv_norm;
    uint32_t cur = (uint32_t)ix->entry;
    float curd = vec_qdist(ix, q, q_inv, cur);
    for (int l = ix->max_level; l > level; l--)
        greedy(ix, q, q_inv, l, &cur, &curd);
    for (int l = NK_MIN(level, ix->max_level); l >= 0; l--) {
        search_layer(ix, q, q_inv, cur, curd, ix->o.ef_construction, l, false, s);
        uint32_t n = drain_sorted(s);
        NK_ASSERT(n > 0);
        cur = s->tmp[0].slot;
        curd = s->tmp[0].d;
        uint32_t kept = select_heuristic(ix, s->tmp, n, ix->o.m);
        uint32_t *links = vec_links(ix, slot, l);
        for (uint32_t j = 0; j < kept; j++)
            links[j + 1] = s->tmp[j].slot;
        links[0] = kept;
        for (uint32_t j = 0; j < kept; j++)
            connect(ix, s->tmp[j].slot, slot, s->tmp[j].d, l);
    }
    if (level > ix->max_level) {
        ix->entry = slot;
        ix->max_level = level;
        ix->meta_dirty = true;
    }
}

void vec_hnsw_search(const struct vec_index *ix, const float *q, float q_inv, uint32_t ef,
                     struct vec_scratch *s)
{
    s->res.n = 0;
    if (ix->entry < 0)
        return;
    uint32_t cur = (uint32_t)ix->entry;
    float curd = vec_qdist(ix, q, q_inv, cur);
    for (int l = ix->max_level; l > 0; l--)
        greedy(ix, q, q_inv, l, &cur, &curd);
    search_layer(ix, q, q_inv, cur, curd, ef, 0, true, s);
}

void vec_hnsw_purge(struct vec_index *ix, struct vec_scratch *s)
{
    /* 1. every live node whose links touch a tombstone re-selects its links
     *    from its live links and the live links of those tombstones */
    for (uint32_t slot = 0; slot < ix->n_slots; slot++) {
        if (ix->slots[slot].flags)
            continue;
        for (int l = 0; l <= ix->slots[slot].level; l++) {
            uint32_t *links = vec_links(ix, slot, l);
            uint32_t n = links[0];
            bool touched = false;
            for (uint32_t j = 1; j <= n && !touched; j++)
                touched = is_deleted(ix, links[j]);
            if (!touched)
                continue;
            bump_epoch(s);
            s->tags[slot] = s->epoch;
            uint32_t m = 0;
            for (uint32_t j = 1; j <= n; j++) {
                uint32_t x = links[j];
                if (is_deleted(ix, x)) {
                    const uint32_t *dl = vec_links(ix, x, l);
                    for (uint32_t k = 1; k <= dl[0]; k++) {
                        uint32_t y = dl[k];
                        if (is_deleted(ix, y) || s->tags[y] == s->epoch)
                            continue;
                        s->tags[y] = s->epoch;
                        tmp_fit(s, m + 1);
                        s->tmp[m++] = (struct vec_cand){node_dist(ix, slot, y), y};
                    }
                } else if (s->tags[x] != s->epoch) {
                    s->tags[x] = s->epoch;
                    tmp_fit(s, m + 1);
                    s->tmp[m++] = (struct vec_cand){node_dist(ix, slot, x), x};
                }
            }
            if (m)
                qsort(s->tmp, m, sizeof(*s->tmp), cand_cmp);
            uint32_t kept = select_heuristic(ix, s->tmp, m, vec_max_links(ix, l));
            for (uint32_t j = 0; j < kept; j++)
                links[j + 1] = s->tmp[j].slot;
            links[0] = kept;
            vec_mark_dirty(ix, slot);
        }
    }
    /* 2. a new entry point when the old one is going: the live node of the
     *    highest level, the lowest slot among equals */
    if (ix->entry >= 0 && is_deleted(ix, (uint32_t)ix->entry)) {
        ix->meta_dirty = true;
        ix->entry = -1;
        ix->max_level = 0;
        for (uint32_t slot = 0; slot < ix->n_slots; slot++) {
            if (ix->slots[slot].flags)
                continue;
            if (ix->entry < 0 || ix->slots[slot].level > ix->max_level) {
                ix->entry = slot;
                ix->max_level = ix->slots[slot].level;
            }
        }
    }
}
