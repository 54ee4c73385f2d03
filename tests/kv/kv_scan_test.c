/* Tests of range scans (src/kv/scan.c): the k-way merge of per-shard LSM
 * iterators and the page bounds, over a real LSM on disk, against a sorted
 * model. */
#include "kv/kv.h"
#include "lsm/lsm.h"
#include "testlib.h"

#define NSH 16

static uint64_t T0;
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
    o.write_buffer_size = 64 << 10; /* small memtables: scans cross tables too */
    nk_status s = lsm_open(e->dir, &o, &e->db);
    if (!nk_ok(s)) {
        nk_status_free(&s);
        return false;
    }
    NK_ASSERT(nk_ok(kv_store_open(e->db, NULL, &e->kv)));
    return true;
}

static void env_close(struct env *e)
{
    kv_store_close(e->kv);
    lsm_close(e->db);
}

static uint64_t next_index = 1;

static void apply_put(struct env *e, uint16_t shard, const char *k, const char *v, uint64_t ts,
                      uint64_t ttl)
{
    struct kv_cmd c = {.op = KV_OP_PUT, .timestamp_ms = ts, .key = nk_slice_str(k),
                       .value = nk_slice_str(v), .ttl_ms = ttl};
    struct nk_buf b;
    nk_buf_init(&b);
    kv_cmd_encode(&c, &b);
    struct kv_result r;
    NK_ASSERT(nk_ok(kv_apply(e->kv, shard, 1, next_index++, b.data, b.len, &r)));
    nk_buf_free(&b);
}

static void apply_del(struct env *e, uint16_t shard, const char *k, uint64_t ts)
{
    struct kv_cmd c = {.op = KV_OP_DELETE, .timestamp_ms = ts, .key = nk_slice_str(k)};
    struct nk_buf b;
    nk_buf_init(&b);
    kv_cmd_encode(&c, &b);
    struct kv_result r;
    NK_ASSERT(nk_ok(kv_apply(e->kv, shard, 1, next_index++, b.data, b.len, &r)));
    nk_buf_free(&b);
}

static uint16_t ALL[NSH];

static struct kv_scan_options opts(uint64_t now)
{
    for (int i = 0; i < NSH; i++)
        ALL[i] = (uint16_t)i;
    return (struct kv_scan_options){.limit = 10000, .max_bytes = 1 << 30,
                                    .max_examined = 1000000, .now_ms = now, .shards = ALL,
                                    .nshards = NSH};
}

/* model: key -> live value (NULL: absent), keys "k000".."k299" */
#define NKEYS 300
static char model_val[NKEYS][16];
static bool model_live[NKEYS];
static int model_shard[NKEYS];

NK_TEST(merge_yields_every_shards_keys_once_in_key_order_like_a_sorted_model)
{
    struct env e;
    NK_REQUIRE(env_open(&e));
    uint64_t seed = nk_test_seed();
    srand((unsigned)seed);
    for (int i = 0; i < NKEYS; i++)
        model_shard[i] = rand() % NSH;
    for (int step = 0; step < 3000; step++) {
        int i = rand() % NKEYS;
        char k[16];
        snprintf(k, sizeof k, "k%03d", i);
        if (rand() % 4 == 0) {
            apply_del(&e, (uint16_t)model_shard[i], k, T(step));
            model_live[i] = false;
        } else {
            snprintf(model_val[i], sizeof model_val[i], "v%d", step);
            apply_put(&e, (uint16_t)model_shard[i], k, model_val[i], T(step), 0);
            model_live[i] = true;
        }
        if (step == 1500)
            NK_REQUIRE_OK(lsm_flush(e.db));
    }
    struct kv_scan_options o = opts(T(5000));
    struct kv_merge_iter *m;
    const struct lsm_snapshot *snap = lsm_snapshot_new(e.db);
    NK_REQUIRE_OK(kv_merge_new(e.kv, snap, &o, &m));
    int want = 0;
    for (; kv_merge_valid(m); kv_merge_next(m)) {
        while (want < NKEYS && !model_live[want])
            want++;
        NK_REQUIRE(want < NKEYS);
        char k[16];
        snprintf(k, sizeof k, "k%03d", want);
        struct nk_slice got = kv_merge_key(m);
        NK_CHECK(got.len == 4 && memcmp(got.data, k, 4) == 0);
        struct nk_slice v = kv_merge_value(m);
        NK_CHECK(v.len == strlen(model_val[want]) && memcmp(v.data, model_val[want], v.len) == 0);
        NK_CHECK(kv_merge_shard(m) == model_shard[want]);
        NK_CHECK(!kv_merge_expired(m));
        want++;
    }
    while (want < NKEYS && !model_live[want])
        want++;
    NK_CHECK(want == NKEYS); /* nothing missing at the end */
    NK_REQUIRE_OK(kv_merge_status(m));
    kv_merge_free(m);
    lsm_snapshot_release(e.db, snap);
    env_close(&e);
}

/* Pages of every size put together give the one-page result: the token
 * key (resume_after) loses and repeats nothing. */
NK_TEST(pages_chained_by_resume_after_equal_one_scan_at_every_page_size)
{
    struct env e;
    NK_REQUIRE(env_open(&e));
    for (int i = 0; i < 200; i++) {
        char k[16], v[16];
        snprintf(k, sizeof k, "p%03d", i);
        snprintf(v, sizeof v, "%d", i);
        apply_put(&e, (uint16_t)(i * 7 % NSH), k, v, T(i), i % 5 == 0 ? 10 : 0);
    }
    /* keys with i % 5 == 0 expire at T(i) + 10 <= T(2000) */
    for (uint32_t limit = 1; limit <= 64; limit = limit * 3 + 1) {
        struct kv_scan_options o = opts(T(2000));
        o.prefix = nk_slice_str("p");
        o.limit = limit;
        o.max_examined = limit + 2; /* also stop inside runs of expired keys */
        struct nk_buf after;
        nk_buf_init(&after);
        int next = 0, pages = 0;
        for (;;) {
            struct kv_scan_page p;
            kv_scan_page_init(&p);
            o.has_after = after.len > 0;
            o.after = nk_slice_make(after.data, after.len);
            NK_REQUIRE_OK(kv_scan(e.kv, &o, &p));
            NK_CHECK(p.n <= limit && p.nrevs == NSH);
            for (uint32_t j = 0; j < p.n; j++) {
                while (next % 5 == 0)
                    next++;
                char k[16];
                snprintf(k, sizeof k, "p%03d", next);
                NK_CHECK(p.entries[j].key_len == 4 &&
                         memcmp(p.data.data + p.entries[j].key_off, k, 4) == 0);
                next++;
            }
            pages++;
            bool more = p.more;
            nk_buf_clear(&after);
            nk_buf_append(&after, p.resume_after.data, p.resume_after.len);
            kv_scan_page_free(&p);
            if (!more)
                break;
            NK_REQUIRE(pages < 1000);
        }
        while (next < 200 && next % 5 == 0)
            next++;
        NK_CHECK(next == 200);
        nk_buf_free(&after);
    }
    env_close(&e);
}

NK_TEST(bounds_prefix_keys_only_and_byte_budget_are_honoured)
{
    struct env e;
    NK_REQUIRE(env_open(&e));
    const char *keys[] = {"a", "ab", "abc", "abd", "b", "ba", "c"};
    for (int i = 0; i < 7; i++)
        apply_put(&e, (uint16_t)(i % NSH), keys[i], "0123456789", T(i), 0);
    struct kv_scan_options o = opts(T(100));
    o.start = nk_slice_str("ab");
    o.end = nk_slice_str("b");
    struct kv_scan_page p;
    kv_scan_page_init(&p);
    NK_REQUIRE_OK(kv_scan(e.kv, &o, &p));
    NK_CHECK(p.n == 3 && !p.more); /* ab abc abd */
    kv_scan_page_free(&p);
    o = opts(T(100));
    o.prefix = nk_slice_str("ab");
    o.keys_only = true;
    kv_scan_page_init(&p);
    NK_REQUIRE_OK(kv_scan(e.kv, &o, &p));
    NK_CHECK(p.n == 3 && p.entries[0].val_len == 0);
    kv_scan_page_free(&p);
    o = opts(T(100));
    o.max_bytes = 15; /* one entry of 1 + 10 bytes, then the budget is spent */
    kv_scan_page_init(&p);
    NK_REQUIRE_OK(kv_scan(e.kv, &o, &p));
    NK_CHECK(p.n == 1 && p.more && p.resume_after.len == 1 && p.resume_after.data[0] == 'a');
    kv_scan_page_free(&p);
    o.max_bytes = 1; /* smaller than any entry: still one entry per page */
    kv_scan_page_init(&p);
    NK_REQUIRE_OK(kv_scan(e.kv, &o, &p));
    NK_CHECK(p.n == 1 && p.more);
    kv_scan_page_free(&p);
    env_close(&e);
}

/* Expiry is the reader's clock: the same record is returned before its
 * expiry and skipped after, and a page's revisions are each shard's
 * applied entry. */
NK_TEST(expired_keys_never_appear_and_revisions_are_the_applied_entries)
{
    struct env e;
    NK_REQUIRE(env_open(&e));
    apply_put(&e, 3, "x", "1", T(0), 1000);
    apply_put(&e, 4, "y", "2", T(0), 0);
    struct kv_scan_options o = opts(T(500));
    struct kv_scan_page p;
    kv_scan_page_init(&p);
    NK_REQUIRE_OK(kv_scan(e.kv, &o, &p));
    NK_CHECK(p.n == 2 && p.entries[0].expiry_ms == T(1000));
    NK_CHECK(p.revs[3].shard == 3 && p.revs[3].index == next_index - 2);
    NK_CHECK(p.revs[4].index == next_index - 1 && p.revs[5].index == 0);
    kv_scan_page_free(&p);
    o = opts(T(1000));
    kv_scan_page_init(&p);
    NK_REQUIRE_OK(kv_scan(e.kv, &o, &p));
    NK_CHECK(p.n == 1 && p.data.data[p.entries[0].key_off] == 'y');
    NK_CHECK(p.examined == 2);
    kv_scan_page_free(&p);
    env_close(&e);
}
