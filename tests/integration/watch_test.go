package integration

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	pb "github.com/norikv/norikv-go/proto"
	"google.golang.org/grpc/codes"
)

// watcher reads one Kv.Watch stream in the background.
type watcher struct {
	shards []uint32
	events chan *pb.WatchEvent
	prog   chan *pb.ShardRevision
	errc   chan error
	cancel context.CancelFunc
}

func openWatch(t *testing.T, s *server, req *pb.WatchRequest) *watcher {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	st, err := s.kv.Watch(ctx, req)
	if err != nil {
		cancel()
		t.Fatalf("Watch: %v", err)
	}
	first, err := st.Recv()
	if err != nil {
		cancel()
		t.Fatalf("Watch first message: %v", err)
	}
	w := &watcher{shards: first.Shards, events: make(chan *pb.WatchEvent, 100000),
		prog: make(chan *pb.ShardRevision, 100000), errc: make(chan error, 1), cancel: cancel}
	go func() {
		for {
			m, err := st.Recv()
			if err != nil {
				w.errc <- err
				return
			}
			for _, e := range m.Events {
				w.events <- e
			}
			for _, p := range m.Progress {
				select {
				case w.prog <- p:
				default:
				}
			}
		}
	}()
	return w
}

func (w *watcher) next(t *testing.T, within time.Duration) *pb.WatchEvent {
	t.Helper()
	select {
	case e := <-w.events:
		return e
	case err := <-w.errc:
		t.Fatalf("watch ended: %v", err)
	case <-time.After(within):
		t.Fatalf("no watch event within %v", within)
	}
	return nil
}

func evString(e *pb.WatchEvent) string {
	return fmt.Sprintf("%s %s=%s", e.Kind, e.Key, e.Value)
}

// A prefix watch on one node serves all 1024 shards and streams the puts,
// deletes and TTL expiries of matching keys, each once, with the version
// the write was acknowledged with; keys outside the prefix do not appear;
// an expiry comes by itself on a quiet shard (the leader's time command).
func TestWatchStreamsPutsDeletesAndTTLExpiryOfAPrefixEachOnce(t *testing.T) {
	s := ephemeral(t)
	w := openWatch(t, s, &pb.WatchRequest{Prefix: []byte("w/")})
	defer w.cancel()
	if len(w.shards) != 1024 {
		t.Fatalf("served %d shards, want 1024", len(w.shards))
	}
	v1 := mustPut(t, s, "w/a", "1")
	mustPut(t, s, "other", "x")
	if _, err := s.kv.Put(ctxT(t), &pb.PutRequest{Key: []byte("w/ttl"), Value: []byte("t"), TtlMs: 300}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.kv.Delete(ctxT(t), &pb.DeleteRequest{Key: []byte("w/a")}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.kv.Delete(ctxT(t), &pb.DeleteRequest{Key: []byte("w/never")}); err != nil {
		t.Fatal(err)
	}
	e := w.next(t, 5*time.Second)
	if evString(e) != "PUT w/a=1" || e.Version.Index != v1.Index || e.Version.Term != v1.Term {
		t.Fatalf("first event %v, want PUT w/a=1 at %v", e, v1)
	}
	got := map[string]int{}
	deadline := time.Now().Add(10 * time.Second)
	for len(got) < 3 && time.Now().Before(deadline) {
		e := w.next(t, 10*time.Second)
		got[evString(e)]++
		if e.Kind == pb.WatchEvent_PUT && e.ExpiresAtMs == 0 {
			t.Fatalf("the TTL put carries no expiry: %v", e)
		}
	}
	for _, want := range []string{"PUT w/ttl=t", "DELETE w/a=", "EXPIRE w/ttl="} {
		if got[want] != 1 {
			t.Fatalf("events %v: want %q once", got, want)
		}
	}
	select {
	case e := <-w.events:
		t.Fatalf("an extra event: %v", e)
	case <-time.After(500 * time.Millisecond):
	}
}

// A client that resumes with the last revision it saw for a shard gets
// exactly the later events of that shard: none twice, none lost, also
// across a restart of the server.
func TestWatchResumesFromRevisionsWithoutLossOrDuplicatesAcrossAServerRestart(t *testing.T) {
	dir := t.TempDir()
	s := onDisk(t, dir)
	w := openWatch(t, s, &pb.WatchRequest{Prefix: []byte("r/")})
	for i := 0; i < 50; i++ {
		mustPut(t, s, fmt.Sprintf("r/%03d", i), "a")
	}
	last := map[uint32]*pb.Version{}
	seen := map[string]bool{}
	for i := 0; i < 50; i++ {
		e := w.next(t, 5*time.Second)
		seen[string(e.Key)] = true
		last[e.Shard] = e.Version
	}
	w.cancel()
	// while nobody watches: more writes, then a restart, then more
	for i := 50; i < 80; i++ {
		mustPut(t, s, fmt.Sprintf("r/%03d", i), "b")
	}
	s.stop()
	s = onDisk(t, dir)
	for i := 80; i < 100; i++ {
		mustPut(t, s, fmt.Sprintf("r/%03d", i), "c")
	}
	var from []*pb.ShardRevision
	for sh, v := range last {
		from = append(from, &pb.ShardRevision{Shard: sh, Applied: v})
	}
	// shards not listed start from now: list every shard the keys use
	// (all of them; the old ones from their last revision, others from 1)
	for sh := uint32(0); sh < 1024; sh++ {
		if _, ok := last[sh]; !ok {
			from = append(from, &pb.ShardRevision{Shard: sh, Applied: &pb.Version{Term: 1, Index: 1}})
		}
	}
	w2 := openWatch(t, s, &pb.WatchRequest{Prefix: []byte("r/"), From: from})
	defer w2.cancel()
	for len(seen) < 100 {
		e := w2.next(t, 10*time.Second)
		k := string(e.Key)
		if seen[k] {
			t.Fatalf("event for %s delivered twice (resume from %v)", k, last[e.Shard])
		}
		seen[k] = true
	}
	select {
	case e := <-w2.events:
		t.Fatalf("an extra event after all 100: %v", e)
	case <-time.After(500 * time.Millisecond):
	}
}

// Resuming from a revision the shard no longer keeps (retention of 16
// records) is refused with OUT_OF_RANGE "compacted", naming the shard and
// the oldest revision it keeps.
func TestWatchFromACompactedRevisionIsRefusedNamingTheOldestKept(t *testing.T) {
	s := ephemeral(t, "--watch-retention-entries", "16", "--cluster-total-shards", "1")
	first := mustPut(t, s, "c/0", "v")
	for i := 1; i < 60; i++ {
		mustPut(t, s, fmt.Sprintf("c/%d", i), "v")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := s.kv.Watch(ctx, &pb.WatchRequest{Prefix: []byte("c/"),
		From: []*pb.ShardRevision{{Shard: 0, Applied: first}}})
	if err == nil {
		_, err = st.Recv()
	}
	if code(err) != codes.OutOfRange || !strings.Contains(err.Error(), "compacted: shard 0 keeps events after revision") {
		t.Fatalf("resume from %v: %v, want OUT_OF_RANGE compacted", first, err)
	}
}

// Malformed watch requests are refused at once naming the problem.
func TestWatchRefusesMalformedRequestsNamingTheProblem(t *testing.T) {
	s := ephemeral(t)
	bad := []struct {
		req  *pb.WatchRequest
		want string
	}{
		{&pb.WatchRequest{Key: []byte("a"), Prefix: []byte("b")}, "one of key, prefix"},
		{&pb.WatchRequest{Start: []byte("b"), End: []byte("a")}, "start must be below end"},
		{&pb.WatchRequest{Key: make([]byte, 1025)}, "over 1024 bytes"},
		{&pb.WatchRequest{Shards: []uint32{5000}}, "shard 5000 does not exist"},
		{&pb.WatchRequest{Shards: []uint32{3, 3}}, "given twice"},
		{&pb.WatchRequest{From: []*pb.ShardRevision{{Shard: 1}}}, "has no revision"},
	}
	for _, b := range bad {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		st, err := s.kv.Watch(ctx, b.req)
		if err == nil {
			_, err = st.Recv()
		}
		cancel()
		if code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), b.want) {
			t.Fatalf("%v: %v, want INVALID_ARGUMENT with %q", b.req, err, b.want)
		}
	}
	mustPut(t, s, "still", "serving")
}

// 1000 idle watch streams cost bounded memory and do not slow the server:
// puts are acknowledged and a watcher among them still gets its event.
func TestThousandIdleWatchersKeepMemoryBoundedAndTheServerResponsive(t *testing.T) {
	s := ephemeral(t)
	before := vmHWM(t, s.cmd.Process.Pid)
	var ws []*watcher
	for i := 0; i < 1000; i++ {
		ws = append(ws, openWatch(t, s, &pb.WatchRequest{Key: []byte(fmt.Sprintf("idle/%d", i))}))
	}
	defer func() {
		for _, w := range ws {
			w.cancel()
		}
	}()
	start := time.Now()
	mustPut(t, s, "idle/7", "x")
	if e := ws[7].next(t, 10*time.Second); evString(e) != "PUT idle/7=x" {
		t.Fatalf("event %v", e)
	}
	t.Logf("put to event with 1000 watchers open: %v", time.Since(start))
	after := vmHWM(t, s.cmd.Process.Pid)
	t.Logf("VmHWM %d KiB before, %d KiB with 1000 watchers", before, after)
	if after-before > 200*1024 {
		t.Fatalf("1000 idle watchers grew the peak RSS by %d MiB", (after-before)/1024)
	}
}

// A watcher that stops reading is cut off with RESOURCE_EXHAUSTED naming
// the reason once it made no progress for the bound (1 s here), instead of
// the server holding its events (at most 4 responses wait for it), and the
// server keeps serving everyone else meanwhile.
func TestASlowWatcherIsCutOffWithAClearStatusAndTheServerServesOn(t *testing.T) {
	t.Setenv("NORIKV_WATCH_SLOW_MS", "1000")
	s := ephemeral(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	st, err := s.kv.Watch(ctx, &pb.WatchRequest{Prefix: []byte("slow/")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Recv(); err != nil { // the shards message; then nothing is read
		t.Fatal(err)
	}
	before := vmHWM(t, s.cmd.Process.Pid)
	big := strings.Repeat("x", 256<<10)
	for i := 0; i < 200; i++ { // 50 MiB of events for a reader that reads nothing
		if _, err := s.kv.Put(ctxT(t), &pb.PutRequest{Key: []byte(fmt.Sprintf("slow/%d", i%64)), Value: []byte(big)}); err != nil {
			t.Fatalf("put %d while a watcher stalls: %v", i, err)
		}
	}
	time.Sleep(3 * time.Second)
	after := vmHWM(t, s.cmd.Process.Pid)
	t.Logf("VmHWM %d KiB before the stalled watcher's 50 MiB of events, %d KiB after", before, after)
	n := 0
	for {
		_, err := st.Recv()
		if err != nil {
			if code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "watch too slow") {
				t.Fatalf("the stalled watch ended with %v after %d messages", err, n)
			}
			break
		}
		n++
	}
	t.Logf("the stalled watcher got %d responses, then the cut-off", n)
	mustPut(t, s, "after", "cutoff")
}

// GET /watch streams the same changes as server-sent events (id
// "shard:term.index", JSON data with kind, key, value, version, shard),
// resumes from ?from=, and refuses malformed requests with 400 naming them.
func TestHTTPWatchStreamsChangesAsServerSentEventsAndResumesFromRevisions(t *testing.T) {
	s := ephemeral(t)
	st, code, body := openSSE(t, s, "/watch?prefix=h%2F", nil)
	if code != 200 {
		t.Fatalf("/watch %d %s", code, body)
	}
	v := mustPut(t, s, "h/one", "1")
	mustPut(t, s, "nope", "x")
	if _, err := s.kv.Delete(ctxT(t), &pb.DeleteRequest{Key: []byte("h/one")}); err != nil {
		t.Fatal(err)
	}
	e1 := st.next(t, 5*time.Second)
	e2 := st.next(t, 5*time.Second)
	st.close()
	if e1.Data["kind"] != "put" || e1.Data["key"] != "h/one" || e1.Data["value"] != "1" ||
		num(e1.Data["version"].(map[string]any)["index"]) != float64(v.Index) {
		t.Fatalf("first event %v (put at %v)", e1.Data, v)
	}
	if e2.Data["kind"] != "delete" || e2.Data["key"] != "h/one" {
		t.Fatalf("second event %v", e2.Data)
	}
	shard := int(num(e1.Data["shard"]))
	if want := fmt.Sprintf("%d:%d.%d", shard, v.Term, v.Index); e1.ID != want {
		t.Fatalf("event id %q, want %q", e1.ID, want)
	}
	// resume after the put: only the delete comes again
	r, code, body := openSSE(t, s, fmt.Sprintf("/watch?prefix=h/&from=%d:%d.%d", shard, v.Term, v.Index), nil)
	if code != 200 {
		t.Fatalf("/watch from: %d %s", code, body)
	}
	if e := r.next(t, 5*time.Second); e.Data["kind"] != "delete" {
		t.Fatalf("resumed stream's first event %v", e.Data)
	}
	r.close()
	for _, q := range []string{"", "?prefix=a&key=b", "?start=b&end=a", "?prefix=a&from=1:2", "?prefix=a&from=99999:1.1",
		"?prefix=a&bogus=1", "?prefix=a&keys_only=maybe", "?prefix="} {
		c, b := httpDo(t, "GET", "http://"+s.http+"/watch"+q, "")
		if c != 400 || !strings.Contains(b, "INVALID_ARGUMENT") {
			t.Fatalf("/watch%s: %d %s, want 400 INVALID_ARGUMENT", q, c, b)
		}
	}
}
