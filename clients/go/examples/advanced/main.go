// "Advanced Features" of the Go client API guide: Compare-And-Swap,
// Idempotent Operations, Cluster Topology and Client Statistics, each
// verbatim in a function (Time-To-Live, which sleeps 61 s, is in ../ttl).
// Lines after a sample only use and check what it declared. It expects a
// server at localhost:9001.
package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"strconv"

	"github.com/google/uuid"
	norikv "github.com/norikv/norikv-go"
)

var (
	ctx    = context.Background()
	client *norikv.Client
)

// Seed: Advanced Features / Compare-And-Swap (CAS).
func compareAndSwap(key []byte) {
	// Read current value
	result, err := client.Get(ctx, key, nil)
	if err != nil {
		log.Fatal(err)
	}

	// Modify value
	value, _ := strconv.Atoi(string(result.Value))
	newValue := []byte(strconv.Itoa(value + 1))

	// Update with CAS
	options := &norikv.PutOptions{
		IfMatchVersion: result.Version,
	}

	_, err = client.Put(ctx, key, newValue, options)
	if errors.Is(err, norikv.ErrVersionMismatch) {
		fmt.Println("CAS failed - version changed")
	} else if err != nil {
		log.Fatal(err)
	}
}

// Seed: Advanced Features / Idempotent Operations.
func idempotentOperations(key, value []byte) {
	idempotencyKey := "payment-" + uuid.New().String()

	options := &norikv.PutOptions{
		IdempotencyKey: idempotencyKey,
	}

	// First attempt
	v1, err := client.Put(ctx, key, value, options)

	// Retry with same key (safe - returns same version)
	v2, err := client.Put(ctx, key, value, options)

	// v1 and v2 are equal

	if err != nil {
		log.Fatal(err)
	}
	if !v1.Equal(v2) {
		log.Fatalf("idempotent retry returned %v, first attempt %v", v2, v1)
	}
	fmt.Printf("Idempotent put: v1 %v == v2 %v\n", v1, v2)
}

// Seed: Advanced Features / Cluster Topology.
func clusterTopology() {
	// Get current cluster view
	view := client.GetClusterView()
	if view != nil {
		fmt.Printf("Cluster epoch: %d\n", view.Epoch)
		fmt.Printf("Nodes: %d\n", len(view.Nodes))
	}

	// Subscribe to topology changes
	unsubscribe := client.OnTopologyChange(func(event *norikv.TopologyChangeEvent) {
		fmt.Printf("Topology changed!\n")
		fmt.Printf("Previous epoch: %d\n", event.PreviousEpoch)
		fmt.Printf("Current epoch: %d\n", event.CurrentEpoch)
		fmt.Printf("Added nodes: %v\n", event.AddedNodes)
		fmt.Printf("Removed nodes: %v\n", event.RemovedNodes)
	})

	// Later: unsubscribe
	defer unsubscribe()
}

// Seed: Advanced Features / Client Statistics.
func clientStatistics() {
	stats := client.Stats()
	fmt.Printf("Active connections: %d\n", stats.Pool.ActiveConnections)
	fmt.Printf("Total nodes: %d\n", stats.Router.TotalNodes)
	fmt.Printf("Cached leaders: %d\n", stats.Topology.CachedLeaders)
}

func main() {
	var err error
	client, err = norikv.NewClient(ctx, norikv.DefaultClientConfig([]string{"localhost:9001"}))
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()

	counter := []byte("counter:cas-example")
	if _, err := client.Put(ctx, counter, []byte("41"), nil); err != nil {
		log.Fatal(err)
	}
	compareAndSwap(counter)
	r, err := client.Get(ctx, counter, nil)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("Counter after CAS: %s\n", r.Value)

	idempotentOperations([]byte("payment:1"), []byte(`{"amount":100}`))
	clusterTopology()
	clientStatistics()
}
