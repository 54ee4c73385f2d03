// Complete Example of the Go client API guide, verbatim except for the
// "errors" import, which the guide's listing leaves out although the code
// uses errors.Is. It expects a server at localhost:9001.
package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	norikv "github.com/norikv/norikv-go"
)

func main() {
	ctx := context.Background()

	// Configure with retry policy
	retryConfig := &norikv.RetryConfig{
		MaxAttempts:  5,
		InitialDelay: 100 * time.Millisecond,
		MaxDelay:     2 * time.Second,
	}

	config := &norikv.ClientConfig{
		Nodes:       []string{"localhost:9001", "localhost:9002"},
		TotalShards: 1024,
		Timeout:     5 * time.Second,
		Retry:       retryConfig,
	}

	client, err := norikv.NewClient(ctx, config)
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()

	// Write with TTL and idempotency
	key := []byte("session:abc123")
	value := []byte(`{"user_id":42}`)
	ttl := uint64(3600000) // 1 hour

	putOpts := &norikv.PutOptions{
		TTLMs:          &ttl,
		IdempotencyKey: "session-create-abc123",
	}

	version, err := client.Put(ctx, key, value, putOpts)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("Written: %v\n", version)

	// Read with linearizable consistency
	getOpts := &norikv.GetOptions{
		Consistency: norikv.ConsistencyLinearizable,
	}

	result, err := client.Get(ctx, key, getOpts)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("Read: %s\n", result.Value)

	// Update with CAS
	newValue := []byte(`{"user_id":42,"active":true}`)
	casOpts := &norikv.PutOptions{
		IfMatchVersion: result.Version,
	}

	_, err = client.Put(ctx, key, newValue, casOpts)
	if err != nil {
		if errors.Is(err, norikv.ErrVersionMismatch) {
			fmt.Println("CAS failed - retry needed")
		} else {
			log.Fatal(err)
		}
	}

	// Monitor topology
	client.OnTopologyChange(func(event *norikv.TopologyChangeEvent) {
		fmt.Printf("Cluster changed: epoch %d\n", event.CurrentEpoch)
	})

	// Get statistics
	stats := client.Stats()
	fmt.Printf("Stats: %+v\n", stats)
}
