/*
 * store.c: the replicated vector state machine of a shard, over the node's
 * LSM, and the registry of the in-memory indexes of every shard.
 *
 * LSM layout (docs/format/vector-state.md), beside KV's tags 0x00..0x02:
 *   [shard be16][0x00]['A']                -> applied (term, index), KV's record
 *   [shard be16][0x03][namespace]          -> index record (parameters)
 *   [shard be16][0x04][u8 ns len][ns][id]  -> vector record
 *   [shard be16][0x05][idempotency key]    -> vector idempotency record
 *   [shard be16][0x06][u8 ns len][ns]      -> HNSW graph meta (entry point)
 *   [shard be16][0x06][u8 ns len][ns][be32 slot] -> HNSW node record (links)
 *
 * The LSM is the source of truth, the HNSW graph included (graph.c). Apply
 * decides the outcome from the in-memory registry (which mirrors the LSM
 * exactly); for an insert or delete it then changes the in-memory index and
 * collects the node records that changed; and it writes one LSM batch (data,
 * graph records, idempotency record, applied index; skip_wal). A failed
 * write is a storage failure after which the replica stops (kv does the
 * same), so memory running ahead of the LSM is never observed across a
 * restart. Create and drop change the registry after the write. Every
 * decision depends on the set of live ids and the command only (memory
 * accounting included), never on the graph's shape.
 *
 * Locking: a readers-writer lock guards the registry (which shards and
 * namespaces exist). The apply thread takes it for writing to create, drop
 * and load; searches and gets take it for reading, and the index's own lock
 * inside. Inserts and deletes change an index under its own write lock only.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#include "lsm/lsm.h"
#include "vector/internal.h"

#define TAG_META  0x00
#define TAG_INDEX 0x03
#define TAG_DATA  0x04
#define TAG_IDEM  0x05
#define TAG_GRAPH 0x06
#define REC_V1    1
#define DROP_CHUNK 4096u /* deletes per LSM batch when dropping an index */

#define FLAG_CREATED  1
#define FLAG_DROPPED  2
#define FLAG_REPLACED 4
#define FLAG_DELETED  8

struct vns {
    char *name;
    uint32_t name_len;
    struct vec_index *ix;
};

struct vshard {
    struct vns *v; /* sorted by name */
    uint32_t n, cap;
};

struct vec_store {
    struct lsm_db *db;
    struct vec_store_options opt;
    _Atomic uint64_t memory; /* sum of vec_index_memory over the registry */
    pthread_rwlock_t lock;
    struct vshard *shards[65536];
};

static const struct lsm_write_options APPLY_WO = {.skip_wal = true};

void vec_store_options_default(struct vec_store_options *o)
{
    o->idem_retention_ms = 24ULL * 3600 * 1000;
    o->idem_grace_ms = 3600ULL * 1000;
}

nk_status vec_store_open(struct lsm_db *db, const struct vec_store_options *o,
                         struct vec_store **out)
{
    struct vec_store *s = nk_calloc(1, sizeof(*s));
    s->db = db;
    if (o)
        s->opt = *o;
    else
        vec_store_options_default(&s->opt);
    NK_ASSERT(pthread_rwlock_init(&s->lock, NULL) == 0);
    *out = s;
    return NK_OK;
}

static void shard_free(struct vshard *sh)
{
    if (!sh)
        return;
    for (uint32_t i = 0; i < sh->n; i++) {
        vec_index_destroy(sh->v[i].ix);
        free(sh->v[i].name);
    }
    free(sh->v);
    free(sh);
}

void vec_store_close(struct vec_store *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < NK_ARRAY_LEN(s->shards); i++)
        shard_free(s->shards[i]);
    pthread_rwlock_destroy(&s->lock);
    free(s);
}

/* ------------------------------------------------------------- registry */

/* Position of ns in the shard's sorted list, or where it would go. */
static uint32_t ns_find(const struct vshard *sh, struct nk_slice ns, bool *found)
{
    uint32_t lo = 0, hi = sh ? sh->n : 0;
    *found = false;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        int c = nk_slice_cmp(nk_slice_make(sh->v[mid].name, sh->v[mid].name_len), ns);
        if (c == 0) {
            *found = true;
            return mid;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static struct vec_index *lookup(struct vec_store *s, uint16_t shard, struct nk_slice ns)
{
    bool found;
    struct vshard *sh = s->shards[shard];
    uint32_t i = ns_find(sh, ns, &found);
    return found ? sh->v[i].ix : NULL;
}

/* Adds an index to the registry (registry write lock held). */
static void reg_add(struct vec_store *s, uint16_t shard, struct nk_slice ns, struct vec_index *ix)
{
    struct vshard *sh = s->shards[shard];
    if (!sh)
        sh = s->shards[shard] = nk_calloc(1, sizeof(*sh));
    bool found;
    uint32_t i = ns_find(sh, ns, &found);
    NK_ASSERT(!found);
    if (sh->n == sh->cap) {
        sh->cap = sh->cap ? sh->cap * 2 : 4;
        sh->v = nk_realloc(sh->v, sh->cap * sizeof(*sh->v));
    }
    memmove(sh->v + i + 1, sh->v + i, (sh->n - i) * sizeof(*sh->v));
    sh->v[i].name = nk_memdup(ns.data, ns.len);
    sh->v[i].name_len = (uint32_t)ns.len;
    sh->v[i].ix = ix;
    sh->n++;
}

static void reg_remove(struct vec_store *s, uint16_t shard, struct nk_slice ns)
{
    struct vshard *sh = s->shards[shard];
    bool found;
    uint32_t i = ns_find(sh, ns, &found);
    if (!found)
        return;
    vec_index_destroy(sh->v[i].ix);
    free(sh->v[i].name);
    memmove(sh->v + i, sh->v + i + 1, (sh->n - i - 1) * sizeof(*sh->v));
    sh->n--;
}

uint64_t vec_store_memory(struct vec_store *s)
{
    return atomic_load_explicit(&s->memory, memory_order_relaxed);
}

/* Adds (or, with a negative delta, takes) the accounted bytes of a change. */
static void mem_add(struct vec_store *s, uint64_t before, uint64_t after)
{
    if (after >= before)
        atomic_fetch_add_explicit(&s->memory, after - before, memory_order_relaxed);
    else
        atomic_fetch_sub_explicit(&s->memory, before - after, memory_order_relaxed);
}

void vec_store_unload_shard(struct vec_store *s, uint16_t shard)
{
    pthread_rwlock_wrlock(&s->lock);
    struct vshard *sh = s->shards[shard];
    for (uint32_t i = 0; sh && i < sh->n; i++)
        mem_add(s, vec_index_memory(sh->v[i].ix), 0);
    shard_free(s->shards[shard]);
    s->shards[shard] = NULL;
    pthread_rwlock_unlock(&s->lock);
}

/* ------------------------------------------------------------------ keys */

static size_t key_simple(uint8_t *out, uint16_t shard, uint8_t tag, struct nk_slice k)
{
    nk_enc_be16(out, shard);
    out[2] = tag;
    if (k.len)
        memcpy(out + 3, k.data, k.len);
    return 3 + k.len;
}

/* [shard][0x04][ns len][ns]: the prefix of a namespace's vectors */
static size_t key_data_prefix(uint8_t *out, uint16_t shard, struct nk_slice ns)
{
    nk_enc_be16(out, shard);
    out[2] = TAG_DATA;
    out[3] = (uint8_t)ns.len;
    memcpy(out + 4, ns.data, ns.len);
    return 4 + ns.len;
}

static size_t key_data(uint8_t *out, uint16_t shard, struct nk_slice ns, struct nk_slice id)
{
    size_t n = key_data_prefix(out, shard, ns);
    memcpy(out + n, id.data, id.len);
    return n + id.len;
}

#define MAX_DATA_KEY (4 + VEC_MAX_NAMESPACE + VEC_MAX_ID)

/* [shard][0x06][ns len][ns]: graph meta, and the prefix of the node records */
static size_t key_graph(uint8_t *out, uint16_t shard, struct nk_slice ns)
{
    nk_enc_be16(out, shard);
    out[2] = TAG_GRAPH;
    out[3] = (uint8_t)ns.len;
    memcpy(out + 4, ns.data, ns.len);
    return 4 + ns.len;
}

/* --------------------------------------------------------------- records */

static void encode_index_rec(struct nk_buf *b, uint64_t term, uint64_t index,
                             const struct vec_index_options *o)
{
    nk_buf_put_u8(b, REC_V1);
    nk_buf_put_varint64(b, term);
    nk_buf_put_varint64(b, index);
    nk_buf_put_varint32(b, o->dims);
    nk_buf_put_u8(b, (uint8_t)o->metric);
    nk_buf_put_u8(b, (uint8_t)o->type);
    nk_buf_put_varint32(b, o->m);
    nk_buf_put_varint32(b, o->ef_construction);
    nk_buf_put_varint32(b, o->ef_search);
    nk_buf_put_varint64(b, o->max_bytes);
}

static bool decode_index_rec(struct nk_slice v, struct vec_index_options *o)
{
    struct nk_reader r;
    nk_reader_init(&r, v.data, v.len);
    uint8_t ver = 0, metric = 0, type = 0;
    uint64_t term, index;
    memset(o, 0, sizeof(*o));
    nk_reader_u8(&r, &ver);
    nk_reader_varint64(&r, &term);
    nk_reader_varint64(&r, &index);
    nk_reader_varint32(&r, &o->dims);
    nk_reader_u8(&r, &metric);
    nk_reader_u8(&r, &type);
    nk_reader_varint32(&r, &o->m);
    nk_reader_varint32(&r, &o->ef_construction);
    nk_reader_varint32(&r, &o->ef_search);
    nk_reader_varint64(&r, &o->max_bytes);
    o->metric = (enum vec_metric)metric;
    o->type = (enum vec_index_type)type;
    if (r.bad || ver != REC_V1 || nk_reader_left(&r))
        return false;
    nk_status st = vec_index_options_validate(o);
    bool ok = nk_ok(st);
    nk_status_free(&st);
    return ok;
}

static void encode_idem(struct nk_buf *b, uint64_t fp, uint64_t ts, const struct vec_result *res)
{
    nk_buf_put_u8(b, REC_V1);
    nk_buf_put_fixed64(b, fp);
    nk_buf_put_varint64(b, ts);
    nk_buf_put_u8(b, (uint8_t)res->code);
    nk_buf_put_varint64(b, res->term);
    nk_buf_put_varint64(b, res->index);
    nk_buf_put_u8(b, (uint8_t)((res->created ? FLAG_CREATED : 0) |
                               (res->dropped ? FLAG_DROPPED : 0) |
                               (res->replaced ? FLAG_REPLACED : 0) |
                               (res->deleted ? FLAG_DELETED : 0)));
    nk_buf_put_lenbytes(b, res->msg, strlen(res->msg));
}

static bool decode_idem(struct nk_slice v, uint64_t *fp, uint64_t *ts, struct vec_result *res)
{
    struct nk_reader r;
    nk_reader_init(&r, v.data, v.len);
    uint8_t ver = 0, code = 0, flags = 0;
    struct nk_slice msg = {0};
    memset(res, 0, sizeof(*res));
    nk_reader_u8(&r, &ver);
    nk_reader_fixed64(&r, fp);
    nk_reader_varint64(&r, ts);
    nk_reader_u8(&r, &code);
    nk_reader_varint64(&r, &res->term);
    nk_reader_varint64(&r, &res->index);
    nk_reader_u8(&r, &flags);
    nk_reader_lenbytes(&r, sizeof(res->msg) - 1, &msg);
    if (r.bad || ver != REC_V1 || nk_reader_left(&r))
        return false;
    res->code = (enum nk_code)code;
    res->created = flags & FLAG_CREATED;
    res->dropped = flags & FLAG_DROPPED;
    res->replaced = flags & FLAG_REPLACED;
    res->deleted = flags & FLAG_DELETED;
    memcpy(res->msg, msg.data, msg.len);
    res->msg[msg.len] = 0;
    return true;
}

/* KV's applied record (kv-state.md): term, index and the shard's replicated
 * time, which a vector command carries over unchanged (KV owns that clock). */
static nk_status put_applied(struct lsm_batch *b, uint16_t shard, uint64_t term, uint64_t index,
                             uint64_t time_ms)
{
    uint8_t k[4];
    key_simple(k, shard, TAG_META, nk_slice_str("A"));
    uint8_t v[3 * NK_VARINT64_MAX];
    size_t n = nk_enc_varint64(v, term);
    n += nk_enc_varint64(v + n, index);
    n += nk_enc_varint64(v + n, time_ms);
    return lsm_batch_put(b, nk_slice_make(k, 4), nk_slice_make(v, n), 0);
}

/* ------------------------------------------------------------ idempotency */

nk_status vec_idem_lookup(struct vec_store *s, uint16_t shard, struct nk_slice idem_key,
                          uint64_t fingerprint, uint64_t now_ms, bool *found, bool *same,
                          struct vec_result *res)
{
    *found = *same = false;
    if (idem_key.len == 0 || idem_key.len > VEC_MAX_IDEM_KEY)
        return NK_OK;
    uint8_t k[3 + VEC_MAX_IDEM_KEY];
    size_t kn = key_simple(k, shard, TAG_IDEM, idem_key);
    struct nk_buf v;
    nk_buf_init(&v);
    nk_status st = lsm_get(s->db, NULL, nk_slice_make(k, kn), &v, found, NULL);
    uint64_t fp = 0, ts = 0;
    if (nk_ok(st) && *found && !decode_idem(nk_slice_make(v.data, v.len), &fp, &ts, res))
        st = nk_status_make(NK_DATA_LOSS, "shard %u: vector idempotency record is malformed",
                            shard);
    nk_buf_free(&v);
    NK_TRY(st);
    if (*found && now_ms > ts && now_ms - ts > s->opt.idem_retention_ms)
        *found = false; /* outside the window: the key may be used afresh */
    if (*found)
        *same = fp == fingerprint;
    return NK_OK;
}

/* ------------------------------------------------------------------ apply */

static void set_msg(struct vec_result *res, enum nk_code code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void set_msg(struct vec_result *res, enum nk_code code, const char *fmt, ...)
{
    res->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(res->msg, sizeof(res->msg), fmt, ap);
    va_end(ap);
}

static bool same_params(const struct vec_index_options *a, const struct vec_index_options *b)
{
    /* what CreateIndex names: dimensions, distance, index type */
    return a->dims == b->dims && a->metric == b->metric && a->type == b->type;
}

/* Deletes every vector record of ns, DROP_CHUNK keys per batch. These
 * batches do not move the applied index: after a crash the drop is applied
 * again from the log and deletes what is left. */
static nk_status delete_prefix(struct vec_store *s, const uint8_t *prefix, size_t pn);

static nk_status delete_vectors(struct vec_store *s, uint16_t shard, struct nk_slice ns)
{
    uint8_t prefix[4 + VEC_MAX_NAMESPACE];
    size_t pn = key_data_prefix(prefix, shard, ns);
    NK_TRY(delete_prefix(s, prefix, pn));
    pn = key_graph(prefix, shard, ns);
    return delete_prefix(s, prefix, pn);
}

static nk_status delete_prefix(struct vec_store *s, const uint8_t *prefix, size_t pn)
{
    struct lsm_iter_options io = {.prefix = nk_slice_make(prefix, pn)};
    struct lsm_iter *it;
    NK_TRY(lsm_iter_new(s->db, &io, &it));
    struct lsm_batch b;
    lsm_batch_init(&b);
    nk_status st = NK_OK;
    for (lsm_iter_seek_first(it); lsm_iter_valid(it) && nk_ok(st); lsm_iter_next(it)) {
        st = lsm_batch_delete(&b, lsm_iter_key(it));
        if (nk_ok(st) && lsm_batch_count(&b) >= DROP_CHUNK) {
            st = lsm_write(s->db, &APPLY_WO, &b);
            lsm_batch_clear(&b);
        }
    }
    if (nk_ok(st))
        st = lsm_iter_status(it);
    if (nk_ok(st) && lsm_batch_count(&b))
        st = lsm_write(s->db, &APPLY_WO, &b);
    lsm_batch_free(&b);
    lsm_iter_free(it);
    return st;
}

/* Adds the graph records an index mutation changed to the batch. */
static nk_status put_graph(struct lsm_batch *b, uint16_t shard, struct nk_slice ns,
                           struct vec_index *ix)
{
    if (vec_index_get_options(ix)->type != VEC_INDEX_HNSW)
        return NK_OK;
    const uint32_t *slots;
    bool meta;
    uint32_t n = vec_graph_take_dirty(ix, &slots, &meta);
    uint8_t key[4 + VEC_MAX_NAMESPACE + 4];
    size_t pn = key_graph(key, shard, ns);
    struct nk_buf rec;
    nk_buf_init(&rec);
    nk_status st = NK_OK;
    if (meta) {
        vec_graph_encode_meta(ix, &rec);
        st = lsm_batch_put(b, nk_slice_make(key, pn), nk_slice_make(rec.data, rec.len), 0);
    }
    for (uint32_t i = 0; i < n && nk_ok(st); i++) {
        key[pn] = (uint8_t)(slots[i] >> 24);
        key[pn + 1] = (uint8_t)(slots[i] >> 16);
        key[pn + 2] = (uint8_t)(slots[i] >> 8);
        key[pn + 3] = (uint8_t)slots[i];
        nk_buf_clear(&rec);
        if (vec_graph_encode_node(ix, slots[i], &rec))
            st = lsm_batch_put(b, nk_slice_make(key, pn + 4), nk_slice_make(rec.data, rec.len),
                               0);
        else
            st = lsm_batch_delete(b, nk_slice_make(key, pn + 4));
    }
    nk_buf_free(&rec);
    return st;
}

/* What a command does to the in-memory state once its batch is written. */
struct pending {
    enum { P_NONE, P_CREATE, P_DROP } what;
};

static nk_status decide(struct vec_store *s, uint16_t shard, uint64_t term, uint64_t index,
                        const struct vec_cmd *c, struct lsm_batch *b, struct vec_result *res,
                        struct pending *p)
{
    struct vec_index *ix = lookup(s, shard, c->ns);
    uint8_t key[MAX_DATA_KEY];
    struct nk_buf rec;
    nk_buf_init(&rec);
    nk_status st = NK_OK;
    switch (c->op) {
    case VEC_OP_CREATE_INDEX:
        if (ix) {
            const struct vec_index_options *o = vec_index_get_options(ix);
            if (same_params(o, &c->opt))
                break; /* created = false */
            set_msg(res, NK_ALREADY_EXISTS,
                    "vector index '%.*s' exists with other parameters (%u dimensions, "
                    "distance %d, index type %d)",
                    (int)c->ns.len, (const char *)c->ns.data, o->dims, (int)o->metric,
                    (int)o->type);
            break;
        }
        if (s->shards[shard] && s->shards[shard]->n >= VEC_MAX_INDEXES_PER_SHARD) {
            set_msg(res, NK_RESOURCE_EXHAUSTED,
                    "shard %u already holds %u vector indexes, the limit per shard", shard,
                    VEC_MAX_INDEXES_PER_SHARD);
            break;
        }
        encode_index_rec(&rec, term, index, &c->opt);
        key_simple(key, shard, TAG_INDEX, c->ns);
        st = lsm_batch_put(b, nk_slice_make(key, 3 + c->ns.len), nk_slice_make(rec.data, rec.len),
                           0);
        res->created = true;
        p->what = P_CREATE;
        break;
    case VEC_OP_DROP_INDEX:
        if (!ix)
            break; /* dropped = false */
        st = delete_vectors(s, shard, c->ns);
        if (nk_ok(st)) {
            key_simple(key, shard, TAG_INDEX, c->ns);
            st = lsm_batch_delete(b, nk_slice_make(key, 3 + c->ns.len));
        }
        res->dropped = true;
        p->what = P_DROP;
        break;
    case VEC_OP_INSERT: {
        if (!ix) {
            set_msg(res, NK_NOT_FOUND, "vector index '%.*s' does not exist", (int)c->ns.len,
                    (const char *)c->ns.data);
            break;
        }
        const struct vec_index_options *o = vec_index_get_options(ix);
        if (c->dims != o->dims) {
            set_msg(res, NK_INVALID_ARGUMENT,
                    "vector has %u dimensions; index '%.*s' has %u dimensions", c->dims,
                    (int)c->ns.len, (const char *)c->ns.data, o->dims);
            break;
        }
        bool exists = vec_index_get(ix, c->id, NULL);
        uint64_t after = vec_index_memory(ix) + (exists ? 0 : vec_index_cost(o, c->id));
        if (after > o->max_bytes) {
            set_msg(res, NK_RESOURCE_EXHAUSTED,
                    "vector index '%.*s' would use %llu bytes with this vector; its bound "
                    "max_bytes is %llu bytes",
                    (int)c->ns.len, (const char *)c->ns.data, (unsigned long long)after,
                    (unsigned long long)o->max_bytes);
            break;
        }
        nk_buf_put_u8(&rec, REC_V1);
        nk_buf_put_varint64(&rec, term);
        nk_buf_put_varint64(&rec, index);
        nk_buf_put_varint32(&rec, c->dims);
        nk_buf_append(&rec, c->vector, 4 * (size_t)c->dims);
        size_t kn = key_data(key, shard, c->ns, c->id);
        st = lsm_batch_put(b, nk_slice_make(key, kn), nk_slice_make(rec.data, rec.len), 0);
        res->replaced = exists;
        if (nk_ok(st)) {
            /* the command's floats may be unaligned in the entry */
            float *v = nk_malloc(4 * (size_t)c->dims);
            memcpy(v, c->vector, 4 * (size_t)c->dims);
            bool replaced;
            uint64_t before = vec_index_memory(ix);
            nk_status is = vec_index_insert(ix, c->id, v, &replaced);
            mem_add(s, before, vec_index_memory(ix));
            if (!nk_ok(is))
                nk_panic("vector insert accepted by apply failed in memory: %s",
                         nk_status_msg(is));
            NK_ASSERT(replaced == exists);
            free(v);
            st = put_graph(b, shard, c->ns, ix);
        }
        break;
    }
    case VEC_OP_DELETE:
        if (!ix) {
            set_msg(res, NK_NOT_FOUND, "vector index '%.*s' does not exist", (int)c->ns.len,
                    (const char *)c->ns.data);
            break;
        }
        if (vec_index_get(ix, c->id, NULL)) {
            size_t kn = key_data(key, shard, c->ns, c->id);
            st = lsm_batch_delete(b, nk_slice_make(key, kn));
            res->deleted = true;
            if (nk_ok(st)) {
                bool deleted;
                uint64_t before = vec_index_memory(ix);
                vec_index_delete(ix, c->id, &deleted);
                mem_add(s, before, vec_index_memory(ix));
                NK_ASSERT(deleted);
                st = put_graph(b, shard, c->ns, ix);
            }
        }
        break;
    }
    nk_buf_free(&rec);
    return st;
}

static void commit_memory(struct vec_store *s, uint16_t shard, const struct vec_cmd *c,
                          const struct pending *p)
{
    switch (p->what) {
    case P_NONE:
        break;
    case P_CREATE: {
        struct vec_index *ix;
        nk_status st = vec_index_create(&c->opt, &ix);
        NK_ASSERT(nk_ok(st)); /* options were validated by the decoder */
        pthread_rwlock_wrlock(&s->lock);
        reg_add(s, shard, c->ns, ix);
        mem_add(s, 0, vec_index_memory(ix));
        pthread_rwlock_unlock(&s->lock);
        break;
    }
    case P_DROP:
        pthread_rwlock_wrlock(&s->lock);
        if (lookup(s, shard, c->ns))
            mem_add(s, vec_index_memory(lookup(s, shard, c->ns)), 0);
        reg_remove(s, shard, c->ns);
        pthread_rwlock_unlock(&s->lock);
        break;
    }
}

static nk_status apply_noop(struct vec_store *s, uint16_t shard, uint64_t term, uint64_t index,
                            uint64_t time_ms)
{
    struct lsm_batch b;
    lsm_batch_init(&b);
    nk_status st = put_applied(&b, shard, term, index, time_ms);
    if (nk_ok(st))
        st = lsm_write(s->db, &APPLY_WO, &b);
    lsm_batch_free(&b);
    return st;
}

nk_status vec_apply(struct vec_store *s, uint16_t shard, uint64_t term, uint64_t index,
                    uint64_t time_ms, const uint8_t *data, size_t n, struct vec_result *res)
{
    memset(res, 0, sizeof(*res));
    res->term = term;
    res->index = index;
    struct vec_cmd c;
    nk_status st = vec_cmd_decode(data, n, &c);
    if (!nk_ok(st)) {
        NK_ERROR("vector", "shard %u entry %llu.%llu: %s; applied as a no-op", shard,
                 (unsigned long long)term, (unsigned long long)index, nk_status_msg(st));
        set_msg(res, NK_DATA_LOSS, "%s", nk_status_msg(st));
        nk_status_free(&st);
        return apply_noop(s, shard, term, index, time_ms);
    }

    struct lsm_batch b;
    lsm_batch_init(&b);
    struct pending p = {P_NONE};
    uint64_t fp = 0;
    bool write_idem = false;
    if (c.idem_key.len) {
        fp = vec_cmd_fingerprint(&c);
        bool found, same;
        struct vec_result prev;
        st = vec_idem_lookup(s, shard, c.idem_key, fp, c.timestamp_ms, &found, &same, &prev);
        if (!nk_ok(st))
            goto out;
        if (found) {
            if (same)
                *res = prev; /* a retry: the first execution's result */
            else
                set_msg(res, NK_INVALID_ARGUMENT,
                        "idempotency key was used by another request with other parameters");
            st = put_applied(&b, shard, term, index, time_ms);
            goto write;
        }
        write_idem = true;
    }
    st = decide(s, shard, term, index, &c, &b, res, &p);
    if (!nk_ok(st))
        goto out;
    if (write_idem) {
        uint8_t ik[3 + VEC_MAX_IDEM_KEY];
        size_t ikn = key_simple(ik, shard, TAG_IDEM, c.idem_key);
        struct nk_buf rec;
        nk_buf_init(&rec);
        encode_idem(&rec, fp, c.timestamp_ms, res);
        st = lsm_batch_put(&b, nk_slice_make(ik, ikn), nk_slice_make(rec.data, rec.len),
                           c.timestamp_ms + s->opt.idem_retention_ms + s->opt.idem_grace_ms);
        nk_buf_free(&rec);
        if (!nk_ok(st))
            goto out;
    }
    st = put_applied(&b, shard, term, index, time_ms);
write:
    if (nk_ok(st))
        st = lsm_write(s->db, &APPLY_WO, &b);
    if (nk_ok(st))
        commit_memory(s, shard, &c, &p);
out:
    lsm_batch_free(&b);
    return st;
}

/* ------------------------------------------------------------------ load */

/* Installs the persisted HNSW graph of ns; *has false when it has none (no
 * vector was ever inserted). */
static nk_status load_graph(struct vec_store *s, uint16_t shard, struct nk_slice ns,
                            struct vec_index *ix, bool *has)
{
    *has = false;
    if (vec_index_get_options(ix)->type != VEC_INDEX_HNSW)
        return NK_OK;
    uint8_t prefix[4 + VEC_MAX_NAMESPACE];
    size_t pn = key_graph(prefix, shard, ns);
    struct lsm_iter_options io = {.prefix = nk_slice_make(prefix, pn)};
    struct lsm_iter *it;
    NK_TRY(lsm_iter_new(s->db, &io, &it));
    nk_status st = NK_OK;
    for (lsm_iter_seek_first(it); lsm_iter_valid(it) && nk_ok(st); lsm_iter_next(it)) {
        struct nk_slice key = lsm_iter_key(it), val = lsm_iter_value(it);
        if (key.len == pn && !*has) {
            st = vec_graph_load_meta(ix, val);
            *has = true;
        } else if (key.len == pn + 4 && *has) {
            const uint8_t *k = key.data + pn;
            uint32_t slot =
                (uint32_t)k[0] << 24 | (uint32_t)k[1] << 16 | (uint32_t)k[2] << 8 | k[3];
            st = vec_graph_load_node(ix, slot, val);
        } else {
            st = nk_status_make(NK_DATA_LOSS, "unexpected HNSW graph key");
        }
    }
    if (nk_ok(st))
        st = lsm_iter_status(it);
    lsm_iter_free(it);
    if (!nk_ok(st))
        st = nk_status_wrap(st, "shard %u: loading the graph of index '%.*s'", shard,
                            (int)ns.len, (const char *)ns.data);
    return st;
}

static nk_status load_vectors(struct vec_store *s, uint16_t shard, struct nk_slice ns,
                              struct vec_index *ix, bool graph)
{
    uint8_t prefix[4 + VEC_MAX_NAMESPACE];
    size_t pn = key_data_prefix(prefix, shard, ns);
    struct lsm_iter_options io = {.prefix = nk_slice_make(prefix, pn)};
    struct lsm_iter *it;
    NK_TRY(lsm_iter_new(s->db, &io, &it));
    uint32_t dims = vec_index_get_options(ix)->dims;
    float *v = nk_malloc(4 * (size_t)dims);
    nk_status st = NK_OK;
    for (lsm_iter_seek_first(it); lsm_iter_valid(it) && nk_ok(st); lsm_iter_next(it)) {
        struct nk_slice key = lsm_iter_key(it), val = lsm_iter_value(it);
        struct nk_slice id = nk_slice_make(key.data + pn, key.len - pn);
        struct nk_reader r;
        nk_reader_init(&r, val.data, val.len);
        uint8_t ver = 0;
        uint64_t term, index;
        uint32_t n = 0;
        nk_reader_u8(&r, &ver);
        nk_reader_varint64(&r, &term);
        nk_reader_varint64(&r, &index);
        nk_reader_varint32(&r, &n);
        if (r.bad || ver != REC_V1 || n != dims || nk_reader_left(&r) != 4 * (size_t)dims) {
            st = nk_status_make(NK_DATA_LOSS,
                                "shard %u: a vector record of index '%.*s' is malformed", shard,
                                (int)ns.len, (const char *)ns.data);
            break;
        }
        memcpy(v, r.p, 4 * (size_t)dims);
        bool replaced;
        if (graph)
            st = vec_graph_load_vector(ix, id, v);
        else
            st = vec_index_insert(ix, id, v, &replaced);
        if (!nk_ok(st))
            st = nk_status_wrap(st, "shard %u: loading index '%.*s'", shard, (int)ns.len,
                                (const char *)ns.data);
    }
    if (nk_ok(st))
        st = lsm_iter_status(it);
    free(v);
    lsm_iter_free(it);
    return st;
}

nk_status vec_store_load_shard(struct vec_store *s, uint16_t shard)
{
    vec_store_unload_shard(s, shard);
    uint8_t prefix[3];
    key_simple(prefix, shard, TAG_INDEX, nk_slice_make(NULL, 0));
    struct lsm_iter_options io = {.prefix = nk_slice_make(prefix, 3)};
    struct lsm_iter *it;
    NK_TRY(lsm_iter_new(s->db, &io, &it));
    nk_status st = NK_OK;
    for (lsm_iter_seek_first(it); lsm_iter_valid(it) && nk_ok(st); lsm_iter_next(it)) {
        struct nk_slice key = lsm_iter_key(it);
        struct nk_slice ns = nk_slice_make(key.data + 3, key.len - 3);
        struct vec_index_options o;
        if (!decode_index_rec(lsm_iter_value(it), &o) || ns.len == 0 ||
            ns.len > VEC_MAX_NAMESPACE) {
            st = nk_status_make(NK_DATA_LOSS, "shard %u: a vector index record is malformed",
                                shard);
            break;
        }
        struct vec_index *ix;
        st = vec_index_create(&o, &ix);
        if (!nk_ok(st))
            break;
        bool graph = false;
        st = load_graph(s, shard, ns, ix, &graph);
        if (nk_ok(st))
            st = load_vectors(s, shard, ns, ix, graph);
        if (nk_ok(st) && graph)
            st = vec_graph_load_finish(ix);
        if (nk_ok(st) && !graph) {
            const uint32_t *slots; /* a rebuilt graph is already in the LSM's terms */
            bool meta;
            vec_graph_take_dirty(ix, &slots, &meta);
        }
        if (!nk_ok(st)) {
            vec_index_destroy(ix);
            break;
        }
        pthread_rwlock_wrlock(&s->lock);
        reg_add(s, shard, ns, ix);
        mem_add(s, 0, vec_index_memory(ix));
        pthread_rwlock_unlock(&s->lock);
    }
    if (nk_ok(st))
        st = lsm_iter_status(it);
    lsm_iter_free(it);
    if (!nk_ok(st))
        vec_store_unload_shard(s, shard);
    return st;
}

/* ------------------------------------------------------------------ reads */

static nk_status not_found(struct nk_slice ns)
{
    return nk_status_make(NK_NOT_FOUND, "vector index '%.*s' does not exist", (int)ns.len,
                          (const char *)ns.data);
}

nk_status vec_index_info(struct vec_store *s, uint16_t shard, struct nk_slice ns,
                         struct vec_index_options *o, uint64_t *count, uint64_t *memory,
                         bool *found)
{
    NK_TRY(vec_validate_namespace(ns));
    pthread_rwlock_rdlock(&s->lock);
    struct vec_index *ix = lookup(s, shard, ns);
    *found = ix != NULL;
    if (ix) {
        if (o)
            *o = *vec_index_get_options(ix);
        if (count)
            *count = vec_index_count(ix);
        if (memory)
            *memory = vec_index_memory(ix);
    }
    pthread_rwlock_unlock(&s->lock);
    return NK_OK;
}

nk_status vec_search(struct vec_store *s, uint16_t shard, struct nk_slice ns, const float *q,
                     size_t qn, uint32_t k, uint32_t ef, bool include_vectors,
                     struct vec_results *r)
{
    NK_TRY(vec_validate_namespace(ns));
    NK_TRY(vec_validate_k(k));
    pthread_rwlock_rdlock(&s->lock);
    struct vec_index *ix = lookup(s, shard, ns);
    nk_status st;
    if (!ix) {
        st = not_found(ns);
    } else {
        st = vec_validate_vector(q, qn, vec_index_get_options(ix)->dims);
        if (nk_ok(st))
            st = vec_index_search(ix, q, k, ef, include_vectors, r);
    }
    pthread_rwlock_unlock(&s->lock);
    return st;
}

nk_status vec_get(struct vec_store *s, uint16_t shard, struct nk_slice ns, struct nk_slice id,
                  float *out, uint32_t *dims, bool *found)
{
    NK_TRY(vec_validate_namespace(ns));
    NK_TRY(vec_validate_id(id));
    pthread_rwlock_rdlock(&s->lock);
    struct vec_index *ix = lookup(s, shard, ns);
    nk_status st = NK_OK;
    if (!ix) {
        st = not_found(ns);
        *found = false;
    } else {
        *dims = vec_index_get_options(ix)->dims;
        *found = vec_index_get(ix, id, out);
    }
    pthread_rwlock_unlock(&s->lock);
    return st;
}
