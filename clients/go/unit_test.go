package norikv

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/norikv/norikv-go/hash"
	pb "github.com/norikv/norikv-go/proto"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

func TestDefaultClientConfigMatchesTheGuide(t *testing.T) {
	c := DefaultClientConfig([]string{"localhost:9001"})
	if c.TotalShards != 1024 || c.Timeout != 5*time.Second {
		t.Fatalf("defaults: %+v", c)
	}
	r := c.Retry
	if r.MaxAttempts != 10 || r.InitialDelay != 100*time.Millisecond || r.MaxDelay != 5*time.Second || r.Jitter != 100*time.Millisecond {
		t.Fatalf("retry defaults: %+v", r)
	}
}

func TestConfigZeroFieldsTakeDefaultsAndBadFieldsAreNamed(t *testing.T) {
	n, err := (&ClientConfig{Nodes: []string{"a:1"}, Retry: &RetryConfig{MaxAttempts: 5}}).normalized()
	if err != nil {
		t.Fatal(err)
	}
	if n.TotalShards != 1024 || n.Timeout != DefaultTimeout || n.Retry.MaxAttempts != 5 ||
		n.Retry.InitialDelay != DefaultInitialDelay || n.Retry.Jitter != DefaultJitter {
		t.Fatalf("normalized: %+v %+v", n, n.Retry)
	}
	n, _ = (&ClientConfig{Nodes: []string{"a:1"}, Retry: &RetryConfig{Jitter: -1}}).normalized()
	if n.Retry.Jitter != 0 {
		t.Fatalf("negative Jitter must disable jitter, got %v", n.Retry.Jitter)
	}
	bad := []struct {
		cfg  *ClientConfig
		want string
	}{
		{nil, "nil ClientConfig"},
		{&ClientConfig{}, "Nodes is empty"},
		{&ClientConfig{Nodes: []string{""}}, "Nodes[0] is empty"},
		{&ClientConfig{Nodes: []string{"a:1"}, TotalShards: -3}, "TotalShards = -3"},
		{&ClientConfig{Nodes: []string{"a:1"}, Timeout: -time.Second}, "Timeout"},
		{&ClientConfig{Nodes: []string{"a:1"}, Retry: &RetryConfig{MaxAttempts: -1}}, "negative"},
	}
	for _, b := range bad {
		_, err := b.cfg.normalized()
		if err == nil || !contains(err.Error(), b.want) {
			t.Errorf("config %+v: error %v, want one naming %q", b.cfg, err, b.want)
		}
	}
	// The caller's config is not modified.
	orig := &ClientConfig{Nodes: []string{"a:1"}}
	_, _ = orig.normalized()
	if orig.TotalShards != 0 || orig.Retry != nil {
		t.Fatalf("normalized modified its input: %+v", orig)
	}
}

func contains(s, sub string) bool {
	return len(sub) == 0 || (len(s) >= len(sub) && (s[:len(sub)] == sub || contains(s[1:], sub)))
}

func TestBackoffGrowsExponentiallyWithinJitterAndCap(t *testing.T) {
	r := &RetryConfig{InitialDelay: 100 * time.Millisecond, MaxDelay: time.Second, Jitter: 50 * time.Millisecond}
	want := []time.Duration{100, 200, 400, 800, 1000, 1000, 1000}
	for i, w := range want {
		base := w * time.Millisecond
		for j := 0; j < 200; j++ {
			d := r.backoff(i + 1)
			if d < base || d >= base+r.Jitter {
				t.Fatalf("retry %d waited %v, want in [%v, %v)", i+1, d, base, base+r.Jitter)
			}
		}
	}
	r.Jitter = 0
	if d := r.backoff(2); d != 200*time.Millisecond {
		t.Fatalf("without jitter retry 2 waits %v, want 200ms", d)
	}
	if d := r.backoff(1000); d != time.Second {
		t.Fatalf("retry 1000 waits %v, want the 1s cap", d)
	}
}

func TestClassifyFollowsTheContract(t *testing.T) {
	cases := []struct {
		code codes.Code
		msg  string
		want failure
	}{
		{codes.Unavailable, "NOT_LEADER: shard 3 is led by node-2", failNotLeader},
		{codes.Unavailable, "QUORUM_UNAVAILABLE: no leader for shard 3", failUnknown},
		{codes.Unavailable, "server shutting down", failUnknown},
		{codes.Unavailable, `connection error: desc = "transport: Error while dialing: dial tcp 127.0.0.1:9: connect: connection refused"`, failNotSent},
		{codes.Unavailable, "error reading server preface: EOF", failNotSent},
		{codes.Unavailable, "error reading from server: EOF", failUnknown},
		{codes.DeadlineExceeded, "COMMIT_TIMEOUT", failUnknown},
		{codes.ResourceExhausted, "write queue full", failNotSent},
		{codes.ResourceExhausted, "grpc: received message larger than max (5242880 vs. 4194304)", failPermanent},
		{codes.Aborted, "aborted", failUnknown},
		{codes.NotFound, "key not found", failPermanent},
		{codes.FailedPrecondition, "version mismatch", failPermanent},
		{codes.AlreadyExists, "", failPermanent},
		{codes.InvalidArgument, "key too long", failPermanent},
		{codes.PermissionDenied, "", failPermanent},
		{codes.Unimplemented, "", failPermanent},
		{codes.Internal, "", failPermanent},
	}
	for _, c := range cases {
		if got := classify(status.New(c.code, c.msg)); got != c.want {
			t.Errorf("classify(%v %q) = %v, want %v", c.code, c.msg, got, c.want)
		}
	}
}

func TestRetrySafetyOfWrites(t *testing.T) {
	v := &Version{1, 1}
	if !putIsRetrySafe(nil) || !putIsRetrySafe(&PutOptions{}) {
		t.Error("unconditional put must be retry-safe")
	}
	if putIsRetrySafe(&PutOptions{IfMatchVersion: v}) || putIsRetrySafe(&PutOptions{IfNotExists: true}) {
		t.Error("conditional put without idempotency key must not be retry-safe")
	}
	if !putIsRetrySafe(&PutOptions{IfMatchVersion: v, IdempotencyKey: "x"}) {
		t.Error("conditional put with idempotency key must be retry-safe")
	}
	if !deleteIsRetrySafe(nil) || deleteIsRetrySafe(&DeleteOptions{IfMatchVersion: v}) ||
		!deleteIsRetrySafe(&DeleteOptions{IfMatchVersion: v, IdempotencyKey: "x"}) {
		t.Error("delete retry safety wrong")
	}
	for _, f := range []failure{failNotLeader, failNotSent} {
		if !mayRetry(f, false) {
			t.Errorf("%v must always be retried", f)
		}
	}
	if mayRetry(failUnknown, false) || !mayRetry(failUnknown, true) || mayRetry(failPermanent, true) {
		t.Error("mayRetry wrong for unknown/permanent")
	}
}

func TestErrorMappingWorksWithErrorsIsAndStatusCode(t *testing.T) {
	cases := []struct {
		code     codes.Code
		msg      string
		sentinel error
	}{
		{codes.NotFound, "key not found", ErrKeyNotFound},
		{codes.FailedPrecondition, "version mismatch", ErrVersionMismatch},
		{codes.FailedPrecondition, "something else", nil},
		{codes.AlreadyExists, "exists", ErrAlreadyExists},
		{codes.Unavailable, "QUORUM_UNAVAILABLE", ErrConnection},
		{codes.Unavailable, "NOT_LEADER", ErrNotLeader},
		{codes.DeadlineExceeded, "COMMIT_TIMEOUT", ErrConnection},
		{codes.ResourceExhausted, "", ErrConnection},
		{codes.InvalidArgument, "bad", nil},
	}
	sentinels := []error{ErrKeyNotFound, ErrVersionMismatch, ErrAlreadyExists, ErrConnection, ErrNotLeader}
	for _, c := range cases {
		st := status.New(c.code, c.msg)
		e := newError("get", "n:1", st, metadata.MD{}, 1)
		var err error = fmt.Errorf("wrapped: %w", e)
		for _, s := range sentinels {
			want := s == c.sentinel || (c.sentinel == ErrNotLeader && s == ErrConnection)
			if errors.Is(err, s) != want {
				t.Errorf("%v %q: errors.Is(.., %v) = %v, want %v", c.code, c.msg, s, !want, want)
			}
		}
		if status.Code(err) != c.code {
			t.Errorf("status.Code = %v, want %v", status.Code(err), c.code)
		}
		if got, _ := status.FromError(e); got.Message() != c.msg {
			t.Errorf("status message %q, want %q", got.Message(), c.msg)
		}
	}
	md := metadata.Pairs("current-version", "7.42", "leader-hint", "10.0.0.1:9001")
	e := newError("put", "n:1", status.New(codes.FailedPrecondition, "version mismatch"), md, 2)
	if !e.CurrentVersion.Equal(&Version{7, 42}) || e.LeaderHint != "10.0.0.1:9001" {
		t.Fatalf("trailers not parsed: %+v", e)
	}
	if s := e.Error(); !contains(s, "FailedPrecondition") || !contains(s, "7.42") || !contains(s, "put on n:1") {
		t.Fatalf("message %q lacks the code, the version or the node", s)
	}
	for _, bad := range []string{"", "7", "7.", ".4", "a.b", "1.2.3x"} {
		if v, ok := parseVersion(bad); ok {
			t.Errorf("parseVersion(%q) = %v, want failure", bad, v)
		}
	}
	ce := contextError("get", context.DeadlineExceeded, e, 3)
	if !errors.Is(ce, context.DeadlineExceeded) || !errors.Is(ce, ErrConnection) || status.Code(ce) != codes.DeadlineExceeded {
		t.Fatalf("deadline error %v does not match DeadlineExceeded and ErrConnection", ce)
	}
	ce = contextError("get", context.Canceled, nil, 1)
	if !errors.Is(ce, context.Canceled) || errors.Is(ce, ErrConnection) {
		t.Fatalf("cancel error %v", ce)
	}
}

func TestVersionEqualityAndString(t *testing.T) {
	a, b := &Version{2, 9}, &Version{2, 9}
	if !a.Equal(b) || a.Equal(&Version{2, 10}) || a.Equal(nil) || !(*Version)(nil).Equal(nil) {
		t.Fatal("Version.Equal wrong")
	}
	if a.String() != "2.9" || (*Version)(nil).String() != "<nil>" {
		t.Fatalf("String: %q", a.String())
	}
	if fmt.Sprintf("%v", a) != "2.9" {
		t.Fatalf("%%v of a version prints %q", fmt.Sprintf("%v", a))
	}
}

func TestDiffViewsReportsMembershipAndLeaderChanges(t *testing.T) {
	prev := &ClusterView{Epoch: 4,
		Nodes: []ClusterNode{{"n1", "a:1", "alive"}, {"n2", "a:2", "suspect"}, {"n3", "a:3", "dead"}},
		Shards: []ShardInfo{
			{0, []ShardReplica{{"n1", true}, {"n2", false}}},
			{1, []ShardReplica{{"n1", false}, {"n2", true}}},
		}}
	cur := &ClusterView{Epoch: 7,
		Nodes: []ClusterNode{{"n1", "a:1", "alive"}, {"n2", "a:2", "left"}, {"n3", "a:3", "alive"}, {"n4", "a:4", "alive"}},
		Shards: []ShardInfo{
			{0, []ShardReplica{{"n1", true}, {"n3", false}}},
			{1, []ShardReplica{{"n1", false}, {"n3", false}}},
			{2, []ShardReplica{{"n4", true}}},
		}}
	ev := diffViews(prev, cur)
	if ev.PreviousEpoch != 4 || ev.CurrentEpoch != 7 {
		t.Fatalf("epochs %d->%d", ev.PreviousEpoch, ev.CurrentEpoch)
	}
	if fmt.Sprint(ev.AddedNodes) != "[n3 n4]" || fmt.Sprint(ev.RemovedNodes) != "[n2]" {
		t.Fatalf("added %v removed %v, want [n3 n4] and [n2]", ev.AddedNodes, ev.RemovedNodes)
	}
	if len(ev.LeaderChanges) != 2 || ev.LeaderChanges[1] != "" || ev.LeaderChanges[2] != "n4" {
		t.Fatalf("leader changes %v, want shard 1 -> none and shard 2 -> n4", ev.LeaderChanges)
	}
	first := diffViews(nil, cur)
	if first.PreviousEpoch != 0 || fmt.Sprint(first.AddedNodes) != "[n1 n3 n4]" || len(first.RemovedNodes) != 0 {
		t.Fatalf("first event %+v", first)
	}
	// The event's view is a copy: changing it does not touch the client's.
	ev.View.Nodes[0].ID = "changed"
	if cur.Nodes[0].ID != "n1" {
		t.Fatal("event view aliases the client's view")
	}
}

func TestRouterFollowsViewLeadersAndHints(t *testing.T) {
	p := newPool(nil)
	defer p.close()
	r := newRouter(16, p, []string{"seed:1"})
	v := &ClusterView{Epoch: 1, Nodes: []ClusterNode{{"n1", "h1:1", "alive"}, {"n2", "h2:1", "alive"}}}
	for s := uint32(0); s < 16; s++ {
		v.Shards = append(v.Shards, ShardInfo{s, []ShardReplica{{"n1", s%2 == 0}, {"n2", s%2 == 1}}})
	}
	r.applyIndex(buildIndex(v, 16))
	for key := 0; key < 100; key++ {
		kb := []byte(fmt.Sprint("key-", key))
		shard, nc := r.route(kb)
		if shard != hash.GetShardForKey(kb, 16) {
			t.Fatalf("route shard %d != GetShardForKey", shard)
		}
		want := "h1:1"
		if shard%2 == 1 {
			want = "h2:1"
		}
		if nc == nil || nc.addr != want {
			t.Fatalf("shard %d routes to %v, want %s", shard, nc, want)
		}
	}
	if r.cachedLeaders() != 16 {
		t.Fatalf("cached leaders %d, want 16", r.cachedLeaders())
	}
	if _, err := r.setLeader(3, "h1:1"); err != nil {
		t.Fatal(err)
	}
	if r.leaders[3].Load().addr != "h1:1" {
		t.Fatal("hint not cached")
	}
	// A failed node is forgotten for every shard it led.
	r.nodeFailed(r.leaders[0].Load())
	if got := r.cachedLeaders(); got != 7 {
		t.Fatalf("after n1 failed %d leaders cached, want 7 (n2's)", got)
	}
	// Without discovery, an unknown leader falls back to the shard's
	// replicas, never to the address that just failed.
	for i := 0; i < 10; i++ {
		nc, err := r.target(context.Background(), 0, "h1:1")
		if err != nil || nc.addr == "h1:1" {
			t.Fatalf("target avoided nothing: %v %v", nc, err)
		}
	}
}

func TestRouteDoesNotAllocate(t *testing.T) {
	p := newPool(nil)
	defer p.close()
	r := newRouter(1024, p, []string{"seed:1"})
	v := &ClusterView{Epoch: 1, Nodes: []ClusterNode{{"n1", "h1:1", "alive"}}}
	for s := uint32(0); s < 1024; s++ {
		v.Shards = append(v.Shards, ShardInfo{s, []ShardReplica{{"n1", true}}})
	}
	r.applyIndex(buildIndex(v, 1024))
	key := []byte("user:alice")
	allocs := testing.AllocsPerRun(1000, func() {
		_, nc := r.route(key)
		if nc == nil {
			panic("no leader")
		}
	})
	if allocs != 0 {
		t.Fatalf("route allocates %.1f times per call, want 0", allocs)
	}
	// The whole pre-RPC path of a call with a cached leader, too.
	allocs = testing.AllocsPerRun(1000, func() {
		shard, _ := r.route(key)
		if _, err := r.target(context.Background(), shard, ""); err != nil {
			panic(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("route+target allocates %.1f times per call, want 0", allocs)
	}
}

func BenchmarkRoute(b *testing.B) {
	p := newPool(nil)
	defer p.close()
	r := newRouter(1024, p, []string{"seed:1"})
	v := &ClusterView{Epoch: 1, Nodes: []ClusterNode{{"n1", "h1:1", "alive"}}}
	for s := uint32(0); s < 1024; s++ {
		v.Shards = append(v.Shards, ShardInfo{s, []ShardReplica{{"n1", true}}})
	}
	r.applyIndex(buildIndex(v, 1024))
	key := []byte("user:12345")
	b.ReportAllocs()
	for b.Loop() {
		shard, _ := r.route(key)
		_, _ = r.target(context.Background(), shard, "")
	}
}

func offlineClient(t *testing.T, shards int) *Client {
	cfg, err := (&ClientConfig{Nodes: []string{"seed:1"}, TotalShards: shards}).normalized()
	if err != nil {
		t.Fatal(err)
	}
	p := newPool(nil)
	t.Cleanup(p.close)
	return &Client{cfg: cfg, pool: p, router: newRouter(shards, p, cfg.Nodes), events: newEventQueue(),
		listeners: map[uint64]func(*TopologyChangeEvent){}, ready: make(chan struct{})}
}

func pbView(epoch uint64, shards int, leader string, nodes ...string) *pb.ClusterView {
	v := &pb.ClusterView{Epoch: epoch}
	for _, n := range nodes {
		v.Nodes = append(v.Nodes, &pb.ClusterNode{Id: n, Addr: n + ":1", Role: "alive"})
	}
	for s := 0; s < shards; s++ {
		v.Shards = append(v.Shards, &pb.ShardInfo{Id: uint32(s), Replicas: []*pb.ShardReplica{{NodeId: leader, Leader: true}}})
	}
	return v
}

func TestViewOrderingWithPerNodeEpochs(t *testing.T) {
	c := offlineClient(t, 4)
	apply := func(v *pb.ClusterView, src string, fresh bool, asked uint64) {
		t.Helper()
		if err := c.applyView(v, src, fresh, asked); err != nil {
			t.Fatal(err)
		}
	}
	leader := func() string { return c.GetClusterView().Shards[0].Replicas[0].NodeID }

	apply(pbView(5, 4, "x", "x", "y"), "x:1", true, 0)
	asked := c.viewSeqNow()
	// y answers a fetch with another view (its own, lower, epoch count).
	apply(pbView(2, 4, "y", "x", "y"), "y:1", true, asked)
	if leader() != "y" || c.epoch.Load() != 2 {
		t.Fatalf("a fresh view from another node with other content was not taken: leader %s epoch %d", leader(), c.epoch.Load())
	}
	// A fetch from x asked before that, answered late with x's old view:
	// ignored.
	apply(pbView(5, 4, "x", "x", "y"), "x:1", true, asked)
	if leader() != "y" {
		t.Fatal("a late answer undid a newer view")
	}
	// y's stream goes on: newer epochs from y are taken.
	apply(pbView(3, 4, "x", "x", "y"), "y:1", false, 0)
	if leader() != "x" || c.epoch.Load() != 3 {
		t.Fatalf("y's next view was not taken: leader %s epoch %d", leader(), c.epoch.Load())
	}
	// ... and an older one from y is not.
	apply(pbView(2, 4, "y", "x", "y"), "y:1", false, 0)
	if leader() != "x" {
		t.Fatal("an older view from the same node was taken")
	}
	// y restarts and counts from 1: its first answer is taken.
	apply(pbView(1, 4, "y", "x", "y"), "y:1", true, c.viewSeqNow())
	if leader() != "y" || c.epoch.Load() != 1 {
		t.Fatalf("the restarted node's view was not taken: leader %s epoch %d", leader(), c.epoch.Load())
	}
	// An equal view from another node only lends its epoch.
	seq := c.viewSeqNow()
	apply(pbView(9, 4, "y", "x", "y"), "x:1", true, seq)
	if c.viewSeqNow() != seq || c.epoch.Load() != 9 {
		t.Fatalf("equal view: seq %d->%d epoch %d; want no change applied and epoch 9", seq, c.viewSeqNow(), c.epoch.Load())
	}
	// A wrong shard count is refused.
	if err := c.applyView(pbView(10, 8, "y", "x", "y"), "x:1", false, 0); !errors.Is(err, ErrShardCountMismatch) {
		t.Fatalf("8-shard view on a 4-shard client: %v", err)
	}
}
