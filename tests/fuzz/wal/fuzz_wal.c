/*
 * fuzz_wal: random bytes as WAL segment files. Each input is written to a
 * real directory (tmpfs when available, so fdatasync is cheap) and opened
 * with wal_open, then iterated and appended to. Whatever the bytes, open must
 * either succeed or fail with NK_DATA_LOSS, iteration must return what the
 * pure scanner (wal_scan_segment) says the valid prefix holds, and nothing
 * may crash or read out of bounds.
 *
 * The first byte picks a layout (value % 3): 0 = the input is the only
 * segment; 1 = a valid sealed segment 1 followed by the input as segment 2;
 * 2 = the input as segment 1 followed by a valid segment 2 (so damage in it
 * is mid-log). Bit 0x10 rewrites a valid header over the input's first 32
 * bytes and bit 0x20 recomputes the checksum of every plausibly framed
 * record, so that a coverage-guided fuzzer, which cannot forge CRCs, still
 * reaches the record and recovery logic with lengths and types it chose.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "wal/wal.h"
#include "wal/wal_internal.h"

static char g_dir[512];
/* On a real disk every open costs fdatasyncs; then only 1 input in 64 goes
 * through the files (all still go through the pure scanner). */
static bool g_on_tmpfs;
static unsigned long g_inputs;

static void cleanup(void)
{
    if (g_dir[0]) {
        nk_status s = nk_remove_tree(g_dir);
        nk_status_free(&s);
    }
}

static void setup_dir(void)
{
    if (g_dir[0])
        return;
    const char *bases[] = {"/dev/shm", getenv("NK_TEST_TMPDIR"), "/tmp"};
    for (size_t i = 0; i < NK_ARRAY_LEN(bases); i++) {
        if (!bases[i] || access(bases[i], W_OK) != 0)
            continue;
        snprintf(g_dir, sizeof g_dir, "%s/fuzz_wal.XXXXXX", bases[i]);
        if (mkdtemp(g_dir)) {
            atexit(cleanup); /* also under libFuzzer, which never asks for the seed corpus */
            struct statfs fs;
            g_on_tmpfs = statfs(g_dir, &fs) == 0 && fs.f_type == 0x01021994; /* TMPFS_MAGIC */
            return;
        }
    }
    nk_panic("fuzz_wal: no writable temporary directory");
}

/* A valid segment image with `n` records; returned buffer is static per call site. */
static size_t build_segment(uint64_t seg, int n, uint8_t *out, size_t cap)
{
    wal_encode_segment_header(out, seg);
    size_t off = WAL_SEGMENT_HEADER_SIZE;
    for (int i = 0; i < n; i++) {
        uint8_t payload[64];
        size_t len = (size_t)(i * 7) % sizeof payload;
        for (size_t k = 0; k < len; k++)
            payload[k] = (uint8_t)(i + k);
        if (off + WAL_RECORD_HEADER_SIZE + len > cap)
            break;
        wal_encode_record_header(out + off, nk_crc32c(payload, len), (uint32_t)len,
                                 (uint8_t)(1 + i), seg, off);
        memcpy(out + off + WAL_RECORD_HEADER_SIZE, payload, len);
        off += WAL_RECORD_HEADER_SIZE + len;
    }
    return off;
}

static void write_seg(uint64_t seg, const uint8_t *p, size_t n)
{
    char path[700];
    snprintf(path, sizeof path, "%s/%020" PRIu64 ".wal", g_dir, seg);
    FILE *f = fopen(path, "wb");
    if (!f)
        nk_panic("fuzz_wal: cannot write %s", path);
    if (n && fwrite(p, 1, n, f) != n)
        nk_panic("fuzz_wal: short write to %s", path);
    fclose(f);
}

static void clear_dir(void)
{
    nk_status s = nk_remove_tree(g_dir);
    nk_status_free(&s);
    s = nk_mkdirs(g_dir, 0755);
    if (!nk_ok(s))
        nk_panic("fuzz_wal: %s", nk_status_msg(s));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    setup_dir();
    clear_dir();
    int mode = size ? data[0] % 3 : 0;
    bool fix_header = size && (data[0] & 0x10);
    bool fix_crcs = size && (data[0] & 0x20);
    size_t n = size ? size - 1 : 0;
    /* an exact-size heap copy, so that the sanitizers see any overread */
    uint8_t *body = nk_malloc(n ? n : 1);
    if (n)
        memcpy(body, data + 1, n);
    uint64_t seg = 1;
    if (mode == 0 && n >= 24 && !fix_header) {
        /* take the number the header claims, so that valid headers are reachable */
        seg = nk_dec_fixed64(body + 16);
        if (seg == 0 || seg > 1000000000000ull)
            seg = 1;
    }
    if (mode == 1)
        seg = 2;
    if (fix_header && n >= WAL_SEGMENT_HEADER_SIZE)
        wal_encode_segment_header(body, seg);
    if (fix_crcs) {
        uint64_t off = WAL_SEGMENT_HEADER_SIZE;
        while (off + WAL_RECORD_HEADER_SIZE <= n) {
            uint32_t len = wal_rec_len(body + off);
            uint8_t type = wal_rec_type(body + off);
            if (type == 0 || len > n - off - WAL_RECORD_HEADER_SIZE)
                break;
            wal_encode_record_header(body + off,
                                     nk_crc32c(body + off + WAL_RECORD_HEADER_SIZE, len), len,
                                     type, seg, off);
            off += WAL_RECORD_HEADER_SIZE + len;
        }
    }
    static uint8_t other[4096];
    if (mode == 1)
        write_seg(1, other, build_segment(1, 20, other, sizeof other));
    write_seg(seg, body, n);
    if (mode == 2)
        write_seg(2, other, build_segment(2, 5, other, sizeof other));

    /* what the pure scanner says about the fuzzed segment */
    char name[64];
    snprintf(name, sizeof name, "%020" PRIu64 ".wal", seg);
    struct wal_scan_result sr;
    nk_status ss = wal_scan_segment(n ? body : (const uint8_t *)"", n, name, seg, &sr);
    bool scan_ok = nk_ok(ss);
    nk_status_free(&ss);
    if (!g_on_tmpfs && g_inputs++ % 64 != 0) {
        free(body);
        return 0;
    }

    struct wal_options o;
    wal_options_default(&o);
    o.sync = WAL_SYNC_OS;
    o.segment_size = 4096;
    o.preallocate = (size & 1) != 0;
    struct wal *w = NULL;
    nk_status s = wal_open(g_dir, &o, &w);
    if (!nk_ok(s)) {
        if (s.code != NK_DATA_LOSS)
            nk_panic("fuzz_wal: open failed with %s, not DATA_LOSS: %s", nk_code_name(s.code),
                     nk_status_msg(s));
        nk_status_free(&s);
        free(body);
        return 0;
    }
    /* open accepted the segment, so the scanner must have too */
    NK_ASSERT(scan_ok);
    NK_ASSERT(sr.next_valid == 0);
    uint64_t expect = sr.records + (mode == 1 ? 20 : 0) + (mode == 2 ? 5 : 0);
    for (int pass = 0; pass < 2; pass++) {
        struct wal_iter *it;
        s = wal_iter_open(w, (struct wal_pos){0, 0}, &it);
        NK_ASSERT(nk_ok(s));
        uint64_t count = 0;
        for (;;) {
            bool has;
            uint8_t type;
            struct nk_slice p;
            s = wal_iter_next(it, &has, &type, &p, NULL);
            NK_ASSERT(nk_ok(s));
            if (!has)
                break;
            NK_ASSERT(type != 0);
            count++;
        }
        wal_iter_close(it);
        NK_ASSERT(count == expect);
        s = wal_append(w, 9, "appended", 8, NULL);
        NK_ASSERT(nk_ok(s));
        expect++;
    }
    wal_close(w);
    free(body);
    return 0;
}

size_t LLVMFuzzerSeedCorpus(const uint8_t ***out, const size_t **lens)
{
    static uint8_t img[6][4097];
    static const uint8_t *ptrs[6];
    static size_t ls[6];
    for (int i = 0; i < 6; i++) {
        img[i][0] = (uint8_t)(i % 3);
        uint64_t seg = i % 3 == 1 ? 2 : 1;
        ls[i] = 1 + build_segment(seg, i < 3 ? 12 : 3, img[i] + 1, 4096);
        if (i == 3)
            ls[i] -= 5; /* a torn tail */
        if (i == 4)
            img[i][1 + WAL_SEGMENT_HEADER_SIZE + 3] ^= 1; /* a damaged first record */
        ptrs[i] = img[i];
    }
    *out = ptrs;
    *lens = ls;
    return 6;
}
