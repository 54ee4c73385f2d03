/* Tests of the change feed and the expiry index (src/kv/feed.c, docs/watch.md)
 * over a real LSM: what each applied entry records, TTL expiry decided once by
 * the shard's time, determinism across replicas, retention and its floor. */
#include "kv/kv.h"
#include "lsm/lsm.h"
#include "testlib.h"

#define SHARD 5
#define NK_CHECK_STR_EQ(a, b)                                                                      \
    do {                                                                                           \
        if (strcmp((a), (b)) != 0) {                                                               \
            fprintf(stderr, "  %s:%d: \"%s\" != \"%s\"\n", __FILE__, __LINE__, (a), (b));            \
            nk_test_failed_ = 1;                                                                   \
        }                                                                                          \
    } while (0)
static const uint64_t T0 = 1800000000000ull; /* a fixed replicated time base */

struct env {
    struct lsm_db *db;
    struct kv_store *kv;
};

static void env_open(struct env *e, const char *name, uint64_t max_entries)
{
    char dir[1200];
    snprintf(dir, sizeof dir, "%s/%s", nk_test_tmpdir(), name);
    struct lsm_options o;
    lsm_options_default(&o);
    NK_ASSERT(nk_ok(lsm_open(dir, &o, &e->db)));
    struct kv_options ko;
    kv_options_default(&ko);
    if (max_entries)
        ko.feed_max_entries = max_entries;
    NK_ASSERT(nk_ok(kv_store_open(e->db, &ko, &e->kv)));
}

static void env_close(struct env *e)
{
    kv_store_close(e->kv);
    lsm_close(e->db);
}

static struct kv_result apply(struct env *e, uint64_t index, struct kv_cmd c)
{
    struct nk_buf enc;
    nk_buf_init(&enc);
    kv_cmd_encode(&c, &enc);
    struct kv_result r;
    NK_ASSERT(nk_ok(kv_apply(e->kv, SHARD, 1, index, enc.data, enc.len, &r)));
    nk_buf_free(&enc);
    return r;
}

static struct kv_cmd put(const char *k, const char *v, uint64_t t, uint64_t ttl)
{
    return (struct kv_cmd){.op = KV_OP_PUT, .timestamp_ms = t, .key = nk_slice_str(k),
                           .value = nk_slice_str(v), .ttl_ms = ttl};
}

static struct kv_cmd del(const char *k, uint64_t t)
{
    return (struct kv_cmd){.op = KV_OP_DELETE, .timestamp_ms = t, .key = nk_slice_str(k)};
}

/* The feed as text: "index:kind key[=value];..." per record, records by '|'. */
struct dump {
    struct nk_buf b;
};

static bool dump_rec(void *ctx, const struct kv_feed_record *rec)
{
    struct dump *d = ctx;
    char tmp[64];
    snprintf(tmp, sizeof tmp, "%s%llu:", d->b.len ? "|" : "", (unsigned long long)rec->index);
    nk_buf_append(&d->b, tmp, strlen(tmp));
    struct nk_reader r;
    nk_reader_init(&r, rec->events.data, rec->events.len);
    struct kv_feed_event ev;
    for (uint32_t i = 0; i < rec->count; i++) {
        NK_ASSERT(kv_feed_next_event(&r, &ev));
        const char *kind = ev.kind == KV_EV_PUT ? "put " : ev.kind == KV_EV_DELETE ? "del " : "exp ";
        nk_buf_append(&d->b, kind, 4);
        nk_buf_append(&d->b, ev.key.data, ev.key.len);
        if (ev.kind == KV_EV_PUT) {
            nk_buf_put_u8(&d->b, '=');
            nk_buf_append(&d->b, ev.value.data, ev.value.len);
        }
        nk_buf_put_u8(&d->b, ';');
    }
    NK_ASSERT(nk_reader_left(&r) == 0);
    return true;
}

static char *feed(struct env *e, uint64_t after)
{
    struct dump d;
    nk_buf_init(&d.b);
    NK_ASSERT(nk_ok(kv_feed_read(e->kv, SHARD, after, UINT64_MAX, dump_rec, &d)));
    nk_buf_put_u8(&d.b, 0);
    return (char *)d.b.data; /* the caller frees */
}

NK_TEST(each_entry_that_changes_keys_records_its_events_and_nothing_else_does)
{
    struct env e;
    env_open(&e, "db", 0);
    apply(&e, 1, put("a", "1", T0, 0));
    apply(&e, 2, put("b", "2", T0 + 1, 0));
    struct kv_cmd cas = put("a", "x", T0 + 2, 0);
    cas.has_if_match = true; /* fails: a is at 1.1, not 1.9 */
    cas.if_match_term = 1;
    cas.if_match_index = 9;
    NK_CHECK(apply(&e, 3, cas).code == NK_FAILED_PRECONDITION);
    apply(&e, 4, del("missing", T0 + 3)); /* deletes nothing */
    apply(&e, 5, del("b", T0 + 4));
    struct kv_cmd ine = put("a", "y", T0 + 5, 0);
    ine.if_not_exists = true; /* fails: a exists */
    NK_CHECK(apply(&e, 6, ine).code == NK_ALREADY_EXISTS);
    char *f = feed(&e, 0);
    NK_CHECK_STR_EQ(f, "1:put a=1;|2:put b=2;|5:del b;");
    free(f);
    f = feed(&e, 2); /* resume after revision 2 */
    NK_CHECK_STR_EQ(f, "5:del b;");
    free(f);
    env_close(&e);
}

NK_TEST(a_ttl_key_expires_once_at_the_first_entry_whose_time_reaches_it_and_not_if_replaced)
{
    struct env e;
    env_open(&e, "db", 0);
    apply(&e, 1, put("t", "v", T0, 1000));      /* expires at T0+1000 */
    apply(&e, 2, put("u", "v", T0, 1000));      /* replaced before it expires */
    apply(&e, 3, put("u", "w", T0 + 10, 0));
    apply(&e, 4, put("w", "v", T0 + 20, 5000)); /* deleted before it expires */
    apply(&e, 5, del("w", T0 + 30));
    apply(&e, 6, put("x", "1", T0 + 999, 0));   /* not yet */
    apply(&e, 7, put("y", "1", T0 + 1000, 0));  /* t expires here */
    apply(&e, 8, put("z", "1", T0 + 9000, 0));  /* nothing more: u replaced, w deleted */
    char *f = feed(&e, 6);
    NK_CHECK_STR_EQ(f, "7:exp t;put y=1;|8:put z=1;");
    free(f);
    struct nk_buf v;
    nk_buf_init(&v);
    uint64_t term, index;
    bool found = true;
    /* even a reader with an early clock no longer finds it: apply deleted it */
    NK_REQUIRE_OK(kv_get(e.kv, SHARD, nk_slice_str("t"), T0, &v, &term, &index, &found));
    NK_CHECK(!found);
    NK_REQUIRE_OK(kv_get(e.kv, SHARD, nk_slice_str("u"), T0 + 9000, &v, &term, &index, &found));
    NK_CHECK(found && v.len == 1 && v.data[0] == 'w');
    nk_buf_free(&v);
    env_close(&e);
}

NK_TEST(two_replicas_applying_the_same_entries_hold_byte_identical_feeds)
{
    struct env a, b;
    env_open(&a, "a", 0);
    env_open(&b, "b", 0);
    uint64_t rng = 42;
    for (uint64_t i = 1; i <= 400; i++) {
        rng = rng * 6364136223846793005ull + 1442695040888963407ull;
        char k[16];
        snprintf(k, sizeof k, "k%llu", (unsigned long long)(rng >> 60));
        uint64_t t = T0 + i * 7;
        struct kv_cmd c = (rng >> 20) % 3 == 0 ? del(k, t) : put(k, "v", t, (rng >> 30) % 4 * 50);
        struct kv_result ra = apply(&a, i, c), rb = apply(&b, i, c);
        NK_CHECK(ra.code == rb.code);
    }
    char *fa = feed(&a, 0), *fb = feed(&b, 0);
    NK_CHECK_STR_EQ(fa, fb);
    NK_CHECK(strstr(fa, "exp ") != NULL && strstr(fa, "del ") != NULL);
    free(fa);
    free(fb);
    env_close(&a);
    env_close(&b);
}

NK_TEST(retention_keeps_the_newest_records_and_raises_the_floor_past_the_dropped_ones)
{
    struct env e;
    env_open(&e, "db", 16);
    for (uint64_t i = 1; i <= 40; i++) {
        char k[16];
        snprintf(k, sizeof k, "k%llu", (unsigned long long)i);
        apply(&e, i, put(k, "v", T0 + i, 0));
    }
    uint64_t floor = 0;
    NK_REQUIRE_OK(kv_feed_floor(e.kv, SHARD, &floor));
    NK_CHECK(floor >= 40 - 17 && floor < 40);
    char *f = feed(&e, 0);
    /* every record after the floor is still there, none at or below it */
    char first[32];
    snprintf(first, sizeof first, "%llu:put k%llu=v;", (unsigned long long)floor + 1,
             (unsigned long long)floor + 1);
    NK_CHECK(strncmp(f, first, strlen(first)) == 0);
    NK_CHECK(strstr(f, "|40:put k40=v;") != NULL);
    free(f);
    env_close(&e);
}

/* A replica whose kv_store was reopened (a restart: what apply caches about
 * the expiry index is gone) and then applies a TTL put expiring later than
 * a key already due must still expire the due key at the same entry as a
 * replica that never restarted: the feeds and the states stay identical. */
NK_TEST(a_restarted_replica_expires_due_keys_at_the_same_entry_as_one_that_kept_running)
{
    struct env a, b;
    env_open(&a, "a", 0);
    env_open(&b, "b", 0);
    struct kv_cmd c1 = put("early", "v", T0, 100);    /* due at T0+100 */
    struct kv_cmd c2 = put("x", "1", T0 + 10, 0);
    apply(&a, 1, c1);
    apply(&b, 1, c1);
    apply(&a, 2, c2);
    apply(&b, 2, c2);
    /* b restarts: a new kv_store over the same LSM */
    kv_store_close(b.kv);
    struct kv_options ko;
    kv_options_default(&ko);
    NK_REQUIRE_OK(kv_store_open(b.db, &ko, &b.kv));
    struct kv_cmd c3 = put("late", "v", T0 + 20, 100000); /* expires long after */
    struct kv_cmd c4 = put("y", "1", T0 + 500, 0);        /* early is due here */
    apply(&a, 3, c3);
    apply(&b, 3, c3);
    apply(&a, 4, c4);
    apply(&b, 4, c4);
    char *fa = feed(&a, 0), *fb = feed(&b, 0);
    NK_CHECK_STR_EQ(fa, fb);
    NK_CHECK(strstr(fa, "4:exp early;put y=1;") != NULL);
    free(fa);
    free(fb);
    env_close(&a);
    env_close(&b);
}
