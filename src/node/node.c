/*
 * node.c: opening and closing the multi-Raft host (see node.h for the
 * threads and the design): the data directory and its CLUSTER file, the
 * raft log and the LSM, every shard's group, the threads; and its stats.
 * The rest lives one concern per file: queue.c, propose.c, loop.c, apply.c,
 * reads.c, compact.c, storage.c, view.c, health.c, lease.c.
 */
#include "node/internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>

void node_options_default(struct node_options *o)
{
    memset(o, 0, sizeof(*o));
    o->node_name = "node-1";
    o->client_addr = "127.0.0.1:9001";
    o->total_shards = 1024;
    o->data_dir = "./norikv-data";
    o->raft_sync = WAL_SYNC_ALWAYS;
    o->tick_ms = 100;
    o->election_ticks = 6;
    o->heartbeat_ticks = 1;
    o->quiesce_ticks = UINT32_MAX; /* resolved at open: 2 * election_ticks */
    o->max_pending = 65536;
    o->max_batch_entries = 8192;
    o->default_deadline_ms = 5000;
    o->raftlog_cache_bytes = 64u << 20;
    o->compact_log_entries = 10000;
    o->max_round_bytes = 8u << 20;
    o->swim_probe_interval_ms = 500;
    o->swim_probe_timeout_ms = 200;
    o->swim_suspicion_mult = 4;
    o->swim_suspicion_max_mult = 4;
    o->dead_node_timeout_ms = 5 * 60 * 1000;
    o->max_concurrent_moves = 8;
    o->move_bandwidth = 64u << 20;
    lsm_options_default(&o->lsm);
    kv_options_default(&o->kv);
}

static nk_status check_cluster_file(struct node *n)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/CLUSTER", n->data_dir);
    uint8_t *d;
    size_t len;
    nk_status s = nk_read_file(path, 4096, &d, &len);
    if (s.code == NK_NOT_FOUND) {
        nk_status_free(&s);
        /* A directory that already holds a log or a database lost its
         * CLUSTER file (an operator's mistake, a bad restore): recreating it
         * would accept whatever total_shards the configuration says now and
         * route keys to the wrong shards. */
        const char *parts[] = {"raft", "lsm"};
        for (size_t i = 0; i < NK_ARRAY_LEN(parts); i++) {
            char sub[4300];
            struct stat st;
            snprintf(sub, sizeof sub, "%s/%s", n->data_dir, parts[i]);
            if (stat(sub, &st) == 0)
                return nk_status_make(NK_FAILED_PRECONDITION,
                                      "%s is missing but %s holds data: the data directory is "
                                      "incomplete; restore CLUSTER (one line, "
                                      "\"total_shards=N\") from a backup of this node",
                                      path, sub);
        }
        return NK_OK; /* a new node: membership comes next */
    }
    NK_TRY(s);
    free(d);
    return NK_OK;
}

/*
 * Who the members are: recorded in CLUSTER, or, for a new node, itself alone
 * (no seed nodes) or learned from the seed nodes (members.c). The peer
 * transport starts here for clusters, since bootstrap needs it.
 */
static nk_status open_membership(struct node *n)
{
    bool found;
    NK_TRY(node_members_load(n, &found));
    if (n->opt.join_addr && n->opt.join_addr[0]) {
        NK_TRY(node_members_join(n, found));
        found = true; /* recorded now (a new node), or it was */
    }
    if (!found && n->opt.n_seed_nodes == 0) {
        n->created_ms = nk_wall_ms();
        /* an id of its own, so that it is never taken for a member of
         * another cluster (cluster.join refuses it, naming it) */
        uint64_t seed[2] = {n->created_ms, nk_xxhash64(n->name, strlen(n->name))};
        n->cluster_id = nk_xxhash64(seed, sizeof seed) | 1;
        n->self_id = SOLO_ID;
        n->rf = 1;
        n->n_members = 1;
        n->members[0] = (struct member){.id = SOLO_ID, .up = true};
        snprintf(n->members[0].name, sizeof n->members[0].name, "%s", n->name);
        return node_members_save(n);
    }
    if (!found) {
        n->self_id = node_raft_id_for(n->name);
        n->n_members = 1;
        n->members[0] = (struct member){.id = n->self_id, .up = true};
        snprintf(n->members[0].name, sizeof n->members[0].name, "%s", n->name);
        n->clustered = true;
        NK_TRY(node_peers_open(n)); /* the others discover us through it */
        NK_TRY(node_members_bootstrap(n));
        node_peers_set_cluster_id(n); /* learned just now */
        NK_TRY(node_peers_add_members(n));
    } else if (n->clustered) {
        NK_TRY(node_peers_open(n));
        NK_TRY(node_peers_add_members(n));
    }
    int self = node_member_index(n, n->self_id);
    NK_ASSERT(self >= 0);
    n->members[self].up = true;
    snprintf(n->members[self].client_addr, sizeof n->members[self].client_addr, "%s",
             n->client_addr);
    return NK_OK;
}

/* The LSM's background work, reported to the event ring (docs/observability.md). */
static void node_lsm_event(void *arg, const struct lsm_event *e)
{
    (void)arg;
    struct obs_event_attrs a = {.set = OBS_ATTR_DURATION, .duration_us = e->duration_us};
    if (e->kind == LSM_EVENT_WRITE_STALL) {
        obs_event_emit_attrs(obs_events_default(), OBS_EV_WRITE_STALL, OBS_NO_SHARD, &a,
                             "writes stalled %.1f ms: %s", (double)e->duration_us / 1000.0,
                             e->l0_full ? "level 0 full, compaction behind"
                                        : "memtables waiting for flush");
        return;
    }
    a.set |= OBS_ATTR_OUT_LEVEL | OBS_ATTR_BYTES_IN | OBS_ATTR_BYTES_OUT | OBS_ATTR_FILES_IN |
             OBS_ATTR_FILES_OUT;
    a.out_level = e->out_level;
    a.bytes_in = e->bytes_in;
    a.bytes_out = e->bytes_out;
    a.files_in = e->files_in;
    a.files_out = e->files_out;
    if (e->level >= 0) {
        a.set |= OBS_ATTR_LEVEL;
        a.level = e->level;
    }
    if (e->kind == LSM_EVENT_FLUSH)
        obs_event_emit_attrs(obs_events_default(), OBS_EV_FLUSH, OBS_NO_SHARD, &a,
                             "memtable flushed to L0: %" PRIu64 " KiB in %.1f ms",
                             e->bytes_out >> 10, (double)e->duration_us / 1000.0);
    else
        obs_event_emit_attrs(obs_events_default(), OBS_EV_COMPACTION, OBS_NO_SHARD, &a,
                             "%s L%d -> L%d: %u files, %" PRIu64 " KiB in, %" PRIu64
                             " KiB out, %.1f ms",
                             e->kind == LSM_EVENT_TRIVIAL_MOVE ? "trivial move" : "compaction",
                             e->level, e->out_level, e->files_in, e->bytes_in >> 10,
                             e->bytes_out >> 10, (double)e->duration_us / 1000.0);
}

static nk_status sync_log_before_flush(void *arg)
{
    struct node *n = arg;
    return n->log ? raftlog_sync(n->log) : NK_OK;
}

/*
 * Starts a hosted group whose state machine is at (at, ai): reconciles the
 * log with the state (a log cut short behind it is compacted to it) and
 * creates its raft. Used at open and when a rebuilt replica comes back.
 */
nk_status node_group_start(struct node *n, struct group *g, uint64_t at, uint64_t ai)
{
    uint64_t ci, ct;
    raftlog_get_compacted(n->log, g->id, &ci, &ct, &n->conf_buf);
    if (ai < ci) {
        return nk_status_make(NK_DATA_LOSS,
                              "shard %u: the database has applied up to %llu but the raft log "
                              "starts after %llu; entries in between are lost",
                              g->id, (unsigned long long)ai, (unsigned long long)ci);
    }
    struct raft_conf_state conf;
    if (!node_conf_decode(n->conf_buf.data, n->conf_buf.len, &conf)) {
        return nk_status_make(NK_DATA_LOSS, "shard %u: stored membership is malformed",
                              g->id);
    }
    uint64_t last = raftlog_last_index(n->log, g->id);
    if (ai > last) {
        /* The state holds entries the log no longer has: its tail was
         * cut (a damaged segment), or a snapshot install was flushed but
         * its compaction point not yet written. The state is a snapshot
         * at ai: record it as the log's compaction point, and the log
         * catches up from the leader. */
        NK_WARN(MODULE,
                "shard %u: the raft log ends at %llu but the state has applied %llu: "
                "compacting the log to %llu (the state holds everything up to it)",
                g->id, (unsigned long long)last, (unsigned long long)ai, (unsigned long long)ai);
        raftlog_batch_compact(n->batch, g->id, ai, at, nk_slice_make(n->conf_buf.data,
                                                                 n->conf_buf.len));
        nk_status ws = raftlog_write(n->log, n->batch);
        raftlog_batch_clear(n->batch);
        if (!nk_ok(ws)) {
                return ws;
        }
        ci = ai;
        struct raftlog_hardstate hs;
        raftlog_get_hardstate(n->log, g->id, &hs);
        if (hs.commit < ai) {
            hs.commit = ai;
            raftlog_batch_hardstate(n->batch, g->id, &hs);
            ws = raftlog_write(n->log, n->batch);
            raftlog_batch_clear(n->batch);
            if (!nk_ok(ws)) {
                        return ws;
            }
        }
    }
    g->conf_hist[0] = (struct conf_point){ci, conf};
    g->n_conf = 1;
    g->single_voter = node_single_voter(n, &conf);
    g->applied = ai;
    g->applied_term = at;
    g->log_first = ci + 1;
    struct raft_config rc = {
        .id = n->self_id,
        .applied = ai,
        .election_tick = n->opt.election_ticks,
        .heartbeat_tick = n->opt.heartbeat_ticks,
        .rand_seed = nk_wall_ms() ^ g->id,
    };
    node_raft_storage(g, &rc.storage);
    nk_status s = raft_new(&rc, &g->r);
    if (!nk_ok(s)) {
        return nk_status_wrap(s, "shard %u", g->id);
    }
    if (g->single_voter) {
        nk_status cs = raft_campaign(g->r); /* nobody to wait for */
        nk_status_free(&cs);
    }
    node_mark_dirty(n, g);
    return NK_OK;
}

static nk_status open_groups(struct node *n)
{
    /* bootstrap the groups of the shards this node replicates that have no
     * state yet: a compaction point at 0 whose membership is the shard's
     * replicas by placement (every member computes the same) */
    uint64_t ids[NODE_MAX_MEMBERS];
    for (uint32_t m = 0; m < n->n_members; m++)
        ids[m] = n->members[m].id;
    bool *hosted = nk_calloc(n->nshards, sizeof(bool));
    struct nk_buf cb;
    nk_buf_init(&cb);
    bool any = false;
    /* A node whose CLUSTER file predates the bootstrapped mark, and that
     * holds any group, was bootstrapped: its groups are its Raft
     * configurations' business now, never placement's (members change). */
    for (uint32_t i = 0; i < n->nshards && !n->bootstrapped; i++) {
        uint64_t ci, ct;
        struct raftlog_hardstate hs;
        raftlog_get_compacted(n->log, i, &ci, &ct, &n->conf_buf);
        raftlog_get_hardstate(n->log, i, &hs);
        if (n->conf_buf.len || hs.term || ci || raftlog_last_index(n->log, i))
            n->bootstrapped = true;
    }
    for (uint32_t i = 0; i < n->nshards; i++) {
        uint64_t ci, ct;
        struct raftlog_hardstate hs;
        raftlog_get_compacted(n->log, i, &ci, &ct, &n->conf_buf);
        raftlog_get_hardstate(n->log, i, &hs);
        if (n->conf_buf.len == 0 && hs.term == 0 && ci == 0 &&
            raftlog_last_index(n->log, i) == 0) {
            if (n->bootstrapped)
                continue; /* no replica here */
            uint32_t rf = n->rf < n->n_members ? n->rf : n->n_members;
            struct raft_conf_state boot = {.n_voters = (uint8_t)rf};
            node_placement_replicas(ids, n->n_members, i, rf, boot.voters);
            if (!raft_conf_is_voter(&boot, n->self_id))
                continue; /* another node's shard */
            node_conf_encode(&boot, &cb);
            raftlog_batch_compact(n->batch, i, 0, 0, nk_slice_make(cb.data, cb.len));
            any = true;
        }
        hosted[i] = true;
    }
    nk_buf_free(&cb);
    if (any) {
        nk_status ws = raftlog_write(n->log, n->batch);
        raftlog_batch_clear(n->batch);
        if (!nk_ok(ws)) {
            free(hosted);
            return ws;
        }
    }
    if (!n->bootstrapped) {
        n->bootstrapped = true;
        nk_status ms = node_members_save(n);
        if (!nk_ok(ms)) {
            free(hosted);
            return ms;
        }
    }
    for (uint32_t i = 0; i < n->nshards; i++) {
        struct group *g = &n->groups[i];
        g->id = i;
        g->node = n;
        if (!hosted[i]) {
            /* g->r stays NULL: not a replica here; state a deletion left
             * behind (a crash between its two steps) goes */
            nk_status os = node_replica_clear_orphan(n, i);
            if (!nk_ok(os) && os.code != NK_DATA_LOSS) {
                free(hosted);
                return os;
            }
            nk_status_free(&os);
            continue;
        }
        n->n_hosted++;
        uint64_t at = 0, ai = 0;
        nk_status as = kv_applied(n->kv, (uint16_t)i, &at, &ai);
        if (as.code == NK_DATA_LOSS) {
            /* this replica's state is damaged: the shard is refused here,
             * the others serve it; the node itself starts */
            node_mark_damaged(n, g, as);
            nk_status_free(&as);
            n->n_hosted--;
            continue;
        }
        if (!nk_ok(as)) {
            free(hosted);
            return as;
        }
        nk_status gs = node_group_start(n, g, at, ai);
        if (!nk_ok(gs)) {
            free(hosted);
            return gs;
        }
        atomic_store_explicit(&n->pub[i].hosted, true, memory_order_release);
        node_publish_conf(n, g);
    }
    free(hosted);
    return NK_OK;
}

nk_status node_open(const struct node_options *o, struct node **out)
{
    struct node *n = nk_calloc(1, sizeof(*n));
    n->opt = *o;
    if (n->opt.quiesce_ticks == UINT32_MAX)
        n->opt.quiesce_ticks = 2 * n->opt.election_ticks;
    n->name = nk_strdup(o->node_name ? o->node_name : "node-1");
    n->client_addr = nk_strdup(o->client_addr ? o->client_addr : "");
    n->data_dir = nk_strdup(o->data_dir);
    n->opt.node_name = n->name;
    n->opt.client_addr = n->client_addr;
    n->opt.data_dir = n->data_dir;
    if (n->opt.total_shards == 0 || n->opt.total_shards > 65536) {
        nk_status s = nk_status_make(NK_INVALID_ARGUMENT,
                                     "total_shards %u is out of range (1..65536)",
                                     n->opt.total_shards);
        node_close(n);
        return s;
    }
    if (n->opt.max_pending == 0)
        n->opt.max_pending = 65536;
    if (n->opt.max_batch_entries == 0)
        n->opt.max_batch_entries = 8192;
    if (n->opt.tick_ms == 0)
        n->opt.tick_ms = 100;
    n->nshards = n->opt.total_shards;
    n->start_ms = nk_mono_ms();
    /* The view's epoch must keep increasing across restarts, or a client
     * holding the epoch of the previous run would never hear of the new view
     * (WatchCluster sends only newer views). Start from the wall clock in
     * microseconds; every change adds one. */
    n->epoch = 0; /* node_view_epoch once groups exist */
    pthread_mutex_init(&n->qmu, NULL);
    /* the loop's timed waits are on CLOCK_MONOTONIC (the default clock of a
     * condition variable is CLOCK_REALTIME, which would make every wait
     * return at once) */
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&n->qcv, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&n->fmu, NULL);
    pthread_cond_init(&n->fcv, NULL);
    pthread_mutex_init(&n->rmu, NULL);
    pthread_mutex_init(&n->hmu, NULL);
    pthread_cond_init(&n->rcv, NULL);
    pthread_mutex_init(&n->vmu, NULL);
    n->qcap = n->opt.max_pending;
    n->q = nk_malloc(n->qcap * sizeof(*n->q));
    n->rq = nk_malloc(n->qcap * sizeof(*n->rq));
    n->groups = nk_calloc(n->nshards, sizeof(*n->groups));
    n->pub = nk_calloc(n->nshards, sizeof(*n->pub));
    n->gc_time = nk_calloc(n->nshards, sizeof(*n->gc_time));
    n->sconf = nk_calloc(n->nshards, sizeof(*n->sconf));
    n->dirty = nk_malloc(n->nshards * sizeof(*n->dirty));
    n->batch = raftlog_batch_new();
    nk_buf_init(&n->conf_buf);
    struct obs_registry *reg = obs_default();
    nk_status ms = obs_histogram_register(reg, OBS_UNIT_MICROS, "norikv_raft_fsync_duration_seconds",
                                          "Raft log batch write + fdatasync latency", &n->m_fsync);
    nk_status_free(&ms);
    ms = obs_histogram_register(reg, OBS_UNIT_MICROS, "norikv_raft_commit_duration_seconds",
                                "Proposal queued to applied", &n->m_commit);
    nk_status_free(&ms);
    ms = obs_histogram_register(reg, OBS_UNIT_NONE, "norikv_raft_round_entries",
                                "Entries made durable per Ready round (group commit size)",
                                &n->m_round_entries);
    nk_status_free(&ms);
    ms = obs_counter_register(reg, "norikv_raft_rounds_total", "Ready loop rounds", &n->m_rounds);
    nk_status_free(&ms);
    ms = obs_gauge_register(reg, "norikv_node_degraded",
                            "1 while writes are suspended (log or apply failing; see /health)",
                            &n->m_degraded);
    nk_status_free(&ms);
    ms = obs_gauge_register(reg, "norikv_node_damaged_shards",
                            "Shards whose state failed a checksum on this node", &n->m_damaged);
    nk_status_free(&ms);
    ms = obs_counter_register(reg, "norikv_raft_leader_changes_total",
                              "Shards whose leader changed (as seen by this node)",
                              &n->m_leader_changes);
    nk_status_free(&ms);
    ms = obs_counter_register(reg, "norikv_raft_snapshots_sent_total",
                              "Shard snapshots streamed to lagging replicas", &n->m_snap_sent);
    nk_status_free(&ms);
    ms = obs_counter_register(reg, "norikv_raft_snapshots_installed_total",
                              "Shard snapshots installed from a leader", &n->m_snap_installed);
    nk_status_free(&ms);
    ms = obs_counter_register(reg, "norikv_raft_log_compactions_total",
                              "Shard Raft logs truncated behind persisted state",
                              &n->m_log_compactions);
    nk_status_free(&ms);
    ms = obs_gauge_register(reg, "norikv_raft_log_entries",
                            "Raft log entries kept over all shards (applied, not yet compacted)",
                            &n->m_log_entries);
    nk_status_free(&ms);

    char path[4200];
    nk_status s = nk_mkdirs(n->data_dir, 0755);
    if (nk_ok(s))
        s = check_cluster_file(n);
    if (nk_ok(s))
        s = open_membership(n);
    if (nk_ok(s)) {
        struct raftlog_options ro;
        raftlog_options_default(&ro);
        ro.wal.sync = n->opt.ephemeral ? WAL_SYNC_OS : n->opt.raft_sync;
        ro.wal.preallocate = !n->opt.ephemeral;
        if (n->opt.ephemeral)
            ro.wal.segment_size = 8u << 20;
        ro.cache_bytes = n->opt.raftlog_cache_bytes;
        ro.max_groups = n->nshards;
        snprintf(path, sizeof path, "%s/raft", n->data_dir);
        s = raftlog_open(path, &ro, &n->log);
    }
    if (nk_ok(s)) {
        struct lsm_options lo = n->opt.lsm;
        lo.on_event = node_lsm_event; /* flushes, compactions, stalls -> /events */
        lo.on_event_arg = n;
        if (n->opt.ephemeral)
            lo.wal_sync = LSM_WAL_SYNC_OS;
        lo.key_clock_ms = node_key_clock;
        lo.key_clock_ctx = n;
        /* every flush (the flusher's, a full memtable's, the last one at
         * close) makes applies durable: their log entries go first */
        lo.before_flush = sync_log_before_flush;
        lo.before_flush_arg = n;
        snprintf(path, sizeof path, "%s/lsm", n->data_dir);
        s = lsm_open(path, &lo, &n->db);
    }
    if (nk_ok(s))
        s = kv_store_open(n->db, &n->opt.kv, &n->kv);
    if (nk_ok(s))
        s = node_plan_open(n);
    if (nk_ok(s))
        s = open_groups(n);
    if (nk_ok(s))
        s = node_vec_open(n);
    if (nk_ok(s))
        s = node_snap_open(n);
    if (nk_ok(s)) {
        if (pthread_create(&n->flusher, NULL, node_flusher_main, n) != 0)
            s = nk_status_errno(errno, "start flusher thread");
        else
            n->flusher_started = true;
    }
    if (nk_ok(s)) {
        if (pthread_create(&n->reader, NULL, node_reader_main, n) != 0)
            s = nk_status_errno(errno, "start reader thread");
        else
            n->reader_started = true;
    }
    if (nk_ok(s) && n->clustered)
        s = node_fetch_open(n); /* only leaders of multi-voter groups send */
    if (nk_ok(s)) {
        if (pthread_create(&n->loop, NULL, node_loop_main, n) != 0)
            s = nk_status_errno(errno, "start ready loop thread");
        else
            n->loop_started = true;
    }
    if (nk_ok(s))
        s = node_liveness_start(n); /* clusters: SWIM on the peer port */
    if (!nk_ok(s)) {
        node_close(n);
        return s;
    }
    *out = n;
    struct obs_event_attrs ea = {.set = OBS_ATTR_COUNT, .count = n->nshards};
    obs_attrs_set_node(&ea, n->name);
    obs_event_emit_attrs(obs_events_default(), OBS_EV_LIFECYCLE, OBS_NO_SHARD, &ea,
                         "node %s started with %u shards", n->name, n->nshards);
    return NK_OK;
}

bool node_close(struct node *n)
{
    if (!n)
        return true;
    atomic_store(&n->closed, true);
    struct obs_event_attrs ea = {0};
    obs_attrs_set_node(&ea, n->name);
    obs_event_emit_attrs(obs_events_default(), OBS_EV_LIFECYCLE, OBS_NO_SHARD, &ea,
                         "node %s closing its shards and storage", n->name);
    pthread_mutex_lock(&n->qmu);
    n->stopping = true;
    pthread_mutex_unlock(&n->qmu);
    pthread_cond_signal(&n->qcv);
    if (n->loop_started)
        pthread_join(n->loop, NULL);
    node_liveness_stop(n);
    node_fetch_close(n); /* before the raft log closes */
    node_snap_stop(n);   /* it sends through the transport */
    node_peers_close(n); /* no callback runs after it */
    node_snap_close(n);
    /* everything still waiting learns that we stop */
    const char *bye = "server shutting down";
    for (size_t i = 0; i < n->qlen; i++) {
        struct req *r = &n->q[(n->qhead + i) % n->qcap];
        node_fail_req(r, NK_UNAVAILABLE, bye, NULL);
        node_request_done(n);
    }
    n->qlen = 0;
    if (n->groups) {
        for (uint32_t i = 0; i < n->nshards; i++) {
            struct group *g = &n->groups[i];
            node_fail_list(n, &g->pending, NK_UNAVAILABLE, bye);
            node_fail_list(n, &g->parked, NK_UNAVAILABLE, bye);
            node_fail_list(n, &g->reads, NK_UNAVAILABLE, bye);
            free(g->pending.v);
            free(g->parked.v);
            free(g->reads.v);
            raft_free(g->r);
        }
    }
    if (n->reader_started) {
        /* reads already confirmed are served: the state is still open */
        pthread_mutex_lock(&n->rmu);
        n->reader_stop = true;
        pthread_cond_signal(&n->rcv);
        pthread_mutex_unlock(&n->rmu);
        pthread_join(n->reader, NULL);
    }
    if (n->flusher_started) {
        pthread_mutex_lock(&n->fmu);
        n->flush_stop = true;
        pthread_cond_signal(&n->fcv);
        pthread_mutex_unlock(&n->fmu);
        pthread_join(n->flusher, NULL);
    }
    kv_store_close(n->kv);
    node_vec_close(n);
    if (n->log) {
        /* lsm_close flushes the applies that skipped its WAL: the log
         * entries they came from go to disk first (see the flusher) */
        nk_status s = raftlog_sync(n->log);
        if (!nk_ok(s)) {
            NK_ERROR(MODULE, "final raft log sync: %s", nk_status_msg(s));
            nk_status_free(&s);
        }
    }
    nk_status cs = lsm_close_checked(n->db); /* flushes what skipped the WAL */
    if (!nk_ok(cs)) {
        NK_ERROR(MODULE, "closing the database: %s", nk_status_msg(cs));
        nk_status_free(&cs);
        n->close_failed = true;
    }
    raftlog_close(n->log);
    node_quiesce_free(n);
    raftlog_batch_free(n->batch);
    nk_buf_free(&n->conf_buf);
    free(n->groups);
    free(n->pub);
    free(n->gc_time);
    free(n->sconf);
    node_plan_close(n);
    free(n->dirty);
    free(n->q);
    free(n->rq);
    pthread_mutex_destroy(&n->rmu);
    pthread_mutex_destroy(&n->hmu);
    pthread_cond_destroy(&n->rcv);
    pthread_mutex_destroy(&n->qmu);
    pthread_cond_destroy(&n->qcv);
    pthread_mutex_destroy(&n->fmu);
    pthread_cond_destroy(&n->fcv);
    pthread_mutex_destroy(&n->vmu);
    free(n->name);
    free(n->client_addr);
    free(n->data_dir);
    bool ok = !n->close_failed;
    free(n);
    return ok;
}

void node_get_stats(struct node *n, struct node_stats *o)
{
    memset(o, 0, sizeof(*o));
    o->total_shards = n->nshards;
    o->shards_led = atomic_load(&n->st_led);
    o->last_applied = atomic_load(&n->st_last_applied);
    o->applied_entries = atomic_load(&n->st_applied_entries);
    o->proposals = atomic_load(&n->st_proposals);
    o->proposals_failed = atomic_load(&n->st_proposals_failed);
    o->rounds = atomic_load(&n->st_rounds);
    o->fsyncs = atomic_load(&n->st_fsyncs);
    o->pending = atomic_load(&n->inflight);
    o->quiesced = atomic_load(&n->st_quiesced);
    o->shards_quiet = atomic_load(&n->st_quiet_now);
    o->uptime_ms = nk_mono_ms() - n->start_ms;
    o->round_bytes_max = atomic_load(&n->st_round_bytes_max);
    o->pending_moves = atomic_load(&n->st_pending_moves);
    o->write_holds = atomic_load(&n->st_holds);
    o->log_fetches = atomic_load(&n->st_fetches);
    if (n->log) {
        struct raftlog_stats rs;
        raftlog_get_stats(n->log, &rs);
        o->log_disk_reads = rs.cache_misses;
    }
    o->shards_hosted = 0;
    for (uint32_t i = 0; i < n->nshards; i++)
        o->shards_hosted += atomic_load_explicit(&n->pub[i].hosted, memory_order_relaxed);
    o->replicas_created = atomic_load(&n->st_replicas_created);
    o->replicas_removed = atomic_load(&n->st_replicas_removed);
    for (uint32_t i = 0; i < n->nshards; i++)
        if (atomic_load_explicit(&n->pub[i].hosted, memory_order_acquire) &&
            atomic_load_explicit(&n->pub[i].lead, memory_order_acquire))
            o->shards_ready++;
    pthread_mutex_lock(&n->vmu);
    o->members = n->n_members;
    for (uint32_t i = 0; i < n->n_members; i++)
        o->peers_up += n->members[i].id != n->self_id && n->members[i].up;
    pthread_mutex_unlock(&n->vmu);
    o->frames_dropped_in = atomic_load(&n->st_in_dropped);
    o->frames_dropped_out = atomic_load(&n->st_out_dropped);
    o->frames_bad = atomic_load(&n->st_bad_frames);
    o->damaged_shards = atomic_load(&n->damaged_shards);
    o->degraded = atomic_load(&n->degraded);
    if (o->degraded) {
        pthread_mutex_lock(&n->hmu);
        snprintf(o->degraded_why, sizeof o->degraded_why, "%s", n->degraded_why);
        pthread_mutex_unlock(&n->hmu);
    }
    o->swim_changes = atomic_load(&n->st_swim_changes);
    o->swim_rejected = atomic_load(&n->st_swim_rejected);
    o->swim_send_failed = atomic_load(&n->st_swim_send_failed);
    pthread_mutex_lock(&n->vmu);
    if (n->lv) {
        o->swim_running = true;
        o->swim_detection_bound_ms = node_liveness_bound_ms(n);
        const struct swim_stats *ss = &n->swim_stats;
        o->swim_packets_out = ss->packets_out;
        o->swim_bytes_out = ss->bytes_out;
        o->swim_packets_in = ss->packets_in;
        o->swim_bytes_in = ss->bytes_in;
        o->swim_probes_failed = ss->probes_failed;
        o->swim_suspicions = ss->suspicions;
        o->swim_refutations = ss->refutations;
        o->swim_lhm = ss->lhm;
        o->swim_gossip_entries = ss->gossip_entries;
        o->swim_incarnation = n->swim_incarnation;
    }
    for (uint32_t i = 0; i < n->n_members; i++) {
        const struct member *m = &n->members[i];
        uint8_t st = m->id == n->self_id ? SWIM_ALIVE
                     : m->swim_state     ? m->swim_state
                     : m->up             ? SWIM_ALIVE
                                         : SWIM_DEAD;
        o->members_alive += st == SWIM_ALIVE;
        o->members_suspect += st == SWIM_SUSPECT;
        o->members_dead += st == SWIM_DEAD;
        o->members_left += st == SWIM_LEFT;
    }
    pthread_mutex_unlock(&n->vmu);
}

bool node_shard_leads(struct node *n, uint32_t shard)
{
    /* only a replica of the shard can be published as its leader here */
    return shard < n->nshards &&
           atomic_load_explicit(&n->pub[shard].lead, memory_order_acquire) == n->self_id;
}

uint64_t node_shard_applied(struct node *n, uint32_t shard)
{
    if (shard >= n->nshards)
        return 0;
    return atomic_load_explicit(&n->pub[shard].applied, memory_order_acquire);
}
