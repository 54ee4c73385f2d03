/*
 * observe: the metrics registry and the event ring that every NoriKV layer
 * reports into, and their rendering for /metrics (Prometheus text exposition
 * format 0.0.4) and /events (JSON).
 *
 * Metrics. A registry holds metric *families* (a name, a help text, a type and
 * up to OBS_MAX_LABELS label names) and, per family, *series* (one combination
 * of label values). Registering returns a handle (struct obs_counter, struct
 * obs_gauge, struct obs_histogram) that the caller keeps and records through.
 * Registration is idempotent: the same name with the same type and label names
 * returns the same family, the same label values the same series, so that
 * every instance of a module can register at open without coordination.
 * Everything is bounded: a registry holds at most max_families families and
 * max_series series in all; registering beyond either bound returns
 * NK_RESOURCE_EXHAUSTED (and the caller may carry on with a NULL handle: every
 * recording function accepts NULL and does nothing).
 *
 * Recording is lock-free and allocation-free: a counter or a histogram is
 * split into OBS_STRIPES cache-line-separated stripes; reading sums them.
 * On its first recording a thread claims one of the first OBS_STRIPES-1
 * stripes for itself alone and then adds with a plain (relaxed) load and
 * store, no locked instruction; the stripe is released when the thread
 * exits, its counts staying in place for the next owner. Threads that find
 * every exclusive stripe taken share the last stripe and add with atomic
 * fetch_add. Either way no update is lost. A gauge is one atomic.
 * Registration and rendering take the registry's mutex, which the recording
 * paths never touch. Measured on the 2-core dev machine: ~7 ns per counter
 * add and ~15 ns per histogram observation on an exclusive stripe.
 *
 * Histograms have fixed log-linear buckets (OBS_HIST_BUCKETS finite ones):
 * the upper bounds are 1 and 2, then two linear steps per power of two
 * (3 4 6 8 12 16 24 32 48 ...) up to 2^26 = 67 108 864, then +Inf. Observed
 * values are integers in the family's unit: OBS_UNIT_MICROS for latencies
 * (1 us to 67 s, rendered in seconds as Prometheus prefers) or OBS_UNIT_NONE
 * for plain quantities such as bytes or batch sizes (rendered as they are).
 * A bucket i counts values v with upper(i-1) < v <= upper(i), which is the
 * "le" of the exposition format.
 *
 * Events. A struct obs_events is a bounded ring of typed events (wall time,
 * kind, shard, message) that overwrites the oldest when full; each event gets
 * a sequence number so that a reader (the /events stream) can resume after
 * the last one it saw and learn how many it missed. Emitting takes a short
 * mutex (events are rare: elections, flushes, compactions), never allocates.
 *
 * Conventions for NoriKV's metrics (so that /metrics reads as one system):
 * names are norikv_<layer>_<what>[_<unit>], counters end in _total,
 * latencies are OBS_UNIT_MICROS histograms named ..._seconds, sizes are
 * ..._bytes; label values are small closed sets (op: put/get/delete...,
 * outcome: the status code name such as OK or NOT_FOUND). Never label by
 * key, and not by shard for per-request series: 1024 shards times a few
 * families would exhaust the series bound; report per-shard happenings
 * through the event ring instead.
 *
 * Memory: a registry owns its families and series; handles stay valid until
 * obs_registry_free(). obs_default() is the process-wide registry (and
 * obs_events_default() the process-wide ring), created on first use and never
 * freed, so that handles to it never dangle.
 *
 * Thread-safety: every function here may be called from any thread, except
 * that obs_registry_free() / obs_events_free() must not race with any other
 * use of that registry or ring.
 */
#ifndef NK_OBSERVE_H
#define NK_OBSERVE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/util.h"

/* ------------------------------------------------------------------ bounds */

#define OBS_MAX_LABELS      4   /* label names per family */
#define OBS_NAME_MAX        128 /* metric and label names, bytes incl. NUL */
#define OBS_HELP_MAX        256 /* help text, bytes incl. NUL */
#define OBS_LABEL_VALUE_MAX 128 /* one label value, bytes incl. NUL */
#define OBS_STRIPES         8   /* recording stripes per counter / histogram */

/* Bounds of obs_default(). */
#define OBS_DEFAULT_MAX_FAMILIES 512
#define OBS_DEFAULT_MAX_SERIES   8192

/* --------------------------------------------------------- histogram math */

#define OBS_HIST_SUB_BITS 1  /* 2^SUB_BITS linear steps per power of two */
#define OBS_HIST_MAX_LOG2 26 /* the largest finite bound is 2^26 */
#define OBS_HIST_SUB      (1u << OBS_HIST_SUB_BITS)
/* finite buckets: SUB for w < SUB, then SUB per octave k = SUB_BITS..MAX_LOG2-1 */
#define OBS_HIST_BUCKETS (OBS_HIST_SUB + (OBS_HIST_MAX_LOG2 - OBS_HIST_SUB_BITS) * OBS_HIST_SUB)
#define OBS_HIST_MAX_BOUND (UINT64_C(1) << OBS_HIST_MAX_LOG2)

/*
 * The bucket of value v: 0..OBS_HIST_BUCKETS-1 for v <= OBS_HIST_MAX_BOUND,
 * OBS_HIST_BUCKETS (the +Inf bucket) above. Constant time (one clz).
 */
static inline uint32_t obs_hist_bucket_index(uint64_t v)
{
    if (v <= 1)
        return 0;
    uint64_t w = v - 1; /* bucket i holds (lower, upper]; index by w = v-1 */
    if (w >= OBS_HIST_MAX_BOUND)
        return OBS_HIST_BUCKETS;
    if (w < OBS_HIST_SUB)
        return (uint32_t)w;
    uint32_t k = 63u - (uint32_t)__builtin_clzll(w); /* k >= SUB_BITS */
    uint32_t sub = (uint32_t)(w >> (k - OBS_HIST_SUB_BITS)) & (OBS_HIST_SUB - 1);
    return OBS_HIST_SUB + (k - OBS_HIST_SUB_BITS) * OBS_HIST_SUB + sub;
}

/* Inclusive upper bound of bucket i < OBS_HIST_BUCKETS (UINT64_MAX for +Inf). */
uint64_t obs_hist_bucket_upper(uint32_t i);

/* ------------------------------------------------------------------ types */

enum obs_type { OBS_COUNTER = 0, OBS_GAUGE = 1, OBS_HISTOGRAM = 2 };

/* How histogram values are rendered (counters and gauges use OBS_UNIT_NONE). */
enum obs_unit {
    OBS_UNIT_NONE = 0,   /* rendered as recorded */
    OBS_UNIT_MICROS = 1, /* recorded in microseconds, rendered in seconds */
};

struct obs_registry;
struct obs_family;

/* A stripe owns whole cache lines so that threads never share one. */
struct obs_counter_stripe {
    _Alignas(64) _Atomic uint64_t v;
};

struct obs_counter {
    struct obs_counter_stripe stripe[OBS_STRIPES];
};

struct obs_gauge {
    _Atomic int64_t v;
};

struct obs_hist_stripe {
    _Alignas(64) _Atomic uint64_t bucket[OBS_HIST_BUCKETS + 1]; /* last: +Inf only */
    _Atomic uint64_t sum;
};

/*
 * An exemplar: one observation tied to the trace it was made in, so that a
 * latency histogram points at a request worth looking at (OTLP exemplars).
 */
struct obs_exemplar {
    uint64_t value;   /* in the histogram's unit */
    uint64_t wall_ns; /* Unix nanoseconds of the observation */
    uint8_t trace_id[16];
    uint8_t span_id[8];
};

struct obs_histogram {
    struct obs_hist_stripe stripe[OBS_STRIPES];
    /* the newest exemplar, under a spin flag: only traced requests (rare,
     * sampled) touch it, never the plain recording path */
    _Alignas(64) atomic_flag ex_lock;
    bool has_ex;
    struct obs_exemplar ex;
};

/* ------------------------------------------------------------ registries */

/* A private registry (tests, or one per embedded instance). */
nk_status obs_registry_new(uint32_t max_families, uint32_t max_series,
                           struct obs_registry **out);
void obs_registry_free(struct obs_registry *r);
/* The process-wide registry; bounds OBS_DEFAULT_MAX_*. Never NULL. */
struct obs_registry *obs_default(void);

/*
 * Registers (or finds) a family. Names follow Prometheus:
 * [a-zA-Z_:][a-zA-Z0-9_:]* for metrics, [a-zA-Z_][a-zA-Z0-9_]* for labels,
 * no label named "le" on a histogram, none starting with "__". The same name
 * with another type, unit or label names: NK_ALREADY_EXISTS. unit is
 * OBS_UNIT_NONE except for histograms. help may be NULL.
 */
nk_status obs_family_register(struct obs_registry *r, enum obs_type type, enum obs_unit unit,
                              const char *name, const char *help, const char *const *label_names,
                              size_t nlabels, struct obs_family **out);

/*
 * The series of a family for these label values (one per label name; any
 * UTF-8, escaped when rendered; at most OBS_LABEL_VALUE_MAX-1 bytes). The
 * family's type must match the call. Takes the registry mutex: callers look a
 * series up once and keep the handle.
 */
nk_status obs_family_counter(struct obs_family *f, const char *const *label_values,
                             struct obs_counter **out);
nk_status obs_family_gauge(struct obs_family *f, const char *const *label_values,
                           struct obs_gauge **out);
nk_status obs_family_histogram(struct obs_family *f, const char *const *label_values,
                               struct obs_histogram **out);

/* Shorthands for a family without labels and its one series. */
nk_status obs_counter_register(struct obs_registry *r, const char *name, const char *help,
                               struct obs_counter **out);
nk_status obs_gauge_register(struct obs_registry *r, const char *name, const char *help,
                             struct obs_gauge **out);
nk_status obs_histogram_register(struct obs_registry *r, enum obs_unit unit, const char *name,
                                 const char *help, struct obs_histogram **out);

uint32_t obs_registry_family_count(struct obs_registry *r);
uint32_t obs_registry_series_count(struct obs_registry *r);

/* -------------------------------------------------------------- recording */

/*
 * This thread's stripe. obs_tl_stripe_ is the stripe + 1 (0: not claimed
 * yet); obs_tl_exclusive_ says the thread owns it alone.
 */
extern _Thread_local uint32_t obs_tl_stripe_;
extern _Thread_local bool obs_tl_exclusive_;
uint32_t obs_thread_stripe_assign_(void);
static inline uint32_t obs_thread_stripe(void)
{
    uint32_t s = obs_tl_stripe_;
    if (NK_UNLIKELY(s == 0))
        s = obs_thread_stripe_assign_();
    return s - 1;
}
/* True when this thread owns its stripe alone (claims one if needed). */
static inline bool obs_thread_stripe_exclusive(void)
{
    (void)obs_thread_stripe();
    return obs_tl_exclusive_;
}

/* Adds to a word of this thread's stripe: a plain add when it owns it. */
static inline void obs_stripe_add_(_Atomic uint64_t *w, uint64_t n)
{
    if (NK_LIKELY(obs_tl_exclusive_))
        atomic_store_explicit(w, atomic_load_explicit(w, memory_order_relaxed) + n,
                              memory_order_relaxed);
    else
        atomic_fetch_add_explicit(w, n, memory_order_relaxed);
}

static inline void obs_counter_add(struct obs_counter *c, uint64_t n)
{
    if (NK_UNLIKELY(!c))
        return;
    uint32_t s = obs_thread_stripe();
    obs_stripe_add_(&c->stripe[s].v, n);
}
static inline void obs_counter_inc(struct obs_counter *c)
{
    obs_counter_add(c, 1);
}

/*
 * For totals kept elsewhere (compaction bytes read from the engine's stats):
 * raises the counter to `total` when it is below (a counter never goes
 * down). One thread at a time may raise a given counter; others may add.
 */
void obs_counter_raise_to(struct obs_counter *c, uint64_t total);

static inline void obs_gauge_set(struct obs_gauge *g, int64_t v)
{
    if (NK_UNLIKELY(!g))
        return;
    atomic_store_explicit(&g->v, v, memory_order_relaxed);
}
static inline void obs_gauge_add(struct obs_gauge *g, int64_t d)
{
    if (NK_UNLIKELY(!g))
        return;
    atomic_fetch_add_explicit(&g->v, d, memory_order_relaxed);
}

static inline void obs_hist_observe(struct obs_histogram *h, uint64_t v)
{
    if (NK_UNLIKELY(!h))
        return;
    struct obs_hist_stripe *s = &h->stripe[obs_thread_stripe()];
    obs_stripe_add_(&s->bucket[obs_hist_bucket_index(v)], 1);
    obs_stripe_add_(&s->sum, v);
}
/* Observes the microseconds elapsed since start_ns (a nk_mono_ns() value). */
static inline void obs_hist_observe_since(struct obs_histogram *h, uint64_t start_ns)
{
    uint64_t now = nk_mono_ns();
    obs_hist_observe(h, now > start_ns ? (now - start_ns) / 1000 : 0);
}

/*
 * Observes v and keeps it as the histogram's exemplar with the trace and
 * span it belongs to (the newest exemplar replaces the previous one).
 */
void obs_hist_observe_exemplar(struct obs_histogram *h, uint64_t v, const uint8_t trace_id[16],
                               const uint8_t span_id[8]);
/* The newest exemplar; false when there is none. */
bool obs_hist_exemplar(const struct obs_histogram *h, struct obs_exemplar *out);

/* ---------------------------------------------------------------- reading */

uint64_t obs_counter_value(const struct obs_counter *c);
int64_t obs_gauge_value(const struct obs_gauge *g);

/* A consistent-enough copy: count is the sum of the buckets. */
struct obs_hist_snapshot {
    uint64_t bucket[OBS_HIST_BUCKETS + 1]; /* per bucket, not cumulative */
    uint64_t count;
    uint64_t sum;
};
void obs_hist_snapshot(const struct obs_histogram *h, struct obs_hist_snapshot *out);
/*
 * Estimated q-quantile (0 <= q <= 1) by linear interpolation inside the
 * bucket that holds it; 0 when empty; OBS_HIST_MAX_BOUND when it falls in
 * the +Inf bucket.
 */
double obs_hist_quantile(const struct obs_hist_snapshot *s, double q);

/*
 * Appends the whole registry in Prometheus text exposition format 0.0.4:
 * per family "# HELP", "# TYPE", then its series; histograms as cumulative
 * name_bucket{...,le="..."} lines ending with le="+Inf", then name_sum and
 * name_count. Families in registration order, series in registration order.
 */
void obs_render_prometheus(struct obs_registry *r, struct nk_buf *out);
/* The Content-Type of that text, for the HTTP layer. */
#define OBS_PROMETHEUS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

/* One series as obs_registry_visit shows it (pointers valid during the call). */
struct obs_series_view {
    const char *family, *help;
    enum obs_type type;
    enum obs_unit unit;
    size_t nlabels;
    const char *label_names[OBS_MAX_LABELS];
    const char *label_values[OBS_MAX_LABELS];
    const void *metric; /* struct obs_counter / obs_gauge / obs_histogram */
};
typedef void (*obs_visit_fn)(void *ctx, const struct obs_series_view *s);
/* Calls fn for every series in registration order, under the registry's
 * mutex: fn must not register anything. */
void obs_registry_visit(struct obs_registry *r, obs_visit_fn fn, void *ctx);

/* ---------------------------------------------------------------- tracing */

/*
 * Request traces (trace.c). A traced request carries one struct obs_trace
 * from the API handler through the node (propose, log write, commit, apply)
 * back to the reply; each layer adds its span with times on nk_mono_ns()'s
 * clock. When the request ends the trace is copied into the process-wide
 * bounded ring (OBS_TRACE_RING traces; when full the oldest is dropped and
 * counted), which the OTLP exporter drains to /v1/traces.
 *
 * Which requests are traced: none unless tracing is enabled (an OTLP traces
 * endpoint is configured). Then a request whose W3C `traceparent` header is
 * valid follows its caller's sampled flag (parent-based sampling) and
 * continues that trace; a request without one (or with a malformed one,
 * which W3C says to ignore) is traced with probability sample_ratio as the
 * root of a new trace. Span and trace ids come from a per-thread generator
 * seeded from the kernel: local randomness is fine here, nothing of it
 * reaches the replicated state.
 *
 * Memory: the caller owns a struct obs_trace from obs_trace_begin() until
 * obs_trace_end(), which frees it. Span names are static strings.
 * Thread-safety: a trace has one owner at a time (handed over with the
 * request); the ring and configuration are safe from any thread.
 */
#define OBS_TRACE_MAX_SPANS 8
#define OBS_TRACE_MAX_ATTRS 3
#define OBS_TRACE_RING      512
#define OBS_TRACE_ATTR_MAX  48

enum obs_span_kind { OBS_SPAN_INTERNAL = 1, OBS_SPAN_SERVER = 2 };

struct obs_span {
    uint8_t span_id[8];
    uint8_t parent_id[8]; /* all zero: none */
    const char *name;     /* static */
    uint8_t kind;         /* enum obs_span_kind */
    bool error;
    uint8_t nattrs;
    uint64_t start_ns, end_ns; /* nk_mono_ns() */
    const char *attr_key[OBS_TRACE_MAX_ATTRS]; /* static */
    char attr_val[OBS_TRACE_MAX_ATTRS][OBS_TRACE_ATTR_MAX];
};

struct obs_trace {
    uint8_t trace_id[16];
    uint32_t nspans; /* spans[0] is the request's own (server) span */
    struct obs_span spans[OBS_TRACE_MAX_SPANS];
};

/*
 * Parses a W3C traceparent header value ("00-<32 hex>-<16 hex>-<2 hex>",
 * lower-case hex; all-zero ids are invalid; a future version's longer value
 * is accepted by its first 55 characters). False when malformed.
 */
bool obs_traceparent_parse(const char *s, size_t len, uint8_t trace_id[16], uint8_t parent_id[8],
                           uint8_t *flags);

/* Turns tracing on (sample_ratio 0..1 for requests without a traceparent)
 * or off. */
void obs_tracing_configure(bool enabled, double sample_ratio);
bool obs_tracing_enabled(void);

/*
 * Decides whether a request is traced (see above) and, if so, returns a new
 * trace whose root span `name` (kind SERVER) starts at start_ns, a child of
 * the traceparent's span when there is one. NULL: not traced (the common
 * case, a few ns when tracing is off).
 */
struct obs_trace *obs_trace_begin(const char *traceparent, size_t len, const char *name,
                                  uint64_t start_ns);
/*
 * Adds a finished span (child of span `parent`, an index into t->spans);
 * NULL when the trace holds OBS_TRACE_MAX_SPANS already (the span is lost,
 * the request is not).
 */
struct obs_span *obs_trace_span(struct obs_trace *t, uint32_t parent, const char *name,
                                uint64_t start_ns, uint64_t end_ns);
/* Adds an attribute (value printf-formatted, cut to fit); ignored when full. */
void obs_span_attr(struct obs_span *s, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Ends the root span at end_ns, copies the trace into the ring, frees t. */
void obs_trace_end(struct obs_trace *t, uint64_t end_ns, bool error);
/* Frees t without recording it (the request was refused before it began). */
void obs_trace_discard(struct obs_trace *t);

/* Moves up to max finished traces out of the ring, oldest first. */
size_t obs_traces_take(struct obs_trace *out, size_t max);
/* Traces in the ring now; traces recorded and dropped (ring full) so far. */
void obs_traces_counts(size_t *held, uint64_t *recorded, uint64_t *dropped);

/* ------------------------------------------------------------ OTLP export */

/*
 * OTLP/HTTP (protobuf) export of a registry's metrics (otlp.c). Every
 * interval a background thread encodes the whole registry as one
 * ExportMetricsServiceRequest (cumulative sums, gauges, explicit-bucket
 * histograms; latencies in seconds) and POSTs it to the endpoint. Bounded:
 * one request at a time, at most OBS_OTLP_MAX_BYTES; a collector that is
 * slow or missing costs a timeout and one warning per minute, never memory
 * (an interval that finds the previous export still running is skipped).
 * Plain http:// only (no TLS).
 */
#define OBS_OTLP_MAX_BYTES (8u << 20)

struct obs_otlp_options {
    /* "http://host:port" (then /v1/metrics) or a full URL; NULL: no metrics */
    const char *endpoint;
    /* "http://host:port" (then /v1/traces) or a full URL; NULL: no traces */
    const char *traces_endpoint;
    uint32_t interval_ms;       /* metrics; default 10000 */
    uint32_t trace_interval_ms; /* the longest a finished trace waits; default 1000 */
    uint32_t timeout_ms;        /* per export; default 5000 */
    const char *service_name;   /* resource attribute service.name; default "norikv" */
    const char *instance_id;    /* service.instance.id; may be NULL */
    struct obs_registry *registry; /* NULL: obs_default() */
    /* Called on the exporter's thread before each metrics export (gauges
     * read on demand are refreshed there); NULL: nothing. */
    void (*refresh)(void *ctx);
    void *refresh_ctx;
};
struct obs_otlp_exporter;
/* Parses the endpoints (INVALID_ARGUMENT naming the problem) and starts the
 * thread. At least one endpoint must be given. */
nk_status obs_otlp_start(const struct obs_otlp_options *o, struct obs_otlp_exporter **out);
/* Stops the thread (waiting for an export in progress, at most its timeout). */
void obs_otlp_stop(struct obs_otlp_exporter *e);
/* Metrics exports done and failed so far. */
void obs_otlp_counts(struct obs_otlp_exporter *e, uint64_t *ok, uint64_t *failed);
/* Trace exports done and failed so far. */
void obs_otlp_trace_counts(struct obs_otlp_exporter *e, uint64_t *ok, uint64_t *failed);
/*
 * Encodes r as an ExportMetricsServiceRequest (opentelemetry/proto/collector/
 * metrics/v1) into out; start_ns/now_ns are Unix nanoseconds. Histograms
 * carry their exemplar when they have one.
 */
void obs_otlp_encode_metrics(struct obs_registry *r, const char *service_name,
                             const char *instance_id, uint64_t start_ns, uint64_t now_ns,
                             struct nk_buf *out);
/*
 * Encodes n traces as an ExportTraceServiceRequest (opentelemetry/proto/
 * collector/trace/v1); span times are moved from nk_mono_ns()'s clock to
 * Unix time by adding wall_minus_mono_ns.
 */
void obs_otlp_encode_traces(const struct obs_trace *t, size_t n, const char *service_name,
                            const char *instance_id, int64_t wall_minus_mono_ns,
                            struct nk_buf *out);

/* ------------------------------------------------------- process metrics */

struct obs_process_sample {
    uint64_t rss_bytes, open_fds, max_fds, threads, cpu_us;
};
/*
 * Reads /proc/self and getrusage into the norikv_process_* series of
 * obs_default() (registered on first call) and into *out (may be NULL).
 * Called before /metrics renders; a few system calls.
 */
void obs_process_collect(struct obs_process_sample *out);

/* ------------------------------------------------------------------ events */

enum obs_event_kind {
    OBS_EV_INFO = 0,
    OBS_EV_WARNING,
    OBS_EV_ERROR,
    OBS_EV_LEADER_CHANGE, /* a shard got a new leader (or lost it) */
    OBS_EV_ELECTION,      /* a shard started an election */
    OBS_EV_MEMBERSHIP,    /* a node joined, became suspect, died or left */
    OBS_EV_SHARD_MOVE,    /* a replica was added to or removed from a shard */
    OBS_EV_SNAPSHOT,      /* a shard snapshot was taken or installed */
    OBS_EV_FLUSH,         /* a memtable was flushed */
    OBS_EV_COMPACTION,    /* a compaction finished */
    OBS_EV_LIFECYCLE,     /* the server started, became ready or is stopping */
    OBS_EV_TERM_CHANGE,   /* a shard's Raft term moved on this node */
    OBS_EV_ROLE_CHANGE,   /* this node's role in a shard changed (follower/candidate/leader) */
    OBS_EV_LOG_COMPACTION, /* Raft logs were truncated behind persisted state */
    OBS_EV_WRITE_STALL,   /* writes waited for the LSM's flush or compaction */
    OBS_EV_SLOW_REQUEST,  /* a client request took longer than the slow threshold */
    OBS_EV_GAP,           /* never stored: a /events reader fell behind the ring */
    OBS_EV_KIND_COUNT
};
/* "info", "warning", "error", "leader_change", ... */
const char *obs_event_kind_name(enum obs_event_kind k);
/* The kind named name[0..len) (exact, case-sensitive); false when none is. */
bool obs_event_kind_parse(const char *name, size_t len, enum obs_event_kind *out);

#define OBS_EVENT_MSG_MAX 200 /* bytes incl. NUL; longer messages are cut */
#define OBS_NO_SHARD      UINT32_MAX
#define OBS_EVENTS_MAX_CAPACITY (1u << 20)
#define OBS_EVENTS_DEFAULT_CAPACITY 4096

/*
 * Typed fields of an event (the VizEvent of docs/observability.md): which
 * ones are meaningful is said by the OBS_ATTR_* bits of `set`; JSON carries
 * only those. Every field has a fixed size, so a ring of N events holds
 * N * sizeof(struct obs_event) bytes whatever is emitted.
 */
enum {
    OBS_ATTR_TERM = 1u << 0,
    OBS_ATTR_LEVEL = 1u << 1,       /* level: LSM input level */
    OBS_ATTR_OUT_LEVEL = 1u << 2,   /* out_level: LSM output level */
    OBS_ATTR_BYTES_IN = 1u << 3,
    OBS_ATTR_BYTES_OUT = 1u << 4,
    OBS_ATTR_FILES_IN = 1u << 5,
    OBS_ATTR_FILES_OUT = 1u << 6,
    OBS_ATTR_DURATION = 1u << 7,    /* duration_us */
    OBS_ATTR_COUNT = 1u << 8,       /* count: shards, entries or events concerned */
    OBS_ATTR_NODE = 1u << 9,        /* node: a node id (leader, peer) */
    OBS_ATTR_ROLE = 1u << 10,       /* role: "leader", "follower", "candidate", ... */
};
#define OBS_ATTR_NAME_MAX 48

struct obs_event_attrs {
    uint32_t set;
    int32_t level, out_level;
    uint64_t term;
    uint64_t bytes_in, bytes_out;
    uint64_t files_in, files_out;
    uint64_t duration_us;
    uint64_t count;
    char node[OBS_ATTR_NAME_MAX];
    char role[16];
};

struct obs_event {
    uint64_t seq;     /* 1, 2, 3 ... in emission order, per ring */
    uint64_t wall_ms; /* ms since the Unix epoch */
    enum obs_event_kind kind;
    uint32_t shard; /* OBS_NO_SHARD when not about one shard */
    struct obs_event_attrs attrs;
    char msg[OBS_EVENT_MSG_MAX];
};

struct obs_events;

/* capacity: 1..OBS_EVENTS_MAX_CAPACITY events, else INVALID_ARGUMENT. */
nk_status obs_events_new(uint32_t capacity, struct obs_events **out);
void obs_events_free(struct obs_events *ev);
/*
 * The process-wide ring: OBS_EVENTS_DEFAULT_CAPACITY events, or the
 * environment's NORIKV_EVENTS_CAPACITY (1..OBS_EVENTS_MAX_CAPACITY) when set.
 * Never NULL.
 */
struct obs_events *obs_events_default(void);

/* Records an event, overwriting the oldest when full; returns its seq. */
uint64_t obs_event_emit(struct obs_events *ev, enum obs_event_kind kind, uint32_t shard,
                        const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/* The same with typed fields (attrs may be NULL: none). */
uint64_t obs_event_emit_attrs(struct obs_events *ev, enum obs_event_kind kind, uint32_t shard,
                              const struct obs_event_attrs *attrs, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
/* Sets a's node / role text (cut to fit) and its bit. */
void obs_attrs_set_node(struct obs_event_attrs *a, const char *node);
void obs_attrs_set_role(struct obs_event_attrs *a, const char *role);
/* How many events the ring holds (its count bound). */
uint32_t obs_events_capacity(struct obs_events *ev);

/*
 * Copies up to max events with seq > after_seq, oldest first, into out;
 * *n is how many were copied. *missed counts events after after_seq that were
 * already overwritten (the reader fell behind); may be NULL. Resume with the
 * seq of the last event copied.
 */
void obs_events_read(struct obs_events *ev, uint64_t after_seq, struct obs_event *out, size_t max,
                     size_t *n, uint64_t *missed);
/* The seq of the newest event (0 when none yet). */
uint64_t obs_events_last_seq(struct obs_events *ev);
/*
 * Blocks until an event with seq > after_seq exists or timeout_ms passes;
 * true when one exists. For the /events stream's long poll.
 */
bool obs_events_wait(struct obs_events *ev, uint64_t after_seq, uint64_t timeout_ms);

/*
 * Appends {"seq":..,"time_ms":..,"kind":"..","shard":..|null,"message":".."}
 * followed by the typed fields that are set ("term", "level", "out_level",
 * "bytes_in", "bytes_out", "files_in", "files_out", "duration_us", "count",
 * "node", "role").
 */
void obs_event_to_json(const struct obs_event *e, struct nk_buf *out);

#endif /* NK_OBSERVE_H */
