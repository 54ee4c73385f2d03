/*
 * vector.c: the norikv.v1.Vector service (CONTRACT.md "Vector semantics";
 * docs/vector.md "Serving").
 *
 * CreateIndex, DropIndex, Insert and Delete: decode with the bounded
 * decoder, check every limit (namespace, id, dimensions, the vector's
 * length and values, idempotency key) before anything is queued, encode a
 * vector command and propose it to the namespace's shard like a KV write;
 * the reply is sent from the node's completion with the applied result
 * (NOT_FOUND, ALREADY_EXISTS, wrong dimensions ... are decided by apply, in
 * log order, so every replica agrees).
 * Search and Get: the node's read barrier at the request's consistency
 * (lease, linearizable, stale_ok: as Kv.Get), then the in-memory index.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "api/api_decode.h"
#include "api/api_internal.h"
#include "norikv/v1/norikv.pb-c.h"
#include "vector/vector.h"

#define MODULE "api"

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
               "vector commands carry little-endian f32 copied from host floats");

enum vop { V_CREATE, V_DROP, V_INSERT, V_DELETE, V_SEARCH, V_GET };

static const char *const VOP_NAMES[API_VOP_COUNT] = {"create_index", "drop_index", "insert",
                                                      "delete",       "search",     "get"};
static const char *const VOUT_NAMES[OUT_COUNT] = {
    "ok",         "not_found",   "version_mismatch",  "already_exists",     "invalid_argument",
    "not_leader", "unavailable", "deadline_exceeded", "resource_exhausted", "internal"};

/* One Vector call: where its answer goes and what it is recorded as. */
struct vc {
    struct api *a;
    struct rpc_call *call;
    enum vop op;
    uint64_t t0;
};

static void record(const struct vc *v, enum nk_code code, const char *msg)
{
    struct api *a = v->a;
    if (!a->vreq[v->op][0])
        return; /* metrics not registered (cannot happen after api_register) */
    obs_counter_inc(a->vreq[v->op][api_outcome_of(code, msg)]);
    obs_hist_observe_since(a->vlat[v->op], v->t0);
}

void api_vector_record(struct api *a, int op, uint64_t t0, enum nk_code code, const char *msg)
{
    NK_ASSERT(op >= 0 && op < API_VOP_COUNT);
    struct vc v = {a, NULL, (enum vop)op, t0};
    record(&v, code, msg);
}

static void vfail(const struct vc *v, enum nk_code code, const char *msg, const char *hint)
{
    record(v, code, msg);
    struct rpc_kv tr[1] = {{NULL, NULL}};
    size_t nt = 0;
    if (hint && *hint)
        tr[nt++] = (struct rpc_kv){"leader-hint", hint};
    rpc_call_fail(v->call, code, msg, tr, nt);
}

static void fail_status(const struct vc *v, nk_status s, const char *hint)
{
    vfail(v, s.code, nk_status_msg(s), hint);
    nk_status_free(&s);
}

static void vreply(const struct vc *v, uint8_t *buf, size_t len)
{
    record(v, NK_CODE_OK, NULL);
    rpc_call_reply_malloced(v->call, buf, len);
}

static ProtobufCMessage *decode(const struct vc *v, const ProtobufCMessageDescriptor *d,
                                struct nk_slice req)
{
    ProtobufCMessage *m = NULL;
    nk_status s = api_decode(d, req, 0, &m);
    if (nk_ok(s))
        return m;
    fail_status(v, s, NULL);
    return NULL;
}

/* Ids come back in VectorMatch.id, a protobuf string: a NUL inside would cut it. */
static nk_status check_id(struct nk_slice id)
{
    NK_TRY(vec_validate_id(id));
    if (memchr(id.data, 0, id.len))
        return nk_status_make(NK_INVALID_ARGUMENT, "vector id contains a NUL byte");
    return NK_OK;
}

static nk_status check_idem(struct nk_slice k)
{
    if (k.len > VEC_MAX_IDEM_KEY)
        return nk_status_make(NK_INVALID_ARGUMENT,
                              "idempotency_key is %zu bytes; the limit is %u bytes", k.len,
                              VEC_MAX_IDEM_KEY);
    return NK_OK;
}

nk_status api_vector_admit(struct api *a)
{
    uint64_t used = vec_store_memory(node_vec(a->node));
    if (used >= a->vector_budget)
        return nk_status_make(NK_RESOURCE_EXHAUSTED,
                              "the vector indexes of this node use %llu bytes, its budget is "
                              "%llu bytes; drop indexes or delete vectors",
                              (unsigned long long)used, (unsigned long long)a->vector_budget);
    return NK_OK;
}

static uint32_t ns_shard(struct api *a, struct nk_slice ns)
{
    return vec_shard_for_namespace(ns, a->total_shards);
}

/* ----------------------------------------------------------------- writes */

struct vwrite {
    struct vc v;
};

static void write_done(void *vctx, const struct node_write_result *r)
{
    struct vwrite *w = vctx;
    if (r->code != NK_CODE_OK) {
        vfail(&w->v, r->code, r->msg ? r->msg : nk_code_name(r->code), r->leader_hint);
        free(w);
        return;
    }
    const struct vec_result *v = r->vres;
    NK_ASSERT(v); /* a vector command's entry applies as one */
    if (v->code != NK_CODE_OK) {
        if (v->code == NK_DATA_LOSS)
            vfail(&w->v, NK_INTERNAL, "the command could not be applied (damaged log entry)",
                  NULL);
        else
            vfail(&w->v, v->code, v->msg[0] ? v->msg : nk_code_name(v->code), NULL);
        free(w);
        return;
    }
    size_t len = 0;
    uint8_t *buf = NULL;
    switch (w->v.op) {
    case V_CREATE: {
        Norikv__V1__CreateVectorIndexResponse resp = NORIKV__V1__CREATE_VECTOR_INDEX_RESPONSE__INIT;
        resp.created = v->created;
        len = norikv__v1__create_vector_index_response__get_packed_size(&resp);
        buf = nk_malloc(len ? len : 1);
        norikv__v1__create_vector_index_response__pack(&resp, buf);
        break;
    }
    case V_DROP: {
        Norikv__V1__DropVectorIndexResponse resp = NORIKV__V1__DROP_VECTOR_INDEX_RESPONSE__INIT;
        resp.dropped = v->dropped;
        len = norikv__v1__drop_vector_index_response__get_packed_size(&resp);
        buf = nk_malloc(len ? len : 1);
        norikv__v1__drop_vector_index_response__pack(&resp, buf);
        break;
    }
    case V_INSERT: {
        Norikv__V1__Version ver = NORIKV__V1__VERSION__INIT;
        ver.term = v->term;
        ver.index = v->index;
        Norikv__V1__VectorInsertResponse resp = NORIKV__V1__VECTOR_INSERT_RESPONSE__INIT;
        resp.inserted = true; /* stored (a new id or a replaced vector) */
        resp.version = &ver;
        len = norikv__v1__vector_insert_response__get_packed_size(&resp);
        buf = nk_malloc(len ? len : 1);
        norikv__v1__vector_insert_response__pack(&resp, buf);
        break;
    }
    case V_DELETE: {
        Norikv__V1__VectorDeleteResponse resp = NORIKV__V1__VECTOR_DELETE_RESPONSE__INIT;
        resp.deleted = v->deleted;
        len = norikv__v1__vector_delete_response__get_packed_size(&resp);
        buf = nk_malloc(len ? len : 1);
        norikv__v1__vector_delete_response__pack(&resp, buf);
        break;
    }
    case V_SEARCH:
    case V_GET:
        NK_ASSERT(!"a read is never proposed");
    }
    vreply(&w->v, buf, len);
    free(w);
}

/* Validates, encodes and proposes c; answers the call on any failure. */
static void propose(const struct vc *v, struct vec_cmd *c)
{
    struct api *a = v->a;
    c->timestamp_ms = nk_wall_ms();
    nk_status s = vec_cmd_validate(c);
    if (!nk_ok(s)) {
        fail_status(v, s, NULL);
        return;
    }
    struct nk_buf enc;
    nk_buf_init(&enc);
    vec_cmd_encode(c, &enc);
    struct vwrite *w = nk_malloc(sizeof(*w));
    w->v = *v;
    s = node_propose(a->node, ns_shard(a, c->ns), nk_slice_make(enc.data, enc.len),
                     rpc_call_deadline_mono_ns(v->call), write_done, w);
    nk_buf_free(&enc);
    if (!nk_ok(s)) {
        fail_status(v, s, NULL);
        free(w);
    }
}

static void on_create(void *ctx, struct rpc_call *call, struct nk_slice req)
{
    struct api *a = ctx;
    const struct vc v = {a, call, V_CREATE, nk_mono_ns()};
    const ProtobufCMessageDescriptor *d = &norikv__v1__create_vector_index_request__descriptor;
    Norikv__V1__CreateVectorIndexRequest *m =
        (Norikv__V1__CreateVectorIndexRequest *)decode(&v, d, req);
    if (!m)
        return;
    struct vec_cmd c = {.op = VEC_OP_CREATE_INDEX};
    api_wire_field(d, req, "namespace", &c.ns);
    api_wire_field(d, req, "idempotency_key", &c.idem_key);
    vec_index_options_default(&c.opt);
    c.opt.dims = m->dimensions;
    nk_status s = vec_validate_namespace(c.ns);
    if (nk_ok(s))
        s = vec_validate_dims(m->dimensions);
    if (nk_ok(s))
        s = vec_metric_from_proto((int)m->distance, &c.opt.metric);
    if (nk_ok(s))
        s = vec_index_type_from_proto((int)m->index_type, &c.opt.type);
    if (nk_ok(s))
        s = check_idem(c.idem_key);
    if (nk_ok(s))
        s = api_vector_admit(a);
    if (nk_ok(s))
        propose(&v, &c);
    else
        fail_status(&v, s, NULL);
    protobuf_c_message_free_unpacked(&m->base, NULL);
}

static void on_drop(void *ctx, struct rpc_call *call, struct nk_slice req)
{
    struct api *a = ctx;
    const struct vc v = {a, call, V_DROP, nk_mono_ns()};
    const ProtobufCMessageDescriptor *d = &norikv__v1__drop_vector_index_request__descriptor;
    ProtobufCMessage *m = decode(&v, d, req);
    if (!m)
        return;
    struct vec_cmd c = {.op = VEC_OP_DROP_INDEX};
    api_wire_field(d, req, "namespace", &c.ns);
    api_wire_field(d, req, "idempotency_key", &c.idem_key);
    nk_status s = vec_validate_namespace(c.ns);
    if (nk_ok(s))
        s = check_idem(c.idem_key);
    if (nk_ok(s))
        propose(&v, &c);
    else
        fail_status(&v, s, NULL);
    protobuf_c_message_free_unpacked(m, NULL);
}

static void on_insert(void *ctx, struct rpc_call *call, struct nk_slice req)
{
    struct api *a = ctx;
    const struct vc v = {a, call, V_INSERT, nk_mono_ns()};
    const ProtobufCMessageDescriptor *d = &norikv__v1__vector_insert_request__descriptor;
    Norikv__V1__VectorInsertRequest *m = (Norikv__V1__VectorInsertRequest *)decode(&v, d, req);
    if (!m)
        return;
    struct vec_cmd c = {.op = VEC_OP_INSERT};
    api_wire_field(d, req, "namespace", &c.ns);
    api_wire_field(d, req, "id", &c.id);
    api_wire_field(d, req, "idempotency_key", &c.idem_key);
    nk_status s = vec_validate_namespace(c.ns);
    if (nk_ok(s))
        s = check_id(c.id);
    /* the length against the index's dimensions is apply's to judge (in
     * log order: the index may be created or re-created meanwhile) */
    if (nk_ok(s))
        s = vec_validate_vector(m->vector, m->n_vector, 0);
    if (nk_ok(s))
        s = check_idem(c.idem_key);
    if (nk_ok(s))
        s = api_vector_admit(a);
    if (nk_ok(s)) {
        c.vector = (const uint8_t *)m->vector;
        c.dims = (uint32_t)m->n_vector;
        propose(&v, &c);
    } else {
        fail_status(&v, s, NULL);
    }
    protobuf_c_message_free_unpacked(&m->base, NULL);
}

static void on_delete(void *ctx, struct rpc_call *call, struct nk_slice req)
{
    struct api *a = ctx;
    const struct vc v = {a, call, V_DELETE, nk_mono_ns()};
    const ProtobufCMessageDescriptor *d = &norikv__v1__vector_delete_request__descriptor;
    ProtobufCMessage *m = decode(&v, d, req);
    if (!m)
        return;
    struct vec_cmd c = {.op = VEC_OP_DELETE};
    api_wire_field(d, req, "namespace", &c.ns);
    api_wire_field(d, req, "id", &c.id);
    api_wire_field(d, req, "idempotency_key", &c.idem_key);
    nk_status s = vec_validate_namespace(c.ns);
    if (nk_ok(s))
        s = check_id(c.id);
    if (nk_ok(s))
        s = check_idem(c.idem_key);
    if (nk_ok(s))
        propose(&v, &c);
    else
        fail_status(&v, s, NULL);
    protobuf_c_message_free_unpacked(m, NULL);
}

/* ------------------------------------------------------------------ reads */

/* A search or get waiting for its read barrier; owns copies of its inputs. */
struct vread {
    struct vc v;
    struct api *a;
    bool search;
    uint32_t shard;
    uint32_t k;
    bool include_vectors;
    uint8_t *ns, *id;
    size_t ns_len, id_len;
    float *q;
    size_t qn;
};

static void vread_free(struct vread *r)
{
    free(r->ns);
    free(r->id);
    free(r->q);
    free(r);
}

static void do_search(struct vread *r)
{
    struct vec_results res;
    vec_results_init(&res);
    uint64_t t0 = nk_mono_ns();
    nk_status s = vec_search(node_vec(r->a->node), (uint16_t)r->shard,
                             nk_slice_make(r->ns, r->ns_len), r->q, r->qn, r->k, 0,
                             r->include_vectors, &res);
    uint64_t us = (nk_mono_ns() - t0) / 1000;
    if (!nk_ok(s)) {
        fail_status(&r->v, s, NULL);
        vec_results_free(&res);
        return;
    }
    Norikv__V1__VectorMatch *ms = nk_malloc((res.n ? res.n : 1) * sizeof(*ms));
    Norikv__V1__VectorMatch **mp = nk_malloc((res.n ? res.n : 1) * sizeof(*mp));
    uint32_t dims = 0;
    if (r->include_vectors)
        dims = (uint32_t)r->qn; /* the index's dimensions: the query was checked against them */
    for (uint32_t i = 0; i < res.n; i++) {
        norikv__v1__vector_match__init(&ms[i]);
        ms[i].id = (char *)res.m[i].id;
        ms[i].distance = res.m[i].distance;
        if (res.m[i].vector) {
            ms[i].n_vector = dims;
            ms[i].vector = (float *)res.m[i].vector;
        }
        mp[i] = &ms[i];
    }
    Norikv__V1__VectorSearchResponse resp = NORIKV__V1__VECTOR_SEARCH_RESPONSE__INIT;
    resp.n_matches = res.n;
    resp.matches = mp;
    resp.search_time_us = us;
    size_t len = norikv__v1__vector_search_response__get_packed_size(&resp);
    uint8_t *buf = nk_malloc(len ? len : 1);
    norikv__v1__vector_search_response__pack(&resp, buf);
    free(ms);
    free(mp);
    vec_results_free(&res);
    vreply(&r->v, buf, len);
}

static void do_get(struct vread *r)
{
    float *out = nk_malloc(VEC_MAX_DIMS * sizeof(float));
    uint32_t dims = 0;
    bool found = false;
    nk_status s = vec_get(node_vec(r->a->node), (uint16_t)r->shard,
                          nk_slice_make(r->ns, r->ns_len), nk_slice_make(r->id, r->id_len), out,
                          &dims, &found);
    if (!nk_ok(s)) {
        free(out);
        fail_status(&r->v, s, NULL);
        return;
    }
    Norikv__V1__VectorGetResponse resp = NORIKV__V1__VECTOR_GET_RESPONSE__INIT;
    resp.found = found;
    if (found) {
        resp.n_vector = dims;
        resp.vector = out;
    }
    size_t len = norikv__v1__vector_get_response__get_packed_size(&resp);
    uint8_t *buf = nk_malloc(len ? len : 1);
    norikv__v1__vector_get_response__pack(&resp, buf);
    free(out);
    vreply(&r->v, buf, len);
}

static void do_vread(struct vread *r)
{
    if (r->search)
        do_search(r);
    else
        do_get(r);
}

static void read_ready(void *vctx, const struct node_write_result *res)
{
    struct vread *r = vctx;
    if (res->code == NK_CODE_OK)
        do_vread(r);
    else
        vfail(&r->v, res->code, res->msg ? res->msg : nk_code_name(res->code),
              res->leader_hint);
    vread_free(r);
}

/* Parses the consistency (exact bytes), waits for the barrier, serves r. */
static void start_read(struct api *a, struct vread *r, struct nk_slice cs)
{
    enum node_consistency cons;
    if (!node_parse_consistency((const char *)cs.data, cs.len, &cons)) {
        char q[300], msg[400];
        api_quote(q, sizeof q, cs.data, cs.len, 64);
        snprintf(msg, sizeof msg,
                 "unknown consistency level '%s'; use lease, linearizable or stale_ok", q);
        vfail(&r->v, NK_INVALID_ARGUMENT, msg, NULL);
        vread_free(r);
        return;
    }
    bool now = false;
    const char *hint = NULL;
    nk_status s = node_read_barrier(a->node, r->shard, cons, rpc_call_deadline_mono_ns(r->v.call),
                                    read_ready, r, &now, &hint);
    if (!nk_ok(s)) {
        fail_status(&r->v, s, hint);
        vread_free(r);
    } else if (now) {
        do_vread(r);
        vread_free(r);
    }
}

static void on_search(void *ctx, struct rpc_call *call, struct nk_slice req)
{
    struct api *a = ctx;
    const struct vc v = {a, call, V_SEARCH, nk_mono_ns()};
    const ProtobufCMessageDescriptor *d = &norikv__v1__vector_search_request__descriptor;
    Norikv__V1__VectorSearchRequest *m = (Norikv__V1__VectorSearchRequest *)decode(&v, d, req);
    if (!m)
        return;
    struct nk_slice ns, cs;
    api_wire_field(d, req, "namespace", &ns);
    api_wire_field(d, req, "consistency", &cs);
    nk_status s = vec_validate_namespace(ns);
    if (nk_ok(s))
        s = vec_validate_k(m->k);
    if (nk_ok(s))
        s = vec_validate_vector(m->query, m->n_query, 0);
    if (!nk_ok(s)) {
        fail_status(&v, s, NULL);
        protobuf_c_message_free_unpacked(&m->base, NULL);
        return;
    }
    struct vread *r = nk_calloc(1, sizeof(*r));
    r->v = v;
    r->a = a;
    r->search = true;
    r->shard = ns_shard(a, ns);
    r->k = m->k;
    r->include_vectors = m->include_vectors;
    r->ns = nk_memdup(ns.data, ns.len);
    r->ns_len = ns.len;
    r->qn = m->n_query;
    r->q = nk_memdup(m->query, m->n_query * sizeof(float));
    protobuf_c_message_free_unpacked(&m->base, NULL);
    start_read(a, r, cs);
}

static void on_get(void *ctx, struct rpc_call *call, struct nk_slice req)
{
    struct api *a = ctx;
    const struct vc v = {a, call, V_GET, nk_mono_ns()};
    const ProtobufCMessageDescriptor *d = &norikv__v1__vector_get_request__descriptor;
    ProtobufCMessage *m = decode(&v, d, req);
    if (!m)
        return;
    struct nk_slice ns, id, cs;
    api_wire_field(d, req, "namespace", &ns);
    api_wire_field(d, req, "id", &id);
    api_wire_field(d, req, "consistency", &cs);
    nk_status s = vec_validate_namespace(ns);
    if (nk_ok(s))
        s = check_id(id);
    if (!nk_ok(s)) {
        fail_status(&v, s, NULL);
        protobuf_c_message_free_unpacked(m, NULL);
        return;
    }
    struct vread *r = nk_calloc(1, sizeof(*r));
    r->v = v;
    r->a = a;
    r->shard = ns_shard(a, ns);
    r->ns = nk_memdup(ns.data, ns.len);
    r->ns_len = ns.len;
    r->id = nk_memdup(id.data, id.len);
    r->id_len = id.len;
    protobuf_c_message_free_unpacked(m, NULL);
    start_read(a, r, cs);
}

/* --------------------------------------------------------------- register */

static nk_status register_metrics(struct api *a)
{
    struct obs_registry *reg = obs_default();
    static const char *const op_outcome[] = {"op", "outcome"};
    static const char *const op_only[] = {"op"};
    struct obs_family *freq, *flat;
    NK_TRY(obs_family_register(reg, OBS_COUNTER, OBS_UNIT_NONE, "norikv_vector_requests_total",
                               "Vector requests by operation and outcome", op_outcome, 2, &freq));
    NK_TRY(obs_family_register(reg, OBS_HISTOGRAM, OBS_UNIT_MICROS,
                               "norikv_vector_request_duration_seconds",
                               "Vector request latency by operation", op_only, 1, &flat));
    for (int op = 0; op < API_VOP_COUNT; op++) {
        for (int oc = 0; oc < OUT_COUNT; oc++) {
            const char *lv[] = {VOP_NAMES[op], VOUT_NAMES[oc]};
            NK_TRY(obs_family_counter(freq, lv, &a->vreq[op][oc]));
        }
        const char *lv[] = {VOP_NAMES[op]};
        NK_TRY(obs_family_histogram(flat, lv, &a->vlat[op]));
    }
    return obs_gauge_register(reg, "norikv_vector_memory_bytes",
                              "Accounted bytes of the node's vector indexes (vec_store_memory)",
                              &a->vmem);
}

void api_vector_update_gauges(struct api *a)
{
    if (a->vmem && node_vec(a->node))
        obs_gauge_set(a->vmem, (int64_t)vec_store_memory(node_vec(a->node)));
}

nk_status api_vector_register(struct api *a, struct rpc_server *s)
{
    NK_TRY(register_metrics(a));
    struct rpc_method ms[] = {
        {"/norikv.v1.Vector/CreateIndex", RPC_UNARY, on_create, NULL, a},
        {"/norikv.v1.Vector/DropIndex", RPC_UNARY, on_drop, NULL, a},
        {"/norikv.v1.Vector/Insert", RPC_UNARY, on_insert, NULL, a},
        {"/norikv.v1.Vector/Delete", RPC_UNARY, on_delete, NULL, a},
        {"/norikv.v1.Vector/Search", RPC_UNARY, on_search, NULL, a},
        {"/norikv.v1.Vector/Get", RPC_UNARY, on_get, NULL, a},
    };
    for (size_t i = 0; i < NK_ARRAY_LEN(ms); i++)
        NK_TRY(rpc_server_add_method(s, &ms[i]));
    return NK_OK;
}
