/*
 * vecgen.h: seeded synthetic data for the vector tests: uniform and
 * adversarial vectors, and clustered data (Gaussian blobs around random
 * centres), the shape real embeddings have and the one that trips up a
 * badly connected graph.
 */
#ifndef NK_TESTS_VECGEN_H
#define NK_TESTS_VECGEN_H

#include <math.h>
#include <stdint.h>
#include <stdlib.h>

struct vg_rng {
    uint64_t s;
};

static inline uint64_t vg_next(struct vg_rng *r)
{
    uint64_t x = (r->s += 0x9e3779b97f4a7c15ULL);
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

static inline double vg_unif(struct vg_rng *r) /* [0, 1) */
{
    return (double)(vg_next(r) >> 11) * (1.0 / 9007199254740992.0);
}

static inline double vg_gauss(struct vg_rng *r)
{
    double u = vg_unif(r), v = vg_unif(r);
    if (u < 1e-300)
        u = 1e-300;
    return sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v);
}

/* n x d floats: nc Gaussian clusters (sigma) around centres in [-1, 1]^d. */
static inline float *vg_clustered(struct vg_rng *r, size_t n, size_t d, size_t nc, double sigma)
{
    float *c = malloc(nc * d * sizeof(float));
    for (size_t i = 0; i < nc * d; i++)
        c[i] = (float)(vg_unif(r) * 2 - 1);
    float *v = malloc(n * d * sizeof(float));
    for (size_t i = 0; i < n; i++) {
        size_t k = vg_next(r) % nc;
        for (size_t j = 0; j < d; j++)
            v[i * d + j] = c[k * d + j] + (float)(vg_gauss(r) * sigma);
    }
    free(c);
    return v;
}

#endif
