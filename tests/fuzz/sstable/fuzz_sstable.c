/*
 * fuzz_sstable.c: random bytes and mutated valid tables as sstable files.
 *
 * Each input is (1) written as a table file and opened, iterated, sought and
 * point-looked-up, with and without checksum verification and through a
 * shared block cache, and (2) handed straight to every decoder (footer,
 * properties, filter, stored block, block cursor), since checksums stop most
 * mutations before the decoders behind them. Everything must end in a
 * status; a crash or sanitizer report is a failure.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "sstable/sst_internal.h"

static char g_path[512];
static int g_fd = -1;
static struct sst_cache *g_cache;
static uint64_t g_file_id;

static void remove_file(void)
{
    unlink(g_path);
}

static void setup(void)
{
    if (g_fd >= 0)
        return;
    const char *dir = getenv("NK_TEST_TMPDIR");
    if (!dir)
        dir = "/tmp";
    nk_status s = nk_mkdirs(dir, 0755);
    nk_status_free(&s);
    snprintf(g_path, sizeof g_path, "%s/fuzz_sstable.%d.sst", dir, (int)getpid());
    g_fd = open(g_path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (g_fd < 0) {
        perror(g_path);
        abort();
    }
    atexit(remove_file);
    s = sst_cache_new(1u << 20, &g_cache);
    NK_ASSERT(nk_ok(s));
}

static void put_file(const uint8_t *data, size_t size)
{
    /* Overwrite, then cut to size: truncating to zero first would make ext4
     * flush the file on every input (its replace-by-truncate heuristic). */
    size_t done = 0;
    while (done < size) {
        ssize_t w = pwrite(g_fd, data + done, size - done, (off_t)done);
        NK_ASSERT(w > 0);
        done += (size_t)w;
    }
    NK_ASSERT(ftruncate(g_fd, (off_t)size) == 0);
}

static void exercise_reader(const uint8_t *data, size_t size, bool verify, bool cached, bool mmap)
{
    struct sst_read_options ro;
    sst_read_options_default(&ro);
    ro.use_mmap = mmap;
    ro.verify_checksums = verify;
    ro.cache = cached ? g_cache : NULL;
    ro.file_id = ++g_file_id;
    struct sst_reader *r;
    nk_status s = sst_reader_open(g_path, &ro, &r);
    if (!nk_ok(s)) {
        NK_ASSERT(s.msg && strstr(s.msg, g_path));
        nk_status_free(&s);
        return;
    }
    (void)sst_reader_num_entries(r);
    (void)sst_reader_smallest(r);
    (void)sst_reader_largest(r);
    struct sst_iter *it;
    /* cached runs scan like compaction: no cache fill, read ahead */
    struct sst_iter_options io = {.fill_cache = !cached, .readahead = 4096};
    NK_ASSERT(nk_ok(sst_iter_new_opts(r, &io, &it)));
    size_t count = 0;
    for (sst_iter_seek_first(it); sst_iter_valid(it) && count < 10000; sst_iter_next(it)) {
        struct nk_slice k = sst_iter_key(it), v = sst_iter_value(it);
        /* a value can outgrow the input when its block decompresses */
        NK_ASSERT(k.len <= SST_MAX_KEY && v.len <= SST_MAX_BLOCK_RAW);
        count++;
    }
    s = sst_iter_status(it);
    nk_status_free(&s);
    struct nk_buf k, v;
    nk_buf_init(&k);
    nk_buf_init(&v);
    /* targets taken from the input itself, plus the extremes */
    for (size_t i = 0; i < 4; i++) {
        size_t off = size ? (i * 7919) % size : 0;
        size_t len = NK_MIN((size_t)(i * 5), size - off);
        struct nk_slice t = nk_slice_make(data + off, len);
        if (i == 3)
            t = sst_reader_largest(r);
        sst_iter_seek(it, t);
        if (sst_iter_valid(it))
            sst_iter_next(it);
        bool found;
        s = sst_reader_seek_one(r, t, t, &found, &k, &v);
        nk_status_free(&s);
    }
    nk_buf_free(&k);
    nk_buf_free(&v);
    s = sst_iter_status(it);
    nk_status_free(&s);
    sst_iter_free(it);
    sst_reader_close(r);
}

static void exercise_decoders(const uint8_t *data, size_t size)
{
    if (size >= SST_FOOTER_SIZE) {
        struct sst_footer f;
        nk_status s = sst_footer_decode(data + size - SST_FOOTER_SIZE, "fuzz", &f);
        nk_status_free(&s);
    }
    struct sst_props p;
    nk_status s = sst_props_decode(data, size, "fuzz", &p);
    nk_status_free(&s);
    struct sst_filter flt;
    s = sst_filter_decode(data, size, "fuzz", &flt);
    if (nk_ok(s)) {
        for (uint64_t h = 0; h < 64; h++)
            (void)sst_bloom_probe(flt.bits, flt.nlines, flt.k, h * 0x9e3779b97f4a7c15ull);
    }
    nk_status_free(&s);

    /* the input as a stored block (contents + trailer), unverified so the
     * decompressors and the restart check see arbitrary bytes */
    if (size >= SST_TRAILER_SIZE) {
        struct sst_block *hold = sst_block_alloc(size);
        memcpy(hold->buf, data, size);
        struct sst_block *b;
        s = sst_block_from_stored(hold, hold->buf, size - SST_TRAILER_SIZE, false, true, "fuzz", 0,
                                  &b);
        if (nk_ok(s)) {
            struct nk_buf key;
            nk_buf_init(&key);
            struct sst_blk_iter bi;
            sst_bi_init(&bi, b, &key);
            for (sst_bi_first(&bi); bi.valid; sst_bi_next(&bi))
                NK_ASSERT(bi.value.data >= b->data && bi.value.data + bi.value.len <= b->data + b->size);
            sst_bi_seek(&bi, nk_slice_make(data, NK_MIN(size, (size_t)8)), NULL);
            nk_buf_free(&key);
            sst_block_free(b);
        }
        nk_status_free(&s);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    setup();
    put_file(data, size);
    exercise_reader(data, size, true, false, false);
    exercise_reader(data, size, false, true, false);
    exercise_reader(data, size, size % 2 == 0, false, true);
    exercise_decoders(data, size);
    return 0;
}

/* Valid tables of several shapes, for the driver to mutate. */
size_t LLVMFuzzerSeedCorpus(const uint8_t ***out, const size_t **lens)
{
    setup();
    enum { NSEEDS = 6 };
    static const uint8_t *seeds[NSEEDS];
    static size_t seed_lens[NSEEDS];
    char path[600];
    snprintf(path, sizeof path, "%s.seed", g_path);
    struct nk_rng rng;
    nk_rng_seed(&rng, 7);
    for (int i = 0; i < NSEEDS; i++) {
        struct sst_options o;
        sst_options_default(&o);
        o.compression = (enum sst_compression)(i % 3);
        o.block_size = i < 3 ? 256 : 2048;
        o.restart_interval = i == 4 ? 1 : 16;
        o.bloom_bits_per_key = i == 5 ? 0 : 10;
        struct sst_builder *b;
        NK_ASSERT(nk_ok(sst_builder_open(path, &o, &b)));
        int n = i == 0 ? 0 : 20 * i;
        char key[32], val[64];
        for (int j = 0; j < n; j++) {
            int kl = snprintf(key, sizeof key, "key%05d", j * 3);
            int vl = snprintf(val, sizeof val, "value-%d-%d-aaaaaaaaaaaaaaaa", j, i);
            NK_ASSERT(nk_ok(sst_builder_add(b, nk_slice_make(key, (size_t)kl),
                                            nk_slice_make(val, (size_t)vl))));
        }
        NK_ASSERT(nk_ok(sst_builder_finish(b, NULL)));
        uint8_t *bytes;
        size_t len;
        nk_status s = nk_read_file(path, 1u << 20, &bytes, &len);
        NK_ASSERT(nk_ok(s));
        seeds[i] = bytes;
        seed_lens[i] = len;
    }
    unlink(path);
    *out = seeds;
    *lens = seed_lens;
    return NSEEDS;
}
