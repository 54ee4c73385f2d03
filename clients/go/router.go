package norikv

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"github.com/norikv/norikv-go/hash"
	"github.com/norikv/norikv-go/internal/singleflight"
)

// router maps keys to the connection of their shard's leader.
//
// The hot path (route) hashes the key and loads one atomic pointer: no lock
// and no allocation. The per-shard leader cache is filled from each new
// ClusterView and corrected by NOT_LEADER hints; a shard whose leader is
// unknown is looked up once however many requests want it (single-flight).
type router struct {
	totalShards int
	leaders     []atomic.Pointer[nodeConn] // index: shard id
	index       atomic.Pointer[viewIndex]  // nil until a view is known
	pool        *pool
	seeds       []string
	rr          atomic.Uint64 // round-robin over fallback nodes

	flights     singleflight.Group[int, *nodeConn]
	discover    func(ctx context.Context) error // fetches and applies a fresh view
	redirects   atomic.Uint64
	discoveries atomic.Uint64
}

// viewIndex is a ClusterView prepared for routing. Immutable once stored.
type viewIndex struct {
	view     *ClusterView
	addrByID map[string]string
	replicas [][]string // shard id -> replica addresses, leader first
	leader   []string   // shard id -> leader address, "" when none is flagged
	live     []string   // addresses of nodes that are alive or suspect
}

func nodePresent(role string) bool {
	return role == "" || role == "alive" || role == "suspect"
}

func buildIndex(v *ClusterView, totalShards int) *viewIndex {
	ix := &viewIndex{view: v, addrByID: make(map[string]string, len(v.Nodes))}
	for _, n := range v.Nodes {
		ix.addrByID[n.ID] = n.Addr
		if nodePresent(n.Role) && n.Addr != "" {
			ix.live = append(ix.live, n.Addr)
		}
	}
	ix.replicas = make([][]string, totalShards)
	ix.leader = make([]string, totalShards)
	for _, s := range v.Shards {
		if int(s.ID) >= totalShards {
			continue
		}
		reps := make([]string, 0, len(s.Replicas))
		for _, r := range s.Replicas {
			if a := ix.addrByID[r.NodeID]; a != "" {
				if r.Leader {
					ix.leader[s.ID] = a
					reps = append([]string{a}, reps...)
				} else {
					reps = append(reps, a)
				}
			}
		}
		ix.replicas[s.ID] = reps
	}
	return ix
}

func newRouter(totalShards int, p *pool, seeds []string) *router {
	return &router{
		totalShards: totalShards,
		leaders:     make([]atomic.Pointer[nodeConn], totalShards),
		pool:        p,
		seeds:       seeds,
	}
}

// route is the hot path: the key's shard and its cached leader (nil when
// unknown). It does not allocate.
func (r *router) route(key []byte) (int, *nodeConn) {
	shard := hash.GetShardForKey(key, r.totalShards)
	return shard, r.leaders[shard].Load()
}

// applyIndex installs a new view: the cache takes the view's leaders.
func (r *router) applyIndex(ix *viewIndex) {
	r.index.Store(ix)
	conns := make(map[string]*nodeConn)
	for shard := 0; shard < r.totalShards; shard++ {
		var nc *nodeConn
		if addr := ix.leader[shard]; addr != "" {
			nc = conns[addr]
			if nc == nil {
				c, err := r.pool.get(addr)
				if err != nil {
					continue
				}
				conns[addr] = c
				nc = c
			}
		}
		r.leaders[shard].Store(nc)
	}
}

// setLeader records a leader learned from a NOT_LEADER hint.
func (r *router) setLeader(shard int, addr string) (*nodeConn, error) {
	nc, err := r.pool.get(addr)
	if err != nil {
		return nil, err
	}
	r.leaders[shard].Store(nc)
	r.redirects.Add(1)
	return nc, nil
}

// forget drops the shard's cached leader if it is still nc.
func (r *router) forget(shard int, nc *nodeConn) {
	r.leaders[shard].CompareAndSwap(nc, nil)
}

// nodeFailed drops nc as the cached leader of every shard: it is
// unreachable, so every shard it led needs a new look-up.
func (r *router) nodeFailed(nc *nodeConn) {
	nc.failedAt.Store(time.Now().UnixNano())
	for i := range r.leaders {
		r.leaders[i].CompareAndSwap(nc, nil)
	}
}

// target picks where to send a request for shard: the cached leader unless
// it is avoid (the address that just failed); otherwise a single-flight
// look-up of the shard's leader; otherwise any other replica or node, which
// will redirect.
func (r *router) target(ctx context.Context, shard int, avoid string) (*nodeConn, error) {
	if nc := r.leaders[shard].Load(); nc != nil && nc.addr != avoid {
		return nc, nil
	}
	if r.discover != nil {
		nc, err, _ := r.flights.Do(ctx, shard, func() (*nodeConn, error) {
			r.discoveries.Add(1)
			if err := r.discover(context.Background()); err != nil {
				return nil, err
			}
			return r.leaders[shard].Load(), nil
		})
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if err == nil && nc != nil && nc.addr != avoid {
			return nc, nil
		}
	}
	return r.fallback(shard, avoid)
}

// fallback returns a node other than avoid, preferring the shard's
// replicas, then live nodes, then the configured seeds.
func (r *router) fallback(shard int, avoid string) (*nodeConn, error) {
	var cands []string
	if ix := r.index.Load(); ix != nil {
		cands = append(cands, ix.replicas[shard]...)
		if len(cands) == 0 {
			cands = append(cands, ix.live...)
		}
	}
	cands = append(cands, r.seeds...)
	n := uint64(len(cands))
	start := r.rr.Add(1)
	for i := uint64(0); i < n; i++ {
		addr := cands[(start+i)%n]
		if addr == avoid {
			continue
		}
		return r.pool.get(addr)
	}
	if avoid != "" {
		// The node that failed is the only one known: try it again.
		return r.pool.get(avoid)
	}
	return nil, errors.New("no node address known")
}

// replica returns one of the shard's replicas, in turn, for reads that any
// replica may serve (stale_ok); nil when the view lists none.
func (r *router) replica(shard int) *nodeConn {
	ix := r.index.Load()
	if ix == nil || len(ix.replicas[shard]) == 0 {
		return nil
	}
	reps := ix.replicas[shard]
	start := r.rr.Add(1)
	for i := uint64(0); i < uint64(len(reps)); i++ {
		nc, err := r.pool.get(reps[(start+i)%uint64(len(reps))])
		if err == nil && !nc.recentlyFailed() {
			return nc
		}
	}
	return nil
}

func (r *router) cachedLeaders() int {
	n := 0
	for i := range r.leaders {
		if r.leaders[i].Load() != nil {
			n++
		}
	}
	return n
}
