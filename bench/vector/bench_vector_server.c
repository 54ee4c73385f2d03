/*
 * bench_vector_server: end-to-end vector search through norikv-server's
 * gRPC Vector service, against the same index searched in-process — what
 * the server path (gRPC, decoding, the read barrier, encoding) costs on top
 * of the index itself. Run by run_server.sh (which starts and stops the
 * server); never part of `make test`.
 *
 *   bench_vector_server --data FILE --target HOST:PORT [--clients C]
 *       [--insert-clients I] [--seconds S]
 *
 * FILE is a `bench_vector gen` data file (vectors, queries, exact top-10).
 * 1. CreateIndex "bench" (HNSW, L2, the file's dimensions, server defaults:
 *    M 16, ef_construction 200, ef_search 64), then Insert every vector with
 *    I client threads (one call each, each a Raft write): inserts/s.
 * 2. Search for S seconds with C closed-loop client threads (k = 10, lease
 *    reads, the file's queries round-robin): QPS, p50/p99/p999 latency as the
 *    client sees it, the server's own search_time_us (p50), recall@10
 *    against the exact top-10.
 * 3. The same vectors inserted into an in-process vec_index with the same
 *    options (one thread, as apply does), searched for S seconds with 1 and
 *    with C threads at the same ef: QPS, p50/p99, recall@10.
 * Prints both and the ratios.
 */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "norikv/v1/norikv.pb-c.h"
#include "rpc/rpc_client.h"
#include "util/util.h"
#include "vector/vector.h"

#define K 10
#define MAX_LAT (1u << 22) /* latencies kept per thread */

struct data {
    uint32_t n, dims, nq, k;
    float *base, *queries;
    int32_t *gt;
};

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
        hdr[0] != 1 || hdr[4] != K) {
        fprintf(stderr, "%s: not a bench_vector data file\n", path);
        fclose(f);
        return 1;
    }
    d->n = hdr[1];
    d->dims = hdr[2];
    d->nq = hdr[3];
    d->k = hdr[4];
    size_t nb = (size_t)d->n * d->dims, nqv = (size_t)d->nq * d->dims, ng = (size_t)d->nq * K;
    d->base = malloc(nb * sizeof(float));
    d->queries = malloc(nqv * sizeof(float));
    d->gt = malloc(ng * sizeof(int32_t));
    bool ok = fread(d->base, sizeof(float), nb, f) == nb &&
              fread(d->queries, sizeof(float), nqv, f) == nqv &&
              fread(d->gt, sizeof(int32_t), ng, f) == ng;
    fclose(f);
    if (!ok)
        fprintf(stderr, "%s: truncated\n", path);
    return ok ? 0 : 1;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static double pct(uint64_t *v, size_t n, double q)
{
    if (!n)
        return 0;
    size_t i = (size_t)(q * (double)(n - 1));
    return (double)v[i] / 1000.0; /* us */
}

/* ------------------------------------------------------------- workers */

struct shared {
    const struct data *d;
    struct rpc_client *rc;
    struct vec_index *ix; /* in-process phase */
    _Atomic uint32_t next;
    _Atomic bool stop;
    _Atomic uint64_t errors;
    char first_error[256];
    pthread_mutex_t mu;
};

struct worker {
    struct shared *s;
    int id;
    uint64_t *lat, *srv; /* ns, and the server's search_time_us */
    size_t n, nsrv;
    uint64_t hits, total;
};

static void note_error(struct shared *s, const char *what, const char *msg)
{
    if (atomic_fetch_add(&s->errors, 1) == 0) {
        pthread_mutex_lock(&s->mu);
        snprintf(s->first_error, sizeof s->first_error, "%s: %s", what, msg);
        pthread_mutex_unlock(&s->mu);
    }
}

static void *insert_worker(void *p)
{
    struct worker *w = p;
    struct shared *s = w->s;
    const struct data *d = s->d;
    uint8_t *buf = malloc(64 + (size_t)d->dims * 5);
    for (;;) {
        uint32_t i = atomic_fetch_add(&s->next, 1);
        if (i >= d->n)
            break;
        char id[16];
        snprintf(id, sizeof id, "%u", i);
        Norikv__V1__VectorInsertRequest r = NORIKV__V1__VECTOR_INSERT_REQUEST__INIT;
        r.namespace_ = "bench";
        r.id = id;
        r.n_vector = d->dims;
        r.vector = d->base + (size_t)i * d->dims;
        size_t len = norikv__v1__vector_insert_request__pack(&r, buf);
        struct rpc_client_result res;
        rpc_client_unary(s->rc, "/norikv.v1.Vector/Insert", buf, len, 30000, &res);
        if (res.code != NK_CODE_OK)
            note_error(s, "insert", res.message);
        rpc_client_result_free(&res);
    }
    free(buf);
    return NULL;
}

static void recall_of(struct worker *w, const struct data *d, uint32_t q, const char *const *ids,
                      const uint32_t *idn, size_t n)
{
    const int32_t *gt = d->gt + (size_t)q * K;
    for (size_t i = 0; i < n; i++) {
        char tmp[16];
        size_t l = idn[i] < sizeof tmp - 1 ? idn[i] : sizeof tmp - 1;
        memcpy(tmp, ids[i], l);
        tmp[l] = 0;
        int32_t got = atoi(tmp);
        for (int j = 0; j < K; j++)
            if (gt[j] == got) {
                w->hits++;
                break;
            }
    }
    w->total += K;
}

static void *search_worker(void *p)
{
    struct worker *w = p;
    struct shared *s = w->s;
    const struct data *d = s->d;
    uint8_t *buf = malloc(64 + (size_t)d->dims * 5);
    uint32_t q = (uint32_t)w->id * 7919u;
    struct vec_results vr;
    vec_results_init(&vr);
    while (!atomic_load(&s->stop)) {
        q = (q + 1) % d->nq;
        const float *qv = d->queries + (size_t)q * d->dims;
        uint64_t t0 = nk_mono_ns();
        if (s->rc) {
            Norikv__V1__VectorSearchRequest r = NORIKV__V1__VECTOR_SEARCH_REQUEST__INIT;
            r.namespace_ = "bench";
            r.n_query = d->dims;
            r.query = (float *)qv;
            r.k = K;
            size_t len = norikv__v1__vector_search_request__pack(&r, buf);
            struct rpc_client_result res;
            rpc_client_unary(s->rc, "/norikv.v1.Vector/Search", buf, len, 10000, &res);
            uint64_t t1 = nk_mono_ns();
            if (res.code != NK_CODE_OK) {
                note_error(s, "search", res.message);
            } else {
                Norikv__V1__VectorSearchResponse *sr =
                    norikv__v1__vector_search_response__unpack(NULL, res.body.len, res.body.data);
                if (sr) {
                    const char *ids[K];
                    uint32_t idn[K];
                    size_t n = sr->n_matches < K ? sr->n_matches : K;
                    for (size_t i = 0; i < n; i++) {
                        ids[i] = sr->matches[i]->id;
                        idn[i] = (uint32_t)strlen(sr->matches[i]->id);
                    }
                    recall_of(w, d, q, ids, idn, n);
                    if (w->nsrv < MAX_LAT)
                        w->srv[w->nsrv++] = sr->search_time_us * 1000;
                    norikv__v1__vector_search_response__free_unpacked(sr, NULL);
                }
                if (w->n < MAX_LAT)
                    w->lat[w->n++] = t1 - t0;
            }
            rpc_client_result_free(&res);
        } else {
            nk_status st = vec_index_search(s->ix, qv, K, 0, false, &vr);
            uint64_t t1 = nk_mono_ns();
            NK_ASSERT(nk_ok(st));
            const char *ids[K];
            uint32_t idn[K];
            for (uint32_t i = 0; i < vr.n; i++) {
                ids[i] = vr.m[i].id;
                idn[i] = vr.m[i].id_len;
            }
            recall_of(w, d, q, ids, idn, vr.n);
            if (w->n < MAX_LAT)
                w->lat[w->n++] = t1 - t0;
        }
    }
    vec_results_free(&vr);
    free(buf);
    return NULL;
}

struct phase_result {
    double qps, p50, p99, p999, srv_p50, recall;
    uint64_t ops;
};

static struct phase_result run_search(struct shared *s, int threads, double seconds)
{
    struct worker *w = calloc((size_t)threads, sizeof(*w));
    pthread_t *th = calloc((size_t)threads, sizeof(*th));
    atomic_store(&s->stop, false);
    for (int i = 0; i < threads; i++) {
        w[i] = (struct worker){.s = s, .id = i};
        w[i].lat = malloc(MAX_LAT * sizeof(uint64_t));
        w[i].srv = malloc(MAX_LAT * sizeof(uint64_t));
    }
    uint64_t t0 = nk_mono_ns();
    for (int i = 0; i < threads; i++)
        pthread_create(&th[i], NULL, search_worker, &w[i]);
    nk_sleep_us((uint64_t)(seconds * 1e6));
    atomic_store(&s->stop, true);
    for (int i = 0; i < threads; i++)
        pthread_join(th[i], NULL);
    double el = (double)(nk_mono_ns() - t0) / 1e9;
    size_t n = 0, ns = 0;
    uint64_t hits = 0, total = 0;
    for (int i = 0; i < threads; i++) {
        n += w[i].n;
        ns += w[i].nsrv;
        hits += w[i].hits;
        total += w[i].total;
    }
    uint64_t *all = malloc((n ? n : 1) * sizeof(uint64_t));
    uint64_t *srv = malloc((ns ? ns : 1) * sizeof(uint64_t));
    size_t k = 0, ks = 0;
    for (int i = 0; i < threads; i++) {
        memcpy(all + k, w[i].lat, w[i].n * sizeof(uint64_t));
        k += w[i].n;
        memcpy(srv + ks, w[i].srv, w[i].nsrv * sizeof(uint64_t));
        ks += w[i].nsrv;
        free(w[i].lat);
        free(w[i].srv);
    }
    qsort(all, n, sizeof(uint64_t), cmp_u64);
    qsort(srv, ns, sizeof(uint64_t), cmp_u64);
    struct phase_result r = {.qps = (double)n / el,
                             .p50 = pct(all, n, 0.50),
                             .p99 = pct(all, n, 0.99),
                             .p999 = pct(all, n, 0.999),
                             .srv_p50 = pct(srv, ns, 0.50),
                             .recall = total ? (double)hits / (double)total : 0,
                             .ops = n};
    free(all);
    free(srv);
    free(w);
    free(th);
    return r;
}

int main(int argc, char **argv)
{
    const char *data = NULL, *target = NULL;
    int clients = 8, insert_clients = 16;
    double seconds = 10;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--data"))
            data = argv[i + 1];
        else if (!strcmp(argv[i], "--target"))
            target = argv[i + 1];
        else if (!strcmp(argv[i], "--clients"))
            clients = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--insert-clients"))
            insert_clients = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--seconds"))
            seconds = atof(argv[i + 1]);
    }
    if (!data || !target || clients < 1 || clients > 256 || insert_clients < 1 ||
        insert_clients > 256) {
        fprintf(stderr, "usage: bench_vector_server --data FILE --target HOST:PORT [--clients C] "
                        "[--insert-clients I] [--seconds S]\n");
        return 2;
    }
    struct data d;
    if (load(data, &d))
        return 1;
    struct shared s = {.d = &d};
    pthread_mutex_init(&s.mu, NULL);
    nk_status st = rpc_client_new(target, &s.rc);
    if (!nk_ok(st)) {
        fprintf(stderr, "%s\n", nk_status_msg(st));
        return 1;
    }

    /* 1. create and insert through the server */
    Norikv__V1__CreateVectorIndexRequest cr = NORIKV__V1__CREATE_VECTOR_INDEX_REQUEST__INIT;
    cr.namespace_ = "bench";
    cr.dimensions = d.dims;
    cr.distance = NORIKV__V1__DISTANCE_FUNCTION__DISTANCE_FUNCTION_EUCLIDEAN;
    cr.index_type = NORIKV__V1__VECTOR_INDEX_TYPE__VECTOR_INDEX_TYPE_HNSW;
    uint8_t cb[64];
    size_t cl = norikv__v1__create_vector_index_request__pack(&cr, cb);
    struct rpc_client_result res;
    rpc_client_unary(s.rc, "/norikv.v1.Vector/CreateIndex", cb, cl, 30000, &res);
    if (res.code != NK_CODE_OK) {
        fprintf(stderr, "create: %s\n", res.message);
        return 1;
    }
    rpc_client_result_free(&res);
    uint64_t t0 = nk_mono_ns();
    pthread_t th[256];
    struct worker iw[256];
    for (int i = 0; i < insert_clients; i++) {
        iw[i] = (struct worker){.s = &s, .id = i};
        pthread_create(&th[i], NULL, insert_worker, &iw[i]);
    }
    for (int i = 0; i < insert_clients; i++)
        pthread_join(th[i], NULL);
    double ins_s = (double)(nk_mono_ns() - t0) / 1e9;
    if (atomic_load(&s.errors)) {
        fprintf(stderr, "%llu insert errors; first: %s\n",
                (unsigned long long)atomic_load(&s.errors), s.first_error);
        return 1;
    }
    printf("server insert: %u vectors of %u dims in %.1f s with %d clients: %.0f inserts/s\n",
           d.n, d.dims, ins_s, insert_clients, d.n / ins_s);

    /* 2. search through the server */
    struct phase_result srv = run_search(&s, clients, seconds);
    if (atomic_load(&s.errors))
        fprintf(stderr, "%llu search errors; first: %s\n",
                (unsigned long long)atomic_load(&s.errors), s.first_error);
    rpc_client_free(s.rc);
    s.rc = NULL;

    /* 3. the same index in-process */
    struct vec_index_options o;
    vec_index_options_default(&o);
    o.dims = d.dims;
    NK_ASSERT(nk_ok(vec_index_create(&o, &s.ix)));
    t0 = nk_mono_ns();
    for (uint32_t i = 0; i < d.n; i++) {
        char id[16];
        int l = snprintf(id, sizeof id, "%u", i);
        bool rep;
        NK_ASSERT(nk_ok(vec_index_insert(s.ix, nk_slice_make(id, (size_t)l),
                                         d.base + (size_t)i * d.dims, &rep)));
    }
    double build_s = (double)(nk_mono_ns() - t0) / 1e9;
    struct phase_result one = run_search(&s, 1, seconds);
    struct phase_result many = run_search(&s, clients, seconds);
    vec_index_destroy(s.ix);

    printf("in-process build (1 thread): %.1f s (%.0f inserts/s)\n", build_s, d.n / build_s);
    printf("\n| %u x %u, k = 10, ef 64 | threads | QPS | p50 us | p99 us | p99.9 us | recall@10 "
           "|\n",
           d.n, d.dims);
    printf("|---|---:|---:|---:|---:|---:|---:|\n");
    printf("| server (gRPC, lease reads; server-side search p50 %.0f us) | %d | %.0f | %.0f | "
           "%.0f | %.0f | %.4f |\n",
           srv.srv_p50, clients, srv.qps, srv.p50, srv.p99, srv.p999, srv.recall);
    printf("| in-process vec_index | 1 | %.0f | %.0f | %.0f | %.0f | %.4f |\n", one.qps, one.p50,
           one.p99, one.p999, one.recall);
    printf("| in-process vec_index | %d | %.0f | %.0f | %.0f | %.0f | %.4f |\n", clients,
           many.qps, many.p50, many.p99, many.p999, many.recall);
    printf("\nserver / in-process (%d threads): QPS %.2fx, p50 %.2fx; server inserts/s / "
           "in-process build inserts/s: %.2fx\n",
           clients, srv.qps / many.qps, srv.p50 / many.p50, (d.n / ins_s) / (d.n / build_s));
    return atomic_load(&s.errors) ? 1 : 0;
}
