package norikv_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	norikv "github.com/norikv/norikv-go"
	"github.com/norikv/norikv-go/testing/ephemeral"
)

type clusterNode struct {
	id, rpc, peer string
	srv           *ephemeral.Server
}

// startCluster starts n real norikv-server processes that know each other
// as seeds, each with its own data directory, on loopback ports.
func startCluster(t *testing.T, n int) []*clusterNode {
	t.Helper()
	if _, err := ephemeral.FindBinary(); err != nil {
		t.Skipf("no norikv-server binary to test against: %v", err)
	}
	nodes := make([]*clusterNode, n)
	for i := range nodes {
		rpc, err1 := ephemeral.FreeAddr()
		peer, err2 := ephemeral.FreeAddr()
		if err1 != nil || err2 != nil {
			t.Fatal(err1, err2)
		}
		nodes[i] = &clusterNode{id: fmt.Sprintf("n%d", i+1), rpc: rpc, peer: peer}
	}
	dir := t.TempDir()
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i, nd := range nodes {
		var seeds []string
		for j, o := range nodes {
			if j != i {
				seeds = append(seeds, o.peer)
			}
		}
		args := []string{
			"--node-id=" + nd.id,
			"--rpc-addr=" + nd.rpc,
			"--peer-addr=" + nd.peer,
			"--http-addr=127.0.0.1:0",
			"--data-dir=" + filepath.Join(dir, nd.id),
			"--cluster-seed-nodes=" + strings.Join(seeds, ","),
		}
		wg.Add(1)
		go func(i int, nd *clusterNode) {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			nd.srv, errs[i] = ephemeral.Start(ctx, &ephemeral.Options{NotEphemeral: true, Args: args, ReadyAddr: nd.rpc})
		}(i, nd)
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
			if strings.Contains(err.Error(), "not supported by this build") &&
				os.Getenv("NORIKV_REQUIRE_CLUSTER") != "1" {
				t.Skipf("the server refuses multi-node clusters (not on main yet): %v", err)
			}
			t.Fatalf("starting cluster node %s: %v", nodes[i].id, err)
		}
	}
	return nodes
}

// waitForFullView waits until the client sees n alive nodes and a leader
// for every shard. A server that runs but does not form clusters yet
// (clustering has not landed on main) never gets there: the test is then
// skipped with that reason, unless NORIKV_REQUIRE_CLUSTER=1.
func waitForFullView(t *testing.T, c *norikv.Client, n int, within time.Duration) *norikv.ClusterView {
	t.Helper()
	deadline := time.Now().Add(within)
	var v *norikv.ClusterView
	for time.Now().Before(deadline) {
		v = c.GetClusterView()
		if v != nil && alive(v) == n && allLed(v) {
			return v
		}
		time.Sleep(100 * time.Millisecond)
	}
	msg := fmt.Sprintf("the servers did not form a %d-node cluster within %v (last view: %d alive nodes)", n, within, alive(v))
	if os.Getenv("NORIKV_REQUIRE_CLUSTER") == "1" {
		t.Fatal(msg)
	}
	t.Skip(msg + "; clustering is not on main yet (set NORIKV_REQUIRE_CLUSTER=1 to fail instead)")
	return nil
}

func alive(v *norikv.ClusterView) int {
	if v == nil {
		return 0
	}
	n := 0
	for _, nd := range v.Nodes {
		if nd.Role == "alive" {
			n++
		}
	}
	return n
}

func allLed(v *norikv.ClusterView) bool {
	for _, s := range v.Shards {
		led := false
		for _, r := range s.Replicas {
			led = led || r.Leader
		}
		if !led {
			return false
		}
	}
	return len(v.Shards) > 0
}

func TestClusterClientSurvivesLeaderKillAndSeesTopologyChange(t *testing.T) {
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

	events := make(chan *norikv.TopologyChangeEvent, 1024)
	unsub := c.OnTopologyChange(func(ev *norikv.TopologyChangeEvent) {
		select {
		case events <- ev:
		default:
		}
	})
	defer unsub()

	const keys = 200
	versions := make(map[string]*norikv.Version)
	for i := 0; i < keys; i++ {
		k := fmt.Sprintf("cluster-key-%d", i)
		v, err := c.Put(ctx, []byte(k), []byte("v-"+k), nil)
		if err != nil {
			t.Fatalf("Put %s: %v", k, err)
		}
		versions[k] = v
	}

	// Kill (SIGKILL) the node that leads the most shards.
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
		for _, vn := range view.Nodes {
			if vn.Addr == nd.rpc && (victim == nil || leads[vn.ID] > leads[victimID(view, victim)]) {
				victim = nd
			}
		}
	}
	if victim == nil || leads[victimID(view, victim)] == 0 {
		t.Fatalf("no node of %v leads a shard in view %d", addrs, view.Epoch)
	}
	killView := c.GetClusterView()
	victimNode := victimID(killView, victim)
	victimLed := map[uint32]bool{}
	for _, s := range killView.Shards {
		for _, r := range s.Replicas {
			if r.Leader && r.NodeID == victimNode {
				victimLed[s.ID] = true
			}
		}
	}
	victim.srv.Kill()

	// Every acknowledged write is still readable, and new writes work,
	// through the client's own retries and redirects.
	for k, v := range versions {
		r, err := c.Get(ctx, []byte(k), &norikv.GetOptions{Consistency: norikv.ConsistencyLinearizable})
		if err != nil {
			t.Fatalf("Get %s after killing %s: %v", k, victim.rpc, err)
		}
		if string(r.Value) != "v-"+k || !r.Version.Equal(v) {
			t.Fatalf("Get %s = %q@%v, want %q@%v", k, r.Value, r.Version, "v-"+k, v)
		}
	}
	for i := 0; i < keys; i++ {
		k := fmt.Sprintf("after-kill-%d", i)
		if _, err := c.Put(ctx, []byte(k), []byte("x"), nil); err != nil {
			t.Fatalf("Put %s after killing %s: %v", k, victim.rpc, err)
		}
	}

	// The view changes (leaders move off the dead node, or the node is
	// declared dead) and the listener hears of it.
	deadline := time.After(60 * time.Second)
	for {
		select {
		case ev := <-events:
			// (Epochs are per node: the client may have moved to
			// another node, so the event is judged by its content.)
			for _, id := range ev.RemovedNodes {
				if id == victimNode {
					return
				}
			}
			for shard, leader := range ev.LeaderChanges {
				if victimLed[shard] && leader != victimNode {
					return
				}
			}
		case <-deadline:
			t.Fatalf("no topology change event moved leadership off %s (%s) after SIGKILL", victimNode, victim.rpc)
		}
	}
}

func victimID(v *norikv.ClusterView, nd *clusterNode) string {
	if nd == nil {
		return ""
	}
	for _, vn := range v.Nodes {
		if vn.Addr == nd.rpc {
			return vn.ID
		}
	}
	return ""
}
