/*
 * bench_vector: NoriKV's in-process vector indexes on a shared data file, the
 * C half of `make bench-vector` (run.sh runs hnswlib and FAISS on the same
 * file in the same run and prints the comparison; compare.py).
 *
 *   bench_vector gen --out FILE --n N --dims D [--queries Q] [--clusters C] [--sigma S]
 *       clustered synthetic vectors (Gaussian blobs), queries from the same
 *       distribution, and the exact top-10 of every query (L2), in one file:
 *       "NKVB" u32 version(1) u32 n u32 dims u32 nq u32 k | n*dims f32 |
 *       nq*dims f32 | nq*k i32 (indices into the base vectors)
 *   bench_vector run --data FILE [--threads T] [--m 16] [--efc 200]
 *       [--ef 10,16,...] [--flat] [--passes P]
 *       builds the HNSW index (one thread: apply is serial), then for every
 *       ef measures recall@10 and queries per second with one thread and
 *       with T threads; prints one JSON object per line.
 *   bench_vector rebuild --data FILE --dir DIR [--flat]
 *       applies create + one insert command per vector through vec_apply
 *       into a fresh LSM in DIR (the replicated path), closes it, reopens it
 *       and times vec_store_load_shard: how long a restart takes to rebuild
 *       the in-memory index from the LSM.
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "lsm/lsm.h"
#include "util/util.h"
#include "vector/vector.h"

#define K 10

struct data {
    uint32_t n, dims, nq, k;
    float *base, *queries;
    int32_t *gt;
};

static uint64_t rss_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long size = 0, res = 0;
    if (f) {
        if (fscanf(f, "%lu %lu", &size, &res) != 2)
            res = 0;
        fclose(f);
    }
    return (uint64_t)res * (uint64_t)sysconf(_SC_PAGESIZE);
}

/* ------------------------------------------------------------------ gen */

static uint64_t rng_s;
static uint64_t rng_next(void)
{
    uint64_t x = (rng_s += 0x9e3779b97f4a7c15ULL);
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}
static double rng_unif(void)
{
    return (double)(rng_next() >> 11) * (1.0 / 9007199254740992.0);
}
static double rng_gauss(void)
{
    double u = rng_unif(), v = rng_unif();
    if (u < 1e-300)
        u = 1e-300;
    return sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v);
}

struct gt_arg {
    struct data *d;
    uint32_t from, to;
};

static void *gt_worker(void *p)
{
    struct gt_arg *a = p;
    struct data *d = a->d;
    for (uint32_t q = a->from; q < a->to; q++) {
        float best[K];
        int32_t idx[K];
        int nb = 0;
        const float *qv = d->queries + (size_t)q * d->dims;
        for (uint32_t i = 0; i < d->n; i++) {
            float dist = vec_l2_sq(qv, d->base + (size_t)i * d->dims, d->dims);
            if (nb == K && dist >= best[K - 1])
                continue;
            int j = nb < K ? nb++ : K - 1;
            while (j > 0 && best[j - 1] > dist) {
                best[j] = best[j - 1];
                idx[j] = idx[j - 1];
                j--;
            }
            best[j] = dist;
            idx[j] = (int32_t)i;
        }
        memcpy(d->gt + (size_t)q * K, idx, sizeof idx);
    }
    return NULL;
}

static int cmd_gen(const char *out, uint32_t n, uint32_t dims, uint32_t nq, uint32_t clusters,
                   double sigma, int threads)
{
    rng_s = 42;
    struct data d = {n, dims, nq, K, NULL, NULL, NULL};
    float *c = malloc((size_t)clusters * dims * sizeof(float));
    for (size_t i = 0; i < (size_t)clusters * dims; i++)
        c[i] = (float)(rng_unif() * 2 - 1);
    size_t total = (size_t)(n + nq) * dims;
    float *all = malloc(total * sizeof(float));
    for (size_t i = 0; i < (size_t)n + nq; i++) {
        size_t k = rng_next() % clusters;
        for (size_t j = 0; j < dims; j++)
            all[i * dims + j] = c[k * dims + j] + (float)(rng_gauss() * sigma);
    }
    d.base = all;
    d.queries = all + (size_t)n * dims;
    d.gt = malloc((size_t)nq * K * sizeof(int32_t));
    pthread_t th[64];
    struct gt_arg args[64];
    for (int t = 0; t < threads; t++) {
        args[t] = (struct gt_arg){&d, nq * (uint32_t)t / (uint32_t)threads,
                                  nq * (uint32_t)(t + 1) / (uint32_t)threads};
        pthread_create(&th[t], NULL, gt_worker, &args[t]);
    }
    for (int t = 0; t < threads; t++)
        pthread_join(th[t], NULL);
    FILE *f = fopen(out, "wb");
    if (!f) {
        perror(out);
        return 1;
    }
    uint32_t hdr[5] = {1, n, dims, nq, K};
    fwrite("NKVB", 1, 4, f);
    fwrite(hdr, 4, 5, f);
    fwrite(all, sizeof(float), total, f);
    fwrite(d.gt, sizeof(int32_t), (size_t)nq * K, f);
    fclose(f);
    fprintf(stderr, "wrote %s: %u vectors of %u dimensions, %u queries with exact top-%d\n", out,
            n, dims, nq, K);
    free(c);
    free(all);
    free(d.gt);
    return 0;
}

static int load(const char *path, struct data *d)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        return 1;
    }
    char magic[4];
    uint32_t hdr[5];
    if (fread(magic, 1, 4, f) != 4 || memcmp(magic, "NKVB", 4) || fread(hdr, 4, 5, f) != 5 ||
        hdr[0] != 1) {
        fprintf(stderr, "%s: not a bench_vector data file\n", path);
        fclose(f);
        return 1;
    }
    d->n = hdr[1];
    d->dims = hdr[2];
    d->nq = hdr[3];
    d->k = hdr[4];
    d->base = malloc((size_t)d->n * d->dims * sizeof(float));
    d->queries = malloc((size_t)d->nq * d->dims * sizeof(float));
    d->gt = malloc((size_t)d->nq * d->k * sizeof(int32_t));
    size_t ok = fread(d->base, sizeof(float), (size_t)d->n * d->dims, f);
    ok += fread(d->queries, sizeof(float), (size_t)d->nq * d->dims, f);
    ok += fread(d->gt, sizeof(int32_t), (size_t)d->nq * d->k, f);
    fclose(f);
    if (ok != (size_t)d->n * d->dims + (size_t)d->nq * d->dims + (size_t)d->nq * d->k) {
        fprintf(stderr, "%s: truncated\n", path);
        return 1;
    }
    return 0;
}

/* ------------------------------------------------------------------ run */

struct search_arg {
    struct vec_index *ix;
    const struct data *d;
    uint32_t ef, from, to;
    uint32_t hits;
};

static void *search_worker(void *p)
{
    struct search_arg *a = p;
    struct vec_results r;
    vec_results_init(&r);
    a->hits = 0;
    for (uint32_t q = a->from; q < a->to; q++) {
        nk_status s = vec_index_search(a->ix, a->d->queries + (size_t)q * a->d->dims, K, a->ef,
                                       false, &r);
        NK_ASSERT(nk_ok(s));
        for (uint32_t i = 0; i < r.n; i++) {
            int32_t id = (int32_t)strtol(r.m[i].id, NULL, 10);
            for (uint32_t j = 0; j < K; j++)
                if (a->d->gt[(size_t)q * a->d->k + j] == id) {
                    a->hits++;
                    break;
                }
        }
    }
    vec_results_free(&r);
    return NULL;
}

static double cpu_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* queries/s over all queries with `threads` threads; best of `passes`;
 * *cpu_qps: queries per second of process CPU time (steadier on a shared
 * machine) */
static double measure(struct vec_index *ix, const struct data *d, uint32_t ef, int threads,
                      int passes, double *recall, double *cpu_qps)
{
    double best = 0;
    *cpu_qps = 0;
    for (int p = 0; p < passes; p++) {
        pthread_t th[64];
        struct search_arg args[64];
        uint64_t t0 = nk_mono_ns();
        double c0 = cpu_seconds();
        for (int t = 0; t < threads; t++) {
            args[t] = (struct search_arg){ix, d, ef, d->nq * (uint32_t)t / (uint32_t)threads,
                                          d->nq * (uint32_t)(t + 1) / (uint32_t)threads, 0};
            pthread_create(&th[t], NULL, search_worker, &args[t]);
        }
        uint32_t hits = 0;
        for (int t = 0; t < threads; t++) {
            pthread_join(th[t], NULL);
            hits += args[t].hits;
        }
        double secs = (double)(nk_mono_ns() - t0) / 1e9;
        double cq = d->nq / (cpu_seconds() - c0);
        if (cq > *cpu_qps)
            *cpu_qps = cq;
        double qps = d->nq / secs;
        if (qps > best)
            best = qps;
        *recall = (double)hits / ((double)d->nq * K);
    }
    return best;
}

static int cmd_run(const char *path, int threads, uint32_t m, uint32_t efc, const char *efs,
                   bool flat, int passes)
{
    struct data d;
    if (load(path, &d))
        return 1;
    const char *lib = flat ? "norikv-flat" : "norikv-hnsw";
    struct vec_index_options o;
    vec_index_options_default(&o);
    o.type = flat ? VEC_INDEX_FLAT : VEC_INDEX_HNSW;
    o.metric = VEC_METRIC_L2;
    o.dims = d.dims;
    o.m = m;
    o.ef_construction = efc;
    o.max_bytes = VEC_MAX_MAX_BYTES;
    struct vec_index *ix;
    nk_status s = vec_index_create(&o, &ix);
    NK_ASSERT(nk_ok(s));
    uint64_t rss0 = rss_bytes();
    uint64_t t0 = nk_mono_ns();
    char id[16];
    for (uint32_t i = 0; i < d.n; i++) {
        bool rep;
        int n = snprintf(id, sizeof id, "%u", i);
        s = vec_index_insert(ix, nk_slice_make(id, (size_t)n), d.base + (size_t)i * d.dims, &rep);
        NK_ASSERT(nk_ok(s));
    }
    double build = (double)(nk_mono_ns() - t0) / 1e9;
    uint64_t rss = rss_bytes() - rss0;
    fprintf(stderr, "%s: built %u x %u in %.1f s (kernel %s), %.1f MiB allocated, %.1f MiB RSS\n",
            lib, d.n, d.dims, build, vec_kernel_name(),
            (double)vec_index_allocated(ix) / 1048576.0, (double)rss / 1048576.0);
    char buf[256];
    snprintf(buf, sizeof buf, "%s", flat ? "0" : efs);
    for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
        uint32_t ef = (uint32_t)atoi(tok);
        double r1, rn, c1, cn;
        double q1 = measure(ix, &d, ef, 1, passes, &r1, &c1);
        double qn = measure(ix, &d, ef, threads, passes, &rn, &cn);
        printf("{\"lib\":\"%s\",\"n\":%u,\"dims\":%u,\"m\":%u,\"efc\":%u,\"ef\":%u,"
               "\"build_s\":%.3f,\"build_threads\":1,\"mem_bytes\":%llu,\"rss_bytes\":%llu,"
               "\"recall\":%.4f,\"qps_1\":%.1f,\"qps_all\":%.1f,\"cpu_qps\":%.1f,"
               "\"threads\":%d}\n",
               lib, d.n, d.dims, m, efc, ef, build,
               (unsigned long long)vec_index_allocated(ix), (unsigned long long)rss, r1, q1, qn,
               c1, threads);
        fflush(stdout);
    }
    vec_index_destroy(ix);
    free(d.base);
    free(d.queries);
    free(d.gt);
    return 0;
}

static int cmd_rebuild(const char *path, const char *dir, bool flat)
{
    struct data d;
    if (load(path, &d))
        return 1;
    nk_status s = nk_remove_tree(dir);
    nk_status_free(&s);
    struct lsm_options lo;
    lsm_options_default(&lo);
    struct lsm_db *db;
    s = lsm_open(dir, &lo, &db);
    if (!nk_ok(s)) {
        fprintf(stderr, "%s: %s\n", dir, nk_status_msg(s));
        return 1;
    }
    struct vec_store *vs;
    NK_ASSERT(nk_ok(vec_store_open(db, NULL, &vs)));
    uint64_t ts = nk_wall_ms(), index = 1;
    struct vec_cmd c = {.op = VEC_OP_CREATE_INDEX, .timestamp_ms = ts, .ns = nk_slice_str("bench")};
    vec_index_options_default(&c.opt);
    c.opt.dims = d.dims;
    c.opt.type = flat ? VEC_INDEX_FLAT : VEC_INDEX_HNSW;
    c.opt.max_bytes = VEC_MAX_MAX_BYTES;
    struct nk_buf b;
    nk_buf_init(&b);
    struct vec_result r;
    vec_cmd_encode(&c, &b);
    NK_ASSERT(nk_ok(vec_apply(vs, 1, 1, index++, 0, b.data, b.len, &r)) && r.created);
    uint64_t t0 = nk_mono_ns();
    char id[16];
    for (uint32_t i = 0; i < d.n; i++) {
        int n = snprintf(id, sizeof id, "%08u", i);
        struct vec_cmd ins = {.op = VEC_OP_INSERT, .timestamp_ms = ts, .ns = nk_slice_str("bench"),
                              .id = nk_slice_make(id, (size_t)n),
                              .vector = (const uint8_t *)(d.base + (size_t)i * d.dims),
                              .dims = d.dims};
        nk_buf_clear(&b);
        vec_cmd_encode(&ins, &b);
        NK_ASSERT(nk_ok(vec_apply(vs, 1, 1, index++, 0, b.data, b.len, &r)) && r.code == 0);
    }
    double apply_s = (double)(nk_mono_ns() - t0) / 1e9;
    vec_store_close(vs);
    lsm_close(db);
    NK_ASSERT(nk_ok(lsm_open(dir, &lo, &db)));
    NK_ASSERT(nk_ok(vec_store_open(db, NULL, &vs)));
    t0 = nk_mono_ns();
    s = vec_store_load_shard(vs, 1);
    NK_ASSERT(nk_ok(s));
    double load_s = (double)(nk_mono_ns() - t0) / 1e9;
    uint64_t count = 0;
    bool found;
    NK_ASSERT(nk_ok(vec_index_info(vs, 1, nk_slice_str("bench"), NULL, &count, NULL, &found)));
    printf("{\"rebuild\":\"%s\",\"n\":%u,\"dims\":%u,\"apply_s\":%.2f,\"apply_per_s\":%.0f,"
           "\"load_s\":%.2f,\"loaded\":%llu}\n",
           flat ? "flat" : "hnsw", d.n, d.dims, apply_s, d.n / apply_s, load_s,
           (unsigned long long)count);
    vec_store_close(vs);
    lsm_close(db);
    nk_buf_free(&b);
    s = nk_remove_tree(dir);
    nk_status_free(&s);
    free(d.base);
    free(d.queries);
    free(d.gt);
    return 0;
}

static const char *arg(int argc, char **argv, const char *name, const char *def)
{
    for (int i = 2; i + 1 < argc; i++)
        if (!strcmp(argv[i], name))
            return argv[i + 1];
    return def;
}

static bool flag(int argc, char **argv, const char *name)
{
    for (int i = 2; i < argc; i++)
        if (!strcmp(argv[i], name))
            return true;
    return false;
}

int main(int argc, char **argv)
{
    int ncpu = (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (argc >= 2 && !strcmp(argv[1], "gen")) {
        const char *out = arg(argc, argv, "--out", NULL);
        if (!out) {
            fprintf(stderr, "gen needs --out FILE\n");
            return 2;
        }
        return cmd_gen(out, (uint32_t)atoi(arg(argc, argv, "--n", "100000")),
                       (uint32_t)atoi(arg(argc, argv, "--dims", "128")),
                       (uint32_t)atoi(arg(argc, argv, "--queries", "1000")),
                       (uint32_t)atoi(arg(argc, argv, "--clusters", "100")),
                       atof(arg(argc, argv, "--sigma", "0.5")), ncpu);
    }
    if (argc >= 2 && !strcmp(argv[1], "run")) {
        const char *data = arg(argc, argv, "--data", NULL);
        if (!data) {
            fprintf(stderr, "run needs --data FILE\n");
            return 2;
        }
        int threads = atoi(arg(argc, argv, "--threads", "0"));
        return cmd_run(data, threads > 0 ? threads : ncpu,
                       (uint32_t)atoi(arg(argc, argv, "--m", "16")),
                       (uint32_t)atoi(arg(argc, argv, "--efc", "200")),
                       arg(argc, argv, "--ef", "10,16,24,32,48,64,96,128,192,256,384,512"),
                       flag(argc, argv, "--flat"), atoi(arg(argc, argv, "--passes", "2")));
    }
    if (argc >= 2 && !strcmp(argv[1], "rebuild")) {
        const char *data = arg(argc, argv, "--data", NULL), *dir = arg(argc, argv, "--dir", NULL);
        if (!data || !dir) {
            fprintf(stderr, "rebuild needs --data FILE --dir DIR\n");
            return 2;
        }
        return cmd_rebuild(data, dir, flag(argc, argv, "--flat"));
    }
    fprintf(stderr, "usage: bench_vector gen --out FILE [--n N] [--dims D] [--queries Q]\n"
                    "       bench_vector run --data FILE [--threads T] [--flat] [--ef LIST]\n");
    return 2;
}
