/*
 * lease.c: when each tick happened, and the lease end that follows (see
 * lease.h for why leases are not counted in ticks).
 */
#include "node/lease.h"

void node_tick_ring_note(struct node_tick_ring *r, uint64_t tick, uint64_t mono_ns)
{
    r->tick[tick % NODE_TICK_RING] = tick;
    r->mono_ns[tick % NODE_TICK_RING] = mono_ns;
}

uint64_t node_lease_until(const struct node_tick_ring *r, uint64_t sent_tick,
                          uint32_t lease_ticks, uint64_t tick_ns)
{
    unsigned k = (unsigned)(sent_tick % NODE_TICK_RING);
    if (r->tick[k] != sent_tick || r->mono_ns[k] == 0)
        return 0;
    return r->mono_ns[k] + (uint64_t)lease_ticks * tick_ns;
}
