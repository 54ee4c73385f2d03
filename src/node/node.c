/*
 * node.c: the multi-Raft host and its Ready loop (see node.h).
 *
 * Threads:
 *   - callers (gRPC workers, HTTP): node_propose / node_read_barrier push a
 *     request onto one bounded MPSC queue and wake the loop if it sleeps;
 *     lease and stale reads never touch the queue.
 *   - the Ready loop: everything else. It owns every struct raft, the
 *     pending-call tables and the raftlog batch.
 *   - the flusher: calls lsm_flush() when the loop asks, so that Raft logs can
 *     be compacted behind state the LSM has on disk, without the loop blocking.
 *
 * One-node clusters: every group has exactly one voter (this node, raft id
 * 1), campaigns at once on open and so leads all its shards. Messages to
 * other nodes do not exist yet; the transport (src/transport) will take
 * rd.msgs once clusters land.
 */
#include "node/node.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

#include "node/lease.h"
#include "observe/observe.h"
#include "raft/raft.h"
#include "raftlog/raftlog.h"

#define MODULE     "node"
#define SELF_ID    1ULL
#define MAX_WATCH  1024
#define NO_DEADLINE UINT64_MAX

/* --------------------------------------------------------------- requests */

enum req_kind { REQ_PROPOSE = 1, REQ_READ = 2, REQ_SNAPSHOT = 3 };

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
    uint64_t t0; /* nk_mono_ns() when queued */
};

/* A growable array of requests; the loop's private bookkeeping. Bounded by
 * max_pending through the node's in-flight count. */
struct req_list {
    struct req *v;
    size_t n, cap;
};

static void rl_push(struct req_list *l, const struct req *r)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 8;
        l->v = nk_realloc(l->v, l->cap * sizeof(*l->v));
    }
    l->v[l->n++] = *r;
}

/* Drops the first k requests: one memmove for a whole round's worth. */
static void rl_drop_front(struct req_list *l, size_t k)
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
    _Atomic bool damaged;            /* its state failed a checksum: refused until repaired */
    _Atomic uint64_t lead;           /* raft id of the leader; 0: unknown */
    _Atomic uint64_t lease_until_ns; /* lease reads allowed until (mono); 0: no */
    _Atomic uint64_t applied;
    _Atomic uint64_t compacted; /* the log is compacted up to here (snapshot index) */
};

struct group {
    uint32_t id;
    struct raft *r;
    struct node *node;
    uint64_t applied, applied_term;
    uint64_t last_lead;
    bool single_voter;
    bool ready_for_reads; /* leader has applied an entry of its own term */
    bool dirty;
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
    bool compact_now; /* Admin.SnapshotShard: compact the log up to compact_target */
    uint64_t compact_target;
    struct node_tick_ring ticks;
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

    struct raftlog *log;
    struct lsm_db *db;
    struct kv_store *kv;
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

    /* metrics (obs_default registry) */
    struct obs_histogram *m_fsync, *m_commit, *m_round_entries;
    struct obs_counter *m_rounds;

    /* stats */
    _Atomic uint64_t st_applied_entries, st_proposals, st_proposals_failed, st_rounds, st_fsyncs,
        st_quiesced, st_last_applied, st_round_bytes_max, st_pending_moves, st_holds;
    _Atomic uint32_t st_led;
};

void node_options_default(struct node_options *o)
{
    memset(o, 0, sizeof(*o));
    o->node_name = "node-1";
    o->client_addr = "127.0.0.1:9001";
    o->total_shards = 1024;
    o->data_dir = "./norikv-data";
    o->raft_sync = WAL_SYNC_ALWAYS;
    o->tick_ms = 100;
    o->election_ticks = 10;
    o->heartbeat_ticks = 1;
    o->max_pending = 65536;
    o->max_batch_entries = 8192;
    o->default_deadline_ms = 5000;
    o->raftlog_cache_bytes = 64u << 20;
    o->compact_log_entries = 10000;
    o->max_round_bytes = 8u << 20;
    lsm_options_default(&o->lsm);
    kv_options_default(&o->kv);
}

/* ------------------------------------------------------ conf blob (raftlog) */

static void conf_encode(const struct raft_conf_state *c, struct nk_buf *b)
{
    nk_buf_clear(b);
    nk_buf_put_u8(b, 1); /* version */
    nk_buf_put_u8(b, c->n_voters);
    for (int i = 0; i < c->n_voters; i++)
        nk_buf_put_varint64(b, c->voters[i]);
    nk_buf_put_u8(b, c->n_voters_out);
    for (int i = 0; i < c->n_voters_out; i++)
        nk_buf_put_varint64(b, c->voters_out[i]);
    nk_buf_put_u8(b, c->n_learners);
    for (int i = 0; i < c->n_learners; i++)
        nk_buf_put_varint64(b, c->learners[i]);
}

static bool conf_decode(const uint8_t *p, size_t n, struct raft_conf_state *c)
{
    memset(c, 0, sizeof(*c));
    if (n == 0)
        return true;
    struct nk_reader r;
    nk_reader_init(&r, p, n);
    uint8_t ver = 0;
    nk_reader_u8(&r, &ver);
    if (ver != 1)
        return false;
    uint8_t *counts[3] = {&c->n_voters, &c->n_voters_out, &c->n_learners};
    uint64_t *arrays[3] = {c->voters, c->voters_out, c->learners};
    for (int k = 0; k < 3; k++) {
        nk_reader_u8(&r, counts[k]);
        if (r.bad || *counts[k] > RAFT_MAX_MEMBERS)
            return false;
        for (int i = 0; i < *counts[k]; i++)
            nk_reader_varint64(&r, &arrays[k][i]);
    }
    return !r.bad && nk_reader_left(&r) == 0;
}

/* -------------------------------------------------- raft storage on raftlog */

static nk_status st_initial_state(void *ctx, struct raft_hard_state *hs,
                                  struct raft_conf_state *conf)
{
    struct group *g = ctx;
    struct raftlog_hardstate h;
    raftlog_get_hardstate(g->node->log, g->id, &h);
    hs->term = h.term;
    hs->vote = h.vote;
    hs->commit = h.commit;
    /* Commit-only hard states are written without a sync, so after a crash
     * the stored commit index may trail what the LSM has applied. Whatever
     * was applied was committed (and its entries were synced before it was
     * applied): raise the commit index to it. */
    if (g->applied > hs->commit && g->applied <= raftlog_last_index(g->node->log, g->id))
        hs->commit = g->applied;
    g->synced_term = h.term;
    g->synced_vote = h.vote;
    uint64_t ci, ct;
    struct nk_buf b;
    nk_buf_init(&b);
    raftlog_get_compacted(g->node->log, g->id, &ci, &ct, &b);
    bool ok = conf_decode(b.data, b.len, conf);
    nk_buf_free(&b);
    if (!ok)
        return nk_status_make(NK_DATA_LOSS, "shard %u: stored membership is malformed", g->id);
    return NK_OK;
}

static uint64_t st_first_index(void *ctx)
{
    struct group *g = ctx;
    return raftlog_first_index(g->node->log, g->id);
}

static uint64_t st_last_index(void *ctx)
{
    struct group *g = ctx;
    return raftlog_last_index(g->node->log, g->id);
}

static nk_status st_term(void *ctx, uint64_t index, uint64_t *term)
{
    struct group *g = ctx;
    return raftlog_term(g->node->log, g->id, index, term);
}

static nk_status st_entries(void *ctx, uint64_t lo, uint64_t hi, uint64_t max_bytes,
                            struct nk_arena *arena, struct raft_entry *out, size_t *n)
{
    struct group *g = ctx;
    struct raftlog_entry *tmp = nk_malloc((hi - lo) * sizeof(*tmp));
    nk_status s = raftlog_entries(g->node->log, g->id, lo, hi, max_bytes, arena, tmp, n);
    if (nk_ok(s))
        for (size_t i = 0; i < *n; i++)
            out[i] = (struct raft_entry){.term = tmp[i].term,
                                         .index = tmp[i].index,
                                         .type = tmp[i].type,
                                         .len = (uint32_t)tmp[i].data.len,
                                         .data = (uint8_t *)tmp[i].data.data};
    free(tmp);
    return s;
}

static nk_status st_snapshot(void *ctx, struct nk_arena *arena, struct raft_snapshot *out)
{
    struct group *g = ctx;
    memset(out, 0, sizeof(*out));
    struct nk_buf b;
    nk_buf_init(&b);
    raftlog_get_compacted(g->node->log, g->id, &out->index, &out->term, &b);
    bool ok = conf_decode(b.data, b.len, &out->conf);
    nk_buf_free(&b);
    (void)arena;
    if (!ok)
        return nk_status_make(NK_DATA_LOSS, "shard %u: stored membership is malformed", g->id);
    /* the state image is streamed by the node from the LSM, not carried here */
    return NK_OK;
}

/* ------------------------------------------------------------- key clock */

/* The LSM's expiry clock for a key: its shard's persisted replicated time.
 * Keys that are not shard state never expire by it. */
static uint64_t node_key_clock(void *ctx, struct nk_slice key)
{
    struct node *n = ctx;
    uint16_t shard;
    if (!kv_lsm_key_shard(key, &shard) || shard >= n->nshards)
        return 0;
    return atomic_load_explicit(&n->gc_time[shard], memory_order_acquire);
}

/*
 * Advances each shard's key-clock time to the replicated time of state the
 * LSM has persisted. A record is dropped by compaction (or hidden by a read
 * inside apply) only when it expired by that time; every entry a replay
 * could apply after a crash comes later in the log and so carries a time at
 * least as late, and judges the record expired too.
 */
static void advance_gc_clock(struct node *n)
{
    uint64_t persisted = lsm_persisted_sequence(n->db);
    for (uint32_t i = 0; i < n->nshards; i++) {
        struct group *g = &n->groups[i];
        if (g->gc_seq && persisted >= g->gc_seq) {
            atomic_store_explicit(&n->gc_time[i], g->gc_time, memory_order_release);
            g->gc_seq = 0;
        }
        if (!g->gc_seq && g->time_ms > atomic_load_explicit(&n->gc_time[i],
                                                             memory_order_relaxed)) {
            g->gc_seq = g->last_seq;
            g->gc_time = g->time_ms;
        }
    }
}

/* ------------------------------------------------------------- the queue */

static void fail_req(struct req *r, enum nk_code code, const char *msg, const char *hint)
{
    struct node_write_result wr = {.code = code, .msg = msg, .leader_hint = hint};
    r->done(r->ctx, &wr);
    free(r->data);
    r->data = NULL;
}

static nk_status enqueue(struct node *n, const struct req *r)
{
    if (atomic_load_explicit(&n->closed, memory_order_acquire))
        return nk_status_make(NK_UNAVAILABLE, "server shutting down");
    if (r->kind != REQ_SNAPSHOT && atomic_load_explicit(&n->pub[r->shard].damaged,
                                                        memory_order_acquire))
        return nk_status_make(NK_DATA_LOSS,
                              "shard %u is damaged on this node and refused; see /health for "
                              "the repair step",
                              r->shard);
    if (atomic_load_explicit(&n->degraded, memory_order_acquire)) {
        pthread_mutex_lock(&n->hmu);
        nk_status s = nk_status_make(NK_RESOURCE_EXHAUSTED, "writes suspended: %s",
                                     n->degraded_why);
        pthread_mutex_unlock(&n->hmu);
        return s;
    }
    uint64_t cur = atomic_fetch_add(&n->inflight, 1);
    if (cur >= n->opt.max_pending) {
        atomic_fetch_sub(&n->inflight, 1);
        return nk_status_make(NK_RESOURCE_EXHAUSTED,
                              "too many requests in flight (limit %u); retry later",
                              n->opt.max_pending);
    }
    pthread_mutex_lock(&n->qmu);
    if (n->stopping) {
        pthread_mutex_unlock(&n->qmu);
        atomic_fetch_sub(&n->inflight, 1);
        return nk_status_make(NK_UNAVAILABLE, "server shutting down");
    }
    NK_ASSERT(n->qlen < n->qcap); /* qcap == max_pending bounds it */
    n->q[(n->qhead + n->qlen) % n->qcap] = *r;
    n->qlen++;
    bool wake = n->loop_sleeping;
    n->loop_sleeping = false;
    pthread_mutex_unlock(&n->qmu);
    if (wake)
        pthread_cond_signal(&n->qcv);
    return NK_OK;
}

static void request_done(struct node *n)
{
    atomic_fetch_sub(&n->inflight, 1);
}

nk_status node_propose(struct node *n, uint32_t shard, struct nk_slice cmd,
                       uint64_t deadline_mono_ns, node_write_fn done, void *ctx)
{
    if (shard >= n->nshards)
        return nk_status_make(NK_INVALID_ARGUMENT, "shard %u does not exist (total %u)", shard,
                              n->nshards);
    struct req r = {.kind = REQ_PROPOSE,
                    .shard = shard,
                    .data = nk_memdup(cmd.data, cmd.len),
                    .len = cmd.len,
                    .deadline = deadline_mono_ns,
                    .done = done,
                    .ctx = ctx,
                    .t0 = nk_mono_ns()};
    if (r.deadline == NO_DEADLINE)
        r.deadline = nk_mono_ns() + n->opt.default_deadline_ms * 1000000ULL;
    nk_status s = enqueue(n, &r);
    if (!nk_ok(s))
        free(r.data);
    return s;
}

bool node_parse_consistency(const char *s, size_t len, enum node_consistency *out)
{
#define IS(lit) (len == sizeof(lit) - 1 && memcmp(s, lit, len) == 0)
    if (len == 0 || IS("lease"))
        *out = NODE_READ_LEASE;
    else if (IS("linearizable") || IS("strong"))
        *out = NODE_READ_LINEARIZABLE;
    else if (IS("stale_ok") || IS("eventual") || IS("bounded_staleness"))
        *out = NODE_READ_STALE;
    else
        return false;
    return true;
#undef IS
}

nk_status node_read_barrier(struct node *n, uint32_t shard, enum node_consistency c,
                            uint64_t deadline_mono_ns, node_read_fn done, void *ctx, bool *now,
                            const char **hint)
{
    *now = false;
    if (hint)
        *hint = NULL;
    if (shard >= n->nshards)
        return nk_status_make(NK_INVALID_ARGUMENT, "shard %u does not exist (total %u)", shard,
                              n->nshards);
    if (atomic_load_explicit(&n->closed, memory_order_acquire))
        return nk_status_make(NK_UNAVAILABLE, "server shutting down");
    struct shard_pub *p = &n->pub[shard];
    if (c == NODE_READ_STALE) {
        *now = true;
        return NK_OK;
    }
    uint64_t lead = atomic_load_explicit(&p->lead, memory_order_acquire);
    if (c == NODE_READ_LEASE && lead == SELF_ID &&
        atomic_load_explicit(&p->lease_until_ns, memory_order_acquire) > nk_mono_ns()) {
        *now = true;
        return NK_OK;
    }
    if (lead != 0 && lead != SELF_ID) {
        if (hint)
            *hint = NULL; /* peers' client addresses arrive with clusters */
        return nk_status_make(NK_UNAVAILABLE, "NOT_LEADER: shard %u is led by another node",
                              shard);
    }
    /* a linearizable read, or a lease read without a valid lease: ReadIndex */
    struct req r = {.kind = REQ_READ,
                    .shard = shard,
                    .deadline = deadline_mono_ns,
                    .done = done,
                    .ctx = ctx};
    if (r.deadline == NO_DEADLINE)
        r.deadline = nk_mono_ns() + n->opt.default_deadline_ms * 1000000ULL;
    return enqueue(n, &r);
}

struct kv_store *node_kv(struct node *n)
{
    return n->kv;
}

uint32_t node_total_shards(struct node *n)
{
    return n->nshards;
}

struct lsm_db *node_lsm(struct node *n)
{
    return n->db;
}

/* ----------------------------------------------------------- loop helpers */

static void mark_dirty(struct node *n, struct group *g)
{
    if (!g->dirty) {
        g->dirty = true;
        n->dirty[n->ndirty++] = g->id;
    }
}

static const char *leader_hint(struct node *n, struct group *g)
{
    (void)n;
    (void)g;
    return NULL; /* only this node exists until clusters land */
}

static void start_request(struct node *n, struct group *g, struct req *r)
{
    if (r->kind == REQ_SNAPSHOT) {
        /* checkpoint the shard at its applied index: the log up to it goes
         * once the LSM has persisted this apply (the caller flushes) */
        g->ck_seq = g->last_seq;
        g->ck_index = g->applied;
        g->compact_target = g->applied;
        g->compact_now = true;
        struct node_write_result wr = {.code = NK_CODE_OK};
        wr.res.index = g->applied;
        wr.res.term = g->applied_term;
        r->done(r->ctx, &wr);
        request_done(n);
        return;
    }
    if (g->damaged) {
        fail_req(r, NK_DATA_LOSS, "shard state is damaged on this node (see /health)", NULL);
        request_done(n);
        return;
    }
    if (raft_is_quiesced(g->r))
        raft_unquiesce(g->r);
    mark_dirty(n, g);
    if (raft_role(g->r) != RAFT_LEADER) {
        uint64_t lead = raft_lead(g->r);
        if (lead != 0 && lead != SELF_ID) {
            fail_req(r, NK_UNAVAILABLE, "NOT_LEADER", leader_hint(n, g));
            request_done(n);
        } else {
            rl_push(&g->parked, r); /* an election is under way */
        }
        return;
    }
    if (r->kind == REQ_PROPOSE) {
        /* The command's time is assigned here, by the leader, in log order:
         * max(wall clock, the last stamp, the shard's replicated time), so
         * timestamps never go backwards within a shard (apply relies on it;
         * kv.h "Time"). */
        uint64_t ts = nk_wall_ms();
        if (ts < g->stamp_ms)
            ts = g->stamp_ms;
        if (ts < g->time_ms)
            ts = g->time_ms;
        if (kv_cmd_stamp(r->data, r->len, ts))
            g->stamp_ms = ts;
        uint64_t index, term;
        nk_status s = raft_propose(g->r, r->data, r->len, &index, &term);
        free(r->data);
        r->data = NULL;
        if (!nk_ok(s)) {
            atomic_fetch_add(&n->st_proposals_failed, 1);
            enum nk_code code = s.code;
            const char *msg = code == NK_RESOURCE_EXHAUSTED ? "shard log is full; retry later"
                              : code == NK_FAILED_PRECONDITION ? "NOT_LEADER"
                                                               : "QUORUM_UNAVAILABLE";
            if (code != NK_RESOURCE_EXHAUSTED)
                code = NK_UNAVAILABLE;
            nk_status_free(&s);
            fail_req(r, code, msg, leader_hint(n, g));
            request_done(n);
            return;
        }
        atomic_fetch_add(&n->st_proposals, 1);
        r->index = index;
        r->term = term;
        rl_push(&g->pending, r);
    } else {
        r->read_id = ++n->next_read_id;
        nk_status s = raft_read_index(g->r, r->read_id);
        if (!nk_ok(s)) {
            enum nk_code code = s.code == NK_RESOURCE_EXHAUSTED ? NK_RESOURCE_EXHAUSTED
                                                                : NK_UNAVAILABLE;
            nk_status_free(&s);
            fail_req(r, code,
                     code == NK_RESOURCE_EXHAUSTED ? "too many reads waiting" : "NOT_LEADER",
                     leader_hint(n, g));
            request_done(n);
            return;
        }
        r->index = 0;
        rl_push(&g->reads, r);
    }
}

/* Completes the pending proposals that entry (index, term) settles. The
 * settled prefix is dropped once per round (settle_done), not per entry. */
static void settle_proposals(struct node *n, struct group *g, uint64_t index, uint64_t term,
                             const struct kv_result *res)
{
    size_t k = g->settled;
    while (k < g->pending.n && g->pending.v[k].index <= index) {
        struct req *r = &g->pending.v[k];
        if (r->index == index && r->term == term && res) {
            struct node_write_result wr = {.code = NK_CODE_OK, .res = *res};
            obs_hist_observe_since(n->m_commit, r->t0);
            r->done(r->ctx, &wr);
        } else {
            /* another entry took its place: the proposal was not applied */
            fail_req(r, NK_UNAVAILABLE, "NOT_LEADER: leadership changed before commit",
                     leader_hint(n, g));
        }
        request_done(n);
        k++;
    }
    g->settled = k;
}

static void settle_done(struct node *n, struct group *g)
{
    if (g->settled)
        atomic_fetch_add_explicit(&n->st_pending_moves, g->pending.n - g->settled,
                                  memory_order_relaxed);
    rl_drop_front(&g->pending, g->settled);
    g->settled = 0;
}

/* g->reads is in read_id order (ids grow as reads start, and removal keeps
 * the order): each completed read is found by binary search, so a round
 * with R reads costs O(R log R). */
static struct req *find_read(struct group *g, uint64_t read_id)
{
    size_t lo = 0, hi = g->reads.n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        uint64_t id = g->reads.v[mid].read_id;
        if (id == read_id)
            return &g->reads.v[mid];
        if (id < read_id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

static void match_reads(struct node *n, struct group *g, const struct raft_ready *rd)
{
    bool dropped = false;
    for (size_t k = 0; k < rd->n_reads; k++) {
        struct req *r = find_read(g, rd->reads[k].ctx);
        if (!r)
            continue; /* expired meanwhile */
        if (rd->reads[k].index == 0) {
            fail_req(r, NK_UNAVAILABLE, "NOT_LEADER", leader_hint(n, g));
            request_done(n);
            r->done = NULL; /* removed below, keeping the order */
            dropped = true;
        } else {
            r->index = rd->reads[k].index;
        }
    }
    if (dropped) {
        size_t w = 0;
        for (size_t i = 0; i < g->reads.n; i++)
            if (g->reads.v[i].done)
                g->reads.v[w++] = g->reads.v[i];
        g->reads.n = w;
    }
}

/* Hands reads that may now be served to the reader thread, in one batch. */
static void serve_reads(struct node *n, struct group *g)
{
    size_t w = 0;
    bool handed = false;
    for (size_t i = 0; i < g->reads.n; i++) {
        struct req *r = &g->reads.v[i];
        if (r->index != 0 && g->applied >= r->index) {
            if (!handed) {
                pthread_mutex_lock(&n->rmu);
                handed = true;
            }
            NK_ASSERT(n->rqlen < n->qcap); /* reads are bounded by max_pending */
            n->rq[(n->rqhead + n->rqlen) % n->qcap] = *r;
            n->rqlen++;
        } else {
            g->reads.v[w++] = *r;
        }
    }
    g->reads.n = w;
    if (handed) {
        pthread_cond_signal(&n->rcv);
        pthread_mutex_unlock(&n->rmu);
    }
}

static void *reader_main(void *arg)
{
    struct node *n = arg;
    struct req *batch = nk_malloc(256 * sizeof(*batch));
    pthread_mutex_lock(&n->rmu);
    for (;;) {
        while (n->rqlen == 0 && !n->reader_stop)
            pthread_cond_wait(&n->rcv, &n->rmu);
        if (n->rqlen == 0 && n->reader_stop)
            break;
        size_t k = 0;
        while (n->rqlen && k < 256) {
            batch[k++] = n->rq[n->rqhead];
            n->rqhead = (n->rqhead + 1) % n->qcap;
            n->rqlen--;
        }
        pthread_mutex_unlock(&n->rmu);
        for (size_t i = 0; i < k; i++) {
            struct node_write_result wr = {.code = NK_CODE_OK};
            batch[i].done(batch[i].ctx, &wr);
            request_done(n);
        }
        pthread_mutex_lock(&n->rmu);
    }
    pthread_mutex_unlock(&n->rmu);
    free(batch);
    return NULL;
}

static void mark_damaged(struct node *n, struct group *g, nk_status why);
static void set_degraded(struct node *n, nk_status s, const char *what);
static void clear_degraded(struct node *n);
static bool retry_wait(struct node *n, int attempt);

/*
 * Applies one committed entry. A storage failure is retried (the node is
 * degraded meanwhile) until it succeeds; false when the node stops first
 * or the shard's state turns out damaged (the group is then stopped).
 */
static bool apply_entry(struct node *n, struct group *g, const struct raft_entry *e)
{
    struct kv_result res;
    nk_status s;
    bool is_cmd = e->type == RAFT_ENTRY_NORMAL && e->len > 0;
    for (int attempt = 0;; attempt++) {
        if (is_cmd)
            s = kv_apply(n->kv, (uint16_t)g->id, e->term, e->index, e->data, e->len, &res);
        else
            s = kv_apply_noop(n->kv, (uint16_t)g->id, e->term, e->index);
        if (nk_ok(s))
            break;
        if (s.code == NK_DATA_LOSS) {
            mark_damaged(n, g, s);
            nk_status_free(&s);
            return false;
        }
        char what[64];
        snprintf(what, sizeof what, "applying to shard %u", g->id);
        set_degraded(n, s, what);
        nk_status_free(&s);
        if (!retry_wait(n, attempt))
            return false;
    }
    clear_degraded(n);
    g->applied = e->index;
    g->applied_term = e->term;
    g->last_seq = lsm_last_sequence(n->db);
    nk_status ts = kv_shard_time(n->kv, (uint16_t)g->id, &g->time_ms);
    NK_ASSERT(nk_ok(ts)); /* loaded by the apply just made */
    atomic_fetch_add_explicit(&n->st_applied_entries, 1, memory_order_relaxed);
    settle_proposals(n, g, e->index, e->term, is_cmd ? &res : NULL);
    return true;
}

/* Publishes what other threads read without asking the loop. */
static void publish(struct node *n, struct group *g)
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
    atomic_store_explicit(&p->lead, leader ? SELF_ID : lead, memory_order_release);
    atomic_store_explicit(&p->applied, g->applied, memory_order_release);
}

static bool single_voter(const struct raft_conf_state *c)
{
    return c->n_voters == 1 && c->voters[0] == SELF_ID && c->n_voters_out == 0;
}

static void note_conf(struct group *g, uint64_t index)
{
    /* the membership as of the applied index: what a compaction point at
     * (or after) this index must carry */
    const struct raft_conf_state *c = raft_applied_conf(g->r);
    if (g->n_conf == 2)
        g->conf_hist[0] = g->conf_hist[1];
    g->conf_hist[g->n_conf == 2 ? 1 : g->n_conf] = (struct conf_point){index, *c};
    if (g->n_conf < 2)
        g->n_conf++;
    g->single_voter = single_voter(raft_conf(g->r));
}

/* ------------------------------------------------------------ health */

static void set_degraded(struct node *n, nk_status s, const char *what)
{
    pthread_mutex_lock(&n->hmu);
    bool was = atomic_load(&n->degraded);
    snprintf(n->degraded_why, sizeof n->degraded_why, "%s: %s", what, nk_status_msg(s));
    atomic_store_explicit(&n->degraded, true, memory_order_release);
    pthread_mutex_unlock(&n->hmu);
    if (!was)
        NK_ERROR(MODULE, "degraded: %s: %s (retrying; writes are refused meanwhile)", what,
                 nk_status_msg(s));
    obs_gauge_set(n->m_degraded, 1);
}

static void clear_degraded(struct node *n)
{
    if (!atomic_load_explicit(&n->degraded, memory_order_acquire))
        return;
    pthread_mutex_lock(&n->hmu);
    NK_INFO(MODULE, "recovered from: %s", n->degraded_why);
    n->degraded_why[0] = '\0';
    atomic_store_explicit(&n->degraded, false, memory_order_release);
    pthread_mutex_unlock(&n->hmu);
    obs_gauge_set(n->m_degraded, 0);
}

/*
 * The shard's state failed a checksum while applying: stop its group (no
 * more ticks, Ready or applies; raft is left as it is, which raft_free
 * allows), refuse its calls, and say on /health how to repair it. The
 * other shards go on.
 */
static void mark_damaged(struct node *n, struct group *g, nk_status why)
{
    g->damaged = true;
    struct shard_pub *p = &n->pub[g->id];
    atomic_store_explicit(&p->lease_until_ns, 0, memory_order_release);
    atomic_store_explicit(&p->lead, 0, memory_order_release);
    atomic_store_explicit(&p->damaged, true, memory_order_release);
    uint32_t k = atomic_fetch_add(&n->damaged_shards, 1) + 1;
    obs_gauge_set(n->m_damaged, k);
    if (g->last_lead == SELF_ID)
        atomic_fetch_sub(&n->st_led, 1);
    g->last_lead = 0;
    NK_ERROR(MODULE,
             "shard %u is damaged on this node: %s. Its calls are refused; the other shards go "
             "on. Repair: on a cluster the replica is rebuilt from a healthy peer; on a one-node "
             "cluster stop the node and restore %s from a backup",
             g->id, nk_status_msg(why), n->data_dir);
    const char *msg = "shard state is damaged on this node (see /health)";
    for (size_t i = g->settled; i < g->pending.n; i++) {
        fail_req(&g->pending.v[i], NK_DATA_LOSS, msg, NULL);
        request_done(n);
    }
    g->pending.n = g->settled = 0;
    struct req_list *lists[] = {&g->parked, &g->reads};
    for (size_t l = 0; l < 2; l++) {
        for (size_t i = 0; i < lists[l]->n; i++) {
            fail_req(&lists[l]->v[i], NK_DATA_LOSS, msg, NULL);
            request_done(n);
        }
        lists[l]->n = 0;
    }
}

/* Waits before a retry, growing to 1 s; false when the node is stopping. */
static bool retry_wait(struct node *n, int attempt)
{
    uint64_t ms = attempt < 4 ? 50ULL << attempt : 1000;
    for (uint64_t waited = 0; waited < ms; waited += 10) {
        pthread_mutex_lock(&n->qmu);
        bool stop = n->stopping;
        pthread_mutex_unlock(&n->qmu);
        if (stop)
            return false;
        struct timespec ts = {0, 10 * 1000000L};
        nanosleep(&ts, NULL);
    }
    return true;
}

/* ------------------------------------------------------------ the loop */

static void expire_list(struct node *n, struct req_list *l, uint64_t now, enum nk_code code,
                        const char *msg)
{
    size_t w = 0;
    for (size_t i = 0; i < l->n; i++) {
        if (l->v[i].deadline <= now) {
            fail_req(&l->v[i], code, msg, NULL);
            request_done(n);
        } else {
            l->v[w++] = l->v[i];
        }
    }
    l->n = w;
}

static void fail_list(struct node *n, struct req_list *l, enum nk_code code, const char *msg)
{
    for (size_t i = 0; i < l->n; i++) {
        fail_req(&l->v[i], code, msg, NULL);
        request_done(n);
    }
    l->n = 0;
}


/* The membership in force at `index` (from the two most recent changes). */
static const struct raft_conf_state *conf_at(const struct group *g, uint64_t index)
{
    for (int i = g->n_conf - 1; i >= 0; i--)
        if (g->conf_hist[i].index <= index)
            return &g->conf_hist[i].conf;
    return NULL;
}

/*
 * Compacts each group's Raft log behind state the LSM has on disk. Runs on
 * the loop about once a second; adds COMPACT records to the round's batch.
 */
static void maybe_compact_logs(struct node *n)
{
    uint64_t persisted = lsm_persisted_sequence(n->db);
    bool want_flush = false;
    for (uint32_t i = 0; i < n->nshards; i++) {
        struct group *g = &n->groups[i];
        uint64_t in_log = g->applied >= g->log_first ? g->applied - g->log_first + 1 : 0;
        if (g->compact_now && g->log_first > g->compact_target) {
            g->compact_now = false; /* already compacted that far */
            atomic_store_explicit(&n->pub[g->id].compacted, g->log_first - 1,
                                  memory_order_release);
        }
        if (in_log == 0 || (in_log < n->opt.compact_log_entries && !g->compact_now))
            continue;
        if (g->ck_index >= g->log_first && persisted >= g->ck_seq) {
            const struct raft_conf_state *c = conf_at(g, g->ck_index);
            uint64_t term;
            nk_status s = raftlog_term(n->log, g->id, g->ck_index, &term);
            if (c && nk_ok(s)) {
                conf_encode(c, &n->conf_buf);
                raftlog_batch_compact(n->batch, g->id, g->ck_index, term,
                                      nk_slice_make(n->conf_buf.data, n->conf_buf.len));
                g->log_first = g->ck_index + 1;
                if (g->compact_now && g->ck_index >= g->compact_target) {
                    g->compact_now = false;
                    atomic_store_explicit(&n->pub[g->id].compacted, g->ck_index,
                                          memory_order_release);
                }
            }
            nk_status_free(&s);
        } else if (g->ck_index >= g->log_first) {
            want_flush = true; /* the checkpoint waits for the LSM */
            continue;
        }
        g->ck_seq = g->last_seq;
        g->ck_index = g->applied;
        want_flush = true;
    }
    if (want_flush) {
        pthread_mutex_lock(&n->fmu);
        if (!n->flush_running) {
            n->flush_wanted = true;
            pthread_cond_signal(&n->fcv);
        }
        pthread_mutex_unlock(&n->fmu);
    }
}

static void *flusher_main(void *arg)
{
    struct node *n = arg;
    pthread_mutex_lock(&n->fmu);
    for (;;) {
        while (!n->flush_wanted && !n->flush_stop)
            pthread_cond_wait(&n->fcv, &n->fmu);
        if (n->flush_stop)
            break;
        n->flush_wanted = false;
        n->flush_running = true;
        pthread_mutex_unlock(&n->fmu);
        /* the applies a flush persists record applied indexes: their
         * entries must be durable in the log first, whatever the fsync
         * policy, or a power cut leaves the LSM ahead of the log */
        nk_status s = raftlog_sync(n->log);
        if (nk_ok(s))
            s = lsm_flush(n->db);
        if (!nk_ok(s)) {
            NK_ERROR(MODULE, "background flush failed: %s", nk_status_msg(s));
            nk_status_free(&s);
        }
        pthread_mutex_lock(&n->fmu);
        n->flush_running = false;
    }
    pthread_mutex_unlock(&n->fmu);
    return NULL;
}

static void notify_watchers(struct node *n, uint64_t epoch)
{
    pthread_mutex_lock(&n->vmu);
    struct watcher w[MAX_WATCH];
    size_t k = 0;
    for (size_t i = 0; i < MAX_WATCH; i++)
        if (n->watchers[i].used)
            w[k++] = n->watchers[i];
    pthread_mutex_unlock(&n->vmu);
    for (size_t i = 0; i < k; i++)
        w[i].fn(w[i].ctx, epoch);
}

/* One round: requests, ticks, Ready of every dirty group, one durable write,
 * apply. False when the node is stopping while the round could not finish
 * (the loop then ends without advancing; nothing unfinished was acknowledged). */
static bool run_round(struct node *n, struct req *batch, size_t nbatch, bool tick, uint64_t now)
{
    for (size_t i = 0; i < nbatch; i++) {
        struct group *g = &n->groups[batch[i].shard];
        start_request(n, g, &batch[i]);
    }
    if (tick) {
        for (uint32_t i = 0; i < n->nshards; i++) {
            struct group *g = &n->groups[i];
            if (g->damaged || raft_is_quiesced(g->r))
                continue;
            raft_tick(g->r);
            node_tick_ring_note(&g->ticks, raft_now(g->r), now);
            mark_dirty(n, g);
            expire_list(n, &g->pending, now, NK_DEADLINE_EXCEEDED,
                        "COMMIT_TIMEOUT: not committed before the deadline");
            expire_list(n, &g->parked, now, NK_UNAVAILABLE,
                        "QUORUM_UNAVAILABLE: no leader for the shard before the deadline");
            expire_list(n, &g->reads, now, NK_UNAVAILABLE,
                        "QUORUM_UNAVAILABLE: leadership not confirmed before the deadline");
        }
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
        if (rd->snapshot)
            nk_panic("shard %u: installing a snapshot from a leader is not supported yet "
                     "(one-node clusters never need it)", g->id);
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
    /* one write, one fdatasync for every group */
    size_t round_entries = 0;
    for (size_t i = 0; i < nd; i++)
        if (has[i])
            round_entries += rds[i].n_entries;
    obs_hist_observe(n->m_round_entries, round_entries);
    obs_counter_inc(n->m_rounds);
    if (!raftlog_batch_empty(n->batch)) {
        uint64_t tw = nk_mono_ns();
        nk_status s = raftlog_write_ex(n->log, n->batch, must_sync);
        if (must_sync)
            obs_hist_observe_since(n->m_fsync, tw);
        /* A failed write (a full disk, an I/O error) acknowledged nothing:
         * retry the same batch until it is durable, refusing new work with
         * the reason meanwhile; nothing of this round goes on before it */
        for (int attempt = 0; !nk_ok(s); attempt++) {
            set_degraded(n, s, "writing the raft log");
            nk_status_free(&s);
            if (!retry_wait(n, attempt)) {
                free(rds);
                free(has);
                return false; /* stopping: nothing of this round was acknowledged */
            }
            s = raftlog_write_ex(n->log, n->batch, must_sync);
        }
        clear_degraded(n);
        if (must_sync)
            atomic_fetch_add_explicit(&n->st_fsyncs, 1, memory_order_relaxed);
        raftlog_batch_clear(n->batch);
    }
    /* messages: only this node exists until the transport lands */
    bool view_changed = false;
    for (size_t i = 0; i < nd; i++) {
        if (!has[i])
            continue;
        struct group *g = &n->groups[n->dirty[i]];
        struct raft_ready *rd = &rds[i];
        bool applied_all = true;
        for (size_t e = 0; e < rd->n_committed && applied_all; e++)
            applied_all = apply_entry(n, g, &rd->committed[e]);
        if (!applied_all) {
            if (g->damaged)
                continue; /* that group stops; the others go on */
            free(rds);
            free(has);
            return false; /* stopping while an apply could not be made */
        }
        settle_done(n, g);
        match_reads(n, g, rd);
        bool had_cc = false;
        for (size_t e = 0; e < rd->n_committed; e++)
            had_cc |= rd->committed[e].type == RAFT_ENTRY_CONF_CHANGE;
        uint64_t last_committed = rd->n_committed ? rd->committed[rd->n_committed - 1].index : 0;
        raft_advance(g->r, rd);
        if (had_cc)
            note_conf(g, last_committed);
        serve_reads(n, g);
    }
    /* after advance: leadership changes, parked requests, publication, quiescence */
    for (size_t i = 0; i < nd; i++) {
        struct group *g = &n->groups[n->dirty[i]];
        if (g->damaged)
            continue;
        /* publish first: whoever sees the led-shards count (READY, /readyz)
         * must also see this shard's leader in the view */
        publish(n, g);
        uint64_t lead = raft_lead(g->r);
        if (lead != g->last_lead) {
            view_changed = true;
            if (g->last_lead == SELF_ID)
                atomic_fetch_sub(&n->st_led, 1);
            if (lead == SELF_ID)
                atomic_fetch_add(&n->st_led, 1);
            g->last_lead = lead;
        }
        if (raft_role(g->r) == RAFT_LEADER && g->parked.n) {
            struct req_list parked = g->parked;
            g->parked = (struct req_list){0};
            for (size_t k = 0; k < parked.n; k++)
                start_request(n, g, &parked.v[k]);
            free(parked.v);
        }
        if (g->applied > atomic_load_explicit(&n->st_last_applied, memory_order_relaxed))
            atomic_store_explicit(&n->st_last_applied, g->applied, memory_order_relaxed);
    }
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
             * quiesce once the transport can wake them (clusters). */
            raft_quiesce(g->r);
            atomic_fetch_add_explicit(&n->st_quiesced, 1, memory_order_relaxed);
        }
    }
    n->ndirty = w;
    free(rds);
    free(has);
    atomic_fetch_add_explicit(&n->st_rounds, 1, memory_order_relaxed);
    if (view_changed) {
        pthread_mutex_lock(&n->vmu);
        uint64_t epoch = ++n->epoch;
        pthread_mutex_unlock(&n->vmu);
        notify_watchers(n, epoch);
    }
    return true;
}

static void *loop_main(void *arg)
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
        while ((n->qlen == 0 || hold) && !n->stopping && n->ndirty == 0) {
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
            maybe_compact_logs(n);
            advance_gc_clock(n);
            next_maint = now + 1000000000ULL;
        }
        if (!run_round(n, batch, nb, tick, now))
            break;
        if (sync_ns && now >= next_sync) {
            nk_status s = raftlog_sync(n->log);
            if (!nk_ok(s)) {
                /* the "batch" policy's window sync: what it covers was
                 * acknowledged under that policy's documented promise;
                 * retried next period */
                set_degraded(n, s, "syncing the raft log");
                nk_status_free(&s);
            } else {
                clear_degraded(n);
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

/* --------------------------------------------------------------- open/close */

static nk_status check_cluster_file(struct node *n)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/CLUSTER", n->data_dir);
    uint8_t *d;
    size_t len;
    nk_status s = nk_read_file(path, 4096, &d, &len);
    if (s.code == NK_NOT_FOUND) {
        nk_status_free(&s);
        /* A directory that already holds a log or a database lost its
         * CLUSTER file (an operator's mistake, a bad restore): recreating it
         * would accept whatever total_shards the configuration says now and
         * route keys to the wrong shards. */
        const char *parts[] = {"raft", "lsm"};
        for (size_t i = 0; i < NK_ARRAY_LEN(parts); i++) {
            char sub[4300];
            struct stat st;
            snprintf(sub, sizeof sub, "%s/%s", n->data_dir, parts[i]);
            if (stat(sub, &st) == 0)
                return nk_status_make(NK_FAILED_PRECONDITION,
                                      "%s is missing but %s holds data: the data directory is "
                                      "incomplete; restore CLUSTER (one line, "
                                      "\"total_shards=N\") from a backup of this node",
                                      path, sub);
        }
        char buf[128];
        int k = snprintf(buf, sizeof buf, "total_shards=%u\n", n->nshards);
        return nk_write_file_atomic(path, buf, (size_t)k);
    }
    NK_TRY(s);
    unsigned ts = 0;
    int ok = sscanf((const char *)d, "total_shards=%u", &ts);
    free(d);
    if (ok != 1)
        return nk_status_make(NK_DATA_LOSS, "%s is malformed", path);
    if (ts != n->nshards)
        return nk_status_make(NK_FAILED_PRECONDITION,
                              "%s records total_shards=%u but the configuration says %u; "
                              "total_shards is fixed when a cluster is created",
                              path, ts, n->nshards);
    return NK_OK;
}

static nk_status open_groups(struct node *n)
{
    /* bootstrap groups that have no state yet: a compaction point at 0 whose
     * membership is this node alone */
    struct raft_conf_state boot = {.n_voters = 1, .voters = {SELF_ID}};
    struct nk_buf cb;
    nk_buf_init(&cb);
    conf_encode(&boot, &cb);
    bool any = false;
    for (uint32_t i = 0; i < n->nshards; i++) {
        uint64_t ci, ct;
        struct raftlog_hardstate hs;
        raftlog_get_compacted(n->log, i, &ci, &ct, &n->conf_buf);
        raftlog_get_hardstate(n->log, i, &hs);
        if (n->conf_buf.len == 0 && hs.term == 0 && raftlog_last_index(n->log, i) == 0) {
            raftlog_batch_compact(n->batch, i, 0, 0, nk_slice_make(cb.data, cb.len));
            any = true;
        }
    }
    nk_buf_free(&cb);
    if (any) {
        NK_TRY(raftlog_write(n->log, n->batch));
        raftlog_batch_clear(n->batch);
    }
    for (uint32_t i = 0; i < n->nshards; i++) {
        struct group *g = &n->groups[i];
        g->id = i;
        g->node = n;
        uint64_t at = 0, ai = 0;
        NK_TRY(kv_applied(n->kv, (uint16_t)i, &at, &ai));
        uint64_t ci, ct;
        raftlog_get_compacted(n->log, i, &ci, &ct, &n->conf_buf);
        if (ai < ci)
            return nk_status_make(NK_DATA_LOSS,
                                  "shard %u: the database has applied up to %llu but the raft log "
                                  "starts after %llu; entries in between are lost",
                                  i, (unsigned long long)ai, (unsigned long long)ci);
        struct raft_conf_state conf;
        if (!conf_decode(n->conf_buf.data, n->conf_buf.len, &conf))
            return nk_status_make(NK_DATA_LOSS, "shard %u: stored membership is malformed", i);
        g->conf_hist[0] = (struct conf_point){ci, conf};
        g->n_conf = 1;
        g->single_voter = single_voter(&conf);
        g->applied = ai;
        g->applied_term = at;
        g->log_first = ci + 1;
        struct raft_config rc = {
            .id = SELF_ID,
            .storage = {.ctx = g,
                        .initial_state = st_initial_state,
                        .first_index = st_first_index,
                        .last_index = st_last_index,
                        .term = st_term,
                        .entries = st_entries,
                        .snapshot = st_snapshot},
            .applied = ai,
            .election_tick = n->opt.election_ticks,
            .heartbeat_tick = n->opt.heartbeat_ticks,
            .rand_seed = nk_wall_ms() ^ i,
        };
        nk_status s = raft_new(&rc, &g->r);
        if (!nk_ok(s))
            return nk_status_wrap(s, "shard %u", i);
        if (g->single_voter) {
            nk_status cs = raft_campaign(g->r); /* nobody to wait for */
            nk_status_free(&cs);
        }
        mark_dirty(n, g);
    }
    return NK_OK;
}

nk_status node_open(const struct node_options *o, struct node **out)
{
    struct node *n = nk_calloc(1, sizeof(*n));
    n->opt = *o;
    n->name = nk_strdup(o->node_name ? o->node_name : "node-1");
    n->client_addr = nk_strdup(o->client_addr ? o->client_addr : "");
    n->data_dir = nk_strdup(o->data_dir);
    n->opt.node_name = n->name;
    n->opt.client_addr = n->client_addr;
    n->opt.data_dir = n->data_dir;
    if (n->opt.total_shards == 0 || n->opt.total_shards > 65536) {
        nk_status s = nk_status_make(NK_INVALID_ARGUMENT,
                                     "total_shards %u is out of range (1..65536)",
                                     n->opt.total_shards);
        node_close(n);
        return s;
    }
    if (n->opt.max_pending == 0)
        n->opt.max_pending = 65536;
    if (n->opt.max_batch_entries == 0)
        n->opt.max_batch_entries = 8192;
    if (n->opt.tick_ms == 0)
        n->opt.tick_ms = 100;
    n->nshards = n->opt.total_shards;
    n->start_ms = nk_mono_ms();
    /* The view's epoch must keep increasing across restarts, or a client
     * holding the epoch of the previous run would never hear of the new view
     * (WatchCluster sends only newer views). Start from the wall clock in
     * microseconds; every change adds one. */
    n->epoch = nk_wall_ms() * 1000ULL;
    pthread_mutex_init(&n->qmu, NULL);
    /* the loop's timed waits are on CLOCK_MONOTONIC (the default clock of a
     * condition variable is CLOCK_REALTIME, which would make every wait
     * return at once) */
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&n->qcv, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&n->fmu, NULL);
    pthread_cond_init(&n->fcv, NULL);
    pthread_mutex_init(&n->rmu, NULL);
    pthread_mutex_init(&n->hmu, NULL);
    pthread_cond_init(&n->rcv, NULL);
    pthread_mutex_init(&n->vmu, NULL);
    n->qcap = n->opt.max_pending;
    n->q = nk_malloc(n->qcap * sizeof(*n->q));
    n->rq = nk_malloc(n->qcap * sizeof(*n->rq));
    n->groups = nk_calloc(n->nshards, sizeof(*n->groups));
    n->pub = nk_calloc(n->nshards, sizeof(*n->pub));
    n->gc_time = nk_calloc(n->nshards, sizeof(*n->gc_time));
    n->dirty = nk_malloc(n->nshards * sizeof(*n->dirty));
    n->batch = raftlog_batch_new();
    nk_buf_init(&n->conf_buf);
    struct obs_registry *reg = obs_default();
    nk_status ms = obs_histogram_register(reg, OBS_UNIT_MICROS, "norikv_raft_fsync_duration_seconds",
                                          "Raft log batch write + fdatasync latency", &n->m_fsync);
    nk_status_free(&ms);
    ms = obs_histogram_register(reg, OBS_UNIT_MICROS, "norikv_raft_commit_duration_seconds",
                                "Proposal queued to applied", &n->m_commit);
    nk_status_free(&ms);
    ms = obs_histogram_register(reg, OBS_UNIT_NONE, "norikv_raft_round_entries",
                                "Entries made durable per Ready round (group commit size)",
                                &n->m_round_entries);
    nk_status_free(&ms);
    ms = obs_counter_register(reg, "norikv_raft_rounds_total", "Ready loop rounds", &n->m_rounds);
    nk_status_free(&ms);
    ms = obs_gauge_register(reg, "norikv_node_degraded",
                            "1 while writes are suspended (log or apply failing; see /health)",
                            &n->m_degraded);
    nk_status_free(&ms);
    ms = obs_gauge_register(reg, "norikv_node_damaged_shards",
                            "Shards whose state failed a checksum on this node", &n->m_damaged);
    nk_status_free(&ms);

    char path[4200];
    nk_status s = nk_mkdirs(n->data_dir, 0755);
    if (nk_ok(s))
        s = check_cluster_file(n);
    if (nk_ok(s)) {
        struct raftlog_options ro;
        raftlog_options_default(&ro);
        ro.wal.sync = n->opt.ephemeral ? WAL_SYNC_OS : n->opt.raft_sync;
        ro.wal.preallocate = !n->opt.ephemeral;
        if (n->opt.ephemeral)
            ro.wal.segment_size = 8u << 20;
        ro.cache_bytes = n->opt.raftlog_cache_bytes;
        ro.max_groups = n->nshards;
        snprintf(path, sizeof path, "%s/raft", n->data_dir);
        s = raftlog_open(path, &ro, &n->log);
    }
    if (nk_ok(s)) {
        struct lsm_options lo = n->opt.lsm;
        if (n->opt.ephemeral)
            lo.wal_sync = LSM_WAL_SYNC_OS;
        lo.key_clock_ms = node_key_clock;
        lo.key_clock_ctx = n;
        snprintf(path, sizeof path, "%s/lsm", n->data_dir);
        s = lsm_open(path, &lo, &n->db);
    }
    if (nk_ok(s))
        s = kv_store_open(n->db, &n->opt.kv, &n->kv);
    if (nk_ok(s))
        s = open_groups(n);
    if (nk_ok(s)) {
        if (pthread_create(&n->flusher, NULL, flusher_main, n) != 0)
            s = nk_status_errno(errno, "start flusher thread");
        else
            n->flusher_started = true;
    }
    if (nk_ok(s)) {
        if (pthread_create(&n->reader, NULL, reader_main, n) != 0)
            s = nk_status_errno(errno, "start reader thread");
        else
            n->reader_started = true;
    }
    if (nk_ok(s)) {
        if (pthread_create(&n->loop, NULL, loop_main, n) != 0)
            s = nk_status_errno(errno, "start ready loop thread");
        else
            n->loop_started = true;
    }
    if (!nk_ok(s)) {
        node_close(n);
        return s;
    }
    *out = n;
    return NK_OK;
}

void node_close(struct node *n)
{
    if (!n)
        return;
    atomic_store(&n->closed, true);
    pthread_mutex_lock(&n->qmu);
    n->stopping = true;
    pthread_mutex_unlock(&n->qmu);
    pthread_cond_signal(&n->qcv);
    if (n->loop_started)
        pthread_join(n->loop, NULL);
    /* everything still waiting learns that we stop */
    const char *bye = "server shutting down";
    for (size_t i = 0; i < n->qlen; i++) {
        struct req *r = &n->q[(n->qhead + i) % n->qcap];
        fail_req(r, NK_UNAVAILABLE, bye, NULL);
        request_done(n);
    }
    n->qlen = 0;
    if (n->groups) {
        for (uint32_t i = 0; i < n->nshards; i++) {
            struct group *g = &n->groups[i];
            fail_list(n, &g->pending, NK_UNAVAILABLE, bye);
            fail_list(n, &g->parked, NK_UNAVAILABLE, bye);
            fail_list(n, &g->reads, NK_UNAVAILABLE, bye);
            free(g->pending.v);
            free(g->parked.v);
            free(g->reads.v);
            raft_free(g->r);
        }
    }
    if (n->reader_started) {
        /* reads already confirmed are served: the state is still open */
        pthread_mutex_lock(&n->rmu);
        n->reader_stop = true;
        pthread_cond_signal(&n->rcv);
        pthread_mutex_unlock(&n->rmu);
        pthread_join(n->reader, NULL);
    }
    if (n->flusher_started) {
        pthread_mutex_lock(&n->fmu);
        n->flush_stop = true;
        pthread_cond_signal(&n->fcv);
        pthread_mutex_unlock(&n->fmu);
        pthread_join(n->flusher, NULL);
    }
    kv_store_close(n->kv);
    if (n->log) {
        /* lsm_close flushes the applies that skipped its WAL: the log
         * entries they came from go to disk first (see the flusher) */
        nk_status s = raftlog_sync(n->log);
        if (!nk_ok(s)) {
            NK_ERROR(MODULE, "final raft log sync: %s", nk_status_msg(s));
            nk_status_free(&s);
        }
    }
    lsm_close(n->db); /* flushes what skipped the WAL */
    raftlog_close(n->log);
    raftlog_batch_free(n->batch);
    nk_buf_free(&n->conf_buf);
    free(n->groups);
    free(n->pub);
    free(n->gc_time);
    free(n->dirty);
    free(n->q);
    free(n->rq);
    pthread_mutex_destroy(&n->rmu);
    pthread_mutex_destroy(&n->hmu);
    pthread_cond_destroy(&n->rcv);
    pthread_mutex_destroy(&n->qmu);
    pthread_cond_destroy(&n->qcv);
    pthread_mutex_destroy(&n->fmu);
    pthread_cond_destroy(&n->fcv);
    pthread_mutex_destroy(&n->vmu);
    free(n->name);
    free(n->client_addr);
    free(n->data_dir);
    free(n);
}

/* ------------------------------------------------------------------- view */

void node_set_client_addr(struct node *n, const char *addr, const char *name)
{
    pthread_mutex_lock(&n->vmu);
    char *old = n->client_addr;
    n->client_addr = nk_strdup(addr);
    n->opt.client_addr = n->client_addr;
    free(old);
    if (name) {
        old = n->name;
        n->name = nk_strdup(name);
        n->opt.node_name = n->name;
        free(old);
    }
    n->epoch++; /* the view changed */
    pthread_mutex_unlock(&n->vmu);
}

void node_view_get(struct node *n, struct node_view *v)
{
    memset(v, 0, sizeof(*v));
    pthread_mutex_lock(&n->vmu);
    v->epoch = n->epoch;
    snprintf(v->nodes[0].addr, sizeof v->nodes[0].addr, "%s", n->client_addr);
    pthread_mutex_unlock(&n->vmu);
    v->n_nodes = 1;
    pthread_mutex_lock(&n->vmu);
    snprintf(v->nodes[0].id, sizeof v->nodes[0].id, "%s", n->name);
    pthread_mutex_unlock(&n->vmu);
    snprintf(v->nodes[0].role, sizeof v->nodes[0].role, "alive");
    v->total_shards = n->nshards;
    v->n_replicas = nk_malloc(n->nshards);
    v->replicas = nk_malloc(n->nshards * sizeof(*v->replicas));
    v->leader = nk_malloc(n->nshards);
    for (uint32_t i = 0; i < n->nshards; i++) {
        v->n_replicas[i] = 1;
        v->replicas[i][0] = 0;
        uint64_t lead = atomic_load_explicit(&n->pub[i].lead, memory_order_acquire);
        v->leader[i] = lead == SELF_ID ? 0 : -1;
    }
}

void node_view_free(struct node_view *v)
{
    free(v->n_replicas);
    free(v->replicas);
    free(v->leader);
    memset(v, 0, sizeof(*v));
}

nk_status node_watch(struct node *n, node_watch_fn fn, void *ctx, uint32_t *id)
{
    pthread_mutex_lock(&n->vmu);
    for (uint32_t i = 0; i < MAX_WATCH; i++) {
        if (!n->watchers[i].used) {
            n->watchers[i] = (struct watcher){fn, ctx, true};
            pthread_mutex_unlock(&n->vmu);
            *id = i;
            return NK_OK;
        }
    }
    pthread_mutex_unlock(&n->vmu);
    return nk_status_make(NK_RESOURCE_EXHAUSTED, "too many cluster watchers (limit %d)",
                          MAX_WATCH);
}

void node_unwatch(struct node *n, uint32_t id)
{
    if (id >= MAX_WATCH)
        return;
    pthread_mutex_lock(&n->vmu);
    n->watchers[id].used = false;
    pthread_mutex_unlock(&n->vmu);
}

/* ------------------------------------------------------------------ admin */

struct snap_wait {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool done;
    struct node_write_result wr;
};

static void snap_done(void *ctx, const struct node_write_result *wr)
{
    struct snap_wait *w = ctx;
    pthread_mutex_lock(&w->mu);
    w->wr = *wr;
    w->wr.msg = NULL; /* messages are static strings only valid in the call */
    w->done = true;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

nk_status node_snapshot_shard(struct node *n, uint32_t shard, uint64_t *index)
{
    if (shard >= n->nshards)
        return nk_status_make(NK_INVALID_ARGUMENT, "shard %u does not exist (total %u)", shard,
                              n->nshards);
    /* 1. the loop checkpoints the shard at its applied index */
    struct snap_wait w = {.done = false};
    pthread_mutex_init(&w.mu, NULL);
    pthread_cond_init(&w.cv, NULL);
    struct req r = {.kind = REQ_SNAPSHOT,
                    .shard = shard,
                    .deadline = nk_mono_ns() + n->opt.default_deadline_ms * 1000000ULL,
                    .done = snap_done,
                    .ctx = &w};
    nk_status s = enqueue(n, &r);
    if (nk_ok(s)) {
        pthread_mutex_lock(&w.mu);
        while (!w.done)
            pthread_cond_wait(&w.cv, &w.mu);
        pthread_mutex_unlock(&w.mu);
        if (w.wr.code != NK_CODE_OK)
            s = nk_status_make(w.wr.code, "shard %u: snapshot not taken (server stopping)",
                               shard);
    }
    pthread_mutex_destroy(&w.mu);
    pthread_cond_destroy(&w.cv);
    NK_TRY(s);
    uint64_t target = w.wr.res.index;
    /* 2. every apply up to it goes into tables: that is the snapshot */
    NK_TRY(lsm_flush(n->db));
    /* 3. the loop's maintenance (once a second) compacts the log behind it */
    uint64_t until = nk_mono_ns() + 10ULL * 1000000000ULL;
    while (atomic_load_explicit(&n->pub[shard].compacted, memory_order_acquire) < target) {
        if (atomic_load_explicit(&n->closed, memory_order_acquire))
            return nk_status_make(NK_UNAVAILABLE, "server shutting down");
        if (nk_mono_ns() > until)
            return nk_status_make(NK_DEADLINE_EXCEEDED,
                                  "shard %u: the log was not compacted to %llu within 10 s", shard,
                                  (unsigned long long)target);
        struct timespec ts = {0, 20 * 1000000L};
        nanosleep(&ts, NULL);
    }
    *index = target;
    return NK_OK;
}

bool node_shard_damaged(struct node *n, uint32_t shard)
{
    return shard < n->nshards && atomic_load_explicit(&n->pub[shard].damaged, memory_order_acquire);
}

uint64_t node_log_first_index(struct node *n, uint32_t shard)
{
    return raftlog_first_index(n->log, shard);
}

void node_get_stats(struct node *n, struct node_stats *o)
{
    memset(o, 0, sizeof(*o));
    o->total_shards = n->nshards;
    o->shards_led = atomic_load(&n->st_led);
    o->last_applied = atomic_load(&n->st_last_applied);
    o->applied_entries = atomic_load(&n->st_applied_entries);
    o->proposals = atomic_load(&n->st_proposals);
    o->proposals_failed = atomic_load(&n->st_proposals_failed);
    o->rounds = atomic_load(&n->st_rounds);
    o->fsyncs = atomic_load(&n->st_fsyncs);
    o->pending = atomic_load(&n->inflight);
    o->quiesced = atomic_load(&n->st_quiesced);
    o->uptime_ms = nk_mono_ms() - n->start_ms;
    o->round_bytes_max = atomic_load(&n->st_round_bytes_max);
    o->pending_moves = atomic_load(&n->st_pending_moves);
    o->write_holds = atomic_load(&n->st_holds);
    o->damaged_shards = atomic_load(&n->damaged_shards);
    o->degraded = atomic_load(&n->degraded);
    if (o->degraded) {
        pthread_mutex_lock(&n->hmu);
        snprintf(o->degraded_why, sizeof o->degraded_why, "%s", n->degraded_why);
        pthread_mutex_unlock(&n->hmu);
    }
}
