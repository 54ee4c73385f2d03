/*
 * crc.c: CRC32C of whole blocks, three streams at a time.
 *
 * util's nk_crc32c feeds the SSE4.2 crc32 instruction one 8-byte word after
 * another; each step waits for the previous one (3-cycle latency), about
 * 0.5 us for a 4 KiB block, which showed up as a sixth of a block read.
 * Here three independent streams over three adjacent chunks run in the same
 * loop (the instruction's throughput is one per cycle) and are joined with
 * precomputed "append n zero bytes" operators (CRC is linear: crc(s, A||B) =
 * shift_|B|(crc(s, A)) ^ crc(0, B)), the method of Mark Adler's crc32c.c.
 * Results are bit-identical to nk_crc32c (tests/sstable/sstable_test.c).
 */
#include "sstable/sst_internal.h"

#include <pthread.h>

#define POLY  0x82f63b78u /* reflected Castagnoli */
#define LONG  1024u       /* chunk of a long round (3 KiB per round) */
#define SHORT 128u        /* chunk of a short round */

static uint32_t zeros_long[4][256], zeros_short[4][256];
static pthread_once_t once = PTHREAD_ONCE_INIT;
static bool have_hw;

static uint32_t gf2_times(const uint32_t *mat, uint32_t vec)
{
    uint32_t sum = 0;
    for (; vec; vec >>= 1, mat++)
        if (vec & 1)
            sum ^= *mat;
    return sum;
}

static void gf2_square(uint32_t *square, const uint32_t *mat)
{
    for (int n = 0; n < 32; n++)
        square[n] = gf2_times(mat, mat[n]);
}

/* The operator that appends len zero bytes (len a power of two). */
static void zeros_op(uint32_t *even, size_t len)
{
    uint32_t odd[32];
    odd[0] = POLY; /* one zero bit */
    uint32_t row = 1;
    for (int n = 1; n < 32; n++, row <<= 1)
        odd[n] = row;
    gf2_square(even, odd); /* two zero bits */
    gf2_square(odd, even); /* four */
    for (;;) {
        gf2_square(even, odd); /* 1, 4, 16, ... bytes */
        len >>= 1;
        if (len == 0)
            return;
        gf2_square(odd, even); /* 2, 8, 32, ... bytes */
        len >>= 1;
        if (len == 0)
            break;
    }
    memcpy(even, odd, sizeof odd);
}

static void make_table(uint32_t table[4][256], size_t len)
{
    uint32_t op[32];
    zeros_op(op, len);
    for (uint32_t n = 0; n < 256; n++) {
        table[0][n] = gf2_times(op, n);
        table[1][n] = gf2_times(op, n << 8);
        table[2][n] = gf2_times(op, n << 16);
        table[3][n] = gf2_times(op, n << 24);
    }
}

static void init(void)
{
#if defined(__x86_64__)
    __builtin_cpu_init();
    have_hw = __builtin_cpu_supports("sse4.2");
#endif
    make_table(zeros_long, LONG);
    make_table(zeros_short, SHORT);
}

static inline uint32_t shift(uint32_t table[4][256], uint32_t crc)
{
    return table[0][crc & 0xff] ^ table[1][(crc >> 8) & 0xff] ^ table[2][(crc >> 16) & 0xff] ^
           table[3][crc >> 24];
}

#if defined(__x86_64__)
__attribute__((target("sse4.2"))) static uint32_t crc3(uint32_t crc, const uint8_t *p, size_t n)
{
    uint64_t c0 = crc;
    while (n && ((uintptr_t)p & 7)) {
        c0 = __builtin_ia32_crc32qi((uint32_t)c0, *p++);
        n--;
    }
    const size_t chunks[2] = {LONG, SHORT};
    for (int k = 0; k < 2; k++) {
        size_t len = chunks[k];
        while (n >= 3 * len) {
            uint64_t c1 = 0, c2 = 0;
            const uint8_t *end = p + len;
            do {
                uint64_t w0, w1, w2;
                memcpy(&w0, p, 8);
                memcpy(&w1, p + len, 8);
                memcpy(&w2, p + 2 * len, 8);
                c0 = __builtin_ia32_crc32di(c0, w0);
                c1 = __builtin_ia32_crc32di(c1, w1);
                c2 = __builtin_ia32_crc32di(c2, w2);
                p += 8;
            } while (p < end);
            uint32_t(*z)[256] = k == 0 ? zeros_long : zeros_short;
            c0 = shift(z, (uint32_t)c0) ^ (uint32_t)c1;
            c0 = shift(z, (uint32_t)c0) ^ (uint32_t)c2;
            p += 2 * len;
            n -= 3 * len;
        }
    }
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        c0 = __builtin_ia32_crc32di(c0, w);
        p += 8;
        n -= 8;
    }
    while (n--)
        c0 = __builtin_ia32_crc32qi((uint32_t)c0, *p++);
    return (uint32_t)c0;
}
#endif

uint32_t sst_crc32c(const void *data, size_t n)
{
    pthread_once(&once, init);
#if defined(__x86_64__)
    if (have_hw)
        return ~crc3(~0u, data, n);
#endif
    return nk_crc32c(data, n);
}
