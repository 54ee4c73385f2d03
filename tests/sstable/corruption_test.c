/*
 * corruption_test.c: damaged tables are reported as NK_DATA_LOSS naming the
 * file (from open, seek_one or the iterator's status), never returned as
 * data; truncated files fail open clearly.
 */
#include "testlib.h"

#include <fcntl.h>

#include "sst_testutil.h"

static void path_in_tmp(char *buf, size_t n, const char *name)
{
    int w = snprintf(buf, n, "%s/%s", nk_test_tmpdir(), name);
    NK_ASSERT(w > 0 && (size_t)w < n);
}

static void write_bytes(const char *path, const uint8_t *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    NK_ASSERT(f);
    NK_ASSERT(fwrite(p, 1, n, f) == n);
    NK_ASSERT(fclose(f) == 0);
}

/* Overwrites one byte in place (cheaper than rewriting the file per flip). */
static void poke(const char *path, size_t at, uint8_t v)
{
    int fd = open(path, O_WRONLY);
    NK_ASSERT(fd >= 0);
    NK_ASSERT(pwrite(fd, &v, 1, (off_t)at) == 1);
    NK_ASSERT(close(fd) == 0);
}

struct layout {
    uint64_t filter_off, filter_size, index_off, index_size, props_off, props_size;
};

/* The footer's handles, read per docs/format/sstable.md. */
static struct layout read_layout(const uint8_t *file, size_t n)
{
    const uint8_t *f = file + n - 64;
    return (struct layout){nk_dec_fixed64(f), nk_dec_fixed64(f + 8), nk_dec_fixed64(f + 16),
                           nk_dec_fixed64(f + 24), nk_dec_fixed64(f + 32), nk_dec_fixed64(f + 40)};
}

static bool msg_names(nk_status s, const char *path)
{
    return strstr(nk_status_msg(s), path) != NULL;
}

/*
 * Reads everything the table has (iteration, seek_one of every key). Returns
 * 1 when some read reported DATA_LOSS naming the file, 0 when everything read
 * back correct, -1 when wrong data came back or another error appeared.
 */
static int read_all(const char *path, const struct kvset *s, struct sst_cache *cache, uint64_t id,
                    bool mmap)
{
    struct sst_read_options ro;
    sst_read_options_default(&ro);
    ro.cache = cache;
    ro.file_id = id;
    ro.use_mmap = mmap;
    struct sst_reader *r;
    nk_status st = sst_reader_open(path, &ro, &r);
    if (!nk_ok(st)) {
        int res = st.code == NK_DATA_LOSS && msg_names(st, path) ? 1 : -1;
        if (res < 0)
            fprintf(stderr, "  open: %s %s\n", nk_code_name(st.code), nk_status_msg(st));
        nk_status_free(&st);
        return res;
    }
    int res = 0;
    struct sst_iter *it;
    NK_ASSERT(nk_ok(sst_iter_new(r, &it)));
    size_t i = 0;
    for (sst_iter_seek_first(it); sst_iter_valid(it); sst_iter_next(it), i++) {
        if (i >= s->n || !kv_slice_eq(sst_iter_key(it), s->e[i].key, s->e[i].klen) ||
            !kv_slice_eq(sst_iter_value(it), s->e[i].val, s->e[i].vlen)) {
            fprintf(stderr, "  iterator returned wrong data at entry %zu\n", i);
            res = -1;
            goto out;
        }
    }
    st = sst_iter_status(it);
    if (!nk_ok(st)) {
        if (st.code != NK_DATA_LOSS || !msg_names(st, path)) {
            fprintf(stderr, "  iterator: %s %s\n", nk_code_name(st.code), nk_status_msg(st));
            res = -1;
            goto out;
        }
        res = 1;
        nk_status_free(&st);
    } else if (i != s->n) {
        fprintf(stderr, "  iterator stopped early without an error at %zu\n", i);
        res = -1;
        goto out;
    }
    /* a scan that reads ahead and bypasses the cache sees the damage too */
    struct sst_iter_options io = {.fill_cache = false, .readahead = 2048};
    struct sst_iter *ra;
    NK_ASSERT(nk_ok(sst_iter_new_opts(r, &io, &ra)));
    i = 0;
    for (sst_iter_seek_first(ra); sst_iter_valid(ra); sst_iter_next(ra), i++) {
        if (i >= s->n || !kv_slice_eq(sst_iter_key(ra), s->e[i].key, s->e[i].klen) ||
            !kv_slice_eq(sst_iter_value(ra), s->e[i].val, s->e[i].vlen)) {
            fprintf(stderr, "  read-ahead iterator returned wrong data at entry %zu\n", i);
            res = -1;
            break;
        }
    }
    nk_status rst = sst_iter_status(ra);
    if (res >= 0 && !nk_ok(rst)) {
        if (rst.code != NK_DATA_LOSS || !msg_names(rst, path))
            res = -1;
        else
            res = 1;
    } else if (res >= 0 && i != s->n) {
        fprintf(stderr, "  read-ahead iterator stopped early without an error at %zu\n", i);
        res = -1;
    }
    nk_status_free(&rst);
    sst_iter_free(ra);

    struct nk_buf k, v;
    nk_buf_init(&k);
    nk_buf_init(&v);
    for (i = 0; i < s->n && res >= 0; i++) {
        struct nk_slice key = nk_slice_make(s->e[i].key, s->e[i].klen);
        bool found;
        st = sst_reader_seek_one(r, key, key, &found, &k, &v);
        if (!nk_ok(st)) {
            if (st.code != NK_DATA_LOSS || !msg_names(st, path)) {
                fprintf(stderr, "  seek_one: %s %s\n", nk_code_name(st.code), nk_status_msg(st));
                res = -1;
            } else {
                res = 1;
            }
            nk_status_free(&st);
            continue;
        }
        if (!found || !kv_slice_eq(nk_slice_make(k.data, k.len), key.data, key.len) ||
            !kv_slice_eq(nk_slice_make(v.data, v.len), s->e[i].val, s->e[i].vlen)) {
            fprintf(stderr, "  seek_one returned wrong data for key %zu\n", i);
            res = -1;
        }
    }
    nk_buf_free(&k);
    nk_buf_free(&v);
out:
    nk_status_free(&st);
    sst_iter_free(it);
    sst_reader_close(r);
    return res;
}

static struct kvset build_small(const char *path, enum sst_compression c, uint32_t block_size,
                                size_t n, uint8_t **bytes, size_t *len)
{
    struct nk_rng rng;
    nk_rng_seed(&rng, 42 + (uint64_t)c);
    struct kvset s = kv_random(&rng, n, 20, 60, 0);
    struct sst_options o;
    sst_options_default(&o);
    o.compression = c;
    o.block_size = block_size;
    NK_ASSERT(nk_ok(kv_build(path, &o, &s, NULL)));
    nk_status st = nk_read_file(path, 1u << 30, bytes, len);
    NK_ASSERT(nk_ok(st));
    return s;
}

NK_TEST(flipped_byte_in_data_block_is_data_loss_from_seek_one_and_iterator)
{
    char path[1024];
    path_in_tmp(path, sizeof path, "data.sst");
    uint8_t *file;
    size_t n;
    struct kvset s = build_small(path, SST_COMPRESS_NONE, 4096, 2000, &file, &n);
    file[100] ^= 0x40; /* inside the first data block */
    write_bytes(path, file, n);

    struct sst_cache *cache;
    NK_REQUIRE_OK(sst_cache_new(1u << 20, &cache));
    for (int mode = 0; mode < 3; mode++) { /* no cache, cache, mmap */
        struct sst_read_options ro;
        sst_read_options_default(&ro);
        ro.cache = mode == 1 ? cache : NULL;
        ro.use_mmap = mode == 2;
        struct sst_reader *r;
        NK_REQUIRE_OK(sst_reader_open(path, &ro, &r));
        struct nk_buf k, v;
        nk_buf_init(&k);
        nk_buf_init(&v);
        bool found;
        struct nk_slice key0 = nk_slice_make(s.e[0].key, s.e[0].klen);
        nk_status st = sst_reader_seek_one(r, key0, key0, &found, &k, &v);
        NK_CHECK(st.code == NK_DATA_LOSS && msg_names(st, path));
        fprintf(stderr, "  seek_one: %s\n", nk_status_msg(st));
        nk_status_free(&st);
        /* asking again fails again: a bad block is never remembered as good */
        st = sst_reader_seek_one(r, key0, key0, &found, &k, &v);
        NK_CHECK(st.code == NK_DATA_LOSS);
        nk_status_free(&st);
        /* a key in a later block still reads fine */
        struct nk_slice keyl = nk_slice_make(s.e[s.n - 1].key, s.e[s.n - 1].klen);
        NK_CHECK(nk_ok(sst_reader_seek_one(r, keyl, keyl, &found, &k, &v)) && found);

        struct sst_iter *it;
        NK_REQUIRE_OK(sst_iter_new(r, &it));
        sst_iter_seek_first(it);
        NK_CHECK(!sst_iter_valid(it));
        st = sst_iter_status(it);
        NK_CHECK(st.code == NK_DATA_LOSS && msg_names(st, path));
        nk_status_free(&st);
        sst_iter_free(it);
        nk_buf_free(&k);
        nk_buf_free(&v);
        sst_reader_close(r);
    }
    sst_cache_free(cache);
    free(file);
    kv_free(&s);
}

NK_TEST(flipped_byte_in_index_filter_properties_or_footer_fails_open_naming_the_file)
{
    char path[1024];
    path_in_tmp(path, sizeof path, "meta.sst");
    uint8_t *file;
    size_t n;
    struct kvset s = build_small(path, SST_COMPRESS_LZ4, 1024, 1000, &file, &n);
    struct layout l = read_layout(file, n);
    NK_REQUIRE(l.filter_size > 0 && l.index_size > 0 && l.props_size > 0);
    struct {
        const char *what;
        uint64_t at;
    } spots[] = {
        {"filter", l.filter_off + l.filter_size / 2},
        {"filter trailer", l.filter_off + l.filter_size + 2},
        {"index", l.index_off + l.index_size / 2},
        {"index restart count", l.index_off + l.index_size - 1},
        {"properties", l.props_off + 3},
        {"footer handle", n - 64 + 17},
        {"footer version", n - 64 + 48},
        {"footer magic", n - 1},
    };
    for (size_t i = 0; i < NK_ARRAY_LEN(spots); i++) {
        file[spots[i].at] ^= 0x01;
        write_bytes(path, file, n);
        struct sst_reader *r;
        nk_status st = sst_reader_open(path, NULL, &r);
        if (st.code != NK_DATA_LOSS || !msg_names(st, path)) {
            fprintf(stderr, "  flip in %s: %s %s\n", spots[i].what, nk_code_name(st.code),
                    nk_status_msg(st));
            NK_CHECK(false);
        }
        if (nk_ok(st))
            sst_reader_close(r);
        nk_status_free(&st);
        file[spots[i].at] ^= 0x01;
    }
    write_bytes(path, file, n);
    NK_CHECK(read_all(path, &s, NULL, 0, false) == 0);
    NK_CHECK(read_all(path, &s, NULL, 0, true) == 0);
    free(file);
    kv_free(&s);
}

NK_TEST(every_single_byte_flip_is_detected_and_never_returned_as_data)
{
    char path[1024], bad[1024];
    path_in_tmp(path, sizeof path, "orig.sst");
    path_in_tmp(bad, sizeof bad, "bad.sst");
    struct nk_rng rng;
    nk_rng_seed(&rng, nk_test_seed());
    for (int c = SST_COMPRESS_NONE; c <= SST_COMPRESS_ZSTD; c++) {
        uint8_t *file;
        size_t n;
        struct kvset s = build_small(path, (enum sst_compression)c, 512, 60, &file, &n);
        size_t undetected = 0, wrong = 0;
        write_bytes(bad, file, n);
        for (size_t at = 0; at < n; at++) {
            uint8_t x = (uint8_t)(1 + nk_rng_uniform(&rng, 255));
            poke(bad, at, file[at] ^ x);
            /* alternate pread and in-place (mmap) reads */
            int res = read_all(bad, &s, NULL, 0, at % 2 == 1);
            poke(bad, at, file[at]);
            if (res == 0)
                undetected++;
            if (res < 0) {
                fprintf(stderr, "  compression %d: flip ^0x%02x at offset %zu of %zu\n", c, x,
                        at, n);
                wrong++;
            }
        }
        fprintf(stderr, "  compression %d: %zu bytes flipped, %zu undetected, %zu wrong\n", c, n,
                undetected, wrong);
        NK_CHECK_EQ_U64(wrong, 0);
        NK_CHECK_EQ_U64(undetected, 0);
        free(file);
        kv_free(&s);
    }
}

NK_TEST(truncated_file_fails_open_with_data_loss_naming_it)
{
    char path[1024], cut[1024];
    path_in_tmp(path, sizeof path, "full.sst");
    path_in_tmp(cut, sizeof cut, "cut.sst");
    uint8_t *file;
    size_t n;
    struct kvset s = build_small(path, SST_COMPRESS_NONE, 4096, 500, &file, &n);
    size_t lens[] = {0, 1, 63, 64, 65, n / 2, n - 64, n - 1};
    for (size_t i = 0; i < NK_ARRAY_LEN(lens); i++) {
        write_bytes(cut, file, lens[i]);
        struct sst_reader *r;
        nk_status st = sst_reader_open(cut, NULL, &r);
        NK_CHECK(st.code == NK_DATA_LOSS && msg_names(st, cut));
        if (i == 0)
            fprintf(stderr, "  %s\n", nk_status_msg(st));
        if (nk_ok(st))
            sst_reader_close(r);
        nk_status_free(&st);
    }
    /* a file that grew extra bytes at the end is not a table either */
    uint8_t *longer = nk_malloc(n + 10);
    memcpy(longer, file, n);
    memset(longer + n, 0, 10);
    write_bytes(cut, longer, n + 10);
    struct sst_reader *r;
    nk_status st = sst_reader_open(cut, NULL, &r);
    NK_CHECK(st.code == NK_DATA_LOSS);
    nk_status_free(&st);
    free(longer);
    free(file);
    kv_free(&s);
}

NK_TEST(unverified_reads_of_a_damaged_block_still_never_crash)
{
    /* verify_checksums=false skips data-block CRCs; the decoder must still
     * reject or bound whatever it finds */
    char path[1024], bad[1024];
    path_in_tmp(path, sizeof path, "orig.sst");
    path_in_tmp(bad, sizeof bad, "bad.sst");
    uint8_t *file;
    size_t n;
    struct kvset s = build_small(path, SST_COMPRESS_LZ4, 512, 80, &file, &n);
    struct layout l = read_layout(file, n);
    uint64_t data_end = l.filter_off;
    struct nk_rng rng;
    nk_rng_seed(&rng, nk_test_seed());
    write_bytes(bad, file, n);
    for (int round = 0; round < 2000; round++) {
        size_t at = nk_rng_uniform(&rng, data_end);
        uint8_t x = (uint8_t)(1 + nk_rng_uniform(&rng, 255));
        poke(bad, at, file[at] ^ x);
        struct sst_read_options ro;
        sst_read_options_default(&ro);
        ro.verify_checksums = false;
        ro.use_mmap = round % 2 == 1;
        struct sst_reader *r;
        NK_REQUIRE_OK(sst_reader_open(bad, &ro, &r));
        struct sst_iter *it;
        NK_REQUIRE_OK(sst_iter_new(r, &it));
        size_t count = 0;
        for (sst_iter_seek_first(it); sst_iter_valid(it) && count < 100000; sst_iter_next(it))
            count++;
        nk_status st = sst_iter_status(it);
        NK_CHECK(nk_ok(st) || st.code == NK_DATA_LOSS);
        nk_status_free(&st);
        sst_iter_seek(it, nk_slice_make(s.e[s.n / 2].key, s.e[s.n / 2].klen));
        st = sst_iter_status(it);
        nk_status_free(&st);
        sst_iter_free(it);
        sst_reader_close(r);
        poke(bad, at, file[at]);
    }
    free(file);
    kv_free(&s);
}
