/*
 * main.c: norikv-server. Reads the configuration, opens the node (storage,
 * every shard's Raft group, the Ready loop), serves gRPC and HTTP, prints the
 * READY line, and on SIGTERM or SIGINT stops accepting, finishes in-flight
 * calls, flushes and exits 0.
 *
 * --ephemeral keeps the data in memory: a private directory on tmpfs
 * (/dev/shm when present) with fsync off, removed at exit. The write path is
 * the same as on disk; only durability is given up, which is what a test
 * server wants.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api/api.h"
#include "node/node.h"
#include "rpc/rpc.h"
#include "server/config.h"

#define MODULE "server"

static int die(const char *what, nk_status *s)
{
    fprintf(stderr, "norikv-server: %s: %s\n", what, nk_status_msg(*s));
    nk_status_free(s);
    return 1;
}

static nk_status make_ephemeral_dir(char *out, size_t cap)
{
    struct stat st;
    const char *base = getenv("NORIKV_EPHEMERAL_DIR");
    if (!base)
        base = (stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode)) ? "/dev/shm" : NULL;
    if (!base)
        base = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    snprintf(out, cap, "%s/norikv-ephemeral-XXXXXX", base);
    if (!mkdtemp(out))
        return nk_status_errno(errno, "create ephemeral directory under %s", base);
    return NK_OK;
}

int main(int argc, char **argv)
{
    /* Every thread inherits this mask; the main thread takes the signals
     * with sigwait, so no handler runs in the middle of anything. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    static struct config cfg;
    bool help = false;
    nk_status s = config_from_args(argc, argv, &cfg, &help);
    if (!nk_ok(s)) {
        fprintf(stderr, "norikv-server: %s\n(see norikv-server --help)\n", nk_status_msg(s));
        nk_status_free(&s);
        return 2;
    }
    if (help) {
        config_usage(stdout, argv[0]);
        return 0;
    }
    nk_log_set_level(cfg.log_level);
    config_log_warnings(&cfg);
    const char *seeds[CONFIG_MAX_SEEDS];
    for (uint32_t i = 0; i < cfg.n_seed_nodes; i++)
        seeds[i] = cfg.seed_nodes[i];

    char data_dir[CONFIG_PATH_MAX + 64];
    if (cfg.ephemeral) {
        s = make_ephemeral_dir(data_dir, sizeof data_dir);
        if (!nk_ok(s))
            return die("ephemeral mode", &s);
    } else {
        snprintf(data_dir, sizeof data_dir, "%s", cfg.data_dir);
    }

    struct node_options no;
    node_options_default(&no);
    no.node_name = cfg.node_id;
    no.client_addr = cfg.rpc_addr;
    no.total_shards = cfg.total_shards;
    no.data_dir = data_dir;
    no.ephemeral = cfg.ephemeral;
    /* always: one fdatasync per round before anything is acknowledged;
     * batch: written at once, fdatasync every group_commit_window;
     * os: the kernel decides (docs/configuration.md) */
    no.raft_sync = cfg.wal_fsync == CONFIG_FSYNC_ALWAYS ? WAL_SYNC_ALWAYS : WAL_SYNC_OS;
    if (cfg.wal_fsync == CONFIG_FSYNC_BATCH)
        no.sync_interval_us = cfg.group_commit_window_us;
    no.tick_ms = (uint32_t)cfg.tick_interval_ms;
    no.election_ticks = cfg.election_ticks;
    no.heartbeat_ticks = cfg.heartbeat_ticks;
    no.max_pending = cfg.max_inflight_proposals;
    no.default_deadline_ms = cfg.request_deadline_ms;
    no.lsm.write_buffer_size = cfg.memtable_size;
    no.lsm.block_cache_bytes = cfg.block_cache_size;
    no.kv.idem_retention_ms = cfg.idempotency_retention_ms;
    no.kv.feed_max_entries = cfg.watch_retention_entries;
    no.kv.feed_max_bytes = cfg.watch_retention_bytes;
    no.kv.feed_max_age_ms = cfg.watch_retention_age_ms;
    no.peer_addr = cfg.peer_addr;
    no.compact_log_entries = cfg.log_compact_entries;
    no.raftlog_cache_bytes = cfg.log_cache_size;
    no.seed_nodes = seeds;
    no.n_seed_nodes = cfg.n_seed_nodes;
    no.replication_factor = cfg.replication_factor;
    no.join_addr = cfg.join_addr[0] ? cfg.join_addr : NULL;
    no.dead_node_timeout_ms = cfg.dead_node_timeout_ms;
    no.max_concurrent_moves = cfg.max_concurrent_moves;
    no.move_bandwidth = cfg.move_bandwidth;
    no.swim_probe_interval_ms = (uint32_t)cfg.swim_probe_interval_ms;
    no.swim_probe_timeout_ms = (uint32_t)cfg.swim_probe_timeout_ms;
    no.swim_suspicion_mult = cfg.swim_suspicion_mult;
    no.swim_suspicion_max_mult = cfg.swim_suspicion_max_mult;
    no.swim_disable_lifeguard = !cfg.swim_lifeguard;

    uint64_t t0 = nk_mono_ms();
    struct node *node = NULL;
    s = node_open(&no, &node);
    if (!nk_ok(s)) {
        if (cfg.ephemeral) {
            nk_status rs = nk_remove_tree(data_dir);
            nk_status_free(&rs);
        }
        return die("opening the node", &s);
    }

    struct api_options ao = {.node = node,
                             .node_id = cfg.node_id,
                             .prometheus_enabled = cfg.prometheus_enabled,
                             .vector_memory_budget = cfg.vector_memory_budget,
                             .otlp_endpoint = cfg.otlp_enabled ? cfg.otlp_endpoint : NULL,
                             .otlp_metrics_interval_ms = (uint32_t)cfg.otlp_metrics_interval_ms,
                             .otlp_timeout_ms = (uint32_t)cfg.otlp_timeout_ms,
                             .otlp_trace_sample_ratio = cfg.otlp_trace_sample_ratio};
    struct api *api = NULL;
    struct rpc_server *rpc = NULL;
    s = api_new(&ao, &api);
    /* two completion-queue workers: lease reads run entirely on them, and a
     * 2-core machine has two cores to run them on */
    struct rpc_server_options ro = {.addr = cfg.rpc_addr, .workers = 2};
    if (nk_ok(s))
        s = rpc_server_create(&ro, &rpc);
    if (nk_ok(s))
        s = api_register(api, rpc);
    if (nk_ok(s))
        s = rpc_server_start(rpc);
    char grpc_addr[CONFIG_ADDR_MAX + 8], http_addr[CONFIG_ADDR_MAX + 8];
    if (nk_ok(s)) {
        char host[256];
        uint16_t port;
        s = config_split_addr(cfg.rpc_addr, host, sizeof host, &port);
        if (nk_ok(s)) {
            snprintf(grpc_addr, sizeof grpc_addr, strchr(host, ':') ? "[%s]:%d" : "%s:%d", host,
                     rpc_server_port(rpc));
            /* a node id derived from "port 0" names the port actually bound */
            if (!cfg.node_id_explicit && port == 0)
                config_derive_node_id(host, (uint16_t)rpc_server_port(rpc), cfg.node_id,
                                      sizeof cfg.node_id);
            node_set_client_addr(node, grpc_addr, cfg.node_id_explicit ? NULL : cfg.node_id);
        }
    }
    if (nk_ok(s))
        s = api_http_start(api, cfg.http_addr, !cfg.http_addr_explicit, http_addr,
                           sizeof http_addr);
    if (!nk_ok(s)) {
        int rc = die("starting", &s);
        if (rpc)
            rpc_server_destroy(rpc);
        if (api)
            api_shutdown(api);
        node_close(node);
        api_free(api);
        if (cfg.ephemeral) {
            nk_status rs = nk_remove_tree(data_dir);
            nk_status_free(&rs);
        }
        return rc;
    }

    /* READY means ready: every shard has a leader (on a one-node cluster
     * within a round or two; on a cluster once its peers answer). Bounded,
     * and a SIGTERM meanwhile stops the server at once. */
    int sig = 0;
    for (int i = 0; i < 15000 && sig <= 0; i++) {
        struct node_stats ns;
        node_get_stats(node, &ns);
        if (ns.shards_hosted > 0 && ns.shards_ready == ns.shards_hosted)
            break;
        struct timespec wait = {0, 2000000};
        sig = sigtimedwait(&sigs, NULL, &wait);
    }
    if (sig <= 0) {
        NK_INFO(MODULE, "node %s serving %u shards: gRPC on %s, HTTP on %s, data in %s%s (%llu ms)",
                cfg.node_id, cfg.total_shards, grpc_addr, http_addr, data_dir,
                cfg.ephemeral ? " (ephemeral)" : "", (unsigned long long)(nk_mono_ms() - t0));
        printf("READY grpc=%s http=%s\n", grpc_addr, http_addr);
        fflush(stdout);
        sigwait(&sigs, &sig);
    }
    NK_INFO(MODULE, "%s: stopping (finishing in-flight calls)",
            sig == SIGTERM ? "SIGTERM" : "SIGINT");

    rpc_server_shutdown(rpc, 5000); /* refuse new calls, finish those in flight */
    api_shutdown(api);              /* HTTP and cluster watchers */
    /* completes anything left, flushes, closes files */
    bool closed_ok = node_close(node);
    rpc_server_destroy(rpc);
    api_free(api);
    if (cfg.ephemeral) {
        nk_status rs = nk_remove_tree(data_dir);
        nk_status_free(&rs);
    }
    NK_INFO(MODULE, "stopped");
    if (!closed_ok) {
        fprintf(stderr, "norikv-server: the final flush failed; the raft log still holds every "
                        "acknowledged write (replayed at the next start)\n");
        return 1;
    }
    return 0;
}
