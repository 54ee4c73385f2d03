/*
 * events_grpc.c: Meta.WatchEvents, the node's event ring as a gRPC stream
 * (docs/observability.md, "The event stream"), the same events, filter and
 * gap markers as GET /events.
 *
 * One pump thread serves every stream: it waits on the ring (in slices of
 * PUMP_SLICE_MS, so that new streams and a stopping server are noticed),
 * then moves each stream forward from its own position. A stream's memory
 * is bounded by rpc/'s per-stream queue (stream_queue_max messages): when a
 * client does not read, writes are refused, the stream keeps its position
 * and the ring moves on; once the reader falls more than the ring's
 * capacity behind it gets a "gap" event saying how many it missed. Nothing
 * is ever queued for a slow reader beyond that.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api_decode.h"
#include "api/api_internal.h"
#include "norikv/v1/norikv.pb-c.h"

#define PUMP_SLICE_MS     100
#define PUMP_BATCH        64 /* events copied from the ring per stream and pass */
#define MAX_EVENT_STREAMS 64
#define MAX_KINDS         32 /* kinds in one request */

struct ev_stream {
    struct ev_stream *next;
    struct rpc_call *call;
    uint64_t pos;       /* seq of the last event handled (sent or filtered) */
    uint32_t kind_mask; /* bit k: send kind k */
    uint64_t pending_gap; /* missed events not yet reported (the write was refused) */
    bool closed;        /* on_closed ran: the pump releases it */
};

struct api_evstreams {
    pthread_mutex_t mu;
    struct ev_stream *list;
    uint32_t n;
    bool stop, started;
    pthread_t thread;
};

/* Packs one event; returns false when the client's queue is full. */
static bool send_event(struct ev_stream *s, const struct obs_event *e, uint64_t missed)
{
    Norikv__V1__Event m = NORIKV__V1__EVENT__INIT;
    m.seq = e->seq;
    m.time_ms = e->wall_ms;
    m.kind = (char *)obs_event_kind_name(missed ? OBS_EV_GAP : e->kind);
    m.shard = e->shard == OBS_NO_SHARD ? -1 : (int64_t)e->shard;
    m.message = (char *)e->msg;
    const struct obs_event_attrs *a = &e->attrs;
    m.term = a->set & OBS_ATTR_TERM ? a->term : 0;
    m.level = a->set & OBS_ATTR_LEVEL ? a->level : 0;
    m.out_level = a->set & OBS_ATTR_OUT_LEVEL ? a->out_level : 0;
    m.bytes_in = a->set & OBS_ATTR_BYTES_IN ? a->bytes_in : 0;
    m.bytes_out = a->set & OBS_ATTR_BYTES_OUT ? a->bytes_out : 0;
    m.files_in = a->set & OBS_ATTR_FILES_IN ? a->files_in : 0;
    m.files_out = a->set & OBS_ATTR_FILES_OUT ? a->files_out : 0;
    m.duration_us = a->set & OBS_ATTR_DURATION ? a->duration_us : 0;
    m.count = a->set & OBS_ATTR_COUNT ? a->count : 0;
    m.node = (char *)(a->set & OBS_ATTR_NODE ? a->node : "");
    m.role = (char *)(a->set & OBS_ATTR_ROLE ? a->role : "");
    m.missed = missed;
    nk_status st = rpc_stream_write_msg(s->call, &m.base);
    bool ok = nk_ok(st);
    nk_status_free(&st);
    return ok;
}

/* Moves one stream forward as far as its client's queue allows. */
static void pump_one(struct obs_events *ring, struct ev_stream *s, struct obs_event *buf)
{
    for (;;) {
        size_t n = 0;
        uint64_t missed = 0;
        obs_events_read(ring, s->pos, buf, PUMP_BATCH, &n, &missed);
        missed += s->pending_gap;
        if (missed) {
            struct obs_event gap = {.seq = n ? buf[0].seq - 1 : s->pos + missed,
                                    .wall_ms = nk_wall_ms(),
                                    .kind = OBS_EV_GAP,
                                    .shard = OBS_NO_SHARD};
            snprintf(gap.msg, sizeof gap.msg,
                     "this stream fell behind: %" PRIu64 " events were overwritten before it "
                     "read them",
                     missed);
            if (!send_event(s, &gap, missed)) {
                s->pending_gap = missed;
                if (n)
                    s->pos = buf[0].seq - 1;
                return;
            }
            s->pending_gap = 0;
        }
        if (n == 0)
            return;
        for (size_t i = 0; i < n; i++) {
            if ((s->kind_mask >> buf[i].kind & 1) && !send_event(s, &buf[i], 0))
                return; /* the client is not reading: resume here next pass */
            s->pos = buf[i].seq;
        }
        if (n < PUMP_BATCH)
            return;
    }
}

static void *pump_main(void *arg)
{
    struct api *a = arg;
    struct api_evstreams *es = a->evstreams;
    struct obs_events *ring = obs_events_default();
    struct obs_event *buf = nk_malloc(PUMP_BATCH * sizeof *buf);
    uint64_t seen = 0;
    for (;;) {
        obs_events_wait(ring, seen, PUMP_SLICE_MS);
        seen = obs_events_last_seq(ring);
        pthread_mutex_lock(&es->mu);
        if (es->stop) {
            pthread_mutex_unlock(&es->mu);
            break;
        }
        for (struct ev_stream **p = &es->list; *p;) {
            struct ev_stream *s = *p;
            if (s->closed) {
                *p = s->next;
                es->n--;
                rpc_stream_release(s->call);
                free(s);
                continue;
            }
            pump_one(ring, s, buf);
            p = &s->next;
        }
        pthread_mutex_unlock(&es->mu);
    }
    free(buf);
    return NULL;
}

/* Parses the request into a kind mask; INVALID_ARGUMENT names the problem. */
static nk_status parse_request(const Norikv__V1__EventsRequest *m, uint64_t last_seq,
                               uint32_t *mask)
{
    if (m->since > last_seq)
        return nk_status_make(NK_INVALID_ARGUMENT,
                              "since %" PRIu64 " is past the newest event (%" PRIu64
                              "); sequence numbers restart when the server restarts: resume "
                              "with since=0",
                              m->since, last_seq);
    if (m->n_kinds > MAX_KINDS)
        return nk_status_make(NK_INVALID_ARGUMENT, "%zu kinds; the limit is %d", m->n_kinds,
                              MAX_KINDS);
    *mask = m->n_kinds ? 0 : UINT32_MAX;
    for (size_t i = 0; i < m->n_kinds; i++) {
        enum obs_event_kind k;
        const char *name = m->kinds[i];
        if (!obs_event_kind_parse(name, strlen(name), &k) || k == OBS_EV_GAP)
            return nk_status_make(NK_INVALID_ARGUMENT,
                                  "kind '%.40s' is not an event kind (known: info, warning, "
                                  "error, leader_change, election, membership, shard_move, "
                                  "snapshot, flush, compaction, lifecycle, term_change, "
                                  "role_change, log_compaction, write_stall, slow_request)",
                                  name);
        *mask |= 1u << k;
    }
    return NK_OK;
}

static void refuse(struct rpc_call *call, nk_status *s)
{
    rpc_stream_finish(call, s->code, nk_status_msg(*s));
    nk_status_free(s);
    rpc_stream_release(call);
}

static void on_watch_events(void *ctx, struct rpc_call *call, struct nk_slice req)
{
    struct api *a = ctx;
    struct api_evstreams *es = a->evstreams;
    ProtobufCMessage *pm = NULL;
    nk_status s = api_decode(&norikv__v1__events_request__descriptor, req, 0, &pm);
    if (!nk_ok(s)) {
        refuse(call, &s);
        return;
    }
    Norikv__V1__EventsRequest *m = (Norikv__V1__EventsRequest *)pm;
    uint32_t mask = 0;
    s = parse_request(m, obs_events_last_seq(obs_events_default()), &mask);
    uint64_t since = m->since;
    norikv__v1__events_request__free_unpacked(m, NULL);
    if (!nk_ok(s)) {
        refuse(call, &s);
        return;
    }
    pthread_mutex_lock(&es->mu);
    if (es->stop || es->n >= MAX_EVENT_STREAMS) {
        s = es->stop ? nk_status_make(NK_UNAVAILABLE, "server shutting down")
                     : nk_status_make(NK_RESOURCE_EXHAUSTED,
                                      "too many event streams (%d open); close one or use "
                                      "GET /events",
                                      MAX_EVENT_STREAMS);
        pthread_mutex_unlock(&es->mu);
        refuse(call, &s);
        return;
    }
    struct ev_stream *st = nk_calloc(1, sizeof *st);
    st->call = call;
    st->pos = since;
    st->kind_mask = mask;
    st->next = es->list;
    es->list = st;
    es->n++;
    pthread_mutex_unlock(&es->mu);
    /* the pump sends the backlog within one slice */
}

static void on_events_closed(void *ctx, struct rpc_call *stream, bool cancelled)
{
    struct api *a = ctx;
    struct api_evstreams *es = a->evstreams;
    (void)cancelled;
    pthread_mutex_lock(&es->mu);
    for (struct ev_stream *s = es->list; s; s = s->next)
        if (s->call == stream)
            s->closed = true; /* the pump (or the stop) releases it */
    pthread_mutex_unlock(&es->mu);
}

nk_status api_events_grpc_register(struct api *a, struct rpc_server *s)
{
    struct api_evstreams *es = nk_calloc(1, sizeof *es);
    pthread_mutex_init(&es->mu, NULL);
    a->evstreams = es;
    struct rpc_method m = {"/norikv.v1.Meta/WatchEvents", RPC_SERVER_STREAM, on_watch_events,
                           on_events_closed, a};
    NK_TRY(rpc_server_add_method(s, &m));
    if (pthread_create(&es->thread, NULL, pump_main, a) != 0)
        return nk_status_make(NK_INTERNAL, "cannot start the event stream thread");
    es->started = true;
    return NK_OK;
}

void api_events_grpc_stop(struct api *a)
{
    struct api_evstreams *es = a->evstreams;
    if (!es)
        return;
    pthread_mutex_lock(&es->mu);
    es->stop = true;
    pthread_mutex_unlock(&es->mu);
    if (es->started) {
        pthread_join(es->thread, NULL);
        es->started = false;
    }
    pthread_mutex_lock(&es->mu);
    for (struct ev_stream *s = es->list; s; s = s->next) {
        if (!s->closed)
            rpc_stream_finish(s->call, NK_UNAVAILABLE, "server shutting down");
    }
    pthread_mutex_unlock(&es->mu);
}

void api_events_grpc_free(struct api *a)
{
    struct api_evstreams *es = a->evstreams;
    if (!es)
        return;
    api_events_grpc_stop(a);
    while (es->list) {
        struct ev_stream *s = es->list;
        es->list = s->next;
        rpc_stream_release(s->call);
        free(s);
    }
    pthread_mutex_destroy(&es->mu);
    free(es);
    a->evstreams = NULL;
}
