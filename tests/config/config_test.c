/*
 * config_test: norikv-server's configuration from real files and argv:
 * NoriKV v1 files load unchanged, flags override the file, every error names
 * the key (and the line), --help and docs/configuration.md list every flag.
 */
#define _GNU_SOURCE /* memmem */
#include <stdarg.h>
#include <string.h>

#include "server/config.h"
#include "testlib.h"

/* Writes text to <tmpdir>/<name> and returns the path (static buffer per call site). */
static const char *write_file(const char *name, const char *text, char *path, size_t cap)
{
    snprintf(path, cap, "%s/%s", nk_test_tmpdir(), name);
    FILE *f = fopen(path, "w");
    NK_ASSERT(f);
    fputs(text, f);
    fclose(f);
    return path;
}

/* config_from_args over a NULL-terminated list of arguments. */
static nk_status run_args(struct config *c, bool *help, ...)
{
    char *argv[32];
    int argc = 0;
    argv[argc++] = "norikv-server";
    va_list ap;
    va_start(ap, help);
    char *a;
    while ((a = va_arg(ap, char *)) != NULL && argc < 31)
        argv[argc++] = a;
    va_end(ap);
    argv[argc] = NULL;
    return config_from_args(argc, argv, c, help);
}

static bool has_warning(const struct config *c, const char *needle)
{
    for (uint32_t i = 0; i < c->n_warnings && i < CONFIG_MAX_WARNINGS; i++)
        if (strstr(c->warnings[i], needle))
            return true;
    return false;
}

/* Expects an error of `code` whose message holds every NULL-terminated needle. */
static bool error_says(nk_status s, enum nk_code code, ...)
{
    bool ok = s.code == code;
    va_list ap;
    va_start(ap, code);
    const char *needle;
    while ((needle = va_arg(ap, const char *)) != NULL)
        ok = ok && s.msg && strstr(s.msg, needle);
    va_end(ap);
    if (!ok)
        fprintf(stderr, "  unexpected status %s: %s\n", nk_code_name(s.code), nk_status_msg(s));
    nk_status_free(&s);
    return ok;
}

static nk_status load_text(struct config *c, const char *text)
{
    config_defaults(c);
    nk_status s = config_load_yaml(c, text, strlen(text), "test.yaml");
    if (nk_ok(s))
        s = config_finish(c);
    return s;
}

/* -------------------------------------------------------------- NoriKV v1 */

NK_TEST(norikv_v1_yaml_of_issue_4_loads_unchanged_with_its_otlp_keys_live)
{
    char yaml[1024], path[1024], data[1024];
    snprintf(data, sizeof data, "%s/data", nk_test_tmpdir());
    /* the exact shape of the issue, in flow style, as a test would write it */
    snprintf(yaml, sizeof yaml,
             "{node_id: n1, rpc_addr: 127.0.0.1:47123, data_dir: %s, cluster: {seed_nodes: [], "
             "total_shards: 256, replication_factor: 1}, telemetry: {prometheus: {enabled: false}, "
             "otlp: {enabled: false}}}\n",
             data);
    write_file("v1.yaml", yaml, path, sizeof path);
    struct config c;
    bool help;
    NK_REQUIRE_OK(run_args(&c, &help, path, NULL));
    NK_CHECK(!help);
    NK_CHECK(strcmp(c.node_id, "n1") == 0 && c.node_id_explicit);
    NK_CHECK(strcmp(c.rpc_addr, "127.0.0.1:47123") == 0 && c.rpc_addr_explicit);
    NK_CHECK(strcmp(c.data_dir, data) == 0);
    NK_CHECK(c.n_seed_nodes == 0);
    NK_CHECK(c.total_shards == 256);
    NK_CHECK(c.replication_factor == 1);
    NK_CHECK(!c.prometheus_enabled);
    NK_CHECK(strcmp(c.config_path, path) == 0);
    /* http_addr was not configured: the default, marked as such */
    NK_CHECK(strcmp(c.http_addr, CONFIG_DEFAULT_HTTP_ADDR) == 0 && !c.http_addr_explicit);
    NK_CHECK(c.n_warnings == 0);
    NK_CHECK(!c.otlp_enabled);

    /* the same in block style, quoted as v1's documentation writes it */
    snprintf(yaml, sizeof yaml,
             "# NoriKV v1\n"
             "node_id: \"n1\"\n"
             "rpc_addr: \"127.0.0.1:47123\"\n"
             "http_addr: \"127.0.0.1:47124\"\n"
             "data_dir: \"%s\"\n"
             "cluster:\n"
             "  seed_nodes: []\n"
             "  total_shards: 256\n"
             "  replication_factor: 1\n"
             "telemetry:\n"
             "  prometheus:\n"
             "    enabled: false\n"
             "    port: 9090\n"
             "  otlp:\n"
             "    enabled: false\n"
             "    endpoint: \"http://otlp-collector:4317\"\n",
             data);
    write_file("v1-block.yaml", yaml, path, sizeof path);
    NK_REQUIRE_OK(run_args(&c, &help, "--config", path, NULL));
    NK_CHECK(c.total_shards == 256 && !c.prometheus_enabled && c.replication_factor == 1);
    NK_CHECK(strcmp(c.http_addr, "127.0.0.1:47124") == 0 && c.http_addr_explicit);
    NK_CHECK(c.n_warnings == 1);
    NK_CHECK(has_warning(&c, "v1-block.yaml:13: telemetry.prometheus.port"));
    NK_CHECK(!c.otlp_enabled && strcmp(c.otlp_endpoint, "http://otlp-collector:4317") == 0);
}

NK_TEST(defaults_without_a_file_are_those_of_the_contract)
{
    struct config c;
    bool help;
    NK_REQUIRE_OK(run_args(&c, &help, NULL));
    NK_CHECK(strcmp(c.rpc_addr, "127.0.0.1:9001") == 0);
    NK_CHECK(strcmp(c.http_addr, "127.0.0.1:9201") == 0);
    NK_CHECK(strcmp(c.peer_addr, "127.0.0.1:9101") == 0);
    NK_CHECK(strcmp(c.data_dir, "./norikv-data") == 0);
    NK_CHECK(strcmp(c.node_id, "127.0.0.1-9001") == 0 && !c.node_id_explicit);
    NK_CHECK(c.total_shards == 1024 && c.replication_factor == 1 && c.n_seed_nodes == 0);
    NK_CHECK(c.prometheus_enabled && !c.ephemeral && c.log_level == NK_LOG_INFO);
    NK_CHECK(c.wal_fsync == CONFIG_FSYNC_ALWAYS && c.group_commit_window_us == 0);
    NK_CHECK(c.memtable_size == 64u << 20 && c.block_cache_size == 256u << 20);
    NK_CHECK(c.idempotency_retention_ms == 24ull * 3600 * 1000);
    NK_CHECK(c.tick_interval_ms == 100 && c.election_ticks == 6 && c.heartbeat_ticks == 1);
    NK_CHECK(c.lease_margin_ms == 100 && c.max_inflight_proposals == 4096);
    NK_CHECK(c.request_deadline_ms == 5000);
    NK_CHECK(!c.http_addr_explicit && !c.rpc_addr_explicit && !c.peer_addr_explicit);
    NK_CHECK(c.n_warnings == 0 && c.config_path[0] == 0);
}

/* ------------------------------------------------------------------ flags */

NK_TEST(flags_override_the_file_wherever_they_stand_on_the_command_line)
{
    char path[1024];
    write_file("base.yaml",
               "rpc_addr: 127.0.0.1:7001\n"
               "http_addr: 127.0.0.1:7201\n"
               "data_dir: /from/file\n"
               "log_level: debug\n"
               "cluster:\n"
               "  total_shards: 64\n"
               "  seed_nodes: [\"10.0.0.1:9101\", \"10.0.0.2:9101\"]\n"
               "storage:\n"
               "  wal_fsync: batch\n"
               "  group_commit_window: 2ms\n"
               "  memtable_size: 32MiB\n"
               "raft:\n"
               "  election_ticks: 20\n"
               "kv:\n"
               "  idempotency_retention: 1h\n",
               path, sizeof path);
    struct config c;
    bool help;
    /* flags before and after the positional file, both "--f v" and "--f=v" */
    NK_REQUIRE_OK(run_args(&c, &help, "--cluster-total-shards", "512", path, "--data-dir=/from/flag",
                           "--rpc-addr", "127.0.0.1:7777", "--storage-memtable-size", "128MiB",
                           "--telemetry-prometheus-enabled=false", "--kv-idempotency-retention",
                           "90m", "--cluster-seed-nodes", "10.0.0.9:9101", "--log-level=warn",
                           NULL));
    NK_CHECK(c.total_shards == 512);
    NK_CHECK(strcmp(c.data_dir, "/from/flag") == 0);
    NK_CHECK(strcmp(c.rpc_addr, "127.0.0.1:7777") == 0);
    NK_CHECK(strcmp(c.node_id, "127.0.0.1-7777") == 0); /* derived from the final rpc_addr */
    NK_CHECK(strcmp(c.http_addr, "127.0.0.1:7201") == 0 && c.http_addr_explicit);
    NK_CHECK(c.memtable_size == 128u << 20);
    NK_CHECK(!c.prometheus_enabled);
    NK_CHECK(c.idempotency_retention_ms == 90ull * 60 * 1000);
    NK_CHECK(c.n_seed_nodes == 1 && strcmp(c.seed_nodes[0], "10.0.0.9:9101") == 0);
    NK_CHECK(c.replication_factor == 3); /* seeds given, not set: 3 */
    NK_CHECK(c.log_level == NK_LOG_WARN);
    /* untouched by flags: the file's */
    NK_CHECK(c.wal_fsync == CONFIG_FSYNC_BATCH && c.group_commit_window_us == 2000);
    NK_CHECK(c.election_ticks == 20);

    /* the last of two flags wins; --config=PATH; a bare boolean flag */
    char cfg[1100];
    snprintf(cfg, sizeof cfg, "--config=%s", path);
    NK_REQUIRE_OK(run_args(&c, &help, "--cluster-total-shards=2", cfg, "--cluster-total-shards=3",
                           "--ephemeral", "--cluster-seed-nodes=", NULL));
    NK_CHECK(c.total_shards == 3 && c.ephemeral && c.n_seed_nodes == 0);
    NK_CHECK(c.replication_factor == 1);
}

NK_TEST(help_is_reported_before_anything_is_loaded_and_lists_every_flag_with_its_default)
{
    struct config c;
    bool help = false;
    NK_REQUIRE_OK(run_args(&c, &help, "/does/not/exist.yaml", "--bogus", "--help", NULL));
    NK_CHECK(help);
    NK_REQUIRE_OK(run_args(&c, &help, "-h", NULL));
    NK_CHECK(help);

    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    config_usage(f, "norikv-server");
    fclose(f);
    static const char *must[] = {
        "--config PATH",
        "--help",
        "--node-id ID",
        "--rpc-addr HOST:PORT",
        "default: 127.0.0.1:9001",
        "--http-addr HOST:PORT",
        "default: 127.0.0.1:9201",
        "--peer-addr HOST:PORT",
        "default: 127.0.0.1:9101",
        "--data-dir DIR",
        "default: ./norikv-data",
        "--ephemeral",
        "--log-level NAME",
        "--cluster-seed-nodes",
        "--cluster-total-shards N",
        "default: 1024",
        "--cluster-replication-factor N",
        "--telemetry-prometheus-enabled",
        "--telemetry-otlp-enabled",
        "--storage-wal-fsync NAME",
        "default: always",
        "--storage-group-commit-window DURATION",
        "--storage-memtable-size SIZE",
        "default: 64MiB",
        "--storage-block-cache-size SIZE",
        "--raft-tick-interval DURATION",
        "--raft-election-ticks N",
        "--raft-heartbeat-ticks N",
        "--raft-lease-margin DURATION",
        "--raft-max-inflight-proposals N",
        "--kv-idempotency-retention DURATION",
        "default: 24h",
        "--api-request-deadline DURATION",
    };
    for (size_t i = 0; i < NK_ARRAY_LEN(must); i++) {
        if (!strstr(text, must[i])) {
            fprintf(stderr, "  --help lacks \"%s\"\n", must[i]);
            nk_test_failed_ = 1;
        }
    }
    free(text);
}

NK_TEST(docs_configuration_md_documents_every_key_and_flag_of_help)
{
    const char *src = getenv("NK_SOURCE_DIR");
    NK_REQUIRE(src);
    char path[1024];
    snprintf(path, sizeof path, "%s/docs/configuration.md", src);
    uint8_t *doc;
    size_t n;
    NK_REQUIRE_OK(nk_read_file(path, 1 << 20, &doc, &n));
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    config_usage(f, "norikv-server");
    fclose(f);
    /* every "--flag" and "key <key>," of --help must appear in the docs */
    int checked = 0;
    for (char *p = text; (p = strstr(p, "--")) != NULL; p += 2) {
        char flag[96];
        size_t k = 0;
        while (k < sizeof flag - 1 && (p[k] == '-' || (p[k] >= 'a' && p[k] <= 'z')))
            flag[k] = p[k], k++;
        flag[k] = 0;
        if (k <= 2 || p[k] == '=')
            continue;
        char needle[100];
        snprintf(needle, sizeof needle, "`%s", flag);
        if (!memmem(doc, n, needle, strlen(needle))) {
            fprintf(stderr, "  docs/configuration.md lacks %s\n", needle);
            nk_test_failed_ = 1;
        }
        checked++;
    }
    for (char *p = text; (p = strstr(p, "key ")) != NULL; p += 4) {
        char key[96];
        size_t k = 0;
        while (k < sizeof key - 1 && p[4 + k] && p[4 + k] != ',')
            key[k] = p[4 + k], k++;
        key[k] = 0;
        if (k == 0 || strspn(key, "abcdefghijklmnopqrstuvwxyz_.") != k)
            continue; /* prose, not a "key <name>," line */
        char needle[100];
        snprintf(needle, sizeof needle, "`%s`", key);
        if (!memmem(doc, n, needle, strlen(needle))) {
            fprintf(stderr, "  docs/configuration.md lacks %s\n", needle);
            nk_test_failed_ = 1;
        }
        checked++;
    }
    NK_CHECK(checked > 40);
    free(text);
    free(doc);
}

/* ------------------------------------------------------------- ephemeral */

NK_TEST(ephemeral_gives_unconfigured_listeners_free_ports_and_keeps_explicit_ones)
{
    struct config c;
    bool help;
    NK_REQUIRE_OK(run_args(&c, &help, "--ephemeral", "--rpc-addr", "127.0.0.1:0", NULL));
    NK_CHECK(c.ephemeral);
    NK_CHECK(strcmp(c.rpc_addr, "127.0.0.1:0") == 0);
    NK_CHECK(strcmp(c.http_addr, "127.0.0.1:0") == 0 && !c.http_addr_explicit);
    NK_CHECK(strcmp(c.peer_addr, "127.0.0.1:0") == 0);
    NK_REQUIRE_OK(run_args(&c, &help, "--ephemeral", "--http-addr=127.0.0.1:45555", NULL));
    NK_CHECK(strcmp(c.http_addr, "127.0.0.1:45555") == 0 && c.http_addr_explicit);
    NK_CHECK(strcmp(c.rpc_addr, "127.0.0.1:0") == 0);
    NK_REQUIRE_OK(run_args(&c, &help, "--ephemeral=false", NULL));
    NK_CHECK(!c.ephemeral && strcmp(c.rpc_addr, "127.0.0.1:9001") == 0);
    NK_REQUIRE_OK(run_args(&c, &help, "--ephemeral", "--data-dir", "/x", NULL));
    NK_CHECK(has_warning(&c, "data_dir"));
}

/* ----------------------------------------------------------------- values */

NK_TEST(sizes_durations_booleans_and_addresses_accept_their_documented_spellings)
{
    struct config c;
    NK_REQUIRE_OK(load_text(&c, "storage:\n"
                                "  memtable_size: 1GiB\n"
                                "  block_cache_size: 512 KiB\n"
                                "  group_commit_window: 250\n"
                                "raft:\n"
                                "  tick_interval: 1s\n"
                                "  lease_margin: 1500\n"
                                "kv:\n"
                                "  idempotency_retention: 2d\n"
                                "api:\n"
                                "  request_deadline: \"1500ms\"\n"
                                "telemetry:\n"
                                "  prometheus:\n"
                                "    enabled: off\n"
                                "ephemeral: yes\n"
                                "peer_addr: \"[::1]:9101\"\n"
                                "http_addr: localhost:0\n"));
    NK_CHECK(c.memtable_size == 1ull << 30 && c.block_cache_size == 512u << 10);
    NK_CHECK(c.group_commit_window_us == 250); /* bare: microseconds */
    NK_CHECK(c.tick_interval_ms == 1000 && c.lease_margin_ms == 1500);
    NK_CHECK(c.idempotency_retention_ms == 2ull * 86400000);
    NK_CHECK(c.request_deadline_ms == 1500);
    NK_CHECK(!c.prometheus_enabled && c.ephemeral);
    NK_CHECK(strcmp(c.peer_addr, "[::1]:9101") == 0);
    NK_REQUIRE_OK(load_text(&c, "storage: {memtable_size: 64MB, block_cache_size: 0}\n"));
    NK_CHECK(c.memtable_size == 64000000 && c.block_cache_size == 0);
    /* an empty file, a comment-only file and "~" are all "defaults" */
    NK_REQUIRE_OK(load_text(&c, ""));
    NK_REQUIRE_OK(load_text(&c, "# nothing\n"));
    NK_REQUIRE_OK(load_text(&c, "~\n"));
    NK_REQUIRE_OK(load_text(&c, "cluster:\ntelemetry:\n"));
    NK_CHECK(c.total_shards == 1024);

    char host[CONFIG_ADDR_MAX];
    uint16_t port;
    NK_REQUIRE_OK(config_split_addr("[fe80::1]:65535", host, sizeof host, &port));
    NK_CHECK(strcmp(host, "fe80::1") == 0 && port == 65535);
    NK_REQUIRE_OK(config_split_addr("db-1.example.com:0", host, sizeof host, &port));
    NK_CHECK(strcmp(host, "db-1.example.com") == 0 && port == 0);
    char id[CONFIG_NODE_ID_MAX];
    config_derive_node_id("::1", 7000, id, sizeof id);
    NK_CHECK(strcmp(id, "__1-7000") == 0);
    NK_CHECK(strcmp(config_fsync_name(CONFIG_FSYNC_OS), "os") == 0);
}

NK_TEST(replication_factor_defaults_to_one_alone_and_three_with_seeds)
{
    struct config c;
    NK_REQUIRE_OK(load_text(&c, "cluster:\n  replication_factor: 3\n"));
    NK_CHECK(c.replication_factor == 1 && has_warning(&c, "replication_factor"));
    NK_REQUIRE_OK(load_text(&c, "cluster:\n  seed_nodes:\n    - 10.0.0.2:9101\n"));
    NK_CHECK(c.replication_factor == 3 && c.n_seed_nodes == 1);
    NK_REQUIRE_OK(load_text(&c, "cluster:\n  seed_nodes: [a:1, b:2]\n  replication_factor: 5\n"));
    NK_CHECK(c.replication_factor == 5 && c.n_seed_nodes == 2);
    NK_CHECK(strcmp(c.seed_nodes[1], "b:2") == 0);
}

NK_TEST(dumped_configuration_loads_back_to_the_same_values)
{
    struct config a, b;
    NK_REQUIRE_OK(load_text(&a, "node_id: \"x\\\"y\"\n"
                                "rpc_addr: 0.0.0.0:1234\n"
                                "data_dir: \"/tmp/a b\"\n"
                                "cluster: {seed_nodes: [h1:1, \"[::1]:2\"], total_shards: 7, "
                                "replication_factor: 3}\n"
                                "storage: {wal_fsync: os, memtable_size: 3000000, "
                                "group_commit_window: 1ms}\n"
                                "raft: {tick_interval: 7ms, election_ticks: 30, "
                                "heartbeat_ticks: 3, lease_margin: 0}\n"
                                "log_level: error\n"));
    struct nk_buf out;
    nk_buf_init(&out);
    config_dump(&a, &out);
    config_defaults(&b);
    nk_status s = config_load_yaml(&b, (const char *)out.data, out.len, "dump");
    if (!nk_ok(s))
        fprintf(stderr, "%.*s", (int)out.len, (const char *)out.data);
    NK_REQUIRE_OK(s);
    NK_REQUIRE_OK(config_finish(&b));
    NK_CHECK(strcmp(a.node_id, b.node_id) == 0 && strcmp(a.node_id, "x\"y") == 0);
    NK_CHECK(strcmp(a.rpc_addr, b.rpc_addr) == 0 && strcmp(a.http_addr, b.http_addr) == 0);
    NK_CHECK(strcmp(a.data_dir, b.data_dir) == 0);
    NK_CHECK(a.n_seed_nodes == 2 && b.n_seed_nodes == 2);
    NK_CHECK(strcmp(b.seed_nodes[1], "[::1]:2") == 0);
    NK_CHECK(a.total_shards == b.total_shards && a.replication_factor == b.replication_factor);
    NK_CHECK(a.wal_fsync == b.wal_fsync && a.memtable_size == b.memtable_size);
    NK_CHECK(a.group_commit_window_us == b.group_commit_window_us);
    NK_CHECK(a.tick_interval_ms == b.tick_interval_ms && a.election_ticks == b.election_ticks);
    NK_CHECK(a.heartbeat_ticks == b.heartbeat_ticks && a.lease_margin_ms == b.lease_margin_ms);
    NK_CHECK(a.log_level == b.log_level && a.log_level == NK_LOG_ERROR);
    NK_CHECK(a.idempotency_retention_ms == b.idempotency_retention_ms);
    NK_CHECK(a.request_deadline_ms == b.request_deadline_ms);
    NK_CHECK(a.block_cache_size == b.block_cache_size && a.ephemeral == b.ephemeral);
    nk_buf_free(&out);
}

/* ----------------------------------------------------------------- errors */

NK_TEST(unknown_key_is_an_error_naming_the_key_and_its_line)
{
    char path[1024];
    write_file("unknown.yaml",
               "node_id: n1\n"
               "rpc_addr: 127.0.0.1:9001\n"
               "cluster:\n"
               "  total_shard: 256\n",
               path, sizeof path);
    struct config c;
    bool help;
    NK_CHECK(error_says(run_args(&c, &help, path, NULL), NK_INVALID_ARGUMENT, "unknown.yaml:4:",
                        "unknown key \"cluster.total_shard\"", "did you mean cluster.total_shards",
                        NULL));
    NK_CHECK(error_says(load_text(&c, "a: 1\n"), NK_INVALID_ARGUMENT, "test.yaml:1:",
                        "unknown key \"a\"", NULL));
    NK_CHECK(error_says(load_text(&c, "\n\ntelemetry:\n  prometheus:\n    enable: true\n"),
                        NK_INVALID_ARGUMENT, "test.yaml:5:",
                        "\"telemetry.prometheus.enable\"", NULL));
    NK_CHECK(error_says(load_text(&c, "storage:\n  fsync: always\n"), NK_INVALID_ARGUMENT,
                        "test.yaml:2:", "storage.fsync", NULL));
    NK_CHECK(error_says(load_text(&c, "node_id: a\nnode_id: b\n"), NK_INVALID_ARGUMENT,
                        "test.yaml:2:", "node_id", "twice", "line 1", NULL));
}

NK_TEST(wrong_types_are_errors_naming_the_key)
{
    struct config c;
    NK_CHECK(error_says(load_text(&c, "cluster:\n  total_shards: \"256\"\n"), NK_INVALID_ARGUMENT,
                        "test.yaml:2:", "cluster.total_shards", "expected an integer", NULL));
    NK_CHECK(error_says(load_text(&c, "cluster:\n  total_shards: many\n"), NK_INVALID_ARGUMENT,
                        "cluster.total_shards", "expected an integer", NULL));
    NK_CHECK(error_says(load_text(&c, "cluster:\n  total_shards: 1.5\n"), NK_INVALID_ARGUMENT,
                        "cluster.total_shards", NULL));
    NK_CHECK(error_says(load_text(&c, "telemetry: {prometheus: {enabled: maybe}}\n"),
                        NK_INVALID_ARGUMENT, "telemetry.prometheus.enabled", "boolean", NULL));
    NK_CHECK(error_says(load_text(&c, "ephemeral: \"true\"\n"), NK_INVALID_ARGUMENT, "ephemeral",
                        "boolean", NULL));
    NK_CHECK(error_says(load_text(&c, "cluster:\n  seed_nodes: 10.0.0.1:9101\n"),
                        NK_INVALID_ARGUMENT, "cluster.seed_nodes", "expected a list", NULL));
    NK_CHECK(error_says(load_text(&c, "cluster:\n  seed_nodes: [[a:1]]\n"), NK_INVALID_ARGUMENT,
                        "cluster.seed_nodes", NULL));
    NK_CHECK(error_says(load_text(&c, "cluster: 5\n"), NK_INVALID_ARGUMENT, "cluster",
                        "expected a section", NULL));
    NK_CHECK(error_says(load_text(&c, "rpc_addr: [127.0.0.1:1]\n"), NK_INVALID_ARGUMENT,
                        "rpc_addr", "expected a single value", NULL));
    NK_CHECK(error_says(load_text(&c, "node_id:\n"), NK_INVALID_ARGUMENT, "node_id",
                        "has no value", NULL));
    NK_CHECK(error_says(load_text(&c, "storage: {wal_fsync: sometimes}\n"), NK_INVALID_ARGUMENT,
                        "storage.wal_fsync", "always, batch, os", NULL));
    NK_CHECK(error_says(load_text(&c, "log_level: loud\n"), NK_INVALID_ARGUMENT, "log_level",
                        NULL));
    NK_CHECK(error_says(load_text(&c, "storage: {memtable_size: lots}\n"), NK_INVALID_ARGUMENT,
                        "storage.memtable_size", "size", NULL));
    NK_CHECK(error_says(load_text(&c, "api: {request_deadline: 5 years}\n"), NK_INVALID_ARGUMENT,
                        "api.request_deadline", "duration", NULL));
    NK_CHECK(error_says(load_text(&c, "api: {request_deadline: 1500us}\n"), NK_INVALID_ARGUMENT,
                        "api.request_deadline", "whole number of milliseconds", NULL));
    NK_CHECK(error_says(load_text(&c, "node_id: \"a b\"\n"), NK_INVALID_ARGUMENT, "node_id",
                        NULL));
    NK_CHECK(error_says(load_text(&c, "node_id: \"a\\0b\"\n"), NK_INVALID_ARGUMENT, "node_id",
                        "NUL", NULL));
    NK_CHECK(error_says(load_text(&c, "- a\n- b\n"), NK_INVALID_ARGUMENT, "must be a mapping",
                        NULL));
    NK_CHECK(error_says(load_text(&c, "? [a]\n: 1\n"), NK_INVALID_ARGUMENT, "key", NULL));
}

NK_TEST(out_of_range_numbers_are_errors_naming_the_key_and_the_range)
{
    struct config c;
    NK_CHECK(error_says(load_text(&c, "cluster:\n  total_shards: 0\n"), NK_INVALID_ARGUMENT,
                        "test.yaml:2:", "cluster.total_shards", "out of range", "1..65536", NULL));
    NK_CHECK(error_says(load_text(&c, "cluster:\n  total_shards: 65537\n"), NK_INVALID_ARGUMENT,
                        "cluster.total_shards", "65537", NULL));
    NK_REQUIRE_OK(load_text(&c, "cluster:\n  total_shards: 65536\n"));
    NK_CHECK(error_says(load_text(&c, "cluster:\n  total_shards: -1\n"), NK_INVALID_ARGUMENT,
                        "cluster.total_shards", "out of range", NULL));
    NK_CHECK(error_says(load_text(&c, "cluster:\n  total_shards: 99999999999999999999999\n"),
                        NK_INVALID_ARGUMENT, "cluster.total_shards", NULL));
    NK_CHECK(error_says(load_text(&c, "cluster:\n  replication_factor: 0\n"),
                        NK_INVALID_ARGUMENT, "cluster.replication_factor", NULL));
    NK_CHECK(error_says(load_text(&c, "storage: {memtable_size: 1KiB}\n"), NK_INVALID_ARGUMENT,
                        "storage.memtable_size", "1MiB..4GiB", NULL));
    NK_CHECK(error_says(load_text(&c, "kv: {idempotency_retention: 0}\n"), NK_INVALID_ARGUMENT,
                        "kv.idempotency_retention", "1s..30d", NULL));
    NK_CHECK(error_says(load_text(&c, "kv: {idempotency_retention: 365d}\n"), NK_INVALID_ARGUMENT,
                        "kv.idempotency_retention", "out of range", NULL));
    NK_CHECK(error_says(load_text(&c, "raft: {max_inflight_proposals: 0}\n"), NK_INVALID_ARGUMENT,
                        "raft.max_inflight_proposals", NULL));
    /* values that only clash together */
    NK_CHECK(error_says(load_text(&c, "raft: {election_ticks: 3, heartbeat_ticks: 3}\n"),
                        NK_INVALID_ARGUMENT, "raft.heartbeat_ticks", "raft.election_ticks", NULL));
    NK_CHECK(error_says(load_text(&c, "raft: {lease_margin: 1s}\n"), NK_INVALID_ARGUMENT,
                        "raft.lease_margin", NULL));
    NK_CHECK(error_says(load_text(&c, "storage: {wal_fsync: batch}\n"), NK_INVALID_ARGUMENT,
                        "storage.group_commit_window", NULL));
    NK_CHECK(error_says(load_text(&c, "rpc_addr: 127.0.0.1:7000\nhttp_addr: 127.0.0.1:7000\n"),
                        NK_INVALID_ARGUMENT, "rpc_addr and http_addr", NULL));
    NK_REQUIRE_OK(load_text(&c, "rpc_addr: 127.0.0.1:0\nhttp_addr: 127.0.0.1:0\n"));
}

NK_TEST(malformed_addresses_are_errors_naming_the_key_and_the_problem)
{
    static const struct {
        const char *addr, *says;
    } bad[] = {
        {"localhost", "missing :port"},
        {":9001", "missing host"},
        {"127.0.0.1:", "port"},
        {"127.0.0.1:99999", "port"},
        {"127.0.0.1:-1", "port"},
        {"127.0.0.1:80a", "port"},
        {"1.2.3.999:80", "not a valid host"},
        {"bad_host:80", "not a valid host"},
        {"::1:9001", "[address]:port"},
        {"[::1]9001", "missing :port"},
        {"[::1:9001", "closing ]"},
        {"[zz::1]:9001", "IPv6"},
        {"a..b:1", "not a valid host"},
    };
    struct config c;
    for (size_t i = 0; i < NK_ARRAY_LEN(bad); i++) {
        char yaml[256];
        snprintf(yaml, sizeof yaml, "peer_addr: \"%s\"\n", bad[i].addr);
        if (!error_says(load_text(&c, yaml), NK_INVALID_ARGUMENT, "test.yaml:1: peer_addr",
                        bad[i].says, NULL)) {
            fprintf(stderr, "  for %s\n", bad[i].addr);
            nk_test_failed_ = 1;
        }
    }
    bool help;
    NK_CHECK(error_says(run_args(&c, &help, "--rpc-addr", "nowhere", NULL), NK_INVALID_ARGUMENT,
                        "--rpc-addr (rpc_addr)", "missing :port", NULL));
    NK_CHECK(error_says(load_text(&c, "cluster: {seed_nodes: [\"a:1\", \"b\"]}\n"),
                        NK_INVALID_ARGUMENT, "cluster.seed_nodes", "\"b\"", NULL));
    NK_CHECK(error_says(load_text(&c, "cluster: {seed_nodes: [\"a:1\", \"a:1\"]}\n"),
                        NK_INVALID_ARGUMENT, "cluster.seed_nodes", "twice", NULL));
}

NK_TEST(missing_file_and_malformed_yaml_are_errors_naming_file_and_line)
{
    struct config c;
    bool help;
    char missing[1024];
    snprintf(missing, sizeof missing, "%s/nope.yaml", nk_test_tmpdir());
    NK_CHECK(error_says(run_args(&c, &help, missing, NULL), NK_NOT_FOUND, missing, "not found",
                        NULL));
    NK_CHECK(error_says(run_args(&c, &help, "--config", missing, NULL), NK_NOT_FOUND,
                        "nope.yaml", NULL));
    char path[1024];
    write_file("bad.yaml",
               "node_id: n1\n"
               "cluster:\n"
               "  total_shards: 256\n"
               " replication_factor: [1\n",
               path, sizeof path);
    NK_CHECK(error_says(run_args(&c, &help, path, NULL), NK_INVALID_ARGUMENT, "bad.yaml:",
                        "malformed YAML", NULL));
    NK_CHECK(error_says(load_text(&c, "a: b: c\n"), NK_INVALID_ARGUMENT, "test.yaml:1:",
                        "malformed YAML", NULL));
    NK_CHECK(error_says(load_text(&c, "node_id: n1\nrpc_addr: \"unterminated\n"),
                        NK_INVALID_ARGUMENT, "test.yaml:", "malformed YAML", NULL));
    NK_CHECK(error_says(load_text(&c, "node_id: n1\n---\nnode_id: n2\n"), NK_INVALID_ARGUMENT,
                        "more than one YAML document", NULL));
    NK_CHECK(error_says(load_text(&c, "node_id: *nothing\n"), NK_INVALID_ARGUMENT,
                        "malformed YAML", NULL));
    /* deep nesting is refused before libyaml's scanner slows down on it */
    char *deep = malloc(400002);
    memcpy(deep, "a: ", 3);
    memset(deep + 3, '[', 399998);
    deep[400001] = 0;
    uint64_t t0 = nk_mono_ns();
    NK_CHECK(error_says(load_text(&c, deep), NK_INVALID_ARGUMENT, "test.yaml:1:",
                        "nested deeper than 16 levels", NULL));
    fprintf(stderr, "  (informational) 400 KB of '[' rejected in %.1f ms\n",
            (double)(nk_mono_ns() - t0) / 1e6);
    free(deep);
    NK_REQUIRE_OK(load_text(&c, "cluster: {seed_nodes: [a:1]}\n"));
    /* a file above the 1 MiB bound is refused, not read */
    char *big = malloc(CONFIG_FILE_MAX + 2);
    memset(big, '#', CONFIG_FILE_MAX + 1);
    big[CONFIG_FILE_MAX + 1] = 0;
    write_file("big.yaml", big, path, sizeof path);
    free(big);
    NK_CHECK(error_says(run_args(&c, &help, path, NULL), NK_OUT_OF_RANGE, "big.yaml",
                        "limit", NULL));
    /* a directory is not a config file */
    nk_status s = run_args(&c, &help, nk_test_tmpdir(), NULL);
    NK_CHECK(s.code != NK_CODE_OK && s.msg && strstr(s.msg, "config file"));
    nk_status_free(&s);
}

NK_TEST(bad_command_lines_are_errors_naming_the_flag)
{
    struct config c;
    bool help;
    NK_CHECK(error_says(run_args(&c, &help, "--cluster-total-shard", "5", NULL),
                        NK_INVALID_ARGUMENT, "unknown flag --cluster-total-shard",
                        "did you mean --cluster-total-shards", NULL));
    NK_CHECK(error_says(run_args(&c, &help, "--data-dir", NULL), NK_INVALID_ARGUMENT,
                        "--data-dir", "needs a value", NULL));
    NK_CHECK(error_says(run_args(&c, &help, "--config", NULL), NK_INVALID_ARGUMENT, "--config",
                        NULL));
    NK_CHECK(error_says(run_args(&c, &help, "--config=", NULL), NK_INVALID_ARGUMENT,
                        "--config needs a file path", NULL));
    NK_CHECK(error_says(run_args(&c, &help, "a.yaml", "b.yaml", NULL), NK_INVALID_ARGUMENT,
                        "unexpected argument \"b.yaml\"", NULL));
    NK_CHECK(error_says(run_args(&c, &help, "-x", NULL), NK_INVALID_ARGUMENT, "unknown flag -x",
                        NULL));
    NK_CHECK(error_says(run_args(&c, &help, "--cluster-total-shards=0", NULL),
                        NK_INVALID_ARGUMENT, "--cluster-total-shards (cluster.total_shards)",
                        "out of range", NULL));
    NK_CHECK(error_says(run_args(&c, &help, "--ephemeral=perhaps", NULL), NK_INVALID_ARGUMENT,
                        "--ephemeral", "boolean", NULL));
    NK_CHECK(error_says(run_args(&c, &help, "--storage-wal-fsync", "never", NULL),
                        NK_INVALID_ARGUMENT, "--storage-wal-fsync", NULL));
    NK_CHECK(error_says(run_args(&c, &help, "--ephemeral", "false", NULL), NK_INVALID_ARGUMENT,
                        "write --ephemeral=false", NULL));
    /* v1 flags that are accepted and ignored */
    NK_REQUIRE_OK(run_args(&c, &help, "--telemetry-prometheus-port", "9090", NULL));
    NK_CHECK(has_warning(&c, "--telemetry-prometheus-port"));
}

NK_TEST(otlp_keys_take_an_http_url_and_a_ratio_and_refuse_anything_else_naming_the_key)
{
    struct config c;
    bool help;
    NK_REQUIRE_OK(run_args(&c, &help, NULL));
    NK_CHECK(!c.otlp_enabled && strcmp(c.otlp_endpoint, "http://127.0.0.1:4318") == 0);
    NK_CHECK(c.otlp_trace_sample_ratio == 0 && c.otlp_metrics_interval_ms == 10000 &&
             c.otlp_timeout_ms == 5000);
    NK_REQUIRE_OK(run_args(&c, &help, "--telemetry-otlp-enabled", "--telemetry-otlp-endpoint",
                           "http://collector:4318/base", "--telemetry-otlp-trace-sample-ratio",
                           "0.125", "--telemetry-otlp-metrics-interval", "2s", NULL));
    NK_CHECK(c.otlp_enabled && strcmp(c.otlp_endpoint, "http://collector:4318/base") == 0);
    NK_CHECK(c.otlp_trace_sample_ratio == 0.125 && c.otlp_metrics_interval_ms == 2000);
    static const char *const bad_urls[] = {"https://collector:4318", "collector:4318", "http://",
                                           "http://a b", ""};
    for (size_t i = 0; i < NK_ARRAY_LEN(bad_urls); i++)
        NK_CHECK(error_says(run_args(&c, &help, "--telemetry-otlp-endpoint", bad_urls[i], NULL),
                            NK_INVALID_ARGUMENT, "--telemetry-otlp-endpoint", "http:// URL",
                            NULL));
    static const char *const bad_ratios[] = {"-0.1", "1.5", "nan", "half", "0.5x", ""};
    for (size_t i = 0; i < NK_ARRAY_LEN(bad_ratios); i++)
        NK_CHECK(error_says(
            run_args(&c, &help, "--telemetry-otlp-trace-sample-ratio", bad_ratios[i], NULL),
            NK_INVALID_ARGUMENT, "--telemetry-otlp-trace-sample-ratio", "from 0 to 1", NULL));
    NK_CHECK(error_says(run_args(&c, &help, "--telemetry-otlp-metrics-interval", "10ms", NULL),
                        NK_INVALID_ARGUMENT, "--telemetry-otlp-metrics-interval", "out of range",
                        NULL));
}
