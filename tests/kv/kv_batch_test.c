/* Tests of batch apply (src/kv/batch.c) over a real LSM: all or nothing,
 * per-op results, idempotency, and determinism of apply. */
#include "kv/kv.h"
#include "lsm/lsm.h"
#include "testlib.h"

static uint64_t T0;
#define T(ms) (T0 + (ms))

struct env {
    struct lsm_db *db;
    struct kv_store *kv;
    char dir[1200];
};

static bool env_open(struct env *e, const char *name)
{
    if (!T0)
        T0 = nk_wall_ms();
    snprintf(e->dir, sizeof e->dir, "%s/%s", nk_test_tmpdir(), name);
    struct lsm_options o;
    lsm_options_default(&o);
    nk_status s = lsm_open(e->dir, &o, &e->db);
    if (!nk_ok(s)) {
        nk_status_free(&s);
        return false;
    }
    struct kv_options ko;
    kv_options_default(&ko);
    ko.idem_retention_ms = 10000;
    NK_ASSERT(nk_ok(kv_store_open(e->db, &ko, &e->kv)));
    return true;
}

static void env_close(struct env *e)
{
    kv_store_close(e->kv);
    lsm_close(e->db);
}

static uint64_t next_index = 1;

static struct kv_result apply_batch(struct env *e, struct kv_batch *b, uint64_t index)
{
    struct nk_buf enc;
    nk_buf_init(&enc);
    kv_batch_encode(b, &enc);
    struct kv_result r;
    NK_ASSERT(nk_ok(kv_apply(e->kv, 2, 1, index, enc.data, enc.len, &r)));
    nk_buf_free(&enc);
    return r;
}

static bool get(struct env *e, const char *k, struct nk_buf *v, uint64_t *index)
{
    uint64_t term = 0;
    bool found = false;
    NK_ASSERT(nk_ok(kv_get(e->kv, 2, nk_slice_str(k), T(1), v, &term, index, &found)));
    return found;
}

static struct kv_batch_op put_op(const char *k, const char *v)
{
    return (struct kv_batch_op){.op = KV_OP_PUT, .key = nk_slice_str(k), .value = nk_slice_str(v)};
}

NK_TEST(a_batch_applies_every_op_at_the_entrys_version)
{
    struct env e;
    NK_REQUIRE(env_open(&e, "db"));
    struct kv_batch_op ops[3] = {put_op("a", "1"), put_op("b", "2"),
                                 {.op = KV_OP_DELETE, .key = nk_slice_str("c")}};
    struct kv_batch b = {.timestamp_ms = T(0), .n = 3, .ops = ops};
    uint64_t idx = next_index++;
    struct kv_result r = apply_batch(&e, &b, idx);
    NK_REQUIRE(r.code == NK_CODE_OK && r.batch);
    NK_CHECK(r.batch->applied && r.batch->n == 3 && !r.batch->ops[2].tombstoned);
    struct nk_buf v;
    nk_buf_init(&v);
    uint64_t index = 0;
    NK_CHECK(get(&e, "a", &v, &index) && index == idx && v.len == 1 && v.data[0] == '1');
    NK_CHECK(get(&e, "b", &v, &index) && index == idx);
    uint64_t at, ai;
    NK_REQUIRE_OK(kv_applied(e.kv, 2, &at, &ai));
    NK_CHECK(ai == idx);
    nk_buf_free(&v);
    env_close(&e);
}

NK_TEST(one_failed_condition_applies_nothing_and_marks_the_others_aborted)
{
    struct env e;
    NK_REQUIRE(env_open(&e, "db"));
    struct kv_batch_op first[1] = {put_op("a", "old")};
    struct kv_batch b = {.timestamp_ms = T(0), .n = 1, .ops = first};
    uint64_t idx_a = next_index++;
    apply_batch(&e, &b, idx_a);
    struct kv_batch_op ops[3] = {
        put_op("n", "new"),
        {.op = KV_OP_PUT, .key = nk_slice_str("a"), .value = nk_slice_str("x"),
         .if_not_exists = true},
        {.op = KV_OP_DELETE, .key = nk_slice_str("a"), .has_if_match = true, .if_match_term = 1,
         .if_match_index = idx_a},
    };
    /* ops 1 and 2 share key "a": refused by validation */
    b = (struct kv_batch){.timestamp_ms = T(1), .n = 3, .ops = ops};
    nk_status s = kv_batch_validate(&b);
    NK_CHECK(s.code == NK_INVALID_ARGUMENT && strstr(nk_status_msg(s), "same key"));
    nk_status_free(&s);
    b.n = 2;
    uint64_t idx = next_index++;
    struct kv_result r = apply_batch(&e, &b, idx);
    NK_REQUIRE(r.code == NK_CODE_OK && r.batch);
    NK_CHECK(!r.batch->applied);
    NK_CHECK(r.batch->ops[0].code == NK_ABORTED);
    NK_CHECK(r.batch->ops[1].code == NK_ALREADY_EXISTS && r.batch->ops[1].has_current &&
             r.batch->ops[1].cur_index == idx_a);
    struct nk_buf v;
    nk_buf_init(&v);
    uint64_t index;
    NK_CHECK(!get(&e, "n", &v, &index)); /* nothing applied */
    NK_CHECK(get(&e, "a", &v, &index) && index == idx_a);
    uint64_t at, ai;
    NK_REQUIRE_OK(kv_applied(e.kv, 2, &at, &ai));
    NK_CHECK(ai == idx); /* the entry still advances the applied index */
    nk_buf_free(&v);
    env_close(&e);
}

NK_TEST(a_retry_with_the_idempotency_key_returns_the_stored_result_without_executing)
{
    struct env e;
    NK_REQUIRE(env_open(&e, "db"));
    struct kv_batch_op ops[2] = {put_op("a", "1"),
                                 {.op = KV_OP_PUT, .key = nk_slice_str("b"),
                                  .value = nk_slice_str("2"), .if_not_exists = true}};
    struct kv_batch b = {.timestamp_ms = T(0), .idem_key = nk_slice_str("k1"), .n = 2,
                         .ops = ops};
    uint64_t idx1 = next_index++;
    struct kv_result r1 = apply_batch(&e, &b, idx1);
    NK_REQUIRE(r1.batch && r1.batch->applied);
    b.timestamp_ms = T(100);
    struct kv_result r2 = apply_batch(&e, &b, next_index++);
    /* executed again, "b" exists and if_not_exists would fail: the stored
     * result says applied at idx1 */
    NK_REQUIRE(r2.code == NK_CODE_OK && r2.batch);
    NK_CHECK(r2.batch->applied && r2.index == idx1 && r2.batch->n == 2);
    ops[0].value = nk_slice_str("other");
    struct kv_result r3 = apply_batch(&e, &b, next_index++);
    NK_CHECK(r3.code == NK_INVALID_ARGUMENT);
    /* outside the retention window the key may be used afresh */
    b.timestamp_ms = T(20000);
    struct kv_result r4 = apply_batch(&e, &b, next_index++);
    NK_CHECK(r4.code == NK_CODE_OK && r4.batch && !r4.batch->applied &&
             r4.batch->ops[1].code == NK_ALREADY_EXISTS);
    env_close(&e);
}

/* Apply depends on the entry and the state only: two replicas applying
 * the same log give the same results and the same reads. */
NK_TEST(replicas_applying_the_same_batches_reach_identical_results)
{
    struct env r[2];
    NK_REQUIRE(env_open(&r[0], "r0"));
    NK_REQUIRE(env_open(&r[1], "r1"));
    uint64_t seed = nk_test_seed();
    srand((unsigned)seed);
    for (uint64_t idx = 1; idx <= 300; idx++) {
        struct kv_batch_op ops[4];
        char keys[4][8], vals[4][8];
        uint32_t n = 1 + (uint32_t)(rand() % 4);
        int base = rand() % 20;
        for (uint32_t i = 0; i < n; i++) {
            snprintf(keys[i], sizeof keys[i], "k%d", (base + (int)i) % 20 + (int)i * 20);
            snprintf(vals[i], sizeof vals[i], "%d", rand() % 100);
            ops[i] = put_op(keys[i], vals[i]);
            int c = rand() % 5;
            if (c == 0)
                ops[i] = (struct kv_batch_op){.op = KV_OP_DELETE, .key = nk_slice_str(keys[i])};
            else if (c == 1)
                ops[i].if_not_exists = true;
            else if (c == 2)
                ops[i].ttl_ms = 1 + (uint64_t)(rand() % 50);
        }
        struct kv_batch b = {.timestamp_ms = T(idx * 10), .n = n, .ops = ops};
        struct kv_result a0 = apply_batch(&r[0], &b, idx);
        struct kv_result a1 = apply_batch(&r[1], &b, idx);
        NK_REQUIRE(a0.batch && a1.batch);
        NK_CHECK(a0.batch->applied == a1.batch->applied && a0.batch->n == a1.batch->n);
        for (uint32_t i = 0; i < n; i++)
            NK_CHECK(a0.batch->ops[i].code == a1.batch->ops[i].code);
    }
    for (int k = 0; k < 80; k++) {
        char key[8];
        snprintf(key, sizeof key, "k%d", k);
        struct nk_buf v0, v1;
        nk_buf_init(&v0);
        nk_buf_init(&v1);
        uint64_t i0 = 0, i1 = 0;
        bool f0 = get(&r[0], key, &v0, &i0), f1 = get(&r[1], key, &v1, &i1);
        NK_CHECK(f0 == f1 && i0 == i1 && v0.len == v1.len);
        nk_buf_free(&v0);
        nk_buf_free(&v1);
    }
    env_close(&r[0]);
    env_close(&r[1]);
}

NK_TEST(the_leader_stamps_a_batch_in_place_like_a_single_command)
{
    struct kv_batch_op ops[1] = {put_op("a", "1")};
    struct kv_batch b = {.timestamp_ms = 0, .n = 1, .ops = ops};
    struct nk_buf enc;
    nk_buf_init(&enc);
    kv_batch_encode(&b, &enc);
    NK_CHECK(kv_batch_is_batch(enc.data, enc.len));
    NK_CHECK(kv_cmd_stamp(enc.data, enc.len, 12345));
    struct kv_batch d;
    NK_REQUIRE_OK(kv_batch_decode(enc.data, enc.len, &d));
    NK_CHECK(d.timestamp_ms == 12345 && d.n == 1);
    kv_batch_free(&d);
    /* a truncated batch is data loss, not a crash */
    nk_status s = kv_batch_decode(enc.data, enc.len - 1, &d);
    NK_CHECK(s.code == NK_DATA_LOSS);
    nk_status_free(&s);
    nk_buf_free(&enc);
}
