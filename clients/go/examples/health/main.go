// "8. Monitor Client Health" of the Go client API guide, verbatim in
// monitorHealth. The sample calls log.Error, which the standard library's
// log package does not have: structured loggers (logrus, zap's sugar) do.
// Here log is a small stand-in with that method. It expects a server at
// localhost:9001.
package main

import (
	"context"
	"fmt"
	stdlog "log"
	"os"

	norikv "github.com/norikv/norikv-go"
)

type logger struct{ *stdlog.Logger }

func (l logger) Error(args ...any) { l.Print(append([]any{"ERROR: "}, args...)...) }

var log = logger{stdlog.New(os.Stderr, "", stdlog.LstdFlags)}

var client *norikv.Client

// Seed: Best Practices / 8. Monitor Client Health.
func monitorHealth() {
	// Periodically check stats
	stats := client.Stats()
	if stats.Pool.ActiveConnections == 0 {
		log.Error("No active connections!")
	}
}

func main() {
	var err error
	client, err = norikv.NewClient(context.Background(), norikv.DefaultClientConfig([]string{"localhost:9001"}))
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	monitorHealth()
	stats := client.Stats()
	if stats.Pool.ActiveConnections == 0 {
		log.Fatal("a connected client reports no active connection")
	}
	fmt.Printf("Healthy: %d active connections, %d nodes, %d cached leaders\n",
		stats.Pool.ActiveConnections, stats.Router.TotalNodes, stats.Topology.CachedLeaders)
}
