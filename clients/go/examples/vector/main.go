// "Vector Operations" of the Go client API guide. Each function holds one
// sample verbatim; the lines after a sample only use what it declared (Go
// rejects unused variables). main supplies what the samples take from their
// surroundings (ctx, client, getEmbedding) and runs them in the guide's
// order, then the "Complete Vector Example" (completeExample, with its
// getProductEmbedding). It expects a server at localhost:9001.
package main

import (
	"context"
	"errors"
	"fmt"
	"log"

	norikv "github.com/norikv/norikv-go"
)

var (
	ctx    = context.Background()
	client *norikv.Client
)

// getEmbedding stands in for an embedding model: 1536 deterministic values
// derived from the text.
func getEmbedding(text string) []float32 {
	v := make([]float32, 1536)
	for i := range v {
		v[i] = float32((int(text[i%len(text)])*(i+7))%97) / 97
	}
	return v
}

// Seed: Creating a Vector Index.
func createIndex() {
	created, err := client.VectorCreateIndex(
		ctx,
		"embeddings",           // namespace
		1536,                   // dimensions
		norikv.DistanceCosine,  // distance function
		norikv.VectorIndexHNSW, // index type
		nil,                    // options
	)
	if err != nil {
		log.Fatal(err)
	}
	if created {
		fmt.Println("Index created")
	} else {
		fmt.Println("Index already exists")
	}
}

// Seed: Creating a Vector Index / With Options.
func createIndexWithOptions() {
	options := &norikv.CreateVectorIndexOptions{
		IdempotencyKey: "create-embeddings-index",
	}
	created, err := client.VectorCreateIndex(
		ctx,
		"embeddings",
		1536,
		norikv.DistanceCosine,
		norikv.VectorIndexHNSW,
		options,
	)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("Create with options: created=%v\n", created)
}

// Seed: Inserting Vectors.
func insert() {
	embedding := getEmbedding("Hello world")
	version, err := client.VectorInsert(
		ctx,
		"embeddings", // namespace
		"doc-123",    // unique ID
		embedding,    // []float32
		nil,          // options
	)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("Inserted at version: %v\n", version)
}

// Seed: Inserting Vectors / With Options.
func insertWithOptions(embedding []float32) {
	options := &norikv.VectorInsertOptions{
		IdempotencyKey: "insert-doc-123",
	}
	version, err := client.VectorInsert(ctx, "embeddings", "doc-123", embedding, options)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("Insert with options: version %v\n", version)
}

// Seed: Searching for Similar Vectors.
func search() {
	query := getEmbedding("Find similar documents")
	result, err := client.VectorSearch(
		ctx,
		"embeddings", // namespace
		query,        // query vector
		10,           // k nearest neighbors
		nil,          // options
	)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("Search took %dus\n", result.SearchTimeUs)
	for _, match := range result.Matches {
		fmt.Printf("ID: %s, Distance: %.4f\n", match.ID, match.Distance)
	}
}

// Seed: Searching for Similar Vectors / With Options.
func searchWithOptions(query []float32) {
	options := &norikv.VectorSearchOptions{
		IncludeVectors: true, // include vector data in results
	}
	result, err := client.VectorSearch(ctx, "embeddings", query, 10, options)
	if err != nil {
		log.Fatal(err)
	}
	for _, match := range result.Matches {
		fmt.Printf("ID: %s, Distance: %.4f, Vector dims: %d\n",
			match.ID, match.Distance, len(match.Vector))
	}
}

// Seed: Getting a Vector by ID.
func get() {
	vector, err := client.VectorGet(ctx, "embeddings", "doc-123")
	if err != nil {
		if errors.Is(err, norikv.ErrKeyNotFound) {
			fmt.Println("Vector not found")
		} else {
			log.Fatal(err)
		}
	}
	if vector != nil {
		fmt.Printf("Vector has %d dimensions\n", len(vector))
	}
}

// Seed: Deleting Vectors.
func deleteVector() {
	deleted, err := client.VectorDelete(ctx, "embeddings", "doc-123", nil)
	if err != nil {
		log.Fatal(err)
	}
	if deleted {
		fmt.Println("Vector deleted")
	} else {
		fmt.Println("Vector not found")
	}
}

// Seed: Deleting Vectors / With Options.
func deleteWithOptions() {
	options := &norikv.VectorDeleteOptions{
		IdempotencyKey: "delete-doc-123",
	}
	deleted, err := client.VectorDelete(ctx, "embeddings", "doc-123", options)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("Delete with options: deleted=%v\n", deleted)
}

// Seed: Dropping a Vector Index.
func dropIndex() {
	dropped, err := client.VectorDropIndex(ctx, "embeddings", nil)
	if err != nil {
		log.Fatal(err)
	}
	if dropped {
		fmt.Println("Index dropped")
	} else {
		fmt.Println("Index did not exist")
	}
}

// Seed: Complete Vector Example (its main, renamed).
func completeExample() {
	ctx := context.Background()
	config := norikv.DefaultClientConfig([]string{"localhost:9001"})
	client, err := norikv.NewClient(ctx, config)
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	// Create index
	_, err = client.VectorCreateIndex(
		ctx,
		"products",
		768,
		norikv.DistanceCosine,
		norikv.VectorIndexHNSW,
		nil,
	)
	if err != nil {
		log.Fatal(err)
	}
	// Insert product embeddings
	productEmbedding := getProductEmbedding("Red running shoes")
	_, err = client.VectorInsert(ctx, "products", "prod-001", productEmbedding, nil)
	if err != nil {
		log.Fatal(err)
	}
	// Search for similar products
	queryEmbedding := getProductEmbedding("Athletic footwear")
	results, err := client.VectorSearch(ctx, "products", queryEmbedding, 5, nil)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("Similar products:")
	for _, match := range results.Matches {
		fmt.Printf(" %s (distance: %.4f)\n", match.ID, match.Distance)
	}
	// Cleanup
	client.VectorDelete(ctx, "products", "prod-001", nil)
	client.VectorDropIndex(ctx, "products", nil)
}

func getProductEmbedding(text string) []float32 {
	// Call your embedding model here
	return make([]float32, 768)
}

func main() {
	var err error
	client, err = norikv.NewClient(ctx, norikv.DefaultClientConfig([]string{"localhost:9001"}))
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	createIndex()
	createIndexWithOptions()
	insert()
	insertWithOptions(getEmbedding("Hello world"))
	search()
	searchWithOptions(getEmbedding("Hello world"))
	get()
	deleteVector()
	deleteWithOptions()
	get() // deleted: prints nothing
	dropIndex()
	dropIndex()
	completeExample()
	fmt.Println("vector samples: ok")
}
