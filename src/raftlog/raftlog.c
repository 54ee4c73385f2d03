/*
 * raftlog.c: the node's shared Raft log (see raftlog.h for the design).
 *
 * A batch is encoded straight into the payload of one WAL record. After the
 * WAL append, the in-memory state is updated by decoding that same payload
 * with the same function recovery uses (apply_batch), so there is one code
 * path that defines what a record means.
 *
 * Per group, live entries are kept in a deque (ents[head .. head+n)) whose
 * first element has index compacted + 1. Each entry knows where its batch
 * record is in the WAL and its ordinal among that record's entries, so a
 * payload evicted from the cache is read back by decoding that one record.
 */
#include "raftlog/raftlog.h"

#include <pthread.h>
#include <stdlib.h>

#define MODULE "raftlog"

#define REC_BATCH 1 /* WAL record type */

enum sub_kind { SUB_ENTRIES = 1, SUB_HARDSTATE = 2, SUB_COMPACT = 3, SUB_RESET = 4 };

#define MAX_ENTRY_DATA (64u * 1024u * 1024u)
#define MAX_CONF       (64u * 1024u)
#define RAFTLOG_PREFETCH_MAX_ENTRIES 4096u

struct rl_ent {
    uint64_t term;
    struct wal_pos pos; /* the batch record holding this entry */
    uint32_t ordinal;   /* entry number within that record */
    uint32_t len;
    uint8_t type;
    bool fetched;  /* data came from raftlog_prefetch (not in the FIFO) */
    uint8_t *data; /* cached or fetched payload, or NULL */
};

struct rl_group {
    uint64_t snap_index, snap_term; /* compaction point */
    struct rl_ent *ents;
    size_t head, n, cap;
    struct raftlog_hardstate hs;
    bool has_hs, has_compact;
    uint64_t hs_segment, compact_segment; /* where the latest record of each lives */
    uint8_t *conf; /* conf blob of the compaction point */
    size_t conf_len;
    uint64_t f_lo, f_hi; /* [f_lo, f_hi): entries holding prefetched payloads */
};

struct cache_slot {
    uint32_t group;
    uint64_t index;
    uint8_t *data;
};

struct raftlog {
    pthread_mutex_t mu;
    uint32_t fetch_evict_next; /* round-robin cursor over groups holding fetched runs */
    struct raftlog_options opt;
    struct wal *wal;
    struct rl_group **groups; /* [max_groups], allocated on first use */
    /* FIFO of cached payloads, oldest first; bounded in bytes and slots */
    struct cache_slot *fifo;
    size_t fifo_cap, fifo_head, fifo_len;
    size_t cache_bytes;
    size_t fetched_bytes;  /* payloads held for senders (raftlog_prefetch) */
    uint32_t disk_readers; /* reads from segments in progress without mu: GC keeps them */
    struct raftlog_stats stats;
};

struct raftlog_batch {
    struct nk_buf buf;
    bool empty;
};

void raftlog_options_default(struct raftlog_options *o)
{
    memset(o, 0, sizeof(*o));
    wal_options_default(&o->wal);
    o->wal.sync = WAL_SYNC_ALWAYS;
    o->cache_bytes = 64u << 20;
    o->fetch_bytes = 64u << 20;
    o->max_groups = 65536;
    o->max_batch_bytes = 32u << 20;
}

/* ------------------------------------------------------------------ batch */

struct raftlog_batch *raftlog_batch_new(void)
{
    struct raftlog_batch *b = nk_calloc(1, sizeof(*b));
    nk_buf_init(&b->buf);
    b->empty = true;
    return b;
}

void raftlog_batch_free(struct raftlog_batch *b)
{
    if (!b)
        return;
    nk_buf_free(&b->buf);
    free(b);
}

void raftlog_batch_clear(struct raftlog_batch *b)
{
    nk_buf_clear(&b->buf);
    b->empty = true;
}

size_t raftlog_batch_bytes(const struct raftlog_batch *b)
{
    return b->buf.len;
}

bool raftlog_batch_empty(const struct raftlog_batch *b)
{
    return b->empty;
}

struct nk_slice raftlog_batch_payload(const struct raftlog_batch *b)
{
    return nk_slice_make(b->buf.data, b->buf.len);
}

void raftlog_batch_entries(struct raftlog_batch *b, uint32_t group,
                           const struct raftlog_entry *ents, size_t n)
{
    NK_ASSERT(n >= 1);
    nk_buf_put_u8(&b->buf, SUB_ENTRIES);
    nk_buf_put_varint32(&b->buf, group);
    nk_buf_put_varint64(&b->buf, ents[0].index);
    nk_buf_put_varint64(&b->buf, n);
    for (size_t i = 0; i < n; i++) {
        NK_ASSERT(ents[i].index == ents[0].index + i);
        nk_buf_put_varint64(&b->buf, ents[i].term);
        nk_buf_put_u8(&b->buf, ents[i].type);
        nk_buf_put_lenbytes(&b->buf, ents[i].data.data, ents[i].data.len);
    }
    b->empty = false;
}

void raftlog_batch_hardstate(struct raftlog_batch *b, uint32_t group,
                             const struct raftlog_hardstate *hs)
{
    nk_buf_put_u8(&b->buf, SUB_HARDSTATE);
    nk_buf_put_varint32(&b->buf, group);
    nk_buf_put_varint64(&b->buf, hs->term);
    nk_buf_put_varint64(&b->buf, hs->vote);
    nk_buf_put_varint64(&b->buf, hs->commit);
    b->empty = false;
}

void raftlog_batch_compact(struct raftlog_batch *b, uint32_t group, uint64_t index,
                           uint64_t term, struct nk_slice conf)
{
    nk_buf_put_u8(&b->buf, SUB_COMPACT);
    nk_buf_put_varint32(&b->buf, group);
    nk_buf_put_varint64(&b->buf, index);
    nk_buf_put_varint64(&b->buf, term);
    nk_buf_put_lenbytes(&b->buf, conf.data, conf.len);
    b->empty = false;
}

void raftlog_batch_reset(struct raftlog_batch *b, uint32_t group)
{
    nk_buf_put_u8(&b->buf, SUB_RESET);
    nk_buf_put_varint32(&b->buf, group);
    b->empty = false;
}

/* ---------------------------------------------------------- group helpers */

static struct rl_group *group_get(struct raftlog *l, uint32_t g, bool create)
{
    if (g >= l->opt.max_groups)
        return NULL;
    if (!l->groups[g] && create)
        l->groups[g] = nk_calloc(1, sizeof(struct rl_group));
    return l->groups[g];
}

static inline uint64_t g_last(const struct rl_group *g)
{
    return g->snap_index + g->n;
}

static inline struct rl_ent *g_ent(struct rl_group *g, uint64_t index)
{
    NK_DASSERT(index > g->snap_index && index <= g_last(g));
    return &g->ents[g->head + (index - g->snap_index - 1)];
}

static void drop_payload(struct raftlog *l, struct rl_ent *e)
{
    if (e->data) {
        if (e->fetched)
            l->fetched_bytes -= e->len;
        else
            l->cache_bytes -= e->len;
        free(e->data);
        e->data = NULL;
        e->fetched = false;
    }
}

/* Releases the group's prefetched payloads that are still live. */
static void drop_fetched(struct raftlog *l, struct rl_group *g)
{
    uint64_t lo = NK_MAX(g->f_lo, g->snap_index + 1), hi = NK_MIN(g->f_hi, g_last(g) + 1);
    for (uint64_t i = lo; i < hi; i++) {
        struct rl_ent *e = g_ent(g, i);
        if (e->fetched)
            drop_payload(l, e);
    }
    g->f_lo = g->f_hi = 0;
}

/* Removes entries with index >= from. */
static void g_truncate_suffix(struct raftlog *l, struct rl_group *g, uint64_t from)
{
    if (g->f_hi > from)
        g->f_hi = NK_MAX(from, g->f_lo);
    while (g->n && g_last(g) >= from) {
        drop_payload(l, g_ent(g, g_last(g)));
        g->n--;
        l->stats.live_entries--;
    }
}

/* Removes entries with index <= upto and moves the compaction point there. */
static void g_compact(struct raftlog *l, struct rl_group *g, uint64_t upto, uint64_t term)
{
    if (upto < g->snap_index)
        return;
    if (upto == g->snap_index) {
        /* Recovery learned the point from a gap (GC removed the segments
         * before this group's first live entry) without its term; this
         * record, later in the log, supplies it. */
        if (g->snap_term == 0)
            g->snap_term = term;
        return;
    }
    /* Raft's snapshot rule: keep the entries after the point only when the
     * log holds the point's own entry with the same term; otherwise the log
     * diverged from the snapshot and all of it goes. */
    if (upto >= g_last(g) || g_ent(g, upto)->term != term) {
        g_truncate_suffix(l, g, 0);
        g->head = 0;
    } else {
        uint64_t k = upto - g->snap_index;
        for (uint64_t i = 0; i < k; i++)
            drop_payload(l, &g->ents[g->head + i]);
        if (g->f_lo <= upto)
            g->f_lo = NK_MIN(upto + 1, g->f_hi);
        g->head += k;
        g->n -= k;
        l->stats.live_entries -= k;
    }
    g->snap_index = upto;
    g->snap_term = term;
    if (g->head > 1024 && g->head > g->cap / 2) {
        memmove(g->ents, g->ents + g->head, g->n * sizeof(*g->ents));
        g->head = 0;
    }
}

static void cache_push(struct raftlog *l, uint32_t group, uint64_t index, struct rl_ent *e,
                       const uint8_t *data)
{
    if (e->len == 0 || e->len > l->opt.cache_bytes / 4)
        return; /* empty payloads need no cache; huge ones would flush it */
    e->data = nk_memdup(data, e->len);
    l->cache_bytes += e->len;
    if (l->fifo_len == l->fifo_cap) {
        /* evict the oldest slot to make room */
        struct cache_slot *s = &l->fifo[l->fifo_head];
        struct rl_group *g = l->groups[s->group];
        if (g && s->index > g->snap_index && s->index <= g_last(g)) {
            struct rl_ent *o = g_ent(g, s->index);
            if (o->data == s->data)
                drop_payload(l, o);
        }
        l->fifo_head = (l->fifo_head + 1) % l->fifo_cap;
        l->fifo_len--;
    }
    l->fifo[(l->fifo_head + l->fifo_len) % l->fifo_cap] =
        (struct cache_slot){group, index, e->data};
    l->fifo_len++;
    while (l->cache_bytes > l->opt.cache_bytes && l->fifo_len) {
        struct cache_slot *s = &l->fifo[l->fifo_head];
        struct rl_group *g = l->groups[s->group];
        if (g && s->index > g->snap_index && s->index <= g_last(g)) {
            struct rl_ent *o = g_ent(g, s->index);
            if (o->data == s->data)
                drop_payload(l, o);
        }
        l->fifo_head = (l->fifo_head + 1) % l->fifo_cap;
        l->fifo_len--;
    }
}

/* --------------------------------------------------------- record decoding */

/*
 * Applies one batch record (from recovery or a fresh write) to memory.
 * Validates everything before touching state of a sub-record; a malformed
 * record is NK_DATA_LOSS. When cache is set, new payloads enter the cache.
 */
static nk_status apply_batch(struct raftlog *l, struct nk_slice payload, struct wal_pos pos,
                             bool cache, bool recovering)
{
    struct nk_reader r;
    nk_reader_init(&r, payload.data, payload.len);
    uint32_t ordinal = 0;
    while (nk_reader_left(&r) > 0) {
        uint8_t kind;
        uint32_t gid;
        nk_reader_u8(&r, &kind);
        nk_reader_varint32(&r, &gid);
        if (r.bad)
            break;
        struct rl_group *g = group_get(l, gid, true);
        if (!g)
            return nk_status_make(NK_DATA_LOSS,
                                  "raftlog record at %llu:%llu names group %u, beyond the limit %u",
                                  (unsigned long long)pos.segment,
                                  (unsigned long long)pos.offset, gid, l->opt.max_groups);
        if (kind == SUB_ENTRIES) {
            uint64_t first, count;
            nk_reader_varint64(&r, &first);
            nk_reader_varint64(&r, &count);
            if (r.bad || first == 0 || count == 0 || count > nk_reader_left(&r))
                break;
            if (first > g_last(g) + 1 && recovering) {
                /* GC removed the segments holding this group's earlier
                 * entries; the compaction point that allowed it is later
                 * in the log and will set the term. */
                g_truncate_suffix(l, g, 0);
                g->head = 0;
                g->snap_index = first - 1;
                g->snap_term = 0;
            }
            if (first > g_last(g) + 1)
                return nk_status_make(NK_DATA_LOSS,
                                      "raftlog record at %llu:%llu: group %u entries start at %llu "
                                      "but its log ends at %llu",
                                      (unsigned long long)pos.segment,
                                      (unsigned long long)pos.offset, gid,
                                      (unsigned long long)first, (unsigned long long)g_last(g));
            /* a run starting inside the log replaces the suffix (conflict) */
            g_truncate_suffix(l, g, first);
            for (uint64_t i = 0; i < count; i++) {
                uint64_t term;
                uint8_t type;
                struct nk_slice data;
                nk_reader_varint64(&r, &term);
                nk_reader_u8(&r, &type);
                nk_reader_lenbytes(&r, MAX_ENTRY_DATA, &data);
                if (r.bad)
                    break;
                uint64_t index = first + i;
                uint32_t ord = ordinal++;
                if (index <= g->snap_index)
                    continue; /* already covered by a compaction point */
                if (g->head + g->n == g->cap) {
                    if (g->head > 0) {
                        memmove(g->ents, g->ents + g->head, g->n * sizeof(*g->ents));
                        g->head = 0;
                    } else {
                        g->cap = g->cap ? g->cap * 2 : 64;
                        g->ents = nk_realloc(g->ents, g->cap * sizeof(*g->ents));
                    }
                }
                struct rl_ent *e = &g->ents[g->head + g->n];
                *e = (struct rl_ent){.term = term, .pos = pos, .ordinal = ord,
                                     .len = (uint32_t)data.len, .type = type};
                g->n++;
                l->stats.live_entries++;
                if (cache)
                    cache_push(l, gid, index, e, data.data);
            }
            if (r.bad)
                break;
        } else if (kind == SUB_HARDSTATE) {
            struct raftlog_hardstate hs;
            nk_reader_varint64(&r, &hs.term);
            nk_reader_varint64(&r, &hs.vote);
            nk_reader_varint64(&r, &hs.commit);
            if (r.bad)
                break;
            g->hs = hs;
            g->has_hs = true;
            g->hs_segment = pos.segment;
        } else if (kind == SUB_RESET) {
            /* the replica is gone from this node: nothing of it remains */
            g_truncate_suffix(l, g, 0);
            g->head = 0;
            g->snap_index = g->snap_term = 0;
            free(g->conf);
            g->conf = NULL;
            g->conf_len = 0;
            memset(&g->hs, 0, sizeof g->hs);
            g->has_hs = g->has_compact = false;
            g->f_lo = g->f_hi = 0;
        } else if (kind == SUB_COMPACT) {
            uint64_t index, term;
            struct nk_slice conf;
            nk_reader_varint64(&r, &index);
            nk_reader_varint64(&r, &term);
            nk_reader_lenbytes(&r, MAX_CONF, &conf);
            if (r.bad)
                break;
            if (index >= g->snap_index) {
                free(g->conf);
                g->conf = conf.len ? nk_memdup(conf.data, conf.len) : NULL;
                g->conf_len = conf.len;
            }
            g_compact(l, g, index, term);
            g->has_compact = true;
            g->compact_segment = pos.segment;
        } else {
            return nk_status_make(NK_DATA_LOSS, "raftlog record at %llu:%llu: unknown kind %u",
                                  (unsigned long long)pos.segment,
                                  (unsigned long long)pos.offset, kind);
        }
    }
    if (r.bad)
        return nk_status_make(NK_DATA_LOSS, "raftlog record at %llu:%llu is truncated or malformed",
                              (unsigned long long)pos.segment, (unsigned long long)pos.offset);
    return NK_OK;
}

/* An entry whose payload is in neither the cache nor the fetched set. */
struct rl_miss {
    uint64_t index;
    struct wal_pos pos;
    uint32_t ordinal;
    uint32_t len;
    size_t slot; /* where its payload goes in the caller's output */
};

/*
 * Reads the payloads of misses[0..nm) (ascending index) from the WAL into
 * arena, outs[misses[i].slot] receiving each. A run of misses in one batch
 * record (the usual case: a round writes many entries of a group in one
 * record) is read and decoded once. Called without l->mu: the caller has
 * raised l->disk_readers, so GC keeps every segment, and WAL iterators may
 * read while the writer appends.
 */
static nk_status read_misses(struct raftlog *l, const struct rl_miss *m, size_t nm,
                             struct nk_arena *arena, struct nk_slice *outs)
{
    if (l->opt.before_disk_read)
        l->opt.before_disk_read(l->opt.before_disk_read_arg);
    size_t i = 0;
    while (i < nm) {
        struct wal_pos pos = m[i].pos;
        size_t end = i;
        while (end < nm && wal_pos_cmp(m[end].pos, pos) == 0)
            end++;
        struct wal_iter *it;
        NK_TRY(wal_iter_open(l->wal, pos, &it));
        bool has;
        uint8_t type;
        struct nk_slice payload;
        struct wal_pos at;
        nk_status s = wal_iter_next(it, &has, &type, &payload, &at);
        if (nk_ok(s) && (!has || type != REC_BATCH || wal_pos_cmp(at, pos) != 0))
            s = nk_status_make(NK_DATA_LOSS, "raftlog: no batch record at %llu:%llu",
                               (unsigned long long)pos.segment, (unsigned long long)pos.offset);
        if (!nk_ok(s)) {
            wal_iter_close(it);
            return s;
        }
        struct nk_reader r;
        nk_reader_init(&r, payload.data, payload.len);
        uint32_t ord = 0;
        size_t j = i; /* next miss of this run to fill; ordinals ascend with indexes */
        while (!r.bad && nk_reader_left(&r) > 0 && j < end) {
            uint8_t kind;
            uint32_t gid;
            uint64_t a, b, c;
            nk_reader_u8(&r, &kind);
            nk_reader_varint32(&r, &gid);
            if (kind == SUB_ENTRIES) {
                nk_reader_varint64(&r, &a);
                nk_reader_varint64(&r, &b);
                for (uint64_t k = 0; k < b && !r.bad && j < end; k++) {
                    struct nk_slice data;
                    uint8_t t;
                    nk_reader_varint64(&r, &c);
                    nk_reader_u8(&r, &t);
                    nk_reader_lenbytes(&r, MAX_ENTRY_DATA, &data);
                    if (!r.bad && ord++ == m[j].ordinal) {
                        if (data.len != m[j].len) {
                            wal_iter_close(it);
                            return nk_status_make(NK_DATA_LOSS,
                                                  "raftlog entry %llu: %zu bytes on disk, %u "
                                                  "expected",
                                                  (unsigned long long)m[j].index, data.len,
                                                  m[j].len);
                        }
                        uint8_t *p = nk_arena_alloc(arena, data.len ? data.len : 1);
                        memcpy(p, data.data, data.len);
                        outs[m[j].slot] = nk_slice_make(p, data.len);
                        j++;
                    }
                }
            } else if (kind == SUB_HARDSTATE) {
                nk_reader_varint64(&r, &a);
                nk_reader_varint64(&r, &b);
                nk_reader_varint64(&r, &c);
            } else if (kind == SUB_COMPACT) {
                struct nk_slice conf;
                nk_reader_varint64(&r, &a);
                nk_reader_varint64(&r, &b);
                nk_reader_lenbytes(&r, MAX_CONF, &conf);
            } else if (kind != SUB_RESET) {
                r.bad = true;
            }
        }
        wal_iter_close(it);
        if (j < end)
            return nk_status_make(NK_DATA_LOSS, "raftlog: entry %u missing from record at %llu:%llu",
                                  m[j].ordinal, (unsigned long long)pos.segment,
                                  (unsigned long long)pos.offset);
        i = end;
    }
    return NK_OK;
}

nk_status raftlog_check_record(const uint8_t *p, size_t n)
{
    struct raftlog l;
    memset(&l, 0, sizeof l);
    raftlog_options_default(&l.opt);
    l.opt.max_groups = 4096;
    l.groups = nk_calloc(l.opt.max_groups, sizeof(*l.groups));
    nk_status s = apply_batch(&l, nk_slice_make(p, n), (struct wal_pos){1, 32}, false, true);
    for (uint32_t i = 0; i < l.opt.max_groups; i++) {
        struct rl_group *g = l.groups[i];
        if (!g)
            continue;
        free(g->ents);
        free(g->conf);
        free(g);
    }
    free(l.groups);
    return s;
}

/* -------------------------------------------------------------- open/close */

nk_status raftlog_open(const char *dir, const struct raftlog_options *o, struct raftlog **out)
{
    struct raftlog *l = nk_calloc(1, sizeof(*l));
    if (o)
        l->opt = *o;
    else
        raftlog_options_default(&l->opt);
    if (l->opt.max_groups == 0)
        l->opt.max_groups = 65536;
    if (l->opt.max_batch_bytes == 0)
        l->opt.max_batch_bytes = 32u << 20;
    pthread_mutex_init(&l->mu, NULL);
    l->groups = nk_calloc(l->opt.max_groups, sizeof(*l->groups));
    l->fifo_cap = 1u << 20;
    l->fifo = nk_malloc(l->fifo_cap * sizeof(*l->fifo));
    nk_status s = wal_open(dir, &l->opt.wal, &l->wal);
    if (!nk_ok(s)) {
        raftlog_close(l);
        return nk_status_wrap(s, "open raft log in %s", dir);
    }
    struct wal_iter *it;
    s = wal_iter_open(l->wal, (struct wal_pos){0, 0}, &it);
    while (nk_ok(s)) {
        bool has;
        uint8_t type;
        struct nk_slice payload;
        struct wal_pos pos;
        s = wal_iter_next(it, &has, &type, &payload, &pos);
        if (!nk_ok(s) || !has)
            break;
        if (type != REC_BATCH) {
            s = nk_status_make(NK_DATA_LOSS, "raft log %s: record at %llu:%llu has type %u", dir,
                               (unsigned long long)pos.segment, (unsigned long long)pos.offset,
                               type);
            break;
        }
        /* recovery fills the cache too (oldest evicted first), so the entries a
         * restart replays come from memory */
        s = apply_batch(l, payload, pos, true, true);
    }
    if (it)
        wal_iter_close(it);
    if (!nk_ok(s)) {
        raftlog_close(l);
        return nk_status_wrap(s, "recover raft log in %s", dir);
    }
    *out = l;
    return NK_OK;
}

void raftlog_close(struct raftlog *l)
{
    if (!l)
        return;
    wal_close(l->wal);
    if (l->groups) {
        for (uint32_t i = 0; i < l->opt.max_groups; i++) {
            struct rl_group *g = l->groups[i];
            if (!g)
                continue;
            for (size_t k = 0; k < g->n; k++)
                free(g->ents[g->head + k].data);
            free(g->ents);
            free(g->conf);
            free(g);
        }
        free(l->groups);
    }
    free(l->fifo);
    pthread_mutex_destroy(&l->mu);
    free(l);
}

/* ------------------------------------------------------------------- write */

nk_status raftlog_write(struct raftlog *l, struct raftlog_batch *b)
{
    return raftlog_write_ex(l, b, true);
}

nk_status raftlog_write_ex(struct raftlog *l, struct raftlog_batch *b, bool sync)
{
    if (b->empty)
        return NK_OK;
    if (b->buf.len > l->opt.max_batch_bytes)
        return nk_status_make(NK_RESOURCE_EXHAUSTED,
                              "raft log batch is %zu bytes; the limit is %u bytes", b->buf.len,
                              l->opt.max_batch_bytes);
    pthread_mutex_lock(&l->mu);
    struct wal_pos pos;
    uint64_t t0 = nk_mono_us();
    nk_status s;
    if (sync) {
        s = wal_append(l->wal, REC_BATCH, b->buf.data, b->buf.len, &pos);
    } else {
        struct wal_record rec = {REC_BATCH, nk_slice_make(b->buf.data, b->buf.len)};
        s = wal_append_many_nowait(l->wal, &rec, 1, &pos, NULL);
    }
    if (nk_ok(s)) {
        l->stats.last_fsync_us = nk_mono_us() - t0;
        l->stats.writes++;
        if (sync && l->opt.wal.sync != WAL_SYNC_OS)
            l->stats.fsyncs++;
        l->stats.bytes_written += b->buf.len;
        s = apply_batch(l, nk_slice_make(b->buf.data, b->buf.len), pos, true, false);
        /* our own encoding cannot be malformed */
        NK_ASSERT(nk_ok(s));
    }
    pthread_mutex_unlock(&l->mu);
    return s;
}

nk_status raftlog_sync(struct raftlog *l)
{
    pthread_mutex_lock(&l->mu);
    nk_status s = wal_sync(l->wal);
    if (nk_ok(s))
        l->stats.fsyncs++;
    pthread_mutex_unlock(&l->mu);
    return s;
}

/* -------------------------------------------------------------------- read */

uint32_t *raftlog_groups(struct raftlog *l, size_t *n)
{
    pthread_mutex_lock(&l->mu);
    size_t c = 0;
    for (uint32_t i = 0; i < l->opt.max_groups; i++)
        c += l->groups[i] != NULL;
    uint32_t *ids = nk_malloc((c ? c : 1) * sizeof(uint32_t));
    c = 0;
    for (uint32_t i = 0; i < l->opt.max_groups; i++)
        if (l->groups[i])
            ids[c++] = i;
    pthread_mutex_unlock(&l->mu);
    *n = c;
    return ids;
}

void raftlog_get_hardstate(struct raftlog *l, uint32_t group, struct raftlog_hardstate *hs)
{
    pthread_mutex_lock(&l->mu);
    struct rl_group *g = group_get(l, group, false);
    if (g && g->has_hs)
        *hs = g->hs;
    else
        memset(hs, 0, sizeof(*hs));
    pthread_mutex_unlock(&l->mu);
}

void raftlog_get_compacted(struct raftlog *l, uint32_t group, uint64_t *index, uint64_t *term,
                           struct nk_buf *conf)
{
    pthread_mutex_lock(&l->mu);
    struct rl_group *g = group_get(l, group, false);
    *index = g ? g->snap_index : 0;
    *term = g ? g->snap_term : 0;
    if (conf) {
        nk_buf_clear(conf);
        if (g && g->conf_len)
            nk_buf_append(conf, g->conf, g->conf_len);
    }
    pthread_mutex_unlock(&l->mu);
}

uint64_t raftlog_first_index(struct raftlog *l, uint32_t group)
{
    pthread_mutex_lock(&l->mu);
    struct rl_group *g = group_get(l, group, false);
    uint64_t v = g ? g->snap_index + 1 : 1;
    pthread_mutex_unlock(&l->mu);
    return v;
}

uint64_t raftlog_last_index(struct raftlog *l, uint32_t group)
{
    pthread_mutex_lock(&l->mu);
    struct rl_group *g = group_get(l, group, false);
    uint64_t v = g ? g_last(g) : 0;
    pthread_mutex_unlock(&l->mu);
    return v;
}

nk_status raftlog_term(struct raftlog *l, uint32_t group, uint64_t index, uint64_t *term)
{
    nk_status s = NK_OK;
    pthread_mutex_lock(&l->mu);
    struct rl_group *g = group_get(l, group, false);
    uint64_t snap = g ? g->snap_index : 0;
    if (index == snap) {
        *term = g ? g->snap_term : 0;
    } else if (index < snap) {
        s = nk_status_make(NK_OUT_OF_RANGE, "group %u: index %llu is compacted (log starts at %llu)",
                           group, (unsigned long long)index, (unsigned long long)snap + 1);
    } else if (!g || index > g_last(g)) {
        s = nk_status_make(NK_NOT_FOUND, "group %u: index %llu is beyond the last index %llu",
                           group, (unsigned long long)index,
                           (unsigned long long)(g ? g_last(g) : 0));
    } else {
        *term = g_ent(g, index)->term;
    }
    pthread_mutex_unlock(&l->mu);
    return s;
}

/*
 * Under l->mu: fills out[] with entries [lo, hi) of the group up to
 * max_bytes (at least one), payloads in memory copied into arena. An entry
 * whose payload is only on disk is appended to *miss (allocated here) with
 * its slot, or, with stop_at_miss, ends the list there.
 */
static nk_status collect_entries(struct raftlog *l, uint32_t group, uint64_t lo, uint64_t hi,
                                 uint64_t max_bytes, struct nk_arena *arena,
                                 struct raftlog_entry *out, size_t *n, bool stop_at_miss,
                                 struct rl_miss **miss, size_t *nm)
{
    *n = 0;
    *nm = 0;
    *miss = NULL;
    struct rl_group *g = group_get(l, group, false);
    uint64_t first = g ? g->snap_index + 1 : 1, last = g ? g_last(g) : 0;
    if (lo < first)
        return nk_status_make(NK_OUT_OF_RANGE, "group %u: entries from %llu are compacted (first %llu)",
                              group, (unsigned long long)lo, (unsigned long long)first);
    if (hi > last + 1 || lo > hi)
        return nk_status_make(NK_INVALID_ARGUMENT, "group %u: range [%llu, %llu) beyond last %llu",
                              group, (unsigned long long)lo, (unsigned long long)hi,
                              (unsigned long long)last);
    uint64_t bytes = 0;
    for (uint64_t i = lo; i < hi; i++) {
        struct rl_ent *e = g_ent(g, i);
        if (*n > 0 && bytes + e->len > max_bytes)
            break;
        struct nk_slice data = nk_slice_make(NULL, 0);
        if (e->len > 0 && e->data) {
            uint8_t *p = nk_arena_alloc(arena, e->len);
            memcpy(p, e->data, e->len);
            data = nk_slice_make(p, e->len);
            l->stats.cache_hits++;
        } else if (e->len > 0) {
            if (stop_at_miss)
                break;
            if (*miss == NULL)
                *miss = nk_malloc((hi - i) * sizeof(**miss));
            (*miss)[(*nm)++] = (struct rl_miss){i, e->pos, e->ordinal, e->len, *n};
        }
        out[*n] = (struct raftlog_entry){i, e->term, e->type, data};
        (*n)++;
        bytes += e->len;
    }
    return NK_OK;
}

nk_status raftlog_entries(struct raftlog *l, uint32_t group, uint64_t lo, uint64_t hi,
                          uint64_t max_bytes, struct nk_arena *arena,
                          struct raftlog_entry *out, size_t *n)
{
    struct rl_miss *miss;
    size_t nm;
    pthread_mutex_lock(&l->mu);
    nk_status s = collect_entries(l, group, lo, hi, max_bytes, arena, out, n, false, &miss, &nm);
    if (nk_ok(s) && nm)
        l->disk_readers++;
    pthread_mutex_unlock(&l->mu);
    if (nk_ok(s) && nm) {
        /* the disk reads run without the mutex: a writer never queues
         * behind them */
        struct nk_slice *datas = nk_malloc(*n * sizeof(*datas));
        s = read_misses(l, miss, nm, arena, datas);
        if (nk_ok(s))
            for (size_t k = 0; k < nm; k++)
                out[miss[k].slot].data = datas[miss[k].slot];
        free(datas);
        pthread_mutex_lock(&l->mu);
        l->disk_readers--;
        l->stats.cache_misses += nm;
        pthread_mutex_unlock(&l->mu);
    }
    free(miss);
    if (!nk_ok(s))
        *n = 0;
    return s;
}

nk_status raftlog_entries_nowait(struct raftlog *l, uint32_t group, uint64_t lo, uint64_t hi,
                                 uint64_t max_bytes, struct nk_arena *arena,
                                 struct raftlog_entry *out, size_t *n)
{
    struct rl_miss *miss;
    size_t nm;
    pthread_mutex_lock(&l->mu);
    nk_status s = collect_entries(l, group, lo, hi, max_bytes, arena, out, n, true, &miss, &nm);
    if (nk_ok(s) && *n == 0 && lo < hi) {
        l->stats.fetch_waits++;
        s = nk_status_make(NK_UNAVAILABLE, "group %u: entry %llu is on disk only", group,
                           (unsigned long long)lo);
    }
    pthread_mutex_unlock(&l->mu);
    NK_ASSERT(miss == NULL);
    return s;
}

nk_status raftlog_prefetch(struct raftlog *l, uint32_t group, uint64_t lo, uint64_t max_bytes)
{
    pthread_mutex_lock(&l->mu);
    struct rl_group *g = group_get(l, group, false);
    if (!g || lo <= g->snap_index || lo > g_last(g)) {
        pthread_mutex_unlock(&l->mu);
        return NK_OK; /* compacted or truncated meanwhile: the sender sees it */
    }
    /* one append's worth at most: raft sends at most 4096 entries a
     * message, and the log may hold millions (raft.log_compact_entries) */
    uint64_t hi = NK_MIN(g_last(g) + 1, lo + RAFTLOG_PREFETCH_MAX_ENTRIES);
    struct rl_miss *miss = nk_malloc((hi - lo) * sizeof(*miss));
    size_t nm = 0;
    uint64_t bytes = 0;
    for (uint64_t i = lo; i < hi; i++) {
        struct rl_ent *e = g_ent(g, i);
        if (nm > 0 && bytes + e->len > max_bytes)
            break;
        if (e->len > 0 && !e->data) {
            miss[nm] = (struct rl_miss){i, e->pos, e->ordinal, e->len, nm};
            nm++;
            bytes += e->len;
        }
    }
    /* this group's previous fetch has been sent, or is superseded */
    drop_fetched(l, g);
    /* Other groups' runs make room: a run is kept only until its group
     * fetches again, so a group that caught up would hold its last run for
     * good and starve every other sender (readers copy payloads under the
     * mutex: a run dropped here is read from disk again if still wanted). */
    for (uint32_t k = 0; k < l->opt.max_groups && nm > 0 &&
                         l->fetched_bytes + bytes > l->opt.fetch_bytes;
         k++) {
        uint32_t o = (l->fetch_evict_next + k) % l->opt.max_groups;
        struct rl_group *og = l->groups[o];
        if (og && og != g && og->f_hi > og->f_lo) {
            drop_fetched(l, og);
            l->fetch_evict_next = o + 1;
        }
    }
    if (nm == 0 || l->fetched_bytes + bytes > l->opt.fetch_bytes) {
        size_t held = l->fetched_bytes;
        pthread_mutex_unlock(&l->mu);
        free(miss);
        if (nm == 0)
            return NK_OK;
        return nk_status_make(NK_RESOURCE_EXHAUSTED,
                              "raftlog: %zu bytes of entries are held for senders; %llu more "
                              "would pass the limit of %zu",
                              held, (unsigned long long)bytes, l->opt.fetch_bytes);
    }
    l->disk_readers++;
    pthread_mutex_unlock(&l->mu);

    struct nk_arena arena;
    nk_arena_init(&arena);
    struct nk_slice *datas = nk_malloc(nm * sizeof(*datas));
    nk_status s = read_misses(l, miss, nm, &arena, datas);

    pthread_mutex_lock(&l->mu);
    l->disk_readers--;
    l->stats.cache_misses += nm;
    g = group_get(l, group, false);
    if (nk_ok(s) && g) {
        uint64_t f_lo = 0, f_hi = 0;
        for (size_t k = 0; k < nm; k++) {
            uint64_t i = miss[k].index;
            if (i <= g->snap_index || i > g_last(g))
                continue;
            struct rl_ent *e = g_ent(g, i);
            /* still the same entry: not truncated and rewritten meanwhile */
            if (e->data || e->ordinal != miss[k].ordinal ||
                wal_pos_cmp(e->pos, miss[k].pos) != 0)
                continue;
            if (l->fetched_bytes + e->len > l->opt.fetch_bytes)
                break;
            e->data = nk_memdup(datas[k].data, e->len);
            e->fetched = true;
            l->fetched_bytes += e->len;
            if (f_lo == 0)
                f_lo = i;
            f_hi = i + 1;
        }
        if (f_lo != 0) {
            /* entries fetched before this call and outside [f_lo, f_hi) */
            g->f_lo = NK_MIN(g->f_lo ? g->f_lo : f_lo, f_lo);
            g->f_hi = NK_MAX(g->f_hi, f_hi);
        }
        l->stats.fetches++;
    }
    pthread_mutex_unlock(&l->mu);
    free(datas);
    nk_arena_free(&arena);
    free(miss);
    return s;
}

/* ---------------------------------------------------------------------- gc */

nk_status raftlog_gc(struct raftlog *l)
{
    pthread_mutex_lock(&l->mu);
    uint64_t current = wal_end(l->wal).segment;
    /* the oldest segment that still holds a live entry */
    uint64_t keep = current;
    for (uint32_t i = 0; i < l->opt.max_groups; i++) {
        struct rl_group *g = l->groups[i];
        if (g && g->n)
            keep = NK_MIN(keep, g->ents[g->head].pos.segment);
    }
    /* hard states and compaction points older than that are rewritten */
    struct raftlog_batch *b = raftlog_batch_new();
    for (uint32_t i = 0; i < l->opt.max_groups; i++) {
        struct rl_group *g = l->groups[i];
        if (!g)
            continue;
        if (g->has_hs && g->hs_segment < keep)
            raftlog_batch_hardstate(b, i, &g->hs);
        if (g->has_compact && g->compact_segment < keep)
            raftlog_batch_compact(b, i, g->snap_index, g->snap_term,
                                  nk_slice_make(g->conf, g->conf_len));
    }
    nk_status s = NK_OK;
    if (!b->empty) {
        struct wal_pos pos;
        s = wal_append(l->wal, REC_BATCH, b->buf.data, b->buf.len, &pos);
        if (nk_ok(s))
            s = apply_batch(l, nk_slice_make(b->buf.data, b->buf.len), pos, false, false);
    }
    raftlog_batch_free(b);
    /*
     * Before a segment goes, everything that replaces it must be on disk:
     * the checkpoint just written and the compaction points that let the
     * group entries in old segments go (with an unsynced log, WAL_SYNC_OS,
     * they may exist only in the page cache). Otherwise a power cut after
     * the (durable) unlink leaves groups without their compaction point or
     * hard state. One fdatasync per GC that removes something.
     */
    /* a reader outside the mutex may be in an old segment: keep them all
     * until the next GC */
    if (nk_ok(s) && keep > wal_first_segment(l->wal) && l->disk_readers == 0) {
        s = wal_sync(l->wal);
        if (nk_ok(s))
            s = wal_remove_before(l->wal, keep);
    }
    pthread_mutex_unlock(&l->mu);
    return s;
}

void raftlog_get_stats(struct raftlog *l, struct raftlog_stats *out)
{
    pthread_mutex_lock(&l->mu);
    *out = l->stats;
    out->cache_bytes = l->cache_bytes;
    out->fetched_bytes = l->fetched_bytes;
    struct wal_stats ws;
    wal_get_stats(l->wal, &ws);
    out->segments = ws.segments;
    pthread_mutex_unlock(&l->mu);
}
