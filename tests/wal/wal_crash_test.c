/*
 * Crash test of src/wal: a child process appends to a real log and reports
 * every acknowledged record to the parent over a pipe; the parent SIGKILLs it
 * at a random moment (during open, appends, rotations), reopens the log and
 * checks that every acknowledged record is present, in order and intact, and
 * that records found by an earlier recovery never disappear later.
 *
 * Most rounds use WAL_SYNC_ALWAYS with one appender; every fourth round uses
 * WAL_SYNC_BATCH with three appending threads (group commit under kills),
 * the third of which appends with wal_append_many_nowait + wal_sync_to.
 */
#define _GNU_SOURCE /* ppoll */
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>

#include "testlib.h"
#include "wal_test_util.h"

enum { ROUNDS = 32, MAX_THREADS = 3, MAX_KILL_US = 60000, MAX_REC = 1 << 20 };

/* Sent by the child just before an append holding a large record. */
#define MARKER UINT64_MAX

/*
 * In these rounds (single appender, ALWAYS) a third of the records are large
 * and the parent kills the child as soon as it announces one, so that the
 * kill lands inside the write: recovery meets real torn tails.
 */
static bool targeted_round(uint64_t round)
{
    return round % 4 == 1;
}

/* id layout: round << 40 | thread << 32 | seq */
static uint64_t make_id(uint64_t round, uint64_t thread, uint64_t seq)
{
    return round << 40 | thread << 32 | seq;
}

struct child_thread {
    struct wal *w;
    uint64_t round, thread;
    int pipe_fd;
    pthread_mutex_t *pipe_mu;
};

static size_t rec_len(uint64_t id)
{
    struct nk_rng r;
    nk_rng_seed(&r, id ^ 0x5bd1e995u);
    /*
     * Mostly small, sometimes large enough to cross 32 KiB segments quickly,
     * rarely up to 1 MiB: a write that takes long enough for a kill to land
     * inside it, so that recovery meets real torn tails.
     */
    if (nk_rng_chance(&r, 1, targeted_round(id >> 40) ? 3 : 40))
        return 64 * 1024 + (size_t)nk_rng_uniform(&r, MAX_REC - 64 * 1024);
    return nk_rng_chance(&r, 1, 16) ? 8 + (size_t)nk_rng_uniform(&r, 12000)
                                    : 8 + (size_t)nk_rng_uniform(&r, 400);
}

static void report(struct child_thread *c, const uint64_t *ids, size_t n)
{
    pthread_mutex_lock(c->pipe_mu);
    size_t bytes = n * sizeof *ids;
    if (write(c->pipe_fd, ids, bytes) != (ssize_t)bytes)
        _exit(4);
    pthread_mutex_unlock(c->pipe_mu);
}

static void *child_appender(void *p)
{
    struct child_thread *c = p;
    struct nk_rng r;
    nk_rng_seed(&r, c->round * 7919 + c->thread);
    uint8_t *bufs[8];
    for (int i = 0; i < 8; i++)
        bufs[i] = nk_malloc(MAX_REC + 8);
    uint64_t seq = 0;
    for (int iter = 0; iter < 1000000; iter++) {
        /* one record, or a batch of up to 8 in one append */
        size_t k = nk_rng_chance(&r, 1, 6) ? 2 + (size_t)nk_rng_uniform(&r, 7) : 1;
        struct wal_record recs[8];
        uint64_t ids[8];
        for (size_t i = 0; i < k; i++) {
            ids[i] = make_id(c->round, c->thread, seq + i);
            size_t len = rec_len(ids[i]);
            wt_payload(ids[i], len, bufs[i]);
            recs[i] = (struct wal_record){(uint8_t)(1 + c->thread), nk_slice_make(bufs[i], len)};
        }
        for (size_t i = 0; i < k; i++)
            if (recs[i].payload.len >= 64 * 1024) {
                uint64_t m = MARKER;
                report(c, &m, 1);
                break;
            }
        nk_status s;
        if (c->thread == 2) {
            /* the caller-ordered pattern: append without waiting, then wait for the disk */
            struct wal_pos end;
            s = wal_append_many_nowait(c->w, recs, k, NULL, &end);
            if (nk_ok(s))
                s = wal_sync_to(c->w, end);
        } else {
            s = wal_append_many(c->w, recs, k, NULL);
        }
        if (!nk_ok(s)) {
            fprintf(stderr, "child: append: %s\n", nk_status_msg(s));
            _exit(3);
        }
        report(c, ids, k);
        seq += k;
        if (c->thread == 0 && nk_rng_chance(&r, 1, 100)) {
            s = wal_rotate(c->w, NULL);
            if (!nk_ok(s)) {
                fprintf(stderr, "child: rotate: %s\n", nk_status_msg(s));
                _exit(3);
            }
        }
    }
    _exit(5); /* never reached in practice: the parent kills us first */
}

static void child_main(const char *dir, uint64_t round, int nthreads, int pipe_fd)
{
    struct wal_options o;
    wal_options_default(&o);
    o.sync = nthreads > 1 ? WAL_SYNC_BATCH : WAL_SYNC_ALWAYS;
    o.segment_size = 32 * 1024;
    struct wal *w;
    nk_status s = wal_open(dir, &o, &w);
    if (!nk_ok(s)) {
        fprintf(stderr, "child: open: %s\n", nk_status_msg(s));
        _exit(3);
    }
    pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    struct child_thread c[MAX_THREADS];
    pthread_t th[MAX_THREADS];
    for (int t = 0; t < nthreads; t++) {
        c[t] = (struct child_thread){w, round, (uint64_t)t, pipe_fd, &mu};
        if (t > 0 && pthread_create(&th[t], NULL, child_appender, &c[t]) != 0)
            _exit(6);
    }
    child_appender(&c[0]);
}

/* What recovery found of each round: per-thread record counts (fixed once seen). */
struct round_state {
    bool seen;
    uint64_t count[MAX_THREADS];
};

NK_TEST(crash_keeps_every_acknowledged_record_in_order_and_intact)
{
    const char *base = nk_test_tmpdir();
    char dir[2048];
    snprintf(dir, sizeof dir, "%s/log", base);
    struct nk_rng r;
    nk_rng_seed(&r, nk_test_seed());
    static struct round_state rs[ROUNDS];
    memset(rs, 0, sizeof rs);
    uint64_t total_acked = 0, total_torn = 0;
    int kills = 0;
    enum nk_log_level old_level = nk_log_get_level();
    nk_log_set_level(NK_LOG_ERROR);

    for (uint64_t round = 0; round < ROUNDS; round++) {
        int nthreads = round % 4 == 3 ? 3 : 1;
        int fds[2];
        NK_REQUIRE(pipe(fds) == 0);
        pid_t pid = fork();
        NK_REQUIRE(pid >= 0);
        if (pid == 0) {
            close(fds[0]);
            child_main(dir, round, nthreads, fds[1]);
            _exit(7);
        }
        close(fds[1]);
        /* kill points: some during open/recovery, most during appends */
        uint64_t delay = nk_rng_chance(&r, 1, 8) ? nk_rng_uniform(&r, 1500)
                                                 : nk_rng_uniform(&r, MAX_KILL_US);
        uint64_t deadline = nk_mono_ns() + delay * 1000;
        uint64_t acked[MAX_THREADS] = {0};
        bool ids_ok = true, child_gone = false;
        uint8_t carry[8];
        size_t ncarry = 0;
        /* read acknowledgements as they come; in targeted rounds kill on a marker */
        for (bool kill_now = false; !kill_now && !child_gone;) {
            uint64_t now = nk_mono_ns();
            if (now >= deadline)
                break;
            struct pollfd pfd = {fds[0], POLLIN, 0};
            struct timespec ts = {(time_t)((deadline - now) / 1000000000ull),
                                  (long)((deadline - now) % 1000000000ull)};
            if (ppoll(&pfd, 1, &ts, NULL) <= 0)
                continue;
            uint8_t buf[4096];
            ssize_t k = read(fds[0], buf, sizeof buf);
            if (k <= 0) {
                child_gone = true;
                break;
            }
            for (ssize_t i = 0; i < k; i++) {
                carry[ncarry++] = buf[i];
                if (ncarry < 8)
                    continue;
                ncarry = 0;
                uint64_t id = nk_dec_fixed64(carry);
                if (id == MARKER) {
                    kill_now = kill_now || targeted_round(round);
                    continue;
                }
                uint64_t t = (id >> 32) & 0xff, seq = id & 0xffffffffu;
                ids_ok = ids_ok && (id >> 40) == round && t < (uint64_t)nthreads &&
                         seq == acked[t]; /* each thread acknowledges in sequence */
                if (t < MAX_THREADS)
                    acked[t]++;
                total_acked++;
            }
        }
        if (nk_mono_ns() < deadline) /* killed on a marker: land somewhere in the write */
            nk_sleep_us(nk_rng_uniform(&r, 400));
        NK_REQUIRE(kill(pid, SIGKILL) == 0);
        int status;
        NK_REQUIRE(waitpid(pid, &status, 0) == pid);
        if (!(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)) {
            fprintf(stderr, "  round %" PRIu64 ": child exited on its own (status %d)\n", round,
                    status);
            NK_CHECK(false);
            close(fds[0]);
            break;
        }
        kills++;

        /* the rest of what the child acknowledged before it died */
        uint8_t buf[4096];
        ssize_t k;
        while ((k = read(fds[0], buf, sizeof buf)) > 0) {
            for (ssize_t i = 0; i < k; i++) {
                carry[ncarry++] = buf[i];
                if (ncarry < 8)
                    continue;
                ncarry = 0;
                uint64_t id = nk_dec_fixed64(carry);
                if (id == MARKER)
                    continue;
                uint64_t t = (id >> 32) & 0xff, seq = id & 0xffffffffu;
                ids_ok = ids_ok && (id >> 40) == round && t < (uint64_t)nthreads && seq == acked[t];
                if (t < MAX_THREADS)
                    acked[t]++;
                total_acked++;
            }
        }
        close(fds[0]);
        NK_REQUIRE(k == 0 && ncarry == 0);
        NK_REQUIRE(ids_ok);
        if (getenv("WAL_CRASH_VERBOSE"))
            fprintf(stderr, "  round %" PRIu64 ": killed after %" PRIu64 " us, %" PRIu64
                    " acknowledged\n", round, delay, acked[0] + acked[1] + acked[2]);

        /* recover and check the whole log */
        struct wal_options o;
        wal_options_default(&o);
        o.segment_size = 32 * 1024;
        struct wal *w;
        NK_REQUIRE_OK(wal_open(dir, &o, &w));
        struct wal_stats st;
        wal_get_stats(w, &st);
        total_torn += st.torn_bytes_truncated;
        struct wt_log l;
        nk_status s = wt_read_all(w, (struct wal_pos){0, 0}, &l);
        wal_close(w);
        NK_REQUIRE_OK(s);
        uint64_t found[ROUNDS][MAX_THREADS];
        memset(found, 0, sizeof found);
        uint64_t last_round = 0;
        bool ok = true;
        for (size_t i = 0; i < l.n && ok; i++) {
            struct wt_rec *rec = &l.recs[i];
            if (rec->len < 8) {
                ok = false;
                break;
            }
            uint64_t rid = nk_dec_fixed64(rec->data);
            uint64_t rr = rid >> 40, t = (rid >> 32) & 0xff, seq = rid & 0xffffffffu;
            ok = rr <= round && rr >= last_round && t < MAX_THREADS && rec->type == 1 + t &&
                 seq == found[rr][t] && rec->len == rec_len(rid) &&
                 wt_payload_ok(rid, nk_slice_make(rec->data, rec->len));
            if (!ok)
                fprintf(stderr, "  round %" PRIu64 ": record %zu (id %" PRIx64 ") out of place or damaged\n",
                        round, i, rid);
            last_round = rr;
            found[rr][t]++;
        }
        wt_log_free(&l);
        NK_REQUIRE(ok);
        for (uint64_t t = 0; t < MAX_THREADS; t++) {
            if (found[round][t] < acked[t]) {
                fprintf(stderr,
                        "  round %" PRIu64 " thread %" PRIu64 ": %" PRIu64
                        " acknowledged, only %" PRIu64 " recovered\n",
                        round, t, acked[t], found[round][t]);
                NK_CHECK(false);
            }
            rs[round].count[t] = found[round][t];
        }
        rs[round].seen = true;
        /* earlier rounds are exactly as the earlier recoveries found them */
        for (uint64_t pr = 0; pr < round; pr++)
            for (int t = 0; t < MAX_THREADS; t++)
                NK_CHECK_EQ_U64(found[pr][t], rs[pr].count[t]);
    }
    nk_log_set_level(old_level);
    fprintf(stderr, "  %d kills, %" PRIu64 " acknowledged records, %" PRIu64 " torn bytes truncated\n",
            kills, total_acked, total_torn);
    NK_CHECK(kills == ROUNDS);
    NK_CHECK(total_acked > 0);
}
