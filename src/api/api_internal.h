/* api_internal.h: what api's gRPC and HTTP halves share. Not a public header. */
#ifndef NK_API_INTERNAL_H
#define NK_API_INTERNAL_H

#include <pthread.h>

#include "api/api.h"
#include "observe/observe.h"

enum api_op { API_PUT = 0, API_GET = 1, API_DELETE = 2, API_OP_COUNT = 3 };
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

/* Records a finished request. */
void api_record(struct api *a, enum api_op op, enum api_outcome out, uint64_t start_ns);
enum api_outcome api_outcome_of(enum nk_code code, const char *msg);

/* Encodes the node's current view as a norikv.v1.ClusterView (malloc'd). */
uint8_t *api_view_pack(struct api *a, size_t *len);
/* The view as JSON (for /meta/cluster). */
void api_view_json(struct api *a, struct nk_buf *out);
/* Refreshes gauges from the node and LSM before /metrics renders. */
void api_update_gauges(struct api *a);

/* Appends s (UTF-8 text) as a JSON string literal, quoted and escaped. */
void api_json_string(struct nk_buf *b, const uint8_t *s, size_t n);
void api_buf_printf(struct nk_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

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
