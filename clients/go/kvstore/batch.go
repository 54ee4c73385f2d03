package kvstore

import (
	"context"
	"errors"
	"fmt"
	"sync"

	norikv "github.com/norikv/norikv-go"
)

// Batch accumulates Put and Delete operations for batch execution.
//
// NoriKV commits a batch atomically per shard (Kv.Batch: one Raft entry);
// keys are hash-distributed over shards, so Execute sends one Kv.Batch per
// shard the keys fall on (up to maxBatchOps each, several in parallel):
// the operations on one shard apply all or nothing, different shards
// independently. Several operations on one key collapse to the last.
type Batch struct {
	c   *Client
	ops []batchOp
}

type batchOp struct {
	key    []byte
	value  []byte
	delete bool
}

// maxBatchOps is Kv.Batch's per-request limit (docs/batch.md).
const maxBatchOps = 1000

// batchParallel bounds the shard batches in flight per Execute.
const batchParallel = 8

// Batch creates a new batch for executing multiple operations. It waits
// for visibility once, after all operations complete.
func (c *Client) Batch() *Batch { return &Batch{c: c} }

// Put adds a put operation to the batch.
func (b *Batch) Put(key, value []byte) *Batch {
	if value == nil {
		value = []byte{}
	}
	b.ops = append(b.ops, batchOp{key: key, value: value})
	return b
}

// Delete adds a delete operation to the batch.
func (b *Batch) Delete(key []byte) *Batch {
	b.ops = append(b.ops, batchOp{key: key, delete: true})
	return b
}

// Execute sends the operations and waits until all of them are visible in
// this client's reads.
func (b *Batch) Execute(ctx context.Context) error {
	c := b.c
	if c.closed.Load() {
		return ErrClientClosed
	}
	if len(b.ops) == 0 {
		return nil
	}
	// last op per key wins; per shard in the order of first appearance
	last := make(map[string]int, len(b.ops))
	for i, op := range b.ops {
		last[string(op.key)] = i
	}
	byShard := map[int][]norikv.BatchOp{}
	var shards []int
	for i, op := range b.ops {
		if last[string(op.key)] != i {
			continue
		}
		fk := c.fullKey(op.key)
		s := c.nk.ShardForKey(fk)
		if _, ok := byShard[s]; !ok {
			shards = append(shards, s)
		}
		byShard[s] = append(byShard[s], norikv.BatchOp{Key: fk, Value: op.value, Delete: op.delete})
	}
	type part struct {
		shard int
		ops   []norikv.BatchOp
	}
	var parts []part
	for _, s := range shards {
		ops := byShard[s]
		for len(ops) > 0 {
			n := min(len(ops), maxBatchOps)
			parts = append(parts, part{s, ops[:n]})
			ops = ops[n:]
		}
	}
	errs := make([]error, len(parts))
	sem := make(chan struct{}, batchParallel)
	var wg sync.WaitGroup
	for i, p := range parts {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			errs[i] = c.executePart(ctx, p.shard, p.ops)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// executePart sends one shard's ops and waits for their visibility.
func (c *Client) executePart(ctx context.Context, shard int, ops []norikv.BatchOp) error {
	res, err := c.nk.Batch(ctx, ops, nil)
	if err != nil {
		return c.closedOr(fmt.Errorf("kvstore: batch of %d ops on shard %d: %w", len(ops), shard, err))
	}
	// A delete that found no live value records no change event, so the
	// watch brings nothing at its revision; only progress marks will pass
	// it. Such a key is already absent locally unless an older change is
	// still on its way; wait for the revision only when needed.
	noEvent := true
	for i, op := range ops {
		if !op.Delete || (i < len(res.Results) && res.Results[i].Tombstoned) {
			noEvent = false
			break
		}
		if _, err := c.storage.Get(ctx, op.Key[len(c.prefix):]); !errors.Is(err, ErrNotFound) {
			noEvent = false
			break
		}
	}
	if noEvent {
		return nil
	}
	return c.waitVisible(ctx, shard, res.Version)
}
