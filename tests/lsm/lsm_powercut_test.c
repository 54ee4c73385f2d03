/*
 * lsm_powercut_test.c: power loss, not process death. The engine runs on the
 * fault-injecting file layer (nk_faultfs, util.h): at a random operation the
 * power goes, everything not yet synced is dropped (file data back to its
 * synced state or a random prefix of the rest; creates, renames and unlinks
 * since the last fsync of their directory revert), and the database is
 * reopened on what a disk would hold. Many cuts per fsync mode, each seeded
 * (the seed is printed), fall during writes, memtable switches, flushes,
 * compactions, manifest rewrites and recovery of the previous cut.
 *
 * Batch n sets key slot n % NSLOTS to n and "last" to n. Promises checked
 * (docs/durability.md):
 *   always, batch: every acknowledged batch survives;
 *   os: acknowledged batches may be lost, but what survives is a prefix of
 *       the batches: with L = "last", every slot holds exactly the newest
 *       batch <= L that wrote it;
 *   every mode: the database opens (a power cut is never a reason to refuse).
 */
#include "lsm/lsm.h"
#include "testlib.h"

#define NSLOTS 64
#define VALUE_PAD 60

static void db_options(struct lsm_options *o, enum lsm_wal_sync mode)
{
    lsm_options_default(o);
    o->wal_sync = mode;
    o->wal_batch_window_us = 100;
    o->write_buffer_size = 8 << 10; /* flushes and compactions every few batches */
    o->max_bytes_base = 16 << 10;
    o->target_file_size = 8 << 10;
    o->l0_compaction_trigger = 2;
    o->level_ratio = 4;
    o->block_cache_bytes = 1 << 20;
}

static nk_status write_batch(struct lsm_db *db, uint64_t n)
{
    struct lsm_batch b;
    lsm_batch_init(&b);
    char k[32], v[128];
    snprintf(k, sizeof k, "slot%03llu", (unsigned long long)(n % NSLOTS));
    int vl = snprintf(v, sizeof v, "%llu:%0*d", (unsigned long long)n, VALUE_PAD, 0);
    nk_status s = lsm_batch_put(&b, nk_slice_str(k), nk_slice_make(v, (size_t)vl), 0);
    if (nk_ok(s)) {
        vl = snprintf(v, sizeof v, "%llu", (unsigned long long)n);
        s = lsm_batch_put(&b, nk_slice_str("last"), nk_slice_make(v, (size_t)vl), 0);
    }
    if (nk_ok(s))
        s = lsm_write(db, NULL, &b);
    lsm_batch_free(&b);
    return s;
}

/* -1: absent; -2: read error */
static int64_t read_num(struct lsm_db *db, const char *k)
{
    struct nk_buf v;
    nk_buf_init(&v);
    bool found = false;
    nk_status s = lsm_get(db, NULL, nk_slice_str(k), &v, &found, NULL);
    int64_t n = -1;
    if (!nk_ok(s)) {
        fprintf(stderr, "  get %s: %s\n", k, nk_status_msg(s));
        nk_status_free(&s);
        n = -2;
    } else if (found) {
        char tmp[160];
        size_t len = v.len < sizeof tmp - 1 ? v.len : sizeof tmp - 1;
        memcpy(tmp, v.data, len);
        tmp[len] = 0;
        n = strtoll(tmp, NULL, 10);
    }
    nk_buf_free(&v);
    return n;
}

/* The state must be exactly that after batches 1..L; returns L (0: none). */
static int64_t check_prefix(struct lsm_db *db, bool *ok)
{
    int64_t last = read_num(db, "last");
    if (last == -2) {
        *ok = false;
        return 0;
    }
    if (last < 0)
        last = 0;
    for (uint64_t j = 0; j < NSLOTS; j++) {
        char k[32];
        snprintf(k, sizeof k, "slot%03llu", (unsigned long long)j);
        int64_t want = -1; /* newest n <= last with n % NSLOTS == j, n >= 1 */
        if (last >= 1) {
            int64_t n = last - (int64_t)(((uint64_t)last - j) % NSLOTS);
            if ((uint64_t)last >= j && n >= 1)
                want = n;
        }
        int64_t got = read_num(db, k);
        if (got != want) {
            fprintf(stderr, "  %s holds batch %lld, but last is %lld so it must hold %lld\n", k,
                    (long long)got, (long long)last, (long long)want);
            *ok = false;
        }
    }
    return last;
}

static void run_mode(enum lsm_wal_sync mode, const char *name, uint64_t budget_ms)
{
    const char *dir = nk_test_tmpdir();
    char stash[1100], path[1100];
    snprintf(stash, sizeof stash, "%s/stash", dir);
    uint64_t seed = nk_test_seed();
    struct nk_rng rng;
    nk_rng_seed(&rng, seed);
    nk_faultfs_install(stash, seed);
    struct lsm_options o;
    db_options(&o, mode);
    uint64_t next = 1, acked = 0, rounds = 0, lost_rounds = 0;
    uint64_t t0 = nk_mono_ms();
    bool ok = true;
    while (ok && (rounds < 10 || nk_mono_ms() - t0 < budget_ms) && rounds < 400) {
        rounds++;
        if (rounds % 16 == 1) {
            /* a fresh database now and then: cuts also fall while one is created */
            snprintf(path, sizeof path, "%s/data%llu/lsm", dir, (unsigned long long)rounds);
            next = 1;
            acked = 0;
        }
        /* the cut may also fall inside lsm_open (recovery of the last cut) */
        nk_faultfs_cut_after(1 + nk_rng_uniform(&rng, rounds % 4 == 0 ? 60 : 1500));
        struct lsm_db *db = NULL;
        nk_status s = lsm_open(path, &o, &db);
        if (nk_ok(s)) {
            for (uint64_t i = 0; i < 3000; i++) {
                s = write_batch(db, next);
                if (!nk_ok(s))
                    break;
                acked = next++;
            }
        }
        if (!nk_ok(s) && !nk_faultfs_is_cut()) {
            fprintf(stderr, "  round %llu: write failed without a cut: %s\n",
                    (unsigned long long)rounds, nk_status_msg(s));
            ok = false;
        }
        nk_status_free(&s);
        nk_faultfs_power_cut();
        lsm_close(db);
        nk_faultfs_power_restore();

        /* what a disk would hold: must open, and keep the mode's promise */
        s = lsm_open(path, &o, &db);
        if (!nk_ok(s)) {
            fprintf(stderr, "  %s round %llu: reopen after a power cut refused: %s\n", name,
                    (unsigned long long)rounds, nk_status_msg(s));
            nk_status_free(&s);
            ok = false;
            break;
        }
        int64_t last = check_prefix(db, &ok);
        if ((uint64_t)last < acked) {
            lost_rounds++;
            if (mode != LSM_WAL_SYNC_OS) {
                fprintf(stderr, "  %s round %llu: acknowledged batch %llu lost (state ends at %lld)\n",
                        name, (unsigned long long)rounds, (unsigned long long)acked,
                        (long long)last);
                ok = false;
            }
        }
        /* the batch in flight at the cut was not acknowledged: it may or may not be there */
        if ((uint64_t)last > next) {
            fprintf(stderr, "  %s: batch %lld present but never written\n", name, (long long)last);
            ok = false;
        }
        lsm_close(db);
        next = (uint64_t)last + 1;
        acked = (uint64_t)last;
    }
    fprintf(stderr, "  %s: %llu power cuts, %llu batches at the end, %llu cuts lost acknowledged "
                    "batches%s\n",
            name, (unsigned long long)rounds, (unsigned long long)acked,
            (unsigned long long)lost_rounds, mode == LSM_WAL_SYNC_OS ? " (allowed in os mode)" : "");
    nk_faultfs_uninstall();
    NK_CHECK(ok);
}

static uint64_t budget(void)
{
    const char *b = getenv("NK_POWERCUT_MS");
    return b ? strtoull(b, NULL, 10) : 4000;
}

NK_TEST(power_cut_in_always_mode_keeps_every_acknowledged_write)
{
    run_mode(LSM_WAL_SYNC_ALWAYS, "always", budget());
}

NK_TEST(power_cut_in_batch_mode_keeps_every_acknowledged_write)
{
    run_mode(LSM_WAL_SYNC_BATCH, "batch", budget());
}

NK_TEST(power_cut_in_os_mode_leaves_a_prefix_of_the_writes_and_opens)
{
    run_mode(LSM_WAL_SYNC_OS, "os", budget());
}
