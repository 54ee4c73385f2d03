/*
 * raft_memstorage.c: the in-memory log storage of raft.h.
 *
 * Layout as in etcd's MemoryStorage: ents[0] is a dummy entry standing for
 * the snapshot (its index and term); ents[1..] are the stored entries. Every
 * entry owns a malloc'd copy of its data.
 */
#include <inttypes.h>
#include <stdlib.h>

#include "raft/raft.h"

struct raft_memstorage {
    struct raft_hard_state hs;
    struct raft_snapshot snap; /* data owned */
    struct raft_entry *ents;   /* ents[0] = dummy at snap.index */
    size_t n, cap;
};

static void ent_free(struct raft_entry *e)
{
    free(e->data);
    e->data = NULL;
}

struct raft_memstorage *raft_memstorage_new(void)
{
    struct raft_memstorage *m = nk_calloc(1, sizeof(*m));
    m->cap = 8;
    m->ents = nk_calloc(m->cap, sizeof(struct raft_entry));
    m->n = 1;
    return m;
}

void raft_memstorage_free(struct raft_memstorage *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->n; i++)
        ent_free(&m->ents[i]);
    free(m->ents);
    free(m->snap.data);
    free(m);
}

static uint64_t ms_first(void *ctx)
{
    struct raft_memstorage *m = ctx;
    return m->ents[0].index + 1;
}

static uint64_t ms_last(void *ctx)
{
    struct raft_memstorage *m = ctx;
    return m->ents[0].index + m->n - 1;
}

static nk_status ms_initial(void *ctx, struct raft_hard_state *hs, struct raft_conf_state *conf)
{
    struct raft_memstorage *m = ctx;
    *hs = m->hs;
    *conf = m->snap.conf;
    return NK_OK;
}

static nk_status ms_term(void *ctx, uint64_t index, uint64_t *term)
{
    struct raft_memstorage *m = ctx;
    uint64_t off = m->ents[0].index;
    if (index < off)
        return nk_status_make(NK_OUT_OF_RANGE, "raft memstorage: index %" PRIu64
                                               " compacted (snapshot at %" PRIu64 ")",
                              index, off);
    if (index - off >= m->n)
        return nk_status_make(NK_NOT_FOUND, "raft memstorage: index %" PRIu64
                                            " beyond last %" PRIu64,
                              index, ms_last(m));
    *term = m->ents[index - off].term;
    return NK_OK;
}

static nk_status ms_entries(void *ctx, uint64_t lo, uint64_t hi, uint64_t max_bytes,
                            struct nk_arena *arena, struct raft_entry *out, size_t *n)
{
    struct raft_memstorage *m = ctx;
    uint64_t off = m->ents[0].index;
    if (lo <= off)
        return nk_status_make(NK_OUT_OF_RANGE, "raft memstorage: entries from %" PRIu64
                                               " compacted (snapshot at %" PRIu64 ")",
                              lo, off);
    NK_ASSERT(hi <= ms_last(m) + 1 && lo < hi);
    uint64_t bytes = 0;
    size_t k = 0;
    for (uint64_t i = lo; i < hi; i++) {
        const struct raft_entry *e = &m->ents[i - off];
        if (k > 0 && bytes + e->len > max_bytes)
            break;
        bytes += e->len;
        out[k] = *e;
        out[k].data = NULL;
        if (e->len) {
            out[k].data = nk_arena_alloc(arena, e->len);
            memcpy(out[k].data, e->data, e->len);
        }
        k++;
    }
    *n = k;
    return NK_OK;
}

static nk_status ms_snapshot(void *ctx, struct nk_arena *arena, struct raft_snapshot *out)
{
    struct raft_memstorage *m = ctx;
    *out = m->snap;
    out->data = NULL;
    if (m->snap.len) {
        out->data = nk_arena_alloc(arena, m->snap.len);
        memcpy(out->data, m->snap.data, m->snap.len);
    }
    return NK_OK;
}

struct raft_storage raft_memstorage_storage(struct raft_memstorage *m)
{
    return (struct raft_storage){
        .ctx = m,
        .initial_state = ms_initial,
        .first_index = ms_first,
        .last_index = ms_last,
        .term = ms_term,
        .entries = ms_entries,
        .snapshot = ms_snapshot,
    };
}

void raft_memstorage_set_hard_state(struct raft_memstorage *m, const struct raft_hard_state *hs)
{
    m->hs = *hs;
}

void raft_memstorage_hard_state(const struct raft_memstorage *m, struct raft_hard_state *hs)
{
    *hs = m->hs;
}

static void reserve(struct raft_memstorage *m, size_t want)
{
    if (want <= m->cap)
        return;
    while (m->cap < want)
        m->cap *= 2;
    m->ents = nk_realloc(m->ents, m->cap * sizeof(struct raft_entry));
}

void raft_memstorage_truncate_after(struct raft_memstorage *m, uint64_t index)
{
    uint64_t off = m->ents[0].index;
    if (index < off)
        index = off;
    size_t keep = (size_t)(index - off) + 1;
    for (size_t i = keep; i < m->n; i++)
        ent_free(&m->ents[i]);
    if (keep < m->n)
        m->n = keep;
}

nk_status raft_memstorage_append(struct raft_memstorage *m, const struct raft_entry *ents,
                                 size_t n)
{
    if (n == 0)
        return NK_OK;
    uint64_t off = m->ents[0].index;
    uint64_t first = ents[0].index;
    if (first > ms_last(m) + 1)
        return nk_status_make(NK_INVALID_ARGUMENT,
                              "raft memstorage: append at %" PRIu64 " leaves a gap after %" PRIu64,
                              first, ms_last(m));
    /* skip entries already covered by the snapshot */
    size_t skip = 0;
    while (skip < n && ents[skip].index <= off)
        skip++;
    if (skip == n)
        return NK_OK;
    raft_memstorage_truncate_after(m, ents[skip].index - 1);
    reserve(m, m->n + (n - skip));
    for (size_t i = skip; i < n; i++) {
        NK_ASSERT(ents[i].index == ms_last(m) + 1);
        struct raft_entry *e = &m->ents[m->n++];
        *e = ents[i];
        e->data = ents[i].len ? nk_memdup(ents[i].data, ents[i].len) : NULL;
    }
    return NK_OK;
}

static void set_snap(struct raft_memstorage *m, const struct raft_snapshot *s)
{
    free(m->snap.data);
    m->snap = *s;
    m->snap.data = s->len ? nk_memdup(s->data, s->len) : NULL;
}

nk_status raft_memstorage_apply_snapshot(struct raft_memstorage *m, const struct raft_snapshot *s)
{
    if (s->index < m->snap.index)
        return nk_status_make(NK_OUT_OF_RANGE,
                              "raft memstorage: snapshot %" PRIu64 " older than %" PRIu64,
                              s->index, m->snap.index);
    set_snap(m, s);
    for (size_t i = 0; i < m->n; i++)
        ent_free(&m->ents[i]);
    m->n = 1;
    m->ents[0] = (struct raft_entry){.index = s->index, .term = s->term};
    return NK_OK;
}

nk_status raft_memstorage_create_snapshot(struct raft_memstorage *m, uint64_t index,
                                          const struct raft_conf_state *conf, const void *data,
                                          size_t len)
{
    if (index <= m->snap.index && !(index == 0 && m->snap.index == 0))
        return nk_status_make(NK_OUT_OF_RANGE,
                              "raft memstorage: snapshot at %" PRIu64 " not newer than %" PRIu64,
                              index, m->snap.index);
    if (index > ms_last(m))
        return nk_status_make(NK_OUT_OF_RANGE,
                              "raft memstorage: snapshot at %" PRIu64 " beyond last %" PRIu64,
                              index, ms_last(m));
    uint64_t term = 0;
    nk_status s = ms_term(m, index, &term);
    NK_ASSERT(nk_ok(s));
    struct raft_snapshot snap = {.index = index, .term = term, .conf = *conf, .len = len,
                                 .data = (uint8_t *)data};
    set_snap(m, &snap);
    return NK_OK;
}

nk_status raft_memstorage_compact(struct raft_memstorage *m, uint64_t index)
{
    uint64_t off = m->ents[0].index;
    if (index <= off)
        return NK_OK;
    if (index > m->snap.index)
        return nk_status_make(NK_FAILED_PRECONDITION,
                              "raft memstorage: compact to %" PRIu64
                              " beyond the snapshot at %" PRIu64,
                              index, m->snap.index);
    size_t drop = (size_t)(index - off); /* entries off..index-1 go; index becomes dummy */
    for (size_t i = 0; i < drop; i++)
        ent_free(&m->ents[i]);
    ent_free(&m->ents[drop]);
    memmove(m->ents, m->ents + drop, (m->n - drop) * sizeof(struct raft_entry));
    m->n -= drop;
    return NK_OK;
}

size_t raft_memstorage_count(const struct raft_memstorage *m)
{
    return m->n - 1;
}
