/*
 * cache.c: the sharded LRU block cache.
 *
 * Keyed by (file_id, block offset). Each shard has its own mutex, hash table
 * (chained, doubled when more than half full) and LRU list.
 *
 * Reference counting (as LevelDB's cache does): the cache holds one
 * reference to each block it contains and every lookup/insert hands out one
 * more. A block is on the LRU list only while the cache's reference is the
 * only one, so eviction never touches a block an iterator is reading; a
 * block erased or replaced while pinned is freed by its last release.
 *
 * Bound: the charged bytes of the blocks in a shard never exceed the shard's
 * capacity (the shard capacities add up to the cache's). When a new block
 * does not fit even after evicting every unpinned block, it is handed back
 * uncached and freed on release, so pinned blocks can never push the usage
 * over the bound.
 */
#include "sstable/sst_internal.h"

#include <pthread.h>
#include <stdlib.h>

struct cache_shard {
    pthread_mutex_t mu;
    size_t capacity, usage;
    struct sst_block **buckets;
    uint32_t nbuckets; /* power of two */
    uint32_t count;
    struct sst_block *lru; /* sentinel: lru->next is the oldest */
    uint64_t hits, misses, inserts, evictions;
} __attribute__((aligned(64)));

struct sst_cache {
    size_t capacity;
    uint32_t shard_bits;
    struct cache_shard *shards;
};

static inline uint32_t key_hash(uint64_t file_id, uint64_t offset)
{
    uint64_t h = file_id * 0x9e3779b97f4a7c15ull ^ offset;
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 33;
    return (uint32_t)h;
}

nk_status sst_cache_new(size_t capacity_bytes, struct sst_cache **out)
{
    struct sst_cache *c = nk_calloc(1, sizeof *c);
    c->capacity = capacity_bytes;
    /* Shards of at least 1 MiB, at most 16: small caches keep one shard so a
     * block still fits in it. */
    uint32_t bits = 0;
    while (bits < 4 && (capacity_bytes >> (bits + 1)) >= (1u << 20))
        bits++;
    c->shard_bits = bits;
    uint32_t n = 1u << bits;
    c->shards = aligned_alloc(64, sizeof(struct cache_shard) * n);
    if (!c->shards)
        nk_panic("out of memory allocating the block cache");
    memset(c->shards, 0, sizeof(struct cache_shard) * n);
    for (uint32_t i = 0; i < n; i++) {
        struct cache_shard *s = &c->shards[i];
        pthread_mutex_init(&s->mu, NULL);
        s->capacity = capacity_bytes / n + (i < capacity_bytes % n ? 1 : 0);
        s->nbuckets = 256;
        s->buckets = nk_calloc(s->nbuckets, sizeof *s->buckets);
        s->lru = nk_calloc(1, sizeof *s->lru);
        s->lru->next = s->lru->prev = s->lru;
    }
    *out = c;
    return NK_OK;
}

void sst_cache_free(struct sst_cache *c)
{
    if (!c)
        return;
    uint32_t n = 1u << c->shard_bits;
    for (uint32_t i = 0; i < n; i++) {
        struct cache_shard *s = &c->shards[i];
        for (uint32_t j = 0; j < s->nbuckets; j++) {
            struct sst_block *b = s->buckets[j];
            while (b) {
                struct sst_block *nx = b->hnext;
                /* A block still pinned at this point is a caller bug; the
                 * assertion makes it loud instead of a use after free. */
                NK_ASSERT(b->refs == 1);
                sst_block_free(b);
                b = nx;
            }
        }
        free(s->buckets);
        free(s->lru);
        pthread_mutex_destroy(&s->mu);
    }
    free(c->shards);
    free(c);
}

void sst_cache_get_stats(struct sst_cache *c, struct sst_cache_stats *out)
{
    memset(out, 0, sizeof *out);
    out->capacity = c->capacity;
    uint32_t n = 1u << c->shard_bits;
    for (uint32_t i = 0; i < n; i++) {
        struct cache_shard *s = &c->shards[i];
        pthread_mutex_lock(&s->mu);
        out->hits += s->hits;
        out->misses += s->misses;
        out->inserts += s->inserts;
        out->evictions += s->evictions;
        out->usage += s->usage;
        pthread_mutex_unlock(&s->mu);
    }
}

static inline struct cache_shard *shard_of(struct sst_cache *c, uint32_t h)
{
    return &c->shards[c->shard_bits ? h >> (32 - c->shard_bits) : 0];
}

static inline void lru_remove(struct sst_block *b)
{
    b->prev->next = b->next;
    b->next->prev = b->prev;
    b->prev = b->next = NULL;
}

static inline void lru_append(struct cache_shard *s, struct sst_block *b)
{
    b->next = s->lru;
    b->prev = s->lru->prev;
    b->prev->next = b;
    b->next->prev = b;
}

static struct sst_block **find_slot(struct cache_shard *s, uint64_t file_id, uint64_t offset,
                                    uint32_t h)
{
    struct sst_block **pp = &s->buckets[h & (s->nbuckets - 1)];
    while (*pp && ((*pp)->hash != h || (*pp)->offset != offset || (*pp)->file_id != file_id))
        pp = &(*pp)->hnext;
    return pp;
}

static void grow(struct cache_shard *s)
{
    uint32_t nb = s->nbuckets * 2;
    struct sst_block **nbk = nk_calloc(nb, sizeof *nbk);
    for (uint32_t i = 0; i < s->nbuckets; i++) {
        struct sst_block *b = s->buckets[i];
        while (b) {
            struct sst_block *nx = b->hnext;
            struct sst_block **slot = &nbk[b->hash & (nb - 1)];
            b->hnext = *slot;
            *slot = b;
            b = nx;
        }
    }
    free(s->buckets);
    s->buckets = nbk;
    s->nbuckets = nb;
}

/* Removes b from the table (the caller holds the lock and has unlinked it
 * from its chain); drops the cache's reference. Returns b when it must now be
 * freed (no other holder), else NULL. */
static struct sst_block *detach(struct cache_shard *s, struct sst_block *b)
{
    NK_ASSERT(b->in_cache);
    if (b->next)
        lru_remove(b);
    b->in_cache = false;
    s->usage -= b->charge;
    s->count--;
    return --b->refs == 0 ? b : NULL;
}

struct sst_block *sst_cache_lookup(struct sst_cache *c, uint64_t file_id, uint64_t offset)
{
    uint32_t h = key_hash(file_id, offset);
    struct cache_shard *s = shard_of(c, h);
    pthread_mutex_lock(&s->mu);
    struct sst_block *b = *find_slot(s, file_id, offset, h);
    if (b) {
        if (b->refs == 1) /* was evictable: now pinned */
            lru_remove(b);
        b->refs++;
        s->hits++;
    } else {
        s->misses++;
    }
    pthread_mutex_unlock(&s->mu);
    return b;
}

struct sst_block *sst_cache_insert(struct sst_cache *c, uint64_t file_id, uint64_t offset,
                                   struct sst_block *b, size_t charge)
{
    NK_ASSERT(b->refs == 0);
    uint32_t h = key_hash(file_id, offset);
    struct cache_shard *s = shard_of(c, h);
    b->file_id = file_id;
    b->offset = offset;
    b->hash = h;
    b->charge = charge;
    b->in_cache = false;
    b->hnext = b->prev = b->next = NULL;
    b->refs = 1; /* the caller's */

    /* At most a handful of evicted blocks are freed outside the lock. */
    struct sst_block *to_free = NULL;
    pthread_mutex_lock(&s->mu);
    if (charge <= s->capacity) {
        struct sst_block **slot = find_slot(s, file_id, offset, h);
        if (*slot) { /* another reader loaded it meanwhile: replace */
            struct sst_block *old = *slot;
            *slot = old->hnext;
            old->hnext = NULL;
            if (detach(s, old)) {
                old->hnext = to_free;
                to_free = old;
            }
        }
        while (s->usage + charge > s->capacity && s->lru->next != s->lru) {
            struct sst_block *victim = s->lru->next;
            struct sst_block **vs = find_slot(s, victim->file_id, victim->offset, victim->hash);
            NK_ASSERT(*vs == victim);
            *vs = victim->hnext;
            victim->hnext = NULL;
            s->evictions++;
            if (detach(s, victim)) {
                victim->hnext = to_free;
                to_free = victim;
            }
        }
        if (s->usage + charge <= s->capacity) {
            if (s->count * 2 >= s->nbuckets) /* short chains: each link is a cache miss */
                grow(s);
            slot = find_slot(s, file_id, offset, h);
            NK_ASSERT(*slot == NULL);
            b->hnext = NULL;
            *slot = b;
            b->in_cache = true;
            b->refs++; /* the cache's */
            s->usage += charge;
            s->count++;
            s->inserts++;
        }
    }
    pthread_mutex_unlock(&s->mu);
    while (to_free) {
        struct sst_block *nx = to_free->hnext;
        sst_block_free(to_free);
        to_free = nx;
    }
    return b;
}

void sst_cache_release(struct sst_cache *c, struct sst_block *b)
{
    if (!c) {
        NK_ASSERT(b->refs <= 1);
        sst_block_free(b);
        return;
    }
    struct cache_shard *s = shard_of(c, b->hash);
    pthread_mutex_lock(&s->mu);
    NK_ASSERT(b->refs > 0);
    uint32_t refs = --b->refs;
    if (refs == 1 && b->in_cache)
        lru_append(s, b);
    pthread_mutex_unlock(&s->mu);
    if (refs == 0)
        sst_block_free(b);
}
