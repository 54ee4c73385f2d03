// "Best Practices" and "Performance Tips" of the Go client API guide, each
// sample verbatim in a function ("Monitor Client Health" is in ../health,
// as it uses a logger with an Error method). The package-level client and
// init are the "Reuse Client Instances" sample itself; config is what its
// "Bad" handleRequest refers to. It expects a server at localhost:9001.
package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"runtime"
	"sync"
	"time"

	norikv "github.com/norikv/norikv-go"
)

var ctx = context.Background()

var config = norikv.DefaultClientConfig([]string{"localhost:9001"})

// Seed: Best Practices / 2. Reuse Client Instances (good).
// Good: Single client instance
var client *norikv.Client

func init() {
	config := norikv.DefaultClientConfig([]string{"localhost:9001"})
	client, _ = norikv.NewClient(context.Background(), config)
}

// Seed: Best Practices / 2. Reuse Client Instances (bad).
// Bad: Creating client per request
func handleRequest() {
	client, _ := norikv.NewClient(context.Background(), config)
	defer client.Close() // Closes connections!
}

// Seed: Best Practices / 1. Use Context for Timeouts.
func contextTimeouts(key []byte) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	result, err := client.Get(ctx, key, nil)

	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("Read with a 5 s timeout: %s\n", result.Value)
}

// Seed: Best Practices / 4. Use Idempotency Keys.
func idempotencyKeys(key, value []byte, orderID string) {
	idempotencyKey := "order-" + orderID
	options := &norikv.PutOptions{
		IdempotencyKey: idempotencyKey,
	}
	client.Put(ctx, key, value, options)
}

// Seed: Best Practices / 6. Handle Version Conflicts.
func handleVersionConflicts(key, newValue []byte) error {
	maxRetries := 10
	for i := 0; i < maxRetries; i++ {
		result, err := client.Get(ctx, key, nil)
		if err != nil {
			return err
		}

		// ... compute new value ...

		options := &norikv.PutOptions{
			IfMatchVersion: result.Version,
		}

		_, err = client.Put(ctx, key, newValue, options)
		if err == nil {
			break // Success
		}

		if !errors.Is(err, norikv.ErrVersionMismatch) {
			return err
		}

		if i == maxRetries-1 {
			return err
		}

		time.Sleep(10 * time.Millisecond) // Small backoff
	}
	return nil
}

// Seed: Best Practices / 7. Use Goroutines Safely.
func goroutinesSafely(value []byte) {
	var wg sync.WaitGroup
	for i := 0; i < 100; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			key := []byte(fmt.Sprintf("key-%d", i))
			client.Put(ctx, key, value, nil)
		}(i)
	}
	wg.Wait()
}

// Seed: Performance Tips / 1. Concurrent Access. The sample starts the
// workers; the caller feeds and closes work.
func concurrentAccess(value []byte) chan []byte {
	numWorkers := runtime.NumCPU()
	work := make(chan []byte, 100)

	for i := 0; i < numWorkers; i++ {
		go func() {
			for key := range work {
				client.Put(ctx, key, value, nil)
			}
		}()
	}
	return work
}

func main() {
	if client == nil {
		log.Fatal("init could not connect to localhost:9001")
	}
	defer client.Close()

	key := []byte("bp:key")
	if _, err := client.Put(ctx, key, []byte("hello"), nil); err != nil {
		log.Fatal(err)
	}
	contextTimeouts(key)

	handleRequest()
	fmt.Println("handleRequest: a client per request works, but reuse one")

	idempotencyKeys([]byte("order:777"), []byte("placed"), "777")
	idempotencyKeys([]byte("order:777"), []byte("placed"), "777")
	if r, err := client.Get(ctx, []byte("order:777"), nil); err != nil || string(r.Value) != "placed" {
		log.Fatalf("idempotent order write: %v", err)
	}

	if err := handleVersionConflicts(key, []byte("updated")); err != nil {
		log.Fatal(err)
	}
	fmt.Println("Version conflict loop: updated")

	goroutinesSafely([]byte("parallel"))
	for i := 0; i < 100; i++ {
		if _, err := client.Get(ctx, []byte(fmt.Sprintf("key-%d", i)), nil); err != nil {
			log.Fatalf("key-%d after the goroutines sample: %v", i, err)
		}
	}
	fmt.Println("Goroutines: 100 keys written")

	work := concurrentAccess([]byte("worker"))
	for i := 0; i < 50; i++ {
		work <- []byte(fmt.Sprintf("work-%d", i))
	}
	close(work)
	// The sample's workers are not waited for; wait until their writes
	// are visible.
	deadline := time.Now().Add(30 * time.Second)
	for i := 0; i < 50; i++ {
		for {
			_, err := client.Get(ctx, []byte(fmt.Sprintf("work-%d", i)), nil)
			if err == nil {
				break
			}
			if !errors.Is(err, norikv.ErrKeyNotFound) || time.Now().After(deadline) {
				log.Fatalf("work-%d: %v", i, err)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	fmt.Println("Concurrent access: 50 keys written by the workers")
}
