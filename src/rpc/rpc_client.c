/*
 * rpc_client.c: synchronous gRPC calls on the C core client API.
 *
 * Each calling thread owns a pluck completion queue (gRPC allows only a few
 * concurrent pluckers per queue, so queues are per thread, not per client);
 * a pthread key destructor shuts it down and drains it when the thread ends.
 */
#include "rpc/rpc_client.h"

#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/time.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

struct rpc_client {
    grpc_channel *ch;
};

static pthread_key_t cq_key;
static pthread_once_t cq_once = PTHREAD_ONCE_INIT;

static void cq_destroy(void *p)
{
    grpc_completion_queue *cq = p;
    grpc_completion_queue_shutdown(cq);
    for (;;) {
        grpc_event ev = grpc_completion_queue_pluck(cq, NULL, gpr_inf_future(GPR_CLOCK_REALTIME),
                                                    NULL);
        if (ev.type == GRPC_QUEUE_SHUTDOWN)
            break;
    }
    grpc_completion_queue_destroy(cq);
}

static void cq_key_init(void)
{
    pthread_key_create(&cq_key, cq_destroy);
}

static grpc_completion_queue *thread_cq(void)
{
    pthread_once(&cq_once, cq_key_init);
    grpc_completion_queue *cq = pthread_getspecific(cq_key);
    if (!cq) {
        cq = grpc_completion_queue_create_for_pluck(NULL);
        pthread_setspecific(cq_key, cq);
    }
    return cq;
}

nk_status rpc_client_new(const char *target, struct rpc_client **out)
{
    grpc_init();
    struct rpc_client *c = nk_calloc(1, sizeof(*c));
    grpc_channel_credentials *creds = grpc_insecure_credentials_create();
    grpc_arg args[1];
    args[0].type = GRPC_ARG_INTEGER;
    args[0].key = (char *)GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH;
    args[0].value.integer = 64 << 20;
    grpc_channel_args ca = {1, args};
    c->ch = grpc_channel_create(target, creds, &ca);
    grpc_channel_credentials_release(creds);
    if (!c->ch) {
        free(c);
        grpc_shutdown();
        return nk_status_make(NK_INVALID_ARGUMENT, "cannot create a gRPC channel to %s", target);
    }
    *out = c;
    return NK_OK;
}

void rpc_client_free(struct rpc_client *c)
{
    if (!c)
        return;
    /* this thread's queue may hold the channel's last events: drop it now */
    pthread_once(&cq_once, cq_key_init);
    grpc_completion_queue *cq = pthread_getspecific(cq_key);
    if (cq) {
        pthread_setspecific(cq_key, NULL);
        cq_destroy(cq);
    }
    grpc_channel_destroy(c->ch);
    free(c);
    grpc_shutdown();
}

static void copy_slice_to_buf(grpc_byte_buffer *bb, struct nk_buf *out)
{
    nk_buf_clear(out);
    if (!bb)
        return;
    grpc_byte_buffer_reader r;
    if (!grpc_byte_buffer_reader_init(&r, bb))
        return;
    grpc_slice sl;
    while (grpc_byte_buffer_reader_next(&r, &sl)) {
        nk_buf_append(out, GRPC_SLICE_START_PTR(sl), GRPC_SLICE_LENGTH(sl));
        grpc_slice_unref(sl);
    }
    grpc_byte_buffer_reader_destroy(&r);
}

static void copy_status(struct rpc_client_result *res, grpc_status_code st, grpc_slice details,
                        grpc_metadata_array *trailing)
{
    res->code = (enum nk_code)st;
    size_t n = GRPC_SLICE_LENGTH(details);
    res->message = nk_malloc(n + 1);
    memcpy(res->message, GRPC_SLICE_START_PTR(details), n);
    res->message[n] = 0;
    res->n_trailers = 0;
    for (size_t i = 0; i < trailing->count && res->n_trailers < RPC_CLIENT_MAX_TRAILERS; i++) {
        grpc_metadata *m = &trailing->metadata[i];
        snprintf(res->trailers[res->n_trailers].key, sizeof res->trailers[0].key, "%.*s",
                 (int)GRPC_SLICE_LENGTH(m->key), (const char *)GRPC_SLICE_START_PTR(m->key));
        snprintf(res->trailers[res->n_trailers].value, sizeof res->trailers[0].value, "%.*s",
                 (int)GRPC_SLICE_LENGTH(m->value), (const char *)GRPC_SLICE_START_PTR(m->value));
        res->n_trailers++;
    }
}

static gpr_timespec deadline_of(int64_t timeout_ms)
{
    if (timeout_ms <= 0)
        return gpr_inf_future(GPR_CLOCK_REALTIME);
    return gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                        gpr_time_from_millis(timeout_ms, GPR_TIMESPAN));
}

/* Runs one call: request sent, then either the whole unary exchange, or (stream)
 * the first message followed by a cancel. */
static void run_call(struct rpc_client *c, const char *method, const void *req, size_t len,
                     int64_t timeout_ms, bool stream, struct rpc_client_result *res)
{
    memset(res, 0, sizeof(*res));
    nk_buf_init(&res->body);
    grpc_completion_queue *cq = thread_cq();
    grpc_slice m = grpc_slice_from_copied_string(method);
    grpc_call *call = grpc_channel_create_call(c->ch, NULL, GRPC_PROPAGATE_DEFAULTS, cq, m, NULL,
                                               deadline_of(timeout_ms), NULL);
    grpc_slice_unref(m);
    grpc_slice body = grpc_slice_from_copied_buffer(req, len);
    grpc_byte_buffer *send = grpc_raw_byte_buffer_create(&body, 1);
    grpc_slice_unref(body);
    grpc_metadata_array initial, trailing;
    grpc_metadata_array_init(&initial);
    grpc_metadata_array_init(&trailing);
    grpc_byte_buffer *recv = NULL;
    grpc_status_code st = GRPC_STATUS_UNKNOWN;
    grpc_slice details = grpc_empty_slice();

    grpc_op ops[6];
    memset(ops, 0, sizeof ops);
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = send;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &initial;
    ops[4].op = GRPC_OP_RECV_MESSAGE;
    ops[4].data.recv_message.recv_message = &recv;
    ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[5].data.recv_status_on_client.trailing_metadata = &trailing;
    ops[5].data.recv_status_on_client.status = &st;
    ops[5].data.recv_status_on_client.status_details = &details;

    void *tag1 = (void *)1, *tag2 = (void *)2;
    if (!stream) {
        grpc_call_error e = grpc_call_start_batch(call, ops, 6, tag1, NULL);
        NK_ASSERT(e == GRPC_CALL_OK);
        grpc_event ev =
            grpc_completion_queue_pluck(cq, tag1, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        NK_ASSERT(ev.type == GRPC_OP_COMPLETE);
    } else {
        /* first: the request and the first message; then the status */
        grpc_call_error e = grpc_call_start_batch(call, ops, 5, tag1, NULL);
        NK_ASSERT(e == GRPC_CALL_OK);
        grpc_event ev =
            grpc_completion_queue_pluck(cq, tag1, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        NK_ASSERT(ev.type == GRPC_OP_COMPLETE);
        if (recv)
            grpc_call_cancel(call, NULL);
        e = grpc_call_start_batch(call, &ops[5], 1, tag2, NULL);
        NK_ASSERT(e == GRPC_CALL_OK);
        ev = grpc_completion_queue_pluck(cq, tag2, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        NK_ASSERT(ev.type == GRPC_OP_COMPLETE);
        if (recv)
            st = GRPC_STATUS_OK; /* we cancelled after the message we wanted */
    }
    copy_slice_to_buf(recv, &res->body);
    copy_status(res, st, details, &trailing);
    if (recv)
        grpc_byte_buffer_destroy(recv);
    grpc_byte_buffer_destroy(send);
    grpc_slice_unref(details);
    grpc_metadata_array_destroy(&initial);
    grpc_metadata_array_destroy(&trailing);
    grpc_call_unref(call);
}

void rpc_client_unary(struct rpc_client *c, const char *method, const void *req, size_t len,
                      int64_t timeout_ms, struct rpc_client_result *res)
{
    run_call(c, method, req, len, timeout_ms, false, res);
}

void rpc_client_first_message(struct rpc_client *c, const char *method, const void *req,
                              size_t len, int64_t timeout_ms, struct rpc_client_result *res)
{
    run_call(c, method, req, len, timeout_ms, true, res);
}

const char *rpc_client_trailer(const struct rpc_client_result *res, const char *key)
{
    for (size_t i = 0; i < res->n_trailers; i++)
        if (strcmp(res->trailers[i].key, key) == 0)
            return res->trailers[i].value;
    return NULL;
}

void rpc_client_result_free(struct rpc_client_result *res)
{
    free(res->message);
    res->message = NULL;
    nk_buf_free(&res->body);
}
