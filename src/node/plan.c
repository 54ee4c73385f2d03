/*
 * plan.c: the placement plan and the replica moves that carry it out
 * (docs/membership.md).
 *
 * The plan is a pure function of the membership as this node knows it:
 * the placement members are the members that are neither draining, nor
 * gone (left, removed), nor dead for longer than cluster.dead_node_timeout;
 * shard s belongs on the first RF of them by rendezvous hashing (the same
 * function that placed it at bootstrap). Every node computes the same plan
 * once SWIM and the INFO frames have told it the same membership; each move
 * is run by the shard's leader, so there is one planner per shard at a time
 * and every step is a Raft configuration change, serialized by the shard's
 * own log.
 *
 * One move, each step a separate configuration change, one at a time per
 * shard:
 *   1. add the new member as a learner (it gets the shard by snapshot, then
 *      the log: replica.c creates it when the leader's first message comes);
 *   2. once its log has caught up, promote it and retire a replica that is
 *      not in the plan, in one change (joint consensus: two voters differ);
 *   3. a replica the plan drops is removed; when that is the leader itself,
 *      it hands leadership to a caught-up voter first.
 * A node leads at most cluster.max_concurrent_moves moves at once (learners
 * it added that have not caught up), and snapshot streams to new replicas
 * are paced by cluster.move_bandwidth (snapshot.c), so that client requests
 * keep their latency while data moves.
 *
 * Everything here runs on the Ready loop thread, once a second; what
 * /meta/placement shows is published under vmu.
 */
#include "node/internal.h"

#include <inttypes.h>

#include "placement/placement.h"
#include "transport/transport.h"

/* A learner counts as caught up once its log is this close to the leader's. */
#define CAUGHT_UP_SLACK 64
#define MAX_SHOWN_MOVES 64

struct plan_move {
    uint32_t shard;
    uint64_t add, remove; /* raft ids (remove 0: none) */
    uint64_t match, last; /* the learner's log and the leader's */
    uint64_t since_ms;    /* nk_mono_ms() when first seen */
    char phase[16];       /* learner, promote, remove, transfer */
};

struct node_plan {
    /* published under vmu */
    struct plan_move moves[MAX_SHOWN_MOVES];
    uint32_t n_moves;
    uint32_t in_flight;        /* learners this node added that have not caught up */
    uint32_t shards_to_move;   /* led shards whose replicas differ from the plan */
    uint64_t last_run_ms;
    /* loop-private: when each shard's current move was first seen */
    uint64_t *since_ms;
    _Atomic uint64_t st_moves_started, st_moves_promoted, st_removals, st_transfers;
};

nk_status node_plan_open(struct node *n)
{
    n->plan = nk_calloc(1, sizeof *n->plan);
    n->plan->since_ms = nk_calloc(n->nshards, sizeof(uint64_t));
    return NK_OK;
}

void node_plan_close(struct node *n)
{
    if (!n->plan)
        return;
    free(n->plan->since_ms);
    free(n->plan);
    n->plan = NULL;
}

/* vmu held: the members replicas belong on, and why each other is not. */
static uint32_t placement_members(struct node *n, uint64_t now_ms, uint64_t *ids)
{
    uint32_t k = 0;
    for (uint32_t i = 0; i < n->n_members; i++) {
        const struct member *m = &n->members[i];
        if (m->id == n->self_id) {
            if (!n->draining)
                ids[k++] = m->id;
            continue;
        }
        if (m->swim_state == SWIM_LEFT || m->draining)
            continue;
        if (m->swim_state == SWIM_DEAD && now_ms - m->state_since_ms >= n->opt.dead_node_timeout_ms)
            continue;
        ids[k++] = m->id;
    }
    return k;
}

static bool in_set(const uint64_t *v, uint32_t n, uint64_t id)
{
    for (uint32_t i = 0; i < n; i++)
        if (v[i] == id)
            return true;
    return false;
}

static bool caught_up(struct group *g, uint64_t id)
{
    uint64_t last = raft_last_index(g->r);
    return raft_progress_match(g->r, id) + CAUGHT_UP_SLACK >= last;
}

static bool propose(struct node *n, struct group *g, const struct raft_conf_state *to,
                    const char *what)
{
    uint64_t idx, term;
    node_quiesce_wake(n, g);
    nk_status s = raft_propose_conf_change(g->r, to, &idx, &term);
    if (!nk_ok(s)) {
        NK_WARN(MODULE, "shard %u: %s: %s", g->id, what, nk_status_msg(s));
        nk_status_free(&s);
        return false;
    }
    node_mark_dirty(n, g);
    NK_INFO(MODULE, "shard %u: %s (entry %" PRIu64 ")", g->id, what, idx);
    return true;
}

static void note_move(struct node_plan *p, struct plan_move *shown, uint32_t *n_shown,
                      uint32_t shard, uint64_t add, uint64_t remove, struct group *g,
                      const char *phase, uint64_t now_ms)
{
    if (!p->since_ms[shard])
        p->since_ms[shard] = now_ms;
    if (*n_shown == MAX_SHOWN_MOVES)
        return;
    struct plan_move *m = &shown[(*n_shown)++];
    m->shard = shard;
    m->add = add;
    m->remove = remove;
    m->match = add ? raft_progress_match(g->r, add) : 0;
    m->last = raft_last_index(g->r);
    m->since_ms = p->since_ms[shard];
    snprintf(m->phase, sizeof m->phase, "%s", phase);
}

/* One step of the move of a shard this node leads; *in_flight counts the
 * learners being caught up (counted before the pass; a learner added here
 * adds one). */
static void plan_shard(struct node *n, struct group *g, const uint64_t *tgt, uint32_t nt,
                       uint32_t *in_flight, struct plan_move *shown, uint32_t *n_shown,
                       uint32_t *to_move, uint64_t now_ms)
{
    struct node_plan *p = n->plan;
    const struct raft_conf_state *ac = raft_applied_conf(g->r);
    if (!node_conf_equal(ac, raft_conf(g->r)) || raft_conf_is_joint(ac)) {
        (*to_move)++;
        note_move(p, shown, n_shown, g->id, 0, 0, g, "changing", now_ms);
        return; /* a change is in flight: one at a time */
    }
    struct raft_conf_state c = *ac;
    /* 1. a learner of the plan: promote it once caught up, retiring a
     * replica the plan drops (not this leader: it hands over first) */
    for (uint8_t i = 0; i < c.n_learners; i++) {
        uint64_t l = c.learners[i];
        if (!in_set(tgt, nt, l))
            continue;
        (*to_move)++;
        uint64_t out = 0;
        for (uint8_t k = 0; k < c.n_voters && !out; k++)
            if (!in_set(tgt, nt, c.voters[k]) && c.voters[k] != n->self_id)
                out = c.voters[k];
        if (!caught_up(g, l)) {
            note_move(p, shown, n_shown, g->id, l, out, g, "learner", now_ms);
            return;
        }
        note_move(p, shown, n_shown, g->id, l, out, g, "promote", now_ms);
        struct raft_conf_state to = c;
        to.n_learners = 0;
        for (uint8_t k = 0; k < c.n_learners; k++)
            if (c.learners[k] != l)
                to.learners[to.n_learners++] = c.learners[k];
        if (out && c.n_voters >= nt) {
            uint8_t w = 0;
            for (uint8_t k = 0; k < c.n_voters; k++)
                if (c.voters[k] != out)
                    to.voters[w++] = c.voters[k];
            to.n_voters = w;
        }
        if (to.n_voters >= RAFT_MAX_MEMBERS)
            return;
        to.voters[to.n_voters++] = l;
        char what[160];
        snprintf(what, sizeof what, "move: promote %016" PRIx64 "%s%016" PRIx64, l,
                 out && to.n_voters == c.n_voters ? ", retire " : "",
                 out && to.n_voters == c.n_voters ? out : 0);
        if (propose(n, g, &to, what))
            atomic_fetch_add_explicit(&p->st_moves_promoted, 1, memory_order_relaxed);
        return;
    }
    /* 2. learners the plan no longer wants (their member left or died) */
    struct raft_conf_state to = c;
    to.n_learners = 0;
    for (uint8_t k = 0; k < c.n_learners; k++)
        if (in_set(tgt, nt, c.learners[k]))
            to.learners[to.n_learners++] = c.learners[k];
    if (to.n_learners != c.n_learners) {
        (*to_move)++;
        propose(n, g, &to, "move: drop learners no longer in the plan");
        return;
    }
    uint64_t missing[PLACEMENT_MAX_RF];
    uint32_t nmiss = 0;
    for (uint32_t i = 0; i < nt; i++)
        if (!raft_conf_is_voter(&c, tgt[i]))
            missing[nmiss++] = tgt[i];
    /* 3. every planned member votes: retire the others */
    if (nmiss == 0) {
        uint64_t extra = 0;
        for (uint8_t k = 0; k < c.n_voters && !extra; k++)
            if (!in_set(tgt, nt, c.voters[k]))
                extra = c.voters[k];
        if (!extra) {
            p->since_ms[g->id] = 0;
            return; /* the shard is where the plan wants it */
        }
        (*to_move)++;
        if (extra == n->self_id) {
            /* leadership first, to a planned voter whose log is current */
            note_move(p, shown, n_shown, g->id, 0, extra, g, "transfer", now_ms);
            /* a different candidate each second: one that cannot take over
             * (its replica restarting, say) does not hold the move up */
            for (uint32_t k = 0; k < nt; k++) {
                uint32_t i = (uint32_t)((now_ms / 1000 + k) % nt);
                if (tgt[i] == n->self_id || !caught_up(g, tgt[i]))
                    continue;
                nk_status s = raft_transfer_leader(g->r, tgt[i]);
                if (nk_ok(s)) {
                    node_quiesce_wake(n, g);
                    node_mark_dirty(n, g);
                    atomic_fetch_add_explicit(&p->st_transfers, 1, memory_order_relaxed);
                }
                nk_status_free(&s);
                break;
            }
            return;
        }
        note_move(p, shown, n_shown, g->id, 0, extra, g, "remove", now_ms);
        to = c;
        to.n_voters = 0;
        for (uint8_t k = 0; k < c.n_voters; k++)
            if (c.voters[k] != extra)
                to.voters[to.n_voters++] = c.voters[k];
        char what[96];
        snprintf(what, sizeof what, "move: remove %016" PRIx64, extra);
        if (propose(n, g, &to, what))
            atomic_fetch_add_explicit(&p->st_removals, 1, memory_order_relaxed);
        return;
    }
    /* 4. a planned member is missing: add it as a learner, if this node
     * has room for another move and the member is reachable */
    (*to_move)++;
    if (*in_flight >= n->opt.max_concurrent_moves)
        return;
    for (uint32_t i = 0; i < nmiss; i++) {
        pthread_mutex_lock(&n->vmu);
        int mi = node_member_index(n, missing[i]);
        bool up = mi >= 0 && n->members[mi].up;
        pthread_mutex_unlock(&n->vmu);
        if (!up || c.n_learners >= RAFT_MAX_MEMBERS)
            continue;
        to = c;
        to.learners[to.n_learners++] = missing[i];
        char what[96];
        snprintf(what, sizeof what, "move: add %016" PRIx64 " as a learner", missing[i]);
        if (propose(n, g, &to, what)) {
            (*in_flight)++;
            atomic_fetch_add_explicit(&p->st_moves_started, 1, memory_order_relaxed);
            note_move(p, shown, n_shown, g->id, missing[i], 0, g, "learner", now_ms);
        }
        return;
    }
}

void node_plan_tick(struct node *n)
{
    struct node_plan *p = n->plan;
    if (!p || !n->clustered)
        return;
    if (atomic_exchange_explicit(&n->members_dirty, false, memory_order_acq_rel)) {
        nk_status s = node_members_save(n);
        if (!nk_ok(s)) {
            NK_WARN(MODULE, "saving the member list: %s", nk_status_msg(s));
            nk_status_free(&s);
            atomic_store(&n->members_dirty, true);
        }
    }
    uint64_t now_ms = nk_mono_ms();
    uint64_t ids[NODE_MAX_MEMBERS];
    pthread_mutex_lock(&n->vmu);
    uint32_t k = placement_members(n, now_ms, ids);
    uint32_t rf = n->rf;
    pthread_mutex_unlock(&n->vmu);
    struct plan_move shown[MAX_SHOWN_MOVES];
    uint32_t n_shown = 0, in_flight = 0, to_move = 0;
    if (k > 0) {
        uint32_t nt = rf < k ? rf : k;
        uint64_t tgt[PLACEMENT_MAX_RF];
        /* the moves already under way count against the bound first */
        for (uint32_t s = 0; s < n->nshards; s++) {
            struct group *g = &n->groups[s];
            if (!g->r || g->damaged || raft_role(g->r) != RAFT_LEADER)
                continue;
            const struct raft_conf_state *c = raft_conf(g->r);
            if (!c->n_learners)
                continue;
            node_placement_replicas(ids, k, s, nt, tgt);
            for (uint8_t i = 0; i < c->n_learners; i++)
                in_flight += in_set(tgt, nt, c->learners[i]) && !caught_up(g, c->learners[i]);
        }
        for (uint32_t s = 0; s < n->nshards; s++) {
            struct group *g = &n->groups[s];
            if (!g->r || g->damaged || g->removing || raft_role(g->r) != RAFT_LEADER ||
                !g->ready_for_reads)
                continue;
            node_placement_replicas(ids, k, s, nt, tgt);
            plan_shard(n, g, tgt, nt, &in_flight, shown, &n_shown, &to_move, now_ms);
        }
    }
    if (n->draining && n->n_hosted == 0 && !atomic_load(&n->leave_wanted)) {
        NK_INFO(MODULE, "drained: no replica is left on this node; it leaves the cluster");
        atomic_store_explicit(&n->leave_wanted, true, memory_order_release);
        obs_event_emit(obs_events_default(), OBS_EV_MEMBERSHIP, OBS_NO_SHARD,
                       "node %s drained: it leaves the cluster", n->name);
    }
    pthread_mutex_lock(&n->vmu);
    memcpy(p->moves, shown, n_shown * sizeof shown[0]);
    p->n_moves = n_shown;
    p->in_flight = in_flight;
    p->shards_to_move = to_move;
    p->last_run_ms = now_ms;
    pthread_mutex_unlock(&n->vmu);
}

/* ------------------------------------------------------------ operators */

nk_status node_drain(struct node *n)
{
    if (!n->clustered)
        return nk_status_make(NK_FAILED_PRECONDITION,
                              "a one-node cluster cannot be drained: there is nowhere to move "
                              "its shards");
    pthread_mutex_lock(&n->vmu);
    bool was = n->draining;
    /* the others must be enough for every shard's replication factor: a
     * drain never lowers it (add a node first, or remove a dead one) */
    uint64_t ids[NODE_MAX_MEMBERS];
    uint32_t others = 0;
    uint32_t k = placement_members(n, nk_mono_ms(), ids);
    for (uint32_t i = 0; i < k; i++)
        others += ids[i] != n->self_id;
    if (!was && others < n->rf) {
        uint32_t rf = n->rf;
        pthread_mutex_unlock(&n->vmu);
        return nk_status_make(NK_FAILED_PRECONDITION,
                              "draining this node would leave %u node(s) for replication factor "
                              "%u: add a node first",
                              others, rf);
    }
    n->draining = true;
    n->view_local++;
    pthread_mutex_unlock(&n->vmu);
    if (!was) {
        NK_TRY(node_members_save(n));
        NK_INFO(MODULE, "draining: every replica of this node moves to the others");
        obs_event_emit(obs_events_default(), OBS_EV_MEMBERSHIP, OBS_NO_SHARD,
                       "node %s is draining", n->name);
    }
    node_peers_announce(n); /* INFO says draining */
    return NK_OK;
}

/* vmu held: the member named `name` (its node_id, or its raft id in hex). */
static int member_by_name(struct node *n, const char *name)
{
    for (uint32_t i = 0; i < n->n_members; i++) {
        char hex[17];
        snprintf(hex, sizeof hex, "%016" PRIx64, n->members[i].id);
        const char *mn = n->members[i].id == n->self_id ? n->name : n->members[i].name;
        if (strcmp(mn, name) == 0 || strcmp(hex, name) == 0)
            return (int)i;
    }
    return -1;
}

/* Any thread (vmu not held): marks member `id` as gone for good. */
void node_member_mark_left(struct node *n, uint64_t id, const char *why)
{
    pthread_mutex_lock(&n->vmu);
    int i = node_member_index(n, id);
    bool changed = i >= 0 && id != n->self_id && n->members[i].swim_state != SWIM_LEFT;
    char name[128] = "";
    if (changed) {
        n->members[i].swim_state = SWIM_LEFT;
        n->members[i].state_since_ms = nk_mono_ms();
        snprintf(name, sizeof name, "%s", n->members[i].name);
        n->view_local++;
    }
    pthread_mutex_unlock(&n->vmu);
    if (!changed)
        return;
    atomic_store_explicit(&n->members_dirty, true, memory_order_release);
    if (n->tp) {
        /* no session with it any more: a process that comes back is not let in */
        nk_status ts = transport_remove_peer(n->tp, id);
        nk_status_free(&ts);
    }
    NK_INFO(MODULE, "member %s removed from the cluster (%s)", name, why);
    struct obs_event_attrs at = {0};
    obs_attrs_set_node(&at, name);
    obs_attrs_set_role(&at, "left");
    obs_event_emit_attrs(obs_events_default(), OBS_EV_MEMBERSHIP, OBS_NO_SHARD, &at,
                         "member %s removed (%s)", name, why);
}

nk_status node_remove_member(struct node *n, const char *name)
{
    pthread_mutex_lock(&n->vmu);
    int i = member_by_name(n, name);
    uint64_t id = i >= 0 ? n->members[i].id : 0;
    uint8_t st = i >= 0 ? n->members[i].swim_state : 0;
    bool up = i >= 0 && n->members[i].up;
    pthread_mutex_unlock(&n->vmu);
    if (i < 0)
        return nk_status_make(NK_NOT_FOUND, "no member named %s", name);
    if (id == n->self_id)
        return nk_status_make(NK_FAILED_PRECONDITION,
                              "%s is the node asked: a running node leaves by DrainNode", name);
    if (st != SWIM_DEAD && st != SWIM_LEFT)
        return nk_status_make(NK_FAILED_PRECONDITION,
                              "member %s is %s%s: only a dead member is removed (drain a live "
                              "one: DrainNode)",
                              name, st ? swim_state_name(st) : "alive",
                              up ? " and connected" : "");
    node_member_mark_left(n, id, "removed by an operator");
    node_peers_send_removed(n, id);
    return NK_OK;
}

void node_plan_stats(struct node *n, struct node_plan_stats *out)
{
    memset(out, 0, sizeof *out);
    struct node_plan *p = n->plan;
    if (!p)
        return;
    out->moves_started = atomic_load(&p->st_moves_started);
    out->moves_promoted = atomic_load(&p->st_moves_promoted);
    out->removals = atomic_load(&p->st_removals);
    out->transfers = atomic_load(&p->st_transfers);
    pthread_mutex_lock(&n->vmu);
    out->in_flight = p->in_flight;
    out->shards_to_move = p->shards_to_move;
    out->draining = n->draining;
    pthread_mutex_unlock(&n->vmu);
}

static const char *member_name(struct node *n, uint64_t id, char *buf, size_t cap)
{
    int i = node_member_index(n, id);
    if (i >= 0)
        snprintf(buf, cap, "%s", n->members[i].id == n->self_id ? n->name : n->members[i].name);
    else
        snprintf(buf, cap, "%016" PRIx64, id);
    return buf;
}

static void json_str(struct nk_buf *b, const char *s)
{
    nk_buf_put_u8(b, '"');
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            nk_buf_put_u8(b, '\\');
            nk_buf_put_u8(b, c);
        } else if (c < 0x20) {
            char e[8];
            snprintf(e, sizeof e, "\\u%04x", c);
            nk_buf_append(b, e, 6);
        } else {
            nk_buf_put_u8(b, c);
        }
    }
    nk_buf_put_u8(b, '"');
}

/*
 * GET /meta/placement (docs/membership.md "The plan"): the members and
 * whether replicas belong on them, replicas per member now (as this node
 * knows the shards' configurations) and in the plan, how many shards differ
 * from the plan, and the moves this node leads with their progress.
 */
void node_placement_json(struct node *n, struct nk_buf *out)
{
    uint64_t now_ms = nk_mono_ms();
    char tmp[256], nm[128];
    pthread_mutex_lock(&n->vmu);
    uint64_t ids[NODE_MAX_MEMBERS];
    uint32_t k = placement_members(n, now_ms, ids);
    uint32_t nt = n->rf < k ? n->rf : k;
    uint32_t now_load[NODE_MAX_MEMBERS] = {0}, plan_load[NODE_MAX_MEMBERS] = {0};
    uint32_t differ = 0, unknown = 0;
    uint64_t moves_min = 0;
    for (uint32_t s = 0; s < n->nshards; s++) {
        uint64_t tgt[PLACEMENT_MAX_RF];
        if (nt)
            node_placement_replicas(ids, k, s, nt, tgt);
        const struct shard_conf *sc = &n->sconf[s];
        for (uint32_t i = 0; i < nt; i++) {
            int mi = node_member_index(n, tgt[i]);
            if (mi >= 0)
                plan_load[mi]++;
        }
        if (!sc->n) {
            unknown++;
            continue;
        }
        bool same = sc->n == nt && sc->n_learners == 0;
        for (uint8_t i = 0; i < sc->n; i++) {
            int mi = node_member_index(n, sc->ids[i]);
            if (mi >= 0)
                now_load[mi]++;
            same = same && in_set(tgt, nt, sc->ids[i]);
        }
        for (uint32_t i = 0; i < nt; i++)
            if (!in_set(sc->ids, sc->n, tgt[i]))
                moves_min++; /* this shard must gain that replica */
        differ += !same;
    }
    nk_buf_append(out, "{\"node\":", 8);
    json_str(out, n->name);
    int w = snprintf(tmp, sizeof tmp,
                     ",\"replication_factor\":%u,\"total_shards\":%u,\"draining\":%s,"
                     "\"dead_node_timeout_ms\":%" PRIu64 ",\"max_concurrent_moves\":%u,"
                     "\"shards_differing\":%u,\"shards_unknown\":%u,\"replicas_to_add\":%" PRIu64
                     ",\"members\":[",
                     n->rf, n->nshards, n->draining ? "true" : "false",
                     n->opt.dead_node_timeout_ms, n->opt.max_concurrent_moves, differ, unknown,
                     moves_min);
    nk_buf_append(out, tmp, (size_t)w);
    for (uint32_t i = 0; i < n->n_members; i++) {
        const struct member *m = &n->members[i];
        bool self = m->id == n->self_id;
        const char *state = self ? "alive" : m->swim_state ? swim_state_name(m->swim_state)
                                         : m->up           ? "alive"
                                                           : "dead";
        bool placed = in_set(ids, k, m->id);
        const char *why = placed                                          ? "placement member"
                          : (self ? n->draining : m->draining)            ? "draining"
                          : m->swim_state == SWIM_LEFT                    ? "left the cluster"
                          : "dead longer than cluster.dead_node_timeout";
        if (i)
            nk_buf_put_u8(out, ',');
        nk_buf_append(out, "{\"name\":", 8);
        json_str(out, self ? n->name : m->name);
        w = snprintf(tmp, sizeof tmp,
                     ",\"id\":\"%016" PRIx64 "\",\"state\":\"%s\",\"in_plan\":%s,\"why\":\"%s\","
                     "\"replicas\":%u,\"planned_replicas\":%u}",
                     m->id, state, placed ? "true" : "false", why, now_load[i], plan_load[i]);
        nk_buf_append(out, tmp, (size_t)w);
    }
    struct node_plan *p = n->plan;
    w = snprintf(tmp, sizeof tmp, "],\"moves_led_here\":{\"in_flight\":%u,\"shards_to_move\":%u,",
                 p ? p->in_flight : 0, p ? p->shards_to_move : 0);
    nk_buf_append(out, tmp, (size_t)w);
    w = snprintf(tmp, sizeof tmp,
                 "\"started_total\":%" PRIu64 ",\"promoted_total\":%" PRIu64
                 ",\"removed_total\":%" PRIu64 ",\"moves\":[",
                 p ? atomic_load(&p->st_moves_started) : 0,
                 p ? atomic_load(&p->st_moves_promoted) : 0, p ? atomic_load(&p->st_removals) : 0);
    nk_buf_append(out, tmp, (size_t)w);
    for (uint32_t i = 0; p && i < p->n_moves; i++) {
        const struct plan_move *m = &p->moves[i];
        if (i)
            nk_buf_put_u8(out, ',');
        w = snprintf(tmp, sizeof tmp, "{\"shard\":%u,\"phase\":\"%s\",\"add\":", m->shard,
                     m->phase);
        nk_buf_append(out, tmp, (size_t)w);
        json_str(out, m->add ? member_name(n, m->add, nm, sizeof nm) : "");
        nk_buf_append(out, ",\"remove\":", 10);
        json_str(out, m->remove ? member_name(n, m->remove, nm, sizeof nm) : "");
        w = snprintf(tmp, sizeof tmp,
                     ",\"learner_index\":%" PRIu64 ",\"leader_index\":%" PRIu64
                     ",\"age_ms\":%" PRIu64 "}",
                     m->match, m->last, now_ms - m->since_ms);
        nk_buf_append(out, tmp, (size_t)w);
    }
    nk_buf_append(out, "]}}", 3);
    pthread_mutex_unlock(&n->vmu);
}
