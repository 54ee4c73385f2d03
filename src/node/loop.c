/*
 * loop.c: the Ready loop. Each round runs these phases in order (run_round):
 *   1. start the requests taken from the queue (bounded in count and bytes)
 *   2. tick every awake group when a tick is due, expiring overdue calls
 *   3. gather the Ready of every dirty group into one raft log write
 *   4. make it durable: one write, one fdatasync for all groups
 *   5. apply committed entries, settle proposals, match and serve reads
 *   6. advance, publish leadership and leases, restart parked requests
 *   7. let groups without work go quiet (quiescence), notify view watchers
 */
#include "node/internal.h"

#include <inttypes.h>


void node_mark_dirty(struct node *n, struct group *g)
{
    if (!g->r)
        return; /* no replica here (any more: replica.c deleted it) */
    if (!g->dirty) {
        g->dirty = true;
        n->dirty[n->ndirty++] = g->id;
    }
}

const char *node_leader_hint(struct node *n, struct group *g)
{
    return node_hint_for_shard(n, g->id, n->hint_loop, sizeof n->hint_loop);
}

/*
 * Raft changes for the event ring. At a start or a failover hundreds of
 * shards change at once; past EV_SHARD_DETAIL shards in one round the round's
 * changes are summed into one event per kind so they do not wash older
 * events out of the ring.
 */
#define EV_SHARD_DETAIL 8

struct raft_ev_round {
    uint32_t leader_changes, role_changes, term_changes, became_leader;
    uint64_t max_term;
};

/* Copies the name of raft id `id` (node_set_client_addr may rename us: vmu). */
static const char *member_name(struct node *n, uint64_t id, char *buf, size_t cap)
{
    pthread_mutex_lock(&n->vmu);
    int i = id ? node_member_index(n, id) : -1;
    snprintf(buf, cap, "%s", id == n->self_id ? n->name : i >= 0 ? n->members[i].name : "");
    pthread_mutex_unlock(&n->vmu);
    return buf;
}

static void note_raft_events(struct node *n, struct group *g, uint64_t old_lead, uint64_t lead,
                             struct raft_ev_round *rr)
{
    int role = (int)raft_role(g->r);
    uint64_t term = raft_term(g->r);
    struct obs_events *ev = obs_events_default();
    bool detail = rr->leader_changes + rr->role_changes + rr->term_changes < EV_SHARD_DETAIL;
    if (term > rr->max_term)
        rr->max_term = term;
    if (lead != old_lead) {
        rr->leader_changes++;
        obs_counter_inc(n->m_leader_changes);
        if (lead == n->self_id)
            rr->became_leader++;
        if (detail) {
            char now[OBS_ATTR_NAME_MAX], was[OBS_ATTR_NAME_MAX];
            member_name(n, lead, now, sizeof now);
            member_name(n, old_lead, was, sizeof was);
            struct obs_event_attrs a = {.set = OBS_ATTR_TERM, .term = term};
            obs_attrs_set_node(&a, now);
            if (lead)
                obs_event_emit_attrs(ev, OBS_EV_LEADER_CHANGE, g->id, &a,
                                     "shard %u: leader %s (was %s), term %" PRIu64, g->id, now,
                                     old_lead ? was : "none", term);
            else
                obs_event_emit_attrs(ev, OBS_EV_LEADER_CHANGE, g->id, &a,
                                     "shard %u: leader %s lost, term %" PRIu64, g->id, was, term);
        }
    }
    if (role != g->ev_role) {
        rr->role_changes++;
        if (detail) {
            char self[OBS_ATTR_NAME_MAX];
            member_name(n, n->self_id, self, sizeof self);
            struct obs_event_attrs a = {.set = OBS_ATTR_TERM, .term = term};
            obs_attrs_set_role(&a, raft_role_name((enum raft_role)role));
            obs_attrs_set_node(&a, self);
            obs_event_emit_attrs(ev, OBS_EV_ROLE_CHANGE, g->id, &a, "shard %u: %s became %s",
                                 g->id, self, raft_role_name((enum raft_role)role));
        }
        g->ev_role = role;
    }
    if (term != g->ev_term) {
        rr->term_changes++;
        if (detail && g->ev_term) {
            struct obs_event_attrs a = {.set = OBS_ATTR_TERM, .term = term};
            obs_event_emit_attrs(ev, OBS_EV_TERM_CHANGE, g->id, &a,
                                 "shard %u: term %" PRIu64 " -> %" PRIu64, g->id, g->ev_term, term);
        }
        g->ev_term = term;
    }
}

static void flush_raft_events(struct node *n, const struct raft_ev_round *rr)
{
    if (rr->leader_changes + rr->role_changes + rr->term_changes < EV_SHARD_DETAIL)
        return; /* each was reported on its own */
    struct obs_events *ev = obs_events_default();
    char self[OBS_ATTR_NAME_MAX];
    member_name(n, n->self_id, self, sizeof self);
    struct obs_event_attrs a = {.set = OBS_ATTR_COUNT | OBS_ATTR_TERM, .term = rr->max_term};
    obs_attrs_set_node(&a, self);
    if (rr->leader_changes) {
        a.count = rr->leader_changes;
        obs_event_emit_attrs(ev, OBS_EV_LEADER_CHANGE, OBS_NO_SHARD, &a,
                             "%u shards changed leader (%u now led by %s), terms up to %" PRIu64,
                             rr->leader_changes, rr->became_leader, self, rr->max_term);
    }
    if (rr->role_changes) {
        a.count = rr->role_changes;
        obs_event_emit_attrs(ev, OBS_EV_ROLE_CHANGE, OBS_NO_SHARD, &a,
                             "%s changed role in %u shards", self, rr->role_changes);
    }
}

/* Publishes what other threads read without asking the loop. */
void node_publish(struct node *n, struct group *g)
{
    struct shard_pub *p = &n->pub[g->id];
    uint64_t lead = raft_lead(g->r);
    bool leader = raft_role(g->r) == RAFT_LEADER;
    if (leader && g->applied_term == raft_term(g->r))
        g->ready_for_reads = true;
    if (!leader)
        g->ready_for_reads = false;
    uint64_t lease = 0;
    if (leader && g->ready_for_reads) {
        if (g->single_voter) {
            lease = UINT64_MAX; /* no other node can lead a group we are the only voter of */
        } else {
            uint64_t idx, sent;
            uint32_t lt;
            if (raft_lease_read(g->r, &idx) && g->applied >= idx &&
                raft_lease_anchor(g->r, &sent, &lt))
                lease = node_lease_until(&g->ticks, sent, lt,
                                         (uint64_t)n->opt.tick_ms * 1000000ULL);
        }
    }
    atomic_store_explicit(&p->lease_until_ns, lease, memory_order_release);
    atomic_store_explicit(&p->lead_term, (leader ? n->self_id : lead) ? raft_term(g->r) : 0,
                          memory_order_release);
    atomic_store_explicit(&p->lead, leader ? n->self_id : lead, memory_order_release);
    atomic_store_explicit(&p->applied, g->applied, memory_order_release);
}

void node_expire_list(struct node *n, struct req_list *l, uint64_t now, enum nk_code code,
                        const char *msg)
{
    size_t w = 0;
    for (size_t i = 0; i < l->n; i++) {
        if (l->v[i].deadline <= now) {
            node_fail_req(&l->v[i], code, msg, NULL);
            node_request_done(n);
        } else {
            l->v[w++] = l->v[i];
        }
    }
    l->n = w;
}

void node_fail_list(struct node *n, struct req_list *l, enum nk_code code, const char *msg)
{
    for (size_t i = 0; i < l->n; i++) {
        node_fail_req(&l->v[i], code, msg, NULL);
        node_request_done(n);
    }
    l->n = 0;
}

/*
 * Queues the group's outgoing messages for their peers. A MsgSnap is not
 * sent as such: the shard's state is streamed instead (snapshot.c).
 */
static void queue_messages(struct node *n, struct group *g, const struct raft_ready *rd)
{
    for (size_t k = 0; k < rd->n_msgs; k++) {
        const struct raft_msg *m = &rd->msgs[k];
        if (m->type == RAFT_MSG_SNAPSHOT)
            node_snap_request(n, g, m);
        else
            node_peers_queue(n, g->id, m);
    }
}

/* One round: requests, ticks, Ready of every dirty group, one durable write,
 * apply. False when the node is stopping while the round could not finish
 * (the loop then ends without advancing; nothing unfinished was acknowledged). */
static bool run_round(struct node *n, struct req *batch, size_t nbatch, bool tick, uint64_t now)
{
    n->round_no++;
    node_peers_take_inbound(n);
    for (size_t i = 0; i < nbatch; i++) {
        struct group *g = &n->groups[batch[i].shard];
        node_start_request(n, g, &batch[i]);
    }
    if (tick) {
        node_quiesce_tick(n, now);
        for (uint32_t i = 0; i < n->nshards; i++) {
            struct group *g = &n->groups[i];
            if (!g->r || g->damaged || raft_is_quiesced(g->r))
                continue;
            raft_tick(g->r);
            node_tick_ring_note(&g->ticks, raft_now(g->r), now);
            node_mark_dirty(n, g);
            node_expire_list(n, &g->pending, now, NK_DEADLINE_EXCEEDED,
                        "COMMIT_TIMEOUT: not committed before the deadline");
            node_expire_list(n, &g->parked, now, NK_UNAVAILABLE,
                        "QUORUM_UNAVAILABLE: no leader for the shard before the deadline");
            node_expire_list(n, &g->reads, now, NK_UNAVAILABLE,
                        "QUORUM_UNAVAILABLE: leadership not confirmed before the deadline");
        }
        node_expiry_tick(n);
    }

    /* gather Ready from every dirty group. The write is synced when it holds
     * entries or a new term or vote; a hard state that only moved its commit
     * index is written without a sync (Raft recovers the commit index), so a
     * one-voter group's entry is fsynced once, not twice, before it applies. */
    bool must_sync = false;
    size_t nd = n->ndirty;
    struct raft_ready *rds = nk_malloc((nd ? nd : 1) * sizeof(*rds));
    bool *has = nk_calloc(nd ? nd : 1, sizeof(bool));
    for (size_t i = 0; i < nd; i++) {
        struct group *g = &n->groups[n->dirty[i]];
        if (g->damaged || !raft_has_ready(g->r))
            continue;
        has[i] = true;
        raft_ready(g->r, &rds[i]);
        struct raft_ready *rd = &rds[i];
        if (rd->snapshot) {
            nk_status ss = node_snap_install(n, g, rd->snapshot);
            if (!nk_ok(ss)) {
                /* the group cannot advance without it: stop that shard */
                has[i] = false;
                node_mark_damaged(n, g, ss);
                nk_status_free(&ss);
                continue;
            }
        }
        queue_messages(n, g, rd);
        if (rd->n_entries) {
            struct raftlog_entry ents[256];
            size_t k = 0;
            for (size_t e = 0; e < rd->n_entries; e++) {
                const struct raft_entry *re = &rd->entries[e];
                ents[k++] = (struct raftlog_entry){re->index, re->term, re->type,
                                                   nk_slice_make(re->data, re->len)};
                if (k == NK_ARRAY_LEN(ents) || e + 1 == rd->n_entries) {
                    raftlog_batch_entries(n->batch, g->id, ents, k);
                    k = 0;
                }
            }
        }
        if (rd->hard_state_changed) {
            struct raftlog_hardstate hs = {rd->hard_state.term, rd->hard_state.vote,
                                           rd->hard_state.commit};
            raftlog_batch_hardstate(n->batch, g->id, &hs);
            if (hs.term != g->synced_term || hs.vote != g->synced_vote) {
                must_sync = true;
                g->synced_term = hs.term;
                g->synced_vote = hs.vote;
            }
        }
        if (rd->n_entries)
            must_sync = true;
    }
    node_snap_sweep(n);
    /* one write, one fdatasync for every group */
    size_t round_entries = 0;
    for (size_t i = 0; i < nd; i++)
        if (has[i])
            round_entries += rds[i].n_entries;
    obs_hist_observe(n->m_round_entries, round_entries);
    obs_counter_inc(n->m_rounds);
    /* a leader's appends and heartbeats go out while its own log is being
     * made durable (Raft thesis 10.2.1): raft counts the leader's entries
     * only once raft_advance says they are on disk */
    node_peers_flush(n, true);
    if (!raftlog_batch_empty(n->batch)) {
        uint64_t tw = nk_mono_ns();
        nk_status s = raftlog_write_ex(n->log, n->batch, must_sync);
        if (must_sync)
            obs_hist_observe_since(n->m_fsync, tw);
        /* A failed write (a full disk, an I/O error) acknowledged nothing:
         * retry the same batch until it is durable, refusing new work with
         * the reason meanwhile; nothing of this round goes on before it */
        for (int attempt = 0; !nk_ok(s); attempt++) {
            node_set_degraded(n, s, "writing the raft log");
            nk_status_free(&s);
            if (!node_retry_wait(n, attempt)) {
                free(rds);
                free(has);
                return false; /* stopping: nothing of this round was acknowledged */
            }
            s = raftlog_write_ex(n->log, n->batch, must_sync);
        }
        node_clear_degraded(n);
        if (must_sync)
            atomic_fetch_add_explicit(&n->st_fsyncs, 1, memory_order_relaxed);
        raftlog_batch_clear(n->batch);
        __typeof__(n->appends[0]) *ap = &n->appends[n->round_no % NK_ARRAY_LEN(n->appends)];
        ap->round = n->round_no;
        ap->start = tw;
        ap->end = nk_mono_ns();
        ap->synced = must_sync;
    }
    /* what applies below was committed by now (traces' "raft.commit" end) */
    n->commit_seen_ns = nk_mono_ns();
    /* votes and responses promise what is now durable */
    node_peers_flush(n, false);
    /* messages: only this node exists until the transport lands */
    bool view_changed = false;
    for (size_t i = 0; i < nd; i++) {
        if (!has[i])
            continue;
        struct group *g = &n->groups[n->dirty[i]];
        struct raft_ready *rd = &rds[i];
        bool applied_all = true;
        for (size_t e = 0; e < rd->n_committed && applied_all; e++)
            applied_all = node_apply_entry(n, g, &rd->committed[e]);
        if (!applied_all) {
            if (g->damaged)
                continue; /* that group stops; the others go on */
            free(rds);
            free(has);
            return false; /* stopping while an apply could not be made */
        }
        node_settle_done(n, g);
        node_match_reads(n, g, rd);
        bool had_cc = false;
        for (size_t e = 0; e < rd->n_committed; e++)
            had_cc |= rd->committed[e].type == RAFT_ENTRY_CONF_CHANGE;
        uint64_t last_committed = rd->n_committed ? rd->committed[rd->n_committed - 1].index : 0;
        raft_advance(g->r, rd);
        if (had_cc) {
            node_note_conf(g, last_committed);
            node_replica_check_conf(n, g); /* the view; a replica removed from here */
        }
        node_serve_reads(n, g);
    }
    /* after advance: leadership changes, parked requests, publication, quiescence */
    struct raft_ev_round evr = {0};
    for (size_t i = 0; i < nd; i++) {
        struct group *g = &n->groups[n->dirty[i]];
        if (g->damaged)
            continue;
        /* publish first: whoever sees the led-shards count (READY, /readyz)
         * must also see this shard's leader in the view */
        node_publish(n, g);
        uint64_t lead = raft_lead(g->r);
        note_raft_events(n, g, g->last_lead, lead, &evr);
        if (lead != g->last_lead) {
            view_changed = true;
            if (g->last_lead == n->self_id)
                atomic_fetch_sub(&n->st_led, 1);
            if (lead == n->self_id)
                atomic_fetch_add(&n->st_led, 1);
            g->last_lead = lead;
        }
        if (raft_role(g->r) != RAFT_LEADER && lead != 0 && g->parked.n) {
            /* another node won the election: send the waiting calls there
             * (nothing of them was proposed, so they are safe to retry) */
            const char *hint = node_leader_hint(n, g);
            for (size_t k = 0; k < g->parked.n; k++) {
                node_fail_req(&g->parked.v[k], NK_UNAVAILABLE, "NOT_LEADER", hint);
                node_request_done(n);
            }
            g->parked.n = 0;
        } else if (raft_role(g->r) == RAFT_LEADER && g->parked.n) {
            struct req_list parked = g->parked;
            g->parked = (struct req_list){0};
            for (size_t k = 0; k < parked.n; k++)
                node_start_request(n, g, &parked.v[k]);
            free(parked.v);
        }
        if (g->applied > atomic_load_explicit(&n->st_last_applied, memory_order_relaxed))
            atomic_store_explicit(&n->st_last_applied, g->applied, memory_order_relaxed);
    }
    flush_raft_events(n, &evr);
    /* a group stays dirty while it has work; the rest go quiet */
    size_t w = 0;
    for (size_t i = 0; i < n->ndirty; i++) {
        struct group *g = &n->groups[n->dirty[i]];
        bool busy = !g->damaged &&
                    (raft_has_ready(g->r) || g->pending.n || g->reads.n || g->parked.n);
        if (busy) {
            n->dirty[w++] = g->id;
            continue;
        }
        g->dirty = false;
        if (g->damaged)
            continue;
        if (raft_is_idle(g->r) && !raft_is_quiesced(g->r) && g->single_voter &&
            raft_role(g->r) == RAFT_LEADER) {
            /* A single-voter leader has nobody to heartbeat and nobody to
             * lose its lease to: ticking it is pure cost. Groups with peers
             * follow the rules of quiesce.c. */
            node_group_quiesce(n, g);
        } else if (!g->single_voter) {
            node_quiesce_maybe(n, g);
        }
    }
    n->ndirty = w;
    free(rds);
    free(has);
    node_replica_reap(n); /* replicas whose removal this round applied */
    atomic_fetch_add_explicit(&n->st_rounds, 1, memory_order_relaxed);
    pthread_mutex_lock(&n->vmu);
    bool members_changed = n->view_local != n->view_local_seen;
    n->view_local_seen = n->view_local;
    pthread_mutex_unlock(&n->vmu);
    if (view_changed || members_changed) {
        uint64_t epoch = node_view_epoch(n);
        pthread_mutex_lock(&n->vmu);
        bool newer = epoch != n->epoch;
        n->epoch = epoch;
        pthread_mutex_unlock(&n->vmu);
        if (newer)
            node_notify_watchers(n, epoch);
    }
    return true;
}

void *node_loop_main(void *arg)
{
    struct node *n = arg;
    uint64_t tick_ns = (uint64_t)n->opt.tick_ms * 1000000ULL;
    uint64_t next_tick = nk_mono_ns() + tick_ns;
    uint64_t next_maint = nk_mono_ns() + 1000000000ULL;
    uint64_t next_gc = nk_mono_ns() + 10000000000ULL;
    uint64_t sync_ns = n->opt.raft_sync == WAL_SYNC_OS && !n->opt.ephemeral
                           ? n->opt.sync_interval_us * 1000ULL
                           : 0;
    uint64_t next_sync = nk_mono_ns() + sync_ns;
    size_t cap = n->opt.max_batch_entries;
    struct req *batch = nk_malloc(cap * sizeof(*batch));
    for (;;) {
        /* While the LSM is about to stall, take no new requests: applies of
         * committed entries cannot be refused, so the loop must never be the
         * one to wait for a flush. Queued requests wait (a full queue
         * answers RESOURCE_EXHAUSTED); reads served by lease go on. */
        bool hold = lsm_write_would_stall(n->db);
        if (hold)
            atomic_fetch_add_explicit(&n->st_holds, 1, memory_order_relaxed);
        pthread_mutex_lock(&n->qmu);
        while ((n->qlen == 0 || hold) && !node_peers_have_inbound(n) && !n->stopping &&
               n->ndirty == 0 && !n->fetched_ready) {
            uint64_t now = nk_mono_ns();
            if (now >= next_tick)
                break;
            struct timespec ts;
            clock_gettime(CLOCK_MONOTONIC, &ts);
            uint64_t wait = next_tick - now;
            if (hold && wait > 2000000ULL)
                wait = 2000000ULL; /* look at the LSM again soon */
            ts.tv_sec += (time_t)(wait / 1000000000ULL);
            ts.tv_nsec += (long)(wait % 1000000000ULL);
            if (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000L;
            }
            n->loop_sleeping = true;
            pthread_cond_timedwait(&n->qcv, &n->qmu, &ts);
            n->loop_sleeping = false;
            if (hold)
                break; /* a round without requests, then look again */
        }
        if (n->stopping) {
            pthread_mutex_unlock(&n->qmu);
            break;
        }
        bool fetched = n->fetched_ready;
        n->fetched_ready = false;
        /* A round takes at most max_batch_entries requests and
         * max_round_bytes of proposal data (at least one request): the rest
         * waits in the queue for the next round, so one round's log write
         * stays far below the raft log's record limit whatever clients
         * send at once. */
        size_t nb = 0;
        uint64_t bytes = 0;
        while (n->qlen && nb < cap && !hold) {
            const struct req *head = &n->q[n->qhead];
            if (nb > 0 && bytes + head->len > n->opt.max_round_bytes)
                break;
            bytes += head->len;
            batch[nb++] = *head;
            n->qhead = (n->qhead + 1) % n->qcap;
            n->qlen--;
        }
        pthread_mutex_unlock(&n->qmu);
        if (bytes > atomic_load_explicit(&n->st_round_bytes_max, memory_order_relaxed))
            atomic_store_explicit(&n->st_round_bytes_max, bytes, memory_order_relaxed);
        uint64_t now = nk_mono_ns();
        bool tick = now >= next_tick;
        if (tick)
            next_tick = now + tick_ns;
        if (now >= next_maint) {
            node_maybe_compact_logs(n);
            node_advance_gc_clock(n);
            node_balance(n);
            node_peers_send_leads(n);
            node_rebuild_tick(n);
            node_plan_tick(n);
            next_maint = now + 1000000000ULL;
        }
        if (fetched)
            node_fetch_deliver(n);
        if (!run_round(n, batch, nb, tick, now))
            break;
        if (sync_ns && now >= next_sync) {
            nk_status s = raftlog_sync(n->log);
            if (!nk_ok(s)) {
                /* the "batch" policy's window sync: what it covers was
                 * acknowledged under that policy's documented promise;
                 * retried next period */
                node_set_degraded(n, s, "syncing the raft log");
                nk_status_free(&s);
            } else {
                node_clear_degraded(n);
            }
            next_sync = now + sync_ns;
        }
        if (now >= next_gc) {
            nk_status s = raftlog_gc(n->log);
            if (!nk_ok(s)) {
                NK_WARN(MODULE, "raft log gc: %s", nk_status_msg(s));
                nk_status_free(&s);
            }
            next_gc = now + 10000000000ULL;
        }
    }
    free(batch);
    return NULL;
}
