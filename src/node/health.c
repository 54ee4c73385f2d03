/*
 * health.c: what the node reports when it cannot go on normally: degraded
 * (the log or an apply keeps failing: writes refused with the reason,
 * retried until they succeed) and damaged shards (state that failed a
 * checksum: the shard is stopped and refused, the others serve).
 */
#include "node/internal.h"


void node_set_degraded(struct node *n, nk_status s, const char *what)
{
    pthread_mutex_lock(&n->hmu);
    bool was = atomic_load(&n->degraded);
    snprintf(n->degraded_why, sizeof n->degraded_why, "%s: %s", what, nk_status_msg(s));
    atomic_store_explicit(&n->degraded, true, memory_order_release);
    pthread_mutex_unlock(&n->hmu);
    if (!was)
        NK_ERROR(MODULE, "degraded: %s: %s (retrying; writes are refused meanwhile)", what,
                 nk_status_msg(s));
    obs_gauge_set(n->m_degraded, 1);
}

void node_clear_degraded(struct node *n)
{
    if (!atomic_load_explicit(&n->degraded, memory_order_acquire))
        return;
    pthread_mutex_lock(&n->hmu);
    NK_INFO(MODULE, "recovered from: %s", n->degraded_why);
    n->degraded_why[0] = '\0';
    atomic_store_explicit(&n->degraded, false, memory_order_release);
    pthread_mutex_unlock(&n->hmu);
    obs_gauge_set(n->m_degraded, 0);
}

/*
 * The shard's state failed a checksum while applying: stop its group (no
 * more ticks, Ready or applies; raft is left as it is, which raft_free
 * allows), refuse its calls, and say on /health how to repair it. The
 * other shards go on.
 */
void node_mark_damaged(struct node *n, struct group *g, nk_status why)
{
    g->damaged = true;
    struct shard_pub *p = &n->pub[g->id];
    atomic_store_explicit(&p->lease_until_ns, 0, memory_order_release);
    atomic_store_explicit(&p->lead, 0, memory_order_release);
    atomic_store_explicit(&p->damaged, true, memory_order_release);
    uint32_t k = atomic_fetch_add(&n->damaged_shards, 1) + 1;
    obs_gauge_set(n->m_damaged, k);
    if (g->last_lead == n->self_id)
        atomic_fetch_sub(&n->st_led, 1);
    g->last_lead = 0;
    NK_ERROR(MODULE,
             "shard %u is damaged on this node: %s. Its calls are refused; the other shards go "
             "on. %s",
             g->id, nk_status_msg(why),
             n->clustered ? "The replica is rebuilt from the shard's leader by itself (the "
                            "other replicas serve the shard meanwhile)."
                          : "Repair: stop the node and restore its data directory from a "
                            "backup (a one-node cluster has no replica to rebuild from).");
    const char *msg = "shard state is damaged on this node (see /health)";
    for (size_t i = g->settled; i < g->pending.n; i++) {
        node_fail_req(&g->pending.v[i], NK_DATA_LOSS, msg, NULL);
        node_request_done(n);
    }
    g->pending.n = g->settled = 0;
    struct req_list *lists[] = {&g->parked, &g->reads};
    for (size_t l = 0; l < 2; l++) {
        for (size_t i = 0; i < lists[l]->n; i++) {
            node_fail_req(&lists[l]->v[i], NK_DATA_LOSS, msg, NULL);
            node_request_done(n);
        }
        lists[l]->n = 0;
    }
}

/* Waits before a retry, growing to 1 s; false when the node is stopping. */
bool node_retry_wait(struct node *n, int attempt)
{
    uint64_t ms = attempt < 4 ? 50ULL << attempt : 1000;
    for (uint64_t waited = 0; waited < ms; waited += 10) {
        pthread_mutex_lock(&n->qmu);
        bool stop = n->stopping;
        pthread_mutex_unlock(&n->qmu);
        if (stop)
            return false;
        struct timespec ts = {0, 10 * 1000000L};
        nanosleep(&ts, NULL);
    }
    return true;
}

bool node_shard_damaged(struct node *n, uint32_t shard)
{
    return shard < n->nshards && atomic_load_explicit(&n->pub[shard].damaged, memory_order_acquire);
}
