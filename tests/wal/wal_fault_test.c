/*
 * wal_fault_test.c: the WAL on the fault-injecting file layer (util.h).
 * Disk full while creating, preallocating or writing a segment fails the
 * append with RESOURCE_EXHAUSTED naming the file, without poisoning the log:
 * once space is back the next append succeeds, and after a reopen the log
 * holds exactly the acknowledged records.
 */
#include <errno.h>

#include "testlib.h"
#include "wal/wal.h"

static char stash_[1200], dir_[1200];

static void setup(void)
{
    snprintf(stash_, sizeof stash_, "%s/stash", nk_test_tmpdir());
    snprintf(dir_, sizeof dir_, "%s/wal", nk_test_tmpdir());
    nk_faultfs_install(stash_, 1);
}

/* Reads the log back; checks it holds records 0..n-1 of the acked list. */
static bool log_holds(const uint32_t *acked, size_t n)
{
    struct wal *w;
    nk_status s = wal_open(dir_, NULL, &w);
    if (!nk_ok(s)) {
        fprintf(stderr, "  reopen: %s\n", nk_status_msg(s));
        nk_status_free(&s);
        return false;
    }
    struct wal_iter *it;
    s = wal_iter_open(w, (struct wal_pos){0, 0}, &it);
    NK_ASSERT(nk_ok(s));
    size_t i = 0;
    bool ok = true;
    for (;;) {
        bool has;
        uint8_t type;
        struct nk_slice p;
        s = wal_iter_next(it, &has, &type, &p, NULL);
        if (!nk_ok(s) || !has)
            break;
        uint32_t v;
        memcpy(&v, p.data, 4);
        if (i >= n || v != acked[i]) {
            fprintf(stderr, "  record %zu holds %u\n", i, v);
            ok = false;
        }
        i++;
    }
    if (!nk_ok(s)) {
        fprintf(stderr, "  iterate: %s\n", nk_status_msg(s));
        nk_status_free(&s);
        ok = false;
    }
    wal_iter_close(it);
    wal_close(w);
    return ok && i == n;
}

static void run(unsigned fail_ops, bool preallocate)
{
    setup();
    struct wal_options o;
    wal_options_default(&o);
    o.segment_size = 4096; /* a rotation every few records */
    o.preallocate = preallocate;
    struct wal *w;
    NK_REQUIRE_OK(wal_open(dir_, &o, &w));
    uint32_t acked[400];
    size_t n = 0;
    uint8_t rec[300];
    memset(rec, 0xab, sizeof rec);
    int failures = 0;
    for (uint32_t v = 1; v <= 300; v++) {
        if (v == 40)
            nk_faultfs_fail(fail_ops, "/wal", ENOSPC, -1); /* the disk fills up */
        if (v == 60)
            nk_faultfs_fail(fail_ops, "/wal", ENOSPC, 0); /* space is back */
        memcpy(rec, &v, 4);
        nk_status s = wal_append(w, 1, rec, sizeof rec, NULL);
        if (nk_ok(s)) {
            acked[n++] = v;
        } else {
            failures++;
            NK_CHECK(s.code == NK_RESOURCE_EXHAUSTED);
            NK_CHECK(strstr(nk_status_msg(s), dir_) != NULL);
            if (failures == 1)
                fprintf(stderr, "  append said: %s\n", nk_status_msg(s));
            NK_CHECK(v >= 40 && v < 60);
        }
        nk_status_free(&s);
    }
    wal_close(w);
    NK_CHECK(failures > 0);
    NK_CHECK(n > 250);
    NK_CHECK(log_holds(acked, n));
    nk_faultfs_uninstall();
}

NK_TEST(no_space_to_create_a_segment_fails_the_append_and_later_appends_succeed)
{
    run(NK_FAULT_OPEN_CREATE, true);
}

NK_TEST(no_space_to_preallocate_a_segment_fails_the_append_and_later_appends_succeed)
{
    run(NK_FAULT_FALLOCATE, true);
}

NK_TEST(no_space_to_write_a_record_fails_the_append_and_later_appends_succeed)
{
    run(NK_FAULT_WRITE, false);
}
