/*
 * raft.c: the protocol. Roles (follower, pre-candidate, candidate, leader),
 * elections with pre-vote and check-quorum, replication with per-follower
 * flow control (probe / replicate / snapshot states and a bounded in-flight
 * window), commitment by counting current-term entries, ReadIndex and lease
 * reads, leadership transfer, snapshots and joint-consensus membership.
 *
 * The structure follows etcd's raft.go (Step / tick / Ready); differences
 * worth knowing (docs/raft.md explains each):
 *  - configuration changes carry the full resulting configuration and take
 *    effect when appended to the log (thesis 4.1), not when applied: the
 *    simulator found a stale-configuration election with apply-time changes;
 *  - the leader counts its own entries toward commitment only once the
 *    caller has persisted them (raft_advance): a quorum always means a quorum
 *    of disks;
 *  - committed entries are handed out only when they are durable locally;
 *  - the vote-refusal promise behind leases survives term changes and
 *    restarts (since_leader), and an abandoned transfer suspends the lease
 *    for an election timeout;
 *  - every buffer has a bound (see raft.h).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "raft/raft_int.h"

enum pr_state { PR_PROBE = 0, PR_REPLICATE = 1, PR_SNAPSHOT = 2 };

struct inflight {
    uint64_t index;
    uint64_t bytes;
};

struct progress {
    uint64_t id;
    uint64_t match, next;
    uint64_t pending_snapshot;
    uint64_t read_ack; /* highest read-index round acknowledged */
    uint64_t hb_stamp; /* leader tick + 1 of the newest heartbeat acknowledged */
    uint64_t progress_tick; /* leader tick when match last advanced */
    uint8_t state;
    bool probe_sent;
    bool recent_active;
    bool voter_in, voter_out;
    uint8_t vote; /* 0 none, 1 granted, 2 rejected */
    uint32_t snap_elapsed;
    /* in-flight append messages (replicate state): a ring grown on demand */
    struct inflight *inf;
    uint32_t inf_cap, inf_start, inf_count;
    uint64_t inf_bytes;
};

struct conf_hist {
    uint64_t index;
    struct raft_conf_state conf;
};
#define CONF_HIST_MAX 64

struct pending_read {
    uint64_t ctx;
    uint64_t index; /* 0 until the leader has committed an entry of its term */
    uint64_t seq;   /* heartbeat round that must confirm it */
};

struct raft {
    uint64_t id;
    uint64_t term, vote, lead;
    uint8_t role;
    bool quiesced;
    bool pre_vote, check_quorum;
    bool read_round_needed;
    bool in_ready;

    struct raft_log log;
    /* Membership (thesis 4.1): a server uses the latest configuration in its
       log, committed or not. conf_base is the configuration as of the commit
       index; conf_hist the conf entries beyond it, in log order (bounded:
       the leader appends one at a time, conflicts truncate them). */
    struct raft_conf_state conf;
    struct raft_conf_state conf_base;
    struct conf_hist *conf_hist;
    uint32_t n_conf_hist;
    struct raft_conf_state *applied_conf; /* as of the applied index */
    struct progress *prs;
    uint32_t n_prs;

    uint32_t election_tick, heartbeat_tick, lease_tick;
    uint32_t election_elapsed, heartbeat_elapsed, randomized_timeout;
    uint64_t now;          /* ticks since creation */
    uint32_t since_leader; /* ticks since a leader was last heard (0 at start:
                              a leader we do not know of may hold a lease) */
    struct nk_rng rng;

    uint64_t uncommitted_bytes;
    uint64_t lead_transferee;
    /* Lease reads count only heartbeats sent at or after this tick: after an
       abandoned leadership transfer, a TimeoutNow still in flight may make
       followers vote (forced) despite the heartbeats they acknowledged. */
    uint64_t lease_from;

    /* limits */
    uint64_t max_msg_bytes, max_inflight_bytes, max_uncommitted_bytes, max_committed_bytes;
    uint32_t max_inflight_msgs, max_uncommitted_entries, max_pending_reads, max_msgs;

    /* outgoing messages and their entry/snapshot memory (arena, reset at advance) */
    struct raft_msg *msgs;
    uint32_t n_msgs, cap_msgs;
    uint32_t rot; /* broadcasts start at a rotating peer, so that a full
                     message queue does not starve the same peers every time */
    uint64_t dropped_msgs;
    /* two arenas: `arena` collects memory for the next Ready; at raft_ready
       it becomes `handed` (freed at raft_advance) and a fresh one starts */
    struct nk_arena arena, handed;

    struct pending_read *reads;
    uint32_t n_reads;
    uint64_t read_seq;
    struct raft_read_state *read_states;
    uint32_t n_read_states;

    struct raft_hard_state prev_hs;
    uint64_t prev_lead;
    uint8_t prev_role;
    /* committed entries of the current Ready */
    struct raft_entry *committed;
    size_t n_committed;
};

static void become_follower(struct raft *r, uint64_t term, uint64_t lead);
static void send_append(struct raft *r, struct progress *pr, bool send_if_empty);
static void bcast_append(struct raft *r);
static void set_conf(struct raft *r, const struct raft_conf_state *c);
static void conf_committed(struct raft *r);
static void conf_appended(struct raft *r, const struct raft_entry *ents, size_t n);
static void maybe_leave_joint(struct raft *r);

/* ------------------------------------------------------------ conf helpers */

static bool ids_has(const uint64_t *ids, uint8_t n, uint64_t id)
{
    for (uint8_t i = 0; i < n; i++)
        if (ids[i] == id)
            return true;
    return false;
}

bool raft_conf_is_joint(const struct raft_conf_state *c)
{
    return c->n_voters_out > 0;
}

bool raft_conf_is_voter(const struct raft_conf_state *c, uint64_t id)
{
    return ids_has(c->voters, c->n_voters, id) || ids_has(c->voters_out, c->n_voters_out, id);
}

bool raft_conf_is_learner(const struct raft_conf_state *c, uint64_t id)
{
    return !raft_conf_is_voter(c, id) && ids_has(c->learners, c->n_learners, id);
}

static struct progress *pr_get(struct raft *r, uint64_t id)
{
    for (uint32_t i = 0; i < r->n_prs; i++)
        if (r->prs[i].id == id)
            return &r->prs[i];
    return NULL;
}

static const struct progress *pr_cget(const struct raft *r, uint64_t id)
{
    return pr_get((struct raft *)r, id);
}

static bool promotable(const struct raft *r)
{
    return raft_conf_is_voter(&r->conf, r->id) && r->log.u.snap == NULL;
}

/* ---------------------------------------------------------------- inflights */

static bool inf_full(const struct raft *r, const struct progress *pr)
{
    return pr->inf_count >= r->max_inflight_msgs || pr->inf_bytes >= r->max_inflight_bytes;
}

static void inf_add(struct raft *r, struct progress *pr, uint64_t index, uint64_t bytes)
{
    if (pr->inf_count == pr->inf_cap) {
        uint32_t cap = pr->inf_cap ? pr->inf_cap * 2 : 8;
        if (cap > r->max_inflight_msgs)
            cap = r->max_inflight_msgs;
        NK_ASSERT(cap > pr->inf_count);
        struct inflight *n = nk_malloc(cap * sizeof(*n));
        for (uint32_t i = 0; i < pr->inf_count; i++)
            n[i] = pr->inf[(pr->inf_start + i) % pr->inf_cap];
        free(pr->inf);
        pr->inf = n;
        pr->inf_cap = cap;
        pr->inf_start = 0;
    }
    pr->inf[(pr->inf_start + pr->inf_count) % pr->inf_cap] = (struct inflight){index, bytes};
    pr->inf_count++;
    pr->inf_bytes += bytes;
}

static void inf_free_le(struct progress *pr, uint64_t index)
{
    while (pr->inf_count) {
        struct inflight *f = &pr->inf[pr->inf_start];
        if (f->index > index)
            break;
        pr->inf_bytes -= f->bytes;
        pr->inf_start = (pr->inf_start + 1) % pr->inf_cap;
        pr->inf_count--;
    }
}

static void inf_reset(struct progress *pr, bool release)
{
    pr->inf_count = 0;
    pr->inf_start = 0;
    pr->inf_bytes = 0;
    if (release) {
        free(pr->inf);
        pr->inf = NULL;
        pr->inf_cap = 0;
    }
}

/* ----------------------------------------------------------------- progress */

static void pr_become_probe(struct progress *pr)
{
    if (pr->state == PR_SNAPSHOT) {
        uint64_t ps = pr->pending_snapshot;
        pr->next = NK_MAX(pr->match + 1, ps + 1);
    } else {
        pr->next = pr->match + 1;
    }
    pr->state = PR_PROBE;
    pr->probe_sent = false;
    pr->pending_snapshot = 0;
    inf_reset(pr, false);
}

static void pr_become_replicate(struct progress *pr)
{
    pr->state = PR_REPLICATE;
    pr->probe_sent = false;
    pr->next = pr->match + 1;
    inf_reset(pr, false);
}

static void pr_become_snapshot(struct progress *pr, uint64_t index)
{
    pr->state = PR_SNAPSHOT;
    pr->probe_sent = false;
    pr->pending_snapshot = index;
    pr->snap_elapsed = 0;
    inf_reset(pr, false);
}

static bool pr_paused(const struct raft *r, const struct progress *pr)
{
    switch (pr->state) {
    case PR_PROBE:
        return pr->probe_sent;
    case PR_REPLICATE:
        return inf_full(r, pr);
    default:
        return true;
    }
}

static bool pr_maybe_update(struct progress *pr, uint64_t n)
{
    bool updated = false;
    if (pr->match < n) {
        pr->match = n;
        updated = true;
        pr->probe_sent = false;
    }
    if (pr->next < n + 1)
        pr->next = n + 1;
    return updated;
}

/* ------------------------------------------------------------------- quorum */

static uint64_t majority_index(const struct raft *r, const uint64_t *ids, uint8_t n)
{
    if (n == 0)
        return UINT64_MAX; /* an empty set never limits */
    uint64_t v[RAFT_MAX_MEMBERS];
    for (uint8_t i = 0; i < n; i++) {
        const struct progress *pr = pr_cget(r, ids[i]);
        v[i] = pr ? pr->match : 0;
    }
    /* sort descending (n <= 16) */
    for (uint8_t i = 1; i < n; i++) {
        uint64_t x = v[i];
        int j = i - 1;
        while (j >= 0 && v[j] < x) {
            v[j + 1] = v[j];
            j--;
        }
        v[j + 1] = x;
    }
    return v[n / 2];
}

static uint64_t quorum_commit_index(const struct raft *r)
{
    uint64_t a = majority_index(r, r->conf.voters, r->conf.n_voters);
    uint64_t b = majority_index(r, r->conf.voters_out, r->conf.n_voters_out);
    uint64_t m = NK_MIN(a, b);
    return m == UINT64_MAX ? 0 : m;
}

/* counts members of ids for which pred holds; true when a majority does */
typedef bool (*pr_pred)(const struct raft *r, const struct progress *pr, uint64_t arg);

static bool majority_holds(const struct raft *r, const uint64_t *ids, uint8_t n, pr_pred pred,
                           uint64_t arg)
{
    if (n == 0)
        return true;
    uint8_t yes = 0;
    for (uint8_t i = 0; i < n; i++) {
        const struct progress *pr = pr_cget(r, ids[i]);
        if (pr && pred(r, pr, arg))
            yes++;
    }
    return yes > n / 2;
}

static bool quorum_holds(const struct raft *r, pr_pred pred, uint64_t arg)
{
    if (r->conf.n_voters == 0)
        return false;
    return majority_holds(r, r->conf.voters, r->conf.n_voters, pred, arg) &&
           majority_holds(r, r->conf.voters_out, r->conf.n_voters_out, pred, arg);
}

/* 1 won, -1 lost, 0 pending */
static int vote_result_one(const struct raft *r, const uint64_t *ids, uint8_t n)
{
    if (n == 0)
        return 1;
    uint8_t yes = 0, no = 0;
    for (uint8_t i = 0; i < n; i++) {
        const struct progress *pr = pr_cget(r, ids[i]);
        if (pr && pr->vote == 1)
            yes++;
        else if (pr && pr->vote == 2)
            no++;
    }
    if (yes > n / 2)
        return 1;
    if (no >= n - n / 2)
        return -1;
    return 0;
}

static int vote_result(const struct raft *r)
{
    int a = vote_result_one(r, r->conf.voters, r->conf.n_voters);
    int b = vote_result_one(r, r->conf.voters_out, r->conf.n_voters_out);
    if (a == -1 || b == -1)
        return -1;
    return (a == 1 && b == 1) ? 1 : 0;
}

/* ----------------------------------------------------------------- messages */

static struct raft_msg *new_msg(struct raft *r, uint8_t type, uint64_t to)
{
    if (r->n_msgs >= r->max_msgs) {
        r->dropped_msgs++;
        return NULL;
    }
    if (r->n_msgs == r->cap_msgs) {
        uint32_t cap = r->cap_msgs ? r->cap_msgs * 2 : 8;
        if (cap > r->max_msgs)
            cap = r->max_msgs;
        r->msgs = nk_realloc(r->msgs, cap * sizeof(struct raft_msg));
        r->cap_msgs = cap;
    }
    struct raft_msg *m = &r->msgs[r->n_msgs++];
    memset(m, 0, sizeof(*m));
    m->type = type;
    m->from = r->id;
    m->to = to;
    m->term = r->term;
    return m;
}

static void reset_randomized_timeout(struct raft *r)
{
    r->randomized_timeout = r->election_tick + (uint32_t)nk_rng_uniform(&r->rng, r->election_tick);
}

static uint64_t committed_term(const struct raft *r)
{
    return raft_log_term0(&r->log, r->log.committed);
}

/* ----------------------------------------------------------------- reads */

static void push_read_state(struct raft *r, uint64_t ctx, uint64_t index)
{
    /* bounded by max_pending_reads: every state comes from a pending read */
    if (r->n_read_states % 16 == 0)
        r->read_states =
            nk_realloc(r->read_states, (r->n_read_states + 16) * sizeof(struct raft_read_state));
    r->read_states[r->n_read_states++] = (struct raft_read_state){ctx, index};
}

static void abandon_reads(struct raft *r)
{
    for (uint32_t i = 0; i < r->n_reads; i++)
        push_read_state(r, r->reads[i].ctx, 0);
    r->n_reads = 0;
    r->read_round_needed = false;
}

static bool pred_read_ack(const struct raft *r, const struct progress *pr, uint64_t seq)
{
    return pr->id == r->id || pr->read_ack >= seq;
}

static void reads_check(struct raft *r)
{
    if (r->role != RAFT_LEADER || r->n_reads == 0)
        return;
    uint32_t done = 0;
    while (done < r->n_reads) {
        struct pending_read *p = &r->reads[done];
        if (p->index == 0 || p->seq > r->read_seq)
            break;
        if (!quorum_holds(r, pred_read_ack, p->seq))
            break;
        push_read_state(r, p->ctx, p->index);
        done++;
    }
    if (done) {
        memmove(r->reads, r->reads + done, (r->n_reads - done) * sizeof(*r->reads));
        r->n_reads -= done;
    }
}

/* --------------------------------------------------------------- replication */

static void send_snapshot(struct raft *r, struct progress *pr)
{
    struct raft_snapshot *snap = nk_arena_alloc_aligned(&r->arena, sizeof(*snap));
    nk_status s = r->log.st.snapshot(r->log.st.ctx, &r->arena, snap);
    if (!nk_ok(s)) {
        if (s.code != NK_UNAVAILABLE)
            nk_panic("raft %" PRIu64 ": storage snapshot: %s", r->id, nk_status_msg(s));
        nk_status_free(&s);
        return; /* being produced: retried on the next heartbeat response */
    }
    struct raft_msg *m = new_msg(r, RAFT_MSG_SNAPSHOT, pr->id);
    if (!m)
        return;
    m->snapshot = snap;
    pr_become_snapshot(pr, snap->index);
}

static void send_append(struct raft *r, struct progress *pr, bool send_if_empty)
{
    if (r->role != RAFT_LEADER || pr->id == r->id || pr_paused(r, pr))
        return;
    uint64_t prev = pr->next - 1;
    uint64_t prev_term = 0;
    nk_status s = raft_log_term_of(&r->log, prev, &prev_term);
    struct raft_entry *ents = NULL;
    size_t n = 0;
    if (nk_ok(s)) {
            uint64_t last = raft_log_last(&r->log);
        size_t max_n = 4096;
        s = raft_log_slice_ex(&r->log, pr->next, last + 1, r->max_msg_bytes, max_n, &r->arena,
                              &ents, &n, true);
    }
    if (!nk_ok(s) && s.code == NK_UNAVAILABLE) {
        /* being fetched off the loop; raft_entries_fetched() sends again */
        nk_status_free(&s);
        return;
    }
    if (!nk_ok(s)) {
        NK_ASSERT(s.code == NK_OUT_OF_RANGE);
        nk_status_free(&s);
        send_snapshot(r, pr);
        return;
    }
    if (n == 0 && !send_if_empty)
        return;
    struct raft_msg *m = new_msg(r, RAFT_MSG_APPEND, pr->id);
    if (!m)
        return;
    m->index = prev;
    m->log_term = prev_term;
    m->entries = ents;
    m->n_entries = (uint32_t)n;
    m->commit = r->log.committed;
    if (n) {
        uint64_t bytes = 0;
        for (size_t i = 0; i < n; i++)
            bytes += ents[i].len;
        uint64_t last = ents[n - 1].index;
        if (pr->state == PR_REPLICATE) {
            pr->next = last + 1;
            inf_add(r, pr, last, bytes);
        } else {
            pr->probe_sent = true;
        }
    } else if (pr->state == PR_PROBE) {
        pr->probe_sent = true;
    }
}

/* sends everything the window allows (batched: one message per window slot) */
static void flush_append(struct raft *r, struct progress *pr)
{
    uint64_t last = raft_log_last(&r->log);
    for (int k = 0; k < 1024; k++) {
        if (pr->id == r->id || pr_paused(r, pr) || pr->next > last)
            return;
        uint64_t before = pr->next;
        uint32_t nm = r->n_msgs;
        send_append(r, pr, false);
        if (pr->next == before || r->n_msgs == nm)
            return;
    }
}

/* the i-th peer of a broadcast, starting at a rotating position */
static struct progress *bcast_pr(struct raft *r, uint32_t i)
{
    return &r->prs[(i + r->rot) % r->n_prs];
}

static void bcast_append(struct raft *r)
{
    r->rot++;
    for (uint32_t i = 0; i < r->n_prs; i++)
        send_append(r, bcast_pr(r, i), true);
}

static void bcast_heartbeat(struct raft *r)
{
    if (r->role != RAFT_LEADER)
        return;
    r->rot++;
    for (uint32_t i = 0; i < r->n_prs; i++) {
        struct progress *pr = bcast_pr(r, i);
        if (pr->id == r->id)
            continue;
        struct raft_msg *m = new_msg(r, RAFT_MSG_HEARTBEAT, pr->id);
        if (!m)
            return;
        /* never tell a follower to commit beyond what it is known to hold */
        m->commit = NK_MIN(pr->match, r->log.committed);
        m->ctx = r->read_seq;
        m->index = r->now + 1;
    }
}

/* Commit what a quorum holds, if it is of the current term (Raft §5.4.2). */
static bool maybe_commit(struct raft *r)
{
    uint64_t qi = quorum_commit_index(r);
    if (qi <= r->log.committed)
        return false;
    if (raft_log_term0(&r->log, qi) != r->term)
        return false;
    bool first_in_term = committed_term(r) != r->term;
    raft_log_commit_to(&r->log, qi);
    if (first_in_term) {
        /* reads waiting for the first commit of this term get their index */
        for (uint32_t i = 0; i < r->n_reads; i++)
            if (r->reads[i].index == 0)
                r->reads[i].index = r->log.committed;
    }
    conf_committed(r);
    return true;
}

static void append_entry(struct raft *r, uint8_t type, const void *data, size_t len,
                         uint64_t *index)
{
    struct raft_entry e = {.term = r->term,
                           .index = raft_log_last(&r->log) + 1,
                           .type = type,
                           .len = (uint32_t)len,
                           .data = (uint8_t *)data};
    raft_log_append(&r->log, &e, 1);
    r->uncommitted_bytes += len;
    if (index)
        *index = e.index;
    if (type == RAFT_ENTRY_CONF_CHANGE)
        conf_appended(r, &e, 1);
}

/* ------------------------------------------------------------- role changes */

static void reset(struct raft *r, uint64_t term)
{
    if (r->term != term) {
        r->term = term;
        r->vote = RAFT_NONE;
    }
    r->lead = RAFT_NONE;
    r->election_elapsed = 0;
    r->heartbeat_elapsed = 0;
    reset_randomized_timeout(r);
    r->lead_transferee = RAFT_NONE;
    r->uncommitted_bytes = 0;
    uint64_t last = raft_log_last(&r->log);
    for (uint32_t i = 0; i < r->n_prs; i++) {
        struct progress *pr = &r->prs[i];
        pr->match = 0;
        pr->next = last + 1;
        pr->state = PR_PROBE;
        pr->probe_sent = false;
        pr->pending_snapshot = 0;
        pr->recent_active = false;
        pr->vote = 0;
        pr->read_ack = 0;
        pr->hb_stamp = 0;
        pr->progress_tick = r->now;
        inf_reset(pr, true);
    }
    if (r->role == RAFT_LEADER || r->n_reads)
        abandon_reads(r);
}

static void become_follower(struct raft *r, uint64_t term, uint64_t lead)
{
    reset(r, term);
    r->role = RAFT_FOLLOWER;
    r->lead = lead;
}

static void become_pre_candidate(struct raft *r)
{
    /* a pre-candidate changes neither its term nor its vote */
    reset(r, r->term);
    r->role = RAFT_PRE_CANDIDATE;
}

static void become_candidate(struct raft *r)
{
    reset(r, r->term + 1);
    r->vote = r->id;
    r->role = RAFT_CANDIDATE;
}

static void become_leader(struct raft *r)
{
    NK_ASSERT(r->role != RAFT_FOLLOWER);
    reset(r, r->term);
    r->role = RAFT_LEADER;
    r->lead = r->id;
    struct progress *self = pr_get(r, r->id);
    NK_ASSERT(self);
    /* the leader's own match counts only what is durable (see file comment) */
    self->match = r->log.u.n ? r->log.u.offset - 1 : raft_log_last(&r->log);
    self->next = raft_log_last(&r->log) + 1;
    pr_become_replicate(self);
    self->recent_active = true;
    append_entry(r, RAFT_ENTRY_NOOP, NULL, 0, NULL);
    r->uncommitted_bytes = 0;
    maybe_leave_joint(r); /* a joint configuration we inherit is left at once */
    /* nothing to heartbeat yet; the no-op is broadcast right away */
    bcast_append(r);
}

static void campaign(struct raft *r, bool pre, bool transfer)
{
    if (pre)
        become_pre_candidate(r);
    else
        become_candidate(r);
    struct progress *self = pr_get(r, r->id);
    if (self)
        self->vote = 1;
    if (vote_result(r) == 1) {
        /* a single voter wins at once */
        if (pre)
            campaign(r, false, transfer);
        else
            become_leader(r);
        return;
    }
    uint64_t last = raft_log_last(&r->log), last_term = raft_log_last_term(&r->log);
    r->rot++;
    for (uint32_t i = 0; i < r->n_prs; i++) {
        struct progress *pr = bcast_pr(r, i);
        if (pr->id == r->id || !(pr->voter_in || pr->voter_out))
            continue;
        struct raft_msg *m = new_msg(r, pre ? RAFT_MSG_PREVOTE : RAFT_MSG_VOTE, pr->id);
        if (!m)
            continue;
        m->term = pre ? r->term + 1 : r->term;
        m->index = last;
        m->log_term = last_term;
        m->ctx = transfer ? RAFT_CAMPAIGN_TRANSFER : 0;
    }
}

static void start_election(struct raft *r, bool transfer)
{
    if (!promotable(r))
        return;
    campaign(r, r->pre_vote && !transfer, transfer);
}

/* ------------------------------------------------------------------- tick */

static bool pred_active(const struct raft *r, const struct progress *pr, uint64_t arg)
{
    (void)arg;
    return pr->id == r->id || pr->recent_active;
}

void raft_tick(struct raft *r)
{
    NK_ASSERT(!r->in_ready);
    r->now++;
    if (r->quiesced)
        return;
    if (r->role != RAFT_LEADER) {
        r->election_elapsed++;
        if (r->since_leader < UINT32_MAX)
            r->since_leader++;
        if (r->election_elapsed >= r->randomized_timeout) {
            r->election_elapsed = 0;
            start_election(r, false);
        }
        return;
    }
    r->heartbeat_elapsed++;
    r->election_elapsed++;
    r->since_leader = 0;
    for (uint32_t i = 0; i < r->n_prs; i++) {
        struct progress *pr = &r->prs[i];
        if (pr->state == PR_SNAPSHOT && ++pr->snap_elapsed > 2 * r->election_tick) {
            /* the snapshot was probably lost: probe again (resends it if needed) */
            pr_become_probe(pr);
            send_append(r, pr, true);
        }
    }
    if (r->election_elapsed >= r->election_tick) {
        r->election_elapsed = 0;
        if (r->check_quorum) {
            bool ok = quorum_holds(r, pred_active, 0);
            for (uint32_t i = 0; i < r->n_prs; i++)
                if (r->prs[i].id != r->id)
                    r->prs[i].recent_active = false;
            if (!ok) {
                become_follower(r, r->term, RAFT_NONE);
                return;
            }
        }
        if (r->lead_transferee != RAFT_NONE) {
            r->lead_transferee = RAFT_NONE; /* transfer timed out */
            r->lease_from = r->now + r->election_tick;
        }
    }
    if (r->heartbeat_elapsed >= r->heartbeat_tick) {
        r->heartbeat_elapsed = 0;
        bcast_heartbeat(r);
    }
    /* a joint configuration whose commit came during a transfer is left now */
    maybe_leave_joint(r);
}

/* ------------------------------------------------------------------- step */

static void handle_append(struct raft *r, const struct raft_msg *m)
{
    struct raft_msg *resp;
    if (m->index < r->log.committed) {
        if ((resp = new_msg(r, RAFT_MSG_APPEND_RESP, m->from)))
            resp->index = r->log.committed;
        return;
    }
    uint64_t last_new;
    size_t first_new = m->n_entries;
    if (raft_log_maybe_append(&r->log, m->index, m->log_term, m->entries, m->n_entries,
                              &last_new, &first_new)) {
        if (first_new < m->n_entries)
            conf_appended(r, m->entries + first_new, m->n_entries - first_new);
        raft_log_commit_to(&r->log, NK_MIN(m->commit, last_new));
        conf_committed(r);
        if ((resp = new_msg(r, RAFT_MSG_APPEND_RESP, m->from)))
            resp->index = last_new;
        return;
    }
    /* reject with a hint: the largest index whose term is <= the leader's
       prev term, so the leader can skip a whole term per round trip */
    uint64_t hint = raft_log_find_conflict_by_term(&r->log, NK_MIN(m->index, raft_log_last(&r->log)),
                                                   m->log_term);
    if ((resp = new_msg(r, RAFT_MSG_APPEND_RESP, m->from))) {
        resp->index = m->index;
        resp->reject = true;
        resp->reject_hint = hint;
        resp->log_term = raft_log_term0(&r->log, hint);
    }
}

static void handle_heartbeat(struct raft *r, const struct raft_msg *m)
{
    uint64_t c = NK_MIN(m->commit, raft_log_last(&r->log));
    raft_log_commit_to(&r->log, c);
    conf_committed(r);
    struct raft_msg *resp = new_msg(r, RAFT_MSG_HEARTBEAT_RESP, m->from);
    if (resp) {
        resp->ctx = m->ctx;
        resp->index = m->index;
    }
}

static void handle_snapshot(struct raft *r, const struct raft_msg *m)
{
    const struct raft_snapshot *s = m->snapshot;
    struct raft_msg *resp;
    if (s->index <= r->log.committed) {
        if ((resp = new_msg(r, RAFT_MSG_APPEND_RESP, m->from)))
            resp->index = r->log.committed;
        return;
    }
    if (raft_log_match_term(&r->log, s->index, s->term)) {
        /* we have the entries: just fast-forward the commit */
        raft_log_commit_to(&r->log, s->index);
        conf_committed(r);
        if ((resp = new_msg(r, RAFT_MSG_APPEND_RESP, m->from)))
            resp->index = r->log.committed;
        return;
    }
    raft_log_restore(&r->log, s);
    r->n_conf_hist = 0;
    r->conf_base = s->conf;
    set_conf(r, &s->conf);
    if ((resp = new_msg(r, RAFT_MSG_APPEND_RESP, m->from)))
        resp->index = raft_log_last(&r->log);
}

static void send_timeout_now(struct raft *r, uint64_t to)
{
    new_msg(r, RAFT_MSG_TIMEOUT_NOW, to);
}

static void step_leader(struct raft *r, const struct raft_msg *m)
{
    struct progress *pr = pr_get(r, m->from);
    if (!pr)
        return;
    switch (m->type) {
    case RAFT_MSG_APPEND_RESP:
        pr->recent_active = true;
        if (m->reject) {
            if (pr->state == PR_SNAPSHOT)
                return;
            if (pr->state == PR_REPLICATE) {
                if (m->index <= pr->match)
                    return; /* stale */
                pr_become_probe(pr);
            } else if (pr->next - 1 != m->index) {
                return; /* stale: answers an older probe */
            }
            uint64_t next_probe = m->reject_hint;
            if (m->log_term > 0)
                next_probe = raft_log_find_conflict_by_term(&r->log, m->reject_hint, m->log_term);
            pr->next = NK_MAX(NK_MIN(m->index, next_probe + 1), pr->match + 1);
            pr->probe_sent = false;
            send_append(r, pr, true);
            return;
        }
        {
            bool was_paused = pr_paused(r, pr);
            if (!pr_maybe_update(pr, m->index))
                return;
            pr->progress_tick = r->now;
            switch (pr->state) {
            case PR_PROBE:
                pr_become_replicate(pr);
                break;
            case PR_SNAPSHOT:
                if (pr->match >= pr->pending_snapshot) {
                    pr_become_probe(pr);
                    pr_become_replicate(pr);
                }
                break;
            default:
                inf_free_le(pr, m->index);
            }
            if (maybe_commit(r)) {
                bcast_append(r);
                reads_check(r);
            } else {
                /* keep the pipe full; a follower that was paused may also have
                   missed the latest commit index */
                uint32_t nm = r->n_msgs;
                flush_append(r, pr);
                if (was_paused && r->n_msgs == nm)
                    send_append(r, pr, true);
            }
            if (r->role == RAFT_LEADER && m->from == r->lead_transferee &&
                pr->match == raft_log_last(&r->log))
                send_timeout_now(r, m->from);
        }
        return;
    case RAFT_MSG_HEARTBEAT_RESP:
        pr->recent_active = true;
        pr->probe_sent = false;
        if (m->ctx > pr->read_ack)
            pr->read_ack = m->ctx;
        if (m->index > pr->hb_stamp)
            pr->hb_stamp = m->index;
        if (pr->match < raft_log_last(&r->log)) {
            /* A follower that is alive but has not advanced for a while has
               probably lost appends sent in replicate state (a full window
               would wait forever): probe again. Waiting half an election
               timeout, not one heartbeat, keeps slow links from thrashing
               between replicate and probe while their appends are on the way. */
            uint64_t stall = NK_MAX(2 * r->heartbeat_tick, r->election_tick / 2);
            if (pr->state == PR_REPLICATE && r->now - pr->progress_tick >= stall) {
                pr_become_probe(pr);
                pr->progress_tick = r->now;
            }
            if (pr->state == PR_PROBE)
                send_append(r, pr, true);
        }
        reads_check(r);
        return;
    default:
        return;
    }
}

static void step_candidate(struct raft *r, const struct raft_msg *m)
{
    uint8_t want = r->role == RAFT_PRE_CANDIDATE ? RAFT_MSG_PREVOTE_RESP : RAFT_MSG_VOTE_RESP;
    switch (m->type) {
    case RAFT_MSG_APPEND:
        become_follower(r, m->term, m->from);
        r->since_leader = 0;
        handle_append(r, m);
        return;
    case RAFT_MSG_HEARTBEAT:
        become_follower(r, m->term, m->from);
        r->since_leader = 0;
        handle_heartbeat(r, m);
        return;
    case RAFT_MSG_SNAPSHOT:
        become_follower(r, m->term, m->from);
        r->since_leader = 0;
        handle_snapshot(r, m);
        return;
    default:
        break;
    }
    if (m->type != want)
        return;
    struct progress *pr = pr_get(r, m->from);
    if (!pr || !(pr->voter_in || pr->voter_out))
        return;
    if (pr->vote == 0)
        pr->vote = m->reject ? 2 : 1;
    int res = vote_result(r);
    if (res == 1) {
        if (r->role == RAFT_PRE_CANDIDATE)
            campaign(r, false, false);
        else
            become_leader(r);
    } else if (res == -1) {
        become_follower(r, r->term, RAFT_NONE);
    }
}

static void step_follower(struct raft *r, const struct raft_msg *m)
{
    switch (m->type) {
    case RAFT_MSG_APPEND:
        r->election_elapsed = 0;
        r->since_leader = 0;
        r->lead = m->from;
        handle_append(r, m);
        return;
    case RAFT_MSG_HEARTBEAT:
        r->election_elapsed = 0;
        r->since_leader = 0;
        r->lead = m->from;
        handle_heartbeat(r, m);
        return;
    case RAFT_MSG_SNAPSHOT:
        r->election_elapsed = 0;
        r->since_leader = 0;
        r->lead = m->from;
        handle_snapshot(r, m);
        return;
    case RAFT_MSG_TIMEOUT_NOW:
        start_election(r, true);
        return;
    default:
        return;
    }
}

static void step_vote(struct raft *r, const struct raft_msg *m)
{
    bool pre = m->type == RAFT_MSG_PREVOTE;
    bool can_vote = r->vote == m->from || (r->vote == RAFT_NONE && r->lead == RAFT_NONE) ||
                    (pre && m->term > r->term);
    bool grant = can_vote && raft_log_up_to_date(&r->log, m->index, m->log_term);
    struct raft_msg *resp = new_msg(r, pre ? RAFT_MSG_PREVOTE_RESP : RAFT_MSG_VOTE_RESP, m->from);
    if (grant) {
        if (resp)
            resp->term = m->term; /* a pre-vote grant answers in the proposed term */
        if (!pre) {
            r->election_elapsed = 0;
            r->vote = m->from;
        }
    } else if (resp) {
        resp->reject = true;
    }
}

nk_status raft_step(struct raft *r, const struct raft_msg *m)
{
    NK_ASSERT(!r->in_ready);
    if (m->type < 1 || m->type > RAFT_MSG_TYPE_MAX)
        return nk_status_make(NK_INVALID_ARGUMENT, "raft %" PRIu64 ": unknown message type %u",
                              r->id, m->type);
    if (m->to != r->id || m->from == RAFT_NONE || m->from == r->id)
        return nk_status_make(NK_INVALID_ARGUMENT,
                              "raft %" PRIu64 ": message %s from %" PRIu64 " to %" PRIu64
                              " is misaddressed",
                              r->id, raft_msg_type_name(m->type), m->from, m->to);
    for (uint32_t i = 0; i < m->n_entries; i++)
        if (m->entries[i].index != m->index + 1 + i)
            return nk_status_make(NK_INVALID_ARGUMENT,
                                  "raft %" PRIu64 ": entry %u has index %" PRIu64
                                  ", expected %" PRIu64,
                                  r->id, i, m->entries[i].index, m->index + 1 + i);
    if (m->type == RAFT_MSG_SNAPSHOT && !m->snapshot)
        return nk_status_make(NK_INVALID_ARGUMENT, "raft %" PRIu64 ": snapshot message without one",
                              r->id);
    r->quiesced = false;

    bool is_vote = m->type == RAFT_MSG_VOTE || m->type == RAFT_MSG_PREVOTE;
    if (m->term > r->term) {
        if (is_vote) {
            bool force = m->ctx == RAFT_CAMPAIGN_TRANSFER;
            /* not election_elapsed: a term change resets that, but must not
               end the promise made to the leader we heard */
            bool in_lease = r->check_quorum && r->since_leader < r->election_tick;
            if (!force && in_lease)
                return NK_OK; /* a leader we heard from recently may hold a lease */
        }
        if (m->type == RAFT_MSG_PREVOTE) {
            /* never change term on a pre-vote */
        } else if (m->type == RAFT_MSG_PREVOTE_RESP && !m->reject) {
            /* a grant answers in our proposed term; counted below */
        } else if (m->type == RAFT_MSG_APPEND || m->type == RAFT_MSG_HEARTBEAT ||
                   m->type == RAFT_MSG_SNAPSHOT) {
            become_follower(r, m->term, m->from);
        } else {
            become_follower(r, m->term, RAFT_NONE);
        }
    } else if (m->term < r->term) {
        if ((r->check_quorum || r->pre_vote) &&
            (m->type == RAFT_MSG_APPEND || m->type == RAFT_MSG_HEARTBEAT)) {
            /* tell a stale leader about our term so that it steps down */
            new_msg(r, RAFT_MSG_APPEND_RESP, m->from);
        } else if (m->type == RAFT_MSG_PREVOTE) {
            struct raft_msg *resp = new_msg(r, RAFT_MSG_PREVOTE_RESP, m->from);
            if (resp)
                resp->reject = true;
        }
        return NK_OK;
    }

    if (is_vote) {
        step_vote(r, m);
        return NK_OK;
    }
    switch (r->role) {
    case RAFT_LEADER:
        step_leader(r, m);
        break;
    case RAFT_FOLLOWER:
        step_follower(r, m);
        break;
    default:
        step_candidate(r, m);
        break;
    }
    return NK_OK;
}

/* --------------------------------------------------------------- proposals */

static nk_status check_can_propose(struct raft *r, size_t len)
{
    if (r->role != RAFT_LEADER)
        return nk_status_make(NK_FAILED_PRECONDITION,
                              "raft %" PRIu64 ": not leader (leader hint %" PRIu64 ")", r->id,
                              r->lead);
    if (r->lead_transferee != RAFT_NONE)
        return nk_status_make(NK_UNAVAILABLE,
                              "raft %" PRIu64 ": leadership transfer to %" PRIu64 " in progress",
                              r->id, r->lead_transferee);
    if (len > RAFT_ENTRY_MAX_BYTES)
        return nk_status_make(NK_INVALID_ARGUMENT, "raft: proposal of %zu bytes exceeds %u", len,
                              RAFT_ENTRY_MAX_BYTES);
    if (raft_log_last(&r->log) - r->log.committed >= r->max_uncommitted_entries)
        return nk_status_make(NK_RESOURCE_EXHAUSTED,
                              "raft %" PRIu64 ": %u uncommitted entries (limit)", r->id,
                              r->max_uncommitted_entries);
    if (r->uncommitted_bytes > 0 && r->uncommitted_bytes + len > r->max_uncommitted_bytes)
        return nk_status_make(NK_RESOURCE_EXHAUSTED,
                              "raft %" PRIu64 ": uncommitted bytes %" PRIu64 " + %zu exceed %" PRIu64,
                              r->id, r->uncommitted_bytes, len, r->max_uncommitted_bytes);
    return NK_OK;
}

/* New entries go out at the next raft_ready (flush_append), so that all
   proposals between two Readys travel in one message per follower. */
static void after_leader_append(struct raft *r)
{
    (void)r;
}

nk_status raft_propose(struct raft *r, const void *data, size_t len, uint64_t *index,
                       uint64_t *term)
{
    NK_ASSERT(!r->in_ready);
    r->quiesced = false;
    NK_TRY(check_can_propose(r, len));
    uint64_t idx;
    append_entry(r, RAFT_ENTRY_NORMAL, data, len, &idx);
    if (index)
        *index = idx;
    if (term)
        *term = r->term;
    after_leader_append(r);
    return NK_OK;
}

static nk_status validate_target(const struct raft_conf_state *t)
{
    if (t->n_voters == 0 || t->n_voters > RAFT_MAX_MEMBERS || t->n_learners > RAFT_MAX_MEMBERS)
        return nk_status_make(NK_INVALID_ARGUMENT, "raft: conf change needs 1..%d voters",
                              RAFT_MAX_MEMBERS);
    if (t->n_voters_out)
        return nk_status_make(NK_INVALID_ARGUMENT, "raft: conf change target must not be joint");
    for (uint8_t i = 0; i < t->n_voters; i++) {
        if (t->voters[i] == RAFT_NONE || ids_has(t->voters, i, t->voters[i]))
            return nk_status_make(NK_INVALID_ARGUMENT, "raft: conf change voter %" PRIu64
                                                       " is zero or repeated",
                                  t->voters[i]);
    }
    for (uint8_t i = 0; i < t->n_learners; i++) {
        if (t->learners[i] == RAFT_NONE || ids_has(t->learners, i, t->learners[i]) ||
            ids_has(t->voters, t->n_voters, t->learners[i]))
            return nk_status_make(NK_INVALID_ARGUMENT,
                                  "raft: conf change learner %" PRIu64
                                  " is zero, repeated or also a voter",
                                  t->learners[i]);
    }
    return NK_OK;
}

static void propose_cc(struct raft *r, const struct raft_conf_change *cc, uint64_t *index)
{
    struct nk_buf b;
    nk_buf_init(&b);
    raft_conf_change_encode(cc, &b);
    append_entry(r, RAFT_ENTRY_CONF_CHANGE, b.data, b.len, index);
    nk_buf_free(&b);
    after_leader_append(r);
}

nk_status raft_propose_conf_change(struct raft *r, const struct raft_conf_state *target,
                                   uint64_t *index, uint64_t *term)
{
    NK_ASSERT(!r->in_ready);
    r->quiesced = false;
    NK_TRY(validate_target(target));
    NK_TRY(check_can_propose(r, 512));
    if (r->n_conf_hist)
        return nk_status_make(NK_FAILED_PRECONDITION,
                              "raft %" PRIu64 ": conf change at %" PRIu64
                              " not yet committed (commit %" PRIu64 ")",
                              r->id, r->conf_hist[r->n_conf_hist - 1].index, r->log.committed);
    if (raft_conf_is_joint(&r->conf))
        return nk_status_make(NK_FAILED_PRECONDITION,
                              "raft %" PRIu64 ": joint configuration not yet left", r->id);
    uint32_t diff = 0;
    for (uint8_t i = 0; i < target->n_voters; i++)
        diff += !ids_has(r->conf.voters, r->conf.n_voters, target->voters[i]);
    for (uint8_t i = 0; i < r->conf.n_voters; i++)
        diff += !ids_has(target->voters, target->n_voters, r->conf.voters[i]);
    struct raft_conf_change cc = {.kind = diff <= 1 ? RAFT_CC_SIMPLE : RAFT_CC_ENTER_JOINT,
                                  .conf = *target};
    if (cc.kind == RAFT_CC_ENTER_JOINT) {
        cc.conf.n_voters_out = r->conf.n_voters;
        memcpy(cc.conf.voters_out, r->conf.voters, sizeof(cc.conf.voters_out));
    }
    uint64_t idx;
    propose_cc(r, &cc, &idx);
    if (index)
        *index = idx;
    if (term)
        *term = r->term;
    return NK_OK;
}

/* Once the joint configuration is committed, the leader proposes the new
   one by itself (thesis 4.3). */
static void maybe_leave_joint(struct raft *r)
{
    if (r->role != RAFT_LEADER || !raft_conf_is_joint(&r->conf) || r->n_conf_hist ||
        r->lead_transferee != RAFT_NONE)
        return;
    struct raft_conf_change cc = {.kind = RAFT_CC_LEAVE_JOINT, .conf = r->conf};
    cc.conf.n_voters_out = 0;
    memset(cc.conf.voters_out, 0, sizeof(cc.conf.voters_out));
    propose_cc(r, &cc, NULL);
}

nk_status raft_read_index(struct raft *r, uint64_t ctx)
{
    NK_ASSERT(!r->in_ready);
    r->quiesced = false;
    if (r->role != RAFT_LEADER)
        return nk_status_make(NK_FAILED_PRECONDITION,
                              "raft %" PRIu64 ": read index on a non-leader (leader hint %" PRIu64 ")",
                              r->id, r->lead);
    if (r->n_reads >= r->max_pending_reads)
        return nk_status_make(NK_RESOURCE_EXHAUSTED, "raft %" PRIu64 ": %u pending reads (limit)",
                              r->id, r->n_reads);
    if (r->n_reads % 16 == 0)
        r->reads = nk_realloc(r->reads, (r->n_reads + 16) * sizeof(*r->reads));
    bool in_term = committed_term(r) == r->term;
    r->reads[r->n_reads++] =
        (struct pending_read){ctx, in_term ? r->log.committed : 0, r->read_seq + 1};
    r->read_round_needed = true;
    return NK_OK;
}

static bool pred_lease(const struct raft *r, const struct progress *pr, uint64_t arg)
{
    (void)arg;
    if (pr->id == r->id)
        return true;
    return pr->hb_stamp != 0 && pr->hb_stamp - 1 >= r->lease_from &&
           pr->hb_stamp - 1 + r->lease_tick > r->now;
}

/* The tick at which pr's newest acknowledged heartbeat (of this lease) was
 * sent; 0 when none counts. The leader itself counts as now. */
static uint64_t lease_stamp(const struct raft *r, const struct progress *pr)
{
    if (pr->id == r->id)
        return r->now;
    if (pr->hb_stamp == 0 || pr->hb_stamp - 1 < r->lease_from)
        return 0;
    return pr->hb_stamp - 1;
}

/* The largest tick T such that a majority of ids acknowledged a heartbeat
 * sent at T or later. */
static uint64_t majority_stamp(const struct raft *r, const uint64_t *ids, uint8_t n)
{
    if (n == 0)
        return UINT64_MAX;
    uint64_t v[RAFT_MAX_MEMBERS];
    for (uint8_t i = 0; i < n; i++) {
        const struct progress *pr = pr_cget(r, ids[i]);
        v[i] = pr ? lease_stamp(r, pr) : 0;
    }
    for (uint8_t i = 1; i < n; i++) {
        uint64_t x = v[i];
        int j = i - 1;
        while (j >= 0 && v[j] < x) {
            v[j + 1] = v[j];
            j--;
        }
        v[j + 1] = x;
    }
    return v[n / 2];
}

bool raft_lease_anchor(const struct raft *r, uint64_t *sent_tick, uint32_t *lease_ticks)
{
    uint64_t idx;
    if (!raft_lease_read(r, &idx))
        return false;
    uint64_t a = majority_stamp(r, r->conf.voters, r->conf.n_voters);
    uint64_t b = majority_stamp(r, r->conf.voters_out, r->conf.n_voters_out);
    uint64_t t = NK_MIN(a, b);
    if (t == 0 || t == UINT64_MAX)
        return false;
    *sent_tick = t;
    *lease_ticks = r->lease_tick;
    return true;
}

uint64_t raft_now(const struct raft *r)
{
    return r->now;
}

bool raft_lease_read(const struct raft *r, uint64_t *index)
{
    /* followers keep the promise behind the lease only with check-quorum */
    if (r->role != RAFT_LEADER || r->quiesced || r->lead_transferee != RAFT_NONE ||
        !r->check_quorum)
        return false;
    if (committed_term(r) != r->term)
        return false;
    if (!quorum_holds(r, pred_lease, 0))
        return false;
    *index = r->log.committed;
    return true;
}

nk_status raft_transfer_leader(struct raft *r, uint64_t to)
{
    NK_ASSERT(!r->in_ready);
    r->quiesced = false;
    if (r->role != RAFT_LEADER)
        return nk_status_make(NK_FAILED_PRECONDITION, "raft %" PRIu64 ": not leader", r->id);
    struct progress *pr = pr_get(r, to);
    if (to == r->id || !pr || !(pr->voter_in || pr->voter_out))
        return nk_status_make(NK_INVALID_ARGUMENT,
                              "raft %" PRIu64 ": cannot transfer leadership to %" PRIu64
                              " (self, unknown or not a voter)",
                              r->id, to);
    if (r->lead_transferee != RAFT_NONE && r->lead_transferee != to)
        r->lease_from = r->now + r->election_tick; /* the previous one is abandoned */
    r->lead_transferee = to;
    r->election_elapsed = 0; /* the transfer must finish within an election timeout */
    if (pr->match == raft_log_last(&r->log))
        send_timeout_now(r, to);
    else
        send_append(r, pr, true);
    return NK_OK;
}

nk_status raft_campaign(struct raft *r)
{
    NK_ASSERT(!r->in_ready);
    r->quiesced = false;
    if (r->role == RAFT_LEADER)
        return NK_OK;
    if (!promotable(r))
        return nk_status_make(NK_FAILED_PRECONDITION, "raft %" PRIu64 ": not a voter", r->id);
    start_election(r, false);
    return NK_OK;
}

void raft_report_unreachable(struct raft *r, uint64_t to)
{
    struct progress *pr = pr_get(r, to);
    if (r->role != RAFT_LEADER || !pr)
        return;
    if (pr->state == PR_REPLICATE || pr->state == PR_SNAPSHOT)
        pr_become_probe(pr);
}

/* ---------------------------------------------------------- configuration */

/* Makes c the effective configuration: rebuilds the progress array. */
static void set_conf(struct raft *r, const struct raft_conf_state *c)
{
    r->conf = *c;
    /* new progress array: union of voters, outgoing voters and learners */
    uint64_t ids[3 * RAFT_MAX_MEMBERS];
    uint32_t n = 0;
    const uint64_t *lists[3] = {c->voters, c->voters_out, c->learners};
    uint8_t lens[3] = {c->n_voters, c->n_voters_out, c->n_learners};
    for (int l = 0; l < 3; l++)
        for (uint8_t i = 0; i < lens[l]; i++)
            if (!ids_has(ids, (uint8_t)n, lists[l][i]))
                ids[n++] = lists[l][i];
    struct progress *prs = n ? nk_calloc(n, sizeof(*prs)) : NULL;
    uint64_t last = raft_log_last(&r->log);
    for (uint32_t i = 0; i < n; i++) {
        struct progress *old = pr_get(r, ids[i]);
        if (old) {
            prs[i] = *old;
            old->inf = NULL; /* moved */
        } else {
            prs[i].id = ids[i];
            prs[i].next = last + 1;
            prs[i].state = PR_PROBE;
            prs[i].recent_active = true;
            prs[i].progress_tick = r->now;
        }
        prs[i].voter_in = ids_has(c->voters, c->n_voters, ids[i]);
        prs[i].voter_out = ids_has(c->voters_out, c->n_voters_out, ids[i]);
    }
    for (uint32_t i = 0; i < r->n_prs; i++)
        free(r->prs[i].inf);
    free(r->prs);
    r->prs = prs;
    r->n_prs = n;

    if (r->role != RAFT_LEADER)
        return;
    if (r->lead_transferee != RAFT_NONE && !raft_conf_is_voter(c, r->lead_transferee)) {
        r->lead_transferee = RAFT_NONE;
        r->lease_from = r->now + r->election_tick;
    }
    /* a leader that is not a voter of the latest configuration keeps
       replicating (without counting itself) until that configuration
       commits, then steps down (conf_committed) */
    if (maybe_commit(r))
        reads_check(r);
    bcast_append(r);
}

static void decode_conf_entry(const struct raft *r, const struct raft_entry *e,
                              struct raft_conf_state *out)
{
    struct raft_conf_change cc;
    nk_status s = raft_conf_change_decode(e->data, e->len, &cc);
    if (!nk_ok(s))
        nk_panic("raft %" PRIu64 ": conf change at %" PRIu64 " is corrupt: %s", r->id, e->index,
                 nk_status_msg(s));
    *out = cc.conf;
}

/* Conf entries just written to the log, after any truncation: entries
   [ents[0].index, ...) replaced whatever the log held there. */
static void conf_appended(struct raft *r, const struct raft_entry *ents, size_t n)
{
    if (n == 0)
        return;
    uint64_t from = ents[0].index;
    bool changed = false;
    while (r->n_conf_hist && r->conf_hist[r->n_conf_hist - 1].index >= from) {
        r->n_conf_hist--; /* truncated away */
        changed = true;
    }
    for (size_t i = 0; i < n; i++) {
        if (ents[i].type != RAFT_ENTRY_CONF_CHANGE)
            continue;
        if (r->n_conf_hist == CONF_HIST_MAX)
            nk_panic("raft %" PRIu64 ": more than %d uncommitted conf changes", r->id,
                     CONF_HIST_MAX);
        if (!r->conf_hist)
            r->conf_hist = nk_malloc(CONF_HIST_MAX * sizeof(*r->conf_hist));
        struct conf_hist *h = &r->conf_hist[r->n_conf_hist++];
        h->index = ents[i].index;
        decode_conf_entry(r, &ents[i], &h->conf);
        changed = true;
    }
    if (changed)
        set_conf(r, r->n_conf_hist ? &r->conf_hist[r->n_conf_hist - 1].conf : &r->conf_base);
}

/* The commit index moved: conf entries at or below it become the base. */
static void conf_committed(struct raft *r)
{
    uint32_t k = 0;
    while (k < r->n_conf_hist && r->conf_hist[k].index <= r->log.committed)
        k++;
    if (k == 0)
        return;
    r->conf_base = r->conf_hist[k - 1].conf;
    memmove(r->conf_hist, r->conf_hist + k, (r->n_conf_hist - k) * sizeof(*r->conf_hist));
    r->n_conf_hist -= k;
    if (r->n_conf_hist == 0) {
        free(r->conf_hist);
        r->conf_hist = NULL;
    }
    if (r->role != RAFT_LEADER)
        return;
    if (r->n_conf_hist == 0 && !raft_conf_is_voter(&r->conf, r->id)) {
        /* our removal is committed: stop leading, the others elect */
        become_follower(r, r->term, RAFT_NONE);
        return;
    }
    maybe_leave_joint(r);
}

/* ------------------------------------------------------------ Ready/Advance */

static bool soft_changed(const struct raft *r)
{
    return r->lead != r->prev_lead || r->role != r->prev_role;
}

static bool hs_changed(const struct raft *r)
{
    return r->term != r->prev_hs.term || r->vote != r->prev_hs.vote ||
           r->log.committed != r->prev_hs.commit;
}

void raft_entries_fetched(struct raft *r)
{
    if (r->role != RAFT_LEADER)
        return;
    for (uint32_t i = 0; i < r->n_prs; i++)
        flush_append(r, &r->prs[i]);
}

bool raft_has_ready(const struct raft *r)
{
    return hs_changed(r) || r->log.u.n || r->log.u.snap || r->n_msgs || r->n_read_states ||
           (r->read_round_needed && r->role == RAFT_LEADER) ||
           raft_log_apply_limit(&r->log) > r->log.applied || soft_changed(r);
}

void raft_ready(struct raft *r, struct raft_ready *rd)
{
    NK_ASSERT(!r->in_ready);
    memset(rd, 0, sizeof(*rd));
    if (r->role == RAFT_LEADER) {
        r->rot++;
        for (uint32_t i = 0; i < r->n_prs; i++)
            flush_append(r, bcast_pr(r, i));
    }
    if (r->read_round_needed && r->role == RAFT_LEADER) {
        /* one heartbeat round confirms every read that arrived before it */
        r->read_seq++;
        r->read_round_needed = false;
        bcast_heartbeat(r);
        reads_check(r);
    }
    rd->hard_state = (struct raft_hard_state){r->term, r->vote, r->log.committed};
    rd->hard_state_changed = hs_changed(r);
    rd->snapshot = r->log.u.snap;
    rd->entries = r->log.u.ents;
    rd->n_entries = r->log.u.n;
    rd->msgs = r->msgs;
    rd->n_msgs = r->n_msgs;
    rd->reads = r->read_states;
    rd->n_reads = r->n_read_states;
    rd->lead = r->lead;
    rd->role = r->role;
    uint64_t hi = raft_log_apply_limit(&r->log);
    r->committed = NULL;
    r->n_committed = 0;
    if (hi > r->log.applied) {
            nk_status s = raft_log_slice(&r->log, r->log.applied + 1, hi + 1, r->max_committed_bytes,
                                     4096, &r->arena, &r->committed, &r->n_committed);
        if (!nk_ok(s))
            nk_panic("raft %" PRIu64 ": committed entries from %" PRIu64 " unreadable: %s", r->id,
                     r->log.applied + 1, nk_status_msg(s));
    }
    rd->committed = r->committed;
    rd->n_committed = r->n_committed;
    /* what was handed out lives in `handed` until advance; messages made
       during advance go to the fresh arena */
    NK_ASSERT(r->handed.blocks == NULL);
    r->handed = r->arena;
    nk_arena_init(&r->arena);
    r->in_ready = true;
}

void raft_advance(struct raft *r, const struct raft_ready *rd)
{
    NK_ASSERT(r->in_ready);
    r->in_ready = false;
    r->prev_hs = rd->hard_state;
    r->prev_lead = rd->lead;
    r->prev_role = rd->role;
    if (rd->snapshot) {
        r->log.applied = NK_MAX(r->log.applied, rd->snapshot->index);
        *r->applied_conf = rd->snapshot->conf;
        raft_log_stable_snap(&r->log);
    }
    raft_log_stable_to(&r->log, rd->n_entries);
    r->n_msgs = 0;
    r->n_read_states = 0;
    if (r->cap_msgs > 64) {
        free(r->msgs);
        r->msgs = NULL;
        r->cap_msgs = 0;
    }
    /* apply: conf changes take effect now, in log order */
    uint64_t applied_bytes = 0;
    for (size_t i = 0; i < rd->n_committed; i++) {
        const struct raft_entry *e = &rd->committed[i];
        NK_ASSERT(e->index == r->log.applied + 1);
        r->log.applied = e->index;
        applied_bytes += e->len;
        if (e->type == RAFT_ENTRY_CONF_CHANGE)
            decode_conf_entry(r, e, r->applied_conf);
    }
    if (rd->n_committed && r->role == RAFT_LEADER)
        r->uncommitted_bytes =
            r->uncommitted_bytes > applied_bytes ? r->uncommitted_bytes - applied_bytes : 0;
    r->committed = NULL;
    r->n_committed = 0;
    /* the leader's entries are durable now: they count toward commitment */
    if (r->role == RAFT_LEADER) {
        struct progress *self = pr_get(r, r->id);
        if (self && pr_maybe_update(self, raft_log_last(&r->log)) && maybe_commit(r)) {
            /* tell followers the new commit index, read states may complete */
            reads_check(r);
            bcast_append(r);
        }
    }
    /* everything handed out in the Ready is released */
    nk_arena_free(&r->handed);
}

/* ---------------------------------------------------------------- lifetime */

nk_status raft_new(const struct raft_config *cfg, struct raft **out)
{
    if (cfg->id == RAFT_NONE)
        return nk_status_make(NK_INVALID_ARGUMENT, "raft: node id must be non-zero");
    if (!cfg->storage.term || !cfg->storage.entries || !cfg->storage.first_index ||
        !cfg->storage.last_index || !cfg->storage.snapshot || !cfg->storage.initial_state)
        return nk_status_make(NK_INVALID_ARGUMENT, "raft: storage vtable incomplete");
    struct raft_hard_state hs;
    struct raft_conf_state conf;
    NK_TRY(cfg->storage.initial_state(cfg->storage.ctx, &hs, &conf));

    struct raft *r = nk_calloc(1, sizeof(*r));
    r->id = cfg->id;
    r->election_tick = cfg->election_tick ? cfg->election_tick : 10;
    r->heartbeat_tick = cfg->heartbeat_tick ? cfg->heartbeat_tick : 1;
    uint32_t margin = cfg->lease_margin_tick ? cfg->lease_margin_tick
                                             : NK_MAX(2u, r->election_tick / 4);
    if (r->heartbeat_tick >= r->election_tick || margin >= r->election_tick) {
        uint32_t et = r->election_tick, hb = r->heartbeat_tick;
        free(r);
        return nk_status_make(NK_INVALID_ARGUMENT,
                              "raft: heartbeat_tick %u and lease margin %u must be below "
                              "election_tick %u",
                              hb, margin, et);
    }
    r->lease_tick = r->election_tick - margin;
    r->pre_vote = !cfg->disable_pre_vote;
    r->check_quorum = !cfg->disable_check_quorum;
    r->max_msg_bytes = cfg->max_msg_bytes ? cfg->max_msg_bytes : (1u << 20);
    r->max_inflight_msgs = cfg->max_inflight_msgs ? cfg->max_inflight_msgs : 256;
    r->max_inflight_bytes = cfg->max_inflight_bytes ? cfg->max_inflight_bytes : (8u << 20);
    r->max_uncommitted_bytes = cfg->max_uncommitted_bytes ? cfg->max_uncommitted_bytes : (32u << 20);
    r->max_uncommitted_entries =
        cfg->max_uncommitted_entries ? cfg->max_uncommitted_entries : 65536;
    r->max_committed_bytes = cfg->max_committed_bytes ? cfg->max_committed_bytes : (16u << 20);
    r->max_pending_reads = cfg->max_pending_reads ? cfg->max_pending_reads : 4096;
    r->max_msgs = cfg->max_msgs_per_ready ? cfg->max_msgs_per_ready : 16384;
    nk_rng_seed(&r->rng, cfg->rand_seed ^ (cfg->id * 0x9e3779b97f4a7c15ull));
    nk_arena_init(&r->arena);
    raft_log_init(&r->log, &cfg->storage);

    uint64_t snap_index = raft_log_first(&r->log) - 1;
    uint64_t last = raft_log_last(&r->log);
    if (hs.commit < snap_index)
        hs.commit = snap_index; /* a snapshot is committed by definition */
    if (hs.commit > last || cfg->applied < snap_index ||
        cfg->applied > hs.commit) {
        raft_log_free(&r->log);
        free(r);
        return nk_status_make(NK_INVALID_ARGUMENT,
                              "raft %" PRIu64 ": inconsistent state: snapshot %" PRIu64
                              ", commit %" PRIu64 ", last %" PRIu64 ", applied %" PRIu64,
                              cfg->id, snap_index, hs.commit, last, cfg->applied);
    }
    r->log.committed = hs.commit;
    r->term = hs.term;
    r->vote = hs.vote;
    r->prev_hs = hs;
    r->applied_conf = nk_malloc(sizeof(*r->applied_conf));
    *r->applied_conf = conf;
    r->conf_base = conf;
    set_conf(r, &conf);
    /* the latest configuration in the log is the effective one: scan the
       whole stable log (it is short: logs are compacted behind snapshots) */
    for (uint64_t i = snap_index + 1; i <= last;) {
        struct raft_entry *ents;
        size_t n;
        nk_status s = raft_log_slice(&r->log, i, last + 1, 1u << 20, 1024, &r->arena, &ents, &n);
        if (!nk_ok(s)) {
            raft_free(r);
            return nk_status_wrap(s, "raft: reading conf changes");
        }
        for (size_t k = 0; k < n; k++) {
            if (ents[k].type != RAFT_ENTRY_CONF_CHANGE)
                continue;
            if (ents[k].index <= cfg->applied)
                decode_conf_entry(r, &ents[k], r->applied_conf);
            conf_appended(r, &ents[k], 1);
        }
        i += n;
        nk_arena_free(&r->arena);
    }
    conf_committed(r);
    r->log.applied = cfg->applied;
    become_follower(r, r->term, RAFT_NONE);
    /* A restarted replica may have promised a leader not to vote for others
       (lease): it keeps that promise for one election timeout. A fresh
       group (term 0) has never had a leader to promise anything to. */
    r->since_leader = r->term == 0 ? r->election_tick : 0;
    r->prev_lead = r->lead;
    r->prev_role = r->role;
    *out = r;
    return NK_OK;
}

void raft_free(struct raft *r)
{
    if (!r)
        return;
    raft_log_free(&r->log);
    for (uint32_t i = 0; i < r->n_prs; i++)
        free(r->prs[i].inf);
    free(r->prs);
    free(r->msgs);
    free(r->reads);
    free(r->read_states);
    free(r->conf_hist);
    free(r->applied_conf);
    nk_arena_free(&r->arena);
    nk_arena_free(&r->handed);
    free(r);
}

/* ------------------------------------------------------------- multi-raft */

bool raft_is_idle(const struct raft *r)
{
    if (r->log.u.n || r->log.u.snap || r->n_msgs || r->n_reads || r->n_read_states ||
        r->read_round_needed || r->in_ready)
        return false;
    uint64_t last = raft_log_last(&r->log);
    if (r->log.committed != last || r->log.applied != r->log.committed)
        return false;
    if (r->role == RAFT_LEADER) {
        if (r->lead_transferee != RAFT_NONE || raft_conf_is_joint(&r->conf))
            return false;
        for (uint32_t i = 0; i < r->n_prs; i++)
            if (r->prs[i].match != last)
                return false;
        return true;
    }
    return r->role == RAFT_FOLLOWER && r->lead != RAFT_NONE;
}

void raft_quiesce(struct raft *r)
{
    r->quiesced = true;
    for (uint32_t i = 0; i < r->n_prs; i++)
        if (r->prs[i].inf_count == 0)
            inf_reset(&r->prs[i], true);
}

void raft_unquiesce(struct raft *r)
{
    r->quiesced = false;
}

bool raft_is_quiesced(const struct raft *r)
{
    return r->quiesced;
}

/* ------------------------------------------------------------------ getters */

uint64_t raft_id(const struct raft *r)
{
    return r->id;
}
uint64_t raft_term(const struct raft *r)
{
    return r->term;
}
uint64_t raft_lead(const struct raft *r)
{
    return r->lead;
}
enum raft_role raft_role(const struct raft *r)
{
    return (enum raft_role)r->role;
}
uint64_t raft_commit_index(const struct raft *r)
{
    return r->log.committed;
}
uint64_t raft_applied_index(const struct raft *r)
{
    return r->log.applied;
}
uint64_t raft_last_index(const struct raft *r)
{
    return raft_log_last(&r->log);
}
uint64_t raft_first_index(const struct raft *r)
{
    return raft_log_first(&r->log);
}
nk_status raft_log_term(const struct raft *r, uint64_t i, uint64_t *term)
{
    return raft_log_term_of(&r->log, i, term);
}
const struct raft_conf_state *raft_conf(const struct raft *r)
{
    return &r->conf;
}
const struct raft_conf_state *raft_applied_conf(const struct raft *r)
{
    return r->applied_conf;
}
uint64_t raft_progress_match(const struct raft *r, uint64_t id)
{
    const struct progress *pr = pr_cget(r, id);
    return pr ? pr->match : 0;
}
uint64_t raft_dropped_msgs(const struct raft *r)
{
    return r->dropped_msgs;
}
size_t raft_struct_size(void)
{
    return sizeof(struct raft);
}
const char *raft_role_name(enum raft_role role)
{
    static const char *names[] = {"follower", "pre-candidate", "candidate", "leader"};
    return (unsigned)role < 4 ? names[role] : "?";
}

size_t raft_describe(const struct raft *r, char *buf, size_t n)
{
    static const char *st[] = {"probe", "replicate", "snapshot"};
    size_t w = (size_t)snprintf(buf, n,
                                "raft %" PRIu64 " %s term %" PRIu64 " lead %" PRIu64
                                " first %" PRIu64 " last %" PRIu64 " commit %" PRIu64
                                " applied %" PRIu64 " unstable %zu@%" PRIu64 "%s%s",
                                r->id, raft_role_name((enum raft_role)r->role), r->term, r->lead,
                                raft_log_first(&r->log), raft_log_last(&r->log), r->log.committed,
                                r->log.applied, r->log.u.n, r->log.u.offset,
                                r->log.u.snap ? " +snapshot" : "",
                                r->quiesced ? " quiesced" : "");
    for (uint32_t i = 0; i < r->n_prs && r->role == RAFT_LEADER && w < n; i++) {
        const struct progress *pr = &r->prs[i];
        w += (size_t)snprintf(buf + w, n - w,
                              "; %" PRIu64 ": %s match %" PRIu64 " next %" PRIu64
                              " inflight %u%s%s",
                              pr->id, st[pr->state], pr->match, pr->next, pr->inf_count,
                              pr->probe_sent ? " probe-sent" : "",
                              pr->recent_active ? " active" : "");
    }
    return w;
}
