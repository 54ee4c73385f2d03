// "Core Operations" of the Go client API guide. Each function holds one
// sample verbatim; the lines after a sample only use what it declared (Go
// rejects unused variables) and check it. main supplies what the samples
// take from their surroundings (ctx, client, key, value, expectedVersion).
// It expects a server at localhost:9001.
package main

import (
	"bytes"
	"context"
	"fmt"
	"log"

	norikv "github.com/norikv/norikv-go"
)

var (
	ctx    = context.Background()
	client *norikv.Client
)

// Seed: PUT - Write Data / Basic PUT.
func basicPut() {
	key := []byte("user:123")
	value := []byte(`{"name":"Alice"}`)

	version, err := client.Put(ctx, key, value, nil)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("Written at version: %v\n", version)
}

// Seed: PUT - Write Data / PUT with Options.
func putWithOptions(key, value []byte, expectedVersion *norikv.Version) {
	ttl := uint64(60000) // 60 seconds
	options := &norikv.PutOptions{
		TTLMs:          &ttl,
		IdempotencyKey: "order-12345",
		IfMatchVersion: expectedVersion, // CAS
	}

	version, err := client.Put(ctx, key, value, options)

	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("PUT with options wrote version %v\n", version)
}

// Seed: GET - Read Data / Basic GET.
func basicGet() {
	key := []byte("user:123")

	result, err := client.Get(ctx, key, nil)
	if err != nil {
		log.Fatal(err)
	}

	value := result.Value
	version := result.Version

	fmt.Printf("GET: %s at version %v\n", value, version)
	if !bytes.Equal(value, []byte(`{"name":"Alice"}`)) {
		log.Fatalf("GET returned %q", value)
	}
}

// Seed: GET - Read Data / GET with Consistency Level.
func getWithConsistency(key []byte) {
	options := &norikv.GetOptions{
		Consistency: norikv.ConsistencyLinearizable,
	}

	result, err := client.Get(ctx, key, options)

	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("Linearizable GET: %s\n", result.Value)
}

// Seed: DELETE - Remove Data / DELETE with Options.
func deleteWithOptions(key []byte, expectedVersion *norikv.Version) {
	options := &norikv.DeleteOptions{
		IdempotencyKey: "delete-order-12345",
		IfMatchVersion: expectedVersion,
	}

	err := client.Delete(ctx, key, options)

	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("DELETE with options done")
}

func main() {
	var err error
	client, err = norikv.NewClient(ctx, norikv.DefaultClientConfig([]string{"localhost:9001"}))
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()

	basicPut()
	basicGet()

	key := []byte("order:12345")
	expectedVersion, err := client.Put(ctx, key, []byte("pending"), nil)
	if err != nil {
		log.Fatal(err)
	}
	putWithOptions(key, []byte("paid"), expectedVersion)
	getWithConsistency(key)

	current, err := client.Get(ctx, key, nil)
	if err != nil {
		log.Fatal(err)
	}
	deleteWithOptions(key, current.Version)
	fmt.Println("core operations: ok")
}
