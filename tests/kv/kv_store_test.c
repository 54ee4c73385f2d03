/* Tests of the KV state machine (src/kv store.c) over a real LSM on disk. */
#include "kv/kv.h"
#include "lsm/lsm.h"
#include "testlib.h"

static uint64_t T0; /* wall clock at start: commands carry realistic timestamps */
#define T(ms) (T0 + (ms))

struct env {
    struct lsm_db *db;
    struct kv_store *kv;
    char dir[1200];
};

static bool env_open(struct env *e)
{
    if (!T0)
        T0 = nk_wall_ms();
    snprintf(e->dir, sizeof e->dir, "%s/db", nk_test_tmpdir());
    struct lsm_options o;
    lsm_options_default(&o);
    nk_status s = lsm_open(e->dir, &o, &e->db);
    if (!nk_ok(s)) {
        fprintf(stderr, "  lsm_open: %s\n", nk_status_msg(s));
        nk_status_free(&s);
        return false;
    }
    struct kv_options ko;
    kv_options_default(&ko);
    ko.idem_retention_ms = 10000;
    s = kv_store_open(e->db, &ko, &e->kv);
    NK_ASSERT(nk_ok(s));
    return true;
}

static void env_close(struct env *e)
{
    kv_store_close(e->kv);
    lsm_close(e->db);
}

static uint64_t next_index = 1;

/* Applies a command at the next index of term 1. */
static struct kv_result apply(struct env *e, uint16_t shard, struct kv_cmd c)
{
    struct nk_buf b;
    nk_buf_init(&b);
    kv_cmd_encode(&c, &b);
    struct kv_result r;
    nk_status s = kv_apply(e->kv, shard, 1, next_index++, b.data, b.len, &r);
    NK_ASSERT(nk_ok(s));
    nk_buf_free(&b);
    return r;
}

static struct kv_cmd put(const char *k, const char *v, uint64_t ts)
{
    return (struct kv_cmd){.op = KV_OP_PUT, .timestamp_ms = ts, .key = nk_slice_str(k),
                           .value = nk_slice_str(v)};
}

static bool get(struct env *e, uint16_t shard, const char *k, uint64_t now, struct nk_buf *v,
                uint64_t *index)
{
    uint64_t term = 0;
    bool found = false;
    nk_status s = kv_get(e->kv, shard, nk_slice_str(k), now, v, &term, index, &found);
    NK_ASSERT(nk_ok(s));
    return found;
}

NK_TEST(put_then_get_returns_the_value_and_the_entrys_version)
{
    struct env e;
    NK_REQUIRE(env_open(&e));
    struct kv_result r = apply(&e, 7, put("a", "1", T(1000)));
    NK_CHECK(r.code == NK_CODE_OK && r.term == 1 && r.index == next_index - 1);
    struct nk_buf v;
    nk_buf_init(&v);
    uint64_t idx = 0;
    NK_CHECK(get(&e, 7, "a", T(1000), &v, &idx));
    NK_CHECK(v.len == 1 && v.data[0] == '1' && idx == r.index);
    NK_CHECK(!get(&e, 8, "a", T(1000), &v, &idx)); /* shards are separate */
    NK_CHECK(!get(&e, 7, "b", T(1000), &v, &idx));
    uint64_t at, ai;
    NK_REQUIRE_OK(kv_applied(e.kv, 7, &at, &ai));
    NK_CHECK(at == 1 && ai == r.index);
    nk_buf_free(&v);
    env_close(&e);
}

NK_TEST(expiry_uses_the_commands_clock_in_apply_and_the_readers_in_get)
{
    struct env e;
    NK_REQUIRE(env_open(&e));
    struct kv_cmd c = put("t", "x", T(1000));
    c.ttl_ms = 500;
    struct kv_result r = apply(&e, 1, c);
    NK_CHECK(r.code == NK_CODE_OK);
    struct nk_buf v;
    nk_buf_init(&v);
    uint64_t idx;
    NK_CHECK(get(&e, 1, "t", T(1499), &v, &idx));
    NK_CHECK(!get(&e, 1, "t", T(1500), &v, &idx));
    /* if_not_exists proposed before expiry sees a live key, after it does not */
    struct kv_cmd ine = put("t", "y", T(1400));
    ine.if_not_exists = true;
    NK_CHECK(apply(&e, 1, ine).code == NK_ALREADY_EXISTS);
    ine.timestamp_ms = T(1600);
    NK_CHECK(apply(&e, 1, ine).code == NK_CODE_OK);
    NK_CHECK(get(&e, 1, "t", T(999999), &v, &idx) && v.len == 1 && v.data[0] == 'y');
    nk_buf_free(&v);
    env_close(&e);
}

NK_TEST(cas_applies_only_on_the_current_version)
{
    struct env e;
    NK_REQUIRE(env_open(&e));
    struct kv_result r1 = apply(&e, 2, put("k", "1", T(10)));
    struct kv_cmd cas = put("k", "2", T(11));
    cas.has_if_match = true;
    cas.if_match_term = 1;
    cas.if_match_index = r1.index;
    struct kv_result r2 = apply(&e, 2, cas);
    NK_CHECK(r2.code == NK_CODE_OK);
    struct kv_result r3 = apply(&e, 2, cas); /* stale now */
    NK_CHECK(r3.code == NK_FAILED_PRECONDITION && r3.has_current && r3.cur_index == r2.index);
    struct kv_cmd del = {.op = KV_OP_DELETE, .timestamp_ms = T(12), .key = nk_slice_str("k"),
                         .has_if_match = true, .if_match_term = 1, .if_match_index = r1.index};
    NK_CHECK(apply(&e, 2, del).code == NK_FAILED_PRECONDITION);
    del.if_match_index = r2.index;
    struct kv_result rd = apply(&e, 2, del);
    NK_CHECK(rd.code == NK_CODE_OK && rd.tombstoned);
    struct kv_result rm = apply(&e, 2, cas); /* CAS on a missing key */
    NK_CHECK(rm.code == NK_FAILED_PRECONDITION && !rm.has_current);
    env_close(&e);
}

NK_TEST(delete_reports_whether_a_live_value_was_removed)
{
    struct env e;
    NK_REQUIRE(env_open(&e));
    struct kv_cmd del = {.op = KV_OP_DELETE, .timestamp_ms = T(5), .key = nk_slice_str("d")};
    NK_CHECK(apply(&e, 3, del).tombstoned == false);
    apply(&e, 3, put("d", "v", T(5)));
    NK_CHECK(apply(&e, 3, del).tombstoned == true);
    NK_CHECK(apply(&e, 3, del).tombstoned == false);
    env_close(&e);
}

NK_TEST(idempotent_retries_return_the_stored_result_within_the_window)
{
    struct env e;
    NK_REQUIRE(env_open(&e));
    struct kv_cmd c = put("p", "100", T(1000));
    c.idem_key = nk_slice_str("pay-1");
    struct kv_result r1 = apply(&e, 4, c);
    NK_CHECK(r1.code == NK_CODE_OK);
    apply(&e, 4, put("p", "later", T(1001)));
    c.timestamp_ms = T(5000);
    struct kv_result r2 = apply(&e, 4, c);
    NK_CHECK(r2.code == NK_CODE_OK && r2.index == r1.index && r2.term == r1.term);
    struct nk_buf v;
    nk_buf_init(&v);
    uint64_t idx;
    NK_CHECK(get(&e, 4, "p", T(5000), &v, &idx) && v.len == 5); /* not executed again */
    struct kv_cmd other = c;
    other.value = nk_slice_str("200");
    NK_CHECK(apply(&e, 4, other).code == NK_INVALID_ARGUMENT);
    bool found, same;
    struct kv_result lr;
    NK_REQUIRE_OK(kv_idem_lookup(e.kv, 4, nk_slice_str("pay-1"), kv_cmd_fingerprint(&c), T(6000),
                                 &found, &same, &lr));
    NK_CHECK(found && same && lr.index == r1.index);
    /* past the retention window (10 s in this test) the key executes afresh */
    c.timestamp_ms = T(1000) + 10001;
    struct kv_result r3 = apply(&e, 4, c);
    NK_CHECK(r3.code == NK_CODE_OK && r3.index != r1.index);
    /* failures are remembered too */
    struct kv_cmd f = put("p", "x", T(20000));
    f.if_not_exists = true;
    f.idem_key = nk_slice_str("ine-1");
    NK_CHECK(apply(&e, 4, f).code == NK_ALREADY_EXISTS);
    apply(&e, 4, (struct kv_cmd){.op = KV_OP_DELETE, .timestamp_ms = T(20001), .key = nk_slice_str("p")});
    NK_CHECK(apply(&e, 4, f).code == NK_ALREADY_EXISTS);
    nk_buf_free(&v);
    env_close(&e);
}

NK_TEST(a_malformed_command_is_applied_as_a_noop_that_advances_the_index)
{
    struct env e;
    NK_REQUIRE(env_open(&e));
    uint8_t junk[] = {9, 9, 9};
    struct kv_result r;
    NK_REQUIRE_OK(kv_apply(e.kv, 5, 2, 77, junk, sizeof junk, &r));
    NK_CHECK(r.code == NK_DATA_LOSS);
    uint64_t at, ai;
    NK_REQUIRE_OK(kv_applied(e.kv, 5, &at, &ai));
    NK_CHECK(at == 2 && ai == 77);
    env_close(&e);
}

NK_TEST(state_and_applied_index_survive_flush_and_reopen)
{
    struct env e;
    NK_REQUIRE(env_open(&e));
    struct kv_result r = apply(&e, 9, put("persist", "yes", T(1)));
    NK_REQUIRE_OK(lsm_flush(e.db));
    env_close(&e);
    NK_REQUIRE(env_open(&e));
    struct nk_buf v;
    nk_buf_init(&v);
    uint64_t idx;
    NK_CHECK(get(&e, 9, "persist", T(2), &v, &idx) && idx == r.index);
    uint64_t at, ai;
    NK_REQUIRE_OK(kv_applied(e.kv, 9, &at, &ai));
    NK_CHECK(ai == r.index);
    nk_buf_free(&v);
    env_close(&e);
}
