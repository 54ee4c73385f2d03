/*
 * rpc_internal.h: the structures rpc.c and rpc_local.c share. Not a public
 * header: nothing outside src/rpc includes it.
 */
#ifndef NK_RPC_INTERNAL_H
#define NK_RPC_INTERNAL_H

#include <grpc/grpc.h>
#include <pthread.h>
#include <stdatomic.h>

#include "rpc/rpc.h"

#define MAX_WORKERS 2

enum tag_kind {
    TAG_NEW = 1,     /* a registered call arrived (or its request failed) */
    TAG_GENERIC,     /* an unregistered call arrived */
    TAG_FINAL,       /* a unary call's final batch completed */
    TAG_SEND,        /* a stream's send (initial metadata, message or status) */
    TAG_CLOSE,       /* a stream's RECV_CLOSE_ON_SERVER completed */
    TAG_SHUTDOWN,    /* grpc_server_shutdown_and_notify completed */
};

struct rpc_tag {
    uint8_t kind;
    struct rpc_call *call;
};

enum call_state { CS_OWNED = 0, CS_DONE = 1, CS_FORCED = 2 };

struct reg_method {
    struct rpc_method m; /* m.name points at the copied name */
    void *handle;        /* grpc_server_register_method's */
};

struct worker {
    struct rpc_server *srv;
    int idx;
    grpc_completion_queue *cq;
    pthread_t thread;
    bool running;
};

struct rpc_call {
    struct rpc_tag t_new, t_final, t_send, t_close;
    struct rpc_server *srv; /* gRPC side only: never used through the owner ref */
    struct worker *w;
    const struct reg_method *m; /* NULL: generic (unregistered) call */
    grpc_call *call;
    gpr_timespec deadline_ts;
    uint64_t deadline_ns; /* nk_mono_ns clock; UINT64_MAX: none */
    uint64_t arrival_ns;
    grpc_metadata_array md;
    grpc_call_details details; /* generic calls only */
    grpc_byte_buffer *payload;

    uint8_t *req; /* copied request bytes, owned; NULL when empty */
    size_t req_len;
    bool counted; /* holds a slot of max_inflight / max_inflight_bytes */

    _Atomic int state; /* enum call_state, unary calls */
    _Atomic int refs;
    struct rpc_call *prev, *next; /* owned-unary list or open-stream list */
    bool in_list;

    /* final batch / status storage, alive until the batch completes */
    int close_cancelled;
    grpc_slice status_msg;
    bool have_status_msg;
    grpc_metadata trailers[RPC_MAX_TRAILERS];
    size_t ntrailers;
    grpc_byte_buffer *reply;

    /* streams */
    bool is_stream;
    pthread_mutex_t mu;
    grpc_byte_buffer **q; /* ring of queued messages */
    uint32_t qcap, qhead, qlen;
    grpc_byte_buffer *sending;
    bool send_busy, finishing, status_started, close_done, forced;
    bool close_reported; /* on_closed has returned (or was skipped) */
    bool released;       /* the owner has let go: no on_closed any more */
    bool side_claimed;   /* grpc_side_done is (being) called: exactly once */
    _Atomic bool closed;
    int outstanding; /* gRPC batches in flight on this call */
    enum nk_code fin_code;
    char *fin_msg;

    /* in-process calls (rpc_server_call_local): no gRPC side at all */
    bool local;
    rpc_local_fn local_fn;
    void *local_ctx;
};

struct rpc_server {
    struct rpc_server_options opt;
    char *addr;
    grpc_server *server;
    struct reg_method *methods;
    size_t nmethods, methods_cap;
    struct worker workers[MAX_WORKERS];
    int nworkers;
    int port;
    bool started, stopped;

    _Atomic bool shutting_down;
    struct rpc_tag t_shutdown;

    pthread_mutex_t mu; /* the two lists, the shutdown handshake */
    pthread_cond_t cv;
    struct rpc_call *owned;   /* unary calls held by handlers */
    struct rpc_call *streams; /* streams whose gRPC side is alive */
    bool shutdown_notified;

    _Atomic uint64_t live; /* grpc_calls accepted and not yet unref'd */
    _Atomic uint64_t inflight;
    _Atomic uint64_t inflight_bytes;
    _Atomic uint64_t n_calls, n_overload, n_size, n_unimpl, n_forced;
};

/*
 * In-process calls (rpc_local.c): a call made by rpc_server_call_local has
 * no grpc_call; rpc.c's public functions hand such calls to these.
 */
void rpc_local_reply(struct rpc_call *c, const void *msg, size_t len);
void rpc_local_fail(struct rpc_call *c, enum nk_code code, const char *msg,
                    const struct rpc_kv *trailers, size_t ntrailers);
nk_status rpc_local_stream_write(struct rpc_call *c, const void *msg, size_t len);
void rpc_local_stream_finish(struct rpc_call *c, enum nk_code code, const char *msg);
void rpc_local_stream_release(struct rpc_call *c);
/* Packs a protobuf-c message into a malloc'd buffer (*len its size). */
uint8_t *rpc_local_pack(const struct ProtobufCMessage *msg, size_t *len);

#endif /* NK_RPC_INTERNAL_H */
