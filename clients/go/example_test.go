package norikv_test

import (
	"context"
	"errors"
	"fmt"
	"log"

	norikv "github.com/norikv/norikv-go"
	"github.com/norikv/norikv-go/hash"
)

// Compiled, not run (no Output comment): it needs a server. The programs
// under examples/ run against a real one in the tests.
func ExampleNewClient() {
	ctx := context.Background()
	client, err := norikv.NewClient(ctx, norikv.DefaultClientConfig([]string{"localhost:9001"}))
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()

	v, err := client.Put(ctx, []byte("user:alice"), []byte(`{"name":"Alice"}`), nil)
	if err != nil {
		log.Fatal(err)
	}
	// Compare-and-swap on the version just written.
	_, err = client.Put(ctx, []byte("user:alice"), []byte(`{"name":"Alice","age":30}`),
		&norikv.PutOptions{IfMatchVersion: v})
	if errors.Is(err, norikv.ErrVersionMismatch) {
		fmt.Println("someone else wrote first")
	}
}

func ExampleClient_Get() {
	ctx := context.Background()
	client, err := norikv.NewClient(ctx, norikv.DefaultClientConfig([]string{"localhost:9001"}))
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()

	r, err := client.Get(ctx, []byte("user:alice"), &norikv.GetOptions{Consistency: norikv.ConsistencyLinearizable})
	switch {
	case errors.Is(err, norikv.ErrKeyNotFound):
		fmt.Println("no such user")
	case err != nil:
		log.Fatal(err)
	default:
		fmt.Printf("%s (version %v)\n", r.Value, r.Version)
	}
}

func ExampleClient_OnTopologyChange() {
	client, err := norikv.NewClient(context.Background(), norikv.DefaultClientConfig([]string{"localhost:9001"}))
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	unsubscribe := client.OnTopologyChange(func(ev *norikv.TopologyChangeEvent) {
		fmt.Printf("epoch %d -> %d: +%v -%v, %d shards changed leader\n",
			ev.PreviousEpoch, ev.CurrentEpoch, ev.AddedNodes, ev.RemovedNodes, len(ev.LeaderChanges))
	})
	defer unsubscribe()
}

// Routing is plain arithmetic on the key, the same in every SDK and in the
// server.
func Example_routing() {
	fmt.Println(hash.XXHash64([]byte("hello")))
	fmt.Println(hash.GetShardForKey([]byte("hello"), 1024))
	// Output:
	// 2794345569481354659
	// 309
}
