/*
 * view.c: the ClusterView clients route by, and its watchers.
 */
#include "node/internal.h"


void node_notify_watchers(struct node *n, uint64_t epoch)
{
    pthread_mutex_lock(&n->vmu);
    struct watcher w[MAX_WATCH];
    size_t k = 0;
    for (size_t i = 0; i < MAX_WATCH; i++)
        if (n->watchers[i].used)
            w[k++] = n->watchers[i];
    pthread_mutex_unlock(&n->vmu);
    for (size_t i = 0; i < k; i++)
        w[i].fn(w[i].ctx, epoch);
}

void node_set_client_addr(struct node *n, const char *addr, const char *name)
{
    pthread_mutex_lock(&n->vmu);
    char *old = n->client_addr;
    n->client_addr = nk_strdup(addr);
    n->opt.client_addr = n->client_addr;
    free(old);
    if (name) {
        old = n->name;
        n->name = nk_strdup(name);
        n->opt.node_name = n->name;
        free(old);
    }
    n->epoch++; /* the view changed */
    pthread_mutex_unlock(&n->vmu);
}

void node_view_get(struct node *n, struct node_view *v)
{
    memset(v, 0, sizeof(*v));
    pthread_mutex_lock(&n->vmu);
    v->epoch = n->epoch;
    snprintf(v->nodes[0].addr, sizeof v->nodes[0].addr, "%s", n->client_addr);
    pthread_mutex_unlock(&n->vmu);
    v->n_nodes = 1;
    pthread_mutex_lock(&n->vmu);
    snprintf(v->nodes[0].id, sizeof v->nodes[0].id, "%s", n->name);
    pthread_mutex_unlock(&n->vmu);
    snprintf(v->nodes[0].role, sizeof v->nodes[0].role, "alive");
    v->total_shards = n->nshards;
    v->n_replicas = nk_malloc(n->nshards);
    v->replicas = nk_malloc(n->nshards * sizeof(*v->replicas));
    v->leader = nk_malloc(n->nshards);
    for (uint32_t i = 0; i < n->nshards; i++) {
        v->n_replicas[i] = 1;
        v->replicas[i][0] = 0;
        uint64_t lead = atomic_load_explicit(&n->pub[i].lead, memory_order_acquire);
        v->leader[i] = lead == SELF_ID ? 0 : -1;
    }
}

void node_view_free(struct node_view *v)
{
    free(v->n_replicas);
    free(v->replicas);
    free(v->leader);
    memset(v, 0, sizeof(*v));
}

nk_status node_watch(struct node *n, node_watch_fn fn, void *ctx, uint32_t *id)
{
    pthread_mutex_lock(&n->vmu);
    for (uint32_t i = 0; i < MAX_WATCH; i++) {
        if (!n->watchers[i].used) {
            n->watchers[i] = (struct watcher){fn, ctx, true};
            pthread_mutex_unlock(&n->vmu);
            *id = i;
            return NK_OK;
        }
    }
    pthread_mutex_unlock(&n->vmu);
    return nk_status_make(NK_RESOURCE_EXHAUSTED, "too many cluster watchers (limit %d)",
                          MAX_WATCH);
}

void node_unwatch(struct node *n, uint32_t id)
{
    if (id >= MAX_WATCH)
        return;
    pthread_mutex_lock(&n->vmu);
    n->watchers[id].used = false;
    pthread_mutex_unlock(&n->vmu);
}
