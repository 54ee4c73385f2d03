package integration

// The Vector service against real servers: results equal a brute-force
// reference computed here, HNSW recall against exact results, CONTRACT.md's
// vector semantics and errors, restarts and SIGKILL keeping every
// acknowledged insert.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand"
	"net/http"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/norikv/norikv-go/hash"
	pb "github.com/norikv/norikv-go/proto"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func vecClient(s *server) pb.VectorClient { return pb.NewVectorClient(s.conn) }

func dist(metric pb.DistanceFunction, a, b []float32) float64 {
	var dot, na, nb, l2 float64
	for i := range a {
		x, y := float64(a[i]), float64(b[i])
		dot += x * y
		na += x * x
		nb += y * y
		l2 += (x - y) * (x - y)
	}
	switch metric {
	case pb.DistanceFunction_DISTANCE_FUNCTION_EUCLIDEAN:
		return math.Sqrt(l2)
	case pb.DistanceFunction_DISTANCE_FUNCTION_COSINE:
		if na == 0 || nb == 0 {
			return 1
		}
		return 1 - dot/math.Sqrt(na*nb)
	default:
		return -dot
	}
}

type scored struct {
	id string
	d  float64
}

func bruteForce(metric pb.DistanceFunction, data map[string][]float32, q []float32, k int) []scored {
	all := make([]scored, 0, len(data))
	for id, v := range data {
		all = append(all, scored{id, dist(metric, q, v)})
	}
	sort.Slice(all, func(i, j int) bool {
		if all[i].d != all[j].d {
			return all[i].d < all[j].d
		}
		return all[i].id < all[j].id
	})
	if len(all) > k {
		all = all[:k]
	}
	return all
}

func randVec(r *rand.Rand, d int) []float32 {
	v := make([]float32, d)
	for i := range v {
		v[i] = float32(r.NormFloat64())
	}
	return v
}

// clustered returns n vectors around nc random centres, the shape of real
// embeddings.
func clustered(r *rand.Rand, n, d, nc int) [][]float32 {
	cs := make([][]float32, nc)
	for i := range cs {
		cs[i] = randVec(r, d)
	}
	out := make([][]float32, n)
	for i := range out {
		c := cs[r.Intn(nc)]
		v := make([]float32, d)
		for j := range v {
			v[j] = c[j] + float32(r.NormFloat64()*0.3)
		}
		out[i] = v
	}
	return out
}

func mustCreate(t *testing.T, vc pb.VectorClient, ns string, dims uint32, m pb.DistanceFunction, it pb.VectorIndexType) {
	t.Helper()
	r, err := vc.CreateIndex(ctxT(t), &pb.CreateVectorIndexRequest{Namespace: ns, Dimensions: dims, Distance: m, IndexType: it})
	if err != nil || !r.Created {
		t.Fatalf("create %s: %v %v", ns, r, err)
	}
}

// insertAll inserts every vector with workers concurrent calls.
func insertAll(t *testing.T, vc pb.VectorClient, ns string, data map[string][]float32, workers int) {
	t.Helper()
	ids := make(chan string, len(data))
	for id := range data {
		ids <- id
	}
	close(ids)
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for id := range ids {
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				r, err := vc.Insert(ctx, &pb.VectorInsertRequest{Namespace: ns, Id: id, Vector: data[id]})
				cancel()
				if err != nil || !r.Inserted || r.Version == nil || r.Version.Index == 0 {
					errs <- fmt.Errorf("insert %s: %v %v", id, r, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

func TestVectorSearchEqualsBruteForceForEveryDistance(t *testing.T) {
	s := ephemeral(t)
	vc := vecClient(s)
	r := rand.New(rand.NewSource(7))
	const dims, n, k = 24, 400, 10
	for _, metric := range []pb.DistanceFunction{pb.DistanceFunction_DISTANCE_FUNCTION_EUCLIDEAN,
		pb.DistanceFunction_DISTANCE_FUNCTION_COSINE, pb.DistanceFunction_DISTANCE_FUNCTION_INNER_PRODUCT} {
		ns := "flat-" + metric.String()
		mustCreate(t, vc, ns, dims, metric, pb.VectorIndexType_VECTOR_INDEX_TYPE_BRUTE_FORCE)
		data := map[string][]float32{}
		for i := 0; i < n; i++ {
			data[fmt.Sprintf("v%03d", i)] = randVec(r, dims)
		}
		insertAll(t, vc, ns, data, 8)
		for qi := 0; qi < 25; qi++ {
			q := randVec(r, dims)
			want := bruteForce(metric, data, q, k)
			resp, err := vc.Search(ctxT(t), &pb.VectorSearchRequest{Namespace: ns, Query: q, K: k, IncludeVectors: qi == 0})
			if err != nil {
				t.Fatalf("%s search: %v", metric, err)
			}
			if len(resp.Matches) != k {
				t.Fatalf("%s: %d matches, want %d", metric, len(resp.Matches), k)
			}
			for i, m := range resp.Matches {
				// the reported distance is the true distance of that id, and
				// the i-th smallest (ties may order either way)
				if got := dist(metric, q, data[m.Id]); math.Abs(got-float64(m.Distance)) > 1e-4*(1+math.Abs(got)) {
					t.Fatalf("%s: match %d (%s) distance %v, true %v", metric, i, m.Id, m.Distance, got)
				}
				if math.Abs(float64(m.Distance)-want[i].d) > 1e-4*(1+math.Abs(want[i].d)) {
					t.Fatalf("%s query %d: match %d is %s at %v; brute force has %s at %v", metric, qi, i, m.Id, m.Distance, want[i].id, want[i].d)
				}
				if qi == 0 {
					if len(m.Vector) != dims || m.Vector[0] != data[m.Id][0] {
						t.Fatalf("include_vectors: match %s has %d values", m.Id, len(m.Vector))
					}
				} else if len(m.Vector) != 0 {
					t.Fatalf("vectors returned without include_vectors")
				}
			}
		}
	}
}

func TestVectorHNSWRecallAgainstExactResults(t *testing.T) {
	s := ephemeral(t)
	vc := vecClient(s)
	r := rand.New(rand.NewSource(11))
	const dims, n, k, nq = 32, 3000, 10, 100
	vs := clustered(r, n+nq, dims, 20)
	data := map[string][]float32{}
	for i := 0; i < n; i++ {
		data[fmt.Sprintf("doc-%d", i)] = vs[i]
	}
	mustCreate(t, vc, "hnsw", dims, pb.DistanceFunction_DISTANCE_FUNCTION_EUCLIDEAN, pb.VectorIndexType_VECTOR_INDEX_TYPE_HNSW)
	insertAll(t, vc, "hnsw", data, 16)
	hit, total := 0, 0
	for qi := 0; qi < nq; qi++ {
		q := vs[n+qi]
		want := bruteForce(pb.DistanceFunction_DISTANCE_FUNCTION_EUCLIDEAN, data, q, k)
		resp, err := vc.Search(ctxT(t), &pb.VectorSearchRequest{Namespace: "hnsw", Query: q, K: k})
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]bool{}
		for _, m := range resp.Matches {
			got[m.Id] = true
		}
		for _, w := range want {
			if got[w.id] {
				hit++
			}
		}
		total += len(want)
	}
	recall := float64(hit) / float64(total)
	t.Logf("HNSW recall@%d over %d queries, %d x %d clustered: %.4f", k, nq, n, dims, recall)
	if recall < 0.9 {
		t.Fatalf("recall@%d = %.4f, want >= 0.9", k, recall)
	}
}

func TestVectorContractSemanticsAndErrors(t *testing.T) {
	s := ephemeral(t)
	vc := vecClient(s)
	ctx := ctxT(t)
	euc := pb.DistanceFunction_DISTANCE_FUNCTION_EUCLIDEAN
	hnsw := pb.VectorIndexType_VECTOR_INDEX_TYPE_HNSW
	mustCreate(t, vc, "c", 3, euc, hnsw)
	// same parameters: created = false; other parameters: ALREADY_EXISTS
	if r, err := vc.CreateIndex(ctx, &pb.CreateVectorIndexRequest{Namespace: "c", Dimensions: 3, Distance: euc, IndexType: hnsw}); err != nil || r.Created {
		t.Fatalf("create again: %v %v", r, err)
	}
	if _, err := vc.CreateIndex(ctx, &pb.CreateVectorIndexRequest{Namespace: "c", Dimensions: 4, Distance: euc, IndexType: hnsw}); code(err) != codes.AlreadyExists {
		t.Fatalf("create with other dims: %v", err)
	}
	ins, err := vc.Insert(ctx, &pb.VectorInsertRequest{Namespace: "c", Id: "a", Vector: []float32{1, 0, 0}})
	if err != nil {
		t.Fatal(err)
	}
	// replace: the new vector wins, a newer version
	ins2, err := vc.Insert(ctx, &pb.VectorInsertRequest{Namespace: "c", Id: "a", Vector: []float32{0, 1, 0}})
	if err != nil || ins2.Version.Index <= ins.Version.Index {
		t.Fatalf("replace: %v %v", ins2, err)
	}
	g, err := vc.Get(ctx, &pb.VectorGetRequest{Namespace: "c", Id: "a"})
	if err != nil || !g.Found || len(g.Vector) != 3 || g.Vector[1] != 1 {
		t.Fatalf("get after replace: %v %v", g, err)
	}
	if g, err := vc.Get(ctx, &pb.VectorGetRequest{Namespace: "c", Id: "missing"}); err != nil || g.Found {
		t.Fatalf("get of a missing id: %v %v", g, err)
	}
	for _, cons := range []string{"", "lease", "linearizable", "stale_ok"} {
		sr, err := vc.Search(ctx, &pb.VectorSearchRequest{Namespace: "c", Query: []float32{0, 1, 0}, K: 1, Consistency: cons})
		if err != nil || len(sr.Matches) != 1 || sr.Matches[0].Id != "a" || sr.Matches[0].Distance != 0 {
			t.Fatalf("search at %q: %v %v", cons, sr, err)
		}
	}
	// idempotency: a retry returns the first result, other parameters are refused
	r1, err := vc.Insert(ctx, &pb.VectorInsertRequest{Namespace: "c", Id: "b", Vector: []float32{1, 1, 1}, IdempotencyKey: "k1"})
	if err != nil {
		t.Fatal(err)
	}
	r2, err := vc.Insert(ctx, &pb.VectorInsertRequest{Namespace: "c", Id: "b", Vector: []float32{1, 1, 1}, IdempotencyKey: "k1"})
	if err != nil || r2.Version.Index != r1.Version.Index {
		t.Fatalf("idempotent retry: %v %v (first %v)", r2, err, r1)
	}
	if _, err := vc.Insert(ctx, &pb.VectorInsertRequest{Namespace: "c", Id: "b", Vector: []float32{2, 1, 1}, IdempotencyKey: "k1"}); code(err) != codes.InvalidArgument {
		t.Fatalf("idempotency key with other parameters: %v", err)
	}

	nan := float32(math.NaN())
	inf := float32(math.Inf(1))
	long := strings.Repeat("n", 256)
	cases := []struct {
		name string
		call func() error
		want codes.Code
		msg  string
	}{
		{"insert with wrong dimensions", func() error {
			_, err := vc.Insert(ctx, &pb.VectorInsertRequest{Namespace: "c", Id: "x", Vector: []float32{1, 2}})
			return err
		}, codes.InvalidArgument, "dimensions"},
		{"insert NaN", func() error {
			_, err := vc.Insert(ctx, &pb.VectorInsertRequest{Namespace: "c", Id: "x", Vector: []float32{1, nan, 2}})
			return err
		}, codes.InvalidArgument, "NaN"},
		{"insert infinity", func() error {
			_, err := vc.Insert(ctx, &pb.VectorInsertRequest{Namespace: "c", Id: "x", Vector: []float32{inf, 1, 2}})
			return err
		}, codes.InvalidArgument, "infinite"},
		{"insert empty vector", func() error {
			_, err := vc.Insert(ctx, &pb.VectorInsertRequest{Namespace: "c", Id: "x"})
			return err
		}, codes.InvalidArgument, "values"},
		{"insert on a missing namespace", func() error {
			_, err := vc.Insert(ctx, &pb.VectorInsertRequest{Namespace: "nope", Id: "x", Vector: []float32{1, 2, 3}})
			return err
		}, codes.NotFound, "nope"},
		{"search on a missing namespace", func() error {
			_, err := vc.Search(ctx, &pb.VectorSearchRequest{Namespace: "nope", Query: []float32{1, 2, 3}, K: 1})
			return err
		}, codes.NotFound, "nope"},
		{"get on a missing namespace", func() error {
			_, err := vc.Get(ctx, &pb.VectorGetRequest{Namespace: "nope", Id: "x"})
			return err
		}, codes.NotFound, "nope"},
		{"delete on a missing namespace", func() error {
			_, err := vc.Delete(ctx, &pb.VectorDeleteRequest{Namespace: "nope", Id: "x"})
			return err
		}, codes.NotFound, "nope"},
		{"k = 0", func() error {
			_, err := vc.Search(ctx, &pb.VectorSearchRequest{Namespace: "c", Query: []float32{1, 2, 3}})
			return err
		}, codes.InvalidArgument, "k is 0"},
		{"k above the maximum", func() error {
			_, err := vc.Search(ctx, &pb.VectorSearchRequest{Namespace: "c", Query: []float32{1, 2, 3}, K: 1001})
			return err
		}, codes.InvalidArgument, "k is 1001"},
		{"query with wrong dimensions", func() error {
			_, err := vc.Search(ctx, &pb.VectorSearchRequest{Namespace: "c", Query: []float32{1}, K: 1})
			return err
		}, codes.InvalidArgument, "dimensions"},
		{"query with NaN", func() error {
			_, err := vc.Search(ctx, &pb.VectorSearchRequest{Namespace: "c", Query: []float32{1, nan, 3}, K: 1})
			return err
		}, codes.InvalidArgument, "NaN"},
		{"dimensions above the maximum", func() error {
			_, err := vc.CreateIndex(ctx, &pb.CreateVectorIndexRequest{Namespace: "big", Dimensions: 4097, Distance: euc, IndexType: hnsw})
			return err
		}, codes.InvalidArgument, "dimensions is 4097"},
		{"dimensions 0", func() error {
			_, err := vc.CreateIndex(ctx, &pb.CreateVectorIndexRequest{Namespace: "zero", Distance: euc, IndexType: hnsw})
			return err
		}, codes.InvalidArgument, "dimensions is 0"},
		{"unspecified distance", func() error {
			_, err := vc.CreateIndex(ctx, &pb.CreateVectorIndexRequest{Namespace: "d", Dimensions: 3, IndexType: hnsw})
			return err
		}, codes.InvalidArgument, "distance"},
		{"unspecified index type", func() error {
			_, err := vc.CreateIndex(ctx, &pb.CreateVectorIndexRequest{Namespace: "d", Dimensions: 3, Distance: euc})
			return err
		}, codes.InvalidArgument, "index"},
		{"empty namespace", func() error {
			_, err := vc.CreateIndex(ctx, &pb.CreateVectorIndexRequest{Dimensions: 3, Distance: euc, IndexType: hnsw})
			return err
		}, codes.InvalidArgument, "namespace is empty"},
		{"namespace too long", func() error {
			_, err := vc.Search(ctx, &pb.VectorSearchRequest{Namespace: long, Query: []float32{1}, K: 1})
			return err
		}, codes.InvalidArgument, "namespace is 256 bytes"},
		{"empty id", func() error {
			_, err := vc.Insert(ctx, &pb.VectorInsertRequest{Namespace: "c", Vector: []float32{1, 2, 3}})
			return err
		}, codes.InvalidArgument, "id is empty"},
		{"id too long", func() error {
			_, err := vc.Get(ctx, &pb.VectorGetRequest{Namespace: "c", Id: strings.Repeat("i", 1025)})
			return err
		}, codes.InvalidArgument, "id is 1025 bytes"},
		{"vector above the dimension limit", func() error {
			_, err := vc.Insert(ctx, &pb.VectorInsertRequest{Namespace: "c", Id: "x", Vector: make([]float32, 5000)})
			return err
		}, codes.InvalidArgument, "5000 values"},
		{"unknown consistency", func() error {
			_, err := vc.Search(ctx, &pb.VectorSearchRequest{Namespace: "c", Query: []float32{1, 2, 3}, K: 1, Consistency: "sometimes"})
			return err
		}, codes.InvalidArgument, "consistency"},
		{"request over 2 MiB", func() error {
			_, err := vc.Insert(ctx, &pb.VectorInsertRequest{Namespace: "c", Id: "x", Vector: make([]float32, 600000)})
			return err
		}, codes.InvalidArgument, "limit"},
	}
	for _, c := range cases {
		err := c.call()
		if code(err) != c.want || !strings.Contains(status.Convert(err).Message(), c.msg) {
			t.Errorf("%s: %v; want %v naming %q", c.name, err, c.want, c.msg)
		}
	}
	// the server keeps serving, KV and vectors alike
	mustPut(t, s, "still", "here")
	if sr, err := vc.Search(ctx, &pb.VectorSearchRequest{Namespace: "c", Query: []float32{1, 1, 1}, K: 5}); err != nil || len(sr.Matches) != 2 {
		t.Fatalf("search after bad input: %v %v", sr, err)
	}
	// and counts them in /metrics
	resp, err := http.Get("http://" + s.http + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	metrics := string(raw)
	for _, want := range []string{
		`norikv_vector_requests_total{op="search",outcome="ok"} 5`,
		`norikv_vector_requests_total{op="insert",outcome="invalid_argument"} `,
		`norikv_vector_requests_total{op="search",outcome="not_found"} 1`,
		`norikv_vector_requests_total{op="create_index",outcome="already_exists"} 1`,
		`norikv_vector_request_duration_seconds_count{op="insert"} `,
		"norikv_vector_memory_bytes ",
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if strings.Contains(metrics, "norikv_vector_memory_bytes 0\n") {
		t.Errorf("norikv_vector_memory_bytes is 0 with an index holding vectors")
	}
}

func TestVectorDeleteAndDrop(t *testing.T) {
	s := ephemeral(t)
	vc := vecClient(s)
	ctx := ctxT(t)
	mustCreate(t, vc, "dd", 2, pb.DistanceFunction_DISTANCE_FUNCTION_COSINE, pb.VectorIndexType_VECTOR_INDEX_TYPE_HNSW)
	data := map[string][]float32{}
	for i := 0; i < 50; i++ {
		data[fmt.Sprintf("p%d", i)] = []float32{float32(math.Cos(float64(i))), float32(math.Sin(float64(i)))}
	}
	insertAll(t, vc, "dd", data, 4)
	for i := 0; i < 50; i += 2 {
		r, err := vc.Delete(ctx, &pb.VectorDeleteRequest{Namespace: "dd", Id: fmt.Sprintf("p%d", i)})
		if err != nil || !r.Deleted {
			t.Fatalf("delete p%d: %v %v", i, r, err)
		}
		delete(data, fmt.Sprintf("p%d", i))
	}
	if r, err := vc.Delete(ctx, &pb.VectorDeleteRequest{Namespace: "dd", Id: "p0"}); err != nil || r.Deleted {
		t.Fatalf("delete twice: %v %v", r, err)
	}
	if g, err := vc.Get(ctx, &pb.VectorGetRequest{Namespace: "dd", Id: "p0"}); err != nil || g.Found {
		t.Fatalf("get after delete: %v %v", g, err)
	}
	sr, err := vc.Search(ctx, &pb.VectorSearchRequest{Namespace: "dd", Query: []float32{1, 0}, K: 50})
	if err != nil || len(sr.Matches) != 25 {
		t.Fatalf("search after deletes: %d matches, %v", len(sr.Matches), err)
	}
	for _, m := range sr.Matches {
		if _, ok := data[m.Id]; !ok {
			t.Fatalf("deleted %s returned", m.Id)
		}
	}
	if r, err := vc.DropIndex(ctx, &pb.DropVectorIndexRequest{Namespace: "dd"}); err != nil || !r.Dropped {
		t.Fatalf("drop: %v %v", r, err)
	}
	if r, err := vc.DropIndex(ctx, &pb.DropVectorIndexRequest{Namespace: "dd"}); err != nil || r.Dropped {
		t.Fatalf("drop twice: %v %v", r, err)
	}
	if _, err := vc.Search(ctx, &pb.VectorSearchRequest{Namespace: "dd", Query: []float32{1, 0}, K: 1}); code(err) != codes.NotFound {
		t.Fatalf("search after drop: %v", err)
	}
	// a new index of that name starts empty
	mustCreate(t, vc, "dd", 2, pb.DistanceFunction_DISTANCE_FUNCTION_EUCLIDEAN, pb.VectorIndexType_VECTOR_INDEX_TYPE_BRUTE_FORCE)
	if sr, err := vc.Search(ctx, &pb.VectorSearchRequest{Namespace: "dd", Query: []float32{1, 0}, K: 5}); err != nil || len(sr.Matches) != 0 {
		t.Fatalf("search of the re-created index: %v %v", sr, err)
	}
}

// searchIDs returns the ids of a search's matches, in order.
func searchIDs(t *testing.T, vc pb.VectorClient, ns string, q []float32, k uint32) []string {
	t.Helper()
	sr, err := vc.Search(ctxT(t), &pb.VectorSearchRequest{Namespace: ns, Query: q, K: k})
	if err != nil {
		t.Fatalf("search %s: %v", ns, err)
	}
	ids := make([]string, len(sr.Matches))
	for i, m := range sr.Matches {
		ids[i] = m.Id
	}
	return ids
}

func TestVectorIndexesSurviveRestart(t *testing.T) {
	dir := t.TempDir()
	s := onDisk(t, dir)
	vc := vecClient(s)
	r := rand.New(rand.NewSource(3))
	data := map[string][]float32{}
	for i := 0; i < 300; i++ {
		data[fmt.Sprintf("r%d", i)] = randVec(r, 8)
	}
	mustCreate(t, vc, "keep-hnsw", 8, pb.DistanceFunction_DISTANCE_FUNCTION_EUCLIDEAN, pb.VectorIndexType_VECTOR_INDEX_TYPE_HNSW)
	mustCreate(t, vc, "keep-flat", 8, pb.DistanceFunction_DISTANCE_FUNCTION_INNER_PRODUCT, pb.VectorIndexType_VECTOR_INDEX_TYPE_BRUTE_FORCE)
	insertAll(t, vc, "keep-hnsw", data, 8)
	insertAll(t, vc, "keep-flat", data, 8)
	if _, err := vc.Delete(ctxT(t), &pb.VectorDeleteRequest{Namespace: "keep-hnsw", Id: "r7"}); err != nil {
		t.Fatal(err)
	}
	qs := [][]float32{randVec(r, 8), randVec(r, 8), randVec(r, 8)}
	var before [][]string
	for _, q := range qs {
		before = append(before, searchIDs(t, vc, "keep-hnsw", q, 10), searchIDs(t, vc, "keep-flat", q, 10))
	}
	s.stop()

	s = onDisk(t, dir)
	vc = vecClient(s)
	for i, q := range qs {
		h, f := searchIDs(t, vc, "keep-hnsw", q, 10), searchIDs(t, vc, "keep-flat", q, 10)
		if fmt.Sprint(h) != fmt.Sprint(before[2*i]) || fmt.Sprint(f) != fmt.Sprint(before[2*i+1]) {
			t.Fatalf("query %d after restart: %v %v; before %v %v", i, h, f, before[2*i], before[2*i+1])
		}
	}
	if g, err := vc.Get(ctxT(t), &pb.VectorGetRequest{Namespace: "keep-hnsw", Id: "r7"}); err != nil || g.Found {
		t.Fatalf("deleted vector after restart: %v %v", g, err)
	}
	if r, err := vc.CreateIndex(ctxT(t), &pb.CreateVectorIndexRequest{Namespace: "keep-flat", Dimensions: 8,
		Distance: pb.DistanceFunction_DISTANCE_FUNCTION_INNER_PRODUCT, IndexType: pb.VectorIndexType_VECTOR_INDEX_TYPE_BRUTE_FORCE}); err != nil || r.Created {
		t.Fatalf("create after restart: %v %v", r, err)
	}
	s.stop()
}

func TestVectorSIGKILLKeepsEveryAcknowledgedInsert(t *testing.T) {
	dir := t.TempDir()
	s := onDisk(t, dir)
	vc := vecClient(s)
	mustCreate(t, vc, "crash", 4, pb.DistanceFunction_DISTANCE_FUNCTION_EUCLIDEAN, pb.VectorIndexType_VECTOR_INDEX_TYPE_HNSW)
	var mu sync.Mutex
	acked := map[string][]float32{}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			r := rand.New(rand.NewSource(int64(w)))
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				id := fmt.Sprintf("w%d-%d", w, i)
				v := randVec(r, 4)
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				_, err := vc.Insert(ctx, &pb.VectorInsertRequest{Namespace: "crash", Id: id, Vector: v})
				cancel()
				if err != nil {
					return // the server is gone; this insert was not acknowledged
				}
				mu.Lock()
				acked[id] = v
				mu.Unlock()
			}
		}(w)
	}
	time.Sleep(1500 * time.Millisecond)
	s.kill()
	close(stop)
	wg.Wait()
	if len(acked) == 0 {
		t.Fatal("no insert was acknowledged before the kill")
	}

	s = onDisk(t, dir)
	vc = vecClient(s)
	for id, v := range acked {
		g, err := vc.Get(ctxT(t), &pb.VectorGetRequest{Namespace: "crash", Id: id})
		if err != nil || !g.Found || fmt.Sprint(g.Vector) != fmt.Sprint(v) {
			t.Fatalf("acknowledged %s after SIGKILL: %v %v", id, g, err)
		}
	}
	// every acknowledged vector is found by an exact-size search too
	sr, err := vc.Search(ctxT(t), &pb.VectorSearchRequest{Namespace: "crash", Query: []float32{0, 0, 0, 0}, K: 1000})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d inserts acknowledged before SIGKILL; the index holds %d after restart (cap 1000 shown)", len(acked), len(sr.Matches))
	s.stop()
}

// vecHTTP sends one request to the HTTP façade and decodes its JSON answer.
func vecHTTP(t *testing.T, s *server, method, path, body string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+s.http+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatalf("%s %s: answer %q is not JSON: %v", method, path, raw, err)
	}
	return resp.StatusCode, out
}

func TestVectorHTTPFacade(t *testing.T) {
	s := ephemeral(t)
	expect := func(method, path, body string, status int, check func(map[string]any) bool) map[string]any {
		t.Helper()
		code, out := vecHTTP(t, s, method, path, body)
		if code != status || (check != nil && !check(out)) {
			t.Fatalf("%s %s %s: %d %v; want %d", method, path, body, code, out, status)
		}
		return out
	}
	expect("PUT", "/vector/web", `{"dimensions":2,"distance":"euclidean","index_type":"brute_force"}`, 200,
		func(o map[string]any) bool { return o["created"] == true })
	expect("PUT", "/vector/web", `{"dimensions":3,"distance":"euclidean","index_type":"brute_force"}`, 409, nil)
	expect("PUT", "/vector/web/a%2Fb?idempotency_key=i1", `{"vector":[1,0]}`, 200,
		func(o map[string]any) bool { return o["version"] != nil })
	expect("PUT", "/vector/web/c", `{"vector":[0, 2.5e0]}`, 200, nil)
	expect("GET", "/vector/web/a%2Fb?consistency=linearizable", "", 200, func(o map[string]any) bool {
		v, _ := o["vector"].([]any)
		return o["found"] == true && o["id"] == "a/b" && len(v) == 2 && v[0] == 1.0
	})
	expect("GET", "/vector/web/zz", "", 200, func(o map[string]any) bool { return o["found"] == false })
	out := expect("POST", "/vector/web/search", `{"query":[1,0.1],"k":5,"include_vectors":true}`, 200, nil)
	ms, _ := out["matches"].([]any)
	if len(ms) != 2 || ms[0].(map[string]any)["id"] != "a/b" || ms[1].(map[string]any)["id"] != "c" {
		t.Fatalf("search: %v", out)
	}
	if d := ms[0].(map[string]any)["distance"].(float64); math.Abs(d-0.1) > 1e-6 {
		t.Fatalf("distance %v, want 0.1", d)
	}
	// bad input: 400 naming the problem; a missing index 404; a wrong method 501
	for _, c := range []struct {
		method, path, body, msg string
		status                  int
	}{
		{"PUT", "/vector/web/x", `{"vector":[1]}`, "dimensions", 400},
		{"PUT", "/vector/web/x", `{"vector":[1, 1e39]}`, "infinite", 400},
		{"PUT", "/vector/web/x", `{"vector":[1,2],"k":1}`, "does not apply", 400},
		{"PUT", "/vector/web/x", `{"vector":[1,2]`, "expected", 400},
		{"POST", "/vector/web/search", `{"query":[1,2],"k":0}`, "k is 0", 400},
		{"POST", "/vector/web/search", `{"query":[1,2]}`, "'k' is missing", 400},
		{"POST", "/vector/web/search?consistency=sometimes", `{"query":[1,2],"k":1}`, "consistency", 400},
		{"PUT", "/vector/web2", `{"dimensions":5000,"distance":"cosine","index_type":"hnsw"}`, "dimensions", 400},
		{"PUT", "/vector/web2", `{"dimensions":5,"distance":"manhattan","index_type":"hnsw"}`, "distance", 400},
		{"GET", "/vector/nope/x", "", "does not exist", 404},
		{"POST", "/vector/web", "", "not allowed", 501},
	} {
		code, o := vecHTTP(t, s, c.method, c.path, c.body)
		if code != c.status || !strings.Contains(fmt.Sprint(o["error"]), c.msg) {
			t.Errorf("%s %s %s: %d %v; want %d naming %q", c.method, c.path, c.body, code, o, c.status, c.msg)
		}
	}
	expect("DELETE", "/vector/web/c", "", 200, func(o map[string]any) bool { return o["deleted"] == true })
	expect("DELETE", "/vector/web/c", "", 200, func(o map[string]any) bool { return o["deleted"] == false })
	expect("DELETE", "/vector/web", "", 200, func(o map[string]any) bool { return o["dropped"] == true })
	expect("POST", "/vector/web/search", `{"query":[1,2],"k":1}`, 404, nil)
	// counted like the gRPC calls
	resp, err := http.Get("http://" + s.http + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`norikv_vector_requests_total{op="insert",outcome="ok"} 2`,
		`norikv_vector_requests_total{op="get",outcome="ok"} 2`,
		`norikv_vector_requests_total{op="get",outcome="not_found"} 1`,
		`norikv_vector_requests_total{op="search",outcome="ok"} 1`,
		`norikv_vector_requests_total{op="search",outcome="not_found"} 1`,
		`norikv_vector_requests_total{op="create_index",outcome="already_exists"} 1`,
		`norikv_vector_requests_total{op="drop_index",outcome="ok"} 1`,
	} {
		if !strings.Contains(string(raw), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

// A shard snapshot (Admin.SnapshotShard: the state flushed, the Raft log
// compacted behind it) keeps the vectors: after it, more inserts, and a
// SIGKILL, the restarted server has every acknowledged vector of both sides
// of the snapshot, and the HNSW graph answers as before.
func TestVectorShardSnapshotThenSIGKILLKeepsEverything(t *testing.T) {
	dir := t.TempDir()
	s := onDisk(t, dir)
	vc := vecClient(s)
	const ns = "snap"
	mustCreate(t, vc, ns, 6, pb.DistanceFunction_DISTANCE_FUNCTION_COSINE, pb.VectorIndexType_VECTOR_INDEX_TYPE_HNSW)
	r := rand.New(rand.NewSource(21))
	before, after := map[string][]float32{}, map[string][]float32{}
	for i := 0; i < 400; i++ {
		before[fmt.Sprintf("b%d", i)] = randVec(r, 6)
	}
	insertAll(t, vc, ns, before, 8)
	shard := uint32(hash.GetShardForKey([]byte(ns), 1024))
	si, err := pb.NewAdminClient(s.conn).SnapshotShard(ctxT(t), &pb.ShardInfo{Id: shard})
	if err != nil || si.Id != shard {
		t.Fatalf("snapshot of shard %d: %v %v", shard, si, err)
	}
	for i := 0; i < 100; i++ {
		after[fmt.Sprintf("a%d", i)] = randVec(r, 6)
	}
	insertAll(t, vc, ns, after, 8)
	q := randVec(r, 6)
	want := searchIDs(t, vc, ns, q, 20)
	s.kill()

	s = onDisk(t, dir)
	vc = vecClient(s)
	for _, m := range []map[string][]float32{before, after} {
		for id, v := range m {
			g, err := vc.Get(ctxT(t), &pb.VectorGetRequest{Namespace: ns, Id: id})
			if err != nil || !g.Found || fmt.Sprint(g.Vector) != fmt.Sprint(v) {
				t.Fatalf("%s after snapshot and SIGKILL: %v %v", id, g, err)
			}
		}
	}
	if got := searchIDs(t, vc, ns, q, 20); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("search after restart %v; before %v", got, want)
	}
	s.stop()
}

// vector.memory_budget (--vector-memory-budget) bounds what the node's
// indexes hold: inserts past it are RESOURCE_EXHAUSTED naming the budget,
// and the server keeps serving.
func TestVectorMemoryBudgetFlagRefusesInsertsPastIt(t *testing.T) {
	s := ephemeral(t, "--vector-memory-budget", "256KiB")
	vc := vecClient(s)
	mustCreate(t, vc, "budget", 64, pb.DistanceFunction_DISTANCE_FUNCTION_EUCLIDEAN, pb.VectorIndexType_VECTOR_INDEX_TYPE_HNSW)
	r := rand.New(rand.NewSource(1))
	var refused error
	n := 0
	for ; n < 5000 && refused == nil; n++ {
		_, err := vc.Insert(ctxT(t), &pb.VectorInsertRequest{Namespace: "budget", Id: fmt.Sprintf("v%d", n), Vector: randVec(r, 64)})
		if err != nil {
			refused = err
		}
	}
	if refused == nil {
		t.Fatalf("5000 inserts of 64 floats fit in a 256 KiB budget")
	}
	if code(refused) != codes.ResourceExhausted || !strings.Contains(status.Convert(refused).Message(), "budget") {
		t.Fatalf("insert past the budget: %v; want RESOURCE_EXHAUSTED naming the budget", refused)
	}
	t.Logf("refused after %d inserts: %v", n-1, refused)
	mustPut(t, s, "k", "still serving")
}
