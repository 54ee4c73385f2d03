/*
 * process.c: process metrics (resident memory, open descriptors, CPU time,
 * threads) read from /proc/self when /metrics is rendered, so they cost
 * nothing between scrapes.
 */
#include "observe/observe.h"

#include <dirent.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

struct proc_metrics {
    struct obs_gauge *rss, *fds, *threads, *max_fds, *start;
    struct obs_counter *cpu_us;
};

static struct proc_metrics pm;
static pthread_once_t pm_once = PTHREAD_ONCE_INIT;
static pthread_mutex_t pm_mu = PTHREAD_MUTEX_INITIALIZER;

static void pm_register(void)
{
    struct obs_registry *r = obs_default();
    nk_status s;
    s = obs_gauge_register(r, "norikv_process_resident_memory_bytes",
                           "Resident set size of the server process", &pm.rss);
    nk_status_free(&s);
    s = obs_gauge_register(r, "norikv_process_open_fds", "Open file descriptors", &pm.fds);
    nk_status_free(&s);
    s = obs_gauge_register(r, "norikv_process_max_fds", "The descriptor limit (RLIMIT_NOFILE)",
                           &pm.max_fds);
    nk_status_free(&s);
    s = obs_gauge_register(r, "norikv_process_threads", "Threads of the server process",
                           &pm.threads);
    nk_status_free(&s);
    s = obs_gauge_register(r, "norikv_process_start_time_seconds",
                           "Process start, seconds since the Unix epoch", &pm.start);
    nk_status_free(&s);
    s = obs_counter_register(r, "norikv_process_cpu_microseconds_total",
                             "User and system CPU time of the process", &pm.cpu_us);
    nk_status_free(&s);
    obs_gauge_set(pm.start, (int64_t)(nk_wall_ms() / 1000));
}

static int64_t count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return -1;
    int64_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n - 1; /* the directory's own descriptor */
}

void obs_process_collect(struct obs_process_sample *out)
{
    pthread_once(&pm_once, pm_register);
    struct obs_process_sample s = {0};
    long page = sysconf(_SC_PAGESIZE);
    FILE *f = fopen("/proc/self/statm", "r");
    if (f) {
        unsigned long size = 0, res = 0;
        if (fscanf(f, "%lu %lu", &size, &res) == 2)
            s.rss_bytes = (uint64_t)res * (uint64_t)(page > 0 ? page : 4096);
        fclose(f);
    }
    f = fopen("/proc/self/status", "r");
    if (f) {
        char line[256];
        while (fgets(line, sizeof line, f))
            if (strncmp(line, "Threads:", 8) == 0)
                s.threads = strtoull(line + 8, NULL, 10);
        fclose(f);
    }
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) == 0)
        s.cpu_us = (uint64_t)ru.ru_utime.tv_sec * 1000000u + (uint64_t)ru.ru_utime.tv_usec +
                   (uint64_t)ru.ru_stime.tv_sec * 1000000u + (uint64_t)ru.ru_stime.tv_usec;
    int64_t fds = count_fds();
    s.open_fds = fds > 0 ? (uint64_t)fds : 0;
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
        s.max_fds = rl.rlim_cur == RLIM_INFINITY ? 0 : (uint64_t)rl.rlim_cur;
    /* one raiser at a time (obs_counter_raise_to); callers may be concurrent */
    pthread_mutex_lock(&pm_mu);
    obs_gauge_set(pm.rss, (int64_t)s.rss_bytes);
    obs_gauge_set(pm.fds, (int64_t)s.open_fds);
    obs_gauge_set(pm.max_fds, (int64_t)s.max_fds);
    obs_gauge_set(pm.threads, (int64_t)s.threads);
    obs_counter_raise_to(pm.cpu_us, s.cpu_us);
    pthread_mutex_unlock(&pm_mu);
    if (out)
        *out = s;
}
