/*
 * trace.c: request traces (observe.h, "tracing"): W3C traceparent parsing,
 * the sampling decision, span bookkeeping and the bounded ring the OTLP
 * exporter drains.
 */
#include "observe/observe.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

/* --------------------------------------------------------- traceparent */

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1; /* W3C: lower-case only */
}

static bool hex_bytes(const char *s, uint8_t *out, size_t n)
{
    bool nonzero = false;
    for (size_t i = 0; i < n; i++) {
        int h = hexval(s[2 * i]), l = hexval(s[2 * i + 1]);
        if (h < 0 || l < 0)
            return false;
        out[i] = (uint8_t)(h << 4 | l);
        nonzero |= out[i] != 0;
    }
    return nonzero;
}

bool obs_traceparent_parse(const char *s, size_t len, uint8_t trace_id[16], uint8_t parent_id[8],
                           uint8_t *flags)
{
    /* version(2) - trace-id(32) - parent-id(16) - flags(2) = 55 characters */
    if (!s || len < 55)
        return false;
    if (hexval(s[0]) < 0 || hexval(s[1]) < 0)
        return false;
    uint8_t version = (uint8_t)(hexval(s[0]) << 4 | hexval(s[1]));
    if (version == 0xff)
        return false;
    /* version 00 is exactly 55 characters; later versions may append "-..." */
    if ((version == 0 && len != 55) || (version != 0 && len > 55 && s[55] != '-'))
        return false;
    if (s[2] != '-' || s[35] != '-' || s[52] != '-')
        return false;
    if (!hex_bytes(s + 3, trace_id, 16) || !hex_bytes(s + 36, parent_id, 8))
        return false;
    if (hexval(s[53]) < 0 || hexval(s[54]) < 0)
        return false;
    *flags = (uint8_t)(hexval(s[53]) << 4 | hexval(s[54]));
    return true;
}

/* ------------------------------------------------------------ sampling */

static _Atomic bool g_enabled;
static _Atomic uint64_t g_threshold; /* sample when a random u64 < threshold */

void obs_tracing_configure(bool enabled, double ratio)
{
    if (!(ratio >= 0))
        ratio = 0;
    if (ratio > 1)
        ratio = 1;
    uint64_t th = ratio >= 1 ? UINT64_MAX : (uint64_t)(ratio * 18446744073709551616.0);
    atomic_store(&g_threshold, th);
    atomic_store(&g_enabled, enabled);
}

bool obs_tracing_enabled(void)
{
    return atomic_load_explicit(&g_enabled, memory_order_relaxed);
}

/* A per-thread xorshift64* seeded from the kernel: ids need to be unique,
 * not secret. */
static _Thread_local uint64_t tl_rng;

static uint64_t rnd(void)
{
    if (NK_UNLIKELY(tl_rng == 0)) {
        uint64_t seed = 0;
        if (getrandom(&seed, sizeof seed, GRND_NONBLOCK) != (ssize_t)sizeof seed)
            seed = nk_mono_ns() ^ (uint64_t)(uintptr_t)&tl_rng;
        tl_rng = seed ? seed : 0x9E3779B97F4A7C15ull;
    }
    uint64_t x = tl_rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    tl_rng = x;
    return x * 0x2545F4914F6CDD1Dull;
}

static void rnd_id(uint8_t *out, size_t n)
{
    for (size_t i = 0; i < n; i += 8) {
        uint64_t v = rnd();
        size_t k = n - i < 8 ? n - i : 8;
        memcpy(out + i, &v, k);
    }
    if (out[0] == 0)
        out[0] = 1; /* all-zero ids are invalid */
}

struct obs_trace *obs_trace_begin(const char *traceparent, size_t len, const char *name,
                                  uint64_t start_ns)
{
    if (!obs_tracing_enabled())
        return NULL;
    uint8_t tid[16], pid[8], flags = 0;
    bool parent = traceparent && obs_traceparent_parse(traceparent, len, tid, pid, &flags);
    if (parent) {
        if (!(flags & 1))
            return NULL; /* the caller did not sample it */
    } else {
        uint64_t th = atomic_load_explicit(&g_threshold, memory_order_relaxed);
        if (th == 0 || (th != UINT64_MAX && rnd() >= th))
            return NULL;
        rnd_id(tid, 16);
    }
    struct obs_trace *t = nk_calloc(1, sizeof *t);
    memcpy(t->trace_id, tid, 16);
    t->nspans = 1;
    struct obs_span *root = &t->spans[0];
    rnd_id(root->span_id, 8);
    if (parent)
        memcpy(root->parent_id, pid, 8);
    root->name = name;
    root->kind = OBS_SPAN_SERVER;
    root->start_ns = start_ns;
    return t;
}

struct obs_span *obs_trace_span(struct obs_trace *t, uint32_t parent, const char *name,
                                uint64_t start_ns, uint64_t end_ns)
{
    if (!t || t->nspans >= OBS_TRACE_MAX_SPANS || parent >= t->nspans)
        return NULL;
    struct obs_span *s = &t->spans[t->nspans++];
    memset(s, 0, sizeof *s);
    rnd_id(s->span_id, 8);
    memcpy(s->parent_id, t->spans[parent].span_id, 8);
    s->name = name;
    s->kind = OBS_SPAN_INTERNAL;
    s->start_ns = start_ns;
    s->end_ns = end_ns < start_ns ? start_ns : end_ns;
    return s;
}

void obs_span_attr(struct obs_span *s, const char *key, const char *fmt, ...)
{
    if (!s || s->nattrs >= OBS_TRACE_MAX_ATTRS)
        return;
    s->attr_key[s->nattrs] = key;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->attr_val[s->nattrs], OBS_TRACE_ATTR_MAX, fmt, ap);
    va_end(ap);
    s->nattrs++;
}

/* ---------------------------------------------------------------- ring */

static struct {
    pthread_mutex_t mu;
    struct obs_trace *v; /* OBS_TRACE_RING slots, allocated on first use */
    size_t head, n;
    uint64_t recorded, dropped;
} g_ring = {.mu = PTHREAD_MUTEX_INITIALIZER};

void obs_trace_end(struct obs_trace *t, uint64_t end_ns, bool error)
{
    if (!t)
        return;
    struct obs_span *root = &t->spans[0];
    root->end_ns = end_ns < root->start_ns ? root->start_ns : end_ns;
    root->error = error;
    pthread_mutex_lock(&g_ring.mu);
    if (!g_ring.v)
        g_ring.v = nk_calloc(OBS_TRACE_RING, sizeof *g_ring.v);
    if (g_ring.n == OBS_TRACE_RING) {
        /* the exporter is behind (or the collector is gone): the oldest go */
        g_ring.head = (g_ring.head + 1) % OBS_TRACE_RING;
        g_ring.n--;
        g_ring.dropped++;
    }
    g_ring.v[(g_ring.head + g_ring.n) % OBS_TRACE_RING] = *t;
    g_ring.n++;
    g_ring.recorded++;
    pthread_mutex_unlock(&g_ring.mu);
    free(t);
}

void obs_trace_discard(struct obs_trace *t)
{
    free(t);
}

size_t obs_traces_take(struct obs_trace *out, size_t max)
{
    pthread_mutex_lock(&g_ring.mu);
    size_t k = 0;
    while (k < max && g_ring.n) {
        out[k++] = g_ring.v[g_ring.head];
        g_ring.head = (g_ring.head + 1) % OBS_TRACE_RING;
        g_ring.n--;
    }
    pthread_mutex_unlock(&g_ring.mu);
    return k;
}

void obs_traces_counts(size_t *held, uint64_t *recorded, uint64_t *dropped)
{
    pthread_mutex_lock(&g_ring.mu);
    if (held)
        *held = g_ring.n;
    if (recorded)
        *recorded = g_ring.recorded;
    if (dropped)
        *dropped = g_ring.dropped;
    pthread_mutex_unlock(&g_ring.mu);
}

/* ----------------------------------------------------------- exemplars */

void obs_hist_observe_exemplar(struct obs_histogram *h, uint64_t v, const uint8_t trace_id[16],
                               const uint8_t span_id[8])
{
    if (!h)
        return;
    obs_hist_observe(h, v);
    struct obs_exemplar ex = {.value = v, .wall_ns = nk_wall_ms() * 1000000ull};
    memcpy(ex.trace_id, trace_id, 16);
    memcpy(ex.span_id, span_id, 8);
    while (atomic_flag_test_and_set_explicit(&h->ex_lock, memory_order_acquire)) {
    }
    h->ex = ex;
    h->has_ex = true;
    atomic_flag_clear_explicit(&h->ex_lock, memory_order_release);
}

bool obs_hist_exemplar(const struct obs_histogram *h, struct obs_exemplar *out)
{
    struct obs_histogram *m = (struct obs_histogram *)h; /* the flag only */
    while (atomic_flag_test_and_set_explicit(&m->ex_lock, memory_order_acquire)) {
    }
    bool has = m->has_ex;
    if (has)
        *out = m->ex;
    atomic_flag_clear_explicit(&m->ex_lock, memory_order_release);
    return has;
}
