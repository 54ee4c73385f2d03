/*
 * memtable.c: the in-memory table, a skiplist allocated from an arena.
 *
 * One writer inserts (the engine serializes writers); any number of readers
 * search and iterate at the same time without a lock. That works because a
 * node is fully written before it is published: the writer fills the node and
 * its forward pointers, then links it in bottom up with release stores, and
 * readers follow pointers with acquire loads.
 * Nodes are never removed or changed once linked; the whole arena goes when
 * the last reference to the memtable is dropped.
 *
 * Node layout (one arena allocation): header, next[height], internal key,
 * stored value. Entries are ordered by ik_cmp; every (user key, sequence) is
 * unique, so there are no duplicates to handle.
 */
#include "lsm/internal.h"

#include <stdlib.h>

#define MAX_HEIGHT 12

struct mem_node {
    uint32_t klen; /* internal key bytes */
    uint32_t vlen; /* stored value bytes */
    uint32_t height;
    uint32_t pad_;
    struct mem_node *next[]; /* height entries, accessed with atomics */
};

static inline const uint8_t *node_key(const struct mem_node *n)
{
    return (const uint8_t *)(n->next + n->height);
}

static inline struct mem_node *load_next(struct mem_node *n, int i)
{
    return __atomic_load_n(&n->next[i], __ATOMIC_ACQUIRE);
}

/* Compares node n's key with the internal key (user, trailer). */
static inline int node_cmp(const struct mem_node *n, struct nk_slice user, uint64_t trailer)
{
    const uint8_t *k = node_key(n);
    size_t ul = n->klen - LSM_TRAILER;
    int c = lsm_bytes_cmp(k, ul, user.data, user.len);
    if (c)
        return c;
    uint64_t t = nk_dec_fixed64(k + ul);
    return t > trailer ? -1 : (t < trailer ? 1 : 0);
}

/*
 * 8-byte aligned arena memory. nk_arena_alloc_aligned can return an
 * unaligned pointer when the block's tail holds n but not n + padding (see
 * the report of this module), so align by hand from an unaligned request.
 */
static void *arena_alloc8(struct nk_arena *a, size_t n)
{
    size_t pad = (8 - ((uintptr_t)a->ptr & 7)) & 7;
    uint8_t *p = nk_arena_alloc(a, n + (n + pad <= a->left ? pad : 7));
    return (void *)(((uintptr_t)p + 7) & ~(uintptr_t)7);
}

/* ------------------------------------------------------------------ bloom */

/* Six probes inside one 64-byte line chosen by the hash's low half. Bits are
 * set with relaxed atomic ORs by the writer before the entry's sequence is
 * published; a reader that may see the entry also sees its bits. */
#define BLOOM_PROBES 6

static inline void bloom_add(struct memtable *m, uint64_t h)
{
    uint8_t *line = m->bloom + (size_t)((uint32_t)h % m->bloom_lines) * 64;
    uint32_t h2 = (uint32_t)(h >> 32), delta = (h2 >> 17) | (h2 << 15);
    for (int i = 0; i < BLOOM_PROBES; i++) {
        uint32_t bit = h2 & 511;
        __atomic_fetch_or(&line[bit >> 3], (uint8_t)(1u << (bit & 7)), __ATOMIC_RELAXED);
        h2 += delta;
    }
}

static inline bool bloom_may_contain(const struct memtable *m, uint64_t h)
{
    const uint8_t *line = m->bloom + (size_t)((uint32_t)h % m->bloom_lines) * 64;
    uint32_t h2 = (uint32_t)(h >> 32), delta = (h2 >> 17) | (h2 << 15);
    for (int i = 0; i < BLOOM_PROBES; i++) {
        uint32_t bit = h2 & 511;
        if (!(__atomic_load_n(&line[bit >> 3], __ATOMIC_RELAXED) & (1u << (bit & 7))))
            return false;
        h2 += delta;
    }
    return true;
}

struct memtable *mem_new(size_t bloom_bytes)
{
    struct memtable *m = nk_calloc(1, sizeof(*m));
    if (bloom_bytes) {
        m->bloom_lines = (uint32_t)((bloom_bytes + 63) / 64);
        m->bloom = nk_calloc(m->bloom_lines, 64);
    }
    atomic_init(&m->refs, 1);
    nk_arena_init(&m->arena);
    size_t sz = sizeof(struct mem_node) + MAX_HEIGHT * sizeof(struct mem_node *);
    m->head = arena_alloc8(&m->arena, sz);
    memset(m->head, 0, sz);
    m->head->height = MAX_HEIGHT;
    atomic_init(&m->height, 1);
    m->rnd = 0x9e3779b97f4a7c15ull ^ (uint64_t)(uintptr_t)m;
    atomic_init(&m->last_seq, 0);
    atomic_init(&m->entries, 0);
    atomic_init(&m->usage, sz);
    return m;
}

void mem_ref(struct memtable *m)
{
    atomic_fetch_add_explicit(&m->refs, 1, memory_order_relaxed);
}

void mem_unref(struct memtable *m)
{
    if (!m)
        return;
    if (atomic_fetch_sub_explicit(&m->refs, 1, memory_order_acq_rel) == 1) {
        nk_arena_free(&m->arena);
        free(m->bloom);
        free(m);
    }
}

static int random_height(struct memtable *m)
{
    /* xorshift64; branching factor 4 */
    int h = 1;
    while (h < MAX_HEIGHT) {
        m->rnd ^= m->rnd << 13;
        m->rnd ^= m->rnd >> 7;
        m->rnd ^= m->rnd << 17;
        if ((m->rnd & 3) != 0)
            break;
        h++;
    }
    return h;
}

/* First node >= (user, trailer); fills prev[] when given. */
static struct mem_node *find_ge(struct memtable *m, struct nk_slice user, uint64_t trailer,
                                struct mem_node **prev)
{
    struct mem_node *x = m->head;
    int level = atomic_load_explicit(&m->height, memory_order_relaxed) - 1;
    struct mem_node *last_cmp = NULL; /* skip re-comparing the same node on the way down */
    for (;;) {
        struct mem_node *nx = load_next(x, level);
        if (nx && nx != last_cmp && node_cmp(nx, user, trailer) < 0) {
            x = nx;
            continue;
        }
        last_cmp = nx;
        if (prev)
            prev[level] = x;
        if (level == 0)
            return nx;
        level--;
    }
}

void mem_add(struct memtable *m, uint64_t seq, unsigned type, struct nk_slice key,
             struct nk_slice value, uint64_t expire_at_ms)
{
    uint64_t trailer = ik_trailer(seq, type);
    struct mem_node *prev[MAX_HEIGHT];
    struct mem_node *ge = find_ge(m, key, trailer, prev);
    NK_ASSERT(!ge || node_cmp(ge, key, trailer) != 0);

    int h = random_height(m);
    int cur = atomic_load_explicit(&m->height, memory_order_relaxed);
    if (h > cur) {
        for (int i = cur; i < h; i++)
            prev[i] = m->head;
        /* Readers that see the new height before the node is linked find
         * NULL at the head's upper levels and drop down: harmless. */
        atomic_store_explicit(&m->height, h, memory_order_relaxed);
    }
    size_t vlen = value.len + (type == LSM_T_PUT_EXP ? 8 : 0);
    size_t klen = key.len + LSM_TRAILER;
    size_t sz = sizeof(struct mem_node) + (size_t)h * sizeof(struct mem_node *) + klen + vlen;
    struct mem_node *n = arena_alloc8(&m->arena, sz);
    n->klen = (uint32_t)klen;
    n->vlen = (uint32_t)vlen;
    n->height = (uint32_t)h;
    n->pad_ = 0;
    uint8_t *p = (uint8_t *)(n->next + h);
    if (key.len)
        memcpy(p, key.data, key.len);
    nk_enc_fixed64(p + key.len, trailer);
    p += klen;
    if (type == LSM_T_PUT_EXP) {
        nk_enc_fixed64(p, expire_at_ms);
        p += 8;
    }
    if (value.len)
        memcpy(p, value.data, value.len);
    if (m->bloom)
        bloom_add(m, nk_xxhash64(key.data, key.len));
    for (int i = 0; i < h; i++) {
        __atomic_store_n(&n->next[i], prev[i]->next[i], __ATOMIC_RELAXED);
        __atomic_store_n(&prev[i]->next[i], n, __ATOMIC_RELEASE);
    }
    if (m->first_seq == 0)
        m->first_seq = seq;
    atomic_store_explicit(&m->last_seq, seq, memory_order_relaxed);
    atomic_fetch_add_explicit(&m->entries, 1, memory_order_relaxed);
    /* bytes of entries, not arena blocks: a 64 KiB block would make a small
     * write buffer look full after one entry */
    atomic_store_explicit(&m->usage, atomic_load_explicit(&m->usage, memory_order_relaxed) + sz,
                          memory_order_relaxed);
}

bool mem_get(struct memtable *m, struct nk_slice key, uint64_t snap, unsigned *type,
             struct nk_slice *ival)
{
    if (m->bloom && !bloom_may_contain(m, nk_xxhash64(key.data, key.len)))
        return false;
    struct mem_node *n = find_ge(m, key, ik_trailer(snap, LSM_T_SEEK), NULL);
    if (!n)
        return false;
    const uint8_t *k = node_key(n);
    size_t ul = n->klen - LSM_TRAILER;
    if (ul != key.len || (ul && memcmp(k, key.data, ul) != 0))
        return false;
    *type = (unsigned)(nk_dec_fixed64(k + ul) & 0xff);
    *ival = nk_slice_make(k + n->klen, n->vlen);
    return true;
}

/* ---------------------------------------------------------------- iterator */

struct mem_iter {
    struct lsm_iiter base;
    struct memtable *m;
    struct mem_node *n;
};

static void mi_seek_first(struct lsm_iiter *it)
{
    struct mem_iter *mi = (struct mem_iter *)it;
    mi->n = load_next(mi->m->head, 0);
}

static void mi_seek(struct lsm_iiter *it, struct nk_slice ik)
{
    struct mem_iter *mi = (struct mem_iter *)it;
    struct nk_slice user = ik_user(ik);
    uint64_t t = ik.len >= LSM_TRAILER ? nk_dec_fixed64(ik.data + user.len) : 0;
    mi->n = find_ge(mi->m, user, t, NULL);
}

static void mi_next(struct lsm_iiter *it)
{
    struct mem_iter *mi = (struct mem_iter *)it;
    mi->n = load_next(mi->n, 0);
}

static bool mi_valid(const struct lsm_iiter *it)
{
    return ((const struct mem_iter *)it)->n != NULL;
}

static struct nk_slice mi_key(const struct lsm_iiter *it)
{
    const struct mem_node *n = ((const struct mem_iter *)it)->n;
    return nk_slice_make(node_key(n), n->klen);
}

static struct nk_slice mi_value(const struct lsm_iiter *it)
{
    const struct mem_node *n = ((const struct mem_iter *)it)->n;
    return nk_slice_make(node_key(n) + n->klen, n->vlen);
}

static nk_status mi_status(const struct lsm_iiter *it)
{
    (void)it;
    return NK_OK;
}

static void mi_free(struct lsm_iiter *it)
{
    struct mem_iter *mi = (struct mem_iter *)it;
    mem_unref(mi->m);
    free(mi);
}

static const struct lsm_iiter_ops mem_iter_ops = {
    mi_seek_first, mi_seek, mi_next, mi_valid, mi_key, mi_value, mi_status, mi_free,
};

struct lsm_iiter *mem_iter_new(struct memtable *m)
{
    struct mem_iter *mi = nk_calloc(1, sizeof(*mi));
    mi->base.ops = &mem_iter_ops;
    mem_ref(m);
    mi->m = m;
    return &mi->base;
}
