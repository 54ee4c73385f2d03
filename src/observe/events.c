/*
 * events.c: the bounded event ring behind /events.
 *
 * A fixed array of capacity slots; event number seq lives in slot
 * (seq - 1) % capacity, so the ring overwrites the oldest event and the
 * newest `capacity` events are always readable. Events are rare (elections,
 * flushes, membership changes), so a mutex guards the ring and a condition
 * variable (on the monotonic clock) wakes long-polling readers.
 */
#include "observe/observe.h"

#include <errno.h>
#include <stddef.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

struct obs_events {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    uint32_t capacity;
    uint64_t last_seq; /* 0: none yet */
    struct obs_event *slots;
};

static const char *const kind_names[OBS_EV_KIND_COUNT] = {
    "info",       "warning",  "error", "leader_change", "election", "membership",
    "shard_move", "snapshot", "flush", "compaction",    "lifecycle",
    "term_change", "role_change", "log_compaction", "write_stall", "slow_request", "gap",
};

bool obs_event_kind_parse(const char *name, size_t len, enum obs_event_kind *out)
{
    for (int k = 0; k < OBS_EV_KIND_COUNT; k++) {
        if (strlen(kind_names[k]) == len && memcmp(kind_names[k], name, len) == 0) {
            *out = (enum obs_event_kind)k;
            return true;
        }
    }
    return false;
}

static void copy_cut(char *dst, size_t cap, const char *src);

void obs_attrs_set_node(struct obs_event_attrs *a, const char *node)
{
    copy_cut(a->node, sizeof a->node, node ? node : "");
    a->set |= OBS_ATTR_NODE;
}

void obs_attrs_set_role(struct obs_event_attrs *a, const char *role)
{
    copy_cut(a->role, sizeof a->role, role ? role : "");
    a->set |= OBS_ATTR_ROLE;
}

const char *obs_event_kind_name(enum obs_event_kind k)
{
    return (unsigned)k < OBS_EV_KIND_COUNT ? kind_names[k] : "unknown";
}

nk_status obs_events_new(uint32_t capacity, struct obs_events **out)
{
    if (capacity == 0 || capacity > OBS_EVENTS_MAX_CAPACITY)
        return nk_status_make(NK_INVALID_ARGUMENT, "event ring capacity %u not in 1..%u",
                              capacity, OBS_EVENTS_MAX_CAPACITY);
    struct obs_events *ev = nk_calloc(1, sizeof *ev);
    pthread_mutex_init(&ev->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&ev->cv, &ca);
    pthread_condattr_destroy(&ca);
    ev->capacity = capacity;
    ev->slots = nk_calloc(capacity, sizeof *ev->slots);
    *out = ev;
    return NK_OK;
}

void obs_events_free(struct obs_events *ev)
{
    if (!ev)
        return;
    pthread_cond_destroy(&ev->cv);
    pthread_mutex_destroy(&ev->mu);
    free(ev->slots);
    free(ev);
}

static pthread_once_t default_once = PTHREAD_ONCE_INIT;
static struct obs_events *default_ring;

static void default_init(void)
{
    /* NORIKV_EVENTS_CAPACITY sizes the ring (docs/observability.md); a value
     * that is not a number in 1..OBS_EVENTS_MAX_CAPACITY is ignored */
    uint32_t cap = OBS_EVENTS_DEFAULT_CAPACITY;
    const char *env = getenv("NORIKV_EVENTS_CAPACITY");
    if (env && *env) {
        char *end = NULL;
        unsigned long long v = strtoull(env, &end, 10);
        if (end && *end == 0 && env[0] >= '0' && env[0] <= '9' && v >= 1 &&
            v <= OBS_EVENTS_MAX_CAPACITY)
            cap = (uint32_t)v;
    }
    nk_status s = obs_events_new(cap, &default_ring);
    NK_ASSERT(nk_ok(s));
}

struct obs_events *obs_events_default(void)
{
    pthread_once(&default_once, default_init);
    return default_ring;
}

/* A cut message must not end inside a UTF-8 sequence (/events is JSON). */
static void utf8_trim(char *s)
{
    size_t len = strlen(s);
    size_t i = len;
    while (i > 0 && ((unsigned char)s[i - 1] & 0xC0) == 0x80)
        i--;
    if (i == 0)
        return;
    unsigned char lead = (unsigned char)s[i - 1];
    size_t need = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1;
    if (len - (i - 1) < need)
        s[i - 1] = 0;
}

static void copy_cut(char *dst, size_t cap, const char *src)
{
    size_t n = strlen(src);
    if (n >= cap) {
        n = cap - 1;
        memcpy(dst, src, n);
        dst[n] = 0;
        utf8_trim(dst);
    } else {
        memcpy(dst, src, n + 1);
    }
}

static uint64_t emit_v(struct obs_events *ev, enum obs_event_kind kind, uint32_t shard,
                       const struct obs_event_attrs *attrs, const char *fmt, va_list ap)
{
    /* Format outside the lock: vsnprintf is the slow part. */
    char msg[OBS_EVENT_MSG_MAX];
    int n = vsnprintf(msg, sizeof msg, fmt, ap);
    if (n < 0)
        msg[0] = 0;
    else if ((size_t)n >= sizeof msg)
        utf8_trim(msg);
    uint64_t wall = nk_wall_ms();

    pthread_mutex_lock(&ev->mu);
    uint64_t seq = ++ev->last_seq;
    struct obs_event *e = &ev->slots[(seq - 1) % ev->capacity];
    e->seq = seq;
    e->wall_ms = wall;
    e->kind = (unsigned)kind < OBS_EV_KIND_COUNT ? kind : OBS_EV_INFO;
    e->shard = shard;
    if (attrs)
        e->attrs = *attrs;
    else
        memset(&e->attrs, 0, sizeof e->attrs);
    memcpy(e->msg, msg, sizeof msg);
    pthread_cond_broadcast(&ev->cv);
    pthread_mutex_unlock(&ev->mu);
    return seq;
}

uint64_t obs_event_emit(struct obs_events *ev, enum obs_event_kind kind, uint32_t shard,
                        const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    uint64_t seq = emit_v(ev, kind, shard, NULL, fmt, ap);
    va_end(ap);
    return seq;
}

uint64_t obs_event_emit_attrs(struct obs_events *ev, enum obs_event_kind kind, uint32_t shard,
                              const struct obs_event_attrs *attrs, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    uint64_t seq = emit_v(ev, kind, shard, attrs, fmt, ap);
    va_end(ap);
    return seq;
}

uint32_t obs_events_capacity(struct obs_events *ev)
{
    return ev->capacity;
}

void obs_events_read(struct obs_events *ev, uint64_t after_seq, struct obs_event *out, size_t max,
                     size_t *n, uint64_t *missed)
{
    *n = 0;
    if (missed)
        *missed = 0;
    pthread_mutex_lock(&ev->mu);
    uint64_t last = ev->last_seq;
    uint64_t oldest = last > ev->capacity ? last - ev->capacity + 1 : 1;
    uint64_t from = after_seq + 1;
    if (from < oldest) {
        if (missed)
            *missed = oldest - from;
        from = oldest;
    }
    for (uint64_t seq = from; seq <= last && *n < max; seq++) {
        const struct obs_event *e = &ev->slots[(seq - 1) % ev->capacity];
        NK_ASSERT(e->seq == seq);
        out[(*n)++] = *e;
    }
    pthread_mutex_unlock(&ev->mu);
}

uint64_t obs_events_last_seq(struct obs_events *ev)
{
    pthread_mutex_lock(&ev->mu);
    uint64_t s = ev->last_seq;
    pthread_mutex_unlock(&ev->mu);
    return s;
}

bool obs_events_wait(struct obs_events *ev, uint64_t after_seq, uint64_t timeout_ms)
{
    struct timespec dl;
    clock_gettime(CLOCK_MONOTONIC, &dl);
    dl.tv_sec += (time_t)(timeout_ms / 1000);
    dl.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (dl.tv_nsec >= 1000000000L) {
        dl.tv_sec++;
        dl.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&ev->mu);
    while (ev->last_seq <= after_seq) {
        if (pthread_cond_timedwait(&ev->cv, &ev->mu, &dl) == ETIMEDOUT)
            break;
    }
    bool have = ev->last_seq > after_seq;
    pthread_mutex_unlock(&ev->mu);
    return have;
}

/* JSON string body: escapes quote, backslash and control bytes. */
static void json_escape(struct nk_buf *b, const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') {
            nk_buf_put_u8(b, '\\');
            nk_buf_put_u8(b, *p);
        } else if (*p < 0x20) {
            char tmp[8];
            snprintf(tmp, sizeof tmp, "\\u%04x", *p);
            nk_buf_append(b, tmp, 6);
        } else {
            nk_buf_put_u8(b, *p);
        }
    }
}

void obs_event_to_json(const struct obs_event *e, struct nk_buf *out)
{
    char tmp[128];
    int n = snprintf(tmp, sizeof tmp, "{\"seq\":%" PRIu64 ",\"time_ms\":%" PRIu64 ",\"kind\":\"%s\",",
                     e->seq, e->wall_ms, obs_event_kind_name(e->kind));
    nk_buf_append(out, tmp, (size_t)n);
    if (e->shard == OBS_NO_SHARD)
        n = snprintf(tmp, sizeof tmp, "\"shard\":null,");
    else
        n = snprintf(tmp, sizeof tmp, "\"shard\":%u,", e->shard);
    nk_buf_append(out, tmp, (size_t)n);
    nk_buf_append(out, "\"message\":\"", 11);
    json_escape(out, e->msg);
    nk_buf_put_u8(out, '"');
    const struct obs_event_attrs *a = &e->attrs;
    static const struct {
        uint32_t bit;
        const char *name;
        size_t off;
    } u64s[] = {
        {OBS_ATTR_TERM, "term", offsetof(struct obs_event_attrs, term)},
        {OBS_ATTR_BYTES_IN, "bytes_in", offsetof(struct obs_event_attrs, bytes_in)},
        {OBS_ATTR_BYTES_OUT, "bytes_out", offsetof(struct obs_event_attrs, bytes_out)},
        {OBS_ATTR_FILES_IN, "files_in", offsetof(struct obs_event_attrs, files_in)},
        {OBS_ATTR_FILES_OUT, "files_out", offsetof(struct obs_event_attrs, files_out)},
        {OBS_ATTR_DURATION, "duration_us", offsetof(struct obs_event_attrs, duration_us)},
        {OBS_ATTR_COUNT, "count", offsetof(struct obs_event_attrs, count)},
    };
    if (a->set & OBS_ATTR_LEVEL) {
        n = snprintf(tmp, sizeof tmp, ",\"level\":%d", a->level);
        nk_buf_append(out, tmp, (size_t)n);
    }
    if (a->set & OBS_ATTR_OUT_LEVEL) {
        n = snprintf(tmp, sizeof tmp, ",\"out_level\":%d", a->out_level);
        nk_buf_append(out, tmp, (size_t)n);
    }
    for (size_t i = 0; i < sizeof u64s / sizeof u64s[0]; i++) {
        if (!(a->set & u64s[i].bit))
            continue;
        uint64_t v;
        memcpy(&v, (const char *)a + u64s[i].off, sizeof v);
        n = snprintf(tmp, sizeof tmp, ",\"%s\":%" PRIu64, u64s[i].name, v);
        nk_buf_append(out, tmp, (size_t)n);
    }
    if (a->set & OBS_ATTR_NODE) {
        nk_buf_append(out, ",\"node\":\"", 9);
        json_escape(out, a->node);
        nk_buf_put_u8(out, '"');
    }
    if (a->set & OBS_ATTR_ROLE) {
        nk_buf_append(out, ",\"role\":\"", 9);
        json_escape(out, a->role);
        nk_buf_put_u8(out, '"');
    }
    nk_buf_put_u8(out, '}');
}
