package integration

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// startCluster3 starts three ephemeral members of one cluster at once (each
// waits for its seeds before READY) and returns them in node-id order.
func startCluster3(t *testing.T) []*server {
	t.Helper()
	peers := make([]string, 3)
	for i := range peers {
		peers[i] = fmt.Sprintf("127.0.0.1:%d", freePort(t))
	}
	srv := make([]*server, 3)
	errs := make([]error, 3)
	var wg sync.WaitGroup
	for i := 0; i < 3; i++ {
		var seeds []string
		for j := range peers {
			if j != i {
				seeds = append(seeds, peers[j])
			}
		}
		wg.Add(1)
		go func(i int, seeds []string) {
			defer wg.Done()
			srv[i], errs[i] = tryStart(t, "--ephemeral", "--node-id", fmt.Sprintf("n%d", i+1),
				"--rpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--peer-addr", peers[i],
				"--cluster-seed-nodes="+strings.Join(seeds, ","))
		}(i, seeds)
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("starting n%d: %v", i+1, err)
		}
	}
	return srv
}

// The dashboard of one member of a 3-node cluster shows the three nodes,
// every shard with a leader spread over them, and follows the death of
// another member: it is shown dead and its shards get new leaders on the
// survivors, within seconds.
func TestDashboardInChromiumFollowsA3NodeClusterThroughALeaderKill(t *testing.T) {
	nodes := startCluster3(t)
	b := startBrowser(t)
	b.call("Emulation.setDeviceMetricsOverride", map[string]any{"width": 1280, "height": 1900,
		"deviceScaleFactor": 1, "mobile": false})
	b.call("Page.navigate", map[string]any{"url": "http://" + nodes[0].http + "/dashboard"})
	b.waitFor("three alive nodes leading all 1024 shards",
		`document.querySelectorAll('#nodes .node[data-role="alive"]').length === 3 &&
		 document.getElementById("shard-map").dataset.led === "1024" &&
		 Array.from(document.querySelectorAll("#nodes .node")).reduce((a, n) => a + Number(n.dataset.leads), 0) === 1024`,
		30*time.Second)
	leads := map[string]int{}
	for _, id := range []string{"n1", "n2", "n3"} {
		v, err := strconv.Atoi(b.evalString(fmt.Sprintf(`document.querySelector('#nodes .node[data-node="%s"]').dataset.leads`, id)))
		if err != nil {
			t.Fatalf("leads of %s: %v", id, err)
		}
		leads[id] = v
	}
	t.Logf("leaders per node on the page: %v", leads)
	// kill whichever of n2 and n3 leads more (the page is served by n1)
	victim := 1
	if leads["n3"] > leads["n2"] {
		victim = 2
	}
	vid := fmt.Sprintf("n%d", victim+1)
	if leads[vid] == 0 {
		t.Fatalf("%s leads no shard: %v", vid, leads)
	}
	nodes[victim].kill()
	b.waitFor(vid+" dead and its shards led by the survivors",
		fmt.Sprintf(`(() => { const v = document.querySelector('#nodes .node[data-node="%s"]');
		  return v && v.dataset.role === "dead" && v.dataset.leads === "0" &&
		    document.getElementById("shard-map").dataset.led === "1024"; })()`, vid),
		30*time.Second)
	path := filepath.Join(artifactDir(t), "dashboard-cluster.png")
	b.screenshot(path)
	t.Logf("dashboard screenshot: %s", path)
	if n := b.evalString(`document.getElementById("page-errors").dataset.count`); n != "0" {
		t.Fatalf("the page collected %s errors: %s", n,
			b.evalString(`document.getElementById("page-errors").textContent`))
	}
	if e := b.errors(); len(e) > 0 {
		t.Fatalf("browser console errors: %v", e)
	}
}
