package norikv_test

// Watch against real norikv-server processes (docs/watch.md): every change
// once, in per-shard order, across resumes.

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	norikv "github.com/norikv/norikv-go"
	"github.com/norikv/norikv-go/testing/ephemeral"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// skipWithoutWatch skips the test when the server answers Kv.Watch with
// UNIMPLEMENTED (a server built before the watch landed).
func skipWithoutWatch(t *testing.T, err error) {
	t.Helper()
	if status.Code(err) == codes.Unimplemented {
		t.Skipf("Kv.Watch not on this server: %v", err)
	}
}

// change is one acknowledged write of a test: its key, kind and version.
type change struct {
	key     string
	del     bool
	value   string
	version *norikv.Version
}

// collectEvents reads w until want events for keys under prefix arrived or
// the timeout passed.
func collectEvents(t *testing.T, w *norikv.Watcher, want int, timeout time.Duration) []*norikv.WatchEvent {
	t.Helper()
	var got []*norikv.WatchEvent
	done := make(chan struct{})
	go func() {
		defer close(done)
		for len(got) < want && w.Next() {
			if w.Event().Kind != norikv.EventProgress {
				got = append(got, w.Event())
			}
		}
	}()
	select {
	case <-done:
	case <-time.After(timeout):
		w.Close()
		<-done
		t.Fatalf("watch delivered %d of %d events in %v (err %v)", len(got), want, timeout, w.Err())
	}
	if len(got) < want {
		t.Fatalf("watch ended after %d of %d events: %v", len(got), want, w.Err())
	}
	return got
}

// checkExactlyOnce compares the events with the acknowledged changes: the
// same set (each change once, no other), and per shard ascending versions.
func checkExactlyOnce(t *testing.T, got []*norikv.WatchEvent, changes []change) {
	t.Helper()
	type id struct {
		key     string
		version norikv.Version
	}
	want := map[id]change{}
	for _, c := range changes {
		want[id{c.key, *c.version}] = c
	}
	seen := map[id]bool{}
	lastPerShard := map[int]*norikv.Version{}
	for _, e := range got {
		k := id{string(e.Key), *e.Version}
		if seen[k] {
			t.Fatalf("event %s %q@%v delivered twice", e.Kind, e.Key, e.Version)
		}
		seen[k] = true
		c, ok := want[k]
		if !ok {
			t.Fatalf("event %s %q@%v matches no acknowledged change", e.Kind, e.Key, e.Version)
		}
		if c.del != (e.Kind == norikv.EventDelete) || (!c.del && string(e.Value) != c.value) {
			t.Fatalf("event %s %q=%q@%v, want del=%v value %q", e.Kind, e.Key, e.Value, e.Version, c.del, c.value)
		}
		// (one batch's events share its revision)
		if l := lastPerShard[e.Shard]; l != nil && e.Version.Index < l.Index {
			t.Fatalf("shard %d: event at %v after %v: not in revision order", e.Shard, e.Version, l)
		}
		lastPerShard[e.Shard] = e.Version
	}
	if len(seen) != len(want) {
		t.Fatalf("watch delivered %d distinct changes, want %d", len(seen), len(want))
	}
}

func TestRangeRevisionsCoverEveryShardAfterTheFirstNext(t *testing.T) {
	c := newTestClient(t, sharedServer(t).GRPCAddr)
	it := c.RangeIter(context.Background(), &norikv.RangeOptions{Prefix: key(t, ""), Limit: 1})
	defer it.Close()
	it.Next()
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	revs := it.Revisions()
	if len(revs) != 1024 {
		t.Fatalf("Revisions has %d shards, want 1024", len(revs))
	}
	k := key(t, "x")
	v, err := c.Put(context.Background(), k, []byte("1"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if r := revs[c.ShardForKey(k)]; r == nil || r.Index >= v.Index {
		t.Fatalf("shard revision %v before a later put at %v", r, v)
	}
}

// writeMix puts and deletes keys prefix+"k0".."k{n-1}" from 4 goroutines
// and returns the acknowledged changes (deletes through a one-op Batch,
// whose result says whether a value was removed: only those are events).
func writeMix(t *testing.T, c *norikv.Client, prefix string, n, perWriter int, tag string) []change {
	t.Helper()
	ctx := context.Background()
	var mu sync.Mutex
	var changes []change
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < perWriter; i++ {
				k := fmt.Sprintf("%sk%d", prefix, (g*perWriter+i)%n)
				var ch change
				if i%5 == 4 {
					res, err := c.Batch(ctx, []norikv.BatchOp{{Key: []byte(k), Delete: true}},
						&norikv.BatchOptions{IdempotencyKey: fmt.Sprintf("%s%s-del-%d-%d", prefix, tag, g, i)})
					if err != nil {
						t.Errorf("delete %q: %v", k, err)
						return
					}
					if !res.Results[0].Tombstoned {
						continue // nothing removed: no event
					}
					ch = change{key: k, del: true, version: res.Version}
				} else {
					val := fmt.Sprintf("%s-g%d-%d", tag, g, i)
					// an idempotency key: a retry after an unknown outcome
					// (a killed leader) cannot apply the put twice
					v, err := c.Put(ctx, []byte(k), []byte(val), &norikv.PutOptions{IdempotencyKey: prefix + val})
					if err != nil {
						t.Errorf("put %q: %v", k, err)
						return
					}
					ch = change{key: k, value: val, version: v}
				}
				mu.Lock()
				changes = append(changes, ch)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return changes
}

// Concurrent puts and deletes on keys over many shards: the watch of their
// prefix delivers each acknowledged change once, per shard in order, and
// nothing else.
func TestWatchDeliversEveryAcknowledgedChangeOnceInShardOrder(t *testing.T) {
	c := newTestClient(t, sharedServer(t).GRPCAddr)
	prefix := string(key(t, ""))
	w, err := c.Watch(context.Background(), &norikv.WatchOptions{Prefix: []byte(prefix)})
	skipWithoutWatch(t, err)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	changes := writeMix(t, c, prefix, 90, 60, "a")
	got := collectEvents(t, w, len(changes), 60*time.Second)
	checkExactlyOnce(t, got, changes)
}

// A watch from a scan's revisions sees exactly the changes after the scan,
// not those before it.
func TestWatchFromRangeRevisionsSeesOnlyLaterChanges(t *testing.T) {
	c := newTestClient(t, sharedServer(t).GRPCAddr)
	ctx := context.Background()
	prefix := string(key(t, ""))
	before := writeMix(t, c, prefix, 40, 20, "before")
	it := c.RangeIter(ctx, &norikv.RangeOptions{Prefix: []byte(prefix)})
	for it.Next() {
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	revs := it.Revisions()
	it.Close()
	later := writeMix(t, c, prefix, 40, 20, "after")
	w, err := c.Watch(ctx, &norikv.WatchOptions{Prefix: []byte(prefix), From: revs})
	skipWithoutWatch(t, err)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	got := collectEvents(t, w, len(later), 60*time.Second)
	checkExactlyOnce(t, got, later)
	_ = before
	// nothing further: a put after the batch is the next event
	k := prefix + "sentinel"
	v, err := c.Put(ctx, []byte(k), []byte("s"), nil)
	if err != nil {
		t.Fatal(err)
	}
	next := collectEvents(t, w, 1, 30*time.Second)
	if string(next[0].Key) != k || !next[0].Version.Equal(v) {
		t.Fatalf("after the later changes the watch delivered %q@%v, want the sentinel %q@%v", next[0].Key, next[0].Version, k, v)
	}
}

// A watch on one key gets that key's changes only.
func TestWatchOfOneKeyDeliversOnlyThatKey(t *testing.T) {
	c := newTestClient(t, sharedServer(t).GRPCAddr)
	ctx := context.Background()
	k := key(t, "one")
	w, err := c.Watch(ctx, &norikv.WatchOptions{Key: k})
	skipWithoutWatch(t, err)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	c.Put(ctx, append(k, 'x'), []byte("other"), nil)
	v, err := c.Put(ctx, k, []byte("mine"), nil)
	if err != nil {
		t.Fatal(err)
	}
	got := collectEvents(t, w, 1, 30*time.Second)
	if string(got[0].Key) != string(k) || string(got[0].Value) != "mine" || !got[0].Version.Equal(v) {
		t.Fatalf("watch of %q delivered %q=%q@%v", k, got[0].Key, got[0].Value, got[0].Version)
	}
}

// The only node is killed (SIGKILL) and restarted mid-watch while writers
// keep going: the watch resumes by itself and delivers every acknowledged
// change exactly once.
func TestWatchResumesAcrossServerKillAndRestartWithoutLossOrDuplicate(t *testing.T) {
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
	prefix := "restart/"
	w, err := c.Watch(context.Background(), &norikv.WatchOptions{Prefix: []byte(prefix)})
	skipWithoutWatch(t, err)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	first := writeMix(t, c, prefix, 50, 40, "one")
	got := collectEvents(t, w, len(first)/2, 60*time.Second)
	srv.Kill()
	srv = start()
	second := writeMix(t, c, prefix, 50, 40, "two")
	all := append(first, second...)
	got = append(got, collectEvents(t, w, len(all)-len(got), 90*time.Second)...)
	checkExactlyOnce(t, got, all)
	if w.Resumes() == 0 {
		t.Fatal("the watch never resumed after the kill (the test's premise)")
	}
}

// A watch that asks for a revision older than the shard keeps ends with a
// *CompactedError matching ErrCompacted, naming the shard and its floor.
func TestWatchBelowTheRetainedFloorFailsWithErrCompacted(t *testing.T) {
	if _, err := ephemeral.FindBinary(); err != nil {
		t.Skipf("no norikv-server binary to test against: %v", err)
	}
	sctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	srv, err := ephemeral.Start(sctx, &ephemeral.Options{Args: []string{"--watch-retention-entries=16"}})
	cancel()
	if err != nil && strings.Contains(err.Error(), "unknown flag --watch-retention-entries") {
		t.Skipf("Kv.Watch not on this server: it has no watch.retention_entries setting (%v)", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop()
	c := newTestClient(t, srv.GRPCAddr)
	ctx := context.Background()
	k := []byte("compact/k")
	first, err := c.Put(ctx, k, []byte("0"), nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i < 200; i++ {
		if _, err := c.Put(ctx, k, []byte(fmt.Sprint(i)), nil); err != nil {
			t.Fatal(err)
		}
	}
	shard := c.ShardForKey(k)
	from := &norikv.Version{Term: first.Term, Index: first.Index - 1}
	w, err := c.Watch(ctx, &norikv.WatchOptions{Key: k, From: map[int]*norikv.Version{shard: from}})
	skipWithoutWatch(t, err)
	if err == nil {
		for w.Next() {
		}
		err = w.Err()
		w.Close()
	}
	var ce *norikv.CompactedError
	if !errors.Is(err, norikv.ErrCompacted) || !errors.As(err, &ce) {
		t.Fatalf("watch from %v after 200 puts with 16 retained: %v, want ErrCompacted", from, err)
	}
	if ce.Shard != shard || ce.Floor == nil || ce.Floor.Index <= from.Index {
		t.Fatalf("compacted error names shard %d floor %v; want shard %d and a floor above %v", ce.Shard, ce.Floor, shard, from)
	}
}

// A reader that does not keep up (a 4-event buffer, not read while 1200
// changes are written) loses nothing: the streams stall (and may be cut off
// by the server as too slow and resumed), then every change comes once.
func TestWatchWithAStalledReaderLosesNothing(t *testing.T) {
	c := newTestClient(t, sharedServer(t).GRPCAddr)
	prefix := string(key(t, ""))
	w, err := c.Watch(context.Background(), &norikv.WatchOptions{Prefix: []byte(prefix), Buffer: 4})
	skipWithoutWatch(t, err)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	changes := writeMix(t, c, prefix, 300, 300, "slow")
	got := collectEvents(t, w, len(changes), 120*time.Second)
	checkExactlyOnce(t, got, changes)
}

// Three nodes; the node leading the most shards is killed (SIGKILL) while
// writers go on: the watch moves each of its shards to the new leader from
// its last revision, and every acknowledged change arrives exactly once.
func TestClusterWatchSurvivesLeaderKillWithoutLossOrDuplicate(t *testing.T) {
	nodes := startCluster(t, 3)
	addrs := []string{nodes[0].rpc, nodes[1].rpc, nodes[2].rpc}
	cfg := norikv.DefaultClientConfig(addrs)
	cfg.Timeout = 30 * time.Second
	ctx := context.Background()
	c, err := norikv.NewClient(ctx, cfg)
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	defer c.Close()
	view := waitForFullView(t, c, 3, 20*time.Second)
	prefix := "cw/"
	w, err := c.Watch(ctx, &norikv.WatchOptions{Prefix: []byte(prefix)})
	skipWithoutWatch(t, err)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	first := writeMix(t, c, prefix, 100, 50, "one")
	got := collectEvents(t, w, len(first)/3, 60*time.Second)
	leads := map[string]int{}
	for _, s := range view.Shards {
		for _, r := range s.Replicas {
			if r.Leader {
				leads[r.NodeID]++
			}
		}
	}
	var victim *clusterNode
	for _, nd := range nodes {
		if victim == nil || leads[victimID(view, nd)] > leads[victimID(view, victim)] {
			victim = nd
		}
	}
	victim.srv.Kill()
	second := writeMix(t, c, prefix, 100, 50, "two")
	all := append(first, second...)
	got = append(got, collectEvents(t, w, len(all)-len(got), 120*time.Second)...)
	checkExactlyOnce(t, got, all)
	if w.Resumes() == 0 {
		t.Fatal("the watch never resumed after the leader's kill (the test's premise)")
	}
}

// keysOnOneShard returns n keys under prefix that hash to one shard.
func keysOnOneShard(c *norikv.Client, prefix string, n int) []string {
	var out []string
	shard := -1
	for i := 0; len(out) < n; i++ {
		k := fmt.Sprintf("%sm%d", prefix, i)
		s := c.ShardForKey([]byte(k))
		if shard < 0 {
			shard = s
		}
		if s == shard {
			out = append(out, k)
		}
	}
	return out
}

// A batch changes several keys in one entry: their events share its
// revision, and every one of them is delivered (none is taken for a
// duplicate of the first).
func TestWatchDeliversEveryKeyOfAMultiKeyBatch(t *testing.T) {
	c := newTestClient(t, sharedServer(t).GRPCAddr)
	prefix := string(key(t, ""))
	ctx := context.Background()
	w, err := c.Watch(ctx, &norikv.WatchOptions{Prefix: []byte(prefix)})
	skipWithoutWatch(t, err)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	keys := keysOnOneShard(c, prefix, 6)
	var ops []norikv.BatchOp
	for _, k := range keys {
		ops = append(ops, norikv.BatchOp{Key: []byte(k), Value: []byte("v-" + k)})
	}
	res, err := c.Batch(ctx, ops, nil)
	if err != nil {
		t.Fatal(err)
	}
	var changes []change
	for _, k := range keys {
		changes = append(changes, change{key: k, value: "v-" + k, version: res.Version})
	}
	got := collectEvents(t, w, len(keys), 30*time.Second)
	checkExactlyOnce(t, got, changes)
	for i, e := range got {
		if e.EntryEnd != (i == len(got)-1) {
			t.Fatalf("event %d of the batch's %d has EntryEnd %v: only the last one may", i, len(got), e.EntryEnd)
		}
	}
}

// A [start, end) watch with KeysOnly delivers the keys inside the range,
// without values, and nothing of the keys outside: read until every
// shard's position (events and progress marks) has passed every put.
func TestWatchOfARangeKeysOnlyDeliversKeysInsideWithoutValues(t *testing.T) {
	c := newTestClient(t, sharedServer(t).GRPCAddr)
	p := string(key(t, ""))
	ctx := context.Background()
	w, err := c.Watch(ctx, &norikv.WatchOptions{Start: []byte(p + "b"), End: []byte(p + "d"), KeysOnly: true, Progress: true})
	skipWithoutWatch(t, err)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	want := map[string]bool{}
	pending := map[int]*norikv.Version{} // shard -> highest put version to pass
	for _, k := range []string{"a", "b", "bz", "c", "d", "e"} {
		v, err := c.Put(ctx, []byte(p+k), []byte("value-"+k), nil)
		if err != nil {
			t.Fatal(err)
		}
		if k >= "b" && k < "d" {
			want[p+k] = true
		}
		sh := c.ShardForKey([]byte(p + k))
		if pv := pending[sh]; pv == nil || v.Index > pv.Index {
			pending[sh] = v
		}
	}
	seen := map[string]bool{}
	deadline := time.AfterFunc(30*time.Second, w.Close)
	defer deadline.Stop()
	for len(pending) > 0 && w.Next() {
		e := w.Event()
		if e.Kind != norikv.EventProgress {
			if len(e.Value) != 0 {
				t.Fatalf("KeysOnly event %q carries a value %q", e.Key, e.Value)
			}
			if !want[string(e.Key)] {
				t.Fatalf("range watch [b, d) delivered %q", e.Key)
			}
			seen[string(e.Key)] = true
		}
		if pv := pending[e.Shard]; pv != nil && e.EntryEnd && e.Version.Index >= pv.Index {
			delete(pending, e.Shard)
		}
	}
	if len(pending) > 0 {
		t.Fatalf("the watch did not pass the puts of %d shards within 30 s: %v", len(pending), w.Err())
	}
	if len(seen) != len(want) {
		t.Fatalf("range watch delivered %v, want %v", seen, want)
	}
}

// A watch resumed by the caller from Watcher.Revisions() continues exactly
// after what Next handed out: the first watch's events do not come again,
// the later ones all come once, multi-key batches included.
func TestWatchFromWatcherRevisionsContinuesExactlyAfterWhatWasRead(t *testing.T) {
	c := newTestClient(t, sharedServer(t).GRPCAddr)
	prefix := string(key(t, ""))
	ctx := context.Background()
	w1, err := c.Watch(ctx, &norikv.WatchOptions{Prefix: []byte(prefix)})
	skipWithoutWatch(t, err)
	if err != nil {
		t.Fatal(err)
	}
	first := writeMix(t, c, prefix, 60, 30, "first")
	batchKeys := keysOnOneShard(c, prefix+"batch-", 4)
	var ops []norikv.BatchOp
	for _, k := range batchKeys {
		ops = append(ops, norikv.BatchOp{Key: []byte(k), Value: []byte("b")})
	}
	res, err := c.Batch(ctx, ops, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range batchKeys {
		first = append(first, change{key: k, value: "b", version: res.Version})
	}
	checkExactlyOnce(t, collectEvents(t, w1, len(first), 60*time.Second), first)
	revs := w1.Revisions()
	w1.Close()
	second := writeMix(t, c, prefix, 60, 30, "second")
	w2, err := c.Watch(ctx, &norikv.WatchOptions{Prefix: []byte(prefix), From: revs})
	if err != nil {
		t.Fatal(err)
	}
	defer w2.Close()
	checkExactlyOnce(t, collectEvents(t, w2, len(second), 60*time.Second), second)
}

// A reader that stalls past the server's slow-watcher cut-off (300 ms here)
// is cut off with RESOURCE_EXHAUSTED "watch too slow"; the watch resumes
// from its positions and every change still comes exactly once.
func TestWatchCutOffAsTooSlowResumesWithoutLossOrDuplicate(t *testing.T) {
	if _, err := ephemeral.FindBinary(); err != nil {
		t.Skipf("no norikv-server binary to test against: %v", err)
	}
	t.Setenv("NORIKV_WATCH_SLOW_MS", "300")
	// a feed that keeps all of it: the resume must not be refused as compacted
	srv := ephemeral.StartT(t, &ephemeral.Options{Args: []string{"--watch-retention-bytes=1GiB", "--watch-retention-entries=100000"}})
	c := newTestClient(t, srv.GRPCAddr)
	prefix := "slow/"
	w, err := c.Watch(context.Background(), &norikv.WatchOptions{Prefix: []byte(prefix), Buffer: 16})
	skipWithoutWatch(t, err)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	// values of 2 KiB: the client's buffers (16 events, 8 responses, the
	// transport window) fill long before the 12000 changes are written
	val := strings.Repeat("v", 2048)
	var changes []change
	var ops []norikv.BatchOp
	keys := keysOnOneShard(c, prefix, 100)
	for r := 0; r < 120; r++ {
		ops = ops[:0]
		for _, k := range keys {
			ops = append(ops, norikv.BatchOp{Key: []byte(k), Value: []byte(fmt.Sprint(r, val))})
		}
		res, err := c.Batch(context.Background(), ops, nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range keys {
			changes = append(changes, change{key: k, value: fmt.Sprint(r, val), version: res.Version})
		}
	}
	time.Sleep(time.Second) // stalled past the cut-off
	got := collectEvents(t, w, len(changes), 120*time.Second)
	checkExactlyOnce(t, got, changes)
	if w.Resumes() == 0 {
		t.Fatal("the stream was never cut off and resumed (the test's premise)")
	}
}
