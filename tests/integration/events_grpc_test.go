package integration

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"

	pb "github.com/norikv/norikv-go/proto"
	"google.golang.org/grpc/codes"
)

func watchEvents(t *testing.T, s *server, req *pb.EventsRequest) (pb.Meta_WatchEventsClient, context.CancelFunc) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	st, err := pb.NewMetaClient(s.conn).WatchEvents(ctx, req)
	if err != nil {
		cancel()
		t.Fatalf("WatchEvents: %v", err)
	}
	return st, cancel
}

// Meta.WatchEvents carries the same events as /events: after a write burst
// a stream filtering on flush and compaction sees both with their typed
// fields, and nothing else; sequence numbers only grow.
func TestGRPCEventStreamShowsFlushAndCompactionWithTypedFields(t *testing.T) {
	s := ephemeral(t, "--storage-memtable-size", "1MiB")
	st, cancel := watchEvents(t, s, &pb.EventsRequest{Kinds: []string{"flush", "compaction"}})
	defer cancel()
	writeBurst(t, s, "gburst", 3000, 4096)
	var flush, compaction *pb.Event
	var last uint64
	for flush == nil || compaction == nil {
		e, err := st.Recv()
		if err != nil {
			t.Fatalf("recv: %v (flush %v compaction %v)", err, flush, compaction)
		}
		if e.Seq <= last {
			t.Fatalf("seq %d after %d", e.Seq, last)
		}
		last = e.Seq
		switch e.Kind {
		case "flush":
			flush = e
		case "compaction":
			if !strings.HasPrefix(e.Message, "trivial move") {
				compaction = e
			}
		default:
			t.Fatalf("the kind filter let through %v", e)
		}
	}
	if flush.OutLevel != 0 || flush.BytesOut == 0 || flush.DurationUs == 0 || flush.TimeMs == 0 {
		t.Fatalf("flush event fields: %v", flush)
	}
	if compaction.Level+1 != compaction.OutLevel || compaction.BytesIn == 0 || compaction.FilesIn < 2 {
		t.Fatalf("compaction event fields: %v", compaction)
	}
}

// since=K resumes right after event K; with a 16-event ring a stream from
// the start gets a gap event counting what it missed, then the oldest held.
func TestGRPCEventStreamResumesAfterSinceAndMarksGaps(t *testing.T) {
	t.Setenv("NORIKV_EVENTS_CAPACITY", "16")
	s := ephemeral(t, "--storage-memtable-size", "1MiB")
	writeBurst(t, s, "ggap", 3000, 4096)
	st, cancel := watchEvents(t, s, &pb.EventsRequest{Since: 0})
	g, err := st.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if g.Kind != "gap" || g.Missed < 1 {
		t.Fatalf("first event %v, want a gap marker", g)
	}
	first, err := st.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if first.Seq != g.Missed+1 {
		t.Fatalf("after a gap of %d: seq %d, want %d", g.Missed, first.Seq, g.Missed+1)
	}
	second, _ := st.Recv()
	cancel()
	st2, cancel2 := watchEvents(t, s, &pb.EventsRequest{Since: first.Seq})
	defer cancel2()
	e, err := st2.Recv()
	if err != nil || e.Seq != second.Seq {
		t.Fatalf("since=%d resumed at %v (%v), want seq %d", first.Seq, e, err, second.Seq)
	}
}

// Bad requests end the stream at once with INVALID_ARGUMENT naming the
// problem; past the stream limit RESOURCE_EXHAUSTED; the server serves on.
func TestGRPCEventStreamRefusesBadRequestsAndTooManyStreams(t *testing.T) {
	s := ephemeral(t)
	bad := []struct {
		req  *pb.EventsRequest
		want string
	}{
		{&pb.EventsRequest{Since: 1 << 60}, "past the newest event"},
		{&pb.EventsRequest{Kinds: []string{"flush", "nonsense"}}, "'nonsense' is not an event kind"},
		{&pb.EventsRequest{Kinds: []string{"gap"}}, "is not an event kind"},
		{&pb.EventsRequest{Kinds: make([]string, 40)}, "the limit is 32"},
	}
	for _, b := range bad {
		st, cancel := watchEvents(t, s, b.req)
		_, err := st.Recv()
		cancel()
		if code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), b.want) {
			t.Fatalf("%v: %v, want INVALID_ARGUMENT with %q", b.req, err, b.want)
		}
	}
	var cancels []context.CancelFunc
	defer func() {
		for _, c := range cancels {
			c()
		}
	}()
	// 64 streams are served (each gets the lifecycle events at once) ...
	for i := 0; i < 64; i++ {
		st, cancel := watchEvents(t, s, &pb.EventsRequest{})
		cancels = append(cancels, cancel)
		if _, err := st.Recv(); err != nil {
			t.Fatalf("stream %d: %v", i, err)
		}
	}
	// ... the 65th is refused, naming the limit
	st, cancel := watchEvents(t, s, &pb.EventsRequest{})
	_, err := st.Recv()
	cancel()
	if code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "too many event streams") {
		t.Fatalf("65th stream: %v", err)
	}
	mustPut(t, s, "still", "serving")
	// closing one frees its place
	cancels[0]()
	deadline := time.Now().Add(5 * time.Second)
	for {
		st, c := watchEvents(t, s, &pb.EventsRequest{})
		_, err := st.Recv()
		if err == nil {
			cancels = append(cancels, c)
			break
		}
		c()
		if time.Now().After(deadline) {
			t.Fatalf("no place after closing a stream: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// A client that opens a stream and never reads holds up neither another
// stream nor the server (its events wait in the ring, not in a queue of
// its own), and SIGTERM with it open stops the server cleanly.
func TestGRPCEventStreamNotReadHoldsUpNobodyAndSIGTERMStopsCleanly(t *testing.T) {
	s := ephemeral(t, "--storage-memtable-size", "1MiB")
	idle, cancel := watchEvents(t, s, &pb.EventsRequest{})
	defer cancel()
	reader, cancel2 := watchEvents(t, s, &pb.EventsRequest{Kinds: []string{"flush"}})
	defer cancel2()
	writeBurst(t, s, "noread", 1500, 4096)
	if e, err := reader.Recv(); err != nil || e.Kind != "flush" {
		t.Fatalf("the reading stream: %v %v", e, err)
	}
	start := time.Now()
	s.stop()
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("stopping took %v with an unread event stream", d)
	}
	if !strings.Contains(s.stderr.String(), "stopped") && !strings.Contains(s.stderr.String(), "stopping") {
		t.Logf("server log:\n%s", s.stderr.String())
	}
	for {
		if _, err := idle.Recv(); err != nil {
			if err != io.EOF && code(err) != codes.Unavailable && code(err) != codes.Canceled {
				t.Fatalf("the unread stream ended with %v", err)
			}
			break
		}
	}
}
