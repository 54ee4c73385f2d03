/*
 * sim.c: deterministic simulation of a Raft group (src/raft) under attack.
 *
 * One process plays N nodes, the network, the disks, the clocks and the
 * clients, all driven by one seeded PRNG, so a failing run replays exactly
 * from its seed. Time advances in steps of one unit; a tick is 10 units of a
 * node's own clock, and every node's clock runs at its own rate (skew up to
 * +-5%, inside the lease margin).
 *
 * The node layer's quiescence is played too: when the leader and every live
 * follower are idle the group is quiesced (clients pause now and then so
 * that this happens); a crash or partition wakes everyone, as a failure
 * detector would.
 *
 * Faults (until the last quarter of the run): message loss, duplication,
 * delay (which reorders), partitions and their healing, crashes (also in the
 * middle of persisting a Ready: a random prefix of its entries reaches the
 * disk, the rest and the hard state are lost, nothing is sent) and restarts
 * from what the disk kept. Nodes snapshot their state machine and compact
 * their logs, so lagging nodes are caught up by snapshots. Optionally the
 * membership goes 3 -> 3 + 2 learners -> 5 voters (joint) -> {3,4,5} with 1
 * demoted to learner (joint), all under the same faults.
 *
 * After every step the checker verifies, against global oracles:
 *  - election safety: at most one leader per term;
 *  - log matching: every persisted entry (index, term) has the same data and
 *    the same previous term on every node (by induction, identical prefixes);
 *  - leader completeness: every leader holds every entry committed anywhere,
 *    with the committed term;
 *  - state machine safety: every node's applied sequence (a hash chain) is a
 *    prefix of the same sequence, also across snapshot installs;
 *  - reads: a ReadIndex answer is >= every commit index that existed when
 *    the read was asked, and a lease read is >= every commit index ever seen.
 * Liveness: once the faults stop, within a bounded number of ticks a leader
 * exists, every pending client value is applied on every live member, and
 * the membership schedule has completed.
 *
 * Usage: raft_sim [--nodes 3|5] [--seed S] [--steps N] [--joint] [--runs K]
 *                 [--seconds T] [--quiet] [--harsh] [--no-quiesce]
 *                 [--bug forget-vote|ack-unsynced]
 * With --seconds, runs random seeds until the time is up (the soak), cycling
 * 3 nodes, 5 nodes, joint, each in normal and --harsh mode. --harsh: up to
 * 30% loss, delays up to 1/2 election timeout, tiny windows, frequent
 * crashes, partitions and transfers, timeouts drawn per run. --bug makes the
 * node break the Ready contract (the checker must fail the run).
 * Debugging: SIM_DEBUG=1 prints refused proposals and transfers,
 * SIM_TRACE=<step> every message sent from that step on.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "raft/raft.h"

#define MAXN        5
#define TICK_UNITS  10
#define MAX_PENDING 256

static int g_quiet;
/* --bug: make the simulated node break a rule of the Ready contract, to show
 * that the checker catches what such a bug does (these runs must fail). */
static const char *g_bug = "";
/* --no-quiesce: no quiescence and no client pauses, which also keeps the
 * random stream of runs recorded before they existed (regression seeds). */
static bool g_no_quiesce;
/* --harsh: more loss, longer delays, more crashes and partitions, and raft
 * limits and timeouts drawn per run (a different random stream). */
static bool g_harsh;

static void dump(void);
#define FAIL(...)                                                                                  \
    do {                                                                                           \
        fprintf(stderr, "SIM FAILURE (seed %" PRIu64 ", step %" PRIu64 "): ", S->seed, S->step);   \
        fprintf(stderr, __VA_ARGS__);                                                              \
        fprintf(stderr, "\n");                                                                     \
        dump();                                                                                    \
        exit(1);                                                                                   \
    } while (0)

/* ------------------------------------------------------------- oracles */

struct entry_rec {
    uint64_t index, term, hash, prev_term;
    bool used;
};

struct u64vec {
    uint64_t *v;
    size_t n;
};

static uint64_t *vec_at(struct u64vec *a, size_t i)
{
    if (i >= a->n) {
        size_t n = a->n ? a->n : 1024;
        while (n <= i)
            n *= 2;
        a->v = nk_realloc(a->v, n * sizeof(uint64_t));
        memset(a->v + a->n, 0, (n - a->n) * sizeof(uint64_t));
        a->n = n;
    }
    return &a->v[i];
}

static uint64_t mix(uint64_t h, uint64_t v)
{
    h ^= v + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
    h *= 0xff51afd7ed558ccdull;
    return h ^ (h >> 33);
}

static uint64_t entry_hash(const struct raft_entry *e)
{
    return mix(mix(e->type, e->len), e->len ? nk_xxhash64(e->data, e->len) : 0);
}

/* ---------------------------------------------------------------- model */

struct packet {
    uint64_t at;
    uint64_t from, to;
    uint8_t *data;
    size_t len;
};

struct node {
    uint64_t id;
    struct raft *r; /* NULL while down */
    struct raft_memstorage *disk;
    double rate, acc;
    uint64_t down_until;
    /* state machine (volatile; rebuilt from the disk's snapshot on restart) */
    uint64_t sm_index, sm_hash;
    uint64_t seen_commit;
    uint64_t checked_leader_term;
};

struct read_req {
    uint64_t ctx, node, min_index;
};

struct sim {
    uint64_t seed, step, steps, fault_end;
    int n;
    bool joint;
    struct nk_rng rng;
    struct node nodes[MAXN];
    /* network */
    struct packet *net;
    size_t n_net, cap_net;
    bool cut[MAXN + 1][MAXN + 1];
    uint64_t heal_at;
    uint32_t drop_pct, dup_pct, max_delay;
    /* per-run parameters */
    uint32_t election_tick, heartbeat_tick, max_inflight, max_uncommitted;
    uint64_t max_msg_bytes, max_committed_bytes;
    uint32_t max_msgs;
    uint32_t crash_every, partition_every, transfer_every, snap_every;
    /* oracles */
    struct u64vec term_leader;
    struct u64vec committed_term; /* index -> term of the committed entry */
    struct u64vec commit_seen_in;  /* index -> lowest term in which a node knew it committed */
    struct u64vec chain;
    struct entry_rec *recs;
    size_t cap_recs, n_recs;
    uint64_t max_commit;
    /* clients */
    uint64_t next_value;
    uint64_t pending[MAX_PENDING];
    uint64_t pending_at[MAX_PENDING];
    size_t n_pending;
    struct read_req reads[64];
    size_t n_reads;
    uint64_t next_ctx;
    int stage; /* membership schedule */
    /* stats */
    uint64_t st_leaders, st_crashes, st_torn, st_restarts, st_partitions, st_snap_sent,
        st_snap_installed, st_delivered, st_dropped, st_applied, st_values, st_reads,
        st_lease_reads, st_transfers, st_quiesced;
    uint64_t quiet_until; /* clients pause: lets groups go idle and quiesce */
};

static struct sim *S;

static uint64_t rnd(uint64_t n)
{
    return nk_rng_uniform(&S->rng, n);
}

static bool chance(uint32_t num, uint32_t den)
{
    return nk_rng_chance(&S->rng, num, den);
}

static struct entry_rec *rec_find(uint64_t index, uint64_t term, bool create)
{
    if (S->n_recs * 2 >= S->cap_recs) {
        size_t oc = S->cap_recs;
        struct entry_rec *old = S->recs;
        S->cap_recs = oc ? oc * 2 : 4096;
        S->recs = nk_calloc(S->cap_recs, sizeof(*S->recs));
        S->n_recs = 0;
        for (size_t i = 0; i < oc; i++)
            if (old[i].used) {
                struct entry_rec *n = rec_find(old[i].index, old[i].term, true);
                *n = old[i];
            }
        free(old);
    }
    size_t mask = S->cap_recs - 1;
    size_t h = (size_t)mix(index, term) & mask;
    for (;;) {
        struct entry_rec *e = &S->recs[h];
        if (!e->used) {
            if (!create)
                return NULL;
            e->used = true;
            e->index = index;
            e->term = term;
            S->n_recs++;
            return e;
        }
        if (e->index == index && e->term == term)
            return e;
        h = (h + 1) & mask;
    }
}

/* ------------------------------------------------------------- helpers */

static struct node *node_of(uint64_t id)
{
    return (id >= 1 && id <= (uint64_t)S->n) ? &S->nodes[id - 1] : NULL;
}

static struct raft_conf_state conf_of(const uint64_t *voters, int nv, const uint64_t *learners,
                                      int nl)
{
    struct raft_conf_state c;
    memset(&c, 0, sizeof(c));
    for (int i = 0; i < nv; i++)
        c.voters[c.n_voters++] = voters[i];
    for (int i = 0; i < nl; i++)
        c.learners[c.n_learners++] = learners[i];
    return c;
}

static bool same_set(const uint64_t *a, uint8_t na, const uint64_t *b, uint8_t nb)
{
    if (na != nb)
        return false;
    for (uint8_t i = 0; i < na; i++) {
        bool f = false;
        for (uint8_t j = 0; j < nb; j++)
            f |= a[i] == b[j];
        if (!f)
            return false;
    }
    return true;
}

static bool conf_eq(const struct raft_conf_state *a, const struct raft_conf_state *b)
{
    return same_set(a->voters, a->n_voters, b->voters, b->n_voters) &&
           same_set(a->voters_out, a->n_voters_out, b->voters_out, b->n_voters_out) &&
           same_set(a->learners, a->n_learners, b->learners, b->n_learners);
}

/* the membership schedule of a --joint run */
static struct raft_conf_state stage_target(int stage)
{
    static const uint64_t v123[] = {1, 2, 3}, v12345[] = {1, 2, 3, 4, 5}, v345[] = {3, 4, 5};
    static const uint64_t l45[] = {4, 5}, l1[] = {1};
    switch (stage) {
    case 0:
        return conf_of(v123, 3, NULL, 0);
    case 1:
        return conf_of(v123, 3, l45, 2);
    case 2:
        return conf_of(v12345, 5, NULL, 0);
    default:
        return conf_of(v345, 3, l1, 1);
    }
}

static void start_node(struct node *nd)
{
    struct raft_config cfg = {
        .id = nd->id,
        .storage = raft_memstorage_storage(nd->disk),
        .election_tick = S->election_tick,
        .heartbeat_tick = S->heartbeat_tick,
        .max_msg_bytes = S->max_msg_bytes, /* small, to exercise splitting */
        .max_inflight_msgs = S->max_inflight,
        .max_uncommitted_entries = S->max_uncommitted,
        .max_committed_bytes = S->max_committed_bytes,
        .max_msgs_per_ready = S->max_msgs,
        .rand_seed = S->seed ^ (S->step << 8),
    };
    /* the state machine restarts from the disk's snapshot */
    struct nk_arena a;
    nk_arena_init(&a);
    struct raft_snapshot snap;
    struct raft_storage st = raft_memstorage_storage(nd->disk);
    nk_status s = st.snapshot(st.ctx, &a, &snap);
    NK_ASSERT(nk_ok(s));
    if (snap.len == 16) {
        nd->sm_index = nk_dec_fixed64(snap.data);
        nd->sm_hash = nk_dec_fixed64(snap.data + 8);
    } else {
        nd->sm_index = snap.index;
        nd->sm_hash = 0;
    }
    NK_ASSERT(nd->sm_index == snap.index);
    nk_arena_free(&a);
    cfg.applied = nd->sm_index;
    s = raft_new(&cfg, &nd->r);
    if (!nk_ok(s))
        FAIL("node %" PRIu64 " cannot restart: %s", nd->id, nk_status_msg(s));
    struct raft_hard_state hs;
    raft_memstorage_hard_state(nd->disk, &hs);
    nd->seen_commit = raft_commit_index(nd->r);
    nd->checked_leader_term = 0;
}

static void wake_all(void);

static void crash_node(struct node *nd)
{
    wake_all();
    raft_free(nd->r);
    nd->r = NULL;
    nd->down_until = S->step + 200 + rnd(3000);
    S->st_crashes++;
}

/* ------------------------------------------------------------- network */

static void send_packet(uint64_t from, const struct raft_msg *m)
{
    if (getenv("SIM_TRACE") && S->step >= strtoull(getenv("SIM_TRACE"), NULL, 0))
        fprintf(stderr, "step %" PRIu64 ": send %s %" PRIu64 " -> %" PRIu64 " term %" PRIu64
                        " index %" PRIu64 " log_term %" PRIu64 " commit %" PRIu64
                        " n %u reject %d ctx %" PRIu64 "\n",
                S->step, raft_msg_type_name(m->type), m->from, m->to, m->term, m->index,
                m->log_term, m->commit, m->n_entries, m->reject, m->ctx);
    struct node *to = node_of(m->to);
    if (!to)
        return;
    int copies = 1;
    if (S->step < S->fault_end) {
        if (chance(S->drop_pct, 100)) {
            S->st_dropped++;
            return;
        }
        if (chance(S->dup_pct, 100))
            copies = 2;
    }
    struct nk_buf b;
    nk_buf_init(&b);
    raft_msg_encode(m, &b);
    for (int c = 0; c < copies; c++) {
        if (S->n_net == S->cap_net) {
            S->cap_net = S->cap_net ? S->cap_net * 2 : 256;
            S->net = nk_realloc(S->net, S->cap_net * sizeof(*S->net));
        }
        S->net[S->n_net++] = (struct packet){.at = S->step + 1 + rnd(S->max_delay),
                                             .from = from,
                                             .to = m->to,
                                             .data = c ? nk_memdup(b.data, b.len) : b.data,
                                             .len = b.len};
    }
    if (m->type == RAFT_MSG_SNAPSHOT)
        S->st_snap_sent++;
}

static void deliver(void)
{
    size_t w = 0;
    for (size_t i = 0; i < S->n_net; i++) {
        struct packet p = S->net[i];
        if (p.at > S->step) {
            S->net[w++] = p;
            continue;
        }
        struct node *to = node_of(p.to);
        if (to->r && !S->cut[p.from][p.to]) {
            struct nk_arena a;
            nk_arena_init(&a);
            struct raft_msg m;
            nk_status s = raft_msg_decode(p.data, p.len, &a, &m);
            if (!nk_ok(s))
                FAIL("decode of our own message failed: %s", nk_status_msg(s));
            if (getenv("SIM_DEBUG") && (m.type == RAFT_MSG_TIMEOUT_NOW ||
                                        (m.type == RAFT_MSG_VOTE && m.ctx)))
                fprintf(stderr, "step %" PRIu64 ": %s %" PRIu64 " -> %" PRIu64 " term %" PRIu64
                                " (receiver term %" PRIu64 ", role %s)\n",
                        S->step, raft_msg_type_name(m.type), m.from, m.to, m.term,
                        raft_term(to->r), raft_role_name(raft_role(to->r)));
            s = raft_step(to->r, &m);
            if (!nk_ok(s))
                FAIL("step %s on node %" PRIu64 ": %s", raft_msg_type_name(m.type), p.to,
                     nk_status_msg(s));
            nk_arena_free(&a);
            S->st_delivered++;
        } else {
            S->st_dropped++;
        }
        free(p.data);
    }
    S->n_net = w;
}

/* ------------------------------------------------------------- clients */

static void value_applied(uint64_t v)
{
    for (size_t i = 0; i < S->n_pending; i++)
        if (S->pending[i] == v) {
            S->pending[i] = S->pending[S->n_pending - 1];
            S->pending_at[i] = S->pending_at[S->n_pending - 1];
            S->n_pending--;
            return;
        }
}

static struct node *a_leader(void)
{
    for (int i = 0; i < S->n; i++)
        if (S->nodes[i].r && raft_role(S->nodes[i].r) == RAFT_LEADER)
            return &S->nodes[i];
    return NULL;
}

static bool propose_value(struct node *ld, uint64_t v)
{
    uint8_t buf[80];
    size_t len = 8 + rnd(64);
    nk_enc_fixed64(buf, v);
    for (size_t i = 8; i < len; i++)
        buf[i] = (uint8_t)(v + i);
    nk_status s = raft_propose(ld->r, buf, len, NULL, NULL);
    if (!nk_ok(s) && getenv("SIM_DEBUG"))
        fprintf(stderr, "step %" PRIu64 ": propose on %" PRIu64 ": %s\n", S->step, ld->id,
                nk_status_msg(s));
    bool ok = nk_ok(s);
    nk_status_free(&s); /* refusals (full, transfer) are retried later */
    return ok;
}

static void wake_all(void)
{
    for (int i = 0; i < S->n; i++)
        if (S->nodes[i].r)
            raft_unquiesce(S->nodes[i].r);
}

/* The node layer's part: quiesce a group whose leader and live followers
 * are all idle; wake everyone when a node is suspected (crash, partition). */
static void maybe_quiesce(void)
{
    struct node *ld = a_leader();
    if (g_no_quiesce || !ld || raft_is_quiesced(ld->r) || !chance(1, 20))
        return;
    for (int i = 0; i < S->n; i++)
        if (S->nodes[i].r && !raft_is_idle(S->nodes[i].r))
            return;
    for (int i = 0; i < S->n; i++)
        if (S->nodes[i].r)
            raft_quiesce(S->nodes[i].r);
    S->st_quiesced++;
}

static void clients(void)
{
    struct node *ld = a_leader();
    if (!ld)
        return;
    if (S->step < S->quiet_until && S->step < S->fault_end)
        return;
    if (!g_no_quiesce && chance(1, 4000))
        S->quiet_until = S->step + 500 + rnd(3000);
    /* new values, sometimes in bursts that exercise batching */
    /* (after the faults, only what is pending: liveness means it commits) */
    if (S->step < S->fault_end && chance(1, 15) && S->n_pending < MAX_PENDING - 16) {
        int burst = chance(1, 10) ? 1 + (int)rnd(12) : 1;
        for (int k = 0; k < burst; k++) {
            uint64_t v = ++S->next_value;
            S->pending[S->n_pending] = v;
            S->pending_at[S->n_pending++] = S->step;
            S->st_values++;
            propose_value(ld, v);
        }
    }
    /* retries of values that have not been applied anywhere */
    if (S->step % 250 == 0)
        for (size_t i = 0; i < S->n_pending; i++)
            if (S->step - S->pending_at[i] > 1500) { /* a client's commit timeout */
                if (propose_value(ld, S->pending[i]))
                    S->pending_at[i] = S->step; /* refused: again at the next check */
            }
    /* linearizable and lease reads */
    if (chance(1, 40) && S->n_reads < NK_ARRAY_LEN(S->reads)) {
        uint64_t ctx = ++S->next_ctx;
        nk_status s = raft_read_index(ld->r, ctx);
        if (nk_ok(s))
            S->reads[S->n_reads++] = (struct read_req){ctx, ld->id, S->max_commit};
        nk_status_free(&s);
    }
    if (chance(1, 20)) {
        uint64_t idx;
        if (raft_lease_read(ld->r, &idx)) {
            S->st_lease_reads++;
            if (idx < S->max_commit)
                FAIL("lease read on %" PRIu64 " (term %" PRIu64 ") at index %" PRIu64
                     " misses commit %" PRIu64,
                     ld->id, raft_term(ld->r), idx, S->max_commit);
        }
    }
    /* leadership transfers */
    if (S->step < S->fault_end && chance(1, S->transfer_every)) {
        const struct raft_conf_state *c = raft_conf(ld->r);
        uint64_t to = c->voters[rnd(c->n_voters)];
        if (to != ld->id) {
            nk_status s = raft_transfer_leader(ld->r, to);
            if (getenv("SIM_DEBUG"))
                fprintf(stderr, "step %" PRIu64 ": transfer %" PRIu64 " -> %" PRIu64 ": %s\n",
                        S->step, ld->id, to, nk_status_msg(s));
            if (nk_ok(s))
                S->st_transfers++;
            nk_status_free(&s);
        }
    }
    /* membership schedule */
    if (S->joint && S->stage < 3 && S->step > S->steps / 10 && chance(1, 50)) {
        struct raft_conf_state want = stage_target(S->stage + 1);
        const struct raft_conf_state *c = raft_conf(ld->r);
        if (conf_eq(c, &want)) {
            S->stage++;
        } else if (!raft_conf_is_joint(c)) {
            nk_status s = raft_propose_conf_change(ld->r, &want, NULL, NULL);
            nk_status_free(&s);
        }
    }
}

/* ------------------------------------------------------------- Ready */

static void record_commits(struct node *nd, uint64_t commit, uint64_t in_term)
{
    for (uint64_t i = nd->seen_commit + 1; i <= commit; i++) {
        uint64_t t;
        nk_status s = raft_log_term(nd->r, i, &t);
        if (!nk_ok(s)) {
            nk_status_free(&s); /* compacted or covered by a snapshot */
            continue;
        }
        uint64_t *cs = vec_at(&S->commit_seen_in, i);
        if (*cs == 0 || in_term < *cs)
            *cs = in_term;
        uint64_t *ct = vec_at(&S->committed_term, i);
        if (*ct == 0)
            *ct = t;
        else if (*ct != t)
            FAIL("node %" PRIu64 " committed index %" PRIu64 " with term %" PRIu64
                 " but term %" PRIu64 " was committed there before",
                 nd->id, i, t, *ct);
    }
    if (commit > nd->seen_commit)
        nd->seen_commit = commit;
    if (commit > S->max_commit)
        S->max_commit = commit;
}

static void check_persisted(struct node *nd, const struct raft_entry *ents, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const struct raft_entry *e = &ents[i];
        uint64_t prev_term = 0;
        if (i > 0) {
            prev_term = ents[i - 1].term;
        } else {
            nk_status s = raft_log_term(nd->r, e->index - 1, &prev_term);
            if (!nk_ok(s))
                FAIL("node %" PRIu64 " persists %" PRIu64 " without a previous entry: %s", nd->id,
                     e->index, nk_status_msg(s));
        }
        struct entry_rec *r = rec_find(e->index, e->term, true);
        uint64_t h = entry_hash(e);
        if (r->hash == 0 && r->prev_term == 0) {
            r->hash = h | 1;
            r->prev_term = prev_term;
        } else if (r->hash != (h | 1) || r->prev_term != prev_term) {
            FAIL("log matching: node %" PRIu64 " entry %" PRIu64 "/%" PRIu64
                 " differs (data or previous term %" PRIu64 " vs %" PRIu64 ")",
                 nd->id, e->index, e->term, prev_term, r->prev_term);
        }
    }
}

static void sm_apply(struct node *nd, const struct raft_entry *e)
{
    if (e->index != nd->sm_index + 1)
        FAIL("node %" PRIu64 " applies %" PRIu64 " after %" PRIu64, nd->id, e->index,
             nd->sm_index);
    nd->sm_hash = mix(mix(nd->sm_hash, e->term), entry_hash(e));
    nd->sm_index = e->index;
    uint64_t *c = vec_at(&S->chain, e->index);
    if (*c == 0)
        *c = nd->sm_hash | 1;
    else if (*c != (nd->sm_hash | 1))
        FAIL("state machine safety: node %" PRIu64 " applied a different entry at %" PRIu64,
             nd->id, e->index);
    S->st_applied++;
    if (e->type == RAFT_ENTRY_NORMAL && e->len >= 8)
        value_applied(nk_dec_fixed64(e->data));
}

static void process_ready(struct node *nd)
{
    if (!nd->r || !raft_has_ready(nd->r))
        return;
    struct raft_ready rd;
    raft_ready(nd->r, &rd);
    if (rd.snapshot) {
        nk_status s = raft_memstorage_apply_snapshot(nd->disk, rd.snapshot);
        if (!nk_ok(s))
            FAIL("apply snapshot: %s", nk_status_msg(s));
        if (rd.snapshot->len != 16)
            FAIL("snapshot without state");
        uint64_t idx = nk_dec_fixed64(rd.snapshot->data), h = nk_dec_fixed64(rd.snapshot->data + 8);
        if (idx != rd.snapshot->index)
            FAIL("snapshot state index mismatch");
        uint64_t *c = vec_at(&S->chain, idx);
        if (idx && *c != (h | 1))
            FAIL("state machine safety: snapshot at %" PRIu64 " differs from applied history", idx);
        nd->sm_index = idx;
        nd->sm_hash = h;
        S->st_snap_installed++;
    }
    /* a crash while persisting: a prefix of the entries reaches the disk */
    if (S->step < S->fault_end && rd.n_entries && chance(1, g_bug[0] ? 40 : 400)) {
        size_t k = rnd(rd.n_entries + 1);
        check_persisted(nd, rd.entries, k);
        nk_status s = raft_memstorage_append(nd->disk, rd.entries, k);
        NK_ASSERT(nk_ok(s));
        S->st_torn++;
        if (!strcmp(g_bug, "ack-unsynced"))
            for (size_t i = 0; i < rd.n_msgs; i++) /* acknowledges what never reached disk */
                send_packet(nd->id, &rd.msgs[i]);
        crash_node(nd);
        return;
    }
    check_persisted(nd, rd.entries, rd.n_entries);
    nk_status s = raft_memstorage_append(nd->disk, rd.entries, rd.n_entries);
    if (!nk_ok(s))
        FAIL("append: %s", nk_status_msg(s));
    if (rd.hard_state_changed) {
        struct raft_hard_state old;
        raft_memstorage_hard_state(nd->disk, &old);
        if (rd.hard_state.term < old.term || rd.hard_state.commit < old.commit)
            FAIL("node %" PRIu64 " hard state goes back", nd->id);
        if (rd.hard_state.term == old.term && old.vote && rd.hard_state.vote != old.vote)
            FAIL("node %" PRIu64 " changes its vote in term %" PRIu64, nd->id, old.term);
        if (!strcmp(g_bug, "forget-vote")) {
            /* persists the commit index only: term and vote are lost on a crash */
            struct raft_hard_state hs = old;
            hs.commit = rd.hard_state.commit;
            raft_memstorage_set_hard_state(nd->disk, &hs);
        } else {
            raft_memstorage_set_hard_state(nd->disk, &rd.hard_state);
        }
        record_commits(nd, rd.hard_state.commit, rd.hard_state.term);
    }
    for (size_t i = 0; i < rd.n_msgs; i++)
        send_packet(nd->id, &rd.msgs[i]);
    for (size_t i = 0; i < rd.n_committed; i++)
        sm_apply(nd, &rd.committed[i]);
    for (size_t i = 0; i < rd.n_reads; i++) {
        const struct raft_read_state *rs = &rd.reads[i];
        for (size_t j = 0; j < S->n_reads; j++) {
            if (S->reads[j].ctx != rs->ctx)
                continue;
            if (rs->index && rs->index < S->reads[j].min_index)
                FAIL("read index %" PRIu64 " on node %" PRIu64 " misses commit %" PRIu64
                     " known when the read began",
                     rs->index, nd->id, S->reads[j].min_index);
            S->st_reads += rs->index != 0;
            S->reads[j] = S->reads[--S->n_reads];
            break;
        }
    }
    raft_advance(nd->r, &rd);
    /* snapshot and compact now and then */
    struct raft_snapshot cur;
    struct nk_arena a;
    nk_arena_init(&a);
    struct raft_storage st = raft_memstorage_storage(nd->disk);
    s = st.snapshot(st.ctx, &a, &cur);
    NK_ASSERT(nk_ok(s));
    nk_arena_free(&a);
    if (nd->sm_index >= cur.index + S->snap_every && chance(1, 4)) {
        uint8_t data[16];
        nk_enc_fixed64(data, nd->sm_index);
        nk_enc_fixed64(data + 8, nd->sm_hash);
        s = raft_memstorage_create_snapshot(nd->disk, nd->sm_index, raft_applied_conf(nd->r), data, 16);
        if (!nk_ok(s))
            FAIL("create snapshot: %s", nk_status_msg(s));
        s = raft_memstorage_compact(nd->disk, nd->sm_index - rnd(NK_MIN(20, nd->sm_index + 1)));
        NK_ASSERT(nk_ok(s));
    }
}

/* ------------------------------------------------------------- checks */

static void dump(void)
{
    fprintf(stderr,
            "  params: drop %u%% dup %u%% delay<=%u election %u heartbeat %u inflight %u "
            "msg bytes %" PRIu64 " uncommitted %u\n",
            S->drop_pct, S->dup_pct, S->max_delay, S->election_tick, S->heartbeat_tick,
            S->max_inflight, S->max_msg_bytes, S->max_uncommitted);
    for (int i = 0; i < S->n; i++) {
        struct node *nd = &S->nodes[i];
        if (!nd->r) {
            fprintf(stderr, "  node %" PRIu64 ": down until %" PRIu64 "\n", nd->id, nd->down_until);
            continue;
        }
        const struct raft_conf_state *c = raft_conf(nd->r);
        fprintf(stderr,
                "  node %" PRIu64 ": %s term %" PRIu64 " lead %" PRIu64 " first %" PRIu64
                " last %" PRIu64 " commit %" PRIu64 " applied %" PRIu64 " sm %" PRIu64
                " voters %u out %u learners %u\n",
                nd->id, raft_role_name(raft_role(nd->r)), raft_term(nd->r), raft_lead(nd->r),
                raft_first_index(nd->r), raft_last_index(nd->r), raft_commit_index(nd->r),
                raft_applied_index(nd->r), nd->sm_index, c->n_voters, c->n_voters_out,
                c->n_learners);
        char buf[1024];
        raft_describe(nd->r, buf, sizeof buf);
        fprintf(stderr, "    %s\n", buf);
    }
}

static void check_invariants(void)
{
    for (int i = 0; i < S->n; i++) {
        struct node *nd = &S->nodes[i];
        if (!nd->r)
            continue;
        if (raft_applied_index(nd->r) > raft_commit_index(nd->r))
            FAIL("node %" PRIu64 " applied beyond commit", nd->id);
        if (raft_role(nd->r) != RAFT_LEADER)
            continue;
        uint64_t term = raft_term(nd->r);
        uint64_t *tl = vec_at(&S->term_leader, term);
        if (*tl == 0) {
            *tl = nd->id;
            S->st_leaders++;
        } else if (*tl != nd->id) {
            FAIL("election safety: nodes %" PRIu64 " and %" PRIu64 " both lead term %" PRIu64,
                 *tl, nd->id, term);
        }
        /* leader completeness: an entry committed in term T is in the log of
           every leader of a term above T (an older leader, cut off, may lag) */
        uint64_t from = nd->checked_leader_term == term ? S->max_commit : 1;
        nd->checked_leader_term = term;
        for (uint64_t k = NK_MAX(from, raft_first_index(nd->r)); k <= S->max_commit; k++) {
            uint64_t ct = *vec_at(&S->committed_term, k), t = 0;
            uint64_t cs = *vec_at(&S->commit_seen_in, k);
            if (!ct || cs >= term)
                continue;
            nk_status s = raft_log_term(nd->r, k, &t);
            if (!nk_ok(s))
                FAIL("leader %" PRIu64 " lacks committed %" PRIu64 ": %s", nd->id, k,
                     nk_status_msg(s));
            if (t != ct)
                FAIL("leader completeness: leader %" PRIu64 " has term %" PRIu64 " at %" PRIu64
                     ", committed term %" PRIu64,
                     nd->id, t, k, ct);
        }
    }
}

/* ------------------------------------------------------------- faults */

static void faults(void)
{
    if (S->step == S->fault_end) {
        memset(S->cut, 0, sizeof(S->cut)); /* heal everything */
        S->heal_at = 0;
    }
    if (S->step >= S->fault_end)
        return;
    if (S->heal_at && S->step >= S->heal_at) {
        memset(S->cut, 0, sizeof(S->cut));
        S->heal_at = 0;
    }
    if (!S->heal_at && chance(1, S->partition_every)) {
        /* partition: one random side against the other */
        uint32_t side = (uint32_t)rnd((1u << S->n) - 2) + 1;
        for (int a = 1; a <= S->n; a++)
            for (int b = 1; b <= S->n; b++)
                S->cut[a][b] = ((side >> (a - 1)) & 1) != ((side >> (b - 1)) & 1);
        if (chance(1, 3)) {
            /* asymmetric: only one direction is cut */
            for (int a = 1; a <= S->n; a++)
                for (int b = 1; b < a; b++)
                    S->cut[a][b] = false;
        }
        S->heal_at = S->step + 300 + rnd(4000);
        S->st_partitions++;
        wake_all();
    }
    if (chance(1, g_bug[0] ? 300 : S->crash_every)) {
        struct node *nd = &S->nodes[rnd(S->n)];
        if (nd->r)
            crash_node(nd);
    }
}

static void restarts(void)
{
    for (int i = 0; i < S->n; i++) {
        struct node *nd = &S->nodes[i];
        if (!nd->r && (S->step >= nd->down_until || S->step >= S->fault_end)) {
            start_node(nd);
            S->st_restarts++;
        }
    }
}

static void ticks(void)
{
    for (int i = 0; i < S->n; i++) {
        struct node *nd = &S->nodes[i];
        nd->acc += nd->rate;
        while (nd->acc >= TICK_UNITS) {
            nd->acc -= TICK_UNITS;
            if (nd->r)
                raft_tick(nd->r);
        }
    }
}

/* ------------------------------------------------------------- a run */

static bool converged(void)
{
    struct node *ld = a_leader();
    if (!ld || S->n_pending)
        return false;
    if (S->joint && S->stage < 3)
        return false;
    const struct raft_conf_state *c = raft_conf(ld->r);
    if (raft_conf_is_joint(c))
        return false;
    uint64_t commit = raft_commit_index(ld->r);
    for (int i = 0; i < S->n; i++) {
        struct node *nd = &S->nodes[i];
        bool member = raft_conf_is_voter(c, nd->id) || raft_conf_is_learner(c, nd->id);
        if (member && (!nd->r || raft_applied_index(nd->r) < commit))
            return false;
    }
    return true;
}

static uint64_t run(uint64_t seed, int n, uint64_t steps, bool joint)
{
    struct sim sim;
    memset(&sim, 0, sizeof(sim));
    S = &sim;
    S->seed = seed;
    S->n = joint ? 5 : n;
    S->joint = joint;
    if (g_harsh && steps < 80000)
        steps = 80000; /* room for a 2000-tick liveness window */
    S->steps = steps;
    /* the liveness window: harsh runs (slow links, tiny windows) need longer */
    S->fault_end = steps - NK_MIN(steps / 4, g_harsh ? 20000 : 6000);
    nk_rng_seed(&S->rng, seed);
    S->drop_pct = (uint32_t)rnd(11);
    S->dup_pct = (uint32_t)rnd(6);
    S->max_delay = 1 + (uint32_t)rnd(30);
    S->election_tick = 10, S->heartbeat_tick = 2, S->max_inflight = 4, S->max_uncommitted = 512;
    S->max_msg_bytes = 2048;
    S->crash_every = 3000, S->partition_every = 2500, S->transfer_every = 3000;
    S->snap_every = 40;
    if (g_harsh) {
        S->drop_pct = (uint32_t)rnd(31);
        S->dup_pct = (uint32_t)rnd(11);
        /* below half an election timeout: the lease's assumption about
           TimeoutNow messages of abandoned transfers (docs/raft.md) */
        S->election_tick = 10 + (uint32_t)rnd(11);
        S->max_delay = 1 + (uint32_t)rnd(S->election_tick * TICK_UNITS / 2 - 1);
        S->heartbeat_tick = 1 + (uint32_t)rnd(3);
        S->max_inflight = 1 + (uint32_t)rnd(8);
        S->max_uncommitted = 16 + (uint32_t)rnd(1000);
        S->max_msg_bytes = 200 + rnd(4096);
        S->crash_every = 500 + (uint32_t)rnd(2000);
        S->partition_every = 500 + (uint32_t)rnd(2000);
        S->transfer_every = 200 + (uint32_t)rnd(3000);
        S->snap_every = 5 + (uint32_t)rnd(60);
        /* small Ready bounds: applies split over Readys, excess messages dropped */
        S->max_committed_bytes = 1 + rnd(2000);
        S->max_msgs = 2 + (uint32_t)rnd(30);
    }

    uint64_t init_voters[MAXN] = {1, 2, 3, 4, 5};
    int nv = joint ? 3 : n;
    struct raft_conf_state init = conf_of(init_voters, nv, NULL, 0);
    for (int i = 0; i < S->n; i++) {
        struct node *nd = &S->nodes[i];
        nd->id = (uint64_t)i + 1;
        nd->rate = 0.95 + (double)rnd(1001) / 10000.0; /* 0.95 .. 1.05 */
        nd->disk = raft_memstorage_new();
        if (i < nv) {
            nk_status s = raft_memstorage_create_snapshot(nd->disk, 0, &init, NULL, 0);
            NK_ASSERT(nk_ok(s));
        }
        start_node(nd);
    }
    uint64_t converged_at = 0;
    for (S->step = 1; S->step <= steps; S->step++) {
        faults();
        restarts();
        deliver();
        ticks();
        clients();
        maybe_quiesce();
        for (int i = 0; i < S->n; i++)
            process_ready(&S->nodes[i]);
        check_invariants();
        if (S->step > S->fault_end && !converged_at && converged())
            converged_at = S->step;
        if (converged_at && S->step > converged_at + 200)
            break;
    }
    if (!converged_at)
        FAIL("liveness: no convergence %" PRIu64 " ticks after the faults stopped (leader %s, "
             "%zu values pending, stage %d)",
             (steps - S->fault_end) / TICK_UNITS, a_leader() ? "present" : "absent", S->n_pending,
             S->stage);
    if (!g_quiet)
        printf("seed %" PRIu64 ": %d nodes%s%s, %" PRIu64 " steps (%" PRIu64
               " ticks), drop %u%% dup %u%% delay<=%u; leaders %" PRIu64 ", crashes %" PRIu64
               " (torn %" PRIu64 "), partitions %" PRIu64 ", snapshots sent %" PRIu64
               " installed %" PRIu64 ", values %" PRIu64 ", applied %" PRIu64
               ", reads %" PRIu64 " lease %" PRIu64 ", transfers %" PRIu64 ", quiesced %" PRIu64
               ", msgs %" PRIu64 "/%" PRIu64 " dropped, converged %" PRIu64
               " ticks after faults\n",
               seed, S->n, joint ? " (joint 3->5->3)" : "", g_harsh ? " harsh" : "", S->step - 1, (S->step - 1) / TICK_UNITS,
               S->drop_pct, S->dup_pct, S->max_delay, S->st_leaders, S->st_crashes, S->st_torn,
               S->st_partitions, S->st_snap_sent, S->st_snap_installed, S->st_values,
               S->st_applied, S->st_reads, S->st_lease_reads, S->st_transfers, S->st_quiesced,
               S->st_dropped,
               S->st_delivered + S->st_dropped, (converged_at - S->fault_end) / TICK_UNITS);
    fflush(stdout);
    for (int i = 0; i < S->n; i++) {
        raft_free(S->nodes[i].r);
        raft_memstorage_free(S->nodes[i].disk);
    }
    for (size_t i = 0; i < S->n_net; i++)
        free(S->net[i].data);
    free(S->net);
    free(S->term_leader.v);
    free(S->committed_term.v);
    free(S->commit_seen_in.v);
    free(S->chain.v);
    free(S->recs);
    return S->step - 1;
}

int main(int argc, char **argv)
{
    int n = 3, runs = 1;
    uint64_t seed = 1, steps = 30000;
    bool joint = false, seed_given = false;
    double seconds = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--nodes") && i + 1 < argc)
            n = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--seed") && i + 1 < argc)
            seed = strtoull(argv[++i], NULL, 0), seed_given = true;
        else if (!strcmp(argv[i], "--steps") && i + 1 < argc)
            steps = strtoull(argv[++i], NULL, 0);
        else if (!strcmp(argv[i], "--runs") && i + 1 < argc)
            runs = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--seconds") && i + 1 < argc)
            seconds = atof(argv[++i]);
        else if (!strcmp(argv[i], "--joint"))
            joint = true;
        else if (!strcmp(argv[i], "--quiet"))
            g_quiet = 1;
        else if (!strcmp(argv[i], "--no-quiesce"))
            g_no_quiesce = true;
        else if (!strcmp(argv[i], "--harsh"))
            g_harsh = true;
        else if (!strcmp(argv[i], "--bug") && i + 1 < argc)
            g_bug = argv[++i];
        else {
            fprintf(stderr, "usage: %s [--nodes 3|5] [--seed S] [--steps N] [--runs K] "
                            "[--joint] [--seconds T] [--quiet] [--bug forget-vote|ack-unsynced]\n",
                    argv[0]);
            return 2;
        }
    }
    if (n < 1 || n > MAXN || steps < 2000) {
        fprintf(stderr, "nodes must be 1..%d and steps >= 2000\n", MAXN);
        return 2;
    }
    if (getenv("NK_SEED") && !seed_given)
        seed = strtoull(getenv("NK_SEED"), NULL, 0);
    if (seconds > 0) {
        /* soak: random seeds, alternating 3, 5 and joint runs */
        struct nk_rng r;
        nk_rng_seed(&r, (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 20));
        uint64_t t0 = nk_mono_ms(), count = 0, total = 0;
        while ((double)(nk_mono_ms() - t0) < seconds * 1000) {
            uint64_t s = nk_rng_next(&r);
            int kind = (int)(count % 3);
            g_harsh = (count / 3) % 2 == 1;
            total += run(s, kind == 1 ? 5 : 3, steps, kind == 2);
            count++;
        }
        printf("soak: %" PRIu64 " runs passed, %" PRIu64 " steps in all\n", count, total);
        return 0;
    }
    uint64_t total = 0;
    for (int k = 0; k < runs; k++)
        total += run(seed + (uint64_t)k, n, steps, joint);
    printf("%d run(s) passed, %" PRIu64 " steps in all\n", runs, total);
    return 0;
}
