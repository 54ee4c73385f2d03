/*
 * trace.c: request tracing at the API edge (docs/observability.md,
 * "Traces"): a Kv call carrying a sampled W3C traceparent (or picked by
 * telemetry.otlp.trace_sample_ratio) gets a server span; the node adds its
 * spans while the request goes through it; the reply ends the trace and
 * leaves the latency observation as the histogram's exemplar.
 */
#include <stdio.h>

#include "api/api_internal.h"

struct obs_trace *api_trace_begin(struct rpc_call *call, const char *name, uint64_t t0)
{
    if (!obs_tracing_enabled())
        return NULL;
    const char *tp = NULL;
    size_t len = 0;
    rpc_call_header(call, "traceparent", &tp, &len);
    /* the server span starts when rpc/ took the call, like the latency */
    uint64_t arrival = rpc_call_arrival_ns(call);
    return obs_trace_begin(tp, len, name, arrival && arrival < t0 ? arrival : t0);
}

void api_record_t(struct api *a, enum api_op op, enum api_outcome out, uint64_t t0,
                  struct obs_trace *tr)
{
    if (!tr) {
        api_record(a, op, out, t0);
        return;
    }
    obs_counter_inc(a->requests[op][out]);
    uint64_t now = nk_mono_ns();
    uint64_t us = now > t0 ? (now - t0) / 1000 : 0;
    obs_hist_observe_exemplar(a->latency[op], us, tr->trace_id, tr->spans[0].span_id);
    api_note_slow(a, op, out, us);
    obs_span_attr(&tr->spans[0], "norikv.outcome", "%s", api_outcome_name(out));
    /* a request the client got an answer to by design is not an error */
    bool error = out != OUT_OK && out != OUT_NOT_FOUND && out != OUT_VERSION_MISMATCH &&
                 out != OUT_ALREADY_EXISTS;
    obs_trace_end(tr, now, error);
}
