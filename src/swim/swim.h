/*
 * swim: cluster membership and failure detection (SWIM, Das, Gupta and
 * Motivala, DSN 2002, with the Lifeguard extensions of Dadgar et al., 2018)
 * as a pure state machine: no I/O, no threads, no clock reads. The only
 * randomness is a PRNG seeded from the config, so a run is a function of the
 * config, the times passed in and the packets stepped in.
 *
 * The caller (the node layer) drives one `struct swim`:
 *   - swim_tick(s, now_ms) on its own monotonic clock, at least every
 *     swim_next_deadline() (ticking more often is harmless);
 *   - swim_step(s, now_ms, bytes, n) for every UDP datagram that arrives on
 *     the peer port (untrusted bytes: malformed ones are rejected with
 *     NK_DATA_LOSS naming the problem, other clusters' with
 *     NK_FAILED_PRECONDITION; neither changes any state);
 *   - swim_add_member / swim_remove_member / swim_leave for the operator's
 *     and the cluster file's decisions;
 *   - swim_output() after any of the above: datagrams to send (each with its
 *     destination member id and address) and membership events (a member
 *     appeared, or its state changed), then swim_output_clear().
 * Packets may be lost, duplicated, reordered or delayed: SWIM tolerates it.
 *
 * What it does: every protocol period (probe_interval_ms) this member pings
 * one other member, chosen round-robin over a list shuffled once per round;
 * without an ack within probe_timeout_ms it asks `indirect_probes` others to
 * ping the target for it (ping-req); without any ack by the end of the period
 * the target becomes `suspect`. A suspect that does not refute (by gossiping
 * `alive` with a higher incarnation number) within the suspicion timeout
 * becomes `dead`. A member that leaves on purpose is `left`, never `dead`.
 * State changes travel piggy-backed on every packet, from a bounded gossip
 * buffer, each about retransmit_mult * log10(n) times.
 * Lifeguard (on unless disable_lifeguard): a local health multiplier (LHM)
 * stretches this member's period and timeouts while its own probes fail (it
 * is more likely the slow one), nacks tell a prober that its helpers are
 * reachable, and a suspicion's timeout starts long and shrinks as other
 * members independently confirm it. docs/swim.md explains the protocol and
 * its parameters; docs/format/swim.md the packets byte by byte.
 *
 * Memory: a swim copies everything given to it (addresses, packets). What
 * swim_output() hands out belongs to the swim and stays valid until
 * swim_output_clear() or swim_free(). Every table is bounded: members
 * (max_members), gossip buffer (entries and bytes), indirect probes in
 * flight, packets and events per output (the excess is dropped and counted;
 * a dropped event sets events_overflowed, after which the caller re-reads
 * the member list).
 *
 * Thread-safety: none; one swim belongs to one thread at a time. The codec
 * functions (swim_msg_encode / swim_msg_decode) are pure and thread-safe.
 */
#ifndef NK_SWIM_H
#define NK_SWIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/util.h"

/* ------------------------------------------------------------------ states */

enum swim_state {
    SWIM_NONE = 0, /* not a member (only as an event's previous state) */
    SWIM_ALIVE = 1,
    SWIM_SUSPECT = 2,
    SWIM_DEAD = 3,
    SWIM_LEFT = 4,
};
const char *swim_state_name(uint8_t state);

/* ------------------------------------------------------------------- codec */

#define SWIM_WIRE_VERSION 1
#define SWIM_MAX_ADDR     255   /* bytes of one address ("host:port") */
#define SWIM_MAX_UPDATES  64    /* piggy-backed updates in one packet */
#define SWIM_MAX_PACKET   65507 /* largest UDP payload over IPv4 */
#define SWIM_MIN_PACKET   256   /* smallest max_packet_bytes accepted */

enum swim_msg_type {
    SWIM_MSG_PING = 1,     /* subject: the member pinged (must be the receiver) */
    SWIM_MSG_ACK = 2,      /* subject: the member that answered; seq echoed */
    SWIM_MSG_PING_REQ = 3, /* subject + subject_addr: ping it for me, seq = mine */
    SWIM_MSG_NACK = 4,     /* subject: the target of my ping-req gave no ack yet */
    SWIM_MSG_SYNC = 5,     /* a chunk of the sender's member list, in updates */
};
#define SWIM_MSG_TYPE_MAX 5

/* Header flag: the sender asks the receiver for its whole member list
 * (SYNC packets). Set by a new member and towards senders it does not know. */
#define SWIM_FLAG_SYNC_REQ 0x01

/* One piggy-backed membership update: "member `id` at `addr` is in `state`
 * at incarnation `incarnation`", declared by member `from`. */
struct swim_update {
    uint8_t state; /* enum swim_state, not NONE */
    uint64_t id;
    uint64_t incarnation;
    uint64_t from;
    struct nk_slice addr; /* 1..SWIM_MAX_ADDR bytes */
};

struct swim_msg {
    uint8_t type;  /* enum swim_msg_type */
    uint8_t flags; /* SWIM_FLAG_* */
    uint64_t cluster;
    uint64_t from; /* sender id, non-zero */
    uint32_t seq;
    uint64_t subject;             /* see enum swim_msg_type; 0 on SYNC */
    struct nk_slice from_addr;    /* 1..SWIM_MAX_ADDR bytes */
    struct nk_slice subject_addr; /* PING_REQ only (1..255 bytes); empty elsewhere */
    uint32_t n_updates;
    struct swim_update updates[SWIM_MAX_UPDATES];
};

/* Bytes swim_msg_encode adds for one update. */
size_t swim_update_encoded_len(size_t addr_len);
/* Bytes of a message with no updates and the given address lengths. */
size_t swim_msg_header_len(size_t from_addr_len, size_t subject_addr_len);
/* Appends the encoding of m (docs/format/swim.md) to out. m must be valid
 * (the limits above); asserted. */
void swim_msg_encode(const struct swim_msg *m, struct nk_buf *out);
/* Decodes one packet from exactly [p, p+n). Addresses point into p
 * (borrowed). Anything malformed (version, type, flags, lengths, counts,
 * states, zero ids, checksum, trailing bytes) gives NK_DATA_LOSS naming the
 * problem; m is then unspecified. */
nk_status swim_msg_decode(const uint8_t *p, size_t n, struct swim_msg *m);
const char *swim_msg_type_name(uint8_t type);

/* ------------------------------------------------------------------ config */

struct swim_config {
    uint64_t id;          /* this member, non-zero */
    const char *addr;     /* this member's address as others reach it (copied) */
    uint64_t cluster;     /* cluster tag: packets with another tag are refused */
    uint64_t seed;        /* PRNG seed: probe order, ping-req helpers */
    uint64_t incarnation; /* starting incarnation (a restarted node may pass
                             a higher one than in its previous life, e.g. its
                             wall clock in seconds, to win at once) */

    uint32_t probe_interval_ms;       /* protocol period T; default 1000 */
    uint32_t probe_timeout_ms;        /* direct ack timeout; default 500 (< T) */
    uint32_t indirect_probes;         /* k helpers per ping-req round; default 3 */
    uint32_t suspicion_mult;          /* alpha: minimum suspicion timeout =
                                         alpha * max(1, log10 n) * T; default 4 */
    uint32_t suspicion_max_mult;      /* beta (Lifeguard): maximum = beta * minimum;
                                         default 6 */
    uint32_t suspicion_confirmations; /* K (Lifeguard): confirmations that
                                         bring the timeout down to the
                                         minimum; default 3, at most 8 */
    uint32_t retransmit_mult;         /* lambda: each update is sent
                                         lambda * ceil(log10(n + 1)) times; default 4 */
    uint32_t lhm_max;                 /* S (Lifeguard): LHM saturates here; default 8 */
    bool disable_lifeguard;           /* plain SWIM: no LHM, no nacks, fixed
                                         suspicion timeout (the minimum) */

    uint32_t max_members;        /* members known (any state); default 1024 */
    uint32_t gossip_max_entries; /* gossip buffer; default 256 */
    uint32_t gossip_max_bytes;   /* gossip buffer; default 64 KiB */
    uint32_t max_packet_bytes;   /* one datagram; default 1400 (fits an
                                    Ethernet MTU with IP/UDP headers) */
    uint32_t max_indirect;       /* ping-reqs served at once; default 64 */
    uint32_t max_out_packets;    /* per output; default 1024 */
    uint32_t max_out_events;     /* per output; default 1024 */
};

/* Fills the defaults above into every zero field (id/addr untouched). */
void swim_config_defaults(struct swim_config *cfg);

/*
 * Worst-case time, with Lifeguard's LHM at zero (no local trouble) and no
 * packet loss, from a member's failure to every live member holding it dead
 * in a group of n: it is first probed after at most 2(n-1) periods
 * (round-robin over a reshuffled list), suspected at the end of that period,
 * the suspicion reaches everyone within one more retransmit round, and each
 * declares it dead after at most the maximum suspicion timeout. Tests use it
 * as the bound; docs/swim.md derives it.
 */
uint64_t swim_detection_bound_ms(const struct swim_config *cfg, uint32_t n);

/* ----------------------------------------------------------------- output */

struct swim_packet {
    uint64_t to;      /* member id (0 never) */
    const char *addr; /* NUL-terminated destination address */
    const uint8_t *data;
    size_t len;
};

struct swim_event {
    uint64_t id;
    uint8_t state;      /* enum swim_state, the new state */
    uint8_t prev_state; /* SWIM_NONE when the member just appeared */
    uint64_t incarnation;
    char addr[SWIM_MAX_ADDR + 1];
    uint64_t at_ms; /* the now_ms of the call that made the change */
};

struct swim_output {
    const struct swim_packet *packets;
    size_t n_packets;
    const struct swim_event *events;
    size_t n_events;
    bool events_overflowed; /* some events were dropped: re-read the members */
};

/* ----------------------------------------------------------------- members */

struct swim_member_info {
    uint64_t id;
    const char *addr; /* valid until the next mutating call */
    uint8_t state;
    uint64_t incarnation;
    uint64_t state_since_ms; /* local time of the last state change */
};

struct swim_stats {
    uint64_t packets_out, bytes_out, packets_in, bytes_in;
    uint64_t pings, ping_reqs, acks, nacks, syncs; /* sent */
    uint64_t rejected;                             /* packets refused by swim_step */
    uint64_t probes_failed;                        /* periods that ended without an ack */
    uint64_t suspicions;                           /* members this node suspected itself */
    uint64_t refutations;                  /* times this node refuted a rumour about itself */
    uint64_t gossip_dropped;               /* updates evicted from a full gossip buffer */
    uint64_t out_dropped;                  /* packets dropped: output full */
    uint64_t indirect_dropped;             /* ping-reqs refused: table full */
    uint64_t members_dropped;              /* updates about new members refused: table full */
    uint32_t gossip_entries, gossip_bytes; /* current */
    uint32_t gossip_max_entries_seen, gossip_max_bytes_seen;
    uint32_t lhm; /* current local health multiplier */
};

/* --------------------------------------------------------------- the state */

struct swim;

/* Validates cfg (NK_INVALID_ARGUMENT naming the field), applies defaults. */
nk_status swim_new(const struct swim_config *cfg, uint64_t now_ms, struct swim **out);
void swim_free(struct swim *s);

/*
 * Adds a member known from outside (the cluster file, a seed, an operator's
 * join) as alive at incarnation 0; gossiping its own state overrides that.
 * Adding a known member updates nothing (NK_OK). NK_INVALID_ARGUMENT for id
 * 0, this member's id, or a bad address; NK_RESOURCE_EXHAUSTED when the table
 * is full of members that are not dead or left.
 */
nk_status swim_add_member(struct swim *s, uint64_t id, const char *addr, uint64_t now_ms);
/* Forgets a dead or left member (the cluster removed it for good).
 * NK_NOT_FOUND if unknown, NK_FAILED_PRECONDITION if alive or suspect. */
nk_status swim_remove_member(struct swim *s, uint64_t id);
/* This member leaves on purpose: it gossips `left` (at a new incarnation),
 * stops probing, keeps answering so the news spreads. Keep ticking and
 * sending until swim_leave_spread() (or a timeout) before closing the socket. */
void swim_leave(struct swim *s, uint64_t now_ms);
/* True once the `left` update has been sent its full number of times. */
bool swim_leave_spread(const struct swim *s);

void swim_tick(struct swim *s, uint64_t now_ms);
nk_status swim_step(struct swim *s, uint64_t now_ms, const uint8_t *p, size_t n);
/* Earliest time at which swim_tick has something to do. */
uint64_t swim_next_deadline(const struct swim *s);

void swim_output(const struct swim *s, struct swim_output *out);
void swim_output_clear(struct swim *s);

/* Members other than this one, in no particular order (index < count). */
size_t swim_member_count(const struct swim *s);
void swim_member_at(const struct swim *s, size_t i, struct swim_member_info *out);
/* false when unknown; this member's own id gives its own record */
bool swim_member_get(const struct swim *s, uint64_t id, struct swim_member_info *out);
uint64_t swim_incarnation(const struct swim *s);
void swim_stats(const struct swim *s, struct swim_stats *out);

#endif /* NK_SWIM_H */
