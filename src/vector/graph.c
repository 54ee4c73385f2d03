/*
 * graph.c: the HNSW graph as LSM records, so that a restart loads the graph
 * instead of rebuilding it (docs/vector.md, "Restart").
 *
 * Every mutation marks the slots whose node record changed (the new node,
 * the neighbours whose links it rewrote, a new tombstone, nodes repaired and
 * slots freed by a clean-up) and whether the entry point moved. Apply takes
 * that set after changing the index and writes those records in the same
 * LSM batch as the command's data and applied index. Loading installs the
 * records as they are, so a restarted replica holds exactly the graph of the
 * replicas that never stopped: slot numbers included (free slots are handed
 * out lowest first, a function of the set of free slots).
 *
 * Node record: u8 version 1 | lenbytes id | u8 level | u8 flags (1:
 * tombstone) | per level 0..level: varint count, count x varint slot |
 * tombstone only: dims x f32 (a tombstone's vector is no longer in the
 * vector records but still guides searches).
 * Meta record: u8 version 1 | varint entry + 1 (0: empty) | u8 max_level |
 * varint slot count.
 */
#include <stdlib.h>

#include "vector/internal.h"

#define GRAPH_V1 1
#define NODE_TOMBSTONE 1

static int asc_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : (x > y ? 1 : 0);
}

uint32_t vec_graph_take_dirty(struct vec_index *ix, const uint32_t **slots, bool *meta)
{
    uint32_t n = ix->n_dirty;
    for (uint32_t i = 0; i < n; i++)
        ix->slots[ix->dirty[i]].dirty = 0;
    if (n)
        qsort(ix->dirty, n, sizeof(uint32_t), asc_u32);
    *slots = ix->dirty;
    *meta = ix->meta_dirty;
    ix->n_dirty = 0;
    ix->meta_dirty = false;
    return n;
}

bool vec_graph_encode_node(struct vec_index *ix, uint32_t slot, struct nk_buf *out)
{
    const struct vec_slot *s = &ix->slots[slot];
    if (s->flags & SLOT_FREE)
        return false;
    bool tomb = s->flags & SLOT_DELETED;
    nk_buf_put_u8(out, GRAPH_V1);
    nk_buf_put_lenbytes(out, s->id, s->id_len);
    nk_buf_put_u8(out, s->level);
    nk_buf_put_u8(out, tomb ? NODE_TOMBSTONE : 0);
    for (int l = 0; l <= s->level; l++) {
        const uint32_t *links = vec_links(ix, slot, l);
        nk_buf_put_varint32(out, links[0]);
        for (uint32_t j = 1; j <= links[0]; j++)
            nk_buf_put_varint32(out, links[j]);
    }
    if (tomb)
        nk_buf_append(out, vec_slot_vector(ix, slot), 4 * (size_t)ix->o.dims);
    return true;
}

void vec_graph_encode_meta(struct vec_index *ix, struct nk_buf *out)
{
    nk_buf_put_u8(out, GRAPH_V1);
    nk_buf_put_varint64(out, (uint64_t)(ix->entry + 1));
    nk_buf_put_u8(out, (uint8_t)ix->max_level);
    nk_buf_put_varint32(out, ix->n_slots);
}

/* ------------------------------------------------------------------ load */

static nk_status bad(const char *what)
{
    return nk_status_make(NK_DATA_LOSS, "HNSW graph record is malformed: %s", what);
}

nk_status vec_graph_load_meta(struct vec_index *ix, struct nk_slice rec)
{
    NK_ASSERT(ix->n_slots == 0 && ix->o.type == VEC_INDEX_HNSW);
    struct nk_reader r;
    nk_reader_init(&r, rec.data, rec.len);
    uint8_t ver = 0, max_level = 0;
    uint64_t entry = 0;
    uint32_t n = 0;
    nk_reader_u8(&r, &ver);
    nk_reader_varint64(&r, &entry);
    nk_reader_u8(&r, &max_level);
    nk_reader_varint32(&r, &n);
    if (r.bad || ver != GRAPH_V1 || nk_reader_left(&r))
        return bad("meta");
    if (entry > n || max_level > VEC_MAX_LEVEL || n > (1u << 31))
        return bad("meta values out of range");
    for (uint32_t i = 0; i < n; i++)
        vec_slot_new(ix); /* all free until their node records arrive */
    ix->entry = (int64_t)entry - 1;
    ix->max_level = max_level;
    return NK_OK;
}

nk_status vec_graph_load_node(struct vec_index *ix, uint32_t slot, struct nk_slice rec)
{
    if (slot >= ix->n_slots || !(ix->slots[slot].flags & SLOT_FREE))
        return bad("node slot out of range or repeated");
    struct nk_reader r;
    nk_reader_init(&r, rec.data, rec.len);
    uint8_t ver = 0, level = 0, flags = 0;
    struct nk_slice id = {0};
    nk_reader_u8(&r, &ver);
    nk_reader_lenbytes(&r, VEC_MAX_ID, &id);
    nk_reader_u8(&r, &level);
    nk_reader_u8(&r, &flags);
    if (r.bad || ver != GRAPH_V1 || id.len == 0 || (flags & ~NODE_TOMBSTONE))
        return bad("node header");
    if (level != vec_hnsw_level_for(id, ix->o.m))
        return bad("node level is not its id's");
    struct vec_slot *s = &ix->slots[slot];
    memset(s, 0, sizeof(*s));
    s->id = nk_malloc(id.len + 1);
    memcpy(s->id, id.data, id.len);
    s->id[id.len] = 0;
    s->id_len = (uint32_t)id.len;
    s->level = level;
    s->flags = (flags & NODE_TOMBSTONE) ? SLOT_DELETED : 0;
    if (level)
        s->upper = nk_calloc((size_t)level * (1 + ix->o.m), sizeof(uint32_t));
    for (int l = 0; l <= level; l++) {
        uint32_t *links = vec_links(ix, slot, l), n = 0;
        nk_reader_varint32(&r, &n);
        if (r.bad || n > vec_max_links(ix, l))
            return bad("node link count");
        for (uint32_t j = 1; j <= n; j++)
            if (!nk_reader_varint32(&r, &links[j]) || links[j] >= ix->n_slots)
                return bad("node link");
        links[0] = n;
    }
    if (s->flags & SLOT_DELETED) {
        struct nk_slice v;
        if (!nk_reader_bytes(&r, 4 * (size_t)ix->o.dims, &v))
            return bad("tombstone vector");
        memcpy(vec_slot_vector(ix, slot), v.data, v.len);
        if (ix->o.metric == VEC_METRIC_COSINE)
            s->inv_norm = vec_inv_norm(vec_slot_vector(ix, slot), ix->o.dims);
        ix->tombstones++;
    } else {
        if (!vec_map_add(ix, slot))
            return bad("two live nodes with one id");
        ix->live++;
        ix->accounted += vec_index_cost(&ix->o, id);
        s->dirty = 1; /* here: waiting for its vector */
    }
    if (nk_reader_left(&r))
        return bad("node has trailing bytes");
    return NK_OK;
}

nk_status vec_graph_load_vector(struct vec_index *ix, struct nk_slice id, const float *v)
{
    bool found;
    uint64_t pos = vec_map_lookup(ix, id, &found);
    if (!found)
        return nk_status_make(NK_DATA_LOSS, "vector '%.*s' has no node in the HNSW graph",
                              (int)NK_MIN(id.len, 64), (const char *)id.data);
    uint32_t slot = ix->map[pos] - 1;
    if (!ix->slots[slot].dirty)
        return bad("a node's vector came twice");
    memcpy(vec_slot_vector(ix, slot), v, 4 * (size_t)ix->o.dims);
    if (ix->o.metric == VEC_METRIC_COSINE)
        ix->slots[slot].inv_norm = vec_inv_norm(v, ix->o.dims);
    ix->slots[slot].dirty = 0;
    return NK_OK;
}

nk_status vec_graph_load_finish(struct vec_index *ix)
{
    for (uint32_t i = 0; i < ix->n_slots; i++) {
        struct vec_slot *s = &ix->slots[i];
        if (s->flags & SLOT_FREE) {
            s->dirty = 0;
            vec_free_push(ix, i);
            continue;
        }
        if (s->dirty)
            return nk_status_make(NK_DATA_LOSS, "HNSW node '%s' has no vector record", s->id);
        for (int l = 0; l <= s->level; l++) {
            const uint32_t *links = vec_links(ix, i, l);
            for (uint32_t j = 1; j <= links[0]; j++) {
                const struct vec_slot *t = &ix->slots[links[j]];
                if ((t->flags & SLOT_FREE) || t->level < l)
                    return bad("a link points to a free slot or below its level");
            }
        }
    }
    if (ix->entry >= (int64_t)ix->n_slots ||
        (ix->entry >= 0 && ((ix->slots[ix->entry].flags & SLOT_FREE) ||
                            ix->slots[ix->entry].level != ix->max_level)) ||
        (ix->entry < 0 && ix->live + ix->tombstones > 0))
        return bad("entry point");
    vec_sort_free_list(ix);
    ix->n_dirty = 0;
    ix->meta_dirty = false;
    return NK_OK;
}
