package kvstore

import (
	"bytes"
	"context"
	"iter"
	"slices"
	"sync"
)

// KeyValue is one entry of a Range or of ApplyBatch (nil Value in
// ApplyBatch: delete).
type KeyValue struct {
	Key   []byte
	Value []byte
}

// KeyConstraint defines bounds for a key range scan.
type KeyConstraint struct {
	Start []byte // inclusive, nil = beginning
	End   []byte // exclusive, nil = end
}

// Prefix creates a KeyConstraint that matches all keys with the given
// prefix.
func Prefix(p string) KeyConstraint {
	if p == "" {
		return KeyConstraint{}
	}
	return KeyConstraint{Start: []byte(p), End: prefixEnd([]byte(p))}
}

// prefixEnd is the first key after every key that starts with p; nil when
// there is none (p is all 0xff).
func prefixEnd(p []byte) []byte {
	end := bytes.Clone(p)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}

// contains reports whether key is within c.
func (c KeyConstraint) contains(key []byte) bool {
	if c.Start != nil && bytes.Compare(key, c.Start) < 0 {
		return false
	}
	if c.End != nil && bytes.Compare(key, c.End) >= 0 {
		return false
	}
	return true
}

// QueryOptions refine a Range over local storage.
type QueryOptions struct {
	// Limit stops the range after this many entries; 0: no limit.
	Limit int
}

// Storage is the interface for key-value storage backends. All methods
// accept a context to support cancellation and timeouts, particularly
// important for remote storage implementations. Get returns ErrNotFound
// for a missing key. Range yields keys in ascending byte order.
type Storage interface {
	Get(ctx context.Context, key []byte) ([]byte, error)
	Set(ctx context.Context, key []byte, value []byte) error
	Delete(ctx context.Context, key []byte) error
	Range(ctx context.Context, c KeyConstraint, opts QueryOptions) iter.Seq2[KeyValue, error]
}

// BatchStorage is an optional interface for storage backends that support
// batch operations. Implementations can provide this for better
// performance during bulk inserts (e.g., bootstrap/restore).
type BatchStorage interface {
	Storage
	// ApplyBatch applies a batch of set and delete operations atomically.
	// For each item: nil Value means delete, non-nil means set.
	ApplyBatch(ctx context.Context, items []KeyValue) error
}

// MemoryStorage is a Storage held in memory: a map for Get and a sorted key
// slice for Range. Safe for concurrent use. Its size is the data set's.
type MemoryStorage struct {
	mu   sync.RWMutex
	m    map[string][]byte
	keys []string // sorted
}

// NewMemoryStorage returns an empty in-memory Storage.
func NewMemoryStorage() *MemoryStorage {
	return &MemoryStorage{m: make(map[string][]byte)}
}

var _ BatchStorage = (*MemoryStorage)(nil)

// Get returns a copy of key's value, or ErrNotFound.
func (s *MemoryStorage) Get(ctx context.Context, key []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	v, ok := s.m[string(key)]
	if !ok {
		return nil, ErrNotFound
	}
	return bytes.Clone(v), nil
}

// Set stores a copy of value under key.
func (s *MemoryStorage) Set(ctx context.Context, key, value []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.set(key, value)
	return nil
}

func (s *MemoryStorage) set(key, value []byte) {
	k := string(key)
	if _, ok := s.m[k]; !ok {
		i, _ := slices.BinarySearch(s.keys, k)
		s.keys = slices.Insert(s.keys, i, k)
	}
	if value == nil {
		value = []byte{}
	}
	s.m[k] = bytes.Clone(value)
}

func (s *MemoryStorage) del(key []byte) {
	k := string(key)
	if _, ok := s.m[k]; !ok {
		return
	}
	delete(s.m, k)
	if i, found := slices.BinarySearch(s.keys, k); found {
		s.keys = slices.Delete(s.keys, i, i+1)
	}
}

// Delete removes key; deleting a missing key succeeds.
func (s *MemoryStorage) Delete(ctx context.Context, key []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.del(key)
	return nil
}

// ApplyBatch applies items under one lock: readers see all or none.
func (s *MemoryStorage) ApplyBatch(ctx context.Context, items []KeyValue) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, it := range items {
		if it.Value == nil {
			s.del(it.Key)
		} else {
			s.set(it.Key, it.Value)
		}
	}
	return nil
}

// memoryRangeChunk is how many entries Range copies per lock hold, so a
// long range neither holds the lock nor copies the whole store at once.
const memoryRangeChunk = 256

// Range yields the entries within c in key order, copied in chunks; the
// loop body may call the storage.
func (s *MemoryStorage) Range(ctx context.Context, c KeyConstraint, opts QueryOptions) iter.Seq2[KeyValue, error] {
	return func(yield func(KeyValue, error) bool) {
		after := ""
		first := true
		n := 0
		for {
			if err := ctx.Err(); err != nil {
				yield(KeyValue{}, err)
				return
			}
			var chunk []KeyValue
			s.mu.RLock()
			var i int
			if first {
				i, _ = slices.BinarySearch(s.keys, string(c.Start))
			} else {
				var found bool
				i, found = slices.BinarySearch(s.keys, after)
				if found {
					i++
				}
			}
			for ; i < len(s.keys) && len(chunk) < memoryRangeChunk; i++ {
				k := s.keys[i]
				if c.End != nil && k >= string(c.End) {
					break
				}
				chunk = append(chunk, KeyValue{Key: []byte(k), Value: bytes.Clone(s.m[k])})
			}
			s.mu.RUnlock()
			first = false
			for _, kv := range chunk {
				if opts.Limit > 0 && n >= opts.Limit {
					return
				}
				n++
				if !yield(kv, nil) {
					return
				}
			}
			if len(chunk) < memoryRangeChunk {
				return
			}
			after = string(chunk[len(chunk)-1].Key)
		}
	}
}
