/*
 * driver.c: runs a libFuzzer target without libFuzzer, so that every
 * `make test` (and the sanitizer build) attacks each decoder.
 *
 * Inputs: the target's optional seed corpus (LLVMFuzzerSeedCorpus, if the
 * target defines one; weak symbol), then NK_FUZZ_ITERS (default 20000)
 * inputs made by mutating seeds and earlier inputs (bit flips, truncation,
 * splices, random bytes, interesting integers). Deterministic per NK_SEED.
 * A crash or sanitizer report fails the test; the seed is printed first.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "util/util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
/* Optional: a target may offer valid inputs to start from. Returns the count;
 * fills out[i] / lens[i] with pointers it owns (static or leaked). */
__attribute__((weak)) size_t LLVMFuzzerSeedCorpus(const uint8_t ***out, const size_t **lens);

#define MAX_INPUT 65536

static size_t mutate(struct nk_rng *r, uint8_t *buf, size_t n, const uint8_t *other, size_t on)
{
    int rounds = 1 + (int)nk_rng_uniform(r, 4);
    for (int k = 0; k < rounds; k++) {
        switch (nk_rng_uniform(r, 7)) {
        case 0: /* flip a bit */
            if (n)
                buf[nk_rng_uniform(r, n)] ^= (uint8_t)(1u << nk_rng_uniform(r, 8));
            break;
        case 1: /* truncate */
            if (n)
                n = nk_rng_uniform(r, n);
            break;
        case 2: /* random byte */
            if (n)
                buf[nk_rng_uniform(r, n)] = (uint8_t)nk_rng_next(r);
            break;
        case 3: { /* interesting integer */
            static const uint64_t vals[] = {0, 1, 0x7f, 0x80, 0xff, 0xffff, 0x7fffffff, 0xffffffff,
                                            UINT64_MAX};
            if (n >= 8) {
                uint64_t v = vals[nk_rng_uniform(r, NK_ARRAY_LEN(vals))];
                size_t at = nk_rng_uniform(r, n - 7);
                memcpy(buf + at, &v, 1 + nk_rng_uniform(r, 8));
            }
            break;
        }
        case 4: /* append random bytes */
        {
            size_t add = nk_rng_uniform(r, 64);
            for (size_t i = 0; i < add && n < MAX_INPUT; i++)
                buf[n++] = (uint8_t)nk_rng_next(r);
            break;
        }
        case 5: /* splice another input */
            if (on) {
                size_t from = nk_rng_uniform(r, on);
                size_t len = nk_rng_uniform(r, on - from + 1);
                size_t at = n ? nk_rng_uniform(r, n + 1) : 0;
                if (at + len > MAX_INPUT)
                    len = MAX_INPUT - at;
                memcpy(buf + at, other + from, len);
                if (at + len > n)
                    n = at + len;
            }
            break;
        default: /* duplicate a chunk */
            if (n > 1 && n < MAX_INPUT / 2) {
                size_t from = nk_rng_uniform(r, n);
                size_t len = nk_rng_uniform(r, n - from + 1);
                memmove(buf + n, buf + from, len);
                n += len;
            }
            break;
        }
    }
    return n;
}

int main(int argc, char **argv)
{
    const char *s = getenv("NK_SEED");
    uint64_t seed = s ? strtoull(s, NULL, 0) : (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 16);
    const char *it = getenv("NK_FUZZ_ITERS");
    long iters = it ? atol(it) : 20000;
    fprintf(stderr, "%s: seed %" PRIu64 " (rerun with NK_SEED=%" PRIu64 "), %ld inputs\n", argv[0],
            seed, seed, iters);
    struct nk_rng r;
    nk_rng_seed(&r, seed);

    const uint8_t **seeds = NULL;
    const size_t *lens = NULL;
    size_t nseeds = LLVMFuzzerSeedCorpus ? LLVMFuzzerSeedCorpus(&seeds, &lens) : 0;
    for (size_t i = 0; i < nseeds; i++)
        LLVMFuzzerTestOneInput(seeds[i], lens[i]);

    static uint8_t buf[2 * MAX_INPUT], prev[2 * MAX_INPUT];
    size_t prevn = 0;
    for (long i = 0; i < iters; i++) {
        size_t n;
        if (nseeds && nk_rng_chance(&r, 3, 4)) {
            size_t k = nk_rng_uniform(&r, nseeds);
            n = NK_MIN(lens[k], (size_t)MAX_INPUT);
            memcpy(buf, seeds[k], n);
        } else if (prevn && nk_rng_chance(&r, 1, 2)) {
            n = prevn;
            memcpy(buf, prev, n);
        } else {
            n = nk_rng_uniform(&r, 512);
            for (size_t j = 0; j < n; j++)
                buf[j] = (uint8_t)nk_rng_next(&r);
        }
        n = mutate(&r, buf, n, prev, prevn);
        /* hand the target an exact-size heap copy so ASan sees overreads */
        uint8_t *in = nk_malloc(n ? n : 1);
        memcpy(in, buf, n);
        LLVMFuzzerTestOneInput(in, n);
        free(in);
        memcpy(prev, buf, n);
        prevn = n;
    }
    fprintf(stderr, "%ld passed, 0 failed\n", iters + (long)nseeds);
    (void)argc;
    return 0;
}
