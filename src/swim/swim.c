/*
 * swim.c: the SWIM membership state machine (see swim.h for the contract,
 * docs/swim.md for the protocol as built).
 *
 * Layout of the state:
 *   - members[]: every other member ever heard of, in any state (dead and
 *     left ones stay as tombstones so that stale `alive` rumours of an older
 *     incarnation cannot bring them back; the oldest tombstone makes room
 *     when the table is full). Lookups are linear: max_members is small
 *     (1024 by default) and a scan of a few hundred ids costs less than a
 *     datagram's system call.
 *   - order[]: the probe list, a shuffled copy of the probe-able ids walked
 *     round-robin and reshuffled at the end of each round (SWIM 4.3: bounds
 *     the time to first detection by 2n-1 periods). New members are inserted
 *     at a random position of the current round.
 *   - gossip[]: the dissemination buffer, one entry per member (a newer
 *     update about a member replaces the older one), bounded in entries and
 *     bytes; each packet carries the least-sent entries that fit, and an
 *     entry leaves after retransmit_mult * ceil(log10(n + 1)) sends.
 *   - probe: the one probe of the current protocol period.
 *   - ind[]: ping-reqs this member is serving for others.
 * Everything else is counters. Output (packets, events) accumulates until
 * swim_output_clear().
 */
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>

#include "swim/swim_int.h"

/* ------------------------------------------------------------------ config */

void swim_config_defaults(struct swim_config *c)
{
#define DEF(f, v)                                                                                  \
    if (!c->f)                                                                                     \
    c->f = (v)
    DEF(probe_interval_ms, 1000);
    DEF(probe_timeout_ms, 500);
    DEF(indirect_probes, 3);
    DEF(suspicion_mult, 4);
    DEF(suspicion_max_mult, 6);
    DEF(suspicion_confirmations, 3);
    DEF(retransmit_mult, 4);
    DEF(lhm_max, 8);
    DEF(max_members, 1024);
    DEF(gossip_max_entries, 256);
    DEF(gossip_max_bytes, 64 * 1024);
    DEF(max_packet_bytes, 1400);
    DEF(max_indirect, 64);
    DEF(max_out_packets, 1024);
    DEF(max_out_events, 1024);
#undef DEF
}

uint32_t swim_ceil_log10(uint32_t n)
{
    uint32_t k = 0;
    for (uint64_t p = 1; p < n; p *= 10)
        k++;
    return k;
}

/* Minimum suspicion timeout for a group of n live members (SWIM's fixed
 * timeout; Lifeguard's floor). */
static double susp_min_ms(const struct swim_config *c, uint32_t n)
{
    double scale = n > 10 ? log10((double)n) : 1.0;
    return (double)c->suspicion_mult * scale * (double)c->probe_interval_ms;
}

static double susp_max_ms(const struct swim_config *c, uint32_t n)
{
    double mn = susp_min_ms(c, n);
    return c->disable_lifeguard ? mn : mn * (double)c->suspicion_max_mult;
}

uint64_t swim_detection_bound_ms(const struct swim_config *cfg, uint32_t n)
{
    struct swim_config c = *cfg;
    swim_config_defaults(&c);
    if (n < 2)
        n = 2;
    uint64_t T = c.probe_interval_ms;
    uint64_t first = (2 * (uint64_t)(n - 1) + 1) * T;
    uint64_t spread = 2 * (uint64_t)c.retransmit_mult * NK_MAX(1u, swim_ceil_log10(n + 1)) * T;
    return first + spread + (uint64_t)ceil(susp_max_ms(&c, n));
}

static nk_status check_config(const struct swim_config *c)
{
    if (c->id == 0)
        return nk_status_make(NK_INVALID_ARGUMENT, "swim config: id must be non-zero");
    if (!c->addr || !c->addr[0] || strlen(c->addr) > SWIM_MAX_ADDR)
        return nk_status_make(NK_INVALID_ARGUMENT, "swim config: addr must be 1..%d bytes",
                              SWIM_MAX_ADDR);
    if (c->probe_timeout_ms >= c->probe_interval_ms)
        return nk_status_make(NK_INVALID_ARGUMENT,
                              "swim config: probe_timeout_ms %u must be below "
                              "probe_interval_ms %u",
                              c->probe_timeout_ms, c->probe_interval_ms);
    if (c->indirect_probes > 16)
        return nk_status_make(NK_INVALID_ARGUMENT, "swim config: indirect_probes %u over 16",
                              c->indirect_probes);
    if (c->suspicion_confirmations > SWIM_MAX_CONFIRM)
        return nk_status_make(NK_INVALID_ARGUMENT,
                              "swim config: suspicion_confirmations %u over %d",
                              c->suspicion_confirmations, SWIM_MAX_CONFIRM);
    if (c->lhm_max > 64)
        return nk_status_make(NK_INVALID_ARGUMENT, "swim config: lhm_max %u over 64", c->lhm_max);
    if (c->max_packet_bytes < SWIM_MIN_PACKET || c->max_packet_bytes > SWIM_MAX_PACKET)
        return nk_status_make(NK_INVALID_ARGUMENT,
                              "swim config: max_packet_bytes %u outside %d..%d",
                              c->max_packet_bytes, SWIM_MIN_PACKET, SWIM_MAX_PACKET);
    if (c->max_members < 2 || c->max_members > 65536)
        return nk_status_make(NK_INVALID_ARGUMENT, "swim config: max_members %u outside 2..65536",
                              c->max_members);
    if (c->gossip_max_bytes < swim_update_encoded_len(SWIM_MAX_ADDR))
        return nk_status_make(NK_INVALID_ARGUMENT,
                              "swim config: gossip_max_bytes %u cannot hold one update",
                              c->gossip_max_bytes);
    return NK_OK;
}

/* ----------------------------------------------------------------- helpers */

static uint64_t scaled(const struct swim *s, uint32_t ms)
{
    return (uint64_t)ms * (s->cfg.disable_lifeguard ? 1 : s->lhm + 1);
}

static void lhm_add(struct swim *s, int delta)
{
    if (s->cfg.disable_lifeguard)
        return;
    int v = (int)s->lhm + delta;
    s->lhm = (uint32_t)(v<0 ? 0 : v>(int) s->cfg.lhm_max ? (int)s->cfg.lhm_max : v);
}

static bool addr_ok(struct nk_slice a)
{
    return a.len >= 1 && a.len <= SWIM_MAX_ADDR && !memchr(a.data, 0, a.len);
}

/* ------------------------------------------------------------------ output */

static void emit(struct swim *s, const struct swim_mrec *m, uint8_t prev)
{
    if (s->n_out_ev == s->cap_out_ev) {
        if (s->cap_out_ev >= s->cfg.max_out_events) {
            s->ev_overflow = true;
            return;
        }
        s->cap_out_ev = NK_MIN(NK_MAX(16, s->cap_out_ev * 2), s->cfg.max_out_events);
        s->out_ev = nk_realloc(s->out_ev, s->cap_out_ev * sizeof *s->out_ev);
    }
    struct swim_event *e = &s->out_ev[s->n_out_ev++];
    e->id = m->id;
    e->state = m->state;
    e->prev_state = prev;
    e->incarnation = m->incarnation;
    memcpy(e->addr, m->addr, m->addr_len + 1);
    e->at_ms = s->now;
}

/* ----------------------------------------------------------------- members */

static void order_insert(struct swim *s, uint64_t id)
{
    if (s->n_order >= s->cfg.max_members)
        return; /* the next round's reshuffle includes it */
    size_t span = s->n_order - s->order_pos + 1;
    size_t at = s->order_pos + (size_t)nk_rng_uniform(&s->rng, span);
    memmove(&s->order[at + 1], &s->order[at], (s->n_order - at) * sizeof *s->order);
    s->order[at] = id;
    s->n_order++;
}

/* A new record, or NULL when the table is full of live members. */
static struct swim_mrec *member_new(struct swim *s, uint64_t id, struct nk_slice addr)
{
    if (s->n_members == s->cfg.max_members) {
        struct swim_mrec *old = NULL;
        for (size_t i = 0; i < s->n_members; i++) {
            struct swim_mrec *m = &s->members[i];
            if ((m->state == SWIM_DEAD || m->state == SWIM_LEFT) &&
                (!old || m->state_ms < old->state_ms))
                old = m;
        }
        if (!old)
            return NULL;
        *old = s->members[--s->n_members];
    }
    if (s->n_members == s->cap_members) {
        s->cap_members = NK_MIN(NK_MAX(8, s->cap_members * 2), (size_t)s->cfg.max_members);
        s->members = nk_realloc(s->members, s->cap_members * sizeof *s->members);
        s->tmp = nk_realloc(s->tmp, s->cap_members * sizeof *s->tmp);
    }
    struct swim_mrec *m = &s->members[s->n_members++];
    memset(m, 0, sizeof *m);
    m->id = id;
    m->addr_len = (uint8_t)addr.len;
    memcpy(m->addr, addr.data, addr.len);
    m->addr[addr.len] = 0;
    m->state_ms = s->now;
    return m;
}

static void set_addr(struct swim_mrec *m, struct nk_slice addr)
{
    m->addr_len = (uint8_t)addr.len;
    memcpy(m->addr, addr.data, addr.len);
    m->addr[addr.len] = 0;
}

static void set_state(struct swim *s, struct swim_mrec *m, uint8_t state, uint64_t inc)
{
    uint8_t prev = m->state;
    m->state = state;
    m->incarnation = inc;
    if (prev != state) {
        m->state_ms = s->now;
        if ((state == SWIM_ALIVE || state == SWIM_SUSPECT) &&
            (prev == SWIM_DEAD || prev == SWIM_LEFT || prev == SWIM_NONE))
            order_insert(s, m->id);
    }
    if (state != SWIM_SUSPECT)
        m->n_susp = 0;
}

static void start_suspicion(struct swim *s, struct swim_mrec *m, uint64_t from)
{
    m->susp_start_ms = s->now;
    m->susp_from[0] = from;
    m->n_susp = 1;
}

/* Rumours about this member itself: refute anything that says it is not
 * alive at its current incarnation (SWIM 4.2), or insist it left. */
static void update_self(struct swim *s, const struct swim_update *u)
{
    if (s->self_state == SWIM_LEFT) {
        if (u->state != SWIM_LEFT || u->incarnation < s->self_inc) {
            if (u->incarnation >= s->self_inc) {
                s->self_inc = u->incarnation + 1;
                swim_gossip_self(s);
            } else if (!swim_gossip_queued(s, s->cfg.id)) {
                swim_gossip_self(s);
            }
        }
        return;
    }
    if (u->state == SWIM_ALIVE) {
        if (u->incarnation > s->self_inc) { /* an alive from a previous life */
            s->self_inc = u->incarnation + 1;
            swim_gossip_self(s);
        }
        return;
    }
    if (u->incarnation < s->self_inc) {
        /* an old rumour still goes round: whoever sent it missed our
         * refutation (evicted from a full buffer, or lost); say it again */
        if (!swim_gossip_queued(s, s->cfg.id))
            swim_gossip_self(s);
        return;
    }
    s->self_inc = u->incarnation + 1;
    s->st.refutations++;
    s->refute_push = true;
    lhm_add(s, 1); /* Lifeguard: being suspected hints that we are the slow one */
    if (u->state != SWIM_SUSPECT)
        s->sync_wanted = true; /* we were out of the group: relearn it */
    swim_gossip_self(s);
}

/* Whether an update (state a at incarnation ai) replaces what is held
 * (state b at incarnation bi); the rules are listed at apply_update. */
static bool overrides(uint8_t a, uint64_t ai, uint8_t b, uint64_t bi)
{
    bool tomb = b == SWIM_DEAD || b == SWIM_LEFT;
    switch (a) {
    case SWIM_ALIVE:
        return ai > bi;
    case SWIM_SUSPECT:
        return b == SWIM_ALIVE ? ai >= bi : ai > bi;
    case SWIM_DEAD:
        return tomb ? ai > bi : ai >= bi;
    case SWIM_LEFT:
        return b == SWIM_LEFT ? ai > bi : ai >= bi;
    default:
        return false;
    }
}

/*
 * Applies one update (from a packet, or made locally). The precedence rules
 * of SWIM 4.2, with `left` added as the strongest at equal incarnation:
 *   alive(i)   overrides suspect(j), alive(j)        when i > j
 *   suspect(i) overrides alive(j) when i >= j, suspect(j) when i > j
 *   dead(i)    overrides alive(j), suspect(j)        when i >= j
 *   left(i)    overrides alive, suspect, dead(j)     when i >= j
 * A dead or left member comes back only with alive/suspect at i > j.
 */
static void apply_update(struct swim *s, const struct swim_update *u)
{
    if (u->id == s->cfg.id) {
        update_self(s, u);
        return;
    }
    if (!addr_ok(u->addr))
        return;
    struct swim_mrec *m = swim_find(s, u->id);
    if (!m) {
        m = member_new(s, u->id, u->addr);
        if (!m) {
            s->st.members_dropped++;
            return;
        }
        m->state = SWIM_NONE;
        set_state(s, m, u->state, u->incarnation);
        if (u->state == SWIM_SUSPECT)
            start_suspicion(s, m, u->from);
        emit(s, m, SWIM_NONE);
        if (u->state == SWIM_ALIVE || u->state == SWIM_SUSPECT)
            swim_gossip_member(s, m, u->from);
        return;
    }
    uint8_t prev = m->state;
    if (u->state == SWIM_SUSPECT && prev == SWIM_SUSPECT && u->incarnation == m->incarnation) {
        /* another member's independent confirmation (Lifeguard) */
        for (uint32_t i = 0; i < m->n_susp; i++)
            if (m->susp_from[i] == u->from)
                return;
        if (m->n_susp > s->cfg.suspicion_confirmations)
            return;
        m->susp_from[m->n_susp++] = u->from;
        swim_gossip_put(s, SWIM_SUSPECT, m->id, m->incarnation, u->from, m->addr, m->addr_len);
        return;
    }
    if (!overrides(u->state, u->incarnation, prev, m->incarnation)) {
        /* A stale rumour: its sender missed what we know. Spread our newer
         * state again (once: not while it is still queued), so that the
         * sender and whoever it told catch up; otherwise a member that
         * missed a `left` would, for instance, go on to declare it dead. */
        if (overrides(prev, m->incarnation, u->state, u->incarnation) &&
            !swim_gossip_queued(s, m->id))
            swim_gossip_member(s, m, prev == SWIM_SUSPECT ? m->susp_from[0] : s->cfg.id);
        return;
    }
    bool addr_changed = !nk_slice_eq(u->addr, nk_slice_make(m->addr, m->addr_len));
    if (u->state == SWIM_ALIVE && addr_changed)
        set_addr(m, u->addr); /* only a newer life of the member may move it */
    else
        addr_changed = false;
    set_state(s, m, u->state, u->incarnation);
    if (u->state == SWIM_SUSPECT)
        start_suspicion(s, m, u->from);
    if (prev != u->state || addr_changed)
        emit(s, m, prev);
    swim_gossip_put(s, u->state, m->id, m->incarnation, u->from, m->addr, m->addr_len);
}

/* ------------------------------------------------------------------- probes */

static uint64_t next_target(struct swim *s)
{
    for (int pass = 0; pass < 2; pass++) {
        while (s->order_pos < s->n_order) {
            uint64_t id = s->order[s->order_pos++];
            const struct swim_mrec *m = swim_find(s, id);
            if (m && (m->state == SWIM_ALIVE || m->state == SWIM_SUSPECT))
                return id;
        }
        /* end of a round: a fresh shuffle of the probe-able members */
        s->round_ended = true;
        s->n_order = 0;
        s->order_pos = 0;
        for (size_t i = 0; i < s->n_members; i++)
            if (s->members[i].state == SWIM_ALIVE || s->members[i].state == SWIM_SUSPECT)
                s->order[s->n_order++] = s->members[i].id;
        for (size_t i = s->n_order; i > 1; i--) {
            size_t j = (size_t)nk_rng_uniform(&s->rng, i);
            uint64_t t = s->order[i - 1];
            s->order[i - 1] = s->order[j];
            s->order[j] = t;
        }
    }
    return 0;
}

/*
 * Once per probe round, a ping to one random dead member (never a left one).
 * It carries the member's death (piggyback's buddy rule), so a member that
 * was only cut off (a healed partition, a resumed process, a joiner whose
 * seed was down) refutes and is alive again everywhere; without it two sides
 * that declared each other dead would never talk again. A member that is
 * really dead costs one datagram per round.
 */
static void ping_a_dead_member(struct swim *s)
{
    size_t n = 0;
    for (size_t i = 0; i < s->n_members; i++)
        if (s->members[i].state == SWIM_DEAD)
            s->tmp[n++] = i;
    if (!n)
        return;
    const struct swim_mrec *d = &s->members[s->tmp[nk_rng_uniform(&s->rng, n)]];
    struct swim_msg m;
    swim_msg_init(s, &m, SWIM_MSG_PING, ++s->seq, d->id);
    swim_send_to(s, d->id, d->addr, &m);
}

static void start_probe(struct swim *s)
{
    s->round_ended = false;
    uint64_t id = next_target(s);
    if (s->round_ended)
        ping_a_dead_member(s);
    s->next_probe = s->now + scaled(s, s->cfg.probe_interval_ms);
    if (!id)
        return;
    const struct swim_mrec *t = swim_find(s, id);
    struct swim_probe *p = &s->probe;
    *p = (struct swim_probe){.active = true, .target = id, .seq = ++s->seq};
    p->ack_deadline = s->now + scaled(s, s->cfg.probe_timeout_ms);
    p->end = s->next_probe;
    struct swim_msg m;
    swim_msg_init(s, &m, SWIM_MSG_PING, p->seq, id);
    swim_send_to(s, id, t->addr, &m);
}

/* No direct ack in time: ask k random alive members to ping the target. */
static void send_ping_reqs(struct swim *s)
{
    struct swim_probe *p = &s->probe;
    p->indirect_sent = true;
    const struct swim_mrec *t = swim_find(s, p->target);
    if (!t)
        return;
    size_t n = 0;
    for (size_t i = 0; i < s->n_members; i++)
        if (s->members[i].state == SWIM_ALIVE && s->members[i].id != p->target)
            s->tmp[n++] = i;
    uint32_t k = (uint32_t)NK_MIN((size_t)s->cfg.indirect_probes, n);
    for (uint32_t i = 0; i < k; i++) {
        size_t j = i + (size_t)nk_rng_uniform(&s->rng, n - i);
        size_t pick = s->tmp[j];
        s->tmp[j] = s->tmp[i];
        s->tmp[i] = pick;
    }
    /* copy the target's address: piggyback may not move members, but be safe */
    char taddr[SWIM_MAX_ADDR + 1];
    memcpy(taddr, t->addr, t->addr_len + 1);
    for (uint32_t i = 0; i < k; i++) {
        const struct swim_mrec *h = &s->members[s->tmp[i]];
        struct swim_msg m;
        swim_msg_init(s, &m, SWIM_MSG_PING_REQ, p->seq, p->target);
        m.subject_addr = nk_slice_str(taddr);
        swim_send_to(s, h->id, h->addr, &m);
    }
    if (!s->cfg.disable_lifeguard)
        p->nacks_expected = k;
}

static void finish_probe(struct swim *s)
{
    struct swim_probe *p = &s->probe;
    p->active = false;
    if (p->acked || s->self_state != SWIM_ALIVE)
        return;
    s->st.probes_failed++;
    /* Lifeguard: helpers that did not even nack point at our own network;
     * with nobody to ask, a failed probe counts against us once. */
    if (p->nacks_expected)
        lhm_add(s, (int)(p->nacks_expected - NK_MIN(p->nacks, p->nacks_expected)));
    else
        lhm_add(s, 1);
    struct swim_mrec *t = swim_find(s, p->target);
    if (!t || (t->state != SWIM_ALIVE && t->state != SWIM_SUSPECT))
        return;
    if (t->state == SWIM_ALIVE)
        s->st.suspicions++;
    struct swim_update u = {.state = SWIM_SUSPECT,
                            .id = t->id,
                            .incarnation = t->incarnation,
                            .from = s->cfg.id,
                            .addr = nk_slice_make(t->addr, t->addr_len)};
    apply_update(s, &u);
}

/* ------------------------------------------------------------- suspicions */

static uint64_t susp_deadline(const struct swim *s, const struct swim_mrec *m, uint32_t n)
{
    double mn = susp_min_ms(&s->cfg, n), mx = susp_max_ms(&s->cfg, n), t = mn;
    if (!s->cfg.disable_lifeguard) {
        /* Lifeguard: max at first, down to min after K confirmations, on a
         * log scale; K is capped by the members who could confirm at all. */
        uint32_t k = NK_MIN(s->cfg.suspicion_confirmations, n > 2 ? n - 2 : 0);
        uint32_t c = m->n_susp ? m->n_susp - 1 : 0;
        if (k == 0 || c >= k)
            t = mn;
        else
            t = mx - (mx - mn) * log((double)c + 1) / log((double)k + 1);
    }
    return m->susp_start_ms + (uint64_t)ceil(t);
}

static void expire_suspicions(struct swim *s)
{
    uint32_t n = swim_live_count(s);
    for (size_t i = 0; i < s->n_members; i++) {
        struct swim_mrec *m = &s->members[i];
        if (m->state != SWIM_SUSPECT || s->now < susp_deadline(s, m, n))
            continue;
        struct swim_update u = {.state = SWIM_DEAD,
                                .id = m->id,
                                .incarnation = m->incarnation,
                                .from = s->cfg.id,
                                .addr = nk_slice_make(m->addr, m->addr_len)};
        char a[SWIM_MAX_ADDR + 1];
        memcpy(a, m->addr, m->addr_len + 1);
        u.addr = nk_slice_make(a, m->addr_len);
        apply_update(s, &u);
    }
}

/* -------------------------------------------------------------- indirect */

static void tick_indirect(struct swim *s)
{
    for (size_t i = 0; i < s->n_ind;) {
        struct swim_indirect *e = &s->ind[i];
        if (!e->nack_sent && s->now >= e->nack_at) {
            e->nack_sent = true;
            if (!s->cfg.disable_lifeguard) {
                struct swim_msg m;
                swim_msg_init(s, &m, SWIM_MSG_NACK, e->origin_seq, e->target);
                char a[SWIM_MAX_ADDR + 1];
                memcpy(a, e->origin_addr, sizeof a);
                swim_send_to(s, e->origin, a, &m);
                e = &s->ind[i];
            }
        }
        if (s->now >= e->expire_at)
            s->ind[i] = s->ind[--s->n_ind];
        else
            i++;
    }
}

/* -------------------------------------------------------------------- API */

nk_status swim_new(const struct swim_config *cfg, uint64_t now_ms, struct swim **out)
{
    struct swim_config c = *cfg;
    swim_config_defaults(&c);
    NK_TRY(check_config(&c));
    struct swim *s = nk_calloc(1, sizeof *s);
    s->cfg = c;
    strcpy(s->self_addr, c.addr);
    s->cfg.addr = s->self_addr;
    s->self_inc = c.incarnation;
    s->self_state = SWIM_ALIVE;
    nk_rng_seed(&s->rng, c.seed ^ c.id);
    s->now = now_ms;
    s->order = nk_malloc(((size_t)c.max_members + 1) * sizeof *s->order);
    s->gossip = nk_malloc((size_t)c.gossip_max_entries * sizeof *s->gossip);
    s->ind = nk_malloc((size_t)NK_MAX(1u, c.max_indirect) * sizeof *s->ind);
    nk_arena_init(&s->out_arena);
    nk_buf_init(&s->scratch);
    s->sync_wanted = true;
    /* the first probe waits a random part of a period, so that members
     * started together do not probe in lockstep */
    s->next_probe = now_ms + nk_rng_uniform(&s->rng, c.probe_interval_ms);
    swim_gossip_self(s); /* announce ourselves to whoever we talk to first */
    *out = s;
    return NK_OK;
}

void swim_free(struct swim *s)
{
    if (!s)
        return;
    free(s->members);
    free(s->tmp);
    free(s->order);
    free(s->gossip);
    free(s->ind);
    free(s->out_pk);
    free(s->out_ev);
    nk_arena_free(&s->out_arena);
    nk_buf_free(&s->scratch);
    free(s);
}

static void advance_clock(struct swim *s, uint64_t now_ms)
{
    if (now_ms > s->now)
        s->now = now_ms; /* a clock that steps back is held, never followed */
}

nk_status swim_add_member(struct swim *s, uint64_t id, const char *addr, uint64_t now_ms)
{
    advance_clock(s, now_ms);
    if (id == 0 || id == s->cfg.id)
        return nk_status_make(NK_INVALID_ARGUMENT, "swim_add_member: id %" PRIu64 " %s", id,
                              id ? "is this member" : "is not a member id");
    struct nk_slice a = nk_slice_str(addr ? addr : "");
    if (!addr_ok(a))
        return nk_status_make(NK_INVALID_ARGUMENT,
                              "swim_add_member: address of member %" PRIu64 " must be 1..%d bytes",
                              id, SWIM_MAX_ADDR);
    if (swim_find(s, id))
        return NK_OK;
    struct swim_mrec *m = member_new(s, id, a);
    if (!m)
        return nk_status_make(NK_RESOURCE_EXHAUSTED,
                              "swim_add_member: %u members, none dead or left to forget",
                              s->cfg.max_members);
    m->state = SWIM_NONE;
    set_state(s, m, SWIM_ALIVE, 0);
    emit(s, m, SWIM_NONE);
    return NK_OK;
}

nk_status swim_remove_member(struct swim *s, uint64_t id)
{
    struct swim_mrec *m = swim_find(s, id);
    if (!m)
        return nk_status_make(NK_NOT_FOUND, "swim_remove_member: member %" PRIu64 " unknown", id);
    if (m->state != SWIM_DEAD && m->state != SWIM_LEFT)
        return nk_status_make(NK_FAILED_PRECONDITION,
                              "swim_remove_member: member %" PRIu64 " is %s, not dead or left", id,
                              swim_state_name(m->state));
    *m = s->members[--s->n_members];
    swim_gossip_drop(s, id);
    return NK_OK;
}

void swim_leave(struct swim *s, uint64_t now_ms)
{
    advance_clock(s, now_ms);
    if (s->self_state == SWIM_LEFT)
        return;
    s->self_state = SWIM_LEFT;
    s->self_inc++;
    s->probe.active = false;
    swim_gossip_self(s);
}

bool swim_leave_spread(const struct swim *s)
{
    if (s->self_state != SWIM_LEFT)
        return false;
    for (size_t i = 0; i < s->n_gossip; i++)
        if (s->gossip[i].id == s->cfg.id)
            return false;
    return true;
}

void swim_tick(struct swim *s, uint64_t now_ms)
{
    advance_clock(s, now_ms);
    /* A member that left keeps pinging (without suspecting anyone) until
     * its `left` has been sent its full count: once the others know, none
     * of them pings it any more, so its acks alone would not spread it. */
    if (s->self_state == SWIM_ALIVE || !swim_leave_spread(s)) {
        struct swim_probe *p = &s->probe;
        if (p->active && !p->acked && !p->indirect_sent && s->now >= p->ack_deadline &&
            s->self_state == SWIM_ALIVE)
            send_ping_reqs(s);
        if (p->active && s->now >= p->end)
            finish_probe(s);
        if (!p->active && s->now >= s->next_probe)
            start_probe(s);
    }
    tick_indirect(s);
    expire_suspicions(s);
}

uint64_t swim_next_deadline(const struct swim *s)
{
    uint64_t d = UINT64_MAX;
    const struct swim_probe *p = &s->probe;
    if (s->self_state == SWIM_ALIVE || !swim_leave_spread(s)) {
        if (!p->active)
            d = s->next_probe;
        else {
            d = p->end;
            if (!p->acked && !p->indirect_sent)
                d = NK_MIN(d, p->ack_deadline);
        }
    }
    for (size_t i = 0; i < s->n_ind; i++)
        d = NK_MIN(d, s->ind[i].nack_sent ? s->ind[i].expire_at : s->ind[i].nack_at);
    uint32_t n = swim_live_count(s);
    for (size_t i = 0; i < s->n_members; i++)
        if (s->members[i].state == SWIM_SUSPECT)
            d = NK_MIN(d, susp_deadline(s, &s->members[i], n));
    return d;
}

/*
 * A refutation races the suspicion timers of the whole group, and a member
 * that is being suspected is often the slow one, whose LHM has stretched its
 * period: waiting for its next probes to carry the news loses the race. So
 * a refutation is also pushed at once to `indirect_probes` random members,
 * in unsolicited ACKs (sequence 0, matching no probe, answered by nobody),
 * which then spread it as usual. At most one push per rumour that forced a
 * new incarnation.
 */
static void push_refutation(struct swim *s)
{
    s->refute_push = false;
    size_t n = 0;
    for (size_t i = 0; i < s->n_members; i++)
        if (s->members[i].state == SWIM_ALIVE || s->members[i].state == SWIM_SUSPECT)
            s->tmp[n++] = i;
    uint32_t k = (uint32_t)NK_MIN((size_t)NK_MAX(1u, s->cfg.indirect_probes), n);
    for (uint32_t i = 0; i < k; i++) {
        size_t j = i + (size_t)nk_rng_uniform(&s->rng, n - i);
        size_t pick = s->tmp[j];
        s->tmp[j] = s->tmp[i];
        s->tmp[i] = pick;
        const struct swim_mrec *r = &s->members[pick];
        struct swim_msg m;
        swim_msg_init(s, &m, SWIM_MSG_ACK, 0, s->cfg.id);
        swim_send_to(s, r->id, r->addr, &m);
    }
}

static void on_ping_req(struct swim *s, const struct swim_msg *in)
{
    if (in->subject == s->cfg.id)
        return;
    /* The origin still probes a member we hold dead or left: it missed the
     * news. Queue it so that our nack or ack carries it back. */
    const struct swim_mrec *t = swim_find(s, in->subject);
    if (t && (t->state == SWIM_DEAD || t->state == SWIM_LEFT) && !swim_gossip_queued(s, t->id))
        swim_gossip_member(s, t, s->cfg.id);
    if (t && t->state == SWIM_LEFT)
        return; /* it is gone for good: nothing to ping */
    /* Where to ping: a member we know at the address we know, so that a
     * forged ping-req cannot aim our pings at an arbitrary host; a member we
     * do not know yet (it joined a moment ago) at the address given, but
     * only on behalf of a member we know to be in the group. */
    const struct swim_mrec *o = swim_find(s, in->from);
    if (!t && (!o || (o->state != SWIM_ALIVE && o->state != SWIM_SUSPECT)))
        return;
    if (s->n_ind >= NK_MAX(1u, s->cfg.max_indirect)) {
        s->st.indirect_dropped++;
        return;
    }
    struct swim_indirect *e = &s->ind[s->n_ind++];
    e->origin = in->from;
    e->target = in->subject;
    e->origin_seq = in->seq;
    e->seq = ++s->seq;
    /* nack before the origin's ack timeout runs out (Lifeguard: 80%) */
    e->nack_at = s->now + s->cfg.probe_timeout_ms * 4 / 5;
    e->expire_at = s->now + s->cfg.probe_interval_ms;
    e->nack_sent = false;
    memcpy(e->origin_addr, in->from_addr.data, in->from_addr.len);
    e->origin_addr[in->from_addr.len] = 0;
    char taddr[SWIM_MAX_ADDR + 1];
    struct nk_slice ta = t ? nk_slice_make(t->addr, t->addr_len) : in->subject_addr;
    memcpy(taddr, ta.data, ta.len);
    taddr[ta.len] = 0;
    struct swim_msg m;
    swim_msg_init(s, &m, SWIM_MSG_PING, e->seq, in->subject);
    swim_send_to(s, in->subject, taddr, &m);
}

static void on_ack(struct swim *s, const struct swim_msg *in)
{
    struct swim_probe *p = &s->probe;
    if (p->active && !p->acked && in->seq == p->seq && in->subject == p->target) {
        p->acked = true;
        lhm_add(s, -1);
        return;
    }
    for (size_t i = 0; i < s->n_ind; i++) {
        struct swim_indirect *e = &s->ind[i];
        if (e->seq != in->seq || e->target != in->subject)
            continue;
        struct swim_msg m;
        swim_msg_init(s, &m, SWIM_MSG_ACK, e->origin_seq, e->target);
        char a[SWIM_MAX_ADDR + 1];
        memcpy(a, e->origin_addr, sizeof a);
        uint64_t origin = e->origin;
        s->ind[i] = s->ind[--s->n_ind];
        swim_send_to(s, origin, a, &m);
        return;
    }
}

nk_status swim_step(struct swim *s, uint64_t now_ms, const uint8_t *p, size_t n)
{
    advance_clock(s, now_ms);
    struct swim_msg in;
    nk_status st = swim_msg_decode(p, n, &in);
    if (!nk_ok(st)) {
        s->st.rejected++;
        return st;
    }
    if (in.cluster != s->cfg.cluster) {
        s->st.rejected++;
        return nk_status_make(NK_FAILED_PRECONDITION,
                              "swim packet from member %" PRIu64 " at %.*s: cluster tag %016" PRIx64
                              ", this cluster is %016" PRIx64,
                              in.from, (int)in.from_addr.len, (const char *)in.from_addr.data,
                              in.cluster, s->cfg.cluster);
    }
    if (in.from == s->cfg.id) {
        s->st.rejected++;
        return nk_status_make(NK_FAILED_PRECONDITION,
                              "swim packet claims to come from this member's id %" PRIu64
                              " (from %.*s)",
                              in.from, (int)in.from_addr.len, (const char *)in.from_addr.data);
    }
    if (in.type == SWIM_MSG_PING && in.subject != s->cfg.id) {
        /* meant for a former owner of this address */
        s->st.rejected++;
        return nk_status_make(NK_FAILED_PRECONDITION,
                              "swim ping for member %" PRIu64 " reached member %" PRIu64,
                              in.subject, s->cfg.id);
    }
    s->st.packets_in++;
    s->st.bytes_in += n;
    for (uint32_t i = 0; i < in.n_updates; i++)
        apply_update(s, &in.updates[i]);
    if (s->refute_push)
        push_refutation(s);

    char from_addr[SWIM_MAX_ADDR + 1];
    memcpy(from_addr, in.from_addr.data, in.from_addr.len);
    from_addr[in.from_addr.len] = 0;
    bool known = swim_find(s, in.from) != NULL;
    switch (in.type) {
    case SWIM_MSG_PING: {
        struct swim_msg m;
        swim_msg_init(s, &m, SWIM_MSG_ACK, in.seq, s->cfg.id);
        if (!known)
            m.flags |= SWIM_FLAG_SYNC_REQ; /* a stranger: ask who it knows */
        swim_send_to(s, in.from, from_addr, &m);
        break;
    }
    case SWIM_MSG_ACK:
        on_ack(s, &in);
        break;
    case SWIM_MSG_PING_REQ:
        on_ping_req(s, &in);
        break;
    case SWIM_MSG_NACK:
        if (s->probe.active && in.seq == s->probe.seq && in.subject == s->probe.target)
            s->probe.nacks++;
        break;
    case SWIM_MSG_SYNC:
        s->sync_wanted = false;
        break;
    default:
        break;
    }
    if ((in.flags & SWIM_FLAG_SYNC_REQ) && in.type != SWIM_MSG_SYNC)
        swim_send_sync(s, in.from, from_addr);
    return NK_OK;
}

void swim_output(const struct swim *s, struct swim_output *out)
{
    out->packets = s->out_pk;
    out->n_packets = s->n_out_pk;
    out->events = s->out_ev;
    out->n_events = s->n_out_ev;
    out->events_overflowed = s->ev_overflow;
}

void swim_output_clear(struct swim *s)
{
    s->n_out_pk = 0;
    s->n_out_ev = 0;
    s->ev_overflow = false;
    nk_arena_free(&s->out_arena);
    nk_arena_init(&s->out_arena);
}

size_t swim_member_count(const struct swim *s)
{
    return s->n_members;
}

static void info_of(const struct swim_mrec *m, struct swim_member_info *out)
{
    out->id = m->id;
    out->addr = m->addr;
    out->state = m->state;
    out->incarnation = m->incarnation;
    out->state_since_ms = m->state_ms;
}

void swim_member_at(const struct swim *s, size_t i, struct swim_member_info *out)
{
    NK_ASSERT(i < s->n_members);
    info_of(&s->members[i], out);
}

bool swim_member_get(const struct swim *s, uint64_t id, struct swim_member_info *out)
{
    if (id == s->cfg.id) {
        *out = (struct swim_member_info){id, s->self_addr, s->self_state, s->self_inc, 0};
        return true;
    }
    const struct swim_mrec *m = swim_find(s, id);
    if (!m)
        return false;
    info_of(m, out);
    return true;
}

uint64_t swim_incarnation(const struct swim *s)
{
    return s->self_inc;
}

void swim_stats(const struct swim *s, struct swim_stats *out)
{
    *out = s->st;
    out->gossip_entries = (uint32_t)s->n_gossip;
    out->gossip_bytes = (uint32_t)s->gossip_bytes;
    out->lhm = s->lhm;
}
