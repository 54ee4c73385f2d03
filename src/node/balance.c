/*
 * balance.c: who leads which shard. Elections put leaders wherever the
 * first candidate happened to be; clients' load follows leaders, so each
 * node should lead about total_shards / alive members. Once a second the
 * loop looks at the leaders it knows of (every shard: its own replicas'
 * and, for the others, what their leaders' LEADS frames say) and, if
 * it leads more than its share (ceil(led shards / alive members)), hands
 * shards to members that lead fewer than their share, preferring each
 * shard's designated leader (the member at rank shard mod N among the
 * sorted member ids, when it is a replica: an exact spread when every
 * member replicates every shard). A bounded number of transfers per pass
 * keeps leadership from flapping; a leader moved by hand (Admin
 * TransferShard) stays unless its node then leads more than its share.
 */
#include "node/internal.h"

#include <inttypes.h>

#define MAX_TRANSFERS_PER_PASS 16

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

void node_balance(struct node *n)
{
    if (!n->clustered)
        return;
    uint64_t ids[NODE_MAX_MEMBERS];
    bool up[NODE_MAX_MEMBERS];
    uint32_t nm = 0, alive = 0;
    pthread_mutex_lock(&n->vmu);
    nm = n->n_members;
    for (uint32_t i = 0; i < nm; i++) {
        ids[i] = n->members[i].id;
    }
    pthread_mutex_unlock(&n->vmu);
    qsort(ids, nm, sizeof ids[0], cmp_u64);
    pthread_mutex_lock(&n->vmu);
    for (uint32_t i = 0; i < nm; i++) {
        int k = node_member_index(n, ids[i]);
        /* a draining or departed member takes no leadership: its replicas
         * are on their way out (plan.c) */
        up[i] = k >= 0 && (ids[i] == n->self_id ? !n->draining
                                                 : n->members[k].up && !n->members[k].draining &&
                                                       n->members[k].swim_state != SWIM_LEFT);
        alive += up[i];
    }
    pthread_mutex_unlock(&n->vmu);
    if (alive < 2)
        return;
    /* leaders as this node knows them */
    uint32_t led[NODE_MAX_MEMBERS] = {0};
    uint32_t total = 0;
    for (uint32_t s = 0; s < n->nshards; s++) {
        /* every shard, hosted here or not (LEADS2 tells who leads the
         * others): counting only the shards a node replicates would give
         * each node its own idea of the shares once replicas are spread
         * over more nodes than RF, and leaderships would ping-pong */
        uint64_t lead = atomic_load_explicit(&n->pub[s].lead, memory_order_acquire);
        for (uint32_t i = 0; i < nm; i++)
            if (ids[i] == lead) {
                led[i]++;
                total++;
            }
    }
    uint32_t self = 0;
    while (self < nm && ids[self] != n->self_id)
        self++;
    NK_ASSERT(self < nm);
    uint32_t share = (total + alive - 1) / alive;
    if (led[self] <= share)
        return;
    int budget = MAX_TRANSFERS_PER_PASS;
    for (uint32_t s = 0; s < n->nshards && led[self] > share && budget > 0; s++) {
        struct group *g = &n->groups[s];
        if (!g->r || g->damaged || raft_role(g->r) != RAFT_LEADER)
            continue;
        const struct raft_conf_state *c = raft_conf(g->r);
        /* the designated leader first, then anyone under its share */
        uint32_t want = s % nm, to = nm;
        if (up[want] && want != self && led[want] < share && raft_conf_is_voter(c, ids[want]))
            to = want;
        for (uint32_t i = 0; i < nm && to == nm; i++)
            if (i != self && up[i] && led[i] + 1 < share && raft_conf_is_voter(c, ids[i]))
                to = i;
        if (to == nm)
            continue;
        /* only to a replica that has the log: a transfer to a laggard waits */
        if (raft_progress_match(g->r, ids[to]) + 16 < raft_last_index(g->r))
            continue;
        node_quiesce_wake(n, g); /* the transfer runs on ticks */
        nk_status st = raft_transfer_leader(g->r, ids[to]);
        if (nk_ok(st)) {
            led[self]--;
            led[to]++;
            budget--;
            node_mark_dirty(n, g);
        }
        nk_status_free(&st);
    }
}

/* ------------------------------------------------------------ by hand */

struct xfer_wait {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool done;
    enum nk_code code;
    char msg[200];
    char hint[128];
};

static void xfer_done(void *ctx, const struct node_write_result *wr)
{
    struct xfer_wait *w = ctx;
    pthread_mutex_lock(&w->mu);
    w->code = wr->code;
    snprintf(w->msg, sizeof w->msg, "%s", wr->msg ? wr->msg : "");
    snprintf(w->hint, sizeof w->hint, "%s", wr->leader_hint ? wr->leader_hint : "");
    w->done = true;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

/* Loop: starts the transfer a REQ_TRANSFER asks for. */
void node_transfer_start(struct node *n, struct group *g, struct req *r)
{
    struct node_write_result wr = {.code = NK_CODE_OK};
    if (!g->r || raft_role(g->r) != RAFT_LEADER) {
        wr.code = NK_UNAVAILABLE;
        wr.msg = "NOT_LEADER: transfer the shard on its leader";
        wr.leader_hint = node_leader_hint(n, g);
    } else if (r->target != n->self_id) {
        if (!raft_conf_is_voter(raft_conf(g->r), r->target)) {
            wr.code = NK_FAILED_PRECONDITION;
            wr.msg = "the target node holds no voting replica of the shard";
        } else {
            node_quiesce_wake(n, g);
            nk_status s = raft_transfer_leader(g->r, r->target);
            if (!nk_ok(s)) {
                wr.code = NK_FAILED_PRECONDITION;
                wr.msg = "a transfer of the shard is already under way";
            }
            nk_status_free(&s);
            node_mark_dirty(n, g);
        }
    }
    r->done(r->ctx, &wr);
    node_request_done(n);
}

nk_status node_transfer_shard(struct node *n, uint32_t shard, const char *target,
                              char *hint, size_t hint_cap)
{
    if (hint_cap)
        hint[0] = 0;
    if (shard >= n->nshards)
        return nk_status_make(NK_INVALID_ARGUMENT, "shard %u does not exist (total %u)", shard,
                              n->nshards);
    uint64_t id = 0;
    pthread_mutex_lock(&n->vmu);
    for (uint32_t i = 0; i < n->n_members; i++)
        if (strcmp(n->members[i].id == n->self_id ? n->name : n->members[i].name, target) == 0)
            id = n->members[i].id;
    pthread_mutex_unlock(&n->vmu);
    if (!id)
        return nk_status_make(NK_INVALID_ARGUMENT, "node %s is not a member of the cluster",
                              target);
    if (!n->clustered)
        return NK_OK; /* the only member leads every shard already */
    struct xfer_wait w = {.done = false};
    pthread_mutex_init(&w.mu, NULL);
    pthread_cond_init(&w.cv, NULL);
    struct req r = {.kind = REQ_TRANSFER,
                    .shard = shard,
                    .target = id,
                    .deadline = nk_mono_ns() + n->opt.default_deadline_ms * 1000000ULL,
                    .done = xfer_done,
                    .ctx = &w};
    nk_status s = node_enqueue(n, &r);
    if (nk_ok(s)) {
        pthread_mutex_lock(&w.mu);
        while (!w.done)
            pthread_cond_wait(&w.cv, &w.mu);
        pthread_mutex_unlock(&w.mu);
        if (w.code != NK_CODE_OK)
            s = nk_status_make(w.code, "shard %u: %s", shard, w.msg);
        if (hint_cap)
            snprintf(hint, hint_cap, "%s", w.hint);
    }
    pthread_mutex_destroy(&w.mu);
    pthread_cond_destroy(&w.cv);
    return s;
}
