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
	"strings"
	"testing"
	"time"

	norikv "github.com/norikv/norikv-go"
	pb "github.com/norikv/norikv-go/proto"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
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

// A linearizable page on a node that has lost its quorum (the two other
// nodes are paused with SIGSTOP) answers within the barrier cap (2 s) with
// UNAVAILABLE (QUORUM_UNAVAILABLE, or NOT_LEADER once its leaders stepped
// down) instead of holding the call, and the node keeps
// serving ranges once the others resume. (The failed ReadIndex rounds end
// on the node's Ready loop: the page is finished off that thread.)
func TestLinearizableRangeWithoutQuorumAnswersWithinTheBarrierCap(t *testing.T) {
	c := start3(t)
	v := c.StableView(formTimeout)
	keep := c.MostLeader(v)
	if len(c.ShardsLedBy(v, keep)) == 0 {
		t.Fatal("no node leads a shard")
	}
	kv := c.Nodes[keep].KV()
	for i, n := range c.Nodes {
		if i != keep {
			if err := n.Pause(); err != nil {
				t.Fatal(err)
			}
		}
	}
	defer func() {
		for i, n := range c.Nodes {
			if i != keep {
				n.Resume()
			}
		}
	}()
	time.Sleep(300 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	began := time.Now()
	_, err := kv.Range(ctx, &pb.RangeRequest{Prefix: []byte("nq/"), Consistency: "linearizable"})
	took := time.Since(began)
	msg := status.Convert(err).Message()
	if status.Code(err) != codes.Unavailable || (!strings.Contains(msg, "QUORUM_UNAVAILABLE") && !strings.Contains(msg, "NOT_LEADER")) {
		t.Fatalf("range without quorum: %v (after %v), want UNAVAILABLE (QUORUM_UNAVAILABLE, or NOT_LEADER once the leader stepped down)", err, took)
	}
	if took > 5*time.Second {
		t.Fatalf("range without quorum took %v; the barrier cap is 2 s", took)
	}
	for i, n := range c.Nodes {
		if i != keep {
			if err := n.Resume(); err != nil {
				t.Fatal(err)
			}
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		r, err := kv.Range(ctx, &pb.RangeRequest{Prefix: []byte("nq/"), Consistency: "linearizable"})
		cancel()
		if err == nil && len(r.Shards) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no range answered after the others resumed: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
