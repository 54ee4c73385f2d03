package cluster

// Range scans on three nodes (issue 12): the Go SDK fans a scan out to every
// node that leads shards and merges their pages in key order; when the node
// leading the most shards is SIGKILLed in the middle of a scan, the SDK sends
// that node's shards, with the stream's continuation token, to their new
// leaders, and the scan still returns exactly the acknowledged keys, in
// order, once each.

import (
	"bytes"
	"context"
	"fmt"
	"sort"
	"testing"
	"time"

	norikv "github.com/norikv/norikv-go"
)

func TestRangeOverThreeNodesSurvivesTheKillOfALeaderMidScan(t *testing.T) {
	c := start3(t)
	addrs := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		addrs[i] = n.RPC
	}
	cfg := norikv.DefaultClientConfig(addrs)
	cfg.TotalShards = clusterShards
	cfg.Timeout = 20 * time.Second
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	cl, err := norikv.NewClient(ctx, cfg)
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	defer cl.Close()

	var want []string
	for i := 0; i < 400; i++ {
		k := fmt.Sprintf("range-kill/%04d", i)
		var err error
		for a := 0; a < 20; a++ {
			if _, err = cl.Put(ctx, []byte(k), []byte(k), nil); err == nil {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if err != nil {
			t.Fatalf("Put %s: %v", k, err)
		}
		want = append(want, k)
	}
	sort.Strings(want)

	v := c.StableView(formTimeout)
	victim := c.MostLeader(v)
	if n := len(c.ShardsLedBy(v, victim)); n == 0 || n == clusterShards {
		t.Fatalf("node %d leads %d of %d shards; the scan would not fan out", victim, n, clusterShards)
	}
	it := cl.RangeIter(ctx, &norikv.RangeOptions{Prefix: []byte("range-kill/"), PageSize: 4,
		Consistency: norikv.ConsistencyLinearizable})
	defer it.Close()
	var got [][]byte
	for it.Next() {
		kv := it.KV()
		if n := len(got); n > 0 && bytes.Compare(got[n-1], kv.Key) >= 0 {
			t.Fatalf("range returned %q after %q", kv.Key, got[n-1])
		}
		if string(kv.Value) != string(kv.Key) {
			t.Fatalf("%q = %q", kv.Key, kv.Value)
		}
		got = append(got, kv.Key)
		if len(got) == 60 {
			c.Nodes[victim].Kill()
			t.Logf("killed node %s (led %d shards) after %d keys", c.Nodes[victim].ID, len(c.ShardsLedBy(v, victim)), len(got))
		}
	}
	if err := it.Err(); err != nil {
		t.Fatalf("range after %d keys: %v", len(got), err)
	}
	if len(got) != len(want) {
		t.Fatalf("range returned %d keys, want %d", len(got), len(want))
	}
	for i := range want {
		if string(got[i]) != want[i] {
			t.Fatalf("key %d is %q, want %q", i, got[i], want[i])
		}
	}
}
