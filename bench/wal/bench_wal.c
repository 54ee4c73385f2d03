/*
 * bench_wal: appends/s of 100-byte records under each sync mode.
 *
 *   bench_wal [--dir DIR] [--records N] [--threads T] [--window US]
 *
 * Runs, each on a fresh log in DIR (default ./bench-wal-data, removed after):
 *   always  1 thread, N records, fdatasync per append
 *   batch   T threads (default 4), N records each, group commit
 *   locked  T threads appending under a caller's lock with
 *           wal_append_many_nowait, then wal_sync_to outside it (BATCH)
 *   os      1 thread, 50 * N records, no fdatasync
 * and prints appends/s, µs per append and fdatasyncs per append.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wal/wal.h"

struct job {
    struct wal *w;
    uint64_t n;
    pthread_mutex_t *caller_lock; /* non-NULL: the nowait + sync_to pattern */
    nk_status s;
};

static void *appender(void *p)
{
    struct job *j = p;
    uint8_t rec[100];
    memset(rec, 'v', sizeof rec);
    j->s = NK_OK;
    for (uint64_t i = 0; i < j->n && nk_ok(j->s); i++) {
        memcpy(rec, &i, sizeof i);
        if (j->caller_lock) {
            struct wal_record r = {1, nk_slice_make(rec, sizeof rec)};
            struct wal_pos end;
            pthread_mutex_lock(j->caller_lock);
            j->s = wal_append_many_nowait(j->w, &r, 1, NULL, &end);
            pthread_mutex_unlock(j->caller_lock);
            if (nk_ok(j->s))
                j->s = wal_sync_to(j->w, end);
        } else {
            j->s = wal_append(j->w, 1, rec, sizeof rec, NULL);
        }
    }
    return NULL;
}

static int run(const char *dir, const char *name, enum wal_sync_mode mode, int threads,
               uint64_t per_thread, uint32_t window, bool locked)
{
    pthread_mutex_t caller_lock = PTHREAD_MUTEX_INITIALIZER;
    nk_status s = nk_remove_tree(dir);
    nk_status_free(&s);
    struct wal_options o;
    wal_options_default(&o);
    o.sync = mode;
    o.batch_window_us = window;
    struct wal *w;
    s = wal_open(dir, &o, &w);
    if (!nk_ok(s)) {
        fprintf(stderr, "bench_wal: open %s: %s\n", dir, nk_status_msg(s));
        return 1;
    }
    struct wal_stats st0, st;
    wal_get_stats(w, &st0);
    pthread_t th[64];
    struct job jobs[64];
    uint64_t t0 = nk_mono_ns();
    for (int t = 0; t < threads; t++) {
        jobs[t] = (struct job){w, per_thread, locked ? &caller_lock : NULL, NK_OK};
        pthread_create(&th[t], NULL, appender, &jobs[t]);
    }
    for (int t = 0; t < threads; t++)
        pthread_join(th[t], NULL);
    double secs = (double)(nk_mono_ns() - t0) / 1e9;
    wal_get_stats(w, &st);
    for (int t = 0; t < threads; t++)
        if (!nk_ok(jobs[t].s)) {
            fprintf(stderr, "bench_wal: append: %s\n", nk_status_msg(jobs[t].s));
            return 1;
        }
    wal_close(w);
    uint64_t total = per_thread * (uint64_t)threads;
    uint64_t syncs = st.syncs - st0.syncs;
    printf("%-7s %7d %10" PRIu64 " %12.0f %10.2f %12.3f\n", name, threads, total,
           (double)total / secs, secs * 1e6 / (double)total, (double)syncs / (double)total);
    s = nk_remove_tree(dir);
    nk_status_free(&s);
    return 0;
}

int main(int argc, char **argv)
{
    const char *dir = "./bench-wal-data";
    uint64_t n = 5000;
    int threads = 4;
    uint32_t window = 2000;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--dir") && i + 1 < argc)
            dir = argv[++i];
        else if (!strcmp(argv[i], "--records") && i + 1 < argc)
            n = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc)
            threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--window") && i + 1 < argc)
            window = (uint32_t)strtoul(argv[++i], NULL, 10);
        else {
            fprintf(stderr, "usage: %s [--dir DIR] [--records N] [--threads T] [--window US]\n",
                    argv[0]);
            return 2;
        }
    }
    if (threads < 1 || threads > 64)
        threads = 4;
    printf("100-byte records, log in %s\n", dir);
    printf("%-7s %7s %10s %12s %10s %12s\n", "mode", "threads", "appends", "appends/s", "us/append",
           "syncs/append");
    int rc = 0;
    rc |= run(dir, "always", WAL_SYNC_ALWAYS, 1, n, window, false);
    rc |= run(dir, "batch", WAL_SYNC_BATCH, threads, n, window, false);
    rc |= run(dir, "locked", WAL_SYNC_BATCH, threads, n, window, true);
    rc |= run(dir, "os", WAL_SYNC_OS, 1, 50 * n, window, false);
    return rc;
}
