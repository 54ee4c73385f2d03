/*
 * edit.c: table files, versions (immutable sets of tables), version edits and
 * their encoding, and the framing of manifest files. docs/format/manifest.md
 * gives every byte.
 *
 * A version is never changed once built; the background thread builds the
 * next one from the current one and an edit, logs the edit to the manifest,
 * then installs it. Readers hold a reference to the version they started
 * with, and each table holds a reference count, so a table replaced by a
 * compaction is closed and unlinked when the last reader lets go.
 */
#include "lsm/internal.h"

#include <stdlib.h>
#include <unistd.h>

enum {
    TAG_COMPARATOR = 1,
    TAG_LOG_NUMBER = 2,
    TAG_NEXT_FILE = 3,
    TAG_LAST_SEQ = 4,
    TAG_DEL_FILE = 5,
    TAG_ADD_FILE = 6,
    TAG_LOG_OFFSET = 7,
};

/* ------------------------------------------------------------------- files */

struct lsm_file *lsm_file_new(uint64_t number, uint64_t size, struct nk_slice smallest,
                              struct nk_slice largest)
{
    struct lsm_file *f = nk_calloc(1, sizeof(*f));
    atomic_init(&f->refs, 1);
    atomic_init(&f->obsolete, false);
    f->number = number;
    f->size = size;
    nk_buf_init(&f->smallest);
    nk_buf_init(&f->largest);
    nk_buf_append(&f->smallest, smallest.data, smallest.len);
    nk_buf_append(&f->largest, largest.data, largest.len);
    return f;
}

void lsm_file_ref(struct lsm_file *f)
{
    atomic_fetch_add_explicit(&f->refs, 1, memory_order_relaxed);
}

void lsm_file_unref(struct lsm_file *f)
{
    if (!f || atomic_fetch_sub_explicit(&f->refs, 1, memory_order_acq_rel) != 1)
        return;
    if (f->reader)
        sst_reader_close(f->reader);
    if (atomic_load(&f->obsolete) && f->path) {
        if (nk_fs_unlink(f->path) != 0)
            NK_WARN("lsm", "cannot remove obsolete table %s", f->path);
    }
    free(f->path);
    nk_buf_free(&f->smallest);
    nk_buf_free(&f->largest);
    free(f);
}

static struct nk_slice fsmall(const struct lsm_file *f)
{
    return nk_slice_make(f->smallest.data, f->smallest.len);
}
static struct nk_slice flarge(const struct lsm_file *f)
{
    return nk_slice_make(f->largest.data, f->largest.len);
}

/* ---------------------------------------------------------------- versions */

struct lsm_version *version_new_empty(void)
{
    struct lsm_version *v = nk_calloc(1, sizeof(*v));
    atomic_init(&v->refs, 1);
    return v;
}

void version_ref(struct lsm_version *v)
{
    atomic_fetch_add_explicit(&v->refs, 1, memory_order_relaxed);
}

void version_unref(struct lsm_version *v)
{
    if (!v || atomic_fetch_sub_explicit(&v->refs, 1, memory_order_acq_rel) != 1)
        return;
    for (int l = 0; l < LSM_NUM_LEVELS; l++) {
        for (uint32_t i = 0; i < v->nfiles[l]; i++)
            lsm_file_unref(v->files[l][i]);
        free(v->files[l]);
    }
    free(v);
}

uint64_t version_level_bytes(const struct lsm_version *v, int level)
{
    uint64_t s = 0;
    for (uint32_t i = 0; i < v->nfiles[level]; i++)
        s += v->files[level][i]->size;
    return s;
}

uint32_t version_find_file(const struct lsm_version *v, int level, struct nk_slice ikey)
{
    uint32_t lo = 0, hi = v->nfiles[level];
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (ik_cmp(flarge(v->files[level][mid]), ikey) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static bool file_overlaps(const struct lsm_file *f, const struct nk_slice *lo,
                          const struct nk_slice *hi)
{
    if (lo && lsm_user_cmp(ik_user(flarge(f)), *lo) < 0)
        return false;
    if (hi && lsm_user_cmp(ik_user(fsmall(f)), *hi) > 0)
        return false;
    return true;
}

bool version_overlaps(const struct lsm_version *v, int level, const struct nk_slice *lo,
                      const struct nk_slice *hi)
{
    for (uint32_t i = 0; i < v->nfiles[level]; i++)
        if (file_overlaps(v->files[level][i], lo, hi))
            return true;
    return false;
}

void version_overlapping(const struct lsm_version *v, int level, const struct nk_slice *lo,
                         const struct nk_slice *hi, struct lsm_file ***out, uint32_t *n)
{
    struct nk_buf lob, hib;
    nk_buf_init(&lob);
    nk_buf_init(&hib);
    bool has_lo = lo != NULL, has_hi = hi != NULL;
    if (lo)
        nk_buf_append(&lob, lo->data, lo->len);
    if (hi)
        nk_buf_append(&hib, hi->data, hi->len);
    struct lsm_file **res = nk_malloc(sizeof(*res) * (v->nfiles[level] + 1));
    uint32_t cnt = 0;
restart:
    cnt = 0;
    for (uint32_t i = 0; i < v->nfiles[level]; i++) {
        struct lsm_file *f = v->files[level][i];
        struct nk_slice l = nk_slice_make(lob.data, lob.len), h = nk_slice_make(hib.data, hib.len);
        if (!file_overlaps(f, has_lo ? &l : NULL, has_hi ? &h : NULL))
            continue;
        if (level == 0) {
            /* L0 files overlap each other: widen the range to everything a
             * chosen file covers, so no older version of a key stays behind. */
            struct nk_slice fs = ik_user(fsmall(f)), fl = ik_user(flarge(f));
            bool widened = false;
            if (has_lo && lsm_user_cmp(fs, l) < 0) {
                nk_buf_clear(&lob);
                nk_buf_append(&lob, fs.data, fs.len);
                widened = true;
            }
            if (has_hi && lsm_user_cmp(fl, h) > 0) {
                nk_buf_clear(&hib);
                nk_buf_append(&hib, fl.data, fl.len);
                widened = true;
            }
            if (widened)
                goto restart;
        }
        res[cnt++] = f;
    }
    nk_buf_free(&lob);
    nk_buf_free(&hib);
    *out = res;
    *n = cnt;
}

/* ------------------------------------------------------------------- edits */

void edit_init(struct lsm_edit *e)
{
    memset(e, 0, sizeof(*e));
}

void edit_free(struct lsm_edit *e)
{
    for (uint32_t i = 0; i < e->nadds; i++)
        lsm_file_unref(e->adds[i].file);
    free(e->adds);
    free(e->dels);
    edit_init(e);
}

void edit_add_file(struct lsm_edit *e, int level, struct lsm_file *f)
{
    if (e->nadds == e->adds_cap) {
        e->adds_cap = e->adds_cap ? 2 * e->adds_cap : 8;
        e->adds = nk_realloc(e->adds, e->adds_cap * sizeof(*e->adds));
    }
    lsm_file_ref(f);
    e->adds[e->nadds++] = (struct lsm_edit_file){level, f};
}

void edit_del_file(struct lsm_edit *e, int level, uint64_t number)
{
    if (e->ndels == e->dels_cap) {
        e->dels_cap = e->dels_cap ? 2 * e->dels_cap : 8;
        e->dels = nk_realloc(e->dels, e->dels_cap * sizeof(*e->dels));
    }
    e->dels[e->ndels++] = (struct lsm_edit_del){level, number};
}

void edit_encode(const struct lsm_edit *e, struct nk_buf *out)
{
    if (e->has_comparator) {
        nk_buf_put_varint32(out, TAG_COMPARATOR);
        nk_buf_put_lenbytes(out, e->comparator, strlen(e->comparator));
    }
    if (e->has_log_number) {
        nk_buf_put_varint32(out, TAG_LOG_NUMBER);
        nk_buf_put_varint64(out, e->log_number);
        nk_buf_put_varint32(out, TAG_LOG_OFFSET);
        nk_buf_put_varint64(out, e->log_offset);
    }
    if (e->has_next_file) {
        nk_buf_put_varint32(out, TAG_NEXT_FILE);
        nk_buf_put_varint64(out, e->next_file);
    }
    if (e->has_last_seq) {
        nk_buf_put_varint32(out, TAG_LAST_SEQ);
        nk_buf_put_varint64(out, e->last_seq);
    }
    for (uint32_t i = 0; i < e->ndels; i++) {
        nk_buf_put_varint32(out, TAG_DEL_FILE);
        nk_buf_put_varint32(out, (uint32_t)e->dels[i].level);
        nk_buf_put_varint64(out, e->dels[i].number);
    }
    for (uint32_t i = 0; i < e->nadds; i++) {
        const struct lsm_file *f = e->adds[i].file;
        nk_buf_put_varint32(out, TAG_ADD_FILE);
        nk_buf_put_varint32(out, (uint32_t)e->adds[i].level);
        nk_buf_put_varint64(out, f->number);
        nk_buf_put_varint64(out, f->size);
        nk_buf_put_lenbytes(out, f->smallest.data, f->smallest.len);
        nk_buf_put_lenbytes(out, f->largest.data, f->largest.len);
    }
}

static nk_status bad(const char *what)
{
    return nk_status_make(NK_DATA_LOSS, "version edit: %s malformed", what);
}

nk_status edit_decode(struct nk_slice in, struct lsm_edit *e)
{
    edit_init(e);
    struct nk_reader r;
    nk_reader_init(&r, in.data, in.len);
    while (nk_reader_left(&r)) {
        uint32_t tag, level;
        struct nk_slice s, l;
        uint64_t number, size;
        if (!nk_reader_varint32(&r, &tag))
            return bad("tag");
        switch (tag) {
        case TAG_COMPARATOR:
            if (!nk_reader_lenbytes(&r, sizeof(e->comparator) - 1, &s))
                return bad("comparator");
            memcpy(e->comparator, s.data, s.len);
            e->comparator[s.len] = 0;
            e->has_comparator = true;
            break;
        case TAG_LOG_NUMBER:
            if (!nk_reader_varint64(&r, &e->log_number))
                return bad("log number");
            e->has_log_number = true;
            break;
        case TAG_LOG_OFFSET:
            if (!nk_reader_varint64(&r, &e->log_offset))
                return bad("log offset");
            break;
        case TAG_NEXT_FILE:
            if (!nk_reader_varint64(&r, &e->next_file))
                return bad("next file number");
            e->has_next_file = true;
            break;
        case TAG_LAST_SEQ:
            if (!nk_reader_varint64(&r, &e->last_seq) || e->last_seq > LSM_MAX_SEQ)
                return bad("last sequence");
            e->has_last_seq = true;
            break;
        case TAG_DEL_FILE:
            if (!nk_reader_varint32(&r, &level) || level >= LSM_NUM_LEVELS)
                return bad("deleted file level");
            if (!nk_reader_varint64(&r, &number))
                return bad("deleted file number");
            edit_del_file(e, (int)level, number);
            break;
        case TAG_ADD_FILE: {
            if (!nk_reader_varint32(&r, &level) || level >= LSM_NUM_LEVELS)
                return bad("new file level");
            if (!nk_reader_varint64(&r, &number) || !nk_reader_varint64(&r, &size))
                return bad("new file number or size");
            if (!nk_reader_lenbytes(&r, SST_MAX_KEY, &s) || s.len < LSM_TRAILER)
                return bad("new file smallest key");
            if (!nk_reader_lenbytes(&r, SST_MAX_KEY, &l) || l.len < LSM_TRAILER)
                return bad("new file largest key");
            if (ik_cmp(s, l) > 0)
                return bad("new file key range");
            struct lsm_file *f = lsm_file_new(number, size, s, l);
            edit_add_file(e, (int)level, f);
            lsm_file_unref(f);
            break;
        }
        default:
            return nk_status_make(NK_DATA_LOSS, "version edit: unknown tag %u", tag);
        }
    }
    return NK_OK;
}

static int cmp_l0(const void *a, const void *b)
{
    const struct lsm_file *x = *(struct lsm_file *const *)a, *y = *(struct lsm_file *const *)b;
    return x->number > y->number ? -1 : (x->number < y->number ? 1 : 0); /* newest first */
}

static int cmp_ln(const void *a, const void *b)
{
    const struct lsm_file *x = *(struct lsm_file *const *)a, *y = *(struct lsm_file *const *)b;
    return ik_cmp(fsmall(x), fsmall(y));
}

nk_status version_apply(const struct lsm_version *base, const struct lsm_edit *e,
                        struct lsm_version **out)
{
    struct lsm_version *v = version_new_empty();
    for (uint32_t d = 0; d < e->ndels; d++) {
        int l = e->dels[d].level;
        bool there = false;
        for (uint32_t i = 0; i < base->nfiles[l] && !there; i++)
            there = base->files[l][i]->number == e->dels[d].number;
        if (!there) {
            version_unref(v);
            return nk_status_make(NK_DATA_LOSS,
                                  "version edit deletes table %06llu, which level %d lacks",
                                  (unsigned long long)e->dels[d].number, l);
        }
    }
    for (int l = 0; l < LSM_NUM_LEVELS; l++) {
        uint32_t cap = base->nfiles[l];
        for (uint32_t a = 0; a < e->nadds; a++)
            cap += e->adds[a].level == l;
        if (!cap)
            continue;
        v->files[l] = nk_malloc(cap * sizeof(struct lsm_file *));
        for (uint32_t i = 0; i < base->nfiles[l]; i++) {
            struct lsm_file *f = base->files[l][i];
            bool deleted = false;
            for (uint32_t d = 0; d < e->ndels && !deleted; d++)
                deleted = e->dels[d].level == l && e->dels[d].number == f->number;
            if (deleted)
                continue;
            lsm_file_ref(f);
            v->files[l][v->nfiles[l]++] = f;
        }
        for (uint32_t a = 0; a < e->nadds; a++) {
            if (e->adds[a].level != l)
                continue;
            lsm_file_ref(e->adds[a].file);
            v->files[l][v->nfiles[l]++] = e->adds[a].file;
        }
        qsort(v->files[l], v->nfiles[l], sizeof(struct lsm_file *), l == 0 ? cmp_l0 : cmp_ln);
        /* Below L0 no two tables may share a user key: a point read looks at
         * exactly one table per level. */
        for (uint32_t i = 1; l > 0 && i < v->nfiles[l]; i++) {
            const struct lsm_file *p = v->files[l][i - 1], *f = v->files[l][i];
            if (lsm_user_cmp(ik_user(flarge(p)), ik_user(fsmall(f))) >= 0) {
                nk_status s = nk_status_make(
                    NK_DATA_LOSS, "version edit makes tables %06llu and %06llu overlap in level %d",
                    (unsigned long long)p->number, (unsigned long long)f->number, l);
                version_unref(v);
                return s;
            }
        }
    }
    *out = v;
    return NK_OK;
}

void version_snapshot_edit(const struct lsm_version *v, struct lsm_edit *e)
{
    for (int l = 0; l < LSM_NUM_LEVELS; l++)
        for (uint32_t i = 0; i < v->nfiles[l]; i++)
            edit_add_file(e, l, v->files[l][i]);
}

/* ---------------------------------------------------------------- manifest */

void manifest_frame(struct nk_slice payload, struct nk_buf *out)
{
    uint8_t len[4];
    nk_enc_fixed32(len, (uint32_t)payload.len);
    uint32_t crc = nk_crc32c_extend(nk_crc32c(len, 4), payload.data, payload.len);
    nk_buf_put_fixed32(out, nk_crc32c_mask(crc));
    nk_buf_append(out, len, 4);
    nk_buf_append(out, payload.data, payload.len);
}

/* Whether a whole, valid record starts at off. */
static bool manifest_record_at(struct nk_slice file, size_t off)
{
    if (file.len - off < 8)
        return false;
    uint32_t len = nk_dec_fixed32(file.data + off + 4);
    if ((uint64_t)len > file.len - off - 8)
        return false;
    uint32_t crc = nk_crc32c_unmask(nk_dec_fixed32(file.data + off));
    return nk_crc32c_extend(nk_crc32c(file.data + off + 4, 4), file.data + off + 8, len) == crc;
}

/*
 * Damage at off: a torn tail when no valid record follows anywhere after it
 * (the crash cut the last append; what follows is its remains or zeros);
 * otherwise records written after the damage exist, and skipping them would
 * lose their edits (and let garbage collection delete the tables they
 * added): NK_DATA_LOSS naming the file and both offsets. The scan is linear
 * in the bytes after the damage times the (rejected early) candidates:
 * recovery only, on a file of at most a few MiB.
 */
static nk_status manifest_damage(struct nk_slice file, const char *name, size_t off,
                                 const char *what, bool *torn)
{
    for (size_t next = off + 1; next + 8 <= file.len; next++) {
        if (manifest_record_at(file, next))
            return nk_status_make(NK_DATA_LOSS,
                                  "%s: record at offset %zu %s, but a valid record follows at "
                                  "offset %zu: the manifest is damaged, not torn (%zu bytes)",
                                  name, off, what, next, file.len);
    }
    *torn = true;
    return NK_OK;
}

nk_status manifest_parse(struct nk_slice file, const char *name,
                         nk_status (*fn)(void *ctx, struct nk_slice payload), void *ctx,
                         bool *torn)
{
    *torn = false;
    size_t off = 0;
    while (off < file.len) {
        size_t left = file.len - off;
        if (left < 8)
            return manifest_damage(file, name, off, "is cut short", torn);
        uint32_t crc = nk_crc32c_unmask(nk_dec_fixed32(file.data + off));
        uint32_t len = nk_dec_fixed32(file.data + off + 4);
        if ((uint64_t)len > left - 8)
            return manifest_damage(file, name, off, "claims more bytes than the file holds", torn);
        uint32_t got = nk_crc32c_extend(nk_crc32c(file.data + off + 4, 4), file.data + off + 8, len);
        if (got != crc)
            return manifest_damage(file, name, off, "fails its checksum", torn);
        nk_status s = fn(ctx, nk_slice_make(file.data + off + 8, len));
        if (!nk_ok(s))
            return nk_status_wrap(s, "%s: record at offset %zu", name, off);
        off += 8 + (size_t)len;
    }
    return NK_OK;
}
