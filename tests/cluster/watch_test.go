package cluster

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	pb "github.com/norikv/norikv-go/proto"
)

// watchAll keeps one Kv.Watch stream per live node, each asking for every
// shard from the positions it holds (a node serves the shards it leads),
// and re-opens them all, from the current positions, whenever the shards
// they serve stop covering the cluster (a leader died) or a stream ends.
// Events of an older generation of streams are dropped: what they would
// have delivered comes again from the positions the new streams start at.
type watchAll struct {
	c       *Cluster
	prefix  string
	mu      sync.Mutex
	gen     int
	pos     map[uint32]*pb.Version
	served  map[int][]uint32 // node -> shards its current stream serves
	ended   bool
	seen    map[string]Version // key -> version of its event
	dups    []string
	cancels []context.CancelFunc
}

func (w *watchAll) open(skip map[int]bool) {
	w.mu.Lock()
	w.gen++
	gen := w.gen
	for _, c := range w.cancels {
		c()
	}
	w.cancels = nil
	w.served = map[int][]uint32{}
	w.ended = false
	var from []*pb.ShardRevision
	for s, v := range w.pos {
		from = append(from, &pb.ShardRevision{Shard: s, Applied: &pb.Version{Term: v.Term, Index: v.Index}})
	}
	w.mu.Unlock()
	for i := range w.c.Nodes {
		if skip[i] {
			continue
		}
		ctx, cancel := context.WithCancel(context.Background())
		st, err := w.c.Nodes[i].KV().Watch(ctx, &pb.WatchRequest{Prefix: []byte(w.prefix), From: from})
		var first *pb.WatchResponse
		if err == nil {
			first, err = st.Recv()
		}
		if err != nil {
			cancel()
			continue
		}
		w.mu.Lock()
		w.cancels = append(w.cancels, cancel)
		w.served[i] = first.Shards
		w.mu.Unlock()
		go func(st pb.Kv_WatchClient) {
			for {
				m, err := st.Recv()
				w.mu.Lock()
				if w.gen != gen {
					w.mu.Unlock()
					return
				}
				if err != nil {
					w.ended = true
					w.mu.Unlock()
					return
				}
				for _, e := range m.Events {
					k := string(e.Key)
					if _, dup := w.seen[k]; dup {
						w.dups = append(w.dups, fmt.Sprintf("%s at %v", k, e.Version))
					}
					w.seen[k] = Version{e.Version.Term, e.Version.Index}
					w.pos[e.Shard] = e.Version
				}
				for _, p := range m.Progress {
					if cur, ok := w.pos[p.Shard]; !ok || p.Applied.Index > cur.Index {
						w.pos[p.Shard] = p.Applied
					}
				}
				w.mu.Unlock()
			}
		}(st)
	}
}

// covered: every shard is served by exactly one current stream, none ended.
func (w *watchAll) covered(total int) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.ended {
		return false
	}
	n := map[uint32]int{}
	for _, ss := range w.served {
		for _, s := range ss {
			n[s]++
		}
	}
	for s := 0; s < total; s++ {
		if n[uint32(s)] != 1 {
			return false
		}
	}
	return true
}

// Watching a prefix over a 3-node cluster while writes go to every shard and
// the node leading the most shards is SIGKILLed mid-stream: resuming each
// shard from its last revision at its new leader delivers the event of
// every acknowledged write exactly once, with the acknowledged version.
func TestWatchAcrossALeaderKillDeliversEveryAcknowledgedWriteExactlyOnce(t *testing.T) {
	c := start3(t)
	r := NewRouter(c)
	v := c.StableView(formTimeout)
	r.LearnView(v)
	total := c.Opts.TotalShards
	w := &watchAll{c: c, prefix: "wk-", pos: map[uint32]*pb.Version{}, seen: map[string]Version{}}
	// start every shard from its current revision: ask each leader once
	w.open(nil)
	deadline := time.Now().Add(10 * time.Second)
	for !w.covered(total) {
		if time.Now().After(deadline) {
			t.Fatalf("the watch streams do not cover the %d shards", total)
		}
		time.Sleep(100 * time.Millisecond)
		w.open(nil)
	}
	a := newAcks()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for s := uint32(0); s < uint32(total); s++ {
		wg.Add(1)
		go func(s uint32) {
			defer wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				writeFresh(r, a, "wk-", s, i, 500*time.Millisecond)
				time.Sleep(10 * time.Millisecond)
			}
		}(s)
	}
	time.Sleep(time.Second)
	victim := c.MostLeader(c.StableView(formTimeout))
	c.Nodes[victim].Kill()
	dead := map[int]bool{victim: true}
	t.Logf("killed %s mid-stream", c.Nodes[victim].ID)
	// writes go on for 8 s after the kill; streams re-open as leaders move
	deadline = time.Now().Add(8 * time.Second)
	for time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
		if !w.covered(total) {
			w.open(dead)
		}
	}
	cancel()
	wg.Wait()
	acked := a.snapshot()
	// every acknowledged write's event arrives (re-opening as needed)
	deadline = time.Now().Add(20 * time.Second)
	for {
		if !w.covered(total) {
			w.open(dead)
		}
		w.mu.Lock()
		missing := 0
		var example string
		for k, o := range acked {
			got, ok := w.seen[k]
			if !ok {
				missing++
				example = k
				continue
			}
			if got != o.Version {
				w.mu.Unlock()
				t.Fatalf("%s: event at %v, acknowledged at %v", k, got, o.Version)
			}
		}
		dups := append([]string(nil), w.dups...)
		w.mu.Unlock()
		if len(dups) > 0 {
			t.Fatalf("events delivered twice: %v", dups)
		}
		if missing == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d acknowledged writes have no event (e.g. %s)", missing, len(acked), example)
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("%d acknowledged writes, each seen once through the leader kill", len(acked))
	for _, cf := range w.cancels {
		cf()
	}
}
