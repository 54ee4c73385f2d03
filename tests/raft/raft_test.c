/*
 * raft_test.c: the rules of the Raft paper (figure 2, sections 5.1-5.4 and
 * 7), of the thesis (3.10 leadership transfer, 4 membership, 6.4 reads,
 * 9.6 pre-vote) and of NoriKV's bounds, each as a test named after the rule.
 */
#include "harness.h"

static void no_prevote(struct raft_config *c)
{
    c->disable_pre_vote = true;
}



/* ---------------------------------------------------------------- 5.2 */

NK_TEST(follower_becomes_candidate_after_election_timeout_and_requests_votes)
{
    struct tnet *t = tn_new(3, 3, 0, no_prevote);
    t->hold = true;
    struct raft *r = tn_r(t, 1);
    NK_CHECK(raft_role(r) == RAFT_FOLLOWER);
    /* randomized timeout is in [10, 20) ticks */
    for (int i = 0; i < 19 && raft_role(r) == RAFT_FOLLOWER; i++)
        raft_tick(r);
    NK_CHECK(raft_role(r) == RAFT_CANDIDATE);
    NK_CHECK_EQ_U64(raft_term(r), 1);
    tn_ready(t, 1);
    NK_CHECK_EQ_U64(t->sent[RAFT_MSG_VOTE], 2);
    struct raft_hard_state hs;
    raft_memstorage_hard_state(t->nodes[1].ms, &hs);
    NK_CHECK_EQ_U64(hs.vote, 1); /* voted for itself, durably */
    NK_CHECK_EQ_U64(hs.term, 1);
    tn_free(t);
}

NK_TEST(randomized_election_timeouts_differ_between_nodes_and_stay_in_range)
{
    int fired_at[6] = {0};
    for (int id = 1; id <= 5; id++) {
        struct tnet *t = tn_new(5, 5, 0, no_prevote);
        t->hold = true;
        struct raft *r = tn_r(t, id);
        int k = 0;
        while (raft_role(r) == RAFT_FOLLOWER && k < 100) {
            raft_tick(r);
            k++;
        }
        NK_CHECK(k >= 10 && k < 20);
        fired_at[id] = k;
        tn_free(t);
    }
    bool differ = false;
    for (int id = 2; id <= 5; id++)
        differ |= fired_at[id] != fired_at[1];
    NK_CHECK(differ);
}

NK_TEST(candidate_with_majority_becomes_leader_and_appends_noop)
{
    struct tnet *t = tn_new(3, 3, 0, NULL);
    tn_elect(t, 1);
    struct raft *r = tn_r(t, 1);
    NK_CHECK(raft_role(r) == RAFT_LEADER);
    NK_CHECK_EQ_U64(raft_term(r), 1);
    uint64_t term;
    NK_REQUIRE_OK(raft_log_term(r, 1, &term));
    NK_CHECK_EQ_U64(term, 1);
    NK_CHECK_EQ_U64(raft_commit_index(r), 1); /* the no-op commits */
    for (int i = 2; i <= 3; i++) {
        NK_CHECK_EQ_U64(raft_lead(tn_r(t, i)), 1);
        NK_CHECK_EQ_U64(raft_commit_index(tn_r(t, i)), 1);
    }
    tn_free(t);
}

NK_TEST(node_grants_at_most_one_vote_per_term)
{
    struct tnet *t = tn_new(3, 3, 0, no_prevote);
    struct raft *r = tn_r(t, 3);
    struct raft_msg v = {.type = RAFT_MSG_VOTE, .from = 1, .to = 3, .term = 5};
    tn_tick_all(t, 0);
    /* outside any leader lease: tick past the election timeout first */
    for (int i = 0; i < 10; i++)
        raft_tick(r);
    (void)raft_step(r, &v);
    v.from = 2;
    (void)raft_step(r, &v);
    struct raft_ready rd;
    raft_ready(r, &rd);
    int granted = 0, rejected = 0;
    for (size_t i = 0; i < rd.n_msgs; i++)
        if (rd.msgs[i].type == RAFT_MSG_VOTE_RESP) {
            if (rd.msgs[i].reject) {
                rejected++;
                NK_CHECK_EQ_U64(rd.msgs[i].to, 2);
            } else {
                granted++;
                NK_CHECK_EQ_U64(rd.msgs[i].to, 1);
            }
        }
    NK_CHECK(granted == 1 && rejected == 1);
    NK_CHECK_EQ_U64(rd.hard_state.vote, 1);
    raft_advance(r, &rd);
    tn_free(t);
}

NK_TEST(vote_is_refused_to_candidate_whose_log_is_less_up_to_date)
{
    struct tnet *t = tn_new(3, 3, 0, no_prevote);
    tn_elect(t, 1);
    NK_REQUIRE_OK(tn_propose(t, 1, 7));
    tn_settle(t);
    /* node 3 has index 2 of term 1; a candidate with only index 1 loses */
    struct raft *r = tn_r(t, 3);
    for (int i = 0; i < 10; i++)
        raft_tick(r); /* leave the lease */
    tn_settle(t);
    t->hold = true;
    for (int i = 0; i < 10; i++)
        raft_tick(r);
    struct raft_msg v = {.type = RAFT_MSG_VOTE, .from = 2, .to = 3, .term = 9, .index = 1,
                         .log_term = 1};
    NK_REQUIRE_OK(raft_step(r, &v));
    struct raft_ready rd;
    raft_ready(r, &rd);
    bool rejected = false;
    for (size_t i = 0; i < rd.n_msgs; i++)
        if (rd.msgs[i].type == RAFT_MSG_VOTE_RESP && rd.msgs[i].to == 2)
            rejected = rd.msgs[i].reject;
    NK_CHECK(rejected);
    NK_CHECK_EQ_U64(rd.hard_state.vote, 0);
    NK_CHECK_EQ_U64(raft_term(r), 9); /* the higher term is still adopted */
    raft_advance(r, &rd);
    tn_free(t);
}

NK_TEST(leader_steps_down_when_it_sees_a_higher_term)
{
    struct tnet *t = tn_new(3, 3, 0, NULL);
    tn_elect(t, 1);
    struct raft *r = tn_r(t, 1);
    struct raft_msg m = {.type = RAFT_MSG_APPEND_RESP, .from = 2, .to = 1, .term = 7};
    NK_REQUIRE_OK(raft_step(r, &m));
    NK_CHECK(raft_role(r) == RAFT_FOLLOWER);
    NK_CHECK_EQ_U64(raft_term(r), 7);
    tn_free(t);
}

NK_TEST(stale_term_messages_are_ignored)
{
    struct tnet *t = tn_new(3, 3, 0, NULL);
    tn_elect(t, 1);
    NK_REQUIRE_OK(raft_transfer_leader(tn_r(t, 1), 2));
    tn_settle(t);
    NK_REQUIRE(raft_role(tn_r(t, 2)) == RAFT_LEADER);
    struct raft *r = tn_r(t, 3);
    uint64_t term = raft_term(r), commit = raft_commit_index(r);
    struct raft_entry e = {.term = 1, .index = raft_last_index(r) + 1, .type = 0};
    struct raft_msg m = {.type = RAFT_MSG_APPEND, .from = 1, .to = 3, .term = 1,
                         .index = raft_last_index(r), .log_term = 0, .n_entries = 1,
                         .entries = &e, .commit = 100};
    NK_REQUIRE_OK(raft_step(r, &m));
    NK_CHECK_EQ_U64(raft_term(r), term);
    NK_CHECK_EQ_U64(raft_commit_index(r), commit);
    NK_CHECK_EQ_U64(raft_lead(r), 2);
    tn_free(t);
}

NK_TEST(prevote_keeps_a_partitioned_node_from_raising_its_term)
{
    struct tnet *t = tn_new(3, 3, 0, NULL);
    tn_elect(t, 1);
    tn_isolate(t, 3, true);
    tn_tick_all(t, 100);
    /* node 3 pre-campaigned many times, without bumping its term */
    NK_CHECK_EQ_U64(raft_term(tn_r(t, 3)), 1);
    tn_isolate(t, 3, false);
    tn_tick_all(t, 5);
    NK_CHECK(raft_role(tn_r(t, 1)) == RAFT_LEADER);
    NK_CHECK_EQ_U64(raft_term(tn_r(t, 1)), 1);
    NK_CHECK_EQ_U64(raft_lead(tn_r(t, 3)), 1);
    tn_free(t);
}

NK_TEST(check_quorum_makes_an_isolated_leader_step_down)
{
    struct tnet *t = tn_new(3, 3, 0, NULL);
    tn_elect(t, 1);
    tn_isolate(t, 1, true);
    tn_tick_all(t, 25);
    NK_CHECK(raft_role(tn_r(t, 1)) == RAFT_FOLLOWER);
    /* the majority side elected a new leader meanwhile */
    NK_CHECK(raft_role(tn_r(t, 2)) == RAFT_LEADER || raft_role(tn_r(t, 3)) == RAFT_LEADER);
    tn_free(t);
}

NK_TEST(follower_that_heard_a_leader_recently_ignores_vote_requests)
{
    struct tnet *t = tn_new(3, 3, 0, no_prevote);
    tn_elect(t, 1);
    struct raft *r = tn_r(t, 3);
    struct raft_msg v = {.type = RAFT_MSG_VOTE, .from = 2, .to = 3, .term = 5, .index = 100,
                         .log_term = 5};
    NK_REQUIRE_OK(raft_step(r, &v));
    NK_CHECK_EQ_U64(raft_term(r), 1); /* not even the term changes */
    NK_CHECK_EQ_U64(raft_lead(r), 1);
    /* a transfer campaign is the exception */
    v.ctx = RAFT_CAMPAIGN_TRANSFER;
    NK_REQUIRE_OK(raft_step(r, &v));
    NK_CHECK_EQ_U64(raft_term(r), 5);
    tn_free(t);
}

NK_TEST(single_voter_group_elects_itself_and_commits_after_persisting)
{
    struct tnet *t = tn_new(1, 1, 0, NULL);
    tn_elect(t, 1);
    struct raft *r = tn_r(t, 1);
    NK_CHECK(raft_role(r) == RAFT_LEADER);
    uint64_t idx, term;
    uint8_t b = 9;
    NK_REQUIRE_OK(raft_propose(r, &b, 1, &idx, &term));
    NK_CHECK_EQ_U64(idx, 2);
    /* not committed before it is durable */
    NK_CHECK_EQ_U64(raft_commit_index(r), 1);
    tn_settle(t);
    NK_CHECK_EQ_U64(raft_commit_index(r), 2);
    NK_CHECK_EQ_U64(t->nodes[1].last_applied, 2);
    tn_free(t);
}

/* ---------------------------------------------------------------- 5.3 */

NK_TEST(leader_replicates_entries_and_commits_them_on_a_majority)
{
    struct tnet *t = tn_new(5, 5, 0, NULL);
    tn_elect(t, 1);
    tn_isolate(t, 4, true);
    tn_isolate(t, 5, true);
    for (int i = 0; i < 10; i++)
        NK_REQUIRE_OK(tn_propose(t, 1, (uint8_t)i));
    tn_settle(t);
    NK_CHECK_EQ_U64(raft_commit_index(tn_r(t, 1)), 11);
    for (int i = 1; i <= 3; i++) {
        NK_CHECK_EQ_U64(t->nodes[i].n_applied, 10);
        NK_CHECK_EQ_U64(t->nodes[i].applied_data[9], 9);
    }
    NK_CHECK_EQ_U64(t->nodes[4].n_applied, 0);
    /* with only two of five, nothing more commits */
    tn_isolate(t, 3, true);
    NK_REQUIRE_OK(tn_propose(t, 1, 99));
    tn_settle(t);
    NK_CHECK_EQ_U64(raft_commit_index(tn_r(t, 1)), 11);
    /* healing lets everyone catch up (a lost append in replicate state is
       found through the next heartbeat) */
    for (int i = 3; i <= 5; i++)
        tn_isolate(t, i, false);
    tn_tick_all(t, 8);
    for (int i = 1; i <= 5; i++)
        NK_CHECK_EQ_U64(t->nodes[i].n_applied, 11);
    tn_free(t);
}

NK_TEST(follower_rejects_append_whose_previous_entry_does_not_match)
{
    struct tnet *t = tn_new(3, 3, 0, NULL);
    tn_elect(t, 1);
    struct raft *r = tn_r(t, 2);
    struct raft_entry e = {.term = 1, .index = 6};
    struct raft_msg m = {.type = RAFT_MSG_APPEND, .from = 1, .to = 2, .term = 1, .index = 5,
                         .log_term = 1, .n_entries = 1, .entries = &e};
    NK_REQUIRE_OK(raft_step(r, &m));
    struct raft_ready rd;
    raft_ready(r, &rd);
    NK_REQUIRE(rd.n_msgs == 1);
    NK_CHECK(rd.msgs[0].reject);
    NK_CHECK_EQ_U64(rd.msgs[0].index, 5);
    NK_CHECK_EQ_U64(rd.msgs[0].reject_hint, 1); /* our last index */
    NK_CHECK_EQ_U64(rd.n_entries, 0);
    raft_advance(r, &rd);
    tn_free(t);
}

NK_TEST(conflicting_uncommitted_entries_are_replaced_by_the_leaders)
{
    struct tnet *t = tn_new(3, 3, 0, NULL);
    tn_elect(t, 1);
    /* node 1 appends entries that only it has, then loses leadership */
    tn_isolate(t, 1, true);
    for (int i = 0; i < 5; i++)
        NK_REQUIRE_OK(tn_propose(t, 1, 100));
    tn_settle(t);
    NK_CHECK_EQ_U64(raft_last_index(tn_r(t, 1)), 6);
    int ld = tn_wait_leader(t, 1);
    NK_REQUIRE(ld != 0);
    NK_REQUIRE_OK(tn_propose(t, ld, 200));
    tn_settle(t);
    tn_isolate(t, 1, false);
    tn_tick_all(t, 12);
    /* node 1 follows the new leader and holds its log */
    NK_CHECK_EQ_U64(raft_lead(tn_r(t, 1)), ld);
    NK_CHECK_EQ_U64(raft_last_index(tn_r(t, 1)), raft_last_index(tn_r(t, ld)));
    NK_CHECK_EQ_U64(t->nodes[1].n_applied, 1);
    NK_CHECK_EQ_U64(t->nodes[1].applied_data[0], 200);
    for (uint64_t i = 1; i <= raft_last_index(tn_r(t, ld)); i++) {
        uint64_t a, b;
        NK_REQUIRE_OK(raft_log_term(tn_r(t, 1), i, &a));
        NK_REQUIRE_OK(raft_log_term(tn_r(t, ld), i, &b));
        NK_CHECK_EQ_U64(a, b);
    }
    tn_free(t);
}

NK_TEST(leader_backtracks_over_a_divergent_term_in_one_round_trip)
{
    struct tnet *t = tn_new(3, 3, 0, NULL);
    tn_elect(t, 1);
    /* node 3 collects 50 entries of term 1 that nobody else has */
    tn_isolate(t, 1, true);
    tn_isolate(t, 3, true);
    t->cut[1][3] = t->cut[3][1] = false;
    for (int i = 0; i < 50; i++)
        NK_REQUIRE_OK(tn_propose(t, 1, 1));
    tn_settle(t);
    NK_REQUIRE(raft_last_index(tn_r(t, 3)) == 51);
    /* node 2 becomes leader of a later term (with node 1), node 3 rejoins */
    tn_isolate(t, 3, true);
    tn_isolate(t, 1, false);
    tn_tick_all(t, 30);
    int ld = raft_role(tn_r(t, 2)) == RAFT_LEADER ? 2 : 1;
    NK_REQUIRE(raft_role(tn_r(t, ld)) == RAFT_LEADER);
    NK_REQUIRE_OK(tn_propose(t, ld, 2));
    tn_settle(t);
    memset(t->sent, 0, sizeof(t->sent));
    tn_isolate(t, 3, false);
    tn_tick_all(t, 3);
    NK_CHECK_EQ_U64(raft_last_index(tn_r(t, 3)), raft_last_index(tn_r(t, ld)));
    /* without hints this would take ~50 rejections; with them a handful */
    NK_CHECK(t->sent[RAFT_MSG_APPEND_RESP] < 20);
    tn_free(t);
}

NK_TEST(leader_never_commits_an_old_term_entry_by_counting_replicas)
{
    /* figure 8: node 1 holds [1:t1, 2:t1] and leads term 3 after a term 2
       it did not win. Entry 2 reaching a majority does not commit it; the
       term-3 no-op at 3 reaching a majority commits both. */
    struct raft_memstorage *ms = raft_memstorage_new();
    struct raft_conf_state c;
    tn_conf(&c, 5, 0);
    NK_REQUIRE_OK(raft_memstorage_create_snapshot(ms, 0, &c, NULL, 0));
    struct raft_entry e[2] = {{.term = 1, .index = 1}, {.term = 1, .index = 2}};
    NK_REQUIRE_OK(raft_memstorage_append(ms, e, 2));
    struct raft_hard_state hs = {.term = 2};
    raft_memstorage_set_hard_state(ms, &hs);
    struct raft_config cfg = {.id = 1, .storage = raft_memstorage_storage(ms),
                              .disable_pre_vote = true, .disable_check_quorum = true};
    struct raft *r;
    NK_REQUIRE_OK(raft_new(&cfg, &r));
    NK_REQUIRE_OK(raft_campaign(r));
    NK_REQUIRE(raft_term(r) == 3);
    for (uint64_t from = 2; from <= 3; from++) {
        struct raft_msg v = {.type = RAFT_MSG_VOTE_RESP, .from = from, .to = 1, .term = 3};
        NK_REQUIRE_OK(raft_step(r, &v));
    }
    NK_REQUIRE(raft_role(r) == RAFT_LEADER);
    NK_REQUIRE(raft_last_index(r) == 3);
    struct raft_ready rd;
    raft_ready(r, &rd);
    NK_REQUIRE_OK(raft_memstorage_append(ms, rd.entries, rd.n_entries));
    raft_advance(r, &rd);
    for (uint64_t from = 2; from <= 3; from++) {
        struct raft_msg a = {.type = RAFT_MSG_APPEND_RESP, .from = from, .to = 1, .term = 3,
                             .index = 2};
        NK_REQUIRE_OK(raft_step(r, &a));
    }
    NK_CHECK_EQ_U64(raft_commit_index(r), 0); /* 2 is on 1, 2, 3 but of term 1 */
    struct raft_msg a = {.type = RAFT_MSG_APPEND_RESP, .from = 2, .to = 1, .term = 3, .index = 3};
    NK_REQUIRE_OK(raft_step(r, &a));
    NK_CHECK_EQ_U64(raft_commit_index(r), 0); /* 3 is on 1, 2 only */
    a.from = 3;
    NK_REQUIRE_OK(raft_step(r, &a));
    NK_CHECK_EQ_U64(raft_commit_index(r), 3);
    raft_free(r);
    raft_memstorage_free(ms);
}

static void small_window(struct raft_config *c)
{
    c->max_inflight_msgs = 3;
    c->max_msg_bytes = 10;
}

NK_TEST(in_flight_appends_per_follower_are_bounded_by_the_window)
{
    struct tnet *t = tn_new(2, 2, 0, small_window);
    tn_elect(t, 1);
    tn_settle(t);
    t->hold = true;
    for (int i = 0; i < 20; i++) {
        uint8_t data[10] = {0};
        NK_REQUIRE_OK(raft_propose(tn_r(t, 1), data, 10, NULL, NULL));
    }
    memset(t->sent, 0, sizeof(t->sent));
    tn_ready(t, 1);
    /* 20 entries of 10 bytes, 10 bytes per message, 3 messages in flight */
    NK_CHECK_EQ_U64(t->sent[RAFT_MSG_APPEND], 3);
    t->hold = false;
    tn_settle(t);
    NK_CHECK_EQ_U64(raft_commit_index(tn_r(t, 1)), 21);
    tn_free(t);
}

static void tiny_uncommitted(struct raft_config *c)
{
    c->max_uncommitted_entries = 5;
    c->max_uncommitted_bytes = 100;
}

NK_TEST(proposals_beyond_the_uncommitted_bound_are_refused_with_resource_exhausted)
{
    struct tnet *t = tn_new(3, 3, 0, tiny_uncommitted);
    tn_elect(t, 1);
    tn_isolate(t, 2, true);
    tn_isolate(t, 3, true);
    int ok = 0;
    nk_status s = NK_OK;
    for (int i = 0; i < 10; i++) {
        s = tn_propose(t, 1, 1);
        if (!nk_ok(s))
            break;
        ok++;
    }
    NK_CHECK_EQ_U64(ok, 5);
    NK_CHECK(s.code == NK_RESOURCE_EXHAUSTED);
    NK_CHECK(strstr(nk_status_msg(s), "uncommitted") != NULL);
    nk_status_free(&s);
    uint8_t big[200] = {0};
    tn_isolate(t, 2, false);
    tn_isolate(t, 3, false);
    tn_tick_all(t, 3);
    NK_REQUIRE_OK(raft_propose(tn_r(t, 1), big, 60, NULL, NULL));
    s = raft_propose(tn_r(t, 1), big, 60, NULL, NULL);
    NK_CHECK(s.code == NK_RESOURCE_EXHAUSTED);
    nk_status_free(&s);
    tn_free(t);
}

NK_TEST(follower_refuses_proposals_with_the_leader_as_hint)
{
    struct tnet *t = tn_new(3, 3, 0, NULL);
    tn_elect(t, 1);
    nk_status s = tn_propose(t, 2, 1);
    NK_CHECK(s.code == NK_FAILED_PRECONDITION);
    NK_CHECK(strstr(nk_status_msg(s), "leader hint 1") != NULL);
    nk_status_free(&s);
    tn_free(t);
}

/* ---------------------------------------------------------- 6.4 reads */

NK_TEST(read_index_completes_after_one_heartbeat_round_with_the_commit_index)
{
    struct tnet *t = tn_new(3, 3, 0, NULL);
    tn_elect(t, 1);
    NK_REQUIRE_OK(tn_propose(t, 1, 5));
    tn_settle(t);
    memset(t->sent, 0, sizeof(t->sent));
    for (uint64_t c = 1; c <= 10; c++)
        NK_REQUIRE_OK(raft_read_index(tn_r(t, 1), c));
    tn_settle(t);
    /* ten reads, one round: one heartbeat per follower */
    NK_CHECK_EQ_U64(t->sent[RAFT_MSG_HEARTBEAT], 2);
    NK_CHECK_EQ_U64(t->nodes[1].n_reads, 10);
    for (size_t i = 0; i < t->nodes[1].n_reads; i++) {
        NK_CHECK_EQ_U64(t->nodes[1].reads[i].ctx, i + 1);
        NK_CHECK_EQ_U64(t->nodes[1].reads[i].index, 2);
    }
    tn_free(t);
}

NK_TEST(read_index_needs_a_quorum_and_is_abandoned_when_leadership_is_lost)
{
    struct tnet *t = tn_new(3, 3, 0, NULL);
    tn_elect(t, 1);
    tn_isolate(t, 1, true);
    NK_REQUIRE_OK(raft_read_index(tn_r(t, 1), 77));
    tn_settle(t);
    NK_CHECK_EQ_U64(t->nodes[1].n_reads, 0);
    tn_tick_all(t, 25); /* check-quorum: steps down */
    NK_REQUIRE(raft_role(tn_r(t, 1)) != RAFT_LEADER);
    NK_REQUIRE(t->nodes[1].n_reads == 1);
    NK_CHECK_EQ_U64(t->nodes[1].reads[0].ctx, 77);
    NK_CHECK_EQ_U64(t->nodes[1].reads[0].index, 0); /* abandoned: retry */
    nk_status s = raft_read_index(tn_r(t, 1), 78);
    NK_CHECK(s.code == NK_FAILED_PRECONDITION);
    nk_status_free(&s);
    tn_free(t);
}

NK_TEST(read_index_waits_for_the_first_commit_of_the_leaders_term)
{
    struct tnet *t = tn_new(3, 3, 0, NULL);
    t->hold = true;
    NK_REQUIRE_OK(raft_campaign(tn_r(t, 1)));
    /* win the election by hand, keeping the no-op from committing */
    for (int round = 0; round < 4; round++) {
        for (int i = 1; i <= 3; i++)
            tn_ready(t, i);
        /* deliver everything except appends to the followers */
        size_t n = t->nq;
        for (size_t i = 0; i < n; i++)
            if (t->q[i].type == RAFT_MSG_APPEND)
                t->cut[t->q[i].from][t->q[i].to] = true;
        tn_deliver(t);
        memset(t->cut, 0, sizeof(t->cut));
    }
    struct raft *r = tn_r(t, 1);
    NK_REQUIRE(raft_role(r) == RAFT_LEADER);
    NK_REQUIRE(raft_commit_index(r) == 0);
    uint64_t idx;
    NK_CHECK(!raft_lease_read(r, &idx));
    NK_REQUIRE_OK(raft_read_index(r, 1));
    t->hold = false;
    tn_settle(t);
    NK_REQUIRE(t->nodes[1].n_reads == 1);
    NK_CHECK_EQ_U64(t->nodes[1].reads[0].index, 1); /* the no-op's index */
    tn_free(t);
}

NK_TEST(lease_read_holds_while_a_quorum_acknowledges_heartbeats_and_lapses_without)
{
    struct tnet *t = tn_new(3, 3, 0, NULL);
    tn_elect(t, 1);
    struct raft *r = tn_r(t, 1);
    uint64_t idx = 0;
    NK_CHECK(!raft_lease_read(r, &idx)); /* no heartbeat acknowledged yet */
    tn_tick_all(t, 2);
    NK_CHECK(raft_lease_read(r, &idx));
    NK_CHECK_EQ_U64(idx, raft_commit_index(r));
    /* cut off: the lease lapses before the election timeout (margin) */
    tn_isolate(t, 1, true);
    int k = 0;
    while (raft_lease_read(r, &idx) && k < 20) {
        raft_tick(r);
        tn_settle(t);
        k++;
    }
    NK_CHECK(k > 0 && k < 10);
    NK_CHECK(raft_role(r) == RAFT_LEADER); /* still leader, but no lease */
    tn_free(t);
}

NK_TEST(lease_anchor_names_the_tick_of_the_heartbeat_round_a_quorum_acknowledged)
{
    struct tnet *t = tn_new(3, 3, 0, NULL);
    tn_elect(t, 1);
    struct raft *r = tn_r(t, 1);
    uint64_t sent = 0;
    uint32_t lt = 0;
    NK_CHECK(!raft_lease_anchor(r, &sent, &lt)); /* nothing acknowledged yet */
    tn_tick_all(t, 2);
    NK_REQUIRE(raft_lease_anchor(r, &sent, &lt));
    NK_CHECK(sent <= raft_now(r) && sent + lt > raft_now(r));
    /* one follower cut off: the other still confirms rounds, and the anchor
     * follows the newest round the quorum acknowledged */
    tn_isolate(t, 3, true);
    tn_tick_all(t, 1);
    NK_REQUIRE(raft_lease_anchor(r, &sent, &lt));
    NK_CHECK_EQ_U64(sent, raft_now(r));
    /* both cut off: the anchor stays at the last acknowledged round while
     * the ticks move on, until the lease lapses */
    tn_isolate(t, 2, true);
    uint64_t last = sent;
    raft_tick(r);
    tn_settle(t);
    NK_REQUIRE(raft_lease_anchor(r, &sent, &lt));
    NK_CHECK_EQ_U64(sent, last);
    NK_CHECK(raft_now(r) > sent);
    tn_free(t);
}

/* ----------------------------------------------------- 3.10 transfer */

NK_TEST(leadership_transfer_catches_the_target_up_then_sends_timeout_now)
{
    struct tnet *t = tn_new(3, 3, 0, NULL);
    tn_elect(t, 1);
    tn_isolate(t, 3, true);
    for (int i = 0; i < 5; i++)
        NK_REQUIRE_OK(tn_propose(t, 1, 1));
    tn_settle(t);
    tn_isolate(t, 3, false);
    memset(t->sent, 0, sizeof(t->sent));
    NK_REQUIRE_OK(raft_transfer_leader(tn_r(t, 1), 3));
    nk_status s = tn_propose(t, 1, 1);
    NK_CHECK(s.code == NK_UNAVAILABLE); /* no proposals while transferring */
    nk_status_free(&s);
    tn_settle(t);
    NK_CHECK_EQ_U64(t->sent[RAFT_MSG_TIMEOUT_NOW], 1);
    NK_CHECK(raft_role(tn_r(t, 3)) == RAFT_LEADER);
    NK_CHECK(raft_role(tn_r(t, 1)) == RAFT_FOLLOWER);
    NK_CHECK_EQ_U64(raft_lead(tn_r(t, 1)), 3);
    tn_free(t);
}

NK_TEST(leadership_transfer_to_an_unreachable_node_is_abandoned_after_an_election_timeout)
{
    struct tnet *t = tn_new(3, 3, 0, NULL);
    tn_elect(t, 1);
    tn_isolate(t, 3, true);
    NK_REQUIRE_OK(tn_propose(t, 1, 1));
    tn_settle(t);
    NK_REQUIRE_OK(raft_transfer_leader(tn_r(t, 1), 3));
    tn_tick_all(t, 11);
    NK_CHECK(raft_role(tn_r(t, 1)) == RAFT_LEADER);
    NK_REQUIRE_OK(tn_propose(t, 1, 2)); /* accepted again */
    tn_free(t);
}

/* ------------------------------------------------------ 7 snapshots */

NK_TEST(lagging_follower_is_caught_up_by_a_snapshot_after_compaction)
{
    struct tnet *t = tn_new(3, 3, 0, NULL);
    tn_elect(t, 1);
    tn_isolate(t, 3, true);
    for (int i = 0; i < 30; i++)
        NK_REQUIRE_OK(tn_propose(t, 1, (uint8_t)i));
    tn_settle(t);
    /* the leader snapshots at its applied index and drops its log */
    struct raft_conf_state c;
    tn_conf(&c, 3, 0);
    uint64_t at = t->nodes[1].last_applied;
    NK_REQUIRE(at == 31);
    NK_REQUIRE_OK(raft_memstorage_create_snapshot(t->nodes[1].ms, at, &c, "state", 5));
    NK_REQUIRE_OK(raft_memstorage_compact(t->nodes[1].ms, at));
    NK_CHECK_EQ_U64(raft_first_index(tn_r(t, 1)), 32);
    memset(t->sent, 0, sizeof(t->sent));
    tn_isolate(t, 3, false);
    NK_REQUIRE_OK(tn_propose(t, 1, 99));
    tn_tick_all(t, 3);
    NK_CHECK_EQ_U64(t->sent[RAFT_MSG_SNAPSHOT], 1);
    NK_CHECK_EQ_U64(raft_first_index(tn_r(t, 3)), 32);
    NK_CHECK_EQ_U64(t->nodes[3].last_applied, 32);
    NK_CHECK_EQ_U64(raft_commit_index(tn_r(t, 3)), 32);
    /* and replication continues after the snapshot */
    NK_REQUIRE_OK(tn_propose(t, 1, 100));
    tn_settle(t);
    NK_CHECK_EQ_U64(t->nodes[3].last_applied, 33);
    tn_free(t);
}

NK_TEST(restart_recovers_term_vote_log_and_commit_from_storage)
{
    struct tnet *t = tn_new(3, 3, 0, NULL);
    tn_elect(t, 1);
    for (int i = 0; i < 4; i++)
        NK_REQUIRE_OK(tn_propose(t, 1, 1));
    tn_settle(t);
    uint64_t term = raft_term(tn_r(t, 2)), last = raft_last_index(tn_r(t, 2));
    uint64_t commit = raft_commit_index(tn_r(t, 2));
    tn_crash(t, 2);
    tn_start(t, 2);
    struct raft *r = tn_r(t, 2);
    NK_CHECK_EQ_U64(raft_term(r), term);
    NK_CHECK_EQ_U64(raft_last_index(r), last);
    NK_CHECK_EQ_U64(raft_commit_index(r), commit);
    NK_CHECK(raft_role(r) == RAFT_FOLLOWER);
    /* the restarted node rejoins the same leader */
    tn_tick_all(t, 2);
    NK_CHECK_EQ_U64(raft_lead(r), 1);
    tn_free(t);
}

/* --------------------------------------------------- 4 membership */

static void propose_conf(struct tnet *t, int leader, int nv, const uint64_t *voters, int nl,
                         const uint64_t *learners)
{
    struct raft_conf_state c;
    memset(&c, 0, sizeof(c));
    for (int i = 0; i < nv; i++)
        c.voters[c.n_voters++] = voters[i];
    for (int i = 0; i < nl; i++)
        c.learners[c.n_learners++] = learners[i];
    nk_status s = raft_propose_conf_change(tn_r(t, leader), &c, NULL, NULL);
    NK_ASSERT(nk_ok(s));
}

NK_TEST(learner_receives_the_log_but_neither_votes_nor_counts_toward_commit)
{
    struct tnet *t = tn_new(3, 2, 1, NULL);
    tn_elect(t, 1);
    NK_REQUIRE_OK(tn_propose(t, 1, 3));
    tn_settle(t);
    NK_CHECK_EQ_U64(t->nodes[3].n_applied, 1); /* the learner has it */
    NK_CHECK(raft_conf_is_learner(raft_conf(tn_r(t, 3)), 3));
    /* with the other voter gone, the learner's ack does not commit */
    tn_isolate(t, 2, true);
    NK_REQUIRE_OK(tn_propose(t, 1, 4));
    tn_settle(t);
    NK_CHECK_EQ_U64(t->nodes[1].n_applied, 1);
    NK_CHECK_EQ_U64(raft_progress_match(tn_r(t, 1), 3), raft_last_index(tn_r(t, 1)));
    /* and a learner never campaigns */
    nk_status s = raft_campaign(tn_r(t, 3));
    NK_CHECK(s.code == NK_FAILED_PRECONDITION);
    nk_status_free(&s);
    tn_tick_all(t, 50);
    NK_CHECK(raft_role(tn_r(t, 3)) == RAFT_FOLLOWER);
    tn_free(t);
}

NK_TEST(joint_consensus_enters_then_leaves_automatically_and_new_nodes_catch_up)
{
    struct tnet *t = tn_new(5, 3, 0, NULL);
    tn_elect(t, 1);
    NK_REQUIRE_OK(tn_propose(t, 1, 1));
    tn_settle(t);
    const uint64_t v5[] = {1, 2, 3, 4, 5};
    propose_conf(t, 1, 5, v5, 0, NULL);
    /* a second change is refused while one is pending */
    struct raft_conf_state c;
    tn_conf(&c, 2, 0);
    nk_status s = raft_propose_conf_change(tn_r(t, 1), &c, NULL, NULL);
    NK_CHECK(s.code == NK_FAILED_PRECONDITION);
    nk_status_free(&s);
    tn_tick_all(t, 3);
    for (int i = 1; i <= 5; i++) {
        const struct raft_conf_state *k = raft_conf(tn_r(t, i));
        NK_CHECK(!raft_conf_is_joint(k));
        NK_CHECK_EQ_U64(k->n_voters, 5);
    }
    NK_CHECK_EQ_U64(t->nodes[5].n_applied, 1);
    /* 5 -> {3,4,5}: the leader leaves the group and steps down */
    const uint64_t v345[] = {3, 4, 5};
    propose_conf(t, 1, 3, v345, 0, NULL);
    tn_tick_all(t, 40);
    int leaders = 0;
    for (int i = 3; i <= 5; i++)
        leaders += raft_role(tn_r(t, i)) == RAFT_LEADER;
    NK_CHECK_EQ_U64(leaders, 1);
    NK_CHECK(raft_role(tn_r(t, 1)) != RAFT_LEADER);
    for (int i = 3; i <= 5; i++) {
        const struct raft_conf_state *k = raft_conf(tn_r(t, i));
        NK_CHECK(!raft_conf_is_joint(k) && k->n_voters == 3);
        NK_CHECK(!raft_conf_is_voter(k, 1));
    }
    tn_free(t);
}

NK_TEST(joint_configuration_needs_both_majorities_to_commit)
{
    struct tnet *t = tn_new(6, 3, 0, NULL);
    tn_elect(t, 1);
    const uint64_t v[] = {1, 4, 5, 6};
    propose_conf(t, 1, 4, v, 0, NULL);
    /* step until the leader has applied the joint entry, then cut 4, 5, 6 */
    for (int round = 0; round < 50 && !raft_conf_is_joint(raft_conf(tn_r(t, 1))); round++) {
        for (int i = 1; i <= 6; i++)
            tn_ready(t, i);
        tn_deliver(t);
    }
    NK_REQUIRE(raft_conf_is_joint(raft_conf(tn_r(t, 1))));
    for (int i = 4; i <= 6; i++)
        tn_isolate(t, i, true);
    uint64_t before = raft_commit_index(tn_r(t, 1));
    NK_REQUIRE_OK(tn_propose(t, 1, 1));
    tn_settle(t);
    /* {1,2,3} hold everything, but {1,4,5,6} has no majority: nothing commits */
    NK_CHECK_EQ_U64(raft_progress_match(tn_r(t, 1), 2), raft_last_index(tn_r(t, 1)));
    NK_CHECK_EQ_U64(raft_commit_index(tn_r(t, 1)), before);
    NK_CHECK(raft_conf_is_joint(raft_conf(tn_r(t, 1))));
    /* once the new nodes are back, the joint config commits and is left */
    for (int i = 4; i <= 6; i++)
        tn_isolate(t, i, false);
    tn_tick_all(t, 5);
    NK_CHECK(!raft_conf_is_joint(raft_conf(tn_r(t, 1))));
    NK_CHECK_EQ_U64(raft_commit_index(tn_r(t, 1)), raft_last_index(tn_r(t, 1)));
    tn_free(t);
}

/* ------------------------------------------------------- multi-raft */

NK_TEST(idle_group_is_reported_idle_and_a_quiesced_group_ignores_ticks)
{
    struct tnet *t = tn_new(3, 3, 0, NULL);
    tn_elect(t, 1);
    tn_tick_all(t, 2);
    NK_CHECK(raft_is_idle(tn_r(t, 1)));
    NK_CHECK(raft_is_idle(tn_r(t, 2)));
    NK_REQUIRE_OK(tn_propose(t, 1, 1));
    NK_CHECK(!raft_is_idle(tn_r(t, 1)));
    tn_settle(t);
    tn_tick_all(t, 1);
    NK_CHECK(raft_is_idle(tn_r(t, 1)));
    for (int i = 1; i <= 3; i++)
        raft_quiesce(tn_r(t, i));
    memset(t->sent, 0, sizeof(t->sent));
    tn_tick_all(t, 100);
    NK_CHECK_EQ_U64(t->sent[RAFT_MSG_HEARTBEAT], 0);
    NK_CHECK_EQ_U64(raft_term(tn_r(t, 2)), 1);
    /* a proposal wakes the leader */
    NK_REQUIRE_OK(tn_propose(t, 1, 2));
    NK_CHECK(!raft_is_quiesced(tn_r(t, 1)));
    tn_settle(t);
    NK_CHECK_EQ_U64(t->nodes[3].n_applied, 2);
    tn_free(t);
}

NK_TEST(an_idle_group_costs_less_than_two_kilobytes)
{
    fprintf(stderr, "  sizeof(struct raft) = %zu\n", raft_struct_size());
    NK_CHECK(raft_struct_size() < 2048);
}

NK_TEST(misaddressed_or_malformed_messages_are_rejected_with_a_status)
{
    struct tnet *t = tn_new(3, 3, 0, NULL);
    struct raft_msg m = {.type = RAFT_MSG_HEARTBEAT, .from = 2, .to = 9, .term = 1};
    nk_status s = raft_step(tn_r(t, 1), &m);
    NK_CHECK(s.code == NK_INVALID_ARGUMENT);
    nk_status_free(&s);
    struct raft_entry e = {.term = 1, .index = 7};
    m = (struct raft_msg){.type = RAFT_MSG_APPEND, .from = 2, .to = 1, .term = 1, .index = 2,
                          .n_entries = 1, .entries = &e};
    s = raft_step(tn_r(t, 1), &m);
    NK_CHECK(s.code == NK_INVALID_ARGUMENT);
    nk_status_free(&s);
    tn_free(t);
}

/* ------------------------------------------------------------- bounds */

static void few_reads(struct raft_config *c)
{
    c->max_pending_reads = 4;
}

NK_TEST(read_index_requests_beyond_the_pending_bound_are_refused)
{
    struct tnet *t = tn_new(3, 3, 0, few_reads);
    tn_elect(t, 1);
    tn_isolate(t, 1, true); /* no round can complete */
    for (uint64_t c = 1; c <= 4; c++)
        NK_REQUIRE_OK(raft_read_index(tn_r(t, 1), c));
    nk_status s = raft_read_index(tn_r(t, 1), 5);
    NK_CHECK(s.code == NK_RESOURCE_EXHAUSTED);
    NK_CHECK(strstr(nk_status_msg(s), "pending reads") != NULL);
    nk_status_free(&s);
    tn_free(t);
}

static void few_msgs(struct raft_config *c)
{
    c->max_msgs_per_ready = 2;
    c->disable_pre_vote = true;
}

NK_TEST(messages_beyond_the_per_ready_bound_are_dropped_and_counted)
{
    struct tnet *t = tn_new(5, 5, 0, few_msgs);
    t->hold = true;
    NK_REQUIRE_OK(raft_campaign(tn_r(t, 1)));
    tn_ready(t, 1);
    NK_CHECK_EQ_U64(t->sent[RAFT_MSG_VOTE], 2);
    NK_CHECK_EQ_U64(raft_dropped_msgs(tn_r(t, 1)), 2);
    /* the two votes that went out (plus its own) still elect it */
    t->hold = false;
    tn_settle(t);
    NK_CHECK(raft_role(tn_r(t, 1)) == RAFT_LEADER);
    tn_free(t);
}

static void small_apply(struct raft_config *c)
{
    c->max_committed_bytes = 10;
}

NK_TEST(committed_entries_per_ready_are_bounded_by_bytes)
{
    struct tnet *t = tn_new(1, 1, 0, small_apply);
    tn_elect(t, 1);
    struct raft *r = tn_r(t, 1);
    for (int i = 0; i < 10; i++)
        NK_REQUIRE_OK(raft_propose(r, "abcde", 5, NULL, NULL));
    tn_ready(t, 1); /* persist: commits all ten at advance */
    NK_REQUIRE(raft_commit_index(r) == 11);
    int readys = 0;
    while (raft_has_ready(r) && readys < 20) {
        struct raft_ready rd;
        raft_ready(r, &rd);
        NK_CHECK(rd.n_committed >= 1 && rd.n_committed <= 2);
        raft_advance(r, &rd);
        readys++;
    }
    NK_CHECK(readys >= 5);
    NK_CHECK_EQ_U64(raft_applied_index(r), 11);
    tn_free(t);
}

NK_TEST(quiesced_followers_do_not_campaign_until_woken)
{
    struct tnet *t = tn_new(3, 3, 0, NULL);
    tn_elect(t, 1);
    tn_crash(t, 1);
    raft_quiesce(tn_r(t, 2));
    raft_quiesce(tn_r(t, 3));
    tn_tick_all(t, 100);
    NK_CHECK_EQ_U64(raft_term(tn_r(t, 2)), 1);
    NK_CHECK_EQ_U64(raft_term(tn_r(t, 3)), 1);
    /* the node layer learns the leader's node is down and wakes them */
    raft_unquiesce(tn_r(t, 2));
    raft_unquiesce(tn_r(t, 3));
    NK_CHECK(tn_wait_leader(t, 1) != 0);
    tn_free(t);
}

NK_TEST(configuration_takes_effect_when_appended_and_reverts_when_truncated)
{
    struct tnet *t = tn_new(4, 3, 0, NULL);
    tn_elect(t, 1);
    tn_isolate(t, 1, true);
    const uint64_t v[] = {1, 2, 3}, l[] = {4};
    propose_conf(t, 1, 3, v, 1, l);
    /* in effect on the leader at once, uncommitted */
    NK_CHECK_EQ_U64(raft_conf(tn_r(t, 1))->n_learners, 1);
    NK_CHECK_EQ_U64(raft_applied_conf(tn_r(t, 1))->n_learners, 0);
    tn_settle(t);
    NK_CHECK(raft_commit_index(tn_r(t, 1)) < raft_last_index(tn_r(t, 1)));
    /* a new leader overwrites the entry: node 1 goes back to {1,2,3} */
    int ld = tn_wait_leader(t, 1);
    NK_REQUIRE(ld != 0);
    NK_REQUIRE_OK(tn_propose(t, ld, 5));
    tn_settle(t);
    tn_isolate(t, 1, false);
    tn_tick_all(t, 25);
    NK_CHECK_EQ_U64(raft_lead(tn_r(t, 1)), ld);
    NK_CHECK_EQ_U64(raft_conf(tn_r(t, 1))->n_learners, 0);
    NK_CHECK_EQ_U64(raft_conf(tn_r(t, 1))->n_voters, 3);
    /* a restart rebuilds the same configuration from the log */
    tn_crash(t, 1);
    tn_start(t, 1);
    NK_CHECK_EQ_U64(raft_conf(tn_r(t, 1))->n_learners, 0);
    tn_free(t);
}

NK_TEST(restart_takes_the_latest_configuration_in_the_log_even_if_uncommitted)
{
    struct tnet *t = tn_new(5, 3, 0, NULL);
    tn_elect(t, 1);
    tn_isolate(t, 2, true);
    tn_isolate(t, 3, true);
    const uint64_t v[] = {1, 2, 3, 4, 5};
    propose_conf(t, 1, 5, v, 0, NULL);
    tn_settle(t); /* on 1's disk, not committed */
    NK_REQUIRE(raft_conf_is_joint(raft_conf(tn_r(t, 1))));
    tn_crash(t, 1);
    tn_start(t, 1);
    const struct raft_conf_state *c = raft_conf(tn_r(t, 1));
    NK_CHECK(raft_conf_is_joint(c));
    NK_CHECK_EQ_U64(c->n_voters, 5);
    NK_CHECK_EQ_U64(raft_applied_conf(tn_r(t, 1))->n_voters, 3);
    tn_free(t);
}

NK_TEST(lease_is_suspended_during_a_transfer_and_for_an_election_timeout_after_it_is_abandoned)
{
    struct tnet *t = tn_new(3, 3, 0, NULL);
    tn_elect(t, 1);
    tn_tick_all(t, 2);
    struct raft *r = tn_r(t, 1);
    uint64_t idx;
    NK_REQUIRE(raft_lease_read(r, &idx));
    /* the TimeoutNow to node 3 is lost (it could also be delayed) */
    t->cut[1][3] = true;
    NK_REQUIRE_OK(raft_transfer_leader(r, 3));
    tn_settle(t);
    NK_CHECK(!raft_lease_read(r, &idx));
    int k = 0;
    while (raft_lease_read(r, &idx) == false && k < 50) {
        tn_tick_all(t, 1);
        k++;
    }
    /* abandoned after an election timeout (10), then heartbeats from an
       election timeout later must be acknowledged before the lease holds */
    NK_CHECK(k >= 20);
    NK_CHECK(raft_role(r) == RAFT_LEADER);
    NK_REQUIRE_OK(tn_propose(t, 1, 1)); /* proposals are accepted again */
    tn_free(t);
}

NK_TEST(a_lost_snapshot_is_sent_again_after_two_election_timeouts)
{
    struct tnet *t = tn_new(3, 3, 0, NULL);
    tn_elect(t, 1);
    tn_isolate(t, 3, true);
    for (int i = 0; i < 10; i++)
        NK_REQUIRE_OK(tn_propose(t, 1, (uint8_t)i));
    tn_settle(t);
    struct raft_conf_state c;
    tn_conf(&c, 3, 0);
    uint64_t at = t->nodes[1].last_applied;
    NK_REQUIRE_OK(raft_memstorage_create_snapshot(t->nodes[1].ms, at, &c, "s", 1));
    NK_REQUIRE_OK(raft_memstorage_compact(t->nodes[1].ms, at));
    tn_isolate(t, 3, false);
    memset(t->sent, 0, sizeof(t->sent));
    /* tick until the first snapshot is queued, then lose it */
    t->hold = true;
    for (int k = 0; k < 10 && t->sent[RAFT_MSG_SNAPSHOT] == 0; k++) {
        for (int i = 1; i <= 3; i++)
            raft_tick(tn_r(t, i));
        for (int i = 1; i <= 3; i++)
            tn_ready(t, i);
        for (size_t i = 0; i < t->nq; i++)
            if (t->q[i].type == RAFT_MSG_SNAPSHOT)
                t->cut[1][3] = true;
        tn_deliver(t);
        t->cut[1][3] = false;
    }
    t->hold = false;
    NK_REQUIRE(t->sent[RAFT_MSG_SNAPSHOT] == 1);
    NK_CHECK_EQ_U64(t->nodes[3].last_applied, 1);
    tn_tick_all(t, 25);
    NK_CHECK_EQ_U64(t->sent[RAFT_MSG_SNAPSHOT], 2);
    NK_CHECK_EQ_U64(t->nodes[3].last_applied, at);
    tn_free(t);
}

NK_TEST(a_removed_node_that_never_learned_it_cannot_disrupt_the_group)
{
    struct tnet *t = tn_new(4, 4, 0, NULL);
    tn_elect(t, 1);
    tn_isolate(t, 4, true);
    const uint64_t v[] = {1, 2, 3};
    propose_conf(t, 1, 3, v, 0, NULL);
    tn_tick_all(t, 3);
    NK_REQUIRE(raft_conf(tn_r(t, 1))->n_voters == 3);
    uint64_t term = raft_term(tn_r(t, 1));
    /* node 4 still thinks it is a voter; it times out again and again */
    tn_isolate(t, 4, false);
    tn_tick_all(t, 100);
    NK_CHECK(raft_role(tn_r(t, 1)) == RAFT_LEADER);
    NK_CHECK_EQ_U64(raft_term(tn_r(t, 1)), term);
    tn_free(t);
}

NK_TEST(candidate_returns_to_follower_on_append_from_a_leader_of_its_term)
{
    struct tnet *t = tn_new(3, 3, 0, no_prevote);
    t->hold = true;
    struct raft *r = tn_r(t, 2);
    NK_REQUIRE_OK(raft_campaign(r));
    NK_REQUIRE(raft_role(r) == RAFT_CANDIDATE);
    uint64_t term = raft_term(r);
    struct raft_msg m = {.type = RAFT_MSG_HEARTBEAT, .from = 3, .to = 2, .term = term};
    NK_REQUIRE_OK(raft_step(r, &m));
    NK_CHECK(raft_role(r) == RAFT_FOLLOWER);
    NK_CHECK_EQ_U64(raft_lead(r), 3);
    NK_CHECK_EQ_U64(raft_term(r), term);
    tn_free(t);
}

NK_TEST(candidate_rejected_by_a_majority_returns_to_follower)
{
    struct tnet *t = tn_new(3, 3, 0, no_prevote);
    t->hold = true;
    struct raft *r = tn_r(t, 1);
    NK_REQUIRE_OK(raft_campaign(r));
    uint64_t term = raft_term(r);
    for (uint64_t from = 2; from <= 3; from++) {
        struct raft_msg m = {.type = RAFT_MSG_VOTE_RESP, .from = from, .to = 1, .term = term,
                             .reject = true};
        NK_REQUIRE_OK(raft_step(r, &m));
    }
    NK_CHECK(raft_role(r) == RAFT_FOLLOWER);
    NK_CHECK_EQ_U64(raft_term(r), term);
    tn_free(t);
}

NK_TEST(follower_commit_index_is_min_of_leader_commit_and_its_last_new_entry)
{
    struct tnet *t = tn_new(3, 3, 0, NULL);
    tn_elect(t, 1);
    struct raft *r = tn_r(t, 2);
    uint64_t last = raft_last_index(r);
    struct raft_entry e = {.term = 1, .index = last + 1};
    struct raft_msg m = {.type = RAFT_MSG_APPEND, .from = 1, .to = 2, .term = 1, .index = last,
                         .log_term = 1, .n_entries = 1, .entries = &e, .commit = last + 50};
    NK_REQUIRE_OK(raft_step(r, &m));
    NK_CHECK_EQ_U64(raft_commit_index(r), last + 1);
    tn_free(t);
}

/* a storage whose snapshot is "being produced" until released */
static struct raft_storage g_inner;
static bool g_snap_ready;
static nk_status slow_snapshot(void *ctx, struct nk_arena *a, struct raft_snapshot *out)
{
    if (!g_snap_ready)
        return nk_status_make(NK_UNAVAILABLE, "snapshot being produced");
    return g_inner.snapshot(ctx, a, out);
}

NK_TEST(a_snapshot_that_is_not_ready_yet_is_retried_on_later_heartbeats)
{
    struct tnet *t = tn_new(3, 3, 0, NULL);
    tn_elect(t, 1);
    tn_isolate(t, 3, true);
    for (int i = 0; i < 10; i++)
        NK_REQUIRE_OK(tn_propose(t, 1, (uint8_t)i));
    tn_settle(t);
    struct raft_conf_state c;
    tn_conf(&c, 3, 0);
    uint64_t at = t->nodes[1].last_applied;
    NK_REQUIRE_OK(raft_memstorage_create_snapshot(t->nodes[1].ms, at, &c, "s", 1));
    NK_REQUIRE_OK(raft_memstorage_compact(t->nodes[1].ms, at));
    /* restart the leader's raft over the slow storage, then let it lead again */
    g_inner = raft_memstorage_storage(t->nodes[1].ms);
    g_snap_ready = false;
    tn_crash(t, 1);
    t->nodes[1].cfg.storage = g_inner;
    t->nodes[1].cfg.storage.snapshot = slow_snapshot;
    t->nodes[1].cfg.applied = t->nodes[1].last_applied;
    nk_status s = raft_new(&t->nodes[1].cfg, &t->nodes[1].r);
    NK_REQUIRE_OK(s);
    tn_isolate(t, 3, false);
    int ld = tn_wait_leader(t, 0);
    NK_REQUIRE(ld != 0);
    if (ld != 1) {
        NK_REQUIRE_OK(raft_transfer_leader(tn_r(t, ld), 1));
        tn_settle(t);
    }
    NK_REQUIRE(raft_role(tn_r(t, 1)) == RAFT_LEADER);
    memset(t->sent, 0, sizeof(t->sent));
    tn_tick_all(t, 5);
    NK_CHECK_EQ_U64(t->sent[RAFT_MSG_SNAPSHOT], 0);
    NK_CHECK(t->nodes[3].last_applied < at);
    g_snap_ready = true;
    tn_tick_all(t, 5);
    NK_CHECK_EQ_U64(t->sent[RAFT_MSG_SNAPSHOT], 1);
    NK_CHECK(t->nodes[3].last_applied >= at);
    tn_free(t);
}

NK_TEST(joint_configuration_committed_during_a_transfer_is_left_once_the_transfer_ends)
{
    struct tnet *t = tn_new(5, 3, 0, NULL);
    tn_elect(t, 1);
    tn_tick_all(t, 2);
    const uint64_t v5[] = {1, 2, 3, 4, 5};
    propose_conf(t, 1, 5, v5, 0, NULL);
    t->cut[1][3] = true; /* the transfer to 3 cannot complete */
    NK_REQUIRE_OK(raft_transfer_leader(tn_r(t, 1), 3));
    tn_settle(t);
    struct raft *r = tn_r(t, 1);
    NK_REQUIRE(raft_role(r) == RAFT_LEADER);
    NK_CHECK(raft_conf_is_joint(raft_conf(r)));
    NK_CHECK_EQ_U64(raft_commit_index(r), raft_last_index(r)); /* joint is committed */
    tn_tick_all(t, 15); /* the transfer is abandoned, then the joint config left */
    NK_CHECK(raft_role(r) == RAFT_LEADER);
    NK_CHECK(!raft_conf_is_joint(raft_conf(r)));
    NK_CHECK_EQ_U64(raft_conf(r)->n_voters, 5);
    tn_free(t);
}

/* entries_nowait over memstorage that has "not fetched yet" entries <= g_cold_upto */
static uint64_t g_cold_upto;
static bool g_fetched;
static int g_nowait_unavailable;
static nk_status cold_entries_nowait(void *ctx, uint64_t lo, uint64_t hi, uint64_t max_bytes,
                                     struct nk_arena *a, struct raft_entry *out, size_t *n)
{
    if (!g_fetched && lo <= g_cold_upto) {
        g_nowait_unavailable++;
        return nk_status_make(NK_UNAVAILABLE, "being fetched");
    }
    return g_inner.entries(ctx, lo, hi, max_bytes, a, out, n);
}

NK_TEST(entries_not_in_memory_are_sent_once_fetched_without_stalling_the_others)
{
    struct tnet *t = tn_new(3, 3, 0, NULL);
    tn_elect(t, 1);
    tn_isolate(t, 3, true);
    for (int i = 0; i < 10; i++)
        NK_REQUIRE_OK(tn_propose(t, 1, (uint8_t)i));
    tn_settle(t);
    g_cold_upto = t->nodes[1].last_applied;
    g_fetched = false;
    g_nowait_unavailable = 0;
    /* restart the leader over storage whose old entries are "on disk" */
    g_inner = raft_memstorage_storage(t->nodes[1].ms);
    tn_crash(t, 1);
    t->nodes[1].cfg.storage = g_inner;
    t->nodes[1].cfg.storage.entries_nowait = cold_entries_nowait;
    t->nodes[1].cfg.applied = t->nodes[1].last_applied;
    NK_REQUIRE_OK(raft_new(&t->nodes[1].cfg, &t->nodes[1].r));
    int ld = tn_wait_leader(t, 0);
    NK_REQUIRE(ld != 0);
    if (ld != 1) {
        NK_REQUIRE_OK(raft_transfer_leader(tn_r(t, ld), 1));
        tn_settle(t);
    }
    NK_REQUIRE(raft_role(tn_r(t, 1)) == RAFT_LEADER);
    tn_isolate(t, 3, false);
    /* new writes commit with node 2 while node 3's entries are being fetched */
    uint64_t c0 = raft_commit_index(tn_r(t, 1));
    NK_REQUIRE_OK(tn_propose(t, 1, 42));
    tn_tick_all(t, 3);
    NK_CHECK(raft_commit_index(tn_r(t, 1)) > c0);
    NK_CHECK(g_nowait_unavailable > 0);
    NK_CHECK(t->nodes[3].last_applied < g_cold_upto);
    /* the fetch completes: node 3 is sent its entries at once, with no tick */
    g_fetched = true;
    raft_entries_fetched(tn_r(t, 1));
    tn_settle(t);
    NK_CHECK_EQ_U64(t->nodes[3].last_applied, t->nodes[1].last_applied);
    tn_free(t);
}
