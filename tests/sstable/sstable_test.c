/*
 * sstable_test.c: builder/reader round trips, seeks, the bloom filter, custom
 * comparators and bad input.
 */
#include "testlib.h"

#include <signal.h>
#include <sys/resource.h>

#include "sst_testutil.h"
#include "sstable/sst_internal.h"

static void path_in_tmp(char *buf, size_t n, const char *name)
{
    int w = snprintf(buf, n, "%s/%s", nk_test_tmpdir(), name);
    NK_ASSERT(w > 0 && (size_t)w < n);
}

/* Reads the whole table back through an iterator, seek_one on every key and
 * on a key just after each one, and iterator seeks to every key and between
 * keys. Returns false (after reporting) on the first mismatch. */
static bool g_use_mmap; /* verify_table reads through a mapping */

static bool verify_table(const char *path, const struct kvset *s, struct sst_cache *cache,
                         uint64_t file_id)
{
    struct sst_read_options ro;
    sst_read_options_default(&ro);
    ro.cache = cache;
    ro.file_id = file_id;
    ro.use_mmap = g_use_mmap;
    struct sst_reader *r;
    nk_status st = sst_reader_open(path, &ro, &r);
    if (!nk_ok(st)) {
        fprintf(stderr, "  open %s: %s\n", path, nk_status_msg(st));
        nk_status_free(&st);
        return false;
    }
    bool ok = true;
#define FAIL(...)                                                                                  \
    do {                                                                                           \
        fprintf(stderr, "  " __VA_ARGS__);                                                         \
        fprintf(stderr, "\n");                                                                     \
        ok = false;                                                                                \
        goto out;                                                                                  \
    } while (0)
    struct sst_iter *it = NULL;
    struct nk_buf k, v, probe;
    nk_buf_init(&k);
    nk_buf_init(&v);
    nk_buf_init(&probe);
    if (sst_reader_num_entries(r) != s->n)
        FAIL("num_entries %" PRIu64 " != %zu", sst_reader_num_entries(r), s->n);
    if (s->n && (!kv_slice_eq(sst_reader_smallest(r), s->e[0].key, s->e[0].klen) ||
                 !kv_slice_eq(sst_reader_largest(r), s->e[s->n - 1].key, s->e[s->n - 1].klen)))
        FAIL("smallest/largest wrong");

    NK_ASSERT(nk_ok(sst_iter_new(r, &it)));
    size_t i = 0;
    for (sst_iter_seek_first(it); sst_iter_valid(it); sst_iter_next(it), i++) {
        if (i >= s->n)
            FAIL("iterator yields more than %zu entries", s->n);
        if (!kv_slice_eq(sst_iter_key(it), s->e[i].key, s->e[i].klen) ||
            !kv_slice_eq(sst_iter_value(it), s->e[i].val, s->e[i].vlen))
            FAIL("iterator entry %zu differs", i);
    }
    st = sst_iter_status(it);
    if (!nk_ok(st))
        FAIL("iterator status: %s", nk_status_msg(st));
    if (i != s->n)
        FAIL("iterator yields %zu of %zu entries", i, s->n);

    for (i = 0; i < s->n; i++) {
        struct nk_slice key = nk_slice_make(s->e[i].key, s->e[i].klen);
        bool found;
        st = sst_reader_seek_one(r, key, key, &found, &k, &v);
        if (!nk_ok(st))
            FAIL("seek_one %zu: %s", i, nk_status_msg(st));
        if (!found || !kv_slice_eq(nk_slice_make(k.data, k.len), s->e[i].key, s->e[i].klen) ||
            !kv_slice_eq(nk_slice_make(v.data, v.len), s->e[i].val, s->e[i].vlen))
            FAIL("seek_one of key %zu (len %zu) found=%d wrong", i, s->e[i].klen, found);

        sst_iter_seek(it, key);
        if (!sst_iter_valid(it) || !kv_slice_eq(sst_iter_key(it), s->e[i].key, s->e[i].klen))
            FAIL("iter seek to key %zu", i);

        /* key + "\0" is the smallest key after key: lands on entry i+1 */
        probe.len = 0;
        nk_buf_append(&probe, key.data, key.len);
        nk_buf_put_u8(&probe, 0);
        struct nk_slice between = nk_slice_make(probe.data, probe.len);
        sst_iter_seek(it, between);
        if (i + 1 < s->n) {
            if (!sst_iter_valid(it) ||
                !kv_slice_eq(sst_iter_key(it), s->e[i + 1].key, s->e[i + 1].klen))
                FAIL("iter seek between keys %zu and %zu", i, i + 1);
        } else if (sst_iter_valid(it)) {
            FAIL("iter seek past the last key is valid");
        }
        /* seek_one with a filter key that is present (the exact key) so the
         * bloom filter lets it through to the >= search */
        st = sst_reader_seek_one(r, between, key, &found, &k, &v);
        if (!nk_ok(st))
            FAIL("seek_one between: %s", nk_status_msg(st));
        if (i + 1 < s->n) {
            if (!found ||
                !kv_slice_eq(nk_slice_make(k.data, k.len), s->e[i + 1].key, s->e[i + 1].klen) ||
                !kv_slice_eq(nk_slice_make(v.data, v.len), s->e[i + 1].val, s->e[i + 1].vlen))
                FAIL("seek_one between keys %zu and %zu", i, i + 1);
        } else if (found) {
            FAIL("seek_one past the last key found something");
        }
    }
    /* before the first key */
    if (s->n && s->e[0].klen > 0) {
        sst_iter_seek(it, nk_slice_make("", 0));
        if (!sst_iter_valid(it) || !kv_slice_eq(sst_iter_key(it), s->e[0].key, s->e[0].klen))
            FAIL("seek to the empty key does not land on the first key");
    }
    st = sst_iter_status(it);
    if (!nk_ok(st))
        FAIL("iterator status after seeks: %s", nk_status_msg(st));
out:
    nk_status_free(&st);
    sst_iter_free(it);
    sst_reader_close(r);
    nk_buf_free(&k);
    nk_buf_free(&v);
    nk_buf_free(&probe);
#undef FAIL
    return ok;
}

NK_TEST(round_trip_random_keys_every_compression_with_and_without_cache)
{
    struct nk_rng rng;
    nk_rng_seed(&rng, nk_test_seed());
    struct kvset s = kv_random(&rng, 4000, 200, 300, 200000);
    char path[1024];
    uint64_t sizes[3] = {0};
    for (int c = SST_COMPRESS_NONE; c <= SST_COMPRESS_ZSTD; c++) {
        struct sst_options o;
        sst_options_default(&o);
        o.compression = (enum sst_compression)c;
        char name[32];
        snprintf(name, sizeof name, "c%d.sst", c);
        path_in_tmp(path, sizeof path, name);
        struct sst_file_info info;
        NK_REQUIRE_OK(kv_build(path, &o, &s, &info));
        NK_CHECK_EQ_U64(info.num_entries, s.n);
        NK_CHECK(kv_slice_eq(nk_slice_make(info.smallest, info.smallest_len), s.e[0].key,
                             s.e[0].klen));
        sizes[c] = info.file_size;
        sst_file_info_free(&info);
        NK_CHECK(verify_table(path, &s, NULL, 0));
        struct sst_cache *cache;
        NK_REQUIRE_OK(sst_cache_new(8u << 20, &cache));
        NK_CHECK(verify_table(path, &s, cache, 7));
        NK_CHECK(verify_table(path, &s, cache, 7)); /* now served from the cache */
        g_use_mmap = true; /* in place, compressed blocks via the cache */
        NK_CHECK(verify_table(path, &s, cache, 8));
        NK_CHECK(verify_table(path, &s, NULL, 0));
        g_use_mmap = false;
        struct sst_cache_stats cs;
        sst_cache_get_stats(cache, &cs);
        NK_CHECK(cs.hits > 0 && cs.usage <= cs.capacity);
        sst_cache_free(cache);
    }
    /* the values are compressible: both codecs must have shrunk the file */
    NK_CHECK(sizes[SST_COMPRESS_LZ4] < sizes[SST_COMPRESS_NONE]);
    NK_CHECK(sizes[SST_COMPRESS_ZSTD] < sizes[SST_COMPRESS_NONE]);
    fprintf(stderr, "  file sizes: none %" PRIu64 " lz4 %" PRIu64 " zstd %" PRIu64 "\n", sizes[0],
            sizes[1], sizes[2]);
    kv_free(&s);
}

NK_TEST(round_trip_small_blocks_and_restart_intervals)
{
    struct nk_rng rng;
    nk_rng_seed(&rng, nk_test_seed());
    struct kvset s = kv_random(&rng, 1500, 40, 40, 0);
    char path[1024];
    path_in_tmp(path, sizeof path, "t.sst");
    uint32_t blocks[] = {1, 64, 512, 4096, 65536};
    uint32_t restarts[] = {1, 2, 16, 100};
    for (size_t bi = 0; bi < NK_ARRAY_LEN(blocks); bi++) {
        for (size_t ri = 0; ri < NK_ARRAY_LEN(restarts); ri++) {
            struct sst_options o;
            sst_options_default(&o);
            o.block_size = blocks[bi];
            o.restart_interval = restarts[ri];
            o.compression = (enum sst_compression)((bi + ri) % 3);
            NK_REQUIRE_OK(kv_build(path, &o, &s, NULL));
            g_use_mmap = ri % 2 == 1;
            if (!verify_table(path, &s, NULL, 0)) {
                fprintf(stderr, "  block_size %u restart_interval %u\n", blocks[bi],
                        restarts[ri]);
                NK_CHECK(false);
                return;
            }
        }
    }
    g_use_mmap = false;
    kv_free(&s);
}

NK_TEST(max_size_keys_empty_keys_and_large_values_round_trip)
{
    struct kvset s = {nk_calloc(5, sizeof(struct kv)), 5};
    size_t klens[5] = {0, 1, SST_MAX_KEY - 1, SST_MAX_KEY, 3};
    size_t vlens[5] = {0, 3u << 20, 0, 100, 0};
    for (int i = 0; i < 5; i++) {
        s.e[i].klen = klens[i];
        s.e[i].key = nk_malloc(klens[i] + 1);
        memset(s.e[i].key, 'k', klens[i]);
        if (i == 4)
            memcpy(s.e[i].key, "z12", 3); /* after all the "k..." keys */
        s.e[i].vlen = vlens[i];
        s.e[i].val = nk_malloc(vlens[i] + 1);
        kv_fill_value(s.e[i].key, s.e[i].klen, s.e[i].val, s.e[i].vlen);
    }
    char path[1024];
    path_in_tmp(path, sizeof path, "big.sst");
    for (int c = SST_COMPRESS_NONE; c <= SST_COMPRESS_ZSTD; c++) {
        struct sst_options o;
        sst_options_default(&o);
        o.compression = (enum sst_compression)c;
        NK_REQUIRE_OK(kv_build(path, &o, &s, NULL));
        NK_CHECK(verify_table(path, &s, NULL, 0));
    }
    kv_free(&s);
}

NK_TEST(oversized_keys_and_values_are_rejected_naming_the_file)
{
    char path[1024];
    path_in_tmp(path, sizeof path, "over.sst");
    struct sst_builder *b;
    NK_REQUIRE_OK(sst_builder_open(path, NULL, &b));
    uint8_t *big = nk_calloc(1, SST_MAX_KEY + 1);
    nk_status s = sst_builder_add(b, nk_slice_make(big, SST_MAX_KEY + 1), nk_slice_make("", 0));
    NK_CHECK(s.code == NK_INVALID_ARGUMENT && strstr(nk_status_msg(s), path));
    nk_status_free(&s);
    /* a value one byte over the limit; the pointer is never read */
    s = sst_builder_add(b, nk_slice_make("a", 1), nk_slice_make(big, (size_t)SST_MAX_VALUE + 1));
    NK_CHECK(s.code == NK_INVALID_ARGUMENT);
    nk_status_free(&s);
    free(big);
    /* the builder is still usable after a rejected add */
    NK_REQUIRE_OK(sst_builder_add(b, nk_slice_make("a", 1), nk_slice_make("1", 1)));
    NK_REQUIRE_OK(sst_builder_finish(b, NULL));
    struct sst_reader *r;
    NK_REQUIRE_OK(sst_reader_open(path, NULL, &r));
    NK_CHECK_EQ_U64(sst_reader_num_entries(r), 1);
    sst_reader_close(r);

    struct sst_options o;
    sst_options_default(&o);
    o.block_size = 0;
    s = sst_builder_open(path, &o, &b);
    NK_CHECK(s.code == NK_INVALID_ARGUMENT);
    nk_status_free(&s);
}

NK_TEST(empty_table_opens_and_holds_nothing)
{
    char path[1024];
    path_in_tmp(path, sizeof path, "empty.sst");
    struct sst_builder *b;
    NK_REQUIRE_OK(sst_builder_open(path, NULL, &b));
    NK_CHECK_EQ_U64(sst_builder_num_entries(b), 0);
    struct sst_file_info info;
    NK_REQUIRE_OK(sst_builder_finish(b, &info));
    NK_CHECK_EQ_U64(info.num_entries, 0);
    sst_file_info_free(&info);
    struct kvset none = {NULL, 0};
    NK_CHECK(verify_table(path, &none, NULL, 0));
    struct sst_reader *r;
    NK_REQUIRE_OK(sst_reader_open(path, NULL, &r));
    bool found = true;
    struct nk_buf k, v;
    nk_buf_init(&k);
    nk_buf_init(&v);
    NK_REQUIRE_OK(sst_reader_seek_one(r, nk_slice_str("x"), nk_slice_str("x"), &found, &k, &v));
    NK_CHECK(!found);
    NK_CHECK(!sst_reader_may_contain(r, nk_slice_str("x")));
    nk_buf_free(&k);
    nk_buf_free(&v);
    sst_reader_close(r);
}

NK_TEST(abandoned_builder_leaves_no_file)
{
    char path[1024];
    path_in_tmp(path, sizeof path, "gone.sst");
    struct sst_builder *b;
    NK_REQUIRE_OK(sst_builder_open(path, NULL, &b));
    NK_REQUIRE_OK(sst_builder_add(b, nk_slice_str("a"), nk_slice_str("b")));
    sst_builder_abandon(b);
    NK_CHECK(access(path, F_OK) != 0);
}

NK_TEST(bloom_false_positive_rate_is_near_one_percent_and_has_no_false_negatives)
{
    char path[1024];
    path_in_tmp(path, sizeof path, "bloom.sst");
    struct sst_builder *b;
    NK_REQUIRE_OK(sst_builder_open(path, NULL, &b));
    const uint32_t n = 100000;
    char key[32];
    for (uint32_t i = 0; i < n; i++) {
        int len = snprintf(key, sizeof key, "key%012u", i * 2); /* even numbers present */
        NK_REQUIRE_OK(sst_builder_add(b, nk_slice_make(key, (size_t)len), nk_slice_make("", 0)));
    }
    NK_REQUIRE_OK(sst_builder_finish(b, NULL));
    struct sst_reader *r;
    NK_REQUIRE_OK(sst_reader_open(path, NULL, &r));
    uint32_t fn = 0, fp = 0;
    for (uint32_t i = 0; i < n; i++) {
        int len = snprintf(key, sizeof key, "key%012u", i * 2);
        if (!sst_reader_may_contain(r, nk_slice_make(key, (size_t)len)))
            fn++;
        len = snprintf(key, sizeof key, "key%012u", i * 2 + 1);
        if (sst_reader_may_contain(r, nk_slice_make(key, (size_t)len)))
            fp++;
    }
    double rate = (double)fp / n;
    fprintf(stderr, "  10 bits/key: %u false positives in %u absent keys (%.3f%%)\n", fp, n,
            rate * 100);
    NK_CHECK_EQ_U64(fn, 0);
    NK_CHECK(rate < 0.03);
    /* and seek_one of an absent key is answered without a match */
    struct nk_buf k, v;
    nk_buf_init(&k);
    nk_buf_init(&v);
    bool found;
    int len = snprintf(key, sizeof key, "key%012u", 3u);
    NK_REQUIRE_OK(sst_reader_seek_one(r, nk_slice_make(key, (size_t)len),
                                      nk_slice_make(key, (size_t)len), &found, &k, &v));
    NK_CHECK(!found || !nk_slice_eq(nk_slice_make(k.data, k.len), nk_slice_make(key, (size_t)len)));
    nk_buf_free(&k);
    nk_buf_free(&v);
    sst_reader_close(r);
}

NK_TEST(table_without_filter_says_every_key_may_be_present)
{
    char path[1024];
    path_in_tmp(path, sizeof path, "nofilter.sst");
    struct sst_options o;
    sst_options_default(&o);
    o.bloom_bits_per_key = 0;
    struct nk_rng rng;
    nk_rng_seed(&rng, nk_test_seed());
    struct kvset s = kv_random(&rng, 500, 20, 20, 0);
    NK_REQUIRE_OK(kv_build(path, &o, &s, NULL));
    NK_CHECK(verify_table(path, &s, NULL, 0));
    struct sst_reader *r;
    NK_REQUIRE_OK(sst_reader_open(path, NULL, &r));
    NK_CHECK(sst_reader_may_contain(r, nk_slice_str("definitely absent")));
    sst_reader_close(r);
    kv_free(&s);
}

/* ---------------------------------------------------- custom comparator */

/* Keys are "user key" + 8-byte big-endian sequence; order: user key
 * descending (to differ from bytewise), then sequence descending. */
static int rev_cmp(struct nk_slice a, struct nk_slice b)
{
    NK_ASSERT(a.len >= 8 && b.len >= 8);
    struct nk_slice ua = nk_slice_make(a.data, a.len - 8), ub = nk_slice_make(b.data, b.len - 8);
    int c = nk_slice_cmp(ub, ua);
    if (c)
        return c;
    uint64_t sa = nk_dec_be64(a.data + a.len - 8), sb = nk_dec_be64(b.data + b.len - 8);
    return sa > sb ? -1 : (sa < sb ? 1 : 0);
}

static struct nk_slice rev_filter_key(struct nk_slice k)
{
    return nk_slice_make(k.data, k.len - 8);
}

static const struct sst_comparator rev_comparator = {
    .cmp = rev_cmp, .filter_key = rev_filter_key, .name = "test.reverse-user-key-seq"};

NK_TEST(custom_comparator_orders_seeks_and_filters_by_user_key)
{
    char path[1024];
    path_in_tmp(path, sizeof path, "rev.sst");
    struct sst_options o;
    sst_options_default(&o);
    o.cmp = &rev_comparator;
    o.block_size = 256;
    struct sst_builder *b;
    NK_REQUIRE_OK(sst_builder_open(path, &o, &b));
    /* user keys u999 .. u000 (descending), three versions each (seq desc) */
    uint8_t key[16];
    for (int u = 999; u >= 0; u--) {
        for (int v = 3; v >= 1; v--) {
            snprintf((char *)key, 5, "u%03d", u);
            nk_enc_be64(key + 4, (uint64_t)(u * 10 + v));
            char val[16];
            int vl = snprintf(val, sizeof val, "%d.%d", u, v);
            NK_REQUIRE_OK(sst_builder_add(b, nk_slice_make(key, 12), nk_slice_make(val, (size_t)vl)));
        }
    }
    NK_REQUIRE_OK(sst_builder_finish(b, NULL));

    struct sst_read_options ro;
    sst_read_options_default(&ro);
    ro.cmp = &rev_comparator;
    struct sst_reader *r;
    NK_REQUIRE_OK(sst_reader_open(path, &ro, &r));
    NK_CHECK_EQ_U64(sst_reader_num_entries(r), 3000);
    struct nk_buf k, v;
    nk_buf_init(&k);
    nk_buf_init(&v);
    for (int u = 0; u < 1000; u++) {
        /* looking up user key u at a snapshot seq u*10+2 finds version 2 */
        snprintf((char *)key, 5, "u%03d", u);
        nk_enc_be64(key + 4, (uint64_t)(u * 10 + 2));
        bool found;
        NK_REQUIRE_OK(sst_reader_seek_one(r, nk_slice_make(key, 12), nk_slice_make(key, 4), &found,
                                          &k, &v));
        char want[16];
        int wl = snprintf(want, sizeof want, "%d.%d", u, 2);
        NK_REQUIRE(found && kv_slice_eq(nk_slice_make(v.data, v.len), (uint8_t *)want, (size_t)wl));
        NK_CHECK(sst_reader_may_contain(r, nk_slice_make(key, 4)));
    }
    /* iteration is in comparator order */
    struct sst_iter *it;
    NK_REQUIRE_OK(sst_iter_new(r, &it));
    int count = 0;
    struct nk_buf prev;
    nk_buf_init(&prev);
    for (sst_iter_seek_first(it); sst_iter_valid(it); sst_iter_next(it), count++) {
        if (count)
            NK_CHECK(rev_cmp(nk_slice_make(prev.data, prev.len), sst_iter_key(it)) < 0);
        prev.len = 0;
        nk_buf_append(&prev, sst_iter_key(it).data, sst_iter_key(it).len);
    }
    NK_CHECK(count == 3000);
    nk_buf_free(&prev);
    sst_iter_free(it);
    nk_buf_free(&k);
    nk_buf_free(&v);
    sst_reader_close(r);

    /* a reader with another comparator refuses the table */
    nk_status s = sst_reader_open(path, NULL, &r);
    NK_CHECK(s.code == NK_INVALID_ARGUMENT && strstr(nk_status_msg(s), "test.reverse-user-key-seq"));
    nk_status_free(&s);
}

NK_TEST(missing_file_fails_open_naming_it)
{
    char path[1024];
    path_in_tmp(path, sizeof path, "nope.sst");
    struct sst_reader *r;
    nk_status s = sst_reader_open(path, NULL, &r);
    NK_CHECK(s.code == NK_NOT_FOUND && strstr(nk_status_msg(s), path));
    nk_status_free(&s);
}

/* ------------------------------------- internal-key comparator, prefix index */

/* LSM-style internal keys: user key (bytewise, ascending), then an 8-byte
 * big-endian sequence, descending. Filter key: the user key. */
static int ik_test_cmp(struct nk_slice a, struct nk_slice b)
{
    int c = nk_slice_cmp(nk_slice_make(a.data, a.len - 8), nk_slice_make(b.data, b.len - 8));
    if (c)
        return c;
    uint64_t sa = nk_dec_be64(a.data + a.len - 8), sb = nk_dec_be64(b.data + b.len - 8);
    return sa > sb ? -1 : (sa < sb ? 1 : 0);
}

static const struct sst_comparator ik_fast = {.cmp = ik_test_cmp,
                                              .filter_key = rev_filter_key,
                                              .name = "test.ik",
                                              .orders_by_filter_key = true};
static const struct sst_comparator ik_slow = {
    .cmp = ik_test_cmp, .filter_key = rev_filter_key, .name = "test.ik"};

static const struct sst_comparator *g_sort_cmp;
static int kv_cmp_custom(const void *a, const void *b)
{
    const struct kv *x = a, *y = b;
    return g_sort_cmp->cmp(nk_slice_make(x->key, x->klen), nk_slice_make(y->key, y->klen));
}

static void prefix_index_case(struct nk_rng *rngp, bool all_common);

NK_TEST(prefix_index_seeks_agree_with_a_reference_for_internal_keys)
{
    struct nk_rng rng;
    nk_rng_seed(&rng, nk_test_seed());
    prefix_index_case(&rng, false); /* no common prefix: 8-byte prefixes collide */
    prefix_index_case(&rng, true);  /* every key shares 14 bytes: they are skipped */
}

static void prefix_index_case(struct nk_rng *rngp, bool all_common)
{
    struct nk_rng rng = *rngp;
    nk_rng_next(rngp);
    /* user keys share a long prefix and often each other's first 8 bytes
     * after it; some user keys have many versions spanning blocks */
    size_t cap = 6000, n = 0;
    struct kvset s = {nk_calloc(cap, sizeof(struct kv)), 0};
    while (n < cap - 200) {
        uint8_t uk[40];
        size_t ul = 0;
        if (all_common || nk_rng_chance(&rng, 9, 10)) {
            memcpy(uk, "common/prefix/", 14);
            ul = 14;
        }
        size_t extra = nk_rng_uniform(&rng, 20);
        for (size_t j = 0; j < extra; j++)
            uk[ul++] = (uint8_t)('a' + nk_rng_uniform(&rng, j < 10 ? 2 : 3));
        size_t versions = nk_rng_chance(&rng, 1, 50) ? 100 + nk_rng_uniform(&rng, 100)
                                                     : 1 + nk_rng_uniform(&rng, 3);
        for (size_t v = 0; v < versions; v++) {
            uint8_t *k = nk_malloc(ul + 8);
            memcpy(k, uk, ul);
            nk_enc_be64(k + ul, nk_rng_uniform(&rng, 1000000));
            uint8_t *val = nk_malloc(8);
            kv_fill_value(k, ul + 8, val, 8);
            s.e[n++] = (struct kv){k, ul + 8, val, 8};
        }
    }
    g_sort_cmp = &ik_fast;
    qsort(s.e, n, sizeof(struct kv), kv_cmp_custom);
    size_t w = 0;
    for (size_t i = 0; i < n; i++) {
        if (w > 0 && kv_cmp_custom(&s.e[w - 1], &s.e[i]) == 0) {
            free(s.e[i].key);
            free(s.e[i].val);
            continue;
        }
        s.e[w++] = s.e[i];
    }
    s.n = w;

    char path[1024];
    path_in_tmp(path, sizeof path, "ik.sst");
    struct sst_options o;
    sst_options_default(&o);
    o.cmp = &ik_fast;
    o.block_size = 128; /* many blocks, long runs of one user key */
    NK_REQUIRE_OK(kv_build(path, &o, &s, NULL));
    const struct sst_comparator *cmps[2] = {&ik_fast, &ik_slow};
    struct sst_reader *rs[2];
    struct sst_iter *its[2];
    for (int c = 0; c < 2; c++) {
        struct sst_read_options ro;
        sst_read_options_default(&ro);
        ro.cmp = cmps[c];
        NK_REQUIRE_OK(sst_reader_open(path, &ro, &rs[c]));
        NK_REQUIRE_OK(sst_iter_new(rs[c], &its[c]));
    }
    struct nk_buf k, v, t;
    nk_buf_init(&k);
    nk_buf_init(&v);
    nk_buf_init(&t);
    for (int round = 0; round < 20000; round++) {
        /* a target near an existing key, or a random one */
        t.len = 0;
        const struct kv *base = &s.e[nk_rng_uniform(&rng, s.n)];
        size_t ul = base->klen - 8;
        if (nk_rng_chance(&rng, 1, 4))
            ul = nk_rng_uniform(&rng, ul + 1); /* a prefix of the user key */
        nk_buf_append(&t, base->key, ul);
        if (nk_rng_chance(&rng, 1, 4))
            nk_buf_put_u8(&t, (uint8_t)('a' + nk_rng_uniform(&rng, 4)));
        uint8_t seq[8];
        nk_enc_be64(seq, nk_rng_uniform(&rng, 1000001));
        nk_buf_append(&t, seq, 8);
        struct nk_slice target = nk_slice_make(t.data, t.len);
        /* reference: binary search over the sorted entries */
        size_t lo = 0, hi = s.n;
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            if (ik_test_cmp(nk_slice_make(s.e[mid].key, s.e[mid].klen), target) < 0)
                lo = mid + 1;
            else
                hi = mid;
        }
        for (int c = 0; c < 2; c++) {
            bool found;
            /* the whole key as filter key would make the bloom say no;
             * pass the target's user key as the LSM does */
            NK_REQUIRE_OK(sst_reader_seek_one(rs[c], target, rev_filter_key(target), &found, &k,
                                              &v));
            sst_iter_seek(its[c], target);
            if (lo == s.n) {
                NK_REQUIRE(!sst_iter_valid(its[c]));
                /* seek_one may stop at the bloom filter or find nothing */
                NK_REQUIRE(!found);
            } else {
                NK_REQUIRE(sst_iter_valid(its[c]) &&
                           kv_slice_eq(sst_iter_key(its[c]), s.e[lo].key, s.e[lo].klen));
                if (found)
                    NK_REQUIRE(
                        kv_slice_eq(nk_slice_make(k.data, k.len), s.e[lo].key, s.e[lo].klen));
                else /* only the filter may say no, and only for absent user keys */
                    NK_REQUIRE(!sst_reader_may_contain(rs[c], rev_filter_key(target)));
            }
        }
    }
    for (int c = 0; c < 2; c++) {
        sst_iter_free(its[c]);
        sst_reader_close(rs[c]);
    }
    nk_buf_free(&k);
    nk_buf_free(&v);
    nk_buf_free(&t);
    kv_free(&s);
}

NK_TEST(blocks_that_do_not_shrink_enough_are_stored_uncompressed)
{
    struct nk_rng rng;
    nk_rng_seed(&rng, nk_test_seed());
    struct kvset s = kv_random(&rng, 2000, 16, 200, 0);
    for (size_t i = 0; i < s.n; i++) /* random bytes: incompressible */
        for (size_t j = 0; j < s.e[i].vlen; j++)
            s.e[i].val[j] = (uint8_t)nk_rng_next(&rng);
    char path[1024];
    path_in_tmp(path, sizeof path, "rand.sst");
    uint64_t sizes[3];
    for (int c = SST_COMPRESS_NONE; c <= SST_COMPRESS_ZSTD; c++) {
        struct sst_options o;
        sst_options_default(&o);
        o.compression = (enum sst_compression)c;
        struct sst_file_info info;
        NK_REQUIRE_OK(kv_build(path, &o, &s, &info));
        sizes[c] = info.file_size;
        sst_file_info_free(&info);
        NK_CHECK(verify_table(path, &s, NULL, 0));
    }
    /* identical layout: every data block kept its raw form (type byte 0) */
    NK_CHECK_EQ_U64(sizes[SST_COMPRESS_LZ4], sizes[SST_COMPRESS_NONE]);
    NK_CHECK_EQ_U64(sizes[SST_COMPRESS_ZSTD], sizes[SST_COMPRESS_NONE]);
    kv_free(&s);
}

/* Iterates the whole table with the given options and checks every entry,
 * then seeks to a sample of keys and walks a few entries from each. */
static bool scan_matches(struct sst_reader *r, const struct sst_iter_options *o,
                         const struct kvset *s, struct nk_rng *rng)
{
    struct sst_iter *it;
    NK_ASSERT(nk_ok(sst_iter_new_opts(r, o, &it)));
    bool ok = true;
    size_t i = 0;
    for (sst_iter_seek_first(it); sst_iter_valid(it) && ok; sst_iter_next(it), i++)
        ok = i < s->n && kv_slice_eq(sst_iter_key(it), s->e[i].key, s->e[i].klen) &&
             kv_slice_eq(sst_iter_value(it), s->e[i].val, s->e[i].vlen);
    ok = ok && i == s->n;
    for (int round = 0; round < 200 && ok; round++) {
        size_t j = nk_rng_uniform(rng, s->n);
        sst_iter_seek(it, nk_slice_make(s->e[j].key, s->e[j].klen));
        for (size_t k = j; k < j + 50 && k < s->n && ok; k++) {
            ok = sst_iter_valid(it) && kv_slice_eq(sst_iter_key(it), s->e[k].key, s->e[k].klen) &&
                 kv_slice_eq(sst_iter_value(it), s->e[k].val, s->e[k].vlen);
            sst_iter_next(it);
        }
    }
    nk_status st = sst_iter_status(it);
    ok = ok && nk_ok(st);
    nk_status_free(&st);
    sst_iter_free(it);
    return ok;
}

NK_TEST(scans_without_fill_cache_read_ahead_and_leave_the_cache_untouched)
{
    struct nk_rng rng;
    nk_rng_seed(&rng, nk_test_seed());
    struct kvset s = kv_random(&rng, 4000, 24, 150, 20000);
    char path[1024];
    path_in_tmp(path, sizeof path, "scan.sst");
    size_t ras[] = {0, 1, 4096, 8192, 65536, 1u << 30};
    for (int c = SST_COMPRESS_NONE; c <= SST_COMPRESS_ZSTD; c++) {
        struct sst_options o;
        sst_options_default(&o);
        o.compression = (enum sst_compression)c;
        NK_REQUIRE_OK(kv_build(path, &o, &s, NULL));
        for (int mmap = 0; mmap < 2; mmap++) {
            struct sst_cache *cache;
            NK_REQUIRE_OK(sst_cache_new(4u << 20, &cache));
            struct sst_read_options ro;
            sst_read_options_default(&ro);
            ro.cache = cache;
            ro.use_mmap = mmap;
            struct sst_reader *r;
            NK_REQUIRE_OK(sst_reader_open(path, &ro, &r));
            for (size_t a = 0; a < NK_ARRAY_LEN(ras); a++) {
                struct sst_iter_options io = {.fill_cache = false, .readahead = ras[a]};
                if (!scan_matches(r, &io, &s, &rng)) {
                    fprintf(stderr, "  compression %d mmap %d readahead %zu\n", c, mmap, ras[a]);
                    NK_CHECK(false);
                }
            }
            struct sst_cache_stats cs;
            sst_cache_get_stats(cache, &cs);
            NK_CHECK_EQ_U64(cs.inserts, 0);
            NK_CHECK_EQ_U64(cs.usage, 0);
            /* blocks already cached are used, still nothing is added */
            struct nk_buf k, v;
            nk_buf_init(&k);
            nk_buf_init(&v);
            bool found;
            struct nk_slice key0 = nk_slice_make(s.e[0].key, s.e[0].klen);
            NK_REQUIRE_OK(sst_reader_seek_one(r, key0, key0, &found, &k, &v));
            nk_buf_free(&k);
            nk_buf_free(&v);
            sst_cache_get_stats(cache, &cs);
            uint64_t inserts = cs.inserts;
            struct sst_iter_options io = {.fill_cache = false, .readahead = 65536};
            NK_CHECK(scan_matches(r, &io, &s, &rng));
            sst_cache_get_stats(cache, &cs);
            NK_CHECK_EQ_U64(cs.inserts, inserts);
            /* the default options fill the cache */
            NK_CHECK(scan_matches(r, NULL, &s, &rng));
            sst_cache_get_stats(cache, &cs);
            NK_CHECK(mmap && c == SST_COMPRESS_NONE ? cs.inserts == inserts
                                                     : cs.inserts > inserts);
            sst_reader_close(r);
            sst_cache_free(cache);
        }
    }
    kv_free(&s);
}

NK_TEST(block_crc32c_matches_util_crc32c_for_every_length_and_alignment)
{
    struct nk_rng rng;
    nk_rng_seed(&rng, nk_test_seed());
    size_t max = 20000;
    uint8_t *buf = nk_malloc(max + 8);
    for (size_t i = 0; i < max + 8; i++)
        buf[i] = (uint8_t)nk_rng_next(&rng);
    size_t mismatches = 0;
    for (size_t n = 0; n <= 4200; n++) /* every length around the round sizes */
        for (size_t a = 0; a < 8; a += 3)
            mismatches += sst_crc32c(buf + a, n) != nk_crc32c(buf + a, n);
    for (int k = 0; k < 2000; k++) {
        size_t n = nk_rng_uniform(&rng, max + 1), a = nk_rng_uniform(&rng, 8);
        mismatches += sst_crc32c(buf + a, n) != nk_crc32c(buf + a, n);
    }
    NK_CHECK_EQ_U64(mismatches, 0);
    /* the standard check value of CRC-32C */
    NK_CHECK_EQ_U64(sst_crc32c("123456789", 9), 0xe3069283u);
    free(buf);
}

NK_TEST(a_failed_write_is_reported_naming_the_file_and_removes_it)
{
    char path[1024];
    path_in_tmp(path, sizeof path, "full.sst");
    /* a file-size limit makes write(2) fail with EFBIG part way through */
    struct rlimit old, lim;
    NK_REQUIRE(getrlimit(RLIMIT_FSIZE, &old) == 0);
    void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
    lim = old;
    lim.rlim_cur = 64 * 1024;
    NK_REQUIRE(setrlimit(RLIMIT_FSIZE, &lim) == 0);
    struct sst_builder *b;
    nk_status s = sst_builder_open(path, NULL, &b);
    if (!nk_ok(s)) {
        setrlimit(RLIMIT_FSIZE, &old);
        signal(SIGXFSZ, prev);
        NK_REQUIRE_OK(s);
    }
    uint8_t val[1000];
    memset(val, 'v', sizeof val);
    size_t i = 0;
    for (; nk_ok(s) && i < 2000; i++) {
        char key[16];
        int kl = snprintf(key, sizeof key, "k%08zu", i);
        s = sst_builder_add(b, nk_slice_make(key, (size_t)kl), nk_slice_make(val, sizeof val));
    }
    if (!nk_ok(s)) {
        fprintf(stderr, "  add %zu: %s\n", i, nk_status_msg(s));
        NK_CHECK(strstr(nk_status_msg(s), path) != NULL);
        nk_status_free(&s);
    }
    /* finishing a failed builder fails too (or fails itself), and cleans up */
    s = sst_builder_finish(b, NULL);
    NK_CHECK(!nk_ok(s) && strstr(nk_status_msg(s), path) != NULL);
    nk_status_free(&s);
    NK_CHECK(setrlimit(RLIMIT_FSIZE, &old) == 0);
    signal(SIGXFSZ, prev);
    NK_CHECK(access(path, F_OK) != 0); /* no partial table left behind */
}
