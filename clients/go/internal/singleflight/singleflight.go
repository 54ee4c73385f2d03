// Package singleflight deduplicates concurrent calls for the same key: while
// one call for a key runs, later callers for that key wait for its result
// instead of starting their own. The client uses it so that a thousand
// requests that all find a shard's leader unknown send one discovery, not a
// thousand.
//
// The function runs on its own goroutine, so each caller can give up when
// its own context ends without cancelling the call for the others; the
// function must therefore bound its own running time. The number of calls in
// flight is bounded by the number of distinct keys (shards). Safe for
// concurrent use.
package singleflight

import (
	"context"
	"sync"
)

type call[V any] struct {
	done   chan struct{}
	val    V
	err    error
	shared int // callers beyond the first, for tests and stats
}

// Group runs at most one call per key at a time. The zero value is ready.
type Group[K comparable, V any] struct {
	mu sync.Mutex
	m  map[K]*call[V]
}

// Do runs fn for key unless a call for key is already running, in which case
// it waits for that call's result. shared reports whether the result came
// from a call started by another caller. When ctx ends first, Do returns
// ctx.Err() and the call goes on for the others.
func (g *Group[K, V]) Do(ctx context.Context, key K, fn func() (V, error)) (v V, err error, shared bool) {
	g.mu.Lock()
	if g.m == nil {
		g.m = make(map[K]*call[V])
	}
	c, running := g.m[key]
	if running {
		c.shared++
	} else {
		c = &call[V]{done: make(chan struct{})}
		g.m[key] = c
		go func() {
			c.val, c.err = fn()
			g.mu.Lock()
			delete(g.m, key)
			g.mu.Unlock()
			close(c.done)
		}()
	}
	g.mu.Unlock()

	select {
	case <-c.done:
		return c.val, c.err, running
	case <-ctx.Done():
		var zero V
		return zero, ctx.Err(), running
	}
}

// InFlight returns the number of keys with a call running.
func (g *Group[K, V]) InFlight() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.m)
}
