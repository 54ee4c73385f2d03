/*
 * http_vector.c: serving /vector requests (docs/http.md "/vector"). The
 * request is parsed by http_vector_parse.c; writes are proposed like the
 * gRPC Vector writes (the same vector command, the namespace's shard), reads
 * wait for the read barrier at the request's consistency. As /kv does, the
 * connection's thread waits for the node's answer (libmicrohttpd runs one
 * thread per connection, bounded by the connection limits).
 */
#include <inttypes.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "api/api_internal.h"
#include "api/http_vector.h"

/* One /vector request: where its answer goes and what it is recorded as
 * (norikv_vector_requests_total, like the gRPC calls; op -1: not parsed). */
struct hv {
    struct api *a;
    struct MHD_Connection *c;
    int op;
    uint64_t t0;
};

static int vrespond(const struct hv *h, unsigned status, struct nk_buf *body)
{
    struct MHD_Connection *c = h->c;
    if (h->op >= 0 && status == 200)
        api_vector_record(h->a, h->op, h->t0, NK_CODE_OK, NULL);
    struct MHD_Response *r =
        MHD_create_response_from_buffer(body->len, body->data, MHD_RESPMEM_MUST_COPY);
    MHD_add_response_header(r, "Content-Type", "application/json");
    enum MHD_Result ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

static unsigned vstatus(enum nk_code code)
{
    switch (code) {
    case NK_CODE_OK: return 200;
    case NK_INVALID_ARGUMENT: return 400;
    case NK_NOT_FOUND: return 404;
    case NK_ALREADY_EXISTS: return 409;
    case NK_RESOURCE_EXHAUSTED: return 429;
    case NK_UNIMPLEMENTED: return 501;
    case NK_UNAVAILABLE: return 503;
    case NK_DEADLINE_EXCEEDED: return 504;
    default: return 500;
    }
}

static int verror(const struct hv *h, enum nk_code code, const char *msg)
{
    if (h->op >= 0)
        api_vector_record(h->a, h->op, h->t0, code, msg);
    struct nk_buf b;
    nk_buf_init(&b);
    api_buf_printf(&b, "{\"error\":");
    api_json_string(&b, (const uint8_t *)msg, strlen(msg));
    api_buf_printf(&b, ",\"code\":\"%s\"}\n", nk_code_name(code));
    struct hv quiet = *h;
    quiet.op = -1; /* recorded above with its code */
    int r = vrespond(&quiet, vstatus(code), &b);
    nk_buf_free(&b);
    return r;
}

static int verror_status(const struct hv *h, nk_status s)
{
    int r = verror(h, s.code, nk_status_msg(s));
    nk_status_free(&s);
    return r;
}

struct vwait {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool done;
    enum nk_code code;
    char msg[256];
    bool has_vres;
    struct vec_result vres;
};

static void vwait_cb(void *ctx, const struct node_write_result *r)
{
    struct vwait *w = ctx;
    pthread_mutex_lock(&w->mu);
    w->code = r->code;
    snprintf(w->msg, sizeof w->msg, "%s", r->msg ? r->msg : "");
    if (r->vres) {
        w->vres = *r->vres;
        w->has_vres = true;
    }
    w->done = true;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

static void vwait_run(struct vwait *w)
{
    pthread_mutex_lock(&w->mu);
    while (!w->done)
        pthread_cond_wait(&w->cv, &w->mu);
    pthread_mutex_unlock(&w->mu);
}

static void vwait_init(struct vwait *w)
{
    memset(w, 0, sizeof(*w));
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
}

static void vwait_destroy(struct vwait *w)
{
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv);
}

static int write_http(const struct hv *h, const struct api_http_vector_req *r)
{
    struct api *a = h->a;
    struct vec_cmd cmd = {.timestamp_ms = nk_wall_ms(),
                          .ns = nk_slice_make(r->ns.data, r->ns.len),
                          .idem_key = nk_slice_make(r->idem.data, r->idem.len)};
    switch (r->op) {
    case API_HV_CREATE:
        cmd.op = VEC_OP_CREATE_INDEX;
        vec_index_options_default(&cmd.opt);
        cmd.opt.dims = r->dims;
        cmd.opt.metric = r->metric;
        cmd.opt.type = r->type;
        break;
    case API_HV_DROP: cmd.op = VEC_OP_DROP_INDEX; break;
    case API_HV_INSERT:
        cmd.op = VEC_OP_INSERT;
        cmd.id = nk_slice_make(r->id.data, r->id.len);
        cmd.vector = (const uint8_t *)r->v;
        cmd.dims = (uint32_t)r->n;
        break;
    default:
        cmd.op = VEC_OP_DELETE;
        cmd.id = nk_slice_make(r->id.data, r->id.len);
        break;
    }
    nk_status s = vec_cmd_validate(&cmd);
    if (nk_ok(s) && (r->op == API_HV_CREATE || r->op == API_HV_INSERT))
        s = api_vector_admit(a);
    if (!nk_ok(s))
        return verror_status(h, s);
    struct nk_buf enc;
    nk_buf_init(&enc);
    vec_cmd_encode(&cmd, &enc);
    struct vwait w;
    vwait_init(&w);
    s = node_propose(a->node, vec_shard_for_namespace(cmd.ns, a->total_shards),
                     nk_slice_make(enc.data, enc.len), UINT64_MAX, vwait_cb, &w);
    nk_buf_free(&enc);
    if (!nk_ok(s)) {
        vwait_destroy(&w);
        return verror_status(h, s);
    }
    vwait_run(&w);
    vwait_destroy(&w);
    if (w.code != NK_CODE_OK)
        return verror(h, w.code, w.msg[0] ? w.msg : nk_code_name(w.code));
    NK_ASSERT(w.has_vres);
    const struct vec_result *v = &w.vres;
    if (v->code == NK_DATA_LOSS)
        return verror(h, NK_INTERNAL, "the command could not be applied (damaged log entry)");
    if (v->code != NK_CODE_OK)
        return verror(h, v->code, v->msg[0] ? v->msg : nk_code_name(v->code));
    struct nk_buf b;
    nk_buf_init(&b);
    switch (r->op) {
    case API_HV_CREATE:
        api_buf_printf(&b, "{\"created\":%s}\n", v->created ? "true" : "false");
        break;
    case API_HV_DROP:
        api_buf_printf(&b, "{\"dropped\":%s}\n", v->dropped ? "true" : "false");
        break;
    case API_HV_INSERT:
        api_buf_printf(&b, "{\"version\":{\"term\":%" PRIu64 ",\"index\":%" PRIu64 "}}\n",
                       v->term, v->index);
        break;
    default: api_buf_printf(&b, "{\"deleted\":%s}\n", v->deleted ? "true" : "false"); break;
    }
    int ret = vrespond(h, 200, &b);
    nk_buf_free(&b);
    return ret;
}

static void floats_json(struct nk_buf *b, const float *v, size_t n)
{
    api_buf_printf(b, "[");
    for (size_t i = 0; i < n; i++)
        api_buf_printf(b, "%s%.9g", i ? "," : "", (double)v[i]);
    api_buf_printf(b, "]");
}

static int read_http(const struct hv *h, const struct api_http_vector_req *r)
{
    struct api *a = h->a;
    struct nk_slice ns = nk_slice_make(r->ns.data, r->ns.len);
    uint32_t shard = vec_shard_for_namespace(ns, a->total_shards);
    struct vwait w;
    vwait_init(&w);
    bool now = false;
    const char *hint = NULL;
    nk_status s = node_read_barrier(a->node, shard, r->consistency, UINT64_MAX, vwait_cb, &w,
                                    &now, &hint);
    if (!nk_ok(s)) {
        vwait_destroy(&w);
        return verror_status(h, s);
    }
    if (!now) {
        vwait_run(&w);
        if (w.code != NK_CODE_OK) {
            vwait_destroy(&w);
            return verror(h, w.code, w.msg[0] ? w.msg : nk_code_name(w.code));
        }
    }
    vwait_destroy(&w);
    struct nk_buf b;
    nk_buf_init(&b);
    int ret;
    if (r->op == API_HV_GET) {
        float *out = nk_malloc(VEC_MAX_DIMS * sizeof(float));
        uint32_t dims = 0;
        bool found = false;
        s = vec_get(node_vec(a->node), (uint16_t)shard, ns,
                    nk_slice_make(r->id.data, r->id.len), out, &dims, &found);
        if (nk_ok(s)) {
            api_buf_printf(&b, "{\"id\":");
            api_json_string(&b, r->id.data, r->id.len);
            api_buf_printf(&b, ",\"found\":%s", found ? "true" : "false");
            if (found) {
                api_buf_printf(&b, ",\"vector\":");
                floats_json(&b, out, dims);
            }
            api_buf_printf(&b, "}\n");
        }
        free(out);
    } else {
        struct vec_results res;
        vec_results_init(&res);
        uint64_t t0 = nk_mono_ns();
        s = vec_search(node_vec(a->node), (uint16_t)shard, ns, r->v, r->n, r->k, 0,
                       r->include_vectors, &res);
        uint64_t us = (nk_mono_ns() - t0) / 1000;
        if (nk_ok(s)) {
            api_buf_printf(&b, "{\"matches\":[");
            for (uint32_t i = 0; i < res.n; i++) {
                api_buf_printf(&b, "%s{\"id\":", i ? "," : "");
                api_json_string(&b, (const uint8_t *)res.m[i].id, res.m[i].id_len);
                api_buf_printf(&b, ",\"distance\":%.9g", (double)res.m[i].distance);
                if (res.m[i].vector) {
                    api_buf_printf(&b, ",\"vector\":");
                    floats_json(&b, res.m[i].vector, r->n);
                }
                api_buf_printf(&b, "}");
            }
            api_buf_printf(&b, "],\"search_time_us\":%" PRIu64 "}\n", us);
        }
        vec_results_free(&res);
    }
    if (nk_ok(s))
        ret = vrespond(h, 200, &b);
    else
        ret = verror_status(h, s);
    nk_buf_free(&b);
    return ret;
}

#define MAX_VARGS 16

struct vargs {
    struct api_http_arg a[MAX_VARGS];
    size_t n;
    bool too_many;
};

static enum MHD_Result collect(void *cls, enum MHD_ValueKind kind, const char *key,
                               size_t key_size, const char *value, size_t value_size)
{
    (void)kind;
    struct vargs *as = cls;
    if (as->n == MAX_VARGS) {
        as->too_many = true;
        return MHD_NO;
    }
    as->a[as->n++] = (struct api_http_arg){key, key_size, value, value ? value_size : 0};
    return MHD_YES;
}

int api_http_vector(struct api *a, struct MHD_Connection *c, const char *method,
                    const char *path, const struct nk_buf *body)
{
    struct hv hv = {a, c, -1, nk_mono_ns()};
    const struct hv *h = &hv;
    struct vargs as = {.n = 0};
    MHD_get_connection_values_n(c, MHD_GET_ARGUMENT_KIND, collect, &as);
    if (as.too_many)
        return verror(h, NK_INVALID_ARGUMENT, "more than 16 query parameters");
    struct api_http_vector_req r;
    api_http_vector_init(&r);
    nk_status s = api_http_parse_vector(method, path, strlen(path), as.a, as.n, body->data,
                                        body->len, &r);
    static const int OPS[] = {[API_HV_CREATE] = 0, [API_HV_DROP] = 1, [API_HV_INSERT] = 2,
                              [API_HV_DELETE] = 3, [API_HV_SEARCH] = 4, [API_HV_GET] = 5};
    int ret;
    if (!nk_ok(s)) {
        ret = verror_status(h, s);
    } else {
        hv.op = OPS[r.op]; /* the op names of vector.c: create_index ... get */
        if (r.op == API_HV_GET || r.op == API_HV_SEARCH)
            ret = read_http(h, &r);
        else
            ret = write_http(h, &r);
    }
    api_http_vector_free(&r);
    return ret;
}
