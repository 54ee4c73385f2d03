package integration

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"testing"
	"time"

	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	metricspb "go.opentelemetry.io/proto/otlp/metrics/v1"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// decodeExport reads an ExportMetricsServiceRequest (field 1: repeated
// ResourceMetrics) with the OpenTelemetry project's own message types.
func decodeExport(b []byte) ([]*metricspb.ResourceMetrics, error) {
	var out []*metricspb.ResourceMetrics
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
		rm := &metricspb.ResourceMetrics{}
		if err := proto.Unmarshal(v, rm); err != nil {
			return nil, err
		}
		out = append(out, rm)
	}
	return out, nil
}

func attrs(kvs []*commonpb.KeyValue) map[string]string {
	m := map[string]string{}
	for _, kv := range kvs {
		m[kv.Key] = kv.Value.GetStringValue()
	}
	return m
}

// The server exports its metrics over OTLP/HTTP (protobuf) to the endpoint
// of the OpenTelemetry environment variables; a receiver decoding them with
// the OpenTelemetry protobuf definitions finds the resource, the put
// counter, the latency histogram (seconds, consistent buckets) and gauges.
func TestOTLPExportCarriesRequestCountersHistogramsAndGauges(t *testing.T) {
	got := make(chan []*metricspb.ResourceMetrics, 100)
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if r.Method != "POST" || r.URL.Path != "/v1/metrics" ||
			r.Header.Get("Content-Type") != "application/x-protobuf" {
			t.Errorf("export %s %s %q", r.Method, r.URL.Path, r.Header.Get("Content-Type"))
		}
		rms, err := decodeExport(body)
		if err != nil {
			t.Errorf("export does not decode: %v", err)
			w.WriteHeader(400)
			return
		}
		select {
		case got <- rms:
		default:
		}
		w.WriteHeader(200)
	}))
	defer recv.Close()
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", recv.URL)
	t.Setenv("OTEL_METRIC_EXPORT_INTERVAL", "300")
	s := ephemeral(t)
	node := healthNode(t, s)
	for i := 0; i < 50; i++ {
		mustPut(t, s, fmt.Sprint("otlp", i), "v")
	}
	deadline := time.After(15 * time.Second)
	for {
		var rms []*metricspb.ResourceMetrics
		select {
		case rms = <-got:
		case <-deadline:
			t.Fatal("no export with the 50 puts within 15 s")
		}
		if len(rms) != 1 {
			t.Fatalf("%d ResourceMetrics, want 1", len(rms))
		}
		ra := attrs(rms[0].Resource.Attributes)
		if ra["service.name"] != "norikv" || ra["service.instance.id"] != node {
			t.Fatalf("resource %v, want service.name norikv and service.instance.id %s", ra, node)
		}
		var puts uint64
		var hist *metricspb.HistogramDataPoint
		var histUnit string
		shardsLed := int64(-1)
		for _, sm := range rms[0].ScopeMetrics {
			for _, m := range sm.Metrics {
				switch m.Name {
				case "norikv_requests_total":
					sum := m.GetSum()
					if sum == nil || !sum.IsMonotonic ||
						sum.AggregationTemporality != metricspb.AggregationTemporality_AGGREGATION_TEMPORALITY_CUMULATIVE {
						t.Fatalf("norikv_requests_total is not a cumulative monotonic sum: %v", m)
					}
					for _, dp := range sum.DataPoints {
						a := attrs(dp.Attributes)
						if a["op"] == "put" && a["outcome"] == "ok" {
							puts = uint64(dp.GetAsInt())
						}
					}
				case "norikv_request_duration_seconds":
					for _, dp := range m.GetHistogram().GetDataPoints() {
						if attrs(dp.Attributes)["op"] == "put" {
							hist, histUnit = dp, m.Unit
						}
					}
				case "norikv_shards_led":
					shardsLed = m.GetGauge().GetDataPoints()[0].GetAsInt()
				}
			}
		}
		if puts < 50 || hist == nil || hist.Count < 50 {
			continue // an export from before the puts
		}
		if histUnit != "s" {
			t.Fatalf("histogram unit %q, want s", histUnit)
		}
		if len(hist.BucketCounts) != len(hist.ExplicitBounds)+1 ||
			!sort.Float64sAreSorted(hist.ExplicitBounds) {
			t.Fatalf("histogram buckets: %d counts, %d bounds", len(hist.BucketCounts),
				len(hist.ExplicitBounds))
		}
		var n uint64
		for _, c := range hist.BucketCounts {
			n += c
		}
		if n != hist.Count || hist.GetSum() <= 0 || hist.GetSum() > float64(hist.Count)*10 {
			t.Fatalf("histogram count %d, buckets sum %d, sum %v s", hist.Count, n, hist.GetSum())
		}
		if hist.ExplicitBounds[0] != 1e-6 {
			t.Fatalf("first bound %v s, want 1 us", hist.ExplicitBounds[0])
		}
		if shardsLed != 1024 {
			t.Fatalf("norikv_shards_led %d, want 1024", shardsLed)
		}
		if hist.StartTimeUnixNano == 0 || hist.TimeUnixNano < hist.StartTimeUnixNano {
			t.Fatalf("histogram times %d..%d", hist.StartTimeUnixNano, hist.TimeUnixNano)
		}
		s.stop() // SIGTERM with the exporter running: a clean, prompt exit
		return
	}
}

// A missing collector costs nothing but a log line: the server serves as
// usual and warns once (not once per export).
func TestOTLPMissingCollectorCostsOneLogLine(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nobody listens there now
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://"+addr)
	t.Setenv("OTEL_METRIC_EXPORT_INTERVAL", "100")
	s := ephemeral(t)
	for i := 0; i < 20; i++ {
		mustPut(t, s, fmt.Sprint("nocollector", i), "v")
		time.Sleep(100 * time.Millisecond)
	}
	if c, _ := httpDo(t, "GET", "http://"+s.http+"/healthz", ""); c != 200 {
		t.Fatalf("/healthz %d", c)
	}
	log := s.stderr.String()
	if n := strings.Count(log, "OTLP metrics export to"); n != 1 {
		t.Fatalf("%d export warnings in 2 s of 100 ms exports, want 1:\n%s", n, log)
	}
	if !strings.Contains(log, "connect to "+addr) {
		t.Fatalf("the warning does not name the failure:\n%s", log)
	}
}

// A malformed endpoint turns export off with a message; the server runs.
func TestOTLPBadEndpointIsLoggedAndTheServerRuns(t *testing.T) {
	t.Setenv("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "https://collector:4318/v1/metrics")
	s := ephemeral(t)
	mustPut(t, s, "k", "v")
	if log := s.stderr.String(); !strings.Contains(log, "OTLP export is off") ||
		!strings.Contains(log, "must start with http://") {
		t.Fatalf("no message about the bad endpoint:\n%s", log)
	}
}
