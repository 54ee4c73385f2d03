/*
 * iter.c: internal iterators over internal keys.
 *
 *   table:   one sstable (wraps sst_iter)
 *   level:   a sorted run of disjoint tables (L1+ or compaction inputs),
 *            opening one table iterator at a time
 *   merging: the union of children in internal-key order (a binary heap)
 *
 * Each iterator belongs to one thread. They keep the tables they read alive
 * with references, so a compaction may replace those tables meanwhile.
 */
#include "lsm/internal.h"

#include <stdlib.h>

/* ------------------------------------------------------------------- level */

struct level_iter {
    struct lsm_iiter base;
    struct lsm_file **files;
    uint32_t n;
    uint32_t cur;          /* index of the open table; n when none */
    struct sst_iter *it;   /* iterator of files[cur] */
    nk_status err;
};

static void li_close_cur(struct level_iter *li)
{
    if (li->it) {
        sst_iter_free(li->it);
        li->it = NULL;
    }
    li->cur = li->n;
}

static bool li_open(struct level_iter *li, uint32_t i)
{
    li_close_cur(li);
    if (i >= li->n)
        return false;
    nk_status s = sst_iter_new(li->files[i]->reader, &li->it);
    if (!nk_ok(s)) {
        if (nk_ok(li->err))
            li->err = s;
        else
            nk_status_free(&s);
        li->it = NULL;
        return false;
    }
    li->cur = i;
    return true;
}

/* Moves past exhausted tables; stops on an error. */
static void li_skip_empty(struct level_iter *li)
{
    while (li->it && !sst_iter_valid(li->it)) {
        nk_status s = sst_iter_status(li->it);
        if (!nk_ok(s)) {
            if (nk_ok(li->err))
                li->err = s;
            else
                nk_status_free(&s);
            li_close_cur(li);
            return;
        }
        uint32_t next = li->cur + 1;
        if (!li_open(li, next))
            return;
        sst_iter_seek_first(li->it);
    }
}

static void li_seek_first(struct lsm_iiter *it)
{
    struct level_iter *li = (struct level_iter *)it;
    if (li_open(li, 0)) {
        sst_iter_seek_first(li->it);
        li_skip_empty(li);
    }
}

static void li_seek(struct lsm_iiter *it, struct nk_slice ik)
{
    struct level_iter *li = (struct level_iter *)it;
    uint32_t lo = 0, hi = li->n;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        struct lsm_file *f = li->files[mid];
        if (ik_cmp(nk_slice_make(f->largest.data, f->largest.len), ik) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (li->it && li->cur == lo) {
        sst_iter_seek(li->it, ik); /* same table: keep its iterator */
        li_skip_empty(li);
        return;
    }
    if (li_open(li, lo)) {
        sst_iter_seek(li->it, ik);
        li_skip_empty(li);
    }
}

static void li_next(struct lsm_iiter *it)
{
    struct level_iter *li = (struct level_iter *)it;
    sst_iter_next(li->it);
    li_skip_empty(li);
}

static bool li_valid(const struct lsm_iiter *it)
{
    const struct level_iter *li = (const struct level_iter *)it;
    return li->it && sst_iter_valid(li->it);
}

static struct nk_slice li_key(const struct lsm_iiter *it)
{
    return sst_iter_key(((const struct level_iter *)it)->it);
}

static struct nk_slice li_value(const struct lsm_iiter *it)
{
    return sst_iter_value(((const struct level_iter *)it)->it);
}

static nk_status copy_status(nk_status s)
{
    if (nk_ok(s))
        return NK_OK;
    return nk_status_make(s.code, "%s", nk_status_msg(s));
}

static nk_status li_status(const struct lsm_iiter *it)
{
    return copy_status(((const struct level_iter *)it)->err);
}

static void li_free(struct lsm_iiter *it)
{
    struct level_iter *li = (struct level_iter *)it;
    li_close_cur(li);
    for (uint32_t i = 0; i < li->n; i++)
        lsm_file_unref(li->files[i]);
    free(li->files);
    nk_status_free(&li->err);
    free(li);
}

static const struct lsm_iiter_ops level_iter_ops = {
    li_seek_first, li_seek, li_next, li_valid, li_key, li_value, li_status, li_free,
};

struct lsm_iiter *level_iter_new(struct lsm_file **files, uint32_t n)
{
    struct level_iter *li = nk_calloc(1, sizeof(*li));
    li->base.ops = &level_iter_ops;
    li->files = nk_malloc((n ? n : 1) * sizeof(*files));
    for (uint32_t i = 0; i < n; i++) {
        lsm_file_ref(files[i]);
        li->files[i] = files[i];
    }
    li->n = n;
    li->cur = n;
    li->err = NK_OK;
    return &li->base;
}

/* ----------------------------------------------------------------- merging */

struct merge_iter {
    struct lsm_iiter base;
    struct lsm_iiter **kids;
    uint32_t n;
    uint32_t *heap; /* indexes of valid children, min-heap by key */
    uint32_t nheap;
    struct nk_slice *keys; /* current key of each valid child (saves indirect calls) */
};

static inline bool mg_less(const struct merge_iter *m, uint32_t a, uint32_t b)
{
    struct nk_slice x = m->keys[a], y = m->keys[b];
    if (NK_UNLIKELY(x.len < LSM_TRAILER || y.len < LSM_TRAILER)) {
        int c = ik_cmp(x, y); /* malformed keys stay ordered; find_next reports them */
        return c < 0 || (c == 0 && a < b);
    }
    size_t xl = x.len - LSM_TRAILER, yl = y.len - LSM_TRAILER;
    int c = lsm_bytes_cmp(x.data, xl, y.data, yl);
    if (c == 0) {
        uint64_t tx = nk_dec_fixed64(x.data + xl), ty = nk_dec_fixed64(y.data + yl);
        c = tx > ty ? -1 : (tx < ty ? 1 : 0);
    }
    return c < 0 || (c == 0 && a < b);
}

/* Child i moved: note its key if it is still valid. */
static inline bool mg_note(struct merge_iter *m, uint32_t i)
{
    struct lsm_iiter *k = m->kids[i];
    if (!k->ops->valid(k))
        return false;
    m->keys[i] = k->ops->key(k);
    return true;
}

static void mg_down(struct merge_iter *m, uint32_t i)
{
    for (;;) {
        uint32_t l = 2 * i + 1, r = l + 1, s = i;
        if (l < m->nheap && mg_less(m, m->heap[l], m->heap[s]))
            s = l;
        if (r < m->nheap && mg_less(m, m->heap[r], m->heap[s]))
            s = r;
        if (s == i)
            return;
        uint32_t t = m->heap[i];
        m->heap[i] = m->heap[s];
        m->heap[s] = t;
        i = s;
    }
}

static void mg_build(struct merge_iter *m)
{
    m->nheap = 0;
    for (uint32_t i = 0; i < m->n; i++)
        if (mg_note(m, i))
            m->heap[m->nheap++] = i;
    for (uint32_t i = m->nheap / 2; i-- > 0;)
        mg_down(m, i);
}

static void mg_seek_first(struct lsm_iiter *it)
{
    struct merge_iter *m = (struct merge_iter *)it;
    for (uint32_t i = 0; i < m->n; i++)
        m->kids[i]->ops->seek_first(m->kids[i]);
    mg_build(m);
}

static void mg_seek(struct lsm_iiter *it, struct nk_slice ik)
{
    struct merge_iter *m = (struct merge_iter *)it;
    for (uint32_t i = 0; i < m->n; i++)
        m->kids[i]->ops->seek(m->kids[i], ik);
    mg_build(m);
}

static void mg_next(struct lsm_iiter *it)
{
    struct merge_iter *m = (struct merge_iter *)it;
    struct lsm_iiter *k = m->kids[m->heap[0]];
    k->ops->next(k);
    if (!mg_note(m, m->heap[0]))
        m->heap[0] = m->heap[--m->nheap];
    if (m->nheap)
        mg_down(m, 0);
}

static bool mg_valid(const struct lsm_iiter *it)
{
    return ((const struct merge_iter *)it)->nheap > 0;
}

static struct nk_slice mg_key(const struct lsm_iiter *it)
{
    const struct merge_iter *m = (const struct merge_iter *)it;
    return m->keys[m->heap[0]];
}

static struct nk_slice mg_value(const struct lsm_iiter *it)
{
    const struct merge_iter *m = (const struct merge_iter *)it;
    struct lsm_iiter *k = m->kids[m->heap[0]];
    return k->ops->value(k);
}

static nk_status mg_status(const struct lsm_iiter *it)
{
    const struct merge_iter *m = (const struct merge_iter *)it;
    for (uint32_t i = 0; i < m->n; i++) {
        nk_status s = m->kids[i]->ops->status(m->kids[i]);
        if (!nk_ok(s))
            return s;
    }
    return NK_OK;
}

static void mg_free(struct lsm_iiter *it)
{
    struct merge_iter *m = (struct merge_iter *)it;
    for (uint32_t i = 0; i < m->n; i++)
        m->kids[i]->ops->free(m->kids[i]);
    free(m->kids);
    free(m->heap);
    free(m->keys);
    free(m);
}

static const struct lsm_iiter_ops merge_iter_ops = {
    mg_seek_first, mg_seek, mg_next, mg_valid, mg_key, mg_value, mg_status, mg_free,
};

struct lsm_iiter *merge_iter_new(struct lsm_iiter **kids, uint32_t n)
{
    struct merge_iter *m = nk_calloc(1, sizeof(*m));
    m->base.ops = &merge_iter_ops;
    m->kids = nk_malloc((n ? n : 1) * sizeof(*kids));
    memcpy(m->kids, kids, n * sizeof(*kids));
    m->heap = nk_malloc((n ? n : 1) * sizeof(uint32_t));
    m->keys = nk_calloc(n ? n : 1, sizeof(struct nk_slice));
    m->n = n;
    return &m->base;
}
