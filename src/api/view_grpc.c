/*
 * view_grpc.c: the cluster view as a protobuf ClusterView, and
 * Meta.WatchCluster: the current view at once (when newer than the client's
 * epoch), then one message per change, pushed from the node's view-change
 * callback to every open stream (at most 1024; a stream whose client does
 * not read is ended rather than queued for).
 */
#include <stdlib.h>

#include "api/api_decode.h"
#include "api/api_internal.h"
#include "norikv/v1/norikv.pb-c.h"

uint8_t *api_view_pack(struct api *a, size_t *len)
{
    struct node_view v;
    node_view_get(a->node, &v);
    Norikv__V1__ClusterView cv = NORIKV__V1__CLUSTER_VIEW__INIT;
    cv.epoch = v.epoch;
    Norikv__V1__ClusterNode nodes[16];
    Norikv__V1__ClusterNode *np[16];
    for (uint32_t i = 0; i < v.n_nodes; i++) {
        norikv__v1__cluster_node__init(&nodes[i]);
        nodes[i].id = v.nodes[i].id;
        nodes[i].addr = v.nodes[i].addr;
        nodes[i].role = v.nodes[i].role;
        np[i] = &nodes[i];
    }
    cv.n_nodes = v.n_nodes;
    cv.nodes = np;
    uint32_t ns = v.total_shards;
    Norikv__V1__ShardInfo *shards = nk_malloc(ns * sizeof(*shards));
    Norikv__V1__ShardInfo **sp = nk_malloc(ns * sizeof(*sp));
    size_t total_rep = 0;
    for (uint32_t i = 0; i < ns; i++)
        total_rep += v.n_replicas[i];
    Norikv__V1__ShardReplica *reps = nk_malloc((total_rep ? total_rep : 1) * sizeof(*reps));
    Norikv__V1__ShardReplica **rp = nk_malloc((total_rep ? total_rep : 1) * sizeof(*rp));
    size_t k = 0;
    for (uint32_t i = 0; i < ns; i++) {
        norikv__v1__shard_info__init(&shards[i]);
        shards[i].id = i;
        shards[i].n_replicas = v.n_replicas[i];
        shards[i].replicas = &rp[k];
        for (uint32_t j = 0; j < v.n_replicas[i]; j++) {
            norikv__v1__shard_replica__init(&reps[k]);
            reps[k].node_id = v.nodes[v.replicas[i][j]].id;
            reps[k].leader = v.leader[i] == (int8_t)v.replicas[i][j];
            rp[k] = &reps[k];
            k++;
        }
        sp[i] = &shards[i];
    }
    cv.n_shards = ns;
    cv.shards = sp;
    *len = norikv__v1__cluster_view__get_packed_size(&cv);
    uint8_t *buf = nk_malloc(*len ? *len : 1);
    norikv__v1__cluster_view__pack(&cv, buf);
    free(shards);
    free(sp);
    free(reps);
    free(rp);
    node_view_free(&v);
    return buf;
}

struct api_watch {
    struct api_watch *next;
    struct rpc_call *stream;
    uint64_t sent_epoch;
};

/* Node callback (Ready loop thread): push the new view to every stream. */
static void on_view_change(void *ctx, uint64_t epoch)
{
    struct api *a = ctx;
    pthread_mutex_lock(&a->wmu);
    if (a->watches) {
        size_t len;
        uint8_t *buf = api_view_pack(a, &len);
        for (struct api_watch *w = a->watches; w; w = w->next) {
            if (w->sent_epoch >= epoch || rpc_stream_closed(w->stream))
                continue;
            nk_status s = rpc_stream_write(w->stream, buf, len);
            if (nk_ok(s))
                w->sent_epoch = epoch;
            else if (s.code == NK_RESOURCE_EXHAUSTED)
                rpc_stream_finish(w->stream, NK_RESOURCE_EXHAUSTED,
                                  "cluster view stream is not being read");
            nk_status_free(&s);
        }
        free(buf);
    }
    pthread_mutex_unlock(&a->wmu);
}

static void on_watch(void *ctx, struct rpc_call *call, struct nk_slice req)
{
    struct api *a = ctx;
    ProtobufCMessage *pm = NULL;
    nk_status ds = api_decode(&norikv__v1__cluster_view__descriptor, req, 0, &pm);
    if (!nk_ok(ds)) {
        rpc_stream_finish(call, ds.code, nk_status_msg(ds));
        nk_status_free(&ds);
        rpc_stream_release(call);
        return;
    }
    Norikv__V1__ClusterView *m = (Norikv__V1__ClusterView *)pm;
    uint64_t client_epoch = m->epoch;
    norikv__v1__cluster_view__free_unpacked(m, NULL);
    pthread_mutex_lock(&a->wmu);
    if (a->shut || a->n_watches >= 1024) {
        bool shut = a->shut;
        pthread_mutex_unlock(&a->wmu);
        rpc_stream_finish(call, shut ? NK_UNAVAILABLE : NK_RESOURCE_EXHAUSTED,
                          shut ? "server shutting down" : "too many cluster watchers");
        rpc_stream_release(call);
        return;
    }
    struct api_watch *w = nk_calloc(1, sizeof(*w));
    w->stream = call;
    w->sent_epoch = client_epoch;
    w->next = a->watches;
    a->watches = w;
    a->n_watches++;
    /* the current view at once when it is newer than the client's */
    size_t len;
    uint8_t *buf = api_view_pack(a, &len);
    Norikv__V1__ClusterView *cur = norikv__v1__cluster_view__unpack(NULL, len, buf);
    uint64_t epoch = cur ? cur->epoch : 0;
    if (cur)
        norikv__v1__cluster_view__free_unpacked(cur, NULL);
    if (epoch > client_epoch || (epoch == 0 && client_epoch == 0)) {
        nk_status s = rpc_stream_write(call, buf, len);
        if (nk_ok(s))
            w->sent_epoch = epoch;
        nk_status_free(&s);
    }
    free(buf);
    pthread_mutex_unlock(&a->wmu);
}

static void on_watch_closed(void *ctx, struct rpc_call *stream, bool cancelled)
{
    struct api *a = ctx;
    (void)cancelled;
    pthread_mutex_lock(&a->wmu);
    for (struct api_watch **p = &a->watches; *p; p = &(*p)->next) {
        if ((*p)->stream == stream) {
            struct api_watch *w = *p;
            *p = w->next;
            a->n_watches--;
            free(w);
            break;
        }
    }
    pthread_mutex_unlock(&a->wmu);
    rpc_stream_release(stream);
}


nk_status api_view_register(struct api *a, struct rpc_server *s)
{
    struct rpc_method m = {"/norikv.v1.Meta/WatchCluster", RPC_SERVER_STREAM, on_watch,
                           on_watch_closed, a};
    NK_TRY(rpc_server_add_method(s, &m));
    if (!a->watching) {
        NK_TRY(node_watch(a->node, on_view_change, a, &a->node_watch_id));
        a->watching = true;
    }
    return NK_OK;
}
