// The kvstore package and Client.Watch (README "Watch" and "kvstore"): a
// typed client with a local copy kept by a scan and a watch, hooks and
// read-your-writes. It expects a server at localhost:9001.
package main

import (
	"context"
	"fmt"
	"log"
	"sync"
	"time"

	norikv "github.com/norikv/norikv-go"
	"github.com/norikv/norikv-go/kvstore"
)

type User struct {
	Name string `json:"name"`
	Age  int    `json:"age"`
}

func main() {
	ctx := context.Background()
	serde := &kvstore.JSONSerde[User]{}
	var mu sync.Mutex
	seen := 0
	c, err := kvstore.NewClient(ctx, fmt.Sprintf("users-%d", time.Now().UnixNano()), kvstore.NewMemoryStorage(),
		kvstore.WithBrokers("localhost:9001"),
		kvstore.WithOnSetHook(kvstore.WrapOnSet(serde, func(key []byte, u User) {
			mu.Lock()
			seen++
			mu.Unlock()
		})))
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	users := kvstore.NewResourceClient[User](c, serde)

	// visible to this client's reads as soon as Put returns
	if err := users.Put(ctx, []byte("ann"), User{Name: "Ann", Age: 41}); err != nil {
		log.Fatal(err)
	}
	u, err := users.Get(ctx, []byte("ann"))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("Get: %s is %d\n", u.Name, u.Age)

	if err := users.Batch().Put([]byte("bob"), User{Name: "Bob"}).Put([]byte("cy"), User{Name: "Cy"}).Delete([]byte("ann")).Execute(ctx); err != nil {
		log.Fatal(err)
	}
	for kv, err := range users.Range(ctx, kvstore.Prefix(""), kvstore.QueryOptions{}) {
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("Range: %s\n", kv.Key)
	}
	mu.Lock()
	fmt.Printf("OnSet hooks: %d\n", seen)
	mu.Unlock()

	// the raw SDK's watch of the same prefix, from now on
	w, err := c.Raw().Watch(ctx, &norikv.WatchOptions{Prefix: c.KeyPrefix()})
	if err != nil {
		log.Fatal(err)
	}
	defer w.Close()
	if err := users.Put(ctx, []byte("dee"), User{Name: "Dee"}); err != nil {
		log.Fatal(err)
	}
	if w.Next() {
		ev := w.Event()
		fmt.Printf("Watch: %s %s\n", ev.Kind, ev.Key[len(c.KeyPrefix()):])
	}
}
