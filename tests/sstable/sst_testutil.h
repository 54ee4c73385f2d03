/*
 * sst_testutil.h: shared helpers of the sstable tests: random sorted key sets
 * with values derived from their keys (so a reader can check any value it
 * gets without a side table), and building a table from them.
 */
#ifndef NK_SST_TESTUTIL_H
#define NK_SST_TESTUTIL_H

#include <stdlib.h>

#include "sstable/sstable.h"

struct kv {
    uint8_t *key;
    size_t klen;
    uint8_t *val;
    size_t vlen;
};

struct kvset {
    struct kv *e;
    size_t n;
};

/* Value bytes are a function of the key and the length: compressible (runs)
 * but not constant, so a wrong block or offset shows up as a mismatch. */
static inline void kv_fill_value(const uint8_t *key, size_t klen, uint8_t *v, size_t vlen)
{
    uint64_t h = nk_xxhash64(key, klen);
    for (size_t i = 0; i < vlen; i++)
        v[i] = (uint8_t)((h >> ((i / 16) % 8 * 8)) + (i / 64));
}

static int kv_cmp_bytewise(const void *a, const void *b)
{
    const struct kv *x = a, *y = b;
    return nk_slice_cmp(nk_slice_make(x->key, x->klen), nk_slice_make(y->key, y->klen));
}

/*
 * n random keys (length 0..maxk, biased short, shared prefixes common),
 * values of length 0..maxv (with a few of big_v bytes), sorted, unique.
 */
static inline struct kvset kv_random(struct nk_rng *r, size_t n, size_t maxk, size_t maxv,
                                     size_t big_v)
{
    struct kvset s = {nk_calloc(n, sizeof(struct kv)), 0};
    for (size_t i = 0; i < n; i++) {
        size_t kl = nk_rng_chance(r, 1, 8) ? nk_rng_uniform(r, maxk + 1)
                                           : nk_rng_uniform(r, NK_MIN(maxk, 24) + 1);
        uint8_t *k = nk_malloc(kl ? kl : 1);
        for (size_t j = 0; j < kl; j++) /* small alphabet: long common prefixes */
            k[j] = nk_rng_chance(r, 3, 4) ? (uint8_t)('a' + nk_rng_uniform(r, 4))
                                          : (uint8_t)nk_rng_next(r);
        size_t vl = nk_rng_uniform(r, maxv + 1);
        if (big_v && nk_rng_chance(r, 1, 500))
            vl = big_v;
        uint8_t *v = nk_malloc(vl ? vl : 1);
        kv_fill_value(k, kl, v, vl);
        s.e[i] = (struct kv){k, kl, v, vl};
    }
    qsort(s.e, n, sizeof(struct kv), kv_cmp_bytewise);
    size_t w = 0;
    for (size_t i = 0; i < n; i++) {
        if (w > 0 && kv_cmp_bytewise(&s.e[w - 1], &s.e[i]) == 0) {
            free(s.e[i].key);
            free(s.e[i].val);
            continue;
        }
        s.e[w++] = s.e[i];
    }
    s.n = w;
    return s;
}

static inline void kv_free(struct kvset *s)
{
    for (size_t i = 0; i < s->n; i++) {
        free(s->e[i].key);
        free(s->e[i].val);
    }
    free(s->e);
    s->e = NULL;
    s->n = 0;
}

static inline nk_status kv_build(const char *path, const struct sst_options *o,
                                 const struct kvset *s, struct sst_file_info *info)
{
    struct sst_builder *b;
    NK_TRY(sst_builder_open(path, o, &b));
    for (size_t i = 0; i < s->n; i++) {
        nk_status st = sst_builder_add(b, nk_slice_make(s->e[i].key, s->e[i].klen),
                                       nk_slice_make(s->e[i].val, s->e[i].vlen));
        if (!nk_ok(st)) {
            sst_builder_abandon(b);
            return st;
        }
    }
    return sst_builder_finish(b, info);
}

static inline bool kv_slice_eq(struct nk_slice a, const uint8_t *p, size_t n)
{
    return nk_slice_eq(a, nk_slice_make(p, n));
}

#endif /* NK_SST_TESTUTIL_H */
