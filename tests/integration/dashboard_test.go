package integration

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	pb "github.com/norikv/norikv-go/proto"
)

// artifactDir is where tests leave files for people to look at: the build
// directory's test-artifacts (next to the server binary's build tree), or
// NORIKV_ARTIFACT_DIR.
func artifactDir(t *testing.T) string {
	dir := os.Getenv("NORIKV_ARTIFACT_DIR")
	if dir == "" {
		// <build>/src/server/norikv-server -> <build>/test-artifacts
		dir = filepath.Join(filepath.Dir(serverBin(t)), "..", "..", "test-artifacts")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func healthNode(t *testing.T, s *server) string {
	r, err := http.Get("http://" + s.http + "/health")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	var h struct {
		Node string `json:"node"`
	}
	b, _ := io.ReadAll(r.Body)
	if err := json.Unmarshal(b, &h); err != nil || h.Node == "" {
		t.Fatalf("/health: %v %s", err, b)
	}
	return h.Node
}

// The dashboard, loaded in a real headless Chromium from a running server,
// shows this node, all 1024 shards with their leader, counts that move
// after a put load, the flushes it caused arriving live on the event
// stream, no page errors, and that the node is down within seconds of its
// death.
func TestDashboardInChromiumShowsTheNodeShardsAndLiveLoad(t *testing.T) {
	s := ephemeral(t, "--storage-memtable-size", "1MiB")
	node := healthNode(t, s)
	b := startBrowser(t)
	b.call("Emulation.setDeviceMetricsOverride", map[string]any{"width": 1280, "height": 1900,
		"deviceScaleFactor": 1, "mobile": false})
	b.call("Page.navigate", map[string]any{"url": "http://" + s.http + "/dashboard"})

	b.waitFor("two data updates", `Number(document.body.dataset.updates) >= 2`, 20*time.Second)
	if got := b.evalString(`document.getElementById("node-id").textContent`); got != node {
		t.Fatalf("dashboard shows node %q, /health says %q", got, node)
	}
	if got := b.evalString(`document.getElementById("shard-map").dataset.cells`); got != "1024" {
		t.Fatalf("shard map draws %s cells, want 1024", got)
	}
	if got := b.evalString(`document.getElementById("shard-map").dataset.led`); got != "1024" {
		t.Fatalf("shard map shows %s shards with a leader, want 1024", got)
	}
	if got := b.evalString(`document.getElementById("shards-led").textContent`); got != "1024" {
		t.Fatalf("shards led by this node: %s, want 1024", got)
	}
	nodes := b.evalString(`Array.from(document.querySelectorAll("#nodes .node")).map(n => n.dataset.node).join(",")`)
	if nodes != node {
		t.Fatalf("cluster panel lists nodes %q, want just %q", nodes, node)
	}
	if got := b.evalString(`document.getElementById("status").textContent`); got != "ok" {
		t.Fatalf("status pill says %q, want ok", got)
	}
	// the event history came through /events: every shard got a leader at start
	b.waitFor("the start's leader_change event",
		`!!document.querySelector('#events .ev[data-kind="leader_change"]')`, 10*time.Second)

	before, err := strconv.Atoi(b.evalString(`document.getElementById("op-put-total").textContent`))
	if err != nil {
		t.Fatalf("put total is not a number: %v", err)
	}
	// a put load from 4 clients for ~3 s
	const perClient = 150
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for c := 0; c < 4; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			for i := 0; i < perClient; i++ {
				_, err := s.kv.Put(ctxT(t), &pb.PutRequest{Key: []byte(fmt.Sprintf("dash-%d-%d", c, i)),
					Value: []byte(strings.Repeat("v", 8192))})
				if err != nil {
					errs <- err
					return
				}
				time.Sleep(5 * time.Millisecond)
			}
		}(c)
	}
	// while the load runs the page shows a put rate above zero and the
	// shards taking it among the busiest
	b.waitFor("a put rate above zero and busy shards",
		`Number(document.getElementById("op-put-rate").textContent) > 0 &&
		 document.querySelectorAll("#top-shards tr").length > 0 &&
		 /^[0-9]+$/.test(document.querySelector("#top-shards tr td").textContent)`,
		15*time.Second)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("put: %v", err)
	}
	want := before + 4*perClient
	b.waitFor(fmt.Sprintf("the put total reach %d", want),
		fmt.Sprintf(`Number(document.getElementById("op-put-total").textContent) >= %d`, want),
		10*time.Second)
	if got := b.evalString(`document.getElementById("raft-lat").textContent`); !strings.Contains(got, "commit") {
		t.Fatalf("raft panel: %q", got)
	}
	// ~5 MiB of puts into 1 MiB memtables: flush events reach the page live
	b.waitFor("a flush event", `!!document.querySelector('#events .ev[data-kind="flush"]')`,
		10*time.Second)
	b.waitFor("flushes in the LSM panel", `/flushes [1-9]/.test(document.getElementById("lsm-misc").textContent)`,
		10*time.Second)

	path := filepath.Join(artifactDir(t), "dashboard.png")
	b.screenshot(path)
	t.Logf("dashboard screenshot: %s", path)
	if n := b.evalString(`document.getElementById("page-errors").dataset.count`); n != "0" {
		t.Fatalf("the page collected %s errors: %s", n,
			b.evalString(`document.getElementById("page-errors").textContent`))
	}
	if e := b.errors(); len(e) > 0 {
		t.Fatalf("browser console errors: %v", e)
	}

	// the node dies: the page says so within seconds (the browser now logs
	// failed requests, which is expected from here on)
	s.kill()
	b.waitFor("the node unreachable", `document.getElementById("status").textContent === "unreachable" &&
		document.getElementById("live").classList.contains("stale")`, 10*time.Second)
}

// A node that stops and comes back at the same address: the page shows it
// unreachable (with the node's own "stopping" event), then live again,
// with the new process's start on the event timeline.
func TestDashboardFollowsANodeRestart(t *testing.T) {
	dir := t.TempDir()
	args := []string{"--data-dir", dir, "--rpc-addr", fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		"--http-addr", fmt.Sprintf("127.0.0.1:%d", freePort(t))}
	s := start(t, args...)
	b := startBrowser(t)
	b.call("Page.navigate", map[string]any{"url": "http://" + s.http + "/dashboard"})
	b.waitFor("two data updates", `Number(document.body.dataset.updates) >= 2`, 20*time.Second)
	b.waitFor("the event stream live", `document.getElementById("events-state").textContent === "(live)"`,
		10*time.Second)
	startedBefore := `Array.from(document.querySelectorAll('#events .ev[data-kind="lifecycle"]')).filter(e => e.textContent.includes("started")).length`
	n0, _ := strconv.Atoi(b.evalString(startedBefore))
	if n0 < 1 {
		t.Fatalf("no start event on the timeline")
	}

	s.stop()
	b.waitFor("the node's stopping event", `Array.from(document.querySelectorAll('#events .ev[data-kind="lifecycle"]')).some(e => e.textContent.includes("stopping"))`,
		10*time.Second)
	b.waitFor("the node unreachable", `document.getElementById("status").textContent === "unreachable"`,
		10*time.Second)

	s2 := start(t, args...)
	if s2.http != s.http {
		t.Fatalf("restarted on %s, was %s", s2.http, s.http)
	}
	b.waitFor("the node back and ok", `document.getElementById("status").textContent === "ok" &&
		document.getElementById("live").textContent === "live"`, 15*time.Second)
	b.waitFor("the new start on the timeline", fmt.Sprintf(`%s > %d`, startedBefore, n0), 20*time.Second)
	if got := b.evalString(`document.getElementById("shard-map").dataset.led`); got != "1024" {
		t.Fatalf("after the restart the shard map shows %s shards with a leader", got)
	}
	if n := b.evalString(`document.getElementById("page-errors").dataset.count`); n != "0" {
		t.Fatalf("the page collected %s errors: %s", n,
			b.evalString(`document.getElementById("page-errors").textContent`))
	}
}
