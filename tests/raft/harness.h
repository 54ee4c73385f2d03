/*
 * harness.h: a tiny synchronous network of raft nodes for the unit tests.
 * Messages travel encoded (through raft_msg_encode/decode) and can be cut per
 * link; each node has a raft_memstorage disk and records what it applies.
 */
#ifndef NK_RAFT_TEST_HARNESS_H
#define NK_RAFT_TEST_HARNESS_H

#include "raft/raft.h"
#include "testlib.h"

#define TN_MAX 7

struct tpkt {
    uint64_t from, to;
    uint8_t type;
    struct nk_buf b;
};

struct tnode {
    struct raft *r;
    struct raft_memstorage *ms;
    struct raft_config cfg;
    uint64_t applied[4096]; /* indexes of applied NORMAL entries */
    uint8_t applied_data[4096];
    size_t n_applied;
    uint64_t last_applied;
    struct raft_read_state reads[256];
    size_t n_reads;
};

struct tnet {
    int n;
    struct tnode nodes[TN_MAX + 1]; /* 1-based */
    bool cut[TN_MAX + 1][TN_MAX + 1];
    struct tpkt *q;
    size_t nq, capq;
    /* counts of sent messages per type (since the last reset) */
    uint64_t sent[RAFT_MSG_TYPE_MAX + 1];
    bool hold; /* queue messages but do not deliver them in tn_settle */
};

static inline void tn_conf(struct raft_conf_state *c, int nv, int nl)
{
    memset(c, 0, sizeof(*c));
    for (int i = 1; i <= nv; i++)
        c->voters[c->n_voters++] = (uint64_t)i;
    for (int i = nv + 1; i <= nv + nl; i++)
        c->learners[c->n_learners++] = (uint64_t)i;
}

static inline void tn_start(struct tnet *t, int id)
{
    struct tnode *nd = &t->nodes[id];
    nd->cfg.storage = raft_memstorage_storage(nd->ms);
    nd->cfg.applied = nd->last_applied;
    nk_status s = raft_new(&nd->cfg, &nd->r);
    NK_ASSERT(nk_ok(s));
}

/* n nodes; the first nv are voters and the next nl learners of the initial
 * configuration; the rest start empty (to be added later). */
static inline struct tnet *tn_new(int n, int nv, int nl, void (*tweak)(struct raft_config *))
{
    struct tnet *t = nk_calloc(1, sizeof(*t));
    t->n = n;
    struct raft_conf_state c;
    tn_conf(&c, nv, nl);
    for (int i = 1; i <= n; i++) {
        struct tnode *nd = &t->nodes[i];
        nd->ms = raft_memstorage_new();
        if (i <= nv + nl) {
            nk_status s = raft_memstorage_create_snapshot(nd->ms, 0, &c, NULL, 0);
            NK_ASSERT(nk_ok(s));
        }
        nd->cfg = (struct raft_config){.id = (uint64_t)i, .election_tick = 10,
                                       .heartbeat_tick = 1, .rand_seed = 42};
        if (tweak)
            tweak(&nd->cfg);
        tn_start(t, i);
    }
    return t;
}

static inline void tn_free(struct tnet *t)
{
    for (int i = 1; i <= t->n; i++) {
        raft_free(t->nodes[i].r);
        raft_memstorage_free(t->nodes[i].ms);
    }
    for (size_t i = 0; i < t->nq; i++)
        nk_buf_free(&t->q[i].b);
    free(t->q);
    free(t);
}

static inline struct raft *tn_r(struct tnet *t, int id)
{
    return t->nodes[id].r;
}

/* Processes one node's Ready: persist, queue messages, apply, advance. */
static inline bool tn_ready(struct tnet *t, int id)
{
    struct tnode *nd = &t->nodes[id];
    if (!nd->r || !raft_has_ready(nd->r))
        return false;
    struct raft_ready rd;
    raft_ready(nd->r, &rd);
    if (rd.snapshot) {
        nk_status s = raft_memstorage_apply_snapshot(nd->ms, rd.snapshot);
        NK_ASSERT(nk_ok(s));
        nd->last_applied = rd.snapshot->index;
    }
    nk_status s = raft_memstorage_append(nd->ms, rd.entries, rd.n_entries);
    NK_ASSERT(nk_ok(s));
    if (rd.hard_state_changed)
        raft_memstorage_set_hard_state(nd->ms, &rd.hard_state);
    for (size_t i = 0; i < rd.n_msgs; i++) {
        if (t->nq == t->capq) {
            t->capq = t->capq ? t->capq * 2 : 64;
            t->q = nk_realloc(t->q, t->capq * sizeof(*t->q));
        }
        struct tpkt *p = &t->q[t->nq++];
        p->from = rd.msgs[i].from;
        p->to = rd.msgs[i].to;
        p->type = rd.msgs[i].type;
        nk_buf_init(&p->b);
        raft_msg_encode(&rd.msgs[i], &p->b);
        t->sent[p->type]++;
    }
    for (size_t i = 0; i < rd.n_committed; i++) {
        const struct raft_entry *e = &rd.committed[i];
        NK_ASSERT(e->index == nd->last_applied + 1);
        nd->last_applied = e->index;
        if (e->type == RAFT_ENTRY_NORMAL && nd->n_applied < 4096) {
            nd->applied_data[nd->n_applied] = e->len ? e->data[0] : 0;
            nd->applied[nd->n_applied++] = e->index;
        }
    }
    for (size_t i = 0; i < rd.n_reads && nd->n_reads < 256; i++)
        nd->reads[nd->n_reads++] = rd.reads[i];
    raft_advance(nd->r, &rd);
    return true;
}

/* Delivers every queued message (dropping those on cut links or to down
 * nodes). Returns how many were delivered. */
static inline size_t tn_deliver(struct tnet *t)
{
    size_t n = t->nq, delivered = 0;
    struct tpkt *q = t->q;
    t->q = NULL;
    t->nq = t->capq = 0;
    for (size_t i = 0; i < n; i++) {
        struct tpkt *p = &q[i];
        struct tnode *to = (p->to >= 1 && p->to <= (uint64_t)t->n) ? &t->nodes[p->to] : NULL;
        if (to && to->r && !t->cut[p->from][p->to]) {
            struct nk_arena a;
            nk_arena_init(&a);
            struct raft_msg m;
            nk_status s = raft_msg_decode(p->b.data, p->b.len, &a, &m);
            NK_ASSERT(nk_ok(s));
            s = raft_step(to->r, &m);
            NK_ASSERT(nk_ok(s));
            nk_arena_free(&a);
            delivered++;
        }
        nk_buf_free(&p->b);
    }
    free(q);
    return delivered;
}

/* Runs Ready and delivery until nothing moves (bounded). */
static inline void tn_settle(struct tnet *t)
{
    for (int round = 0; round < 10000; round++) {
        bool any = false;
        for (int i = 1; i <= t->n; i++)
            any |= tn_ready(t, i);
        if (!t->hold && t->nq) {
            tn_deliver(t);
            any = true;
        }
        if (!any)
            return;
    }
    NK_ASSERT(!"tn_settle did not settle");
}

static inline void tn_tick_all(struct tnet *t, int ticks)
{
    for (int k = 0; k < ticks; k++) {
        for (int i = 1; i <= t->n; i++)
            if (t->nodes[i].r)
                raft_tick(t->nodes[i].r);
        tn_settle(t);
    }
}

static inline void tn_isolate(struct tnet *t, int id, bool cut)
{
    for (int j = 1; j <= t->n; j++) {
        t->cut[id][j] = cut && j != id;
        t->cut[j][id] = cut && j != id;
    }
}

static inline void tn_elect(struct tnet *t, int id)
{
    nk_status s = raft_campaign(tn_r(t, id));
    NK_ASSERT(nk_ok(s));
    tn_settle(t);
}

/* Ticks everyone until a node other than `not` leads; returns it (0: none). */
static inline int tn_wait_leader(struct tnet *t, int not)
{
    for (int k = 0; k < 200; k++) {
        for (int i = 1; i <= t->n; i++)
            if (i != not && t->nodes[i].r && raft_role(t->nodes[i].r) == RAFT_LEADER)
                return i;
        tn_tick_all(t, 1);
    }
    return 0;
}

static inline nk_status tn_propose(struct tnet *t, int id, uint8_t byte)
{
    return raft_propose(tn_r(t, id), &byte, 1, NULL, NULL);
}

static inline void tn_crash(struct tnet *t, int id)
{
    raft_free(t->nodes[id].r);
    t->nodes[id].r = NULL;
}

#endif
