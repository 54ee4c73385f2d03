/*
 * observe_test: the metrics registry (bucket math, exact totals under
 * concurrency, bounds), the Prometheus exposition parsed back by an
 * independent parser, and the event ring.
 */
#include <math.h>
#include <pthread.h>

#include "observe/observe.h"
#include "testlib.h"

/* ------------------------------------------------------- histogram buckets */

NK_TEST(histogram_bounds_start_log_linear_and_reach_past_60_seconds)
{
    static const uint64_t first[] = {1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128};
    for (uint32_t i = 0; i < NK_ARRAY_LEN(first); i++)
        NK_CHECK_EQ_U64(obs_hist_bucket_upper(i), first[i]);
    NK_CHECK_EQ_U64(obs_hist_bucket_upper(OBS_HIST_BUCKETS - 1), OBS_HIST_MAX_BOUND);
    NK_CHECK(OBS_HIST_MAX_BOUND >= UINT64_C(60000000)); /* 60 s in microseconds */
    NK_CHECK_EQ_U64(obs_hist_bucket_upper(OBS_HIST_BUCKETS), UINT64_MAX);
    /* ratio between neighbouring bounds never above 1.5 past the linear start */
    for (uint32_t i = 4; i < OBS_HIST_BUCKETS; i++) {
        double r = (double)obs_hist_bucket_upper(i) / (double)obs_hist_bucket_upper(i - 1);
        NK_CHECK(r > 1.0 && r <= 1.5);
    }
}

NK_TEST(histogram_bucket_index_puts_each_value_in_the_bucket_whose_bounds_hold_it)
{
    /* every value up to 2^17 exhaustively, then random values of every magnitude */
    for (uint64_t v = 0; v <= (1u << 17); v++) {
        uint32_t i = obs_hist_bucket_index(v);
        NK_REQUIRE(i < OBS_HIST_BUCKETS);
        NK_REQUIRE(v <= obs_hist_bucket_upper(i));
        NK_REQUIRE(i == 0 || v > obs_hist_bucket_upper(i - 1));
    }
    struct nk_rng r;
    nk_rng_seed(&r, nk_test_seed());
    for (int n = 0; n < 200000; n++) {
        uint64_t v = nk_rng_next(&r) >> nk_rng_uniform(&r, 64);
        uint32_t i = obs_hist_bucket_index(v);
        if (v > OBS_HIST_MAX_BOUND) {
            NK_REQUIRE(i == OBS_HIST_BUCKETS);
        } else {
            NK_REQUIRE(i < OBS_HIST_BUCKETS);
            NK_REQUIRE(v <= obs_hist_bucket_upper(i));
            NK_REQUIRE(i == 0 || v > obs_hist_bucket_upper(i - 1));
        }
    }
    /* the edges */
    for (uint32_t i = 0; i < OBS_HIST_BUCKETS; i++) {
        NK_CHECK_EQ_U64(obs_hist_bucket_index(obs_hist_bucket_upper(i)), i);
        NK_CHECK_EQ_U64(obs_hist_bucket_index(obs_hist_bucket_upper(i) + 1), i + 1);
    }
    NK_CHECK_EQ_U64(obs_hist_bucket_index(UINT64_MAX), OBS_HIST_BUCKETS);
}

NK_TEST(histogram_quantiles_fall_inside_the_bucket_of_the_true_quantile)
{
    struct obs_registry *reg;
    NK_REQUIRE_OK(obs_registry_new(8, 8, &reg));
    struct obs_histogram *h;
    NK_REQUIRE_OK(obs_histogram_register(reg, OBS_UNIT_MICROS, "lat_seconds", "x", &h));
    for (uint64_t v = 1; v <= 10000; v++)
        obs_hist_observe(h, v);
    struct obs_hist_snapshot s;
    obs_hist_snapshot(h, &s);
    NK_CHECK_EQ_U64(s.count, 10000);
    NK_CHECK_EQ_U64(s.sum, 10000ull * 10001 / 2);
    static const double qs[] = {0.01, 0.5, 0.9, 0.99, 0.999};
    for (size_t k = 0; k < NK_ARRAY_LEN(qs); k++) {
        double truth = qs[k] * 10000;
        uint32_t b = obs_hist_bucket_index((uint64_t)truth);
        double est = obs_hist_quantile(&s, qs[k]);
        double lo = b ? (double)obs_hist_bucket_upper(b - 1) : 0;
        NK_CHECK(est >= lo && est <= (double)obs_hist_bucket_upper(b));
    }
    struct obs_hist_snapshot empty = {0};
    NK_CHECK(obs_hist_quantile(&empty, 0.5) == 0);
    obs_hist_observe(h, UINT64_C(1) << 40); /* beyond 67 s: only +Inf */
    obs_hist_snapshot(h, &s);
    NK_CHECK_EQ_U64(s.bucket[OBS_HIST_BUCKETS], 1);
    NK_CHECK(obs_hist_quantile(&s, 1.0) == (double)OBS_HIST_MAX_BOUND);
    obs_registry_free(reg);
}

/* ------------------------------------------------------------- concurrency */

#define THREADS 6
#define PER_THREAD 300000

struct worker {
    pthread_t t;
    int id;
    struct obs_counter *c;
    struct obs_gauge *g;
    struct obs_histogram *h;
    struct obs_family *fam;
};

static void *record(void *arg)
{
    struct worker *w = arg;
    /* each thread also registers (finds) the shared labelled series itself */
    struct obs_counter *shared = NULL;
    const char *vals[] = {"put", "ok"};
    nk_status s = obs_family_counter(w->fam, vals, &shared);
    NK_ASSERT(nk_ok(s));
    for (uint64_t i = 0; i < PER_THREAD; i++) {
        obs_counter_inc(w->c);
        obs_counter_add(shared, 2);
        obs_gauge_add(w->g, (i & 1) ? -1 : 1);
        obs_hist_observe(w->h, (i % 1000) + 1);
    }
    return NULL;
}

NK_TEST(concurrent_recording_from_many_threads_loses_no_update)
{
    struct obs_registry *reg;
    NK_REQUIRE_OK(obs_registry_new(16, 64, &reg));
    struct worker w[THREADS];
    struct obs_counter *c;
    struct obs_gauge *g;
    struct obs_histogram *h;
    struct obs_family *fam;
    const char *labels[] = {"op", "outcome"};
    NK_REQUIRE_OK(obs_counter_register(reg, "ops_total", "ops", &c));
    NK_REQUIRE_OK(obs_gauge_register(reg, "inflight", "in flight", &g));
    NK_REQUIRE_OK(obs_histogram_register(reg, OBS_UNIT_MICROS, "lat_seconds", "lat", &h));
    NK_REQUIRE_OK(obs_family_register(reg, OBS_COUNTER, OBS_UNIT_NONE, "req_total", "reqs",
                                      labels, 2, &fam));
    uint64_t t0 = nk_mono_ns();
    for (int i = 0; i < THREADS; i++) {
        w[i] = (struct worker){.id = i, .c = c, .g = g, .h = h, .fam = fam};
        NK_REQUIRE(pthread_create(&w[i].t, NULL, record, &w[i]) == 0);
    }
    for (int i = 0; i < THREADS; i++)
        pthread_join(w[i].t, NULL);
    double ns = (double)(nk_mono_ns() - t0) / ((double)THREADS * PER_THREAD * 4);
    fprintf(stderr, "  (informational) %.1f ns per recording, %d threads on %ld cores\n", ns,
            THREADS, sysconf(_SC_NPROCESSORS_ONLN));

    NK_CHECK_EQ_U64(obs_counter_value(c), (uint64_t)THREADS * PER_THREAD);
    NK_CHECK(obs_gauge_value(g) == 0);
    struct obs_counter *shared;
    const char *vals[] = {"put", "ok"};
    NK_REQUIRE_OK(obs_family_counter(fam, vals, &shared));
    NK_CHECK_EQ_U64(obs_counter_value(shared), 2ull * THREADS * PER_THREAD);
    NK_CHECK_EQ_U64(obs_registry_series_count(reg), 4);

    struct obs_hist_snapshot s;
    obs_hist_snapshot(h, &s);
    NK_CHECK_EQ_U64(s.count, (uint64_t)THREADS * PER_THREAD);
    /* each thread observed 1..1000 exactly PER_THREAD/1000 times */
    uint64_t reps = (uint64_t)THREADS * (PER_THREAD / 1000);
    NK_CHECK_EQ_U64(s.sum, reps * 1000 * 1001 / 2);
    uint64_t expect[OBS_HIST_BUCKETS + 1] = {0};
    for (uint64_t v = 1; v <= 1000; v++)
        expect[obs_hist_bucket_index(v)] += reps;
    for (uint32_t b = 0; b <= OBS_HIST_BUCKETS; b++)
        NK_CHECK_EQ_U64(s.bucket[b], expect[b]);
    obs_registry_free(reg);
}

struct claimer {
    pthread_t t;
    pthread_barrier_t *bar;
    struct obs_counter *c;
    struct obs_histogram *h;
    bool exclusive;
};

static void *claim_and_record(void *arg)
{
    struct claimer *w = arg;
    w->exclusive = obs_thread_stripe_exclusive();
    if (w->bar)
        pthread_barrier_wait(w->bar); /* every claimer alive at once */
    for (int i = 0; i < 100000; i++) {
        obs_counter_inc(w->c);
        obs_hist_observe(w->h, 7);
    }
    return NULL;
}

NK_TEST(threads_beyond_the_exclusive_stripes_share_one_and_exiting_threads_free_theirs)
{
    struct obs_registry *reg;
    NK_REQUIRE_OK(obs_registry_new(4, 4, &reg));
    struct obs_counter *c;
    struct obs_histogram *h;
    NK_REQUIRE_OK(obs_counter_register(reg, "n_total", "n", &c));
    NK_REQUIRE_OK(obs_histogram_register(reg, OBS_UNIT_NONE, "h", "h", &h));
    bool main_exclusive = obs_thread_stripe_exclusive();
    enum { N = OBS_STRIPES + 4 };
    struct claimer w[N];
    pthread_barrier_t bar;
    pthread_barrier_init(&bar, NULL, N);
    for (int i = 0; i < N; i++) {
        w[i] = (struct claimer){.bar = &bar, .c = c, .h = h};
        NK_REQUIRE(pthread_create(&w[i].t, NULL, claim_and_record, &w[i]) == 0);
    }
    int exclusive = 0;
    for (int i = 0; i < N; i++) {
        pthread_join(w[i].t, NULL);
        exclusive += w[i].exclusive;
    }
    pthread_barrier_destroy(&bar);
    /* every exclusive stripe not held by this thread went to one claimer */
    NK_CHECK_EQ_U64(exclusive, OBS_STRIPES - 1 - (main_exclusive ? 1 : 0));
    NK_CHECK_EQ_U64(obs_counter_value(c), (uint64_t)N * 100000);
    /* one after another, each thread finds a freed exclusive stripe */
    for (int i = 0; i < 3 * OBS_STRIPES; i++) {
        struct claimer one = {.c = c, .h = h};
        NK_REQUIRE(pthread_create(&one.t, NULL, claim_and_record, &one) == 0);
        pthread_join(one.t, NULL);
        NK_CHECK(one.exclusive);
    }
    uint64_t total = (uint64_t)(N + 3 * OBS_STRIPES) * 100000;
    NK_CHECK_EQ_U64(obs_counter_value(c), total);
    struct obs_hist_snapshot s;
    obs_hist_snapshot(h, &s);
    NK_CHECK_EQ_U64(s.count, total);
    NK_CHECK_EQ_U64(s.bucket[obs_hist_bucket_index(7)], total);
    NK_CHECK_EQ_U64(s.sum, 7 * total);
    obs_registry_free(reg);
}

/* ------------------------------------------------------------------ bounds */

NK_TEST(registering_beyond_the_bounds_returns_resource_exhausted)
{
    struct obs_registry *reg;
    NK_REQUIRE_OK(obs_registry_new(2, 3, &reg));
    struct obs_family *f1, *f2, *f3;
    const char *l[] = {"shard"};
    NK_REQUIRE_OK(obs_family_register(reg, OBS_GAUGE, OBS_UNIT_NONE, "a", NULL, l, 1, &f1));
    NK_REQUIRE_OK(obs_family_register(reg, OBS_COUNTER, OBS_UNIT_NONE, "b", NULL, l, 1, &f2));
    nk_status s = obs_family_register(reg, OBS_COUNTER, OBS_UNIT_NONE, "c", NULL, l, 1, &f3);
    NK_CHECK(s.code == NK_RESOURCE_EXHAUSTED && f3 == NULL);
    NK_CHECK(s.msg && strstr(s.msg, "c"));
    nk_status_free(&s);
    /* an existing family is still found when the registry is full */
    struct obs_family *again;
    NK_REQUIRE_OK(obs_family_register(reg, OBS_GAUGE, OBS_UNIT_NONE, "a", NULL, l, 1, &again));
    NK_CHECK(again == f1);

    struct obs_gauge *g0, *g1, *g2, *g3;
    const char *v0[] = {"0"}, *v1[] = {"1"}, *v2[] = {"2"}, *v3[] = {"3"};
    NK_REQUIRE_OK(obs_family_gauge(f1, v0, &g0));
    NK_REQUIRE_OK(obs_family_gauge(f1, v1, &g1));
    NK_REQUIRE_OK(obs_family_gauge(f1, v2, &g2));
    s = obs_family_gauge(f1, v3, &g3);
    NK_CHECK(s.code == NK_RESOURCE_EXHAUSTED && g3 == NULL);
    nk_status_free(&s);
    struct obs_counter *c;
    s = obs_family_counter(f2, v0, &c);
    NK_CHECK(s.code == NK_RESOURCE_EXHAUSTED && c == NULL);
    nk_status_free(&s);
    /* a NULL handle (what a caller holds after RESOURCE_EXHAUSTED) records nothing */
    obs_gauge_set(g3, 5);
    obs_counter_inc(c);
    obs_hist_observe(NULL, 5);
    NK_CHECK(obs_counter_value(NULL) == 0);
    /* existing series are still found */
    struct obs_gauge *g1b;
    NK_REQUIRE_OK(obs_family_gauge(f1, v1, &g1b));
    NK_CHECK(g1b == g1);
    NK_CHECK_EQ_U64(obs_registry_series_count(reg), 3);
    NK_CHECK_EQ_U64(obs_registry_family_count(reg), 2);
    obs_registry_free(reg);
}

NK_TEST(registration_is_idempotent_and_rejects_conflicts_and_bad_names)
{
    struct obs_registry *reg;
    NK_REQUIRE_OK(obs_registry_new(16, 16, &reg));
    struct obs_counter *a, *b;
    NK_REQUIRE_OK(obs_counter_register(reg, "x_total", "help", &a));
    NK_REQUIRE_OK(obs_counter_register(reg, "x_total", "other help", &b));
    NK_CHECK(a == b);
    struct obs_gauge *g;
    nk_status s = obs_gauge_register(reg, "x_total", "help", &g);
    NK_CHECK(s.code == NK_ALREADY_EXISTS);
    nk_status_free(&s);
    struct obs_histogram *h;
    s = obs_histogram_register(reg, OBS_UNIT_MICROS, "9bad", "help", &h);
    NK_CHECK(s.code == NK_INVALID_ARGUMENT);
    nk_status_free(&s);
    s = obs_histogram_register(reg, OBS_UNIT_MICROS, "has-dash", "help", &h);
    NK_CHECK(s.code == NK_INVALID_ARGUMENT);
    nk_status_free(&s);
    struct obs_family *f;
    const char *le[] = {"le"};
    s = obs_family_register(reg, OBS_HISTOGRAM, OBS_UNIT_NONE, "h", NULL, le, 1, &f);
    NK_CHECK(s.code == NK_INVALID_ARGUMENT);
    nk_status_free(&s);
    const char *dunder[] = {"__x"};
    s = obs_family_register(reg, OBS_COUNTER, OBS_UNIT_NONE, "c", NULL, dunder, 1, &f);
    NK_CHECK(s.code == NK_INVALID_ARGUMENT);
    nk_status_free(&s);
    const char *twice[] = {"op", "op"};
    s = obs_family_register(reg, OBS_COUNTER, OBS_UNIT_NONE, "c", NULL, twice, 2, &f);
    NK_CHECK(s.code == NK_INVALID_ARGUMENT);
    nk_status_free(&s);
    s = obs_family_register(reg, OBS_COUNTER, OBS_UNIT_MICROS, "c", NULL, NULL, 0, &f);
    NK_CHECK(s.code == NK_INVALID_ARGUMENT);
    nk_status_free(&s);
    /* the wrong kind of series for a family */
    const char *op[] = {"op"};
    NK_REQUIRE_OK(obs_family_register(reg, OBS_COUNTER, OBS_UNIT_NONE, "c", NULL, op, 1, &f));
    s = obs_family_gauge(f, op, &g);
    NK_CHECK(s.code == NK_INVALID_ARGUMENT);
    nk_status_free(&s);
    s = obs_family_register(reg, OBS_COUNTER, OBS_UNIT_NONE, "c", NULL, NULL, 0, &f);
    NK_CHECK(s.code == NK_ALREADY_EXISTS);
    nk_status_free(&s);
    NK_CHECK_EQ_U64(obs_registry_family_count(reg), 2);
    obs_registry_free(reg);
}

NK_TEST(counter_raised_to_an_external_total_follows_it_and_never_goes_down)
{
    struct obs_registry *reg;
    NK_REQUIRE_OK(obs_registry_new(4, 4, &reg));
    struct obs_counter *c;
    NK_REQUIRE_OK(obs_counter_register(reg, "compaction_read_bytes_total", "x", &c));
    obs_counter_raise_to(c, 1000);
    NK_CHECK_EQ_U64(obs_counter_value(c), 1000);
    obs_counter_raise_to(c, 1500);
    NK_CHECK_EQ_U64(obs_counter_value(c), 1500);
    obs_counter_raise_to(c, 700); /* an engine reopened with smaller totals */
    NK_CHECK_EQ_U64(obs_counter_value(c), 1500);
    obs_counter_add(c, 10);
    obs_counter_raise_to(c, 1600);
    NK_CHECK_EQ_U64(obs_counter_value(c), 1600);
    obs_counter_raise_to(NULL, 5);
    obs_registry_free(reg);
}

NK_TEST(default_registry_and_ring_are_shared_by_every_caller)
{
    NK_CHECK(obs_default() == obs_default());
    NK_CHECK(obs_events_default() == obs_events_default());
    struct obs_counter *a, *b;
    NK_REQUIRE_OK(obs_counter_register(obs_default(), "observe_test_total", "t", &a));
    NK_REQUIRE_OK(obs_counter_register(obs_default(), "observe_test_total", "t", &b));
    NK_CHECK(a == b);
}

/* ------------------------------------------- Prometheus exposition, parsed */

/*
 * An independent parser of the text exposition format: comment lines must be
 * "# HELP <name> <text>" or "# TYPE <name> <type>"; HELP comes before TYPE and
 * before any sample of its family; every sample belongs to the family of the
 * last TYPE line (histograms: _bucket, _sum, _count); label values are
 * unescaped; values are floats or +Inf.
 */
#define MAXS 1024
struct sample {
    char family[64], name[80];
    int nlabels;
    char lname[6][32], lval[6][64];
    double value;
};
struct parsed {
    int n;
    struct sample s[MAXS];
    int nfam;
    char fam[32][64], help[32][256], type[32][16];
};

static bool parse_prom(const char *text, struct parsed *p, char *err, size_t errn)
{
    memset(p, 0, sizeof *p);
    int line = 0;
    char cur_family[64] = "", cur_type[16] = "", pending_help[64] = "";
    const char *at = text;
    while (*at) {
        line++;
        const char *eol = strchr(at, '\n');
        if (!eol) {
            snprintf(err, errn, "line %d: no newline at the end", line);
            return false;
        }
        char buf[512];
        size_t len = (size_t)(eol - at);
        if (len >= sizeof buf) {
            snprintf(err, errn, "line %d too long", line);
            return false;
        }
        memcpy(buf, at, len);
        buf[len] = 0;
        at = eol + 1;
        if (buf[0] == '#') {
            char name[64], rest[256] = "";
            if (sscanf(buf, "# HELP %63s %255[^\n]", name, rest) >= 1 &&
                strncmp(buf, "# HELP ", 7) == 0) {
                for (int i = 0; i < p->nfam; i++)
                    if (strcmp(p->fam[i], name) == 0) {
                        snprintf(err, errn, "line %d: family %s twice", line, name);
                        return false;
                    }
                snprintf(pending_help, sizeof pending_help, "%s", name);
                snprintf(p->help[p->nfam], sizeof p->help[0], "%s", rest);
                continue;
            }
            char type[16];
            if (sscanf(buf, "# TYPE %63s %15s", name, type) == 2) {
                if (strcmp(pending_help, name) != 0) {
                    snprintf(err, errn, "line %d: TYPE %s without HELP before it", line, name);
                    return false;
                }
                if (strcmp(type, "counter") && strcmp(type, "gauge") &&
                    strcmp(type, "histogram")) {
                    snprintf(err, errn, "line %d: unknown type %s", line, type);
                    return false;
                }
                snprintf(p->fam[p->nfam], sizeof p->fam[0], "%s", name);
                snprintf(p->type[p->nfam], sizeof p->type[0], "%s", type);
                p->nfam++;
                snprintf(cur_family, sizeof cur_family, "%s", name);
                snprintf(cur_type, sizeof cur_type, "%s", type);
                pending_help[0] = 0;
                continue;
            }
            snprintf(err, errn, "line %d: stray comment: %.100s", line, buf);
            return false;
        }
        if (p->n >= MAXS) {
            snprintf(err, errn, "too many samples");
            return false;
        }
        struct sample *s = &p->s[p->n++];
        const char *c = buf;
        size_t nl = strspn(c, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_:0123456789");
        if (nl == 0 || nl >= sizeof s->name) {
            snprintf(err, errn, "line %d: bad metric name", line);
            return false;
        }
        memcpy(s->name, c, nl);
        c += nl;
        snprintf(s->family, sizeof s->family, "%s", cur_family);
        bool ok = strcmp(s->name, cur_family) == 0 && strcmp(cur_type, "histogram") != 0;
        if (strcmp(cur_type, "histogram") == 0) {
            static const char *suffix[] = {"_bucket", "_sum", "_count"};
            for (int k = 0; k < 3; k++) {
                char want[96];
                snprintf(want, sizeof want, "%s%s", cur_family, suffix[k]);
                ok |= strcmp(want, s->name) == 0;
            }
        }
        if (!ok) {
            snprintf(err, errn, "line %d: sample %s outside family %s", line, s->name,
                     cur_family);
            return false;
        }
        if (*c == '{') {
            c++;
            while (*c != '}') {
                if (s->nlabels == 6) {
                    snprintf(err, errn, "line %d: too many labels", line);
                    return false;
                }
                size_t ln = strspn(c, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_0123456789");
                if (ln == 0 || ln >= 32 || c[ln] != '=' || c[ln + 1] != '"') {
                    snprintf(err, errn, "line %d: bad label", line);
                    return false;
                }
                memcpy(s->lname[s->nlabels], c, ln);
                c += ln + 2;
                size_t vn = 0;
                while (*c != '"') {
                    if (!*c || vn >= 63) {
                        snprintf(err, errn, "line %d: unterminated label value", line);
                        return false;
                    }
                    char ch = *c++;
                    if (ch == '\\') {
                        ch = *c++;
                        if (ch == 'n')
                            ch = '\n';
                        else if (ch != '\\' && ch != '"') {
                            snprintf(err, errn, "line %d: bad escape", line);
                            return false;
                        }
                    }
                    s->lval[s->nlabels][vn++] = ch;
                }
                c++;
                s->nlabels++;
                if (*c == ',')
                    c++;
                else if (*c != '}') {
                    snprintf(err, errn, "line %d: expected , or }", line);
                    return false;
                }
            }
            c++;
        }
        if (*c != ' ') {
            snprintf(err, errn, "line %d: no space before value", line);
            return false;
        }
        c++;
        char *end;
        if (strcmp(c, "+Inf") == 0) {
            s->value = INFINITY;
        } else {
            s->value = strtod(c, &end);
            if (end == c || *end) {
                snprintf(err, errn, "line %d: bad value \"%s\"", line, c);
                return false;
            }
        }
    }
    return true;
}

static const char *label_of(const struct sample *s, const char *name)
{
    for (int i = 0; i < s->nlabels; i++)
        if (strcmp(s->lname[i], name) == 0)
            return s->lval[i];
    return NULL;
}

static const struct sample *find(const struct parsed *p, const char *name, const char *l1,
                                 const char *v1)
{
    for (int i = 0; i < p->n; i++) {
        if (strcmp(p->s[i].name, name) != 0)
            continue;
        if (l1 && (!label_of(&p->s[i], l1) || strcmp(label_of(&p->s[i], l1), v1) != 0))
            continue;
        return &p->s[i];
    }
    return NULL;
}

NK_TEST(prometheus_exposition_parses_back_to_the_recorded_values)
{
    struct obs_registry *reg;
    NK_REQUIRE_OK(obs_registry_new(16, 64, &reg));
    struct obs_family *req, *lat, *lvl;
    const char *rl[] = {"op", "outcome"};
    NK_REQUIRE_OK(obs_family_register(reg, OBS_COUNTER, OBS_UNIT_NONE, "norikv_requests_total",
                                      "Requests by op and outcome.\nSecond \\ line.", rl, 2,
                                      &req));
    NK_REQUIRE_OK(obs_family_register(reg, OBS_HISTOGRAM, OBS_UNIT_MICROS,
                                      "norikv_request_duration_seconds", "Request latency.", rl, 2,
                                      &lat));
    const char *ll[] = {"level"};
    NK_REQUIRE_OK(obs_family_register(reg, OBS_GAUGE, OBS_UNIT_NONE, "lsm_level_bytes",
                                      "Bytes per level.", ll, 1, &lvl));
    struct obs_histogram *sizes;
    NK_REQUIRE_OK(obs_histogram_register(reg, OBS_UNIT_NONE, "batch_entries", "Entries per batch.",
                                         &sizes));

    struct obs_counter *put_ok, *get_nf, *weird;
    const char *v_put_ok[] = {"put", "ok"}, *v_get_nf[] = {"get", "NOT_FOUND"};
    const char *v_weird[] = {"a\"b\\c\nd", "ok"};
    NK_REQUIRE_OK(obs_family_counter(req, v_put_ok, &put_ok));
    NK_REQUIRE_OK(obs_family_counter(req, v_get_nf, &get_nf));
    NK_REQUIRE_OK(obs_family_counter(req, v_weird, &weird));
    obs_counter_add(put_ok, 41);
    obs_counter_inc(put_ok);
    obs_counter_add(get_nf, 7);
    obs_counter_add(weird, UINT64_C(1) << 40);

    struct obs_histogram *lput;
    NK_REQUIRE_OK(obs_family_histogram(lat, v_put_ok, &lput));
    static const uint64_t us[] = {0, 1, 3, 150, 150, 2500, 999999, 60000000, 100000000};
    uint64_t sum = 0;
    for (size_t i = 0; i < NK_ARRAY_LEN(us); i++) {
        obs_hist_observe(lput, us[i]);
        sum += us[i];
    }
    struct obs_gauge *l0, *l1;
    const char *v0[] = {"0"}, *v1[] = {"1"};
    NK_REQUIRE_OK(obs_family_gauge(lvl, v0, &l0));
    NK_REQUIRE_OK(obs_family_gauge(lvl, v1, &l1));
    obs_gauge_set(l0, 123456789);
    obs_gauge_set(l1, -5);
    obs_hist_observe(sizes, 7);
    obs_hist_observe(sizes, 200);

    struct nk_buf out;
    nk_buf_init(&out);
    obs_render_prometheus(reg, &out);
    nk_buf_put_u8(&out, 0);
    static struct parsed p;
    char err[256] = "";
    bool ok = parse_prom((const char *)out.data, &p, err, sizeof err);
    if (!ok)
        fprintf(stderr, "  parse error: %s\n%s", err, (const char *)out.data);
    NK_REQUIRE(ok);

    NK_CHECK(p.nfam == 4);
    NK_CHECK(strcmp(p.fam[0], "norikv_requests_total") == 0 && strcmp(p.type[0], "counter") == 0);
    NK_CHECK(strcmp(p.help[0], "Requests by op and outcome.\\nSecond \\\\ line.") == 0);
    NK_CHECK(strcmp(p.type[1], "histogram") == 0 && strcmp(p.type[2], "gauge") == 0);

    const struct sample *s = find(&p, "norikv_requests_total", "outcome", "NOT_FOUND");
    NK_REQUIRE(s);
    NK_CHECK(strcmp(label_of(s, "op"), "get") == 0 && s->value == 7);
    s = find(&p, "norikv_requests_total", "op", "put");
    NK_REQUIRE(s && s->value == 42);
    s = find(&p, "norikv_requests_total", "op", "a\"b\\c\nd");
    NK_REQUIRE(s && s->value == (double)(UINT64_C(1) << 40));

    /* histogram: buckets cumulative with increasing le, +Inf == _count, _sum in seconds */
    double prev_le = -1, prev_cum = 0;
    int nbuckets = 0;
    double inf_count = -1;
    for (int i = 0; i < p.n; i++) {
        const struct sample *b = &p.s[i];
        if (strcmp(b->name, "norikv_request_duration_seconds_bucket") != 0)
            continue;
        const char *le = label_of(b, "le");
        NK_REQUIRE(le && strcmp(label_of(b, "op"), "put") == 0);
        NK_CHECK(b->value >= prev_cum);
        prev_cum = b->value;
        if (strcmp(le, "+Inf") == 0) {
            inf_count = b->value;
            continue;
        }
        double lev = strtod(le, NULL);
        NK_CHECK(lev > prev_le);
        /* the rendered bound is exactly upper(i) microseconds */
        NK_CHECK(fabs(lev * 1e6 - (double)obs_hist_bucket_upper((uint32_t)nbuckets)) < 1e-6);
        /* cumulative count equals the observations <= le */
        uint64_t want = 0;
        for (size_t k = 0; k < NK_ARRAY_LEN(us); k++)
            want += us[k] <= obs_hist_bucket_upper((uint32_t)nbuckets);
        NK_CHECK_EQ_U64((uint64_t)b->value, want);
        prev_le = lev;
        nbuckets++;
    }
    NK_CHECK_EQ_U64(nbuckets, OBS_HIST_BUCKETS);
    s = find(&p, "norikv_request_duration_seconds_count", "op", "put");
    NK_REQUIRE(s);
    NK_CHECK(s->value == (double)NK_ARRAY_LEN(us) && inf_count == s->value);
    s = find(&p, "norikv_request_duration_seconds_sum", "op", "put");
    NK_REQUIRE(s);
    NK_CHECK(fabs(s->value - (double)sum / 1e6) < 1e-9);
    NK_CHECK(strstr((const char *)out.data, "le=\"0.000001\"") != NULL);
    NK_CHECK(strstr((const char *)out.data, "le=\"67.108864\"") != NULL);

    s = find(&p, "lsm_level_bytes", "level", "0");
    NK_CHECK(s && s->value == 123456789);
    s = find(&p, "lsm_level_bytes", "level", "1");
    NK_CHECK(s && s->value == -5);
    s = find(&p, "batch_entries_bucket", "le", "8");
    NK_CHECK(s && s->value == 1);
    s = find(&p, "batch_entries_sum", NULL, NULL);
    NK_CHECK(s && s->value == 207 && s->nlabels == 0);
    nk_buf_free(&out);
    obs_registry_free(reg);
}

/* ------------------------------------------------------------------ events */

NK_TEST(event_ring_overwrites_the_oldest_and_reports_what_a_reader_missed)
{
    struct obs_events *ev;
    NK_REQUIRE_OK(obs_events_new(4, &ev));
    NK_CHECK(obs_events_last_seq(ev) == 0);
    struct obs_event out[8];
    size_t n;
    uint64_t missed;
    obs_events_read(ev, 0, out, 8, &n, &missed);
    NK_CHECK(n == 0 && missed == 0);
    for (int i = 1; i <= 10; i++)
        NK_CHECK_EQ_U64(obs_event_emit(ev, OBS_EV_LEADER_CHANGE, (uint32_t)i, "leader %d", i), i);
    obs_events_read(ev, 0, out, 8, &n, &missed);
    NK_REQUIRE(n == 4);
    NK_CHECK_EQ_U64(missed, 6);
    for (size_t i = 0; i < n; i++) {
        NK_CHECK_EQ_U64(out[i].seq, 7 + i);
        NK_CHECK_EQ_U64(out[i].shard, 7 + i);
        char want[32];
        snprintf(want, sizeof want, "leader %zu", 7 + i);
        NK_CHECK(strcmp(out[i].msg, want) == 0);
        NK_CHECK(out[i].kind == OBS_EV_LEADER_CHANGE && out[i].wall_ms > 0);
    }
    obs_events_read(ev, 8, out, 8, &n, &missed);
    NK_CHECK(n == 2 && missed == 0 && out[0].seq == 9 && out[1].seq == 10);
    obs_events_read(ev, 6, out, 1, &n, &missed); /* bounded by max */
    NK_CHECK(n == 1 && out[0].seq == 7);
    obs_events_read(ev, 10, out, 8, &n, &missed);
    NK_CHECK(n == 0);
    obs_events_free(ev);
    struct obs_events *big;
    nk_status s = obs_events_new(0, &big);
    NK_CHECK(s.code == NK_INVALID_ARGUMENT);
    nk_status_free(&s);
    s = obs_events_new(OBS_EVENTS_MAX_CAPACITY + 1, &big);
    NK_CHECK(s.code == NK_INVALID_ARGUMENT);
    nk_status_free(&s);
}

NK_TEST(event_messages_are_cut_on_a_utf8_boundary_and_render_as_json)
{
    struct obs_events *ev;
    NK_REQUIRE_OK(obs_events_new(8, &ev));
    char longmsg[400];
    size_t k = 0;
    while (k + 3 < sizeof longmsg - 1) { /* "é" is 2 bytes, "€" is 3 */
        memcpy(longmsg + k, "\xe2\x82\xac", 3);
        k += 3;
    }
    longmsg[k] = 0;
    obs_event_emit(ev, OBS_EV_COMPACTION, OBS_NO_SHARD, "%s", longmsg);
    obs_event_emit(ev, OBS_EV_ERROR, 3, "bad \"quote\" \\ and\nnewline\x01");
    struct obs_event out[2];
    size_t n;
    obs_events_read(ev, 0, out, 2, &n, NULL);
    NK_REQUIRE(n == 2);
    size_t len = strlen(out[0].msg);
    NK_CHECK(len < OBS_EVENT_MSG_MAX && len % 3 == 0 && len > OBS_EVENT_MSG_MAX - 4);

    struct nk_buf b;
    nk_buf_init(&b);
    obs_event_to_json(&out[1], &b);
    nk_buf_put_u8(&b, 0);
    char want[256];
    snprintf(want, sizeof want,
             "{\"seq\":2,\"time_ms\":%" PRIu64 ",\"kind\":\"error\",\"shard\":3,\"message\":"
             "\"bad \\\"quote\\\" \\\\ and\\u000anewline\\u0001\"}",
             out[1].wall_ms);
    NK_CHECK(strcmp((const char *)b.data, want) == 0);
    nk_buf_clear(&b);
    obs_event_to_json(&out[0], &b);
    nk_buf_put_u8(&b, 0);
    NK_CHECK(strstr((const char *)b.data, "\"kind\":\"compaction\",\"shard\":null,") != NULL);
    nk_buf_free(&b);
    NK_CHECK(strcmp(obs_event_kind_name(OBS_EV_LIFECYCLE), "lifecycle") == 0);
    NK_CHECK(strcmp(obs_event_kind_name((enum obs_event_kind)999), "unknown") == 0);
    obs_events_free(ev);
}

struct emitter {
    pthread_t t;
    struct obs_events *ev;
    int id;
};

static void *emit_many(void *arg)
{
    struct emitter *e = arg;
    for (int i = 0; i < 2000; i++)
        obs_event_emit(e->ev, OBS_EV_INFO, (uint32_t)e->id, "t%d e%d", e->id, i);
    return NULL;
}

static void *emit_later(void *arg)
{
    nk_sleep_us(50000);
    obs_event_emit(arg, OBS_EV_LIFECYCLE, OBS_NO_SHARD, "ready");
    return NULL;
}

NK_TEST(concurrent_emitters_get_unique_sequence_numbers_and_waiters_wake)
{
    struct obs_events *ev;
    NK_REQUIRE_OK(obs_events_new(64, &ev));
    struct emitter em[4];
    for (int i = 0; i < 4; i++) {
        em[i] = (struct emitter){.ev = ev, .id = i};
        pthread_create(&em[i].t, NULL, emit_many, &em[i]);
    }
    for (int i = 0; i < 4; i++)
        pthread_join(em[i].t, NULL);
    NK_CHECK_EQ_U64(obs_events_last_seq(ev), 8000);
    struct obs_event out[64];
    size_t n;
    uint64_t missed;
    obs_events_read(ev, 0, out, 64, &n, &missed);
    NK_CHECK(n == 64 && missed == 8000 - 64);
    for (size_t i = 0; i < n; i++)
        NK_CHECK_EQ_U64(out[i].seq, 8000 - 63 + i);
    /* per emitter, the surviving events are in its emission order */
    int lastseen[4] = {-1, -1, -1, -1};
    for (size_t i = 0; i < n; i++) {
        int t, e;
        NK_REQUIRE(sscanf(out[i].msg, "t%d e%d", &t, &e) == 2 && t >= 0 && t < 4);
        NK_CHECK(e > lastseen[t]);
        lastseen[t] = e;
    }

    uint64_t t0 = nk_mono_ns();
    NK_CHECK(!obs_events_wait(ev, 8000, 30));
    NK_CHECK(nk_mono_ns() - t0 >= 29000000ull);
    NK_CHECK(obs_events_wait(ev, 7999, 0));
    pthread_t t;
    pthread_create(&t, NULL, emit_later, ev);
    NK_CHECK(obs_events_wait(ev, 8000, 10000));
    pthread_join(t, NULL);
    NK_CHECK_EQ_U64(obs_events_last_seq(ev), 8001);
    obs_events_free(ev);
}
