/*
 * bench_swim: the SWIM core in the deterministic simulator of tests/swim
 * (no I/O, no threads, seeded), at 3, 10 and 50 members.
 *
 * Table 1, detection: a member is paused (as SIGSTOP does) at a random time
 * after the group agreed; the detection time is from that instant to the
 * moment the LAST live member marks it dead (first suspicion shown too).
 * `trials` runs per size, each with its own seed: mean, p99, max.
 *
 * Table 2, load: packets and bytes each member sends per second in a calm
 * group (no failure), over `load_s` simulated seconds.
 *
 * Tables 3 and 4, false positives: 10 and 50 members, packet loss 5% and
 * 10%, and one slow member (every packet to or from it delayed by
 * `slow_ms`: 300, a round trip over the ack timeout; then 700, a round trip
 * over the whole period), `fp_runs` runs of `fp_s` simulated seconds: how
 * many times a live member was marked dead (and suspected), with Lifeguard
 * and with plain SWIM, and the detection time of a real failure under the
 * same conditions.
 *
 * Usage: bench_swim [--trials N] [--seed S] [--fp-seconds S] [--fp-runs N]
 *                   [--slow-ms MS] [--slow-ms-harsh MS]
 * Network delay is uniform in 1..5 ms; defaults are swim_config_defaults().
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "swim/swim_sim.h"

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static struct swim_config base_config(bool lifeguard)
{
    struct swim_config c = {0};
    c.cluster = 42;
    c.disable_lifeguard = !lifeguard;
    swim_config_defaults(&c);
    return c;
}

struct detect {
    uint64_t first_suspect, all_dead; /* ms after the failure; 0 = never */
};

/* One failure in a group of n under the given conditions. */
static struct detect one_failure(uint32_t n, uint64_t seed, bool lifeguard, uint32_t loss,
                                 uint32_t slow_ms)
{
    struct swim_config c = base_config(lifeguard);
    struct sim m;
    sim_init(&m, n, seed, &c);
    m.loss_permille = loss;
    sim_start_full(&m, n);
    if (slow_ms)
        m.nodes[0].slow_ms = slow_ms;
    sim_run_for(&m, 10000 + nk_rng_uniform(&m.rng, 5000));
    uint32_t f = 1 + (uint32_t)nk_rng_uniform(&m.rng, n - 1); /* never the slow one */
    uint64_t t0 = m.now;
    sim_pause(&m, f, true);
    uint64_t limit = swim_detection_bound_ms(&c, n) * 4;
    while (m.now < t0 + limit && !sim_all_hold(&m, f, SWIM_DEAD))
        sim_step(&m);
    struct detect d = {0, 0};
    if (sim_all_hold(&m, f, SWIM_DEAD)) {
        uint64_t first = UINT64_MAX, last = 0;
        for (uint32_t o = 0; o < n; o++) {
            if (o == f)
                continue;
            size_t x = sim_ix(&m, o, f);
            if (m.suspect_at[x] && m.suspect_at[x] < first)
                first = m.suspect_at[x];
            if (m.dead_at[x] > last)
                last = m.dead_at[x];
        }
        d.first_suspect = first == UINT64_MAX ? 0 : first - t0;
        d.all_dead = last - t0;
    }
    sim_free(&m);
    return d;
}

struct stats {
    double mean;
    uint64_t p99, max;
    uint32_t missed;
};

static struct stats summarize(uint64_t *v, uint32_t n, uint32_t missed)
{
    struct stats s = {0, 0, 0, missed};
    if (!n)
        return s;
    qsort(v, n, sizeof *v, cmp_u64);
    double sum = 0;
    for (uint32_t i = 0; i < n; i++)
        sum += (double)v[i];
    s.mean = sum / n;
    uint32_t k = (uint32_t)ceil(0.99 * n);
    s.p99 = v[k ? k - 1 : 0];
    s.max = v[n - 1];
    return s;
}

static void detection_row(uint32_t n, uint32_t trials, uint64_t seed, bool lifeguard, uint32_t loss,
                          uint32_t slow_ms, const char *label)
{
    uint64_t *all = nk_calloc(trials, sizeof *all), *first = nk_calloc(trials, sizeof *first);
    uint32_t got = 0, missed = 0;
    for (uint32_t t = 0; t < trials; t++) {
        struct detect d = one_failure(n, seed + t * 7919 + n, lifeguard, loss, slow_ms);
        if (!d.all_dead) {
            missed++;
            continue;
        }
        all[got] = d.all_dead;
        first[got++] = d.first_suspect;
    }
    struct stats a = summarize(all, got, missed), f = summarize(first, got, 0);
    struct swim_config c = base_config(lifeguard);
    printf("| %-28s | %2u | %6.2f | %6.2f | %6.2f | %6.2f | %6.2f | %u/%u |\n", label, n,
           f.mean / 1000, a.mean / 1000, a.p99 / 1000.0, a.max / 1000.0,
           swim_detection_bound_ms(&c, n) / 1000.0, got, trials);
    free(all);
    free(first);
}

static void load_row(uint32_t n, uint64_t seed, uint32_t seconds)
{
    struct swim_config c = base_config(true);
    struct sim m;
    sim_init(&m, n, seed, &c);
    sim_start_full(&m, n);
    sim_run_for(&m, 10000);
    uint64_t p0 = m.packets, b0 = m.bytes;
    sim_run_for(&m, (uint64_t)seconds * 1000);
    double pps = (double)(m.packets - p0) / n / seconds;
    double bps = (double)(m.bytes - b0) / n / seconds;
    printf("| %2u | %6.2f | %8.0f | %6.0f |\n", n, pps, bps, pps > 0 ? bps / pps : 0);
    sim_free(&m);
}

static void fp_row(uint32_t n, uint64_t seed, uint32_t loss, uint32_t slow_ms, uint32_t seconds,
                   uint32_t trials, uint32_t runs)
{
    uint64_t fd[2] = {0, 0}, fs[2] = {0, 0}, lhm_max[2] = {0, 0};
    for (uint32_t run = 0; run < runs * 2; run++) {
        int lg = (int)(run % 2);
        struct swim_config c = base_config(lg == 1);
        struct sim m;
        sim_init(&m, n, seed + n * 31 + loss + (run / 2) * 100003, &c);
        m.loss_permille = loss;
        sim_start_full(&m, n);
        m.nodes[0].slow_ms = slow_ms;
        uint64_t end = m.now + (uint64_t)seconds * 1000;
        while (m.now < end) {
            sim_step(&m);
            for (uint32_t i = 0; i < n; i++) {
                struct swim_stats st;
                swim_stats(m.nodes[i].s, &st);
                if (st.lhm > lhm_max[lg])
                    lhm_max[lg] = st.lhm;
            }
        }
        fd[lg] += m.false_dead;
        fs[lg] += m.false_suspect;
        sim_free(&m);
    }
    uint64_t det[2] = {0, 0};
    for (int lg = 0; lg < 2; lg++) {
        uint64_t *v = nk_calloc(trials, sizeof *v);
        uint32_t got = 0;
        for (uint32_t t = 0; t < trials; t++) {
            struct detect d = one_failure(n, seed + 1000 + t * 131, lg == 1, loss, slow_ms);
            if (d.all_dead)
                v[got++] = d.all_dead;
        }
        det[lg] = got ? (uint64_t)summarize(v, got, 0).mean : 0;
        free(v);
    }
    printf("| %2u | %4.1f%% | %3u ms | %4" PRIu64 " | %4" PRIu64 " | %5" PRIu64 " | %5" PRIu64
           " | %5.2f | %5.2f | %2" PRIu64 " |\n",
           n, loss / 10.0, slow_ms, fd[0], fd[1], fs[0], fs[1], det[0] / 1000.0, det[1] / 1000.0,
           lhm_max[1]);
}

int main(int argc, char **argv)
{
    uint32_t trials = 100, fp_s = 600, slow_ms = 300, slow_ms_harsh = 700, fp_runs = 3;
    uint64_t seed = 1;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--trials"))
            trials = (uint32_t)atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--seed"))
            seed = strtoull(argv[i + 1], NULL, 0);
        else if (!strcmp(argv[i], "--fp-seconds"))
            fp_s = (uint32_t)atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--slow-ms"))
            slow_ms = (uint32_t)atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--slow-ms-harsh"))
            slow_ms_harsh = (uint32_t)atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--fp-runs"))
            fp_runs = (uint32_t)atoi(argv[i + 1]);
        else {
            fprintf(stderr,
                    "usage: %s [--trials N] [--seed S] [--fp-seconds S] [--fp-runs N] "
                    "[--slow-ms MS] [--slow-ms-harsh MS]\n",
                    argv[0]);
            return 2;
        }
    }
    struct swim_config d = base_config(true);
    printf("bench_swim: seed %" PRIu64 ", %u trials per row; T=%u ms, ack timeout %u ms, k=%u, "
           "alpha=%u, beta=%u, lambda=%u, S=%u; network delay 1..5 ms\n\n",
           seed, trials, d.probe_interval_ms, d.probe_timeout_ms, d.indirect_probes,
           d.suspicion_mult, d.suspicion_max_mult, d.retransmit_mult, d.lhm_max);

    printf("Detection: failure -> first suspicion (mean) and -> dead on the last live member "
           "(seconds)\n\n");
    printf("| %-28s | n  | 1st susp | all dead mean | p99 | max | bound | detected |\n", "setup");
    printf("|---|---|---|---|---|---|---|---|\n");
    uint32_t sizes[] = {3, 10, 50};
    for (int i = 0; i < 3; i++)
        detection_row(sizes[i], sizes[i] == 50 ? NK_MAX(trials / 2, 1u) : trials, seed, true, 0, 0,
                      "Lifeguard, no loss");
    for (int i = 0; i < 3; i++)
        detection_row(sizes[i], sizes[i] == 50 ? NK_MAX(trials / 2, 1u) : trials, seed, false, 0, 0,
                      "plain SWIM, no loss");

    printf("\nLoad in a calm group (Lifeguard on), per member\n\n");
    printf("| n  | packets/s | bytes/s | bytes/packet |\n|---|---|---|---|\n");
    for (int i = 0; i < 3; i++)
        load_row(sizes[i], seed, 120);

    uint32_t slows[] = {slow_ms, slow_ms_harsh};
    for (int k = 0; k < 2; k++) {
        printf("\nFalse positives: %u runs of %u s with one slow member (+%u ms each way), "
               "plain SWIM vs Lifeguard, summed; detection of a real failure under the same "
               "conditions (mean s, %u trials)\n\n",
               fp_runs, fp_s, slows[k], NK_MAX(trials / 4, 1u));
        printf("| n  | loss | slow | false dead SWIM | false dead LG | false susp SWIM | false "
               "susp LG | detect SWIM | detect LG | max LHM |\n");
        printf("|---|---|---|---|---|---|---|---|---|---|\n");
        uint32_t fps[] = {10, 50};
        uint32_t losses[] = {50, 100};
        for (int i = 0; i < 2; i++)
            for (int j = 0; j < 2; j++)
                fp_row(fps[i], seed, losses[j], slows[k], fp_s, NK_MAX(trials / 4, 1u), fp_runs);
    }
    return 0;
}
