/*
 * raft: the Raft consensus protocol as a pure state machine (no I/O, no
 * threads, no clock), in the style of etcd's raft library.
 *
 * The caller drives one `struct raft` per group: raft_tick() on its own clock,
 * raft_step() for every message that arrives from a peer, raft_propose*() and
 * raft_read_index() for client work. Raft never writes anything itself: it
 * hands back a `struct raft_ready` describing what must happen, and the caller
 * confirms with raft_advance() once it has happened.
 *
 * The Ready / Advance contract (in this order, for one raft_ready):
 *   1. persist rd.snapshot (if not NULL) into the log storage, then append
 *      rd.entries to the log storage (replacing any stored entries at the same
 *      or higher indexes), then persist rd.hard_state if rd.hard_state_changed,
 *      and make all of it durable (fsync);
 *   2. only then send rd.msgs (any order, any loss: Raft tolerates loss,
 *      duplication and reordering; messages are the caller's to batch per peer);
 *   3. apply rd.committed in order to the state machine, or copy them to the
 *      apply thread's queue (they are always already durable in the local
 *      log; raft counts them as applied from raft_advance on), and complete
 *      rd.reads (serve each once the state machine has applied its index);
 *   4. call raft_advance(r, &rd).
 * A multi-Raft node collects the Readys of all groups with work, persists all
 * of them with one fsync, sends, then advances each group.
 * Between raft_ready() and raft_advance() the caller must not call any other
 * mutating function on that raft (getters are fine). Everything rd points to
 * is owned by the raft and stays valid until raft_advance().
 *
 * Configuration changes take effect as soon as their entry is in the log
 * (Raft thesis 4.1: a server uses the latest configuration in its log,
 * committed or not; a truncated entry reverts it). raft_conf() is that
 * configuration; raft_applied_conf() the one as of the applied index (put
 * that one in snapshots).
 *
 * Storage: stable entries are read through `struct raft_storage`, a small
 * vtable (first/last index, term of an index, entries of a range, latest
 * snapshot, initial hard state). The caller writes to the storage itself, as
 * step 1 above says; raft only reads. raft_memstorage is the in-memory
 * implementation used by tests, the simulator and the benchmark; src/raftlog
 * implements the same interface on the WAL.
 *
 * Memory: a raft copies everything given to it (proposal data, stepped
 * messages). Memory handed out in a Ready belongs to the raft until
 * raft_advance(). An idle raft holds no buffers beyond its struct, its
 * progress array and the (empty) unstable log, so 1024 groups per node are
 * cheap; raft_is_idle() and raft_quiesce() let the node layer stop ticking
 * and heartbeating idle groups.
 *
 * Bounds: uncommitted bytes and entries on the leader (proposals get
 * NK_RESOURCE_EXHAUSTED), bytes per append message, in-flight messages and
 * bytes per follower, committed bytes per Ready, pending reads, outgoing
 * messages per Ready (the excess is dropped and counted; Raft retransmits).
 *
 * Thread-safety: none. One raft belongs to one thread at a time. The message
 * codec functions (raft_msg_encode/decode) are pure and thread-safe.
 */
#ifndef NK_RAFT_H
#define NK_RAFT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/util.h"

/* Node ids are non-zero; 0 means "none". */
#define RAFT_NONE 0

/* At most this many nodes in each of a configuration's lists. */
#define RAFT_MAX_MEMBERS 16

/* ------------------------------------------------------------------ entries */

enum raft_entry_type {
    RAFT_ENTRY_NORMAL = 0,      /* opaque application data */
    RAFT_ENTRY_CONF_CHANGE = 1, /* data: a conf change, see raft_conf_change_decode */
    RAFT_ENTRY_NOOP = 2,        /* appended by every new leader; data is empty */
};

struct raft_entry {
    uint64_t term;
    uint64_t index;
    uint8_t type; /* enum raft_entry_type */
    uint32_t len;
    uint8_t *data; /* owner depends on where the entry lives; see each call */
};

/* Persistent state, written before any message that depends on it is sent. */
struct raft_hard_state {
    uint64_t term;
    uint64_t vote;
    uint64_t commit;
};

/*
 * A group's membership. Outside a joint configuration voters_out is empty.
 * A node listed in voters_out and in learners is a voter until the joint
 * configuration is left, then a learner (demotion).
 */
struct raft_conf_state {
    uint8_t n_voters, n_voters_out, n_learners;
    uint64_t voters[RAFT_MAX_MEMBERS];
    uint64_t voters_out[RAFT_MAX_MEMBERS];
    uint64_t learners[RAFT_MAX_MEMBERS];
};

struct raft_snapshot {
    uint64_t index; /* last entry covered */
    uint64_t term;  /* its term */
    struct raft_conf_state conf;
    uint64_t len;
    uint8_t *data; /* opaque state machine image (may be empty when the node
                      layer streams the data itself) */
};

/* -------------------------------------------------------------- the storage */

/*
 * Read-only view of the stable log. Conventions (as in etcd): the storage
 * holds a snapshot at index S (S = 0 when there is none) and the entries
 * S+1 .. last. first_index() is S+1; last_index() is the last stored entry
 * (S when there is none). term(S) must succeed (the snapshot's term).
 *
 *   term():    NK_OUT_OF_RANGE when index < S (compacted),
 *              NK_NOT_FOUND when index > last (unavailable).
 *   entries(): entries [lo, hi) (first_index <= lo < hi <= last+1), stopping
 *              before the total data size exceeds max_bytes but always
 *              returning at least one; out has room for hi - lo entries and
 *              each entry's data is copied into `arena`. NK_OUT_OF_RANGE when
 *              lo was compacted meanwhile.
 *   entries_nowait(): optional. As entries(), but it may answer
 *              NK_UNAVAILABLE when the first entry is not in memory: the
 *              leader then sends nothing to that follower now, the host
 *              fetches the entries off its Ready loop and calls
 *              raft_entries_fetched(), which sends again. Used only to send
 *              entries to followers, so a lagging follower's disk reads never
 *              stall the loop that makes new entries durable.
 *   snapshot(): the latest snapshot, data copied into `arena`;
 *              NK_UNAVAILABLE when it is being produced (raft retries later).
 *   initial_state(): the hard state and the conf state of the latest
 *              snapshot, read once by raft_new().
 * Any other error is fatal for the replica (raft panics): storage that
 * cannot read what it acknowledged as durable is corrupt.
 */
struct raft_storage {
    void *ctx;
    nk_status (*initial_state)(void *ctx, struct raft_hard_state *hs,
                               struct raft_conf_state *conf);
    uint64_t (*first_index)(void *ctx);
    uint64_t (*last_index)(void *ctx);
    nk_status (*term)(void *ctx, uint64_t index, uint64_t *term);
    nk_status (*entries)(void *ctx, uint64_t lo, uint64_t hi, uint64_t max_bytes,
                         struct nk_arena *arena, struct raft_entry *out, size_t *n);
    nk_status (*snapshot)(void *ctx, struct nk_arena *arena, struct raft_snapshot *out);
    nk_status (*entries_nowait)(void *ctx, uint64_t lo, uint64_t hi, uint64_t max_bytes,
                                struct nk_arena *arena, struct raft_entry *out, size_t *n);
};

/* ------------------------------------------------------------------ messages */

enum raft_msg_type {
    RAFT_MSG_APPEND = 1,      /* index/log_term: previous entry; entries; commit */
    RAFT_MSG_APPEND_RESP = 2, /* index: last matched (or rejected) index; reject,
                                 reject_hint (follower's probe index), log_term
                                 (term at the hint) */
    RAFT_MSG_VOTE = 3,        /* index/log_term: candidate's last entry; ctx 1 = transfer */
    RAFT_MSG_VOTE_RESP = 4,   /* reject */
    RAFT_MSG_PREVOTE = 5,     /* term: the term the candidate would campaign in */
    RAFT_MSG_PREVOTE_RESP = 6,
    RAFT_MSG_HEARTBEAT = 7,      /* commit; ctx: read-index round; index: leader's tick */
    RAFT_MSG_HEARTBEAT_RESP = 8, /* ctx and index echoed */
    RAFT_MSG_SNAPSHOT = 9,       /* snapshot */
    RAFT_MSG_TIMEOUT_NOW = 10,   /* leadership transfer: campaign now */
};
#define RAFT_MSG_TYPE_MAX 10

/* Vote ctx marking a campaign started by leadership transfer. */
#define RAFT_CAMPAIGN_TRANSFER 1

struct raft_msg {
    uint8_t type; /* enum raft_msg_type */
    bool reject;
    uint64_t from, to; /* node ids; the group id is the caller's business */
    uint64_t term;
    uint64_t log_term;
    uint64_t index;
    uint64_t commit;
    uint64_t reject_hint;
    uint64_t ctx;
    uint32_t n_entries;
    struct raft_entry *entries;     /* consecutive indexes */
    struct raft_snapshot *snapshot; /* RAFT_MSG_SNAPSHOT only */
};

/* Limits enforced by the decoder (and respected by the encoder's users). */
#define RAFT_MSG_MAX_ENTRIES     65536
#define RAFT_ENTRY_MAX_BYTES     (16u << 20)  /* one entry's data */
#define RAFT_MSG_MAX_BYTES       (256u << 20) /* one encoded message */
#define RAFT_SNAPSHOT_MAX_BYTES  (128u << 20) /* inline snapshot data */

/* Appends the encoding of m (docs/format/raft-messages.md) to out. */
void raft_msg_encode(const struct raft_msg *m, struct nk_buf *out);
/*
 * Decodes one message from exactly [p, p+n). Entry and snapshot data point
 * into p (borrowed: keep p alive while m is used); arrays are allocated in
 * `arena`. Malformed input (truncated, oversized, unknown type, trailing
 * bytes, impossible indexes) gives NK_DATA_LOSS naming the problem.
 */
nk_status raft_msg_decode(const uint8_t *p, size_t n, struct nk_arena *arena,
                          struct raft_msg *m);
const char *raft_msg_type_name(uint8_t type);

/* ----------------------------------------------------------- conf changes */

enum raft_conf_change_kind {
    RAFT_CC_SIMPLE = 1,      /* replace the configuration (voters differ by <= 1) */
    RAFT_CC_ENTER_JOINT = 2, /* voters_out := current voters, voters := target */
    RAFT_CC_LEAVE_JOINT = 3, /* voters_out := {} (proposed by the leader itself) */
};

/* A conf change entry carries the complete resulting configuration, so that
 * a replica can apply it without knowing the one before (a new replica that
 * replays the log from index 1 ends with the right membership). */
struct raft_conf_change {
    uint8_t kind;
    struct raft_conf_state conf; /* the configuration once applied */
};

void raft_conf_change_encode(const struct raft_conf_change *cc, struct nk_buf *out);
nk_status raft_conf_change_decode(const uint8_t *p, size_t n, struct raft_conf_change *cc);

bool raft_conf_is_joint(const struct raft_conf_state *c);
bool raft_conf_is_voter(const struct raft_conf_state *c, uint64_t id);
bool raft_conf_is_learner(const struct raft_conf_state *c, uint64_t id);

/* --------------------------------------------------------------- the group */

struct raft_config {
    uint64_t id;                 /* this node, non-zero */
    struct raft_storage storage; /* read-only to raft */
    uint64_t applied;            /* state machine's applied index at start (>= snapshot) */
    uint32_t election_tick;      /* default 10; randomized in [e, 2e) */
    uint32_t heartbeat_tick;     /* default 1 */
    uint32_t lease_margin_tick;  /* default max(2, election_tick/4): clock-drift margin */
    bool disable_pre_vote;     /* pre-vote is on by default */
    bool disable_check_quorum; /* check-quorum is on by default (lease reads need it) */
    uint64_t max_msg_bytes;          /* entry data per append; default 1 MiB */
    uint32_t max_inflight_msgs;      /* per follower; default 256 */
    uint64_t max_inflight_bytes;     /* per follower; default 8 MiB */
    uint64_t max_uncommitted_bytes;  /* leader; default 32 MiB */
    uint32_t max_uncommitted_entries; /* leader; default 65536 */
    uint64_t max_committed_bytes;    /* per Ready; default 16 MiB */
    uint32_t max_pending_reads;      /* default 4096 */
    uint32_t max_msgs_per_ready;     /* default 16384 */
    uint64_t rand_seed;              /* election jitter; mixed with id */
};

enum raft_role {
    RAFT_FOLLOWER = 0,
    RAFT_PRE_CANDIDATE = 1,
    RAFT_CANDIDATE = 2,
    RAFT_LEADER = 3,
};

/* A completed read: serve it once the state machine has applied `index`.
 * index == 0 means the read was abandoned (leadership lost): retry it. */
struct raft_read_state {
    uint64_t ctx;
    uint64_t index;
};

struct raft_ready {
    bool hard_state_changed;
    struct raft_hard_state hard_state;
    const struct raft_snapshot *snapshot; /* NULL unless one must be installed */
    const struct raft_entry *entries;     /* to append to storage */
    size_t n_entries;
    struct raft_msg *msgs; /* to send after persisting */
    size_t n_msgs;
    const struct raft_entry *committed; /* to apply, in order */
    size_t n_committed;
    const struct raft_read_state *reads;
    size_t n_reads;
    /* soft state, for the caller's routing tables */
    uint64_t lead;
    uint8_t role;
};

struct raft;

/*
 * Creates a group over `cfg->storage` (its hard state, latest snapshot and
 * stable entries are what a restart recovers). Conf changes in
 * (snapshot, cfg->applied] are replayed to rebuild the membership. Bootstrap
 * a new group by giving every initial member a storage that holds a snapshot
 * at index 0 whose conf lists the initial voters (raft_memstorage_create_
 * snapshot(m, 0, &conf, NULL, 0)); a replica added later starts with empty
 * storage and an empty configuration and learns both from the leader.
 */
nk_status raft_new(const struct raft_config *cfg, struct raft **out);
/* Frees the group (also valid between raft_ready and raft_advance: a crash). */
void raft_free(struct raft *r);

void raft_tick(struct raft *r);
/* Steps one message addressed to this node; data is copied. Messages from
 * stale terms and unknown senders are ignored (NK_OK); a malformed message
 * (e.g. entries with impossible indexes) gives NK_INVALID_ARGUMENT. */
nk_status raft_step(struct raft *r, const struct raft_msg *m);

/* Leader only (else NK_FAILED_PRECONDITION, with raft_lead() as a hint). On
 * success *index and *term are those of the new entry: the proposal has taken
 * effect when an entry with that exact index and term is applied. Full:
 * NK_RESOURCE_EXHAUSTED. During a leadership transfer: NK_UNAVAILABLE. */
nk_status raft_propose(struct raft *r, const void *data, size_t len, uint64_t *index,
                       uint64_t *term);
/* Proposes a change to `target` membership (voters + learners). One voter
 * added or removed: a simple change; more: joint consensus, left
 * automatically by the leader once the joint entry is committed. Only one
 * change may be uncommitted (NK_FAILED_PRECONDITION otherwise). A leader
 * that removes itself steps down once its removal commits. */
nk_status raft_propose_conf_change(struct raft *r, const struct raft_conf_state *target,
                                   uint64_t *index, uint64_t *term);
/* Linearizable read (ReadIndex): leader only. The read completes in a later
 * Ready as {ctx, index} after one heartbeat round confirms leadership; all
 * reads requested before the next Ready share one round. */
nk_status raft_read_index(struct raft *r, uint64_t ctx);
/* Lease read: true when this leader's lease holds (a quorum acknowledged a
 * heartbeat sent less than election_tick - lease_margin_tick ticks ago and
 * the leader has committed an entry of its term); *index is then the commit
 * index: serve once applied >= *index. */
bool raft_lease_read(const struct raft *r, uint64_t *index);
/*
 * Where the lease stands in time: when raft_lease_read holds, *sent_tick is
 * the tick (raft_now() numbering) at which the heartbeat round that a quorum
 * acknowledged was sent, and the lease lasts *lease_ticks ticks from then.
 * Ticks only count rounds; the caller anchors sent_tick to its monotonic
 * clock (when that tick happened) so that a round that stalled for seconds
 * never stretches the lease (ARCHITECTURE.md "Reads").
 */
bool raft_lease_anchor(const struct raft *r, uint64_t *sent_tick, uint32_t *lease_ticks);
/* The raft's tick counter (incremented by every raft_tick). */
uint64_t raft_now(const struct raft *r);
nk_status raft_transfer_leader(struct raft *r, uint64_t to);
/* Starts an election now (tests, operator action). */
nk_status raft_campaign(struct raft *r);
/* The transport failed to deliver a snapshot to `to`: probe again. */
void raft_report_unreachable(struct raft *r, uint64_t to);
/* Entries that storage.entries_nowait answered NK_UNAVAILABLE for are in
 * memory now: send to every follower that is waiting for entries. */
void raft_entries_fetched(struct raft *r);

bool raft_has_ready(const struct raft *r);
void raft_ready(struct raft *r, struct raft_ready *rd);
void raft_advance(struct raft *r, const struct raft_ready *rd);

/* Multi-Raft support. Idle: leader with every follower caught up and nothing
 * pending, or follower with nothing pending. A quiesced raft ignores ticks
 * (no heartbeats, no elections, no lease) until raft_unquiesce() or any
 * step/propose/read wakes it; the node layer must unquiesce followers when
 * their leader's node is suspected down. */
bool raft_is_idle(const struct raft *r);
void raft_quiesce(struct raft *r);
void raft_unquiesce(struct raft *r);
bool raft_is_quiesced(const struct raft *r);

/* Getters. */
uint64_t raft_id(const struct raft *r);
uint64_t raft_term(const struct raft *r);
uint64_t raft_lead(const struct raft *r);
enum raft_role raft_role(const struct raft *r);
uint64_t raft_commit_index(const struct raft *r);
uint64_t raft_applied_index(const struct raft *r);
uint64_t raft_last_index(const struct raft *r);
uint64_t raft_first_index(const struct raft *r);
/* term of index i in the whole log (stable + unstable); NK_OUT_OF_RANGE if
 * compacted, NK_NOT_FOUND beyond the last index */
nk_status raft_log_term(const struct raft *r, uint64_t i, uint64_t *term);
/* the effective configuration: the latest in the log */
const struct raft_conf_state *raft_conf(const struct raft *r);
/* the configuration as of the applied index (for snapshots) */
const struct raft_conf_state *raft_applied_conf(const struct raft *r);
/* Replication progress of a peer as seen by the leader (0 if unknown). */
uint64_t raft_progress_match(const struct raft *r, uint64_t id);
/* Messages dropped because a Ready's message queue was full. */
uint64_t raft_dropped_msgs(const struct raft *r);
size_t raft_struct_size(void);
/* One line describing the state (and, on a leader, each follower's
 * progress) for logs and status pages; returns the length it wanted. */
size_t raft_describe(const struct raft *r, char *buf, size_t n);
const char *raft_role_name(enum raft_role role);

/* ------------------------------------------------------ in-memory storage */

/*
 * raft_memstorage: the log storage in memory (tests, simulator, benchmark).
 * It owns copies of everything written to it. Not thread-safe.
 */
struct raft_memstorage;

struct raft_memstorage *raft_memstorage_new(void);
void raft_memstorage_free(struct raft_memstorage *m);
struct raft_storage raft_memstorage_storage(struct raft_memstorage *m);
void raft_memstorage_set_hard_state(struct raft_memstorage *m, const struct raft_hard_state *hs);
void raft_memstorage_hard_state(const struct raft_memstorage *m, struct raft_hard_state *hs);
/* Appends entries (consecutive), dropping any stored entries at >= the first
 * one's index. Entries at or below the snapshot are ignored. The first index
 * must be <= last_index + 1 (NK_INVALID_ARGUMENT otherwise). */
nk_status raft_memstorage_append(struct raft_memstorage *m, const struct raft_entry *ents,
                                 size_t n);
/* Replaces everything with the snapshot (older than the current: NK_OUT_OF_RANGE). */
nk_status raft_memstorage_apply_snapshot(struct raft_memstorage *m,
                                         const struct raft_snapshot *snap);
/* Records a snapshot at `index` (<= last) with the given conf and data, and
 * keeps the entries. */
nk_status raft_memstorage_create_snapshot(struct raft_memstorage *m, uint64_t index,
                                          const struct raft_conf_state *conf, const void *data,
                                          size_t len);
/* Drops entries <= index (index <= the snapshot index). */
nk_status raft_memstorage_compact(struct raft_memstorage *m, uint64_t index);
/* Drops every entry > index (simulates losing unsynced writes). */
void raft_memstorage_truncate_after(struct raft_memstorage *m, uint64_t index);
size_t raft_memstorage_count(const struct raft_memstorage *m);

#endif /* NK_RAFT_H */
