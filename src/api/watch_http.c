/*
 * watch_http.c: GET /watch (docs/watch.md "HTTP"), the change feeds of the
 * shards this node leads as server-sent events, for browsers and curl.
 *
 * Each stream runs on its connection's own libmicrohttpd thread, as /events
 * does: it polls the shards' applied indexes every WH_SLICE_MS, reads the
 * feeds from its positions (nothing is queued for it: a slow reader only
 * holds back its own thread, whose output buffer is bounded), and writes a
 * keepalive comment every WH_KEEPALIVE_MS. It ends with a final "end" event
 * when the node stops leading one of its shards, or when a shard's feed was
 * compacted past its position. It counts against the /events stream limit.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <microhttpd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api_internal.h"
#include "api/http_parse.h"
#include "kv/kv.h"

#define WH_SLICE_MS      100
#define WH_KEEPALIVE_MS  5000
#define WH_MAX_RECORDS   64 /* per shard and fill */
#define WH_NOT_SERVED    UINT64_MAX

struct wh_stream {
    struct api *a;
    struct api_watch_filter f;
    uint32_t nshards;
    uint64_t *pos, *pos_term;
    int fd;
    bool prelude_sent, ended;
    struct nk_buf out;
    size_t out_off;
    uint64_t last_write_ms;
};

static bool wh_matches(const struct api_watch_filter *f, struct nk_slice key)
{
    if (f->mode == 0)
        return key.len == f->k1.len && memcmp(key.data, f->k1.data, key.len) == 0;
    if (f->mode == 1)
        return key.len >= f->k1.len && memcmp(key.data, f->k1.data, f->k1.len) == 0;
    if (f->k1.len && nk_slice_cmp(key, nk_slice_make(f->k1.data, f->k1.len)) < 0)
        return false;
    return !f->k2.len || nk_slice_cmp(key, nk_slice_make(f->k2.data, f->k2.len)) < 0;
}

struct wh_read {
    struct wh_stream *w;
    uint16_t shard;
    uint32_t taken;
};

static bool wh_take(void *vctx, const struct kv_feed_record *rec)
{
    struct wh_read *c = vctx;
    struct wh_stream *w = c->w;
    struct nk_reader rd;
    nk_reader_init(&rd, rec->events.data, rec->events.len);
    struct kv_feed_event e;
    for (uint32_t i = 0; i < rec->count && kv_feed_next_event(&rd, &e); i++) {
        if (!wh_matches(&w->f, e.key))
            continue;
        api_buf_printf(&w->out, "id: %u:%" PRIu64 ".%" PRIu64 "\ndata: {\"kind\":\"%s\",", c->shard,
                       rec->term, rec->index,
                       e.kind == KV_EV_PUT ? "put" : e.kind == KV_EV_DELETE ? "delete" : "expire");
        api_json_bytes(&w->out, "key", e.key.data, e.key.len);
        if (e.kind == KV_EV_PUT && !w->f.keys_only) {
            nk_buf_put_u8(&w->out, ',');
            api_json_bytes(&w->out, "value", e.value.data, e.value.len);
        }
        api_buf_printf(&w->out,
                       ",\"version\":{\"term\":%" PRIu64 ",\"index\":%" PRIu64 "},\"shard\":%u",
                       rec->term, rec->index, c->shard);
        if (e.expiry_ms)
            api_buf_printf(&w->out, ",\"expires_at_ms\":%" PRIu64, e.expiry_ms);
        api_buf_printf(&w->out, "}\n\n");
    }
    w->pos[c->shard] = rec->index;
    w->pos_term[c->shard] = rec->term;
    return ++c->taken < WH_MAX_RECORDS;
}

static void wh_end(struct wh_stream *w, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void wh_end(struct wh_stream *w, const char *code, const char *fmt, ...)
{
    char msg[300];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    api_buf_printf(&w->out, "data: {\"kind\":\"end\",\"code\":\"%s\",\"message\":", code);
    api_json_string(&w->out, (const uint8_t *)msg, strlen(msg));
    api_buf_printf(&w->out, "}\n\n");
    w->ended = true;
}

/* Fills w->out with what is due now; false when nothing is. */
static bool wh_fill(struct wh_stream *w)
{
    if (!w->prelude_sent) {
        w->prelude_sent = true;
        uint32_t n = 0;
        for (uint32_t s = 0; s < w->nshards; s++)
            n += w->pos[s] != WH_NOT_SERVED;
        api_buf_printf(&w->out, "retry: 2000\n: norikv watch; this node serves %u shards\n\n",
                       n);
    }
    struct kv_store *kv = node_kv(w->a->node);
    for (uint32_t s = 0; s < w->nshards && !w->ended; s++) {
        if (w->pos[s] == WH_NOT_SERVED)
            continue;
        if (!node_shard_leads(w->a->node, s)) {
            wh_end(w, "UNAVAILABLE",
                   "NOT_LEADER: shard %u is no longer led by this node; resume at its leader "
                   "from your revisions",
                   s);
            break;
        }
        if (node_shard_applied(w->a->node, s) <= w->pos[s])
            continue;
        uint64_t floor = 0;
        nk_status st = kv_feed_floor(kv, (uint16_t)s, &floor);
        if (nk_ok(st) && w->pos[s] < floor) {
            wh_end(w, "OUT_OF_RANGE",
                   "compacted: shard %u keeps events after revision %" PRIu64
                   " only; scan again (GET /kv) and watch from its revisions",
                   s, floor);
            break;
        }
        uint64_t at = 0, ai = 0;
        if (nk_ok(st))
            st = kv_applied(kv, (uint16_t)s, &at, &ai);
        struct wh_read c = {.w = w, .shard = (uint16_t)s};
        if (nk_ok(st))
            st = kv_feed_read(kv, (uint16_t)s, w->pos[s], ai, wh_take, &c);
        if (!nk_ok(st)) {
            wh_end(w, "INTERNAL", "reading shard %u failed: %s", s, nk_status_msg(st));
            nk_status_free(&st);
            break;
        }
        if (c.taken < WH_MAX_RECORDS && ai > w->pos[s]) {
            w->pos[s] = ai; /* nothing more up to the applied entry */
            w->pos_term[s] = at;
        }
    }
    return w->out.len > 0;
}

static ssize_t wh_read_cb(void *cls, uint64_t off, char *buf, size_t max)
{
    (void)off;
    struct wh_stream *w = cls;
    if (w->out_off == w->out.len) {
        nk_buf_clear(&w->out);
        w->out_off = 0;
        if (w->ended)
            return MHD_CONTENT_READER_END_OF_STREAM;
        for (;;) {
            if (wh_fill(w))
                break;
            if (atomic_load(&w->a->http_stopping) || api_sse_reader_gone(w->fd))
                return MHD_CONTENT_READER_END_OF_STREAM;
            if (nk_mono_ms() - w->last_write_ms >= WH_KEEPALIVE_MS) {
                api_buf_printf(&w->out, ": keepalive\n\n");
                break;
            }
            nk_sleep_us(WH_SLICE_MS * 1000);
        }
    }
    size_t n = w->out.len - w->out_off;
    if (n > max)
        n = max;
    memcpy(buf, w->out.data + w->out_off, n);
    w->out_off += n;
    w->last_write_ms = nk_mono_ms();
    return (ssize_t)n;
}

static void wh_free(void *cls)
{
    struct wh_stream *w = cls;
    atomic_fetch_sub(&w->a->sse_clients, 1);
    api_watch_filter_free(&w->f);
    nk_buf_free(&w->out);
    free(w->pos);
    free(w->pos_term);
    free(w);
}

/* "shard:term.index,..." into from / from_term; INVALID_ARGUMENT naming it. */
static nk_status parse_from(const struct nk_buf *v, struct api_watch_filter *f)
{
    uint64_t *given = f->from;
    const char *p = (const char *)v->data, *end = p + v->len;
    while (p < end) {
        const char *c = memchr(p, ',', (size_t)(end - p));
        if (!c)
            c = end;
        char item[96];
        size_t n = (size_t)(c - p);
        if (n == 0 || n >= sizeof item)
            return nk_status_make(NK_INVALID_ARGUMENT,
                                  "from: each item is shard:term.index (e.g. 17:3.1200)");
        memcpy(item, p, n);
        item[n] = 0;
        unsigned long long sh, term, index;
        int used = 0;
        if (sscanf(item, "%llu:%llu.%llu%n", &sh, &term, &index, &used) != 3 ||
            (size_t)used != n || index == 0)
            return nk_status_make(NK_INVALID_ARGUMENT,
                                  "from: '%.40s' is not shard:term.index with index >= 1", item);
        if (sh >= f->nshards)
            return nk_status_make(NK_INVALID_ARGUMENT, "from: shard %llu does not exist (total %u)",
                                  sh, f->nshards);
        if (given[sh])
            return nk_status_make(NK_INVALID_ARGUMENT, "from: shard %llu is given twice", sh);
        given[sh] = index;
        f->from_term[sh] = term;
        p = c + 1;
    }
    return NK_OK;
}

void api_watch_filter_free(struct api_watch_filter *f)
{
    nk_buf_free(&f->k1);
    nk_buf_free(&f->k2);
    free(f->from);
    free(f->from_term);
    memset(f, 0, sizeof *f);
}

nk_status api_watch_http_parse(const struct api_http_arg *args, size_t nargs,
                               uint32_t total_shards, struct api_watch_filter *f)
{
    memset(f, 0, sizeof *f);
    nk_buf_init(&f->k1);
    nk_buf_init(&f->k2);
    f->nshards = total_shards;
    f->from = nk_calloc(total_shards ? total_shards : 1, sizeof *f->from);
    f->from_term = nk_calloc(total_shards ? total_shards : 1, sizeof *f->from_term);
    struct api_watch_filter *w = f;
    struct nk_buf v;
    nk_buf_init(&v);
    nk_status s = NK_OK;
    bool have[6] = {0};
    static const char *const names[6] = {"key", "prefix", "start", "end", "from", "keys_only"};
    for (size_t i = 0; i < nargs && nk_ok(s); i++) {
        const struct api_http_arg *a = &args[i];
        int which = -1;
        for (int k = 0; k < 6; k++)
            if (a->name_len == strlen(names[k]) && memcmp(a->name, names[k], a->name_len) == 0)
                which = k;
        if (which < 0) {
            s = nk_status_make(NK_INVALID_ARGUMENT,
                               "unknown query parameter '%.*s' for /watch (known: key, prefix, "
                               "start, end, from, keys_only)",
                               (int)(a->name_len > 32 ? 32 : a->name_len), a->name);
            break;
        }
        if (have[which]) {
            s = nk_status_make(NK_INVALID_ARGUMENT, "%s is given more than once", names[which]);
            break;
        }
        have[which] = true;
        nk_buf_clear(&v);
        size_t bad = 0;
        if (a->value && !api_pct_decode(a->value, a->value_len, &v, &bad)) {
            s = nk_status_make(NK_INVALID_ARGUMENT, "%s is not percent-encoded correctly",
                               names[which]);
            break;
        }
        if (which <= 3 && v.len > KV_MAX_KEY) {
            s = nk_status_make(NK_INVALID_ARGUMENT, "%s is %zu bytes; the limit is %u",
                               names[which], v.len, KV_MAX_KEY);
            break;
        }
        switch (which) {
        case 0:
        case 1:
        case 2:
            nk_buf_append(&w->k1, v.data, v.len);
            w->mode = which == 0 ? 0 : which == 1 ? 1 : 2;
            break;
        case 3:
            nk_buf_append(&w->k2, v.data, v.len);
            w->mode = 2;
            break;
        case 4:
            s = parse_from(&v, f);
            break;
        case 5:
            if (v.len == 4 && memcmp(v.data, "true", 4) == 0)
                w->keys_only = true;
            else if (!(v.len == 5 && memcmp(v.data, "false", 5) == 0))
                s = nk_status_make(NK_INVALID_ARGUMENT, "keys_only must be true or false");
            break;
        }
    }
    nk_buf_free(&v);
    if (!nk_ok(s))
        return s;
    int kinds = have[0] + have[1] + (have[2] || have[3]);
    if (kinds != 1)
        return nk_status_make(NK_INVALID_ARGUMENT,
                              "give one of key=, prefix= or start=/end= (got %d)", kinds);
    if ((have[0] || have[1]) && w->k1.len == 0)
        return nk_status_make(NK_INVALID_ARGUMENT, "%s is empty", have[0] ? "key" : "prefix");
    if (w->mode == 2 && w->k1.len && w->k2.len &&
        nk_slice_cmp(nk_slice_make(w->k1.data, w->k1.len), nk_slice_make(w->k2.data, w->k2.len)) >=
            0)
        return nk_status_make(NK_INVALID_ARGUMENT, "start must be below end");
    return NK_OK;
}

int api_watch_http(struct api *a, struct MHD_Connection *c)
{
    struct api_http_arg args[API_SSE_MAX_ARGS];
    struct api_http_args as = {.a = args, .n = 0};
    api_sse_args(c, &as);
    if (as.too_many)
        return api_http_error(c, NK_INVALID_ARGUMENT, "more than 8 query parameters on /watch");
    struct wh_stream *w = nk_calloc(1, sizeof *w);
    w->a = a;
    w->nshards = a->total_shards;
    nk_buf_init(&w->out);
    w->pos = nk_calloc(w->nshards, sizeof *w->pos);
    w->pos_term = nk_calloc(w->nshards, sizeof *w->pos_term);
    nk_status s = api_watch_http_parse(args, as.n, a->total_shards, &w->f);
    const uint64_t *given = w->f.from;
    struct kv_store *kv = node_kv(a->node);
    uint32_t key_shard = w->f.mode == 0 && nk_ok(s)
                             ? nk_shard_for_key(w->f.k1.data, w->f.k1.len, w->nshards)
                             : UINT32_MAX;
    for (uint32_t sh = 0; sh < w->nshards && nk_ok(s); sh++) {
        if ((key_shard != UINT32_MAX && sh != key_shard) || !node_shard_leads(a->node, sh)) {
            w->pos[sh] = WH_NOT_SERVED;
            continue;
        }
        if (given[sh]) {
            uint64_t floor = 0;
            s = kv_feed_floor(kv, (uint16_t)sh, &floor);
            if (nk_ok(s) && given[sh] < floor)
                s = nk_status_make(NK_OUT_OF_RANGE,
                                   "compacted: shard %u keeps events after revision %" PRIu64
                                   " only; scan again (GET /kv) and watch from its revisions",
                                   sh, floor);
            w->pos[sh] = given[sh];
            w->pos_term[sh] = w->f.from_term[sh];
        } else {
            uint64_t t = 0, i = 0;
            s = kv_applied(kv, (uint16_t)sh, &t, &i);
            w->pos[sh] = i;
            w->pos_term[sh] = t;
        }
    }
    if (!nk_ok(s)) {
        atomic_fetch_add(&a->sse_clients, 1); /* wh_free gives it back */
        wh_free(w);
        int r = api_http_error(c, s.code, nk_status_msg(s));
        nk_status_free(&s);
        return r;
    }
    uint32_t now = atomic_fetch_add(&a->sse_clients, 1) + 1;
    if (now > API_SSE_MAX_CLIENTS) {
        wh_free(w);
        char msg[160];
        snprintf(msg, sizeof msg,
                 "too many streams (/events and /watch): this node serves at most %d at once; "
                 "retry later",
                 API_SSE_MAX_CLIENTS);
        return api_http_error(c, NK_UNAVAILABLE, msg);
    }
    w->last_write_ms = nk_mono_ms();
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    w->fd = ci ? ci->connect_fd : -1;
    struct MHD_Response *r =
        MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16 * 1024, wh_read_cb, w, wh_free);
    if (!r) {
        wh_free(w);
        return api_http_error(c, NK_INTERNAL, "cannot create the watch stream");
    }
    MHD_add_response_header(r, "Content-Type", "text/event-stream; charset=utf-8");
    MHD_add_response_header(r, "Cache-Control", "no-cache");
    MHD_add_response_header(r, "X-Accel-Buffering", "no");
    enum MHD_Result ret = MHD_queue_response(c, 200, r);
    MHD_destroy_response(r);
    return ret;
}
