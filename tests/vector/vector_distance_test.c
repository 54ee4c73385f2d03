/* The distance kernels against a plain double-precision reference, and every
 * SIMD path bit-identical to the scalar one (so replicas on different CPUs
 * build the same graph). */
#include <math.h>

#include "testlib.h"
#include "vecgen.h"
#include "vector/vector.h"

static const char *KERNELS[] = {"scalar", "avx2", "avx512"};

static double ref_dot(const float *a, const float *b, size_t n, double *mag)
{
    double s = 0, m = 0;
    for (size_t i = 0; i < n; i++) {
        s += (double)a[i] * b[i];
        m += fabs((double)a[i] * b[i]);
    }
    *mag = m;
    return s;
}

static double ref_l2(const float *a, const float *b, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - b[i];
        s += d * d;
    }
    return s;
}

static double ref_cos(const float *a, const float *b, size_t n)
{
    double m, dot = ref_dot(a, b, n, &m), na = 0, nb = 0;
    for (size_t i = 0; i < n; i++) {
        na += (double)a[i] * a[i];
        nb += (double)b[i] * b[i];
    }
    if (na == 0 || nb == 0)
        return 1.0;
    double d = 1.0 - dot / (sqrt(na) * sqrt(nb));
    return d < 0 ? 0 : (d > 2 ? 2 : d);
}

/* checks one pair under every kernel; returns false on the first mismatch */
static bool check_pair(const float *a, const float *b, size_t n)
{
    float base_dot = 0, base_l2 = 0, base_cos = 0;
    bool ok = true;
    for (size_t k = 0; k < NK_ARRAY_LEN(KERNELS); k++) {
        if (!vec_kernel_force(KERNELS[k]))
            continue;
        float d = vec_dot(a, b, n), l = vec_l2_sq(a, b, n);
        float c = vec_distance(VEC_METRIC_COSINE, a, b, n);
        double mag, rd = ref_dot(a, b, n, &mag), rl = ref_l2(a, b, n), rc = ref_cos(a, b, n);
        double tol = 1e-5 * (mag + 1e-30) + 1e-30;
        if (fabs(d - rd) > tol || fabs(l - rl) > 1e-5 * rl + 1e-30 || fabs(c - rc) > 1e-4) {
            fprintf(stderr, "  %s n=%zu: dot %g vs %g, l2 %g vs %g, cos %g vs %g\n", KERNELS[k],
                    n, d, rd, l, rl, c, rc);
            ok = false;
        }
        if (vec_distance(VEC_METRIC_IP, a, b, n) != -d ||
            vec_distance(VEC_METRIC_L2, a, b, n) != sqrtf(l)) {
            fprintf(stderr, "  %s n=%zu: metric wrappers disagree\n", KERNELS[k], n);
            ok = false;
        }
        if (k == 0) {
            base_dot = d;
            base_l2 = l;
            base_cos = c;
        } else if (d != base_dot || l != base_l2 || c != base_cos) {
            fprintf(stderr, "  %s n=%zu: not bit-identical to scalar (%a %a vs %a %a)\n",
                    KERNELS[k], n, d, l, base_dot, base_l2);
            ok = false;
        }
    }
    vec_kernel_force("auto");
    return ok;
}

NK_TEST(kernels_match_reference_and_each_other_at_every_size)
{
    struct vg_rng r = {nk_test_seed()};
    fprintf(stderr, "  kernel in use: %s\n", vec_kernel_name());
    float *a = malloc(4100 * sizeof(float)), *b = malloc(4100 * sizeof(float));
    size_t sizes[] = {1023, 1024, 1025, 1536, 4095, 4096};
    for (size_t n = 0; n <= 300 + NK_ARRAY_LEN(sizes); n++) {
        size_t len = n <= 300 ? n : sizes[n - 301];
        for (int rep = 0; rep < 3; rep++) {
            for (size_t i = 0; i < len + 1; i++) {
                a[i] = (float)(vg_unif(&r) * 2 - 1);
                b[i] = (float)(vg_unif(&r) * 2 - 1);
            }
            /* odd offsets: the kernels take unaligned pointers */
            NK_REQUIRE(check_pair(a + (rep & 1), b + 1, len));
        }
    }
    free(a);
    free(b);
}

NK_TEST(kernels_handle_adversarial_inputs)
{
    float one_a[1] = {3}, one_b[1] = {-4};
    NK_CHECK(check_pair(one_a, one_b, 1));
    for (size_t k = 0; k < NK_ARRAY_LEN(KERNELS); k++) {
        if (!vec_kernel_force(KERNELS[k]))
            continue;
        NK_CHECK(vec_distance(VEC_METRIC_L2, one_a, one_b, 1) == 7.0f);
        NK_CHECK(vec_distance(VEC_METRIC_IP, one_a, one_b, 1) == 12.0f);
        NK_CHECK(vec_distance(VEC_METRIC_COSINE, one_a, one_b, 1) == 2.0f);
    }
    vec_kernel_force("auto");

    struct vg_rng r = {7};
    float a[133], b[133], z[133] = {0};
    /* large magnitudes (squares still finite in float) and tiny ones */
    double scales[] = {1e15, 1e6, 1e-3, 1e-18};
    for (size_t s = 0; s < NK_ARRAY_LEN(scales); s++) {
        for (size_t i = 0; i < 133; i++) {
            a[i] = (float)((vg_unif(&r) * 2 - 1) * scales[s]);
            b[i] = (float)((vg_unif(&r) * 2 - 1) * scales[s]);
        }
        NK_CHECK(check_pair(a, b, 133));
        NK_CHECK(check_pair(a, b, 17));
    }
    /* denormals: products underflow to zero in float; results stay finite and in range, and
     * a vector whose squared norm underflows counts as the zero vector for cosine */
    for (size_t i = 0; i < 133; i++) {
        a[i] = (float)((vg_unif(&r) * 2 - 1) * 1e-40);
        b[i] = (float)((vg_unif(&r) * 2 - 1) * 1e-40);
    }
    NK_CHECK(vec_distance(VEC_METRIC_L2, a, b, 133) >= 0.0f);
    NK_CHECK(vec_distance(VEC_METRIC_COSINE, a, b, 133) == 1.0f);
    NK_CHECK(isfinite(vec_distance(VEC_METRIC_IP, a, b, 133)));
    for (size_t i = 0; i < 133; i++)
        a[i] = (float)(vg_unif(&r) * 2 - 1);
    /* zeros for cosine: no NaN, distance 1 */
    NK_CHECK(check_pair(a, z, 133));
    NK_CHECK(vec_distance(VEC_METRIC_COSINE, a, z, 133) == 1.0f);
    NK_CHECK(vec_distance(VEC_METRIC_COSINE, z, z, 133) == 1.0f);
    NK_CHECK(vec_distance(VEC_METRIC_L2, z, z, 133) == 0.0f);
    /* same direction: 0 (never negative), opposite: 2 */
    for (size_t i = 0; i < 133; i++)
        b[i] = a[i] * 4;
    float c = vec_distance(VEC_METRIC_COSINE, a, b, 133);
    NK_CHECK(c >= 0.0f && c < 1e-6f);
    for (size_t i = 0; i < 133; i++)
        b[i] = -a[i];
    c = vec_distance(VEC_METRIC_COSINE, a, b, 133);
    NK_CHECK(c <= 2.0f && c > 2.0f - 1e-6f);
}

NK_TEST(kernel_choice_can_be_forced_and_restored)
{
    NK_CHECK(vec_kernel_force("scalar"));
    NK_CHECK(!strcmp(vec_kernel_name(), "scalar"));
    NK_CHECK(!vec_kernel_force("no-such-kernel"));
    NK_CHECK(vec_kernel_force("auto"));
    fprintf(stderr, "  auto: %s\n", vec_kernel_name());
}
