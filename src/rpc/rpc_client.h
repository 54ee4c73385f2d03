/*
 * rpc_client: the client side of gRPC for NoriKV's own tools (the norikv CLI
 * and the load generators under bench/). Part of the rpc module because only
 * src/rpc may include grpc/grpc.h.
 *
 * A struct rpc_client is one channel to one target ("host:port", insecure).
 * Calls are synchronous: the calling thread waits for the answer on a
 * completion queue of its own (created on the thread's first call, destroyed
 * when the thread exits), so many threads may call through one client at
 * once without sharing a queue. Request and response bodies are raw bytes;
 * encoding is the caller's (protobuf-c).
 *
 * Memory: a result owns its body, message and trailers until
 * rpc_client_result_free(). Thread-safety: everything is thread-safe.
 */
#ifndef NK_RPC_CLIENT_H
#define NK_RPC_CLIENT_H

#include "util/util.h"

struct rpc_client;

#define RPC_CLIENT_MAX_TRAILERS 8

struct rpc_client_result {
    enum nk_code code; /* the call's gRPC status (connection failures: UNAVAILABLE) */
    char *message;     /* status message (may be empty, never NULL after a call) */
    struct nk_buf body; /* the response message (unary OK, or a stream's first message) */
    size_t n_trailers;
    struct {
        char key[64];
        char value[256];
    } trailers[RPC_CLIENT_MAX_TRAILERS];
};

/* target: "host:port". Connects lazily (the first call may wait for it). */
nk_status rpc_client_new(const char *target, struct rpc_client **out);
void rpc_client_free(struct rpc_client *c);

/*
 * One unary call of `method` ("/norikv.v1.Kv/Put") with the request bytes,
 * waiting at most timeout_ms (<= 0: no deadline). *res receives the outcome;
 * free it with rpc_client_result_free.
 */
void rpc_client_unary(struct rpc_client *c, const char *method, const void *req, size_t len,
                      int64_t timeout_ms, struct rpc_client_result *res);

/*
 * Opens a server-streaming call, waits for its first message (into res->body,
 * code OK) or its end, then cancels it. For WatchCluster's first view.
 */
void rpc_client_first_message(struct rpc_client *c, const char *method, const void *req,
                              size_t len, int64_t timeout_ms, struct rpc_client_result *res);

/* The trailer's value, or NULL. */
const char *rpc_client_trailer(const struct rpc_client_result *res, const char *key);
void rpc_client_result_free(struct rpc_client_result *res);

#endif /* NK_RPC_CLIENT_H */
