package norikv_test

// Integration tests against the real norikv-server (testing/ephemeral).
// They skip only when no server binary exists; CONTRACT.md is the
// specification they check.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	norikv "github.com/norikv/norikv-go"
	"github.com/norikv/norikv-go/testing/ephemeral"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

var (
	sharedOnce sync.Once
	shared     *ephemeral.Server
	sharedErr  error
)

// sharedServer is one ephemeral server for the package's tests (starting
// 1024 shards per test would dominate the run time). Tests use distinct
// keys.
func sharedServer(t *testing.T) *ephemeral.Server {
	t.Helper()
	if _, err := ephemeral.FindBinary(); err != nil {
		t.Skipf("no norikv-server binary to test against: %v", err)
	}
	sharedOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		shared, sharedErr = ephemeral.Start(ctx, nil)
	})
	if sharedErr != nil {
		t.Fatalf("starting the shared server: %v", sharedErr)
	}
	return shared
}

func TestMain(m *testing.M) {
	code := m.Run()
	if shared != nil {
		if err := shared.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "stopping the shared server: %v\noutput:\n%s", err, shared.Output())
			if code == 0 {
				code = 1
			}
		}
	}
	os.Exit(code)
}

func newTestClient(t *testing.T, addrs ...string) *norikv.Client {
	t.Helper()
	cfg := norikv.DefaultClientConfig(addrs)
	cfg.Timeout = 20 * time.Second
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := norikv.NewClient(ctx, cfg)
	if err != nil {
		t.Fatalf("NewClient(%v): %v", addrs, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

var (
	runIDs sync.Map // *testing.T -> int64
	nextID atomic.Int64
)

// key is a key of this test run only: unique also under -count=N, where the
// shared server outlives each run.
func key(t *testing.T, suffix string) []byte {
	id, _ := runIDs.LoadOrStore(t, nextID.Add(1))
	return []byte(fmt.Sprintf("%s#%d/%s", t.Name(), id, suffix))
}

func TestServerPutGetDeleteWithVersions(t *testing.T) {
	c := newTestClient(t, sharedServer(t).GRPCAddr)
	ctx := context.Background()
	k := key(t, "a")
	v1, err := c.Put(ctx, k, []byte("one"), nil)
	if err != nil {
		t.Fatalf("Put: %v", err)
	}
	if v1 == nil || v1.Term < 1 || v1.Index < 1 {
		t.Fatalf("Put returned version %v, want term and index >= 1", v1)
	}
	r, err := c.Get(ctx, k, nil)
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	if string(r.Value) != "one" || !r.Version.Equal(v1) {
		t.Fatalf("Get = %q@%v, want %q@%v", r.Value, r.Version, "one", v1)
	}
	v2, err := c.Put(ctx, k, []byte("two"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if v2.Equal(v1) {
		t.Fatalf("second Put returned the first's version %v", v2)
	}
	r, _ = c.Get(ctx, k, nil)
	if string(r.Value) != "two" || !r.Version.Equal(v2) {
		t.Fatalf("Get after overwrite = %q@%v, want two@%v", r.Value, r.Version, v2)
	}
	if err := c.Delete(ctx, k, nil); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	_, err = c.Get(ctx, k, nil)
	if !errors.Is(err, norikv.ErrKeyNotFound) || status.Code(err) != codes.NotFound {
		t.Fatalf("Get after Delete: %v, want ErrKeyNotFound / NOT_FOUND", err)
	}
	if !strings.Contains(err.Error(), "key not found") {
		t.Fatalf("NOT_FOUND message %q lacks \"key not found\"", err)
	}
	if err := c.Delete(ctx, k, nil); err != nil {
		t.Fatalf("Delete of a missing key must succeed: %v", err)
	}
	// Binary keys and values, and a 1 MiB value, round-trip.
	bk := []byte{0, 1, 2, 0xff, 0xfe}
	bv := bytes.Repeat([]byte{0, 0xAB}, 1<<19)
	if _, err := c.Put(ctx, bk, bv, nil); err != nil {
		t.Fatalf("Put of a 1 MiB binary value: %v", err)
	}
	r, err = c.Get(ctx, bk, nil)
	if err != nil || !bytes.Equal(r.Value, bv) {
		t.Fatalf("binary round trip failed: %v", err)
	}
}

func TestServerEveryConsistencyLevelReadsTheWrite(t *testing.T) {
	c := newTestClient(t, sharedServer(t).GRPCAddr)
	ctx := context.Background()
	k := key(t, "c")
	v, err := c.Put(ctx, k, []byte("x"), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, lvl := range []norikv.ConsistencyLevel{"", norikv.ConsistencyLease, norikv.ConsistencyLinearizable, norikv.ConsistencyStaleOK} {
		r, err := c.Get(ctx, k, &norikv.GetOptions{Consistency: lvl})
		if err != nil {
			t.Fatalf("Get(%q): %v", lvl, err)
		}
		if string(r.Value) != "x" || !r.Version.Equal(v) {
			t.Fatalf("Get(%q) = %q@%v", lvl, r.Value, r.Version)
		}
	}
	_, err = c.Get(ctx, k, &norikv.GetOptions{Consistency: "bogus"})
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("unknown consistency: %v, want INVALID_ARGUMENT", err)
	}
}

func TestServerCASConflictReportsCurrentVersion(t *testing.T) {
	c := newTestClient(t, sharedServer(t).GRPCAddr)
	ctx := context.Background()
	k := key(t, "cas")
	v1, err := c.Put(ctx, k, []byte("1"), nil)
	if err != nil {
		t.Fatal(err)
	}
	v2, err := c.Put(ctx, k, []byte("2"), &norikv.PutOptions{IfMatchVersion: v1})
	if err != nil {
		t.Fatalf("CAS with the current version: %v", err)
	}
	_, err = c.Put(ctx, k, []byte("3"), &norikv.PutOptions{IfMatchVersion: v1})
	if !errors.Is(err, norikv.ErrVersionMismatch) || status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("CAS with a stale version: %v, want ErrVersionMismatch", err)
	}
	var ne *norikv.Error
	if !errors.As(err, &ne) || !ne.CurrentVersion.Equal(v2) {
		t.Fatalf("CAS conflict names current version %v, want %v", ne.CurrentVersion, v2)
	}
	if !strings.HasPrefix(ne.Message, "version mismatch") {
		t.Fatalf("message %q does not start with \"version mismatch\"", ne.Message)
	}
	// The failed CAS changed nothing.
	if r, _ := c.Get(ctx, k, nil); string(r.Value) != "2" || !r.Version.Equal(v2) {
		t.Fatalf("after failed CAS: %q@%v", r.Value, r.Version)
	}
	// Delete with a stale version fails, with the current one succeeds.
	if err := c.Delete(ctx, k, &norikv.DeleteOptions{IfMatchVersion: v1}); !errors.Is(err, norikv.ErrVersionMismatch) {
		t.Fatalf("CAS delete with a stale version: %v", err)
	}
	if err := c.Delete(ctx, k, &norikv.DeleteOptions{IfMatchVersion: v2}); err != nil {
		t.Fatalf("CAS delete with the current version: %v", err)
	}
	// CAS on a missing key fails and names no current version.
	_, err = c.Put(ctx, k, []byte("4"), &norikv.PutOptions{IfMatchVersion: v2})
	if !errors.Is(err, norikv.ErrVersionMismatch) || !errors.As(err, &ne) || ne.CurrentVersion != nil {
		t.Fatalf("CAS on a missing key: %v (current %v), want ErrVersionMismatch without current version", err, ne.CurrentVersion)
	}
}

func TestServerCASIncrementsAreExactUnderConcurrency(t *testing.T) {
	c := newTestClient(t, sharedServer(t).GRPCAddr)
	ctx := context.Background()
	k := key(t, "counter")
	if _, err := c.Put(ctx, k, []byte("0"), nil); err != nil {
		t.Fatal(err)
	}
	const workers, each = 8, 25
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				for {
					r, err := c.Get(ctx, k, &norikv.GetOptions{Consistency: norikv.ConsistencyLinearizable})
					if err != nil {
						t.Errorf("Get: %v", err)
						return
					}
					n, _ := strconv.Atoi(string(r.Value))
					_, err = c.Put(ctx, k, []byte(strconv.Itoa(n+1)), &norikv.PutOptions{IfMatchVersion: r.Version})
					if err == nil {
						break
					}
					if !errors.Is(err, norikv.ErrVersionMismatch) {
						t.Errorf("CAS Put: %v", err)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	r, err := c.Get(ctx, k, nil)
	if err != nil {
		t.Fatal(err)
	}
	if string(r.Value) != strconv.Itoa(workers*each) {
		t.Fatalf("counter = %s after %d CAS increments", r.Value, workers*each)
	}
}

func TestServerIfNotExists(t *testing.T) {
	c := newTestClient(t, sharedServer(t).GRPCAddr)
	ctx := context.Background()
	k := key(t, "ine")
	opts := &norikv.PutOptions{IfNotExists: true}
	if _, err := c.Put(ctx, k, []byte("first"), opts); err != nil {
		t.Fatalf("IfNotExists on a missing key: %v", err)
	}
	_, err := c.Put(ctx, k, []byte("second"), opts)
	if !errors.Is(err, norikv.ErrAlreadyExists) || status.Code(err) != codes.AlreadyExists {
		t.Fatalf("IfNotExists on an existing key: %v, want ErrAlreadyExists", err)
	}
	if r, _ := c.Get(ctx, k, nil); string(r.Value) != "first" {
		t.Fatalf("value %q, want first", r.Value)
	}
	if err := c.Delete(ctx, k, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Put(ctx, k, []byte("third"), opts); err != nil {
		t.Fatalf("IfNotExists after Delete: %v", err)
	}
}

func TestServerIdempotentRetryReturnsTheSameVersion(t *testing.T) {
	c := newTestClient(t, sharedServer(t).GRPCAddr)
	ctx := context.Background()
	k := key(t, "idem")
	opts := &norikv.PutOptions{IdempotencyKey: "idem-" + strconv.FormatInt(time.Now().UnixNano(), 10)}
	v1, err := c.Put(ctx, k, []byte("v"), opts)
	if err != nil {
		t.Fatal(err)
	}
	// Someone else writes in between; the retry must not write again.
	v2, err := c.Put(ctx, k, []byte("other"), nil)
	if err != nil {
		t.Fatal(err)
	}
	again, err := c.Put(ctx, k, []byte("v"), opts)
	if err != nil {
		t.Fatalf("retry with the same idempotency key: %v", err)
	}
	if !again.Equal(v1) {
		t.Fatalf("retry returned %v, want the first attempt's %v", again, v1)
	}
	if r, _ := c.Get(ctx, k, nil); string(r.Value) != "other" || !r.Version.Equal(v2) {
		t.Fatalf("the retry wrote again: value %q@%v", r.Value, r.Version)
	}
	// Same key, different parameters: INVALID_ARGUMENT.
	_, err = c.Put(ctx, k, []byte("different"), opts)
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("reused idempotency key with other parameters: %v, want INVALID_ARGUMENT", err)
	}
	// A CAS with an idempotency key retried after it succeeded returns the
	// stored result instead of a conflict with itself.
	cas := &norikv.PutOptions{IfMatchVersion: v2, IdempotencyKey: opts.IdempotencyKey + "-cas"}
	c1, err := c.Put(ctx, k, []byte("cas"), cas)
	if err != nil {
		t.Fatal(err)
	}
	c2, err := c.Put(ctx, k, []byte("cas"), cas)
	if err != nil || !c2.Equal(c1) {
		t.Fatalf("retried CAS: %v, %v; want %v", c2, err, c1)
	}
	// Idempotent delete.
	del := &norikv.DeleteOptions{IdempotencyKey: opts.IdempotencyKey + "-del"}
	if err := c.Delete(ctx, k, del); err != nil {
		t.Fatal(err)
	}
	if err := c.Delete(ctx, k, del); err != nil {
		t.Fatalf("retried idempotent delete: %v", err)
	}
}

func TestServerTTLExpiry(t *testing.T) {
	c := newTestClient(t, sharedServer(t).GRPCAddr)
	ctx := context.Background()
	k := key(t, "ttl")
	const ttl = 1500 * time.Millisecond
	ms := uint64(ttl / time.Millisecond)
	start := time.Now()
	if _, err := c.Put(ctx, k, []byte("short-lived"), &norikv.PutOptions{TTLMs: &ms}); err != nil {
		t.Fatal(err)
	}
	for {
		_, err := c.Get(ctx, k, nil)
		now := time.Now()
		if err == nil {
			if now.Sub(start) > ttl+30*time.Second {
				t.Fatalf("key still present %v after its %v TTL", now.Sub(start), ttl)
			}
			time.Sleep(50 * time.Millisecond)
			continue
		}
		if !errors.Is(err, norikv.ErrKeyNotFound) {
			t.Fatalf("Get: %v", err)
		}
		// Expiry counts from the proposal, which came after start (the
		// server keeps milliseconds: allow for its rounding).
		if now.Sub(start) < ttl-10*time.Millisecond {
			t.Fatalf("key expired %v after the Put began, before its %v TTL", now.Sub(start), ttl)
		}
		break
	}
	// Expired means missing at every consistency level.
	for _, lvl := range []norikv.ConsistencyLevel{norikv.ConsistencyLinearizable, norikv.ConsistencyStaleOK} {
		if _, err := c.Get(ctx, k, &norikv.GetOptions{Consistency: lvl}); !errors.Is(err, norikv.ErrKeyNotFound) {
			t.Fatalf("Get(%s) of an expired key: %v", lvl, err)
		}
	}
	// An expired key no longer exists for IfNotExists.
	if _, err := c.Put(ctx, k, []byte("new"), &norikv.PutOptions{IfNotExists: true}); err != nil {
		t.Fatalf("IfNotExists over an expired key: %v", err)
	}
}

func TestServerRejectsOversizedOrEmptyKeysAndValues(t *testing.T) {
	c := newTestClient(t, sharedServer(t).GRPCAddr)
	ctx := context.Background()
	_, err := c.Put(ctx, bytes.Repeat([]byte("k"), 1025), []byte("v"), nil)
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("1025-byte key: %v, want INVALID_ARGUMENT", err)
	}
	_, err = c.Put(ctx, []byte{}, []byte("v"), nil)
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("empty key: %v, want INVALID_ARGUMENT", err)
	}
	for _, s := range []error{norikv.ErrKeyNotFound, norikv.ErrVersionMismatch, norikv.ErrAlreadyExists, norikv.ErrConnection} {
		if errors.Is(err, s) {
			t.Fatalf("INVALID_ARGUMENT matches %v", s)
		}
	}
	_, err = c.Put(ctx, key(t, "big"), make([]byte, 1<<20+1), nil)
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("value of 1 MiB + 1: %v, want INVALID_ARGUMENT", err)
	}
	// Over the request limit: refused, and not retried.
	_, err = c.Put(ctx, key(t, "huge"), make([]byte, 5<<20), nil)
	var ne *norikv.Error
	if code := status.Code(err); (code != codes.InvalidArgument && code != codes.ResourceExhausted) || !errors.As(err, &ne) || ne.Attempts != 1 {
		t.Fatalf("5 MiB value: %v, want one attempt refused with INVALID_ARGUMENT or RESOURCE_EXHAUSTED", err)
	}
}

func TestServerClusterViewStatsAndShardCheck(t *testing.T) {
	srv := sharedServer(t)
	c := newTestClient(t, srv.GRPCAddr)
	v := c.GetClusterView()
	if v == nil {
		t.Fatal("no cluster view after NewClient")
	}
	if v.Epoch == 0 || len(v.Nodes) != 1 || len(v.Shards) != 1024 {
		t.Fatalf("view epoch %d, %d nodes, %d shards; want epoch >= 1, 1 node, 1024 shards", v.Epoch, len(v.Nodes), len(v.Shards))
	}
	if v.Nodes[0].Role != "alive" || v.Nodes[0].Addr == "" {
		t.Fatalf("node %+v: want role alive and an address", v.Nodes[0])
	}
	for _, s := range v.Shards {
		if len(s.Replicas) != 1 || !s.Replicas[0].Leader || s.Replicas[0].NodeID != v.Nodes[0].ID {
			t.Fatalf("shard %d replicas %+v: want the one node as leader", s.ID, s.Replicas)
		}
	}
	if _, err := c.Put(context.Background(), key(t, "s"), []byte("v"), nil); err != nil {
		t.Fatal(err)
	}
	st := c.Stats()
	if st.Router.TotalNodes != 1 || st.Topology.CachedLeaders != 1024 || st.Pool.ActiveConnections < 1 || st.Topology.Epoch != v.Epoch {
		t.Fatalf("stats %+v", st)
	}

	cfg := norikv.DefaultClientConfig([]string{srv.GRPCAddr})
	cfg.TotalShards = 256
	bad, err := norikv.NewClient(context.Background(), cfg)
	if err == nil {
		bad.Close()
		t.Fatal("NewClient with TotalShards 256 against a 1024-shard server succeeded")
	}
	if !errors.Is(err, norikv.ErrShardCountMismatch) {
		t.Fatalf("shard count mismatch error: %v", err)
	}
}

func TestServerConcurrentClientsShareOneClient(t *testing.T) {
	c := newTestClient(t, sharedServer(t).GRPCAddr)
	ctx := context.Background()
	var wg sync.WaitGroup
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 20; i++ {
				k := key(t, fmt.Sprintf("%d-%d", g, i))
				val := []byte(fmt.Sprintf("value-%d-%d", g, i))
				ver, err := c.Put(ctx, k, val, nil)
				if err != nil {
					t.Errorf("Put: %v", err)
					return
				}
				r, err := c.Get(ctx, k, nil)
				if err != nil || !bytes.Equal(r.Value, val) || !r.Version.Equal(ver) {
					t.Errorf("Get %s after Put: err %v, result %+v, want %q@%v", k, err, r, val, ver)
					return
				}
			}
		}(g)
	}
	wg.Wait()
	if n := c.Stats().Pool.TotalConnections; n != 1 {
		t.Fatalf("%d pooled connections to a one-node cluster, want 1", n)
	}
}

func TestServerStoppedMeansErrConnection(t *testing.T) {
	srv := ephemeral.StartT(t, nil)
	cfg := norikv.DefaultClientConfig([]string{srv.GRPCAddr})
	cfg.Timeout = 2 * time.Second
	cfg.Retry = &norikv.RetryConfig{MaxAttempts: 3, InitialDelay: 10 * time.Millisecond}
	c, err := norikv.NewClient(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Put(context.Background(), []byte("k"), []byte("v"), nil); err != nil {
		t.Fatal(err)
	}
	if err := srv.Stop(); err != nil {
		t.Fatalf("SIGTERM: %v", err)
	}
	_, err = c.Get(context.Background(), []byte("k"), nil)
	if !errors.Is(err, norikv.ErrConnection) {
		t.Fatalf("Get from a stopped server: %v, want ErrConnection", err)
	}
}

// A crash and restart of the only node: the client rides it out through its
// retries, the acknowledged write survives, and the watch stream comes back.
func TestServerCrashRestartClientRecovers(t *testing.T) {
	if _, err := ephemeral.FindBinary(); err != nil {
		t.Skipf("no norikv-server binary to test against: %v", err)
	}
	rpc, err := ephemeral.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	opts := &ephemeral.Options{
		NotEphemeral: true,
		ReadyAddr:    rpc,
		Args: []string{"--rpc-addr=" + rpc, "--http-addr=127.0.0.1:0", "--peer-addr=127.0.0.1:0",
			"--data-dir=" + filepath.Join(dir, "data")},
	}
	start := func() *ephemeral.Server {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		s, err := ephemeral.Start(ctx, opts)
		if err != nil {
			t.Fatalf("starting the server: %v", err)
		}
		return s
	}
	srv := start()
	defer func() { srv.Stop() }()

	c := newTestClient(t, rpc)
	ctx := context.Background()
	k := key(t, "durable")
	v1, err := c.Put(ctx, k, []byte("before-crash"), nil)
	if err != nil {
		t.Fatal(err)
	}
	srv.Kill()
	srv = start()

	r, err := c.Get(ctx, k, &norikv.GetOptions{Consistency: norikv.ConsistencyLinearizable})
	if err != nil {
		t.Fatalf("Get after crash and restart: %v", err)
	}
	if string(r.Value) != "before-crash" || !r.Version.Equal(v1) {
		t.Fatalf("after restart: %q@%v, want before-crash@%v", r.Value, r.Version, v1)
	}
	if _, err := c.Put(ctx, k, []byte("after"), &norikv.PutOptions{IfMatchVersion: v1}); err != nil {
		t.Fatalf("CAS Put after restart: %v", err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for !c.Stats().Topology.Watching {
		if time.Now().After(deadline) {
			t.Fatal("the WatchCluster stream did not come back after the restart")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
