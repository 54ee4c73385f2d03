/*
 * norikv: the command-line client.
 *
 *   norikv [--addr HOST:PORT] [--timeout-ms N] put KEY VALUE [--ttl-ms N] [--if-match T.I]
 *          [--if-not-exists] [--idempotency-key K]
 *   norikv ... get KEY [--consistency lease|linearizable|stale_ok]
 *   norikv ... del KEY [--if-match T.I] [--idempotency-key K]
 *   norikv ... cluster
 *   norikv ... placement          the placement plan, moves in flight (docs/membership.md)
 *   norikv ... drain [NODE]       drain NODE (default: the node at --addr); it then leaves
 *   norikv ... remove NODE        remove a dead member for good; its replicas are re-created
 *   norikv ... bench [--clients N] [--seconds S] [--value-size B] [--puts PCT] [--keys N]
 *
 * It talks to one node (default 127.0.0.1:9001, or $NORIKV_ADDR); on a
 * NOT_LEADER answer with a leader-hint it retries once at the hinted node.
 * Exit status: 0 success, 1 the server said no (not found, version mismatch,
 * ...), 2 usage errors, 3 the server could not be reached or failed.
 */
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "norikv/v1/norikv.pb-c.h"
#include "rpc/rpc_client.h"
#include "util/util.h"

static const char *addr = "127.0.0.1:9001";
static int64_t timeout_ms = 10000;

static void usage(FILE *f)
{
    fprintf(f,
            "usage: norikv [--addr HOST:PORT] [--timeout-ms N] COMMAND ...\n"
            "  put KEY VALUE [--ttl-ms N] [--if-match TERM.INDEX] [--if-not-exists]\n"
            "                [--idempotency-key K]      write a value; prints its version\n"
            "  get KEY [--consistency lease|linearizable|stale_ok]\n"
            "                                           print the value and its version\n"
            "  del KEY [--if-match TERM.INDEX] [--idempotency-key K]\n"
            "                                           delete a key\n"
            "  cluster                                  print the cluster view\n"
            "  placement                                the placement plan and the moves in\n"
            "                                           flight, with their progress\n"
            "  drain [NODE]                             move every replica off NODE (default:\n"
            "                                           the node at --addr); it then leaves\n"
            "  remove NODE                              remove a dead member for good (its\n"
            "                                           replicas are re-created elsewhere)\n"
            "  bench [--clients N] [--seconds S] [--value-size B] [--puts PCT] [--keys N]\n"
            "                                           a quick load test\n"
            "The address defaults to $NORIKV_ADDR, else 127.0.0.1:9001.\n"
            "Exit status: 0 ok, 1 refused by the server (not found, version mismatch,\n"
            "already exists, invalid argument), 2 usage, 3 unreachable or failed.\n");
}

static int exit_for(enum nk_code c)
{
    switch (c) {
    case NK_CODE_OK: return 0;
    case NK_NOT_FOUND:
    case NK_FAILED_PRECONDITION:
    case NK_ALREADY_EXISTS:
    case NK_INVALID_ARGUMENT:
    case NK_UNIMPLEMENTED: return 1;
    default: return 3;
    }
}

/* One call, following a leader hint once. */
static void call(const char *method, const void *req, size_t len, struct rpc_client_result *res)
{
    struct rpc_client *c;
    nk_status s = rpc_client_new(addr, &c);
    if (!nk_ok(s)) {
        fprintf(stderr, "norikv: %s\n", nk_status_msg(s));
        exit(3);
    }
    rpc_client_unary(c, method, req, len, timeout_ms, res);
    const char *hint = rpc_client_trailer(res, "leader-hint");
    if (res->code == NK_UNAVAILABLE && hint && strstr(res->message, "NOT_LEADER")) {
        char h[256];
        snprintf(h, sizeof h, "%s", hint);
        rpc_client_free(c);
        rpc_client_result_free(res);
        s = rpc_client_new(h, &c);
        if (!nk_ok(s)) {
            fprintf(stderr, "norikv: %s\n", nk_status_msg(s));
            exit(3);
        }
        rpc_client_unary(c, method, req, len, timeout_ms, res);
    }
    rpc_client_free(c);
}

static int report_error(const struct rpc_client_result *res)
{
    fprintf(stderr, "norikv: %s: %s", nk_code_name(res->code),
            res->message[0] ? res->message : "(no message)");
    const char *cur = rpc_client_trailer(res, "current-version");
    if (cur)
        fprintf(stderr, " (current version %s)", cur);
    const char *hint = rpc_client_trailer(res, "leader-hint");
    if (hint)
        fprintf(stderr, " (leader %s)", hint);
    if (res->code == NK_UNAVAILABLE && !strstr(res->message, "NOT_LEADER"))
        fprintf(stderr, " [is a server listening on %s?]", addr);
    fprintf(stderr, "\n");
    return exit_for(res->code);
}

static bool parse_version(const char *s, Norikv__V1__Version *v)
{
    unsigned long long t, i;
    char tail;
    if (sscanf(s, "%llu.%llu%c", &t, &i, &tail) != 2)
        return false;
    norikv__v1__version__init(v);
    v->term = t;
    v->index = i;
    return true;
}

static void print_bytes(FILE *f, const uint8_t *p, size_t n)
{
    fwrite(p, 1, n, f);
}

/* ------------------------------------------------------------- commands */

static int cmd_put(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    Norikv__V1__PutRequest req = NORIKV__V1__PUT_REQUEST__INIT;
    Norikv__V1__Version ifm;
    req.key.data = (uint8_t *)argv[0];
    req.key.len = strlen(argv[0]);
    req.value.data = (uint8_t *)argv[1];
    req.value.len = strlen(argv[1]);
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--ttl-ms") && i + 1 < argc) {
            req.ttl_ms = strtoull(argv[++i], NULL, 10);
        } else if (!strcmp(argv[i], "--if-match") && i + 1 < argc) {
            if (!parse_version(argv[++i], &ifm)) {
                fprintf(stderr, "norikv: --if-match takes TERM.INDEX, not '%s'\n", argv[i]);
                return 2;
            }
            req.if_match = &ifm;
        } else if (!strcmp(argv[i], "--if-not-exists")) {
            req.if_not_exists = 1;
        } else if (!strcmp(argv[i], "--idempotency-key") && i + 1 < argc) {
            req.idempotency_key = argv[++i];
        } else {
            fprintf(stderr, "norikv: put: unknown option '%s'\n", argv[i]);
            return 2;
        }
    }
    size_t len = norikv__v1__put_request__get_packed_size(&req);
    uint8_t *buf = nk_malloc(len + 1);
    norikv__v1__put_request__pack(&req, buf);
    struct rpc_client_result res;
    call("/norikv.v1.Kv/Put", buf, len, &res);
    free(buf);
    int rc;
    if (res.code != NK_CODE_OK) {
        rc = report_error(&res);
    } else {
        Norikv__V1__PutResponse *r =
            norikv__v1__put_response__unpack(NULL, res.body.len, res.body.data);
        if (!r) {
            fprintf(stderr, "norikv: the server's answer is not a PutResponse\n");
            rc = 3;
        } else {
            printf("version %" PRIu64 ".%" PRIu64 "\n", r->version ? r->version->term : 0,
                   r->version ? r->version->index : 0);
            norikv__v1__put_response__free_unpacked(r, NULL);
            rc = 0;
        }
    }
    rpc_client_result_free(&res);
    return rc;
}

static int cmd_get(int argc, char **argv)
{
    if (argc < 1) {
        usage(stderr);
        return 2;
    }
    Norikv__V1__GetRequest req = NORIKV__V1__GET_REQUEST__INIT;
    req.key.data = (uint8_t *)argv[0];
    req.key.len = strlen(argv[0]);
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--consistency") && i + 1 < argc) {
            req.consistency = argv[++i];
        } else {
            fprintf(stderr, "norikv: get: unknown option '%s'\n", argv[i]);
            return 2;
        }
    }
    size_t len = norikv__v1__get_request__get_packed_size(&req);
    uint8_t *buf = nk_malloc(len + 1);
    norikv__v1__get_request__pack(&req, buf);
    struct rpc_client_result res;
    call("/norikv.v1.Kv/Get", buf, len, &res);
    free(buf);
    int rc;
    if (res.code != NK_CODE_OK) {
        rc = report_error(&res);
    } else {
        Norikv__V1__GetResponse *r =
            norikv__v1__get_response__unpack(NULL, res.body.len, res.body.data);
        if (!r) {
            fprintf(stderr, "norikv: the server's answer is not a GetResponse\n");
            rc = 3;
        } else {
            print_bytes(stdout, r->value.data, r->value.len);
            printf("\n");
            fprintf(stderr, "version %" PRIu64 ".%" PRIu64 "\n",
                    r->version ? r->version->term : 0, r->version ? r->version->index : 0);
            norikv__v1__get_response__free_unpacked(r, NULL);
            rc = 0;
        }
    }
    rpc_client_result_free(&res);
    return rc;
}

static int cmd_del(int argc, char **argv)
{
    if (argc < 1) {
        usage(stderr);
        return 2;
    }
    Norikv__V1__DeleteRequest req = NORIKV__V1__DELETE_REQUEST__INIT;
    Norikv__V1__Version ifm;
    req.key.data = (uint8_t *)argv[0];
    req.key.len = strlen(argv[0]);
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--if-match") && i + 1 < argc) {
            if (!parse_version(argv[++i], &ifm)) {
                fprintf(stderr, "norikv: --if-match takes TERM.INDEX, not '%s'\n", argv[i]);
                return 2;
            }
            req.if_match = &ifm;
        } else if (!strcmp(argv[i], "--idempotency-key") && i + 1 < argc) {
            req.idempotency_key = argv[++i];
        } else {
            fprintf(stderr, "norikv: del: unknown option '%s'\n", argv[i]);
            return 2;
        }
    }
    size_t len = norikv__v1__delete_request__get_packed_size(&req);
    uint8_t *buf = nk_malloc(len + 1);
    norikv__v1__delete_request__pack(&req, buf);
    struct rpc_client_result res;
    call("/norikv.v1.Kv/Delete", buf, len, &res);
    free(buf);
    int rc;
    if (res.code != NK_CODE_OK) {
        rc = report_error(&res);
    } else {
        Norikv__V1__DeleteResponse *r =
            norikv__v1__delete_response__unpack(NULL, res.body.len, res.body.data);
        if (!r) {
            fprintf(stderr, "norikv: the server's answer is not a DeleteResponse\n");
            rc = 3;
        } else {
            printf("%s at version %" PRIu64 ".%" PRIu64 "\n",
                   r->tombstoned ? "deleted" : "not present", r->version ? r->version->term : 0,
                   r->version ? r->version->index : 0);
            norikv__v1__delete_response__free_unpacked(r, NULL);
            rc = 0;
        }
    }
    rpc_client_result_free(&res);
    return rc;
}

static int cmd_cluster(void)
{
    Norikv__V1__ClusterView req = NORIKV__V1__CLUSTER_VIEW__INIT;
    size_t len = norikv__v1__cluster_view__get_packed_size(&req);
    uint8_t buf[16];
    norikv__v1__cluster_view__pack(&req, buf);
    struct rpc_client *c;
    nk_status s = rpc_client_new(addr, &c);
    if (!nk_ok(s)) {
        fprintf(stderr, "norikv: %s\n", nk_status_msg(s));
        return 3;
    }
    struct rpc_client_result res;
    rpc_client_first_message(c, "/norikv.v1.Meta/WatchCluster", buf, len, timeout_ms, &res);
    rpc_client_free(c);
    int rc = 0;
    if (res.code != NK_CODE_OK || res.body.len == 0) {
        rc = res.code == NK_CODE_OK ? 3 : report_error(&res);
        if (res.code == NK_CODE_OK)
            fprintf(stderr, "norikv: the stream ended without a cluster view\n");
    } else {
        Norikv__V1__ClusterView *v =
            norikv__v1__cluster_view__unpack(NULL, res.body.len, res.body.data);
        if (!v) {
            fprintf(stderr, "norikv: the server's answer is not a ClusterView\n");
            rc = 3;
        } else {
            printf("epoch %" PRIu64 ", %zu node(s), %zu shard(s)\n", v->epoch, v->n_nodes,
                   v->n_shards);
            for (size_t i = 0; i < v->n_nodes; i++) {
                size_t led = 0, replicas = 0;
                for (size_t s2 = 0; s2 < v->n_shards; s2++)
                    for (size_t r = 0; r < v->shards[s2]->n_replicas; r++)
                        if (!strcmp(v->shards[s2]->replicas[r]->node_id, v->nodes[i]->id)) {
                            replicas++;
                            led += v->shards[s2]->replicas[r]->leader;
                        }
                printf("  %-24s %-22s %-8s replicas %zu, leads %zu\n", v->nodes[i]->id,
                       v->nodes[i]->addr, v->nodes[i]->role, replicas, led);
            }
            size_t leaderless = 0;
            for (size_t s2 = 0; s2 < v->n_shards; s2++) {
                bool has = false;
                for (size_t r = 0; r < v->shards[s2]->n_replicas; r++)
                    has |= v->shards[s2]->replicas[r]->leader;
                leaderless += !has;
            }
            if (leaderless)
                printf("  %zu shard(s) without a leader\n", leaderless);
            norikv__v1__cluster_view__free_unpacked(v, NULL);
        }
    }
    rpc_client_result_free(&res);
    return rc;
}

/* ----------------------------------------------------------- membership */

/* The client address of member `name` from the view of the node at addr;
 * false when unknown. */
static bool member_addr(const char *name, char *out, size_t cap)
{
    Norikv__V1__ClusterView req = NORIKV__V1__CLUSTER_VIEW__INIT;
    uint8_t buf[16];
    size_t len = norikv__v1__cluster_view__pack(&req, buf);
    struct rpc_client *c;
    nk_status s = rpc_client_new(addr, &c);
    if (!nk_ok(s)) {
        fprintf(stderr, "norikv: %s\n", nk_status_msg(s));
        exit(3);
    }
    struct rpc_client_result res;
    rpc_client_first_message(c, "/norikv.v1.Meta/WatchCluster", buf, len, timeout_ms, &res);
    rpc_client_free(c);
    bool found = false;
    Norikv__V1__ClusterView *v =
        res.code == NK_CODE_OK ? norikv__v1__cluster_view__unpack(NULL, res.body.len, res.body.data)
                               : NULL;
    for (size_t i = 0; v && i < v->n_nodes && !found; i++)
        if (!strcmp(v->nodes[i]->id, name) && v->nodes[i]->addr[0]) {
            snprintf(out, cap, "%s", v->nodes[i]->addr);
            found = true;
        }
    if (v)
        norikv__v1__cluster_view__free_unpacked(v, NULL);
    rpc_client_result_free(&res);
    return found;
}

static int print_membership(const struct rpc_client_result *res)
{
    Norikv__V1__NodeMembership *m =
        norikv__v1__node_membership__unpack(NULL, res->body.len, res->body.data);
    if (!m) {
        fprintf(stderr, "norikv: the server's answer is not a NodeMembership\n");
        return 3;
    }
    printf("%s: %s%s, %u replica(s)\n", m->node_id, m->state, m->draining ? ", draining" : "",
           m->replicas);
    norikv__v1__node_membership__free_unpacked(m, NULL);
    return 0;
}

static int cmd_drain(int argc, char **argv)
{
    if (argc > 1) {
        usage(stderr);
        return 2;
    }
    Norikv__V1__DrainNodeRequest req = NORIKV__V1__DRAIN_NODE_REQUEST__INIT;
    char target[256];
    if (argc == 1) {
        req.node_id = argv[0];
        /* DrainNode is answered by the node being drained */
        if (!member_addr(argv[0], target, sizeof target)) {
            fprintf(stderr, "norikv: no member named %s in the cluster view of %s\n", argv[0],
                    addr);
            return 1;
        }
        addr = target;
    }
    size_t len = norikv__v1__drain_node_request__get_packed_size(&req);
    uint8_t *buf = nk_malloc(len + 1);
    norikv__v1__drain_node_request__pack(&req, buf);
    struct rpc_client_result res;
    call("/norikv.v1.Admin/DrainNode", buf, len, &res);
    free(buf);
    int rc = res.code == NK_CODE_OK ? print_membership(&res) : report_error(&res);
    rpc_client_result_free(&res);
    return rc;
}

static int cmd_remove(int argc, char **argv)
{
    if (argc != 1) {
        usage(stderr);
        return 2;
    }
    Norikv__V1__RemoveNodeRequest req = NORIKV__V1__REMOVE_NODE_REQUEST__INIT;
    req.node_id = argv[0];
    size_t len = norikv__v1__remove_node_request__get_packed_size(&req);
    uint8_t *buf = nk_malloc(len + 1);
    norikv__v1__remove_node_request__pack(&req, buf);
    struct rpc_client_result res;
    call("/norikv.v1.Admin/RemoveNode", buf, len, &res);
    free(buf);
    int rc = res.code == NK_CODE_OK ? print_membership(&res) : report_error(&res);
    rpc_client_result_free(&res);
    return rc;
}

/* Prints a JSON document indented, one member per line. */
static void print_json(const char *j)
{
    int depth = 0;
    bool in_str = false;
    for (const char *p = j; *p; p++) {
        char ch = *p;
        if (in_str) {
            putchar(ch);
            if (ch == '\\' && p[1])
                putchar(*++p);
            else if (ch == '"')
                in_str = false;
            continue;
        }
        if (ch == '"') {
            in_str = true;
            putchar(ch);
        } else if (ch == '{' || ch == '[') {
            if ((p[1] == '}' || p[1] == ']')) {
                putchar(ch);
                putchar(*++p);
                continue;
            }
            printf("%c\n%*s", ch, 2 * ++depth, "");
        } else if (ch == '}' || ch == ']') {
            printf("\n%*s%c", 2 * --depth, "", ch);
        } else if (ch == ',') {
            printf(",\n%*s", 2 * depth, "");
        } else if (ch == ':') {
            printf(": ");
        } else {
            putchar(ch);
        }
    }
    putchar('\n');
}

static int cmd_placement(int argc, char **argv)
{
    (void)argv;
    if (argc != 0) {
        usage(stderr);
        return 2;
    }
    Norikv__V1__PlacementRequest req = NORIKV__V1__PLACEMENT_REQUEST__INIT;
    uint8_t buf[8];
    size_t len = norikv__v1__placement_request__pack(&req, buf);
    struct rpc_client_result res;
    call("/norikv.v1.Admin/GetPlacement", buf, len, &res);
    int rc = 0;
    if (res.code != NK_CODE_OK) {
        rc = report_error(&res);
    } else {
        Norikv__V1__PlacementResponse *r =
            norikv__v1__placement_response__unpack(NULL, res.body.len, res.body.data);
        if (!r) {
            fprintf(stderr, "norikv: the server's answer is not a PlacementResponse\n");
            rc = 3;
        } else {
            print_json(r->json);
            norikv__v1__placement_response__free_unpacked(r, NULL);
        }
    }
    rpc_client_result_free(&res);
    return rc;
}

/* ---------------------------------------------------------------- bench */

struct bench_cfg {
    struct rpc_client *client;
    int seconds, value_size, put_pct, keys;
};

struct bench_thread {
    struct bench_cfg *cfg;
    pthread_t t;
    uint64_t seed;
    uint64_t ops, errors;
    uint32_t *lat_us; /* bounded: at most cap samples, then every k-th */
    size_t nlat, cap;
};

static void *bench_main(void *arg)
{
    struct bench_thread *b = arg;
    struct bench_cfg *cfg = b->cfg;
    struct nk_rng r;
    nk_rng_seed(&r, b->seed);
    uint8_t *val = nk_malloc((size_t)cfg->value_size + 1);
    for (int i = 0; i < cfg->value_size; i++)
        val[i] = (uint8_t)('a' + nk_rng_uniform(&r, 26));
    uint64_t end = nk_mono_ns() + (uint64_t)cfg->seconds * 1000000000ULL;
    uint8_t buf[512 + 65536];
    while (nk_mono_ns() < end) {
        char key[32];
        snprintf(key, sizeof key, "bench-%010" PRIu64, nk_rng_uniform(&r, (uint64_t)cfg->keys));
        bool put = (int)nk_rng_uniform(&r, 100) < cfg->put_pct;
        size_t len;
        const char *method;
        if (put) {
            Norikv__V1__PutRequest q = NORIKV__V1__PUT_REQUEST__INIT;
            q.key.data = (uint8_t *)key;
            q.key.len = strlen(key);
            q.value.data = val;
            q.value.len = (size_t)cfg->value_size;
            len = norikv__v1__put_request__pack(&q, buf);
            method = "/norikv.v1.Kv/Put";
        } else {
            Norikv__V1__GetRequest q = NORIKV__V1__GET_REQUEST__INIT;
            q.key.data = (uint8_t *)key;
            q.key.len = strlen(key);
            len = norikv__v1__get_request__pack(&q, buf);
            method = "/norikv.v1.Kv/Get";
        }
        uint64_t t0 = nk_mono_ns();
        struct rpc_client_result res;
        rpc_client_unary(cfg->client, method, buf, len, timeout_ms, &res);
        uint64_t us = (nk_mono_ns() - t0) / 1000;
        if (res.code != NK_CODE_OK && res.code != NK_NOT_FOUND)
            b->errors++;
        rpc_client_result_free(&res);
        b->ops++;
        if (b->nlat < b->cap)
            b->lat_us[b->nlat++] = (uint32_t)NK_MIN(us, UINT32_MAX);
        else
            b->lat_us[nk_rng_uniform(&r, b->cap)] = (uint32_t)NK_MIN(us, UINT32_MAX);
    }
    free(val);
    return NULL;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static int cmd_bench(int argc, char **argv)
{
    struct bench_cfg cfg = {.seconds = 5, .value_size = 256, .put_pct = 50, .keys = 100000};
    int clients = 16;
    for (int i = 0; i < argc; i++) {
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(argv[i], "--clients") && v)
            clients = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--seconds") && v)
            cfg.seconds = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--value-size") && v)
            cfg.value_size = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--puts") && v)
            cfg.put_pct = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--keys") && v)
            cfg.keys = atoi(argv[++i]);
        else {
            fprintf(stderr, "norikv: bench: unknown option '%s'\n", argv[i]);
            return 2;
        }
    }
    if (clients < 1 || clients > 1024 || cfg.seconds < 1 || cfg.seconds > 3600 ||
        cfg.value_size < 0 || cfg.value_size > 65536 || cfg.put_pct < 0 || cfg.put_pct > 100 ||
        cfg.keys < 1) {
        fprintf(stderr, "norikv: bench: clients 1..1024, seconds 1..3600, value-size 0..65536, "
                        "puts 0..100, keys >= 1\n");
        return 2;
    }
    nk_status s = rpc_client_new(addr, &cfg.client);
    if (!nk_ok(s)) {
        fprintf(stderr, "norikv: %s\n", nk_status_msg(s));
        return 3;
    }
    struct bench_thread *th = nk_calloc((size_t)clients, sizeof(*th));
    uint64_t t0 = nk_mono_ns();
    for (int i = 0; i < clients; i++) {
        th[i].cfg = &cfg;
        th[i].seed = t0 + (uint64_t)i;
        th[i].cap = 100000;
        th[i].lat_us = nk_malloc(th[i].cap * sizeof(uint32_t));
        pthread_create(&th[i].t, NULL, bench_main, &th[i]);
    }
    uint64_t ops = 0, errors = 0;
    size_t total = 0;
    for (int i = 0; i < clients; i++) {
        pthread_join(th[i].t, NULL);
        ops += th[i].ops;
        errors += th[i].errors;
        total += th[i].nlat;
    }
    double secs = (double)(nk_mono_ns() - t0) / 1e9;
    uint32_t *all = nk_malloc((total ? total : 1) * sizeof(uint32_t));
    size_t k = 0;
    for (int i = 0; i < clients; i++) {
        memcpy(all + k, th[i].lat_us, th[i].nlat * sizeof(uint32_t));
        k += th[i].nlat;
        free(th[i].lat_us);
    }
    qsort(all, total, sizeof(uint32_t), cmp_u32);
    uint32_t p50 = total ? all[total / 2] : 0, p99 = total ? all[(size_t)(total * 0.99)] : 0;
    printf("%d clients, %d%% puts, %d-byte values, %.1f s: %" PRIu64 " ops, %.0f ops/s, "
           "p50 %u us, p99 %u us, %" PRIu64 " errors\n",
           clients, cfg.put_pct, cfg.value_size, secs, ops, (double)ops / secs, p50, p99, errors);
    free(all);
    free(th);
    rpc_client_free(cfg.client);
    return errors ? 3 : 0;
}

int main(int argc, char **argv)
{
    if (getenv("NORIKV_ADDR"))
        addr = getenv("NORIKV_ADDR");
    int i = 1;
    for (; i < argc; i++) {
        if (!strcmp(argv[i], "--addr") && i + 1 < argc)
            addr = argv[++i];
        else if (!strcmp(argv[i], "--timeout-ms") && i + 1 < argc)
            timeout_ms = atoll(argv[++i]);
        else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            return 0;
        } else
            break;
    }
    if (i >= argc) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[i++];
    int rest = argc - i;
    char **rargv = argv + i;
    if (!strcmp(cmd, "put"))
        return cmd_put(rest, rargv);
    if (!strcmp(cmd, "get"))
        return cmd_get(rest, rargv);
    if (!strcmp(cmd, "del") || !strcmp(cmd, "delete"))
        return cmd_del(rest, rargv);
    if (!strcmp(cmd, "cluster"))
        return cmd_cluster();
    if (!strcmp(cmd, "bench"))
        return cmd_bench(rest, rargv);
    if (!strcmp(cmd, "placement"))
        return cmd_placement(rest, rargv);
    if (!strcmp(cmd, "drain"))
        return cmd_drain(rest, rargv);
    if (!strcmp(cmd, "remove"))
        return cmd_remove(rest, rargv);
    fprintf(stderr, "norikv: unknown command '%s'\n", cmd);
    usage(stderr);
    return 2;
}
