/*
 * storage.c: the Raft storage of a shard's group on the node's shared raft
 * log (src/raftlog): hard state, entries, terms, the compaction point and
 * the membership blob it carries. raft/ reads its stable log only through
 * this adapter.
 */
#include "node/internal.h"

void node_conf_encode(const struct raft_conf_state *c, struct nk_buf *b)
{
    nk_buf_clear(b);
    nk_buf_put_u8(b, 1); /* version */
    nk_buf_put_u8(b, c->n_voters);
    for (int i = 0; i < c->n_voters; i++)
        nk_buf_put_varint64(b, c->voters[i]);
    nk_buf_put_u8(b, c->n_voters_out);
    for (int i = 0; i < c->n_voters_out; i++)
        nk_buf_put_varint64(b, c->voters_out[i]);
    nk_buf_put_u8(b, c->n_learners);
    for (int i = 0; i < c->n_learners; i++)
        nk_buf_put_varint64(b, c->learners[i]);
}

bool node_conf_decode(const uint8_t *p, size_t n, struct raft_conf_state *c)
{
    memset(c, 0, sizeof(*c));
    if (n == 0)
        return true;
    struct nk_reader r;
    nk_reader_init(&r, p, n);
    uint8_t ver = 0;
    nk_reader_u8(&r, &ver);
    if (ver != 1)
        return false;
    uint8_t *counts[3] = {&c->n_voters, &c->n_voters_out, &c->n_learners};
    uint64_t *arrays[3] = {c->voters, c->voters_out, c->learners};
    for (int k = 0; k < 3; k++) {
        nk_reader_u8(&r, counts[k]);
        if (r.bad || *counts[k] > RAFT_MAX_MEMBERS)
            return false;
        for (int i = 0; i < *counts[k]; i++)
            nk_reader_varint64(&r, &arrays[k][i]);
    }
    return !r.bad && nk_reader_left(&r) == 0;
}

static nk_status st_initial_state(void *ctx, struct raft_hard_state *hs,
                                  struct raft_conf_state *conf)
{
    struct group *g = ctx;
    struct raftlog_hardstate h;
    raftlog_get_hardstate(g->node->log, g->id, &h);
    hs->term = h.term;
    hs->vote = h.vote;
    hs->commit = h.commit;
    /* Commit-only hard states are written without a sync, so after a crash
     * the stored commit index may trail what the LSM has applied. Whatever
     * was applied was committed (and its entries were synced before it was
     * applied): raise the commit index to it. */
    if (g->applied > hs->commit && g->applied <= raftlog_last_index(g->node->log, g->id))
        hs->commit = g->applied;
    g->synced_term = h.term;
    g->synced_vote = h.vote;
    uint64_t ci, ct;
    struct nk_buf b;
    nk_buf_init(&b);
    raftlog_get_compacted(g->node->log, g->id, &ci, &ct, &b);
    bool ok = node_conf_decode(b.data, b.len, conf);
    nk_buf_free(&b);
    if (!ok)
        return nk_status_make(NK_DATA_LOSS, "shard %u: stored membership is malformed", g->id);
    return NK_OK;
}

static uint64_t st_first_index(void *ctx)
{
    struct group *g = ctx;
    return raftlog_first_index(g->node->log, g->id);
}

static uint64_t st_last_index(void *ctx)
{
    struct group *g = ctx;
    return raftlog_last_index(g->node->log, g->id);
}

static nk_status st_term(void *ctx, uint64_t index, uint64_t *term)
{
    struct group *g = ctx;
    return raftlog_term(g->node->log, g->id, index, term);
}

static nk_status st_entries(void *ctx, uint64_t lo, uint64_t hi, uint64_t max_bytes,
                            struct nk_arena *arena, struct raft_entry *out, size_t *n)
{
    struct group *g = ctx;
    struct raftlog_entry *tmp = nk_malloc((hi - lo) * sizeof(*tmp));
    nk_status s = raftlog_entries(g->node->log, g->id, lo, hi, max_bytes, arena, tmp, n);
    if (nk_ok(s))
        for (size_t i = 0; i < *n; i++)
            out[i] = (struct raft_entry){.term = tmp[i].term,
                                         .index = tmp[i].index,
                                         .type = tmp[i].type,
                                         .len = (uint32_t)tmp[i].data.len,
                                         .data = (uint8_t *)tmp[i].data.data};
    free(tmp);
    return s;
}

/* Sending to followers: what is in memory, or NK_UNAVAILABLE and a fetch
 * queued (fetch.c), never a disk read on the loop. */
static nk_status st_entries_nowait(void *ctx, uint64_t lo, uint64_t hi, uint64_t max_bytes,
                                   struct nk_arena *arena, struct raft_entry *out, size_t *n)
{
    struct group *g = ctx;
    if (!g->node->fetcher_started) /* one node: nobody to send to */
        return st_entries(ctx, lo, hi, max_bytes, arena, out, n);
    struct raftlog_entry *tmp = nk_malloc((hi - lo) * sizeof(*tmp));
    nk_status s = raftlog_entries_nowait(g->node->log, g->id, lo, hi, max_bytes, arena, tmp, n);
    if (nk_ok(s))
        for (size_t i = 0; i < *n; i++)
            out[i] = (struct raft_entry){.term = tmp[i].term,
                                         .index = tmp[i].index,
                                         .type = tmp[i].type,
                                         .len = (uint32_t)tmp[i].data.len,
                                         .data = (uint8_t *)tmp[i].data.data};
    else if (s.code == NK_UNAVAILABLE)
        node_fetch_request(g->node, g->id, lo);
    free(tmp);
    return s;
}

static nk_status st_snapshot(void *ctx, struct nk_arena *arena, struct raft_snapshot *out)
{
    struct group *g = ctx;
    memset(out, 0, sizeof(*out));
    struct nk_buf b;
    nk_buf_init(&b);
    raftlog_get_compacted(g->node->log, g->id, &out->index, &out->term, &b);
    bool ok = node_conf_decode(b.data, b.len, &out->conf);
    nk_buf_free(&b);
    (void)arena;
    if (!ok)
        return nk_status_make(NK_DATA_LOSS, "shard %u: stored membership is malformed", g->id);
    /* the state image is streamed by the node from the LSM, not carried here */
    return NK_OK;
}

void node_raft_storage(struct group *g, struct raft_storage *out)
{
    *out = (struct raft_storage){.ctx = g,
                                 .initial_state = st_initial_state,
                                 .first_index = st_first_index,
                                 .last_index = st_last_index,
                                 .term = st_term,
                                 .entries = st_entries,
                                 .snapshot = st_snapshot,
                                 .entries_nowait = st_entries_nowait};
}
