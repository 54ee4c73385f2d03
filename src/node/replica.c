/*
 * replica.c: shard replicas that appear on and disappear from a running node
 * (docs/membership.md "Replicas").
 *
 * A replica is created when a peer that leads the shard sends this node a
 * leader's message (append, heartbeat, snapshot) for a shard it has no
 * replica of: the leader added this node to the shard's configuration as a
 * learner. The new group starts empty (no log, no configuration, no state),
 * rejects the leader's append, and is initialized by the snapshot the leader
 * streams next (snapshot.c); from then on it is an ordinary replica.
 *
 * A replica is deleted once a configuration that no longer lists this node
 * is committed: either this replica applies it, or (a replica cut off before
 * the change reached it: it was dead, or removed while lagging) the shard's
 * leader announces it in its LEADS frame. Only a committed removal counts,
 * never one still in the log: a voter that dropped its log while still
 * counted in a quorum could let a committed entry be lost. Deleting writes a
 * RESET of the group to the raft log first (durable), then deletes the
 * shard's keys from the LSM; a crash in between leaves keys without a
 * replica, which the next open deletes (node_replica_clear_orphan).
 *
 * Everything here runs on the Ready loop thread.
 */
#include "node/internal.h"

#include <inttypes.h>

#include "lsm/lsm.h"

bool node_conf_lists(const struct raft_conf_state *c, uint64_t id)
{
    for (uint8_t i = 0; i < c->n_voters; i++)
        if (c->voters[i] == id)
            return true;
    for (uint8_t i = 0; i < c->n_voters_out; i++)
        if (c->voters_out[i] == id)
            return true;
    for (uint8_t i = 0; i < c->n_learners; i++)
        if (c->learners[i] == id)
            return true;
    return false;
}

bool node_conf_equal(const struct raft_conf_state *a, const struct raft_conf_state *b)
{
    return a->n_voters == b->n_voters && a->n_voters_out == b->n_voters_out &&
           a->n_learners == b->n_learners &&
           !memcmp(a->voters, b->voters, a->n_voters * sizeof(a->voters[0])) &&
           !memcmp(a->voters_out, b->voters_out, a->n_voters_out * sizeof(a->voters[0])) &&
           !memcmp(a->learners, b->learners, a->n_learners * sizeof(a->voters[0]));
}

static void conf_to_view(const struct raft_conf_state *c, uint64_t term, struct shard_conf *out)
{
    memset(out, 0, sizeof *out);
    out->term = term;
    for (uint8_t i = 0; i < c->n_voters && out->n < NODE_VIEW_REPLICAS; i++)
        out->ids[out->n++] = c->voters[i];
    for (uint8_t i = 0; i < c->n_voters_out && out->n < NODE_VIEW_REPLICAS; i++) {
        bool dup = false;
        for (uint8_t k = 0; k < out->n; k++)
            dup |= out->ids[k] == c->voters_out[i];
        if (!dup)
            out->ids[out->n++] = c->voters_out[i];
    }
    for (uint8_t i = 0; i < c->n_learners && out->n_learners < NODE_VIEW_REPLICAS; i++) {
        bool voter = false;
        for (uint8_t k = 0; k < out->n; k++)
            voter |= out->ids[k] == c->learners[i];
        if (!voter)
            out->learners[out->n_learners++] = c->learners[i];
    }
}

void node_publish_conf(struct node *n, struct group *g)
{
    node_publish_conf_of(n, g, g->r ? raft_applied_conf(g->r) : NULL);
}

void node_publish_conf_of(struct node *n, struct group *g, const struct raft_conf_state *c)
{
    if (c)
        g->listed = node_conf_lists(c, n->self_id);
    struct shard_conf sc = {0};
    if (c)
        conf_to_view(c, 0, &sc);
    pthread_mutex_lock(&n->vmu);
    n->sconf[g->id] = sc;
    n->view_local++;
    pthread_mutex_unlock(&n->vmu);
}

/* Deletes every LSM key of the shard (its KV and vector state, feed,
 * applied record). Not synced: a crash that loses it leaves an orphan,
 * which open deletes again. */
static nk_status delete_state(struct node *n, uint32_t shard)
{
    uint8_t lo[2], hi[3];
    size_t hi_len;
    node_shard_range(shard, lo, hi, &hi_len);
    struct lsm_iter_options io = {.lower = nk_slice_make(lo, 2),
                                  .upper = nk_slice_make(hi, hi_len)};
    struct lsm_iter *it;
    NK_TRY(lsm_iter_new(n->db, &io, &it));
    struct lsm_batch b;
    lsm_batch_init(&b);
    nk_status s = NK_OK;
    uint64_t keys = 0;
    static const struct lsm_write_options wo = {.skip_wal = true};
    for (lsm_iter_seek_first(it); lsm_iter_valid(it) && nk_ok(s); lsm_iter_next(it)) {
        s = lsm_batch_delete(&b, lsm_iter_key(it));
        if (++keys % 4096 == 0 && nk_ok(s)) {
            /* bounded batches: a shard may hold millions of keys */
            s = lsm_write(n->db, &wo, &b);
            lsm_batch_free(&b);
            lsm_batch_init(&b);
        }
    }
    if (nk_ok(s))
        s = lsm_iter_status(it);
    lsm_iter_free(it);
    if (nk_ok(s))
        s = lsm_write(n->db, &wo, &b);
    lsm_batch_free(&b);
    kv_shard_forget(n->kv, (uint16_t)shard);
    if (nk_ok(s))
        s = node_vec_reload(n, shard); /* now empty */
    return s;
}

nk_status node_replica_clear_orphan(struct node *n, uint32_t shard)
{
    uint64_t at = 0, ai = 0;
    nk_status s = kv_applied(n->kv, (uint16_t)shard, &at, &ai);
    if (!nk_ok(s) || (at == 0 && ai == 0))
        return s;
    NK_WARN(MODULE,
            "shard %u: state applied up to %" PRIu64 " is here without a replica (a deletion "
            "cut short): deleting it",
            shard, ai);
    return delete_state(n, shard);
}

struct group *node_replica_create(struct node *n, uint32_t shard, const struct raft_msg *m,
                                  uint64_t from)
{
    struct group *g = &n->groups[shard];
    if (g->r || g->damaged || g->rebuilding || !n->bootstrapped)
        return NULL;
    if (m->type != RAFT_MSG_APPEND && m->type != RAFT_MSG_HEARTBEAT &&
        m->type != RAFT_MSG_SNAPSHOT)
        return NULL; /* only a leader adds a replica */
    if (node_member_index(n, from) < 0)
        return NULL;
    if (m->term < g->tomb_term ||
        (m->term == g->tomb_term &&
         ((m->type == RAFT_MSG_APPEND && m->index < g->tomb_index) ||
          (m->type == RAFT_MSG_HEARTBEAT && m->commit <= g->tomb_index) ||
          (m->type == RAFT_MSG_SNAPSHOT && m->snapshot &&
           m->snapshot->index < g->tomb_index))))
        return NULL; /* sent before this node's removal from the shard */
    /* nothing of an earlier replica may remain: its log was reset when it
     * was deleted; state left by a crash in the middle goes now */
    struct raftlog_hardstate hs;
    uint64_t ci, ct;
    raftlog_get_hardstate(n->log, shard, &hs);
    raftlog_get_compacted(n->log, shard, &ci, &ct, &n->conf_buf);
    if (hs.term || ci || n->conf_buf.len || raftlog_last_index(n->log, shard)) {
        NK_WARN(MODULE, "shard %u: a leader's message for a replica this node does not run, "
                        "but its raft log holds state: ignored",
                shard);
        return NULL;
    }
    nk_status s = node_replica_clear_orphan(n, shard);
    if (nk_ok(s))
        s = node_group_start(n, g, 0, 0);
    if (!nk_ok(s)) {
        NK_ERROR(MODULE, "shard %u: cannot start a new replica: %s", shard, nk_status_msg(s));
        nk_status_free(&s);
        return NULL;
    }
    g->synced_term = g->synced_vote = 0;
    n->n_hosted++;
    atomic_store_explicit(&n->pub[shard].hosted, true, memory_order_release);
    node_publish_conf(n, g);
    atomic_fetch_add_explicit(&n->st_replicas_created, 1, memory_order_relaxed);
    char name[128] = "";
    pthread_mutex_lock(&n->vmu);
    int mi = node_member_index(n, from);
    if (mi >= 0)
        snprintf(name, sizeof name, "%s", n->members[mi].name);
    pthread_mutex_unlock(&n->vmu);
    NK_INFO(MODULE, "shard %u: a new replica starts here (added by its leader %s)", shard, name);
    obs_event_emit(obs_events_default(), OBS_EV_SHARD_MOVE, shard,
                   "shard %u: replica created on %s (leader %s); a snapshot initializes it",
                   shard, n->name, name);
    return g;
}

/*
 * After configuration changes were applied. The replica deletes itself only
 * when the change that dropped it is the last entry it holds: a new replica
 * catching up from the start of an uncompacted log applies old
 * configurations that never listed it (or listed it before an earlier
 * removal), and must not take them for its own removal. A replica dropped
 * by a change whose log goes on without it hears of it from the leader's
 * LEADS2 instead (node_replica_on_gc).
 */
void node_replica_check_conf(struct node *n, struct group *g)
{
    node_publish_conf(n, g);
    bool listed = node_conf_lists(raft_applied_conf(g->r), n->self_id);
    if (!g->removing && g->listed && !listed && g->applied == raft_last_index(g->r)) {
        g->removing = true;
        n->n_removing++;
    }
    g->listed = listed;
}

/* The shard's leader (at a term not below ours) applied a configuration
 * without this node, and its latest one lacks it too. */
void node_replica_on_gc(struct node *n, const uint8_t *p, size_t len)
{
    struct nk_reader r;
    nk_reader_init(&r, p + 1, len - 1);
    uint64_t shard = 0, term = 0;
    struct nk_slice blob;
    nk_reader_varint64(&r, &shard);
    nk_reader_varint64(&r, &term);
    nk_reader_lenbytes(&r, 4096, &blob);
    struct raft_conf_state c;
    if (r.bad || shard >= n->nshards || !node_conf_decode(blob.data, blob.len, &c))
        return;
    struct group *g = &n->groups[shard];
    /* A replica that still thinks it leads at a lower term was deposed
     * without hearing of it: it handed leadership over and went quiet
     * (quiesce.c), and the new leader removed it and stopped talking to it. */
    if (!g->r || g->removing || g->damaged || node_conf_lists(&c, n->self_id))
        return;
    if ((raft_role(g->r) == RAFT_LEADER && term <= raft_term(g->r)) || term < raft_term(g->r)) {
        /* a leader at a lower term than ours may be a stale one: not taken,
         * and said once per shard so that a replica stranded at a higher
         * term shows up in the log */
        if (!g->gc_ignored_logged) {
            g->gc_ignored_logged = true;
            NK_WARN(MODULE,
                    "shard %" PRIu64 ": a leader at term %" PRIu64 " says this replica was "
                    "removed, but it is %s at term %" PRIu64 ": kept",
                    shard, term, raft_role(g->r) == RAFT_LEADER ? "leader" : "a follower",
                    raft_term(g->r));
        }
        return;
    }
    NK_INFO(MODULE,
            "shard %" PRIu64 ": its leader (term %" PRIu64 ") committed a configuration without "
            "this node: the replica here is deleted",
            shard, term);
    g->removing = true;
    n->n_removing++;
}

static void destroy(struct node *n, struct group *g)
{
    const char *why = "NOT_LEADER: the shard's replica moved off this node";
    /* proposed writes may still commit under the new configuration: their
     * outcome is unknown, never "not leader" (which says: not applied) */
    node_fail_list(n, &g->pending, NK_UNAVAILABLE,
                   "the shard's replica moved off this node while the write was in flight: "
                   "its outcome is unknown");
    node_fail_list(n, &g->parked, NK_UNAVAILABLE, why);
    node_fail_list(n, &g->reads, NK_UNAVAILABLE, why);
    if (raft_is_quiesced(g->r))
        atomic_fetch_sub_explicit(&n->st_quiet_now, 1, memory_order_relaxed);
    if (g->last_lead == n->self_id)
        atomic_fetch_sub(&n->st_led, 1);
    if (g->dirty) {
        size_t w = 0;
        for (size_t i = 0; i < n->ndirty; i++)
            if (n->dirty[i] != g->id)
                n->dirty[w++] = n->dirty[i];
        n->ndirty = w;
    }
    uint64_t tomb_term = raft_term(g->r), tomb_index = g->applied;
    raft_free(g->r);
    g->r = NULL;
    struct shard_pub *p = &n->pub[g->id];
    atomic_store_explicit(&p->hosted, false, memory_order_release);
    atomic_store_explicit(&p->lease_until_ns, 0, memory_order_release);
    atomic_store_explicit(&p->lead, 0, memory_order_release);
    atomic_store_explicit(&p->lead_term, 0, memory_order_release);
    atomic_store_explicit(&p->applied, 0, memory_order_release);
    atomic_store_explicit(&p->compacted, 0, memory_order_release);
    /* the log first (durable): from here on nothing of the replica runs */
    raftlog_batch_reset(n->batch, g->id);
    nk_status s = raftlog_write(n->log, n->batch);
    raftlog_batch_clear(n->batch);
    if (nk_ok(s))
        s = delete_state(n, g->id);
    if (!nk_ok(s)) {
        /* the next open finishes it (an orphan is deleted there) */
        NK_ERROR(MODULE, "shard %u: deleting the replica: %s", g->id, nk_status_msg(s));
        nk_status_free(&s);
    }
    free(g->pending.v);
    free(g->parked.v);
    free(g->reads.v);
    uint32_t id = g->id;
    memset(g, 0, sizeof *g);
    g->id = id;
    g->node = n;
    g->tomb_term = tomb_term;
    g->tomb_index = tomb_index;
    n->n_hosted--;
    node_publish_conf(n, g);
    atomic_fetch_add_explicit(&n->st_replicas_removed, 1, memory_order_relaxed);
    NK_INFO(MODULE, "shard %u: replica deleted from this node", id);
    obs_event_emit(obs_events_default(), OBS_EV_SHARD_MOVE, id,
                   "shard %u: replica removed from %s", id, n->name);
}

void node_replica_reap(struct node *n)
{
    if (n->n_removing == 0)
        return;
    for (uint32_t i = 0; i < n->nshards && n->n_removing; i++) {
        struct group *g = &n->groups[i];
        if (!g->removing)
            continue;
        n->n_removing--;
        if (g->r)
            destroy(n, g);
        else
            g->removing = false;
    }
}
