/*
 * gossip.c: SWIM dissemination (see swim.h, docs/swim.md): the bounded
 * gossip buffer, the choice of updates piggy-backed on each packet, the
 * full member list sent in SYNC packets, and the packets put in the output.
 *
 * The buffer holds at most one entry per member (a newer update replaces
 * the older one) within gossip_max_entries and gossip_max_bytes; a full
 * buffer evicts its most-sent entry. Each packet carries the least-sent
 * entries that fit in max_packet_bytes, and an entry leaves after
 * retransmit_mult * ceil(log10(n + 1)) sends.
 */
#include <stdlib.h>

#include "swim/swim_int.h"

uint32_t swim_live_count(const struct swim *s)
{
    uint32_t n = s->self_state == SWIM_ALIVE ? 1 : 0;
    for (size_t i = 0; i < s->n_members; i++)
        n += s->members[i].state == SWIM_ALIVE || s->members[i].state == SWIM_SUSPECT;
    return n;
}

static uint32_t retransmit_limit(const struct swim *s)
{
    return s->cfg.retransmit_mult * NK_MAX(1u, swim_ceil_log10(swim_live_count(s) + 1));
}

struct swim_mrec *swim_find(const struct swim *s, uint64_t id)
{
    for (size_t i = 0; i < s->n_members; i++)
        if (s->members[i].id == id)
            return &s->members[i];
    return NULL;
}

static bool out_has_room(struct swim *s)
{
    if (s->n_out_pk < s->cap_out_pk)
        return true;
    if (s->cap_out_pk >= s->cfg.max_out_packets) {
        s->st.out_dropped++;
        return false;
    }
    s->cap_out_pk = NK_MIN(NK_MAX(16, s->cap_out_pk * 2), s->cfg.max_out_packets);
    s->out_pk = nk_realloc(s->out_pk, s->cap_out_pk * sizeof *s->out_pk);
    return true;
}

static void emit_packet(struct swim *s, uint64_t to, const char *addr, const struct swim_msg *m)
{
    nk_buf_clear(&s->scratch);
    swim_msg_encode(m, &s->scratch);
    NK_ASSERT(s->scratch.len <= s->cfg.max_packet_bytes);
    size_t alen = strlen(addr);
    char *a = nk_arena_alloc(&s->out_arena, alen + 1);
    memcpy(a, addr, alen + 1);
    uint8_t *d = nk_arena_alloc(&s->out_arena, s->scratch.len);
    memcpy(d, s->scratch.data, s->scratch.len);
    s->out_pk[s->n_out_pk++] = (struct swim_packet){to, a, d, s->scratch.len};
    s->st.packets_out++;
    s->st.bytes_out += s->scratch.len;
    switch (m->type) {
    case SWIM_MSG_PING:
        s->st.pings++;
        break;
    case SWIM_MSG_ACK:
        s->st.acks++;
        break;
    case SWIM_MSG_PING_REQ:
        s->st.ping_reqs++;
        break;
    case SWIM_MSG_NACK:
        s->st.nacks++;
        break;
    default:
        s->st.syncs++;
        break;
    }
}

/* ------------------------------------------------------------------ gossip */

static size_t gossip_len(const struct swim_gossip *g)
{
    return swim_update_encoded_len(g->addr_len);
}

static void gossip_remove(struct swim *s, size_t i)
{
    s->gossip_bytes -= gossip_len(&s->gossip[i]);
    s->gossip[i] = s->gossip[--s->n_gossip];
}

/* Queues an update for dissemination; it replaces any older one about the
 * same member. A full buffer evicts the most-sent entry (the one the group
 * most likely already knows). */
void swim_gossip_put(struct swim *s, uint8_t state, uint64_t id, uint64_t inc, uint64_t from,
                     const char *addr, size_t addr_len)
{
    for (size_t i = 0; i < s->n_gossip; i++)
        if (s->gossip[i].id == id) {
            gossip_remove(s, i);
            break;
        }
    size_t need = swim_update_encoded_len(addr_len);
    while (s->n_gossip > 0 && (s->n_gossip >= s->cfg.gossip_max_entries ||
                               s->gossip_bytes + need > s->cfg.gossip_max_bytes)) {
        size_t worst = 0;
        for (size_t i = 1; i < s->n_gossip; i++)
            if (s->gossip[i].transmits > s->gossip[worst].transmits)
                worst = i;
        gossip_remove(s, worst);
        s->st.gossip_dropped++;
    }
    struct swim_gossip *g = &s->gossip[s->n_gossip++];
    g->id = id;
    g->incarnation = inc;
    g->from = from;
    g->state = state;
    g->transmits = 0;
    g->mark = 0;
    g->addr_len = (uint8_t)addr_len;
    memcpy(g->addr, addr, addr_len);
    g->addr[addr_len] = 0;
    s->gossip_bytes += need;
    s->st.gossip_max_entries_seen = NK_MAX(s->st.gossip_max_entries_seen, (uint32_t)s->n_gossip);
    s->st.gossip_max_bytes_seen = NK_MAX(s->st.gossip_max_bytes_seen, (uint32_t)s->gossip_bytes);
}

bool swim_gossip_queued(const struct swim *s, uint64_t id)
{
    for (size_t i = 0; i < s->n_gossip; i++)
        if (s->gossip[i].id == id)
            return true;
    return false;
}

void swim_gossip_member(struct swim *s, const struct swim_mrec *m, uint64_t from)
{
    swim_gossip_put(s, m->state, m->id, m->incarnation, from, m->addr, m->addr_len);
}

void swim_gossip_self(struct swim *s)
{
    swim_gossip_put(s, s->self_state, s->cfg.id, s->self_inc, s->cfg.id, s->self_addr,
                    strlen(s->self_addr));
}

static void add_update(struct swim_msg *m, uint8_t state, uint64_t id, uint64_t inc, uint64_t from,
                       const char *addr, size_t addr_len)
{
    struct swim_update *u = &m->updates[m->n_updates++];
    u->state = state;
    u->id = id;
    u->incarnation = inc;
    u->from = from;
    u->addr = nk_slice_make(addr, addr_len);
}

/*
 * Fills m's updates for a packet to `to`: first, when we hold `to` suspect
 * or dead, that news itself (Lifeguard's "buddy system": the member hears it
 * at once and can refute, instead of waiting for the rumour to reach it),
 * then the least-sent gossip entries that fit in the datagram.
 */
static void piggyback(struct swim *s, struct swim_msg *m, uint64_t to)
{
    size_t budget =
        s->cfg.max_packet_bytes - swim_msg_header_len(m->from_addr.len, m->subject_addr.len);
    const struct swim_mrec *rm = swim_find(s, to);
    if (rm && (rm->state == SWIM_SUSPECT || rm->state == SWIM_DEAD)) {
        add_update(m, rm->state, rm->id, rm->incarnation,
                   rm->state == SWIM_SUSPECT ? rm->susp_from[0] : s->cfg.id, rm->addr,
                   rm->addr_len);
        budget -= swim_update_encoded_len(rm->addr_len);
    }
    s->gossip_gen++;
    while (m->n_updates < SWIM_MAX_UPDATES) {
        struct swim_gossip *best = NULL;
        for (size_t i = 0; i < s->n_gossip; i++) {
            struct swim_gossip *g = &s->gossip[i];
            if (g->mark == s->gossip_gen || gossip_len(g) > budget)
                continue;
            if (rm && m->n_updates && g->id == rm->id && m->updates[0].id == rm->id)
                continue;
            if (!best || g->transmits < best->transmits)
                best = g;
        }
        if (!best)
            break;
        best->mark = s->gossip_gen;
        best->transmits++;
        budget -= gossip_len(best);
        add_update(m, best->state, best->id, best->incarnation, best->from, best->addr,
                   best->addr_len);
    }
    /* The slices above point into gossip entries: the caller encodes the
     * packet before gossip_retire() removes any. */
}

static void gossip_retire(struct swim *s)
{
    uint32_t limit = retransmit_limit(s);
    for (size_t i = 0; i < s->n_gossip;)
        if (s->gossip[i].transmits >= limit)
            gossip_remove(s, i);
        else
            i++;
}

void swim_msg_init(struct swim *s, struct swim_msg *m, uint8_t type, uint32_t seq, uint64_t subject)
{
    m->type = type;
    m->flags = s->sync_wanted ? SWIM_FLAG_SYNC_REQ : 0;
    m->cluster = s->cfg.cluster;
    m->from = s->cfg.id;
    m->seq = seq;
    m->subject = subject;
    m->from_addr = nk_slice_str(s->self_addr);
    m->subject_addr = nk_slice_make(NULL, 0);
    m->n_updates = 0;
}

/* Sends m (header filled by msg_init) to a member, with piggy-backed gossip. */
void swim_send_to(struct swim *s, uint64_t to, const char *addr, struct swim_msg *m)
{
    if (!out_has_room(s))
        return;
    piggyback(s, m, to);
    emit_packet(s, to, addr, m);
    gossip_retire(s);
}

/* ------------------------------------------------------------------- sync */

void swim_send_sync(struct swim *s, uint64_t to, const char *addr)
{
    uint64_t period = s->cfg.probe_interval_ms;
    if (s->now >= s->sync_window + period) {
        s->sync_window = s->now;
        s->syncs_in_window = 0;
    }
    if (s->syncs_in_window >= SWIM_SYNCS_PER_PERIOD)
        return;
    s->syncs_in_window++;
    size_t hdr = swim_msg_header_len(strlen(s->self_addr), 0);
    struct swim_msg m;
    swim_msg_init(s, &m, SWIM_MSG_SYNC, 0, 0);
    m.flags = 0;
    size_t used = hdr;
    add_update(&m, s->self_state, s->cfg.id, s->self_inc, s->cfg.id, s->self_addr,
               strlen(s->self_addr));
    used += swim_update_encoded_len(strlen(s->self_addr));
    for (size_t i = 0; i <= s->n_members; i++) {
        const struct swim_mrec *mm = i < s->n_members ? &s->members[i] : NULL;
        size_t need = mm ? swim_update_encoded_len(mm->addr_len) : 0;
        if (!mm || m.n_updates == SWIM_MAX_UPDATES || used + need > s->cfg.max_packet_bytes) {
            if (m.n_updates && out_has_room(s))
                emit_packet(s, to, addr, &m);
            m.n_updates = 0;
            used = hdr;
        }
        if (!mm)
            break;
        add_update(&m, mm->state, mm->id, mm->incarnation,
                   mm->state == SWIM_SUSPECT ? mm->susp_from[0] : s->cfg.id, mm->addr,
                   mm->addr_len);
        used += need;
    }
}

void swim_gossip_drop(struct swim *s, uint64_t id)
{
    for (size_t i = 0; i < s->n_gossip; i++)
        if (s->gossip[i].id == id) {
            gossip_remove(s, i);
            return;
        }
}
