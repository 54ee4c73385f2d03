/*
 * bench_raft: how many entries per second three raft nodes commit when
 * nothing but the protocol costs anything: in-memory storage (no fsync),
 * messages handed over in-process, either encoded and decoded with the peer
 * codec (as the transport would) or passed as structs. Proposals are batched:
 * the client proposes `batch` entries between two Ready rounds. The figure
 * shows that the core is not what limits the server (one fdatasync costs
 * ~150 us on the target machine).
 *
 * A second table shows what idle groups cost a node hosting 1024 of them:
 * the time of one tick round (raft_tick + raft_has_ready/Ready on every
 * group of 3 replicas, heartbeats delivered) with the groups active-idle
 * (heartbeating) and quiesced.
 *
 * Usage: bench_raft [--seconds S] [--size BYTES] [--batch N] (default: tables)
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "raft/raft.h"

#define N 3

struct bnode {
    struct raft *r;
    struct raft_memstorage *ms;
    uint64_t applied;
};

static struct bnode nodes[N + 1];
static bool encode_msgs;
static uint64_t bytes_on_wire;

static void deliver(const struct raft_msg *m)
{
    struct bnode *to = &nodes[m->to];
    if (!encode_msgs) {
        nk_status s = raft_step(to->r, m);
        NK_ASSERT(nk_ok(s));
        return;
    }
    static struct nk_buf b;
    b.len = 0;
    raft_msg_encode(m, &b);
    bytes_on_wire += b.len;
    struct nk_arena a;
    nk_arena_init(&a);
    struct raft_msg d;
    nk_status s = raft_msg_decode(b.data, b.len, &a, &d);
    NK_ASSERT(nk_ok(s));
    s = raft_step(to->r, &d);
    NK_ASSERT(nk_ok(s));
    nk_arena_free(&a);
}

static void ready(int i)
{
    struct bnode *nd = &nodes[i];
    if (!raft_has_ready(nd->r))
        return;
    struct raft_ready rd;
    raft_ready(nd->r, &rd);
    nk_status s = raft_memstorage_append(nd->ms, rd.entries, rd.n_entries);
    NK_ASSERT(nk_ok(s));
    if (rd.hard_state_changed)
        raft_memstorage_set_hard_state(nd->ms, &rd.hard_state);
    for (size_t k = 0; k < rd.n_msgs; k++)
        deliver(&rd.msgs[k]);
    if (rd.n_committed)
        nd->applied = rd.committed[rd.n_committed - 1].index;
    raft_advance(nd->r, &rd);
    /* keep memory flat: snapshot and compact behind what was applied */
    uint64_t first = raft_first_index(nd->r);
    if (nd->applied > first + 50000) {
        s = raft_memstorage_create_snapshot(nd->ms, nd->applied, raft_applied_conf(nd->r), NULL, 0);
        NK_ASSERT(nk_ok(s));
        s = raft_memstorage_compact(nd->ms, nd->applied - 1000);
        NK_ASSERT(nk_ok(s));
    }
}

static double run(double seconds, size_t size, int batch, bool enc)
{
    encode_msgs = enc;
    bytes_on_wire = 0;
    struct raft_conf_state c = {.n_voters = N};
    for (int i = 1; i <= N; i++) {
        c.voters[i - 1] = (uint64_t)i;
    }
    for (int i = 1; i <= N; i++) {
        nodes[i].ms = raft_memstorage_new();
        nk_status s = raft_memstorage_create_snapshot(nodes[i].ms, 0, &c, NULL, 0);
        NK_ASSERT(nk_ok(s));
        struct raft_config cfg = {.id = (uint64_t)i, .storage = raft_memstorage_storage(nodes[i].ms),
                                  .rand_seed = 1};
        s = raft_new(&cfg, &nodes[i].r);
        NK_ASSERT(nk_ok(s));
        nodes[i].applied = 0;
    }
    nk_status s = raft_campaign(nodes[1].r);
    NK_ASSERT(nk_ok(s));
    for (int k = 0; k < 10; k++)
        for (int i = 1; i <= N; i++)
            ready(i);
    NK_ASSERT(raft_role(nodes[1].r) == RAFT_LEADER);
    uint8_t *payload = nk_calloc(1, size ? size : 1);
    uint64_t start_applied = nodes[1].applied, t0 = nk_mono_ns(), proposed = 0, refused = 0;
    uint64_t deadline = t0 + (uint64_t)(seconds * 1e9);
    uint64_t rounds = 0;
    while (nk_mono_ns() < deadline) {
        for (int k = 0; k < 64; k++) {
            for (int b = 0; b < batch; b++) {
                payload[0] = (uint8_t)proposed;
                s = raft_propose(nodes[1].r, payload, size, NULL, NULL);
                if (!nk_ok(s)) {
                    nk_status_free(&s);
                    refused++;
                    break;
                }
                proposed++;
            }
            for (int i = 1; i <= N; i++)
                ready(i);
            rounds++;
        }
    }
    double el = (double)(nk_mono_ns() - t0) / 1e9;
    uint64_t committed = nodes[1].applied - start_applied;
    double rate = (double)committed / el;
    printf("| %-10s | %5zu | %5d | %12.0f | %8.1f | %9.2f |\n", enc ? "encoded" : "in-process",
           size, batch, rate, rate * (double)size / 1e6, (double)committed / (double)rounds);
    (void)refused;
    free(payload);
    for (int i = 1; i <= N; i++) {
        raft_free(nodes[i].r);
        raft_memstorage_free(nodes[i].ms);
    }
    return rate;
}

/* 1024 groups x 3 replicas, all idle: cost of one tick round. */
static void idle_groups(int groups, bool quiesce)
{
    struct g {
        struct raft *r[N + 1];
        struct raft_memstorage *ms[N + 1];
    } *gs = nk_calloc((size_t)groups, sizeof(*gs));
    struct raft_conf_state c = {.n_voters = N};
    for (int i = 1; i <= N; i++)
        c.voters[i - 1] = (uint64_t)i;
    for (int g = 0; g < groups; g++)
        for (int i = 1; i <= N; i++) {
            gs[g].ms[i] = raft_memstorage_new();
            nk_status s = raft_memstorage_create_snapshot(gs[g].ms[i], 0, &c, NULL, 0);
            NK_ASSERT(nk_ok(s));
            struct raft_config cfg = {.id = (uint64_t)i,
                                      .storage = raft_memstorage_storage(gs[g].ms[i]),
                                      .rand_seed = (uint64_t)g};
            s = raft_new(&cfg, &gs[g].r[i]);
            NK_ASSERT(nk_ok(s));
        }
    /* one round: tick everyone, then Ready + deliver until quiet */
    uint64_t rounds = 0, t0 = 0, msgs = 0;
    for (int phase = 0; phase < 2; phase++) {
        int nrounds = phase == 0 ? 30 : 200;
        if (phase == 1) {
            if (quiesce)
                for (int g = 0; g < groups; g++)
                    for (int i = 1; i <= N; i++)
                        raft_quiesce(gs[g].r[i]);
            t0 = nk_mono_ns();
            msgs = 0;
        }
        for (int k = 0; k < nrounds; k++) {
            for (int g = 0; g < groups; g++) {
                if (phase == 0 && k == 0) {
                    nk_status s = raft_campaign(gs[g].r[1]);
                    NK_ASSERT(nk_ok(s));
                }
                for (int i = 1; i <= N; i++)
                    raft_tick(gs[g].r[i]);
                for (int pass = 0; pass < 4; pass++)
                    for (int i = 1; i <= N; i++) {
                        struct raft *r = gs[g].r[i];
                        if (!raft_has_ready(r))
                            continue;
                        struct raft_ready rd;
                        raft_ready(r, &rd);
                        nk_status s = raft_memstorage_append(gs[g].ms[i], rd.entries, rd.n_entries);
                        NK_ASSERT(nk_ok(s));
                        if (rd.hard_state_changed)
                            raft_memstorage_set_hard_state(gs[g].ms[i], &rd.hard_state);
                        for (size_t m = 0; m < rd.n_msgs; m++) {
                            s = raft_step(gs[g].r[rd.msgs[m].to], &rd.msgs[m]);
                            NK_ASSERT(nk_ok(s));
                        }
                        msgs += rd.n_msgs;
                        raft_advance(r, &rd);
                    }
            }
            if (phase == 1)
                rounds++;
        }
    }
    double us = (double)(nk_mono_ns() - t0) / 1e3 / (double)rounds;
    int leaders = 0;
    for (int g = 0; g < groups; g++)
        leaders += raft_role(gs[g].r[1]) == RAFT_LEADER;
    printf("| %6d | %-9s | %10.1f | %10.3f | %10.1f |\n", groups,
           quiesce ? "quiesced" : "idle", us, us * 1000 / (groups * N),
           (double)msgs / (double)rounds);
    for (int g = 0; g < groups; g++)
        for (int i = 1; i <= N; i++) {
            raft_free(gs[g].r[i]);
            raft_memstorage_free(gs[g].ms[i]);
        }
    free(gs);
    (void)leaders;
}

int main(int argc, char **argv)
{
    double seconds = 2;
    size_t size = 0;
    int batch = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--seconds") && i + 1 < argc)
            seconds = atof(argv[++i]);
        else if (!strcmp(argv[i], "--size") && i + 1 < argc)
            size = (size_t)atol(argv[++i]);
        else if (!strcmp(argv[i], "--batch") && i + 1 < argc)
            batch = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: %s [--seconds S] [--size BYTES] [--batch N]\n", argv[0]);
            return 2;
        }
    }
    printf("raft core: 3 nodes, one process, in-memory storage, %.1f s per row\n\n", seconds);
    printf("| messages   | bytes | batch | entries/s    | MB/s     | per round |\n");
    printf("|------------|-------|-------|--------------|----------|-----------|\n");
    if (size || batch) {
        run(seconds, size ? size : 128, batch ? batch : 64, true);
        return 0;
    }
    static const int batches[] = {1, 16, 64, 256};
    for (size_t i = 0; i < NK_ARRAY_LEN(batches); i++)
        run(seconds, 128, batches[i], true);
    run(seconds, 128, 64, false);
    run(seconds, 1024, 64, true);
    printf("\nidle groups (3 replicas each, all in one process), one tick round:\n\n");
    printf("| groups | state     | us/round   | ns/replica | msgs/round |\n");
    printf("|--------|-----------|------------|------------|------------|\n");
    idle_groups(1024, false);
    idle_groups(1024, true);
    return 0;
}
