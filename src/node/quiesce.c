/*
 * quiesce.c: groups of several voters that have nothing to do go quiet.
 *
 * A node hosts ~1024 groups; a leader heartbeats each follower every tick,
 * so an idle 3-node cluster would exchange ~60,000 Raft messages a second to
 * say nothing. Instead (as TiKV's hibernating regions):
 *
 *   - A leader whose group had no work for quiesce_ticks ticks (every
 *     follower holds the whole log, everything applied, no proposal, no
 *     read index, no lease read for as long, no transfer) stops ticking:
 *     no heartbeats. Its lease lapses by the clock (node/lease.h); the next
 *     read or write wakes it, and a read then confirms leadership with one
 *     heartbeat round (ReadIndex) before answering.
 *   - A follower whose group is idle and has heard nothing from its leader
 *     for two heartbeat intervals, while the leader's node is alive, stops
 *     ticking too: it will not campaign. Any message for the group wakes it.
 *
 * What keeps this safe is node liveness, not Raft's own timers: the loop
 * sends every peer an ALIVE frame each tick (docs/format/node-frames.md), and
 * any frame counts. A quiet follower wakes (and will campaign after a
 * normal election timeout) when its leader's node falls silent for
 * election_ticks / 2 ticks (a SIGSTOP, a partition, a stalled loop), when
 * its session goes down (a SIGKILL), or when the leader's latest LEADS
 * frame (every second) no longer lists the shard (a damaged or demoted
 * leader group). A wake is always harmless: the group just ticks again.
 *
 * Owns: heard_ns (atomics, written by the transport thread) and leads_of
 * (bitmaps under vmu). Everything else runs on the Ready loop.
 */
#include "node/internal.h"

static int member_idx(struct node *n, uint64_t id)
{
    for (uint32_t i = 0; i < n->n_members; i++)
        if (n->members[i].id == id)
            return (int)i;
    return -1;
}

/* Transport thread: any frame from a member proves its node (and its loop,
 * which sends ALIVE) is running. */
void node_quiesce_note_frame(struct node *n, uint64_t from)
{
    int i = member_idx(n, from);
    if (i >= 0)
        atomic_store_explicit(&n->heard_ns[i], nk_mono_ns(), memory_order_release);
}

/* Transport thread: the shards `from` leads now (its LEADS frame). */
void node_quiesce_note_leads(struct node *n, uint64_t from, const uint32_t *shards, size_t count)
{
    int i = member_idx(n, from);
    if (i < 0)
        return;
    size_t bytes = (n->nshards + 7) / 8;
    pthread_mutex_lock(&n->vmu);
    if (!n->leads_of[i])
        n->leads_of[i] = nk_calloc(1, bytes);
    memset(n->leads_of[i], 0, bytes);
    for (size_t k = 0; k < count; k++)
        if (shards[k] < n->nshards)
            n->leads_of[i][shards[k] / 8] |= (uint8_t)(1u << (shards[k] % 8));
    pthread_mutex_unlock(&n->vmu);
}

void node_quiesce_free(struct node *n)
{
    for (uint32_t i = 0; i < NODE_MAX_MEMBERS; i++) {
        free(n->leads_of[i]);
        n->leads_of[i] = NULL;
    }
}

static uint64_t silence_ns(struct node *n)
{
    uint32_t t = n->opt.election_ticks / 2;
    return (uint64_t)(t > 2 ? t : 2) * n->opt.tick_ms * 1000000ULL;
}

/* Whether member `id` was heard from recently (self: always). */
static bool member_alive(struct node *n, uint64_t id, uint64_t now)
{
    if (id == n->self_id)
        return true;
    int i = member_idx(n, id);
    if (i < 0 || !n->members[i].up)
        return false;
    uint64_t h = atomic_load_explicit(&n->heard_ns[i], memory_order_acquire);
    return h != 0 && now - h < silence_ns(n);
}

void node_group_quiesce(struct node *n, struct group *g)
{
    if (!raft_is_quiesced(g->r)) {
        raft_quiesce(g->r);
        atomic_fetch_add_explicit(&n->st_quiesced, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&n->st_quiet_now, 1, memory_order_relaxed);
    }
}

void node_group_unquiesce(struct node *n, struct group *g)
{
    if (g->r && raft_is_quiesced(g->r)) {
        raft_unquiesce(g->r);
        atomic_fetch_sub_explicit(&n->st_quiet_now, 1, memory_order_relaxed);
        node_mark_dirty(n, g);
    }
}

void node_quiesce_wake(struct node *n, struct group *g)
{
    g->idle_ticks = 0;
    g->quiet_ticks = 0;
    node_group_unquiesce(n, g);
}

/*
 * Loop, on every tick: count idle ticks of awake groups, wake quiet
 * followers whose leader's node fell silent or no longer leads them, and
 * tell every peer we are alive.
 */
void node_quiesce_tick(struct node *n, uint64_t now)
{
    if (!n->clustered)
        return;
    node_peers_send_alive(n);
    uint64_t quiet_reads_ns = (uint64_t)n->opt.quiesce_ticks * n->opt.tick_ms * 1000000ULL;
    for (uint32_t s = 0; s < n->nshards; s++) {
        struct group *g = &n->groups[s];
        if (!g->r || g->damaged || g->single_voter)
            continue;
        if (!raft_is_quiesced(g->r)) {
            /* counted here, judged when the group settles (node_quiesce_maybe) */
            bool idle = raft_is_idle(g->r) && !g->pending.n && !g->reads.n && !g->parked.n;
            if (idle && raft_role(g->r) == RAFT_LEADER) {
                uint64_t rd = atomic_load_explicit(&n->pub[s].read_ns, memory_order_relaxed);
                if (rd && now - rd < quiet_reads_ns)
                    idle = false;
            }
            g->idle_ticks = idle ? g->idle_ticks + 1 : 0;
            g->quiet_ticks++;
            continue;
        }
        if (raft_role(g->r) == RAFT_LEADER)
            continue; /* a quiet leader wakes on work */
        uint64_t lead = raft_lead(g->r);
        bool wake = lead == 0 || !member_alive(n, lead, now);
        if (!wake) {
            int i = member_idx(n, lead);
            pthread_mutex_lock(&n->vmu);
            const uint8_t *bm = i >= 0 ? n->leads_of[i] : NULL;
            wake = bm && !(bm[s / 8] & (1u << (s % 8)));
            pthread_mutex_unlock(&n->vmu);
        }
        if (wake)
            node_quiesce_wake(n, g);
    }
}

/* Loop, when a group settles at the end of a round: quiet it if it may. */
void node_quiesce_maybe(struct node *n, struct group *g)
{
    if (!n->clustered || n->opt.quiesce_ticks == 0 || g->single_voter || !g->r ||
        raft_is_quiesced(g->r) || !raft_is_idle(g->r))
        return;
    uint64_t now = nk_mono_ns();
    if (raft_role(g->r) == RAFT_LEADER) {
        if (g->idle_ticks < n->opt.quiesce_ticks)
            return;
        /* every voter must be able to hear a wake-up */
        const struct raft_conf_state *c = raft_conf(g->r);
        for (uint32_t i = 0; i < c->n_voters; i++)
            if (!member_alive(n, c->voters[i], now))
                return;
    } else {
        /* two heartbeat intervals without a word from a live leader */
        if (g->quiet_ticks < 2 * n->opt.heartbeat_ticks + 1 ||
            !member_alive(n, raft_lead(g->r), now))
            return;
    }
    node_group_quiesce(n, g);
}
