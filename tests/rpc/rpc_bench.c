/*
 * rpc_bench: what the rpc layer alone costs per call (by hand, not a test).
 *
 *   rpc_bench [sync|async] [concurrency=64] [seconds=5] [workers=1] [bytes=300]
 *
 * Starts an rpc server on 127.0.0.1:0 with one method that answers each
 * request with a same-size response, either inside the handler (sync) or
 * from a separate "apply" thread that takes queued calls in batches (async,
 * the path of a Put). A client process (forked before gRPC starts, so that
 * the two do not share gRPC's pollers) keeps `concurrency` calls in flight
 * over 4 channels from one thread with the gRPC C core async API and prints
 * calls/s, p50 and p99; the server process reports the CPU time it spent per
 * call (user + system, all its threads), the number that does not depend on
 * what else the machine is doing.
 */
#include <grpc/byte_buffer.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/time.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "rpc/rpc.h"
#include "util/util.h"

#define QMAX 65536

static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct rpc_call *q[QMAX];
    size_t qlen[QMAX];
    int qn;
    bool stop;
} ap = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

static uint8_t reply_buf[1 << 20];

static void h_sync(void *ctx, struct rpc_call *c, struct nk_slice req)
{
    rpc_call_reply(c, reply_buf, req.len);
}

static void h_async(void *ctx, struct rpc_call *c, struct nk_slice req)
{
    pthread_mutex_lock(&ap.mu);
    if (ap.qn == QMAX) {
        pthread_mutex_unlock(&ap.mu);
        rpc_call_fail(c, NK_RESOURCE_EXHAUSTED, "queue full", NULL, 0);
        return;
    }
    ap.qlen[ap.qn] = req.len;
    ap.q[ap.qn++] = c;
    if (ap.qn == 1)
        pthread_cond_signal(&ap.cv);
    pthread_mutex_unlock(&ap.mu);
}

static void *apply_main(void *arg)
{
    static struct rpc_call *batch[QMAX];
    static size_t lens[QMAX];
    pthread_mutex_lock(&ap.mu);
    while (!ap.stop) {
        if (!ap.qn) {
            pthread_cond_wait(&ap.cv, &ap.mu);
            continue;
        }
        int n = ap.qn;
        memcpy(batch, ap.q, n * sizeof *batch);
        memcpy(lens, ap.qlen, n * sizeof *lens);
        ap.qn = 0;
        pthread_mutex_unlock(&ap.mu);
        for (int i = 0; i < n; i++)
            rpc_call_reply(batch[i], reply_buf, lens[i]);
        pthread_mutex_lock(&ap.mu);
    }
    pthread_mutex_unlock(&ap.mu);
    return NULL;
}

struct slot {
    grpc_call *call;
    grpc_byte_buffer *req; /* one per call: sending consumes a byte buffer */
    grpc_metadata_array imd, tmd;
    grpc_byte_buffer *resp;
    grpc_status_code st;
    grpc_slice details;
    uint64_t t0;
};

static grpc_slice req_slice;
static size_t req_len;
static const char *method;

static void issue(grpc_channel *ch, grpc_completion_queue *cq, struct slot *s)
{
    memset(s, 0, sizeof *s);
    s->call = grpc_channel_create_call(ch, NULL, GRPC_PROPAGATE_DEFAULTS, cq,
                                       grpc_slice_from_static_string(method), NULL,
                                       gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    grpc_metadata_array_init(&s->imd);
    grpc_metadata_array_init(&s->tmd);
    grpc_op ops[6];
    memset(ops, 0, sizeof ops);
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    s->req = grpc_raw_byte_buffer_create(&req_slice, 1); /* refs the slice */
    ops[1].data.send_message.send_message = s->req;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &s->imd;
    ops[4].op = GRPC_OP_RECV_MESSAGE;
    ops[4].data.recv_message.recv_message = &s->resp;
    ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[5].data.recv_status_on_client.trailing_metadata = &s->tmd;
    ops[5].data.recv_status_on_client.status = &s->st;
    ops[5].data.recv_status_on_client.status_details = &s->details;
    s->t0 = nk_mono_ns();
    NK_ASSERT(grpc_call_start_batch(s->call, ops, 6, s, NULL) == GRPC_CALL_OK);
}

static void finish(struct slot *s)
{
    grpc_byte_buffer_destroy(s->req);
    if (s->resp)
        grpc_byte_buffer_destroy(s->resp);
    grpc_slice_unref(s->details);
    grpc_metadata_array_destroy(&s->imd);
    grpc_metadata_array_destroy(&s->tmd);
    grpc_call_unref(s->call);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static double cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

/* The client process: returns calls measured, prints the numbers. */
static int run_client(int port, bool async, int conc, int secs, size_t bytes, int result_fd)
{
    method = async ? "/bench.B/Async" : "/bench.B/Sync";
    grpc_init();
    char target[64];
    snprintf(target, sizeof target, "127.0.0.1:%d", port);
    grpc_channel_credentials *cr = grpc_insecure_credentials_create();
    enum { NCH = 4 };
    grpc_channel *ch[NCH];
    for (int i = 0; i < NCH; i++) {
        /* distinct channels: gRPC would otherwise share one subchannel */
        grpc_arg a = {GRPC_ARG_INTEGER, (char *)"nk.bench.channel", {.integer = i}};
        grpc_channel_args args = {1, &a};
        ch[i] = grpc_channel_create(target, cr, &args);
    }
    grpc_channel_credentials_release(cr);
    uint8_t *payload = nk_calloc(1, bytes ? bytes : 1);
    req_slice = grpc_slice_from_copied_buffer((char *)payload, bytes);
    req_len = bytes;
    free(payload);

    grpc_completion_queue *cq = grpc_completion_queue_create_for_next(NULL);
    struct slot *slots = nk_calloc((size_t)conc, sizeof *slots);
    size_t cap = 1 << 22, n = 0, errors = 0;
    uint64_t *lat = nk_malloc(cap * sizeof *lat);
    for (int i = 0; i < conc; i++)
        issue(ch[i % NCH], cq, &slots[i]);
    uint64_t start = nk_mono_ns(), warm = start + 500000000ull, end = warm + secs * 1000000000ull;
    uint64_t measured_from = 0;
    bool told = false;
    int outstanding = conc;
    while (outstanding) {
        grpc_event ev = grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        NK_ASSERT(ev.type == GRPC_OP_COMPLETE);
        struct slot *s = ev.tag;
        uint64_t now = nk_mono_ns();
        if (s->st != GRPC_STATUS_OK || !s->resp || grpc_byte_buffer_length(s->resp) != req_len) {
            if (!errors)
                fprintf(stderr, "first error: status %d, response %s of %zu bytes\n", (int)s->st,
                        s->resp ? "present" : "missing",
                        s->resp ? grpc_byte_buffer_length(s->resp) : (size_t)0);
            errors++;
        }
        if (now >= warm && now < end) {
            if (!measured_from) {
                measured_from = now;
                NK_ASSERT(write(result_fd, "s", 1) == 1); /* server: start measuring */
            }
            if (n < cap)
                lat[n++] = now - s->t0;
        }
        if (now >= end && !told) {
            told = true;
            NK_ASSERT(write(result_fd, "e", 1) == 1); /* server: stop measuring */
        }
        finish(s);
        if (now < end)
            issue(ch[(s - slots) % NCH], cq, s);
        else
            outstanding--;
    }
    uint64_t span = end - (measured_from ? measured_from : warm);
    qsort(lat, n, sizeof *lat, cmp_u64);
    printf("rpc_bench %s: concurrency %d, %zu-byte messages, %d s\n",
           async ? "async (reply from another thread)" : "sync (reply in the handler)", conc,
           bytes, secs);
    printf("  %.0f calls/s, p50 %.0f us, p99 %.0f us, errors %zu\n", (double)n * 1e9 / (double)span,
           n ? (double)lat[n / 2] / 1e3 : 0.0, n ? (double)lat[n * 99 / 100] / 1e3 : 0.0, errors);
    fflush(stdout);
    uint64_t calls = n;
    NK_ASSERT(write(result_fd, &calls, sizeof calls) == sizeof calls);

    grpc_completion_queue_shutdown(cq);
    while (grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
           GRPC_QUEUE_SHUTDOWN) {
    }
    grpc_completion_queue_destroy(cq);
    grpc_slice_unref(req_slice);
    for (int i = 0; i < NCH; i++)
        grpc_channel_destroy(ch[i]);
    grpc_shutdown();
    free(slots);
    free(lat);
    return errors ? 1 : 0;
}

int main(int argc, char **argv)
{
    bool async = argc > 1 && strcmp(argv[1], "async") == 0;
    int conc = argc > 2 ? atoi(argv[2]) : 64;
    int secs = argc > 3 ? atoi(argv[3]) : 5;
    int workers = argc > 4 ? atoi(argv[4]) : 1;
    size_t bytes = argc > 5 ? (size_t)atol(argv[5]) : 300;
    NK_ASSERT(conc > 0 && secs > 0 && bytes <= sizeof reply_buf);
    nk_log_set_level(NK_LOG_WARN);

    int to_client[2], to_server[2];
    NK_ASSERT(pipe(to_client) == 0 && pipe(to_server) == 0);
    pid_t pid = fork();
    NK_ASSERT(pid >= 0);
    if (pid == 0) { /* gRPC is not initialized yet in this process */
        int port;
        NK_ASSERT(read(to_client[0], &port, sizeof port) == sizeof port);
        _exit(run_client(port, async, conc, secs, bytes, to_server[1]));
    }

    struct rpc_server_options o = {.addr = "127.0.0.1:0", .workers = workers};
    struct rpc_server *srv;
    nk_status st = rpc_server_create(&o, &srv);
    NK_ASSERT(nk_ok(st));
    struct rpc_method m1 = {"/bench.B/Sync", RPC_UNARY, h_sync, NULL, NULL};
    struct rpc_method m2 = {"/bench.B/Async", RPC_UNARY, h_async, NULL, NULL};
    st = rpc_server_add_method(srv, &m1);
    NK_ASSERT(nk_ok(st));
    st = rpc_server_add_method(srv, &m2);
    NK_ASSERT(nk_ok(st));
    st = rpc_server_start(srv);
    NK_ASSERT(nk_ok(st));
    pthread_t apply;
    pthread_create(&apply, NULL, apply_main, NULL);
    int port = rpc_server_port(srv);
    NK_ASSERT(write(to_client[1], &port, sizeof port) == sizeof port);
    char c;
    NK_ASSERT(read(to_server[0], &c, 1) == 1 && c == 's');
    double cpu0 = cpu_s();
    NK_ASSERT(read(to_server[0], &c, 1) == 1 && c == 'e');
    double cpu1 = cpu_s();
    uint64_t calls = 0;
    NK_ASSERT(read(to_server[0], &calls, sizeof calls) == sizeof calls);
    int status = 0;
    waitpid(pid, &status, 0);
    printf("  server (%d workers): %.1f us CPU per call\n", workers,
           calls ? (cpu1 - cpu0) * 1e6 / (double)calls : 0.0);

    rpc_server_destroy(srv);
    pthread_mutex_lock(&ap.mu);
    ap.stop = true;
    pthread_cond_signal(&ap.cv);
    pthread_mutex_unlock(&ap.mu);
    pthread_join(apply, NULL);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}
