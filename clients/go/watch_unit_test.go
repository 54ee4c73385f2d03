package norikv

import (
	"context"
	"errors"
	"io"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestCompactedMessageParsesIntoShardAndFloor(t *testing.T) {
	e := &Error{Op: "watch", Code: codes.OutOfRange,
		Message: "compacted: shard 17 keeps events after revision 3.1200 only; scan again (Kv.Range) and watch from its revisions"}
	err := watchEndIsFinal(e)
	var ce *CompactedError
	if !errors.Is(err, ErrCompacted) || !errors.As(err, &ce) {
		t.Fatalf("OUT_OF_RANGE compacted: %v, want a *CompactedError matching ErrCompacted", err)
	}
	if ce.Shard != 17 || !ce.Floor.Equal(&Version{Term: 3, Index: 1200}) {
		t.Fatalf("parsed shard %d floor %v, want 17 and 3.1200", ce.Shard, ce.Floor)
	}
	if status.Code(err) != codes.OutOfRange {
		t.Fatalf("status.Code of the compacted error = %v, want OutOfRange", status.Code(err))
	}
	// the server's form: the floor as an index
	err = watchEndIsFinal(&Error{Code: codes.OutOfRange, Message: "compacted: shard 929 keeps events after revision 184 only (asked from 1); scan again (Kv.Range) and watch from its revisions"})
	if !errors.As(err, &ce) || ce.Shard != 929 || !ce.Floor.Equal(&Version{Index: 184}) {
		t.Fatalf("index-only floor: %v", err)
	}
	// a message in another shape still ends the watch as compacted
	err = watchEndIsFinal(&Error{Code: codes.OutOfRange, Message: "compacted"})
	if !errors.As(err, &ce) || ce.Shard != -1 || ce.Floor != nil {
		t.Fatalf("unparsable compacted message: %v", err)
	}
}

// Which stream ends resume the shards and which end the watch
// (docs/watch.md, "The stream").
func TestWatchStreamEndsThatResumeAndThatEndTheWatch(t *testing.T) {
	resume := []*status.Status{
		status.New(codes.Unavailable, "NOT_LEADER: shard 17 is led by n2"),
		status.New(codes.Unavailable, "server shutting down"),
		status.New(codes.Unavailable, "connection error: desc = \"transport: Error while dialing: dial tcp: connection refused\""),
		status.New(codes.ResourceExhausted, "watch too slow: 4096 events behind"),
		status.New(codes.ResourceExhausted, "too many watch streams on this node (1000)"),
		status.New(codes.Internal, "stream terminated by RST_STREAM"),
		status.New(codes.Unknown, "EOF"),
	}
	for _, st := range resume {
		if err := watchEndIsFinal(newError("watch", "n1", st, nil, 1)); err != nil {
			t.Errorf("%v: ends the watch (%v), want a resume", st, err)
		}
	}
	if err := watchEndIsFinal(io.EOF); err != nil {
		t.Errorf("a stream ended without a status ends the watch: %v", err)
	}
	final := []*status.Status{
		status.New(codes.OutOfRange, "compacted: shard 1 keeps events after revision 1.5 only"),
		status.New(codes.InvalidArgument, "watch: key and prefix both set"),
		status.New(codes.Unimplemented, "unknown method /norikv.v1.Kv/Watch"),
		status.New(codes.ResourceExhausted, "grpc: received message larger than max (5000000 vs. 4194304)"),
	}
	for _, st := range final {
		if err := watchEndIsFinal(newError("watch", "n1", st, nil, 1)); err == nil {
			t.Errorf("%v: resumed, want the watch to end", st)
		}
	}
}

func TestRevisionOrderIsByIndexWithinAShard(t *testing.T) {
	cases := []struct {
		a, b *Version
		want bool
	}{
		{&Version{1, 5}, nil, true},
		{nil, &Version{1, 5}, false},
		{&Version{1, 6}, &Version{1, 5}, true},
		{&Version{1, 5}, &Version{1, 5}, false},
		{&Version{2, 7}, &Version{1, 9}, false},
		{&Version{2, 10}, &Version{1, 9}, true},
	}
	for _, c := range cases {
		if got := newer(c.a, c.b); got != c.want {
			t.Errorf("newer(%v, %v) = %v, want %v", c.a, c.b, got, c.want)
		}
	}
}

func TestWatchWithTwoSelectorsIsInvalidArgumentBeforeSending(t *testing.T) {
	c := &Client{cfg: ClientConfig{TotalShards: 4}}
	_, err := c.Watch(context.Background(), &WatchOptions{Key: []byte("a"), Prefix: []byte("b")})
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("Key and Prefix both set: %v, want INVALID_ARGUMENT", err)
	}
	_, err = c.Watch(context.Background(), &WatchOptions{Prefix: []byte("b"), End: []byte("c")})
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("Prefix and End both set: %v, want INVALID_ARGUMENT", err)
	}
}
