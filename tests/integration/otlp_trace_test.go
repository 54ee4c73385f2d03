package integration

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	pb "github.com/norikv/norikv-go/proto"
	metricspb "go.opentelemetry.io/proto/otlp/metrics/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// decodeTraceExport reads an ExportTraceServiceRequest (field 1: repeated
// ResourceSpans) with the OpenTelemetry project's own message types.
func decodeTraceExport(b []byte) ([]*tracepb.ResourceSpans, error) {
	var out []*tracepb.ResourceSpans
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, protowire.ParseError(n)
		}
		b = b[n:]
		if num != 1 || typ != protowire.BytesType {
			return nil, fmt.Errorf("unexpected field %d type %d in the request", num, typ)
		}
		v, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return nil, protowire.ParseError(n)
		}
		b = b[n:]
		rs := &tracepb.ResourceSpans{}
		if err := proto.Unmarshal(v, rs); err != nil {
			return nil, err
		}
		out = append(out, rs)
	}
	return out, nil
}

// otlpReceiver collects every span and the newest metrics export.
type otlpReceiver struct {
	mu      sync.Mutex
	spans   []*tracepb.Span
	metrics []*metricspb.ResourceMetrics
	bad     []string
	srv     *httptest.Server
}

func newOTLPReceiver(t *testing.T) *otlpReceiver {
	r := &otlpReceiver{}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		defer r.mu.Unlock()
		if req.Header.Get("Content-Type") != "application/x-protobuf" {
			r.bad = append(r.bad, "content type "+req.Header.Get("Content-Type"))
		}
		switch req.URL.Path {
		case "/v1/traces":
			rss, err := decodeTraceExport(body)
			if err != nil {
				r.bad = append(r.bad, "traces: "+err.Error())
				w.WriteHeader(400)
				return
			}
			for _, rs := range rss {
				if attrs(rs.Resource.Attributes)["service.name"] != "norikv" {
					r.bad = append(r.bad, "trace resource without service.name norikv")
				}
				for _, ss := range rs.ScopeSpans {
					r.spans = append(r.spans, ss.Spans...)
				}
			}
		case "/v1/metrics":
			rms, err := decodeExport(body)
			if err != nil {
				r.bad = append(r.bad, "metrics: "+err.Error())
				w.WriteHeader(400)
				return
			}
			r.metrics = rms
		default:
			r.bad = append(r.bad, "path "+req.URL.Path)
		}
		w.WriteHeader(200)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

// spansOf returns the spans of one trace received so far.
func (r *otlpReceiver) spansOf(traceID []byte) []*tracepb.Span {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*tracepb.Span
	for _, s := range r.spans {
		if bytes.Equal(s.TraceId, traceID) {
			out = append(out, s)
		}
	}
	return out
}

func (r *otlpReceiver) traceIDs() map[string]bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := map[string]bool{}
	for _, s := range r.spans {
		m[hex.EncodeToString(s.TraceId)] = true
	}
	return m
}

func (r *otlpReceiver) check(t *testing.T) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.bad) > 0 {
		t.Fatalf("bad exports: %v", r.bad)
	}
}

// waitSpans waits until the trace has at least n spans.
func (r *otlpReceiver) waitSpans(t *testing.T, traceID []byte, n int) []*tracepb.Span {
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if s := r.spansOf(traceID); len(s) >= n {
			return s
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("trace %x: %d spans after 15 s, want %d", traceID, len(r.spansOf(traceID)), n)
	return nil
}

func byName(spans []*tracepb.Span) map[string]*tracepb.Span {
	m := map[string]*tracepb.Span{}
	for _, s := range spans {
		m[s.Name] = s
	}
	return m
}

func spanAttrs(s *tracepb.Span) map[string]string { return attrs(s.Attributes) }

// A put whose gRPC metadata carries a sampled W3C traceparent is exported
// as one trace continuing the caller's: a server span (the caller's span
// as parent) with the node's spans under it, in the order a write goes
// through (queued, appended to the log and fsynced, committed, applied),
// each inside the server span; the put latency histogram's exemplar names
// the trace. Unsampled, malformed or missing traceparents trace nothing.
func TestOTLPTraceOfAPutFollowsItFromTheCallerThroughCommitAndApply(t *testing.T) {
	rcv := newOTLPReceiver(t)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", rcv.srv.URL)
	t.Setenv("OTEL_METRIC_EXPORT_INTERVAL", "200")
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "100")
	s := ephemeral(t)

	const tid = "4bf92f3577b34da6a3ce929d0e0e4736"
	const parent = "00f067aa0ba902b7"
	traceID, _ := hex.DecodeString(tid)
	parentID, _ := hex.DecodeString(parent)
	put := func(key, tp string) {
		ctx := ctxT(t)
		if tp != "" {
			ctx = metadata.AppendToOutgoingContext(ctx, "traceparent", tp)
		}
		if _, err := s.kv.Put(ctx, &pb.PutRequest{Key: []byte(key), Value: []byte("v")}); err != nil {
			t.Fatalf("put %s: %v", key, err)
		}
	}
	// not traced: no traceparent, not sampled, malformed (all with ratio 0)
	put("plain", "")
	put("unsampled", "00-11111111111111111111111111111111-2222222222222222-00")
	put("malformed", "00-"+strings.ToUpper(tid)+"-"+parent+"-01")
	put("traced", "00-"+tid+"-"+parent+"-01")

	spans := rcv.waitSpans(t, traceID, 5)
	m := byName(spans)
	root := m["norikv.v1.Kv/Put"]
	if root == nil || root.Kind != tracepb.Span_SPAN_KIND_SERVER || !bytes.Equal(root.ParentSpanId, parentID) {
		t.Fatalf("no server span norikv.v1.Kv/Put under the caller's span: %v", spans)
	}
	if a := spanAttrs(root); a["norikv.outcome"] != "ok" || a["norikv.shard"] == "" {
		t.Fatalf("server span attributes %v", a)
	}
	if root.Status.GetCode() != tracepb.Status_STATUS_CODE_OK {
		t.Fatalf("server span status %v", root.Status)
	}
	order := []string{"node.queue", "raft.log_append", "raft.commit", "kv.apply"}
	var prevEnd uint64
	for _, name := range order {
		sp := m[name]
		if sp == nil {
			t.Fatalf("no %s span in %v", name, spans)
		}
		if !bytes.Equal(sp.ParentSpanId, root.SpanId) || len(sp.SpanId) != 8 {
			t.Fatalf("%s is not a child of the server span", name)
		}
		if sp.StartTimeUnixNano < root.StartTimeUnixNano || sp.EndTimeUnixNano > root.EndTimeUnixNano ||
			sp.EndTimeUnixNano < sp.StartTimeUnixNano {
			t.Fatalf("%s [%d, %d] is not inside the server span [%d, %d]", name,
				sp.StartTimeUnixNano, sp.EndTimeUnixNano, root.StartTimeUnixNano, root.EndTimeUnixNano)
		}
		// a write goes through these in order (log_append ends within the commit)
		if name != "raft.commit" && sp.StartTimeUnixNano+1000 < prevEnd {
			t.Fatalf("%s starts %d ns before the previous span ended", name, prevEnd-sp.StartTimeUnixNano)
		}
		prevEnd = sp.EndTimeUnixNano
	}
	if a := spanAttrs(m["raft.log_append"]); a["norikv.fsync"] != "true" {
		t.Fatalf("the put's log write was not an fsync: %v", a)
	}
	if a := spanAttrs(m["raft.commit"]); a["raft.index"] == "" || a["raft.term"] == "" {
		t.Fatalf("commit span attributes %v", a)
	}
	// wall-clock times: within a minute of now
	if d := time.Since(time.Unix(0, int64(root.StartTimeUnixNano))); d < 0 || d > time.Minute {
		t.Fatalf("server span started %v ago", d)
	}

	// a traced get: server span with the read under it
	gctx := metadata.AppendToOutgoingContext(ctxT(t), "traceparent",
		"00-5bf92f3577b34da6a3ce929d0e0e4736-"+parent+"-01")
	if _, err := s.kv.Get(gctx, &pb.GetRequest{Key: []byte("traced")}); err != nil {
		t.Fatal(err)
	}
	getID, _ := hex.DecodeString("5bf92f3577b34da6a3ce929d0e0e4736")
	gm := byName(rcv.waitSpans(t, getID, 2))
	if gm["norikv.v1.Kv/Get"] == nil || gm["kv.get"] == nil {
		t.Fatalf("get trace: %v", gm)
	}

	// the put latency histogram's exemplar names the traced put
	deadline := time.Now().Add(10 * time.Second)
	for {
		var found bool
		rcv.mu.Lock()
		for _, rm := range rcv.metrics {
			for _, sm := range rm.ScopeMetrics {
				for _, mt := range sm.Metrics {
					if mt.Name != "norikv_request_duration_seconds" && mt.Name != "norikv_raft_commit_duration_seconds" {
						continue
					}
					for _, dp := range mt.GetHistogram().GetDataPoints() {
						if mt.Name == "norikv_request_duration_seconds" && attrs(dp.Attributes)["op"] != "put" {
							continue
						}
						for _, ex := range dp.Exemplars {
							if bytes.Equal(ex.TraceId, traceID) && bytes.Equal(ex.SpanId, root.SpanId) &&
								ex.GetAsDouble() > 0 && ex.GetAsDouble() < 10 {
								found = found || mt.Name == "norikv_request_duration_seconds"
							}
						}
					}
				}
			}
		}
		rcv.mu.Unlock()
		if found {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no exemplar with the traced put on norikv_request_duration_seconds{op=put}")
		}
		time.Sleep(100 * time.Millisecond)
	}

	// nothing else was traced
	time.Sleep(300 * time.Millisecond)
	ids := rcv.traceIDs()
	if len(ids) != 2 || !ids[tid] || !ids["5bf92f3577b34da6a3ce929d0e0e4736"] {
		t.Fatalf("traces received %v, want only the put's and the get's", ids)
	}
	rcv.check(t)
}

// telemetry.otlp.* configure the export (no environment needed): with a
// sample ratio of 1 every request is traced as a new root trace, and
// metrics go to the same collector.
func TestOTLPConfigKeysExportMetricsAndSampleEveryRequestAtRatioOne(t *testing.T) {
	rcv := newOTLPReceiver(t)
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "100")
	s := ephemeral(t, "--telemetry-otlp-enabled", "--telemetry-otlp-endpoint", rcv.srv.URL,
		"--telemetry-otlp-metrics-interval", "200ms", "--telemetry-otlp-trace-sample-ratio", "1")
	for i := 0; i < 5; i++ {
		mustPut(t, s, fmt.Sprint("cfg", i), "v")
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		ids := rcv.traceIDs()
		rcv.mu.Lock()
		haveMetrics := len(rcv.metrics) > 0
		rcv.mu.Unlock()
		if len(ids) >= 5 && haveMetrics {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 15 s: %d traces (want 5) and metrics %v", len(ids), haveMetrics)
		}
		time.Sleep(50 * time.Millisecond)
	}
	rcv.mu.Lock()
	for _, sp := range rcv.spans {
		if sp.Name == "norikv.v1.Kv/Put" && len(sp.ParentSpanId) != 0 {
			t.Errorf("a root request's server span has a parent")
		}
	}
	rcv.mu.Unlock()
	rcv.check(t)
}
