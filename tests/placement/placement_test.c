/*
 * placement_test.c: rendezvous placement is deterministic and spreads
 * replicas; membership changes move about the minimum; leader balancing
 * spreads leaders with few transfers.
 */
#include "placement/placement.h"
#include "testlib.h"

#define S 1024

static void ids(uint64_t *out, size_t n, uint64_t first)
{
    for (size_t i = 0; i < n; i++)
        out[i] = first + i;
}

NK_TEST(placement_is_deterministic_and_independent_of_member_order)
{
    uint64_t a[5] = {11, 22, 33, 44, 55}, b[5] = {44, 11, 55, 33, 22};
    struct placement p, q;
    NK_REQUIRE_OK(placement_compute(a, 5, S, 3, &p));
    NK_REQUIRE_OK(placement_compute(b, 5, S, 3, &q));
    NK_CHECK(memcmp(p.replicas, q.replicas, sizeof(uint64_t) * S * 3) == 0);
    /* the single-shard call agrees, and the weight is a fixed function:
     * xxhash64 over le32(shard) || le64(node) */
    uint64_t r[3];
    uint32_t n = 0;
    NK_REQUIRE_OK(placement_shard_replicas(17, b, 5, 3, r, &n));
    NK_CHECK(n == 3 && memcmp(r, placement_replicas(&p, 17), sizeof r) == 0);
    uint8_t enc[12] = {17, 0, 0, 0, 22, 0, 0, 0, 0, 0, 0, 0};
    NK_CHECK_EQ_U64(placement_weight(17, 22), nk_xxhash64(enc, 12));
    /* replicas come best-ranked first */
    NK_CHECK(placement_weight(17, r[0]) >= placement_weight(17, r[1]));
    NK_CHECK(placement_weight(17, r[1]) >= placement_weight(17, r[2]));
    placement_free(&p);
    placement_free(&q);
}

NK_TEST(every_shard_gets_rf_distinct_members_and_load_is_spread)
{
    for (size_t n = 1; n <= 7; n++) {
        uint64_t nodes[7];
        ids(nodes, n, 1);
        struct placement p;
        NK_REQUIRE_OK(placement_compute(nodes, n, S, 3, &p));
        NK_CHECK_EQ_U64(p.rf, n < 3 ? n : 3);
        for (uint32_t s = 0; s < S; s++) {
            const uint64_t *r = placement_replicas(&p, s);
            for (uint32_t i = 0; i < p.rf; i++) {
                NK_CHECK(r[i] >= 1 && r[i] <= n);
                for (uint32_t j = 0; j < i; j++)
                    NK_CHECK(r[i] != r[j]);
            }
        }
        uint32_t lo = UINT32_MAX, hi = 0;
        for (size_t i = 0; i < n; i++) {
            uint32_t l = placement_node_load(&p, nodes[i]);
            lo = NK_MIN(lo, l);
            hi = NK_MAX(hi, l);
        }
        double fair = (double)S * p.rf / (double)n;
        fprintf(stderr, "  %zu nodes: replicas per node %u..%u (fair share %.0f)\n", n, lo, hi,
                fair);
        NK_CHECK(lo >= fair * 0.85 && hi <= fair * 1.15);
        placement_free(&p);
    }
}

NK_TEST(bad_member_lists_are_refused)
{
    uint64_t dup[3] = {1, 2, 1}, zero[2] = {0, 3}, ok[2] = {1, 2};
    struct placement p;
    nk_status s = placement_compute(dup, 3, S, 3, &p);
    NK_CHECK(s.code == NK_INVALID_ARGUMENT && strstr(nk_status_msg(s), "twice"));
    nk_status_free(&s);
    s = placement_compute(zero, 2, S, 3, &p);
    NK_CHECK(s.code == NK_INVALID_ARGUMENT);
    nk_status_free(&s);
    s = placement_compute(ok, 0, S, 3, &p);
    NK_CHECK(s.code == NK_INVALID_ARGUMENT);
    nk_status_free(&s);
    s = placement_compute(ok, 2, S, 0, &p);
    NK_CHECK(s.code == NK_INVALID_ARGUMENT);
    nk_status_free(&s);
    s = placement_compute(ok, 2, 0, 3, &p);
    NK_CHECK(s.code == NK_INVALID_ARGUMENT);
    nk_status_free(&s);
}

/* from n_old to n_new members (ids 1..n), RF 3 */
static void check_change(size_t n_old, size_t n_new, const uint64_t *old_ids,
                         const uint64_t *new_ids)
{
    struct placement a, b;
    NK_REQUIRE_OK(placement_compute(old_ids, n_old, S, 3, &a));
    NK_REQUIRE_OK(placement_compute(new_ids, n_new, S, 3, &b));
    struct placement_plan plan;
    NK_REQUIRE_OK(placement_diff(&a, &b, &plan));
    fprintf(stderr,
            "  %zu -> %zu nodes: %llu moves, minimum %llu (S*RF/N = %zu), %zu shards change\n",
            n_old, n_new, (unsigned long long)plan.moves, (unsigned long long)plan.min_moves,
            (size_t)S * 3 / NK_MAX(n_old, n_new), plan.n_changes);
    /* rendezvous loads vary by about sqrt(S*RF/N) around the fair share, so
     * a joining node may take a little less than the balanced minimum */
    double diff = (double)plan.moves - (double)plan.min_moves;
    NK_CHECK(diff <= 0.10 * (double)plan.min_moves && -diff <= 0.10 * (double)plan.min_moves);
    /* applying the plan to `a` gives `b`, and each shard moves at most one
     * replica for a one-node change */
    for (size_t i = 0; i < plan.n_changes; i++) {
        const struct placement_change *c = &plan.changes[i];
        NK_CHECK(c->n_add == 1 && c->n_remove == 1);
        NK_CHECK(!placement_has_replica(&a, c->shard, c->add[0]));
        NK_CHECK(placement_has_replica(&b, c->shard, c->add[0]));
        NK_CHECK(placement_has_replica(&a, c->shard, c->remove[0]));
        NK_CHECK(!placement_has_replica(&b, c->shard, c->remove[0]));
    }
    placement_plan_free(&plan);
    placement_free(&a);
    placement_free(&b);
}

NK_TEST(adding_or_removing_one_node_moves_about_the_minimum)
{
    uint64_t nodes[8];
    ids(nodes, 8, 1);
    for (size_t n = 3; n <= 6; n++) {
        check_change(n, n + 1, nodes, nodes);     /* node n+1 joins */
        check_change(n + 1, n, nodes, nodes);     /* the last node leaves */
    }
    /* a node in the middle leaves: 5 -> {1,2,4,5} */
    uint64_t without3[4] = {1, 2, 4, 5};
    check_change(5, 4, nodes, without3);
    /* unchanged members: no moves */
    struct placement a, b;
    NK_REQUIRE_OK(placement_compute(nodes, 4, S, 3, &a));
    NK_REQUIRE_OK(placement_compute(nodes, 4, S, 3, &b));
    struct placement_plan plan;
    NK_REQUIRE_OK(placement_diff(&a, &b, &plan));
    NK_CHECK(plan.moves == 0 && plan.min_moves == 0 && plan.n_changes == 0);
    placement_plan_free(&plan);
    placement_free(&b);
    /* other shard counts are refused */
    NK_REQUIRE_OK(placement_compute(nodes, 4, S / 2, 3, &b));
    nk_status s = placement_diff(&a, &b, &plan);
    NK_CHECK(s.code == NK_INVALID_ARGUMENT);
    nk_status_free(&s);
    placement_free(&a);
    placement_free(&b);
}

NK_TEST(growing_from_one_node_to_three_adds_exactly_the_missing_replicas)
{
    uint64_t nodes[3] = {1, 2, 3};
    struct placement a, b;
    NK_REQUIRE_OK(placement_compute(nodes, 1, S, 3, &a)); /* effective RF 1 */
    NK_REQUIRE_OK(placement_compute(nodes, 3, S, 3, &b));
    NK_CHECK(a.rf == 1 && b.rf == 3);
    struct placement_plan plan;
    NK_REQUIRE_OK(placement_diff(&a, &b, &plan));
    fprintf(stderr, "  1 -> 3 nodes (RF 1 -> 3): %llu adds, minimum %llu\n",
            (unsigned long long)plan.moves, (unsigned long long)plan.min_moves);
    NK_CHECK_EQ_U64(plan.moves, 2 * S);
    NK_CHECK_EQ_U64(plan.min_moves, 2 * S);
    for (size_t i = 0; i < plan.n_changes; i++)
        NK_CHECK(plan.changes[i].n_add == 2 && plan.changes[i].n_remove == 0);
    placement_plan_free(&plan);
    /* and shrinking RF removes without adding */
    NK_REQUIRE_OK(placement_diff(&b, &a, &plan));
    NK_CHECK(plan.moves == 0 && plan.min_moves == 0 && plan.n_changes == S);
    placement_plan_free(&plan);
    placement_free(&a);
    placement_free(&b);
}

static void balance(size_t n, bool worst)
{
    uint64_t nodes[8];
    ids(nodes, n, 1);
    struct placement p;
    NK_REQUIRE_OK(placement_compute(nodes, n, S, 3, &p));
    uint64_t leaders[S];
    for (uint32_t s = 0; s < S; s++) {
        const uint64_t *r = placement_replicas(&p, s);
        leaders[s] = r[0]; /* the preferred leader */
        if (worst) /* everything node 1 can lead, it leads */
            for (uint32_t i = 0; i < p.rf; i++)
                if (r[i] == 1)
                    leaders[s] = 1;
    }
    uint32_t before[8] = {0};
    for (uint32_t s = 0; s < S; s++)
        before[leaders[s] - 1]++;
    uint32_t ceil = (S + (uint32_t)n - 1) / (uint32_t)n;
    uint64_t bound = 0;
    for (size_t i = 0; i < n; i++)
        bound += before[i] > ceil ? before[i] - ceil : 0;
    struct placement_transfer *tr;
    size_t ntr;
    NK_REQUIRE_OK(placement_balance_leaders(&p, leaders, nodes, n, &tr, &ntr));
    for (size_t i = 0; i < ntr; i++) {
        NK_CHECK(leaders[tr[i].shard] == tr[i].from);
        NK_CHECK(placement_has_replica(&p, tr[i].shard, tr[i].to));
        leaders[tr[i].shard] = tr[i].to;
    }
    uint32_t after[8] = {0}, lo = UINT32_MAX, hi = 0, blo = UINT32_MAX, bhi = 0;
    for (uint32_t s = 0; s < S; s++)
        after[leaders[s] - 1]++;
    for (size_t i = 0; i < n; i++) {
        lo = NK_MIN(lo, after[i]);
        hi = NK_MAX(hi, after[i]);
        blo = NK_MIN(blo, before[i]);
        bhi = NK_MAX(bhi, before[i]);
    }
    fprintf(stderr,
            "  %zu nodes%s: leaders per node %u..%u before, %u..%u after; %zu transfers "
            "(lower bound %llu)\n",
            n, worst ? " (node 1 leads all it can)" : " (preferred leaders)", blo, bhi, lo, hi, ntr,
            (unsigned long long)bound);
    NK_CHECK(hi - lo <= 1);
    NK_CHECK(ntr <= bound + bound / 10 + 1);
    free(tr);
    placement_free(&p);
}

NK_TEST(leader_balancing_spreads_leaders_within_one_with_few_transfers)
{
    for (size_t n = 3; n <= 5; n++) {
        balance(n, false);
        balance(n, true);
    }
}

NK_TEST(leader_balancing_ignores_leaderless_shards_and_ineligible_nodes)
{
    uint64_t nodes[4] = {1, 2, 3, 4};
    struct placement p;
    NK_REQUIRE_OK(placement_compute(nodes, 4, 64, 3, &p));
    uint64_t leaders[64];
    for (uint32_t s = 0; s < 64; s++)
        leaders[s] = s % 3 == 0 ? 0 : placement_replicas(&p, s)[0];
    /* node 4 is down: only 1..3 are eligible; shards it leads stay put */
    struct placement_transfer *tr;
    size_t ntr;
    NK_REQUIRE_OK(placement_balance_leaders(&p, leaders, nodes, 3, &tr, &ntr));
    for (size_t i = 0; i < ntr; i++) {
        NK_CHECK(tr[i].to != 4 && tr[i].from != 4);
        NK_CHECK(leaders[tr[i].shard] != 0);
    }
    free(tr);
    placement_free(&p);
}
