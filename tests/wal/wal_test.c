/*
 * Tests of src/wal: round trips across segments, reopen, torn tails, mid-log
 * damage, group commit, segment removal and iteration while appending. Every
 * test works on real files in its own directory and syncs for real.
 */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/resource.h>

#include "testlib.h"
#include "wal_test_util.h"

static struct wal_options small_opts(enum wal_sync_mode mode, uint64_t segment_size)
{
    struct wal_options o;
    wal_options_default(&o);
    o.sync = mode;
    o.segment_size = segment_size;
    return o;
}

/* Appends records id = first..first+n-1 with sizes from the rng; returns their positions. */
static nk_status append_ids(struct wal *w, struct nk_rng *r, uint64_t first, size_t n,
                            size_t max_len, size_t *lens, struct wal_pos *pos)
{
    uint8_t *buf = nk_malloc(max_len + 1);
    nk_status s = NK_OK;
    for (size_t i = 0; i < n && nk_ok(s); i++) {
        size_t len = (size_t)nk_rng_uniform(r, max_len + 1);
        wt_payload(first + i, len, buf);
        lens[i] = len;
        s = wal_append(w, (uint8_t)(1 + (first + i) % 255), buf, len, &pos[i]);
    }
    free(buf);
    return s;
}

/* Checks the log holds exactly ids 0..n-1 with the given lengths and positions. */
static void check_log(struct wal *w, size_t n, const size_t *lens, const struct wal_pos *pos)
{
    struct wt_log l;
    NK_REQUIRE_OK(wt_read_all(w, (struct wal_pos){0, 0}, &l));
    NK_CHECK_EQ_U64(l.n, n);
    for (size_t i = 0; i < l.n && i < n; i++) {
        NK_CHECK_EQ_U64(l.recs[i].type, 1 + i % 255);
        NK_CHECK_EQ_U64(l.recs[i].len, lens[i]);
        NK_CHECK(wt_payload_ok(i, nk_slice_make(l.recs[i].data, l.recs[i].len)));
        if (pos)
            NK_CHECK(wal_pos_cmp(l.recs[i].pos, pos[i]) == 0);
    }
    wt_log_free(&l);
}

NK_TEST(sync_mode_names_parse)
{
    enum wal_sync_mode m;
    NK_CHECK(wal_parse_sync_mode("always", &m) && m == WAL_SYNC_ALWAYS);
    NK_CHECK(wal_parse_sync_mode("batch", &m) && m == WAL_SYNC_BATCH);
    NK_CHECK(wal_parse_sync_mode("os", &m) && m == WAL_SYNC_OS);
    NK_CHECK(!wal_parse_sync_mode("sometimes", &m));
    NK_CHECK(!wal_parse_sync_mode(NULL, &m));
}

NK_TEST(append_then_iterate_returns_every_record_in_order)
{
    const char *dir = nk_test_tmpdir();
    struct wal_options o = small_opts(WAL_SYNC_ALWAYS, 1 << 20);
    struct wal *w;
    NK_REQUIRE_OK(wal_open(dir, &o, &w));
    struct nk_rng r;
    nk_rng_seed(&r, 1);
    size_t lens[200];
    struct wal_pos pos[200];
    lens[0] = 0;
    NK_REQUIRE_OK(wal_append(w, 1, "", 0, &pos[0])); /* empty payload is a record too */
    NK_CHECK_EQ_U64(pos[0].segment, 1);
    NK_CHECK_EQ_U64(pos[0].offset, WAL_SEGMENT_HEADER_SIZE);
    NK_REQUIRE_OK(append_ids(w, &r, 1, 199, 300, lens + 1, pos + 1));
    for (size_t i = 1; i < 200; i++)
        NK_CHECK(wal_pos_cmp(pos[i - 1], pos[i]) < 0);
    check_log(w, 200, lens, pos);
    struct wal_stats st;
    wal_get_stats(w, &st);
    NK_CHECK_EQ_U64(st.records_appended, 200);
    NK_CHECK(st.syncs >= 200); /* ALWAYS: every lone append syncs */
    NK_CHECK_EQ_U64(st.segments, 1);
    wal_close(w);
}

NK_TEST(records_cross_segment_boundaries_and_rotation)
{
    const char *dir = nk_test_tmpdir();
    struct wal_options o = small_opts(WAL_SYNC_OS, 4096);
    struct wal *w;
    NK_REQUIRE_OK(wal_open(dir, &o, &w));
    struct nk_rng r;
    nk_rng_seed(&r, nk_test_seed());
    enum { N = 600 };
    size_t lens[N];
    struct wal_pos pos[N];
    for (size_t i = 0; i < N; i += 50) {
        NK_REQUIRE_OK(append_ids(w, &r, i, 50, 1500, lens + i, pos + i));
        uint64_t next;
        if (i % 200 == 0) {
            NK_REQUIRE_OK(wal_rotate(w, &next));
            NK_CHECK_EQ_U64(next, wal_end(w).segment);
        }
    }
    struct wal_stats st;
    wal_get_stats(w, &st);
    NK_CHECK(st.segments > 10);
    for (size_t i = 1; i < N; i++)
        NK_CHECK(wal_pos_cmp(pos[i - 1], pos[i]) < 0);
    /* no record straddles a segment: every one starts inside its segment's limit */
    for (size_t i = 0; i < N; i++)
        NK_CHECK(pos[i].offset + WAL_RECORD_HEADER_SIZE + lens[i] <= 4096);
    check_log(w, N, lens, pos);
    /* from any record's position, iteration yields exactly the suffix */
    for (size_t k = 0; k < N; k += 37) {
        struct wt_log l;
        NK_REQUIRE_OK(wt_read_all(w, pos[k], &l));
        NK_CHECK_EQ_U64(l.n, N - k);
        if (l.n)
            NK_CHECK(wt_payload_ok(k, nk_slice_make(l.recs[0].data, l.recs[0].len)));
        wt_log_free(&l);
    }
    /* from the start of a segment: exactly the records of that segment on */
    {
        uint64_t seg = pos[N / 2].segment;
        size_t k = 0;
        while (pos[k].segment < seg)
            k++;
        struct wt_log l2;
        NK_REQUIRE_OK(wt_read_all(w, (struct wal_pos){seg, 0}, &l2));
        NK_CHECK_EQ_U64(l2.n, N - k);
        if (l2.n)
            NK_CHECK(wal_pos_cmp(l2.recs[0].pos, pos[k]) == 0);
        wt_log_free(&l2);
    }
    /* from the end: nothing */
    struct wt_log l;
    NK_REQUIRE_OK(wt_read_all(w, wal_end(w), &l));
    NK_CHECK_EQ_U64(l.n, 0);
    wt_log_free(&l);
    wal_close(w);

    /* the same after reopening, with preallocation off this time */
    o.preallocate = false;
    NK_REQUIRE_OK(wal_open(dir, &o, &w));
    check_log(w, N, lens, pos);
    wal_close(w);
}

NK_TEST(append_many_is_contiguous_and_a_large_record_gets_its_own_segment)
{
    const char *dir = nk_test_tmpdir();
    struct wal_options o = small_opts(WAL_SYNC_BATCH, 4096);
    struct wal *w;
    NK_REQUIRE_OK(wal_open(dir, &o, &w));
    uint8_t small[100], big[10000];
    wt_payload(0, sizeof small, small);
    NK_REQUIRE_OK(wal_append(w, 1, small, sizeof small, NULL));
    /* a batch that does not fit in what is left but fits a fresh segment moves there whole */
    enum { B = 35 }; /* 32 + 35 * 113 <= 4096 < 32 + 113 + 35 * 113 */
    struct wal_record recs[B];
    uint8_t bufs[B][100];
    for (int i = 0; i < B; i++) {
        wt_payload(1 + (uint64_t)i, 100, bufs[i]);
        recs[i] = (struct wal_record){(uint8_t)(2 + i), nk_slice_make(bufs[i], 100)};
    }
    struct wal_pos first;
    NK_REQUIRE_OK(wal_append_many(w, recs, B, &first));
    NK_CHECK_EQ_U64(first.segment, 2);
    NK_CHECK_EQ_U64(first.offset, WAL_SEGMENT_HEADER_SIZE);
    NK_CHECK_EQ_U64(wal_end(w).offset, WAL_SEGMENT_HEADER_SIZE + B * (100 + WAL_RECORD_HEADER_SIZE));
    /* a record larger than a segment gets a segment of its own */
    wt_payload(B + 1, sizeof big, big);
    struct wal_pos bp;
    NK_REQUIRE_OK(wal_append(w, 33, big, sizeof big, &bp));
    NK_CHECK_EQ_U64(bp.segment, 3);
    NK_CHECK_EQ_U64(bp.offset, WAL_SEGMENT_HEADER_SIZE);
    NK_REQUIRE_OK(wal_append(w, 34, small, sizeof small, &bp));
    NK_CHECK_EQ_U64(bp.segment, 4);
    /* a batch larger than a segment is split across segments, in order */
    struct wal_record many[100];
    for (int i = 0; i < 100; i++)
        many[i] = (struct wal_record){35, nk_slice_make(bufs[i % B], 100)};
    NK_REQUIRE_OK(wal_append_many(w, many, 100, &first));
    NK_CHECK_EQ_U64(first.segment, 4);
    wal_close(w);

    NK_REQUIRE_OK(wal_open(dir, &o, &w));
    struct wt_log l;
    NK_REQUIRE_OK(wt_read_all(w, (struct wal_pos){0, 0}, &l));
    NK_REQUIRE(l.n == 1 + B + 1 + 1 + 100);
    for (int i = 0; i < B; i++) {
        NK_CHECK_EQ_U64(l.recs[1 + i].type, 2 + i);
        NK_CHECK(wt_payload_ok(1 + (uint64_t)i, nk_slice_make(l.recs[1 + i].data, 100)));
    }
    NK_CHECK_EQ_U64(l.recs[1 + B].len, sizeof big);
    NK_CHECK(wt_payload_ok(B + 1, nk_slice_make(l.recs[1 + B].data, l.recs[1 + B].len)));
    for (int i = 0; i < 100; i++)
        NK_CHECK(memcmp(l.recs[3 + B + i].data, bufs[i % B], 100) == 0);
    wt_log_free(&l);
    wal_close(w);
}

NK_TEST(invalid_records_are_rejected_with_a_status)
{
    const char *dir = nk_test_tmpdir();
    struct wal_options o = small_opts(WAL_SYNC_OS, 1 << 20);
    o.max_record_size = 1000;
    struct wal *w;
    NK_REQUIRE_OK(wal_open(dir, &o, &w));
    uint8_t buf[1001] = {0};
    nk_status s = wal_append(w, 1, buf, 1001, NULL);
    NK_CHECK(s.code == NK_INVALID_ARGUMENT);
    NK_CHECK(s.msg && strstr(s.msg, "max_record_size"));
    nk_status_free(&s);
    s = wal_append(w, 0, buf, 10, NULL);
    NK_CHECK(s.code == NK_INVALID_ARGUMENT);
    nk_status_free(&s);
    NK_REQUIRE_OK(wal_append(w, 1, buf, 1000, NULL)); /* exactly the limit is fine */
    /* a second open of the same directory is refused while this one holds it */
    struct wal *w2 = NULL;
    s = wal_open(dir, &o, &w2);
    NK_CHECK(s.code == NK_FAILED_PRECONDITION);
    nk_status_free(&s);
    wal_close(w);
    /* bad options */
    o.segment_size = 100;
    s = wal_open(dir, &o, &w2);
    NK_CHECK(s.code == NK_INVALID_ARGUMENT);
    nk_status_free(&s);
    o.segment_size = 1 << 20;
    o.max_record_size = WAL_RECORD_SIZE_LIMIT + 1;
    s = wal_open(dir, &o, &w2);
    NK_CHECK(s.code == NK_INVALID_ARGUMENT);
    nk_status_free(&s);
    o.max_record_size = 1000;
    static char longdir[5000];
    memset(longdir, 'd', sizeof longdir - 1);
    s = wal_open(longdir, &o, &w2);
    NK_CHECK(s.code == NK_INVALID_ARGUMENT);
    nk_status_free(&s);
    s = wal_open("", &o, &w2);
    NK_CHECK(s.code == NK_INVALID_ARGUMENT);
    nk_status_free(&s);
}

NK_TEST(reopen_continues_appending_after_the_last_record)
{
    const char *dir = nk_test_tmpdir();
    struct nk_rng r;
    nk_rng_seed(&r, nk_test_seed());
    enum { ROUNDS = 6, PER = 40, N = ROUNDS * PER };
    size_t lens[N];
    struct wal_pos pos[N];
    for (int round = 0; round < ROUNDS; round++) {
        struct wal_options o = small_opts(round % 3 == 0 ? WAL_SYNC_ALWAYS : WAL_SYNC_OS, 8192);
        o.preallocate = round % 2 == 0;
        struct wal *w;
        NK_REQUIRE_OK(wal_open(dir, &o, &w));
        struct wal_pos end = wal_end(w);
        if (round > 0) {
            /* the end is just past the last record written by the previous run */
            struct wal_pos last = pos[round * PER - 1];
            uint64_t last_end = last.offset + WAL_RECORD_HEADER_SIZE + lens[round * PER - 1];
            NK_CHECK(end.segment == last.segment && end.offset == last_end);
        }
        NK_REQUIRE_OK(append_ids(w, &r, (uint64_t)round * PER, PER, 700, lens + round * PER,
                                 pos + round * PER));
        check_log(w, (size_t)(round + 1) * PER, lens, pos);
        struct wal_stats st;
        wal_get_stats(w, &st);
        NK_CHECK_EQ_U64(st.torn_bytes_truncated, 0);
        wal_close(w);
    }
}

/*
 * Builds a log of n records in one segment with preallocation and returns
 * the segment's bytes and the records' offsets (offs[n] = end of data).
 */
static bool build_segment(const char *dir, size_t n, size_t len, uint8_t **file, size_t *fsize,
                          uint64_t *offs)
{
    struct wal_options o = small_opts(WAL_SYNC_OS, 1 << 16);
    struct wal *w;
    nk_status s = wal_open(dir, &o, &w);
    if (!nk_ok(s)) {
        nk_status_free(&s);
        return false;
    }
    uint8_t *buf = nk_malloc(len);
    for (size_t i = 0; i < n && nk_ok(s); i++) {
        wt_payload(i, len, buf);
        struct wal_pos p;
        s = wal_append(w, (uint8_t)(1 + i % 255), buf, len, &p);
        offs[i] = p.offset;
    }
    free(buf);
    offs[n] = wal_end(w).offset;
    wal_close(w);
    if (!nk_ok(s)) {
        nk_status_free(&s);
        return false;
    }
    char path[4096];
    wt_seg_path(dir, 1, path, sizeof path);
    return wt_read_file(path, file, fsize);
}

NK_TEST(torn_tail_at_every_byte_of_the_last_record_is_truncated_and_appends_continue)
{
    const char *base = nk_test_tmpdir();
    char src[2048];
    snprintf(src, sizeof src, "%s/src", base);
    enum { N = 8, LEN = 60 };
    uint64_t offs[N + 1];
    uint8_t *orig;
    size_t fsize;
    NK_REQUIRE(build_segment(src, N, LEN, &orig, &fsize, offs));
    NK_REQUIRE(fsize == 1 << 16); /* preallocated */
    struct nk_rng r;
    nk_rng_seed(&r, nk_test_seed());
    uint8_t *img = nk_malloc(fsize);
    int cases = 0;
    enum nk_log_level old_level = nk_log_get_level();
    nk_log_set_level(NK_LOG_ERROR); /* one "torn tail truncated" warning per case otherwise */
    for (uint64_t cut = offs[N - 1]; cut < offs[N]; cut++) {
        /* three ways a write can be torn: file cut short, zeros, garbage after the cut */
        for (int how = 0; how < 3; how++) {
            char dir[2048], path[4096];
            snprintf(dir, sizeof dir, "%s/c%" PRIu64 "_%d", base, cut, how);
            NK_REQUIRE_OK(nk_mkdirs(dir, 0755));
            wt_seg_path(dir, 1, path, sizeof path);
            memcpy(img, orig, fsize);
            size_t n = fsize;
            if (how == 0)
                n = (size_t)cut;
            else
                for (uint64_t k = cut; k < offs[N]; k++)
                    /* garbage always differs from the byte it replaces: a
                     * random byte equal to it would leave the record whole
                     * (seed 3688154635 cut the last byte and drew it back) */
                    img[k] = how == 1 ? 0
                                      : (uint8_t)(orig[k] ^ (uint8_t)(1 + nk_rng_uniform(&r, 255)));
            NK_REQUIRE(wt_write_file(path, img, n));
            struct wal_options o = small_opts(WAL_SYNC_ALWAYS, 1 << 16);
            struct wal *w;
            NK_REQUIRE_OK(wal_open(dir, &o, &w));
            struct wal_pos end = wal_end(w);
            NK_CHECK_EQ_U64(end.offset, offs[N - 1]);
            struct wal_stats st;
            wal_get_stats(w, &st);
            if (how == 2)
                NK_CHECK(st.torn_bytes_truncated > 0);
            /* appends continue where the valid prefix ends */
            uint8_t buf[LEN];
            wt_payload(N - 1, LEN, buf);
            struct wal_pos p;
            NK_REQUIRE_OK(wal_append(w, (uint8_t)N, buf, LEN, &p));
            NK_CHECK_EQ_U64(p.offset, offs[N - 1]);
            wal_close(w);
            NK_REQUIRE_OK(wal_open(dir, &o, &w));
            size_t lens[N];
            for (int i = 0; i < N; i++)
                lens[i] = LEN;
            check_log(w, N, lens, NULL);
            wal_get_stats(w, &st);
            NK_CHECK_EQ_U64(st.torn_bytes_truncated, 0);
            wal_close(w);
            NK_REQUIRE_OK(nk_remove_tree(dir));
            cases++;
        }
    }
    nk_log_set_level(old_level);
    NK_CHECK_EQ_U64(cases, 3 * (offs[N] - offs[N - 1]));
    free(img);
    free(orig);
}

NK_TEST(flipped_byte_in_a_middle_record_is_data_loss_naming_file_and_offset)
{
    const char *base = nk_test_tmpdir();
    char src[2048];
    snprintf(src, sizeof src, "%s/src", base);
    enum { N = 20, LEN = 50, VICTIM = 9 };
    uint64_t offs[N + 1];
    uint8_t *orig;
    size_t fsize;
    NK_REQUIRE(build_segment(src, N, LEN, &orig, &fsize, offs));
    /* every byte of the victim: header (crc, length, type) and payload */
    for (uint64_t at = offs[VICTIM]; at < offs[VICTIM + 1]; at++) {
        char dir[2048], path[4096];
        snprintf(dir, sizeof dir, "%s/f%" PRIu64, base, at);
        NK_REQUIRE_OK(nk_mkdirs(dir, 0755));
        wt_seg_path(dir, 1, path, sizeof path);
        NK_REQUIRE(wt_write_file(path, orig, fsize));
        NK_REQUIRE(wt_flip_byte(path, at, 0x10));
        struct wal_options o = small_opts(WAL_SYNC_ALWAYS, 1 << 16);
        struct wal *w = NULL;
        nk_status s = wal_open(dir, &o, &w);
        NK_CHECK(s.code == NK_DATA_LOSS);
        char want[64];
        snprintf(want, sizeof want, "offset %" PRIu64, offs[VICTIM]);
        NK_CHECK(s.msg && strstr(s.msg, "00000000000000000001.wal") && strstr(s.msg, want));
        if (at == offs[VICTIM])
            fprintf(stderr, "  message: %s\n", nk_status_msg(s));
        nk_status_free(&s);
        if (w)
            wal_close(w);
        NK_REQUIRE_OK(nk_remove_tree(dir));
    }
    /* a byte of the segment header */
    char path[4096];
    wt_seg_path(src, 1, path, sizeof path);
    NK_REQUIRE(wt_flip_byte(path, 17, 0x01));
    struct wal_options o = small_opts(WAL_SYNC_ALWAYS, 1 << 16);
    struct wal *w = NULL;
    nk_status s = wal_open(src, &o, &w);
    NK_CHECK(s.code == NK_DATA_LOSS);
    nk_status_free(&s);
    free(orig);
}

NK_TEST(zeroed_bytes_before_valid_records_are_data_loss_not_end_of_log)
{
    const char *base = nk_test_tmpdir();
    char src[2048];
    snprintf(src, sizeof src, "%s/src", base);
    enum { N = 20, LEN = 50 };
    uint64_t offs[N + 1];
    uint8_t *orig;
    size_t fsize;
    NK_REQUIRE(build_segment(src, N, LEN, &orig, &fsize, offs));
    /* a lost write (zeros) in the middle must not read as the end of the log */
    memset(orig + offs[5], 0, offs[7] - offs[5]);
    char path[4096];
    wt_seg_path(src, 1, path, sizeof path);
    NK_REQUIRE(wt_write_file(path, orig, fsize));
    struct wal_options o = small_opts(WAL_SYNC_ALWAYS, 1 << 16);
    struct wal *w = NULL;
    nk_status s = wal_open(src, &o, &w);
    NK_CHECK(s.code == NK_DATA_LOSS);
    nk_status_free(&s);
    free(orig);
}

NK_TEST(damage_in_a_sealed_segment_is_data_loss_even_at_its_end)
{
    const char *dir = nk_test_tmpdir();
    struct wal_options o = small_opts(WAL_SYNC_OS, 1 << 16);
    struct wal *w;
    NK_REQUIRE_OK(wal_open(dir, &o, &w));
    uint8_t buf[100];
    wt_payload(0, 100, buf);
    struct wal_pos last;
    for (int i = 0; i < 10; i++)
        NK_REQUIRE_OK(wal_append(w, 1, buf, 100, &last));
    NK_REQUIRE_OK(wal_rotate(w, NULL));
    NK_REQUIRE_OK(wal_append(w, 1, buf, 100, NULL));
    wal_close(w);
    char path[4096];
    wt_seg_path(dir, 1, path, sizeof path);
    /* the last record of segment 1: a torn tail in the newest segment, but not here */
    NK_REQUIRE(wt_flip_byte(path, last.offset + 50, 0x40));
    nk_status s = wal_open(dir, &o, &w);
    NK_CHECK(s.code == NK_DATA_LOSS);
    NK_CHECK(s.msg && strstr(s.msg, "00000000000000000001.wal"));
    nk_status_free(&s);
}

NK_TEST(a_missing_middle_segment_is_data_loss)
{
    const char *dir = nk_test_tmpdir();
    struct wal_options o = small_opts(WAL_SYNC_OS, 1 << 16);
    struct wal *w;
    NK_REQUIRE_OK(wal_open(dir, &o, &w));
    for (int i = 0; i < 3; i++) {
        NK_REQUIRE_OK(wal_append(w, 1, "x", 1, NULL));
        NK_REQUIRE_OK(wal_rotate(w, NULL));
    }
    wal_close(w);
    char path[4096];
    wt_seg_path(dir, 2, path, sizeof path);
    NK_REQUIRE(unlink(path) == 0);
    nk_status s = wal_open(dir, &o, &w);
    NK_CHECK(s.code == NK_DATA_LOSS);
    NK_CHECK(s.msg && strstr(s.msg, "segment 2 is missing"));
    nk_status_free(&s);
}

NK_TEST(iterator_reports_damage_made_after_open_as_data_loss)
{
    const char *dir = nk_test_tmpdir();
    struct wal_options o = small_opts(WAL_SYNC_OS, 1 << 16);
    struct wal *w;
    NK_REQUIRE_OK(wal_open(dir, &o, &w));
    uint8_t buf[100];
    wt_payload(0, 100, buf);
    struct wal_pos p[5];
    for (int i = 0; i < 5; i++)
        NK_REQUIRE_OK(wal_append(w, 1, buf, 100, &p[i]));
    char path[4096];
    wt_seg_path(dir, 1, path, sizeof path);
    NK_REQUIRE(wt_flip_byte(path, p[2].offset + 20, 0x01));
    struct wt_log l;
    nk_status s = wt_read_all(w, (struct wal_pos){0, 0}, &l);
    NK_CHECK(s.code == NK_DATA_LOSS);
    nk_status_free(&s);
    /* a position that is not a record boundary is refused, never decoded as one */
    s = wt_read_all(w, (struct wal_pos){1, p[1].offset + 3}, &l);
    NK_CHECK(s.code == NK_DATA_LOSS);
    nk_status_free(&s);
    /* positions outside the log */
    s = wt_read_all(w, (struct wal_pos){7, 0}, &l);
    NK_CHECK(s.code == NK_OUT_OF_RANGE);
    nk_status_free(&s);
    s = wt_read_all(w, (struct wal_pos){1, p[4].offset + 1000}, &l);
    NK_CHECK(s.code == NK_OUT_OF_RANGE);
    nk_status_free(&s);
    wal_close(w);
}

struct gc_arg {
    struct wal *w;
    int thread;
    int count;
    nk_status s;
};

static void *gc_writer(void *p)
{
    struct gc_arg *a = p;
    a->s = NK_OK;
    for (int i = 0; i < a->count && nk_ok(a->s); i++) {
        uint8_t buf[100];
        uint64_t id = (uint64_t)a->thread << 32 | (uint64_t)i;
        wt_payload(id, sizeof buf, buf);
        a->s = wal_append(a->w, (uint8_t)(1 + a->thread), buf, sizeof buf, NULL);
    }
    return NULL;
}

NK_TEST(group_commit_shares_fdatasyncs_between_concurrent_appenders)
{
    const char *dir = nk_test_tmpdir();
    struct wal_options o = small_opts(WAL_SYNC_BATCH, 1 << 20);
    struct wal *w;
    NK_REQUIRE_OK(wal_open(dir, &o, &w));
    struct wal_stats st0;
    wal_get_stats(w, &st0);
    enum { T = 4, PER = 250 };
    pthread_t th[T];
    struct gc_arg args[T];
    for (int t = 0; t < T; t++) {
        args[t] = (struct gc_arg){w, t, PER, NK_OK};
        NK_REQUIRE(pthread_create(&th[t], NULL, gc_writer, &args[t]) == 0);
    }
    for (int t = 0; t < T; t++)
        pthread_join(th[t], NULL);
    for (int t = 0; t < T; t++)
        NK_REQUIRE_OK(args[t].s);
    struct wal_stats st;
    wal_get_stats(w, &st);
    uint64_t syncs = st.syncs - st0.syncs;
    fprintf(stderr, "  %d appends, %" PRIu64 " fdatasyncs\n", T * PER, syncs);
    NK_CHECK_EQ_U64(st.records_appended, T * PER);
    NK_CHECK(syncs > 0);
    NK_CHECK(syncs < (uint64_t)T * PER);
    wal_close(w);

    /* every record is there, each thread's in its order */
    NK_REQUIRE_OK(wal_open(dir, &o, &w));
    struct wt_log l;
    NK_REQUIRE_OK(wt_read_all(w, (struct wal_pos){0, 0}, &l));
    NK_CHECK_EQ_U64(l.n, T * PER);
    int next[T] = {0};
    for (size_t i = 0; i < l.n; i++) {
        int t = l.recs[i].type - 1;
        NK_REQUIRE(t >= 0 && t < T);
        uint64_t id = (uint64_t)t << 32 | (uint64_t)next[t];
        NK_CHECK(wt_payload_ok(id, nk_slice_make(l.recs[i].data, l.recs[i].len)));
        next[t]++;
    }
    for (int t = 0; t < T; t++)
        NK_CHECK_EQ_U64(next[t], PER);
    wt_log_free(&l);
    wal_close(w);
}

NK_TEST(a_lone_batch_writer_does_not_sleep_the_window)
{
    const char *dir = nk_test_tmpdir();
    struct wal_options o = small_opts(WAL_SYNC_BATCH, 1 << 20);
    o.batch_window_us = 500000; /* half a second: sleeping it even once would show */
    struct wal *w;
    NK_REQUIRE_OK(wal_open(dir, &o, &w));
    uint64_t t0 = nk_mono_ns();
    for (int i = 0; i < 5; i++)
        NK_REQUIRE_OK(wal_append(w, 1, "abc", 3, NULL));
    uint64_t ms = (nk_mono_ns() - t0) / 1000000;
    fprintf(stderr, "  5 lone appends took %" PRIu64 " ms\n", ms);
    NK_CHECK(ms < 500);
    struct wal_stats st;
    wal_get_stats(w, &st);
    NK_CHECK(st.syncs >= 5); /* each was durable on its own */
    wal_close(w);
}

NK_TEST(remove_before_deletes_whole_old_segments_only)
{
    const char *dir = nk_test_tmpdir();
    struct wal_options o = small_opts(WAL_SYNC_OS, 1 << 16);
    struct wal *w;
    NK_REQUIRE_OK(wal_open(dir, &o, &w));
    struct wal_pos p[5];
    for (int i = 0; i < 5; i++) {
        uint8_t buf[10];
        wt_payload((uint64_t)i, 10, buf);
        NK_REQUIRE_OK(wal_append(w, 1, buf, 10, &p[i]));
        if (i < 4)
            NK_REQUIRE_OK(wal_rotate(w, NULL));
    }
    NK_CHECK_EQ_U64(wal_first_segment(w), 1);
    NK_REQUIRE_OK(wal_remove_before(w, 3));
    NK_CHECK_EQ_U64(wal_first_segment(w), 3);
    char path[4096];
    wt_seg_path(dir, 2, path, sizeof path);
    NK_CHECK(access(path, F_OK) != 0);
    struct wt_log l;
    NK_REQUIRE_OK(wt_read_all(w, (struct wal_pos){0, 0}, &l));
    NK_CHECK_EQ_U64(l.n, 3);
    if (l.n == 3)
        NK_CHECK(wt_payload_ok(2, nk_slice_make(l.recs[0].data, l.recs[0].len)));
    wt_log_free(&l);
    nk_status s = wt_read_all(w, p[0], &l);
    NK_CHECK(s.code == NK_OUT_OF_RANGE);
    nk_status_free(&s);
    /* the current segment is never removed */
    NK_REQUIRE_OK(wal_remove_before(w, 1000));
    NK_CHECK_EQ_U64(wal_first_segment(w), 5);
    NK_REQUIRE_OK(wal_append(w, 1, "y", 1, NULL));
    wal_close(w);
    NK_REQUIRE_OK(wal_open(dir, &o, &w));
    NK_CHECK_EQ_U64(wal_first_segment(w), 5);
    NK_REQUIRE_OK(wt_read_all(w, (struct wal_pos){0, 0}, &l));
    NK_CHECK_EQ_U64(l.n, 2);
    wt_log_free(&l);
    wal_close(w);
}

struct tail_arg {
    struct wal *w;
    int count;
    nk_status s;
};

static void *tail_writer(void *p)
{
    struct tail_arg *a = p;
    a->s = NK_OK;
    for (int i = 0; i < a->count && nk_ok(a->s); i++) {
        uint8_t buf[300];
        size_t len = 1 + (size_t)i % 300;
        wt_payload((uint64_t)i, len, buf);
        a->s = wal_append(a->w, 1, buf, len, NULL);
    }
    return NULL;
}

NK_TEST(iterator_sees_records_appended_while_it_runs)
{
    const char *dir = nk_test_tmpdir();
    struct wal_options o = small_opts(WAL_SYNC_OS, 8192); /* rotates often under the reader */
    struct wal *w;
    NK_REQUIRE_OK(wal_open(dir, &o, &w));
    enum { N = 3000 };
    struct tail_arg a = {w, N, NK_OK};
    pthread_t th;
    NK_REQUIRE(pthread_create(&th, NULL, tail_writer, &a) == 0);
    struct wal_iter *it;
    NK_REQUIRE_OK(wal_iter_open(w, (struct wal_pos){0, 0}, &it));
    int seen = 0;
    uint64_t deadline = nk_mono_ns() + 20ull * 1000000000ull;
    while (seen < N && nk_mono_ns() < deadline) {
        bool has;
        uint8_t type;
        struct nk_slice p;
        nk_status s = wal_iter_next(it, &has, &type, &p, NULL);
        if (!nk_ok(s)) {
            fprintf(stderr, "  iter: %s\n", nk_status_msg(s));
            nk_status_free(&s);
            NK_CHECK(false);
            break;
        }
        if (!has) {
            sched_yield();
            continue;
        }
        NK_CHECK(p.len == 1 + (size_t)seen % 300 && wt_payload_ok((uint64_t)seen, p));
        seen++;
    }
    pthread_join(th, NULL);
    NK_REQUIRE_OK(a.s);
    NK_CHECK_EQ_U64(seen, N);
    bool has;
    uint8_t type;
    struct nk_slice p;
    NK_REQUIRE_OK(wal_iter_next(it, &has, &type, &p, NULL));
    NK_CHECK(!has);
    wal_iter_close(it);
    wal_close(w);
}

NK_TEST(append_many_with_thousands_of_records_is_one_contiguous_run)
{
    const char *dir = nk_test_tmpdir();
    struct wal_options o = small_opts(WAL_SYNC_ALWAYS, 1 << 20);
    struct wal *w;
    NK_REQUIRE_OK(wal_open(dir, &o, &w));
    enum { N = 3000 }; /* 6000 iovecs: more than IOV_MAX per pwritev */
    struct wal_record *recs = nk_malloc(N * sizeof *recs);
    uint8_t *bufs = nk_malloc(N * 40);
    uint64_t expect_end = WAL_SEGMENT_HEADER_SIZE;
    for (size_t i = 0; i < N; i++) {
        size_t len = i % 41; /* includes empty payloads */
        wt_payload(i, len, bufs + i * 40);
        recs[i] = (struct wal_record){(uint8_t)(1 + i % 255), nk_slice_make(bufs + i * 40, len)};
        expect_end += WAL_RECORD_HEADER_SIZE + len;
    }
    struct wal_pos first;
    NK_REQUIRE_OK(wal_append_many(w, recs, N, &first));
    NK_CHECK_EQ_U64(first.segment, 1);
    NK_CHECK_EQ_U64(first.offset, WAL_SEGMENT_HEADER_SIZE);
    NK_CHECK_EQ_U64(wal_end(w).offset, expect_end);
    struct wal_stats st;
    wal_get_stats(w, &st);
    NK_CHECK_EQ_U64(st.records_appended, N);
    wal_close(w);
    NK_REQUIRE_OK(wal_open(dir, &o, &w));
    struct wt_log l;
    NK_REQUIRE_OK(wt_read_all(w, (struct wal_pos){0, 0}, &l));
    NK_CHECK_EQ_U64(l.n, N);
    for (size_t i = 0; i < l.n; i++) {
        NK_CHECK_EQ_U64(l.recs[i].len, i % 41);
        NK_CHECK(wt_payload_ok(i, nk_slice_make(l.recs[i].data, l.recs[i].len)));
    }
    wt_log_free(&l);
    wal_close(w);
    free(recs);
    free(bufs);
}

NK_TEST(a_failed_write_poisons_the_log_and_reopen_keeps_the_acknowledged_prefix)
{
    const char *dir = nk_test_tmpdir();
    struct wal_options o = small_opts(WAL_SYNC_ALWAYS, 1 << 20);
    o.preallocate = false; /* fallocate would fail at open under the file size limit */
    struct wal *w;
    NK_REQUIRE_OK(wal_open(dir, &o, &w));
    /* A file size limit makes the kernel cut a write short and then refuse it (EFBIG):
     * a real partial write in the middle of a record. */
    struct rlimit old, lim;
    NK_REQUIRE(getrlimit(RLIMIT_FSIZE, &old) == 0);
    void (*old_handler)(int) = signal(SIGXFSZ, SIG_IGN);
    lim = old;
    lim.rlim_cur = 20000;
    NK_REQUIRE(setrlimit(RLIMIT_FSIZE, &lim) == 0);
    uint8_t buf[291];
    int acked = 0;
    nk_status s = NK_OK;
    for (int i = 0; i < 1000; i++) {
        wt_payload((uint64_t)i, sizeof buf, buf);
        s = wal_append(w, 1, buf, sizeof buf, NULL);
        if (!nk_ok(s))
            break;
        acked++;
    }
    setrlimit(RLIMIT_FSIZE, &old);
    signal(SIGXFSZ, old_handler);
    fprintf(stderr, "  %d appends acknowledged, then: %s\n", acked, nk_status_msg(s));
    NK_CHECK(s.code == NK_IO_ERROR);
    NK_CHECK_EQ_U64(acked, (20000 - WAL_SEGMENT_HEADER_SIZE) / (WAL_RECORD_HEADER_SIZE + sizeof buf));
    nk_status_free(&s);
    /* the log stays refused even though the limit is gone: nothing after a failure is trusted */
    s = wal_append(w, 1, buf, 10, NULL);
    NK_CHECK(s.code == NK_IO_ERROR);
    nk_status_free(&s);
    s = wal_sync(w);
    NK_CHECK(s.code == NK_IO_ERROR);
    nk_status_free(&s);
    s = wal_rotate(w, NULL);
    NK_CHECK(s.code == NK_IO_ERROR);
    nk_status_free(&s);
    wal_close(w);

    enum nk_log_level lvl = nk_log_get_level();
    nk_log_set_level(NK_LOG_ERROR);
    NK_REQUIRE_OK(wal_open(dir, &o, &w));
    nk_log_set_level(lvl);
    struct wal_stats st;
    wal_get_stats(w, &st);
    NK_CHECK(st.torn_bytes_truncated > 0); /* the partial record */
    NK_REQUIRE_OK(wal_append(w, 1, "after", 5, NULL));
    struct wt_log l;
    NK_REQUIRE_OK(wt_read_all(w, (struct wal_pos){0, 0}, &l));
    NK_CHECK_EQ_U64(l.n, acked + 1);
    for (size_t i = 0; i + 1 < l.n; i++)
        NK_CHECK(wt_payload_ok(i, nk_slice_make(l.recs[i].data, l.recs[i].len)));
    if (l.n)
        NK_CHECK(l.recs[l.n - 1].len == 5 && memcmp(l.recs[l.n - 1].data, "after", 5) == 0);
    wt_log_free(&l);
    wal_close(w);
}

struct stress_arg {
    struct wal *w;
    int thread, count;
    _Atomic int *done;
    nk_status s;
};

static size_t stress_len(uint64_t id)
{
    return 8 + (size_t)(id * 2654435761u % 700);
}

static void *stress_writer(void *p)
{
    struct stress_arg *a = p;
    a->s = NK_OK;
    uint8_t buf[800];
    for (int i = 0; i < a->count && nk_ok(a->s); i++) {
        uint64_t id = (uint64_t)a->thread << 32 | (uint64_t)i;
        size_t len = stress_len(id);
        wt_payload(id, len, buf);
        if (i % 10 == 8) { /* some batches of two: (8, 9), (18, 19), ... */
            uint8_t buf2[800];
            uint64_t id2 = id + 1;
            size_t len2 = stress_len(id2);
            wt_payload(id2, len2, buf2);
            struct wal_record r[2] = {{(uint8_t)(1 + a->thread), nk_slice_make(buf, len)},
                                      {(uint8_t)(1 + a->thread), nk_slice_make(buf2, len2)}};
            a->s = wal_append_many(a->w, r, 2, NULL);
            i++;
        } else {
            a->s = wal_append(a->w, (uint8_t)(1 + a->thread), buf, len, NULL);
        }
    }
    atomic_fetch_add(a->done, 1);
    return NULL;
}

static void *stress_syncer(void *p)
{
    struct stress_arg *a = p;
    a->s = NK_OK;
    while (atomic_load(a->done) < 4 && nk_ok(a->s)) {
        a->s = wal_sync(a->w);
        nk_sleep_us(200);
    }
    return NULL;
}

NK_TEST(group_commit_with_rotations_syncs_and_a_reader_loses_nothing)
{
    const char *dir = nk_test_tmpdir();
    struct wal_options o = small_opts(WAL_SYNC_BATCH, 8192); /* a rotation every ~20 appends */
    o.batch_window_us = 500;
    struct wal *w;
    NK_REQUIRE_OK(wal_open(dir, &o, &w));
    enum { T = 4, PER = 300 };
    _Atomic int done = 0;
    pthread_t th[T + 1];
    struct stress_arg args[T + 1];
    for (int t = 0; t < T; t++) {
        args[t] = (struct stress_arg){w, t, PER, &done, NK_OK};
        NK_REQUIRE(pthread_create(&th[t], NULL, stress_writer, &args[t]) == 0);
    }
    args[T] = (struct stress_arg){w, T, 0, &done, NK_OK};
    NK_REQUIRE(pthread_create(&th[T], NULL, stress_syncer, &args[T]) == 0);
    /* read along while they write */
    struct wal_iter *it;
    NK_REQUIRE_OK(wal_iter_open(w, (struct wal_pos){0, 0}, &it));
    int next[T] = {0};
    int seen = 0;
    bool ok = true;
    uint64_t deadline = nk_mono_ns() + 30ull * 1000000000ull;
    while (seen < T * PER && ok && nk_mono_ns() < deadline) {
        bool has;
        uint8_t type;
        struct nk_slice p;
        nk_status s = wal_iter_next(it, &has, &type, &p, NULL);
        if (!nk_ok(s)) {
            fprintf(stderr, "  reader: %s\n", nk_status_msg(s));
            nk_status_free(&s);
            ok = false;
            break;
        }
        if (!has) {
            sched_yield();
            continue;
        }
        int t = type - 1;
        ok = t >= 0 && t < T;
        if (ok) {
            uint64_t id = (uint64_t)t << 32 | (uint64_t)next[t];
            ok = p.len == stress_len(id) && wt_payload_ok(id, p);
            next[t]++;
            seen++;
        }
    }
    wal_iter_close(it);
    for (int t = 0; t <= T; t++)
        pthread_join(th[t], NULL);
    NK_CHECK(ok);
    NK_CHECK_EQ_U64(seen, T * PER);
    for (int t = 0; t <= T; t++)
        NK_REQUIRE_OK(args[t].s);
    struct wal_stats st;
    wal_get_stats(w, &st);
    NK_CHECK(st.segments > 20);
    fprintf(stderr, "  %d appends, %" PRIu64 " fdatasyncs, %" PRIu64 " segments\n", T * PER,
            st.syncs, st.segments);
    wal_close(w);
    NK_REQUIRE_OK(wal_open(dir, &o, &w));
    struct wt_log l;
    NK_REQUIRE_OK(wt_read_all(w, (struct wal_pos){0, 0}, &l));
    NK_CHECK_EQ_U64(l.n, T * PER);
    wt_log_free(&l);
    wal_close(w);
}

NK_TEST(scanner_finds_the_last_nonzero_byte_at_every_alignment)
{
    enum { SIZE = 1024 };
    static uint8_t img[SIZE];
    memset(img, 0, sizeof img);
    wal_encode_segment_header(img, 7);
    uint64_t off = WAL_SEGMENT_HEADER_SIZE;
    for (int i = 0; i < 5; i++) {
        uint8_t pl[20];
        wt_payload((uint64_t)i, sizeof pl, pl);
        wal_encode_record_header(img + off, nk_crc32c(pl, sizeof pl), sizeof pl, 3, 7, off);
        memcpy(img + off + WAL_RECORD_HEADER_SIZE, pl, sizeof pl);
        off += WAL_RECORD_HEADER_SIZE + sizeof pl;
    }
    struct wal_scan_result r;
    NK_REQUIRE_OK(wal_scan_segment(img, SIZE, "seg7", 7, &r));
    NK_CHECK_EQ_U64(r.records, 5);
    NK_CHECK_EQ_U64(r.end, off);
    NK_CHECK_EQ_U64(r.dirty_end, off);
    NK_CHECK_EQ_U64(r.next_valid, 0);
    for (size_t k = off; k < SIZE; k++) {
        img[k] = 0x5a;
        NK_REQUIRE_OK(wal_scan_segment(img, SIZE, "seg7", 7, &r));
        NK_CHECK_EQ_U64(r.end, off);
        NK_CHECK_EQ_U64(r.dirty_end, k + 1);
        NK_CHECK_EQ_U64(r.next_valid, 0);
        /* and a shorter view ending right after it */
        NK_REQUIRE_OK(wal_scan_segment(img, k + 1, "seg7", 7, &r));
        NK_CHECK_EQ_U64(r.dirty_end, k + 1);
        img[k] = 0;
    }
    /* a header naming another segment is refused */
    nk_status s = wal_scan_segment(img, SIZE, "seg8", 8, &r);
    NK_CHECK(s.code == NK_DATA_LOSS);
    nk_status_free(&s);
    /* and the same record bytes under another segment number are not records */
    wal_encode_segment_header(img, 8);
    NK_REQUIRE_OK(wal_scan_segment(img, SIZE, "seg8", 8, &r));
    NK_CHECK_EQ_U64(r.records, 0);
    NK_CHECK_EQ_U64(r.end, WAL_SEGMENT_HEADER_SIZE);
    NK_CHECK_EQ_U64(r.next_valid, 0);
    NK_CHECK(r.dirty_end > r.end);
}

NK_TEST(removing_a_segment_being_read_is_out_of_range_never_a_silent_skip)
{
    const char *dir = nk_test_tmpdir();
    struct wal_options o = small_opts(WAL_SYNC_OS, 1 << 16);
    struct wal *w;
    NK_REQUIRE_OK(wal_open(dir, &o, &w));
    NK_REQUIRE_OK(wal_append(w, 1, "a", 1, NULL));
    struct wal_iter *it;
    NK_REQUIRE_OK(wal_iter_open(w, (struct wal_pos){0, 0}, &it));
    bool has;
    uint8_t type;
    struct nk_slice p;
    NK_REQUIRE_OK(wal_iter_next(it, &has, &type, &p, NULL));
    NK_REQUIRE(has && p.len == 1);
    /* segment 1 grows after the reader saw its end, then is sealed and removed */
    NK_REQUIRE_OK(wal_append(w, 1, "b", 1, NULL));
    NK_REQUIRE_OK(wal_rotate(w, NULL));
    NK_REQUIRE_OK(wal_append(w, 1, "c", 1, NULL));
    NK_REQUIRE_OK(wal_remove_before(w, 2));
    nk_status s = wal_iter_next(it, &has, &type, &p, NULL);
    NK_CHECK(s.code == NK_OUT_OF_RANGE); /* never "c" with "b" skipped */
    nk_status_free(&s);
    wal_iter_close(it);

    /* a reader that saw the segment sealed may lose it to removal and go on */
    NK_REQUIRE_OK(wal_iter_open(w, (struct wal_pos){0, 0}, &it));
    NK_REQUIRE_OK(wal_iter_next(it, &has, &type, &p, NULL));
    NK_REQUIRE(has && p.len == 1 && p.data[0] == 'c');
    NK_REQUIRE_OK(wal_append(w, 1, "d", 1, NULL));
    NK_REQUIRE_OK(wal_rotate(w, NULL)); /* seals segment 2 */
    NK_REQUIRE_OK(wal_append(w, 1, "e", 1, NULL));
    NK_REQUIRE_OK(wal_iter_next(it, &has, &type, &p, NULL)); /* learns the final end */
    NK_REQUIRE(has && p.data[0] == 'd');
    NK_REQUIRE_OK(wal_remove_before(w, 3));
    NK_REQUIRE_OK(wal_iter_next(it, &has, &type, &p, NULL));
    NK_REQUIRE(has && p.data[0] == 'e');
    NK_REQUIRE_OK(wal_iter_next(it, &has, &type, &p, NULL));
    NK_CHECK(!has);
    wal_iter_close(it);
    wal_close(w);
}

NK_TEST(torn_tail_of_a_large_random_record_is_found_in_one_linear_scan)
{
    /*
     * After the point where the valid prefix stops, recovery looks for any
     * valid record further on (that would make the damage mid-log). Random
     * bytes hold a plausible length every few hundred positions; without the
     * O(1) header check each would cost a CRC of megabytes, and this open
     * would take minutes instead of milliseconds.
     */
    const char *dir = nk_test_tmpdir();
    struct wal_options o = small_opts(WAL_SYNC_OS, 16 << 20);
    struct wal *w;
    NK_REQUIRE_OK(wal_open(dir, &o, &w));
    NK_REQUIRE_OK(wal_append(w, 1, "small", 5, NULL));
    enum { BIG = 4 << 20 };
    uint8_t *big = nk_malloc(BIG);
    struct nk_rng r;
    nk_rng_seed(&r, nk_test_seed());
    for (size_t i = 0; i < BIG; i++)
        big[i] = (uint8_t)nk_rng_next(&r);
    struct wal_pos bp;
    NK_REQUIRE_OK(wal_append(w, 2, big, BIG, &bp));
    wal_close(w);
    /* the last megabyte of the big record never reached the disk */
    char path[4096];
    wt_seg_path(dir, 1, path, sizeof path);
    int fd = open(path, O_WRONLY);
    NK_REQUIRE(fd >= 0);
    uint8_t *zeros = nk_calloc(1, 1 << 20);
    NK_REQUIRE(pwrite(fd, zeros, 1 << 20, (off_t)(bp.offset + WAL_RECORD_HEADER_SIZE + BIG - (1 << 20))) ==
               1 << 20);
    close(fd);
    free(zeros);
    enum nk_log_level lvl = nk_log_get_level();
    nk_log_set_level(NK_LOG_ERROR);
    uint64_t t0 = nk_mono_ns();
    nk_status s = wal_open(dir, &o, &w);
    uint64_t ms = (nk_mono_ns() - t0) / 1000000;
    nk_log_set_level(lvl);
    NK_REQUIRE_OK(s);
    fprintf(stderr, "  open with a 3 MiB torn record took %" PRIu64 " ms\n", ms);
    NK_CHECK(wal_pos_cmp(wal_end(w), bp) == 0);
    struct wal_stats st;
    wal_get_stats(w, &st);
    NK_CHECK(st.torn_bytes_truncated > 3u << 20);
    struct wt_log l;
    NK_REQUIRE_OK(wt_read_all(w, (struct wal_pos){0, 0}, &l));
    NK_CHECK_EQ_U64(l.n, 1);
    wt_log_free(&l);
    wal_close(w);
    free(big);
}

struct locked_arg {
    struct wal *w;
    pthread_mutex_t *caller_lock;
    int thread, count;
    nk_status s;
};

/* The LSM's pattern: order appends under its own lock, wait for the disk outside it. */
static void *locked_writer(void *p)
{
    struct locked_arg *a = p;
    a->s = NK_OK;
    for (int i = 0; i < a->count && nk_ok(a->s); i++) {
        uint8_t buf[100];
        uint64_t id = (uint64_t)a->thread << 32 | (uint64_t)i;
        wt_payload(id, sizeof buf, buf);
        struct wal_record r = {(uint8_t)(1 + a->thread), nk_slice_make(buf, sizeof buf)};
        struct wal_pos end;
        pthread_mutex_lock(a->caller_lock);
        a->s = wal_append_many_nowait(a->w, &r, 1, NULL, &end);
        pthread_mutex_unlock(a->caller_lock);
        if (nk_ok(a->s))
            a->s = wal_sync_to(a->w, end);
    }
    return NULL;
}

NK_TEST(appends_ordered_under_a_caller_lock_still_share_fdatasyncs_via_sync_to)
{
    const char *dir = nk_test_tmpdir();
    struct wal_options o = small_opts(WAL_SYNC_BATCH, 1 << 20);
    struct wal *w;
    NK_REQUIRE_OK(wal_open(dir, &o, &w));
    struct wal_stats st0;
    wal_get_stats(w, &st0);
    enum { T = 4, PER = 200 };
    pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
    pthread_t th[T];
    struct locked_arg args[T];
    for (int t = 0; t < T; t++) {
        args[t] = (struct locked_arg){w, &lock, t, PER, NK_OK};
        NK_REQUIRE(pthread_create(&th[t], NULL, locked_writer, &args[t]) == 0);
    }
    for (int t = 0; t < T; t++)
        pthread_join(th[t], NULL);
    for (int t = 0; t < T; t++)
        NK_REQUIRE_OK(args[t].s);
    struct wal_stats st;
    wal_get_stats(w, &st);
    uint64_t syncs = st.syncs - st0.syncs;
    fprintf(stderr, "  %d appends, %" PRIu64 " fdatasyncs\n", T * PER, syncs);
    NK_CHECK(syncs > 0);
    NK_CHECK(syncs < (uint64_t)T * PER);

    /* sync_to: an old segment's position is durable already; past the end is refused */
    struct wal_pos end = wal_end(w);
    NK_REQUIRE_OK(wal_sync_to(w, end));
    NK_REQUIRE_OK(wal_rotate(w, NULL));
    wal_get_stats(w, &st0);
    NK_REQUIRE_OK(wal_sync_to(w, end));
    wal_get_stats(w, &st);
    NK_CHECK_EQ_U64(st.syncs, st0.syncs);
    nk_status s = wal_sync_to(w, (struct wal_pos){end.segment + 1, 1000});
    NK_CHECK(s.code == NK_OUT_OF_RANGE);
    nk_status_free(&s);
    /* nowait appends really do not sync, even in ALWAYS mode, until sync_to */
    wal_close(w);
    o.sync = WAL_SYNC_ALWAYS;
    NK_REQUIRE_OK(wal_open(dir, &o, &w));
    wal_get_stats(w, &st0);
    struct wal_record r = {1, nk_slice_str("x")};
    for (int i = 0; i < 10; i++)
        NK_REQUIRE_OK(wal_append_many_nowait(w, &r, 1, NULL, &end));
    wal_get_stats(w, &st);
    NK_CHECK_EQ_U64(st.syncs, st0.syncs);
    NK_REQUIRE_OK(wal_sync_to(w, end));
    wal_get_stats(w, &st);
    NK_CHECK_EQ_U64(st.syncs, st0.syncs + 1);
    wal_close(w);

    NK_REQUIRE_OK(wal_open(dir, &o, &w));
    struct wt_log l;
    NK_REQUIRE_OK(wt_read_all(w, (struct wal_pos){0, 0}, &l));
    NK_CHECK_EQ_U64(l.n, T * PER + 10);
    wt_log_free(&l);
    wal_close(w);
}

NK_TEST(records_larger_than_the_read_ahead_round_trip)
{
    const char *dir = nk_test_tmpdir();
    struct wal_options o = small_opts(WAL_SYNC_OS, 4 << 20);
    struct wal *w;
    NK_REQUIRE_OK(wal_open(dir, &o, &w));
    /* around the 16 KiB first read and the 256 KiB read-ahead cap, and past a segment */
    static const size_t sizes[] = {10,         16 * 1024 - 13, 16 * 1024, 17 * 1024,  5,
                                   256 * 1024, 300 * 1024,     1 << 20,   5 << 20,    7};
    enum { N = sizeof sizes / sizeof sizes[0] };
    struct wal_pos pos[N];
    uint8_t *buf = nk_malloc(5 << 20);
    for (size_t i = 0; i < N; i++) {
        wt_payload(i, sizes[i], buf);
        NK_REQUIRE_OK(wal_append(w, 1, buf, sizes[i], &pos[i]));
    }
    free(buf);
    for (size_t from = 0; from < N; from += 3) {
        struct wt_log l;
        NK_REQUIRE_OK(wt_read_all(w, pos[from], &l));
        NK_CHECK_EQ_U64(l.n, N - from);
        for (size_t i = 0; i < l.n; i++) {
            NK_CHECK_EQ_U64(l.recs[i].len, sizes[from + i]);
            NK_CHECK(wt_payload_ok(from + i, nk_slice_make(l.recs[i].data, l.recs[i].len)));
        }
        wt_log_free(&l);
    }
    NK_CHECK(pos[8].segment > pos[7].segment); /* the 5 MiB record got its own segment */
    wal_close(w);
}

NK_TEST(iterating_from_a_segments_end_continues_in_the_next_segment)
{
    const char *dir = nk_test_tmpdir();
    struct wal_options o = small_opts(WAL_SYNC_OS, 1 << 16);
    struct wal *w;
    NK_REQUIRE_OK(wal_open(dir, &o, &w));
    NK_REQUIRE_OK(wal_append(w, 1, "a", 1, NULL));
    struct wal_pos end1 = wal_end(w); /* will be the end of a sealed segment */
    struct wal_iter *tail;
    NK_REQUIRE_OK(wal_iter_open(w, end1, &tail)); /* opened while segment 1 is current */
    NK_REQUIRE_OK(wal_rotate(w, NULL));
    NK_REQUIRE_OK(wal_append(w, 1, "b", 1, NULL));
    struct wt_log l;
    NK_REQUIRE_OK(wt_read_all(w, end1, &l));
    NK_CHECK(l.n == 1 && l.recs[0].data[0] == 'b');
    wt_log_free(&l);
    bool has;
    uint8_t type;
    struct nk_slice p;
    NK_REQUIRE_OK(wal_iter_next(tail, &has, &type, &p, NULL));
    NK_CHECK(has && p.len == 1 && p.data[0] == 'b');
    NK_REQUIRE_OK(wal_iter_next(tail, &has, &type, &p, NULL));
    NK_CHECK(!has);
    wal_iter_close(tail);
    /* after reopening, the same position still leads to the same record */
    wal_close(w);
    NK_REQUIRE_OK(wal_open(dir, &o, &w));
    NK_REQUIRE_OK(wt_read_all(w, end1, &l));
    NK_CHECK(l.n == 1 && l.recs[0].data[0] == 'b');
    wt_log_free(&l);
    wal_close(w);
}

NK_TEST(on_disk_bytes_match_the_example_in_docs_format_wal_md)
{
    const char *dir = nk_test_tmpdir();
    struct wal_options o = small_opts(WAL_SYNC_ALWAYS, 1 << 16);
    struct wal *w;
    NK_REQUIRE_OK(wal_open(dir, &o, &w));
    struct wal_pos pos;
    NK_REQUIRE_OK(wal_append(w, 1, "hi", 2, &pos));
    wal_close(w);
    NK_CHECK(pos.segment == 1 && pos.offset == 32);
    static const uint8_t want[] = {
        0x4e, 0x4f, 0x52, 0x49, 0x4b, 0x56, 0x57, 0x4c, 0x01, 0x00, 0x00, 0x00, 0x20, 0x00, 0x00, 0x00,
        0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x1a, 0xe5, 0x0a, 0x36,
        0x26, 0xcb, 0x86, 0xe9, 0x13, 0xd6, 0x08, 0x56, 0x02, 0x00, 0x00, 0x00, 0x01, 0x68, 0x69};
    char path[4096];
    wt_seg_path(dir, 1, path, sizeof path);
    uint8_t *got;
    size_t n;
    NK_REQUIRE(wt_read_file(path, &got, &n));
    NK_CHECK_EQ_U64(n, 1 << 16); /* preallocated */
    NK_CHECK(n >= sizeof want && memcmp(got, want, sizeof want) == 0);
    bool zeros = true;
    for (size_t i = sizeof want; i < n; i++)
        zeros = zeros && got[i] == 0;
    NK_CHECK(zeros);
    free(got);
}

NK_TEST(an_unfinished_segment_creation_is_discarded_and_other_files_ignored)
{
    const char *dir = nk_test_tmpdir();
    struct wal_options o = small_opts(WAL_SYNC_ALWAYS, 1 << 16);
    struct wal *w;
    NK_REQUIRE_OK(wal_open(dir, &o, &w));
    NK_REQUIRE_OK(wal_append(w, 1, "kept", 4, NULL));
    wal_close(w);
    /* a crash between creating the next segment's temp file and its rename */
    char tmp[4096], other[4096];
    snprintf(tmp, sizeof tmp, "%s/00000000000000000002.wal.tmp", dir);
    snprintf(other, sizeof other, "%s/notes.txt", dir);
    NK_REQUIRE(wt_write_file(tmp, "garbage", 7));
    NK_REQUIRE(wt_write_file(other, "keep me", 7));
    NK_REQUIRE_OK(wal_open(dir, &o, &w));
    NK_CHECK(access(tmp, F_OK) != 0);
    NK_CHECK(access(other, F_OK) == 0);
    struct wal_pos p;
    NK_REQUIRE_OK(wal_append(w, 1, "next", 4, &p));
    NK_CHECK_EQ_U64(p.segment, 1);
    struct wt_log l;
    NK_REQUIRE_OK(wt_read_all(w, (struct wal_pos){0, 0}, &l));
    NK_CHECK_EQ_U64(l.n, 2);
    wt_log_free(&l);
    wal_close(w);
}
