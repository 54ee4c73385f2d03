/*
 * distance.c: dot product and squared L2 kernels, scalar, AVX2+FMA and
 * AVX-512, chosen once at start from cpuid (__builtin_cpu_supports). The
 * SIMD versions are compiled with function target attributes, so the binary
 * still runs on CPUs without them.
 *
 * Why every path gives bit-identical results: HNSW construction compares
 * distances, so a different rounding on a replica with another CPU would
 * build another graph, and the replicas' search results would drift apart.
 * So all three paths compute the same arithmetic: element i is accumulated
 * into lane i mod 64 with a fused multiply-add (the scalar path uses fmaf,
 * correctly rounded in software where the CPU has no FMA), and the 64 lanes
 * are reduced in one fixed tree:
 *   t[j] = (L[j] + L[16+j]) + (L[32+j] + L[48+j])   j < 16
 *   u[j] = t[j] + t[8+j]                             j < 8
 *   w[j] = u[j] + u[4+j]                             j < 4
 *   x[j] = w[j] + w[2+j]                             j < 2
 *   sum  = x[0] + x[1]
 * Tails use masked operations that leave the other lanes untouched. This file
 * is compiled with -ffp-contract=off so that the compiler adds no fusing of
 * its own. AVX-512 keeps four 16-lane accumulators and AVX2 eight 8-lane
 * ones, enough independent chains to hide the FMA latency.
 */
#include "vector/vector.h"

#include <math.h>
#include <stdlib.h>

#include "vector/internal.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define VEC_X86 1
#endif

typedef float (*kernel_fn)(const float *a, const float *b, size_t n);

/* ---------------------------------------------------------------- scalar */

static float reduce64(float *L)
{
    float t[16], u[8], w[4], x[2];
    for (int j = 0; j < 16; j++)
        t[j] = (L[j] + L[16 + j]) + (L[32 + j] + L[48 + j]);
    for (int j = 0; j < 8; j++)
        u[j] = t[j] + t[8 + j];
    for (int j = 0; j < 4; j++)
        w[j] = u[j] + u[4 + j];
    for (int j = 0; j < 2; j++)
        x[j] = w[j] + w[2 + j];
    return x[0] + x[1];
}

static float dot_scalar(const float *a, const float *b, size_t n)
{
    float L[64] = {0};
    for (size_t i = 0; i < n; i++)
        L[i & 63] = fmaf(a[i], b[i], L[i & 63]);
    return reduce64(L);
}

static float l2_scalar(const float *a, const float *b, size_t n)
{
    float L[64] = {0};
    for (size_t i = 0; i < n; i++) {
        float d = a[i] - b[i];
        L[i & 63] = fmaf(d, d, L[i & 63]);
    }
    return reduce64(L);
}

#ifdef VEC_X86
/* ------------------------------------------------------------------ AVX2 */

__attribute__((target("avx2,fma"))) static float reduce_avx2(__m256 *acc)
{
    __m256 lo = _mm256_add_ps(_mm256_add_ps(acc[0], acc[2]), _mm256_add_ps(acc[4], acc[6]));
    __m256 hi = _mm256_add_ps(_mm256_add_ps(acc[1], acc[3]), _mm256_add_ps(acc[5], acc[7]));
    __m256 u = _mm256_add_ps(lo, hi);
    __m128 w = _mm_add_ps(_mm256_castps256_ps128(u), _mm256_extractf128_ps(u, 1));
    __m128 x = _mm_add_ps(w, _mm_movehl_ps(w, w));
    __m128 s = _mm_add_ss(x, _mm_shuffle_ps(x, x, 1));
    return _mm_cvtss_f32(s);
}

__attribute__((target("avx2,fma"))) static __m256i tail_mask8(size_t left)
{
    /* lanes < left are all-ones */
    __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)left), idx);
}

#define AVX2_BODY(STEP)                                                                            \
    __m256 acc[8];                                                                                 \
    for (int k = 0; k < 8; k++)                                                                    \
        acc[k] = _mm256_setzero_ps();                                                              \
    size_t i = 0;                                                                                  \
    for (; i + 64 <= n; i += 64) {                                                                 \
        for (int k = 0; k < 8; k++) {                                                              \
            __m256 x = _mm256_loadu_ps(a + i + 8 * k);                                             \
            __m256 y = _mm256_loadu_ps(b + i + 8 * k);                                             \
            STEP(acc[k], x, y);                                                                    \
        }                                                                                          \
    }                                                                                              \
    for (int k = 0; i < n; k++, i += 8) {                                                          \
        size_t left = n - i;                                                                       \
        if (left >= 8) {                                                                           \
            __m256 x = _mm256_loadu_ps(a + i);                                                     \
            __m256 y = _mm256_loadu_ps(b + i);                                                     \
            STEP(acc[k], x, y);                                                                    \
        } else {                                                                                   \
            __m256i m = tail_mask8(left);                                                          \
            __m256 x = _mm256_maskload_ps(a + i, m);                                               \
            __m256 y = _mm256_maskload_ps(b + i, m);                                               \
            __m256 old = acc[k];                                                                   \
            STEP(acc[k], x, y);                                                                    \
            acc[k] = _mm256_blendv_ps(old, acc[k], _mm256_castsi256_ps(m));                        \
            break;                                                                                 \
        }                                                                                          \
    }                                                                                              \
    return reduce_avx2(acc);

#define DOT_STEP8(acc, x, y) acc = _mm256_fmadd_ps(x, y, acc)
#define L2_STEP8(acc, x, y)                                                                        \
    do {                                                                                           \
        __m256 d_ = _mm256_sub_ps(x, y);                                                           \
        acc = _mm256_fmadd_ps(d_, d_, acc);                                                        \
    } while (0)

__attribute__((target("avx2,fma"))) static float dot_avx2(const float *a, const float *b, size_t n)
{
    AVX2_BODY(DOT_STEP8)
}

__attribute__((target("avx2,fma"))) static float l2_avx2(const float *a, const float *b, size_t n)
{
    AVX2_BODY(L2_STEP8)
}

/* --------------------------------------------------------------- AVX-512 */

__attribute__((target("avx512f,avx2,fma"))) static float reduce_avx512(__m512 *acc)
{
    __m512 t = _mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3]));
    __m256 u = _mm256_add_ps(_mm512_castps512_ps256(t),
                             _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(t), 1)));
    __m128 w = _mm_add_ps(_mm256_castps256_ps128(u), _mm256_extractf128_ps(u, 1));
    __m128 x = _mm_add_ps(w, _mm_movehl_ps(w, w));
    __m128 s = _mm_add_ss(x, _mm_shuffle_ps(x, x, 1));
    return _mm_cvtss_f32(s);
}

#define AVX512_BODY(STEP, MSTEP)                                                                   \
    __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(),                \
                     _mm512_setzero_ps()};                                                         \
    size_t i = 0;                                                                                  \
    for (; i + 64 <= n; i += 64) {                                                                 \
        for (int k = 0; k < 4; k++) {                                                              \
            __m512 x = _mm512_loadu_ps(a + i + 16 * k);                                            \
            __m512 y = _mm512_loadu_ps(b + i + 16 * k);                                            \
            STEP(acc[k], x, y);                                                                    \
        }                                                                                          \
    }                                                                                              \
    for (int k = 0; i < n; k++, i += 16) {                                                         \
        size_t left = n - i;                                                                       \
        __mmask16 m = left >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << left) - 1);              \
        __m512 x = _mm512_maskz_loadu_ps(m, a + i);                                                \
        __m512 y = _mm512_maskz_loadu_ps(m, b + i);                                                \
        MSTEP(acc[k], x, y, m);                                                                    \
    }                                                                                              \
    return reduce_avx512(acc);

#define DOT_STEP16(acc, x, y) acc = _mm512_fmadd_ps(x, y, acc)
#define DOT_MSTEP16(acc, x, y, m) acc = _mm512_mask3_fmadd_ps(x, y, acc, m)
#define L2_STEP16(acc, x, y)                                                                       \
    do {                                                                                           \
        __m512 d_ = _mm512_sub_ps(x, y);                                                           \
        acc = _mm512_fmadd_ps(d_, d_, acc);                                                        \
    } while (0)
#define L2_MSTEP16(acc, x, y, m)                                                                   \
    do {                                                                                           \
        __m512 d_ = _mm512_sub_ps(x, y);                                                           \
        acc = _mm512_mask3_fmadd_ps(d_, d_, acc, m);                                               \
    } while (0)

__attribute__((target("avx512f,avx2,fma"))) static float dot_avx512(const float *a,
                                                                    const float *b, size_t n)
{
    AVX512_BODY(DOT_STEP16, DOT_MSTEP16)
}

__attribute__((target("avx512f,avx2,fma"))) static float l2_avx512(const float *a, const float *b,
                                                                   size_t n)
{
    AVX512_BODY(L2_STEP16, L2_MSTEP16)
}
#endif /* VEC_X86 */

/* -------------------------------------------------------------- dispatch */

static kernel_fn g_dot = dot_scalar;
static kernel_fn g_l2 = l2_scalar;
static const char *g_name = "scalar";

static bool cpu_has(const char *name)
{
#ifdef VEC_X86
    __builtin_cpu_init();
    if (!strcmp(name, "avx512"))
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx2") &&
               __builtin_cpu_supports("fma");
    if (!strcmp(name, "avx2"))
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#endif
    return !strcmp(name, "scalar");
}

bool vec_kernel_force(const char *name)
{
    if (!strcmp(name, "auto")) {
        if (cpu_has("avx512"))
            name = "avx512";
        else if (cpu_has("avx2"))
            name = "avx2";
        else
            name = "scalar";
    }
    if (!cpu_has(name))
        return false;
#ifdef VEC_X86
    if (!strcmp(name, "avx512")) {
        g_dot = dot_avx512;
        g_l2 = l2_avx512;
        g_name = "avx512";
        return true;
    }
    if (!strcmp(name, "avx2")) {
        g_dot = dot_avx2;
        g_l2 = l2_avx2;
        g_name = "avx2";
        return true;
    }
#endif
    g_dot = dot_scalar;
    g_l2 = l2_scalar;
    g_name = "scalar";
    return true;
}

__attribute__((constructor)) static void vec_kernel_init(void)
{
    const char *env = getenv("NK_VECTOR_KERNEL"); /* operators may pin one */
    if (!env || !vec_kernel_force(env))
        vec_kernel_force("auto");
}

const char *vec_kernel_name(void)
{
    return g_name;
}

float vec_dot(const float *a, const float *b, size_t n)
{
    return g_dot(a, b, n);
}

float vec_l2_sq(const float *a, const float *b, size_t n)
{
    return g_l2(a, b, n);
}

/* The cosine distance from a dot product and the inverse norms, one formula
 * everywhere (index.c uses it with stored norms). */
float vec_cosine_from(float dot, float inv_na, float inv_nb)
{
    if (inv_na == 0.0f || inv_nb == 0.0f)
        return 1.0f; /* a zero vector has no direction: similarity 0 */
    float d = 1.0f - (dot * inv_na) * inv_nb;
    return d < 0.0f ? 0.0f : (d > 2.0f ? 2.0f : d);
}

float vec_inv_norm(const float *a, size_t n)
{
    float s = g_dot(a, a, n);
    return s > 0.0f && isfinite(s) ? 1.0f / sqrtf(s) : 0.0f;
}

float vec_distance(enum vec_metric m, const float *a, const float *b, size_t n)
{
    switch (m) {
    case VEC_METRIC_L2:
        return sqrtf(g_l2(a, b, n));
    case VEC_METRIC_COSINE:
        return vec_cosine_from(g_dot(a, b, n), vec_inv_norm(a, n), vec_inv_norm(b, n));
    case VEC_METRIC_IP:
        return -g_dot(a, b, n);
    }
    return NAN;
}
