/*
 * grpc.c: the norikv.v1 services on src/rpc.
 *
 * Kv.Put / Kv.Delete: decode, validate, encode a KV command, propose it to
 * the key's shard; the node calls back on its Ready loop thread once the
 * entry is applied (or failed), and the reply is sent from there.
 * Kv.Get: the node's read barrier; a lease read on the leader is served on
 * the rpc worker thread with no hand-off at all.
 * Kv.Range: range.c; Kv.Batch: batch.c.
 * Meta.WatchCluster: view_grpc.c.
 * Admin.SnapshotShard: flushes the shard's state (on a helper thread, one at
 * a time); Admin.TransferShard: FAILED_PRECONDITION on a one-node cluster.
 * Vector.*: vector.c.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "api/api_decode.h"
#include "api/api_internal.h"
#include "api/range.h"
#include "kv/kv.h"
#include "norikv/v1/norikv.pb-c.h"

#define MODULE "api"

static const char *OP_NAMES[API_OP_COUNT] = {"put", "get", "delete", "range", "batch"};
static const char *OUT_NAMES[OUT_COUNT] = {
    "ok",          "not_found", "version_mismatch",  "already_exists",     "invalid_argument",
    "not_leader",  "unavailable", "deadline_exceeded", "resource_exhausted", "internal"};

void api_buf_printf(struct nk_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    nk_buf_reserve(b, (size_t)n + 1);
    vsnprintf((char *)b->data + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
    va_end(ap);
}

const char *api_outcome_name(enum api_outcome out)
{
    return out < OUT_COUNT ? OUT_NAMES[out] : "?";
}

enum api_outcome api_outcome_of(enum nk_code code, const char *msg)
{
    switch (code) {
    case NK_CODE_OK: return OUT_OK;
    case NK_NOT_FOUND: return OUT_NOT_FOUND;
    case NK_FAILED_PRECONDITION: return OUT_VERSION_MISMATCH;
    case NK_ALREADY_EXISTS: return OUT_ALREADY_EXISTS;
    case NK_INVALID_ARGUMENT: return OUT_INVALID_ARGUMENT;
    case NK_UNAVAILABLE:
        return msg && strstr(msg, "NOT_LEADER") ? OUT_NOT_LEADER : OUT_UNAVAILABLE;
    case NK_DEADLINE_EXCEEDED: return OUT_DEADLINE_EXCEEDED;
    case NK_RESOURCE_EXHAUSTED: return OUT_RESOURCE_EXHAUSTED;
    default: return OUT_INTERNAL;
    }
}

void api_record(struct api *a, enum api_op op, enum api_outcome out, uint64_t start_ns)
{
    obs_counter_inc(a->requests[op][out]);
    uint64_t now = nk_mono_ns();
    uint64_t us = now > start_ns ? (now - start_ns) / 1000 : 0;
    obs_hist_observe(a->latency[op], us);
    api_note_slow(a, op, out, us);
}

/* ------------------------------------------------------------------ helpers */

static void fail(struct rpc_call *call, enum nk_code code, const char *msg, const char *hint)
{
    struct rpc_kv tr[1] = {{NULL, NULL}};
    size_t nt = 0;
    if (hint && *hint)
        tr[nt++] = (struct rpc_kv){"leader-hint", hint};
    rpc_call_fail(call, code, msg, tr, nt);
}

static uint64_t call_deadline(struct rpc_call *call)
{
    return rpc_call_deadline_mono_ns(call); /* UINT64_MAX: node applies its default */
}

static Norikv__V1__Version *version_msg(Norikv__V1__Version *v, uint64_t term, uint64_t index)
{
    norikv__v1__version__init(v);
    v->term = term;
    v->index = index;
    return v;
}

/* ----------------------------------------------------------------- writes */

struct write_ctx {
    struct api *a;
    struct rpc_call *call;
    enum api_op op;
    uint64_t t0;
    struct obs_trace *tr; /* NULL: not traced */
};

/* Completes a Put or Delete with the applied result; any thread. */
static void write_done(void *vctx, const struct node_write_result *r)
{
    struct write_ctx *w = vctx;
    struct api *a = w->a;
    enum nk_code code = r->code;
    const char *msg = r->msg;
    if (code == NK_CODE_OK)
        code = r->res.code;
    if (code == NK_CODE_OK) {
        Norikv__V1__Version v;
        version_msg(&v, r->res.term, r->res.index);
        size_t len;
        uint8_t *buf;
        if (w->op == API_PUT) {
            Norikv__V1__PutResponse resp = NORIKV__V1__PUT_RESPONSE__INIT;
            resp.version = &v;
            len = norikv__v1__put_response__get_packed_size(&resp);
            buf = nk_malloc(len ? len : 1);
            norikv__v1__put_response__pack(&resp, buf);
        } else {
            Norikv__V1__DeleteResponse resp = NORIKV__V1__DELETE_RESPONSE__INIT;
            resp.version = &v;
            resp.tombstoned = r->res.tombstoned;
            len = norikv__v1__delete_response__get_packed_size(&resp);
            buf = nk_malloc(len ? len : 1);
            norikv__v1__delete_response__pack(&resp, buf);
        }
        rpc_call_reply_malloced(w->call, buf, len);
        api_record_t(a, w->op, OUT_OK, w->t0, w->tr);
    } else if (r->code == NK_CODE_OK && code == NK_FAILED_PRECONDITION) {
        char cur[64];
        struct rpc_kv tr[1] = {{NULL, NULL}};
        size_t nt = 0;
        if (r->res.has_current) {
            snprintf(cur, sizeof cur, "%" PRIu64 ".%" PRIu64, r->res.cur_term, r->res.cur_index);
            tr[nt++] = (struct rpc_kv){"current-version", cur};
        }
        rpc_call_fail(w->call, NK_FAILED_PRECONDITION,
                      r->res.has_current ? "version mismatch: the key has another version"
                                         : "version mismatch: the key does not exist",
                      tr, nt);
        api_record_t(a, w->op, OUT_VERSION_MISMATCH, w->t0, w->tr);
    } else if (r->code == NK_CODE_OK && code == NK_ALREADY_EXISTS) {
        fail(w->call, NK_ALREADY_EXISTS, "key already exists (if_not_exists)", NULL);
        api_record_t(a, w->op, OUT_ALREADY_EXISTS, w->t0, w->tr);
    } else if (r->code == NK_CODE_OK && code == NK_INVALID_ARGUMENT) {
        fail(w->call, NK_INVALID_ARGUMENT,
             "idempotency key was already used with different parameters", NULL);
        api_record_t(a, w->op, OUT_INVALID_ARGUMENT, w->t0, w->tr);
    } else if (r->code == NK_CODE_OK) {
        fail(w->call, NK_INTERNAL, "the command could not be applied (damaged log entry)", NULL);
        api_record_t(a, w->op, OUT_INTERNAL, w->t0, w->tr);
    } else {
        fail(w->call, code, msg ? msg : nk_code_name(code), r->leader_hint);
        api_record_t(a, w->op, api_outcome_of(code, msg), w->t0, w->tr);
    }
    free(w);
}

/* Proposes cmd; on failure replies at once. */
static void propose(struct api *a, struct rpc_call *call, enum api_op op, struct kv_cmd *cmd,
                    uint64_t t0)
{
    nk_status s = kv_cmd_validate(cmd);
    if (!nk_ok(s)) {
        api_record(a, op, OUT_INVALID_ARGUMENT, t0); /* refused before tracing began */
        rpc_call_fail_status(call, &s);
        return;
    }
    struct nk_buf enc;
    nk_buf_init(&enc);
    kv_cmd_encode(cmd, &enc);
    uint32_t shard = nk_shard_for_key(cmd->key.data, cmd->key.len, a->total_shards);
    struct write_ctx *w = nk_malloc(sizeof(*w));
    *w = (struct write_ctx){a, call, op, t0,
                            api_trace_begin(call, op == API_PUT ? "norikv.v1.Kv/Put"
                                                                : "norikv.v1.Kv/Delete",
                                            t0)};
    obs_span_attr(w->tr ? &w->tr->spans[0] : NULL, "norikv.shard", "%u", shard);
    s = node_propose_traced(a->node, shard, nk_slice_make(enc.data, enc.len), call_deadline(call),
                            write_done, w, w->tr);
    nk_buf_free(&enc);
    if (!nk_ok(s)) {
        api_record_t(a, op, api_outcome_of(s.code, s.msg), t0, w->tr);
        rpc_call_fail_status(call, &s);
        free(w);
    }
}

/*
 * Decodes a request with api_decode (bounded, strings checked); on failure
 * answers the call (recording the outcome for Kv methods) and returns NULL.
 */
static ProtobufCMessage *decode_or_fail(struct api *a, struct rpc_call *call, int op,
                                        const ProtobufCMessageDescriptor *d, struct nk_slice req,
                                        uint64_t t0)
{
    ProtobufCMessage *m = NULL;
    nk_status s = api_decode(d, req, 0, &m);
    if (nk_ok(s))
        return m;
    if (op >= 0)
        api_record(a, (enum api_op)op, OUT_INVALID_ARGUMENT, t0);
    rpc_call_fail_status(call, &s);
    return NULL;
}

static void on_put(void *ctx, struct rpc_call *call, struct nk_slice req)
{
    struct api *a = ctx;
    uint64_t t0 = nk_mono_ns();
    Norikv__V1__PutRequest *m = (Norikv__V1__PutRequest *)decode_or_fail(
        a, call, API_PUT, &norikv__v1__put_request__descriptor, req, t0);
    if (!m)
        return;
    /* the idempotency key from the wire with its exact length: protobuf-c's
     * C string would end at an embedded NUL */
    struct nk_slice idem;
    api_wire_field(&norikv__v1__put_request__descriptor, req, "idempotency_key", &idem);
    struct kv_cmd c = {.op = KV_OP_PUT,
                       .timestamp_ms = nk_wall_ms(),
                       .key = nk_slice_make(m->key.data, m->key.len),
                       .value = nk_slice_make(m->value.data, m->value.len),
                       .ttl_ms = m->ttl_ms,
                       .if_not_exists = m->if_not_exists,
                       .idem_key = idem};
    if (m->if_match) {
        c.has_if_match = true;
        c.if_match_term = m->if_match->term;
        c.if_match_index = m->if_match->index;
    }
    propose(a, call, API_PUT, &c, t0);
    norikv__v1__put_request__free_unpacked(m, NULL);
}

static void on_delete(void *ctx, struct rpc_call *call, struct nk_slice req)
{
    struct api *a = ctx;
    uint64_t t0 = nk_mono_ns();
    Norikv__V1__DeleteRequest *m = (Norikv__V1__DeleteRequest *)decode_or_fail(
        a, call, API_DELETE, &norikv__v1__delete_request__descriptor, req, t0);
    if (!m)
        return;
    struct nk_slice idem;
    api_wire_field(&norikv__v1__delete_request__descriptor, req, "idempotency_key", &idem);
    struct kv_cmd c = {.op = KV_OP_DELETE,
                       .timestamp_ms = nk_wall_ms(),
                       .key = nk_slice_make(m->key.data, m->key.len),
                       .idem_key = idem};
    if (m->if_match) {
        c.has_if_match = true;
        c.if_match_term = m->if_match->term;
        c.if_match_index = m->if_match->index;
    }
    propose(a, call, API_DELETE, &c, t0);
    norikv__v1__delete_request__free_unpacked(m, NULL);
}

/* ------------------------------------------------------------------ reads */

struct read_ctx {
    struct api *a;
    struct rpc_call *call;
    uint32_t shard;
    uint64_t t0;
    struct obs_trace *tr; /* NULL: not traced */
    size_t key_len;
    uint8_t key[];
};

static void do_read(struct api *a, struct rpc_call *call, uint32_t shard, struct nk_slice key,
                    uint64_t t0, struct obs_trace *tr)
{
    uint64_t tr0 = tr ? nk_mono_ns() : 0;
    struct nk_buf val;
    nk_buf_init(&val);
    uint64_t term = 0, index = 0;
    bool found = false;
    nk_status s = kv_get(node_kv(a->node), (uint16_t)shard, key, nk_wall_ms(), &val, &term,
                         &index, &found);
    if (!nk_ok(s)) {
        api_record_t(a, API_GET, OUT_INTERNAL, t0, tr);
        NK_ERROR(MODULE, "get on shard %u: %s", shard, nk_status_msg(s));
        nk_status_free(&s);
        fail(call, NK_INTERNAL, "reading the key failed (see the server log)", NULL);
    } else if (!found) {
        obs_trace_span(tr, 0, "kv.get", tr0, nk_mono_ns());
        api_record_t(a, API_GET, OUT_NOT_FOUND, t0, tr);
        fail(call, NK_NOT_FOUND, "key not found", NULL);
    } else {
        Norikv__V1__Version v;
        Norikv__V1__GetResponse resp = NORIKV__V1__GET_RESPONSE__INIT;
        resp.value.data = val.data;
        resp.value.len = val.len;
        resp.version = version_msg(&v, term, index);
        size_t len = norikv__v1__get_response__get_packed_size(&resp);
        uint8_t *buf = nk_malloc(len ? len : 1);
        norikv__v1__get_response__pack(&resp, buf);
        rpc_call_reply_malloced(call, buf, len);
        obs_trace_span(tr, 0, "kv.get", tr0, nk_mono_ns());
        api_record_t(a, API_GET, OUT_OK, t0, tr);
    }
    nk_buf_free(&val);
}

static void read_ready(void *vctx, const struct node_write_result *r)
{
    struct read_ctx *rc = vctx;
    obs_trace_span(rc->tr, 0, "node.read_barrier", rc->t0, nk_mono_ns());
    if (r->code == NK_CODE_OK) {
        do_read(rc->a, rc->call, rc->shard, nk_slice_make(rc->key, rc->key_len), rc->t0, rc->tr);
    } else {
        api_record_t(rc->a, API_GET, api_outcome_of(r->code, r->msg), rc->t0, rc->tr);
        fail(rc->call, r->code, r->msg ? r->msg : nk_code_name(r->code), r->leader_hint);
    }
    free(rc);
}

static void on_get(void *ctx, struct rpc_call *call, struct nk_slice req)
{
    struct api *a = ctx;
    uint64_t t0 = nk_mono_ns();
    Norikv__V1__GetRequest *m = (Norikv__V1__GetRequest *)decode_or_fail(
        a, call, API_GET, &norikv__v1__get_request__descriptor, req, t0);
    if (!m)
        return;
    char msg[400];
    enum node_consistency cons;
    /* compared with its exact length: "lease\0junk" is not "lease" */
    struct nk_slice cs;
    api_wire_field(&norikv__v1__get_request__descriptor, req, "consistency", &cs);
    if (m->key.len == 0 || m->key.len > KV_MAX_KEY) {
        if (m->key.len == 0)
            snprintf(msg, sizeof msg, "key is empty; keys are 1 to %u bytes", KV_MAX_KEY);
        else
            snprintf(msg, sizeof msg, "key is %zu bytes; the limit is %u bytes", m->key.len,
                     KV_MAX_KEY);
        api_record(a, API_GET, OUT_INVALID_ARGUMENT, t0);
        fail(call, NK_INVALID_ARGUMENT, msg, NULL);
    } else if (!node_parse_consistency((const char *)cs.data, cs.len, &cons)) {
        char q[300];
        api_quote(q, sizeof q, cs.data, cs.len, 64);
        snprintf(msg, sizeof msg,
                 "unknown consistency level '%s'; use lease, linearizable or stale_ok", q);
        api_record(a, API_GET, OUT_INVALID_ARGUMENT, t0);
        fail(call, NK_INVALID_ARGUMENT, msg, NULL);
    } else {
        uint32_t shard = nk_shard_for_key(m->key.data, m->key.len, a->total_shards);
        struct read_ctx *rc = nk_malloc(sizeof(*rc) + m->key.len);
        *rc = (struct read_ctx){a, call, shard, t0, api_trace_begin(call, "norikv.v1.Kv/Get", t0),
                                m->key.len};
        obs_span_attr(rc->tr ? &rc->tr->spans[0] : NULL, "norikv.shard", "%u", shard);
        memcpy(rc->key, m->key.data, m->key.len);
        bool now = false;
        const char *hint = NULL;
        nk_status s =
            node_read_barrier(a->node, shard, cons, call_deadline(call), read_ready, rc, &now, &hint);
        if (!nk_ok(s)) {
            api_record_t(a, API_GET, api_outcome_of(s.code, s.msg), t0, rc->tr);
            fail(call, s.code, nk_status_msg(s), hint);
            nk_status_free(&s);
            free(rc);
        } else if (now) {
            do_read(a, call, shard, nk_slice_make(m->key.data, m->key.len), t0, rc->tr);
            free(rc);
        }
    }
    norikv__v1__get_request__free_unpacked(m, NULL);
}

/* ------------------------------------------------------------------- admin */

static uint8_t *shard_info_pack(struct api *a, uint32_t shard, size_t *len)
{
    Norikv__V1__ShardInfo si = NORIKV__V1__SHARD_INFO__INIT;
    Norikv__V1__ShardReplica rep[8];
    Norikv__V1__ShardReplica *rp[8];
    si.id = shard;
    struct node_view v;
    node_view_get(a->node, &v);
    uint32_t k = v.n_replicas[shard];
    for (uint32_t r = 0; r < k && r < 8; r++) {
        norikv__v1__shard_replica__init(&rep[r]);
        rep[r].node_id = v.nodes[v.replicas[shard][r]].id;
        rep[r].leader = v.leader[shard] == (int8_t)v.replicas[shard][r];
        rp[r] = &rep[r];
    }
    si.n_replicas = k;
    si.replicas = rp;
    *len = norikv__v1__shard_info__get_packed_size(&si);
    uint8_t *buf = nk_malloc(*len ? *len : 1);
    norikv__v1__shard_info__pack(&si, buf);
    node_view_free(&v);
    return buf;
}

struct snap_job {
    struct api *a;
    struct rpc_call *call;
    uint32_t shard;
};

static void *snapshot_thread(void *arg)
{
    struct snap_job *j = arg;
    uint64_t index = 0;
    nk_status s = node_snapshot_shard(j->a->node, j->shard, &index);
    if (nk_ok(s)) {
        size_t len;
        uint8_t *buf = shard_info_pack(j->a, j->shard, &len);
        rpc_call_reply_malloced(j->call, buf, len);
        NK_INFO(MODULE, "shard %u snapshot taken at index %" PRIu64, j->shard, index);
    } else {
        rpc_call_fail_status(j->call, &s);
    }
    atomic_store(&j->a->snapshot_running, 0);
    free(j);
    return NULL;
}

static bool decode_shard(struct api *a, struct rpc_call *call, struct nk_slice req,
                         uint32_t *shard)
{
    Norikv__V1__ShardInfo *m = (Norikv__V1__ShardInfo *)decode_or_fail(
        a, call, -1, &norikv__v1__shard_info__descriptor, req, 0);
    if (!m)
        return false;
    *shard = m->id;
    norikv__v1__shard_info__free_unpacked(m, NULL);
    if (*shard >= a->total_shards) {
        char msg[128];
        snprintf(msg, sizeof msg, "shard %u does not exist (the cluster has %u shards)", *shard,
                 a->total_shards);
        fail(call, NK_INVALID_ARGUMENT, msg, NULL);
        return false;
    }
    return true;
}

static void on_snapshot(void *ctx, struct rpc_call *call, struct nk_slice req)
{
    struct api *a = ctx;
    uint32_t shard;
    if (!decode_shard(a, call, req, &shard))
        return;
    int expected = 0;
    if (!atomic_compare_exchange_strong(&a->snapshot_running, &expected, 1)) {
        fail(call, NK_RESOURCE_EXHAUSTED, "a shard snapshot is already running; retry later",
             NULL);
        return;
    }
    struct snap_job *j = nk_malloc(sizeof(*j));
    *j = (struct snap_job){a, call, shard};
    /* joinable: the previous one has ended (snapshot_running was 0), and
     * api_shutdown joins the last one before the node and the rpc server
     * it uses are destroyed */
    pthread_mutex_lock(&a->snap_mu);
    if (a->snap_started)
        pthread_join(a->snap_thread, NULL);
    a->snap_started = pthread_create(&a->snap_thread, NULL, snapshot_thread, j) == 0;
    bool started = a->snap_started;
    pthread_mutex_unlock(&a->snap_mu);
    if (!started) {
        atomic_store(&a->snapshot_running, 0);
        free(j);
        fail(call, NK_RESOURCE_EXHAUSTED, "cannot start a snapshot thread", NULL);
    }
}

static void on_transfer(void *ctx, struct rpc_call *call, struct nk_slice req)
{
    struct api *a = ctx;
    Norikv__V1__ShardInfo *m = (Norikv__V1__ShardInfo *)decode_or_fail(
        a, call, -1, &norikv__v1__shard_info__descriptor, req, 0);
    if (!m)
        return;
    uint32_t shard = m->id;
    char target[128] = "";
    /* the replica marked leader is the target (or the only one named) */
    for (size_t i = 0; i < m->n_replicas; i++)
        if (m->replicas[i]->leader || m->n_replicas == 1)
            snprintf(target, sizeof target, "%s", m->replicas[i]->node_id);
    norikv__v1__shard_info__free_unpacked(m, NULL);
    if (shard >= a->total_shards) {
        char msg[128];
        snprintf(msg, sizeof msg, "shard %u does not exist (the cluster has %u shards)", shard,
                 a->total_shards);
        fail(call, NK_INVALID_ARGUMENT, msg, NULL);
        return;
    }
    struct node_view v;
    node_view_get(a->node, &v);
    uint32_t members = v.n_nodes;
    node_view_free(&v);
    if (!target[0] || members == 1) {
        char msg[160];
        if (members == 1)
            snprintf(msg, sizeof msg,
                     "shard %u cannot be transferred: this is a one-node cluster with no other "
                     "node",
                     shard);
        else
            snprintf(msg, sizeof msg,
                     "name the target node of shard %u: a replica with leader = true (its "
                     "node_id)",
                     shard);
        fail(call, members == 1 ? NK_FAILED_PRECONDITION : NK_INVALID_ARGUMENT, msg, NULL);
        return;
    }
    char hint[128];
    nk_status s = node_transfer_shard(a->node, shard, target, hint, sizeof hint);
    if (!nk_ok(s)) {
        fail(call, s.code, nk_status_msg(s), hint);
        nk_status_free(&s);
        return;
    }
    size_t len;
    uint8_t *buf = shard_info_pack(a, shard, &len);
    rpc_call_reply_malloced(call, buf, len);
}

/* ---------------------------------------------------------------- register */

nk_status api_register(struct api *a, struct rpc_server *s)
{
    struct rpc_method ms[] = {
        {"/norikv.v1.Kv/Put", RPC_UNARY, on_put, NULL, a},
        {"/norikv.v1.Kv/Get", RPC_UNARY, on_get, NULL, a},
        {"/norikv.v1.Kv/Delete", RPC_UNARY, on_delete, NULL, a},
        {"/norikv.v1.Admin/TransferShard", RPC_UNARY, on_transfer, NULL, a},
        {"/norikv.v1.Admin/SnapshotShard", RPC_UNARY, on_snapshot, NULL, a},
    };
    for (size_t i = 0; i < NK_ARRAY_LEN(ms); i++)
        NK_TRY(rpc_server_add_method(s, &ms[i]));
    NK_TRY(api_range_register(a, s));      /* range.c */
    NK_TRY(api_batch_register(a, s));      /* batch.c */
    NK_TRY(api_vector_register(a, s));      /* vector.c */
    NK_TRY(api_events_grpc_register(a, s)); /* events_grpc.c */
    NK_TRY(api_watch_register(a, s));       /* watch.c */
    NK_TRY(api_membership_register(a, s));  /* membership.c */
    return api_view_register(a, s); /* view_grpc.c: Meta.WatchCluster */
}

/* ------------------------------------------------------------- lifecycle */

nk_status api_new(const struct api_options *o, struct api **out)
{
    struct api *a = nk_calloc(1, sizeof(*a));
    a->node = o->node;
    a->node_id = nk_strdup(o->node_id ? o->node_id : "node-1");
    a->prometheus = o->prometheus_enabled;
    a->otlp_endpoint = o->otlp_endpoint ? nk_strdup(o->otlp_endpoint) : NULL;
    a->otlp_interval_ms = o->otlp_metrics_interval_ms;
    a->otlp_timeout_ms = o->otlp_timeout_ms;
    a->otlp_ratio = o->otlp_trace_sample_ratio;
    a->http_max_conn = o->http_max_connections ? o->http_max_connections : 512;
    a->http_max_per_ip = o->http_max_per_ip ? o->http_max_per_ip : 128;
    a->http_request_timeout_ms = o->http_request_timeout_ms ? o->http_request_timeout_ms : 10000;
    a->http_max_body_bytes = o->http_max_body_bytes ? o->http_max_body_bytes : 64u << 20;
    a->vector_budget = o->vector_memory_budget;
    if (!a->vector_budget) {
        long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE);
        a->vector_budget = pages > 0 && psz > 0 ? (uint64_t)pages * (uint64_t)psz / 2 : 1ULL << 32;
    }
    a->total_shards = node_total_shards(o->node);
    a->start_ms = nk_mono_ms();
    pthread_mutex_init(&a->wmu, NULL);
    pthread_mutex_init(&a->snap_mu, NULL);
    struct obs_registry *reg = obs_default();
    static const char *const op_label[] = {"op", "outcome"};
    static const char *const op_only[] = {"op"};
    struct obs_family *freq, *flat;
    NK_TRY(obs_family_register(reg, OBS_COUNTER, OBS_UNIT_NONE, "norikv_requests_total",
                               "Client requests by operation and outcome", op_label, 2, &freq));
    NK_TRY(obs_family_register(reg, OBS_HISTOGRAM, OBS_UNIT_MICROS,
                               "norikv_request_duration_seconds",
                               "Client request latency by operation", op_only, 1, &flat));
    for (int op = 0; op < API_OP_COUNT; op++) {
        for (int oc = 0; oc < OUT_COUNT; oc++) {
            const char *lv[] = {OP_NAMES[op], OUT_NAMES[oc]};
            NK_TRY(obs_family_counter(freq, lv, &a->requests[op][oc]));
        }
        const char *lv[] = {OP_NAMES[op]};
        NK_TRY(obs_family_histogram(flat, lv, &a->latency[op]));
    }
    static const char *const lvl[] = {"level"};
    struct obs_family *fb, *ff;
    NK_TRY(obs_family_register(reg, OBS_GAUGE, OBS_UNIT_NONE, "norikv_lsm_level_bytes",
                               "Bytes of tables per LSM level", lvl, 1, &fb));
    NK_TRY(obs_family_register(reg, OBS_GAUGE, OBS_UNIT_NONE, "norikv_lsm_level_files",
                               "Tables per LSM level", lvl, 1, &ff));
    for (int l = 0; l < LSM_NUM_LEVELS && l < 8; l++) {
        char name[8];
        snprintf(name, sizeof name, "%d", l);
        const char *lv[] = {name};
        NK_TRY(obs_family_gauge(fb, lv, &a->lsm_level_bytes[l]));
        NK_TRY(obs_family_gauge(ff, lv, &a->lsm_level_files[l]));
    }
    NK_TRY(obs_gauge_register(reg, "norikv_lsm_compaction_read_bytes",
                              "Bytes read by LSM compactions since start", &a->lsm_compact_read));
    NK_TRY(obs_gauge_register(reg, "norikv_lsm_compaction_written_bytes",
                              "Bytes written by LSM compactions since start",
                              &a->lsm_compact_written));
    NK_TRY(obs_gauge_register(reg, "norikv_lsm_write_amplification_milli",
                              "LSM write amplification x 1000", &a->lsm_wamp_milli));
    NK_TRY(obs_gauge_register(reg, "norikv_shards_led", "Shards this node leads",
                              &a->shards_led));
    NK_TRY(obs_gauge_register(reg, "norikv_last_applied_index",
                              "Highest applied Raft index over the node's shards",
                              &a->last_applied));
    *out = a;
    return NK_OK;
}

void api_update_gauges(struct api *a)
{
    struct lsm_stats ls;
    lsm_get_stats(node_lsm(a->node), &ls);
    for (int l = 0; l < LSM_NUM_LEVELS && l < 8; l++) {
        obs_gauge_set(a->lsm_level_bytes[l], (int64_t)ls.level[l].bytes);
        obs_gauge_set(a->lsm_level_files[l], (int64_t)ls.level[l].files);
    }
    obs_gauge_set(a->lsm_compact_read, (int64_t)ls.compaction_bytes_read);
    obs_gauge_set(a->lsm_compact_written, (int64_t)ls.compaction_bytes_written);
    obs_gauge_set(a->lsm_wamp_milli, (int64_t)(ls.write_amplification * 1000.0));
    struct node_stats ns;
    node_get_stats(a->node, &ns);
    obs_gauge_set(a->shards_led, ns.shards_led);
    obs_gauge_set(a->last_applied, (int64_t)ns.last_applied);
    api_vector_update_gauges(a);
}

void api_free(struct api *a)
{
    if (!a)
        return;
    api_shutdown(a);
    api_events_grpc_free(a);
    api_watch_free(a);
    api_range_free(a);
    pthread_mutex_destroy(&a->wmu);
    pthread_mutex_destroy(&a->snap_mu);
    free(a->node_id);
    free(a->otlp_endpoint);
    free(a);
}
