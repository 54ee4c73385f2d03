/*
 * events_typed_test.c: the typed fields of events (the VizEvent of
 * docs/observability.md), kind names, and the ring's bounds as /events
 * relies on them.
 */
#include "observe/observe.h"
#include "testlib.h"

static char *json_of(const struct obs_event *e)
{
    struct nk_buf b;
    nk_buf_init(&b);
    obs_event_to_json(e, &b);
    nk_buf_put_u8(&b, 0);
    char *s = strdup((const char *)b.data);
    nk_buf_free(&b);
    return s;
}

NK_TEST(only_the_typed_fields_that_are_set_appear_in_the_json)
{
    struct obs_events *ev;
    NK_REQUIRE(nk_ok(obs_events_new(8, &ev)));
    struct obs_event_attrs a = {.set = OBS_ATTR_LEVEL | OBS_ATTR_OUT_LEVEL | OBS_ATTR_BYTES_IN |
                                       OBS_ATTR_DURATION,
                                .level = 0, .out_level = 1, .bytes_in = 4096,
                                .duration_us = 77, .bytes_out = 999 /* not set: not shown */};
    obs_attrs_set_node(&a, "n\"1");
    obs_event_emit_attrs(ev, OBS_EV_COMPACTION, OBS_NO_SHARD, &a, "compaction %d", 1);
    obs_event_emit(ev, OBS_EV_FLUSH, 3, "plain");
    struct obs_event out[2];
    size_t n = 0;
    obs_events_read(ev, 0, out, 2, &n, NULL);
    NK_REQUIRE(n == 2);
    char *j = json_of(&out[0]);
    NK_CHECK(strstr(j, "\"kind\":\"compaction\"") != NULL);
    NK_CHECK(strstr(j, "\"level\":0,\"out_level\":1") != NULL);
    NK_CHECK(strstr(j, "\"bytes_in\":4096") != NULL);
    NK_CHECK(strstr(j, "\"duration_us\":77") != NULL);
    NK_CHECK(strstr(j, "bytes_out") == NULL);
    NK_CHECK(strstr(j, "\"node\":\"n\\\"1\"") != NULL);
    NK_CHECK(j[strlen(j) - 1] == '}');
    free(j);
    j = json_of(&out[1]);
    NK_CHECK(strstr(j, "\"message\":\"plain\"}") != NULL); /* nothing after it */
    NK_CHECK(strstr(j, "\"shard\":3") != NULL);
    NK_CHECK(strstr(j, "term") == NULL);
    free(j);
    obs_events_free(ev);
}

NK_TEST(every_kind_name_parses_back_to_its_kind_and_nothing_else_does)
{
    for (int k = 0; k < OBS_EV_KIND_COUNT; k++) {
        const char *name = obs_event_kind_name((enum obs_event_kind)k);
        enum obs_event_kind got;
        NK_CHECK(obs_event_kind_parse(name, strlen(name), &got) && got == (enum obs_event_kind)k);
    }
    enum obs_event_kind got;
    NK_CHECK(!obs_event_kind_parse("Flush", 5, &got));
    NK_CHECK(!obs_event_kind_parse("flus", 4, &got));
    NK_CHECK(!obs_event_kind_parse("flushx", 6, &got));
    NK_CHECK(!obs_event_kind_parse("", 0, &got));
    NK_CHECK(!obs_event_kind_parse("flush\0", 6, &got));
}

NK_TEST(long_node_names_are_cut_on_a_utf8_boundary)
{
    struct obs_event_attrs a = {0};
    char name[200];
    memset(name, 'a', sizeof name);
    /* "é" (2 bytes) straddling the cut at OBS_ATTR_NAME_MAX-1 */
    name[OBS_ATTR_NAME_MAX - 2] = (char)0xC3;
    name[OBS_ATTR_NAME_MAX - 1] = (char)0xA9;
    name[sizeof name - 1] = 0;
    obs_attrs_set_node(&a, name);
    NK_CHECK(a.set & OBS_ATTR_NODE);
    NK_CHECK(strlen(a.node) == OBS_ATTR_NAME_MAX - 2);
}

NK_TEST(a_reader_behind_the_ring_learns_how_many_it_missed_and_memory_stays_fixed)
{
    struct obs_events *ev;
    NK_REQUIRE(nk_ok(obs_events_new(16, &ev)));
    NK_CHECK(obs_events_capacity(ev) == 16);
    for (int i = 0; i < 1000; i++)
        obs_event_emit(ev, OBS_EV_FLUSH, OBS_NO_SHARD, "e%d", i);
    struct obs_event out[32];
    size_t n = 0;
    uint64_t missed = 0;
    obs_events_read(ev, 10, out, 32, &n, &missed);
    NK_CHECK(missed == 1000 - 16 - 10);
    NK_CHECK(n == 16);
    NK_CHECK(out[0].seq == 985 && out[15].seq == 1000);
    obs_events_read(ev, 1000, out, 32, &n, &missed);
    NK_CHECK(n == 0 && missed == 0);
    obs_events_free(ev);
}
