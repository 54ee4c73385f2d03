/*
 * raft_log.c: the log as the protocol sees it (stable storage + unstable
 * tail). See raft_int.h.
 *
 * The unstable tail holds what raft has accepted but the caller has not yet
 * persisted; it is handed out whole in each Ready and dropped at Advance.
 * Because nothing may touch the raft between Ready and Advance, the entries
 * handed out are exactly the first n of the tail at Advance time.
 */
#include <inttypes.h>
#include <stdlib.h>

#include "raft/raft_int.h"

/* Entry data of the unstable tail lives in one growing buffer (u->buf),
   in log order: no allocation per entry. The buffer is reused from the
   start whenever the tail empties, which every raft_advance does. */
static void buf_reset_if_empty(struct raft_unstable *u)
{
    if (u->n)
        return;
    u->buf_len = 0;
    if (u->buf_cap > (1u << 20)) { /* an idle group keeps no big buffer */
        free(u->buf);
        u->buf = NULL;
        u->buf_cap = 0;
    }
}

static void ustab_free_from(struct raft_unstable *u, size_t from)
{
    if (from < u->n)
        u->n = from;
    buf_reset_if_empty(u);
}

void raft_log_init(struct raft_log *l, const struct raft_storage *st)
{
    memset(l, 0, sizeof(*l));
    l->st = *st;
    l->u.offset = st->last_index(st->ctx) + 1;
    l->committed = st->first_index(st->ctx) - 1;
    l->applied = l->committed;
}

void raft_log_free(struct raft_log *l)
{
    free(l->u.buf);
    free(l->u.ents);
    if (l->u.snap) {
        free(l->u.snap->data);
        free(l->u.snap);
    }
    memset(&l->u, 0, sizeof(l->u));
}

uint64_t raft_log_first(const struct raft_log *l)
{
    if (l->u.snap)
        return l->u.snap->index + 1;
    return l->st.first_index(l->st.ctx);
}

uint64_t raft_log_last(const struct raft_log *l)
{
    if (l->u.n)
        return l->u.offset + l->u.n - 1;
    if (l->u.snap)
        return l->u.snap->index;
    return l->st.last_index(l->st.ctx);
}

nk_status raft_log_term_of(const struct raft_log *l, uint64_t i, uint64_t *term)
{
    uint64_t dummy = raft_log_first(l) - 1;
    if (i < dummy)
        return nk_status_make(NK_OUT_OF_RANGE, "raft log: index %" PRIu64 " compacted", i);
    if (i > raft_log_last(l))
        return nk_status_make(NK_NOT_FOUND, "raft log: index %" PRIu64 " beyond last", i);
    if (l->u.n && i >= l->u.offset) {
        *term = l->u.ents[i - l->u.offset].term;
        return NK_OK;
    }
    if (l->u.snap && i == l->u.snap->index) {
        *term = l->u.snap->term;
        return NK_OK;
    }
    nk_status s = l->st.term(l->st.ctx, i, term);
    if (!nk_ok(s) && s.code != NK_OUT_OF_RANGE && s.code != NK_NOT_FOUND)
        nk_panic("raft log: storage term(%" PRIu64 "): %s", i, nk_status_msg(s));
    return s;
}

/* The hot path: in range and in the unstable tail (or the pending
   snapshot) answers without building a status. */
static bool term_fast(const struct raft_log *l, uint64_t i, uint64_t *term, bool *known)
{
    *known = true;
    if (i < raft_log_first(l) - 1 || i > raft_log_last(l)) {
        *known = false;
        return true;
    }
    if (l->u.n && i >= l->u.offset) {
        *term = l->u.ents[i - l->u.offset].term;
        return true;
    }
    if (l->u.snap && i == l->u.snap->index) {
        *term = l->u.snap->term;
        return true;
    }
    return false;
}

uint64_t raft_log_term0(const struct raft_log *l, uint64_t i)
{
    uint64_t t = 0;
    bool known;
    if (term_fast(l, i, &t, &known))
        return known ? t : 0;
    nk_status s = raft_log_term_of(l, i, &t);
    if (!nk_ok(s)) {
        nk_status_free(&s);
        return 0;
    }
    return t;
}

uint64_t raft_log_last_term(const struct raft_log *l)
{
    return raft_log_term0(l, raft_log_last(l));
}

bool raft_log_match_term(const struct raft_log *l, uint64_t i, uint64_t term)
{
    uint64_t t = 0;
    bool known;
    if (term_fast(l, i, &t, &known))
        return known && t == term;
    nk_status s = raft_log_term_of(l, i, &t);
    if (!nk_ok(s)) {
        nk_status_free(&s);
        return false;
    }
    return t == term;
}

bool raft_log_up_to_date(const struct raft_log *l, uint64_t last, uint64_t term)
{
    uint64_t lt = raft_log_last_term(l);
    return term > lt || (term == lt && last >= raft_log_last(l));
}

uint64_t raft_log_find_conflict_by_term(const struct raft_log *l, uint64_t i, uint64_t term)
{
    uint64_t last = raft_log_last(l);
    if (i > last)
        i = last;
    for (;;) {
        uint64_t t = 0;
        nk_status s = raft_log_term_of(l, i, &t);
        if (!nk_ok(s)) {
            nk_status_free(&s);
            return i; /* compacted: cannot look further back */
        }
        if (t <= term || i == 0)
            return i;
        i--;
    }
}

static void u_append(struct raft_unstable *u, const struct raft_entry *ents, size_t n)
{
    if (u->n + n > u->cap) {
        size_t cap = u->cap ? u->cap : 4;
        while (cap < u->n + n)
            cap *= 2;
        u->ents = nk_realloc(u->ents, cap * sizeof(struct raft_entry));
        u->cap = cap;
    }
    size_t bytes = 0;
    for (size_t i = 0; i < n; i++)
        bytes += ents[i].len;
    if (u->buf_len + bytes > u->buf_cap) {
        size_t cap = u->buf_cap ? u->buf_cap : 4096;
        while (cap < u->buf_len + bytes)
            cap *= 2;
        uint8_t *nb = nk_malloc(cap);
        if (u->buf_len)
            memcpy(nb, u->buf, u->buf_len);
        for (size_t i = 0; i < u->n; i++) /* rebase the entries already held */
            if (u->ents[i].data)
                u->ents[i].data = nb + (u->ents[i].data - u->buf);
        free(u->buf);
        u->buf = nb;
        u->buf_cap = cap;
    }
    for (size_t i = 0; i < n; i++) {
        struct raft_entry *e = &u->ents[u->n++];
        *e = ents[i];
        e->data = NULL;
        if (ents[i].len) {
            e->data = u->buf + u->buf_len;
            memcpy(e->data, ents[i].data, ents[i].len);
            u->buf_len += ents[i].len;
        }
    }
}

void raft_log_append(struct raft_log *l, const struct raft_entry *ents, size_t n)
{
    if (n == 0)
        return;
    struct raft_unstable *u = &l->u;
    uint64_t after = ents[0].index;
    NK_ASSERT(after > l->committed);
    NK_ASSERT(after <= raft_log_last(l) + 1);
    if (after == u->offset + u->n) {
        /* plain append */
    } else if (after <= u->offset) {
        /* replaces stored entries too: the caller's append truncates them */
        ustab_free_from(u, 0);
        u->offset = after;
    } else {
        ustab_free_from(u, (size_t)(after - u->offset));
    }
    for (size_t i = 1; i < n; i++)
        NK_ASSERT(ents[i].index == ents[i - 1].index + 1);
    u_append(u, ents, n);
}

bool raft_log_maybe_append(struct raft_log *l, uint64_t prev, uint64_t prev_term,
                           const struct raft_entry *ents, size_t n, uint64_t *last_new,
                           size_t *first_new)
{
    if (!raft_log_match_term(l, prev, prev_term))
        return false;
    *last_new = prev + n;
    /* first entry that is new or conflicts with ours */
    size_t k = 0;
    for (; k < n; k++)
        if (!raft_log_match_term(l, ents[k].index, ents[k].term))
            break;
    if (k < n) {
        if (ents[k].index <= l->committed)
            nk_panic("raft log: entry %" PRIu64 " (term %" PRIu64 ") conflicts with the "
                     "committed prefix (commit %" PRIu64 ")",
                     ents[k].index, ents[k].term, l->committed);
        raft_log_append(l, ents + k, n - k);
    }
    *first_new = k;
    return true;
}

void raft_log_commit_to(struct raft_log *l, uint64_t c)
{
    if (c > l->committed) {
        NK_ASSERT(c <= raft_log_last(l));
        l->committed = c;
    }
}

nk_status raft_log_slice(const struct raft_log *l, uint64_t lo, uint64_t hi, uint64_t max_bytes,
                         size_t max_n, struct nk_arena *arena, struct raft_entry **out, size_t *n)
{
    return raft_log_slice_ex(l, lo, hi, max_bytes, max_n, arena, out, n, false);
}

nk_status raft_log_slice_ex(const struct raft_log *l, uint64_t lo, uint64_t hi, uint64_t max_bytes,
                            size_t max_n, struct nk_arena *arena, struct raft_entry **out,
                            size_t *n, bool nowait)
{
    *n = 0;
    *out = NULL;
    if (lo < raft_log_first(l))
        return nk_status_make(NK_OUT_OF_RANGE, "raft log: slice from %" PRIu64 " compacted", lo);
    NK_ASSERT(hi <= raft_log_last(l) + 1);
    if (lo >= hi)
        return NK_OK;
    if (hi - lo > max_n)
        hi = lo + max_n;
    struct raft_entry *ents = nk_arena_alloc_aligned(arena, (hi - lo) * sizeof(*ents));
    size_t k = 0;
    uint64_t bytes = 0;
    const struct raft_unstable *u = &l->u;
    uint64_t split = u->snap ? u->snap->index + 1 : u->offset;
    if (lo < split) {
        uint64_t shi = NK_MIN(hi, split);
        size_t got = 0;
        nk_status s = nowait && l->st.entries_nowait
                          ? l->st.entries_nowait(l->st.ctx, lo, shi, max_bytes, arena, ents, &got)
                          : l->st.entries(l->st.ctx, lo, shi, max_bytes, arena, ents, &got);
        if (!nk_ok(s)) {
            if (nowait && s.code == NK_UNAVAILABLE)
                return s;
            if (s.code != NK_OUT_OF_RANGE)
                nk_panic("raft log: storage entries(%" PRIu64 ", %" PRIu64 "): %s", lo, shi,
                         nk_status_msg(s));
            return s;
        }
        NK_ASSERT(got >= 1 && got <= shi - lo);
        k = got;
        for (size_t i = 0; i < got; i++)
            bytes += ents[i].len;
        if (lo + got < shi) {
            *out = ents;
            *n = k;
            return NK_OK;
        }
    }
    for (uint64_t i = NK_MAX(lo, split); i < hi; i++) {
        const struct raft_entry *e = &u->ents[i - u->offset];
        if (k > 0 && bytes + e->len > max_bytes)
            break;
        bytes += e->len;
        ents[k] = *e;
        ents[k].data = NULL;
        if (e->len) {
            ents[k].data = nk_arena_alloc(arena, e->len);
            memcpy(ents[k].data, e->data, e->len);
        }
        k++;
    }
    *out = ents;
    *n = k;
    return NK_OK;
}

uint64_t raft_log_apply_limit(const struct raft_log *l)
{
    if (l->u.snap)
        return l->applied; /* the snapshot must be installed first */
    uint64_t durable = l->u.n ? l->u.offset - 1 : raft_log_last(l);
    return NK_MIN(l->committed, durable);
}

void raft_log_stable_to(struct raft_log *l, size_t n)
{
    struct raft_unstable *u = &l->u;
    NK_ASSERT(n <= u->n);
    if (n == 0)
        return;
    memmove(u->ents, u->ents + n, (u->n - n) * sizeof(struct raft_entry));
    u->n -= n;
    u->offset += n;
    buf_reset_if_empty(u);
    if (u->n == 0 && u->cap > 64) {
        free(u->ents);
        u->ents = NULL;
        u->cap = 0;
    }
}

void raft_log_stable_snap(struct raft_log *l)
{
    if (!l->u.snap)
        return;
    free(l->u.snap->data);
    free(l->u.snap);
    l->u.snap = NULL;
}

void raft_log_restore(struct raft_log *l, const struct raft_snapshot *s)
{
    raft_log_stable_snap(l);
    ustab_free_from(&l->u, 0);
    struct raft_snapshot *c = nk_malloc(sizeof(*c));
    *c = *s;
    c->data = s->len ? nk_memdup(s->data, s->len) : NULL;
    l->u.snap = c;
    l->u.offset = s->index + 1;
    l->committed = s->index;
}
