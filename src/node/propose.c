/*
 * propose.c: starting requests on the Ready loop (proposals stamped with the
 * shard's time, ReadIndex requests, snapshot checkpoints) and settling
 * proposals once their entries apply.
 */
#include <inttypes.h>

#include "node/internal.h"

void node_start_request(struct node *n, struct group *g, struct req *r)
{
    if (r->kind == REQ_SNAPSHOT) {
        /* checkpoint the shard at its applied index: the log up to it goes
         * once the LSM has persisted this apply (the caller flushes) */
        g->ck_seq = g->last_seq;
        g->ck_index = g->applied;
        g->compact_target = g->applied;
        g->compact_now = true;
        struct node_write_result wr = {.code = NK_CODE_OK};
        wr.res.index = g->applied;
        wr.res.term = g->applied_term;
        r->done(r->ctx, &wr);
        node_request_done(n);
        return;
    }
    if (r->kind == REQ_TRANSFER) {
        node_transfer_start(n, g, r);
        return;
    }
    if (g->damaged) {
        node_fail_req(r, NK_DATA_LOSS, "shard state is damaged on this node (see /health)", NULL);
        node_request_done(n);
        return;
    }
    if (!g->r) {
        node_fail_req(r, NK_UNAVAILABLE, "NOT_LEADER: the shard has no replica on this node",
                      node_leader_hint(n, g));
        node_request_done(n);
        return;
    }
    node_quiesce_wake(n, g);
    node_mark_dirty(n, g);
    if (raft_role(g->r) != RAFT_LEADER) {
        uint64_t lead = raft_lead(g->r);
        if (lead != 0 && lead != n->self_id) {
            node_fail_req(r, NK_UNAVAILABLE, "NOT_LEADER", node_leader_hint(n, g));
            node_request_done(n);
        } else {
            rl_push(&g->parked, r); /* an election is under way */
        }
        return;
    }
    if (r->kind == REQ_PROPOSE) {
        /* The command's time is assigned here, by the leader, in log order:
         * max(wall clock, the last stamp, the shard's replicated time), so
         * timestamps never go backwards within a shard (apply relies on it;
         * kv.h "Time"). */
        uint64_t ts = nk_wall_ms();
        if (ts < g->stamp_ms)
            ts = g->stamp_ms;
        if (ts < g->time_ms)
            ts = g->time_ms;
        if (kv_cmd_stamp(r->data, r->len, ts))
            g->stamp_ms = ts;
        uint64_t index, term;
        nk_status s = raft_propose(g->r, r->data, r->len, &index, &term);
        free(r->data);
        r->data = NULL;
        if (!nk_ok(s)) {
            atomic_fetch_add(&n->st_proposals_failed, 1);
            enum nk_code code = s.code;
            /* none of these appended anything: every one is safe to retry */
            const char *msg = code == NK_RESOURCE_EXHAUSTED ? "shard log is full; retry later"
                              : code == NK_FAILED_PRECONDITION
                                  ? "NOT_LEADER"
                                  : "NOT_LEADER: leadership is being transferred; retry";
            if (code != NK_RESOURCE_EXHAUSTED)
                code = NK_UNAVAILABLE;
            nk_status_free(&s);
            node_fail_req(r, code, msg, node_leader_hint(n, g));
            node_request_done(n);
            return;
        }
        atomic_fetch_add(&n->st_proposals, 1);
        r->index = index;
        r->term = term;
        if (r->trace) {
            r->t_proposed = nk_mono_ns();
            r->round = n->round_no;
            struct obs_span *sp = obs_trace_span(r->trace, 0, "node.queue", r->t0, r->t_proposed);
            obs_span_attr(sp, "norikv.shard", "%u", g->id);
        }
        rl_push(&g->pending, r);
    } else {
        r->read_id = ++n->next_read_id;
        nk_status s = raft_read_index(g->r, r->read_id);
        if (!nk_ok(s)) {
            enum nk_code code = s.code == NK_RESOURCE_EXHAUSTED ? NK_RESOURCE_EXHAUSTED
                                                                : NK_UNAVAILABLE;
            nk_status_free(&s);
            node_fail_req(r, code,
                     code == NK_RESOURCE_EXHAUSTED ? "too many reads waiting" : "NOT_LEADER",
                     node_leader_hint(n, g));
            node_request_done(n);
            return;
        }
        r->index = 0;
        rl_push(&g->reads, r);
    }
}

/* A traced proposal's spans from its log write to its apply, and the commit
 * latency with the trace as its exemplar. */
static void trace_settled(struct node *n, struct group *g, const struct req *r)
{
    struct obs_trace *t = r->trace;
    uint64_t now = nk_mono_ns();
    const __typeof__(n->appends[0]) *ap = &n->appends[r->round % NK_ARRAY_LEN(n->appends)];
    if (ap->round == r->round) {
        struct obs_span *sp = obs_trace_span(t, 0, "raft.log_append", ap->start, ap->end);
        obs_span_attr(sp, "norikv.fsync", "%s", ap->synced ? "true" : "false");
    }
    struct obs_span *sp = obs_trace_span(t, 0, "raft.commit", r->t_proposed,
                                         n->commit_seen_ns > r->t_proposed ? n->commit_seen_ns
                                                                           : r->t_proposed);
    obs_span_attr(sp, "norikv.shard", "%u", g->id);
    obs_span_attr(sp, "raft.index", "%" PRIu64, r->index);
    obs_span_attr(sp, "raft.term", "%" PRIu64, r->term);
    uint64_t a0 = n->apply_t0 >= n->commit_seen_ns ? n->apply_t0 : n->commit_seen_ns;
    obs_trace_span(t, 0, "kv.apply", a0, now);
    obs_hist_observe_exemplar(n->m_commit, now > r->t0 ? (now - r->t0) / 1000 : 0, t->trace_id,
                              t->spans[0].span_id);
}

/* Completes the pending proposals that entry (index, term) settles. The
 * settled prefix is dropped once per round (settle_done), not per entry. */
void node_settle_proposals(struct node *n, struct group *g, uint64_t index, uint64_t term,
                             const struct kv_result *res, const struct vec_result *vres)
{
    size_t k = g->settled;
    while (k < g->pending.n && g->pending.v[k].index <= index) {
        struct req *r = &g->pending.v[k];
        if (r->index == index && r->term == term && res) {
            struct node_write_result wr = {.code = NK_CODE_OK, .res = *res, .vres = vres};
            if (r->trace)
                trace_settled(n, g, r);
            else
                obs_hist_observe_since(n->m_commit, r->t0);
            r->done(r->ctx, &wr);
        } else {
            /* another entry took its place: the proposal was not applied */
            node_fail_req(r, NK_UNAVAILABLE, "NOT_LEADER: leadership changed before commit",
                     node_leader_hint(n, g));
        }
        node_request_done(n);
        k++;
    }
    g->settled = k;
}

void node_settle_done(struct node *n, struct group *g)
{
    if (g->settled)
        atomic_fetch_add_explicit(&n->st_pending_moves, g->pending.n - g->settled,
                                  memory_order_relaxed);
    rl_drop_front(&g->pending, g->settled);
    g->settled = 0;
}
