/*
 * range.c: running a range request (Kv.Range, GET /kv?...; docs/range.md).
 *
 * A page covers the requested shards this node may answer for at the
 * request's consistency: it asks the node's read barrier of each shard (a
 * lease read on the leader needs nothing; linearizable reads queue a
 * ReadIndex; stale_ok needs a replica), and once every barrier has
 * answered, scans the shards whose barrier passed in one kv_scan page.
 * Shards refused (NOT_LEADER, no replica, barrier timeout) are simply not
 * covered: the response lists the covered shards and the client asks
 * their leaders. A request that covers no shard at all is an error: the
 * first non-NOT_LEADER failure, or UNAVAILABLE NOT_LEADER.
 *
 * The barriers answer on several threads (the caller, the Ready loop, the
 * reader); a count taken under the job's mutex makes the last one run the
 * scan. Successes after a ReadIndex arrive on the node's reader thread, but
 * failures (leadership lost, barrier timeout) on the Ready loop, which must
 * not scan: when a failure is the last answer, the page is handed to a
 * finisher thread (started on first use, at most API_RANGE_FINISH_QUEUE
 * pages waiting; beyond that, or once stopped, the page runs inline).
 * Barrier waits are capped (API_RANGE_BARRIER_MS) so that one shard
 * without a leader does not hold the whole page until the call's deadline.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "api/api_decode.h"
#include "api/range.h"
#include "norikv/v1/norikv.pb-c.h"

#define MODULE "api"

struct range_job;

struct range_slot {
    struct range_job *job;
    uint32_t i;
};

#define API_RANGE_FINISH_QUEUE 1024

struct range_job {
    struct range_job *next; /* finisher queue */
    struct api *a;
    struct api_range_req req;
    api_range_done_fn done;
    void *ctx;
    pthread_mutex_t mu;
    uint32_t pending;
    uint8_t *ok; /* per requested shard: its barrier passed */
    struct range_slot *slots;
    enum nk_code err; /* first failure other than NOT_LEADER */
    char errmsg[256];
    char hint[128];
};

static void job_note_failure(struct range_job *j, enum nk_code code, const char *msg,
                             const char *hint)
{
    bool not_leader = code == NK_UNAVAILABLE && msg && strstr(msg, "NOT_LEADER");
    if (!not_leader && j->err == NK_CODE_OK) {
        j->err = code;
        snprintf(j->errmsg, sizeof j->errmsg, "%s", msg ? msg : nk_code_name(code));
    }
    if (hint && *hint && !j->hint[0])
        snprintf(j->hint, sizeof j->hint, "%s", hint);
}

static void job_finish(struct range_job *j)
{
    struct api *a = j->a;
    uint16_t *covered = nk_malloc((j->req.nshards ? j->req.nshards : 1) * sizeof(*covered));
    uint32_t nc = 0;
    for (uint32_t i = 0; i < j->req.nshards; i++)
        if (j->ok[i])
            covered[nc++] = j->req.shards[i];
    struct api_range_outcome o = {.code = NK_CODE_OK};
    struct kv_scan_page page;
    kv_scan_page_init(&page);
    if (nc == 0 && j->req.nshards > 0) {
        if (j->err != NK_CODE_OK) {
            o.code = j->err;
            o.msg = j->errmsg;
        } else {
            o.code = NK_UNAVAILABLE;
            o.msg = "NOT_LEADER: this node can answer for none of the requested shards at this "
                    "consistency";
            o.hint = j->hint[0] ? j->hint : NULL;
        }
    } else {
        struct kv_scan_options so = {
            .start = nk_slice_make(j->req.start.data, j->req.start.len),
            .end = nk_slice_make(j->req.end.data, j->req.end.len),
            .prefix = nk_slice_make(j->req.prefix.data, j->req.prefix.len),
            .has_after = j->req.has_after,
            .after = nk_slice_make(j->req.after.data, j->req.after.len),
            .keys_only = j->req.keys_only,
            .limit = j->req.limit,
            .max_bytes = j->req.max_bytes,
            .max_examined = API_RANGE_MAX_EXAMINED,
            .now_ms = nk_wall_ms(), /* the reader's clock, as Kv.Get */
            .shards = covered,
            .nshards = nc,
        };
        nk_status s = kv_scan(node_kv(a->node), &so, &page);
        if (!nk_ok(s)) {
            NK_ERROR(MODULE, "range scan: %s", nk_status_msg(s));
            nk_status_free(&s);
            o.code = NK_INTERNAL;
            o.msg = "the range scan failed (see the server log)";
        } else {
            o.page = &page;
            o.covered = covered;
            o.ncovered = nc;
        }
    }
    j->done(j->ctx, &o);
    kv_scan_page_free(&page);
    free(covered);
    api_range_req_free(&j->req);
    pthread_mutex_destroy(&j->mu);
    free(j->ok);
    free(j->slots);
    free(j);
}

/* One reference dropped; the last runs the page. */
static void job_release(struct range_job *j)
{
    pthread_mutex_lock(&j->mu);
    bool last = --j->pending == 0;
    pthread_mutex_unlock(&j->mu);
    if (last)
        job_finish(j);
}

/* ------------------------------------------------------------- finisher */

struct range_finisher {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct range_job *head, *tail;
    uint32_t n;
    bool started, stop;
    pthread_t th;
};

static pthread_mutex_t g_fin_init = PTHREAD_MUTEX_INITIALIZER;

static void *finisher_main(void *arg)
{
    struct range_finisher *f = arg;
    pthread_mutex_lock(&f->mu);
    for (;;) {
        while (!f->head && !f->stop)
            pthread_cond_wait(&f->cv, &f->mu);
        if (!f->head)
            break; /* stopped and drained */
        struct range_job *j = f->head;
        f->head = j->next;
        if (!f->head)
            f->tail = NULL;
        f->n--;
        pthread_mutex_unlock(&f->mu);
        job_finish(j);
        pthread_mutex_lock(&f->mu);
    }
    pthread_mutex_unlock(&f->mu);
    return NULL;
}

/* Runs j's page off the calling thread when it can; inline otherwise. */
static void finish_elsewhere(struct range_job *j)
{
    struct api *a = j->a;
    pthread_mutex_lock(&g_fin_init);
    if (!a->range_fin) {
        struct range_finisher *f = nk_calloc(1, sizeof(*f));
        pthread_mutex_init(&f->mu, NULL);
        pthread_cond_init(&f->cv, NULL);
        f->started = pthread_create(&f->th, NULL, finisher_main, f) == 0;
        a->range_fin = f;
    }
    struct range_finisher *f = a->range_fin;
    pthread_mutex_unlock(&g_fin_init);
    pthread_mutex_lock(&f->mu);
    bool queued = f->started && !f->stop && f->n < API_RANGE_FINISH_QUEUE;
    if (queued) {
        j->next = NULL;
        if (f->tail)
            f->tail->next = j;
        else
            f->head = j;
        f->tail = j;
        f->n++;
        pthread_cond_signal(&f->cv);
    }
    pthread_mutex_unlock(&f->mu);
    if (!queued)
        job_finish(j);
}

void api_range_stop(struct api *a)
{
    pthread_mutex_lock(&g_fin_init);
    struct range_finisher *f = a->range_fin;
    pthread_mutex_unlock(&g_fin_init);
    if (!f)
        return;
    pthread_mutex_lock(&f->mu);
    bool join = f->started && !f->stop;
    f->stop = true;
    pthread_cond_signal(&f->cv);
    pthread_mutex_unlock(&f->mu);
    if (join)
        pthread_join(f->th, NULL); /* the queued pages run first */
    /* the finisher stays allocated (stopped) until api_free: a late
     * hand-off finds it stopped and runs inline */
}

void api_range_free(struct api *a)
{
    struct range_finisher *f = a->range_fin;
    if (!f)
        return;
    api_range_stop(a);
    pthread_mutex_destroy(&f->mu);
    pthread_cond_destroy(&f->cv);
    free(f);
    a->range_fin = NULL;
}

static void barrier_done(void *ctx, const struct node_write_result *r)
{
    struct range_slot *sl = ctx;
    struct range_job *j = sl->job;
    pthread_mutex_lock(&j->mu);
    if (r->code == NK_CODE_OK)
        j->ok[sl->i] = 1;
    else
        job_note_failure(j, r->code, r->msg, r->leader_hint);
    bool last = --j->pending == 0;
    pthread_mutex_unlock(&j->mu);
    if (!last)
        return;
    /* a success arrives on the reader thread, which may scan; a failure on
     * the Ready loop, which must not */
    if (r->code == NK_CODE_OK)
        job_finish(j);
    else
        finish_elsewhere(j);
}

void api_range_run(struct api *a, struct api_range_req *req, uint64_t deadline_mono_ns,
                   api_range_done_fn done, void *ctx)
{
    struct range_job *j = nk_calloc(1, sizeof(*j));
    j->a = a;
    j->req = *req;
    api_range_req_init(req); /* moved */
    j->done = done;
    j->ctx = ctx;
    pthread_mutex_init(&j->mu, NULL);
    uint32_t n = j->req.nshards;
    j->ok = nk_calloc(n ? n : 1, 1);
    j->slots = nk_calloc(n ? n : 1, sizeof(*j->slots));
    j->pending = 1; /* this function's own reference */
    uint64_t cap = nk_mono_ns() + API_RANGE_BARRIER_MS * 1000000ULL;
    uint64_t deadline = deadline_mono_ns < cap ? deadline_mono_ns : cap;
    for (uint32_t i = 0; i < n; i++) {
        j->slots[i] = (struct range_slot){j, i};
        pthread_mutex_lock(&j->mu);
        j->pending++;
        pthread_mutex_unlock(&j->mu);
        bool now = false;
        const char *hint = NULL;
        nk_status s = node_read_barrier(a->node, j->req.shards[i], j->req.consistency, deadline,
                                        barrier_done, &j->slots[i], &now, &hint);
        if (!nk_ok(s) || now) {
            pthread_mutex_lock(&j->mu);
            if (nk_ok(s))
                j->ok[i] = 1;
            else
                job_note_failure(j, s.code, nk_status_msg(s), hint);
            j->pending--;
            pthread_mutex_unlock(&j->mu);
            nk_status_free(&s);
        }
    }
    job_release(j);
}

/* ------------------------------------------------------------------- gRPC */

struct grpc_range {
    struct api *a;
    struct rpc_call *call;
    uint64_t t0;
};

static void grpc_range_done(void *ctx, const struct api_range_outcome *o)
{
    struct grpc_range *g = ctx;
    if (o->code != NK_CODE_OK) {
        struct rpc_kv tr[1] = {{NULL, NULL}};
        size_t nt = 0;
        if (o->hint && *o->hint)
            tr[nt++] = (struct rpc_kv){"leader-hint", o->hint};
        rpc_call_fail(g->call, o->code, o->msg, tr, nt);
        api_record(g->a, API_RANGE, api_outcome_of(o->code, o->msg), g->t0);
        free(g);
        return;
    }
    const struct kv_scan_page *p = o->page;
    Norikv__V1__RangeResponse resp = NORIKV__V1__RANGE_RESPONSE__INIT;
    Norikv__V1__RangeEntry *ents = nk_malloc((p->n ? p->n : 1) * sizeof(*ents));
    Norikv__V1__RangeEntry **ep = nk_malloc((p->n ? p->n : 1) * sizeof(*ep));
    Norikv__V1__Version *vers = nk_malloc((p->n + p->nrevs + 1) * sizeof(*vers));
    for (uint32_t i = 0; i < p->n; i++) {
        const struct kv_scan_entry *e = &p->entries[i];
        norikv__v1__range_entry__init(&ents[i]);
        ents[i].key.data = p->data.data + e->key_off;
        ents[i].key.len = e->key_len;
        ents[i].value.data = e->val_len ? p->data.data + e->val_off : NULL;
        ents[i].value.len = e->val_len;
        norikv__v1__version__init(&vers[i]);
        vers[i].term = e->term;
        vers[i].index = e->index;
        ents[i].version = &vers[i];
        ents[i].shard = e->shard;
        ents[i].expires_at_ms = e->expiry_ms;
        ep[i] = &ents[i];
    }
    resp.n_entries = p->n;
    resp.entries = ep;
    uint32_t *shards = nk_malloc((o->ncovered ? o->ncovered : 1) * sizeof(*shards));
    for (uint32_t i = 0; i < o->ncovered; i++)
        shards[i] = o->covered[i];
    resp.n_shards = o->ncovered;
    resp.shards = shards;
    Norikv__V1__ShardRevision *revs = nk_malloc((p->nrevs ? p->nrevs : 1) * sizeof(*revs));
    Norikv__V1__ShardRevision **rp = nk_malloc((p->nrevs ? p->nrevs : 1) * sizeof(*rp));
    for (uint32_t i = 0; i < p->nrevs; i++) {
        norikv__v1__shard_revision__init(&revs[i]);
        revs[i].shard = p->revs[i].shard;
        Norikv__V1__Version *v = &vers[p->n + i];
        norikv__v1__version__init(v);
        v->term = p->revs[i].term;
        v->index = p->revs[i].index;
        revs[i].applied = v;
        rp[i] = &revs[i];
    }
    resp.n_revisions = p->nrevs;
    resp.revisions = rp;
    struct nk_buf tok;
    nk_buf_init(&tok);
    if (p->more) {
        api_range_token_encode(nk_slice_make(p->resume_after.data, p->resume_after.len), &tok);
        resp.continuation.data = tok.data;
        resp.continuation.len = tok.len;
    }
    size_t len = norikv__v1__range_response__get_packed_size(&resp);
    uint8_t *buf = nk_malloc(len ? len : 1);
    norikv__v1__range_response__pack(&resp, buf);
    rpc_call_reply_malloced(g->call, buf, len);
    api_record(g->a, API_RANGE, OUT_OK, g->t0);
    nk_buf_free(&tok);
    free(ents);
    free(ep);
    free(vers);
    free(shards);
    free(revs);
    free(rp);
    free(g);
}

static void on_range(void *ctx, struct rpc_call *call, struct nk_slice reqb)
{
    struct api *a = ctx;
    uint64_t t0 = nk_mono_ns();
    ProtobufCMessage *pm = NULL;
    nk_status s = api_decode(&norikv__v1__range_request__descriptor, reqb, 0, &pm);
    if (!nk_ok(s)) {
        api_record(a, API_RANGE, OUT_INVALID_ARGUMENT, t0);
        rpc_call_fail_status(call, &s);
        return;
    }
    Norikv__V1__RangeRequest *m = (Norikv__V1__RangeRequest *)pm;
    struct nk_slice cs;
    api_wire_field(&norikv__v1__range_request__descriptor, reqb, "consistency", &cs);
    struct api_range_fields f = {
        .start = nk_slice_make(m->start.data, m->start.len),
        .end = nk_slice_make(m->end.data, m->end.len),
        .prefix = nk_slice_make(m->prefix.data, m->prefix.len),
        .token = nk_slice_make(m->continuation.data, m->continuation.len),
        .consistency = cs,
        .limit = m->limit,
        .max_bytes = m->max_bytes,
        .keys_only = m->keys_only,
        .shards = m->shards,
        .nshards = m->n_shards,
    };
    struct api_range_req req;
    api_range_req_init(&req);
    s = api_range_req_parse(&f, a->total_shards, &req);
    norikv__v1__range_request__free_unpacked(m, NULL);
    if (!nk_ok(s)) {
        api_record(a, API_RANGE, OUT_INVALID_ARGUMENT, t0);
        rpc_call_fail_status(call, &s);
        api_range_req_free(&req);
        return;
    }
    struct grpc_range *g = nk_malloc(sizeof(*g));
    *g = (struct grpc_range){a, call, t0};
    api_range_run(a, &req, rpc_call_deadline_mono_ns(call), grpc_range_done, g);
    api_range_req_free(&req);
}

nk_status api_range_register(struct api *a, struct rpc_server *s)
{
    struct rpc_method m = {"/norikv.v1.Kv/Range", RPC_UNARY, on_range, NULL, a};
    return rpc_server_add_method(s, &m);
}
