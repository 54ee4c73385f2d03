/*
 * lsm_degraded_test.c: the engine degrades instead of failing for good
 * (issue 9, defect 13, storage side). Disk full during a flush (tables,
 * manifest) refuses writes with RESOURCE_EXHAUSTED naming the file while
 * reads go on, and the engine resumes by itself once space is back; a
 * table found damaged by compaction is quarantined (kept, reported with its
 * key range) while the rest is served; a close whose final flush fails says
 * so. Disk full is injected with the fault layer (util.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>

#include "lsm/lsm.h"
#include "testlib.h"

#define S(x) nk_slice_str(x)

static void options(struct lsm_options *o)
{
    lsm_options_default(o);
    o->write_buffer_size = 16 << 10;
    o->l0_compaction_trigger = 64; /* compactions only when asked */
    o->l0_stop_trigger = 64;
}

static bool get_is(struct lsm_db *db, const char *k, const char *want)
{
    struct nk_buf v;
    nk_buf_init(&v);
    bool found = false;
    nk_status s = lsm_get(db, NULL, S(k), &v, &found, NULL);
    bool ok = nk_ok(s) && found && v.len == strlen(want) && memcmp(v.data, want, v.len) == 0;
    if (!ok)
        fprintf(stderr, "  get %s: %s found=%d\n", k, nk_status_msg(s), found);
    nk_status_free(&s);
    nk_buf_free(&v);
    return ok;
}

static bool wait_writable(struct lsm_db *db, uint64_t ms)
{
    uint64_t t0 = nk_mono_ms();
    for (;;) {
        struct lsm_health h;
        lsm_health(db, &h);
        bool w = h.writable;
        lsm_health_free(&h);
        if (w)
            return true;
        if (nk_mono_ms() - t0 > ms)
            return false;
        nk_sleep_us(10000);
    }
}

static void disk_full_then_space(unsigned ops, const char *part)
{
    const char *dir = nk_test_tmpdir();
    char stash[1100], path[1100];
    snprintf(stash, sizeof stash, "%s/stash", dir);
    snprintf(path, sizeof path, "%s/db", dir);
    nk_faultfs_install(stash, 1);
    struct lsm_options o;
    options(&o);
    struct lsm_db *db;
    NK_REQUIRE_OK(lsm_open(path, &o, &db));
    char k[32], v[64];
    int n = 0;
    for (; n < 100; n++) {
        snprintf(k, sizeof k, "k%05d", n);
        snprintf(v, sizeof v, "v%d", n);
        NK_REQUIRE_OK(lsm_put(db, NULL, S(k), S(v), 0));
    }
    NK_REQUIRE_OK(lsm_flush(db));

    nk_faultfs_fail(ops, part, ENOSPC, -1); /* the disk is full */
    for (; n < 200; n++) {
        snprintf(k, sizeof k, "k%05d", n);
        snprintf(v, sizeof v, "v%d", n);
        NK_REQUIRE_OK(lsm_put(db, NULL, S(k), S(v), 0)); /* memtable and WAL still take it */
    }
    nk_status s = lsm_flush(db);
    fprintf(stderr, "  flush said: %s\n", nk_status_msg(s));
    NK_CHECK(s.code == NK_RESOURCE_EXHAUSTED);
    nk_status_free(&s);
    s = lsm_put(db, NULL, S("refused"), S("x"), 0);
    fprintf(stderr, "  write said: %s\n", nk_status_msg(s));
    NK_CHECK(s.code == NK_RESOURCE_EXHAUSTED);
    NK_CHECK(strstr(nk_status_msg(s), path) != NULL);
    NK_CHECK(strstr(nk_status_msg(s), "No space left") != NULL);
    nk_status_free(&s);
    struct lsm_health h;
    lsm_health(db, &h);
    NK_CHECK(!h.writable && h.error_code == NK_RESOURCE_EXHAUSTED && h.error &&
             strstr(h.error, part) != NULL);
    lsm_health_free(&h);
    /* reads go on, from tables and from the memtable that cannot be flushed */
    NK_CHECK(get_is(db, "k00010", "v10"));
    NK_CHECK(get_is(db, "k00150", "v150"));
    nk_sleep_us(300000); /* a few failed retries */
    lsm_health(db, &h);
    NK_CHECK(!h.writable && h.retries >= 1);
    lsm_health_free(&h);

    nk_faultfs_fail(ops, part, ENOSPC, 0); /* space is back */
    NK_CHECK(wait_writable(db, 10000));
    NK_REQUIRE_OK(lsm_put(db, NULL, S("after"), S("y"), 0));
    NK_REQUIRE_OK(lsm_flush(db));
    lsm_close(db);
    NK_REQUIRE_OK(lsm_open(path, &o, &db));
    NK_CHECK(get_is(db, "k00000", "v0"));
    NK_CHECK(get_is(db, "k00199", "v199"));
    NK_CHECK(get_is(db, "after", "y"));
    lsm_close(db);
    nk_faultfs_uninstall();
}

NK_TEST(disk_full_writing_tables_refuses_writes_keeps_reads_and_recovers_by_itself)
{
    disk_full_then_space(NK_FAULT_OPEN_CREATE | NK_FAULT_WRITE | NK_FAULT_FALLOCATE, ".sst");
}

NK_TEST(disk_full_writing_the_manifest_refuses_writes_keeps_reads_and_recovers_by_itself)
{
    disk_full_then_space(NK_FAULT_OPEN_CREATE | NK_FAULT_WRITE | NK_FAULT_SYNC, "MANIFEST");
}

NK_TEST(close_whose_final_flush_fails_returns_the_error)
{
    const char *dir = nk_test_tmpdir();
    char stash[1100], path[1100];
    snprintf(stash, sizeof stash, "%s/stash", dir);
    snprintf(path, sizeof path, "%s/db", dir);
    nk_faultfs_install(stash, 1);
    struct lsm_options o;
    options(&o);
    struct lsm_db *db;
    NK_REQUIRE_OK(lsm_open(path, &o, &db));
    struct lsm_write_options wo = {.skip_wal = true};
    NK_REQUIRE_OK(lsm_put(db, &wo, S("a"), S("1"), 0));
    nk_faultfs_fail(NK_FAULT_OPEN_CREATE | NK_FAULT_WRITE, ".sst", ENOSPC, -1);
    nk_status s = lsm_close_checked(db);
    fprintf(stderr, "  close said: %s\n", nk_status_msg(s));
    NK_CHECK(s.code == NK_RESOURCE_EXHAUSTED);
    NK_CHECK(strstr(nk_status_msg(s), "final flush") != NULL);
    nk_status_free(&s);
    nk_faultfs_fail(NK_FAULT_OPEN_CREATE | NK_FAULT_WRITE, ".sst", ENOSPC, 0);
    /* and a close that flushes fine says OK */
    NK_REQUIRE_OK(lsm_open(path, &o, &db));
    NK_REQUIRE_OK(lsm_put(db, &wo, S("b"), S("2"), 0));
    NK_REQUIRE_OK(lsm_close_checked(db));
    nk_faultfs_uninstall();
}

/* Flips a byte inside the first data block of the table file. */
static void damage_table(const char *path)
{
    int fd = open(path, O_RDWR);
    NK_ASSERT(fd >= 0);
    uint8_t b;
    NK_ASSERT(pread(fd, &b, 1, 20) == 1);
    b ^= 0x5a;
    NK_ASSERT(pwrite(fd, &b, 1, 20) == 1);
    close(fd);
}

NK_TEST(damaged_table_found_by_compaction_is_quarantined_and_the_rest_is_served)
{
    const char *dir = nk_test_tmpdir();
    struct lsm_options o;
    options(&o);
    o.use_mmap_reads = false;
    struct lsm_db *db;
    NK_REQUIRE_OK(lsm_open(dir, &o, &db));
    char k[32];
    for (int i = 0; i < 50; i++) { /* table 1: keys a... */
        snprintf(k, sizeof k, "a%03d", i);
        NK_REQUIRE_OK(lsm_put(db, NULL, S(k), S("va"), 0));
    }
    NK_REQUIRE_OK(lsm_flush(db));
    for (int i = 0; i < 50; i++) { /* table 2: keys b... */
        snprintf(k, sizeof k, "b%03d", i);
        NK_REQUIRE_OK(lsm_put(db, NULL, S(k), S("vb"), 0));
    }
    NK_REQUIRE_OK(lsm_flush(db));
    lsm_close(db);
    /* the older table holds the a-keys: the lowest table number */
    char first[1300] = "";
    for (int num = 2; num < 20 && !first[0]; num++) {
        char p[1300];
        snprintf(p, sizeof p, "%s/%06d.sst", dir, num);
        struct stat st;
        if (stat(p, &st) == 0)
            snprintf(first, sizeof first, "%s", p);
    }
    NK_REQUIRE(first[0]);
    damage_table(first);

    NK_REQUIRE_OK(lsm_open(dir, &o, &db));
    nk_status s = lsm_compact_range(db, NULL, NULL);
    fprintf(stderr, "  compaction said: %s\n", nk_status_msg(s));
    NK_CHECK(nk_ok(s));
    nk_status_free(&s);
    struct lsm_health h;
    lsm_health(db, &h);
    NK_CHECK(h.writable);
    NK_REQUIRE(h.nquarantined == 1);
    NK_CHECK(h.quarantined[0].range_known);
    NK_CHECK(h.quarantined[0].smallest.len == 4 &&
             memcmp(h.quarantined[0].smallest.data, "a000", 4) == 0);
    NK_CHECK(h.quarantined[0].largest.len == 4 &&
             memcmp(h.quarantined[0].largest.data, "a049", 4) == 0);
    struct stat st;
    NK_CHECK(stat(h.quarantined[0].path, &st) == 0); /* kept, not deleted */
    fprintf(stderr, "  quarantined %s: %s\n", h.quarantined[0].path, h.quarantined[0].reason);
    lsm_health_free(&h);
    /* the healthy range is read and written; the damaged one is refused */
    NK_CHECK(get_is(db, "b010", "vb"));
    struct nk_buf v;
    nk_buf_init(&v);
    bool found;
    s = lsm_get(db, NULL, S("a010"), &v, &found, NULL);
    NK_CHECK(s.code == NK_DATA_LOSS && strstr(nk_status_msg(s), "quarantine") != NULL);
    nk_status_free(&s);
    NK_REQUIRE_OK(lsm_put(db, NULL, S("c000"), S("vc"), 0));
    NK_REQUIRE_OK(lsm_flush(db));
    NK_REQUIRE_OK(lsm_compact_range(db, NULL, NULL));
    NK_CHECK(get_is(db, "c000", "vc"));
    lsm_close(db);

    /* still reported after a restart, until the owner restores the range */
    NK_REQUIRE_OK(lsm_open(dir, &o, &db));
    lsm_health(db, &h);
    NK_CHECK(h.nquarantined == 1);
    lsm_health_free(&h);
    for (int i = 0; i < 50; i++) { /* the range, restored (from a replica) */
        snprintf(k, sizeof k, "a%03d", i);
        NK_REQUIRE_OK(lsm_put(db, NULL, S(k), S("va2"), 0));
    }
    NK_CHECK_EQ_U64(lsm_quarantine_resolve(db, S("a000"), S("a049")), 1);
    NK_CHECK(get_is(db, "a010", "va2"));
    lsm_close(db);
    NK_REQUIRE_OK(lsm_open(dir, &o, &db));
    lsm_health(db, &h);
    NK_CHECK(h.nquarantined == 0);
    lsm_health_free(&h);
    NK_CHECK(get_is(db, "a010", "va2"));
    NK_CHECK(get_is(db, "b049", "vb"));
    lsm_close(db);
    nk_buf_free(&v);
}
