/*
 * events_http.c: GET /events, the node's event ring as server-sent events
 * (docs/observability.md, "The event stream").
 *
 * Each stream runs on its connection's own libmicrohttpd thread (the server
 * is thread-per-connection), so the content callback may block waiting for
 * the next event without holding up any other request. It waits in slices
 * of EV_WAIT_SLICE_MS so that a stopping server is never held up longer,
 * and writes a comment line every EV_KEEPALIVE_MS so that neither the
 * server's idle timeout nor a proxy closes a quiet stream.
 *
 * Memory per stream is bounded: it copies at most EV_BATCH events from the
 * ring at a time and keeps their text until sent; it never queues events
 * for a slow reader. A reader that falls more than the ring's capacity
 * behind gets a "gap" event saying how many it missed, then carries on
 * with the oldest event still held.
 */
#define _GNU_SOURCE /* POLLRDHUP */
#include <inttypes.h>
#include <microhttpd.h>
#include <poll.h>
#include <sys/socket.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api_internal.h"
#include "api/http_parse.h"

#define EV_BATCH          64
#define EV_WAIT_SLICE_MS  250
#define EV_KEEPALIVE_MS   5000
#define EV_KIND_LIST_MAX  512 /* bytes of ?kind= after decoding */

/* ------------------------------------------------------------- parsing */

nk_status api_events_parse(const struct api_http_arg *args, size_t nargs,
                           const char *last_event_id, uint64_t last_seq,
                           struct api_events_req *out)
{
    memset(out, 0, sizeof *out);
    out->kind_mask = UINT32_MAX;
    bool seen_since = false, seen_kind = false;
    struct nk_buf v;
    nk_buf_init(&v);
    nk_status s = NK_OK;
    for (size_t i = 0; i < nargs && nk_ok(s); i++) {
        const struct api_http_arg *a = &args[i];
        nk_buf_clear(&v);
        size_t bad = 0;
        if (a->value && !api_pct_decode(a->value, a->value_len, &v, &bad)) {
            s = nk_status_make(NK_INVALID_ARGUMENT,
                               "query parameter '%.*s' is not percent-encoded correctly",
                               (int)(a->name_len > 32 ? 32 : a->name_len), a->name);
            break;
        }
        if (a->name_len == 5 && memcmp(a->name, "since", 5) == 0) {
            if (seen_since) {
                s = nk_status_make(NK_INVALID_ARGUMENT, "since is given more than once");
                break;
            }
            seen_since = true;
            uint64_t n = 0;
            if (!api_parse_u64(v.data, v.len, &n)) {
                s = nk_status_make(NK_INVALID_ARGUMENT,
                                   "since '%.*s' is invalid: it must be an event sequence "
                                   "number, decimal digits 0 to 2^64-1",
                                   (int)(v.len > 40 ? 40 : v.len), (const char *)v.data);
                break;
            }
            if (n > last_seq) {
                s = nk_status_make(NK_INVALID_ARGUMENT,
                                   "since %" PRIu64 " is past the newest event (%" PRIu64
                                   "); sequence numbers restart when the server restarts: "
                                   "resume with since=0",
                                   n, last_seq);
                break;
            }
            out->since = n;
        } else if (a->name_len == 4 && memcmp(a->name, "kind", 4) == 0) {
            if (seen_kind) {
                s = nk_status_make(NK_INVALID_ARGUMENT, "kind is given more than once");
                break;
            }
            seen_kind = true;
            if (v.len == 0) {
                s = nk_status_make(NK_INVALID_ARGUMENT,
                                   "kind is empty: give a comma-separated list of event kinds");
                break;
            }
            if (v.len > EV_KIND_LIST_MAX) {
                s = nk_status_make(NK_INVALID_ARGUMENT, "kind is %zu bytes; the limit is %d",
                                   v.len, EV_KIND_LIST_MAX);
                break;
            }
            out->kind_mask = 0;
            const char *p = (const char *)v.data, *end = p + v.len;
            while (p <= end) {
                const char *c = memchr(p, ',', (size_t)(end - p));
                if (!c)
                    c = end;
                enum obs_event_kind k;
                if (c == p) {
                    s = nk_status_make(NK_INVALID_ARGUMENT,
                                       "kind has an empty element (in '%.*s')",
                                       (int)(v.len > 80 ? 80 : v.len), (const char *)v.data);
                    break;
                }
                if (!obs_event_kind_parse(p, (size_t)(c - p), &k) || k == OBS_EV_GAP) {
                    s = nk_status_make(NK_INVALID_ARGUMENT,
                                       "kind '%.*s' is not an event kind (known: info, "
                                       "warning, error, leader_change, election, membership, "
                                       "shard_move, snapshot, flush, compaction, lifecycle, "
                                       "term_change, role_change, log_compaction, "
                                       "write_stall, slow_request)",
                                       (int)(c - p > 40 ? 40 : c - p), p);
                    break;
                }
                out->kind_mask |= 1u << k;
                p = c + 1;
            }
        } else {
            s = nk_status_make(NK_INVALID_ARGUMENT,
                               "unknown query parameter '%.*s' for /events (known: since, kind)",
                               (int)(a->name_len > 32 ? 32 : a->name_len), a->name);
        }
    }
    nk_buf_free(&v);
    if (!nk_ok(s) || seen_since || !last_event_id)
        return s;
    /*
     * Browsers resend the last id they saw on reconnect. Unlike ?since= it is
     * not the user's choice, so an id past the newest event (the server
     * restarted and its sequence began again) restarts the stream with a
     * reset note instead of failing it.
     */
    uint64_t n = 0;
    if (!api_parse_u64((const uint8_t *)last_event_id, strlen(last_event_id), &n))
        return nk_status_make(NK_INVALID_ARGUMENT,
                              "Last-Event-ID '%.40s' is invalid: it must be an event sequence "
                              "number, decimal digits 0 to 2^64-1",
                              last_event_id);
    if (n > last_seq) {
        out->reset = true;
        out->since = 0;
    } else {
        out->since = n;
    }
    return NK_OK;
}

/* -------------------------------------------------------------- stream */

struct sse_stream {
    struct api *a;
    struct obs_events *ev;
    uint64_t after; /* every event up to this seq was sent or filtered out */
    uint32_t kind_mask;
    bool prelude_sent, reset;
    int fd; /* the connection's socket, to notice a reader that left; -1: unknown */
    struct nk_buf out;
    size_t out_off;
    uint64_t last_write_ms;
    struct obs_event batch[EV_BATCH];
};

static void append_event(struct nk_buf *b, const struct obs_event *e)
{
    api_buf_printf(b, "id: %" PRIu64 "\ndata: ", e->seq);
    obs_event_to_json(e, b);
    api_buf_printf(b, "\n\n");
}

/* Fills st->out with what is due now; false when nothing is. */
static bool fill(struct sse_stream *st)
{
    if (!st->prelude_sent) {
        st->prelude_sent = true;
        api_buf_printf(&st->out, "retry: 2000\n: norikv event stream; newest event %" PRIu64
                                 "\n\n",
                       obs_events_last_seq(st->ev));
        if (st->reset)
            api_buf_printf(&st->out,
                           "data: {\"kind\":\"gap\",\"reset\":true,\"message\":\"the server "
                           "restarted: its event numbers began again\"}\n\n");
    }
    size_t n = 0;
    uint64_t missed = 0;
    obs_events_read(st->ev, st->after, st->batch, EV_BATCH, &n, &missed);
    if (missed) {
        uint64_t from = st->after + 1, to = st->after + missed;
        api_buf_printf(&st->out,
                       "data: {\"kind\":\"gap\",\"missed\":%" PRIu64 ",\"from_seq\":%" PRIu64
                       ",\"to_seq\":%" PRIu64 ",\"time_ms\":%" PRIu64
                       ",\"message\":\"%" PRIu64 " events were overwritten before this reader "
                       "got them (the ring holds %u)\"}\n\n",
                       missed, from, to, nk_wall_ms(), missed, obs_events_capacity(st->ev));
        st->after = to;
    }
    for (size_t i = 0; i < n; i++) {
        const struct obs_event *e = &st->batch[i];
        st->after = e->seq;
        if (st->kind_mask & (1u << e->kind))
            append_event(&st->out, e);
    }
    return st->out.len > 0;
}

/*
 * A reader sends nothing after its request, so a readable socket that peeks
 * zero bytes (or an error) means it closed: end the stream now rather than
 * at the next keepalive write, so that its slot is free again.
 */
bool api_sse_reader_gone(int fd)
{
    if (fd < 0)
        return false;
    struct pollfd p = {.fd = fd, .events = POLLIN | POLLRDHUP};
    if (poll(&p, 1, 0) <= 0)
        return false;
    if (p.revents & (POLLRDHUP | POLLHUP | POLLERR))
        return true;
    char c;
    ssize_t n = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    return n == 0;
}

static ssize_t sse_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    (void)pos;
    struct sse_stream *st = cls;
    if (st->out_off == st->out.len) {
        nk_buf_clear(&st->out);
        st->out_off = 0;
        for (;;) {
            /* fill first: a stopping server's last event still goes out */
            if (fill(st))
                break;
            if (atomic_load(&st->a->http_stopping) || api_sse_reader_gone(st->fd))
                return MHD_CONTENT_READER_END_OF_STREAM;
            uint64_t now = nk_mono_ms();
            if (now - st->last_write_ms >= EV_KEEPALIVE_MS) {
                api_buf_printf(&st->out, ": keepalive\n\n");
                break;
            }
            obs_events_wait(st->ev, st->after, EV_WAIT_SLICE_MS);
        }
    }
    size_t n = st->out.len - st->out_off;
    if (n > max)
        n = max;
    memcpy(buf, st->out.data + st->out_off, n);
    st->out_off += n;
    st->last_write_ms = nk_mono_ms();
    return (ssize_t)n;
}

static void sse_free(void *cls)
{
    struct sse_stream *st = cls;
    atomic_fetch_sub(&st->a->sse_clients, 1);
    nk_buf_free(&st->out);
    free(st);
}

static enum MHD_Result collect(void *cls, enum MHD_ValueKind kind, const char *key, size_t key_size,
                               const char *value, size_t value_size)
{
    (void)kind;
    struct api_http_args *as = cls;
    if (as->n == API_SSE_MAX_ARGS) {
        as->too_many = true;
        return MHD_NO;
    }
    as->a[as->n++] = (struct api_http_arg){key, key_size, value, value ? value_size : 0};
    return MHD_YES;
}

void api_sse_args(struct MHD_Connection *c, struct api_http_args *as)
{
    MHD_get_connection_values_n(c, MHD_GET_ARGUMENT_KIND, collect, as);
}

void api_events_stop(struct api *a)
{
    struct node_view v;
    node_view_get(a->node, &v);
    struct obs_event_attrs ea = {0};
    obs_attrs_set_node(&ea, v.n_nodes ? v.nodes[0].id : a->node_id);
    obs_event_emit_attrs(obs_events_default(), OBS_EV_LIFECYCLE, OBS_NO_SHARD, &ea,
                         "node %s stopping: its HTTP and gRPC endpoints close",
                         v.n_nodes ? v.nodes[0].id : a->node_id);
    node_view_free(&v);
    atomic_store(&a->http_stopping, true);
    /* the event woke every stream; give them a moment to send it and end */
    for (int i = 0; i < 30 && atomic_load(&a->sse_clients) > 0; i++)
        nk_sleep_us(10000);
}

int api_events_http(struct api *a, struct MHD_Connection *c)
{
    struct api_http_arg args[API_SSE_MAX_ARGS];
    struct api_http_args as = {.a = args, .n = 0};
    api_sse_args(c, &as);
    if (as.too_many)
        return api_http_error(c, NK_INVALID_ARGUMENT, "more than 8 query parameters on /events");
    struct obs_events *ev = obs_events_default();
    const char *lei = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Last-Event-ID");
    struct api_events_req req;
    nk_status s = api_events_parse(args, as.n, lei, obs_events_last_seq(ev), &req);
    if (!nk_ok(s)) {
        int r = api_http_error(c, s.code, nk_status_msg(s));
        nk_status_free(&s);
        return r;
    }
    uint32_t now = atomic_fetch_add(&a->sse_clients, 1) + 1;
    if (now > API_SSE_MAX_CLIENTS) {
        atomic_fetch_sub(&a->sse_clients, 1);
        char msg[160];
        snprintf(msg, sizeof msg,
                 "too many /events streams: this node serves at most %d at once; retry later",
                 API_SSE_MAX_CLIENTS);
        return api_http_error(c, NK_UNAVAILABLE, msg);
    }
    struct sse_stream *st = nk_calloc(1, sizeof *st);
    st->a = a;
    st->ev = ev;
    st->after = req.since;
    st->kind_mask = req.kind_mask;
    st->reset = req.reset;
    st->last_write_ms = nk_mono_ms();
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    st->fd = ci ? ci->connect_fd : -1;
    nk_buf_init(&st->out);
    struct MHD_Response *r =
        MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16 * 1024, sse_read, st, sse_free);
    if (!r) {
        sse_free(st);
        return api_http_error(c, NK_INTERNAL, "cannot create the event stream");
    }
    MHD_add_response_header(r, "Content-Type", "text/event-stream; charset=utf-8");
    MHD_add_response_header(r, "Cache-Control", "no-cache");
    MHD_add_response_header(r, "X-Accel-Buffering", "no");
    enum MHD_Result ret = MHD_queue_response(c, 200, r);
    MHD_destroy_response(r);
    return ret;
}
