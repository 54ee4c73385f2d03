/*
 * alloc_test.c: point lookups on cached blocks allocate nothing. malloc and
 * friends are wrapped at link time (-Wl,--wrap) and counted.
 */
#include "testlib.h"

#include "sst_testutil.h"

static volatile long g_allocs;
void *__real_malloc(size_t n);
void *__real_calloc(size_t c, size_t n);
void *__real_realloc(void *p, size_t n);
void *__wrap_malloc(size_t n)
{
    g_allocs++;
    return __real_malloc(n);
}
void *__wrap_calloc(size_t c, size_t n)
{
    g_allocs++;
    return __real_calloc(c, n);
}
void *__wrap_realloc(void *p, size_t n)
{
    g_allocs++;
    return __real_realloc(p, n);
}

NK_TEST(seek_one_on_cached_blocks_allocates_nothing)
{
    char path[1024];
    int w = snprintf(path, sizeof path, "%s/a.sst", nk_test_tmpdir());
    NK_REQUIRE(w > 0 && (size_t)w < sizeof path);
    struct nk_rng rng;
    nk_rng_seed(&rng, nk_test_seed());
    struct kvset s = kv_random(&rng, 3000, 24, 120, 0);
    NK_REQUIRE_OK(kv_build(path, NULL, &s, NULL));
    struct sst_cache *c;
    NK_REQUIRE_OK(sst_cache_new(32u << 20, &c));
    struct sst_read_options ro;
    sst_read_options_default(&ro);
    ro.cache = c;
    struct sst_reader *r;
    NK_REQUIRE_OK(sst_reader_open(path, &ro, &r));
    struct nk_buf k, v;
    nk_buf_init(&k);
    nk_buf_init(&v);
    nk_buf_reserve(&k, 1024);
    nk_buf_reserve(&v, 1024);
    bool found;
    for (size_t i = 0; i < s.n; i++) { /* warm: every block cached */
        struct nk_slice key = nk_slice_make(s.e[i].key, s.e[i].klen);
        NK_REQUIRE_OK(sst_reader_seek_one(r, key, key, &found, &k, &v));
    }
    long before = g_allocs;
    NK_CHECK(before > 0); /* the wrappers do count: the misses allocated blocks */
    size_t hits = 0;
    for (int round = 0; round < 20000; round++) {
        size_t i = nk_rng_uniform(&rng, s.n);
        struct nk_slice key = nk_slice_make(s.e[i].key, s.e[i].klen);
        nk_status st = sst_reader_seek_one(r, key, key, &found, &k, &v);
        hits += nk_ok(st) && found;
        /* absent keys too: the bloom filter or the block search says no */
        uint8_t absent[30];
        memset(absent, 0xff, sizeof absent);
        st = sst_reader_seek_one(r, nk_slice_make(absent, 30), nk_slice_make(absent, 30), &found,
                                 &k, &v);
        NK_CHECK(nk_ok(st));
    }
    long allocs = g_allocs - before;
    fprintf(stderr, "  %ld allocations in 40000 cached lookups\n", allocs);
    NK_CHECK_EQ_U64(allocs, 0);
    NK_CHECK_EQ_U64(hits, 20000);
    sst_reader_close(r);

    /* in place from a mapping, no cache at all: nothing allocated either */
    ro.cache = NULL;
    ro.use_mmap = true;
    NK_REQUIRE_OK(sst_reader_open(path, &ro, &r));
    before = g_allocs;
    for (int round = 0; round < 20000; round++) {
        size_t i = nk_rng_uniform(&rng, s.n);
        struct nk_slice key = nk_slice_make(s.e[i].key, s.e[i].klen);
        nk_status st = sst_reader_seek_one(r, key, key, &found, &k, &v);
        NK_CHECK(nk_ok(st) && found);
    }
    allocs = g_allocs - before;
    fprintf(stderr, "  %ld allocations in 20000 mapped lookups\n", allocs);
    NK_CHECK_EQ_U64(allocs, 0);
    nk_buf_free(&k);
    nk_buf_free(&v);
    sst_reader_close(r);
    sst_cache_free(c);
    kv_free(&s);
}
