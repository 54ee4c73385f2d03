package norikv

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sort"
	"sync"
	"time"

	pb "github.com/norikv/norikv-go/proto"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// The client follows the cluster's layout through Meta.WatchCluster: one
// stream, kept open, to one node at a time; when it breaks the client moves
// to the next known node with backoff. Leader look-ups (discovery) fetch the
// current view with a short-lived WatchCluster call of their own.

const (
	watchBackoffBase = 100 * time.Millisecond
	watchBackoffMax  = 5 * time.Second
	// discoveryPerNode bounds one node's answer to a view fetch.
	discoveryPerNode = 2 * time.Second
	// maxPendingEvents bounds the topology events waiting for listeners;
	// beyond it the newest pending change absorbs the next one (listeners
	// then see one event spanning several epochs).
	maxPendingEvents = 256
)

// viewAddrs lists the addresses worth asking for the view: live nodes of
// the current view first, then the configured seeds, without repeats.
func (c *Client) viewAddrs() []string {
	seen := make(map[string]bool)
	var out []string
	if ix := c.router.index.Load(); ix != nil {
		for _, a := range ix.live {
			if !seen[a] {
				seen[a] = true
				out = append(out, a)
			}
		}
	}
	for _, a := range c.cfg.Nodes {
		if !seen[a] {
			seen[a] = true
			out = append(out, a)
		}
	}
	return out
}

func (c *Client) watchLoop() {
	defer c.wg.Done()
	failures := 0
	for c.ctx.Err() == nil {
		addrs := c.viewAddrs()
		addr := addrs[failures%len(addrs)]
		got, err := c.watchOnce(addr)
		c.watching.Store(false)
		if c.ctx.Err() != nil {
			return
		}
		c.setWatchErr(fmt.Errorf("WatchCluster on %s: %w", addr, err))
		if status.Code(err) == codes.Unimplemented {
			// A server without Meta: route by the seeds and the
			// servers' NOT_LEADER hints alone.
			c.markReady(nil)
		}
		if got {
			failures = 0
		}
		failures++
		// Try every known node once before backing off.
		var delay time.Duration
		if round := failures / len(addrs); failures%len(addrs) == 0 && round > 0 {
			delay = watchBackoffBase << min(round-1, 6)
			delay = min(delay, watchBackoffMax)
			delay += rand.N(delay/2 + 1)
		}
		if delay > 0 {
			t := time.NewTimer(delay)
			select {
			case <-c.ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
	}
}

// watchOnce follows one WatchCluster stream until it breaks. got reports
// whether it delivered at least one view.
func (c *Client) watchOnce(addr string) (got bool, err error) {
	nc, err := c.pool.get(addr)
	if err != nil {
		return false, err
	}
	ctx, cancel := context.WithCancel(c.ctx)
	defer cancel()
	// Epoch 0: the node answers at once with its current view. Epochs are
	// counted by each node (and restart with it), so the client's own
	// epoch says nothing to a node it has not been watching.
	asked := c.viewSeqNow()
	stream, err := nc.meta.WatchCluster(ctx, &pb.ClusterView{})
	if err != nil {
		return false, err
	}
	for {
		v, err := stream.Recv()
		if err != nil {
			return got, err
		}
		c.watching.Store(true)
		if err := c.applyView(v, addr, !got, asked); err != nil {
			return true, err
		}
		got = true
	}
}

// fetchView asks the known nodes in turn for the current view and applies
// it. It is the leader discovery that the router runs single-flight.
func (c *Client) fetchView(_ context.Context) error {
	addrs := c.viewAddrs()
	var last error
	start := int(c.router.rr.Add(1))
	for i := range addrs {
		addr := addrs[(start+i)%len(addrs)]
		nc, err := c.pool.get(addr)
		if err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(c.ctx, discoveryPerNode)
		asked := c.viewSeqNow()
		// Epoch 0: the server answers at once with its current view.
		stream, err := nc.meta.WatchCluster(ctx, &pb.ClusterView{})
		var v *pb.ClusterView
		if err == nil {
			v, err = stream.Recv()
		}
		cancel()
		if err == nil {
			return c.applyView(v, addr, true, asked)
		}
		last = fmt.Errorf("WatchCluster on %s: %w", addr, err)
		if c.ctx.Err() != nil {
			return c.ctx.Err()
		}
	}
	if last == nil {
		last = fmt.Errorf("no node address known")
	}
	return last
}

// viewSeqNow is the number of views applied so far.
func (c *Client) viewSeqNow() uint64 {
	c.viewMu.Lock()
	defer c.viewMu.Unlock()
	return c.viewSeq
}

// applyView installs a view from node src and queues the topology event.
//
// Epochs are comparable only between views of one node: each node counts
// its own, and a restarted node counts again from the start. So a view is
// taken when it is newer than the last one seen from the same node, or when
// it is the first answer of a new stream or fetch (fresh) and no other view
// was applied since it was asked for (asked: viewSeq then), which covers a
// restarted node and a node the client had not heard from, without letting
// a slow answer undo a newer view. A fresh answer is taken only when its
// content differs from the current view; an equal one only lends its epoch,
// and sends no event.
//
// A view whose shard count differs from the configured TotalShards is
// refused: routing by it would misplace keys.
func (c *Client) applyView(p *pb.ClusterView, src string, fresh bool, asked uint64) error {
	c.viewMu.Lock()
	cur := c.view
	v := viewFromPB(p)
	if cur != nil {
		last, known := c.srcEpoch[src]
		newer := known && v.Epoch > last
		if !newer && !(fresh && c.viewSeq == asked) {
			c.viewMu.Unlock()
			return nil
		}
		c.noteSrcEpoch(src, v.Epoch)
		// A newer epoch from the node the current view came from is a
		// change by definition; otherwise a view is one only when its
		// content differs.
		if !(newer && src == c.viewSrc) && viewsEqual(cur, v) {
			if v.Epoch != cur.Epoch {
				adopted := cur.clone()
				adopted.Epoch = v.Epoch
				c.view = adopted
				c.epoch.Store(v.Epoch)
			}
			c.viewSrc = src
			c.viewMu.Unlock()
			return nil
		}
	}
	if n := len(v.Shards); n != 0 && n != c.cfg.TotalShards {
		c.viewMu.Unlock()
		err := fmt.Errorf("%w: ClientConfig.TotalShards is %d but the cluster has %d shards (view epoch %d from %s)",
			ErrShardCountMismatch, c.cfg.TotalShards, n, v.Epoch, src)
		c.markReady(err)
		return err
	}
	ix := buildIndex(v, c.cfg.TotalShards)
	c.router.applyIndex(ix)
	c.view = v
	c.viewSrc = src
	c.viewSeq++
	c.noteSrcEpoch(src, v.Epoch)
	c.epoch.Store(v.Epoch)
	c.events.push(cur, v)

	keep := make(map[string]bool, len(v.Nodes)+len(c.cfg.Nodes))
	for _, n := range v.Nodes {
		if n.Role != "left" {
			keep[n.Addr] = true
		}
	}
	for _, a := range c.cfg.Nodes {
		keep[a] = true
	}
	// A leader learned from a hint may not be in the view (yet): keep
	// every connection the router still points at.
	for i := range c.router.leaders {
		if nc := c.router.leaders[i].Load(); nc != nil {
			keep[nc.addr] = true
		}
	}
	c.viewMu.Unlock()
	c.pool.prune(keep)
	c.markReady(nil)
	return nil
}

// noteSrcEpoch records the last epoch seen from src (caller holds viewMu).
// Bounded: the map is cleared when it holds more addresses than any
// cluster has nodes.
func (c *Client) noteSrcEpoch(src string, epoch uint64) {
	if c.srcEpoch == nil || len(c.srcEpoch) >= 256 {
		c.srcEpoch = make(map[string]uint64)
	}
	c.srcEpoch[src] = epoch
}

// viewsEqual reports whether two views describe the same cluster, epochs
// aside.
func viewsEqual(a, b *ClusterView) bool {
	if len(a.Nodes) != len(b.Nodes) || len(a.Shards) != len(b.Shards) {
		return false
	}
	for i := range a.Nodes {
		if a.Nodes[i] != b.Nodes[i] {
			return false
		}
	}
	for i := range a.Shards {
		x, y := a.Shards[i], b.Shards[i]
		if x.ID != y.ID || len(x.Replicas) != len(y.Replicas) {
			return false
		}
		for j := range x.Replicas {
			if x.Replicas[j] != y.Replicas[j] {
				return false
			}
		}
	}
	return true
}

// diffViews computes the event for the change from prev (nil: none) to cur.
func diffViews(prev, cur *ClusterView) *TopologyChangeEvent {
	ev := &TopologyChangeEvent{CurrentEpoch: cur.Epoch, LeaderChanges: map[uint32]string{}, View: cur.clone()}
	before := map[string]bool{}
	prevLeader := map[uint32]string{}
	if prev != nil {
		ev.PreviousEpoch = prev.Epoch
		for _, n := range prev.Nodes {
			if nodePresent(n.Role) {
				before[n.ID] = true
			}
		}
		for _, s := range prev.Shards {
			prevLeader[s.ID] = shardLeader(s)
		}
	}
	after := map[string]bool{}
	for _, n := range cur.Nodes {
		if nodePresent(n.Role) {
			after[n.ID] = true
			if !before[n.ID] {
				ev.AddedNodes = append(ev.AddedNodes, n.ID)
			}
		}
	}
	for id := range before {
		if !after[id] {
			ev.RemovedNodes = append(ev.RemovedNodes, id)
		}
	}
	sort.Strings(ev.AddedNodes)
	sort.Strings(ev.RemovedNodes)
	for _, s := range cur.Shards {
		l := shardLeader(s)
		if old, ok := prevLeader[s.ID]; (ok && old != l) || (!ok && l != "") {
			ev.LeaderChanges[s.ID] = l
		}
	}
	return ev
}

func shardLeader(s ShardInfo) string {
	for _, r := range s.Replicas {
		if r.Leader {
			return r.NodeID
		}
	}
	return ""
}

// eventQueue hands view changes to the dispatcher goroutine, which calls
// the listeners outside every lock of the client (so that a listener may
// call the client) and in epoch order.
type eventQueue struct {
	mu     sync.Mutex
	cond   *sync.Cond
	items  []viewChange
	closed bool
}

type viewChange struct{ prev, cur *ClusterView }

func newEventQueue() *eventQueue {
	q := &eventQueue{}
	q.cond = sync.NewCond(&q.mu)
	return q
}

func (q *eventQueue) push(prev, cur *ClusterView) {
	q.mu.Lock()
	if n := len(q.items); n >= maxPendingEvents {
		q.items[n-1].cur = cur
	} else {
		q.items = append(q.items, viewChange{prev, cur})
	}
	q.mu.Unlock()
	q.cond.Signal()
}

// pop waits for the next change; ok is false once the queue is closed.
func (q *eventQueue) pop() (viewChange, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for len(q.items) == 0 && !q.closed {
		q.cond.Wait()
	}
	if q.closed {
		return viewChange{}, false
	}
	it := q.items[0]
	q.items = q.items[1:]
	return it, true
}

func (q *eventQueue) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	q.cond.Broadcast()
}

func (c *Client) dispatchLoop() {
	defer c.wg.Done()
	for {
		ch, ok := c.events.pop()
		if !ok {
			return
		}
		ev := diffViews(ch.prev, ch.cur)
		c.listenersMu.Lock()
		fns := make([]func(*TopologyChangeEvent), 0, len(c.listeners))
		ids := make([]uint64, 0, len(c.listeners))
		for id := range c.listeners {
			ids = append(ids, id)
		}
		sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
		for _, id := range ids {
			fns = append(fns, c.listeners[id])
		}
		c.listenersMu.Unlock()
		for _, fn := range fns {
			fn(ev)
		}
	}
}
