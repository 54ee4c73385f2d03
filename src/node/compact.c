/*
 * compact.c: what the node does behind the LSM's back. Raft logs are
 * compacted behind state the LSM has persisted (checkpoints of (LSM
 * sequence, applied index)); the flusher thread flushes when the loop asks;
 * Admin.SnapshotShard; and the LSM's key clock, each shard's replicated
 * time as of persisted state (kv.h "Time").
 */
#include "node/internal.h"

#include <inttypes.h>

struct snap_wait {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool done;
    struct node_write_result wr;
};

/* The LSM's expiry clock for a key: its shard's persisted replicated time.
 * Keys that are not shard state never expire by it. */
uint64_t node_key_clock(void *ctx, struct nk_slice key)
{
    struct node *n = ctx;
    uint16_t shard;
    if (!kv_lsm_key_shard(key, &shard) || shard >= n->nshards)
        return 0;
    return atomic_load_explicit(&n->gc_time[shard], memory_order_acquire);
}

/*
 * Advances each shard's key-clock time to the replicated time of state the
 * LSM has persisted. A record is dropped by compaction (or hidden by a read
 * inside apply) only when it expired by that time; every entry a replay
 * could apply after a crash comes later in the log and so carries a time at
 * least as late, and judges the record expired too.
 */
void node_advance_gc_clock(struct node *n)
{
    uint64_t persisted = lsm_persisted_sequence(n->db);
    for (uint32_t i = 0; i < n->nshards; i++) {
        struct group *g = &n->groups[i];
        if (g->gc_seq && persisted >= g->gc_seq) {
            atomic_store_explicit(&n->gc_time[i], g->gc_time, memory_order_release);
            g->gc_seq = 0;
        }
        if (!g->gc_seq && g->time_ms > atomic_load_explicit(&n->gc_time[i],
                                                             memory_order_relaxed)) {
            g->gc_seq = g->last_seq;
            g->gc_time = g->time_ms;
        }
    }
}

/* The membership in force at `index` (from the two most recent changes). */
static const struct raft_conf_state *conf_at(const struct group *g, uint64_t index)
{
    for (int i = g->n_conf - 1; i >= 0; i--)
        if (g->conf_hist[i].index <= index)
            return &g->conf_hist[i].conf;
    return NULL;
}

/*
 * Compacts each group's Raft log behind state the LSM has on disk. Runs on
 * the loop about once a second; adds COMPACT records to the round's batch.
 */
void node_maybe_compact_logs(struct node *n)
{
    uint64_t persisted = lsm_persisted_sequence(n->db);
    bool want_flush = false;
    uint64_t ev_shards = 0, ev_entries = 0; /* one event per pass, not per shard */
    uint64_t log_entries = 0;
    for (uint32_t i = 0; i < n->nshards; i++) {
        struct group *g = &n->groups[i];
        uint64_t in_log = g->applied >= g->log_first ? g->applied - g->log_first + 1 : 0;
        log_entries += in_log;
        if (g->compact_now && g->log_first > g->compact_target) {
            g->compact_now = false; /* already compacted that far */
            atomic_store_explicit(&n->pub[g->id].compacted, g->log_first - 1,
                                  memory_order_release);
        }
        if (in_log == 0 || (in_log < n->opt.compact_log_entries && !g->compact_now))
            continue;
        if (g->ck_index >= g->log_first && persisted >= g->ck_seq) {
            const struct raft_conf_state *c = conf_at(g, g->ck_index);
            uint64_t term;
            nk_status s = raftlog_term(n->log, g->id, g->ck_index, &term);
            if (c && nk_ok(s)) {
                node_conf_encode(c, &n->conf_buf);
                raftlog_batch_compact(n->batch, g->id, g->ck_index, term,
                                      nk_slice_make(n->conf_buf.data, n->conf_buf.len));
                ev_shards++;
                obs_counter_inc(n->m_log_compactions);
                ev_entries += g->ck_index + 1 - g->log_first;
                g->log_first = g->ck_index + 1;
                if (g->compact_now && g->ck_index >= g->compact_target) {
                    g->compact_now = false;
                    atomic_store_explicit(&n->pub[g->id].compacted, g->ck_index,
                                          memory_order_release);
                }
            }
            nk_status_free(&s);
        } else if (g->ck_index >= g->log_first) {
            want_flush = true; /* the checkpoint waits for the LSM */
            continue;
        }
        g->ck_seq = g->last_seq;
        g->ck_index = g->applied;
        want_flush = true;
    }
    obs_gauge_set(n->m_log_entries, (int64_t)log_entries);
    if (ev_shards) {
        struct obs_event_attrs ea = {.set = OBS_ATTR_COUNT, .count = ev_entries};
        obs_event_emit_attrs(obs_events_default(), OBS_EV_LOG_COMPACTION, OBS_NO_SHARD, &ea,
                             "raft logs of %" PRIu64 " shards compacted: %" PRIu64
                             " entries dropped",
                             ev_shards, ev_entries);
    }
    if (want_flush) {
        pthread_mutex_lock(&n->fmu);
        if (!n->flush_running) {
            n->flush_wanted = true;
            pthread_cond_signal(&n->fcv);
        }
        pthread_mutex_unlock(&n->fmu);
    }
}

void *node_flusher_main(void *arg)
{
    struct node *n = arg;
    pthread_mutex_lock(&n->fmu);
    for (;;) {
        while (!n->flush_wanted && !n->flush_stop)
            pthread_cond_wait(&n->fcv, &n->fmu);
        if (n->flush_stop)
            break;
        n->flush_wanted = false;
        n->flush_running = true;
        pthread_mutex_unlock(&n->fmu);
        /* the applies a flush persists record applied indexes: their
         * entries must be durable in the log first, whatever the fsync
         * policy, or a power cut leaves the LSM ahead of the log */
        nk_status s = raftlog_sync(n->log);
        if (nk_ok(s))
            s = lsm_flush(n->db);
        if (!nk_ok(s)) {
            NK_ERROR(MODULE, "background flush failed: %s", nk_status_msg(s));
            nk_status_free(&s);
        }
        pthread_mutex_lock(&n->fmu);
        n->flush_running = false;
    }
    pthread_mutex_unlock(&n->fmu);
    return NULL;
}

static void snap_done(void *ctx, const struct node_write_result *wr)
{
    struct snap_wait *w = ctx;
    pthread_mutex_lock(&w->mu);
    w->wr = *wr;
    w->wr.msg = NULL; /* messages are static strings only valid in the call */
    w->done = true;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

nk_status node_snapshot_shard(struct node *n, uint32_t shard, uint64_t *index)
{
    if (shard >= n->nshards)
        return nk_status_make(NK_INVALID_ARGUMENT, "shard %u does not exist (total %u)", shard,
                              n->nshards);
    /* 1. the loop checkpoints the shard at its applied index */
    struct snap_wait w = {.done = false};
    pthread_mutex_init(&w.mu, NULL);
    pthread_cond_init(&w.cv, NULL);
    struct req r = {.kind = REQ_SNAPSHOT,
                    .shard = shard,
                    .deadline = nk_mono_ns() + n->opt.default_deadline_ms * 1000000ULL,
                    .done = snap_done,
                    .ctx = &w};
    nk_status s = node_enqueue(n, &r);
    if (nk_ok(s)) {
        pthread_mutex_lock(&w.mu);
        while (!w.done)
            pthread_cond_wait(&w.cv, &w.mu);
        pthread_mutex_unlock(&w.mu);
        if (w.wr.code != NK_CODE_OK)
            s = nk_status_make(w.wr.code, "shard %u: snapshot not taken (server stopping)",
                               shard);
    }
    pthread_mutex_destroy(&w.mu);
    pthread_cond_destroy(&w.cv);
    NK_TRY(s);
    uint64_t target = w.wr.res.index;
    /* 2. every apply up to it goes into tables: that is the snapshot */
    NK_TRY(lsm_flush(n->db));
    /* 3. the loop's maintenance (once a second) compacts the log behind it */
    uint64_t until = nk_mono_ns() + 10ULL * 1000000000ULL;
    /* the compaction record is written with the loop's next round */
    while (atomic_load_explicit(&n->pub[shard].compacted, memory_order_acquire) < target ||
           raftlog_first_index(n->log, shard) <= target) {
        if (atomic_load_explicit(&n->closed, memory_order_acquire))
            return nk_status_make(NK_UNAVAILABLE, "server shutting down");
        if (nk_mono_ns() > until)
            return nk_status_make(NK_DEADLINE_EXCEEDED,
                                  "shard %u: the log was not compacted to %llu within 10 s", shard,
                                  (unsigned long long)target);
        struct timespec ts = {0, 20 * 1000000L};
        nanosleep(&ts, NULL);
    }
    *index = target;
    return NK_OK;
}

uint64_t node_log_first_index(struct node *n, uint32_t shard)
{
    return raftlog_first_index(n->log, shard);
}
