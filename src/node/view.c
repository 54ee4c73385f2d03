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

void node_self_name(struct node *n, char *buf, size_t cap)
{
    pthread_mutex_lock(&n->vmu);
    snprintf(buf, cap, "%s", n->name);
    pthread_mutex_unlock(&n->vmu);
}

void node_set_client_addr(struct node *n, const char *addr, const char *name)
{
    pthread_mutex_lock(&n->vmu);
    char *old = n->client_addr;
    n->client_addr = nk_strdup(addr);
    n->opt.client_addr = n->client_addr;
    free(old);
    if (name && !n->clustered) {
        /* a cluster member's name is fixed: its raft id was derived from it */
        old = n->name;
        n->name = nk_strdup(name);
        n->opt.node_name = n->name;
        free(old);
    }
    int self = node_member_index(n, n->self_id);
    if (self >= 0) {
        snprintf(n->members[self].client_addr, sizeof n->members[self].client_addr, "%s", addr);
        snprintf(n->members[self].name, sizeof n->members[self].name, "%s", n->name);
    }
    n->view_local++; /* the view changed: the loop tells the watchers */
    pthread_mutex_unlock(&n->vmu);
    node_peers_announce(n); /* peers learn where clients reach us */
}

/* The shard's replicas (raft ids), vmu held: its configuration as known here
 * (our own group's, or its leader's LEADS), else placement over the members
 * (a shard no one has told us about yet: right for a cluster that never
 * moved a replica). */
static uint32_t shard_replicas(struct node *n, uint32_t shard, uint64_t *out)
{
    const struct shard_conf *sc = &n->sconf[shard];
    if (sc->n) {
        memcpy(out, sc->ids, sc->n * sizeof(*out));
        return sc->n;
    }
    uint64_t ids[NODE_MAX_MEMBERS];
    uint32_t k = 0;
    for (uint32_t m = 0; m < n->n_members; m++)
        if (n->members[m].swim_state != SWIM_LEFT)
            ids[k++] = n->members[m].id;
    uint32_t rf = n->rf < k ? n->rf : k;
    if (rf == 0)
        return 0;
    node_placement_replicas(ids, k, shard, rf, out);
    return rf;
}

/*
 * The epoch is a function of what the view shows, so that every node that
 * shows the same view numbers it alike: twice the sum, over shards, of the
 * term of the leader this node knows (a leader change always raises its
 * shard's term), plus one per member seen dead. It rises with every change
 * of leader and every member lost, and across restarts (every shard elects
 * anew, in a higher term). A member coming back lowers it by one unless
 * leadership moves back to it (leader balancing) — documented in
 * docs/cluster.md.
 */
static uint64_t view_epoch_locked(struct node *n)
{
    /* a one-node cluster adds when its data directory was created (in us),
     * so that a new server at the same address (an ephemeral one restarted)
     * shows a newer view than the old one did; a cluster's members do not
     * share such a time, and their epochs must agree */
    uint64_t e = n->clustered ? 0 : n->created_ms * 1000;
    for (uint32_t i = 0; i < n->nshards; i++)
        e += 2 * atomic_load_explicit(&n->pub[i].lead_term, memory_order_acquire);
    for (uint32_t i = 0; i < n->n_members; i++) {
        const struct member *m = &n->members[i];
        if (m->id == n->self_id)
            continue;
        /* SWIM's state when it runs (alive 0, suspect 1, dead 2, left 3:
         * each step away from alive raises the epoch), else the session */
        e += m->swim_state ? (uint64_t)(m->swim_state - SWIM_ALIVE) : !m->up;
    }
    return e;
}

uint64_t node_view_epoch(struct node *n)
{
    pthread_mutex_lock(&n->vmu);
    uint64_t e = view_epoch_locked(n);
    pthread_mutex_unlock(&n->vmu);
    return e;
}

void node_view_get(struct node *n, struct node_view *v)
{
    memset(v, 0, sizeof(*v));
    pthread_mutex_lock(&n->vmu);
    v->epoch = view_epoch_locked(n);
    v->n_nodes = n->n_members;
    for (uint32_t i = 0; i < n->n_members; i++) {
        const struct member *m = &n->members[i];
        snprintf(v->nodes[i].id, sizeof v->nodes[i].id, "%s",
                 m->id == n->self_id ? n->name : m->name);
        snprintf(v->nodes[i].addr, sizeof v->nodes[i].addr, "%s",
                 m->id == n->self_id ? n->client_addr : m->client_addr);
        snprintf(v->nodes[i].role, sizeof v->nodes[i].role, "%s",
                 m->id == n->self_id ? "alive"
                 : m->swim_state     ? swim_state_name(m->swim_state)
                 : m->up             ? "alive"
                                     : "dead");
    }
    v->total_shards = n->nshards;
    v->n_replicas = nk_malloc(n->nshards);
    v->replicas = nk_malloc(n->nshards * sizeof(*v->replicas));
    v->leader = nk_malloc(n->nshards);
    for (uint32_t i = 0; i < n->nshards; i++) {
        uint64_t reps[NODE_MAX_MEMBERS];
        uint32_t k = shard_replicas(n, i, reps);
        if (k > NK_ARRAY_LEN(v->replicas[0]))
            k = NK_ARRAY_LEN(v->replicas[0]);
        uint64_t lead = atomic_load_explicit(&n->pub[i].lead, memory_order_acquire);
        v->n_replicas[i] = (uint8_t)k;
        v->leader[i] = -1;
        for (uint32_t r = 0; r < k; r++) {
            int idx = node_member_index(n, reps[r]);
            v->replicas[i][r] = (uint8_t)(idx < 0 ? 0 : idx);
            if (lead != 0 && reps[r] == lead)
                v->leader[i] = (int8_t)(idx < 0 ? -1 : idx);
        }
    }
    pthread_mutex_unlock(&n->vmu);
}

const char *node_hint_for_shard(struct node *n, uint32_t shard, char *buf, size_t cap)
{
    uint64_t lead = atomic_load_explicit(&n->pub[shard].lead, memory_order_acquire);
    buf[0] = 0;
    pthread_mutex_lock(&n->vmu);
    if (lead == 0 && !atomic_load_explicit(&n->pub[shard].hosted, memory_order_acquire)) {
        uint64_t reps[NODE_MAX_MEMBERS];
        if (shard_replicas(n, shard, reps))
            lead = reps[0];
    }
    int idx = lead && lead != n->self_id ? node_member_index(n, lead) : -1;
    if (idx >= 0)
        snprintf(buf, cap, "%s", n->members[idx].client_addr);
    pthread_mutex_unlock(&n->vmu);
    return buf[0] ? buf : NULL;
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
