/*
 * fuzz_api_vector.c: arbitrary bytes as the request of every norikv.v1.Vector
 * method, through the server's own path: rpc/'s size check and dispatch
 * (rpc_server_call_local, no network), api/vector.c's bounded decoding and
 * limits, a real node (ephemeral, temporary directory) that applies the
 * vector commands and serves searches, and the response encoding.
 *
 * Input: byte 0 picks the method, byte 1 flags (bit 0: a deadline that has
 * already passed), the rest is the request body. The node starts with
 * index "f" (4 dimensions, HNSW, Euclidean) so that valid mutations reach
 * apply. Checked: every call ends exactly once within 30 s; an OK reply
 * decodes as the method's response type (a search's matches sorted by
 * distance, at most k of them); every error carries a message; an insert
 * answered OK without an idempotency key reads back (linearizable) with its
 * exact values. Sanitizers check the rest.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "api/api.h"
#include "api/api_decode.h"
#include "norikv/v1/norikv.pb-c.h"
#include "rpc/rpc.h"

static const char *const METHODS[] = {
    "/norikv.v1.Vector/CreateIndex", "/norikv.v1.Vector/DropIndex", "/norikv.v1.Vector/Insert",
    "/norikv.v1.Vector/Delete",      "/norikv.v1.Vector/Search",    "/norikv.v1.Vector/Get",
};
enum { M_CREATE, M_DROP, M_INSERT, M_DELETE, M_SEARCH, M_GET, M_COUNT };

static struct node *g_node;
static struct api *g_api;
static struct rpc_server *g_rpc;
static char g_dir[512];
static unsigned long g_count[M_COUNT][17];

static void die(const char *what, nk_status *s)
{
    fprintf(stderr, "fuzz_api_vector: %s: %s\n", what, nk_status_msg(*s));
    abort();
}

static void teardown(void)
{
    if (getenv("NK_FUZZ_STATS"))
        for (int m = 0; m < M_COUNT; m++)
            for (int c = 0; c < 17; c++)
                if (g_count[m][c])
                    fprintf(stderr, "%-32s %-20s %lu\n", METHODS[m], nk_code_name((enum nk_code)c),
                            g_count[m][c]);
    rpc_server_shutdown(g_rpc, 1000);
    api_shutdown(g_api);
    node_close(g_node);
    rpc_server_destroy(g_rpc);
    api_free(g_api);
    nk_status s = nk_remove_tree(g_dir);
    nk_status_free(&s);
}

struct outcome {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int method;
    bool done;
    enum nk_code code;
    uint32_t k;      /* M_SEARCH: the request's k */
    float got[8];    /* M_GET: the first values found */
    size_t n_got;
    bool found;
};

static void on_event(void *ctx, const struct rpc_local_event *ev)
{
    struct outcome *o = ctx;
    NK_ASSERT(ev->final); /* every Vector method is unary */
    if (ev->code != NK_CODE_OK && ev->code != NK_CANCELLED)
        NK_ASSERT(ev->msg && *ev->msg);
    if (ev->code == NK_CODE_OK) {
        ProtobufCMessage *r = NULL;
        switch (o->method) {
        case M_CREATE:
            r = (ProtobufCMessage *)norikv__v1__create_vector_index_response__unpack(NULL, ev->len,
                                                                                    ev->data);
            break;
        case M_DROP:
            r = (ProtobufCMessage *)norikv__v1__drop_vector_index_response__unpack(NULL, ev->len,
                                                                                  ev->data);
            break;
        case M_INSERT: {
            Norikv__V1__VectorInsertResponse *p =
                norikv__v1__vector_insert_response__unpack(NULL, ev->len, ev->data);
            NK_ASSERT(p && p->inserted && p->version && p->version->index >= 1);
            r = &p->base;
            break;
        }
        case M_DELETE:
            r = (ProtobufCMessage *)norikv__v1__vector_delete_response__unpack(NULL, ev->len,
                                                                              ev->data);
            break;
        case M_SEARCH: {
            Norikv__V1__VectorSearchResponse *p =
                norikv__v1__vector_search_response__unpack(NULL, ev->len, ev->data);
            NK_ASSERT(p && p->n_matches <= o->k);
            for (size_t i = 1; i < p->n_matches; i++)
                NK_ASSERT(p->matches[i - 1]->distance <= p->matches[i]->distance);
            r = &p->base;
            break;
        }
        case M_GET: {
            Norikv__V1__VectorGetResponse *p =
                norikv__v1__vector_get_response__unpack(NULL, ev->len, ev->data);
            NK_ASSERT(p && (p->found || p->n_vector == 0));
            o->found = p->found;
            o->n_got = p->n_vector;
            if (p->n_vector)
                memcpy(o->got, p->vector, (p->n_vector < 8 ? p->n_vector : 8) * sizeof(float));
            r = &p->base;
            break;
        }
        }
        NK_ASSERT(r);
        protobuf_c_message_free_unpacked(r, NULL);
    }
    pthread_mutex_lock(&o->mu);
    o->done = true;
    o->code = ev->code;
    pthread_cond_signal(&o->cv);
    pthread_mutex_unlock(&o->mu);
}

static enum nk_code run(int method, const uint8_t *body, size_t len, uint64_t deadline,
                        struct outcome *o, uint32_t k)
{
    memset(o, 0, sizeof(*o));
    pthread_mutex_init(&o->mu, NULL);
    pthread_cond_init(&o->cv, NULL);
    o->method = method;
    o->k = k;
    rpc_server_call_local(g_rpc, METHODS[method], nk_slice_make(body, len), deadline, on_event, o);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += 30;
    pthread_mutex_lock(&o->mu);
    while (!o->done) {
        if (pthread_cond_timedwait(&o->cv, &o->mu, &ts) != 0 && !o->done) {
            fprintf(stderr, "fuzz_api_vector: %s never completed\n", METHODS[method]);
            abort();
        }
    }
    pthread_mutex_unlock(&o->mu);
    if ((unsigned)o->code < 17)
        g_count[method][o->code]++;
    pthread_mutex_destroy(&o->mu);
    pthread_cond_destroy(&o->cv);
    return o->code;
}

static void create_f(void)
{
    Norikv__V1__CreateVectorIndexRequest c = NORIKV__V1__CREATE_VECTOR_INDEX_REQUEST__INIT;
    c.namespace_ = "f";
    c.dimensions = 4;
    c.distance = NORIKV__V1__DISTANCE_FUNCTION__DISTANCE_FUNCTION_EUCLIDEAN;
    c.index_type = NORIKV__V1__VECTOR_INDEX_TYPE__VECTOR_INDEX_TYPE_HNSW;
    uint8_t buf[64];
    size_t n = norikv__v1__create_vector_index_request__pack(&c, buf);
    struct outcome o;
    enum nk_code code = run(M_CREATE, buf, n, UINT64_MAX, &o, 0);
    /* ALREADY_EXISTS: an input re-created "f" with other parameters */
    NK_ASSERT(code == NK_CODE_OK || code == NK_ALREADY_EXISTS);
}

static void setup(void)
{
    const char *base = getenv("NK_TEST_TMPDIR");
    if (!base || !*base)
        base = "/tmp";
    mkdir(base, 0755); /* may exist */
    snprintf(g_dir, sizeof g_dir, "%s/fuzz_api_vector.XXXXXX", base);
    if (!mkdtemp(g_dir)) {
        perror("mkdtemp");
        abort();
    }
    nk_log_set_level(NK_LOG_ERROR);
    nk_status s;
    struct node_options no;
    node_options_default(&no);
    no.node_name = "fuzz-node";
    no.client_addr = "127.0.0.1:1";
    no.data_dir = g_dir;
    no.ephemeral = true;
    no.total_shards = 16;
    no.tick_ms = 20;
    no.default_deadline_ms = 10000;
    s = node_open(&no, &g_node);
    if (!nk_ok(s))
        die("node_open", &s);
    struct api_options ao = {.node = g_node, .node_id = "fuzz-node"};
    s = api_new(&ao, &g_api);
    if (!nk_ok(s))
        die("api_new", &s);
    struct rpc_server_options ro = {.addr = "127.0.0.1:0"};
    s = rpc_server_create(&ro, &g_rpc);
    if (!nk_ok(s))
        die("rpc_server_create", &s);
    s = api_register(g_api, g_rpc);
    if (!nk_ok(s))
        die("api_register", &s);
    for (int i = 0;; i++) {
        struct node_stats st;
        node_get_stats(g_node, &st);
        if (st.shards_led == st.total_shards)
            break;
        if (i > 3000) {
            fprintf(stderr, "fuzz_api_vector: shards have no leader after 30 s\n");
            abort();
        }
        usleep(10000);
    }
    create_f();
    atexit(teardown);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bool ready;
    if (!ready) {
        setup();
        ready = true;
    }
    if (size < 2)
        return 0;
    int method = data[0] % M_COUNT;
    uint64_t deadline = (data[1] & 1) ? nk_mono_ns() - 1 : UINT64_MAX;
    struct nk_slice body = nk_slice_make(data + 2, size - 2);
    uint32_t k = 0;
    if (method == M_SEARCH) {
        Norikv__V1__VectorSearchRequest *q =
            norikv__v1__vector_search_request__unpack(NULL, body.len, body.data);
        if (q) {
            k = q->k;
            norikv__v1__vector_search_request__free_unpacked(q, NULL);
        }
    }
    struct outcome o;
    enum nk_code code = run(method, body.data, body.len, deadline, &o, k);
    if (method == M_DROP && code == NK_CODE_OK)
        create_f(); /* "f" comes back for the next inputs */
    if (method != M_INSERT || code != NK_CODE_OK)
        return 0;
    /* an acknowledged insert reads back at once with its values (not a
     * retry with an idempotency key, which answers the first result) */
    Norikv__V1__VectorInsertRequest *p =
        norikv__v1__vector_insert_request__unpack(NULL, body.len, body.data);
    NK_ASSERT(p);
    struct nk_slice idem, ns, id;
    const ProtobufCMessageDescriptor *d = &norikv__v1__vector_insert_request__descriptor;
    api_wire_field(d, body, "idempotency_key", &idem);
    api_wire_field(d, body, "namespace", &ns);
    api_wire_field(d, body, "id", &id);
    if (idem.len == 0) {
        Norikv__V1__VectorGetRequest g = NORIKV__V1__VECTOR_GET_REQUEST__INIT;
        char *nsz = nk_malloc(ns.len + 1), *idz = nk_malloc(id.len + 1);
        memcpy(nsz, ns.data, ns.len);
        nsz[ns.len] = 0;
        memcpy(idz, id.data, id.len);
        idz[id.len] = 0;
        g.namespace_ = nsz;
        g.id = idz;
        g.consistency = "linearizable";
        size_t gl = norikv__v1__vector_get_request__get_packed_size(&g);
        uint8_t *gb = nk_malloc(gl ? gl : 1);
        norikv__v1__vector_get_request__pack(&g, gb);
        struct outcome go;
        enum nk_code gc = run(M_GET, gb, gl, UINT64_MAX, &go, 0);
        /* namespaces with a NUL inside cannot be named through a C string:
         * then the get may name another (missing) namespace */
        if (!memchr(ns.data, 0, ns.len)) {
            NK_ASSERT(gc == NK_CODE_OK && go.found && go.n_got == p->n_vector);
            NK_ASSERT(p->n_vector && !memcmp(go.got, p->vector,
                                             (p->n_vector < 8 ? p->n_vector : 8) * sizeof(float)));
        }
        free(gb);
        free(nsz);
        free(idz);
    }
    norikv__v1__vector_insert_request__free_unpacked(p, NULL);
    return 0;
}

/* Valid requests to start from: the driver mutates these. */
size_t LLVMFuzzerSeedCorpus(const uint8_t ***out, const size_t **lens)
{
    static const uint8_t *seeds[8];
    static size_t sl[8];
    static uint8_t bufs[8][256];
    size_t n = 0;
#define SEED(m, type, msg)                                                                         \
    do {                                                                                           \
        bufs[n][0] = (m);                                                                          \
        bufs[n][1] = 0;                                                                            \
        sl[n] = 2 + norikv__v1__##type##__pack(&(msg), bufs[n] + 2);                              \
        seeds[n] = bufs[n];                                                                        \
        n++;                                                                                       \
    } while (0)
    static float v[4] = {0.5f, -1.0f, 2.0f, 0.0f};
    Norikv__V1__CreateVectorIndexRequest c = NORIKV__V1__CREATE_VECTOR_INDEX_REQUEST__INIT;
    c.namespace_ = "g";
    c.dimensions = 4;
    c.distance = NORIKV__V1__DISTANCE_FUNCTION__DISTANCE_FUNCTION_COSINE;
    c.index_type = NORIKV__V1__VECTOR_INDEX_TYPE__VECTOR_INDEX_TYPE_BRUTE_FORCE;
    c.idempotency_key = "idem";
    SEED(M_CREATE, create_vector_index_request, c);
    Norikv__V1__DropVectorIndexRequest dr = NORIKV__V1__DROP_VECTOR_INDEX_REQUEST__INIT;
    dr.namespace_ = "g";
    SEED(M_DROP, drop_vector_index_request, dr);
    Norikv__V1__VectorInsertRequest in = NORIKV__V1__VECTOR_INSERT_REQUEST__INIT;
    in.namespace_ = "f";
    in.id = "doc-1";
    in.n_vector = 4;
    in.vector = v;
    SEED(M_INSERT, vector_insert_request, in);
    in.idempotency_key = "i2";
    SEED(M_INSERT, vector_insert_request, in);
    Norikv__V1__VectorDeleteRequest de = NORIKV__V1__VECTOR_DELETE_REQUEST__INIT;
    de.namespace_ = "f";
    de.id = "doc-1";
    SEED(M_DELETE, vector_delete_request, de);
    Norikv__V1__VectorSearchRequest se = NORIKV__V1__VECTOR_SEARCH_REQUEST__INIT;
    se.namespace_ = "f";
    se.n_query = 4;
    se.query = v;
    se.k = 3;
    se.include_vectors = true;
    se.consistency = "stale_ok";
    SEED(M_SEARCH, vector_search_request, se);
    Norikv__V1__VectorGetRequest ge = NORIKV__V1__VECTOR_GET_REQUEST__INIT;
    ge.namespace_ = "f";
    ge.id = "doc-1";
    SEED(M_GET, vector_get_request, ge);
#undef SEED
    *out = seeds;
    *lens = sl;
    return n;
}
