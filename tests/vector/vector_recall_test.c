/* HNSW recall@10 against the exact index on clustered data, at the default
 * settings, for every metric: a correctness check (a badly connected graph
 * or a broken search loses recall), not a speed measurement. */
#include <math.h>

#include "testlib.h"
#include "vecgen.h"
#include "vector/vector.h"

static struct vec_index *make(enum vec_index_type t, enum vec_metric m, uint32_t dims)
{
    struct vec_index_options o;
    vec_index_options_default(&o);
    o.type = t;
    o.metric = m;
    o.dims = dims;
    struct vec_index *ix = NULL;
    nk_status s = vec_index_create(&o, &ix);
    NK_ASSERT(nk_ok(s));
    return ix;
}

static struct nk_slice idof(char *buf, size_t i)
{
    int n = snprintf(buf, 32, "id-%zu", i);
    return nk_slice_make(buf, (size_t)n);
}

static void insert_all(struct vec_index *ix, const float *v, size_t n, size_t d)
{
    char buf[32];
    for (size_t i = 0; i < n; i++) {
        bool rep;
        nk_status s = vec_index_insert(ix, idof(buf, i), v + i * d, &rep);
        NK_ASSERT(nk_ok(s));
    }
}

/* recall@k of ix against the exact index over nq queries */
static double recall(struct vec_index *ix, struct vec_index *exact, const float *q, size_t nq,
                     size_t d, uint32_t k, uint32_t ef)
{
    struct vec_results a, b;
    vec_results_init(&a);
    vec_results_init(&b);
    size_t hit = 0, total = 0;
    for (size_t i = 0; i < nq; i++) {
        NK_ASSERT(nk_ok(vec_index_search(ix, q + i * d, k, ef, false, &a)));
        NK_ASSERT(nk_ok(vec_index_search(exact, q + i * d, k, 0, false, &b)));
        for (uint32_t x = 0; x < b.n; x++)
            for (uint32_t y = 0; y < a.n; y++)
                if (!strcmp(a.m[y].id, b.m[x].id)) {
                    hit++;
                    break;
                }
        total += b.n;
    }
    vec_results_free(&a);
    vec_results_free(&b);
    return total ? (double)hit / (double)total : 1.0;
}

NK_TEST(hnsw_recall_at_10_is_at_least_0_95_on_clustered_data_at_defaults)
{
    struct vg_rng r = {nk_test_seed()};
    const size_t n = 10000, d = 64, nq = 200;
    float *v = vg_clustered(&r, n + nq, d, 40, 0.25);
    const float *q = v + n * d; /* queries from the same distribution */
    for (int m = VEC_METRIC_L2; m <= VEC_METRIC_IP; m++) {
        struct vec_index *h = make(VEC_INDEX_HNSW, (enum vec_metric)m, d);
        struct vec_index *f = make(VEC_INDEX_FLAT, (enum vec_metric)m, d);
        uint64_t t0 = nk_mono_ns();
        insert_all(h, v, n, d);
        uint64_t t1 = nk_mono_ns();
        insert_all(f, v, n, d);
        double rc = recall(h, f, q, nq, d, 10, 0);
        fprintf(stderr, "  metric %d: recall@10 %.4f (build %.2f s, memory %llu accounted, %llu "
                        "allocated)\n",
                m, rc, (double)(t1 - t0) / 1e9, (unsigned long long)vec_index_memory(h),
                (unsigned long long)vec_index_allocated(h));
        NK_CHECK(rc >= 0.95);
        vec_index_destroy(h);
        vec_index_destroy(f);
    }
    free(v);
}
