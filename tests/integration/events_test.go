package integration

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	pb "github.com/norikv/norikv-go/proto"
)

// One server-sent event of /events.
type sse struct {
	ID   string
	Data map[string]any
}

// sseStream reads /events until its context ends.
type sseStream struct {
	resp   *http.Response
	cancel context.CancelFunc
	events chan sse
}

func openEvents(t *testing.T, s *server, query string, header map[string]string) (*sseStream, int, string) {
	t.Helper()
	return openSSE(t, s, "/events"+query, header)
}

// openSSE opens any server-sent-events endpoint (path with its query).
func openSSE(t *testing.T, s *server, pathQuery string, header map[string]string) (*sseStream, int, string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+s.http+pathQuery, nil)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatalf("GET %s: %v", pathQuery, err)
	}
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		cancel()
		return nil, resp.StatusCode, string(b)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
		t.Fatalf("%s Content-Type %q", pathQuery, ct)
	}
	st := &sseStream{resp: resp, cancel: cancel, events: make(chan sse, 100000)}
	go func() {
		defer close(st.events)
		rd := bufio.NewReader(resp.Body)
		var cur sse
		for {
			line, err := rd.ReadString('\n')
			if err != nil {
				return
			}
			line = strings.TrimRight(line, "\n")
			switch {
			case line == "":
				if cur.Data != nil {
					st.events <- cur
				}
				cur = sse{}
			case strings.HasPrefix(line, "id: "):
				cur.ID = line[4:]
			case strings.HasPrefix(line, "data: "):
				var m map[string]any
				if err := json.Unmarshal([]byte(line[6:]), &m); err != nil {
					t.Errorf("event data is not JSON: %q", line)
				}
				cur.Data = m
			}
		}
	}()
	t.Cleanup(st.close)
	return st, 200, ""
}

func (st *sseStream) close() {
	st.cancel()
	st.resp.Body.Close()
}

// next waits for the next event (fails the test after d).
func (st *sseStream) next(t *testing.T, d time.Duration) sse {
	t.Helper()
	select {
	case e, ok := <-st.events:
		if !ok {
			t.Fatal("the event stream ended")
		}
		return e
	case <-time.After(d):
		t.Fatalf("no event within %v", d)
	}
	return sse{}
}

func num(v any) float64 {
	f, _ := v.(float64)
	return f
}

// writeBurst puts n values of size bytes from 8 clients.
func writeBurst(t *testing.T, s *server, prefix string, n, size int) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	val := []byte(strings.Repeat("e", size))
	for c := 0; c < 8; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			for i := c; i < n; i += 8 {
				_, err := s.kv.Put(ctxT(t), &pb.PutRequest{Key: []byte(fmt.Sprintf("%s-%06d", prefix, i)), Value: val})
				if err != nil {
					errs <- err
					return
				}
			}
		}(c)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("put: %v", err)
	}
}

// A write burst on a server with 1 MiB memtables flushes several of them and
// compacts level 0; a consumer filtering on those kinds sees both, with
// their typed fields, and nothing else.
func TestEventsStreamShowsFlushAndCompactionAfterAWriteBurst(t *testing.T) {
	s := ephemeral(t, "--storage-memtable-size", "1MiB")
	st, code, body := openEvents(t, s, "?kind=flush,compaction", nil)
	if code != 200 {
		t.Fatalf("/events %d %s", code, body)
	}
	writeBurst(t, s, "burst", 3000, 4096) // ~12 MiB: ~12 flushes, L0 compactions
	var flush, compaction map[string]any
	deadline := time.Now().Add(30 * time.Second)
	for (flush == nil || compaction == nil) && time.Now().Before(deadline) {
		e := st.next(t, 30*time.Second)
		switch e.Data["kind"] {
		case "flush":
			flush = e.Data
		case "compaction":
			if m, _ := e.Data["message"].(string); !strings.HasPrefix(m, "trivial move") {
				compaction = e.Data // a rewrite (a trivial move has one input)
			}
		default:
			t.Fatalf("the kind filter let through %v", e.Data)
		}
		if e.ID == "" {
			t.Fatalf("event without an id: %v", e.Data)
		}
	}
	if flush == nil || compaction == nil {
		t.Fatalf("flush %v compaction %v", flush, compaction)
	}
	if num(flush["out_level"]) != 0 || num(flush["bytes_out"]) <= 0 || flush["duration_us"] == nil {
		t.Fatalf("flush event fields: %v", flush)
	}
	if num(compaction["level"])+1 != num(compaction["out_level"]) ||
		num(compaction["bytes_in"]) <= 0 || num(compaction["files_in"]) < 2 ||
		compaction["duration_us"] == nil {
		t.Fatalf("compaction event fields: %v", compaction)
	}
}

// Reading from ?since=K or with Last-Event-ID: K starts right after event
// K; a Last-Event-ID past the newest event (a restarted server) restarts
// the stream with a reset marker rather than failing it.
func TestEventsResumeAfterTheGivenPosition(t *testing.T) {
	s := ephemeral(t, "--storage-memtable-size", "1MiB")
	writeBurst(t, s, "resume", 1500, 4096) // a few flushes: at least 10 events
	all, code, body := openEvents(t, s, "?since=0", nil)
	if code != 200 {
		t.Fatalf("/events %d %s", code, body)
	}
	var ids []string
	for len(ids) < 6 {
		ids = append(ids, all.next(t, 10*time.Second).ID)
	}
	all.close()
	if ids[0] != "1" {
		t.Fatalf("since=0 starts at id %s, want 1", ids[0])
	}
	q, code, body := openEvents(t, s, "?since="+ids[2], nil)
	if code != 200 {
		t.Fatalf("since=%s: %d %s", ids[2], code, body)
	}
	if got := q.next(t, 10*time.Second).ID; got != ids[3] {
		t.Fatalf("since=%s resumed at %s, want %s", ids[2], got, ids[3])
	}
	h, code, body := openEvents(t, s, "", map[string]string{"Last-Event-ID": ids[4]})
	if code != 200 {
		t.Fatalf("Last-Event-ID %s: %d %s", ids[4], code, body)
	}
	if got := h.next(t, 10*time.Second).ID; got != ids[5] {
		t.Fatalf("Last-Event-ID %s resumed at %s, want %s", ids[4], got, ids[5])
	}
	r, code, body := openEvents(t, s, "", map[string]string{"Last-Event-ID": "999999999"})
	if code != 200 {
		t.Fatalf("Last-Event-ID past the end: %d %s", code, body)
	}
	if e := r.next(t, 10*time.Second); e.Data["kind"] != "gap" || e.Data["reset"] != true {
		t.Fatalf("Last-Event-ID past the end: first event %v, want a reset gap marker", e.Data)
	}
	if e := r.next(t, 10*time.Second); e.ID != "1" {
		t.Fatalf("after the reset marker: id %s, want 1", e.ID)
	}
}

// With a 16-event ring, a reader resuming from the start after more than
// 16 events gets a gap marker counting the lost ones, then the oldest
// event still held; the server's memory did not grow for it.
func TestEventsGapMarkerWhenTheReaderFellBehindTheRing(t *testing.T) {
	t.Setenv("NORIKV_EVENTS_CAPACITY", "16")
	s := ephemeral(t, "--storage-memtable-size", "1MiB")
	writeBurst(t, s, "gap", 3000, 4096)
	resp, err := http.Get("http://" + s.http + "/dashboard/data")
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Events struct {
			LastSeq  float64 `json:"last_seq"`
			Capacity float64 `json:"capacity"`
		} `json:"events"`
	}
	json.NewDecoder(resp.Body).Decode(&d)
	resp.Body.Close()
	if d.Events.Capacity != 16 || d.Events.LastSeq <= 17 {
		t.Fatalf("ring: %+v (want capacity 16 and more than 17 events)", d.Events)
	}
	st, code, body := openEvents(t, s, "?since=0", nil)
	if code != 200 {
		t.Fatalf("/events %d %s", code, body)
	}
	g := st.next(t, 10*time.Second)
	if g.Data["kind"] != "gap" || num(g.Data["from_seq"]) != 1 || num(g.Data["missed"]) < 1 {
		t.Fatalf("first event %v, want a gap marker from seq 1", g.Data)
	}
	first := st.next(t, 10*time.Second)
	if want := fmt.Sprint(int(num(g.Data["to_seq"])) + 1); first.ID != want {
		t.Fatalf("after the gap: id %s, want %s", first.ID, want)
	}
	// the ring holds its 16 newest: the gap plus 16 covers everything
	if num(g.Data["missed"])+16 < d.Events.LastSeq {
		t.Fatalf("gap %v too small for %v events in a 16-event ring", g.Data, d.Events.LastSeq)
	}
}

// Every malformed /events request is refused with 400 and a message naming
// the problem; the wrong method is 501; the server keeps serving.
func TestEventsBadInputGets400NamingTheProblem(t *testing.T) {
	s := ephemeral(t)
	cases := []struct {
		query, header, want string
	}{
		{"?since=-1", "", "since '-1' is invalid"},
		{"?since=abc", "", "since 'abc' is invalid"},
		{"?since=", "", "since '' is invalid"},
		{"?since=99999999999999999999999", "", "is invalid"},
		{"?since=18446744073709551615", "", "past the newest event"},
		{"?since=1000000", "", "past the newest event"},
		{"?since=1&since=2", "", "more than once"},
		{"?kind=bogus", "", "kind 'bogus' is not an event kind"},
		{"?kind=", "", "kind is empty"},
		{"?kind=flush,,compaction", "", "empty element"},
		{"?kind=gap", "", "kind 'gap' is not an event kind"},
		{"?kind=" + strings.Repeat("flush,", 100), "", "the limit is"},
		{"?follow=1", "", "unknown query parameter 'follow'"},
		{"?kind=%zz", "", "not percent-encoded correctly"},
		{"", "abc", "Last-Event-ID 'abc' is invalid"},
		{"", "-5", "Last-Event-ID '-5' is invalid"},
	}
	for _, c := range cases {
		var h map[string]string
		if c.header != "" {
			h = map[string]string{"Last-Event-ID": c.header}
		}
		st, code, body := openEvents(t, s, c.query, h)
		if st != nil {
			st.close()
		}
		if code != 400 || !strings.Contains(body, c.want) || !strings.Contains(body, "INVALID_ARGUMENT") {
			t.Errorf("/events%s (Last-Event-ID %q): %d %s, want 400 containing %q", c.query,
				c.header, code, body, c.want)
		}
	}
	if c, b := httpDo(t, "POST", "http://"+s.http+"/events", ""); c != 501 {
		t.Errorf("POST /events: %d %s", c, b)
	}
	if c, b := httpDo(t, "GET", "http://"+s.http+"/dashboard/nope.js", ""); c != 404 ||
		!strings.Contains(b, "no such dashboard file") {
		t.Errorf("GET /dashboard/nope.js: %d %s", c, b)
	}
	if c, _ := httpDo(t, "GET", "http://"+s.http+"/healthz", ""); c != 200 {
		t.Fatalf("/healthz after bad /events requests: %d", c)
	}
}

// 32 streams are served at once; the 33rd gets 503 with a message, while
// other endpoints keep answering; when one stream closes a new one is let in.
func TestEventsStreamsUpToTheLimitThen503(t *testing.T) {
	s := ephemeral(t)
	const limit = 32
	var open []*sseStream
	for i := 0; i < limit; i++ {
		st, code, body := openEvents(t, s, "?since=0", nil)
		if code != 200 {
			t.Fatalf("stream %d: %d %s", i+1, code, body)
		}
		st.next(t, 10*time.Second) // it is being served
		open = append(open, st)
	}
	_, code, body := openEvents(t, s, "", nil)
	if code != 503 || !strings.Contains(body, "at most 32") || !strings.Contains(body, "UNAVAILABLE") {
		t.Fatalf("stream %d: %d %s, want 503 naming the limit", limit+1, code, body)
	}
	for _, p := range []string{"/healthz", "/health", "/dashboard/data", "/metrics"} {
		if c, _ := httpDo(t, "GET", "http://"+s.http+p, ""); c != 200 {
			t.Fatalf("%s with %d streams open: %d", p, limit, c)
		}
	}
	if _, err := s.kv.Put(ctxT(t), &pb.PutRequest{Key: []byte("k"), Value: []byte("v")}); err != nil {
		t.Fatalf("put with %d streams open: %v", limit, err)
	}
	open[0].close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, code, body := openEvents(t, s, "", nil)
		if code == 200 {
			st.close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a stream closed but new ones still get %d %s", code, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Requests slower than the threshold become slow_request events, at most 10
// a second; the ones beyond are counted in the next event rather than
// flooding the ring. (NORIKV_SLOW_REQUEST_MS=0: every request is slow.)
func TestSlowRequestsBecomeRateLimitedEvents(t *testing.T) {
	t.Setenv("NORIKV_SLOW_REQUEST_MS", "0")
	s := ephemeral(t)
	st, code, body := openEvents(t, s, "?kind=slow_request", nil)
	if code != 200 {
		t.Fatalf("/events %d %s", code, body)
	}
	start := time.Now()
	for i := 0; i < 300; i++ { // well over 10 a second
		if _, err := s.kv.Put(ctxT(t), &pb.PutRequest{Key: []byte(fmt.Sprint("slow", i)), Value: []byte("v")}); err != nil {
			t.Fatal(err)
		}
	}
	elapsed := time.Since(start)
	// one more after a pause: it is reported, carrying the suppressed count
	time.Sleep(1100 * time.Millisecond)
	if _, err := s.kv.Put(ctxT(t), &pb.PutRequest{Key: []byte("slow-last"), Value: []byte("v")}); err != nil {
		t.Fatal(err)
	}
	var got []sse
	suppressed := 0.0
	for {
		e := st.next(t, 10*time.Second)
		got = append(got, e)
		if e.Data["kind"] != "slow_request" || e.Data["duration_us"] == nil ||
			!strings.HasPrefix(e.Data["message"].(string), "put took ") {
			t.Fatalf("event %v", e.Data)
		}
		if c, ok := e.Data["count"]; ok {
			suppressed += num(c)
			break
		}
	}
	seconds := int(elapsed/time.Second) + 2
	if len(got) > 10*seconds+1 {
		t.Fatalf("%d slow_request events for 301 requests in %v: the limit is 10 a second", len(got), elapsed)
	}
	if float64(len(got))+suppressed < 300 {
		t.Fatalf("%d events + %v suppressed < 300 slow requests", len(got), suppressed)
	}
}

// SIGTERM with event streams open (and the dashboard's data fetched) stops
// the server cleanly and promptly: each stream gets the lifecycle
// "stopping" event, then ends; nothing waits on them.
func TestSIGTERMWithEventStreamsOpenStopsCleanly(t *testing.T) {
	s := ephemeral(t)
	var streams []*sseStream
	for i := 0; i < 3; i++ {
		st, code, body := openEvents(t, s, "?kind=lifecycle", nil)
		if code != 200 {
			t.Fatalf("/events %d %s", code, body)
		}
		streams = append(streams, st)
	}
	if c, _ := httpDo(t, "GET", "http://"+s.http+"/dashboard/data", ""); c != 200 {
		t.Fatalf("/dashboard/data %d", c)
	}
	start := time.Now()
	s.stop() // fails the test on a non-zero exit (sanitizer reports included)
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("stopping with 3 event streams open took %v", d)
	}
	for i, st := range streams {
		var stopping bool
		for e := range st.events { // until the stream ends
			if m, _ := e.Data["message"].(string); strings.Contains(m, "stopping") {
				stopping = true
			}
		}
		if !stopping {
			t.Errorf("stream %d ended without the lifecycle stopping event", i)
		}
	}
}
