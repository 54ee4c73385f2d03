/*
 * testlib.h: the minimal test harness of NoriKV's C tests.
 *
 *   NK_TEST(name_that_states_the_property) { ... NK_CHECK(cond); ... }
 *
 * Every test in a binary runs in file order; main() is provided here (define
 * NK_TEST_NO_MAIN to supply your own). A failing check prints file:line and
 * the expression and marks the test failed; NK_REQUIRE also returns. The run
 * ends with a line "N passed, N failed". Randomized tests take their seed
 * from NK_SEED when set and print it with nk_test_seed().
 *
 * nk_test_tmpdir() gives each test a fresh directory under $NK_TEST_TMPDIR
 * (or /tmp), removed when the test passes and kept for inspection otherwise.
 */
#ifndef NK_TESTLIB_H
#define NK_TESTLIB_H

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "util/util.h"

typedef void (*nk_test_fn)(void);
struct nk_test_case {
    const char *name;
    nk_test_fn fn;
};

#define NK_TEST_MAX 512
static struct nk_test_case nk_tests_[NK_TEST_MAX];
static int nk_ntests_;
static int nk_test_failed_;
static char nk_test_dir_[1024];
static const char *nk_test_current_;

static inline void nk_test_register_(const char *name, nk_test_fn fn)
{
    if (nk_ntests_ < NK_TEST_MAX)
        nk_tests_[nk_ntests_++] = (struct nk_test_case){name, fn};
}

#define NK_TEST(name)                                                                              \
    static void name(void);                                                                        \
    __attribute__((constructor)) static void nk_reg_##name(void)                                   \
    {                                                                                              \
        nk_test_register_(#name, name);                                                            \
    }                                                                                              \
    static void name(void)

#define NK_CHECK(cond)                                                                             \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "  %s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);             \
            nk_test_failed_ = 1;                                                                   \
        }                                                                                          \
    } while (0)

#define NK_REQUIRE(cond)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "  %s:%d: required: %s\n", __FILE__, __LINE__, #cond);                 \
            nk_test_failed_ = 1;                                                                   \
            return;                                                                                \
        }                                                                                          \
    } while (0)

/* Checks a status is OK; prints its message otherwise and returns. */
#define NK_REQUIRE_OK(expr)                                                                        \
    do {                                                                                           \
        nk_status nk_s_ = (expr);                                                                  \
        if (!nk_ok(nk_s_)) {                                                                       \
            fprintf(stderr, "  %s:%d: %s -> %s: %s\n", __FILE__, __LINE__, #expr,                  \
                    nk_code_name(nk_s_.code), nk_status_msg(nk_s_));                               \
            nk_status_free(&nk_s_);                                                                \
            nk_test_failed_ = 1;                                                                   \
            return;                                                                                \
        }                                                                                          \
    } while (0)

#define NK_CHECK_EQ_U64(a, b)                                                                      \
    do {                                                                                           \
        uint64_t nk_a_ = (uint64_t)(a), nk_b_ = (uint64_t)(b);                                     \
        if (nk_a_ != nk_b_) {                                                                      \
            fprintf(stderr, "  %s:%d: %s == %s failed: %" PRIu64 " != %" PRIu64 "\n", __FILE__,    \
                    __LINE__, #a, #b, nk_a_, nk_b_);                                               \
            nk_test_failed_ = 1;                                                                   \
        }                                                                                          \
    } while (0)

static inline uint64_t nk_test_seed(void)
{
    const char *s = getenv("NK_SEED");
    uint64_t seed = s ? strtoull(s, NULL, 0) : (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 20);
    fprintf(stderr, "  %s: seed %" PRIu64 " (rerun with NK_SEED=%" PRIu64 ")\n",
            nk_test_current_ ? nk_test_current_ : "?", seed, seed);
    return seed;
}

static inline const char *nk_test_tmpdir(void)
{
    if (nk_test_dir_[0])
        return nk_test_dir_;
    const char *base = getenv("NK_TEST_TMPDIR");
    if (!base)
        base = "/tmp";
    nk_status s = nk_mkdirs(base, 0755);
    if (!nk_ok(s)) {
        fprintf(stderr, "cannot create %s: %s\n", base, nk_status_msg(s));
        exit(2);
    }
    snprintf(nk_test_dir_, sizeof nk_test_dir_, "%s/%s.XXXXXX", base,
             nk_test_current_ ? nk_test_current_ : "test");
    if (!mkdtemp(nk_test_dir_)) {
        perror("mkdtemp");
        exit(2);
    }
    return nk_test_dir_;
}

#ifndef NK_TEST_NO_MAIN
int main(int argc, char **argv)
{
    int passed = 0, failed = 0;
    const char *only = argc > 1 ? argv[1] : NULL;
    for (int i = 0; i < nk_ntests_; i++) {
        if (only && !strstr(nk_tests_[i].name, only))
            continue;
        nk_test_failed_ = 0;
        nk_test_dir_[0] = 0;
        nk_test_current_ = nk_tests_[i].name;
        uint64_t t0 = nk_mono_ns();
        nk_tests_[i].fn();
        double ms = (double)(nk_mono_ns() - t0) / 1e6;
        if (nk_test_failed_) {
            failed++;
            fprintf(stderr, "FAIL %s (%.1f ms)%s%s\n", nk_tests_[i].name, ms,
                    nk_test_dir_[0] ? " files kept in " : "", nk_test_dir_);
        } else {
            passed++;
            fprintf(stderr, "ok   %s (%.1f ms)\n", nk_tests_[i].name, ms);
            if (nk_test_dir_[0]) {
                nk_status s = nk_remove_tree(nk_test_dir_);
                nk_status_free(&s);
            }
        }
    }
    fprintf(stderr, "%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
#endif

#endif /* NK_TESTLIB_H */
