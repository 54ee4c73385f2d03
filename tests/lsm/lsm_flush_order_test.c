/*
 * lsm_flush_order_test.c: the server's pattern under power loss (issue 9,
 * defect 4). Entries are appended to a Raft log without syncing it (the
 * `batch` and `os` fsync modes) and applied to the LSM with skip_wal, each
 * apply batch also writing the applied index. A memtable flush makes that
 * index durable; if the log entries it covers are not durable yet, a power
 * cut leaves the LSM's applied index ahead of the log, and the shard cannot
 * open. With the before_flush hook syncing the log, the recovered applied
 * index never exceeds the recovered log. A control run without the hook
 * shows the test can see the failure.
 */
#include "lsm/lsm.h"
#include "raftlog/raftlog.h"
#include "testlib.h"

static nk_status sync_log(void *arg)
{
    return raftlog_sync(arg);
}

static uint64_t read_applied(struct lsm_db *db)
{
    struct nk_buf v;
    nk_buf_init(&v);
    bool found = false;
    nk_status s = lsm_get(db, NULL, nk_slice_str("applied"), &v, &found, NULL);
    NK_ASSERT(nk_ok(s));
    uint64_t n = found && v.len == 8 ? nk_dec_fixed64(v.data) : 0;
    nk_buf_free(&v);
    return n;
}

/* Runs cuts; returns how many left the applied index ahead of the log. */
static uint64_t run(bool hook, uint64_t seed, uint64_t rounds_max, bool *opened)
{
    const char *dir = nk_test_tmpdir();
    char stash[1100], lpath[1100], rpath[1100];
    snprintf(stash, sizeof stash, "%s/stash-%d", dir, hook);
    struct nk_rng rng;
    nk_rng_seed(&rng, seed);
    nk_faultfs_install(stash, seed);
    uint64_t ahead = 0;
    *opened = true;
    /* bounded in time as well (sanitizer builds are much slower): at least
     * 12 cuts, then until NK_POWERCUT_MS (default 3 s) has passed */
    const char *b = getenv("NK_POWERCUT_MS");
    uint64_t budget = b ? strtoull(b, NULL, 10) : 3000, t0 = nk_mono_ms();
    for (uint64_t round = 1; round <= rounds_max && (round <= 12 || nk_mono_ms() - t0 < budget);
         round++) {
        snprintf(lpath, sizeof lpath, "%s/n%d-%llu/lsm", dir, hook, (unsigned long long)round);
        snprintf(rpath, sizeof rpath, "%s/n%d-%llu/raft", dir, hook, (unsigned long long)round);
        struct raftlog_options ro;
        raftlog_options_default(&ro);
        ro.wal.sync = WAL_SYNC_OS;
        ro.max_groups = 4;
        struct raftlog *log = NULL;
        nk_status s = raftlog_open(rpath, &ro, &log);
        NK_ASSERT(nk_ok(s));
        struct lsm_options lo;
        lsm_options_default(&lo);
        lo.write_buffer_size = 8 << 10;
        lo.wal_sync = LSM_WAL_SYNC_OS;
        if (hook) {
            lo.before_flush = sync_log;
            lo.before_flush_arg = log;
        }
        struct lsm_db *db = NULL;
        s = lsm_open(lpath, &lo, &db);
        NK_ASSERT(nk_ok(s));
        nk_faultfs_cut_after(50 + nk_rng_uniform(&rng, 1500));
        struct raftlog_batch *b = raftlog_batch_new();
        struct lsm_write_options wo = {.skip_wal = true};
        for (uint64_t i = 1; i < 100000; i++) {
            uint8_t data[64];
            memset(data, (int)i, sizeof data);
            struct raftlog_entry e = {i, 1, 0, nk_slice_make(data, sizeof data)};
            raftlog_batch_clear(b);
            raftlog_batch_entries(b, 0, &e, 1);
            s = raftlog_write_ex(log, b, false); /* batch/os: not synced per write */
            if (!nk_ok(s))
                break;
            /* apply: the data and the applied index in one batch */
            struct lsm_batch lb;
            lsm_batch_init(&lb);
            char k[32];
            snprintf(k, sizeof k, "key%06llu", (unsigned long long)i);
            uint8_t idx[8];
            nk_enc_fixed64(idx, i);
            lsm_batch_put(&lb, nk_slice_str(k), nk_slice_make(data, sizeof data), 0);
            lsm_batch_put(&lb, nk_slice_str("applied"), nk_slice_make(idx, 8), 0);
            s = lsm_write(db, &wo, &lb);
            lsm_batch_free(&lb);
            if (!nk_ok(s))
                break;
            if (i % 512 == 0) { /* the batch window's periodic sync */
                s = raftlog_sync(log);
                if (!nk_ok(s))
                    break;
            }
        }
        nk_status_free(&s);
        raftlog_batch_free(b);
        nk_faultfs_power_cut();
        lsm_close(db); /* its final flush fails: the power is off */
        raftlog_close(log);
        nk_faultfs_power_restore();

        s = raftlog_open(rpath, &ro, &log);
        if (!nk_ok(s)) {
            fprintf(stderr, "  raft log refused to open: %s\n", nk_status_msg(s));
            nk_status_free(&s);
            *opened = false;
            break;
        }
        lo.before_flush = NULL;
        s = lsm_open(lpath, &lo, &db);
        if (!nk_ok(s)) {
            fprintf(stderr, "  lsm refused to open: %s\n", nk_status_msg(s));
            nk_status_free(&s);
            *opened = false;
            raftlog_close(log);
            break;
        }
        uint64_t applied = read_applied(db), last = raftlog_last_index(log, 0);
        if (applied > last) {
            ahead++;
            if (hook)
                fprintf(stderr, "  round %llu: applied index %llu is ahead of the log's last %llu\n",
                        (unsigned long long)round, (unsigned long long)applied,
                        (unsigned long long)last);
        }
        lsm_close(db);
        raftlog_close(log);
    }
    nk_faultfs_uninstall();
    return ahead;
}

NK_TEST(flush_with_before_flush_hook_never_persists_an_applied_index_ahead_of_the_log)
{
    uint64_t seed = nk_test_seed();
    bool opened;
    uint64_t ahead = run(true, seed, 60, &opened);
    NK_CHECK(opened);
    NK_CHECK_EQ_U64(ahead, 0);
}

NK_TEST(flush_without_the_hook_can_persist_an_applied_index_ahead_of_the_log)
{
    /* the control: the failure the hook prevents is real and observable */
    uint64_t seed = nk_test_seed();
    bool opened;
    uint64_t ahead = run(false, seed, 60, &opened);
    fprintf(stderr, "  without the hook: %llu cuts left the applied index ahead\n",
            (unsigned long long)ahead);
    NK_CHECK(opened);
    NK_CHECK(ahead > 0);
}
