/*
 * transport_test.c: real transports on 127.0.0.1 in one process, and raw
 * sockets playing hostile or stuck peers.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdatomic.h>
#include <stddef.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/time.h>

#include "testlib.h"
#include "transport/transport.h"

/* ------------------------------------------------------------ the harness */

/* What one transport received. Payloads of at least 8 bytes carry a
 * sequence number (per sender and class) and a pattern derived from it. */
struct rx {
    pthread_mutex_t mu;
    uint64_t frames[2], bytes[2];
    uint64_t next_seq[8][2]; /* by sender id (< 8) */
    bool order_broken, content_broken;
    int ups, downs, refused;
    char reason[512];
    uint64_t event_peer;
};

static struct rx *rx_new(void)
{
    struct rx *r = calloc(1, sizeof *r);
    pthread_mutex_init(&r->mu, NULL);
    return r;
}

static void rx_free(struct rx *r)
{
    pthread_mutex_destroy(&r->mu);
    free(r);
}

static void fill(uint8_t *p, size_t len, uint64_t seq)
{
    if (len >= 8)
        memcpy(p, &seq, 8);
    for (size_t i = 8; i < len; i++)
        p[i] = (uint8_t)(seq * 31 + i);
}

static void on_frame(void *ctx, uint64_t from, uint8_t cls, const uint8_t *d, size_t len)
{
    struct rx *r = ctx;
    pthread_mutex_lock(&r->mu);
    r->frames[cls]++;
    r->bytes[cls] += len;
    if (len >= 8 && from < 8) {
        uint64_t seq;
        memcpy(&seq, d, 8);
        if (seq != r->next_seq[from][cls])
            r->order_broken = true;
        r->next_seq[from][cls] = seq + 1;
        for (size_t i = 8; i < len; i++)
            if (d[i] != (uint8_t)(seq * 31 + i)) {
                r->content_broken = true;
                break;
            }
    }
    pthread_mutex_unlock(&r->mu);
}

static void on_peer(void *ctx, uint64_t peer, enum transport_peer_event ev, const char *reason)
{
    struct rx *r = ctx;
    pthread_mutex_lock(&r->mu);
    if (ev == TRANSPORT_PEER_UP)
        r->ups++;
    else if (ev == TRANSPORT_PEER_DOWN)
        r->downs++;
    else
        r->refused++;
    r->event_peer = peer;
    if (reason)
        snprintf(r->reason, sizeof r->reason, "%s", reason);
    pthread_mutex_unlock(&r->mu);
}

static struct transport_options opts_for(uint64_t id, struct rx *r)
{
    struct transport_options o = {
        .self_id = id,
        .self_name = id == 1 ? "alpha" : id == 2 ? "beta" : "gamma",
        .listen_addr = "127.0.0.1:0",
        .cluster_id = 42,
        .total_shards = 1024,
        .on_frame = on_frame,
        .on_peer = on_peer,
        .ctx = r,
        .seed = id * 7919,
    };
    return o;
}

static struct transport *open_t(struct transport_options *o)
{
    struct transport *t = NULL;
    nk_status s = transport_open(o, &t);
    if (!nk_ok(s)) {
        fprintf(stderr, "transport_open: %s\n", nk_status_msg(s));
        nk_status_free(&s);
        return NULL;
    }
    return t;
}

static bool wait_for(bool (*cond)(void *), void *arg, int ms)
{
    uint64_t end = nk_mono_ms() + (uint64_t)ms;
    while (nk_mono_ms() < end) {
        if (cond(arg))
            return true;
        nk_sleep_us(2000);
    }
    return cond(arg);
}

struct pair_arg {
    struct transport *t;
    uint64_t id;
};
static bool peer_up_cond(void *a)
{
    struct pair_arg *p = a;
    return transport_peer_up(p->t, p->id);
}
static bool wait_up(struct transport *t, uint64_t id, int ms)
{
    struct pair_arg a = {t, id};
    return wait_for(peer_up_cond, &a, ms);
}

struct count_arg {
    struct rx *r;
    int cls;
    uint64_t want;
};
static bool count_cond(void *a)
{
    struct count_arg *c = a;
    pthread_mutex_lock(&c->r->mu);
    bool ok = c->r->frames[c->cls] >= c->want;
    pthread_mutex_unlock(&c->r->mu);
    return ok;
}
static bool wait_frames(struct rx *r, int cls, uint64_t want, int ms)
{
    struct count_arg a = {r, cls, want};
    return wait_for(count_cond, &a, ms);
}

static void peer_stats(struct transport *t, uint64_t id, struct transport_peer_stats *out)
{
    struct transport_peer_stats ps[8];
    size_t n = 0;
    transport_stats(t, NULL, ps, 8, &n);
    memset(out, 0, sizeof *out);
    for (size_t i = 0; i < n && i < 8; i++)
        if (ps[i].id == id)
            *out = ps[i];
}

/* waits until peer `id` of t has field >= want (a stats counter) */
struct stat_arg {
    struct transport *t;
    uint64_t id;
    size_t off; /* offsetof the uint64_t counter */
    uint64_t want;
};
static bool stat_cond(void *a)
{
    struct stat_arg *s = a;
    struct transport_peer_stats ps;
    peer_stats(s->t, s->id, &ps);
    uint64_t v;
    memcpy(&v, (const char *)&ps + s->off, sizeof v);
    return v >= s->want;
}
#define WAIT_STAT(t_, id_, field, want_)                                                           \
    wait_for(stat_cond,                                                                            \
             &(struct stat_arg){(t_), (id_), offsetof(struct transport_peer_stats, field), (want_)}, \
             5000)

/* sends a patterned payload with sequence seq; retries while the queue is full */
static nk_status send_seq(struct transport *t, uint64_t to, uint8_t cls, uint64_t seq, size_t len,
                          bool retry_full)
{
    uint8_t *buf = malloc(len ? len : 1);
    fill(buf, len, seq);
    nk_status s;
    for (;;) {
        s = transport_send(t, to, cls, buf, len);
        if (s.code != NK_RESOURCE_EXHAUSTED || !retry_full)
            break;
        nk_status_free(&s);
        nk_sleep_us(500);
    }
    free(buf);
    return s;
}

static bool connect_pair(struct transport *a, uint64_t aid, struct transport *b, uint64_t bid)
{
    nk_status s1 = transport_add_peer(a, bid, transport_listen_addr(b));
    nk_status s2 = transport_add_peer(b, aid, transport_listen_addr(a));
    bool ok = nk_ok(s1) && nk_ok(s2);
    nk_status_free(&s1);
    nk_status_free(&s2);
    return ok && wait_up(a, bid, 5000) && wait_up(b, aid, 5000);
}

/* ------------------------------------------------------------- raw peers */

static int raw_connect(const char *addr)
{
    char host[64];
    int port;
    const char *colon = strrchr(addr, ':');
    snprintf(host, sizeof host, "%.*s", (int)(colon - addr), addr);
    port = atoi(colon + 1);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, host, &sa.sin_addr);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        close(fd);
        return -1;
    }
    struct timeval tv = {.tv_sec = 5};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    return fd;
}

static void raw_frame(struct nk_buf *b, uint8_t type, uint8_t flags, const void *p, size_t len)
{
    uint8_t hdr[TRANSPORT_FRAME_HEADER];
    transport_frame_header(hdr, type, flags, p, len);
    nk_buf_append(b, hdr, sizeof hdr);
    nk_buf_append(b, p, len);
}

/* HELLO + ACCEPT as node `id` */
static void raw_handshake(struct nk_buf *b, uint64_t id, uint64_t cluster, uint32_t shards)
{
    struct transport_hello h = {.version = TRANSPORT_PROTOCOL_VERSION,
                                .node_id = id,
                                .cluster_id = cluster,
                                .total_shards = shards,
                                .incarnation = 5};
    snprintf(h.name, sizeof h.name, "raw%llu", (unsigned long long)id);
    struct nk_buf hb;
    nk_buf_init(&hb);
    transport_hello_encode(&h, &hb);
    raw_frame(b, TRANSPORT_FRAME_HELLO, 0, hb.data, hb.len);
    raw_frame(b, TRANSPORT_FRAME_ACCEPT, 0, NULL, 0);
    nk_buf_free(&hb);
}

static bool raw_write(int fd, const struct nk_buf *b)
{
    return send(fd, b->data, b->len, MSG_NOSIGNAL) == (ssize_t)b->len;
}

/* Reads until the peer closes (true) or the 5 s timeout (false). */
static bool raw_wait_closed(int fd)
{
    uint8_t buf[4096];
    for (;;) {
        ssize_t r = recv(fd, buf, sizeof buf, 0);
        if (r == 0 || (r < 0 && errno == ECONNRESET))
            return true;
        if (r < 0)
            return false;
    }
}

/* ------------------------------------------------------------------ tests */

NK_TEST(raft_batch_round_trips_and_rejects_truncation)
{
    struct nk_buf b;
    nk_buf_init(&b);
    transport_batch_init(&b);
    transport_batch_add(&b, 0, "a", 1);
    transport_batch_add(&b, 1023, "hello", 5);
    transport_batch_add(&b, UINT32_MAX, NULL, 0);
    struct transport_batch_reader br;
    NK_REQUIRE_OK(transport_batch_open(&br, b.data, b.len));
    uint32_t want_g[3] = {0, 1023, UINT32_MAX};
    size_t want_len[3] = {1, 5, 0};
    for (int i = 0; i < 3; i++) {
        bool has;
        uint32_t g;
        struct nk_slice m;
        NK_REQUIRE_OK(transport_batch_next(&br, &has, &g, &m));
        NK_CHECK(has && g == want_g[i] && m.len == want_len[i]);
    }
    bool has = true;
    uint32_t g;
    struct nk_slice m;
    NK_REQUIRE_OK(transport_batch_next(&br, &has, &g, &m));
    NK_CHECK(!has);
    /* cut inside the second record's bytes */
    NK_REQUIRE_OK(transport_batch_open(&br, b.data, 7));
    NK_REQUIRE_OK(transport_batch_next(&br, &has, &g, &m));
    nk_status s = transport_batch_next(&br, &has, &g, &m);
    NK_CHECK(s.code == NK_DATA_LOSS && strstr(nk_status_msg(s), "group 1023"));
    nk_status_free(&s);
    uint8_t v2 = 2;
    s = transport_batch_open(&br, &v2, 1);
    NK_CHECK(s.code == NK_DATA_LOSS);
    nk_status_free(&s);
    nk_buf_free(&b);
}

NK_TEST(two_transports_deliver_both_classes_whole_and_in_order)
{
    struct rx *ra = rx_new(), *rb = rx_new();
    struct transport_options oa = opts_for(1, ra), ob = opts_for(2, rb);
    struct transport *a = open_t(&oa), *b = open_t(&ob);
    NK_REQUIRE(a && b);
    NK_REQUIRE(connect_pair(a, 1, b, 2));
    const int nraft = 3000, nbulk = 40;
    int bi = 0;
    for (int i = 0; i < nraft; i++) {
        nk_status s = send_seq(a, 2, TRANSPORT_CLASS_RAFT, (uint64_t)i, 8 + (size_t)(i % 300),
                               true);
        NK_CHECK(nk_ok(s));
        nk_status_free(&s);
        if (i % (nraft / nbulk) == 0 && bi < nbulk) {
            /* bulk payloads from a few bytes to several fragments */
            s = send_seq(a, 2, TRANSPORT_CLASS_BULK, (uint64_t)bi, 8 + (size_t)bi * 37001, true);
            NK_CHECK(nk_ok(s));
            nk_status_free(&s);
            bi++;
        }
        /* and some traffic the other way at the same time */
        if (i % 10 == 0) {
            s = send_seq(b, 1, TRANSPORT_CLASS_RAFT, (uint64_t)(i / 10), 100, true);
            NK_CHECK(nk_ok(s));
            nk_status_free(&s);
        }
    }
    NK_CHECK(wait_frames(rb, TRANSPORT_CLASS_RAFT, nraft, 10000));
    NK_CHECK(wait_frames(rb, TRANSPORT_CLASS_BULK, nbulk, 10000));
    NK_CHECK(wait_frames(ra, TRANSPORT_CLASS_RAFT, nraft / 10, 10000));
    NK_CHECK_EQ_U64(rb->frames[TRANSPORT_CLASS_RAFT], nraft);
    NK_CHECK_EQ_U64(rb->frames[TRANSPORT_CLASS_BULK], nbulk);
    NK_CHECK(!rb->order_broken && !rb->content_broken);
    NK_CHECK(!ra->order_broken && !ra->content_broken);
    struct transport_peer_stats ps;
    peer_stats(a, 2, &ps);
    NK_CHECK(ps.connected);
    NK_CHECK_EQ_U64(ps.sent_frames[TRANSPORT_CLASS_RAFT], nraft);
    NK_CHECK_EQ_U64(ps.sent_frames[TRANSPORT_CLASS_BULK], nbulk);
    NK_CHECK_EQ_U64(ps.queued_frames[0] + ps.queued_frames[1], 0);
    NK_CHECK(strcmp(ps.name, "beta") == 0);
    transport_close(a);
    transport_close(b);
    rx_free(ra);
    rx_free(rb);
}

NK_TEST(three_transports_exchange_frames_between_every_pair)
{
    struct rx *r[3];
    struct transport *t[3];
    struct transport_options o[3];
    for (int i = 0; i < 3; i++) {
        r[i] = rx_new();
        o[i] = opts_for((uint64_t)i + 1, r[i]);
        t[i] = open_t(&o[i]);
        NK_REQUIRE(t[i]);
    }
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++)
            if (i != j) {
                nk_status s = transport_add_peer(t[i], (uint64_t)j + 1,
                                                 transport_listen_addr(t[j]));
                NK_CHECK(nk_ok(s));
                nk_status_free(&s);
            }
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++)
            if (i != j)
                NK_REQUIRE(wait_up(t[i], (uint64_t)j + 1, 5000));
    for (int k = 0; k < 500; k++)
        for (int i = 0; i < 3; i++)
            for (int j = 0; j < 3; j++)
                if (i != j) {
                    nk_status s = send_seq(t[i], (uint64_t)j + 1, (uint8_t)(k % 2),
                                           (uint64_t)(k / 2), 64 + (size_t)k, true);
                    NK_CHECK(nk_ok(s));
                    nk_status_free(&s);
                }
    for (int i = 0; i < 3; i++) {
        NK_CHECK(wait_frames(r[i], 0, 500, 10000));
        NK_CHECK(wait_frames(r[i], 1, 500, 10000));
        NK_CHECK(!r[i]->order_broken && !r[i]->content_broken);
    }
    for (int i = 0; i < 3; i++) {
        transport_close(t[i]);
        rx_free(r[i]);
    }
}

NK_TEST(payloads_up_to_max_frame_bytes_arrive_whole_and_larger_are_refused)
{
    struct rx *ra = rx_new(), *rb = rx_new();
    struct transport_options oa = opts_for(1, ra), ob = opts_for(2, rb);
    struct transport *a = open_t(&oa), *b = open_t(&ob);
    NK_REQUIRE(a && b);
    NK_REQUIRE(connect_pair(a, 1, b, 2));
    size_t max = 16u << 20;
    nk_status s = send_seq(a, 2, TRANSPORT_CLASS_RAFT, 0, max, false);
    NK_CHECK(nk_ok(s));
    nk_status_free(&s);
    s = send_seq(a, 2, TRANSPORT_CLASS_BULK, 0, max, false);
    NK_CHECK(nk_ok(s));
    nk_status_free(&s);
    s = send_seq(a, 2, TRANSPORT_CLASS_BULK, 1, 0, false); /* empty is fine */
    NK_CHECK(nk_ok(s));
    nk_status_free(&s);
    s = send_seq(a, 2, TRANSPORT_CLASS_RAFT, 1, max + 1, false);
    NK_CHECK(s.code == NK_INVALID_ARGUMENT && strstr(nk_status_msg(s), "max_frame_bytes"));
    nk_status_free(&s);
    s = transport_send(a, 2, 7, "x", 1);
    NK_CHECK(s.code == NK_INVALID_ARGUMENT);
    nk_status_free(&s);
    s = transport_send(a, 9, TRANSPORT_CLASS_RAFT, "x", 1);
    NK_CHECK(s.code == NK_NOT_FOUND);
    nk_status_free(&s);
    NK_CHECK(wait_frames(rb, TRANSPORT_CLASS_BULK, 2, 60000));
    NK_CHECK(wait_frames(rb, TRANSPORT_CLASS_RAFT, 1, 60000));
    NK_CHECK_EQ_U64(rb->bytes[TRANSPORT_CLASS_RAFT], max);
    NK_CHECK_EQ_U64(rb->bytes[TRANSPORT_CLASS_BULK], max);
    NK_CHECK(!rb->content_broken);
    transport_close(a);
    transport_close(b);
    rx_free(ra);
    rx_free(rb);
}

NK_TEST(raft_frame_overtakes_a_large_bulk_payload)
{
    /* node 3 is a raw socket that reads the stream itself, only after both
     * sends returned: the RAFT frame sent after a 16 MiB BULK payload must
     * come before that payload's last fragment, with at most one window of
     * bulk bytes ahead of it (node 3 sends no BULK_ACK) */
    struct rx *ra = rx_new();
    struct transport_options oa = opts_for(1, ra);
    struct transport *a = open_t(&oa);
    NK_REQUIRE(a);
    nk_status s = transport_add_peer(a, 3, "127.0.0.1:1");
    NK_REQUIRE(nk_ok(s));
    int fd = raw_connect(transport_listen_addr(a));
    NK_REQUIRE(fd >= 0);
    struct nk_buf hb;
    nk_buf_init(&hb);
    raw_handshake(&hb, 3, 42, 1024);
    NK_REQUIRE(raw_write(fd, &hb));
    nk_buf_free(&hb);
    NK_REQUIRE(wait_up(a, 3, 5000));
    s = send_seq(a, 3, TRANSPORT_CLASS_BULK, 0, 16u << 20, false);
    NK_CHECK(nk_ok(s));
    nk_status_free(&s);
    s = send_seq(a, 3, TRANSPORT_CLASS_RAFT, 0, 100, false);
    NK_CHECK(nk_ok(s));
    nk_status_free(&s);

    struct transport_decoder d;
    transport_decoder_init(&d, 16u << 20);
    uint8_t *buf = malloc(1u << 16);
    bool raft_seen = false, bulk_done_first = false;
    uint64_t bulk_before = 0;
    while (!raft_seen) {
        ssize_t r = recv(fd, buf, 1u << 16, 0);
        if (r <= 0)
            break;
        const uint8_t *p = buf;
        size_t n = (size_t)r;
        for (;;) {
            struct transport_frame f;
            nk_status err;
            enum transport_decode_result res = transport_decoder_next(&d, &p, &n, &f, &err);
            if (res != TRANSPORT_DECODE_FRAME) {
                NK_CHECK(res == TRANSPORT_DECODE_MORE);
                nk_status_free(&err);
                break;
            }
            if (f.type == TRANSPORT_FRAME_BULK)
                bulk_done_first = true;
            if (f.type == TRANSPORT_FRAME_RAFT && !raft_seen) {
                raft_seen = true;
                bulk_before = d.bulk_received;
            }
        }
    }
    fprintf(stderr, "  raft frame arrived after %llu bulk bytes of 16 MiB\n",
            (unsigned long long)bulk_before);
    NK_CHECK(raft_seen && !bulk_done_first);
    NK_CHECK(bulk_before <= (1u << 20) + (64u << 10)); /* one window (+ one fragment) */
    transport_decoder_free(&d);
    free(buf);
    close(fd);
    transport_close(a);
    rx_free(ra);
}

NK_TEST(peer_that_is_down_is_redialed_once_it_comes_up)
{
    struct rx *ra = rx_new(), *rb = rx_new();
    struct transport_options oa = opts_for(1, ra), ob = opts_for(2, rb);
    oa.backoff_max_ms = 200;
    ob.backoff_max_ms = 200;
    struct transport *a = open_t(&oa), *b = open_t(&ob);
    NK_REQUIRE(a && b);
    char baddr[TRANSPORT_ADDR_MAX];
    snprintf(baddr, sizeof baddr, "%s", transport_listen_addr(b));
    transport_close(b); /* b is down; its port is free */
    nk_status s = transport_add_peer(a, 2, baddr);
    NK_REQUIRE(nk_ok(s));
    NK_CHECK(WAIT_STAT(a, 2, dials, 2));
    s = send_seq(a, 2, TRANSPORT_CLASS_RAFT, 0, 50, false);
    NK_CHECK(s.code == NK_UNAVAILABLE);
    nk_status_free(&s);
    struct transport_peer_stats ps;
    peer_stats(a, 2, &ps);
    NK_CHECK(!ps.connected && ps.dials >= 2 && ps.last_error[0]);
    NK_CHECK_EQ_U64(ps.dropped_down[TRANSPORT_CLASS_RAFT], 1);
    fprintf(stderr, "  while down: %llu dials, last error: %s\n", (unsigned long long)ps.dials,
            ps.last_error);

    ob.listen_addr = baddr; /* b comes up on the same address */
    b = open_t(&ob);
    NK_REQUIRE(b);
    s = transport_add_peer(b, 1, transport_listen_addr(a));
    NK_CHECK(nk_ok(s));
    nk_status_free(&s);
    NK_REQUIRE(wait_up(a, 2, 5000));
    NK_REQUIRE(wait_up(b, 1, 5000));
    s = send_seq(a, 2, TRANSPORT_CLASS_RAFT, 0, 50, false);
    NK_CHECK(nk_ok(s));
    nk_status_free(&s);
    NK_CHECK(wait_frames(rb, TRANSPORT_CLASS_RAFT, 1, 5000));

    /* and again: b restarts, a notices and reconnects */
    transport_close(b);
    rx_free(rb);
    rb = rx_new();
    ob.ctx = rb;
    b = open_t(&ob);
    NK_REQUIRE(b);
    s = transport_add_peer(b, 1, transport_listen_addr(a));
    NK_CHECK(nk_ok(s));
    nk_status_free(&s);
    NK_REQUIRE(wait_up(b, 1, 5000));
    NK_REQUIRE(wait_up(a, 2, 5000));
    s = send_seq(a, 2, TRANSPORT_CLASS_RAFT, 0, 50, true);
    NK_CHECK(nk_ok(s) || s.code == NK_UNAVAILABLE); /* the old session may just be ending */
    nk_status_free(&s);
    for (int i = 0; i < 200 && !wait_frames(rb, TRANSPORT_CLASS_RAFT, 1, 10); i++) {
        s = send_seq(a, 2, TRANSPORT_CLASS_RAFT, 0, 50, false);
        nk_status_free(&s);
    }
    NK_CHECK(wait_frames(rb, TRANSPORT_CLASS_RAFT, 1, 10));
    peer_stats(a, 2, &ps);
    NK_CHECK(ps.sessions >= 2);
    pthread_mutex_lock(&ra->mu);
    NK_CHECK(ra->ups >= 2 && ra->downs >= 1);
    pthread_mutex_unlock(&ra->mu);
    transport_close(a);
    transport_close(b);
    rx_free(ra);
    rx_free(rb);
}

NK_TEST(full_queue_answers_resource_exhausted_and_slow_peer_blocks_no_one)
{
    struct rx *ra = rx_new(), *rb = rx_new();
    struct transport_options oa = opts_for(1, ra), ob = opts_for(2, rb);
    oa.raft_queue_bytes = 1u << 20;
    oa.raft_queue_frames = 64;
    oa.idle_timeout_ms = 20000; /* the stuck peer never pings */
    struct transport *a = open_t(&oa), *b = open_t(&ob);
    NK_REQUIRE(a && b);
    NK_REQUIRE(connect_pair(a, 1, b, 2));
    /* node 3 is a raw socket that completes the handshake and never reads */
    nk_status s = transport_add_peer(a, 3, "127.0.0.1:1");
    NK_REQUIRE(nk_ok(s));
    int fd = raw_connect(transport_listen_addr(a));
    NK_REQUIRE(fd >= 0);
    int small = 4096;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    struct nk_buf hb;
    nk_buf_init(&hb);
    raw_handshake(&hb, 3, 42, 1024);
    NK_REQUIRE(raw_write(fd, &hb));
    nk_buf_free(&hb);
    NK_REQUIRE(wait_up(a, 3, 5000));

    uint64_t ok = 0, full = 0, b_sent = 0;
    for (int i = 0; i < 2000; i++) {
        s = send_seq(a, 3, TRANSPORT_CLASS_RAFT, (uint64_t)i, 32 << 10, false);
        if (nk_ok(s))
            ok++;
        else if (s.code == NK_RESOURCE_EXHAUSTED)
            full++;
        nk_status_free(&s);
        /* node 2 keeps getting its frames meanwhile */
        s = send_seq(a, 2, TRANSPORT_CLASS_RAFT, b_sent, 100, true);
        if (nk_ok(s))
            b_sent++;
        nk_status_free(&s);
    }
    struct transport_peer_stats ps;
    peer_stats(a, 3, &ps);
    fprintf(stderr, "  stuck peer: %llu accepted, %llu refused; queued %u frames / %llu bytes\n",
            (unsigned long long)ok, (unsigned long long)full, ps.queued_frames[0],
            (unsigned long long)ps.queued_bytes[0]);
    NK_CHECK(full > 0);
    NK_CHECK_EQ_U64(ps.dropped_full[0], full);
    NK_CHECK(ps.queued_bytes[0] <= (1u << 20) && ps.queued_frames[0] <= 64);
    NK_CHECK(ps.connected);
    NK_CHECK(wait_frames(rb, TRANSPORT_CLASS_RAFT, b_sent, 5000));
    NK_CHECK_EQ_U64(b_sent, 2000);
    NK_CHECK(!rb->order_broken);
    close(fd);
    transport_close(a);
    transport_close(b);
    rx_free(ra);
    rx_free(rb);
}

static bool refused_cond(void *a)
{
    struct rx *r = a;
    pthread_mutex_lock(&r->mu);
    bool ok = r->refused > 0;
    pthread_mutex_unlock(&r->mu);
    return ok;
}

static void hello_mismatch(uint64_t cluster_b, uint32_t shards_b, const char *want1,
                           const char *want2)
{
    struct rx *ra = rx_new(), *rb = rx_new();
    struct transport_options oa = opts_for(1, ra), ob = opts_for(2, rb);
    ob.cluster_id = cluster_b;
    ob.total_shards = shards_b;
    struct transport *a = open_t(&oa), *b = open_t(&ob);
    NK_REQUIRE(a && b);
    nk_status s1 = transport_add_peer(a, 2, transport_listen_addr(b));
    nk_status s2 = transport_add_peer(b, 1, transport_listen_addr(a));
    NK_CHECK(nk_ok(s1) && nk_ok(s2));
    nk_status_free(&s1);
    nk_status_free(&s2);
    NK_CHECK(WAIT_STAT(a, 2, refused, 1) && WAIT_STAT(b, 1, refused, 1));
    NK_CHECK(wait_for(refused_cond, ra, 5000) && wait_for(refused_cond, rb, 5000));
    NK_CHECK(!transport_peer_up(a, 2) && !transport_peer_up(b, 1));
    struct transport_peer_stats ps;
    peer_stats(a, 2, &ps);
    fprintf(stderr, "  a's last error: %s\n", ps.last_error);
    NK_CHECK(ps.refused > 0 && ps.sessions == 0);
    NK_CHECK(strstr(ps.last_error, want1) && strstr(ps.last_error, want2));
    pthread_mutex_lock(&ra->mu);
    NK_CHECK(ra->refused > 0 && ra->ups == 0);
    NK_CHECK(strstr(ra->reason, want1) != NULL);
    pthread_mutex_unlock(&ra->mu);
    pthread_mutex_lock(&rb->mu);
    NK_CHECK(rb->refused > 0 && rb->ups == 0);
    pthread_mutex_unlock(&rb->mu);
    transport_close(a);
    transport_close(b);
    rx_free(ra);
    rx_free(rb);
}

NK_TEST(hello_with_another_cluster_id_is_refused_naming_both_values)
{
    hello_mismatch(43, 1024, "cluster id 43", "cluster id 42");
}

NK_TEST(hello_with_other_total_shards_is_refused_naming_both_values)
{
    hello_mismatch(42, 512, "total_shards 512", "total_shards 1024");
}

NK_TEST(unknown_node_and_wrong_identity_are_refused)
{
    struct rx *ra = rx_new();
    struct transport_options oa = opts_for(1, ra);
    struct transport *a = open_t(&oa);
    NK_REQUIRE(a);
    /* an unknown node id */
    int fd = raw_connect(transport_listen_addr(a));
    NK_REQUIRE(fd >= 0);
    struct nk_buf hb;
    nk_buf_init(&hb);
    raw_handshake(&hb, 77, 42, 1024);
    NK_REQUIRE(raw_write(fd, &hb));
    NK_CHECK(raw_wait_closed(fd));
    close(fd);
    struct transport_stats ts;
    transport_stats(a, &ts, NULL, 0, NULL);
    NK_CHECK(ts.refused_unknown >= 1);
    NK_CHECK(wait_for(refused_cond, ra, 2000)); /* events follow the close */
    pthread_mutex_lock(&ra->mu);
    NK_CHECK(ra->refused == 1 && ra->event_peer == 77 && strstr(ra->reason, "not a known peer"));
    pthread_mutex_unlock(&ra->mu);

    /* a dials "node 2" at an address where node 3 answers */
    struct rx *rc = rx_new();
    struct transport_options oc = opts_for(3, rc);
    struct transport *c = open_t(&oc);
    NK_REQUIRE(c);
    nk_status s = transport_add_peer(c, 1, transport_listen_addr(a));
    NK_CHECK(nk_ok(s));
    s = transport_add_peer(a, 2, transport_listen_addr(c));
    NK_CHECK(nk_ok(s));
    NK_CHECK(WAIT_STAT(a, 2, refused, 1));
    struct transport_peer_stats ps;
    peer_stats(a, 2, &ps);
    fprintf(stderr, "  a's last error about node 2: %s\n", ps.last_error);
    NK_CHECK(!ps.connected && ps.refused > 0 && strstr(ps.last_error, "says it is node 3"));
    nk_buf_free(&hb);
    transport_close(a);
    transport_close(c);
    rx_free(ra);
    rx_free(rc);
}

/* Connects a raw "node 3" to a (which knows node 3), optionally completing
 * the handshake, then writes `bad` and checks a closes only that connection. */
static void bad_input_closes_only_that_connection(const uint8_t *bad, size_t n, bool handshake)
{
    struct rx *ra = rx_new(), *rb = rx_new();
    struct transport_options oa = opts_for(1, ra), ob = opts_for(2, rb);
    struct transport *a = open_t(&oa), *b = open_t(&ob);
    NK_REQUIRE(a && b);
    NK_REQUIRE(connect_pair(a, 1, b, 2));
    struct transport_peer_stats ps;
    nk_sleep_us(100 * 1000);
    peer_stats(a, 2, &ps);
    uint64_t sessions = ps.sessions;
    nk_status s = transport_add_peer(a, 3, "127.0.0.1:1");
    NK_REQUIRE(nk_ok(s));
    int fd = raw_connect(transport_listen_addr(a));
    NK_REQUIRE(fd >= 0);
    struct nk_buf wb;
    nk_buf_init(&wb);
    if (handshake)
        raw_handshake(&wb, 3, 42, 1024);
    nk_buf_append(&wb, bad, n);
    NK_REQUIRE(raw_write(fd, &wb));
    nk_buf_free(&wb);
    NK_CHECK(raw_wait_closed(fd));
    close(fd);
    struct transport_stats ts;
    transport_stats(a, &ts, NULL, 0, NULL);
    NK_CHECK(ts.malformed >= 1);
    peer_stats(a, 2, &ps);
    NK_CHECK(ps.connected); /* the good peer never noticed */
    NK_CHECK_EQ_U64(ps.sessions, sessions);
    s = send_seq(a, 2, TRANSPORT_CLASS_RAFT, 0, 64, false);
    NK_CHECK(nk_ok(s));
    nk_status_free(&s);
    NK_CHECK(wait_frames(rb, TRANSPORT_CLASS_RAFT, 1, 5000));
    if (handshake) {
        peer_stats(a, 3, &ps);
        fprintf(stderr, "  node 3's last error: %s\n", ps.last_error);
        NK_CHECK(ps.malformed == 1 && !ps.connected);
    }
    transport_close(a);
    transport_close(b);
    rx_free(ra);
    rx_free(rb);
}

NK_TEST(garbage_bytes_close_only_that_connection)
{
    const char *junk = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    bad_input_closes_only_that_connection((const uint8_t *)junk, strlen(junk), false);
}

NK_TEST(oversized_length_closes_only_that_connection)
{
    uint8_t hdr[TRANSPORT_FRAME_HEADER];
    transport_frame_header(hdr, TRANSPORT_FRAME_RAFT, 0, "", 0);
    nk_enc_fixed32(hdr, 100u << 20); /* declares 100 MiB */
    bad_input_closes_only_that_connection(hdr, sizeof hdr, true);
}

NK_TEST(bad_crc_closes_only_that_connection)
{
    uint8_t fr[TRANSPORT_FRAME_HEADER + 5];
    transport_frame_header(fr, TRANSPORT_FRAME_RAFT, 0, "hello", 5);
    memcpy(fr + TRANSPORT_FRAME_HEADER, "hellp", 5);
    bad_input_closes_only_that_connection(fr, sizeof fr, true);
}

NK_TEST(bulk_ack_for_bytes_never_sent_closes_only_that_connection)
{
    uint8_t v[8];
    nk_enc_fixed64(v, 1000); /* a has sent node 3 no BULK byte */
    uint8_t fr[TRANSPORT_FRAME_HEADER + 8];
    transport_frame_header(fr, TRANSPORT_FRAME_BULK_ACK, 0, v, 8);
    memcpy(fr + TRANSPORT_FRAME_HEADER, v, 8);
    bad_input_closes_only_that_connection(fr, sizeof fr, true);
}

NK_TEST(simultaneous_dials_keep_the_connection_dialed_by_the_lower_id)
{
    for (int round = 0; round < 5; round++) {
        struct rx *ra = rx_new(), *rb = rx_new();
        struct transport_options oa = opts_for(1, ra), ob = opts_for(2, rb);
        oa.seed = ob.seed = (uint64_t)round + 1;
        /* no head start for the lower id: both dial at once */
        oa.backoff_min_ms = ob.backoff_min_ms = 1;
        struct transport *a = open_t(&oa), *b = open_t(&ob);
        NK_REQUIRE(a && b);
        /* both add each other at once: both dial */
        NK_REQUIRE(connect_pair(b, 2, a, 1));
        nk_sleep_us(300 * 1000); /* let any duplicate settle */
        struct transport_peer_stats pa, pb;
        peer_stats(a, 2, &pa);
        peer_stats(b, 1, &pb);
        NK_CHECK(pa.connected && pb.connected);
        NK_CHECK_EQ_U64(pa.dialed_by, 1);
        NK_CHECK_EQ_U64(pb.dialed_by, 1);
        /* traffic flows both ways on the surviving connection */
        nk_status s = send_seq(a, 2, TRANSPORT_CLASS_RAFT, 0, 64, false);
        NK_CHECK(nk_ok(s));
        nk_status_free(&s);
        s = send_seq(b, 1, TRANSPORT_CLASS_RAFT, 0, 64, false);
        NK_CHECK(nk_ok(s));
        nk_status_free(&s);
        NK_CHECK(wait_frames(rb, 0, 1, 5000) && wait_frames(ra, 0, 1, 5000));
        transport_close(a);
        transport_close(b);
        rx_free(ra);
        rx_free(rb);
    }
}

NK_TEST(duplicate_connection_from_the_higher_id_loses_and_same_dialer_newest_wins)
{
    /* x (id 2) has a session with node 5 dialed by 5 (a raw socket); a
     * second connection from "node 5" replaces it (same dialer: newest
     * wins). (A lower dialer replacing a higher one is what
     * simultaneous_dials_... checks with real transports.) */
    struct rx *rx = rx_new();
    struct transport_options ox = opts_for(2, rx);
    struct transport *x = open_t(&ox);
    NK_REQUIRE(x);
    nk_status s = transport_add_peer(x, 5, "127.0.0.1:1"); /* x cannot dial it */
    NK_REQUIRE(nk_ok(s));
    struct nk_buf hb;
    nk_buf_init(&hb);
    raw_handshake(&hb, 5, 42, 1024);
    int fd1 = raw_connect(transport_listen_addr(x));
    NK_REQUIRE(fd1 >= 0 && raw_write(fd1, &hb));
    NK_REQUIRE(wait_up(x, 5, 3000));
    int fd2 = raw_connect(transport_listen_addr(x));
    NK_REQUIRE(fd2 >= 0 && raw_write(fd2, &hb));
    NK_CHECK(raw_wait_closed(fd1)); /* the older one goes */
    struct transport_peer_stats ps;
    peer_stats(x, 5, &ps);
    NK_CHECK(ps.connected && ps.sessions == 2 && ps.dialed_by == 5);

    /* x has a session with node 7 that x dialed; a connection dialed by
     * the higher id (7) arriving now loses. */
    struct rx *ry = rx_new();
    struct transport_options oy = opts_for(7, ry);
    struct transport *y = open_t(&oy);
    NK_REQUIRE(y);
    s = transport_add_peer(x, 7, transport_listen_addr(y));
    NK_REQUIRE(nk_ok(s));
    s = transport_add_peer(y, 2, "127.0.0.1:1"); /* y cannot dial x: x's dial is the session */
    NK_REQUIRE(nk_ok(s));
    NK_REQUIRE(wait_up(x, 7, 3000) && wait_up(y, 2, 3000));
    peer_stats(x, 7, &ps);
    NK_CHECK_EQ_U64(ps.dialed_by, 2);
    uint64_t sessions = ps.sessions;
    struct nk_buf h7;
    nk_buf_init(&h7);
    raw_handshake(&h7, 7, 42, 1024);
    int fd3 = raw_connect(transport_listen_addr(x));
    NK_REQUIRE(fd3 >= 0 && raw_write(fd3, &h7));
    NK_CHECK(raw_wait_closed(fd3)); /* refused as the duplicate */
    peer_stats(x, 7, &ps);
    NK_CHECK(ps.connected && ps.dialed_by == 2);
    NK_CHECK_EQ_U64(ps.sessions, sessions);
    close(fd1);
    close(fd2);
    close(fd3);
    nk_buf_free(&hb);
    nk_buf_free(&h7);
    transport_close(x);
    transport_close(y);
    rx_free(rx);
    rx_free(ry);
}

NK_TEST(removed_peer_loses_its_session_and_can_be_added_again)
{
    struct rx *ra = rx_new(), *rb = rx_new();
    struct transport_options oa = opts_for(1, ra), ob = opts_for(2, rb);
    struct transport *a = open_t(&oa), *b = open_t(&ob);
    NK_REQUIRE(a && b);
    NK_REQUIRE(connect_pair(a, 1, b, 2));
    nk_status s = transport_remove_peer(a, 2);
    NK_CHECK(nk_ok(s));
    s = transport_remove_peer(a, 2);
    NK_CHECK(s.code == NK_NOT_FOUND);
    nk_status_free(&s);
    s = transport_send(a, 2, TRANSPORT_CLASS_RAFT, "12345678", 8);
    NK_CHECK(s.code == NK_NOT_FOUND);
    nk_status_free(&s);
    s = transport_add_peer(a, 2, transport_listen_addr(b));
    NK_CHECK(nk_ok(s));
    NK_CHECK(wait_up(a, 2, 5000));
    NK_CHECK(wait_up(b, 1, 5000));
    s = send_seq(a, 2, TRANSPORT_CLASS_RAFT, 0, 64, true);
    NK_CHECK(nk_ok(s));
    nk_status_free(&s);
    NK_CHECK(wait_frames(rb, TRANSPORT_CLASS_RAFT, 1, 5000));
    s = transport_add_peer(a, 2, "127.0.0.1:5");
    NK_CHECK(s.code == NK_ALREADY_EXISTS);
    nk_status_free(&s);
    s = transport_add_peer(a, 1, "127.0.0.1:5");
    NK_CHECK(s.code == NK_INVALID_ARGUMENT);
    nk_status_free(&s);
    s = transport_add_peer(a, 5, "no-port");
    NK_CHECK(s.code == NK_INVALID_ARGUMENT);
    nk_status_free(&s);
    transport_close(a);
    transport_close(b);
    rx_free(ra);
    rx_free(rb);
}

NK_TEST(idle_peer_is_disconnected_and_a_quiet_session_stays_up)
{
    struct rx *ra = rx_new(), *rb = rx_new();
    struct transport_options oa = opts_for(1, ra), ob = opts_for(2, rb);
    oa.keepalive_ms = ob.keepalive_ms = 50;
    oa.idle_timeout_ms = ob.idle_timeout_ms = 300;
    struct transport *a = open_t(&oa), *b = open_t(&ob);
    NK_REQUIRE(a && b);
    NK_REQUIRE(connect_pair(a, 1, b, 2));
    struct transport_peer_stats ps;
    nk_sleep_us(100 * 1000);
    peer_stats(a, 2, &ps);
    uint64_t sessions = ps.sessions;
    nk_sleep_us(1000 * 1000); /* quiet: pings keep it up */
    peer_stats(a, 2, &ps);
    NK_CHECK(ps.connected);
    NK_CHECK_EQ_U64(ps.sessions, sessions);
    /* a raw node 3 that handshakes and then goes silent is dropped */
    nk_status s = transport_add_peer(a, 3, "127.0.0.1:1");
    NK_REQUIRE(nk_ok(s));
    int fd = raw_connect(transport_listen_addr(a));
    NK_REQUIRE(fd >= 0);
    struct nk_buf hb;
    nk_buf_init(&hb);
    raw_handshake(&hb, 3, 42, 1024);
    NK_REQUIRE(raw_write(fd, &hb));
    nk_buf_free(&hb);
    NK_CHECK(wait_up(a, 3, 2000));
    NK_CHECK(raw_wait_closed(fd));
    close(fd);
    peer_stats(a, 3, &ps);
    fprintf(stderr, "  silent peer: %s\n", ps.last_error);
    NK_CHECK(strstr(ps.last_error, "nothing received") != NULL);
    transport_close(a);
    transport_close(b);
    rx_free(ra);
    rx_free(rb);
}

NK_TEST(silent_connections_time_out_in_the_handshake_both_ways)
{
    struct rx *ra = rx_new();
    struct transport_options oa = opts_for(1, ra);
    oa.handshake_timeout_ms = 200;
    oa.backoff_max_ms = 100;
    struct transport *a = open_t(&oa);
    NK_REQUIRE(a);
    /* a listener that accepts (the kernel does) and never answers */
    int ls = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    NK_REQUIRE(bind(ls, (struct sockaddr *)&sa, sizeof sa) == 0 && listen(ls, 16) == 0);
    socklen_t sl = sizeof sa;
    getsockname(ls, (struct sockaddr *)&sa, &sl);
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", ntohs(sa.sin_port));
    nk_status s = transport_add_peer(a, 2, addr);
    NK_REQUIRE(nk_ok(s));
    /* and an inbound connection that never sends its HELLO */
    int fd = raw_connect(transport_listen_addr(a));
    NK_REQUIRE(fd >= 0);
    NK_CHECK(raw_wait_closed(fd));
    close(fd);
    NK_CHECK(WAIT_STAT(a, 2, dials, 3));
    struct transport_peer_stats ps;
    peer_stats(a, 2, &ps);
    fprintf(stderr, "  %llu dials; last error: %s\n", (unsigned long long)ps.dials, ps.last_error);
    NK_CHECK(ps.dials >= 2 && !ps.connected);
    NK_CHECK(strstr(ps.last_error, "timed out") != NULL);
    struct transport_stats ts;
    transport_stats(a, &ts, NULL, 0, NULL);
    NK_CHECK_EQ_U64(ts.pending_conns, 0);
    close(ls);
    transport_close(a);
    rx_free(ra);
}

struct blaster {
    struct transport *t;
    atomic_bool stop;
    uint64_t sent;
};
static void *blast(void *arg)
{
    struct blaster *bl = arg;
    uint8_t *buf = malloc(1u << 20);
    memset(buf, 7, 1u << 20);
    while (!atomic_load(&bl->stop)) {
        nk_status s = transport_send(bl->t, 2, (uint8_t)(bl->sent % 2), buf,
                                     bl->sent % 2 ? (1u << 20) : 200);
        if (nk_ok(s))
            bl->sent++;
        else
            nk_sleep_us(100);
        nk_status_free(&s);
    }
    free(buf);
    return NULL;
}

NK_TEST(close_while_busy_releases_everything)
{
    struct rx *ra = rx_new(), *rb = rx_new();
    struct transport_options oa = opts_for(1, ra), ob = opts_for(2, rb);
    struct transport *a = open_t(&oa), *b = open_t(&ob);
    NK_REQUIRE(a && b);
    NK_REQUIRE(connect_pair(a, 1, b, 2));
    struct blaster bl = {.t = a};
    pthread_t th;
    pthread_create(&th, NULL, blast, &bl);
    nk_sleep_us(200 * 1000);
    transport_close(b); /* the receiver goes away mid-stream */
    nk_sleep_us(100 * 1000);
    atomic_store(&bl.stop, true);
    pthread_join(th, NULL);
    fprintf(stderr, "  %llu payloads accepted before close\n", (unsigned long long)bl.sent);
    NK_CHECK(bl.sent > 0);
    transport_close(a); /* with whatever is still queued: ASan checks for leaks */
    rx_free(ra);
    rx_free(rb);
}
