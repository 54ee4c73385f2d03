/*
 * peers.c: the node's side of node-to-node traffic, on src/transport.
 *
 * Outgoing: during a round the loop queues every Raft message of every group
 * into one buffer per peer (node_peers_queue); node_peers_flush sends each
 * buffer as one frame, so all the groups' heartbeats and appends for a peer
 * travel together (docs/format/node-frames.md). Messages a leader may send
 * before its own log is durable (appends, heartbeats: Raft thesis 10.2.1; the
 * leader counts its own entries only after raft_advance) go in the "early"
 * buffers, flushed before the round's fdatasync; everything else (votes,
 * responses: they promise what must be on disk first) after it.
 *
 * Incoming: the transport thread hands each frame to on_frame, which copies
 * it into a bounded ring (frames and bytes; full: the frame is dropped and
 * counted, as a lossy network would, and Raft retransmits) and wakes the
 * loop; the loop decodes and steps the messages at the start of its round.
 * Frames are untrusted: whatever does not decode is dropped with a logged
 * reason, never a panic.
 *
 * INFO frames tell a peer our member identity and client address, for
 * leader hints and the ClusterView.
 */
#include "node/internal.h"

#include <inttypes.h>

#include "placement/placement.h"
#include "transport/transport.h"

#define FRAME_RAFT 1
#define FRAME_INFO 2
#define FRAME_SNAP 3
#define FRAME_LEADS 4 /* retired: LEADS2 replaced it */
#define FRAME_SNAP_REQUEST 5
#define FRAME_ALIVE 6
#define FRAME_LEADS2 7
#define FRAME_REMOVED 8 /* fixed64 id: that member was removed for good */
#define INFO_VERSION 2 /* 2 adds flags (bit 0: draining) and the replication factor */

#define IN_MAX_FRAMES 4096
#define IN_MAX_BYTES  (128ULL << 20)
#define OUT_FLUSH_BYTES (4u << 20) /* a peer's buffer is sent once this big */

/* ------------------------------------------------------------- incoming */

bool node_peers_have_inbound(struct node *n)
{
    return n->in_len > 0;
}

static void push_inbound(struct node *n, uint64_t from, const uint8_t *data, size_t len)
{
    pthread_mutex_lock(&n->qmu);
    if (n->in_len == n->in_cap || n->in_bytes + len > IN_MAX_BYTES) {
        pthread_mutex_unlock(&n->qmu);
        atomic_fetch_add_explicit(&n->st_in_dropped, 1, memory_order_relaxed);
        return;
    }
    struct inbound *in = &n->in[(n->in_head + n->in_len) % n->in_cap];
    in->from = from;
    in->data = nk_memdup(data, len);
    in->len = len;
    n->in_len++;
    n->in_bytes += len;
    bool wake = n->loop_sleeping;
    n->loop_sleeping = false;
    pthread_mutex_unlock(&n->qmu);
    if (wake)
        pthread_cond_signal(&n->qcv);
}

static void send_info(struct node *n, uint64_t to);

void node_peers_push_internal(struct node *n, uint64_t from, const uint8_t *data, size_t len)
{
    push_inbound(n, from, data, len);
}

static void on_info(struct node *n, uint64_t from, const uint8_t *p, size_t len)
{
    struct nk_reader r;
    nk_reader_init(&r, p, len);
    uint8_t kind = 0, ver = 0;
    uint64_t cid = 0, total = 0;
    struct nk_slice name, addr;
    nk_reader_u8(&r, &kind);
    nk_reader_u8(&r, &ver);
    nk_reader_varint64(&r, &cid);
    nk_reader_varint64(&r, &total);
    nk_reader_lenbytes(&r, 127, &name);
    nk_reader_lenbytes(&r, 127, &addr);
    uint8_t flags = 0;
    uint64_t rf = 0;
    if (ver >= 2) {
        nk_reader_u8(&r, &flags);
        nk_reader_varint64(&r, &rf);
    }
    if (r.bad || ver < 1 || ver > INFO_VERSION || (flags & ~1u) || rf > PLACEMENT_MAX_RF) {
        atomic_fetch_add_explicit(&n->st_bad_frames, 1, memory_order_relaxed);
        NK_WARN(MODULE, "peer %016" PRIx64 ": malformed INFO frame dropped", from);
        return;
    }
    if (cid && n->cluster_id && cid != n->cluster_id) {
        NK_ERROR(MODULE,
                 "peer %.*s (%016" PRIx64 ") belongs to cluster %016" PRIx64
                 ", this node to %016" PRIx64 "; its messages are ignored",
                 (int)name.len, (const char *)name.data, from, cid, n->cluster_id);
        return;
    }
    pthread_mutex_lock(&n->vmu);
    int i = node_member_index(n, from);
    uint64_t replaced = 0;
    for (uint32_t k = 0; i >= 0 && k < n->n_members; k++) {
        const struct member *o = &n->members[k];
        if (o->id != from && o->id != n->self_id && o->swim_state != SWIM_LEFT &&
            strlen(o->name) == name.len && memcmp(o->name, name.data, name.len) == 0)
            replaced = o->id; /* the same name under a new id: it came back without its data */
    }
    if (i >= 0) {
        struct member *m = &n->members[i];
        if (strlen(m->name) != name.len || memcmp(m->name, name.data, name.len) != 0)
            atomic_store_explicit(&n->members_dirty, true, memory_order_release);
        snprintf(m->name, sizeof m->name, "%.*s", (int)name.len, (const char *)name.data);
        m->draining = flags & 1;
        if (rf && rf != n->rf && n->rf_provisional) {
            /* the cluster's: a joined node took its own configuration's */
            n->rf = (uint32_t)rf;
            n->rf_provisional = false;
            atomic_store_explicit(&n->members_dirty, true, memory_order_release);
        }
        snprintf(m->client_addr, sizeof m->client_addr, "%.*s", (int)addr.len,
                 (const char *)addr.data);
        n->view_local++;
    }
    pthread_mutex_unlock(&n->vmu);
    if (replaced)
        node_member_mark_left(n, replaced,
                              "a new member took its name: it came back with an empty data "
                              "directory");
}

/* ALIVE: one byte, sent by the loop to every peer each tick (quiesce.c). */
void node_peers_send_alive(struct node *n)
{
    if (!n->tp)
        return;
    uint8_t b = FRAME_ALIVE;
    for (uint32_t i = 0; i < n->n_members; i++) {
        if (n->members[i].id == n->self_id)
            continue;
        nk_status s = transport_send(n->tp, n->members[i].id, TRANSPORT_CLASS_RAFT, &b, 1);
        nk_status_free(&s);
    }
}

void node_peers_send_leads(struct node *n)
{
    if (!n->tp)
        return;
    struct nk_buf b;
    nk_buf_init(&b);
    uint64_t count = 0;
    struct nk_buf body, cb;
    nk_buf_init(&body);
    nk_buf_init(&cb);
    for (uint32_t s = 0; s < n->nshards; s++) {
        struct group *g = &n->groups[s];
        if (!g->r || g->damaged || raft_role(g->r) != RAFT_LEADER)
            continue;
        nk_buf_put_varint64(&body, s);
        nk_buf_put_varint64(&body, raft_term(g->r));
        const struct raft_conf_state *ac = raft_applied_conf(g->r), *lc = raft_conf(g->r);
        node_conf_encode(ac, &cb);
        nk_buf_put_lenbytes(&body, cb.data, cb.len);
        bool same = node_conf_equal(ac, lc);
        nk_buf_put_u8(&body, same ? 0 : 1);
        if (!same) {
            node_conf_encode(lc, &cb);
            nk_buf_put_lenbytes(&body, cb.data, cb.len);
        }
        count++;
    }
    nk_buf_put_u8(&b, FRAME_LEADS2);
    nk_buf_put_varint64(&b, count);
    nk_buf_append(&b, body.data, body.len);
    for (uint32_t i = 0; i < n->n_members; i++) {
        if (n->members[i].id == n->self_id || n->members[i].swim_state == SWIM_LEFT)
            continue;
        nk_status s = transport_send(n->tp, n->members[i].id, TRANSPORT_CLASS_RAFT, b.data, b.len);
        nk_status_free(&s);
    }
    nk_buf_free(&cb);
    nk_buf_free(&body);
    nk_buf_free(&b);
}

/*
 * LEADS2: per shard the peer leads, its term, the configuration it applied
 * and (flag 1) its latest one when a change is in flight
 * (docs/format/node-frames.md). A shard without a replica here takes the
 * leader and replicas for routing and the view; a replica here that neither
 * configuration lists was removed while it could not hear of it: the loop
 * deletes it (replica.c).
 */
bool node_leads2_next(struct nk_reader *r, uint32_t nshards, struct node_leads2_entry *e)
{
    uint8_t more = 0;
    memset(e, 0, sizeof *e);
    nk_reader_varint64(r, &e->shard);
    nk_reader_varint64(r, &e->term);
    nk_reader_lenbytes(r, 4096, &e->applied_blob);
    nk_reader_u8(r, &more);
    if (more == 1)
        nk_reader_lenbytes(r, 4096, &e->latest_blob);
    e->more = more == 1;
    if (r->bad || e->shard >= nshards || more > 1 ||
        !node_conf_decode(e->applied_blob.data, e->applied_blob.len, &e->applied) ||
        (e->more && !node_conf_decode(e->latest_blob.data, e->latest_blob.len, &e->latest))) {
        r->bad = true;
        return false;
    }
    if (!e->more)
        e->latest = e->applied;
    return true;
}

static void on_leads2(struct node *n, uint64_t from, const uint8_t *p, size_t len)
{
    struct nk_reader r;
    nk_reader_init(&r, p + 1, len - 1);
    uint64_t count = 0;
    nk_reader_varint64(&r, &count);
    uint32_t *listed = nk_malloc(n->nshards * sizeof(*listed));
    size_t nlisted = 0;
    struct nk_buf gc;
    nk_buf_init(&gc);
    for (uint64_t k = 0; k < count && !r.bad; k++) {
        struct node_leads2_entry e;
        if (!node_leads2_next(&r, n->nshards, &e))
            break;
        uint64_t shard = e.shard, term = e.term;
        const struct raft_conf_state ac = e.applied;
        struct nk_slice ab = e.applied_blob;
        if (nlisted < n->nshards)
            listed[nlisted++] = (uint32_t)shard;
        struct shard_pub *sp = &n->pub[shard];
        bool hosted = atomic_load_explicit(&sp->hosted, memory_order_acquire);
        if (hosted) {
            if (!node_conf_lists(&ac, n->self_id) && !node_conf_lists(&e.latest, n->self_id)) {
                nk_buf_clear(&gc);
                nk_buf_put_u8(&gc, NODE_INBOUND_GC);
                nk_buf_put_varint64(&gc, shard);
                nk_buf_put_varint64(&gc, term);
                nk_buf_put_lenbytes(&gc, ab.data, ab.len);
                push_inbound(n, from, gc.data, gc.len);
            }
            /* a replica here knows its own configuration, unless it was
             * just created and has none yet: then the leader's stands */
            pthread_mutex_lock(&n->vmu);
            bool known = n->sconf[shard].n > 0;
            pthread_mutex_unlock(&n->vmu);
            if (known)
                continue;
        }
        if (!hosted && term >= atomic_load_explicit(&sp->lead_term, memory_order_acquire)) {
            atomic_store_explicit(&sp->lead_term, term, memory_order_release);
            atomic_store_explicit(&sp->lead, from, memory_order_release);
        }
        pthread_mutex_lock(&n->vmu);
        struct shard_conf *sc = &n->sconf[shard];
        if ((term >= sc->term || sc->n == 0) &&
            (!hosted || sc->n == 0)) {
            memset(sc, 0, sizeof *sc);
            sc->term = term;
            for (uint8_t i = 0; i < ac.n_voters && sc->n < NODE_VIEW_REPLICAS; i++)
                sc->ids[sc->n++] = ac.voters[i];
            for (uint8_t i = 0; i < ac.n_learners && sc->n_learners < NODE_VIEW_REPLICAS; i++)
                sc->learners[sc->n_learners++] = ac.learners[i];
        }
        pthread_mutex_unlock(&n->vmu);
    }
    if (r.bad)
        atomic_fetch_add_explicit(&n->st_bad_frames, 1, memory_order_relaxed);
    else
        node_quiesce_note_leads(n, from, listed, nlisted);
    nk_buf_free(&gc);
    free(listed);
    pthread_mutex_lock(&n->vmu);
    n->view_local++;
    pthread_mutex_unlock(&n->vmu);
}

static void on_frame(void *ctx, uint64_t from, uint8_t cls, const uint8_t *data, size_t len)
{
    struct node *n = ctx;
    (void)cls;
    node_quiesce_note_frame(n, from); /* any frame: the peer's node runs */
    if (len == 1 && data[0] == FRAME_ALIVE)
        return;
    if (len == 0) {
        atomic_fetch_add_explicit(&n->st_bad_frames, 1, memory_order_relaxed);
        return;
    }
    if (data[0] == FRAME_INFO) {
        on_info(n, from, data, len);
        return;
    }
    if (data[0] == FRAME_SNAP) {
        node_snap_on_chunk(n, from, data, len);
        return;
    }
    if (data[0] == FRAME_REMOVED) {
        if (len != 9) {
            atomic_fetch_add_explicit(&n->st_bad_frames, 1, memory_order_relaxed);
            return;
        }
        node_member_mark_left(n, nk_dec_fixed64(data + 1), "removed by an operator");
        return;
    }
    if (data[0] == FRAME_LEADS2) {
        on_leads2(n, from, data, len);
        return;
    }
    if (data[0] == FRAME_SNAP_REQUEST) {
        node_rebuild_on_request(n, from, data, len);
        return;
    }
    if (data[0] != FRAME_RAFT) {
        atomic_fetch_add_explicit(&n->st_bad_frames, 1, memory_order_relaxed);
        NK_WARN(MODULE, "peer %016" PRIx64 ": frame of unknown kind %u dropped", from, data[0]);
        return;
    }
    push_inbound(n, from, data, len);
}

static void on_peer(void *ctx, uint64_t peer, enum transport_peer_event ev, const char *reason)
{
    struct node *n = ctx;
    if (ev == TRANSPORT_PEER_REFUSED) {
        NK_ERROR(MODULE, "peer %016" PRIx64 " refused: %s", peer, reason ? reason : "");
        return;
    }
    bool up = ev == TRANSPORT_PEER_UP;
    if (!up) {
        /* what that peer told us it leads is no longer known */
        for (uint32_t s = 0; s < n->nshards; s++)
            if (!atomic_load(&n->pub[s].hosted) && atomic_load(&n->pub[s].lead) == peer) {
                atomic_store(&n->pub[s].lead, 0);
                atomic_store(&n->pub[s].lead_term, 0);
            }
    }
    pthread_mutex_lock(&n->vmu);
    int i = node_member_index(n, peer);
    if (i >= 0 && n->members[i].up != up) {
        n->members[i].up = up;
        n->view_local++;
    }
    pthread_mutex_unlock(&n->vmu);
    if (up)
        send_info(n, peer);
    else
        NK_WARN(MODULE, "peer %016" PRIx64 " down: %s", peer, reason ? reason : "");
}

static void send_info(struct node *n, uint64_t to)
{
    struct nk_buf b;
    nk_buf_init(&b);
    nk_buf_put_u8(&b, FRAME_INFO);
    nk_buf_put_u8(&b, INFO_VERSION);
    pthread_mutex_lock(&n->vmu);
    nk_buf_put_varint64(&b, n->cluster_id);
    nk_buf_put_varint64(&b, n->nshards);
    size_t nl = strlen(n->name), al = strlen(n->client_addr);
    nk_buf_put_lenbytes(&b, n->name, nl > 127 ? 127 : nl);
    nk_buf_put_lenbytes(&b, n->client_addr, al > 127 ? 127 : al);
    nk_buf_put_u8(&b, n->draining ? 1 : 0);
    nk_buf_put_varint64(&b, n->rf);
    pthread_mutex_unlock(&n->vmu);
    nk_status s = transport_send(n->tp, to, TRANSPORT_CLASS_RAFT, b.data, b.len);
    nk_status_free(&s); /* a lost INFO is sent again at the next session */
    nk_buf_free(&b);
}

void node_peers_send_removed(struct node *n, uint64_t id)
{
    if (!n->tp)
        return;
    uint8_t b[9];
    b[0] = FRAME_REMOVED;
    nk_enc_fixed64(b + 1, id);
    pthread_mutex_lock(&n->vmu);
    uint64_t to[NODE_MAX_MEMBERS];
    uint32_t k = 0;
    for (uint32_t i = 0; i < n->n_members; i++)
        if (n->members[i].id != n->self_id && n->members[i].id != id)
            to[k++] = n->members[i].id;
    pthread_mutex_unlock(&n->vmu);
    for (uint32_t i = 0; i < k; i++) {
        nk_status s = transport_send(n->tp, to[i], TRANSPORT_CLASS_RAFT, b, sizeof b);
        nk_status_free(&s); /* a member not connected now learns it from SWIM's dead state;
                               the operator may repeat the call */
    }
}

void node_peers_announce(struct node *n)
{
    if (!n->tp)
        return;
    for (uint32_t i = 0; i < n->n_members; i++)
        if (n->members[i].id != n->self_id)
            send_info(n, n->members[i].id);
}

/* Steps every message of one RAFT frame into its group. */
static void step_frame(struct node *n, const struct inbound *in)
{
    /* decoded messages' arrays live in one arena per frame (bounded by the
     * frame's size); raft_step copies what it keeps */
    struct nk_arena arena_;
    struct nk_arena *arena = &arena_;
    nk_arena_init(arena);
    struct nk_reader r;
    nk_reader_init(&r, in->data + 1, in->len - 1);
    uint64_t count = 0;
    nk_reader_varint64(&r, &count);
    for (uint64_t k = 0; k < count && !r.bad; k++) {
        uint64_t shard = 0;
        struct nk_slice msg;
        nk_reader_varint64(&r, &shard);
        nk_reader_lenbytes(&r, RAFT_MSG_MAX_BYTES, &msg);
        if (r.bad)
            break;
        if (shard >= n->nshards)
            goto bad;
        struct group *g = &n->groups[shard];
        if (g->damaged)
            continue;
        struct raft_msg m;
        nk_status s = raft_msg_decode(msg.data, msg.len, arena, &m);
        if (!nk_ok(s)) {
            NK_WARN(MODULE, "peer %016" PRIx64 ": shard %" PRIu64 ": %s; frame dropped", in->from,
                    shard, nk_status_msg(s));
            nk_status_free(&s);
            goto bad;
        }
        if (m.from != in->from || m.to != n->self_id)
            goto bad; /* a peer speaks only for itself, to us */
        if (!g->r && !node_replica_create(n, (uint32_t)shard, &m, in->from))
            continue; /* not a replica here (any more), and not one being added */
        if ((m.type == RAFT_MSG_VOTE || m.type == RAFT_MSG_PREVOTE) &&
            !node_conf_lists(raft_conf(g->r), n->self_id))
            continue; /* a replica not initialized yet (no state from its leader) never votes */
        /* a message wakes a quiet group, except a heartbeat response to a
         * quiet leader (the late answer to its last heartbeat) */
        g->quiet_ticks = 0;
        if (raft_is_quiesced(g->r) &&
            !(m.type == RAFT_MSG_HEARTBEAT_RESP && raft_role(g->r) == RAFT_LEADER)) {
            node_group_unquiesce(n, g);
            g->idle_ticks = 0;
        }
        s = raft_step(g->r, &m);
        if (!nk_ok(s)) {
            NK_WARN(MODULE, "peer %016" PRIx64 ": shard %" PRIu64 ": %s", in->from, shard,
                    nk_status_msg(s));
            nk_status_free(&s);
        }
        node_mark_dirty(n, g);
    }
    if (!r.bad) {
        nk_arena_free(arena);
        return;
    }
bad:
    nk_arena_free(arena);
    atomic_fetch_add_explicit(&n->st_bad_frames, 1, memory_order_relaxed);
}

void node_peers_take_inbound(struct node *n)
{
    if (!n->tp)
        return;
    struct inbound batch[256];
    for (;;) {
        size_t k = 0;
        pthread_mutex_lock(&n->qmu);
        while (n->in_len && k < NK_ARRAY_LEN(batch)) {
            batch[k++] = n->in[n->in_head];
            n->in_bytes -= n->in[n->in_head].len;
            n->in_head = (n->in_head + 1) % n->in_cap;
            n->in_len--;
        }
        pthread_mutex_unlock(&n->qmu);
        if (k == 0)
            break;
        for (size_t i = 0; i < k; i++) {
            uint8_t kind = batch[i].data[0];
            if (kind == NODE_INBOUND_GC) {
                node_replica_on_gc(n, batch[i].data, batch[i].len);
            } else if (kind == NODE_INBOUND_MEMBER) {
                node_members_on_new(n, batch[i].data, batch[i].len);
            } else if (kind == NODE_INBOUND_SNAP_READY || kind == NODE_INBOUND_SNAP_WANTED) {
                uint64_t shard = 0;
                nk_dec_varint64(batch[i].data + 1, batch[i].data + batch[i].len, &shard);
                if (shard < n->nshards && kind == NODE_INBOUND_SNAP_READY)
                    node_snap_ready(n, (uint32_t)shard);
                else if (shard < n->nshards)
                    node_rebuild_serve(n, batch[i].from, (uint32_t)shard);
            } else {
                step_frame(n, &batch[i]);
            }
            free(batch[i].data);
        }
        if (k < NK_ARRAY_LEN(batch))
            break;
    }
}

/* ------------------------------------------------------------- outgoing */

static void send_out(struct node *n, int idx, struct peer_out *o)
{
    if (o->count == 0)
        return;
    uint8_t hdr[1 + NK_VARINT64_MAX];
    hdr[0] = FRAME_RAFT;
    size_t hl = 1 + nk_enc_varint64(hdr + 1, o->count);
    struct nk_slice parts[2] = {nk_slice_make(hdr, hl), nk_slice_make(o->buf.data, o->buf.len)};
    nk_status s = transport_sendv(n->tp, n->members[idx].id, TRANSPORT_CLASS_RAFT, parts, 2);
    if (!nk_ok(s)) {
        /* down or full: lost, as on a lossy network; Raft retransmits */
        atomic_fetch_add_explicit(&n->st_out_dropped, o->count, memory_order_relaxed);
        nk_status_free(&s);
    }
    nk_buf_clear(&o->buf);
    o->count = 0;
}

void node_peers_queue(struct node *n, uint32_t shard, const struct raft_msg *m)
{
    if (!n->tp)
        return;
    int idx = node_member_index(n, m->to);
    if (idx < 0 || m->to == n->self_id)
        return; /* not a member (any more) */
    bool early = m->type == RAFT_MSG_APPEND || m->type == RAFT_MSG_HEARTBEAT;
    struct peer_out *o = early ? &n->out_early[idx] : &n->out_late[idx];
    struct nk_buf *tmp = &n->msg_buf;
    nk_buf_clear(tmp);
    raft_msg_encode(m, tmp);
    nk_buf_put_varint64(&o->buf, shard);
    nk_buf_put_lenbytes(&o->buf, tmp->data, tmp->len);
    o->count++;
    if (o->buf.len >= OUT_FLUSH_BYTES)
        send_out(n, idx, o);
}

void node_peers_flush(struct node *n, bool early)
{
    if (!n->tp)
        return;
    for (uint32_t i = 0; i < n->n_members; i++)
        send_out(n, (int)i, early ? &n->out_early[i] : &n->out_late[i]);
}

/* ------------------------------------------------------------ lifecycle */

nk_status node_peers_open(struct node *n)
{
    if (!n->in) {
        n->in_cap = IN_MAX_FRAMES;
        n->in = nk_calloc(n->in_cap, sizeof(*n->in));
        for (uint32_t i = 0; i < NODE_MAX_MEMBERS; i++) {
            nk_buf_init(&n->out_early[i].buf);
            nk_buf_init(&n->out_late[i].buf);
        }
        nk_buf_init(&n->msg_buf);
    }
    if (!n->tp) {
        /* The HELLO carries the cluster id once known; a member still
         * bootstrapping does not know it before it has learned the members
         * through the HELLOs themselves, and sends 0 (not checked) until
         * node_peers_set_cluster_id. A joining node learns it from the
         * HELLO of the member it joins through (members.c). */
        struct transport_options to = {
            .self_id = n->self_id,
            .self_name = n->name,
            .listen_addr = n->opt.peer_addr ? n->opt.peer_addr : "127.0.0.1:9101",
            .cluster_id = n->cluster_id, /* 0 until bootstrap learns it */
            .total_shards = n->nshards,
            .on_frame = on_frame,
            .on_peer = on_peer,
            .ctx = n,
        };
        NK_TRY(transport_open(&to, &n->tp));
        NK_INFO(MODULE, "peer transport on %s (node %s, id %016" PRIx64 ")",
                transport_listen_addr(n->tp), n->name, n->self_id);
    }
    return NK_OK;
}

void node_peers_set_cluster_id(struct node *n)
{
    if (n->tp)
        transport_set_cluster_id(n->tp, n->cluster_id);
}

nk_status node_peers_add_members(struct node *n)
{
    for (uint32_t i = 0; i < n->n_members; i++) {
        const struct member *m = &n->members[i];
        if (m->id == n->self_id || m->swim_state == SWIM_LEFT)
            continue;
        nk_status s = transport_add_peer(n->tp, m->id, m->peer_addr[0] ? m->peer_addr : NULL);
        if (s.code == NK_ALREADY_EXISTS) {
            nk_status_free(&s);
            continue;
        }
        NK_TRY(s);
    }
    return NK_OK;
}

void node_peers_close(struct node *n)
{
    if (n->tp) {
        transport_close(n->tp);
        n->tp = NULL;
    }
    for (size_t i = 0; i < n->in_len; i++)
        free(n->in[(n->in_head + i) % n->in_cap].data);
    free(n->in);
    n->in = NULL;
    n->in_len = 0;
    for (uint32_t i = 0; i < NODE_MAX_MEMBERS; i++) {
        nk_buf_free(&n->out_early[i].buf);
        nk_buf_free(&n->out_late[i].buf);
    }
    nk_buf_free(&n->msg_buf);
}

size_t node_transport_stats(struct node *n, struct transport_stats *totals,
                            struct transport_peer_stats *peers, size_t cap)
{
    memset(totals, 0, sizeof *totals);
    if (!n->tp)
        return 0;
    size_t np = 0;
    transport_stats(n->tp, totals, peers, cap, &np);
    return np < cap ? np : cap;
}
