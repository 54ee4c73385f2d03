/*
 * rebuild.c: a replica whose state is damaged (a table failed its checksum)
 * is rebuilt from the shard's leader, without an operator, on a cluster.
 *
 * Once a second the loop looks at damaged shards. The first time, the
 * group's raft is stopped (it may be between a Ready and its Advance, which
 * raft_free allows) and the shard's key range is compacted: the LSM
 * quarantines the damaged table it meets (moves it aside, never deletes it)
 * and reports its key range; every shard that range touches is damaged too.
 * Then the node asks the shard's leader (SNAP_REQUEST) for the state; the
 * leader streams it like any snapshot (snapshot.c) and the node installs it
 * directly: the range is replaced and flushed, the quarantine of that range
 * resolved, and the group started again at the snapshot's index (its Raft
 * log, hard state and vote kept; a log that ends before the snapshot is
 * compacted to it). The request is repeated every 5 s until a snapshot
 * arrives.
 *
 * The other replicas serve the shard meanwhile. On a one-node cluster there
 * is no one to rebuild from: the shard stays refused (docs/server.md).
 */
#include "node/internal.h"

#include <inttypes.h>

#include "kv/kv.h"
#include "transport/transport.h"

#define FRAME_SNAP_REQUEST 5
#define ASK_EVERY_MS       5000

/* Marks every hosted shard a quarantined table's range touches as damaged. */
static void damage_quarantined(struct node *n)
{
    struct lsm_health h;
    lsm_health(n->db, &h);
    for (size_t q = 0; q < h.nquarantined; q++) {
        const struct lsm_quarantined_table *t = &h.quarantined[q];
        uint32_t first = 0, last = n->nshards - 1;
        if (t->range_known && t->smallest.len >= 2 && t->largest.len >= 2) {
            first = nk_dec_be16(t->smallest.data);
            last = nk_dec_be16(t->largest.data);
        }
        for (uint32_t s = first; s <= last && s < n->nshards; s++) {
            struct group *g = &n->groups[s];
            if (!g->damaged && g->r) {
                nk_status why = nk_status_make(NK_DATA_LOSS, "table %s (quarantined) held "
                                                             "part of its state",
                                               t->path);
                node_mark_damaged(n, g, why);
                nk_status_free(&why);
            }
        }
    }
    lsm_health_free(&h);
}

static void ask(struct node *n, struct group *g)
{
    uint64_t to = atomic_load_explicit(&n->pub[g->id].lead, memory_order_acquire);
    if (to == 0 || to == n->self_id) {
        /* no leader known: any other member that replicates it */
        pthread_mutex_lock(&n->vmu);
        for (uint32_t i = 0; i < n->n_members && !to; i++)
            if (n->members[i].id != n->self_id && n->members[i].up)
                to = n->members[i].id;
        pthread_mutex_unlock(&n->vmu);
    }
    if (!to)
        return;
    uint8_t b[1 + NK_VARINT64_MAX];
    b[0] = FRAME_SNAP_REQUEST;
    size_t k = 1 + nk_enc_varint64(b + 1, g->id);
    nk_status s = transport_send(n->tp, to, TRANSPORT_CLASS_RAFT, b, k);
    nk_status_free(&s);
}

/* Quarantined tables whose every shard is healthy again are resolved whole
 * (renamed *.resolved), so that a restart does not damage those shards anew. */
static void resolve_whole_tables(struct node *n)
{
    struct lsm_health h;
    lsm_health(n->db, &h);
    for (size_t q = 0; q < h.nquarantined; q++) {
        const struct lsm_quarantined_table *t = &h.quarantined[q];
        if (!t->range_known || t->smallest.len < 2 || t->largest.len < 2)
            continue;
        uint32_t first = nk_dec_be16(t->smallest.data), last = nk_dec_be16(t->largest.data);
        bool healthy = true;
        for (uint32_t s = first; s <= last && s < n->nshards && healthy; s++)
            healthy = !n->groups[s].damaged;
        if (healthy)
            lsm_quarantine_resolve(n->db, nk_slice_make(t->smallest.data, t->smallest.len),
                                   nk_slice_make("\xff\xff\xff", 3));
    }
    lsm_health_free(&h);
}

void node_rebuild_tick(struct node *n)
{
    if (!n->clustered || !n->tp)
        return;
    uint64_t now = nk_mono_ms();
    for (uint32_t s = 0; s < n->nshards; s++) {
        struct group *g = &n->groups[s];
        if (!g->damaged)
            continue;
        if (!g->rebuilding) {
            if (g->r) {
                raft_free(g->r);
                g->r = NULL;
                if (n->n_hosted)
                    n->n_hosted--;
                atomic_store_explicit(&n->pub[s].hosted, false, memory_order_release);
            }
            uint8_t lo[2], hi[3];
            size_t hl;
            node_shard_range(s, lo, hi, &hl);
            struct nk_slice a = nk_slice_make(lo, 2), b = nk_slice_make(hi, hl);
            nk_status cs = lsm_compact_range(n->db, &a, &b);
            if (!nk_ok(cs)) {
                NK_WARN(MODULE, "shard %u: compacting the damaged range: %s", s,
                        nk_status_msg(cs));
                nk_status_free(&cs);
            }
            damage_quarantined(n);
            g->rebuilding = true;
            atomic_store_explicit(&n->pub[s].rebuilding, true, memory_order_release);
            NK_WARN(MODULE, "shard %u: rebuilding this replica from the shard's leader", s);
        }
        if (now >= g->rebuild_asked_ms + ASK_EVERY_MS) {
            ask(n, g);
            g->rebuild_asked_ms = now;
        }
    }
}

/* Transport thread: a peer asks for one of our shards' state. */
void node_rebuild_on_request(struct node *n, uint64_t from, const uint8_t *p, size_t len)
{
    uint64_t shard = 0;
    if (!nk_dec_varint64(p + 1, p + len, &shard) || shard >= n->nshards)
        return;
    uint8_t ev[1 + NK_VARINT64_MAX];
    ev[0] = NODE_INBOUND_SNAP_WANTED;
    size_t k = 1 + nk_enc_varint64(ev + 1, shard);
    node_peers_push_internal(n, from, ev, k);
}

/* Loop: answer a SNAP_REQUEST when we lead the shard. */
void node_rebuild_serve(struct node *n, uint64_t from, uint32_t shard)
{
    struct group *g = &n->groups[shard];
    if (!g->r || g->damaged || raft_role(g->r) != RAFT_LEADER)
        return; /* the requester asks again, then perhaps the right node */
    struct raft_msg m = {.type = RAFT_MSG_SNAPSHOT, .to = from, .term = raft_term(g->r)};
    node_snap_request(n, g, &m);
}

/*
 * Loop: the staged state of a rebuilding shard is complete: install it and
 * start the group again.
 */
nk_status node_rebuild_install(struct node *n, struct group *g, const struct raft_snapshot *rs,
                               struct nk_buf *data)
{
    nk_status s = node_snap_replace_state(n, g, data);
    NK_TRY(s);
    uint8_t lo[2], hi[3];
    size_t hl;
    node_shard_range(g->id, lo, hi, &hl);
    /* the shard's range is rewritten: reads there are served again */
    lsm_quarantine_resolve(n->db, nk_slice_make(lo, 2), nk_slice_make(hi, hl));
    kv_shard_forget(n->kv, (uint16_t)g->id);
    uint64_t at = 0, ai = 0;
    NK_TRY(kv_applied(n->kv, (uint16_t)g->id, &at, &ai));
    if (ai != rs->index)
        return nk_status_make(NK_DATA_LOSS,
                              "shard %u: the rebuilt state records applied index %" PRIu64
                              ", the snapshot %" PRIu64,
                              g->id, ai, rs->index);
    /* the group's hard state commit must cover what the state has applied */
    struct raftlog_hardstate hs;
    raftlog_get_hardstate(n->log, g->id, &hs);
    if (hs.commit < ai && raftlog_last_index(n->log, g->id) >= ai) {
        hs.commit = ai;
        raftlog_batch_hardstate(n->batch, g->id, &hs);
        nk_status ws = raftlog_write(n->log, n->batch);
        raftlog_batch_clear(n->batch);
        NK_TRY(ws);
    }
    g->damaged = false;
    g->rebuilding = false;
    g->ck_seq = g->ck_index = 0;
    g->n_conf = 0;
    NK_TRY(node_group_start(n, g, at, ai));
    n->n_hosted++;
    atomic_store_explicit(&n->pub[g->id].hosted, true, memory_order_release);
    node_publish_conf(n, g);
    atomic_store_explicit(&n->pub[g->id].rebuilding, false, memory_order_release);
    atomic_store_explicit(&n->pub[g->id].damaged, false, memory_order_release);
    uint32_t left = atomic_fetch_sub(&n->damaged_shards, 1) - 1;
    obs_gauge_set(n->m_damaged, left);
    resolve_whole_tables(n);
    NK_INFO(MODULE, "shard %u: replica rebuilt from a peer at index %" PRIu64, g->id, ai);
    return NK_OK;
}
