// "Error Handling" of the Go client API guide: Error Types, Handling
// Specific Errors, Retry Pattern and Graceful Degradation, verbatim in the
// functions below. It expects a server at localhost:9001.
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

// Seed: Error Handling / Error Types. The guide lists the SDK's
// declarations; they are errors with exactly these names.
var (
	ErrKeyNotFound     error = norikv.ErrKeyNotFound     // Key does not exist
	ErrVersionMismatch error = norikv.ErrVersionMismatch // CAS version conflict
	ErrAlreadyExists   error = norikv.ErrAlreadyExists   // IfNotExists conflict
	ErrConnection      error = norikv.ErrConnection      // Network or cluster issues
)

// Seed: Error Handling / Handling Specific Errors.
func handleSpecificErrors(key []byte) {
	result, err := client.Get(ctx, key, nil)
	if err != nil {
		switch {
		case errors.Is(err, norikv.ErrKeyNotFound):
			fmt.Println("Key not found")
		case errors.Is(err, norikv.ErrConnection):
			fmt.Println("Connection error:", err)
		default:
			fmt.Println("Error:", err)
		}
	}
	_ = result
}

// Seed: Error Handling / Retry Pattern.
func retryPattern(key, value []byte) error {
	maxAttempts := 3
	for attempt := 1; attempt <= maxAttempts; attempt++ {
		_, err := client.Put(ctx, key, value, nil)
		if err == nil {
			break // Success
		}

		if !errors.Is(err, norikv.ErrConnection) {
			return err // Non-retryable
		}

		if attempt == maxAttempts {
			return err // Give up
		}

		// Exponential backoff
		time.Sleep(time.Duration(1<<attempt) * 100 * time.Millisecond)
	}
	return nil
}

// Seed: Error Handling / Graceful Degradation.
func getWithFallback(client *norikv.Client, ctx context.Context, key, defaultValue []byte) []byte {
	result, err := client.Get(ctx, key, nil)
	if err != nil {
		log.Printf("Failed to get key, using default: %v", err)
		return defaultValue
	}
	return result.Value
}

func main() {
	var err error
	client, err = norikv.NewClient(ctx, norikv.DefaultClientConfig([]string{"localhost:9001"}))
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()

	handleSpecificErrors([]byte("errors:missing"))

	if err := retryPattern([]byte("errors:retry"), []byte("v")); err != nil {
		log.Fatal(err)
	}
	fmt.Println("Retry pattern: written")

	got := getWithFallback(client, ctx, []byte("errors:missing"), []byte("default"))
	fmt.Printf("Fallback value: %s\n", got)
	got = getWithFallback(client, ctx, []byte("errors:retry"), []byte("default"))
	fmt.Printf("Stored value: %s\n", got)

	for _, e := range []error{ErrKeyNotFound, ErrVersionMismatch, ErrAlreadyExists, ErrConnection} {
		fmt.Println("error type:", e)
	}
}
