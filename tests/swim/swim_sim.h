/*
 * swim_sim.h: a deterministic network for SWIM members (tests/swim and
 * bench/swim). Header-only so the benchmark can use the same simulator.
 *
 * The clock advances in steps of `step_ms`; each step delivers every packet
 * due by then (in send order), then ticks every running member, and routes
 * whatever they output. Everything random (loss, delay jitter) comes from
 * one seeded PRNG, and the members' own PRNGs are seeded from it, so a run is
 * a function of its seed.
 *
 * Faults: packet loss (per mille), delay (uniform in [delay_min, delay_max]),
 * partitions (members in different groups cannot talk), a paused member
 * (SIGSTOP: not ticked, receives nothing, sends nothing; what was sent to it
 * is lost), a slow member (every packet to or from it takes `slow_ms` more).
 *
 * The sim records, for every (observer, subject) pair, the first time the
 * observer held the subject suspect and dead, and counts `false_dead` and
 * `false_suspect`: every time a member was marked dead (suspect) by another
 * while the test had not failed it.
 */
#ifndef NK_SWIM_SIM_H
#define NK_SWIM_SIM_H

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "swim/swim.h"

struct sim_pkt {
    uint64_t deliver_at;
    uint64_t seq; /* send order, for stable delivery */
    uint32_t from, to;
    size_t len;
    uint8_t *data;
};

struct sim_node {
    struct swim *s;
    uint64_t id;
    char addr[32];
    bool running; /* created and not stopped */
    bool paused;  /* SIGSTOP */
    bool failed;  /* the test made it fail (paused/stopped on purpose) */
    uint32_t slow_ms;
    uint32_t group; /* partition group */
};

struct sim {
    struct nk_rng rng;
    uint64_t now;
    uint32_t step_ms;
    uint32_t n, cap;
    struct sim_node *nodes;
    struct sim_pkt *q;
    size_t nq, capq;
    uint64_t pkt_seq;
    bool tick_at_deadline; /* tick a member only once swim_next_deadline() is due,
                              as a node driving it from a timer would */
    uint32_t loss_permille;
    uint32_t delay_min, delay_max;
    struct swim_config base;
    /* observations, cap x cap, [observer * cap + subject] */
    uint8_t *state;
    uint64_t *suspect_at, *dead_at;
    uint64_t false_dead, false_suspect;
    uint64_t packets, bytes, dropped;
};

static inline size_t sim_ix(const struct sim *m, uint32_t o, uint32_t j)
{
    return (size_t)o * m->cap + j;
}

static inline void sim_init(struct sim *m, uint32_t cap, uint64_t seed,
                            const struct swim_config *base)
{
    memset(m, 0, sizeof *m);
    nk_rng_seed(&m->rng, seed);
    m->now = 1000;
    m->step_ms = 5;
    m->cap = cap;
    m->nodes = nk_calloc(cap, sizeof *m->nodes);
    m->state = nk_calloc((size_t)cap * cap, 1);
    m->suspect_at = nk_calloc((size_t)cap * cap, sizeof(uint64_t));
    m->dead_at = nk_calloc((size_t)cap * cap, sizeof(uint64_t));
    m->delay_min = 1;
    m->delay_max = 5;
    m->base = *base;
}

/* Starts member i (id i+1) knowing the members listed in `knows` (indexes). */
static inline void sim_start(struct sim *m, uint32_t i, const uint32_t *knows, size_t nk)
{
    NK_ASSERT(i < m->cap);
    struct sim_node *nd = &m->nodes[i];
    nd->id = i + 1;
    snprintf(nd->addr, sizeof nd->addr, "10.0.%u.%u:9101", (i + 1) / 256, (i + 1) % 256);
    struct swim_config c = m->base;
    c.id = nd->id;
    c.addr = nd->addr;
    c.seed = nk_rng_next(&m->rng);
    nk_status s = swim_new(&c, m->now, &nd->s);
    NK_ASSERT(nk_ok(s));
    for (size_t k = 0; k < nk; k++) {
        if (knows[k] == i)
            continue;
        char a[32];
        snprintf(a, sizeof a, "10.0.%u.%u:9101", (knows[k] + 1) / 256, (knows[k] + 1) % 256);
        s = swim_add_member(nd->s, knows[k] + 1, a, m->now);
        NK_ASSERT(nk_ok(s));
    }
    nd->running = true;
    if (i >= m->n)
        m->n = i + 1;
}

/* n members, each knowing all the others (a cluster file lists everyone). */
static inline void sim_start_full(struct sim *m, uint32_t n)
{
    uint32_t *all = nk_malloc(n * sizeof *all);
    for (uint32_t i = 0; i < n; i++)
        all[i] = i;
    for (uint32_t i = 0; i < n; i++)
        sim_start(m, i, all, n);
    free(all);
}

static inline void sim_free(struct sim *m)
{
    for (uint32_t i = 0; i < m->n; i++)
        swim_free(m->nodes[i].s);
    for (size_t i = 0; i < m->nq; i++)
        free(m->q[i].data);
    free(m->q);
    free(m->nodes);
    free(m->state);
    free(m->suspect_at);
    free(m->dead_at);
}

static inline bool sim_up(const struct sim *m, uint32_t i)
{
    return m->nodes[i].running && !m->nodes[i].paused;
}

static inline void sim_collect(struct sim *m, uint32_t i)
{
    struct sim_node *nd = &m->nodes[i];
    struct swim_output out;
    swim_output(nd->s, &out);
    for (size_t k = 0; k < out.n_events; k++) {
        const struct swim_event *e = &out.events[k];
        if (e->id == 0 || e->id > m->cap)
            continue;
        uint32_t j = (uint32_t)(e->id - 1);
        size_t x = sim_ix(m, i, j);
        m->state[x] = e->state;
        if (getenv("SIM_TRACE") && (uint64_t)atoi(getenv("SIM_TRACE")) == e->id)
            fprintf(stderr,
                    "sim t=%" PRIu64 ": member %u: member %" PRIu64 " %s -> %s inc %" PRIu64 "\n",
                    m->now, i + 1, e->id, swim_state_name(e->prev_state), swim_state_name(e->state),
                    e->incarnation);
        if (e->state == SWIM_SUSPECT) {
            if (!m->suspect_at[x])
                m->suspect_at[x] = m->now;
            if (!m->nodes[j].failed)
                m->false_suspect++;
        }
        if (e->state == SWIM_DEAD) {
            if (!m->dead_at[x])
                m->dead_at[x] = m->now;
            if (!m->nodes[j].failed) {
                m->false_dead++;
                if (getenv("SIM_VERBOSE"))
                    fprintf(stderr,
                            "sim t=%" PRIu64 ": member %u holds member %u dead (inc %" PRIu64
                            ") though it was not failed\n",
                            m->now, i + 1, j + 1, e->incarnation);
            }
        }
    }
    for (size_t k = 0; k < out.n_packets; k++) {
        const struct swim_packet *p = &out.packets[k];
        m->packets++;
        m->bytes += p->len;
        NK_ASSERT(p->to >= 1 && p->to <= m->cap);
        uint32_t to = (uint32_t)(p->to - 1);
        /* the address is how a real node routes: it must be the member's */
        char want[32];
        snprintf(want, sizeof want, "10.0.%u.%u:9101", (to + 1) / 256, (to + 1) % 256);
        NK_ASSERT(strcmp(want, p->addr) == 0);
        if (m->nodes[to].group != nd->group ||
            (m->loss_permille && nk_rng_uniform(&m->rng, 1000) < m->loss_permille)) {
            m->dropped++;
            continue;
        }
        uint64_t d = m->delay_min;
        if (m->delay_max > m->delay_min)
            d += nk_rng_uniform(&m->rng, m->delay_max - m->delay_min + 1);
        d += nd->slow_ms + m->nodes[to].slow_ms;
        if (m->nq == m->capq) {
            m->capq = m->capq ? 2 * m->capq : 256;
            m->q = nk_realloc(m->q, m->capq * sizeof *m->q);
        }
        m->q[m->nq++] =
            (struct sim_pkt){m->now + d, m->pkt_seq++, i, to, p->len, nk_memdup(p->data, p->len)};
    }
    swim_output_clear(nd->s);
}

static int sim_pkt_cmp(const void *a, const void *b)
{
    const struct sim_pkt *x = a, *y = b;
    if (x->deliver_at != y->deliver_at)
        return x->deliver_at < y->deliver_at ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static inline void sim_step(struct sim *m)
{
    m->now += m->step_ms;
    /* deliver what is due, in (time, send order) */
    size_t due = 0;
    for (size_t k = 0; k < m->nq; k++)
        if (m->q[k].deliver_at <= m->now) {
            struct sim_pkt t = m->q[due];
            m->q[due] = m->q[k];
            m->q[k] = t;
            due++;
        }
    struct sim_pkt *batch = NULL;
    if (due) {
        batch = nk_memdup(m->q, due * sizeof *batch);
        memmove(m->q, m->q + due, (m->nq - due) * sizeof *m->q);
        m->nq -= due;
        qsort(batch, due, sizeof *batch, sim_pkt_cmp);
    }
    for (size_t k = 0; k < due; k++) {
        struct sim_pkt *p = &batch[k];
        if (sim_up(m, p->to) && m->nodes[p->to].group == m->nodes[p->from].group) {
            nk_status s = swim_step(m->nodes[p->to].s, m->now, p->data, p->len);
            if (!nk_ok(s)) {
                fprintf(stderr, "sim: member %u refused a packet: %s\n", p->to + 1,
                        nk_status_msg(s));
                nk_status_free(&s);
                abort();
            }
            sim_collect(m, p->to);
        } else {
            m->dropped++;
        }
        free(p->data);
    }
    free(batch);
    for (uint32_t i = 0; i < m->n; i++)
        if (sim_up(m, i) && (!m->tick_at_deadline || m->now >= swim_next_deadline(m->nodes[i].s))) {
            swim_tick(m->nodes[i].s, m->now);
            sim_collect(m, i);
        }
}

static inline void sim_run_for(struct sim *m, uint64_t ms)
{
    uint64_t end = m->now + ms;
    while (m->now < end)
        sim_step(m);
}

/* Runs until pred(m, arg) holds or `max_ms` passed; returns whether it held. */
static inline bool sim_run_until(struct sim *m, uint64_t max_ms,
                                 bool (*pred)(const struct sim *, void *), void *arg)
{
    uint64_t end = m->now + max_ms;
    while (m->now < end) {
        if (pred(m, arg))
            return true;
        sim_step(m);
    }
    return pred(m, arg);
}

/* What observer o holds about member j (via the member table). */
static inline uint8_t sim_view(const struct sim *m, uint32_t o, uint32_t j)
{
    struct swim_member_info mi;
    if (!swim_member_get(m->nodes[o].s, j + 1, &mi))
        return SWIM_NONE;
    return mi.state;
}

/* Every running, unpaused member other than j holds j in `state`. */
static inline bool sim_all_hold(const struct sim *m, uint32_t j, uint8_t state)
{
    for (uint32_t o = 0; o < m->n; o++)
        if (o != j && sim_up(m, o) && sim_view(m, o, j) != state)
            return false;
    return true;
}

/* Every up member holds every other up member alive. */
static inline bool sim_converged(const struct sim *m, void *arg)
{
    (void)arg;
    for (uint32_t j = 0; j < m->n; j++)
        if (sim_up(m, j) && !sim_all_hold(m, j, SWIM_ALIVE))
            return false;
    return true;
}

/* Pause (SIGSTOP) member i; `failed` marks it as a failure the test expects
 * to be detected (its being declared dead is then no false positive). */
static inline void sim_pause(struct sim *m, uint32_t i, bool failed)
{
    m->nodes[i].paused = true;
    m->nodes[i].failed = failed;
}

static inline void sim_resume(struct sim *m, uint32_t i)
{
    m->nodes[i].paused = false;
    m->nodes[i].failed = false;
}

#endif /* NK_SWIM_SIM_H */
