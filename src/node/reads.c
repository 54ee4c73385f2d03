/*
 * reads.c: linearizable reads. The loop matches completed ReadIndex rounds
 * to waiting reads and hands those whose index is applied to the reader
 * thread, which completes them: their LSM lookups and replies never run on
 * the Ready loop.
 */
#include "node/internal.h"


/* g->reads is in read_id order (ids grow as reads start, and removal keeps
 * the order): each completed read is found by binary search, so a round
 * with R reads costs O(R log R). */
static struct req *find_read(struct group *g, uint64_t read_id)
{
    size_t lo = 0, hi = g->reads.n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        uint64_t id = g->reads.v[mid].read_id;
        if (id == read_id)
            return &g->reads.v[mid];
        if (id < read_id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

void node_match_reads(struct node *n, struct group *g, const struct raft_ready *rd)
{
    bool dropped = false;
    for (size_t k = 0; k < rd->n_reads; k++) {
        struct req *r = find_read(g, rd->reads[k].ctx);
        if (!r)
            continue; /* expired meanwhile */
        if (rd->reads[k].index == 0) {
            node_fail_req(r, NK_UNAVAILABLE, "NOT_LEADER", node_leader_hint(n, g));
            node_request_done(n);
            r->done = NULL; /* removed below, keeping the order */
            dropped = true;
        } else {
            r->index = rd->reads[k].index;
        }
    }
    if (dropped) {
        size_t w = 0;
        for (size_t i = 0; i < g->reads.n; i++)
            if (g->reads.v[i].done)
                g->reads.v[w++] = g->reads.v[i];
        g->reads.n = w;
    }
}

/* Hands reads that may now be served to the reader thread, in one batch. */
void node_serve_reads(struct node *n, struct group *g)
{
    size_t w = 0;
    bool handed = false;
    for (size_t i = 0; i < g->reads.n; i++) {
        struct req *r = &g->reads.v[i];
        if (r->index != 0 && g->applied >= r->index) {
            if (!handed) {
                pthread_mutex_lock(&n->rmu);
                handed = true;
            }
            NK_ASSERT(n->rqlen < n->qcap); /* reads are bounded by max_pending */
            n->rq[(n->rqhead + n->rqlen) % n->qcap] = *r;
            n->rqlen++;
        } else {
            g->reads.v[w++] = *r;
        }
    }
    g->reads.n = w;
    if (handed) {
        pthread_cond_signal(&n->rcv);
        pthread_mutex_unlock(&n->rmu);
    }
}

void *node_reader_main(void *arg)
{
    struct node *n = arg;
    struct req *batch = nk_malloc(256 * sizeof(*batch));
    pthread_mutex_lock(&n->rmu);
    for (;;) {
        while (n->rqlen == 0 && !n->reader_stop)
            pthread_cond_wait(&n->rcv, &n->rmu);
        if (n->rqlen == 0 && n->reader_stop)
            break;
        size_t k = 0;
        while (n->rqlen && k < 256) {
            batch[k++] = n->rq[n->rqhead];
            n->rqhead = (n->rqhead + 1) % n->qcap;
            n->rqlen--;
        }
        pthread_mutex_unlock(&n->rmu);
        for (size_t i = 0; i < k; i++) {
            struct node_write_result wr = {.code = NK_CODE_OK};
            batch[i].done(batch[i].ctx, &wr);
            node_request_done(n);
        }
        pthread_mutex_lock(&n->rmu);
    }
    pthread_mutex_unlock(&n->rmu);
    free(batch);
    return NULL;
}
