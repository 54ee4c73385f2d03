/*
 * trace_test.c: W3C traceparent parsing, the sampling decision, the bounded
 * trace ring and exemplars (observe.h, "tracing").
 */
#include "observe/observe.h"
#include "testlib.h"

static bool parse(const char *s, uint8_t tid[16], uint8_t pid[8], uint8_t *flags)
{
    return obs_traceparent_parse(s, strlen(s), tid, pid, flags);
}

NK_TEST(traceparent_parses_the_w3c_form_and_refuses_every_malformed_one)
{
    uint8_t tid[16], pid[8], fl;
    NK_REQUIRE(parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", tid, pid, &fl));
    NK_CHECK(tid[0] == 0x4b && tid[15] == 0x36 && pid[0] == 0x00 && pid[7] == 0xb7 && fl == 1);
    /* a later version may append fields after a dash */
    NK_CHECK(parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-extra", tid, pid, &fl));
    NK_CHECK(fl == 0);
    static const char *const bad[] = {
        "",
        "garbage",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-", /* v00 is exactly 55 */
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",  /* upper-case hex */
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",  /* zero trace id */
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",  /* zero span id */
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  /* version ff */
        "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",
        "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00x",
    };
    for (size_t i = 0; i < NK_ARRAY_LEN(bad); i++)
        NK_CHECK(!parse(bad[i], tid, pid, &fl));
    NK_CHECK(!obs_traceparent_parse(NULL, 0, tid, pid, &fl));
}

NK_TEST(requests_are_traced_only_when_tracing_is_on_and_sampled)
{
    const char *on = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    const char *off = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
    obs_tracing_configure(false, 1.0);
    NK_CHECK(obs_trace_begin(on, strlen(on), "x", 1) == NULL);
    obs_tracing_configure(true, 0.0);
    NK_CHECK(obs_trace_begin(off, strlen(off), "x", 1) == NULL); /* the caller said no */
    NK_CHECK(obs_trace_begin(NULL, 0, "x", 1) == NULL);          /* ratio 0 */
    NK_CHECK(obs_trace_begin("junk", 4, "x", 1) == NULL);        /* ignored, ratio 0 */
    struct obs_trace *t = obs_trace_begin(on, strlen(on), "x", 1);
    NK_REQUIRE(t != NULL);
    /* the caller's trace continues: same trace id, its span is our parent */
    NK_CHECK(t->trace_id[0] == 0x4b && t->spans[0].parent_id[7] == 0xb7);
    NK_CHECK(t->spans[0].kind == OBS_SPAN_SERVER && t->nspans == 1);
    obs_trace_discard(t);
    /* a ratio samples about that share of root requests, each a new trace */
    obs_tracing_configure(true, 0.25);
    int n = 0;
    uint8_t prev[16] = {0};
    for (int i = 0; i < 20000; i++) {
        struct obs_trace *r = obs_trace_begin(NULL, 0, "x", 1);
        if (r) {
            n++;
            NK_CHECK(memcmp(r->trace_id, prev, 16) != 0);
            memcpy(prev, r->trace_id, 16);
            obs_trace_discard(r);
        }
    }
    NK_CHECK(n > 4000 && n < 6000);
    obs_tracing_configure(true, 1.0);
    struct obs_trace *all = obs_trace_begin(NULL, 0, "x", 1);
    NK_CHECK(all != NULL);
    obs_trace_discard(all);
    obs_tracing_configure(false, 0);
}

NK_TEST(spans_are_children_of_the_root_and_a_full_trace_drops_spans_not_the_request)
{
    obs_tracing_configure(true, 1.0);
    struct obs_trace *t = obs_trace_begin(NULL, 0, "root", 100);
    NK_REQUIRE(t != NULL);
    for (int i = 1; i < OBS_TRACE_MAX_SPANS; i++) {
        struct obs_span *s = obs_trace_span(t, 0, "child", 100 + i, 99); /* end < start */
        NK_REQUIRE(s != NULL);
        NK_CHECK(memcmp(s->parent_id, t->spans[0].span_id, 8) == 0);
        NK_CHECK(s->end_ns == s->start_ns);
        for (int a = 0; a < OBS_TRACE_MAX_ATTRS + 2; a++)
            obs_span_attr(s, "k", "%0200d", a); /* extra attributes and long values are cut */
        NK_CHECK(s->nattrs == OBS_TRACE_MAX_ATTRS);
        NK_CHECK(strlen(s->attr_val[0]) == OBS_TRACE_ATTR_MAX - 1);
    }
    NK_CHECK(obs_trace_span(t, 0, "one too many", 1, 2) == NULL);
    NK_CHECK(obs_trace_span(t, 99, "bad parent", 1, 2) == NULL);
    obs_trace_discard(t);
    obs_tracing_configure(false, 0);
}

NK_TEST(the_trace_ring_keeps_the_newest_and_counts_what_it_dropped)
{
    obs_tracing_configure(true, 1.0);
    struct obs_trace out[OBS_TRACE_RING];
    while (obs_traces_take(out, OBS_TRACE_RING) > 0) {
    }
    uint64_t rec0, drop0;
    obs_traces_counts(NULL, &rec0, &drop0);
    size_t total = OBS_TRACE_RING + 37;
    for (size_t i = 0; i < total; i++) {
        struct obs_trace *t = obs_trace_begin(NULL, 0, "r", 10);
        NK_REQUIRE(t != NULL);
        t->spans[0].attr_key[0] = "i";
        snprintf(t->spans[0].attr_val[0], OBS_TRACE_ATTR_MAX, "%zu", i);
        t->spans[0].nattrs = 1;
        obs_trace_end(t, 20, false);
    }
    size_t held;
    uint64_t rec, drop;
    obs_traces_counts(&held, &rec, &drop);
    NK_CHECK(held == OBS_TRACE_RING);
    NK_CHECK(rec - rec0 == total && drop - drop0 == 37);
    size_t n = obs_traces_take(out, OBS_TRACE_RING);
    NK_CHECK(n == OBS_TRACE_RING);
    /* oldest first, and the 37 oldest went */
    NK_CHECK(strcmp(out[0].spans[0].attr_val[0], "37") == 0);
    char last[32];
    snprintf(last, sizeof last, "%zu", total - 1);
    NK_CHECK(strcmp(out[n - 1].spans[0].attr_val[0], last) == 0);
    NK_CHECK(out[0].spans[0].end_ns == 20);
    NK_CHECK(obs_traces_take(out, 1) == 0);
    obs_tracing_configure(false, 0);
}

NK_TEST(a_histogram_keeps_the_newest_traced_observation_as_its_exemplar)
{
    struct obs_registry *r;
    NK_REQUIRE_OK(obs_registry_new(8, 8, &r));
    struct obs_histogram *h;
    NK_REQUIRE_OK(obs_histogram_register(r, OBS_UNIT_MICROS, "x_seconds", "x", &h));
    struct obs_exemplar ex;
    obs_hist_observe(h, 5);
    NK_CHECK(!obs_hist_exemplar(h, &ex));
    uint8_t tid[16] = {1, 2, 3}, sid[8] = {9, 8, 7};
    obs_hist_observe_exemplar(h, 1234, tid, sid);
    tid[0] = 42;
    obs_hist_observe_exemplar(h, 77, tid, sid);
    NK_REQUIRE(obs_hist_exemplar(h, &ex));
    NK_CHECK(ex.value == 77 && ex.trace_id[0] == 42 && ex.span_id[0] == 9 && ex.wall_ns > 0);
    struct obs_hist_snapshot s;
    obs_hist_snapshot(h, &s);
    NK_CHECK(s.count == 3 && s.sum == 5 + 1234 + 77); /* exemplars are observations too */
    obs_hist_observe_exemplar(NULL, 1, tid, sid);   /* a NULL handle does nothing */
    obs_registry_free(r);
}

