/*
 * rpc_local.c: in-process calls (rpc_server_call_local in rpc.h).
 *
 * A local call is a struct rpc_call with `local` set and no grpc_call: the
 * handler sees the same handle type and calls the same rpc_call_* /
 * rpc_stream_* functions, which route here, so the api's handlers run
 * unchanged under a fuzzer or a unit test, without sockets or gRPC threads.
 *
 * References: the owner's (dropped when it completes a unary call or
 * releases a stream) and, for streams, the local side's (dropped once the
 * simulated client cancel has been reported). The per-call mutex orders
 * stream writes, finish and release, which may come from different threads
 * (the api writes cluster views from the node's Ready loop thread).
 */
#include <protobuf-c/protobuf-c.h>
#include <stdio.h>
#include <stdlib.h>

#include "rpc/rpc_internal.h"

static void local_unref(struct rpc_call *c)
{
    if (atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel) != 1)
        return;
    free(c->req);
    free(c->fin_msg);
    if (c->is_stream)
        pthread_mutex_destroy(&c->mu);
    free(c);
}

static void deliver(struct rpc_call *c, bool final, enum nk_code code, const char *msg,
                    const void *data, size_t len, const struct rpc_kv *tr, size_t ntr)
{
    struct rpc_local_event ev = {final, code, msg, data, len, tr, ntr};
    c->local_fn(c->local_ctx, &ev);
}

uint8_t *rpc_local_pack(const struct ProtobufCMessage *msg, size_t *len)
{
    *len = protobuf_c_message_get_packed_size(msg);
    uint8_t *buf = nk_malloc(*len ? *len : 1);
    NK_ASSERT(protobuf_c_message_pack(msg, buf) == *len);
    return buf;
}

/* A unary call's one completion. */
static void unary_done(struct rpc_call *c, enum nk_code code, const char *msg, const void *data,
                       size_t len, const struct rpc_kv *tr, size_t ntr)
{
    int expect = CS_OWNED;
    NK_ASSERT(atomic_compare_exchange_strong(&c->state, &expect, CS_DONE)); /* once */
    deliver(c, true, code, msg, data, len, tr, ntr);
    local_unref(c);
}

void rpc_local_reply(struct rpc_call *c, const void *msg, size_t len)
{
    NK_ASSERT(!c->is_stream);
    unary_done(c, NK_CODE_OK, NULL, msg, len, NULL, 0);
}

void rpc_local_fail(struct rpc_call *c, enum nk_code code, const char *msg,
                    const struct rpc_kv *trailers, size_t ntrailers)
{
    if (c->is_stream) {
        rpc_local_stream_finish(c, code, msg);
        return;
    }
    if (code == NK_CODE_OK)
        code = NK_UNKNOWN; /* as over gRPC: OK without a message */
    unary_done(c, code, msg, NULL, 0, trailers, NK_MIN(ntrailers, (size_t)RPC_MAX_TRAILERS));
}

nk_status rpc_local_stream_write(struct rpc_call *c, const void *msg, size_t len)
{
    pthread_mutex_lock(&c->mu);
    if (c->finishing || atomic_load(&c->closed)) {
        pthread_mutex_unlock(&c->mu);
        return nk_status_make(NK_UNAVAILABLE, "stream %s has ended", c->m->m.name);
    }
    deliver(c, false, NK_CODE_OK, NULL, msg, len, NULL, 0);
    pthread_mutex_unlock(&c->mu);
    return NK_OK;
}

static void finish_locked(struct rpc_call *c, enum nk_code code, const char *msg)
{
    if (c->finishing)
        return;
    c->finishing = true;
    deliver(c, true, code, msg, NULL, 0, NULL, 0);
}

void rpc_local_stream_finish(struct rpc_call *c, enum nk_code code, const char *msg)
{
    pthread_mutex_lock(&c->mu);
    finish_locked(c, code, msg);
    pthread_mutex_unlock(&c->mu);
}

void rpc_local_stream_release(struct rpc_call *c)
{
    pthread_mutex_lock(&c->mu);
    NK_ASSERT(!c->released); /* released twice */
    c->released = true;
    finish_locked(c, NK_CODE_OK, NULL);
    pthread_mutex_unlock(&c->mu);
    local_unref(c);
}

void rpc_server_call_local(struct rpc_server *s, const char *name, struct nk_slice request,
                           uint64_t deadline_ns, rpc_local_fn fn, void *ctx)
{
    const struct reg_method *m = NULL;
    for (size_t i = 0; i < s->nmethods && !m; i++)
        if (strcmp(s->methods[i].m.name, name) == 0)
            m = &s->methods[i];
    if (!m) {
        char msg[300];
        snprintf(msg, sizeof msg, "unknown method %.200s", name);
        struct rpc_local_event ev = {.final = true, .code = NK_UNIMPLEMENTED, .msg = msg};
        fn(ctx, &ev);
        return;
    }
    if (request.len > s->opt.max_request_bytes) {
        char msg[160];
        snprintf(msg, sizeof msg,
                 "request of %zu bytes exceeds the request size limit of %zu bytes", request.len,
                 s->opt.max_request_bytes);
        struct rpc_local_event ev = {.final = true, .code = NK_INVALID_ARGUMENT, .msg = msg};
        fn(ctx, &ev);
        return;
    }
    struct rpc_call *c = nk_calloc(1, sizeof *c);
    c->local = true;
    c->local_fn = fn;
    c->local_ctx = ctx;
    c->m = m;
    c->deadline_ns = deadline_ns;
    c->arrival_ns = nk_mono_ns();
    /* the handler's bytes live in the call, as over gRPC */
    c->req = request.len ? nk_malloc(request.len) : NULL;
    if (request.len)
        memcpy(c->req, request.data, request.len);
    c->req_len = request.len;
    static const uint8_t empty[1];
    struct nk_slice req = nk_slice_make(c->req ? c->req : empty, c->req_len);
    atomic_init(&c->closed, false);
    if (m->m.kind == RPC_UNARY) {
        atomic_init(&c->state, CS_OWNED);
        atomic_init(&c->refs, 1); /* the owner's */
        m->m.handler(m->m.ctx, c, req);
        return;
    }
    c->is_stream = true;
    pthread_mutex_init(&c->mu, NULL);
    atomic_init(&c->state, CS_DONE);
    atomic_init(&c->refs, 2); /* the owner's and the local side's */
    m->m.handler(m->m.ctx, c, req);
    /* the client goes away: the stream ends, and its owner hears of it
     * unless it has already let go */
    pthread_mutex_lock(&c->mu);
    atomic_store(&c->closed, true);
    finish_locked(c, NK_CANCELLED, "cancelled by the (in-process) client");
    bool report = !c->released;
    c->close_reported = true;
    pthread_mutex_unlock(&c->mu);
    if (report && m->m.on_closed)
        m->m.on_closed(m->m.ctx, c, true);
    local_unref(c);
}
