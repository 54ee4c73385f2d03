/*
 * apply.c: applying committed entries to the KV state machine (vector
 * commands to the vector state machine, node/vector.c), and the
 * membership history that log compaction points carry. A storage failure is
 * retried (degraded); damaged state stops only its shard (health.c).
 */
#include "node/internal.h"
#include "vector/vector.h"

/*
 * Applies one committed entry. A storage failure is retried (the node is
 * degraded meanwhile) until it succeeds; false when the node stops first
 * or the shard's state turns out damaged (the group is then stopped).
 */
bool node_apply_entry(struct node *n, struct group *g, const struct raft_entry *e)
{
    struct kv_result res;
    struct vec_result vres;
    nk_status s;
    bool is_cmd = e->type == RAFT_ENTRY_NORMAL && e->len > 0;
    if (obs_tracing_enabled() && g->pending.n > g->settled)
        n->apply_t0 = nk_mono_ns(); /* a proposal of this node may settle: its apply span */
    bool is_vec = is_cmd && vec_cmd_is_vector(e->data, e->len);
    if (is_vec) {
        memset(&res, 0, sizeof(res));
        res.term = e->term;
        res.index = e->index;
    }
    for (int attempt = 0;; attempt++) {
        if (is_vec)
            s = node_vec_apply(n, g, e, &vres);
        else if (is_cmd)
            s = kv_apply(n->kv, (uint16_t)g->id, e->term, e->index, e->data, e->len, &res);
        else
            s = kv_apply_noop(n->kv, (uint16_t)g->id, e->term, e->index);
        if (nk_ok(s))
            break;
        if (s.code == NK_DATA_LOSS) {
            node_mark_damaged(n, g, s);
            nk_status_free(&s);
            return false;
        }
        char what[64];
        snprintf(what, sizeof what, "applying to shard %u", g->id);
        node_set_degraded(n, s, what);
        nk_status_free(&s);
        if (!node_retry_wait(n, attempt))
            return false;
    }
    node_clear_degraded(n);
    g->applied = e->index;
    g->applied_term = e->term;
    g->last_seq = lsm_last_sequence(n->db);
    nk_status ts = kv_shard_time(n->kv, (uint16_t)g->id, &g->time_ms);
    NK_ASSERT(nk_ok(ts)); /* loaded by the apply just made */
    atomic_fetch_add_explicit(&n->st_applied_entries, 1, memory_order_relaxed);
    node_settle_proposals(n, g, e->index, e->term, is_cmd ? &res : NULL, is_vec ? &vres : NULL);
    return true;
}

bool node_single_voter(const struct node *n, const struct raft_conf_state *c)
{
    return c->n_voters == 1 && c->voters[0] == n->self_id && c->n_voters_out == 0;
}

void node_note_conf(struct group *g, uint64_t index)
{
    /* the membership as of the applied index: what a compaction point at
     * (or after) this index must carry */
    const struct raft_conf_state *c = raft_applied_conf(g->r);
    if (g->n_conf == 2)
        g->conf_hist[0] = g->conf_hist[1];
    g->conf_hist[g->n_conf == 2 ? 1 : g->n_conf] = (struct conf_point){index, *c};
    if (g->n_conf < 2)
        g->n_conf++;
    g->single_voter = node_single_voter(g->node, raft_conf(g->r));
}
