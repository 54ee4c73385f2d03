/*
 * batch.c: Kv.Batch (docs/batch.md). Decodes and checks the request (op
 * count, sizes, distinct keys, one shard) before anything is queued, encodes
 * one batch command (docs/format/batch.md) and proposes it to the shard's
 * group: the ops commit as one Raft entry and apply all or nothing. A batch
 * whose keys fall on several shards is FAILED_PRECONDITION naming them:
 * there are no multi-shard transactions.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "api/api_decode.h"
#include "api/range.h"
#include "norikv/v1/norikv.pb-c.h"

struct batch_ctx {
    struct api *a;
    struct rpc_call *call;
    uint64_t t0;
};

static void fail_hint(struct rpc_call *call, enum nk_code code, const char *msg, const char *hint)
{
    struct rpc_kv tr[1] = {{NULL, NULL}};
    size_t nt = 0;
    if (hint && *hint)
        tr[nt++] = (struct rpc_kv){"leader-hint", hint};
    rpc_call_fail(call, code, msg, tr, nt);
}

/* Completes the call with the applied result (Ready loop thread). */
static void batch_done(void *vctx, const struct node_write_result *r)
{
    struct batch_ctx *b = vctx;
    struct api *a = b->a;
    if (r->code != NK_CODE_OK) {
        fail_hint(b->call, r->code, r->msg ? r->msg : nk_code_name(r->code), r->leader_hint);
        api_record(a, API_BATCH, api_outcome_of(r->code, r->msg), b->t0);
    } else if (r->res.code == NK_INVALID_ARGUMENT) {
        fail_hint(b->call, NK_INVALID_ARGUMENT,
                  "idempotency key was already used with different parameters", NULL);
        api_record(a, API_BATCH, OUT_INVALID_ARGUMENT, b->t0);
    } else if (r->res.code != NK_CODE_OK || !r->res.batch) {
        fail_hint(b->call, NK_INTERNAL, "the batch could not be applied (damaged log entry)",
                  NULL);
        api_record(a, API_BATCH, OUT_INTERNAL, b->t0);
    } else {
        const struct kv_batch_result *br = r->res.batch;
        Norikv__V1__BatchResponse resp = NORIKV__V1__BATCH_RESPONSE__INIT;
        Norikv__V1__Version ver;
        norikv__v1__version__init(&ver);
        ver.term = r->res.term;
        ver.index = r->res.index;
        resp.applied = br->applied;
        resp.version = &ver;
        Norikv__V1__BatchOpResult *ops = nk_malloc((br->n ? br->n : 1) * sizeof(*ops));
        Norikv__V1__BatchOpResult **op = nk_malloc((br->n ? br->n : 1) * sizeof(*op));
        Norikv__V1__Version *cur = nk_malloc((br->n ? br->n : 1) * sizeof(*cur));
        for (uint32_t i = 0; i < br->n; i++) {
            norikv__v1__batch_op_result__init(&ops[i]);
            ops[i].code = (uint32_t)br->ops[i].code;
            ops[i].version = &ver;
            ops[i].tombstoned = br->ops[i].tombstoned;
            if (br->ops[i].has_current) {
                norikv__v1__version__init(&cur[i]);
                cur[i].term = br->ops[i].cur_term;
                cur[i].index = br->ops[i].cur_index;
                ops[i].current = &cur[i];
            }
            op[i] = &ops[i];
        }
        resp.n_results = br->n;
        resp.results = op;
        size_t len = norikv__v1__batch_response__get_packed_size(&resp);
        uint8_t *buf = nk_malloc(len ? len : 1);
        norikv__v1__batch_response__pack(&resp, buf);
        rpc_call_reply_malloced(b->call, buf, len);
        api_record(a, API_BATCH, br->applied ? OUT_OK : OUT_VERSION_MISMATCH, b->t0);
        free(ops);
        free(op);
        free(cur);
    }
    free(b);
}

static int cmp_u32(const void *x, const void *y)
{
    uint32_t a = *(const uint32_t *)x, b = *(const uint32_t *)y;
    return a < b ? -1 : a > b;
}

/* FAILED_PRECONDITION naming the shards (at most 16 of them listed). */
static nk_status cross_shard(const uint32_t *shard_of, uint32_t n)
{
    uint32_t *s = nk_malloc(n * sizeof(*s));
    memcpy(s, shard_of, n * sizeof(*s));
    qsort(s, n, sizeof(*s), cmp_u32);
    char list[256] = "";
    size_t at = 0;
    uint32_t distinct = 0;
    for (uint32_t i = 0; i < n; i++) {
        if (i && s[i] == s[i - 1])
            continue;
        distinct++;
        if (distinct <= 16 && at < sizeof list)
            at += (size_t)snprintf(list + at, sizeof list - at, "%s%u", distinct > 1 ? ", " : "",
                                   s[i]);
    }
    free(s);
    return nk_status_make(NK_FAILED_PRECONDITION,
                          "batch spans %u shards (%s%s): a batch's keys must all be on one shard; "
                          "multi-shard transactions are not supported",
                          distinct, list, distinct > 16 ? ", ..." : "");
}

static void on_batch(void *ctx, struct rpc_call *call, struct nk_slice reqb)
{
    struct api *a = ctx;
    uint64_t t0 = nk_mono_ns();
    ProtobufCMessage *pm = NULL;
    nk_status s = api_decode(&norikv__v1__batch_request__descriptor, reqb, 0, &pm);
    if (!nk_ok(s)) {
        api_record(a, API_BATCH, OUT_INVALID_ARGUMENT, t0);
        rpc_call_fail_status(call, &s);
        return;
    }
    Norikv__V1__BatchRequest *m = (Norikv__V1__BatchRequest *)pm;
    struct nk_slice idem;
    api_wire_field(&norikv__v1__batch_request__descriptor, reqb, "idempotency_key", &idem);
    struct kv_batch b = {.timestamp_ms = 0, .idem_key = idem, .n = (uint32_t)m->n_ops};
    uint32_t *shard_of = NULL;
    if (m->n_ops > KV_BATCH_MAX_OPS) {
        s = nk_status_make(NK_INVALID_ARGUMENT, "batch has %zu operations; the limit is %u",
                           m->n_ops, KV_BATCH_MAX_OPS);
        goto fail;
    }
    b.ops = nk_calloc(m->n_ops ? m->n_ops : 1, sizeof(*b.ops));
    for (size_t i = 0; i < m->n_ops; i++) {
        const Norikv__V1__BatchOp *o = m->ops[i];
        struct kv_batch_op *k = &b.ops[i];
        k->op = o->delete_ ? KV_OP_DELETE : KV_OP_PUT;
        k->key = nk_slice_make(o->key.data, o->key.len);
        k->value = nk_slice_make(o->value.data, o->value.len);
        k->ttl_ms = o->ttl_ms;
        k->if_not_exists = o->if_not_exists;
        if (o->if_match) {
            k->has_if_match = true;
            k->if_match_term = o->if_match->term;
            k->if_match_index = o->if_match->index;
        }
    }
    s = kv_batch_validate(&b);
    if (!nk_ok(s))
        goto fail;
    shard_of = nk_malloc(b.n * sizeof(*shard_of));
    bool one_shard = true;
    for (uint32_t i = 0; i < b.n; i++) {
        shard_of[i] = nk_shard_for_key(b.ops[i].key.data, b.ops[i].key.len, a->total_shards);
        one_shard = one_shard && shard_of[i] == shard_of[0];
    }
    if (!one_shard) {
        s = cross_shard(shard_of, b.n);
        api_record(a, API_BATCH, OUT_VERSION_MISMATCH, t0);
        rpc_call_fail_status(call, &s);
        goto out;
    }
    struct nk_buf enc;
    nk_buf_init(&enc);
    kv_batch_encode(&b, &enc);
    struct batch_ctx *bc = nk_malloc(sizeof(*bc));
    *bc = (struct batch_ctx){a, call, t0};
    s = node_propose(a->node, shard_of[0], nk_slice_make(enc.data, enc.len),
                     rpc_call_deadline_mono_ns(call), batch_done, bc);
    nk_buf_free(&enc);
    if (!nk_ok(s)) {
        api_record(a, API_BATCH, api_outcome_of(s.code, s.msg), t0);
        rpc_call_fail_status(call, &s);
        free(bc);
    }
    goto out;
fail:
    api_record(a, API_BATCH, OUT_INVALID_ARGUMENT, t0);
    rpc_call_fail_status(call, &s);
out:
    free(shard_of);
    free(b.ops);
    norikv__v1__batch_request__free_unpacked(m, NULL);
}

nk_status api_batch_register(struct api *a, struct rpc_server *s)
{
    struct rpc_method m = {"/norikv.v1.Kv/Batch", RPC_UNARY, on_batch, NULL, a};
    return rpc_server_add_method(s, &m);
}
