/*
 * node: the multi-Raft host. One node runs one Raft group per shard it
 * replicates (all `total_shards` of them on a one-node cluster), one shared
 * Raft log (src/raftlog) and one LSM (src/lsm) under the KV state machine
 * (src/kv), with the vector state machine (src/vector) beside it.
 *
 * The Ready loop (one thread) owns every `struct raft`. Each round it takes
 * the queued proposals and read requests, ticks the groups when a tick is
 * due, gathers the Ready of every group with work, makes all their entries
 * and hard states durable with one raftlog write (one fdatasync: group
 * commit), sends messages, applies committed entries to the KV state machine
 * (each apply one LSM write that also records the shard's applied index) and
 * completes the waiting calls, then advances the groups. Applying on the
 * same thread keeps a write's path free of cross-thread hand-offs, which on
 * a 2-core machine cost more than the apply itself (docs/server.md).
 *
 * Idle groups cost nothing: a group with no work is quiesced (no ticks, no
 * heartbeats) until a proposal or message wakes it.
 *
 * Reads: stale reads need nothing; lease reads are served by the caller's
 * thread from state the Ready loop publishes per shard (leader, lease expiry,
 * ready-for-reads) without any hand-off; linearizable reads go through the
 * Ready loop (ReadIndex: one heartbeat round serves every read queued in a
 * round).
 *
 * Memory: the node owns its groups, logs and database. Proposal bytes are
 * copied when queued. Callbacks receive pointers valid only during the call.
 *
 * Thread-safety: node_propose, node_read_barrier, node_view_*, node_watch*,
 * node_get_stats and node_kv may be called from any thread. Completion
 * callbacks run on the Ready loop thread and must not block.
 */
#ifndef NK_NODE_H
#define NK_NODE_H

#include "kv/kv.h"
#include "lsm/lsm.h"
#include "util/util.h"
#include "wal/wal.h"

struct node;

struct node_options {
    const char *node_name;   /* ClusterView node id; copied */
    const char *client_addr; /* host:port clients reach this node's gRPC on; copied */
    uint32_t total_shards;   /* default 1024; fixed once the data directory exists */
    const char *data_dir;    /* raft log in <dir>/raft, LSM in <dir>/lsm; copied */
    bool ephemeral;          /* no fdatasync anywhere (data_dir is on tmpfs) */
    enum wal_sync_mode raft_sync; /* default WAL_SYNC_ALWAYS (one fdatasync per round) */
    /* With WAL_SYNC_OS: fdatasync the Raft log this often (0: never; the
     * "batch" fsync policy: a machine crash may lose that window). */
    uint64_t sync_interval_us;
    uint32_t tick_ms;        /* default 100 */
    uint32_t election_ticks; /* default 10 */
    uint32_t heartbeat_ticks; /* default 1 */
    /* A group of several voters whose leader saw no work (no proposal, read
     * or lagging follower) for this many ticks goes quiet: no heartbeats,
     * no ticks, on the leader and its followers (docs/cluster.md
     * "Quiescence"). 0: never. Default 2 * election_ticks. */
    uint32_t quiesce_ticks;
    uint32_t max_pending;    /* queued + in-flight proposals and reads; default 65536 */
    uint32_t max_batch_entries; /* proposals taken per round; default 8192 */
    uint64_t default_deadline_ms; /* for calls without a deadline; default 5000 */
    uint64_t raftlog_cache_bytes; /* default 64 MiB */
    uint64_t compact_log_entries; /* compact a group's log beyond this many; default 10000 */
    uint64_t max_round_bytes; /* proposal bytes taken per round (at least one); default 8 MiB */
    /* Clusters: the peer listen address, and the peer addresses of the
     * other initial members (empty: a one-node cluster). Copied. */
    const char *peer_addr;
    const char *const *seed_nodes;
    uint32_t n_seed_nodes;
    uint32_t replication_factor; /* default 3, at most the member count */
    /* Membership changes (docs/membership.md): the peer address of a member
     * of a running cluster this new node joins (NULL: none); how long a
     * member stays dead before its replicas are re-created elsewhere
     * (default 5 min); replica moves led at once (default 8); snapshot bytes
     * per second sent to new replicas (0: unlimited). */
    const char *join_addr;
    uint64_t dead_node_timeout_ms;
    uint32_t max_concurrent_moves;
    uint64_t move_bandwidth;
    /* SWIM failure detection on the peer port's UDP (liveness.c, docs/swim.md
     * "In the node"): protocol period, direct-ack timeout, suspicion timeout
     * multipliers (alpha, beta) and Lifeguard. Defaults 500, 200, 4, 4, on. */
    uint32_t swim_probe_interval_ms, swim_probe_timeout_ms;
    uint32_t swim_suspicion_mult, swim_suspicion_max_mult;
    bool swim_disable_lifeguard;
    struct lsm_options lsm;
    struct kv_options kv;
};

void node_options_default(struct node_options *o);

/* Opens storage, recovers every group, starts the Ready loop. */
nk_status node_open(const struct node_options *o, struct node **out);
/*
 * Stops: new calls get UNAVAILABLE, queued and in-flight ones complete with
 * UNAVAILABLE "server shutting down" (their callbacks run before this
 * returns), the loop ends, the LSM flushes, files close. NULL is fine.
 */
bool node_close(struct node *n); /* false: the final flush failed (exit non-zero) */

/* ------------------------------------------------------------------ writes */

/*
 * The outcome of a write. code OK: res is the applied result (whose own code
 * may be a CAS failure etc.). Otherwise the write did not apply or its
 * outcome is unknown: NK_UNAVAILABLE (msg contains NOT_LEADER, with
 * leader_hint the leader's client address or NULL, or "server shutting
 * down", or QUORUM_UNAVAILABLE), NK_DEADLINE_EXCEEDED ("COMMIT_TIMEOUT"),
 * NK_RESOURCE_EXHAUSTED.
 */
struct vec_result;

struct node_write_result {
    enum nk_code code;
    const char *msg;
    const char *leader_hint;
    struct kv_result res;
    /* a vector command's applied result (vector.h); NULL for KV commands.
     * Valid only during the callback. */
    const struct vec_result *vres;
};

typedef void (*node_write_fn)(void *ctx, const struct node_write_result *r);

/*
 * Proposes the encoded KV command `cmd` (copied) to the shard's group. On
 * NK_OK, `done` is called exactly once, later, on the Ready loop thread.
 * Otherwise nothing is queued and the status says why (RESOURCE_EXHAUSTED:
 * the queue is full; UNAVAILABLE: shutting down; INVALID_ARGUMENT: no such
 * shard). deadline_mono_ns: nk_mono_ns() clock; UINT64_MAX: the default.
 */
nk_status node_propose(struct node *n, uint32_t shard, struct nk_slice cmd,
                       uint64_t deadline_mono_ns, node_write_fn done, void *ctx);
/*
 * node_propose of a traced request: the loop adds its spans to `trace`
 * (observe.h) as the proposal goes through ("node.queue" until proposed,
 * "raft.log_append" for the leader's log write, "raft.commit" until a
 * quorum made it committed, "kv.apply"), all before `done` is called and
 * never after; the caller owns the trace and ends it in `done`. trace may
 * be NULL.
 */
struct obs_trace;
nk_status node_propose_traced(struct node *n, uint32_t shard, struct nk_slice cmd,
                              uint64_t deadline_mono_ns, node_write_fn done, void *ctx,
                              struct obs_trace *trace);

/* ------------------------------------------------------------------- reads */

enum node_consistency {
    NODE_READ_LEASE = 0,
    NODE_READ_LINEARIZABLE = 1,
    NODE_READ_STALE = 2,
};

/* Parses a GetRequest.consistency string (CONTRACT.md); false if unknown. */
bool node_parse_consistency(const char *s, size_t len, enum node_consistency *out);

typedef void (*node_read_fn)(void *ctx, const struct node_write_result *r);

/*
 * Waits until reading the shard's local state is allowed at the consistency.
 * *now true: it is allowed right away (the caller reads on its own thread;
 * `done` will not be called). Otherwise, on NK_OK, `done` is called once on
 * the Ready loop thread: code OK means read now (on that thread), anything
 * else is the error to return (NOT_LEADER with a hint, COMMIT_TIMEOUT ...).
 * An error status means nothing was queued. A NOT_LEADER answer that needs
 * no waiting is returned as a status with the hint in *hint (static storage
 * valid until the node closes; may be NULL).
 */
nk_status node_read_barrier(struct node *n, uint32_t shard, enum node_consistency c,
                            uint64_t deadline_mono_ns, node_read_fn done, void *ctx, bool *now,
                            const char **hint);

/* The KV state machine, for reads (kv_get) and idempotency lookups. */
struct kv_store *node_kv(struct node *n);

/* The vector state machine (vector.h), for searches, gets and index info.
 * Vector commands are proposed with node_propose like KV commands; their
 * completion carries node_write_result.vres (node/vector.c). */
struct vec_store;
struct vec_store *node_vec(struct node *n);

/* ----------------------------------------------------------- cluster view */

struct node_view_node {
    char id[128];
    char addr[128];
    char role[16]; /* alive, suspect, dead, left */
};

struct node_view {
    uint64_t epoch;
    uint32_t n_nodes;
    struct node_view_node nodes[16];
    uint32_t total_shards;
    /* per shard: index into nodes of each replica, and of the leader (-1: none) */
    uint8_t *n_replicas;  /* [total_shards] */
    uint8_t (*replicas)[8]; /* [total_shards][8] */
    int8_t *leader;       /* [total_shards] */
};

/* The client address shown in the view (once the gRPC port is known), and,
 * when name is not NULL, the node's name (derived from that address). */
void node_set_client_addr(struct node *n, const char *addr, const char *name);

/* A copy of the current view; free it with node_view_free. */
void node_view_get(struct node *n, struct node_view *v);
void node_view_free(struct node_view *v);

/* Called (on the Ready loop thread) after every view change with the new epoch. */
typedef void (*node_watch_fn)(void *ctx, uint64_t epoch);
/* At most 1024 watchers (RESOURCE_EXHAUSTED beyond). *id for node_unwatch. */
nk_status node_watch(struct node *n, node_watch_fn fn, void *ctx, uint32_t *id);
void node_unwatch(struct node *n, uint32_t id);

/* ------------------------------------------------------------------ admin */

/*
 * Snapshots a shard: checkpoints it at its applied index, flushes the LSM so
 * that state is on disk, and waits (at most 10 s) until the Raft log is
 * compacted behind it. *index is the snapshot's index. Blocks the caller
 * (not the loop).
 */
nk_status node_snapshot_shard(struct node *n, uint32_t shard, uint64_t *index);
/*
 * Moves the shard's leadership to the member named target (its node id).
 * Must be asked of the shard's leader: elsewhere NK_UNAVAILABLE NOT_LEADER
 * with the leader's client address in hint. Returns once the transfer has
 * started (the view shows the new leader when it completes). Blocks the
 * caller for about one Ready round.
 */
nk_status node_transfer_shard(struct node *n, uint32_t shard, const char *target,
                              char *hint, size_t hint_cap);
/* The first index still in the shard's Raft log (tests, /health). */
uint64_t node_log_first_index(struct node *n, uint32_t shard);
/* Whether the shard's state was found damaged on this node (its calls are refused). */
bool node_shard_damaged(struct node *n, uint32_t shard);

/*
 * Drains this node (Admin.DrainNode; docs/membership.md): it stops being a
 * placement member, its replicas move to the others (the shards' leaders
 * run the moves), its leaderships go with them, and once it holds no
 * replica it leaves the cluster (SWIM gossips `left`; the others never
 * place a replica on it again). Persisted: a restart keeps draining.
 * FAILED_PRECONDITION on a one-node cluster.
 */
nk_status node_drain(struct node *n);
/* This node's name (its node_id) copied into buf. */
void node_self_name(struct node *n, char *buf, size_t cap);

/*
 * Removes the member named `name` (node_id, or raft id in hex) for good: it
 * must be dead (SWIM) or already removed, else FAILED_PRECONDITION naming
 * its state; NOT_FOUND when no member has that name. Its replicas are
 * re-created on the placement members at once (no dead_node_timeout wait);
 * every member hears of it (REMOVED frame) and records it; if the node
 * comes back it is not a member any more.
 */
nk_status node_remove_member(struct node *n, const char *name);

struct node_plan_stats {
    uint64_t moves_started;  /* learners this node added as a shard's leader */
    uint64_t moves_promoted; /* of those, promoted to voters */
    uint64_t removals;       /* replicas it retired */
    uint64_t transfers;      /* leaderships it handed over to retire itself */
    uint32_t in_flight;      /* learners being caught up now */
    uint32_t shards_to_move; /* led shards whose replicas differ from the plan */
    bool draining;
};
void node_plan_stats(struct node *n, struct node_plan_stats *out);
/* GET /meta/placement's JSON document (docs/membership.md "The plan"),
 * appended to out. */
struct nk_buf;
void node_placement_json(struct node *n, struct nk_buf *out);

struct node_stats {
    uint32_t total_shards;
    uint32_t shards_led;
    uint64_t last_applied;  /* highest applied index over shards */
    uint64_t applied_entries;
    uint64_t proposals, proposals_failed;
    uint64_t rounds, fsyncs;
    uint64_t pending;       /* proposals and reads waiting */
    uint64_t quiesced;        /* times a group went quiet */
    uint64_t shards_quiet;    /* replicas quiet now (no ticks, no heartbeats) */
    uint64_t uptime_ms;
    uint64_t round_bytes_max; /* most proposal bytes one round took */
    uint64_t pending_moves;   /* requests moved compacting pending lists (linear in proposals) */
    uint64_t write_holds;     /* loop iterations that took no requests: the LSM was about to stall */
    uint32_t shards_hosted;   /* shards this node holds a replica of */
    uint64_t replicas_created; /* replicas added to this node while it ran */
    uint64_t replicas_removed; /* replicas deleted from it */
    uint32_t shards_ready;    /* of those, shards whose leader is known (READY: all of them) */
    uint32_t members, peers_up;
    uint64_t frames_dropped_in, frames_dropped_out, frames_bad;
    bool degraded;            /* writes suspended: the log or an apply keeps failing (retried) */
    char degraded_why[512];   /* what fails, naming the path and the error */
    uint32_t damaged_shards;  /* shards refused: their state failed a checksum */
    uint64_t log_fetches;     /* runs of entries read from disk off the loop for followers */
    uint64_t log_disk_reads;  /* entries whose payload was read back from the raft log's disk */
    /* SWIM (liveness.c); all zero when it does not run (one-node clusters) */
    bool swim_running;
    uint32_t swim_detection_bound_ms; /* worst case for this cluster's size, no loss */
    uint64_t swim_packets_out, swim_bytes_out, swim_packets_in, swim_bytes_in;
    uint64_t swim_rejected;      /* datagrams refused (malformed, other cluster) */
    uint64_t swim_send_failed;   /* datagrams that could not be sent */
    uint64_t swim_probes_failed; /* protocol periods that ended without an ack */
    uint64_t swim_suspicions;    /* members this node suspected */
    uint64_t swim_refutations;   /* rumours about this node it refuted */
    uint64_t swim_changes;       /* member state changes seen */
    uint64_t swim_incarnation;
    uint32_t swim_lhm;           /* Lifeguard's local health multiplier now */
    uint32_t swim_gossip_entries;
    uint32_t members_alive, members_suspect, members_dead, members_left;
};
void node_get_stats(struct node *n, struct node_stats *out);
/*
 * The peer transport's counters (transport.h): totals and up to cap peers;
 * returns how many peers were filled (0 on a one-node cluster, which has no
 * transport; *totals is zeroed then).
 */
struct transport_stats;
struct transport_peer_stats;
size_t node_transport_stats(struct node *n, struct transport_stats *totals,
                            struct transport_peer_stats *peers, size_t cap);
uint32_t node_total_shards(struct node *n);
/* The LSM, for stats. */
struct lsm_db *node_lsm(struct node *n);
/* The applied index of a shard on this node (0 beyond total_shards): its
 * rate of change is the shard's write load (the dashboard's top shards). */
uint64_t node_shard_applied(struct node *n, uint32_t shard);
/* The client address of the shard's leader as this node knows it, in buf;
 * NULL when unknown or this node. */
const char *node_hint_for_shard(struct node *n, uint32_t shard, char *buf, size_t cap);
/* True when this node's replica leads the shard (as its loop last published). */
bool node_shard_leads(struct node *n, uint32_t shard);

#endif /* NK_NODE_H */
