/* The flat and HNSW indexes: exactness, recall on clustered data, deletes and
 * replaces that keep the graph navigable, determinism, the memory bound,
 * concurrent readers beside a writer. */
#include <math.h>
#include <pthread.h>

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

NK_TEST(flat_search_is_exact_for_every_metric)
{
    struct vg_rng r = {nk_test_seed()};
    const size_t n = 2000, d = 37;
    float *v = vg_clustered(&r, n, d, 20, 0.3);
    float *q = vg_clustered(&r, 20, d, 5, 0.5);
    for (int m = VEC_METRIC_L2; m <= VEC_METRIC_IP; m++) {
        struct vec_index *ix = make(VEC_INDEX_FLAT, (enum vec_metric)m, d);
        insert_all(ix, v, n, d);
        NK_CHECK_EQ_U64(vec_index_count(ix), n);
        struct vec_results res;
        vec_results_init(&res);
        for (size_t i = 0; i < 20; i++) {
            NK_REQUIRE_OK(vec_index_search(ix, q + i * d, 10, 0, true, &res));
            NK_REQUIRE(res.n == 10);
            /* brute force: the 10th distance bounds every other vector */
            size_t below = 0;
            for (size_t j = 0; j < n; j++) {
                float dist = vec_distance((enum vec_metric)m, q + i * d, v + j * d, d);
                if (dist < res.m[9].distance)
                    below++;
            }
            NK_CHECK(below <= 9);
            for (uint32_t j = 0; j < res.n; j++) {
                size_t idx = strtoul(res.m[j].id + 3, NULL, 10);
                float dist = vec_distance((enum vec_metric)m, q + i * d, v + idx * d, d);
                NK_CHECK(fabsf(dist - res.m[j].distance) <= 1e-5f * (1 + fabsf(dist)));
                NK_CHECK(!memcmp(res.m[j].vector, v + idx * d, d * sizeof(float)));
                if (j)
                    NK_CHECK(res.m[j - 1].distance <= res.m[j].distance);
            }
        }
        vec_results_free(&res);
        vec_index_destroy(ix);
    }
    free(v);
    free(q);
}

NK_TEST(hnsw_stays_navigable_after_deletes_and_replaces)
{
    struct vg_rng r = {nk_test_seed()};
    const size_t n = 6000, d = 32, nq = 100;
    float *v = vg_clustered(&r, 2 * n + nq, d, 30, 0.25);
    const float *q = v + 2 * n * d;
    struct vec_index *h = make(VEC_INDEX_HNSW, VEC_METRIC_L2, d);
    struct vec_index *f = make(VEC_INDEX_FLAT, VEC_METRIC_L2, d);
    insert_all(h, v, n, d);
    insert_all(f, v, n, d);
    char buf[32];
    /* delete 60% in random order (several purges run), replace 20% with new vectors */
    size_t deleted = 0;
    for (size_t i = 0; i < n; i++) {
        size_t j = vg_next(&r) % n;
        bool a, b;
        if (vg_unif(&r) < 0.75) {
            vec_index_delete(h, idof(buf, j), &a);
            vec_index_delete(f, idof(buf, j), &b);
            NK_REQUIRE(a == b);
            deleted += a;
        } else {
            NK_REQUIRE_OK(vec_index_insert(h, idof(buf, j), v + (n + i) * d, &a));
            NK_REQUIRE_OK(vec_index_insert(f, idof(buf, j), v + (n + i) * d, &b));
            NK_REQUIRE(a == b);
            if (!a)
                deleted--;
        }
    }
    NK_CHECK_EQ_U64(vec_index_count(h), vec_index_count(f));
    NK_CHECK_EQ_U64(vec_index_memory(h) > 0, 1);
    double rc = recall(h, f, q, nq, d, 10, 0);
    fprintf(stderr, "  %llu live after %zu net deletes: recall@10 %.4f\n",
            (unsigned long long)vec_index_count(h), deleted, rc);
    NK_CHECK(rc >= 0.95);
    /* every result is live and carries the current vector */
    struct vec_results res;
    vec_results_init(&res);
    float *got = malloc(d * sizeof(float));
    for (size_t i = 0; i < nq; i++) {
        NK_REQUIRE_OK(vec_index_search(h, q + i * d, 10, 0, true, &res));
        for (uint32_t j = 0; j < res.n; j++) {
            NK_REQUIRE(vec_index_get(f, nk_slice_make(res.m[j].id, res.m[j].id_len), got));
            NK_CHECK(!memcmp(got, res.m[j].vector, d * sizeof(float)));
        }
    }
    /* deleting everything leaves an empty, usable index */
    for (size_t j = 0; j < n; j++) {
        bool a;
        vec_index_delete(h, idof(buf, j), &a);
    }
    NK_CHECK_EQ_U64(vec_index_count(h), 0);
    NK_REQUIRE_OK(vec_index_search(h, q, 10, 0, false, &res));
    NK_CHECK(res.n == 0);
    insert_all(h, v, 100, d);
    NK_REQUIRE_OK(vec_index_search(h, q, 10, 0, false, &res));
    NK_CHECK(res.n == 10);
    vec_results_free(&res);
    free(got);
    vec_index_destroy(h);
    vec_index_destroy(f);
    free(v);
}

NK_TEST(hnsw_same_operations_give_the_same_graph_and_results)
{
    struct vg_rng r = {nk_test_seed()};
    const size_t n = 3000, d = 24;
    float *v = vg_clustered(&r, n + 50, d, 10, 0.3);
    struct vec_index *a = make(VEC_INDEX_HNSW, VEC_METRIC_COSINE, d);
    struct vec_index *b = make(VEC_INDEX_HNSW, VEC_METRIC_COSINE, d);
    char buf[32];
    for (size_t i = 0; i < n; i++) {
        bool x;
        NK_REQUIRE_OK(vec_index_insert(a, idof(buf, i), v + i * d, &x));
        NK_REQUIRE_OK(vec_index_insert(b, idof(buf, i), v + i * d, &x));
        if (i % 3 == 0) {
            vec_index_delete(a, idof(buf, i / 2), &x);
            vec_index_delete(b, idof(buf, i / 2), &x);
        }
    }
    struct vec_results ra, rb;
    vec_results_init(&ra);
    vec_results_init(&rb);
    for (size_t i = 0; i < 50; i++) {
        /* a small ef makes the result depend on the exact graph */
        NK_REQUIRE_OK(vec_index_search(a, v + (n + i) * d, 5, 5, false, &ra));
        NK_REQUIRE_OK(vec_index_search(b, v + (n + i) * d, 5, 5, false, &rb));
        NK_REQUIRE(ra.n == rb.n);
        for (uint32_t j = 0; j < ra.n; j++) {
            NK_CHECK(!strcmp(ra.m[j].id, rb.m[j].id));
            NK_CHECK(ra.m[j].distance == rb.m[j].distance);
        }
    }
    NK_CHECK_EQ_U64(vec_index_memory(a), vec_index_memory(b));
    vec_results_free(&ra);
    vec_results_free(&rb);
    vec_index_destroy(a);
    vec_index_destroy(b);
    free(v);
}

NK_TEST(memory_bound_refuses_inserts_with_resource_exhausted_naming_it)
{
    for (int t = VEC_INDEX_FLAT; t <= VEC_INDEX_HNSW; t++) {
        struct vec_index_options o;
        vec_index_options_default(&o);
        o.type = (enum vec_index_type)t;
        o.dims = 128;
        o.max_bytes = VEC_MIN_MAX_BYTES; /* 64 KiB: about a hundred vectors */
        struct vec_index *ix;
        NK_REQUIRE_OK(vec_index_create(&o, &ix));
        float v[128] = {1};
        char buf[32];
        size_t i = 0;
        nk_status s = NK_OK;
        bool rep;
        for (; i < 10000 && nk_ok(s); i++)
            s = vec_index_insert(ix, idof(buf, i), v, &rep);
        NK_CHECK(s.code == NK_RESOURCE_EXHAUSTED);
        NK_CHECK(strstr(nk_status_msg(s), "max_bytes is 65536") != NULL);
        fprintf(stderr, "  type %d: refused vector %zu: %s\n", t, i, nk_status_msg(s));
        nk_status_free(&s);
        uint64_t n = vec_index_count(ix);
        NK_CHECK_EQ_U64(n, i - 1);
        NK_CHECK(vec_index_memory(ix) <= o.max_bytes);
        /* replacing an existing id is still allowed; a delete makes room */
        NK_REQUIRE_OK(vec_index_insert(ix, idof(buf, 0), v, &rep));
        NK_CHECK(rep);
        vec_index_delete(ix, idof(buf, 1), &rep);
        NK_REQUIRE_OK(vec_index_insert(ix, idof(buf, 99999), v, &rep));
        vec_index_destroy(ix);
    }
}

NK_TEST(bad_input_is_refused_naming_the_problem)
{
    struct vec_index_options o;
    vec_index_options_default(&o);
    nk_status s = vec_index_create(&o, &(struct vec_index *){NULL});
    NK_CHECK(s.code == NK_INVALID_ARGUMENT && strstr(nk_status_msg(s), "dimensions is 0"));
    nk_status_free(&s);
    o.dims = VEC_MAX_DIMS + 1;
    s = vec_index_options_validate(&o);
    NK_CHECK(strstr(nk_status_msg(s), "dimensions is 4097; it must be 1 to 4096") != NULL);
    nk_status_free(&s);
    o.dims = 4;
    o.m = 1;
    s = vec_index_options_validate(&o);
    NK_CHECK(strstr(nk_status_msg(s), "HNSW m is 1") != NULL);
    nk_status_free(&s);
    o.m = 16;
    struct vec_index *ix;
    NK_REQUIRE_OK(vec_index_create(&o, &ix));
    float bad[4] = {1, NAN, 0, 0};
    bool rep;
    s = vec_index_insert(ix, nk_slice_str("a"), bad, &rep);
    NK_CHECK(s.code == NK_INVALID_ARGUMENT && strstr(nk_status_msg(s), "value 1 is NaN"));
    nk_status_free(&s);
    bad[1] = INFINITY;
    s = vec_index_insert(ix, nk_slice_str("a"), bad, &rep);
    NK_CHECK(strstr(nk_status_msg(s), "value 1 is infinite") != NULL);
    nk_status_free(&s);
    bad[1] = 0;
    s = vec_index_insert(ix, nk_slice_str(""), bad, &rep);
    NK_CHECK(strstr(nk_status_msg(s), "vector id is empty") != NULL);
    nk_status_free(&s);
    struct vec_results r;
    vec_results_init(&r);
    s = vec_index_search(ix, bad, 0, 0, false, &r);
    NK_CHECK(strstr(nk_status_msg(s), "k is 0; it must be 1 to 1000") != NULL);
    nk_status_free(&s);
    s = vec_index_search(ix, bad, 1001, 0, false, &r);
    NK_CHECK(strstr(nk_status_msg(s), "k is 1001") != NULL);
    nk_status_free(&s);
    s = vec_validate_vector(bad, 3, 4);
    NK_CHECK(strstr(nk_status_msg(s), "vector has 3 dimensions; the index has 4") != NULL);
    nk_status_free(&s);
    NK_REQUIRE_OK(vec_index_search(ix, bad, 5, 0, false, &r));
    NK_CHECK(r.n == 0); /* empty index: no matches */
    vec_results_free(&r);
    vec_index_destroy(ix);
}

struct reader_arg {
    struct vec_index *ix;
    const float *q;
    size_t d;
    int iters;
    int bad;
};

static void *reader(void *p)
{
    struct reader_arg *a = p;
    struct vec_results r;
    vec_results_init(&r);
    for (int i = 0; i < a->iters; i++) {
        nk_status s = vec_index_search(a->ix, a->q + (size_t)(i % 20) * a->d, 10, 0, true, &r);
        if (!nk_ok(s)) {
            a->bad++;
            nk_status_free(&s);
            continue;
        }
        for (uint32_t j = 0; j < r.n; j++) {
            float dist = sqrtf(vec_l2_sq(a->q + (size_t)(i % 20) * a->d, r.m[j].vector, a->d));
            if (fabsf(dist - r.m[j].distance) > 1e-4f * (1 + dist))
                a->bad++;
        }
    }
    vec_results_free(&r);
    return NULL;
}

NK_TEST(concurrent_searches_run_beside_a_writer)
{
    struct vg_rng r = {nk_test_seed()};
    const size_t n = 4000, d = 16;
    float *v = vg_clustered(&r, n + 20, d, 10, 0.3);
    struct vec_index *ix = make(VEC_INDEX_HNSW, VEC_METRIC_L2, d);
    insert_all(ix, v, n / 2, d);
    struct reader_arg args[3];
    pthread_t th[3];
    for (int t = 0; t < 3; t++) {
        args[t] = (struct reader_arg){ix, v + n * d, d, 1500, 0};
        pthread_create(&th[t], NULL, reader, &args[t]);
    }
    char buf[32];
    for (size_t i = n / 2; i < n; i++) {
        bool x;
        NK_REQUIRE_OK(vec_index_insert(ix, idof(buf, i), v + i * d, &x));
        vec_index_delete(ix, idof(buf, i - n / 2), &x);
    }
    for (int t = 0; t < 3; t++) {
        pthread_join(th[t], NULL);
        NK_CHECK(args[t].bad == 0);
    }
    NK_CHECK_EQ_U64(vec_index_count(ix), n / 2);
    vec_index_destroy(ix);
    free(v);
}

/* Regression (model test seed 9958595684): re-selecting the links of a full
 * neighbour can drop the last link into a node, which the beam search then
 * never reaches. A search whose ef covers the whole graph must still be
 * exact: it scans instead of walking. Small m, few coarse values (many exact
 * duplicates and zero vectors) make such unreachable nodes common. */
NK_TEST(hnsw_search_with_ef_covering_the_index_finds_every_unreachable_node)
{
    enum { IDS = 60, D = 8, OPS = 3000 };
    struct vg_rng r = {nk_test_seed()};
    static float model[IDS][D];
    static bool has[IDS];
    struct vec_results res;
    vec_results_init(&res);
    int mismatches = 0;
    for (int run = 0; run < 8 && !mismatches; run++) {
        struct vec_index_options o;
        vec_index_options_default(&o);
        o.dims = D;
        o.m = 4 + (uint32_t)(vg_next(&r) % 8);
        o.metric = (enum vec_metric)(1 + vg_next(&r) % 3);
        struct vec_index *ix = NULL;
        NK_REQUIRE_OK(vec_index_create(&o, &ix));
        memset(has, 0, sizeof has);
        for (int op = 0; op < OPS && !mismatches; op++) {
            int i = (int)(vg_next(&r) % IDS);
            char buf[32];
            struct nk_slice id = idof(buf, (size_t)i);
            if (vg_unif(&r) < 0.7) {
                float v[D];
                for (int j = 0; j < D; j++)
                    v[j] = vg_unif(&r) < 0.05 ? 0.0f : (float)((int)(vg_unif(&r) * 8) - 4) / 4;
                bool rep;
                NK_REQUIRE_OK(vec_index_insert(ix, id, v, &rep));
                memcpy(model[i], v, sizeof v);
                has[i] = true;
            } else {
                bool del;
                vec_index_delete(ix, id, &del);
                has[i] = false;
            }
            uint32_t live = (uint32_t)vec_index_count(ix);
            if (!live)
                continue;
            float q[D];
            for (int j = 0; j < D; j++)
                q[j] = (float)(vg_unif(&r) * 2 - 1);
            /* every live id comes back when k (and so ef) covers the index */
            NK_REQUIRE_OK(vec_index_search(ix, q, live, live, false, &res));
            bool seen[IDS] = {0};
            for (uint32_t x = 0; x < res.n; x++)
                seen[atoi(res.m[x].id + 3)] = true;
            for (int x = 0; x < IDS; x++)
                if (seen[x] != has[x]) {
                    fprintf(stderr, "  run %d op %d m %u: id-%d returned %d, live %d\n", run, op,
                            o.m, x, seen[x], has[x]);
                    mismatches++;
                }
        }
        vec_index_destroy(ix);
    }
    vec_results_free(&res);
    NK_CHECK_EQ_U64(mismatches, 0);
}
