/* The vector state machine (src/vector cmd.c, store.c) over a real LSM on
 * disk: the command codec, CONTRACT's vector semantics, idempotency, a model
 * test with restarts, and determinism of apply. */
#include <math.h>

#include "kv/kv.h"
#include "lsm/lsm.h"
#include "testlib.h"
#include "vecgen.h"
#include "vector/vector.h"

/* commands carry realistic leader timestamps (the LSM expires idempotency
 * records by the wall clock) */
static uint64_t T0;
#define T(ms) (T0 + (ms))

struct env {
    struct lsm_db *db;
    struct vec_store *vs;
    char dir[1200];
    uint64_t next_index;
};

static bool env_open_at(struct env *e, const char *dir)
{
    if (!T0)
        T0 = nk_wall_ms();
    snprintf(e->dir, sizeof e->dir, "%s", dir);
    struct lsm_options o;
    lsm_options_default(&o);
    o.write_buffer_size = 1 << 20; /* flushes and compactions happen in the tests */
    nk_status s = lsm_open(e->dir, &o, &e->db);
    if (!nk_ok(s)) {
        fprintf(stderr, "  lsm_open: %s\n", nk_status_msg(s));
        nk_status_free(&s);
        return false;
    }
    struct vec_store_options vo;
    vec_store_options_default(&vo);
    vo.idem_retention_ms = 10000;
    NK_ASSERT(nk_ok(vec_store_open(e->db, &vo, &e->vs)));
    if (!e->next_index)
        e->next_index = 1;
    return true;
}

static bool env_open(struct env *e, const char *name)
{
    char dir[1200];
    snprintf(dir, sizeof dir, "%s/%s", nk_test_tmpdir(), name);
    return env_open_at(e, dir);
}

static void env_close(struct env *e)
{
    vec_store_close(e->vs);
    lsm_close(e->db);
}

/* close and reopen: the in-memory indexes come back from the LSM */
static bool env_restart(struct env *e, const uint16_t *shards, size_t n)
{
    char dir[1200];
    snprintf(dir, sizeof dir, "%s", e->dir);
    env_close(e);
    if (!env_open_at(e, dir))
        return false;
    for (size_t i = 0; i < n; i++) {
        nk_status s = vec_store_load_shard(e->vs, shards[i]);
        if (!nk_ok(s)) {
            fprintf(stderr, "  load shard %u: %s\n", shards[i], nk_status_msg(s));
            nk_status_free(&s);
            return false;
        }
    }
    return true;
}

static struct vec_result apply_at(struct env *e, uint16_t shard, uint64_t index,
                                  const struct vec_cmd *c)
{
    struct nk_buf b;
    nk_buf_init(&b);
    vec_cmd_encode(c, &b);
    struct vec_result r;
    nk_status s = vec_apply(e->vs, shard, 1, index, 0, b.data, b.len, &r);
    if (!nk_ok(s))
        nk_panic("vec_apply: %s", nk_status_msg(s));
    nk_buf_free(&b);
    return r;
}

static struct vec_result apply(struct env *e, uint16_t shard, const struct vec_cmd *c)
{
    return apply_at(e, shard, e->next_index++, c);
}

static struct vec_cmd create_cmd(const char *ns, uint32_t dims, enum vec_metric m,
                                 enum vec_index_type t)
{
    struct vec_cmd c = {.op = VEC_OP_CREATE_INDEX, .timestamp_ms = T(1000), .ns = nk_slice_str(ns)};
    vec_index_options_default(&c.opt);
    c.opt.dims = dims;
    c.opt.metric = m;
    c.opt.type = t;
    return c;
}

static struct vec_cmd insert_cmd(const char *ns, const char *id, const float *v, uint32_t dims)
{
    return (struct vec_cmd){.op = VEC_OP_INSERT, .timestamp_ms = T(1000), .ns = nk_slice_str(ns),
                            .id = nk_slice_str(id), .vector = (const uint8_t *)v, .dims = dims};
}

static struct vec_cmd simple_cmd(enum vec_op op, const char *ns, const char *id)
{
    return (struct vec_cmd){.op = op, .timestamp_ms = T(1000), .ns = nk_slice_str(ns),
                            .id = id ? nk_slice_str(id) : nk_slice_make(NULL, 0)};
}

/* ------------------------------------------------------------------ codec */

NK_TEST(commands_round_trip_and_malformed_bytes_are_refused)
{
    float v[3] = {1.5f, -2, 0};
    struct vec_cmd cmds[4] = {create_cmd("ns", 3, VEC_METRIC_COSINE, VEC_INDEX_HNSW),
                              simple_cmd(VEC_OP_DROP_INDEX, "ns", NULL),
                              insert_cmd("ns", "a", v, 3),
                              simple_cmd(VEC_OP_DELETE, "ns", "a")};
    cmds[2].idem_key = nk_slice_str("idem");
    for (int i = 0; i < 4; i++) {
        struct nk_buf b;
        nk_buf_init(&b);
        vec_cmd_encode(&cmds[i], &b);
        NK_CHECK(vec_cmd_is_vector(b.data, b.len));
        struct vec_cmd d;
        NK_REQUIRE_OK(vec_cmd_decode(b.data, b.len, &d));
        NK_CHECK(d.op == cmds[i].op && nk_slice_eq(d.ns, cmds[i].ns) &&
                 nk_slice_eq(d.id, cmds[i].id) && nk_slice_eq(d.idem_key, cmds[i].idem_key));
        NK_CHECK(vec_cmd_fingerprint(&d) == vec_cmd_fingerprint(&cmds[i]));
        if (d.op == VEC_OP_INSERT)
            NK_CHECK(d.dims == 3 && !memcmp(d.vector, v, sizeof v));
        if (d.op == VEC_OP_CREATE_INDEX)
            NK_CHECK(!memcmp(&d.opt, &cmds[i].opt, sizeof d.opt));
        /* every truncation and one trailing byte are refused */
        for (size_t n = 0; n < b.len; n++) {
            nk_status s = vec_cmd_decode(b.data, n, &d);
            NK_CHECK(!nk_ok(s));
            nk_status_free(&s);
        }
        nk_buf_put_u8(&b, 0);
        nk_status s = vec_cmd_decode(b.data, b.len, &d);
        NK_CHECK(s.code == NK_DATA_LOSS && strstr(nk_status_msg(s), "trailing"));
        nk_status_free(&s);
        nk_buf_free(&b);
    }
    /* a KV command is not a vector command */
    uint8_t kv[] = {1, 1, 0, 1, 'k', 0, 0, 0, 0};
    NK_CHECK(!vec_cmd_is_vector(kv, sizeof kv));
    /* NaN inside an encoded insert */
    float bad[2] = {1, NAN};
    struct vec_cmd c = insert_cmd("ns", "x", bad, 2);
    nk_status s = vec_cmd_validate(&c);
    NK_CHECK(s.code == NK_INVALID_ARGUMENT && strstr(nk_status_msg(s), "value 1 is NaN"));
    nk_status_free(&s);
    /* a fingerprint ignores timestamp and idempotency key, not the vector */
    struct vec_cmd c1 = insert_cmd("ns", "a", v, 3), c2 = c1;
    c2.timestamp_ms = 99;
    c2.idem_key = nk_slice_str("z");
    NK_CHECK(vec_cmd_fingerprint(&c1) == vec_cmd_fingerprint(&c2));
    float w[3] = {1.5f, -2, 1};
    c2.vector = (const uint8_t *)w;
    NK_CHECK(vec_cmd_fingerprint(&c1) != vec_cmd_fingerprint(&c2));
}

NK_TEST(validation_helpers_name_the_problem)
{
    char big[1100];
    memset(big, 'x', sizeof big);
    struct {
        nk_status s;
        const char *want;
    } cases[] = {
        {vec_validate_namespace(nk_slice_make(NULL, 0)), "namespace is empty"},
        {vec_validate_namespace(nk_slice_make(big, 256)),
         "namespace is 256 bytes; the limit is 255"},
        {vec_validate_id(nk_slice_make(big, 0)), "vector id is empty"},
        {vec_validate_id(nk_slice_make(big, 1025)), "vector id is 1025 bytes; the limit is 1024"},
        {vec_validate_dims(0), "dimensions is 0; it must be 1 to 4096"},
        {vec_validate_dims(5000), "dimensions is 5000"},
        {vec_validate_k(0), "k is 0; it must be 1 to 1000"},
        {vec_validate_k(1001), "k is 1001"},
        {vec_metric_from_proto(0, &(enum vec_metric){0}), "distance 0 is unspecified"},
        {vec_index_type_from_proto(7, &(enum vec_index_type){0}), "index_type 7 is unknown"},
    };
    for (size_t i = 0; i < NK_ARRAY_LEN(cases); i++) {
        NK_CHECK(cases[i].s.code == NK_INVALID_ARGUMENT);
        if (!strstr(nk_status_msg(cases[i].s), cases[i].want)) {
            fprintf(stderr, "  got '%s', want '%s'\n", nk_status_msg(cases[i].s), cases[i].want);
            NK_CHECK(false);
        }
        nk_status_free(&cases[i].s);
    }
    NK_CHECK(vec_shard_for_namespace(nk_slice_str("hello"), 1024) == 309); /* CONTRACT's value */
}

/* ---------------------------------------------------------------- semantics */

NK_TEST(apply_follows_the_contract_vector_semantics)
{
    struct env e = {0};
    NK_REQUIRE(env_open(&e, "db"));
    float v[4] = {1, 2, 3, 4}, w[4] = {4, 3, 2, 1}, v3[3] = {1, 2, 3};
    struct vec_cmd c = create_cmd("emb", 4, VEC_METRIC_L2, VEC_INDEX_HNSW);
    struct vec_result r = apply(&e, 7, &c);
    NK_CHECK(r.code == NK_CODE_OK && r.created && r.index == 1);
    r = apply(&e, 7, &c); /* same parameters */
    NK_CHECK(r.code == NK_CODE_OK && !r.created);
    struct vec_cmd other = create_cmd("emb", 8, VEC_METRIC_L2, VEC_INDEX_HNSW);
    r = apply(&e, 7, &other);
    NK_CHECK(r.code == NK_ALREADY_EXISTS && strstr(r.msg, "other parameters"));

    struct vec_cmd ins = insert_cmd("nope", "a", v, 4);
    r = apply(&e, 7, &ins);
    NK_CHECK(r.code == NK_NOT_FOUND && strstr(r.msg, "'nope' does not exist"));
    ins = insert_cmd("emb", "a", v3, 3);
    r = apply(&e, 7, &ins);
    NK_CHECK(r.code == NK_INVALID_ARGUMENT && strstr(r.msg, "vector has 3 dimensions"));
    ins = insert_cmd("emb", "a", v, 4);
    r = apply(&e, 7, &ins);
    NK_CHECK(r.code == NK_CODE_OK && !r.replaced && r.index == 6);
    ins = insert_cmd("emb", "a", w, 4);
    r = apply(&e, 7, &ins);
    NK_CHECK(r.code == NK_CODE_OK && r.replaced);

    float got[VEC_MAX_DIMS];
    uint32_t dims = 0;
    bool found = false;
    NK_REQUIRE_OK(vec_get(e.vs, 7, nk_slice_str("emb"), nk_slice_str("a"), got, &dims, &found));
    NK_CHECK(found && dims == 4 && !memcmp(got, w, sizeof w));
    NK_REQUIRE_OK(vec_get(e.vs, 7, nk_slice_str("emb"), nk_slice_str("b"), got, &dims, &found));
    NK_CHECK(!found);
    nk_status s = vec_get(e.vs, 7, nk_slice_str("nope"), nk_slice_str("a"), got, &dims, &found);
    NK_CHECK(s.code == NK_NOT_FOUND);
    nk_status_free(&s);
    /* the index lives on shard 7 only */
    s = vec_get(e.vs, 8, nk_slice_str("emb"), nk_slice_str("a"), got, &dims, &found);
    NK_CHECK(s.code == NK_NOT_FOUND);
    nk_status_free(&s);

    struct vec_results res;
    vec_results_init(&res);
    NK_REQUIRE_OK(vec_search(e.vs, 7, nk_slice_str("emb"), w, 4, 10, 0, true, &res));
    NK_CHECK(res.n == 1 && !strcmp(res.m[0].id, "a") && res.m[0].distance == 0.0f &&
             !memcmp(res.m[0].vector, w, sizeof w));
    s = vec_search(e.vs, 7, nk_slice_str("emb"), v3, 3, 10, 0, false, &res);
    NK_CHECK(s.code == NK_INVALID_ARGUMENT && strstr(nk_status_msg(s), "3 dimensions"));
    nk_status_free(&s);
    s = vec_search(e.vs, 7, nk_slice_str("nope"), w, 4, 10, 0, false, &res);
    NK_CHECK(s.code == NK_NOT_FOUND);
    nk_status_free(&s);

    struct vec_cmd del = simple_cmd(VEC_OP_DELETE, "emb", "a");
    r = apply(&e, 7, &del);
    NK_CHECK(r.code == NK_CODE_OK && r.deleted);
    r = apply(&e, 7, &del);
    NK_CHECK(r.code == NK_CODE_OK && !r.deleted);
    del = simple_cmd(VEC_OP_DELETE, "nope", "a");
    r = apply(&e, 7, &del);
    NK_CHECK(r.code == NK_NOT_FOUND);

    struct vec_cmd drop = simple_cmd(VEC_OP_DROP_INDEX, "emb", NULL);
    r = apply(&e, 7, &drop);
    NK_CHECK(r.code == NK_CODE_OK && r.dropped);
    r = apply(&e, 7, &drop);
    NK_CHECK(r.code == NK_CODE_OK && !r.dropped);
    s = vec_search(e.vs, 7, nk_slice_str("emb"), w, 4, 10, 0, false, &res);
    NK_CHECK(s.code == NK_NOT_FOUND);
    nk_status_free(&s);
    vec_results_free(&res);

    /* the applied index is KV's record: the node reads one per shard */
    struct kv_store *kv;
    NK_REQUIRE_OK(kv_store_open(e.db, NULL, &kv));
    uint64_t term, index;
    NK_REQUIRE_OK(kv_applied(kv, 7, &term, &index));
    NK_CHECK(term == 1 && index == e.next_index - 1);
    kv_store_close(kv);

    /* an undecodable entry is a no-op that still advances the applied index */
    uint8_t junk[] = {VEC_CMD_TAG, 9, 9};
    NK_REQUIRE_OK(vec_apply(e.vs, 7, 2, 100, 0, junk, sizeof junk, &r));
    NK_CHECK(r.code == NK_DATA_LOSS);
    NK_REQUIRE_OK(kv_store_open(e.db, NULL, &kv));
    NK_REQUIRE_OK(kv_applied(kv, 7, &term, &index));
    NK_CHECK(term == 2 && index == 100);
    kv_store_close(kv);
    env_close(&e);
}

NK_TEST(memory_bound_of_an_index_is_replicated_and_enforced_in_apply)
{
    struct env e = {0};
    NK_REQUIRE(env_open(&e, "db"));
    struct vec_cmd c = create_cmd("small", 256, VEC_METRIC_COSINE, VEC_INDEX_FLAT);
    c.opt.max_bytes = VEC_MIN_MAX_BYTES;
    NK_REQUIRE(apply(&e, 1, &c).created);
    float v[256];
    for (int i = 0; i < 256; i++)
        v[i] = (float)i;
    struct vec_result r = {0};
    int i = 0;
    for (; i < 1000; i++) {
        char id[16];
        snprintf(id, sizeof id, "v%d", i);
        struct vec_cmd ins = insert_cmd("small", id, v, 256);
        r = apply(&e, 1, &ins);
        if (r.code != NK_CODE_OK)
            break;
    }
    NK_CHECK(r.code == NK_RESOURCE_EXHAUSTED && strstr(r.msg, "max_bytes is 65536"));
    fprintf(stderr, "  refused insert %d: %s\n", i, r.msg);
    uint64_t count = 0, mem = 0;
    bool found;
    NK_REQUIRE_OK(vec_index_info(e.vs, 1, nk_slice_str("small"), NULL, &count, &mem, &found));
    NK_CHECK(found && count == (uint64_t)i && mem <= VEC_MIN_MAX_BYTES);
    /* the refused vector is not in the LSM either: a restart loads the same count */
    uint16_t sh = 1;
    NK_REQUIRE(env_restart(&e, &sh, 1));
    NK_REQUIRE_OK(vec_index_info(e.vs, 1, nk_slice_str("small"), NULL, &count, NULL, &found));
    NK_CHECK(found && count == (uint64_t)i);
    env_close(&e);
}

NK_TEST(a_shard_holds_a_bounded_number_of_indexes)
{
    struct env e = {0};
    NK_REQUIRE(env_open(&e, "db"));
    char ns[16];
    for (unsigned i = 0; i < VEC_MAX_INDEXES_PER_SHARD; i++) {
        snprintf(ns, sizeof ns, "ns%u", i);
        struct vec_cmd c = create_cmd(ns, 2, VEC_METRIC_L2, VEC_INDEX_FLAT);
        NK_REQUIRE(apply(&e, 4, &c).created);
    }
    struct vec_cmd c = create_cmd("one-too-many", 2, VEC_METRIC_L2, VEC_INDEX_FLAT);
    struct vec_result r = apply(&e, 4, &c);
    NK_CHECK(r.code == NK_RESOURCE_EXHAUSTED && strstr(r.msg, "1024 vector indexes"));
    NK_CHECK(apply(&e, 5, &c).created); /* another shard has room */
    struct vec_cmd drop = simple_cmd(VEC_OP_DROP_INDEX, "ns0", NULL);
    NK_CHECK(apply(&e, 4, &drop).dropped);
    NK_CHECK(apply(&e, 4, &c).created);
    env_close(&e);
}

NK_TEST(idempotency_key_returns_the_first_result_without_executing_again)
{
    struct env e = {0};
    NK_REQUIRE(env_open(&e, "db"));
    struct vec_cmd c = create_cmd("ns", 2, VEC_METRIC_IP, VEC_INDEX_HNSW);
    c.idem_key = nk_slice_str("create-1");
    struct vec_result r1 = apply(&e, 3, &c);
    NK_CHECK(r1.created);
    struct vec_result r2 = apply(&e, 3, &c);
    NK_CHECK(r2.created && r2.index == r1.index); /* the first result, not created=false */

    float v[2] = {1, 2};
    struct vec_cmd ins = insert_cmd("ns", "a", v, 2);
    ins.idem_key = nk_slice_str("ins-1");
    r1 = apply(&e, 3, &ins);
    NK_CHECK(r1.code == NK_CODE_OK);
    struct vec_cmd del = simple_cmd(VEC_OP_DELETE, "ns", "a");
    NK_CHECK(apply(&e, 3, &del).deleted);
    r2 = apply(&e, 3, &ins); /* a retry: not inserted again */
    NK_CHECK(r2.code == NK_CODE_OK && r2.index == r1.index);
    bool found;
    uint32_t dims;
    float got[2];
    NK_REQUIRE_OK(vec_get(e.vs, 3, nk_slice_str("ns"), nk_slice_str("a"), got, &dims, &found));
    NK_CHECK(!found);
    /* the API can answer the retry itself */
    bool same;
    struct vec_result r3;
    NK_REQUIRE_OK(vec_idem_lookup(e.vs, 3, ins.idem_key, vec_cmd_fingerprint(&ins), T(2000),
                                  &found, &same, &r3));
    NK_CHECK(found && same && r3.index == r1.index);
    /* same key, other parameters */
    float w[2] = {3, 4};
    struct vec_cmd ins2 = insert_cmd("ns", "a", w, 2);
    ins2.idem_key = ins.idem_key;
    r3 = apply(&e, 3, &ins2);
    NK_CHECK(r3.code == NK_INVALID_ARGUMENT && strstr(r3.msg, "idempotency key"));
    /* after the retention window the key is fresh */
    ins2.timestamp_ms = T(1000 + 20000);
    r3 = apply(&e, 3, &ins2);
    NK_CHECK(r3.code == NK_CODE_OK && r3.index == e.next_index - 1);
    env_close(&e);
}

NK_TEST(drop_removes_every_vector_also_across_many_batches)
{
    struct env e = {0};
    NK_REQUIRE(env_open(&e, "db"));
    struct vec_cmd c = create_cmd("big", 4, VEC_METRIC_L2, VEC_INDEX_FLAT);
    NK_REQUIRE(apply(&e, 2, &c).created);
    struct vec_cmd c2 = create_cmd("keep", 4, VEC_METRIC_L2, VEC_INDEX_FLAT);
    NK_REQUIRE(apply(&e, 2, &c2).created);
    float v[4] = {1, 2, 3, 4};
    for (int i = 0; i < 9000; i++) {
        char id[16];
        snprintf(id, sizeof id, "%d", i);
        struct vec_cmd ins = insert_cmd(i % 10 ? "big" : "keep", id, v, 4);
        NK_REQUIRE(apply(&e, 2, &ins).code == NK_CODE_OK);
    }
    struct vec_cmd drop = simple_cmd(VEC_OP_DROP_INDEX, "big", NULL);
    NK_CHECK(apply(&e, 2, &drop).dropped);
    NK_CHECK(apply(&e, 2, &c).created); /* a fresh index of the same name is empty */
    uint16_t sh = 2;
    NK_REQUIRE(env_restart(&e, &sh, 1));
    uint64_t count = 99;
    bool found;
    NK_REQUIRE_OK(vec_index_info(e.vs, 2, nk_slice_str("big"), NULL, &count, NULL, &found));
    NK_CHECK(found && count == 0);
    NK_REQUIRE_OK(vec_index_info(e.vs, 2, nk_slice_str("keep"), NULL, &count, NULL, &found));
    NK_CHECK(found && count == 900);
    env_close(&e);
}

NK_TEST(a_damaged_graph_record_fails_the_load_naming_it)
{
    struct env e = {0};
    NK_REQUIRE(env_open(&e, "db"));
    struct vec_cmd c = create_cmd("g", 4, VEC_METRIC_L2, VEC_INDEX_HNSW);
    NK_REQUIRE(apply(&e, 9, &c).created);
    float v[4] = {1, 2, 3, 4};
    for (int i = 0; i < 50; i++) {
        char id[16];
        snprintf(id, sizeof id, "n%d", i);
        v[0] = (float)i;
        struct vec_cmd ins = insert_cmd("g", id, v, 4);
        NK_REQUIRE(apply(&e, 9, &ins).code == NK_CODE_OK);
    }
    /* node record of slot 3: [shard][0x06][len]["g"][be32 3], a link past the slots */
    uint8_t key[] = {0, 9, 0x06, 1, 'g', 0, 0, 0, 3};
    uint8_t rec[] = {1, 2, 'n', '3', 0, 0, 1, 200};
    NK_REQUIRE_OK(
        lsm_put(e.db, NULL, nk_slice_make(key, sizeof key), nk_slice_make(rec, sizeof rec), 0));
    char dir[1200];
    snprintf(dir, sizeof dir, "%s", e.dir);
    env_close(&e);
    NK_REQUIRE(env_open_at(&e, dir));
    nk_status s = vec_store_load_shard(e.vs, 9);
    NK_CHECK(s.code == NK_DATA_LOSS && strstr(nk_status_msg(s), "index 'g'") &&
             strstr(nk_status_msg(s), "node link"));
    fprintf(stderr, "  %s\n", nk_status_msg(s));
    nk_status_free(&s);
    bool found;
    NK_REQUIRE_OK(vec_index_info(e.vs, 9, nk_slice_str("g"), NULL, NULL, NULL, &found));
    NK_CHECK(!found); /* nothing half-loaded */
    env_close(&e);
}

/* ------------------------------------------------------------ model test */

#define M_NS  3
#define M_IDS 60
#define M_DIM 8

struct model {
    bool exists[2][M_NS];
    struct vec_index_options opt[2][M_NS];
    bool has[2][M_NS][M_IDS];
    float v[2][M_NS][M_IDS][M_DIM];
};

static const char *NS_NAMES[M_NS] = {"alpha", "beta", "gamma"};
static const uint16_t SHARDS[2] = {5, 900};

/* checks the store against the model: gets, counts, exact searches */
static bool check_model(struct env *e, const struct model *m, struct vg_rng *r)
{
    bool ok = true;
    struct vec_results res;
    vec_results_init(&res);
    uint64_t mem_sum = 0; /* vec_store_memory is the sum over every index */
    for (int s = 0; s < 2; s++) {
        for (int n = 0; n < M_NS; n++) {
            struct nk_slice ns = nk_slice_str(NS_NAMES[n]);
            uint64_t count, mem = 0;
            bool found;
            struct vec_index_options o;
            NK_ASSERT(nk_ok(vec_index_info(e->vs, SHARDS[s], ns, &o, &count, &mem, &found)));
            mem_sum += mem;
            if (found != m->exists[s][n]) {
                fprintf(stderr, "  shard %u %s: exists %d, model %d\n", SHARDS[s], NS_NAMES[n],
                        found, m->exists[s][n]);
                ok = false;
                continue;
            }
            if (!found)
                continue;
            uint64_t want = 0;
            for (int i = 0; i < M_IDS; i++) {
                char id[16];
                snprintf(id, sizeof id, "id%d", i);
                float got[M_DIM];
                uint32_t dims;
                bool f;
                NK_ASSERT(nk_ok(vec_get(e->vs, SHARDS[s], ns, nk_slice_str(id), got, &dims, &f)));
                want += m->has[s][n][i];
                if (f != m->has[s][n][i] || (f && memcmp(got, m->v[s][n][i], sizeof got))) {
                    fprintf(stderr, "  %s/%s: found %d, model %d\n", NS_NAMES[n], id, f,
                            m->has[s][n][i]);
                    ok = false;
                }
            }
            if (count != want) {
                fprintf(stderr, "  %s: count %llu, model %llu\n", NS_NAMES[n],
                        (unsigned long long)count, (unsigned long long)want);
                ok = false;
            }
            /* with ef above the count, the search sees the whole graph: exact */
            float q[M_DIM];
            for (int j = 0; j < M_DIM; j++)
                q[j] = (float)(vg_unif(r) * 2 - 1);
            NK_ASSERT(nk_ok(vec_search(e->vs, SHARDS[s], ns, q, M_DIM, 5, 500, false, &res)));
            float dist[M_IDS];
            int nd = 0;
            for (int i = 0; i < M_IDS; i++)
                if (m->has[s][n][i])
                    dist[nd++] = vec_distance(o.metric, q, m->v[s][n][i], M_DIM);
            uint32_t wantn = nd < 5 ? (uint32_t)nd : 5;
            if (res.n != wantn) {
                fprintf(stderr, "  %s: search gave %u matches, model %u\n", NS_NAMES[n], res.n,
                        wantn);
                ok = false;
                continue;
            }
            for (uint32_t j = 0; j < res.n; j++) {
                int below = 0;
                for (int x = 0; x < nd; x++)
                    below += dist[x] < res.m[j].distance - 1e-5f;
                if (below > (int)j) {
                    fprintf(stderr, "  %s: match %u (%s, %g) is not the %u-th nearest\n",
                            NS_NAMES[n], j, res.m[j].id, res.m[j].distance, j + 1);
                    ok = false;
                }
            }
        }
    }
    vec_results_free(&res);
    if (vec_store_memory(e->vs) != mem_sum) {
        fprintf(stderr, "  vec_store_memory %llu, the indexes' sum %llu\n",
                (unsigned long long)vec_store_memory(e->vs), (unsigned long long)mem_sum);
        ok = false;
    }
    return ok;
}

/* One model run of 15000 random operations from seed, in directory name. */
/* NK_REQUIRE for a function that returns bool */
#define MODEL_REQUIRE(cond)                                                                        \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "  %s:%d: required: %s\n", __FILE__, __LINE__, #cond);                 \
            nk_test_failed_ = 1;                                                                   \
            return false;                                                                          \
        }                                                                                          \
    } while (0)

static bool model_run(uint64_t seed, const char *name)
{
    struct vg_rng r = {seed};
    struct env e = {0};
    MODEL_REQUIRE(env_open(&e, name));
    struct model *m = calloc(1, sizeof(*m));
    const int OPS = 15000;
    for (int op = 0; op < OPS; op++) {
        int s = (int)(vg_next(&r) % 2), n = (int)(vg_next(&r) % M_NS);
        int i = (int)(vg_next(&r) % M_IDS);
        char id[16];
        snprintf(id, sizeof id, "id%d", i);
        double p = vg_unif(&r);
        struct vec_result res;
        if (p < 0.02) {
            enum vec_metric met = (enum vec_metric)(1 + vg_next(&r) % 3);
            enum vec_index_type t = (enum vec_index_type)(1 + vg_next(&r) % 2);
            struct vec_cmd c = create_cmd(NS_NAMES[n], M_DIM, met, t);
            c.opt.m = 4 + (uint32_t)(vg_next(&r) % 8);
            res = apply(&e, SHARDS[s], &c);
            if (m->exists[s][n]) {
                bool same = m->opt[s][n].metric == met && m->opt[s][n].type == t;
                NK_CHECK(res.code == (same ? NK_CODE_OK : NK_ALREADY_EXISTS) && !res.created);
            } else {
                NK_CHECK(res.code == NK_CODE_OK && res.created);
                m->exists[s][n] = true;
                m->opt[s][n] = c.opt;
            }
        } else if (p < 0.03) {
            struct vec_cmd c = simple_cmd(VEC_OP_DROP_INDEX, NS_NAMES[n], NULL);
            res = apply(&e, SHARDS[s], &c);
            NK_CHECK(res.code == NK_CODE_OK && res.dropped == m->exists[s][n]);
            m->exists[s][n] = false;
            memset(m->has[s][n], 0, sizeof m->has[s][n]);
        } else if (p < 0.75) {
            float v[M_DIM];
            for (int j = 0; j < M_DIM; j++) /* a few exact duplicates and zero vectors too */
                v[j] = vg_unif(&r) < 0.05 ? 0.0f : (float)((int)(vg_unif(&r) * 8) - 4) / 4;
            struct vec_cmd c = insert_cmd(NS_NAMES[n], id, v, M_DIM);
            res = apply(&e, SHARDS[s], &c);
            if (!m->exists[s][n]) {
                NK_CHECK(res.code == NK_NOT_FOUND);
            } else {
                NK_CHECK(res.code == NK_CODE_OK && res.replaced == m->has[s][n][i]);
                m->has[s][n][i] = true;
                memcpy(m->v[s][n][i], v, sizeof v);
            }
        } else {
            struct vec_cmd c = simple_cmd(VEC_OP_DELETE, NS_NAMES[n], id);
            res = apply(&e, SHARDS[s], &c);
            if (!m->exists[s][n]) {
                NK_CHECK(res.code == NK_NOT_FOUND);
            } else {
                NK_CHECK(res.code == NK_CODE_OK && res.deleted == m->has[s][n][i]);
                m->has[s][n][i] = false;
            }
        }
        if (op % 500 == 499) {
            MODEL_REQUIRE(check_model(&e, m, &r));
            if (op % 2500 == 2499) {
                MODEL_REQUIRE(env_restart(&e, SHARDS, 2));
                MODEL_REQUIRE(check_model(&e, m, &r));
            }
        }
    }
    free(m);
    env_close(&e);
    return true;
}

NK_TEST(random_operations_match_a_brute_force_model_across_restarts)
{
    /* Seed 9958595684 once made an HNSW node unreachable, so an exact
     * search (ef above the count) missed a neighbour (docs/vector.md); it
     * runs every time, beside three fresh seeds (NK_SEED fixes them). */
    NK_CHECK(model_run(9958595684ULL, "db-regression"));
    uint64_t seed = nk_test_seed();
    for (uint64_t i = 0; i < 3; i++) {
        char name[32];
        snprintf(name, sizeof name, "db%llu", (unsigned long long)i);
        if (!model_run(seed + i * 0x9e3779b97f4a7c15ULL, name)) {
            fprintf(stderr, "  failed run: seed %llu (+%llu x golden)\n",
                    (unsigned long long)seed, (unsigned long long)i);
            NK_CHECK(false);
        }
    }
}

/* --------------------------------------------------------- determinism */

/* every key and value of the LSM, in order */
static void dump_lsm(struct lsm_db *db, struct nk_buf *out)
{
    struct lsm_iter *it;
    NK_ASSERT(nk_ok(lsm_iter_new(db, NULL, &it)));
    for (lsm_iter_seek_first(it); lsm_iter_valid(it); lsm_iter_next(it)) {
        struct nk_slice k = lsm_iter_key(it), v = lsm_iter_value(it);
        nk_buf_put_lenbytes(out, k.data, k.len);
        nk_buf_put_lenbytes(out, v.data, v.len);
    }
    NK_ASSERT(nk_ok(lsm_iter_status(it)));
    lsm_iter_free(it);
}

/* Replica b restarts twice on the way (its indexes come back from the LSM,
 * persisted graph included); it must still match replica a bit for bit. */
NK_TEST(applying_the_same_log_twice_gives_identical_state_and_results)
{
    uint64_t seed = nk_test_seed();
    struct vg_rng r = {seed};
    /* the log: encoded commands */
    const int N = 6000;
    struct nk_buf *log = calloc(N, sizeof(*log));
    float *data = vg_clustered(&r, N, 16, 8, 0.3);
    for (int i = 0; i < N; i++) {
        nk_buf_init(&log[i]);
        struct vec_cmd c;
        char id[16];
        snprintf(id, sizeof id, "k%llu", (unsigned long long)(vg_next(&r) % 800));
        if (i == 0) {
            c = create_cmd("docs", 16, VEC_METRIC_COSINE, VEC_INDEX_HNSW);
        } else if (i == 1) {
            c = create_cmd("flat", 16, VEC_METRIC_L2, VEC_INDEX_FLAT);
        } else if (vg_unif(&r) < 0.8) {
            c = insert_cmd(vg_unif(&r) < 0.8 ? "docs" : "flat", id, data + (size_t)i * 16, 16);
        } else {
            c = simple_cmd(VEC_OP_DELETE, "docs", id);
        }
        if (vg_unif(&r) < 0.1) {
            char ik[16];
            snprintf(ik, sizeof ik, "i%llu", (unsigned long long)(vg_next(&r) % 50));
            c.idem_key = nk_slice_str(ik);
            vec_cmd_encode(&c, &log[i]);
        } else {
            vec_cmd_encode(&c, &log[i]);
        }
    }
    struct env e[2] = {{0}, {0}};
    NK_REQUIRE(env_open(&e[0], "a"));
    NK_REQUIRE(env_open(&e[1], "b"));
    bool same = true;
    for (int i = 0; i < N && same; i++) {
        struct vec_result ra, rb;
        NK_REQUIRE_OK(vec_apply(e[0].vs, 11, 1, (uint64_t)i + 1, 0, log[i].data, log[i].len, &ra));
        NK_REQUIRE_OK(vec_apply(e[1].vs, 11, 1, (uint64_t)i + 1, 0, log[i].data, log[i].len, &rb));
        same = !memcmp(&ra, &rb, sizeof ra);
        if (i == N / 3 || i == 2 * N / 3) {
            uint16_t sh = 11;
            NK_REQUIRE(env_restart(&e[1], &sh, 1));
        }
    }
    NK_CHECK(same);
    struct nk_buf da, db;
    nk_buf_init(&da);
    nk_buf_init(&db);
    dump_lsm(e[0].db, &da);
    dump_lsm(e[1].db, &db);
    NK_CHECK(da.len == db.len && !memcmp(da.data, db.data, da.len));
    /* identical graphs: searches with a small ef give identical answers */
    struct vec_results ra, rb;
    vec_results_init(&ra);
    vec_results_init(&rb);
    for (int i = 0; i < 100; i++) {
        const float *q = data + (size_t)(vg_next(&r) % N) * 16;
        NK_REQUIRE_OK(vec_search(e[0].vs, 11, nk_slice_str("docs"), q, 16, 10, 10, false, &ra));
        NK_REQUIRE_OK(vec_search(e[1].vs, 11, nk_slice_str("docs"), q, 16, 10, 10, false, &rb));
        NK_REQUIRE(ra.n == rb.n);
        for (uint32_t j = 0; j < ra.n; j++)
            NK_CHECK(!strcmp(ra.m[j].id, rb.m[j].id) && ra.m[j].distance == rb.m[j].distance);
    }
    vec_results_free(&ra);
    vec_results_free(&rb);
    nk_buf_free(&da);
    nk_buf_free(&db);
    for (int i = 0; i < N; i++)
        nk_buf_free(&log[i]);
    free(log);
    free(data);
    env_close(&e[0]);
    env_close(&e[1]);
}

/* The applied record is KV's: a vector entry keeps the shard's replicated
 * time in it (KV's expiry runs on that clock; a record without it would
 * read as time 0 after a restart). */
NK_TEST(a_vector_apply_keeps_the_shards_replicated_time_in_the_applied_record)
{
    struct env e = {0};
    NK_REQUIRE(env_open(&e, "db"));
    struct vec_cmd c = create_cmd("t", 2, VEC_METRIC_L2, VEC_INDEX_HNSW);
    struct nk_buf b;
    nk_buf_init(&b);
    vec_cmd_encode(&c, &b);
    struct vec_result r;
    NK_REQUIRE_OK(vec_apply(e.vs, 3, 4, 77, 1234567, b.data, b.len, &r));
    NK_CHECK(r.code == NK_CODE_OK && r.created);
    uint8_t junk[] = {VEC_CMD_TAG, 9};
    NK_REQUIRE_OK(vec_apply(e.vs, 4, 4, 78, 7654321, junk, sizeof junk, &r)); /* a no-op */
    NK_CHECK(r.code == NK_DATA_LOSS);
    nk_buf_free(&b);
    struct kv_store *kv;
    NK_REQUIRE_OK(kv_store_open(e.db, NULL, &kv));
    uint64_t t = 0, term = 0, index = 0;
    NK_REQUIRE_OK(kv_applied(kv, 3, &term, &index));
    NK_REQUIRE_OK(kv_shard_time(kv, 3, &t));
    NK_CHECK(term == 4 && index == 77 && t == 1234567);
    NK_REQUIRE_OK(kv_applied(kv, 4, &term, &index));
    NK_REQUIRE_OK(kv_shard_time(kv, 4, &t));
    NK_CHECK(term == 4 && index == 78 && t == 7654321);
    kv_store_close(kv);
    env_close(&e);
}
