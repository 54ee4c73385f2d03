/* Tests of src/raftlog: the shared Raft log of a node. */
#include <pthread.h>
#include <signal.h>
#include <semaphore.h>
#include <sys/wait.h>

#include "raftlog/raftlog.h"
#include "testlib.h"

static char dir_[1200];

static const char *logdir(void)
{
    snprintf(dir_, sizeof dir_, "%s/log", nk_test_tmpdir());
    return dir_;
}

static void small_opts(struct raftlog_options *o)
{
    raftlog_options_default(o);
    o->wal.segment_size = 64 * 1024; /* many segments, so GC has work */
    o->wal.preallocate = false;
    o->max_groups = 4096;
}

/* The payload of entry (group, index, term): derived, so any reader can check it. */
static size_t payload(uint32_t g, uint64_t i, uint64_t t, uint8_t *buf)
{
    size_t n = (size_t)((g * 7 + i * 13 + t) % 300);
    for (size_t k = 0; k < n; k++)
        buf[k] = (uint8_t)(g ^ (i * 31) ^ (t * 17) ^ k);
    return n;
}

static bool check_entry(const struct raftlog_entry *e, uint32_t g, uint64_t i, uint64_t t)
{
    uint8_t buf[400];
    size_t n = payload(g, i, t, buf);
    return e->index == i && e->term == t && e->type == (uint8_t)(i % 3) && e->data.len == n &&
           (n == 0 || memcmp(e->data.data, buf, n) == 0);
}

static void add_entries(struct raftlog_batch *b, uint32_t g, uint64_t from, uint64_t to,
                        uint64_t term)
{
    static uint8_t bufs[64][400];
    struct raftlog_entry ents[64];
    size_t n = 0;
    for (uint64_t i = from; i <= to; i++) {
        size_t len = payload(g, i, term, bufs[n]);
        ents[n] = (struct raftlog_entry){i, term, (uint8_t)(i % 3), nk_slice_make(bufs[n], len)};
        if (++n == 64 || i == to) {
            raftlog_batch_entries(b, g, ents, n);
            n = 0;
        }
    }
}

static bool check_range(struct raftlog *l, uint32_t g, uint64_t lo, uint64_t hi, uint64_t term)
{
    struct nk_arena a;
    nk_arena_init(&a);
    struct raftlog_entry *out = nk_malloc((hi - lo + 1) * sizeof(*out));
    size_t n;
    bool ok = true;
    uint64_t at = lo;
    while (ok && at < hi) {
        nk_status s = raftlog_entries(l, g, at, hi, 4096, &a, out, &n);
        if (!nk_ok(s) || n == 0) {
            fprintf(stderr, "  entries(%u, %llu, %llu): %s\n", g, (unsigned long long)at,
                    (unsigned long long)hi, nk_status_msg(s));
            nk_status_free(&s);
            ok = false;
            break;
        }
        for (size_t k = 0; k < n; k++)
            if (!check_entry(&out[k], g, at + k, term)) {
                fprintf(stderr, "  group %u entry %llu differs\n", g,
                        (unsigned long long)(at + k));
                ok = false;
            }
        at += n;
    }
    free(out);
    nk_arena_free(&a);
    return ok;
}

NK_TEST(entries_and_hard_states_of_many_groups_read_back_after_one_write)
{
    struct raftlog_options o;
    small_opts(&o);
    struct raftlog *l;
    NK_REQUIRE_OK(raftlog_open(logdir(), &o, &l));
    struct raftlog_batch *b = raftlog_batch_new();
    for (uint32_t g = 0; g < 100; g++) {
        add_entries(b, g, 1, 10, 1);
        struct raftlog_hardstate hs = {1, g + 1, 5};
        raftlog_batch_hardstate(b, g, &hs);
    }
    NK_REQUIRE_OK(raftlog_write(l, b));
    struct raftlog_stats st;
    raftlog_get_stats(l, &st);
    NK_CHECK(st.writes == 1 && st.fsyncs == 1);
    for (uint32_t g = 0; g < 100; g++) {
        NK_CHECK(raftlog_first_index(l, g) == 1 && raftlog_last_index(l, g) == 10);
        NK_CHECK(check_range(l, g, 1, 11, 1));
        struct raftlog_hardstate hs;
        raftlog_get_hardstate(l, g, &hs);
        NK_CHECK(hs.term == 1 && hs.vote == g + 1 && hs.commit == 5);
        uint64_t t;
        NK_REQUIRE_OK(raftlog_term(l, g, 10, &t));
        NK_CHECK(t == 1);
    }
    uint64_t t;
    nk_status s = raftlog_term(l, 0, 11, &t);
    NK_CHECK(s.code == NK_NOT_FOUND);
    nk_status_free(&s);
    NK_CHECK(raftlog_last_index(l, 3000) == 0); /* unknown group: empty log */
    raftlog_batch_free(b);
    raftlog_close(l);
}

NK_TEST(a_run_starting_inside_the_log_replaces_the_conflicting_suffix)
{
    struct raftlog_options o;
    small_opts(&o);
    struct raftlog *l;
    NK_REQUIRE_OK(raftlog_open(logdir(), &o, &l));
    struct raftlog_batch *b = raftlog_batch_new();
    add_entries(b, 7, 1, 10, 1);
    NK_REQUIRE_OK(raftlog_write(l, b));
    raftlog_batch_clear(b);
    add_entries(b, 7, 6, 8, 2);
    NK_REQUIRE_OK(raftlog_write(l, b));
    NK_CHECK(raftlog_last_index(l, 7) == 8);
    NK_CHECK(check_range(l, 7, 1, 6, 1));
    NK_CHECK(check_range(l, 7, 6, 9, 2));
    raftlog_close(l);
    /* and the same after recovery */
    NK_REQUIRE_OK(raftlog_open(logdir(), &o, &l));
    NK_CHECK(raftlog_last_index(l, 7) == 8);
    NK_CHECK(check_range(l, 7, 1, 6, 1));
    NK_CHECK(check_range(l, 7, 6, 9, 2));
    raftlog_batch_free(b);
    raftlog_close(l);
}

NK_TEST(recovery_rebuilds_entries_hard_states_and_compaction_points)
{
    struct raftlog_options o;
    small_opts(&o);
    struct raftlog *l;
    NK_REQUIRE_OK(raftlog_open(logdir(), &o, &l));
    struct raftlog_batch *b = raftlog_batch_new();
    for (int round = 0; round < 20; round++) {
        raftlog_batch_clear(b);
        for (uint32_t g = 0; g < 50; g++) {
            add_entries(b, g, (uint64_t)round * 10 + 1, (uint64_t)round * 10 + 10, 3);
            struct raftlog_hardstate hs = {3, 1, (uint64_t)round * 10 + 5};
            raftlog_batch_hardstate(b, g, &hs);
        }
        NK_REQUIRE_OK(raftlog_write(l, b));
    }
    raftlog_batch_clear(b);
    raftlog_batch_compact(b, 9, 150, 3, nk_slice_str("conf-of-9"));
    NK_REQUIRE_OK(raftlog_write(l, b));
    raftlog_close(l);

    /* a cache far smaller than the log: most reads go to disk */
    o.cache_bytes = 16 * 1024;
    NK_REQUIRE_OK(raftlog_open(logdir(), &o, &l));
    for (uint32_t g = 0; g < 50; g++) {
        uint64_t first = g == 9 ? 151 : 1;
        NK_CHECK(raftlog_first_index(l, g) == first);
        NK_CHECK(raftlog_last_index(l, g) == 200);
        NK_CHECK(check_range(l, g, first, 201, 3));
        struct raftlog_hardstate hs;
        raftlog_get_hardstate(l, g, &hs);
        NK_CHECK(hs.term == 3 && hs.commit == 195);
    }
    uint64_t ci, ct;
    struct nk_buf conf;
    nk_buf_init(&conf);
    raftlog_get_compacted(l, 9, &ci, &ct, &conf);
    NK_CHECK(ci == 150 && ct == 3 && conf.len == 9 && memcmp(conf.data, "conf-of-9", 9) == 0);
    nk_buf_free(&conf);
    uint64_t t;
    NK_REQUIRE_OK(raftlog_term(l, 9, 150, &t)); /* the point's own term answers */
    NK_CHECK(t == 3);
    nk_status s = raftlog_term(l, 9, 149, &t);
    NK_CHECK(s.code == NK_OUT_OF_RANGE);
    nk_status_free(&s);
    struct raftlog_stats st;
    raftlog_get_stats(l, &st);
    NK_CHECK(st.cache_misses > 0);
    raftlog_batch_free(b);
    raftlog_close(l);
}

NK_TEST(compaction_with_a_different_term_drops_the_whole_log)
{
    struct raftlog_options o;
    small_opts(&o);
    struct raftlog *l;
    NK_REQUIRE_OK(raftlog_open(logdir(), &o, &l));
    struct raftlog_batch *b = raftlog_batch_new();
    add_entries(b, 1, 1, 20, 1);
    NK_REQUIRE_OK(raftlog_write(l, b));
    raftlog_batch_clear(b);
    raftlog_batch_compact(b, 1, 10, 1, nk_slice_make(NULL, 0)); /* same term: keep 11..20 */
    NK_REQUIRE_OK(raftlog_write(l, b));
    NK_CHECK(raftlog_first_index(l, 1) == 11 && raftlog_last_index(l, 1) == 20);
    raftlog_batch_clear(b);
    raftlog_batch_compact(b, 1, 15, 9, nk_slice_make(NULL, 0)); /* snapshot from another term */
    NK_REQUIRE_OK(raftlog_write(l, b));
    NK_CHECK(raftlog_first_index(l, 1) == 16 && raftlog_last_index(l, 1) == 15);
    raftlog_batch_free(b);
    raftlog_close(l);
}

/* A replica deleted from this node (docs/membership.md): RESET forgets its
 * entries, hard state and compaction point, now and after a reopen; a later
 * replica of the same group starts at index 0 (a snapshot's compaction
 * point, then its entries), and the other groups are untouched. */
NK_TEST(a_reset_group_is_forgotten_across_reopen_and_can_start_again_from_nothing)
{
    struct raftlog_options o;
    small_opts(&o);
    struct raftlog *l;
    NK_REQUIRE_OK(raftlog_open(logdir(), &o, &l));
    struct raftlog_batch *b = raftlog_batch_new();
    for (uint32_t g = 1; g <= 2; g++) {
        add_entries(b, g, 1, 40, 2);
        struct raftlog_hardstate hs = {2, 7, 30};
        raftlog_batch_hardstate(b, g, &hs);
    }
    raftlog_batch_compact(b, 1, 10, 2, nk_slice_str("conf-1"));
    NK_REQUIRE_OK(raftlog_write(l, b));
    raftlog_batch_clear(b);
    raftlog_batch_reset(b, 1);
    NK_REQUIRE_OK(raftlog_write(l, b));
    for (int reopen = 0; reopen < 2; reopen++) {
        uint64_t ci = 9, ct = 9;
        struct nk_buf conf;
        nk_buf_init(&conf);
        raftlog_get_compacted(l, 1, &ci, &ct, &conf);
        struct raftlog_hardstate hs;
        raftlog_get_hardstate(l, 1, &hs);
        NK_CHECK(ci == 0 && ct == 0 && conf.len == 0);
        NK_CHECK(hs.term == 0 && hs.vote == 0 && hs.commit == 0);
        NK_CHECK(raftlog_last_index(l, 1) == 0);
        nk_buf_free(&conf);
        /* group 2 kept everything */
        NK_CHECK(raftlog_last_index(l, 2) == 40 && check_range(l, 2, 1, 41, 2));
        raftlog_get_hardstate(l, 2, &hs);
        NK_CHECK(hs.term == 2 && hs.vote == 7 && hs.commit == 30);
        raftlog_close(l);
        NK_REQUIRE_OK(raftlog_open(logdir(), &o, &l));
    }
    /* a new replica of group 1: a snapshot at 25 (term 5), then entries */
    raftlog_batch_clear(b);
    raftlog_batch_compact(b, 1, 25, 5, nk_slice_str("conf-new"));
    add_entries(b, 1, 26, 30, 5);
    NK_REQUIRE_OK(raftlog_write(l, b));
    raftlog_close(l);
    NK_REQUIRE_OK(raftlog_open(logdir(), &o, &l));
    NK_CHECK(raftlog_first_index(l, 1) == 26 && raftlog_last_index(l, 1) == 30);
    NK_CHECK(check_range(l, 1, 26, 31, 5));
    raftlog_batch_free(b);
    raftlog_close(l);
}

NK_TEST(gc_deletes_segments_nothing_needs_and_keeps_hard_states)
{
    struct raftlog_options o;
    small_opts(&o);
    struct raftlog *l;
    NK_REQUIRE_OK(raftlog_open(logdir(), &o, &l));
    struct raftlog_batch *b = raftlog_batch_new();
    /* group 500 writes a hard state once, early, then never again */
    struct raftlog_hardstate hs500 = {4, 2, 0};
    raftlog_batch_hardstate(b, 500, &hs500);
    NK_REQUIRE_OK(raftlog_write(l, b));
    for (int round = 0; round < 200; round++) {
        raftlog_batch_clear(b);
        for (uint32_t g = 0; g < 8; g++)
            add_entries(b, g, (uint64_t)round * 20 + 1, (uint64_t)round * 20 + 20, 1);
        NK_REQUIRE_OK(raftlog_write(l, b));
    }
    struct raftlog_stats st;
    raftlog_get_stats(l, &st);
    uint64_t before = st.segments;
    NK_CHECK(before > 10);
    /* compact everything but the last 20 entries of each group */
    raftlog_batch_clear(b);
    for (uint32_t g = 0; g < 8; g++)
        raftlog_batch_compact(b, g, 3980, 1, nk_slice_make(NULL, 0));
    NK_REQUIRE_OK(raftlog_write(l, b));
    NK_REQUIRE_OK(raftlog_gc(l));
    raftlog_get_stats(l, &st);
    NK_CHECK(st.segments < before / 2);
    raftlog_close(l);
    NK_REQUIRE_OK(raftlog_open(logdir(), &o, &l));
    struct raftlog_hardstate hs;
    raftlog_get_hardstate(l, 500, &hs);
    NK_CHECK(hs.term == 4 && hs.vote == 2);
    for (uint32_t g = 0; g < 8; g++) {
        NK_CHECK(raftlog_first_index(l, g) == 3981 && raftlog_last_index(l, g) == 4000);
        NK_CHECK(check_range(l, g, 3981, 4001, 1));
    }
    raftlog_batch_free(b);
    raftlog_close(l);
}

NK_TEST(a_small_cache_stays_bounded_and_misses_read_from_disk)
{
    struct raftlog_options o;
    small_opts(&o);
    o.cache_bytes = 8192;
    struct raftlog *l;
    NK_REQUIRE_OK(raftlog_open(logdir(), &o, &l));
    struct raftlog_batch *b = raftlog_batch_new();
    for (int round = 0; round < 50; round++) {
        raftlog_batch_clear(b);
        add_entries(b, 3, (uint64_t)round * 20 + 1, (uint64_t)round * 20 + 20, 2);
        NK_REQUIRE_OK(raftlog_write(l, b));
        struct raftlog_stats st;
        raftlog_get_stats(l, &st);
        NK_CHECK(st.cache_bytes <= 8192);
    }
    NK_CHECK(check_range(l, 3, 1, 1001, 2));
    struct raftlog_stats st;
    raftlog_get_stats(l, &st);
    NK_CHECK(st.cache_misses > 0 && st.cache_hits > 0);
    raftlog_batch_free(b);
    raftlog_close(l);
}

NK_TEST(oversized_batches_are_refused_with_resource_exhausted)
{
    struct raftlog_options o;
    small_opts(&o);
    o.max_batch_bytes = 1000;
    struct raftlog *l;
    NK_REQUIRE_OK(raftlog_open(logdir(), &o, &l));
    struct raftlog_batch *b = raftlog_batch_new();
    add_entries(b, 1, 1, 50, 1);
    nk_status s = raftlog_write(l, b);
    NK_CHECK(s.code == NK_RESOURCE_EXHAUSTED && strstr(nk_status_msg(s), "limit"));
    nk_status_free(&s);
    NK_CHECK(raftlog_last_index(l, 1) == 0);
    raftlog_batch_free(b);
    raftlog_close(l);
}

/*
 * The crash test: a child appends batches (fsync on) and reports each
 * acknowledged batch's last index over a pipe; the parent kills it at a
 * random moment, reopens, and requires every acknowledged entry.
 */
NK_TEST(sigkill_never_loses_an_acknowledged_batch)
{
    struct nk_rng r;
    nk_rng_seed(&r, nk_test_seed());
    struct raftlog_options o;
    small_opts(&o);
    uint64_t acked[4] = {0}; /* per group: last acknowledged index (term 1) */
    const int kills = 20;
    (void)logdir(); /* create the directory before forking, so parent and children share it */
    for (int k = 0; k < kills; k++) {
        int fds[2];
        NK_REQUIRE(pipe(fds) == 0);
        pid_t pid = fork();
        NK_REQUIRE(pid >= 0);
        if (pid == 0) {
            close(fds[0]);
            struct raftlog *l;
            nk_status s = raftlog_open(logdir(), &o, &l);
            if (!nk_ok(s))
                _exit(3);
            struct raftlog_batch *b = raftlog_batch_new();
            for (;;) {
                raftlog_batch_clear(b);
                uint64_t last[4];
                for (uint32_t g = 0; g < 4; g++) {
                    uint64_t from = raftlog_last_index(l, g) + 1;
                    last[g] = from + (uint64_t)(g + 1) * 3 - 1;
                    add_entries(b, g, from, last[g], 1);
                }
                if (!nk_ok(raftlog_write(l, b)))
                    _exit(4);
                if (write(fds[1], last, sizeof last) != (ssize_t)sizeof last)
                    _exit(5);
            }
        }
        close(fds[1]);
        nk_sleep_us(2000 + nk_rng_uniform(&r, 30000));
        kill(pid, SIGKILL);
        uint64_t last[4];
        while (read(fds[0], last, sizeof last) == (ssize_t)sizeof last)
            memcpy(acked, last, sizeof last);
        close(fds[0]);
        int st;
        waitpid(pid, &st, 0);
        NK_REQUIRE(WIFSIGNALED(st)); /* it died by our hand, not by an error */
        struct raftlog *l;
        NK_REQUIRE_OK(raftlog_open(logdir(), &o, &l));
        for (uint32_t g = 0; g < 4; g++) {
            NK_CHECK(raftlog_last_index(l, g) >= acked[g]);
            if (acked[g])
                NK_CHECK(check_range(l, g, 1, acked[g] + 1, 1));
        }
        raftlog_close(l);
    }
    NK_CHECK(acked[0] > 0);
    fprintf(stderr, "  %d kills, %llu entries acknowledged in group 0\n", kills,
            (unsigned long long)acked[0]);
}

/* A reader held in the middle of its disk read (before_disk_read blocks). */
struct held_read {
    sem_t entered, release;
    struct raftlog *l;
    bool ok;
};

static void hold_read(void *arg)
{
    struct held_read *h = arg;
    sem_post(&h->entered);
    sem_wait(&h->release);
}

static void *lagging_reader(void *arg)
{
    struct held_read *h = arg;
    struct nk_arena a;
    nk_arena_init(&a);
    struct raftlog_entry *out = nk_malloc(400 * sizeof(*out));
    size_t n = 0;
    nk_status s = raftlog_entries(h->l, 5, 1, 401, UINT64_MAX, &a, out, &n);
    h->ok = nk_ok(s) && n == 400;
    if (!nk_ok(s))
        fprintf(stderr, "  lagging read: %s\n", nk_status_msg(s));
    nk_status_free(&s);
    for (size_t k = 0; h->ok && k < n; k++)
        h->ok = check_entry(&out[k], 5, k + 1, 3);
    free(out);
    nk_arena_free(&a);
    return NULL;
}

NK_TEST(a_reader_waiting_on_the_disk_holds_up_neither_writes_nor_gc_and_reads_correctly)
{
    struct raftlog_options o;
    small_opts(&o);
    o.cache_bytes = 4096; /* the old entries are on disk only */
    struct held_read h;
    sem_init(&h.entered, 0, 0);
    sem_init(&h.release, 0, 0);
    o.before_disk_read = hold_read;
    o.before_disk_read_arg = &h;
    NK_REQUIRE_OK(raftlog_open(logdir(), &o, &h.l));
    struct raftlog_batch *b = raftlog_batch_new();
    for (int round = 0; round < 20; round++) {
        raftlog_batch_clear(b);
        add_entries(b, 5, (uint64_t)round * 20 + 1, (uint64_t)round * 20 + 20, 3);
        NK_REQUIRE_OK(raftlog_write(h.l, b));
    }
    pthread_t t;
    NK_REQUIRE(pthread_create(&t, NULL, lagging_reader, &h) == 0);
    sem_wait(&h.entered); /* the reader is now between its lookup and its read */
    /* writes of other groups complete while it waits (they would deadlock
     * here if the read held the log's mutex) */
    for (int round = 0; round < 200; round++) {
        raftlog_batch_clear(b);
        add_entries(b, 6, (uint64_t)round * 20 + 1, (uint64_t)round * 20 + 20, 1);
        NK_REQUIRE_OK(raftlog_write(h.l, b));
    }
    /* every old segment is free after these compactions, but the reader is
     * inside them: GC must keep them */
    raftlog_batch_clear(b);
    raftlog_batch_compact(b, 5, 400, 3, nk_slice_make(NULL, 0));
    raftlog_batch_compact(b, 6, 4000, 1, nk_slice_make(NULL, 0));
    NK_REQUIRE_OK(raftlog_write(h.l, b));
    struct raftlog_stats before, after;
    raftlog_get_stats(h.l, &before);
    NK_REQUIRE_OK(raftlog_gc(h.l));
    raftlog_get_stats(h.l, &after);
    NK_CHECK_EQ_U64(after.segments, before.segments);
    sem_post(&h.release);
    pthread_join(t, NULL);
    NK_CHECK(h.ok);
    /* with the reader gone, the next GC removes them */
    NK_REQUIRE_OK(raftlog_gc(h.l));
    raftlog_get_stats(h.l, &after);
    NK_CHECK(after.segments < before.segments);
    raftlog_batch_free(b);
    raftlog_close(h.l);
}

NK_TEST(nowait_reads_stop_at_disk_until_a_bounded_prefetch_brings_the_entries_in)
{
    struct raftlog_options o;
    small_opts(&o);
    o.cache_bytes = 4096;
    o.fetch_bytes = 6000;
    struct raftlog *l;
    NK_REQUIRE_OK(raftlog_open(logdir(), &o, &l));
    struct raftlog_batch *b = raftlog_batch_new();
    for (int round = 0; round < 20; round++) {
        raftlog_batch_clear(b);
        add_entries(b, 7, (uint64_t)round * 20 + 1, (uint64_t)round * 20 + 20, 2);
        add_entries(b, 8, (uint64_t)round * 20 + 1, (uint64_t)round * 20 + 20, 2);
        NK_REQUIRE_OK(raftlog_write(l, b));
    }
    struct nk_arena a;
    nk_arena_init(&a);
    struct raftlog_entry out[400];
    size_t n = 99;
    nk_status s = raftlog_entries_nowait(l, 7, 1, 401, 4096, &a, out, &n);
    NK_CHECK_EQ_U64((uint64_t)s.code, (uint64_t)NK_UNAVAILABLE);
    NK_CHECK_EQ_U64(n, 0);
    nk_status_free(&s);
    NK_REQUIRE_OK(raftlog_prefetch(l, 7, 1, 4096));
    NK_REQUIRE_OK(raftlog_entries_nowait(l, 7, 1, 401, 1u << 20, &a, out, &n));
    NK_CHECK(n > 5 && n < 400); /* up to the fetched run, not beyond */
    for (size_t k = 0; k < n; k++)
        NK_CHECK(check_entry(&out[k], 7, k + 1, 2));
    struct raftlog_stats st;
    raftlog_get_stats(l, &st);
    NK_CHECK(st.fetched_bytes > 0 && st.fetched_bytes <= 6000);
    /* another group's fetch beyond the bound takes the room of group 7's
     * run (a group that caught up would otherwise hold its last run for
     * good and starve every other sender); the bound holds */
    NK_REQUIRE_OK(raftlog_prefetch(l, 8, 1, 4096));
    raftlog_get_stats(l, &st);
    NK_CHECK(st.fetched_bytes > 0 && st.fetched_bytes <= 6000);
    size_t n8 = 0;
    NK_REQUIRE_OK(raftlog_entries_nowait(l, 8, 1, 401, 1u << 20, &a, out, &n8));
    NK_CHECK(n8 > 5);
    s = raftlog_entries_nowait(l, 7, 1, 401, 1u << 20, &a, out, &n8);
    NK_CHECK_EQ_U64((uint64_t)s.code, (uint64_t)NK_UNAVAILABLE); /* fetched again if wanted */
    nk_status_free(&s);
    /* a single fetch larger than the whole bound is refused, not queued */
    s = raftlog_prefetch(l, 7, 1, 1u << 20);
    NK_CHECK_EQ_U64((uint64_t)s.code, (uint64_t)NK_RESOURCE_EXHAUSTED);
    nk_status_free(&s);
    NK_REQUIRE_OK(raftlog_prefetch(l, 7, 1, 4096));
    NK_REQUIRE_OK(raftlog_entries_nowait(l, 7, 1, 401, 1u << 20, &a, out, &n));
    /* the group's next fetch replaces its previous run */
    NK_REQUIRE_OK(raftlog_prefetch(l, 7, 1 + n, 4096));
    raftlog_get_stats(l, &st);
    NK_CHECK(st.fetched_bytes <= 6000);
    NK_REQUIRE_OK(raftlog_entries_nowait(l, 7, 1 + n, 401, 1u << 20, &a, out, &n));
    NK_CHECK(n > 0);
    /* compaction releases what was held */
    raftlog_batch_clear(b);
    raftlog_batch_compact(b, 7, 400, 2, nk_slice_make(NULL, 0));
    NK_REQUIRE_OK(raftlog_write(l, b));
    raftlog_get_stats(l, &st);
    NK_CHECK_EQ_U64(st.fetched_bytes, 0);
    NK_REQUIRE_OK(raftlog_prefetch(l, 8, 1, 4096));
    nk_arena_free(&a);
    raftlog_batch_free(b);
    raftlog_close(l);
}

NK_TEST(a_prefetch_holds_at_most_one_append_worth_of_entries_however_long_the_log)
{
    struct raftlog_options o;
    small_opts(&o);
    o.cache_bytes = 4096;
    o.wal.segment_size = 8u << 20;
    struct raftlog *l;
    NK_REQUIRE_OK(raftlog_open(logdir(), &o, &l));
    struct raftlog_batch *b = raftlog_batch_new();
    static uint8_t one[1] = {7};
    struct raftlog_entry ents[1000];
    for (uint64_t i = 0; i < 10; i++) {
        raftlog_batch_clear(b);
        for (uint64_t k = 0; k < 1000; k++)
            ents[k] = (struct raftlog_entry){i * 1000 + k + 1, 1, 0, nk_slice_make(one, 1)};
        raftlog_batch_entries(b, 9, ents, 1000);
        NK_REQUIRE_OK(raftlog_write(l, b));
    }
    NK_REQUIRE_OK(raftlog_prefetch(l, 9, 1, UINT64_MAX));
    struct raftlog_stats st;
    raftlog_get_stats(l, &st);
    NK_CHECK(st.fetched_bytes > 0 && st.fetched_bytes <= 4096);
    struct nk_arena a;
    nk_arena_init(&a);
    struct raftlog_entry *out = nk_malloc(10000 * sizeof(*out));
    size_t n = 0;
    NK_REQUIRE_OK(raftlog_entries_nowait(l, 9, 1, 10001, UINT64_MAX, &a, out, &n));
    NK_CHECK(n >= 4096 && n < 10000);
    free(out);
    nk_arena_free(&a);
    raftlog_batch_free(b);
    raftlog_close(l);
}
