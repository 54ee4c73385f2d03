package norikv

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	pb "github.com/norikv/norikv-go/proto"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

const fakeShards = 16

func TestNotLeaderWithHintIsFollowedAtOnceAndCached(t *testing.T) {
	fc := newFakeCluster()
	a := startFakeNode(t, "a", fc)
	b := startFakeNode(t, "b", fc)
	fc.setView(makeView(1, fakeShards, []*fakeNode{a, b}, leaderAlways("a")))
	a.setHandler(func(ctx context.Context, n *fakeNode, req any) (any, error) {
		return nil, withTrailer(ctx, status.Error(codes.Unavailable, notLeaderMsg), "leader-hint", b.addr)
	})
	b.setHandler(okPut(3))

	cfg := testConfig(fakeShards, a.addr)
	// A backoff would outlast the call's deadline: success proves the
	// redirect was followed without one.
	cfg.Retry = &RetryConfig{MaxAttempts: 1, InitialDelay: time.Hour, MaxDelay: time.Hour}
	c := mustClient(t, cfg)

	v, err := c.Put(context.Background(), []byte("k1"), []byte("v"), nil)
	if err != nil {
		t.Fatalf("Put through a NOT_LEADER redirect: %v", err)
	}
	if v.Term != 3 || v.Index != 1 {
		t.Fatalf("Put returned version %v, want 3.1 from the hinted leader", v)
	}
	if a.calls.Load() != 1 || b.calls.Load() != 1 {
		t.Fatalf("calls: a=%d b=%d, want 1 and 1", a.calls.Load(), b.calls.Load())
	}
	// The hint is cached: the next call for the same shard goes to b only.
	if _, err := c.Put(context.Background(), []byte("k1"), []byte("v"), nil); err != nil {
		t.Fatal(err)
	}
	if a.calls.Load() != 1 || b.calls.Load() != 2 {
		t.Fatalf("after caching the hint: a=%d b=%d calls, want 1 and 2", a.calls.Load(), b.calls.Load())
	}
	if got := c.Stats().Router.Redirects; got != 1 {
		t.Fatalf("Stats().Router.Redirects = %d, want 1", got)
	}
}

func TestNotLeaderWithoutHintRediscoversLeaderFromView(t *testing.T) {
	fc := newFakeCluster()
	a := startFakeNode(t, "a", fc)
	b := startFakeNode(t, "b", fc)
	fc.setView(makeView(1, fakeShards, []*fakeNode{a, b}, leaderAlways("a")))
	c := mustClient(t, testConfig(fakeShards, a.addr))

	// Leadership moved to b; the watch stream has not told the client yet.
	fc.setViewQuiet(makeView(2, fakeShards, []*fakeNode{a, b}, leaderAlways("b")))
	a.setHandler(func(ctx context.Context, n *fakeNode, req any) (any, error) {
		return nil, status.Error(codes.Unavailable, notLeaderMsg)
	})
	b.setHandler(okPut(2))
	if _, err := c.Get(context.Background(), []byte("x"), nil); err != nil {
		t.Fatalf("Get after NOT_LEADER without hint: %v", err)
	}
	if b.calls.Load() != 1 {
		t.Fatalf("b got %d calls, want 1", b.calls.Load())
	}
	if c.Stats().Router.Discoveries < 1 {
		t.Fatalf("no discovery recorded")
	}
	if e := c.GetClusterView().Epoch; e != 2 {
		t.Fatalf("view epoch after discovery = %d, want 2", e)
	}
}

func TestRefusedConnectionIsRetriedElsewhereEvenForCAS(t *testing.T) {
	fc := newFakeCluster()
	b := startFakeNode(t, "b", fc)
	dead := &fakeNode{id: "dead", addr: closedAddr(t)}
	// The view still names the dead node as leader; b will answer.
	fc.setView(makeView(1, fakeShards, []*fakeNode{dead, b}, leaderAlways("dead")))
	b.setHandler(okPut(4))
	c := mustClient(t, testConfig(fakeShards, b.addr))

	// A CAS put without idempotency key is retried only when it is known
	// not to have been sent: a refused connection is such a case.
	_, err := c.Put(context.Background(), []byte("k"), []byte("v"), &PutOptions{IfMatchVersion: &Version{1, 1}})
	if err != nil {
		t.Fatalf("CAS Put with a dead cached leader: %v", err)
	}
	if b.calls.Load() != 1 {
		t.Fatalf("b got %d calls, want 1", b.calls.Load())
	}
}

func TestUnknownOutcomeRetriedOnlyWhenSafe(t *testing.T) {
	ttl := uint64(1000)
	cases := []struct {
		name      string
		unknown   error
		run       func(c *Client) error
		wantRetry bool
	}{
		{"unconditional put", commitTimeout, func(c *Client) error { _, err := c.Put(bg, k, val, nil); return err }, true},
		{"put with ttl", commitTimeout, func(c *Client) error { _, err := c.Put(bg, k, val, &PutOptions{TTLMs: &ttl}); return err }, true},
		{"cas put without idempotency key", commitTimeout, func(c *Client) error {
			_, err := c.Put(bg, k, val, &PutOptions{IfMatchVersion: &Version{1, 2}})
			return err
		}, false},
		{"if-not-exists put without idempotency key", quorumLost, func(c *Client) error {
			_, err := c.Put(bg, k, val, &PutOptions{IfNotExists: true})
			return err
		}, false},
		{"cas put with idempotency key", commitTimeout, func(c *Client) error {
			_, err := c.Put(bg, k, val, &PutOptions{IfMatchVersion: &Version{1, 2}, IdempotencyKey: "op-1"})
			return err
		}, true},
		{"unconditional delete", quorumLost, func(c *Client) error { return c.Delete(bg, k, nil) }, true},
		{"cas delete without idempotency key", commitTimeout, func(c *Client) error {
			return c.Delete(bg, k, &DeleteOptions{IfMatchVersion: &Version{1, 2}})
		}, false},
		{"cas delete with idempotency key", commitTimeout, func(c *Client) error {
			return c.Delete(bg, k, &DeleteOptions{IfMatchVersion: &Version{1, 2}, IdempotencyKey: "d-1"})
		}, true},
		{"get", quorumLost, func(c *Client) error { _, err := c.Get(bg, k, nil); return err }, true},
		{"get after connection lost mid-call", connLost, func(c *Client) error { _, err := c.Get(bg, k, nil); return err }, true},
		{"cas put after connection lost mid-call", connLost, func(c *Client) error {
			_, err := c.Put(bg, k, val, &PutOptions{IfMatchVersion: &Version{1, 2}})
			return err
		}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fc := newFakeCluster()
			a := startFakeNode(t, "a", fc)
			fc.setView(makeView(1, fakeShards, []*fakeNode{a}, leaderAlways("a")))
			ok := okPut(1)
			a.setHandler(func(ctx context.Context, n *fakeNode, req any) (any, error) {
				if n.calls.Load() == 1 {
					return nil, tc.unknown
				}
				return ok(ctx, n, req)
			})
			c := mustClient(t, testConfig(fakeShards, a.addr))
			err := tc.run(c)
			if tc.wantRetry {
				if err != nil || a.calls.Load() != 2 {
					t.Fatalf("want one retry and success: err=%v calls=%d", err, a.calls.Load())
				}
				return
			}
			if a.calls.Load() != 1 {
				t.Fatalf("an unsafe write was sent %d times after an unknown outcome, want 1", a.calls.Load())
			}
			if !errors.Is(err, ErrConnection) {
				t.Fatalf("error %v does not match ErrConnection", err)
			}
			if status.Code(err) != status.Code(tc.unknown) {
				t.Fatalf("status.Code(err) = %v, want %v", status.Code(err), status.Code(tc.unknown))
			}
		})
	}
}

var (
	bg            = context.Background()
	k             = []byte("key")
	val           = []byte("value")
	commitTimeout = status.Error(codes.DeadlineExceeded, "COMMIT_TIMEOUT: proposal not committed in time")
	quorumLost    = status.Error(codes.Unavailable, "QUORUM_UNAVAILABLE: no quorum for shard 3")
	connLost      = status.Error(codes.Unavailable, "error reading from server: EOF")
)

func TestPermanentErrorsAreNotRetriedAndMatchTheirSentinel(t *testing.T) {
	fc := newFakeCluster()
	a := startFakeNode(t, "a", fc)
	fc.setView(makeView(1, fakeShards, []*fakeNode{a}, leaderAlways("a")))
	c := mustClient(t, testConfig(fakeShards, a.addr))
	cases := []struct {
		name     string
		answer   func(ctx context.Context) error
		sentinel error
		code     codes.Code
	}{
		{"not found", func(ctx context.Context) error { return status.Error(codes.NotFound, "key not found") }, ErrKeyNotFound, codes.NotFound},
		{"version mismatch", func(ctx context.Context) error {
			return withTrailer(ctx, status.Error(codes.FailedPrecondition, "version mismatch: have 3.17"), "current-version", "3.17")
		}, ErrVersionMismatch, codes.FailedPrecondition},
		{"already exists", func(ctx context.Context) error { return status.Error(codes.AlreadyExists, "key exists") }, ErrAlreadyExists, codes.AlreadyExists},
		{"invalid argument", func(ctx context.Context) error {
			return status.Error(codes.InvalidArgument, "key is 2000 bytes, limit 1024")
		}, nil, codes.InvalidArgument},
		{"permission denied", func(ctx context.Context) error { return status.Error(codes.PermissionDenied, "no") }, nil, codes.PermissionDenied},
	}
	all := []error{ErrKeyNotFound, ErrVersionMismatch, ErrAlreadyExists, ErrConnection}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := a.calls.Load()
			a.setHandler(func(ctx context.Context, n *fakeNode, req any) (any, error) { return nil, tc.answer(ctx) })
			_, err := c.Put(bg, k, val, &PutOptions{IdempotencyKey: "p"})
			if got := a.calls.Load() - before; got != 1 {
				t.Fatalf("permanent error sent %d times, want 1", got)
			}
			for _, s := range all {
				if errors.Is(err, s) != (s == tc.sentinel) {
					t.Fatalf("errors.Is(%v, %v) = %v", err, s, errors.Is(err, s))
				}
			}
			if status.Code(err) != tc.code {
				t.Fatalf("status.Code = %v, want %v", status.Code(err), tc.code)
			}
			var ne *Error
			if !errors.As(err, &ne) {
				t.Fatalf("%v is not a *norikv.Error", err)
			}
			if tc.sentinel == ErrVersionMismatch && !ne.CurrentVersion.Equal(&Version{3, 17}) {
				t.Fatalf("CurrentVersion = %v, want 3.17 from the trailer", ne.CurrentVersion)
			}
		})
	}
}

func TestMaxAttemptsBoundsRetries(t *testing.T) {
	fc := newFakeCluster()
	a := startFakeNode(t, "a", fc)
	fc.setView(makeView(1, fakeShards, []*fakeNode{a}, leaderAlways("a")))
	a.setHandler(func(ctx context.Context, n *fakeNode, req any) (any, error) { return nil, quorumLost })
	cfg := testConfig(fakeShards, a.addr)
	cfg.Retry.MaxAttempts = 3
	c := mustClient(t, cfg)
	_, err := c.Get(bg, k, nil)
	if a.calls.Load() != 3 {
		t.Fatalf("%d attempts, want MaxAttempts = 3", a.calls.Load())
	}
	var ne *Error
	if !errors.As(err, &ne) || ne.Attempts != 3 || !errors.Is(err, ErrConnection) {
		t.Fatalf("error %v (attempts %v): want ErrConnection after 3 attempts", err, ne)
	}
}

func TestTimeoutAppliesOnlyWhenContextHasNoDeadline(t *testing.T) {
	fc := newFakeCluster()
	a := startFakeNode(t, "a", fc)
	fc.setView(makeView(1, fakeShards, []*fakeNode{a}, leaderAlways("a")))
	a.setHandler(func(ctx context.Context, n *fakeNode, req any) (any, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	})
	cfg := testConfig(fakeShards, a.addr)
	c := mustClient(t, cfg)
	c.cfg.Timeout = 200 * time.Millisecond // after connecting

	// No deadline: the configured Timeout ends the call.
	_, err := c.Get(context.Background(), k, nil)
	if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, ErrConnection) {
		t.Fatalf("Get without deadline: %v; want DeadlineExceeded and ErrConnection", err)
	}
	// A caller's deadline wins over Timeout.
	c.cfg.Timeout = time.Hour
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err = c.Get(ctx, k, nil)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Get with deadline: %v; want DeadlineExceeded", err)
	}
	// Cancellation is not a connection error.
	ctx2, cancel2 := context.WithCancel(context.Background())
	go func() { time.Sleep(50 * time.Millisecond); cancel2() }()
	_, err = c.Get(ctx2, k, nil)
	if !errors.Is(err, context.Canceled) || errors.Is(err, ErrConnection) {
		t.Fatalf("cancelled Get: %v; want context.Canceled and not ErrConnection", err)
	}
}

func TestShardCountMismatchFailsAtConnect(t *testing.T) {
	fc := newFakeCluster()
	a := startFakeNode(t, "a", fc)
	fc.setView(makeView(1, 8, []*fakeNode{a}, leaderAlways("a")))
	c, err := NewClient(bg, testConfig(fakeShards, a.addr))
	if err == nil {
		c.Close()
		t.Fatal("NewClient accepted 16 TotalShards for an 8-shard cluster")
	}
	if !errors.Is(err, ErrShardCountMismatch) {
		t.Fatalf("error %v does not match ErrShardCountMismatch", err)
	}
}

func TestNewClientFailsWithErrConnectionWhenNoNodeAnswers(t *testing.T) {
	cfg := testConfig(fakeShards, closedAddr(t), closedAddr(t))
	cfg.Timeout = 300 * time.Millisecond
	c, err := NewClient(bg, cfg)
	if err == nil {
		c.Close()
		t.Fatal("NewClient succeeded with no live node")
	}
	if !errors.Is(err, ErrConnection) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("error %v: want ErrConnection and DeadlineExceeded", err)
	}
}

func TestNewClientSkipsDeadSeedNodes(t *testing.T) {
	fc := newFakeCluster()
	a := startFakeNode(t, "a", fc)
	fc.setView(makeView(1, fakeShards, []*fakeNode{a}, leaderAlways("a")))
	a.setHandler(okPut(1))
	c := mustClient(t, testConfig(fakeShards, closedAddr(t), a.addr))
	if _, err := c.Put(bg, k, val, nil); err != nil {
		t.Fatal(err)
	}
	st := c.Stats()
	if st.Router.TotalNodes != 1 || st.Topology.CachedLeaders != fakeShards || st.Topology.Epoch != 1 {
		t.Fatalf("stats %+v: want 1 node, %d cached leaders, epoch 1", st, fakeShards)
	}
	if st.Pool.ActiveConnections < 1 {
		t.Fatalf("stats %+v: no active connection", st)
	}
}

func TestTopologyChangeEventsCarryDiffsAndUnsubscribeStopsThem(t *testing.T) {
	fc := newFakeCluster()
	a := startFakeNode(t, "a", fc)
	b := startFakeNode(t, "b", fc)
	cn := startFakeNode(t, "c", fc)
	fc.setView(makeView(1, fakeShards, []*fakeNode{a, b}, leaderAlways("a")))
	c := mustClient(t, testConfig(fakeShards, a.addr))

	var mu sync.Mutex
	var got []*TopologyChangeEvent
	// The first view's own event (epoch 0 -> 1) may still be on its way;
	// this test looks at later ones.
	unsub := c.OnTopologyChange(func(ev *TopologyChangeEvent) {
		if ev.CurrentEpoch < 2 {
			return
		}
		mu.Lock()
		got = append(got, ev)
		mu.Unlock()
	})
	v2 := makeView(2, fakeShards, []*fakeNode{a, b, cn}, func(s int) string {
		if s == 5 {
			return "c"
		}
		return "a"
	})
	v2.Nodes[1].Role = "dead"
	fc.setView(v2)
	waitFor(t, "the epoch-2 event", func() bool { mu.Lock(); defer mu.Unlock(); return len(got) == 1 })
	mu.Lock()
	ev := got[0]
	mu.Unlock()
	if ev.PreviousEpoch != 1 || ev.CurrentEpoch != 2 {
		t.Fatalf("epochs %d -> %d, want 1 -> 2", ev.PreviousEpoch, ev.CurrentEpoch)
	}
	if len(ev.AddedNodes) != 1 || ev.AddedNodes[0] != "c" || len(ev.RemovedNodes) != 1 || ev.RemovedNodes[0] != "b" {
		t.Fatalf("added %v removed %v, want [c] and [b]", ev.AddedNodes, ev.RemovedNodes)
	}
	if len(ev.LeaderChanges) != 1 || ev.LeaderChanges[5] != "c" {
		t.Fatalf("leader changes %v, want shard 5 -> c", ev.LeaderChanges)
	}
	// The router follows the view: shard 5 now goes to c.
	if nc := c.router.leaders[5].Load(); nc == nil || nc.addr != cn.addr {
		t.Fatalf("shard 5 routes to %v, want %s", nc, cn.addr)
	}

	unsub()
	unsub() // idempotent
	fc.setView(makeView(3, fakeShards, []*fakeNode{a}, leaderAlways("a")))
	waitFor(t, "epoch 3", func() bool { return c.Stats().Topology.Epoch == 3 })
	// Deliveries happen in order on one goroutine; register a second
	// listener and wait for its event so that any stray delivery to the
	// first would have happened.
	seen := make(chan uint64, 4)
	c.OnTopologyChange(func(ev *TopologyChangeEvent) {
		// The epoch-3 event may still be on its way to listeners.
		if ev.CurrentEpoch >= 4 {
			seen <- ev.CurrentEpoch
		}
	})
	fc.setView(makeView(4, fakeShards, []*fakeNode{a}, leaderAlways("a")))
	if e := <-seen; e != 4 {
		t.Fatalf("second listener saw epoch %d, want 4", e)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 1 {
		t.Fatalf("unsubscribed listener got %d events, want 1", len(got))
	}
}

func TestWatchMovesToAnotherNodeWhenItsStreamBreaks(t *testing.T) {
	fc := newFakeCluster()
	a := startFakeNode(t, "a", fc)
	b := startFakeNode(t, "b", fc)
	fc.setView(makeView(1, fakeShards, []*fakeNode{a, b}, leaderAlways("a")))
	c := mustClient(t, testConfig(fakeShards, a.addr, b.addr))
	waitFor(t, "watch stream open", func() bool { return c.Stats().Topology.Watching })
	a.srv.Stop() // kills a's stream
	fc.setView(makeView(2, fakeShards, []*fakeNode{a, b}, leaderAlways("b")))
	waitFor(t, "epoch 2 through b", func() bool { return c.Stats().Topology.Epoch == 2 })
	if b.watchCalls.Load() == 0 {
		t.Fatal("b was never watched")
	}
}

func TestConcurrentLeaderDiscoveriesOfOneShardAreDeduplicated(t *testing.T) {
	fc := newFakeCluster()
	a := startFakeNode(t, "a", fc)
	b := startFakeNode(t, "b", fc)
	// No shard has a known leader yet.
	fc.setView(makeView(1, fakeShards, []*fakeNode{a, b}, leaderAlways("")))
	c := mustClient(t, testConfig(fakeShards, a.addr))
	b.setHandler(okPut(1))
	a.setHandler(func(ctx context.Context, n *fakeNode, req any) (any, error) {
		return nil, status.Error(codes.Internal, "a must not be asked")
	})
	// Discovery will find b as the leader, slowly, so that every caller
	// arrives while it runs.
	fc.setViewQuiet(makeView(2, fakeShards, []*fakeNode{a, b}, leaderAlways("b")))
	fc.delay.Store(int64(300 * time.Millisecond))
	before := a.freshWatchs.Load() + b.freshWatchs.Load()

	const callers = 50
	var wg sync.WaitGroup
	errs := make(chan error, callers)
	for i := 0; i < callers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := c.Get(bg, []byte("same-key"), nil)
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("Get: %v", err)
		}
	}
	fetches := a.freshWatchs.Load() + b.freshWatchs.Load() - before
	if d := c.Stats().Router.Discoveries; d != 1 || fetches != 1 {
		t.Fatalf("%d callers caused %d discoveries and %d view fetches, want 1 and 1", callers, d, fetches)
	}
	if b.calls.Load() != callers {
		t.Fatalf("leader b served %d of %d calls", b.calls.Load(), callers)
	}
}

func TestClosedClientRefusesCalls(t *testing.T) {
	fc := newFakeCluster()
	a := startFakeNode(t, "a", fc)
	fc.setView(makeView(1, fakeShards, []*fakeNode{a}, leaderAlways("a")))
	c := mustClient(t, testConfig(fakeShards, a.addr))
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := c.Get(bg, k, nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("Get after Close: %v, want ErrClosed", err)
	}
}

// The client serves many goroutines at once while views change under it.
func TestConcurrentCallsDuringViewChanges(t *testing.T) {
	fc := newFakeCluster()
	a := startFakeNode(t, "a", fc)
	b := startFakeNode(t, "b", fc)
	fc.setView(makeView(1, fakeShards, []*fakeNode{a, b}, leaderAlways("a")))
	a.setHandler(okPut(1))
	b.setHandler(okPut(1))
	c := mustClient(t, testConfig(fakeShards, a.addr))
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for e := uint64(2); e < 40; e++ {
			l := "a"
			if e%2 == 0 {
				l = "b"
			}
			fc.setView(makeView(e, fakeShards, []*fakeNode{a, b}, leaderAlways(l)))
			time.Sleep(time.Millisecond)
		}
		close(stop)
	}()
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				key := []byte{byte(g), byte(i)}
				if _, err := c.Put(bg, key, val, nil); err != nil {
					t.Errorf("Put: %v", err)
					return
				}
				_ = c.Stats()
				_ = c.GetClusterView()
			}
		}(g)
	}
	wg.Wait()
	_ = pb.ClusterView{}
}

func TestConnectionsOfNodesThatLeftAreClosed(t *testing.T) {
	fc := newFakeCluster()
	a := startFakeNode(t, "a", fc)
	b := startFakeNode(t, "b", fc)
	half := func(s int) string {
		if s%2 == 0 {
			return "a"
		}
		return "b"
	}
	fc.setView(makeView(1, fakeShards, []*fakeNode{a, b}, half))
	c := mustClient(t, testConfig(fakeShards, a.addr))
	if n := c.Stats().Pool.TotalConnections; n != 2 {
		t.Fatalf("%d pooled connections for a view of 2 leaders, want 2", n)
	}
	fc.setView(makeView(2, fakeShards, []*fakeNode{a}, leaderAlways("a")))
	waitFor(t, "epoch 2", func() bool { return c.Stats().Topology.Epoch == 2 })
	// the pool prunes after the view is installed, not atomically with it
	waitFor(t, "b's connection closed", func() bool { return c.Stats().Pool.TotalConnections == 1 })
}

func TestStaleReadsAreSpreadOverReplicasAndLeaderReadsAreNot(t *testing.T) {
	fc := newFakeCluster()
	a := startFakeNode(t, "a", fc)
	b := startFakeNode(t, "b", fc)
	fc.setView(makeView(1, fakeShards, []*fakeNode{a, b}, leaderAlways("a")))
	a.setHandler(okPut(1))
	b.setHandler(okPut(1))
	c := mustClient(t, testConfig(fakeShards, a.addr))
	for i := 0; i < 20; i++ {
		if _, err := c.Get(bg, k, &GetOptions{Consistency: ConsistencyLinearizable}); err != nil {
			t.Fatal(err)
		}
	}
	if a.calls.Load() != 20 || b.calls.Load() != 0 {
		t.Fatalf("linearizable reads: leader a %d, follower b %d; want all on the leader", a.calls.Load(), b.calls.Load())
	}
	for i := 0; i < 20; i++ {
		if _, err := c.Get(bg, k, &GetOptions{Consistency: ConsistencyStaleOK}); err != nil {
			t.Fatal(err)
		}
	}
	if b.calls.Load() == 0 || a.calls.Load() == 20 {
		t.Fatalf("stale_ok reads: a %d, b %d more; want both replicas used", a.calls.Load()-20, b.calls.Load())
	}
	// A failing replica does not fail the read: the retry goes to the leader.
	b.setHandler(func(ctx context.Context, n *fakeNode, req any) (any, error) {
		return nil, status.Error(codes.Unavailable, "server shutting down")
	})
	bBefore := b.calls.Load()
	for i := 0; i < 10; i++ {
		if _, err := c.Get(bg, k, &GetOptions{Consistency: ConsistencyStaleOK}); err != nil {
			t.Fatalf("stale read with a failing replica: %v", err)
		}
	}
	// ... and the failed replica is left alone for a while.
	// (one failure marks it for a second; a very slow run may see two)
	if got := b.calls.Load() - bBefore; got < 1 || got > 3 {
		t.Fatalf("the failing replica got %d of 10 stale reads, want 1 (then avoided)", got)
	}
}

// Epochs are counted per node and restart with it: after its node restarts
// with a lower epoch, the client still takes the new view.
func TestViewFromRestartedNodeWithLowerEpochIsTaken(t *testing.T) {
	fc := newFakeCluster()
	a := startFakeNode(t, "a", fc)
	fc.setView(makeView(7, fakeShards, []*fakeNode{a}, leaderAlways("a")))
	c := mustClient(t, testConfig(fakeShards, a.addr))
	var mu sync.Mutex
	var events []*TopologyChangeEvent
	c.OnTopologyChange(func(ev *TopologyChangeEvent) {
		mu.Lock()
		events = append(events, ev)
		mu.Unlock()
	})
	waitFor(t, "watch open", func() bool { return c.Stats().Topology.Watching })

	a.srv.Stop()
	fc2 := newFakeCluster()
	a2 := startFakeNodeAt(t, "a", a.addr, fc2)
	b := startFakeNode(t, "b", fc2)
	// After the restart the node counts from 1, and b has joined.
	fc2.setView(makeView(1, fakeShards, []*fakeNode{a2, b}, leaderAlways("b")))
	waitFor(t, "the restarted node's view", func() bool {
		v := c.GetClusterView()
		return v != nil && len(v.Nodes) == 2
	})
	if e := c.Stats().Topology.Epoch; e != 1 {
		t.Fatalf("epoch %d after the restart, want the node's 1", e)
	}
	if nc := c.router.leaders[0].Load(); nc == nil || nc.addr != b.addr {
		t.Fatalf("shard 0 routes to %v after the restart, want b", nc)
	}
	waitFor(t, "the change event", func() bool {
		mu.Lock()
		defer mu.Unlock()
		for _, ev := range events {
			if ev.PreviousEpoch == 7 && ev.CurrentEpoch == 1 && len(ev.AddedNodes) == 1 && ev.AddedNodes[0] == "b" {
				return true
			}
		}
		return false
	})
	// Watching the same view again (a reconnect) sends no event.
	mu.Lock()
	n := len(events)
	mu.Unlock()
	a2.srv.Stop()
	b.srv.Stop()
	a3 := startFakeNodeAt(t, "a", a.addr, fc2)
	_ = a3
	waitFor(t, "watch reopened", func() bool { return c.Stats().Topology.Watching })
	time.Sleep(100 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	if len(events) != n {
		t.Fatalf("a reconnect to an unchanged view sent %d events", len(events)-n)
	}
}

// The client side of a failover, with the exact answers CONTRACT.md
// prescribes: the leader dies under traffic, a follower answers NOT_LEADER
// with the new leader's hint, the view catches up later. No call fails.
func TestFailoverUnderTrafficLosesNoCall(t *testing.T) {
	fc := newFakeCluster()
	a := startFakeNode(t, "a", fc)
	b := startFakeNode(t, "b", fc)
	cn := startFakeNode(t, "c", fc)
	all := []*fakeNode{a, b, cn}
	fc.setView(makeView(1, fakeShards, all, leaderAlways("a")))
	a.setHandler(okPut(1))
	b.setHandler(func(ctx context.Context, n *fakeNode, req any) (any, error) {
		return nil, withTrailer(ctx, status.Error(codes.Unavailable, notLeaderMsg), "leader-hint", cn.addr)
	})
	cn.setHandler(okPut(2))
	cfg := testConfig(fakeShards, a.addr, b.addr, cn.addr)
	cfg.Retry.MaxAttempts = 20
	c := mustClient(t, cfg)
	var mu sync.Mutex
	var removed []string
	c.OnTopologyChange(func(ev *TopologyChangeEvent) {
		mu.Lock()
		removed = append(removed, ev.RemovedNodes...)
		mu.Unlock()
	})

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var calls, failures atomic.Int64
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				calls.Add(1)
				key := []byte{byte(g), byte(i), byte(i >> 8)}
				if _, err := c.Put(bg, key, val, nil); err != nil {
					failures.Add(1)
					t.Errorf("Put during failover: %v", err)
					return
				}
			}
		}(g)
	}
	waitFor(t, "traffic on a", func() bool { return a.calls.Load() > 50 })
	a.srv.Stop() // the leader dies
	waitFor(t, "traffic on c", func() bool { return cn.calls.Load() > 50 })
	v2 := makeView(2, fakeShards, all, leaderAlways("c"))
	v2.Nodes[0].Role = "dead"
	fc.setView(v2)
	waitFor(t, "the event removing a", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(removed) == 1 && removed[0] == "a"
	})
	before := cn.calls.Load()
	waitFor(t, "more traffic on c", func() bool { return cn.calls.Load() > before+50 })
	close(stop)
	wg.Wait()
	if failures.Load() != 0 {
		t.Fatalf("%d of %d calls failed during the failover", failures.Load(), calls.Load())
	}
	if got := c.router.leaders[3].Load(); got == nil || got.addr != cn.addr {
		t.Fatalf("shard 3 routes to %v after the failover, want c", got)
	}
}
