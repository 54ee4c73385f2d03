/* hash.c: routing hashes (CONTRACT.md) and the test PRNG. */
#include "util/util.h"

#include <xxhash.h>

uint64_t nk_xxhash64(const void *data, size_t n)
{
    return (uint64_t)XXH64(data, n, 0);
}

/*
 * Jump Consistent Hash exactly as CONTRACT.md writes it, including the
 * double-precision division, so that every SDK lands on the same bucket.
 */
uint32_t nk_jump_hash(uint64_t key, uint32_t num_buckets)
{
    NK_ASSERT(num_buckets > 0);
    int64_t b = -1, j = 0;
    while (j < (int64_t)num_buckets) {
        b = j;
        key = key * 2862933555777941757ULL + 1;
        j = (int64_t)((double)(b + 1) * ((double)(1LL << 31) / (double)((key >> 33) + 1)));
    }
    return (uint32_t)b;
}

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

void nk_rng_seed(struct nk_rng *r, uint64_t seed)
{
    r->s[0] = splitmix64(&seed);
    r->s[1] = splitmix64(&seed);
    if (!r->s[0] && !r->s[1])
        r->s[1] = 1;
}

/* xoroshiro128+ */
uint64_t nk_rng_next(struct nk_rng *r)
{
    uint64_t s0 = r->s[0], s1 = r->s[1];
    uint64_t result = s0 + s1;
    s1 ^= s0;
    r->s[0] = ((s0 << 24) | (s0 >> 40)) ^ s1 ^ (s1 << 16);
    r->s[1] = (s1 << 37) | (s1 >> 27);
    return result;
}

uint64_t nk_rng_uniform(struct nk_rng *r, uint64_t n)
{
    NK_ASSERT(n > 0);
    /* Lemire's multiply-shift; the tiny bias is irrelevant for tests. */
    return (uint64_t)(((unsigned __int128)nk_rng_next(r) * n) >> 64);
}
