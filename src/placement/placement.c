/*
 * placement.c: rendezvous hashing of shards over members, the diff between
 * two placements, and leader balancing (placement.h says what and why).
 */
#include <stdlib.h>

#include "placement/placement.h"

uint64_t placement_weight(uint32_t shard, uint64_t node)
{
    uint8_t b[12];
    nk_enc_fixed32(b, shard);
    nk_enc_fixed64(b + 4, node);
    return nk_xxhash64(b, sizeof b);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Checks the member list; writes a sorted copy (caller frees). */
static nk_status check_nodes(const uint64_t *nodes, size_t n, uint32_t rf, uint64_t **sorted)
{
    if (n == 0)
        return nk_status_make(NK_INVALID_ARGUMENT, "placement: no members");
    if (n > PLACEMENT_MAX_NODES)
        return nk_status_make(NK_INVALID_ARGUMENT, "placement: %zu members exceed %d", n,
                              PLACEMENT_MAX_NODES);
    if (rf == 0 || rf > PLACEMENT_MAX_RF)
        return nk_status_make(NK_INVALID_ARGUMENT, "placement: replication factor %u not in 1..%d",
                              rf, PLACEMENT_MAX_RF);
    uint64_t *s = nk_malloc(n * sizeof *s);
    memcpy(s, nodes, n * sizeof *s);
    qsort(s, n, sizeof *s, cmp_u64);
    for (size_t i = 0; i < n; i++) {
        if (s[i] == 0 || (i > 0 && s[i] == s[i - 1])) {
            uint64_t bad = s[i];
            free(s);
            return nk_status_make(NK_INVALID_ARGUMENT, "placement: member id %llu %s",
                                  (unsigned long long)bad, bad ? "listed twice" : "is invalid");
        }
    }
    *sorted = s;
    return NK_OK;
}

/* Top-k selection by weight (k <= 16): insertion into a small sorted array. */
static uint32_t top_replicas(uint32_t shard, const uint64_t *nodes, size_t n, uint32_t k,
                             uint64_t *out)
{
    uint64_t w[PLACEMENT_MAX_RF];
    uint32_t have = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t wi = placement_weight(shard, nodes[i]);
        /* position: after every better (higher weight, or equal and lower id) */
        uint32_t pos = have;
        while (pos > 0 && (w[pos - 1] < wi || (w[pos - 1] == wi && out[pos - 1] > nodes[i])))
            pos--;
        if (pos >= k)
            continue;
        uint32_t end = have < k ? have : k - 1;
        for (uint32_t j = end; j > pos; j--) {
            w[j] = w[j - 1];
            out[j] = out[j - 1];
        }
        w[pos] = wi;
        out[pos] = nodes[i];
        if (have < k)
            have++;
    }
    return have;
}

nk_status placement_shard_replicas(uint32_t shard, const uint64_t *nodes, size_t n, uint32_t rf,
                                   uint64_t *out, uint32_t *count)
{
    uint64_t *sorted;
    NK_TRY(check_nodes(nodes, n, rf, &sorted));
    *count = top_replicas(shard, sorted, n, (uint32_t)NK_MIN((size_t)rf, n), out);
    free(sorted);
    return NK_OK;
}

nk_status placement_compute(const uint64_t *nodes, size_t n, uint32_t total_shards, uint32_t rf,
                            struct placement *out)
{
    memset(out, 0, sizeof *out);
    if (total_shards == 0 || total_shards > PLACEMENT_MAX_SHARDS)
        return nk_status_make(NK_INVALID_ARGUMENT, "placement: total_shards %u not in 1..%d",
                              total_shards, PLACEMENT_MAX_SHARDS);
    uint64_t *sorted;
    NK_TRY(check_nodes(nodes, n, rf, &sorted));
    uint32_t k = (uint32_t)NK_MIN((size_t)rf, n);
    out->total_shards = total_shards;
    out->rf = k;
    out->n_nodes = n;
    out->nodes = sorted;
    out->replicas = nk_malloc((size_t)total_shards * k * sizeof *out->replicas);
    for (uint32_t s = 0; s < total_shards; s++) {
        uint32_t got = top_replicas(s, sorted, n, k, out->replicas + (size_t)s * k);
        NK_ASSERT(got == k);
    }
    return NK_OK;
}

void placement_free(struct placement *p)
{
    free(p->nodes);
    free(p->replicas);
    memset(p, 0, sizeof *p);
}

bool placement_has_replica(const struct placement *p, uint32_t shard, uint64_t node)
{
    const uint64_t *r = placement_replicas(p, shard);
    for (uint32_t i = 0; i < p->rf; i++)
        if (r[i] == node)
            return true;
    return false;
}

uint32_t placement_node_load(const struct placement *p, uint64_t node)
{
    uint32_t load = 0;
    for (size_t i = 0; i < (size_t)p->total_shards * p->rf; i++)
        load += p->replicas[i] == node;
    return load;
}

static bool member(const uint64_t *sorted, size_t n, uint64_t id)
{
    return bsearch(&id, sorted, n, sizeof id, cmp_u64) != NULL;
}

/* ------------------------------------------------------------------- diff */

nk_status placement_diff(const struct placement *from, const struct placement *to,
                         struct placement_plan *out)
{
    memset(out, 0, sizeof *out);
    if (from->total_shards != to->total_shards)
        return nk_status_make(NK_INVALID_ARGUMENT,
                              "placement: diff needs the same total_shards (from %u, to %u)",
                              from->total_shards, to->total_shards);
    uint64_t need = 0; /* adds no plan can avoid: RF minus what can be kept */
    for (uint32_t s = 0; s < to->total_shards; s++) {
        const uint64_t *a = placement_replicas(from, s), *b = placement_replicas(to, s);
        struct placement_change ch = {.shard = s};
        for (uint32_t i = 0; i < to->rf; i++)
            if (!placement_has_replica(from, s, b[i]))
                ch.add[ch.n_add++] = b[i];
        uint32_t keepable = 0;
        for (uint32_t i = 0; i < from->rf; i++) {
            if (!placement_has_replica(to, s, a[i]))
                ch.remove[ch.n_remove++] = a[i];
            keepable += member(to->nodes, to->n_nodes, a[i]);
        }
        need += to->rf - NK_MIN(keepable, to->rf);
        if (!ch.n_add && !ch.n_remove)
            continue;
        if (out->n_changes % 64 == 0)
            out->changes =
                nk_realloc(out->changes, (out->n_changes + 64) * sizeof *out->changes);
        out->changes[out->n_changes++] = ch;
        out->moves += ch.n_add;
    }
    /* the theoretical minimum (placement.h) */
    uint64_t arrived = 0;
    uint64_t share = (uint64_t)to->total_shards * to->rf / to->n_nodes;
    for (size_t i = 0; i < to->n_nodes; i++)
        if (!member(from->nodes, from->n_nodes, to->nodes[i]))
            arrived += share;
    out->min_moves = NK_MAX(need, arrived);
    return NK_OK;
}

void placement_plan_free(struct placement_plan *plan)
{
    free(plan->changes);
    memset(plan, 0, sizeof *plan);
}

/* ------------------------------------------------------- leader balancing */

static ptrdiff_t index_of(const uint64_t *sorted, size_t n, uint64_t id)
{
    const uint64_t *p = bsearch(&id, sorted, n, sizeof id, cmp_u64);
    return p ? p - sorted : -1;
}

nk_status placement_balance_leaders(const struct placement *p, const uint64_t *leaders,
                                    const uint64_t *nodes, size_t n_nodes,
                                    struct placement_transfer **out, size_t *n_out)
{
    *out = NULL;
    *n_out = 0;
    uint64_t *el;
    NK_TRY(check_nodes(nodes, n_nodes, 1, &el));
    uint32_t *count = nk_calloc(n_nodes, sizeof *count);
    bool *moved = nk_calloc(p->total_shards ? p->total_shards : 1, sizeof *moved);
    bool *stuck = nk_calloc(n_nodes, sizeof *stuck);
    uint64_t *lead = nk_malloc((p->total_shards ? p->total_shards : 1) * sizeof *lead);
    memcpy(lead, leaders, p->total_shards * sizeof *lead);
    for (uint32_t s = 0; s < p->total_shards; s++) {
        ptrdiff_t i = lead[s] ? index_of(el, n_nodes, lead[s]) : -1;
        if (i >= 0)
            count[i]++;
    }
    struct placement_transfer *tr = NULL;
    size_t ntr = 0;
    for (;;) {
        /* the most loaded node that can still give */
        ptrdiff_t d = -1;
        uint32_t lo = UINT32_MAX;
        for (size_t i = 0; i < n_nodes; i++) {
            lo = NK_MIN(lo, count[i]);
            if (!stuck[i] && (d < 0 || count[i] > count[d]))
                d = (ptrdiff_t)i;
        }
        if (d < 0 || count[d] <= lo + 1)
            break; /* spread within one: balanced */
        /* the least loaded replica of any shard d leads, if that helps */
        uint32_t best_s = 0;
        ptrdiff_t best_r = -1;
        for (uint32_t s = 0; s < p->total_shards; s++) {
            if (moved[s] || lead[s] != el[d])
                continue;
            const uint64_t *r = placement_replicas(p, s);
            for (uint32_t k = 0; k < p->rf; k++) {
                ptrdiff_t ri = index_of(el, n_nodes, r[k]);
                if (ri < 0 || ri == d || count[ri] + 1 >= count[d])
                    continue;
                if (best_r < 0 || count[ri] < count[best_r]) {
                    best_r = ri;
                    best_s = s;
                }
            }
            if (best_r >= 0 && count[best_r] == lo)
                break; /* cannot do better than the minimum */
        }
        if (best_r < 0) {
            stuck[d] = true;
            continue;
        }
        if (ntr % 64 == 0)
            tr = nk_realloc(tr, (ntr + 64) * sizeof *tr);
        tr[ntr++] = (struct placement_transfer){best_s, el[d], el[best_r]};
        lead[best_s] = el[best_r];
        moved[best_s] = true;
        count[d]--;
        count[best_r]++;
        memset(stuck, 0, n_nodes * sizeof *stuck); /* loads changed */
    }
    free(count);
    free(moved);
    free(stuck);
    free(lead);
    free(el);
    *out = tr;
    *n_out = ntr;
    return NK_OK;
}
