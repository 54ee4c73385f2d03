// "Client Configuration" of the Go client API guide: the Basic
// Configuration and Retry Configuration samples, verbatim in the functions
// below. The basic one names hosts node1 and node2, so this program only
// builds it; the retry one is used to connect to localhost:9001.
package main

import (
	"context"
	"fmt"
	"log"
	"time"

	norikv "github.com/norikv/norikv-go"
)

// Seed: Client Configuration / Basic Configuration.
func basicConfiguration() *norikv.ClientConfig {
	config := &norikv.ClientConfig{
		Nodes:       []string{"node1:9001", "node2:9001"},
		TotalShards: 1024,
		Timeout:     5 * time.Second,
	}
	return config
}

// Seed: Client Configuration / Retry Configuration.
func retryConfiguration() *norikv.ClientConfig {
	retryConfig := &norikv.RetryConfig{
		MaxAttempts:  10,
		InitialDelay: 100 * time.Millisecond,
		MaxDelay:     5 * time.Second,
		Jitter:       100 * time.Millisecond,
	}

	config := &norikv.ClientConfig{
		Nodes:       []string{"localhost:9001"},
		TotalShards: 1024,
		Retry:       retryConfig,
	}
	return config
}

func main() {
	basic := basicConfiguration()
	fmt.Printf("Basic configuration: nodes %v, %d shards, timeout %v\n", basic.Nodes, basic.TotalShards, basic.Timeout)

	config := retryConfiguration()
	client, err := norikv.NewClient(context.Background(), config)
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	v, err := client.Put(context.Background(), []byte("config-example"), []byte("ok"), nil)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("Connected with the retry configuration; wrote version %v\n", v)

	defaults := norikv.DefaultClientConfig([]string{"localhost:9001"})
	fmt.Printf("Default configuration: %d shards, timeout %v, retry %+v\n", defaults.TotalShards, defaults.Timeout, *defaults.Retry)
}
