/*
 * otlp.c: OTLP/HTTP (protobuf) metrics export (observe.h, "OTLP export").
 *
 * The protobuf is written by hand (a few message types of
 * opentelemetry/proto/{collector/metrics,metrics,common,resource}/v1; field
 * numbers as in those files): nested messages are encoded into a scratch
 * buffer and appended with their length. The HTTP client is a plain socket:
 * one POST per export, Connection: close, bounded by a deadline for connect,
 * send and the status line. The thread wakes every interval; stopping
 * signals it and joins.
 */
#include "observe/observe.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MODULE "otlp"

/* ----------------------------------------------------------- protobuf */

enum { WT_VARINT = 0, WT_I64 = 1, WT_LEN = 2 };

static void pb_varint(struct nk_buf *b, uint64_t v)
{
    uint8_t tmp[10];
    size_t n = 0;
    while (v >= 0x80) {
        tmp[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    tmp[n++] = (uint8_t)v;
    nk_buf_append(b, tmp, n);
}

static void pb_tag(struct nk_buf *b, uint32_t field, uint32_t wt)
{
    pb_varint(b, (uint64_t)field << 3 | wt);
}

static void pb_fixed64(struct nk_buf *b, uint32_t field, uint64_t v)
{
    pb_tag(b, field, WT_I64);
    uint8_t tmp[8];
    for (int i = 0; i < 8; i++)
        tmp[i] = (uint8_t)(v >> (8 * i));
    nk_buf_append(b, tmp, 8);
}

static void pb_double(struct nk_buf *b, uint32_t field, double d)
{
    uint64_t v;
    memcpy(&v, &d, sizeof v);
    pb_fixed64(b, field, v);
}

static void pb_bytes(struct nk_buf *b, uint32_t field, const void *p, size_t n)
{
    pb_tag(b, field, WT_LEN);
    pb_varint(b, n);
    nk_buf_append(b, p, n);
}

static void pb_string(struct nk_buf *b, uint32_t field, const char *s)
{
    pb_bytes(b, field, s, strlen(s));
}

/* KeyValue{key=1, value=2 AnyValue{string_value=1}} as field `field` */
static void pb_attr(struct nk_buf *b, uint32_t field, const char *key, const char *value)
{
    struct nk_buf any, kv;
    nk_buf_init(&any);
    nk_buf_init(&kv);
    pb_string(&any, 1, value);
    pb_string(&kv, 1, key);
    pb_bytes(&kv, 2, any.data, any.len);
    pb_bytes(b, field, kv.data, kv.len);
    nk_buf_free(&any);
    nk_buf_free(&kv);
}

/* ------------------------------------------------------------ encoding */

struct enc {
    struct nk_buf metrics; /* Metric messages, each as ScopeMetrics field 2 */
    uint64_t start_ns, now_ns;
};

static void series_attrs(struct nk_buf *b, uint32_t field, const struct obs_series_view *s)
{
    for (size_t l = 0; l < s->nlabels; l++)
        pb_attr(b, field, s->label_names[l], s->label_values[l]);
}

/*
 * One Metric per series (OTLP allows several data points per metric; one
 * each keeps the encoder stateless; receivers merge by name and attributes).
 */
static void visit(void *ctx, const struct obs_series_view *s)
{
    struct enc *e = ctx;
    struct nk_buf m, data, dp;
    nk_buf_init(&m);
    nk_buf_init(&data);
    nk_buf_init(&dp);
    pb_string(&m, 1, s->family);
    if (s->help && *s->help)
        pb_string(&m, 2, s->help);
    switch (s->type) {
    case OBS_COUNTER: {
        series_attrs(&dp, 7, s);
        pb_fixed64(&dp, 2, e->start_ns);
        pb_fixed64(&dp, 3, e->now_ns);
        pb_fixed64(&dp, 6, obs_counter_value(s->metric)); /* as_int (sfixed64) */
        pb_bytes(&data, 1, dp.data, dp.len);
        pb_tag(&data, 2, WT_VARINT);
        pb_varint(&data, 2); /* AGGREGATION_TEMPORALITY_CUMULATIVE */
        pb_tag(&data, 3, WT_VARINT);
        pb_varint(&data, 1); /* is_monotonic */
        pb_bytes(&m, 7, data.data, data.len);
        break;
    }
    case OBS_GAUGE:
        series_attrs(&dp, 7, s);
        pb_fixed64(&dp, 3, e->now_ns);
        pb_fixed64(&dp, 6, (uint64_t)obs_gauge_value(s->metric));
        pb_bytes(&data, 1, dp.data, dp.len);
        pb_bytes(&m, 5, data.data, data.len);
        break;
    case OBS_HISTOGRAM: {
        bool secs = s->unit == OBS_UNIT_MICROS;
        if (secs)
            pb_string(&m, 3, "s");
        struct obs_hist_snapshot hs;
        obs_hist_snapshot(s->metric, &hs);
        series_attrs(&dp, 9, s);
        pb_fixed64(&dp, 2, e->start_ns);
        pb_fixed64(&dp, 3, e->now_ns);
        pb_fixed64(&dp, 4, hs.count);
        pb_double(&dp, 5, secs ? (double)hs.sum / 1e6 : (double)hs.sum);
        /* bucket_counts: packed fixed64, OBS_HIST_BUCKETS + 1 (the last: +Inf) */
        pb_tag(&dp, 6, WT_LEN);
        pb_varint(&dp, (OBS_HIST_BUCKETS + 1) * 8);
        for (uint32_t i = 0; i <= OBS_HIST_BUCKETS; i++) {
            uint8_t tmp[8];
            for (int k = 0; k < 8; k++)
                tmp[k] = (uint8_t)(hs.bucket[i] >> (8 * k));
            nk_buf_append(&dp, tmp, 8);
        }
        /* explicit_bounds: packed double, the finite upper bounds */
        pb_tag(&dp, 7, WT_LEN);
        pb_varint(&dp, OBS_HIST_BUCKETS * 8);
        for (uint32_t i = 0; i < OBS_HIST_BUCKETS; i++) {
            double d = (double)obs_hist_bucket_upper(i);
            if (secs)
                d /= 1e6;
            uint64_t v;
            memcpy(&v, &d, sizeof v);
            uint8_t tmp[8];
            for (int k = 0; k < 8; k++)
                tmp[k] = (uint8_t)(v >> (8 * k));
            nk_buf_append(&dp, tmp, 8);
        }
        /* exemplars (field 8): the newest traced observation */
        struct obs_exemplar ex;
        if (obs_hist_exemplar(s->metric, &ex)) {
            struct nk_buf xb;
            nk_buf_init(&xb);
            pb_fixed64(&xb, 2, ex.wall_ns);
            pb_double(&xb, 3, secs ? (double)ex.value / 1e6 : (double)ex.value);
            pb_bytes(&xb, 4, ex.span_id, 8);
            pb_bytes(&xb, 5, ex.trace_id, 16);
            pb_bytes(&dp, 8, xb.data, xb.len);
            nk_buf_free(&xb);
        }
        pb_bytes(&data, 1, dp.data, dp.len);
        pb_tag(&data, 2, WT_VARINT);
        pb_varint(&data, 2);
        pb_bytes(&m, 9, data.data, data.len);
        break;
    }
    }
    pb_bytes(&e->metrics, 2, m.data, m.len);
    nk_buf_free(&m);
    nk_buf_free(&data);
    nk_buf_free(&dp);
}

void obs_otlp_encode_metrics(struct obs_registry *r, const char *service_name,
                             const char *instance_id, uint64_t start_ns, uint64_t now_ns,
                             struct nk_buf *out)
{
    struct enc e = {.start_ns = start_ns, .now_ns = now_ns};
    nk_buf_init(&e.metrics);
    obs_registry_visit(r, visit, &e);

    struct nk_buf scope, sm, res, rm;
    nk_buf_init(&scope);
    nk_buf_init(&sm);
    nk_buf_init(&res);
    nk_buf_init(&rm);
    pb_string(&scope, 1, "norikv");
    pb_bytes(&sm, 1, scope.data, scope.len);
    nk_buf_append(&sm, e.metrics.data, e.metrics.len);
    pb_attr(&res, 1, "service.name", service_name ? service_name : "norikv");
    if (instance_id && *instance_id)
        pb_attr(&res, 1, "service.instance.id", instance_id);
    pb_bytes(&rm, 1, res.data, res.len);
    pb_bytes(&rm, 2, sm.data, sm.len);
    pb_bytes(out, 1, rm.data, rm.len);
    nk_buf_free(&scope);
    nk_buf_free(&sm);
    nk_buf_free(&res);
    nk_buf_free(&rm);
    nk_buf_free(&e.metrics);
}

/* Resource{attributes=1} for service_name / instance_id. */
static void resource(struct nk_buf *res, const char *service_name, const char *instance_id)
{
    pb_attr(res, 1, "service.name", service_name ? service_name : "norikv");
    if (instance_id && *instance_id)
        pb_attr(res, 1, "service.instance.id", instance_id);
}

/*
 * ExportTraceServiceRequest{resource_spans=1: ResourceSpans{resource=1,
 * scope_spans=2: ScopeSpans{scope=1, spans=2: Span}}}; Span fields as in
 * opentelemetry/proto/trace/v1/trace.proto: trace_id 1, span_id 2,
 * parent_span_id 4, name 5, kind 6, start 7 and end 8 (fixed64 Unix ns),
 * attributes 9, status 15 {code 3: 1 OK, 2 ERROR}.
 */
void obs_otlp_encode_traces(const struct obs_trace *t, size_t n, const char *service_name,
                            const char *instance_id, int64_t wall_minus_mono_ns,
                            struct nk_buf *out)
{
    static const uint8_t zero[8] = {0};
    struct nk_buf ss, scope, res, rs, sp, st;
    nk_buf_init(&ss);
    nk_buf_init(&scope);
    nk_buf_init(&res);
    nk_buf_init(&rs);
    nk_buf_init(&sp);
    nk_buf_init(&st);
    pb_string(&scope, 1, "norikv");
    pb_bytes(&ss, 1, scope.data, scope.len);
    for (size_t i = 0; i < n; i++) {
        for (uint32_t k = 0; k < t[i].nspans; k++) {
            const struct obs_span *s = &t[i].spans[k];
            nk_buf_clear(&sp);
            nk_buf_clear(&st);
            pb_bytes(&sp, 1, t[i].trace_id, 16);
            pb_bytes(&sp, 2, s->span_id, 8);
            if (memcmp(s->parent_id, zero, 8) != 0)
                pb_bytes(&sp, 4, s->parent_id, 8);
            pb_string(&sp, 5, s->name ? s->name : "span");
            pb_tag(&sp, 6, WT_VARINT);
            pb_varint(&sp, s->kind);
            pb_fixed64(&sp, 7, (uint64_t)((int64_t)s->start_ns + wall_minus_mono_ns));
            pb_fixed64(&sp, 8, (uint64_t)((int64_t)s->end_ns + wall_minus_mono_ns));
            for (uint8_t a = 0; a < s->nattrs; a++)
                pb_attr(&sp, 9, s->attr_key[a], s->attr_val[a]);
            pb_tag(&st, 3, WT_VARINT);
            pb_varint(&st, s->error ? 2 : 1);
            pb_bytes(&sp, 15, st.data, st.len);
            pb_bytes(&ss, 2, sp.data, sp.len);
        }
    }
    resource(&res, service_name, instance_id);
    pb_bytes(&rs, 1, res.data, res.len);
    pb_bytes(&rs, 2, ss.data, ss.len);
    pb_bytes(out, 1, rs.data, rs.len);
    nk_buf_free(&ss);
    nk_buf_free(&scope);
    nk_buf_free(&res);
    nk_buf_free(&rs);
    nk_buf_free(&sp);
    nk_buf_free(&st);
}

/* -------------------------------------------------------------- export */

/* Where one signal goes. */
struct target {
    bool on;
    char host[300], port[8], path[512], hostport[300];
    _Atomic uint64_t ok, failed;
    uint64_t last_warn_ms;
};

struct obs_otlp_exporter {
    struct target metrics, traces;
    char service[128], instance[128];
    uint32_t interval_ms, trace_interval_ms, timeout_ms;
    struct obs_registry *reg;
    void (*refresh)(void *ctx);
    void *refresh_ctx;
    uint64_t start_ns;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stop;
};

static nk_status parse_endpoint(struct target *e, const char *url, const char *signal_path)
{
    if (!url || strncmp(url, "http://", 7) != 0)
        return nk_status_make(NK_INVALID_ARGUMENT,
                              "OTLP endpoint '%.100s' is invalid: it must start with http:// "
                              "(OTLP/HTTP without TLS)",
                              url ? url : "");
    const char *h = url + 7;
    const char *slash = strchr(h, '/');
    size_t hl = slash ? (size_t)(slash - h) : strlen(h);
    if (hl == 0 || hl >= sizeof e->hostport)
        return nk_status_make(NK_INVALID_ARGUMENT, "OTLP endpoint '%.100s' has no host", url);
    memcpy(e->hostport, h, hl);
    e->hostport[hl] = 0;
    const char *colon = strrchr(e->hostport, ':');
    const char *rb = strrchr(e->hostport, ']');
    if (colon && (!rb || colon > rb)) {
        size_t n = (size_t)(colon - e->hostport);
        const char *p = colon + 1;
        if (!*p || strlen(p) >= sizeof e->port || strspn(p, "0123456789") != strlen(p) ||
            atoi(p) < 1 || atoi(p) > 65535)
            return nk_status_make(NK_INVALID_ARGUMENT, "OTLP endpoint '%.100s' has a bad port",
                                  url);
        snprintf(e->port, sizeof e->port, "%s", p);
        if (e->hostport[0] == '[' && n >= 2 && e->hostport[n - 1] == ']')
            snprintf(e->host, sizeof e->host, "%.*s", (int)(n - 2), e->hostport + 1);
        else
            snprintf(e->host, sizeof e->host, "%.*s", (int)n, e->hostport);
    } else {
        snprintf(e->port, sizeof e->port, "4318"); /* OTLP/HTTP's default */
        size_t n = strlen(e->hostport);
        if (e->hostport[0] == '[' && n >= 2 && e->hostport[n - 1] == ']')
            snprintf(e->host, sizeof e->host, "%.*s", (int)(n - 2), e->hostport + 1);
        else
            snprintf(e->host, sizeof e->host, "%s", e->hostport);
    }
    /* a bare endpoint gets the signal's path, as OTEL_EXPORTER_OTLP_ENDPOINT does */
    if (!slash || strcmp(slash, "/") == 0)
        snprintf(e->path, sizeof e->path, "%s", signal_path);
    else if (strlen(slash) < sizeof e->path)
        snprintf(e->path, sizeof e->path, "%s", slash);
    else
        return nk_status_make(NK_INVALID_ARGUMENT, "OTLP endpoint path is too long");
    return NK_OK;
}

static uint64_t mono_ms(void)
{
    return nk_mono_ms();
}

/* Waits for fd to be ready for `events` until deadline (mono ms). */
static bool wait_fd(int fd, short events, uint64_t deadline)
{
    for (;;) {
        uint64_t now = mono_ms();
        if (now >= deadline)
            return false;
        struct pollfd p = {.fd = fd, .events = events};
        int r = poll(&p, 1, (int)(deadline - now));
        if (r > 0)
            return true;
        if (r == 0)
            return false;
        if (errno != EINTR)
            return false;
    }
}

/* POSTs body; true on a 2xx answer. err gets the reason otherwise. */
static bool post(const struct obs_otlp_exporter *x, const struct target *e,
                 const struct nk_buf *body, char *err, size_t cap)
{
    uint64_t deadline = mono_ms() + x->timeout_ms;
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res = NULL;
    int gai = getaddrinfo(e->host, e->port, &hints, &res);
    if (gai != 0) {
        snprintf(err, cap, "cannot resolve %.100s: %s", e->host, gai_strerror(gai));
        return false;
    }
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        snprintf(err, cap, "socket: %s", strerror(errno));
        freeaddrinfo(res);
        return false;
    }
    int rc = connect(fd, res->ai_addr, res->ai_addrlen);
    freeaddrinfo(res);
    if (rc != 0 && errno != EINPROGRESS) {
        snprintf(err, cap, "connect to %.100s: %s", e->hostport, strerror(errno));
        close(fd);
        return false;
    }
    if (rc != 0) {
        int soerr = 0;
        socklen_t sl = sizeof soerr;
        if (!wait_fd(fd, POLLOUT, deadline) ||
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0 || soerr != 0) {
            snprintf(err, cap, "connect to %.100s: %s", e->hostport,
                     soerr ? strerror(soerr) : "timed out");
            close(fd);
            return false;
        }
    }
    char head[1024];
    int hn = snprintf(head, sizeof head,
                      "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/x-protobuf\r\n"
                      "Content-Length: %zu\r\nConnection: close\r\nUser-Agent: norikv\r\n\r\n",
                      e->path, e->hostport, body->len);
    const uint8_t *parts[2] = {(const uint8_t *)head, body->data};
    size_t lens[2] = {(size_t)hn, body->len};
    for (int p = 0; p < 2; p++) {
        size_t off = 0;
        while (off < lens[p]) {
            ssize_t n = send(fd, parts[p] + off, lens[p] - off, MSG_NOSIGNAL);
            if (n > 0) {
                off += (size_t)n;
                continue;
            }
            if (n < 0 && (errno == EAGAIN || errno == EINTR) && wait_fd(fd, POLLOUT, deadline))
                continue;
            snprintf(err, cap, "sending to %.100s: %s", e->hostport,
                     n < 0 ? strerror(errno) : "timed out");
            close(fd);
            return false;
        }
    }
    /* the status line is enough: "HTTP/1.1 200 OK" */
    char resp[256];
    size_t got = 0;
    while (got < sizeof resp - 1 && !memchr(resp, '\n', got)) {
        if (!wait_fd(fd, POLLIN, deadline)) {
            snprintf(err, cap, "no answer from %.100s within %u ms", e->hostport, x->timeout_ms);
            close(fd);
            return false;
        }
        ssize_t n = recv(fd, resp + got, sizeof resp - 1 - got, 0);
        if (n <= 0) {
            if (n < 0 && (errno == EAGAIN || errno == EINTR))
                continue;
            break;
        }
        got += (size_t)n;
    }
    close(fd);
    resp[got] = 0;
    int status = 0;
    if (sscanf(resp, "HTTP/%*s %d", &status) != 1) {
        snprintf(err, cap, "no HTTP answer from %.100s", e->hostport);
        return false;
    }
    if (status < 200 || status > 299) {
        char *nl = strpbrk(resp, "\r\n");
        if (nl)
            *nl = 0;
        snprintf(err, cap, "%.100s answered '%.100s'", e->hostport, resp);
        return false;
    }
    return true;
}

/* Counts the outcome; a failing collector costs one line a minute, not one
 * per export. */
static void note(struct target *t, const char *what, bool ok, const char *err)
{
    if (ok) {
        atomic_fetch_add(&t->ok, 1);
        return;
    }
    atomic_fetch_add(&t->failed, 1);
    uint64_t now = mono_ms();
    if (t->last_warn_ms == 0 || now - t->last_warn_ms >= 60000) {
        t->last_warn_ms = now;
        NK_WARN(MODULE, "OTLP %s export to http://%s%s failed (%" PRIu64
                        " failures so far; next warning in a minute at the earliest): %s",
                what, t->hostport, t->path, atomic_load(&t->failed), err);
    }
}

static void export_metrics(struct obs_otlp_exporter *e)
{
    if (e->refresh)
        e->refresh(e->refresh_ctx);
    struct nk_buf body;
    nk_buf_init(&body);
    uint64_t now_ns = nk_wall_ms() * 1000000ull;
    obs_otlp_encode_metrics(e->reg, e->service, e->instance, e->start_ns, now_ns, &body);
    char err[256] = "";
    bool ok = false;
    if (body.len > OBS_OTLP_MAX_BYTES)
        snprintf(err, sizeof err, "the metrics are %zu bytes, over the %u-byte export limit",
                 body.len, OBS_OTLP_MAX_BYTES);
    else
        ok = post(e, &e->metrics, &body, err, sizeof err);
    nk_buf_free(&body);
    note(&e->metrics, "metrics", ok, err);
}

/* Drains the trace ring in requests of at most EXPORT_TRACES traces (each
 * at most OBS_TRACE_MAX_SPANS spans of a few hundred bytes: far below
 * OBS_OTLP_MAX_BYTES). */
#define EXPORT_TRACES 128

static void export_traces(struct obs_otlp_exporter *e)
{
    struct obs_trace *batch = nk_malloc(EXPORT_TRACES * sizeof *batch);
    for (int round = 0; round < OBS_TRACE_RING / EXPORT_TRACES; round++) {
        size_t n = obs_traces_take(batch, EXPORT_TRACES);
        if (n == 0)
            break;
        struct timespec w, m;
        clock_gettime(CLOCK_REALTIME, &w);
        clock_gettime(CLOCK_MONOTONIC, &m);
        int64_t off = ((int64_t)w.tv_sec - (int64_t)m.tv_sec) * 1000000000ll +
                      ((int64_t)w.tv_nsec - (int64_t)m.tv_nsec);
        struct nk_buf body;
        nk_buf_init(&body);
        obs_otlp_encode_traces(batch, n, e->service, e->instance, off, &body);
        char err[256] = "";
        bool ok = post(e, &e->traces, &body, err, sizeof err);
        nk_buf_free(&body);
        note(&e->traces, "trace", ok, err);
        if (!ok)
            break; /* the rest waits for the next try (the ring drops the oldest) */
    }
    free(batch);
}

static void *exporter_main(void *arg)
{
    struct obs_otlp_exporter *e = arg;
    uint64_t next_metrics = mono_ms() + e->interval_ms;
    pthread_mutex_lock(&e->mu);
    while (!e->stop) {
        uint64_t now = mono_ms();
        uint64_t wait = e->metrics.on ? (next_metrics > now ? next_metrics - now : 0) : 3600000;
        if (e->traces.on && wait > e->trace_interval_ms)
            wait = e->trace_interval_ms;
        struct timespec dl;
        clock_gettime(CLOCK_MONOTONIC, &dl);
        dl.tv_sec += (time_t)(wait / 1000);
        dl.tv_nsec += (long)(wait % 1000) * 1000000L;
        if (dl.tv_nsec >= 1000000000L) {
            dl.tv_sec++;
            dl.tv_nsec -= 1000000000L;
        }
        while (!e->stop && pthread_cond_timedwait(&e->cv, &e->mu, &dl) != ETIMEDOUT) {
        }
        if (e->stop)
            break;
        pthread_mutex_unlock(&e->mu);
        /* one export at a time: the next interval starts after it */
        if (e->traces.on)
            export_traces(e);
        if (e->metrics.on && mono_ms() >= next_metrics) {
            export_metrics(e);
            next_metrics = mono_ms() + e->interval_ms;
        }
        pthread_mutex_lock(&e->mu);
    }
    pthread_mutex_unlock(&e->mu);
    return NULL;
}

nk_status obs_otlp_start(const struct obs_otlp_options *o, struct obs_otlp_exporter **out)
{
    if (!o->endpoint && !o->traces_endpoint)
        return nk_status_make(NK_INVALID_ARGUMENT, "OTLP export needs an endpoint");
    struct obs_otlp_exporter *e = nk_calloc(1, sizeof *e);
    nk_status s = NK_OK;
    if (o->endpoint) {
        s = parse_endpoint(&e->metrics, o->endpoint, "/v1/metrics");
        e->metrics.on = nk_ok(s);
    }
    if (nk_ok(s) && o->traces_endpoint) {
        s = parse_endpoint(&e->traces, o->traces_endpoint, "/v1/traces");
        e->traces.on = nk_ok(s);
    }
    if (!nk_ok(s)) {
        free(e);
        return s;
    }
    e->interval_ms = o->interval_ms ? o->interval_ms : 10000;
    e->trace_interval_ms = o->trace_interval_ms ? o->trace_interval_ms : 1000;
    e->timeout_ms = o->timeout_ms ? o->timeout_ms : 5000;
    if (e->interval_ms < 100 || e->interval_ms > 3600000 || e->trace_interval_ms < 10 ||
        e->trace_interval_ms > 3600000 || e->timeout_ms > 600000) {
        free(e);
        return nk_status_make(NK_INVALID_ARGUMENT,
                              "OTLP interval %u ms (100..3600000), trace interval %u ms "
                              "(10..3600000) or timeout %u ms (..600000) out of range",
                              o->interval_ms, o->trace_interval_ms, o->timeout_ms);
    }
    snprintf(e->service, sizeof e->service, "%s", o->service_name ? o->service_name : "norikv");
    snprintf(e->instance, sizeof e->instance, "%s", o->instance_id ? o->instance_id : "");
    e->reg = o->registry ? o->registry : obs_default();
    e->refresh = o->refresh;
    e->refresh_ctx = o->refresh_ctx;
    e->start_ns = nk_wall_ms() * 1000000ull;
    pthread_mutex_init(&e->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&e->cv, &ca);
    pthread_condattr_destroy(&ca);
    if (pthread_create(&e->thread, NULL, exporter_main, e) != 0) {
        int err = errno;
        pthread_cond_destroy(&e->cv);
        pthread_mutex_destroy(&e->mu);
        free(e);
        return nk_status_errno(err, "start the OTLP exporter thread");
    }
    *out = e;
    return NK_OK;
}

void obs_otlp_stop(struct obs_otlp_exporter *e)
{
    if (!e)
        return;
    pthread_mutex_lock(&e->mu);
    e->stop = true;
    pthread_cond_signal(&e->cv);
    pthread_mutex_unlock(&e->mu);
    pthread_join(e->thread, NULL);
    pthread_cond_destroy(&e->cv);
    pthread_mutex_destroy(&e->mu);
    free(e);
}

void obs_otlp_counts(struct obs_otlp_exporter *e, uint64_t *ok, uint64_t *failed)
{
    *ok = atomic_load(&e->metrics.ok);
    *failed = atomic_load(&e->metrics.failed);
}

void obs_otlp_trace_counts(struct obs_otlp_exporter *e, uint64_t *ok, uint64_t *failed)
{
    *ok = atomic_load(&e->traces.ok);
    *failed = atomic_load(&e->traces.failed);
}
