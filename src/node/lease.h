/*
 * node/lease.h: Raft leases anchored to the monotonic clock.
 *
 * raft/ counts a lease in ticks: it holds while a quorum acknowledged a
 * heartbeat sent fewer than lease_tick ticks ago. A tick is one Ready-loop
 * round that found a tick due, so a round that stalls for seconds (a slow
 * disk, a paused process) stretches a tick, and a lease counted in ticks
 * would outlive the followers' election timers, which run on their own
 * clocks. The node therefore notes when each tick happened and ends the
 * lease lease_tick * tick_ms after the moment the confirming heartbeat round
 * was sent (raft_lease_anchor), as TiKV does.
 *
 * Memory: a ring is a plain value inside its owner. Thread-safety: none; the
 * Ready loop owns each group's ring.
 */
#ifndef NK_NODE_LEASE_H
#define NK_NODE_LEASE_H

#include <stdint.h>

/* Larger than any lease in ticks (lease_tick < election_tick): an anchor
 * older than the ring can only belong to a lapsed lease. */
#define NODE_TICK_RING 32

struct node_tick_ring {
    uint64_t tick[NODE_TICK_RING];
    uint64_t mono_ns[NODE_TICK_RING];
};

/* Notes that the raft's tick counter reached `tick` at mono_ns (taken before
 * the round sends anything, so the anchor is never later than the send). */
void node_tick_ring_note(struct node_tick_ring *r, uint64_t tick, uint64_t mono_ns);

/*
 * The monotonic time until which a lease confirmed by the heartbeat round
 * sent at sent_tick holds: when that tick happened + lease_ticks * tick_ns.
 * 0 (no lease) when the ring no longer knows that tick.
 */
uint64_t node_lease_until(const struct node_tick_ring *r, uint64_t sent_tick,
                          uint32_t lease_ticks, uint64_t tick_ns);

#endif /* NK_NODE_LEASE_H */
