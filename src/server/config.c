/*
 * config.c: one table of settings drives everything: defaults (parsed from
 * the table's default text, so --help cannot disagree with the code), the
 * YAML walk, the flags and the help text.
 *
 * The YAML file is loaded with libyaml's document API and walked against the
 * table: a mapping key is either a section (a prefix of some keys: cluster,
 * telemetry, storage ...), a key of the table, an ignored NoriKV v1 key, or
 * an error that names it with its line. The walk only descends into sections
 * the table knows, so its depth is bounded by the table (at most three
 * levels), whatever the input; aliases cannot make it loop.
 *
 * Errors read "<file>:<line>: <key>: <problem>" for the file and
 * "--<flag> (<key>): <problem>" for flags, always INVALID_ARGUMENT except a
 * missing file (NOT_FOUND) and an unreadable one (IO_ERROR).
 */
#include "server/config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

enum ktype {
    K_ID,        /* node id: printable, no spaces */
    K_ADDR,      /* host:port */
    K_PATH,      /* a file system path */
    K_BOOL,      /* stored as bool */
    K_U32,       /* stored as uint32_t */
    K_SIZE,      /* bytes, stored as uint64_t */
    K_DUR,       /* duration in the key's base unit, stored as uint64_t */
    K_ENUM,      /* stored as int (an enum) */
    K_ADDR_LIST, /* cluster.seed_nodes */
    K_URL,       /* an http:// URL, stored as char[CONFIG_URL_MAX] */
    K_RATIO,     /* a number in [0, 1], stored as double */
    K_V1_IGNORED /* a NoriKV v1 key this server accepts and ignores */
};

#define NO_FIELD SIZE_MAX
#define F(field) offsetof(struct config, field)

struct key_def {
    const char *key;
    enum ktype type;
    size_t off;          /* the field, NO_FIELD for K_V1_IGNORED */
    size_t explicit_off; /* a bool set when the key is given, or NO_FIELD */
    uint64_t min, max;   /* numbers, sizes and durations (in the base unit) */
    uint64_t unit_us;    /* K_DUR: the base unit in microseconds */
    const char *const *names; /* K_ENUM: NULL-terminated, index = value */
    const char *def;          /* default, in the value syntax; NULL: none */
    const char *def_text;     /* --help's default when it is not def */
    const char *help;
};

static const char *const fsync_names[] = {"always", "batch", "os", NULL};
static const char *const level_names[] = {"debug", "info", "warn", "error", NULL};

#define KIB (UINT64_C(1) << 10)
#define MIB (UINT64_C(1) << 20)
#define GIB (UINT64_C(1) << 30)
#define TIB (UINT64_C(1) << 40)
#define MS_PER_DAY UINT64_C(86400000)

static const struct key_def keys[] = {
    {"node_id", K_ID, F(node_id), F(node_id_explicit), 0, 0, 0, NULL, NULL,
     "<host>-<port> of rpc_addr", "stable identity of this node"},
    {"rpc_addr", K_ADDR, F(rpc_addr), F(rpc_addr_explicit), 0, 0, 0, NULL,
     CONFIG_DEFAULT_RPC_ADDR, NULL, "client gRPC listen address (port 0: a free port)"},
    {"http_addr", K_ADDR, F(http_addr), F(http_addr_explicit), 0, 0, 0, NULL,
     CONFIG_DEFAULT_HTTP_ADDR, NULL,
     "HTTP listen address (port 0: a free port; a taken default port falls back to a free one)"},
    {"peer_addr", K_ADDR, F(peer_addr), F(peer_addr_explicit), 0, 0, 0, NULL,
     CONFIG_DEFAULT_PEER_ADDR, NULL, "node-to-node listen address (port 0: a free port)"},
    {"data_dir", K_PATH, F(data_dir), F(data_dir_explicit), 0, 0, 0, NULL, "./norikv-data", NULL,
     "directory of the node's files"},
    {"ephemeral", K_BOOL, F(ephemeral), NO_FIELD, 0, 0, 0, NULL, "false", NULL,
     "keep everything in memory (no data_dir); listeners not set explicitly use free ports"},
    {"log_level", K_ENUM, F(log_level), NO_FIELD, 0, 0, 0, level_names, "info", NULL,
     "debug, info, warn or error"},
    {"cluster.seed_nodes", K_ADDR_LIST, F(seed_nodes), NO_FIELD, 0, CONFIG_MAX_SEEDS, 0, NULL, "",
     "[] (one-node cluster)", "peer addresses of the other initial members (flag: comma-separated)"},
    {"cluster.total_shards", K_U32, F(total_shards), NO_FIELD, 1, 65536, 0, NULL, "1024", NULL,
     "number of shards, fixed when the cluster is bootstrapped"},
    {"cluster.replication_factor", K_U32, F(replication_factor), F(replication_factor_explicit), 1,
     7, 0, NULL, NULL, "3 (1 when seed_nodes is empty)", "replicas per shard"},
    {"cluster.join", K_ADDR, F(join_addr), NO_FIELD, 0, 0, 0, NULL, NULL, "none",
     "peer address of any member of a running cluster: a new node (empty data_dir) joins it "
     "(flag: --join)"},
    {"cluster.dead_node_timeout", K_DUR, F(dead_node_timeout_ms), NO_FIELD, 1000, 30 * MS_PER_DAY,
     1000, NULL, "5m", NULL,
     "a member SWIM holds dead this long has its replicas re-created on the others. Bare "
     "numbers: ms"},
    {"cluster.max_concurrent_moves", K_U32, F(max_concurrent_moves), NO_FIELD, 1, 1024, 0, NULL,
     "8", NULL, "replica moves a node runs at once as the leader of their shards"},
    {"cluster.move_bandwidth", K_SIZE, F(move_bandwidth), NO_FIELD, 0, TIB, 0, NULL, "64MiB",
     NULL, "snapshot bytes per second a node sends to new replicas (0: unlimited)"},
    {"telemetry.prometheus.enabled", K_BOOL, F(prometheus_enabled), NO_FIELD, 0, 0, 0, NULL,
     "true", NULL, "serve Prometheus metrics on http_addr/metrics"},
    {"telemetry.prometheus.port", K_V1_IGNORED, NO_FIELD, NO_FIELD, 0, 0, 0, NULL, NULL, "-",
     "NoriKV v1 key, ignored (metrics are served on http_addr)"},
    {"telemetry.otlp.enabled", K_BOOL, F(otlp_enabled), NO_FIELD, 0, 0, 0, NULL, "false", NULL,
     "export metrics and traces over OTLP/HTTP (protobuf) to telemetry.otlp.endpoint"},
    {"telemetry.otlp.endpoint", K_URL, F(otlp_endpoint), NO_FIELD, 0, 0, 0, NULL,
     "http://127.0.0.1:4318", NULL,
     "the collector's OTLP/HTTP base URL (/v1/metrics and /v1/traces are appended)"},
    {"telemetry.otlp.metrics_interval", K_DUR, F(otlp_metrics_interval_ms), NO_FIELD, 100,
     3600000, 1000, NULL, "10s", NULL, "how often metrics are exported. Bare numbers: ms"},
    {"telemetry.otlp.trace_sample_ratio", K_RATIO, F(otlp_trace_sample_ratio), NO_FIELD, 0, 0, 0,
     NULL, "0", NULL,
     "share of requests without a traceparent that are traced (0..1); requests with one follow "
     "its sampled flag"},
    {"telemetry.otlp.timeout", K_DUR, F(otlp_timeout_ms), NO_FIELD, 100, 600000, 1000, NULL,
     "5s", NULL, "longest wait for the collector per export. Bare numbers: ms"},
    {"storage.wal_fsync", K_ENUM, F(wal_fsync), NO_FIELD, 0, 0, 0, fsync_names, "always", NULL,
     "always: fdatasync before acknowledging; batch: fdatasync every group_commit_window; os: "
     "never"},
    {"storage.group_commit_window", K_DUR, F(group_commit_window_us), NO_FIELD, 0, 1000000, 1,
     NULL, "0us", NULL,
     "always: longest wait to grow a log batch (0: no wait); batch: the fdatasync period (> 0). "
     "Bare numbers: microseconds"},
    {"storage.memtable_size", K_SIZE, F(memtable_size), NO_FIELD, MIB, 4 * GIB, 0, NULL, "64MiB",
     NULL, "memtable size that triggers a flush"},
    {"storage.block_cache_size", K_SIZE, F(block_cache_size), NO_FIELD, 0, TIB, 0, NULL, "256MiB",
     NULL, "SSTable block cache (0: none)"},
    {"raft.tick_interval", K_DUR, F(tick_interval_ms), NO_FIELD, 1, 10000, 1000, NULL, "100ms",
     NULL, "Raft logical clock tick. Bare numbers: milliseconds"},
    {"raft.election_ticks", K_U32, F(election_ticks), NO_FIELD, 2, 1000, 0, NULL, "6", NULL,
     "election timeout in ticks (randomized in [n, 2n))"},
    {"raft.heartbeat_ticks", K_U32, F(heartbeat_ticks), NO_FIELD, 1, 999, 0, NULL, "1", NULL,
     "heartbeat interval in ticks (< election_ticks)"},
    {"raft.lease_margin", K_DUR, F(lease_margin_ms), NO_FIELD, 0, 60000, 1000, NULL, "100ms",
     NULL, "lease = election timeout - margin (clock drift allowance). Bare numbers: ms"},
    {"raft.log_compact_entries", K_U32, F(log_compact_entries), NO_FIELD, 16, 100000000, 0, NULL,
     "10000", NULL, "compact a shard's Raft log once it holds this many applied entries"},
    {"raft.log_cache_size", K_SIZE, F(log_cache_size), NO_FIELD, 64 * 1024, TIB, 0, NULL, "64MiB",
     NULL, "raft log entries kept in memory (older ones are read back from disk)"},
    {"raft.max_inflight_proposals", K_U32, F(max_inflight_proposals), NO_FIELD, 1, 1000000, 0,
     NULL, "4096", NULL, "proposals queued or uncommitted per node; beyond: RESOURCE_EXHAUSTED"},
    {"swim.probe_interval", K_DUR, F(swim_probe_interval_ms), NO_FIELD, 20, 60000, 1000, NULL,
     "500ms", NULL,
     "SWIM protocol period: each member pings one other this often (UDP on peer_addr). Bare "
     "numbers: ms"},
    {"swim.probe_timeout", K_DUR, F(swim_probe_timeout_ms), NO_FIELD, 5, 59999, 1000, NULL,
     "200ms", NULL,
     "wait for a direct ack before asking others to probe (< swim.probe_interval). Bare "
     "numbers: ms"},
    {"swim.suspicion_mult", K_U32, F(swim_suspicion_mult), NO_FIELD, 1, 100, 0, NULL, "4", NULL,
     "a suspect is declared dead after at least this many periods (times log10 of the size)"},
    {"swim.suspicion_max_mult", K_U32, F(swim_suspicion_max_mult), NO_FIELD, 1, 100, 0, NULL, "4",
     NULL,
     "Lifeguard: a suspicion starts this many times longer and shrinks as others confirm it"},
    {"swim.lifeguard", K_BOOL, F(swim_lifeguard), NO_FIELD, 0, 0, 0, NULL, "true", NULL,
     "Lifeguard's local health awareness (fewer false deaths of a slow member)"},
    {"vector.memory_budget", K_SIZE, F(vector_memory_budget), NO_FIELD, 0, 16 * TIB, 0, NULL, "0",
     NULL, "bytes all vector indexes of the node may hold (0: half of physical memory)"},
    {"kv.idempotency_retention", K_DUR, F(idempotency_retention_ms), NO_FIELD, 1000,
     30 * MS_PER_DAY, 1000, NULL, "24h", NULL,
     "how long idempotency results are kept. Bare numbers: ms"},
    {"watch.retention_entries", K_U32, F(watch_retention_entries), NO_FIELD, 16, 100000000, 0,
     NULL, "1000", NULL,
     "change feed records kept per shard for watches to resume from (docs/watch.md)"},
    {"watch.retention_bytes", K_SIZE, F(watch_retention_bytes), NO_FIELD, 64 * KIB, TIB, 0, NULL,
     "1MiB", NULL, "change feed bytes kept per shard"},
    {"watch.retention_age", K_DUR, F(watch_retention_age_ms), NO_FIELD, 0, 30 * MS_PER_DAY, 1000,
     NULL, "1h", NULL,
     "change feed records older than this go (0: no age bound). Bare numbers: ms"},
    {"api.request_deadline", K_DUR, F(request_deadline_ms), NO_FIELD, 1, 600000, 1000, NULL, "5s",
     NULL, "deadline of calls that carry none. Bare numbers: ms"},
};
#define NKEYS ((int)NK_ARRAY_LEN(keys))


/* ------------------------------------------------------------- utilities */

static void *field(struct config *c, const struct key_def *d)
{
    return (char *)c + d->off;
}

static void mark_explicit(struct config *c, const struct key_def *d)
{
    if (d->explicit_off != NO_FIELD)
        *(bool *)((char *)c + d->explicit_off) = true;
}

static void add_warning(struct config *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void add_warning(struct config *c, const char *fmt, ...)
{
    if (c->n_warnings < CONFIG_MAX_WARNINGS) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(c->warnings[c->n_warnings], CONFIG_WARNING_MAX, fmt, ap);
        va_end(ap);
    }
    c->n_warnings++;
}

static void flag_of(const char *key, char *out, size_t cap)
{
    size_t i = 0;
    for (; key[i] && i + 1 < cap; i++)
        out[i] = (key[i] == '.' || key[i] == '_') ? '-' : key[i];
    out[i] = 0;
}

static const struct key_def *find_key(const char *key)
{
    for (int i = 0; i < NKEYS; i++)
        if (strcmp(keys[i].key, key) == 0)
            return &keys[i];
    return NULL;
}

static bool is_section(const char *prefix)
{
    size_t n = strlen(prefix);
    for (int i = 0; i < NKEYS; i++)
        if (strncmp(keys[i].key, prefix, n) == 0 && keys[i].key[n] == '.')
            return true;
    return false;
}

/* Levenshtein distance, for "did you mean" on unknown keys and flags. */
static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 64 || lb > 64)
        return SIZE_MAX;
    size_t row[65];
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
            size_t best = diag + cost;
            if (row[j] + 1 < best)
                best = row[j] + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

/* " (did you mean X?)" or "" */
static void suggest(const char *got, bool as_flag, char *out, size_t cap)
{
    out[0] = 0;
    size_t best = 4;
    for (int i = 0; i < NKEYS; i++) {
        char name[128];
        if (as_flag)
            flag_of(keys[i].key, name, sizeof name);
        else
            snprintf(name, sizeof name, "%s", keys[i].key);
        size_t d = edit_distance(got, name);
        if (d < best) {
            best = d;
            snprintf(out, cap, " (did you mean %s%s?)", as_flag ? "--" : "", name);
        }
    }
}

/* --------------------------------------------------------- value parsing */

static bool parse_u64(const char *s, uint64_t *out)
{
    if (!*s)
        return false;
    uint64_t v = 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return false;
        uint64_t d = (uint64_t)(*s - '0');
        if (v > (UINT64_MAX - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *out = v;
    return true;
}

/* Splits "  123 MiB " into the number and the unit (trimmed). */
static bool split_number_unit(const char *s, uint64_t *num, char *unit, size_t cap)
{
    while (*s == ' ')
        s++;
    const char *p = s;
    while (*p >= '0' && *p <= '9')
        p++;
    if (p == s || (size_t)(p - s) > 20)
        return false;
    char digits[24];
    memcpy(digits, s, (size_t)(p - s));
    digits[p - s] = 0;
    if (!parse_u64(digits, num))
        return false;
    while (*p == ' ')
        p++;
    size_t n = strlen(p);
    while (n && p[n - 1] == ' ')
        n--;
    if (n >= cap)
        return false;
    memcpy(unit, p, n);
    unit[n] = 0;
    return true;
}

static bool parse_size(const char *s, uint64_t *out)
{
    static const struct {
        const char *u;
        uint64_t mul;
    } units[] = {{"", 1},         {"B", 1},         {"KB", 1000},   {"MB", 1000000},
                 {"GB", 1000000000}, {"TB", UINT64_C(1000000000000)}, {"KiB", KIB}, {"MiB", MIB},
                 {"GiB", GIB},    {"TiB", TIB}};
    uint64_t n;
    char unit[8];
    if (!split_number_unit(s, &n, unit, sizeof unit))
        return false;
    for (size_t i = 0; i < NK_ARRAY_LEN(units); i++) {
        if (strcasecmp(unit, units[i].u) == 0) {
            if (n > UINT64_MAX / units[i].mul)
                return false;
            *out = n * units[i].mul;
            return true;
        }
    }
    return false;
}

/* A duration in microseconds; a bare number is in units of base_us. */
static bool parse_duration_us(const char *s, uint64_t base_us, uint64_t *out)
{
    static const struct {
        const char *u;
        uint64_t us;
    } units[] = {{"us", 1},          {"\xc2\xb5s", 1}, {"ms", 1000}, {"s", 1000000},
                 {"m", UINT64_C(60000000)}, {"h", UINT64_C(3600000000)}, {"d", UINT64_C(86400000000)}};
    uint64_t n;
    char unit[8];
    if (!split_number_unit(s, &n, unit, sizeof unit))
        return false;
    uint64_t mul = 0;
    if (!unit[0])
        mul = base_us;
    for (size_t i = 0; !mul && i < NK_ARRAY_LEN(units); i++)
        if (strcmp(unit, units[i].u) == 0)
            mul = units[i].us;
    if (!mul || n > UINT64_MAX / mul)
        return false;
    *out = n * mul;
    return true;
}

static bool parse_bool(const char *s, bool *out)
{
    static const char *yes[] = {"true", "yes", "on"}, *no[] = {"false", "no", "off"};
    for (int i = 0; i < 3; i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *out = true;
            return true;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *out = false;
            return true;
        }
    }
    return false;
}

static void fmt_size(uint64_t v, char *out, size_t cap)
{
    if (v && v % TIB == 0)
        snprintf(out, cap, "%" PRIu64 "TiB", v / TIB);
    else if (v && v % GIB == 0)
        snprintf(out, cap, "%" PRIu64 "GiB", v / GIB);
    else if (v && v % MIB == 0)
        snprintf(out, cap, "%" PRIu64 "MiB", v / MIB);
    else if (v && v % KIB == 0)
        snprintf(out, cap, "%" PRIu64 "KiB", v / KIB);
    else
        snprintf(out, cap, "%" PRIu64 "B", v);
}

static void fmt_duration(uint64_t us, char *out, size_t cap)
{
    if (us && us % UINT64_C(86400000000) == 0 && us / UINT64_C(86400000000) >= 2)
        snprintf(out, cap, "%" PRIu64 "d", us / UINT64_C(86400000000));
    else if (us && us % UINT64_C(3600000000) == 0)
        snprintf(out, cap, "%" PRIu64 "h", us / UINT64_C(3600000000));
    else if (us && us % UINT64_C(60000000) == 0)
        snprintf(out, cap, "%" PRIu64 "m", us / UINT64_C(60000000));
    else if (us && us % 1000000 == 0)
        snprintf(out, cap, "%" PRIu64 "s", us / 1000000);
    else if (us && us % 1000 == 0)
        snprintf(out, cap, "%" PRIu64 "ms", us / 1000);
    else
        snprintf(out, cap, "%" PRIu64 "us", us);
}

/* Decodes one UTF-8 code point; false on invalid, overlong or surrogate. */
static bool utf8_next(const unsigned char **pp, uint32_t *cp)
{
    const unsigned char *p = *pp;
    uint32_t c = p[0];
    int n;
    uint32_t min;
    if (c < 0x80) {
        *cp = c;
        *pp = p + 1;
        return true;
    } else if ((c & 0xE0) == 0xC0) {
        n = 1, min = 0x80, c &= 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
        n = 2, min = 0x800, c &= 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
        n = 3, min = 0x10000, c &= 0x07;
    } else {
        return false;
    }
    for (int i = 1; i <= n; i++) {
        if ((p[i] & 0xC0) != 0x80)
            return false;
        c = (c << 6) | (p[i] & 0x3F);
    }
    if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF))
        return false;
    *cp = c;
    *pp = p + n + 1;
    return true;
}

/* Valid UTF-8 without control characters (C0, DEL, C1). */
static bool clean_utf8(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        uint32_t cp;
        if (!utf8_next(&p, &cp) || cp < 0x20 || (cp >= 0x7f && cp <= 0x9f))
            return false;
    }
    return true;
}

static bool valid_hostname(const char *h)
{
    size_t n = strlen(h);
    if (n == 0 || n > 253)
        return false;
    bool all_numeric = true;
    for (size_t i = 0; i < n; i++) {
        char ch = h[i];
        if (!(isalnum((unsigned char)ch) || ch == '-' || ch == '.'))
            return false;
        if (ch == '.' && (i == 0 || h[i - 1] == '.'))
            return false;
        if (isalpha((unsigned char)ch) || ch == '-')
            all_numeric = false;
    }
    if (all_numeric) { /* looks like IPv4: must be one */
        struct in_addr a;
        return inet_pton(AF_INET, h, &a) == 1;
    }
    return true;
}

nk_status config_split_addr(const char *addr, char *host, size_t host_cap, uint16_t *port)
{
    const char *colon;
    const char *h = addr;
    size_t hlen;
    if (addr[0] == '[') {
        const char *close = strchr(addr, ']');
        if (!close)
            return nk_status_make(NK_INVALID_ARGUMENT, "\"%s\" has no closing ] after the IPv6 "
                                  "address", addr);
        if (close[1] != ':')
            return nk_status_make(NK_INVALID_ARGUMENT, "\"%s\" is not [ipv6]:port (missing "
                                  ":port)", addr);
        h = addr + 1;
        hlen = (size_t)(close - h);
        colon = close + 1;
        char tmp[64];
        struct in6_addr a6;
        if (hlen == 0 || hlen >= sizeof tmp)
            return nk_status_make(NK_INVALID_ARGUMENT, "\"%s\": bad IPv6 address", addr);
        memcpy(tmp, h, hlen);
        tmp[hlen] = 0;
        if (inet_pton(AF_INET6, tmp, &a6) != 1)
            return nk_status_make(NK_INVALID_ARGUMENT, "\"%s\": %s is not an IPv6 address", addr,
                                  tmp);
    } else {
        colon = strrchr(addr, ':');
        if (!colon)
            return nk_status_make(NK_INVALID_ARGUMENT, "\"%s\" is not host:port (missing :port)",
                                  addr);
        hlen = (size_t)(colon - addr);
        if (hlen == 0)
            return nk_status_make(NK_INVALID_ARGUMENT, "\"%s\" is not host:port (missing host)",
                                  addr);
        if (memchr(addr, ':', hlen))
            return nk_status_make(NK_INVALID_ARGUMENT,
                                  "\"%s\": an IPv6 address must be written [address]:port", addr);
        char tmp[256];
        if (hlen >= sizeof tmp)
            return nk_status_make(NK_INVALID_ARGUMENT, "\"%.40s...\": host name too long", addr);
        memcpy(tmp, addr, hlen);
        tmp[hlen] = 0;
        if (!valid_hostname(tmp))
            return nk_status_make(NK_INVALID_ARGUMENT,
                                  "\"%s\": \"%s\" is not a valid host name or IPv4 address", addr,
                                  tmp);
    }
    const char *p = colon + 1;
    uint64_t v;
    if (strlen(p) > 5 || !parse_u64(p, &v) || v > 65535)
        return nk_status_make(NK_INVALID_ARGUMENT, "\"%s\": port \"%s\" is not a number in "
                              "0..65535", addr, p);
    if (host) {
        if (hlen >= host_cap)
            return nk_status_make(NK_INVALID_ARGUMENT, "\"%s\": host name too long", addr);
        memcpy(host, h, hlen);
        host[hlen] = 0;
    }
    if (port)
        *port = (uint16_t)v;
    return NK_OK;
}

void config_derive_node_id(const char *host, uint16_t port, char *out, size_t cap)
{
    char tmp[CONFIG_ADDR_MAX + 8];
    snprintf(tmp, sizeof tmp, "%s-%u", host, (unsigned)port);
    for (char *p = tmp; *p; p++)
        if (!(isalnum((unsigned char)*p) || *p == '.' || *p == '-' || *p == '_'))
            *p = '_';
    snprintf(out, cap, "%s", tmp);
}

const char *config_fsync_name(enum config_fsync f)
{
    return (unsigned)f < 3 ? fsync_names[f] : "?";
}

/* ------------------------------------------------------------ the setter */

/*
 * Sets one key from text. `plain` says the YAML scalar was unquoted (a
 * quoted "10" is a string, not a number); flags are always plain. `where`
 * prefixes errors ("cfg.yaml:7: cluster.total_shards" or "--x (key)").
 */
static nk_status set_scalar(struct config *c, const struct key_def *d, const char *text,
                            bool plain, const char *where)
{
    char lo[32], hi[32];
    switch (d->type) {
    case K_ID: {
        size_t n = strlen(text);
        if (n == 0 || n >= CONFIG_NODE_ID_MAX)
            return nk_status_make(NK_INVALID_ARGUMENT, "%s: must be 1 to %d bytes long", where,
                                  CONFIG_NODE_ID_MAX - 1);
        if (!clean_utf8(text) || strchr(text, ' '))
            return nk_status_make(NK_INVALID_ARGUMENT,
                                  "%s: \"%s\" is not valid UTF-8 without spaces or control "
                                  "characters",
                                  where, text);
        memcpy(field(c, d), text, n + 1);
        break;
    }
    case K_ADDR: {
        if (!text[0] && !d->def) {
            *(char *)field(c, d) = 0; /* optional (cluster.join): none */
            break;
        }
        if (strlen(text) >= CONFIG_ADDR_MAX)
            return nk_status_make(NK_INVALID_ARGUMENT, "%s: address longer than %d bytes", where,
                                  CONFIG_ADDR_MAX - 1);
        nk_status s = config_split_addr(text, NULL, 0, NULL);
        if (!nk_ok(s))
            return nk_status_wrap(s, "%s", where);
        strcpy(field(c, d), text);
        break;
    }
    case K_PATH: {
        size_t n = strlen(text);
        if (n == 0 || n >= CONFIG_PATH_MAX)
            return nk_status_make(NK_INVALID_ARGUMENT, "%s: must be a path of 1 to %d bytes",
                                  where, CONFIG_PATH_MAX - 1);
        if (!clean_utf8(text))
            return nk_status_make(NK_INVALID_ARGUMENT,
                                  "%s: the path is not valid UTF-8 without control characters",
                                  where);
        memcpy(field(c, d), text, n + 1);
        break;
    }
    case K_URL: {
        size_t n = strlen(text);
        if (n >= CONFIG_URL_MAX || strncmp(text, "http://", 7) != 0 || n == 7 ||
            !clean_utf8(text) || strchr(text, ' '))
            return nk_status_make(NK_INVALID_ARGUMENT,
                                  "%s: expected an http:// URL of at most %d bytes without "
                                  "spaces, got \"%.80s\"",
                                  where, CONFIG_URL_MAX - 1, text);
        memcpy(field(c, d), text, n + 1);
        break;
    }
    case K_RATIO: {
        char *end = NULL;
        errno = 0;
        double v = strtod(text, &end);
        if (!plain || !*text || *end || errno || !(v >= 0.0 && v <= 1.0))
            return nk_status_make(NK_INVALID_ARGUMENT,
                                  "%s: expected a number from 0 to 1 (such as 0.01), got \"%.80s\"",
                                  where, text);
        *(double *)field(c, d) = v;
        break;
    }
    case K_BOOL: {
        bool v;
        if (!plain || !parse_bool(text, &v))
            return nk_status_make(NK_INVALID_ARGUMENT,
                                  "%s: expected a boolean (true or false), got %s\"%.80s\"", where,
                                  plain ? "" : "the quoted string ", text);
        *(bool *)field(c, d) = v;
        break;
    }
    case K_U32: {
        uint64_t v;
        if (!plain || !parse_u64(text, &v)) {
            if (plain && text[0] == '-' && parse_u64(text + 1, &v))
                return nk_status_make(NK_INVALID_ARGUMENT,
                                      "%s: %.80s is out of range (%" PRIu64 "..%" PRIu64 ")", where,
                                      text, d->min, d->max);
            return nk_status_make(NK_INVALID_ARGUMENT, "%s: expected an integer, got %s\"%.80s\"",
                                  where, plain ? "" : "the quoted string ", text);
        }
        if (v < d->min || v > d->max)
            return nk_status_make(NK_INVALID_ARGUMENT,
                                  "%s: %" PRIu64 " is out of range (%" PRIu64 "..%" PRIu64 ")",
                                  where, v, d->min, d->max);
        *(uint32_t *)field(c, d) = (uint32_t)v;
        break;
    }
    case K_SIZE: {
        uint64_t v;
        if (!parse_size(text, &v))
            return nk_status_make(NK_INVALID_ARGUMENT,
                                  "%s: expected a size such as 64MiB or 1048576, got \"%.80s\"", where,
                                  text);
        if (v < d->min || v > d->max) {
            fmt_size(d->min, lo, sizeof lo);
            fmt_size(d->max, hi, sizeof hi);
            return nk_status_make(NK_INVALID_ARGUMENT, "%s: %.80s is out of range (%s..%s)", where,
                                  text, lo, hi);
        }
        *(uint64_t *)field(c, d) = v;
        break;
    }
    case K_DUR: {
        uint64_t us;
        if (!parse_duration_us(text, d->unit_us, &us))
            return nk_status_make(NK_INVALID_ARGUMENT,
                                  "%s: expected a duration such as 500ms, 5s or 24h, got \"%.80s\"",
                                  where, text);
        if (us % d->unit_us)
            return nk_status_make(NK_INVALID_ARGUMENT,
                                  "%s: %.80s is not a whole number of milliseconds", where, text);
        uint64_t v = us / d->unit_us;
        if (v < d->min || v > d->max) {
            fmt_duration(d->min * d->unit_us, lo, sizeof lo);
            fmt_duration(d->max * d->unit_us, hi, sizeof hi);
            return nk_status_make(NK_INVALID_ARGUMENT, "%s: %.80s is out of range (%s..%s)", where,
                                  text, lo, hi);
        }
        *(uint64_t *)field(c, d) = v;
        break;
    }
    case K_ENUM: {
        for (int i = 0; d->names[i]; i++) {
            if (strcmp(text, d->names[i]) == 0) {
                *(int *)field(c, d) = i;
                mark_explicit(c, d);
                return NK_OK;
            }
        }
        char list[128] = "";
        for (int i = 0; d->names[i]; i++) {
            size_t at = strlen(list);
            snprintf(list + at, sizeof list - at, "%s%s", i ? ", " : "", d->names[i]);
        }
        return nk_status_make(NK_INVALID_ARGUMENT, "%s: \"%.80s\" is not one of %s", where, text,
                              list);
    }
    case K_ADDR_LIST: { /* comma-separated (flags and defaults) */
        char seeds[CONFIG_MAX_SEEDS][CONFIG_ADDR_MAX];
        uint32_t n = 0;
        const char *p = text;
        while (*p) {
            while (*p == ' ' || *p == ',')
                p++;
            if (!*p)
                break;
            const char *e = p;
            while (*e && *e != ',' && *e != ' ')
                e++;
            size_t len = (size_t)(e - p);
            if (n == CONFIG_MAX_SEEDS)
                return nk_status_make(NK_INVALID_ARGUMENT, "%s: more than %d addresses", where,
                                      CONFIG_MAX_SEEDS);
            if (len >= CONFIG_ADDR_MAX)
                return nk_status_make(NK_INVALID_ARGUMENT, "%s: address longer than %d bytes",
                                      where, CONFIG_ADDR_MAX - 1);
            memcpy(seeds[n], p, len);
            seeds[n][len] = 0;
            nk_status s = config_split_addr(seeds[n], NULL, 0, NULL);
            if (!nk_ok(s))
                return nk_status_wrap(s, "%s", where);
            for (uint32_t j = 0; j < n; j++)
                if (strcmp(seeds[j], seeds[n]) == 0)
                    return nk_status_make(NK_INVALID_ARGUMENT, "%s: %s is listed twice", where,
                                          seeds[n]);
            n++;
            p = e;
        }
        memcpy(c->seed_nodes, seeds, sizeof seeds[0] * n);
        c->n_seed_nodes = n;
        break;
    }
    case K_V1_IGNORED:
        break;
    }
    mark_explicit(c, d);
    return NK_OK;
}

/* ------------------------------------------------------------- defaults */

void config_defaults(struct config *c)
{
    memset(c, 0, sizeof *c);
    for (int i = 0; i < NKEYS; i++) {
        const struct key_def *d = &keys[i];
        if (!d->def)
            continue;
        nk_status s = set_scalar(c, d, d->def, true, d->key);
        if (!nk_ok(s))
            nk_panic("config: bad built-in default of %s: %s", d->key, nk_status_msg(s));
    }
    /* defaults are not "explicit" */
    c->node_id_explicit = c->rpc_addr_explicit = c->http_addr_explicit = false;
    c->peer_addr_explicit = c->data_dir_explicit = c->replication_factor_explicit = false;
    c->replication_factor = 0; /* config_finish decides */
}

/* ----------------------------------------------------------------- YAML */

struct yaml_ctx {
    struct config *c;
    yaml_document_t *doc;
    const char *name;
};

static bool scalar_is_null(const yaml_node_t *n)
{
    if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return false;
    const char *v = (const char *)n->data.scalar.value;
    return !*v || !strcmp(v, "~") || !strcmp(v, "null") || !strcmp(v, "Null") ||
           !strcmp(v, "NULL");
}

static const char *node_kind(const yaml_node_t *n)
{
    switch (n->type) {
    case YAML_MAPPING_NODE:
        return "a mapping";
    case YAML_SEQUENCE_NODE:
        return "a list";
    default:
        return "a scalar";
    }
}

static unsigned long line_of(const yaml_node_t *n)
{
    return (unsigned long)n->start_mark.line + 1;
}

static nk_status scalar_text(const struct yaml_ctx *y, const yaml_node_t *n, const char *key,
                             const char **out)
{
    if (memchr(n->data.scalar.value, 0, n->data.scalar.length))
        return nk_status_make(NK_INVALID_ARGUMENT, "%s:%lu: %s: value contains a NUL byte",
                              y->name, line_of(n), key);
    *out = (const char *)n->data.scalar.value;
    return NK_OK;
}

static nk_status set_from_node(const struct yaml_ctx *y, const struct key_def *d,
                               const yaml_node_t *v)
{
    char where[256];
    snprintf(where, sizeof where, "%s:%lu: %s", y->name, line_of(v), d->key);
    if (d->type == K_ADDR_LIST) {
        if (scalar_is_null(v)) {
            y->c->n_seed_nodes = 0;
            return NK_OK;
        }
        if (v->type != YAML_SEQUENCE_NODE)
            return nk_status_make(NK_INVALID_ARGUMENT, "%s: expected a list of host:port, got %s",
                                  where, node_kind(v));
        /* Join into the flag syntax so that one code path validates. */
        struct nk_buf joined;
        nk_buf_init(&joined);
        nk_status s = NK_OK;
        uint32_t count = 0;
        for (yaml_node_item_t *it = v->data.sequence.items.start;
             it < v->data.sequence.items.top; it++) {
            yaml_node_t *e = yaml_document_get_node(y->doc, *it);
            const char *t = NULL;
            if (!e || e->type != YAML_SCALAR_NODE) {
                s = nk_status_make(NK_INVALID_ARGUMENT, "%s:%lu: %s: expected host:port, got %s",
                                   y->name, e ? line_of(e) : line_of(v), d->key,
                                   e ? node_kind(e) : "nothing");
                break;
            }
            s = scalar_text(y, e, d->key, &t);
            if (!nk_ok(s))
                break;
            if (!*t || strchr(t, ',') || strchr(t, ' ')) {
                s = nk_status_make(NK_INVALID_ARGUMENT, "%s:%lu: %s: \"%.80s\" is not host:port",
                                   y->name, line_of(e), d->key, t);
                break;
            }
            if (++count > CONFIG_MAX_SEEDS) {
                s = nk_status_make(NK_INVALID_ARGUMENT, "%s: more than %d addresses", where,
                                   CONFIG_MAX_SEEDS);
                break;
            }
            if (joined.len)
                nk_buf_put_u8(&joined, ',');
            nk_buf_append(&joined, t, strlen(t));
        }
        nk_buf_put_u8(&joined, 0);
        if (nk_ok(s))
            s = set_scalar(y->c, d, (const char *)joined.data, true, where);
        nk_buf_free(&joined);
        return s;
    }
    if (v->type != YAML_SCALAR_NODE)
        return nk_status_make(NK_INVALID_ARGUMENT, "%s: expected a single value, got %s", where,
                              node_kind(v));
    if (scalar_is_null(v))
        return nk_status_make(NK_INVALID_ARGUMENT, "%s: has no value", where);
    const char *t = NULL;
    NK_TRY(scalar_text(y, v, d->key, &t));
    return set_scalar(y->c, d, t, v->data.scalar.style == YAML_PLAIN_SCALAR_STYLE, where);
}

static nk_status walk_mapping(const struct yaml_ctx *y, const yaml_node_t *m, const char *prefix)
{
    for (yaml_node_pair_t *p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top; p++) {
        yaml_node_t *k = yaml_document_get_node(y->doc, p->key);
        yaml_node_t *v = yaml_document_get_node(y->doc, p->value);
        if (!k || !v)
            return nk_status_make(NK_INVALID_ARGUMENT, "%s: malformed mapping", y->name);
        if (k->type != YAML_SCALAR_NODE)
            return nk_status_make(NK_INVALID_ARGUMENT, "%s:%lu: a key must be a plain name, got %s",
                                  y->name, line_of(k), node_kind(k));
        const char *kt = NULL;
        NK_TRY(scalar_text(y, k, "key", &kt));
        char full[256];
        size_t plen = strlen(prefix), klen = strlen(kt);
        if (plen + klen + 2 > sizeof full)
            return nk_status_make(NK_INVALID_ARGUMENT, "%s:%lu: unknown key \"%.60s...\"",
                                  y->name, line_of(k), kt);
        memcpy(full, prefix, plen);
        if (plen)
            full[plen++] = '.';
        memcpy(full + plen, kt, klen + 1);

        /* a key given twice in one mapping is almost always a mistake */
        for (yaml_node_pair_t *q = m->data.mapping.pairs.start; q < p; q++) {
            yaml_node_t *qk = yaml_document_get_node(y->doc, q->key);
            if (qk && qk->type == YAML_SCALAR_NODE &&
                qk->data.scalar.length == k->data.scalar.length &&
                memcmp(qk->data.scalar.value, k->data.scalar.value, k->data.scalar.length) == 0)
                return nk_status_make(NK_INVALID_ARGUMENT, "%s:%lu: %s: given twice (also on line "
                                      "%lu)", y->name, line_of(k), full, line_of(qk));
        }

        const struct key_def *d = find_key(full);
        if (d && d->type == K_V1_IGNORED) {
            add_warning(y->c, "%s:%lu: %s is a NoriKV v1 setting this server does not use; "
                        "ignored", y->name, line_of(k), full);
            continue;
        }
        if (d) {
            NK_TRY(set_from_node(y, d, v));
            continue;
        }
        if (is_section(full)) {
            if (scalar_is_null(v))
                continue; /* "cluster:" with nothing under it */
            if (v->type != YAML_MAPPING_NODE)
                return nk_status_make(NK_INVALID_ARGUMENT,
                                      "%s:%lu: %s: expected a section (a mapping of keys), got %s",
                                      y->name, line_of(v), full, node_kind(v));
            NK_TRY(walk_mapping(y, v, full));
            continue;
        }
        char hint[160];
        suggest(full, false, hint, sizeof hint);
        return nk_status_make(NK_INVALID_ARGUMENT, "%s:%lu: unknown key \"%s\"%s", y->name,
                              line_of(k), full, hint);
    }
    return NK_OK;
}

/*
 * libyaml's scanner does work proportional to the flow nesting depth for
 * every token, so a file of half a million '[' takes minutes. No valid
 * configuration nests deeper than a few levels: a first pass over the events
 * stops at CONFIG_MAX_DEPTH before the scanner gets deep. A syntax error is
 * left for the loader, which reports it with its context.
 */
#define CONFIG_MAX_DEPTH 16

static nk_status check_depth(const char *text, size_t len, const char *name)
{
    yaml_parser_t parser;
    if (!yaml_parser_initialize(&parser))
        return nk_status_make(NK_RESOURCE_EXHAUSTED, "%s: cannot initialize the YAML parser",
                              name);
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    nk_status s = NK_OK;
    int depth = 0;
    for (;;) {
        yaml_event_t ev;
        if (!yaml_parser_parse(&parser, &ev))
            break;
        yaml_event_type_t type = ev.type;
        unsigned long line = (unsigned long)ev.start_mark.line + 1;
        yaml_event_delete(&ev);
        if (type == YAML_SEQUENCE_START_EVENT || type == YAML_MAPPING_START_EVENT) {
            if (++depth > CONFIG_MAX_DEPTH) {
                s = nk_status_make(NK_INVALID_ARGUMENT,
                                   "%s:%lu: nested deeper than %d levels; no setting is", name,
                                   line, CONFIG_MAX_DEPTH);
                break;
            }
        } else if (type == YAML_SEQUENCE_END_EVENT || type == YAML_MAPPING_END_EVENT) {
            depth--;
        } else if (type == YAML_STREAM_END_EVENT) {
            break;
        }
    }
    yaml_parser_delete(&parser);
    return s;
}

nk_status config_load_yaml(struct config *c, const char *text, size_t len, const char *name)
{
    if (len > CONFIG_FILE_MAX)
        return nk_status_make(NK_INVALID_ARGUMENT, "%s: %zu bytes, more than the limit of %u",
                              name, len, CONFIG_FILE_MAX);
    NK_TRY(check_depth(text, len, name));
    yaml_parser_t parser;
    if (!yaml_parser_initialize(&parser))
        return nk_status_make(NK_RESOURCE_EXHAUSTED, "%s: cannot initialize the YAML parser",
                              name);
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    yaml_document_t doc;
    nk_status s = NK_OK;
    if (!yaml_parser_load(&parser, &doc)) {
        if (parser.context)
            s = nk_status_make(NK_INVALID_ARGUMENT,
                               "%s:%lu:%lu: malformed YAML: %s (%s at line %lu)", name,
                               (unsigned long)parser.problem_mark.line + 1,
                               (unsigned long)parser.problem_mark.column + 1,
                               parser.problem ? parser.problem : "syntax error", parser.context,
                               (unsigned long)parser.context_mark.line + 1);
        else
            s = nk_status_make(NK_INVALID_ARGUMENT, "%s:%lu:%lu: malformed YAML: %s", name,
                               (unsigned long)parser.problem_mark.line + 1,
                               (unsigned long)parser.problem_mark.column + 1,
                               parser.problem ? parser.problem : "syntax error");
        yaml_parser_delete(&parser);
        return s;
    }
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    struct yaml_ctx y = {c, &doc, name};
    if (root && !scalar_is_null(root)) {
        if (root->type != YAML_MAPPING_NODE)
            s = nk_status_make(NK_INVALID_ARGUMENT,
                               "%s:%lu: the file must be a mapping of keys, got %s", name,
                               line_of(root), node_kind(root));
        else
            s = walk_mapping(&y, root, "");
    }
    if (nk_ok(s) && root) {
        /* a second document in the stream would be silently ignored otherwise */
        yaml_document_t next;
        if (!yaml_parser_load(&parser, &next)) {
            s = nk_status_make(NK_INVALID_ARGUMENT, "%s:%lu: malformed YAML: %s", name,
                               (unsigned long)parser.problem_mark.line + 1,
                               parser.problem ? parser.problem : "syntax error");
        } else {
            if (yaml_document_get_root_node(&next))
                s = nk_status_make(NK_INVALID_ARGUMENT,
                                   "%s:%lu: more than one YAML document; put every key in one",
                                   name, (unsigned long)next.start_mark.line + 1);
            yaml_document_delete(&next);
        }
    }
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    return s;
}

nk_status config_load_file(struct config *c, const char *path)
{
    if (strlen(path) >= CONFIG_PATH_MAX)
        return nk_status_make(NK_INVALID_ARGUMENT, "config file path longer than %d bytes",
                              CONFIG_PATH_MAX - 1);
    uint8_t *data;
    size_t n;
    nk_status s = nk_read_file(path, CONFIG_FILE_MAX, &data, &n);
    if (!nk_ok(s)) {
        if (s.code == NK_NOT_FOUND) {
            nk_status_free(&s);
            return nk_status_make(NK_NOT_FOUND, "config file %s: not found", path);
        }
        return nk_status_wrap(s, "config file %s", path);
    }
    snprintf(c->config_path, sizeof c->config_path, "%s", path);
    s = config_load_yaml(c, (const char *)data, n, path);
    free(data);
    return s;
}

/* ---------------------------------------------------------------- flags */

static const struct key_def *find_flag(const char *name)
{
    char f[128];
    if (strcmp(name, "join") == 0)
        name = "cluster-join"; /* the short form the docs use: --join HOST:PORT */
    for (int i = 0; i < NKEYS; i++) {
        flag_of(keys[i].key, f, sizeof f);
        if (strcmp(f, name) == 0)
            return &keys[i];
    }
    return NULL;
}

static nk_status unknown_flag(const char *name)
{
    char hint[160];
    suggest(name, true, hint, sizeof hint);
    return nk_status_make(NK_INVALID_ARGUMENT, "unknown flag --%s%s (see --help)", name, hint);
}

nk_status config_apply_flag(struct config *c, const char *flag, const char *value)
{
    while (*flag == '-')
        flag++;
    const struct key_def *d = find_flag(flag);
    if (!d)
        return unknown_flag(flag);
    char where[256];
    snprintf(where, sizeof where, "--%s (%s)", flag, d->key);
    if (d->type == K_V1_IGNORED) {
        add_warning(c, "%s is a NoriKV v1 setting this server does not use; ignored", where);
        return NK_OK;
    }
    return set_scalar(c, d, value, true, where);
}

/* A flag that takes no separate value argument (--ephemeral, --x=false). */
static bool flag_is_bool(const struct key_def *d)
{
    return d->type == K_BOOL;
}

nk_status config_from_args(int argc, char **argv, struct config *c, bool *help)
{
    *help = false;
    config_defaults(c);
    const char *config_path = NULL;
    /* pass 1: --help, the config file, unknown flags and missing values */
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            *help = true;
            return NK_OK;
        }
    }
    const char *prev_bool_flag = NULL; /* "--ephemeral true" would read "true" as the file */
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *after_bool = prev_bool_flag;
        prev_bool_flag = NULL;
        if (strncmp(a, "--", 2) != 0) {
            if (a[0] == '-' && a[1])
                return nk_status_make(NK_INVALID_ARGUMENT, "unknown flag %s (see --help)", a);
            bool ignored;
            if (after_bool && parse_bool(a, &ignored))
                return nk_status_make(NK_INVALID_ARGUMENT,
                                      "%s takes its value after '=': write %s=%s", after_bool,
                                      after_bool, a);
            if (config_path)
                return nk_status_make(NK_INVALID_ARGUMENT,
                                      "unexpected argument \"%s\": the config file is already %s",
                                      a, config_path);
            config_path = a;
            continue;
        }
        const char *name = a + 2;
        const char *eq = strchr(name, '=');
        char fname[128];
        size_t nlen = eq ? (size_t)(eq - name) : strlen(name);
        if (nlen == 0 || nlen >= sizeof fname)
            return nk_status_make(NK_INVALID_ARGUMENT, "unknown flag %.60s (see --help)", a);
        memcpy(fname, name, nlen);
        fname[nlen] = 0;
        if (strcmp(fname, "config") == 0) {
            const char *p = eq ? eq + 1 : (i + 1 < argc ? argv[++i] : NULL);
            if (!p || !*p)
                return nk_status_make(NK_INVALID_ARGUMENT, "--config needs a file path");
            if (config_path)
                return nk_status_make(NK_INVALID_ARGUMENT,
                                      "two config files given: %s and %s", config_path, p);
            config_path = p;
            continue;
        }
        const struct key_def *d = find_flag(fname);
        if (!d)
            return unknown_flag(fname);
        if (!eq && flag_is_bool(d))
            prev_bool_flag = a;
        if (!eq && !flag_is_bool(d)) {
            if (i + 1 >= argc)
                return nk_status_make(NK_INVALID_ARGUMENT, "--%s (%s) needs a value", fname,
                                      d->key);
            i++;
        }
    }
    /* pass 2: the file; pass 3: the flags, in order, over it */
    if (config_path)
        NK_TRY(config_load_file(c, config_path));
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strncmp(a, "--", 2) != 0)
            continue;
        const char *name = a + 2;
        const char *eq = strchr(name, '=');
        char fname[128];
        size_t nlen = eq ? (size_t)(eq - name) : strlen(name);
        memcpy(fname, name, nlen);
        fname[nlen] = 0;
        if (strcmp(fname, "config") == 0) {
            if (!eq)
                i++;
            continue;
        }
        const struct key_def *d = find_flag(fname);
        const char *value;
        if (eq)
            value = eq + 1;
        else if (flag_is_bool(d))
            value = "true";
        else
            value = argv[++i];
        NK_TRY(config_apply_flag(c, fname, value));
    }
    return config_finish(c);
}

/* --------------------------------------------------------------- finish */

static bool same_listener(const char *a, const char *b)
{
    char ha[CONFIG_ADDR_MAX], hb[CONFIG_ADDR_MAX];
    uint16_t pa, pb;
    nk_status sa = config_split_addr(a, ha, sizeof ha, &pa);
    nk_status sb = config_split_addr(b, hb, sizeof hb, &pb);
    bool same = nk_ok(sa) && nk_ok(sb) && pa != 0 && pa == pb &&
                (strcmp(ha, hb) == 0 || strcmp(ha, "0.0.0.0") == 0 || strcmp(hb, "0.0.0.0") == 0);
    nk_status_free(&sa);
    nk_status_free(&sb);
    return same;
}

static void ephemeral_addr(char *addr, bool is_explicit)
{
    if (is_explicit)
        return;
    /* keep the host as written (brackets and all), replace the port */
    char *colon = strrchr(addr, ':');
    NK_ASSERT(colon && (size_t)(colon - addr) + 3 <= CONFIG_ADDR_MAX);
    memcpy(colon, ":0", 3);
}

nk_status config_finish(struct config *c)
{
    /* An ephemeral server is for tests: several run side by side, so the
     * listeners nobody chose take free ports (the READY line names them). */
    if (c->ephemeral) {
        ephemeral_addr(c->rpc_addr, c->rpc_addr_explicit);
        ephemeral_addr(c->http_addr, c->http_addr_explicit);
        ephemeral_addr(c->peer_addr, c->peer_addr_explicit);
    }

    if (c->join_addr[0] && c->n_seed_nodes)
        return nk_status_make(NK_INVALID_ARGUMENT,
                              "cluster.join and cluster.seed_nodes are both set: seed nodes "
                              "bootstrap a new cluster, join adds this node to a running one; "
                              "set one");
    if (!c->replication_factor_explicit) {
        c->replication_factor = c->n_seed_nodes == 0 && !c->join_addr[0] ? 1 : 3;
    } else if (c->n_seed_nodes == 0 && !c->join_addr[0] && c->replication_factor > 1) {
        add_warning(c,
                    "cluster.replication_factor is %u but cluster.seed_nodes is empty (a "
                    "one-node cluster); using 1",
                    c->replication_factor);
        c->replication_factor = 1;
    }

    const char *names[3] = {"rpc_addr", "http_addr", "peer_addr"};
    const char *addrs[3] = {c->rpc_addr, c->http_addr, c->peer_addr};
    for (int i = 0; i < 3; i++)
        for (int j = i + 1; j < 3; j++)
            if (same_listener(addrs[i], addrs[j]))
                return nk_status_make(NK_INVALID_ARGUMENT,
                                      "%s and %s are the same address (%s, %s); each listener "
                                      "needs its own port",
                                      names[i], names[j], addrs[i], addrs[j]);

    if (c->swim_probe_timeout_ms >= c->swim_probe_interval_ms)
        return nk_status_make(NK_INVALID_ARGUMENT,
                              "swim.probe_timeout (%" PRIu64 "ms) must be less than "
                              "swim.probe_interval (%" PRIu64 "ms)",
                              c->swim_probe_timeout_ms, c->swim_probe_interval_ms);
    if (c->heartbeat_ticks >= c->election_ticks)
        return nk_status_make(NK_INVALID_ARGUMENT,
                              "raft.heartbeat_ticks (%u) must be less than raft.election_ticks "
                              "(%u)",
                              c->heartbeat_ticks, c->election_ticks);
    uint64_t election_ms = c->tick_interval_ms * c->election_ticks;
    if (c->lease_margin_ms >= election_ms)
        return nk_status_make(NK_INVALID_ARGUMENT,
                              "raft.lease_margin (%" PRIu64 "ms) must be less than the election "
                              "timeout (raft.election_ticks * raft.tick_interval = %" PRIu64
                              "ms)",
                              c->lease_margin_ms, election_ms);
    if (c->wal_fsync == CONFIG_FSYNC_BATCH && c->group_commit_window_us == 0)
        return nk_status_make(NK_INVALID_ARGUMENT,
                              "storage.wal_fsync is batch but storage.group_commit_window is 0: "
                              "batch needs a sync period (for example 2ms)");
    if (c->wal_fsync == CONFIG_FSYNC_OS)
        add_warning(c, "storage.wal_fsync is os: acknowledged writes can be lost if the machine "
                       "crashes");
    if (c->ephemeral && c->data_dir_explicit)
        add_warning(c, "ephemeral is set: data_dir %s is not used", c->data_dir);

    if (!c->node_id_explicit) {
        char host[CONFIG_ADDR_MAX];
        uint16_t port;
        nk_status s = config_split_addr(c->rpc_addr, host, sizeof host, &port);
        if (!nk_ok(s))
            return nk_status_wrap(s, "rpc_addr");
        config_derive_node_id(host, port, c->node_id, sizeof c->node_id);
    }
    return NK_OK;
}

/* --------------------------------------------------------------- output */

static void default_text(const struct key_def *d, char *out, size_t cap)
{
    if (d->def_text)
        snprintf(out, cap, "%s", d->def_text);
    else
        snprintf(out, cap, "%s", d->def);
}

static const char *value_hint(const struct key_def *d)
{
    switch (d->type) {
    case K_ID:
        return "ID";
    case K_ADDR:
        return "HOST:PORT";
    case K_PATH:
        return "DIR";
    case K_BOOL:
        return "[=BOOL]";
    case K_U32:
        return "N";
    case K_SIZE:
        return "SIZE";
    case K_DUR:
        return "DURATION";
    case K_ENUM:
        return "NAME";
    case K_ADDR_LIST:
        return "HOST:PORT,...";
    case K_URL:
        return "URL";
    case K_RATIO:
        return "RATIO";
    case K_V1_IGNORED:
        return "VALUE";
    }
    return "";
}

void config_usage(FILE *out, const char *prog)
{
    fprintf(out,
            "usage: %s [CONFIG.yaml] [flags]\n"
            "\n"
            "Starts a NoriKV node. Settings come from their defaults, then the YAML file\n"
            "(the first argument or --config), then the flags. Every YAML key has a flag:\n"
            "dots and underscores become dashes (cluster.total_shards: --cluster-total-shards).\n"
            "Sizes: 64MiB, 1GiB, 1048576. Durations: 250us, 100ms, 5s, 24h. Booleans are set\n"
            "by the bare flag (--ephemeral) or --flag=false. See docs/configuration.md.\n"
            "\n"
            "  --config PATH                          the YAML configuration file\n"
            "  -h, --help                             this text\n",
            prog);
    for (int i = 0; i < NKEYS; i++) {
        const struct key_def *d = &keys[i];
        char flag[160], def[96];
        flag_of(d->key, flag, sizeof flag);
        char left[200];
        snprintf(left, sizeof left, "--%s %s", flag, value_hint(d));
        default_text(d, def, sizeof def);
        fprintf(out, "  %-38s %s\n  %-38s key %s, default: %s\n", left, d->help, "", d->key, def);
    }
}

void config_log_warnings(const struct config *c)
{
    uint32_t kept = NK_MIN(c->n_warnings, (uint32_t)CONFIG_MAX_WARNINGS);
    for (uint32_t i = 0; i < kept; i++)
        NK_WARN("config", "%s", c->warnings[i]);
    if (c->n_warnings > kept)
        NK_WARN("config", "%u more warnings not shown", c->n_warnings - kept);
}

/*
 * A YAML double-quoted string, so that the dump loads back: quote and
 * backslash escaped, code points YAML does not allow raw as \uXXXX. Values
 * are valid UTF-8 (the setters check), so decoding cannot fail.
 */
static void put_quoted(struct nk_buf *b, const char *s)
{
    nk_buf_put_u8(b, '"');
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        const unsigned char *start = p;
        uint32_t cp;
        bool valid = utf8_next(&p, &cp);
        NK_ASSERT(valid);
        bool printable = cp == 0x09 || (cp >= 0x20 && cp <= 0x7e) || cp == 0x85 ||
                         (cp >= 0xa0 && cp <= 0xd7ff) || (cp >= 0xe000 && cp <= 0xfffd && cp != 0xfeff) ||
                         cp >= 0x10000;
        if (cp == '"' || cp == '\\') {
            nk_buf_put_u8(b, '\\');
            nk_buf_put_u8(b, (uint8_t)cp);
        } else if (!printable || cp == 0x85) {
            char tmp[16];
            int n = snprintf(tmp, sizeof tmp, "\\u%04x", (unsigned)cp);
            nk_buf_append(b, tmp, (size_t)n);
        } else {
            nk_buf_append(b, start, (size_t)(p - start));
        }
    }
    nk_buf_put_u8(b, '"');
}

static void indent(struct nk_buf *out, size_t depth)
{
    for (size_t i = 0; i < depth; i++)
        nk_buf_append(out, "  ", 2);
}

void config_dump(const struct config *c, struct nk_buf *out)
{
    /* keys of one section are contiguous in the table: open a section
     * level whenever it differs from the previous key's */
    char prev[4][64] = {{0}};
    size_t nprev = 0;
    struct config *cc = (struct config *)c; /* field() takes a mutable pointer */
    for (int i = 0; i < NKEYS; i++) {
        const struct key_def *d = &keys[i];
        if (d->type == K_V1_IGNORED)
            continue;
        char comps[4][64];
        size_t n = 0;
        const char *p = d->key;
        for (;;) {
            const char *dot = strchr(p, '.');
            size_t len = dot ? (size_t)(dot - p) : strlen(p);
            NK_ASSERT(n < 4 && len < 64);
            memcpy(comps[n], p, len);
            comps[n][len] = 0;
            n++;
            if (!dot)
                break;
            p = dot + 1;
        }
        size_t nsec = n - 1, common = 0;
        while (common < nsec && common < nprev && strcmp(comps[common], prev[common]) == 0)
            common++;
        for (size_t k = common; k < nsec; k++) {
            indent(out, k);
            nk_buf_append(out, comps[k], strlen(comps[k]));
            nk_buf_append(out, ":\n", 2);
        }
        memcpy(prev, comps, sizeof comps[0] * nsec);
        nprev = nsec;
        indent(out, nsec);
        nk_buf_append(out, comps[nsec], strlen(comps[nsec]));
        nk_buf_append(out, ": ", 2);
        char tmp[64];
        switch (d->type) {
        case K_ID:
        case K_ADDR:
        case K_PATH:
        case K_URL:
            put_quoted(out, field(cc, d));
            break;
        case K_RATIO:
            snprintf(tmp, sizeof tmp, "%g", *(double *)field(cc, d));
            nk_buf_append(out, tmp, strlen(tmp));
            break;
        case K_BOOL:
            snprintf(tmp, sizeof tmp, "%s", *(bool *)field(cc, d) ? "true" : "false");
            nk_buf_append(out, tmp, strlen(tmp));
            break;
        case K_U32:
            snprintf(tmp, sizeof tmp, "%u", *(uint32_t *)field(cc, d));
            nk_buf_append(out, tmp, strlen(tmp));
            break;
        case K_SIZE:
            fmt_size(*(uint64_t *)field(cc, d), tmp, sizeof tmp);
            nk_buf_append(out, tmp, strlen(tmp));
            break;
        case K_DUR:
            fmt_duration(*(uint64_t *)field(cc, d) * d->unit_us, tmp, sizeof tmp);
            nk_buf_append(out, tmp, strlen(tmp));
            break;
        case K_ENUM: {
            const char *name = d->names[*(int *)field(cc, d)];
            nk_buf_append(out, name, strlen(name));
            break;
        }
        case K_ADDR_LIST:
            nk_buf_put_u8(out, '[');
            for (uint32_t k = 0; k < c->n_seed_nodes; k++) {
                if (k)
                    nk_buf_append(out, ", ", 2);
                put_quoted(out, c->seed_nodes[k]);
            }
            nk_buf_put_u8(out, ']');
            break;
        case K_V1_IGNORED:
            break;
        }
        nk_buf_put_u8(out, '\n');
    }
}
