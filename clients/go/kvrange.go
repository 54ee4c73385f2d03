package norikv

import (
	"bytes"
	"container/heap"
	"context"
	"fmt"
	"iter"
	"slices"
	"sync"
	"time"

	pb "github.com/norikv/norikv-go/proto"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// RangeOptions select the keys of a Range. Keys are hash-distributed over
// shards, so every range covers every shard; the client asks each node for
// the shards it leads and merges the answers in key order (docs/range.md).
type RangeOptions struct {
	// Start is the inclusive lower bound; nil: unbounded.
	Start []byte
	// End is the exclusive upper bound; nil: unbounded.
	End []byte
	// Prefix, when not empty, keeps only keys that start with it
	// (intersected with Start and End).
	Prefix []byte
	// Limit stops the scan after this many entries; 0: no limit.
	Limit int
	// PageSize is the entries per server response (per node); 0: the
	// server's default (1000); at most 10000.
	PageSize uint32
	// KeysOnly leaves KV.Value empty.
	KeysOnly bool
	// Consistency as for Get: lease (default), linearizable, or stale_ok.
	Consistency ConsistencyLevel
}

// KV is one entry of a Range.
type KV struct {
	Key     []byte
	Value   []byte
	Version *Version
	// Shard is the shard that holds the key.
	Shard int
	// ExpiresAtMs is the absolute expiry in ms since the Unix epoch; 0: none.
	ExpiresAtMs uint64
}

// Range returns the keys selected by options in ascending byte order, as an
// iterator of (entry, error) pairs: the iteration ends after the last entry,
// or after the first error (which matches the sentinel errors as Get's do).
// Pages are fetched as the iteration goes, from every node that leads
// shards, and merged in key order; no server state is held between pages.
// Breaking out of the loop early is fine.
//
//	for kv, err := range client.Range(ctx, &norikv.RangeOptions{Prefix: []byte("user/")}) {
//		if err != nil { ... }
//		use(kv.Key, kv.Value)
//	}
func (c *Client) Range(ctx context.Context, options *RangeOptions) iter.Seq2[*KV, error] {
	return func(yield func(*KV, error) bool) {
		it := c.RangeIter(ctx, options)
		defer it.Close()
		for it.Next() {
			if !yield(it.KV(), nil) {
				return
			}
		}
		if err := it.Err(); err != nil {
			yield(nil, err)
		}
	}
}

// RangeIterator walks a Range explicitly: Next, KV, Err, Close.
type RangeIterator struct {
	c       *Client
	ctx     context.Context
	cancel  context.CancelFunc
	opts    RangeOptions
	base    *pb.RangeRequest
	streams streamHeap
	cur     *KV
	err     error
	yielded int
	started bool
	done    bool

	revMu     sync.Mutex
	revisions map[int]*Version // shard -> revision of the first page that covered it
}

// rangeStream is one node's ordered stream over a set of shards.
type rangeStream struct {
	nc     *nodeConn
	shards []uint32
	token  []byte // continuation for the next page; nil before the first
	buf    []*pb.RangeEntry
	eof    bool // the server said nothing further
}

type streamHeap []*rangeStream

func (h streamHeap) Len() int { return len(h) }
func (h streamHeap) Less(i, j int) bool {
	c := bytes.Compare(h[i].buf[0].GetKey(), h[j].buf[0].GetKey())
	return c < 0 || (c == 0 && h[i].buf[0].GetShard() < h[j].buf[0].GetShard())
}
func (h streamHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *streamHeap) Push(x any)   { *h = append(*h, x.(*rangeStream)) }
func (h *streamHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// RangeIter starts a Range as an explicit iterator. Close it when done.
func (c *Client) RangeIter(ctx context.Context, options *RangeOptions) *RangeIterator {
	it := &RangeIterator{c: c}
	if options != nil {
		it.opts = *options
	}
	it.ctx, it.cancel = context.WithCancel(ctx)
	it.base = &pb.RangeRequest{
		Start:       it.opts.Start,
		End:         it.opts.End,
		Prefix:      it.opts.Prefix,
		Limit:       it.opts.PageSize,
		KeysOnly:    it.opts.KeysOnly,
		Consistency: string(it.opts.Consistency),
	}
	return it
}

// Next advances to the next entry; false at the end or on an error (Err).
func (it *RangeIterator) Next() bool {
	if it.done {
		return false
	}
	if it.c.closed.Load() {
		return it.fail(ErrClosed)
	}
	if it.opts.Limit > 0 && it.yielded >= it.opts.Limit {
		it.done = true
		return false
	}
	if !it.started {
		it.started = true
		shards := make([]uint32, it.c.cfg.TotalShards)
		for i := range shards {
			shards[i] = uint32(i)
		}
		streams, err := it.open(shards, nil)
		if err != nil {
			return it.fail(err)
		}
		for _, s := range streams {
			if len(s.buf) > 0 {
				it.streams = append(it.streams, s)
			}
		}
		heap.Init(&it.streams)
	} else if it.cur != nil {
		// advance the stream the last entry came from
		s := it.streams[0]
		s.buf = s.buf[1:]
		if len(s.buf) == 0 {
			heap.Pop(&it.streams)
			more, err := it.refill(s)
			if err != nil {
				return it.fail(err)
			}
			for _, m := range more {
				heap.Push(&it.streams, m)
			}
		} else {
			heap.Fix(&it.streams, 0)
		}
	}
	if len(it.streams) == 0 {
		it.done = true
		it.cur = nil
		return false
	}
	e := it.streams[0].buf[0]
	it.cur = &KV{Key: e.GetKey(), Value: e.GetValue(), Version: versionFromPB(e.GetVersion()), Shard: int(e.GetShard()), ExpiresAtMs: e.GetExpiresAtMs()}
	it.yielded++
	return true
}

// Revisions returns, per shard covered so far, the revision (the last
// entry applied to the shard) of the first page that covered it. Every
// shard is covered before the first entry is yielded, so after the first
// Next (true or false without an error) it holds every shard. A Watch from
// these revisions sees every change after the scan began, per shard; since
// later pages are read at later snapshots, an event whose version is not
// newer than the version the scan returned for its key is already
// reflected in the scan (docs/range.md). The map is a copy.
func (it *RangeIterator) Revisions() map[int]*Version {
	it.revMu.Lock()
	defer it.revMu.Unlock()
	out := make(map[int]*Version, len(it.revisions))
	for s, v := range it.revisions {
		vv := *v
		out[s] = &vv
	}
	return out
}

// KV is the current entry (valid after Next returned true).
func (it *RangeIterator) KV() *KV { return it.cur }

// Err is the error that ended the iteration, if any.
func (it *RangeIterator) Err() error { return it.err }

// Close releases the iterator (no server state is held between pages).
func (it *RangeIterator) Close() {
	it.done = true
	it.cancel()
}

func (it *RangeIterator) fail(err error) bool {
	it.err = err
	it.done = true
	it.cur = nil
	return false
}

// refill fetches s's next page. The result is the streams (s and any new
// ones for shards s's node no longer covers) that have entries buffered.
func (it *RangeIterator) refill(s *rangeStream) ([]*rangeStream, error) {
	if s.eof {
		return nil, nil
	}
	return it.open(s.shards, s.token)
}

// open fetches the first page for shards from token (nil: from the start),
// one request per node that leads some of them, all in parallel. Shards a
// node did not cover are routed again after a view refresh, with backoff,
// until every shard is covered or the context or the attempts run out.
// Every stream returned has its page fetched (entries buffered or eof).
func (it *RangeIterator) open(shards []uint32, token []byte) ([]*rangeStream, error) {
	c := it.c
	ctx := it.ctx
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.cfg.Timeout)
		defer cancel()
	}
	var out []*rangeStream
	pending := shards
	var last *Error
	for attempt := 1; len(pending) > 0; attempt++ {
		groups := it.group(pending)
		type result struct {
			s       *rangeStream
			covered []uint32
			err     *Error
		}
		results := make([]result, len(groups))
		var wg sync.WaitGroup
		for i, g := range groups {
			wg.Add(1)
			go func() {
				defer wg.Done()
				s := &rangeStream{nc: g.nc, shards: g.shards, token: token}
				covered, err := it.fetch(ctx, s)
				results[i] = result{s, covered, err}
			}()
		}
		wg.Wait()
		pending = nil
		for _, r := range results {
			if r.err != nil {
				last = r.err
				f := classify(r.err.GRPCStatus())
				if f == failPermanent {
					return nil, r.err
				}
				if nodeDown(r.err.GRPCStatus(), f) {
					c.router.nodeFailed(r.s.nc)
				}
				pending = append(pending, r.s.shards...)
				continue
			}
			for _, sh := range r.s.shards {
				if _, ok := slices.BinarySearch(r.covered, sh); !ok {
					pending = append(pending, sh)
				}
			}
			r.s.shards = r.covered
			if len(r.s.shards) > 0 && (len(r.s.buf) > 0 || !r.s.eof) {
				out = append(out, r.s)
			}
		}
		if len(pending) == 0 {
			break
		}
		if ctx.Err() != nil {
			return nil, contextError("range", ctx.Err(), last, attempt)
		}
		if attempt >= c.cfg.Retry.MaxAttempts+len(shards)/64+4 {
			if last != nil {
				return nil, last
			}
			return nil, fmt.Errorf("%w: range: %d shards found no node to serve them", ErrConnection, len(pending))
		}
		slices.Sort(pending)
		// leadership moved or is unknown: refresh the view, then retry
		if c.router.discover != nil {
			_ = c.router.discover(ctx)
		}
		t := time.NewTimer(c.cfg.Retry.backoff(attempt))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, contextError("range", ctx.Err(), last, attempt)
		case <-t.C:
		}
	}
	// a stream whose page held nothing (it examined only expired records)
	// but has more fetches on until it has entries or ends
	var ready []*rangeStream
	for _, s := range out {
		if len(s.buf) > 0 {
			ready = append(ready, s)
			continue
		}
		more, err := it.open(s.shards, s.token)
		if err != nil {
			return nil, err
		}
		ready = append(ready, more...)
	}
	return ready, nil
}

type shardGroup struct {
	nc     *nodeConn
	shards []uint32
}

// group assigns shards to the nodes to ask: the leader the router knows
// (any replica for stale_ok), else any live node (which answers for what
// it can; the rest is routed again).
func (it *RangeIterator) group(shards []uint32) []shardGroup {
	c := it.c
	stale := anyReplicaMayServe(it.opts.Consistency)
	byAddr := map[string]*shardGroup{}
	var order []string
	for _, sh := range shards {
		var nc *nodeConn
		if stale {
			nc = c.router.replica(int(sh))
		}
		if nc == nil {
			nc = c.router.leaders[sh].Load()
		}
		if nc == nil {
			var err error
			nc, err = c.router.fallback(int(sh), "")
			if err != nil {
				continue
			}
		}
		g := byAddr[nc.addr]
		if g == nil {
			g = &shardGroup{nc: nc}
			byAddr[nc.addr] = g
			order = append(order, nc.addr)
		}
		g.shards = append(g.shards, sh)
	}
	out := make([]shardGroup, 0, len(order))
	for _, a := range order {
		out = append(out, *byAddr[a])
	}
	return out
}

// fetch asks s's node for s's next page; it returns the shards covered.
func (it *RangeIterator) fetch(ctx context.Context, s *rangeStream) ([]uint32, *Error) {
	req := &pb.RangeRequest{
		Start:        it.base.Start,
		End:          it.base.End,
		Prefix:       it.base.Prefix,
		Limit:        it.base.Limit,
		KeysOnly:     it.base.KeysOnly,
		Consistency:  it.base.Consistency,
		Continuation: s.token,
		Shards:       s.shards,
	}
	var trailer metadata.MD
	resp, err := s.nc.kv.Range(ctx, req, grpc.Trailer(&trailer))
	if err != nil {
		if ctx.Err() != nil {
			return nil, contextError("range", ctx.Err(), nil, 1)
		}
		return nil, newError("range", s.nc.addr, status.Convert(err), trailer, 1)
	}
	it.revMu.Lock()
	if it.revisions == nil {
		it.revisions = make(map[int]*Version)
	}
	for _, r := range resp.GetRevisions() {
		if _, seen := it.revisions[int(r.GetShard())]; !seen && r.GetApplied() != nil {
			it.revisions[int(r.GetShard())] = versionFromPB(r.GetApplied())
		}
	}
	it.revMu.Unlock()
	s.buf = resp.GetEntries()
	s.token = resp.GetContinuation()
	s.eof = len(s.token) == 0
	covered := resp.GetShards()
	slices.Sort(covered)
	return covered, nil
}
