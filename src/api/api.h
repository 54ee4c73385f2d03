/*
 * api: what clients talk to. The norikv.v1 gRPC services (Kv, Meta, Admin,
 * Vector) registered on src/rpc, and the HTTP endpoints on libmicrohttpd
 * (/healthz, /readyz, /health, /metrics, the JSON facade /kv/{key} and
 * /meta/cluster).
 *
 * A request is decoded (protobuf-c) and validated here against CONTRACT.md's
 * limits; writes become KV commands proposed through src/node, reads wait
 * for the node's read barrier and then read the KV state machine. Errors are
 * mapped exactly as CONTRACT.md's table says (docs/api.md lists them).
 *
 * Memory: an api borrows the node and the rpc server; it owns its per-call
 * contexts (freed when the call completes) and the HTTP daemon.
 *
 * Thread-safety: gRPC handlers run on rpc worker threads, completions on the
 * node's Ready loop thread, HTTP on libmicrohttpd's threads; all of them only
 * share the node (thread-safe) and the api's watch list (its own mutex).
 * api_new/api_register/api_http_start/api_shutdown/api_free belong to the
 * server's main thread.
 */
#ifndef NK_API_H
#define NK_API_H

#include "node/node.h"
#include "rpc/rpc.h"
#include "util/util.h"

struct api;

struct api_options {
    struct node *node;
    const char *node_id;     /* copied */
    bool prometheus_enabled; /* serve /metrics */
    /* HTTP connections in total (default 512) and from one client address
     * (default 128); beyond them new connections are closed at once. */
    uint32_t http_max_connections;
    uint32_t http_max_per_ip;
    /* Time to receive one whole HTTP request, headers and body, from the
     * connection's accept or the end of the previous response (default
     * 10000 ms); a slower client is disconnected (docs/http.md). */
    uint32_t http_request_timeout_ms;
    /* Request bodies all HTTP connections may hold at once (default 64 MiB);
     * beyond it a request is answered 429 RESOURCE_EXHAUSTED. */
    uint64_t http_max_body_bytes;
    /* Accounted bytes all vector indexes of the node may hold (vec_store_memory;
     * default 0: half the machine's physical memory). Beyond it, vector
     * inserts and index creations are refused with RESOURCE_EXHAUSTED before
     * they are proposed (docs/vector.md "Node memory budget"). */
    uint64_t vector_memory_budget;
    /* OTLP export (telemetry.otlp.*): the collector's base URL, NULL to take
     * the OpenTelemetry environment variables instead (docs/observability.md
     * "OTLP export"); the metrics interval and export timeout in ms (0:
     * 10000 and 5000); the share of requests without a traceparent traced. */
    const char *otlp_endpoint;
    uint32_t otlp_metrics_interval_ms, otlp_timeout_ms;
    double otlp_trace_sample_ratio;
};

nk_status api_new(const struct api_options *o, struct api **out);
/* Registers every norikv.v1 method on a server that has not started. */
nk_status api_register(struct api *a, struct rpc_server *s);

/*
 * Starts HTTP on addr ("host:port"; port 0: a free port). A taken port is an
 * error naming the address, unless fallback is set (the address was the
 * default): then a warning is logged and a free port on the same host is
 * used. bound receives "host:port" of the listener.
 */
nk_status api_http_start(struct api *a, const char *addr, bool fallback, char *bound,
                         size_t bound_cap);
/* Stops HTTP and ends every WatchCluster stream. */
void api_shutdown(struct api *a);
void api_free(struct api *a);

#endif /* NK_API_H */
