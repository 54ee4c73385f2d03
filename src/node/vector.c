/*
 * vector.c: the vector state machine (src/vector) beside KV on the node.
 *
 * Vector commands travel the KV write path unchanged: the API proposes the
 * encoded command to the namespace's shard with node_propose, the Ready
 * loop appends, commits and applies it in log order, and node_apply_entry
 * hands entries whose first byte is the vector tag here instead of to
 * kv_apply. One LSM holds both; the shard's applied-index record is shared
 * (vec_apply writes it with the shard's replicated time unchanged), so a
 * restart replays the log from one applied index for both state machines.
 *
 * The in-memory indexes are loaded from the LSM for every hosted shard at
 * open, and again whenever a shard's state is replaced (snapshot install,
 * rebuild): node_snap_replace_state calls node_vec_reload.
 */
#include "node/internal.h"
#include "vector/vector.h"

nk_status node_vec_open(struct node *n)
{
    NK_TRY(vec_store_open(n->db, NULL, &n->vs));
    uint64_t t0 = nk_mono_ns();
    for (uint32_t i = 0; i < n->nshards; i++) {
        struct group *g = &n->groups[i];
        if (!g->r || g->damaged)
            continue;
        nk_status s = vec_store_load_shard(n->vs, (uint16_t)i);
        if (s.code == NK_DATA_LOSS) {
            /* as for KV state: the shard is refused here, the node starts */
            node_mark_damaged(n, g, s);
            nk_status_free(&s);
            continue;
        }
        NK_TRY(s);
    }
    uint64_t ms = (nk_mono_ns() - t0) / 1000000;
    if (ms >= 100)
        NK_INFO(MODULE, "vector indexes loaded in %llu ms", (unsigned long long)ms);
    return NK_OK;
}

void node_vec_close(struct node *n)
{
    vec_store_close(n->vs);
    n->vs = NULL;
}

nk_status node_vec_reload(struct node *n, uint32_t shard)
{
    if (!n->vs)
        return NK_OK; /* still opening: node_vec_open loads it */
    return vec_store_load_shard(n->vs, (uint16_t)shard);
}

nk_status node_vec_apply(struct node *n, struct group *g, const struct raft_entry *e,
                         struct vec_result *res)
{
    uint64_t time_ms = 0;
    NK_TRY(kv_shard_time(n->kv, (uint16_t)g->id, &time_ms));
    return vec_apply(n->vs, (uint16_t)g->id, e->term, e->index, time_ms, e->data, e->len, res);
}

struct vec_store *node_vec(struct node *n)
{
    return n->vs;
}
