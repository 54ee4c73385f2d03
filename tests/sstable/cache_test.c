/*
 * cache_test.c: the block cache stays within its byte bound, evicts in LRU
 * order, and keeps blocks that readers hold valid while other threads evict.
 */
#include "testlib.h"

#include <pthread.h>
#include <stdatomic.h>

#include "sst_testutil.h"
#include "sstable/sst_internal.h"

static void path_in_tmp(char *buf, size_t n, const char *name)
{
    int w = snprintf(buf, n, "%s/%s", nk_test_tmpdir(), name);
    NK_ASSERT(w > 0 && (size_t)w < n);
}

static struct sst_block *fake_block(size_t size)
{
    struct sst_block *b = sst_block_alloc(size);
    b->data = b->buf;
    b->size = (uint32_t)size;
    return b;
}

NK_TEST(cache_evicts_least_recently_used_and_stays_within_capacity)
{
    struct sst_cache *c;
    NK_REQUIRE_OK(sst_cache_new(10000, &c)); /* one shard */
    for (uint64_t i = 0; i < 10; i++)
        sst_cache_release(c, sst_cache_insert(c, 1, i, fake_block(0), 1000));
    struct sst_cache_stats st;
    sst_cache_get_stats(c, &st);
    NK_CHECK_EQ_U64(st.usage, 10000);
    /* touch 0 so that 1 is now the oldest */
    struct sst_block *b = sst_cache_lookup(c, 1, 0);
    NK_REQUIRE(b);
    sst_cache_release(c, b);
    sst_cache_release(c, sst_cache_insert(c, 1, 10, fake_block(0), 1000));
    b = sst_cache_lookup(c, 1, 1);
    NK_CHECK(b == NULL);
    b = sst_cache_lookup(c, 1, 0);
    NK_CHECK(b != NULL);
    if (b)
        sst_cache_release(c, b);
    sst_cache_get_stats(c, &st);
    NK_CHECK(st.usage <= st.capacity);
    NK_CHECK_EQ_U64(st.evictions, 1);
    sst_cache_free(c);
}

NK_TEST(pinned_blocks_are_never_evicted_and_never_push_usage_over_capacity)
{
    struct sst_cache *c;
    NK_REQUIRE_OK(sst_cache_new(3000, &c));
    struct sst_block *pinned[3];
    for (uint64_t i = 0; i < 3; i++)
        pinned[i] = sst_cache_insert(c, 2, i, fake_block(16), 1000);
    for (int i = 0; i < 3; i++)
        memset(pinned[i]->buf, 'a' + i, 16);
    /* the cache is full of pinned blocks: a new one is handed out uncached */
    struct sst_block *extra = sst_cache_insert(c, 2, 99, fake_block(16), 1000);
    struct sst_cache_stats st;
    sst_cache_get_stats(c, &st);
    NK_CHECK_EQ_U64(st.usage, 3000);
    NK_CHECK(!extra->in_cache);
    sst_cache_release(c, extra); /* freed here; ASan would catch a double free */
    NK_CHECK(sst_cache_lookup(c, 2, 99) == NULL);
    /* replacing a pinned block: the old one stays readable until released */
    struct sst_block *repl = sst_cache_insert(c, 2, 0, fake_block(16), 1000);
    for (int i = 0; i < 16; i++)
        NK_CHECK(pinned[0]->buf[i] == 'a');
    sst_cache_release(c, pinned[0]);
    sst_cache_release(c, repl);
    sst_cache_release(c, pinned[1]);
    sst_cache_release(c, pinned[2]);
    /* a block larger than the whole cache is served but never cached */
    struct sst_block *huge = sst_cache_insert(c, 3, 0, fake_block(0), 5000);
    NK_CHECK(!huge->in_cache);
    sst_cache_release(c, huge);
    sst_cache_get_stats(c, &st);
    NK_CHECK(st.usage <= st.capacity);
    sst_cache_free(c);

    NK_REQUIRE_OK(sst_cache_new(0, &c)); /* capacity 0 caches nothing */
    struct sst_block *b = sst_cache_insert(c, 1, 0, fake_block(0), 1);
    NK_CHECK(!b->in_cache);
    sst_cache_release(c, b);
    sst_cache_get_stats(c, &st);
    NK_CHECK_EQ_U64(st.usage, 0);
    sst_cache_free(c);
}

NK_TEST(iterator_block_stays_valid_after_the_cache_evicts_it)
{
    char path[1024];
    path_in_tmp(path, sizeof path, "t.sst");
    struct nk_rng rng;
    nk_rng_seed(&rng, nk_test_seed());
    struct kvset s = kv_random(&rng, 3000, 16, 100, 0);
    NK_REQUIRE_OK(kv_build(path, NULL, &s, NULL));
    struct sst_cache *c;
    NK_REQUIRE_OK(sst_cache_new(16 * 1024, &c)); /* a handful of blocks */
    struct sst_read_options ro;
    sst_read_options_default(&ro);
    ro.cache = c;
    ro.file_id = 1;
    struct sst_reader *r;
    NK_REQUIRE_OK(sst_reader_open(path, &ro, &r));
    struct sst_iter *it;
    NK_REQUIRE_OK(sst_iter_new(r, &it));
    sst_iter_seek_first(it);
    NK_REQUIRE(sst_iter_valid(it));
    struct nk_slice v0 = sst_iter_value(it); /* points into the cached block */
    /* read every other key: evicts everything not pinned, many times over */
    struct nk_buf k, v;
    nk_buf_init(&k);
    nk_buf_init(&v);
    for (size_t i = s.n - 1; i > 0; i--) {
        bool found;
        struct nk_slice key = nk_slice_make(s.e[i].key, s.e[i].klen);
        NK_REQUIRE_OK(sst_reader_seek_one(r, key, key, &found, &k, &v));
        NK_REQUIRE(found && kv_slice_eq(nk_slice_make(v.data, v.len), s.e[i].val, s.e[i].vlen));
        struct sst_cache_stats st;
        sst_cache_get_stats(c, &st);
        NK_REQUIRE(st.usage <= st.capacity);
    }
    struct sst_cache_stats st;
    sst_cache_get_stats(c, &st);
    NK_CHECK(st.evictions > 0);
    NK_CHECK(kv_slice_eq(v0, s.e[0].val, s.e[0].vlen));
    size_t i = 0;
    for (; sst_iter_valid(it); sst_iter_next(it), i++)
        NK_REQUIRE(kv_slice_eq(sst_iter_key(it), s.e[i].key, s.e[i].klen) &&
                   kv_slice_eq(sst_iter_value(it), s.e[i].val, s.e[i].vlen));
    NK_CHECK_EQ_U64(i, s.n);
    sst_iter_free(it);
    sst_reader_close(r);
    sst_cache_free(c);
    nk_buf_free(&k);
    nk_buf_free(&v);
    kv_free(&s);
}

/* ------------------------------------------------------ concurrent readers */

#define NTABLES 3
#define NTHREADS 4

struct shared {
    struct sst_reader *r[NTABLES];
    struct kvset *s;
    struct sst_cache *cache;
    uint64_t seed;
    int ops;
    _Atomic int stop;
    int errors;
    pthread_mutex_t mu;
};

struct worker {
    struct shared *sh;
    int id;
};

static void *reader_thread(void *arg)
{
    struct worker *w = arg;
    struct shared *sh = w->sh;
    struct nk_rng rng;
    nk_rng_seed(&rng, sh->seed + (uint64_t)w->id);
    struct nk_buf k, v;
    nk_buf_init(&k);
    nk_buf_init(&v);
    int errors = 0;
    for (int op = 0; op < sh->ops; op++) {
        int t = (int)nk_rng_uniform(&rng, NTABLES);
        const struct kvset *s = &sh->s[t];
        size_t i = nk_rng_uniform(&rng, s->n);
        struct nk_slice key = nk_slice_make(s->e[i].key, s->e[i].klen);
        if (nk_rng_chance(&rng, 3, 4)) {
            bool found;
            nk_status st = sst_reader_seek_one(sh->r[t], key, key, &found, &k, &v);
            if (!nk_ok(st) || !found ||
                !kv_slice_eq(nk_slice_make(v.data, v.len), s->e[i].val, s->e[i].vlen))
                errors++;
            nk_status_free(&st);
        } else { /* a short scan across block boundaries */
            struct sst_iter *it;
            NK_ASSERT(nk_ok(sst_iter_new(sh->r[t], &it)));
            sst_iter_seek(it, key);
            for (size_t j = i; j < i + 60 && j < s->n; j++) {
                if (!sst_iter_valid(it) ||
                    !kv_slice_eq(sst_iter_key(it), s->e[j].key, s->e[j].klen) ||
                    !kv_slice_eq(sst_iter_value(it), s->e[j].val, s->e[j].vlen)) {
                    errors++;
                    break;
                }
                sst_iter_next(it);
            }
            sst_iter_free(it);
        }
    }
    nk_buf_free(&k);
    nk_buf_free(&v);
    pthread_mutex_lock(&sh->mu);
    sh->errors += errors;
    pthread_mutex_unlock(&sh->mu);
    return NULL;
}

static void *monitor_thread(void *arg)
{
    struct shared *sh = arg;
    while (!sh->stop) {
        struct sst_cache_stats st;
        sst_cache_get_stats(sh->cache, &st);
        if (st.usage > st.capacity) {
            pthread_mutex_lock(&sh->mu);
            sh->errors++;
            pthread_mutex_unlock(&sh->mu);
        }
        nk_sleep_us(50);
    }
    return NULL;
}

NK_TEST(concurrent_readers_share_a_small_cache_safely_within_its_bound)
{
    struct shared sh = {.ops = 8000};
    pthread_mutex_init(&sh.mu, NULL);
    sh.seed = nk_test_seed();
    struct nk_rng rng;
    nk_rng_seed(&rng, sh.seed);
    struct kvset sets[NTABLES];
    sh.s = sets;
    NK_REQUIRE_OK(sst_cache_new(64 * 1024, &sh.cache)); /* far smaller than the tables */
    for (int t = 0; t < NTABLES; t++) {
        char name[32], path[1024];
        snprintf(name, sizeof name, "t%d.sst", t);
        path_in_tmp(path, sizeof path, name);
        sets[t] = kv_random(&rng, 4000, 24, 200, 0);
        struct sst_options o;
        sst_options_default(&o);
        o.compression = (enum sst_compression)t;
        NK_REQUIRE_OK(kv_build(path, &o, &sets[t], NULL));
        struct sst_read_options ro;
        sst_read_options_default(&ro);
        ro.cache = sh.cache;
        ro.file_id = (uint64_t)t + 1;
        ro.use_mmap = t == 1; /* lz4 table: raw blocks in place, compressed via the cache */
        NK_REQUIRE_OK(sst_reader_open(path, &ro, &sh.r[t]));
    }
    pthread_t th[NTHREADS], mon;
    struct worker w[NTHREADS];
    NK_REQUIRE(pthread_create(&mon, NULL, monitor_thread, &sh) == 0);
    for (int i = 0; i < NTHREADS; i++) {
        w[i] = (struct worker){&sh, i};
        NK_REQUIRE(pthread_create(&th[i], NULL, reader_thread, &w[i]) == 0);
    }
    for (int i = 0; i < NTHREADS; i++)
        pthread_join(th[i], NULL);
    sh.stop = 1;
    pthread_join(mon, NULL);
    struct sst_cache_stats st;
    sst_cache_get_stats(sh.cache, &st);
    fprintf(stderr,
            "  hits %" PRIu64 " misses %" PRIu64 " evictions %" PRIu64 " usage %zu / %zu\n",
            st.hits, st.misses, st.evictions, st.usage, st.capacity);
    NK_CHECK(sh.errors == 0);
    NK_CHECK(st.evictions > 0 && st.hits > 0);
    NK_CHECK(st.usage <= st.capacity);
    for (int t = 0; t < NTABLES; t++) {
        sst_reader_close(sh.r[t]);
        kv_free(&sets[t]);
    }
    sst_cache_free(sh.cache);
    pthread_mutex_destroy(&sh.mu);
}
