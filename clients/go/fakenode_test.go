package norikv

// A test double of a NoriKV node, for the client's error-path unit tests
// only: it lets a test inject the exact answers of CONTRACT.md (NOT_LEADER
// with leader-hint, QUORUM_UNAVAILABLE, COMMIT_TIMEOUT, CAS trailers) that a
// real one-node server cannot be made to give on demand. Behaviour against
// the real server is tested in integration_test.go with testing/ephemeral.

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	pb "github.com/norikv/norikv-go/proto"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

type fakeCluster struct {
	mu    sync.Mutex
	view  *pb.ClusterView
	subs  map[chan *pb.ClusterView]struct{}
	delay atomic.Int64 // nanoseconds a fresh (epoch 0) WatchCluster waits before answering
}

func newFakeCluster() *fakeCluster {
	return &fakeCluster{subs: map[chan *pb.ClusterView]struct{}{}}
}

// setView publishes v to every open watch stream.
func (fc *fakeCluster) setView(v *pb.ClusterView) {
	fc.mu.Lock()
	fc.view = v
	for ch := range fc.subs {
		select {
		case ch <- v:
		default:
		}
	}
	fc.mu.Unlock()
}

// setViewQuiet changes the view without notifying open streams: only a
// fresh fetch (discovery) sees it.
func (fc *fakeCluster) setViewQuiet(v *pb.ClusterView) {
	fc.mu.Lock()
	fc.view = v
	fc.mu.Unlock()
}

type handlerFn func(ctx context.Context, n *fakeNode, req any) (any, error)

type fakeNode struct {
	pb.UnimplementedKvServer
	pb.UnimplementedMetaServer
	t       *testing.T
	id      string
	addr    string
	cluster *fakeCluster
	srv     *grpc.Server

	calls       atomic.Int32 // Kv calls
	watchCalls  atomic.Int32
	freshWatchs atomic.Int32 // WatchCluster calls with epoch 0 (view fetches)
	mu          sync.Mutex
	handler     handlerFn
}

func startFakeNode(t *testing.T, id string, fc *fakeCluster) *fakeNode {
	return startFakeNodeAt(t, id, "127.0.0.1:0", fc)
}

// startFakeNodeAt listens on addr (a restarted node keeps its address).
func startFakeNodeAt(t *testing.T, id, addr string, fc *fakeCluster) *fakeNode {
	t.Helper()
	var lis net.Listener
	var err error
	for i := 0; i < 100; i++ {
		if lis, err = net.Listen("tcp", addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("listen %s: %v", addr, err)
	}
	n := &fakeNode{t: t, id: id, addr: lis.Addr().String(), cluster: fc, srv: grpc.NewServer()}
	pb.RegisterKvServer(n.srv, n)
	pb.RegisterMetaServer(n.srv, n)
	go func() { _ = n.srv.Serve(lis) }()
	t.Cleanup(n.srv.Stop)
	return n
}

func (n *fakeNode) setHandler(h handlerFn) {
	n.mu.Lock()
	n.handler = h
	n.mu.Unlock()
}

func (n *fakeNode) handle(ctx context.Context, req any) (any, error) {
	n.calls.Add(1)
	n.mu.Lock()
	h := n.handler
	n.mu.Unlock()
	if h == nil {
		return nil, status.Error(codes.Unimplemented, "no handler on "+n.id)
	}
	return h(ctx, n, req)
}

func (n *fakeNode) Put(ctx context.Context, r *pb.PutRequest) (*pb.PutResponse, error) {
	out, err := n.handle(ctx, r)
	if err != nil {
		return nil, err
	}
	return out.(*pb.PutResponse), nil
}

func (n *fakeNode) Get(ctx context.Context, r *pb.GetRequest) (*pb.GetResponse, error) {
	out, err := n.handle(ctx, r)
	if err != nil {
		return nil, err
	}
	return out.(*pb.GetResponse), nil
}

func (n *fakeNode) Delete(ctx context.Context, r *pb.DeleteRequest) (*pb.DeleteResponse, error) {
	out, err := n.handle(ctx, r)
	if err != nil {
		return nil, err
	}
	return out.(*pb.DeleteResponse), nil
}

func (n *fakeNode) WatchCluster(req *pb.ClusterView, stream grpc.ServerStreamingServer[pb.ClusterView]) error {
	n.watchCalls.Add(1)
	if req.GetEpoch() == 0 {
		n.freshWatchs.Add(1)
		if d := time.Duration(n.cluster.delay.Load()); d > 0 {
			time.Sleep(d)
		}
	}
	fc := n.cluster
	ch := make(chan *pb.ClusterView, 16)
	fc.mu.Lock()
	cur := fc.view
	fc.subs[ch] = struct{}{}
	fc.mu.Unlock()
	defer func() {
		fc.mu.Lock()
		delete(fc.subs, ch)
		fc.mu.Unlock()
	}()
	sent := req.GetEpoch()
	if cur != nil && cur.GetEpoch() > sent {
		if err := stream.Send(cur); err != nil {
			return err
		}
		sent = cur.GetEpoch()
	}
	for {
		select {
		case <-stream.Context().Done():
			return nil
		case v := <-ch:
			if v.GetEpoch() > sent {
				if err := stream.Send(v); err != nil {
					return err
				}
				sent = v.GetEpoch()
			}
		}
	}
}

// makeView builds a view of the given nodes where leaderOf(shard) names the
// leader's id ("" for none) and every node replicates every shard.
func makeView(epoch uint64, totalShards int, nodes []*fakeNode, leaderOf func(shard int) string) *pb.ClusterView {
	v := &pb.ClusterView{Epoch: epoch}
	for _, n := range nodes {
		v.Nodes = append(v.Nodes, &pb.ClusterNode{Id: n.id, Addr: n.addr, Role: "alive"})
	}
	for s := 0; s < totalShards; s++ {
		si := &pb.ShardInfo{Id: uint32(s)}
		l := leaderOf(s)
		for _, n := range nodes {
			si.Replicas = append(si.Replicas, &pb.ShardReplica{NodeId: n.id, Leader: n.id == l})
		}
		v.Shards = append(v.Shards, si)
	}
	return v
}

func leaderAlways(id string) func(int) string { return func(int) string { return id } }

// okPut answers every Put with version (1, index) where index counts calls.
func okPut(term uint64) handlerFn {
	return func(ctx context.Context, n *fakeNode, req any) (any, error) {
		switch req.(type) {
		case *pb.PutRequest:
			return &pb.PutResponse{Version: &pb.Version{Term: term, Index: uint64(n.calls.Load())}}, nil
		case *pb.GetRequest:
			return &pb.GetResponse{Value: []byte("v"), Version: &pb.Version{Term: term, Index: 1}}, nil
		case *pb.DeleteRequest:
			return &pb.DeleteResponse{Tombstoned: true, Version: &pb.Version{Term: term, Index: uint64(n.calls.Load())}}, nil
		}
		return nil, status.Error(codes.Internal, "unexpected request")
	}
}

const notLeaderMsg = "NOT_LEADER: this node does not lead the shard"

// withTrailer sets a trailer on the current call and returns err.
func withTrailer(ctx context.Context, err error, kv ...string) error {
	_ = grpc.SetTrailer(ctx, metadata.Pairs(kv...))
	return err
}

// closedAddr returns a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := lis.Addr().String()
	lis.Close()
	return a
}

// testConfig is a config for fake clusters: small delays so that retries
// are quick, and a generous overall timeout.
func testConfig(totalShards int, nodes ...string) *ClientConfig {
	return &ClientConfig{
		Nodes:       nodes,
		TotalShards: totalShards,
		Timeout:     20 * time.Second,
		Retry:       &RetryConfig{MaxAttempts: 5, InitialDelay: time.Millisecond, MaxDelay: 5 * time.Millisecond, Jitter: -1},
	}
}

func mustClient(t *testing.T, cfg *ClientConfig) *Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := NewClient(ctx, cfg)
	if err != nil {
		t.Fatalf("NewClient(%v): %v", cfg.Nodes, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// waitFor polls cond until it holds or 10 s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}
