/*
 * fuzz_config: random and mutated YAML into the config parser, and the same
 * bytes as flag values. Whatever the input, the parser returns a status
 * (never crashes, never reads out of bounds), and a configuration it accepts
 * satisfies the documented invariants.
 */
#include <stdlib.h>

#include "server/config.h"
#include "util/util.h"

static const char *const seeds[] = {
    "{node_id: n1, rpc_addr: 127.0.0.1:9001, data_dir: /tmp/d, cluster: {seed_nodes: [], "
    "total_shards: 256, replication_factor: 1}, telemetry: {prometheus: {enabled: false}, otlp: "
    "{enabled: false}}}\n",
    "node_id: \"node0\"\n"
    "rpc_addr: \"0.0.0.0:7447\"\n"
    "http_addr: \"0.0.0.0:8080\"\n"
    "data_dir: \"/var/lib/norikv\"\n"
    "cluster:\n"
    "  seed_nodes:\n"
    "    - \"10.0.1.10:7447\"\n"
    "    - \"[::1]:7447\"\n"
    "  total_shards: 1024\n"
    "  replication_factor: 3\n"
    "telemetry:\n"
    "  prometheus:\n"
    "    enabled: true\n"
    "    port: 9090\n"
    "  otlp:\n"
    "    enabled: true\n"
    "    endpoint: \"http://otlp-collector:4317\"\n",
    "storage:\n"
    "  wal_fsync: batch\n"
    "  group_commit_window: 2ms\n"
    "  memtable_size: 64MiB\n"
    "  block_cache_size: 1GiB\n"
    "raft: {tick_interval: 10ms, election_ticks: 10, heartbeat_ticks: 2, lease_margin: 20ms, "
    "max_inflight_proposals: 100}\n"
    "kv: {idempotency_retention: 24h}\n"
    "api: {request_deadline: 5s}\n"
    "log_level: debug\nephemeral: true\n",
    "a: &x [1, 2]\nb: *x\n? [k]\n: v\n",
    "%YAML 1.1\n---\nnode_id: !!str 12\n...\n",
};

size_t LLVMFuzzerSeedCorpus(const uint8_t ***out, const size_t **lens)
{
    static const uint8_t *p[NK_ARRAY_LEN(seeds)];
    static size_t l[NK_ARRAY_LEN(seeds)];
    for (size_t i = 0; i < NK_ARRAY_LEN(seeds); i++) {
        p[i] = (const uint8_t *)seeds[i];
        l[i] = strlen(seeds[i]);
    }
    *out = p;
    *lens = l;
    return NK_ARRAY_LEN(seeds);
}

static void check_invariants(const struct config *c)
{
    NK_ASSERT(c->total_shards >= 1 && c->total_shards <= 65536);
    NK_ASSERT(c->replication_factor >= 1);
    NK_ASSERT(c->n_seed_nodes <= CONFIG_MAX_SEEDS);
    NK_ASSERT(c->heartbeat_ticks < c->election_ticks);
    NK_ASSERT(memchr(c->node_id, 0, sizeof c->node_id) && c->node_id[0]);
    const char *addrs[] = {c->rpc_addr, c->http_addr, c->peer_addr};
    for (int i = 0; i < 3; i++) {
        NK_ASSERT(memchr(addrs[i], 0, CONFIG_ADDR_MAX));
        nk_status s = config_split_addr(addrs[i], NULL, 0, NULL);
        NK_ASSERT(nk_ok(s));
    }
    for (uint32_t i = 0; i < c->n_seed_nodes; i++) {
        nk_status s = config_split_addr(c->seed_nodes[i], NULL, 0, NULL);
        NK_ASSERT(nk_ok(s));
    }
    /* an accepted configuration survives a dump and reload unchanged */
    struct nk_buf out;
    nk_buf_init(&out);
    config_dump(c, &out);
    static struct config again;
    config_defaults(&again);
    nk_status s = config_load_yaml(&again, (const char *)out.data, out.len, "dump");
    NK_ASSERT(nk_ok(s));
    NK_ASSERT(again.total_shards == c->total_shards && again.memtable_size == c->memtable_size);
    NK_ASSERT(strcmp(again.node_id, c->node_id) == 0);
    nk_buf_free(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct config c; /* ~30 KiB: not on the stack */
    config_defaults(&c);
    nk_status s = config_load_yaml(&c, (const char *)data, size, "fuzz.yaml");
    if (nk_ok(s))
        s = config_finish(&c);
    if (nk_ok(s))
        check_invariants(&c);
    else
        NK_ASSERT(s.msg && s.code != NK_CODE_OK);
    nk_status_free(&s);

    /* the same bytes as the value of each flag kind */
    static const char *const flags[] = {"rpc-addr", "node-id", "cluster-total-shards",
                                        "cluster-seed-nodes", "storage-memtable-size",
                                        "kv-idempotency-retention", "ephemeral",
                                        "storage-wal-fsync"};
    char *value = malloc(size + 1);
    memcpy(value, data, size);
    value[size] = 0;
    for (size_t i = 0; i < NK_ARRAY_LEN(flags); i++) {
        config_defaults(&c);
        s = config_apply_flag(&c, flags[i], value);
        if (nk_ok(s))
            s = config_finish(&c);
        if (nk_ok(s))
            check_invariants(&c);
        nk_status_free(&s);
    }
    free(value);
    return 0;
}
