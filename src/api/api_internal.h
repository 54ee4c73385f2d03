/* api_internal.h: what api's gRPC and HTTP halves share. Not a public header. */
#ifndef NK_API_INTERNAL_H
#define NK_API_INTERNAL_H

#include <pthread.h>

#include "api/api.h"
#include "observe/observe.h"

enum api_op { API_PUT = 0, API_GET = 1, API_DELETE = 2, API_RANGE = 3, API_BATCH = 4, API_OP_COUNT = 5 };
#define API_VOP_COUNT 6 /* vector.c: create_index drop_index insert delete search get */

enum api_outcome {
    OUT_OK = 0,
    OUT_NOT_FOUND,
    OUT_VERSION_MISMATCH,
    OUT_ALREADY_EXISTS,
    OUT_INVALID_ARGUMENT,
    OUT_NOT_LEADER,
    OUT_UNAVAILABLE,
    OUT_DEADLINE_EXCEEDED,
    OUT_RESOURCE_EXHAUSTED,
    OUT_INTERNAL,
    OUT_COUNT
};

struct api_watch; /* one WatchCluster stream */

struct api {
    struct node *node;
    char *node_id;
    bool prometheus;
    uint32_t http_max_conn, http_max_per_ip, http_request_timeout_ms;
    uint64_t http_max_body_bytes;
    _Atomic uint64_t http_body_bytes; /* request bodies buffered now */
    uint64_t vector_budget; /* vector.c: node-wide bound of vec_store_memory */
    struct obs_counter *vreq[API_VOP_COUNT][OUT_COUNT]; /* vector.c's metrics */
    struct obs_histogram *vlat[API_VOP_COUNT];
    struct obs_gauge *vmem;
    uint32_t total_shards;
    uint64_t start_ms;

    /* metrics */
    struct obs_counter *requests[API_OP_COUNT][OUT_COUNT];
    struct obs_histogram *latency[API_OP_COUNT];
    struct obs_gauge *lsm_level_bytes[8], *lsm_level_files[8];
    struct obs_gauge *lsm_compact_read, *lsm_compact_written, *lsm_wamp_milli;
    struct obs_gauge *shards_led, *last_applied;

    /* WatchCluster streams */
    pthread_mutex_t wmu;
    struct api_watch *watches;
    uint32_t n_watches;
    uint32_t node_watch_id;
    bool watching;
    bool shut;

    /* admin snapshots run one at a time, off the rpc workers */
    _Atomic int snapshot_running;
    pthread_mutex_t snap_mu; /* guards snap_thread/snap_started */
    pthread_t snap_thread;
    bool snap_started;

    void *httpd; /* struct MHD_Daemon */
    struct http_guard *http_guard;

    /* observability endpoints (events_http.c, observe_http.c) */
    _Atomic uint32_t sse_clients; /* /events streams open now */
    _Atomic bool http_stopping;   /* set before the HTTP server stops: streams end */
    _Atomic uint64_t slow_window_ms, slow_in_window, slow_suppressed;
    struct obs_otlp_exporter *otlp; /* NULL: no OTLP export configured */
    struct range_finisher *range_fin; /* range.c: pages handed off the Ready loop */
    struct api_evstreams *evstreams; /* Meta.WatchEvents (events_grpc.c) */
    struct api_watches *kvwatch;     /* Kv.Watch streams (watch.c) */
    char *otlp_endpoint;            /* telemetry.otlp.endpoint when enabled, else NULL */
    uint32_t otlp_interval_ms, otlp_timeout_ms;
    double otlp_ratio;
};

/* vector.c: registers the norikv.v1.Vector methods. */
nk_status api_vector_register(struct api *a, struct rpc_server *s);
/* vector.c: RESOURCE_EXHAUSTED when the node's vector indexes have reached
 * the budget (checked before an insert or a create is proposed). */
nk_status api_vector_admit(struct api *a);
/* vector.c: counts a finished Vector request (op: 0 create_index, 1
 * drop_index, 2 insert, 3 delete, 4 search, 5 get) in the vector metrics. */
void api_vector_record(struct api *a, int op, uint64_t t0, enum nk_code code, const char *msg);
/* vector.c: refreshes norikv_vector_memory_bytes (api_update_gauges). */
void api_vector_update_gauges(struct api *a);

/* watch.c: registers Kv.Watch and starts its pump thread; stop ends the
 * open streams; free releases what is left (after the rpc server stopped). */
nk_status api_watch_register(struct api *a, struct rpc_server *s);
void api_watch_stop(struct api *a);
void api_watch_free(struct api *a);
/* events_grpc.c: registers Meta.WatchEvents and starts its pump thread. */
nk_status api_events_grpc_register(struct api *a, struct rpc_server *s);
/* events_grpc.c: stops the pump and ends the open event streams. */
void api_events_grpc_stop(struct api *a);
/* range.c: stops the thread that runs range pages handed off the node's
 * Ready loop (the queued ones run first); later hand-offs run inline. */
void api_range_stop(struct api *a);
/* range.c: frees what api_range_stop left (api_free). */
void api_range_free(struct api *a);
/* events_grpc.c: releases what is left (after the rpc server stopped). */
void api_events_grpc_free(struct api *a);

/* Records a finished request. */
void api_record(struct api *a, enum api_op op, enum api_outcome out, uint64_t start_ns);
/* "ok", "not_found", ... (the outcome label of the request metrics). */
const char *api_outcome_name(enum api_outcome out);
/* trace.c: a new trace for the call when it is to be traced (its
 * traceparent metadata, sampling), else NULL. */
struct obs_trace *api_trace_begin(struct rpc_call *call, const char *name, uint64_t t0);
/* trace.c: api_record, and for a traced request (tr != NULL) the latency as
 * the histogram's exemplar and the end of the trace (tr is freed). */
void api_record_t(struct api *a, enum api_op op, enum api_outcome out, uint64_t t0,
                  struct obs_trace *tr);
enum api_outcome api_outcome_of(enum nk_code code, const char *msg);

/* view_grpc.c: registers Meta.WatchCluster and the node's view callback. */
nk_status api_view_register(struct api *a, struct rpc_server *s);
/* membership.c: Admin.DrainNode, RemoveNode, GetPlacement */
nk_status api_membership_register(struct api *a, struct rpc_server *s);
/* Encodes the node's current view as a norikv.v1.ClusterView (malloc'd). */
uint8_t *api_view_pack(struct api *a, size_t *len);
/* The view as JSON (for /meta/cluster). */
void api_view_json(struct api *a, struct nk_buf *out);
/* Refreshes gauges from the node and LSM before /metrics renders. */
void api_update_gauges(struct api *a);

/* Appends "name":"<s>" when s is UTF-8, else "name_base64":"<base64 of s>". */
void api_json_bytes(struct nk_buf *b, const char *name, const uint8_t *s, size_t n);
/* watch_http.c: a checked GET /watch request (pure: fuzzed). mode 0 key,
 * 1 prefix, 2 range [k1, k2); from[s] the resume index of shard s (0: none)
 * and from_term[s] its term; arrays of nshards, owned. */
struct api_watch_filter {
    int mode;
    struct nk_buf k1, k2;
    bool keys_only;
    uint32_t nshards;
    uint64_t *from, *from_term;
};
struct api_http_arg;
nk_status api_watch_http_parse(const struct api_http_arg *args, size_t nargs,
                               uint32_t total_shards, struct api_watch_filter *f);
void api_watch_filter_free(struct api_watch_filter *f);
/* watch_http.c: GET /watch, the change feeds as server-sent events;
 * returns an enum MHD_Result. */
struct MHD_Connection;
int api_watch_http(struct api *a, struct MHD_Connection *c);
/* Appends s (UTF-8 text) as a JSON string literal, quoted and escaped. */
void api_json_string(struct nk_buf *b, const uint8_t *s, size_t n);
void api_buf_printf(struct nk_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---------------------------------------------- observability (new files) */

/* /events streams one node serves at once; beyond it 503 (docs/observability.md). */
#define API_SSE_MAX_CLIENTS 32
/* Requests slower than this become slow_request events (at most 10 a second). */
#define API_SLOW_REQUEST_MS 1000

struct api_http_arg;
struct MHD_Connection;
struct api_http_args {
    struct api_http_arg *a;
    size_t n;
    bool too_many;
};

/* The query parameters of a server-sent-events request (/events, /watch):
 * at most API_SSE_MAX_ARGS into as->a, too_many beyond (events_http.c). */
#define API_SSE_MAX_ARGS 8
struct MHD_Connection;
void api_sse_args(struct MHD_Connection *c, struct api_http_args *as);
/* True when the reader of a stream on this socket has closed it (a reader
 * sends nothing after its request, so a readable socket that peeks zero
 * bytes, or an error, means it left). */
bool api_sse_reader_gone(int fd);

/* A parsed GET /events request. */
struct api_events_req {
    uint64_t since;     /* send events with seq > since */
    uint32_t kind_mask; /* bit k: send kind k (gap markers are always sent) */
    bool reset;         /* Last-Event-ID was past the newest event: say so first */
};
/*
 * Parses /events query parameters (raw, percent-encoded) and the
 * Last-Event-ID header (NULL: absent) against the ring's newest seq.
 * ?since= past last_seq is INVALID_ARGUMENT; so are unknown parameters,
 * kinds and malformed numbers, each named in the message.
 */
nk_status api_events_parse(const struct api_http_arg *args, size_t nargs,
                           const char *last_event_id, uint64_t last_seq,
                           struct api_events_req *out);
/*
 * Before the HTTP server stops: emits the lifecycle "stopping" event, lets
 * open /events streams deliver it (at most ~300 ms) and ends them.
 */
void api_events_stop(struct api *a);
/* GET /events (events_http.c); returns an enum MHD_Result. */
int api_events_http(struct api *a, struct MHD_Connection *c);
/* Answers {"error","code"} with the status of code; returns an enum MHD_Result. */
int api_http_error(struct MHD_Connection *c, enum nk_code code, const char *msg);
/*
 * The observability routes (/events, /dashboard and the files under it); true when
 * url is one of them, with *ret the enum MHD_Result (observe_http.c).
 */
bool api_observe_http(struct api *a, struct MHD_Connection *c, const char *url,
                      const char *method, int *ret);
/* Refreshes the counters /metrics shows from node, LSM and process totals. */
void api_observe_update(struct api *a);
/* Starts / stops OTLP metrics export when the OTEL_* environment asks for it. */
void api_otlp_start(struct api *a);
void api_otlp_stop(struct api *a);
/* Called by api_record: a slow request becomes an event (rate-limited). */
void api_note_slow(struct api *a, enum api_op op, enum api_outcome out, uint64_t us);

/* http_guard.c: the per-request receive deadline (see there). */
struct http_guard;
struct MHD_Connection;
nk_status http_guard_start(uint32_t deadline_ms, struct http_guard **out);
void http_guard_stop(struct http_guard *g);
/* MHD_OPTION_NOTIFY_CONNECTION callback; cls is the struct api. */
void http_guard_notify(void *cls, struct MHD_Connection *mc, void **socket_ctx, int toe);
/* The request has fully arrived (the deadline stops counting). */
void http_guard_request_received(struct MHD_Connection *mc);
/* Its response is done: the next request's reception starts now. */
void http_guard_request_done(struct MHD_Connection *mc);

#endif /* NK_API_INTERNAL_H */
