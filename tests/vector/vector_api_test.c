/* The Vector service's admission control through the real api and node
 * (in-process calls, rpc_server_call_local): the node-wide vector memory
 * budget refuses inserts and creates with RESOURCE_EXHAUSTED naming it,
 * before they are proposed, and admits them again once memory is freed. */
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api/api.h"
#include "norikv/v1/norikv.pb-c.h"
#include "rpc/rpc.h"
#include "testlib.h"
#include "vector/vector.h"

struct outcome {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool done;
    enum nk_code code;
    char msg[300];
};

static void on_event(void *ctx, const struct rpc_local_event *ev)
{
    struct outcome *o = ctx;
    pthread_mutex_lock(&o->mu);
    o->code = ev->code;
    snprintf(o->msg, sizeof o->msg, "%s", ev->msg ? ev->msg : "");
    o->done = ev->final;
    pthread_cond_signal(&o->cv);
    pthread_mutex_unlock(&o->mu);
}

static enum nk_code call(struct rpc_server *rs, const char *m, const uint8_t *b, size_t n,
                         char *msg, size_t cap)
{
    struct outcome o = {.done = false};
    pthread_mutex_init(&o.mu, NULL);
    pthread_cond_init(&o.cv, NULL);
    rpc_server_call_local(rs, m, nk_slice_make(b, n), UINT64_MAX, on_event, &o);
    pthread_mutex_lock(&o.mu);
    while (!o.done)
        pthread_cond_wait(&o.cv, &o.mu);
    pthread_mutex_unlock(&o.mu);
    if (msg)
        snprintf(msg, cap, "%s", o.msg);
    pthread_mutex_destroy(&o.mu);
    pthread_cond_destroy(&o.cv);
    return o.code;
}

static enum nk_code insert(struct rpc_server *rs, const char *ns, int i, char *msg, size_t cap)
{
    float v[8];
    for (int j = 0; j < 8; j++)
        v[j] = (float)((i * 31 + j * 7) % 17);
    char id[32];
    snprintf(id, sizeof id, "id-%d", i);
    Norikv__V1__VectorInsertRequest r = NORIKV__V1__VECTOR_INSERT_REQUEST__INIT;
    r.namespace_ = (char *)ns;
    r.id = id;
    r.n_vector = 8;
    r.vector = v;
    uint8_t buf[256];
    size_t n = norikv__v1__vector_insert_request__pack(&r, buf);
    return call(rs, "/norikv.v1.Vector/Insert", buf, n, msg, cap);
}

static enum nk_code create(struct rpc_server *rs, const char *ns, char *msg, size_t cap)
{
    Norikv__V1__CreateVectorIndexRequest c = NORIKV__V1__CREATE_VECTOR_INDEX_REQUEST__INIT;
    c.namespace_ = (char *)ns;
    c.dimensions = 8;
    c.distance = NORIKV__V1__DISTANCE_FUNCTION__DISTANCE_FUNCTION_EUCLIDEAN;
    c.index_type = NORIKV__V1__VECTOR_INDEX_TYPE__VECTOR_INDEX_TYPE_HNSW;
    uint8_t buf[128];
    size_t n = norikv__v1__create_vector_index_request__pack(&c, buf);
    return call(rs, "/norikv.v1.Vector/CreateIndex", buf, n, msg, cap);
}

NK_TEST(node_vector_memory_budget_refuses_inserts_and_creates_then_admits_after_deletes)
{
    struct node_options no;
    node_options_default(&no);
    no.node_name = "budget-node";
    no.client_addr = "127.0.0.1:1";
    no.data_dir = nk_test_tmpdir();
    no.ephemeral = true;
    no.total_shards = 8;
    no.tick_ms = 20;
    struct node *node;
    NK_REQUIRE_OK(node_open(&no, &node));
    /* 3 pages of budget: one empty index (4 KiB accounted) plus a few vectors */
    struct api_options ao = {.node = node, .node_id = "budget-node", .vector_memory_budget = 6000};
    struct api *a;
    NK_REQUIRE_OK(api_new(&ao, &a));
    struct rpc_server_options ro = {.addr = "127.0.0.1:0"};
    struct rpc_server *rs;
    NK_REQUIRE_OK(rpc_server_create(&ro, &rs));
    NK_REQUIRE_OK(api_register(a, rs));
    for (int i = 0;; i++) {
        struct node_stats st;
        node_get_stats(node, &st);
        if (st.shards_led == st.total_shards)
            break;
        NK_REQUIRE(i < 3000);
        usleep(10000);
    }
    char msg[300];
    NK_REQUIRE(create(rs, "b", msg, sizeof msg) == NK_CODE_OK);
    int ok = 0;
    enum nk_code code = NK_CODE_OK;
    for (int i = 0; i < 100 && code == NK_CODE_OK; i++) {
        code = insert(rs, "b", i, msg, sizeof msg);
        ok += code == NK_CODE_OK;
    }
    fprintf(stderr, "  %d inserts admitted, then: %s\n", ok, msg);
    NK_CHECK(ok > 0 && ok < 100);
    NK_CHECK(code == NK_RESOURCE_EXHAUSTED && strstr(msg, "budget is 6000 bytes"));
    uint64_t used = vec_store_memory(node_vec(node));
    NK_CHECK(used >= 6000);
    /* a new index is refused as well; nothing was proposed */
    NK_CHECK(create(rs, "c", msg, sizeof msg) == NK_RESOURCE_EXHAUSTED);
    bool found = true;
    NK_REQUIRE_OK(vec_index_info(node_vec(node), vec_shard_for_namespace(nk_slice_str("c"), 8),
                                 nk_slice_str("c"), NULL, NULL, NULL, &found));
    NK_CHECK(!found);
    /* deletes free memory: inserts are admitted again */
    for (int i = 0; i < ok; i++) {
        Norikv__V1__VectorDeleteRequest d = NORIKV__V1__VECTOR_DELETE_REQUEST__INIT;
        char id[32];
        snprintf(id, sizeof id, "id-%d", i);
        d.namespace_ = "b";
        d.id = id;
        uint8_t buf[128];
        size_t n = norikv__v1__vector_delete_request__pack(&d, buf);
        NK_CHECK(call(rs, "/norikv.v1.Vector/Delete", buf, n, NULL, 0) == NK_CODE_OK);
    }
    NK_CHECK(vec_store_memory(node_vec(node)) < used);
    NK_CHECK(insert(rs, "b", 1000, msg, sizeof msg) == NK_CODE_OK);
    rpc_server_shutdown(rs, 1000);
    api_shutdown(a);
    node_close(node);
    rpc_server_destroy(rs);
    api_free(a);
}
