/*
 * Unit tests of the multi-Raft host (src/node) in process: a real node on a
 * real data directory, driven through its public calls the way the API
 * layer drives it.
 */
#include "node/lease.h"
#include "node/node.h"
#include "testlib.h"

#include <pthread.h>
#include <stdatomic.h>
#include <errno.h>
#include <sys/stat.h>
#include <unistd.h>

/* ------------------------------------------------------------ harness */

struct waiter {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int outstanding;
    int ok, failed, exhausted;
    uint64_t max_index;
};

static struct waiter W = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, 0, 0, 0};

static void waiter_reset(void)
{
    pthread_mutex_lock(&W.mu);
    W.outstanding = W.ok = W.failed = W.exhausted = 0;
    W.max_index = 0;
    pthread_mutex_unlock(&W.mu);
}

static void on_done(void *ctx, const struct node_write_result *r)
{
    (void)ctx;
    pthread_mutex_lock(&W.mu);
    if (r->code == NK_CODE_OK && r->res.code == NK_CODE_OK) {
        W.ok++;
        if (r->res.index > W.max_index)
            W.max_index = r->res.index;
    } else {
        W.failed++;
    }
    W.outstanding--;
    pthread_cond_broadcast(&W.cv);
    pthread_mutex_unlock(&W.mu);
}

static void waiter_wait(void)
{
    pthread_mutex_lock(&W.mu);
    while (W.outstanding > 0)
        pthread_cond_wait(&W.cv, &W.mu);
    pthread_mutex_unlock(&W.mu);
}

static struct node *open_node(const char *dir, uint32_t shards, void (*tune)(struct node_options *))
{
    struct node_options o;
    node_options_default(&o);
    o.data_dir = dir;
    o.total_shards = shards;
    o.raft_sync = WAL_SYNC_OS; /* the tests are about the host, not the disk */
    o.tick_ms = 20;
    if (tune)
        tune(&o);
    struct node *n = NULL;
    nk_status s = node_open(&o, &n);
    if (!nk_ok(s)) {
        fprintf(stderr, "  node_open: %s\n", nk_status_msg(s));
        nk_status_free(&s);
        return NULL;
    }
    /* every shard led: a one-node cluster campaigns at once */
    for (int i = 0; i < 500; i++) {
        struct node_stats st;
        node_get_stats(n, &st);
        if (st.shards_led == shards)
            break;
        usleep(10000);
    }
    return n;
}

static void encode_put(struct nk_buf *b, const char *key, size_t value_len, uint64_t ttl_ms,
                       uint64_t ts)
{
    static uint8_t value[KV_MAX_VALUE];
    memset(value, 'v', sizeof value);
    struct kv_cmd c = {.op = KV_OP_PUT,
                       .timestamp_ms = ts,
                       .key = nk_slice_str(key),
                       .value = nk_slice_make(value, value_len),
                       .ttl_ms = ttl_ms};
    nk_buf_clear(b);
    kv_cmd_encode(&c, b);
}

/* Proposes; counts RESOURCE_EXHAUSTED refusals, which queue nothing. */
static void propose(struct node *n, uint32_t shard, struct nk_buf *cmd)
{
    pthread_mutex_lock(&W.mu);
    W.outstanding++;
    pthread_mutex_unlock(&W.mu);
    nk_status s = node_propose(n, shard, nk_slice_make(cmd->data, cmd->len), UINT64_MAX,
                               on_done, NULL);
    if (!nk_ok(s)) {
        pthread_mutex_lock(&W.mu);
        W.outstanding--;
        if (s.code == NK_RESOURCE_EXHAUSTED)
            W.exhausted++;
        else
            W.failed++;
        pthread_mutex_unlock(&W.mu);
        nk_status_free(&s);
    }
}

static bool read_key(struct node *n, uint32_t shard, const char *key, size_t *len)
{
    struct nk_buf v;
    nk_buf_init(&v);
    uint64_t term = 0, index = 0;
    bool found = false;
    nk_status s = kv_get(node_kv(n), (uint16_t)shard, nk_slice_str(key), nk_wall_ms(), &v, &term,
                         &index, &found);
    NK_ASSERT(nk_ok(s));
    *len = v.len;
    nk_buf_free(&v);
    return found;
}

/* ------------------------------------------------------------- budgets */

static void small_budget(struct node_options *o)
{
    o->max_round_bytes = 4u << 20;
    o->default_deadline_ms = 120000; /* 300 MiB on a busy 2-core machine */
}

NK_TEST(hundreds_of_max_size_puts_at_once_commit_in_budgeted_rounds_without_a_crash)
{
    /* 300 puts of 1 MiB queued at once are 300 MiB: one round taking them
     * all would exceed the raft log's 32 MiB record limit (it panicked) */
    char dir[1200];
    snprintf(dir, sizeof dir, "%s/n", nk_test_tmpdir());
    struct node *n = open_node(dir, 4, small_budget);
    NK_REQUIRE(n);
    waiter_reset();
    struct nk_buf cmd;
    nk_buf_init(&cmd);
    for (int i = 0; i < 300; i++) {
        char key[32];
        snprintf(key, sizeof key, "big-%d", i);
        encode_put(&cmd, key, KV_MAX_VALUE, 0, 0);
        propose(n, (uint32_t)(i % 4), &cmd);
    }
    waiter_wait();
    NK_CHECK_EQ_U64((uint64_t)W.ok, 300);
    struct node_stats st;
    node_get_stats(n, &st);
    NK_CHECK(st.round_bytes_max <= (4u << 20) + KV_MAX_VALUE);
    for (int i = 0; i < 300; i++) {
        char key[32];
        snprintf(key, sizeof key, "big-%d", i);
        size_t len = 0;
        NK_CHECK(read_key(n, (uint32_t)(i % 4), key, &len) && len == KV_MAX_VALUE);
    }
    nk_buf_free(&cmd);
    node_close(n);
}

static void tiny_queue(struct node_options *o)
{
    o->max_pending = 8;
}

NK_TEST(a_full_request_queue_answers_resource_exhausted_and_queues_nothing)
{
    char dir[1200];
    snprintf(dir, sizeof dir, "%s/n", nk_test_tmpdir());
    struct node *n = open_node(dir, 2, tiny_queue);
    NK_REQUIRE(n);
    waiter_reset();
    struct nk_buf cmd;
    nk_buf_init(&cmd);
    for (int i = 0; i < 2000; i++) {
        char key[32];
        snprintf(key, sizeof key, "q-%d", i);
        encode_put(&cmd, key, 64 << 10, 0, 0);
        propose(n, 0, &cmd);
    }
    waiter_wait();
    NK_CHECK(W.exhausted > 0);
    NK_CHECK_EQ_U64((uint64_t)(W.ok + W.exhausted), 2000);
    /* the in-flight count drops just after each callback returns */
    struct node_stats st;
    for (int i = 0; i < 200; i++) {
        node_get_stats(n, &st);
        if (st.pending == 0)
            break;
        usleep(5000);
    }
    NK_CHECK_EQ_U64(st.pending, 0);
    nk_buf_free(&cmd);
    node_close(n);
}

/* ---------------------------------------------------- linear settling */

NK_TEST(settling_a_rounds_proposals_moves_each_pending_request_at_most_once)
{
    /* settle_proposals used to memmove the rest of the pending list once
     * per applied entry: quadratic in the proposals of a round */
    char dir[1200];
    snprintf(dir, sizeof dir, "%s/n", nk_test_tmpdir());
    struct node *n = open_node(dir, 1, NULL);
    NK_REQUIRE(n);
    waiter_reset();
    struct nk_buf cmd;
    nk_buf_init(&cmd);
    const int N = 20000;
    for (int i = 0; i < N; i++) {
        char key[32];
        snprintf(key, sizeof key, "s-%d", i);
        encode_put(&cmd, key, 8, 0, 0);
        propose(n, 0, &cmd);
    }
    waiter_wait();
    NK_CHECK_EQ_U64((uint64_t)W.ok, (uint64_t)N);
    struct node_stats st;
    node_get_stats(n, &st);
    NK_CHECK(st.pending_moves <= (uint64_t)N);
    nk_buf_free(&cmd);
    node_close(n);
}

/* ------------------------------------------------------------- time */

NK_TEST(the_leader_stamps_each_proposal_with_the_shards_time)
{
    /* a command proposed with timestamp 0 and a 60 s TTL: stamped by the
     * leader it lives for a minute; unstamped it would have expired in 1970 */
    char dir[1200];
    snprintf(dir, sizeof dir, "%s/n", nk_test_tmpdir());
    struct node *n = open_node(dir, 1, NULL);
    NK_REQUIRE(n);
    waiter_reset();
    struct nk_buf cmd;
    nk_buf_init(&cmd);
    encode_put(&cmd, "stamped", 5, 60000, 0);
    propose(n, 0, &cmd);
    waiter_wait();
    NK_CHECK_EQ_U64((uint64_t)W.ok, 1);
    size_t len = 0;
    NK_CHECK(read_key(n, 0, "stamped", &len) && len == 5);
    nk_buf_free(&cmd);
    node_close(n);
}

/* ------------------------------------------------------------- reads */

static struct waiter R = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, 0, 0, 0};

static void on_read(void *ctx, const struct node_write_result *r)
{
    (void)ctx;
    pthread_mutex_lock(&R.mu);
    if (r->code == NK_CODE_OK)
        R.ok++;
    else
        R.failed++;
    R.outstanding--;
    pthread_cond_broadcast(&R.cv);
    pthread_mutex_unlock(&R.mu);
}

NK_TEST(linearizable_reads_complete_once_the_read_index_is_applied)
{
    char dir[1200];
    snprintf(dir, sizeof dir, "%s/n", nk_test_tmpdir());
    struct node *n = open_node(dir, 2, NULL);
    NK_REQUIRE(n);
    waiter_reset();
    struct nk_buf cmd;
    nk_buf_init(&cmd);
    encode_put(&cmd, "r", 3, 0, 0);
    propose(n, 1, &cmd);
    waiter_wait();
    const int N = 4000; /* below raft's bound on reads waiting (4096) */
    int now_count = 0;
    for (int i = 0; i < N; i++) {
        pthread_mutex_lock(&R.mu);
        R.outstanding++;
        pthread_mutex_unlock(&R.mu);
        bool now = false;
        nk_status s =
            node_read_barrier(n, 1, NODE_READ_LINEARIZABLE, UINT64_MAX, on_read, NULL, &now, NULL);
        if (!nk_ok(s) || now) {
            pthread_mutex_lock(&R.mu);
            R.outstanding--;
            if (!nk_ok(s))
                R.failed++;
            pthread_mutex_unlock(&R.mu);
            now_count += now;
            nk_status_free(&s);
        }
    }
    pthread_mutex_lock(&R.mu);
    while (R.outstanding > 0)
        pthread_cond_wait(&R.cv, &R.mu);
    pthread_mutex_unlock(&R.mu);
    NK_CHECK_EQ_U64((uint64_t)R.ok, (uint64_t)N);
    NK_CHECK_EQ_U64((uint64_t)now_count, 0); /* linearizable never skips the barrier */
    size_t len = 0;
    NK_CHECK(read_key(n, 1, "r", &len) && len == 3);
    nk_buf_free(&cmd);
    node_close(n);
}

/* -------------------------------------------------- snapshots, logs */

NK_TEST(snapshot_shard_compacts_the_log_behind_its_applied_index)
{
    char dir[1200];
    snprintf(dir, sizeof dir, "%s/n", nk_test_tmpdir());
    struct node *n = open_node(dir, 2, NULL);
    NK_REQUIRE(n);
    waiter_reset();
    struct nk_buf cmd;
    nk_buf_init(&cmd);
    for (int i = 0; i < 50; i++) {
        char key[32];
        snprintf(key, sizeof key, "snap-%d", i);
        encode_put(&cmd, key, 100, 0, 0);
        propose(n, 1, &cmd);
    }
    waiter_wait();
    NK_CHECK_EQ_U64((uint64_t)W.ok, 50);
    NK_CHECK(node_log_first_index(n, 1) <= 1);
    uint64_t index = 0;
    NK_REQUIRE_OK(node_snapshot_shard(n, 1, &index));
    NK_CHECK(index >= W.max_index);
    NK_CHECK(node_log_first_index(n, 1) == index + 1);
    node_close(n);
    /* the compacted shard reopens from its state and serves every key */
    n = open_node(dir, 2, NULL);
    NK_REQUIRE(n);
    for (int i = 0; i < 50; i++) {
        char key[32];
        snprintf(key, sizeof key, "snap-%d", i);
        size_t len = 0;
        NK_CHECK(read_key(n, 1, key, &len) && len == 100);
    }
    nk_buf_free(&cmd);
    node_close(n);
}

NK_TEST(shutdown_completes_every_queued_and_pending_call)
{
    char dir[1200];
    snprintf(dir, sizeof dir, "%s/n", nk_test_tmpdir());
    struct node *n = open_node(dir, 8, NULL);
    NK_REQUIRE(n);
    waiter_reset();
    struct nk_buf cmd;
    nk_buf_init(&cmd);
    for (int i = 0; i < 3000; i++) {
        char key[32];
        snprintf(key, sizeof key, "bye-%d", i);
        encode_put(&cmd, key, 1000, 0, 0);
        propose(n, (uint32_t)(i % 8), &cmd);
    }
    node_close(n); /* every callback runs before it returns */
    pthread_mutex_lock(&W.mu);
    NK_CHECK_EQ_U64((uint64_t)W.outstanding, 0);
    NK_CHECK_EQ_U64((uint64_t)(W.ok + W.failed + W.exhausted), 3000);
    pthread_mutex_unlock(&W.mu);
    nk_buf_free(&cmd);
}

NK_TEST(a_data_directory_that_lost_its_cluster_file_is_refused_naming_it)
{
    char dir[1200], path[1300];
    snprintf(dir, sizeof dir, "%s/n", nk_test_tmpdir());
    struct node *n = open_node(dir, 2, NULL);
    NK_REQUIRE(n);
    node_close(n);
    snprintf(path, sizeof path, "%s/CLUSTER", dir);
    NK_REQUIRE(unlink(path) == 0);
    struct node_options o;
    node_options_default(&o);
    o.data_dir = dir;
    o.total_shards = 2;
    nk_status s = node_open(&o, &n);
    NK_CHECK(s.code == NK_FAILED_PRECONDITION);
    NK_CHECK(strstr(nk_status_msg(s), "CLUSTER") != NULL);
    nk_status_free(&s);
    struct stat st;
    NK_CHECK(stat(path, &st) != 0); /* not silently recreated */
}

/* ------------------------------------------------------------- leases */

NK_TEST(a_lease_ends_a_lease_length_after_its_round_was_sent_however_long_rounds_take)
{
    const uint64_t tick_ns = 100 * 1000000ULL;
    struct node_tick_ring ring;
    memset(&ring, 0, sizeof ring);
    uint64_t t0 = 1000000000ULL;
    for (uint64_t k = 1; k <= 5; k++)
        node_tick_ring_note(&ring, k, t0 + k * tick_ns);
    /* tick 6 came 5 s late: the process stalled. A lease confirmed by the
     * round sent at tick 5 still ends 8 ticks of time after tick 5 */
    node_tick_ring_note(&ring, 6, t0 + 5 * tick_ns + 5000000000ULL);
    uint64_t until = node_lease_until(&ring, 5, 8, tick_ns);
    NK_CHECK_EQ_U64(until, t0 + 5 * tick_ns + 8 * tick_ns);
    NK_CHECK(until < t0 + 5 * tick_ns + 5000000000ULL); /* over when the stall ends */
    /* a tick the ring has forgotten gives no lease */
    for (uint64_t k = 7; k < 7 + NODE_TICK_RING; k++)
        node_tick_ring_note(&ring, k, t0 + k * tick_ns);
    NK_CHECK_EQ_U64(node_lease_until(&ring, 5, 8, tick_ns), 0);
    NK_CHECK_EQ_U64(node_lease_until(&ring, 999, 8, tick_ns), 0);
}

/* ------------------------------------------------------------- damage */

static void propose_cmd(struct node *n, uint32_t shard, const struct kv_cmd *c)
{
    struct nk_buf b;
    nk_buf_init(&b);
    kv_cmd_encode(c, &b);
    propose(n, shard, &b);
    nk_buf_free(&b);
}

/* Flips one byte inside the first run of `pat` found in any table of dir/lsm. */
static bool flip_in_tables(const char *dir, const char *pat)
{
    char cmd[1500];
    snprintf(cmd, sizeof cmd, "ls %s/lsm/*.sst 2>/dev/null", dir);
    FILE *ls = popen(cmd, "r");
    if (!ls)
        return false;
    char path[1200];
    bool done = false;
    while (!done && fgets(path, sizeof path, ls)) {
        path[strcspn(path, "\n")] = 0;
        uint8_t *d;
        size_t len;
        nk_status s = nk_read_file(path, 64u << 20, &d, &len);
        if (!nk_ok(s)) {
            nk_status_free(&s);
            continue;
        }
        size_t pl = strlen(pat);
        for (size_t i = 0; i + pl <= len && !done; i++) {
            if (memcmp(d + i, pat, pl) == 0) {
                FILE *f = fopen(path, "r+b");
                if (f) {
                    fseek(f, (long)(i + pl / 2), SEEK_SET);
                    fputc(d[i + pl / 2] ^ 0x5a, f);
                    fclose(f);
                    done = true;
                }
            }
        }
        free(d);
    }
    pclose(ls);
    return done;
}

NK_TEST(a_shard_whose_state_fails_a_checksum_is_refused_while_the_others_keep_serving)
{
    char dir[1200];
    snprintf(dir, sizeof dir, "%s/n", nk_test_tmpdir());
    struct node *n = open_node(dir, 2, NULL);
    NK_REQUIRE(n);
    waiter_reset();
    /* values larger than a block, so that the damaged block holds nothing
     * but the victim's value (the shard's applied record sits with "a1") */
    static char big[5000];
    memset(big, 'v', sizeof big - 1);
    struct kv_cmd c = {.op = KV_OP_PUT, .key = nk_slice_str("a1"),
                       .value = nk_slice_make(big, sizeof big - 1)};
    propose_cmd(n, 0, &c);
    memset(big, 'Z', sizeof big - 1);
    c.key = nk_slice_str("victim");
    propose_cmd(n, 0, &c);
    memset(big, 'v', sizeof big - 1);
    c.key = nk_slice_str("healthy");
    propose_cmd(n, 1, &c);
    waiter_wait();
    NK_REQUIRE(W.ok == 3);
    uint64_t victim_index = W.max_index;
    (void)victim_index;
    uint64_t idx;
    NK_REQUIRE_OK(node_snapshot_shard(n, 0, &idx)); /* into a table */
    node_close(n);
    NK_REQUIRE(flip_in_tables(dir, "ZZZZZZZZZZZZZZZZ"));

    n = open_node(dir, 2, NULL);
    NK_REQUIRE(n);
    /* a CAS must read the damaged value: the shard stops, the node does not */
    waiter_reset();
    struct kv_cmd cas = {.op = KV_OP_PUT, .key = nk_slice_str("victim"),
                         .value = nk_slice_str("new"), .has_if_match = true,
                         .if_match_term = 1, .if_match_index = 1};
    propose_cmd(n, 0, &cas);
    waiter_wait();
    NK_CHECK_EQ_U64((uint64_t)W.failed, 1);
    NK_CHECK(node_shard_damaged(n, 0));
    NK_CHECK(!node_shard_damaged(n, 1));
    struct node_stats st;
    node_get_stats(n, &st);
    NK_CHECK_EQ_U64(st.damaged_shards, 1);
    /* refused at once afterwards, naming the shard */
    struct nk_buf b;
    nk_buf_init(&b);
    kv_cmd_encode(&cas, &b);
    nk_status s = node_propose(n, 0, nk_slice_make(b.data, b.len), UINT64_MAX, on_done, NULL);
    NK_CHECK(s.code == NK_DATA_LOSS && strstr(nk_status_msg(s), "shard 0") != NULL);
    nk_status_free(&s);
    nk_buf_free(&b);
    /* the other shard still takes writes */
    waiter_reset();
    c = (struct kv_cmd){.op = KV_OP_PUT, .key = nk_slice_str("after"), .value = nk_slice_str("1")};
    propose_cmd(n, 1, &c);
    waiter_wait();
    NK_CHECK_EQ_U64((uint64_t)W.ok, 1);
    size_t len = 0;
    NK_CHECK(read_key(n, 1, "after", &len) && len == 1);
    node_close(n);
}

/* ---------------------------------------------------------- full disk */

static bool wait_ok_count(int want, int ms)
{
    for (int i = 0; i < ms / 10; i++) {
        pthread_mutex_lock(&W.mu);
        bool done = W.ok >= want;
        pthread_mutex_unlock(&W.mu);
        if (done)
            return true;
        usleep(10000);
    }
    return false;
}

static bool wait_degraded(struct node *n, bool want, int ms, struct node_stats *st)
{
    for (int i = 0; i < ms / 10; i++) {
        node_get_stats(n, st);
        if (st->degraded == want)
            return true;
        usleep(10000);
    }
    return false;
}

static void put_one(struct node *n, const char *key)
{
    struct nk_buf cmd;
    nk_buf_init(&cmd);
    encode_put(&cmd, key, 100, 0, 0);
    propose(n, 0, &cmd);
    nk_buf_free(&cmd);
}

NK_TEST(a_full_disk_under_the_raft_log_suspends_writes_naming_it_keeps_reads_and_recovers_alone)
{
    char dir[1200], stash[1300];
    snprintf(dir, sizeof dir, "%s/n", nk_test_tmpdir());
    snprintf(stash, sizeof stash, "%s/stash", nk_test_tmpdir());
    NK_REQUIRE(mkdir(stash, 0755) == 0);
    nk_faultfs_install(stash, 7);
    struct node *n = open_node(dir, 1, NULL);
    NK_REQUIRE(n);
    waiter_reset();
    put_one(n, "before");
    waiter_wait();
    NK_REQUIRE(W.ok == 1);

    /* the disk is full: the raft log can neither append nor rotate */
    unsigned ops = NK_FAULT_WRITE | NK_FAULT_OPEN_CREATE | NK_FAULT_FALLOCATE;
    nk_faultfs_fail(ops, "/raft/", ENOSPC, -1);
    put_one(n, "during"); /* taken into a round whose write fails: retried, not lost */
    struct node_stats st;
    NK_CHECK(wait_degraded(n, true, 5000, &st));
    fprintf(stderr, "  degraded: %s\n", st.degraded_why);
    NK_CHECK(strstr(st.degraded_why, "No space left") != NULL);
    NK_CHECK(strstr(st.degraded_why, "/raft/") != NULL);
    /* new writes are refused at once with the reason, and queue nothing */
    struct nk_buf cmd;
    nk_buf_init(&cmd);
    encode_put(&cmd, "refused", 10, 0, 0);
    nk_status s = node_propose(n, 0, nk_slice_make(cmd.data, cmd.len), UINT64_MAX, on_done, NULL);
    NK_CHECK(s.code == NK_RESOURCE_EXHAUSTED);
    NK_CHECK(strstr(nk_status_msg(s), "No space left") != NULL);
    nk_status_free(&s);
    nk_buf_free(&cmd);
    /* reads go on */
    size_t len;
    NK_CHECK(read_key(n, 0, "before", &len) && len == 100);
    usleep(300000);
    pthread_mutex_lock(&W.mu);
    NK_CHECK(W.ok == 1 && W.outstanding == 1); /* "during" waits, unacknowledged */
    pthread_mutex_unlock(&W.mu);

    /* space is back: the retried write lands and writes resume by themselves */
    nk_faultfs_fail(ops, "/raft/", ENOSPC, 0);
    NK_CHECK(wait_ok_count(2, 10000));
    NK_CHECK(wait_degraded(n, false, 5000, &st));
    waiter_reset();
    put_one(n, "after");
    waiter_wait();
    NK_CHECK(W.ok == 1);
    NK_CHECK(node_close(n));
    n = open_node(dir, 1, NULL);
    NK_REQUIRE(n);
    NK_CHECK(read_key(n, 0, "before", &len));
    NK_CHECK(read_key(n, 0, "during", &len));
    NK_CHECK(read_key(n, 0, "after", &len));
    NK_CHECK(!read_key(n, 0, "refused", &len));
    node_close(n);
    nk_faultfs_uninstall();
}

static void small_memtable(struct node_options *o)
{
    o->lsm.write_buffer_size = 1u << 20;
}

NK_TEST(a_full_disk_under_the_lsm_degrades_the_node_instead_of_aborting_and_loses_nothing)
{
    char dir[1200], stash[1300];
    snprintf(dir, sizeof dir, "%s/n", nk_test_tmpdir());
    snprintf(stash, sizeof stash, "%s/stash", nk_test_tmpdir());
    NK_REQUIRE(mkdir(stash, 0755) == 0);
    nk_faultfs_install(stash, 8);
    struct node *n = open_node(dir, 1, small_memtable);
    NK_REQUIRE(n);
    waiter_reset();
    unsigned ops = NK_FAULT_WRITE | NK_FAULT_OPEN_CREATE | NK_FAULT_FALLOCATE;
    nk_faultfs_fail(ops, "/lsm/", ENOSPC, -1);
    /* enough to fill memtables whose flushes fail; each put is proposed
     * alone until the node refuses (writes suspended) */
    struct nk_buf cmd;
    nk_buf_init(&cmd);
    int proposed = 0, refused = 0;
    for (int i = 0; i < 20000 && refused == 0; i++) {
        char key[32];
        snprintf(key, sizeof key, "fill-%05d", i);
        encode_put(&cmd, key, 1000, 0, 0);
        pthread_mutex_lock(&W.mu);
        W.outstanding++;
        pthread_mutex_unlock(&W.mu);
        nk_status s = node_propose(n, 0, nk_slice_make(cmd.data, cmd.len), UINT64_MAX, on_done,
                                   NULL);
        if (nk_ok(s)) {
            proposed++;
        } else {
            pthread_mutex_lock(&W.mu);
            W.outstanding--;
            pthread_mutex_unlock(&W.mu);
            NK_CHECK(s.code == NK_RESOURCE_EXHAUSTED);
            refused++;
            nk_status_free(&s);
        }
        if (i % 64 == 63)
            usleep(2000);
    }
    struct node_stats st;
    NK_CHECK(refused > 0 || wait_degraded(n, true, 5000, &st));
    node_get_stats(n, &st);
    fprintf(stderr, "  %d proposed, %d refused; degraded=%d: %s\n", proposed, refused,
            st.degraded, st.degraded_why);
    size_t len;
    NK_CHECK(read_key(n, 0, "fill-00000", &len)); /* reads go on */

    nk_faultfs_fail(ops, "/lsm/", ENOSPC, 0); /* space is back */
    waiter_wait();
    NK_CHECK(wait_degraded(n, false, 10000, &st));
    pthread_mutex_lock(&W.mu);
    int acked = W.ok;
    pthread_mutex_unlock(&W.mu);
    fprintf(stderr, "  %d acknowledged\n", acked);
    NK_CHECK(acked > 0);
    waiter_reset();
    put_one(n, "after");
    waiter_wait();
    NK_CHECK(W.ok == 1);
    NK_CHECK(node_close(n));
    n = open_node(dir, 1, small_memtable);
    NK_REQUIRE(n);
    /* every acknowledged put is there (they are acknowledged in order) */
    for (int i = 0; i < acked; i++) {
        char key[32];
        snprintf(key, sizeof key, "fill-%05d", i);
        if (!read_key(n, 0, key, &len)) {
            NK_CHECK(!"an acknowledged put is missing");
            fprintf(stderr, "  missing %s\n", key);
            break;
        }
    }
    node_close(n);
    nk_buf_free(&cmd);
    nk_faultfs_uninstall();
}
