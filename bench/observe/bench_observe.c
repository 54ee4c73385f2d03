/*
 * bench_observe: the cost of one metric operation (issue 15's goal: under
 * 100 ns), against what a C programmer would otherwise write: one shared
 * C11 atomic counter (atomic_fetch_add) and a mutex-protected counter.
 * Every variant does the same number of operations on one shared metric
 * from T threads; the figure is wall time per operation per thread.
 *
 *   build/bench/observe/bench_observe [ops_per_thread]   (default 20000000)
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "observe/observe.h"

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

enum variant {
    V_COUNTER,
    V_GAUGE,
    V_HIST,
    V_HIST_SINCE,
    V_ATOMIC,
    V_MUTEX,
    V_EVENT,
    V_COUNT
};
static const char *const names[V_COUNT] = {
    "obs_counter_inc",      "obs_gauge_add",  "obs_hist_observe",
    "obs_hist_observe_since (incl. clock)", "C11 atomic_fetch_add (shared)",
    "pthread mutex counter", "obs_event_emit (mutex + format)"};

static struct obs_counter *counter;
static struct obs_gauge *gauge;
static struct obs_histogram *hist;
static _Atomic uint64_t plain_atomic;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static uint64_t mutex_count;
static struct obs_events *ring;

struct job {
    enum variant v;
    uint64_t ops;
    pthread_barrier_t *start;
};

static void *run(void *arg)
{
    struct job *j = arg;
    pthread_barrier_wait(j->start);
    uint64_t n = j->ops;
    switch (j->v) {
    case V_COUNTER:
        for (uint64_t i = 0; i < n; i++)
            obs_counter_inc(counter);
        break;
    case V_GAUGE:
        for (uint64_t i = 0; i < n; i++)
            obs_gauge_add(gauge, 1);
        break;
    case V_HIST:
        for (uint64_t i = 0; i < n; i++)
            obs_hist_observe(hist, (i & 4095) + 1);
        break;
    case V_HIST_SINCE: {
        uint64_t t0 = nk_mono_ns();
        for (uint64_t i = 0; i < n; i++)
            obs_hist_observe_since(hist, t0);
        break;
    }
    case V_ATOMIC:
        for (uint64_t i = 0; i < n; i++)
            atomic_fetch_add_explicit(&plain_atomic, 1, memory_order_relaxed);
        break;
    case V_MUTEX:
        for (uint64_t i = 0; i < n; i++) {
            pthread_mutex_lock(&mu);
            mutex_count++;
            pthread_mutex_unlock(&mu);
        }
        break;
    case V_EVENT:
        for (uint64_t i = 0; i < n; i++)
            obs_event_emit(ring, OBS_EV_INFO, (uint32_t)i, "event %llu", (unsigned long long)i);
        break;
    default: break;
    }
    return NULL;
}

static double measure(enum variant v, int threads, uint64_t ops)
{
    pthread_t th[16];
    struct job jobs[16];
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, (unsigned)threads + 1);
    for (int t = 0; t < threads; t++) {
        jobs[t] = (struct job){v, ops, &start};
        pthread_create(&th[t], NULL, run, &jobs[t]);
    }
    pthread_barrier_wait(&start);
    uint64_t t0 = now_ns();
    for (int t = 0; t < threads; t++)
        pthread_join(th[t], NULL);
    uint64_t dt = now_ns() - t0;
    pthread_barrier_destroy(&start);
    return (double)dt / (double)ops; /* per operation, per thread */
}

int main(int argc, char **argv)
{
    uint64_t ops = argc > 1 ? strtoull(argv[1], NULL, 10) : 20000000ull;
    struct obs_registry *r;
    nk_status s = obs_registry_new(16, 16, &r);
    if (!nk_ok(s))
        return 1;
    obs_counter_register(r, "bench_total", NULL, &counter);
    obs_gauge_register(r, "bench_gauge", NULL, &gauge);
    obs_histogram_register(r, OBS_UNIT_MICROS, "bench_seconds", NULL, &hist);
    obs_events_new(4096, &ring);
    printf("bench_observe: %llu operations per thread on one shared metric; ns per operation "
           "(wall time / operations of one thread)\n\n",
           (unsigned long long)ops);
    int tcounts[] = {1, 2, 4};
    printf("%-40s %10s %10s %10s   %s\n", "operation", "1 thread", "2 threads", "4 threads",
           "vs atomic_fetch_add (1 / 2 / 4 threads)");
    double base[3];
    for (int i = 0; i < 3; i++)
        base[i] = measure(V_ATOMIC, tcounts[i], ops);
    for (int v = 0; v < V_COUNT; v++) {
        double ns[3];
        uint64_t n = v == V_EVENT ? ops / 20 : ops; /* events are slower: fewer of them */
        for (int i = 0; i < 3; i++)
            ns[i] = v == V_ATOMIC ? base[i] : measure((enum variant)v, tcounts[i], n);
        printf("%-40s %10.1f %10.1f %10.1f   %.2fx / %.2fx / %.2fx\n", names[v], ns[0], ns[1],
               ns[2], ns[0] / base[0], ns[1] / base[1], ns[2] / base[2]);
    }
    /* the totals prove no update was lost */
    uint64_t want = ops * (1 + 2 + 4);
    printf("\ncounter total %llu (expected %llu): %s\n",
           (unsigned long long)obs_counter_value(counter), (unsigned long long)want,
           obs_counter_value(counter) == want ? "no update lost" : "UPDATES LOST");
    obs_events_free(ring);
    obs_registry_free(r);
    return obs_counter_value(counter) == want ? 0 : 1;
}
