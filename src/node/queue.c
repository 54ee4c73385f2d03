/*
 * queue.c: the bounded MPSC request queue between the callers (gRPC and
 * HTTP threads) and the Ready loop, and the calls that feed it: proposals
 * and read barriers. Lease and stale reads are answered here, on the
 * caller's thread, from what the loop publishes per shard; nothing else
 * of the loop's state is touched.
 */
#include "node/internal.h"


void node_fail_req(struct req *r, enum nk_code code, const char *msg, const char *hint)
{
    struct node_write_result wr = {.code = code, .msg = msg, .leader_hint = hint};
    r->done(r->ctx, &wr);
    free(r->data);
    r->data = NULL;
}

nk_status node_enqueue(struct node *n, const struct req *r)
{
    if (atomic_load_explicit(&n->closed, memory_order_acquire))
        return nk_status_make(NK_UNAVAILABLE, "server shutting down");
    if (r->kind != REQ_SNAPSHOT && atomic_load_explicit(&n->pub[r->shard].damaged,
                                                        memory_order_acquire))
        return nk_status_make(NK_DATA_LOSS,
                              "shard %u is damaged on this node and refused; see /health for "
                              "the repair step",
                              r->shard);
    if (atomic_load_explicit(&n->degraded, memory_order_acquire)) {
        pthread_mutex_lock(&n->hmu);
        nk_status s = nk_status_make(NK_RESOURCE_EXHAUSTED, "writes suspended: %s",
                                     n->degraded_why);
        pthread_mutex_unlock(&n->hmu);
        return s;
    }
    uint64_t cur = atomic_fetch_add(&n->inflight, 1);
    if (cur >= n->opt.max_pending) {
        atomic_fetch_sub(&n->inflight, 1);
        return nk_status_make(NK_RESOURCE_EXHAUSTED,
                              "too many requests in flight (limit %u); retry later",
                              n->opt.max_pending);
    }
    pthread_mutex_lock(&n->qmu);
    if (n->stopping) {
        pthread_mutex_unlock(&n->qmu);
        atomic_fetch_sub(&n->inflight, 1);
        return nk_status_make(NK_UNAVAILABLE, "server shutting down");
    }
    NK_ASSERT(n->qlen < n->qcap); /* qcap == max_pending bounds it */
    n->q[(n->qhead + n->qlen) % n->qcap] = *r;
    n->qlen++;
    bool wake = n->loop_sleeping;
    n->loop_sleeping = false;
    pthread_mutex_unlock(&n->qmu);
    if (wake)
        pthread_cond_signal(&n->qcv);
    return NK_OK;
}

void node_request_done(struct node *n)
{
    atomic_fetch_sub(&n->inflight, 1);
}

nk_status node_propose(struct node *n, uint32_t shard, struct nk_slice cmd,
                       uint64_t deadline_mono_ns, node_write_fn done, void *ctx)
{
    return node_propose_traced(n, shard, cmd, deadline_mono_ns, done, ctx, NULL);
}

nk_status node_propose_traced(struct node *n, uint32_t shard, struct nk_slice cmd,
                              uint64_t deadline_mono_ns, node_write_fn done, void *ctx,
                              struct obs_trace *trace)
{
    if (shard >= n->nshards)
        return nk_status_make(NK_INVALID_ARGUMENT, "shard %u does not exist (total %u)", shard,
                              n->nshards);
    struct req r = {.kind = REQ_PROPOSE,
                    .shard = shard,
                    .data = nk_memdup(cmd.data, cmd.len),
                    .len = cmd.len,
                    .deadline = deadline_mono_ns,
                    .done = done,
                    .ctx = ctx,
                    .t0 = nk_mono_ns(),
                    .trace = trace};
    if (r.deadline == NO_DEADLINE)
        r.deadline = nk_mono_ns() + n->opt.default_deadline_ms * 1000000ULL;
    nk_status s = node_enqueue(n, &r);
    if (!nk_ok(s))
        free(r.data);
    return s;
}

bool node_parse_consistency(const char *s, size_t len, enum node_consistency *out)
{
#define IS(lit) (len == sizeof(lit) - 1 && memcmp(s, lit, len) == 0)
    if (len == 0 || IS("lease"))
        *out = NODE_READ_LEASE;
    else if (IS("linearizable") || IS("strong"))
        *out = NODE_READ_LINEARIZABLE;
    else if (IS("stale_ok") || IS("eventual") || IS("bounded_staleness"))
        *out = NODE_READ_STALE;
    else
        return false;
    return true;
#undef IS
}

nk_status node_read_barrier(struct node *n, uint32_t shard, enum node_consistency c,
                            uint64_t deadline_mono_ns, node_read_fn done, void *ctx, bool *now,
                            const char **hint)
{
    *now = false;
    if (hint)
        *hint = NULL;
    if (shard >= n->nshards)
        return nk_status_make(NK_INVALID_ARGUMENT, "shard %u does not exist (total %u)", shard,
                              n->nshards);
    if (atomic_load_explicit(&n->closed, memory_order_acquire))
        return nk_status_make(NK_UNAVAILABLE, "server shutting down");
    struct shard_pub *p = &n->pub[shard];
    static __thread char hint_buf[128];
    if (!atomic_load_explicit(&p->hosted, memory_order_acquire)) {
        /* no replica here: the shard's leader (or a replica) has the data */
        if (hint)
            *hint = node_hint_for_shard(n, shard, hint_buf, sizeof hint_buf);
        return nk_status_make(NK_UNAVAILABLE,
                              "NOT_LEADER: shard %u has no replica on this node", shard);
    }
    if (c == NODE_READ_STALE) {
        *now = true;
        return NK_OK;
    }
    uint64_t lead = atomic_load_explicit(&p->lead, memory_order_acquire);
    uint64_t t = nk_mono_ns();
    if (c == NODE_READ_LEASE && lead == n->self_id &&
        atomic_load_explicit(&p->lease_until_ns, memory_order_acquire) > t) {
        /* a shard being read stays awake, so its lease stays fresh
         * (quiesce.c); noted at a 50 ms grain to keep the cache line quiet */
        if (t - atomic_load_explicit(&p->read_ns, memory_order_relaxed) > 50000000ULL)
            atomic_store_explicit(&p->read_ns, t, memory_order_relaxed);
        *now = true;
        return NK_OK;
    }
    if (lead != 0 && lead != n->self_id) {
        if (hint)
            *hint = node_hint_for_shard(n, shard, hint_buf, sizeof hint_buf);
        return nk_status_make(NK_UNAVAILABLE, "NOT_LEADER: shard %u is led by another node",
                              shard);
    }
    /* a linearizable read, or a lease read without a valid lease: ReadIndex */
    struct req r = {.kind = REQ_READ,
                    .shard = shard,
                    .deadline = deadline_mono_ns,
                    .done = done,
                    .ctx = ctx};
    if (r.deadline == NO_DEADLINE)
        r.deadline = nk_mono_ns() + n->opt.default_deadline_ms * 1000000ULL;
    return node_enqueue(n, &r);
}

struct kv_store *node_kv(struct node *n)
{
    return n->kv;
}

uint32_t node_total_shards(struct node *n)
{
    return n->nshards;
}

struct lsm_db *node_lsm(struct node *n)
{
    return n->db;
}
