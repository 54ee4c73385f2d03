/*
 * scan.c: range scans across shards (kv.h "range scans").
 *
 * A user key lives in exactly one shard, and each shard's data is the
 * contiguous LSM range [shard be16][0x01]..., sorted by user key inside it.
 * A scan over several shards is therefore a k-way merge: one LSM iterator
 * per shard, bounded to the shard's slice of [start, end) / prefix, and a
 * binary min-heap of their current user keys. A shard with nothing in range
 * costs one seek and leaves the heap at once.
 *
 * Every iterator reads at the one snapshot the page was given, so the page
 * is a consistent cut of all its shards, and each shard's applied index read
 * at the same snapshot says exactly which entries the page reflects (a later
 * watch resumes from there). The page's bounds (entries, bytes, records
 * examined) bound how long that snapshot is held.
 */
#include <stdlib.h>

#include "kv/internal.h"

struct shard_cur {
    struct lsm_iter *it;
    uint16_t shard;
    struct value_rec v; /* decoded record of the current entry */
};

struct kv_merge_iter {
    struct kv_store *s;
    uint64_t now_ms;
    struct shard_cur *cur;
    uint32_t ncur;
    uint32_t *heap; /* indexes into cur, min-heap on user key */
    uint32_t nheap;
    nk_status err;
};

static struct nk_slice user_key(const struct shard_cur *c)
{
    struct nk_slice k = lsm_iter_key(c->it);
    return nk_slice_make(k.data + 3, k.len - 3);
}

static bool less(const struct kv_merge_iter *m, uint32_t a, uint32_t b)
{
    int c = nk_slice_cmp(user_key(&m->cur[a]), user_key(&m->cur[b]));
    return c < 0 || (c == 0 && m->cur[a].shard < m->cur[b].shard);
}

static void sift_down(struct kv_merge_iter *m, uint32_t i)
{
    for (;;) {
        uint32_t l = 2 * i + 1, r = l + 1, min = i;
        if (l < m->nheap && less(m, m->heap[l], m->heap[min]))
            min = l;
        if (r < m->nheap && less(m, m->heap[r], m->heap[min]))
            min = r;
        if (min == i)
            return;
        uint32_t t = m->heap[i];
        m->heap[i] = m->heap[min];
        m->heap[min] = t;
        i = min;
    }
}

static void set_err(struct kv_merge_iter *m, nk_status s)
{
    if (nk_ok(m->err))
        m->err = s;
    else
        nk_status_free(&s);
}

/* Decodes the record shard cursor c stands on; false when the shard is
 * exhausted or failed. */
static bool settle(struct kv_merge_iter *m, struct shard_cur *c)
{
    if (lsm_iter_valid(c->it)) {
        if (kv_decode_value(lsm_iter_value(c->it), &c->v))
            return true;
        set_err(m, nk_status_make(NK_DATA_LOSS, "shard %u: value record of a key is malformed",
                                  c->shard));
        return false;
    }
    nk_status s = lsm_iter_status(c->it);
    if (!nk_ok(s))
        set_err(m, s);
    return false;
}

nk_status kv_merge_new(struct kv_store *s, const struct lsm_snapshot *snap,
                       const struct kv_scan_options *o, struct kv_merge_iter **out)
{
    struct kv_merge_iter *m = nk_calloc(1, sizeof(*m));
    m->s = s;
    m->now_ms = o->now_ms;
    m->err = NK_OK;
    m->cur = nk_calloc(o->nshards ? o->nshards : 1, sizeof(*m->cur));
    m->heap = nk_calloc(o->nshards ? o->nshards : 1, sizeof(*m->heap));
    uint8_t lo[3 + KV_MAX_KEY], hi[3 + KV_MAX_KEY], px[3 + KV_MAX_KEY], seek[4 + KV_MAX_KEY];
    for (uint32_t i = 0; i < o->nshards && nk_ok(m->err); i++) {
        uint16_t shard = o->shards[i];
        struct lsm_iter_options io = {.snapshot = snap};
        /* the shard's data namespace, narrowed to the user prefix */
        size_t pn = kv_make_key(px, shard, NS_DATA, o->prefix);
        io.prefix = nk_slice_make(px, pn);
        if (o->start.len) {
            size_t n = kv_make_key(lo, shard, NS_DATA, o->start);
            io.lower = nk_slice_make(lo, n);
        }
        if (o->end.len) {
            size_t n = kv_make_key(hi, shard, NS_DATA, o->end);
            io.upper = nk_slice_make(hi, n);
        }
        struct shard_cur *c = &m->cur[m->ncur];
        c->shard = shard;
        nk_status st = lsm_iter_new(s->db, &io, &c->it);
        if (!nk_ok(st)) {
            set_err(m, st);
            break;
        }
        m->ncur++;
        if (o->has_after) {
            /* strictly after `after`: its immediate successor, after || 0x00 */
            size_t n = kv_make_key(seek, shard, NS_DATA, o->after);
            seek[n++] = 0;
            lsm_iter_seek(c->it, nk_slice_make(seek, n));
        } else {
            lsm_iter_seek_first(c->it);
        }
        if (settle(m, c))
            m->heap[m->nheap++] = m->ncur - 1;
    }
    for (uint32_t i = m->nheap / 2; i-- > 0;)
        sift_down(m, i);
    *out = m;
    return NK_OK;
}

void kv_merge_free(struct kv_merge_iter *m)
{
    if (!m)
        return;
    for (uint32_t i = 0; i < m->ncur; i++)
        lsm_iter_free(m->cur[i].it);
    free(m->cur);
    free(m->heap);
    nk_status_free(&m->err);
    free(m);
}

bool kv_merge_valid(const struct kv_merge_iter *m)
{
    return nk_ok(m->err) && m->nheap > 0;
}

struct nk_slice kv_merge_key(const struct kv_merge_iter *m)
{
    return user_key(&m->cur[m->heap[0]]);
}

struct nk_slice kv_merge_value(const struct kv_merge_iter *m)
{
    return m->cur[m->heap[0]].v.value;
}

uint16_t kv_merge_shard(const struct kv_merge_iter *m)
{
    return m->cur[m->heap[0]].shard;
}

void kv_merge_version(const struct kv_merge_iter *m, uint64_t *term, uint64_t *index,
                      uint64_t *expiry_ms)
{
    const struct value_rec *v = &m->cur[m->heap[0]].v;
    *term = v->term;
    *index = v->index;
    *expiry_ms = v->expiry_ms;
}

void kv_merge_next(struct kv_merge_iter *m)
{
    NK_ASSERT(m->nheap > 0);
    struct shard_cur *c = &m->cur[m->heap[0]];
    lsm_iter_next(c->it);
    if (!settle(m, c))
        m->heap[0] = m->heap[--m->nheap];
    if (m->nheap)
        sift_down(m, 0);
}

bool kv_merge_expired(const struct kv_merge_iter *m)
{
    const struct value_rec *v = &m->cur[m->heap[0]].v;
    return v->expiry_ms != 0 && v->expiry_ms <= m->now_ms;
}

nk_status kv_merge_status(const struct kv_merge_iter *m)
{
    if (nk_ok(m->err))
        return NK_OK;
    return nk_status_make(m->err.code, "%s", nk_status_msg(m->err));
}

/* ------------------------------------------------------------------- page */

void kv_scan_page_init(struct kv_scan_page *p)
{
    memset(p, 0, sizeof(*p));
    nk_buf_init(&p->data);
    nk_buf_init(&p->resume_after);
}

void kv_scan_page_free(struct kv_scan_page *p)
{
    nk_buf_free(&p->data);
    nk_buf_free(&p->resume_after);
    free(p->entries);
    free(p->revs);
    memset(p, 0, sizeof(*p));
}

static void page_add(struct kv_scan_page *p, struct kv_merge_iter *m, bool keys_only)
{
    if (p->n == p->cap) {
        p->cap = p->cap ? 2 * p->cap : 64;
        p->entries = nk_realloc(p->entries, p->cap * sizeof(*p->entries));
    }
    struct kv_scan_entry *e = &p->entries[p->n++];
    struct nk_slice k = kv_merge_key(m);
    e->key_off = p->data.len;
    e->key_len = k.len;
    nk_buf_append(&p->data, k.data, k.len);
    e->val_off = p->data.len;
    e->val_len = 0;
    if (!keys_only) {
        struct nk_slice v = kv_merge_value(m);
        nk_buf_append(&p->data, v.data, v.len);
        e->val_len = v.len;
    }
    e->shard = kv_merge_shard(m);
    kv_merge_version(m, &e->term, &e->index, &e->expiry_ms);
}

nk_status kv_scan(struct kv_store *s, const struct kv_scan_options *o, struct kv_scan_page *out)
{
    NK_ASSERT(o->limit >= 1 && o->max_examined >= 1);
    const struct lsm_snapshot *snap = lsm_snapshot_new(s->db);
    nk_status st = NK_OK;
    out->revs = nk_realloc(out->revs, (o->nshards ? o->nshards : 1) * sizeof(*out->revs));
    out->nrevs = 0;
    for (uint32_t i = 0; i < o->nshards && nk_ok(st); i++) {
        struct kv_scan_revision *r = &out->revs[out->nrevs++];
        uint64_t t;
        r->shard = o->shards[i];
        st = kv_read_applied_at(s, snap, o->shards[i], &r->term, &r->index, &t);
    }
    struct kv_merge_iter *m = NULL;
    if (nk_ok(st))
        st = kv_merge_new(s, snap, o, &m);
    if (nk_ok(st)) {
        uint64_t bytes = 0;
        out->more = false;
        out->examined = 0;
        while (kv_merge_valid(m)) {
            if (out->n >= o->limit || out->examined >= o->max_examined) {
                out->more = true; /* the head is the first key not yet examined */
                break;
            }
            struct nk_slice k = kv_merge_key(m);
            if (!kv_merge_expired(m)) {
                uint64_t sz = k.len + (o->keys_only ? 0 : kv_merge_value(m).len);
                if (out->n > 0 && bytes + sz > o->max_bytes) {
                    out->more = true;
                    break;
                }
                page_add(out, m, o->keys_only);
                bytes += sz;
            }
            /* the next page starts strictly after the last key examined:
             * every key up to it, in every scanned shard, has been seen */
            out->examined++;
            nk_buf_clear(&out->resume_after);
            nk_buf_append(&out->resume_after, k.data, k.len);
            kv_merge_next(m);
        }
        st = kv_merge_status(m);
    }
    kv_merge_free(m);
    lsm_snapshot_release(s->db, snap);
    return st;
}
