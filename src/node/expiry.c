/*
 * expiry.c: time commands for quiet shards (docs/watch.md "Expiry"). A key's
 * expiry is carried out by apply when the shard's replicated time reaches
 * it, and that time only moves with entries. So once a tick, the leader of
 * every shard whose earliest TTL key is due by its clock and that has no
 * time command in flight proposes one (kv_tick_encode): the expiries and
 * their EXPIRE events follow within about a tick, even on a quiet shard.
 */
#include "kv/kv.h"
#include "node/internal.h"

static void tick_done(void *ctx, const struct node_write_result *r)
{
    struct group *g = ctx;
    (void)r;
    g->tick_pending = false;
}

void node_expiry_tick(struct node *n)
{
    uint64_t now = nk_wall_ms();
    for (uint32_t i = 0; i < n->nshards; i++) {
        struct group *g = &n->groups[i];
        if (!g->r || g->damaged || g->tick_pending || raft_role(g->r) != RAFT_LEADER)
            continue;
        uint64_t next = kv_next_expiry(n->kv, (uint16_t)i);
        if (next == 0 || next == UINT64_MAX || next > now)
            continue;
        uint8_t cmd[KV_TICK_LEN];
        kv_tick_encode(cmd, now); /* the loop stamps it again when it proposes it */
        nk_status s = node_propose(n, i, nk_slice_make(cmd, sizeof cmd), NO_DEADLINE, tick_done,
                                   g);
        if (nk_ok(s))
            g->tick_pending = true;
        nk_status_free(&s);
    }
}
