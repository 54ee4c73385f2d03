/*
 * rpc_local_test.c: in-process calls (rpc_server_call_local), the path the
 * api fuzz target drives the real handlers through. They must behave like
 * network calls: the same limits and errors, each call ending exactly once,
 * replies from other threads, streams ended by the (in-process) client.
 */
#include <pthread.h>
#include <unistd.h>

#include "rpc/rpc.h"
#include "testlib.h"

struct rec {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int finals, msgs;
    enum nk_code code;
    char msg[256];
    uint8_t data[64];
    size_t len;
    size_t ntrailers;
};

static void rec_init(struct rec *r)
{
    memset(r, 0, sizeof(*r));
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cv, NULL);
}

static void rec_wait(struct rec *r)
{
    pthread_mutex_lock(&r->mu);
    while (!r->finals)
        pthread_cond_wait(&r->cv, &r->mu);
    pthread_mutex_unlock(&r->mu);
    usleep(1000); /* a second final would show up now */
}

static void on_ev(void *ctx, const struct rpc_local_event *ev)
{
    struct rec *r = ctx;
    pthread_mutex_lock(&r->mu);
    if (ev->final) {
        r->finals++;
        r->code = ev->code;
        snprintf(r->msg, sizeof r->msg, "%s", ev->msg ? ev->msg : "");
        r->ntrailers = ev->ntrailers;
    } else {
        r->msgs++;
    }
    if (ev->data && ev->len <= sizeof r->data) {
        memcpy(r->data, ev->data, ev->len);
        r->len = ev->len;
    }
    pthread_cond_signal(&r->cv);
    pthread_mutex_unlock(&r->mu);
}

static void echo(void *ctx, struct rpc_call *call, struct nk_slice req)
{
    (void)ctx;
    if (req.len && req.data[0] == 'E') {
        struct rpc_kv tr[1] = {{"leader-hint", "n2"}};
        rpc_call_fail(call, NK_FAILED_PRECONDITION, "no", tr, 1);
        return;
    }
    rpc_call_reply(call, req.data, req.len);
}

static void *late_reply(void *arg)
{
    usleep(20000);
    rpc_call_reply(arg, "late", 4);
    return NULL;
}

static void async(void *ctx, struct rpc_call *call, struct nk_slice req)
{
    (void)ctx;
    (void)req;
    pthread_t t;
    pthread_create(&t, NULL, late_reply, call);
    pthread_detach(t);
}

static int closed_calls;
static struct rpc_call *held;

static void stream(void *ctx, struct rpc_call *call, struct nk_slice req)
{
    (void)ctx;
    if (req.len && req.data[0] == 'X') { /* refuse and let go at once */
        rpc_stream_finish(call, NK_INVALID_ARGUMENT, "bad request");
        rpc_stream_release(call);
        return;
    }
    NK_CHECK(nk_ok(rpc_stream_write(call, "one", 3)));
    NK_CHECK(nk_ok(rpc_stream_write(call, "two", 3)));
    held = call;
}

static void stream_closed(void *ctx, struct rpc_call *call, bool cancelled)
{
    (void)ctx;
    NK_CHECK(cancelled && call == held && rpc_stream_closed(call));
    nk_status s = rpc_stream_write(call, "late", 4);
    NK_CHECK(s.code == NK_UNAVAILABLE);
    nk_status_free(&s);
    closed_calls++;
    rpc_stream_release(call);
}

static struct rpc_server *server(void)
{
    struct rpc_server_options o = {.addr = "127.0.0.1:0", .max_request_bytes = 100};
    struct rpc_server *s;
    NK_CHECK(nk_ok(rpc_server_create(&o, &s)));
    struct rpc_method ms[] = {
        {"/t.S/Echo", RPC_UNARY, echo, NULL, NULL},
        {"/t.S/Async", RPC_UNARY, async, NULL, NULL},
        {"/t.S/Watch", RPC_SERVER_STREAM, stream, stream_closed, NULL},
    };
    for (size_t i = 0; i < NK_ARRAY_LEN(ms); i++)
        NK_CHECK(nk_ok(rpc_server_add_method(s, &ms[i])));
    return s;
}

NK_TEST(local_unary_calls_end_once_with_the_reply_or_the_status_and_trailers)
{
    struct rpc_server *s = server();
    struct rec r;
    rec_init(&r);
    rpc_server_call_local(s, "/t.S/Echo", nk_slice_str("hello"), UINT64_MAX, on_ev, &r);
    rec_wait(&r);
    NK_CHECK(r.finals == 1 && r.code == NK_CODE_OK && r.len == 5 && !memcmp(r.data, "hello", 5));
    rec_init(&r);
    rpc_server_call_local(s, "/t.S/Echo", nk_slice_str("Err"), UINT64_MAX, on_ev, &r);
    rec_wait(&r);
    NK_CHECK(r.finals == 1 && r.code == NK_FAILED_PRECONDITION && !strcmp(r.msg, "no") &&
             r.ntrailers == 1);
    rec_init(&r);
    rpc_server_call_local(s, "/t.S/Async", nk_slice_str(""), UINT64_MAX, on_ev, &r);
    rec_wait(&r);
    NK_CHECK(r.finals == 1 && r.code == NK_CODE_OK && r.len == 4);
    rpc_server_destroy(s);
}

NK_TEST(local_calls_get_the_network_limits_and_unknown_method_errors)
{
    struct rpc_server *s = server();
    struct rec r;
    rec_init(&r);
    uint8_t big[101] = {0};
    rpc_server_call_local(s, "/t.S/Echo", nk_slice_make(big, sizeof big), UINT64_MAX, on_ev, &r);
    rec_wait(&r);
    NK_CHECK(r.finals == 1 && r.code == NK_INVALID_ARGUMENT && strstr(r.msg, "limit of 100"));
    rec_init(&r);
    rpc_server_call_local(s, "/t.S/Nope", nk_slice_str("x"), UINT64_MAX, on_ev, &r);
    rec_wait(&r);
    NK_CHECK(r.finals == 1 && r.code == NK_UNIMPLEMENTED && strstr(r.msg, "/t.S/Nope"));
    rpc_server_destroy(s);
}

NK_TEST(local_streams_deliver_messages_then_end_cancelled_and_report_the_close)
{
    struct rpc_server *s = server();
    struct rec r;
    rec_init(&r);
    closed_calls = 0;
    rpc_server_call_local(s, "/t.S/Watch", nk_slice_str(""), UINT64_MAX, on_ev, &r);
    rec_wait(&r);
    NK_CHECK(r.msgs == 2 && r.finals == 1 && r.code == NK_CANCELLED && closed_calls == 1);
    rec_init(&r);
    closed_calls = 0;
    rpc_server_call_local(s, "/t.S/Watch", nk_slice_str("X"), UINT64_MAX, on_ev, &r);
    rec_wait(&r);
    NK_CHECK(r.msgs == 0 && r.finals == 1 && r.code == NK_INVALID_ARGUMENT && closed_calls == 0);
    rpc_server_destroy(s);
}
