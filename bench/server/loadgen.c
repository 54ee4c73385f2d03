/*
 * norikv_loadgen: the load generator of the server benchmarks (run.sh, one
 * node each; cluster.sh, three nodes each).
 *
 * Drives one server or the nodes of one cluster, NoriKV (norikv.v1 Kv over
 * gRPC) or etcd (etcdserverpb.KV over gRPC, encoded by hand below), with the
 * same closed-loop workload:
 * N client threads, each with at most one request in flight, 16-byte keys,
 * fixed-size values, one phase after another for a fixed duration. Each
 * phase prints one machine-readable line
 *
 *   RESULT <system> <phase> <ok ops> <seconds> <ops/s> <p50 us> <p99 us> <errors>
 *          <loadgen CPU seconds> <first error>
 *
 * and `norikv_loadgen table FILE` turns those lines (and run.sh's IDLE and
 * SERVERCPU lines) into the comparison table with NoriKV/etcd ratios.
 *
 * Gets read only keys that the put phase wrote and had acknowledged; the put
 * phase records how many each client wrote in --keys-file, so that a later
 * run (one phase per process, as run.sh does, to measure the server between
 * phases) reads them.
 *
 * Subcommands:
 *   run      --system norikv|etcd --target HOST:PORT[,HOST:PORT...] [--clients 64]
 *            [--seconds 10] [--value-size 256] [--phases put,get-lease,...]
 *            [--keys-file FILE] [--shards 1024]
 *            Several targets are the nodes of one cluster: NoriKV calls go to
 *            the shard's leader (routed_unary), etcd clients spread over them.
 *   wait     --system S --target T [--timeout 30]   until one read succeeds
 *   failover --target A,B,C --pids P,Q,R [--clients 64] [--shards 1024] [--timeout 30]
 *            SIGKILLs the node leading the most shards under a put load and
 *            prints FAILOVER (see cmd_failover)
 *   leaders  --target A,B,C [--shards 1024]         LEADERS: shards led per node
 *   freeport [N]                                    N free loopback TCP ports
 *   table    FILE                                   the report
 *
 * Memory: everything is owned by main or by one client thread; the latency
 * histograms are fixed-size (HIST_BUCKETS counters per thread). Threads share
 * only the rpc_client (thread-safe) and read-only phase settings.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <inttypes.h>
#include <math.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "norikv/v1/norikv.pb-c.h"
#include "rpc/rpc_client.h"
#include "util/util.h"

#define KEY_LEN 16
#define MAX_CLIENTS 4095 /* the key's client field is 3 hex digits */
#define MAX_VALUE 65536
#define CALL_TIMEOUT_MS 10000 /* a call never outlives its phase by more */
#define REQ_CAP (MAX_VALUE + 256)

/* ------------------------------------------------------------ histogram */

/* Log-linear latency histogram over nanoseconds: values below 64 have a
 * bucket each, above that every power of two is split into 64 sub-buckets,
 * so a reported percentile is within 1.6% of the true value. */
#define HIST_SUB_BITS 6
#define HIST_SUB (1 << HIST_SUB_BITS)
#define HIST_BUCKETS (HIST_SUB + (64 - HIST_SUB_BITS) * HIST_SUB)

struct hist {
    uint64_t n;
    uint64_t b[HIST_BUCKETS];
};

static int hist_index(uint64_t v)
{
    if (v < HIST_SUB)
        return (int)v;
    int e = 63 - __builtin_clzll(v); /* >= HIST_SUB_BITS */
    int sub = (int)((v >> (e - HIST_SUB_BITS)) & (HIST_SUB - 1));
    return HIST_SUB + (e - HIST_SUB_BITS) * HIST_SUB + sub;
}

/* The middle of bucket i, in the histogram's unit. */
static double hist_value(int i)
{
    if (i < HIST_SUB)
        return i;
    int e = (i - HIST_SUB) / HIST_SUB + HIST_SUB_BITS;
    int sub = (i - HIST_SUB) % HIST_SUB;
    double lo = ldexp(1.0, e) + (double)sub * ldexp(1.0, e - HIST_SUB_BITS);
    return lo + ldexp(1.0, e - HIST_SUB_BITS) / 2;
}

static void hist_add(struct hist *h, uint64_t v)
{
    h->b[hist_index(v)]++;
    h->n++;
}

static void hist_merge(struct hist *into, const struct hist *h)
{
    for (int i = 0; i < HIST_BUCKETS; i++)
        into->b[i] += h->b[i];
    into->n += h->n;
}

static double hist_quantile(const struct hist *h, double q)
{
    if (h->n == 0)
        return 0;
    uint64_t rank = (uint64_t)ceil(q * (double)h->n);
    if (rank < 1)
        rank = 1;
    uint64_t c = 0;
    for (int i = 0; i < HIST_BUCKETS; i++) {
        c += h->b[i];
        if (c >= rank)
            return hist_value(i);
    }
    return hist_value(HIST_BUCKETS - 1);
}

/* ------------------------------------------------------------ wire helpers */

/* The few protobuf pieces etcd's messages need (proto3 wire format). */
static size_t pb_varint(uint8_t *p, uint64_t v)
{
    size_t n = 0;
    while (v >= 0x80) {
        p[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    p[n++] = (uint8_t)v;
    return n;
}

static size_t pb_bytes(uint8_t *p, uint32_t field, const void *data, size_t len)
{
    size_t n = pb_varint(p, (uint64_t)field << 3 | 2);
    n += pb_varint(p + n, len);
    memcpy(p + n, data, len);
    return n + len;
}

/* Reads a varint; false on truncation or more than 10 bytes. */
static bool pb_read_varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
    uint64_t r = 0;
    for (int shift = 0; shift < 70 && *p < end; shift += 7) {
        uint8_t b = *(*p)++;
        r |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *v = r;
            return true;
        }
    }
    return false;
}

/* Walks one message's fields; for each length-delimited field numbered `want`
 * calls back with its bytes. False when the bytes are not a valid message. */
static bool pb_each_len_field(const uint8_t *p, size_t len, uint32_t want,
                              bool (*fn)(const uint8_t *, size_t, void *), void *arg)
{
    const uint8_t *end = p + len;
    while (p < end) {
        uint64_t tag, v;
        if (!pb_read_varint(&p, end, &tag))
            return false;
        switch (tag & 7) {
        case 0:
            if (!pb_read_varint(&p, end, &v))
                return false;
            break;
        case 1:
            if (end - p < 8)
                return false;
            p += 8;
            break;
        case 5:
            if (end - p < 4)
                return false;
            p += 4;
            break;
        case 2:
            if (!pb_read_varint(&p, end, &v) || v > (uint64_t)(end - p))
                return false;
            if ((tag >> 3) == want && !fn(p, (size_t)v, arg))
                return false;
            p += v;
            break;
        default:
            return false;
        }
    }
    return true;
}

struct etcd_kv_check {
    size_t kvs;
    size_t value_len;
};

static bool etcd_value_cb(const uint8_t *p, size_t len, void *arg)
{
    (void)p;
    ((struct etcd_kv_check *)arg)->value_len = len;
    return true;
}

/* RangeResponse.kvs = 2 (mvccpb.KeyValue: value = 5). */
static bool etcd_kvs_cb(const uint8_t *p, size_t len, void *arg)
{
    struct etcd_kv_check *c = arg;
    c->kvs++;
    return pb_each_len_field(p, len, 5, etcd_value_cb, c);
}

/* ------------------------------------------------------------ workload */

enum sys { SYS_NORIKV, SYS_ETCD };

enum phase_kind { PH_PUT, PH_GET_LEASE, PH_GET_LIN, PH_GET_SER };

static const struct {
    const char *name;
    enum phase_kind kind;
} phase_names[] = {
    {"put", PH_PUT},
    {"get-lease", PH_GET_LEASE},               /* NoriKV consistency "" */
    {"get-linearizable", PH_GET_LIN},          /* NoriKV "linearizable", etcd default */
    {"get-serializable", PH_GET_SER},          /* etcd serializable = true */
};

#define MAX_TARGETS 8

struct run_cfg {
    enum sys sys;
    const char *sys_name;
    const char *target; /* "host:port" or a comma-separated list (a cluster) */
    int clients, seconds, value_size;
    /* One channel per target (node) for all clients: rpc_client channels to
     * one target share one TCP connection anyway (gRPC's global subchannel
     * pool), and the same holds for both systems. ch is chs[0]. */
    struct rpc_client *ch;
    int n_targets;
    char *targets[MAX_TARGETS];
    struct rpc_client *chs[MAX_TARGETS];
    /* NoriKV cluster routing: key -> shard (xxhash64 + jump hash, as the
     * SDKs) -> the target believed to lead it, learned from NOT_LEADER
     * leader-hint trailers (and from the discovery pass before a phase). */
    uint32_t total_shards;
    _Atomic int *leader;          /* per shard: index into targets */
    _Atomic uint64_t redirects;   /* calls that had to be sent again elsewhere */
    uint64_t *written; /* keys written per client by the put phase (gets read them) */
};

struct phase_shared {
    struct run_cfg *cfg;
    enum phase_kind kind;
    /* two barriers: every client has warmed up; then end_ns is set (by main,
     * between the two) so that the window starts when all clients can go */
    pthread_barrier_t ready, go;
    _Atomic uint64_t end_ns;
};

struct client {
    struct phase_shared *ph;
    int id;
    pthread_t t;
    uint64_t ok, errors, last_done_ns;
    enum nk_code first_code;
    char first_error[160];
    struct hist h;
};

static void make_key(char out[KEY_LEN + 1], int client, uint64_t seq)
{
    snprintf(out, KEY_LEN + 1, "k%03x%012" PRIx64, (unsigned)client,
             (uint64_t)(seq & 0xffffffffffffULL));
}

/* Encodes one request of the phase; returns its length and method. */
static size_t encode(const struct run_cfg *cfg, enum phase_kind kind, const char *key,
                     const uint8_t *val, uint8_t *buf, const char **method)
{
    if (cfg->sys == SYS_NORIKV) {
        if (kind == PH_PUT) {
            Norikv__V1__PutRequest q = NORIKV__V1__PUT_REQUEST__INIT;
            q.key.data = (uint8_t *)key;
            q.key.len = KEY_LEN;
            q.value.data = (uint8_t *)val;
            q.value.len = (size_t)cfg->value_size;
            *method = "/norikv.v1.Kv/Put";
            return norikv__v1__put_request__pack(&q, buf);
        }
        Norikv__V1__GetRequest q = NORIKV__V1__GET_REQUEST__INIT;
        q.key.data = (uint8_t *)key;
        q.key.len = KEY_LEN;
        q.consistency = kind == PH_GET_LIN ? "linearizable" : "";
        *method = "/norikv.v1.Kv/Get";
        return norikv__v1__get_request__pack(&q, buf);
    }
    /* etcd: PutRequest{key = 1, value = 2}; RangeRequest{key = 1, serializable = 7} */
    size_t n = pb_bytes(buf, 1, key, KEY_LEN);
    if (kind == PH_PUT) {
        n += pb_bytes(buf + n, 2, val, (size_t)cfg->value_size);
        *method = "/etcdserverpb.KV/Put";
        return n;
    }
    if (kind == PH_GET_SER) {
        buf[n++] = 7 << 3 | 0;
        buf[n++] = 1;
    }
    *method = "/etcdserverpb.KV/Range";
    return n;
}

/* Checks an OK answer: a put has its version, a get the value written.
 * Returns NULL when fine, else what was wrong. */
static const char *check_reply(const struct run_cfg *cfg, enum phase_kind kind,
                               const struct nk_buf *body)
{
    if (cfg->sys == SYS_NORIKV) {
        if (kind == PH_PUT) {
            Norikv__V1__PutResponse *r =
                norikv__v1__put_response__unpack(NULL, body->len, body->data);
            if (!r)
                return "undecodable PutResponse";
            bool good = r->version && r->version->term >= 1 && r->version->index >= 1;
            norikv__v1__put_response__free_unpacked(r, NULL);
            return good ? NULL : "PutResponse without a version";
        }
        Norikv__V1__GetResponse *r = norikv__v1__get_response__unpack(NULL, body->len, body->data);
        if (!r)
            return "undecodable GetResponse";
        bool good = r->value.len == (size_t)cfg->value_size;
        norikv__v1__get_response__free_unpacked(r, NULL);
        return good ? NULL : "GetResponse value of the wrong size";
    }
    if (kind == PH_PUT)
        return NULL; /* PutResponse holds only the header */
    struct etcd_kv_check c = {0, 0};
    if (!pb_each_len_field(body->data, body->len, 2, etcd_kvs_cb, &c))
        return "undecodable RangeResponse";
    if (c.kvs != 1)
        return "RangeResponse without the key (key not found)";
    if (c.value_len != (size_t)cfg->value_size)
        return "RangeResponse value of the wrong size";
    return NULL;
}

/* The index of the target whose address is `addr`, or -1. */
static int target_index(const struct run_cfg *cfg, const char *addr)
{
    for (int i = 0; addr && i < cfg->n_targets; i++)
        if (!strcmp(cfg->targets[i], addr))
            return i;
    return -1;
}

/*
 * One call to the right server. One target: that one. etcd: client i keeps
 * to member i % n (followers forward to the leader, as etcd clients rely
 * on). NoriKV: the node cached as the leader of the key's shard; an
 * UNAVAILABLE answer sends the call again (at most max_attempts in all) to
 * the node named by the NOT_LEADER leader-hint, or, without a usable hint
 * (an election under way, a dead node), to the next node after a short
 * pause, and the cache follows.
 */
static void routed_unary(struct run_cfg *cfg, int client_id, const char *key, const char *method,
                         const uint8_t *buf, size_t len, int64_t timeout_ms, int max_attempts,
                         struct rpc_client_result *res)
{
    if (cfg->n_targets == 1 || cfg->sys == SYS_ETCD) {
        rpc_client_unary(cfg->chs[client_id % cfg->n_targets], method, buf, len, timeout_ms, res);
        return;
    }
    uint32_t shard = nk_shard_for_key(key, KEY_LEN, cfg->total_shards);
    int idx = atomic_load(&cfg->leader[shard]);
    for (int attempt = 1;; attempt++) {
        rpc_client_unary(cfg->chs[idx], method, buf, len, timeout_ms, res);
        if (res->code != NK_UNAVAILABLE || attempt >= max_attempts)
            return;
        int next = -1;
        if (res->message && strstr(res->message, "NOT_LEADER"))
            next = target_index(cfg, rpc_client_trailer(res, "leader-hint"));
        if (next < 0 || next == idx) {
            next = (idx + 1) % cfg->n_targets;
            usleep(2000); /* no leader known yet: do not spin */
        }
        atomic_fetch_add(&cfg->redirects, 1);
        atomic_store(&cfg->leader[shard], next);
        idx = next;
        rpc_client_result_free(res);
    }
}

/* One request: true when it succeeded; else counts it and keeps the first error. */
static bool do_call(struct client *cl, enum phase_kind kind, const char *key, const uint8_t *val,
                    uint8_t *buf)
{
    struct run_cfg *cfg = cl->ph->cfg;
    const char *method;
    size_t len = encode(cfg, kind, key, val, buf, &method);
    struct rpc_client_result res;
    routed_unary(cfg, cl->id, key, method, buf, len, CALL_TIMEOUT_MS, 8, &res);
    const char *bad = NULL;
    if (res.code == NK_CODE_OK)
        bad = check_reply(cfg, kind, &res.body);
    bool ok = res.code == NK_CODE_OK && !bad;
    if (!ok) {
        if (cl->errors == 0) {
            cl->first_code = res.code;
            snprintf(cl->first_error, sizeof cl->first_error, "%s: %s", nk_code_name(res.code),
                     bad ? bad : res.message);
        }
        cl->errors++;
    }
    rpc_client_result_free(&res);
    return ok;
}

/* A key that the put phase wrote, chosen uniformly over all written keys'
 * writers and then over that writer's keys. */
static bool pick_existing(const struct run_cfg *cfg, struct nk_rng *r, char *key)
{
    for (int tries = 0; tries < 4 * cfg->clients; tries++) {
        int c = (int)nk_rng_uniform(r, (uint64_t)cfg->clients);
        if (cfg->written[c] == 0)
            continue;
        make_key(key, c, nk_rng_uniform(r, cfg->written[c]));
        return true;
    }
    return false;
}

static void *client_main(void *arg)
{
    struct client *cl = arg;
    struct phase_shared *ph = cl->ph;
    struct run_cfg *cfg = ph->cfg;
    struct nk_rng r;
    nk_rng_seed(&r, 0x6e6f7269ULL * (uint64_t)(cl->id + 1) + (uint64_t)ph->kind);
    uint8_t *val = nk_malloc((size_t)cfg->value_size + 1);
    for (int i = 0; i < cfg->value_size; i++)
        val[i] = (uint8_t)('a' + nk_rng_uniform(&r, 26));
    uint8_t *buf = nk_malloc(REQ_CAP);
    char key[KEY_LEN + 1];
    bool have_keys = ph->kind == PH_PUT || pick_existing(cfg, &r, key);

    /* warm-up, not measured: one call opens the connection and this
     * thread's completion queue (a put warms up on a key of its own) */
    if (ph->kind == PH_PUT) {
        char wkey[KEY_LEN + 1];
        snprintf(wkey, sizeof wkey, "w%03x%012x", (unsigned)cl->id, 0u);
        struct client tmp = {.ph = ph, .id = cl->id};
        do_call(&tmp, PH_PUT, wkey, val, buf);
    } else if (have_keys) {
        struct client tmp = {.ph = ph, .id = cl->id};
        do_call(&tmp, ph->kind, key, val, buf);
    }
    pthread_barrier_wait(&ph->ready);
    pthread_barrier_wait(&ph->go);
    uint64_t end = atomic_load(&ph->end_ns);
    uint64_t seq = 0;
    if (!have_keys) {
        cl->errors = 1;
        snprintf(cl->first_error, sizeof cl->first_error,
                 "no keys to read (the put phase wrote none)");
    }
    while (have_keys) {
        uint64_t t0 = nk_mono_ns();
        if (t0 >= end)
            break;
        if (ph->kind == PH_PUT)
            make_key(key, cl->id, seq);
        else
            pick_existing(cfg, &r, key);
        bool ok = do_call(cl, ph->kind, key, val, buf);
        uint64_t t1 = nk_mono_ns();
        cl->last_done_ns = t1;
        if (ok) {
            cl->ok++;
            hist_add(&cl->h, t1 - t0);
            if (ph->kind == PH_PUT)
                seq++;
        }
    }
    /* only acknowledged keys count as written: gets must find every one */
    if (ph->kind == PH_PUT)
        cfg->written[cl->id] = seq;
    free(buf);
    free(val);
    return NULL;
}

static double process_cpu_seconds(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static int run_phase(struct run_cfg *cfg, const char *name, enum phase_kind kind)
{
    struct phase_shared ph = {.cfg = cfg, .kind = kind};
    pthread_barrier_init(&ph.ready, NULL, (unsigned)cfg->clients + 1);
    pthread_barrier_init(&ph.go, NULL, (unsigned)cfg->clients + 1);
    struct client *cl = nk_calloc((size_t)cfg->clients, sizeof(*cl));
    for (int i = 0; i < cfg->clients; i++) {
        cl[i].ph = &ph;
        cl[i].id = i;
        if (pthread_create(&cl[i].t, NULL, client_main, &cl[i]) != 0) {
            fprintf(stderr, "loadgen: cannot start client thread %d\n", i);
            exit(1);
        }
    }
    pthread_barrier_wait(&ph.ready);
    double cpu0 = process_cpu_seconds();
    uint64_t start = nk_mono_ns();
    atomic_store(&ph.end_ns, start + (uint64_t)cfg->seconds * 1000000000ULL);
    pthread_barrier_wait(&ph.go);
    uint64_t ok = 0, errors = 0, last = start;
    const char *first = "-";
    struct hist *all = nk_calloc(1, sizeof(*all));
    for (int i = 0; i < cfg->clients; i++) {
        pthread_join(cl[i].t, NULL);
        ok += cl[i].ok;
        errors += cl[i].errors;
        if (cl[i].errors && !strcmp(first, "-"))
            first = cl[i].first_error;
        if (cl[i].last_done_ns > last)
            last = cl[i].last_done_ns;
        hist_merge(all, &cl[i].h);
    }
    double cpu = process_cpu_seconds() - cpu0;
    uint64_t redirects = atomic_exchange(&cfg->redirects, 0);
    double secs = (double)(last - start) / 1e9;
    if (secs <= 0)
        secs = 1e-9;
    double p50 = hist_quantile(all, 0.50) / 1000, p99 = hist_quantile(all, 0.99) / 1000;
    printf("RESULT %s %s %" PRIu64 " %.3f %.1f %.1f %.1f %" PRIu64 " %.3f %s\n", cfg->sys_name,
           name, ok, secs, (double)ok / secs, p50, p99, errors, cpu, first);
    fflush(stdout);
    fprintf(stderr,
            "loadgen: %s %s: %" PRIu64 " ok in %.2f s = %.0f ops/s, p50 %.0f us, p99 %.0f us, "
            "%" PRIu64 " errors%s%s, %" PRIu64 " calls sent again (NOT_LEADER)\n",
            cfg->sys_name, name, ok, secs, (double)ok / secs, p50, p99, errors,
            errors ? ", first: " : "", errors ? first : "", redirects);
    free(all);
    free(cl);
    pthread_barrier_destroy(&ph.ready);
    pthread_barrier_destroy(&ph.go);
    return errors ? 1 : 0;
}

/* The keys file: "clients N" then one count per client (keys k<client>0..count-1). */
static int save_keys(const struct run_cfg *cfg, const char *path)
{
    FILE *f = fopen(path, "w");
    if (!f) {
        perror(path);
        return 1;
    }
    fprintf(f, "clients %d\n", cfg->clients);
    for (int i = 0; i < cfg->clients; i++)
        fprintf(f, "%" PRIu64 "\n", cfg->written[i]);
    return fclose(f) == 0 ? 0 : 1;
}

static int load_keys(struct run_cfg *cfg, const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return 0; /* nothing written yet: a get phase will say so */
    int n = -1, rc = 0;
    if (fscanf(f, "clients %d", &n) != 1 || n != cfg->clients) {
        fprintf(stderr, "loadgen: %s was written by a run with %d clients, this one has %d\n",
                path, n, cfg->clients);
        rc = 2;
    }
    for (int i = 0; rc == 0 && i < cfg->clients; i++)
        if (fscanf(f, "%" SCNu64, &cfg->written[i]) != 1) {
            fprintf(stderr, "loadgen: %s: truncated at client %d\n", path, i);
            rc = 2;
        }
    fclose(f);
    return rc;
}

static int parse_int(const char *s, int lo, int hi, const char *what)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (*s == 0 || *end != 0 || v < lo || v > hi) {
        fprintf(stderr, "loadgen: %s must be %d..%d, not '%s'\n", what, lo, hi, s);
        exit(2);
    }
    return (int)v;
}

static bool parse_sys(const char *s, struct run_cfg *cfg)
{
    if (!strcmp(s, "norikv"))
        cfg->sys = SYS_NORIKV;
    else if (!strcmp(s, "etcd"))
        cfg->sys = SYS_ETCD;
    else
        return false;
    cfg->sys_name = s;
    return true;
}

/* Splits cfg->target at commas and opens one channel per target. */
static int open_targets(struct run_cfg *cfg)
{
    char *list = strdup(cfg->target), *save = NULL;
    for (char *t = strtok_r(list, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        if (cfg->n_targets == MAX_TARGETS) {
            fprintf(stderr, "loadgen: at most %d targets\n", MAX_TARGETS);
            free(list);
            return 2;
        }
        cfg->targets[cfg->n_targets] = strdup(t);
        nk_status s = rpc_client_new(t, &cfg->chs[cfg->n_targets]);
        if (!nk_ok(s)) {
            fprintf(stderr, "loadgen: %s: %s\n", t, nk_status_msg(s));
            free(list);
            return 3;
        }
        cfg->n_targets++;
    }
    free(list);
    if (cfg->n_targets == 0) {
        fprintf(stderr, "loadgen: --target is empty\n");
        return 2;
    }
    cfg->ch = cfg->chs[0];
    cfg->leader = nk_calloc(cfg->total_shards, sizeof(*cfg->leader));
    for (uint32_t i = 0; i < cfg->total_shards; i++)
        atomic_init(&cfg->leader[i], (int)(i % (uint32_t)cfg->n_targets));
    return 0;
}

static void close_targets(struct run_cfg *cfg)
{
    for (int i = 0; i < cfg->n_targets; i++) {
        rpc_client_free(cfg->chs[i]);
        free(cfg->targets[i]);
    }
    free(cfg->leader);
}

/* One key of every shard, found by counting up (about total * ln(total)
 * hashes); the array holds total_shards keys of KEY_LEN bytes + NUL. */
static char *shard_keys(uint32_t total)
{
    char *k = nk_calloc(total, KEY_LEN + 1);
    uint32_t left = total;
    char key[KEY_LEN + 1];
    for (uint64_t c = 0; left; c++) {
        snprintf(key, sizeof key, "s%015" PRIx64, c);
        uint32_t s = nk_shard_for_key(key, KEY_LEN, total);
        if (!k[(size_t)s * (KEY_LEN + 1)]) {
            memcpy(k + (size_t)s * (KEY_LEN + 1), key, KEY_LEN + 1);
            left--;
        }
    }
    return k;
}

/* Asks who leads every shard (a lease read of the shard's key, following
 * NOT_LEADER hints; NOT_FOUND from a node means it leads) and fills
 * cfg->leader and counts[target]. Returns the number of shards whose leader
 * was not found. */
static uint32_t discover_leaders(struct run_cfg *cfg, const char *keys, uint32_t *counts)
{
    uint32_t unknown = 0;
    uint8_t buf[256];
    memset(counts, 0, sizeof(*counts) * (size_t)cfg->n_targets);
    for (uint32_t s = 0; s < cfg->total_shards; s++) {
        const char *key = keys + (size_t)s * (KEY_LEN + 1);
        const char *method;
        size_t len = encode(cfg, PH_GET_LEASE, key, NULL, buf, &method);
        int idx = atomic_load(&cfg->leader[s]), found = -1;
        for (int attempt = 0; attempt < 20 && found < 0; attempt++) {
            struct rpc_client_result res;
            rpc_client_unary(cfg->chs[idx], method, buf, len, 2000, &res);
            if (res.code == NK_CODE_OK || res.code == NK_NOT_FOUND) {
                found = idx;
            } else {
                int next = res.code == NK_UNAVAILABLE
                               ? target_index(cfg, rpc_client_trailer(&res, "leader-hint"))
                               : -1;
                if (next < 0 || next == idx) {
                    next = (idx + 1) % cfg->n_targets;
                    usleep(20 * 1000);
                }
                idx = next;
            }
            rpc_client_result_free(&res);
        }
        if (found < 0) {
            unknown++;
            continue;
        }
        atomic_store(&cfg->leader[s], found);
        counts[found]++;
    }
    return unknown;
}

/* Prints "LEADERS <count per target>" to stderr and returns the unknown count. */
static uint32_t report_leaders(struct run_cfg *cfg, const char *keys, uint32_t *counts)
{
    uint32_t unknown = discover_leaders(cfg, keys, counts);
    fprintf(stderr, "loadgen: shard leaders per node:");
    for (int i = 0; i < cfg->n_targets; i++)
        fprintf(stderr, " %s=%u", cfg->targets[i], counts[i]);
    fprintf(stderr, ", %u unknown\n", unknown);
    return unknown;
}

static int cmd_run(int argc, char **argv)
{
    struct run_cfg cfg = {.clients = 64, .seconds = 10, .value_size = 256, .total_shards = 1024};
    const char *phases = NULL, *keys_file = NULL;
    bool have_sys = false;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) {
            fprintf(stderr, "loadgen: run: '%s' needs a value\n", a);
            return 2;
        }
        i++;
        if (!strcmp(a, "--system")) {
            if (!parse_sys(v, &cfg)) {
                fprintf(stderr, "loadgen: --system is norikv or etcd, not '%s'\n", v);
                return 2;
            }
            have_sys = true;
        } else if (!strcmp(a, "--target"))
            cfg.target = v;
        else if (!strcmp(a, "--clients"))
            cfg.clients = parse_int(v, 1, MAX_CLIENTS, "--clients");
        else if (!strcmp(a, "--seconds"))
            cfg.seconds = parse_int(v, 1, 3600, "--seconds");
        else if (!strcmp(a, "--value-size"))
            cfg.value_size = parse_int(v, 1, MAX_VALUE, "--value-size");
        else if (!strcmp(a, "--phases"))
            phases = v;
        else if (!strcmp(a, "--keys-file"))
            keys_file = v;
        else if (!strcmp(a, "--shards"))
            cfg.total_shards = (uint32_t)parse_int(v, 1, 65536, "--shards");
        else {
            fprintf(stderr, "loadgen: run: unknown option '%s'\n", a);
            return 2;
        }
    }
    if (!have_sys || !cfg.target) {
        fprintf(stderr, "loadgen: run needs --system and --target\n");
        return 2;
    }
    if (!phases)
        phases = cfg.sys == SYS_NORIKV ? "put,get-lease" : "put,get-serializable,get-linearizable";
    int orc = open_targets(&cfg);
    if (orc)
        return orc;
    if (cfg.sys == SYS_NORIKV && cfg.n_targets > 1) {
        char *keys = shard_keys(cfg.total_shards);
        uint32_t counts[MAX_TARGETS];
        report_leaders(&cfg, keys, counts);
        free(keys);
    }
    cfg.written = nk_calloc((size_t)cfg.clients, sizeof(uint64_t));
    int rc = keys_file ? load_keys(&cfg, keys_file) : 0;
    char *list = strdup(phases), *save = NULL;
    for (char *p = strtok_r(list, ",", &save); p && rc != 2; p = strtok_r(NULL, ",", &save)) {
        int k = -1;
        for (size_t j = 0; j < sizeof phase_names / sizeof phase_names[0]; j++)
            if (!strcmp(p, phase_names[j].name))
                k = (int)j;
        if (k < 0 || (cfg.sys == SYS_ETCD && phase_names[k].kind == PH_GET_LEASE) ||
            (cfg.sys == SYS_NORIKV && phase_names[k].kind == PH_GET_SER)) {
            fprintf(stderr, "loadgen: phase '%s' does not apply to %s\n", p, cfg.sys_name);
            rc = 2;
            break;
        }
        rc |= run_phase(&cfg, p, phase_names[k].kind);
        if (phase_names[k].kind == PH_PUT && keys_file)
            rc |= save_keys(&cfg, keys_file);
    }
    free(list);
    free(cfg.written);
    close_targets(&cfg);
    return rc;
}

/* ------------------------------------------------------------ failover */

/*
 * One failover measurement on a NoriKV cluster: writer threads put to every
 * shard's key in turn (thread t owns shards t, t + N, ...), routed as in
 * run; after a second of that load the node leading the most shards gets
 * SIGKILL, and the time from the kill until a put started after it
 * succeeds on every shard that node led is the failover time (its
 * resolution is one pass of a writer over its shards).
 */
struct fo_shared {
    struct run_cfg *cfg;
    const char *keys;
    int nthreads;
    _Atomic uint64_t kill_ns; /* 0 until the kill */
    atomic_bool stop;
    _Atomic uint64_t *recovered_ns; /* per shard: first success of a put started after the kill */
    _Atomic uint64_t *last_ok_ns;   /* per shard: the last success */
    _Atomic uint64_t puts, errors;
};

struct fo_writer {
    struct fo_shared *fo;
    int id;
    pthread_t t;
};

static void *fo_writer_main(void *arg)
{
    struct fo_writer *w = arg;
    struct fo_shared *fo = w->fo;
    struct run_cfg *cfg = fo->cfg;
    uint8_t *val = nk_malloc((size_t)cfg->value_size);
    memset(val, 'f', (size_t)cfg->value_size);
    uint8_t *buf = nk_malloc(REQ_CAP);
    while (!atomic_load(&fo->stop)) {
        for (uint32_t s = (uint32_t)w->id; s < cfg->total_shards && !atomic_load(&fo->stop);
             s += (uint32_t)fo->nthreads) {
            const char *key = fo->keys + (size_t)s * (KEY_LEN + 1), *method;
            size_t len = encode(cfg, PH_PUT, key, val, buf, &method);
            uint64_t t0 = nk_mono_ns();
            struct rpc_client_result res;
            routed_unary(cfg, w->id, key, method, buf, len, 1000, 4, &res);
            uint64_t t1 = nk_mono_ns(), k = atomic_load(&fo->kill_ns);
            if (res.code == NK_CODE_OK) {
                atomic_fetch_add(&fo->puts, 1);
                atomic_store(&fo->last_ok_ns[s], t1);
                if (k && t0 > k && atomic_load(&fo->recovered_ns[s]) == 0)
                    atomic_store(&fo->recovered_ns[s], t1);
            } else {
                atomic_fetch_add(&fo->errors, 1);
            }
            rpc_client_result_free(&res);
        }
    }
    free(buf);
    free(val);
    return NULL;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static int cmd_failover(int argc, char **argv)
{
    struct run_cfg cfg = {.clients = 64, .value_size = 256, .total_shards = 1024};
    const char *pids_arg = NULL;
    int timeout_s = 30;
    cfg.sys = SYS_NORIKV;
    cfg.sys_name = "norikv";
    for (int i = 0; i + 1 < argc; i += 2) {
        const char *a = argv[i], *v = argv[i + 1];
        if (!strcmp(a, "--target"))
            cfg.target = v;
        else if (!strcmp(a, "--pids"))
            pids_arg = v;
        else if (!strcmp(a, "--clients"))
            cfg.clients = parse_int(v, 1, MAX_CLIENTS, "--clients");
        else if (!strcmp(a, "--shards"))
            cfg.total_shards = (uint32_t)parse_int(v, 1, 65536, "--shards");
        else if (!strcmp(a, "--value-size"))
            cfg.value_size = parse_int(v, 1, MAX_VALUE, "--value-size");
        else if (!strcmp(a, "--timeout"))
            timeout_s = parse_int(v, 1, 600, "--timeout");
        else {
            fprintf(stderr, "loadgen: failover: unknown option '%s'\n", a);
            return 2;
        }
    }
    if (!cfg.target || !pids_arg) {
        fprintf(stderr, "loadgen: failover needs --target A,B,C and --pids P,Q,R (same order)\n");
        return 2;
    }
    int rc = open_targets(&cfg);
    if (rc)
        return rc;
    long pids[MAX_TARGETS];
    int npids = 0;
    char *list = strdup(pids_arg), *save = NULL;
    for (char *t = strtok_r(list, ",", &save); t && npids < MAX_TARGETS;
         t = strtok_r(NULL, ",", &save))
        pids[npids++] = strtol(t, NULL, 10);
    free(list);
    if (npids != cfg.n_targets || cfg.n_targets < 2) {
        fprintf(stderr, "loadgen: failover: %d pids for %d targets (need one per target, >= 2)\n",
                npids, cfg.n_targets);
        return 2;
    }
    char *keys = shard_keys(cfg.total_shards);
    uint32_t counts[MAX_TARGETS];
    if (report_leaders(&cfg, keys, counts) != 0) {
        fprintf(stderr, "loadgen: failover: not every shard has a leader; not killing\n");
        return 1;
    }
    int victim = 0;
    for (int i = 1; i < cfg.n_targets; i++)
        if (counts[i] > counts[victim])
            victim = i;
    uint32_t *led = nk_calloc(cfg.total_shards, sizeof(*led));
    uint32_t nled = 0;
    for (uint32_t s = 0; s < cfg.total_shards; s++)
        if (atomic_load(&cfg.leader[s]) == victim)
            led[nled++] = s;

    struct fo_shared fo = {.cfg = &cfg, .keys = keys, .nthreads = cfg.clients};
    fo.recovered_ns = nk_calloc(cfg.total_shards, sizeof(*fo.recovered_ns));
    fo.last_ok_ns = nk_calloc(cfg.total_shards, sizeof(*fo.last_ok_ns));
    struct fo_writer *w = nk_calloc((size_t)cfg.clients, sizeof(*w));
    for (int i = 0; i < cfg.clients; i++) {
        w[i] = (struct fo_writer){.fo = &fo, .id = i};
        if (pthread_create(&w[i].t, NULL, fo_writer_main, &w[i]) != 0) {
            fprintf(stderr, "loadgen: cannot start writer %d\n", i);
            exit(1);
        }
    }
    usleep(1000 * 1000); /* the load runs on every shard before the kill */
    uint64_t warm = nk_mono_ns();
    usleep(500 * 1000);
    uint32_t idle_shards = 0;
    for (uint32_t s = 0; s < cfg.total_shards; s++)
        if (atomic_load(&fo.last_ok_ns[s]) < warm)
            idle_shards++;
    uint64_t puts_before = atomic_load(&fo.puts);
    uint64_t kill_ns = nk_mono_ns();
    atomic_store(&fo.kill_ns, kill_ns);
    if (kill((pid_t)pids[victim], SIGKILL) != 0) {
        perror("loadgen: failover: kill");
        atomic_store(&fo.stop, true);
        rc = 1;
    }
    uint64_t deadline = kill_ns + (uint64_t)timeout_s * 1000000000ULL;
    uint32_t pending = nled;
    while (rc == 0 && pending && nk_mono_ns() < deadline) {
        usleep(1000);
        pending = 0;
        for (uint32_t i = 0; i < nled; i++)
            if (atomic_load(&fo.recovered_ns[led[i]]) == 0)
                pending++;
    }
    atomic_store(&fo.stop, true);
    for (int i = 0; i < cfg.clients; i++)
        pthread_join(w[i].t, NULL);
    uint64_t *d = nk_calloc(nled ? nled : 1, sizeof(*d));
    uint32_t nd = 0;
    for (uint32_t i = 0; i < nled; i++) {
        uint64_t r = atomic_load(&fo.recovered_ns[led[i]]);
        if (r)
            d[nd++] = r - kill_ns;
    }
    qsort(d, nd, sizeof(*d), cmp_u64);
    /* FAILOVER <victim index> <shards it led> <shards recovered> <ms until all
     * recovered (or -1)> <median shard ms> <shards without a success in the
     * 0.5 s before the kill> <puts before the kill> */
    printf("FAILOVER %d %u %u %.1f %.1f %u %" PRIu64 "\n", victim, nled, nd,
           nd == nled && nd ? (double)d[nd - 1] / 1e6 : -1.0,
           nd ? (double)d[nd / 2] / 1e6 : -1.0, idle_shards, puts_before);
    fflush(stdout);
    fprintf(stderr,
            "loadgen: killed %s (pid %ld, leading %u shards): writes to all of them succeed "
            "again after %.1f ms (median shard %.1f ms), %u/%u recovered, %" PRIu64
            " failed puts\n",
            cfg.targets[victim], pids[victim], nled, nd ? (double)d[nd - 1] / 1e6 : -1.0,
            nd ? (double)d[nd / 2] / 1e6 : -1.0, nd, nled, atomic_load(&fo.errors));
    if (nd != nled)
        rc = 1;
    free(d);
    free(w);
    free(fo.recovered_ns);
    free(fo.last_ok_ns);
    free(led);
    free(keys);
    close_targets(&cfg);
    return rc;
}

/* `leaders --target A,B,C [--shards N]`: the shard leaders per node. */
static int cmd_leaders(int argc, char **argv)
{
    struct run_cfg cfg = {.value_size = 1, .total_shards = 1024};
    cfg.sys = SYS_NORIKV;
    cfg.sys_name = "norikv";
    for (int i = 0; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--target"))
            cfg.target = argv[i + 1];
        else if (!strcmp(argv[i], "--shards"))
            cfg.total_shards = (uint32_t)parse_int(argv[i + 1], 1, 65536, "--shards");
        else {
            fprintf(stderr, "loadgen: leaders: unknown option '%s'\n", argv[i]);
            return 2;
        }
    }
    if (!cfg.target) {
        fprintf(stderr, "loadgen: leaders needs --target\n");
        return 2;
    }
    int rc = open_targets(&cfg);
    if (rc)
        return rc;
    char *keys = shard_keys(cfg.total_shards);
    uint32_t counts[MAX_TARGETS];
    uint32_t unknown = report_leaders(&cfg, keys, counts);
    printf("LEADERS");
    for (int i = 0; i < cfg.n_targets; i++)
        printf(" %u", counts[i]);
    printf(" %u\n", unknown);
    free(keys);
    close_targets(&cfg);
    return unknown ? 1 : 0;
}

/* True when a TCP connection to "127.0.0.1:port" opens (loopback only). */
static bool tcp_open(const char *target)
{
    const char *colon = strrchr(target, ':');
    if (!colon)
        return false;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(colon + 1))};
    char host[64];
    snprintf(host, sizeof host, "%.*s", (int)(colon - target), target);
    if (inet_pton(AF_INET, host, &a.sin_addr) != 1)
        return false;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    bool ok = fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
    if (fd >= 0)
        close(fd);
    return ok;
}

/* Until one read answers (etcd: a leader exists; NoriKV: NOT_FOUND counts).
 * The port is probed first and each attempt gets a fresh channel: a channel
 * that met a refused connection waits out gRPC's reconnect backoff (seconds). */
static int cmd_wait(int argc, char **argv)
{
    struct run_cfg cfg = {.value_size = 1, .clients = 1};
    int timeout_s = 30;
    for (int i = 0; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--system")) {
            if (!parse_sys(argv[i + 1], &cfg))
                return 2;
        } else if (!strcmp(argv[i], "--target"))
            cfg.target = argv[i + 1];
        else if (!strcmp(argv[i], "--timeout"))
            timeout_s = parse_int(argv[i + 1], 1, 600, "--timeout");
        else {
            fprintf(stderr, "loadgen: wait: unknown option '%s'\n", argv[i]);
            return 2;
        }
    }
    if (!cfg.target || !cfg.sys_name) {
        fprintf(stderr, "loadgen: wait needs --system and --target\n");
        return 2;
    }
    uint64_t end = nk_mono_ns() + (uint64_t)timeout_s * 1000000000ULL;
    uint8_t buf[256];
    char key[KEY_LEN + 1];
    make_key(key, 0xfff, 0);
    int rc = 1;
    while (rc && nk_mono_ns() < end) {
        if (!tcp_open(cfg.target)) {
            usleep(50 * 1000);
            continue;
        }
        if (!nk_ok(rpc_client_new(cfg.target, &cfg.ch)))
            return 3;
        const char *method;
        size_t len = encode(&cfg, PH_GET_LIN, key, NULL, buf, &method);
        struct rpc_client_result res;
        rpc_client_unary(cfg.ch, method, buf, len, 1000, &res);
        if (res.code == NK_CODE_OK || res.code == NK_NOT_FOUND)
            rc = 0;
        rpc_client_result_free(&res);
        rpc_client_free(cfg.ch);
        if (rc)
            usleep(100 * 1000);
    }
    if (rc)
        fprintf(stderr, "loadgen: %s at %s did not answer within %d s\n", cfg.sys_name, cfg.target,
                timeout_s);
    return rc;
}

/* Prints n loopback ports that were free a moment ago (all bound at once, so
 * they are distinct). */
static int cmd_freeport(int argc, char **argv)
{
    int n = argc > 0 ? parse_int(argv[0], 1, 16, "count") : 1;
    int fds[16];
    for (int i = 0; i < n; i++) {
        fds[i] = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        socklen_t al = sizeof a;
        if (fds[i] < 0 || bind(fds[i], (struct sockaddr *)&a, sizeof a) != 0 ||
            getsockname(fds[i], (struct sockaddr *)&a, &al) != 0) {
            perror("loadgen: freeport");
            return 1;
        }
        printf("%s%u", i ? " " : "", ntohs(a.sin_port));
    }
    printf("\n");
    for (int i = 0; i < n; i++)
        close(fds[i]);
    return 0;
}

/* ------------------------------------------------------------ table */

#define MAX_ROWS 32

struct row {
    char sys[16], phase[32], first[200];
    double ops_s, p50, p99, secs, client_cpu, server_cpu; /* server_cpu < 0: unknown */
    uint64_t ok, errors;
};

static const struct row *find_row(const struct row *rows, int n, const char *sys,
                                  const char *phase)
{
    for (int i = 0; i < n; i++)
        if (!strcmp(rows[i].sys, sys) && !strcmp(rows[i].phase, phase))
            return &rows[i];
    return NULL;
}

/* Server CPU per successful request, in seconds; < 0 when unknown. */
static double server_cpu_per_op(const struct row *r)
{
    return r->server_cpu >= 0 && r->ok ? r->server_cpu / (double)r->ok : -1;
}

static void print_ratio(const struct row *rows, int n, const char *label, const char *nphase,
                        const char *ephase, double goal)
{
    const struct row *a = find_row(rows, n, "norikv", nphase);
    const struct row *b = find_row(rows, n, "etcd", ephase);
    if (!a || !b || b->ops_s <= 0 || b->p99 <= 0) {
        printf("%-36s %8s %8s %10s   (not measured)\n", label, "-", "-", "-");
        return;
    }
    double tr = a->ops_s / b->ops_s, pr = a->p99 / b->p99;
    double ca = server_cpu_per_op(a), cb = server_cpu_per_op(b);
    char cpu[32] = "-";
    if (ca > 0 && cb > 0)
        snprintf(cpu, sizeof cpu, "%.2f", ca / cb);
    bool clean = a->errors == 0 && b->errors == 0;
    printf("%-36s %7.2fx %8.2f %10s   >= %.0fx, p99 <= etcd: %s%s\n", label, tr, pr, cpu, goal,
           tr >= goal && pr <= 1.0 && clean ? "MET" : "MISSED",
           clean ? "" : " (failed requests: see above)");
}

static int cmd_table(int argc, char **argv)
{
    if (argc < 1) {
        fprintf(stderr, "loadgen: table FILE\n");
        return 2;
    }
    FILE *f = fopen(argv[0], "r");
    if (!f) {
        perror(argv[0]);
        return 1;
    }
    struct row rows[MAX_ROWS];
    int n = 0;
    char line[1024];
    struct {
        char what[64];
        double pct, secs;
    } idle[8];
    int nidle = 0;
    while (fgets(line, sizeof line, f)) {
        struct row r;
        memset(&r, 0, sizeof r);
        int pos = 0;
        char sys[16], phase[32];
        double cpu;
        if (n < MAX_ROWS &&
            sscanf(line, "RESULT %15s %31s %" SCNu64 " %lf %lf %lf %lf %" SCNu64 " %lf %n", r.sys,
                   r.phase, &r.ok, &r.secs, &r.ops_s, &r.p50, &r.p99, &r.errors, &r.client_cpu,
                   &pos) == 9) {
            snprintf(r.first, sizeof r.first, "%s", line + pos);
            r.first[strcspn(r.first, "\n")] = 0;
            r.server_cpu = -1;
            rows[n++] = r;
        } else if (sscanf(line, "SERVERCPU %15s %31s %lf", sys, phase, &cpu) == 3) {
            for (int i = 0; i < n; i++)
                if (!strcmp(rows[i].sys, sys) && !strcmp(rows[i].phase, phase))
                    rows[i].server_cpu = cpu;
        } else if (nidle < 8 && sscanf(line, "IDLE %63s %lf %lf", idle[nidle].what,
                                       &idle[nidle].pct, &idle[nidle].secs) == 3) {
            nidle++;
        }
    }
    fclose(f);
    /* CPU per op: server and load generator, in microseconds of CPU per
     * successful request (on a 2-core machine they share the cores) */
    printf("%-8s %-18s %10s %9s %9s %7s %12s %12s\n", "system", "phase", "ops/s", "p50 ms",
           "p99 ms", "errors", "server us/op", "client us/op");
    for (int i = 0; i < n; i++) {
        const struct row *r = &rows[i];
        char scpu[32] = "-";
        if (r->server_cpu >= 0 && r->ok)
            snprintf(scpu, sizeof scpu, "%.0f", r->server_cpu * 1e6 / (double)r->ok);
        printf("%-8s %-18s %10.0f %9.2f %9.2f %7" PRIu64 " %12s %12.0f\n", r->sys, r->phase,
               r->ops_s, r->p50 / 1000, r->p99 / 1000, r->errors, scpu,
               r->ok ? r->client_cpu * 1e6 / (double)r->ok : 0.0);
    }
    for (int i = 0; i < n; i++)
        if (rows[i].errors)
            printf("  %s %s: %" PRIu64 " failed requests, first: %s\n", rows[i].sys,
                   rows[i].phase, rows[i].errors, rows[i].first);
    printf("\n%-36s %8s %8s %10s   %s\n", "NoriKV/etcd", "ops/s", "p99", "server CPU", "goal");
    printf("(ratios NoriKV/etcd: ops/s, higher is better; p99 and server CPU per op, lower "
           "is better)\n");
    print_ratio(rows, n, "put (fsync) / put (fsync)", "put", "put", 3);
    print_ratio(rows, n, "get lease / get serializable", "get-lease", "get-serializable", 5);
    print_ratio(rows, n, "get lease / get linearizable", "get-lease", "get-linearizable", 5);
    if (find_row(rows, n, "norikv", "get-linearizable"))
        print_ratio(rows, n, "get linearizable / get linearizable", "get-linearizable",
                    "get-linearizable", 5);
    for (int i = 0; i < nidle; i++)
        printf("\nidle norikv-server, 1024 shards, %s: %.2f%% of one core over %.0f s "
               "(goal < 2%%): %s",
               idle[i].what, idle[i].pct, idle[i].secs, idle[i].pct < 2.0 ? "MET" : "MISSED");
    printf("\n");
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s run|wait|failover|leaders|freeport|table ... (see loadgen.c)\n",
                argv[0]);
        return 2;
    }
    if (!strcmp(argv[1], "run"))
        return cmd_run(argc - 2, argv + 2);
    if (!strcmp(argv[1], "wait"))
        return cmd_wait(argc - 2, argv + 2);
    if (!strcmp(argv[1], "failover"))
        return cmd_failover(argc - 2, argv + 2);
    if (!strcmp(argv[1], "leaders"))
        return cmd_leaders(argc - 2, argv + 2);
    if (!strcmp(argv[1], "freeport"))
        return cmd_freeport(argc - 2, argv + 2);
    if (!strcmp(argv[1], "table"))
        return cmd_table(argc - 2, argv + 2);
    fprintf(stderr, "loadgen: unknown subcommand '%s'\n", argv[1]);
    return 2;
}
