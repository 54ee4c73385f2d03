/*
 * conn.c: one peer connection's life: the handshake (HELLO / ACCEPT and the
 * tie-break between two connections of one pair), reading and decoding
 * frames, writing a peer's queues in priority order, and closing.
 *
 * Writing: a peer's RAFT queue always goes first. A BULK payload is written
 * one fragment at a time, and a fragment is only started when every queued
 * RAFT frame has been handed to the socket, so a RAFT frame waits at most for
 * the rest of one fragment. A frame partially accepted by the socket is
 * finished before anything else (the stream may only switch frames at a frame
 * boundary). Writes use sendmsg(MSG_NOSIGNAL) so a dead peer never raises
 * SIGPIPE.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "transport/transport_int.h"

#define IOV_N       64
#define READ_BUF    (256u << 10)
#define READS_PER_EVENT 8 /* fairness between busy peers */

struct tp_conn *tp_conn_new(struct transport *t, int fd, bool outbound, const char *remote)
{
    struct tp_conn *c = nk_calloc(1, sizeof *c);
    c->tag = TP_TAG_CONN;
    c->fd = fd;
    c->outbound = outbound;
    c->state = outbound ? TP_CONNECTING : TP_HANDSHAKE;
    uint64_t now = nk_mono_ms();
    c->deadline_ms = now + t->o.handshake_timeout_ms;
    c->last_recv_ms = c->last_send_ms = c->last_progress_ms = now;
    snprintf(c->remote, sizeof c->remote, "%s", remote);
    transport_decoder_init(&c->dec, t->o.max_frame_bytes);
    c->next = t->conns;
    if (t->conns)
        t->conns->prev = c;
    t->conns = c;
    if (!outbound)
        t->pending++;
    return c;
}

static void ctl_append_frame(struct tp_conn *c, uint8_t type, const void *p, size_t len)
{
    NK_ASSERT(c->ctl_len + TRANSPORT_FRAME_HEADER + len <= sizeof c->ctl);
    transport_frame_header(c->ctl + c->ctl_len, type, 0, p, len);
    if (len)
        memcpy(c->ctl + c->ctl_len + TRANSPORT_FRAME_HEADER, p, len);
    c->ctl_len += TRANSPORT_FRAME_HEADER + len;
}

void tp_conn_queue_hello(struct transport *t, struct tp_conn *c)
{
    struct transport_hello h = {.version = TRANSPORT_PROTOCOL_VERSION,
                                .node_id = t->o.self_id,
                                .cluster_id = t->o.cluster_id,
                                .total_shards = t->o.total_shards,
                                .incarnation = t->incarnation};
    memcpy(h.name, t->self_name, sizeof h.name);
    struct nk_buf b;
    nk_buf_init(&b);
    transport_hello_encode(&h, &b);
    ctl_append_frame(c, TRANSPORT_FRAME_HELLO, b.data, b.len);
    nk_buf_free(&b);
    tp_conn_write_ctl(t, c);
}

void tp_conn_set_out(struct transport *t, struct tp_conn *c, bool want)
{
    if (c->state == TP_DEAD || c->want_out == want)
        return;
    c->want_out = want;
    struct epoll_event ev = {.events = EPOLLIN | (want ? EPOLLOUT : 0), .data.ptr = c};
    if (epoll_ctl(t->epfd, EPOLL_CTL_MOD, c->fd, &ev) != 0)
        NK_WARN(TP_MOD, "epoll_ctl(MOD) on %s: %s", c->remote, strerror(errno));
}

static void mark_broken(struct transport *t, struct tp_conn *c, int err)
{
    if (!c->broken) {
        c->broken = true;
        snprintf(c->error, sizeof c->error, "write to %s failed: %s", c->remote, strerror(err));
        tp_wake(t);
    }
}

void tp_conn_write_ctl(struct transport *t, struct tp_conn *c)
{
    while (c->ctl_off < c->ctl_len && !c->broken) {
        ssize_t w = send(c->fd, c->ctl + c->ctl_off, c->ctl_len - c->ctl_off,
                         MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                mark_broken(t, c, errno);
            break;
        }
        c->ctl_off += (size_t)w;
        c->last_send_ms = nk_mono_ms();
    }
    if (c->ctl_off == c->ctl_len)
        c->ctl_off = c->ctl_len = 0;
    if (c->state != TP_CONNECTING)
        tp_conn_set_out(t, c, c->ctl_len > 0 || (c->state == TP_ACTIVE && c->peer &&
                                                   tp_peer_has_output(c->peer)));
}

bool tp_peer_has_output(const struct tp_peer *p)
{
    return p->q[TRANSPORT_CLASS_RAFT].head || p->q[TRANSPORT_CLASS_BULK].head;
}

void tp_queue_discard(struct tp_peer *p, int cls, bool count)
{
    struct tp_queue *q = &p->q[cls];
    for (struct tp_item *it = q->head, *next; it; it = next) {
        next = it->next;
        if (count && !it->internal)
            p->st.discarded[cls]++;
        free(it);
    }
    memset(q, 0, sizeof *q);
}

void tp_enqueue_internal(struct transport *t, struct tp_peer *p, uint8_t type, const void *payload,
                         size_t len)
{
    struct tp_queue *q = &p->q[TRANSPORT_CLASS_RAFT];
    struct tp_item *tail = q->tail;
    if (type == TRANSPORT_FRAME_BULK_ACK && tail && tail->type == type && tail->off == 0) {
        /* a newer cumulative count replaces one not yet written */
        memcpy(tail->buf + TRANSPORT_FRAME_HEADER, payload, len);
        transport_frame_header(tail->buf, type, 0, payload, len);
        tp_peer_flush(t, p);
        return;
    }
    struct tp_item *it = nk_calloc(1, sizeof *it + TRANSPORT_FRAME_HEADER + len);
    it->type = type;
    it->internal = true;
    it->len = (uint32_t)len;
    if (len)
        memcpy(it->buf + TRANSPORT_FRAME_HEADER, payload, len);
    transport_frame_header(it->buf, type, 0, payload, len);
    if (q->tail)
        q->tail->next = it;
    else
        q->head = it;
    q->tail = it;
    tp_peer_flush(t, p);
}

/* True when a frame is partly on the wire (nothing else may be written). */
static bool peer_mid_frame(const struct tp_peer *p)
{
    const struct tp_item *r = p->q[TRANSPORT_CLASS_RAFT].head;
    const struct tp_item *b = p->q[TRANSPORT_CLASS_BULK].head;
    return (r && r->off > 0) || (b && b->frag_started && b->frag_done > 0);
}

void tp_conn_close(struct transport *t, struct tp_conn *c, const char *reason, bool tell_peer)
{
    if (c->state == TP_DEAD)
        return;
    struct tp_peer *p = c->peer;
    if (tell_peer && c->state != TP_CONNECTING && c->ctl_len == 0 &&
        !(c->state == TP_ACTIVE && p && peer_mid_frame(p))) {
        /* best effort: the other side logs why */
        uint8_t fr[TRANSPORT_FRAME_HEADER + 200];
        size_t rl = NK_MIN(strlen(reason), sizeof fr - TRANSPORT_FRAME_HEADER);
        transport_frame_header(fr, TRANSPORT_FRAME_CLOSE, 0, reason, rl);
        memcpy(fr + TRANSPORT_FRAME_HEADER, reason, rl);
        ssize_t w = send(c->fd, fr, TRANSPORT_FRAME_HEADER + rl, MSG_NOSIGNAL | MSG_DONTWAIT);
        (void)w;
    }
    epoll_ctl(t->epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->fd = -1;
    bool was_active = c->state == TP_ACTIVE;
    if (!c->outbound && !was_active) {
        NK_ASSERT(t->pending > 0);
        t->pending--; /* inbound and never activated */
    }
    c->state = TP_DEAD;
    if (p) {
        if (p->active == c) {
            NK_ASSERT(was_active);
            p->active = NULL;
            for (int k = 0; k < TRANSPORT_NCLASSES; k++)
                tp_queue_discard(p, k, true);
            if (!p->removed && !t->closing) {
                NK_WARN(TP_MOD, "session with node %llu (%s, %s) ended: %s",
                        (unsigned long long)p->id, p->st.name, c->remote, reason);
                snprintf(p->st.last_error, sizeof p->st.last_error, "%s", reason);
                tp_event(t, p->id, TRANSPORT_PEER_DOWN, reason);
                tp_schedule_dial(t, p, false);
            }
        }
        if (p->dialing == c) {
            p->dialing = NULL;
            if (!p->removed && !t->closing && !p->active) {
                tp_peer_error(t, p, c->refused ? NK_LOG_WARN : NK_LOG_INFO,
                              "dial node %llu at %s: %s", (unsigned long long)p->id, p->addr,
                              reason);
                tp_schedule_dial(t, p, true);
            }
        }
    }
    /* unlink; freed after the event batch */
    if (c->prev)
        c->prev->next = c->next;
    else
        t->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->prev = NULL;
    c->next = t->dead;
    t->dead = c;
}

void tp_conn_connected(struct transport *t, struct tp_conn *c)
{
    c->state = TP_HANDSHAKE;
    c->deadline_ms = nk_mono_ms() + t->o.handshake_timeout_ms;
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
    c->want_out = false;
    if (epoll_ctl(t->epfd, EPOLL_CTL_MOD, c->fd, &ev) != 0) {
        tp_conn_close(t, c, "epoll_ctl failed", false);
        return;
    }
    tp_conn_queue_hello(t, c);
}

/* ------------------------------------------------------------- handshake */

static void refuse(struct transport *t, struct tp_conn *c, uint64_t claimed, struct tp_peer *p,
                   const char *reason)
{
    c->refused = true;
    if (p) {
        p->st.refused++;
        if (!c->outbound) /* an outbound one is logged once, as a failed dial */
            tp_peer_error(t, p, NK_LOG_WARN, "refused an inbound connection of node %llu: %s",
                          (unsigned long long)p->id, reason);
    } else {
        t->st.refused_unknown++;
        uint64_t now = nk_mono_ms();
        if (now - t->last_unknown_log_ms >= 10000 || t->last_unknown_log_ms == 0) {
            t->last_unknown_log_ms = now;
            NK_WARN(TP_MOD, "refused inbound connection from %s: %s", c->remote, reason);
        }
    }
    tp_event(t, claimed, TRANSPORT_PEER_REFUSED, reason);
    tp_conn_close(t, c, reason, true);
}

/* Which of two connections of one pair survives: the one dialed by the lower
 * node id; between two dialed by the same node, the newer (b). Both ends
 * compute the same answer. */
static bool conn_wins(const struct tp_conn *a, const struct tp_conn *b)
{
    if (a->dialer != b->dialer)
        return a->dialer < b->dialer;
    return false;
}

static void activate(struct transport *t, struct tp_conn *c)
{
    struct tp_peer *p = c->peer;
    if (p->removed) { /* removed while we were dialing or handshaking */
        tp_conn_close(t, c, "peer removed", true);
        return;
    }
    if (p->dialing == c)
        p->dialing = NULL;
    if (p->active) {
        struct tp_conn *old = p->active;
        if (conn_wins(old, c)) {
            char why[128];
            snprintf(why, sizeof why,
                     "duplicate connection: keeping the one dialed by node %llu",
                     (unsigned long long)old->dialer);
            tp_conn_close(t, c, why, true);
            return;
        }
        tp_conn_close(t, old, "replaced by a newer connection of the same pair", false);
    }
    if (!c->outbound) {
        NK_ASSERT(t->pending > 0);
        t->pending--;
    }
    c->state = TP_ACTIVE;
    p->active = c;
    p->backoff_ms = 0;
    p->st.sessions++;
    p->st.incarnation = c->remote_incarnation;
    memcpy(p->st.name, c->remote_name, sizeof p->st.name);
    c->last_recv_ms = c->last_progress_ms = nk_mono_ms();
    NK_INFO(TP_MOD, "session with node %llu (%s) up over %s (%s, dialed by node %llu)",
            (unsigned long long)p->id, p->st.name, c->remote, c->outbound ? "outbound" : "inbound",
            (unsigned long long)c->dialer);
    tp_event(t, p->id, TRANSPORT_PEER_UP, NULL);
    tp_peer_flush(t, p);
}

static void on_hello(struct transport *t, struct tp_conn *c, const uint8_t *data, size_t len)
{
    struct transport_hello h;
    nk_status s = transport_hello_decode(data, len, &h);
    if (!nk_ok(s)) {
        t->st.malformed++;
        if (c->peer)
            c->peer->st.malformed++;
        refuse(t, c, 0, c->peer, nk_status_msg(s));
        nk_status_free(&s);
        return;
    }
    char why[TRANSPORT_ERROR_MAX];
    struct tp_peer *p = c->outbound ? c->peer : tp_find_peer(t, h.node_id);
    why[0] = 0;
    if (h.version != TRANSPORT_PROTOCOL_VERSION)
        snprintf(why, sizeof why, "node %llu speaks peer protocol version %u, this node %u",
                 (unsigned long long)h.node_id, h.version, TRANSPORT_PROTOCOL_VERSION);
    else if (h.cluster_id && t->o.cluster_id && h.cluster_id != t->o.cluster_id)
        snprintf(why, sizeof why,
                 "node %llu (%.64s) belongs to cluster id %llu, this node (%llu) to cluster id "
                 "%llu",
                 (unsigned long long)h.node_id, h.name, (unsigned long long)h.cluster_id,
                 (unsigned long long)t->o.self_id, (unsigned long long)t->o.cluster_id);
    else if (h.total_shards != t->o.total_shards)
        snprintf(why, sizeof why,
                 "node %llu (%.64s) has total_shards %u, this node (%llu) has total_shards %u",
                 (unsigned long long)h.node_id, h.name, h.total_shards,
                 (unsigned long long)t->o.self_id, t->o.total_shards);
    else if (h.node_id == t->o.self_id)
        snprintf(why, sizeof why, "%s answered with this node's own id %llu", c->remote,
                 (unsigned long long)h.node_id);
    else if (c->outbound && h.node_id != p->id)
        snprintf(why, sizeof why, "%.100s (dialed as node %llu) says it is node %llu (%.64s)",
                 p->addr, (unsigned long long)p->id, (unsigned long long)h.node_id, h.name);
    else if (!p)
        snprintf(why, sizeof why, "node %llu (%.64s) is not a known peer of node %llu",
                 (unsigned long long)h.node_id, h.name, (unsigned long long)t->o.self_id);
    if (why[0]) {
        refuse(t, c, h.node_id, p, why);
        return;
    }
    c->peer = p;
    c->remote_id = h.node_id;
    c->dialer = c->outbound ? t->o.self_id : h.node_id;
    c->remote_incarnation = h.incarnation;
    memcpy(c->remote_name, h.name, sizeof c->remote_name);
    c->hello_ok = true;
    ctl_append_frame(c, TRANSPORT_FRAME_ACCEPT, NULL, 0);
    tp_conn_write_ctl(t, c);
    if (c->accept_seen)
        activate(t, c);
}

/* ----------------------------------------------------------------- reading */

/* Returns false when the connection was closed. Called with t->mu held. */
static bool handle_control(struct transport *t, struct tp_conn *c, const struct transport_frame *f)
{
    switch (f->type) {
    case TRANSPORT_FRAME_HELLO:
        on_hello(t, c, f->data, f->len);
        break;
    case TRANSPORT_FRAME_ACCEPT:
        c->accept_seen = true;
        if (c->hello_ok)
            activate(t, c);
        break;
    case TRANSPORT_FRAME_CLOSE: {
        char why[TRANSPORT_ERROR_MAX];
        int n = (int)NK_MIN(f->len, 200u);
        char txt[201];
        for (int i = 0; i < n; i++)
            txt[i] = (f->data[i] < 0x20 || f->data[i] >= 0x7f) ? '?' : (char)f->data[i];
        txt[n] = 0;
        snprintf(why, sizeof why, "closed by the peer: %s", txt);
        if (c->peer && c->state != TP_ACTIVE && !c->peer->removed) {
            c->peer->st.refused++;
            c->refused = true;
            if (!c->outbound) /* an outbound one is logged once, as a failed dial */
                tp_peer_error(t, c->peer, NK_LOG_WARN, "inbound connection of node %llu %s",
                              (unsigned long long)c->peer->id, why);
            tp_event(t, c->peer->id, TRANSPORT_PEER_REFUSED, why);
        }
        tp_conn_close(t, c, why, false);
        break;
    }
    default:
        break;
    }
    return c->state != TP_DEAD;
}

void tp_conn_readable(struct transport *t, struct tp_conn *c)
{
    for (int k = 0; k < READS_PER_EVENT; k++) {
        ssize_t r = recv(c->fd, t->rbuf, READ_BUF, 0);
        if (r == 0 || (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
            char why[128];
            snprintf(why, sizeof why, "%s", r == 0 ? "connection closed by the peer"
                                                   : strerror(errno));
            pthread_mutex_lock(&t->mu);
            tp_conn_close(t, c, why, false);
            pthread_mutex_unlock(&t->mu);
            tp_fire_events(t);
            return;
        }
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return;
        }
        c->last_recv_ms = nk_mono_ms();
        const uint8_t *p = t->rbuf;
        size_t n = (size_t)r;
        for (;;) {
            struct transport_frame f;
            nk_status err;
            enum transport_decode_result res = transport_decoder_next(&c->dec, &p, &n, &f, &err);
            if (res == TRANSPORT_DECODE_MORE)
                break;
            if (res == TRANSPORT_DECODE_ERROR) {
                pthread_mutex_lock(&t->mu);
                t->st.malformed++;
                char why[TRANSPORT_ERROR_MAX];
                snprintf(why, sizeof why, "malformed frame: %s", nk_status_msg(err));
                if (c->peer && !c->peer->removed) {
                    c->peer->st.malformed++;
                    tp_peer_error(t, c->peer, NK_LOG_WARN, "closing connection with %s: %s",
                                  c->remote, why);
                } else {
                    NK_WARN(TP_MOD, "closing connection with %s: %s", c->remote, why);
                }
                tp_conn_close(t, c, why, true);
                pthread_mutex_unlock(&t->mu);
                nk_status_free(&err);
                tp_fire_events(t);
                return;
            }
            if (f.type == TRANSPORT_FRAME_PING)
                continue;
            if (f.type == TRANSPORT_FRAME_BULK_ACK) {
                uint64_t v = nk_dec_fixed64(f.data);
                pthread_mutex_lock(&t->mu);
                if (v < c->bulk_acked || v > c->bulk_started) {
                    char why[160];
                    snprintf(why, sizeof why,
                             "malformed frame: BULK_ACK of %llu bytes, %llu..%llu possible",
                             (unsigned long long)v, (unsigned long long)c->bulk_acked,
                             (unsigned long long)c->bulk_started);
                    t->st.malformed++;
                    if (c->peer)
                        c->peer->st.malformed++;
                    NK_WARN(TP_MOD, "closing connection with %s: %s", c->remote, why);
                    tp_conn_close(t, c, why, true);
                } else {
                    c->bulk_acked = v;
                    if (c->state == TP_ACTIVE)
                        tp_peer_flush(t, c->peer);
                }
                pthread_mutex_unlock(&t->mu);
                if (c->state == TP_DEAD) {
                    tp_fire_events(t);
                    return;
                }
                continue;
            }
            if (f.type != TRANSPORT_FRAME_RAFT && f.type != TRANSPORT_FRAME_BULK) {
                pthread_mutex_lock(&t->mu);
                bool alive = handle_control(t, c, &f);
                pthread_mutex_unlock(&t->mu);
                tp_fire_events(t); /* UP precedes the session's first payload */
                if (!alive)
                    return;
                continue;
            }
            uint8_t cls = f.type == TRANSPORT_FRAME_RAFT ? TRANSPORT_CLASS_RAFT
                                                         : TRANSPORT_CLASS_BULK;
            pthread_mutex_lock(&t->mu);
            struct tp_peer *peer = c->peer;
            bool deliver = c->state == TP_ACTIVE && peer && !peer->removed && !t->closing;
            if (!deliver && c->state != TP_DEAD) {
                /* the decoder's ordering makes a payload before the session
                 * impossible for a well-behaved peer */
                const char *why = peer && peer->removed
                                  ? "peer removed"
                                  : "payload frame before the handshake completed";
            tp_conn_close(t, c, why, true);
            }
            if (deliver) {
                peer->st.recv_frames[cls]++;
                peer->st.recv_bytes[cls] += f.len;
            }
            uint64_t from = peer ? peer->id : 0;
            pthread_mutex_unlock(&t->mu);
            if (!deliver) {
                tp_fire_events(t);
                return;
            }
            t->o.on_frame(t->o.ctx, from, cls, f.data, f.len);
            if (c->state == TP_DEAD) /* the callback removed the peer, say */
                return;
        }
        if (c->dec.bulk_received > c->bulk_ack_sent && c->state == TP_ACTIVE) {
            /* one cumulative ack per read batch re-opens the sender's window */
            uint8_t v[8];
            nk_enc_fixed64(v, c->dec.bulk_received);
            c->bulk_ack_sent = c->dec.bulk_received;
            pthread_mutex_lock(&t->mu);
            if (c->state == TP_ACTIVE && c->peer && !c->peer->removed)
                tp_enqueue_internal(t, c->peer, TRANSPORT_FRAME_BULK_ACK, v, sizeof v);
            pthread_mutex_unlock(&t->mu);
        }
        if ((size_t)r < READ_BUF)
            return;
    }
}

/* ----------------------------------------------------------------- writing */

static void bulk_start_fragment(struct transport *t, struct tp_conn *c, struct tp_item *b)
{
    uint32_t left = b->len - (uint32_t)b->off;
    b->frag_len = NK_MIN(left, t->o.bulk_fragment_bytes);
    c->bulk_started += b->frag_len;
    uint8_t flags = b->off + b->frag_len < b->len ? TRANSPORT_FRAME_MORE : 0;
    transport_frame_header(b->frag_hdr, TRANSPORT_FRAME_BULK, flags,
                           b->buf + TRANSPORT_FRAME_HEADER + b->off, b->frag_len);
    b->frag_done = 0;
    b->frag_started = true;
}

static void bulk_iov(struct tp_item *b, struct iovec *iov, int *n)
{
    if (b->frag_done < TRANSPORT_FRAME_HEADER)
        iov[(*n)++] = (struct iovec){b->frag_hdr + b->frag_done,
                                     TRANSPORT_FRAME_HEADER - b->frag_done};
    size_t pdone = b->frag_done > TRANSPORT_FRAME_HEADER ? b->frag_done - TRANSPORT_FRAME_HEADER
                                                         : 0;
    if (b->frag_len > pdone)
        iov[(*n)++] = (struct iovec){b->buf + TRANSPORT_FRAME_HEADER + b->off + pdone,
                                     b->frag_len - pdone};
}

static void item_done(struct tp_peer *p, int cls, struct tp_item *it)
{
    struct tp_queue *q = &p->q[cls];
    NK_ASSERT(q->head == it);
    q->head = it->next;
    if (!q->head)
        q->tail = NULL;
    if (!it->internal) {
        q->frames--;
        q->bytes -= it->len;
        p->st.sent_frames[cls]++;
        p->st.sent_bytes[cls] += it->len;
    }
    free(it);
}

/* Advances the bulk head by up to w bytes; returns the bytes used. */
static size_t bulk_consume(struct tp_peer *p, size_t w)
{
    struct tp_item *b = p->q[TRANSPORT_CLASS_BULK].head;
    size_t total = TRANSPORT_FRAME_HEADER + b->frag_len;
    size_t use = NK_MIN(w, total - b->frag_done);
    b->frag_done += (uint32_t)use;
    if (b->frag_done == total) {
        b->off += b->frag_len;
        b->frag_started = false;
        b->frag_len = b->frag_done = 0;
        if (b->off == b->len)
            item_done(p, TRANSPORT_CLASS_BULK, b);
    }
    return use;
}

void tp_peer_flush(struct transport *t, struct tp_peer *p)
{
    struct tp_conn *c = p->active;
    if (!c || c->state != TP_ACTIVE || c->broken)
        return;
    if (c->ctl_len) {
        tp_conn_write_ctl(t, c);
        if (c->ctl_len)
            return;
    }
    struct iovec iov[IOV_N];
    for (int round = 0; round < 64; round++) {
        int n = 0;
        size_t want = 0;
        struct tp_item *b = p->q[TRANSPORT_CLASS_BULK].head;
        bool bulk_first = b && b->frag_started && b->frag_done > 0;
        if (bulk_first)
            bulk_iov(b, iov, &n);
        struct tp_item *r = p->q[TRANSPORT_CLASS_RAFT].head;
        for (; r && n < IOV_N - 2; r = r->next)
            iov[n++] = (struct iovec){r->buf + r->off, TRANSPORT_FRAME_HEADER + r->len - r->off};
        /* a new fragment only while the window has room */
        uint64_t in_flight = c->bulk_started - c->bulk_acked;
        bool bulk_last = !bulk_first && !r && b &&
                         (b->frag_started || in_flight < t->o.bulk_window_bytes);
        if (bulk_last) {
            if (!b->frag_started)
                bulk_start_fragment(t, c, b);
            bulk_iov(b, iov, &n);
        }
        if (n == 0)
            break;
        for (int i = 0; i < n; i++)
            want += iov[i].iov_len;
        struct msghdr mh = {.msg_iov = iov, .msg_iovlen = (size_t)n};
        ssize_t w = sendmsg(c->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                mark_broken(t, c, errno);
            break;
        }
        uint64_t now = nk_mono_ms();
        c->last_send_ms = c->last_progress_ms = now;
        size_t left = (size_t)w;
        if (bulk_first)
            left -= bulk_consume(p, left);
        while (left && p->q[TRANSPORT_CLASS_RAFT].head) {
            struct tp_item *it = p->q[TRANSPORT_CLASS_RAFT].head;
            size_t rem = TRANSPORT_FRAME_HEADER + it->len - it->off;
            size_t use = NK_MIN(rem, left);
            it->off += use;
            left -= use;
            if (use == rem)
                item_done(p, TRANSPORT_CLASS_RAFT, it);
        }
        if (left && bulk_last)
            left -= bulk_consume(p, left);
        NK_ASSERT(left == 0);
        if ((size_t)w < want)
            break; /* the socket is full */
    }
    /* waiting on the peer's BULK_ACK is not waiting on the socket */
    bool blocked_on_window = !p->q[TRANSPORT_CLASS_RAFT].head && p->q[TRANSPORT_CLASS_BULK].head &&
                             !p->q[TRANSPORT_CLASS_BULK].head->frag_started &&
                             c->bulk_started - c->bulk_acked >= t->o.bulk_window_bytes;
    tp_conn_set_out(t, c, c->broken || blocked_on_window ? false : tp_peer_has_output(p));
}
