/*
 * watch.c: Kv.Watch (docs/watch.md), the shards' change feeds as gRPC
 * streams.
 *
 * A stream serves the requested shards this node leads when it opens; its
 * position is one revision (feed index) per shard, so that nothing is
 * queued for it: one pump thread reads the feeds (kv_feed_read, from the
 * LSM) from each stream's positions and writes what matches, and a stream
 * whose client does not read simply stays where it is (rpc/'s per-stream
 * queue is the only buffer). Such a stream is cut off with
 * RESOURCE_EXHAUSTED after WATCH_SLOW_MS without progress; one whose
 * position falls below a shard's feed floor gets OUT_OF_RANGE "compacted";
 * one that loses a shard's leadership gets UNAVAILABLE NOT_LEADER. Each
 * pass looks only at the shards whose applied index moved (one atomic load
 * per shard), except for streams that are behind.
 *
 * Memory per stream: two uint64 per shard of the cluster (positions and the
 * last revision told), plus its filter keys.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api_decode.h"
#include "api/api_internal.h"
#include "kv/kv.h"
#include "norikv/v1/norikv.pb-c.h"

#define WATCH_MAX_STREAMS   2048
#define WATCH_PASS_MS       20
#define WATCH_BUSY_PASS_MS  2 /* while streams exist and shards keep moving */
#define WATCH_MAX_EVENTS    256       /* per response (whole records may exceed it) */
#define WATCH_MAX_BYTES     (1u << 20) /* per response, likewise */
#define WATCH_MAX_QUEUED    4 /* responses waiting in rpc/ per stream (each <= ~1 MiB) */
#define WATCH_SLOW_MS       10000 /* NORIKV_WATCH_SLOW_MS overrides (tests) */
#define WATCH_PROGRESS_MS   1000
#define NOT_SERVED          UINT64_MAX

enum wmode { W_KEY, W_PREFIX, W_RANGE };

struct wstream {
    struct wstream *next;
    struct rpc_call *call;
    enum wmode mode;
    struct nk_buf k1, k2; /* key | prefix | start, end */
    bool keys_only;
    uint64_t *pos;  /* per shard: feed index handled up to; NOT_SERVED */
    uint64_t *told; /* per shard: revision index last sent (event or progress) */
    uint64_t *pos_term; /* per shard: the term of the entry at pos */
    bool lagging;   /* some shard could not be read to its end: look at all */
    uint32_t rr;    /* a lagging stream's scan starts here (where the last one stopped) */
    bool fresh;     /* opened since the last pass: check its leaderships once */
    bool closed, finished;
    uint64_t stuck_since_ms; /* a write was refused since (0: none) */
    uint64_t last_progress_ms;
};

struct api_watches {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct wstream *list;
    uint32_t n;
    bool stop, started;
    pthread_t thread;
    uint64_t slow_ms;
    uint64_t *seen;  /* per shard: applied index at the last pass */
    bool *leads;     /* per shard: led here at the last pass */
};

/* ------------------------------------------------------------- matching */

static bool matches(const struct wstream *w, struct nk_slice key)
{
    switch (w->mode) {
    case W_KEY:
        return key.len == w->k1.len && memcmp(key.data, w->k1.data, key.len) == 0;
    case W_PREFIX:
        return key.len >= w->k1.len && memcmp(key.data, w->k1.data, w->k1.len) == 0;
    case W_RANGE: {
        if (w->k1.len && nk_slice_cmp(key, nk_slice_make(w->k1.data, w->k1.len)) < 0)
            return false;
        if (w->k2.len && nk_slice_cmp(key, nk_slice_make(w->k2.data, w->k2.len)) >= 0)
            return false;
        return true;
    }
    }
    return false;
}

/* --------------------------------------------------------- a response */

struct resp {
    Norikv__V1__WatchEvent *ev;
    Norikv__V1__WatchEvent **evp;
    Norikv__V1__Version *ver;
    size_t n, cap, bytes;
    struct nk_buf data; /* keys and values, referenced by offsets until packed */
    size_t *koff, *klen, *voff, *vlen;
    /* The shards whose events are in the response, with the position each
     * reaches once it is sent (committed to the stream only then). */
    uint16_t *pshard;
    uint64_t *ppos, *pterm;
    size_t np, pcap;
};

static void resp_init(struct resp *r)
{
    memset(r, 0, sizeof *r);
    nk_buf_init(&r->data);
}

static void resp_free(struct resp *r)
{
    free(r->ev);
    free(r->evp);
    free(r->ver);
    free(r->koff);
    free(r->klen);
    free(r->voff);
    free(r->vlen);
    free(r->pshard);
    free(r->ppos);
    free(r->pterm);
    nk_buf_free(&r->data);
}

static void resp_clear(struct resp *r)
{
    r->n = 0;
    r->np = 0;
    r->bytes = 0;
    nk_buf_clear(&r->data);
}

static void resp_add(struct resp *r, const struct kv_feed_event *e, uint16_t shard, uint64_t term,
                     uint64_t index, bool keys_only)
{
    if (r->n == r->cap) {
        r->cap = r->cap ? 2 * r->cap : 64;
        r->ev = nk_realloc(r->ev, r->cap * sizeof *r->ev);
        r->evp = nk_realloc(r->evp, r->cap * sizeof *r->evp);
        r->ver = nk_realloc(r->ver, r->cap * sizeof *r->ver);
        r->koff = nk_realloc(r->koff, r->cap * sizeof *r->koff);
        r->klen = nk_realloc(r->klen, r->cap * sizeof *r->klen);
        r->voff = nk_realloc(r->voff, r->cap * sizeof *r->voff);
        r->vlen = nk_realloc(r->vlen, r->cap * sizeof *r->vlen);
    }
    Norikv__V1__WatchEvent *m = &r->ev[r->n];
    norikv__v1__watch_event__init(m);
    m->kind = e->kind == KV_EV_PUT      ? NORIKV__V1__WATCH_EVENT__KIND__PUT
              : e->kind == KV_EV_DELETE ? NORIKV__V1__WATCH_EVENT__KIND__DELETE
                                        : NORIKV__V1__WATCH_EVENT__KIND__EXPIRE;
    m->shard = shard;
    m->expires_at_ms = e->expiry_ms;
    norikv__v1__version__init(&r->ver[r->n]);
    r->ver[r->n].term = term;
    r->ver[r->n].index = index;
    r->koff[r->n] = r->data.len;
    r->klen[r->n] = e->key.len;
    nk_buf_append(&r->data, e->key.data, e->key.len);
    r->voff[r->n] = r->data.len;
    r->vlen[r->n] = keys_only ? 0 : e->value.len;
    if (!keys_only)
        nk_buf_append(&r->data, e->value.data, e->value.len);
    r->bytes += e->key.len + (keys_only ? 0 : e->value.len) + 32;
    r->n++;
}

static void resp_pend(struct resp *r, uint16_t shard, uint64_t pos, uint64_t term)
{
    if (r->np == r->pcap) {
        r->pcap = r->pcap ? 2 * r->pcap : 64;
        r->pshard = nk_realloc(r->pshard, r->pcap * sizeof *r->pshard);
        r->ppos = nk_realloc(r->ppos, r->pcap * sizeof *r->ppos);
        r->pterm = nk_realloc(r->pterm, r->pcap * sizeof *r->pterm);
    }
    r->pshard[r->np] = shard;
    r->ppos[r->np] = pos;
    r->pterm[r->np] = term;
    r->np++;
}

/*
 * Packs and writes the response (events of any number of shards, each
 * shard's in revision order, and with them the revision each shard's
 * position reaches, which the client may resume from); then those
 * positions are the stream's. False when the client's queue is full: the
 * response is dropped and its shards are read again from their positions.
 * Clears r either way.
 */
static bool resp_flush(struct wstream *w, struct resp *r, uint64_t now_ms)
{
    if (r->n == 0) {
        resp_clear(r);
        w->stuck_since_ms = 0; /* nothing waits for the client */
        return true;
    }
    bool ok = false;
    if (rpc_stream_queued(w->call) < WATCH_MAX_QUEUED) {
        for (size_t i = 0; i < r->n; i++) {
            r->ev[i].version = &r->ver[i];
            r->ev[i].key.data = r->data.data + r->koff[i];
            r->ev[i].key.len = r->klen[i];
            r->ev[i].value.data = r->data.data + r->voff[i];
            r->ev[i].value.len = r->vlen[i];
            r->evp[i] = &r->ev[i];
        }
        Norikv__V1__ShardRevision *pr = nk_malloc(r->np * sizeof *pr);
        Norikv__V1__ShardRevision **pp = nk_malloc(r->np * sizeof *pp);
        Norikv__V1__Version *pv = nk_malloc(r->np * sizeof *pv);
        for (size_t i = 0; i < r->np; i++) {
            norikv__v1__shard_revision__init(&pr[i]);
            norikv__v1__version__init(&pv[i]);
            pv[i].term = r->pterm[i];
            pv[i].index = r->ppos[i];
            pr[i].shard = r->pshard[i];
            pr[i].applied = &pv[i];
            pp[i] = &pr[i];
        }
        Norikv__V1__WatchResponse m = NORIKV__V1__WATCH_RESPONSE__INIT;
        m.n_events = r->n;
        m.events = r->evp;
        m.n_progress = r->np;
        m.progress = pp;
        nk_status st = rpc_stream_write_msg(w->call, &m.base);
        ok = nk_ok(st);
        nk_status_free(&st);
        free(pr);
        free(pp);
        free(pv);
    }
    if (ok) {
        for (size_t i = 0; i < r->np; i++) {
            w->pos[r->pshard[i]] = r->ppos[i];
            w->pos_term[r->pshard[i]] = r->pterm[i];
            w->told[r->pshard[i]] = r->ppos[i];
        }
        w->stuck_since_ms = 0;
    } else {
        /* the client is not keeping up: hold nothing more for it */
        if (!w->stuck_since_ms)
            w->stuck_since_ms = now_ms;
        w->lagging = true;
    }
    resp_clear(r);
    return ok;
}

/* -------------------------------------------------------------- reading */

struct read_ctx {
    struct wstream *w;
    struct resp *r;
    uint16_t shard;
    uint64_t last_index, last_term; /* the last record taken */
    uint32_t taken;
    bool full;
};

static bool take_record(void *vctx, const struct kv_feed_record *rec)
{
    struct read_ctx *c = vctx;
    if (c->r->n >= WATCH_MAX_EVENTS || c->r->bytes >= WATCH_MAX_BYTES) {
        c->full = true;
        return false; /* whole records only: the next one waits */
    }
    struct nk_reader rd;
    nk_reader_init(&rd, rec->events.data, rec->events.len);
    struct kv_feed_event e;
    for (uint32_t i = 0; i < rec->count && kv_feed_next_event(&rd, &e); i++)
        if (matches(c->w, e.key))
            resp_add(c->r, &e, c->shard, rec->term, rec->index, c->w->keys_only);
    c->last_index = rec->index;
    c->last_term = rec->term;
    c->taken++;
    return true;
}

static void finish(struct wstream *w, enum nk_code code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void finish(struct wstream *w, enum nk_code code, const char *fmt, ...)
{
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    rpc_stream_finish(w->call, code, msg);
    w->finished = true;
}

enum pump_result { PUMP_DONE, PUMP_FULL, PUMP_FINISHED };

/*
 * Moves one shard of a stream forward: adds the feed from its position to
 * the shard's applied revision to r (several shards share one response),
 * as far as r holds. PUMP_FULL: r is full and the shard has more (send r,
 * then pump the shard again); PUMP_FINISHED: the stream was finished.
 */
static enum pump_result pump_shard(struct api *a, struct wstream *w, uint16_t shard, struct resp *r)
{
    struct kv_store *kv = node_kv(a->node);
    uint64_t aterm = 0, aindex = 0;
    nk_status st = kv_applied(kv, shard, &aterm, &aindex);
    if (!nk_ok(st)) {
        finish(w, NK_INTERNAL, "reading shard %u failed: %s", shard, nk_status_msg(st));
        nk_status_free(&st);
        return PUMP_FINISHED;
    }
    if (aindex <= w->pos[shard])
        return PUMP_DONE;
    uint64_t floor = 0;
    st = kv_feed_floor(kv, shard, &floor);
    if (nk_ok(st) && w->pos[shard] < floor) {
        finish(w, NK_OUT_OF_RANGE,
               "compacted: shard %u keeps events after revision %" PRIu64 " only (asked from %" PRIu64
               "); scan again (Kv.Range) and watch from its revisions",
               shard, floor, w->pos[shard]);
        return PUMP_FINISHED;
    }
    size_t n0 = r->n;
    struct read_ctx c = {.w = w, .r = r, .shard = shard};
    if (nk_ok(st))
        st = kv_feed_read(kv, shard, w->pos[shard], aindex, take_record, &c);
    if (!nk_ok(st)) {
        finish(w, NK_INTERNAL, "reading the change feed of shard %u failed: %s", shard,
               nk_status_msg(st));
        nk_status_free(&st);
        return PUMP_FINISHED;
    }
    if (c.full && c.taken == 0)
        return PUMP_FULL; /* r was already full: nothing read */
    uint64_t new_pos = c.full ? c.last_index : aindex;
    uint64_t new_term = c.full ? c.last_term : aterm;
    if (r->n > n0) {
        /* the revision the client may resume from goes with the events */
        resp_pend(r, shard, new_pos, new_term);
    } else {
        w->pos[shard] = new_pos; /* nothing matched: nothing to send */
        w->pos_term[shard] = new_term;
    }
    return c.full ? PUMP_FULL : PUMP_DONE;
}

/* Progress: the shards whose position moved past what was last told. */
static void send_progress(struct wstream *w, uint32_t nshards, uint64_t now_ms)
{
    if (now_ms - w->last_progress_ms < WATCH_PROGRESS_MS)
        return;
    w->last_progress_ms = now_ms;
    size_t n = 0;
    for (uint32_t s = 0; s < nshards; s++)
        n += w->pos[s] != NOT_SERVED && w->pos[s] > w->told[s];
    if (n == 0)
        return;
    Norikv__V1__ShardRevision *pr = nk_malloc(n * sizeof *pr);
    Norikv__V1__ShardRevision **pp = nk_malloc(n * sizeof *pp);
    Norikv__V1__Version *pv = nk_malloc(n * sizeof *pv);
    size_t k = 0;
    for (uint32_t s = 0; s < nshards; s++) {
        if (w->pos[s] == NOT_SERVED || w->pos[s] <= w->told[s])
            continue;
        norikv__v1__shard_revision__init(&pr[k]);
        norikv__v1__version__init(&pv[k]);
        pv[k].term = w->pos_term[s];
        pv[k].index = w->pos[s];
        pr[k].shard = s;
        pr[k].applied = &pv[k];
        pp[k] = &pr[k];
        k++;
    }
    Norikv__V1__WatchResponse m = NORIKV__V1__WATCH_RESPONSE__INIT;
    m.n_progress = k;
    m.progress = pp;
    nk_status st = rpc_stream_write_msg(w->call, &m.base);
    if (nk_ok(st))
        for (uint32_t s = 0; s < nshards; s++)
            if (w->pos[s] != NOT_SERVED && w->pos[s] > w->told[s])
                w->told[s] = w->pos[s];
    nk_status_free(&st);
    free(pr);
    free(pp);
    free(pv);
}

static void free_stream(struct wstream *w)
{
    nk_buf_free(&w->k1);
    nk_buf_free(&w->k2);
    free(w->pos);
    free(w->told);
    free(w->pos_term);
    free(w);
}

static void *pump_main(void *arg)
{
    struct api *a = arg;
    struct api_watches *ws = a->kvwatch;
    uint32_t ns = a->total_shards;
    bool *lost = nk_calloc(ns, sizeof *lost);
    uint32_t *changed = nk_malloc(ns * sizeof *changed); /* shards whose applied index moved */
    uint32_t nchanged = 0;
    struct resp r;
    resp_init(&r);
    pthread_mutex_lock(&ws->mu);
    while (!ws->stop) {
        struct timespec dl;
        clock_gettime(CLOCK_MONOTONIC, &dl);
        /* a busy node is looked at again soon: an event waits for the
         * next pass, so the pass interval is most of a watch's latency */
        dl.tv_nsec += (ws->n > 0 && nchanged > 0 ? WATCH_BUSY_PASS_MS : WATCH_PASS_MS) * 1000000L;
        if (dl.tv_nsec >= 1000000000L) {
            dl.tv_sec++;
            dl.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&ws->cv, &ws->mu, &dl);
        if (ws->stop)
            break;
        uint64_t now_ms = nk_mono_ms();
        bool any_lost = false;
        nchanged = 0;
        for (uint32_t s = 0; s < ns; s++) {
            uint64_t ap = node_shard_applied(a->node, s);
            if (ap != ws->seen[s])
                changed[nchanged++] = s;
            ws->seen[s] = ap;
            bool l = node_shard_leads(a->node, s);
            lost[s] = ws->leads[s] && !l;
            any_lost |= lost[s];
            ws->leads[s] = l;
        }
        for (struct wstream **p = &ws->list; *p;) {
            struct wstream *w = *p;
            if (w->closed) {
                *p = w->next;
                ws->n--;
                rpc_stream_release(w->call);
                free_stream(w);
                continue;
            }
            p = &w->next;
            if (w->finished)
                continue;
            if (any_lost || w->fresh) {
                /* a fresh stream checks all its shards once: a leadership it
                 * was opened with may have ended before this pass saw it */
                bool fresh = w->fresh;
                w->fresh = false;
                for (uint32_t s = 0; s < ns; s++) {
                    if (w->pos[s] != NOT_SERVED &&
                        (lost[s] || (fresh && !node_shard_leads(a->node, s)))) {
                        const char *hint = NULL;
                        char buf[128];
                        hint = node_hint_for_shard(a->node, s, buf, sizeof buf);
                        finish(w, NK_UNAVAILABLE,
                               "NOT_LEADER: shard %u is no longer led by this node%s%s%s; "
                               "resume at its leader from your revisions",
                               s, hint ? " (leader: " : "", hint ? hint : "", hint ? ")" : "");
                        break;
                    }
                }
                if (w->finished)
                    continue;
            }
            if (nchanged == 0 && !w->lagging) {
                send_progress(w, ns, now_ms);
                continue;
            }
            /* a stream that is behind looks at all its shards, starting
             * where its last pass stopped (so that no shard waits behind the
             * others for long); one that is caught up only at those that
             * moved. The events of several shards share a response. */
            bool all = w->lagging;
            w->lagging = false;
            uint32_t count = all ? ns : nchanged;
            resp_clear(&r);
            /* a stream refused a write and its client has still not read:
             * nothing to read for it now (its bound, below, decides) */
            bool blocked = all && w->stuck_since_ms && rpc_stream_queued(w->call) >= WATCH_MAX_QUEUED;
            if (blocked)
                count = 0;
            for (uint32_t k = 0; k < count && !w->finished && !blocked; k++) {
                uint32_t s = all ? (w->rr + k) % ns : changed[k];
                if (w->pos[s] == NOT_SERVED)
                    continue;
                for (;;) {
                    enum pump_result pr = pump_shard(a, w, (uint16_t)s, &r);
                    if (pr != PUMP_FULL)
                        break;
                    if (!resp_flush(w, &r, now_ms)) {
                        blocked = true;
                        w->rr = s;
                        break;
                    }
                }
            }
            if (w->finished)
                continue;
            if (!blocked && !resp_flush(w, &r, now_ms))
                blocked = true;
            if (blocked)
                w->lagging = true;
            if (w->stuck_since_ms && now_ms - w->stuck_since_ms > ws->slow_ms) {
                finish(w, NK_RESOURCE_EXHAUSTED,
                       "watch too slow: the client read nothing for %" PRIu64
                       " ms while events waited; reconnect and resume from your last revisions",
                       ws->slow_ms);
                continue;
            }
            send_progress(w, ns, now_ms);
        }
    }
    pthread_mutex_unlock(&ws->mu);
    resp_free(&r);
    free(changed);
    free(lost);
    return NULL;
}

/* ------------------------------------------------------------- the call */

static void refuse(struct rpc_call *call, nk_status *s)
{
    rpc_stream_finish(call, s->code, nk_status_msg(*s));
    nk_status_free(s);
    rpc_stream_release(call);
}

/* Checks the request; fills the stream's filter. */
static nk_status parse(const Norikv__V1__WatchRequest *m, uint32_t total, struct wstream *w)
{
    int kinds = (m->key.len > 0) + (m->prefix.len > 0) + (m->start.len > 0 || m->end.len > 0);
    if (kinds > 1)
        return nk_status_make(NK_INVALID_ARGUMENT,
                              "give one of key, prefix or start/end, not several");
    if (m->key.len > KV_MAX_KEY || m->prefix.len > KV_MAX_KEY || m->start.len > KV_MAX_KEY ||
        m->end.len > KV_MAX_KEY)
        return nk_status_make(NK_INVALID_ARGUMENT, "a key, prefix or bound is over %u bytes",
                              KV_MAX_KEY);
    if (m->start.len && m->end.len &&
        nk_slice_cmp(nk_slice_make(m->start.data, m->start.len),
                     nk_slice_make(m->end.data, m->end.len)) >= 0)
        return nk_status_make(NK_INVALID_ARGUMENT, "start must be below end");
    if (m->n_shards > total || m->n_from > total)
        return nk_status_make(NK_INVALID_ARGUMENT, "more shards than the cluster's %u", total);
    /* pos: 0 for a shard asked (all when none are listed), NOT_SERVED else */
    for (uint32_t i = 0; i < total; i++)
        w->pos[i] = m->n_shards ? NOT_SERVED : 0;
    for (size_t i = 0; i < m->n_shards; i++) {
        if (m->shards[i] >= total)
            return nk_status_make(NK_INVALID_ARGUMENT, "shard %u does not exist (total %u)",
                                  m->shards[i], total);
        if (w->pos[m->shards[i]] == 0)
            return nk_status_make(NK_INVALID_ARGUMENT, "shard %u is given twice",
                                  m->shards[i]);
        w->pos[m->shards[i]] = 0;
    }
    for (size_t i = 0; i < m->n_from; i++) {
        const Norikv__V1__ShardRevision *f = m->from[i];
        if (f->shard >= total)
            return nk_status_make(NK_INVALID_ARGUMENT, "from: shard %u does not exist (total %u)",
                                  f->shard, total);
        if (w->told[f->shard] != 0)
            return nk_status_make(NK_INVALID_ARGUMENT, "from: shard %u is given twice", f->shard);
        if (!f->applied || f->applied->index == 0)
            return nk_status_make(NK_INVALID_ARGUMENT,
                                  "from: shard %u has no revision (give its last event's version)",
                                  f->shard);
        w->told[f->shard] = f->applied->index; /* kept here until opened */
        w->pos_term[f->shard] = f->applied->term;
    }
    if (m->key.len) {
        w->mode = W_KEY;
        nk_buf_append(&w->k1, m->key.data, m->key.len);
        /* one key lives on one shard: serve only that one */
        uint32_t ks = nk_shard_for_key(m->key.data, m->key.len, total);
        bool asked = w->pos[ks] == 0;
        for (uint32_t i = 0; i < total; i++)
            w->pos[i] = NOT_SERVED;
        if (asked)
            w->pos[ks] = 0;
    } else if (m->prefix.len) {
        w->mode = W_PREFIX;
        nk_buf_append(&w->k1, m->prefix.data, m->prefix.len);
    } else {
        w->mode = W_RANGE; /* both empty: every key */
        nk_buf_append(&w->k1, m->start.data, m->start.len);
        nk_buf_append(&w->k2, m->end.data, m->end.len);
    }
    w->keys_only = m->keys_only;
    return NK_OK;
}

static void on_watch_call(void *ctx, struct rpc_call *call, struct nk_slice req)
{
    struct api *a = ctx;
    struct api_watches *ws = a->kvwatch;
    uint32_t total = a->total_shards;
    ProtobufCMessage *pm = NULL;
    nk_status s = api_decode(&norikv__v1__watch_request__descriptor, req, 0, &pm);
    if (!nk_ok(s)) {
        refuse(call, &s);
        return;
    }
    Norikv__V1__WatchRequest *m = (Norikv__V1__WatchRequest *)pm;
    struct wstream *w = nk_calloc(1, sizeof *w);
    nk_buf_init(&w->k1);
    nk_buf_init(&w->k2);
    w->call = call;
    w->pos = nk_malloc(total * sizeof *w->pos);
    w->told = nk_calloc(total, sizeof *w->told);
    w->pos_term = nk_calloc(total, sizeof *w->pos_term);
    s = parse(m, total, w);
    norikv__v1__watch_request__free_unpacked(m, NULL);
    /* which shards: asked and led here; where from: the given revision or now */
    struct kv_store *kv = node_kv(a->node);
    uint32_t nserved = 0;
    uint32_t *served = nk_malloc(total * sizeof *served);
    for (uint32_t sh = 0; sh < total && nk_ok(s); sh++) {
        if (w->pos[sh] == NOT_SERVED || !node_shard_leads(a->node, sh)) {
            w->pos[sh] = NOT_SERVED;
            continue;
        }
        if (w->told[sh]) {
            uint64_t floor = 0;
            s = kv_feed_floor(kv, (uint16_t)sh, &floor);
            if (nk_ok(s) && w->told[sh] < floor)
                s = nk_status_make(NK_OUT_OF_RANGE,
                                   "compacted: shard %u keeps events after revision %" PRIu64
                                   " only (asked from %" PRIu64
                                   "); scan again (Kv.Range) and watch from its revisions",
                                   sh, floor, w->told[sh]);
            w->pos[sh] = w->told[sh];
        } else {
            uint64_t t = 0, i = 0;
            s = kv_applied(kv, (uint16_t)sh, &t, &i);
            w->pos[sh] = i;
            w->told[sh] = i;
            w->pos_term[sh] = t;
        }
        served[nserved++] = sh;
    }
    if (!nk_ok(s)) {
        free(served);
        free_stream(w);
        refuse(call, &s);
        return;
    }
    Norikv__V1__WatchResponse first = NORIKV__V1__WATCH_RESPONSE__INIT;
    first.n_shards = nserved;
    first.shards = served;
    pthread_mutex_lock(&ws->mu);
    if (ws->stop || ws->n >= WATCH_MAX_STREAMS) {
        bool stop = ws->stop;
        pthread_mutex_unlock(&ws->mu);
        free(served);
        free_stream(w);
        s = stop ? nk_status_make(NK_UNAVAILABLE, "server shutting down")
                 : nk_status_make(NK_RESOURCE_EXHAUSTED,
                                  "too many watch streams (%d open on this node); retry later",
                                  WATCH_MAX_STREAMS);
        refuse(call, &s);
        return;
    }
    s = rpc_stream_write_msg(call, &first.base);
    nk_status_free(&s);
    free(served);
    w->last_progress_ms = nk_mono_ms();
    w->lagging = true; /* read from the given positions at the next pass */
    w->fresh = true;
    w->next = ws->list;
    ws->list = w;
    ws->n++;
    pthread_cond_signal(&ws->cv);
    pthread_mutex_unlock(&ws->mu);
}

static void on_watch_closed(void *ctx, struct rpc_call *stream, bool cancelled)
{
    struct api *a = ctx;
    struct api_watches *ws = a->kvwatch;
    (void)cancelled;
    pthread_mutex_lock(&ws->mu);
    for (struct wstream *w = ws->list; w; w = w->next)
        if (w->call == stream)
            w->closed = true; /* the pump (or the stop) releases it */
    pthread_mutex_unlock(&ws->mu);
}

nk_status api_watch_register(struct api *a, struct rpc_server *s)
{
    struct api_watches *ws = nk_calloc(1, sizeof *ws);
    pthread_mutex_init(&ws->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&ws->cv, &ca);
    pthread_condattr_destroy(&ca);
    ws->seen = nk_calloc(a->total_shards, sizeof *ws->seen);
    ws->slow_ms = WATCH_SLOW_MS;
    const char *env = getenv("NORIKV_WATCH_SLOW_MS");
    if (env && *env) {
        char *end = NULL;
        unsigned long long v = strtoull(env, &end, 10);
        if (!*end && v >= 100 && v <= 3600000)
            ws->slow_ms = v;
    }
    ws->leads = nk_calloc(a->total_shards, sizeof *ws->leads);
    a->kvwatch = ws;
    struct rpc_method m = {"/norikv.v1.Kv/Watch", RPC_SERVER_STREAM, on_watch_call,
                           on_watch_closed, a};
    NK_TRY(rpc_server_add_method(s, &m));
    if (pthread_create(&ws->thread, NULL, pump_main, a) != 0)
        return nk_status_make(NK_INTERNAL, "cannot start the watch thread");
    ws->started = true;
    return NK_OK;
}

void api_watch_stop(struct api *a)
{
    struct api_watches *ws = a->kvwatch;
    if (!ws)
        return;
    pthread_mutex_lock(&ws->mu);
    ws->stop = true;
    pthread_cond_signal(&ws->cv);
    pthread_mutex_unlock(&ws->mu);
    if (ws->started) {
        pthread_join(ws->thread, NULL);
        ws->started = false;
    }
    pthread_mutex_lock(&ws->mu);
    for (struct wstream *w = ws->list; w; w = w->next)
        if (!w->closed && !w->finished)
            finish(w, NK_UNAVAILABLE, "server shutting down");
    pthread_mutex_unlock(&ws->mu);
}

void api_watch_free(struct api *a)
{
    struct api_watches *ws = a->kvwatch;
    if (!ws)
        return;
    api_watch_stop(a);
    while (ws->list) {
        struct wstream *w = ws->list;
        ws->list = w->next;
        rpc_stream_release(w->call);
        free_stream(w);
    }
    pthread_cond_destroy(&ws->cv);
    pthread_mutex_destroy(&ws->mu);
    free(ws->seen);
    free(ws->leads);
    free(ws);
    a->kvwatch = NULL;
}
