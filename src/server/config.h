/*
 * config: the norikv-server configuration: defaults, the YAML file, command
 * line flags, validation.
 *
 * `norikv-server [config.yaml] [flags]`. Every setting has a YAML key
 * (NoriKV v1's keys as they are: node_id, rpc_addr, http_addr, peer_addr,
 * data_dir, cluster.seed_nodes, cluster.total_shards,
 * cluster.replication_factor, telemetry.prometheus.enabled, plus this
 * server's own under storage., raft., kv. and api.) and a flag named after
 * the key (dots and underscores become dashes: cluster.total_shards is
 * --cluster-total-shards). Precedence: defaults < file < flags, whatever the
 * order on the command line. NoriKV v1 keys that this server does not use
 * (telemetry.otlp.*, telemetry.prometheus.port) are accepted with a warning;
 * any other unknown key is an error naming the key and its line.
 * docs/configuration.md lists every key; config_usage() prints every flag
 * with its default, from the same table the parser uses.
 *
 * Values: sizes take KiB/MiB/GiB/TiB (powers of 1024) or KB/MB/GB/TB (powers
 * of 1000) or a bare number of bytes; durations take us/ms/s/m/h/d or a bare
 * number in the key's base unit (named in the docs); booleans
 * true/false/yes/no/on/off; addresses host:port or [ipv6]:port, port 0
 * meaning "pick a free port".
 *
 * Memory: struct config is plain data with fixed-size fields (no pointers);
 * copy it freely. Errors are nk_status values owned by the caller.
 * Thread-safety: the functions touch only the struct they are given.
 */
#ifndef NK_SERVER_CONFIG_H
#define NK_SERVER_CONFIG_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "util/util.h"

#define CONFIG_ADDR_MAX     272  /* host (<= 253) + brackets + ":65535" + NUL */
#define CONFIG_PATH_MAX     4096 /* data_dir and the config path, incl. NUL */
#define CONFIG_URL_MAX      512  /* telemetry.otlp.endpoint, incl. NUL */
#define CONFIG_NODE_ID_MAX  128  /* incl. NUL */
#define CONFIG_MAX_SEEDS    64   /* cluster.seed_nodes entries */
#define CONFIG_MAX_WARNINGS 32   /* further warnings are counted, not kept */
#define CONFIG_WARNING_MAX  320  /* one warning, incl. NUL */
#define CONFIG_FILE_MAX     (1u << 20) /* a larger config file is refused */

/* Default listen addresses (ARCHITECTURE.md). */
#define CONFIG_DEFAULT_RPC_ADDR  "127.0.0.1:9001"
#define CONFIG_DEFAULT_PEER_ADDR "127.0.0.1:9101"
#define CONFIG_DEFAULT_HTTP_ADDR "127.0.0.1:9201"

enum config_fsync {
    CONFIG_FSYNC_ALWAYS = 0, /* fdatasync every log batch before acknowledging it */
    CONFIG_FSYNC_BATCH = 1,  /* acknowledge after write(); fdatasync every window */
    CONFIG_FSYNC_OS = 2,     /* write() only; the kernel decides when to flush */
};

struct config {
    /* identity and listeners */
    /* explicit, or derived from rpc_addr by config_derive_node_id(); with
     * port 0 the server should derive it again from the bound port */
    char node_id[CONFIG_NODE_ID_MAX];
    char rpc_addr[CONFIG_ADDR_MAX];   /* client gRPC */
    char http_addr[CONFIG_ADDR_MAX];  /* HTTP: health, metrics, JSON facade */
    char peer_addr[CONFIG_ADDR_MAX];  /* node-to-node */
    char data_dir[CONFIG_PATH_MAX];
    bool ephemeral;                   /* in memory, no data_dir */
    enum nk_log_level log_level;

    /* cluster */
    char seed_nodes[CONFIG_MAX_SEEDS][CONFIG_ADDR_MAX]; /* peer addresses */
    uint32_t n_seed_nodes;                              /* 0: one-node cluster */
    uint32_t total_shards;                              /* 1..65536 */
    uint32_t replication_factor;                        /* effective value */
    char join_addr[CONFIG_ADDR_MAX];                    /* "": not joining */
    uint64_t dead_node_timeout_ms;
    uint32_t max_concurrent_moves;
    uint64_t move_bandwidth;                            /* bytes/s; 0: unlimited */

    /* telemetry */
    bool prometheus_enabled; /* serve /metrics */
    /* OTLP export (telemetry.otlp.*; docs/observability.md) */
    bool otlp_enabled;
    char otlp_endpoint[CONFIG_URL_MAX];
    uint64_t otlp_metrics_interval_ms, otlp_timeout_ms;
    double otlp_trace_sample_ratio;

    /* storage */
    enum config_fsync wal_fsync;
    uint64_t group_commit_window_us; /* always: max wait to grow a batch; batch: sync period */
    uint64_t memtable_size;          /* bytes */
    uint64_t block_cache_size;       /* bytes; 0 disables the cache */

    /* raft */
    uint64_t tick_interval_ms;
    uint32_t election_ticks;  /* election timeout = election_ticks * tick_interval */
    /* watch.* (docs/watch.md "Retention") */
    uint32_t watch_retention_entries;
    uint64_t watch_retention_bytes, watch_retention_age_ms;
    /* swim.* (docs/swim.md "In the node") */
    uint64_t swim_probe_interval_ms, swim_probe_timeout_ms;
    uint32_t swim_suspicion_mult, swim_suspicion_max_mult;
    bool swim_lifeguard;
    uint32_t heartbeat_ticks; /* < election_ticks */
    uint32_t log_compact_entries; /* raft log compaction threshold per shard */
    uint64_t log_cache_size;      /* raft log payload cache, bytes */
    uint64_t vector_memory_budget; /* bytes all vector indexes may hold; 0: half of RAM */
    uint64_t lease_margin_ms; /* lease = election timeout - margin (< election timeout) */
    uint32_t max_inflight_proposals; /* node-wide bound; full: RESOURCE_EXHAUSTED */

    /* kv and api */
    uint64_t idempotency_retention_ms;
    uint64_t request_deadline_ms; /* for calls that carry no deadline of their own */

    /* where the values came from */
    char config_path[CONFIG_PATH_MAX]; /* "" when no file was given */
    bool node_id_explicit;             /* set in the file or by a flag */
    bool rpc_addr_explicit;
    bool http_addr_explicit; /* CONTRACT: a taken default HTTP port falls back to a free one */
    bool peer_addr_explicit;
    bool data_dir_explicit;
    bool replication_factor_explicit;

    /* warnings met while loading (v1 keys ignored, values adjusted) */
    uint32_t n_warnings; /* may exceed CONFIG_MAX_WARNINGS; only that many kept */
    char warnings[CONFIG_MAX_WARNINGS][CONFIG_WARNING_MAX];
};

/* Every field at its default (node_id and replication_factor: see finish). */
void config_defaults(struct config *c);

/*
 * The whole start-up sequence: defaults, then the file named by --config PATH
 * (or --config=PATH, or the first positional argument), then every other flag
 * in order, then config_finish(). argv[0] is the program name. With --help
 * (or -h) anywhere, returns OK at once with *help set and nothing loaded; the
 * caller prints config_usage() and exits 0. Errors name the key or flag.
 */
nk_status config_from_args(int argc, char **argv, struct config *c, bool *help);

/* Applies a YAML file over *c (records c->config_path). */
nk_status config_load_file(struct config *c, const char *path);
/*
 * Applies YAML text over *c; name is used in messages ("name:line: ...").
 * Rejects malformed YAML, unknown keys, wrong types, out-of-range values.
 */
nk_status config_load_yaml(struct config *c, const char *text, size_t len, const char *name);
/* Applies one flag ("rpc-addr" or "--rpc-addr") with its value. */
nk_status config_apply_flag(struct config *c, const char *flag, const char *value);
/*
 * Checks what only makes sense together and derives what was left to it:
 * ephemeral listeners, replication_factor, node_id, listener clashes, raft
 * timing, the fsync window. Call once, after the file and the flags.
 */
nk_status config_finish(struct config *c);

/* --help: usage, then every flag with its key, default and meaning. */
void config_usage(FILE *out, const char *prog);
/* Logs each warning (NK_WARN, module "config"). */
void config_log_warnings(const struct config *c);
/* The effective configuration as YAML (for the start-up log). */
void config_dump(const struct config *c, struct nk_buf *out);

/*
 * "host:port" or "[v6]:port" -> host (without brackets) and port.
 * INVALID_ARGUMENT naming what is wrong otherwise.
 */
nk_status config_split_addr(const char *addr, char *host, size_t host_cap, uint16_t *port);
/* The default node id for a client address: "<host>-<port>" (safe characters). */
void config_derive_node_id(const char *host, uint16_t port, char *out, size_t cap);
const char *config_fsync_name(enum config_fsync f);

#endif /* NK_SERVER_CONFIG_H */
