// Package cluster is NoriKV's cluster fault-testing harness: it runs real
// norikv-server processes on 127.0.0.1, routes every peer link through a TCP
// proxy that a test can cut, cut one way, delay and heal, kills, restarts and
// pauses nodes, records the history of concurrent clients and checks it for
// linearizability with Porcupine. docs/testing-clusters.md explains it.
//
// This file: one server process (start, READY wait, SIGKILL, SIGTERM,
// SIGSTOP/SIGCONT, restart on the same data directory and ports).
package cluster

import (
	"bufio"
	"fmt"
	"io"
	"math/rand"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// ServerBin is the norikv-server to run: $NORIKV_SERVER_BIN, else the
// repository's build/src/server/norikv-server.
func ServerBin(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("NORIKV_SERVER_BIN"); p != "" {
		return p
	}
	p, _ := filepath.Abs("../../build/src/server/norikv-server")
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("norikv-server not found at %s (run `make build` or set NORIKV_SERVER_BIN)", p)
	}
	return p
}

// FreePort returns a loopback port that was free a moment ago. Another
// process may take it before the server binds it; tests on a shared machine
// accept that small race (the start fails loudly naming the address).
//
// The port comes from below the kernel's ephemeral range (which port 0
// draws from, as do the source ports of outbound connections): a port from
// inside it can be taken by some process's outbound connection between this
// check and the server's bind, failing the start with EADDRINUSE.
func FreePort(t testing.TB) int {
	t.Helper()
	lo := ephemeralLow()
	for i := 0; i < 200 && lo > 12000; i++ {
		portMu.Lock()
		port := 10000 + portRand.Intn(lo-10000)
		taken := handedOut[port]
		portMu.Unlock()
		if taken {
			continue // given to an earlier caller whose server may not be bound yet
		}
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			l.Close()
			portMu.Lock()
			handedOut[port] = true
			portMu.Unlock()
			return port
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

var portMu sync.Mutex

// handedOut: ports FreePort returned in this process. A port is only free
// until its server binds it, so two draws of one cluster must never give
// the same port (nine draws per 3-node cluster made that a few-percent
// chance per suite run).
var handedOut = map[int]bool{}
var portRand = rand.New(rand.NewSource(time.Now().UnixNano() ^ int64(os.Getpid())<<20))

// ephemeralLow is the first port of the kernel's ephemeral range (32768
// when it cannot be read).
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err == nil {
		var lo, hi int
		if n, _ := fmt.Sscan(string(b), &lo, &hi); n == 2 && lo > 1024 {
			return lo
		}
	}
	return 32768
}

// ErrClusterRefused is returned (wrapped) when the server refused to start
// because this build does not run multi-node clusters yet.
type ErrClusterRefused struct{ Msg string }

func (e *ErrClusterRefused) Error() string {
	return "norikv-server refuses multi-node clusters: " + e.Msg
}

// The refusal norikv-server prints today (exit status 2): "multi-node
// clusters are not supported by this build yet: cluster.seed_nodes must be
// empty". Matched loosely so a rewording still reads as a refusal, but only
// together with exit status 2 and a mention of clusters or seed nodes.
var refusalRE = regexp.MustCompile(`(?i)(not supported|not built|not implemented|not available)`)
var refusalTopicRE = regexp.MustCompile(`(?i)(multi-node|seed_nodes|seed nodes|cluster)`)

// Proc is one norikv-server process (and its restarts). Every start uses the
// same arguments, so the same data directory and ports.
type Proc struct {
	Name    string   // for logs: n1, n2, ...
	Args    []string // command-line arguments
	LogPath string   // stderr of every run is appended here

	t   testing.TB
	bin string

	mu      sync.Mutex
	cmd     *exec.Cmd
	done    chan struct{} // closed when the current run exited
	exitErr error
	paused  bool
	readyCh chan string
	tail    *tailBuf
	grpc    string
	http    string
	runs    int
}

// NewProc prepares (does not start) a server process. Its processes are
// killed when the test ends, also when it fails.
func NewProc(t testing.TB, name, logPath string, args ...string) *Proc {
	p := &Proc{Name: name, Args: args, LogPath: logPath, t: t, bin: ServerBin(t)}
	t.Cleanup(p.Kill)
	return p
}

// Start runs the server and waits up to timeout for its READY line. A server
// that exits first returns an error holding the tail of its stderr; the
// refusal of seed nodes is an *ErrClusterRefused.
func (p *Proc) Start(timeout time.Duration) error {
	if err := p.Launch(); err != nil {
		return err
	}
	return p.WaitReady(timeout)
}

// Launch starts the process without waiting for READY.
func (p *Proc) Launch() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil {
		return fmt.Errorf("%s: already running (pid %d)", p.Name, p.cmd.Process.Pid)
	}
	logf, err := os.OpenFile(p.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	p.runs++
	fmt.Fprintf(logf, "==== %s run %d at %s: %s %s\n", p.Name, p.runs,
		time.Now().Format(time.RFC3339Nano), p.bin, strings.Join(p.Args, " "))
	cmd := exec.Command(p.bin, p.Args...)
	// The server dies with the test process even when that is killed.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	tail := &tailBuf{max: 16 << 10}
	cmd.Stderr = io.MultiWriter(logf, tail)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		logf.Close()
		return err
	}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return err
	}
	p.cmd, p.tail, p.paused, p.exitErr = cmd, tail, false, nil
	p.grpc, p.http = "", ""
	done := make(chan struct{})
	p.done = done
	readyCh := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			fmt.Fprintf(logf, "[stdout] %s\n", line)
			if strings.HasPrefix(line, "READY ") {
				select {
				case readyCh <- line:
				default:
				}
			}
		}
		io.Copy(io.Discard, stdout)
		err := cmd.Wait()
		p.mu.Lock()
		p.exitErr = err
		if p.cmd == cmd {
			p.cmd = nil
		}
		p.mu.Unlock()
		logf.Close()
		close(done)
	}()
	p.readyCh = readyCh
	return nil
}

// WaitReady waits for the READY line of the current run.
func (p *Proc) WaitReady(timeout time.Duration) error {
	p.mu.Lock()
	readyCh, done := p.readyCh, p.done
	p.mu.Unlock()
	if done == nil {
		return fmt.Errorf("%s: not started", p.Name)
	}
	select {
	case line := <-readyCh:
		p.mu.Lock()
		for _, f := range strings.Fields(line)[1:] {
			if v, ok := strings.CutPrefix(f, "grpc="); ok {
				p.grpc = v
			}
			if v, ok := strings.CutPrefix(f, "http="); ok {
				p.http = v
			}
		}
		p.mu.Unlock()
		return nil
	case <-done:
		p.mu.Lock()
		err, tail := p.exitErr, p.tail.String()
		p.mu.Unlock()
		var ee *exec.ExitError
		if asExit(err, &ee) && ee.ExitCode() == 2 && refusalRE.MatchString(tail) &&
			refusalTopicRE.MatchString(tail) {
			return &ErrClusterRefused{Msg: strings.TrimSpace(lastLines(tail, 3))}
		}
		return fmt.Errorf("%s exited before READY (%v); log %s; stderr tail:\n%s", p.Name, err,
			p.LogPath, lastLines(tail, 30))
	case <-time.After(timeout):
		return fmt.Errorf("%s: no READY line within %v (log %s); stderr tail:\n%s", p.Name, timeout,
			p.LogPath, lastLines(p.tail.String(), 30))
	}
}

// ReadyGRPC and ReadyHTTP are the addresses the current run printed in READY.
func (p *Proc) ReadyGRPC() string { p.mu.Lock(); defer p.mu.Unlock(); return p.grpc }
func (p *Proc) ReadyHTTP() string { p.mu.Lock(); defer p.mu.Unlock(); return p.http }

// PID of the running process, 0 when not running.
func (p *Proc) PID() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// Running says whether a process of this node is alive (paused counts).
func (p *Proc) Running() bool { return p.PID() != 0 }

// Paused says whether the process is stopped by SIGSTOP.
func (p *Proc) Paused() bool { p.mu.Lock(); defer p.mu.Unlock(); return p.paused }

// Kill sends SIGKILL (a crash) and waits until the process is reaped. A
// paused process dies as well. No-op when not running.
func (p *Proc) Kill() {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Signal(syscall.SIGKILL)
	<-done
}

// Stop sends SIGTERM and waits up to timeout for a clean exit (then kills).
func (p *Proc) Stop(timeout time.Duration) error {
	p.mu.Lock()
	cmd, done, paused := p.cmd, p.done, p.paused
	p.mu.Unlock()
	if cmd == nil {
		return nil
	}
	if paused {
		cmd.Process.Signal(syscall.SIGCONT)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
		p.mu.Lock()
		err := p.exitErr
		p.mu.Unlock()
		return err
	case <-time.After(timeout):
		p.Kill()
		return fmt.Errorf("%s did not exit within %v of SIGTERM", p.Name, timeout)
	}
}

// Pause sends SIGSTOP: the process keeps its sockets but runs nothing, as a
// long GC pause or a frozen VM would.
func (p *Proc) Pause() error { return p.signal(syscall.SIGSTOP, true) }

// Resume sends SIGCONT.
func (p *Proc) Resume() error { return p.signal(syscall.SIGCONT, false) }

func (p *Proc) signal(sig syscall.Signal, paused bool) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return fmt.Errorf("%s is not running", p.Name)
	}
	if err := p.cmd.Process.Signal(sig); err != nil {
		return err
	}
	p.paused = paused
	return nil
}

// Exited is closed when the current run ends.
func (p *Proc) Exited() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.done == nil {
		c := make(chan struct{})
		close(c)
		return c
	}
	return p.done
}

// Tail is the end of the current run's stderr.
func (p *Proc) Tail() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tail == nil {
		return ""
	}
	return p.tail.String()
}

type tailBuf struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (b *tailBuf) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.b = append(b.b, p...)
	if len(b.b) > b.max {
		b.b = append([]byte(nil), b.b[len(b.b)-b.max:]...)
	}
	return len(p), nil
}

func (b *tailBuf) String() string {
	if b == nil {
		return ""
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.b)
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func asExit(err error, target **exec.ExitError) bool {
	ee, ok := err.(*exec.ExitError)
	if ok {
		*target = ee
	}
	return ok
}
