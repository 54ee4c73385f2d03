package kvstore_test

// kvstore against real norikv-server processes: seed 004's documented
// behaviour on NoriKV.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	norikv "github.com/norikv/norikv-go"
	"github.com/norikv/norikv-go/kvstore"
	pb "github.com/norikv/norikv-go/proto"
	"github.com/norikv/norikv-go/testing/ephemeral"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

var (
	sharedOnce sync.Once
	shared     *ephemeral.Server
	sharedErr  error
	nsSeq      atomic.Int64
)

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
			fmt.Fprintf(os.Stderr, "stopping the shared server: %v\n", err)
			if code == 0 {
				code = 1
			}
		}
	}
	os.Exit(code)
}

// namespace is a fresh namespace per call, so tests on the shared server
// do not see each other's keys.
func namespace(t *testing.T) string {
	return fmt.Sprintf("%s-%d", t.Name(), nsSeq.Add(1))
}

func rawClient(t *testing.T, addr string) *norikv.Client {
	t.Helper()
	cfg := norikv.DefaultClientConfig([]string{addr})
	cfg.Timeout = 20 * time.Second
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := norikv.NewClient(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// newStore opens a kvstore client, skipping the test on a server without
// Kv.Watch.
func newStore(t *testing.T, addr, ns string, st kvstore.Storage, opts ...kvstore.ClientOption) *kvstore.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	opts = append([]kvstore.ClientOption{kvstore.WithBrokers(addr)}, opts...)
	c, err := kvstore.NewClient(ctx, ns, st, opts...)
	if status.Code(err) == codes.Unimplemented {
		t.Skipf("Kv.Watch not on this server: %v", err)
	}
	if err != nil {
		t.Fatalf("kvstore.NewClient(%q): %v", ns, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// hookLog records hook calls.
type hookLog struct {
	mu   sync.Mutex
	sets map[string]string
	dels []string
	n    int
}

func newHookLog() *hookLog { return &hookLog{sets: map[string]string{}} }

func (h *hookLog) opts() []kvstore.ClientOption {
	return []kvstore.ClientOption{
		kvstore.WithOnSetHook(func(k, v []byte) {
			h.mu.Lock()
			h.sets[string(k)] = string(v)
			h.n++
			h.mu.Unlock()
		}),
		kvstore.WithOnDeleteHook(func(k []byte) {
			h.mu.Lock()
			h.dels = append(h.dels, string(k))
			delete(h.sets, string(k))
			h.n++
			h.mu.Unlock()
		}),
	}
}

func (h *hookLog) snapshot() (map[string]string, []string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	m := make(map[string]string, len(h.sets))
	for k, v := range h.sets {
		m[k] = v
	}
	return m, slices.Clone(h.dels)
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within 30 s: %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestNewClientRejectsMissingNamespaceStorageAndBrokers(t *testing.T) {
	ctx := context.Background()
	if _, err := kvstore.NewClient(ctx, "", kvstore.NewMemoryStorage(), kvstore.WithBrokers("127.0.0.1:1")); err == nil {
		t.Fatal("empty namespace accepted")
	}
	if _, err := kvstore.NewClient(ctx, "ns", nil, kvstore.WithBrokers("127.0.0.1:1")); err == nil {
		t.Fatal("nil storage accepted")
	}
	if _, err := kvstore.NewClient(ctx, "ns", kvstore.NewMemoryStorage()); err == nil {
		t.Fatal("no brokers accepted")
	}
}

// Keys that exist before NewClient are replayed into storage with an OnSet
// hook each; keys of other namespaces are not.
func TestBootstrapReplayFiresOnSetForEveryExistingKey(t *testing.T) {
	srv := sharedServer(t)
	raw := rawClient(t, srv.GRPCAddr)
	ns := namespace(t)
	ctx := context.Background()
	want := map[string]string{}
	for i := 0; i < 300; i++ {
		k, v := fmt.Sprintf("k%03d", i), fmt.Sprintf("v%d", i)
		if _, err := raw.Put(ctx, []byte(ns+"/"+k), []byte(v), nil); err != nil {
			t.Fatal(err)
		}
		want[k] = v
	}
	raw.Put(ctx, []byte(ns+"x/other"), []byte("not mine"), nil)
	h := newHookLog()
	st := kvstore.NewMemoryStorage()
	c := newStore(t, srv.GRPCAddr, ns, st, h.opts()...)
	sets, _ := h.snapshot()
	if len(sets) != len(want) {
		t.Fatalf("bootstrap fired OnSet for %d keys, want %d", len(sets), len(want))
	}
	for k, v := range want {
		if sets[k] != v {
			t.Fatalf("OnSet(%q) got %q, want %q", k, sets[k], v)
		}
		got, err := c.Get(ctx, []byte(k))
		if err != nil || string(got) != v {
			t.Fatalf("Get(%q) after bootstrap = %q, %v; want %q", k, got, err, v)
		}
	}
	n := 0
	for kv, err := range c.Range(ctx, kvstore.KeyConstraint{}, kvstore.QueryOptions{}) {
		if err != nil {
			t.Fatal(err)
		}
		if want[string(kv.Key)] != string(kv.Value) {
			t.Fatalf("Range yielded %q=%q", kv.Key, kv.Value)
		}
		n++
	}
	if n != len(want) {
		t.Fatalf("Range after bootstrap: %d keys, want %d", n, len(want))
	}
}

// Put, Delete and Batch return only once their effect is in this client's
// local reads.
func TestPutDeleteAndBatchAreVisibleToGetWhenTheyReturn(t *testing.T) {
	srv := sharedServer(t)
	c := newStore(t, srv.GRPCAddr, namespace(t), kvstore.NewMemoryStorage())
	ctx := context.Background()
	for i := 0; i < 50; i++ {
		k := []byte(fmt.Sprintf("k%d", i))
		v := []byte(fmt.Sprintf("v%d", i))
		if err := c.Put(ctx, k, v); err != nil {
			t.Fatal(err)
		}
		got, err := c.Get(ctx, k)
		if err != nil || string(got) != string(v) {
			t.Fatalf("Get right after Put(%s) = %q, %v", k, got, err)
		}
		if i%2 == 0 {
			if err := c.Delete(ctx, k); err != nil {
				t.Fatal(err)
			}
			if _, err := c.Get(ctx, k); !errors.Is(err, kvstore.ErrNotFound) {
				t.Fatalf("Get right after Delete(%s): %v, want ErrNotFound", k, err)
			}
		}
	}
	b := c.Batch()
	for i := 0; i < 40; i++ {
		b.Put([]byte(fmt.Sprintf("b%d", i)), []byte("x"))
	}
	b.Delete([]byte("k1")).Put([]byte("b0"), []byte("last wins"))
	// several keys of one shard: one entry, several events at one revision
	raw := c.Raw()
	var same []string
	for i, shard := 0, -1; len(same) < 5; i++ {
		k := fmt.Sprintf("s%d", i)
		if s := raw.ShardForKey(append(c.KeyPrefix(), k...)); shard < 0 || s == shard {
			shard = s
			same = append(same, k)
			b.Put([]byte(k), []byte("same shard"))
		}
	}
	if err := b.Execute(ctx); err != nil {
		t.Fatal(err)
	}
	for i := 1; i < 40; i++ {
		if got, err := c.Get(ctx, []byte(fmt.Sprintf("b%d", i))); err != nil || string(got) != "x" {
			t.Fatalf("Get(b%d) after the batch = %q, %v", i, got, err)
		}
	}
	for _, k := range same {
		if got, err := c.Get(ctx, []byte(k)); err != nil || string(got) != "same shard" {
			t.Fatalf("Get(%s) after the batch = %q, %v", k, got, err)
		}
	}
	if got, _ := c.Get(ctx, []byte("b0")); string(got) != "last wins" {
		t.Fatalf("b0 = %q, want the batch's last op on it", got)
	}
	if _, err := c.Get(ctx, []byte("k1")); !errors.Is(err, kvstore.ErrNotFound) {
		t.Fatalf("k1 after the batch's delete: %v", err)
	}
	// deleting a key that does not exist returns and it stays absent
	if err := c.Delete(ctx, []byte("never")); err != nil {
		t.Fatal(err)
	}
}

// Writes by another client (here: the raw SDK) reach this client's storage
// and fire its hooks, deletes and TTL expiries included.
func TestHooksFireForUpdatesMadeByAnotherClient(t *testing.T) {
	srv := sharedServer(t)
	raw := rawClient(t, srv.GRPCAddr)
	ns := namespace(t)
	h := newHookLog()
	c := newStore(t, srv.GRPCAddr, ns, kvstore.NewMemoryStorage(), h.opts()...)
	other := newStore(t, srv.GRPCAddr, ns, kvstore.NewMemoryStorage())
	ctx := context.Background()
	if err := other.Put(ctx, []byte("a"), []byte("1")); err != nil {
		t.Fatal(err)
	}
	ttl := uint64(300)
	if _, err := raw.Put(ctx, []byte(ns+"/short"), []byte("lived"), &norikv.PutOptions{TTLMs: &ttl}); err != nil {
		t.Fatal(err)
	}
	if err := other.Put(ctx, []byte("b"), []byte("2")); err != nil {
		t.Fatal(err)
	}
	if err := other.Delete(ctx, []byte("a")); err != nil {
		t.Fatal(err)
	}
	eventually(t, "hooks for b=2, a deleted and short expired", func() bool {
		sets, dels := h.snapshot()
		return sets["b"] == "2" && slices.Contains(dels, "a") && slices.Contains(dels, "short") && sets["a"] == "" && sets["short"] == ""
	})
	if got, err := c.Get(ctx, []byte("b")); err != nil || string(got) != "2" {
		t.Fatalf("Get(b) = %q, %v", got, err)
	}
	for _, k := range []string{"a", "short"} {
		if _, err := c.Get(ctx, []byte(k)); !errors.Is(err, kvstore.ErrNotFound) {
			t.Fatalf("Get(%s) = %v, want ErrNotFound", k, err)
		}
	}
}

// After Close every call returns ErrClientClosed.
func TestCloseMakesEveryCallReturnErrClientClosed(t *testing.T) {
	srv := sharedServer(t)
	c := newStore(t, srv.GRPCAddr, namespace(t), kvstore.NewMemoryStorage())
	ctx := context.Background()
	if err := c.Put(ctx, []byte("k"), []byte("v")); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	rc := kvstore.NewResourceClient[string](c, &kvstore.JSONSerde[string]{})
	checks := map[string]error{
		"Put":           c.Put(ctx, []byte("k"), []byte("v")),
		"Delete":        c.Delete(ctx, []byte("k")),
		"Batch.Execute": c.Batch().Put([]byte("x"), []byte("y")).Execute(ctx),
		"typed Put":     rc.Put(ctx, []byte("k"), "v"),
		"typed Batch":   rc.Batch().Delete([]byte("k")).Execute(ctx),
	}
	_, checks["Get"] = c.Get(ctx, []byte("k"))
	_, checks["typed Get"] = rc.Get(ctx, []byte("k"))
	for _, err := range c.Range(ctx, kvstore.KeyConstraint{}, kvstore.QueryOptions{}) {
		checks["Range"] = err
		break
	}
	for _, err := range rc.Range(ctx, kvstore.KeyConstraint{}, kvstore.QueryOptions{}) {
		checks["typed Range"] = err
		break
	}
	for name, err := range checks {
		if !errors.Is(err, kvstore.ErrClientClosed) {
			t.Errorf("%s after Close: %v, want ErrClientClosed", name, err)
		}
	}
}

// A typed Range stops at the first value that does not deserialize (one
// written by someone else in the namespace).
func TestTypedRangeStopsOnFirstDeserializationErrorFromTheCluster(t *testing.T) {
	srv := sharedServer(t)
	raw := rawClient(t, srv.GRPCAddr)
	ns := namespace(t)
	ctx := context.Background()
	raw.Put(ctx, []byte(ns+"/a"), []byte(`"fine"`), nil)
	raw.Put(ctx, []byte(ns+"/b"), []byte(`{corrupt`), nil)
	raw.Put(ctx, []byte(ns+"/c"), []byte(`"also fine"`), nil)
	rc := kvstore.NewResourceClient[string](newStore(t, srv.GRPCAddr, ns, kvstore.NewMemoryStorage()), &kvstore.JSONSerde[string]{})
	var keys []string
	var errs []error
	for kv, err := range rc.Range(ctx, kvstore.Prefix(""), kvstore.QueryOptions{}) {
		if err != nil {
			errs = append(errs, err)
			continue
		}
		keys = append(keys, string(kv.Key)+"="+kv.Value)
	}
	if !slices.Equal(keys, []string{"a=fine"}) || len(errs) != 1 {
		t.Fatalf("typed Range yielded %v and errors %v; want [a=fine] and one error", keys, errs)
	}
}

// ResourceClient with the Proto serde: typed puts, gets, batches and typed
// hooks (WrapOnSet) round-trip messages.
func TestResourceClientWithProtoSerdeRoundTrips(t *testing.T) {
	srv := sharedServer(t)
	serde, err := kvstore.Proto(func() *pb.Version { return &pb.Version{} })
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	seen := map[string]uint64{}
	c := newStore(t, srv.GRPCAddr, namespace(t), kvstore.NewMemoryStorage(),
		kvstore.WithOnSetHook(kvstore.WrapOnSet(serde, func(k []byte, v *pb.Version) {
			mu.Lock()
			seen[string(k)] = v.GetIndex()
			mu.Unlock()
		})))
	rc := kvstore.NewResourceClient(c, serde)
	ctx := context.Background()
	if err := rc.Put(ctx, []byte("one"), &pb.Version{Term: 1, Index: 11}); err != nil {
		t.Fatal(err)
	}
	if err := rc.Batch().Put([]byte("two"), &pb.Version{Term: 2, Index: 22}).Put([]byte("three"), &pb.Version{Index: 33}).Execute(ctx); err != nil {
		t.Fatal(err)
	}
	got, err := rc.Get(ctx, []byte("two"))
	if err != nil || !proto.Equal(got, &pb.Version{Term: 2, Index: 22}) {
		t.Fatalf("typed Get(two) = %v, %v", got, err)
	}
	var all []string
	for kv, err := range rc.Range(ctx, kvstore.KeyConstraint{}, kvstore.QueryOptions{}) {
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, fmt.Sprintf("%s:%d", kv.Key, kv.Value.GetIndex()))
	}
	if !slices.Equal(all, []string{"one:11", "three:33", "two:22"}) {
		t.Fatalf("typed Range = %v", all)
	}
	mu.Lock()
	defer mu.Unlock()
	if seen["one"] != 11 || seen["two"] != 22 || seen["three"] != 33 {
		t.Fatalf("typed hook saw %v", seen)
	}
}

// A kvstore client over a bbolt file that was closed while the namespace
// changed: the next NewClient removes the keys deleted meanwhile (OnDelete
// hooks) and takes the new values.
func TestBoltStorageClientCatchesUpWithChangesMadeWhileClosed(t *testing.T) {
	srv := sharedServer(t)
	raw := rawClient(t, srv.GRPCAddr)
	ns := namespace(t)
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "kv.db")
	st, err := kvstore.OpenBoltStorage(path, "")
	if err != nil {
		t.Fatal(err)
	}
	c := newStore(t, srv.GRPCAddr, ns, st)
	for _, k := range []string{"keep", "drop", "change"} {
		if err := c.Put(ctx, []byte(k), []byte("old")); err != nil {
			t.Fatal(err)
		}
	}
	c.Close()
	st.Close()
	raw.Delete(ctx, []byte(ns+"/drop"), nil)
	raw.Put(ctx, []byte(ns+"/change"), []byte("new"), nil)
	st, err = kvstore.OpenBoltStorage(path, "")
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	h := newHookLog()
	c = newStore(t, srv.GRPCAddr, ns, st, h.opts()...)
	_, dels := h.snapshot()
	if !slices.Equal(dels, []string{"drop"}) {
		t.Fatalf("OnDelete on the second bootstrap: %v, want [drop]", dels)
	}
	if v, _ := c.Get(ctx, []byte("change")); string(v) != "new" {
		t.Fatalf("change = %q, want new", v)
	}
	if v, _ := c.Get(ctx, []byte("keep")); string(v) != "old" {
		t.Fatalf("keep = %q, want old", v)
	}
	c.Close()
}

// The only node is killed and restarted while another client writes: the
// kvstore client's watch resumes and its storage ends equal to the
// cluster's namespace, with a hook for every change.
func TestServerRestartMidWatchLosesNothing(t *testing.T) {
	if _, err := ephemeral.FindBinary(); err != nil {
		t.Skipf("no norikv-server binary to test against: %v", err)
	}
	rpc, err := ephemeral.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	opts := &ephemeral.Options{
		NotEphemeral: true,
		ReadyAddr:    rpc,
		Args: []string{"--rpc-addr=" + rpc, "--http-addr=127.0.0.1:0", "--peer-addr=127.0.0.1:0",
			"--data-dir=" + filepath.Join(t.TempDir(), "data")},
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
	ns := "restart"
	var puts atomic.Int64
	c := newStore(t, rpc, ns, kvstore.NewMemoryStorage(), kvstore.WithOnSetHook(func(k, v []byte) { puts.Add(1) }))
	raw := rawClient(t, rpc)
	ctx := context.Background()
	want := map[string]string{}
	write := func(from, to int) {
		for i := from; i < to; i++ {
			k, v := fmt.Sprintf("k%d", i%70), fmt.Sprintf("v%d", i)
			if _, err := raw.Put(ctx, []byte(ns+"/"+k), []byte(v), nil); err != nil {
				t.Fatalf("put %d: %v", i, err)
			}
			want[k] = v
		}
	}
	write(0, 100)
	srv.Kill()
	srv = start()
	write(100, 200)
	eventually(t, "local storage equal to the 200 writes", func() bool {
		for k, v := range want {
			if got, err := c.Get(ctx, []byte(k)); err != nil || string(got) != v {
				return false
			}
		}
		return true
	})
	if n := puts.Load(); n != 200 {
		t.Fatalf("OnSet fired %d times for 200 puts (each must be seen exactly once)", n)
	}
	// and it still reads its own writes
	if err := c.Put(ctx, []byte("mine"), []byte("yes")); err != nil {
		t.Fatal(err)
	}
	if v, err := c.Get(ctx, []byte("mine")); err != nil || string(v) != "yes" {
		t.Fatalf("Get(mine) after restart = %q, %v", v, err)
	}
}

// syncBuffer is a log sink safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  []byte
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.b = append(s.b, p...)
	return len(p), nil
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return string(s.b)
}

// A client whose hook stalls while 20000 changes go by is cut off by the
// server as too slow; by the time it resumes, its shard's feed (16 records
// kept) no longer reaches back to its position (compacted). It scans again,
// follows a new watch, and ends equal to the cluster.
func TestClientThatFellBehindTheFeedRetentionScansAgainAndCatchesUp(t *testing.T) {
	if _, err := ephemeral.FindBinary(); err != nil {
		t.Skipf("no norikv-server binary to test against: %v", err)
	}
	t.Setenv("NORIKV_WATCH_SLOW_MS", "300") // the server's cut-off for a stalled watcher
	ctx := context.Background()
	sctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	srv, err := ephemeral.Start(sctx, &ephemeral.Options{Args: []string{"--watch-retention-entries=16"}})
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop()
	release := make(chan struct{})
	var logs syncBuffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	ns := "behind"
	c := newStore(t, srv.GRPCAddr, ns, kvstore.NewMemoryStorage(),
		kvstore.WithLogger(logger),
		kvstore.WithOnSetHook(func(k, v []byte) { <-release }))
	raw := rawClient(t, srv.GRPCAddr)
	var keys []string
	for i, shard := 0, -1; len(keys) < 100; i++ {
		k := fmt.Sprintf("k%d", i)
		if s := raw.ShardForKey([]byte(ns + "/" + k)); shard < 0 || s == shard {
			shard = s
			keys = append(keys, k)
		}
	}
	val := func(round int) []byte { return []byte(fmt.Sprintf("%04d-%0500d", round, 0)) }
	const rounds = 200
	for r := 0; r < rounds; r++ {
		var ops []norikv.BatchOp
		for _, k := range keys {
			ops = append(ops, norikv.BatchOp{Key: []byte(ns + "/" + k), Value: val(r)})
		}
		if _, err := raw.Batch(ctx, ops, nil); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(time.Second) // past the server's slow-watcher cut-off
	close(release)
	eventually(t, "local storage holds the last round of every key", func() bool {
		for _, k := range keys {
			if v, err := c.Get(ctx, []byte(k)); err != nil || string(v) != string(val(rounds-1)) {
				return false
			}
		}
		return true
	})
	if !strings.Contains(logs.String(), "scanning again") {
		t.Fatalf("the client never had to scan again (the test's premise: a compacted resume); log:\n%s", logs.String())
	}
	// and it still reads its own writes on the new watch
	if err := c.Put(ctx, []byte(keys[0]), []byte("mine")); err != nil {
		t.Fatal(err)
	}
	if v, _ := c.Get(ctx, []byte(keys[0])); string(v) != "mine" {
		t.Fatalf("Get after the re-scan = %q, want mine", v)
	}
}

// NewClient gives up when its context ends (here: before it starts).
func TestNewClientHonoursItsContext(t *testing.T) {
	srv := sharedServer(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	c, err := kvstore.NewClient(ctx, namespace(t), kvstore.NewMemoryStorage(), kvstore.WithBrokers(srv.GRPCAddr))
	if err == nil {
		c.Close()
		t.Fatal("NewClient with a cancelled context succeeded")
	}
}
