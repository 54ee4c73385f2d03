/*
 * rpc.c: the gRPC C core server behind rpc.h.
 *
 * Design. Each worker thread owns one completion queue (CQ) that is both the
 * notification queue for new calls and the queue every call accepted through
 * it is bound to, so all events of a call arrive on the thread that accepted
 * it. For every registered method each worker keeps `requests_per_method`
 * calls requested ahead from the core (grpc_server_request_registered_call
 * with the payload read for us), and a couple of generic requests catch every
 * unregistered method, which is answered UNIMPLEMENTED. When a requested call
 * arrives its slot is replaced at once, the request bytes are copied out of
 * gRPC's buffer into one malloc'd block (so that the bytes outlive anything
 * gRPC owns), limits are checked, and the handler runs inline.
 *
 * A unary call costs two CQ events: its arrival and one final batch (initial
 * metadata, message, status, close) started by whoever completes it, on that
 * thread. The final batch's completion unrefs the grpc_call and releases the
 * struct. A server stream costs one close batch for its lifetime plus one
 * batch per message; sends are serialized by a per-stream mutex because gRPC
 * allows one outstanding send at a time.
 *
 * Ownership. A struct rpc_call is reference counted: one reference for the
 * gRPC side (dropped when gRPC has nothing outstanding on the call and the
 * grpc_call is unref'd) and one for the owner (dropped when the owner
 * completes a unary call or releases a stream). The gRPC side never waits for
 * the owner, so shutdown is bounded: unary calls still owned by a handler when
 * the grace period ends are "forced" (state CAS OWNED -> FORCED: rpc/ sends
 * UNAVAILABLE itself); the handler's later completion sees FORCED and only
 * drops its reference. Nothing reached through the owner's reference touches
 * the server, so that late completion is safe even after rpc_server_destroy.
 */
#include "rpc/rpc.h"

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/slice.h>
#include <grpc/support/log.h>
#include <grpc/support/time.h>
#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <protobuf-c/protobuf-c.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MOD "rpc"
#define GENERIC_REQUESTS_PER_WORKER 2

#include "rpc/rpc_internal.h"

static const uint8_t empty_bytes[1];

/* --------------------------------------------------------------- helpers */

static grpc_status_code to_grpc_code(enum nk_code c)
{
    if (c == NK_IO_ERROR)
        return GRPC_STATUS_INTERNAL;
    if ((int)c < 0 || (int)c > 16)
        return GRPC_STATUS_UNKNOWN;
    return (grpc_status_code)c;
}

static void list_push(struct rpc_call **head, struct rpc_call *c)
{
    NK_ASSERT(!c->in_list);
    c->prev = NULL;
    c->next = *head;
    if (*head)
        (*head)->prev = c;
    *head = c;
    c->in_list = true;
}

static void list_remove(struct rpc_call **head, struct rpc_call *c)
{
    if (!c->in_list)
        return;
    if (c->prev)
        c->prev->next = c->next;
    else
        *head = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->prev = c->next = NULL;
    c->in_list = false;
}

static struct rpc_call *call_new(struct worker *w, const struct reg_method *m)
{
    struct rpc_call *c = nk_calloc(1, sizeof *c);
    c->srv = w->srv;
    c->w = w;
    c->m = m;
    c->t_new = (struct rpc_tag){m ? TAG_NEW : TAG_GENERIC, c};
    c->t_final = (struct rpc_tag){TAG_FINAL, c};
    c->t_send = (struct rpc_tag){TAG_SEND, c};
    c->t_close = (struct rpc_tag){TAG_CLOSE, c};
    grpc_metadata_array_init(&c->md);
    if (!m)
        grpc_call_details_init(&c->details);
    atomic_init(&c->state, CS_DONE);
    atomic_init(&c->refs, 1); /* the gRPC side's */
    atomic_init(&c->closed, false);
    c->deadline_ns = UINT64_MAX;
    return c;
}

/* Frees what only the owner may still look at. Touches no server state. */
static void call_free(struct rpc_call *c)
{
    free(c->req);
    free(c->fin_msg);
    if (c->is_stream) {
        NK_ASSERT(c->qlen == 0);
        free(c->q);
        pthread_mutex_destroy(&c->mu);
    }
    free(c);
}

static void call_unref(struct rpc_call *c)
{
    if (atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel) == 1)
        call_free(c);
}

/* A requested slot that never became a call (server shut down). */
static void slot_free(struct rpc_call *c)
{
    grpc_metadata_array_destroy(&c->md);
    if (!c->m)
        grpc_call_details_destroy(&c->details);
    if (c->payload)
        grpc_byte_buffer_destroy(c->payload);
    call_unref(c);
}

static void post_request(struct worker *w, const struct reg_method *m)
{
    struct rpc_server *s = w->srv;
    struct rpc_call *c = call_new(w, m);
    grpc_call_error e;
    if (m)
        e = grpc_server_request_registered_call(s->server, m->handle, &c->call, &c->deadline_ts,
                                                &c->md, &c->payload, w->cq, w->cq, &c->t_new);
    else
        e = grpc_server_request_call(s->server, &c->call, &c->details, &c->md, w->cq, w->cq,
                                     &c->t_new);
    if (e != GRPC_CALL_OK) {
        NK_WARN(MOD, "requesting a call for %s failed: %s", m ? m->m.name : "unknown methods",
                grpc_call_error_to_string(e));
        slot_free(c);
    }
}

/*
 * The gRPC side of a call is over: nothing is outstanding on it. Runs on the
 * worker (or on the completing thread when a batch could not be started).
 */
static void grpc_side_done(struct rpc_call *c)
{
    struct rpc_server *s = c->srv;
    if (c->is_stream) {
        pthread_mutex_lock(&s->mu);
        list_remove(&s->streams, c);
        pthread_mutex_unlock(&s->mu);
    }
    if (c->counted && c->is_stream) {
        atomic_fetch_sub(&s->inflight, 1);
        atomic_fetch_sub(&s->inflight_bytes, c->req_len);
    }
    if (c->reply)
        grpc_byte_buffer_destroy(c->reply);
    c->reply = NULL;
    if (c->have_status_msg)
        grpc_slice_unref(c->status_msg);
    c->have_status_msg = false;
    for (size_t i = 0; i < c->ntrailers; i++) {
        grpc_slice_unref(c->trailers[i].key);
        grpc_slice_unref(c->trailers[i].value);
    }
    c->ntrailers = 0;
    grpc_metadata_array_destroy(&c->md);
    if (!c->m)
        grpc_call_details_destroy(&c->details);
    grpc_call_unref(c->call);
    c->call = NULL;
    if (atomic_fetch_sub(&s->live, 1) == 1 && atomic_load(&s->shutting_down)) {
        pthread_mutex_lock(&s->mu);
        pthread_cond_broadcast(&s->cv);
        pthread_mutex_unlock(&s->mu);
    }
    call_unref(c);
}

/*
 * Starts a unary call's final batch: initial metadata, the reply (when
 * `reply` is set), the status and the close. Exactly one caller per call.
 */
static void start_final(struct rpc_call *c, grpc_byte_buffer *reply, enum nk_code code,
                        const char *msg, const struct rpc_kv *trailers, size_t ntrailers)
{
    grpc_op ops[4];
    size_t n = 0;
    memset(ops, 0, sizeof ops);
    ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
    if (reply) {
        c->reply = reply;
        ops[n].op = GRPC_OP_SEND_MESSAGE;
        ops[n++].data.send_message.send_message = reply;
    }
    c->ntrailers = 0;
    for (size_t i = 0; i < ntrailers && c->ntrailers < RPC_MAX_TRAILERS; i++) {
        grpc_slice k = grpc_slice_from_copied_string(trailers[i].key ? trailers[i].key : "");
        grpc_slice v = grpc_slice_from_copied_string(trailers[i].value ? trailers[i].value : "");
        /* gRPC refuses the whole batch on one bad header, and the call would
         * then never finish: drop the pair instead. */
        if (!grpc_header_key_is_legal(k) || grpc_is_binary_header(k) ||
            !grpc_header_nonbin_value_is_legal(v)) {
            NK_WARN(MOD, "dropping illegal trailer \"%s\"", trailers[i].key ? trailers[i].key : "");
            grpc_slice_unref(k);
            grpc_slice_unref(v);
            continue;
        }
        c->trailers[c->ntrailers].key = k;
        c->trailers[c->ntrailers].value = v;
        c->ntrailers++;
    }
    if (ntrailers > RPC_MAX_TRAILERS)
        NK_WARN(MOD, "dropping %zu trailers beyond %d", ntrailers - RPC_MAX_TRAILERS,
                RPC_MAX_TRAILERS);
    c->have_status_msg = msg && *msg;
    if (c->have_status_msg)
        c->status_msg = grpc_slice_from_copied_string(msg);
    ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
    ops[n].data.send_status_from_server.status = to_grpc_code(code);
    ops[n].data.send_status_from_server.status_details = c->have_status_msg ? &c->status_msg : NULL;
    ops[n].data.send_status_from_server.trailing_metadata_count = c->ntrailers;
    ops[n++].data.send_status_from_server.trailing_metadata = c->trailers;
    ops[n].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    ops[n++].data.recv_close_on_server.cancelled = &c->close_cancelled;
    grpc_call_error e = grpc_call_start_batch(c->call, ops, n, &c->t_final, NULL);
    if (e != GRPC_CALL_OK) {
        /* No completion will come; end the call here. */
        NK_ERROR(MOD, "final batch of %s refused: %s", c->m ? c->m->m.name : "call",
                 grpc_call_error_to_string(e));
        grpc_call_cancel(c->call, NULL);
        grpc_side_done(c);
    }
}

static grpc_byte_buffer *bb_copy(const void *msg, size_t len)
{
    grpc_slice sl =
        len ? grpc_slice_from_copied_buffer((const char *)msg, len) : grpc_empty_slice();
    grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&sl, 1);
    grpc_slice_unref(sl);
    return bb;
}

/* Packs a protobuf-c message into a fresh gRPC slice: one pass, no copy. */
static grpc_byte_buffer *bb_pack(const ProtobufCMessage *msg)
{
    size_t n = protobuf_c_message_get_packed_size(msg);
    grpc_slice sl = n ? grpc_slice_malloc(n) : grpc_empty_slice();
    if (n)
        NK_ASSERT(protobuf_c_message_pack(msg, GRPC_SLICE_START_PTR(sl)) == n);
    grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&sl, 1);
    grpc_slice_unref(sl);
    return bb;
}

/* rpc/ answers a call itself, without a handler (limits, unknown method). */
static void answer_internal(struct rpc_call *c, enum nk_code code, const char *msg)
{
    atomic_store(&c->state, CS_DONE);
    start_final(c, NULL, code, msg, NULL, 0);
}

/* ------------------------------------------------------------ unary calls */

/* The owner's completion: true when it won the call (it must then send). */
static bool owner_takes(struct rpc_call *c)
{
    int expect = CS_OWNED;
    if (!atomic_compare_exchange_strong(&c->state, &expect, CS_DONE)) {
        NK_ASSERT(expect == CS_FORCED); /* completing twice is a bug */
        return false;
    }
    struct rpc_server *s = c->srv;
    pthread_mutex_lock(&s->mu);
    list_remove(&s->owned, c);
    pthread_mutex_unlock(&s->mu);
    atomic_fetch_sub(&s->inflight, 1);
    atomic_fetch_sub(&s->inflight_bytes, c->req_len);
    return true;
}

static void reply_bb(struct rpc_call *c, grpc_byte_buffer *bb)
{
    NK_ASSERT(!c->is_stream);
    if (owner_takes(c))
        start_final(c, bb, NK_CODE_OK, NULL, NULL, 0);
    else
        grpc_byte_buffer_destroy(bb);
    call_unref(c); /* the owner's */
}

void rpc_call_reply(struct rpc_call *c, const void *msg, size_t len)
{
    if (c->local) {
        rpc_local_reply(c, msg, len);
        return;
    }
    reply_bb(c, bb_copy(msg, len));
}

void rpc_call_reply_malloced(struct rpc_call *c, void *buf, size_t len)
{
    if (c->local) {
        rpc_local_reply(c, buf, len);
        free(buf);
        return;
    }
    grpc_slice sl = len ? grpc_slice_new(buf, len, free) : grpc_empty_slice();
    if (!len)
        free(buf);
    grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&sl, 1);
    grpc_slice_unref(sl);
    reply_bb(c, bb);
}

void rpc_call_reply_msg(struct rpc_call *c, const struct ProtobufCMessage *msg)
{
    if (c->local) {
        size_t len;
        uint8_t *buf = rpc_local_pack(msg, &len);
        rpc_local_reply(c, buf, len);
        free(buf);
        return;
    }
    reply_bb(c, bb_pack(msg));
}

static void stream_finish(struct rpc_call *c, enum nk_code code, const char *msg, bool forced);

void rpc_call_fail(struct rpc_call *c, enum nk_code code, const char *msg,
                   const struct rpc_kv *trailers, size_t ntrailers)
{
    if (c->local) {
        rpc_local_fail(c, code, msg, trailers, ntrailers);
        return;
    }
    if (c->is_stream) {
        stream_finish(c, code, msg, false);
        return;
    }
    if (code == NK_CODE_OK) {
        /* OK without a message is a protocol error for a unary client */
        NK_WARN(MOD, "%s: rpc_call_fail with OK; sending UNKNOWN", c->m->m.name);
        code = NK_UNKNOWN;
    }
    if (owner_takes(c))
        start_final(c, NULL, code, msg, trailers, ntrailers);
    call_unref(c);
}

void rpc_call_fail_status(struct rpc_call *c, nk_status *st)
{
    enum nk_code code = st->code == NK_CODE_OK ? NK_UNKNOWN : st->code;
    rpc_call_fail(c, code, nk_status_msg(*st), NULL, 0);
    nk_status_free(st);
}

int64_t rpc_call_deadline_ms(const struct rpc_call *c)
{
    if (c->deadline_ns == UINT64_MAX)
        return INT64_MAX;
    int64_t left = (int64_t)(c->deadline_ns - nk_mono_ns());
    return left / 1000000;
}

uint64_t rpc_call_deadline_mono_ns(const struct rpc_call *c)
{
    return c->deadline_ns;
}

uint64_t rpc_call_arrival_ns(const struct rpc_call *c)
{
    return c->arrival_ns;
}

bool rpc_call_header(const struct rpc_call *c, const char *key, const char **value, size_t *len)
{
    size_t kl = strlen(key);
    for (size_t i = 0; i < c->md.count; i++) {
        const grpc_slice *k = &c->md.metadata[i].key;
        if (GRPC_SLICE_LENGTH(*k) == kl && memcmp(GRPC_SLICE_START_PTR(*k), key, kl) == 0) {
            const grpc_slice *v = &c->md.metadata[i].value;
            *value = (const char *)GRPC_SLICE_START_PTR(*v);
            *len = GRPC_SLICE_LENGTH(*v);
            return true;
        }
    }
    return false;
}

const char *rpc_call_method(const struct rpc_call *c)
{
    return c->m ? c->m->m.name : "";
}

/* ------------------------------------------------------------------ streams */

/* Under c->mu: start one send batch (message or status). */
static void stream_start_send_locked(struct rpc_call *c, grpc_op *op)
{
    grpc_call_error e = grpc_call_start_batch(c->call, op, 1, &c->t_send, NULL);
    if (e != GRPC_CALL_OK) {
        /* Cannot happen with one send at a time on a live call; if it does,
         * cancel so that the close completes and cleans up. */
        NK_ERROR(MOD, "stream send on %s refused: %s", c->m->m.name,
                 grpc_call_error_to_string(e));
        grpc_call_cancel(c->call, NULL);
        return;
    }
    c->send_busy = true;
    c->outstanding++;
}

static void stream_send_status_locked(struct rpc_call *c)
{
    grpc_op op;
    memset(&op, 0, sizeof op);
    c->status_started = true;
    c->have_status_msg = c->fin_msg && *c->fin_msg;
    if (c->have_status_msg)
        c->status_msg = grpc_slice_from_copied_string(c->fin_msg);
    op.op = GRPC_OP_SEND_STATUS_FROM_SERVER;
    op.data.send_status_from_server.status = to_grpc_code(c->fin_code);
    op.data.send_status_from_server.status_details = c->have_status_msg ? &c->status_msg : NULL;
    stream_start_send_locked(c, &op);
}

static void stream_send_msg_locked(struct rpc_call *c, grpc_byte_buffer *bb)
{
    grpc_op op;
    memset(&op, 0, sizeof op);
    op.op = GRPC_OP_SEND_MESSAGE;
    op.data.send_message.send_message = bb;
    c->sending = bb;
    stream_start_send_locked(c, &op);
    if (!c->send_busy) {
        grpc_byte_buffer_destroy(bb);
        c->sending = NULL;
    }
}

static nk_status stream_write_bb(struct rpc_call *c, grpc_byte_buffer *bb);

size_t rpc_stream_queued(struct rpc_call *c)
{
    NK_ASSERT(c->is_stream);
    if (c->local)
        return 0;
    pthread_mutex_lock(&c->mu);
    size_t n = c->qlen + (c->send_busy ? 1 : 0);
    pthread_mutex_unlock(&c->mu);
    return n;
}

nk_status rpc_stream_write(struct rpc_call *c, const void *msg, size_t len)
{
    NK_ASSERT(c->is_stream);
    if (c->local)
        return rpc_local_stream_write(c, msg, len);
    return stream_write_bb(c, bb_copy(msg, len));
}

nk_status rpc_stream_write_msg(struct rpc_call *c, const struct ProtobufCMessage *msg)
{
    NK_ASSERT(c->is_stream);
    if (c->local) {
        size_t len;
        uint8_t *buf = rpc_local_pack(msg, &len);
        nk_status st = rpc_local_stream_write(c, buf, len);
        free(buf);
        return st;
    }
    return stream_write_bb(c, bb_pack(msg));
}

/* Takes bb in every case. */
static nk_status stream_write_bb(struct rpc_call *c, grpc_byte_buffer *bb)
{
    pthread_mutex_lock(&c->mu);
    if (c->close_done || c->finishing) {
        pthread_mutex_unlock(&c->mu);
        grpc_byte_buffer_destroy(bb);
        return nk_status_make(NK_UNAVAILABLE, "stream %s has ended", c->m->m.name);
    }
    if (c->send_busy && c->qlen == c->qcap) {
        uint32_t cap = c->qcap;
        pthread_mutex_unlock(&c->mu);
        grpc_byte_buffer_destroy(bb);
        return nk_status_make(NK_RESOURCE_EXHAUSTED,
                              "stream %s: %u messages already queued (stream_queue_max)",
                              c->m->m.name, cap);
    }
    if (!c->send_busy)
        stream_send_msg_locked(c, bb);
    else
        c->q[(c->qhead + c->qlen++) % c->qcap] = bb;
    pthread_mutex_unlock(&c->mu);
    return NK_OK;
}

static void stream_finish(struct rpc_call *c, enum nk_code code, const char *msg, bool forced)
{
    pthread_mutex_lock(&c->mu);
    if (c->finishing || c->close_done) {
        pthread_mutex_unlock(&c->mu);
        return;
    }
    c->finishing = true;
    c->forced = forced;
    c->fin_code = code;
    c->fin_msg = msg ? nk_strdup(msg) : NULL;
    if (forced) {
        /* Shutdown does not wait for a slow reader: drop what is queued. */
        while (c->qlen) {
            grpc_byte_buffer_destroy(c->q[c->qhead]);
            c->qhead = (c->qhead + 1) % c->qcap;
            c->qlen--;
        }
    }
    if (!c->send_busy)
        stream_send_status_locked(c);
    pthread_mutex_unlock(&c->mu);
}

void rpc_stream_finish(struct rpc_call *c, enum nk_code code, const char *msg)
{
    NK_ASSERT(c->is_stream);
    if (c->local) {
        rpc_local_stream_finish(c, code, msg);
        return;
    }
    stream_finish(c, code, msg, false);
}

bool rpc_stream_closed(const struct rpc_call *c)
{
    return atomic_load(&((struct rpc_call *)c)->closed);
}

void rpc_stream_release(struct rpc_call *c)
{
    NK_ASSERT(c->is_stream);
    if (c->local) {
        rpc_local_stream_release(c);
        return;
    }
    pthread_mutex_lock(&c->mu);
    NK_ASSERT(!c->released); /* released twice */
    c->released = true;
    pthread_mutex_unlock(&c->mu);
    stream_finish(c, NK_CODE_OK, NULL, false);
    call_unref(c);
}

/*
 * Under c->mu: true exactly once, when the stream's gRPC side may end: the
 * close has been reported to the owner (whose on_closed must run while the
 * gRPC reference still holds the struct) and no batch is outstanding. Send
 * and close completions may run on different threads; this decides.
 */
static bool stream_claim_done_locked(struct rpc_call *c)
{
    if (c->side_claimed || !c->close_reported || c->outstanding != 0)
        return false;
    c->side_claimed = true;
    return true;
}

/* Worker: a send batch of a stream completed. */
static void on_stream_send(struct rpc_call *c, bool ok)
{
    pthread_mutex_lock(&c->mu);
    c->outstanding--;
    c->send_busy = false;
    if (c->sending) {
        grpc_byte_buffer_destroy(c->sending);
        c->sending = NULL;
    }
    if (!ok || c->close_done) {
        /* The call is broken or over; the close completion cleans up. */
        while (c->qlen) {
            grpc_byte_buffer_destroy(c->q[c->qhead]);
            c->qhead = (c->qhead + 1) % c->qcap;
            c->qlen--;
        }
    } else if (c->qlen) {
        grpc_byte_buffer *bb = c->q[c->qhead];
        c->qhead = (c->qhead + 1) % c->qcap;
        c->qlen--;
        stream_send_msg_locked(c, bb);
    } else if (c->finishing && !c->status_started) {
        stream_send_status_locked(c);
    }
    bool done = stream_claim_done_locked(c);
    pthread_mutex_unlock(&c->mu);
    if (done)
        grpc_side_done(c);
}

/* Worker: the stream ended (status delivered, cancelled, deadline). */
static void on_stream_close(struct rpc_call *c)
{
    pthread_mutex_lock(&c->mu);
    c->outstanding--;
    c->close_done = true;
    atomic_store(&c->closed, true);
    while (c->qlen) {
        grpc_byte_buffer_destroy(c->q[c->qhead]);
        c->qhead = (c->qhead + 1) % c->qcap;
        c->qlen--;
    }
    bool cancelled = c->close_cancelled || c->forced || !c->status_started;
    /* An owner that already let go (say, a handler that refused the request
     * and released at once) is not told: it could only release again. */
    bool notify = c->m->m.on_closed && !c->released;
    pthread_mutex_unlock(&c->mu);
    /* The gRPC reference is still held: the owner may release inside. */
    if (notify)
        c->m->m.on_closed(c->m->m.ctx, c, cancelled);
    pthread_mutex_lock(&c->mu);
    c->close_reported = true;
    bool done = stream_claim_done_locked(c);
    pthread_mutex_unlock(&c->mu);
    if (done)
        grpc_side_done(c);
}

/* ------------------------------------------------------------- arrivals */

static void deadline_from(struct rpc_call *c)
{
    gpr_timespec d = c->deadline_ts;
    c->arrival_ns = nk_mono_ns();
    if (gpr_time_cmp(d, gpr_inf_future(d.clock_type)) == 0) {
        c->deadline_ns = UINT64_MAX;
        return;
    }
    gpr_timespec left = gpr_time_sub(gpr_convert_clock_type(d, GPR_CLOCK_MONOTONIC),
                                     gpr_now(GPR_CLOCK_MONOTONIC));
    int64_t ns = (int64_t)left.tv_sec * 1000000000 + left.tv_nsec;
    uint64_t now = c->arrival_ns;
    c->deadline_ns = ns <= 0 ? now : now + (uint64_t)ns;
}

/* Copies the request out of gRPC's buffer. False: the buffer is unreadable. */
static bool take_payload(struct rpc_call *c, size_t len)
{
    grpc_byte_buffer_reader r;
    if (!grpc_byte_buffer_reader_init(&r, c->payload))
        return false;
    size_t cap = len, off = 0;
    uint8_t *buf = cap ? nk_malloc(cap) : NULL;
    grpc_slice sl;
    while (grpc_byte_buffer_reader_next(&r, &sl)) {
        size_t n = GRPC_SLICE_LENGTH(sl);
        if (off + n > cap) { /* a compressed buffer's length is not the plain one */
            cap = NK_MAX(off + n, cap * 2);
            buf = nk_realloc(buf, cap);
        }
        memcpy(buf + off, GRPC_SLICE_START_PTR(sl), n);
        off += n;
        grpc_slice_unref(sl);
    }
    grpc_byte_buffer_reader_destroy(&r);
    c->req = buf;
    c->req_len = off;
    return true;
}

static void on_new_call(struct worker *w, struct rpc_call *c, bool ok)
{
    struct rpc_server *s = w->srv;
    if (!ok) { /* the server is shutting down: the slot was never used */
        slot_free(c);
        return;
    }
    const struct reg_method *m = c->m;
    atomic_fetch_add(&s->live, 1);
    if (!atomic_load(&s->shutting_down))
        post_request(w, m);
    deadline_from(c);

    if (!c->payload) {
        answer_internal(c, NK_INVALID_ARGUMENT, "request message missing");
        return;
    }
    size_t len = grpc_byte_buffer_length(c->payload);
    if (len > s->opt.max_request_bytes) {
        char msg[160];
        snprintf(msg, sizeof msg,
                 "request of %zu bytes exceeds the request size limit of %zu bytes", len,
                 s->opt.max_request_bytes);
        atomic_fetch_add(&s->n_size, 1);
        grpc_byte_buffer_destroy(c->payload);
        c->payload = NULL;
        answer_internal(c, NK_INVALID_ARGUMENT, msg);
        return;
    }
    uint64_t n = atomic_fetch_add(&s->inflight, 1) + 1;
    uint64_t b = atomic_fetch_add(&s->inflight_bytes, len) + len;
    if (n > s->opt.max_inflight || b > s->opt.max_inflight_bytes) {
        atomic_fetch_sub(&s->inflight, 1);
        atomic_fetch_sub(&s->inflight_bytes, len);
        atomic_fetch_add(&s->n_overload, 1);
        grpc_byte_buffer_destroy(c->payload);
        c->payload = NULL;
        answer_internal(c, NK_RESOURCE_EXHAUSTED,
                        n > s->opt.max_inflight ? "server overloaded: too many calls in flight"
                                                : "server overloaded: too many request bytes "
                                                  "in flight");
        return;
    }
    bool readable = take_payload(c, len);
    grpc_byte_buffer_destroy(c->payload);
    c->payload = NULL;
    /* charge what was actually copied (differs only for compressed input) */
    atomic_fetch_sub(&s->inflight_bytes, len);
    atomic_fetch_add(&s->inflight_bytes, c->req_len);
    if (!readable) {
        atomic_fetch_sub(&s->inflight, 1);
        atomic_fetch_sub(&s->inflight_bytes, c->req_len);
        answer_internal(c, NK_INVALID_ARGUMENT, "request message cannot be decompressed");
        return;
    }
    c->counted = true;
    atomic_fetch_add(&s->n_calls, 1);
    atomic_fetch_add(&c->refs, 1); /* the owner's */
    struct nk_slice req = nk_slice_make(c->req ? c->req : empty_bytes, c->req_len);

    if (m->m.kind == RPC_UNARY) {
        atomic_store(&c->state, CS_OWNED);
        pthread_mutex_lock(&s->mu);
        list_push(&s->owned, c);
        pthread_mutex_unlock(&s->mu);
        m->m.handler(m->m.ctx, c, req);
        return;
    }

    /* Server stream: initial metadata now (a send), the close watch for life. */
    c->is_stream = true;
    pthread_mutex_init(&c->mu, NULL);
    c->qcap = s->opt.stream_queue_max;
    c->q = nk_calloc(c->qcap, sizeof *c->q);
    pthread_mutex_lock(&s->mu);
    list_push(&s->streams, c);
    pthread_mutex_unlock(&s->mu);
    grpc_op op;
    memset(&op, 0, sizeof op);
    op.op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    op.data.recv_close_on_server.cancelled = &c->close_cancelled;
    pthread_mutex_lock(&c->mu);
    grpc_call_error e = grpc_call_start_batch(c->call, &op, 1, &c->t_close, NULL);
    NK_ASSERT(e == GRPC_CALL_OK);
    c->outstanding++;
    memset(&op, 0, sizeof op);
    op.op = GRPC_OP_SEND_INITIAL_METADATA;
    stream_start_send_locked(c, &op);
    pthread_mutex_unlock(&c->mu);
    m->m.handler(m->m.ctx, c, req);
}

static void on_generic_call(struct worker *w, struct rpc_call *c, bool ok)
{
    struct rpc_server *s = w->srv;
    if (!ok) {
        slot_free(c);
        return;
    }
    atomic_fetch_add(&s->live, 1);
    atomic_fetch_add(&s->n_unimpl, 1);
    if (!atomic_load(&s->shutting_down))
        post_request(w, NULL);
    /* the client's method name, printable: a NUL would cut the message and
     * other bytes could make it invalid UTF-8 */
    char msg[1100];
    grpc_slice meth = c->details.method;
    size_t mlen = NK_MIN(GRPC_SLICE_LENGTH(meth), (size_t)200), o;
    const uint8_t *mp = GRPC_SLICE_START_PTR(meth);
    o = (size_t)snprintf(msg, sizeof msg, "unknown method ");
    for (size_t i = 0; i < mlen; i++)
        o += (size_t)snprintf(msg + o, sizeof msg - o, mp[i] >= 0x20 && mp[i] < 0x7f ? "%c" : "\\x%02x",
                              mp[i]);
    answer_internal(c, NK_UNIMPLEMENTED, msg);
}

/* ------------------------------------------------------------- workers */

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct rpc_server *s = w->srv;
    for (;;) {
        grpc_event ev =
            grpc_completion_queue_next(w->cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
        if (ev.type == GRPC_QUEUE_SHUTDOWN)
            break;
        if (ev.type != GRPC_OP_COMPLETE)
            continue;
        struct rpc_tag *t = ev.tag;
        struct rpc_call *c = t->call;
        switch (t->kind) {
        case TAG_NEW:
            on_new_call(w, c, ev.success);
            break;
        case TAG_GENERIC:
            on_generic_call(w, c, ev.success);
            break;
        case TAG_FINAL:
            grpc_side_done(c);
            break;
        case TAG_SEND:
            on_stream_send(c, ev.success);
            break;
        case TAG_CLOSE:
            on_stream_close(c);
            break;
        case TAG_SHUTDOWN:
            pthread_mutex_lock(&s->mu);
            s->shutdown_notified = true;
            pthread_cond_broadcast(&s->cv);
            pthread_mutex_unlock(&s->mu);
            break;
        default:
            nk_panic("rpc: unknown completion tag kind %d", t->kind);
        }
    }
    return NULL;
}

/* ------------------------------------------------------------- the server */

/* gRPC's own log lines (its verbosity: GRPC_VERBOSITY, default ERROR) go
 * through nk_log, so that the server's stderr has one format. */
static void grpc_log_to_nk(gpr_log_func_args *a)
{
    enum nk_log_level lv = a->severity == GPR_LOG_SEVERITY_DEBUG  ? NK_LOG_DEBUG
                           : a->severity == GPR_LOG_SEVERITY_INFO ? NK_LOG_INFO
                                                                  : NK_LOG_ERROR;
    if (lv < nk_log_get_level())
        return;
    const char *f = a->file ? strrchr(a->file, '/') : NULL;
    nk_log(lv, "grpc", "%s (%s:%d)", a->message ? a->message : "",
           f ? f + 1 : (a->file ? a->file : "?"), a->line);
}

static pthread_once_t log_once = PTHREAD_ONCE_INIT;
static void install_grpc_log(void)
{
    gpr_set_log_function(grpc_log_to_nk);
}

nk_status rpc_server_create(const struct rpc_server_options *opt, struct rpc_server **out)
{
    *out = NULL;
    struct rpc_server_options o = *opt;
    if (!o.addr || !*o.addr)
        return nk_status_make(NK_INVALID_ARGUMENT, "rpc: no listen address");
    if (o.workers == 0)
        o.workers = 1;
    if (o.workers < 1 || o.workers > MAX_WORKERS)
        return nk_status_make(NK_INVALID_ARGUMENT, "rpc: workers must be 1..%d, not %d",
                              MAX_WORKERS, o.workers);
    if (!o.max_request_bytes)
        o.max_request_bytes = RPC_DEFAULT_MAX_REQUEST_BYTES;
    if (!o.hard_max_request_bytes)
        o.hard_max_request_bytes = NK_MAX((size_t)16 << 20, 2 * o.max_request_bytes);
    if (o.hard_max_request_bytes < o.max_request_bytes || o.hard_max_request_bytes > INT32_MAX)
        return nk_status_make(NK_INVALID_ARGUMENT,
                              "rpc: hard_max_request_bytes %zu must be >= max_request_bytes %zu "
                              "and < 2 GiB",
                              o.hard_max_request_bytes, o.max_request_bytes);
    if (!o.max_inflight)
        o.max_inflight = 4096;
    if (!o.max_inflight_bytes)
        o.max_inflight_bytes = (size_t)256 << 20;
    if (!o.stream_queue_max)
        o.stream_queue_max = 64;
    if (!o.requests_per_method)
        o.requests_per_method = 8;
    if (!o.min_client_ping_interval_ms)
        o.min_client_ping_interval_ms = 10000;
    if (!o.keepalive_ms)
        o.keepalive_ms = 60000;
    if (!o.memory_quota_bytes)
        o.memory_quota_bytes = (size_t)1 << 30;
    if (o.min_client_ping_interval_ms > INT32_MAX || o.keepalive_ms > INT32_MAX)
        return nk_status_make(NK_INVALID_ARGUMENT, "rpc: ping intervals must be < 2^31 ms");

    pthread_once(&log_once, install_grpc_log);
    grpc_init();
    struct rpc_server *s = nk_calloc(1, sizeof *s);
    s->opt = o;
    s->addr = nk_strdup(o.addr);
    s->opt.addr = s->addr;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    s->t_shutdown = (struct rpc_tag){TAG_SHUTDOWN, NULL};

    struct {
        const char *key;
        int value;
    } iargs[] = {
        /* A second server on a taken port must fail, not share it. */
        {GRPC_ARG_ALLOW_REUSEPORT, 0},
        {GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH, (int)o.hard_max_request_bytes},
        {GRPC_ARG_MAX_SEND_MESSAGE_LENGTH, -1},
        /* keepalive: see rpc_server_options */
        {GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, (int)o.min_client_ping_interval_ms},
        {GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1},
        {GRPC_ARG_KEEPALIVE_TIME_MS, (int)o.keepalive_ms},
        {GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 20000},
        /* keep probing an idle watch stream, not just twice */
        {GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0},
    };
    grpc_arg args[NK_ARRAY_LEN(iargs) + 1];
    memset(args, 0, sizeof args);
    for (size_t i = 0; i < NK_ARRAY_LEN(iargs); i++) {
        args[i].type = GRPC_ARG_INTEGER;
        args[i].key = (char *)iargs[i].key;
        args[i].value.integer = iargs[i].value;
    }
    grpc_resource_quota *quota = grpc_resource_quota_create("norikv-rpc");
    grpc_resource_quota_resize(quota, o.memory_quota_bytes);
    grpc_arg *qa = &args[NK_ARRAY_LEN(iargs)];
    qa->type = GRPC_ARG_POINTER;
    qa->key = (char *)GRPC_ARG_RESOURCE_QUOTA;
    qa->value.pointer.p = quota;
    qa->value.pointer.vtable = grpc_resource_quota_arg_vtable();
    grpc_channel_args ca = {NK_ARRAY_LEN(args), args};
    s->server = grpc_server_create(&ca, NULL);
    grpc_resource_quota_unref(quota); /* the server holds its own reference */
    s->nworkers = o.workers;
    for (int i = 0; i < s->nworkers; i++) {
        struct worker *w = &s->workers[i];
        w->srv = s;
        w->idx = i;
        w->cq = grpc_completion_queue_create_for_next(NULL);
        grpc_server_register_completion_queue(s->server, w->cq, NULL);
    }
    *out = s;
    return NK_OK;
}

static bool valid_method_name(const char *n)
{
    /* "/package.Service/Method" */
    if (!n || n[0] != '/')
        return false;
    const char *slash = strchr(n + 1, '/');
    if (!slash || slash == n + 1 || !slash[1] || strchr(slash + 1, '/'))
        return false;
    for (const char *p = n; *p; p++)
        if (*p <= ' ' || *p >= 0x7f)
            return false;
    return true;
}

nk_status rpc_server_add_method(struct rpc_server *s, const struct rpc_method *m)
{
    NK_ASSERT(!s->started);
    if (!valid_method_name(m->name))
        return nk_status_make(NK_INVALID_ARGUMENT,
                              "rpc: method name \"%s\" is not of the form /package.Service/Method",
                              m->name ? m->name : "(null)");
    if (!m->handler)
        return nk_status_make(NK_INVALID_ARGUMENT, "rpc: method %s has no handler", m->name);
    if (m->kind != RPC_UNARY && m->kind != RPC_SERVER_STREAM)
        return nk_status_make(NK_INVALID_ARGUMENT, "rpc: method %s has an unknown kind %d",
                              m->name, (int)m->kind);
    for (size_t i = 0; i < s->nmethods; i++)
        if (strcmp(s->methods[i].m.name, m->name) == 0)
            return nk_status_make(NK_ALREADY_EXISTS, "rpc: method %s registered twice", m->name);
    if (s->nmethods == s->methods_cap) {
        /* The array must not move once started: reg_method pointers live in
         * calls. Registration ends before start, so growing here is safe. */
        s->methods_cap = s->methods_cap ? 2 * s->methods_cap : 16;
        s->methods = nk_realloc(s->methods, s->methods_cap * sizeof *s->methods);
    }
    struct reg_method *r = &s->methods[s->nmethods];
    r->m = *m;
    r->m.name = nk_strdup(m->name);
    r->handle = grpc_server_register_method(s->server, r->m.name, NULL,
                                            GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER, 0);
    if (!r->handle) {
        free((char *)r->m.name);
        return nk_status_make(NK_INTERNAL, "rpc: gRPC refused to register method %s", m->name);
    }
    s->nmethods++;
    return NK_OK;
}

/*
 * gRPC says only that it could not bind. Find out why for the error message
 * by trying the same bind ourselves ("host:port", "[v6]:port").
 */
static const char *bind_failure_reason(const char *addr, char *buf, size_t cap)
{
    char host[256];
    const char *colon = strrchr(addr, ':');
    if (!colon || (size_t)(colon - addr) >= sizeof host)
        return "malformed address";
    memcpy(host, addr, (size_t)(colon - addr));
    host[colon - addr] = 0;
    char *h = host;
    if (h[0] == '[') { /* [v6]:port */
        h++;
        char *end = strchr(h, ']');
        if (end)
            *end = 0;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    int g = getaddrinfo(*h ? h : NULL, colon + 1, &hints, &res);
    if (g != 0) {
        snprintf(buf, cap, "cannot resolve: %s", gai_strerror(g));
        return buf;
    }
    int err = 0;
    for (struct addrinfo *ai = res; ai && !err; ai = ai->ai_next) {
        int fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
        if (fd < 0) {
            err = errno;
            break;
        }
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, 1) != 0)
            err = errno;
        close(fd);
    }
    freeaddrinfo(res);
    if (!err)
        return "address taken or not usable";
    snprintf(buf, cap, "%s", strerror(err));
    return buf;
}

nk_status rpc_server_start(struct rpc_server *s)
{
    NK_ASSERT(!s->started && !s->stopped);
    grpc_server_credentials *creds = grpc_insecure_server_credentials_create();
    int port = grpc_server_add_http2_port(s->server, s->addr, creds);
    grpc_server_credentials_release(creds);
    if (port <= 0) {
        char why[160];
        return nk_status_make(NK_UNAVAILABLE, "rpc: cannot listen on %s: %s", s->addr,
                              bind_failure_reason(s->addr, why, sizeof why));
    }
    s->port = port;
    grpc_server_start(s->server);
    s->started = true;
    for (int i = 0; i < s->nworkers; i++) {
        struct worker *w = &s->workers[i];
        for (size_t k = 0; k < s->nmethods; k++)
            for (uint32_t j = 0; j < s->opt.requests_per_method; j++)
                post_request(w, &s->methods[k]);
        for (int j = 0; j < GENERIC_REQUESTS_PER_WORKER; j++)
            post_request(w, NULL);
    }
    for (int i = 0; i < s->nworkers; i++) {
        struct worker *w = &s->workers[i];
        int e = pthread_create(&w->thread, NULL, worker_main, w);
        if (e)
            nk_panic("rpc: cannot start worker thread: %s", strerror(e));
        w->running = true;
    }
    NK_INFO(MOD, "serving gRPC on %s (port %d, %d workers, %zu methods)", s->addr, port,
            s->nworkers, s->nmethods);
    return NK_OK;
}

int rpc_server_port(const struct rpc_server *s)
{
    return s->port;
}

/* Waits on s->cv until shutdown_notified and no live call, or the deadline
 * (UINT64_MAX: none). Returns whether the condition holds. */
static bool wait_drained(struct rpc_server *s, uint64_t deadline_ns)
{
    pthread_mutex_lock(&s->mu);
    for (;;) {
        if (s->shutdown_notified && atomic_load(&s->live) == 0)
            break;
        uint64_t now = nk_mono_ns();
        if (now >= deadline_ns) {
            pthread_mutex_unlock(&s->mu);
            return false;
        }
        /* Waking every 100 ms re-checks `live`, whose decrement signals
         * without the lock. */
        uint64_t until = NK_MIN(deadline_ns, now + 100000000ull);
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        uint64_t wait_ns = until - now;
        ts.tv_sec += (time_t)(wait_ns / 1000000000ull);
        ts.tv_nsec += (long)(wait_ns % 1000000000ull);
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&s->cv, &s->mu, &ts);
    }
    pthread_mutex_unlock(&s->mu);
    return true;
}

void rpc_server_shutdown(struct rpc_server *s, uint32_t grace_ms)
{
    if (!s->started || s->stopped)
        return;
    uint64_t t0 = nk_mono_ns();
    atomic_store(&s->shutting_down, true);
    grpc_server_shutdown_and_notify(s->server, s->workers[0].cq, &s->t_shutdown);

    /* Streams never end by themselves: end them now. The list lock keeps
     * each one's gRPC side (and so the struct) alive while we touch it. */
    pthread_mutex_lock(&s->mu);
    for (struct rpc_call *c = s->streams; c; c = c->next)
        stream_finish(c, NK_UNAVAILABLE, "server shutting down", true);
    pthread_mutex_unlock(&s->mu);

    if (!wait_drained(s, t0 + (uint64_t)grace_ms * 1000000ull)) {
        /* Grace is over: end what handlers still hold, and cut the rest. */
        struct rpc_call *forced = NULL;
        pthread_mutex_lock(&s->mu);
        while (s->owned) {
            struct rpc_call *c = s->owned;
            list_remove(&s->owned, c);
            int expect = CS_OWNED;
            if (atomic_compare_exchange_strong(&c->state, &expect, CS_FORCED)) {
                c->next = forced;
                forced = c;
            }
        }
        pthread_mutex_unlock(&s->mu);
        uint64_t nforced = 0;
        while (forced) {
            struct rpc_call *c = forced;
            forced = c->next;
            c->next = NULL;
            atomic_fetch_sub(&s->inflight, 1);
            atomic_fetch_sub(&s->inflight_bytes, c->req_len);
            start_final(c, NULL, NK_UNAVAILABLE, "server shutting down", NULL, 0);
            nforced++;
        }
        atomic_fetch_add(&s->n_forced, nforced);
        if (nforced)
            NK_WARN(MOD, "shutdown: grace of %u ms over, ended %" PRIu64 " calls still in "
                    "handlers", grace_ms, nforced);
        /* The forced statuses normally end every call; a peer that does not
         * let its calls close gets its connection cut. */
        if (!wait_drained(s, nk_mono_ns() + 1000000000ull))
            grpc_server_cancel_all_calls(s->server);
        while (!wait_drained(s, nk_mono_ns() + 5000000000ull))
            NK_WARN(MOD, "shutdown: still waiting for %" PRIu64 " calls to end",
                    (uint64_t)atomic_load(&s->live));
    }
    for (int i = 0; i < s->nworkers; i++)
        grpc_completion_queue_shutdown(s->workers[i].cq);
    for (int i = 0; i < s->nworkers; i++) {
        if (s->workers[i].running)
            pthread_join(s->workers[i].thread, NULL);
        s->workers[i].running = false;
    }
    s->stopped = true;
    NK_INFO(MOD, "gRPC on %s stopped in %.1f ms", s->addr, (double)(nk_mono_ns() - t0) / 1e6);
}

void rpc_server_destroy(struct rpc_server *s)
{
    if (!s)
        return;
    if (s->started)
        rpc_server_shutdown(s, 0);
    grpc_server_destroy(s->server);
    for (int i = 0; i < s->nworkers; i++) {
        if (!s->started) {
            grpc_completion_queue_shutdown(s->workers[i].cq);
            /* drain: nothing was ever requested on it */
            while (grpc_completion_queue_next(s->workers[i].cq,
                                              gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL)
                       .type != GRPC_QUEUE_SHUTDOWN) {
            }
        }
        grpc_completion_queue_destroy(s->workers[i].cq);
    }
    for (size_t i = 0; i < s->nmethods; i++)
        free((char *)s->methods[i].m.name);
    free(s->methods);
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
    free(s->addr);
    free(s);
    grpc_shutdown();
}

void rpc_server_get_stats(const struct rpc_server *s_, struct rpc_stats *out)
{
    struct rpc_server *s = (struct rpc_server *)s_;
    out->calls = atomic_load(&s->n_calls);
    out->inflight = atomic_load(&s->inflight);
    out->rejected_overload = atomic_load(&s->n_overload);
    out->rejected_size = atomic_load(&s->n_size);
    out->unimplemented = atomic_load(&s->n_unimpl);
    out->forced_at_shutdown = atomic_load(&s->n_forced);
}
