package norikv

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	pb "github.com/norikv/norikv-go/proto"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// maxRedirects bounds how many NOT_LEADER hints one call follows, so that
// two nodes naming each other cannot bounce a request forever.
const maxRedirects = 8

// Client is a NoriKV client. It is safe for concurrent use; create one per
// process and share it, since it owns the connection pool and the cluster
// view.
type Client struct {
	cfg    ClientConfig
	pool   *pool
	router *router
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	closed atomic.Bool

	viewMu   sync.Mutex // serializes view application
	view     *ClusterView
	viewSrc  string            // address of the node the current view came from
	viewSeq  uint64            // views applied so far
	srcEpoch map[string]uint64 // last epoch seen from each node address
	epoch    atomic.Uint64
	watching atomic.Bool

	events      *eventQueue
	listenersMu sync.Mutex
	listeners   map[uint64]func(*TopologyChangeEvent)
	nextID      uint64

	readyOnce sync.Once
	ready     chan struct{}
	readyErr  error

	watchErrMu sync.Mutex
	watchErr   error
}

// NewClient connects to the cluster: it follows the cluster view from one
// of config.Nodes and returns once the first view has arrived, checking that
// the cluster's shard count equals config.TotalShards. It fails with an
// error matching ErrConnection when no node answers before ctx ends or
// config.Timeout passes (whichever comes first), and with
// ErrShardCountMismatch when the shard counts differ.
func NewClient(ctx context.Context, config *ClientConfig) (*Client, error) {
	cfg, err := config.normalized()
	if err != nil {
		return nil, err
	}
	p := newPool(nil)
	c := &Client{
		cfg:       cfg,
		pool:      p,
		router:    newRouter(cfg.TotalShards, p, cfg.Nodes),
		events:    newEventQueue(),
		listeners: make(map[uint64]func(*TopologyChangeEvent)),
		ready:     make(chan struct{}),
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.router.discover = c.fetchView
	c.wg.Add(2)
	go c.watchLoop()
	go c.dispatchLoop()

	timer := time.NewTimer(cfg.Timeout)
	defer timer.Stop()
	select {
	case <-c.ready:
		if c.readyErr != nil {
			c.Close()
			return nil, c.readyErr
		}
		return c, nil
	case <-ctx.Done():
		err = ctx.Err()
	case <-timer.C:
		err = context.DeadlineExceeded
	}
	last := c.lastWatchErr()
	c.Close()
	return nil, fmt.Errorf("%w: no node of %v sent the cluster view (%w; last error: %v)", ErrConnection, cfg.Nodes, err, last)
}

func (c *Client) markReady(err error) {
	c.readyOnce.Do(func() {
		c.readyErr = err
		close(c.ready)
	})
}

func (c *Client) setWatchErr(err error) {
	c.watchErrMu.Lock()
	c.watchErr = err
	c.watchErrMu.Unlock()
}

func (c *Client) lastWatchErr() error {
	c.watchErrMu.Lock()
	defer c.watchErrMu.Unlock()
	return c.watchErr
}

// Close stops following the cluster and closes every connection. Calls in
// progress fail; later calls return ErrClosed. Close is idempotent.
func (c *Client) Close() error {
	if !c.closed.CompareAndSwap(false, true) {
		return nil
	}
	c.cancel()
	c.events.close()
	c.wg.Wait()
	c.pool.close()
	return nil
}

// Put writes value under key and returns the new value's version.
func (c *Client) Put(ctx context.Context, key, value []byte, options *PutOptions) (*Version, error) {
	req := &pb.PutRequest{Key: key, Value: value}
	if options != nil {
		if options.TTLMs != nil {
			req.TtlMs = *options.TTLMs
		}
		req.IdempotencyKey = options.IdempotencyKey
		req.IfMatch = options.IfMatchVersion.toPB()
		req.IfNotExists = options.IfNotExists
	}
	var resp *pb.PutResponse
	err := c.invoke(ctx, "put", key, putIsRetrySafe(options), false, func(ctx context.Context, nc *nodeConn, opts ...grpc.CallOption) error {
		r, err := nc.kv.Put(ctx, req, opts...)
		resp = r
		return err
	})
	if err != nil {
		return nil, err
	}
	return versionFromPB(resp.GetVersion()), nil
}

// Get reads key. A missing or expired key fails with ErrKeyNotFound.
func (c *Client) Get(ctx context.Context, key []byte, options *GetOptions) (*GetResult, error) {
	req := &pb.GetRequest{Key: key}
	anyReplica := false
	if options != nil {
		req.Consistency = string(options.Consistency)
		anyReplica = anyReplicaMayServe(options.Consistency)
	}
	var resp *pb.GetResponse
	err := c.invoke(ctx, "get", key, true, anyReplica, func(ctx context.Context, nc *nodeConn, opts ...grpc.CallOption) error {
		r, err := nc.kv.Get(ctx, req, opts...)
		resp = r
		return err
	})
	if err != nil {
		return nil, err
	}
	return &GetResult{Value: resp.GetValue(), Version: versionFromPB(resp.GetVersion()), Metadata: resp.GetMeta()}, nil
}

// Delete removes key. Deleting an absent key succeeds.
func (c *Client) Delete(ctx context.Context, key []byte, options *DeleteOptions) error {
	req := &pb.DeleteRequest{Key: key}
	if options != nil {
		req.IdempotencyKey = options.IdempotencyKey
		req.IfMatch = options.IfMatchVersion.toPB()
	}
	return c.invoke(ctx, "delete", key, deleteIsRetrySafe(options), false, func(ctx context.Context, nc *nodeConn, opts ...grpc.CallOption) error {
		_, err := nc.kv.Delete(ctx, req, opts...)
		return err
	})
}

type callFunc func(ctx context.Context, nc *nodeConn, opts ...grpc.CallOption) error

// anyReplicaMayServe: the consistency levels that CONTRACT.md lets any
// replica serve.
func anyReplicaMayServe(l ConsistencyLevel) bool {
	return l == ConsistencyStaleOK || l == "eventual" || l == "bounded_staleness"
}

// invoke sends one request to its shard's leader, following NOT_LEADER
// hints at once and retrying transient failures with backoff as far as
// RetryConfig and the request's retry safety allow. With anyReplica the
// first attempt goes to one of the shard's replicas in turn (spreading
// stale_ok reads); retries go to the leader.
func (c *Client) invoke(ctx context.Context, op string, key []byte, writeSafe, anyReplica bool, call callFunc) error {
	if c.closed.Load() {
		return ErrClosed
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.cfg.Timeout)
		defer cancel()
	}
	shard, _ := c.router.route(key)
	var last *Error
	avoid := ""
	redirects := 0
	attempts := 0
	for {
		var nc *nodeConn
		var err error
		if anyReplica && attempts == 0 && redirects == 0 {
			nc = c.router.replica(shard)
		}
		if nc == nil {
			nc, err = c.router.target(ctx, shard, avoid)
		}
		if err != nil {
			if ctx.Err() != nil {
				return contextError(op, ctx.Err(), last, attempts)
			}
			if errors.Is(err, ErrClosed) {
				return ErrClosed
			}
			return fmt.Errorf("%w: %s: %v", ErrConnection, op, err)
		}
		attempts++
		var trailer metadata.MD
		err = call(ctx, nc, grpc.Trailer(&trailer))
		if err == nil {
			return nil
		}
		st := status.Convert(err)
		e := newError(op, nc.addr, st, trailer, attempts)
		last = e
		if ctx.Err() != nil {
			return contextError(op, ctx.Err(), last, attempts)
		}
		if c.closed.Load() {
			return ErrClosed
		}
		f := classify(st)
		if f == failNotLeader {
			if e.LeaderHint != "" && e.LeaderHint != nc.addr && redirects < maxRedirects {
				redirects++
				if _, err := c.router.setLeader(shard, e.LeaderHint); err == nil {
					attempts-- // following a hint is routing, not a retry
					continue
				}
			}
			c.router.forget(shard, nc)
		}
		if !mayRetry(f, writeSafe) || attempts >= c.cfg.Retry.MaxAttempts {
			return e
		}
		avoid = ""
		if nodeDown(st, f) {
			c.router.nodeFailed(nc)
			avoid = nc.addr
		}
		t := time.NewTimer(c.cfg.Retry.backoff(attempts))
		select {
		case <-ctx.Done():
			t.Stop()
			return contextError(op, ctx.Err(), last, attempts)
		case <-t.C:
		}
	}
}

// GetClusterView returns a copy of the cluster view the client routes by,
// or nil when it has none yet.
func (c *Client) GetClusterView() *ClusterView {
	c.viewMu.Lock()
	defer c.viewMu.Unlock()
	return c.view.clone()
}

// OnTopologyChange registers fn to be called after each change of the
// cluster view, in epoch order, on a goroutine of the client (fn may call
// the client). It returns a function that unregisters fn.
func (c *Client) OnTopologyChange(fn func(*TopologyChangeEvent)) (unsubscribe func()) {
	c.listenersMu.Lock()
	id := c.nextID
	c.nextID++
	c.listeners[id] = fn
	c.listenersMu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			c.listenersMu.Lock()
			delete(c.listeners, id)
			c.listenersMu.Unlock()
		})
	}
}

// Stats returns a snapshot of the client's pool, router and topology state.
func (c *Client) Stats() ClientStats {
	s := ClientStats{Pool: c.pool.stats()}
	s.Router.TotalShards = c.cfg.TotalShards
	s.Router.Redirects = c.router.redirects.Load()
	s.Router.Discoveries = c.router.discoveries.Load()
	if ix := c.router.index.Load(); ix != nil {
		s.Router.TotalNodes = len(ix.view.Nodes)
	} else {
		s.Router.TotalNodes = len(c.cfg.Nodes)
	}
	s.Topology.Epoch = c.epoch.Load()
	s.Topology.CachedLeaders = c.router.cachedLeaders()
	s.Topology.Watching = c.watching.Load()
	return s
}

// ShardForKey returns the shard that holds key (hash.GetShardForKey with
// the client's TotalShards): the shard whose revisions order key's changes.
func (c *Client) ShardForKey(key []byte) int {
	shard, _ := c.router.route(key)
	return shard
}
