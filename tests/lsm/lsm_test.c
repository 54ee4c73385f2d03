/*
 * lsm_test.c: unit tests of the storage engine's parts (memtable, batches,
 * version edits, picking) and of the database through its public API
 * (reads, writes, snapshots, iterators, expiry, limits, corruption).
 */
#define _GNU_SOURCE
#include "lsm/internal.h"
#include "lsm/lsm.h"
#include "testlib.h"
#include "wal/wal.h"

#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/stat.h>

/* ------------------------------------------------------------- helpers */

static uint64_t test_clock_ms = 1000000;
static uint64_t fake_clock(void *ctx)
{
    (void)ctx;
    return test_clock_ms;
}

static void small_options(struct lsm_options *o)
{
    lsm_options_default(o);
    o->write_buffer_size = 16 << 10;
    o->max_bytes_base = 64 << 10;
    o->target_file_size = 16 << 10;
    o->l0_compaction_trigger = 2;
    o->block_cache_bytes = 256 << 10;
    o->wal_sync = LSM_WAL_SYNC_OS;
    o->clock_ms = fake_clock;
}

static struct nk_slice S(const char *s)
{
    return nk_slice_str(s);
}

static bool get_str(struct lsm_db *db, const struct lsm_snapshot *snap, const char *key,
                    char *out, size_t cap)
{
    struct lsm_read_options ro = {snap};
    struct nk_buf v;
    nk_buf_init(&v);
    bool found = false;
    nk_status s = lsm_get(db, &ro, S(key), &v, &found, NULL);
    if (!nk_ok(s)) {
        fprintf(stderr, "  get %s: %s\n", key, nk_status_msg(s));
        nk_status_free(&s);
        found = false;
    }
    if (found && out) {
        size_t n = v.len < cap - 1 ? v.len : cap - 1;
        memcpy(out, v.data, n);
        out[n] = 0;
    }
    nk_buf_free(&v);
    return found;
}

static bool has_value(struct lsm_db *db, const struct lsm_snapshot *snap, const char *key,
                      const char *want)
{
    char buf[256];
    if (!get_str(db, snap, key, buf, sizeof buf))
        return want == NULL;
    return want && strcmp(buf, want) == 0;
}

/* -------------------------------------------------------------- parts */

NK_TEST(internal_keys_order_by_user_key_then_newest_first)
{
    struct nk_buf a, b, c;
    nk_buf_init(&a);
    nk_buf_init(&b);
    nk_buf_init(&c);
    ik_append(&a, S("apple"), 5, LSM_T_PUT);
    ik_append(&b, S("apple"), 9, LSM_T_DEL);
    ik_append(&c, S("apples"), 1, LSM_T_PUT);
    struct nk_slice sa = {a.data, a.len}, sb = {b.data, b.len}, sc = {c.data, c.len};
    NK_CHECK(ik_cmp(sb, sa) < 0); /* newer first */
    NK_CHECK(ik_cmp(sa, sc) < 0);
    NK_CHECK(ik_cmp(sa, sa) == 0);
    struct ikey ik;
    NK_CHECK(ik_parse(sb, &ik) && ik.seq == 9 && ik.type == LSM_T_DEL &&
             nk_slice_eq(ik.user, S("apple")));
    NK_CHECK(!ik_parse(S("short"), &ik));
    NK_CHECK(ik_cmp(S("ab"), S("abc")) < 0); /* short keys stay totally ordered */
    nk_buf_free(&a);
    nk_buf_free(&b);
    nk_buf_free(&c);
}

NK_TEST(memtable_returns_newest_version_visible_at_snapshot)
{
    struct memtable *m = mem_new(4096);
    mem_add(m, 1, LSM_T_PUT, S("k"), S("v1"), 0);
    mem_add(m, 2, LSM_T_PUT, S("k"), S("v2"), 0);
    mem_add(m, 3, LSM_T_DEL, S("k"), S(""), 0);
    mem_add(m, 4, LSM_T_PUT_EXP, S("j"), S("vj"), 777);
    unsigned type;
    struct nk_slice v;
    NK_CHECK(mem_get(m, S("k"), 1, &type, &v) && type == LSM_T_PUT && nk_slice_eq(v, S("v1")));
    NK_CHECK(mem_get(m, S("k"), 2, &type, &v) && type == LSM_T_PUT && nk_slice_eq(v, S("v2")));
    NK_CHECK(mem_get(m, S("k"), 10, &type, &v) && type == LSM_T_DEL);
    NK_CHECK(!mem_get(m, S("k"), 0, &type, &v));
    NK_CHECK(!mem_get(m, S("kk"), 10, &type, &v));
    NK_CHECK(mem_get(m, S("j"), 10, &type, &v) && type == LSM_T_PUT_EXP && v.len == 10 &&
             nk_dec_fixed64(v.data) == 777 && memcmp(v.data + 8, "vj", 2) == 0);
    /* iteration is in internal-key order */
    struct lsm_iiter *it = mem_iter_new(m);
    int n = 0;
    struct nk_buf prev;
    nk_buf_init(&prev);
    for (it->ops->seek_first(it); it->ops->valid(it); it->ops->next(it), n++) {
        struct nk_slice k = it->ops->key(it);
        if (prev.len)
            NK_CHECK(ik_cmp(nk_slice_make(prev.data, prev.len), k) < 0);
        nk_buf_clear(&prev);
        nk_buf_append(&prev, k.data, k.len);
    }
    NK_CHECK(n == 4);
    nk_buf_free(&prev);
    it->ops->free(it);
    mem_unref(m);
}

NK_TEST(memtable_keeps_random_inserts_sorted)
{
    struct memtable *m = mem_new(0);
    struct nk_rng r;
    nk_rng_seed(&r, nk_test_seed());
    for (uint64_t s = 1; s <= 5000; s++) {
        char k[32];
        snprintf(k, sizeof k, "%08llu", (unsigned long long)nk_rng_uniform(&r, 2000));
        mem_add(m, s, LSM_T_PUT, S(k), S("x"), 0);
    }
    struct lsm_iiter *it = mem_iter_new(m);
    struct nk_buf prev;
    nk_buf_init(&prev);
    int n = 0;
    bool sorted = true;
    for (it->ops->seek_first(it); it->ops->valid(it); it->ops->next(it), n++) {
        struct nk_slice k = it->ops->key(it);
        if (prev.len && ik_cmp(nk_slice_make(prev.data, prev.len), k) >= 0)
            sorted = false;
        nk_buf_clear(&prev);
        nk_buf_append(&prev, k.data, k.len);
    }
    NK_CHECK(sorted);
    NK_CHECK(n == 5000);
    nk_buf_free(&prev);
    it->ops->free(it);
    mem_unref(m);
}

struct collect {
    int n;
    char keys[8][16];
    unsigned types[8];
    uint64_t seqs[8], exps[8];
};

static void collect_fn(void *ctx, uint64_t seq, unsigned type, struct nk_slice key,
                       struct nk_slice value, uint64_t exp)
{
    struct collect *c = ctx;
    if (c->n < 8) {
        snprintf(c->keys[c->n], 16, "%.*s", (int)key.len, key.data);
        c->types[c->n] = type;
        c->seqs[c->n] = seq;
        c->exps[c->n] = exp;
    }
    c->n++;
    (void)value;
}

NK_TEST(write_batch_round_trips_and_rejects_malformed_bytes)
{
    struct lsm_batch b;
    lsm_batch_init(&b);
    NK_REQUIRE_OK(lsm_batch_put(&b, S("a"), S("1"), 0));
    NK_REQUIRE_OK(lsm_batch_delete(&b, S("b")));
    NK_REQUIRE_OK(lsm_batch_put(&b, S("c"), S("3"), 12345));
    nk_enc_fixed64(b.rep.data, 100);
    struct collect c = {0};
    uint64_t seq;
    uint32_t count;
    NK_REQUIRE_OK(lsm_batch_decode(nk_slice_make(b.rep.data, b.rep.len), &seq, &count, collect_fn,
                                   &c));
    NK_CHECK(seq == 100 && count == 3 && c.n == 3);
    NK_CHECK(strcmp(c.keys[1], "b") == 0 && c.types[1] == LSM_T_DEL && c.seqs[1] == 101);
    NK_CHECK(c.types[2] == LSM_T_PUT_EXP && c.exps[2] == 12345);
    /* every truncation is rejected */
    for (size_t n = 0; n < b.rep.len; n++) {
        nk_status s = lsm_batch_decode(nk_slice_make(b.rep.data, n), NULL, NULL, NULL, NULL);
        NK_CHECK(s.code == NK_DATA_LOSS);
        nk_status_free(&s);
    }
    lsm_batch_free(&b);
}

NK_TEST(version_edit_round_trips_and_version_apply_checks_overlap)
{
    struct nk_buf k1, k2, k3, k4;
    nk_buf_init(&k1);
    nk_buf_init(&k2);
    nk_buf_init(&k3);
    nk_buf_init(&k4);
    ik_append(&k1, S("a"), 5, LSM_T_PUT);
    ik_append(&k2, S("f"), 6, LSM_T_PUT);
    ik_append(&k3, S("g"), 7, LSM_T_PUT);
    ik_append(&k4, S("m"), 8, LSM_T_PUT);
    struct lsm_edit e, d;
    edit_init(&e);
    e.has_comparator = true;
    strcpy(e.comparator, "x");
    e.has_log_number = true;
    e.log_number = 7;
    e.has_last_seq = true;
    e.last_seq = 99;
    struct lsm_file *f1 = lsm_file_new(10, 100, nk_slice_make(k1.data, k1.len),
                                       nk_slice_make(k2.data, k2.len));
    struct lsm_file *f2 = lsm_file_new(11, 200, nk_slice_make(k3.data, k3.len),
                                       nk_slice_make(k4.data, k4.len));
    edit_add_file(&e, 1, f1);
    edit_add_file(&e, 1, f2);
    edit_del_file(&e, 2, 3);
    struct nk_buf enc;
    nk_buf_init(&enc);
    edit_encode(&e, &enc);
    NK_REQUIRE_OK(edit_decode(nk_slice_make(enc.data, enc.len), &d));
    NK_CHECK(d.has_log_number && d.log_number == 7 && d.last_seq == 99 && d.nadds == 2 &&
             d.ndels == 1 && d.adds[1].file->number == 11 && d.adds[1].file->size == 200);
    edit_free(&d);
    for (size_t n = 0; n < enc.len; n++) { /* truncations: error, never a crash */
        nk_status s = edit_decode(nk_slice_make(enc.data, n), &d);
        nk_status_free(&s);
        edit_free(&d);
    }
    /* applying: the delete names a missing table */
    struct lsm_version *base = version_new_empty(), *v = NULL;
    nk_status s = version_apply(base, &e, &v);
    NK_CHECK(s.code == NK_DATA_LOSS);
    nk_status_free(&s);
    e.ndels = 0;
    NK_REQUIRE_OK(version_apply(base, &e, &v));
    NK_CHECK(v->nfiles[1] == 2 && v->files[1][0]->number == 10);
    NK_CHECK(version_find_file(v, 1, nk_slice_make(k3.data, k3.len)) == 1);
    /* a third table overlapping [a, f] in L1 is refused */
    struct lsm_edit e2;
    edit_init(&e2);
    struct lsm_file *f3 = lsm_file_new(12, 1, nk_slice_make(k2.data, k2.len),
                                       nk_slice_make(k3.data, k3.len));
    edit_add_file(&e2, 1, f3);
    struct lsm_version *v2 = NULL;
    s = version_apply(v, &e2, &v2);
    NK_CHECK(s.code == NK_DATA_LOSS);
    nk_status_free(&s);
    /* ...but fine in L0, newest first */
    e2.adds[0].level = 0;
    NK_REQUIRE_OK(version_apply(v, &e2, &v2));
    NK_CHECK(v2->nfiles[0] == 1 && v2->nfiles[1] == 2);
    version_unref(v2);
    edit_free(&e2);
    lsm_file_unref(f3);
    version_unref(v);
    version_unref(base);
    edit_free(&e);
    lsm_file_unref(f1);
    lsm_file_unref(f2);
    nk_buf_free(&enc);
    nk_buf_free(&k1);
    nk_buf_free(&k2);
    nk_buf_free(&k3);
    nk_buf_free(&k4);
}

static nk_status count_cb(void *c, struct nk_slice p)
{
    (void)p;
    (**(int **)c)++;
    return NK_OK;
}

NK_TEST(manifest_parse_ignores_torn_tail_but_reports_damage_before_it)
{
    struct nk_buf f;
    nk_buf_init(&f);
    manifest_frame(S("first"), &f);
    size_t one = f.len;
    manifest_frame(S("second"), &f);
    int calls = 0;
    bool torn;
    int *ctx = &calls;
    NK_REQUIRE_OK(manifest_parse(nk_slice_make(f.data, f.len), "m", count_cb, &ctx, &torn));
    NK_CHECK(calls == 2 && !torn);
    calls = 0;
    NK_REQUIRE_OK(manifest_parse(nk_slice_make(f.data, f.len - 2), "m", count_cb, &ctx, &torn));
    NK_CHECK(calls == 1 && torn);
    f.data[3] ^= 1; /* damage the first record, followed by the second */
    calls = 0;
    nk_status s = manifest_parse(nk_slice_make(f.data, f.len), "m", count_cb, &ctx, &torn);
    NK_CHECK(s.code == NK_DATA_LOSS && calls == 0);
    nk_status_free(&s);
    (void)one;
    nk_buf_free(&f);
}

NK_TEST(picking_scores_levels_and_chooses_overlapping_inputs)
{
    struct lsm_pick_options po = {.l0_trigger = 4, .max_bytes_base = 1000, .ratio = 10};
    NK_CHECK(pick_max_bytes(&po, 1) == 1000 && pick_max_bytes(&po, 3) == 100000);
    struct lsm_version *v = version_new_empty();
    NK_CHECK(pick_level(v, &po, NULL) == -1);
    struct lsm_edit e;
    edit_init(&e);
    struct nk_buf a, b;
    nk_buf_init(&a);
    nk_buf_init(&b);
    /* four L0 tables over [k0, k9], one L1 table [k5, k6], one L1 [x, y] */
    for (int i = 0; i < 4; i++) {
        nk_buf_clear(&a);
        nk_buf_clear(&b);
        ik_append(&a, S("k0"), 10 + i, LSM_T_PUT);
        ik_append(&b, S("k9"), 10 + i, LSM_T_PUT);
        struct lsm_file *f = lsm_file_new(20 + i, 10, nk_slice_make(a.data, a.len),
                                          nk_slice_make(b.data, b.len));
        edit_add_file(&e, 0, f);
        lsm_file_unref(f);
    }
    const char *l1[][2] = {{"k5", "k6"}, {"x", "y"}};
    for (int i = 0; i < 2; i++) {
        nk_buf_clear(&a);
        nk_buf_clear(&b);
        ik_append(&a, S(l1[i][0]), 1, LSM_T_PUT);
        ik_append(&b, S(l1[i][1]), 1, LSM_T_PUT);
        struct lsm_file *f = lsm_file_new(30 + i, 600, nk_slice_make(a.data, a.len),
                                          nk_slice_make(b.data, b.len));
        edit_add_file(&e, 1, f);
        lsm_file_unref(f);
    }
    struct lsm_version *v2;
    NK_REQUIRE_OK(version_apply(v, &e, &v2));
    double score;
    NK_CHECK(pick_level(v2, &po, &score) == 1 && score > 1.1); /* L1 1200/1000 beats L0 4/4 */
    struct lsm_compaction c;
    pick_compaction(v2, 0, nk_slice_make(NULL, 0), &c);
    NK_CHECK(c.nin[0] == 4 && c.nin[1] == 1 && c.in[1][0]->number == 30 && !c.trivial_move);
    compaction_free(&c);
    pick_compaction(v2, 1, nk_slice_make(NULL, 0), &c);
    NK_CHECK(c.nin[0] == 1 && c.in[0][0]->number == 30 && c.nin[1] == 0 && c.trivial_move);
    compaction_free(&c);
    /* round robin: after [k5,k6] comes [x,y] */
    pick_compaction(v2, 1, nk_slice_make(v2->files[1][0]->largest.data,
                                         v2->files[1][0]->largest.len),
                    &c);
    NK_CHECK(c.nin[0] == 1 && c.in[0][0]->number == 31);
    compaction_free(&c);
    struct nk_slice lo = S("w"), hi = S("z");
    NK_CHECK(pick_range(v2, 1, &lo, &hi, &c) && c.nin[0] == 1 && c.in[0][0]->number == 31);
    compaction_free(&c);
    hi = S("w0");
    NK_CHECK(!pick_range(v2, 1, &lo, &hi, &c));
    version_unref(v2);
    version_unref(v);
    edit_free(&e);
    nk_buf_free(&a);
    nk_buf_free(&b);
}

/* ----------------------------------------------------------- database */

NK_TEST(puts_deletes_and_overwrites_survive_flush_compaction_and_reopen)
{
    const char *dir = nk_test_tmpdir();
    struct lsm_options o;
    small_options(&o);
    struct lsm_db *db;
    NK_REQUIRE_OK(lsm_open(dir, &o, &db));
    char k[32], v[64];
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < 2000; i++) {
            snprintf(k, sizeof k, "key%05d", i);
            snprintf(v, sizeof v, "value-%d-%d", i, round);
            NK_REQUIRE_OK(lsm_put(db, NULL, S(k), S(v), 0));
        }
    }
    for (int i = 0; i < 2000; i += 3) {
        snprintf(k, sizeof k, "key%05d", i);
        NK_REQUIRE_OK(lsm_delete(db, NULL, S(k)));
    }
    NK_REQUIRE_OK(lsm_flush(db));
    for (int reopen = 0; reopen < 2; reopen++) {
        int bad = 0;
        for (int i = 0; i < 2000; i++) {
            snprintf(k, sizeof k, "key%05d", i);
            snprintf(v, sizeof v, "value-%d-2", i);
            if (!has_value(db, NULL, k, i % 3 == 0 ? NULL : v))
                bad++;
        }
        NK_CHECK(bad == 0);
        struct lsm_stats st;
        lsm_get_stats(db, &st);
        NK_CHECK(st.flushes > 0 || reopen > 0);
        lsm_close(db);
        NK_REQUIRE_OK(lsm_open(dir, &o, &db));
    }
    NK_REQUIRE_OK(lsm_compact_range(db, NULL, NULL));
    struct lsm_stats st;
    lsm_get_stats(db, &st);
    NK_CHECK(st.level[0].files == 0);
    uint64_t live = 0;
    for (int l = 0; l < LSM_NUM_LEVELS; l++)
        live += st.level[l].files;
    NK_CHECK(live > 0);
    int bad = 0;
    for (int i = 0; i < 2000; i++) {
        snprintf(k, sizeof k, "key%05d", i);
        snprintf(v, sizeof v, "value-%d-2", i);
        if (!has_value(db, NULL, k, i % 3 == 0 ? NULL : v))
            bad++;
    }
    NK_CHECK(bad == 0);
    lsm_close(db);
}

NK_TEST(snapshot_sees_state_at_its_creation_through_flush_and_compaction)
{
    const char *dir = nk_test_tmpdir();
    struct lsm_options o;
    small_options(&o);
    struct lsm_db *db;
    NK_REQUIRE_OK(lsm_open(dir, &o, &db));
    NK_REQUIRE_OK(lsm_put(db, NULL, S("a"), S("1"), 0));
    NK_REQUIRE_OK(lsm_put(db, NULL, S("b"), S("1"), 0));
    const struct lsm_snapshot *s1 = lsm_snapshot_new(db);
    NK_REQUIRE_OK(lsm_put(db, NULL, S("a"), S("2"), 0));
    NK_REQUIRE_OK(lsm_delete(db, NULL, S("b")));
    NK_REQUIRE_OK(lsm_put(db, NULL, S("c"), S("2"), 0));
    for (int step = 0; step < 3; step++) {
        NK_CHECK(has_value(db, s1, "a", "1"));
        NK_CHECK(has_value(db, s1, "b", "1"));
        NK_CHECK(has_value(db, s1, "c", NULL));
        NK_CHECK(has_value(db, NULL, "a", "2"));
        NK_CHECK(has_value(db, NULL, "b", NULL));
        NK_CHECK(has_value(db, NULL, "c", "2"));
        if (step == 0)
            NK_REQUIRE_OK(lsm_flush(db));
        else
            NK_REQUIRE_OK(lsm_compact_range(db, NULL, NULL));
    }
    /* an iterator at the snapshot */
    struct lsm_iter_options io = {.snapshot = s1};
    struct lsm_iter *it;
    NK_REQUIRE_OK(lsm_iter_new(db, &io, &it));
    int n = 0;
    for (lsm_iter_seek_first(it); lsm_iter_valid(it); lsm_iter_next(it))
        n++;
    NK_CHECK(n == 2);
    lsm_iter_free(it);
    lsm_snapshot_release(db, s1);
    NK_REQUIRE_OK(lsm_compact_range(db, NULL, NULL));
    NK_CHECK(has_value(db, NULL, "a", "2"));
    NK_CHECK(has_value(db, NULL, "b", NULL));
    lsm_close(db);
}

NK_TEST(batch_is_applied_whole_with_consecutive_sequences)
{
    const char *dir = nk_test_tmpdir();
    struct lsm_options o;
    small_options(&o);
    struct lsm_db *db;
    NK_REQUIRE_OK(lsm_open(dir, &o, &db));
    uint64_t before = lsm_last_sequence(db);
    struct lsm_batch b;
    lsm_batch_init(&b);
    NK_REQUIRE_OK(lsm_batch_put(&b, S("x"), S("1"), 0));
    NK_REQUIRE_OK(lsm_batch_put(&b, S("y"), S("2"), 0));
    NK_REQUIRE_OK(lsm_batch_delete(&b, S("x")));
    NK_REQUIRE_OK(lsm_batch_put(&b, S("z"), S("3"), 0));
    NK_REQUIRE_OK(lsm_write(db, NULL, &b));
    NK_CHECK(lsm_last_sequence(db) == before + 4);
    NK_CHECK(lsm_batch_sequence(&b) == before + 1);
    NK_CHECK(has_value(db, NULL, "x", NULL)); /* later record in the batch wins */
    NK_CHECK(has_value(db, NULL, "y", "2"));
    NK_CHECK(has_value(db, NULL, "z", "3"));
    lsm_batch_free(&b);
    lsm_close(db);
    NK_REQUIRE_OK(lsm_open(dir, &o, &db)); /* from the WAL */
    NK_CHECK(has_value(db, NULL, "x", NULL));
    NK_CHECK(has_value(db, NULL, "y", "2"));
    NK_CHECK(lsm_last_sequence(db) == before + 4);
    lsm_close(db);
}

/*
 * The subtle expiry case: an expired newer version must keep hiding an older
 * live version in a lower level until both are gone, through every partial
 * compaction and a reopen.
 */
NK_TEST(expired_value_never_resurrects_older_version_below_it)
{
    const char *dir = nk_test_tmpdir();
    struct lsm_options o;
    small_options(&o);
    struct lsm_db *db;
    test_clock_ms = 1000000;
    NK_REQUIRE_OK(lsm_open(dir, &o, &db));
    NK_REQUIRE_OK(lsm_put(db, NULL, S("k"), S("old"), 0));
    NK_REQUIRE_OK(lsm_put(db, NULL, S("other"), S("o"), 0));
    NK_REQUIRE_OK(lsm_compact_range(db, NULL, NULL)); /* old version down in L1 */
    NK_REQUIRE_OK(lsm_put(db, NULL, S("k"), S("new"), test_clock_ms + 50));
    uint64_t exp = 0;
    struct nk_buf v;
    nk_buf_init(&v);
    bool found;
    NK_REQUIRE_OK(lsm_get(db, NULL, S("k"), &v, &found, &exp));
    NK_CHECK(found && exp == test_clock_ms + 50 && v.len == 3);
    NK_REQUIRE_OK(lsm_flush(db)); /* new version in L0 */
    test_clock_ms += 100;         /* now expired */
    NK_CHECK(has_value(db, NULL, "k", NULL));
    /* push the expired version down one level only: L0 -> L1 (k's old version is in L1
     * too, so that one goes; fill a deeper level first to make it interesting) */
    struct nk_slice lo = S("k"), hi = S("k");
    NK_REQUIRE_OK(lsm_compact_range(db, &lo, &hi));
    NK_CHECK(has_value(db, NULL, "k", NULL));
    NK_CHECK(has_value(db, NULL, "other", "o"));
    lsm_close(db);
    NK_REQUIRE_OK(lsm_open(dir, &o, &db));
    NK_CHECK(has_value(db, NULL, "k", NULL));
    struct lsm_iter *it;
    NK_REQUIRE_OK(lsm_iter_new(db, NULL, &it));
    lsm_iter_seek_first(it);
    NK_CHECK(lsm_iter_valid(it) && nk_slice_eq(lsm_iter_key(it), S("other")));
    lsm_iter_next(it);
    NK_CHECK(!lsm_iter_valid(it));
    lsm_iter_free(it);
    nk_buf_free(&v);
    lsm_close(db);
}

/* Same, but with the older version two levels below and a flush-only path. */
NK_TEST(expired_value_shadows_older_versions_across_levels_until_all_dropped)
{
    const char *dir = nk_test_tmpdir();
    struct lsm_options o;
    small_options(&o);
    o.l0_compaction_trigger = 8; /* keep L0 tables where the test puts them */
    o.l0_stop_trigger = 30;
    struct lsm_db *db;
    test_clock_ms = 5000000;
    NK_REQUIRE_OK(lsm_open(dir, &o, &db));
    char k[32], val[200];
    memset(val, 'v', sizeof val - 1);
    val[sizeof val - 1] = 0;
    for (int i = 0; i < 400; i++) { /* old versions, compacted to the bottom */
        snprintf(k, sizeof k, "k%04d", i);
        NK_REQUIRE_OK(lsm_put(db, NULL, S(k), S(val), 0));
    }
    NK_REQUIRE_OK(lsm_compact_range(db, NULL, NULL));
    for (int i = 0; i < 400; i += 2) { /* newer, expiring versions of half of them */
        snprintf(k, sizeof k, "k%04d", i);
        NK_REQUIRE_OK(lsm_put(db, NULL, S(k), S("new"), test_clock_ms + 10));
    }
    NK_REQUIRE_OK(lsm_flush(db));
    test_clock_ms += 20;
    for (int pass = 0; pass < 3; pass++) {
        int bad = 0;
        for (int i = 0; i < 400; i++) {
            snprintf(k, sizeof k, "k%04d", i);
            if (!has_value(db, NULL, k, i % 2 ? val : NULL))
                bad++;
        }
        NK_CHECK(bad == 0);
        int n = 0;
        struct lsm_iter *it;
        NK_REQUIRE_OK(lsm_iter_new(db, NULL, &it));
        for (lsm_iter_seek_first(it); lsm_iter_valid(it); lsm_iter_next(it))
            n++;
        lsm_iter_free(it);
        NK_CHECK(n == 200);
        if (pass == 0) { /* partial: the first quarter only */
            struct nk_slice lo = S("k0000"), hi = S("k0100");
            NK_REQUIRE_OK(lsm_compact_range(db, &lo, &hi));
        } else {
            NK_REQUIRE_OK(lsm_compact_range(db, NULL, NULL));
        }
    }
    lsm_close(db);
}

NK_TEST(compaction_to_the_bottom_drops_expired_deleted_and_overwritten_records)
{
    const char *dir = nk_test_tmpdir();
    struct lsm_options o;
    small_options(&o);
    struct lsm_db *db;
    test_clock_ms = 9000000;
    NK_REQUIRE_OK(lsm_open(dir, &o, &db));
    char k[32], v[128];
    memset(v, 'v', sizeof v - 1);
    v[sizeof v - 1] = 0;
    for (int round = 0; round < 3; round++) { /* overwritten versions */
        for (int i = 0; i < 300; i++) {
            snprintf(k, sizeof k, "k%04d", i);
            NK_REQUIRE_OK(lsm_put(db, NULL, S(k), S(v), i % 2 ? test_clock_ms + 100 : 0));
        }
        NK_REQUIRE_OK(lsm_flush(db));
    }
    /* a snapshot from before the deletes keeps what it can see */
    const struct lsm_snapshot *snap = lsm_snapshot_new(db);
    for (int i = 0; i < 300; i += 2) { /* the others are deleted */
        snprintf(k, sizeof k, "k%04d", i);
        NK_REQUIRE_OK(lsm_delete(db, NULL, S(k)));
    }
    NK_REQUIRE_OK(lsm_flush(db));
    struct lsm_stats st;
    lsm_get_stats(db, &st);
    uint64_t before = 0;
    for (int l = 0; l < LSM_NUM_LEVELS; l++)
        before += st.level[l].bytes;
    NK_CHECK(before > 300 * 100);
    test_clock_ms += 1000; /* every expiring value is now expired */
    NK_REQUIRE_OK(lsm_compact_range(db, NULL, NULL));
    NK_CHECK(has_value(db, snap, "k0000", v)); /* deleted after the snapshot */
    NK_CHECK(has_value(db, NULL, "k0000", NULL));
    NK_CHECK(has_value(db, snap, "k0001", NULL)); /* expired: gone at every snapshot */
    lsm_get_stats(db, &st);
    uint64_t with_snapshot = 0;
    for (int l = 0; l < LSM_NUM_LEVELS; l++)
        with_snapshot += st.level[l].bytes;
    NK_CHECK(with_snapshot > 150 * 100); /* the snapshot pins the deleted keys' values */
    lsm_snapshot_release(db, snap);
    NK_REQUIRE_OK(lsm_compact_range(db, NULL, NULL));
    lsm_get_stats(db, &st);
    uint32_t files = 0;
    for (int l = 0; l < LSM_NUM_LEVELS; l++)
        files += st.level[l].files;
    NK_CHECK(files == 0); /* nothing live is left: every table is gone */
    struct lsm_iter *it;
    NK_REQUIRE_OK(lsm_iter_new(db, NULL, &it));
    lsm_iter_seek_first(it);
    NK_CHECK(!lsm_iter_valid(it));
    lsm_iter_free(it);
    lsm_close(db);
}

NK_TEST(iterator_honours_bounds_prefix_seek_and_hides_deleted_keys)
{
    const char *dir = nk_test_tmpdir();
    struct lsm_options o;
    small_options(&o);
    struct lsm_db *db;
    NK_REQUIRE_OK(lsm_open(dir, &o, &db));
    /* shard-prefixed keys as the server writes them: big-endian u16 + key */
    for (int shard = 0; shard < 3; shard++) {
        for (int i = 0; i < 300; i++) {
            uint8_t key[16];
            nk_enc_be16(key, (uint16_t)(shard == 2 ? 0x01ff : shard));
            int n = snprintf((char *)key + 2, sizeof key - 2, "k%04d", i);
            NK_REQUIRE_OK(lsm_put(db, NULL, nk_slice_make(key, 2 + (size_t)n), S("v"), 0));
            if (i % 10 == 0 && shard == 1)
                NK_REQUIRE_OK(lsm_delete(db, NULL, nk_slice_make(key, 2 + (size_t)n)));
        }
        if (shard == 0)
            NK_REQUIRE_OK(lsm_flush(db));
    }
    uint8_t p1[2];
    nk_enc_be16(p1, 1);
    struct lsm_iter_options io = {.prefix = nk_slice_make(p1, 2)};
    struct lsm_iter *it;
    NK_REQUIRE_OK(lsm_iter_new(db, &io, &it));
    int n = 0;
    bool ok = true;
    for (lsm_iter_seek_first(it); lsm_iter_valid(it); lsm_iter_next(it)) {
        struct nk_slice k = lsm_iter_key(it);
        ok &= k.len == 7 && k.data[0] == 0 && k.data[1] == 1;
        n++;
    }
    NK_CHECK(ok);
    NK_CHECK(n == 270);
    /* seek inside the prefix */
    uint8_t target[16];
    nk_enc_be16(target, 1);
    memcpy(target + 2, "k0150", 5);
    lsm_iter_seek(it, nk_slice_make(target, 7));
    NK_CHECK(lsm_iter_valid(it) && memcmp(lsm_iter_key(it).data + 2, "k0151", 5) == 0);
    /* seeking before the prefix lands on its first key */
    lsm_iter_seek(it, S(""));
    NK_CHECK(lsm_iter_valid(it) && memcmp(lsm_iter_key(it).data + 2, "k0001", 5) == 0);
    lsm_iter_free(it);
    /* explicit bounds: [shard0 k0100, shard0 k0200) */
    uint8_t lo[7], hi[7];
    nk_enc_be16(lo, 0);
    memcpy(lo + 2, "k0100", 5);
    nk_enc_be16(hi, 0);
    memcpy(hi + 2, "k0200", 5);
    struct lsm_iter_options io2 = {.lower = nk_slice_make(lo, 7), .upper = nk_slice_make(hi, 7)};
    NK_REQUIRE_OK(lsm_iter_new(db, &io2, &it));
    n = 0;
    for (lsm_iter_seek_first(it); lsm_iter_valid(it); lsm_iter_next(it))
        n++;
    NK_CHECK(n == 100);
    lsm_iter_free(it);
    lsm_close(db);
}

NK_TEST(empty_and_maximum_keys_and_values_work_and_oversized_are_rejected)
{
    const char *dir = nk_test_tmpdir();
    struct lsm_options o;
    small_options(&o);
    struct lsm_db *db;
    NK_REQUIRE_OK(lsm_open(dir, &o, &db));
    NK_REQUIRE_OK(lsm_put(db, NULL, S(""), S(""), 0));
    uint8_t *bigk = nk_malloc(LSM_MAX_KEY + 1);
    memset(bigk, 'K', LSM_MAX_KEY + 1);
    uint8_t *bigv = nk_malloc(LSM_MAX_VALUE + 1);
    for (size_t i = 0; i < LSM_MAX_VALUE + 1; i++)
        bigv[i] = (uint8_t)(i * 7);
    NK_REQUIRE_OK(lsm_put(db, NULL, nk_slice_make(bigk, LSM_MAX_KEY), S("maxkey"), 0));
    NK_REQUIRE_OK(lsm_put(db, NULL, S("bigvalue"), nk_slice_make(bigv, LSM_MAX_VALUE), 0));
    nk_status s = lsm_put(db, NULL, nk_slice_make(bigk, LSM_MAX_KEY + 1), S("x"), 0);
    NK_CHECK(s.code == NK_INVALID_ARGUMENT && strstr(nk_status_msg(s), "key of"));
    nk_status_free(&s);
    s = lsm_put(db, NULL, S("v"), nk_slice_make(bigv, LSM_MAX_VALUE + 1), 0);
    NK_CHECK(s.code == NK_INVALID_ARGUMENT && strstr(nk_status_msg(s), "value of"));
    nk_status_free(&s);
    struct nk_buf v;
    nk_buf_init(&v);
    for (int pass = 0; pass < 3; pass++) {
        bool found;
        NK_REQUIRE_OK(lsm_get(db, NULL, S(""), &v, &found, NULL));
        NK_CHECK(found && v.len == 0);
        NK_REQUIRE_OK(lsm_get(db, NULL, nk_slice_make(bigk, LSM_MAX_KEY), &v, &found, NULL));
        NK_CHECK(found && nk_slice_eq(nk_slice_make(v.data, v.len), S("maxkey")));
        NK_REQUIRE_OK(lsm_get(db, NULL, S("bigvalue"), &v, &found, NULL));
        NK_CHECK(found && v.len == LSM_MAX_VALUE && memcmp(v.data, bigv, LSM_MAX_VALUE) == 0);
        s = lsm_get(db, NULL, nk_slice_make(bigk, LSM_MAX_KEY + 1), &v, &found, NULL);
        NK_CHECK(s.code == NK_INVALID_ARGUMENT);
        nk_status_free(&s);
        if (pass == 0) {
            NK_REQUIRE_OK(lsm_flush(db));
        } else {
            lsm_close(db);
            NK_REQUIRE_OK(lsm_open(dir, &o, &db));
            NK_REQUIRE_OK(lsm_compact_range(db, NULL, NULL));
        }
    }
    nk_buf_free(&v);
    free(bigk);
    free(bigv);
    lsm_close(db);
}

NK_TEST(writes_that_skip_the_wal_survive_a_clean_close_and_advance_persisted_sequence)
{
    const char *dir = nk_test_tmpdir();
    struct lsm_options o;
    small_options(&o);
    struct lsm_db *db;
    NK_REQUIRE_OK(lsm_open(dir, &o, &db));
    struct lsm_write_options wo = {.skip_wal = true};
    NK_REQUIRE_OK(lsm_put(db, &wo, S("applied"), S("42"), 0));
    NK_CHECK(lsm_persisted_sequence(db) < lsm_last_sequence(db));
    NK_REQUIRE_OK(lsm_flush(db));
    NK_CHECK(lsm_persisted_sequence(db) == lsm_last_sequence(db));
    NK_REQUIRE_OK(lsm_put(db, &wo, S("applied"), S("43"), 0));
    lsm_close(db);
    NK_REQUIRE_OK(lsm_open(dir, &o, &db));
    NK_CHECK(has_value(db, NULL, "applied", "43"));
    lsm_close(db);
}

/* Recovery replays from the log position where the oldest unflushed memtable
 * begins, which may be mid-segment, and follows the log into later segments. */
NK_TEST(wal_replay_starts_mid_segment_and_crosses_segment_boundaries)
{
    const char *dir = nk_test_tmpdir();
    struct lsm_options o;
    small_options(&o);
    o.write_buffer_size = 2 << 20; /* WAL segments of 4 MiB */
    struct lsm_db *db;
    NK_REQUIRE_OK(lsm_open(dir, &o, &db));
    char k[32];
    uint8_t v[1000];
    for (int i = 0; i < 4700; i++) {
        snprintf(k, sizeof k, "key%06d", i);
        memset(v, 'a' + i % 26, sizeof v);
        NK_REQUIRE_OK(lsm_put(db, NULL, S(k), nk_slice_make(v, sizeof v), 0));
    }
    lsm_close(db);
    NK_REQUIRE_OK(lsm_open(dir, &o, &db));
    struct nk_buf got;
    nk_buf_init(&got);
    int bad = 0;
    for (int i = 0; i < 4700; i++) {
        snprintf(k, sizeof k, "key%06d", i);
        memset(v, 'a' + i % 26, sizeof v);
        bool found;
        NK_REQUIRE_OK(lsm_get(db, NULL, S(k), &got, &found, NULL));
        if (!found || !nk_slice_eq(nk_slice_make(got.data, got.len), nk_slice_make(v, sizeof v)))
            bad++;
    }
    NK_CHECK(bad == 0);
    nk_buf_free(&got);
    lsm_close(db);
}

struct conc {
    struct lsm_db *db;
    atomic_bool stop;
    atomic_int errors;
    atomic_long reads;
};

/* Each batch writes x<i> and y<i> to the same value: a reader at a snapshot
 * must always find them equal (or both absent). */
static void *conc_reader(void *arg)
{
    struct conc *c = arg;
    struct nk_rng r;
    nk_rng_seed(&r, (uint64_t)(uintptr_t)&r);
    struct nk_buf a, b;
    nk_buf_init(&a);
    nk_buf_init(&b);
    while (!atomic_load(&c->stop)) {
        const struct lsm_snapshot *snap = lsm_snapshot_new(c->db);
        struct lsm_read_options ro = {snap};
        char kx[16], ky[16];
        int i = (int)nk_rng_uniform(&r, 64);
        snprintf(kx, sizeof kx, "x%02d", i);
        snprintf(ky, sizeof ky, "y%02d", i);
        bool fa, fb;
        nk_status s1 = lsm_get(c->db, &ro, S(kx), &a, &fa, NULL);
        nk_status s2 = lsm_get(c->db, &ro, S(ky), &b, &fb, NULL);
        if (!nk_ok(s1) || !nk_ok(s2) || fa != fb ||
            (fa && !nk_slice_eq(nk_slice_make(a.data, a.len), nk_slice_make(b.data, b.len))))
            atomic_fetch_add(&c->errors, 1);
        nk_status_free(&s1);
        nk_status_free(&s2);
        if (nk_rng_chance(&r, 1, 8)) { /* an iterator sees x and y rows pairwise equal */
            struct lsm_iter_options io = {.snapshot = snap};
            struct lsm_iter *it;
            if (nk_ok(lsm_iter_new(c->db, &io, &it))) {
                int nx = 0, ny = 0;
                for (lsm_iter_seek_first(it); lsm_iter_valid(it); lsm_iter_next(it))
                    lsm_iter_key(it).data[0] == 'x' ? nx++ : ny++;
                if (nx != ny)
                    atomic_fetch_add(&c->errors, 1);
                lsm_iter_free(it);
            }
        }
        lsm_snapshot_release(c->db, snap);
        atomic_fetch_add(&c->reads, 1);
    }
    nk_buf_free(&a);
    nk_buf_free(&b);
    return NULL;
}

NK_TEST(concurrent_readers_see_whole_batches_while_writer_flushes_and_compacts)
{
    const char *dir = nk_test_tmpdir();
    struct lsm_options o;
    small_options(&o);
    struct conc c;
    NK_REQUIRE_OK(lsm_open(dir, &o, &c.db));
    atomic_init(&c.stop, false);
    atomic_init(&c.errors, 0);
    atomic_init(&c.reads, 0);
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
        pthread_create(&th[i], NULL, conc_reader, &c);
    struct lsm_batch b;
    lsm_batch_init(&b);
    uint64_t t_end = nk_mono_ms() + 1500;
    int n = 0;
    while (nk_mono_ms() < t_end) {
        char kx[16], ky[16], v[64];
        int i = n % 64;
        snprintf(kx, sizeof kx, "x%02d", i);
        snprintf(ky, sizeof ky, "y%02d", i);
        lsm_batch_clear(&b);
        if (n % 7 == 3) {
            NK_REQUIRE_OK(lsm_batch_delete(&b, S(kx)));
            NK_REQUIRE_OK(lsm_batch_delete(&b, S(ky)));
        } else {
            snprintf(v, sizeof v, "value-%d-padding-padding-padding", n);
            NK_REQUIRE_OK(lsm_batch_put(&b, S(kx), S(v), 0));
            NK_REQUIRE_OK(lsm_batch_put(&b, S(ky), S(v), 0));
        }
        NK_REQUIRE_OK(lsm_write(c.db, NULL, &b));
        n++;
    }
    atomic_store(&c.stop, true);
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    lsm_batch_free(&b);
    struct lsm_stats st;
    lsm_get_stats(c.db, &st);
    fprintf(stderr, "  %d batches, %ld reads, %llu flushes, %llu compactions\n", n,
            (long)atomic_load(&c.reads), (unsigned long long)st.flushes,
            (unsigned long long)st.compactions);
    NK_CHECK(atomic_load(&c.errors) == 0);
    NK_CHECK(st.flushes > 0);
    lsm_close(c.db);
}

struct stalled_writer {
    struct lsm_db *db;
    atomic_int done;
    nk_status s;
};

static void *stalled_writer_main(void *arg)
{
    struct stalled_writer *w = arg;
    w->s = lsm_put(w->db, NULL, S("blocked"), S("x"), 0);
    atomic_store(&w->done, 1);
    return NULL;
}

NK_TEST(full_memtables_stall_writes_or_fail_them_with_resource_exhausted)
{
    const char *dir = nk_test_tmpdir();
    struct lsm_options o;
    small_options(&o);
    o.write_buffer_size = 4096;
    o.max_immutable = 1;
    struct lsm_db *db;
    NK_REQUIRE_OK(lsm_open(dir, &o, &db));
    lsm_pause_background(db, true);
    struct lsm_write_options nostall = {.no_stall = true};
    char k[32];
    nk_status s = NK_OK;
    int accepted = 0;
    for (int i = 0; i < 1000 && nk_ok(s); i++) {
        snprintf(k, sizeof k, "key%04d", i);
        s = lsm_put(db, &nostall, S(k), S("value-value-value-value-value-value"), 0);
        if (nk_ok(s))
            accepted++;
    }
    NK_CHECK(s.code == NK_RESOURCE_EXHAUSTED);
    NK_CHECK(strstr(nk_status_msg(s), "immutable memtables") != NULL);
    nk_status_free(&s);
    NK_CHECK(accepted > 10 && accepted < 1000); /* two memtables' worth */
    /* without no_stall a write waits until the background thread makes room */
    struct stalled_writer w = {db, 0, NK_OK};
    pthread_t th;
    pthread_create(&th, NULL, stalled_writer_main, &w);
    nk_sleep_us(200000);
    NK_CHECK(atomic_load(&w.done) == 0);
    lsm_pause_background(db, false);
    pthread_join(th, NULL);
    NK_CHECK(nk_ok(w.s));
    nk_status_free(&w.s);
    struct lsm_stats st;
    lsm_get_stats(db, &st);
    NK_CHECK(st.write_stalls >= 1);
    NK_CHECK(has_value(db, NULL, "blocked", "x"));
    NK_CHECK(has_value(db, NULL, "key0000", "value-value-value-value-value-value"));
    lsm_close(db);
}

NK_TEST(second_open_of_the_same_directory_is_refused)
{
    const char *dir = nk_test_tmpdir();
    struct lsm_options o;
    small_options(&o);
    struct lsm_db *db, *db2 = NULL;
    NK_REQUIRE_OK(lsm_open(dir, &o, &db));
    nk_status s = lsm_open(dir, &o, &db2);
    NK_CHECK(s.code == NK_FAILED_PRECONDITION);
    nk_status_free(&s);
    lsm_close(db);
    /* and a missing database without create_if_missing is NOT_FOUND */
    char missing[1200];
    snprintf(missing, sizeof missing, "%.1000s/nope", dir);
    o.create_if_missing = false;
    s = lsm_open(missing, &o, &db2);
    NK_CHECK(s.code == NK_NOT_FOUND);
    nk_status_free(&s);
}

/* --------------------------------------------------------- corruption */

static char *find_file(const char *dir, const char *suffix)
{
    DIR *d = opendir(dir);
    if (!d)
        return NULL;
    struct dirent *e;
    char *best = NULL;
    while ((e = readdir(d))) {
        size_t n = strlen(e->d_name), sl = strlen(suffix);
        if (n > sl && strcmp(e->d_name + n - sl, suffix) == 0) {
            char *p = nk_malloc(strlen(dir) + n + 2);
            sprintf(p, "%s/%s", dir, e->d_name);
            if (!best || strcmp(p, best) > 0) {
                free(best);
                best = p;
            } else {
                free(p);
            }
        }
    }
    closedir(d);
    return best;
}

static int count_files(const char *dir, const char *suffix)
{
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d))) {
        size_t l = strlen(e->d_name), sl = strlen(suffix);
        n += l > sl && strcmp(e->d_name + l - sl, suffix) == 0;
    }
    if (d)
        closedir(d);
    return n;
}

NK_TEST(replaced_tables_stay_readable_by_open_iterators_and_are_removed_after)
{
    const char *dir = nk_test_tmpdir();
    struct lsm_options o;
    small_options(&o);
    struct lsm_db *db;
    NK_REQUIRE_OK(lsm_open(dir, &o, &db));
    char k[32];
    for (int i = 0; i < 500; i++) {
        snprintf(k, sizeof k, "key%05d", i);
        NK_REQUIRE_OK(lsm_put(db, NULL, S(k), S("first-version-of-the-value"), 0));
    }
    NK_REQUIRE_OK(lsm_flush(db));
    struct lsm_iter *it;
    NK_REQUIRE_OK(lsm_iter_new(db, NULL, &it));
    lsm_iter_seek_first(it);
    for (int i = 0; i < 500; i++) {
        snprintf(k, sizeof k, "key%05d", i);
        NK_REQUIRE_OK(lsm_put(db, NULL, S(k), S("second"), 0));
    }
    NK_REQUIRE_OK(lsm_compact_range(db, NULL, NULL)); /* replaces every table */
    struct lsm_stats st;
    lsm_get_stats(db, &st);
    uint32_t live = 0;
    for (int l = 0; l < LSM_NUM_LEVELS; l++)
        live += st.level[l].files;
    NK_CHECK(count_files(dir, ".sst") > (int)live); /* the iterator holds old ones */
    int n = 0;
    bool old_values = true;
    for (; lsm_iter_valid(it); lsm_iter_next(it), n++)
        old_values &= nk_slice_eq(lsm_iter_value(it), S("first-version-of-the-value"));
    NK_CHECK(n == 500 && old_values);
    nk_status s = lsm_iter_status(it);
    NK_CHECK(nk_ok(s));
    nk_status_free(&s);
    lsm_iter_free(it);
    NK_CHECK(count_files(dir, ".sst") == (int)live); /* released: removed */
    NK_CHECK(has_value(db, NULL, "key00042", "second"));
    lsm_close(db);
    NK_REQUIRE_OK(lsm_open(dir, &o, &db));
    NK_CHECK(count_files(dir, ".sst") == (int)live);
    NK_CHECK(has_value(db, NULL, "key00499", "second"));
    lsm_close(db);
}

NK_TEST(manifest_naming_a_missing_table_fails_open_naming_it)
{
    const char *dir = nk_test_tmpdir();
    struct lsm_options o;
    small_options(&o);
    struct lsm_db *db;
    NK_REQUIRE_OK(lsm_open(dir, &o, &db));
    NK_REQUIRE_OK(lsm_put(db, NULL, S("a"), S("1"), 0));
    NK_REQUIRE_OK(lsm_flush(db));
    lsm_close(db);
    char *sst = find_file(dir, ".sst");
    NK_REQUIRE(sst != NULL);
    NK_REQUIRE(unlink(sst) == 0);
    nk_status s = lsm_open(dir, &o, &db);
    NK_CHECK(!nk_ok(s));
    const char *base = strrchr(sst, '/') + 1;
    NK_CHECK(strstr(nk_status_msg(s), base) != NULL);
    fprintf(stderr, "  open said: %s\n", nk_status_msg(s));
    nk_status_free(&s);
    free(sst);
}

static size_t count_tables(const char *dir)
{
    size_t n = 0;
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL)
        n += strstr(e->d_name, ".sst") != NULL;
    if (d)
        closedir(d);
    return n;
}

NK_TEST(manifest_damaged_in_the_middle_fails_open_with_data_loss_and_deletes_nothing)
{
    const char *dir = nk_test_tmpdir();
    struct lsm_options o;
    small_options(&o);
    o.l0_compaction_trigger = 20; /* keep every flushed table */
    struct lsm_db *db;
    NK_REQUIRE_OK(lsm_open(dir, &o, &db));
    for (int i = 0; i < 4; i++) {
        char k[16];
        snprintf(k, sizeof k, "k%d", i);
        NK_REQUIRE_OK(lsm_put(db, NULL, S(k), S("v"), 0));
        NK_REQUIRE_OK(lsm_flush(db)); /* one manifest record per flush */
    }
    lsm_close(db);
    size_t tables = count_tables(dir);
    NK_REQUIRE(tables >= 4);
    char cur_path[1200], man[1300];
    snprintf(cur_path, sizeof cur_path, "%s/CURRENT", dir);
    uint8_t *data;
    size_t n;
    NK_REQUIRE_OK(nk_read_file(cur_path, 256, &data, &n));
    while (n && data[n - 1] == '\n')
        n--;
    snprintf(man, sizeof man, "%s/%.*s", dir, (int)n, (const char *)data);
    free(data);
    NK_REQUIRE_OK(nk_read_file(man, 1 << 20, &data, &n));
    /* the second record's length: past the first (snapshot) record */
    size_t second = 8 + nk_dec_fixed32(data + 4);
    NK_REQUIRE(second + 8 < n);
    nk_enc_fixed32(data + second + 4, 0x00ffffffu);
    FILE *f = fopen(man, "wb");
    NK_REQUIRE(f && fwrite(data, 1, n, f) == n);
    fclose(f);
    free(data);
    nk_status s = lsm_open(dir, &o, &db);
    fprintf(stderr, "  open said: %s\n", nk_status_msg(s));
    NK_CHECK(s.code == NK_DATA_LOSS);
    NK_CHECK(strstr(nk_status_msg(s), strrchr(man, '/') + 1) != NULL);
    NK_CHECK(strstr(nk_status_msg(s), "offset") != NULL);
    if (nk_ok(s))
        lsm_close(db);
    nk_status_free(&s);
    NK_CHECK_EQ_U64(count_tables(dir), tables); /* nothing deleted */
}

/* Bytes of disk the files under path occupy (st_blocks). */
static uint64_t disk_usage(const char *path)
{
    struct stat st;
    if (lstat(path, &st) != 0)
        return 0;
    uint64_t n = (uint64_t)st.st_blocks * 512;
    if (S_ISDIR(st.st_mode)) {
        DIR *d = opendir(path);
        struct dirent *e;
        while (d && (e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            char child[2048];
            snprintf(child, sizeof child, "%s/%s", path, e->d_name);
            n += disk_usage(child);
        }
        if (d)
            closedir(d);
    }
    return n;
}

NK_TEST(fresh_database_written_only_with_skip_wal_uses_little_disk)
{
    const char *dir = nk_test_tmpdir();
    struct lsm_options o;
    lsm_options_default(&o);
    o.write_buffer_size = 64u << 20; /* WAL segments of 128 MiB */
    o.wal_sync = LSM_WAL_SYNC_ALWAYS; /* the mode that preallocates */
    struct lsm_db *db;
    NK_REQUIRE_OK(lsm_open(dir, &o, &db));
    struct lsm_write_options wo = {.skip_wal = true};
    for (int i = 0; i < 100; i++) {
        char k[16];
        snprintf(k, sizeof k, "k%03d", i);
        NK_REQUIRE_OK(lsm_put(db, &wo, S(k), S("value"), 0));
    }
    uint64_t used = disk_usage(dir);
    fprintf(stderr, "  %llu KiB on disk with only skip-WAL writes\n",
            (unsigned long long)(used >> 10));
    NK_CHECK(used < (1u << 20));
    /* the first logged write preallocates the segment it goes to */
    NK_REQUIRE_OK(lsm_put(db, NULL, S("logged"), S("v"), 0));
    bool found;
    struct nk_buf v;
    nk_buf_init(&v);
    NK_REQUIRE_OK(lsm_get(db, NULL, S("logged"), &v, &found, NULL));
    NK_CHECK(found);
    nk_buf_free(&v);
    lsm_close(db);
    NK_REQUIRE_OK(lsm_open(dir, &o, &db));
    nk_buf_init(&v);
    NK_REQUIRE_OK(lsm_get(db, NULL, S("k050"), &v, &found, NULL));
    NK_CHECK(found);
    NK_REQUIRE_OK(lsm_get(db, NULL, S("logged"), &v, &found, NULL));
    NK_CHECK(found);
    nk_buf_free(&v);
    lsm_close(db);
}

NK_TEST(torn_wal_tail_is_truncated_on_open_keeping_earlier_writes)
{
    const char *dir = nk_test_tmpdir();
    struct lsm_options o;
    small_options(&o);
    o.wal_sync = LSM_WAL_SYNC_ALWAYS;
    struct lsm_db *db;
    NK_REQUIRE_OK(lsm_open(dir, &o, &db));
    NK_REQUIRE_OK(lsm_put(db, NULL, S("first"), S("1"), 0));
    NK_REQUIRE_OK(lsm_put(db, NULL, S("second"), S("2"), 0));
    NK_REQUIRE_OK(lsm_put(db, NULL, S("third"), S("3333333333"), 0));
    lsm_close(db); /* logged writes stay in the WAL only */
    char waldir[1100];
    snprintf(waldir, sizeof waldir, "%.1000s/wal", dir);
    struct wal_options wo;
    wal_options_default(&wo);
    wo.max_record_size = LSM_MAX_BATCH + 4096;
    struct wal *w;
    NK_REQUIRE_OK(wal_open(waldir, &wo, &w));
    struct wal_pos end = wal_end(w);
    wal_close(w);
    char name[64];
    snprintf(name, sizeof name, "%020llu", (unsigned long long)end.segment);
    DIR *d = opendir(waldir);
    NK_REQUIRE(d != NULL);
    struct dirent *e;
    char path[2048] = {0};
    while ((e = readdir(d)))
        if (strncmp(e->d_name, name, 20) == 0)
            snprintf(path, sizeof path, "%s/%s", waldir, e->d_name);
    closedir(d);
    NK_REQUIRE(path[0] != 0);
    /* tear the last record: its final 4 bytes never reached the disk */
    int fd = open(path, O_WRONLY);
    NK_REQUIRE(fd >= 0);
    NK_REQUIRE(ftruncate(fd, (off_t)end.offset - 4) == 0);
    close(fd);
    NK_REQUIRE_OK(lsm_open(dir, &o, &db));
    NK_CHECK(has_value(db, NULL, "first", "1"));
    NK_CHECK(has_value(db, NULL, "second", "2"));
    NK_CHECK(has_value(db, NULL, "third", NULL));
    NK_REQUIRE_OK(lsm_put(db, NULL, S("fourth"), S("4"), 0));
    lsm_close(db);
    NK_REQUIRE_OK(lsm_open(dir, &o, &db));
    NK_CHECK(has_value(db, NULL, "second", "2"));
    NK_CHECK(has_value(db, NULL, "fourth", "4"));
    lsm_close(db);
}

static bool copy_file(const char *from, const char *to)
{
    uint8_t *data;
    size_t n;
    nk_status s = nk_read_file(from, 1 << 30, &data, &n);
    if (!nk_ok(s)) {
        nk_status_free(&s);
        return false;
    }
    FILE *f = fopen(to, "wb");
    bool ok = f && fwrite(data, 1, n, f) == n;
    if (f)
        fclose(f);
    free(data);
    return ok;
}

/*
 * Flips one byte at many positions of a table (data blocks, filter, index,
 * properties, footer) and checks that every read either returns the right
 * value or a DATA_LOSS error: damaged bytes are never returned as data.
 */
static void flip_bytes_check(bool use_mmap)
{
    const char *dir = nk_test_tmpdir();
    struct lsm_options o;
    small_options(&o);
    o.write_buffer_size = 1 << 20;
    o.block_cache_bytes = 0; /* every read goes to the file */
    o.use_mmap_reads = use_mmap;
    /* No background compaction: it would find the damage first and
     * quarantine the table (lsm_degraded_test), and this test reads the
     * damaged table itself, byte position after byte position. */
    o.l0_compaction_trigger = 20;
    struct lsm_db *db;
    NK_REQUIRE_OK(lsm_open(dir, &o, &db));
    char k[32], v[64];
    for (int i = 0; i < 300; i++) {
        snprintf(k, sizeof k, "key%05d", i);
        snprintf(v, sizeof v, "value-%05d-padding-padding", i);
        NK_REQUIRE_OK(lsm_put(db, NULL, S(k), S(v), 0));
    }
    NK_REQUIRE_OK(lsm_flush(db));
    lsm_close(db);
    char *sst = find_file(dir, ".sst");
    NK_REQUIRE(sst != NULL);
    char pristine[2048];
    snprintf(pristine, sizeof pristine, "%s.pristine", sst);
    NK_REQUIRE(copy_file(sst, pristine));
    struct stat st;
    NK_REQUIRE(stat(sst, &st) == 0);
    size_t size = (size_t)st.st_size;
    int detected_at_open = 0, detected_at_read = 0, wrong = 0, positions = 0;
    for (size_t pos = 0; pos < size; pos += (pos + 64 < size) ? 211 : 1) {
        positions++;
        NK_REQUIRE(copy_file(pristine, sst));
        int fd = open(sst, O_RDWR);
        NK_REQUIRE(fd >= 0);
        uint8_t byte;
        NK_REQUIRE(pread(fd, &byte, 1, (off_t)pos) == 1);
        byte ^= 0x5a;
        NK_REQUIRE(pwrite(fd, &byte, 1, (off_t)pos) == 1);
        close(fd);
        nk_status s = lsm_open(dir, &o, &db);
        if (!nk_ok(s)) {
            NK_CHECK(s.code == NK_DATA_LOSS);
            detected_at_open++;
            nk_status_free(&s);
            continue;
        }
        bool err = false;
        struct nk_buf got;
        nk_buf_init(&got);
        for (int i = 0; i < 300; i++) {
            snprintf(k, sizeof k, "key%05d", i);
            snprintf(v, sizeof v, "value-%05d-padding-padding", i);
            bool found;
            s = lsm_get(db, NULL, S(k), &got, &found, NULL);
            if (!nk_ok(s)) {
                if (s.code != NK_DATA_LOSS)
                    wrong++;
                err = true;
                nk_status_free(&s);
                continue;
            }
            if (!found || !nk_slice_eq(nk_slice_make(got.data, got.len), S(v)))
                wrong++;
        }
        struct lsm_iter *it;
        NK_REQUIRE_OK(lsm_iter_new(db, NULL, &it));
        int n = 0;
        for (lsm_iter_seek_first(it); lsm_iter_valid(it); lsm_iter_next(it)) {
            snprintf(k, sizeof k, "key%05d", n);
            if (!nk_slice_eq(lsm_iter_key(it), S(k)))
                wrong++;
            n++;
        }
        s = lsm_iter_status(it);
        if (!nk_ok(s)) {
            err = true;
            if (s.code != NK_DATA_LOSS)
                wrong++;
            nk_status_free(&s);
        } else if (n != 300) {
            wrong++;
        }
        lsm_iter_free(it);
        nk_buf_free(&got);
        detected_at_read += err;
        lsm_close(db);
    }
    fprintf(stderr, "  %d positions: %d refused at open, %d reported by reads, %d wrong\n",
            positions, detected_at_open, detected_at_read, wrong);
    NK_CHECK(wrong == 0);
    NK_CHECK(detected_at_read > 0); /* data blocks */
    NK_CHECK(detected_at_open > 0); /* footer, index */
    NK_REQUIRE(copy_file(pristine, sst));
    unlink(pristine);
    free(sst);
}

NK_TEST(flipped_byte_anywhere_in_a_table_is_corruption_never_data)
{
    flip_bytes_check(false); /* pread */
    flip_bytes_check(true);  /* read-only mapping */
}
