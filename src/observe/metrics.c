/*
 * metrics.c: the registry, striped recording and the Prometheus renderer.
 *
 * Design: registration is rare (module open, first use of a label
 * combination) and rendering happens once per scrape, so both take one mutex
 * and walk plain linked lists. Recording is the hot path and touches only the
 * metric's own memory: the caller's stripe of a counter or histogram (one
 * relaxed fetch_add per word), never the registry. A counter's value or a
 * histogram's buckets are the sums over the stripes at read time; a reader
 * racing with writers sees each word either before or after an add, never a
 * torn value, and a histogram's count is defined as the sum of its buckets so
 * that the +Inf bucket always equals _count in the exposition.
 */
#include "observe/observe.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

struct obs_series {
    struct obs_series *next;
    char *values[OBS_MAX_LABELS];
    void *metric; /* struct obs_counter / obs_gauge / obs_histogram */
};

struct obs_family {
    struct obs_registry *reg;
    enum obs_type type;
    enum obs_unit unit;
    char name[OBS_NAME_MAX];
    char help[OBS_HELP_MAX];
    char labels[OBS_MAX_LABELS][OBS_NAME_MAX];
    size_t nlabels;
    struct obs_series *head, *tail;
};

struct obs_registry {
    pthread_mutex_t mu;
    uint32_t max_families, max_series;
    uint32_t nfamilies, nseries;
    struct obs_family **families; /* max_families slots, registration order */
};

/* ---------------------------------------------------------- thread stripes */

_Thread_local uint32_t obs_tl_stripe_;
_Thread_local bool obs_tl_exclusive_;

#define SHARED_STRIPE (OBS_STRIPES - 1)
/* bit i set: exclusive stripe i has an owner (i < SHARED_STRIPE) */
static _Atomic uint32_t owned_stripes;
static pthread_key_t stripe_key;
static pthread_once_t stripe_key_once = PTHREAD_ONCE_INIT;

/*
 * Thread exit: move the thread to the shared stripe first (a later
 * destructor of another library may still record), then free the stripe.
 * The release store publishes this thread's last plain stores to the next
 * owner, whose claim is an acquire.
 */
static void stripe_release(void *arg)
{
    uint32_t stripe = (uint32_t)(uintptr_t)arg - 1;
    obs_tl_exclusive_ = false;
    obs_tl_stripe_ = SHARED_STRIPE + 1;
    atomic_fetch_and_explicit(&owned_stripes, ~(1u << stripe), memory_order_release);
}

static void stripe_key_init(void)
{
    int rc = pthread_key_create(&stripe_key, stripe_release);
    NK_ASSERT(rc == 0);
}

uint32_t obs_thread_stripe_assign_(void)
{
    pthread_once(&stripe_key_once, stripe_key_init);
    uint32_t mask = atomic_load_explicit(&owned_stripes, memory_order_relaxed);
    for (;;) {
        uint32_t free_bits = ~mask & ((1u << SHARED_STRIPE) - 1);
        if (!free_bits)
            break;
        uint32_t stripe = (uint32_t)__builtin_ctz(free_bits);
        if (atomic_compare_exchange_weak_explicit(&owned_stripes, &mask, mask | (1u << stripe),
                                                  memory_order_acquire, memory_order_relaxed)) {
            obs_tl_exclusive_ = true;
            obs_tl_stripe_ = stripe + 1;
            pthread_setspecific(stripe_key, (void *)(uintptr_t)(stripe + 1));
            return stripe + 1;
        }
    }
    obs_tl_exclusive_ = false;
    obs_tl_stripe_ = SHARED_STRIPE + 1;
    return SHARED_STRIPE + 1;
}

/* -------------------------------------------------------- histogram bounds */

uint64_t obs_hist_bucket_upper(uint32_t i)
{
    if (i >= OBS_HIST_BUCKETS)
        return UINT64_MAX;
    if (i < OBS_HIST_SUB)
        return (uint64_t)i + 1;
    uint32_t j = i - OBS_HIST_SUB;
    uint32_t k = OBS_HIST_SUB_BITS + j / OBS_HIST_SUB;
    uint32_t sub = j % OBS_HIST_SUB;
    return (UINT64_C(1) << k) + (uint64_t)(sub + 1) * (UINT64_C(1) << (k - OBS_HIST_SUB_BITS));
}

/* -------------------------------------------------------------- registries */

nk_status obs_registry_new(uint32_t max_families, uint32_t max_series, struct obs_registry **out)
{
    if (max_families == 0 || max_series == 0 || max_families > (1u << 20) ||
        max_series > (1u << 24))
        return nk_status_make(NK_INVALID_ARGUMENT,
                              "metrics registry bounds out of range: %u families, %u series",
                              max_families, max_series);
    struct obs_registry *r = nk_calloc(1, sizeof *r);
    pthread_mutex_init(&r->mu, NULL);
    r->max_families = max_families;
    r->max_series = max_series;
    r->families = nk_calloc(max_families, sizeof *r->families);
    *out = r;
    return NK_OK;
}

void obs_registry_free(struct obs_registry *r)
{
    if (!r)
        return;
    for (uint32_t i = 0; i < r->nfamilies; i++) {
        struct obs_family *f = r->families[i];
        struct obs_series *s = f->head;
        while (s) {
            struct obs_series *next = s->next;
            for (size_t l = 0; l < f->nlabels; l++)
                free(s->values[l]);
            free(s->metric);
            free(s);
            s = next;
        }
        free(f);
    }
    free(r->families);
    pthread_mutex_destroy(&r->mu);
    free(r);
}

static pthread_once_t default_once = PTHREAD_ONCE_INIT;
static struct obs_registry *default_registry;

static void default_init(void)
{
    nk_status s =
        obs_registry_new(OBS_DEFAULT_MAX_FAMILIES, OBS_DEFAULT_MAX_SERIES, &default_registry);
    NK_ASSERT(nk_ok(s));
}

struct obs_registry *obs_default(void)
{
    pthread_once(&default_once, default_init);
    return default_registry;
}

uint32_t obs_registry_family_count(struct obs_registry *r)
{
    pthread_mutex_lock(&r->mu);
    uint32_t n = r->nfamilies;
    pthread_mutex_unlock(&r->mu);
    return n;
}

uint32_t obs_registry_series_count(struct obs_registry *r)
{
    pthread_mutex_lock(&r->mu);
    uint32_t n = r->nseries;
    pthread_mutex_unlock(&r->mu);
    return n;
}

static bool valid_name(const char *s, bool colon_ok)
{
    if (!s || !*s || strlen(s) >= OBS_NAME_MAX)
        return false;
    for (const char *p = s; *p; p++) {
        char c = *p;
        bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
                     (colon_ok && c == ':');
        bool digit = c >= '0' && c <= '9';
        if (!alpha && !(digit && p != s))
            return false;
    }
    return true;
}

static const char *type_name(enum obs_type t)
{
    switch (t) {
    case OBS_COUNTER:
        return "counter";
    case OBS_GAUGE:
        return "gauge";
    case OBS_HISTOGRAM:
        return "histogram";
    }
    return "?";
}

nk_status obs_family_register(struct obs_registry *r, enum obs_type type, enum obs_unit unit,
                              const char *name, const char *help, const char *const *label_names,
                              size_t nlabels, struct obs_family **out)
{
    *out = NULL;
    if (type != OBS_COUNTER && type != OBS_GAUGE && type != OBS_HISTOGRAM)
        return nk_status_make(NK_INVALID_ARGUMENT, "metric %s: unknown type %d",
                              name ? name : "(null)", (int)type);
    if (!valid_name(name, true))
        return nk_status_make(NK_INVALID_ARGUMENT, "metric name \"%s\" is not a valid Prometheus "
                              "metric name", name ? name : "(null)");
    if (unit != OBS_UNIT_NONE && (type != OBS_HISTOGRAM || unit != OBS_UNIT_MICROS))
        return nk_status_make(NK_INVALID_ARGUMENT, "metric %s: a unit is for histograms only",
                              name);
    if (nlabels > OBS_MAX_LABELS)
        return nk_status_make(NK_INVALID_ARGUMENT, "metric %s: %zu labels, at most %d", name,
                              nlabels, OBS_MAX_LABELS);
    if (help && strlen(help) >= OBS_HELP_MAX)
        return nk_status_make(NK_INVALID_ARGUMENT, "metric %s: help text longer than %d bytes",
                              name, OBS_HELP_MAX - 1);
    for (size_t i = 0; i < nlabels; i++) {
        const char *l = label_names[i];
        if (!valid_name(l, false) || (l[0] == '_' && l[1] == '_'))
            return nk_status_make(NK_INVALID_ARGUMENT, "metric %s: invalid label name \"%s\"",
                                  name, l ? l : "(null)");
        if (type == OBS_HISTOGRAM && strcmp(l, "le") == 0)
            return nk_status_make(NK_INVALID_ARGUMENT,
                                  "metric %s: a histogram cannot have a label named le", name);
        for (size_t j = 0; j < i; j++)
            if (strcmp(label_names[j], l) == 0)
                return nk_status_make(NK_INVALID_ARGUMENT, "metric %s: label %s given twice",
                                      name, l);
    }

    nk_status st = NK_OK;
    pthread_mutex_lock(&r->mu);
    for (uint32_t i = 0; i < r->nfamilies; i++) {
        struct obs_family *f = r->families[i];
        if (strcmp(f->name, name) != 0)
            continue;
        bool same = f->type == type && f->unit == unit && f->nlabels == nlabels;
        for (size_t l = 0; same && l < nlabels; l++)
            same = strcmp(f->labels[l], label_names[l]) == 0;
        if (same)
            *out = f;
        else
            st = nk_status_make(NK_ALREADY_EXISTS,
                                "metric %s is already registered as a %s with other labels or "
                                "unit",
                                name, type_name(f->type));
        pthread_mutex_unlock(&r->mu);
        return st;
    }
    if (r->nfamilies >= r->max_families) {
        pthread_mutex_unlock(&r->mu);
        return nk_status_make(NK_RESOURCE_EXHAUSTED,
                              "metric %s: the registry is full (%u metric families)", name,
                              r->max_families);
    }
    struct obs_family *f = nk_calloc(1, sizeof *f);
    f->reg = r;
    f->type = type;
    f->unit = unit;
    snprintf(f->name, sizeof f->name, "%s", name);
    snprintf(f->help, sizeof f->help, "%s", help ? help : "");
    f->nlabels = nlabels;
    for (size_t l = 0; l < nlabels; l++)
        snprintf(f->labels[l], sizeof f->labels[l], "%s", label_names[l]);
    r->families[r->nfamilies++] = f;
    pthread_mutex_unlock(&r->mu);
    *out = f;
    return NK_OK;
}

static void *metric_alloc(enum obs_type type)
{
    size_t size = type == OBS_COUNTER ? sizeof(struct obs_counter)
                  : type == OBS_GAUGE ? 64 /* a whole cache line of its own */
                                      : sizeof(struct obs_histogram);
    size = (size + 63) & ~(size_t)63;
    void *p = aligned_alloc(64, size);
    if (!p)
        nk_panic("out of memory allocating a %zu-byte metric", size);
    memset(p, 0, size);
    return p;
}

static nk_status family_series(struct obs_family *f, enum obs_type want,
                               const char *const *values, void **out)
{
    *out = NULL;
    if (!f)
        return nk_status_make(NK_INVALID_ARGUMENT, "metric family is NULL");
    if (f->type != want)
        return nk_status_make(NK_INVALID_ARGUMENT, "metric %s is a %s, not a %s", f->name,
                              type_name(f->type), type_name(want));
    for (size_t l = 0; l < f->nlabels; l++) {
        if (!values || !values[l])
            return nk_status_make(NK_INVALID_ARGUMENT, "metric %s: no value for label %s",
                                  f->name, f->labels[l]);
        if (strlen(values[l]) >= OBS_LABEL_VALUE_MAX)
            return nk_status_make(NK_INVALID_ARGUMENT,
                                  "metric %s: value of label %s longer than %d bytes", f->name,
                                  f->labels[l], OBS_LABEL_VALUE_MAX - 1);
    }
    struct obs_registry *r = f->reg;
    pthread_mutex_lock(&r->mu);
    for (struct obs_series *s = f->head; s; s = s->next) {
        bool same = true;
        for (size_t l = 0; same && l < f->nlabels; l++)
            same = strcmp(s->values[l], values[l]) == 0;
        if (same) {
            *out = s->metric;
            pthread_mutex_unlock(&r->mu);
            return NK_OK;
        }
    }
    if (r->nseries >= r->max_series) {
        pthread_mutex_unlock(&r->mu);
        return nk_status_make(NK_RESOURCE_EXHAUSTED,
                              "metric %s: the registry is full (%u label combinations)", f->name,
                              r->max_series);
    }
    struct obs_series *s = nk_calloc(1, sizeof *s);
    for (size_t l = 0; l < f->nlabels; l++)
        s->values[l] = nk_strdup(values[l]);
    s->metric = metric_alloc(want);
    if (f->tail)
        f->tail->next = s;
    else
        f->head = s;
    f->tail = s;
    r->nseries++;
    *out = s->metric;
    pthread_mutex_unlock(&r->mu);
    return NK_OK;
}

nk_status obs_family_counter(struct obs_family *f, const char *const *label_values,
                             struct obs_counter **out)
{
    return family_series(f, OBS_COUNTER, label_values, (void **)out);
}

nk_status obs_family_gauge(struct obs_family *f, const char *const *label_values,
                           struct obs_gauge **out)
{
    return family_series(f, OBS_GAUGE, label_values, (void **)out);
}

nk_status obs_family_histogram(struct obs_family *f, const char *const *label_values,
                               struct obs_histogram **out)
{
    return family_series(f, OBS_HISTOGRAM, label_values, (void **)out);
}

nk_status obs_counter_register(struct obs_registry *r, const char *name, const char *help,
                               struct obs_counter **out)
{
    struct obs_family *f;
    *out = NULL;
    NK_TRY(obs_family_register(r, OBS_COUNTER, OBS_UNIT_NONE, name, help, NULL, 0, &f));
    return obs_family_counter(f, NULL, out);
}

nk_status obs_gauge_register(struct obs_registry *r, const char *name, const char *help,
                             struct obs_gauge **out)
{
    struct obs_family *f;
    *out = NULL;
    NK_TRY(obs_family_register(r, OBS_GAUGE, OBS_UNIT_NONE, name, help, NULL, 0, &f));
    return obs_family_gauge(f, NULL, out);
}

nk_status obs_histogram_register(struct obs_registry *r, enum obs_unit unit, const char *name,
                                 const char *help, struct obs_histogram **out)
{
    struct obs_family *f;
    *out = NULL;
    NK_TRY(obs_family_register(r, OBS_HISTOGRAM, unit, name, help, NULL, 0, &f));
    return obs_family_histogram(f, NULL, out);
}

/* ----------------------------------------------------------------- reading */

uint64_t obs_counter_value(const struct obs_counter *c)
{
    if (!c)
        return 0;
    uint64_t v = 0;
    for (int i = 0; i < OBS_STRIPES; i++)
        v += atomic_load_explicit(&c->stripe[i].v, memory_order_relaxed);
    return v;
}

void obs_counter_raise_to(struct obs_counter *c, uint64_t total)
{
    if (!c)
        return;
    uint64_t now = obs_counter_value(c);
    if (total > now)
        obs_counter_add(c, total - now);
}

int64_t obs_gauge_value(const struct obs_gauge *g)
{
    return g ? atomic_load_explicit(&g->v, memory_order_relaxed) : 0;
}

void obs_hist_snapshot(const struct obs_histogram *h, struct obs_hist_snapshot *out)
{
    memset(out, 0, sizeof *out);
    if (!h)
        return;
    for (int s = 0; s < OBS_STRIPES; s++) {
        const struct obs_hist_stripe *st = &h->stripe[s];
        for (uint32_t b = 0; b <= OBS_HIST_BUCKETS; b++) {
            uint64_t n = atomic_load_explicit(&st->bucket[b], memory_order_relaxed);
            out->bucket[b] += n;
            out->count += n;
        }
        out->sum += atomic_load_explicit(&st->sum, memory_order_relaxed);
    }
}

double obs_hist_quantile(const struct obs_hist_snapshot *s, double q)
{
    if (s->count == 0)
        return 0;
    if (q < 0)
        q = 0;
    if (q > 1)
        q = 1;
    double rank = q * (double)s->count;
    uint64_t cum = 0;
    for (uint32_t b = 0; b <= OBS_HIST_BUCKETS; b++) {
        if (s->bucket[b] == 0)
            continue;
        if ((double)(cum + s->bucket[b]) >= rank) {
            if (b == OBS_HIST_BUCKETS)
                return (double)OBS_HIST_MAX_BOUND;
            double lo = b == 0 ? 0 : (double)obs_hist_bucket_upper(b - 1);
            double hi = (double)obs_hist_bucket_upper(b);
            double frac = (rank - (double)cum) / (double)s->bucket[b];
            if (frac < 0)
                frac = 0;
            return lo + (hi - lo) * frac;
        }
        cum += s->bucket[b];
    }
    return (double)OBS_HIST_MAX_BOUND;
}

/* --------------------------------------------------------------- rendering */

static void put_str(struct nk_buf *b, const char *s)
{
    nk_buf_append(b, s, strlen(s));
}

static void put_fmt(struct nk_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put_fmt(struct nk_buf *b, const char *fmt, ...)
{
    char tmp[128];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    NK_ASSERT(n >= 0 && (size_t)n < sizeof tmp);
    nk_buf_append(b, tmp, (size_t)n);
}

/* HELP text escapes backslash and newline; label values also the quote. */
static void put_escaped(struct nk_buf *b, const char *s, bool quote)
{
    for (; *s; s++) {
        if (*s == '\\')
            put_str(b, "\\\\");
        else if (*s == '\n')
            put_str(b, "\\n");
        else if (quote && *s == '"')
            put_str(b, "\\\"");
        else
            nk_buf_put_u8(b, (uint8_t)*s);
    }
}

/*
 * A value in the family's unit, rendered exactly: microseconds become
 * seconds as a decimal ("0.000003", "67.108864"), never a rounded float.
 */
static void put_value(struct nk_buf *b, enum obs_unit unit, uint64_t v)
{
    if (unit != OBS_UNIT_MICROS) {
        put_fmt(b, "%" PRIu64, v);
        return;
    }
    uint64_t whole = v / 1000000, frac = v % 1000000;
    if (frac == 0) {
        put_fmt(b, "%" PRIu64, whole);
        return;
    }
    char digits[8];
    snprintf(digits, sizeof digits, "%06" PRIu64, frac);
    size_t n = 6;
    while (digits[n - 1] == '0')
        n--;
    digits[n] = 0;
    put_fmt(b, "%" PRIu64 ".%s", whole, digits);
}

/* {a="x",b="y"[,le="..."]} or nothing when there are no labels at all. */
static void put_labels(struct nk_buf *b, const struct obs_family *f, const struct obs_series *s,
                       const char *le)
{
    if (f->nlabels == 0 && !le)
        return;
    nk_buf_put_u8(b, '{');
    for (size_t l = 0; l < f->nlabels; l++) {
        if (l)
            nk_buf_put_u8(b, ',');
        put_str(b, f->labels[l]);
        put_str(b, "=\"");
        put_escaped(b, s->values[l], true);
        nk_buf_put_u8(b, '"');
    }
    if (le) {
        if (f->nlabels)
            nk_buf_put_u8(b, ',');
        put_str(b, "le=\"");
        put_str(b, le);
        nk_buf_put_u8(b, '"');
    }
    nk_buf_put_u8(b, '}');
}

static void render_histogram(struct nk_buf *b, const struct obs_family *f,
                             const struct obs_series *s)
{
    struct obs_hist_snapshot snap;
    obs_hist_snapshot(s->metric, &snap);
    uint64_t cum = 0;
    for (uint32_t i = 0; i < OBS_HIST_BUCKETS; i++) {
        cum += snap.bucket[i];
        struct nk_buf le;
        nk_buf_init(&le);
        put_value(&le, f->unit, obs_hist_bucket_upper(i));
        nk_buf_put_u8(&le, 0);
        put_str(b, f->name);
        put_str(b, "_bucket");
        put_labels(b, f, s, (const char *)le.data);
        put_fmt(b, " %" PRIu64 "\n", cum);
        nk_buf_free(&le);
    }
    put_str(b, f->name);
    put_str(b, "_bucket");
    put_labels(b, f, s, "+Inf");
    put_fmt(b, " %" PRIu64 "\n", snap.count);
    put_str(b, f->name);
    put_str(b, "_sum");
    put_labels(b, f, s, NULL);
    nk_buf_put_u8(b, ' ');
    put_value(b, f->unit, snap.sum);
    nk_buf_put_u8(b, '\n');
    put_str(b, f->name);
    put_str(b, "_count");
    put_labels(b, f, s, NULL);
    put_fmt(b, " %" PRIu64 "\n", snap.count);
}

void obs_render_prometheus(struct obs_registry *r, struct nk_buf *out)
{
    pthread_mutex_lock(&r->mu);
    for (uint32_t i = 0; i < r->nfamilies; i++) {
        const struct obs_family *f = r->families[i];
        put_str(out, "# HELP ");
        put_str(out, f->name);
        nk_buf_put_u8(out, ' ');
        put_escaped(out, f->help, false);
        put_str(out, "\n# TYPE ");
        put_str(out, f->name);
        nk_buf_put_u8(out, ' ');
        put_str(out, type_name(f->type));
        nk_buf_put_u8(out, '\n');
        for (const struct obs_series *s = f->head; s; s = s->next) {
            switch (f->type) {
            case OBS_COUNTER:
                put_str(out, f->name);
                put_labels(out, f, s, NULL);
                put_fmt(out, " %" PRIu64 "\n", obs_counter_value(s->metric));
                break;
            case OBS_GAUGE:
                put_str(out, f->name);
                put_labels(out, f, s, NULL);
                put_fmt(out, " %" PRId64 "\n", obs_gauge_value(s->metric));
                break;
            case OBS_HISTOGRAM:
                render_histogram(out, f, s);
                break;
            }
        }
    }
    pthread_mutex_unlock(&r->mu);
}

void obs_registry_visit(struct obs_registry *r, obs_visit_fn fn, void *ctx)
{
    pthread_mutex_lock(&r->mu);
    for (uint32_t i = 0; i < r->nfamilies; i++) {
        const struct obs_family *f = r->families[i];
        struct obs_series_view v = {.family = f->name, .help = f->help, .type = f->type,
                                    .unit = f->unit, .nlabels = f->nlabels};
        for (size_t l = 0; l < f->nlabels; l++)
            v.label_names[l] = f->labels[l];
        for (const struct obs_series *s = f->head; s; s = s->next) {
            for (size_t l = 0; l < f->nlabels; l++)
                v.label_values[l] = s->values[l];
            v.metric = s->metric;
            fn(ctx, &v);
        }
    }
    pthread_mutex_unlock(&r->mu);
}
