/*
 * fuzz_api_grpc.c: arbitrary bytes as the request of every norikv.v1
 * method, through the server's own path: rpc/'s size check and method
 * dispatch (rpc_server_call_local, no network), the api's bounded decoding
 * and validation, a real node (ephemeral, in a temporary directory) that
 * applies the writes and serves the reads, and the response encoding.
 *
 * Input: byte 0 picks the method (and an unknown one), byte 1 flags (bit 0:
 * a deadline that has already passed), the rest is the request body.
 * Checked: every call ends exactly once and within 30 s; an OK reply
 * decodes as the method's response type; every error carries a message;
 * stream messages decode as ClusterView; a Put answered OK can be read back
 * at once with its version. Sanitizers check the rest.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api/api.h"
#include "api/api_decode.h"
#include "norikv/v1/norikv.pb-c.h"
#include "rpc/rpc.h"

static const char *const METHODS[] = {
    "/norikv.v1.Kv/Put",          "/norikv.v1.Kv/Get",
    "/norikv.v1.Kv/Delete",       "/norikv.v1.Meta/WatchCluster",
    "/norikv.v1.Admin/TransferShard", "/norikv.v1.Admin/SnapshotShard",
    "/norikv.v1.Vector/Search",   "/norikv.v1.Meta/WatchEvents",
    "/norikv.v1.Kv/Increment",    "/norikv.v1.Kv/Range",
    "/norikv.v1.Kv/Batch",        "/norikv.v1.Kv/Watch",
    "/norikv.v1.Admin/DrainNode", "/norikv.v1.Admin/RemoveNode",
    "/norikv.v1.Admin/GetPlacement",
};
enum {
    M_PUT, M_GET, M_DELETE, M_WATCH, M_TRANSFER, M_SNAPSHOT, M_VECTOR, M_EVENTS, M_UNKNOWN,
    M_RANGE, M_BATCH, M_KVWATCH, M_DRAIN, M_REMOVE, M_PLACEMENT, M_COUNT
};

static struct node *g_node;
static struct api *g_api;
static struct rpc_server *g_rpc;
static char g_dir[512];

static void die(const char *what, nk_status *s)
{
    fprintf(stderr, "fuzz_api_grpc: %s: %s\n", what, nk_status_msg(*s));
    abort();
}

/* outcomes per method, printed at exit with NK_FUZZ_STATS=1 */
static unsigned long g_count[M_COUNT][17];

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

static void setup(void)
{
    const char *base = getenv("NK_TEST_TMPDIR");
    if (!base || !*base)
        base = "/tmp";
    mkdir(base, 0755); /* may exist */
    snprintf(g_dir, sizeof g_dir, "%s/fuzz_api_grpc.XXXXXX", base);
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
            fprintf(stderr, "fuzz_api_grpc: shards have no leader after 30 s\n");
            abort();
        }
        usleep(10000);
    }
    atexit(teardown);
}

struct outcome {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int method;
    bool done;
    enum nk_code code;
    bool has_reply;
    Norikv__V1__Version put_version; /* of a Put's or Get's reply */
    size_t stream_msgs;
};

static void on_event(void *ctx, const struct rpc_local_event *ev)
{
    struct outcome *o = ctx;
    if (!ev->final && o->method == M_KVWATCH) {
        /* the shards it serves, then events (the pump may get some out) */
        Norikv__V1__WatchResponse *w = norikv__v1__watch_response__unpack(NULL, ev->len, ev->data);
        NK_ASSERT(w);
        for (size_t i = 0; i < w->n_shards; i++)
            NK_ASSERT(w->shards[i] < 16);
        norikv__v1__watch_response__free_unpacked(w, NULL);
        return;
    }
    if (!ev->final && o->method == M_EVENTS) {
        /* the event pump may get a message out before the stream closes */
        Norikv__V1__Event *e = norikv__v1__event__unpack(NULL, ev->len, ev->data);
        NK_ASSERT(e && e->seq >= 1 && e->kind && *e->kind);
        norikv__v1__event__free_unpacked(e, NULL);
        return;
    }
    if (!ev->final) {
        NK_ASSERT(o->method == M_WATCH);
        Norikv__V1__ClusterView *v = norikv__v1__cluster_view__unpack(NULL, ev->len, ev->data);
        NK_ASSERT(v && v->n_shards == 16);
        norikv__v1__cluster_view__free_unpacked(v, NULL);
        pthread_mutex_lock(&o->mu);
        o->stream_msgs++;
        pthread_mutex_unlock(&o->mu);
        return;
    }
    if (ev->code != NK_CODE_OK && ev->code != NK_CANCELLED)
        NK_ASSERT(ev->msg && *ev->msg); /* every error says what went wrong */
    ProtobufCMessage *r = NULL;
    Norikv__V1__Version pv = NORIKV__V1__VERSION__INIT;
    if (ev->code == NK_CODE_OK && o->method != M_WATCH && o->method != M_EVENTS &&
        o->method != M_KVWATCH) {
        switch (o->method) {
        case M_PUT: {
            Norikv__V1__PutResponse *p = norikv__v1__put_response__unpack(NULL, ev->len, ev->data);
            NK_ASSERT(p && p->version && p->version->term >= 1 && p->version->index >= 1);
            pv = *p->version;
            r = &p->base;
            break;
        }
        case M_GET: {
            Norikv__V1__GetResponse *g = norikv__v1__get_response__unpack(NULL, ev->len, ev->data);
            NK_ASSERT(g && g->version);
            pv = *g->version;
            r = &g->base;
            break;
        }
        case M_DELETE:
            r = (ProtobufCMessage *)norikv__v1__delete_response__unpack(NULL, ev->len, ev->data);
            break;
        case M_SNAPSHOT:
            r = (ProtobufCMessage *)norikv__v1__shard_info__unpack(NULL, ev->len, ev->data);
            break;
        case M_RANGE: {
            Norikv__V1__RangeResponse *g =
                norikv__v1__range_response__unpack(NULL, ev->len, ev->data);
            NK_ASSERT(g && g->n_revisions == g->n_shards);
            for (size_t i = 1; i < g->n_entries; i++) { /* strictly ascending keys */
                ProtobufCBinaryData a = g->entries[i - 1]->key, b = g->entries[i]->key;
                int c = memcmp(a.data, b.data, a.len < b.len ? a.len : b.len);
                NK_ASSERT(c < 0 || (c == 0 && a.len < b.len));
            }
            r = &g->base;
            break;
        }
        case M_BATCH: {
            Norikv__V1__BatchResponse *g =
                norikv__v1__batch_response__unpack(NULL, ev->len, ev->data);
            NK_ASSERT(g && g->version && g->n_results >= 1);
            r = &g->base;
            break;
        }
        case M_PLACEMENT: {
            Norikv__V1__PlacementResponse *g =
                norikv__v1__placement_response__unpack(NULL, ev->len, ev->data);
            NK_ASSERT(g && g->json && g->json[0] == '{');
            r = &g->base;
            break;
        }
        /* DrainNode and RemoveNode: a one-node cluster refuses both */
        default: NK_ASSERT(!"this method never answers OK");
        }
        NK_ASSERT(r);
        protobuf_c_message_free_unpacked(r, NULL);
    }
    pthread_mutex_lock(&o->mu);
    o->done = true;
    o->code = ev->code;
    o->has_reply = ev->code == NK_CODE_OK;
    o->put_version = pv;
    pthread_cond_signal(&o->cv);
    pthread_mutex_unlock(&o->mu);
}

static enum nk_code run(int method, const uint8_t *body, size_t len, uint64_t deadline,
                        struct outcome *o)
{
    memset(o, 0, sizeof(*o));
    pthread_mutex_init(&o->mu, NULL);
    pthread_cond_init(&o->cv, NULL);
    o->method = method;
    rpc_server_call_local(g_rpc, METHODS[method], nk_slice_make(body, len), deadline, on_event, o);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += 30;
    pthread_mutex_lock(&o->mu);
    while (!o->done) {
        if (pthread_cond_timedwait(&o->cv, &o->mu, &ts) != 0 && !o->done) {
            fprintf(stderr, "fuzz_api_grpc: %s never completed\n", METHODS[method]);
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
    struct outcome o;
    enum nk_code code = run(method, data + 2, size - 2, deadline, &o);
    Norikv__V1__PutRequest *p = NULL;
    if (method == M_PUT && code == NK_CODE_OK)
        p = norikv__v1__put_request__unpack(NULL, size - 2, data + 2);
    /* an acknowledged write reads back at once (linearizable) with its
     * version; not a retry with an idempotency key, which answers the first
     * result even if the key has changed since */
    struct nk_slice idem = {0};
    if (p)
        api_wire_field(&norikv__v1__put_request__descriptor, nk_slice_make(data + 2, size - 2),
                       "idempotency_key", &idem);
    if (p && idem.len == 0) {
        Norikv__V1__GetRequest g = NORIKV__V1__GET_REQUEST__INIT;
        g.key = p->key;
        g.consistency = "linearizable";
        size_t gl = norikv__v1__get_request__get_packed_size(&g);
        uint8_t *gb = nk_malloc(gl ? gl : 1);
        norikv__v1__get_request__pack(&g, gb);
        Norikv__V1__Version want = o.put_version;
        struct outcome go;
        enum nk_code gc = run(M_GET, gb, gl, UINT64_MAX, &go);
        if (!(gc == NK_CODE_OK || (gc == NK_NOT_FOUND && p->ttl_ms > 0)))
            fprintf(stderr, "read-back of an acknowledged put: %s\n", nk_code_name(gc));
        NK_ASSERT(gc == NK_CODE_OK || (gc == NK_NOT_FOUND && p->ttl_ms > 0));
        if (gc == NK_CODE_OK)
            NK_ASSERT(go.put_version.term == want.term && go.put_version.index == want.index);
        free(gb);
    }
    if (p)
        norikv__v1__put_request__free_unpacked(p, NULL);
    return 0;
}

/* Valid requests to start from: the driver mutates these. */
size_t LLVMFuzzerSeedCorpus(const uint8_t ***out, const size_t **lens)
{
    static const uint8_t *seeds[16];
    static size_t sl[16];
    static uint8_t bufs[16][256];
    size_t n = 0;
    Norikv__V1__Version v = NORIKV__V1__VERSION__INIT;
    v.term = 1;
    v.index = 2;
#define SEED(m, flags, type, msg)                                                                  \
    do {                                                                                           \
        bufs[n][0] = (m);                                                                          \
        bufs[n][1] = (flags);                                                                      \
        sl[n] = 2 + norikv__v1__##type##__pack(&(msg), bufs[n] + 2);                              \
        seeds[n] = bufs[n];                                                                        \
        n++;                                                                                       \
    } while (0)
    Norikv__V1__PutRequest put = NORIKV__V1__PUT_REQUEST__INIT;
    put.key.data = (uint8_t *)"key";
    put.key.len = 3;
    put.value.data = (uint8_t *)"value";
    put.value.len = 5;
    put.idempotency_key = "idem";
    SEED(M_PUT, 0, put_request, put);
    put.if_match = &v;
    put.idempotency_key = "";
    SEED(M_PUT, 0, put_request, put);
    Norikv__V1__GetRequest get = NORIKV__V1__GET_REQUEST__INIT;
    get.key = put.key;
    get.consistency = "linearizable";
    SEED(M_GET, 0, get_request, get);
    Norikv__V1__DeleteRequest del = NORIKV__V1__DELETE_REQUEST__INIT;
    del.key = put.key;
    del.if_match = &v;
    SEED(M_DELETE, 0, delete_request, del);
    Norikv__V1__ClusterView cv = NORIKV__V1__CLUSTER_VIEW__INIT;
    SEED(M_WATCH, 0, cluster_view, cv);
    Norikv__V1__EventsRequest er = NORIKV__V1__EVENTS_REQUEST__INIT;
    char *kinds[] = {"flush", "leader_change"};
    er.n_kinds = 2;
    er.kinds = kinds;
    SEED(M_EVENTS, 0, events_request, er);
    Norikv__V1__WatchRequest wr = NORIKV__V1__WATCH_REQUEST__INIT;
    wr.prefix = put.key;
    Norikv__V1__ShardRevision frm = NORIKV__V1__SHARD_REVISION__INIT;
    Norikv__V1__ShardRevision *frmp[] = {&frm};
    frm.shard = 3;
    frm.applied = &v;
    wr.n_from = 1;
    wr.from = frmp;
    SEED(M_KVWATCH, 0, watch_request, wr);
    Norikv__V1__DrainNodeRequest dr = NORIKV__V1__DRAIN_NODE_REQUEST__INIT;
    dr.node_id = "node-1";
    SEED(M_DRAIN, 0, drain_node_request, dr);
    Norikv__V1__RemoveNodeRequest rm = NORIKV__V1__REMOVE_NODE_REQUEST__INIT;
    rm.node_id = "node-2";
    SEED(M_REMOVE, 0, remove_node_request, rm);
    Norikv__V1__PlacementRequest pr = NORIKV__V1__PLACEMENT_REQUEST__INIT;
    SEED(M_PLACEMENT, 0, placement_request, pr);
    Norikv__V1__ShardInfo si = NORIKV__V1__SHARD_INFO__INIT;
    si.id = 3;
    SEED(M_TRANSFER, 0, shard_info, si);
    SEED(M_SNAPSHOT, 0, shard_info, si);
    Norikv__V1__RangeRequest rr = NORIKV__V1__RANGE_REQUEST__INIT;
    rr.prefix = put.key;
    rr.limit = 2;
    SEED(M_RANGE, 0, range_request, rr);
    /* a linearizable page whose deadline has passed: the barriers fail on
     * the node's loop, which hands the page to range.c's finisher */
    rr.consistency = "linearizable";
    SEED(M_RANGE, 1, range_request, rr);
    Norikv__V1__BatchOp op = NORIKV__V1__BATCH_OP__INIT, *ops[1] = {&op};
    op.key = put.key;
    op.value = put.value;
    Norikv__V1__BatchRequest br = NORIKV__V1__BATCH_REQUEST__INIT;
    br.n_ops = 1;
    br.ops = ops;
    SEED(M_BATCH, 0, batch_request, br);
#undef SEED
    *out = seeds;
    *lens = sl;
    return n;
}
