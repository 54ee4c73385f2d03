package norikv

import (
	"sync"
	"sync/atomic"
	"time"

	pb "github.com/norikv/norikv-go/proto"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"
)

// nodeConn is the one pooled gRPC connection to a node, with its stubs.
// gRPC multiplexes every concurrent call over it, so one per node suffices.
type nodeConn struct {
	addr string
	cc   *grpc.ClientConn
	kv   pb.KvClient
	meta pb.MetaClient
	vec  pb.VectorClient
	// failedAt is when a call last found the node unreachable (unix ns);
	// optional routing (stale reads) avoids it for a while.
	failedAt atomic.Int64
}

// recentlyFailed reports whether the node failed within the last second.
func (nc *nodeConn) recentlyFailed() bool {
	t := nc.failedAt.Load()
	return t != 0 && time.Since(time.Unix(0, t)) < time.Second
}

// pool holds one nodeConn per address. Its size is bounded by the number of
// distinct node addresses: the configured seeds, the nodes of the current
// view, and leader hints; prune drops the addresses that left the view.
type pool struct {
	mu     sync.Mutex
	conns  map[string]*nodeConn
	closed bool
	opts   []grpc.DialOption
}

func newPool(extra []grpc.DialOption) *pool {
	opts := []grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		// gRPC's default reconnect backoff grows to two minutes; a node
		// that restarts after a crash should be found again within
		// seconds.
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff: backoff.Config{
				BaseDelay:  50 * time.Millisecond,
				Multiplier: 1.6,
				Jitter:     0.2,
				MaxDelay:   2 * time.Second,
			},
			MinConnectTimeout: 2 * time.Second,
		}),
	}
	opts = append(opts, extra...)
	return &pool{conns: make(map[string]*nodeConn), opts: opts}
}

// get returns the connection to addr, creating it (lazily connecting) when
// there is none yet.
func (p *pool) get(addr string) (*nodeConn, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, ErrClosed
	}
	if nc, ok := p.conns[addr]; ok {
		return nc, nil
	}
	cc, err := grpc.NewClient(addr, p.opts...)
	if err != nil {
		return nil, err
	}
	nc := &nodeConn{addr: addr, cc: cc, kv: pb.NewKvClient(cc), meta: pb.NewMetaClient(cc), vec: pb.NewVectorClient(cc)}
	p.conns[addr] = nc
	return nc, nil
}

// prune closes the connections whose address is not in keep.
func (p *pool) prune(keep map[string]bool) {
	p.mu.Lock()
	var drop []*nodeConn
	for addr, nc := range p.conns {
		if !keep[addr] {
			drop = append(drop, nc)
			delete(p.conns, addr)
		}
	}
	p.mu.Unlock()
	for _, nc := range drop {
		_ = nc.cc.Close()
	}
}

func (p *pool) stats() PoolStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := PoolStats{TotalConnections: len(p.conns)}
	for _, nc := range p.conns {
		switch nc.cc.GetState() {
		case connectivity.TransientFailure, connectivity.Shutdown:
		default:
			s.ActiveConnections++
		}
	}
	return s
}

func (p *pool) close() {
	p.mu.Lock()
	conns := p.conns
	p.conns = map[string]*nodeConn{}
	p.closed = true
	p.mu.Unlock()
	for _, nc := range conns {
		_ = nc.cc.Close()
	}
}
