/*
 * The LSM's key clock (lsm_options.key_clock_ms): when set, it alone
 * decides whether an expiring record is visible and whether compaction may
 * drop it, per key; the wall clock plays no part. The node sets it to each
 * shard's persisted replicated time so that apply is deterministic
 * (docs/format/kv-state.md).
 */
#include "lsm/lsm.h"
#include "testlib.h"

#include <stdatomic.h>

static _Atomic uint64_t clock_a, clock_b; /* keys starting with 'a' / 'b' */

static uint64_t key_clock(void *ctx, struct nk_slice key)
{
    (void)ctx;
    return key.len && key.data[0] == 'a' ? atomic_load(&clock_a) : atomic_load(&clock_b);
}

static uint64_t wall_far_ahead(void *ctx)
{
    (void)ctx;
    return UINT64_MAX / 2; /* a wall clock that would expire everything */
}

static bool get(struct lsm_db *db, const char *k)
{
    struct nk_buf v;
    nk_buf_init(&v);
    bool found = false;
    NK_ASSERT(nk_ok(lsm_get(db, NULL, nk_slice_str(k), &v, &found, NULL)));
    nk_buf_free(&v);
    return found;
}

static int count_keys(struct lsm_db *db)
{
    struct lsm_iter *it;
    NK_ASSERT(nk_ok(lsm_iter_new(db, NULL, &it)));
    int n = 0;
    for (lsm_iter_seek_first(it); lsm_iter_valid(it); lsm_iter_next(it))
        n++;
    lsm_iter_free(it);
    return n;
}

NK_TEST(the_key_clock_alone_decides_expiry_for_reads_iterators_and_compaction)
{
    char dir[1200];
    snprintf(dir, sizeof dir, "%s/db", nk_test_tmpdir());
    struct lsm_options o;
    lsm_options_default(&o);
    o.clock_ms = wall_far_ahead;
    o.key_clock_ms = key_clock;
    struct lsm_db *db;
    NK_REQUIRE_OK(lsm_open(dir, &o, &db));
    atomic_store(&clock_a, 100);
    atomic_store(&clock_b, 100);
    NK_REQUIRE_OK(lsm_put(db, NULL, nk_slice_str("a1"), nk_slice_str("x"), 150));
    NK_REQUIRE_OK(lsm_put(db, NULL, nk_slice_str("b1"), nk_slice_str("y"), 150));
    /* the wall clock is far past 150; the key clock is not */
    NK_CHECK(get(db, "a1") && get(db, "b1"));
    NK_CHECK(count_keys(db) == 2);
    NK_REQUIRE_OK(lsm_flush(db));
    NK_REQUIRE_OK(lsm_compact_range(db, NULL, NULL));
    NK_CHECK(get(db, "a1") && get(db, "b1")); /* compaction kept both */
    /* only the keys whose clock passed their expiry go */
    atomic_store(&clock_a, 150);
    NK_CHECK(!get(db, "a1") && get(db, "b1"));
    NK_CHECK(count_keys(db) == 1);
    NK_REQUIRE_OK(lsm_compact_range(db, NULL, NULL));
    NK_CHECK(!get(db, "a1") && get(db, "b1"));
    /* a dropped record stays dropped even if a clock were read lower */
    atomic_store(&clock_a, 0);
    NK_CHECK(!get(db, "a1"));
    lsm_close(db);
}
