/*
 * placement: which nodes hold the replicas of each shard, and how to get from
 * one placement to another with few moves. Pure functions: no I/O, no clock,
 * no randomness, so every node computes the same answer from the same inputs
 * (the member list and RF), whatever order it lists the members in.
 *
 * Rendezvous (highest-random-weight) hashing: shard s ranks every member n by
 * w(s, n) = xxhash64(le32(s) || le64(n)) (seed 0, 12 bytes, docs/placement.md),
 * highest first, ties broken by the lower node id; the replicas of s are the
 * first RF members of that ranking, and the first of them is the shard's
 * preferred leader. Adding a node moves a replica of s only when the new node
 * ranks in s's top RF (probability RF/N), removing one moves only the
 * replicas it held: about S*RF/N moves either way, the least any balanced
 * placement can do.
 *
 * Memory: structs filled here own heap arrays; free them with the matching
 * *_free function. Inputs are borrowed.
 * Thread-safety: every function is pure and thread-safe.
 */
#ifndef NK_PLACEMENT_H
#define NK_PLACEMENT_H

#include <stddef.h>
#include <stdint.h>

#include "util/util.h"

#define PLACEMENT_MAX_RF      16      /* = RAFT_MAX_MEMBERS */
#define PLACEMENT_MAX_NODES   4096
#define PLACEMENT_MAX_SHARDS  65536   /* shard ids are big-endian u16 key prefixes */

/* The rendezvous weight of node `node` for shard `shard`. */
uint64_t placement_weight(uint32_t shard, uint64_t node);

/*
 * The replicas of one shard among nodes[0..n): min(rf, n) distinct ids written
 * to out (room for rf), best-ranked first; *count receives how many.
 * NK_INVALID_ARGUMENT when n or rf is 0, rf > PLACEMENT_MAX_RF, n >
 * PLACEMENT_MAX_NODES, or an id is 0 or repeated.
 */
nk_status placement_shard_replicas(uint32_t shard, const uint64_t *nodes, size_t n, uint32_t rf,
                                   uint64_t *out, uint32_t *count);

/* A whole placement: replicas of shard s are replicas[s * rf .. s * rf + rf). */
struct placement {
    uint32_t total_shards;
    uint32_t rf;        /* replicas per shard: min(requested RF, members) */
    size_t n_nodes;
    uint64_t *nodes;    /* the members, sorted ascending */
    uint64_t *replicas; /* total_shards * rf ids, each shard's best-ranked first */
};

/* Computes the placement of shards [0, total_shards) over the members. */
nk_status placement_compute(const uint64_t *nodes, size_t n, uint32_t total_shards, uint32_t rf,
                            struct placement *out);
void placement_free(struct placement *p);
static inline const uint64_t *placement_replicas(const struct placement *p, uint32_t shard)
{
    return p->replicas + (size_t)shard * p->rf;
}
/* True when `node` holds a replica of `shard`. */
bool placement_has_replica(const struct placement *p, uint32_t shard, uint64_t node);
/* Replicas held by `node` (its load). */
uint32_t placement_node_load(const struct placement *p, uint64_t node);

/* ------------------------------------------------------------- plan diff */

struct placement_change {
    uint32_t shard;
    uint8_t n_add, n_remove;
    uint64_t add[PLACEMENT_MAX_RF];    /* new replicas to create (snapshot, then join) */
    uint64_t remove[PLACEMENT_MAX_RF]; /* replicas to retire once the new ones are in */
};

struct placement_plan {
    struct placement_change *changes; /* only shards whose replica set differs */
    size_t n_changes;
    uint64_t moves; /* replicas added (= removed when RF is unchanged) */
    /*
     * The theoretical minimum: the replicas any plan must add to reach a
     * perfectly balanced placement of the new members. Each shard needs RF
     * replicas and can keep at most those of its old replicas that are still
     * members (so every replica on a departed node is replaced, and a larger
     * RF adds the difference), and every new node must receive its fair
     * share floor(S*RF/N_new); one add can serve both, so it is the larger of
     * the two counts (0 when members and RF are unchanged). Rendezvous
     * placement is balanced only statistically (loads vary by about
     * sqrt(S*RF/N)), so `moves` lands within a few percent of it, on either
     * side.
     */
    uint64_t min_moves;
};

/*
 * The changes that turn placement `from` into `to` (same total_shards, else
 * NK_INVALID_ARGUMENT): per shard, the replicas to add and to remove.
 * Replicas present in both are kept, so with `to` computed by
 * placement_compute() over the new members, the plan moves only what
 * rendezvous hashing moves. The RFs may differ (a cluster growing from one
 * node to three goes from RF 1 to RF 3).
 */
nk_status placement_diff(const struct placement *from, const struct placement *to,
                         struct placement_plan *out);
void placement_plan_free(struct placement_plan *plan);

/* ------------------------------------------------------- leader balancing */

struct placement_transfer {
    uint32_t shard;
    uint64_t from, to; /* current leader -> a replica of the shard */
};

/*
 * Leadership transfers that spread the leaders of a placement over the
 * eligible nodes (live voters; nodes[0..n_nodes)) so that each leads
 * floor or ceil of (shards led) / n_nodes, using few transfers: only shards
 * led by an over-loaded node move, each straight to an under-loaded replica
 * when one exists (so the count meets the lower bound "sum over nodes of
 * leadership above the ceiling" whenever the replica sets allow).
 * leaders[s] is shard s's current leader (0 = none: skipped; a leader not in
 * nodes is left alone and does not count). *out is malloc'd (free() it);
 * *n_out transfers, at most one per shard, in the order to issue them.
 */
nk_status placement_balance_leaders(const struct placement *p, const uint64_t *leaders,
                                    const uint64_t *nodes, size_t n_nodes,
                                    struct placement_transfer **out, size_t *n_out);

#endif /* NK_PLACEMENT_H */
