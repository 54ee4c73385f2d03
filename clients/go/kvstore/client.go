package kvstore

// The Client keeps a local copy of one namespace (a key prefix on NoriKV):
// NewClient scans the prefix (Kv.Range) into the Storage, then follows
// Kv.Watch from the scan's per-shard revisions. One goroutine, the
// consumer, applies the watch's events to the Storage, fires the hooks and
// advances the per-shard applied revisions; writers wait on those
// revisions for read-your-writes.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	norikv "github.com/norikv/norikv-go"
)

// ErrClientClosed is returned when operations are performed on a closed
// client.
var ErrClientClosed = errors.New("client is closed")

// ErrNotFound is returned when a key does not exist.
var ErrNotFound = errors.New("key not found")

// Client is a KV store backed by NoriKV. Writes go to the cluster and block
// until visible in this client's reads, which are served from local
// Storage kept up to date by a watch. Each namespace should contain a
// single resource type.
type Client struct {
	nk      *norikv.Client
	ownNK   bool
	prefix  []byte // namespace + "/"
	storage Storage
	cfg     clientConfig
	log     *slog.Logger

	ctx    context.Context
	cancel context.CancelFunc
	closed atomic.Bool
	done   chan struct{} // closed when the consumer has stopped

	mu       sync.Mutex
	applied  map[int]*norikv.Version // shard -> last revision applied to storage
	advanced chan struct{}           // closed and replaced on every advance
	fatal    error                   // the consumer stopped with it

	// consumer-only state
	watcher   *norikv.Watcher
	scanVer   map[string]*norikv.Version // key -> version the bootstrap stored
	lastSweep time.Time
}

// NewClient creates a new KV store client for namespace: every key k of
// the client is stored on NoriKV as namespace + "/" + k. Each namespace
// should contain a single resource type.
//
// The provided context is used only for initialization (connecting,
// the bootstrap scan and opening the watch). It is not retained after
// NewClient returns - the client manages its own internal context for the
// watch goroutine, which is cancelled when Close is called.
//
// The caller MUST call Close() to release resources when done with the
// client. Cancelling the provided context does not shut down the client.
//
// NewClient blocks until storage holds the namespace as a scan of the
// cluster found it (keys in storage the scan did not find are deleted),
// firing the OnSet hook for every key and OnDelete for every key removed,
// and until the watch from the scan's revisions is open, ensuring reads
// are consistent immediately after the client is created. On a server
// without Kv.Watch it fails with the server's UNIMPLEMENTED answer
// (status.Code(err) == codes.Unimplemented).
func NewClient(ctx context.Context, namespace string, storage Storage, opts ...ClientOption) (*Client, error) {
	if namespace == "" {
		return nil, errors.New("kvstore: namespace is empty")
	}
	if storage == nil {
		return nil, errors.New("kvstore: storage is nil")
	}
	cfg := clientConfig{}
	for _, o := range opts {
		o(&cfg)
	}
	c := &Client{
		prefix:   []byte(namespace + "/"),
		storage:  storage,
		cfg:      cfg,
		log:      cfg.logger,
		applied:  make(map[int]*norikv.Version),
		advanced: make(chan struct{}),
		done:     make(chan struct{}),
	}
	if c.log == nil {
		c.log = slog.Default()
	}
	c.log = c.log.With("component", "kvstore", "namespace", namespace)
	if cfg.client != nil {
		c.nk = cfg.client
	} else {
		if len(cfg.brokers) == 0 {
			return nil, errors.New("kvstore: no NoriKV node addresses: use WithBrokers or WithNoriKVClient")
		}
		nkc := norikv.DefaultClientConfig(cfg.brokers)
		if cfg.configure != nil {
			cfg.configure(nkc)
		}
		nk, err := norikv.NewClient(ctx, nkc)
		if err != nil {
			return nil, fmt.Errorf("kvstore: connecting to %v: %w", cfg.brokers, err)
		}
		c.nk, c.ownNK = nk, true
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	// the watch lives on c.ctx; while NewClient runs, ctx ending ends it too
	stop := context.AfterFunc(ctx, c.cancel)
	err := c.sync(ctx)
	if !stop() && err == nil {
		err = fmt.Errorf("kvstore: NewClient: %w", context.Cause(ctx))
	}
	if err != nil {
		c.cancel()
		if c.ownNK {
			c.nk.Close()
		}
		return nil, err
	}
	go c.consume()
	return c, nil
}

// sync bootstraps storage from a scan of the namespace and opens the watch
// from the scan's revisions (at start, and again after ErrCompacted).
func (c *Client) sync(ctx context.Context) error {
	it := c.nk.RangeIter(ctx, &norikv.RangeOptions{Prefix: c.prefix, Consistency: norikv.ConsistencyLinearizable})
	defer it.Close()
	seen := make(map[string]*norikv.Version)
	var chunk []KeyValue
	flush := func() error {
		if err := c.applyItems(ctx, chunk); err != nil {
			return err
		}
		for _, kv := range chunk {
			if c.cfg.onSet != nil {
				c.cfg.onSet(kv.Key, kv.Value)
			}
		}
		chunk = chunk[:0]
		return nil
	}
	for it.Next() {
		kv := it.KV()
		k := bytes.Clone(kv.Key[len(c.prefix):])
		seen[string(k)] = kv.Version
		v := kv.Value
		if v == nil {
			v = []byte{}
		}
		chunk = append(chunk, KeyValue{Key: k, Value: v})
		if len(chunk) >= 256 {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("kvstore: bootstrap scan of %q: %w", c.prefix, err)
	}
	if err := flush(); err != nil {
		return err
	}
	// keys the local storage kept (a persistent store, or before a
	// re-sync) that the cluster no longer has
	var gone [][]byte
	for kv, err := range c.storage.Range(ctx, KeyConstraint{}, QueryOptions{}) {
		if err != nil {
			return fmt.Errorf("kvstore: bootstrap: reading local storage: %w", err)
		}
		if _, ok := seen[string(kv.Key)]; !ok {
			gone = append(gone, kv.Key)
		}
	}
	for _, k := range gone {
		if err := c.storage.Delete(ctx, k); err != nil {
			return fmt.Errorf("kvstore: bootstrap: deleting %q from local storage: %w", k, err)
		}
		if c.cfg.onDelete != nil {
			c.cfg.onDelete(k)
		}
	}
	revs := it.Revisions()
	w, err := c.nk.Watch(c.ctx, &norikv.WatchOptions{Prefix: c.prefix, From: revs, Progress: true})
	if err != nil {
		return fmt.Errorf("kvstore: watching %q: %w", c.prefix, err)
	}
	c.watcher = w
	c.scanVer = seen
	c.mu.Lock()
	for s, v := range revs {
		if after(v, c.applied[s]) {
			c.applied[s] = v
		}
	}
	c.signal()
	c.mu.Unlock()
	c.log.Debug("bootstrapped", "keys", len(seen), "removed", len(gone))
	return nil
}

func (c *Client) applyItems(ctx context.Context, items []KeyValue) error {
	if len(items) == 0 {
		return nil
	}
	if bs, ok := c.storage.(BatchStorage); ok {
		if err := bs.ApplyBatch(ctx, items); err != nil {
			return fmt.Errorf("kvstore: writing %d keys to local storage: %w", len(items), err)
		}
		return nil
	}
	for _, it := range items {
		var err error
		if it.Value == nil {
			err = c.storage.Delete(ctx, it.Key)
		} else {
			err = c.storage.Set(ctx, it.Key, it.Value)
		}
		if err != nil {
			return fmt.Errorf("kvstore: writing %q to local storage: %w", it.Key, err)
		}
	}
	return nil
}

// signal wakes the writers waiting for visibility (c.mu held).
func (c *Client) signal() {
	close(c.advanced)
	c.advanced = make(chan struct{})
}

// after reports whether revision a is later than b within a shard (nil b:
// none).
func after(a, b *norikv.Version) bool {
	if b == nil {
		return a != nil
	}
	if a == nil {
		return false
	}
	if a.Index != b.Index {
		return a.Index > b.Index
	}
	return a.Term > b.Term
}

// consume applies the watch's events until Close; after ErrCompacted it
// scans again and follows a new watch.
func (c *Client) consume() {
	defer close(c.done)
	for {
		w := c.watcher
		for w.Next() {
			if err := c.apply(w.Event()); err != nil {
				w.Close()
				c.stop(err)
				return
			}
		}
		err := w.Err()
		w.Close()
		if c.ctx.Err() != nil {
			return
		}
		if errors.Is(err, norikv.ErrCompacted) {
			c.log.Warn("watch fell behind the cluster's retention; scanning again", "error", err)
			if err := c.sync(c.ctx); err != nil {
				c.stop(err)
				return
			}
			continue
		}
		if err == nil {
			err = errors.New("watch ended")
		}
		c.stop(err)
		return
	}
}

func (c *Client) stop(err error) {
	if c.ctx.Err() != nil {
		return
	}
	c.log.Error("kvstore stopped following the cluster; writes fail from now on", "error", err)
	c.mu.Lock()
	c.fatal = fmt.Errorf("kvstore: following the cluster: %w", err)
	c.signal()
	c.mu.Unlock()
}

// apply applies one event to storage, fires its hook and advances its
// shard's revision.
func (c *Client) apply(ev *norikv.WatchEvent) error {
	if ev.Kind != norikv.EventProgress && bytes.HasPrefix(ev.Key, c.prefix) {
		k := ev.Key[len(c.prefix):]
		skip := false
		if sv, ok := c.scanVer[string(k)]; ok {
			// the scan read this key at a later snapshot than the shard's
			// first page: an event it already reflects is not applied again
			if !after(ev.Version, sv) {
				skip = true
			} else {
				delete(c.scanVer, string(k))
			}
		}
		if !skip {
			switch ev.Kind {
			case norikv.EventPut:
				v := ev.Value
				if v == nil {
					v = []byte{}
				}
				if err := c.storage.Set(c.ctx, k, v); err != nil {
					return fmt.Errorf("kvstore: writing %q to local storage: %w", k, err)
				}
				if c.cfg.onSet != nil {
					c.cfg.onSet(bytes.Clone(k), v)
				}
			case norikv.EventDelete, norikv.EventExpire:
				if err := c.storage.Delete(c.ctx, k); err != nil {
					return fmt.Errorf("kvstore: deleting %q from local storage: %w", k, err)
				}
				if c.cfg.onDelete != nil {
					c.cfg.onDelete(bytes.Clone(k))
				}
			}
		}
	}
	// a batch's events share its revision: the revision is applied once
	// the last of them is (writers waiting for it read every key)
	if !ev.EntryEnd {
		return nil
	}
	c.mu.Lock()
	if after(ev.Version, c.applied[ev.Shard]) {
		c.applied[ev.Shard] = ev.Version
		c.signal()
	}
	c.mu.Unlock()
	if ev.Kind == norikv.EventProgress && len(c.scanVer) > 0 && time.Since(c.lastSweep) > time.Second {
		c.sweepScanVersions()
	}
	return nil
}

// sweepScanVersions forgets the scan's versions that can no longer matter:
// a shard's events come in revision order, so once its applied revision
// reached a key's scanned version no later event can be at or below it.
// Bounded by the scan's size and run at most once a second.
func (c *Client) sweepScanVersions() {
	c.lastSweep = time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, sv := range c.scanVer {
		if !after(sv, c.applied[c.nk.ShardForKey(c.fullKey([]byte(k)))]) {
			delete(c.scanVer, k)
		}
	}
}

// waitVisible blocks until shard's applied revision reaches v.
func (c *Client) waitVisible(ctx context.Context, shard int, v *norikv.Version) error {
	if v == nil {
		return nil
	}
	for {
		c.mu.Lock()
		if c.fatal != nil {
			err := c.fatal
			c.mu.Unlock()
			return err
		}
		if !after(v, c.applied[shard]) {
			c.mu.Unlock()
			return nil
		}
		ch := c.advanced
		c.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("kvstore: waiting for revision %v of shard %d to reach local storage: %w", v, shard, ctx.Err())
		case <-c.ctx.Done():
			return ErrClientClosed
		}
	}
}

func (c *Client) fullKey(key []byte) []byte {
	k := make([]byte, 0, len(c.prefix)+len(key))
	return append(append(k, c.prefix...), key...)
}

// Put stores a key-value pair. Blocks until the write is visible in this
// client's reads.
func (c *Client) Put(ctx context.Context, key []byte, value []byte) error {
	if c.closed.Load() {
		return ErrClientClosed
	}
	fk := c.fullKey(key)
	v, err := c.nk.Put(ctx, fk, value, nil)
	if err != nil {
		return c.closedOr(err)
	}
	return c.waitVisible(ctx, c.nk.ShardForKey(fk), v)
}

// Delete removes a key. Blocks until the delete is visible in this
// client's reads.
func (c *Client) Delete(ctx context.Context, key []byte) error {
	return c.Batch().Delete(key).Execute(ctx)
}

// closedOr maps the SDK's ErrClosed (Close raced the call) to
// ErrClientClosed.
func (c *Client) closedOr(err error) error {
	if c.closed.Load() || errors.Is(err, norikv.ErrClosed) {
		return ErrClientClosed
	}
	return err
}

// Get retrieves a value by key from local storage. Returns ErrNotFound if
// the key does not exist. May return stale data if this client's watch is
// lagging or if other clients wrote recently.
func (c *Client) Get(ctx context.Context, key []byte) ([]byte, error) {
	if c.closed.Load() {
		return nil, ErrClientClosed
	}
	return c.storage.Get(ctx, key)
}

// Range iterates over keys in the given range from local storage. Use
// Prefix() to create a KeyConstraint for prefix queries. May return stale
// data if this client's watch is lagging or if other clients wrote
// recently.
func (c *Client) Range(ctx context.Context, constraint KeyConstraint, opts QueryOptions) iter.Seq2[KeyValue, error] {
	return func(yield func(KeyValue, error) bool) {
		if c.closed.Load() {
			yield(KeyValue{}, ErrClientClosed)
			return
		}
		for kv, err := range c.storage.Range(ctx, constraint, opts) {
			if !yield(kv, err) || err != nil {
				return
			}
		}
	}
}

// Close stops following the cluster and closes the NoriKV connection it
// opened (not one given with WithNoriKVClient, nor the Storage). Later
// calls return ErrClientClosed. Idempotent.
func (c *Client) Close() error {
	if !c.closed.CompareAndSwap(false, true) {
		return nil
	}
	c.cancel()
	<-c.done
	if c.ownNK {
		return c.nk.Close()
	}
	return nil
}

// Raw returns the NoriKV SDK client this client uses (for what kvstore
// does not cover: TTLs, CAS, consistency levels). Writes made through it
// under KeyPrefix reach this client's storage through its watch.
func (c *Client) Raw() *norikv.Client { return c.nk }

// KeyPrefix returns the prefix of this client's keys on NoriKV
// (namespace + "/"); a copy.
func (c *Client) KeyPrefix() []byte { return bytes.Clone(c.prefix) }
