// "Time-To-Live (TTL)" of the Go client API guide, verbatim in ttlExample:
// it writes a key with a 60 s TTL and reads it again after 61 s. It
// expects a server at localhost:9001.
package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	norikv "github.com/norikv/norikv-go"
)

var (
	ctx    = context.Background()
	client *norikv.Client
)

// Seed: Advanced Features / Time-To-Live (TTL).
func ttlExample(key, value []byte) {
	ttl := uint64(60000) // 60 seconds
	options := &norikv.PutOptions{
		TTLMs: &ttl,
	}

	client.Put(ctx, key, value, options)

	// Key automatically deleted after TTL
	time.Sleep(61 * time.Second)

	_, err := client.Get(ctx, key, nil)
	if errors.Is(err, norikv.ErrKeyNotFound) {
		fmt.Println("Key expired")
	}
}

func main() {
	var err error
	client, err = norikv.NewClient(ctx, norikv.DefaultClientConfig([]string{"localhost:9001"}))
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()

	key := []byte("session:ttl-example")
	ttlExample(key, []byte("temporary"))
	if _, err := client.Get(ctx, key, nil); !errors.Is(err, norikv.ErrKeyNotFound) {
		log.Fatalf("key still readable 61 s after a 60 s TTL: %v", err)
	}
}
