package kvstore_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	norikv "github.com/norikv/norikv-go"
	"github.com/norikv/norikv-go/kvstore"
	"github.com/norikv/norikv-go/testing/ephemeral"
)

type node struct {
	id, rpc string
	srv     *ephemeral.Server
}

// startCluster starts three real norikv-server processes that know each
// other as seeds (as the SDK's cluster tests do).
func startCluster(t *testing.T) []*node {
	t.Helper()
	if _, err := ephemeral.FindBinary(); err != nil {
		t.Skipf("no norikv-server binary to test against: %v", err)
	}
	const n = 3
	nodes := make([]*node, n)
	peers := make([]string, n)
	for i := range nodes {
		rpc, err1 := ephemeral.FreeAddr()
		peer, err2 := ephemeral.FreeAddr()
		if err1 != nil || err2 != nil {
			t.Fatal(err1, err2)
		}
		nodes[i] = &node{id: fmt.Sprintf("n%d", i+1), rpc: rpc}
		peers[i] = peer
	}
	dir := t.TempDir()
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i, nd := range nodes {
		var seeds []string
		for j := range nodes {
			if j != i {
				seeds = append(seeds, peers[j])
			}
		}
		args := []string{"--node-id=" + nd.id, "--rpc-addr=" + nd.rpc, "--peer-addr=" + peers[i],
			"--http-addr=127.0.0.1:0", "--data-dir=" + filepath.Join(dir, nd.id),
			"--cluster-seed-nodes=" + strings.Join(seeds, ",")}
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			nd.srv, errs[i] = ephemeral.Start(ctx, &ephemeral.Options{NotEphemeral: true, Args: args, ReadyAddr: nd.rpc})
		}()
	}
	wg.Wait()
	t.Cleanup(func() {
		for _, nd := range nodes {
			if nd.srv != nil {
				nd.srv.Stop()
			}
		}
	})
	for i, err := range errs {
		if err != nil {
			t.Fatalf("starting cluster node %s: %v", nodes[i].id, err)
		}
	}
	return nodes
}

// allLed waits until the client's view has three alive nodes and a leader
// for every shard.
func waitAllLed(t *testing.T, c *norikv.Client) *norikv.ClusterView {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		v := c.GetClusterView()
		alive, led := 0, 0
		if v != nil {
			for _, nd := range v.Nodes {
				if nd.Role == "alive" {
					alive++
				}
			}
			for _, s := range v.Shards {
				for _, r := range s.Replicas {
					if r.Leader {
						led++
						break
					}
				}
			}
		}
		if alive == 3 && v != nil && len(v.Shards) > 0 && led == len(v.Shards) {
			return v
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatal("the three servers did not form a cluster with a leader for every shard within 30 s")
	return nil
}

// Three nodes; the node leading the most shards is killed (SIGKILL) while
// another client writes: the kvstore client's watch follows the new
// leaders, its storage ends equal to every acknowledged write, each put
// fired OnSet exactly once, and it still reads its own writes.
func TestClusterLeaderKillLosesNothingAndDuplicatesNothing(t *testing.T) {
	nodes := startCluster(t)
	addrs := []string{nodes[0].rpc, nodes[1].rpc, nodes[2].rpc}
	cfg := norikv.DefaultClientConfig(addrs)
	cfg.Timeout = 30 * time.Second
	ctx := context.Background()
	raw, err := norikv.NewClient(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	view := waitAllLed(t, raw)
	ns := "cluster"
	var sets atomic.Int64
	c := newStore(t, nodes[0].rpc, ns, kvstore.NewMemoryStorage(),
		kvstore.WithBrokers(addrs[1:]...),
		kvstore.WithNoriKVConfig(func(cc *norikv.ClientConfig) { cc.Timeout = 30 * time.Second }),
		kvstore.WithOnSetHook(func(k, v []byte) { sets.Add(1) }))
	want := map[string]string{}
	write := func(from, to int) {
		for i := from; i < to; i++ {
			k, v := fmt.Sprintf("k%d", i%80), fmt.Sprintf("v%d", i)
			// an idempotency key: a retry after the kill cannot apply twice
			if _, err := raw.Put(ctx, []byte(ns+"/"+k), []byte(v), &norikv.PutOptions{IdempotencyKey: v}); err != nil {
				t.Fatalf("put %d: %v", i, err)
			}
			want[k] = v
		}
	}
	write(0, 150)
	leads := map[string]int{}
	for _, s := range view.Shards {
		for _, r := range s.Replicas {
			if r.Leader {
				leads[r.NodeID]++
			}
		}
	}
	var victim *node
	for _, nd := range nodes {
		if victim == nil || leads[nd.id] > leads[victim.id] {
			victim = nd
		}
	}
	victim.srv.Kill()
	write(150, 300)
	eventually(t, "local storage equal to the 300 writes", func() bool {
		for k, v := range want {
			if got, err := c.Get(ctx, []byte(k)); err != nil || string(got) != v {
				return false
			}
		}
		return true
	})
	if n := sets.Load(); n != 300 {
		t.Fatalf("OnSet fired %d times for 300 puts, want each exactly once", n)
	}
	if err := c.Put(ctx, []byte("mine"), []byte("yes")); err != nil {
		t.Fatal(err)
	}
	if v, err := c.Get(ctx, []byte("mine")); err != nil || string(v) != "yes" {
		t.Fatalf("Get(mine) after the kill = %q, %v", v, err)
	}
}
