/*
 * transport: the node-to-node layer. One TCP connection per peer pair on the
 * peer port carries length-prefixed, CRC32C-checked frames
 * (docs/format/peer-frames.md); one epoll thread serves every peer socket and
 * the listening socket.
 *
 * What it carries: opaque payloads in two traffic classes per peer.
 *   TRANSPORT_CLASS_RAFT  small, latency-critical (the node's batched Raft
 *                         messages and coalesced heartbeats);
 *   TRANSPORT_CLASS_BULK  large and patient (snapshot chunks).
 * Each class has its own bounded queue (frames and bytes). RAFT frames always
 * go out before BULK ones, and a BULK payload is cut on the wire into
 * fragments (bulk_fragment_bytes) so that a RAFT frame never waits behind more
 * than one fragment in our queue. Below us, bytes already handed to TCP are
 * ahead of it too: TCP_NOTSENT_LOWAT keeps our kernel's unsent backlog small,
 * and a window (bulk_window_bytes of BULK payload in flight until the
 * receiver acknowledges it with BULK_ACK) bounds what sits in the network and
 * the receiver's socket buffer, so a heartbeat waits for at most about one
 * window of snapshot data, whatever the socket buffer sizes. Payloads are delivered
 * whole (a BULK payload is reassembled) and in order per class.
 *
 * Sessions: a peer is "up" from a completed handshake (each side sends a
 * HELLO: protocol version, node id, name, cluster id, total_shards; each
 * answers the other's with ACCEPT or with CLOSE and the reason; a side is up
 * once it accepted the peer's HELLO and received its ACCEPT) until the
 * connection ends. Within a session frames of one class arrive in the order
 * sent, without gaps: a frame accepted by transport_send() is delivered
 * unless the session ends first (then on_peer(DOWN) is reported on both
 * sides). Frames still queued when a session ends are discarded (counted):
 * by the time a new connection is up they are stale, and Raft retransmits.
 * A send to a known peer that is not up is refused with NK_UNAVAILABLE (and
 * counted) rather than parked, for the same reason; the node layer treats it
 * like a lost message (raft_report_unreachable for snapshots).
 *
 * Identity comes from the handshake, never from the address: the address
 * given to transport_add_peer() is only what this node dials (it may be a
 * proxy). A HELLO whose cluster id (when both sides know theirs) or
 * total_shards differs from ours, whose
 * version we do not speak, whose node id is ours, unknown (inbound), or not the
 * one we dialed (outbound) is refused: the connection is closed (after a CLOSE
 * frame telling the other side why), the reason is logged naming both values,
 * stored as the peer's last_error and reported through on_peer(REFUSED).
 * When both sides dial at once, both keep the connection dialed by the lower
 * node id (between two dialed by the same node, the newer one).
 *
 * Liveness: a side that has sent nothing for keepalive_ms sends a PING frame; a
 * connection that receives nothing for idle_timeout_ms, or that cannot write
 * any byte of its backlog for idle_timeout_ms, is closed and redialed.
 * Dialing retries with exponential backoff and jitter between backoff_min_ms
 * and backoff_max_ms; both sides dial (the tie-break above settles races),
 * the higher id 4 x backoff_min_ms later than the lower, so that a pair
 * coming up together usually makes a single connection.
 *
 * Untrusted input: every frame is checked (length against the limit before
 * any allocation, type, flags, CRC); a malformed frame closes that connection
 * with a logged reason. An unauthenticated connection may only send one HELLO
 * of at most TRANSPORT_HELLO_MAX bytes, and at most max_pending_conns of them
 * exist at once.
 *
 * Memory: transport_send() copies the payload; the transport owns its queues
 * (bounded per peer and class). on_frame's data is borrowed for the duration
 * of the callback only.
 *
 * Threads: every function is thread-safe (one internal mutex). Callbacks
 * (on_frame, on_peer) run on the transport thread, never two at once, never
 * with the internal mutex held: they may call transport_send/_stats/
 * _add_peer/_remove_peer, but they must not block (every peer's input waits
 * while they run), and must not call transport_close. transport_send never
 * blocks on the network: when the connection is idle it writes the frame at
 * once from the caller's thread (one non-blocking sendmsg, saving a
 * cross-thread wake-up), otherwise it queues it for the transport thread.
 *
 * Address resolution: numeric addresses never block; a host name is resolved
 * with getaddrinfo() on the transport thread at each dial (it may block that
 * thread for the resolver's timeout).
 */
#ifndef NK_TRANSPORT_H
#define NK_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/util.h"

/* Traffic classes. */
#define TRANSPORT_CLASS_RAFT 0
#define TRANSPORT_CLASS_BULK 1
#define TRANSPORT_NCLASSES   2

#define TRANSPORT_PROTOCOL_VERSION 1
#define TRANSPORT_NAME_MAX         255 /* node name bytes in a HELLO */
#define TRANSPORT_ADDR_MAX         256 /* "host:port" incl. NUL */
#define TRANSPORT_ERROR_MAX        256

enum transport_peer_event {
    TRANSPORT_PEER_UP = 1,      /* handshake completed: a session starts */
    TRANSPORT_PEER_DOWN = 2,    /* the session ended (reason says why) */
    TRANSPORT_PEER_REFUSED = 3, /* a handshake was refused (reason names both values) */
};

struct transport_options {
    uint64_t self_id;        /* non-zero */
    const char *self_name;   /* human label sent in HELLO (<= 255 bytes); copied */
    const char *listen_addr; /* "host:port" or "[v6]:port"; port 0 = pick a free one */
    uint64_t cluster_id;     /* peers must match */
    uint32_t total_shards;   /* peers must match */

    /* A whole payload from peer `from` (known, session up). data is borrowed
     * until the callback returns. Runs on the transport thread: must not
     * block. */
    void (*on_frame)(void *ctx, uint64_t from, uint8_t cls, const uint8_t *data, size_t len);
    /* Session changes. For REFUSED, `peer` is the id the other side claimed
     * (0 when its HELLO could not be read). reason is borrowed; NULL for UP. */
    void (*on_peer)(void *ctx, uint64_t peer, enum transport_peer_event ev, const char *reason);
    void *ctx;

    /* Limits and timings; 0 takes the default shown. */
    uint32_t raft_queue_frames;   /* 4096 per peer */
    uint64_t raft_queue_bytes;    /* 64 MiB per peer */
    uint32_t bulk_queue_frames;   /* 64 per peer */
    uint64_t bulk_queue_bytes;    /* 64 MiB per peer */
    uint32_t max_frame_bytes;     /* 16 MiB: largest payload sent or accepted */
    uint32_t bulk_fragment_bytes; /* 64 KiB: wire fragment of a BULK payload */
    uint32_t bulk_window_bytes;   /* 1 MiB: BULK bytes in flight before the receiver's ack */
    uint32_t max_peers;           /* 256 */
    uint32_t max_pending_conns;   /* 64 connections before their HELLO */
    uint32_t keepalive_ms;        /* 500 */
    uint32_t idle_timeout_ms;     /* 3000 */
    uint32_t handshake_timeout_ms; /* 3000 (also bounds a connect()) */
    uint32_t backoff_min_ms;      /* 50 */
    uint32_t backoff_max_ms;      /* 1000 */
    uint32_t notsent_lowat;       /* 128 KiB (TCP_NOTSENT_LOWAT) */
    uint64_t seed;                /* jitter and incarnation; 0 = from the clock */
};

struct transport;

/* Binds the listening socket and starts the transport thread. */
nk_status transport_open(const struct transport_options *opts, struct transport **out);
/* Stops the thread, tells connected peers (CLOSE frame, best effort), closes
 * every socket and frees everything. No callback runs after it returns (and
 * no DOWN events are reported for the sessions it ends). Not from a callback. */
void transport_close(struct transport *t);

/* The bound listening address ("127.0.0.1:40123"), valid until close. */
const char *transport_listen_addr(const struct transport *t);

/* Adds a peer this node dials at addr (copied; dialing starts at once).
 * NK_ALREADY_EXISTS when the id is known (use transport_set_peer_addr),
 * NK_INVALID_ARGUMENT for id 0, our own id or an address that does not parse,
 * NK_RESOURCE_EXHAUSTED beyond max_peers. Only known peers may connect. */
nk_status transport_add_peer(struct transport *t, uint64_t id, const char *addr);
/* Changes the address dialed next time (an existing session stays up). */
nk_status transport_set_peer_addr(struct transport *t, uint64_t id, const char *addr);
/* Forgets a peer: its session ends (no DOWN event), its queue is discarded.
 * NK_NOT_FOUND when unknown. The id may be added again at once. */
nk_status transport_remove_peer(struct transport *t, uint64_t id);
/* The cluster id sent in HELLOs and checked in peers' (a node learns it
 * after its transport opened: bootstrap, join). 0 on either side: not
 * checked (a node that does not know it yet). */
void transport_set_cluster_id(struct transport *t, uint64_t cluster_id);

/*
 * Queues one payload for peer `to` (copied; never blocks).
 *   NK_INVALID_ARGUMENT  bad class, or len > max_frame_bytes;
 *   NK_NOT_FOUND         unknown peer;
 *   NK_UNAVAILABLE       the peer's session is not up (dropped, counted);
 *   NK_RESOURCE_EXHAUSTED the class's queue for that peer is full in frames or
 *                        bytes (dropped, counted).
 * Errors carry a message naming the peer and the limit; callers on hot paths
 * may check the code and free it.
 */
nk_status transport_send(struct transport *t, uint64_t to, uint8_t cls, const void *data,
                         size_t len);
/* The same with the payload given as parts (concatenated on the wire), so a
 * caller can send a header and pre-encoded messages without joining them. */
nk_status transport_sendv(struct transport *t, uint64_t to, uint8_t cls,
                          const struct nk_slice *parts, size_t nparts);

/* True when the peer's session is up. */
bool transport_peer_up(struct transport *t, uint64_t id);

struct transport_peer_stats {
    uint64_t id;
    char addr[TRANSPORT_ADDR_MAX]; /* what we dial */
    char name[TRANSPORT_NAME_MAX + 1]; /* from its last HELLO ("" before) */
    uint64_t incarnation;          /* from its last HELLO: changes on restart */
    bool connected;
    uint64_t dialed_by;            /* node that dialed the session's connection (0: none) */
    uint32_t queued_frames[TRANSPORT_NCLASSES];
    uint64_t queued_bytes[TRANSPORT_NCLASSES];
    uint64_t sent_frames[TRANSPORT_NCLASSES]; /* payloads fully written */
    uint64_t sent_bytes[TRANSPORT_NCLASSES];  /* payload bytes */
    uint64_t recv_frames[TRANSPORT_NCLASSES];
    uint64_t recv_bytes[TRANSPORT_NCLASSES];
    uint64_t dropped_full[TRANSPORT_NCLASSES];   /* refused: queue full */
    uint64_t dropped_down[TRANSPORT_NCLASSES];   /* refused: session not up */
    uint64_t discarded[TRANSPORT_NCLASSES];      /* queued, then the session ended */
    uint64_t sessions;   /* handshakes completed */
    uint64_t dials;      /* connection attempts made */
    uint64_t refused;    /* handshakes refused (by either rule) */
    uint64_t malformed;  /* connections closed for a malformed frame */
    char last_error[TRANSPORT_ERROR_MAX]; /* "" when none */
};

struct transport_stats {
    uint64_t accepted;          /* inbound connections accepted */
    uint64_t rejected_pending;  /* inbound refused: too many before HELLO */
    uint64_t refused_unknown;   /* handshakes from an unknown or mismatched node */
    uint64_t malformed;         /* connections closed for malformed input */
    uint32_t pending_conns;     /* connections awaiting a HELLO now */
    uint32_t peers;
};

/* Fills up to cap peers (in the order they were added) and the totals (either
 * pointer may be NULL); *n receives the number of peers known. */
void transport_stats(struct transport *t, struct transport_stats *totals,
                     struct transport_peer_stats *peers, size_t cap, size_t *n);

/* -------------------------------------------------------------- the codec */

/*
 * The frame codec, pure and thread-safe (exposed for tests and the fuzz
 * target; docs/format/peer-frames.md is the byte-by-byte description).
 */
#define TRANSPORT_FRAME_HEADER 12
#define TRANSPORT_HELLO_MAX    1024 /* also the limit of a CLOSE frame */
#define TRANSPORT_HELLO_MAGIC  0x31504b4eu /* "NKP1" */

enum transport_frame_type {
    TRANSPORT_FRAME_HELLO = 1,  /* who I am (first frame, each side) */
    TRANSPORT_FRAME_ACCEPT = 2, /* I accept your HELLO (second frame) */
    TRANSPORT_FRAME_RAFT = 3,
    TRANSPORT_FRAME_BULK = 4,
    TRANSPORT_FRAME_PING = 5,
    TRANSPORT_FRAME_CLOSE = 6, /* I am closing; payload: the reason (text) */
    TRANSPORT_FRAME_BULK_ACK = 7, /* BULK flow control: u64 bulk payload bytes received */
};
#define TRANSPORT_FRAME_MORE 0x01 /* BULK: more fragments of this payload follow */

/* Writes the 12-byte header of a frame carrying payload [p, p+len). */
void transport_frame_header(uint8_t hdr[TRANSPORT_FRAME_HEADER], uint8_t type, uint8_t flags,
                            const void *p, size_t len);

struct transport_hello {
    uint16_t version;
    uint64_t node_id;
    uint64_t cluster_id;
    uint32_t total_shards;
    uint64_t incarnation;
    char name[TRANSPORT_NAME_MAX + 1];
};
/* Appends a HELLO payload (no frame header). Names longer than 255 bytes are cut. */
void transport_hello_encode(const struct transport_hello *h, struct nk_buf *out);
/* NK_DATA_LOSS naming the problem for anything but a well-formed HELLO
 * payload (the version is returned as is: the caller decides). */
nk_status transport_hello_decode(const uint8_t *p, size_t n, struct transport_hello *h);

/*
 * The stream decoder: a state machine fed the bytes of one connection in
 * whatever pieces they arrive. It accepts a HELLO (<= TRANSPORT_HELLO_MAX)
 * first, then an ACCEPT or a CLOSE, then RAFT, BULK, PING and CLOSE frames.
 * BULK fragments are reassembled (never beyond max_frame_bytes). Memory held:
 * at most one partial frame plus one partial BULK payload, each bounded by
 * the limit and grown only as bytes arrive (a declared length allocates
 * nothing).
 */
struct transport_decoder {
    uint32_t max_frame_bytes;
    uint8_t phase; /* 0: expecting HELLO, 1: expecting ACCEPT, 2: running */
    bool failed;
    uint8_t hdr[TRANSPORT_FRAME_HEADER];
    size_t hdr_have;
    bool in_body;        /* header complete, payload being gathered */
    uint8_t type, flags;
    uint32_t need;       /* payload length of the current frame */
    uint32_t crc;        /* expected (unmasked) */
    struct nk_buf body;  /* current payload when it spans reads */
    struct nk_buf bulk;  /* BULK payload being reassembled */
    bool bulk_open;
    uint64_t bulk_received; /* BULK fragment payload bytes accepted so far */
};

struct transport_frame {
    uint8_t type; /* enum transport_frame_type; BULK: the whole payload */
    const uint8_t *data; /* borrowed: valid until the next decoder call */
    size_t len;
};

enum transport_decode_result {
    TRANSPORT_DECODE_MORE = 0,  /* every input byte consumed; feed more */
    TRANSPORT_DECODE_FRAME = 1, /* *f holds a frame; call again with the rest */
    TRANSPORT_DECODE_ERROR = -1 /* *err says why; the decoder stays failed */
};

void transport_decoder_init(struct transport_decoder *d, uint32_t max_frame_bytes);
void transport_decoder_free(struct transport_decoder *d);
/* Consumes bytes from (*p, *n) (advancing both) until one frame is complete
 * or the input runs out. */
enum transport_decode_result transport_decoder_next(struct transport_decoder *d,
                                                    const uint8_t **p, size_t *n,
                                                    struct transport_frame *f, nk_status *err);

/* ------------------------------------------------------ the RAFT batch */

/*
 * The suggested content of a RAFT payload: the messages of many Raft groups
 * for one peer in one frame (docs/format/peer-frames.md, "RAFT batch"):
 * a version byte, then records (group id, message bytes) up to the end.
 * The transport does not look inside payloads; the node layer builds one
 * batch per peer per Ready round and walks it in on_frame. Pure functions.
 */
#define TRANSPORT_BATCH_VERSION 1

/* Starts a batch in b (appends the version byte). */
void transport_batch_init(struct nk_buf *b);
/* Appends one record (the message's bytes, e.g. raft_msg_encode output). */
void transport_batch_add(struct nk_buf *b, uint32_t group, const void *msg, size_t len);

struct transport_batch_reader {
    struct nk_reader r;
    uint32_t records; /* read so far */
};
/* NK_DATA_LOSS when the payload is empty or of another version. */
nk_status transport_batch_open(struct transport_batch_reader *br, const uint8_t *p, size_t n);
/* The next record (msg borrowed from the payload): *has = false at the end.
 * A truncated record or a group id over 32 bits is NK_DATA_LOSS. */
nk_status transport_batch_next(struct transport_batch_reader *br, bool *has, uint32_t *group,
                               struct nk_slice *msg);

#endif /* NK_TRANSPORT_H */
