/*
 * fetch.c: reads from disk the raft log entries a lagging follower needs,
 * off the Ready loop.
 *
 * The leader sends entries through storage.entries_nowait (storage.c): what
 * the raft log holds in memory goes at once; an entry that is on disk only
 * answers NK_UNAVAILABLE and queues a fetch here. The fetcher thread reads
 * the run (raftlog_prefetch: at most one message's worth, held in memory by
 * the raft log under its own bound) and hands the shard back to the loop,
 * which tells raft (raft_entries_fetched) to send again. So a follower that
 * is minutes behind costs the loop no disk read, and the group commit of
 * every other shard never waits for one.
 *
 * Owns: the request ring (FETCH_QUEUE requests, one per shard at most), the
 * done list and the per-shard "queued" flags. The ring and the done list are
 * guarded by xmu; the flags are loop-private. A full ring drops the request
 * (raft asks again on the follower's next heartbeat response).
 */
#include <errno.h>

#include "node/internal.h"

#define FETCH_QUEUE 256
#define FETCH_BYTES (1u << 20) /* raft's default max_msg_bytes: one append */

static void *fetcher_main(void *arg)
{
    struct node *n = arg;
    pthread_mutex_lock(&n->xmu);
    for (;;) {
        while (n->xlen == 0 && !n->xstop)
            pthread_cond_wait(&n->xcv, &n->xmu);
        if (n->xstop)
            break;
        struct node_fetch_req rq = n->xq[n->xhead];
        n->xhead = (n->xhead + 1) % FETCH_QUEUE;
        n->xlen--;
        pthread_mutex_unlock(&n->xmu);
        nk_status s = raftlog_prefetch(n->log, rq.group, rq.lo, FETCH_BYTES);
        if (!nk_ok(s)) {
            /* over the held bound or a read error: the follower is asked
             * again on its next heartbeat response (a read error there
             * reaches the synchronous path, which reports it) */
            atomic_fetch_add_explicit(&n->st_fetch_failed, 1, memory_order_relaxed);
            NK_DEBUG(MODULE, "shard %u: fetching entries from %llu: %s", rq.group,
                     (unsigned long long)rq.lo, nk_status_msg(s));
            nk_status_free(&s);
        }
        atomic_fetch_add_explicit(&n->st_fetches, 1, memory_order_relaxed);
        pthread_mutex_lock(&n->xmu);
        n->xdone[n->nxdone++] = rq.group;
        pthread_mutex_unlock(&n->xmu);
        /* wake the loop */
        pthread_mutex_lock(&n->qmu);
        n->fetched_ready = true;
        pthread_mutex_unlock(&n->qmu);
        pthread_cond_signal(&n->qcv);
        pthread_mutex_lock(&n->xmu);
    }
    pthread_mutex_unlock(&n->xmu);
    return NULL;
}

nk_status node_fetch_open(struct node *n)
{
    pthread_mutex_init(&n->xmu, NULL);
    pthread_cond_init(&n->xcv, NULL);
    n->xq = nk_calloc(FETCH_QUEUE, sizeof(*n->xq));
    n->xdone = nk_calloc(FETCH_QUEUE, sizeof(*n->xdone));
    n->xqueued = nk_calloc(n->nshards, sizeof(*n->xqueued));
    if (pthread_create(&n->fetcher, NULL, fetcher_main, n) != 0)
        return nk_status_errno(errno, "start raft log fetcher thread");
    n->fetcher_started = true;
    return NK_OK;
}

void node_fetch_close(struct node *n)
{
    if (n->fetcher_started) {
        pthread_mutex_lock(&n->xmu);
        n->xstop = true;
        pthread_cond_signal(&n->xcv);
        pthread_mutex_unlock(&n->xmu);
        pthread_join(n->fetcher, NULL);
        n->fetcher_started = false;
    }
    if (n->xq) {
        pthread_mutex_destroy(&n->xmu);
        pthread_cond_destroy(&n->xcv);
    }
    free(n->xq);
    free(n->xdone);
    free(n->xqueued);
    n->xq = NULL;
    n->xdone = NULL;
    n->xqueued = NULL;
}

/* Loop thread (from storage.entries_nowait): queue a fetch of the shard's
 * entries from lo, unless one is queued or running. */
void node_fetch_request(struct node *n, uint32_t group, uint64_t lo)
{
    if (!n->fetcher_started || n->xqueued[group])
        return;
    pthread_mutex_lock(&n->xmu);
    /* the done list has room for every queued request: both hold at most
     * FETCH_QUEUE, and a shard is in at most one of them */
    bool room = n->xlen + n->nxdone < FETCH_QUEUE;
    if (room) {
        n->xq[(n->xhead + n->xlen) % FETCH_QUEUE] = (struct node_fetch_req){group, lo};
        n->xlen++;
        pthread_cond_signal(&n->xcv);
    }
    pthread_mutex_unlock(&n->xmu);
    if (room)
        n->xqueued[group] = true;
}

/* Loop thread, each round: shards whose fetch finished send again. */
void node_fetch_deliver(struct node *n)
{
    if (!n->fetcher_started)
        return;
    uint32_t done[FETCH_QUEUE];
    pthread_mutex_lock(&n->xmu);
    size_t nd = n->nxdone;
    memcpy(done, n->xdone, nd * sizeof(*done));
    n->nxdone = 0;
    pthread_mutex_unlock(&n->xmu);
    for (size_t i = 0; i < nd; i++) {
        struct group *g = &n->groups[done[i]];
        n->xqueued[g->id] = false;
        if (g->damaged || g->rebuilding || !g->r)
            continue;
        raft_entries_fetched(g->r);
        node_mark_dirty(n, g);
    }
}
