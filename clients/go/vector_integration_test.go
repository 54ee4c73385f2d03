package norikv_test

// The vector API against the real norikv-server: results equal a brute-force
// reference, CONTRACT.md's vector semantics surface as the SDK's errors.

import (
	"context"
	"errors"
	"math"
	"math/rand"
	"sort"
	"strconv"
	"testing"

	norikv "github.com/norikv/norikv-go"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func l2(a, b []float32) float64 {
	var s float64
	for i := range a {
		d := float64(a[i]) - float64(b[i])
		s += d * d
	}
	return math.Sqrt(s)
}

func TestVectorAPIMatchesBruteForceAndTheContract(t *testing.T) {
	c := newTestClient(t, sharedServer(t).GRPCAddr)
	ctx := context.Background()
	ns := string(key(t, "ns"))
	created, err := c.VectorCreateIndex(ctx, ns, 8, norikv.DistanceEuclidean, norikv.VectorIndexBruteForce, nil)
	if err != nil || !created {
		t.Fatalf("VectorCreateIndex: %v %v", created, err)
	}
	if created, err := c.VectorCreateIndex(ctx, ns, 8, norikv.DistanceEuclidean, norikv.VectorIndexBruteForce, nil); err != nil || created {
		t.Fatalf("VectorCreateIndex again: %v %v", created, err)
	}
	if _, err := c.VectorCreateIndex(ctx, ns, 9, norikv.DistanceEuclidean, norikv.VectorIndexBruteForce, nil); !errors.Is(err, norikv.ErrAlreadyExists) {
		t.Fatalf("VectorCreateIndex with other dimensions: %v, want ErrAlreadyExists", err)
	}
	r := rand.New(rand.NewSource(5))
	data := map[string][]float32{}
	for i := 0; i < 100; i++ {
		v := make([]float32, 8)
		for j := range v {
			v[j] = float32(r.NormFloat64())
		}
		id := "v" + strconv.Itoa(i)
		data[id] = v
		ver, err := c.VectorInsert(ctx, ns, id, v, nil)
		if err != nil || ver == nil || ver.Index == 0 {
			t.Fatalf("VectorInsert %s: %v %v", id, ver, err)
		}
	}
	q := []float32{0.1, -0.2, 0.3, 0, 1, -1, 0.5, 0.25}
	res, err := c.VectorSearch(ctx, ns, q, 5, &norikv.VectorSearchOptions{IncludeVectors: true, Consistency: norikv.ConsistencyLinearizable})
	if err != nil || len(res.Matches) != 5 {
		t.Fatalf("VectorSearch: %v %v", res, err)
	}
	ids := make([]string, 0, len(data))
	for id := range data {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return l2(q, data[ids[i]]) < l2(q, data[ids[j]]) })
	for i, m := range res.Matches {
		if m.ID != ids[i] || math.Abs(float64(m.Distance)-l2(q, data[ids[i]])) > 1e-4 || len(m.Vector) != 8 {
			t.Fatalf("match %d: %s at %v (%d values); brute force: %s at %v", i, m.ID, m.Distance, len(m.Vector), ids[i], l2(q, data[ids[i]]))
		}
	}
	v, err := c.VectorGet(ctx, ns, "v7")
	if err != nil || len(v) != 8 || v[0] != data["v7"][0] {
		t.Fatalf("VectorGet: %v %v", v, err)
	}
	if v, err := c.VectorGet(ctx, ns, "absent", &norikv.VectorGetOptions{Consistency: norikv.ConsistencyStaleOK}); err != nil || v != nil {
		t.Fatalf("VectorGet of an absent id: %v %v, want nil, nil", v, err)
	}
	if deleted, err := c.VectorDelete(ctx, ns, "v7", &norikv.VectorDeleteOptions{IdempotencyKey: "del-v7"}); err != nil || !deleted {
		t.Fatalf("VectorDelete: %v %v", deleted, err)
	}
	if deleted, err := c.VectorDelete(ctx, ns, "v7", nil); err != nil || deleted {
		t.Fatalf("VectorDelete again: %v %v", deleted, err)
	}
	if _, err := c.VectorInsert(ctx, ns, "bad", []float32{1, 2}, nil); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("VectorInsert with wrong dimensions: %v", err)
	}
	if _, err := c.VectorSearch(ctx, ns, q, 0, nil); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("VectorSearch with k = 0: %v", err)
	}
	if dropped, err := c.VectorDropIndex(ctx, ns, nil); err != nil || !dropped {
		t.Fatalf("VectorDropIndex: %v %v", dropped, err)
	}
	if _, err := c.VectorSearch(ctx, ns, q, 1, nil); !errors.Is(err, norikv.ErrKeyNotFound) {
		t.Fatalf("VectorSearch of a dropped index: %v, want ErrKeyNotFound", err)
	}
	if _, err := c.VectorGet(ctx, ns, "v1"); !errors.Is(err, norikv.ErrKeyNotFound) {
		t.Fatalf("VectorGet of a dropped index: %v, want ErrKeyNotFound", err)
	}
}
