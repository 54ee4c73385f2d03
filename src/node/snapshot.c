/*
 * snapshot.c: bringing a replica that fell behind the leader's compacted
 * log up to date, by streaming the shard's state (docs/format/node-frames.md
 * "SNAP_CHUNK") instead of entries.
 *
 * Leader: raft asks for a snapshot with a MsgSnap (its compaction point S).
 * The loop does not send that message; it starts a job instead: an LSM
 * snapshot taken on the loop, between two applies, so it holds exactly the
 * shard's state at its applied index A >= S, with A's term and the
 * membership at A. The sender thread walks the shard's key range at that
 * snapshot and sends it in chunks of about 1 MiB on the transport's BULK
 * class (behind every Raft frame, flow-controlled by the bounded queue). At
 * most SNAP_MAX_JOBS run; a job for a (shard, peer) that already has one is
 * not started twice. A job that cannot finish (peer down) is abandoned; raft
 * asks again after two election timeouts.
 *
 * Follower: the transport thread stages the chunks of a shard in memory
 * (bounded: SNAP_STAGE_MAX per snapshot, SNAP_MAX_RECV at once); once the
 * last one arrived, the loop steps a MsgSnap built from the first chunk's
 * metadata into the group. When raft accepts it (the snapshot is newer than
 * what it committed), its Ready carries the snapshot and the loop installs
 * it: one LSM write batch deletes every key of the shard's range and writes
 * the staged ones (the applied record comes with them: the state is the
 * leader's at A, its time included), the LSM is flushed so the state is
 * durable before the log forgets, and the log is compacted to (A, term,
 * membership) in the round's raft log write.
 *
 * Not yet: snapshots larger than SNAP_STAGE_MAX (they would need a
 * multi-batch install with a crash marker).
 */
#include "node/internal.h"

#include <inttypes.h>

#include "kv/kv.h"
#include "transport/transport.h"

#define FRAME_SNAP       3
#define SNAP_CHUNK_BYTES (1u << 20)
#define SNAP_MAX_JOBS    4
#define SNAP_MAX_RECV    4
#define SNAP_STAGE_MAX   (256ULL << 20)
#define SNAP_FLAG_LAST   1

struct snap_job {
    bool used;
    uint32_t shard;
    uint64_t to, id, leader_term, index, term;
    struct raft_conf_state conf;
    const struct lsm_snapshot *snap;
};

struct snap_recv {
    bool used, complete, offered;
    uint32_t shard;
    uint64_t from, id, next_seq, leader_term, index, term;
    struct raft_conf_state conf;
    struct nk_buf data; /* records: lenbytes key, lenbytes value, varint expiry */
};

struct node_snap {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t sender;
    bool sender_started, stop;
    struct snap_job jobs[SNAP_MAX_JOBS];
    struct snap_recv recv[SNAP_MAX_RECV];
    uint64_t next_id;
    _Atomic uint64_t sent, installed, aborted;
};

/* ----------------------------------------------------------- encoding */

static void put_conf(struct nk_buf *b, const struct raft_conf_state *c)
{
    struct nk_buf tmp;
    nk_buf_init(&tmp);
    node_conf_encode(c, &tmp);
    nk_buf_put_lenbytes(b, tmp.data, tmp.len);
    nk_buf_free(&tmp);
}

/* ------------------------------------------------------------- sender */

void node_shard_range(uint32_t shard, uint8_t lo[2], uint8_t hi[3], size_t *hi_len)
{
    nk_enc_be16(lo, (uint16_t)shard);
    if (shard < 0xffff) {
        nk_enc_be16(hi, (uint16_t)(shard + 1));
        *hi_len = 2;
    } else {
        hi[0] = 0xff;
        hi[1] = 0xff;
        hi[2] = 0xff; /* every key of shard 65535 sorts below it */
        *hi_len = 3;
    }
}

/* Sends one payload, waiting while the peer's BULK queue is full. False
 * when the peer is down or the node stops. */
static bool send_chunk(struct node *n, uint64_t to, const struct nk_buf *b)
{
    for (int waited = 0;; waited++) {
        nk_status s = transport_send(n->tp, to, TRANSPORT_CLASS_BULK, b->data, b->len);
        if (nk_ok(s))
            return true;
        enum nk_code code = s.code;
        nk_status_free(&s);
        if (code != NK_RESOURCE_EXHAUSTED || atomic_load(&n->closed) || waited > 6000)
            return false; /* down, stopping, or stuck for a minute */
        struct timespec ts = {0, 10 * 1000000L};
        nanosleep(&ts, NULL);
    }
}

/* Starts a chunk: its header; *flag_at is where the flags byte is. */
static void start_chunk(struct nk_buf *b, const struct snap_job *j, uint64_t seq, size_t *flag_at)
{
    nk_buf_clear(b);
    nk_buf_put_u8(b, FRAME_SNAP);
    nk_buf_put_varint64(b, j->shard);
    nk_buf_put_fixed64(b, j->id);
    nk_buf_put_varint64(b, seq);
    *flag_at = b->len;
    nk_buf_put_u8(b, 0);
    if (seq == 0) {
        nk_buf_put_varint64(b, j->leader_term);
        nk_buf_put_varint64(b, j->index);
        nk_buf_put_varint64(b, j->term);
        put_conf(b, &j->conf);
    }
}

/* cluster.move_bandwidth: once `len` more bytes went out, waits until the
 * sender's budget allows them (*next_ns: when the bytes sent so far are
 * paid for; one sender thread, so this paces every snapshot stream). */
static void pace(struct node *n, size_t len, uint64_t *next_ns)
{
    uint64_t bw = n->opt.move_bandwidth;
    if (bw == 0)
        return;
    uint64_t now = nk_mono_ns();
    if (*next_ns < now)
        *next_ns = now;
    *next_ns += (uint64_t)((double)len * 1e9 / (double)bw);
    while (*next_ns > now + 1000000 && !atomic_load(&n->closed)) {
        uint64_t wait = *next_ns - now;
        if (wait > 100000000ULL)
            wait = 100000000ULL; /* notice a stop within 100 ms */
        struct timespec ts = {(time_t)(wait / 1000000000ULL), (long)(wait % 1000000000ULL)};
        nanosleep(&ts, NULL);
        now = nk_mono_ns();
    }
}

static bool run_job(struct node *n, struct snap_job *j, uint64_t *pace_ns)
{
    uint8_t lo[2], hi[3];
    size_t hi_len;
    node_shard_range(j->shard, lo, hi, &hi_len);
    struct lsm_iter_options io = {.snapshot = j->snap,
                                  .lower = nk_slice_make(lo, 2),
                                  .upper = nk_slice_make(hi, hi_len)};
    struct lsm_iter *it;
    nk_status s = lsm_iter_new(n->db, &io, &it);
    if (!nk_ok(s)) {
        NK_ERROR(MODULE, "shard %u: snapshot for %016" PRIx64 ": %s", j->shard, j->to,
                 nk_status_msg(s));
        nk_status_free(&s);
        return false;
    }
    struct nk_buf b;
    nk_buf_init(&b);
    uint64_t seq = 0, keys = 0, bytes = 0;
    size_t flag_at;
    bool ok = true;
    start_chunk(&b, j, seq, &flag_at);
    lsm_iter_seek_first(it);
    for (;;) {
        bool more = lsm_iter_valid(it);
        if (more) {
            struct nk_slice k = lsm_iter_key(it), v = lsm_iter_value(it);
            nk_buf_put_lenbytes(&b, k.data, k.len);
            nk_buf_put_lenbytes(&b, v.data, v.len);
            nk_buf_put_varint64(&b, lsm_iter_expire_at(it));
            keys++;
            bytes += k.len + v.len;
            lsm_iter_next(it);
            more = lsm_iter_valid(it);
        }
        if (more && b.len < SNAP_CHUNK_BYTES)
            continue;
        if (!more) {
            s = lsm_iter_status(it);
            if (!nk_ok(s)) {
                NK_ERROR(MODULE, "shard %u: reading the snapshot: %s", j->shard,
                         nk_status_msg(s));
                nk_status_free(&s);
                ok = false;
                break;
            }
            b.data[flag_at] = SNAP_FLAG_LAST;
        }
        if (!send_chunk(n, j->to, &b)) {
            ok = false;
            break;
        }
        pace(n, b.len, pace_ns);
        seq++;
        if (!more)
            break;
        start_chunk(&b, j, seq, &flag_at);
    }
    nk_buf_free(&b);
    lsm_iter_free(it);
    if (ok)
        NK_INFO(MODULE,
                "shard %u: snapshot at %" PRIu64 " sent to %016" PRIx64 " (%" PRIu64
                " keys, %" PRIu64 " bytes, %" PRIu64 " chunks)",
                j->shard, j->index, j->to, keys, bytes, seq);
    if (ok) {
        obs_counter_inc(n->m_snap_sent);
        struct obs_event_attrs ea = {.set = OBS_ATTR_BYTES_OUT | OBS_ATTR_COUNT,
                                     .bytes_out = bytes, .count = keys};
        obs_event_emit_attrs(obs_events_default(), OBS_EV_SNAPSHOT, j->shard, &ea,
                             "shard %u: snapshot at %" PRIu64 " sent to %016" PRIx64
                             " (%" PRIu64 " keys, %" PRIu64 " bytes)",
                             j->shard, j->index, j->to, keys, bytes);
    }
    return ok;
}

static void *sender_main(void *arg)
{
    struct node *n = arg;
    struct node_snap *ns = n->snap;
    uint64_t pace_ns = 0;
    pthread_mutex_lock(&ns->mu);
    for (;;) {
        struct snap_job *j = NULL;
        for (int i = 0; i < SNAP_MAX_JOBS && !j; i++)
            if (ns->jobs[i].used && ns->jobs[i].snap)
                j = &ns->jobs[i];
        if (!j) {
            if (ns->stop)
                break;
            pthread_cond_wait(&ns->cv, &ns->mu);
            continue;
        }
        struct snap_job job = *j;
        j->snap = NULL; /* taken */
        pthread_mutex_unlock(&ns->mu);
        bool ok = !ns->stop && run_job(n, &job, &pace_ns);
        atomic_fetch_add(ok ? &ns->sent : &ns->aborted, 1);
        lsm_snapshot_release(n->db, job.snap);
        pthread_mutex_lock(&ns->mu);
        j->used = false;
    }
    /* release what was never started */
    for (int i = 0; i < SNAP_MAX_JOBS; i++)
        if (ns->jobs[i].used && ns->jobs[i].snap) {
            lsm_snapshot_release(n->db, ns->jobs[i].snap);
            ns->jobs[i].used = false;
        }
    pthread_mutex_unlock(&ns->mu);
    return NULL;
}

void node_snap_request(struct node *n, struct group *g, const struct raft_msg *m)
{
    struct node_snap *ns = n->snap;
    if (!ns || !n->tp)
        return;
    pthread_mutex_lock(&ns->mu);
    int free_slot = -1;
    for (int i = 0; i < SNAP_MAX_JOBS; i++) {
        if (ns->jobs[i].used && ns->jobs[i].shard == g->id && ns->jobs[i].to == m->to) {
            pthread_mutex_unlock(&ns->mu);
            return; /* already streaming */
        }
        if (!ns->jobs[i].used && free_slot < 0)
            free_slot = i;
    }
    if (free_slot < 0) {
        pthread_mutex_unlock(&ns->mu);
        return; /* busy: raft asks again */
    }
    const struct raft_conf_state *c = raft_applied_conf(g->r);
    struct snap_job *j = &ns->jobs[free_slot];
    *j = (struct snap_job){.used = true,
                           .shard = g->id,
                           .to = m->to,
                           .id = ++ns->next_id ^ (n->self_id << 20),
                           .leader_term = m->term,
                           .index = g->applied,
                           .term = g->applied_term,
                           .conf = *c,
                           .snap = lsm_snapshot_new(n->db)};
    pthread_cond_signal(&ns->cv);
    pthread_mutex_unlock(&ns->mu);
    NK_INFO(MODULE, "shard %u: replica %016" PRIx64 " is behind the compacted log; streaming "
                    "the state at %" PRIu64,
            g->id, m->to, g->applied);
}

/* ------------------------------------------------------------ receiver */

static struct snap_recv *recv_slot(struct node_snap *ns, uint32_t shard, bool create)
{
    struct snap_recv *free_slot = NULL;
    for (int i = 0; i < SNAP_MAX_RECV; i++) {
        if (ns->recv[i].used && ns->recv[i].shard == shard)
            return &ns->recv[i];
        if (!ns->recv[i].used && !free_slot)
            free_slot = &ns->recv[i];
    }
    if (!create || !free_slot)
        return NULL;
    free_slot->used = true;
    free_slot->shard = shard;
    nk_buf_clear(&free_slot->data);
    return free_slot;
}

static void recv_drop(struct snap_recv *r)
{
    r->used = false;
    r->complete = false;
    r->offered = false;
    nk_buf_free(&r->data);
    nk_buf_init(&r->data);
}

/* Runs on the transport thread: stage one chunk. */
void node_snap_on_chunk(struct node *n, uint64_t from, const uint8_t *p, size_t len)
{
    struct node_snap *ns = n->snap;
    struct nk_reader r;
    nk_reader_init(&r, p + 1, len - 1);
    uint64_t shard = 0, id = 0, seq = 0;
    uint8_t flags = 0;
    nk_reader_varint64(&r, &shard);
    nk_reader_fixed64(&r, &id);
    nk_reader_varint64(&r, &seq);
    nk_reader_u8(&r, &flags);
    if (r.bad || shard >= n->nshards || (flags & ~SNAP_FLAG_LAST) ||
        (!atomic_load_explicit(&n->pub[shard].hosted, memory_order_acquire) &&
         !atomic_load_explicit(&n->pub[shard].rebuilding, memory_order_acquire))) {
        atomic_fetch_add(&n->st_bad_frames, 1);
        return;
    }
    pthread_mutex_lock(&ns->mu);
    struct snap_recv *rv = recv_slot(ns, (uint32_t)shard, seq == 0);
    if (!rv || rv->complete) {
        pthread_mutex_unlock(&ns->mu);
        return; /* no room, or one waits to be installed */
    }
    if (seq == 0) {
        struct nk_slice conf;
        rv->from = from;
        rv->id = id;
        rv->next_seq = 0;
        nk_buf_clear(&rv->data);
        nk_reader_varint64(&r, &rv->leader_term);
        nk_reader_varint64(&r, &rv->index);
        nk_reader_varint64(&r, &rv->term);
        nk_reader_lenbytes(&r, 4096, &conf);
        if (r.bad || !node_conf_decode(conf.data, conf.len, &rv->conf) || rv->index == 0) {
            recv_drop(rv);
            pthread_mutex_unlock(&ns->mu);
            atomic_fetch_add(&n->st_bad_frames, 1);
            return;
        }
    }
    if (rv->from != from || rv->id != id || rv->next_seq != seq) {
        /* a chunk of another stream, or a gap: start over on the next one */
        recv_drop(rv);
        pthread_mutex_unlock(&ns->mu);
        return;
    }
    size_t body = nk_reader_left(&r);
    if (rv->data.len + body > SNAP_STAGE_MAX) {
        NK_ERROR(MODULE, "shard %" PRIu64 ": snapshot from %016" PRIx64 " exceeds %llu MiB; "
                         "not installed",
                 shard, from, (unsigned long long)(SNAP_STAGE_MAX >> 20));
        recv_drop(rv);
        pthread_mutex_unlock(&ns->mu);
        return;
    }
    nk_buf_append(&rv->data, r.p, body);
    rv->next_seq++;
    bool done = flags & SNAP_FLAG_LAST;
    rv->complete = done;
    pthread_mutex_unlock(&ns->mu);
    if (done) {
        uint8_t ev[1 + NK_VARINT64_MAX];
        ev[0] = NODE_INBOUND_SNAP_READY;
        size_t k = 1 + nk_enc_varint64(ev + 1, shard);
        node_peers_push_internal(n, from, ev, k);
    }
}

/* Loop: a staged snapshot is complete; offer it to the group's raft. */
void node_snap_ready(struct node *n, uint32_t shard)
{
    struct node_snap *ns = n->snap;
    struct group *g = &n->groups[shard];
    pthread_mutex_lock(&ns->mu);
    struct snap_recv *rv = recv_slot(ns, shard, false);
    if (rv && rv->complete && g->rebuilding) {
        /* a damaged replica's new state: installed directly (rebuild.c) */
        struct raft_snapshot rs = {.index = rv->index, .term = rv->term, .conf = rv->conf};
        struct nk_buf data = rv->data;
        nk_buf_init(&rv->data);
        recv_drop(rv);
        pthread_mutex_unlock(&ns->mu);
        nk_status s = node_rebuild_install(n, g, &rs, &data);
        nk_buf_free(&data);
        if (!nk_ok(s)) {
            NK_ERROR(MODULE, "shard %u: installing the rebuilt state: %s; asking again", shard,
                     nk_status_msg(s));
            nk_status_free(&s);
        } else {
            atomic_fetch_add(&ns->installed, 1);
        }
        return;
    }
    if (!rv || !rv->complete || !g->r || g->damaged) {
        pthread_mutex_unlock(&ns->mu);
        return;
    }
    struct raft_snapshot snap = {.index = rv->index, .term = rv->term, .conf = rv->conf};
    struct raft_msg m = {.type = RAFT_MSG_SNAPSHOT,
                         .from = rv->from,
                         .to = n->self_id,
                         .term = rv->leader_term,
                         .snapshot = &snap};
    pthread_mutex_unlock(&ns->mu);
    node_group_unquiesce(n, g);
    nk_status s = raft_step(g->r, &m);
    if (!nk_ok(s)) {
        NK_WARN(MODULE, "shard %u: snapshot not taken: %s", shard, nk_status_msg(s));
        nk_status_free(&s);
    }
    node_mark_dirty(n, g);
    /* raft either took it (this round's Ready carries it: installed while
     * gathering) or already had that much: node_snap_sweep drops it then */
    pthread_mutex_lock(&ns->mu);
    rv->offered = true;
    pthread_mutex_unlock(&ns->mu);
}

void node_snap_sweep(struct node *n)
{
    struct node_snap *ns = n->snap;
    if (!ns)
        return;
    pthread_mutex_lock(&ns->mu);
    for (int i = 0; i < SNAP_MAX_RECV; i++)
        if (ns->recv[i].used && ns->recv[i].offered)
            recv_drop(&ns->recv[i]);
    pthread_mutex_unlock(&ns->mu);
}

/*
 * Replaces the shard's state with the staged records, durably: one batch
 * deletes every key of the range and writes the staged ones, then the LSM
 * is flushed (before the log forgets what the state replaces).
 */
nk_status node_snap_replace_state(struct node *n, struct group *g, const struct nk_buf *data)
{
    uint8_t lo[2], hi[3];
    size_t hi_len;
    node_shard_range(g->id, lo, hi, &hi_len);
    struct lsm_batch b;
    lsm_batch_init(&b);
    nk_status s = NK_OK;
    /* every key the shard has now goes ... */
    struct lsm_iter_options io = {.lower = nk_slice_make(lo, 2),
                                  .upper = nk_slice_make(hi, hi_len)};
    struct lsm_iter *it;
    s = lsm_iter_new(n->db, &io, &it);
    if (nk_ok(s)) {
        for (lsm_iter_seek_first(it); lsm_iter_valid(it) && nk_ok(s); lsm_iter_next(it))
            s = lsm_batch_delete(&b, lsm_iter_key(it));
        if (nk_ok(s))
            s = lsm_iter_status(it);
        lsm_iter_free(it);
    }
    /* ... and the leader's state at the snapshot's index replaces it */
    struct nk_reader r;
    nk_reader_init(&r, data->data, data->len);
    uint64_t keys = 0;
    while (nk_ok(s) && nk_reader_left(&r)) {
        struct nk_slice k, v;
        uint64_t exp = 0;
        nk_reader_lenbytes(&r, 64 * 1024, &k);
        nk_reader_lenbytes(&r, 64u << 20, &v);
        nk_reader_varint64(&r, &exp);
        if (r.bad || k.len < 2 || nk_dec_be16(k.data) != g->id) {
            s = nk_status_make(NK_DATA_LOSS, "shard %u: snapshot record %" PRIu64 " is malformed",
                               g->id, keys);
            break;
        }
        s = lsm_batch_put(&b, k, v, exp);
        keys++;
    }
    static const struct lsm_write_options wo = {.skip_wal = true};
    if (nk_ok(s))
        s = lsm_write(n->db, &wo, &b);
    lsm_batch_free(&b);
    /* durable before the log forgets what it replaces (the compaction
     * point goes into this round's raft log write) */
    if (nk_ok(s))
        s = lsm_flush(n->db);
    /* the shard's vector indexes come from its new state */
    if (nk_ok(s))
        s = node_vec_reload(n, g->id);
    return s;
}

/*
 * Loop, gather phase: the group's Ready carries a snapshot raft accepted.
 * Replaces the shard's state with the staged one, durably, and compacts the
 * log to it in this round's batch.
 */
nk_status node_snap_install(struct node *n, struct group *g, const struct raft_snapshot *rs)
{
    struct node_snap *ns = n->snap;
    pthread_mutex_lock(&ns->mu);
    struct snap_recv *rv = recv_slot(ns, g->id, false);
    if (!rv || !rv->complete || rv->index != rs->index || rv->term != rs->term) {
        pthread_mutex_unlock(&ns->mu);
        return nk_status_make(NK_INTERNAL, "shard %u: raft accepted a snapshot at %" PRIu64
                                           " that is not staged",
                              g->id, rs->index);
    }
    struct nk_buf data = rv->data; /* taken */
    nk_buf_init(&rv->data);
    recv_drop(rv);
    pthread_mutex_unlock(&ns->mu);

    nk_status s = node_snap_replace_state(n, g, &data);
    nk_buf_free(&data);
    NK_TRY(s);
    kv_shard_forget(n->kv, (uint16_t)g->id);
    uint64_t at = 0, ai = 0;
    NK_TRY(kv_applied(n->kv, (uint16_t)g->id, &at, &ai));
    if (ai != rs->index)
        NK_WARN(MODULE, "shard %u: the snapshot's state records applied index %" PRIu64
                        ", its metadata %" PRIu64,
                g->id, ai, rs->index);
    g->applied = rs->index;
    g->applied_term = rs->term;
    g->last_seq = lsm_last_sequence(n->db);
    g->ck_seq = g->ck_index = 0;
    NK_TRY(kv_shard_time(n->kv, (uint16_t)g->id, &g->time_ms));
    node_conf_encode(&rs->conf, &n->conf_buf);
    raftlog_batch_compact(n->batch, g->id, rs->index, rs->term,
                          nk_slice_make(n->conf_buf.data, n->conf_buf.len));
    g->log_first = rs->index + 1;
    g->conf_hist[0] = (struct conf_point){rs->index, rs->conf};
    g->n_conf = 1;
    g->single_voter = node_single_voter(n, &rs->conf);
    atomic_fetch_add(&ns->installed, 1);
    node_publish_conf_of(n, g, &rs->conf);
    NK_INFO(MODULE, "shard %u: installed the snapshot at %" PRIu64, g->id, rs->index);
    obs_counter_inc(n->m_snap_installed);
    obs_event_emit(obs_events_default(), OBS_EV_SNAPSHOT, g->id,
                   "shard %u: installed the snapshot at %" PRIu64, g->id, rs->index);
    return NK_OK;
}

/* ----------------------------------------------------------- lifecycle */

nk_status node_snap_open(struct node *n)
{
    struct node_snap *ns = nk_calloc(1, sizeof(*ns));
    pthread_mutex_init(&ns->mu, NULL);
    pthread_cond_init(&ns->cv, NULL);
    for (int i = 0; i < SNAP_MAX_RECV; i++)
        nk_buf_init(&ns->recv[i].data);
    n->snap = ns;
    if (!n->clustered)
        return NK_OK;
    if (pthread_create(&ns->sender, NULL, sender_main, n) != 0)
        return nk_status_make(NK_INTERNAL, "cannot start the snapshot sender thread");
    ns->sender_started = true;
    return NK_OK;
}

void node_snap_stop(struct node *n)
{
    struct node_snap *ns = n->snap;
    if (!ns || !ns->sender_started)
        return;
    pthread_mutex_lock(&ns->mu);
    ns->stop = true;
    pthread_cond_signal(&ns->cv);
    pthread_mutex_unlock(&ns->mu);
    pthread_join(ns->sender, NULL);
    ns->sender_started = false;
}

void node_snap_close(struct node *n)
{
    struct node_snap *ns = n->snap;
    if (!ns)
        return;
    node_snap_stop(n);
    for (int i = 0; i < SNAP_MAX_RECV; i++)
        nk_buf_free(&ns->recv[i].data);
    pthread_mutex_destroy(&ns->mu);
    pthread_cond_destroy(&ns->cv);
    free(ns);
    n->snap = NULL;
}

void node_snap_stats(struct node *n, uint64_t *sent, uint64_t *installed, uint64_t *aborted)
{
    struct node_snap *ns = n->snap;
    *sent = ns ? atomic_load(&ns->sent) : 0;
    *installed = ns ? atomic_load(&ns->installed) : 0;
    *aborted = ns ? atomic_load(&ns->aborted) : 0;
}
