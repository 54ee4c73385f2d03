package cluster

// The multi-node tests of issue 10, written against the contract of a
// cluster: `--cluster-seed-nodes` peers (through the test's proxies), READY
// once the cluster formed, NOT_LEADER with a leader-hint, the ClusterView of
// Meta.WatchCluster, Admin.TransferShard and Admin.SnapshotShard. Until the
// server runs clusters, Start skips each of them (NORIKV_REQUIRE_CLUSTER=1:
// fails). docs/testing-clusters.md lists what each needs from the server.

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	pb "github.com/norikv/norikv-go/proto"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

const (
	clusterShards = 16
	formTimeout   = 30 * time.Second // a stable view after start or a fault
)

// clusterArgs lets a run add server flags to every node
// (NORIKV_CLUSTER_ARGS="--raft-tick-interval 50ms", for a slow machine).
func clusterArgs() []string { return strings.Fields(os.Getenv("NORIKV_CLUSTER_ARGS")) }

func start3(t *testing.T) *Cluster {
	t.Helper()
	c := Start(t, Options{Nodes: 3, TotalShards: clusterShards, ExtraArgs: clusterArgs()})
	c.StableView(formTimeout)
	return c
}

// acks is the set of acknowledged writes (each to a fresh key).
type acks struct {
	mu sync.Mutex
	m  map[string]Output // key -> the value and Version acknowledged
}

func newAcks() *acks { return &acks{m: map[string]Output{}} }

func (a *acks) add(k string, o Output) { a.mu.Lock(); a.m[k] = o; a.mu.Unlock() }

func (a *acks) snapshot() map[string]Output {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make(map[string]Output, len(a.m))
	for k, v := range a.m {
		out[k] = v
	}
	return out
}

// writeFresh puts value=key to a fresh key of shard s; true when acknowledged.
func writeFresh(r *Router, a *acks, prefix string, s uint32, n int, timeout time.Duration) bool {
	k := KeyForShard(prefix, s, r.C.Opts.TotalShards, n)
	out, res, _ := r.Do(Input{Kind: OpPut, Key: k, Value: "v-" + k}, timeout, timeout)
	if res == Definite {
		a.add(k, Output{Found: true, Value: "v-" + k, Version: out.Version})
		return true
	}
	return false
}

// verifyAcked reads every acknowledged key linearizably through the
// cluster and requires exactly the acknowledged value and Version.
func verifyAcked(t *testing.T, r *Router, a *acks, within time.Duration) {
	t.Helper()
	for k, want := range a.snapshot() {
		deadline := time.Now().Add(within)
		for {
			out, res, node := r.Do(Input{Kind: OpGet, Key: k, Consistency: "linearizable"}, time.Second, 3*time.Second)
			if res == Definite {
				if out != want {
					t.Fatalf("acknowledged write lost: %s reads %+v from %s, acknowledged %+v", k, out, node, want)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: no definite read within %v", k, within)
			}
		}
	}
}

// ------------------------------------------------------------- failover

func TestFailoverWritesToEveryShardResumeWithinTwoSecondsAndNothingIsLost(t *testing.T) {
	c := start3(t)
	r := NewRouter(c)
	v := c.StableView(formTimeout)
	r.LearnView(v)
	victim := c.MostLeader(v)
	victimShards := c.ShardsLedBy(v, victim)
	t.Logf("killing %s, leader of shards %v", c.Nodes[victim].ID, victimShards)

	a := newAcks()
	var mu sync.Mutex
	var killAt time.Time
	firstAfter := map[uint32]time.Duration{} // shard -> first ack of a write begun after the kill
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for s := uint32(0); s < clusterShards; s++ {
		wg.Add(1)
		go func(s uint32) {
			defer wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				began := time.Now()
				ok := writeFresh(r, a, "fo-", s, i, 500*time.Millisecond)
				mu.Lock()
				if ok && !killAt.IsZero() && began.After(killAt) {
					if _, seen := firstAfter[s]; !seen {
						firstAfter[s] = time.Since(killAt)
					}
				}
				mu.Unlock()
				time.Sleep(5 * time.Millisecond)
			}
		}(s)
	}
	time.Sleep(time.Second)
	mu.Lock()
	killAt = time.Now()
	mu.Unlock()
	c.Nodes[victim].Kill()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		mu.Lock()
		n := len(firstAfter)
		mu.Unlock()
		if n == clusterShards {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	cancel()
	wg.Wait()
	bound := 2 * time.Second
	if s := os.Getenv("NORIKV_FAILOVER_BOUND"); s != "" {
		if d, err := time.ParseDuration(s); err == nil {
			bound = d
		}
	}
	var worst time.Duration
	for s := uint32(0); s < clusterShards; s++ {
		d, ok := firstAfter[s]
		if !ok {
			t.Fatalf("shard %d took no write within 15 s of killing %s", s, c.Nodes[victim].ID)
		}
		if d > worst {
			worst = d
		}
		if d > bound {
			t.Errorf("shard %d (led by the victim: %v) took writes again only %v after the kill, want <= %v",
				s, contains(victimShards, s), d, bound)
		}
	}
	t.Logf("writes resumed on every shard within %v of SIGKILL (%d writes acknowledged)", worst, len(a.snapshot()))
	verifyAcked(t, r, a, 10*time.Second)
	c.Restart(victim)
	c.StableView(formTimeout)
	verifyAcked(t, r, a, 10*time.Second)
}

func contains(s []uint32, x uint32) bool {
	for _, v := range s {
		if v == x {
			return true
		}
	}
	return false
}

// ----------------------------------------------------------------- pause

// A leader paused beyond its lease and resumed must step down: nothing it
// serves after SIGCONT may be stale, nothing acknowledged is lost. The
// paused node is probed directly right after SIGCONT (lease and
// linearizable gets of every key), and every probe goes into the checked
// history with the workload's operations.
func TestPausedLeaderStepsDownServesNoStaleReadAndLosesNoWrite(t *testing.T) {
	c := start3(t)
	seed := seedFromEnv(t)
	r := NewRouter(c)
	v := c.StableView(formTimeout)
	r.LearnView(v)
	victim := c.MostLeader(v)
	led := c.ShardsLedBy(v, victim)
	h := NewHistory(seed)
	w := WorkloadOptions{Clients: 4, Keys: 12, Seed: seed, AttemptTimeout: 700 * time.Millisecond}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	done := make(chan struct{})
	go func() { RunWorkload(ctx, r, h, w); close(done) }()

	time.Sleep(2 * time.Second)
	h.Note("SIGSTOP %s (leads %v)", c.Nodes[victim].ID, led)
	c.Nodes[victim].Pause()
	// The others elect new leaders for the victim's shards.
	deadline := time.Now().Add(15 * time.Second)
	for {
		moved := true
		for _, o := range others(c, victim) {
			vo, err := c.View(o, time.Second)
			if err != nil {
				moved = false
				break
			}
			ls := c.Leaders(vo)
			for _, s := range led {
				if ls[s] == victim || ls[s] < 0 {
					moved = false
				}
			}
		}
		if moved {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the victim's shards %v got no new leader within 15 s of SIGSTOP", led)
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(time.Second) // writes land on the new leaders
	h.Note("SIGCONT %s", c.Nodes[victim].ID)
	c.Nodes[victim].Resume()
	notLeader := probeNode(r, h, victim, w, 2*time.Second, 100+w.Clients)
	if notLeader == 0 {
		t.Errorf("%s answered no NOT_LEADER in the 2 s after SIGCONT: did it step down?", c.Nodes[victim].ID)
	}
	<-ctx.Done()
	<-done
	c.Repair(h)
	if err := FinalReads(r, h, w, 30*time.Second); err != nil {
		t.Error(err)
	}
	for _, n := range h.Notes {
		t.Log(n)
	}
	CheckAndReport(t, h, c.OutDir, 2*time.Minute)
}

// writeVia sends in to the given nodes only (following NOT_LEADER hints
// among them) until one acknowledges it or within passes.
func writeVia(r *Router, nodes []int, in Input, within time.Duration) bool {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		for _, n := range nodes {
			if _, pr, _ := r.Probe(n, in, time.Second); pr == ProbeOK {
				return true
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return false
}

func others(c *Cluster, i int) []int {
	var out []int
	for j := range c.Nodes {
		if j != i {
			out = append(out, j)
		}
	}
	return out
}

// probeNode asks node directly, for d, for every workload key with lease
// and linearizable gets, recording definite answers in h as the client
// `client`; it returns how many NOT_LEADER answers it got.
func probeNode(r *Router, h *History, node int, w WorkloadOptions, d time.Duration, client int) int {
	notLeader := 0
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		for _, k := range w.KeyList() {
			for _, cons := range []string{"", "linearizable"} {
				in := Input{Kind: OpGet, Key: k, Consistency: cons}
				call := h.Now()
				out, pr, _ := r.Probe(node, in, 300*time.Millisecond)
				switch pr {
				case ProbeOK:
					h.Add(Op{Client: client, Input: in, Output: out, Call: call, Return: h.Now(),
						Node: r.C.Nodes[node].ID + "(probe)"})
				case ProbeNotLeader:
					notLeader++
				}
			}
		}
	}
	return notLeader
}

// ------------------------------------------------------------- partition

// The minority side serves no write and no lease or linearizable read; the
// majority keeps serving; nothing acknowledged is lost. Phases: the leader
// of the most shards isolated; then cut one way (its messages to the
// followers dropped, theirs reach it); then the other way (it hears nobody).
func TestPartitionedMinorityServesNoWriteAndNoLeaseReadAndNothingIsLost(t *testing.T) {
	c := start3(t)
	seed := seedFromEnv(t)
	r := NewRouter(c)
	h := NewHistory(seed)
	w := WorkloadOptions{Clients: 4, Keys: 12, Seed: seed, AttemptTimeout: 700 * time.Millisecond}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { RunWorkload(ctx, r, h, w); close(done) }()
	defer func() { cancel(); <-done }()

	phases := []struct {
		name string
		cut  func(m int)
	}{
		{"isolated", func(m int) { c.Isolate(m) }},
		{"one-way: its messages to the others dropped", func(m int) {
			for _, o := range others(c, m) {
				c.CutOneWay(m, o)
			}
		}},
		{"one-way: it hears nobody", func(m int) {
			for _, o := range others(c, m) {
				c.CutOneWay(o, m)
			}
		}},
	}
	for _, ph := range phases {
		v := c.StableView(formTimeout)
		m := c.MostLeader(v)
		h.Note("%s %s", c.Nodes[m].ID, ph.name)
		ph.cut(m)
		// Beyond the election timeout and the lease: the minority must
		// have stopped serving by now.
		time.Sleep(3 * time.Second)
		end := time.Now().Add(2 * time.Second)
		for i := 0; time.Now().Before(end); i++ {
			for s := uint32(0); s < clusterShards; s++ {
				k := KeyForShard("minority-", s, clusterShards, 0)
				for _, in := range []Input{
					{Kind: OpPut, Key: k, Value: fmt.Sprintf("minority-%s-%d", ph.name, i)},
					{Kind: OpGet, Key: k},
					{Kind: OpGet, Key: k, Consistency: "linearizable"},
				} {
					if out, pr, _ := r.Probe(m, in, 300*time.Millisecond); pr == ProbeOK {
						t.Errorf("%s (%s) served %s of shard %d: %+v", c.Nodes[m].ID, ph.name,
							describeOp(in, out), s, out)
					}
				}
			}
		}
		// The majority serves every shard meanwhile (asked directly, so
		// that no request waits on the cut node).
		for s := uint32(0); s < clusterShards; s++ {
			k := KeyForShard("majority-"+strings.Fields(ph.name)[0]+"-", s, clusterShards, 0)
			if !writeVia(r, others(c, m), Input{Kind: OpPut, Key: k, Value: "x"}, 10*time.Second) {
				t.Errorf("the majority did not take a write to shard %d while %s was %s", s, c.Nodes[m].ID, ph.name)
			}
		}
		c.HealAll()
		h.Note("healed")
	}
	cancel()
	<-done
	if err := FinalReads(r, h, w, 30*time.Second); err != nil {
		t.Error(err)
	}
	for _, n := range h.Notes {
		t.Log(n)
	}
	CheckAndReport(t, h, c.OutDir, 2*time.Minute)
}

// ----------------------------------------------------------- restart all

func TestRestartingAllNodesAfterSIGKILLKeepsEveryAcknowledgedWrite(t *testing.T) {
	c := start3(t)
	r := NewRouter(c)
	r.LearnView(c.StableView(formTimeout))
	a := newAcks()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	var wg sync.WaitGroup
	for s := uint32(0); s < clusterShards; s++ {
		wg.Add(1)
		go func(s uint32) {
			defer wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				writeFresh(r, a, "ra-", s, i, time.Second)
			}
		}(s)
	}
	time.Sleep(2500 * time.Millisecond)
	c.KillAll() // while writes are in flight
	cancel()
	wg.Wait()
	n := len(a.snapshot())
	if n < clusterShards {
		t.Fatalf("only %d writes acknowledged before the kill", n)
	}
	c.StartAll()
	c.StableView(formTimeout)
	verifyAcked(t, r, a, 10*time.Second)
	t.Logf("%d acknowledged writes survived SIGKILL of all 3 nodes", n)
}

// -------------------------------------------------------------- lagging

func TestLaggingNodeCatchesUpBySnapshotAfterTheLogWasCompacted(t *testing.T) {
	c := start3(t)
	r := NewRouter(c)
	lag := 2
	c.Nodes[lag].Kill()
	// learn the leaders once the survivors lead everything: a request sent
	// on a connection to the killed node would have an unknown outcome
	r.LearnView(c.StableView(formTimeout))
	a := newAcks()
	var wg sync.WaitGroup
	for s := uint32(0); s < clusterShards; s++ {
		wg.Add(1)
		go func(s uint32) {
			defer wg.Done()
			for i := 0; i < 150; i++ {
				if !writeFresh(r, a, "lag-", s, i, 3*time.Second) {
					t.Errorf("write %d to shard %d failed with one node down", i, s)
					return
				}
			}
		}(s)
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	// Compact every shard's log on its leader, so the stopped node cannot
	// catch up from the log.
	v := c.StableView(formTimeout)
	for s, l := range c.Leaders(v) {
		snapshotShard(t, c, l, s)
	}
	c.Restart(lag)
	// It serves stale reads with all the data.
	want := a.snapshot()
	deadline := time.Now().Add(60 * time.Second)
	for {
		missing := 0
		var example string
		for k, o := range want {
			out, pr, _ := r.Probe(lag, Input{Kind: OpGet, Key: k, Consistency: "stale_ok"}, time.Second)
			if pr != ProbeOK || out != o {
				missing++
				example = fmt.Sprintf("%s: %v %+v", k, pr, out)
			}
		}
		if missing == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s still misses %d of %d keys 60 s after restart (e.g. %s)", c.Nodes[lag].ID,
				missing, len(want), example)
		}
		time.Sleep(500 * time.Millisecond)
	}
	verifyAcked(t, r, a, 10*time.Second)
}

// A follower that was down while the leaders wrote more than their raft
// log cache holds catches up from the log on disk (no snapshot: the logs are
// not compacted), those reads run on the leaders' fetcher threads, not their
// Ready loops, and writes go on meanwhile.
func TestLaggingFollowerCatchesUpFromTheLogOnDiskWhileWritesGoOn(t *testing.T) {
	args := append(clusterArgs(), "--raft-log-cache-size", "64KiB", "--raft-log-compact-entries", "100000")
	c := Start(t, Options{Nodes: 3, TotalShards: clusterShards, ExtraArgs: args})
	r := NewRouter(c)
	r.LearnView(c.StableView(formTimeout))
	lag := 2
	c.Nodes[lag].Kill()
	a := newAcks()
	pad := strings.Repeat("x", 2000)
	var wg sync.WaitGroup
	for s := uint32(0); s < clusterShards; s++ {
		wg.Add(1)
		go func(s uint32) {
			defer wg.Done()
			for i := 0; i < 60; i++ {
				// The first writes may meet the failover of the killed
				// node's shards: retry (the same key and value) for a while.
				k := KeyForShard("disk-", s, r.C.Opts.TotalShards, i)
				deadline := time.Now().Add(20 * time.Second)
				for {
					out, res, _ := r.Do(Input{Kind: OpPut, Key: k, Value: pad + k}, 3*time.Second, 3*time.Second)
					if res == Definite {
						a.add(k, Output{Found: true, Value: pad + k, Version: out.Version})
						break
					}
					if time.Now().After(deadline) {
						t.Errorf("write %d to shard %d failed for 20 s with one node down", i, s)
						return
					}
				}
			}
		}(s)
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	c.Restart(lag)
	// Writes during the catch-up keep being acknowledged.
	stop := make(chan struct{})
	var during sync.WaitGroup
	during.Add(1)
	go func() {
		defer during.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if !writeFresh(r, a, "during-", uint32(i)%clusterShards, i, 5*time.Second) {
				t.Errorf("a write failed while %s caught up", c.Nodes[lag].ID)
				return
			}
		}
	}()
	want := a.snapshot()
	deadline := time.Now().Add(60 * time.Second)
	for {
		missing := 0
		var example string
		for k, o := range want {
			if !strings.HasPrefix(k, "disk-") {
				continue
			}
			out, pr, _ := r.Probe(lag, Input{Kind: OpGet, Key: k, Consistency: "stale_ok"}, time.Second)
			if pr != ProbeOK || out != o {
				missing++
				example = k
			}
		}
		if missing == 0 {
			break
		}
		if time.Now().After(deadline) {
			close(stop)
			during.Wait()
			t.Fatalf("%s still misses %d keys 60 s after restart (e.g. %s)", c.Nodes[lag].ID, missing, example)
		}
		time.Sleep(300 * time.Millisecond)
	}
	close(stop)
	during.Wait()
	// The entries came from disk, through the fetchers.
	var fetches uint64
	for i := range c.Nodes {
		if i == lag {
			continue
		}
		h := nodeHealth(t, c.Nodes[i])
		fetches += uint64(h["raft_log_fetches"].(float64))
	}
	if fetches == 0 {
		t.Fatalf("the leaders fetched no entries from disk: the follower caught up some other way")
	}
	t.Logf("leaders fetched %d runs of entries from disk", fetches)
	verifyAcked(t, r, a, 10*time.Second)
}

// A member restarted while its peers are down waits for them without
// claiming READY, and a SIGTERM meanwhile stops it at once, cleanly.
func TestAMemberWaitingForItsPeersStopsPromptlyOnSIGTERM(t *testing.T) {
	c := start3(t)
	c.KillAll()
	n := c.Nodes[0]
	if err := n.Launch(); err != nil {
		t.Fatal(err)
	}
	if err := n.WaitReady(2 * time.Second); err == nil {
		t.Fatalf("%s printed READY with both its peers down", n.ID)
	}
	t0 := time.Now()
	if err := n.Stop(10 * time.Second); err != nil {
		t.Fatalf("SIGTERM while waiting for peers: %v", err)
	}
	if d := time.Since(t0); d > 5*time.Second {
		t.Fatalf("stopping took %v", d)
	}
	t.Logf("stopped %v after SIGTERM", time.Since(t0))
}

// waitQuiet waits until every running node reports at least want replicas
// quiet (no ticks, no heartbeats) on /health.
func waitQuiet(t *testing.T, c *Cluster, skip int, want int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		ok := true
		var got []int
		for i, n := range c.Nodes {
			if i == skip {
				continue
			}
			q := int(nodeHealth(t, n)["shards_quiet"].(float64))
			got = append(got, q)
			if q < want {
				ok = false
			}
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("replicas quiet per node %v after %v; want at least %d each", got, within, want)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// An idle cluster goes quiet (leaders stop heartbeating, followers stop
// their election timers); a write to every shard wakes them and succeeds;
// a quiet leader's node killed or paused is noticed through node liveness,
// and its shards elect new leaders that take writes.
func TestQuietGroupsWakeForWritesAndElectNewLeadersWhenTheirLeaderDiesOrPauses(t *testing.T) {
	c := start3(t)
	r := NewRouter(c)
	r.LearnView(c.StableView(formTimeout))
	waitQuiet(t, c, -1, clusterShards, 20*time.Second)
	a := newAcks()
	for s := uint32(0); s < clusterShards; s++ {
		if !writeFresh(r, a, "wake-", s, 0, 5*time.Second) {
			t.Fatalf("a write to quiet shard %d failed", s)
		}
	}
	for _, how := range []string{"SIGKILL", "SIGSTOP"} {
		waitQuiet(t, c, -1, clusterShards, 20*time.Second)
		v := c.StableView(formTimeout)
		r.LearnView(v)
		victim := c.MostLeader(v)
		led := c.ShardsLedBy(v, victim)
		t0 := time.Now()
		if how == "SIGKILL" {
			c.Nodes[victim].Kill()
		} else {
			c.Nodes[victim].Pause()
		}
		// Writes to each of its shards (in parallel) succeed again once the
		// others noticed.
		var mu sync.Mutex
		var worst time.Duration
		var wg sync.WaitGroup
		for _, s := range led {
			wg.Add(1)
			go func(s uint32) {
				defer wg.Done()
				for i := 1; ; i++ {
					if writeFresh(r, a, "after-"+how+"-", s, i, 500*time.Millisecond) {
						break
					}
					if time.Since(t0) > 15*time.Second {
						t.Errorf("%s of quiet leader %s: shard %d takes no write after 15 s", how, c.Nodes[victim].ID, s)
						return
					}
				}
				mu.Lock()
				if d := time.Since(t0); d > worst {
					worst = d
				}
				mu.Unlock()
			}(s)
		}
		wg.Wait()
		if t.Failed() {
			return
		}
		t.Logf("%s of %s (led %d quiet shards): all took writes again after %v", how, c.Nodes[victim].ID, len(led), worst)
		if how == "SIGKILL" {
			c.Restart(victim)
		} else {
			c.Nodes[victim].Resume()
		}
		c.StableView(formTimeout)
	}
	verifyAcked(t, r, a, 10*time.Second)
}

// nodeHealth reads the node's /health document.
func nodeHealth(t *testing.T, n *Node) map[string]any {
	t.Helper()
	resp, err := http.Get("http://" + n.HTTP + "/health")
	if err != nil {
		t.Fatalf("GET /health of %s: %v", n.ID, err)
	}
	defer resp.Body.Close()
	var h map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&h); err != nil {
		t.Fatalf("/health of %s: %v", n.ID, err)
	}
	return h
}

// snapshotShard calls Admin.SnapshotShard on node for shard s (retrying
// while another snapshot runs).
func snapshotShard(t *testing.T, c *Cluster, node int, s uint32) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		_, err := c.Nodes[node].Admin().SnapshotShard(ctx, &pb.ShardInfo{Id: s})
		cancel()
		if err == nil {
			return
		}
		if status.Code(err) != codes.ResourceExhausted || time.Now().After(deadline) {
			t.Fatalf("SnapshotShard(%d) on %s: %v", s, c.Nodes[node].ID, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// --------------------------------------------------------------- damage

func TestDamagedReplicaIsRebuiltFromPeersAndNothingAcknowledgedIsLost(t *testing.T) {
	c := start3(t)
	r := NewRouter(c)
	r.LearnView(c.StableView(formTimeout))
	a := newAcks()
	for i := 0; i < 40; i++ {
		for s := uint32(0); s < clusterShards; s++ {
			if !writeFresh(r, a, "dmg-", s, i, 3*time.Second) {
				t.Fatalf("write to shard %d failed", s)
			}
		}
	}
	victim := 1
	// A clean stop flushes the victim's memtable to tables.
	if err := c.Nodes[victim].Stop(30 * time.Second); err != nil {
		t.Fatalf("stopping %s: %v", c.Nodes[victim].ID, err)
	}
	for i := 0; i < 10; i++ { // a few more the victim never saw
		for s := uint32(0); s < clusterShards; s++ {
			writeFresh(r, a, "dmg-after-", s, i, 3*time.Second)
		}
	}
	sst := damageTable(t, c.Nodes[victim].DataDir)
	seg := truncateLogTail(t, c.Nodes[victim].DataDir)
	t.Logf("flipped a byte in %s, cut the tail of %s", sst, seg)
	c.Restart(victim)
	c.StableView(formTimeout)
	verifyAcked(t, r, a, 10*time.Second)
	// The victim's replicas are rebuilt: it serves every key stale ...
	want := a.snapshot()
	deadline := time.Now().Add(60 * time.Second)
	for {
		bad := 0
		for k, o := range want {
			out, pr, _ := r.Probe(victim, Input{Kind: OpGet, Key: k, Consistency: "stale_ok"}, time.Second)
			if pr != ProbeOK || out != o {
				bad++
			}
		}
		if bad == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s still serves %d of %d keys wrong or not at all 60 s after restart", c.Nodes[victim].ID, bad, len(want))
		}
		time.Sleep(500 * time.Millisecond)
	}
	// ... and the cluster relies on it: with another node dead, the victim
	// is half of every majority and everything is still there.
	other := 0
	c.Nodes[other].Kill()
	c.StableView(formTimeout)
	verifyAcked(t, r, a, 20*time.Second)
}

// damageTable flips one byte in the middle of the largest SSTable of a
// stopped node and returns its path.
func damageTable(t *testing.T, dataDir string) string {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dataDir, "lsm", "*.sst"))
	if len(files) == 0 {
		t.Fatalf("no SSTable under %s/lsm to damage", dataDir)
	}
	sort.Slice(files, func(i, j int) bool { return size(files[i]) > size(files[j]) })
	b, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/3] ^= 0x5a
	if err := os.WriteFile(files[0], b, 0o644); err != nil {
		t.Fatal(err)
	}
	return files[0]
}

// truncateLogTail cuts the newest raft log segment in the middle of its
// last record (37 bytes before the end of its data, found as the last
// non-zero byte: segments are preallocated with zeros).
func truncateLogTail(t *testing.T, dataDir string) string {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dataDir, "raft", "*.wal"))
	if len(files) == 0 {
		t.Fatalf("no raft log segment under %s/raft", dataDir)
	}
	sort.Strings(files)
	p := files[len(files)-1]
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	end := len(b)
	for end > 0 && b[end-1] == 0 {
		end--
	}
	cut := end - 37
	if cut < 64 {
		t.Fatalf("segment %s holds too little data (%d bytes) to cut", p, end)
	}
	if err := os.Truncate(p, int64(cut)); err != nil {
		t.Fatal(err)
	}
	return p
}

func size(p string) int64 {
	st, err := os.Stat(p)
	if err != nil {
		return 0
	}
	return st.Size()
}

// -------------------------------------------------------------- routing

func TestFollowersAnswerNotLeaderWithTheLeadersAddressAndTheViewNamesOneLeaderPerShard(t *testing.T) {
	c := start3(t)
	r := NewRouter(c)
	v := c.StableView(formTimeout)
	if len(v.Nodes) != 3 {
		t.Fatalf("view has %d nodes, want 3: %v", len(v.Nodes), v.Nodes)
	}
	for _, n := range v.Nodes {
		i := c.NodeByID(n.Id)
		if i < 0 || n.Addr != c.Nodes[i].RPC || n.Role != "alive" {
			t.Fatalf("view node %+v: want one of n1..n3 at its client address, alive", n)
		}
	}
	leaders := c.Leaders(v)
	for _, s := range v.Shards {
		if len(s.Replicas) != 3 {
			t.Fatalf("shard %d has %d replicas, want 3 (RF 3)", s.Id, len(s.Replicas))
		}
		if leaders[s.Id] < 0 {
			t.Fatalf("shard %d has no single leader in a stable view (%d)", s.Id, leaders[s.Id])
		}
	}
	// Once stable, every node names exactly one leader per shard, the same.
	// (Leader balancing may still move a leadership right after the start:
	// then the nodes agree again on the next stable view.)
	agreeBy := time.Now().Add(10 * time.Second)
	for {
		mismatch := ""
		for i := range c.Nodes {
			vi, err := c.View(i, 2*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			for s, l := range c.Leaders(vi) {
				if l != leaders[s] && mismatch == "" {
					mismatch = fmt.Sprintf("%s's view names %d as the leader of shard %d, the stable view %d",
						c.Nodes[i].ID, l, s, leaders[s])
				}
			}
		}
		if mismatch == "" {
			break
		}
		if time.Now().After(agreeBy) {
			t.Fatal(mismatch)
		}
		time.Sleep(200 * time.Millisecond)
		v = c.StableView(formTimeout)
		leaders = c.Leaders(v)
	}
	for s := uint32(0); s < clusterShards; s++ {
		leader := leaders[s]
		k := KeyForShard("route-", s, clusterShards, 0)
		moved := 0 // leader balancing may move the shard while it is probed: look again
	probe:
		for _, f := range others(c, leader) {
			for _, in := range []Input{{Kind: OpPut, Key: k, Value: "x"}, {Kind: OpGet, Key: k},
				{Kind: OpGet, Key: k, Consistency: "linearizable"}, {Kind: OpDelete, Key: k}} {
				_, pr, hint := r.Probe(f, in, 2*time.Second)
				if pr != ProbeNotLeader || hint != c.Nodes[leader].RPC {
					if now := c.Leaders(c.StableView(formTimeout))[s]; now != leader && moved < 3 {
						t.Logf("shard %d moved from %s to %s while probed", s, c.Nodes[leader].ID,
							c.Nodes[now].ID)
						leader = now
						moved++
						goto probe
					}
				}
				if pr != ProbeNotLeader {
					t.Fatalf("follower %s answered %s of shard %d with %v, want NOT_LEADER", c.Nodes[f].ID,
						in.Kind, s, pr)
				}
				if hint != c.Nodes[leader].RPC {
					t.Fatalf("follower %s's leader-hint for shard %d is %q, want %q (%s)", c.Nodes[f].ID, s,
						hint, c.Nodes[leader].RPC, c.Nodes[leader].ID)
				}
			}
			// stale_ok is served by any replica.
			if _, pr, _ := r.Probe(f, Input{Kind: OpGet, Key: k, Consistency: "stale_ok"}, 2*time.Second); pr != ProbeOK {
				t.Fatalf("follower %s refused a stale_ok read of shard %d: %v", c.Nodes[f].ID, s, pr)
			}
		}
	}
	// Admin.TransferShard moves a shard's leadership to the named replica,
	// and the view follows.
	s := uint32(0)
	to := others(c, leaders[s])[0]
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := c.Nodes[leaders[s]].Admin().TransferShard(ctx, &pb.ShardInfo{Id: s,
		Replicas: []*pb.ShardReplica{{NodeId: c.Nodes[to].ID, Leader: true}}})
	if err != nil {
		t.Fatalf("TransferShard(%d -> %s): %v", s, c.Nodes[to].ID, err)
	}
	// Watched on the target's own view, polled often, so that a balancer
	// moving it on later does not hide that it arrived.
	deadline := time.Now().Add(10 * time.Second)
	for {
		if vt, err := c.View(to, time.Second); err == nil && c.Leaders(vt)[s] == to {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("shard %d is not led by %s 10 s after TransferShard", s, c.Nodes[to].ID)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// A NOT_LEADER answer from the old leader now names the new one
	// (unless leader balancing already moved the shard back).
	now := c.Leaders(c.StableView(formTimeout))[s]
	if now == leaders[s] {
		t.Logf("shard %d is back on %s (leader balancing); hint check skipped", s, c.Nodes[now].ID)
		return
	}
	var md metadata.MD
	_, err = c.Nodes[leaders[s]].KV().Put(ctx, &pb.PutRequest{Key: []byte(KeyForShard("route-", s, clusterShards, 0)),
		Value: []byte("y")}, grpc.Trailer(&md))
	if status.Code(err) != codes.Unavailable || !strings.Contains(status.Convert(err).Message(), "NOT_LEADER") {
		t.Fatalf("put at the old leader after the transfer: %v, want NOT_LEADER", err)
	}
	if h := md.Get("leader-hint"); len(h) != 1 || h[0] != c.Nodes[now].RPC {
		t.Fatalf("leader-hint after the transfer: %v, want %s", h, c.Nodes[now].RPC)
	}
}

// --------------------------------------------------------- leader balance

func balanced(counts []int, shards int) bool {
	lo, hi := shards/len(counts)-1, (shards+len(counts)-1)/len(counts)+1
	for _, n := range counts {
		if n < lo || n > hi {
			return false
		}
	}
	return true
}

func waitBalanced(t *testing.T, c *Cluster, within time.Duration, when string) []int {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		counts := c.LeadCounts(c.StableView(formTimeout))
		if balanced(counts, clusterShards) {
			return counts
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: leaders not balanced within %v: each node leads %v of %d shards", when, within,
				counts, clusterShards)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func TestEachNodeLeadsAboutAThirdOfTheShardsAlsoAfterAKilledNodeReturns(t *testing.T) {
	c := start3(t)
	counts := waitBalanced(t, c, 30*time.Second, "after start")
	t.Logf("after start: %v", counts)
	victim := c.MostLeader(c.StableView(formTimeout))
	c.Nodes[victim].Kill()
	v := c.StableView(formTimeout)
	if n := c.LeadCounts(v)[victim]; n != 0 {
		t.Fatalf("the killed node still leads %d shards in a stable view", n)
	}
	c.Restart(victim)
	counts = waitBalanced(t, c, 60*time.Second, "after the killed node returned")
	t.Logf("after %s returned: %v", c.Nodes[victim].ID, counts)
}

// ------------------------------------------------------- linearizability

// The smoke run of `make test`: ~60 s (NORIKV_LIN_SECONDS) of the seeded
// schedule with every kind of fault.
func TestLinearizableUnderASeededFaultSchedule(t *testing.T) {
	d := 60 * time.Second
	if s := os.Getenv("NORIKV_LIN_SECONDS"); s != "" {
		fmt.Sscan(s, &d)
		d *= time.Second
	}
	if testing.Short() {
		d = 30 * time.Second
	}
	linRun(t, d)
}

// `make chaos SECONDS=N`: the same for N seconds (NORIKV_CHAOS_SECONDS).
func TestChaos(t *testing.T) {
	s := os.Getenv("NORIKV_CHAOS_SECONDS")
	if s == "" {
		t.Skip("set NORIKV_CHAOS_SECONDS (make chaos SECONDS=N) for a long seeded schedule")
	}
	var n int
	fmt.Sscan(s, &n)
	linRun(t, time.Duration(n)*time.Second)
}

// linRun: unknown outcomes stay pending to the end of a history, so a long
// run spreads its operations over more keys (about one per 10 s) to keep
// the unknowns per key, and so the check, bounded.
func linRun(t *testing.T, d time.Duration) {
	c := start3(t)
	seed := seedFromEnv(t)
	steps := Generate(seed, ScheduleOptions{Nodes: 3, Duration: d})
	h := NewHistory(seed)
	h.Schedule = steps
	r := NewRouter(c)
	r.LearnView(c.StableView(formTimeout))
	keys := 12
	if k := int(d / (10 * time.Second)); k > keys {
		keys = k
	}
	w := WorkloadOptions{Clients: 5, Keys: keys, Seed: seed, AttemptTimeout: time.Second}
	runChecked(t, c, r, h, w, steps, d)
}
