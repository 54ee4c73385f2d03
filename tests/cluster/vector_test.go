package cluster

// Vector indexes on three nodes (issue 11): every create and insert is a Raft
// command of the namespace's shard, so every replica holds the same index —
// the same HNSW graph, hence the same answers — a leader's SIGKILL loses
// no acknowledged insert, and a node that catches up by a snapshot answers
// like the others. Skipped, like the other multi-node tests, while
// the server refuses clusters (NORIKV_REQUIRE_CLUSTER=1: fails).

import (
	"context"
	"fmt"
	"math/rand"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/norikv/norikv-go/hash"
	pb "github.com/norikv/norikv-go/proto"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// retryVec repeats call while it fails with UNAVAILABLE or DEADLINE_EXCEEDED
// (leadership moving), for at most within.
func retryVec(t *testing.T, within time.Duration, call func(ctx context.Context) error) error {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		err := call(ctx)
		cancel()
		if err == nil || (status.Code(err) != codes.Unavailable && status.Code(err) != codes.DeadlineExceeded) ||
			time.Now().After(deadline) {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func searchOn(t *testing.T, c *Cluster, i int, ns string, q []float32, cons string) ([]string, error) {
	var ids []string
	err := retryVec(t, 10*time.Second, func(ctx context.Context) error {
		r, err := pb.NewVectorClient(c.Nodes[i].Conn()).Search(ctx, &pb.VectorSearchRequest{Namespace: ns, Query: q, K: 10, Consistency: cons})
		if err == nil {
			ids = ids[:0]
			for _, m := range r.Matches {
				ids = append(ids, m.Id)
			}
		}
		return err
	})
	return ids, err
}

func TestVectorIndexIsReplicatedToEveryNodeAndSurvivesLeaderSIGKILL(t *testing.T) {
	c := start3(t)
	const ns = "vec-repl"
	shard := uint32(hash.GetShardForKey([]byte(ns), clusterShards))
	lead := c.LeaderOf(shard, formTimeout)
	onLeader := func() pb.VectorClient { return pb.NewVectorClient(c.Nodes[lead].Conn()) }
	if err := retryVec(t, 10*time.Second, func(ctx context.Context) error {
		_, err := onLeader().CreateIndex(ctx, &pb.CreateVectorIndexRequest{Namespace: ns, Dimensions: 8,
			Distance: pb.DistanceFunction_DISTANCE_FUNCTION_EUCLIDEAN, IndexType: pb.VectorIndexType_VECTOR_INDEX_TYPE_HNSW})
		return err
	}); err != nil {
		t.Fatalf("create on the leader %s: %v", c.Nodes[lead].ID, err)
	}
	r := rand.New(rand.NewSource(17))
	acked := map[string][]float32{}
	insert := func(id string) {
		v := make([]float32, 8)
		for j := range v {
			v[j] = float32(r.NormFloat64())
		}
		if err := retryVec(t, 10*time.Second, func(ctx context.Context) error {
			_, err := onLeader().Insert(ctx, &pb.VectorInsertRequest{Namespace: ns, Id: id, Vector: v})
			return err
		}); err != nil {
			t.Fatalf("insert %s on %s: %v", id, c.Nodes[lead].ID, err)
		}
		acked[id] = v
	}
	for i := 0; i < 300; i++ {
		insert(fmt.Sprintf("a%d", i))
	}
	q := []float32{0.5, -0.5, 1, 0, 0.25, -1, 0, 0.75}
	want, err := searchOn(t, c, lead, ns, q, "linearizable")
	if err != nil || len(want) != 10 {
		t.Fatalf("search on the leader: %v %v", want, err)
	}
	// every follower applies the same commands: once it has the last insert
	// (stale_ok reads its own state), it answers the same search identically
	for i := range c.Nodes {
		deadline := time.Now().Add(10 * time.Second)
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			g, err := pb.NewVectorClient(c.Nodes[i].Conn()).Get(ctx, &pb.VectorGetRequest{Namespace: ns, Id: "a299", Consistency: "stale_ok"})
			cancel()
			if err == nil && g.Found {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s never applied the last insert: %v %v", c.Nodes[i].ID, g, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
		got, err := searchOn(t, c, i, ns, q, "stale_ok")
		if err != nil || fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("%s answers %v (%v); the leader %s answered %v", c.Nodes[i].ID, got, err, c.Nodes[lead].ID, want)
		}
	}

	// the leader dies: a new one serves every acknowledged vector and takes inserts
	old := lead
	c.Nodes[old].Kill()
	lead = c.LeaderOf(shard, formTimeout)
	if lead == old {
		t.Fatalf("shard %d still led by the killed %s", shard, c.Nodes[old].ID)
	}
	for id, v := range acked {
		var g *pb.VectorGetResponse
		err := retryVec(t, 10*time.Second, func(ctx context.Context) error {
			var err error
			g, err = onLeader().Get(ctx, &pb.VectorGetRequest{Namespace: ns, Id: id, Consistency: "linearizable"})
			return err
		})
		if err != nil || !g.Found || fmt.Sprint(g.Vector) != fmt.Sprint(v) {
			t.Fatalf("acknowledged %s after the leader's SIGKILL, on %s: %v %v", id, c.Nodes[lead].ID, g, err)
		}
	}
	if got, err := searchOn(t, c, lead, ns, q, "linearizable"); err != nil || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("search on the new leader %s: %v %v; before %v", c.Nodes[lead].ID, got, err, want)
	}
	for i := 0; i < 50; i++ {
		insert(fmt.Sprintf("b%d", i))
	}
	// compact the shard's log behind those inserts: the killed node, behind
	// it, can only catch up by a snapshot, whose install reloads its indexes
	if err := retryVec(t, 20*time.Second, func(ctx context.Context) error {
		_, err := c.Nodes[lead].Admin().SnapshotShard(ctx, &pb.ShardInfo{Id: shard})
		return err
	}); err != nil {
		t.Fatalf("snapshot of shard %d on %s: %v", shard, c.Nodes[lead].ID, err)
	}
	for i := 0; i < 20; i++ {
		insert(fmt.Sprintf("c%d", i))
	}
	// the killed node comes back and catches up (its indexes load from its
	// LSM, then the snapshot replaces them)
	c.Restart(old)
	c.StableView(formTimeout)
	deadline := time.Now().Add(20 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		g, err := pb.NewVectorClient(c.Nodes[old].Conn()).Get(ctx, &pb.VectorGetRequest{Namespace: ns, Id: "c19", Consistency: "stale_ok"})
		cancel()
		if err == nil && g.Found {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("restarted %s never caught up: %v %v", c.Nodes[old].ID, g, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// it did catch up by a snapshot of that shard (the path that reloads indexes)
	logb, _ := os.ReadFile(c.Nodes[old].LogPath)
	if !strings.Contains(string(logb), fmt.Sprintf("shard %d: installed the snapshot", shard)) {
		t.Fatalf("%s caught up without installing a snapshot of shard %d (see %s)", c.Nodes[old].ID, shard, c.Nodes[old].LogPath)
	}
	want2, _ := searchOn(t, c, lead, ns, q, "linearizable")
	if got, err := searchOn(t, c, old, ns, q, "stale_ok"); err != nil || fmt.Sprint(got) != fmt.Sprint(want2) {
		t.Fatalf("restarted %s answers %v (%v); the leader %v", c.Nodes[old].ID, got, err, want2)
	}
}
