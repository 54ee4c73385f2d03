/* Tests of the KV state machine (src/kv store.c) over a real LSM on disk. */
#include "kv/kv.h"
#include "lsm/lsm.h"
#include "testlib.h"

#include <stdatomic.h>

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

/* ------------------------------------------------ determinism of apply */

/*
 * A replica as the node runs one: the LSM's wall clock is whatever the
 * machine says (here: injected), and its key clock gives each shard's
 * replicated time as of the last flush (what the node publishes once the
 * LSM has persisted it).
 */
struct replica {
    struct lsm_db *db;
    struct kv_store *kv;
    uint64_t wall_ms;
    _Atomic uint64_t gc_time; /* one shard used */
    char dir[1200];
};

static uint64_t replica_wall(void *ctx)
{
    return ((struct replica *)ctx)->wall_ms;
}

static uint64_t replica_key_clock(void *ctx, struct nk_slice key)
{
    (void)key;
    return atomic_load(&((struct replica *)ctx)->gc_time);
}

static void replica_open(struct replica *r, const char *name, uint64_t wall_ms)
{
    memset(r, 0, sizeof(*r));
    r->wall_ms = wall_ms;
    snprintf(r->dir, sizeof r->dir, "%s/%s", nk_test_tmpdir(), name);
    struct lsm_options o;
    lsm_options_default(&o);
    o.clock_ms = replica_wall;
    o.clock_ctx = r;
    o.key_clock_ms = replica_key_clock;
    o.key_clock_ctx = r;
    NK_ASSERT(nk_ok(lsm_open(r->dir, &o, &r->db)));
    struct kv_options ko;
    kv_options_default(&ko);
    ko.idem_retention_ms = 15ULL * 60 * 1000;
    NK_ASSERT(nk_ok(kv_store_open(r->db, &ko, &r->kv)));
}

/* Flush, publish the persisted replicated time, compact everything: the
 * most a node's background work can do between two applies. */
static void replica_persist_and_compact(struct replica *r)
{
    NK_ASSERT(nk_ok(lsm_flush(r->db)));
    uint64_t t;
    NK_ASSERT(nk_ok(kv_shard_time(r->kv, 3, &t)));
    atomic_store(&r->gc_time, t);
    NK_ASSERT(nk_ok(lsm_compact_range(r->db, NULL, NULL)));
}

static void replica_close(struct replica *r)
{
    kv_store_close(r->kv);
    lsm_close(r->db);
}

NK_TEST(one_log_applied_at_clocks_days_apart_gives_identical_results_and_state)
{
    const uint64_t MIN = 60000;
    uint64_t base = T(0);
    /* the log: TTL puts, a CAS and an if_not_exists that depend on expiry,
     * idempotent retries that depend on retention, deletes */
    struct kv_cmd log[10];
    int n = 0;
    log[n] = put("k1", "v1", base);
    log[n].ttl_ms = 30 * MIN;
    log[n++].idem_key = nk_slice_str("i1");
    log[n] = put("k2", "v2", base + 1);
    log[n++].ttl_ms = 1000;
    log[n] = put("k1", "v1-cas", base + 10 * MIN); /* CAS on entry 1 (index filled below) */
    log[n++].has_if_match = true;
    log[n] = put("k2", "v2-new", base + 11 * MIN);
    log[n++].if_not_exists = true;
    log[n] = put("k1", "v1", base + 12 * MIN); /* retry of entry 1: stored result */
    log[n].ttl_ms = 30 * MIN;
    log[n++].idem_key = nk_slice_str("i1");
    log[n] = put("k3", "v3", base + 13 * MIN);
    log[n].ttl_ms = 2 * MIN;
    log[n++].idem_key = nk_slice_str("i3");
    log[n++] = (struct kv_cmd){.op = KV_OP_DELETE, .timestamp_ms = base + 14 * MIN,
                               .key = nk_slice_str("k1")};
    log[n] = put("k3", "again", base + 14 * MIN + 1); /* k3 still live: if_not_exists fails */
    log[n++].if_not_exists = true;
    log[n] = put("k3", "v3", base + 29 * MIN); /* retry of i3 after the window: executes */
    log[n].ttl_ms = 2 * MIN;
    log[n++].idem_key = nk_slice_str("i3");
    log[n++] = (struct kv_cmd){.op = KV_OP_DELETE, .timestamp_ms = base + 32 * MIN,
                               .key = nk_slice_str("k3")};

    /* the original run at the time of the log, and replays a few minutes, two
     * hours and three days later (a follower catching up, a restart) */
    const uint64_t lag[] = {0, 5 * MIN, 120 * MIN, 3ULL * 24 * 60 * MIN};
    struct kv_result res[4][10];
    struct replica rp[4];
    for (int k = 0; k < 4; k++) {
        char name[32];
        snprintf(name, sizeof name, "replica-%d", k);
        replica_open(&rp[k], name, base + 40 * MIN + lag[k]);
        for (int i = 0; i < n; i++) {
            struct kv_cmd c = log[i];
            if (c.has_if_match) {
                c.if_match_term = 1;
                c.if_match_index = 1;
            }
            struct nk_buf b;
            nk_buf_init(&b);
            kv_cmd_encode(&c, &b);
            NK_REQUIRE_OK(kv_apply(rp[k].kv, 3, 1, (uint64_t)i + 1, b.data, b.len, &res[k][i]));
            nk_buf_free(&b);
            replica_persist_and_compact(&rp[k]);
        }
    }
    /* what the original run must have answered */
    NK_CHECK(res[0][2].code == NK_CODE_OK);        /* CAS while k1 lives */
    NK_CHECK(res[0][3].code == NK_CODE_OK);        /* k2 expired before */
    NK_CHECK(res[0][4].code == NK_CODE_OK && res[0][4].index == 1); /* stored result */
    NK_CHECK(res[0][6].code == NK_CODE_OK && res[0][6].tombstoned);
    NK_CHECK(res[0][7].code == NK_ALREADY_EXISTS);
    NK_CHECK(res[0][8].code == NK_CODE_OK && res[0][8].index == 9); /* executed afresh */
    NK_CHECK(res[0][9].code == NK_CODE_OK && !res[0][9].tombstoned); /* k3 expired at 31 min */
    for (int k = 1; k < 4; k++) {
        for (int i = 0; i < n; i++) {
            NK_CHECK(res[k][i].code == res[0][i].code);
            NK_CHECK(res[k][i].term == res[0][i].term && res[k][i].index == res[0][i].index);
            NK_CHECK(res[k][i].tombstoned == res[0][i].tombstoned);
            NK_CHECK(res[k][i].has_current == res[0][i].has_current);
        }
        /* the same state: every key reads the same at the same reader time */
        const char *keys[] = {"k1", "k2", "k3"};
        for (int j = 0; j < 3; j++) {
            struct nk_buf a, b;
            nk_buf_init(&a);
            nk_buf_init(&b);
            uint64_t ta = 0, ia = 0, tb = 0, ib = 0;
            bool fa = false, fb = false;
            uint64_t at = base + 20 * MIN;
            NK_REQUIRE_OK(kv_get(rp[0].kv, 3, nk_slice_str(keys[j]), at, &a, &ta, &ia, &fa));
            NK_REQUIRE_OK(kv_get(rp[k].kv, 3, nk_slice_str(keys[j]), at, &b, &tb, &ib, &fb));
            NK_CHECK(fa == fb && ia == ib && nk_slice_eq(nk_slice_make(a.data, a.len),
                                                          nk_slice_make(b.data, b.len)));
            nk_buf_free(&a);
            nk_buf_free(&b);
        }
        uint64_t t0, tk;
        NK_REQUIRE_OK(kv_shard_time(rp[0].kv, 3, &t0));
        NK_REQUIRE_OK(kv_shard_time(rp[k].kv, 3, &tk));
        NK_CHECK(t0 == tk && t0 == base + 32 * MIN);
    }
    for (int k = 0; k < 4; k++)
        replica_close(&rp[k]);
}

NK_TEST(a_command_stamped_earlier_than_the_shards_time_is_applied_at_the_shards_time)
{
    struct env e;
    NK_REQUIRE(env_open(&e));
    /* a new leader whose clock is behind the last one: its command must not
     * see a value as live that an earlier entry already saw expire */
    struct kv_cmd a = put("m", "1", T(1000));
    a.ttl_ms = 100;
    apply(&e, 11, a);
    apply(&e, 11, put("other", "x", T(5000)));
    struct kv_cmd ine = put("m", "2", T(1050)); /* behind the shard's time */
    ine.if_not_exists = true;
    NK_CHECK(apply(&e, 11, ine).code == NK_CODE_OK);
    uint64_t t;
    NK_REQUIRE_OK(kv_shard_time(e.kv, 11, &t));
    NK_CHECK(t == T(5000));
    env_close(&e);
}

NK_TEST(stamping_a_command_in_place_changes_only_its_timestamp)
{
    struct kv_cmd c = put("key", "value", 7);
    c.ttl_ms = 9;
    struct nk_buf b;
    nk_buf_init(&b);
    kv_cmd_encode(&c, &b);
    NK_CHECK(kv_cmd_stamp(b.data, b.len, 123456789));
    struct kv_cmd d;
    NK_REQUIRE_OK(kv_cmd_decode(b.data, b.len, &d));
    NK_CHECK(d.timestamp_ms == 123456789 && d.ttl_ms == 9 && d.key.len == 3);
    uint64_t ts;
    NK_CHECK(kv_cmd_timestamp(b.data, b.len, &ts) && ts == 123456789);
    NK_CHECK(kv_cmd_fingerprint(&c) == kv_cmd_fingerprint(&d));
    nk_buf_free(&b);
}
