package cluster

// A Link is a TCP proxy in front of one node's peer port, used by exactly one
// other node: node From's seed address for node To is the link's address, and
// the link forwards to To's peer port. A node learns a peer's identity from
// the connection handshake, so the proxy is invisible to it.
//
// Faults:
//   - Drop(fwd, back): bytes flowing in a direction are read and discarded,
//     as a network that loses everything would (the sender's writes succeed,
//     nothing arrives). "fwd" is From -> To (the dialer's bytes), "back" is
//     To -> From. Both: the link is cut.
//   - Heal: forwarding resumes. A connection that lost bytes is closed at
//     that moment (TCP never delivers a stream with a hole in it; the real
//     counterpart of lost bytes is a connection that dies), so the nodes
//     reconnect and resynchronise through Raft.
//   - SetDelay: every chunk is delivered that much later, in order.
//   - Reset: close every connection now (an RST from a middlebox).
//
// New connections made while a direction drops are accepted and dialed
// through, and their bytes in that direction are discarded as well.
//
// The link also relays UDP on the same port number (SWIM runs over UDP on
// the peer port): datagrams node From sends to the link go on to node To's
// peer port, subject to the forward drop and to the delay. Node To's
// datagrams for node From travel on the link To -> From, so a cut or a
// one-way cut affects SWIM exactly as it affects the TCP streams.

import (
	"errors"
	"io"
	"net"
	"sync"
	"time"
)

// Link is one directed proxy From -> To.
type Link struct {
	From, To int // node indexes (0-based), for messages

	ln     net.Listener
	udp    net.PacketConn
	target string
	udpDst *net.UDPAddr

	mu       sync.Mutex
	dropFwd  bool
	dropBack bool
	delay    time.Duration
	conns    map[*proxyConn]struct{}
	closed   bool
	accepted int
	wg       sync.WaitGroup
}

type proxyConn struct {
	client, server net.Conn
	lost           bool // bytes were discarded: close on heal
	once           sync.Once
}

func (c *proxyConn) close() {
	c.once.Do(func() {
		c.client.Close()
		c.server.Close()
	})
}

// NewLink listens on 127.0.0.1 (a free port) and forwards to target.
func NewLink(from, to int, target string) (*Link, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	udp, err := net.ListenPacket("udp", ln.Addr().String())
	if err != nil {
		ln.Close()
		return nil, err
	}
	dst, err := net.ResolveUDPAddr("udp", target)
	if err != nil {
		ln.Close()
		udp.Close()
		return nil, err
	}
	l := &Link{From: from, To: to, ln: ln, udp: udp, target: target, udpDst: dst,
		conns: map[*proxyConn]struct{}{}}
	l.wg.Add(2)
	go l.acceptLoop()
	go l.relayUDP()
	return l, nil
}

// relayUDP forwards datagrams to the target, dropping or delaying them as
// the forward direction says. At most 1024 delayed datagrams wait at once
// (beyond: dropped, as a full router queue would).
func (l *Link) relayUDP() {
	defer l.wg.Done()
	buf := make([]byte, 65536)
	var waiting sync.WaitGroup
	var inFlight int32
	var ifMu sync.Mutex
	defer waiting.Wait()
	for {
		n, _, err := l.udp.ReadFrom(buf)
		if err != nil {
			return
		}
		l.mu.Lock()
		drop, delay, closed := l.dropFwd, l.delay, l.closed
		l.mu.Unlock()
		if closed {
			return
		}
		if drop {
			continue
		}
		pkt := append([]byte(nil), buf[:n]...)
		if delay == 0 {
			l.udp.WriteTo(pkt, l.udpDst)
			continue
		}
		ifMu.Lock()
		if inFlight >= 1024 {
			ifMu.Unlock()
			continue
		}
		inFlight++
		ifMu.Unlock()
		waiting.Add(1)
		time.AfterFunc(delay, func() {
			defer waiting.Done()
			l.udp.WriteTo(pkt, l.udpDst)
			ifMu.Lock()
			inFlight--
			ifMu.Unlock()
		})
	}
}

// Addr is the address node From dials to reach node To.
func (l *Link) Addr() string { return l.ln.Addr().String() }

// Accepted counts the connections accepted so far.
func (l *Link) Accepted() int { l.mu.Lock(); defer l.mu.Unlock(); return l.accepted }

// Active counts the connections open now.
func (l *Link) Active() int { l.mu.Lock(); defer l.mu.Unlock(); return len(l.conns) }

func (l *Link) acceptLoop() {
	defer l.wg.Done()
	for {
		c, err := l.ln.Accept()
		if err != nil {
			return
		}
		l.mu.Lock()
		l.accepted++
		l.mu.Unlock()
		go l.serve(c)
	}
}

func (l *Link) serve(client net.Conn) {
	server, err := net.DialTimeout("tcp", l.target, 2*time.Second)
	if err != nil {
		// The peer is down: the dialer sees its connection closed, as it
		// would see a refused connection without the proxy.
		client.Close()
		return
	}
	pc := &proxyConn{client: client, server: server}
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		pc.close()
		return
	}
	l.conns[pc] = struct{}{}
	l.mu.Unlock()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); l.pump(pc, client, server, true) }()
	go func() { defer wg.Done(); l.pump(pc, server, client, false) }()
	wg.Wait()
	pc.close()
	l.mu.Lock()
	delete(l.conns, pc)
	l.mu.Unlock()
}

type chunk struct {
	b   []byte
	due time.Time
}

// pump copies src to dst, discarding while the direction drops and holding
// each chunk for the link's delay. The delay queue is bounded (256 chunks of
// at most 32 KiB): a full queue stops reading, which backpressures the sender
// as a slow network would.
func (l *Link) pump(pc *proxyConn, src, dst net.Conn, fwd bool) {
	q := make(chan chunk, 256)
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		for c := range q {
			if d := time.Until(c.due); d > 0 {
				time.Sleep(d)
			}
			if _, err := dst.Write(c.b); err != nil {
				pc.close()
				for range q {
				}
				return
			}
		}
	}()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			l.mu.Lock()
			drop := l.dropBack
			if fwd {
				drop = l.dropFwd
			}
			delay := l.delay
			if drop {
				pc.lost = true
			}
			l.mu.Unlock()
			if !drop {
				b := append([]byte(nil), buf[:n]...)
				q <- chunk{b: b, due: time.Now().Add(delay)}
			}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				pc.close()
			}
			close(q)
			<-writerDone
			// Half-close so the other side sees EOF like a direct peer would.
			if tc, ok := dst.(*net.TCPConn); ok {
				tc.CloseWrite()
			}
			return
		}
	}
}

// Drop sets which directions discard their bytes. Drop(true, true) cuts the
// link; Drop(false, false) alone does not close connections that lost bytes
// (Heal does).
func (l *Link) Drop(fwd, back bool) {
	l.mu.Lock()
	l.dropFwd, l.dropBack = fwd, back
	l.mu.Unlock()
}

// Cut drops both directions.
func (l *Link) Cut() { l.Drop(true, true) }

// Heal resumes forwarding both ways and closes every connection that lost
// bytes while cut.
func (l *Link) Heal() {
	l.mu.Lock()
	l.dropFwd, l.dropBack = false, false
	var lost []*proxyConn
	for c := range l.conns {
		if c.lost {
			lost = append(lost, c)
		}
	}
	l.mu.Unlock()
	for _, c := range lost {
		c.close()
	}
}

// SetDelay delays every chunk by d (0: none).
func (l *Link) SetDelay(d time.Duration) {
	l.mu.Lock()
	l.delay = d
	l.mu.Unlock()
}

// Reset closes every open connection.
func (l *Link) Reset() {
	l.mu.Lock()
	var all []*proxyConn
	for c := range l.conns {
		all = append(all, c)
	}
	l.mu.Unlock()
	for _, c := range all {
		c.close()
	}
}

// State reports the link's fault settings.
func (l *Link) State() (dropFwd, dropBack bool, delay time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.dropFwd, l.dropBack, l.delay
}

// Close stops the listener and closes every connection.
func (l *Link) Close() {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.closed = true
	l.mu.Unlock()
	l.ln.Close()
	l.udp.Close()
	l.Reset()
	l.wg.Wait()
}
