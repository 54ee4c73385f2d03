/*
 * swim_test.c: the SWIM core's properties in the deterministic simulator
 * (swim_sim.h). Each test prints its seed; NK_SEED=... reruns it.
 */
#include "swim_sim.h"
#include "testlib.h"

static struct swim_config test_config(void)
{
    struct swim_config c = {0};
    c.cluster = 0x6e6f72696b76ull;
    swim_config_defaults(&c);
    return c;
}

static uint64_t seeded(void)
{
    return nk_test_seed();
}

/* Starts n members that all know each other and runs until they agree. */
static bool start_converged(struct sim *m, uint32_t n)
{
    sim_start_full(m, n);
    return sim_run_until(m, 30000, sim_converged, NULL);
}

/* Fails member f at the current time and checks that every other member
 * first suspects it (at least one does) and then holds it dead, within the
 * configured bound. */
static void check_failure_detected_ex(uint32_t n, uint32_t loss_permille, uint64_t bound_factor,
                                      bool tick_at_deadline)
{
    struct swim_config c = test_config();
    struct sim m;
    sim_init(&m, n, seeded(), &c);
    m.tick_at_deadline = tick_at_deadline;
    NK_REQUIRE(start_converged(&m, n));
    m.loss_permille = loss_permille;
    uint32_t f = n / 2;
    uint64_t t0 = m.now;
    sim_pause(&m, f, true);
    uint64_t bound = swim_detection_bound_ms(&c, n) * bound_factor;
    uint64_t last = 0;
    uint32_t suspected = 0;
    while (m.now < t0 + bound && !sim_all_hold(&m, f, SWIM_DEAD))
        sim_step(&m);
    for (uint32_t o = 0; o < n; o++) {
        if (o == f)
            continue;
        size_t x = sim_ix(&m, o, f);
        NK_CHECK(m.dead_at[x] != 0);
        NK_CHECK(m.dead_at[x] <= t0 + bound);
        if (m.suspect_at[x]) {
            suspected++;
            NK_CHECK(m.suspect_at[x] <= m.dead_at[x]);
        }
        last = NK_MAX(last, m.dead_at[x]);
    }
    NK_CHECK(suspected >= 1);
    NK_CHECK_EQ_U64(m.false_dead, 0);
    fprintf(stderr,
            "  n=%u loss=%u/1000: dead everywhere after %" PRIu64 " ms (bound %" PRIu64
            " ms), %u of %u suspected first\n",
            n, loss_permille, last - t0, bound, suspected, n - 1);
    sim_free(&m);
}

static void check_failure_detected(uint32_t n, uint32_t loss_permille, uint64_t bound_factor)
{
    check_failure_detected_ex(n, loss_permille, bound_factor, false);
}

NK_TEST(failed_member_is_suspected_then_dead_on_every_member_within_the_bound)
{
    check_failure_detected(3, 0, 1);
    check_failure_detected(10, 0, 1);
    check_failure_detected(50, 0, 1);
}

NK_TEST(failed_member_is_declared_dead_everywhere_under_five_percent_loss)
{
    /* the bound assumes no loss; with 5% loss allow twice as long */
    check_failure_detected(10, 50, 2);
}

NK_TEST(ticking_only_at_next_deadline_is_enough_to_detect_within_the_bound)
{
    /* a node drives swim from a timer set to swim_next_deadline(); nothing
     * may depend on ticks in between */
    check_failure_detected_ex(10, 0, 1, true);
    check_failure_detected_ex(50, 20, 2, true);
}

NK_TEST(slow_member_within_the_timeout_budget_is_never_declared_dead)
{
    struct swim_config c = test_config();
    struct sim m;
    sim_init(&m, 10, seeded(), &c);
    NK_REQUIRE(start_converged(&m, 10));
    /* 180 ms each way on every packet to or from member 4: a round trip of
     * ~370 ms, under the 500 ms ack timeout; a ping-req path is longer, so
     * indirect probes through it sometimes fail: that must not kill it */
    m.nodes[3].slow_ms = 180;
    sim_run_for(&m, 300000);
    NK_CHECK_EQ_U64(m.false_dead, 0);
    for (uint32_t o = 0; o < 10; o++)
        NK_CHECK(m.dead_at[sim_ix(&m, o, 3)] == 0);
    NK_CHECK(sim_converged(&m, NULL));
    fprintf(stderr, "  slow member: %" PRIu64 " false suspicions, 0 false deaths in 300 s\n",
            m.false_suspect);
    sim_free(&m);
}

NK_TEST(suspected_member_that_is_alive_refutes_and_stays_alive)
{
    struct swim_config c = test_config();
    struct sim m;
    sim_init(&m, 5, seeded(), &c);
    NK_REQUIRE(start_converged(&m, 5));
    /* member 1 tells member 2 that member 3 is suspect at its incarnation */
    uint64_t inc0 = swim_incarnation(m.nodes[2].s);
    struct swim_msg msg = {.type = SWIM_MSG_ACK,
                           .cluster = c.cluster,
                           .from = 1,
                           .seq = 77,
                           .subject = 1,
                           .from_addr = nk_slice_str(m.nodes[0].addr),
                           .n_updates = 1};
    msg.updates[0] = (struct swim_update){.state = SWIM_SUSPECT,
                                          .id = 3,
                                          .incarnation = inc0,
                                          .from = 1,
                                          .addr = nk_slice_str(m.nodes[2].addr)};
    struct nk_buf b;
    nk_buf_init(&b);
    swim_msg_encode(&msg, &b);
    NK_REQUIRE_OK(swim_step(m.nodes[1].s, m.now, b.data, b.len));
    nk_buf_free(&b);
    sim_collect(&m, 1);
    NK_CHECK(sim_view(&m, 1, 2) == SWIM_SUSPECT);
    sim_run_for(&m, 60000);
    NK_CHECK(swim_incarnation(m.nodes[2].s) > inc0);
    NK_CHECK(sim_all_hold(&m, 2, SWIM_ALIVE));
    for (uint32_t o = 0; o < 5; o++)
        NK_CHECK(m.dead_at[sim_ix(&m, o, 2)] == 0);
    NK_CHECK_EQ_U64(m.false_dead, 0);
    struct swim_stats st;
    swim_stats(m.nodes[2].s, &st);
    NK_CHECK(st.refutations >= 1);
    sim_free(&m);
}

NK_TEST(briefly_paused_member_is_suspected_and_refutes_when_it_resumes)
{
    struct swim_config c = test_config();
    struct sim m;
    sim_init(&m, 6, seeded(), &c);
    NK_REQUIRE(start_converged(&m, 6));
    /* paused for 2 s: long enough to be probed and suspected, short enough
     * that its refutation spreads before the minimum suspicion timeout (4 s)
     * runs out anywhere */
    uint64_t seen = 0;
    for (int round = 0; round < 10 && !seen; round++) {
        sim_pause(&m, 4, false);
        sim_run_for(&m, 2000);
        sim_resume(&m, 4);
        sim_run_for(&m, 30000);
        seen = m.false_suspect;
    }
    NK_CHECK(seen > 0); /* it was suspected at least once */
    NK_CHECK_EQ_U64(m.false_dead, 0);
    NK_CHECK(sim_all_hold(&m, 4, SWIM_ALIVE));
    NK_CHECK(swim_incarnation(m.nodes[4].s) > 0);
    sim_free(&m);
}

NK_TEST(dead_member_that_comes_back_is_alive_again_everywhere)
{
    struct swim_config c = test_config();
    struct sim m;
    sim_init(&m, 8, seeded(), &c);
    NK_REQUIRE(start_converged(&m, 8));
    sim_pause(&m, 2, true);
    while (!sim_all_hold(&m, 2, SWIM_DEAD) && m.now < 1000000)
        sim_step(&m);
    NK_REQUIRE(sim_all_hold(&m, 2, SWIM_DEAD));
    sim_resume(&m, 2);
    NK_CHECK(sim_run_until(&m, 60000, sim_converged, NULL));
    sim_free(&m);
}

static bool leave_spread(const struct sim *m, void *arg)
{
    return swim_leave_spread(m->nodes[*(uint32_t *)arg].s);
}

NK_TEST(left_member_is_left_everywhere_and_never_dead)
{
    struct swim_config c = test_config();
    struct sim m;
    sim_init(&m, 10, seeded(), &c);
    NK_REQUIRE(start_converged(&m, 10));
    uint32_t l = 6;
    swim_leave(m.nodes[l].s, m.now);
    NK_CHECK(sim_run_until(&m, 30000, leave_spread, &l));
    /* then the process exits: nothing more from it, and it is no failure */
    m.nodes[l].running = false;
    sim_run_for(&m, swim_detection_bound_ms(&c, 10) * 2);
    NK_CHECK(sim_all_hold(&m, l, SWIM_LEFT));
    for (uint32_t o = 0; o < 10; o++)
        NK_CHECK(m.dead_at[sim_ix(&m, o, l)] == 0);
    NK_CHECK_EQ_U64(m.false_dead, 0);
    sim_free(&m);
}

static void check_join_converges(uint32_t n)
{
    struct swim_config c = test_config();
    struct sim m;
    sim_init(&m, n, seeded(), &c);
    /* member 1 is the seed; each other member knows only the seed (join) */
    uint32_t seed_ix = 0;
    sim_start(&m, 0, NULL, 0);
    for (uint32_t i = 1; i < n; i++)
        sim_start(&m, i, &seed_ix, 1);
    uint64_t t0 = m.now;
    bool ok = sim_run_until(&m, 120000, sim_converged, NULL);
    NK_CHECK(ok);
    NK_CHECK_EQ_U64(m.false_dead, 0);
    fprintf(stderr, "  %u members joining through one seed agree after %" PRIu64 " ms\n", n,
            m.now - t0);
    sim_free(&m);
}

NK_TEST(three_members_joining_through_a_seed_converge)
{
    check_join_converges(3);
}

NK_TEST(ten_members_joining_through_a_seed_converge)
{
    check_join_converges(10);
}

NK_TEST(fifty_members_joining_through_a_seed_converge)
{
    check_join_converges(50);
}

/* Churn (pauses, resumes, joins, leaves) with a small gossip buffer bounded
 * by `entries` and `bytes`; checks the bounds and that the group agrees
 * again once the churn stops. */
static void churn(uint32_t entries, uint32_t bytes)
{
    struct swim_config c = test_config();
    c.gossip_max_entries = entries;
    c.gossip_max_bytes = bytes;
    struct sim m;
    uint64_t seed = seeded();
    sim_init(&m, 60, seed, &c);
    NK_REQUIRE(start_converged(&m, 30));
    struct nk_rng r;
    nk_rng_seed(&r, seed + 1);
    uint32_t next_new = 30;
    for (int round = 0; round < 40; round++) {
        uint32_t i = (uint32_t)nk_rng_uniform(&r, m.n);
        switch (nk_rng_uniform(&r, 4)) {
        case 0: /* a member stops for a while */
            if (sim_up(&m, i))
                sim_pause(&m, i, true);
            break;
        case 1: /* and comes back */
            if (m.nodes[i].running && m.nodes[i].paused)
                sim_resume(&m, i);
            break;
        case 2: /* a new member joins through member 1 */
            if (next_new < m.cap) {
                uint32_t s0 = 0;
                sim_start(&m, next_new++, &s0, 1);
            }
            break;
        default: /* one leaves */
            if (sim_up(&m, i) && i != 0)
                swim_leave(m.nodes[i].s, m.now);
            break;
        }
        sim_run_for(&m, 1500);
    }
    /* calm: everyone paused comes back, and the group agrees again */
    for (uint32_t i = 0; i < m.n; i++)
        if (m.nodes[i].paused)
            sim_resume(&m, i);
    sim_run_for(&m, 120000);
    uint64_t dropped = 0;
    for (uint32_t i = 0; i < m.n; i++) {
        struct swim_stats st;
        swim_stats(m.nodes[i].s, &st);
        NK_CHECK(st.gossip_max_entries_seen <= c.gossip_max_entries);
        NK_CHECK(st.gossip_max_bytes_seen <= c.gossip_max_bytes);
        dropped += st.gossip_dropped;
    }
    /* members that never left agree that every other such member is alive */
    for (uint32_t j = 0; j < m.n; j++) {
        struct swim_member_info self;
        swim_member_get(m.nodes[j].s, j + 1, &self);
        if (self.state != SWIM_ALIVE)
            continue;
        for (uint32_t o = 0; o < m.n; o++) {
            struct swim_member_info me;
            swim_member_get(m.nodes[o].s, o + 1, &me);
            if (o != j && me.state == SWIM_ALIVE && sim_view(&m, o, j) != SWIM_ALIVE) {
                struct swim_stats js;
                swim_stats(m.nodes[j].s, &js);
                fprintf(stderr,
                        "  member %u holds member %u %s (its incarnation %" PRIu64
                        ", it sent %" PRIu64 " received %" PRIu64 ", knows %zu)\n",
                        o + 1, j + 1, swim_state_name(sim_view(&m, o, j)), self.incarnation,
                        js.packets_out, js.packets_in, swim_member_count(m.nodes[j].s));
                NK_CHECK(!"every alive member holds every other alive member alive");
            }
        }
    }
    fprintf(stderr,
            "  %u members after churn, buffer of %u entries / %u bytes: %" PRIu64
            " gossip entries evicted\n",
            m.n, entries, bytes, dropped);
    NK_CHECK(dropped > 0); /* the bound was reached, so it was tested */
    sim_free(&m);
}

NK_TEST(gossip_buffer_stays_within_its_bounds_under_churn)
{
    churn(12, 64 * 1024); /* the entry count binds */
    churn(256, 400);      /* the byte size binds (~9 updates) */
}

NK_TEST(same_seed_gives_the_same_run)
{
    struct swim_config c = test_config();
    uint64_t seed = seeded();
    uint64_t pk[2], by[2], st[2];
    for (int k = 0; k < 2; k++) {
        struct sim m;
        sim_init(&m, 10, seed, &c);
        m.loss_permille = 50;
        sim_start_full(&m, 10);
        sim_run_for(&m, 20000);
        sim_pause(&m, 3, true);
        sim_run_for(&m, 20000);
        pk[k] = m.packets;
        by[k] = m.bytes;
        st[k] = m.dead_at[sim_ix(&m, 0, 3)];
        sim_free(&m);
    }
    NK_CHECK_EQ_U64(pk[0], pk[1]);
    NK_CHECK_EQ_U64(by[0], by[1]);
    NK_CHECK_EQ_U64(st[0], st[1]);
}

NK_TEST(packets_of_another_cluster_or_malformed_are_refused_and_change_nothing)
{
    struct swim_config c = test_config();
    c.id = 1;
    c.addr = "10.0.0.1:9101";
    struct swim *s;
    NK_REQUIRE_OK(swim_new(&c, 0, &s));
    struct swim_msg msg = {.type = SWIM_MSG_PING,
                           .cluster = c.cluster + 1,
                           .from = 2,
                           .seq = 1,
                           .subject = 1,
                           .from_addr = nk_slice_str("10.0.0.2:9101"),
                           .n_updates = 1};
    msg.updates[0] = (struct swim_update){
        .state = SWIM_ALIVE, .id = 2, .from = 2, .addr = nk_slice_str("10.0.0.2:9101")};
    struct nk_buf b;
    nk_buf_init(&b);
    swim_msg_encode(&msg, &b);
    nk_status st = swim_step(s, 10, b.data, b.len);
    NK_CHECK(st.code == NK_FAILED_PRECONDITION && strstr(nk_status_msg(st), "cluster"));
    nk_status_free(&st);
    /* a ping for some other member id at this address (a former owner) */
    msg.cluster = c.cluster;
    msg.subject = 9;
    nk_buf_clear(&b);
    swim_msg_encode(&msg, &b);
    st = swim_step(s, 10, b.data, b.len);
    NK_CHECK(st.code == NK_FAILED_PRECONDITION);
    nk_status_free(&st);
    /* damaged bytes */
    b.data[5] ^= 1;
    st = swim_step(s, 10, b.data, b.len);
    NK_CHECK(st.code == NK_DATA_LOSS);
    nk_status_free(&st);
    NK_CHECK_EQ_U64(swim_member_count(s), 0);
    struct swim_output out;
    swim_output(s, &out);
    NK_CHECK_EQ_U64(out.n_packets, 0);
    NK_CHECK_EQ_U64(out.n_events, 0);
    nk_buf_free(&b);
    swim_free(s);
}

NK_TEST(config_errors_name_the_field)
{
    struct swim_config c = test_config();
    struct swim *s = NULL;
    nk_status st = swim_new(&c, 0, &s);
    NK_CHECK(st.code == NK_INVALID_ARGUMENT && strstr(nk_status_msg(st), "id"));
    nk_status_free(&st);
    c.id = 1;
    c.addr = "a:1";
    c.probe_timeout_ms = c.probe_interval_ms;
    st = swim_new(&c, 0, &s);
    NK_CHECK(st.code == NK_INVALID_ARGUMENT && strstr(nk_status_msg(st), "probe_timeout_ms"));
    nk_status_free(&st);
    c.probe_timeout_ms = 100;
    NK_REQUIRE_OK(swim_new(&c, 0, &s));
    st = swim_add_member(s, 1, "a:1", 0);
    NK_CHECK(st.code == NK_INVALID_ARGUMENT);
    nk_status_free(&st);
    st = swim_add_member(s, 2, "", 0);
    NK_CHECK(st.code == NK_INVALID_ARGUMENT && strstr(nk_status_msg(st), "address"));
    nk_status_free(&st);
    NK_REQUIRE_OK(swim_add_member(s, 2, "b:1", 0));
    st = swim_remove_member(s, 2);
    NK_CHECK(st.code == NK_FAILED_PRECONDITION && strstr(nk_status_msg(st), "alive"));
    nk_status_free(&st);
    swim_free(s);
}

NK_TEST(member_table_is_bounded_and_full_table_is_resource_exhausted)
{
    struct swim_config c = test_config();
    c.id = 1;
    c.addr = "a:1";
    c.max_members = 4;
    struct swim *s;
    NK_REQUIRE_OK(swim_new(&c, 0, &s));
    for (uint64_t id = 2; id <= 5; id++)
        NK_REQUIRE_OK(swim_add_member(s, id, "b:1", 0));
    nk_status st = swim_add_member(s, 6, "b:1", 0);
    NK_CHECK(st.code == NK_RESOURCE_EXHAUSTED);
    nk_status_free(&st);
    NK_CHECK_EQ_U64(swim_member_count(s), 4);
    swim_free(s);
}

static bool halves_apart(const struct sim *m, void *arg)
{
    uint32_t half = *(uint32_t *)arg;
    for (uint32_t o = 0; o < m->n; o++)
        for (uint32_t j = 0; j < m->n; j++)
            if ((o < half) != (j < half) && sim_view(m, o, j) != SWIM_DEAD)
                return false;
    return true;
}

NK_TEST(partition_that_heals_reunites_the_group)
{
    struct swim_config c = test_config();
    struct sim m;
    sim_init(&m, 10, seeded(), &c);
    NK_REQUIRE(start_converged(&m, 10));
    uint32_t half = 5;
    for (uint32_t i = half; i < 10; i++)
        m.nodes[i].group = 1;
    /* each side declares the other dead */
    NK_REQUIRE(sim_run_until(&m, swim_detection_bound_ms(&c, 10) * 2, halves_apart, &half));
    for (uint32_t i = half; i < 10; i++)
        m.nodes[i].group = 0;
    /* the once-per-round ping to a dead member carries the death across;
     * the member refutes, and everyone is alive again */
    uint64_t t0 = m.now;
    NK_CHECK(sim_run_until(&m, 120000, sim_converged, NULL));
    fprintf(stderr, "  healed partition of 10: whole again after %" PRIu64 " ms\n", m.now - t0);
    sim_free(&m);
}

static uint32_t lhm_of(const struct sim *m, uint32_t i)
{
    struct swim_stats st;
    swim_stats(m->nodes[i].s, &st);
    return st.lhm;
}

NK_TEST(local_health_rises_on_a_member_whose_probes_fail_and_recovers_after)
{
    for (int lifeguard = 0; lifeguard < 2; lifeguard++) {
        struct swim_config c = test_config();
        c.disable_lifeguard = !lifeguard;
        struct sim m;
        sim_init(&m, 6, seeded(), &c);
        NK_REQUIRE(start_converged(&m, 6));
        /* 600 ms each way: member 1's round trips (1.2 s) outlast the whole
         * 1 s period, and the helpers' nacks come too late too */
        m.nodes[0].slow_ms = 600;
        uint32_t peak = 0;
        for (int k = 0; k < 60; k++) {
            sim_run_for(&m, 1000);
            peak = NK_MAX(peak, lhm_of(&m, 0));
        }
        m.nodes[0].slow_ms = 0;
        sim_run_for(&m, 120000);
        if (lifeguard) {
            NK_CHECK(peak >= 2);
            NK_CHECK_EQ_U64(lhm_of(&m, 0), 0);
        } else {
            NK_CHECK_EQ_U64(peak, 0);
        }
        for (uint32_t i = 1; i < 6; i++)
            NK_CHECK(lhm_of(&m, i) == 0);
        fprintf(stderr, "  lifeguard %s: slow member's LHM peaked at %u\n",
                lifeguard ? "on" : "off", peak);
        sim_free(&m);
    }
}

/* Steps a packet from member `from` carrying suspect(subject) into s. */
static void inject_suspect(struct swim *s, uint64_t cluster, uint64_t from, uint64_t subject,
                           uint64_t now)
{
    char fa[32], sa[32];
    snprintf(fa, sizeof fa, "m%" PRIu64 ":1", from);
    snprintf(sa, sizeof sa, "m%" PRIu64 ":1", subject);
    struct swim_msg msg = {.type = SWIM_MSG_ACK,
                           .cluster = cluster,
                           .from = from,
                           .seq = 999,
                           .subject = from,
                           .from_addr = nk_slice_str(fa),
                           .n_updates = 1};
    msg.updates[0] = (struct swim_update){.state = SWIM_SUSPECT,
                                          .id = subject,
                                          .incarnation = 0,
                                          .from = from,
                                          .addr = nk_slice_str(sa)};
    struct nk_buf b;
    nk_buf_init(&b);
    swim_msg_encode(&msg, &b);
    nk_status st = swim_step(s, now, b.data, b.len);
    NK_ASSERT(nk_ok(st));
    nk_buf_free(&b);
}

/* Time from a suspicion of member 5 (by member 2, plus `confirmations`
 * more suspecters) until member 1 declares it dead; nobody answers member
 * 1's own probes, so its own probing can add at most one confirmation. */
static uint64_t time_to_dead(bool lifeguard, uint32_t confirmations)
{
    struct swim_config c = test_config();
    c.id = 1;
    c.addr = "m1:1";
    c.seed = 7;
    c.disable_lifeguard = !lifeguard;
    struct swim *s;
    nk_status st = swim_new(&c, 0, &s);
    NK_ASSERT(nk_ok(st));
    char a[32];
    for (uint64_t id = 2; id <= 10; id++) {
        snprintf(a, sizeof a, "m%" PRIu64 ":1", id);
        st = swim_add_member(s, id, a, 0);
        NK_ASSERT(nk_ok(st));
    }
    inject_suspect(s, c.cluster, 2, 5, 0);
    for (uint32_t k = 0; k < confirmations; k++)
        inject_suspect(s, c.cluster, 3 + k, 5, 0);
    uint64_t t = 0;
    struct swim_member_info mi;
    for (; t < 100000; t += 10) {
        swim_tick(s, t);
        swim_output_clear(s);
        swim_member_get(s, 5, &mi);
        if (mi.state == SWIM_DEAD)
            break;
    }
    swim_free(s);
    return t;
}

NK_TEST(lifeguard_suspicion_timeout_shrinks_with_independent_confirmations)
{
    /* 10 members: min = 4 s, max = 24 s, K = 3 */
    uint64_t none = time_to_dead(true, 0), three = time_to_dead(true, 3);
    uint64_t plain = time_to_dead(false, 0);
    fprintf(stderr,
            "  dead after %" PRIu64 " ms with no confirmation, %" PRIu64 " ms with 3, %" PRIu64
            " ms without Lifeguard\n",
            none, three, plain);
    NK_CHECK(none >= 14000); /* at most one confirmation (its own probe) */
    NK_CHECK(three >= 4000 && three <= 4100);
    NK_CHECK(plain >= 4000 && plain <= 4100);
}

NK_TEST(output_is_bounded_and_overflow_is_reported)
{
    struct swim_config c = test_config();
    c.id = 1;
    c.addr = "m1:1";
    c.max_out_events = 4;
    c.max_out_packets = 2;
    c.max_packet_bytes = 256; /* a SYNC of 11 members then takes several */
    struct swim *s;
    NK_REQUIRE_OK(swim_new(&c, 0, &s));
    char a[32];
    for (uint64_t id = 2; id <= 11; id++) {
        snprintf(a, sizeof a, "m%" PRIu64 ":1", id);
        NK_REQUIRE_OK(swim_add_member(s, id, a, 0));
    }
    struct swim_output out;
    swim_output(s, &out);
    NK_CHECK_EQ_U64(out.n_events, 4);
    NK_CHECK(out.events_overflowed);
    /* a SYNC request makes more datagrams than the output holds */
    struct swim_msg msg = {.type = SWIM_MSG_PING,
                           .flags = SWIM_FLAG_SYNC_REQ,
                           .cluster = c.cluster,
                           .from = 2,
                           .seq = 1,
                           .subject = 1,
                           .from_addr = nk_slice_str("m2:1")};
    struct nk_buf b;
    nk_buf_init(&b);
    swim_msg_encode(&msg, &b);
    NK_REQUIRE_OK(swim_step(s, 1, b.data, b.len));
    swim_output(s, &out);
    NK_CHECK(out.n_packets <= 2);
    struct swim_stats st;
    swim_stats(s, &st);
    NK_CHECK(st.out_dropped > 0);
    swim_output_clear(s);
    swim_output(s, &out);
    NK_CHECK(out.n_packets == 0 && out.n_events == 0 && !out.events_overflowed);
    nk_buf_free(&b);
    swim_free(s);
}

NK_TEST(restarted_member_with_a_fresh_state_rejoins_everywhere)
{
    struct swim_config c = test_config();
    struct sim m;
    sim_init(&m, 8, seeded(), &c);
    NK_REQUIRE(start_converged(&m, 8));
    /* killed, declared dead everywhere */
    sim_pause(&m, 5, true);
    while (!sim_all_hold(&m, 5, SWIM_DEAD) && m.now < 1000000)
        sim_step(&m);
    NK_REQUIRE(sim_all_hold(&m, 5, SWIM_DEAD));
    /* a new process with the same id and address, incarnation 0 again,
     * knowing only member 1 (as --join would) */
    swim_free(m.nodes[5].s);
    m.nodes[5].s = NULL;
    uint32_t seed_ix = 0;
    sim_start(&m, 5, &seed_ix, 1);
    sim_resume(&m, 5);
    NK_CHECK(sim_run_until(&m, 60000, sim_converged, NULL));
    NK_CHECK(swim_incarnation(m.nodes[5].s) > 0); /* it refuted its death */
    NK_CHECK_EQ_U64(swim_member_count(m.nodes[5].s), 7);
    sim_free(&m);
}
