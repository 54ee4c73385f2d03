package cluster

// The link proxy against a plain TCP echo server: it forwards, cuts both
// ways, cuts one way, heals (closing connections that lost bytes), delays,
// and follows a target that goes away and comes back.

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// echoServer echoes every line back, prefixed with "echo:"; it counts the
// lines it received.
type echoServer struct {
	ln    net.Listener
	mu    sync.Mutex
	lines []string
}

func newEcho(t *testing.T, addr string) *echoServer {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	e := &echoServer{ln: ln}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					e.mu.Lock()
					e.lines = append(e.lines, strings.TrimSpace(line))
					e.mu.Unlock()
					if _, err := io.WriteString(c, "echo:"+line); err != nil {
						return
					}
				}
			}()
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return e
}

func (e *echoServer) received() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.lines...)
}

type lineConn struct {
	c net.Conn
	r *bufio.Reader
}

func dialLine(t *testing.T, addr string) *lineConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &lineConn{c: c, r: bufio.NewReader(c)}
}

func (l *lineConn) send(t *testing.T, s string) {
	t.Helper()
	if _, err := io.WriteString(l.c, s+"\n"); err != nil {
		t.Fatalf("write %q: %v", s, err)
	}
}

// recv reads one line within d; "" and the error when none came.
func (l *lineConn) recv(d time.Duration) (string, error) {
	l.c.SetReadDeadline(time.Now().Add(d))
	s, err := l.r.ReadString('\n')
	return strings.TrimSpace(s), err
}

func waitFor(t *testing.T, d time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func newTestLink(t *testing.T, target string) *Link {
	t.Helper()
	l, err := NewLink(0, 1, target)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Close)
	return l
}

func TestLinkForwardsBothWays(t *testing.T) {
	e := newEcho(t, "127.0.0.1:0")
	l := newTestLink(t, e.ln.Addr().String())
	c := dialLine(t, l.Addr())
	for _, s := range []string{"one", "two", strings.Repeat("x", 100000)} {
		c.send(t, s)
		got, err := c.recv(5 * time.Second)
		if err != nil || got != "echo:"+s {
			t.Fatalf("echo of %.10q: %.20q, %v", s, got, err)
		}
	}
}

func TestLinkCutDropsBothWaysAndHealClosesTheDamagedConnection(t *testing.T) {
	e := newEcho(t, "127.0.0.1:0")
	l := newTestLink(t, e.ln.Addr().String())
	c := dialLine(t, l.Addr())
	c.send(t, "before")
	if got, _ := c.recv(5 * time.Second); got != "echo:before" {
		t.Fatalf("before the cut: %q", got)
	}
	l.Cut()
	c.send(t, "during")
	if got, err := c.recv(300 * time.Millisecond); err == nil {
		t.Fatalf("a cut link delivered %q", got)
	}
	if n := len(e.received()); n != 1 {
		t.Fatalf("the server received %d lines through a cut link, want 1: %v", n, e.received())
	}
	// A connection made during the cut gets nowhere either.
	c2 := dialLine(t, l.Addr())
	c2.send(t, "new-during")
	if got, err := c2.recv(300 * time.Millisecond); err == nil {
		t.Fatalf("a new connection through a cut link got %q", got)
	}
	l.Heal()
	// Both connections lost bytes: healing closes them rather than resume a
	// stream with a hole in it.
	for _, lc := range []*lineConn{c, c2} {
		if _, err := lc.recv(2 * time.Second); err == nil || isTimeout(err) {
			t.Fatalf("a connection that lost bytes survived the heal: %v", err)
		}
	}
	c3 := dialLine(t, l.Addr())
	c3.send(t, "after")
	if got, err := c3.recv(5 * time.Second); got != "echo:after" {
		t.Fatalf("after heal: %q, %v", got, err)
	}
	if r := e.received(); len(r) != 2 || r[1] != "after" {
		t.Fatalf("server received %v, want [before after]", r)
	}
}

func TestLinkOneWayCutForwardsOneDirectionOnly(t *testing.T) {
	e := newEcho(t, "127.0.0.1:0")
	l := newTestLink(t, e.ln.Addr().String())
	c := dialLine(t, l.Addr())
	// Answers dropped, requests flow: the server hears, the client does not.
	l.Drop(false, true)
	c.send(t, "req1")
	waitFor(t, 5*time.Second, "the server to receive req1", func() bool { return len(e.received()) == 1 })
	if got, err := c.recv(300 * time.Millisecond); err == nil {
		t.Fatalf("an answer crossed the dropped direction: %q", got)
	}
	l.Heal()
	// Requests dropped, answers would flow: the server hears nothing.
	c2 := dialLine(t, l.Addr())
	l.Drop(true, false)
	c2.send(t, "req2")
	time.Sleep(300 * time.Millisecond)
	if r := e.received(); len(r) != 1 {
		t.Fatalf("a request crossed the dropped direction: %v", r)
	}
	l.Heal()
	c3 := dialLine(t, l.Addr())
	c3.send(t, "req3")
	if got, err := c3.recv(5 * time.Second); got != "echo:req3" {
		t.Fatalf("after heal: %q, %v", got, err)
	}
}

func TestLinkDelayHoldsEveryChunk(t *testing.T) {
	e := newEcho(t, "127.0.0.1:0")
	l := newTestLink(t, e.ln.Addr().String())
	l.SetDelay(150 * time.Millisecond)
	c := dialLine(t, l.Addr())
	t0 := time.Now()
	c.send(t, "slow")
	got, err := c.recv(5 * time.Second)
	if got != "echo:slow" {
		t.Fatalf("delayed echo: %q, %v", got, err)
	}
	// Two delayed hops (request and answer): at least 300 ms. No upper
	// bound: the machine is shared.
	if el := time.Since(t0); el < 300*time.Millisecond {
		t.Fatalf("round trip took %v through a 150 ms link, want >= 300 ms", el)
	}
	l.SetDelay(0)
	c.send(t, "fast")
	if got, _ := c.recv(5 * time.Second); got != "echo:fast" {
		t.Fatalf("after the delay: %q", got)
	}
}

func TestLinkFollowsATargetThatRestarts(t *testing.T) {
	e := newEcho(t, "127.0.0.1:0")
	addr := e.ln.Addr().String()
	l := newTestLink(t, addr)
	c := dialLine(t, l.Addr())
	c.send(t, "a")
	if got, _ := c.recv(5 * time.Second); got != "echo:a" {
		t.Fatalf("first: %q", got)
	}
	e.ln.Close() // the peer goes away: new connections are closed at once
	time.Sleep(50 * time.Millisecond)
	dead := dialLine(t, l.Addr())
	if _, err := dead.recv(2 * time.Second); err == nil || isTimeout(err) {
		t.Fatalf("a connection to a dead target was not closed: %v", err)
	}
	newEcho(t, addr) // back on the same port, as a restarted node is
	c2 := dialLine(t, l.Addr())
	c2.send(t, "b")
	if got, err := c2.recv(5 * time.Second); got != "echo:b" {
		t.Fatalf("after the target came back: %q, %v", got, err)
	}
	l.Reset()
	if _, err := c2.recv(2 * time.Second); err == nil || isTimeout(err) {
		t.Fatalf("Reset left the connection open: %v", err)
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// The cluster-level cuts map onto the right links and directions: three
// echo servers stand in for three nodes' peer ports.
func TestClusterCutsMapOntoTheRightLinksAndDirections(t *testing.T) {
	echoes := make([]*echoServer, 3)
	c := &Cluster{T: t, Links: map[[2]int]*Link{}}
	for i := range echoes {
		echoes[i] = newEcho(t, "127.0.0.1:0")
		c.Nodes = append(c.Nodes, &Node{Index: i, ID: fmt.Sprintf("n%d", i+1), Peer: echoes[i].ln.Addr().String()})
	}
	c.makeLinks()
	// reach says whether a line sent by `from` over its link to `to`
	// arrives at `to` (req) and whether the echo gets back (resp).
	reach := func(from, to int, tag string) (req, resp bool) {
		lc := dialLine(t, c.Link(from, to).Addr())
		before := len(echoes[to].received())
		lc.send(t, tag)
		got, err := lc.recv(400 * time.Millisecond)
		resp = err == nil && got == "echo:"+tag
		req = len(echoes[to].received()) > before
		lc.c.Close()
		return req, resp
	}
	type want struct {
		from, to  int
		req, resp bool
	}
	checkAll := func(phase string, ws []want) {
		t.Helper()
		for k, w := range ws {
			req, resp := reach(w.from, w.to, fmt.Sprintf("%s-%d", phase, k))
			if req != w.req || resp != w.resp {
				t.Fatalf("%s: n%d->n%d: request arrived %v (want %v), answer came back %v (want %v)",
					phase, w.from+1, w.to+1, req, w.req, resp, w.resp)
			}
		}
	}
	checkAll("healthy", []want{{0, 1, true, true}, {1, 0, true, true}, {1, 2, true, true}, {2, 1, true, true}})
	c.Isolate(0)
	checkAll("isolate n1", []want{{0, 1, false, false}, {1, 0, false, false}, {0, 2, false, false},
		{2, 0, false, false}, {1, 2, true, true}, {2, 1, true, true}})
	c.HealAll()
	checkAll("healed", []want{{0, 1, true, true}, {2, 0, true, true}})
	// n1's bytes to n2 are dropped: n1's requests on n1->n2 and n1's
	// answers on n2->n1; n2's requests to n1 arrive.
	c.CutOneWay(0, 1)
	checkAll("one-way n1->n2", []want{{0, 1, false, false}, {1, 0, true, false}, {0, 2, true, true},
		{2, 1, true, true}})
	c.HealAll()
	c.Partition([]int{0, 1})
	checkAll("partition {n1,n2}|{n3}", []want{{0, 1, true, true}, {1, 0, true, true}, {0, 2, false, false},
		{2, 1, false, false}})
	c.HealAll()
	checkAll("healed again", []want{{0, 2, true, true}, {2, 1, true, true}})
}
