package norikv_test

// Range and Batch against real norikv-server processes (docs/range.md,
// docs/batch.md).

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	norikv "github.com/norikv/norikv-go"
	"github.com/norikv/norikv-go/hash"
	pb "github.com/norikv/norikv-go/proto"
	"github.com/norikv/norikv-go/testing/ephemeral"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

type modelVal struct {
	value   string
	version *norikv.Version
}

// collect runs a Range and returns its entries, failing the test on an error
// or on keys out of strict ascending order.
func collect(t *testing.T, c *norikv.Client, o *norikv.RangeOptions) []*norikv.KV {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var out []*norikv.KV
	for kv, err := range c.Range(ctx, o) {
		if err != nil {
			t.Fatalf("Range(%+v) after %d entries: %v", o, len(out), err)
		}
		if n := len(out); n > 0 && bytes.Compare(out[n-1].Key, kv.Key) >= 0 {
			t.Fatalf("Range returned %q after %q: not strictly ascending", kv.Key, out[n-1].Key)
		}
		out = append(out, kv)
	}
	return out
}

// checkAgainstModel compares a scan of the model's keys (selected by sel)
// with the model: same keys in order, same values and versions.
func checkAgainstModel(t *testing.T, what string, got []*norikv.KV, model map[string]modelVal, sel func(string) bool, keysOnly bool) {
	t.Helper()
	var want []string
	for k := range model {
		if sel(k) {
			want = append(want, k)
		}
	}
	sort.Strings(want)
	if len(got) != len(want) {
		gk := make([]string, 0, len(got))
		for _, kv := range got {
			gk = append(gk, string(kv.Key))
		}
		t.Fatalf("%s: %d entries, want %d\n got: %v\nwant: %v", what, len(got), len(want), gk, want)
	}
	for i, kv := range got {
		m := model[want[i]]
		if string(kv.Key) != want[i] {
			t.Fatalf("%s: entry %d is %q, want %q", what, i, kv.Key, want[i])
		}
		if !kv.Version.Equal(m.version) {
			t.Fatalf("%s: %q has version %v, want %v", what, kv.Key, kv.Version, m.version)
		}
		if keysOnly && len(kv.Value) != 0 {
			t.Fatalf("%s: keys-only entry %q carries a value", what, kv.Key)
		}
		if !keysOnly && string(kv.Value) != m.value {
			t.Fatalf("%s: %q = %q, want %q", what, kv.Key, kv.Value, m.value)
		}
	}
}

// The model test: keys on all shards written, overwritten, deleted and
// given TTLs (some long expired before the scan, some far in the future);
// scans with small pages, bounds, prefixes, keys-only and limits, all while
// other writers churn keys of the same range, must return exactly the
// model's stable keys in order (and churned keys only with a value that was
// written to them).
func TestRangeMatchesSortedModelAcrossShardsUnderConcurrentWritesTTLsAndPaging(t *testing.T) {
	srv := sharedServer(t)
	c := newTestClient(t, srv.GRPCAddr)
	ctx := context.Background()
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewSource(seed))
	base := string(key(t, ""))
	model := map[string]modelVal{}
	shards := map[int]bool{}
	short := uint64(1)
	long := uint64(3600_000)
	for i := 0; i < 600; i++ {
		k := fmt.Sprintf("%ss/%04d", base, rng.Intn(400))
		shards[hash.GetShardForKey([]byte(k), 1024)] = true
		switch op := rng.Intn(10); {
		case op < 6:
			v := fmt.Sprintf("v%d", i)
			ver, err := c.Put(ctx, []byte(k), []byte(v), nil)
			if err != nil {
				t.Fatal(err)
			}
			model[k] = modelVal{v, ver}
		case op < 7:
			v := fmt.Sprintf("long%d", i)
			ver, err := c.Put(ctx, []byte(k), []byte(v), &norikv.PutOptions{TTLMs: &long})
			if err != nil {
				t.Fatal(err)
			}
			model[k] = modelVal{v, ver}
		case op < 8:
			if _, err := c.Put(ctx, []byte(k), []byte("short"), &norikv.PutOptions{TTLMs: &short}); err != nil {
				t.Fatal(err)
			}
			delete(model, k) // expired by the time anything scans
		default:
			if err := c.Delete(ctx, []byte(k), nil); err != nil {
				t.Fatal(err)
			}
			delete(model, k)
		}
	}
	if len(shards) < 200 {
		t.Fatalf("the keys touched only %d shards; the test wants them spread", len(shards))
	}
	time.Sleep(20 * time.Millisecond) // let the 1 ms TTLs pass

	// churn: keys of the same range ("c/") written and deleted meanwhile
	var stop atomic.Bool
	var written sync.Map // key -> map of values ever written
	var wg sync.WaitGroup
	for w := 0; w < 2; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			r := rand.New(rand.NewSource(seed + int64(w)))
			for i := 0; !stop.Load(); i++ {
				k := fmt.Sprintf("%sc/%03d", base, r.Intn(100))
				v := fmt.Sprintf("w%d-%d", w, i)
				vals, _ := written.LoadOrStore(k, &sync.Map{})
				vals.(*sync.Map).Store(v, true)
				if r.Intn(4) == 0 {
					c.Delete(ctx, []byte(k), nil)
				} else {
					c.Put(ctx, []byte(k), []byte(v), nil)
				}
			}
		}(w)
	}
	defer func() { stop.Store(true); wg.Wait() }()

	stable := func(k string) bool { return strings.HasPrefix(k, base+"s/") }
	for _, page := range []uint32{0, 1, 7, 50} {
		got := collect(t, c, &norikv.RangeOptions{Prefix: []byte(base), PageSize: page})
		var st []*norikv.KV
		for _, kv := range got {
			k := string(kv.Key)
			if stable(k) {
				st = append(st, kv)
				continue
			}
			vals, ok := written.Load(k)
			if !ok {
				t.Fatalf("page size %d: key %q was never written", page, k)
			}
			if _, ok := vals.(*sync.Map).Load(string(kv.Value)); !ok {
				t.Fatalf("page size %d: churned key %q has value %q that was never written to it", page, k, kv.Value)
			}
		}
		checkAgainstModel(t, fmt.Sprintf("prefix scan, page size %d", page), st, model, stable, false)
	}
	// [start, end) bounds, keys-only, and each consistency level
	lo, hi := base+"s/0100", base+"s/0300"
	inBounds := func(k string) bool { return stable(k) && k >= lo && k < hi }
	for _, cons := range []norikv.ConsistencyLevel{"", norikv.ConsistencyLinearizable, norikv.ConsistencyStaleOK} {
		got := collect(t, c, &norikv.RangeOptions{Start: []byte(lo), End: []byte(hi), PageSize: 9, KeysOnly: true, Consistency: cons})
		checkAgainstModel(t, fmt.Sprintf("bounded keys-only scan at %q", cons), got, model, inBounds, true)
	}
	// a limit stops after that many entries, the first ones in order
	got := collect(t, c, &norikv.RangeOptions{Prefix: []byte(base + "s/"), PageSize: 3, Limit: 10})
	full := collect(t, c, &norikv.RangeOptions{Prefix: []byte(base + "s/")})
	if len(got) != 10 || len(full) < 10 {
		t.Fatalf("Limit 10 returned %d entries (the range holds %d)", len(got), len(full))
	}
	for i := range got {
		if !bytes.Equal(got[i].Key, full[i].Key) {
			t.Fatalf("limited scan entry %d is %q, want %q", i, got[i].Key, full[i].Key)
		}
	}
}

// A TTL that passes between two pages: the key is not returned by a page
// read after its expiry (expiry judged by the reader's clock, as Get does).
func TestRangeNeverReturnsAKeyAfterItsTTL(t *testing.T) {
	c := newTestClient(t, sharedServer(t).GRPCAddr)
	ctx := context.Background()
	base := string(key(t, ""))
	ttl := uint64(400)
	for i := 0; i < 20; i++ {
		if _, err := c.Put(ctx, []byte(fmt.Sprintf("%s%02d", base, i)), []byte("x"), &norikv.PutOptions{TTLMs: &ttl}); err != nil {
			t.Fatal(err)
		}
	}
	if got := collect(t, c, &norikv.RangeOptions{Prefix: []byte(base)}); len(got) != 20 {
		t.Fatalf("before the TTL: %d keys, want 20", len(got))
	}
	time.Sleep(600 * time.Millisecond)
	if got := collect(t, c, &norikv.RangeOptions{Prefix: []byte(base)}); len(got) != 0 {
		t.Fatalf("after the TTL: %d keys still returned (first %q)", len(got), got[0].Key)
	}
}

// The server's answers to malformed range requests name the problem.
func TestRangeRejectsBadRequestsNamingTheField(t *testing.T) {
	srv := sharedServer(t)
	conn, err := grpc.NewClient(srv.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	kv := pb.NewKvClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cases := []struct {
		req  *pb.RangeRequest
		want string
	}{
		{&pb.RangeRequest{Limit: 10001}, "limit 10001"},
		{&pb.RangeRequest{Consistency: "sometimes"}, "unknown consistency"},
		{&pb.RangeRequest{Shards: []uint32{1024}}, "shard 1024 does not exist"},
		{&pb.RangeRequest{Shards: []uint32{3, 3}}, "shard 3 is requested twice"},
		{&pb.RangeRequest{Continuation: []byte{9, 1, 'a'}}, "continuation token"},
		{&pb.RangeRequest{Continuation: []byte{1, 5, 'a'}}, "continuation token is malformed"},
		{&pb.RangeRequest{Prefix: bytes.Repeat([]byte("p"), 1025)}, "prefix is 1025 bytes"},
		{&pb.RangeRequest{MaxBytes: 4 << 20}, "max_bytes"},
	}
	for _, tc := range cases {
		_, err := kv.Range(ctx, tc.req)
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), tc.want) {
			t.Errorf("Range(%v) = %v, want INVALID_ARGUMENT containing %q", tc.req, err, tc.want)
		}
	}
	// a page bounded by limit carries a token that resumes after its last key
	c := newTestClient(t, srv.GRPCAddr)
	base := string(key(t, ""))
	for i := 0; i < 5; i++ {
		c.Put(ctx, []byte(fmt.Sprintf("%s%d", base, i)), []byte("v"), nil)
	}
	r1, err := kv.Range(ctx, &pb.RangeRequest{Prefix: []byte(base), Limit: 2})
	if err != nil || len(r1.Entries) != 2 || len(r1.Continuation) == 0 || len(r1.Shards) != 1024 || len(r1.Revisions) != 1024 {
		t.Fatalf("first page: %v err %v", r1, err)
	}
	r2, err := kv.Range(ctx, &pb.RangeRequest{Prefix: []byte(base), Limit: 10, Continuation: r1.Continuation})
	if err != nil || len(r2.Entries) != 3 || string(r2.Entries[0].Key) != base+"2" || len(r2.Continuation) != 0 {
		t.Fatalf("second page: %v err %v", r2, err)
	}
}

// keysOnShard returns n distinct keys (with the prefix) on one shard.
func keysOnShard(prefix string, n int) []string {
	var out []string
	target := -1
	for i := 0; len(out) < n; i++ {
		k := fmt.Sprintf("%s%d", prefix, i)
		s := hash.GetShardForKey([]byte(k), 1024)
		if target < 0 {
			target = s
		}
		if s == target {
			out = append(out, k)
		}
	}
	return out
}

// CAS inside a batch: one failed condition applies nothing, and the result
// says which op failed; when every condition holds, every op applies with
// the one version of the batch's entry.
func TestBatchCASFailureAppliesNothingAndNamesTheOp(t *testing.T) {
	c := newTestClient(t, sharedServer(t).GRPCAddr)
	ctx := context.Background()
	ks := keysOnShard(string(key(t, "")), 4)
	v0, err := c.Put(ctx, []byte(ks[0]), []byte("orig"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Put(ctx, []byte(ks[3]), []byte("doomed"), nil); err != nil {
		t.Fatal(err)
	}
	stale := &norikv.Version{Term: v0.Term, Index: v0.Index + 1000}
	res, err := c.Batch(ctx, []norikv.BatchOp{
		{Key: []byte(ks[0]), Value: []byte("new"), IfMatchVersion: stale},
		{Key: []byte(ks[1]), Value: []byte("b")},
		{Key: []byte(ks[2]), Value: []byte("c"), IfNotExists: true},
		{Key: []byte(ks[3]), Delete: true},
	}, nil)
	if !errors.Is(err, norikv.ErrVersionMismatch) || res == nil || res.Applied {
		t.Fatalf("batch with a stale if_match: %+v, %v; want not applied and ErrVersionMismatch", res, err)
	}
	if res.Results[0].Code != codes.FailedPrecondition || !res.Results[0].Current.Equal(v0) {
		t.Fatalf("op 0 result %+v, want FAILED_PRECONDITION with current %v", res.Results[0], v0)
	}
	for i := 1; i < 4; i++ {
		if res.Results[i].Code != codes.Aborted {
			t.Fatalf("op %d result %+v, want ABORTED", i, res.Results[i])
		}
	}
	if r, err := c.Get(ctx, []byte(ks[0]), nil); err != nil || string(r.Value) != "orig" {
		t.Fatalf("op 0's key after the failed batch: %v %v", r, err)
	}
	if _, err := c.Get(ctx, []byte(ks[1]), nil); !errors.Is(err, norikv.ErrKeyNotFound) {
		t.Fatalf("op 1's key was written by a failed batch: %v", err)
	}
	if _, err := c.Get(ctx, []byte(ks[3]), nil); err != nil {
		t.Fatalf("op 3's key was deleted by a failed batch: %v", err)
	}
	// an if_not_exists conflict fails the same way
	res, err = c.Batch(ctx, []norikv.BatchOp{{Key: []byte(ks[0]), Value: []byte("x"), IfNotExists: true}, {Key: []byte(ks[1]), Value: []byte("b")}}, nil)
	if !errors.Is(err, norikv.ErrAlreadyExists) || res.Applied || res.Results[0].Code != codes.AlreadyExists {
		t.Fatalf("if_not_exists conflict: %+v %v", res, err)
	}
	// all conditions hold: everything applies at one version
	res, err = c.Batch(ctx, []norikv.BatchOp{
		{Key: []byte(ks[0]), Value: []byte("new"), IfMatchVersion: v0},
		{Key: []byte(ks[1]), Value: []byte("b")},
		{Key: []byte(ks[2]), Value: []byte("c"), IfNotExists: true},
		{Key: []byte(ks[3]), Delete: true},
	}, nil)
	if err != nil || !res.Applied || !res.Results[3].Tombstoned {
		t.Fatalf("batch with conditions that hold: %+v %v", res, err)
	}
	for i, want := range []string{"new", "b", "c"} {
		r, err := c.Get(ctx, []byte(ks[i]), nil)
		if err != nil || string(r.Value) != want || !r.Version.Equal(res.Version) {
			t.Fatalf("key %d after the batch: %v %v, want %q at %v", i, r, err, want, res.Version)
		}
	}
	if _, err := c.Get(ctx, []byte(ks[3]), nil); !errors.Is(err, norikv.ErrKeyNotFound) {
		t.Fatalf("op 3's delete did not apply: %v", err)
	}
}

// A retry with the batch's idempotency key returns the first result and
// executes nothing again; the key with other ops is INVALID_ARGUMENT.
func TestBatchRetryWithIdempotencyKeyReturnsTheFirstResult(t *testing.T) {
	c := newTestClient(t, sharedServer(t).GRPCAddr)
	ctx := context.Background()
	ks := keysOnShard(string(key(t, "")), 2)
	idem := &norikv.BatchOptions{IdempotencyKey: string(key(t, "idem"))}
	ops := []norikv.BatchOp{{Key: []byte(ks[0]), Value: []byte("1"), IfNotExists: true}, {Key: []byte(ks[1]), Value: []byte("2")}}
	r1, err := c.Batch(ctx, ops, idem)
	if err != nil || !r1.Applied {
		t.Fatalf("first batch: %+v %v", r1, err)
	}
	// overwrite one key: a re-execution would now fail its if_not_exists
	if _, err := c.Put(ctx, []byte(ks[1]), []byte("later"), nil); err != nil {
		t.Fatal(err)
	}
	r2, err := c.Batch(ctx, ops, idem)
	if err != nil || !r2.Applied || !r2.Version.Equal(r1.Version) {
		t.Fatalf("retry: %+v %v, want the first result %+v", r2, err, r1)
	}
	if r, _ := c.Get(ctx, []byte(ks[1]), nil); string(r.Value) != "later" {
		t.Fatalf("the retry executed again: %q", r.Value)
	}
	ops[1].Value = []byte("other")
	if _, err := c.Batch(ctx, ops, idem); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("same key, other ops: %v, want INVALID_ARGUMENT", err)
	}
}

// The server refuses a batch over several shards naming them, and checks
// limits before queueing anything.
func TestBatchAcrossShardsIsFailedPreconditionNamingTheShards(t *testing.T) {
	srv := sharedServer(t)
	conn, err := grpc.NewClient(srv.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	kv := pb.NewKvClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	a, b := []byte("hello"), []byte("world")
	sa, sb := hash.GetShardForKey(a, 1024), hash.GetShardForKey(b, 1024)
	if sa == sb {
		t.Fatal("test keys share a shard")
	}
	_, err = kv.Batch(ctx, &pb.BatchRequest{Ops: []*pb.BatchOp{{Key: a, Value: []byte("1")}, {Key: b, Value: []byte("2")}}})
	msg := status.Convert(err).Message()
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(msg, fmt.Sprint(sa)) || !strings.Contains(msg, fmt.Sprint(sb)) {
		t.Fatalf("cross-shard batch: %v, want FAILED_PRECONDITION naming shards %d and %d", err, sa, sb)
	}
	for _, tc := range []struct {
		req  *pb.BatchRequest
		want string
	}{
		{&pb.BatchRequest{}, "no operations"},
		{&pb.BatchRequest{Ops: []*pb.BatchOp{{Key: a}, {Key: a, Delete: true}}}, "same key"},
		{&pb.BatchRequest{Ops: []*pb.BatchOp{{Key: nil}}}, "key is empty"},
		{&pb.BatchRequest{Ops: []*pb.BatchOp{{Key: a, Delete: true, Value: []byte("v")}}}, "put-only"},
		{&pb.BatchRequest{Ops: make([]*pb.BatchOp, 1001)}, "limit is 1000"},
	} {
		for i := range tc.req.Ops {
			if tc.req.Ops[i] == nil {
				tc.req.Ops[i] = &pb.BatchOp{Key: []byte(fmt.Sprint(i))}
			}
		}
		_, err := kv.Batch(ctx, tc.req)
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), tc.want) {
			t.Errorf("Batch(%d ops) = %v, want INVALID_ARGUMENT containing %q", len(tc.req.Ops), err, tc.want)
		}
	}
}

// Batches in flight when the server is SIGKILLed: after the restart every
// batch is either wholly there or wholly absent (each batch writes the same
// round number to every key of its group), and every acknowledged batch is
// there (its group holds that round or a later one).
func TestBatchIsNeverHalfAppliedAfterSIGKILL(t *testing.T) {
	if _, err := ephemeral.FindBinary(); err != nil {
		t.Skipf("no norikv-server binary to test against: %v", err)
	}
	rpc, err := ephemeral.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	opts := &ephemeral.Options{NotEphemeral: true, ReadyAddr: rpc,
		Args: []string{"--rpc-addr=" + rpc, "--http-addr=127.0.0.1:0", "--peer-addr=127.0.0.1:0", "--data-dir=" + filepath.Join(dir, "data")}}
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
	const groups = 8
	groupKeys := make([][]string, groups)
	for g := range groupKeys {
		groupKeys[g] = keysOnShard(fmt.Sprintf("sigkill/g%d/", g), 20)
	}
	acked := make([]atomic.Int64, groups)
	var wg sync.WaitGroup
	var stop atomic.Bool
	for g := 0; g < groups; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for round := int64(1); !stop.Load(); round++ {
				ops := make([]norikv.BatchOp, len(groupKeys[g]))
				for i, k := range groupKeys[g] {
					ops[i] = norikv.BatchOp{Key: []byte(k), Value: []byte(fmt.Sprintf("%08d", round))}
				}
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				res, err := c.Batch(ctx, ops, nil)
				cancel()
				if err == nil && res.Applied {
					acked[g].Store(round)
				} else {
					return // the server is gone
				}
			}
		}(g)
	}
	time.Sleep(700 * time.Millisecond)
	srv.Kill()
	stop.Store(true)
	wg.Wait()
	var before [groups]int64
	total := int64(0)
	for g := range before {
		before[g] = acked[g].Load()
		total += before[g]
	}
	if total == 0 {
		t.Fatal("no batch was acknowledged before the kill")
	}
	srv = start()
	for g := 0; g < groups; g++ {
		got := collect(t, c, &norikv.RangeOptions{Prefix: []byte(fmt.Sprintf("sigkill/g%d/", g)), Consistency: norikv.ConsistencyLinearizable})
		if len(got) != len(groupKeys[g]) {
			t.Fatalf("group %d: %d of %d keys after the restart (acked round %d)", g, len(got), len(groupKeys[g]), before[g])
		}
		round := string(got[0].Value)
		for _, kv := range got {
			if string(kv.Value) != round || !kv.Version.Equal(got[0].Version) {
				t.Fatalf("group %d is half-applied: %q=%q@%v but %q=%q@%v", g, got[0].Key, round, got[0].Version, kv.Key, kv.Value, kv.Version)
			}
		}
		if want := fmt.Sprintf("%08d", before[g]); round < want {
			t.Fatalf("group %d holds round %s after the restart, but round %s was acknowledged", g, round, want)
		}
	}
	t.Logf("acknowledged batches before the kill: %d", total)
}

// Three real nodes: a range fans out to every node that leads shards and
// merges their streams into one ordered result equal to the model, at each
// consistency level, with small pages.
func TestClusterRangeMergesEveryNodesShardsInKeyOrder(t *testing.T) {
	nodes := startCluster(t, 3)
	c := newTestClient(t, nodes[0].rpc, nodes[1].rpc, nodes[2].rpc)
	v := waitForFullView(t, c, 3, 60*time.Second)
	leaders := map[string]bool{}
	for _, s := range v.Shards {
		for _, r := range s.Replicas {
			if r.Leader {
				leaders[r.NodeID] = true
			}
		}
	}
	if len(leaders) < 2 {
		t.Fatalf("only %d node leads shards; the test needs the scan to fan out", len(leaders))
	}
	ctx := context.Background()
	base := string(key(t, ""))
	model := map[string]modelVal{}
	for i := 0; i < 300; i++ {
		k := fmt.Sprintf("%s%04d", base, i)
		var ver *norikv.Version
		var err error
		for a := 0; a < 5; a++ {
			if ver, err = c.Put(ctx, []byte(k), []byte(fmt.Sprint(i)), nil); err == nil {
				break
			}
		}
		if err != nil {
			t.Fatal(err)
		}
		model[k] = modelVal{fmt.Sprint(i), ver}
	}
	all := func(string) bool { return true }
	// (stale_ok is left out: a follower may not have applied the last writes yet)
	for _, cons := range []norikv.ConsistencyLevel{"", norikv.ConsistencyLinearizable} {
		got := collect(t, c, &norikv.RangeOptions{Prefix: []byte(base), PageSize: 11, Consistency: cons})
		checkAgainstModel(t, fmt.Sprintf("3-node scan at %q (%d nodes lead shards)", cons, len(leaders)), got, model, all, false)
	}
}
