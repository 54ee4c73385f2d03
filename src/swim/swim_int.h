/*
 * swim_int.h: the state of a struct swim, shared by swim.c (membership,
 * probes, suspicions, the API) and gossip.c (dissemination and output).
 * Not part of the public API.
 */
#ifndef NK_SWIM_INT_H
#define NK_SWIM_INT_H

#include "swim/swim.h"

#define SWIM_MAX_CONFIRM 8
/* SYNC replies allowed per protocol period: a full member list costs a
 * few datagrams, and a flood of SYNC_REQ flags must not turn this member
 * into an amplifier. */
#define SWIM_SYNCS_PER_PERIOD 4

struct swim_mrec {
    uint64_t id;
    uint64_t incarnation;
    uint64_t state_ms;
    uint64_t susp_start_ms;
    uint64_t susp_from[SWIM_MAX_CONFIRM + 1]; /* [0] first suspecter, then confirmations */
    uint32_t n_susp;
    uint8_t state;
    uint8_t addr_len;
    char addr[SWIM_MAX_ADDR + 1];
};

struct swim_gossip {
    uint64_t id, incarnation, from;
    uint32_t transmits;
    uint32_t mark; /* == s->gossip_gen when already in the packet being built */
    uint8_t state;
    uint8_t addr_len;
    char addr[SWIM_MAX_ADDR + 1];
};

struct swim_indirect {
    uint64_t origin, target;
    uint32_t origin_seq, seq;
    uint64_t nack_at, expire_at;
    bool nack_sent;
    char origin_addr[SWIM_MAX_ADDR + 1];
};

struct swim_probe {
    bool active, acked, indirect_sent;
    uint64_t target;
    uint32_t seq;
    uint64_t ack_deadline, end;
    uint32_t nacks_expected, nacks;
};

struct swim {
    struct swim_config cfg;
    char self_addr[SWIM_MAX_ADDR + 1];
    uint64_t self_inc;
    uint8_t self_state; /* ALIVE or LEFT */
    struct nk_rng rng;
    uint64_t now;

    struct swim_mrec *members;
    size_t n_members, cap_members;
    uint64_t *order;
    size_t n_order, order_pos;
    size_t *tmp; /* scratch for helper selection, cap_members long */

    struct swim_gossip *gossip;
    size_t n_gossip;
    size_t gossip_bytes;
    uint32_t gossip_gen;

    struct swim_indirect *ind;
    size_t n_ind;

    struct swim_probe probe;
    uint64_t next_probe;
    uint32_t seq;
    uint32_t lhm;
    bool round_ended;
    bool refute_push; /* a refutation to push out after this packet */
    bool sync_wanted;
    uint64_t sync_window;
    uint32_t syncs_in_window;

    struct nk_arena out_arena;
    struct swim_packet *out_pk;
    size_t n_out_pk, cap_out_pk;
    struct swim_event *out_ev;
    size_t n_out_ev, cap_out_ev;
    bool ev_overflow;
    struct nk_buf scratch;

    struct swim_stats st;
};

/* gossip.c */
uint32_t swim_live_count(const struct swim *s);
struct swim_mrec *swim_find(const struct swim *s, uint64_t id);
/* Queues an update for dissemination (replacing any about the same member). */
void swim_gossip_put(struct swim *s, uint8_t state, uint64_t id, uint64_t inc, uint64_t from,
                     const char *addr, size_t addr_len);
bool swim_gossip_queued(const struct swim *s, uint64_t id);
void swim_gossip_member(struct swim *s, const struct swim_mrec *m, uint64_t from);
void swim_gossip_self(struct swim *s);
void swim_gossip_drop(struct swim *s, uint64_t id);
/* Fills the header of an outgoing packet (SYNC_REQ while a sync is wanted). */
void swim_msg_init(struct swim *s, struct swim_msg *m, uint8_t type, uint32_t seq,
                   uint64_t subject);
/* Puts m, with piggy-backed updates, in the output for member `to` at addr. */
void swim_send_to(struct swim *s, uint64_t to, const char *addr, struct swim_msg *m);
/* Sends this member's whole table to `to` in SYNC packets (rate-limited). */
void swim_send_sync(struct swim *s, uint64_t to, const char *addr);

/* swim.c */
uint32_t swim_ceil_log10(uint32_t n);

#endif /* NK_SWIM_INT_H */
