/*
 * pick.c: which tables to compact next (leveled compaction).
 *
 * Level 0 holds flushed memtables whose ranges overlap; it is compacted into
 * L1 once it holds l0_trigger tables. Level n >= 1 holds disjoint tables and
 * may hold max_bytes_base * ratio^(n-1) bytes; the level most over its target
 * (score = size / target, for L0 files / trigger) is compacted first. Within
 * a level, a compact pointer walks round robin through the key space so that
 * every key range is rewritten in turn. The last level is never a source.
 *
 * These functions only look at a version; db.c runs what they choose.
 */
#include "lsm/internal.h"

#include <stdlib.h>

uint64_t pick_max_bytes(const struct lsm_pick_options *o, int level)
{
    uint64_t b = o->max_bytes_base;
    for (int l = 1; l < level; l++)
        b *= o->ratio;
    return b;
}

int pick_level(const struct lsm_version *v, const struct lsm_pick_options *o, double *score)
{
    int best = -1;
    double best_score = 0;
    for (int l = 0; l < LSM_NUM_LEVELS - 1; l++) {
        double s;
        if (l == 0)
            s = (double)v->nfiles[0] / (double)o->l0_trigger;
        else
            s = (double)version_level_bytes(v, l) / (double)pick_max_bytes(o, l);
        if (s >= 1.0 && s > best_score) {
            best = l;
            best_score = s;
        }
    }
    if (score)
        *score = best_score;
    return best;
}

static void user_range(struct lsm_file **files, uint32_t n, struct nk_slice *lo,
                       struct nk_slice *hi)
{
    for (uint32_t i = 0; i < n; i++) {
        struct nk_slice s = ik_user(nk_slice_make(files[i]->smallest.data, files[i]->smallest.len));
        struct nk_slice l = ik_user(nk_slice_make(files[i]->largest.data, files[i]->largest.len));
        if (i == 0 || lsm_user_cmp(s, *lo) < 0)
            *lo = s;
        if (i == 0 || lsm_user_cmp(l, *hi) > 0)
            *hi = l;
    }
}

static void add_next_level(const struct lsm_version *v, struct lsm_compaction *c)
{
    struct nk_slice lo, hi;
    user_range(c->in[0], c->nin[0], &lo, &hi);
    version_overlapping(v, c->level + 1, &lo, &hi, &c->in[1], &c->nin[1]);
    c->trivial_move = c->nin[0] == 1 && c->nin[1] == 0;
}

void pick_compaction(const struct lsm_version *v, int level, struct nk_slice compact_pointer,
                     struct lsm_compaction *c)
{
    memset(c, 0, sizeof(*c));
    c->level = level;
    NK_ASSERT(level >= 0 && level < LSM_NUM_LEVELS - 1 && v->nfiles[level] > 0);
    if (level == 0) {
        /* the oldest table, with every L0 table overlapping it */
        struct lsm_file *f = v->files[0][v->nfiles[0] - 1];
        struct nk_slice lo = ik_user(nk_slice_make(f->smallest.data, f->smallest.len));
        struct nk_slice hi = ik_user(nk_slice_make(f->largest.data, f->largest.len));
        version_overlapping(v, 0, &lo, &hi, &c->in[0], &c->nin[0]);
    } else {
        uint32_t i = 0;
        if (compact_pointer.data) {
            while (i < v->nfiles[level] &&
                   ik_cmp(nk_slice_make(v->files[level][i]->largest.data,
                                        v->files[level][i]->largest.len),
                          compact_pointer) <= 0)
                i++;
            if (i == v->nfiles[level])
                i = 0;
        }
        c->in[0] = nk_malloc(sizeof(struct lsm_file *));
        c->in[0][0] = v->files[level][i];
        c->nin[0] = 1;
    }
    add_next_level(v, c);
}

bool pick_range(const struct lsm_version *v, int level, const struct nk_slice *lo,
                const struct nk_slice *hi, struct lsm_compaction *c)
{
    memset(c, 0, sizeof(*c));
    c->level = level;
    NK_ASSERT(level >= 0 && level < LSM_NUM_LEVELS - 1);
    version_overlapping(v, level, lo, hi, &c->in[0], &c->nin[0]);
    if (c->nin[0] == 0) {
        compaction_free(c);
        return false;
    }
    add_next_level(v, c);
    return true;
}

void compaction_free(struct lsm_compaction *c)
{
    free(c->in[0]);
    free(c->in[1]);
    memset(c, 0, sizeof(*c));
}
