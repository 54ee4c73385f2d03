/*
 * transport_int.h: the transport's internal types, shared by transport.c
 * (the API, the peer table, the thread's loop, timers, dialing and accepting)
 * and conn.c (one connection's I/O: handshake, reading and decoding, writing
 * the queues, closing). Not part of the public API.
 *
 * Locking: t->mu guards every field below except those marked "thread": the
 * peer table, the queues, each connection's write side and state, the stats.
 * Connections are created, read and destroyed only by the transport thread;
 * other threads only write to an active connection's socket (under t->mu)
 * when its queue is idle. A connection closed during an event batch is
 * parked on t->dead and freed after the batch (its pointer may still sit in
 * an epoll event of that batch).
 */
#ifndef NK_TRANSPORT_INT_H
#define NK_TRANSPORT_INT_H

#include <pthread.h>
#include <stdatomic.h>

#include "transport/transport.h"

#define TP_MOD "transport"

/* One queued payload. RAFT (and internal PING) items are written whole from
 * buf (header + payload); BULK items are cut into fragments whose headers are
 * made when the fragment starts. */
struct tp_item {
    struct tp_item *next;
    uint8_t type; /* TRANSPORT_FRAME_RAFT, _BULK, _PING or _BULK_ACK */
    bool internal;  /* PING, BULK_ACK: not counted in the user's limits or stats */
    bool frag_started;
    uint32_t len;        /* payload bytes */
    size_t off;          /* RAFT/PING: bytes of buf written; BULK: payload bytes sent */
    uint32_t frag_len;   /* BULK: payload bytes in the fragment in flight */
    uint32_t frag_done;  /* BULK: bytes of that fragment (header + payload) written */
    uint8_t frag_hdr[TRANSPORT_FRAME_HEADER];
    uint8_t buf[]; /* TRANSPORT_FRAME_HEADER bytes of header, then the payload */
};

struct tp_queue {
    struct tp_item *head, *tail;
    uint32_t frames; /* user frames (internal ones not counted) */
    uint64_t bytes;
};

enum tp_conn_state {
    TP_CONNECTING, /* outbound connect() in progress */
    TP_HANDSHAKE,  /* HELLO sent, waiting for the peer's HELLO and ACCEPT */
    TP_ACTIVE,     /* the peer's session */
    TP_DEAD,       /* closed, waiting to be freed */
};

struct tp_peer;

struct tp_conn {
    int tag; /* TP_TAG_CONN: epoll data points here */
    int fd;
    enum tp_conn_state state;
    bool outbound;
    bool want_out;      /* EPOLLOUT armed */
    bool broken;        /* a write from another thread failed: the thread closes it */
    bool hello_ok;      /* we accepted the peer's HELLO (and sent ACCEPT) */
    bool accept_seen;   /* the peer accepted ours */
    bool refused;       /* closing because a handshake was refused (log louder) */
    struct tp_peer *peer; /* outbound: the dialed peer; inbound: set by its HELLO */
    uint64_t remote_id;
    uint64_t dialer;      /* node id that dialed this connection */
    uint64_t remote_incarnation;
    char remote_name[TRANSPORT_NAME_MAX + 1];
    uint64_t deadline_ms; /* CONNECTING/HANDSHAKE: give up at */
    uint64_t last_recv_ms, last_send_ms, last_progress_ms;
    /* BULK flow control: payload bytes put in fragments / acknowledged by the
     * peer (sender side), and the count we last acknowledged (receiver) */
    uint64_t bulk_started, bulk_acked, bulk_ack_sent;
    /* control bytes (HELLO, ACCEPT) written before any queued frame */
    uint8_t ctl[2 * TRANSPORT_FRAME_HEADER + TRANSPORT_HELLO_MAX];
    size_t ctl_len, ctl_off;
    char error[TRANSPORT_ERROR_MAX]; /* why it broke (write side) */
    char remote[64];                 /* remote socket address, for logs */
    struct transport_decoder dec;    /* thread */
    struct tp_conn *prev, *next;     /* t->conns */
};

struct tp_peer {
    uint64_t id;
    char addr[TRANSPORT_ADDR_MAX];
    bool removed;
    struct tp_conn *active;  /* the session's connection */
    struct tp_conn *dialing; /* our outbound attempt in progress */
    struct tp_queue q[TRANSPORT_NCLASSES];
    uint64_t next_dial_ms;
    uint32_t backoff_ms;
    uint64_t last_log_ms;
    struct transport_peer_stats st; /* counters and labels; queue fields filled on read */
    struct tp_peer *grave_next;
};

struct tp_event {
    uint64_t peer;
    enum transport_peer_event ev;
    char reason[TRANSPORT_ERROR_MAX];
};

enum { TP_TAG_CONN = 1, TP_TAG_LISTEN = 2, TP_TAG_WAKE = 3 };

struct transport {
    struct transport_options o; /* defaults filled in */
    char self_name[TRANSPORT_NAME_MAX + 1];
    char listen_addr[TRANSPORT_ADDR_MAX];
    uint64_t incarnation;
    int epfd, listen_fd, wake_fd;
    int listen_tag, wake_tag;
    pthread_t thread;
    atomic_bool stop;

    pthread_mutex_t mu;
    struct tp_peer **peers; /* in the order added */
    size_t npeers;
    struct tp_peer *grave;  /* removed peers, freed by the thread */
    struct tp_conn *conns;  /* every live connection */
    struct tp_conn *dead;   /* closed, freed after the event batch (thread) */
    uint32_t pending;       /* inbound connections before their HELLO */
    bool closing;           /* no events once set */
    struct tp_event *evs;   /* events to report (thread fires them unlocked) */
    size_t nevs, capevs;
    struct nk_rng rng;
    struct transport_stats st;
    uint64_t last_unknown_log_ms;

    uint8_t *rbuf; /* thread: read buffer */
};

/* conn.c; every function but tp_conn_readable runs with t->mu held. */
struct tp_conn *tp_conn_new(struct transport *t, int fd, bool outbound, const char *remote);
void tp_conn_queue_hello(struct transport *t, struct tp_conn *c);
void tp_conn_write_ctl(struct transport *t, struct tp_conn *c);
void tp_conn_set_out(struct transport *t, struct tp_conn *c, bool want);
void tp_conn_close(struct transport *t, struct tp_conn *c, const char *reason, bool tell_peer);
void tp_conn_connected(struct transport *t, struct tp_conn *c);
/* Called by the thread without the lock: reads, decodes, delivers. */
void tp_conn_readable(struct transport *t, struct tp_conn *c);
void tp_peer_flush(struct transport *t, struct tp_peer *p);
void tp_queue_discard(struct tp_peer *p, int cls, bool count);
/* Queues a control frame (PING, BULK_ACK) at the end of the RAFT queue. */
void tp_enqueue_internal(struct transport *t, struct tp_peer *p, uint8_t type, const void *payload,
                         size_t len);
bool tp_peer_has_output(const struct tp_peer *p);

/* transport.c */
struct tp_peer *tp_find_peer(struct transport *t, uint64_t id);
void tp_event(struct transport *t, uint64_t peer, enum transport_peer_event ev,
              const char *reason);
void tp_fire_events(struct transport *t); /* thread, lock not held */
void tp_schedule_dial(struct transport *t, struct tp_peer *p, bool failed);
void tp_wake(struct transport *t);
void tp_peer_error(struct transport *t, struct tp_peer *p, enum nk_log_level lvl,
                   const char *fmt, ...) __attribute__((format(printf, 4, 5)));

#endif /* NK_TRANSPORT_INT_H */
