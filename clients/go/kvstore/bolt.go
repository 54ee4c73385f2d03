package kvstore

import (
	"bytes"
	"context"
	"fmt"
	"iter"
	"time"

	bolt "go.etcd.io/bbolt"
)

// BoltStorage is a persistent Storage in a bbolt file (go.etcd.io/bbolt: a
// B+tree in one memory-mapped file, ACID transactions, one writer at a
// time). Keys live in one bucket; ApplyBatch is one transaction. Safe for
// concurrent use. Close it when done (the Client does not own it).
//
// A Client bootstraps from the cluster every time it starts, so the file
// is a warm local copy, not the source of truth: keys deleted while the
// client was away are removed (with OnDelete hooks) by the bootstrap.
type BoltStorage struct {
	db     *bolt.DB
	bucket []byte
}

var _ BatchStorage = (*BoltStorage)(nil)

// boltDefaultBucket is the bucket keys are stored in.
const boltDefaultBucket = "kvstore"

// OpenBoltStorage opens (creating if needed) the bbolt file at path.
// bucket "" means "kvstore". bbolt locks the file against other processes
// (and other opens), so give each Storage its own file.
func OpenBoltStorage(path string, bucket string) (*BoltStorage, error) {
	if bucket == "" {
		bucket = boltDefaultBucket
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("kvstore: opening bolt file %s: %w", path, err)
	}
	s := &BoltStorage{db: db, bucket: []byte(bucket)}
	if err := db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(s.bucket)
		return err
	}); err != nil {
		db.Close()
		return nil, fmt.Errorf("kvstore: creating bucket %q in %s: %w", bucket, path, err)
	}
	return s, nil
}

// Close closes the file.
func (s *BoltStorage) Close() error { return s.db.Close() }

// Get returns a copy of key's value, or ErrNotFound.
func (s *BoltStorage) Get(ctx context.Context, key []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var out []byte
	err := s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(s.bucket).Get(key)
		if v == nil {
			return ErrNotFound
		}
		out = bytes.Clone(v) // bolt's slice is valid only inside the txn
		return nil
	})
	return out, err
}

// Set stores value under key (one transaction).
func (s *BoltStorage) Set(ctx context.Context, key, value []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if value == nil {
		value = []byte{}
	}
	return s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(s.bucket).Put(key, value) })
}

// Delete removes key; deleting a missing key succeeds.
func (s *BoltStorage) Delete(ctx context.Context, key []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(s.bucket).Delete(key) })
}

// ApplyBatch applies items in one transaction: all or nothing.
func (s *BoltStorage) ApplyBatch(ctx context.Context, items []KeyValue) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(s.bucket)
		for _, it := range items {
			var err error
			if it.Value == nil {
				err = b.Delete(it.Key)
			} else {
				err = b.Put(it.Key, it.Value)
			}
			if err != nil {
				return fmt.Errorf("kvstore: bolt batch on key %q: %w", it.Key, err)
			}
		}
		return nil
	})
}

// boltRangeChunk is how many entries Range copies per read transaction: the
// loop body runs outside any transaction, so it may write to the storage
// (a bolt write that grows the file waits for open read transactions).
const boltRangeChunk = 256

// Range yields the entries within c in key order.
func (s *BoltStorage) Range(ctx context.Context, c KeyConstraint, opts QueryOptions) iter.Seq2[KeyValue, error] {
	return func(yield func(KeyValue, error) bool) {
		var after []byte
		n := 0
		for {
			if err := ctx.Err(); err != nil {
				yield(KeyValue{}, err)
				return
			}
			var chunk []KeyValue
			err := s.db.View(func(tx *bolt.Tx) error {
				cur := tx.Bucket(s.bucket).Cursor()
				var k, v []byte
				if after == nil {
					if c.Start != nil {
						k, v = cur.Seek(c.Start)
					} else {
						k, v = cur.First()
					}
				} else {
					k, v = cur.Seek(after)
					if k != nil && bytes.Equal(k, after) {
						k, v = cur.Next()
					}
				}
				for ; k != nil && len(chunk) < boltRangeChunk; k, v = cur.Next() {
					if c.End != nil && bytes.Compare(k, c.End) >= 0 {
						break
					}
					chunk = append(chunk, KeyValue{Key: bytes.Clone(k), Value: bytes.Clone(v)})
				}
				return nil
			})
			if err != nil {
				yield(KeyValue{}, err)
				return
			}
			for _, kv := range chunk {
				if opts.Limit > 0 && n >= opts.Limit {
					return
				}
				n++
				if !yield(kv, nil) {
					return
				}
			}
			if len(chunk) < boltRangeChunk {
				return
			}
			after = chunk[len(chunk)-1].Key
		}
	}
}
