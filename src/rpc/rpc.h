/*
 * rpc: NoriKV's gRPC server, the only code that includes grpc/grpc.h.
 *
 * A thin layer over the gRPC C core completion-queue API. The user (api/)
 * registers methods by their full name ("/norikv.v1.Kv/Put") with a handler
 * that receives the raw request bytes and a call handle. Unary calls are
 * answered with response bytes or a status (code, message, trailing
 * metadata), synchronously inside the handler or later from any thread; the
 * *_msg variants pack a protobuf-c message directly into gRPC's buffer (the
 * only protobuf rpc/ knows: decoding is the handler's). Server-streaming
 * calls are written to from any thread until they are finished or the client
 * goes away. Unregistered methods get UNIMPLEMENTED; requests above
 * max_request_bytes get INVALID_ARGUMENT without reaching a handler; beyond
 * max_inflight calls the server answers RESOURCE_EXHAUSTED. docs/rpc.md has
 * the details.
 *
 * Threads: `workers` threads (1 or 2) each poll their own completion queue.
 * Handlers run on those threads and must not block: decode, validate, hand
 * off, return. A reply made from another thread (the apply thread) starts the
 * gRPC send on that thread directly; the worker only sees the completion,
 * which releases the call. There is no hand-off queue between a replying
 * thread and the workers.
 *
 * Memory: the request bytes handed to a handler stay valid until the call is
 * completed (rpc_call_reply*, rpc_call_fail, rpc_stream_release); reply bytes
 * are copied (rpc_call_reply), adopted (rpc_call_reply_malloced) or packed in
 * place (rpc_call_reply_msg). A call handle belongs to its handler from the
 * handler's start until it completes the call; every unary call handed to a
 * handler must be completed exactly once, and every stream released exactly
 * once, also after shutdown.
 *
 * Logging: gRPC's own log lines (GRPC_VERBOSITY, default ERROR) are sent to
 * nk_log under the module name "grpc" once a server has been created.
 *
 * Thread-safety: rpc_server_create/add_method/start/shutdown/destroy are for
 * one controlling thread. Everything taking a struct rpc_call is safe from
 * any thread, with one owner per call at a time.
 */
#ifndef NK_RPC_H
#define NK_RPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/util.h"

struct rpc_server;
struct rpc_call;

/* CONTRACT.md: "request <= 2 MiB". */
#define RPC_DEFAULT_MAX_REQUEST_BYTES (2u << 20)
/* Bound on trailing metadata pairs one status may carry. */
#define RPC_MAX_TRAILERS 8

enum rpc_kind {
    RPC_UNARY = 0,         /* one request, one response or status */
    RPC_SERVER_STREAM = 1, /* one request, a stream of responses, a status */
};

/*
 * Called on a worker thread when a call arrives. `request` is the request
 * message's bytes (possibly empty, never undecoded garbage from gRPC's view:
 * the protobuf decoding is the handler's). Unary: the handler must complete
 * `call` exactly once, now or later, from any thread. Stream: the handler
 * owns the stream and must rpc_stream_release() it exactly once.
 */
typedef void (*rpc_handler_fn)(void *ctx, struct rpc_call *call, struct nk_slice request);

/*
 * Streams only: called once on a worker thread when the stream has ended for
 * any reason (finished by the owner, cancelled or timed out by the client,
 * server shutdown). `cancelled` is true unless the owner's own finish was
 * delivered. Afterwards writes fail; the owner must still release the handle
 * (inside the callback is fine). Not called at all when the owner released
 * the stream before it ended (e.g. a handler that refused the request with
 * rpc_stream_finish and released at once).
 */
typedef void (*rpc_stream_closed_fn)(void *ctx, struct rpc_call *stream, bool cancelled);

struct rpc_method {
    const char *name; /* full name "/package.Service/Method", copied */
    enum rpc_kind kind;
    rpc_handler_fn handler;
    rpc_stream_closed_fn on_closed; /* RPC_SERVER_STREAM only; may be NULL */
    void *ctx;
};

struct rpc_server_options {
    /* "host:port" to listen on; port 0 picks a free port (rpc_server_port). */
    const char *addr;
    /*
     * Completion-queue worker threads: 1 or 2 (0: 1). Two cost about 60%
     * more CPU per asynchronously completed call than one (the pollers wake
     * each other; docs/rpc.md); they help when handlers do real work inline
     * (reads) and a core is free.
     */
    int workers;
    /* Larger requests: INVALID_ARGUMENT naming the limit (0: 2 MiB). */
    size_t max_request_bytes;
    /*
     * gRPC core's own receive limit; a message above it is refused by the
     * core with RESOURCE_EXHAUSTED (0: 16 MiB, or 2 x max_request_bytes if
     * larger). Between the two limits rpc/ answers INVALID_ARGUMENT as
     * CONTRACT.md asks; above this one the bound on buffering wins. Must be
     * >= max_request_bytes.
     */
    size_t hard_max_request_bytes;
    /* Calls in flight (handed to handlers, not yet completed); beyond it:
     * RESOURCE_EXHAUSTED (0: 4096). */
    uint32_t max_inflight;
    /* Request bytes held by in-flight calls; beyond it: RESOURCE_EXHAUSTED
     * (0: 256 MiB). */
    size_t max_inflight_bytes;
    /* Messages queued per stream behind the one being sent (0: 64). */
    uint32_t stream_queue_max;
    /* Calls requested ahead from gRPC per method and worker (0: 8). */
    uint32_t requests_per_method;
    /*
     * Clients may send keepalive pings this often, also on idle connections
     * and streams that carry no data (0: 10 s). gRPC's own default (5 min,
     * then GOAWAY "too_many_pings") would cut an idle WatchCluster stream of
     * an SDK that pings every 30 s.
     */
    uint32_t min_client_ping_interval_ms;
    /* The server pings an idle connection after this long and drops it when
     * no answer comes within 20 s, so dead watchers go away (0: 60 s). */
    uint32_t keepalive_ms;
    /*
     * gRPC's memory quota for the server's connections (read buffers, flow
     * control windows; 0: 1 GiB). A soft bound: near it gRPC shrinks its
     * buffers and windows and finally closes idle connections.
     */
    size_t memory_quota_bytes;
};

struct rpc_kv {
    const char *key;   /* lowercase ASCII header name, e.g. "leader-hint" */
    const char *value; /* printable ASCII */
};

struct rpc_stats {
    uint64_t calls;              /* calls handed to handlers */
    uint64_t inflight;           /* handed to handlers, not yet completed */
    uint64_t rejected_overload;  /* answered RESOURCE_EXHAUSTED by rpc/ */
    uint64_t rejected_size;      /* answered INVALID_ARGUMENT for size */
    uint64_t unimplemented;      /* unknown methods */
    uint64_t forced_at_shutdown; /* calls rpc/ ended because the grace ran out */
};

/* ------------------------------------------------------------- the server */

/* Creates a stopped server. Initializes the gRPC library (refcounted). */
nk_status rpc_server_create(const struct rpc_server_options *opt, struct rpc_server **out);
/* Before rpc_server_start. Duplicate names: ALREADY_EXISTS; a malformed
 * name: INVALID_ARGUMENT. */
nk_status rpc_server_add_method(struct rpc_server *s, const struct rpc_method *m);
/* Binds the address and starts the workers. A taken or unusable address is
 * an UNAVAILABLE error naming it. */
nk_status rpc_server_start(struct rpc_server *s);
/* The bound port, once started. */
int rpc_server_port(const struct rpc_server *s);
/*
 * Graceful stop: refuse new calls (clients see UNAVAILABLE), end every open
 * stream with UNAVAILABLE "server shutting down", wait up to grace_ms for
 * in-flight unary calls to be completed by their handlers, then end the rest
 * with UNAVAILABLE (their handlers' later completion is still required and
 * harmless), and stop the workers. Idempotent. Must not be called from a
 * handler.
 */
void rpc_server_shutdown(struct rpc_server *s, uint32_t grace_ms);
/* Shuts down (grace 0) if needed and frees the server. */
void rpc_server_destroy(struct rpc_server *s);
void rpc_server_get_stats(const struct rpc_server *s, struct rpc_stats *out);

/* -------------------------------------------------------------- unary calls */

/* Sends `len` bytes (copied) as the response with status OK. Completes. */
void rpc_call_reply(struct rpc_call *c, const void *msg, size_t len);
/* Same, adopting `buf` (from malloc/nk_malloc; freed with free()). */
void rpc_call_reply_malloced(struct rpc_call *c, void *buf, size_t len);
/* Same, packing a protobuf-c message straight into gRPC's buffer (no copy). */
struct ProtobufCMessage;
void rpc_call_reply_msg(struct rpc_call *c, const struct ProtobufCMessage *msg);
/*
 * Sends a non-OK status: `code` (gRPC code; NK_IO_ERROR is sent as
 * INTERNAL), a message (copied; NULL: none) and up to RPC_MAX_TRAILERS
 * trailing metadata pairs (copied; illegal keys or values are dropped with a
 * warning). Completes the call. NK_CODE_OK here (a unary reply without a
 * message, which clients reject) is sent as UNKNOWN with a warning. On a
 * stream it is rpc_stream_finish (trailers ignored).
 */
void rpc_call_fail(struct rpc_call *c, enum nk_code code, const char *msg,
                   const struct rpc_kv *trailers, size_t ntrailers);
/* rpc_call_fail with the status's code and message; frees *st. */
void rpc_call_fail_status(struct rpc_call *c, nk_status *st);

/* Milliseconds left until the client's deadline (<= 0: passed); INT64_MAX
 * when the client set none. */
int64_t rpc_call_deadline_ms(const struct rpc_call *c);
/* The deadline on nk_mono_ns()'s clock; UINT64_MAX when none. */
uint64_t rpc_call_deadline_mono_ns(const struct rpc_call *c);
/* When rpc/ took the call from gRPC, on nk_mono_ns()'s clock (for latency
 * histograms that include the wait for a handler). */
uint64_t rpc_call_arrival_ns(const struct rpc_call *c);
/* The method the call was made to, as registered. */
const char *rpc_call_method(const struct rpc_call *c);
/*
 * The value of the request's metadata `key` (lower-case ASCII, e.g.
 * "traceparent"): a pointer into the call's metadata, valid until the call
 * completes, and its length; false when absent (the first of repeated
 * keys). Handlers only (the worker owns the metadata then).
 */
bool rpc_call_header(const struct rpc_call *c, const char *key, const char **value, size_t *len);

/* ------------------------------------------------------- server streaming */

/*
 * Queues one message (copied) on the stream; messages are sent in order,
 * one at a time. UNAVAILABLE when the stream has ended or is being finished;
 * RESOURCE_EXHAUSTED when stream_queue_max messages are already waiting (the
 * client is not reading).
 */
nk_status rpc_stream_write(struct rpc_call *c, const void *msg, size_t len);
/* Messages written and not yet sent (the one being sent included): a
 * writer with large messages keeps its own, lower bound with it. */
size_t rpc_stream_queued(struct rpc_call *c);
/* rpc_stream_write of a protobuf-c message, packed without a copy. */
nk_status rpc_stream_write_msg(struct rpc_call *c, const struct ProtobufCMessage *msg);
/* Ends the stream with a status once the queued messages are sent. Later
 * calls (and writes) are ignored / refused. */
void rpc_stream_finish(struct rpc_call *c, enum nk_code code, const char *msg);
/* True once the stream has ended (on_closed has run or is running). */
bool rpc_stream_closed(const struct rpc_call *c);
/* The owner lets go of the stream; an open stream is finished with OK. */
void rpc_stream_release(struct rpc_call *c);

/* ------------------------------------------------------ in-process calls */

/*
 * What an in-process call delivers: a stream message (final false), or the
 * end of the call (final true) with its status, and for a unary call
 * answered OK its reply. Pointers are valid during the callback only.
 */
struct rpc_local_event {
    bool final;
    enum nk_code code;
    const char *msg;       /* status message; NULL: none */
    const uint8_t *data;   /* reply or stream message */
    size_t len;
    const struct rpc_kv *trailers;
    size_t ntrailers;
};
typedef void (*rpc_local_fn)(void *ctx, const struct rpc_local_event *ev);

/*
 * Runs the method registered as `name` on `request` without the network,
 * for tests and fuzzing: the same request-size check and the same handler a
 * gRPC call gets, on the calling thread. The server need not be started.
 * `fn` receives every stream message and, exactly once, the end of the call,
 * from whichever thread completes it (possibly later, possibly before this
 * returns). Unknown methods end UNIMPLEMENTED, oversized requests
 * INVALID_ARGUMENT, exactly as over gRPC. A stream is treated as cancelled
 * by its client as soon as the handler returns (its on_closed runs then, on
 * this thread), so a stream handler's first messages are what the caller
 * sees. deadline_ns: on nk_mono_ns()'s clock, UINT64_MAX for none.
 */
void rpc_server_call_local(struct rpc_server *s, const char *name, struct nk_slice request,
                           uint64_t deadline_ns, rpc_local_fn fn, void *ctx);

#endif /* NK_RPC_H */
