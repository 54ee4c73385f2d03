// Package examples runs every code sample of the Go client API guide (the
// programs in the directories beside this file) against a real
// norikv-server. The samples hard-code localhost:9001, so the server is
// started with --rpc-addr=127.0.0.1:9001; the test waits for that port to
// be free first. Skipped only when no server binary exists.
package examples

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/norikv/norikv-go/testing/ephemeral"
)

const sampleAddr = "127.0.0.1:9001"

type sample struct {
	dir  string
	want []string // substrings of the program's output
}

var samples = []sample{
	{"quickstart", []string{"Wrote version: ", `Value: {"name":"Alice","age":30}`}},
	{"configuration", []string{"Basic configuration: nodes [node1:9001 node2:9001], 1024 shards, timeout 5s", "Connected with the retry configuration"}},
	{"core", []string{"Written at version: ", `GET: {"name":"Alice"}`, "PUT with options wrote version", "Linearizable GET: paid", "DELETE with options done", "core operations: ok"}},
	{"advanced", []string{"Counter after CAS: 42", "Idempotent put: v1", "Cluster epoch: ", "Nodes: 1", "Active connections: ", "Total nodes: 1", "Cached leaders: 1024"}},
	{"errorhandling", []string{"Key not found", "Retry pattern: written", "Fallback value: default", "Stored value: v"}},
	{"bestpractices", []string{"Read with a 5 s timeout: hello", "Version conflict loop: updated", "Goroutines: 100 keys written", "Concurrent access: 50 keys written"}},
	{"health", []string{"Healthy: "}},
	{"complete", []string{"Written: ", `Read: {"user_id":42}`, "Stats: {Pool:{ActiveConnections:"}},
	{"vector", []string{"Index created", "Create with options: created=false", "Inserted at version: ",
		"Search took ", "ID: doc-123, Distance: ", "Vector dims: 1536", "Vector has 1536 dimensions",
		"Vector deleted", "Delete with options: deleted=false", "Index dropped", "Index did not exist",
		"Similar products:", " prod-001 (distance: 1.0000)", "vector samples: ok"}},
	{"kvstore", []string{"Get: Ann is 41", "Range: bob\nRange: cy\n", "OnSet hooks: 3", "Watch: PUT dee"}},
}

// The TTL sample sleeps 61 s; it runs beside the others.
var ttlSample = sample{"ttl", []string{"Key expired"}}

func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return filepath.Join(runtime.GOROOT(), "bin", "go")
}

// waitPortFree waits until nothing listens on addr.
func waitPortFree(t *testing.T, addr string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		l, err := net.Listen("tcp", addr)
		if err == nil {
			l.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the samples need %s, which stayed taken for %v: %v", addr, within, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func runSample(t *testing.T, bin string, s sample) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(bin, s.dir))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Errorf("sample %s failed: %v\noutput:\n%s", s.dir, err, out)
		return
	}
	for _, w := range s.want {
		if !strings.Contains(string(out), w) {
			t.Errorf("sample %s: output lacks %q\noutput:\n%s", s.dir, w, out)
		}
	}
}

func TestGuideSamplesRunAgainstARealServer(t *testing.T) {
	if _, err := ephemeral.FindBinary(); err != nil {
		t.Skipf("no norikv-server binary to run the samples against: %v", err)
	}
	bin := t.TempDir()
	buildSamples := func(pkgs ...string) {
		args := append([]string{"build", "-o", bin + string(os.PathSeparator)}, pkgs...)
		if out, err := exec.Command(goTool(), args...).CombinedOutput(); err != nil {
			t.Fatalf("building the samples %v: %v\n%s", pkgs, err, out)
		}
	}

	// Another SDK's sample run may hold the port for a while (its TTL
	// sample sleeps a minute too).
	waitPortFree(t, sampleAddr, 3*time.Minute)
	srv := ephemeral.StartT(t, &ephemeral.Options{Args: []string{"--rpc-addr=" + sampleAddr}})
	if srv.GRPCAddr != sampleAddr {
		t.Fatalf("server serves on %s, want %s", srv.GRPCAddr, sampleAddr)
	}

	// The TTL sample sleeps 61 s: build and start it first, and build and
	// run the others meanwhile.
	buildSamples("./" + ttlSample.dir)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		runSample(t, bin, ttlSample)
	}()
	var pkgs []string
	for _, s := range samples {
		pkgs = append(pkgs, "./"+s.dir)
	}
	buildSamples(pkgs...)
	for _, s := range samples {
		runSample(t, bin, s)
	}
	wg.Wait()
}

// Without a server the samples are still type-checked and vetted, so that
// an API change that breaks a guide sample fails here at once.
func TestSamplesCompileAndVet(t *testing.T) {
	out, err := exec.Command(goTool(), "vet", "./...").CombinedOutput()
	if err != nil {
		t.Fatalf("go vet of the samples: %v\n%s", err, out)
	}
}
