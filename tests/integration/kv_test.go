package integration

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	pb "github.com/norikv/norikv-go/proto"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

func sameVersion(a, b *pb.Version) bool {
	return a.GetTerm() == b.GetTerm() && a.GetIndex() == b.GetIndex()
}

func TestPutGetDeleteReturnTheWritesVersion(t *testing.T) {
	s := ephemeral(t)
	ctx := ctxT(t)
	v := mustPut(t, s, "user:1", "alice")
	if v.GetTerm() < 1 || v.GetIndex() < 1 {
		t.Fatalf("version %v: term and index must be >= 1", v)
	}
	g, err := s.kv.Get(ctx, &pb.GetRequest{Key: []byte("user:1")})
	if err != nil || string(g.Value) != "alice" || !sameVersion(g.Version, v) {
		t.Fatalf("get = %v, %v; want alice at %v", g, err, v)
	}
	for _, c := range []string{"", "lease", "linearizable", "strong", "stale_ok", "eventual", "bounded_staleness"} {
		g, err := s.kv.Get(ctx, &pb.GetRequest{Key: []byte("user:1"), Consistency: c})
		if err != nil || string(g.Value) != "alice" {
			t.Fatalf("get with consistency %q = %v, %v", c, g, err)
		}
	}
	v2 := mustPut(t, s, "user:1", "bob")
	if sameVersion(v, v2) || v2.GetIndex() <= v.GetIndex() {
		t.Fatalf("overwrite version %v not after %v", v2, v)
	}
	d, err := s.kv.Delete(ctx, &pb.DeleteRequest{Key: []byte("user:1")})
	if err != nil || !d.Tombstoned || d.Version.GetIndex() <= v2.GetIndex() {
		t.Fatalf("delete = %v, %v", d, err)
	}
	_, err = s.kv.Get(ctx, &pb.GetRequest{Key: []byte("user:1")})
	if code(err) != codes.NotFound || status.Convert(err).Message() != "key not found" {
		t.Fatalf("get after delete: %v; want NOT_FOUND 'key not found'", err)
	}
	d, err = s.kv.Delete(ctx, &pb.DeleteRequest{Key: []byte("never-written")})
	if err != nil || d.Tombstoned {
		t.Fatalf("delete of a missing key = %v, %v; want OK, tombstoned false", d, err)
	}
}

func TestTTLExpiresKeys(t *testing.T) {
	s := ephemeral(t)
	ctx := ctxT(t)
	if _, err := s.kv.Put(ctx, &pb.PutRequest{Key: []byte("t"), Value: []byte("v"), TtlMs: 400}); err != nil {
		t.Fatal(err)
	}
	mustPut(t, s, "forever", "v")
	if _, err := s.kv.Get(ctx, &pb.GetRequest{Key: []byte("t")}); err != nil {
		t.Fatalf("get before expiry: %v", err)
	}
	time.Sleep(700 * time.Millisecond)
	for _, c := range []string{"lease", "linearizable", "stale_ok"} {
		if _, err := s.kv.Get(ctx, &pb.GetRequest{Key: []byte("t"), Consistency: c}); code(err) != codes.NotFound {
			t.Fatalf("get (%s) after expiry: %v; want NOT_FOUND", c, err)
		}
	}
	if _, err := s.kv.Get(ctx, &pb.GetRequest{Key: []byte("forever")}); err != nil {
		t.Fatalf("key without ttl: %v", err)
	}
	// an expired key counts as absent for if_not_exists
	if _, err := s.kv.Put(ctx, &pb.PutRequest{Key: []byte("t"), Value: []byte("again"), IfNotExists: true}); err != nil {
		t.Fatalf("if_not_exists over an expired key: %v", err)
	}
}

func TestCASReportsTheCurrentVersion(t *testing.T) {
	s := ephemeral(t)
	ctx := ctxT(t)
	v1 := mustPut(t, s, "k", "1")
	v2, err := s.kv.Put(ctx, &pb.PutRequest{Key: []byte("k"), Value: []byte("2"), IfMatch: v1})
	if err != nil {
		t.Fatalf("CAS with the current version: %v", err)
	}
	var tr metadata.MD
	_, err = s.kv.Put(ctx, &pb.PutRequest{Key: []byte("k"), Value: []byte("3"), IfMatch: v1}, grpc.Trailer(&tr))
	if code(err) != codes.FailedPrecondition || !strings.HasPrefix(status.Convert(err).Message(), "version mismatch") {
		t.Fatalf("stale CAS: %v; want FAILED_PRECONDITION 'version mismatch...'", err)
	}
	want := fmt.Sprintf("%d.%d", v2.Version.Term, v2.Version.Index)
	if got := tr.Get("current-version"); len(got) != 1 || got[0] != want {
		t.Fatalf("current-version trailer = %v; want %s", got, want)
	}
	// CAS on a missing key fails without a current-version
	tr = nil
	_, err = s.kv.Put(ctx, &pb.PutRequest{Key: []byte("nope"), Value: []byte("x"), IfMatch: v1}, grpc.Trailer(&tr))
	if code(err) != codes.FailedPrecondition || len(tr.Get("current-version")) != 0 {
		t.Fatalf("CAS on a missing key: %v (trailer %v)", err, tr)
	}
	// CAS delete
	if _, err := s.kv.Delete(ctx, &pb.DeleteRequest{Key: []byte("k"), IfMatch: v1}); code(err) != codes.FailedPrecondition {
		t.Fatalf("stale CAS delete: %v", err)
	}
	d, err := s.kv.Delete(ctx, &pb.DeleteRequest{Key: []byte("k"), IfMatch: v2.Version})
	if err != nil || !d.Tombstoned {
		t.Fatalf("CAS delete: %v %v", d, err)
	}
}

func TestConcurrentCASIncrementsEndWithTheExactCount(t *testing.T) {
	s := ephemeral(t)
	mustPut(t, s, "counter", "0")
	const workers, each = 16, 25
	var wg sync.WaitGroup
	var conflicts atomic.Int64
	errs := make(chan error, workers)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			for i := 0; i < each; i++ {
				for {
					g, err := s.kv.Get(ctx, &pb.GetRequest{Key: []byte("counter")})
					if err != nil {
						errs <- err
						return
					}
					var n int
					fmt.Sscanf(string(g.Value), "%d", &n)
					_, err = s.kv.Put(ctx, &pb.PutRequest{Key: []byte("counter"),
						Value: []byte(fmt.Sprint(n + 1)), IfMatch: g.Version})
					if err == nil {
						break
					}
					if code(err) != codes.FailedPrecondition {
						errs <- err
						return
					}
					conflicts.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	g, err := s.kv.Get(ctxT(t), &pb.GetRequest{Key: []byte("counter"), Consistency: "linearizable"})
	if err != nil || string(g.Value) != fmt.Sprint(workers*each) {
		t.Fatalf("counter = %v, %v; want %d", g, err, workers*each)
	}
	t.Logf("%d increments, %d CAS conflicts retried", workers*each, conflicts.Load())
}

func TestIfNotExistsRefusesALiveKey(t *testing.T) {
	s := ephemeral(t)
	ctx := ctxT(t)
	if _, err := s.kv.Put(ctx, &pb.PutRequest{Key: []byte("once"), Value: []byte("a"), IfNotExists: true}); err != nil {
		t.Fatal(err)
	}
	_, err := s.kv.Put(ctx, &pb.PutRequest{Key: []byte("once"), Value: []byte("b"), IfNotExists: true})
	if code(err) != codes.AlreadyExists {
		t.Fatalf("second if_not_exists: %v; want ALREADY_EXISTS", err)
	}
	g, _ := s.kv.Get(ctx, &pb.GetRequest{Key: []byte("once")})
	if string(g.GetValue()) != "a" {
		t.Fatalf("value changed to %q", g.GetValue())
	}
}

func TestIdempotentRetriesReturnTheFirstResultAlsoAfterRestart(t *testing.T) {
	dir := t.TempDir()
	s := onDisk(t, dir)
	ctx := ctxT(t)
	req := &pb.PutRequest{Key: []byte("pay"), Value: []byte("100"), IdempotencyKey: "payment-42"}
	r1, err := s.kv.Put(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	mustPut(t, s, "pay", "other") // a later write the retry must not undo
	r2, err := s.kv.Put(ctx, req)
	if err != nil || !sameVersion(r1.Version, r2.Version) {
		t.Fatalf("retry = %v, %v; want the first version %v", r2, err, r1.Version)
	}
	g, _ := s.kv.Get(ctx, &pb.GetRequest{Key: []byte("pay")})
	if string(g.GetValue()) != "other" {
		t.Fatalf("the retry executed again: value %q", g.GetValue())
	}
	_, err = s.kv.Put(ctx, &pb.PutRequest{Key: []byte("pay"), Value: []byte("200"), IdempotencyKey: "payment-42"})
	if code(err) != codes.InvalidArgument {
		t.Fatalf("same idempotency key, other value: %v; want INVALID_ARGUMENT", err)
	}
	// idempotent delete
	d1, err := s.kv.Delete(ctx, &pb.DeleteRequest{Key: []byte("pay"), IdempotencyKey: "del-1"})
	if err != nil || !d1.Tombstoned {
		t.Fatal(d1, err)
	}
	s.stop()
	s = onDisk(t, dir)
	ctx = ctxT(t)
	r3, err := s.kv.Put(ctx, req)
	if err != nil || !sameVersion(r1.Version, r3.Version) {
		t.Fatalf("retry after restart = %v, %v; want %v", r3, err, r1.Version)
	}
	d2, err := s.kv.Delete(ctx, &pb.DeleteRequest{Key: []byte("pay"), IdempotencyKey: "del-1"})
	if err != nil || !d2.Tombstoned || !sameVersion(d1.Version, d2.Version) {
		t.Fatalf("delete retry after restart = %v, %v; want %v", d2, err, d1)
	}
	s.stop()
}

func TestRestartKeepsDataAndVersions(t *testing.T) {
	dir := t.TempDir()
	s := onDisk(t, dir)
	vs := map[string]*pb.Version{}
	for i := 0; i < 200; i++ {
		k := fmt.Sprintf("key-%03d", i)
		vs[k] = mustPut(t, s, k, "value-"+k)
	}
	s.stop()
	s = onDisk(t, dir)
	for k, v := range vs {
		g, err := s.kv.Get(ctxT(t), &pb.GetRequest{Key: []byte(k)})
		if err != nil || string(g.Value) != "value-"+k || !sameVersion(g.Version, v) {
			t.Fatalf("after restart %s = %v, %v; want version %v", k, g, err, v)
		}
	}
	// new writes continue with a higher term or index
	v := mustPut(t, s, "key-000", "x")
	if v.Term < vs["key-000"].Term || (v.Term == vs["key-000"].Term && v.Index <= vs["key-000"].Index) {
		t.Fatalf("version went backwards: %v after %v", v, vs["key-000"])
	}
	s.stop()
}

// Writers put fresh keys while the server is SIGKILLed at random moments;
// every acknowledged write must be there after the restart.
func TestSIGKILLKeepsEveryAcknowledgedWrite(t *testing.T) {
	dir := t.TempDir()
	seed := time.Now().UnixNano()
	rng := rand.New(rand.NewSource(seed))
	t.Logf("seed %d", seed)
	acked := map[string]string{}
	var mu sync.Mutex
	kills := 20
	if testing.Short() {
		kills = 5
	}
	for round := 0; round < kills; round++ {
		s := onDisk(t, dir)
		// everything acknowledged so far must be here
		verifyAll(t, s, acked, fmt.Sprintf("round %d (seed %d)", round, seed))
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for w := 0; w < 8; w++ {
			wg.Add(1)
			go func(w int) {
				defer wg.Done()
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					k := fmt.Sprintf("r%d-w%d-%d", round, w, i)
					v := fmt.Sprintf("v-%d-%d", round, i)
					ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
					_, err := s.kv.Put(ctx, &pb.PutRequest{Key: []byte(k), Value: []byte(v)})
					cancel()
					if err != nil {
						return // the server died under us
					}
					mu.Lock()
					acked[k] = v
					mu.Unlock()
				}
			}(w)
		}
		time.Sleep(time.Duration(50+rng.Intn(300)) * time.Millisecond)
		s.kill()
		close(stop)
		wg.Wait()
	}
	s := onDisk(t, dir)
	verifyAll(t, s, acked, fmt.Sprintf("final (seed %d)", seed))
	t.Logf("%d kills, %d acknowledged writes all present", kills, len(acked))
	s.stop()
}

// verifyAll reads every key of want (8 readers) and fails on any difference.
func verifyAll(t *testing.T, s *server, want map[string]string, what string) {
	t.Helper()
	keys := make(chan string, len(want))
	for k := range want {
		keys <- k
	}
	close(keys)
	var wg sync.WaitGroup
	var bad atomic.Value
	for r := 0; r < 8; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range keys {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				g, err := s.kv.Get(ctx, &pb.GetRequest{Key: []byte(k), Consistency: "linearizable"})
				cancel()
				if err != nil || string(g.Value) != want[k] {
					bad.Store(fmt.Sprintf("%s: acknowledged %s=%s lost: %v %v", what, k, want[k], g, err))
				}
			}
		}()
	}
	wg.Wait()
	if m := bad.Load(); m != nil {
		t.Fatal(m)
	}
}

func TestBadInputGetsInvalidArgumentAndTheServerKeepsServing(t *testing.T) {
	s := ephemeral(t)
	ctx := ctxT(t)
	cases := []struct {
		name string
		call func() error
		want codes.Code
		msg  string
	}{
		{"empty key put", func() error {
			_, err := s.kv.Put(ctx, &pb.PutRequest{Key: nil, Value: []byte("v")})
			return err
		}, codes.InvalidArgument, "empty"},
		{"empty key get", func() error {
			_, err := s.kv.Get(ctx, &pb.GetRequest{Key: nil})
			return err
		}, codes.InvalidArgument, "empty"},
		{"key over 1024 bytes", func() error {
			_, err := s.kv.Put(ctx, &pb.PutRequest{Key: make([]byte, 1025), Value: []byte("v")})
			return err
		}, codes.InvalidArgument, "1024"},
		{"value over 1 MiB", func() error {
			_, err := s.kv.Put(ctx, &pb.PutRequest{Key: []byte("k"), Value: make([]byte, 1<<20+1)})
			return err
		}, codes.InvalidArgument, "value"},
		{"request over 2 MiB", func() error {
			_, err := s.kv.Put(ctx, &pb.PutRequest{Key: []byte("k"), Value: make([]byte, 2<<20+100)})
			return err
		}, codes.InvalidArgument, "limit"},
		{"unknown consistency", func() error {
			_, err := s.kv.Get(ctx, &pb.GetRequest{Key: []byte("k"), Consistency: "sometimes"})
			return err
		}, codes.InvalidArgument, "consistency"},
		{"garbage protobuf body", func() error {
			out := new(pb.PutResponse)
			return s.conn.Invoke(ctx, "/norikv.v1.Kv/Put", rawMsg([]byte{0xff, 0xff, 0xff, 0x0f, 0x22}), out,
				grpc.ForceCodecV2(rawCodec{}))
		}, codes.InvalidArgument, "PutRequest"},
		{"unknown method", func() error {
			return s.conn.Invoke(ctx, "/norikv.v1.Kv/Increment", &pb.GetRequest{}, new(pb.GetResponse))
		}, codes.Unimplemented, ""},
		{"cas with version 0.0", func() error {
			_, err := s.kv.Put(ctx, &pb.PutRequest{Key: []byte("k"), Value: []byte("v"), IfMatch: &pb.Version{}})
			return err
		}, codes.InvalidArgument, "if_match"},
	}
	for _, c := range cases {
		err := c.call()
		if code(err) != c.want || !strings.Contains(status.Convert(err).Message(), c.msg) {
			t.Errorf("%s: %v; want %v containing %q", c.name, err, c.want, c.msg)
		}
		// and everybody else is still served
		mustPut(t, s, "still-alive", c.name)
	}
	// exactly-at-the-limit inputs work
	big := make([]byte, 1<<20)
	key := []byte(strings.Repeat("k", 1024))
	if _, err := s.kv.Put(ctx, &pb.PutRequest{Key: key, Value: big}); err != nil {
		t.Fatalf("1024-byte key with a 1 MiB value: %v", err)
	}
	g, err := s.kv.Get(ctx, &pb.GetRequest{Key: key})
	if err != nil || len(g.Value) != 1<<20 {
		t.Fatalf("get of the maximal value: %v", err)
	}
	if _, err := s.kv.Put(ctx, &pb.PutRequest{Key: []byte("empty-value"), Value: nil}); err != nil {
		t.Fatalf("empty value: %v", err)
	}
}

// rawMsg and rawCodec send bytes that are not a valid message.
type rawMsg []byte
type rawCodec struct{}

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	if r, ok := v.(rawMsg); ok {
		return mem.BufferSlice{mem.SliceBuffer(r)}, nil
	}
	b, err := proto.Marshal(v.(proto.Message))
	return mem.BufferSlice{mem.SliceBuffer(b)}, err
}
func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	return proto.Unmarshal(data.Materialize(), v.(proto.Message))
}
func (rawCodec) Name() string { return "proto" }

func TestConfigErrorsNameTheProblem(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("node_id: n1\nrpc_adress: 127.0.0.1:0\n"), 0o644)
	_, err := tryStart(t, bad, "--ephemeral")
	if err == nil || !strings.Contains(err.Error(), "rpc_adress") {
		t.Fatalf("unknown key: %v; want an error naming rpc_adress", err)
	}
	// total_shards is fixed when the data directory is created
	ddir := t.TempDir()
	first := onDisk(t, ddir)
	first.stop()
	_, err = tryStart(t, "--data-dir", ddir, "--rpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0",
		"--cluster-total-shards", "256")
	if err == nil || !strings.Contains(err.Error(), "total_shards=1024") || !strings.Contains(err.Error(), "256") {
		t.Fatalf("reopening with another total_shards: %v; want an error naming both values", err)
	}
	// seed nodes: a malformed address, one listed twice, and this node's own
	// peer address are refused at start, each named
	_, err = tryStart(t, "--ephemeral", "--cluster-seed-nodes=127.0.0.1:99999")
	if err == nil || !strings.Contains(err.Error(), "cluster.seed_nodes") || !strings.Contains(err.Error(), "99999") {
		t.Fatalf("bad seed address: %v; want an error naming cluster.seed_nodes and the address", err)
	}
	_, err = tryStart(t, "--ephemeral", "--cluster-seed-nodes=127.0.0.1:9102,127.0.0.1:9102")
	if err == nil || !strings.Contains(err.Error(), "listed twice") {
		t.Fatalf("seed listed twice: %v; want an error saying so", err)
	}
	self := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	_, err = tryStart(t, "--ephemeral", "--rpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0",
		"--peer-addr", self, "--cluster-seed-nodes="+self)
	if err == nil || !strings.Contains(err.Error(), "is this node itself") {
		t.Fatalf("seed that is this node: %v; want an error saying so", err)
	}
	// an explicitly configured address that is taken
	s := ephemeral(t)
	_, err = tryStart(t, "--ephemeral", "--rpc-addr", s.grpc, "--http-addr", "127.0.0.1:0")
	if err == nil || !strings.Contains(err.Error(), s.grpc) {
		t.Fatalf("taken rpc address: %v; want an error naming %s", err, s.grpc)
	}
	mustPut(t, s, "k", "the first server still serves")
}

func TestNoriKVv1ConfigFileWorksUnchanged(t *testing.T) {
	dir := t.TempDir()
	port := freePort(t)
	cfg := fmt.Sprintf(`node_id: node-a
rpc_addr: 127.0.0.1:%d
data_dir: %s
cluster:
  seed_nodes: []
  total_shards: 256
  replication_factor: 1
telemetry:
  prometheus:
    enabled: false
  otlp:
    enabled: false
`, port, filepath.Join(dir, "data"))
	path := filepath.Join(dir, "norikv.yaml")
	os.WriteFile(path, []byte(cfg), 0o644)
	s := start(t, path)
	if s.grpc != fmt.Sprintf("127.0.0.1:%d", port) {
		t.Fatalf("listening on %s, configured 127.0.0.1:%d", s.grpc, port)
	}
	ctx := ctxT(t)
	v := mustPut(t, s, "hello", "world")
	g, err := s.kv.Get(ctx, &pb.GetRequest{Key: []byte("hello")})
	if err != nil || string(g.Value) != "world" || !sameVersion(g.Version, v) {
		t.Fatalf("get = %v %v", g, err)
	}
	if _, err := s.kv.Delete(ctx, &pb.DeleteRequest{Key: []byte("hello")}); err != nil {
		t.Fatal(err)
	}
	stream, err := pb.NewMetaClient(s.conn).WatchCluster(ctx, &pb.ClusterView{})
	if err != nil {
		t.Fatal(err)
	}
	view, err := stream.Recv()
	if err != nil || len(view.Shards) != 256 || view.Nodes[0].Id != "node-a" {
		t.Fatalf("view: %v shards, err %v", len(view.GetShards()), err)
	}
	// metrics disabled by the file
	resp, err := http.Get("http://" + s.http + "/metrics")
	if err != nil || resp.StatusCode != 404 {
		t.Fatalf("/metrics with prometheus disabled: %v %v", resp, err)
	}
	resp.Body.Close()
	s.stop()
}

func TestWatchClusterShowsEveryShardLedByTheNode(t *testing.T) {
	s := ephemeral(t)
	ctx := ctxT(t)
	stream, err := pb.NewMetaClient(s.conn).WatchCluster(ctx, &pb.ClusterView{Epoch: 0})
	if err != nil {
		t.Fatal(err)
	}
	v, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if v.Epoch == 0 || len(v.Nodes) != 1 || v.Nodes[0].Addr != s.grpc || v.Nodes[0].Role != "alive" {
		t.Fatalf("view header: epoch %d nodes %v", v.Epoch, v.Nodes)
	}
	if len(v.Shards) != 1024 {
		t.Fatalf("%d shards; want 1024", len(v.Shards))
	}
	for i, sh := range v.Shards {
		if sh.Id != uint32(i) || len(sh.Replicas) != 1 || !sh.Replicas[0].Leader || sh.Replicas[0].NodeId != v.Nodes[0].Id {
			t.Fatalf("shard %d: %v", i, sh)
		}
	}
	// a client that already has this epoch gets nothing until a change
	ctx2, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	st2, err := pb.NewMetaClient(s.conn).WatchCluster(ctx2, &pb.ClusterView{Epoch: v.Epoch})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st2.Recv(); code(err) != codes.DeadlineExceeded {
		t.Fatalf("watch with the current epoch: %v; want no message before the deadline", err)
	}
}

func TestAdminAndVectorAnswers(t *testing.T) {
	s := ephemeral(t)
	ctx := ctxT(t)
	mustPut(t, s, "hello", "x")
	adm := pb.NewAdminClient(s.conn)
	si, err := adm.SnapshotShard(ctx, &pb.ShardInfo{Id: 309})
	if err != nil || si.Id != 309 || len(si.Replicas) != 1 {
		t.Fatalf("snapshot: %v %v", si, err)
	}
	if _, err := adm.TransferShard(ctx, &pb.ShardInfo{Id: 3}); code(err) != codes.FailedPrecondition {
		t.Fatalf("transfer on one node: %v", err)
	}
	if _, err := adm.SnapshotShard(ctx, &pb.ShardInfo{Id: 5000}); code(err) != codes.InvalidArgument {
		t.Fatalf("snapshot of a missing shard: %v", err)
	}
	// the Vector service is served (vector_test.go): a missing index is NOT_FOUND
	if _, err := pb.NewVectorClient(s.conn).Search(ctx, &pb.VectorSearchRequest{Namespace: "x", Query: []float32{1}, K: 1}); code(err) != codes.NotFound {
		t.Fatalf("vector search: %v", err)
	}
}

func TestHTTPEndpoints(t *testing.T) {
	s := ephemeral(t)
	base := "http://" + s.http
	get := func(path string) (int, string) {
		r, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Body.Close()
		b, _ := io.ReadAll(r.Body)
		return r.StatusCode, string(b)
	}
	if c, b := get("/healthz"); c != 200 || b != "ok\n" {
		t.Fatalf("/healthz %d %q", c, b)
	}
	if c, _ := get("/readyz"); c != 200 {
		t.Fatalf("/readyz %d", c)
	}
	if c, b := get("/health"); c != 200 || !strings.Contains(b, `"shards_led":1024`) {
		t.Fatalf("/health %d %s", c, b)
	}
	req, _ := http.NewRequest("PUT", base+"/kv/http-key?ttl_ms=60000", strings.NewReader("from http"))
	r, err := http.DefaultClient.Do(req)
	if err != nil || r.StatusCode != 200 {
		t.Fatalf("PUT /kv: %v %v", r, err)
	}
	r.Body.Close()
	if c, b := get("/kv/http-key"); c != 200 || !strings.Contains(b, `"value":"from http"`) {
		t.Fatalf("GET /kv %d %s", c, b)
	}
	g, err := s.kv.Get(ctxT(t), &pb.GetRequest{Key: []byte("http-key")})
	if err != nil || string(g.Value) != "from http" {
		t.Fatalf("gRPC sees the HTTP write: %v %v", g, err)
	}
	if c, _ := get("/kv/http-key?consistency=nonsense"); c != 400 {
		t.Fatalf("bad consistency over HTTP: %d", c)
	}
	if c, b := get("/metrics"); c != 200 || !strings.Contains(b, `norikv_requests_total{op="get",outcome="ok"}`) ||
		!strings.Contains(b, "norikv_request_duration_seconds_bucket") || !strings.Contains(b, "norikv_lsm_level_bytes") ||
		!strings.Contains(b, "norikv_raft_fsync_duration_seconds_count") || !strings.Contains(b, "norikv_raft_commit_duration_seconds_bucket") {
		t.Fatalf("/metrics %d %.300s", c, b)
	}
	if c, b := get("/meta/cluster"); c != 200 || !strings.Contains(b, `"total_shards":1024`) {
		t.Fatalf("/meta/cluster %d %.200s", c, b)
	}
	if c, _ := get("/nope"); c != 404 {
		t.Fatalf("unknown path: %d", c)
	}
	// bad input over HTTP: a clear 400 naming the problem, and the server serves on
	put := func(path string, body io.Reader) (int, string) {
		req, _ := http.NewRequest("PUT", base+path, body)
		r, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Body.Close()
		b, _ := io.ReadAll(r.Body)
		return r.StatusCode, string(b)
	}
	if c, b := put("/kv/big", strings.NewReader(strings.Repeat("x", 1<<20+5000))); c != 400 || !strings.Contains(b, "limit") {
		t.Fatalf("oversized HTTP body: %d %s", c, b)
	}
	if c, b := put("/kv/k?ttl_ms=soon", strings.NewReader("v")); c != 400 || !strings.Contains(b, "ttl_ms") {
		t.Fatalf("malformed ttl_ms: %d %s", c, b)
	}
	if c, b := put("/kv/k?if_match=1-2", strings.NewReader("v")); c != 400 || !strings.Contains(b, "if_match") {
		t.Fatalf("malformed if_match: %d %s", c, b)
	}
	if c, b := put("/kv/"+strings.Repeat("k", 1025), strings.NewReader("v")); c != 400 || !strings.Contains(b, "1024") {
		t.Fatalf("oversized key over HTTP: %d %.200s", c, b)
	}
	if c, _ := put("/kv/after-bad-input", strings.NewReader("fine")); c != 200 {
		t.Fatalf("the server stopped serving HTTP after bad input: %d", c)
	}
}

func TestSIGTERMStopsCleanly(t *testing.T) {
	s := ephemeral(t)
	mustPut(t, s, "k", "v")
	s.stop() // fails the test unless the exit status is 0
}

var _ = errors.New
