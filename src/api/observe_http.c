/*
 * observe_http.c: the observability routes of the HTTP server
 * (docs/observability.md): the dashboard's embedded assets at /dashboard,
 * its data at /dashboard/data (one JSON document of everything the page
 * draws, so that it needs no Prometheus text parser), and the counters
 * /metrics takes from node, LSM and process totals. /events is in
 * events_http.c.
 */
#include <inttypes.h>
#include <microhttpd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api_internal.h"
#include "transport/transport.h"
#include "api/dashboard_assets.h"
#include "api/http_parse.h"
#include "lsm/lsm.h"

#define MODULE "http"

/* ------------------------------------------------------------ responses */

static enum MHD_Result send_buf(struct MHD_Connection *c, unsigned status, const char *ctype,
                                const void *data, size_t len, bool persistent)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(
        len, (void *)data, persistent ? MHD_RESPMEM_PERSISTENT : MHD_RESPMEM_MUST_COPY);
    MHD_add_response_header(r, "Content-Type", ctype);
    MHD_add_response_header(r, "Cache-Control", "no-cache");
    enum MHD_Result ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

static unsigned status_of(enum nk_code code)
{
    switch (code) {
    case NK_CODE_OK: return 200;
    case NK_INVALID_ARGUMENT: return 400;
    case NK_NOT_FOUND: return 404;
    case NK_UNIMPLEMENTED: return 501;
    case NK_UNAVAILABLE: return 503;
    case NK_RESOURCE_EXHAUSTED: return 429;
    default: return 500;
    }
}

int api_http_error(struct MHD_Connection *c, enum nk_code code, const char *msg)
{
    struct nk_buf b;
    nk_buf_init(&b);
    api_buf_printf(&b, "{\"error\":");
    api_json_string(&b, (const uint8_t *)msg, strlen(msg));
    api_buf_printf(&b, ",\"code\":\"%s\"}\n", nk_code_name(code));
    enum MHD_Result r = send_buf(c, status_of(code), "application/json", b.data, b.len, false);
    nk_buf_free(&b);
    return r;
}

/* ------------------------------------------------------------ slow calls */

static const char *const op_names[API_OP_COUNT] = {"put", "get", "delete", "range",
                                                         "batch"};
/* as the outcome label of norikv_requests_total (grpc.c) */
static const char *const out_names[OUT_COUNT] = {
    "ok",         "not_found",   "version_mismatch",  "already_exists",     "invalid_argument",
    "not_leader", "unavailable", "deadline_exceeded", "resource_exhausted", "internal"};
_Static_assert(OUT_COUNT == 10, "out_names must name every api_outcome");

static uint64_t slow_threshold_us = (uint64_t)API_SLOW_REQUEST_MS * 1000;
static pthread_once_t slow_once = PTHREAD_ONCE_INIT;

/* NORIKV_SLOW_REQUEST_MS (decimal ms, 0 = every request) overrides the threshold */
static void slow_init(void)
{
    const char *env = getenv("NORIKV_SLOW_REQUEST_MS");
    if (!env || !*env)
        return;
    uint64_t v = 0;
    if (api_parse_u64((const uint8_t *)env, strlen(env), &v) && v <= 3600u * 1000u)
        slow_threshold_us = v * 1000;
    else
        NK_WARN(MODULE, "NORIKV_SLOW_REQUEST_MS '%.32s' is not a number of ms up to 3600000; "
                        "using %d", env, API_SLOW_REQUEST_MS);
}

void api_note_slow(struct api *a, enum api_op op, enum api_outcome out, uint64_t us)
{
    pthread_once(&slow_once, slow_init);
    if (us < slow_threshold_us)
        return;
    /* at most 10 events a second: an overloaded node must not flood the ring */
    uint64_t ms = nk_mono_ms();
    uint64_t w = atomic_load(&a->slow_window_ms);
    if (ms - w >= 1000 && atomic_compare_exchange_strong(&a->slow_window_ms, &w, ms))
        atomic_store(&a->slow_in_window, 0);
    if (atomic_fetch_add(&a->slow_in_window, 1) >= 10) {
        atomic_fetch_add(&a->slow_suppressed, 1);
        return;
    }
    uint64_t sup = atomic_exchange(&a->slow_suppressed, 0);
    struct obs_event_attrs at = {.set = OBS_ATTR_DURATION, .duration_us = us};
    if (sup) {
        at.set |= OBS_ATTR_COUNT;
        at.count = sup;
    }
    obs_event_emit_attrs(obs_events_default(), OBS_EV_SLOW_REQUEST, OBS_NO_SHARD, &at,
                         "%s took %.1f ms (%s)%s",
                         (unsigned)op < API_OP_COUNT ? op_names[op] : "request",
                         (double)us / 1000.0, (unsigned)out < OUT_COUNT ? out_names[out] : "?",
                         sup ? "; more slow requests were not reported one by one" : "");
}

/* ---------------------------------------------------------- /metrics extras */

struct observe_counters {
    struct obs_counter *proposals, *proposals_failed, *flushes, *compactions, *trivial,
        *stalls, *flush_bytes, *events, *frames_dropped_in, *frames_dropped_out, *frames_bad;
    struct obs_gauge *memtable_bytes, *sse_clients, *members, *peers_up;
};

static struct observe_counters oc;
static pthread_once_t oc_once = PTHREAD_ONCE_INIT;

static void oc_register(void)
{
    struct obs_registry *r = obs_default();
    struct {
        const char *name, *help;
        struct obs_counter **out;
    } cs[] = {
        {"norikv_raft_proposals_total", "Proposals accepted by this node's shards", &oc.proposals},
        {"norikv_raft_proposals_failed_total", "Proposals that failed (not leader, full, ...)",
         &oc.proposals_failed},
        {"norikv_lsm_flushes_total", "Memtables flushed to level 0", &oc.flushes},
        {"norikv_lsm_compactions_total", "Compactions that rewrote tables", &oc.compactions},
        {"norikv_lsm_trivial_moves_total", "Tables moved down a level without rewriting",
         &oc.trivial},
        {"norikv_lsm_write_stalls_total", "Writes that waited for flush or compaction",
         &oc.stalls},
        {"norikv_lsm_flush_written_bytes_total", "Bytes of level-0 tables written by flushes",
         &oc.flush_bytes},
        {"norikv_events_total", "Events emitted to the event ring (/events)", &oc.events},
        {"norikv_transport_frames_dropped_in_total",
         "Peer frames dropped on receipt (the inbound queue was full)", &oc.frames_dropped_in},
        {"norikv_transport_frames_dropped_out_total",
         "Raft messages not sent (peer down or its queue full; Raft retransmits)",
         &oc.frames_dropped_out},
        {"norikv_transport_frames_bad_total", "Peer frames refused as malformed",
         &oc.frames_bad},
    };
    for (size_t i = 0; i < sizeof cs / sizeof cs[0]; i++) {
        nk_status s = obs_counter_register(r, cs[i].name, cs[i].help, cs[i].out);
        nk_status_free(&s);
    }
    nk_status s = obs_gauge_register(r, "norikv_lsm_memtable_bytes",
                                     "Bytes in the active and immutable memtables",
                                     &oc.memtable_bytes);
    nk_status_free(&s);
    s = obs_gauge_register(r, "norikv_http_event_streams", "Open /events streams",
                           &oc.sse_clients);
    nk_status_free(&s);
    s = obs_gauge_register(r, "norikv_cluster_members", "Nodes in this node's membership",
                           &oc.members);
    nk_status_free(&s);
    s = obs_gauge_register(r, "norikv_cluster_peers_up", "Peers with an open session",
                           &oc.peers_up);
    nk_status_free(&s);
}

/* raise_to allows one raiser at a time: /metrics, /dashboard/data and the
 * OTLP exporter may refresh at once */
static pthread_mutex_t oc_mu = PTHREAD_MUTEX_INITIALIZER;

/*
 * Transport metrics, per peer (labelled by the address this node dials: a
 * peer's label never changes, and members are at most NODE_MAX_MEMBERS so
 * the series stay few) and per traffic class. The transport keeps the
 * totals; they are copied in on each refresh. Called under oc_mu.
 */
#define TP_MAX_PEERS 16
static const char *const TP_CLASS[TRANSPORT_NCLASSES] = {"raft", "bulk"};

static struct obs_family *tp_fam(enum obs_type type, const char *name, const char *help,
                                 const char *const *labels, size_t nl)
{
    struct obs_family *f = NULL;
    nk_status s = obs_family_register(obs_default(), type, OBS_UNIT_NONE, name, help, labels, nl,
                                      &f);
    nk_status_free(&s);
    return f; /* NULL (bound reached): the series are skipped */
}

static void tp_counter(struct obs_family *f, const char *const *lv, uint64_t v)
{
    struct obs_counter *c = NULL;
    if (!f)
        return;
    nk_status s = obs_family_counter(f, lv, &c);
    nk_status_free(&s);
    obs_counter_raise_to(c, v);
}

static void tp_gauge(struct obs_family *f, const char *const *lv, int64_t v)
{
    struct obs_gauge *g = NULL;
    if (!f)
        return;
    nk_status s = obs_family_gauge(f, lv, &g);
    nk_status_free(&s);
    obs_gauge_set(g, v);
}

/* SWIM's counters and the members by state (clusters only). */
static void swim_update(const struct node_stats *ns)
{
    if (!ns->swim_running)
        return;
    static const char *const dir[] = {"direction"};
    static const char *const st[] = {"state"};
    struct obs_family *pk = tp_fam(OBS_COUNTER, "norikv_swim_packets_total",
                                   "SWIM datagrams sent (out) and received (in)", dir, 1);
    struct obs_family *by = tp_fam(OBS_COUNTER, "norikv_swim_bytes_total",
                                   "SWIM datagram bytes sent (out) and received (in)", dir, 1);
    const char *out[] = {"out"}, *in[] = {"in"};
    tp_counter(pk, out, ns->swim_packets_out);
    tp_counter(pk, in, ns->swim_packets_in);
    tp_counter(by, out, ns->swim_bytes_out);
    tp_counter(by, in, ns->swim_bytes_in);
    struct {
        const char *name, *help;
        uint64_t v;
    } cs[] = {
        {"norikv_swim_rejected_total",
         "SWIM datagrams refused (malformed, or from another cluster)", ns->swim_rejected},
        {"norikv_swim_send_failures_total", "SWIM datagrams that could not be sent",
         ns->swim_send_failed},
        {"norikv_swim_probes_failed_total", "SWIM protocol periods that ended without an ack",
         ns->swim_probes_failed},
        {"norikv_swim_suspicions_total", "Members this node suspected", ns->swim_suspicions},
        {"norikv_swim_refutations_total", "Rumours of this node's failure that it refuted",
         ns->swim_refutations},
        {"norikv_swim_member_changes_total", "Member state changes this node saw",
         ns->swim_changes},
    };
    for (size_t i = 0; i < NK_ARRAY_LEN(cs); i++)
        tp_counter(tp_fam(OBS_COUNTER, cs[i].name, cs[i].help, NULL, 0), NULL, cs[i].v);
    tp_gauge(tp_fam(OBS_GAUGE, "norikv_swim_local_health",
                    "Lifeguard's local health multiplier (0: healthy)", NULL, 0),
             NULL, ns->swim_lhm);
    tp_gauge(tp_fam(OBS_GAUGE, "norikv_swim_incarnation", "This node's SWIM incarnation", NULL,
                    0),
             NULL, (int64_t)ns->swim_incarnation);
    struct obs_family *mem = tp_fam(OBS_GAUGE, "norikv_swim_members",
                                    "Cluster members by SWIM state, as this node sees them", st, 1);
    const char *la[] = {"alive"}, *ls[] = {"suspect"}, *ld[] = {"dead"}, *ll[] = {"left"};
    tp_gauge(mem, la, ns->members_alive);
    tp_gauge(mem, ls, ns->members_suspect);
    tp_gauge(mem, ld, ns->members_dead);
    tp_gauge(mem, ll, ns->members_left);
}

/* Replica moves (docs/membership.md): what this node led and what it got. */
static void placement_update(struct api *a, const struct node_stats *ns)
{
    struct node_plan_stats ps;
    node_plan_stats(a->node, &ps);
    struct {
        const char *name, *help;
        uint64_t v;
    } cs[] = {
        {"norikv_placement_moves_started_total",
         "Replicas this node added as a learner, as the leader of their shard", ps.moves_started},
        {"norikv_placement_moves_promoted_total", "Of those, learners promoted to voters",
         ps.moves_promoted},
        {"norikv_placement_replicas_retired_total",
         "Replicas this node removed from their shard as its leader", ps.removals},
        {"norikv_placement_leader_handoffs_total",
         "Leaderships handed over so that this node's replica could be retired", ps.transfers},
        {"norikv_replicas_created_total", "Replicas created on this node while it ran",
         ns->replicas_created},
        {"norikv_replicas_deleted_total", "Replicas deleted from this node while it ran",
         ns->replicas_removed},
    };
    for (size_t i = 0; i < NK_ARRAY_LEN(cs); i++)
        tp_counter(tp_fam(OBS_COUNTER, cs[i].name, cs[i].help, NULL, 0), NULL, cs[i].v);
    tp_gauge(tp_fam(OBS_GAUGE, "norikv_placement_moves_in_flight",
                    "Learners this node is catching up (bounded by cluster.max_concurrent_moves)",
                    NULL, 0),
             NULL, ps.in_flight);
    tp_gauge(tp_fam(OBS_GAUGE, "norikv_placement_shards_to_move",
                    "Shards this node leads whose replicas differ from the placement plan", NULL,
                    0),
             NULL, ps.shards_to_move);
    tp_gauge(tp_fam(OBS_GAUGE, "norikv_node_draining", "1 while this node is being drained",
                    NULL, 0),
             NULL, ps.draining);
    tp_gauge(tp_fam(OBS_GAUGE, "norikv_node_shards_hosted", "Shard replicas this node holds",
                    NULL, 0),
             NULL, ns->shards_hosted);
}

static void transport_update(struct api *a)
{
    static struct transport_peer_stats peers[TP_MAX_PEERS];
    struct transport_stats tot;
    size_t n = node_transport_stats(a->node, &tot, peers, TP_MAX_PEERS);
    if (n == 0 && tot.accepted == 0)
        return; /* a one-node cluster has no transport: no series */
    static const char *const pc[] = {"peer", "class"};
    static const char *const p1[] = {"peer"};
    static const char *const pr[] = {"peer", "reason"};
    struct obs_family *sent_b = tp_fam(OBS_COUNTER, "norikv_transport_sent_bytes_total",
                                       "Payload bytes sent to a peer", pc, 2);
    struct obs_family *recv_b = tp_fam(OBS_COUNTER, "norikv_transport_received_bytes_total",
                                       "Payload bytes received from a peer", pc, 2);
    struct obs_family *sent_f = tp_fam(OBS_COUNTER, "norikv_transport_sent_frames_total",
                                       "Frames sent to a peer", pc, 2);
    struct obs_family *recv_f = tp_fam(OBS_COUNTER, "norikv_transport_received_frames_total",
                                       "Frames received from a peer", pc, 2);
    struct obs_family *queued = tp_fam(OBS_GAUGE, "norikv_transport_queued_bytes",
                                       "Bytes waiting in a peer's send queue", pc, 2);
    struct obs_family *dropped = tp_fam(
        OBS_COUNTER, "norikv_transport_dropped_frames_total",
        "Frames not delivered to a peer: its queue was full, its session down, or the session "
        "ended with them queued",
        pr, 2);
    struct obs_family *up = tp_fam(OBS_GAUGE, "norikv_transport_peer_up",
                                   "1 while the peer's session is up", p1, 1);
    struct obs_family *sessions = tp_fam(OBS_COUNTER, "norikv_transport_sessions_total",
                                         "Sessions established with a peer (handshakes)", p1, 1);
    struct obs_family *dials = tp_fam(OBS_COUNTER, "norikv_transport_dials_total",
                                      "Connection attempts made to a peer", p1, 1);
    struct obs_family *acc = tp_fam(OBS_COUNTER, "norikv_transport_accepted_total",
                                    "Inbound peer connections accepted", NULL, 0);
    struct obs_family *mal = tp_fam(OBS_COUNTER, "norikv_transport_malformed_total",
                                    "Peer connections closed for malformed input", NULL, 0);
    tp_counter(acc, NULL, tot.accepted);
    tp_counter(mal, NULL, tot.malformed);
    for (size_t i = 0; i < n; i++) {
        const struct transport_peer_stats *p = &peers[i];
        const char *lp[] = {p->addr};
        uint64_t full = 0, down = 0, disc = 0;
        for (int c = 0; c < TRANSPORT_NCLASSES; c++) {
            const char *lv[] = {p->addr, TP_CLASS[c]};
            tp_counter(sent_b, lv, p->sent_bytes[c]);
            tp_counter(recv_b, lv, p->recv_bytes[c]);
            tp_counter(sent_f, lv, p->sent_frames[c]);
            tp_counter(recv_f, lv, p->recv_frames[c]);
            tp_gauge(queued, lv, (int64_t)p->queued_bytes[c]);
            full += p->dropped_full[c];
            down += p->dropped_down[c];
            disc += p->discarded[c];
        }
        const char *lf[] = {p->addr, "queue_full"}, *ld[] = {p->addr, "session_down"},
                   *lx[] = {p->addr, "session_ended"};
        tp_counter(dropped, lf, full);
        tp_counter(dropped, ld, down);
        tp_counter(dropped, lx, disc);
        tp_gauge(up, lp, p->connected ? 1 : 0);
        tp_counter(sessions, lp, p->sessions);
        tp_counter(dials, lp, p->dials);
    }
}

void api_observe_update(struct api *a)
{
    pthread_once(&oc_once, oc_register);
    pthread_mutex_lock(&oc_mu);
    struct node_stats ns;
    node_get_stats(a->node, &ns);
    obs_counter_raise_to(oc.proposals, ns.proposals);
    obs_counter_raise_to(oc.proposals_failed, ns.proposals_failed);
    obs_counter_raise_to(oc.frames_dropped_in, ns.frames_dropped_in);
    obs_counter_raise_to(oc.frames_dropped_out, ns.frames_dropped_out);
    obs_counter_raise_to(oc.frames_bad, ns.frames_bad);
    obs_gauge_set(oc.members, ns.members);
    obs_gauge_set(oc.peers_up, ns.peers_up);
    struct lsm_stats ls;
    lsm_get_stats(node_lsm(a->node), &ls);
    obs_counter_raise_to(oc.flushes, ls.flushes);
    obs_counter_raise_to(oc.compactions, ls.compactions);
    obs_counter_raise_to(oc.trivial, ls.trivial_moves);
    obs_counter_raise_to(oc.stalls, ls.write_stalls);
    obs_counter_raise_to(oc.flush_bytes, ls.flush_bytes_written);
    obs_counter_raise_to(oc.events, obs_events_last_seq(obs_events_default()));
    obs_gauge_set(oc.memtable_bytes, (int64_t)ls.memtable_bytes);
    obs_gauge_set(oc.sse_clients, (int64_t)atomic_load(&a->sse_clients));
    transport_update(a);
    swim_update(&ns);
    placement_update(a, &ns);
    obs_process_collect(NULL);
    pthread_mutex_unlock(&oc_mu);
}

/* ------------------------------------------------------- /dashboard/data */

static void hist_json(struct nk_buf *b, const struct obs_histogram *h)
{
    struct obs_hist_snapshot s;
    obs_hist_snapshot(h, &s);
    /* latencies in microseconds, quantiles interpolated inside buckets */
    api_buf_printf(b,
                   "{\"count\":%" PRIu64 ",\"sum_us\":%" PRIu64
                   ",\"p50_us\":%.1f,\"p90_us\":%.1f,\"p99_us\":%.1f,\"p999_us\":%.1f}",
                   s.count, s.sum, obs_hist_quantile(&s, 0.5), obs_hist_quantile(&s, 0.9),
                   obs_hist_quantile(&s, 0.99), obs_hist_quantile(&s, 0.999));
}

static struct obs_histogram *raft_hist(const char *name)
{
    struct obs_histogram *h = NULL;
    /* registration is idempotent: the node registered these at open */
    nk_status s = obs_histogram_register(obs_default(), OBS_UNIT_MICROS, name, NULL, &h);
    nk_status_free(&s);
    return h;
}

static uint64_t counter_named(const char *name)
{
    struct obs_counter *c = NULL;
    nk_status s = obs_counter_register(obs_default(), name, NULL, &c);
    nk_status_free(&s);
    return c ? obs_counter_value(c) : 0;
}

static void dashboard_data(struct api *a, struct nk_buf *b)
{
    api_observe_update(a);
    struct node_view v;
    node_view_get(a->node, &v);
    struct node_stats ns;
    node_get_stats(a->node, &ns);
    struct lsm_health lh;
    lsm_health(node_lsm(a->node), &lh);
    /* a cluster member holding no replica (joined just now, or drained) is
         * ready: it routes every request to the shards' leaders */
        bool ready = (ns.shards_hosted > 0 || ns.members > 1) &&
                     ns.shards_ready == ns.shards_hosted;
    bool degraded = ns.degraded || ns.damaged_shards > 0 || !lh.writable || lh.nquarantined;

    /* this node is the view's first entry (as /health says) */
    api_buf_printf(b, "{\"time_ms\":%" PRIu64 ",\"node\":", nk_wall_ms());
    api_json_string(b, (const uint8_t *)v.nodes[0].id, strlen(v.nodes[0].id));
    api_buf_printf(b, ",\"status\":\"%s\",\"uptime_ms\":%" PRIu64 ",\"epoch\":%" PRIu64,
                   degraded ? "degraded" : ready ? "ok" : "starting", nk_mono_ms() - a->start_ms,
                   v.epoch);
    api_buf_printf(b, ",\"shards_led\":%u,\"shards_hosted\":%u,\"shards_ready\":%u"
                      ",\"damaged_shards\":%u,\"pending\":%" PRIu64,
                   ns.shards_led, ns.shards_hosted, ns.shards_ready, ns.damaged_shards,
                   ns.pending);
    api_buf_printf(b, ",\"nodes\":[");
    for (uint32_t i = 0; i < v.n_nodes; i++) {
        uint32_t led = 0;
        for (uint32_t s = 0; s < v.total_shards; s++)
            if (v.leader[s] == (int8_t)i)
                led++;
        api_buf_printf(b, "%s{\"id\":", i ? "," : "");
        api_json_string(b, (const uint8_t *)v.nodes[i].id, strlen(v.nodes[i].id));
        api_buf_printf(b, ",\"addr\":");
        api_json_string(b, (const uint8_t *)v.nodes[i].addr, strlen(v.nodes[i].addr));
        api_buf_printf(b, ",\"role\":\"%s\",\"leads\":%u,\"self\":%s}", v.nodes[i].role, led,
                       i == 0 ? "true" : "false");
    }
    /* shards compactly: leader index per shard, replica indexes, applied index */
    api_buf_printf(b, "],\"total_shards\":%u,\"shard_leader\":[", v.total_shards);
    for (uint32_t s = 0; s < v.total_shards; s++)
        api_buf_printf(b, "%s%d", s ? "," : "", v.leader[s]);
    api_buf_printf(b, "],\"shard_replicas\":[");
    for (uint32_t s = 0; s < v.total_shards; s++) {
        api_buf_printf(b, "%s[", s ? "," : "");
        for (uint32_t j = 0; j < v.n_replicas[s]; j++)
            api_buf_printf(b, "%s%u", j ? "," : "", v.replicas[s][j]);
        api_buf_printf(b, "]");
    }
    api_buf_printf(b, "],\"shard_applied\":[");
    for (uint32_t s = 0; s < v.total_shards; s++)
        api_buf_printf(b, "%s%" PRIu64, s ? "," : "", node_shard_applied(a->node, s));
    api_buf_printf(b, "]");

    /* requests by operation */
    api_buf_printf(b, ",\"ops\":{");
    for (int op = 0; op < API_OP_COUNT; op++) {
        uint64_t total = 0, errors = 0;
        for (int o = 0; o < OUT_COUNT; o++) {
            uint64_t n = obs_counter_value(a->requests[op][o]);
            total += n;
            if (o != OUT_OK && o != OUT_NOT_FOUND && o != OUT_VERSION_MISMATCH &&
                o != OUT_ALREADY_EXISTS)
                errors += n;
        }
        api_buf_printf(b, "%s\"%s\":{\"count\":%" PRIu64 ",\"errors\":%" PRIu64
                          ",\"latency\":",
                       op ? "," : "", op_names[op], total, errors);
        hist_json(b, a->latency[op]);
        api_buf_printf(b, "}");
    }
    api_buf_printf(b, "}");

    /* raft */
    api_buf_printf(b, ",\"raft\":{\"proposals\":%" PRIu64 ",\"proposals_failed\":%" PRIu64
                      ",\"rounds\":%" PRIu64 ",\"fsyncs\":%" PRIu64 ",\"applied_entries\":%" PRIu64
                      ",\"leader_changes\":%" PRIu64 ",\"snapshots_sent\":%" PRIu64
                      ",\"snapshots_installed\":%" PRIu64 ",\"commit\":",
                   ns.proposals, ns.proposals_failed, ns.rounds, ns.fsyncs, ns.applied_entries,
                   counter_named("norikv_raft_leader_changes_total"),
                   counter_named("norikv_raft_snapshots_sent_total"),
                   counter_named("norikv_raft_snapshots_installed_total"));
    hist_json(b, raft_hist("norikv_raft_commit_duration_seconds"));
    api_buf_printf(b, ",\"fsync\":");
    hist_json(b, raft_hist("norikv_raft_fsync_duration_seconds"));
    api_buf_printf(b, "}");

    /* lsm */
    struct lsm_stats ls;
    lsm_get_stats(node_lsm(a->node), &ls);
    api_buf_printf(b, ",\"lsm\":{\"levels\":[");
    for (int l = 0; l < LSM_NUM_LEVELS; l++)
        api_buf_printf(b, "%s{\"level\":%d,\"files\":%" PRIu64 ",\"bytes\":%" PRIu64 "}",
                       l ? "," : "", l, (uint64_t)ls.level[l].files, (uint64_t)ls.level[l].bytes);
    api_buf_printf(b, "],\"flushes\":%" PRIu64 ",\"compactions\":%" PRIu64
                      ",\"trivial_moves\":%" PRIu64 ",\"write_stalls\":%" PRIu64
                      ",\"compaction_bytes_read\":%" PRIu64
                      ",\"compaction_bytes_written\":%" PRIu64 ",\"flush_bytes_written\":%" PRIu64
                      ",\"user_bytes_written\":%" PRIu64 ",\"write_amplification\":%.3f"
                      ",\"memtable_bytes\":%" PRIu64 ",\"immutable_memtables\":%u"
                      ",\"block_cache_hits\":%" PRIu64 ",\"block_cache_misses\":%" PRIu64 "}",
                   ls.flushes, ls.compactions, ls.trivial_moves, ls.write_stalls,
                   ls.compaction_bytes_read, ls.compaction_bytes_written, ls.flush_bytes_written,
                   ls.user_bytes_written, ls.write_amplification, ls.memtable_bytes,
                   ls.immutable_memtables, ls.block_cache_hits, ls.block_cache_misses);

    struct obs_process_sample ps;
    obs_process_collect(&ps);
    api_buf_printf(b, ",\"process\":{\"rss_bytes\":%" PRIu64 ",\"open_fds\":%" PRIu64
                      ",\"threads\":%" PRIu64 ",\"cpu_us\":%" PRIu64 "}",
                   ps.rss_bytes, ps.open_fds, ps.threads, ps.cpu_us);
    api_buf_printf(b, ",\"events\":{\"last_seq\":%" PRIu64 ",\"capacity\":%u,\"streams\":%u"
                      ",\"max_streams\":%d}}\n",
                   obs_events_last_seq(obs_events_default()),
                   obs_events_capacity(obs_events_default()), atomic_load(&a->sse_clients),
                   API_SSE_MAX_CLIENTS);
    lsm_health_free(&lh);
    node_view_free(&v);
}

/* ---------------------------------------------------------------- routes */

bool api_observe_http(struct api *a, struct MHD_Connection *c, const char *url,
                      const char *method, int *ret)
{
    bool get = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
    bool events = strcmp(url, "/events") == 0;
    bool data = strcmp(url, "/dashboard/data") == 0;
    const struct dashboard_asset *asset = NULL;
    if (strcmp(url, "/dashboard") == 0 || strcmp(url, "/dashboard/") == 0)
        asset = dashboard_asset_find("index.html");
    else if (strncmp(url, "/dashboard/", 11) == 0 && !data)
        asset = dashboard_asset_find(url + 11);
    if (!events && !data && !asset) {
        if (strncmp(url, "/dashboard/", 11) != 0)
            return false;
        char msg[160];
        snprintf(msg, sizeof msg, "no such dashboard file: %.100s", url);
        *ret = api_http_error(c, NK_NOT_FOUND, msg);
        return true;
    }
    if (!get) {
        char msg[96];
        snprintf(msg, sizeof msg, "method %.16s is not allowed on %.40s", method, url);
        *ret = api_http_error(c, NK_UNIMPLEMENTED, msg);
        return true;
    }
    if (events) {
        *ret = api_events_http(a, c);
    } else if (data) {
        struct nk_buf b;
        nk_buf_init(&b);
        dashboard_data(a, &b);
        *ret = send_buf(c, 200, "application/json", b.data, b.len, false);
        nk_buf_free(&b);
    } else {
        *ret = send_buf(c, 200, asset->content_type, asset->data, asset->len, true);
    }
    return true;
}

/* ------------------------------------------------------------------ OTLP */

/* A decimal number of ms from the environment; def when unset, bad or 0. */
static uint32_t env_ms(const char *name, uint32_t def)
{
    const char *v = getenv(name);
    uint64_t n = 0;
    if (!v || !*v)
        return def;
    if (!api_parse_u64((const uint8_t *)v, strlen(v), &n) || n == 0 || n > 3600000) {
        NK_WARN(MODULE, "%s '%.32s' is not a number of ms in 1..3600000; using %u", name, v, def);
        return def;
    }
    return (uint32_t)n;
}

/* Before each export: the gauges /metrics refreshes on demand. */
static void otlp_refresh(void *ctx)
{
    struct api *a = ctx;
    api_update_gauges(a);
    api_observe_update(a);
}

/* base (trailing slashes dropped) + path, into out */
static void join_url(char *out, size_t cap, const char *base, const char *path)
{
    size_t n = strlen(base);
    while (n && base[n - 1] == '/')
        n--;
    snprintf(out, cap, "%.*s%s", (int)(n > 900 ? 900 : n), base, path);
}

/* The share of root requests to trace from OTEL_TRACES_SAMPLER(_ARG). */
static double env_ratio(void)
{
    const char *sampler = getenv("OTEL_TRACES_SAMPLER");
    if (!sampler || !*sampler)
        return 0; /* a database traces what its callers sample (docs) */
    if (!strcmp(sampler, "always_on") || !strcmp(sampler, "parentbased_always_on"))
        return 1;
    if (!strcmp(sampler, "always_off") || !strcmp(sampler, "parentbased_always_off"))
        return 0;
    if (!strcmp(sampler, "traceidratio") || !strcmp(sampler, "parentbased_traceidratio")) {
        const char *arg = getenv("OTEL_TRACES_SAMPLER_ARG");
        char *end = NULL;
        double r = arg && *arg ? strtod(arg, &end) : 1.0;
        if (arg && *arg && (*end || !(r >= 0 && r <= 1))) {
            NK_WARN(MODULE, "OTEL_TRACES_SAMPLER_ARG '%.32s' is not a ratio in 0..1; using 1",
                    arg);
            r = 1;
        }
        return r;
    }
    NK_WARN(MODULE, "OTEL_TRACES_SAMPLER '%.40s' is not supported; tracing only requests whose "
                    "traceparent is sampled", sampler);
    return 0;
}

/*
 * OTLP export of metrics and traces. Configured by telemetry.otlp.* when
 * telemetry.otlp.enabled is true; otherwise by the OpenTelemetry SDKs'
 * environment variables: OTEL_EXPORTER_OTLP_ENDPOINT (a base; /v1/metrics
 * and /v1/traces are appended), OTEL_EXPORTER_OTLP_METRICS_ENDPOINT and
 * OTEL_EXPORTER_OTLP_TRACES_ENDPOINT (full URLs, per signal),
 * OTEL_METRIC_EXPORT_INTERVAL and OTEL_METRIC_EXPORT_TIMEOUT (ms),
 * OTEL_BSP_SCHEDULE_DELAY (ms a finished trace may wait),
 * OTEL_TRACES_SAMPLER(_ARG), OTEL_SERVICE_NAME. Neither: no export, no
 * tracing. A bad value is logged, not fatal.
 */
void api_otlp_start(struct api *a)
{
    char murl[1024] = "", turl[1024] = "";
    uint32_t interval, timeout, tinterval = env_ms("OTEL_BSP_SCHEDULE_DELAY", 1000);
    double ratio;
    if (a->otlp_endpoint) {
        join_url(murl, sizeof murl, a->otlp_endpoint, "/v1/metrics");
        join_url(turl, sizeof turl, a->otlp_endpoint, "/v1/traces");
        interval = a->otlp_interval_ms ? a->otlp_interval_ms : 10000;
        timeout = a->otlp_timeout_ms ? a->otlp_timeout_ms : 5000;
        ratio = a->otlp_ratio;
    } else {
        const char *base = getenv("OTEL_EXPORTER_OTLP_ENDPOINT");
        const char *mfull = getenv("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT");
        const char *tfull = getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT");
        if (mfull && *mfull)
            snprintf(murl, sizeof murl, "%s", mfull);
        else if (base && *base)
            join_url(murl, sizeof murl, base, "/v1/metrics");
        if (tfull && *tfull)
            snprintf(turl, sizeof turl, "%s", tfull);
        else if (base && *base)
            join_url(turl, sizeof turl, base, "/v1/traces");
        if (!*murl && !*turl)
            return;
        interval = env_ms("OTEL_METRIC_EXPORT_INTERVAL", 10000);
        timeout = env_ms("OTEL_METRIC_EXPORT_TIMEOUT", 5000);
        ratio = env_ratio();
    }
    struct node_view v;
    node_view_get(a->node, &v);
    struct obs_otlp_options o = {
        .endpoint = *murl ? murl : NULL,
        .traces_endpoint = *turl ? turl : NULL,
        .interval_ms = interval,
        .trace_interval_ms = tinterval,
        .timeout_ms = timeout,
        .service_name = getenv("OTEL_SERVICE_NAME") && *getenv("OTEL_SERVICE_NAME")
                            ? getenv("OTEL_SERVICE_NAME")
                            : "norikv",
        .instance_id = v.n_nodes ? v.nodes[0].id : a->node_id,
        .refresh = otlp_refresh,
        .refresh_ctx = a,
    };
    /* the series the dashboard shows come from totals refreshed on demand:
     * register them now so that the first export carries them too */
    api_observe_update(a);
    nk_status s = obs_otlp_start(&o, &a->otlp);
    node_view_free(&v);
    if (!nk_ok(s)) {
        NK_WARN(MODULE, "OTLP export is off: %s", nk_status_msg(s));
        nk_status_free(&s);
        a->otlp = NULL;
        return;
    }
    if (*turl)
        obs_tracing_configure(true, ratio);
    NK_INFO(MODULE, "exporting over OTLP/HTTP: metrics to %s every %u ms, traces to %s "
                    "(%g of requests without a traceparent)",
            *murl ? murl : "(none)", interval, *turl ? turl : "(none)", *turl ? ratio : 0.0);
}

void api_otlp_stop(struct api *a)
{
    if (a->otlp)
        obs_tracing_configure(false, 0);
    obs_otlp_stop(a->otlp);
    a->otlp = NULL;
}
