/*
 * lsm_crash_test.c: a child process writes batches with the WAL synced on
 * every write (LSM_WAL_SYNC_ALWAYS) and reports each acknowledged batch to
 * the parent over a pipe; the parent SIGKILLs it at a random moment (during
 * writes, memtable switches, flushes, compactions or recovery of the previous
 * crash), reopens the database and checks that every acknowledged batch is
 * there and that no batch is half applied. The database carries over from
 * round to round, so later rounds also crash during recovery work.
 *
 * Batch n writes the GROUP_KEYS keys of group n % NGROUPS, each to "n:j",
 * and key "last" to n. After a crash every group's keys must name one and the
 * same batch (atomicity), at least the last acknowledged batch of that group
 * (durability), and at most one batch beyond the last acknowledged one.
 */
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <poll.h>

#include "lsm/lsm.h"
#include "testlib.h"

#define NGROUPS 200
#define GROUP_KEYS 4
#define VALUE_PAD 100

static void db_options(struct lsm_options *o)
{
    lsm_options_default(o);
    o->wal_sync = LSM_WAL_SYNC_ALWAYS;
    o->write_buffer_size = 8 << 10; /* flushes and compactions every few batches */
    o->max_bytes_base = 16 << 10;
    o->target_file_size = 8 << 10;
    o->l0_compaction_trigger = 2;
    o->level_ratio = 4;
}

static void key_of(char *k, size_t cap, uint64_t group, int j)
{
    snprintf(k, cap, "g%04llu-%d", (unsigned long long)group, j);
}

/* Reads key; returns the batch number in its value, or -1 when absent. */
static int64_t read_batch_no(struct lsm_db *db, const char *k, bool *bad)
{
    struct nk_buf v;
    nk_buf_init(&v);
    bool found;
    nk_status s = lsm_get(db, NULL, nk_slice_str(k), &v, &found, NULL);
    int64_t n = -1;
    if (!nk_ok(s)) {
        fprintf(stderr, "  get %s: %s\n", k, nk_status_msg(s));
        nk_status_free(&s);
        *bad = true;
    } else if (found) {
        char tmp[64];
        size_t len = v.len < 63 ? v.len : 63;
        memcpy(tmp, v.data, len);
        tmp[len] = 0;
        n = strtoll(tmp, NULL, 10);
    }
    nk_buf_free(&v);
    return n;
}

static void child(const char *dir, int fd)
{
    struct lsm_options o;
    db_options(&o);
    struct lsm_db *db;
    nk_status s = lsm_open(dir, &o, &db);
    if (!nk_ok(s)) {
        fprintf(stderr, "child open: %s\n", nk_status_msg(s));
        _exit(3);
    }
    bool bad = false;
    int64_t last = read_batch_no(db, "last", &bad);
    uint64_t n = (uint64_t)(last + 1);
    char k[64], v[VALUE_PAD + 64];
    struct lsm_batch b;
    lsm_batch_init(&b);
    for (;; n++) {
        lsm_batch_clear(&b);
        for (int j = 0; j < GROUP_KEYS; j++) {
            key_of(k, sizeof k, n % NGROUPS, j);
            int len = snprintf(v, sizeof v, "%llu:%d:", (unsigned long long)n, j);
            memset(v + len, 'p', VALUE_PAD);
            lsm_batch_put(&b, nk_slice_str(k), nk_slice_make(v, (size_t)len + VALUE_PAD), 0);
        }
        int len = snprintf(v, sizeof v, "%llu", (unsigned long long)n);
        lsm_batch_put(&b, nk_slice_str("last"), nk_slice_make(v, (size_t)len), 0);
        s = lsm_write(db, NULL, &b);
        if (!nk_ok(s)) {
            fprintf(stderr, "child write: %s\n", nk_status_msg(s));
            _exit(4);
        }
        if (write(fd, &n, sizeof n) != (ssize_t)sizeof n)
            _exit(5);
    }
}

NK_TEST(crash_keeps_every_acknowledged_batch_and_no_half_batch)
{
    uint64_t seed = nk_test_seed();
    struct nk_rng r;
    nk_rng_seed(&r, seed);
    const char *dir = nk_test_tmpdir();
    int64_t acked[NGROUPS];
    for (int g = 0; g < NGROUPS; g++)
        acked[g] = -1;
    int64_t last_acked = -1;
    const char *e = getenv("NK_LSM_CRASH_KILLS");
    int kills_wanted = e ? atoi(e) : 60;
    int kills = 0;
    uint64_t t_end = nk_mono_ms() + 120000; /* bound the test, also on a slow disk */
    while (kills < kills_wanted && nk_mono_ms() < t_end) {
        int fds[2];
        NK_REQUIRE(pipe(fds) == 0);
        pid_t pid = fork();
        NK_REQUIRE(pid >= 0);
        if (pid == 0) {
            close(fds[0]);
            child(dir, fds[1]);
            _exit(0);
        }
        close(fds[1]);
        /* kill at a random moment: sometimes during open/recovery, mostly while writing */
        uint64_t delay = nk_rng_chance(&r, 1, 8) ? nk_rng_uniform(&r, 15)
                                                 : 10 + nk_rng_uniform(&r, 250);
        uint64_t deadline = nk_mono_ms() + delay;
        for (;;) {
            int64_t left = (int64_t)(deadline - nk_mono_ms());
            if (left <= 0)
                break;
            struct pollfd p = {fds[0], POLLIN, 0};
            if (poll(&p, 1, (int)left) > 0) {
                uint64_t n;
                ssize_t got = read(fds[0], &n, sizeof n);
                if (got != (ssize_t)sizeof n)
                    break; /* child died on its own */
                acked[n % NGROUPS] = (int64_t)n;
                last_acked = (int64_t)n;
            }
        }
        kill(pid, SIGKILL);
        uint64_t n;
        while (read(fds[0], &n, sizeof n) == (ssize_t)sizeof n) { /* acks already sent */
            acked[n % NGROUPS] = (int64_t)n;
            last_acked = (int64_t)n;
        }
        close(fds[0]);
        int st;
        waitpid(pid, &st, 0);
        NK_REQUIRE(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
        kills++;

        struct lsm_options o;
        db_options(&o);
        struct lsm_db *db;
        NK_REQUIRE_OK(lsm_open(dir, &o, &db));
        bool bad = false;
        int64_t last = read_batch_no(db, "last", &bad);
        if (last < last_acked) {
            fprintf(stderr, "  kill %d: last batch %lld < last acknowledged %lld\n", kills,
                    (long long)last, (long long)last_acked);
            bad = true;
        }
        if (last > last_acked + 1) {
            fprintf(stderr, "  kill %d: last batch %lld was never written\n", kills,
                    (long long)last);
            bad = true;
        }
        for (int g = 0; g < NGROUPS && !bad; g++) {
            char k[64];
            int64_t first = -2;
            for (int j = 0; j < GROUP_KEYS; j++) {
                key_of(k, sizeof k, (uint64_t)g, j);
                int64_t got = read_batch_no(db, k, &bad);
                if (first == -2)
                    first = got;
                if (got != first) {
                    fprintf(stderr, "  kill %d: group %d half applied (%lld vs %lld)\n", kills, g,
                            (long long)got, (long long)first);
                    bad = true;
                }
            }
            if (first < acked[g]) {
                fprintf(stderr, "  kill %d: group %d lost acknowledged batch %lld (has %lld)\n",
                        kills, g, (long long)acked[g], (long long)first);
                bad = true;
            }
            if (first > last) {
                fprintf(stderr, "  kill %d: group %d holds batch %lld after last %lld\n", kills,
                        g, (long long)first, (long long)last);
                bad = true;
            }
        }
        /* the recovered state becomes the acknowledged state of the next round */
        if (last > last_acked) {
            last_acked = last;
            acked[last % NGROUPS] = last;
        }
        lsm_close(db);
        NK_REQUIRE(!bad);
    }
    fprintf(stderr, "  %d kills, %lld batches acknowledged\n", kills, (long long)last_acked + 1);
    NK_CHECK(kills >= kills_wanted || kills >= 50);
    NK_CHECK(last_acked > 100);
}
