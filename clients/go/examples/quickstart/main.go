// Quick Start of the Go client API guide, verbatim except for the "time"
// import, which the guide's listing leaves out although the code uses
// time.Second. It expects a server at localhost:9001 (the runner in
// examples_test.go starts one there).
package main

import (
	"context"
	"fmt"
	"log"
	"time"

	norikv "github.com/norikv/norikv-go"
)

func main() {
	ctx := context.Background()

	// Configure client
	config := norikv.ClientConfig{
		Nodes:       []string{"localhost:9001", "localhost:9002"},
		TotalShards: 1024,
		Timeout:     5 * time.Second,
	}

	// Create client
	client, err := norikv.NewClient(ctx, &config)
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()

	// Put a value
	key := []byte("user:alice")
	value := []byte(`{"name":"Alice","age":30}`)

	version, err := client.Put(ctx, key, value, nil)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("Wrote version: %v\n", version)

	// Get the value
	result, err := client.Get(ctx, key, nil)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("Value: %s\n", result.Value)

	// Delete
	err = client.Delete(ctx, key, nil)
	if err != nil {
		log.Fatal(err)
	}
}
