/*
 * raftlog_powercut_test.c: the Raft log under simulated power loss (the
 * fault-injecting file layer, util.h). A writer appends entries, hard states
 * and compaction points for several groups and runs segment GC, in the three
 * ways the node uses the log (docs/durability.md):
 *   always: every raftlog_write is synced; every acknowledged write survives;
 *   batch:  writes are not synced, raftlog_sync runs every few writes; all
 *           that preceded a completed raftlog_sync survives;
 *   os:     never synced; anything may be lost,
 * and in every mode the log reopens and is a consistent prefix of what was
 * written: each group's entries are contiguous and correct, its compaction
 * point carries the right term (never 0) and its hard state is the one
 * written with its last entry. The power goes at a random operation (seeded,
 * printed), also during GC and during recovery of the previous cut.
 */
#include <errno.h>

#include "raftlog/raftlog.h"
#include "testlib.h"

#define NG 6

enum mode { M_ALWAYS, M_BATCH, M_OS };

struct model {
    uint64_t last[NG], compact[NG];
};

static uint64_t term_of(uint64_t index)
{
    return 1 + index / 40;
}

static size_t payload(uint32_t g, uint64_t i, uint8_t *buf)
{
    size_t n = (size_t)((g * 7 + i * 13) % 200);
    for (size_t k = 0; k < n; k++)
        buf[k] = (uint8_t)(g ^ (i * 31) ^ k);
    return n;
}

static void open_opts(struct raftlog_options *o, enum mode m)
{
    raftlog_options_default(o);
    o->wal.sync = m == M_ALWAYS ? WAL_SYNC_ALWAYS : WAL_SYNC_OS;
    o->wal.segment_size = 16 * 1024; /* many segments: GC has work */
    o->max_groups = 64;
}

/* Checks the recovered log against the model; updates the model to it. */
static bool check_log(struct raftlog *l, struct model *m, const struct model *tried,
                      const struct model *durable, bool promise, const char *name, uint64_t round)
{
    bool ok = true;
    for (uint32_t g = 0; g < NG; g++) {
        uint64_t ci, ct;
        raftlog_get_compacted(l, g, &ci, &ct, NULL);
        uint64_t first = raftlog_first_index(l, g), last = raftlog_last_index(l, g);
        struct raftlog_hardstate hs;
        raftlog_get_hardstate(l, g, &hs);
        /* the write in flight at the cut may or may not be there */
        if (first != ci + 1 || last < ci || last > tried->last[g]) {
            fprintf(stderr, "  %s round %llu group %u: first %llu compacted %llu last %llu (wrote %llu)\n",
                    name, (unsigned long long)round, g, (unsigned long long)first,
                    (unsigned long long)ci, (unsigned long long)last,
                    (unsigned long long)tried->last[g]);
            ok = false;
            continue;
        }
        if (ci > 0 && ct != term_of(ci)) {
            fprintf(stderr, "  %s round %llu group %u: compaction point %llu has term %llu, not %llu\n",
                    name, (unsigned long long)round, g, (unsigned long long)ci,
                    (unsigned long long)ct, (unsigned long long)term_of(ci));
            ok = false;
        }
        if (last > 0 && (hs.commit != last || hs.term != term_of(last))) {
            fprintf(stderr, "  %s round %llu group %u: hard state term %llu commit %llu, but the "
                            "log ends at %llu (term %llu)\n",
                    name, (unsigned long long)round, g, (unsigned long long)hs.term,
                    (unsigned long long)hs.commit, (unsigned long long)last,
                    (unsigned long long)term_of(last));
            ok = false;
        }
        if (promise && (last < durable->last[g] || ci < durable->compact[g])) {
            fprintf(stderr, "  %s round %llu group %u: durable state (last %llu, compacted %llu) "
                            "lost: now last %llu, compacted %llu\n",
                    name, (unsigned long long)round, g, (unsigned long long)durable->last[g],
                    (unsigned long long)durable->compact[g], (unsigned long long)last,
                    (unsigned long long)ci);
            ok = false;
        }
        if (last > ci) {
            struct nk_arena a;
            nk_arena_init(&a);
            size_t cnt = (size_t)(last - ci);
            struct raftlog_entry *e = nk_malloc(cnt * sizeof *e);
            size_t n = 0;
            nk_status s = raftlog_entries(l, g, first, last + 1, UINT64_MAX, &a, e, &n);
            if (!nk_ok(s) || n != cnt) {
                fprintf(stderr, "  %s group %u: entries %llu..%llu: %s (%zu of %zu)\n", name, g,
                        (unsigned long long)first, (unsigned long long)last, nk_status_msg(s), n,
                        cnt);
                ok = false;
            }
            nk_status_free(&s);
            for (size_t k = 0; k < n && ok; k++) {
                uint8_t buf[256];
                size_t pl = payload(g, first + k, buf);
                if (e[k].index != first + k || e[k].term != term_of(first + k) ||
                    e[k].data.len != pl || (pl && memcmp(e[k].data.data, buf, pl) != 0)) {
                    fprintf(stderr, "  %s group %u: entry %llu is wrong\n", name, g,
                            (unsigned long long)(first + k));
                    ok = false;
                }
            }
            free(e);
            nk_arena_free(&a);
        }
        m->last[g] = last;
        m->compact[g] = ci;
    }
    return ok;
}

static void run_mode(enum mode mode, const char *name)
{
    const char *dir = nk_test_tmpdir();
    char stash[1100], path[1100];
    snprintf(stash, sizeof stash, "%s/stash", dir);
    uint64_t seed = nk_test_seed();
    struct nk_rng rng;
    nk_rng_seed(&rng, seed);
    nk_faultfs_install(stash, seed);
    const char *b = getenv("NK_POWERCUT_MS");
    uint64_t budget = b ? strtoull(b, NULL, 10) : 3000;
    struct raftlog_options o;
    open_opts(&o, mode);
    struct model m, durable, tried;
    uint64_t rounds = 0, lost = 0, t0 = nk_mono_ms();
    bool ok = true;
    while (ok && (rounds < 10 || nk_mono_ms() - t0 < budget) && rounds < 300) {
        rounds++;
        if (rounds % 16 == 1) {
            snprintf(path, sizeof path, "%s/raft%llu", dir, (unsigned long long)rounds);
            memset(&m, 0, sizeof m);
            memset(&durable, 0, sizeof durable);
        }
        tried = m;
        nk_faultfs_cut_after(1 + nk_rng_uniform(&rng, rounds % 4 == 0 ? 30 : 600));
        struct raftlog *l = NULL;
        nk_status s = raftlog_open(path, &o, &l);
        struct raftlog_batch *batch = raftlog_batch_new();
        for (uint64_t w = 0; nk_ok(s) && w < 5000; w++) {
            raftlog_batch_clear(batch);
            uint32_t g = (uint32_t)nk_rng_uniform(&rng, NG);
            uint64_t from = m.last[g] + 1, to = from + nk_rng_uniform(&rng, 4);
            struct raftlog_entry ents[4];
            uint8_t bufs[4][256];
            for (uint64_t i = from; i <= to; i++) {
                size_t n = payload(g, i, bufs[i - from]);
                ents[i - from] = (struct raftlog_entry){i, term_of(i), 0,
                                                        nk_slice_make(bufs[i - from], n)};
            }
            raftlog_batch_entries(batch, g, ents, (size_t)(to - from + 1));
            struct raftlog_hardstate hs = {term_of(to), 1, to};
            raftlog_batch_hardstate(batch, g, &hs);
            uint64_t compact = m.compact[g];
            if (nk_rng_chance(&rng, 1, 8) && to > m.compact[g] + 1) {
                compact = m.compact[g] + 1 + nk_rng_uniform(&rng, to - m.compact[g] - 1);
                raftlog_batch_compact(batch, g, compact, term_of(compact), nk_slice_make("c", 1));
            }
            tried.last[g] = to;
            s = mode == M_ALWAYS ? raftlog_write(l, batch) : raftlog_write_ex(l, batch, false);
            if (!nk_ok(s))
                break;
            m.last[g] = to;
            m.compact[g] = compact;
            if (mode == M_ALWAYS)
                durable = m;
            if (mode == M_BATCH && w % 8 == 7) {
                s = raftlog_sync(l);
                if (nk_ok(s))
                    durable = m;
            }
            if (nk_ok(s) && w % 16 == 12) /* not right after a sync */
                s = raftlog_gc(l);
        }
        raftlog_batch_free(batch);
        if (!nk_ok(s) && !nk_faultfs_is_cut()) {
            fprintf(stderr, "  %s round %llu: failed without a cut: %s\n", name,
                    (unsigned long long)rounds, nk_status_msg(s));
            ok = false;
        }
        nk_status_free(&s);
        nk_faultfs_power_cut();
        raftlog_close(l);
        nk_faultfs_power_restore();

        s = raftlog_open(path, &o, &l);
        if (!nk_ok(s)) {
            fprintf(stderr, "  %s round %llu: reopen after a power cut refused: %s\n", name,
                    (unsigned long long)rounds, nk_status_msg(s));
            nk_status_free(&s);
            ok = false;
            break;
        }
        struct model before = m;
        ok = check_log(l, &m, &tried, &durable, mode != M_OS, name, rounds) && ok;
        for (uint32_t g = 0; g < NG; g++)
            if (m.last[g] < before.last[g])
                lost++;
        durable = m;
        raftlog_close(l);
    }
    fprintf(stderr, "  %s: %llu power cuts, %llu group tails lost%s\n", name,
            (unsigned long long)rounds, (unsigned long long)lost,
            mode == M_ALWAYS ? "" : " (unsynced: allowed)");
    nk_faultfs_uninstall();
    NK_CHECK(ok);
}

NK_TEST(power_cut_with_every_write_synced_keeps_every_acknowledged_write)
{
    run_mode(M_ALWAYS, "always");
}

NK_TEST(power_cut_with_periodic_sync_keeps_everything_before_the_last_sync)
{
    run_mode(M_BATCH, "batch");
}

NK_TEST(power_cut_without_sync_leaves_a_consistent_prefix_that_opens)
{
    run_mode(M_OS, "os");
}

NK_TEST(disk_full_at_segment_rotation_fails_the_write_and_a_later_write_succeeds)
{
    const char *dir = nk_test_tmpdir();
    char stash[1100], path[1100];
    snprintf(stash, sizeof stash, "%s/stash", dir);
    snprintf(path, sizeof path, "%s/raft", dir);
    nk_faultfs_install(stash, 1);
    struct raftlog_options o;
    open_opts(&o, M_ALWAYS);
    struct raftlog *l;
    NK_REQUIRE_OK(raftlog_open(path, &o, &l));
    struct raftlog_batch *b = raftlog_batch_new();
    uint64_t last = 0;
    int failed = 0;
    for (int w = 0; w < 400; w++) {
        if (w == 100) /* the disk fills: no new segment can be created */
            nk_faultfs_fail(NK_FAULT_OPEN_CREATE | NK_FAULT_FALLOCATE, path,
                            ENOSPC, -1);
        if (w == 200)
            nk_faultfs_fail(NK_FAULT_OPEN_CREATE | NK_FAULT_FALLOCATE, path,
                            ENOSPC, 0);
        uint8_t buf[256];
        size_t n = payload(0, last + 1, buf);
        struct raftlog_entry e = {last + 1, term_of(last + 1), 0, nk_slice_make(buf, n)};
        raftlog_batch_clear(b);
        raftlog_batch_entries(b, 0, &e, 1);
        struct raftlog_hardstate hs = {term_of(last + 1), 1, last + 1};
        raftlog_batch_hardstate(b, 0, &hs);
        nk_status s = raftlog_write(l, b);
        if (nk_ok(s)) {
            last++;
        } else {
            if (!failed++)
                fprintf(stderr, "  write said: %s\n", nk_status_msg(s));
            NK_CHECK(s.code == NK_RESOURCE_EXHAUSTED);
            NK_CHECK(w >= 100 && w < 200);
            NK_CHECK_EQ_U64(raftlog_last_index(l, 0), last); /* nothing changed */
        }
        nk_status_free(&s);
    }
    raftlog_batch_free(b);
    raftlog_close(l);
    NK_CHECK(failed > 0);
    NK_CHECK(last >= 300);
    NK_REQUIRE_OK(raftlog_open(path, &o, &l));
    NK_CHECK_EQ_U64(raftlog_last_index(l, 0), last);
    struct model m = {{0}}, tried = {{0}};
    m.last[0] = tried.last[0] = last;
    NK_CHECK(check_log(l, &m, &tried, &m, true, "enospc", 0));
    raftlog_close(l);
    nk_faultfs_uninstall();
}
