/*
 * rpc_test: the gRPC server wrapper against real gRPC clients over real
 * sockets on 127.0.0.1 (port 0). The client side uses the gRPC C core client
 * API directly. A small test service is registered through rpc.h: Get
 * answers synchronously (and produces the error cases), Put answers from a
 * separate "apply" thread, WatchCluster is a server stream written from the
 * test thread, and Echo returns the raw request bytes.
 */
#include <arpa/inet.h>
#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/time.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>

#include "norikv/v1/norikv.pb-c.h"
#include "rpc/rpc.h"
#include "testlib.h"

/* ================================================================ client */

struct cres {
    int code;
    char msg[512];
    uint8_t *body;
    size_t body_len;
    bool got_body;
    int nt;
    char tk[8][64];
    char tv[8][128];
};

static gpr_timespec deadline_in(int ms)
{
    if (ms < 0)
        return gpr_inf_future(GPR_CLOCK_REALTIME);
    return gpr_time_add(gpr_now(GPR_CLOCK_REALTIME), gpr_time_from_millis(ms, GPR_TIMESPAN));
}

static grpc_channel *client_open(int port)
{
    grpc_init();
    char target[64];
    snprintf(target, sizeof target, "127.0.0.1:%d", port);
    grpc_channel_credentials *cr = grpc_insecure_credentials_create();
    grpc_channel *ch = grpc_channel_create(target, cr, NULL);
    grpc_channel_credentials_release(cr);
    return ch;
}

/* A client that sends a keepalive ping every `ms`, also without calls. */
static grpc_channel *client_open_pinging(int port, int ms)
{
    grpc_init();
    char target[64];
    snprintf(target, sizeof target, "127.0.0.1:%d", port);
    grpc_arg a[4];
    memset(a, 0, sizeof a);
    const char *keys[4] = {GRPC_ARG_KEEPALIVE_TIME_MS, GRPC_ARG_KEEPALIVE_TIMEOUT_MS,
                           GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS,
                           GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA};
    int vals[4] = {ms, 5000, 1, 0};
    for (int i = 0; i < 4; i++) {
        a[i].type = GRPC_ARG_INTEGER;
        a[i].key = (char *)keys[i];
        a[i].value.integer = vals[i];
    }
    grpc_channel_args args = {4, a};
    grpc_channel_credentials *cr = grpc_insecure_credentials_create();
    grpc_channel *ch = grpc_channel_create(target, cr, &args);
    grpc_channel_credentials_release(cr);
    return ch;
}

static void client_close(grpc_channel *ch)
{
    grpc_channel_destroy(ch);
    grpc_shutdown();
}

static void cq_drain_destroy(grpc_completion_queue *cq)
{
    grpc_completion_queue_shutdown(cq);
    while (grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
           GRPC_QUEUE_SHUTDOWN) {
    }
    grpc_completion_queue_destroy(cq);
}

static void copy_slice(char *dst, size_t cap, grpc_slice s)
{
    size_t n = NK_MIN(GRPC_SLICE_LENGTH(s), cap - 1);
    memcpy(dst, GRPC_SLICE_START_PTR(s), n);
    dst[n] = 0;
}

static uint8_t *bb_flatten(grpc_byte_buffer *bb, size_t *len)
{
    grpc_byte_buffer_reader r;
    NK_ASSERT(grpc_byte_buffer_reader_init(&r, bb));
    grpc_slice s = grpc_byte_buffer_reader_readall(&r);
    grpc_byte_buffer_reader_destroy(&r);
    *len = GRPC_SLICE_LENGTH(s);
    uint8_t *out = nk_malloc(*len + 1);
    memcpy(out, GRPC_SLICE_START_PTR(s), *len);
    grpc_slice_unref(s);
    return out;
}

static grpc_byte_buffer *bb_of(const void *p, size_t n)
{
    grpc_slice s = grpc_slice_from_copied_buffer(p, n);
    grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&s, 1);
    grpc_slice_unref(s);
    return bb;
}

/* One unary call; send_msg=false half-closes without a request message. */
static void call_unary(grpc_channel *ch, const char *method, const void *req, size_t len,
                       bool send_msg, int deadline_ms, struct cres *out)
{
    memset(out, 0, sizeof *out);
    grpc_completion_queue *cq = grpc_completion_queue_create_for_next(NULL);
    grpc_call *call = grpc_channel_create_call(ch, NULL, GRPC_PROPAGATE_DEFAULTS, cq,
                                               grpc_slice_from_static_string(method), NULL,
                                               deadline_in(deadline_ms), NULL);
    grpc_metadata_array imd, tmd;
    grpc_metadata_array_init(&imd);
    grpc_metadata_array_init(&tmd);
    grpc_byte_buffer *reqbb = send_msg ? bb_of(req, len) : NULL, *resp = NULL;
    grpc_status_code st = GRPC_STATUS_UNKNOWN;
    grpc_slice details = grpc_empty_slice();
    grpc_op ops[6];
    memset(ops, 0, sizeof ops);
    size_t n = 0;
    ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
    if (send_msg) {
        ops[n].op = GRPC_OP_SEND_MESSAGE;
        ops[n++].data.send_message.send_message = reqbb;
    }
    ops[n++].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[n].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[n++].data.recv_initial_metadata.recv_initial_metadata = &imd;
    ops[n].op = GRPC_OP_RECV_MESSAGE;
    ops[n++].data.recv_message.recv_message = &resp;
    ops[n].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[n].data.recv_status_on_client.trailing_metadata = &tmd;
    ops[n].data.recv_status_on_client.status = &st;
    ops[n++].data.recv_status_on_client.status_details = &details;
    NK_ASSERT(grpc_call_start_batch(call, ops, n, (void *)1, NULL) == GRPC_CALL_OK);
    grpc_event ev = grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    NK_ASSERT(ev.type == GRPC_OP_COMPLETE && ev.tag == (void *)1);
    out->code = (int)st;
    copy_slice(out->msg, sizeof out->msg, details);
    if (resp) {
        out->got_body = true;
        out->body = bb_flatten(resp, &out->body_len);
        grpc_byte_buffer_destroy(resp);
    }
    for (size_t i = 0; i < tmd.count && out->nt < 8; i++) {
        copy_slice(out->tk[out->nt], sizeof out->tk[0], tmd.metadata[i].key);
        copy_slice(out->tv[out->nt], sizeof out->tv[0], tmd.metadata[i].value);
        out->nt++;
    }
    grpc_slice_unref(details);
    if (reqbb)
        grpc_byte_buffer_destroy(reqbb);
    grpc_metadata_array_destroy(&imd);
    grpc_metadata_array_destroy(&tmd);
    grpc_call_unref(call);
    cq_drain_destroy(cq);
}

static const char *cres_trailer(const struct cres *r, const char *key)
{
    for (int i = 0; i < r->nt; i++)
        if (strcmp(r->tk[i], key) == 0)
            return r->tv[i];
    return NULL;
}

static void cres_free(struct cres *r)
{
    free(r->body);
    r->body = NULL;
}

/* A server-streaming client call. */
struct cstream {
    grpc_completion_queue *cq;
    grpc_call *call;
    grpc_metadata_array imd, tmd;
    grpc_status_code st;
    grpc_slice details;
    grpc_byte_buffer *reqbb, *msg;
    bool status_done, read_pending, send_pending;
};

#define TAG_S_SEND   ((void *)1)
#define TAG_S_STATUS ((void *)2)
#define TAG_S_READ   ((void *)3)

static void cstream_open(struct cstream *s, grpc_channel *ch, const char *method, const void *req,
                         size_t len)
{
    memset(s, 0, sizeof *s);
    s->cq = grpc_completion_queue_create_for_next(NULL);
    s->call = grpc_channel_create_call(ch, NULL, GRPC_PROPAGATE_DEFAULTS, s->cq,
                                       grpc_slice_from_static_string(method), NULL,
                                       gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    grpc_metadata_array_init(&s->imd);
    grpc_metadata_array_init(&s->tmd);
    s->details = grpc_empty_slice();
    grpc_op op;
    memset(&op, 0, sizeof op);
    op.op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    op.data.recv_status_on_client.trailing_metadata = &s->tmd;
    op.data.recv_status_on_client.status = &s->st;
    op.data.recv_status_on_client.status_details = &s->details;
    NK_ASSERT(grpc_call_start_batch(s->call, &op, 1, TAG_S_STATUS, NULL) == GRPC_CALL_OK);
    s->reqbb = bb_of(req, len);
    grpc_op ops[4];
    memset(ops, 0, sizeof ops);
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = s->reqbb;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    /* gRPC delivers no message before the initial metadata was received */
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &s->imd;
    NK_ASSERT(grpc_call_start_batch(s->call, ops, 4, TAG_S_SEND, NULL) == GRPC_CALL_OK);
    s->send_pending = true;
}

/* Waits for `tag` (up to ms); false on timeout. Notes the status on the way. */
static bool cstream_wait(struct cstream *s, void *tag, int ms)
{
    for (;;) {
        grpc_event ev = grpc_completion_queue_next(s->cq, deadline_in(ms), NULL);
        if (ev.type == GRPC_QUEUE_TIMEOUT)
            return false;
        NK_ASSERT(ev.type == GRPC_OP_COMPLETE);
        if (ev.tag == TAG_S_STATUS)
            s->status_done = true;
        if (ev.tag == TAG_S_READ)
            s->read_pending = false;
        if (ev.tag == TAG_S_SEND)
            s->send_pending = false;
        if (ev.tag == tag)
            return true;
    }
}

/* 1: a message (malloc'd in *out), 0: end of stream, -1: timeout. */
static int cstream_read(struct cstream *s, uint8_t **out, size_t *len, int ms)
{
    if (!s->read_pending) {
        grpc_op op;
        memset(&op, 0, sizeof op);
        op.op = GRPC_OP_RECV_MESSAGE;
        op.data.recv_message.recv_message = &s->msg;
        s->msg = NULL;
        NK_ASSERT(grpc_call_start_batch(s->call, &op, 1, TAG_S_READ, NULL) == GRPC_CALL_OK);
        s->read_pending = true;
    }
    if (!cstream_wait(s, TAG_S_READ, ms))
        return -1;
    if (!s->msg)
        return 0;
    *out = bb_flatten(s->msg, len);
    grpc_byte_buffer_destroy(s->msg);
    s->msg = NULL;
    return 1;
}

/* The final status (waits up to ms); -1 on timeout. */
static int cstream_status(struct cstream *s, int ms)
{
    if (!s->status_done && !cstream_wait(s, TAG_S_STATUS, ms))
        return -1;
    return (int)s->st;
}

static void cstream_close(struct cstream *s)
{
    grpc_call_cancel(s->call, NULL);
    /* let outstanding batches (read, status) finish */
    while (!s->status_done)
        cstream_wait(s, TAG_S_STATUS, 10000);
    if (s->read_pending)
        cstream_wait(s, TAG_S_READ, 10000);
    if (s->send_pending)
        cstream_wait(s, TAG_S_SEND, 10000);
    if (s->msg)
        grpc_byte_buffer_destroy(s->msg);
    grpc_byte_buffer_destroy(s->reqbb);
    grpc_slice_unref(s->details);
    grpc_metadata_array_destroy(&s->imd);
    grpc_metadata_array_destroy(&s->tmd);
    grpc_call_unref(s->call);
    cq_drain_destroy(s->cq);
}

/* ========================================================== test service */

#define MAX_HELD 64

static struct svc {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    /* Put calls waiting for the apply thread */
    struct rpc_call *q[1024];
    uint64_t qidx[1024];
    int qn;
    bool stop;
    pthread_t apply;
    /* Put calls with key "hold": completed only by the test */
    struct rpc_call *held[MAX_HELD];
    int nheld;
    /* the WatchCluster stream */
    struct rpc_call *stream;
    int closed_count;
    bool closed_cancelled;
    bool release_in_close;
    int closed_foreign; /* on_closed for a stream the test does not hold */
    int64_t deadline_seen;
    uint32_t apply_delay_us;
    _Atomic uint64_t queued, replied;
} svc = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

static void reply_put(struct rpc_call *c, uint64_t term, uint64_t index)
{
    Norikv__V1__Version v = NORIKV__V1__VERSION__INIT;
    v.term = term;
    v.index = index;
    Norikv__V1__PutResponse r = NORIKV__V1__PUT_RESPONSE__INIT;
    r.version = &v;
    size_t n = norikv__v1__put_response__get_packed_size(&r);
    uint8_t *buf = nk_malloc(n ? n : 1);
    norikv__v1__put_response__pack(&r, buf);
    rpc_call_reply_malloced(c, buf, n);
}

static void *apply_main(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&svc.mu);
    for (;;) {
        while (!svc.qn && !svc.stop)
            pthread_cond_wait(&svc.cv, &svc.mu);
        if (!svc.qn && svc.stop)
            break;
        /* take the whole batch, as the node's apply thread does */
        struct rpc_call *batch[1024];
        uint64_t idx[1024];
        int n = svc.qn;
        memcpy(batch, svc.q, n * sizeof batch[0]);
        memcpy(idx, svc.qidx, n * sizeof idx[0]);
        svc.qn = 0;
        pthread_mutex_unlock(&svc.mu);
        for (int i = 0; i < n; i++) {
            if (svc.apply_delay_us) /* racy read is fine: a test knob */
                nk_sleep_us(svc.apply_delay_us);
            reply_put(batch[i], 7, idx[i]);
            atomic_fetch_add(&svc.replied, 1);
        }
        pthread_mutex_lock(&svc.mu);
    }
    pthread_mutex_unlock(&svc.mu);
    return NULL;
}

static void h_put(void *ctx, struct rpc_call *c, struct nk_slice req)
{
    Norikv__V1__PutRequest *p = norikv__v1__put_request__unpack(NULL, req.len, req.data);
    if (!p) {
        rpc_call_fail(c, NK_INVALID_ARGUMENT, "malformed PutRequest", NULL, 0);
        return;
    }
    pthread_mutex_lock(&svc.mu);
    if (p->key.len == 4 && memcmp(p->key.data, "hold", 4) == 0 && svc.nheld < MAX_HELD) {
        svc.held[svc.nheld++] = c;
        pthread_cond_broadcast(&svc.cv);
    } else if (svc.qn < 1024) {
        char k[32] = {0};
        memcpy(k, p->key.data, NK_MIN(p->key.len, sizeof k - 1));
        svc.qidx[svc.qn] = strtoull(k + 1, NULL, 10);
        svc.q[svc.qn++] = c;
        atomic_fetch_add(&svc.queued, 1);
        pthread_cond_broadcast(&svc.cv);
    } else {
        pthread_mutex_unlock(&svc.mu);
        norikv__v1__put_request__free_unpacked(p, NULL);
        rpc_call_fail(c, NK_RESOURCE_EXHAUSTED, "apply queue full", NULL, 0);
        return;
    }
    pthread_mutex_unlock(&svc.mu);
    norikv__v1__put_request__free_unpacked(p, NULL);
}

static bool key_is(const Norikv__V1__GetRequest *g, const char *k)
{
    return g->key.len == strlen(k) && memcmp(g->key.data, k, g->key.len) == 0;
}

static void h_get(void *ctx, struct rpc_call *c, struct nk_slice req)
{
    Norikv__V1__GetRequest *g = norikv__v1__get_request__unpack(NULL, req.len, req.data);
    if (!g) {
        rpc_call_fail(c, NK_INVALID_ARGUMENT, "malformed GetRequest", NULL, 0);
        return;
    }
    if (key_is(g, "missing")) {
        rpc_call_fail(c, NK_NOT_FOUND, "key not found", NULL, 0);
    } else if (key_is(g, "notleader")) {
        struct rpc_kv t[] = {{"leader-hint", "127.0.0.1:9999"}};
        rpc_call_fail(c, NK_UNAVAILABLE, "NOT_LEADER: shard 3 is led elsewhere", t, 1);
    } else if (key_is(g, "cas")) {
        struct rpc_kv t[] = {{"Bad Key", "x"}, {"current-version", "3.7"}, {"x-bad", "a\nb"}};
        rpc_call_fail(c, NK_FAILED_PRECONDITION, "version mismatch", t, 3);
    } else if (key_is(g, "ioerror")) {
        nk_status st = nk_status_make(NK_IO_ERROR, "disk on fire");
        rpc_call_fail_status(c, &st);
    } else {
        pthread_mutex_lock(&svc.mu);
        svc.deadline_seen = rpc_call_deadline_ms(c);
        uint64_t arr = rpc_call_arrival_ns(c);
        NK_ASSERT(arr > 0 && arr <= nk_mono_ns());
        pthread_mutex_unlock(&svc.mu);
        Norikv__V1__Version v = NORIKV__V1__VERSION__INIT;
        v.term = 1;
        v.index = g->key.len;
        Norikv__V1__GetResponse r = NORIKV__V1__GET_RESPONSE__INIT;
        r.value = g->key;
        r.version = &v;
        if (key_is(g, "packed")) { /* the zero-copy codec path */
            rpc_call_reply_msg(c, &r.base);
        } else {
            uint8_t buf[2048];
            size_t n = norikv__v1__get_response__get_packed_size(&r);
            NK_ASSERT(n <= sizeof buf);
            norikv__v1__get_response__pack(&r, buf);
            rpc_call_reply(c, buf, n);
        }
    }
    norikv__v1__get_request__free_unpacked(g, NULL);
}

static void h_echo(void *ctx, struct rpc_call *c, struct nk_slice req)
{
    rpc_call_reply(c, req.data, req.len);
}

static void h_watch(void *ctx, struct rpc_call *c, struct nk_slice req)
{
    Norikv__V1__ClusterView *v = norikv__v1__cluster_view__unpack(NULL, req.len, req.data);
    if (!v) {
        rpc_call_fail(c, NK_INVALID_ARGUMENT, "malformed ClusterView", NULL, 0);
        rpc_stream_release(c);
        return;
    }
    norikv__v1__cluster_view__free_unpacked(v, NULL);
    pthread_mutex_lock(&svc.mu);
    if (svc.stream) { /* one at a time in these tests */
        pthread_mutex_unlock(&svc.mu);
        rpc_stream_finish(c, NK_RESOURCE_EXHAUSTED, "one watcher only");
        rpc_stream_release(c);
        return;
    }
    svc.stream = c;
    pthread_cond_broadcast(&svc.cv);
    pthread_mutex_unlock(&svc.mu);
}

static void h_watch_closed(void *ctx, struct rpc_call *c, bool cancelled)
{
    pthread_mutex_lock(&svc.mu);
    if (c != svc.stream)
        svc.closed_foreign++; /* a stream its handler already released */
    if (c == svc.stream) {
        svc.closed_count++;
        svc.closed_cancelled = cancelled;
        if (svc.release_in_close) {
            svc.stream = NULL;
            rpc_stream_release(c);
        }
    }
    pthread_cond_broadcast(&svc.cv);
    pthread_mutex_unlock(&svc.mu);
}

static void svc_reset(void)
{
    pthread_mutex_lock(&svc.mu);
    svc.qn = 0;
    svc.stop = false;
    svc.nheld = 0;
    svc.stream = NULL;
    svc.closed_count = 0;
    svc.closed_cancelled = false;
    svc.release_in_close = false;
    svc.closed_foreign = 0;
    svc.deadline_seen = 0;
    svc.apply_delay_us = 0;
    atomic_store(&svc.queued, 0);
    atomic_store(&svc.replied, 0);
    pthread_mutex_unlock(&svc.mu);
    NK_ASSERT(pthread_create(&svc.apply, NULL, apply_main, NULL) == 0);
}

static void svc_stop(void)
{
    pthread_mutex_lock(&svc.mu);
    svc.stop = true;
    pthread_cond_broadcast(&svc.cv);
    pthread_mutex_unlock(&svc.mu);
    pthread_join(svc.apply, NULL);
}

/* Waits until pred() holds (under svc.mu), up to ms. */
static bool svc_wait(bool (*pred)(void), int ms)
{
    uint64_t until = nk_mono_ms() + (uint64_t)ms;
    pthread_mutex_lock(&svc.mu);
    while (!pred() && nk_mono_ms() < until) {
        pthread_mutex_unlock(&svc.mu);
        nk_sleep_us(1000);
        pthread_mutex_lock(&svc.mu);
    }
    bool ok = pred();
    pthread_mutex_unlock(&svc.mu);
    return ok;
}

static int want_held;
static bool held_reached(void)
{
    return svc.nheld >= want_held;
}
static bool stream_open_pred(void)
{
    return svc.stream != NULL;
}
static bool stream_closed_pred(void)
{
    return svc.closed_count > 0;
}

static struct rpc_server *start_server(struct rpc_server_options *o)
{
    struct rpc_server_options def = {0};
    if (!o)
        o = &def;
    o->addr = "127.0.0.1:0";
    struct rpc_server *s;
    nk_status st = rpc_server_create(o, &s);
    NK_ASSERT(nk_ok(st));
    struct rpc_method ms[] = {
        {"/norikv.v1.Kv/Put", RPC_UNARY, h_put, NULL, NULL},
        {"/norikv.v1.Kv/Get", RPC_UNARY, h_get, NULL, NULL},
        {"/nktest.Test/Echo", RPC_UNARY, h_echo, NULL, NULL},
        {"/norikv.v1.Meta/WatchCluster", RPC_SERVER_STREAM, h_watch, h_watch_closed, NULL},
    };
    for (size_t i = 0; i < NK_ARRAY_LEN(ms); i++) {
        st = rpc_server_add_method(s, &ms[i]);
        NK_ASSERT(nk_ok(st));
    }
    st = rpc_server_start(s);
    if (!nk_ok(st)) {
        fprintf(stderr, "start: %s\n", nk_status_msg(st));
        NK_ASSERT(0);
    }
    svc_reset();
    return s;
}

static void stop_server(struct rpc_server *s)
{
    rpc_server_destroy(s);
    svc_stop();
}

static size_t pack_get(const char *key, uint8_t *buf)
{
    Norikv__V1__GetRequest g = NORIKV__V1__GET_REQUEST__INIT;
    g.key.data = (uint8_t *)key;
    g.key.len = strlen(key);
    size_t n = norikv__v1__get_request__get_packed_size(&g);
    norikv__v1__get_request__pack(&g, buf);
    return n;
}

static size_t pack_put(const char *key, const char *value, uint8_t *buf)
{
    Norikv__V1__PutRequest p = NORIKV__V1__PUT_REQUEST__INIT;
    p.key.data = (uint8_t *)key;
    p.key.len = strlen(key);
    p.value.data = (uint8_t *)value;
    p.value.len = strlen(value);
    size_t n = norikv__v1__put_request__get_packed_size(&p);
    norikv__v1__put_request__pack(&p, buf);
    return n;
}

/* ================================================================= tests */

NK_TEST(port_zero_binds_a_free_port_and_sync_reply_roundtrips)
{
    struct rpc_server *s = start_server(NULL);
    int port = rpc_server_port(s);
    NK_CHECK(port > 0 && port < 65536);
    grpc_channel *ch = client_open(port);
    uint8_t buf[256];
    size_t n = pack_get("hello", buf);
    struct cres r;
    call_unary(ch, "/norikv.v1.Kv/Get", buf, n, true, 5000, &r);
    NK_CHECK_EQ_U64(r.code, GRPC_STATUS_OK);
    NK_REQUIRE(r.got_body);
    Norikv__V1__GetResponse *g = norikv__v1__get_response__unpack(NULL, r.body_len, r.body);
    NK_REQUIRE(g);
    NK_CHECK(g->value.len == 5 && memcmp(g->value.data, "hello", 5) == 0);
    NK_CHECK(g->version && g->version->term == 1 && g->version->index == 5);
    norikv__v1__get_response__free_unpacked(g, NULL);
    cres_free(&r);
    client_close(ch);
    stop_server(s);
}

NK_TEST(error_statuses_carry_message_and_legal_trailers)
{
    struct rpc_server *s = start_server(NULL);
    grpc_channel *ch = client_open(rpc_server_port(s));
    uint8_t buf[256];
    struct cres r;

    call_unary(ch, "/norikv.v1.Kv/Get", buf, pack_get("missing", buf), true, 5000, &r);
    NK_CHECK_EQ_U64(r.code, GRPC_STATUS_NOT_FOUND);
    NK_CHECK(strcmp(r.msg, "key not found") == 0);
    NK_CHECK(!r.got_body);
    cres_free(&r);

    call_unary(ch, "/norikv.v1.Kv/Get", buf, pack_get("notleader", buf), true, 5000, &r);
    NK_CHECK_EQ_U64(r.code, GRPC_STATUS_UNAVAILABLE);
    NK_CHECK(strstr(r.msg, "NOT_LEADER") != NULL);
    NK_CHECK(cres_trailer(&r, "leader-hint") &&
             strcmp(cres_trailer(&r, "leader-hint"), "127.0.0.1:9999") == 0);
    cres_free(&r);

    /* an illegal key and an illegal value are dropped, the legal one kept */
    call_unary(ch, "/norikv.v1.Kv/Get", buf, pack_get("cas", buf), true, 5000, &r);
    NK_CHECK_EQ_U64(r.code, GRPC_STATUS_FAILED_PRECONDITION);
    NK_CHECK(strncmp(r.msg, "version mismatch", 16) == 0);
    NK_CHECK(cres_trailer(&r, "current-version") &&
             strcmp(cres_trailer(&r, "current-version"), "3.7") == 0);
    NK_CHECK(cres_trailer(&r, "x-bad") == NULL);
    cres_free(&r);

    call_unary(ch, "/norikv.v1.Kv/Get", buf, pack_get("ioerror", buf), true, 5000, &r);
    NK_CHECK_EQ_U64(r.code, GRPC_STATUS_INTERNAL);
    NK_CHECK(strstr(r.msg, "disk on fire") != NULL);
    cres_free(&r);
    client_close(ch);
    stop_server(s);
}

NK_TEST(async_reply_from_another_thread_reaches_the_client)
{
    struct rpc_server *s = start_server(NULL);
    grpc_channel *ch = client_open(rpc_server_port(s));
    uint8_t buf[256];
    struct cres r;
    call_unary(ch, "/norikv.v1.Kv/Put", buf, pack_put("k42", "v", buf), true, 5000, &r);
    NK_CHECK_EQ_U64(r.code, GRPC_STATUS_OK);
    NK_REQUIRE(r.got_body);
    Norikv__V1__PutResponse *p = norikv__v1__put_response__unpack(NULL, r.body_len, r.body);
    NK_REQUIRE(p && p->version);
    NK_CHECK_EQ_U64(p->version->term, 7);
    NK_CHECK_EQ_U64(p->version->index, 42);
    norikv__v1__put_response__free_unpacked(p, NULL);
    cres_free(&r);
    client_close(ch);
    stop_server(s);
}

struct load_arg {
    int port;
    int base, count;
    int bad;
};

static void *load_main(void *arg)
{
    struct load_arg *a = arg;
    grpc_channel *ch = client_open(a->port);
    for (int i = 0; i < a->count; i++) {
        char key[32];
        int idx = a->base + i;
        snprintf(key, sizeof key, "k%d", idx);
        uint8_t buf[256];
        struct cres r;
        bool async = i % 2 == 0;
        if (async)
            call_unary(ch, "/norikv.v1.Kv/Put", buf, pack_put(key, "v", buf), true, 10000, &r);
        else
            call_unary(ch, "/norikv.v1.Kv/Get", buf, pack_get(key, buf), true, 10000, &r);
        bool ok = r.code == GRPC_STATUS_OK && r.got_body;
        if (ok && async) {
            Norikv__V1__PutResponse *p = norikv__v1__put_response__unpack(NULL, r.body_len, r.body);
            ok = p && p->version && p->version->index == (uint64_t)idx;
            if (p)
                norikv__v1__put_response__free_unpacked(p, NULL);
        } else if (ok) {
            Norikv__V1__GetResponse *g = norikv__v1__get_response__unpack(NULL, r.body_len, r.body);
            ok = g && g->value.len == strlen(key) && memcmp(g->value.data, key, g->value.len) == 0;
            if (g)
                norikv__v1__get_response__free_unpacked(g, NULL);
        }
        if (!ok)
            a->bad++;
        cres_free(&r);
    }
    client_close(ch);
    return NULL;
}

NK_TEST(concurrent_sync_and_async_calls_each_get_their_own_reply)
{
    struct rpc_server_options o = {.workers = 2};
    struct rpc_server *s = start_server(&o);
    enum { THREADS = 6, PER = 150 };
    pthread_t th[THREADS];
    struct load_arg a[THREADS];
    for (int i = 0; i < THREADS; i++) {
        a[i] = (struct load_arg){rpc_server_port(s), i * 1000, PER, 0};
        pthread_create(&th[i], NULL, load_main, &a[i]);
    }
    int bad = 0;
    for (int i = 0; i < THREADS; i++) {
        pthread_join(th[i], NULL);
        bad += a[i].bad;
    }
    NK_CHECK_EQ_U64(bad, 0);
    struct rpc_stats st;
    rpc_server_get_stats(s, &st);
    NK_CHECK_EQ_U64(st.calls, THREADS * PER);
    NK_CHECK_EQ_U64(st.inflight, 0);
    stop_server(s);
}

NK_TEST(unknown_method_is_unimplemented_and_server_keeps_serving)
{
    struct rpc_server *s = start_server(NULL);
    grpc_channel *ch = client_open(rpc_server_port(s));
    uint8_t buf[256];
    struct cres r;
    for (int i = 0; i < 20; i++) { /* more than the generic requests posted */
        call_unary(ch, "/norikv.v1.Kv/Nope", "x", 1, true, 5000, &r);
        NK_CHECK_EQ_U64(r.code, GRPC_STATUS_UNIMPLEMENTED);
        NK_CHECK(strstr(r.msg, "/norikv.v1.Kv/Nope") != NULL);
        cres_free(&r);
    }
    call_unary(ch, "/norikv.v1.Vector/Search", "", 0, true, 5000, &r);
    NK_CHECK_EQ_U64(r.code, GRPC_STATUS_UNIMPLEMENTED);
    cres_free(&r);
    call_unary(ch, "/norikv.v1.Kv/Get", buf, pack_get("after", buf), true, 5000, &r);
    NK_CHECK_EQ_U64(r.code, GRPC_STATUS_OK);
    cres_free(&r);
    struct rpc_stats st;
    rpc_server_get_stats(s, &st);
    NK_CHECK_EQ_U64(st.unimplemented, 21);
    client_close(ch);
    stop_server(s);
}

NK_TEST(garbage_body_reaches_handler_which_answers_invalid_argument)
{
    struct rpc_server *s = start_server(NULL);
    grpc_channel *ch = client_open(rpc_server_port(s));
    struct cres r;
    /* field 1, wire type 2, length 0x7f but only 3 bytes follow */
    static const uint8_t garbage[] = {0x0a, 0x7f, 0x01, 0x02, 0x03};
    call_unary(ch, "/norikv.v1.Kv/Get", garbage, sizeof garbage, true, 5000, &r);
    NK_CHECK_EQ_U64(r.code, GRPC_STATUS_INVALID_ARGUMENT);
    NK_CHECK(strcmp(r.msg, "malformed GetRequest") == 0);
    cres_free(&r);
    static const uint8_t garbage2[] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                                       0xff, 0xff, 0xff, 0xff, 0xff};
    call_unary(ch, "/norikv.v1.Kv/Put", garbage2, sizeof garbage2, true, 5000, &r);
    NK_CHECK_EQ_U64(r.code, GRPC_STATUS_INVALID_ARGUMENT);
    cres_free(&r);
    /* no message at all: rpc/ answers without calling the handler */
    call_unary(ch, "/norikv.v1.Kv/Get", NULL, 0, false, 5000, &r);
    NK_CHECK_EQ_U64(r.code, GRPC_STATUS_INVALID_ARGUMENT);
    NK_CHECK(strstr(r.msg, "missing") != NULL);
    cres_free(&r);
    client_close(ch);
    stop_server(s);
}

NK_TEST(oversized_request_is_invalid_argument_naming_the_limit)
{
    /* the default hard limit is 16 MiB; 4 MiB keeps this test quick */
    struct rpc_server_options o = {.hard_max_request_bytes = 4u << 20};
    struct rpc_server *s = start_server(&o);
    grpc_channel *ch = client_open(rpc_server_port(s));
    size_t lim = RPC_DEFAULT_MAX_REQUEST_BYTES;
    uint8_t *big = nk_malloc(3 * lim);
    for (size_t i = 0; i < 3 * lim; i++)
        big[i] = (uint8_t)(i * 131);
    struct cres r;

    /* exactly at the limit: served, bytes intact */
    call_unary(ch, "/nktest.Test/Echo", big, lim, true, 20000, &r);
    NK_CHECK_EQ_U64(r.code, GRPC_STATUS_OK);
    NK_CHECK(r.got_body && r.body_len == lim && memcmp(r.body, big, lim) == 0);
    cres_free(&r);

    call_unary(ch, "/nktest.Test/Echo", big, lim + 1, true, 20000, &r);
    NK_CHECK_EQ_U64(r.code, GRPC_STATUS_INVALID_ARGUMENT);
    NK_CHECK(strstr(r.msg, "2097152") != NULL);
    NK_CHECK(strstr(r.msg, "2097153") != NULL);
    cres_free(&r);

    /* beyond the core's hard limit: refused by gRPC itself */
    call_unary(ch, "/nktest.Test/Echo", big, 2 * lim + 1, true, 20000, &r);
    NK_CHECK_EQ_U64(r.code, GRPC_STATUS_RESOURCE_EXHAUSTED);
    cres_free(&r);

    /* and the server still serves */
    uint8_t buf[64];
    call_unary(ch, "/norikv.v1.Kv/Get", buf, pack_get("x", buf), true, 5000, &r);
    NK_CHECK_EQ_U64(r.code, GRPC_STATUS_OK);
    cres_free(&r);
    struct rpc_stats st;
    rpc_server_get_stats(s, &st);
    NK_CHECK_EQ_U64(st.rejected_size, 1);
    free(big);
    client_close(ch);
    stop_server(s);
}

NK_TEST(client_deadline_is_exposed_to_the_handler)
{
    struct rpc_server *s = start_server(NULL);
    grpc_channel *ch = client_open(rpc_server_port(s));
    uint8_t buf[64];
    struct cres r;
    call_unary(ch, "/norikv.v1.Kv/Get", buf, pack_get("d", buf), true, 5000, &r);
    NK_CHECK_EQ_U64(r.code, GRPC_STATUS_OK);
    cres_free(&r);
    pthread_mutex_lock(&svc.mu);
    int64_t seen = svc.deadline_seen;
    pthread_mutex_unlock(&svc.mu);
    fprintf(stderr, "  deadline seen by handler: %" PRId64 " ms of 5000\n", seen);
    /* gRPC's grpc-timeout header rounds the remaining time up to a coarser
     * unit (a few ms here), so the server may see slightly more than 5000 */
    NK_CHECK(seen > 2000 && seen <= 5100);

    call_unary(ch, "/norikv.v1.Kv/Get", buf, pack_get("d", buf), true, -1, &r);
    NK_CHECK_EQ_U64(r.code, GRPC_STATUS_OK);
    cres_free(&r);
    pthread_mutex_lock(&svc.mu);
    seen = svc.deadline_seen;
    pthread_mutex_unlock(&svc.mu);
    NK_CHECK(seen == INT64_MAX);
    client_close(ch);
    stop_server(s);
}

struct bg_call {
    int port;
    const char *method;
    uint8_t req[256];
    size_t len;
    struct cres r;
    pthread_t th;
};

static void *bg_main(void *arg)
{
    struct bg_call *b = arg;
    grpc_channel *ch = client_open(b->port);
    call_unary(ch, b->method, b->req, b->len, true, 20000, &b->r);
    client_close(ch);
    return NULL;
}

static void bg_start(struct bg_call *b, int port, const char *key)
{
    memset(b, 0, sizeof *b);
    b->port = port;
    b->method = "/norikv.v1.Kv/Put";
    b->len = pack_put(key, "v", b->req);
    pthread_create(&b->th, NULL, bg_main, b);
}

NK_TEST(calls_beyond_max_inflight_get_resource_exhausted)
{
    struct rpc_server_options o = {.max_inflight = 2};
    struct rpc_server *s = start_server(&o);
    int port = rpc_server_port(s);
    struct bg_call b[2];
    bg_start(&b[0], port, "hold");
    bg_start(&b[1], port, "hold");
    want_held = 2;
    NK_REQUIRE(svc_wait(held_reached, 10000));

    grpc_channel *ch = client_open(port);
    uint8_t buf[64];
    struct cres r;
    call_unary(ch, "/norikv.v1.Kv/Get", buf, pack_get("x", buf), true, 5000, &r);
    NK_CHECK_EQ_U64(r.code, GRPC_STATUS_RESOURCE_EXHAUSTED);
    cres_free(&r);

    /* completing the held calls frees the slots */
    pthread_mutex_lock(&svc.mu);
    for (int i = 0; i < svc.nheld; i++)
        reply_put(svc.held[i], 2, 100 + i);
    svc.nheld = 0;
    pthread_mutex_unlock(&svc.mu);
    for (int i = 0; i < 2; i++) {
        pthread_join(b[i].th, NULL);
        NK_CHECK_EQ_U64(b[i].r.code, GRPC_STATUS_OK);
        cres_free(&b[i].r);
    }
    call_unary(ch, "/norikv.v1.Kv/Get", buf, pack_get("x", buf), true, 5000, &r);
    NK_CHECK_EQ_U64(r.code, GRPC_STATUS_OK);
    cres_free(&r);
    struct rpc_stats st;
    rpc_server_get_stats(s, &st);
    NK_CHECK_EQ_U64(st.rejected_overload, 1);
    client_close(ch);
    stop_server(s);
}

static size_t pack_view(uint64_t epoch, uint8_t *buf)
{
    Norikv__V1__ClusterNode node = NORIKV__V1__CLUSTER_NODE__INIT;
    node.id = "n1";
    node.addr = "127.0.0.1:9001";
    node.role = "alive";
    Norikv__V1__ClusterNode *nodes[] = {&node};
    Norikv__V1__ClusterView v = NORIKV__V1__CLUSTER_VIEW__INIT;
    v.epoch = epoch;
    v.n_nodes = 1;
    v.nodes = nodes;
    size_t n = norikv__v1__cluster_view__get_packed_size(&v);
    norikv__v1__cluster_view__pack(&v, buf);
    return n;
}

NK_TEST(server_stream_delivers_writes_in_order_then_the_status)
{
    struct rpc_server *s = start_server(NULL);
    grpc_channel *ch = client_open(rpc_server_port(s));
    uint8_t buf[256];
    struct cstream cs;
    cstream_open(&cs, ch, "/norikv.v1.Meta/WatchCluster", buf, pack_view(0, buf));
    NK_REQUIRE(svc_wait(stream_open_pred, 10000));
    struct rpc_call *st = svc.stream;
    enum { N = 200 };
    int sent = 0;
    /* the writer races the reader; a full queue is backpressure, not loss */
    int got = 0;
    bool order_ok = true;
    while (got < N) {
        while (sent < N) {
            size_t n = pack_view((uint64_t)sent + 1, buf);
            nk_status w = rpc_stream_write(st, buf, n);
            if (w.code == NK_RESOURCE_EXHAUSTED) {
                nk_status_free(&w);
                break;
            }
            NK_REQUIRE_OK(w);
            sent++;
        }
        uint8_t *m;
        size_t len;
        NK_REQUIRE(cstream_read(&cs, &m, &len, 10000) == 1);
        Norikv__V1__ClusterView *v = norikv__v1__cluster_view__unpack(NULL, len, m);
        NK_REQUIRE(v);
        if (v->epoch != (uint64_t)got + 1)
            order_ok = false;
        norikv__v1__cluster_view__free_unpacked(v, NULL);
        free(m);
        got++;
    }
    NK_CHECK(order_ok);
    rpc_stream_finish(st, NK_CODE_OK, NULL);
    uint8_t *m;
    size_t len;
    NK_CHECK(cstream_read(&cs, &m, &len, 10000) == 0);
    NK_CHECK_EQ_U64(cstream_status(&cs, 10000), GRPC_STATUS_OK);
    NK_REQUIRE(svc_wait(stream_closed_pred, 10000));
    NK_CHECK(!svc.closed_cancelled);
    NK_CHECK(rpc_stream_closed(st));
    nk_status w = rpc_stream_write(st, buf, 1);
    NK_CHECK(w.code == NK_UNAVAILABLE);
    nk_status_free(&w);
    rpc_stream_release(st);
    cstream_close(&cs);
    client_close(ch);
    stop_server(s);
}

NK_TEST(client_cancel_of_a_stream_is_detected_and_writes_then_fail)
{
    struct rpc_server *s = start_server(NULL);
    grpc_channel *ch = client_open(rpc_server_port(s));
    uint8_t buf[256];
    struct cstream cs;
    cstream_open(&cs, ch, "/norikv.v1.Meta/WatchCluster", buf, pack_view(0, buf));
    NK_REQUIRE(svc_wait(stream_open_pred, 10000));
    struct rpc_call *st = svc.stream;
    NK_REQUIRE_OK(rpc_stream_write(st, buf, pack_view(1, buf)));
    uint8_t *m;
    size_t len;
    NK_REQUIRE(cstream_read(&cs, &m, &len, 10000) == 1);
    free(m);
    grpc_call_cancel(cs.call, NULL);
    NK_REQUIRE(svc_wait(stream_closed_pred, 10000));
    NK_CHECK(svc.closed_cancelled);
    nk_status w = rpc_stream_write(st, buf, pack_view(2, buf));
    NK_CHECK(w.code == NK_UNAVAILABLE);
    nk_status_free(&w);
    rpc_stream_release(st);
    cstream_close(&cs);
    client_close(ch);
    stop_server(s);
}

NK_TEST(stream_queue_is_bounded_when_the_client_does_not_read)
{
    struct rpc_server_options o = {.stream_queue_max = 4};
    struct rpc_server *s = start_server(&o);
    grpc_channel *ch = client_open(rpc_server_port(s));
    uint8_t buf[256];
    struct cstream cs;
    cstream_open(&cs, ch, "/norikv.v1.Meta/WatchCluster", buf, pack_view(0, buf));
    NK_REQUIRE(svc_wait(stream_open_pred, 10000));
    struct rpc_call *st = svc.stream;
    size_t big = 256 << 10;
    uint8_t *msg = nk_calloc(1, big);
    bool exhausted = false;
    /* flow control stops the sends after a few windows; the queue then fills */
    for (int i = 0; i < 2000 && !exhausted; i++) {
        nk_status w = rpc_stream_write(st, msg, big);
        if (w.code == NK_RESOURCE_EXHAUSTED)
            exhausted = true;
        else if (!nk_ok(w)) {
            fprintf(stderr, "  write: %s\n", nk_status_msg(w));
            nk_status_free(&w);
            break;
        }
        nk_status_free(&w);
    }
    NK_CHECK(exhausted);
    free(msg);
    pthread_mutex_lock(&svc.mu);
    svc.release_in_close = true; /* the owner lets go from the close callback */
    pthread_mutex_unlock(&svc.mu);
    cstream_close(&cs); /* cancels */
    NK_REQUIRE(svc_wait(stream_closed_pred, 10000));
    NK_CHECK(svc.closed_cancelled);
    client_close(ch);
    stop_server(s);
}

NK_TEST(shutdown_ends_open_streams_with_unavailable)
{
    struct rpc_server *s = start_server(NULL);
    grpc_channel *ch = client_open(rpc_server_port(s));
    uint8_t buf[256];
    struct cstream cs;
    cstream_open(&cs, ch, "/norikv.v1.Meta/WatchCluster", buf, pack_view(0, buf));
    NK_REQUIRE(svc_wait(stream_open_pred, 10000));
    struct rpc_call *st = svc.stream;
    uint64_t t0 = nk_mono_ms();
    rpc_server_shutdown(s, 10000);
    /* the stream did not hold shutdown for the grace period */
    NK_CHECK(nk_mono_ms() - t0 < 5000);
    NK_CHECK_EQ_U64(cstream_status(&cs, 10000), GRPC_STATUS_UNAVAILABLE);
    NK_CHECK(strstr((char *)GRPC_SLICE_START_PTR(cs.details), "shutting down") != NULL);
    NK_CHECK(svc.closed_count == 1 && svc.closed_cancelled);
    rpc_stream_release(st);
    cstream_close(&cs);
    client_close(ch);
    stop_server(s);
}

static void *late_reply_main(void *arg)
{
    nk_sleep_us(300000);
    reply_put(arg, 5, 55);
    return NULL;
}

NK_TEST(shutdown_lets_in_flight_calls_finish_within_the_grace)
{
    struct rpc_server *s = start_server(NULL);
    int port = rpc_server_port(s);
    struct bg_call b;
    bg_start(&b, port, "hold");
    want_held = 1;
    NK_REQUIRE(svc_wait(held_reached, 10000));
    /* complete the held call 300 ms into a 10 s grace */
    struct rpc_call *held = svc.held[0];
    pthread_t t;
    pthread_create(&t, NULL, late_reply_main, held);
    uint64_t t0 = nk_mono_ms();
    rpc_server_shutdown(s, 10000);
    uint64_t took = nk_mono_ms() - t0;
    pthread_join(t, NULL);
    pthread_join(b.th, NULL);
    NK_CHECK_EQ_U64(b.r.code, GRPC_STATUS_OK);
    NK_CHECK(took >= 250 && took < 5000);
    fprintf(stderr, "  shutdown took %" PRIu64 " ms\n", took);
    cres_free(&b.r);
    /* new calls after shutdown are refused */
    grpc_channel *ch = client_open(port);
    uint8_t buf[64];
    struct cres r;
    call_unary(ch, "/norikv.v1.Kv/Get", buf, pack_get("x", buf), true, 2000, &r);
    NK_CHECK_EQ_U64(r.code, GRPC_STATUS_UNAVAILABLE);
    cres_free(&r);
    client_close(ch);
    stop_server(s);
}

NK_TEST(shutdown_ends_calls_held_past_the_grace_and_late_replies_are_harmless)
{
    struct rpc_server *s = start_server(NULL);
    struct bg_call b;
    bg_start(&b, rpc_server_port(s), "hold");
    want_held = 1;
    NK_REQUIRE(svc_wait(held_reached, 10000));
    uint64_t t0 = nk_mono_ms();
    rpc_server_shutdown(s, 200);
    uint64_t took = nk_mono_ms() - t0;
    NK_CHECK(took >= 150 && took < 5000);
    pthread_join(b.th, NULL);
    NK_CHECK_EQ_U64(b.r.code, GRPC_STATUS_UNAVAILABLE);
    NK_CHECK(strstr(b.r.msg, "shutting down") != NULL);
    cres_free(&b.r);
    struct rpc_stats st;
    rpc_server_get_stats(s, &st);
    NK_CHECK_EQ_U64(st.forced_at_shutdown, 1);
    stop_server(s); /* the server is gone ... */
    reply_put(svc.held[0], 1, 1); /* ... and the handler's late reply is safe */
}

static bool port_taken_check(int port, const char *addr)
{
    struct rpc_server_options o = {.addr = addr};
    struct rpc_server *s2;
    nk_status st = rpc_server_create(&o, &s2);
    NK_ASSERT(nk_ok(st));
    st = rpc_server_start(s2);
    char want[64];
    snprintf(want, sizeof want, "127.0.0.1:%d", port);
    bool ok = !nk_ok(st) && st.code == NK_UNAVAILABLE && strstr(nk_status_msg(st), want) &&
              strstr(nk_status_msg(st), "in use");
    if (!ok)
        fprintf(stderr, "  start on %s: %s\n", addr, nk_status_msg(st));
    nk_status_free(&st);
    rpc_server_destroy(s2);
    return ok;
}

NK_TEST(a_taken_address_is_an_error_naming_it)
{
    /* taken by a plain socket */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    NK_REQUIRE(bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0);
    NK_REQUIRE(listen(fd, 4) == 0);
    socklen_t sl = sizeof sa;
    getsockname(fd, (struct sockaddr *)&sa, &sl);
    int port = ntohs(sa.sin_port);
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
    NK_CHECK(port_taken_check(port, addr));
    close(fd);

    /* taken by another rpc server (no SO_REUSEPORT sharing) */
    struct rpc_server *s = start_server(NULL);
    port = rpc_server_port(s);
    snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
    NK_CHECK(port_taken_check(port, addr));
    stop_server(s);

    /* an address that cannot be resolved is named too */
    struct rpc_server_options o = {.addr = "no-such-host.invalid:1"};
    struct rpc_server *s2;
    NK_REQUIRE_OK(rpc_server_create(&o, &s2));
    nk_status st = rpc_server_start(s2);
    NK_CHECK(st.code == NK_UNAVAILABLE && strstr(nk_status_msg(st), "no-such-host.invalid:1"));
    fprintf(stderr, "  %s\n", nk_status_msg(st));
    nk_status_free(&st);
    rpc_server_destroy(s2);
}

NK_TEST(method_registration_rejects_bad_and_duplicate_names)
{
    struct rpc_server_options o = {.addr = "127.0.0.1:0", .workers = 1};
    struct rpc_server *s;
    NK_REQUIRE_OK(rpc_server_create(&o, &s));
    const char *bad[] = {"Put", "/norikv.v1.Kv", "//Put", "/norikv.v1.Kv/", "/a b/C", "/a/b/c"};
    for (size_t i = 0; i < NK_ARRAY_LEN(bad); i++) {
        struct rpc_method m = {bad[i], RPC_UNARY, h_echo, NULL, NULL};
        nk_status st = rpc_server_add_method(s, &m);
        NK_CHECK(st.code == NK_INVALID_ARGUMENT);
        nk_status_free(&st);
    }
    struct rpc_method m = {"/nktest.Test/Echo", RPC_UNARY, h_echo, NULL, NULL};
    NK_REQUIRE_OK(rpc_server_add_method(s, &m));
    nk_status st = rpc_server_add_method(s, &m);
    NK_CHECK(st.code == NK_ALREADY_EXISTS);
    nk_status_free(&st);
    struct rpc_server_options bado = {.addr = "127.0.0.1:0", .workers = 3};
    struct rpc_server *s3 = NULL;
    st = rpc_server_create(&bado, &s3);
    NK_CHECK(st.code == NK_INVALID_ARGUMENT && s3 == NULL);
    nk_status_free(&st);
    rpc_server_destroy(s); /* never started */
}

NK_TEST(request_bytes_in_flight_are_bounded)
{
    /* also: a tiny gRPC memory quota (soft) does not break ordinary calls */
    struct rpc_server_options o = {.max_inflight_bytes = 1000, .memory_quota_bytes = 1 << 20};
    struct rpc_server *s = start_server(&o);
    int port = rpc_server_port(s);
    char big[900];
    memset(big, 'v', sizeof big - 1);
    big[sizeof big - 1] = 0;
    struct bg_call b;
    memset(&b, 0, sizeof b);
    b.port = port;
    b.method = "/norikv.v1.Kv/Put";
    Norikv__V1__PutRequest p = NORIKV__V1__PUT_REQUEST__INIT;
    p.key.data = (uint8_t *)"hold";
    p.key.len = 4;
    p.value.data = (uint8_t *)big;
    p.value.len = 200; /* a small held call fits */
    b.len = norikv__v1__put_request__pack(&p, b.req);
    pthread_create(&b.th, NULL, bg_main, &b);
    want_held = 1;
    NK_REQUIRE(svc_wait(held_reached, 10000));

    grpc_channel *ch = client_open(port);
    uint8_t buf[1024];
    struct cres r;
    /* ~210 held + ~905 bytes would pass 1000: refused */
    call_unary(ch, "/norikv.v1.Kv/Put", buf, pack_put("k1", big, buf), true, 5000, &r);
    NK_CHECK_EQ_U64(r.code, GRPC_STATUS_RESOURCE_EXHAUSTED);
    cres_free(&r);
    /* a small one still fits */
    call_unary(ch, "/norikv.v1.Kv/Put", buf, pack_put("k2", "v", buf), true, 5000, &r);
    NK_CHECK_EQ_U64(r.code, GRPC_STATUS_OK);
    cres_free(&r);
    pthread_mutex_lock(&svc.mu);
    reply_put(svc.held[0], 1, 1);
    svc.nheld = 0;
    pthread_mutex_unlock(&svc.mu);
    pthread_join(b.th, NULL);
    NK_CHECK_EQ_U64(b.r.code, GRPC_STATUS_OK);
    cres_free(&b.r);
    call_unary(ch, "/norikv.v1.Kv/Put", buf, pack_put("k3", big, buf), true, 5000, &r);
    NK_CHECK_EQ_U64(r.code, GRPC_STATUS_OK);
    cres_free(&r);
    client_close(ch);
    stop_server(s);
}

NK_TEST(a_reply_after_the_client_deadline_is_harmless_and_frees_the_slot)
{
    struct rpc_server_options o = {.max_inflight = 1};
    struct rpc_server *s = start_server(&o);
    grpc_channel *ch = client_open(rpc_server_port(s));
    uint8_t buf[256];
    struct cres r;
    call_unary(ch, "/norikv.v1.Kv/Put", buf, pack_put("hold", "v", buf), true, 200, &r);
    NK_CHECK_EQ_U64(r.code, GRPC_STATUS_DEADLINE_EXCEEDED);
    cres_free(&r);
    want_held = 1;
    NK_REQUIRE(svc_wait(held_reached, 10000));
    /* The server's deadline is the client's timeout counted from when the
     * request arrived, so it may end a little after the client gave up. */
    for (int i = 0; i < 200 && rpc_call_deadline_ms(svc.held[0]) > 0; i++)
        nk_sleep_us(10000);
    NK_CHECK(rpc_call_deadline_ms(svc.held[0]) <= 0);
    pthread_mutex_lock(&svc.mu);
    reply_put(svc.held[0], 1, 1);
    svc.nheld = 0;
    pthread_mutex_unlock(&svc.mu);
    /* the only in-flight slot is free again */
    call_unary(ch, "/norikv.v1.Kv/Get", buf, pack_get("x", buf), true, 5000, &r);
    NK_CHECK_EQ_U64(r.code, GRPC_STATUS_OK);
    cres_free(&r);
    client_close(ch);
    stop_server(s);
}

NK_TEST(stream_handler_can_fail_a_bad_request_and_release_at_once)
{
    struct rpc_server *s = start_server(NULL);
    grpc_channel *ch = client_open(rpc_server_port(s));
    static const uint8_t garbage[] = {0x12, 0x50, 0x01};
    struct cstream cs;
    cstream_open(&cs, ch, "/norikv.v1.Meta/WatchCluster", garbage, sizeof garbage);
    uint8_t *m;
    size_t len;
    NK_CHECK(cstream_read(&cs, &m, &len, 10000) == 0);
    NK_CHECK_EQ_U64(cstream_status(&cs, 10000), GRPC_STATUS_INVALID_ARGUMENT);
    cstream_close(&cs);

    /* a second watcher is refused the same way while one is open */
    uint8_t buf[256];
    struct cstream first, second;
    cstream_open(&first, ch, "/norikv.v1.Meta/WatchCluster", buf, pack_view(0, buf));
    NK_REQUIRE(svc_wait(stream_open_pred, 10000));
    cstream_open(&second, ch, "/norikv.v1.Meta/WatchCluster", buf, pack_view(0, buf));
    NK_CHECK_EQ_U64(cstream_status(&second, 10000), GRPC_STATUS_RESOURCE_EXHAUSTED);
    cstream_close(&second);
    struct rpc_call *st = svc.stream;
    rpc_stream_release(st); /* finishes it OK */
    NK_CHECK_EQ_U64(cstream_status(&first, 10000), GRPC_STATUS_OK);
    cstream_close(&first);
    stop_server(s); /* joins the workers: every close has been processed */
    /* streams released by their handler never reach on_closed (which would
     * release them a second time) */
    NK_CHECK_EQ_U64(svc.closed_foreign, 0);
    client_close(ch);
}

NK_TEST(two_workers_serve_unary_and_stream_calls)
{
    struct rpc_server_options o = {.workers = 2};
    struct rpc_server *s = start_server(&o);
    struct load_arg a = {rpc_server_port(s), 0, 100, 0};
    load_main(&a);
    NK_CHECK_EQ_U64(a.bad, 0);
    grpc_channel *ch = client_open(rpc_server_port(s));
    uint8_t buf[256];
    struct cstream cs;
    cstream_open(&cs, ch, "/norikv.v1.Meta/WatchCluster", buf, pack_view(0, buf));
    NK_REQUIRE(svc_wait(stream_open_pred, 10000));
    struct rpc_call *st = svc.stream;
    NK_REQUIRE_OK(rpc_stream_write(st, buf, pack_view(5, buf)));
    rpc_stream_finish(st, NK_CODE_OK, NULL);
    uint8_t *m;
    size_t len;
    NK_CHECK(cstream_read(&cs, &m, &len, 10000) == 1);
    free(m);
    NK_CHECK(cstream_read(&cs, &m, &len, 10000) == 0);
    NK_CHECK_EQ_U64(cstream_status(&cs, 10000), GRPC_STATUS_OK);
    rpc_stream_release(st);
    cstream_close(&cs);
    client_close(ch);
    stop_server(s);
}

struct writer_arg {
    struct rpc_call *st;
    int id, count, failed;
};

static void *writer_main(void *arg)
{
    struct writer_arg *w = arg;
    uint8_t buf[256];
    for (int i = 0; i < w->count; i++) {
        size_t n = pack_view((uint64_t)w->id * 1000000 + (uint64_t)i, buf);
        for (;;) {
            nk_status st = rpc_stream_write(w->st, buf, n);
            if (nk_ok(st))
                break;
            bool full = st.code == NK_RESOURCE_EXHAUSTED;
            nk_status_free(&st);
            if (!full) {
                w->failed++;
                return NULL;
            }
            nk_sleep_us(200); /* backpressure: the client is behind */
        }
    }
    return NULL;
}

NK_TEST(stream_writes_from_many_threads_all_arrive_each_in_its_order)
{
    struct rpc_server_options o = {.stream_queue_max = 8, .workers = 2};
    struct rpc_server *s = start_server(&o);
    grpc_channel *ch = client_open(rpc_server_port(s));
    uint8_t buf[256];
    struct cstream cs;
    cstream_open(&cs, ch, "/norikv.v1.Meta/WatchCluster", buf, pack_view(0, buf));
    NK_REQUIRE(svc_wait(stream_open_pred, 10000));
    struct rpc_call *st = svc.stream;
    enum { W = 4, PER = 150 };
    struct writer_arg wa[W];
    pthread_t th[W];
    for (int i = 0; i < W; i++) {
        wa[i] = (struct writer_arg){st, i + 1, PER, 0};
        pthread_create(&th[i], NULL, writer_main, &wa[i]);
    }
    int next[W + 1] = {0};
    bool order_ok = true;
    for (int got = 0; got < W * PER; got++) {
        uint8_t *m;
        size_t len;
        if (cstream_read(&cs, &m, &len, 10000) != 1) {
            NK_CHECK(!"stream ended early");
            break;
        }
        Norikv__V1__ClusterView *v = norikv__v1__cluster_view__unpack(NULL, len, m);
        free(m);
        NK_REQUIRE(v);
        int id = (int)(v->epoch / 1000000), seq = (int)(v->epoch % 1000000);
        norikv__v1__cluster_view__free_unpacked(v, NULL);
        NK_REQUIRE(id >= 1 && id <= W);
        if (seq != next[id])
            order_ok = false;
        next[id] = seq + 1;
    }
    for (int i = 0; i < W; i++) {
        pthread_join(th[i], NULL);
        NK_CHECK_EQ_U64(wa[i].failed, 0);
        NK_CHECK_EQ_U64(next[i + 1], PER);
    }
    NK_CHECK(order_ok);
    rpc_stream_finish(st, NK_CODE_OK, NULL);
    NK_CHECK_EQ_U64(cstream_status(&cs, 10000), GRPC_STATUS_OK);
    rpc_stream_release(st);
    cstream_close(&cs);
    client_close(ch);
    stop_server(s);
}

/*
 * An idle watch stream of a client that pings as often as gRPC lets it (once
 * a second). With `cut_expected`, returns whether the server cut the stream
 * within 15 s; otherwise whether it is still open after 5 s and delivers.
 */
static bool idle_stream_with_pings(uint32_t server_min_ping_ms, bool cut_expected)
{
    struct rpc_server_options o = {.min_client_ping_interval_ms = server_min_ping_ms};
    struct rpc_server *s = start_server(&o);
    grpc_channel *ch = client_open_pinging(rpc_server_port(s), 300);
    uint8_t buf[256];
    struct cstream cs;
    cstream_open(&cs, ch, "/norikv.v1.Meta/WatchCluster", buf, pack_view(0, buf));
    NK_ASSERT(svc_wait(stream_open_pred, 10000));
    struct rpc_call *st = svc.stream;
    bool result;
    if (cut_expected) {
        result = svc_wait(stream_closed_pred, 15000);
    } else {
        nk_sleep_us(5000000);
        nk_status w = rpc_stream_write(st, buf, pack_view(1, buf));
        result = nk_ok(w);
        nk_status_free(&w);
        uint8_t *m;
        size_t len;
        if (result) {
            int r = cstream_read(&cs, &m, &len, 5000);
            result = r == 1;
            if (r == 1)
                free(m);
        }
    }
    rpc_stream_release(st);
    cstream_close(&cs);
    client_close(ch);
    stop_server(s);
    return result;
}

NK_TEST(idle_watch_streams_survive_frequent_client_keepalive_pings)
{
    /* gRPC's own policy (one ping per 5 min without data) cuts the stream
     * with GOAWAY too_many_pings: this is what the option is for */
    NK_CHECK(idle_stream_with_pings(300000, true));
    NK_CHECK(idle_stream_with_pings(100, false));
}

struct racer {
    int port, id;
    uint64_t ok, unavailable, other;
    _Atomic bool *stop;
};

static void *racer_main(void *arg)
{
    struct racer *r = arg;
    grpc_channel *ch = client_open(r->port);
    for (int i = 0; !atomic_load(r->stop); i++) {
        char key[32];
        snprintf(key, sizeof key, "k%d", r->id * 100000 + i);
        uint8_t buf[256];
        struct cres c;
        call_unary(ch, "/norikv.v1.Kv/Put", buf, pack_put(key, "v", buf), true, 5000, &c);
        if (c.code == GRPC_STATUS_OK)
            r->ok++;
        else if (c.code == GRPC_STATUS_UNAVAILABLE || c.code == GRPC_STATUS_CANCELLED)
            r->unavailable++;
        else
            r->other++;
        cres_free(&c);
        if (c.code != GRPC_STATUS_OK)
            nk_sleep_us(1000); /* the server is going away; do not spin */
    }
    client_close(ch);
    return NULL;
}

NK_TEST(shutdown_racing_with_async_replies_completes_every_call_once)
{
    struct nk_rng rng;
    nk_rng_seed(&rng, nk_test_seed());
    for (int round = 0; round < 4; round++) {
        struct rpc_server_options o = {.workers = 1 + (int)nk_rng_uniform(&rng, 2)};
        struct rpc_server *s = start_server(&o);
        svc.apply_delay_us = (uint32_t)nk_rng_uniform(&rng, 3000);
        enum { R = 8 };
        _Atomic bool stop = false;
        struct racer rs[R];
        pthread_t th[R];
        for (int i = 0; i < R; i++) {
            rs[i] = (struct racer){rpc_server_port(s), i, 0, 0, 0, &stop};
            pthread_create(&th[i], NULL, racer_main, &rs[i]);
        }
        /* traffic first (connecting is slow under ASan), then a random moment */
        for (int w = 0; w < 10000 && atomic_load(&svc.replied) < 20; w++)
            nk_sleep_us(1000);
        nk_sleep_us(nk_rng_uniform(&rng, 100000));
        /* often shorter than the apply thread's backlog: forces calls */
        uint32_t grace = (uint32_t)nk_rng_uniform(&rng, 8);
        uint64_t t0 = nk_mono_ms();
        rpc_server_shutdown(s, grace);
        uint64_t took = nk_mono_ms() - t0;
        struct rpc_stats st;
        rpc_server_get_stats(s, &st);
        rpc_server_destroy(s); /* the apply thread may still reply to forced calls */
        atomic_store(&stop, true);
        uint64_t ok = 0, unav = 0, other = 0;
        for (int i = 0; i < R; i++) {
            pthread_join(th[i], NULL);
            ok += rs[i].ok;
            unav += rs[i].unavailable;
            other += rs[i].other;
        }
        svc_stop(); /* drains: every queued call is replied to */
        uint64_t queued = atomic_load(&svc.queued), replied = atomic_load(&svc.replied);
        fprintf(stderr,
                "  round %d: workers %d, delay %u us, grace %u ms, shutdown %" PRIu64
                " ms: %" PRIu64 " ok, %" PRIu64 " unavailable, %" PRIu64 " forced, %" PRIu64
                " handled\n",
                round, o.workers, svc.apply_delay_us, grace, took, ok, unav,
                st.forced_at_shutdown, st.calls);
        NK_CHECK_EQ_U64(other, 0);
        NK_CHECK(ok > 0);
        NK_CHECK_EQ_U64(queued, st.calls);
        NK_CHECK_EQ_U64(replied, queued);
        NK_CHECK(ok + st.forced_at_shutdown <= st.calls);
        svc_reset(); /* start_server resets again; keep the apply thread paired */
        svc_stop();
    }
}

NK_TEST(default_limits_answer_invalid_argument_well_beyond_2_mib)
{
    struct rpc_server *s = start_server(NULL);
    grpc_channel *ch = client_open(rpc_server_port(s));
    size_t n = 5u << 20; /* what a client might send as a "too large value" */
    uint8_t *big = nk_calloc(1, n);
    struct cres r;
    call_unary(ch, "/nktest.Test/Echo", big, n, true, 20000, &r);
    NK_CHECK_EQ_U64(r.code, GRPC_STATUS_INVALID_ARGUMENT);
    NK_CHECK(strstr(r.msg, "2097152") != NULL);
    cres_free(&r);
    free(big);
    client_close(ch);
    stop_server(s);
}

NK_TEST(gzip_compressed_requests_reach_the_handler_decompressed)
{
    struct rpc_server *s = start_server(NULL);
    grpc_init();
    char target[64];
    snprintf(target, sizeof target, "127.0.0.1:%d", rpc_server_port(s));
    grpc_arg a = {GRPC_ARG_INTEGER, (char *)GRPC_COMPRESSION_CHANNEL_DEFAULT_ALGORITHM,
                  {.integer = GRPC_COMPRESS_GZIP}};
    grpc_channel_args args = {1, &a};
    grpc_channel_credentials *cr = grpc_insecure_credentials_create();
    grpc_channel *ch = grpc_channel_create(target, cr, &args);
    grpc_channel_credentials_release(cr);
    /* compressible: 1 MiB of a repeating pattern, well under 2 MiB plain */
    size_t n = 1u << 20;
    uint8_t *req = nk_malloc(n);
    for (size_t i = 0; i < n; i++)
        req[i] = (uint8_t)"norikv"[i % 6];
    struct cres r;
    call_unary(ch, "/nktest.Test/Echo", req, n, true, 20000, &r);
    NK_CHECK_EQ_U64(r.code, GRPC_STATUS_OK);
    NK_CHECK(r.got_body && r.body_len == n && memcmp(r.body, req, n) == 0);
    cres_free(&r);
    /* 3 MiB plain compresses to little, but the limit is on the plain size */
    size_t m = 3u << 20;
    req = nk_realloc(req, m);
    for (size_t i = 0; i < m; i++)
        req[i] = (uint8_t)"norikv"[i % 6];
    call_unary(ch, "/nktest.Test/Echo", req, m, true, 20000, &r);
    NK_CHECK_EQ_U64(r.code, GRPC_STATUS_INVALID_ARGUMENT);
    cres_free(&r);
    free(req);
    client_close(ch);
    stop_server(s);
}

NK_TEST(protobuf_messages_packed_by_rpc_arrive_intact)
{
    struct rpc_server *s = start_server(NULL);
    grpc_channel *ch = client_open(rpc_server_port(s));
    uint8_t buf[256];
    struct cres r;
    call_unary(ch, "/norikv.v1.Kv/Get", buf, pack_get("packed", buf), true, 5000, &r);
    NK_CHECK_EQ_U64(r.code, GRPC_STATUS_OK);
    NK_REQUIRE(r.got_body);
    Norikv__V1__GetResponse *g = norikv__v1__get_response__unpack(NULL, r.body_len, r.body);
    NK_REQUIRE(g);
    NK_CHECK(g->value.len == 6 && memcmp(g->value.data, "packed", 6) == 0);
    NK_CHECK(g->version && g->version->index == 6);
    norikv__v1__get_response__free_unpacked(g, NULL);
    cres_free(&r);

    struct cstream cs;
    cstream_open(&cs, ch, "/norikv.v1.Meta/WatchCluster", buf, pack_view(0, buf));
    NK_REQUIRE(svc_wait(stream_open_pred, 10000));
    struct rpc_call *st = svc.stream;
    Norikv__V1__ClusterView v = NORIKV__V1__CLUSTER_VIEW__INIT;
    v.epoch = 42;
    NK_REQUIRE_OK(rpc_stream_write_msg(st, &v.base));
    v.epoch = 0; /* an all-default message packs to zero bytes */
    NK_REQUIRE_OK(rpc_stream_write_msg(st, &v.base));
    rpc_stream_finish(st, NK_CODE_OK, NULL);
    uint8_t *m;
    size_t len;
    NK_REQUIRE(cstream_read(&cs, &m, &len, 10000) == 1);
    Norikv__V1__ClusterView *got = norikv__v1__cluster_view__unpack(NULL, len, m);
    free(m);
    NK_REQUIRE(got);
    NK_CHECK_EQ_U64(got->epoch, 42);
    norikv__v1__cluster_view__free_unpacked(got, NULL);
    NK_REQUIRE(cstream_read(&cs, &m, &len, 10000) == 1);
    NK_CHECK_EQ_U64(len, 0);
    free(m);
    NK_CHECK(cstream_read(&cs, &m, &len, 10000) == 0);
    NK_CHECK_EQ_U64(cstream_status(&cs, 10000), GRPC_STATUS_OK);
    rpc_stream_release(st);
    cstream_close(&cs);
    client_close(ch);
    stop_server(s);
}

NK_TEST(garbage_on_the_socket_does_not_disturb_other_clients)
{
    struct rpc_server *s = start_server(NULL);
    int port = rpc_server_port(s);
    struct nk_rng rng;
    nk_rng_seed(&rng, nk_test_seed());
    for (int i = 0; i < 20; i++) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in sa = {.sin_family = AF_INET,
                                 .sin_port = htons((uint16_t)port),
                                 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        NK_REQUIRE(connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0);
        uint8_t junk[512];
        size_t n = 1 + nk_rng_uniform(&rng, sizeof junk);
        for (size_t j = 0; j < n; j++)
            junk[j] = (uint8_t)nk_rng_next(&rng);
        if (i % 2) /* a valid HTTP/2 preface, then junk frames */
            memcpy(junk, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", NK_MIN(n, (size_t)24));
        ssize_t w = write(fd, junk, n);
        (void)w;
        close(fd);
    }
    grpc_channel *ch = client_open(port);
    uint8_t buf[64];
    struct cres r;
    call_unary(ch, "/norikv.v1.Kv/Get", buf, pack_get("still", buf), true, 5000, &r);
    NK_CHECK_EQ_U64(r.code, GRPC_STATUS_OK);
    cres_free(&r);
    client_close(ch);
    stop_server(s);
}
