/*
 * bench_transport.c: the peer transport between two transports in one
 * process over loopback, against a plain length-prefixed TCP stream (one
 * blocking write per frame, a reader thread with a 256 KiB buffer), which is
 * what a hand-rolled peer link usually is.
 *
 *   1. throughput: N frames of 100 B and of 64 KiB, A -> B, frames/s and MB/s;
 *   2. latency: round trips of a 64-byte RAFT frame (B echoes it) on an idle
 *      link and while A streams 1 MiB BULK payloads to B; the same pings sent
 *      in the BULK class show what one FIFO without priority would give.
 *
 * Usage: bench_transport [--frames-small N] [--frames-large N] [--pings N]
 *                        [--window BYTES]   (bulk_window_bytes, default 1 MiB)
 */
#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "transport/transport.h"

struct side {
    atomic_uint_fast64_t frames, bytes;
    struct transport *t; /* B echoes pings (first byte 'P') back on t */
    atomic_uint_fast64_t pong_seq;
};

static void on_frame(void *ctx, uint64_t from, uint8_t cls, const uint8_t *d, size_t len)
{
    struct side *s = ctx;
    if (len >= 9 && d[0] == 'P') {
        nk_status st = transport_send(s->t, from, cls, d, len);
        nk_status_free(&st);
        return;
    }
    if (len >= 9 && d[0] == 'Q') { /* the echo, back at A */
        uint64_t seq;
        memcpy(&seq, d + 1, 8);
        atomic_store(&s->pong_seq, seq);
        return;
    }
    atomic_fetch_add(&s->frames, 1);
    atomic_fetch_add(&s->bytes, len);
}

static uint32_t g_window; /* --window: bulk_window_bytes (0 = default) */

static struct transport *open_side(uint64_t id, struct side *s)
{
    struct transport_options o = {.self_id = id,
                                  .self_name = id == 1 ? "a" : "b",
                                  .listen_addr = "127.0.0.1:0",
                                  .cluster_id = 1,
                                  .total_shards = 1024,
                                  .on_frame = on_frame,
                                  .bulk_window_bytes = g_window,
                                  .ctx = s};
    struct transport *t;
    nk_status st = transport_open(&o, &t);
    if (!nk_ok(st)) {
        fprintf(stderr, "transport_open: %s\n", nk_status_msg(st));
        exit(1);
    }
    s->t = t;
    return t;
}

static double now_s(void)
{
    return (double)nk_mono_ns() / 1e9;
}

static void send_retry(struct transport *t, uint64_t to, uint8_t cls, const void *p, size_t len)
{
    for (;;) {
        nk_status s = transport_send(t, to, cls, p, len);
        if (nk_ok(s))
            return;
        if (s.code != NK_RESOURCE_EXHAUSTED) {
            fprintf(stderr, "send: %s\n", nk_status_msg(s));
            exit(1);
        }
        nk_status_free(&s);
        sched_yield();
    }
}

static void throughput_nori(struct transport *a, struct side *sb, size_t size, uint64_t n,
                            double *fps, double *mbs)
{
    uint8_t *buf = calloc(1, size);
    uint64_t f0 = atomic_load(&sb->frames);
    double t0 = now_s();
    for (uint64_t i = 0; i < n; i++)
        send_retry(a, 2, size > 4096 ? TRANSPORT_CLASS_BULK : TRANSPORT_CLASS_RAFT, buf, size);
    while (atomic_load(&sb->frames) - f0 < n)
        sched_yield();
    double dt = now_s() - t0;
    *fps = (double)n / dt;
    *mbs = (double)n * (double)size / dt / 1e6;
    free(buf);
}

/* ---------------------------------------------------- plain TCP baseline */

struct plain_rx {
    int fd;
    uint64_t want;
    uint64_t got;
};

static void *plain_reader(void *arg)
{
    struct plain_rx *r = arg;
    size_t cap = 256u << 10, have = 0;
    uint8_t *buf = malloc(cap);
    uint8_t *big = NULL;
    while (r->got < r->want) {
        ssize_t n = recv(r->fd, buf + have, cap - have, 0);
        if (n <= 0)
            break;
        have += (size_t)n;
        size_t off = 0;
        while (have - off >= 4) {
            uint32_t len;
            memcpy(&len, buf + off, 4);
            if (have - off < 4 + (size_t)len) {
                if (4 + (size_t)len > cap) { /* frame larger than the buffer */
                    big = realloc(big, 4 + len);
                    (void)big;
                }
                break;
            }
            off += 4 + len;
            r->got++;
        }
        memmove(buf, buf + off, have - off);
        have -= off;
        if (have == cap) {
            cap *= 2;
            buf = realloc(buf, cap);
        }
    }
    free(buf);
    free(big);
    return NULL;
}

static void throughput_plain(size_t size, uint64_t n, double *fps, double *mbs)
{
    int ls = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    bind(ls, (struct sockaddr *)&sa, sizeof sa);
    socklen_t sl = sizeof sa;
    getsockname(ls, (struct sockaddr *)&sa, &sl);
    listen(ls, 1);
    int c = socket(AF_INET, SOCK_STREAM, 0);
    connect(c, (struct sockaddr *)&sa, sizeof sa);
    int s = accept(ls, NULL, NULL);
    int one = 1;
    setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct plain_rx r = {.fd = s, .want = n};
    pthread_t th;
    pthread_create(&th, NULL, plain_reader, &r);
    uint8_t *buf = calloc(1, size + 4);
    uint32_t l = (uint32_t)size;
    memcpy(buf, &l, 4);
    double t0 = now_s();
    for (uint64_t i = 0; i < n; i++) {
        size_t off = 0;
        while (off < size + 4) {
            ssize_t w = write(c, buf + off, size + 4 - off);
            if (w < 0 && errno != EINTR) {
                perror("write");
                exit(1);
            }
            if (w > 0)
                off += (size_t)w;
        }
    }
    pthread_join(th, NULL);
    double dt = now_s() - t0;
    *fps = (double)n / dt;
    *mbs = (double)n * (double)size / dt / 1e6;
    free(buf);
    close(c);
    close(s);
    close(ls);
}

/* ---------------------------------------------------------------- latency */

struct bulk_pump {
    struct transport *t;
    atomic_bool stop;
};

static void *pump(void *arg)
{
    struct bulk_pump *p = arg;
    size_t size = 1u << 20;
    uint8_t *buf = calloc(1, size);
    while (!atomic_load(&p->stop)) {
        nk_status s = transport_send(p->t, 2, TRANSPORT_CLASS_BULK, buf, size);
        if (!nk_ok(s))
            nk_sleep_us(200);
        nk_status_free(&s);
    }
    free(buf);
    return NULL;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* round trips of 64-byte pings in class cls; B echoes with 'P' -> A sees it
 * as a 'P' frame too, so A's on_frame would echo again: use 'Q' replies */
static void pings(struct transport *a, struct side *sa, uint8_t cls, int n, double *p50,
                  double *p99)
{
    double *rtt = malloc(sizeof(double) * (size_t)n);
    uint8_t msg[64] = {'P'};
    for (int i = 0; i < n; i++) {
        uint64_t seq = (uint64_t)i + 1000000 * (uint64_t)(cls + 1);
        memcpy(msg + 1, &seq, 8);
        double t0 = now_s();
        send_retry(a, 2, cls, msg, sizeof msg);
        while (atomic_load(&sa->pong_seq) != seq) {
            if (now_s() - t0 > 10) {
                fprintf(stderr, "ping %d lost\n", i);
                break;
            }
        }
        rtt[i] = (now_s() - t0) * 1e6;
        nk_sleep_us(500);
    }
    qsort(rtt, (size_t)n, sizeof *rtt, cmp_d);
    *p50 = rtt[n / 2];
    *p99 = rtt[(size_t)((double)n * 0.99)];
    free(rtt);
}

/* B's echo: rewrite 'P' to 'Q' (so A does not echo it again) */
static void on_frame_b(void *ctx, uint64_t from, uint8_t cls, const uint8_t *d, size_t len)
{
    struct side *s = ctx;
    if (len == 64 && d[0] == 'P') {
        uint8_t r[64];
        memcpy(r, d, 64);
        r[0] = 'Q';
        nk_status st = transport_send(s->t, from, cls, r, 64);
        nk_status_free(&st);
        return;
    }
    on_frame(ctx, from, cls, d, len);
}

int main(int argc, char **argv)
{
    uint64_t n_small = 2000000, n_large = 20000;
    int n_pings = 2000;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--frames-small"))
            n_small = strtoull(argv[i + 1], NULL, 0);
        else if (!strcmp(argv[i], "--frames-large"))
            n_large = strtoull(argv[i + 1], NULL, 0);
        else if (!strcmp(argv[i], "--pings"))
            n_pings = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--window"))
            g_window = (uint32_t)strtoul(argv[i + 1], NULL, 0);
    }
    nk_log_set_level(NK_LOG_WARN);
    static struct side sa, sb;
    struct transport *a = open_side(1, &sa);
    struct transport_options ob = {.self_id = 2,
                                   .self_name = "b",
                                   .listen_addr = "127.0.0.1:0",
                                   .cluster_id = 1,
                                   .total_shards = 1024,
                                   .on_frame = on_frame_b,
                                   .bulk_window_bytes = g_window,
                                   .ctx = &sb};
    struct transport *b;
    nk_status st = transport_open(&ob, &b);
    if (!nk_ok(st))
        return 1;
    sb.t = b;
    transport_add_peer(a, 2, transport_listen_addr(b));
    transport_add_peer(b, 1, transport_listen_addr(a));
    while (!transport_peer_up(a, 2) || !transport_peer_up(b, 1))
        nk_sleep_us(1000);

    printf("peer transport over loopback, one process, 2 transports (2 epoll threads), "
           "bulk window %u bytes\n\n",
           g_window ? g_window : (1u << 20));
    printf("| frames | NoriKV transport frames/s | MB/s | plain TCP (write per frame) frames/s "
           "| MB/s | ratio |\n");
    printf("|---|---:|---:|---:|---:|---:|\n");
    struct {
        size_t size;
        uint64_t n;
    } cases[2] = {{100, n_small}, {64u << 10, n_large}};
    for (int k = 0; k < 2; k++) {
        double f1, m1, f2, m2;
        throughput_nori(a, &sb, cases[k].size, cases[k].n, &f1, &m1);
        throughput_plain(cases[k].size, cases[k].n, &f2, &m2);
        printf("| %llu x %zu B | %.0f | %.1f | %.0f | %.1f | %.2f |\n",
               (unsigned long long)cases[k].n, cases[k].size, f1, m1, f2, m2, f1 / f2);
        fflush(stdout);
    }

    double p50, p99, q50, q99, r50, r99;
    pings(a, &sa, TRANSPORT_CLASS_RAFT, n_pings, &p50, &p99);
    struct bulk_pump bp = {.t = a};
    pthread_t th;
    pthread_create(&th, NULL, pump, &bp);
    nk_sleep_us(200000);
    pings(a, &sa, TRANSPORT_CLASS_RAFT, n_pings, &q50, &q99);
    pings(a, &sa, TRANSPORT_CLASS_BULK, n_pings / 10, &r50, &r99);
    atomic_store(&bp.stop, true);
    pthread_join(th, NULL);
    printf("\n| 64 B round trip (µs) | p50 | p99 |\n|---|---:|---:|\n");
    printf("| idle link, RAFT class | %.0f | %.0f |\n", p50, p99);
    printf("| 1 MiB BULK payloads streaming, RAFT class | %.0f | %.0f |\n", q50, q99);
    printf("| 1 MiB BULK payloads streaming, pings queued as BULK (one FIFO, no priority) "
           "| %.0f | %.0f |\n",
           r50, r99);
    transport_close(a);
    transport_close(b);
    return 0;
}
