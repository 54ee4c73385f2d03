package singleflight

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestConcurrentCallersForOneKeyShareOneExecution(t *testing.T) {
	var g Group[int, string]
	var runs atomic.Int32
	release := make(chan struct{})
	const callers = 64
	var wg sync.WaitGroup
	results := make([]string, callers)
	sharedCount := atomic.Int32{}
	started := make(chan struct{}, callers)
	for i := 0; i < callers; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			started <- struct{}{}
			v, err, shared := g.Do(context.Background(), 7, func() (string, error) {
				runs.Add(1)
				<-release
				return "leader-7", nil
			})
			if err != nil {
				t.Errorf("caller %d: %v", i, err)
			}
			if shared {
				sharedCount.Add(1)
			}
			results[i] = v
		}(i)
	}
	for i := 0; i < callers; i++ {
		<-started
	}
	// Give every caller time to join the flight before releasing it.
	deadline := time.Now().Add(5 * time.Second)
	for {
		g.mu.Lock()
		c := g.m[7]
		n := 0
		if c != nil {
			n = c.shared
		}
		g.mu.Unlock()
		if n == callers-1 || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	close(release)
	wg.Wait()
	if got := runs.Load(); got != 1 {
		t.Fatalf("fn ran %d times for %d concurrent callers of one key, want 1", got, callers)
	}
	if got := sharedCount.Load(); got != callers-1 {
		t.Fatalf("%d callers reported a shared result, want %d", got, callers-1)
	}
	for i, r := range results {
		if r != "leader-7" {
			t.Fatalf("caller %d got %q", i, r)
		}
	}
	if g.InFlight() != 0 {
		t.Fatalf("%d flights left after all finished", g.InFlight())
	}
}

func TestDistinctKeysRunIndependently(t *testing.T) {
	var g Group[int, int]
	var runs atomic.Int32
	var wg sync.WaitGroup
	for k := 0; k < 8; k++ {
		wg.Add(1)
		go func(k int) {
			defer wg.Done()
			v, err, _ := g.Do(context.Background(), k, func() (int, error) {
				runs.Add(1)
				return k * 10, nil
			})
			if err != nil || v != k*10 {
				t.Errorf("key %d: got %d, %v", k, v, err)
			}
		}(k)
	}
	wg.Wait()
	if runs.Load() != 8 {
		t.Fatalf("8 keys ran fn %d times, want 8", runs.Load())
	}
}

func TestCallerContextEndsWaitWithoutCancellingOthers(t *testing.T) {
	var g Group[string, int]
	release := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err, _ := g.Do(ctx, "s", func() (int, error) { <-release; return 1, nil })
		errc <- err
	}()
	for g.InFlight() == 0 {
		time.Sleep(time.Millisecond)
	}
	done := make(chan int, 1)
	go func() {
		v, _, _ := g.Do(context.Background(), "s", func() (int, error) { return 2, nil })
		done <- v
	}()
	// Wait until the second caller has joined the running call.
	for {
		g.mu.Lock()
		joined := g.m["s"] != nil && g.m["s"].shared == 1
		g.mu.Unlock()
		if joined {
			break
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled caller got %v, want context.Canceled", err)
	}
	close(release)
	if v := <-done; v != 1 {
		t.Fatalf("second caller got %d, want the running call's 1", v)
	}
}

func TestErrorsAreSharedAndNextCallRunsAgain(t *testing.T) {
	var g Group[int, int]
	boom := errors.New("boom")
	if _, err, _ := g.Do(context.Background(), 1, func() (int, error) { return 0, boom }); !errors.Is(err, boom) {
		t.Fatalf("got %v, want boom", err)
	}
	v, err, _ := g.Do(context.Background(), 1, func() (int, error) { return 5, nil })
	if err != nil || v != 5 {
		t.Fatalf("after a failed flight the next call must run again: got %d, %v", v, err)
	}
}
