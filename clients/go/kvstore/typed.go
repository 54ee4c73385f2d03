package kvstore

import (
	"context"
	"fmt"
	"iter"
)

// TypedKV is one entry of a typed Range.
type TypedKV[T any] struct {
	Key   []byte
	Value T
}

// ResourceClient wraps Client with typed operations using a Serde.
type ResourceClient[T any] struct {
	c     *Client
	serde Serde[T]
}

// NewResourceClient creates a typed client wrapping the given bytes client.
func NewResourceClient[T any](client *Client, serde Serde[T]) *ResourceClient[T] {
	return &ResourceClient[T]{c: client, serde: serde}
}

// Raw returns the underlying untyped Client.
func (r *ResourceClient[T]) Raw() *Client { return r.c }

// Put stores a value. Blocks until the write is visible in this client's
// reads.
func (r *ResourceClient[T]) Put(ctx context.Context, key []byte, value T) error {
	b, err := r.serde.Serialize(value)
	if err != nil {
		return fmt.Errorf("kvstore: serializing the value of %q: %w", key, err)
	}
	return r.c.Put(ctx, key, b)
}

// Get retrieves a value by key from local storage. Returns ErrNotFound if
// the key does not exist. May return stale data if this client's watch is
// lagging or if other clients wrote recently.
func (r *ResourceClient[T]) Get(ctx context.Context, key []byte) (T, error) {
	var zero T
	b, err := r.c.Get(ctx, key)
	if err != nil {
		return zero, err
	}
	v, err := r.serde.Deserialize(b)
	if err != nil {
		return zero, fmt.Errorf("kvstore: deserializing the value of %q: %w", key, err)
	}
	return v, nil
}

// Delete removes a key. Blocks until the delete is visible in this
// client's reads.
func (r *ResourceClient[T]) Delete(ctx context.Context, key []byte) error {
	return r.c.Delete(ctx, key)
}

// Range iterates over keys in the given range from local storage. Use
// Prefix() for prefix queries. May return stale data if this client's
// watch is lagging or if other clients wrote recently. Stops iteration on
// first storage or deserialization error. Corrupt data indicates a real
// problem that must be fixed, not worked around.
func (r *ResourceClient[T]) Range(ctx context.Context, constraint KeyConstraint, opts QueryOptions) iter.Seq2[TypedKV[T], error] {
	return func(yield func(TypedKV[T], error) bool) {
		for kv, err := range r.c.Range(ctx, constraint, opts) {
			if err != nil {
				yield(TypedKV[T]{}, err)
				return
			}
			v, err := r.serde.Deserialize(kv.Value)
			if err != nil {
				yield(TypedKV[T]{Key: kv.Key}, fmt.Errorf("kvstore: deserializing the value of %q: %w", kv.Key, err))
				return
			}
			if !yield(TypedKV[T]{Key: kv.Key, Value: v}, nil) {
				return
			}
		}
	}
}

// Batch creates a new typed batch for bulk operations.
func (r *ResourceClient[T]) Batch() *TypedBatch[T] {
	return &TypedBatch[T]{b: r.c.Batch(), serde: r.serde}
}

// TypedBatch accumulates typed Put and Delete operations.
type TypedBatch[T any] struct {
	b     *Batch
	serde Serde[T]
	err   error // the first serialization error; Execute returns it
}

// Put adds a put operation to the batch. A value that fails to serialize
// makes Execute fail without writing anything.
func (b *TypedBatch[T]) Put(key []byte, value T) *TypedBatch[T] {
	v, err := b.serde.Serialize(value)
	if err != nil {
		if b.err == nil {
			b.err = fmt.Errorf("kvstore: serializing the value of %q: %w", key, err)
		}
		return b
	}
	b.b.Put(key, v)
	return b
}

// Delete adds a delete operation to the batch.
func (b *TypedBatch[T]) Delete(key []byte) *TypedBatch[T] {
	b.b.Delete(key)
	return b
}

// Execute produces all operations and waits for visibility in this
// client's reads.
func (b *TypedBatch[T]) Execute(ctx context.Context) error {
	if b.err != nil {
		return b.err
	}
	return b.b.Execute(ctx)
}

// WrapOnSet creates a raw OnSet callback that deserializes values before
// calling the typed callback. Deserialization errors are silently ignored
// since hooks fire after successful storage operations, and the same serde
// is used for storage - a deserialization failure here indicates a bug.
func WrapOnSet[T any](serde Serde[T], fn func(key []byte, value T)) func(key, value []byte) {
	return func(key, value []byte) {
		v, err := serde.Deserialize(value)
		if err != nil {
			return
		}
		fn(key, v)
	}
}

// WrapOnDelete creates a typed OnDelete callback. This is a convenience
// wrapper for symmetry with WrapOnSet.
func WrapOnDelete[T any](fn func(key []byte)) func(key []byte) {
	return fn
}
