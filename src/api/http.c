/*
 * http.c: the HTTP endpoints on libmicrohttpd (docs/http.md).
 *
 * One thread per connection, at most http_max_connections of them (and
 * http_max_per_ip from one address), so a handler may simply wait for the
 * node's answer; http_guard.c bounds the time to receive each request; HTTP is for operators and
 * scripts, the fast path is gRPC. Request bodies are bounded (1 MiB value +
 * slack): larger ones get 413 without being buffered.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "api/api_decode.h"
#include "api/api_internal.h"
#include "api/http_parse.h"
#include "api/http_vector.h"
#include "api/range.h"
#include "kv/kv.h"
#include "server/config.h"

#define MODULE "http"

/* ------------------------------------------------------------------- json */

void api_json_string(struct nk_buf *b, const uint8_t *s, size_t n)
{
    nk_buf_put_u8(b, '"');
    for (size_t i = 0; i < n; i++) {
        uint8_t c = s[i];
        if (c == '"' || c == '\\') {
            nk_buf_put_u8(b, '\\');
            nk_buf_put_u8(b, c);
        } else if (c < 0x20) {
            api_buf_printf(b, "\\u%04x", c);
        } else {
            nk_buf_put_u8(b, c);
        }
    }
    nk_buf_put_u8(b, '"');
}

static void base64(struct nk_buf *b, const uint8_t *s, size_t n)
{
    static const char t[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    nk_buf_put_u8(b, '"');
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)s[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t)s[i + 1] << 8;
        if (i + 2 < n)
            v |= s[i + 2];
        nk_buf_put_u8(b, (uint8_t)t[(v >> 18) & 63]);
        nk_buf_put_u8(b, (uint8_t)t[(v >> 12) & 63]);
        nk_buf_put_u8(b, i + 1 < n ? (uint8_t)t[(v >> 6) & 63] : '=');
        nk_buf_put_u8(b, i + 2 < n ? (uint8_t)t[v & 63] : '=');
    }
    nk_buf_put_u8(b, '"');
}

/* "value": "..." for UTF-8 text, "value_base64": "..." otherwise */
void api_json_bytes(struct nk_buf *b, const char *name, const uint8_t *s, size_t n)
{
    if (api_utf8_valid(s, n)) {
        api_buf_printf(b, "\"%s\":", name);
        api_json_string(b, s, n);
    } else {
        api_buf_printf(b, "\"%s_base64\":", name);
        base64(b, s, n);
    }
}

void api_view_json(struct api *a, struct nk_buf *b)
{
    struct node_view v;
    node_view_get(a->node, &v);
    api_buf_printf(b, "{\"epoch\":%" PRIu64 ",\"nodes\":[", v.epoch);
    for (uint32_t i = 0; i < v.n_nodes; i++) {
        api_buf_printf(b, "%s{\"id\":", i ? "," : "");
        api_json_string(b, (const uint8_t *)v.nodes[i].id, strlen(v.nodes[i].id));
        api_buf_printf(b, ",\"addr\":");
        api_json_string(b, (const uint8_t *)v.nodes[i].addr, strlen(v.nodes[i].addr));
        api_buf_printf(b, ",\"role\":\"%s\"}", v.nodes[i].role);
    }
    api_buf_printf(b, "],\"total_shards\":%u,\"shards\":[", v.total_shards);
    for (uint32_t s = 0; s < v.total_shards; s++) {
        api_buf_printf(b, "%s{\"id\":%u,\"replicas\":[", s ? "," : "", s);
        for (uint32_t j = 0; j < v.n_replicas[s]; j++) {
            const char *id = v.nodes[v.replicas[s][j]].id;
            api_buf_printf(b, "%s{\"node_id\":", j ? "," : "");
            api_json_string(b, (const uint8_t *)id, strlen(id));
            api_buf_printf(b, ",\"leader\":%s}",
                           v.leader[s] == (int8_t)v.replicas[s][j] ? "true" : "false");
        }
        api_buf_printf(b, "]}");
    }
    api_buf_printf(b, "]}\n");
    node_view_free(&v);
}

/* ------------------------------------------------------------- responses */

static enum MHD_Result respond(struct MHD_Connection *c, unsigned status, const char *ctype,
                               struct nk_buf *body)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(body->len, body->data,
                                                             MHD_RESPMEM_MUST_COPY);
    MHD_add_response_header(r, "Content-Type", ctype);
    enum MHD_Result ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

static unsigned http_status(enum nk_code code)
{
    switch (code) {
    case NK_CODE_OK: return 200;
    case NK_INVALID_ARGUMENT: return 400;
    case NK_NOT_FOUND: return 404;
    case NK_FAILED_PRECONDITION: return 409;
    case NK_ALREADY_EXISTS: return 409;
    case NK_RESOURCE_EXHAUSTED: return 429;
    case NK_UNIMPLEMENTED: return 501;
    case NK_UNAVAILABLE: return 503;
    case NK_DEADLINE_EXCEEDED: return 504;
    default: return 500;
    }
}

static enum MHD_Result respond_error(struct MHD_Connection *c, enum nk_code code, const char *msg,
                                     const char *extra_json)
{
    struct nk_buf b;
    nk_buf_init(&b);
    api_buf_printf(&b, "{\"error\":");
    api_json_string(&b, (const uint8_t *)msg, strlen(msg));
    api_buf_printf(&b, ",\"code\":\"%s\"%s%s}\n", nk_code_name(code == NK_IO_ERROR ? NK_INTERNAL : code),
                   extra_json ? "," : "", extra_json ? extra_json : "");
    enum MHD_Result r = respond(c, http_status(code), "application/json", &b);
    nk_buf_free(&b);
    return r;
}

/* ---------------------------------------------------- waiting for the node */

struct waiter {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool done;
    enum nk_code code;
    char msg[256];
    char hint[128];
    struct kv_result res;
};

static void waiter_init(struct waiter *w)
{
    memset(w, 0, sizeof(*w));
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
}

static void waiter_destroy(struct waiter *w)
{
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv);
}

static void waiter_cb(void *ctx, const struct node_write_result *r)
{
    struct waiter *w = ctx;
    pthread_mutex_lock(&w->mu);
    w->code = r->code;
    snprintf(w->msg, sizeof w->msg, "%s", r->msg ? r->msg : "");
    snprintf(w->hint, sizeof w->hint, "%s", r->leader_hint ? r->leader_hint : "");
    w->res = r->res;
    w->done = true;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

static void waiter_wait(struct waiter *w)
{
    pthread_mutex_lock(&w->mu);
    while (!w->done)
        pthread_cond_wait(&w->cv, &w->mu);
    pthread_mutex_unlock(&w->mu);
}

/* ------------------------------------------------------------------ /kv */

static enum MHD_Result kv_get_http(struct api *a, struct MHD_Connection *c,
                                   const struct api_http_kv_req *req)
{
    struct nk_slice key = nk_slice_make(req->key.data, req->key.len);
    enum node_consistency cons = req->consistency;
    uint32_t shard = nk_shard_for_key(key.data, key.len, a->total_shards);
    struct waiter w;
    waiter_init(&w);
    bool now = false;
    const char *hint = NULL;
    nk_status s = node_read_barrier(a->node, shard, cons, UINT64_MAX, waiter_cb, &w, &now, &hint);
    enum MHD_Result ret;
    if (!nk_ok(s)) {
        ret = respond_error(c, s.code, nk_status_msg(s), NULL);
        nk_status_free(&s);
        waiter_destroy(&w);
        return ret;
    }
    if (!now) {
        waiter_wait(&w);
        if (w.code != NK_CODE_OK) {
            ret = respond_error(c, w.code, w.msg, NULL);
            waiter_destroy(&w);
            return ret;
        }
    }
    waiter_destroy(&w);
    struct nk_buf val, body;
    nk_buf_init(&val);
    nk_buf_init(&body);
    uint64_t term = 0, index = 0;
    bool found = false;
    s = kv_get(node_kv(a->node), (uint16_t)shard, key, nk_wall_ms(), &val, &term, &index, &found);
    if (!nk_ok(s)) {
        ret = respond_error(c, NK_INTERNAL, nk_status_msg(s), NULL);
        nk_status_free(&s);
    } else if (!found) {
        ret = respond_error(c, NK_NOT_FOUND, "key not found", NULL);
    } else {
        api_buf_printf(&body, "{");
        api_json_bytes(&body, "key", key.data, key.len);
        api_buf_printf(&body, ",");
        api_json_bytes(&body, "value", val.data, val.len);
        api_buf_printf(&body, ",\"version\":{\"term\":%" PRIu64 ",\"index\":%" PRIu64 "}}\n",
                       term, index);
        ret = respond(c, 200, "application/json", &body);
    }
    nk_buf_free(&val);
    nk_buf_free(&body);
    return ret;
}

static enum MHD_Result kv_write_http(struct api *a, struct MHD_Connection *c,
                                     const struct api_http_kv_req *req, bool put,
                                     const struct nk_buf *value)
{
    struct nk_slice key = nk_slice_make(req->key.data, req->key.len);
    struct kv_cmd cmd = {.op = put ? KV_OP_PUT : KV_OP_DELETE,
                         .timestamp_ms = nk_wall_ms(),
                         .key = key,
                         .idem_key = nk_slice_make(req->idem.data, req->idem.len),
                         .has_if_match = req->has_if_match,
                         .if_match_term = req->if_match_term,
                         .if_match_index = req->if_match_index};
    if (put) {
        cmd.value = nk_slice_make(value->data, value->len);
        cmd.ttl_ms = req->ttl_ms;
        cmd.if_not_exists = req->if_not_exists;
    }
    nk_status s = kv_cmd_validate(&cmd);
    enum MHD_Result ret;
    if (!nk_ok(s)) {
        ret = respond_error(c, s.code, nk_status_msg(s), NULL);
        nk_status_free(&s);
        return ret;
    }
    struct nk_buf enc;
    nk_buf_init(&enc);
    kv_cmd_encode(&cmd, &enc);
    uint32_t shard = nk_shard_for_key(key.data, key.len, a->total_shards);
    struct waiter w;
    waiter_init(&w);
    s = node_propose(a->node, shard, nk_slice_make(enc.data, enc.len), UINT64_MAX, waiter_cb, &w);
    nk_buf_free(&enc);
    if (!nk_ok(s)) {
        ret = respond_error(c, s.code, nk_status_msg(s), NULL);
        nk_status_free(&s);
        waiter_destroy(&w);
        return ret;
    }
    waiter_wait(&w);
    enum nk_code code = w.code == NK_CODE_OK ? w.res.code : w.code;
    struct nk_buf body;
    nk_buf_init(&body);
    if (code == NK_CODE_OK) {
        api_buf_printf(&body, "{\"version\":{\"term\":%" PRIu64 ",\"index\":%" PRIu64 "}",
                       w.res.term, w.res.index);
        if (!put)
            api_buf_printf(&body, ",\"tombstoned\":%s", w.res.tombstoned ? "true" : "false");
        api_buf_printf(&body, "}\n");
        ret = respond(c, 200, "application/json", &body);
    } else if (w.code == NK_CODE_OK && code == NK_FAILED_PRECONDITION) {
        char extra[96] = "";
        if (w.res.has_current)
            snprintf(extra, sizeof extra, "\"current_version\":{\"term\":%" PRIu64
                     ",\"index\":%" PRIu64 "}", w.res.cur_term, w.res.cur_index);
        ret = respond_error(c, code, "version mismatch", extra[0] ? extra : NULL);
    } else if (w.code == NK_CODE_OK && code == NK_ALREADY_EXISTS) {
        ret = respond_error(c, code, "key already exists (if_not_exists)", NULL);
    } else if (w.code == NK_CODE_OK && code == NK_INVALID_ARGUMENT) {
        ret = respond_error(c, code, "idempotency key was already used with different parameters",
                            NULL);
    } else {
        ret = respond_error(c, code, w.msg[0] ? w.msg : nk_code_name(code), NULL);
    }
    nk_buf_free(&body);
    waiter_destroy(&w);
    return ret;
}

/* --------------------------------------------------------------- dispatch */

#define MAX_ARGS 16

struct args {
    struct api_http_arg a[MAX_ARGS];
    size_t n;
    bool too_many;
};

static enum MHD_Result collect_arg(void *cls, enum MHD_ValueKind kind, const char *key,
                                   size_t key_size, const char *value, size_t value_size)
{
    (void)kind;
    struct args *as = cls;
    if (as->n == MAX_ARGS) {
        as->too_many = true;
        return MHD_NO;
    }
    as->a[as->n++] = (struct api_http_arg){key, key_size, value, value ? value_size : 0};
    return MHD_YES;
}

/* /kv/{key}: raw path and raw query parameters, decoded by http_parse.c */
static enum MHD_Result kv_http(struct api *a, struct MHD_Connection *c, const char *path,
                               enum api_http_method m, const struct nk_buf *body)
{
    struct args as = {.n = 0};
    MHD_get_connection_values_n(c, MHD_GET_ARGUMENT_KIND, collect_arg, &as);
    if (as.too_many) {
        char msg[96];
        snprintf(msg, sizeof msg, "more than %d query parameters", MAX_ARGS);
        return respond_error(c, NK_INVALID_ARGUMENT, msg, NULL);
    }
    struct api_http_kv_req req;
    api_http_kv_init(&req);
    nk_status s = api_http_parse_kv(m, path, strlen(path), as.a, as.n, &req);
    enum MHD_Result ret;
    if (!nk_ok(s)) {
        ret = respond_error(c, s.code, nk_status_msg(s), NULL);
        nk_status_free(&s);
    } else if (m == API_HTTP_GET) {
        ret = kv_get_http(a, c, &req);
    } else {
        ret = kv_write_http(a, c, &req, m == API_HTTP_PUT, body);
    }
    api_http_kv_free(&req);
    return ret;
}

/* ------------------------------------------------------------ /kv?range */

struct range_waiter {
    struct waiter w;
    struct nk_buf body;
    uint32_t total_shards;
    bool keys_only; /* entries carry no "value" */
};

/* Renders the page as JSON (any thread), then wakes the HTTP thread. */
static void range_http_done(void *ctx, const struct api_range_outcome *o)
{
    struct range_waiter *rw = ctx;
    struct nk_buf *b = &rw->body;
    if (o->code == NK_CODE_OK) {
        const struct kv_scan_page *p = o->page;
        api_buf_printf(b, "{\"entries\":[");
        for (uint32_t i = 0; i < p->n; i++) {
            const struct kv_scan_entry *e = &p->entries[i];
            api_buf_printf(b, "%s{", i ? "," : "");
            api_json_bytes(b, "key", p->data.data + e->key_off, e->key_len);
            if (!rw->keys_only) {
                api_buf_printf(b, ",");
                api_json_bytes(b, "value", p->data.data + e->val_off, e->val_len);
            }
            api_buf_printf(b, ",\"version\":{\"term\":%" PRIu64 ",\"index\":%" PRIu64 "}",
                           e->term, e->index);
            if (e->expiry_ms)
                api_buf_printf(b, ",\"expires_at_ms\":%" PRIu64, e->expiry_ms);
            api_buf_printf(b, "}");
        }
        api_buf_printf(b, "],\"cursor\":");
        if (p->more) {
            struct nk_buf tok;
            nk_buf_init(&tok);
            api_range_token_encode(nk_slice_make(p->resume_after.data, p->resume_after.len),
                                   &tok);
            nk_buf_put_u8(b, '"');
            for (size_t i = 0; i < tok.len; i++)
                api_buf_printf(b, "%02x", tok.data[i]);
            nk_buf_put_u8(b, '"');
            nk_buf_free(&tok);
        } else {
            api_buf_printf(b, "null");
        }
        api_buf_printf(b, ",\"shards_covered\":%u,\"total_shards\":%u}\n", o->ncovered,
                       rw->total_shards);
    }
    struct node_write_result wr = {.code = o->code, .msg = o->msg, .leader_hint = o->hint};
    waiter_cb(&rw->w, &wr);
}

static enum MHD_Result kv_range_http(struct api *a, struct MHD_Connection *c)
{
    struct args as = {.n = 0};
    MHD_get_connection_values_n(c, MHD_GET_ARGUMENT_KIND, collect_arg, &as);
    if (as.too_many) {
        char msg[96];
        snprintf(msg, sizeof msg, "more than %d query parameters", MAX_ARGS);
        return respond_error(c, NK_INVALID_ARGUMENT, msg, NULL);
    }
    struct api_range_req req;
    api_range_req_init(&req);
    nk_status s = api_range_parse_http(as.a, as.n, a->total_shards, &req);
    if (!nk_ok(s)) {
        enum MHD_Result ret = respond_error(c, s.code, nk_status_msg(s), NULL);
        nk_status_free(&s);
        api_range_req_free(&req);
        return ret;
    }
    struct range_waiter rw;
    waiter_init(&rw.w);
    rw.keys_only = req.keys_only;
    nk_buf_init(&rw.body);
    rw.total_shards = a->total_shards;
    api_range_run(a, &req, UINT64_MAX, range_http_done, &rw);
    api_range_req_free(&req);
    waiter_wait(&rw.w);
    enum MHD_Result ret;
    if (rw.w.code != NK_CODE_OK) {
        char extra[200] = "";
        if (rw.w.hint[0])
            snprintf(extra, sizeof extra, "\"leader_hint\":\"%s\"", rw.w.hint);
        ret = respond_error(c, rw.w.code, rw.w.msg, extra[0] ? extra : NULL);
    } else {
        ret = respond(c, 200, "application/json", &rw.body);
    }
    nk_buf_free(&rw.body);
    waiter_destroy(&rw.w);
    return ret;
}

/*
 * libmicrohttpd's unescaping would write "%00" as a NUL into a C string and
 * cut the key there; leave the URL and query raw and decode with lengths in
 * http_parse.c instead.
 */
static size_t no_unescape(void *cls, struct MHD_Connection *c, char *s)
{
    (void)cls;
    (void)c;
    return strlen(s);
}

struct conn_state {
    struct nk_buf body;
    bool too_big;
    bool over_budget;  /* bodies of all connections passed http_max_body_bytes */
    uint64_t charged;  /* bytes of this body counted in api.http_body_bytes */
    bool started;      /* the handler has seen the request's headers */
    bool nul_in_line;  /* a raw NUL byte in the request line */
    size_t uri_len;    /* of the request target, from uri_logged; SIZE_MAX: unknown */
};

/*
 * libmicrohttpd hands over the method and the request target as C strings,
 * so a raw NUL byte in the request line ("PUT /kv/a\0b HTTP/1.1") would cut
 * them: the write would go to key "a". HTTP forbids control bytes there;
 * such requests are refused with 400. The URI log callback sees the whole
 * target (libmicrohttpd has ended it at the space before the version and
 * not yet split off the query); its length, compared with where the version
 * starts, shows a NUL inside. The method is checked against where the target
 * starts. Both rely only on the three being consecutive in the request line.
 */
static void *uri_logged(void *cls, const char *uri, struct MHD_Connection *c)
{
    (void)cls;
    (void)c;
    struct conn_state *st = nk_calloc(1, sizeof(*st));
    nk_buf_init(&st->body);
    st->uri_len = strlen(uri);
    return st;
}

static bool nul_in_request_line(const char *method, const char *url, const char *version,
                                size_t uri_len)
{
    if (uri_len != SIZE_MAX && version > url && (size_t)(version - url) < (64u << 10) &&
        url + uri_len + 1 < version)
        return true;
    if (url > method && (size_t)(url - method) < 64) {
        for (const char *p = method + strlen(method) + 1; p < url; p++)
            if (*p != ' ')
                return true;
    }
    return false;
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *c, const char *url,
                              const char *method, const char *version, const char *upload,
                              size_t *upload_size, void **con_cls)
{
    struct api *a = cls;
    bool is_get = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
    bool is_put = strcmp(method, "PUT") == 0 || strcmp(method, "POST") == 0;
    bool is_del = strcmp(method, "DELETE") == 0;
    bool is_kv = strncmp(url, "/kv/", 4) == 0;

    if (*con_cls == NULL) { /* not seen by uri_logged */
        struct conn_state *st = nk_calloc(1, sizeof(*st));
        nk_buf_init(&st->body);
        st->uri_len = SIZE_MAX;
        *con_cls = st;
    }
    struct conn_state *st = *con_cls;
    if (!st->started) {
        st->started = true;
        st->nul_in_line = nul_in_request_line(method, url, version, st->uri_len);
        return MHD_YES;
    }
    if (*upload_size) {
        size_t n = *upload_size;
        *upload_size = 0;
        if (st->too_big || st->over_budget)
            return MHD_YES; /* drained, not kept */
        /* every connection's body counts against one budget: 512
         * connections of 1 MiB each must not all be buffered at once */
        uint64_t total = atomic_fetch_add(&a->http_body_bytes, n) + n;
        if (total > a->http_max_body_bytes) {
            atomic_fetch_sub(&a->http_body_bytes, n + st->charged);
            st->charged = 0;
            st->over_budget = true;
            nk_buf_free(&st->body);
            nk_buf_init(&st->body);
            return MHD_YES;
        }
        st->charged += n;
        api_http_body_append(&st->body, &st->too_big, upload, n);
        return MHD_YES;
    }
    http_guard_request_received(c);

    struct nk_buf b;
    nk_buf_init(&b);
    enum MHD_Result ret;
    int oret = MHD_NO;
    if (st->nul_in_line) {
        ret = respond_error(c, NK_INVALID_ARGUMENT,
                            "the request line contains a NUL byte (percent-encode it as %00)",
                            NULL);
    } else if (st->over_budget) {
        char msg[160];
        snprintf(msg, sizeof msg,
                 "HTTP request bodies being received exceed the server's %" PRIu64
                 "-byte budget; retry later",
                 a->http_max_body_bytes);
        ret = respond_error(c, NK_RESOURCE_EXHAUSTED, msg, NULL);
    } else if (st->too_big) {
        char msg[128];
        snprintf(msg, sizeof msg, "request body is larger than the %u-byte value limit",
                 KV_MAX_VALUE);
        ret = respond_error(c, NK_INVALID_ARGUMENT, msg, NULL);
    } else if (strcmp(url, "/healthz") == 0 && is_get) {
        api_buf_printf(&b, "ok\n");
        ret = respond(c, 200, "text/plain", &b);
    } else if (strcmp(url, "/readyz") == 0 && is_get) {
        struct node_stats ns;
        node_get_stats(a->node, &ns);
        /* a cluster member holding no replica (joined just now, or drained) is
         * ready: it routes every request to the shards' leaders */
        bool ready = (ns.shards_hosted > 0 || ns.members > 1) &&
                     ns.shards_ready == ns.shards_hosted;
        if (ready)
            api_buf_printf(&b, "ready\n");
        else
            api_buf_printf(&b, "not ready: %u of %u shards have a leader\n", ns.shards_ready,
                           ns.shards_hosted);
        ret = respond(c, ready ? 200 : 503, "text/plain", &b);
    } else if (strcmp(url, "/health") == 0 && is_get) {
        struct node_stats ns;
        node_get_stats(a->node, &ns);
        struct lsm_health lh;
        lsm_health(node_lsm(a->node), &lh);
        /* a cluster member holding no replica (joined just now, or drained) is
         * ready: it routes every request to the shards' leaders */
        bool ready = (ns.shards_hosted > 0 || ns.members > 1) &&
                     ns.shards_ready == ns.shards_hosted;
        bool degraded = ns.degraded || ns.damaged_shards > 0 || !lh.writable || lh.nquarantined;
        api_buf_printf(&b, "{\"status\":\"%s\",\"node\":",
                       degraded ? "degraded" : ready ? "ok" : "starting");
        struct node_view v;
        node_view_get(a->node, &v);
        api_json_string(&b, (const uint8_t *)v.nodes[0].id, strlen(v.nodes[0].id));
        node_view_free(&v);
        api_buf_printf(&b,
                       ",\"uptime_ms\":%" PRIu64 ",\"shards_total\":%u,\"shards_led\":%u,"
                       "\"last_applied\":%" PRIu64 ",\"applied_entries\":%" PRIu64
                       ",\"pending\":%" PRIu64 ",\"shards_hosted\":%u,\"shards_ready\":%u"
                       ",\"damaged_shards\":%u,\"writes_suspended\":%s,\"storage_writable\":%s"
                       ",\"quarantined_tables\":%zu,\"raft_log_fetches\":%" PRIu64
                       ",\"raft_log_disk_reads\":%" PRIu64 ",\"shards_quiet\":%" PRIu64,
                       nk_mono_ms() - a->start_ms, ns.total_shards, ns.shards_led,
                       ns.last_applied, ns.applied_entries, ns.pending, ns.shards_hosted,
                       ns.shards_ready, ns.damaged_shards, ns.degraded ? "true" : "false",
                       lh.writable ? "true" : "false", lh.nquarantined, ns.log_fetches,
                       ns.log_disk_reads, ns.shards_quiet);
        if (ns.swim_running)
            api_buf_printf(&b,
                           ",\"swim\":{\"detection_bound_ms\":%u,\"incarnation\":%" PRIu64
                           ",\"local_health\":%u,\"alive\":%u,\"suspect\":%u,\"dead\":%u"
                           ",\"left\":%u}",
                           ns.swim_detection_bound_ms, ns.swim_incarnation, ns.swim_lhm,
                           ns.members_alive, ns.members_suspect, ns.members_dead,
                           ns.members_left);
        const char *why = ns.degraded ? ns.degraded_why : lh.error;
        if (why) {
            api_buf_printf(&b, ",\"problem\":");
            api_json_string(&b, (const uint8_t *)why, strlen(why));
        }
        api_buf_printf(&b, "}\n");
        lsm_health_free(&lh);
        ret = respond(c, 200, "application/json", &b);
    } else if (strcmp(url, "/metrics") == 0 && is_get) {
        if (!a->prometheus) {
            ret = respond_error(c, NK_NOT_FOUND,
                                "metrics are disabled (telemetry.prometheus.enabled: false)", NULL);
        } else {
            api_update_gauges(a);
            api_observe_update(a);
            obs_render_prometheus(obs_default(), &b);
            ret = respond(c, 200, "text/plain; version=0.0.4", &b);
        }
    } else if (strcmp(url, "/meta/cluster") == 0 && is_get) {
        api_view_json(a, &b);
        ret = respond(c, 200, "application/json", &b);
    } else if (strcmp(url, "/meta/placement") == 0 && is_get) {
        node_placement_json(a->node, &b); /* docs/membership.md "The plan" */
        ret = respond(c, 200, "application/json", &b);
    } else if (api_observe_http(a, c, url, method, &oret)) {
        ret = (enum MHD_Result)oret; /* /events, /dashboard (observe_http.c) */
    } else if (strcmp(url, "/watch") == 0 && is_get) {
        ret = api_watch_http(a, c); /* watch_http.c (docs/watch.md) */
    } else if (strcmp(url, "/kv") == 0 && is_get) {
        ret = kv_range_http(a, c); /* GET /kv?prefix=... (docs/range.md) */
    } else if (is_kv && (is_get || is_put || is_del)) {
        ret = kv_http(a, c, url + 4, is_get ? API_HTTP_GET : is_put ? API_HTTP_PUT : API_HTTP_DELETE,
                      &st->body);
    } else if (strncmp(url, "/vector/", 8) == 0) { /* http_vector.c */
        ret = (enum MHD_Result)api_http_vector(a, c, method, url + 8, &st->body);
    } else if (is_kv || !strcmp(url, "/healthz") || !strcmp(url, "/readyz") ||
               !strcmp(url, "/health") || !strcmp(url, "/metrics") ||
               !strcmp(url, "/meta/cluster") || !strcmp(url, "/meta/placement")) {
        char msg[96];
        snprintf(msg, sizeof msg, "method %.16s is not allowed on %.40s", method, url);
        ret = respond_error(c, NK_UNIMPLEMENTED, msg, NULL);
    } else {
        char msg[160];
        snprintf(msg, sizeof msg, "no such endpoint: %.100s", url);
        ret = respond_error(c, NK_NOT_FOUND, msg, NULL);
    }
    nk_buf_free(&b);
    return ret;
}

static void request_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                              enum MHD_RequestTerminationCode toe)
{
    struct api *a = cls;
    (void)toe;
    http_guard_request_done(c);
    struct conn_state *st = *con_cls;
    if (st) {
        atomic_fetch_sub(&a->http_body_bytes, st->charged);
        nk_buf_free(&st->body);
        free(st);
        *con_cls = NULL;
    }
}

/* ----------------------------------------------------------------- start */

static int listen_on(const char *host, uint16_t port, uint16_t *bound, int *err)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_NUMERICSERV | AI_PASSIVE};
    struct addrinfo *res;
    char ps[8];
    snprintf(ps, sizeof ps, "%u", port);
    if (getaddrinfo(host, ps, &hints, &res) != 0) {
        *err = EADDRNOTAVAIL;
        return -1;
    }
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        *err = errno;
        freeaddrinfo(res);
        return -1;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, res->ai_addr, res->ai_addrlen) != 0 || listen(fd, 128) != 0) {
        *err = errno;
        close(fd);
        freeaddrinfo(res);
        return -1;
    }
    freeaddrinfo(res);
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    getsockname(fd, (struct sockaddr *)&ss, &sl);
    *bound = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                            : ((struct sockaddr_in *)&ss)->sin_port);
    return fd;
}

nk_status api_http_start(struct api *a, const char *addr, bool fallback, char *bound,
                         size_t bound_cap)
{
    char host[256];
    uint16_t port;
    NK_TRY(config_split_addr(addr, host, sizeof host, &port));
    int err = 0;
    uint16_t bport = 0;
    int fd = listen_on(host, port, &bport, &err);
    if (fd < 0 && err == EADDRINUSE && fallback) {
        NK_WARN(MODULE, "HTTP address %s is taken; serving HTTP on a free port instead", addr);
        fd = listen_on(host, 0, &bport, &err);
    }
    if (fd < 0)
        return nk_status_make(err == EADDRINUSE ? NK_ALREADY_EXISTS : NK_UNAVAILABLE,
                              "cannot listen for HTTP on %s: %s", addr, strerror(err));
    nk_status gs = http_guard_start(a->http_request_timeout_ms, &a->http_guard);
    if (!nk_ok(gs)) {
        close(fd);
        return gs;
    }
    /*
     * Slow clients (issue 9): the guard bounds the time to receive a whole
     * request; the per-address limit keeps one client from taking every
     * slot; the idle timeout (reset by each byte) only ends silent
     * connections sooner.
     */
    struct MHD_Daemon *d = MHD_start_daemon(
        MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG, 0,
        NULL, NULL, handle, a, MHD_OPTION_LISTEN_SOCKET, fd, MHD_OPTION_CONNECTION_LIMIT,
        (unsigned int)a->http_max_conn, MHD_OPTION_PER_IP_CONNECTION_LIMIT,
        (unsigned int)a->http_max_per_ip, MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned int)((a->http_request_timeout_ms + 999) / 1000),
        MHD_OPTION_NOTIFY_COMPLETED, request_completed, a, MHD_OPTION_URI_LOG_CALLBACK,
        uri_logged, NULL, MHD_OPTION_NOTIFY_CONNECTION,
        http_guard_notify, a, MHD_OPTION_UNESCAPE_CALLBACK, no_unescape, NULL, MHD_OPTION_END);
    if (!d) {
        close(fd);
        http_guard_stop(a->http_guard);
        a->http_guard = NULL;
        return nk_status_make(NK_UNAVAILABLE, "cannot start the HTTP server on %s", addr);
    }
    a->httpd = d;
    api_otlp_start(a); /* OTLP export, when configured (observe_http.c) */
    if (strchr(host, ':'))
        snprintf(bound, bound_cap, "[%s]:%u", host, bport);
    else
        snprintf(bound, bound_cap, "%s:%u", host, bport);
    return NK_OK;
}

void api_shutdown(struct api *a)
{
    if (a->httpd) {
        api_events_stop(a); /* /events streams say so, then end */
        MHD_stop_daemon(a->httpd);
        a->httpd = NULL;
    }
    http_guard_stop(a->http_guard);
    a->http_guard = NULL;
    api_events_grpc_stop(a);
    api_watch_stop(a); /* before the node closes: the pump reads its shards */
    api_range_stop(a);
    api_otlp_stop(a);
    pthread_mutex_lock(&a->snap_mu);
    if (a->snap_started) {
        pthread_join(a->snap_thread, NULL); /* a snapshot in progress ends first */
        a->snap_started = false;
    }
    pthread_mutex_unlock(&a->snap_mu);
    pthread_mutex_lock(&a->wmu);
    a->shut = true;
    pthread_mutex_unlock(&a->wmu);
    if (a->watching) {
        node_unwatch(a->node, a->node_watch_id);
        a->watching = false;
    }
}
