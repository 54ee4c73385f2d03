/*
 * node/internal.h: what the files of the node module share: the request
 * and group structs, the node itself, and the functions one file calls in
 * another. Not a public header: only the node module's .c files include it.
 *
 * Ownership: the Ready loop thread owns every group (its raft, lists and
 * counters); fields other threads read are in struct shard_pub (atomics) or
 * under the mutex named next to them.
 */
#ifndef NK_NODE_INTERNAL_H
#define NK_NODE_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "node/lease.h"
#include "node/node.h"
#include "observe/observe.h"
#include "raft/raft.h"
#include "raftlog/raftlog.h"
#include "swim/swim.h"

#define MODULE      "node"
/* The raft id of the only member of a one-node cluster (data directories of
 * one-node clusters hold memberships naming it). */
#define SOLO_ID     1ULL
#define MAX_WATCH   1024
#define NODE_MAX_MEMBERS 16 /* the view's bound (struct node_view.nodes) */
#define NO_DEADLINE UINT64_MAX

/* --------------------------------------------------------------- requests */

enum req_kind { REQ_PROPOSE = 1, REQ_READ = 2, REQ_SNAPSHOT = 3, REQ_TRANSFER = 4 };

struct req {
    uint8_t kind;
    uint32_t shard;
    uint8_t *data; /* REQ_PROPOSE: the command (owned) */
    size_t len;
    uint64_t deadline;
    node_write_fn done;
    void *ctx;
    uint64_t index, term; /* once proposed / read index known */
    uint64_t read_id;
    uint64_t t0;     /* nk_mono_ns() when queued */
    uint64_t target; /* REQ_TRANSFER: the member to lead */
    /* REQ_PROPOSE of a traced request: the caller's trace, which the loop
     * adds its spans to until it calls done (never after); NULL: untraced */
    struct obs_trace *trace;
    uint64_t t_proposed; /* traced: when raft_propose took it */
    uint64_t round;      /* traced: the loop round that proposed it */
};

/* A growable array of requests; the loop's private bookkeeping. Bounded by
 * max_pending through the node's in-flight count. */
struct req_list {
    struct req *v;
    size_t n, cap;
};

static inline void rl_push(struct req_list *l, const struct req *r)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 8;
        l->v = nk_realloc(l->v, l->cap * sizeof(*l->v));
    }
    l->v[l->n++] = *r;
}

/* Drops the first k requests: one memmove for a whole round's worth. */
static inline void rl_drop_front(struct req_list *l, size_t k)
{
    NK_ASSERT(k <= l->n);
    if (k == 0)
        return;
    memmove(l->v, l->v + k, (l->n - k) * sizeof(*l->v));
    l->n -= k;
}

/* ------------------------------------------------------------------ group */

struct conf_point {
    uint64_t index;
    struct raft_conf_state conf;
};

struct shard_pub {
    _Atomic bool hosted;             /* a replica of the shard runs here (g->r set) */
    _Atomic bool damaged;            /* its state failed a checksum: refused until repaired */
    _Atomic bool rebuilding;         /* a new state is being fetched from a peer */
    _Atomic uint64_t lead;           /* raft id of the leader; 0: unknown */
    _Atomic uint64_t lease_until_ns; /* lease reads allowed until (mono); 0: no */
    _Atomic uint64_t applied;
    _Atomic uint64_t compacted; /* the log is compacted up to here (snapshot index) */
    _Atomic uint64_t lead_term; /* the term of the leader in lead (0: none known) */
    _Atomic uint64_t read_ns;   /* last lease read served (mono, ~50 ms grain): keeps the group awake */
};

struct node_fetch_req {
    uint32_t group;
    uint64_t lo;
};

struct group {
    uint32_t id;
    struct raft *r;
    struct node *node;
    uint64_t applied, applied_term;
    uint64_t last_lead;
    int ev_role;      /* role and term last reported to the event ring (loop.c) */
    uint64_t ev_term;
    bool single_voter;
    bool ready_for_reads; /* leader has applied an entry of its own term */
    bool dirty;
    bool tick_pending;    /* a time command for due expiries is in flight (expiry.c) */
    struct req_list pending; /* proposed, ordered by index */
    struct req_list parked;  /* waiting for a leader */
    struct req_list reads;   /* read index requested or known */
    struct conf_point conf_hist[2]; /* [0] older, [1] newer */
    int n_conf;
    /* Log compaction: last_seq is the LSM sequence of the latest apply; the
     * checkpoint (ck_seq, ck_index) freezes one such pair, and once the LSM
     * has persisted ck_seq the log up to ck_index can go. */
    uint64_t last_seq, ck_seq, ck_index;
    uint64_t log_first; /* first index of the raft log (after compaction) */
    uint64_t synced_term, synced_vote; /* the hard state's durable term and vote */
    size_t settled; /* pending[0..settled) are completed, dropped at the round's end */
    /* Time: stamp_ms is the last timestamp this leader stamped on a proposal
     * (monotonic per shard); time_ms the shard's replicated time after the
     * latest apply; (gc_seq, gc_time) a checkpoint that becomes the shard's
     * key-clock time once the LSM has persisted gc_seq. */
    uint64_t stamp_ms, time_ms, gc_seq, gc_time;
    bool damaged; /* apply found its state damaged: the group is stopped */
    bool rebuilding; /* damaged, raft stopped, state asked of the leader (rebuild.c) */
    uint64_t rebuild_asked_ms;
    bool compact_now; /* Admin.SnapshotShard: compact the log up to compact_target */
    uint64_t compact_target;
    struct node_tick_ring ticks;
    /* replica moves (replica.c, plan.c): set when an applied configuration
     * no longer lists this node, the replica is then deleted at the end of
     * the round; move_* is the leader's move in flight (plan.c) */
    bool removing;
    bool listed; /* the applied configuration listed this node when last looked at */
    bool gc_ignored_logged; /* a removal announced at a lower term was logged once */
    uint64_t move_add, move_remove; /* the learner being added, the voter it replaces */
    uint64_t move_started_ms, move_step_ms;
    /* a deleted replica's tombstone: leader messages sent before its removal
     * (term and index at or below these) do not create it again */
    uint64_t tomb_term, tomb_index;
    /* quiescence of multi-voter groups (quiesce.c): ticks without work (a
     * leader) or without a message from the leader (a follower) */
    uint32_t idle_ticks, quiet_ticks;
};

/* A member of the cluster (members.c). Guarded by the node's vmu. */
struct member {
    uint64_t id;           /* raft id */
    char name[128];        /* node_id of its configuration */
    char peer_addr[256];   /* what this node dials to reach it ("" for self) */
    bool draining;         /* its replicas move away (its INFO says so; plan.c) */
    char client_addr[128]; /* its gRPC address (from its INFO message; ours for self) */
    bool up;               /* its peer session is up (self: always) */
    uint8_t swim_state;    /* enum swim_state from SWIM (liveness.c); 0: none yet */
    uint64_t state_since_ms; /* nk_mono_ms() of its last SWIM state change */
};

/* A shard's replicas as last known here (view.c, replica.c): from its own
 * group's applied configuration when it has a replica here, else from its
 * leader's LEADS frames. n == 0: unknown (the view falls back to placement). */
#define NODE_VIEW_REPLICAS 8
struct shard_conf {
    uint64_t term;     /* of the leader that announced it (0: our own group) */
    uint8_t n, n_learners;
    uint64_t ids[NODE_VIEW_REPLICAS];      /* voters (incoming and outgoing of a joint conf) */
    uint64_t learners[NODE_VIEW_REPLICAS];
};

/* Per-peer outgoing Raft messages of one round (peers.c). Loop-private. */
struct peer_out {
    struct nk_buf buf; /* records: varint shard, varint len, raft_msg encoding */
    uint32_t count;
};

/* A frame received from a peer, waiting for the loop (peers.c). */
struct inbound {
    uint64_t from;
    uint8_t *data; /* owned */
    size_t len;
};

struct watcher {
    node_watch_fn fn;
    void *ctx;
    bool used;
};

struct node {
    struct node_options opt;
    char *name, *client_addr, *data_dir;
    uint64_t start_ms;

    /* membership (members.c): fixed at bootstrap, recorded in CLUSTER */
    uint64_t self_id, cluster_id;
    uint64_t created_ms; /* one-node clusters: when the data directory was created (epoch base) */
    uint32_t rf;
    bool clustered; /* more than one member: the transport runs */
    struct member members[NODE_MAX_MEMBERS];
    uint32_t n_members;
    bool bootstrapped;  /* groups were created once: never again from placement */
    _Atomic bool members_dirty; /* a member's name or state changed: CLUSTER is rewritten */
    _Atomic bool leave_wanted;  /* drained: SWIM gossips that this node left */
    bool rf_provisional; /* joined just now: the first member's INFO gives the cluster's RF */
    bool draining;      /* this node's replicas are moving away (Admin.DrainNode) */
    struct shard_conf *sconf; /* [nshards], under vmu */
    struct node_plan *plan;   /* plan.c */

    /* liveness of peers (quiesce.c): when the last frame of each member
     * arrived (mono ns, written by the transport thread), and the shards
     * each member last said it leads (LEADS; under vmu) */
    _Atomic uint64_t heard_ns[NODE_MAX_MEMBERS];
    uint8_t *leads_of[NODE_MAX_MEMBERS]; /* bitmaps of nshards bits */

    /* peers (peers.c) */
    struct transport *tp;
    struct peer_out out_early[NODE_MAX_MEMBERS], out_late[NODE_MAX_MEMBERS];
    struct inbound *in; /* ring under qmu, bounded in frames and bytes */
    size_t in_head, in_len, in_cap;
    uint64_t in_bytes;
    _Atomic uint64_t st_in_dropped, st_out_dropped, st_bad_frames;
    struct nk_buf msg_buf; /* loop-private encoding scratch */
    struct node_snap *snap; /* snapshot.c */
    /* SWIM (liveness.c): its thread, and what it publishes (vmu / atomics) */
    struct node_liveness *lv;
    struct swim_stats swim_stats;
    uint64_t swim_incarnation;
    _Atomic uint64_t st_swim_changes, st_swim_rejected, st_swim_send_failed;
    uint64_t view_local;   /* membership/liveness changes seen (vmu) */
    uint64_t view_local_seen; /* view_local when the loop last looked (vmu) */
    uint32_t n_hosted;     /* shards with a replica here (fixed after open) */
    char hint_loop[128];   /* the loop's leader-hint scratch */

    struct raftlog *log;
    struct lsm_db *db;
    struct kv_store *kv;
    struct vec_store *vs; /* vector indexes of the hosted shards (vector.c) */
    uint32_t nshards;
    struct group *groups;
    struct shard_pub *pub;
    /* per shard: the replicated time the LSM has persisted, the key clock of
     * the LSM (expiry is judged by it; see kv.h "Time") */
    _Atomic uint64_t *gc_time;

    /* the MPSC queue */
    pthread_mutex_t qmu;
    pthread_cond_t qcv;
    struct req *q;
    size_t qcap, qhead, qlen;
    bool loop_sleeping;
    bool stopping;
    _Atomic uint64_t inflight; /* queued + pending requests, bounded by max_pending */
    _Atomic bool closed;       /* refuse new work */
    bool close_failed;         /* the final flush failed: the server exits non-zero */

    pthread_t loop;
    bool loop_started;

    /* the reader: completes linearizable reads whose read index is applied,
     * so that their LSM lookups and replies run off the Ready loop. Its
     * ring holds at most max_pending reads (every read counts in inflight). */
    pthread_t reader;
    bool reader_started;
    pthread_mutex_t rmu;
    pthread_cond_t rcv;
    struct req *rq;
    size_t rqhead, rqlen;
    bool reader_stop;

    /* the fetcher (fetch.c): reads entries lagging followers need off the
     * loop. xq/xdone/xlen/nxdone under xmu; xqueued is loop-private;
     * fetched_ready (under qmu) wakes the loop. */
    pthread_t fetcher;
    bool fetcher_started;
    pthread_mutex_t xmu;
    pthread_cond_t xcv;
    struct node_fetch_req *xq;
    size_t xhead, xlen;
    uint32_t *xdone;
    size_t nxdone;
    bool *xqueued;
    bool xstop;
    bool fetched_ready;
    _Atomic uint64_t st_fetches, st_fetch_failed;

    /* the flusher */
    pthread_t flusher;
    bool flusher_started;
    pthread_mutex_t fmu;
    pthread_cond_t fcv;
    bool flush_wanted, flush_stop, flush_running;

    /* Degraded: the loop cannot make the log durable or apply (a full disk,
     * an I/O error). It retries by itself; meanwhile queued work is refused
     * with the reason, lease and stale reads go on. Guarded by hmu. */
    pthread_mutex_t hmu;
    _Atomic bool degraded;
    char degraded_why[512];
    _Atomic uint32_t damaged_shards;
    struct obs_gauge *m_degraded, *m_damaged;
    struct obs_counter *m_leader_changes, *m_snap_sent, *m_snap_installed, *m_log_compactions;
    struct obs_gauge *m_log_entries;

    /* view */
    pthread_mutex_t vmu;
    uint64_t epoch;
    struct watcher watchers[MAX_WATCH];

    /* loop-private */
    uint32_t *dirty;
    size_t ndirty;
    uint64_t next_read_id;
    struct raftlog_batch *batch;
    struct nk_buf conf_buf;

    /* tracing (loop-private): how long each recent round's log write took,
     * so that a traced proposal settled rounds later finds the write that
     * made it durable; apply_t0 is when the entry being applied began */
    uint64_t round_no;
    struct {
        uint64_t round, start, end;
        bool synced;
    } appends[64];
    uint64_t commit_seen_ns, apply_t0;

    /* metrics (obs_default registry) */
    struct obs_histogram *m_fsync, *m_commit, *m_round_entries;
    struct obs_counter *m_rounds;

    /* stats */
    _Atomic uint64_t st_applied_entries, st_proposals, st_proposals_failed, st_rounds, st_fsyncs,
        st_quiesced, st_quiet_now, st_last_applied, st_round_bytes_max, st_pending_moves, st_holds;
    _Atomic uint32_t st_led;
    _Atomic uint64_t st_replicas_created, st_replicas_removed;
    uint32_t n_removing; /* groups marked removing (loop-private) */
};

/* ---------------------------------------------------- across the module */

void node_conf_encode(const struct raft_conf_state *c, struct nk_buf *b);
bool node_conf_decode(const uint8_t *p, size_t n, struct raft_conf_state *c);
uint64_t node_key_clock(void *ctx, struct nk_slice key);
void node_advance_gc_clock(struct node *n);
void node_maybe_compact_logs(struct node *n);
void *node_flusher_main(void *arg);
void node_fail_req(struct req *r, enum nk_code code, const char *msg, const char *hint);
nk_status node_enqueue(struct node *n, const struct req *r);
void node_request_done(struct node *n);
void node_start_request(struct node *n, struct group *g, struct req *r);
void node_settle_proposals(struct node *n, struct group *g, uint64_t index, uint64_t term,
                             const struct kv_result *res, const struct vec_result *vres);
void node_settle_done(struct node *n, struct group *g);
void node_match_reads(struct node *n, struct group *g, const struct raft_ready *rd);
void node_serve_reads(struct node *n, struct group *g);
void *node_reader_main(void *arg);
bool node_apply_entry(struct node *n, struct group *g, const struct raft_entry *e);
bool node_single_voter(const struct node *n, const struct raft_conf_state *c);
void node_note_conf(struct group *g, uint64_t index);
void node_set_degraded(struct node *n, nk_status s, const char *what);
void node_clear_degraded(struct node *n);
void node_mark_damaged(struct node *n, struct group *g, nk_status why);
bool node_retry_wait(struct node *n, int attempt);
void node_mark_dirty(struct node *n, struct group *g);
const char *node_leader_hint(struct node *n, struct group *g);
void node_publish(struct node *n, struct group *g);
void node_expire_list(struct node *n, struct req_list *l, uint64_t now, enum nk_code code,
                        const char *msg);
void node_fail_list(struct node *n, struct req_list *l, enum nk_code code, const char *msg);
void *node_loop_main(void *arg);
void node_notify_watchers(struct node *n, uint64_t epoch);
/* The view's epoch, a function of what the view shows (view.c). */
uint64_t node_view_epoch(struct node *n);

/* members.c */
uint64_t node_raft_id_for(const char *name);
nk_status node_members_load(struct node *n, bool *found);
nk_status node_members_save(struct node *n);
nk_status node_members_bootstrap(struct node *n);
int node_member_index(struct node *n, uint64_t id); /* vmu held or loop thread; -1 if none */
void node_placement_replicas(const uint64_t *ids, uint32_t n_ids, uint32_t shard, uint32_t rf,
                             uint64_t *out);

/* view.c: the client address of the shard's leader (or, when unknown and
 * the shard has no replica here, of a replica) copied into buf; NULL when
 * none is known or it is this node. */

/* discover.c: the id and name of the node listening at a seed address */
nk_status node_discover(const char *addr, uint32_t total_shards, int timeout_ms, uint64_t *id,
                        char *name, size_t name_cap, uint64_t *cluster_id);
nk_status node_members_join(struct node *n, bool found); /* members.c: cluster.join */

/* replica.c: replicas created and deleted on a running node */
#define NODE_INBOUND_GC     0xF2 /* varint shard, varint term, conf: its leader's applied conf */
#define NODE_INBOUND_MEMBER 0xF3 /* fixed64 id, lenbytes addr: SWIM met a new member */
bool node_conf_lists(const struct raft_conf_state *c, uint64_t id);
bool node_conf_equal(const struct raft_conf_state *a, const struct raft_conf_state *b);
void node_publish_conf(struct node *n, struct group *g);
void node_publish_conf_of(struct node *n, struct group *g, const struct raft_conf_state *c);
struct group *node_replica_create(struct node *n, uint32_t shard, const struct raft_msg *m,
                                  uint64_t from);
void node_replica_check_conf(struct node *n, struct group *g); /* after a conf applied */
void node_replica_reap(struct node *n);                         /* end of a round */
void node_replica_on_gc(struct node *n, const uint8_t *p, size_t len); /* loop */
nk_status node_replica_clear_orphan(struct node *n, uint32_t shard);
void node_members_on_new(struct node *n, const uint8_t *p, size_t len); /* loop */
/* plan.c */
nk_status node_plan_open(struct node *n);
void node_plan_close(struct node *n);
void node_plan_tick(struct node *n); /* loop, once a second */
void node_member_mark_left(struct node *n, uint64_t id, const char *why); /* any thread */
void node_peers_send_removed(struct node *n, uint64_t id); /* peers.c: REMOVED to every peer */

/* node.c: starts a hosted group whose state is at (at, ai) */
nk_status node_group_start(struct node *n, struct group *g, uint64_t at, uint64_t ai);

/* snapshot.c: the LSM key range [lo, hi) of a shard's state */
void node_shard_range(uint32_t shard, uint8_t lo[2], uint8_t hi[3], size_t *hi_len);

/* rebuild.c */
void node_rebuild_tick(struct node *n);
void node_rebuild_on_request(struct node *n, uint64_t from, const uint8_t *p, size_t len);
void node_rebuild_serve(struct node *n, uint64_t from, uint32_t shard);
nk_status node_rebuild_install(struct node *n, struct group *g, const struct raft_snapshot *rs,
                               struct nk_buf *data);

/* balance.c */
void node_balance(struct node *n);
void node_transfer_start(struct node *n, struct group *g, struct req *r);

/* snapshot.c */
#define NODE_INBOUND_SNAP_READY  0xF0 /* inbound events of our own, never from the network */
#define NODE_INBOUND_SNAP_WANTED 0xF1
nk_status node_snap_replace_state(struct node *n, struct group *g, const struct nk_buf *data);
nk_status node_snap_open(struct node *n);
void node_snap_stop(struct node *n);  /* the sender thread; before the transport closes */
void node_snap_close(struct node *n); /* after the transport closed */
void node_snap_request(struct node *n, struct group *g, const struct raft_msg *m);
void node_snap_on_chunk(struct node *n, uint64_t from, const uint8_t *p, size_t len);
void node_snap_ready(struct node *n, uint32_t shard);
void node_snap_sweep(struct node *n); /* after the gather phase: offered, not taken */
nk_status node_snap_install(struct node *n, struct group *g, const struct raft_snapshot *rs);
void node_snap_stats(struct node *n, uint64_t *sent, uint64_t *installed, uint64_t *aborted);

/* peers.c */
nk_status node_peers_open(struct node *n);
void node_peers_close(struct node *n);
void node_peers_queue(struct node *n, uint32_t shard, const struct raft_msg *m);
void node_peers_flush(struct node *n, bool early);
void node_peers_take_inbound(struct node *n);
bool node_peers_have_inbound(struct node *n); /* qmu held */
void node_peers_send_alive(struct node *n); /* peers.c */
/* quiesce.c */
void node_quiesce_note_frame(struct node *n, uint64_t from);
void node_quiesce_note_leads(struct node *n, uint64_t from, const uint32_t *shards, size_t count);
void node_quiesce_tick(struct node *n, uint64_t now_ns);
void node_quiesce_maybe(struct node *n, struct group *g);
void node_quiesce_wake(struct node *n, struct group *g);
void node_group_quiesce(struct node *n, struct group *g);
void node_group_unquiesce(struct node *n, struct group *g);
void node_quiesce_free(struct node *n);
/* expiry.c: time commands for shards whose TTL keys are due (once a tick) */
void node_expiry_tick(struct node *n);

/* liveness.c: SWIM on the peer port (clusters only; a no-op otherwise) */
nk_status node_liveness_start(struct node *n);
void node_liveness_stop(struct node *n);
uint32_t node_liveness_bound_ms(const struct node *n);

/* fetch.c */
nk_status node_fetch_open(struct node *n);
void node_fetch_close(struct node *n);
void node_fetch_request(struct node *n, uint32_t group, uint64_t lo);
void node_fetch_deliver(struct node *n);
void node_peers_announce(struct node *n);
void node_peers_push_internal(struct node *n, uint64_t from, const uint8_t *data, size_t len);
nk_status node_peers_add_members(struct node *n);
void node_peers_set_cluster_id(struct node *n);
/* One entry of a LEADS2 frame (docs/format/node-frames.md), decoded from
 * untrusted bytes; false (r->bad set) on anything malformed. The blobs point
 * into the frame; latest equals applied when no change is in flight. */
struct node_leads2_entry {
    uint64_t shard, term;
    bool more;
    struct nk_slice applied_blob, latest_blob;
    struct raft_conf_state applied, latest;
};
bool node_leads2_next(struct nk_reader *r, uint32_t nshards, struct node_leads2_entry *e);
void node_peers_send_leads(struct node *n); /* loop: tell peers the shards we lead */

/* vector.c: the vector state machine beside KV */
nk_status node_vec_open(struct node *n);  /* after the groups opened: loads hosted shards */
void node_vec_close(struct node *n);      /* before the LSM closes */
nk_status node_vec_reload(struct node *n, uint32_t shard); /* after its state was replaced */
/* Applies a vector entry (vec_cmd_is_vector) with the shard's time kept. */
nk_status node_vec_apply(struct node *n, struct group *g, const struct raft_entry *e,
                         struct vec_result *res);

/* storage.c: the raft storage vtable of a group */
void node_raft_storage(struct group *g, struct raft_storage *out);

#endif /* NK_NODE_INTERNAL_H */
