/*
 * fuzz_manifest.c: manifest parsing (record framing, version edits, applying
 * edits to versions) on untrusted bytes: malformed input is a status, never
 * a crash, a leak or a version that breaks the level invariants.
 */
#include "lsm/internal.h"

#include <stdlib.h>

static nk_status apply(void *ctx, struct nk_slice payload)
{
    struct lsm_version **v = ctx;
    struct lsm_edit e;
    nk_status s = edit_decode(payload, &e);
    if (nk_ok(s)) {
        struct lsm_version *nv;
        s = version_apply(*v, &e, &nv);
        if (nk_ok(s)) {
            for (int l = 1; l < LSM_NUM_LEVELS; l++)
                for (uint32_t i = 1; i < nv->nfiles[l]; i++)
                    NK_ASSERT(ik_cmp(nk_slice_make(nv->files[l][i - 1]->largest.data,
                                                   nv->files[l][i - 1]->largest.len),
                                     nk_slice_make(nv->files[l][i]->smallest.data,
                                                   nv->files[l][i]->smallest.len)) < 0);
            version_unref(*v);
            *v = nv;
        }
    }
    edit_free(&e);
    return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* as a whole manifest file */
    struct lsm_version *v = version_new_empty();
    bool torn;
    nk_status s = manifest_parse(nk_slice_make(data, size), "fuzz", apply, &v, &torn);
    nk_status_free(&s);
    version_unref(v);
    /* as one edit payload */
    struct lsm_edit e;
    s = edit_decode(nk_slice_make(data, size), &e);
    if (nk_ok(s)) {
        struct nk_buf enc;
        nk_buf_init(&enc);
        edit_encode(&e, &enc);
        struct lsm_edit e2;
        nk_status s2 = edit_decode(nk_slice_make(enc.data, enc.len), &e2);
        NK_ASSERT(nk_ok(s2) && e2.nadds == e.nadds && e2.ndels == e.ndels);
        edit_free(&e2);
        nk_buf_free(&enc);
    }
    nk_status_free(&s);
    edit_free(&e);
    return 0;
}

static void add_file(struct lsm_edit *e, int level, uint64_t num, const char *lo, const char *hi)
{
    struct nk_buf a, b;
    nk_buf_init(&a);
    nk_buf_init(&b);
    ik_append(&a, nk_slice_str(lo), num, LSM_T_PUT);
    ik_append(&b, nk_slice_str(hi), num, LSM_T_DEL);
    struct lsm_file *f = lsm_file_new(num, 1000 + num, nk_slice_make(a.data, a.len),
                                      nk_slice_make(b.data, b.len));
    edit_add_file(e, level, f);
    lsm_file_unref(f);
    nk_buf_free(&a);
    nk_buf_free(&b);
}

size_t LLVMFuzzerSeedCorpus(const uint8_t ***out, const size_t **lens)
{
    static const uint8_t *seeds[2];
    static size_t sl[2];
    struct nk_buf file, payload;
    nk_buf_init(&file);
    nk_buf_init(&payload);
    struct lsm_edit e;
    edit_init(&e);
    e.has_comparator = true;
    strcpy(e.comparator, "nori.internal_key.v1");
    e.has_log_number = e.has_next_file = e.has_last_seq = true;
    e.log_number = 3;
    e.next_file = 20;
    e.last_seq = 1000;
    add_file(&e, 0, 7, "a", "z");
    add_file(&e, 1, 8, "a", "f");
    add_file(&e, 1, 9, "g", "m");
    edit_encode(&e, &payload);
    manifest_frame(nk_slice_make(payload.data, payload.len), &file);
    edit_free(&e);
    edit_init(&e);
    edit_del_file(&e, 0, 7);
    add_file(&e, 2, 10, "n", "q");
    nk_buf_clear(&payload);
    edit_encode(&e, &payload);
    manifest_frame(nk_slice_make(payload.data, payload.len), &file);
    edit_free(&e);
    seeds[0] = nk_memdup(file.data, file.len);
    sl[0] = file.len;
    seeds[1] = nk_memdup(payload.data, payload.len);
    sl[1] = payload.len;
    nk_buf_free(&file);
    nk_buf_free(&payload);
    *out = seeds;
    *lens = sl;
    return 2;
}
